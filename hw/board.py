"""A compiled network on a board: a UART host link with a framed protocol around :class:`hw.network.Accelerator`.

One gateware core, :class:`BoardCore`, is both what the Verilator simulation drives (plain ``rx`` / ``tx`` /
``led`` ports) and what goes into the bitstream (:class:`BoardTop` adds the board's clock, power-on reset, a
reset button and the pins, all from ``amaranth-boards``)::

    rx -> UARTRx -> Deframer (magic, header, samples into a 2-bank buffer, CRC-8 per sample, timeout)
                        |  features (one per beat, last per sample)      | answer queue (result / info / error,
                        v                                                v  in the order they were decided)
                    Accelerator --- logits + class ---------------> Framer -> UARTTx -> tx

The wire protocol is :class:`WireFormat` (``docs/board.md`` spells it out byte by byte). The receiver accepts
every byte the UART delivers in the cycle it arrives (a UART cannot be stalled), so it never back-pressures
and never hangs. Every sample, request and malformed byte sequence gets exactly one answer, and the answers
leave in the order they were decided (results included: nothing overtakes): the receiver queues one entry per
answer (:data:`QUEUE_DEPTH`) and refuses a frame or sample that begins while the queue is nearly full
(``OVERRUN``, argument 1) instead of dropping anything. An error discards the line until it has been quiet for
the timeout and every queued answer has begun to be sent; a silence of the timeout inside a frame ends the frame
with a timeout error. Both return the receiver to hunting for the magic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth import Cat, Const, Elaboratable, Module, Mux, ResetInserter, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from .common import equals
from .network import CompiledNetwork

__all__ = ["REQUEST_MAGIC", "ANSWER_MAGIC", "Status", "crc8", "WireFormat", "check_divider", "link_timing", "UARTRx", "UARTTx",
           "QUEUE_DEPTH", "AnswerQueue", "Deframer", "Framer", "BoardCore", "BoardTop", "BOARDS", "Board"]

#: First two bytes of every host request.
REQUEST_MAGIC = bytes((0xA5, 0x5A))
#: First byte of every board answer.
ANSWER_MAGIC = 0x5A
#: The smallest clock cycles per bit the receiver allows (it samples in the middle of a bit).
MIN_DIVIDER = 4


class Status:
    """The second byte of an answer frame: a result, the info frame, or an error code."""

    RESULT = 0x00
    BAD_MAGIC = 0x01     # arg: the byte received where a magic byte was expected
    BAD_LENGTH = 0x02    # arg: 1 = the features field is not the network's
    TIMEOUT = 0x03       # arg: where (2..6 header after byte 1..5, 7 before or inside a sample, 8 its check byte due)
    CHECKSUM = 0x04      # arg: the check byte received
    OVERRUN = 0x05       # arg: 0 = a sample began with both buffer banks full, 1 = a frame or sample began with
    INFO = 0x10          #      the answer queue nearly full
    ERRORS = {BAD_MAGIC: "bad magic", BAD_LENGTH: "wrong length", TIMEOUT: "timeout inside a frame",
              CHECKSUM: "sample checksum mismatch", OVERRUN: "overrun"}
    #: What an ``OVERRUN`` argument says.
    OVERRUNS = {0: "sample buffer overrun", 1: "answer queue full"}


def crc8(data: bytes, crc: int = 0) -> int:
    """CRC-8 with polynomial x^8 + x^2 + x + 1 (0x07), initial value 0, no reflection (CRC-8/SMBUS).

    >>> hex(crc8(b"123456789"))
    '0xf4'
    """
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _crc8_step(crc: Value, byte: Value) -> Value:
    """:func:`crc8` of one byte in gateware. One byte's CRC is linear over GF(2) in ``crc ^ byte``: output
    bit j is the XOR of the bits i of ``crc ^ byte`` whose own CRC, ``crc8(bytes([1 << i]))``, has bit j."""
    v = crc ^ byte
    columns = [crc8(bytes((1 << i,))) for i in range(8)]
    return Cat(*[_xor([v[i] for i in range(8) if columns[i] >> j & 1]) for j in range(8)])


def _xor(bits: list) -> Value:
    out = bits[0]
    for b in bits[1:]:
        out = out ^ b
    return out


def _spec_byte(bits: int, signed: bool) -> int:
    return bits | (0x80 if signed else 0)


@dataclass(frozen=True)
class WireFormat:
    """What the bytes of one network's frames mean (``docs/board.md``); host and gateware share it.

    Request: ``A5 5A``, sample count (u16 LE), features (u16 LE), then per sample ``features * in_bytes``
    bytes (each feature little-endian two's complement in ``in_bytes`` bytes) and their :func:`crc8`.
    A count of 0 asks for the info frame. Answers start with ``5A`` and a :class:`Status` byte: a result
    ``5A 00 cls logits... crc`` (each logit ``out_bytes`` LE), an error ``5A code arg crc``, the info frame
    ``5A 10 features(u16) in_spec classes out_spec digest(4) crc`` (a spec byte is ``bits | signed << 7``).
    The answer's CRC covers every byte before it, the magic included.

    Raises
    ------
    ValueError
        ``"Board classes must be an integer from 1 to 255, not 300"`` (and the same for features, bits).
    """

    features: int
    in_bits: int
    in_signed: bool
    classes: int
    out_bits: int
    out_signed: bool
    digest: bytes = bytes(4)

    def __post_init__(self):
        for name, value, hi in (("features", self.features, 65535), ("classes", self.classes, 255),
                                ("input bits", self.in_bits, 32), ("logit bits", self.out_bits, 32)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
                raise ValueError(f"Board {name} must be an integer from 1 to {hi}, not {value!r}")
        if not isinstance(self.digest, bytes) or len(self.digest) != 4:
            raise ValueError(f"Board digest must be 4 bytes, not {self.digest!r}")

    @classmethod
    def of(cls, compiled: CompiledNetwork) -> WireFormat:
        net, last = compiled.network, compiled.network.layers[-1]
        return cls(net.input.features, net.input.bits, net.input.signed, net.out_features, last.out_bits,
                   last.out_signed, bytes.fromhex(compiled.digest(8)))

    @property
    def in_bytes(self) -> int:
        return -(-self.in_bits // 8)

    @property
    def out_bytes(self) -> int:
        return -(-self.out_bits // 8)

    @property
    def sample_bytes(self) -> int:
        """Bytes of one sample on the wire, its check byte included."""
        return self.features * self.in_bytes + 1

    @property
    def result_bytes(self) -> int:
        return 4 + self.classes * self.out_bytes

    ERROR_BYTES = 4
    INFO_BYTES = 12

    def info_payload(self) -> bytes:
        """The info frame without its CRC."""
        return bytes((ANSWER_MAGIC, Status.INFO, self.features & 0xFF, self.features >> 8,
                      _spec_byte(self.in_bits, self.in_signed), self.classes,
                      _spec_byte(self.out_bits, self.out_signed))) + self.digest

    @classmethod
    def from_info(cls, frame: bytes) -> WireFormat:
        """The format an info frame describes (CRC checked).

        Raises
        ------
        ValueError
            ``"Info frame must be 12 bytes starting 5a 10 with a valid CRC, not ..."``.
        """
        if (len(frame) != cls.INFO_BYTES or frame[0] != ANSWER_MAGIC or frame[1] != Status.INFO
                or crc8(frame[:-1]) != frame[-1]):
            raise ValueError(f"Info frame must be {cls.INFO_BYTES} bytes starting 5a 10 with a valid CRC, "
                             f"not {frame.hex(' ')!r}")
        return cls(frame[2] | frame[3] << 8, frame[4] & 0x7F, bool(frame[4] & 0x80), frame[5], frame[6] & 0x7F,
                   bool(frame[6] & 0x80), bytes(frame[7:11]))

    def header(self, count: int) -> bytes:
        if not 0 <= count <= 65535:
            raise ValueError(f"Sample count must be an integer from 0 to 65535, not {count!r}")
        return REQUEST_MAGIC + bytes((count & 0xFF, count >> 8, self.features & 0xFF, self.features >> 8))

    def sample(self, values) -> bytes:
        """One sample's bytes with its check byte (``values``: ``features`` integers in the input range)."""
        raw = b"".join((int(v) & ((1 << 8 * self.in_bytes) - 1)).to_bytes(self.in_bytes, "little")
                       for v in values)
        return raw + bytes((crc8(raw),))

    def decode_result(self, frame: bytes) -> tuple[int, list[int]]:
        """``(cls, logits)`` of a result frame (CRC checked).

        Raises
        ------
        ValueError
            ``"Result frame must end with its CRC 0x3c, not 0x00"``.
        """
        if crc8(frame[:-1]) != frame[-1]:
            raise ValueError(f"Result frame must end with its CRC {crc8(frame[:-1]):#04x}, not {frame[-1]:#04x}")
        b = self.out_bytes
        logits = []
        for k in range(self.classes):
            value = int.from_bytes(frame[3 + k * b:3 + (k + 1) * b], "little")
            if self.out_signed and value >> (8 * b - 1):
                value -= 1 << 8 * b
            logits.append(value)
        return frame[2], logits


def check_divider(clk_freq: float, baud: int) -> int:
    """Clock cycles per UART bit, ``round(clk_freq / baud)``.

    Raises
    ------
    ValueError
        ``"Baud rate must give at least 4 clock cycles per bit at 12 MHz (at most 3000000), not 6000000"``,
        ``"Baud rate must be within 2 % of clk_freq / round(clk_freq / baud), not 115200 (3.1 % off)"``.
    """
    if isinstance(baud, bool) or not isinstance(baud, int) or baud < 1:
        raise ValueError(f"Baud rate must be a positive integer, not {baud!r}")
    if not (isinstance(clk_freq, (int, float)) and clk_freq > 0):
        raise ValueError(f"Clock frequency must be a positive number of Hz, not {clk_freq!r}")
    divider = round(clk_freq / baud)
    if divider < MIN_DIVIDER:
        raise ValueError(f"Baud rate must give at least {MIN_DIVIDER} clock cycles per bit at {clk_freq / 1e6:g} MHz "
                         f"(at most {int(clk_freq // MIN_DIVIDER)}), not {baud}")
    error = abs(clk_freq / divider - baud) / baud
    if error > 0.02:
        raise ValueError(f"Baud rate must be within 2 % of clk_freq / round(clk_freq / baud), not {baud} "
                         f"({100 * error:.1f} % off)")
    return divider


def link_timing(clk_freq: float, baud: int, timeout: float) -> tuple[int, int]:
    """``(divider, timeout_cycles)`` of a link: :func:`check_divider`, and ``timeout`` seconds in clock cycles
    (at least 40 bit times, so that no answer the board is sending can look like a silence).

    Raises
    ------
    ValueError
        The errors of :func:`check_divider`; ``"Timeout must be a positive number of seconds, not 0"``.
    """
    divider = check_divider(clk_freq, baud)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"Timeout must be a positive number of seconds, not {timeout!r}")
    return divider, max(int(round(timeout * clk_freq)), 40 * divider)


