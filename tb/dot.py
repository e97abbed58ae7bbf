"""Testbench shared by the dot-product PEs (``sp2-mac``, ``fixed-mac``).

The cocotb tests below are imported by ``tb/sp2_mac.py`` and ``tb/fixed_mac.py`` (cocotb discovers
them there); each PE module supplies ``golden(acts, weights, params)`` from ``sw`` and the set of
weight-field values it accepts. Expected values always come from the ``sw`` golden function.

The batch API :func:`rtl_dot` runs whole arrays through the RTL and returns what the RTL computed.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import cocotb

from sw.intops import as_int_array, int_range

from .runner import SimulationError, build_root, load_config, run
from .stream import StreamBench, pack, to_signed

__all__ = ["rtl_dot", "DotBench"]


# -- shared helpers (also used outside the simulator) ---------------------------------------------

def weight_field_range(params) -> tuple[int, int]:
    """Range of the raw weight field of one lane (SP2 codes are unsigned, fixed weights signed)."""
    shape = params.weight_shape
    return int_range(shape.width, shape.signed)


def to_beats(params, acts: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Split one vector into beats of ``lanes`` elements, zero-padding the final beat."""
    lanes = params.lanes
    n = -(-len(acts) // lanes)
    a = np.zeros(n * lanes, dtype=np.int64)
    w = np.zeros(n * lanes, dtype=np.int64)  # code 0 and weight 0 both mean v = 0
    a[:len(acts)] = acts
    w[:len(weights)] = weights
    last = np.zeros(n, dtype=np.int64)
    last[-1] = 1
    return {"acts": a.reshape(n, lanes), params.weight_field: w.reshape(n, lanes), "last": last}


def vectors_to_payloads(params, vectors) -> list[int]:
    parts = [to_beats(params, a, w) for a, w in vectors]
    fields = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    return pack(params.input_layout, fields)


def check_batch(params, acts, weights) -> tuple[np.ndarray, np.ndarray]:
    """Validate batch-API inputs: shapes, value ranges and the length limit."""
    acts = as_int_array("Acts", acts, *params.act_range)
    if acts.ndim != 2:
        raise ValueError(f"Acts must be a 2-D array [rows, K], not shape {acts.shape}")
    name = params.weight_field.capitalize()
    weights = as_int_array(name, weights, *weight_field_range(params))
    if weights.ndim == 1:
        weights = np.broadcast_to(weights, acts.shape)
    if weights.shape != acts.shape:
        raise ValueError(f"{name} must have shape [K] or {list(acts.shape)} like the acts, "
                         f"not {list(weights.shape)}")
    if acts.shape[1] < 1:
        raise ValueError("Vector length K must be at least 1, not 0")
    if acts.shape[1] > params.max_len:
        raise ValueError(f"Vector length K must be at most max_len={params.max_len}, "
                         f"not {acts.shape[1]}")
    return acts, weights


# -- batch API ---------------------------------------------------------------------------------

def rtl_dot(pe_name: str, acts, weights, params, *, p_valid: float = 1.0, p_ready: float = 1.0,
            seed: int = 1, waves: bool = False) -> np.ndarray:
    """Run ``rows`` dot products through the generated RTL; one int64 result per row.

    The design for ``params`` is generated and compiled once (cached by a hash of the params); all
    rows stream through one simulation, back to back unless ``p_valid``/``p_ready`` add stalls.
    """
    acts, weights = check_batch(params, acts, weights)
    if acts.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    build_root().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="batch-", dir=build_root()))
    np.savez(work / "in.npz", acts=acts, weights=np.ascontiguousarray(weights))
    tests, failures = run(pe_name, params, testcases=["batch"], seed=seed, waves=waves,
                          tag=f"../../{work.name}",
                          extra={"batch_dir": str(work), "p_valid": p_valid, "p_ready": p_ready})
    if failures:
        raise SimulationError(f"RTL batch run failed; see {work / 'sim.log'}")
    with np.load(work / "out.npz") as out:
        result = out["y"].astype(np.int64)
    for name in ("in.npz", "out.npz"):
        (work / name).unlink(missing_ok=True)
    return result


# -- cocotb side -------------------------------------------------------------------------------

