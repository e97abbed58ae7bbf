"""``sp2-mac``: a dot-product PE whose weights are sum-of-power-of-2 (SP2) codes.

Each weight is ``v = (-1)^sign * (t(e1) + t(e2))`` with ``t(e) = 2^(E - e)`` (0 when ``e = 0``), so a
lane needs no multiplier: two selections of the activation shifted by a constant amount (a mux tree
per output bit, since the shift takes only 2^m1 values) and one adder. The sign is folded into the
accumulation: a negative lane contributes the one's complement of its magnitude, and its +1 enters
the adder tree (or the accumulator) as a carry-in, so negation costs no adder. Mix and Match (Chang et al.,
HPCA 2021), Section III; the exact code layout is in ``sw/sp2.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth import Module, Mux, Signal, Value, signed, unsigned
from amaranth.hdl import Shape

from sw.intops import max_abs, signed_bits_for
from sw.params import Params
from sw.sp2 import SP2Format

from .dot import DotParams, DotProductPE

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

    lanes: int = field(default=8, metadata={"doc": "elements per beat (MACs per cycle)"})
    act_bits: int = field(default=8, metadata={"doc": "activation width"})
    act_signed: bool = field(default=True, metadata={"doc": "activations are two's complement"})
    fmt: SP2Format = field(default_factory=SP2Format, metadata={"doc": "SP2 weight code format"})
    max_len: int = field(default=4096, metadata={"doc": "longest vector (elements); sizes the accumulator"})

    weight_field = "codes"

    def __post_init__(self):
        self._check_common()
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


class SP2Mac(DotProductPE):
    """SP2 dot-product PE; see :mod:`hw.dot` for the stream interface and pipeline."""

    def __init__(self, params: SP2MacParams):
        if not isinstance(params, SP2MacParams):
            raise TypeError(f"SP2Mac params must be SP2MacParams, not {params!r}")
        super().__init__(params)

    def _term(self, m: Module, act: Value, e: Value, width: int, lane: int, which: str) -> Signal:
        """``act << (E - e)``, or 0 when ``e == 0``: a 2^len(e)-way selection of constant shifts."""
        E = self.params.fmt.E
        term = Signal(signed(width), name=f"lane{lane}_{which}")
        with m.Switch(e):
            for code in range(1, 1 << len(e)):
                with m.Case(code):
                    m.d.comb += term.eq(act << (E - code))
            with m.Default():
                m.d.comb += term.eq(0)
        return term

    def lane_product(self, m, act, code, lane):
        fmt = self.params.fmt
        peak = max_abs(self.params.act_bits, self.params.act_signed) * fmt.max_level
        width = signed_bits_for(-peak, peak)  # holds the magnitude and its negation
        sign = code[-1]
        e1 = code[fmt.m2:fmt.m2 + fmt.m1]
        magnitude = self._term(m, act, e1, width, lane, "t1")
        if fmt.m2:
            magnitude = magnitude + self._term(m, act, code[:fmt.m2], width, lane, "t2")
        folded = Signal(signed(width), name=f"lane{lane}_folded")
        m.d.comb += folded.eq(Mux(sign, ~magnitude, magnitude))  # -x == ~x + 1: the +1 is `sign`
        return folded, sign
