"""Deliberately broken PEs, registered as a plugin, to prove the testbenches can fail.

Loaded in the simulator too, through ``PEFORGE_PLUGINS=tests.mutants``.
"""

from amaranth import Cat, Mux
from amaranth.lib import data

from hw.fixed_mac import FixedMac, FixedMacParams
from hw.nm_sparse import NMSparse, NMSparseParams
from hw.sp2_mac import SP2Mac, SP2MacParams
from peforge.registry import PE, register


class SP2MacDropsCarry(SP2Mac):
    """Forgets the +1 of the one's-complement negation: off by one per negative weight."""

    def lane_product(self, m, act, code, lane):
        folded, sign = super().lane_product(m, act, code, lane)
        return folded, sign & 0


class FixedMacTruncates(FixedMac):
    """Drops the top partial product of the weight (wrong for negative weights only)."""

    def lane_product(self, m, act, weight, lane):
        return super().lane_product(m, act, Mux(weight[-1], 0, weight), lane)


register(PE("sp2-mac-drops-carry", "mutant", SP2MacParams, SP2MacDropsCarry, "tb.sp2_mac", "test"))
register(PE("fixed-mac-truncates", "mutant", FixedMacParams, FixedMacTruncates, "tb.fixed_mac", "test"))


class NMSparseReversedIndex(NMSparse):
    """Reads position M-1-idx: right only for symmetric patterns."""

    def lane_operands(self, m, payload):
        flipped = ~payload.indices.as_value()
        view = data.View(payload.shape(), Cat(payload.acts.as_value(), payload.values.as_value(), flipped,
                                              payload.dense, payload.last))
        return super().lane_operands(m, view)


register(PE("nm-sparse-reversed-index", "mutant", NMSparseParams, NMSparseReversedIndex, "tb.nm_sparse", "test"))
