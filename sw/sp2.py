"""Sum-of-power-of-2 (SP2) weights: format, quantiser, PyTorch layer and the golden model of ``sp2-mac``.

SP2 comes from "Mix and Match: A Novel FPGA-Centric Deep Neural Network Quantization Framework"
(S.-E. Chang et al., HPCA 2021, arXiv:2012.04240). A weight is ``alpha * (q1 + q2)`` with a per-row scale
``alpha`` and

    q1 in {0, 2^-1, 2^-2, ..., 2^-(2^m1 - 1)},   q2 in {0, 2^-1, ..., 2^-(2^m2 - 1)},   m1 >= m2,

so a multiplication is two shifts and an add. peforge stores a code of ``bits = 1 + m1 + m2`` bits,
MSB to LSB ``sign | e1 (m1 bits) | e2 (m2 bits)``, and works with the integer weight (docs/sp2-mac.md)

    E = 2^m1 - 1,   t(e) = 0 if e == 0 else 2^(E - e),   v = (-1)^sign * (t(e1) + t(e2)),

the real weight being ``alpha * v / 2^E`` (``q = 2^-e = t(e) / 2^E``). Several codes share a value (+0 and
-0; ``t(e1) + 0 == 0 + t(e2)``): the hardware computes every code's value, the quantiser emits one
canonical code per value (:meth:`SP2Format.canonical`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import numpy as np

from .intops import (CLIP_RATIOS, as_acts, as_int_array, as_real_array, as_real_matrix, as_row_scale,
                     exact_dot, fit_row_scale)
from .params import Params, check_int

__all__ = [
    "SP2Format", "check_format", "fit_alpha", "quantize", "dequantize", "golden_dot",
]

#: Largest m1: E = 2^m1 - 1 <= 15, so no shift exceeds 15 bits.
MAX_M1 = 4


class _Tables(NamedTuple):
    table: np.ndarray       # v of every code
    levels: np.ndarray      # sorted unique |v|
    level_code: np.ndarray  # canonical code of +levels[i]
    canon: np.ndarray       # canonical code of every code
    float_levels: np.ndarray
    twice_midpoints: np.ndarray  # levels[i] + levels[i + 1]


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


@dataclasses.dataclass(frozen=True)
class SP2Format(Params):
    """An SP2 code format: ``bits = 1 + m1 + m2`` bits, ``sign | e1 | e2`` from MSB to LSB.

    Members
    -------
    bits : int
        Code width, 2 to 8.
    m1 : int or None
        Width of the first exponent field, ``m1 >= m2 = bits - 1 - m1`` and ``m1 <= 4``; ``None`` (the
        default) resolves to ``ceil((bits - 1) / 2)``, the most balanced split, and :meth:`to_dict` then holds
        the resolved integer.

    Raises
    ------
    TypeError
        ``"SP2 bits must be an integer, not 4.0"``, ``"SP2 m1 must be an integer, not '2'"``.
    ValueError
        ``"SP2 bits must be an integer from 2 to 8, not 9"``,
        ``"SP2 m1 must be an integer from 2 to 3 for 4-bit codes (m1 >= m2 = bits - 1 - m1), not 1"``.

    Examples
    --------
    >>> fmt = SP2Format(4)
    >>> fmt.m1, fmt.m2, fmt.E, fmt.max_level
    (2, 1, 3, 8)
    >>> fmt.levels.tolist()
    [0, 1, 2, 4, 5, 6, 8]
    >>> fmt.decode([0b0_10_0, 0b0_00_1, 0b1_10_0, 0b1_11_1]).tolist()
    [2, 4, -2, -5]
    >>> fmt.encode([4.4, -0.4, 1.5, -7.0]).tolist()
    [2, 0, 6, 13]
    """

    bits: int = dataclasses.field(default=4, metadata={"doc": "code width, sign + m1 + m2 bits (2 to 8)"})
    m1: int | None = dataclasses.field(default=None, metadata={
        "doc": "width of the first exponent field, m1 >= m2 = bits - 1 - m1, m1 <= 4 "
               "(default ceil((bits - 1) / 2))"})

    def __post_init__(self):
        check_int("SP2 bits", self.bits, min=2, max=8)
        if self.m1 is None:
            object.__setattr__(self, "m1", self.bits // 2)  # == ceil((bits - 1) / 2)
        check_int("SP2 m1", self.m1)
        lo, hi = self.bits // 2, min(self.bits - 1, MAX_M1)
        if not lo <= self.m1 <= hi:
            why = "m1 >= m2 = bits - 1 - m1" + (f", m1 <= {MAX_M1}" if self.bits - 1 > MAX_M1 else "")
            raise ValueError(f"SP2 m1 must be an integer from {lo} to {hi} for {self.bits}-bit codes ({why}), "
                             f"not {self.m1!r}")

    # -- derived values -----------------------------------------------------------------------------
    @property
    def m2(self) -> int:
        """Width of the second exponent field, ``bits - 1 - m1``."""
        return self.bits - 1 - self.m1

    @property
    def E(self) -> int:
        """Largest shift, ``2^m1 - 1``; the integer weight ``v`` is the real one times ``2^E / alpha``."""
        return (1 << self.m1) - 1

    @property
    def n_codes(self) -> int:
        """Number of codes, ``2^bits`` (every one legal)."""
        return 1 << self.bits

    @property
    def max_level(self) -> int:
        """Largest ``|v|``: ``t(1) + t(1)`` (``2^E``), or ``2^(E-1)`` when ``m2 == 0``."""
        return int(self._tables.levels[-1])

    @property
    def max_q(self) -> float:
        """Largest ``|q1 + q2|`` (real weight over alpha), ``max_level / 2^E``: 1, or 1/2 when ``m2 == 0``."""
        return self.max_level / (1 << self.E)

    @property
    def table(self) -> np.ndarray:
        """Read-only int64 [2^bits]: ``v`` of every code."""
        return self._tables.table

    @property
    def levels(self) -> np.ndarray:
        """Read-only int64: the sorted distinct magnitudes ``|v|``, from 0 to :attr:`max_level`."""
        return self._tables.levels

    @functools.cached_property
    def _tables(self) -> _Tables:
        sign, e1, e2 = self._fields(np.arange(self.n_codes, dtype=np.int64))

        def term(e):
            return np.where(e == 0, 0, np.left_shift(1, np.maximum(self.E - e, 0)))

        table = np.where(sign == 1, -1, 1) * (term(e1) + term(e2))
        # Canonical code of a value: the smallest e2, then the smallest e1, then sign 0 (so -0 -> +0).
        order = np.lexsort((sign, e1, e2))
        values, first = np.unique(table[order], return_index=True)
        canon_of_value = dict(zip(values.tolist(), order[first].tolist()))
        canon = np.array([canon_of_value[v] for v in table.tolist()], dtype=np.int64)
        levels = values[values >= 0]
        level_code = np.array([canon_of_value[v] for v in levels.tolist()], dtype=np.int64)
        tables = (table, levels, level_code, canon, levels.astype(np.float64),
                  (levels[:-1] + levels[1:]).astype(np.float64))
        return _Tables(*(_read_only(a) for a in tables))

    # -- codes --------------------------------------------------------------------------------------
    def _fields(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return codes >> (self.bits - 1), (codes >> self.m2) & ((1 << self.m1) - 1), codes & ((1 << self.m2) - 1)

    def _codes(self, codes: Any) -> np.ndarray:
        return as_int_array("SP2 codes", codes, 0, self.n_codes - 1)

    def split(self, codes: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(sign, e1, e2)`` int64 arrays of range-checked codes.

        >>> [int(f) for f in SP2Format(4).split(0b1_01_1)]
        [1, 1, 1]
        """
        return self._fields(self._codes(codes))

    def decode(self, codes: Any) -> np.ndarray:
        """Integer weight ``v`` (int64, same shape) of every code.

        Raises
        ------
        TypeError, ValueError
            ``"SP2 codes must be integers from 0 to 15, not 16 (at index 2)"``.
        """
        return self.table[self._codes(codes)]

    def canonical(self, codes: Any) -> np.ndarray:
        """The canonical code of each code's value: smallest e2, then smallest e1; both zeros map to code 0.

        >>> SP2Format(4).canonical([0b0_00_1, 0b1_00_0]).tolist()
        [2, 0]
        """
        return self._tables.canon[self._codes(codes)]

    def _nearest(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index into :attr:`levels` of the level nearest to ``|x|`` (a tie to the smaller), and the sign."""
        # levels[i] wins when levels[i-1] + levels[i] < 2|x| <= levels[i] + levels[i+1]: i is the count of
        # doubled midpoints strictly below 2|x|. Exact: doubling a float is exact and the sums are small
        # integers. Beyond the last midpoint the index stays at the largest level (clipping).
        index = np.searchsorted(self._tables.twice_midpoints, 2 * np.abs(x), side="left")
        return index, (x < 0) & (index > 0)

    def _to_grid(self, x: np.ndarray) -> np.ndarray:
        """The signed nearest level ``v`` of every real ``x`` (float64), for the scale search."""
        return np.copysign(self._tables.float_levels[self._nearest(x)[0]], x)

    def encode(self, x: Any) -> np.ndarray:
        """Canonical code (int64, same shape) of the level nearest to each real ``x`` (in units of ``v``).

        ``|x|`` is clipped to :attr:`max_level`; a tie between two levels goes to the smaller magnitude;
        the sign bit is set only for a non-zero level, so 0, -0.0 and tiny negatives all give code 0.

        Raises
        ------
        TypeError
            ``"SP2 encoder input must be real numbers, not complex128 values"``.
        ValueError
            ``"SP2 encoder input must be finite, not nan (at index 3)"``.
        """
        arr = as_real_array("SP2 encoder input", x)
        index, negative = self._nearest(arr)
        return self._tables.level_code[index] | (negative.astype(np.int64) << (self.bits - 1))


# -- quantisation ----------------------------------------------------------------------------------------

def check_format(fmt: Any) -> SP2Format:
    """Return ``fmt`` if it is an :class:`SP2Format`, else raise ``TypeError("SP2 format must be ...")``."""
    if not isinstance(fmt, SP2Format):
        raise TypeError(f"SP2 format must be an SP2Format, not {fmt!r}")
    return fmt


def fit_alpha(w: Any, fmt: SP2Format) -> np.ndarray:
    """Per-row ``alpha`` minimising ``sum_k (w_k - alpha * v_k / 2^E)^2`` jointly with the codes ``v``.

    Candidates put the largest level at 5 % to 100 % of ``max|w|`` (plus ``alpha = max|w|`` itself), then
    Lloyd steps from the best (codes fixed: ``alpha = 2^E <w, v> / <v, v>``); the best alpha seen is kept,
    so the result is never worse than ``alpha = max|w|``. All-zero rows get ``alpha = 1.0``.

    Parameters
    ----------
    w : float array [rows, K]
    fmt : SP2Format

    Returns
    -------
    np.ndarray of float64 [rows]
    """
    w = as_real_matrix("Weights", w)
    return _fit_scale(w, check_format(fmt)) * (1 << fmt.E)


def _fit_scale(w: np.ndarray, fmt: SP2Format) -> np.ndarray:
    # The search works on scale = alpha / 2^E (exact: a power of two), real weight = scale * v.
    return fit_row_scale(w, fmt._to_grid, fmt.max_level, ratios=CLIP_RATIOS + (fmt.max_q,),
                         zero_scale=1.0 / (1 << fmt.E))


def quantize(w: Any, fmt: SP2Format, *, alpha: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Quantise ``w`` [rows, K] to SP2 codes with one ``alpha`` per row.

    ``code = encode(w * 2^E / alpha)``: the canonical code of the nearest level (ties to the smaller
    magnitude), real weight ``alpha * v(code) / 2^E``.

    Parameters
    ----------
    w : float array [rows, K] (numpy, list or torch tensor)
    fmt : SP2Format
    alpha : float array [rows], optional
        Use this scale instead of :func:`fit_alpha`.

    Returns
    -------
    (codes, alpha) : int64 [rows, K], float64 [rows]

    Examples
    --------
    >>> codes, alpha = quantize([[1.0, 0.5, -0.3, 0.0]], SP2Format(4), alpha=[1.0])
    >>> codes.tolist(), SP2Format(4).decode(codes).tolist()
    ([[3, 2, 12, 0]], [[8, 4, -2, 0]])
    """
    w = as_real_matrix("Weights", w)
    check_format(fmt)
    scale = _fit_scale(w, fmt) if alpha is None else as_row_scale("Alpha", alpha, len(w)) / (1 << fmt.E)
    return fmt.encode(w / scale[:, None]), scale * (1 << fmt.E)


def dequantize(codes: Any, alpha: Any, fmt: SP2Format) -> np.ndarray:
    """Real weights ``alpha[r] * v(codes[r, k]) / 2^E`` (float64 [rows, K])."""
    v = check_format(fmt).decode(codes)
    if v.ndim != 2:
        raise ValueError(f"SP2 codes must be a 2-D array [rows, K], not shape {v.shape}")
    return (as_row_scale("Alpha", alpha, len(v)) / (1 << fmt.E))[:, None] * v


def golden_dot(acts: Any, codes: Any, fmt: SP2Format, *, act_bits: int | None = None,
               act_signed: bool = True) -> np.ndarray:
    """Bit-exact result of the ``sp2-mac`` PE.

    .. math:: y_r = \\sum_k a_{r,k} \\, v(c_k), \\qquad
              v(c) = (-1)^{sign} \\left(t(e_1) + t(e_2)\\right), \\quad t(e) = [e > 0] \\, 2^{E - e},
              \\quad E = 2^{m_1} - 1

    (the SP2 level set of "Mix and Match: A Novel FPGA-Centric Deep Neural Network Quantization
    Framework", Chang et al., HPCA 2021, scaled by ``2^E`` to integers; the real result is
    ``alpha_r * y_r / 2^E``).

    Parameters
    ----------
    acts : int array [rows, K]
        Range-checked against ``act_bits`` (signed or not) when ``act_bits`` is given.
    codes : int array [K] (one weight vector for every row) or [rows, K]
        Codes in ``[0, 2^bits)``, always range-checked; every code is legal, canonical or not.
    fmt : SP2Format

    Returns
    -------
    np.ndarray of int64 [rows], exact (see :func:`sw.intops.exact_dot`).

    Raises
    ------
    TypeError, ValueError
        ``"SP2 codes must be integers from 0 to 15, not 16 (at index 3)"``,
        ``"Acts must be integers from -8 to 7, not 8 (at index (0, 1))"``, or a shape mismatch.

    Examples
    --------
    >>> golden_dot([[1, 2, 3]], [0b0_01_0, 0b0_00_1, 0b1_11_1], SP2Format(4), act_bits=4)
    array([-3])
    """
    a = as_acts(acts, act_bits, act_signed)
    return exact_dot(a, check_format(fmt).decode(codes))

