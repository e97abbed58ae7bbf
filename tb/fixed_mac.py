"""cocotb testbench and batch API of ``fixed-mac`` (shared tests in :mod:`tb.dot`)."""

from __future__ import annotations

import numpy as np

from sw import fixed
from sw.intops import int_range

from . import dot
from .dot import (batch, every_code, extremes, random_stalls, random_vectors,  # noqa: F401  (cocotb tests)
                  reset_mid_vector, throughput_and_latency)

__all__ = ["rtl_dot", "golden"]

#: Above this width ``every_code`` samples weights instead of enumerating all of them.
_ENUMERATE_BITS = 9


def golden(acts, weights, params) -> np.ndarray:
    return fixed.golden_dot(acts, weights, params.w_bits, act_bits=params.act_bits,
                            act_signed=params.act_signed)


def all_weights(params) -> np.ndarray:
    lo, hi = int_range(params.w_bits, True)
    if params.w_bits <= _ENUMERATE_BITS:
        return np.arange(lo, hi + 1)
    inner = np.random.default_rng(params.w_bits).integers(lo, hi, 254, endpoint=True)
    return np.r_[lo, inner, hi]


def extreme_weights(params) -> list[int]:
    lo, hi = int_range(params.w_bits, True)
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

    Returns
    -------
    numpy.ndarray of int64, shape [rows]
    """
    return dot.rtl_dot("fixed-mac", acts, weights, params, **kwargs)
