"""cocotb testbench and batch API of ``crossbar``: the controller with the RTL array emulator, and alone.

Its case (:class:`CASE`) runs :mod:`tb.bench`'s tests on two designs (PyMTL3's "test cases written once,
run at every level"):

* ``crossbar`` (:class:`hw.crossbar.CrossbarSystem`): controller + the synthesizable ideal-array emulator.
  The sign bits go in through ``cfg`` (one sub-array per beat), the cell levels through ``w`` (one row per
  beat), both from :func:`sw.forms.map_weights`, sent by the same stream sources as the inputs on ``i``
  (:meth:`tb.stream.StreamBench.send`, with the bench's random stalls).
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

from collections import deque

import numpy as np

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from ..sw.forms import IdealArray, Mapping, NonIdealArray, Steps, active_planes, golden_mvm, map_weights
from ..sw.intops import as_int_array

from .batch import NO_SIMULATION, run_batch, with_stats
from .bench import CHECKS as SHARED_CHECKS
from .bench import (Case, batch, extremes, random_stalls, random_vectors,  # noqa: F401  (cocotb tests)
                    reset_mid_vector, throughput_and_latency)
from .runner import SimulationError
from .stream import pack

__all__ = ["rtl_mvm", "CHECKS", "CASE", "ArrayModel", "random_weights", "random_inputs"]


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


class CASE(Case):
    """Crossbar vectors: rows ``x [rows]`` of inputs, on weights loaded before each round."""

    count = 24
    stall_mixes = [(1.0, 1.0), (0.5, 0.5), (0.9, 0.2), (0.2, 0.9), (0.7, 0.7)]
    #: the weights of each round of ``random_stalls``
    weight_kinds = ["random", "random", "max", "min", "random"]

    def __init__(self, bench):
        from ..hw.crossbar import CrossbarController

        super().__init__(bench)
        self.fmt = self.params.fmt
        self.mapping = None
        self.starts = 0
        self._counting = False
        #: the controller alone: its array port is answered by a Python model
        self.port = None
        if issubclass(bench.pe.component_cls, CrossbarController):
            lo, hi = bench.config.get("latency", [1, 4])
            self.port = ArrayModel(bench.dut, self.params, np.random.default_rng(bench.seed + 1), latency=(lo, hi))
        self.array_model = bench.config.get("array_model")   # NonIdealArray settings, or None (ideal)
        if self.array_model is not None and self.port is None:
            raise ValueError(f"Array model must be used with the controller alone, not with {bench.pe.name!r}")
        self._model_seed = int((self.array_model or {}).get("seed", 0))
        self.expected_array = None
        self._marks = (0, 0, 0)

    @property
    def max_latency(self) -> int:
        return self.port.latency[1] if self.port else self.params.array_latency

    @property
    def latency(self) -> int:
        """The longest vector: every plane of every sub-array read at the longest ADC latency."""
        f = self.fmt
        return 1 + f.sub_arrays * (f.act_bits * self.max_latency + 3)

    @property
    def idle_after(self) -> int:
        return self.max_latency + 4

    @property
    def reset_waits(self) -> tuple[int, ...]:
        return (1, 3, 2 + self.max_latency)    # a few cycles / reads into the vector

    def max_cycles(self, n: int) -> int:
        slow = max(min(self.bench.stream.p_valid, self.bench.stream.p_ready), 0.05)
        return int(200 + n * (self.latency + 4) / slow)

    # -- set-up: the array port, the weights -------------------------------------------------------
    async def start(self):
        if not self._counting:
            self._counting = True
            cocotb.start_soon(self._count_starts())
            if self.port is not None:
                cocotb.start_soon(self.port.run())

    async def _count_starts(self):
        """Count the cycles with ``start`` high on the array port (reads issued)."""
        dut = self.bench.dut
        start = dut.array__start
        while True:
            await RisingEdge(dut.clk)
            if int(dut.rst.value) == 0 and int(start.value):
                self.starts += 1

    async def prepare(self, round_: int) -> None:
        kind = self.weight_kinds[round_ % len(self.weight_kinds)]
        await self.load(map_weights(random_weights(self.fmt, self.rng, kind=kind), self.fmt))

    async def load(self, mapping):
        """Sign bits through ``cfg`` (one sub-array per beat), then cell levels through ``w`` (one row per
        beat) or into the Python model."""
        f, stream = self.fmt, self.bench.stream
        signs = (np.asarray(mapping.signs, dtype=np.int64) << np.arange(f.cols)).sum(axis=1)
        await stream.send("cfg", {"sub": np.arange(f.sub_arrays), "signs": signs})
        if "w" in stream.sources:
            await stream.send("w", {"row": np.arange(f.rows), "cells": mapping.cells})
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

    # -- vectors ---------------------------------------------------------------------------------------
    def draw(self, count: int) -> np.ndarray:
        return random_inputs(self.fmt, self.rng, count)

    def extremes(self) -> np.ndarray:
        """Every single set bit on every row (sampled above 512), all-zero and full-scale vectors."""
        f = self.fmt
        rows = np.arange(f.rows) if f.rows * f.act_bits <= 512 else self.rng.choice(f.rows, 512 // f.act_bits)
        singles = [np.eye(f.rows, dtype=np.int64)[r] << q for r in rows for q in range(f.act_bits)]
        return np.array(singles + [np.zeros(f.rows, np.int64), np.full(f.rows, f.act_max)])

    def length(self, vector) -> int:
        return len(vector)

    def describe(self, vector) -> str:
        return f"x={np.asarray(vector).tolist()}"

    def payloads(self, vectors) -> list[int]:
        x = np.asarray(vectors, dtype=np.int64).reshape(-1, self.fmt.rows)
        return pack(self.bench.stream.sources["i"].layout, {"x": x})

    def expect(self, vectors) -> dict[str, np.ndarray]:
        """``y`` and ``steps`` from :func:`sw.forms.golden_mvm`; the reads it counts are checked against the
        ``start`` pulses on the array port (and the reads the Python model answered) afterwards."""
        x = np.asarray(vectors, dtype=np.int64).reshape(-1, self.fmt.rows)
        self.fresh_models()
        want_y, want = golden_mvm(x, self.mapping, self.fmt, array=self.expected_array,
                                  zero_skip=self.params.zero_skip)
        self._marks = (int(want), self.starts, self.port.reads if self.port else 0)
        return {"y": want_y, "steps": want.per_vector}

    def after_check(self, what: str) -> None:
        want, starts, reads = self._marks
        counted = self.starts - starts
        assert counted == want, f"{what}: {counted} start pulses on the array port, golden {want} reads"
        if self.port is not None:
            assert self.port.reads - reads == want, \
                f"{what}: the array model answered {self.port.reads - reads} reads, golden {want}"

    # -- timing ----------------------------------------------------------------------------------------
    def timing_rounds(self) -> list:
        return [random_inputs(self.fmt, self.rng, 20)]

    def steady(self) -> None:
        """The controller alone gets a fixed ADC latency (``params.array_latency``)."""
        if self.port is not None:
            self.port.latency = (self.params.array_latency, self.params.array_latency)

    def predict(self, vectors) -> list[int]:
        """Vector ``n`` is accepted in cycle ``a_n`` (``a_0 = 0``); its result is valid ``vector_cycles``
        later, the transfer ends with the edge after that cycle, and the next vector is accepted in it."""
        p, f = self.params, self.fmt
        x = np.asarray(vectors)
        reads = active_planes(x, f).sum(axis=-1) if p.zero_skip else np.full((len(x), f.sub_arrays), f.act_bits)
        done = np.cumsum([p.vector_cycles(r.tolist()) for r in reads])
        return [int(d) + 1 for d in done]

    def timing_note(self) -> str:
        return "vector_cycles"

    def in_flight(self) -> list[int]:
        return self.payloads(np.full((1, self.fmt.rows), self.fmt.act_max))

    def pending(self) -> tuple[np.ndarray, int]:
        return np.full((2, self.fmt.rows), self.fmt.act_max), 2 * self.max_cycles(1)

    # -- batch -----------------------------------------------------------------------------------------
    async def load_batch(self, arrays) -> np.ndarray:
        await self.load(Mapping(arrays["signs"], arrays["cells"]))
        self._batch_starts = self.starts
        return arrays["x"]

    def batch_extras(self) -> dict[str, np.ndarray]:
        return {"starts": np.array(self.starts - self._batch_starts)}


#: the cocotb tests pytest runs (``batch`` and ``random_vectors`` serve the APIs)
CHECKS = SHARED_CHECKS


# -- batch API -----------------------------------------------------------------------------------------

def rtl_mvm(x, weights, params, *, stats: bool = False, **kwargs):
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
    stats : bool, optional
        Also return the :class:`tb.batch.SimStats` the simulation counted (``((y, steps), stats)``).
    **kwargs
        ``p_valid``, ``p_ready``, ``seed``, ``waves`` as :func:`tb.dot.rtl_dot`.

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
    from ..hw.crossbar import CrossbarParams
    from ..sw.forms import CrossbarFormat

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
        return with_stats((np.zeros((0, fmt.cols), np.int64), Steps(np.zeros(0, np.int64))), NO_SIMULATION, stats)
    result = run_batch("crossbar", params, {"x": x2, "signs": mapping.signs, "cells": mapping.cells}, **kwargs)
    out = result.outputs
    y, per_vector, starts = out["y"].astype(np.int64), out["steps"].astype(np.int64), int(out["starts"])
    steps = Steps(per_vector)
    if starts != steps:
        raise SimulationError(f"The PE reported {int(steps)} reads but {starts} start pulses were counted")
    return with_stats(((y[0] if arr.ndim == 1 else y), steps), result.stats, stats)