# -- UART ------------------------------------------------------------------------------------------------------

def _uart_divider(divider) -> int:
    if isinstance(divider, bool) or not isinstance(divider, int) or divider < MIN_DIVIDER:
        raise ValueError(f"UART divider must be an integer of at least {MIN_DIVIDER} cycles per bit, not {divider!r}")
    return divider


class UARTRx(wiring.Component):
    """8N1 receiver: ``rx`` (synchronised here) -> one byte per beat on ``o``.

    A falling edge starts a character; the start bit is checked half a bit later and the data bits are
    sampled in their middles, LSB first. A character whose stop bit is 0 is dropped and the receiver waits
    for the line to go high again (a break never yields bytes). ``o`` pulses ``valid`` for one cycle per
    byte: the consumer must be always ready (``o.ready`` is ignored).
    """

    def __init__(self, divider: int):
        self._divider = _uart_divider(divider)
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        div = self._divider
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        count = Signal(range(div))
        bit = Signal(range(9))
        shift = Signal(8)
        m.d.sync += self.o.valid.eq(0)
        state = Signal(range(5))
        IDLE, START, DATA, STOP, BREAK = range(5)
        with m.If(equals(state, IDLE)):
            with m.If(~rx):
                m.d.sync += count.eq(div // 2 - 1)
                m.d.sync += state.eq(START)
        with m.Elif(equals(state, START)):
            with m.If(count.any()):
                m.d.sync += count.eq(count - 1)
            with m.Elif(rx):          # a glitch, not a start bit
                m.d.sync += state.eq(IDLE)
            with m.Else():
                m.d.sync += [count.eq(div - 1), bit.eq(0)]
                m.d.sync += state.eq(DATA)
        with m.Elif(equals(state, DATA)):
            with m.If(count.any()):
                m.d.sync += count.eq(count - 1)
            with m.Else():
                m.d.sync += [shift.eq(Cat(shift[1:], rx)), bit.eq(bit + 1), count.eq(div - 1)]
                with m.If(equals(bit, 7)):
                    m.d.sync += state.eq(STOP)
        with m.Elif(equals(state, STOP)):
            with m.If(count.any()):
                m.d.sync += count.eq(count - 1)
            with m.Elif(rx):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(shift)]
                m.d.sync += state.eq(IDLE)
            with m.Else():
                m.d.sync += state.eq(BREAK)
        with m.Else():   # BREAK, and any other encoding: wait for the line to go high
            with m.If(rx):
                m.d.sync += state.eq(IDLE)
        return m


