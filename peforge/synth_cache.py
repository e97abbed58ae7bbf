"""The one cache of whole-network syntheses: ``peforge e2e``, ``peforge bench network`` and ``peforge explore`` place
and route a compiled network through :func:`synthesise`, which runs :func:`synth.synthesize_network` once per key
and keeps the result as JSON under ``build/synth-cache/``.

Key
    The compiled network's digest (:meth:`hw.network.CompiledNetwork.digest`), the target, the nextpnr seeds, the
    pin wrapper (``wrap``: True, False, or None for :func:`synth.synthesize_network`'s own choice) and the generator
    fingerprint (:func:`hw.verilog.generator_fingerprint`, a hash of ``sw/`` and ``hw/``). The file is named by
    the first four, ``<digest>-<target>-<seeds>-<wrapped|unwrapped|auto>.json``; an entry that other generator
    code wrote is synthesised again and replaced.
Value
    One JSON object, the entry: the key (``digest``, ``target``, ``seeds``, ``wrap``, ``generator``); ``placed``
    (yosys and nextpnr finished); the synthesis record of :func:`peforge.report.synth_record` (``lut``, ``ff``,
    ``dsp``, ``bram``, ``fmax_mhz``, ``per_seed``: :data:`RECORD`) and ``wrapped``; ``logic_cells`` (iCE40: the
    placed ICESTORM_LC cells from nextpnr's report of the first seed, else None); ``error`` and ``error_type``
    (the message and class name of the :class:`synth.SynthError`, or None); ``seconds`` (of the synthesis that
    produced it). A failed synthesis (the design does not fit, a tool failed) is a result too, cached like one:
    its record fields are None.
Processes
    Each design and target synthesises under an exclusive lock (``fcntl.flock`` on ``<digest>-<target>.lock``,
    per design and target as :func:`synth.synthesize_network` builds in one directory per design and target), so
    processes that want the same design wait for one synthesis and then read its entry; an entry is written to a
    temporary file and renamed into place, so no reader sees half of one.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from pathlib import Path

__all__ = ["synthesise", "error_line", "cache_dir", "RECORD"]

#: The synthesis record's fields (:func:`peforge.report.synth_record`), each None in the entry of a failure.
RECORD = ("lut", "ff", "dsp", "bram", "fmax_mhz", "per_seed")
#: :func:`synth.synthesize_network`'s seeds when the caller gives none.
DEFAULT_SEEDS = (1,)
_WRAP_NAMES = {True: "wrapped", False: "unwrapped", None: "auto"}


def cache_dir() -> Path:
    """``build/synth-cache/`` (under :func:`hw.verilog.build_root`)."""
    from peforge.hw.verilog import build_root

    return build_root() / "synth-cache"


def error_line(message: str) -> str:
    """The first line of a synthesis error's message, without the machine's log path (``" (log: ...)"``): how a
    results file or a sweep's record states a failed synthesis."""
    return re.sub(r" \(log: [^)]*\)", "", str(message).splitlines()[0] if str(message) else "").rstrip(":")


def synthesise(compiled, target: str, *, reuse: bool = True, progress=None, **options) -> dict:
    """The cache entry (see the module) of ``compiled`` on ``target``, with ``cached``: True when it was read from
    the cache, False when this call synthesised it.

    Parameters
    ----------
    compiled : hw.network.CompiledNetwork
    target : str
        A :data:`synth.TARGETS` name.
    reuse : bool
        False synthesises again even when the cache holds the key (and replaces its entry).
    progress : peforge.progress.Progress or None
        Passed on to :func:`synth.synthesize_network`.
    **options
        ``seeds`` and ``wrap`` of :func:`synth.synthesize_network`, passed on as given (its defaults, seed 1 and
        the automatic wrapper, when not); part of the key.
    """
    from peforge.hw.verilog import generator_fingerprint
    from peforge.report import synth_record
    from peforge.synth import SynthError, synthesize_network

    unknown = sorted(set(options) - {"seeds", "wrap"})
    if unknown:
        raise TypeError(f"Synthesis option must be seeds or wrap, not {unknown[0]!r}")
    seeds, wrap = tuple(options.get("seeds", DEFAULT_SEEDS)), options.get("wrap")
    digest, generator = compiled.digest(), generator_fingerprint()
    folder = cache_dir()
    path = folder / f"{digest}-{target}-{'-'.join(map(str, seeds))}-{_WRAP_NAMES[wrap]}.json"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{digest}-{target}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # released when the file closes, also if this process dies
        if reuse:
            entry = _read(path)
            if entry.get("generator") == generator and entry.get("digest") == digest:
                return {**entry, "cached": True}
        entry = {"digest": digest, "target": target, "seeds": list(seeds), "wrap": wrap, "generator": generator}
        start = time.monotonic()
        try:
            result = synthesize_network(compiled, target=target, progress=progress, **options)
        except SynthError as exc:  # it does not fit, or a tool failed: a result too
            entry.update(placed=False, **dict.fromkeys(RECORD), wrapped=None, logic_cells=None, error=str(exc),
                         error_type=type(exc).__name__)
        else:
            entry.update(placed=True, **synth_record(result), wrapped=result.wrapped,
                         logic_cells=_logic_cells(result) if target.startswith("ice40") else None, error=None,
                         error_type=None)
        entry["seconds"] = round(time.monotonic() - start, 1)
        _write(path, entry)
    return {**entry, "cached": False}


def _read(path: Path) -> dict:
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return entry if isinstance(entry, dict) else {}


def _write(path: Path, entry: dict) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(entry, indent=1) + "\n")
    os.replace(temporary, path)


def _logic_cells(result) -> int | None:
    """ICESTORM_LC (LUT4 + carry + FF cells) from the first seed's nextpnr report of an iCE40 run."""
    try:
        report = json.loads((Path(result.build_dir) / f"report_seed{result.seeds[0]}.json").read_text())
    except (OSError, ValueError):
        return None
    return report.get("utilization", {}).get("ICESTORM_LC", {}).get("used")
