"""Testbench shared by every PE that reduces a vector to one result (sp2-mac, fixed-mac, nm-sparse).

A PE's tb module defines a :class:`Vectors` subclass named ``VECTORS`` that knows how its vectors
look: how to draw a random one, the extreme and every-code sets, how a vector splits into beats, and
the golden result (always from ``sw``). The cocotb tests below are written once against that
interface and imported by each PE module, where cocotb discovers them.

The batch API :func:`run_batch` streams named arrays through the RTL in one simulation.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

import cocotb

from .runner import SimulationError, build_root, load_config, run
from .stream import STALL_MIXES, StreamBench, pack, run_with_summary, to_signed

__all__ = ["Vectors", "VectorBench", "run_batch", "run_batch_arrays"]


class Vectors:
    """A PE's vectors. A vector is a dict of numpy arrays (and flags) for one reduction.

    Subclasses implement :meth:`random`, :meth:`extremes`, :meth:`every_code`, :meth:`beats`,
    :meth:`golden` and :meth:`from_batch`; :meth:`length` is the vector's element count.
    """

    def __init__(self, params, rng: np.random.Generator):
        self.params = params
        self.rng = rng

    def random_acts(self, n: int) -> np.ndarray:
        lo, hi = self.params.act_range
        return self.rng.integers(lo, hi, n, endpoint=True)

    def length(self, vector) -> int:
        return len(vector["acts"])

    def lengths(self, count: int) -> list[int]:
        """``count`` vector lengths in 1..max_len (multiples of the PE's granule), with both ends."""
        step, top = self.granule, self.params.max_len
        ks = [step, top // step * step] + [int(k) * step for k in
                                           self.rng.integers(1, top // step, max(count - 2, 0), endpoint=True)]
        return ks[:max(count, 1)]

    granule = 1  # vector lengths must be multiples of this

    def one_beat(self) -> dict:
        """A random vector that fits one beat (for the II = 1 / latency check)."""
        return self.random(self.params.lanes)

    def random(self, k: int) -> dict: raise NotImplementedError
    def extremes(self) -> list[dict]: raise NotImplementedError
    def every_code(self) -> list[dict]: raise NotImplementedError
    def beats(self, vector) -> dict[str, np.ndarray]: raise NotImplementedError
    def golden(self, vector) -> int: raise NotImplementedError
    def from_batch(self, arrays: dict) -> list[dict]: raise NotImplementedError

    def payloads(self, vectors) -> list[int]:
        parts = [self.beats(v) for v in vectors]
        fields = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        return pack(self.params.input_layout, fields)


def last_beat_flags(n: int) -> np.ndarray:
    last = np.zeros(n, dtype=np.int64)
    last[-1] = 1
    return last


def lanes_of(values, n_beats: int, lanes: int) -> np.ndarray:
    """``values`` zero-padded to ``n_beats * lanes`` and split into beats."""
    out = np.zeros(n_beats * lanes, dtype=np.int64)
    out[:len(values)] = values
    return out.reshape(n_beats, lanes)


# -- batch API ---------------------------------------------------------------------------------

def run_batch_arrays(pe_name: str, params, arrays: dict[str, np.ndarray], *, p_valid: float = 1.0,
                     p_ready: float = 1.0, seed: int = 1, waves: bool = False) -> dict[str, np.ndarray]:
    """Run the ``batch`` cocotb test of ``pe_name`` on ``arrays`` (written to ``in.npz``, validated by the
    caller) in one simulation and return every array it wrote to ``out.npz``. The work directory under
    ``build/`` is removed when the run passed and kept, with its ``sim.log``, when it failed."""
    build_root().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="batch-", dir=build_root()))
    np.savez(work / "in.npz", **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    tests, failures = run(pe_name, params, testcases=["batch"], seed=seed, waves=waves,
                          tag=f"../../{work.name}",
                          extra={"batch_dir": str(work), "p_valid": p_valid, "p_ready": p_ready})
    if failures:
        raise SimulationError(f"RTL batch run failed; see {work / 'sim.log'}")
    with np.load(work / "out.npz") as out:
        result = {name: out[name] for name in out.files}
    shutil.rmtree(work, ignore_errors=True)
    return result


def run_batch(pe_name: str, params, arrays: dict[str, np.ndarray], *, p_valid: float = 1.0,
              p_ready: float = 1.0, seed: int = 1, waves: bool = False) -> np.ndarray:
    """Stream the rows of ``arrays`` (validated by the caller) through the RTL; int64 per row."""
    rows = len(next(iter(arrays.values())))
    if rows == 0:
        return np.zeros(0, dtype=np.int64)
    out = run_batch_arrays(pe_name, params, arrays, p_valid=p_valid, p_ready=p_ready, seed=seed, waves=waves)
    return out["y"].astype(np.int64)


# -- cocotb side -------------------------------------------------------------------------------

class VectorBench:
    """One PE under test: its params, its :class:`Vectors` and a :class:`StreamBench`."""

    def __init__(self, dut, *, p_valid: float = 1.0, p_ready: float = 1.0):
        self.pe, self.params, self.config = load_config()
        module = importlib.import_module(self.pe.tb_module)
        seed = int(os.environ.get("COCOTB_RANDOM_SEED", "1"))
        self.rng = np.random.default_rng(seed)
        self.vectors = module.VECTORS(self.params, self.rng)
        self.stream = StreamBench(dut, rng=self.rng, p_valid=p_valid, p_ready=p_ready)

    async def check(self, vectors, *, what: str, idle_after: int | None = None) -> list[tuple[int, int]]:
        """Send ``vectors``, compare every result with golden, in order.

        Afterwards the sink stays ready for ``idle_after`` cycles (default: latency + 8) and no
        further output may appear. Returns the ``(payload, cycle)`` pairs received.
        """
        expected = [self.vectors.golden(v) for v in vectors]
        if idle_after is None:
            idle_after = self.params.latency + 8
        got = await self.stream.run(self.vectors.payloads(vectors), outputs=len(vectors),
                                    idle_after=idle_after)
        for n, ((value, cycle), want) in enumerate(zip(got, expected)):
            y = to_signed(value, self.params.acc_bits)
            if y != want:
                shown = {k: ([int(e) for e in v[:8]] if hasattr(v, "__len__") else v)
                         for k, v in vectors[n].items()}
                raise AssertionError(f"{what}: vector {n} (K={self.vectors.length(vectors[n])}) gave {y}, "
                                     f"golden {want} (cycle {cycle}); first elements: {shown}")
        return got


@cocotb.test()
async def random_stalls(dut):
    """Random vectors, lengths 1..max_len, with random valid/ready stalls on both sides."""
    bench = VectorBench(dut)
    await bench.stream.start()
    count = int(bench.config.get("vectors", 40))
    for p_valid, p_ready in STALL_MIXES:
        bench.stream.p_valid, bench.stream.p_ready = p_valid, p_ready
        vectors = [bench.vectors.random(k) for k in bench.vectors.lengths(count)]
        await bench.check(vectors, what=f"random (p_valid={p_valid}, p_ready={p_ready})")


@cocotb.test()
async def extremes(dut):
    """Worst-case sums at max_len (both signs), all-zero vectors, min/max activations."""
    bench = VectorBench(dut, p_valid=0.7, p_ready=0.7)
    await bench.stream.start()
    await bench.check(bench.vectors.extremes(), what="extremes")


@cocotb.test()
async def every_code(dut):
    """Every weight-field value (and index) against extreme and random activations, in every lane."""
    bench = VectorBench(dut, p_valid=0.8, p_ready=0.8)
    await bench.stream.start()
    await bench.check(bench.vectors.every_code(), what="every code")


@cocotb.test()
async def reset_mid_vector(dut):
    """Reset with a vector half sent, and again with results waiting: nothing stale comes out."""
    bench = VectorBench(dut, p_valid=0.8, p_ready=0.8)
    await bench.stream.start()
    p, vec = bench.params, bench.vectors
    payloads = vec.payloads([vec.random(vec.lengths(2)[1])])
    last_bit = 1 << p.input_layout["last"].offset
    partial = payloads[:-1] or [payloads[0] & ~last_bit]  # everything but the `last` beat
    await bench.stream.run(partial, outputs=0, stop_after_inputs=True)
    await bench.stream.reset()
    fresh = [vec.random(k) for k in vec.lengths(4)]
    await bench.check(fresh, what="after reset mid-vector")
    # results pending in the pipeline and the output register while o.ready is low
    bench.stream.p_ready = 0.0
    short = [vec.random(vec.granule) for _ in range(p.latency + 2)]
    await bench.stream.run(vec.payloads(short), outputs=0, for_cycles=p.latency + 4)
    await bench.stream.reset()
    bench.stream.p_ready = 0.8
    await bench.check(fresh, what="after reset with results pending")


@cocotb.test()
async def throughput_and_latency(dut):
    """Without stalls: one beat per cycle (II = 1) and results exactly ``latency`` cycles later."""
    bench = VectorBench(dut)
    await bench.stream.start()
    p, vec = bench.params, bench.vectors
    vectors = [vec.one_beat() for _ in range(20)]
    assert all(len(vec.beats(v)["last"]) == 1 for v in vectors), "one_beat() gave a multi-beat vector"
    got = await bench.check(vectors, what="back to back", idle_after=0)
    # beat n is presented and accepted in cycle n (counting from 0, ending at edge n + 1); its result
    # is valid in cycle n + latency, and this bench stamps a sample with the edge ending its cycle
    cycles = [cycle for _, cycle in got]
    expected = [n + p.latency + 1 for n in range(len(vectors))]
    assert cycles == expected, f"results on cycles {cycles}, expected {expected} (II = 1, " \
                               f"latency {p.latency})"


@cocotb.test()
async def batch(dut):
    """Batch API: stream every row of ``in.npz`` and write the results to ``out.npz``."""
    bench = VectorBench(dut)
    work = Path(bench.config["batch_dir"])
    bench.stream.p_valid = float(bench.config.get("p_valid", 1.0))
    bench.stream.p_ready = float(bench.config.get("p_ready", 1.0))
    await bench.stream.start()
    with np.load(work / "in.npz") as data:
        vectors = bench.vectors.from_batch({k: data[k] for k in data.files})
    got = await bench.stream.run(bench.vectors.payloads(vectors), outputs=len(vectors),
                                 idle_after=bench.params.latency + 2)
    y = np.array([to_signed(v, bench.params.acc_bits) for v, _ in got], dtype=np.int64)
    np.savez(work / "out.npz", y=y, cycles=bench.stream.cycles)


@cocotb.test()
async def random_vectors(dut):
    """``peforge sim``: random vectors (lengths 1..max_len) under stalls; writes a summary JSON."""
    config = load_config()[2]
    bench = VectorBench(dut, p_valid=float(config.get("p_valid", 0.5)),
                        p_ready=float(config.get("p_ready", 0.5)))
    await bench.stream.start()
    vectors = [bench.vectors.random(k) for k in bench.vectors.lengths(int(config.get("vectors", 100)))]
    payloads = bench.vectors.payloads(vectors)
    summary = {"vectors": len(vectors), "elements": int(sum(map(bench.vectors.length, vectors))),
               "beats": len(payloads), "error": None}
    await run_with_summary(bench.stream, bench.check(vectors, what="random"), summary,
                           config["summary"])


#: the cocotb tests every vector PE runs in pytest (``batch`` and ``random_vectors`` serve the APIs)
CHECKS = ["random_stalls", "extremes", "every_code", "reset_mid_vector", "throughput_and_latency"]
