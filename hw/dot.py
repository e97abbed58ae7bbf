"""The dot-product PE skeleton shared by ``sp2-mac`` and ``fixed-mac``.

A dot-product PE streams vectors of length K <= ``max_len``, ``lanes`` elements per beat, ``last``
on the final beat, and emits ``y = sum_k a_k * v(w_k)`` once the ``last`` beat is accepted. The two
PEs differ only in how one lane forms ``a * v(w)``; everything else lives here once:

``i`` payload (LSB first): ``acts`` (lanes x act_bits) | ``<weights>`` (lanes x weight bits) | ``last``
``o`` payload: ``y``, the signed accumulator (``acc_bits``), a one-field ``data.StructLayout``
(:attr:`DotParams.output_layout`; the same bits as a bare ``signed(acc_bits)``).

Pipeline (all stages advance on ``en = ~o.valid | o.ready``, see :mod:`hw.common`)::

    i.payload -> [operand_stages regs] -> lane products -> [product_stages regs] -> adder tree
              -> [tree_stages regs] -> accumulator (+ output register)

so the result of a vector is valid ``latency`` cycles after its ``last`` beat is accepted.
"""

from __future__ import annotations

from amaranth import Module, Signal, Value, signed, unsigned
from amaranth.hdl import Shape
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..sw.intops import int_range, signed_bits_for
from ..sw.params import Spec

from .common import (TREE_LEVELS, StreamParams, accumulate_and_emit, adder_tree, delay, multiply, register,
                     tree_stages)
from .dsp import DSP_CELL, product_stages, registered_product

__all__ = ["DotParams", "FixedPointWeights", "DotProductPE", "MAX_ACC_BITS",
           "LANES", "ACT_BITS", "ACT_SIGNED", "MAX_LEN", "DSP", "DSP_CELL", "TREE_LEVELS"]

#: Widest accumulator allowed, so every result fits the int64 golden model and numpy arrays.
MAX_ACC_BITS = 62

# The parameters every dot-product PE shares, declared once (``lanes: int = LANES.field(8)``).
LANES = Spec("Lanes", "elements per beat (MACs per cycle)", min=1, max=256)
ACT_BITS = Spec("Activation bits (act_bits)", "activation width", min=1, max=32)
ACT_SIGNED = Spec("Signed activations (act_signed)", "activations are two's complement", kind=bool)
MAX_LEN = Spec("Maximum vector length (max_len)", "longest vector (elements); sizes the accumulator",
               min=1, max=1 << 24)
DSP = Spec("DSP use (dsp)", "allow DSP multipliers (false: LUT partial products)", kind=bool)


class DotParams(StreamParams):
    """Derived values shared by the dot-product Params dataclasses.

    A subclass is a frozen dataclass (and :class:`sw.params.Params`) with fields ``lanes``,
    ``act_bits``, ``act_signed``, ``max_len``, ``tree_levels`` (declared with :data:`LANES`, :data:`ACT_BITS`,
    :data:`ACT_SIGNED`, :data:`MAX_LEN`, :data:`TREE_LEVELS`, checked by ``check_fields``) and its weight format, and provides
    :attr:`weight_bits`, :attr:`weight_shape` and :attr:`weight_range`.

    Members
    -------
    input_layout, output_layout : data.StructLayout
        The ``i`` and ``o`` payloads (see the module docstring).
    i_signature, o_signature : stream.Signature
        Their stream signatures (:class:`hw.common.StreamParams`).
    """

    weight_field: str = "weights"

    def _check_acc(self) -> None:
        if self.acc_bits > MAX_ACC_BITS:
            raise ValueError(
                f"Accumulator width must be at most {MAX_ACC_BITS} bits, not {self.acc_bits} "
                f"(from max_len={self.max_len}, act_bits={self.act_bits}, "
                f"weights up to {max(map(abs, self.weight_range))}); lower max_len or a bit width")

    # -- shapes --------------------------------------------------------------------------------
    @property
    def act_range(self) -> tuple[int, int]:
        return int_range(self.act_bits, self.act_signed)

    @property
    def act_shape(self) -> Shape:
        return signed(self.act_bits) if self.act_signed else unsigned(self.act_bits)

    @property
    def product_range(self) -> tuple[int, int]:
        """Smallest and largest value of one product ``a * v(w)``."""
        corners = [a * w for a in self.act_range for w in self.weight_range]
        return min(corners), max(corners)

    @property
    def acc_range(self) -> tuple[int, int]:
        lo, hi = self.product_range
        return lo * self.max_len, hi * self.max_len

    @property
    def acc_bits(self) -> int:
        """Accumulator width: every sum of ``max_len`` products fits, so results are exact."""
        return signed_bits_for(*self.acc_range)

    # -- pipeline ------------------------------------------------------------------------------
    operand_stages = 0  # registers between operand selection and the lane products (nm-sparse: 1)
    product_stages = 1  # the register after the lane products

    @property
    def latency(self) -> int:
        """Register stages from ``i`` to ``o``: the result of a ``last`` beat accepted in cycle c is
        valid in cycle c + latency (without output stalls)."""
        return self.operand_stages + self.product_stages + tree_stages(self.lanes, self.tree_levels) + 1

    @property
    def macs_per_cycle(self) -> int:
        return self.lanes

    # -- stream layouts ------------------------------------------------------------------------
    @property
    def input_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "acts": data.ArrayLayout(self.act_shape, self.lanes),
            self.weight_field: data.ArrayLayout(self.weight_shape, self.lanes),
            "last": unsigned(1),
        })

    @property
    def output_shape(self) -> Shape:
        """Shape of the result ``y``: ``signed(acc_bits)``."""
        return signed(self.acc_bits)

    @property
    def output_layout(self) -> data.StructLayout:
        """``o`` payload: ``y``, the signed ``acc_bits`` result (the only field, at the LSBs)."""
        return data.StructLayout({"y": self.output_shape})