class DotBench:
    """One dot-product PE under test: its params, golden model and a :class:`StreamBench`."""

    def __init__(self, dut, *, p_valid: float = 1.0, p_ready: float = 1.0):
        self.pe, self.params, self.config = load_config()
        self.module = importlib.import_module(self.pe.tb_module)
        seed = int(os.environ.get("COCOTB_RANDOM_SEED", "1"))
        self.rng = np.random.default_rng(seed)
        self.stream = StreamBench(dut, rng=self.rng, p_valid=p_valid, p_ready=p_ready)
        self.dut = dut

    # random data
    def random_acts(self, n: int) -> np.ndarray:
        lo, hi = self.params.act_range
        return self.rng.integers(lo, hi, n, endpoint=True)

    def random_weights(self, n: int) -> np.ndarray:
        lo, hi = weight_field_range(self.params)
        return self.rng.integers(lo, hi, n, endpoint=True)

    def golden(self, vectors) -> list[int]:
        out = []
        for acts, weights in vectors:
            y = self.module.golden(np.asarray(acts)[None, :], np.asarray(weights), self.params)
            out.append(int(y[0]))
        return out

    async def check(self, vectors, *, what: str, idle_after: int | None = None) -> list[tuple[int, int]]:
        """Send ``vectors`` [(acts, weights)], compare every result with golden, in order.

        Afterwards the sink stays ready for ``idle_after`` cycles (default: latency + 8) and no
        further output may appear. Returns the ``(payload, cycle)`` pairs received.
        """
        expected = self.golden(vectors)
        payloads = vectors_to_payloads(self.params, vectors)
        if idle_after is None:
            idle_after = self.params.latency + 8
        got = await self.stream.run(payloads, outputs=len(vectors), idle_after=idle_after)
        width = self.params.acc_bits
        for n, ((value, cycle), want) in enumerate(zip(got, expected)):
            y = to_signed(value, width)
            if y != want:
                acts, weights = vectors[n]
                raise AssertionError(
                    f"{what}: vector {n} (K={len(acts)}) gave {y}, golden {want} (cycle {cycle}); "
                    f"acts={list(acts)[:8]}..., weights={list(weights)[:8]}...")
        return got


def _lengths(rng, max_len: int, count: int) -> list[int]:
    """``count`` vector lengths in 1..max_len, always including 1 and max_len."""
    lengths = [1, max_len] + [int(k) for k in rng.integers(1, max_len, max(count - 2, 0), endpoint=True)]
    return lengths[:max(count, 1)]


@cocotb.test()
async def random_stalls(dut):
    """Random vectors, lengths 1..max_len, with random valid/ready stalls on both sides."""
    bench = DotBench(dut)
    await bench.stream.start()
    count = int(bench.config.get("vectors", 40))
    for p_valid, p_ready in [(1.0, 1.0), (0.5, 0.5), (0.9, 0.2), (0.2, 0.9)]:
        bench.stream.p_valid, bench.stream.p_ready = p_valid, p_ready
        vectors = [(bench.random_acts(k), bench.random_weights(k))
                   for k in _lengths(bench.rng, bench.params.max_len, count)]
        await bench.check(vectors, what=f"random (p_valid={p_valid}, p_ready={p_ready})")


@cocotb.test()
async def extremes(dut):
    """Worst-case sums at max_len (both signs), all-zero vectors, min/max activations."""
    bench = DotBench(dut, p_valid=0.7, p_ready=0.7)
    await bench.stream.start()
    p = bench.params
    a_lo, a_hi = p.act_range
    weights = bench.module.extreme_weights(p)  # raw field values giving the most +/- weight
    vectors = []
    for k in sorted({1, p.lanes, p.max_len}):
        for a in (a_lo, a_hi, 0):
            for w in weights + [0]:
                vectors.append((np.full(k, a), np.full(k, w)))
    await bench.check(vectors, what="extremes")


