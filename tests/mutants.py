"""Deliberately broken PEs, registered as a plugin, to prove the testbenches can fail.

Loaded in the simulator too, through ``PEFORGE_PLUGINS=tests.mutants``.
"""

from amaranth import Cat, Mux
from amaranth.lib import data

from hw.circulant_fft import CirculantFFT, CirculantParams, _ParallelDatapath
from hw.crossbar import CrossbarParams, CrossbarSystem
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


class CrossbarSkipsLastRow(CrossbarSystem):
    """Zero-skipping ORs all but the last row of a sub-array: a plane set only there is skipped."""

    def plane_mask(self, rows):
        return super().plane_mask(rows[:-1])


register(PE("crossbar-skips-last-row", "mutant", CrossbarParams, CrossbarSkipsLastRow, "tb.crossbar", "test"))


class _RoundsHalfDown(_ParallelDatapath):
    def output_bias(self):
        return super().output_bias() - 1


class CirculantRoundsHalfDown(CirculantFFT):
    """The output rounding R_L rounds ties down (bias 2^(L-1) - 1): wrong only on exact halves."""

    _datapath = _RoundsHalfDown


register(PE("circulant-fft-rounds-half-down", "mutant", CirculantParams, CirculantRoundsHalfDown,
            "tb.circulant_fft", "test"))
