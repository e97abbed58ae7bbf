"""Building blocks shared by every PE: pipeline registers, adder trees and the accumulate/emit stage.

All of them follow one flow-control scheme (see ``docs/architecture.md``): a PE's datapath is a chain
of registers that all advance together on one enable, ``en = ~o.valid | o.ready``. While the output
register is empty or being drained every stage moves one step per cycle (II = 1); when the output is
full and stalled the whole pipeline holds and ``i.ready`` is low. The output is registered, so
``o.valid`` never depends combinationally on ``o.ready``; ``i.ready`` does (ready-to-ready only).

A large PE whose enable reaches thousands of flip-flops uses :class:`SkidOutput` instead: the enable is
itself a register, so neither ``i.ready`` nor any register's clock enable depends on ``o.ready``
combinationally, at the cost of one skid register of the output's width.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.hdl import ShapeLike
from amaranth.lib import stream
from amaranth.utils import ceil_log2

from ..sw.params import Spec

__all__ = ["TREE_LEVELS_PER_STAGE", "TREE_LEVELS", "DSP_BITS", "DEFAULT_DSP_BITS", "StreamParams", "stream_signature",
           "equals", "register", "delay", "tree_stages", "add_with_carry", "adder_tree", "multiply", "csd_digits",
           "accumulate_and_emit", "SkidOutput"]

#: Adder-tree levels between pipeline registers. Two carry-chain adds plus routing fit in ~4 ns on
#: ECP5-85F speed grade 6, leaving slack for 200 MHz; a third level costs ~30 MHz (docs/sp2-mac.md).
TREE_LEVELS_PER_STAGE = 2
TREE_LEVELS = Spec("Adder-tree levels per stage (tree_levels)",
                   "carry-chain adder levels between pipeline registers (1: more registers, a shorter path; "
                   f"default {TREE_LEVELS_PER_STAGE})", min=1, max=8)

#: The target's DSP operand width, a parameter of the generators whose multipliers it shapes. It is a fact
#: of the synthesis target (``synth.TARGETS[...].dsp_bits``: ECP5 MULT18X18D 18, iCE40 SB_MAC16 16), so
#: the synthesis flow sets it for the target it builds for (``synth.for_target``); the default,
#: :data:`DEFAULT_DSP_BITS`, is the default target's (ecp5-85k), and ``tests/test_synth.py`` checks that the
#: two agree. It never changes a result, only how the exact products are split among multipliers (and so
#: the latency).
DEFAULT_DSP_BITS = 18
DSP_BITS = Spec("DSP operand bits (dsp_bits)",
                "signed operand width of the target's DSP multiplier (set by synth for its target; "
                "ECP5 18, iCE40 16); shapes the multipliers, not the result", min=8, max=64, target="dsp_bits")


def stream_signature(layout: str, doc: str) -> property:
    """A read-only Params property: ``stream.Signature(params.<layout>)``, documented by ``doc``."""
    return property(lambda params: stream.Signature(getattr(params, layout)),
                    doc=f"{doc} ``stream.Signature(self.{layout})``.")


class StreamParams:
    """Mixin of every PE's Params: the signatures of the PE's streams, to build ports from.

    The PE's component declares ``i: In(params.i_signature)`` and ``o: Out(params.o_signature)``; a client
    (a network top, a wrapper) builds matching ports from the Params alone, without the component
    (the amaranth-soc / Glasgow idiom). A subclass provides ``input_layout`` and ``output_layout``; the
    ``o`` payload is always a ``data.StructLayout`` whose first field ``y`` (the result) sits at the
    least significant bits.

    Members
    -------
    i_signature : stream.Signature
        ``stream.Signature(input_layout)``, read-only.
    o_signature : stream.Signature
        ``stream.Signature(output_layout)``, read-only.
    """

    i_signature = stream_signature("input_layout", "Signature of the input stream ``i``.")
    o_signature = stream_signature("output_layout", "Signature of the output stream ``o``.")


def equals(value: Value, constant: int) -> Value:
    """``value == constant``, written so that a comparison with 0 is a reduction (yosys would print ``!x``,
    which Verilator's lint rejects for a multi-bit ``x``)."""
    return ~value.any() if constant == 0 else value == constant


def register(m: Module, value: Value, *, en: Value, name: str, reset_less: bool = True) -> Signal:
    """A pipeline register: ``value`` sampled on cycles where ``en`` is high.

    Datapath registers default to ``reset_less``: their contents are ignored while the matching valid
    bit is low, and leaving them out of reset saves the reset fan-out.
    """
    reg = Signal.like(value, name=name, reset_less=reset_less)
    with m.If(en):
        m.d.sync += reg.eq(value)
    return reg


def delay(m: Module, value: Value, cycles: int, *, en: Value, name: str,
          reset_less: bool = True) -> Value:
    """``value`` delayed by ``cycles`` enabled register stages (``cycles`` may be 0)."""
    for n in range(cycles):
        value = register(m, value, en=en, name=f"{name}_d{n + 1}", reset_less=reset_less)
    return value


def tree_stages(operands: int, levels_per_stage: int = TREE_LEVELS_PER_STAGE) -> int:
    """Register stages :func:`adder_tree` inserts for ``operands`` inputs (its latency in cycles).

    >>> [tree_stages(n) for n in (1, 2, 4, 5, 16, 17, 64)]
    [0, 1, 1, 2, 2, 3, 3]
    """
    levels = ceil_log2(max(operands, 1))
    return -(-levels // levels_per_stage)


def _as_signed(value: Value) -> Value:
    value = Value.cast(value)
    return value if value.shape().signed else Cat(value, Const(0, 1)).as_signed()


def add_with_carry(a: Value, b: Value, carry: Value | None) -> Value:
    """``a + b + carry`` with one adder: the carry enters as the LSB of a one-bit-wider add.

    ``(2a + 1) + (2b + c) = 2(a + b + c) + (1 - c)``, so dropping the LSB leaves ``a + b + c``; this
    costs one adder bit instead of a second adder (yosys does not infer carry-ins by itself).
    """
    if carry is None:
        return a + b
    total = Cat(Const(1, 1), _as_signed(a)).as_signed() + Cat(carry, _as_signed(b)).as_signed()
    return total[1:].as_signed()


def adder_tree(m: Module, operands: list[Value], *, en: Value | None, name: str, carries: list[Value] = (),
               levels_per_stage: int = TREE_LEVELS_PER_STAGE) -> tuple[Value, Value | None]:
    """Sum ``operands`` and the 1-bit ``carries`` exactly with a balanced binary tree.

    Each adder absorbs one pending carry (:func:`add_with_carry`), so n operands take up to n - 1
    carries for free; at most one carry may be left over, returned for the consumer's adder (the
    accumulator). A register follows every ``levels_per_stage`` levels and the last level, so the
    consumer's adder has a cycle to itself; the number of register stages is :func:`tree_stages`.
    Widths grow by one bit per level, so nothing overflows. With ``en=None`` the tree is purely
    combinational.

    Every sum that does not feed a register is a signal marked ``keep``: otherwise yosys' ``alumacc``
    merges the adds between two registers into one multi-operand ``$macc`` and builds it from
    carry-save LUT adders, which on ECP5 costs more than carry-chain adders (nm-sparse 2:4 x 4 groups:
    523 -> 441 LUT). Keeping the register-fed sums too made YoWASP's ABC9 fail on the largest
    sp2-mac (SP2-8, 16 lanes), so those are left alone: the register already stops the merge.

    Returns ``(sum, carry)`` where ``carry`` is ``None`` when all carries were absorbed.
    """
    if not operands:
        raise ValueError("Adder tree must be given at least one operand, not 0")
    if len(carries) > len(operands):
        raise ValueError(f"Adder tree carries must number at most the operands ({len(operands)}), "
                         f"not {len(carries)}")
    values, pending = list(operands), list(carries)
    total_levels = ceil_log2(len(values))
    level = 0
    while len(values) > 1:
        pairs = []
        level += 1
        registered = en is not None and (level % levels_per_stage == 0 or level == total_levels)
        for k in range(0, len(values) - 1, 2):
            total = add_with_carry(values[k], values[k + 1], pending.pop() if pending else None)
            if not registered:
                kept = Signal(total.shape(), name=f"{name}_s{level}_{k // 2}", attrs={"keep": 1})
                m.d.comb += kept.eq(total)
                total = kept
            pairs.append(total)
        if len(values) % 2:
            pairs.append(values[-1])
        if registered:
            pairs = [register(m, v, en=en, name=f"{name}_l{level}_{k}") for k, v in enumerate(pairs)]
            pending = [register(m, c, en=en, name=f"{name}_l{level}_c{k}") for k, c in enumerate(pending)]
        values = pairs
    if len(pending) > 1:
        raise RuntimeError(f"adder tree {name} left {len(pending)} carries unabsorbed")
    return values[0], (pending[0] if pending else None)


def multiply(m: Module, act: Value, weight: Value, *, dsp: bool, name: str) -> Value:
    """``act * weight`` (``weight`` signed): a DSP-mappable ``*``, or shifted partial products in LUTs.

    With ``dsp=False`` the multiplier is written out as
    ``sum_{j < b-1} w_j (a << j) + ~(w_{b-1} (a << (b-1))) + 1`` (two's complement ``w`` of ``b``
    bits), summed by a combinational :func:`adder_tree`, so no synthesis flow can infer a DSP block.
    """
    if dsp:
        return act * weight
    top = len(weight) - 1
    partials = [Mux(weight[j], act << j, 0) for j in range(top)]
    negated = Signal(signed(len(act) + top + 1), name=f"{name}_pp{top}")
    m.d.comb += negated.eq(Mux(weight[top], act << top, 0))
    total, carry = adder_tree(m, partials + [~negated], carries=[Const(1, 1)], en=None, name=name)
    return total if carry is None else add_with_carry(total, 0, carry)


def csd_digits(c: int) -> list[tuple[int, int]]:
    """Canonical signed-digit (non-adjacent) form of the integer ``c``: ``[(shift, +1 or -1), ...]`` with
    ``c = sum d 2^shift``, LSB first, no two adjacent digits non-zero, the fewest non-zero digits of any
    signed-digit form (Reitwiesner 1960). A multiplication by the constant ``c`` is then one shifted
    operand per digit and one adder or subtractor fewer than digits.

    >>> csd_digits(7), csd_digits(-3), csd_digits(0)
    ([(0, -1), (3, 1)], [(0, 1), (2, -1)], [])
    """
    digits, shift = [], 0
    while c:
        if c & 1:
            d = 2 - (c & 3)             # +1 if c = 1 (mod 4), -1 if c = 3 (mod 4): the next bit becomes 0
            digits.append((shift, d))
            c -= d
        c >>= 1
        shift += 1
    return digits


def accumulate_and_emit(m: Module, *, en: Value, valid: Value, last: Value, value: Value,
                        acc_shape: ShapeLike, o, carry: Value | None = None) -> None:
    """The final stage of a dot-product PE: ``acc += value (+ carry)``; on ``last`` emit the sum.

    ``last`` must already include ``valid`` (it marks a valid final beat), which keeps the emit
    decision one LUT level shallower.

    ``o`` is the PE's output stream (payload field ``y`` of ``acc_shape``); ``en`` must be the pipeline enable
    ``~o.valid | o.ready``. The accumulator clears on the beat that emits, so the next vector may
    start in the very next cycle. On reset the accumulator and ``o.valid`` clear.
    """
    acc = Signal(acc_shape, name="acc")
    total = Signal(acc_shape, name="acc_next")
    emit = Signal(name="emit")
    m.d.comb += [total.eq(add_with_carry(acc, value, carry)), emit.eq(en & last)]
    with m.If(en):
        m.d.sync += o.valid.eq(last)
    with m.If(emit):
        m.d.sync += o.payload.y.eq(total)
    # Clearing in its own branch lets synthesis use the flip-flops' synchronous reset (ECP5 LSR)
    # instead of a 2:1 mux per accumulator bit (measured: 5 LUTs instead of 28 for 24 bits).
    with m.If(emit):
        m.d.sync += acc.eq(0)
    with m.Elif(en & valid):
        m.d.sync += acc.eq(total)


class SkidOutput:
    """A pipeline enable that is a flip-flop, and the skid register that makes it one.

    With ``en = ~o.valid | o.ready`` the consumer's ``ready`` reaches every clock enable of the pipeline in
    the same cycle: in a PE of 17k flip-flops (circulant-fft parallel, k = 16) that fan-out, and the
    accumulators' clear gated by it, set Fmax (a LUT and 5-7 ns of routing, 116-135 MHz). Here ``en`` is
    a register: the PE writes its output register ``valid`` / ``payload`` on ``en`` as before, and when
    the consumer does not take a result while the pipeline advances, that result moves to a skid register
    and ``en`` drops in the next cycle, until the consumer has taken it. No result is lost or reordered;
    with ``o.ready`` high the timing is the plain pipeline's (same latency and interval); ``i.ready``
    should be ``en``. ``en_next`` is the value ``en`` takes in the next cycle, for control signals that are
    registered a cycle ahead (:meth:`ahead`). Costs one register and one 2:1 multiplexer per output bit.

    ``o`` is the PE's output stream; build this before writing ``valid`` and ``payload``.
    """

    def __init__(self, m: Module, o, *, name: str = "out"):
        self.en = Signal(init=1, name=f"{name}_en")             # 0 exactly while the skid register is full
        # `full` is ~en in a flip-flop of its own: the control logic reads it, not the enable's huge net
        self.full = Signal(name=f"{name}_full")
        self.en_next = Signal(name=f"{name}_en_next")
        self.valid = Signal(name=f"{name}_valid")
        self.payload = Signal(o.payload.shape(), name=f"{name}_payload", reset_less=True)
        skid = Signal(o.payload.shape(), name=f"{name}_skid", reset_less=True)
        m.d.comb += [
            self.en_next.eq(o.ready | ~(self.full | self.valid)),
            o.valid.eq(self.full | self.valid),
            o.payload.eq(Mux(self.full, skid, self.payload)),
        ]
        m.d.sync += [self.en.eq(self.en_next), self.full.eq(~self.en_next)]
        with m.If(~self.full & self.valid & ~o.ready):
            m.d.sync += skid.eq(self.payload)
        self._m, self._o, self._name = m, o, name
        self._chain = self.en   # the flip-flop the next replica is computed from

    def replica(self) -> Signal:
        """Another flip-flop equal to ``en`` in every cycle, for a region of the pipeline of its own (a net of a
        few thousand clock enables instead of all of them). yosys merges flip-flops with the same inputs, so
        each replica is computed from the previous one: ``en'(t + 1) = o.ready | (en(t) & ~valid(t))``, equal
        to ``en`` by induction from reset (all start at 1)."""
        reg = Signal(init=1, name=f"{self._name}_en_r")
        self._m.d.sync += reg.eq(self._o.ready | (self._chain & ~self.valid))
        self._chain = reg
        return reg

    def ahead(self, value: Value, *, name: str, stalled: Value, init: int = 0) -> Signal:
        """A register equal to ``en & r`` in every cycle, for ``r`` a register that advances on ``en``:
        ``value`` is the input ``r`` takes on ``en``, ``stalled`` is ``r`` itself (what it keeps while ``en``
        is low). One flip-flop instead of an AND gate on the path, so a high fan-out clear or clock enable
        starts at a register. ``init`` is its value in reset (1 for a clear that also stands for the reset,
        so the flip-flops it clears need no reset of their own)."""
        reg = Signal(name=name, init=init)
        self._m.d.sync += reg.eq(self.en_next & Mux(self.full, stalled, value))
        return reg