class UARTTx(wiring.Component):
    """8N1 transmitter: one byte per beat on ``i`` -> ``tx`` (idle high), back to back at full rate."""

    def __init__(self, divider: int):
        self._divider = _uart_divider(divider)
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        div = self._divider
        count = Signal(range(div))
        bits = Signal(range(11))          # bits still to send, the current one included
        shift = Signal(10, init=0x3FF)
        m.d.comb += [self.tx.eq(shift[0]), self.i.ready.eq(equals(bits, 0))]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [shift.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))), bits.eq(10), count.eq(div - 1)]
        with m.Elif(bits.any()):
            with m.If(count.any()):
                m.d.sync += count.eq(count - 1)
            with m.Else():
                m.d.sync += [shift.eq(Cat(shift[1:], Const(1, 1))), bits.eq(bits - 1), count.eq(div - 1)]
        return m


# -- protocol receiver ----------------------------------------------------------------------------------------

#: Answers the board queues by default: decided, not yet begun to be sent (``docs/board.md``).
QUEUE_DEPTH = 32


def _answer_signature(*, always_ready: bool = False):
    """One answer: its :class:`Status` and argument byte (a result's is 0: the accelerator has its data)."""
    return stream.Signature(data.StructLayout({"code": 8, "arg": 8}), always_ready=always_ready)


