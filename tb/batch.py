"""The batch API shared by every PE: arrays in, arrays out, and the cycles the simulation counted.

:func:`run_batch` writes the (already validated) input arrays to ``in.npz``, runs the PE's ``batch`` cocotb
test (:func:`tb.bench.batch`) in one simulation and returns a :class:`BatchResult`: every output field the
PE's ``o`` payload carries (``y``, and ``steps`` for the crossbar), plus what the case adds (the crossbar's
counted ``start`` pulses), and :class:`SimStats`. Each PE's public function (``rtl_dot``, ``rtl_matvec``,
``rtl_mvm``) validates its arguments, calls :func:`run_batch`, shapes the result as it always has and, with
``stats=True``, returns ``(result, stats)`` through :func:`with_stats`.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..hw.verilog import build_root

from .runner import SimulationError, run

__all__ = ["SimStats", "BatchResult", "NO_SIMULATION", "run_batch", "run_rows", "with_stats"]


@dataclass(frozen=True)
class SimStats:
    """What the simulation of a batch counted.

    Members
    -------
    cycles : int
        Clock cycles of the stream run that carried the batch: from its first cycle (the first beat is
        offered then, unless ``p_valid < 1`` holds it back) to the cycle the last result was transferred on
        ``o``, inclusive. Without stalls: ``(n - 1) * initiation_interval + latency + 1`` for ``n`` vectors of
        one beat (``n + latency`` for the dot-product PEs), ``sum(vector_cycles) + 1`` for the crossbar.
    beats : int
        Input beats accepted on ``i``.
    """

    cycles: int
    beats: int


#: the stats of a batch that needed no simulation (no rows)
NO_SIMULATION = SimStats(cycles=0, beats=0)


@dataclass(frozen=True)
class BatchResult:
    """The output arrays of one batch run (``outputs[field]``, one row per vector) and its :class:`SimStats`."""

    outputs: dict
    stats: SimStats


def run_batch(pe_name: str, params, arrays: dict[str, np.ndarray], *, p_valid: float = 1.0,
              p_ready: float = 1.0, seed: int = 1, waves: bool = False) -> BatchResult:
    """Stream ``arrays`` (validated by the caller; the PE's case reads them) through the RTL of ``pe_name``
    in one simulation.

    The work directory under ``build/`` is removed when the run passed and kept, with its ``sim.log``,
    when it failed (:class:`tb.runner.SimulationError` names it).
    """
    build_root().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="batch-", dir=build_root()))
    np.savez(work / "in.npz", **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    _, failures = run(pe_name, params, testcases=["batch"], seed=seed, waves=waves, tag=f"../../{work.name}",
                      extra={"batch_dir": str(work), "p_valid": p_valid, "p_ready": p_ready})
    if failures:
        raise SimulationError(f"RTL batch run failed; see {work / 'sim.log'}")
    with np.load(work / "out.npz") as out:
        outputs = {name: out[name] for name in out.files}
    shutil.rmtree(work, ignore_errors=True)
    stats = SimStats(cycles=int(outputs.pop("cycles")), beats=int(outputs.pop("beats")))
    return BatchResult(outputs, stats)


def with_stats(result, stats: SimStats, want: bool):
    """``result``, or ``(result, stats)`` when ``want`` (the ``stats=True`` of every batch function)."""
    return (result, stats) if want else result


def run_rows(pe_name: str, params, arrays: dict[str, np.ndarray], rows: int, *, stats: bool = False,
             **kwargs):
    """One int64 result ``y`` per row (the dot-product PEs' shape); no simulation for zero rows."""
    if rows == 0:
        return with_stats(np.zeros(0, dtype=np.int64), NO_SIMULATION, stats)
    batch = run_batch(pe_name, params, arrays, **kwargs)
    return with_stats(batch.outputs["y"].astype(np.int64), batch.stats, stats)
