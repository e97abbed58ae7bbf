"""cocotb testbench and batch API of ``crossbar`` (:class:`hw.crossbar.CrossbarSystem`).

The system is configured before it computes: the sign bits through ``cfg`` (one sub-array per beat) and
the cell levels through ``w`` (one row per beat), both from :func:`sw.forms.map_weights`. Every result is
compared with :func:`sw.forms.golden_mvm` (``y`` and the number of array reads, ``steps``, which the PE
reports in its output payload); the tests also count the ``start`` pulses on the internal array port
(``array__start``, visible in the flat Verilog) as an independent count of the reads issued.

Weights are random polarised matrices (every fragment has a random sign; some fragments are all zero,
some all at the largest magnitude); inputs mix uniform random vectors, sparse ones, all-zero vectors,
single set bits, full scale and vectors that drive only one sub-array.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from sw.forms import active_planes, golden_mvm, map_weights
from sw.intops import as_int_array

from .runner import SimulationError, build_root, load_config, run
from .stream import StreamBench, pack, run_with_summary, to_signed

__all__ = ["rtl_mvm", "CHECKS", "CrossbarBench", "random_weights", "random_inputs"]


# -- stimulus ----------------------------------------------------------------------------------------

def random_weights(fmt, rng: np.random.Generator, *, kind: str = "random") -> np.ndarray:
    """Polarised integer weights ``[rows, cols]``: ``kind`` is random, max (all +w_max), min (all -w_max)."""
    if kind == "max":
        return np.full((fmt.rows, fmt.cols), fmt.w_max, dtype=np.int64)
    if kind == "min":
        return np.full((fmt.rows, fmt.cols), -fmt.w_max, dtype=np.int64)
    mags = rng.integers(0, fmt.w_max, (fmt.rows, fmt.cols), endpoint=True)
    mags = np.where(rng.random(mags.shape) < 0.2, 0, mags)
    frag = mags.reshape(fmt.sub_arrays, fmt.rows_per_sub, fmt.cols)
    style = rng.integers(0, 8, (fmt.sub_arrays, fmt.cols))
    frag = np.where(style[:, None, :] == 0, 0, frag)                 # all-zero fragment
    frag = np.where(style[:, None, :] == 1, fmt.w_max, frag)         # full-scale fragment
    sign = np.where(rng.random((fmt.sub_arrays, fmt.cols)) < 0.5, -1, 1)
    return (frag * sign[:, None, :]).reshape(fmt.rows, fmt.cols)


def random_inputs(fmt, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` input vectors ``[n, rows]`` of mixed kinds (see the module docstring)."""
    out = np.zeros((n, fmt.rows), dtype=np.int64)
    for v in range(n):
        kind = rng.integers(0, 7)
        if kind == 0:
            out[v] = rng.integers(0, fmt.act_max, fmt.rows, endpoint=True)
        elif kind == 1:  # sparse values
            out[v] = rng.integers(0, fmt.act_max, fmt.rows, endpoint=True) * (rng.random(fmt.rows) < 0.2)
        elif kind == 2:  # sparse bit-planes: a few planes in use
            planes = rng.random(fmt.act_bits) < 0.3
            mask = int(sum(1 << q for q in np.flatnonzero(planes)))
            out[v] = rng.integers(0, fmt.act_max, fmt.rows, endpoint=True) & mask
        elif kind == 3:  # a single set bit
            out[v, rng.integers(fmt.rows)] = 1 << int(rng.integers(fmt.act_bits))
        elif kind == 4:  # full scale
            out[v] = fmt.act_max
        elif kind == 5:  # one sub-array only
            k = int(rng.integers(fmt.sub_arrays))
            rows = slice(k * fmt.rows_per_sub, (k + 1) * fmt.rows_per_sub)
            out[v, rows] = rng.integers(0, fmt.act_max, fmt.rows_per_sub, endpoint=True)
        # kind 6: all zero
    return out


# -- cocotb side --------------------------------------------------------------------------------------

