"""Cycle-level stream driving for cocotb: packing payloads, random stalls, reset, leftovers.

One coroutine per cycle drives the input stream ``i`` and the output stream ``o`` of a PE together
(fewer simulator callbacks than separate driver and monitor tasks). The source obeys the stream rules:
once ``valid`` is raised the payload holds until the beat is accepted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge
from amaranth.lib import data
from amaranth.hdl import Shape

__all__ = ["pack", "to_signed", "StreamBench", "StreamTimeout", "STALL_MIXES", "run_with_summary"]

#: (p_valid, p_ready) mixes every random-stall test walks through: none, both, source-, sink-limited
STALL_MIXES = [(1.0, 1.0), (0.5, 0.5), (0.9, 0.2), (0.2, 0.9)]


def _leaves(layout, offset=0):
    """(name path, offset, shape, lanes) of every leaf field of a struct/array layout."""
    for name, field in layout:
        shape = field.shape
        if isinstance(shape, data.ArrayLayout):
            yield name, offset + field.offset, Shape.cast(shape.elem_shape), shape.length
        else:
            yield name, offset + field.offset, Shape.cast(shape), 1


def pack(layout: data.StructLayout, fields: dict[str, np.ndarray]) -> list[int]:
    """Pack per-beat field values into payload integers (lane 0 at the LSBs of each field).

    ``fields[name]`` is ``[beats, lanes]`` for array fields and ``[beats]`` for scalars; negative
    values are stored in two's complement.
    """
    beats = None
    words = None
    for name, offset, shape, lanes in _leaves(layout):
        values = np.asarray(fields[name], dtype=np.int64).reshape(-1, lanes)
        if beats is None:
            beats = values.shape[0]
            words = np.zeros(beats, dtype=object)
        mask = (1 << shape.width) - 1
        obj = values.astype(object) & mask
        for lane in range(lanes):
            words = words + (obj[:, lane] << (offset + lane * shape.width))
    return [int(w) for w in words]


def to_signed(value: int, width: int) -> int:
    return value - (1 << width) if value >> (width - 1) & 1 else value


class StreamTimeout(AssertionError):
    pass


class StreamBench:
    """Drive ``i`` and sink ``o`` of ``dut`` with random idle cycles on both sides.

    ``p_valid``: probability the source offers a new beat in a cycle; ``p_ready``: probability the
    sink is ready. Both 1.0 give back-to-back transfers. ``interval`` and ``latency`` (cycles between
    accepted beats and from the last beat to its result, without stalls) only size the time-out.
    """

    def __init__(self, dut, *, rng: np.random.Generator, p_valid: float = 1.0, p_ready: float = 1.0,
                 interval: int = 1, latency: int = 0):
        self.dut = dut
        self.interval = interval
        self.latency = latency
        self.rng = rng
        self.p_valid = p_valid
        self.p_ready = p_ready
        self.cycles = 0
        self._clock_started = False

    async def start(self):
        if not self._clock_started:
            Clock(self.dut.clk, 10, unit="ns").start()
            self._clock_started = True
        self.dut.i__valid.value = 0
        self.dut.o__ready.value = 0
        await self.reset()

    async def reset(self, cycles: int = 2):
        """Hold ``rst`` for ``cycles`` clock edges; afterwards no output may be valid."""
        dut = self.dut
        dut.rst.value = 1
        dut.i__valid.value = 0
        for _ in range(cycles):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        await ReadOnly()
        assert int(dut.o__valid.value) == 0, "o.valid is high right after reset"
        await RisingEdge(dut.clk)

    async def run(self, beats: list[int], *, outputs: int, max_cycles: int | None = None,
                  idle_after: int = 0, stop_after_inputs: bool = False,
                  for_cycles: int | None = None) -> list[tuple[int, int]]:
        """Send ``beats`` and collect ``outputs`` results as ``(payload, cycle)`` pairs.

        ``idle_after``: cycles to keep the sink running afterwards, checking that nothing more comes
        out (the "nothing left over" check). ``stop_after_inputs``: return as soon as the last beat is
        accepted, with the pipeline still full (for reset-mid-vector tests). ``for_cycles``: run exactly
        that many cycles, whatever was sent or received by then.
        """
        dut = self.dut
        rng, p_valid, p_ready = self.rng, self.p_valid, self.p_ready
        i_valid, i_ready, i_payload = dut.i__valid, dut.i__ready, dut.i__payload
        o_valid, o_ready, o_payload = dut.o__valid, dut.o__ready, dut.o__payload
        clk = dut.clk
        if max_cycles is None:
            max_cycles = (64 + 2 * self.latency + 4 * self.interval * len(beats) / max(min(p_valid, p_ready), 0.05)
                          + 16 * outputs)
        received: list[tuple[int, int]] = []
        sent = 0
        offering = False
        extra = 0
        cycle = 0
        while True:
            if not offering and sent < len(beats) and (p_valid >= 1.0 or rng.random() < p_valid):
                offering = True
                i_payload.value = beats[sent]
            i_valid.value = int(offering)
            ready = p_ready >= 1.0 or rng.random() < p_ready
            o_ready.value = int(ready)
            await ReadOnly()
            accepted = offering and int(i_ready.value)
            produced = ready and int(o_valid.value)
            value = o_payload.value.to_unsigned() if produced else None
            await RisingEdge(clk)
            cycle += 1
            if accepted:
                sent += 1
                offering = False
            if produced:
                if len(received) >= outputs:
                    raise AssertionError(f"unexpected output {value:#x} after the expected {outputs} "
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
                raise StreamTimeout(f"timed out after {cycle} cycles: sent {sent}/{len(beats)} beats, "
                                    f"received {len(received)}/{outputs} results")
        i_valid.value = 0
        self.cycles += cycle
        return received


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
