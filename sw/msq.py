"""Mixed-scheme quantisation (MSQ): some rows of a weight matrix in SP2, the others in fixed point.

From "Mix and Match: A Novel FPGA-Centric Deep Neural Network Quantization Framework" (Chang et al.,
HPCA 2021): SP2 levels are dense near zero and suit rows with a Gaussian-like (peaked) weight
distribution; fixed-point levels are uniform and suit uniform-like rows. Mixing the two per row lets an
FPGA use its LUTs (SP2: shifts and adds) and its DSPs (fixed point) at once.

peforge assigns rows by measured error: each row is quantised both ways, each with its own optimal scale
(:func:`sw.sp2.fit_alpha`, :func:`sw.fixed.fit_scale`), and the rows where SP2 gains the most
signal-to-quantisation-noise ratio (SQNR, the error relative to the row's energy) become SP2 rows:

    gain[r] = SQNR_sp2[r] - SQNR_fixed[r] = 10 log10(err_fixed[r] / err_sp2[r])   (dB)

The ``round(sp2_fraction * rows)`` rows with the largest gain are SP2 (Python's ``round``: half to even);
ties go to the lower row index. A row both schemes represent exactly (an all-zero row) has gain 0; one
only SP2 represents exactly has gain +inf.

Why a ratio: with optimal scales, equal-width fixed point usually has the lower error on every row (4-bit
narrow fixed point has 15 levels, 4-bit SP2 13), and its lead in absolute or energy-relative error is
largest on Gaussian rows, whose errors are the largest. The ratio is what separates the distributions:
SP2's levels are dense near zero, so on peaked (Gaussian-like, Laplace-like) rows its error is closest to
fixed point's, on uniform-like rows farthest.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from . import fixed, sp2
from .intops import as_int_array, as_real_matrix, as_row_scale
from .sp2 import SP2Format

__all__ = ["assign_rows", "MixedWeights", "quantize_mixed"]


def _check_fraction(sp2_fraction: Any) -> float:
    if isinstance(sp2_fraction, bool) or not isinstance(sp2_fraction, (int, float)):
        raise TypeError(f"SP2 fraction must be a number, not {sp2_fraction!r}")
    if not 0 <= sp2_fraction <= 1:  # also rejects nan
        raise ValueError(f"SP2 fraction must be a number from 0 to 1, not {sp2_fraction!r}")
    return float(sp2_fraction)


class _Both:
    """A weight matrix quantised both ways, with the per-row squared errors and the SP2 gain."""

    def __init__(self, w: Any, sp2_fmt: SP2Format, w_bits: int):
        self.w = as_real_matrix("Weights", w)
        self.codes, self.alpha = sp2.quantize(self.w, sp2_fmt)
        self.ints, self.scale = fixed.quantize(self.w, w_bits)
        self.err_sp2 = np.square(self.w - sp2.dequantize(self.codes, self.alpha, sp2_fmt)).sum(axis=1)
        self.err_fixed = np.square(self.w - fixed.dequantize(self.ints, self.scale, w_bits)).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):  # log10(0); -inf - -inf
            gain = 10 * (np.log10(self.err_fixed) - np.log10(self.err_sp2))
        self.gain = np.where((self.err_fixed == 0) & (self.err_sp2 == 0), 0.0, gain)

    def assign(self, sp2_fraction: float) -> np.ndarray:
        rows = len(self.w)
        count = round(sp2_fraction * rows)
        order = np.lexsort((np.arange(rows), -self.gain))  # largest gain first, then lower row index
        is_sp2 = np.zeros(rows, dtype=bool)
        is_sp2[order[:count]] = True
        return is_sp2


def assign_rows(w: Any, sp2_fraction: float, *, sp2_fmt: SP2Format = SP2Format(4),
                w_bits: int = 4) -> np.ndarray:
    """Which rows of ``w`` [rows, K] to quantise in SP2 (True) rather than fixed point (False).

    Exactly ``round(sp2_fraction * rows)`` rows are SP2: those where SP2's SQNR gain over fixed point,
    ``10 log10(err_fixed / err_sp2)``, is largest, each scheme with its own optimal per-row scale
    (:func:`sw.sp2.fit_alpha`, :func:`sw.fixed.fit_scale`); ties go to the lower row index. See the
    module docstring for why a ratio.

    Raises
    ------
    TypeError
        ``"SP2 fraction must be a number, not '0.5'"``.
    ValueError
        ``"SP2 fraction must be a number from 0 to 1, not 1.5"``.
    """
    fraction = _check_fraction(sp2_fraction)
    fixed.check_w_bits(w_bits)
    return _Both(w, sp2.check_format(sp2_fmt), w_bits).assign(fraction)


@dataclasses.dataclass(frozen=True, eq=False)
class MixedWeights:
    """A weight matrix with SP2 rows and fixed-point rows.

    Members
    -------
    is_sp2 : bool [rows]
        True where the row is SP2.
    codes : int64 [rows, K]
        SP2 codes on SP2 rows, 0 elsewhere.
    fixed : int64 [rows, K]
        Signed ``w_bits`` integers on fixed-point rows, 0 elsewhere.
    scale : float64 [rows]
        Real weight = ``scale * integer weight``; on SP2 rows ``alpha / 2^E``.
    sp2_fmt : SP2Format
    w_bits : int

    The arrays are validated (range and shape) and stored as read-only copies.
    """

    is_sp2: np.ndarray
    codes: np.ndarray
    fixed: np.ndarray
    scale: np.ndarray
    sp2_fmt: SP2Format
    w_bits: int

    def __post_init__(self):
        sp2.check_format(self.sp2_fmt)
        lo, hi = fixed.weight_range(self.w_bits)
        is_sp2 = np.array(self.is_sp2)
        if is_sp2.dtype != bool or is_sp2.ndim != 1:
            raise TypeError(f"Row kinds must be a 1-D bool array, not {is_sp2.dtype} of shape {is_sp2.shape}")
        codes = as_int_array("SP2 codes", self.codes, 0, self.sp2_fmt.n_codes - 1)
        ints = as_int_array("Fixed-point weights", self.fixed, lo, hi)
        for name, arr in (("SP2 codes", codes), ("Fixed-point weights", ints)):
            if arr.ndim != 2 or len(arr) != len(is_sp2):
                raise ValueError(f"{name} must have shape ({len(is_sp2)}, K), not {arr.shape}")
        if codes.shape != ints.shape:
            raise ValueError(f"SP2 codes and fixed-point weights must have one shape, "
                             f"not {codes.shape} and {ints.shape}")
        scale = as_row_scale("Scale", self.scale, len(is_sp2))
        for name, arr in (("is_sp2", is_sp2), ("codes", codes), ("fixed", ints), ("scale", scale)):
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    def integer_weights(self) -> np.ndarray:
        """int64 [rows, K]: the integer weight ``v`` of every element (SP2 value or fixed-point integer)."""
        return np.where(self.is_sp2[:, None], self.sp2_fmt.table[self.codes], self.fixed)

    def dequantize(self) -> np.ndarray:
        """float64 [rows, K]: ``scale[r] * v[r, k]``."""
        return self.scale[:, None] * self.integer_weights()


def quantize_mixed(w: Any, sp2_fraction: float, *, sp2_fmt: SP2Format = SP2Format(4),
                   w_bits: int = 4) -> MixedWeights:
    """Quantise ``w`` [rows, K] with the rows chosen by :func:`assign_rows` in SP2, the rest fixed point.

    Each row keeps the scale and integers its own scheme's quantiser gives it, so a row's error is exactly
    the error of that scheme alone.
    """
    fraction = _check_fraction(sp2_fraction)
    fixed.check_w_bits(w_bits)
    both = _Both(w, sp2.check_format(sp2_fmt), w_bits)
    is_sp2 = both.assign(fraction)
    rows = is_sp2[:, None]
    return MixedWeights(
        is_sp2=is_sp2,
        codes=np.where(rows, both.codes, 0),
        fixed=np.where(rows, 0, both.ints),
        scale=np.where(is_sp2, both.alpha / (1 << sp2_fmt.E), both.scale),
        sp2_fmt=sp2_fmt, w_bits=w_bits)