def _queue_depth(depth) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 4:
        raise ValueError(f"Answer queue depth must be an integer of at least 4, not {depth!r}")
    return depth


class AnswerQueue(wiring.Component):
    """The answers decided and not yet begun to be sent, first in, first out: ``i`` -> ``o``.

    ``i`` is always ready: the receiver (:class:`Deframer`) never pushes into a full queue, as it refuses a
    frame or sample while the queue is nearly full. ``level`` counts the entries, the one on ``o`` included; an
    entry leaves when ``o`` transfers it, which the :class:`Framer` does in the cycle before the answer's first
    byte. A block RAM of ``depth - 1`` entries (16 bits) and an output register.

    Raises
    ------
    ValueError
        ``"Answer queue depth must be an integer of at least 4, not 3"``.
    """

    def __init__(self, depth: int = QUEUE_DEPTH):
        self._depth = _queue_depth(depth)
        super().__init__({"i": In(_answer_signature(always_ready=True)), "o": Out(_answer_signature()),
                          "level": Out(range(depth + 1))})

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=16, depth=self._depth)
        m.d.comb += [fifo.w_en.eq(self.i.valid), fifo.w_data.eq(self.i.payload),
                     self.o.valid.eq(fifo.r_rdy), self.o.payload.eq(fifo.r_data), fifo.r_en.eq(self.o.ready),
                     self.level.eq(fifo.level)]
        return m


