"""Fixed-point weights: the format of the ``fixed-mac`` PE, the baseline SP2 is measured against.

A weight is a signed ``w_bits`` integer ``v`` and the real weight is ``scale * v`` with one scale per output
row. The golden model (:func:`golden_dot`) accepts the full two's-complement range
``[-2^(w_bits-1), 2^(w_bits-1) - 1]``, as the hardware does; the quantiser (:func:`quantize`) emits the
symmetric narrow range ``[-(2^(w_bits-1) - 1), 2^(w_bits-1) - 1]`` so that negating a weight never
saturates:

    v = clip(round(w / scale), -(2^(w_bits-1) - 1), 2^(w_bits-1) - 1)

with ``round`` half to even (``numpy.rint``, as ``torch.round``) and ``scale`` chosen per row to minimise
``sum_k (w_k - scale * v_k)^2`` (:func:`sw.intops.fit_row_scale`).

The trainable layer :class:`FixedLinear` and the PyTorch pieces every weight format shares
(:func:`straight_through`, :class:`RowFakeQuant`, :class:`QuantLinear`) live in :mod:`sw.layers`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .intops import (as_acts, as_int_array, as_real_matrix, as_row_scale, exact_dot, fit_row_scale,
                     int_range)
from .params import check_int

__all__ = [
    "check_w_bits", "weight_range", "narrow_max", "fit_scale", "quantize", "dequantize", "golden_dot",
]


def check_w_bits(w_bits: int) -> None:
    """Raise unless ``w_bits`` is an integer from 2 to 16.

    >>> check_w_bits(1)
    Traceback (most recent call last):
    ...
    ValueError: Weight bits must be an integer from 2 to 16, not 1
    """
    check_int("Weight bits", w_bits, min=2, max=16)


def weight_range(w_bits: int) -> tuple[int, int]:
    """Range the golden model and the hardware accept: the full two's-complement range.

    >>> weight_range(4)
    (-8, 7)
    """
    check_w_bits(w_bits)
    return int_range(w_bits, True)


def narrow_max(w_bits: int) -> int:
    """Largest magnitude the quantiser emits: ``2^(w_bits-1) - 1`` (symmetric narrow range).

    >>> narrow_max(4)
    7
    """
    return weight_range(w_bits)[1]


def _to_grid(w_bits: int):
    top = narrow_max(w_bits)
    return lambda x: np.clip(np.rint(x), -top, top)


def fit_scale(w: Any, w_bits: int) -> np.ndarray:
    """Per-row scale minimising ``sum_k (w_k - scale * v_k)^2`` over the narrow ``w_bits`` grid.

    A grid of clip ratios (the largest level at 5 % to 100 % of ``max|w|``) then Lloyd steps; all-zero rows
    get 1.0. See :func:`sw.intops.fit_row_scale`.
    """
    w = as_real_matrix("Weights", w)
    return fit_row_scale(w, _to_grid(w_bits), narrow_max(w_bits))


def quantize(w: Any, w_bits: int, *, scale: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Quantise ``w`` [rows, K] to signed ``w_bits`` integers with one scale per row.

    ``v = clip(rint(w / scale), -(2^(w_bits-1) - 1), 2^(w_bits-1) - 1)``; real weight ``scale * v``.

    Parameters
    ----------
    w : float array [rows, K] (numpy, list or torch tensor)
    w_bits : int, 2 to 16
    scale : float array [rows], optional
        Use this scale instead of fitting one (:func:`fit_scale`).

    Returns
    -------
    (v, scale) : int64 [rows, K], float64 [rows]

    Examples
    --------
    >>> quantize([[1.0, -0.5, 0.25]], 4, scale=[1 / 7])
    (array([[ 7, -4,  2]]), array([0.14285714]))
    """
    w = as_real_matrix("Weights", w)
    if scale is None:
        scale = fit_row_scale(w, _to_grid(w_bits), narrow_max(w_bits))
    else:
        check_w_bits(w_bits)
        scale = as_row_scale("Scale", scale, len(w))
    return _to_grid(w_bits)(w / scale[:, None]).astype(np.int64), scale


def dequantize(w_int: Any, scale: Any, w_bits: int) -> np.ndarray:
    """Real weights ``scale[r] * v[r, k]`` (float64) of integers in the full ``w_bits`` range."""
    lo, hi = weight_range(w_bits)
    v = as_int_array("Fixed-point weights", w_int, lo, hi)
    if v.ndim != 2:
        raise ValueError(f"Fixed-point weights must be a 2-D array [rows, K], not shape {v.shape}")
    return as_row_scale("Scale", scale, len(v))[:, None] * v


def golden_dot(acts: Any, weights: Any, w_bits: int, *, act_bits: int | None = None,
               act_signed: bool = True) -> np.ndarray:
    """Bit-exact result of the ``fixed-mac`` PE: ``y[r] = sum_k a[r, k] * w[k]`` (or ``w[r, k]``).

    Parameters
    ----------
    acts : int array [rows, K]
        Range-checked against ``act_bits`` (signed or not) when ``act_bits`` is given.
    weights : int array [K] or [rows, K]
        Signed ``w_bits`` integers, the full range ``[-2^(w_bits-1), 2^(w_bits-1) - 1]``.
    w_bits : int, 2 to 16

    Returns
    -------
    np.ndarray of int64 [rows], exact.

    Raises
    ------
    TypeError, ValueError
        ``"Fixed-point weights must be integers from -8 to 7, not 8 (at index 3)"``, ``"Acts must be ..."``,
        or a shape mismatch (see :func:`sw.intops.exact_dot`).

    Examples
    --------
    >>> golden_dot([[1, 2], [3, -4]], [-8, 7], 4, act_bits=4)
    array([  6, -52])
    """
    lo, hi = weight_range(w_bits)
    a = as_acts(acts, act_bits, act_signed)
    return exact_dot(a, as_int_array("Fixed-point weights", weights, lo, hi))

