"""cocotb testbench and batch API of ``fixed-mac`` (tests in :mod:`tb.vector`, vectors in :mod:`tb.dot`)."""

from __future__ import annotations

import numpy as np

from sw import fixed
from sw.intops import int_range

from . import dot
from .vector import (batch, every_code, extremes, random_stalls, random_vectors,  # noqa: F401  (cocotb tests)
                     reset_mid_vector, throughput_and_latency)

__all__ = ["rtl_dot", "VECTORS"]

#: Above this width ``every_code`` samples weights instead of enumerating all of them.
_ENUMERATE_BITS = 9


class VECTORS(dot.DotVectors):
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


def rtl_dot(acts, weights, params, **kwargs) -> np.ndarray:
    """``sw.fixed.golden_dot`` computed by the generated RTL.

    Parameters
    ----------
    acts : int array [rows, K]
        ``act_bits`` integers (signed per ``params.act_signed``), K <= ``params.max_len``.
    weights : int array [K] or [rows, K]
        signed ``w_bits`` integers; a 1-D array is used for every row.
    params : hw.fixed_mac.FixedMacParams
    p_valid, p_ready : float, optional
        Probability of offering a beat / accepting a result per cycle (1.0: no stalls).

    Returns
    -------
    numpy.ndarray of int64, shape [rows]
    """
    return dot.rtl_dot("fixed-mac", acts, weights, params, **kwargs)
