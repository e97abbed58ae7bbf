"""``circulant-fft``: a block-circulant matrix-vector PE computing in the frequency domain.

A block-circulant weight matrix is ``p x q`` circulant blocks of ``k x k`` (docs/circulant-fft.md;
CirCNN, Ding et al., MICRO 2017, eq. 3), so an output block is

    y_i = IFFT( sum_j FFT(x_j) o W_ij )

with ``W_ij`` the stored, quantised half spectrum of block ``(i, j)``. The PE computes one output block
per vector: beat ``j`` carries the input block ``x_j`` and the spectrum ``W_ij``; ``last`` marks the
final beat ``j = q - 1``; then ``y_i`` comes out as one beat of ``k`` lanes. The arithmetic is the
fixed-point schedule of :mod:`sw.circulant`, bit for bit (:func:`sw.circulant.golden_matvec`), with every
width taken from :class:`sw.circulant.CirculantFormat`.

Architecture ``"streaming"`` (any ``k``, one sample per cycle, a block every ``k`` cycles) is
:mod:`hw.circulant_stream`; the same ports and bits.

Architecture ``"parallel"`` (``k <= 16``; docs/circulant-fft.md): every butterfly of both transforms is
its own hardware, one input block per cycle (II = 1). All registers advance on one enable ``en``, itself a
flip-flop (:class:`hw.common.SkidOutput`: a result the consumer does not take moves to a skid register and ``en``
drops a cycle later), since it reaches every one of the PE's 10-17k registers; the accumulators' clear and update
are registered a cycle ahead on it. The datapath is a graph of terms scheduled as soon as possible by
:class:`_Pipeline`: a register after every ``tree_levels`` (default two) carry-chain adders and around every
DSP product, delay
registers where values meet from different cycles::

    i.payload.x -> DIF stages 1 .. L (add/sub, CSD twiddle trees) -> X[0 .. k/2] (bit-reversed positions)
    -> pre-adds -> [reg] -> DSP products (3 per complex bin, Gauss) -> [reg] -> P = k1 - k3, k1 + k2
    i.payload.w -> [delay registers] -> weight pre-adds ---------^
    -> acc += R_sp(P) (rounding bit as the adder's carry-in); on ``last`` the sum goes to the inverse
       transform and the accumulator reloads (0; ``2^(L-1)`` in ``re`` of bin 0, the output rounding bias)
    -> Hermitian extension, bit-reversed -> DIT stages 1 .. L -> o.payload.y = v_L >> L (output register)

``latency`` follows from the schedule (:func:`parallel_latency`; default format 6, 12, 16 at k = 4, 8, 16).

Exactness and the cheap parts:

* Each real value is built as ``(value, negated)`` at generation time: a negation (the conjugates of the
  Hermitian extension, a rotation by ``-j`` or ``+j``, a negative CSD digit) flips a flag instead of
  costing an adder, and the next add or subtract absorbs it (``a + (-b)`` is written ``a - b``). A value
  held negated is stored with the negated range.
* Values known to be exactly zero (the imaginary input of the forward transform, and what follows from it;
  the imaginary parts of bins 0 and ``k/2``) are not built at all, and the datapath is built on demand from
  the outputs backwards: butterflies feeding only bins ``k/2+1 .. k-1`` and the imaginary part of the last
  inverse stage do not exist.
* Twiddles ``1``, ``-1``, ``-j``, ``+j`` cost nothing (the golden rounding of such a product is exact,
  ``R_F(v 2^F) = v``); the others are shift-and-add trees over the canonical signed digits of the
  constants (no DSP), exact, with the rounding bias wired into a known-zero low bit (:func:`_rotate_part`).
* The complex products ``X W`` take three DSP multipliers (four if an operand would exceed the target's
  DSP operand width, ``dsp_bits``: 18 on ECP5); with ``dsp_cell`` a primitive, each is that primitive with its
  own registers (:func:`hw.dsp.registered_product`, one register more per product).
* ``R_s(v) = (v + 2^(s-1)) >> s`` equals ``(v >> s) + v[s-1]``: the product rounding enters the
  accumulator's adder as its carry (:func:`hw.common.add_with_carry`); the output rounding's bias enters
  ``re V[0]``, which reaches every output of the inverse DIT unrotated, so the output is a shift.
* The imaginary weight inputs of bins 0 and ``k/2`` are ignored (the golden model requires them to be 0).

The accumulator is sized for ``fmt.max_q`` input blocks per output block; a longer vector overflows
(the golden model rejects it).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from amaranth import Cat, Const, Module, Signal, Value, signed, unsigned
from amaranth.hdl import Shape
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..sw.circulant import CirculantFormat, bit_reverse
from ..sw.intops import signed_bits_for
from ..sw.params import Params

from .carry import CARRY_CELL
from .dsp import DSP_CELL, TARGET, fits, product_stages, registered_product
from .common import (DEFAULT_DSP_BITS, DSP_BITS, TREE_LEVELS, TREE_LEVELS_PER_STAGE, SkidOutput, StreamParams,
                     add_with_carry, csd_digits, delay, register)

__all__ = ["ARCHITECTURES", "MAX_PARALLEL_BLOCK", "CirculantParams", "CirculantFFT"]

#: Architectures: ``"parallel"`` (every butterfly in hardware, one block per cycle) and ``"streaming"``
#: (one sample per cycle through single-path delay-feedback stages, :mod:`hw.circulant_stream`).
ARCHITECTURES = ("parallel", "streaming")
#: Largest block size of the fully parallel architecture (``k log k`` butterflies in flight).
MAX_PARALLEL_BLOCK = 16


@dataclass(frozen=True)
class CirculantParams(StreamParams, Params):
    """Parameters of :class:`CirculantFFT`.

    Members
    -------
    fmt : CirculantFormat
        Block size ``k``, activation and weight widths and the fixed-point schedule (:mod:`sw.circulant`).
    arch : str or None
        ``"parallel"``: every butterfly in hardware, one block per cycle (II = 1), ``k <= 16``.
        ``"streaming"``: one sample per cycle through one butterfly per stage (II = ``k``), any ``k``.
        ``None`` (the default) picks ``"parallel"`` up to ``k = 16`` and ``"streaming"`` above (and for the
        scaled inverse schedule, ``fmt.ifft_scale``, which only ``"streaming"`` builds).
        Both compute the same bits (:func:`sw.circulant.golden_matvec`).
    dsp_bits : int
        Signed operand width of the target's DSP multiplier, 8 to 64 (default 18, ECP5 MULT18X18D; the
        synthesis flow sets it for its target, :func:`synth.for_target`). It shapes the multipliers, not
        the bits: ``"parallel"`` takes three multipliers per complex product when every operand fits, else
        four; ``"streaming"`` splits an operand wider than a DSP into ``dsp_bits - 1``-bit pieces. The
        latency follows.
    dsp_cell : str
        ``"target"`` (default: the synthesis target's DSP primitive, :mod:`hw.dsp`), ``"inferred"`` or a
        primitive. Each product whose operands fit the primitive is built from it, with its own registers:
        ``"streaming"`` at the same latency, ``"parallel"`` with one register more per product (the latency
        follows).
    carry_cell : str
        ``"target"`` (default: the synthesis target's carry-chain primitive, :mod:`hw.carry`: ECP5 ``CCU2C``;
        iCE40 and generic Verilog: expressions), ``"inferred"`` or a primitive. ``"streaming"`` builds each
        delay-feedback butterfly and the first forward stage's add/subtract from it, a LUT per bit (the same
        bits, the same latency); ``"parallel"`` does not use it.
    tree_levels : int
        ``"parallel"``: carry-chain adders between pipeline registers, 1 to 8 (default 2; 1 registers every
        adder: a shorter path, more flip-flops; the latency follows). ``"streaming"`` registers every butterfly
        stage itself and ignores it.
    input_layout, output_layout : data.StructLayout
        The ``i`` and ``o`` payloads; ``i_signature``, ``o_signature`` their stream signatures
        (:class:`hw.common.StreamParams`).

    Raises
    ------
    TypeError
        ``"Circulant format (fmt) must be a CirculantFormat, not ..."``,
        ``"Architecture (arch) must be a string, not 1"``.
    ValueError
        ``"Architecture (arch) must be one of 'parallel', 'streaming', not 'serial'"``,
        ``"Block size (fmt.block) must be at most 16 for arch='parallel', not 32 (larger blocks need
        arch='streaming')"``, ``"Inverse stage scaling (fmt.ifft_scale) must be False for arch='parallel',
        not True (it needs arch='streaming')"``.
    """

    fmt: CirculantFormat = field(default_factory=CirculantFormat, metadata={
        "doc": "number format and fixed-point schedule (sw.circulant.CirculantFormat)"})
    arch: str | None = field(default=None, metadata={
        "doc": "'parallel' (one block per cycle, block <= 16) or 'streaming' (one sample per cycle); "
               "default: parallel up to block 16, streaming above"})
    dsp_bits: int = DSP_BITS.field(DEFAULT_DSP_BITS)
    dsp_cell: str = DSP_CELL.field(TARGET)
    tree_levels: int = TREE_LEVELS.field(TREE_LEVELS_PER_STAGE)
    carry_cell: str = CARRY_CELL.field(TARGET)

    def __post_init__(self):
        if not isinstance(self.fmt, CirculantFormat):
            raise TypeError(f"Circulant format (fmt) must be a CirculantFormat, not {self.fmt!r}")
        if self.arch is None:
            parallel = self.fmt.block <= MAX_PARALLEL_BLOCK and not self.fmt.ifft_scale
            object.__setattr__(self, "arch", "parallel" if parallel else "streaming")
        if not isinstance(self.arch, str):
            raise TypeError(f"Architecture (arch) must be a string, not {self.arch!r}")
        if self.arch not in ARCHITECTURES:
            allowed = ", ".join(repr(a) for a in ARCHITECTURES)
            raise ValueError(f"Architecture (arch) must be one of {allowed}, not {self.arch!r}")
        if self.arch == "parallel" and self.fmt.block > MAX_PARALLEL_BLOCK:
            raise ValueError(f"Block size (fmt.block) must be at most {MAX_PARALLEL_BLOCK} for arch='parallel', "
                             f"not {self.fmt.block!r} (larger blocks need arch='streaming')")
        if self.arch == "parallel" and self.fmt.ifft_scale:
            raise ValueError("Inverse stage scaling (fmt.ifft_scale) must be False for arch='parallel', not True "
                             "(it needs arch='streaming')")
        self.check_fields()

    # -- derived values ------------------------------------------------------------------------
    @property
    def block(self) -> int:
        """Block size ``k``."""
        return self.fmt.block

    @property
    def initiation_interval(self) -> int:
        """Cycles between accepted input beats with no stalls: 1 (``"parallel"``) or ``k``
        (``"streaming"``: one sample per cycle)."""
        return 1 if self.arch == "parallel" else self.block

    @property
    def latency(self) -> int:
        """Cycles from accepting the ``last`` beat to ``o.valid`` with no stalls."""
        if self.arch == "parallel":
            return parallel_latency(self.fmt, self.dsp_bits, self.dsp_cell, self.tree_levels)
        from .circulant_stream import streaming_latency
        return streaming_latency(self.fmt, self.dsp_bits)

    @property
    def macs_per_cycle(self) -> int:
        """Equivalent dense MACs per cycle: one ``k x k`` block (``k^2``) per :attr:`initiation_interval`."""
        return self.block * self.block // self.initiation_interval

    @property
    def acc_bits(self) -> int:
        """Accumulator component width, ``fmt.acc_bits()`` (for ``fmt.max_q`` input blocks)."""
        return self.fmt.acc_bits()

    @property
    def out_bits(self) -> int:
        """Output lane width, ``fmt.out_bits()`` (for ``fmt.max_q`` input blocks)."""
        return self.fmt.out_bits()

    # -- stream layouts ------------------------------------------------------------------------
    @property
    def act_shape(self) -> Shape:
        return signed(self.fmt.act_bits) if self.fmt.act_signed else unsigned(self.fmt.act_bits)

    @property
    def bin_layout(self) -> data.StructLayout:
        """One stored spectral bin: ``re`` then ``im``, signed ``w_bits`` each."""
        return data.StructLayout({"re": signed(self.fmt.w_bits), "im": signed(self.fmt.w_bits)})

    @property
    def input_layout(self) -> data.StructLayout:
        """``i`` payload, LSB first: ``x`` (k lanes of ``act_bits``), ``w`` (``k/2 + 1`` bins, each ``re``
        then ``im``: bin m at bits ``[2 m w_bits, 2 (m + 1) w_bits)``, the row-major flattening of
        :func:`sw.circulant.export_spectra`'s ``[k/2 + 1, 2]``; ``im`` of bins 0 and ``k/2`` is ignored),
        ``last`` (1 bit, on the final input block of an output block)."""
        return data.StructLayout({
            "x": data.ArrayLayout(self.act_shape, self.block),
            "w": data.ArrayLayout(self.bin_layout, self.fmt.bins),
            "last": unsigned(1),
        })

    @property
    def output_layout(self) -> data.StructLayout:
        """``o`` payload: ``y``, k signed lanes of :attr:`out_bits`, lane n = ``y[n]``."""
        return data.StructLayout({"y": data.ArrayLayout(signed(self.out_bits), self.block)})


# -- the parallel datapath: generation-time arithmetic on pipelined terms -------------------------------

@functools.lru_cache(maxsize=64)
def parallel_latency(fmt: CirculantFormat, dsp_bits: int = DEFAULT_DSP_BITS, dsp_cell: str = TARGET,
                     tree_levels: int = TREE_LEVELS_PER_STAGE) -> int:
    """Register stages of the ``"parallel"`` architecture from ``i`` to ``o`` (its latency in cycles).

    The datapath is scheduled as soon as possible with a register after every
    :data:`~hw.common.TREE_LEVELS_PER_STAGE` carry-chain adders and around every DSP product, so the
    count follows from ``fmt`` (block size, widths and twiddles); it is computed by building the datapath
    without a module (k = 4, 8, 16 at the default format: 6, 12, 16).
    """
    return _ParallelDatapath(fmt, None, Const(1), dsp_bits=dsp_bits, dsp_cell=dsp_cell,
                             tree_levels=tree_levels).latency


@dataclass(frozen=True)
class _Term:
    """A real value ``-value if neg else value`` somewhere in the pipeline; ``value is None`` is an exact 0.

    ``lo .. hi`` is the range of ``value`` itself (the held signal, negated when ``neg``); ``cycle`` counts
    the registers between ``i.payload`` and ``value``, ``depth`` the carry-chain adders since the last
    register; the ``tz`` low bits of ``value`` are known to be 0 (a shifted operand).
    """
    value: Value | None
    lo: int = 0
    hi: int = 0
    neg: bool = False
    cycle: int = 0
    depth: int = 0
    tz: int = 0

    @property
    def real_range(self) -> tuple[int, int]:
        """Range of the real value the term stands for."""
        return (-self.hi, -self.lo) if self.neg else (self.lo, self.hi)

    def negated(self) -> _Term:
        return self if self.value is None else replace(self, neg=not self.neg)


_ZERO = _Term(None)


def _held_range(real: tuple[int, int], neg: bool) -> tuple[int, int]:
    return (-real[1], -real[0]) if neg else real


class _Pipeline:
    """Builds the datapath as soon as possible: a register after every ``levels`` carry-chain adders.

    Every operation first brings its operands to one cycle (delay registers for the earlier one, shared
    between users) and registers an operand that has no adder level left; a DSP product takes registered
    operands and is registered before use. Signs fold into the operations (a negation is a flag, ``a + (-b)``
    is one subtractor), the low bits of an operand that are known to be 0 pass through without an adder,
    and a sum used by another adder in the same cycle is a signal marked ``keep`` (:func:`hw.common.adder_tree`:
    otherwise yosys' ``alumacc`` merges the adders into LUT-built ``$macc`` cells). ``m = None`` only
    schedules (for :func:`parallel_latency`).
    """

    def __init__(self, m: Module | None, en: Value, levels: int = TREE_LEVELS_PER_STAGE, cell: str = TARGET):
        self.m, self.en, self.levels, self.cell = m, en, levels, cell
        self.scope = "dp"
        #: the enable of the registers built in a scope (default: ``en`` everywhere)
        self.enable_for: Callable[[str], Value] = lambda scope: en
        self._products = 0
        # id(value) -> (value, its register / its keep signal); the value is held so its id stays unique
        self._registered: dict[int, tuple[Value, Signal]] = {}
        self._kept: dict[int, tuple[Value, Signal]] = {}

    def _sync(self, target: Signal, value: Value) -> None:
        if self.m is not None:
            with self.m.If(self.enable_for(self.scope)):
                self.m.d.sync += target.eq(value)

    def _comb(self, target: Signal, value: Value) -> None:
        if self.m is not None:
            self.m.d.comb += target.eq(value)

    def register(self, t: _Term) -> _Term:
        """``t`` one cycle later, in a register (one per value, shared)."""
        if t.value is None:
            return t
        hit = self._registered.get(id(t.value))
        if hit is None:
            reg = Signal(signed(signed_bits_for(t.lo, t.hi)), name=f"{self.scope}_r", reset_less=True)
            self._sync(reg, t.value)
            hit = self._registered[id(t.value)] = (t.value, reg)
        return replace(t, value=hit[1], cycle=t.cycle + 1, depth=0)

    def earliest(self, t: _Term, levels: int) -> int:
        """First cycle at which ``t`` can feed ``levels`` more adder levels."""
        return t.cycle if t.depth + levels <= self.levels else t.cycle + 1

    def at(self, t: _Term, cycle: int, levels: int = 0) -> _Term:
        """``t`` in ``cycle`` with room for ``levels`` more adder levels (registers as needed)."""
        if t.value is None:
            return t
        if cycle < self.earliest(t, levels):
            raise RuntimeError(f"term of cycle {t.cycle} (depth {t.depth}) cannot be used in cycle {cycle}")
        while t.cycle < cycle:
            t = self.register(t)
        return t

    def align(self, terms: list[_Term], levels: int = 0) -> list[_Term]:
        """``terms`` brought to one cycle, each with room for ``levels`` more adder levels."""
        live = [t for t in terms if t.value is not None]
        cycle = max((self.earliest(t, levels) for t in live), default=0)
        return [self.at(t, cycle, levels) for t in terms]

    def keep(self, t: _Term) -> _Term:
        """A combinational sum as a ``keep`` signal (registers and inputs are returned as they are)."""
        if t.value is None or t.depth == 0:
            return t
        hit = self._kept.get(id(t.value))
        if hit is None:
            sig = Signal(signed(signed_bits_for(t.lo, t.hi)), name=f"{self.scope}_s", attrs={"keep": 1})
            self._comb(sig, t.value)
            hit = self._kept[id(t.value)] = (t.value, sig)
        return replace(t, value=hit[1])

    def add(self, a: _Term, b: _Term, *, sub: bool = False, bound: tuple[int, int] | None = None) -> _Term:
        """``a + b`` (``a - b`` with ``sub``) with one carry-chain adder; ``bound`` is a known range of the
        result (the schedule's stage range), else it follows from the operands'."""
        if sub:
            b = b.negated()
        if a.value is None or b.value is None:
            return b if a.value is None else a
        a, b = (self.keep(t) for t in self.align([a, b], 1))
        (alo, ahi), (blo, bhi) = a.real_range, b.real_range
        real = (alo + blo, ahi + bhi)
        if bound is not None:
            real = (max(real[0], bound[0]), min(real[1], bound[1]))
        # the operand with fewer known-zero low bits is `low`: its low bits pass through; on a tie prefer
        # a positive one, so the result is held negated only when both operands are
        if (b.tz, b.neg) < (a.tz, a.neg):
            a, b = b, a
        p = b.tz
        low, high = (a.value >> p, b.value >> p) if p else (a.value, b.value)
        total = low + high if a.neg == b.neg else low - high
        value = Cat(a.value[:p], total).as_signed() if p else total
        return _Term(value, *_held_range(real, a.neg), neg=a.neg, cycle=a.cycle,
                     depth=max(a.depth, b.depth) + 1, tz=a.tz)

    def shift(self, t: _Term, s: int) -> _Term:
        """``floor(t / 2^s)`` of a term held positive (an arithmetic shift: wiring)."""
        if t.value is None or s == 0:
            return t
        if t.neg:
            raise RuntimeError("shift of a negated term")
        t = self.keep(t)
        return replace(t, value=t.value >> s, lo=t.lo >> s, hi=t.hi >> s, tz=max(t.tz - s, 0))

    def positive(self, t: _Term) -> _Term:
        """``t`` held positive (a negation costs a subtractor from 0)."""
        if t.value is None or not t.neg:
            return t
        t = self.keep(self.at(t, self.earliest(t, 1), 1))
        return _Term(-t.value, *t.real_range, cycle=t.cycle, depth=t.depth + 1, tz=t.tz)

    def multiply(self, a: _Term, b: _Term, bound: tuple[int, int]) -> _Term:
        """``a * b`` of two runtime operands: one DSP product with registers on both sides.

        The DSPs sit in a few rows of the die, so a register right at each operand (placed next to the DSP)
        lets the long route from the adders take a cycle of its own. With ``cell`` a primitive the operands
        fit (:mod:`hw.dsp`), the product is that primitive with its input and output registers and a fabric
        register after it (:func:`hw.dsp.registered_product`): 4 registers from operands to a usable
        product. Otherwise (``inferred``, or operands too wide) yosys maps ``*`` and leaves the MULT18X18D's
        own registers unused: a register after the product and one more before any adder (k = 16 with a
        single register on each side: 89-126 MHz over three seeds), 3 registers."""
        if a.value is None or b.value is None:
            return _ZERO
        a, b = (self.register(t) for t in self.align([a, b], self.levels))
        neg = a.neg != b.neg
        held = _held_range(bound, neg)
        if fits(self.cell, a.value.shape(), b.value.shape()):
            width = signed_bits_for(*held)
            stages = product_stages(self.cell, a.value.shape(), b.value.shape())
            self._products += 1
            if self.m is None:
                value = Signal(signed(width))
            else:
                value = registered_product(self.m, a.value, b.value, en=self.enable_for(self.scope), cell=self.cell,
                                           width=width, name=f"{self.scope}_dsp{self._products}")
            return _Term(value, *held, neg=neg, cycle=a.cycle + stages)
        product = _Term(a.value * b.value, *held, neg=neg, cycle=a.cycle, depth=self.levels)
        return replace(self.register(product), depth=self.levels)


def _linear_range(coefs: dict[int, int], const: int, ranges: list[tuple[int, int]]) -> tuple[int, int]:
    """Exact range of ``const + sum_v coefs[v] * var_v`` with each ``var_v`` anywhere in ``ranges[v]``."""
    lo = hi = const
    for v, c in coefs.items():
        ends = (c * ranges[v][0], c * ranges[v][1])
        lo, hi = lo + min(ends), hi + max(ends)
    return lo, hi


def _rotate_part(pipe: _Pipeline, b: tuple[_Term, _Term], coefs: tuple[int, int], frac: int) -> _Term:
    """One component of a twiddle product, ``R_frac(coefs[0] b_re + coefs[1] b_im)``, exactly as the golden
    ``rot``: the exact sum of constant products, rounded half up once.

    The constants are written in canonical signed digits (:func:`hw.common.csd_digits`): each digit is a
    shifted copy of ``b_re`` or ``b_im`` and a balanced tree of carry-chain adders sums them, so no DSP is
    used. Equal magnitudes (the ``pi/4`` twiddles) share one pre-add: ``c (b_re +- b_im)``. The rounding
    bias ``2^(frac-1)`` is ORed into the known-zero low bits of a positive digit term with shift
    ``>= frac``; where only negative ones are long enough, the tree computes ``-v + 2^(frac-1) - 1`` and the
    result ``-((-v + 2^(frac-1) - 1) >> frac) = R_frac(v)`` is held negated. A product by ``+-2^frac`` is
    exact (``R_frac(v 2^frac) = v``) and costs nothing.
    """
    vars_ = [(t, c) for t, c in zip(b, coefs) if t.value is not None and c != 0]
    if not vars_:
        return _ZERO
    one = 1 << frac
    if len(vars_) == 1 and abs(vars_[0][1]) == one:
        t, c = vars_[0]
        return t if c > 0 else t.negated()
    if len(vars_) == 2 and abs(vars_[0][1]) == abs(vars_[1][1]):
        (t0, c0), (t1, c1) = vars_
        vars_ = [(pipe.add(t0, t1, sub=(c0 > 0) != (c1 > 0)), c0)]
    ranges = [t.real_range for t, _ in vars_]
    # digit terms: (term, {var: coefficient on its real value}, constant)
    terms = []
    for v, (t, c) in enumerate(vars_):
        for shift, d in csd_digits(c):
            held = t.value << shift
            terms.append([replace(t, value=held, lo=t.lo << shift, hi=t.hi << shift, neg=t.neg != (d < 0),
                                  tz=t.tz + shift), {v: d << shift}, 0])
    bias = 1 << (frac - 1)
    low_tz = min(t.tz for t, _, _ in terms)
    flip = not any(not t.neg and t.tz == low_tz for t, _, _ in terms)
    if flip:                                                  # compute -v + bias - 1, negate at the end
        for entry in terms:
            entry[0], entry[1] = entry[0].negated(), {v: -c for v, c in entry[1].items()}
        bias, need = bias - 1, frac - 1
    else:
        need = frac
    carrier = next((e for e in terms if not e[0].neg and e[0].tz >= need), None)
    if bias == 0:
        pass
    elif carrier is not None:
        t = carrier[0]
        carrier[0] = replace(t, value=t.value | bias, lo=t.lo + bias, hi=t.hi + bias,
                             tz=min(t.tz, (bias & -bias).bit_length() - 1))
        carrier[2] = bias
    else:                                                     # no room: one more adder for the constant
        const = Const(bias, signed(bias.bit_length() + 1))
        terms.append([_Term(const, bias, bias, cycle=max(t.cycle for t, _, _ in terms),
                            tz=(bias & -bias).bit_length() - 1), {}, bias])
    # balanced tree over the terms in order of their known-zero low bits (positive first on a tie)
    terms.sort(key=lambda e: (e[0].tz, e[0].neg))
    while len(terms) > 1:
        nxt = []
        for n in range(0, len(terms) - 1, 2):
            (ta, ca, ka), (tb, cb, kb) = terms[n], terms[n + 1]
            coefs_ = {v: ca.get(v, 0) + cb.get(v, 0) for v in set(ca) | set(cb)}
            nxt.append([pipe.add(ta, tb, bound=_linear_range(coefs_, ka + kb, ranges)), coefs_, ka + kb])
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    total = terms[0][0]
    if total.neg:                                             # (not reached: the lowest term is positive)
        total = pipe.positive(total)
    out = pipe.shift(total, frac)
    return out.negated() if flip else out


class _ParallelDatapath:
    """Every butterfly of both transforms, the products and the accumulators of the ``"parallel"``
    architecture, scheduled by a :class:`_Pipeline` (see the module docstring).

    Built on demand from the outputs backwards, so a value no output needs (butterflies feeding only bins
    ``k/2+1 .. k-1``, imaginary parts of the last inverse stage) is never built. ``m = None`` only
    schedules: :attr:`latency` without hardware. ``en`` is ``skid.en``, the registered enable of the PE's
    :class:`hw.common.SkidOutput` (required with a module: the accumulators' controls are registered on it).
    """

    def __init__(self, fmt: CirculantFormat, m: Module | None, en: Value, *, x: list[Value] | None = None,
                 w: list[tuple[Value, Value]] | None = None, valid: Value | None = None,
                 last: Value | None = None, dsp_bits: int = DEFAULT_DSP_BITS, dsp_cell: str = TARGET,
                 tree_levels: int = TREE_LEVELS_PER_STAGE, skid: SkidOutput | None = None):
        self.fmt, self.m, self.dsp_bits = fmt, m, dsp_bits
        k, L, half = fmt.block, fmt.stages, fmt.block // 2
        self.tw = [(int(re), int(im)) for re, im in fmt.twiddles]
        self.order = [int(i) for i in bit_reverse(k)]
        self.pipe = pipe = _Pipeline(m, en, tree_levels, cell=dsp_cell)
        if skid is not None:
            # one replica of the enable per region (transform stage, products, accumulators, outputs): nets of
            # 1-2k clock enables instead of one of 17k (k = 16)
            regions: dict[str, Value] = {}

            def enable_for(scope: str) -> Value:
                region = _region(scope)
                if region not in regions:
                    regions[region] = skid.replica()
                return regions[region]
            pipe.enable_for = enable_for
        if x is None:
            x = [Signal(signed(fmt.act_bits + 1)) for _ in range(k)]
            w = [(Signal(signed(fmt.w_bits)), Signal(signed(fmt.w_bits))) for _ in range(half + 1)]
        a_lo, a_hi = fmt.act_range
        g = fmt.guard_bits
        self.x = [_Term(x[n] << g, a_lo << g, a_hi << g, tz=g) for n in range(k)]
        self.w = [tuple(_Term(part, *fmt.w_range) for part in pair) for pair in w]
        self._fwd, self._diff, self._inv, self._rot = {}, {}, {}, {}
        self.out_bias = self.output_bias()

        # 2.-3. spectrum and exact complex products
        products = []
        for b in range(half + 1):
            x_re = self.fwd(L, self.order[b], 0)
            x_im = _ZERO if b in (0, half) else self.fwd(L, self.order[b], 1)
            pipe.scope = f"prod{b}"
            products.append(self.product(b, x_re, x_im))
        # 4. accumulators, all in one cycle
        flat = [pipe.positive(t) for pair in products for t in pair]
        flat = pipe.align(flat, 1)
        self.acc_cycle = next(t.cycle for t in flat if t.value is not None)
        clear = update = None
        if m is not None:
            # the accumulators' synchronous clear and clock enable, `en & last` and `en & valid`, reach every
            # accumulator bit (18 x 26 at k = 16): with a registered enable (SkidOutput) they are registers
            # of their own, a cycle ahead, instead of a gate on that fan-out
            valid_pre = delay(m, valid, self.acc_cycle - 1, en=en, name="acc_valid", reset_less=False)
            last_pre = delay(m, last, self.acc_cycle - 1, en=en, name="acc_last", reset_less=False)
            valid = register(m, valid_pre, en=en, name=f"acc_valid_d{self.acc_cycle}", reset_less=False)
            last = register(m, last_pre, en=en, name=f"acc_last_d{self.acc_cycle}", reset_less=False)
            # acc_clear is 1 in reset: the accumulators start from their clear value without a reset of their
            # own (their synchronous reset input is the clear alone, not ORed with the reset on that fan-out)
            clear = skid.ahead(last_pre, stalled=last, name="acc_clear", init=1)
            update = skid.ahead(valid_pre, stalled=valid, name="acc_update")
        sums = [self.accumulate(t, n // 2, "re" if n % 2 == 0 else "im", clear, update)
                for n, t in enumerate(flat)]
        acc = [(sums[2 * b], sums[2 * b + 1]) for b in range(half + 1)]
        # 5. inverse: Hermitian extension in bit-reversed order
        ext = acc + [(acc[k - b][0], acc[k - b][1].negated()) for b in range(half + 1, k)]
        self.ifft_in = [ext[self.order[i]] for i in range(k)]
        outs = []
        for n in range(k):
            pipe.scope = f"y{n}"
            outs.append(pipe.positive(self.inv(L, n, 0)))
        self.y = [pipe.shift(t, L) for t in pipe.align(outs)]
        self.out_cycle = self.y[0].cycle
        self.valid = None
        if m is not None:
            self.valid = delay(m, register(m, last, en=en, name="sum_valid", reset_less=False),
                               self.out_cycle - self.acc_cycle - 1, en=en, name="ifft_valid", reset_less=False)

    @property
    def latency(self) -> int:
        """Cycles from ``i`` to ``o``: the output register follows the last datapath cycle."""
        return self.out_cycle + 1

    def output_bias(self) -> int:
        """``2^(L-1)``, the bias of the output rounding ``R_L``: it enters ``re V[0]`` through the
        accumulator's clear value and reaches every output of the inverse DIT unrotated (position 0 is
        always a top input), so the output register takes ``v_L >> L``."""
        return 1 << (self.fmt.stages - 1)

    # -- forward FFT (DIF): u_s[top] = a + c, u_s[bottom] = rot(a - c, tw[j 2^(s-1)]) ----------------------
    def fwd(self, s: int, n: int, part: int) -> _Term:
        if s == 0:
            return self.x[n] if part == 0 else _ZERO
        key = (s, n, part)
        if key not in self._fwd:
            size = self.fmt.block >> (s - 1)
            j = n % size
            if j < size // 2:
                self.pipe.scope = f"fft{s}_{n}"
                self._fwd[key] = self.pipe.add(self.fwd(s - 1, n, part), self.fwd(s - 1, n + size // 2, part),
                                               bound=self.fmt.fft_range(s))
            else:
                tr, ti = self.tw[(j - size // 2) << (s - 1)]
                coefs = (tr, -ti) if part == 0 else (ti, tr)
                b = tuple(self.diff(s, n, p) if c else _ZERO for p, c in enumerate(coefs))
                self.pipe.scope = f"fft{s}_{n}_{'re' if part == 0 else 'im'}"
                self._fwd[key] = _rotate_part(self.pipe, b, coefs, self.fmt.tw_frac)
        return self._fwd[key]

    def diff(self, s: int, n: int, part: int) -> _Term:
        key = (s, n, part)
        if key not in self._diff:
            half_size = (self.fmt.block >> (s - 1)) // 2
            self.pipe.scope = f"fft{s}_{n}_d"
            self._diff[key] = self.pipe.add(self.fwd(s - 1, n - half_size, part), self.fwd(s - 1, n, part),
                                            sub=True, bound=self.fmt.fft_range(s))
        return self._diff[key]

    # -- exact complex product X * W --------------------------------------------------------------------
    def product(self, b: int, x_re: _Term, x_im: _Term) -> tuple[_Term, _Term]:
        """``(re, im)`` of ``X[b] W[b]``, exact. Bins 0 and k/2 are real (one DSP); the others use three DSPs
        (Gauss: ``k1 = W_re (X_re + X_im)``, ``k2 = X_re (W_im - W_re)``, ``k3 = X_im (W_re + W_im)``,
        ``re = k1 - k3``, ``im = k1 + k2``) when every operand fits a ``dsp_bits`` multiplier, else four."""
        fmt, pipe = self.fmt, self.pipe
        bound = fmt.product_range
        w_re, w_im = self.w[b]
        if x_im.value is None:
            return pipe.multiply(x_re, w_re, bound), _ZERO
        if max(fmt.fft_bits(fmt.stages), fmt.w_bits) + 1 > self.dsp_bits:
            re = pipe.add(pipe.multiply(x_re, w_re, bound), pipe.multiply(x_im, w_im, bound), sub=True,
                          bound=bound)
            im = pipe.add(pipe.multiply(x_re, w_im, bound), pipe.multiply(x_im, w_re, bound), bound=bound)
            return re, im
        x_sum = pipe.add(x_re, x_im)
        # the weight pre-adds are registered with the spectrum's (the delay line carries w_re and w_im only)
        cycle = max(x_sum.cycle if x_sum.depth else x_sum.cycle - 1, 0)
        w_re, w_im = pipe.at(w_re, cycle, 1), pipe.at(w_im, cycle, 1)
        w_diff, w_sum = pipe.add(w_im, w_re, sub=True), pipe.add(w_re, w_im)
        k1 = pipe.multiply(w_re, x_sum, _mul_range(w_re, x_sum))
        k2 = pipe.multiply(x_re, w_diff, _mul_range(x_re, w_diff))
        k3 = pipe.multiply(x_im, w_sum, _mul_range(x_im, w_sum))
        return pipe.add(k1, k3, sub=True, bound=bound), pipe.add(k1, k2, bound=bound)

    # -- accumulation: acc += R_sp(P) = (P >> sp) + P[sp-1], the rounding as the adder's carry-in ---------
    def accumulate(self, t: _Term, b: int, part: str, clear, update) -> _Term:
        fmt, pipe = self.fmt, self.pipe
        if t.value is None:
            return _ZERO
        bias = self.out_bias if (b, part) == (0, "re") else 0
        lo, hi = fmt.acc_range()
        lo, hi = lo + bias, hi + bias
        pipe.scope = f"acc{b}_{part}"
        t = pipe.keep(t)
        sp = fmt.prod_shift
        held = Signal(signed(signed_bits_for(lo, hi)), name=f"acc{b}_{part}", init=bias, reset_less=True)
        total = Signal(signed(signed_bits_for(lo, hi)), name=f"acc{b}_{part}_next")
        if self.m is not None:
            self.m.d.comb += total.eq(add_with_carry(held, t.value >> sp, t.value[sp - 1]) if sp
                                      else held + t.value)
            # clear in its own branch: the flip-flops' synchronous set/reset (hw.common.accumulate_and_emit)
            with self.m.If(clear):
                self.m.d.sync += held.eq(bias)
            with self.m.Elif(update):
                self.m.d.sync += held.eq(total)
        return pipe.register(_Term(total, lo, hi, cycle=t.cycle, depth=1))

    # -- inverse FFT (DIT): t = rot(v[bottom], conj tw[j k / 2^s]); v_s = a + t, a - t ---------------------
    def inv(self, s: int, n: int, part: int) -> _Term:
        if s == 0:
            return self.ifft_in[n][part]
        key = (s, n, part)
        if key not in self._inv:
            size = 1 << s
            j = n % size
            top = n if j < size // 2 else n - size // 2
            bound = self.fmt.ifft_range(s)
            bound = (bound[0], bound[1] + self.out_bias)
            self.pipe.scope = f"ifft{s}_{n}"
            self._inv[key] = self.pipe.add(self.inv(s - 1, top, part), self.rot(s, top + size // 2, part),
                                           sub=j >= size // 2, bound=bound)
        return self._inv[key]

    def rot(self, s: int, n: int, part: int) -> _Term:
        key = (s, n, part)
        if key not in self._rot:
            size = 1 << s
            tr, ti = self.tw[(n % size - size // 2) * (self.fmt.block // size)]
            ti = -ti                                          # conj(tw)
            coefs = (tr, -ti) if part == 0 else (ti, tr)
            b = tuple(self.inv(s - 1, n, p) if c else _ZERO for p, c in enumerate(coefs))
            self.pipe.scope = f"ifft{s}_{n}_t{'re' if part == 0 else 'im'}"
            self._rot[key] = _rotate_part(self.pipe, b, coefs, self.fmt.tw_frac)
        return self._rot[key]


def _region(scope: str) -> str:
    """The region of a datapath scope for its enable replica: ``fft<stage>``, ``ifft<stage>``, ``prod``, ``acc``,
    ``y`` or ``dp``."""
    match = re.match(r"(i?fft\d+|[a-z]+)", scope)
    return match.group(1) if match else scope


def _mul_range(a: _Term, b: _Term) -> tuple[int, int]:
    ends = [x * y for x in a.real_range for y in b.real_range]
    return min(ends), max(ends)


class CirculantFFT(wiring.Component):
    """The ``circulant-fft`` PE (see the module docstring).

    Members
    -------
    i : ``In(params.i_signature)``
        ``stream.Signature(params.input_layout)``: one input block ``x_j`` and its spectrum ``W_ij`` per
        beat; ``last`` on ``j = q - 1``.
    o : ``Out(params.o_signature)``
        ``stream.Signature(params.output_layout)``: ``y_i`` (field ``y``, k lanes),
        :attr:`CirculantParams.latency` cycles after the ``last`` beat is accepted.
    params : CirculantParams
        The parameters it was built from (read-only).

    Raises
    ------
    TypeError
        ``"CirculantFFT params must be CirculantParams, not ..."``.
    """

    def __init__(self, params: CirculantParams):
        if not isinstance(params, CirculantParams):
            raise TypeError(f"CirculantFFT params must be CirculantParams, not {params!r}")
        self._params = params
        super().__init__({"i": In(params.i_signature), "o": Out(params.o_signature)})

    @property
    def params(self) -> CirculantParams:
        """The parameters this PE was built from."""
        return self._params

    def elaborate(self, platform):
        if self._params.arch == "streaming":
            from .circulant_stream import elaborate_streaming
            return elaborate_streaming(self)
        return self._elaborate_parallel()

    #: the parallel datapath (a subclass hook for tests/mutants.py)
    _datapath = _ParallelDatapath

    def _elaborate_parallel(self):
        p, fmt = self._params, self._params.fmt
        m = Module()
        # a registered enable (hw.common.SkidOutput): this PE's enable reaches every one of its registers
        out = SkidOutput(m, self.o)
        en = out.en
        m.d.comb += self.i.ready.eq(en)
        accept = self.i.valid & en
        payload = self.i.payload
        # `last` travels as "valid and last"; both reset, the datapath does not
        dp = self._datapath(fmt, m, en, x=[payload.x[n] for n in range(fmt.block)],
                               w=[(payload.w[b].re, payload.w[b].im) for b in range(fmt.bins)],
                               valid=accept, last=accept & payload.last, dsp_bits=p.dsp_bits,
                               dsp_cell=p.dsp_cell, tree_levels=p.tree_levels, skid=out)
        if dp.latency != p.latency:
            raise RuntimeError(f"parallel datapath latency {dp.latency} differs from params.latency {p.latency}")
        # 6. output register: y[n] = R_L(re v_L[n]) (the bias is already in)
        y = out.payload
        with m.If(en):
            m.d.sync += out.valid.eq(dp.valid)
            m.d.sync += [y.y[n].eq(t.value) for n, t in enumerate(dp.y)]
        return m
