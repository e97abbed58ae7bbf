"""Formal proofs of the board link (``docs/board.md``): every request byte sequence gets exactly the documented
answers, counted and in order, each in bounded time.

The link of :mod:`hw.board` between the UARTs is a receiver, :class:`~hw.board.Deframer`, that decides the answers,
the :class:`~hw.board.AnswerQueue` that keeps them in order, and a transmitter, :class:`~hw.board.Framer`, that
sends them (filling in results from the accelerator). The proofs use the machinery of :mod:`tb.formal`
(``yowasp-sby``, engine ``smtbmc yices``, a ``check`` task in the proof's mode and a ``cover`` task that must reach
every ``Cover``; files under ``build/formal/<proof>-<hash>/``), on a small link (:data:`LINK_TARGETS`). The pair is
proven in two halves that meet at the queue, each by k-induction, so for input sequences of any length:

``board-receiver.decisions`` (prove)
    A reference of the documented receiver (:class:`_Reference`, written from ``docs/board.md``: its own states and
    counters, a bitwise CRC-8) decides from the bytes alone which answer each input gets and in which cycle: a
    result for a sample whose check byte matches, the info frame, or an error and its argument. The receiver's
    ``answer`` beats must be exactly those, cycle by cycle (so none is lost, none is extra, and they are in order);
    it never pushes into a full queue; it is always ready. Environment: a byte may arrive in any cycle (any
    spacing, back to back included); the accelerator takes features whenever it chooses; the queue's level moves
    as a queue's does (up by the receiver's pushes, down whenever the transmitter chooses). The documented
    conditions that depend on the board's state are computed from these ports (both buffer banks hold samples
    the accelerator has not taken in full; 2 or fewer of the queue's entries are free). The induction is
    strengthened by invariants that map the receiver's registers onto the reference's (state, timer, counters, CRC,
    buffer banks, the queue's room), themselves proven.

``board-transmitter.frames`` (prove)
    Whatever the queue's head and the accelerator offer (within the stream rules; a result within ``acc_stall``
    cycles of a ``RESULT`` entry reaching the head) and however the UART stalls (``ready`` low up to
    ``line_stall`` cycles in a row), the transmitter takes the head as soon as it is idle (a ``RESULT`` entry
    together with its result, and nothing else), then sends exactly that answer's frame from the next cycle, byte
    for byte (magic, status, the argument, the info payload or the result, the CRC-8 of the bytes before it),
    without a gap, and no byte outside a frame. Strengthened by invariants on its shift register and CRC.

Between the halves, the queue is Amaranth's ``SyncFIFOBuffered`` (order and level checked in simulation by
``tests/test_board.py``). ``board-link.answers-deep`` (bmc, ``pytest -m slow``) checks the pair as
:class:`~hw.board.BoardCore` joins it, end to end for 16 cycles from reset: the same reference decides the
answers from the bytes; the queue holds exactly the answers decided and not yet begun; one answer, chosen freely
when decided, must come out as the frame after those owed before it, byte for byte (a result with the stand-in
accelerator's logit: the sum of the sample's features); no frame without an answer owed; every frame's CRC; no
gap; and the next answer owed begins within ``bound`` cycles of the frame before it ending. (Without invariants the solver's effort doubles with every cycle of depth, which is why
the halves are proven by induction and the pair only bounded.)

Covers: receiver: a timeout between two samples after the first one's result; an info request decided while
answers wait; a refused frame and a refused sample (``OVERRUN`` 1, 0); a checksum error. Transmitter: a result
taken the cycle after an info frame's CRC went out; a result waited for as long as allowed; an error frame's CRC
under a stall. Pair: an error frame sent in full behind another answer; a result frame begun.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Cat, Const, Elaboratable, Module, Mux, ResetSignal, Signal, Value, unsigned
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Cover, Fragment
from amaranth.lib import data, wiring

from ..hw.board import ANSWER_MAGIC, REQUEST_MAGIC, AnswerQueue, Deframer, Framer, Status, WireFormat

from .formal import Proof, ProofResult, run_harness

__all__ = ["LinkTarget", "LINK_TARGETS", "LINK_PROOFS", "ReceiverHarness", "FramerHarness", "PairHarness",
           "run_link_proof"]


@dataclass(frozen=True)
class LinkTarget:
    """A small link to prove: the wire format ``fmt`` (inputs of at most 8 bits, one class, a logit of at most 8
    unsigned bits), the receiver's ``timeout`` (cycles) and the ``queue_depth``; the environment's stall bounds
    (``acc_stall``: the accelerator, ``line_stall``: the UART); ``bound``: the most cycles the next answer owed
    waits to begin after the frame before it ended (or after it was decided, if nothing was being sent).

    Raises
    ------
    ValueError
        ``"Link target must have inputs of at most 8 bits and one unsigned logit of at most 8 bits, not ..."``.
    """

    name: str
    fmt: WireFormat
    timeout: int
    queue_depth: int
    acc_stall: int
    line_stall: int
    bound: int

    def __post_init__(self):
        if self.fmt.classes != 1 or self.fmt.out_bits > 8 or self.fmt.out_signed or self.fmt.in_bits > 8:
            raise ValueError(f"Link target must have inputs of at most 8 bits and one unsigned logit of at most 8 "
                             f"bits, not {self.fmt!r}")

    def deframer(self, cls=Deframer) -> Deframer:
        return cls(self.fmt, timeout=self.timeout, queue_depth=self.queue_depth)

    def queue(self, cls=AnswerQueue) -> AnswerQueue:
        return cls(self.queue_depth)

    def framer(self, cls=Framer) -> Framer:
        layout = data.StructLayout({"logits": data.ArrayLayout(unsigned(self.fmt.out_bits), 1), "cls": unsigned(1)})
        return cls(self.fmt, layout)


#: 2 features of 2 bits (a sample is 3 bytes: the features and their check byte), 1 logit of 3 bits (a result
#: frame is 5 bytes), a 3-cycle timeout, a queue of 4 (so 2 answers waiting refuse the next frame or sample). The
#: bound: a result waits for its sample's 2 features to reach the stand-in accelerator, each up to 3 cycles, plus
#: 3 cycles from the check byte to the buffer's output and from the result to the frame.
_TARGET = LinkTarget("board-link", WireFormat(2, 2, False, 1, 3, False, bytes.fromhex("c0ffee42")), timeout=3,
                     queue_depth=4, acc_stall=2, line_stall=1, bound=9)
LINK_TARGETS: dict[str, LinkTarget] = {"board-receiver": _TARGET, "board-transmitter": _TARGET, "board-link": _TARGET}

#: The proofs: the receiver and the transmitter by k-induction; the pair end to end by BMC (``-m slow``).
LINK_PROOFS: dict[str, Proof] = {p.name: p for p in [
    Proof("board-receiver", "decisions", "prove", 4, 14),
    Proof("board-transmitter", "frames", "prove", 4, 14),
    Proof("board-link", "answers", "bmc", 16, 16, slow=True),
]}


# -- shared pieces ---------------------------------------------------------------------------------------------

def _crc_step(m: Module, name: str, crc: Value, byte: Value) -> Value:
    """CRC-8 (poly 0x07, init 0, MSB first) of one more byte, bit by bit as the definition reads: eight times,
    shift left and subtract (xor) the polynomial if the bit shifted out was set."""
    c = (crc ^ byte)[:8]
    for k in range(8):
        step = Signal(8, name=f"{name}_bit{k}")
        shifted = Cat(Const(0, 1), c[:7])
        m.d.comb += step.eq(Mux(c[7], shifted ^ 0x07, shifted))
        c = step
    return c


def _info_bytes(fmt: WireFormat) -> list[int]:
    """The info frame before its CRC, as docs/board.md lays it out."""
    spec_in = fmt.in_bits | (0x80 if fmt.in_signed else 0)
    spec_out = fmt.out_bits | (0x80 if fmt.out_signed else 0)
    return [0x5A, 0x10, fmt.features & 0xFF, fmt.features >> 8, spec_in, fmt.classes, spec_out, *fmt.digest]


def _free(m, name, width=1) -> Signal:
    s = Signal(width, name=name)
    m.d.comb += s.eq(AnySeq(width))
    return s


def _probe(fragment: Fragment, names) -> dict:
    """The signals named ``names`` that ``fragment`` (an elaborated component) drives, for invariants that map a
    design's registers onto a reference's."""
    found = {}
    for statements in fragment.statements.values():
        for statement in statements:
            for sig in statement._lhs_signals():
                found.setdefault(sig.name, sig)
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"Receiver must drive the registers the proof maps, not lack {missing}")
    return {n: found[n] for n in names}


class _Reference:
    """The receiver rules of docs/board.md, from the bytes (``byte`` when ``got``), the queue's ``level`` and the
    accelerator taking a sample's last feature (``take_last``): ``push``, ``code``, ``arg`` say which answer is
    decided in a cycle; ``value`` is a result's logit under the stand-in accelerator (the sum of the sample's
    features, modulo the logit width)."""

    HUNT, DATA, CHECK, SKIP = 0, 6, 7, 8

    def __init__(self, m: Module, t: LinkTarget, byte, got, level, take_last):
        fmt = t.fmt
        push, code, arg = Signal(name="r_push"), Signal(8, name="r_code"), Signal(8, name="r_arg")

        def answer(status, argument):
            m.d.comb += [push.eq(1), code.eq(status), arg.eq(argument)]

        room = Signal(name="r_room")
        m.d.comb += room.eq(level + 3 <= t.queue_depth)
        banks = Signal(range(4), name="r_banks")     # samples committed, their last feature not yet taken
        commit = Signal(name="r_commit")
        m.d.sync += banks.eq(banks + commit - take_last)
        idle = Signal(range(t.timeout + 1), name="r_idle")
        quiet = Signal(name="r_quiet")
        m.d.comb += quiet.eq(idle == t.timeout)
        with m.If(got):
            m.d.sync += idle.eq(0)
        with m.Elif(~quiet):
            m.d.sync += idle.eq(idle + 1)

        sample_bytes = fmt.features * fmt.in_bytes
        # states: 0 hunting; 1..5 header bytes received; 6 in a sample (`at` of its bytes received); 7 its check
        # byte due; 8 discarding after an error
        HUNT, DATA, CHECK, SKIP = self.HUNT, self.DATA, self.CHECK, self.SKIP
        rstate = Signal(range(9), name="r_state")
        at = Signal(range(max(sample_bytes, 2)), name="r_at")
        header = [Signal(8, name=f"r_header{k}") for k in range(3)]   # count (2 bytes), features low byte
        remaining = Signal(16, name="r_remaining")
        scrc = Signal(8, name="r_crc")
        total = Signal(fmt.out_bits, name="r_sum")
        value = Signal(fmt.out_bits, name="r_value")
        m.d.comb += value.eq(total)

        with m.If(rstate == HUNT):
            with m.If(got):
                with m.If(byte != REQUEST_MAGIC[0]):
                    answer(Status.BAD_MAGIC, byte)
                    m.d.sync += rstate.eq(SKIP)
                with m.Elif(~room):
                    answer(Status.OVERRUN, 1)
                    m.d.sync += rstate.eq(SKIP)
                with m.Else():
                    m.d.sync += rstate.eq(1)
        with m.Elif(rstate == SKIP):
            with m.If(quiet & (level == 0)):
                m.d.sync += rstate.eq(HUNT)
        with m.Elif(~got & quiet):        # a silence of the timeout inside a frame: header bytes + 1, 7, 8
            answer(Status.TIMEOUT, rstate + 1)
            m.d.sync += rstate.eq(HUNT)
        with m.Elif(got):
            with m.If(rstate == 1):
                with m.If(byte == REQUEST_MAGIC[1]):
                    m.d.sync += rstate.eq(2)
                with m.Else():
                    answer(Status.BAD_MAGIC, byte)
                    m.d.sync += rstate.eq(SKIP)
            with m.Elif(rstate <= 4):
                for k in range(2, 5):
                    with m.If(rstate == k):
                        m.d.sync += header[k - 2].eq(byte)
                m.d.sync += rstate.eq(rstate + 1)
            with m.Elif(rstate == 5):
                count = Cat(header[0], header[1])
                with m.If(count == 0):
                    answer(Status.INFO, 0)
                    m.d.sync += rstate.eq(HUNT)
                with m.Elif(Cat(header[2], byte) != fmt.features):
                    answer(Status.BAD_LENGTH, 1)
                    m.d.sync += rstate.eq(SKIP)
                with m.Else():
                    m.d.sync += [remaining.eq(count), at.eq(0), scrc.eq(0), total.eq(0), rstate.eq(DATA)]
            with m.Elif(rstate == DATA):
                with m.If((at == 0) & ~room):
                    answer(Status.OVERRUN, 1)
                    m.d.sync += rstate.eq(SKIP)
                with m.Elif((at == 0) & (banks == 2)):
                    answer(Status.OVERRUN, 0)
                    m.d.sync += rstate.eq(SKIP)
                with m.Else():
                    m.d.sync += [scrc.eq(_crc_step(m, "r_crc_next", scrc, byte)), at.eq(at + 1),
                                 total.eq((total + byte[:fmt.in_bits])[:fmt.out_bits])]
                    with m.If(at == sample_bytes - 1):
                        m.d.sync += [at.eq(0), rstate.eq(CHECK)]
            with m.Else():                # CHECK
                with m.If(byte == scrc):
                    answer(Status.RESULT, 0)
                    m.d.comb += commit.eq(1)
                    m.d.sync += [remaining.eq(remaining - 1), scrc.eq(0), total.eq(0),
                                 rstate.eq(Mux(remaining == 1, HUNT, DATA))]
                with m.Else():
                    answer(Status.CHECKSUM, byte)
                    m.d.sync += rstate.eq(SKIP)


        self.push, self.code, self.arg, self.value = push, code, arg, value
        self.state, self.at, self.header, self.remaining, self.crc = rstate, at, header, remaining, scrc
        self.banks, self.idle = banks, idle


# -- the receiver: decisions against the reference -------------------------------------------------------------

#: The receiver's registers its invariants map (:func:`_probe`).
_RECEIVER_REGISTERS = ["state", "idle", "remaining", "lo", "crc", "feature", "lane", "full", "wbank", "fbank", "fidx"]


def _receiver_invariants(m: Module, t: LinkTarget, ref: _Reference, probe: dict, dfr: Deframer, level: Value):
    """Invariants that strengthen the receiver's induction: its registers (``probe``) mapped onto the
    reference's, the queue's room and the buffer's banks as the rules keep them."""
    fmt = t.fmt
    rstate, at, header, remaining, scrc, banks, idle = (ref.state, ref.at, ref.header, ref.remaining, ref.crc,
                                                        ref.banks, ref.idle)
    HUNT, DATA, CHECK = ref.HUNT, ref.DATA, ref.CHECK
    full, wbank, fbank, fidx = probe["full"], probe["wbank"], probe["fbank"], probe["fidx"]
    m.d.comb += [Assert(probe["state"] == rstate), Assert(probe["idle"] == idle), Assert(probe["lane"] == 0)]
    with m.If(rstate == 3):
        m.d.comb += Assert(probe["lo"] == header[0])
    with m.If(rstate == 5):
        m.d.comb += Assert(probe["lo"] == header[2])
    with m.If((rstate == 4) | (rstate == 5)):
        m.d.comb += Assert(probe["remaining"] == Cat(header[0], header[1]))
    with m.If((rstate == DATA) | (rstate == CHECK)):
        m.d.comb += [Assert(probe["remaining"] == remaining), Assert(remaining != 0), Assert(probe["crc"] == scrc)]
    with m.If(rstate == DATA):
        m.d.comb += Assert(probe["feature"] == at)
    with m.If(rstate == CHECK):
        m.d.comb += [Assert(probe["feature"] == fmt.features - 1), Assert(at == 0)]
    # the queue: a frame or sample begins with 3 entries free; after a sample's result, 2 are left for a timeout
    # between samples and a refusal; while hunting, 1 for the answer to whatever byte comes
    inside = ((rstate >= 1) & (rstate <= 5)) | ((rstate == DATA) & (at != 0)) | (rstate == CHECK)
    with m.If(inside):
        m.d.comb += Assert(level + 3 <= t.queue_depth)
    with m.If(((rstate == DATA) & (at != 0)) | (rstate == CHECK)):
        m.d.comb += Assert(banks <= 1)              # a sample begins only with a bank free
    with m.If((rstate == DATA) & (at == 0)):
        m.d.comb += Assert(level + 2 <= t.queue_depth)
    with m.If(rstate == HUNT):
        m.d.comb += Assert(level + 1 <= t.queue_depth)
    # the buffer: banks fill in turn (the one written next is `wbank`) and drain in order; the feeder reads
    # bank `fbank` from feature `fidx`; `o` holds a beat of the oldest full bank, its last one after `fbank` moved
    newest, oldest = Mux(wbank, full[0], full[1]), Mux(wbank, full[1], full[0])
    last_out = dfr.o.valid & dfr.o.payload.last
    m.d.comb += [Assert(full[0] + full[1] == banks), Assert(~oldest | newest),
                 Assert(~dfr.o.valid | (banks != 0)), Assert(dfr.o.valid | (fidx == 0))]
    with m.If(last_out):
        m.d.comb += Assert(fidx == 0)
    with m.If(banks == 1):
        m.d.comb += Assert(fbank == Mux(last_out, wbank, ~wbank))
    with m.Elif(banks == 2):
        m.d.comb += Assert(fbank == Mux(last_out, ~wbank, wbank))
    with m.Else():
        m.d.comb += Assert(fbank == wbank)
    with m.If(dfr.o.valid & ~dfr.o.payload.last):
        m.d.comb += Assert(fidx != 0)