@cocotb.test()
async def every_code(dut):
    """Every weight-field value against the extreme and a random activation, in every lane."""
    bench = DotBench(dut, p_valid=0.8, p_ready=0.8)
    await bench.stream.start()
    p = bench.params
    codes = bench.module.all_weights(p)
    a_lo, a_hi = p.act_range
    vectors = []
    for a in (a_lo, a_hi, int(bench.random_acts(1)[0])):
        for lane in range(p.lanes):  # the code under test sits in `lane`, the rest are zero
            for start in range(0, len(codes), 64):
                chunk = codes[start:start + 64]
                vectors += [(np.full(lane + 1, a), np.r_[np.zeros(lane, int), c]) for c in chunk]
    # and all codes in one long vector
    vectors.append((bench.random_acts(len(codes)) if len(codes) <= p.max_len else bench.random_acts(p.max_len),
                    np.resize(codes, min(len(codes), p.max_len))))
    await bench.check(vectors, what="every code")


@cocotb.test()
async def reset_mid_vector(dut):
    """Reset with a vector half sent, and again with results waiting: nothing stale comes out."""
    bench = DotBench(dut, p_valid=0.8, p_ready=0.8)
    await bench.stream.start()
    p = bench.params
    k = p.max_len
    payloads = vectors_to_payloads(p, [(bench.random_acts(k), bench.random_weights(k))])
    last_bit = 1 << p.input_layout["last"].offset
    partial = payloads[:-1] or [payloads[0] & ~last_bit]  # everything but the `last` beat
    await bench.stream.run(partial, outputs=0, stop_after_inputs=True)
    await bench.stream.reset()
    fresh = [(bench.random_acts(n), bench.random_weights(n)) for n in (1, p.lanes + 1, k)]
    await bench.check(fresh, what="after reset mid-vector")
    # results pending in the pipeline and the output register while o.ready is low
    bench.stream.p_ready = 0.0
    short = [(bench.random_acts(1), bench.random_weights(1)) for _ in range(p.latency + 2)]
    await bench.stream.run(vectors_to_payloads(p, short), outputs=0, for_cycles=p.latency + 4)
    await bench.stream.reset()
    bench.stream.p_ready = 0.8
    await bench.check(fresh, what="after reset with results pending")


@cocotb.test()
async def throughput_and_latency(dut):
    """Without stalls: one beat per cycle (II = 1) and results exactly ``latency`` cycles later."""
    bench = DotBench(dut)
    await bench.stream.start()
    p = bench.params
    vectors = [(bench.random_acts(p.lanes), bench.random_weights(p.lanes)) for _ in range(20)]
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
    bench = DotBench(dut)
    work = Path(bench.config["batch_dir"])
    bench.stream.p_valid = float(bench.config.get("p_valid", 1.0))
    bench.stream.p_ready = float(bench.config.get("p_ready", 1.0))
    await bench.stream.start()
    with np.load(work / "in.npz") as data:
        acts, weights = data["acts"], data["weights"]
    payloads = vectors_to_payloads(bench.params, list(zip(acts, weights)))
    got = await bench.stream.run(payloads, outputs=len(acts), idle_after=bench.params.latency + 2)
    y = np.array([to_signed(v, bench.params.acc_bits) for v, _ in got], dtype=np.int64)
    np.savez(work / "out.npz", y=y, cycles=bench.stream.cycles)


@cocotb.test()
async def random_vectors(dut):
    """``peforge sim``: random vectors (lengths 1..max_len) under stalls; writes a summary JSON."""
    config = load_config()[2]
    bench = DotBench(dut, p_valid=float(config.get("p_valid", 0.5)),
                     p_ready=float(config.get("p_ready", 0.5)))
    await bench.stream.start()
    lengths = _lengths(bench.rng, bench.params.max_len, int(config.get("vectors", 100)))
    vectors = [(bench.random_acts(k), bench.random_weights(k)) for k in lengths]
    summary = {"vectors": len(vectors), "elements": int(sum(lengths)),
               "beats": int(sum(-(-k // bench.params.lanes) for k in lengths)), "error": None}
    start, cycles = time.perf_counter(), bench.stream.cycles
    try:
        await bench.check(vectors, what="random")
    except AssertionError as exc:
        summary["error"] = str(exc).splitlines()[0]
        raise
    finally:
        summary["cycles"] = bench.stream.cycles - cycles
        summary["seconds"] = time.perf_counter() - start
        Path(config["summary"]).write_text(json.dumps(summary))
