"""cocotb testbench and batch API of a compiled network (:class:`hw.network.Accelerator`): the whole network in
one Verilator simulation, checked against :meth:`sw.network.Network.golden`.

Every sample streams in one feature per beat (``last`` on the final one); the accelerator answers one beat per
sample with the logits and the argmax class. The tests send all samples back to back under random input stalls
and output backpressure, reset in the middle of a sample and with results pending, and measure the latency
(first input beat of a sample to its result) and the steady-state interval between results, both counted in
the simulation.

The batch API :func:`rtl_infer` runs a whole input array through one simulation and returns the logits and a
:class:`NetworkStats` of what the simulation counted.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

import cocotb

from ..hw.network import CompiledNetwork
from ..hw.verilog import build_root

from .bench import Bench, Case, extremes, last_beat_flags, random_stalls, reset_mid_vector  # noqa: F401 (cocotb)
from .designs import NetworkDesign
from .runner import SimulationError, run_design

__all__ = ["NetworkDesign", "NetworkStats", "rtl_infer", "CHECKS", "CASE"]

#: the cocotb tests pytest runs (``infer`` serves :func:`rtl_infer`): the shared ones of tb/bench.py and the
#: network's own ``timing``
CHECKS = ["random_stalls", "extremes", "reset_mid_vector", "timing"]


@dataclasses.dataclass(frozen=True)
class NetworkStats:
    """What one simulation counted.

    Members
    -------
    samples : int
    cycles : int
        Clock cycles from the first input beat offered to the last result accepted.
    latency : int
        Cycles from the first sample's first input beat being accepted to its result being valid.
    interval : float
        Steady-state cycles between results: the median spacing of the second half of the results (0 with
        fewer than 4 samples).
    result_cycles : tuple of int
        The cycle each result was accepted.
    """

    samples: int
    cycles: int
    latency: int
    interval: float
    result_cycles: tuple[int, ...]


# -- cocotb side: the network as a case of the one testbench (tb/bench.py) ----------------------------------

class CASE(Case):
    """The samples of a compiled network: one vector is one sample (``features`` integers), sent one feature
    per beat with ``last`` on the final one; its result is the logits and the first argmax (``cls``)."""

    count = 12

    def __init__(self, bench):
        super().__init__(bench)
        self.compiled = bench.params
        self.network = self.compiled.network
        self.order = self.compiled.input_order()

    # sizes are fixed: a sample is always `features` long
    def draw(self, count: int):
        lo, hi = self.network.input.range
        x = self.rng.integers(lo, hi, (count, self.network.input.features), endpoint=True)
        return list(x)

    def random(self, size: int):
        return self.draw(1)[0]

    def extremes(self):
        lo, hi = self.network.input.range
        features = self.network.input.features
        alternating = np.where(np.arange(features) % 2, lo, hi)
        return [np.full(features, v) for v in (0, lo, hi)] + [alternating, lo + hi - alternating] + self.draw(3)

    def length(self, vector) -> int:
        return len(vector)

    def describe(self, vector) -> str:
        return f"sample {np.asarray(vector)[:8].tolist()}..."

    def beats(self, vector):
        # channels-last for a network that starts with a convolution or pool (CompiledNetwork.input_order)
        return {"x": np.asarray(vector, np.int64)[self.order], "last": last_beat_flags(len(vector))}

    def expect(self, vectors):
        logits = self.network.golden(np.array(vectors, np.int64).reshape(len(vectors), -1))
        return {"logits": logits, "cls": np.argmax(logits, axis=1)}

    def from_batch(self, arrays):
        return list(arrays["x"])

    # -- timing: a sample takes many beats; the accelerator predicts only its steady-state interval --------
    @property
    def interval(self) -> int:
        return max(self.network.input.features, self.compiled.interval)

    @property
    def latency(self) -> int:
        """A bound on the cycles one sample spends inside (sizes time-outs and waits; not a prediction)."""
        return sum(2 * p.cycles + p.beats * p.interval + 64 for p in self.compiled.plans)

    @property
    def idle_after(self) -> int:
        return self.latency // 4 + 16

    def max_cycles(self, n: int) -> int:
        slow = max(min(self.bench.stream.p_valid, self.bench.stream.p_ready), 0.05)
        return int(4 * self.latency + n * 4 * self.interval / slow + 1000)

    def in_flight(self) -> list[int]:
        """One sample and a half; one sample and one feature when the first engine reads windows (a line buffer or
        a pool takes the next sample's rows only as the first one's windows are done, so half a sample more may
        wait until the first sample's result is out)."""
        features = self.network.input.features
        first = next(p for p in self.compiled.plans if p.kind != "flatten")
        more = 1 if first.window is not None else max(1, features // 2)
        return self.payloads(self.draw(2))[:features + more]

    def pending(self):
        vectors = self.draw(3)
        return vectors, 3 * self.network.input.features + self.latency


@cocotb.test()
async def timing(dut):
    """Without stalls: the samples back to back, the steady-state interval between results counted here and
    compared with the compiled network's prediction (``CompiledNetwork.interval``); the latency and the
    interval are written to ``timing.json`` in the build directory."""
    bench = Bench(dut)
    await bench.start()
    samples = int(bench.config.get("timing_samples", 16))
    run = await bench.check(bench.case.draw(samples), what="back to back")
    stats = _stats(run)
    (Path(bench.config["build_dir"]) / "timing.json").write_text(json.dumps(dataclasses.asdict(stats)))
    predicted = bench.case.compiled.interval
    if all(p.scheme != "crossbar" for p in bench.case.compiled.plans):
        assert stats.interval == predicted, f"steady-state interval {stats.interval} cycles, predicted {predicted}"
    else:  # zero-skipping: a vector may take fewer cycles than the worst case the prediction assumes
        assert 0 < stats.interval <= predicted, f"steady-state interval {stats.interval} cycles, at most {predicted}"


def _stats(run) -> NetworkStats:
    # the first beat is accepted in the run's first cycle (the buffers are empty after reset); a result is
    # stamped with the edge that ends the cycle of its transfer, cycle c + 1 for a result valid in cycle c
    result_cycles = [cycle for _, cycle in run.received]
    latency = result_cycles[0] - 1 if result_cycles else 0
    tail = np.diff(result_cycles[len(result_cycles) // 2:]) if len(result_cycles) >= 4 else np.zeros(0)
    return NetworkStats(samples=len(result_cycles), cycles=int(run.cycles), latency=int(latency),
                        interval=float(np.median(tail)) if tail.size else 0.0,
                        result_cycles=tuple(int(c) for c in result_cycles))


@cocotb.test()
async def infer(dut):
    """Batch API: every sample of ``in.npz`` through the accelerator; logits and what was counted to ``out.npz``."""
    bench = Bench.from_config(dut, 1.0)
    work = Path(bench.config["batch_dir"])
    await bench.start()
    with np.load(work / "in.npz") as arrays:
        vectors = bench.case.from_batch({k: arrays[k] for k in arrays.files})
    run = await bench.transfer(vectors)
    stats = _stats(run)
    np.savez(work / "out.npz", **bench.decode(run), result_cycles=np.array(stats.result_cycles, np.int64),
             cycles=stats.cycles, latency=stats.latency, interval=stats.interval)


# -- batch API --------------------------------------------------------------------------------------------------

def rtl_infer(compiled: CompiledNetwork, x, *, p_valid: float = 1.0, p_ready: float = 1.0, seed: int = 1,
              waves: bool = False) -> tuple[np.ndarray, NetworkStats]:
    """:meth:`sw.network.Network.golden` computed by the compiled accelerator, every sample in one simulation.

    Parameters
    ----------
    compiled : hw.network.CompiledNetwork
    x : int array [N, features]
        Input samples in the network's input range.
    p_valid, p_ready : float
        Probability of offering an input beat / accepting a result per cycle (1.0: no stalls).

    Returns
    -------
    (logits, stats) : (numpy.ndarray int64 [N, classes], NetworkStats)
        ``stats`` holds the cycles the simulation counted (latency, interval, total).

    Raises
    ------
    TypeError, ValueError
        ``"Compiled network must be a CompiledNetwork, not ..."``, the input errors of
        :meth:`sw.network.Network.golden` (``"Network input must have shape (N, 64), not (3, 63)"``).
    """
    if not isinstance(compiled, CompiledNetwork):
        raise TypeError(f"Compiled network must be a CompiledNetwork, not {compiled!r}")
    x = _check_input(compiled, x)
    classes = compiled.network.out_features
    if len(x) == 0:
        return np.zeros((0, classes), np.int64), NetworkStats(0, 0, 0, 0.0, ())
    build_root().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="infer-", dir=build_root()))
    np.savez(work / "in.npz", x=x)
    tests, failures = run_design(NetworkDesign(compiled), testcases=["infer"], seed=seed, waves=waves,
                                 tag=f"../../{work.name}",
                                 extra={"batch_dir": str(work), "p_valid": p_valid, "p_ready": p_ready})
    if failures:
        raise SimulationError(f"RTL inference failed; see {work / 'sim.log'}")
    with np.load(work / "out.npz") as out:
        logits = out["logits"].astype(np.int64).reshape(len(x), -1)
        stats = NetworkStats(samples=len(x), cycles=int(out["cycles"]), latency=int(out["latency"]),
                             interval=float(out["interval"]),
                             result_cycles=tuple(int(c) for c in out["result_cycles"]))
    shutil.rmtree(work, ignore_errors=True)
    return logits, stats


def _check_input(compiled: CompiledNetwork, x) -> np.ndarray:
    from ..sw.intops import as_int_array

    net = compiled.network
    arr = as_int_array("Network input", x, *net.input.range)
    if arr.ndim != 2 or arr.shape[1] != net.input.features:
        raise ValueError(f"Network input must have shape (N, {net.input.features}), not {arr.shape}")
    return arr