class Deframer(wiring.Component):
    """Request frames (bytes on ``i``) -> the samples' features on ``o`` and every answer, as decided, on ``answer``.

    Each sample's bytes go into one bank of a two-bank buffer; only when its check byte matches the CRC is
    the bank handed to the feeder, which streams it to ``o`` one feature per beat (``last`` on the final
    one), so a corrupted sample never reaches the accelerator. A bank is free again once ``o`` has
    transferred the sample's ``last`` beat.

    Every input that gets an answer (a sample, an info request, a malformed byte sequence, a timeout) yields
    exactly one ``answer`` beat in the cycle it is decided (``answer`` is always ready: it feeds the
    :class:`AnswerQueue`): ``(RESULT, 0)`` for a sample whose check byte matched (its data follows from the
    accelerator), ``(INFO, 0)``, or an error and its argument. ``queued`` is the queue's level: a frame's first
    byte or a sample's first byte that arrives while fewer than 3 of the ``queue_depth`` entries are free is
    refused with ``(OVERRUN, 1)`` (3: room for its own answer, a timeout after it, and the refusal of whatever
    comes next), so the queue never overflows. ``busy`` is high inside a frame.

    ``i`` is always ready. ``timeout``: clock cycles without a byte after which a frame in progress ends
    with ``TIMEOUT`` and the receiver hunts for the magic again; after any other error the receiver discards
    bytes until the line has been quiet that long and the queue is empty.

    Raises
    ------
    ValueError
        ``"Timeout must be a positive number of clock cycles, not 0"``,
        ``"Answer queue depth must be an integer of at least 4, not 3"``.
    """

    def __init__(self, fmt: WireFormat, *, timeout: int, queue_depth: int = QUEUE_DEPTH, channels: int = 1):
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise ValueError(f"Timeout must be a positive number of clock cycles, not {timeout!r}")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1 or fmt.features % channels:
            raise ValueError(f"Channels must be a positive divisor of the {fmt.features} features, not {channels!r}")
        self._fmt, self._timeout, self._depth = fmt, timeout, _queue_depth(queue_depth)
        self._channels = channels
        in_shape = data.StructLayout({"x": _in_shape(fmt), "last": 1})
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(in_shape)),
                          "answer": Out(_answer_signature(always_ready=True)), "queued": In(range(queue_depth + 1)),
                          "busy": Out(1)})

    @property
    def queue_depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        fmt = self._fmt
        features, nb = fmt.features, fmt.in_bytes
        m.submodules.buffer = buffer = Memory(shape=8 * nb, depth=2 * features, init=[])
        wp = buffer.write_port(granularity=8)
        rp = buffer.read_port(transparent_for=())

        room = Signal()        # a frame or a sample may begin: its answer, a timeout after it, a refusal fit
        m.d.comb += room.eq(self.queued + 3 <= self._depth)

        def answer(status, argument):
            m.d.comb += [self.answer.valid.eq(1), self.answer.payload.code.eq(status),
                         self.answer.payload.arg.eq(argument)]

        byte, got = self.i.payload, self.i.valid
        m.d.comb += self.i.ready.eq(1)
        crc = Signal(8)
        lo = Signal(8)                                   # low byte of a 16-bit header field
        remaining = Signal(16)                           # samples still to come in this frame
        feature = Signal(range(max(features, 2)))
        lane = Signal(range(max(nb, 2)))
        wbank = Signal()
        full = Signal(2)
        set_full = Signal(2)
        clr_full = Signal(2)
        m.d.sync += full.eq((full | set_full) & ~clr_full)

        idle = Signal(range(self._timeout + 1))
        quiet = Signal()
        m.d.comb += quiet.eq(idle == self._timeout)
        with m.If(got):
            m.d.sync += idle.eq(0)
        with m.Elif(~quiet):
            m.d.sync += idle.eq(idle + 1)

        # a sample arrives channel by channel (torch's order); the accelerator takes it position by position when
        # its first engine reads windows (channels > 1): feature ch * P + p is kept at p * C + ch
        chans, positions = self._channels, features // self._channels
        waddr = Signal(range(max(features, 2)))
        wpos = Signal(range(max(positions, 2)))
        wch = Signal(range(max(chans, 2)))
        m.d.comb += [wp.addr.eq(Mux(wbank, features, 0) + (waddr if chans > 1 else feature)),
                     wp.data.eq(byte.replicate(nb))]
        states = ["HUNT", "MAGIC1", "COUNT0", "COUNT1", "FEATURES0", "FEATURES1", "DATA", "CHECK", "SKIP"]
        HUNT, MAGIC1, COUNT0, COUNT1, FEATURES0, FEATURES1, DATA, CHECK, SKIP = range(len(states))
        state = Signal(range(len(states)))

        def timed(current: int):
            """Inside a frame: a silence of the timeout ends it (TIMEOUT, arg = the state's number)."""
            with m.If(~got & quiet):
                answer(Status.TIMEOUT, current + 1)
                m.d.sync += state.eq(HUNT)

        m.d.comb += self.busy.eq(~equals(state, HUNT) & ~equals(state, SKIP))
        with m.If(equals(state, HUNT)):
            with m.If(got):
                with m.If(byte != REQUEST_MAGIC[0]):
                    answer(Status.BAD_MAGIC, byte)
                    m.d.sync += state.eq(SKIP)
                with m.Elif(~room):
                    answer(Status.OVERRUN, 1)
                    m.d.sync += state.eq(SKIP)
                with m.Else():
                    m.d.sync += state.eq(MAGIC1)
        with m.Elif(equals(state, MAGIC1)):
            timed(MAGIC1)
            with m.If(got):
                with m.If(byte == REQUEST_MAGIC[1]):
                    m.d.sync += state.eq(COUNT0)
                with m.Else():
                    answer(Status.BAD_MAGIC, byte)
                    m.d.sync += state.eq(SKIP)
        with m.Elif(equals(state, COUNT0)):
            timed(COUNT0)
            with m.If(got):
                m.d.sync += lo.eq(byte)
                m.d.sync += state.eq(COUNT1)
        with m.Elif(equals(state, COUNT1)):
            timed(COUNT1)
            with m.If(got):
                m.d.sync += remaining.eq(Cat(lo, byte))
                m.d.sync += state.eq(FEATURES0)
        with m.Elif(equals(state, FEATURES0)):
            timed(FEATURES0)
            with m.If(got):
                m.d.sync += lo.eq(byte)
                m.d.sync += state.eq(FEATURES1)
        with m.Elif(equals(state, FEATURES1)):
            timed(FEATURES1)
            with m.If(got):
                m.d.sync += [feature.eq(0), lane.eq(0), crc.eq(0), waddr.eq(0), wpos.eq(0), wch.eq(0)]
                with m.If(equals(remaining, 0)):
                    answer(Status.INFO, 0)
                    m.d.sync += state.eq(HUNT)
                with m.Elif(Cat(lo, byte) != features):
                    answer(Status.BAD_LENGTH, 1)
                    m.d.sync += state.eq(SKIP)
                with m.Else():
                    m.d.sync += state.eq(DATA)
        with m.Elif(equals(state, DATA)):
            timed(DATA)
            with m.If(got):
                begins = equals(feature, 0) & equals(lane, 0)
                with m.If(begins & ~room):
                    answer(Status.OVERRUN, 1)
                    m.d.sync += state.eq(SKIP)
                with m.Elif(begins & Mux(wbank, full[1], full[0])):
                    answer(Status.OVERRUN, 0)
                    m.d.sync += state.eq(SKIP)
                with m.Else():
                    m.d.comb += wp.en.eq(1 << lane)
                    m.d.sync += crc.eq(_crc8_step(crc, byte))
                    with m.If(equals(lane, nb - 1)):
                        m.d.sync += lane.eq(0)
                        with m.If(equals(feature, features - 1)):
                            m.d.sync += state.eq(CHECK)
                        with m.Else():
                            m.d.sync += feature.eq(feature + 1)
                        with m.If(equals(wpos, positions - 1)):
                            m.d.sync += [wpos.eq(0), wch.eq(wch + 1), waddr.eq(wch + 1)]
                        with m.Else():
                            m.d.sync += [wpos.eq(wpos + 1), waddr.eq(waddr + chans)]
                    with m.Else():
                        m.d.sync += lane.eq(lane + 1)
        with m.Elif(equals(state, CHECK)):
            timed(CHECK)
            with m.If(got):
                m.d.sync += [feature.eq(0), lane.eq(0), crc.eq(0), waddr.eq(0), wpos.eq(0), wch.eq(0)]
                with m.If(byte == crc):
                    answer(Status.RESULT, 0)
                    m.d.comb += set_full.eq(Mux(wbank, 2, 1))
                    m.d.sync += [wbank.eq(~wbank), remaining.eq(remaining - 1)]
                    with m.If(equals(remaining, 1)):
                        m.d.sync += state.eq(HUNT)
                    with m.Else():
                        m.d.sync += state.eq(DATA)
                with m.Else():
                    answer(Status.CHECKSUM, byte)
                    m.d.sync += state.eq(SKIP)
        with m.Else():   # SKIP, and any other encoding: discard until the line is quiet and every answer has left
            with m.If(quiet & equals(self.queued, 0)):
                m.d.sync += state.eq(HUNT)

        # feeder: the full bank, in order, one feature per beat; the read port holds its data while stalled. The
        # bank is freed when its last beat is transferred (the beat then on `o` came from the bank before `fbank`)
        fbank = Signal()
        fidx = Signal(range(max(features, 2)))
        advance = Signal()
        m.d.comb += [advance.eq(Mux(fbank, full[1], full[0]) & (~self.o.valid | self.o.ready)),
                     rp.addr.eq(Mux(fbank, features, 0) + fidx), rp.en.eq(advance),
                     self.o.payload.x.eq(rp.data[:Value.cast(self.o.payload.x).shape().width])]
        with m.If(self.o.valid & self.o.ready & self.o.payload.last):
            m.d.comb += clr_full.eq(Mux(fbank, 1, 2))
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.last.eq(equals(fidx, features - 1))]
            with m.If(equals(fidx, features - 1)):
                m.d.sync += [fidx.eq(0), fbank.eq(~fbank)]
            with m.Else():
                m.d.sync += fidx.eq(fidx + 1)
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