class ReceiverHarness(Elaboratable):
    """Property ``decisions`` of a :class:`Deframer` (default: the target's), see the module docstring."""

    def __init__(self, target: LinkTarget, deframer=None):
        self.target = target
        self.deframer = deframer if deframer is not None else target.deframer()

    def elaborate(self, platform):
        m = Module()
        t = self.target
        dfr = self.deframer
        m.submodules.deframer = body = Fragment.get(dfr, platform)
        probe = _probe(body, _RECEIVER_REGISTERS)
        m.d.comb += Assume(~ResetSignal())

        # environment: bytes in any cycle, the accelerator's ready free, the queue's level lawful
        byte, got = _free(m, "env_byte", 8), _free(m, "env_got")
        m.d.comb += [dfr.i.valid.eq(got), dfr.i.payload.eq(byte)]
        m.d.comb += Assert(dfr.i.ready)
        m.d.comb += dfr.o.ready.eq(_free(m, "env_acc_ready"))
        take_last = dfr.o.valid & dfr.o.ready & dfr.o.payload.last
        level = Signal(range(t.queue_depth + 1), name="env_level")
        pop = Signal(name="env_pop")
        m.d.comb += [pop.eq(_free(m, "env_pop_free") & (level != 0)), dfr.queued.eq(level)]
        m.d.sync += level.eq(level + dfr.answer.valid - pop)
        m.d.comb += Assert(~dfr.answer.valid | (level != t.queue_depth))     # never into a full queue

        ref = _Reference(m, t, byte, got, level, take_last)
        push, code, arg, rstate, banks, DATA = ref.push, ref.code, ref.arg, ref.state, ref.banks, ref.DATA

        # the property: the receiver's answers are the reference's, cycle by cycle
        m.d.comb += Assert(dfr.answer.valid == push)
        with m.If(push):
            m.d.comb += Assert((dfr.answer.payload.code == code) & (dfr.answer.payload.arg == arg))
        m.d.comb += Assert(banks <= 2)

        _receiver_invariants(m, t, ref, probe, dfr, level)

        # covers
        last = Signal(8, name="r_last", init=0xFF)
        with m.If(push):
            m.d.sync += last.eq(code)
        m.d.comb += [
            Cover(push & (code == Status.TIMEOUT) & (arg == 7) & (last == Status.RESULT)),
            Cover(push & (code == Status.INFO) & (level != 0)),
            Cover(push & (code == Status.OVERRUN) & (arg == 1) & (rstate == DATA)),
            Cover(push & (code == Status.OVERRUN) & (arg == 0)),
            Cover(push & (code == Status.CHECKSUM)),
        ]
        return m


