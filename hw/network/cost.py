"""The cost model of an engine: what a plan predicts it needs in DSPs and memory bits, in one place.

The default folding reads it (:mod:`hw.network.search`: the cheapest folding within a target interval, and one
that fits a device's :class:`hw.network.folding.Budget`), ``peforge compile --target`` refuses what it predicts
cannot fit, and explore's estimator builds on it. Synthesis measures the real numbers; the tests compare.
"""

from __future__ import annotations

from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["dsps", "weight_bits", "folding_cost"]


def _pieces(a_bits: int, b_bits: int, dsp_bits: int) -> int:
    """DSP multipliers of ``dsp_bits``-bit operands one ``a_bits x b_bits`` product takes."""
    return -(-a_bits // dsp_bits) * -(-b_bits // dsp_bits)


def dsps(plan, dsp_bits: int) -> int:
    """Predicted DSP multipliers of ``dsp_bits``-bit operands: one per multiplier lane of the fixed-point
    and N:M slots (more if a product is wider), and the requantiser's ``acc x M`` when ``requant`` is 1.
    SP2 slots shift; circulant and crossbar slots are not counted. Synthesis measures the real number."""
    layer = plan.layer
    act = layer.in_bits + (0 if layer.in_signed else 1)
    total = sum(getattr(s.params, "lanes", 0) * _pieces(act, s.params.w_bits, dsp_bits)
                for s in plan.engine.dsp_slots(plan))
    if plan.folding.requant == 1:
        m_bits = max(1, int(layer.multiplier.max()).bit_length()) + 1
        total += _pieces(plan.acc_shape.width, m_bits, dsp_bits)
    return total


def weight_bits(plan) -> int:
    """Bits of the engine's weight memories (one word per row group and beat per slot; crossbar cells sit in the
    arrays, not counted)."""
    total = 0
    for slot in plan.slots:
        layout = slot.params.input_layout
        total += plan.groups * plan.beats * sum(layout[f].shape.size if isinstance(layout[f].shape, data.Layout)
                                                else Shape.cast(layout[f].shape).width
                                                for f in plan.engine.weight_fields(slot))
    return total


def folding_cost(plan) -> int:
    """Rough hardware cost of a folding, to rank the foldings of one layer: a multiplier lane each, and a slot's
    own accumulator, output register, weight memory and collector entry about as much as one more lane."""
    return plan.multipliers + len(plan.slots)