class CrossbarBench:
    """The system under test: configuration loading, the i/o streams and the golden comparison."""

    def __init__(self, dut, *, p_valid: float = 1.0, p_ready: float = 1.0):
        self.dut = dut
        self.pe, self.params, self.config = load_config()
        self.fmt = self.params.fmt
        seed = int(os.environ.get("COCOTB_RANDOM_SEED", "1"))
        self.rng = np.random.default_rng(seed)
        self.stream = StreamBench(dut, rng=self.rng, p_valid=p_valid, p_ready=p_ready)
        self.mapping = None
        self.starts = 0
        self._counting = False

    async def start(self):
        self.dut.cfg__valid.value = 0
        self.dut.w__valid.value = 0
        await self.stream.start()
        if not self._counting:
            self._counting = True
            cocotb.start_soon(self._count_starts())

    async def _count_starts(self):
        """Count the cycles with ``start`` high on the internal array port (reads issued)."""
        dut = self.dut
        start = dut.array__start
        while True:
            await RisingEdge(dut.clk)
            if int(dut.rst.value) == 0 and int(start.value):
                self.starts += 1

    async def _send(self, valid, ready, payload, words):
        for word in words:
            payload.value = word
            valid.value = 1
            while True:
                await ReadOnly()
                accepted = int(ready.value)
                await RisingEdge(self.dut.clk)
                if accepted:
                    break
        valid.value = 0

    async def load(self, mapping):
        """Sign bits through ``cfg``, then cell levels through ``w``, one beat each."""
        p, f = self.params, self.fmt
        cfg = [k | (int(sum(int(b) << c for c, b in enumerate(mapping.signs[k]))) << p.sub_bits)
               for k in range(f.sub_arrays)]
        cell_words = pack(p.load_layout, {
            "row": np.arange(f.rows), "cells": mapping.cells})
        await self._send(self.dut.cfg__valid, self.dut.cfg__ready, self.dut.cfg__payload, cfg)
        await self._send(self.dut.w__valid, self.dut.w__ready, self.dut.w__payload, cell_words)
        self.mapping = mapping

    def payloads(self, x) -> list[int]:
        return pack(self.params.input_layout, {"x": np.asarray(x, dtype=np.int64).reshape(-1, self.fmt.rows)})

    def decode(self, value: int) -> tuple[list[int], int]:
        yb, cols = self.fmt.y_bits, self.fmt.cols
        mask = (1 << yb) - 1
        return [to_signed((value >> (c * yb)) & mask, yb) for c in range(cols)], value >> (cols * yb)

    def max_cycles(self, n: int) -> int:
        worst = self.params.vector_cycles([self.fmt.act_bits] * self.fmt.sub_arrays)
        slow = max(min(self.stream.p_valid, self.stream.p_ready), 0.05)
        return int(200 + n * (worst + 4) / slow)

    async def compute(self, x) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Stream ``x [N, rows]``; return ``y [N, cols]``, ``steps [N]`` and the result cycles."""
        x = np.asarray(x, dtype=np.int64).reshape(-1, self.fmt.rows)
        got = await self.stream.run(self.payloads(x), outputs=len(x), max_cycles=self.max_cycles(len(x)),
                                    idle_after=self.params.array_latency + 4)
        ys, steps = zip(*(self.decode(v) for v, _ in got)) if got else ((), ())
        return (np.array(ys, dtype=np.int64).reshape(len(x), self.fmt.cols), np.array(steps, dtype=np.int64),
                [c for _, c in got])

    async def check(self, x, *, what: str) -> list[int]:
        """Stream ``x``, compare ``y``, ``steps`` and the counted ``start`` pulses with golden_mvm."""
        x = np.asarray(x, dtype=np.int64).reshape(-1, self.fmt.rows)
        want_y, want_steps = golden_mvm(x, self.mapping, self.fmt, zero_skip=self.params.zero_skip)
        starts = self.starts
        y, steps, cycles = await self.compute(x)
        for n in range(len(x)):
            if not np.array_equal(y[n], want_y[n]) or steps[n] != want_steps[n]:
                raise AssertionError(f"{what}: vector {n} gave y={y[n].tolist()} in {steps[n]} steps, golden "
                                     f"y={want_y[n].tolist()} in {want_steps[n]} steps; x={x[n].tolist()}")
        counted = self.starts - starts
        assert counted == int(want_steps.sum()), \
            f"{what}: {counted} start pulses on the array port, golden {int(want_steps.sum())} reads"
        return cycles


async def _loaded_bench(dut, kind: str = "random", **kwargs) -> CrossbarBench:
    bench = CrossbarBench(dut, **kwargs)
    await bench.start()
    await bench.load(map_weights(random_weights(bench.fmt, bench.rng, kind=kind), bench.fmt))
    return bench


@cocotb.test()
async def random_stalls(dut):
    """Mixed random/sparse/zero/single-bit/full-scale vectors under random stalls; weights reloaded."""
    bench = CrossbarBench(dut)
    await bench.start()
    count = int(bench.config.get("vectors", 24))
    for kind, (p_valid, p_ready) in zip(["random", "random", "max", "min", "random"],
                                        [(1.0, 1.0), (0.5, 0.5), (0.9, 0.2), (0.2, 0.9), (0.7, 0.7)]):
        await bench.load(map_weights(random_weights(bench.fmt, bench.rng, kind=kind), bench.fmt))
        bench.stream.p_valid, bench.stream.p_ready = p_valid, p_ready
        await bench.check(random_inputs(bench.fmt, bench.rng, count),
                          what=f"{kind} weights (p_valid={p_valid}, p_ready={p_ready})")


@cocotb.test()
async def edge_vectors(dut):
    """Every single set bit on every row, all-zero and full-scale vectors, on random weights."""
    bench = await _loaded_bench(dut, p_valid=0.8, p_ready=0.8)
    f = bench.fmt
    rows = np.arange(f.rows) if f.rows * f.act_bits <= 512 else bench.rng.choice(f.rows, 512 // f.act_bits)
    singles = [np.eye(f.rows, dtype=np.int64)[r] << q for r in rows for q in range(f.act_bits)]
    x = np.array(singles + [np.zeros(f.rows, np.int64), np.full(f.rows, f.act_max)])
    await bench.check(x, what="edge vectors")


@cocotb.test()
async def timing(dut):
    """Without stalls: each result exactly ``vector_cycles`` after its vector; next vector at once."""
    bench = await _loaded_bench(dut)
    p, f = bench.params, bench.fmt
    x = random_inputs(f, bench.rng, 20)
    cycles = await bench.check(x, what="back to back")
    reads = active_planes(x, f).sum(axis=-1) if p.zero_skip else np.full((len(x), f.sub_arrays), f.act_bits)
    accept, expected = 0, []
    for n in range(len(x)):  # vector n accepted in cycle `accept`; its result stamped at the edge ending
        done = accept + p.vector_cycles(reads[n].tolist())  # cycle `done`, when the next one is accepted
        expected.append(done + 1)
        accept = done
    assert cycles == expected, f"results on cycles {cycles}, expected {expected}"


@cocotb.test()
async def reset_mid_vector(dut):
    """Reset with a vector in flight, and with a result waiting: nothing stale; configuration kept."""
    bench = await _loaded_bench(dut, p_valid=0.8, p_ready=0.8)
    f = bench.fmt
    full = np.full((1, f.rows), f.act_max)
    await bench.stream.run(bench.payloads(full), outputs=0, stop_after_inputs=True)
    await bench.stream.run([], outputs=0, for_cycles=3)  # a few reads into the vector
    await bench.stream.reset()
    await bench.check(random_inputs(f, bench.rng, 6), what="after reset mid-vector")
    bench.stream.p_ready = 0.0
    await bench.stream.run(bench.payloads(np.vstack([full, full])), outputs=0,
                           for_cycles=2 * bench.params.vector_cycles([f.act_bits] * f.sub_arrays) + 4)
    assert int(dut.o__valid.value) == 1, "no result was pending before the reset"
    await bench.stream.reset()
    bench.stream.p_ready = 0.8
    await bench.check(random_inputs(f, bench.rng, 6), what="after reset with a result pending")


@cocotb.test()
async def batch(dut):
    """Batch API: load ``signs``/``cells`` from ``in.npz``, stream ``x``, write ``y``/``steps`` to ``out.npz``."""
    from sw.forms import Mapping

    bench = CrossbarBench(dut, p_valid=float(load_config()[2].get("p_valid", 1.0)),
                          p_ready=float(load_config()[2].get("p_ready", 1.0)))
    work = Path(bench.config["batch_dir"])
    await bench.start()
    with np.load(work / "in.npz") as data:
        x, mapping = data["x"], Mapping(data["signs"], data["cells"])
    await bench.load(mapping)
    starts = bench.starts
    y, steps, _ = await bench.compute(x)
    np.savez(work / "out.npz", y=y, steps=steps, starts=bench.starts - starts, cycles=bench.stream.cycles)


@cocotb.test()
async def random_vectors(dut):
    """``peforge sim``: random weights and mixed vectors under stalls; writes a summary JSON."""
    config = load_config()[2]
    bench = await _loaded_bench(dut, p_valid=float(config.get("p_valid", 0.5)),
                                p_ready=float(config.get("p_ready", 0.5)))
    x = random_inputs(bench.fmt, bench.rng, int(config.get("vectors", 100)))
    summary = {"vectors": len(x), "elements": int(x.size), "beats": len(x), "error": None}
    await run_with_summary(bench.stream, bench.check(x, what="random"), summary,
                           config["summary"])


#: the cocotb tests pytest runs (``batch`` and ``random_vectors`` serve the APIs)
CHECKS = ["random_stalls", "edge_vectors", "timing", "reset_mid_vector"]


# -- batch API -----------------------------------------------------------------------------------------

def rtl_mvm(x, weights, params, *, p_valid: float = 1.0, p_ready: float = 1.0, seed: int = 1,
            waves: bool = False):
    """:func:`sw.forms.golden_mvm` computed by the RTL (controller + :class:`hw.crossbar.IdealArray`).

    Parameters
    ----------
    x : int array [rows] or [N, rows]
        Unsigned ``fmt.act_bits`` inputs.
    weights : int array [rows, cols]
        Polarised integer weights (magnitudes up to ``fmt.w_max``); mapped with :func:`sw.forms.map_weights`.
    params : hw.crossbar.CrossbarParams
    p_valid, p_ready : float
        Probability of offering an input / accepting a result per cycle (1.0: no stalls).

    Returns
    -------
    (y, steps)
        Like ``golden_mvm``: ``y`` int64 [N, cols] and ``steps`` int64 [N] (the reads of each vector, as
        reported by the PE and checked against the ``start`` pulses counted on the array port), or
        ``y [cols]`` and an int for a 1-D ``x``. The total number of reads is ``steps.sum()``.

    Raises
    ------
    TypeError, ValueError
        ``"Crossbar inputs must be integers from 0 to 255, not 256 (at index (0, 3))"``,
        ``"Crossbar inputs must have shape (32,) or (N, 32), not (31,)"``, and map_weights' errors.
    """
    from hw.crossbar import CrossbarParams

    if not isinstance(params, CrossbarParams):
        raise TypeError(f"Crossbar params must be CrossbarParams, not {params!r}")
    fmt = params.fmt
    arr = as_int_array("Crossbar inputs", x, 0, fmt.act_max)
    if arr.ndim not in (1, 2) or arr.shape[-1] != fmt.rows:
        raise ValueError(f"Crossbar inputs must have shape ({fmt.rows},) or (N, {fmt.rows}), not {arr.shape}")
    mapping = map_weights(weights, fmt)
    x2 = arr.reshape(-1, fmt.rows)
    if len(x2) == 0:
        return np.zeros((0, fmt.cols), np.int64), np.zeros(0, np.int64)
    build_root().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="batch-", dir=build_root()))
    np.savez(work / "in.npz", x=x2, signs=mapping.signs, cells=mapping.cells)
    tests, failures = run("crossbar", params, testcases=["batch"], seed=seed, waves=waves,
                          tag=f"../../{work.name}",
                          extra={"batch_dir": str(work), "p_valid": p_valid, "p_ready": p_ready})
    if failures:
        raise SimulationError(f"RTL batch run failed; see {work / 'sim.log'}")
    with np.load(work / "out.npz") as out:
        y, steps, starts = out["y"].astype(np.int64), out["steps"].astype(np.int64), int(out["starts"])
    for name in ("in.npz", "out.npz"):
        (work / name).unlink(missing_ok=True)
    if starts != int(steps.sum()):
        raise SimulationError(f"The PE reported {int(steps.sum())} reads but {starts} start pulses were counted")
    if arr.ndim == 1:
        return y[0], int(steps[0])
    return y, steps
