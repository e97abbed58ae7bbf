"""Cycle-level stream driving for cocotb: payload packing, sources and sinks bound by name, random stalls.

Every ``amaranth.lib.stream`` member ``<name>`` of a DUT appears in the Verilog as ``<name>__valid``,
``<name>__ready`` and ``<name>__payload``. :func:`stream_members` reads a component's signature;
:class:`StreamSource` drives an ``In`` member (``i``, ``cfg``, ``w``) and :class:`StreamSink` takes an ``Out``
member (``o``), each bound to its member by that prefix, as cocotbext-axi binds its sources and sinks.
:class:`StreamBench` owns them all and moves beats with :meth:`StreamBench.transfer`: one coroutine per clock
cycle drives one source and one sink together (fewer simulator callbacks than separate driver and monitor
tasks). A source obeys the stream rules: once ``valid`` is raised the payload holds until the beat is
accepted.

:func:`pack` and :func:`unpack` convert between per-field numpy arrays and payload integers, vectorised over
the beats (bit matrices, not a Python loop per field and lane).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amaranth.hdl import Shape
from amaranth.lib import data, stream, wiring
from cocotb.clock import Clock
from cocotb.triggers import First, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time

__all__ = ["pack", "unpack", "to_signed", "stream_members", "StreamSource", "StreamSink", "StreamBench", "StreamRun",
           "StreamTimeout", "STALL_MIXES", "run_with_summary"]

#: (p_valid, p_ready) mixes every random-stall test walks through: none, both, source-, sink-limited
STALL_MIXES = [(1.0, 1.0), (0.5, 0.5), (0.9, 0.2), (0.2, 0.9)]
#: clock period of every bench (ns)
PERIOD_NS = 10


# -- payloads -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Leaf:
    path: str       # "x", "w.re": a scalar field, or the elements of an array field
    offset: int     # bit of element 0
    width: int
    signed: bool
    lanes: int      # elements (1 for a scalar field)
    stride: int     # bits from one element to the next
    array: bool

    @property
    def bits(self) -> np.ndarray:
        """Payload bit of each ``[lane, bit]`` of this leaf."""
        return self.offset + np.arange(self.lanes)[:, None] * self.stride + np.arange(self.width)[None, :]


def _leaves(layout: data.StructLayout, prefix: str = "", offset: int = 0):
    """Every leaf of a struct layout: scalars, arrays of scalars, and arrays of structs of scalars
    (``w.re``, ``w.im``: one leaf per member, across the array)."""
    for name, field in layout:
        path, shape, base = prefix + name, field.shape, offset + field.offset
        if isinstance(shape, data.StructLayout):
            yield from _leaves(shape, path + ".", base)
        elif isinstance(shape, data.ArrayLayout) and isinstance(shape.elem_shape, data.StructLayout):
            stride = Shape.cast(shape.elem_shape).width
            for leaf in _leaves(shape.elem_shape, path + "."):
                if leaf.array:
                    raise TypeError(f"Payload field {leaf.path!r} must be a scalar inside an array, not an array")
                yield _Leaf(leaf.path, base + leaf.offset, leaf.width, leaf.signed, shape.length, stride, True)
        elif isinstance(shape, data.ArrayLayout):
            elem = Shape.cast(shape.elem_shape)
            yield _Leaf(path, base, elem.width, elem.signed, shape.length, elem.width, True)
        else:
            s = Shape.cast(shape)
            yield _Leaf(path, base, s.width, s.signed, 1, s.width, False)


def pack(layout: data.StructLayout, fields: dict[str, np.ndarray]) -> list[int]:
    """Pack per-beat field values into payload integers (element 0 at the LSBs of each field).

    ``fields[path]`` is ``[beats, lanes]`` for array fields and ``[beats]`` for scalars, ``path`` a field
    name or, inside an array of structs, ``"<array>.<member>"`` (``"w.re"``). Negative values are stored
    in two's complement.
    """
    size = Shape.cast(layout).width
    bits = None
    for leaf in _leaves(layout):
        values = np.asarray(fields[leaf.path], dtype=np.int64).reshape(-1, leaf.lanes)
        if bits is None:
            bits = np.zeros((len(values), size), dtype=np.uint8)
        bits[:, leaf.bits] = (values[..., None] >> np.arange(leaf.width)) & 1
    if bits is None or not len(bits):
        return []
    raw = np.packbits(bits, axis=1, bitorder="little").tobytes()
    n = (size + 7) // 8
    return [int.from_bytes(raw[b * n:(b + 1) * n], "little") for b in range(len(bits))]


def unpack(layout: data.StructLayout, words: list[int]) -> dict[str, np.ndarray]:
    """The fields of payload integers ``words``, the inverse of :func:`pack`: int64 ``[n, lanes]`` per
    array field and ``[n]`` per scalar, sign-extended where the field is signed."""
    size = Shape.cast(layout).width
    n = (size + 7) // 8
    raw = b"".join(int(w).to_bytes(n, "little") for w in words)
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8).reshape(len(words), n), axis=1,
                         bitorder="little").astype(np.int64)
    out = {}
    for leaf in _leaves(layout):
        b = bits[:, leaf.bits]                                   # [n, lanes, width]
        value = b @ (np.int64(1) << np.arange(leaf.width, dtype=np.int64))
        if leaf.signed:
            value -= b[..., -1] << leaf.width
        out[leaf.path] = value if leaf.array else value[:, 0]
    return out


def to_signed(value: int, width: int) -> int:
    """``value``'s low ``width`` bits read as two's complement."""
    return value - (1 << width) if value >> (width - 1) & 1 else value


def stream_members(component: wiring.Component) -> dict[str, tuple[bool, object]]:
    """``{name: (is_input, payload_shape)}`` of every ``stream.Signature`` member of ``component``."""
    out = {}
    for name, member in component.signature.members.items():
        if member.is_signature and isinstance(member.signature, stream.Signature):
            out[name] = (member.flow == wiring.In, member.signature.members["payload"].shape)
    return out


# -- sources, sinks and the cycle loop --------------------------------------------------------------------

class _Port:
    def __init__(self, dut, name: str, layout):
        self.name, self.layout = name, layout
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")


class StreamSource(_Port):
    """Drives the ``In`` stream member ``name`` of ``dut`` (``<name>__valid``, ``__ready``, ``__payload``);
    ``layout`` is its payload's."""

    def idle(self):
        self.valid.value = 0