def _in_shape(fmt: WireFormat):
    from amaranth import signed, unsigned

    return signed(fmt.in_bits) if fmt.in_signed else unsigned(fmt.in_bits)


# -- protocol transmitter ----------------------------------------------------------------------------------------

class Framer(wiring.Component):
    """Answer frames, in the order of the answer queue (``answer``), results filled in from ``result``.

    The head of ``answer`` says which frame comes next: a ``RESULT`` entry waits for the accelerator's next
    result on ``result`` (results come in sample order, one per ``RESULT`` entry), an ``INFO`` entry is the info
    frame, any other code an error frame with its argument. A frame is loaded into a byte shift register whole
    (the entry and the result taken in the same cycle), then sent byte by byte on ``o`` with its running CRC-8
    as the last byte; the next entry is taken in the cycle after the CRC byte went out.
    """

    def __init__(self, fmt: WireFormat, result_layout):
        self._fmt = fmt
        super().__init__({"result": In(stream.Signature(result_layout)), "answer": In(_answer_signature()),
                          "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        fmt = self._fmt
        longest = max(fmt.result_bytes, fmt.INFO_BYTES) - 1
        shift = Signal(8 * longest)
        left = Signal(range(longest + 2))     # bytes still to send, the CRC included
        crc = Signal(8)
        m.d.comb += [self.o.valid.eq(left.any()), self.o.payload.eq(Mux(equals(left, 1), crc, shift[:8]))]
        idle = equals(left, 0)
        res, ans = self.result, self.answer
        is_result = equals(ans.payload.code, Status.RESULT)
        m.d.comb += [ans.ready.eq(idle & (~is_result | res.valid)), res.ready.eq(idle & ans.valid & is_result)]

        def load(frame_bytes: list, length: int):
            m.d.sync += [shift.eq(Cat(*frame_bytes)), left.eq(length), crc.eq(0)]

        info = list(fmt.info_payload())
        with m.If(ans.valid & ans.ready):
            with m.If(is_result):
                nb = fmt.out_bytes
                logits = [_extend(Value.cast(res.payload.logits[k]), 8 * nb, fmt.out_signed)
                          for k in range(fmt.classes)]
                load([Const(ANSWER_MAGIC, 8), Const(Status.RESULT, 8),
                      _extend(Value.cast(res.payload.cls), 8, False), *logits], fmt.result_bytes)
            with m.Elif(ans.payload.code == Status.INFO):
                load([Const(b, 8) for b in info], fmt.INFO_BYTES)
            with m.Else():
                load([Const(ANSWER_MAGIC, 8), ans.payload.code, ans.payload.arg], fmt.ERROR_BYTES)
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += [shift.eq(shift >> 8), left.eq(left - 1), crc.eq(_crc8_step(crc, shift[:8]))]
        return m


def _extend(value: Value, width: int, is_signed: bool) -> Value:
    """``value`` sign- or zero-extended (or truncated) to exactly ``width`` bits, as an unsigned Value."""
    v = value.as_signed() if is_signed else value.as_unsigned()
    w = v.shape().width
    if w >= width:
        return v[:width]
    pad = v[w - 1].replicate(width - w) if is_signed else Const(0, width - w)
    return Cat(v, pad)


# -- the core and the board top ----------------------------------------------------------------------------------

class BoardCore(wiring.Component):
    """UART, protocol and accelerator: the design inside every bitstream, and the Verilator top.

    Parameters
    ----------
    compiled : hw.network.CompiledNetwork
    clk_freq : float
        Clock frequency in Hz (sets the UART divider, the timeout and the LED timing).
    baud : int
        UART rate; ``round(clk_freq / baud)`` must be at least 4 cycles per bit and within 2 % of it.
    timeout : float
        Seconds of silence inside a frame before it ends with a timeout error (default 0.1).

    Members
    -------
    rx : In(1)
    tx : Out(1)
    led : Out(4)
        0: heartbeat (about 1 Hz), 1: receiving a frame or a byte just arrived, 2: transmitting,
        3: an error frame was sent in the last ~0.25 s.

    Raises
    ------
    TypeError, ValueError
        ``"Compiled network must be a CompiledNetwork, not ..."``, the errors of :func:`check_divider` and
        :class:`WireFormat` (a network with more than 255 classes).
    """

    def __init__(self, compiled: CompiledNetwork, *, clk_freq: float, baud: int = 115200, timeout: float = 0.1):
        if not isinstance(compiled, CompiledNetwork):
            raise TypeError(f"Compiled network must be a CompiledNetwork, not {compiled!r}")
        self._divider, self._timeout = link_timing(clk_freq, baud, timeout)
        self._compiled, self._clk_freq, self._baud = compiled, clk_freq, baud
        self._fmt = WireFormat.of(compiled)
        # the host sends a sample as torch flattens it; a network whose first engine reads windows takes it
        # channels-last (CompiledNetwork.input_order), which the deframer's buffer does
        order = compiled.input_order()
        self._channels = 1 if np.array_equal(order, np.arange(len(order))) else compiled.network.input.shape[0]
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "led": Out(4)})

    @property
    def divider(self) -> int:
        """Clock cycles per UART bit."""
        return self._divider

    @property
    def timeout_cycles(self) -> int:
        """Clock cycles of silence that end a frame (at least 40 bit times)."""
        return self._timeout

    @property
    def wire_format(self) -> WireFormat:
        return self._fmt

    def elaborate(self, platform):
        m = Module()
        fmt = self._fmt
        m.submodules.uart_rx = urx = UARTRx(self._divider)
        m.submodules.uart_tx = utx = UARTTx(self._divider)
        m.submodules.deframer = dfr = Deframer(fmt, timeout=self._timeout, channels=self._channels)
        m.submodules.accelerator = acc = self._compiled.build()
        m.submodules.queue = queue = AnswerQueue(dfr.queue_depth)
        m.submodules.framer = fr = Framer(fmt, acc.o.payload.shape())
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        wiring.connect(m, producer=urx.o, consumer=dfr.i)
        wiring.connect(m, producer=dfr.o, consumer=acc.i)
        wiring.connect(m, producer=acc.o, consumer=fr.result)
        wiring.connect(m, producer=dfr.answer, consumer=queue.i)
        wiring.connect(m, producer=queue.o, consumer=fr.answer)
        m.d.comb += dfr.queued.eq(queue.level)
        wiring.connect(m, producer=fr.o, consumer=utx.i)

        beat = Signal(max(1, bits_for(int(self._clk_freq)) - 1))
        m.d.sync += beat.eq(beat + 1)

        def stretch(trigger, seconds):
            n = max(2, int(self._clk_freq * seconds))
            left = Signal(range(n + 1))
            with m.If(trigger):
                m.d.sync += left.eq(n)
            with m.Elif(left.any()):
                m.d.sync += left.eq(left - 1)
            return left.any()

        code = queue.o.payload.code
        error = queue.o.valid & queue.o.ready & (code != Status.INFO) & ~equals(code, Status.RESULT)
        m.d.comb += self.led.eq(Cat(beat[-1], dfr.busy | stretch(urx.o.valid, 0.05),
                                    ~utx.i.ready | stretch(utx.i.valid & utx.i.ready, 0.05),
                                    stretch(error, 0.25)))
        return m


