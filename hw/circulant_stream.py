"""``circulant-fft``, architecture ``"streaming"``: one sample per cycle, block sizes up to 64.

The same PE as the ``"parallel"`` architecture (:mod:`hw.circulant_fft`: the same ports, payloads and
bits, :func:`sw.circulant.golden_matvec`), built from one butterfly per stage instead of ``k/2``: the
forward and inverse transforms are radix-2 single-path delay-feedback (R2SDF) pipelines, so an input
block is accepted every ``k`` cycles (II = ``k``) and the hardware grows with ``log k``, not ``k log k``.

Data flow (every register advances on ``step``, see *Sequencing*)::

    i (x_j, W_ij) -> x buffer      -> stage-1 butterfly on the pair (x[n], x[n + k/2]) -> rotate (real input)
                  -> weight banks  -> SDF DIF stages 2 .. L (delay line 2 k/2^s, rotate) -> X, natural position
                                   -> X * W[bitrev(pos)] exact, R_sp, += accumulator RAM (two banks)
    on ``last``: the finished bank is read in bit-reversed order with the Hermitian extension
                  -> SDF DIT stages 1 .. L (rotate, delay line 2^s; ``ifft_scale``: halve)
                  -> R_L(re) (its bias came with bin 0) -> lane ``pos`` of o.y

Cost (issue 16; docs/circulant-fft.md has the per-block breakdown): the weight, accumulator and twiddle
memories are block RAM (``BLOCK_RAM``); a block RAM's output is registered before any logic; the
delay lines are flip-flop chains without multiplexers in front (:meth:`_Builder.sdf`); in the inverse
transform the roundings of the rotations, the conjugates of the Hermitian extension and the ``+-j``
negations are left pending as carries of the next butterfly (:meth:`_Builder.rotate`, ``pending``; in the
forward transform the swap stage's negation too); the multipliers have :data:`DSP_PIPELINE` more registers
on each side; the input serialisers are AND-OR multiplexers on a one-hot ring that rotates with ``t``
(:func:`_onehot_mux`, :meth:`_Builder.onehot`); the RAM write enables are registered (:attr:`_Builder.stepped`);
each delay-feedback butterfly (``sel ? v + top : bot - top``) and the first forward stage's add/subtract are one
selected add on the target's carry chain, a LUT per bit (``CirculantParams.carry_cell``, :func:`hw.carry.selected_add`).

Every value is the golden schedule's: the SDF stages compute exactly the butterflies of
:func:`sw.circulant.golden_matvec`, in position order, with the twiddle of each position read from
:attr:`sw.circulant.CirculantFormat.twiddles` (a product with a trivial twiddle rounds exactly,
``R_F(v 2^F) = v``, so every position goes through the same multiplier). Real-valued input: the first
forward stage reads both butterfly inputs from the buffered block (no delay line) and its rotation has a
real operand (two multipliers, not four). Positions whose bins are above ``k/2`` flow through the forward
stages (a streaming butterfly is shared in time, so pruning saves nothing) and are not accumulated.

Sequencing
----------
A *slot* is one ``step`` of the pipeline; a block takes ``k`` consecutive slots. ``t`` counts the slots
of the block at the input; a point of the pipeline ``d`` registers downstream sees position
``(t - d) mod k`` of the block that entered ``d`` slots earlier, so one counter times every stage, and
the per-block flags (valid, first, last, weight bank, accumulator bank) live in a short history indexed by
``d div k``.
The pipeline steps while a block is being serialised; a beat is taken in the slot before a block boundary
(or while the pipeline waits at one) and its block starts at the boundary, else an empty (bubble) block
starts while a result is still in flight, and otherwise the pipeline stops, so a vector's result comes out
without waiting for more input. The step enable is a flip-flop (:class:`hw.common.SkidOutput` on the stream
of output samples, before the lanes) ANDed with ``go``, a register computed from the next state of what it
depends on, and each block of the datapath has its own replica of it. The output lanes are written one per
sample; ``o.valid`` rises with the last lane.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream
from amaranth.lib.memory import Memory
from amaranth.utils import ceil_log2

from ..sw.circulant import CirculantFormat, bit_reverse
from ..sw.intops import signed_bits_for

from .common import DEFAULT_DSP_BITS, SkidOutput, add_with_carry
from .carry import carry_cell, selected_add
from .dsp import TARGET, fits, registered_product

__all__ = ["streaming_latency", "elaborate_streaming"]

#: The weight and accumulator RAMs go into block RAM (ECP5 DP16KD) at every depth: yosys would put these
#: shallow, wide memories into distributed RAM (k = 16: 70 DPR16X4 slices, about 450 LUTs with their read
#: multiplexers), and block RAM costs no LUT.
#: ``no_rw_check``: no port of these memories ever reads an address written in the same cycle (the schedule
#: keeps a block between them), so yosys need not emulate the read-before-write behaviour across the block
#: RAM's two ports (a multiplexer per data bit and a copy of the write data).
BLOCK_RAM = {"ram_style": "block", "rom_style": "block", "no_rw_check": 1}


#: Block size from which each position signal is a counter of its own rather than ``t`` minus a constant.
POS_COUNTER_BLOCK = 32

#: Extra registers on each side of every multiplier: yosys leaves the MULT18X18D's own registers unused, so a
#: register the placer can put next to the DSP takes the route to the fabric in a cycle of its own (k = 16: the
#: DSP paths set Fmax at 102-113 MHz with a single register on each side). With ``dsp_cell`` naming the
#: target's primitive (``synth.for_target``), a product whose operands fit it is that primitive with its own
#: registers and a fabric register (:func:`hw.dsp.registered_product`): the same three stages.
DSP_PIPELINE = 1


def mult_stages(a_bits: int, b_bits: int, dsp_bits: int = DEFAULT_DSP_BITS) -> int:
    """Registers of an exact signed product on ``dsp_bits`` x ``dsp_bits`` DSPs (the target's operand
    width, :attr:`hw.circulant_fft.CirculantParams.dsp_bits`): :data:`DSP_PIPELINE` on each side, and 1
    when both operands fit one DSP or both are wider (left to yosys), 2 when one must be split into
    ``dsp_bits - 1``-bit pieces (partial products, then their sum)."""
    return (2 if min(a_bits, b_bits) <= dsp_bits < max(a_bits, b_bits) else 1) + 2 * DSP_PIPELINE


def rotate_stages(data_bits: int, tw_bits: int, dsp_bits: int = DEFAULT_DSP_BITS) -> int:
    """Registers of a twiddle rotation with multipliers: operands (and ``re + im``), products, the two
    sums, the rounding. ``data_bits``: the width of ``re + im``; ``tw_bits``: of ``c + d`` and ``d - c``."""
    return 3 + mult_stages(data_bits, tw_bits, dsp_bits)


def _onehot_mux(m: Module, values, onehot, name: str):
    """``values[n]`` for the one set bit ``onehot[n]``, all values of one shape: AND-OR terms of two values per
    LUT4 and an OR of up to four terms per LUT4, each level a ``keep`` signal so that abc maps it as such (k = 16:
    5 LUT4 per bit for 8 values, 6 for 9, where abc maps a 2:1 multiplexer tree of 8 values on the select bits
    into 6 and a case statement into about 9). An odd last value is a 2:1 multiplexer after the rest (an OR of
    it mapped worse)."""
    shape = values[0].shape()
    if len(values) == 1:
        return values[0]
    if len(values) % 2:
        return Mux(onehot[len(values) - 1], values[-1], _onehot_mux(m, values[:-1], onehot, name))
    width = shape.width
    terms = []
    for n in range(0, len(values), 2):
        term = Signal(width, name=f"{name}_and{n}", attrs={"keep": 1})
        m.d.comb += term.eq((values[n].as_unsigned() & onehot[n].replicate(width))
                            | (values[n + 1].as_unsigned() & onehot[n + 1].replicate(width)))
        terms.append(term)
    level = 0
    while len(terms) > 1:
        nxt = []
        for n in range(0, len(terms), 4):
            term = Signal(width, name=f"{name}_or{level}_{n}", attrs={"keep": 1})
            group = terms[n:n + 4]
            value = group[0]
            for g in group[1:]:
                value = value | g
            m.d.comb += term.eq(value)
            nxt.append(term)
        terms, level = nxt, level + 1
    return terms[0].as_signed() if shape.signed else terms[0]


def _table_bits(values) -> int:
    return max(signed_bits_for(min(values), max(values)), 1)


def _three_mult_table(table):
    """``(c, d - c, c + d)`` for each twiddle ``c + jd`` of a 3-multiplier complex product."""
    return [(c, d - c, c + d) for c, d in table]


# -- the plan: twiddle tables and register offsets, from the format alone ------------------------------

def _kind(table: list[tuple[int, int]], one: int) -> str:
    """``"none"`` (all twiddles 1), ``"swap"`` (only 1 and one of +-j) or ``"multiply"``."""
    values = set(table)
    if values <= {(one, 0)}:
        return "none"
    if values <= {(one, 0), (0, -one)} or values <= {(one, 0), (0, one)}:
        return "swap"
    return "multiply"


def _rotation_form(table, data_bits: int, dsp_bits: int, real: bool = False) -> tuple[str, int]:
    """How a rotation of ``data_bits`` values multiplies, and its registers: ``"direct"`` (a real operand, or
    the real part only: products with ``c`` and ``d`` themselves), ``"four"`` (4 products, when every
    operand fits a DSP: one DSP more than three products but no pre-adder, cheaper in LUT + DSP) or
    ``"three"`` (3 products, when operands must be split: fewer split sums)."""
    cd_bits = _table_bits([v for row in table for v in row])
    if real:
        return "direct", rotate_stages(data_bits, cd_bits, dsp_bits)
    if data_bits <= dsp_bits and cd_bits <= dsp_bits:
        return "four", rotate_stages(data_bits, cd_bits, dsp_bits)
    tw_bits = _table_bits([v for row in _three_mult_table(table) for v in row])
    return "three", rotate_stages(data_bits + 1, tw_bits, dsp_bits)


def _rotation_latency(kind: str, table, data_bits: int, dsp_bits: int, real: bool = False) -> int:
    """Registers of a rotation of ``data_bits`` values (:func:`_rotation_form`)."""
    if kind == "none":
        return 0
    if kind == "swap":
        return 1
    return _rotation_form(table, data_bits, dsp_bits, real)[1]


def _product_four(fmt: CirculantFormat, dsp_bits: int) -> bool:
    """The product ``X W`` with four multipliers (spectrum and weight fit a DSP: no pre-adders), else three."""
    return max(fmt.fft_bits(fmt.stages), fmt.w_bits) <= dsp_bits


@dataclass(frozen=True)
class _Plan:
    fft_tw: list          # per forward stage s = 1 .. L: twiddle of each position of its output
    ifft_tw: list         # per inverse stage s = 1 .. L: twiddle of each position of its input
    fft_kind: list
    ifft_kind: list
    fft_lat: list         # registers of each rotation
    ifft_lat: list
    product_mult: int     # registers of the X * W multipliers
    forward: int          # offset of the spectrum X (natural position order)
    acc: int              # offset of the accumulator update
    ifft_in: int          # offset of v_0 (after the bank read and the Hermitian extension)
    out: int              # offset of the last inverse stage's register (the output lanes are written there)
    weight_banks: int     # input beats whose weights are held at once (banks of the weight RAM)
    dsp_bits: int         # the target's DSP operand width (splits of the multipliers)


def _output_bias(fmt: CirculantFormat) -> int:
    """``2^(L-1)``, the output rounding's bias, carried in ``re`` of bin 0 from the accumulator's start value
    (position 0 is a top in every inverse stage, never rotated, and adds to every output); 0 with
    ``ifft_scale`` (no output rounding)."""
    return 0 if fmt.ifft_scale else 1 << (fmt.stages - 1)


def _ifft_bits(fmt: CirculantFormat, s: int) -> int:
    """Width of the values of inverse stage ``s`` (1 .. L) with the output bias in."""
    lo, hi = fmt.ifft_range(s)
    return signed_bits_for(lo, hi + _output_bias(fmt))


@functools.lru_cache(maxsize=64)
def _plan(fmt: CirculantFormat, dsp_bits: int = DEFAULT_DSP_BITS) -> _Plan:
    k, L, one = fmt.block, fmt.stages, 1 << fmt.tw_frac
    tw = [(int(re), int(im)) for re, im in fmt.twiddles]
    fft_tw, ifft_tw = [], []
    for s in range(1, L + 1):
        n, h = k >> (s - 1), k >> s               # DIF group size and half
        fft_tw.append([tw[(p % n - h) << (s - 1)] if p % n >= h else (one, 0) for p in range(k)])
        n, h = 1 << s, 1 << (s - 1)               # DIT group size and half
        ifft_tw.append([(tw[(p % n - h) * (k // n)][0], -tw[(p % n - h) * (k // n)][1]) if p % n >= h
                        else (one, 0) for p in range(k)])
    fft_kind = [_kind(t, one) for t in fft_tw]
    ifft_kind = [_kind(t, one) for t in ifft_tw]
    # a rotation multiplies re + im (one bit wider than the stage's values) by a twiddle sum
    fft_lat = [_rotation_latency(fft_kind[s - 1], fft_tw[s - 1], fmt.fft_bits(s), dsp_bits, real=s == 1)
               for s in range(1, L + 1)]
    # the last inverse stage needs the real part only
    ifft_lat = [_rotation_latency(ifft_kind[s - 1], ifft_tw[s - 1], _ifft_bits(fmt, s - 1) if s > 1 else 0, dsp_bits,
                                  real=s == L) for s in range(1, L + 1)]
    # forward: pair register, sum/difference register, rotation; then per SDF stage the delay line, its
    # output register and the rotation
    d = 2 + fft_lat[0]
    for s in range(2, L + 1):
        d += (k >> s) + 1 + fft_lat[s - 1]
    forward = d
    product_mult = (mult_stages(fmt.fft_bits(L), fmt.w_bits, dsp_bits) if _product_four(fmt, dsp_bits)
                    else mult_stages(fmt.fft_bits(L) + 1, fmt.w_bits + 1, dsp_bits))
    acc = forward + 1 + product_mult + 1          # operands, products, exact sums
    ifft_in = acc + k + 2                         # one block later: bank read address, read data, conj
    d = ifft_in
    for s in range(1, L + 1):
        d += ifft_lat[s - 1] + (1 << (s - 1)) + 1
    # Weight RAM: bin m of a block is written in its slot m + 1 and read (two slots before the product
    # stage: the block RAM's output is registered) in slot forward - 2 + bitrev^-1(m); a bank is written
    # again B blocks later, so B k >= forward + k - 2.
    rev = bit_reverse(k)
    late = [int(rev[p]) + 1 - (forward - 3 + p) for p in range(k) if rev[p] <= k // 2]
    if max(late) > 0:
        raise RuntimeError(f"streaming weights would be read {max(late)} slots before they are written")
    return _Plan(fft_tw, ifft_tw, fft_kind, ifft_kind, fft_lat, ifft_lat, product_mult, forward, acc,
                 ifft_in, d, weight_banks=-(-(forward + k - 2) // k), dsp_bits=dsp_bits)


def streaming_latency(fmt: CirculantFormat, dsp_bits: int = DEFAULT_DSP_BITS) -> int:
    """Cycles from accepting the ``last`` beat to ``o.valid`` with no stalls: the beat is taken in the slot
    before its block starts (1), the block's first sample is presented the cycle after it starts (1), its ``k``
    samples flow to the last inverse stage (offset ``out``), pass the output skid's register (1), and the output
    register takes the last lane one cycle later."""
    return 3 + _plan(fmt, dsp_bits).out + fmt.block


# -- generation helpers ----------------------------------------------------------------------------------

def _range_shape(*ranges: tuple[int, int]):
    return signed(signed_bits_for(min(r[0] for r in ranges), max(r[1] for r in ranges)))


class _Builder:
    """Shared state of one streaming datapath: the module, the step enable and the slot counter."""

    def __init__(self, m: Module, k: int, step, t, history, dsp_bits: int, dsp_cell: str = TARGET, *,
                 carry: str = TARGET, replica=None):
        self.m, self.k, self.step, self.t, self.history = m, k, step, t, history
        self._replica = replica
        self.top = m
        self.dsp_bits, self.dsp_cell = dsp_bits, dsp_cell
        self.carry_cell = carry_cell(carry)                  # None: the adds as expressions
        self.bits = ceil_log2(k)
        self._pos = {}
        self._onehot = {}
        self._stepped = None

    def section(self, name: str) -> Module:
        """A submodule of the top for the next block of the datapath (``fft``, ``mac``, ...): the Verilog
        keeps one module per block, so synthesis without flattening counts each one's cells."""
        sub = Module()
        self.top.submodules[name] = sub
        self.m = sub
        self.region(name)
        return sub

    def region(self, name: str) -> None:
        """Registers built from here on step on an enable of their own, equal to the top's ``step`` in every
        cycle (``replica()``: a flip-flop of its own ANDed with the registered ``go``): a net of a block's
        clock enables rather than all 16.7k (k = 64)."""
        if self._replica is not None:
            self.step = self._replica(name)

    def reg(self, value, shape, name):
        r = Signal(shape, name=name, reset_less=True)
        with self.m.If(self.step):
            self.m.d.sync += r.eq(value)
        return r

    def pos(self, d: int):
        """Position (0 .. k-1) of the sample at offset ``d``: ``(t - d) mod k``. From ``k =``
        :data:`POS_COUNTER_BLOCK` on a counter of its own that steps with ``t`` (a register: these select
        the tables and wide multiplexers, k = 64 without it: 90 MHz on a subtractor and a 32:1
        multiplexer); below, a subtractor on ``t`` is cheaper (k = 16: 50 LUTs)."""
        d %= self.k
        if d == 0:
            return self.t
        if d not in self._pos:
            p = Signal(unsigned(self.bits), name=f"pos_{d}", init=(self.t.init - d) % self.k)
            if self.k >= POS_COUNTER_BLOCK:
                with self.top.If(self.step):
                    self.top.d.sync += p.eq(p + 1)
            else:
                self.m.d.comb += p.eq((self.t - d)[:self.bits])
            self._pos[d] = p
        return self._pos[d]

    @property
    def stepped(self):
        """High in the cycle after a step, as a register: a RAM write enabled by it lands in the cycle after the
        step that registered its address and data, at the next step at the latest (no read port reads between
        two steps, so the memories hold the same values at every step as with ``step`` itself), and it keeps the
        step enable, which depends on ``o.ready`` and fans out to every register, off the block RAMs' write
        enables (k = 64: o.ready -> weight RAM byte enable, 8.4 ns with 6.9 ns of routing)."""
        if self._stepped is None:
            self._stepped = Signal(name="stepped")
            self.top.d.sync += self._stepped.eq(self.step)
        return self._stepped

    def onehot(self, n: int):
        """``t mod n`` one-hot (bit ``p`` set in slot ``p``), a ring of ``n`` flip-flops that rotates with ``t``
        (``n`` divides ``k``): the selects of the input serialisers without a decoder, and off ``t``'s fan-out."""
        if n not in self._onehot:
            ring = Signal(n, name=f"slot_onehot{n}", init=1 << (self.t.init % n))
            with self.top.If(self.step):
                self.top.d.sync += ring.eq(Cat(ring[-1], ring[:-1]))
            self._onehot[n] = ring
        return self._onehot[n]

    def flags(self, d: int):
        """The flags of the block at offset ``d``: the one that entered ``d`` slots ago."""
        a, b = divmod(d, self.k)
        if b == 0:
            return self.history[a]
        return Mux(self.t >= b, self.history[a].as_value(), self.history[a + 1].as_value())

    def table(self, values, d: int, shape, name):
        """``values[pos(d)]``: a constant table indexed by the position at offset ``d``."""
        if len(set(values)) == 1:
            return Const(values[0], shape)
        return self.select(values, d, shape, name)

    def select(self, values, d: int, shape, name):
        """``values[pos(d)]`` for ``k`` values (constants or signals): a ``k``-way multiplexer."""
        sig = Signal(shape, name=name)
        with self.m.Switch(self.pos(d)):
            for p, v in enumerate(values):
                with self.m.Case(p):
                    self.m.d.comb += sig.eq(v)
        return sig

    def rotate(self, re, im, table, kind: str, d: int, frac: int, out_shape, name, *, pending: bool = False,
               re_only: bool = False):
        """``rot(b, tw[pos])`` of the golden schedule for the sample at offset ``d``; ``im is None`` for a
        real operand. Returns the rotated pair, :func:`_rotation_latency` slots later; with ``re_only`` the
        imaginary part is None (two products ``re c - im d``, no pre-add).

        With ``pending`` each component comes back as ``(v, c)``, standing for ``v + c`` (``c`` one bit or
        None for 0), for a consumer that adds it anyway (:meth:`sdf`): the rounding
        ``R_F(s) = (s >> F) + s[F-1]`` and the negation ``-v = ~v + 1`` of a ``+-j`` rotation leave their
        ``+1`` to the consumer's adder as a carry, so they cost no adder here."""
        if kind == "none":
            return ((re, None), (im, None)) if pending else (re, im)
        if kind == "swap":                       # (re + j im) * (+-j), exact
            plus_j = any(ti > 0 for _, ti in table)
            sel = self.table([int(ti != 0) for _, ti in table], d, unsigned(1), f"{name}_swap")
            im_v = Const(0, 1).as_signed() if im is None else im
            if pending:
                neg = self.reg(sel, unsigned(1), f"{name}_neg")
                if plus_j:                       # * +j = (-im, re) = (~im + 1, re)
                    return ((self.reg(Mux(sel, ~im_v, re), out_shape, f"{name}_re"), neg),
                            (self.reg(Mux(sel, re, im_v), out_shape, f"{name}_im"), None))
                return ((self.reg(Mux(sel, im_v, re), out_shape, f"{name}_re"), None),
                        (self.reg(Mux(sel, ~re, im_v), out_shape, f"{name}_im"), neg))
            if plus_j:                           # * +j = (-im, re)
                out = (Mux(sel, -im_v, re), Mux(sel, re, im_v))
            else:                                # * -j = (im, -re)
                out = (Mux(sel, im_v, re), Mux(sel, -re, im_v))
            return (self.reg(out[0], out_shape, f"{name}_re"), self.reg(out[1], out_shape, f"{name}_im"))
        # 3-multiplier complex product (exact): with t = c + jd, k1 = c (re + im), k2 = re (d - c),
        # k3 = im (c + d); re t = k1 - k3, im t = k1 + k2. The twiddle sums come from the table.
        real = im is None
        form, lat = _rotation_form(table, len(re), self.dsp_bits, real or re_only)
        rows = _three_mult_table(table) if form == "three" else [tuple(row) for row in table]
        tw_shape = signed(_table_bits([v for row in rows for v in row]))
        ms = lat - 3
        a_re = self.reg(re, re.shape(), f"{name}_a_re")
        if real:                                 # real operand: re t = re c, im t = re d
            c, d_ = self.rom(rows, d, tw_shape, f"{name}_tw")
            k1 = self.mul(a_re, c, ms, f"{name}_k1")
            k2 = self.mul(a_re, d_, ms, f"{name}_k2")
            sum_re = self.reg(k1, k1.shape(), f"{name}_sre")
            sum_im = self.reg(k2, k2.shape(), f"{name}_sim")
        elif form == "direct" or form == "four":  # re t = re c - im d, im t = re d + im c
            c, d_ = self.rom(rows, d, tw_shape, f"{name}_tw")
            a_im = self.reg(im, im.shape(), f"{name}_a_im")
            k1 = self.mul(a_re, c, ms, f"{name}_k1")
            k2 = self.mul(a_im, d_, ms, f"{name}_k2")
            sum_re = self.reg(k1 - k2, signed(max(len(k1), len(k2)) + 1), f"{name}_sre")
            sum_im = None
            if not re_only:
                k3 = self.mul(a_re, d_, ms, f"{name}_k3")
                k4 = self.mul(a_im, c, ms, f"{name}_k4")
                sum_im = self.reg(k3 + k4, signed(max(len(k3), len(k4)) + 1), f"{name}_sim")
        else:
            c, dc, cd = self.rom(rows, d, tw_shape, f"{name}_tw")
            a_im = self.reg(im, im.shape(), f"{name}_a_im")
            a_sum = self.reg(re + im, signed(len(re) + 1), f"{name}_a_sum")
            k1 = self.mul(a_sum, c, ms, f"{name}_k1")
            k2 = self.mul(a_re, dc, ms, f"{name}_k2")
            k3 = self.mul(a_im, cd, ms, f"{name}_k3")
            sum_re = self.reg(k1 - k3, signed(len(k1) + 1), f"{name}_sre")
            sum_im = self.reg(k1 + k2, signed(len(k1) + 1), f"{name}_sim")
        if pending:                              # R_F(s) = (s >> F) + s[F-1], the +s[F-1] left to the consumer
            return tuple(None if v is None else
                         (self.reg(v[frac:frac + out_shape.width].as_signed(), out_shape, f"{name}_{part}"),
                          self.reg(v[frac - 1], unsigned(1), f"{name}_{part}_c"))
                         for v, part in ((sum_re, "re"), (sum_im, "im")))
        # R_F(s) = (s >> F) + s[F-1]: an adder of the high part only, the rounding bit as its carry
        return tuple(None if v is None else
                     self.reg(add_with_carry(v[frac:].as_signed(), Const(0, 1), v[frac - 1]), out_shape,
                              f"{name}_{part}") for v, part in ((sum_re, "re"), (sum_im, "im")))

    def rom(self, rows, d: int, shape, name):
        """The twiddle constants ``rows[pos]`` (``(c, d - c, c + d)``, or ``(c, d)`` for a real operand) of the
        sample at offset ``d``, one slot later (as a register of :meth:`table` would give them): a ROM in
        block RAM read with the position, where a table in logic costs up to a LUT per bit."""
        used = len(rows[0])
        layout = data.StructLayout({f"t{n}": shape for n in range(used)})
        init = [{f"t{n}": row[n] for n in range(used)} for row in rows]
        mem = Memory(shape=layout, depth=self.k, init=init, attrs=BLOCK_RAM)
        self.m.submodules[name] = mem
        rd = mem.read_port(domain="sync")
        self.m.d.comb += [rd.addr.eq(self.pos(d)), rd.en.eq(self.step)]
        return tuple(getattr(rd.data, f"t{n}") for n in range(used))

    def mul(self, a, b, stages: int, name):
        """The exact product ``a * b`` after ``stages`` registers (at least :func:`mult_stages`). An operand
        wider than a DSP (when the other fits) is split into ``dsp_bits - 1``-bit unsigned pieces (the top
        one signed) whose partial products are registered, then summed: each partial product adds only
        above the bits of the ones below it."""
        shape = signed(len(a) + len(b))
        dsp = self.dsp_bits
        split = mult_stages(len(a), len(b), dsp) - 2 * DSP_PIPELINE == 2
        if not split and DSP_PIPELINE == 1 and fits(self.dsp_cell, a.shape(), b.shape()):
            # a fabric register on the operands (they come from block RAM and adders), then the target's primitive
            # with its own operand and product registers (hw/dsp.py): the same three registers as below
            value = registered_product(self.m, a, b, en=self.step, cell=self.dsp_cell, width=shape.width, name=name,
                                       fabric="before")
            for n in range(stages - mult_stages(len(a), len(b), dsp)):
                value = self.reg(value, shape, f"{name}_pad{n}")
            return value
        if split and DSP_PIPELINE == 1:
            wide, narrow = (a, b) if len(a) > len(b) else (b, a)
            step = dsp - 1
            pieces = [wide[n:n + step] for n in range(0, len(wide) - dsp, step)]
            pieces.append(wide[len(pieces) * step:].as_signed())
            if all(fits(self.dsp_cell, piece.shape(), narrow.shape()) for piece in pieces):
                # each partial product on the target's primitive with its registers, the fabric register on its
                # operands (k = 64: the inferred partial product, 8.9 ns with 4.4 ns of routing, set Fmax)
                partial = [registered_product(self.m, piece, narrow, en=self.step, cell=self.dsp_cell,
                                              width=len(piece) + len(narrow) + 1, name=f"{name}_pp{n}",
                                              fabric="before") for n, piece in enumerate(pieces)]
                total = partial[0]
                for n, pp in enumerate(partial[1:], 1):
                    total = Cat(total[:n * step], total[n * step:].as_signed() + pp).as_signed()
                value = self.reg(total, shape, name)
                for n in range(stages - mult_stages(len(a), len(b), dsp)):
                    value = self.reg(value, shape, f"{name}_pad{n}")
                return value
        for n in range(DSP_PIPELINE):
            a, b = self.reg(a, a.shape(), f"{name}_a{n}"), self.reg(b, b.shape(), f"{name}_b{n}")
        if split:
            wide, narrow = (a, b) if len(a) > len(b) else (b, a)
            step = dsp - 1
            pieces = [wide[n:n + step] for n in range(0, len(wide) - dsp, step)]
            pieces.append(wide[len(pieces) * step:].as_signed())
            partial = [self.reg(piece * narrow, signed(len(piece) + len(narrow) + 1), f"{name}_pp{n}")
                       for n, piece in enumerate(pieces)]
            total = partial[0]
            for n, pp in enumerate(partial[1:], 1):
                total = Cat(total[:n * step], total[n * step:].as_signed() + pp).as_signed()
            value = self.reg(total, shape, name)
        else:
            value = self.reg(a * b, shape, name)
        for n in range(stages - mult_stages(len(a), len(b), dsp) + DSP_PIPELINE):
            value = self.reg(value, shape, f"{name}_pad{n}")
        return value

    def sdf(self, re, im, d: int, half: int, out_shape, name, *, scale: bool = False):
        """A radix-2 single-path delay-feedback butterfly on the stream at offset ``d`` whose pairs are
        ``half`` positions apart, for inputs ``(v, c)`` standing for ``v + c`` (:meth:`rotate` with
        ``pending``; ``c is None``: 0; ``im is None``: the real part only).

        Every input enters one delay line of ``2 half`` registers, no multiplexer in front: in a bottom
        slot the top sits ``half`` deep and the sum ``a + b`` leaves; in the next group's top slot the pair
        sits at ``half`` and ``2 half`` and the difference ``a - b`` leaves (2 adders and a multiplexer per
        bit, where a line fed back through a subtractor and multiplexers costs 4). In an inverse (DIT) stage
        a top has twiddle 1, so its carry is 0; the bottom's enters the adder and the subtractor as their
        carry and borrow (``a + (v + c)``, ``(2a - (2v + c)) >> 1 = a - (v + c)``). ``scale`` halves the
        result (``floor``: the schedule's ``ifft_scale``). Returns the registered stream (position
        ``p - half`` at offset ``d + half + 1``)."""
        bottom = self.pos(d)[ceil_log2(half)]
        outs = []
        for comp, part in ((re, "re"), (im, "im")):
            if comp is None:
                outs.append(None)
                continue
            v, c = comp
            line = [Signal(v.shape(), name=f"{name}_line{n}_{part}", reset_less=True) for n in range(2 * half)]
            with self.m.If(self.step):
                self.m.d.sync += line[0].eq(v)
                self.m.d.sync += [line[n].eq(line[n - 1]) for n in range(1, 2 * half)]
            top, bot, first = line[half - 1], line[2 * half - 1], None
            if c is not None:
                carry = [Signal(name=f"{name}_line{n}_{part}_c", reset_less=True) for n in range(half)]
                with self.m.If(self.step):
                    self.m.d.sync += carry[0].eq(c)
                    self.m.d.sync += [carry[n].eq(carry[n - 1]) for n in range(1, half)]
                first = carry[-1]
            if self.carry_cell is not None:
                # one chain, a LUT per bit: bottom ? v + top + c : bot + ~top + ~first (= bot - top - first)
                cin = Mux(bottom, Const(0, 1) if c is None else c, Const(1, 1) if first is None else ~first)
                value = selected_add(self.m, bottom, top, v, bot, cin, out_shape.width + int(scale), inv1=0, inv0=1,
                                     cell=self.carry_cell, name=f"{name}_bf_{part}")
            else:
                total = add_with_carry(top, v, c)
                # a - (v + c) as one subtractor: (2a - (2v + c)) >> 1 (an inverted operand would cost a LUT per
                # bit; a subtractor inverts inside the carry chain)
                diff = ((Cat(Const(0, 1), bot).as_signed() - Cat(first, top).as_signed()) >> 1
                        if first is not None else bot - top)
                value = Mux(bottom, total, diff)
            outs.append(self.reg(value >> 1 if scale else value, out_shape, f"{name}_{part}"))
        return tuple(outs)


