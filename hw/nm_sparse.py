"""``nm-sparse``: an N:M structured-sparse dot-product PE with a dense mode.

Each beat carries ``groups`` groups of M activations with N values and N indices each (docs/nm-sparse.md,
nm-sparse). Sparse mode: slot t of group g multiplies ``acts[g*M + idx[g, t]]`` by ``val[g, t]``,
so ``groups * M`` logical MACs per cycle run on ``groups * N`` multipliers. Dense mode (the ``dense``
payload flag, per beat): the same multipliers take the first ``groups * N`` activations and the values
directly, like a fixed-point dot-product PE. Sources: SAT / BDWP (Fang et al., IEEE TCAD 2023) and
NVIDIA Ampere 2:4 (Mishra et al., arXiv:2104.08378); the software side is ``sw/nm.py``.

The pipeline is the one of :mod:`hw.dot` with one extra stage: the index muxes feed a register before
the multipliers (``mux_register``), so the mux and the multiplier do not share a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth import Array, Module, Mux, Signal, unsigned
from amaranth.lib import data

from ..sw.fixed import check_w_bits
from ..sw.nm import NMFormat
from ..sw.params import Params, Spec

from .common import TREE_LEVELS_PER_STAGE
from .dot import (ACT_BITS, ACT_SIGNED, DSP, DSP_CELL, MAX_LEN, TREE_LEVELS, DotParams, DotProductPE,
                  FixedPointWeights)
from .dsp import TARGET

__all__ = ["NMSparseParams", "NMSparse"]


_GROUPS = Spec("Groups", "groups of M activations per beat", min=1, max=64)
_MUX_REGISTER = Spec("Mux register (mux_register)", "register between index mux and multiplier", kind=bool)


@dataclass(frozen=True)
class NMSparseParams(FixedPointWeights, DotParams, Params):
    """Parameters of :class:`NMSparse`.

    Raises
    ------
    TypeError, ValueError
        ``"<Parameter> must be ..., not <value>"`` for any out-of-range field, or when ``max_len``
        would need an accumulator wider than 62 bits.
    """

    fmt: NMFormat = field(default_factory=NMFormat, metadata={"doc": "N:M sparsity format"})
    groups: int = _GROUPS.field(4)
    act_bits: int = ACT_BITS.field(8)
    act_signed: bool = ACT_SIGNED.field(True)
    w_bits: int = field(default=8, metadata={"doc": "signed weight (value) width"})
    max_len: int = MAX_LEN.field(4096)
    tree_levels: int = TREE_LEVELS.field(TREE_LEVELS_PER_STAGE)
    dsp: bool = DSP.field(True)
    dsp_cell: str = DSP_CELL.field(TARGET)
    mux_register: bool = _MUX_REGISTER.field(True)

    weight_field = "values"

    def __post_init__(self):
        if not isinstance(self.fmt, NMFormat):
            raise TypeError(f"N:M format (fmt) must be an NMFormat, not {self.fmt!r}")
        self.check_fields()
        check_w_bits(self.w_bits)
        MAX_LEN.check(self.max_len, min=self.fmt.m)          # at least one group
        self._check_acc()

    @property
    def lanes(self) -> int:
        """Multipliers: ``groups * N`` (also the activations a dense beat carries)."""
        return self.groups * self.fmt.n

    @property
    def acts_per_beat(self) -> int:
        """Activations of a sparse beat: ``groups * M``."""
        return self.groups * self.fmt.m

    @property
    def macs_per_cycle(self) -> int:
        """Logical (dense-equivalent) MACs per cycle in sparse mode."""
        return self.acts_per_beat

    @property
    def operand_stages(self) -> int:
        return 1 if self.mux_register else 0


    @property
    def input_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "acts": data.ArrayLayout(self.act_shape, self.acts_per_beat),
            "values": data.ArrayLayout(self.weight_shape, self.lanes),
            "indices": data.ArrayLayout(unsigned(self.fmt.index_bits), self.lanes),
            "dense": unsigned(1),
            "last": unsigned(1),
        })


class NMSparse(DotProductPE):
    """N:M sparse dot-product PE; stream interface and pipeline as in :mod:`hw.dot`.

    Members
    -------
    i : ``In(params.i_signature)``
        ``acts`` (``groups * M``), ``values`` and ``indices`` (``groups * N`` each), ``dense``, ``last``.
    o : ``Out(params.o_signature)``
        ``y``, the signed ``acc_bits`` dot product.
    """

    def __init__(self, params: NMSparseParams):
        if not isinstance(params, NMSparseParams):
            raise TypeError(f"NMSparse params must be NMSparseParams, not {params!r}")
        super().__init__(params)

    def lane_operands(self, m: Module, payload):
        p = self.params
        n, mm = p.fmt.n, p.fmt.m
        operands = []
        for g in range(p.groups):
            group = Array(payload.acts[g * mm + j] for j in range(mm))
            for t in range(n):
                lane = g * n + t
                act = Signal(p.act_shape, name=f"lane{lane}_act")
                m.d.comb += act.eq(Mux(payload.dense, payload.acts[lane], group[payload.indices[lane]]))
                operands.append((act, payload.values[lane]))
        return operands

    lane_stage = DotProductPE.multiplier_stage
