"""The one testbench of every PE: a :class:`Bench`, the cocotb tests written once, and the case protocol.

A PE's tb module (the registry's ``tb_module``) defines ``CASE``, a :class:`Case` subclass that knows the
PE's work items ("vectors"): how to draw random ones, the extreme and every-code sets, how a vector becomes
input beats, its golden result (always from ``sw``), the cycles its timing formulas predict, and any set-up
the PE needs (the crossbar loads its weights through ``cfg``/``w`` and may answer its array port in Python).
The tests below use only that protocol, so each runs unchanged on every PE; the PE module imports them,
where cocotb discovers them, and lists the ones pytest runs in ``CHECKS``.

A vector is whatever the case makes of it (a dict of arrays, an ``(x, w)`` pair, one row of inputs); a list
of vectors goes to :meth:`Case.payloads` and :meth:`Case.expect`. Results are decoded from the ``o`` payload
by its layout into named fields (``y``, plus ``steps`` for the crossbar), each compared with the golden field
of the same name, bit for bit.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np

import cocotb
from amaranth.lib import data

from .designs import load_design
from .stream import STALL_MIXES, StreamBench, StreamRun, pack, run_with_summary, stream_members, unpack

__all__ = ["Case", "Bench", "CHECKS", "lanes_of", "last_beat_flags"]

#: the cocotb tests every PE runs in pytest (``batch`` and ``random_vectors`` serve the batch API and
#: ``peforge sim``; a case with an every-code set adds ``every_code``)
CHECKS = ["random_stalls", "extremes", "reset_mid_vector", "throughput_and_latency"]


def last_beat_flags(n: int) -> np.ndarray:
    """``last`` of ``n`` beats: 1 on the final one."""
    last = np.zeros(n, dtype=np.int64)
    last[-1] = 1
    return last


def lanes_of(values, n_beats: int, lanes: int) -> np.ndarray:
    """``values`` zero-padded to ``n_beats * lanes`` and split into beats ``[n_beats, lanes]``."""
    out = np.zeros(n_beats * lanes, dtype=np.int64)
    out[:len(values)] = values
    return out.reshape(n_beats, lanes)


class Case:
    """The vectors of one PE under test: what :class:`Bench` and the shared tests ask of a PE.

    Subclasses implement :meth:`random`, :meth:`extremes`, :meth:`beats` (or :meth:`payloads`),
    :meth:`golden` (or :meth:`expect`), :meth:`length`, :meth:`from_batch` and :meth:`describe`; the other
    methods have defaults for a PE that takes vectors as beats on ``i`` and answers one result per vector.

    Members
    -------
    bench : Bench
    params : the PE's Params
    rng : numpy.random.Generator
        The bench's generator (seeded by ``COCOTB_RANDOM_SEED``), shared with the stream stalls.
    """

    #: vectors per random round unless the configuration says ``vectors``
    count = 40
    #: vector sizes are multiples of this
    granule = 1
    #: (p_valid, p_ready) of the rounds of ``random_stalls``
    stall_mixes = STALL_MIXES
    #: cycles a reset test waits after sending a vector in flight, before the reset
    reset_waits = (0,)

    def __init__(self, bench: "Bench"):
        self.bench = bench
        self.params = bench.params
        self.rng = bench.rng

    # -- drawing ------------------------------------------------------------------------------------
    @property
    def max_size(self) -> int:
        """Largest vector size (elements, or blocks): ``params.max_len``."""
        return self.params.max_len

    def sizes(self, count: int) -> list[int]:
        """``count`` sizes in ``granule .. max_size`` (multiples of ``granule``): both ends first, then sizes
        drawn log-uniformly between them. Every scale of length is drawn about equally often (lengths near a
        lane multiple as much as long ones), and the long vectors that set the simulation time are a few: the
        mean size is about ``max_size / ln(max_size)`` instead of ``max_size / 2`` (4096: 493 vs 2048)."""
        step, top = self.granule, self.max_size
        units = top // step
        drawn = np.exp(self.rng.uniform(0.0, np.log(units), max(count - 2, 0))) if units > 1 else np.ones(count)
        ks = [step, units * step] + [int(k) * step for k in np.clip(np.rint(drawn), 1, units)]
        return ks[:max(count, 1)]

    def random(self, size: int):
        """A random vector of ``size`` elements."""
        raise NotImplementedError

    def draw(self, count: int):
        """``count`` random vectors of the sizes :meth:`sizes` gives."""
        return [self.random(k) for k in self.sizes(count)]

    def extremes(self):
        raise NotImplementedError

    #: every weight code in every lane, or None when the PE has no codes to enumerate
    every_code = None

    def length(self, vector) -> int:
        """Elements of ``vector`` (``peforge sim`` reports their sum)."""
        raise NotImplementedError

    def describe(self, vector) -> str:
        """A short description of ``vector`` for a mismatch message."""
        raise NotImplementedError

    # -- beats and results --------------------------------------------------------------------------
    def beats(self, vector) -> dict[str, np.ndarray]:
        """The ``i`` payload fields of each beat of ``vector`` (``[beats, lanes]`` or ``[beats]``)."""
        raise NotImplementedError

    def payloads(self, vectors) -> list[int]:
        parts = [self.beats(v) for v in vectors]
        fields = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        return pack(self.bench.stream.sources["i"].layout, fields)

    def golden(self, vector) -> int:
        """The golden ``y`` of one vector."""
        raise NotImplementedError

    def expect(self, vectors) -> dict[str, np.ndarray]:
        """The golden output fields of ``vectors``, one row per vector (called before they are sent)."""
        return {"y": np.array([self.golden(v) for v in vectors], dtype=np.int64)}

    def after_check(self, what: str) -> None:
        """Checks beyond the outputs, after a run (the crossbar counts its array reads)."""

    def from_batch(self, arrays: dict[str, np.ndarray]):
        """The vectors of a batch run's ``in.npz``."""
        raise NotImplementedError

    async def load_batch(self, arrays: dict[str, np.ndarray]):
        """Set-up for a batch run (the crossbar loads its weights) and its vectors."""
        return self.from_batch(arrays)

    def batch_extras(self) -> dict[str, np.ndarray]:
        """More arrays for a batch run's ``out.npz`` (the crossbar's counted ``start`` pulses)."""
        return {}

    # -- set-up, sizing and timing ------------------------------------------------------------------
    async def start(self) -> None:
        """After the streams start and the first reset (the crossbar starts its array-port coroutines)."""

    async def prepare(self, round_: int) -> None:
        """Before round ``round_`` of a test draws its vectors (the crossbar loads fresh weights)."""

    @property
    def interval(self) -> int:
        """Cycles between accepted input beats without stalls (the Params' prediction)."""
        return getattr(self.params, "initiation_interval", 1)

    @property
    def latency(self) -> int:
        """Cycles from accepting the ``last`` beat to ``o.valid`` without stalls (the Params' prediction)."""
        return self.params.latency

    @property
    def idle_after(self) -> int:
        """Cycles the sink stays ready after a check, where no further output may appear."""
        return self.latency + 8

    def max_cycles(self, n: int) -> int | None:
        """Time-out of a run of ``n`` vectors; None: :class:`tb.stream.StreamBench`'s estimate."""
        return None

    def timing_rounds(self) -> list:
        """Lists of vectors that run back to back for ``throughput_and_latency``."""
        return [[self.random(self.params.lanes) for _ in range(20)]]

    def steady(self) -> None:
        """Make the design's timing deterministic for ``throughput_and_latency`` (the crossbar's ADC)."""

    def predict(self, vectors) -> list[int]:
        """The cycle (counted as :class:`tb.stream.StreamRun` does) each result of ``vectors`` is
        transferred, without stalls, from :attr:`interval` and :attr:`latency`: the last beat of vector
        ``n`` is accepted in cycle ``e_n interval`` (``e_n`` its beat index, from 0), its result is valid
        ``latency`` cycles later and the transfer ends with the edge after that cycle."""
        ends = np.cumsum([len(self.beats(v)["last"]) for v in vectors]) - 1
        return [int(e) * self.interval + self.latency + 1 for e in ends]

    def timing_note(self) -> str:
        return f"II = {self.interval}, latency {self.latency}"

    def in_flight(self) -> list[int]:
        """Payloads that leave a vector half sent: every beat of a long vector but its ``last`` one."""
        payloads = self.payloads([self.random(self.sizes(2)[1])])
        last_bit = 1 << self.bench.stream.sources["i"].layout["last"].offset
        return payloads[:-1] or [payloads[0] & ~last_bit]

    def pending(self) -> tuple[list, int]:
        """Vectors whose results wait in the pipeline and the output register while ``o.ready`` is low,
        and the cycles to run them (enough for the first result to reach the output register even when the
        source stalls)."""
        return [self.random(self.granule) for _ in range(self.latency + 2)], self.latency + 8


