"""``sp2-mac``: a dot-product PE whose weights are sum-of-power-of-2 (SP2) codes.

Each weight is ``v = (-1)^sign * (t(e1) + t(e2))`` with ``t(e) = 2^(E - e)`` (0 when ``e = 0``), so a
lane needs no multiplier: selections of the activation shifted by constant amounts and one adder. The
sign is folded into the accumulation: a negative lane contributes the one's complement of its magnitude,
and its +1 enters the adder tree (or the accumulator) as a carry-in, so negation costs no adder.
Mix and Match (Chang et al., HPCA 2021), Section III; the exact code layout is in ``sw/sp2.py``.

How a lane maps to LUT4s (yosys/ABC collapse every cone between flip-flops and carry chains into one
LUT level, so what counts is how many inputs each adder operand bit and each bit after the adder sees):

- small formats (``m1 + m2 <= 3`` with ``m2 >= 1``, e.g. the 4-bit default) use a *split plan*
  (:func:`_split_plan`): ``|v| = (x + y) << d`` where each operand ``x``, ``y`` picks among at most two
  shifts of the activation with at most two code bits (one LUT4 per operand bit) and ``d`` is one code
  bit; the bit after the adder is ``sign ^ (d ? s[j-1] : s[j])``, again one LUT4, so shift, doubling and
  sign fold cost 3 LUT4s per bit plus the adder (the plain ``t1 + t2`` split costs 4: its ``t1`` bits
  are 5-input functions). Measured on ECP5-85F, 1 lane of ``SP2Format(4, 2)`` x 8-bit: 86 -> 80
  TRELLIS_COMB; 16 lanes: 1100 -> 994.
- other formats select ``t1`` and ``t2`` (a mux per output bit) and add them, then fold the sign.

Either way the lane value is as wide as ``+-|a * v|`` needs in one's complement (one bit less than the
two's-complement negation would need).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field

from amaranth import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.hdl import Shape

from ..sw.intops import signed_bits_for
from ..sw.params import Params
from ..sw.sp2 import SP2Format

from .common import TREE_LEVELS_PER_STAGE
from .dot import ACT_BITS, ACT_SIGNED, LANES, MAX_LEN, TREE_LEVELS, DotParams, DotProductPE

__all__ = ["SP2MacParams", "SP2Mac"]


@dataclass(frozen=True)
class SP2MacParams(DotParams, Params):
    """Parameters of :class:`SP2Mac` (one source of truth for golden, RTL, testbench and synthesis).

    Raises
    ------
    TypeError, ValueError
        ``"<Parameter> must be ..., not <value>"`` for any out-of-range field, or when ``max_len``
        would need an accumulator wider than 62 bits.
    """

    lanes: int = LANES.field(8)
    act_bits: int = ACT_BITS.field(8)
    act_signed: bool = ACT_SIGNED.field(True)
    fmt: SP2Format = field(default_factory=SP2Format, metadata={"doc": "SP2 weight code format"})
    max_len: int = MAX_LEN.field(4096)
    tree_levels: int = TREE_LEVELS.field(TREE_LEVELS_PER_STAGE)

    weight_field = "codes"

    def __post_init__(self):
        self.check_fields()
        if not isinstance(self.fmt, SP2Format):
            raise TypeError(f"SP2 format (fmt) must be an SP2Format, not {self.fmt!r}")
        self._check_acc()

    @property
    def weight_bits(self) -> int:
        return self.fmt.bits

    @property
    def weight_shape(self) -> Shape:
        return unsigned(self.fmt.bits)

    @property
    def weight_range(self) -> tuple[int, int]:
        return -self.fmt.max_level, self.fmt.max_level


@dataclass(frozen=True)
class _SplitPlan:
    """``|v| = (act * x + act * y) << d`` for every code's magnitude bits ``c`` (sign excluded).

    ``x_table[i]`` is the multiplier of operand x where ``i`` packs the code bits ``x_bits`` (LSB first),
    likewise y; every multiplier is 0 or a power of two, at most two distinct non-zero ones per operand.
    ``d = c[d_bit] ^ d_inv`` (``d_bit`` None: never doubled).
    """

    d_bit: int | None
    d_inv: int
    x_bits: tuple[int, ...]
    x_table: tuple[int, ...]
    y_bits: tuple[int, ...]
    y_table: tuple[int, ...]


def _low_shift(table: tuple[int, ...]) -> int | None:
    shifts = [k.bit_length() - 1 for k in table if k]
    return min(shifts) if shifts else None


@functools.lru_cache(maxsize=None)
def _split_plan(fmt: SP2Format) -> _SplitPlan | None:
    """A :class:`_SplitPlan` for ``fmt``, or None (formats with more than 3 magnitude bits, or m2 = 0).

    Exhaustive over doubling bits, operand code-bit pairs and tables (fast for 3 magnitude bits).
    Preferred: plans where, whenever ``d`` is set, the operand reaching below the adder's first bit is 0
    there, so the bit after the adder at that position needs no extra inputs.
    """
    nb = fmt.m1 + fmt.m2
    if fmt.m2 == 0 or nb > 3:
        return None
    mags = [abs(int(fmt.table[c])) for c in range(1 << nb)]
    multipliers = [0] + [1 << s for s in range(fmt.E + 2)]
    subsets = [()] + [(b,) for b in range(nb)] + list(itertools.combinations(range(nb), 2))

    def index(c, bits):
        return sum(((c >> b) & 1) << i for i, b in enumerate(bits))

    plans = []
    for d_bit, d_inv in [(None, 0)] + [(b, inv) for b in range(nb) for inv in (0, 1)]:
        d = [0 if d_bit is None else ((c >> d_bit) & 1) ^ d_inv for c in range(1 << nb)]
        if any(mags[c] % (1 << d[c]) for c in range(1 << nb)):
            continue
        need = [mags[c] >> d[c] for c in range(1 << nb)]
        for x_bits in subsets:
            for x_table in itertools.product(multipliers, repeat=1 << len(x_bits)):
                if len({k for k in x_table if k}) > 2:
                    continue
                for y_bits in subsets:
                    y_table = {}
                    for c in range(1 << nb):
                        y = need[c] - x_table[index(c, x_bits)]
                        if y not in multipliers or y_table.setdefault(index(c, y_bits), y) != y:
                            break
                    else:
                        y_table = tuple(y_table.get(i, 0) for i in range(1 << len(y_bits)))
                        if len({k for k in y_table if k}) <= 2:
                            plans.append(_SplitPlan(d_bit, d_inv, x_bits, x_table, y_bits, y_table))

    def low_bits_clear(plan):
        x_lo, y_lo = _low_shift(plan.x_table), _low_shift(plan.y_table)
        if x_lo is None or y_lo is None or plan.d_bit is None:
            return True
        start = max(x_lo, y_lo)
        bits, table = (plan.x_bits, plan.x_table) if x_lo < start else (plan.y_bits, plan.y_table)
        for c in range(1 << nb):
            k = table[index(c, bits)]
            if ((c >> plan.d_bit) & 1) ^ plan.d_inv and k and k.bit_length() - 1 < start:
                return False
        return True

    plans.sort(key=lambda plan: (not low_bits_clear(plan), plan.d_bit is not None))
    return plans[0] if plans else None


class SP2Mac(DotProductPE):
    """SP2 dot-product PE; see :mod:`hw.dot` for the stream interface and pipeline.

    Members
    -------
    i : ``In(params.i_signature)``
        ``acts``, ``codes`` (``lanes`` SP2 codes of ``fmt.bits``), ``last``.
    o : ``Out(params.o_signature)``
        ``y``, the signed ``acc_bits`` dot product.
    """

    def __init__(self, params: SP2MacParams):
        if not isinstance(params, SP2MacParams):
            raise TypeError(f"SP2Mac params must be SP2MacParams, not {params!r}")
        super().__init__(params)

    def _lane_width(self) -> int:
        """Bits of a lane value: ``a * |v|`` and its one's complement ``-a * |v| - 1`` both fit."""
        lo_a, hi_a = self.params.act_range
        corners = [a * k for a in (lo_a, hi_a) for k in (0, self.params.fmt.max_level)]
        lo, hi = min(corners), max(corners)
        return signed_bits_for(min(lo, -hi - 1), max(hi, -lo - 1))

    def _term(self, m: Module, act: Value, sel: Value, table, width: int, lane: int, which: str) -> Signal:
        """``act * table[sel]`` (each entry 0 or a power of two), mod 2^width: a selection of constant shifts."""
        term = Signal(signed(width), name=f"lane{lane}_{which}")
        with m.Switch(sel):
            for index, k in enumerate(table):
                if k:
                    with m.Case(index):
                        m.d.comb += term.eq(act << (k.bit_length() - 1))
            with m.Default():
                m.d.comb += term.eq(0)
        return term

    def lane_product(self, m, act, code, lane):
        fmt = self.params.fmt
        width = self._lane_width()
        sign = code[-1]
        plan = _split_plan(fmt)
        if plan is None:
            E = fmt.E
            def t(e):
                return 0 if e == 0 else 1 << (E - e)
            e1 = code[fmt.m2:fmt.m2 + fmt.m1]
            magnitude = self._term(m, act, e1, [t(e) for e in range(1 << fmt.m1)], width, lane, "t1")
            if fmt.m2:
                t2 = self._term(m, act, code[:fmt.m2], [t(e) for e in range(1 << fmt.m2)], width, lane, "t2")
                magnitude = magnitude + t2
        else:
            x = self._term(m, act, Cat(*(code[b] for b in plan.x_bits)), plan.x_table, width, lane, "x")
            y = self._term(m, act, Cat(*(code[b] for b in plan.y_bits)), plan.y_table, width, lane, "y")
            # Below the higher of the two lowest shifts only one operand is non-zero: no adder bits there.
            start = min(max(_low_shift(plan.x_table) or 0, _low_shift(plan.y_table) or 0), width)
            total = Signal(signed(width), name=f"lane{lane}_sum")
            m.d.comb += total.eq(Cat((x | y)[:start], x[start:] + y[start:]))
            magnitude = total
            if plan.d_bit is not None:
                double = code[plan.d_bit] ^ plan.d_inv if plan.d_inv else code[plan.d_bit]
                magnitude = Mux(double, total << 1, total)
        # Everything above is exact mod 2^width, and the folded value fits width bits.
        folded = Signal(signed(width), name=f"lane{lane}_folded")
        m.d.comb += folded.eq(Mux(sign, ~magnitude, magnitude))  # -x == ~x + 1: the +1 is `sign`
        return folded, sign