class StreamSink(_Port):
    """Takes the ``Out`` stream member ``name`` of ``dut`` (``<name>__valid``, ``__ready``, ``__payload``);
    ``layout`` is its payload's."""

    def idle(self):
        self.ready.value = 0


class StreamTimeout(AssertionError):
    pass


@dataclass(frozen=True)
class StreamRun:
    """What one :meth:`StreamBench.transfer` moved.

    Members
    -------
    received : list of (int, int)
        ``(payload, cycle)`` of every result, ``cycle`` the clock edge that ended its transfer (counting
        the run's first cycle as 1).
    beats : int
        Input beats accepted.
    cycles : int
        Clock cycles from the start of the run to the transfer of the last expected result (all the cycles
        of the run when it expected none): the time the run took to carry its work.
    """

    received: list
    beats: int
    cycles: int


class StreamBench:
    """Every stream member of ``dut``: :class:`StreamSource` per ``In`` member, :class:`StreamSink` per ``Out``.

    ``members`` is :func:`stream_members` of the design's component (default: the source ``i`` and the
    sink ``o``, payload layouts unknown). ``p_valid``: probability a source
    offers a new beat in a cycle; ``p_ready``: probability the sink is ready. Both 1.0 give back-to-back
    transfers. ``interval`` and ``latency`` (cycles between accepted beats and from the last beat to its
    result, without stalls) only size the time-out. ``cycles`` counts every cycle the bench has run.
    """

    def __init__(self, dut, members: dict[str, tuple[bool, object]] | None = None, *, rng: np.random.Generator,
                 p_valid: float = 1.0, p_ready: float = 1.0, interval: int = 1, latency: int = 0):
        self.dut = dut
        if members is None:
            members = {"i": (True, None), "o": (False, None)}
        self.sources = {n: StreamSource(dut, n, shape) for n, (is_in, shape) in members.items() if is_in}
        self.sinks = {n: StreamSink(dut, n, shape) for n, (is_in, shape) in members.items() if not is_in}
        self.interval, self.latency = interval, latency
        self.rng = rng
        self.p_valid = p_valid
        self.p_ready = p_ready
        self.cycles = 0
        self._clock_started = False

    async def start(self):
        if not self._clock_started:
            Clock(self.dut.clk, PERIOD_NS, unit="ns").start()
            self._clock_started = True
        for port in [*self.sources.values(), *self.sinks.values()]:
            port.idle()
        await self.reset()

    async def reset(self, cycles: int = 2):
        """Hold ``rst`` for ``cycles`` clock edges; afterwards no output may be valid."""
        dut = self.dut
        dut.rst.value = 1
        for source in self.sources.values():
            source.idle()
        for _ in range(cycles):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        await ReadOnly()
        for sink in self.sinks.values():
            assert int(sink.valid.value) == 0, f"{sink.name}.valid is high right after reset"
        await RisingEdge(dut.clk)

    async def send(self, name: str, fields: dict[str, np.ndarray]) -> StreamRun:
        """Pack ``fields`` by the payload layout of source ``name`` and send them (``cfg``, ``w`` loading)."""
        source = self.sources[name]
        return await self.transfer(pack(source.layout, fields), outputs=0, source=name, stop_after_inputs=True)

    @staticmethod
    async def _until_ready_or_valid(i_ready, o_valid, limit: int, edge_ns: float) -> int:
        """Wait (from a ``ReadOnly`` phase) until ``i_ready`` (None: not watched) or ``o_valid`` rises, or about
        ``limit`` cycles have passed; return the rising clock edges passed since the one at ``edge_ns``.

        Both signals are registered outputs (or follow ``o.ready``, which holds meanwhile), so a rise comes with a
        clock edge, now just behind us; the time limit ends half a cycle before an edge, never on one."""
        triggers = [RisingEdge(o_valid), Timer(max(int(limit), 1) * PERIOD_NS - PERIOD_NS // 2, unit="ns")]
        if i_ready is not None:
            triggers.append(RisingEdge(i_ready))
        await First(*triggers)
        # a rise comes a few ps after an edge and the limit half a period before one: a quarter period of margin
        # (floor alone miscounts when the float difference lands just below a whole number of periods)
        return int((get_sim_time("ns") - edge_ns) / PERIOD_NS + 0.25)

    async def run(self, beats: list[int], **kwargs) -> list[tuple[int, int]]:
        """:meth:`transfer`, returning only the ``(payload, cycle)`` pairs received."""
        return (await self.transfer(beats, **kwargs)).received

    async def transfer(self, beats: list[int], *, outputs: int, source: str = "i", sink: str = "o",
                       max_cycles: int | None = None, idle_after: int = 0, stop_after_inputs: bool = False,
                       for_cycles: int | None = None) -> StreamRun:
        """Send payloads ``beats`` on ``source`` and collect ``outputs`` results from ``sink``.

        ``idle_after``: cycles to keep the sink running afterwards, checking that nothing more comes
        out (the "nothing left over" check). ``stop_after_inputs``: return as soon as the last beat is
        accepted, with the pipeline still full (for reset-mid-vector tests). ``for_cycles``: run exactly
        that many cycles, whatever was sent or received by then.
        """
        rng, p_valid, p_ready = self.rng, self.p_valid, self.p_ready
        src, snk = self.sources[source], self.sinks[sink]
        i_valid, i_ready, i_payload = src.valid, src.ready, src.payload
        o_valid, o_ready, o_payload = snk.valid, snk.ready, snk.payload
        clk = self.dut.clk
        if max_cycles is None:
            max_cycles = (64 + 2 * self.latency + 4 * self.interval * len(beats) / max(min(p_valid, p_ready), 0.05)
                          + 16 * outputs)
        received: list[tuple[int, int]] = []
        sent = 0
        offering = False
        extra = 0
        cycle = 0
        fast_forward = for_cycles is None
        edge_ns = get_sim_time("ns")  # the time of the last rising edge: each cycle's start
        while True:
            if not offering and sent < len(beats) and (p_valid >= 1.0 or rng.random() < p_valid):
                offering = True
                i_payload.value = beats[sent]
            i_valid.value = int(offering)
            ready = p_ready >= 1.0 or rng.random() < p_ready
            o_ready.value = int(ready)
            await ReadOnly()
            accepted = offering and int(i_ready.value)
            out_valid = int(o_valid.value)
            produced = ready and out_valid
            value = o_payload.value.to_unsigned() if produced else None
            # Nothing can move until the DUT raises i.ready (while a beat is offered) or o.valid: wait for that
            # change instead of visiting every cycle (the long computations of networks and the crossbar).
            if (fast_forward and not accepted and not out_valid and len(received) < outputs
                    and (offering or sent == len(beats))):
                skipped = await self._until_ready_or_valid(i_ready if offering else None, o_valid,
                                                           max_cycles + 1 - cycle, edge_ns)
                cycle += skipped
                edge_ns += skipped * PERIOD_NS
            else:
                await RisingEdge(clk)
                edge_ns += PERIOD_NS
                cycle += 1
            if accepted:
                sent += 1
                offering = False
            if produced:
                if len(received) >= outputs:
                    raise AssertionError(f"unexpected output {value:#x} on {sink} after the expected {outputs} "
                                         f"(cycle {cycle})")
                received.append((value, cycle))
            if for_cycles is not None:
                if cycle >= for_cycles:
                    break
                continue
            if stop_after_inputs and sent == len(beats):
                break
            if sent == len(beats) and len(received) == outputs:
                if extra >= idle_after:
                    break
                extra += 1
            if cycle > max_cycles:
                raise StreamTimeout(f"timed out after {cycle} cycles: sent {sent}/{len(beats)} beats on {source}, "
                                    f"received {len(received)}/{outputs} results on {sink}")
        i_valid.value = 0
        self.cycles += cycle
        return StreamRun(received, sent, received[-1][1] if outputs and received else cycle)


async def run_with_summary(stream: StreamBench, check, summary: dict, path) -> None:
    """Await ``check`` (a bench's compare-with-golden coroutine) and write ``summary`` to ``path``
    as JSON, with the cycles, the wall time and the first line of any mismatch (``peforge sim``)."""
    start, cycles = time.perf_counter(), stream.cycles
    try:
        await check
    except AssertionError as exc:
        summary["error"] = str(exc).splitlines()[0]
        raise
    finally:
        summary["cycles"] = stream.cycles - cycles
        summary["seconds"] = time.perf_counter() - start
        Path(path).write_text(json.dumps(summary))