def output_layout(shape) -> data.StructLayout:
    """The ``o`` payload as a struct layout; a plain shape is the one field ``y``."""
    return shape if isinstance(shape, data.StructLayout) else data.StructLayout({"y": shape})


class Bench:
    """One PE under test: its params and configuration, its :class:`Case` and its streams.

    The design and configuration come from the environment (:func:`tb.runner.load_design`); the generator is
    seeded by ``COCOTB_RANDOM_SEED``; the streams are those of the component's signature.
    """

    def __init__(self, dut, *, p_valid: float = 1.0, p_ready: float = 1.0):
        self.dut = dut
        self.design, self.config = load_design()
        self.pe, self.params = getattr(self.design, "pe", None), self.design.params
        self.seed = int(os.environ.get("COCOTB_RANDOM_SEED", "1"))
        self.rng = np.random.default_rng(self.seed)
        members = stream_members(self.design.component())
        self.stream = StreamBench(dut, members, rng=self.rng, p_valid=p_valid, p_ready=p_ready)
        self.output = output_layout(self.stream.sinks["o"].layout)
        self.case = importlib.import_module(self.design.tb_module).CASE(self)
        self.stream.interval, self.stream.latency = self.case.interval, self.case.latency

    @classmethod
    def from_config(cls, dut, p: float) -> "Bench":
        """A bench with the configuration's ``p_valid``/``p_ready`` (default ``p``)."""
        config = load_design()[1]
        return cls(dut, p_valid=float(config.get("p_valid", p)), p_ready=float(config.get("p_ready", p)))

    def stalls(self, p_valid: float, p_ready: float) -> None:
        self.stream.p_valid, self.stream.p_ready = p_valid, p_ready

    async def start(self) -> None:
        await self.stream.start()
        await self.case.start()

    async def transfer(self, vectors, *, payloads: list[int] | None = None,
                       idle_after: int | None = None) -> StreamRun:
        """Send ``vectors`` on ``i`` and take one result each from ``o``."""
        case = self.case
        if payloads is None:
            payloads = case.payloads(vectors)
        return await self.stream.transfer(payloads, outputs=len(vectors), max_cycles=case.max_cycles(len(vectors)),
                                          idle_after=case.idle_after if idle_after is None else idle_after)

    def decode(self, run: StreamRun) -> dict[str, np.ndarray]:
        """The output fields of every result of ``run``, one row per result."""
        return unpack(self.output, [value for value, _ in run.received])

    async def check(self, vectors, *, what: str, payloads: list[int] | None = None) -> StreamRun:
        """Send ``vectors``, compare every output field of every result with golden, in order; afterwards
        no further output may appear for :attr:`Case.idle_after` cycles."""
        want = self.case.expect(vectors)
        run = await self.transfer(vectors, payloads=payloads)
        got = self.decode(run)
        bad = np.zeros(len(vectors), dtype=bool)
        for name, expected in want.items():
            bad |= (got[name] != expected).reshape(len(vectors), -1).any(axis=1)
        if bad.any():
            n = int(np.argmax(bad))
            show = lambda fields: ", ".join(f"{k}={np.asarray(v[n]).tolist()}" for k, v in fields.items())
            raise AssertionError(f"{what}: vector {n} ({self.case.describe(vectors[n])}) gave "
                                 f"{show({k: got[k] for k in want})}, golden {show(want)} "
                                 f"(cycle {run.received[n][1]})")
        self.case.after_check(what)
        return run