# -- the transmitter: each answer taken from the queue becomes its frame -----------------------------------------

def _source(m, name, port):
    """Drive an input stream freely within the stream rules: ``valid`` and the payload hold while not taken."""
    valid = _free(m, f"env_{name}_valid")
    payload = _free(m, f"env_{name}_payload", len(port.payload.as_value()))
    m.d.comb += [port.valid.eq(valid), port.payload.as_value().eq(payload)]
    stalled = Signal(name=f"env_{name}_stalled")
    held = Signal(len(payload), name=f"env_{name}_held")
    m.d.sync += [stalled.eq(valid & ~port.ready), held.eq(payload)]
    with m.If(stalled):
        m.d.comb += Assume(valid & (payload == held))


class FramerHarness(Elaboratable):
    """Property ``frames`` of a :class:`Framer` (default: the target's), see the module docstring."""

    def __init__(self, target: LinkTarget, framer=None):
        self.target = target
        self.framer = framer if framer is not None else target.framer()

    def elaborate(self, platform):
        m = Module()
        t, fmt = self.target, self.target.fmt
        fr = self.framer
        m.submodules.framer = body = Fragment.get(fr, platform)
        probe = _probe(body, ["shift", "left", "crc"])
        m.d.comb += Assume(~ResetSignal())

        # environment: the queue's head and the accelerator's results (stream rules); a result within `acc_stall`
        # cycles of a RESULT entry reaching the head; the UART's ready low at most `line_stall` cycles in a row
        ans, res = fr.answer, fr.result
        _source(m, "answer", ans)
        _source(m, "result", res)
        code, arg = ans.payload.code, ans.payload.arg
        with m.If(ans.valid):
            m.d.comb += Assume(Cat(*[code == c for c in (Status.RESULT, Status.INFO, *Status.ERRORS)]).any())
        head_result = ans.valid & (code == Status.RESULT)
        waited = Signal(range(t.acc_stall + 2), name="env_acc_waited")
        with m.If(head_result & ~res.valid):
            m.d.sync += waited.eq(waited + 1)
        with m.Else():
            m.d.sync += waited.eq(0)
        with m.If(head_result & (waited >= t.acc_stall)):
            m.d.comb += Assume(res.valid)
        line_go = _free(m, "env_line_go")
        low = Signal(range(t.line_stall + 2), name="env_line_low")
        with m.If(fr.o.valid & ~line_go):
            m.d.sync += low.eq(low + 1)
        with m.Else():
            m.d.sync += low.eq(0)
        with m.If(fr.o.valid & (low >= t.line_stall)):
            m.d.comb += Assume(line_go)
        m.d.comb += fr.o.ready.eq(line_go)
        out = fr.o.valid & fr.o.ready

        # the frame being sent: the entry (and result) taken, the position in it, the CRC of the bytes so far
        sending = Signal(name="h_sending")
        ccode, carg = Signal(8, name="h_code"), Signal(8, name="h_arg")
        clogit = Signal(fmt.out_bits, name="h_logit")
        ccls = Signal(1, name="h_cls")
        pos = Signal(range(max(fmt.result_bytes, fmt.INFO_BYTES) + 1), name="h_pos")
        crc = Signal(8, name="h_crc")
        take = ans.valid & ans.ready
        # it takes the head as soon as it is idle (a RESULT entry together with its result), and nothing else
        m.d.comb += Assert(take == (~sending & ans.valid & ((code != Status.RESULT) | res.valid)))
        m.d.comb += Assert((res.valid & res.ready) == (take & (code == Status.RESULT)))
        with m.If(take):
            m.d.sync += [sending.eq(1), ccode.eq(code), carg.eq(arg), clogit.eq(res.payload.logits[0]),
                         ccls.eq(res.payload.cls), pos.eq(0), crc.eq(0)]

        is_result, is_info = ccode == Status.RESULT, ccode == Status.INFO
        length = Mux(is_result, fmt.result_bytes, Mux(is_info, fmt.INFO_BYTES, fmt.ERROR_BYTES))
        info = _info_bytes(fmt)

        def expected(p):
            """Byte ``p`` of the frame being sent (``p`` below its CRC), as docs/board.md lays it out."""
            tail = Mux(is_result, Mux(p == 2, ccls, clogit), carg)    # the class and the logit; an argument
            for k in range(2, len(info)):
                tail = Mux(is_info & (p == k), info[k], tail)
            return Mux(p == 0, ANSWER_MAGIC, Mux(p == 1, ccode, tail))

        # bytes only inside a frame and without a gap; each as documented, the CRC-8 of the bytes before it last
        m.d.comb += Assert(fr.o.valid == sending)
        with m.If(sending):
            m.d.comb += Assert(fr.o.payload == Mux(pos == length - 1, crc, expected(pos)))
        with m.If(out):
            m.d.sync += [pos.eq(pos + 1), crc.eq(_crc_step(m, "h_crc_next", crc, fr.o.payload))]
            with m.If(pos == length - 1):
                m.d.sync += sending.eq(0)

        # invariants for the induction: the framer's registers hold the rest of the frame
        shift, left = probe["shift"], probe["left"]
        with m.If(sending):
            m.d.comb += [Assert(left == length - pos), Assert(probe["crc"] == crc)]
            for k in range(len(shift) // 8):
                with m.If(pos + k < length - 1):
                    m.d.comb += Assert(shift[8 * k:8 * k + 8] == expected(pos + k))
        with m.Else():
            m.d.comb += Assert(left == 0)

        # covers: frames back to back (a result taken the cycle after an info frame's CRC went), a result waited
        # for as long as the environment may make it wait, an error frame's CRC under a stall of the line
        just_ended = Signal(name="h_just_ended")
        m.d.sync += just_ended.eq(sending)
        m.d.comb += [
            Cover(take & (code == Status.RESULT) & is_info & just_ended),
            Cover(take & (code == Status.RESULT) & (waited == t.acc_stall)),
            Cover(out & sending & (pos == length - 1) & ~is_result & ~is_info & (low != 0)),
        ]
        return m


# -- the pair: bytes in, frames out -----------------------------------------------------------------------------

class PairHarness(Elaboratable):
    """Property ``answers`` of the link as :class:`~hw.board.BoardCore` joins it (a :class:`Deframer`, default the
    target's, an :class:`AnswerQueue` and a :class:`Framer`), with a stand-in accelerator; see the module
    docstring."""

    def __init__(self, target: LinkTarget, deframer=None):
        self.target = target
        self.deframer = deframer if deframer is not None else target.deframer()

    def elaborate(self, platform):
        m = Module()
        t, fmt = self.target, self.target.fmt
        dfr = self.deframer
        m.submodules.deframer = dfr
        m.submodules.queue = q = t.queue()
        m.submodules.framer = fr = t.framer()
        wiring.connect(m, producer=dfr.answer, consumer=q.i)
        wiring.connect(m, producer=q.o, consumer=fr.answer)
        m.d.comb += dfr.queued.eq(q.level)
        m.d.comb += Assume(~ResetSignal())

        # environment: bytes in any cycle; the stand-in accelerator (the sum of a sample's features, one result
        # held at a time, a beat taken within `acc_stall` cycles); the UART's ready low at most `line_stall` cycles
        byte, got = _free(m, "env_byte", 8), _free(m, "env_got")
        m.d.comb += [dfr.i.valid.eq(got), dfr.i.payload.eq(byte)]
        m.d.comb += Assert(dfr.i.ready)
        acc_go = _free(m, "env_acc_go")
        acc_waited = Signal(range(t.acc_stall + 2), name="env_acc_waited")
        with m.If(dfr.o.valid & ~dfr.o.ready):
            m.d.sync += acc_waited.eq(acc_waited + 1)
        with m.Else():
            m.d.sync += acc_waited.eq(0)
        total, held, logit = Signal(fmt.out_bits, name="acc_sum"), Signal(name="acc_held"), Signal(fmt.out_bits,
                                                                                                   name="acc_logit")
        res = fr.result
        m.d.comb += dfr.o.ready.eq((acc_go | (acc_waited >= t.acc_stall)) & (~held | res.ready))
        take = dfr.o.valid & dfr.o.ready
        take_last = take & dfr.o.payload.last
        add = (total + dfr.o.payload.x)[:fmt.out_bits]
        with m.If(take):
            m.d.sync += total.eq(Mux(dfr.o.payload.last, 0, add))
        with m.If(take_last):
            m.d.sync += [held.eq(1), logit.eq(add)]
        with m.Elif(res.valid & res.ready):
            m.d.sync += held.eq(0)
        m.d.comb += [res.valid.eq(held), res.payload.cls.eq(0), res.payload.logits[0].eq(logit)]
        line_go = _free(m, "env_line_go")
        low = Signal(range(t.line_stall + 2), name="env_line_low")
        with m.If(fr.o.valid & ~line_go):
            m.d.sync += low.eq(low + 1)
        with m.Else():
            m.d.sync += low.eq(0)
        m.d.comb += fr.o.ready.eq(line_go | (low >= t.line_stall))
        out = fr.o.valid & fr.o.ready

        ref = _Reference(m, t, byte, got, q.level, take_last)

        # the frames on `o`, parsed from their own bytes: position, status (byte 1), length, running CRC
        longest = max(fmt.result_bytes, fmt.INFO_BYTES)
        pos = Signal(range(longest + 1), name="h_pos")
        begun = Signal(name="h_begun")
        presented = Signal(name="h_presented")        # a frame's first byte on `o`, its first cycle there
        m.d.comb += presented.eq(fr.o.valid & (pos == 0) & ~begun)
        status_reg = Signal(8, name="h_status_reg")
        status = Mux(pos == 1, fr.o.payload, status_reg)
        with m.If(out & (pos == 1)):
            m.d.sync += status_reg.eq(fr.o.payload)
        length = Mux(status == Status.RESULT, fmt.result_bytes,
                     Mux(status == Status.INFO, fmt.INFO_BYTES, fmt.ERROR_BYTES))
        at_crc = (pos >= 1) & (pos == length - 1)
        ended = Signal(name="h_ended")
        m.d.comb += ended.eq(out & at_crc)
        crc = Signal(8, name="h_crc")
        owed = Signal(range(t.queue_depth + 3), name="h_owed")      # decided, their frame not yet ended
        m.d.sync += owed.eq(owed + ref.push - ended)
        # the queue holds the answers decided and not yet begun (what the rules read), the framer the one being sent
        m.d.comb += Assert(owed == q.level + fr.o.valid)
        with m.If(fr.o.valid):
            m.d.comb += Assert(owed != 0)                             # no frame without an answer owed
            with m.If(pos == 0):
                m.d.comb += Assert(fr.o.payload == ANSWER_MAGIC)
            with m.If(at_crc):
                m.d.comb += Assert(fr.o.payload == crc)
        with m.If(begun & ~ended):
            m.d.comb += Assert(fr.o.valid)                            # no gap inside a frame
        with m.If(presented):
            m.d.sync += begun.eq(1)
        with m.If(out):
            m.d.sync += [pos.eq(pos + 1), crc.eq(_crc_step(m, "h_crc_next", crc, fr.o.payload))]
        with m.If(ended):
            m.d.sync += [pos.eq(0), crc.eq(0), begun.eq(0)]

        # one tracked answer, chosen freely when decided: its frame comes after the frames owed before it, and
        # is byte for byte the documented one (a result: class 0 and the stand-in's logit)
        track = _free(m, "env_track")
        WAIT, SENDING, DONE = 1, 2, 3
        tstate = Signal(2, name="t_state")
        ahead = Signal(range(t.queue_depth + 3), name="t_ahead")
        tcode, targ = Signal(8, name="t_code"), Signal(8, name="t_arg")
        with m.If(ref.push & track & (tstate == 0)):
            m.d.sync += [tstate.eq(WAIT), tcode.eq(ref.code), ahead.eq(owed - ended),
                         targ.eq(Mux(ref.code == Status.RESULT, ref.value, ref.arg))]
        with m.If((tstate == WAIT) & ended):
            m.d.sync += ahead.eq(ahead - 1)
        starts = (tstate == WAIT) & (ahead == 0) & presented
        with m.If(starts):
            m.d.sync += tstate.eq(SENDING)
        with m.If((tstate == SENDING) & ended):
            m.d.sync += tstate.eq(DONE)
        info = _info_bytes(fmt)
        want = Mux(tcode == Status.RESULT, Mux(pos == 2, 0, targ), targ)
        for k in range(2, len(info)):
            want = Mux((tcode == Status.INFO) & (pos == k), info[k], want)
        want = Mux(pos == 0, ANSWER_MAGIC, Mux(pos == 1, tcode, want))
        with m.If((starts | (tstate == SENDING)) & ~at_crc):
            m.d.comb += Assert(fr.o.payload == want)

        # bounded time: the next answer owed begins within `bound` cycles of the frame before it ending (or of its
        # decision on an idle line)
        age = Signal(range(t.bound + 2), name="h_age")
        with m.If(ended | (owed == 0) | begun | presented):
            m.d.sync += age.eq(0)
        with m.Elif(age != t.bound + 1):
            m.d.sync += age.eq(age + 1)
        m.d.comb += Assert(age <= t.bound)

        behind = Signal(name="t_behind")              # the tracked answer had a frame owed before it
        with m.If(ref.push & track & (tstate == 0)):
            m.d.sync += behind.eq(owed - ended != 0)
        m.d.comb += [
            Cover((tstate == SENDING) & ended & (tcode == Status.BAD_MAGIC) & behind),
            Cover(starts & (tcode == Status.RESULT)),
        ]
        return m


# -- the runner --------------------------------------------------------------------------------------------------

def run_link_proof(p: Proof | str, *, deframer=None, framer=None, tag: str = "",
                   cover: bool = True) -> ProofResult:
    """Run a proof of :data:`LINK_PROOFS` (or its name) on the target's components, or with ``deframer`` (the
    receiver's proof and the pair's) or ``framer`` (the transmitter's) instead: broken variants, named by ``tag``
    and run with ``cover=False`` (the check task alone), as :func:`tb.formal.run_proof` does.

    Raises
    ------
    ValueError
        ``"Link proof must be one of the 3 in tb.formal_board.LINK_PROOFS, not 'x'"``.
    FormalError
        ``"SymbiYosys must give a verdict for <proof>, not ERROR (log: ...)"``.
    """
    if isinstance(p, str):
        if p not in LINK_PROOFS:
            raise ValueError(f"Link proof must be one of the {len(LINK_PROOFS)} in tb.formal_board.LINK_PROOFS, "
                             f"not {p!r}")
        p = LINK_PROOFS[p]
    target = LINK_TARGETS[p.target]
    if p.prop == "decisions":
        harness = ReceiverHarness(target, deframer)
    elif p.prop == "answers":
        harness = PairHarness(target, deframer)
    else:
        harness = FramerHarness(target, framer)
    return run_harness(p, harness, tag=tag, cover=cover)
