"""``fixed-mac``: the fixed-point dot-product PE that ``sp2-mac`` is measured against.

Same interface and pipeline as :mod:`hw.sp2_mac` (see :mod:`hw.dot`), with signed ``w_bits`` weights.
``dsp=True`` writes each lane as ``a * w`` so synthesis maps it to a DSP block (ECP5 MULT18X18D,
iCE40 SB_MAC16); ``dsp=False`` spells the multiplier out as shifted partial products
(:func:`hw.common.multiply`), so no flow can infer a DSP and the LUT cost of a fixed-point lane can
be measured on the same footing as SP2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..sw.fixed import check_w_bits
from ..sw.params import Params

from .common import TREE_LEVELS_PER_STAGE
from .dot import (ACT_BITS, ACT_SIGNED, DSP, DSP_CELL, LANES, MAX_LEN, TREE_LEVELS, DotParams, DotProductPE,
                  FixedPointWeights)
from .dsp import TARGET

__all__ = ["FixedMacParams", "FixedMac"]

@dataclass(frozen=True)
class FixedMacParams(FixedPointWeights, DotParams, Params):
    """Parameters of :class:`FixedMac`.

    Raises
    ------
    TypeError, ValueError
        ``"<Parameter> must be ..., not <value>"`` for any out-of-range field, or when ``max_len``
        would need an accumulator wider than 62 bits.
    """

    lanes: int = LANES.field(8)
    act_bits: int = ACT_BITS.field(8)
    act_signed: bool = ACT_SIGNED.field(True)
    w_bits: int = field(default=8, metadata={"doc": "signed weight width"})
    max_len: int = MAX_LEN.field(4096)
    tree_levels: int = TREE_LEVELS.field(TREE_LEVELS_PER_STAGE)
    dsp: bool = DSP.field(True)
    dsp_cell: str = DSP_CELL.field(TARGET)

    weight_field = "weights"

    def __post_init__(self):
        self.check_fields()
        check_w_bits(self.w_bits)
        self._check_acc()

class FixedMac(DotProductPE):
    """Fixed-point dot-product PE; see :mod:`hw.dot` for the stream interface and pipeline.

    Members
    -------
    i : ``In(params.i_signature)``
        ``acts``, ``weights`` (``lanes`` signed ``w_bits`` each), ``last``.
    o : ``Out(params.o_signature)``
        ``y``, the signed ``acc_bits`` dot product.
    """

    def __init__(self, params: FixedMacParams):
        if not isinstance(params, FixedMacParams):
            raise TypeError(f"FixedMac params must be FixedMacParams, not {params!r}")
        super().__init__(params)

    lane_stage = DotProductPE.multiplier_stage
