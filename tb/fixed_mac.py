"""cocotb testbench and batch API of ``fixed-mac``: its :class:`tb.dot.DotCase`, run by :mod:`tb.bench`'s tests."""

from __future__ import annotations

import numpy as np

from ..sw import fixed
from ..sw.intops import int_range

from . import dot
from .bench import (batch, every_code, extremes, random_stalls, random_vectors,  # noqa: F401  (cocotb tests)
                    reset_mid_vector, throughput_and_latency)
from .dot import CHECKS  # noqa: F401

__all__ = ["rtl_dot", "CASE", "CHECKS"]

#: Above this width ``every_code`` samples weights instead of enumerating all of them.
_ENUMERATE_BITS = 9


class CASE(dot.DotCase):
    def golden_rows(self, acts, weights):
        p = self.params
        return fixed.golden_dot(acts, weights, p.w_bits, act_bits=p.act_bits, act_signed=p.act_signed)

    def all_weights(self):
        lo, hi = int_range(self.params.w_bits, True)
        if self.params.w_bits <= _ENUMERATE_BITS:
            return np.arange(lo, hi + 1)
        return np.r_[lo, self.rng.integers(lo, hi, 254, endpoint=True), hi]

    def extreme_weights(self):
        lo, hi = int_range(self.params.w_bits, True)
        return [hi, lo]


def rtl_dot(acts, weights, params, **kwargs):
    """``sw.fixed.golden_dot`` computed by the generated RTL.

    Parameters
    ----------
    weights : int array [K] or [rows, K]
        signed ``w_bits`` integers; a 1-D array is used for every row.
    params : hw.fixed_mac.FixedMacParams
    acts, **kwargs
        As :func:`tb.sp2_mac.rtl_dot`.
    """
    return dot.rtl_dot("fixed-mac", acts, weights, params, **kwargs)