# -- the component's body --------------------------------------------------------------------------------

def elaborate_streaming(pe) -> Module:
    """The ``"streaming"`` datapath of :class:`hw.circulant_fft.CirculantFFT` ``pe``."""
    p, fmt = pe.params, pe.params.fmt
    k, L, half, frac, sp, g = fmt.block, fmt.stages, fmt.block // 2, fmt.tw_frac, fmt.prod_shift, fmt.guard_bits
    plan = _plan(fmt, p.dsp_bits)
    rev = [int(r) for r in bit_reverse(k)]
    m = Module()

    # -- sequencing -----------------------------------------------------------------------------------
    # The pipeline enable is a flip-flop (hw.common.SkidOutput on the stream of output samples, before the lanes),
    # and whether the pipeline has work (`go`) is another, computed from the next state of the registers it
    # depends on: no clock enable of the datapath depends on o.ready or i.valid in its cycle (k = 64: o.ready ->
    # the step enable's 16.7k flip-flops set Fmax at 116 MHz). The beat is taken a slot before its block starts
    # (`pending`), so the start needs no i.valid either.
    lane_shape = pe.o.payload.y[0].shape()
    sample = stream.Signature(lane_shape).create(path=("lane",))   # the samples on their way to the lanes
    skid = SkidOutput(m, sample, name="y")
    en = skid.replica()                                      # the control's copy (the skid's own drives its register)
    t = Signal(unsigned(ceil_log2(k)), init=k - 1)          # slot of the block at the input
    drain = Signal(range(plan.out + k + 1))                  # steps until the last result is out
    flushing = Signal()                                      # drain != 0, registered (off the step path)
    drain_one = Signal()                                     # drain == 1, registered
    block_end = Signal(init=1)                               # t == k - 1, registered
    before_end = Signal(init=int(k == 2))                    # t == k - 2, registered
    pending = Signal()                                       # a beat taken, its block not started yet
    pending_last = Signal()                                  # its `last`
    go = Signal()                                            # ~block_end | flushing | pending, registered
    step = Signal()
    start = Signal()                                         # a new block (the pending beat or a bubble) begins
    taken = Signal()                                         # the pending beat's block begins
    m.d.comb += [
        step.eq(en & go),
        start.eq(step & block_end),
        taken.eq(start & pending),
        # in the slot before a block boundary, or while the pipeline waits at one; not in a boundary slot
        # that starts an empty block (the beat would wait a whole block)
        pe.i.ready.eq(en & ~pending & (before_end | (block_end & ~flushing))),
    ]
    accept = pe.i.valid & pe.i.ready
    m.d.sync += [
        block_end.eq(Mux(step, before_end, block_end)),
        flushing.eq(Mux(taken & pending_last, 1, Mux(step & flushing, ~drain_one, flushing))),
        pending.eq(accept | (pending & ~taken)),
        drain_one.eq(Mux(taken & pending_last, 0, Mux(step & flushing, drain == 2, drain_one))),
        # `go` of those next values, written with go == ~block_end | flushing | pending (so without a step: go |
        # accept): two LUT levels from registers and i.valid (k = 64: the expression itself, 6 levels, 119 MHz)
        go.eq(Mux(step, ~before_end | (flushing & ~drain_one) | (pending & (~block_end | pending_last)) | accept,
                  go | accept)),
    ]

    # bank: of the weight RAM; abank: of the accumulator RAM, one per vector (toggled by each `last`)
    flag_layout = {"valid": 1, "first": 1, "last": 1, "bank": range(plan.weight_banks), "abank": 1}
    flags_shape = data.StructLayout(flag_layout)
    depth = plan.out // k + 2
    history = [Signal(flags_shape, name=f"block{n}") for n in range(depth)]
    first = Signal(init=1)                                    # the next beat starts a vector
    wsel = Signal(range(plan.weight_banks))                   # the weight bank the next beat fills
    abank = Signal()                                          # the accumulator bank the next vector fills
    with m.If(step):
        m.d.sync += [t.eq(t + 1), before_end.eq(t == (k - 3) % k)]
        with m.If(flushing):
            m.d.sync += drain.eq(drain - 1)
    with m.If(accept):
        m.d.sync += pending_last.eq(pe.i.payload.last)
    with m.If(start):
        m.d.sync += [history[n].eq(history[n - 1]) for n in range(1, depth)]
        m.d.sync += [history[0].valid.eq(pending), history[0].first.eq(first),
                     history[0].last.eq(pending_last), history[0].bank.eq(wsel),
                     history[0].abank.eq(abank)]
    with m.If(taken):
        m.d.sync += first.eq(pending_last)
        m.d.sync += wsel.eq(Mux(wsel == plan.weight_banks - 1, 0, wsel + 1))
        with m.If(pending_last):
            m.d.sync += [drain.eq(plan.out + k), abank.eq(~abank)]

    def replica(name):
        region = Signal(name=f"step_{name}")
        m.d.comb += region.eq(skid.replica() & go)
        return region

    b = _Builder(m, k, step, t, history, p.dsp_bits, p.dsp_cell, carry=p.carry_cell, replica=replica)

    # -- input buffers: the block being serialised; its weights go into the weight RAM, one bin per slot --
    m = b.section("inbuf")
    x_shape = p.act_shape
    xbuf = [Signal(x_shape, name=f"x{n}", reset_less=True) for n in range(k)]
    wbuf = [(Signal(signed(fmt.w_bits), name=f"w{n}_re", reset_less=True),
             Signal(signed(fmt.w_bits), name=f"w{n}_im", reset_less=True)) for n in range(fmt.bins)]
    # the beat is taken while the previous block's last slot may still be serialised from the pair (x[k/2 - 1],
    # x[k - 1]): those two wait in a register of their own until the block starts (every other value and every
    # weight is read for the last time in slot k - 2 or earlier)
    staged = {n: Signal(x_shape, name=f"x{n}_next", reset_less=True) for n in (half - 1, k - 1)}
    with m.If(accept):
        m.d.sync += [(staged[n] if n in staged else xbuf[n]).eq(pe.i.payload.x[n]) for n in range(k)]
        m.d.sync += [part.eq(pe.i.payload.w[n][field]) for n, pair in enumerate(wbuf)
                     for part, field in zip(pair, ("re", "im"))]
    with m.If(taken):
        m.d.sync += [xbuf[n].eq(v) for n, v in staged.items()]
    zero_w = Const(0, signed(fmt.w_bits))
    bin_layout = data.StructLayout({"re": signed(fmt.w_bits), "im": signed(fmt.w_bits)})
    wmem = Memory(shape=bin_layout, depth=plan.weight_banks * k, init=[], attrs=BLOCK_RAM)
    m.submodules.weights = wmem
    w_write = wmem.write_port()
    # bin m is selected in slot m and written in slot m + 1 (registered, off the counter's critical path);
    # bins 0 and k/2 are real: their imaginary fields are ignored
    w_addr = b.reg(Cat(t, history[0].bank), unsigned(len(w_write.addr)), "w_addr")
    # AND-OR multiplexers on a one-hot copy of t (positions above k/2 are never written: don't care; bins 0 and
    # k/2 have no imaginary part: no term, 0)
    slot = b.onehot(k)
    w_re_in = b.reg(_onehot_mux(m, [wbuf[n][0] for n in range(half + 1)], slot, "w_re_sel"),
                    signed(fmt.w_bits), "w_re_in")
    w_im_in = b.reg(_onehot_mux(m, [zero_w] + [wbuf[n][1] for n in range(1, half)], slot, "w_im_sel"),
                    signed(fmt.w_bits), "w_im_in")
    w_en = Signal(name="w_en")
    with m.If(step):
        m.d.sync += w_en.eq(history[0].valid & (t <= half))
    m.d.comb += [w_write.addr.eq(w_addr), w_write.data.re.eq(w_re_in), w_write.data.im.eq(w_im_in),
                 w_write.en.eq(b.stepped & w_en)]

    # -- forward stage 1 on the buffered pair (x[n], x[n + k/2]), real input ---------------------------
    m = b.section("fft")
    pair = b.onehot(half)                                    # t mod k/2, one-hot
    top_x, bot_x = _onehot_mux(m, xbuf[:half], pair, "x_top"), _onehot_mux(m, xbuf[half:], pair, "x_bot")
    a = b.reg(top_x, x_shape, "fft1_a")
    c = b.reg(bot_x, x_shape, "fft1_c")
    s1_shape = _range_shape(fmt.fft_range(1))
    # a + c in the first half of the block, a - c = a + ~c + 1 in the second: one adder whose operand is
    # inverted (a LUT per bit) and whose carry is the select, instead of an adder, a subtractor and a
    # multiplexer; on the activations themselves, the guard bits (zeros) appended after it
    diff = b.pos(1)[L - 1]
    c_s = c if c.shape().signed else Cat(c, Const(0, 1)).as_signed()
    if b.carry_cell is not None:                             # the select and the inversion in the chain's LUTs
        s1 = selected_add(m, diff, c_s, a, a, diff, s1_shape.width - g, inv1=1, inv0=0, cell=b.carry_cell,
                          name="fft1_addsub")
    else:
        s1 = add_with_carry(a, Mux(diff, ~c_s, c_s), diff)
    u = b.reg(s1 << g, s1_shape, "fft1_sum")
    u_re, u_im = b.rotate(u, None, plan.fft_tw[0], plan.fft_kind[0], 2, frac, s1_shape, "fft1_rot")
    if u_im is None:
        u_im = Const(0, s1_shape)
    d = 2 + plan.fft_lat[0]
    u = ((u_re, None), (u_im, None))
    for s in range(2, L + 1):
        b.region(f"fft{s}")
        shape = _range_shape(fmt.fft_range(s))
        u_re, u_im = b.sdf(*u, d, k >> s, shape, f"fft{s}")
        d += (k >> s) + 1
        # a swap stage (groups of 4, twiddles 1 and -j: only odd positions rotate, the bottoms of the last stage)
        # leaves its negation's +1 to the last stage's butterfly as a carry, as the inverse transform does
        pending = plan.fft_kind[s - 1] == "swap" and s < L
        u = b.rotate(u_re, u_im, plan.fft_tw[s - 1], plan.fft_kind[s - 1], d, frac, shape, f"fft{s}_rot",
                     pending=pending)
        if not pending:
            u = ((u[0], None), (u[1], None))
        d += plan.fft_lat[s - 1]
    (u_re, _), (u_im, _) = u
    if d != plan.forward:
        raise RuntimeError(f"streaming plan out of step: forward offset {d} != {plan.forward}")

    # -- products X[m] * W[m] for the bins m = bitrev(pos) <= k/2, exact, registered ------------------
    # the weight of bin bitrev(pos), read two slots ahead so it arrives with the spectrum (the block RAM's
    # output is registered: its clock-to-output alone is about 6 ns on ECP5)
    m = b.section("product")
    w_read = wmem.read_port(domain="sync")
    flags_w = data.View(flags_shape, b.flags(d - 2))
    bin_at = b.table([rev[pos] if rev[pos] <= half else 0 for pos in range(k)], d - 2, unsigned(L), "w_bin")
    m.d.comb += [w_read.en.eq(step), w_read.addr.eq(Cat(bin_at, flags_w.bank))]
    w_re_sel = b.reg(w_read.data.re, signed(fmt.w_bits), "w_read_re")
    w_im_sel = b.reg(w_read.data.im, signed(fmt.w_bits), "w_read_im")
    # four products when spectrum and weight fit a DSP, else the 3-multiplier complex product, exact:
    # k1 = w_re (x_re + x_im), k2 = x_re (w_im - w_re), k3 = x_im (w_re + w_im); re P = k1 - k3, im P = k1 + k2
    x_shape_f = _range_shape(fmt.fft_range(L))
    ws = signed(fmt.w_bits + 1)
    x_re, x_im = b.reg(u_re, x_shape_f, "x_re"), b.reg(u_im, x_shape_f, "x_im")
    w_re = b.reg(w_re_sel, signed(fmt.w_bits), "w_re")
    prod_shape = _range_shape(fmt.product_range)
    if _product_four(fmt, p.dsp_bits):      # four products, no pre-adders (cheaper in LUT + DSP)
        w_im = b.reg(w_im_sel, signed(fmt.w_bits), "w_im")
        kp = [b.mul(xs, ws_, plan.product_mult, f"p_k{n}")
              for n, (xs, ws_) in enumerate(((x_re, w_re), (x_im, w_im), (x_re, w_im), (x_im, w_re)))]
        prod_re, prod_im = b.reg(kp[0] - kp[1], prod_shape, "prod_re"), b.reg(kp[2] + kp[3], prod_shape, "prod_im")
    else:
        x_sum = b.reg(u_re + u_im, signed(x_shape_f.width + 1), "x_sum")
        w_dif, w_sum = b.reg(w_im_sel - w_re_sel, ws, "w_dif"), b.reg(w_re_sel + w_im_sel, ws, "w_sum")
        k1 = b.mul(x_sum, w_re, plan.product_mult, "p_k1")
        k2 = b.mul(x_re, w_dif, plan.product_mult, "p_k2")
        k3 = b.mul(x_im, w_sum, plan.product_mult, "p_k3")
        prod_re, prod_im = b.reg(k1 - k3, prod_shape, "prod_re"), b.reg(k1 + k2, prod_shape, "prod_im")
    d += 1 + plan.product_mult + 1

    # -- accumulation in RAM: two banks of k positions, the one being read by the IFFT and the other ------
    m = b.section("acc")
    bias = _output_bias(fmt)
    lo, hi = fmt.acc_range()
    acc_shape = _range_shape((lo, hi + bias))
    acc_layout = data.StructLayout({"re": acc_shape, "im": acc_shape})
    mem = Memory(shape=acc_layout, depth=2 * k, init=[], attrs=BLOCK_RAM)
    m.submodules.acc_mem = mem
    # read two slots ahead (the block RAM's output registered), the sum written one slot later (registered):
    # a position is read again one block after its write, so k >= 4 leaves no hazard
    flags_acc = data.View(flags_shape, b.flags(d))
    flags_rmw = data.View(flags_shape, b.flags(d - 2))
    rmw = mem.read_port(domain="sync")
    m.d.comb += [rmw.en.eq(step), rmw.addr.eq(Cat(b.pos(d - 2), flags_rmw.abank))]
    # the first block of a vector starts from 0, re of bin 0 (position 0) from the output rounding's bias:
    # the register after the block RAM loads that instead of the old sum (its flip-flops' synchronous
    # reset, written as its own branch; the bias bits cost a LUT each)
    first_pre = data.View(flags_shape, b.flags(d - 1)).first
    start = b.table([bias if pos == 0 else 0 for pos in range(k)], d - 1, acc_shape, "acc_start")
    old_re = Signal(acc_shape, name="acc_old_re", reset_less=True)
    old_im = Signal(acc_shape, name="acc_old_im", reset_less=True)
    with m.If(step):
        with m.If(first_pre):
            m.d.sync += [old_re.eq(start), old_im.eq(0)]
        with m.Else():
            m.d.sync += [old_re.eq(rmw.data.re), old_im.eq(rmw.data.im)]
    needed = b.table([int(rev[pos] <= half) for pos in range(k)], d, unsigned(1), "acc_needed")

    def accumulate(prod, old):
        rounded = (prod >> sp, prod[sp - 1]) if sp else (prod, None)
        return add_with_carry(old, *rounded)

    wr = mem.write_port()
    m.d.comb += [
        wr.addr.eq(b.reg(Cat(b.pos(d), flags_acc.abank), unsigned(L + 1), "acc_waddr")),
        wr.data.re.eq(b.reg(accumulate(prod_re, old_re), acc_shape, "acc_new_re")),
        wr.data.im.eq(b.reg(accumulate(prod_im, old_im), acc_shape, "acc_new_im")),
        wr.en.eq(b.stepped & b.reg(flags_acc.valid & needed, unsigned(1), "acc_we")),
    ]
    if d != plan.acc:
        raise RuntimeError(f"streaming plan out of step: accumulator offset {d} != {plan.acc}")

    # -- inverse: the finished bank in bit-reversed order, Hermitian extension ------------------------
    d += k                                                   # one block later, the read address
    read_addr, conj = [], []
    for pos in range(k):
        mbin = rev[pos]
        read_addr.append(pos if mbin <= half else rev[k - mbin])
        conj.append(int(mbin > half))
    # read one slot ahead, the block RAM's output registered
    rd = mem.read_port(domain="sync")
    flags_rd = data.View(flags_shape, b.flags(d - 1))
    m.d.comb += [rd.en.eq(step), rd.addr.eq(Cat(b.table(read_addr, d - 1, unsigned(L), "ifft_addr"), flags_rd.abank))]
    rd_re, rd_im = b.reg(rd.data.re, acc_shape, "ifft_read_re"), b.reg(rd.data.im, acc_shape, "ifft_read_im")
    d += 1
    neg = b.table(conj, d, unsigned(1), "ifft_conj")
    # v_0 with the conjugates pending: -im = ~im + 1, the +1 a carry of the first butterfly (the conjugated
    # positions are odd, bottoms of stage 1)
    v_shape = _range_shape((lo - 1, hi + bias), (-hi - 1, -lo))
    v = ((b.reg(rd_re, v_shape, "v0_re"), None),
         (b.reg(Mux(neg, ~rd_im, rd_im), v_shape, "v0_im"), b.reg(neg, unsigned(1), "v0_neg")))
    d += 1
    if d != plan.ifft_in:
        raise RuntimeError(f"streaming plan out of step: inverse offset {d} != {plan.ifft_in}")
    m = b.section("ifft")
    if plan.ifft_kind[0] != "none":
        raise RuntimeError("streaming plan: the first inverse stage must have no rotation")
    for s in range(1, L + 1):
        if s > 1:
            b.region(f"ifft{s}")
        shape = signed(_ifft_bits(fmt, s))
        if s > 1:                                # rotate the resolved stream, the roundings pending
            v = b.rotate(v[0], v[1], plan.ifft_tw[s - 1], plan.ifft_kind[s - 1], d, frac,
                         signed(shape.width + 1), f"ifft{s}_rot", pending=True, re_only=s == L)
        d += plan.ifft_lat[s - 1]
        v = b.sdf(v[0], v[1] if s < L else None, d, 1 << (s - 1), shape, f"ifft{s}", scale=fmt.ifft_scale)
        d += (1 << (s - 1)) + 1
    if d != plan.out:
        raise RuntimeError(f"streaming plan out of step: output offset {d} != {plan.out}")

    # -- output: y[pos] = R_L(re v_L) = (re v_L + bias) >> L (the bias came with bin 0), one sample per slot;
    # with ifft_scale the stages did the 1/k: y = re v_L. The samples of a result, lanes 0 .. k - 1 in order,
    # pass the skid (registered on the enable: one slot later) into the lanes; o.valid with the last lane
    m = b.section("outbuf")
    # the result flag registered one slot ahead
    flags_pre = data.View(flags_shape, b.flags(d - 1))
    done = Signal(name="y_done")                              # reset: no stale result after a reset
    with m.If(b.step):
        m.d.sync += done.eq(flags_pre.valid & flags_pre.last)
    y = v[0] if fmt.ifft_scale else v[0] >> L
    # a sample is handed on when the pipeline steps past it (an idle pipeline holds none: done is 0 there)
    with m.If(en):
        m.d.sync += [skid.valid.eq(step & done), skid.payload.eq(y)]
    take = Signal(name="lane_take")
    m.d.comb += [sample.ready.eq(~pe.o.valid | pe.o.ready), take.eq(sample.valid & sample.ready)]
    lane = Signal(k, name="lane_onehot", init=1)             # the lane the next sample fills
    with m.If(take):
        m.d.sync += lane.eq(Cat(lane[-1], lane[:-1]))
    for n in range(k):
        with m.If(take & lane[n]):
            m.d.sync += pe.o.payload.y[n].eq(sample.payload)
    with m.If(take & lane[k - 1]):
        m.d.sync += pe.o.valid.eq(1)
    with m.Elif(pe.o.ready):
        m.d.sync += pe.o.valid.eq(0)
    return b.top