# -- the tests, written once ---------------------------------------------------------------------------

@cocotb.test()
async def random_stalls(dut):
    """Random vectors of random sizes (both ends included) under each mix of valid/ready stalls."""
    bench = Bench(dut)
    await bench.start()
    count = int(bench.config.get("vectors", bench.case.count))
    for n, (p_valid, p_ready) in enumerate(bench.case.stall_mixes):
        await bench.case.prepare(n)
        bench.stalls(p_valid, p_ready)
        await bench.check(bench.case.draw(count), what=f"random (p_valid={p_valid}, p_ready={p_ready})")


@cocotb.test()
async def extremes(dut):
    """The case's extreme vectors: worst-case sums of both signs, zeros, full scale, single set bits."""
    bench = Bench(dut, p_valid=0.8, p_ready=0.8)
    await bench.start()
    await bench.case.prepare(0)
    await bench.check(bench.case.extremes(), what="extremes")


@cocotb.test()
async def every_code(dut):
    """Every weight-field value (and index) against extreme and random activations, in every lane."""
    bench = Bench(dut, p_valid=0.8, p_ready=0.8)
    await bench.start()
    await bench.check(bench.case.every_code(), what="every code")


@cocotb.test()
async def reset_mid_vector(dut):
    """Reset with a vector half sent (after each of the case's waits), and again with results waiting:
    nothing stale comes out and the next vectors are right."""
    bench = Bench(dut, p_valid=0.8, p_ready=0.8)
    await bench.start()
    case = bench.case
    await case.prepare(0)
    for wait in case.reset_waits:
        await bench.stream.run(case.in_flight(), outputs=0, stop_after_inputs=True)
        if wait:
            await bench.stream.run([], outputs=0, for_cycles=wait)
        await bench.stream.reset()
        await bench.check(case.draw(6), what=f"after reset {wait} cycles into a vector")
    bench.stream.p_ready = 0.0
    vectors, cycles = case.pending()
    await bench.stream.run(case.payloads(vectors), outputs=0, for_cycles=cycles)
    assert int(dut.o__valid.value) == 1, "no result was pending before the reset"
    await bench.stream.reset()
    bench.stream.p_ready = 0.8
    await bench.check(case.draw(6), what="after reset with results pending")


