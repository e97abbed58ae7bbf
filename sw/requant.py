"""Integer requantisation, defined once for every layer of every integer network.

An accumulator LSB of output ``j`` is worth ``acc_scale[j] = s_in * w_scale[j]`` (the input activation scale
times the weight scale of the row); the layer's real output is ``acc * acc_scale + bias``. To express it in
units of the next activation scale ``s_out``::

    m[j] = acc_scale[j] / s_out                 (real multiplier)
    S    = 30 - floor(log2(max_j m[j]))         (one shift per layer: the largest M in [2^30, 2^31))
    M[j] = rint(m[j] 2^S)                       (31-bit integer multipliers)
    B[j] = rint(bias[j] / s_out 2^S)            (the bias, added at 2^-S of an output LSB)
    z[j] = round(t[j] / 2^S)                    t = acc M + B, rounded as the layer says (below)

so ``z ~ (acc * acc_scale + bias) / s_out`` with a relative error of the multiplier below ``2^-30``. Every
operand is int64 and the worst case ``max|acc| * max M + max|B| + 2^(S-1)`` is checked to fit.

Rounding modes (:data:`ROUNDINGS`), each one integer formula on ``t`` (arithmetic shifts)::

    "half_up"    (t + 2^(S-1)) >> S                          floor(t / 2^S + 1/2): ties toward +inf (default)
    "half_even"  (t + 2^(S-1) - 1 + ((t >> S) & 1)) >> S     ties to the even integer: numpy.round, QONNX and
                                                             Brevitas ``ROUND``
    "floor"      t >> S                                      floor(t / 2^S): QONNX ``FLOOR``

The hardware requantiser (``hw.network.Requantizer``) computes the same formulas.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .intops import INT64_MAX, as_int_array, as_real_array
from .params import check_int

__all__ = ["REQUANT_BITS", "ROUNDINGS", "check_rounding", "requantize", "Requant"]

#: Requantisation multipliers are unsigned integers below 2^REQUANT_BITS.
REQUANT_BITS = 31
#: Rounding modes of :func:`requantize` (the module docstring gives each formula); the first is the default.
ROUNDINGS = ("half_up", "half_even", "floor")


def check_rounding(subject: str, rounding: Any) -> None:
    """Raise ``"<subject> must be one of 'half_up', 'half_even', 'floor', not 'up'"`` unless a rounding mode."""
    if not isinstance(rounding, str) or rounding not in ROUNDINGS:
        allowed = ", ".join(map(repr, ROUNDINGS))
        raise ValueError(f"{subject} must be one of {allowed}, not {rounding!r}")


def requantize(acc: Any, multiplier: Any, shift: int, offset: Any = 0, *, rounding: str = "half_up") -> np.ndarray:
    """Integer requantisation: ``t = acc * multiplier + offset`` divided by ``2^shift`` and rounded.

    ``rounding`` (:data:`ROUNDINGS`): ``"half_up"`` ``(t + 2^(shift-1)) >> shift`` (ties toward +inf),
    ``"half_even"`` ``(t + 2^(shift-1) - 1 + ((t >> shift) & 1)) >> shift`` (ties to even, as
    ``numpy.round``), ``"floor"`` ``t >> shift``; int64 arithmetic shifts. ``multiplier`` and ``offset``
    broadcast against ``acc`` (one per output column). The caller keeps the operands in range
    (:meth:`Requant.fit` checks the worst case).

    Raises
    ------
    TypeError, ValueError
        ``"Requantisation shift must be an integer from 1 to 62, not 0"``,
        ``"Requantisation rounding must be one of 'half_up', 'half_even', 'floor', not 'up'"``.

    Examples
    --------
    >>> requantize([100, -100, 3, -8], 3, 4).tolist()      # 18.75, -18.75, 0.5625, -1.5
    [19, -19, 1, -1]
    >>> requantize([[10, 10]], [1, 3], 1, [0, -1]).tolist()  # 5, 14.5
    [[5, 15]]
    >>> requantize([5, 7, -5, 3], 1, 1, rounding="half_even").tolist()  # 2.5, 3.5, -2.5, 1.5
    [2, 4, -2, 2]
    >>> requantize([5, -5, 3], 1, 1, rounding="floor").tolist()
    [2, -3, 1]
    """
    check_int("Requantisation shift", shift, min=1, max=62)
    check_rounding("Requantisation rounding", rounding)
    acc = as_int_array("Accumulators", acc, -INT64_MAX, INT64_MAX)
    t = acc * np.asarray(multiplier, np.int64) + np.asarray(offset, np.int64)
    if rounding == "floor":
        return t >> shift
    half = np.int64(1 << (shift - 1))
    if rounding == "half_even":
        return (t + (half - 1) + ((t >> shift) & 1)) >> shift
    return (t + half) >> shift


@dataclasses.dataclass(frozen=True, eq=False)
class Requant:
    """One layer's requantisation: ``clip(requantize(acc, multiplier, shift, offset, rounding=rounding), lo, hi)``.

    Members
    -------
    multiplier : int64 [out]
        ``rint(acc_scale / out_scale * 2^shift)``, below ``2^31``.
    shift : int
    offset : int64 [out]
        ``rint(bias / out_scale * 2^shift)``.
    lo, hi : int or None
        Clipping bounds (hidden layers: ``0`` and ``255``, ReLU and 8 bits); ``None`` for the logits.
    out_scale : float
        Real value of one output LSB.
    rounding : str
        One of :data:`ROUNDINGS` (default ``"half_up"``).
    """

    multiplier: np.ndarray
    shift: int
    offset: np.ndarray
    lo: int | None
    hi: int | None
    out_scale: float
    rounding: str = "half_up"

    def __post_init__(self):
        check_rounding("Requantisation rounding", self.rounding)

    @classmethod
    def fit(cls, acc_scale: Any, bias: Any, out_scale: float, *, acc_bound: int, lo: int | None = None,
            hi: int | None = None, rounding: str = "half_up") -> Requant:
        """The multipliers, shift and offsets of the module docstring for ``z ~ (acc * acc_scale + bias) / out_scale``.

        Raises
        ------
        ValueError
            ``"Requantisation multiplier must be at most 2^30 (shift >= 1), not 3.2e+09"``,
            ``"Requantisation must fit int64: acc bound 1000 * multiplier 2147483647 + offset ... is
            2^71.3"``.
        """
        acc_scale = as_real_array("Accumulator scale", acc_scale)
        bias = as_real_array("Bias", bias)
        if not (isinstance(out_scale, float) and math.isfinite(out_scale) and out_scale > 0):
            raise ValueError(f"Output scale must be a positive finite float, not {out_scale!r}")
        if acc_scale.ndim != 1 or bias.shape != acc_scale.shape or np.any(acc_scale <= 0):
            raise ValueError(f"Accumulator scale and bias must be positive [out] and [out] arrays, not shapes "
                             f"{acc_scale.shape} and {bias.shape}")
        m = acc_scale / out_scale
        top = float(m.max())
        shift = REQUANT_BITS - 1 - math.floor(math.log2(top))
        if shift < 1:
            raise ValueError(f"Requantisation multiplier must be at most 2^30 (shift >= 1), not {top:.3g}")
        shift = min(shift, 62)
        multiplier = np.rint(m * 2.0 ** shift).astype(np.int64)
        offset = np.rint(bias / out_scale * 2.0 ** shift).astype(np.int64)
        worst = acc_bound * int(multiplier.max()) + int(np.abs(offset).max()) + (1 << (shift - 1))
        if worst > INT64_MAX:
            raise ValueError(f"Requantisation must fit int64: acc bound {acc_bound} * multiplier "
                             f"{int(multiplier.max())} + offset {int(np.abs(offset).max())} is "
                             f"2^{math.log2(worst):.1f}")
        for arr in (multiplier, offset):
            arr.flags.writeable = False
        return cls(multiplier, shift, offset, lo, hi, float(out_scale), rounding)

    def __call__(self, acc: Any) -> np.ndarray:
        z = requantize(acc, self.multiplier, self.shift, self.offset, rounding=self.rounding)
        if self.lo is not None or self.hi is not None:
            z = np.clip(z, self.lo, self.hi)
        return z
