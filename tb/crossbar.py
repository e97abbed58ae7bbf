"""cocotb testbench and batch API of ``crossbar``: the controller with the RTL array emulator, and alone.

Two designs run the same tests (PyMTL3's "test cases written once, run at every level"):

* ``crossbar`` (:class:`hw.crossbar.CrossbarSystem`): controller + the synthesizable ideal-array emulator.
  The sign bits go in through ``cfg`` (one sub-array per beat), the cell levels through ``w`` (one row per
  beat), both from :func:`sw.forms.map_weights`.
* ``crossbar-controller`` (:class:`hw.crossbar.CrossbarController`): the controller alone, its array port
  answered by :class:`ArrayModel`, a coroutine around a Python array model of :mod:`sw.forms`
  (:class:`sw.forms.IdealArray`, or the seeded :class:`sw.forms.NonIdealArray` when the configuration holds
  ``array_model``), with an ADC latency drawn at random for every read (``latency = [lo, hi]``) and random
  codes on ``adc`` while ``valid`` is low.

Every result is compared with :func:`sw.forms.golden_mvm`: ``y`` and the number of array reads (``steps``,
which the PE reports in its output payload), and the ``start`` pulses on the array port are counted as an
independent count of the reads issued. With the non-ideal model, the expected codes come from a second
:class:`sw.forms.NonIdealArray` of the same seed driven by ``golden_mvm`` in the RTL's read order, so the
comparison stays exact.

Weights are random polarised matrices (every fragment has a random sign; some fragments are all zero,
some all at the largest magnitude); inputs mix uniform random vectors, sparse ones, all-zero vectors,
single set bits, full scale and vectors that drive only one sub-array.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path

import numpy as np

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from sw.forms import IdealArray, NonIdealArray, Steps, active_planes, golden_mvm, map_weights
from sw.intops import as_int_array

from .runner import SimulationError, load_config
from .stream import StreamBench, pack, run_with_summary, to_signed
from .vector import run_batch_arrays

__all__ = ["rtl_mvm", "CHECKS", "CrossbarBench", "ArrayModel", "random_weights", "random_inputs"]


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

class ArrayModel:
    """A Python crossbar behind the controller's array port (the ``crossbar-controller`` design).

    Follows :class:`hw.crossbar.ArraySignature`: a read whose ``start`` is high in cycle ``t`` (``sub`` and
    ``wl`` sampled then) is answered with ``valid`` high for one cycle ``t + latency`` later, ``latency``
    drawn uniformly from ``[lo, hi]`` per read, answers in order and never two in one cycle. While
    ``valid`` is low, ``adc`` carries random codes (they are don't-care). ``rst`` drops the reads in flight
    (the array resets with the system). ``model`` is anything with ``read(sub, wl [1, rows_per_sub])``
    (:class:`sw.forms.IdealArray`, :class:`sw.forms.NonIdealArray`); it may be swapped between vectors.
    """

    def __init__(self, dut, params, rng: np.random.Generator, *, latency: tuple[int, int] = (1, 1)):
        self.dut, self.params, self.rng = dut, params, rng
        self.latency = latency
        self.model = None
        self.reads = 0
        f = params.fmt
        self._adc_bits = f.adc_bits * f.physical_cols

    def _word(self, codes: np.ndarray) -> int:
        bits = self.params.fmt.adc_bits
        return sum(int(c) << (j * bits) for j, c in enumerate(codes))

    async def run(self):
        dut, rps = self.dut, self.params.fmt.rows_per_sub
        queue: deque[tuple[int, int]] = deque()   # (cycle of valid, packed codes)
        cycle = 0
        dut.array__valid.value = 0
        while True:
            await ReadOnly()
            if int(dut.rst.value):
                queue.clear()
            elif int(dut.array__start.value):
                sub, wl = int(dut.array__sub.value), int(dut.array__wl.value)
                codes = self.model.read(sub, [[(wl >> r) & 1 for r in range(rps)]])[0]
                lo, hi = self.latency
                due = cycle + int(self.rng.integers(lo, hi, endpoint=True))
                if queue:
                    due = max(due, queue[-1][0] + 1)
                queue.append((due, self._word(codes)))
                self.reads += 1
            await RisingEdge(dut.clk)
            cycle += 1
            if queue and queue[0][0] == cycle:
                dut.array__adc.value = queue.popleft()[1]
                dut.array__valid.value = 1
            else:
                noise = int.from_bytes(self.rng.bytes((self._adc_bits + 7) // 8), "little")
                dut.array__adc.value = noise & ((1 << self._adc_bits) - 1)
                dut.array__valid.value = 0


class CrossbarBench:
    """The design under test: configuration loading, the i/o streams, the array model, the golden check."""

    def __init__(self, dut, *, p_valid: float = 1.0, p_ready: float = 1.0):
        from hw.crossbar import CrossbarController

        self.dut = dut
        self.pe, self.params, self.config = load_config()
        self.fmt = self.params.fmt
        seed = int(os.environ.get("COCOTB_RANDOM_SEED", "1"))
        self.rng = np.random.default_rng(seed)
        self.stream = StreamBench(dut, rng=self.rng, p_valid=p_valid, p_ready=p_ready)
        self.mapping = None
        self.starts = 0
        self._counting = False
        #: the controller alone: its array port is answered by a Python model
        self.port = None
        if issubclass(self.pe.component_cls, CrossbarController):
            lo, hi = self.config.get("latency", [1, 4])
            self.port = ArrayModel(dut, self.params, np.random.default_rng(seed + 1), latency=(lo, hi))
        self.array_model = self.config.get("array_model")   # NonIdealArray settings, or None (ideal)
        if self.array_model is not None and self.port is None:
            raise ValueError(f"Array model must be used with the controller alone, not with {self.pe.name!r}")
        self._model_seed = int((self.array_model or {}).get("seed", 0))
        self.expected_array = None

    @property
    def max_latency(self) -> int:
        return self.port.latency[1] if self.port else self.params.array_latency

    async def start(self):
        self.dut.cfg__valid.value = 0
        if self.port is None:
            self.dut.w__valid.value = 0
        if not self._counting:
            self._counting = True
            cocotb.start_soon(self._count_starts())
            if self.port is not None:
                cocotb.start_soon(self.port.run())
        await self.stream.start()

    async def _count_starts(self):
        """Count the cycles with ``start`` high on the array port (reads issued)."""
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
        """Sign bits through ``cfg``, then cell levels through ``w`` (or into the Python model), one beat each."""
        p, f = self.params, self.fmt
        cfg = [k | (int(sum(int(b) << c for c, b in enumerate(mapping.signs[k]))) << p.sub_bits)
               for k in range(f.sub_arrays)]
        await self._send(self.dut.cfg__valid, self.dut.cfg__ready, self.dut.cfg__payload, cfg)
        if self.port is None:
            cell_words = pack(p.load_layout, {"row": np.arange(f.rows), "cells": mapping.cells})
            await self._send(self.dut.w__valid, self.dut.w__ready, self.dut.w__payload, cell_words)
        self.mapping = mapping
        self.fresh_models()

    def fresh_models(self):
        """A new array model for the design (controller alone) and its twin for the expected values.

        Ideal: both :class:`sw.forms.IdealArray` (stateless). Non-ideal: two :class:`sw.forms.NonIdealArray`
        of one new seed, so the device draws and the read noise of the design's reads and of the expected
        reads (``golden_mvm`` in the RTL's order) are the same numbers. Call only while no read is in flight.
        """
        if self.array_model is None:
            self.expected_array = None
            if self.port is not None:
                self.port.model = IdealArray(self.mapping, self.fmt)
            return
        self._model_seed += 1
        settings = {**self.array_model, "seed": self._model_seed}
        self.expected_array = NonIdealArray(self.mapping, self.fmt, **settings)
        self.port.model = NonIdealArray(self.mapping, self.fmt, **settings)

    def payloads(self, x) -> list[int]:
        return pack(self.params.input_layout, {"x": np.asarray(x, dtype=np.int64).reshape(-1, self.fmt.rows)})

    def decode(self, value: int) -> tuple[list[int], int]:
        yb, cols = self.fmt.y_bits, self.fmt.cols
        mask = (1 << yb) - 1
        return [to_signed((value >> (c * yb)) & mask, yb) for c in range(cols)], value >> (cols * yb)

    def max_cycles(self, n: int) -> int:
        reads = self.fmt.max_steps
        worst = 1 + reads * self.max_latency + 3 * self.fmt.sub_arrays
        slow = max(min(self.stream.p_valid, self.stream.p_ready), 0.05)
        return int(200 + n * (worst + 4) / slow)

    async def compute(self, x) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Stream ``x [N, rows]``; return ``y [N, cols]``, ``steps [N]`` and the result cycles."""
        x = np.asarray(x, dtype=np.int64).reshape(-1, self.fmt.rows)
        got = await self.stream.run(self.payloads(x), outputs=len(x), max_cycles=self.max_cycles(len(x)),
                                    idle_after=self.max_latency + 4)
        ys, steps = zip(*(self.decode(v) for v, _ in got)) if got else ((), ())
        return (np.array(ys, dtype=np.int64).reshape(len(x), self.fmt.cols), np.array(steps, dtype=np.int64),
                [c for _, c in got])

    async def check(self, x, *, what: str) -> list[int]:
        """Stream ``x``, compare ``y``, ``steps`` and the counted ``start`` pulses with golden_mvm."""
        x = np.asarray(x, dtype=np.int64).reshape(-1, self.fmt.rows)
        self.fresh_models()
        want_y, want = golden_mvm(x, self.mapping, self.fmt, array=self.expected_array,
                                  zero_skip=self.params.zero_skip)
        want_steps = want.per_vector
        starts, reads = self.starts, self.port.reads if self.port else 0
        y, steps, cycles = await self.compute(x)
        for n in range(len(x)):
            if not np.array_equal(y[n], want_y[n]) or steps[n] != want_steps[n]:
                raise AssertionError(f"{what}: vector {n} gave y={y[n].tolist()} in {steps[n]} steps, golden "
                                     f"y={want_y[n].tolist()} in {want_steps[n]} steps; x={x[n].tolist()}")
        counted = self.starts - starts
        assert counted == want, f"{what}: {counted} start pulses on the array port, golden {int(want)} reads"
        if self.port is not None:
            assert self.port.reads - reads == want, \
                f"{what}: the array model answered {self.port.reads - reads} reads, golden {int(want)}"
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
    """Without stalls: each result exactly ``vector_cycles`` after its vector; next vector at once.

    The controller alone gets a fixed ADC latency (``params.array_latency``) for this test."""
    bench = await _loaded_bench(dut)
    p, f = bench.params, bench.fmt
    if bench.port is not None:
        bench.port.latency = (p.array_latency, p.array_latency)
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
    for wait in (1, 3, 2 + bench.max_latency):    # a few cycles / reads into the vector
        await bench.stream.run(bench.payloads(full), outputs=0, stop_after_inputs=True)
        await bench.stream.run([], outputs=0, for_cycles=wait)
        await bench.stream.reset()
        await bench.check(random_inputs(f, bench.rng, 6), what=f"after reset {wait} cycles into a vector")
    bench.stream.p_ready = 0.0
    await bench.stream.run(bench.payloads(np.vstack([full, full])), outputs=0,
                           for_cycles=2 * bench.max_cycles(1))
    assert int(dut.o__valid.value) == 1, "no result was pending before the reset"
    await bench.stream.reset()
    bench.stream.p_ready = 0.8
    await bench.check(random_inputs(f, bench.rng, 6), what="after reset with a result pending")


@cocotb.test()
async def batch(dut):
    """Batch API: load ``signs``/``cells`` from ``in.npz``, stream ``x``, write ``y``/``steps`` to ``out.npz``."""
    from sw.forms import Mapping

    config = load_config()[2]
    bench = CrossbarBench(dut, p_valid=float(config.get("p_valid", 1.0)), p_ready=float(config.get("p_ready", 1.0)))
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
    x : int array-like [rows] or [N, rows]
        Unsigned ``fmt.act_bits`` inputs (numpy of any integer dtype, nested lists, a torch tensor).
    weights : int array-like [rows, cols]
        Polarised integer weights, magnitudes up to ``fmt.w_max`` (numpy of any integer dtype, nested lists,
        a torch tensor); mapped inside with :func:`sw.forms.map_weights`.
    params : hw.crossbar.CrossbarParams or sw.forms.CrossbarFormat
        A format stands for ``CrossbarParams(fmt=fmt)`` (zero-skipping on, one cycle of array latency).
    p_valid, p_ready : float
        Probability of offering an input / accepting a result per cycle (1.0: no stalls).

    Returns
    -------
    (y, steps) : (numpy.ndarray, sw.forms.Steps)
        As ``golden_mvm``: ``y`` int64 [N, cols] (``[cols]`` for a 1-D ``x``), exactly ``x @ weights`` when the
        ADC is lossless; ``steps`` the **total** number of bit-plane steps (array reads) issued for the whole
        batch, an ``int`` (:class:`sw.forms.Steps`) whose ``per_vector`` holds each vector's count as reported
        by the PE. The total is also checked against the ``start`` pulses counted on the array port.

    Raises
    ------
    TypeError, ValueError
        ``"Crossbar params must be CrossbarParams or a CrossbarFormat, not None"``,
        ``"Crossbar inputs must be integers from 0 to 255, not 256 (at index (0, 3))"``,
        ``"Crossbar inputs must have shape (32,) or (N, 32), not (31,)"``, and map_weights' errors
        (``"Crossbar weights must have shape (32, 4) (rows, cols), not (4, 32)"``, the polarity error).
    """
    from hw.crossbar import CrossbarParams
    from sw.forms import CrossbarFormat

    if isinstance(params, CrossbarFormat):
        params = CrossbarParams(fmt=params)
    if not isinstance(params, CrossbarParams):
        raise TypeError(f"Crossbar params must be CrossbarParams or a CrossbarFormat, not {params!r}")
    fmt = params.fmt
    arr = as_int_array("Crossbar inputs", x, 0, fmt.act_max)
    if arr.ndim not in (1, 2) or arr.shape[-1] != fmt.rows:
        raise ValueError(f"Crossbar inputs must have shape ({fmt.rows},) or (N, {fmt.rows}), not {arr.shape}")
    mapping = map_weights(weights, fmt)
    x2 = arr.reshape(-1, fmt.rows)
    if len(x2) == 0:
        return np.zeros((0, fmt.cols), np.int64), Steps(np.zeros(0, np.int64))
    out = run_batch_arrays("crossbar", params, {"x": x2, "signs": mapping.signs, "cells": mapping.cells},
                           p_valid=p_valid, p_ready=p_ready, seed=seed, waves=waves)
    y, per_vector, starts = out["y"].astype(np.int64), out["steps"].astype(np.int64), int(out["starts"])
    steps = Steps(per_vector)
    if starts != steps:
        raise SimulationError(f"The PE reported {int(steps)} reads but {starts} start pulses were counted")
    return (y[0] if arr.ndim == 1 else y), steps