@dataclass(frozen=True)
class Board:
    """A board peforge builds for: its ``amaranth-boards`` platform, device, and the pins it uses.

    ``leds``: the LED resources the core's four LEDs go to, in order (fewer LEDs: the first ones);
    ``reset``: the button resource that resets the core (held low = run).
    """

    name: str
    platform: str
    device: str
    clk_mhz: float
    leds: tuple[tuple[str, int], ...]
    reset: tuple[str, int]
    bitstream: str
    target: str                    # synth.TARGETS key of the same device

    def make_platform(self):
        import amaranth_boards.icebreaker
        import amaranth_boards.ulx3s

        for module in (amaranth_boards.ulx3s, amaranth_boards.icebreaker):
            if hasattr(module, self.platform):
                return getattr(module, self.platform)()
        raise ValueError(f"Platform must be an amaranth-boards class, not {self.platform!r}")


BOARDS = {
    "ulx3s-85f": Board("ulx3s-85f", "ULX3S_85F_Platform", "LFE5U-85F", 25.0,
                       (("led", 0), ("led", 1), ("led", 2), ("led", 3)), ("button_fire", 1), "bit", "ecp5-85k"),
    # iCEBreaker: green LED = activity (receiving), red LED = errors; the user button resets
    "icebreaker": Board("icebreaker", "ICEBreakerPlatform", "iCE40UP5K", 12.0,
                        (("led_g", 0), ("led_r", 0)), ("button", 0), "bin", "ice40-up5k"),
}


