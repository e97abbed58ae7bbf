"""Integer helpers shared by every golden model and by the hardware generators.

A range is derived here, once: the golden models use :func:`int_range` to range-check their inputs and the
generators use it (and :func:`signed_bits_for`) to size their ports and accumulators. The module also holds
the scheme-independent quantisation pieces: input validation (:func:`as_int_array`,
:func:`as_real_matrix`), the exact integer dot product (:func:`exact_dot`) and the per-row scale search
(:func:`fit_row_scale`) that every weight quantiser drives with its own "nearest integer level" function.

Only numpy is imported; torch tensors are accepted duck-typed (anything with ``detach`` and ``numpy``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .params import check_bool, check_int

__all__ = [
    "INT64_MIN", "INT64_MAX", "int_range", "max_abs", "signed_bits_for", "to_numpy", "as_int_array",
    "as_real_array", "as_real_matrix", "as_row_scale", "as_acts", "exact_dot", "fit_row_scale", "CLIP_RATIOS",
]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


def int_range(bits: int, signed: bool) -> tuple[int, int]:
    """Inclusive ``(lo, hi)`` of a ``bits``-wide two's-complement (``signed``) or unsigned integer.

    Signed: ``[-2^(bits-1), 2^(bits-1) - 1]``; unsigned: ``[0, 2^bits - 1]``.

    Raises
    ------
    TypeError
        ``"Bits must be an integer, not ..."`` or ``"Signed must be a bool, not ..."``.
    ValueError
        ``"Bits must be a positive integer, not ..."``.

    Examples
    --------
    >>> int_range(8, True)
    (-128, 127)
    >>> int_range(8, False)
    (0, 255)
    >>> int_range(1, True)
    (-1, 0)
    """
    check_int("Bits", bits, min=1)
    check_bool("Signed", signed)
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def max_abs(bits: int, signed: bool) -> int:
    """Largest magnitude of a ``bits``-wide integer: ``2^(bits-1)`` signed, ``2^bits - 1`` unsigned.

    >>> max_abs(8, True), max_abs(8, False)
    (128, 255)
    """
    lo, hi = int_range(bits, signed)
    return max(-lo, hi)


def signed_bits_for(lo: int, hi: int) -> int:
    """Minimum two's-complement width holding every integer in ``[lo, hi]``.

    Raises
    ------
    TypeError
        If ``lo`` or ``hi`` is not an integer.
    ValueError
        ``"Range must have lo <= hi, not [3, 2]"``.

    Examples
    --------
    >>> signed_bits_for(-128, 127)
    8
    >>> signed_bits_for(0, 128)
    9
    >>> signed_bits_for(0, 0)
    1
    """
    check_int("Range lo", lo)
    check_int("Range hi", hi)
    if lo > hi:
        raise ValueError(f"Range must have lo <= hi, not [{lo}, {hi}]")
    # x >= 0 needs bit_length(x) + 1 bits; x < 0 needs bit_length(~x) + 1 = bit_length(-x - 1) + 1.
    return max((x if x >= 0 else ~x).bit_length() + 1 for x in (lo, hi))


def to_numpy(x: Any) -> np.ndarray:
    """``x`` as a numpy array; torch tensors are detached and copied to the CPU first."""
    if hasattr(x, "detach") and hasattr(x, "numpy"):
        x = x.detach().cpu()
        try:
            return x.numpy()
        except (TypeError, RuntimeError):  # dtypes numpy lacks (bfloat16): widen first
            return x.double().numpy()
    return np.asarray(x)


def _where(index: tuple[int, ...]) -> str:
    if len(index) == 0:
        return ""
    return f" (at index {index[0] if len(index) == 1 else index})"


def _first(mask: np.ndarray) -> tuple[int, ...]:
    flat = int(np.flatnonzero(mask.ravel())[0])
    return tuple(int(i) for i in np.unravel_index(flat, mask.shape))


def as_int_array(subject: str, x: Any, lo: int, hi: int) -> np.ndarray:
    """``x`` (array, list, torch tensor) as an int64 array, every value an integer in ``[lo, hi]``.

    Integer-valued floats are accepted; bools, fractions, NaN, infinities and non-numeric data are not.
    The result always is a new array (never a view of ``x``).

    Raises
    ------
    TypeError
        ``"<Subject> must be integers, not 0.5 (at index (0, 1))"`` for a non-integer value, or
        ``"<Subject> must be integers, not bool values"`` for data of a non-integer kind.
    ValueError
        ``"<Subject> must be integers from <lo> to <hi>, not 300 (at index (2, 5))"`` for the first value
        (in C order) out of range.

    Examples
    --------
    >>> as_int_array("Acts", [[1, 2], [3, 4.0]], -8, 7)
    array([[1, 2],
           [3, 4]])
    >>> as_int_array("Acts", [[1, 2], [3, 300]], -128, 127)
    Traceback (most recent call last):
    ...
    ValueError: Acts must be integers from -128 to 127, not 300 (at index (1, 1))
    """
    check_int("Range lo", lo, min=INT64_MIN)
    check_int("Range hi", hi, max=INT64_MAX)
    if lo > hi:
        raise ValueError(f"Range must have lo <= hi, not [{lo}, {hi}]")
    arr = to_numpy(x)
    kind = arr.dtype.kind
    if kind == "O":  # lists holding Python ints beyond int64, or mixed objects
        bad_type = np.frompyfunc(
            lambda v: isinstance(v, bool) or not (isinstance(v, (int, np.integer))
                                                 or (isinstance(v, float) and v.is_integer())), 1, 1)
        _reject(subject, bad_type(arr).astype(bool) if arr.size else np.zeros(arr.shape, bool), arr,
                "integers", TypeError)
        arr = np.frompyfunc(int, 1, 1)(arr) if arr.ndim else np.asarray(int(arr.item()), object)
    elif kind == "f":
        _reject(subject, ~np.isfinite(arr) | (arr != np.floor(arr)), arr, "integers", TypeError)
    elif kind not in "iu":
        raise TypeError(f"{subject} must be integers, not {arr.dtype} values")
    mask = (arr < lo) | (arr > hi)
    if kind == "f":  # float(hi) may round up to 2^63: keep int64's own limits exact
        mask |= (arr < -2.0 ** 63) | (arr >= 2.0 ** 63)
    _reject(subject, mask, arr, f"integers from {lo} to {hi}")
    return np.array(arr, dtype=np.int64)


def _reject(subject: str, mask: np.ndarray, arr: np.ndarray, constraint: str, error: type = ValueError):
    """Raise ``error("<subject> must be <constraint>, not <first masked value> (at index ...)")``."""
    if np.any(mask):
        index = _first(np.asarray(mask, dtype=bool))
        value = arr[index].item() if hasattr(arr[index], "item") else arr[index]
        raise error(f"{subject} must be {constraint}, not {value!r}{_where(index)}")


def as_real_array(subject: str, x: Any, *, ndim: int | None = None, layout: str = "") -> np.ndarray:
    """``x`` (array, list, torch tensor) as a new float64 array of finite values.

    With ``ndim`` the array must have that many dimensions; ``layout`` names them in the message.

    Raises
    ------
    TypeError
        ``"<Subject> must be real numbers, not complex128 values"``.
    ValueError
        ``"<Subject> must be a 2-D array [rows, K], not shape (5,)"`` or
        ``"<Subject> must be finite, not nan (at index (0, 3))"``.
    """
    arr = to_numpy(x)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{subject} must be real numbers, not {arr.dtype} values")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{subject} must be a {ndim}-D array{layout}, not shape {arr.shape}")
    arr = np.array(arr, dtype=np.float64)
    _reject(subject, ~np.isfinite(arr), arr, "finite")
    return arr


def as_real_matrix(subject: str, x: Any) -> np.ndarray:
    """:func:`as_real_array` of shape ``[rows, K]`` (a weight matrix, one row per output)."""
    return as_real_array(subject, x, ndim=2, layout=" [rows, K]")


def as_row_scale(subject: str, x: Any, rows: int) -> np.ndarray:
    """``x`` as a new float64 array of ``rows`` finite, positive per-row scales.

    Raises
    ------
    TypeError
        ``"<Subject> must be real numbers, not ... values"``.
    ValueError
        ``"<Subject> must have shape (4,) (one per row), not (3,)"`` or
        ``"<Subject> must be positive, not 0.0 (at index 2)"``.
    """
    arr = as_real_array(subject, x)
    if arr.shape != (rows,):
        raise ValueError(f"{subject} must have shape ({rows},) (one per row), not {arr.shape}")
    _reject(subject, arr <= 0, arr, "positive")
    return arr


def as_acts(acts: Any, act_bits: int | None, act_signed: bool) -> np.ndarray:
    """Activations as int64, range-checked against ``act_bits`` (1 to 32) when it is given.

    Raises
    ------
    TypeError, ValueError
        ``"Activation bits must be an integer from 1 to 32, not 0"``,
        ``"Acts must be integers from -128 to 127, not 300 (at index (2, 5))"``.
    """
    check_bool("Activation signedness", act_signed)
    if act_bits is None:
        lo, hi = INT64_MIN, INT64_MAX
    else:
        check_int("Activation bits", act_bits, min=1, max=32)
        lo, hi = int_range(act_bits, act_signed)
    return as_int_array("Acts", acts, lo, hi)


def exact_dot(acts: Any, weights: Any) -> np.ndarray:
    """Exact per-row dot product ``y[r] = sum_k acts[r, k] * weights[r, k]`` (or ``weights[k]``) in int64.

    Parameters
    ----------
    acts : int array [rows, K]
    weights : int array [K] (shared by every row) or [rows, K]

    Returns
    -------
    np.ndarray of int64, shape [rows]

    Raises
    ------
    TypeError
        If either operand does not hold integers.
    ValueError
        On a shape mismatch, or when the worst case ``K * max|acts| * max|weights|`` does not fit in int64
        (then the int64 sum could wrap; the hardware's accumulator is sized for the same bound).

    Examples
    --------
    >>> exact_dot([[1, 2, 3], [-1, 0, 1]], [4, 5, 6])
    array([32,  2])
    """
    a = to_numpy(acts)
    w = to_numpy(weights)
    for name, arr in (("Acts", a), ("Weights", w)):
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name} must be integers, not {arr.dtype} values")
    if a.ndim != 2:
        raise ValueError(f"Acts must be a 2-D array [rows, K], not shape {a.shape}")
    rows, k = a.shape
    if not (w.shape == (k,) or w.shape == (rows, k)):
        raise ValueError(f"Weights must have shape ({k},) or ({rows}, {k}) to match acts of shape {a.shape}, "
                         f"not {w.shape}")
    peak_a = max(-int(a.min()), int(a.max())) if a.size else 0
    peak_w = max(-int(w.min()), int(w.max())) if w.size else 0
    worst = k * peak_a * peak_w
    if worst > INT64_MAX:
        raise ValueError(f"Dot product worst case K * max|acts| * max|weights| must fit in int64 "
                         f"(at most {INT64_MAX}), not {k} * {peak_a} * {peak_w} = {worst}")
    a = a.astype(np.int64, copy=False)
    w = w.astype(np.int64, copy=False)
    if w.ndim == 1:
        return a @ w
    return np.einsum("rk,rk->r", a, w)


#: Default clip ratios tried by :func:`fit_row_scale`: the largest representable level is put at
#: ``ratio * max|w|`` of the row, geometrically spaced: 96 from 5 % to 100 % (exactly 1.0 included, the
#: plain "max maps to the top level" scale) and 32 more up to 200 % (the row's largest weight then lands
#: on a lower level, which can pay off for short rows and uneven level sets).
CLIP_RATIOS = tuple(float(r) for r in np.concatenate([np.geomspace(0.05, 1.0, 96)[:-1], [1.0],
                                                      np.geomspace(1.0, 2.0, 33)[1:]]))


def fit_row_scale(w: np.ndarray, to_grid: Callable[[np.ndarray], np.ndarray], top: float, *,
                  ratios: Iterable[float] = CLIP_RATIOS, starts: int = 3, lloyd_steps: int = 5,
                  zero_scale: float = 1.0) -> np.ndarray:
    """Per-row scale ``s`` minimising ``sum_k (w[r, k] - s[r] * q[r, k])^2`` with ``q = to_grid(w / s)``.

    ``to_grid`` maps real numbers (in units of the integer grid) to the nearest representable integer level
    (a float array of the same shape); ``top`` is the largest representable magnitude.

    1. Every candidate ``s = ratio * max|w[r]| / top`` is evaluated. With its levels ``q`` fixed, the
       optimal scale is ``s' = <w, q> / <q, q>`` with error ``<w, w> - <w, q>^2 / <q, q>``, a bound on the
       error at ``s'`` once ``q`` is re-rounded (re-rounding to the nearest level can only lower it).
    2. From the ``starts`` candidates with the lowest bound, ``lloyd_steps`` alternating (Lloyd-Max) steps:
       re-round ``q`` at ``s'``, then ``s' = <w, q> / <q, q>`` again.

    The best scale evaluated wins (the first one on a tie), so a scale among the candidates is never beaten
    by the result. All-zero rows get ``zero_scale``. The error of a scale is computed with the very
    expression the quantisers use (``to_grid(w / s)``), so re-quantising reproduces it.
    """
    w = np.asarray(w, dtype=np.float64)
    peak = np.abs(w).max(axis=1) if w.shape[1] else np.zeros(w.shape[0])
    scale = np.full(w.shape[0], float(zero_scale))
    live = peak > 0
    if not live.any():
        return scale
    wl, peak = w[live], peak[live]
    ww = np.square(wl).sum(axis=1)
    best = np.zeros(len(wl))
    best_err = np.full(len(wl), np.inf)

    def evaluate(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = to_grid(wl / s[:, None])
        err = np.square(wl - s[:, None] * q).sum(axis=1)
        better = err < best_err
        best[better], best_err[better] = s[better], err[better]
        wq, qq = (wl * q).sum(axis=1), np.square(q).sum(axis=1)
        ok = (qq > 0) & (wq > 0)
        qq = np.where(ok, qq, 1.0)
        return np.where(ok, wq / qq, s), np.where(ok, ww - wq * wq / qq, err)

    proposals, bounds = zip(*(evaluate(peak * (float(r) / top)) for r in ratios))
    pick = np.argsort(np.stack(bounds), axis=0, kind="stable")[:starts]
    chains = np.take_along_axis(np.stack(proposals), pick, axis=0)
    for _ in range(lloyd_steps):
        for chain in chains:
            chain[:] = evaluate(chain)[0]
    scale[live] = best
    return scale
