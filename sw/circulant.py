"""Block-circulant weights: format, spectral export and the bit-exact golden model of ``circulant-fft``.

A block-circulant weight matrix ``W [p*k, q*k]`` (CirCNN, Ding et al., MICRO 2017; C-LSTM, Wang et al.,
FPGA 2018; E-RNN, Li et al., HPCA 2019) is ``p x q`` blocks, each a ``k x k`` circulant given by its
**first column** ``c_ij``: ``C[r, s] = c[(r - s) mod k]``. A circulant is diagonalised by the DFT, so

    y_i = sum_j C(c_ij) x_j = IFFT( sum_j FFT(c_ij) o FFT(x_j) )                          (CirCNN, eq. 3)

one FFT per input block, a complex product per bin, accumulation in the frequency domain and one IFFT per
output block (with the first ROW ``r_ij`` instead one needs ``conj(FFT(r_ij))``). The weights are stored as
their quantised half spectrum: bins ``0 .. k/2`` of ``FFT(c_ij)`` (the rest is the complex conjugate),
bins 0 and ``k/2`` real.

Fixed-point schedule of the PE (what :func:`golden_matvec` computes; every operation on int64, no float)
-------------------------------------------------------------------------------------------------------
Notation: ``L = log2 k``; ``F = tw_bits - 2`` twiddle fraction bits; ``g = guard_bits``;
``sp = prod_shift``; one rounding mode everywhere, **round half up**::

    R_s(v) = (v + 2^(s-1)) >> s      (arithmetic shift, s >= 1);      R_0(v) = v

applied to each real component separately. Complex values are pairs of integers ``(re, im)``.

1. **Twiddles**, quantised once: ``tw[n] = (rint(cos(2 pi n / k) 2^F), rint(-sin(2 pi n / k) 2^F))`` for
   ``n < k/2`` (:attr:`CirculantFormat.twiddles`; ``1.0 = 2^F`` fits ``tw_bits`` signed bits, so the trivial
   twiddles ``1`` and ``-j`` are exact). A twiddle product is the exact complex product rounded once per
   component: ``rot(b, t) = (R_F(b_re t_re - b_im t_im), R_F(b_re t_im + b_im t_re))``; with a trivial
   twiddle it is exact (``R_F(v 2^F) = v``), so the hardware may skip those multiplications.
2. **Forward FFT**, per input block: radix-2 **decimation in frequency** (Sande-Tukey), in place,
   natural-order input, bit-reversed output. ``u_0[n] = (x[n] << g, 0)``; stage ``s = 1 .. L`` works on
   groups of ``N = k / 2^(s-1)`` positions; for every group base ``b`` and ``j < N/2``, with
   ``a = u[b + j]``, ``c = u[b + j + N/2]``::

       u_s[b + j]       = a + c
       u_s[b + j + N/2] = rot(a - c, tw[j * 2^(s-1)])

   No scaling: one bit of growth per stage. Position ``i`` of ``u_L`` holds bin ``bitrev_L(i)`` (``L``-bit
   reversal); ``X[m] = u_L[bitrev(m)]`` for ``m = 0 .. k/2`` is used, bins ``k/2+1 .. k-1`` are discarded.
   ``X[0]`` and ``X[k/2]`` come out with imaginary part exactly 0.
3. **Products**, exact, then rounded: ``P_j[m] = X_j[m] * W_ij[m]`` (``W`` the stored spectrum,
   ``w_bits`` signed components; four real products, two sums), ``Q_j[m] = R_sp(P_j[m])``.
4. **Accumulation**, exact: ``A[m] = sum_j Q_j[m]`` over the ``q <= max_q`` input blocks.
5. **Inverse FFT**, per output block: the Hermitian extension ``V[m] = A[m]`` (``m <= k/2``),
   ``V[m] = conj(A[k - m])`` (``k/2 < m < k``), loaded in bit-reversed order ``v_0[i] = V[bitrev(i)]``;
   radix-2 **decimation in time** (Cooley-Tukey), in place, natural-order output. Stage ``s = 1 .. L`` works
   on groups of ``N = 2^s``; for every group base ``b`` and ``j < N/2``::

       t                = rot(v[b + j + N/2], conj(tw[j * k / N]))
       v_s[b + j]       = v[b + j] + t
       v_s[b + j + N/2] = v[b + j] - t

   No scaling (one bit of growth per stage); the output ``v_L`` is ``k`` times the inverse DFT. With
   ``ifft_scale`` (:class:`CirculantFormat`) every stage is halved instead, ``v_s = floor((a +- t) / 2)``
   for both outputs of every butterfly (an arithmetic shift by 1), so the stages keep the accumulator's
   width and ``v_L`` is the inverse DFT itself.
6. **Output**: ``y[n] = R_L(re v_L[n])`` (the ``1/k`` of the inverse DFT; ``y[n] = re v_L[n]`` with
   ``ifft_scale``); the imaginary parts of the last stage are not needed.

So ``y_i ~ 2^(g - sp) / s_w[i] * sum_j C(c_ij) x_j``, the real output being :func:`dequantize`'s
``y * 2^(sp - g) * s_w[i] * act_scale``. Every width (stage values, products, accumulator, output) is
derived in one place, :class:`CirculantFormat` (``fft_bits``, ``product_bits``, ``acc_bits``,
``ifft_bits``, ``out_bits``, ``twiddle_product_bits``), from the worst case over all legal inputs and
weights, every rounding included, so nothing can overflow and nothing saturates. The forward widths, the
product and the accumulator are tight (some input reaches them); the inverse widths assume each
accumulated bin anywhere in the accumulator range, a safe over-estimate.

The default ``prod_shift = guard_bits + log2 k`` drops the guard bits and the forward FFT's growth, so the
rounded product has about ``act_bits + w_bits`` bits whatever ``k``; the forward FFT's rounding noise is
what limits the accuracy: each guard bit costs one bit in every forward stage and gains up to 6 dB, until
the weight quantisation dominates (table below).

Matching it in hardware, bit for bit
------------------------------------
* Take the twiddle ROM from :attr:`CirculantFormat.twiddles` (do not recompute cosines) and the inverse
  twiddles as its conjugate (negated imaginary part).
* A twiddle product is exact before its one rounding per component (a 3-multiplier complex product is
  fine, rounding each partial product is not); ``R_s`` adds ``2^(s-1)`` and shifts arithmetically, so
  ``-2.5 -> -2`` and ``2.5 -> 3``. Trivial twiddles (``1``, ``-j``) may skip the multiplier.
* The forward transform is the complex radix-2 DIF of the real block (imaginary input 0); butterflies
  that feed only bins ``k/2+1 .. k-1`` may be pruned, but a real-input trick (two-for-one packing, a
  half-length complex FFT) rounds differently and does not match.
* Bins 0 and ``k/2`` have imaginary part 0 in ``X``, the stored weights, the products and the
  accumulator (nothing to store). Products are rounded one by one, then summed exactly (in any order).
* The inverse transform starts from the Hermitian extension of the accumulated half spectrum, in
  bit-reversed order (``L``-bit reversal of the position), uses DIT butterflies with the rotation on the
  lower input, and keeps only the real part of the last stage, rounded by ``L`` bits.
* :func:`golden_matvec` with ``trace=True`` returns every stage by position, to find the first one that
  differs.

Measured accuracy
-----------------
SQNR (dB) of ``dequantize(golden_matvec(...))`` against the float64 product ``block_circulant(c) @ x``
with the same integer activations (their own quantisation is not counted): ``p = q = 4``, Gaussian first
columns, 256 vectors (numpy seed 0); activations uniform over the whole ``act_bits`` range / Gaussian with
``sigma = 2^(act_bits-1) / 4`` (clipped). Default: 8-bit signed activations, ``w_bits = 12``,
``tw_bits = 16``, ``guard_bits = 2``, ``prod_shift = 2 + log2 k``.

==========================  ==============  ==============  ==============
configuration               k = 8           k = 16          k = 64
==========================  ==============  ==============  ==============
default                     64.0 / 58.4     62.5 / 56.1     60.2 / 53.6
w_bits = 10                 55.5 / 54.1     56.0 / 53.5     54.1 / 50.6
guard_bits = 0              54.0 / 47.0     51.7 / 44.4     49.2 / 41.9
guard_bits = 3              66.7 / 63.1     66.2 / 61.5     64.0 / 58.8
tw_bits = 10                63.9 / 58.4     56.0 / 53.6     52.5 / 50.4
act_signed = False          67.5 / 62.6     64.0 / 58.8     66.3 / 57.8
w 18, tw 18, guard 8        99.9 / 94.5     98.3 / 92.2     95.4 / 89.5
ifft_scale                  63.9 / 58.5     62.5 / 56.2     59.8 / 53.2
ifft_scale, prod_shift + 2  63.8 / 58.2     62.0 / 55.5     55.8 / 48.8
==========================  ==============  ==============  ==============

(The two ``ifft_scale`` rows were measured later with Gaussian activations drawn after the columns from
the same generator; under that recipe the default row reads 64.0 / 58.5, 62.5 / 56.2, 60.2 / 53.7.)

(``k = 8`` has a single non-trivial twiddle, so ``tw_bits`` hardly matters there.) On sklearn digits, an
MLP 64-64-64-10 with two ``BlockCirculantLinear`` (``k = 8``) hidden layers, trained from scratch for 30
epochs, scores 96.4 % in float and 96.4 % with both hidden layers run through :func:`golden_matvec` (8-bit
unsigned activations, default widths; ``tests/test_sw_circulant.py``).

This module imports numpy only (the simulator loads the golden model without torch); the trainable layer
:class:`BlockCirculantLinear` is in :mod:`sw.circulant_torch`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np

from .intops import as_int_array, as_real_array, as_row_scale, int_range, signed_bits_for
from .params import Params, check_bool, check_int

__all__ = [
    "CirculantFormat", "CirculantTrace", "check_format", "round_shift", "bit_reverse", "block_circulant",
    "export_spectra", "spectra_to_columns", "quantize_acts", "dequantize", "golden_matvec", "sqnr_db",
]

#: Smallest and largest block size ``k``.
MIN_BLOCK, MAX_BLOCK = 4, 64
#: Largest twiddle and spectral weight width: a limit of the format (the widths the schedule is verified
#: for), not of a target. A generator maps any legal width onto its target's DSPs: operands wider than
#: the target's DSP operand (``dsp_bits`` of ``hw.circulant_fft.CirculantParams``, a fact of the synth
#: target table) are split or take the four-multiplier product.
MAX_TW_BITS = MAX_W_BITS = 18
#: Widest intermediate value allowed anywhere in the schedule, exact products included (int64 golden).
MAX_DATAPATH_BITS = 62



# -- integer primitives ----------------------------------------------------------------------------------

def round_shift(v: Any, s: int) -> np.ndarray:
    """Round half up and drop ``s`` bits: ``(v + 2^(s-1)) >> s`` (arithmetic shift), ``v`` for ``s = 0``.

    The one rounding mode of the ``circulant-fft`` schedule: ``floor(v / 2^s + 1/2)``.

    >>> round_shift([5, 6, 7, -5, -6, -7], 2).tolist()
    [1, 2, 2, -1, -1, -2]
    >>> round_shift([3, -3], 0).tolist()
    [3, -3]
    """
    v = np.asarray(v, dtype=np.int64)
    return v if s == 0 else (v + (1 << (s - 1))) >> s


def _rotate(re: np.ndarray, im: np.ndarray, tw_re: np.ndarray, tw_im: np.ndarray, frac: int):
    """``rot``: the exact complex product with a twiddle, each component rounded by ``R_frac``."""
    return (round_shift(re * tw_re - im * tw_im, frac), round_shift(re * tw_im + im * tw_re, frac))


def bit_reverse(k: int) -> np.ndarray:
    """The ``log2(k)``-bit reversal permutation of ``0 .. k-1`` (an involution), int64.

    >>> bit_reverse(8).tolist()
    [0, 4, 2, 6, 1, 5, 3, 7]
    """
    check_int("Bit-reversal length", k, min=1)
    if k & (k - 1):
        raise ValueError(f"Bit-reversal length must be a power of two, not {k!r}")
    bits = k.bit_length() - 1
    return np.array([int(format(i, f"0{bits}b")[::-1], 2) if bits else 0 for i in range(k)], dtype=np.int64)


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


def _dif_pairs(k: int, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(top, bottom, twiddle index)`` positions of the butterflies of forward (DIF) stage ``s``."""
    n = k >> (s - 1)
    base = np.arange(0, k, n)[:, None]
    j = np.arange(n // 2)[None, :]
    return (base + j).ravel(), (base + j + n // 2).ravel(), np.broadcast_to(j << (s - 1), (k // n, n // 2)).ravel()


def _dit_pairs(k: int, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(top, bottom, twiddle index)`` positions of the butterflies of inverse (DIT) stage ``s``."""
    n = 1 << s
    base = np.arange(0, k, n)[:, None]
    j = np.arange(n // 2)[None, :]
    return (base + j).ravel(), (base + j + n // 2).ravel(), np.broadcast_to(j * (k // n), (k // n, n // 2)).ravel()


# -- worst-case analysis -----------------------------------------------------------------------------------
#
# Every value of the schedule is (linear part) + (rounding error): the linear part is the exact linear map of
# the free inputs with the quantised twiddles as exact fractions t / 2^F, the error is bounded per component
# (each rounding adds at most 1/2; a product with t scales an error (e_re, e_im) to at most
# (e_re |t_re| + e_im |t_im|, e_re |t_im| + e_im |t_re|) / 2^F). The extremes of a linear function over a
# box of inputs are exact (a vertex); adding the error bound gives a safe integer range. float64 with a
# relative margin of 1e-9 (far above its rounding, far below one LSB) keeps it safe.

@dataclasses.dataclass
class _Tracked:
    re: np.ndarray   # [positions, params] coefficients of the real part
    im: np.ndarray
    e_re: np.ndarray  # [positions] error bounds
    e_im: np.ndarray

    def take(self, idx: np.ndarray) -> _Tracked:
        return _Tracked(self.re[idx], self.im[idx], self.e_re[idx], self.e_im[idx])

    def __add__(self, other: _Tracked) -> _Tracked:
        return _Tracked(self.re + other.re, self.im + other.im, self.e_re + other.e_re, self.e_im + other.e_im)

    def __sub__(self, other: _Tracked) -> _Tracked:
        return _Tracked(self.re - other.re, self.im - other.im, self.e_re + other.e_re, self.e_im + other.e_im)

    def rotate(self, tw: np.ndarray, frac: int) -> _Tracked:
        tr, ti = tw[:, 0].astype(np.float64), tw[:, 1].astype(np.float64)
        one = float(1 << frac)
        trivial = ((np.abs(tr) == one) & (ti == 0)) | ((tr == 0) & (np.abs(ti) == one))
        rounding = np.where(trivial, 0.0, 0.5)
        r, i = tr[:, None] / one, ti[:, None] / one
        ar, ai = np.abs(tr) / one, np.abs(ti) / one
        return _Tracked(self.re * r - self.im * i, self.re * i + self.im * r,
                        self.e_re * ar + self.e_im * ai + rounding, self.e_re * ai + self.e_im * ar + rounding)

    def halve(self) -> _Tracked:
        """``floor(v / 2)``: half the linear part, half the error plus up to 1/2 more."""
        return _Tracked(self.re / 2, self.im / 2, self.e_re / 2 + 0.5, self.e_im / 2 + 0.5)

    def scatter(self, top: np.ndarray, bottom: np.ndarray, a: _Tracked, b: _Tracked) -> _Tracked:
        out = _Tracked(np.empty_like(self.re), np.empty_like(self.im), np.empty_like(self.e_re),
                       np.empty_like(self.e_im))
        for idx, part in ((top, a), (bottom, b)):
            out.re[idx], out.im[idx], out.e_re[idx], out.e_im[idx] = part.re, part.im, part.e_re, part.e_im
        return out


def _linear_extremes(coef: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min and max of each row's linear function over the box ``[lo, hi]^params``, and a safety margin."""
    mx = np.where(coef >= 0, coef * hi, coef * lo).sum(axis=-1)
    mn = np.where(coef >= 0, coef * lo, coef * hi).sum(axis=-1)
    margin = 1e-9 * (1.0 + np.abs(coef).sum(axis=-1) * max(abs(lo), abs(hi)))
    return mn, mx, margin


def _int_range(*values: tuple[_Tracked, int, int]) -> tuple[int, int]:
    """Safe integer ``(lo, hi)`` of every component of the tracked values (each with its input box)."""
    lows, highs = [], []
    for val, lo, hi in values:
        for coef, err in ((val.re, val.e_re), (val.im, val.e_im)):
            mn, mx, margin = _linear_extremes(coef, lo, hi)
            lows.append(math.ceil(float(np.min(mn - err - margin))))
            highs.append(math.floor(float(np.max(mx + err + margin))))
    return min(lows), max(highs)


class _Bounds:
    """Integer ranges of every value of the schedule for ``q`` accumulated input blocks (see above)."""

    def __init__(self, fmt: CirculantFormat, q: int):
        k, L, frac, tw = fmt.block, fmt.stages, fmt.tw_frac, fmt.twiddles
        half = k // 2
        x_lo, x_hi = (v << fmt.guard_bits for v in fmt.act_range)
        # Forward FFT: params = the k (shifted) inputs.
        u = _Tracked(np.eye(k), np.zeros((k, k)), np.zeros(k), np.zeros(k))
        self.fft = [(x_lo, x_hi)]
        self.fft_mult_in = []
        for s in range(1, L + 1):
            top, bot, j = _dif_pairs(k, s)
            a, c = u.take(top), u.take(bot)
            total, diff = a + c, a - c
            rot = diff.rotate(tw[j], frac)
            self.fft.append(_int_range((total, x_lo, x_hi), (diff, x_lo, x_hi), (rot, x_lo, x_hi)))
            self.fft_mult_in.append(_int_range((diff, x_lo, x_hi)))
            u = u.scatter(top, bot, total, rot)
        # Products: |re P|, |im P| <= 2^(w-1) (|re X| + |im X|) for any stored weight.
        spec = u.take(bit_reverse(k)[:half + 1])
        mag = 0
        for sign in (1, -1):  # max |re X + im X| and max |re X - im X|: max(|re X| + |im X|)
            mn, mx, margin = _linear_extremes(spec.re + sign * spec.im, x_lo, x_hi)
            peak = np.maximum(mx, -mn) + spec.e_re + spec.e_im + margin
            mag = max(mag, math.floor(float(peak.max())))
        p_max = mag << (fmt.w_bits - 1)
        self.product = (-p_max, p_max)
        self.rounded = (_shift_int(-p_max, fmt.prod_shift), _shift_int(p_max, fmt.prod_shift))
        self.acc = (q * self.rounded[0], q * self.rounded[1])
        # Inverse FFT: params = the k real degrees of freedom of the accumulated half spectrum, theta =
        # (re A[0], re A[1 .. k/2-1], re A[k/2], im A[1 .. k/2-1]), each anywhere in the accumulator range.
        v_re, v_im = np.zeros((k, k)), np.zeros((k, k))
        for m in range(half + 1):
            v_re[m, m] = 1.0
            if 0 < m < half:
                v_im[m, half + m] = 1.0
                v_re[k - m, m] = 1.0
                v_im[k - m, half + m] = -1.0
        order = bit_reverse(k)
        v = _Tracked(v_re[order], v_im[order], np.zeros(k), np.zeros(k))
        a_lo, a_hi = self.acc
        self.ifft = [self.acc]
        self.ifft_mult_in = []
        conj = tw * np.array([1, -1])
        for s in range(1, L + 1):
            top, bot, j = _dit_pairs(k, s)
            a, b = v.take(top), v.take(bot)
            t = b.rotate(conj[j], frac)
            total, diff = a + t, a - t
            if fmt.ifft_scale:
                total, diff = total.halve(), diff.halve()
            self.ifft.append(_int_range((t, a_lo, a_hi), (total, a_lo, a_hi), (diff, a_lo, a_hi)))
            self.ifft_mult_in.append(_int_range((b, a_lo, a_hi)))
            v = v.scatter(top, bot, total, diff)
        real = _Tracked(v.re, np.zeros_like(v.im), v.e_re, np.zeros_like(v.e_im))
        last_lo, last_hi = _int_range((real, a_lo, a_hi))
        shift = 0 if fmt.ifft_scale else L
        self.out = (_shift_int(last_lo, shift), _shift_int(last_hi, shift))


@functools.lru_cache(maxsize=256)
def _bounds(fmt: CirculantFormat, q: int) -> _Bounds:
    return _Bounds(fmt, q)


def _shift_int(v: int, s: int) -> int:
    """:func:`round_shift` of a Python int (bounds may exceed int64 before validation)."""
    return v if s == 0 else (v + (1 << (s - 1))) >> s


def _bits(lo_hi: tuple[int, int]) -> int:
    return signed_bits_for(*lo_hi)


# -- the format ----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CirculantFormat(Params):
    """Number format and fixed-point schedule of the ``circulant-fft`` PE (see the module docstring).

    Members
    -------
    block : int
        Block size ``k``, a power of two from 4 to 64.
    act_bits : int
        Activation width, 2 to 16 bits.
    act_signed : bool
        Two's-complement activations (default) or unsigned ones (post-ReLU).
    w_bits : int
        Width of each component (real, imaginary) of a stored spectral weight, 4 to 18 bits, signed.
    tw_bits : int
        Twiddle component width, 4 to 18 bits, signed, with ``F = tw_bits - 2`` fraction bits (1.0 fits).
    guard_bits : int
        Fraction bits below the activation LSB in the forward FFT, 0 to 8: its input is ``x << guard_bits``.
    prod_shift : int or None
        Bits dropped (round half up) from each exact complex product before accumulation, from 0 to
        ``product_bits - 2``; ``None`` (default) resolves to ``guard_bits + stages``, and :meth:`to_dict`
        then holds the resolved integer.
    max_q : int
        Largest number of input blocks ``q`` accumulated into one output block (sizes the accumulator and
        the IFFT), 1 to 65536.
    ifft_scale : bool
        Halve every inverse stage (``floor``) instead of dividing by ``k`` at the output (step 5 of the
        schedule): the inverse stages keep the accumulator's width. Default False.

    Derived widths (signed two's complement, from the worst case over every legal input, including every
    rounding): :meth:`fft_bits` (stage ``s`` of the forward FFT), :attr:`product_bits`, :meth:`acc_bits`,
    :meth:`ifft_bits`, :meth:`out_bits`, :meth:`widths`.

    Raises
    ------
    TypeError
        ``"Circulant block must be an integer, not 16.0"``, ``"Circulant act_signed must be a bool, not 1"``,
        ``"Circulant ifft_scale must be a bool, not 1"``.
    ValueError
        ``"Circulant block must be a power of two from 4 to 64, not 12"``,
        ``"Circulant twiddle bits must be an integer from 4 to 18, not 20"``,
        ``"Circulant product shift must be an integer from 0 to 24 (below the 26-bit product), not 30"``,
        ``"Circulant datapath must be at most 62 bits wide, not 71 (inverse twiddle product of stage 6); lower
        max_q, act_bits, guard_bits, w_bits or tw_bits, or raise prod_shift"``.

    Examples
    --------
    >>> fmt = CirculantFormat()
    >>> fmt.block, fmt.stages, fmt.prod_shift, fmt.tw_frac
    (16, 4, 6, 14)
    >>> [fmt.fft_bits(s) for s in range(fmt.stages + 1)], fmt.product_bits
    ([10, 11, 12, 13, 14], 26)
    >>> fmt.acc_bits(), [fmt.ifft_bits(s) for s in range(fmt.stages + 1)], fmt.out_bits()
    (26, [26, 27, 28, 29, 30], 26)
    """

    block: int = dataclasses.field(default=16, metadata={"doc": "block size k, a power of two from 4 to 64"})
    act_bits: int = dataclasses.field(default=8, metadata={"doc": "activation width, 2 to 16 bits"})
    act_signed: bool = dataclasses.field(default=True, metadata={
        "doc": "two's-complement activations (false: unsigned, post-ReLU)"})
    w_bits: int = dataclasses.field(default=12, metadata={
        "doc": "spectral weight component width (re and im each), 4 to 18 bits, signed"})
    tw_bits: int = dataclasses.field(default=16, metadata={
        "doc": "twiddle component width, 4 to 18 bits, signed, tw_bits - 2 fraction bits"})
    guard_bits: int = dataclasses.field(default=2, metadata={
        "doc": "fraction bits below the activation LSB in the forward FFT (input x << guard_bits), 0 to 8"})
    prod_shift: int | None = dataclasses.field(default=None, metadata={
        "doc": "bits rounded off each complex product before accumulation (default guard_bits + log2 k)"})
    max_q: int = dataclasses.field(default=64, metadata={
        "doc": "most input blocks accumulated into one output block (sizes accumulator and IFFT), 1 to 65536"})
    ifft_scale: bool = dataclasses.field(default=False, metadata={
        "doc": "halve every inverse stage (floor) instead of dividing by k at the output: narrower inverse stages"})

    def __post_init__(self):
        check_int("Circulant block", self.block)
        if not (MIN_BLOCK <= self.block <= MAX_BLOCK and self.block & (self.block - 1) == 0):
            raise ValueError(f"Circulant block must be a power of two from {MIN_BLOCK} to {MAX_BLOCK}, "
                             f"not {self.block!r}")
        check_int("Circulant activation bits", self.act_bits, min=2, max=16)
        check_bool("Circulant act_signed", self.act_signed)
        check_int("Circulant weight bits", self.w_bits, min=4, max=MAX_W_BITS)
        check_int("Circulant twiddle bits", self.tw_bits, min=4, max=MAX_TW_BITS)
        check_int("Circulant guard bits", self.guard_bits, min=0, max=8)
        check_int("Circulant max_q", self.max_q, min=1, max=1 << 16)
        check_bool("Circulant ifft_scale", self.ifft_scale)
        if self.prod_shift is None:
            object.__setattr__(self, "prod_shift", self.guard_bits + self.stages)
        check_int("Circulant product shift", self.prod_shift, min=0)
        # The product range does not depend on prod_shift: check it before the bounds that do.
        top = self.product_bits - 2
        if self.prod_shift > top:
            raise ValueError(f"Circulant product shift must be an integer from 0 to {top} (below the "
                             f"{self.product_bits}-bit product), not {self.prod_shift!r}")
        name, bits = max(self._datapath().items(), key=lambda item: item[1])
        if bits > MAX_DATAPATH_BITS:
            raise ValueError(f"Circulant datapath must be at most {MAX_DATAPATH_BITS} bits wide, not {bits!r} "
                             f"({name}); lower max_q, act_bits, guard_bits, w_bits or tw_bits, or raise "
                             f"prod_shift")

    # -- structure --------------------------------------------------------------------------------------
    @property
    def stages(self) -> int:
        """Radix-2 stages per transform, ``L = log2 k``."""
        return self.block.bit_length() - 1

    @property
    def bins(self) -> int:
        """Stored spectral bins per block, ``k/2 + 1``."""
        return self.block // 2 + 1

    @property
    def tw_frac(self) -> int:
        """Twiddle fraction bits ``F = tw_bits - 2``: 1.0 is ``2^F``, inside the signed ``tw_bits`` range."""
        return self.tw_bits - 2

    @functools.cached_property
    def twiddles(self) -> np.ndarray:
        """Read-only int64 ``[k/2, 2]``: ``(rint(cos(2 pi n/k) 2^F), rint(-sin(2 pi n/k) 2^F))``, ``n < k/2``.

        The forward FFT multiplies by ``tw[n]`` (``exp(-2 pi i n / k)``), the inverse by its conjugate. The
        hardware takes its twiddle ROM from here. Computed from the first octant by symmetry, so
        ``tw[k/4] = (0, -2^F)`` exactly and ``tw[k/2 - n] = (-re, im)`` of ``tw[n]``.

        >>> CirculantFormat(block=8, tw_bits=6).twiddles.tolist()
        [[16, 0], [11, -11], [0, -16], [-11, -11]]
        """
        k, one = self.block, 1 << self.tw_frac
        n = np.arange(k // 8 + 1)
        c = np.rint(np.cos(2 * np.pi * n / k) * one).astype(np.int64)   # cos, n in the first octant
        s = np.rint(np.sin(2 * np.pi * n / k) * one).astype(np.int64)
        cos, sin = np.zeros(k // 2, np.int64), np.zeros(k // 2, np.int64)
        for i in range(k // 2):
            # angle i * 2 pi / k in [0, pi): fold into [0, pi/4] (cos(pi/2 - a) = sin(a), cos(pi - a) = -cos(a))
            if i <= k // 8:
                cos[i], sin[i] = c[i], s[i]
            elif i <= k // 4:
                cos[i], sin[i] = s[k // 4 - i], c[k // 4 - i]
            elif i <= 3 * k // 8:
                cos[i], sin[i] = -s[i - k // 4], c[i - k // 4]
            else:
                cos[i], sin[i] = -c[k // 2 - i], s[k // 2 - i]
        return _read_only(np.stack([cos, -sin], axis=-1))

    @property
    def act_range(self) -> tuple[int, int]:
        """``(lo, hi)`` of the activations the PE accepts (``act_bits``, signed or not)."""
        return int_range(self.act_bits, self.act_signed)

    @property
    def w_range(self) -> tuple[int, int]:
        """``(lo, hi)`` of a stored spectral component: the full signed ``w_bits`` range."""
        return int_range(self.w_bits, True)

    @property
    def out_lsb(self) -> float:
        """``2^(prod_shift - guard_bits)``: the output LSB in units of (activation LSB x spectral weight LSB)."""
        return math.ldexp(1.0, self.prod_shift - self.guard_bits)

    # -- derived widths ---------------------------------------------------------------------------------
    @functools.cached_property
    def _max_bounds(self) -> _Bounds:
        return _bounds(self, self.max_q)

    def _bounds(self, q: int | None) -> _Bounds:
        if q is None:
            return self._max_bounds
        check_int("Circulant q", q, min=1, max=self.max_q)
        return _bounds(self, q)

    def _stage(self, s: int) -> int:
        check_int("Stage", s, min=0, max=self.stages)
        return s

    def fft_range(self, s: int) -> tuple[int, int]:
        """Integer range of every value of forward stage ``s`` (0: the input ``x << g``; butterfly sums,
        differences and rotated differences of stages ``1 .. L``)."""
        return self._max_bounds.fft[self._stage(s)]

    def fft_bits(self, s: int) -> int:
        """Signed width of forward stage ``s`` (see :meth:`fft_range`); ``fft_bits(L)`` is the spectrum's."""
        return _bits(self.fft_range(s))

    @property
    def product_range(self) -> tuple[int, int]:
        """Range of each component of an exact product ``X[m] * W[m]``: ``+-2^(w_bits-1) max(|re X| + |im X|)``."""
        return self._max_bounds.product

    @property
    def product_bits(self) -> int:
        """Signed width of an exact complex product (before ``R_prod_shift``)."""
        return _bits(self.product_range)

    def acc_range(self, q: int | None = None) -> tuple[int, int]:
        """Range of an accumulator component for ``q`` input blocks (default ``max_q``)."""
        return self._bounds(q).acc

    def acc_bits(self, q: int | None = None) -> int:
        """Signed accumulator width for ``q`` input blocks (default ``max_q``); also the IFFT input width."""
        return _bits(self.acc_range(q))

    def ifft_range(self, s: int, q: int | None = None) -> tuple[int, int]:
        """Range of inverse stage ``s`` (0: the accumulated spectrum; rotated values and butterfly outputs
        of stages ``1 .. L``) for ``q`` input blocks (default ``max_q``)."""
        return self._bounds(q).ifft[self._stage(s)]

    def ifft_bits(self, s: int, q: int | None = None) -> int:
        """Signed width of inverse stage ``s`` (see :meth:`ifft_range`)."""
        return _bits(self.ifft_range(s, q))

    def out_range(self, q: int | None = None) -> tuple[int, int]:
        """Range of the PE output ``y = R_L(re v_L)`` for ``q`` input blocks (default ``max_q``)."""
        return self._bounds(q).out

    def out_bits(self, q: int | None = None) -> int:
        """Signed width of the PE output for ``q`` input blocks (default ``max_q``)."""
        return _bits(self.out_range(q))

    def twiddle_product_bits(self, transform: str, s: int) -> int:
        """Width of the exact twiddle products (``b_re t_re - b_im t_im``, before ``R_F``) of stage ``s``
        (1 .. L) of ``transform`` (``"fft"`` or ``"ifft"``): ``2^(bits-1) max(|t_re| + |t_im|)`` for the
        ``bits``-wide multiplier input."""
        if transform not in ("fft", "ifft"):
            raise ValueError(f"Transform must be one of 'fft', 'ifft', not {transform!r}")
        check_int("Stage", s, min=1, max=self.stages)
        b = self._max_bounds
        lo, hi = (b.fft_mult_in if transform == "fft" else b.ifft_mult_in)[s - 1]
        peak = max(-lo, hi) * int(np.abs(self.twiddles).sum(axis=1).max())
        return signed_bits_for(-peak, peak)

    def _datapath(self) -> dict[str, int]:
        rows = {f"forward stage {s}": self.fft_bits(s) for s in range(self.stages + 1)}
        rows.update({f"forward twiddle product of stage {s}": self.twiddle_product_bits("fft", s)
                     for s in range(1, self.stages + 1)})
        rows["complex product"] = self.product_bits
        rows[f"accumulator for max_q = {self.max_q}"] = self.acc_bits()
        rows.update({f"inverse stage {s}": self.ifft_bits(s) for s in range(1, self.stages + 1)})
        rows.update({f"inverse twiddle product of stage {s}": self.twiddle_product_bits("ifft", s)
                     for s in range(1, self.stages + 1)})
        rows["output"] = self.out_bits()
        return rows

    def widths(self, q: int | None = None) -> dict[str, int]:
        """Every signed width of the schedule for ``q`` input blocks (default ``max_q``), in datapath order.

        Keys: ``x``, ``fft1 .. fftL``, ``product``, ``rounded``, ``acc``, ``ifft1 .. ifftL``, ``out``.
        """
        b = self._bounds(q)
        rows = {"x": _bits(self.act_range)}
        rows.update({f"fft{s}": _bits(b.fft[s]) for s in range(1, self.stages + 1)})
        rows.update(product=_bits(b.product), rounded=_bits(b.rounded), acc=_bits(b.acc))
        rows.update({f"ifft{s}": _bits(b.ifft[s]) for s in range(1, self.stages + 1)})
        rows["out"] = _bits(b.out)
        return rows


def check_format(fmt: Any) -> CirculantFormat:
    """Return ``fmt`` if it is a :class:`CirculantFormat`, else raise ``TypeError``."""
    if not isinstance(fmt, CirculantFormat):
        raise TypeError(f"Circulant format must be a CirculantFormat, not {fmt!r}")
    return fmt


# -- float side: dense matrices, spectra, scales ---------------------------------------------------------------

def _columns(columns: Any, k: int | None = None) -> np.ndarray:
    c = as_real_array("Circulant columns", columns, ndim=3, layout=" [p, q, k]")
    if k is not None and c.shape[-1] != k:
        raise ValueError(f"Circulant columns must have k = {k} entries per block (last axis), "
                         f"not shape {c.shape}")
    return c


def block_circulant(columns: Any) -> np.ndarray:
    """The dense float64 matrix ``[p*k, q*k]`` of first columns ``[p, q, k]``: block ``(i, j)`` is
    ``C[r, s] = c_ij[(r - s) mod k]`` (``scipy.linalg.circulant(c_ij)``).

    >>> block_circulant([[[1, 2, 3]]]).astype(int).tolist()
    [[1, 3, 2], [2, 1, 3], [3, 2, 1]]
    """
    c = _columns(columns)
    p, q, k = c.shape
    r = np.arange(k)
    blocks = c[:, :, (r[:, None] - r[None, :]) % k]          # [p, q, k (row r), k (column s)]
    return blocks.transpose(0, 2, 1, 3).reshape(p * k, q * k)


def export_spectra(columns: Any, fmt: CirculantFormat, *, scale: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Quantised half spectra of float first columns: the weights of the ``circulant-fft`` PE.

    With ``C_ij = rfft(c_ij)`` (bins ``0 .. k/2`` of ``sum_n c_ij[n] exp(-2 pi i m n / k)``; bins 0 and
    ``k/2`` real) and one scale per output block row ``i``::

        s_w[i] = max_{j, m} max(|re C_ij[m]|, |im C_ij[m]|) / (2^(w_bits-1) - 1)     (1.0 for an all-zero row)
        W_ij[m] = clip(rint(C_ij[m] / s_w[i]), -(2^(w_bits-1) - 1), 2^(w_bits-1) - 1)   per component

    ``rint`` is round half to even (``numpy.rint``, as in :func:`sw.fixed.quantize`). A scale per output
    block row is the finest one that frequency-domain accumulation allows (the ``q`` products summed into
    one accumulator must share it); :func:`dequantize` applies it.

    Parameters
    ----------
    columns : float array [p, q, k] (numpy, list or torch tensor)
        First columns ``c_ij`` (``BlockCirculantLinear.columns``).
    fmt : CirculantFormat
    scale : float array [p], optional
        Use this scale instead of the max-abs one (components beyond the range are clipped).

    Returns
    -------
    (spectra, scale) : int64 [p, q, k/2 + 1, 2] (real, imaginary; the imaginary part of bins 0 and k/2 is 0),
    float64 [p]. The real spectrum is ``scale[i] * (W[..., 0] + 1j * W[..., 1])``.

    Raises
    ------
    ValueError
        ``"Circulant columns must have k = 16 entries per block (last axis), not shape (2, 3, 8)"``.

    Examples
    --------
    >>> spectra, scale = export_spectra([[[1.0, 0.5, 0.0, 0.5]]], CirculantFormat(block=4, w_bits=4))
    >>> spectra.tolist(), scale.tolist()       # rfft = [2, 1, 0]; 1 / scale = 3.5 -> rint: 4 (half to even)
    ([[[[7, 0], [4, 0], [0, 0]]]], [0.2857142857142857])
    """
    fmt = check_format(fmt)
    c = _columns(columns, fmt.block)
    spec = np.fft.rfft(c, axis=-1)
    parts = np.stack([spec.real, spec.imag], axis=-1)
    parts[..., 0, 1] = parts[..., -1, 1] = 0.0
    top = fmt.w_range[1]
    if scale is None:
        peak = np.abs(parts).reshape(len(parts), -1).max(axis=1, initial=0.0)
        scale = np.where(peak > 0, peak / top, 1.0)
    else:
        scale = as_row_scale("Scale", scale, len(parts))
    w = np.clip(np.rint(parts / scale[:, None, None, None]), -top, top).astype(np.int64)
    return w, scale


def _spectra(spectra: Any, fmt: CirculantFormat) -> np.ndarray:
    lo, hi = fmt.w_range
    w = as_int_array("Circulant spectra", spectra, lo, hi)
    if w.ndim != 4 or w.shape[2:] != (fmt.bins, 2) or w.shape[1] < 1:
        raise ValueError(f"Circulant spectra must be an array [p, q, {fmt.bins}, 2] with q >= 1 (k = {fmt.block}), "
                         f"not shape {w.shape}")
    real_bins = w[:, :, [0, -1], 1]
    if np.any(real_bins):
        i, j, b = (int(v) for v in np.argwhere(real_bins)[0])
        raise ValueError(f"Circulant spectra must have imaginary part 0 in bins 0 and k/2, "
                         f"not {int(real_bins[i, j, b])} (at index {(i, j, (0, fmt.bins - 1)[b], 1)})")
    return w


def spectra_to_columns(spectra: Any, scale: Any, fmt: CirculantFormat) -> np.ndarray:
    """The float64 first columns ``[p, q, k]`` that quantised spectra stand for:
    ``irfft(scale[i] * (W[..., 0] + 1j * W[..., 1]), n=k)``."""
    fmt = check_format(fmt)
    w = _spectra(spectra, fmt)
    scale = as_row_scale("Scale", scale, len(w))
    return np.fft.irfft(scale[:, None, None] * (w[..., 0] + 1j * w[..., 1]), n=fmt.block, axis=-1)


def quantize_acts(x: Any, fmt: CirculantFormat, *, scale: float | None = None) -> tuple[np.ndarray, float]:
    """Activations to ``act_bits`` integers with one scale per tensor: ``clip(rint(x / scale), lo, hi)``.

    The default scale maps ``max|x|`` (signed) or ``max(x)`` (unsigned; negative values clip to 0) to the
    largest code ``hi``; ``1.0`` if that is 0. Returns ``(x_int int64, scale)``; the real activation is
    ``scale * x_int``.

    >>> quantize_acts([0.5, -1.0, 0.25], CirculantFormat(act_bits=4))
    (array([ 4, -7,  2]), 0.14285714285714285)
    """
    fmt = check_format(fmt)
    arr = as_real_array("Activations", x)
    lo, hi = fmt.act_range
    if scale is None:
        peak = float(np.abs(arr).max(initial=0.0) if fmt.act_signed else np.maximum(arr, 0).max(initial=0.0))
        scale = peak / hi if peak > 0 else 1.0
    elif isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"Activation scale must be a positive finite number, not {scale!r}")
    return np.clip(np.rint(arr / scale), lo, hi).astype(np.int64), float(scale)


def dequantize(y: Any, scale: Any, fmt: CirculantFormat, act_scale: float = 1.0) -> np.ndarray:
    """Real outputs ``y * 2^(prod_shift - guard_bits) * scale[i] * act_scale`` (float64) of PE outputs.

    Parameters
    ----------
    y : int array [..., p, k]
        :func:`golden_matvec` outputs, within ``fmt.out_range()``.
    scale : float array [p]
        The weight scale from :func:`export_spectra`.
    fmt : CirculantFormat
    act_scale : float
        The caller's activation scale (real activation = ``act_scale * x``; :func:`quantize_acts`); 1.0
        leaves the result in units of the integer activations.

    Raises
    ------
    ValueError
        ``"Circulant outputs must be integers from ... to ..., not ... (at index ...)"``, a shape mismatch.
    """
    fmt = check_format(fmt)
    lo, hi = fmt.out_range()
    v = as_int_array("Circulant outputs", y, lo, hi)
    if v.ndim < 2 or v.shape[-1] != fmt.block:
        raise ValueError(f"Circulant outputs must be an array [..., p, {fmt.block}], not shape {v.shape}")
    if isinstance(act_scale, bool) or not isinstance(act_scale, (int, float)) or not (
            math.isfinite(act_scale) and act_scale > 0):
        raise ValueError(f"Activation scale must be a positive finite number, not {act_scale!r}")
    s = as_row_scale("Scale", scale, v.shape[-2])
    return v * (s[:, None] * (fmt.out_lsb * act_scale))


def sqnr_db(reference: Any, estimate: Any) -> float:
    """Signal-to-quantisation-noise ratio ``10 log10(sum ref^2 / sum (ref - est)^2)`` in dB (``inf`` if equal).

    >>> round(sqnr_db([1.0, 2.0], [1.0, 2.02]), 2)
    40.97
    """
    ref = as_real_array("SQNR reference", reference)
    est = as_real_array("SQNR estimate", estimate)
    if ref.shape != est.shape:
        raise ValueError(f"SQNR estimate must have the reference's shape {ref.shape}, not {est.shape}")
    noise = float(np.square(ref - est).sum())
    signal = float(np.square(ref).sum())
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


# -- golden model ------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CirculantTrace:
    """Every intermediate value of :func:`golden_matvec`, to locate an RTL mismatch to a stage.

    Complex values have a last axis of 2 (real, imaginary); ``...`` is the batch shape of the activations.

    Members
    -------
    fft : tuple of L + 1 int64 arrays [..., q, k, 2]
        Forward stages by position: ``fft[0]`` the input ``(x << g, 0)``, ``fft[s]`` after DIF stage ``s``;
        position ``i`` of ``fft[L]`` holds bin ``bitrev(i)``.
    spectrum : int64 [..., q, k/2 + 1, 2]
        ``X[m]``, natural bin order.
    products : int64 [..., p, q, k/2 + 1, 2]
        Exact ``X_j[m] * W_ij[m]``.
    rounded : int64 [..., p, q, k/2 + 1, 2]
        ``R_prod_shift`` of the products.
    acc : int64 [..., p, k/2 + 1, 2]
        The accumulated half spectrum.
    ifft : tuple of L + 1 int64 arrays [..., p, k, 2]
        Inverse stages by position: ``ifft[0]`` the Hermitian extension in bit-reversed order, ``ifft[s]``
        after DIT stage ``s`` (natural order at ``s = L``).
    y : int64 [..., p, k]
        ``R_L(re ifft[L])``.
    """

    fft: tuple[np.ndarray, ...]
    spectrum: np.ndarray
    products: np.ndarray
    rounded: np.ndarray
    acc: np.ndarray
    ifft: tuple[np.ndarray, ...]
    y: np.ndarray


def _complex(re: np.ndarray, im: np.ndarray) -> np.ndarray:
    return np.stack([re, im], axis=-1)


def golden_matvec(x_blocks: Any, spectra: Any, fmt: CirculantFormat, *, trace: bool = False):
    """Bit-exact result of the ``circulant-fft`` PE: ``y_i = IFFT(sum_j FFT(x_j) o W_ij)`` in the schedule of
    the module docstring, on int64 throughout.

    Parameters
    ----------
    x_blocks : int array [..., q, k]
        Activations split into ``q`` blocks of ``k`` (``x.reshape(..., q, k)``), ``act_bits`` integers;
        leading axes are a batch.
    spectra : int array [p, q, k/2 + 1, 2]
        Stored weights (:func:`export_spectra`): signed ``w_bits`` components (the full range), imaginary
        part 0 in bins 0 and ``k/2``; ``1 <= q <= max_q``.
    fmt : CirculantFormat
    trace : bool
        Also return every intermediate stage (:class:`CirculantTrace`).

    Returns
    -------
    y : int64 [..., p, k], within ``fmt.out_range(q)``; or ``(y, CirculantTrace)`` with ``trace=True``.

    Raises
    ------
    TypeError, ValueError
        ``"Acts must be integers from -128 to 127, not 300 (at index (0, 5))"``,
        ``"Circulant spectra must be integers from -2048 to 2047, not 4096 (at index (0, 0, 1, 0))"``,
        ``"Circulant spectra must have imaginary part 0 in bins 0 and k/2, not 3 (at index (0, 0, 0, 1))"``,
        ``"Acts must have q = 2 blocks of k = 16 (shape [..., 2, 16]) to match the spectra, not shape (3, 16)"``,
        ``"Circulant q must be an integer from 1 to 64, not 65"``.

    Examples
    --------
    >>> fmt = CirculantFormat(block=4, w_bits=8)
    >>> c = [[[0.75, 0.25, -0.25, 0.25]]]                       # one block: p = q = 1, spectrum [1, 1, 0]
    >>> spectra, scale = export_spectra(c, fmt)
    >>> y = golden_matvec([[10, 0, 0, -4]], spectra, fmt)      # x as q = 1 block of k = 4
    >>> y.tolist(), dequantize(y, scale, fmt).round(3).tolist(), (block_circulant(c) @ [10, 0, 0, -4]).tolist()
    ([[207, 111, -111, -16]], [[6.52, 3.496, -3.496, -0.504]], [6.5, 3.5, -3.5, -0.5])
    """
    fmt = check_format(fmt)
    check_bool("Trace", trace)
    k, L, frac, g, half = fmt.block, fmt.stages, fmt.tw_frac, fmt.guard_bits, fmt.block // 2
    w = _spectra(spectra, fmt)
    p, q = w.shape[:2]
    x = as_int_array("Acts", x_blocks, *fmt.act_range)
    if x.ndim < 2 or x.shape[-2:] != (q, k):
        raise ValueError(f"Acts must have q = {q} blocks of k = {k} (shape [..., {q}, {k}]) to match the spectra, "
                         f"not shape {x.shape}")
    check_int("Circulant q", q, min=1, max=fmt.max_q)
    tw, order = fmt.twiddles, bit_reverse(k)

    # 2. forward FFT (DIF, natural in, bit-reversed out), every input block
    re, im = x << g, np.zeros_like(x)
    fft = [_complex(re, im)]
    for s in range(1, L + 1):
        top, bot, j = _dif_pairs(k, s)
        a_re, a_im, c_re, c_im = re[..., top], im[..., top], re[..., bot], im[..., bot]
        re, im = re.copy(), im.copy()
        re[..., top], im[..., top] = a_re + c_re, a_im + c_im
        re[..., bot], im[..., bot] = _rotate(a_re - c_re, a_im - c_im, tw[j, 0], tw[j, 1], frac)
        fft.append(_complex(re, im))
    x_re, x_im = re[..., order[:half + 1]], im[..., order[:half + 1]]          # [..., q, k/2+1]

    # 3. exact complex products, rounded; 4. exact accumulation over the q input blocks (one block at a time:
    # memory [..., p, k/2+1] unless the trace keeps every product)
    a_re = np.zeros(x.shape[:-2] + (p, half + 1), dtype=np.int64)
    a_im = np.zeros_like(a_re)
    products, rounded = [], []
    for j in range(q):
        xj_re, xj_im = x_re[..., None, j, :], x_im[..., None, j, :]              # [..., 1, k/2+1]
        p_re = xj_re * w[:, j, :, 0] - xj_im * w[:, j, :, 1]                      # [..., p, k/2+1]
        p_im = xj_re * w[:, j, :, 1] + xj_im * w[:, j, :, 0]
        r_re, r_im = round_shift(p_re, fmt.prod_shift), round_shift(p_im, fmt.prod_shift)
        a_re += r_re
        a_im += r_im
        if trace:
            products.append(_complex(p_re, p_im))
            rounded.append(_complex(r_re, r_im))

    # 5. Hermitian extension, bit-reversed load, inverse FFT (DIT, conjugate twiddles)
    mirror = np.arange(half - 1, 0, -1)
    re = np.concatenate([a_re, a_re[..., mirror]], axis=-1)[..., order]
    im = np.concatenate([a_im, -a_im[..., mirror]], axis=-1)[..., order]
    ifft = [_complex(re, im)]
    for s in range(1, L + 1):
        top, bot, j = _dit_pairs(k, s)
        t_re, t_im = _rotate(re[..., bot], im[..., bot], tw[j, 0], -tw[j, 1], frac)
        a_re_s, a_im_s = re[..., top], im[..., top]
        re, im = re.copy(), im.copy()
        re[..., top], im[..., top] = a_re_s + t_re, a_im_s + t_im
        re[..., bot], im[..., bot] = a_re_s - t_re, a_im_s - t_im
        if fmt.ifft_scale:                                   # 5'. v_s = floor((a +- t) / 2)
            re, im = re >> 1, im >> 1
        ifft.append(_complex(re, im))

    # 6. output: the 1/k of the inverse DFT (already in the stages with ifft_scale)
    y = re if fmt.ifft_scale else round_shift(re, L)
    if not trace:
        return y
    return y, CirculantTrace(fft=tuple(fft), spectrum=_complex(x_re, x_im), products=np.stack(products, axis=-3),
                             rounded=np.stack(rounded, axis=-3), acc=_complex(a_re, a_im), ifft=tuple(ifft), y=y)