class FixedPointWeights:
    """Params mixin for signed ``w_bits`` weights multiplied as they are (fixed-mac, nm-sparse), by DSPs
    (``dsp``, through the target's primitive ``dsp_cell`` when it has one) or LUT partial products."""

    @property
    def product_stages(self) -> int:
        """Registers from a lane's operands to its product: the DSP primitive's input and output registers
        (2) when ``dsp_cell`` names one that the operands fit (:func:`hw.dsp.product_stages`), else 1."""
        if not self.dsp:
            return 1
        return product_stages(self.dsp_cell, self.act_shape, self.weight_shape)

    @property
    def weight_bits(self) -> int:
        return self.w_bits

    @property
    def weight_shape(self) -> Shape:
        return signed(self.w_bits)

    @property
    def weight_range(self) -> tuple[int, int]:
        return int_range(self.w_bits, True)


class DotProductPE(wiring.Component):
    """Base component; a subclass implements :meth:`lane_product` for one lane.

    Members
    -------
    i : ``In(params.i_signature)``
        ``stream.Signature(params.input_layout)``: ``acts``, the weights, ``last``.
    o : ``Out(params.o_signature)``
        ``stream.Signature(params.output_layout)``: ``y``, :attr:`DotParams.latency` cycles after ``last``.
    params : DotParams
        The parameters it was built from (read-only).
    """

    def __init__(self, params: DotParams):
        self._params = params
        super().__init__({"i": In(params.i_signature), "o": Out(params.o_signature)})

    @property
    def params(self):
        """The parameters this PE was built from."""
        return self._params

    def lane_operands(self, m: Module, payload) -> list[tuple[Value, Value]]:
        """The ``(activation, weight)`` pair of every lane; by default lane k's fields directly."""
        weights = getattr(payload, self._params.weight_field)
        return [(payload.acts[lane], weights[lane]) for lane in range(self._params.lanes)]

    def lane_product(self, m: Module, act: Value, weight: Value, lane: int) -> tuple[Value, Value | None]:
        """Return ``(value, carry)`` with ``value + carry == act * v(weight)``, combinationally.

        ``carry`` is a 1-bit correction (``None`` if unused) that enters the adder tree as a carry-in
        (:func:`hw.common.adder_tree`), so a negation costs a one's complement and no adder.
        """
        raise NotImplementedError

    def lane_stage(self, m: Module, act: Value, weight: Value, lane: int, en: Value) -> tuple[Value, Value | None]:
        """``(value, carry)`` of :meth:`lane_product` after the ``product_stages`` registers (by default one)."""
        value, carry = self.lane_product(m, act, weight, lane)
        return (register(m, value, en=en, name=f"prod{lane}"),
                None if carry is None else register(m, carry, en=en, name=f"carry{lane}"))

    def multiplier_stage(self, m: Module, act: Value, weight: Value, lane: int, en: Value):
        """A :meth:`lane_stage` for ``FixedPointWeights`` params: ``act * weight`` by the target's DSP primitive
        with its registers (:func:`hw.dsp.registered_product`), an inferred DSP, or LUT partial products."""
        p = self._params
        width = signed_bits_for(*p.product_range)
        if p.dsp:
            return registered_product(m, act, weight, en=en, cell=p.dsp_cell, width=width, name=f"lane{lane}_mul"), None
        product = Signal(signed(width), name=f"lane{lane}_product")
        m.d.comb += product.eq(multiply(m, act, weight, dsp=False, name=f"lane{lane}_mul"))
        return register(m, product, en=en, name=f"prod{lane}"), None

    def elaborate(self, platform):
        p = self._params
        m = Module()

        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        accept = self.i.valid & en

        operands = self.lane_operands(m, self.i.payload)
        # `last` travels as "valid and last", so the final stage decides to emit with one LUT level
        # less (its path from o.valid/o.ready limited Fmax); it is reset like `valid`.
        valid, last = accept, accept & self.i.payload.last
        for stage in range(p.operand_stages):
            operands = [(register(m, a, en=en, name=f"op{k}_act_s{stage}"),
                         register(m, w, en=en, name=f"op{k}_weight_s{stage}"))
                        for k, (a, w) in enumerate(operands)]
            valid = register(m, valid, en=en, name=f"op_valid_s{stage}", reset_less=False)
            last = register(m, last, en=en, name=f"op_last_s{stage}", reset_less=False)

        values, carries = [], []
        for lane, (act, weight) in enumerate(operands):
            value, carry = self.lane_stage(m, act, weight, lane, en)
            values.append(value)
            if carry is not None:
                carries.append(carry)
        valid = delay(m, valid, p.product_stages, en=en, name="prod_valid", reset_less=False)
        last = delay(m, last, p.product_stages, en=en, name="prod_last", reset_less=False)

        total, carry = adder_tree(m, values, carries=carries, en=en, name="tree", levels_per_stage=p.tree_levels)
        stages = tree_stages(len(values), p.tree_levels)
        valid = delay(m, valid, stages, en=en, name="tree_valid", reset_less=False)
        last = delay(m, last, stages, en=en, name="tree_last", reset_less=False)

        accumulate_and_emit(m, en=en, valid=valid, last=last, value=total,
                            acc_shape=p.output_shape, o=self.o, carry=carry)
        return m