class BoardTop(Elaboratable):
    """:class:`BoardCore` on a board: the platform's default clock and power-on reset (``amaranth-boards``),
    a reset button, the UART pins and the LEDs.

    ``board`` is a key of :data:`BOARDS`; ``baud`` and ``timeout`` as for :class:`BoardCore`.
    """

    def __init__(self, compiled: CompiledNetwork, board: str, *, baud: int = 115200, timeout: float = 0.1):
        if board not in BOARDS:
            raise ValueError(f"Board must be one of {', '.join(map(repr, BOARDS))}, not {board!r}")
        self._board = BOARDS[board]
        self._core = BoardCore(compiled, clk_freq=self._board.clk_mhz * 1e6, baud=baud, timeout=timeout)

    @property
    def core(self) -> BoardCore:
        return self._core

    def elaborate(self, platform):
        m = Module()
        board = self._board
        uart = platform.request("uart", 0)
        button = platform.request(*board.reset)
        pressed = Signal()
        m.submodules.sync_button = FFSynchronizer(button.i, pressed)
        m.submodules.core = core = ResetInserter(pressed)(self._core)
        m.d.comb += [core.rx.eq(uart.rx.i), uart.tx.o.eq(core.tx)]
        if len(board.leds) == 2:   # two LEDs: activity (rx or tx) and errors
            lights = [core.led[1] | core.led[2], core.led[3]]
        else:
            lights = [core.led[n] for n in range(len(board.leds))]
        for (name, number), light in zip(board.leds, lights):
            m.d.comb += platform.request(name, number).o.eq(light)
        return m