@cocotb.test()
async def throughput_and_latency(dut):
    """Without stalls, every result on the cycle the Params' formulas predict (``initiation_interval``
    and ``latency``, or the crossbar's ``vector_cycles``), and the run's measured cycles equal to the
    prediction for its last result."""
    bench = Bench(dut)
    await bench.start()
    case = bench.case
    await case.prepare(0)
    case.steady()
    for vectors in case.timing_rounds():
        run = await bench.check(vectors, what="back to back")
        cycles, predicted = [cycle for _, cycle in run.received], case.predict(vectors)
        assert cycles == predicted, f"results on cycles {cycles}, predicted {predicted} ({case.timing_note()})"
        assert run.cycles == predicted[-1], f"the run took {run.cycles} cycles, predicted {predicted[-1]}"


@cocotb.test()
async def batch(dut):
    """Batch API (:func:`tb.batch.run_batch`): the vectors of ``in.npz`` through the RTL; every output
    field, the case's extras, ``cycles`` and ``beats`` into ``out.npz``."""
    bench = Bench.from_config(dut, 1.0)
    work = Path(bench.config["batch_dir"])
    await bench.start()
    with np.load(work / "in.npz") as data_:
        arrays = {k: data_[k] for k in data_.files}
    vectors = await bench.case.load_batch(arrays)
    run = await bench.transfer(vectors)
    np.savez(work / "out.npz", **bench.decode(run), **bench.case.batch_extras(), cycles=run.cycles,
             beats=run.beats)


@cocotb.test()
async def random_vectors(dut):
    """``peforge sim``: random vectors under stalls against golden; writes a summary JSON."""
    bench = Bench.from_config(dut, 0.5)
    await bench.start()
    await bench.case.prepare(0)
    vectors = bench.case.draw(int(bench.config.get("vectors", 100)))
    payloads = bench.case.payloads(vectors)
    summary = {"vectors": len(vectors), "elements": int(sum(map(bench.case.length, vectors))),
               "beats": len(payloads), "error": None}
    await run_with_summary(bench.stream, bench.check(vectors, what="random", payloads=payloads), summary,
                           bench.config["summary"])
