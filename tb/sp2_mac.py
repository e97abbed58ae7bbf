"""cocotb testbench and batch API of ``sp2-mac``: its :class:`tb.dot.DotCase`, run by :mod:`tb.bench`'s tests.

>>> from peforge.hw.sp2_mac import SP2MacParams
>>> rtl_dot([[1, 2, 3]], [0b0010, 0b1010, 0b0001], SP2MacParams(lanes=2))  # +4, -4, +4
array([8])
"""

from __future__ import annotations

import numpy as np

from ..sw import sp2

from . import dot
from .bench import (batch, every_code, extremes, random_stalls, random_vectors,  # noqa: F401  (cocotb tests)
                    reset_mid_vector, throughput_and_latency)
from .dot import CHECKS  # noqa: F401

__all__ = ["rtl_dot", "CASE", "CHECKS"]


class CASE(dot.DotCase):
    def golden_rows(self, acts, codes):
        p = self.params
        return sp2.golden_dot(acts, codes, p.fmt, act_bits=p.act_bits, act_signed=p.act_signed)

    def all_weights(self):
        """Every code, including the non-canonical ones (the hardware computes them all)."""
        return np.arange(self.params.fmt.n_codes)

    def extreme_weights(self):
        table = self.params.fmt.table
        return [int(np.argmax(table)), int(np.argmin(table))]


def rtl_dot(acts, codes, params, **kwargs):
    """``sw.sp2.golden_dot`` computed by the generated RTL.

    Parameters
    ----------
    acts : int array [rows, K]
        ``act_bits`` integers (signed per ``params.act_signed``), K <= ``params.max_len``.
    codes : int array [K] or [rows, K]
        SP2 codes in ``[0, 2^fmt.bits)``; a 1-D array is used for every row.
    params : hw.sp2_mac.SP2MacParams
    **kwargs
        ``p_valid``, ``p_ready``, ``seed``, ``waves``, ``stats`` and the result as :func:`tb.dot.rtl_dot`:
        int64 ``[rows]``, or ``(y, tb.batch.SimStats)`` with ``stats=True``.
    """
    return dot.rtl_dot("sp2-mac", acts, codes, params, **kwargs)
