"""Integer inference of compressed digits classifiers: the pipeline ``peforge e2e`` runs on the generated RTL.

A multilayer perceptron ``64 -> 32 -> 10`` classifies sklearn's 8x8 digits (``load_digits``; 1797 images,
a fixed stratified split with 360 test images, :func:`load_split`). It is trained at run time (seeded,
seconds on one CPU thread) in float and with each compression scheme, exported to the integer format of
the matching PE, and then run as an integer network:

.. code-block:: text

    x_0 = pixels                                   integers 0 .. 16 (real value x / 16)
    for every layer l:
        acc_l = PE_l(x_l)                          exact integers: every multiply-accumulate on the PE
        z_l   = requantize(acc_l, M_l, S_l, B_l)   integer multiplier + shift (:func:`requantize`)
        x_l+1 = clip(z_l, 0, 255)                  hidden layers: ReLU and 8-bit unsigned activations
    logits = z_last;  prediction = argmax(logits)  (the first index among equal logits)

``PE_l`` is either the golden model of the PE (numpy, exact: :meth:`Layer.golden`) or the generated RTL in
Verilator through the PE's batch API (:meth:`Layer.rtl`); both get the same integer arrays, so the two
pipelines agree image for image exactly when the RTL matches its golden model.

Requantisation (defined once, :class:`Requant`)
-----------------------------------------------
An accumulator LSB of output ``j`` is worth ``acc_scale[j] = s_in * w_scale[j]`` (the input activation scale
times the weight scale of the row); the layer's real output is ``acc * acc_scale + bias``. To express it in
units of the next activation scale ``s_out``::

    m[j] = acc_scale[j] / s_out                 (real multiplier)
    S    = 30 - floor(log2(max_j m[j]))         (one shift per layer: the largest M in [2^30, 2^31))
    M[j] = rint(m[j] 2^S)                       (31-bit integer multipliers)
    B[j] = rint(bias[j] / s_out 2^S)            (the bias, added at 2^-S of an output LSB)
    z[j] = (acc[j] M[j] + B[j] + 2^(S-1)) >> S  = floor((acc M + B) / 2^S + 1/2)    (round half up)

so ``z ~ (acc * acc_scale + bias) / s_out`` with a relative error of the multiplier below ``2^-30``. Every
operand is int64 and the worst case ``max|acc| * max M + max|B| + 2^(S-1)`` is checked to fit.

Schemes (:data:`SCHEMES`) and the PE each layer runs on
-------------------------------------------------------
* ``fixed8``: 8-bit fixed-point weights (per-row scale, QAT) on ``fixed-mac``;
* ``sp2``: 4-bit SP2 weights (Mix and Match, QAT) on ``sp2-mac``;
* ``msq``: Mix and Match, half the rows of each layer in 4-bit SP2 (``sp2-mac``), the others in 4-bit
  fixed point (``fixed-mac``), rows chosen by :func:`sw.msq.assign_rows` (QAT);
* ``nm``: 2:4 sparse 8-bit weights trained with SR-STE on ``nm-sparse``;
* ``circulant``: the hidden layer block-circulant (``k = 8``) on ``circulant-fft``; the 10-way classifier
  (10 is not a multiple of ``k``; a circulant one padded to 16 outputs scored 93.1 % in float, 3.6 points
  under the baseline) in 8-bit fixed point on ``fixed-mac``;
* ``forms``: ADMM-polarised weights (FORMS) on the ``crossbar`` controller with the ideal-array emulator
  (lossless ADC), in column tiles of :data:`XBAR_COLS`; :meth:`Network.nonideal_logits` runs the same
  network through :class:`sw.forms.NonIdealArray` in software only.

The float model a network stands for: layer ``l`` computes ``relu(x @ layers[l].real_weight().T +
layers[l].bias)`` (no ReLU on the last), and the hidden activations are rounded half up to the grid
``in_scales[l + 1] * {0 .. 255}``; the pixels enter as ``pixels / 16``. The integer pipeline computes the
same network up to the requantisation multiplier error (and, for ``circulant``, the PE's FFT rounding).

This module imports numpy only at load time; torch (training) and the testbenches (RTL) are imported by the
functions that need them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from . import circulant, fixed, forms, nm, sp2
from .intops import INT64_MAX, as_int_array, as_real_array
from .msq import MixedWeights, quantize_mixed
from .params import check_int

__all__ = [
    "SCHEMES", "HIDDEN", "ACT_BITS", "PIXEL_MAX", "TEST_SIZE", "Split", "load_split", "requantize", "Requant",
    "Layer", "FixedLayer", "SP2Layer", "MixedLayer", "NMLayer", "CirculantLayer", "CrossbarLayer", "Network",
    "train_float", "build", "accuracy",
]

#: Compressed schemes, in table order.
SCHEMES = ("fixed8", "sp2", "msq", "nm", "circulant", "forms")
#: Hidden width of the MLP 64 -> HIDDEN -> 10.
HIDDEN = 32
#: Hidden activations: unsigned integers of this width (post-ReLU).
ACT_BITS = 8
#: Pixels of load_digits are integers 0 .. 16; the network sees pixel / 16.
PIXEL_MAX = 16
#: Test images of the fixed split.
TEST_SIZE = 360
#: Seeds of the split and of training.
SPLIT_SEED = 0
TRAIN_SEED = 0
#: Requantisation multipliers are unsigned integers below 2^REQUANT_BITS.
REQUANT_BITS = 31
#: Dot-product lanes (elements per beat) of the vector PEs; 16 divides every layer width.
LANES = 16
#: Columns of the crossbar: a layer's outputs run in tiles of this many (64 x 16 weights, 8192 cell
#: flip-flops in the ideal-array emulator: a Verilator build of about a minute; 32 columns take ~4).
XBAR_COLS = 16
#: Block size of the circulant layers.
BLOCK = 8
#: Non-idealities of the software-only crossbar run (after NeuroSim / CrossSim): conductance variation
#: (sigma / mu), stuck-at-0 / stuck-at-1 cell rates, read noise (cell levels), seed.
NONIDEAL = {"variation": 0.1, "stuck_at_0": 0.005, "stuck_at_1": 0.005, "read_noise": 0.5, "seed": 0}


# -- data ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """The digits split: pixels as integers 0 .. 16 (``int64 [n, 64]``) and labels (``int64 [n]``)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@functools.lru_cache(maxsize=1)
def load_split() -> Split:
    """``sklearn.datasets.load_digits`` split once: 360 test images, stratified, ``random_state = 0``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    parts = train_test_split(x.astype(np.int64), y.astype(np.int64), test_size=TEST_SIZE,
                             random_state=SPLIT_SEED, stratify=y)
    for arr in parts:
        arr.flags.writeable = False
    return Split(parts[0], parts[2], parts[1], parts[3])


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose argmax (first index among ties) is the label."""
    return float(np.mean(np.argmax(logits, axis=1) == labels))


# -- requantisation --------------------------------------------------------------------------------------

def requantize(acc: Any, multiplier: Any, shift: int, offset: Any = 0) -> np.ndarray:
    """Integer requantisation ``floor((acc * multiplier + offset) / 2^shift + 1/2)`` (round half up).

    Computed as ``(acc * multiplier + offset + 2^(shift - 1)) >> shift`` on int64 (arithmetic shift);
    ``multiplier`` and ``offset`` broadcast against ``acc`` (one per output column). The caller keeps the
    operands in range (:meth:`Requant.fit` checks the worst case).

    Raises
    ------
    TypeError, ValueError
        ``"Requantisation shift must be an integer from 1 to 62, not 0"``.

    Examples
    --------
    >>> requantize([100, -100, 3, -8], 3, 4).tolist()      # 18.75, -18.75, 0.5625, -1.5
    [19, -19, 1, -1]
    >>> requantize([[10, 10]], [1, 3], 1, [0, -1]).tolist()  # 5, 14.5
    [[5, 15]]
    """
    check_int("Requantisation shift", shift, min=1, max=62)
    acc = as_int_array("Accumulators", acc, -INT64_MAX, INT64_MAX)
    return (acc * np.asarray(multiplier, np.int64) + np.asarray(offset, np.int64) + (1 << (shift - 1))) >> shift


@dataclasses.dataclass(frozen=True, eq=False)
class Requant:
    """One layer's requantisation: ``clip(requantize(acc, multiplier, shift, offset), lo, hi)``.

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
    """

    multiplier: np.ndarray
    shift: int
    offset: np.ndarray
    lo: int | None
    hi: int | None
    out_scale: float

    @classmethod
    def fit(cls, acc_scale: Any, bias: Any, out_scale: float, *, acc_bound: int, lo: int | None = None,
            hi: int | None = None) -> Requant:
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
        return cls(multiplier, shift, offset, lo, hi, float(out_scale))

    def __call__(self, acc: Any) -> np.ndarray:
        z = requantize(acc, self.multiplier, self.shift, self.offset)
        if self.lo is not None or self.hi is not None:
            z = np.clip(z, self.lo, self.hi)
        return z


# -- layers: integer weights on one PE -------------------------------------------------------------------

def _pairs(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (image, output row) pair as one dot product: acts ``[N * out, K]`` and weights ``[N * out, K]``."""
    return np.repeat(x, len(w), axis=0), np.tile(w, (len(x), 1))


def _beats(k: int, lanes: int) -> int:
    return -(-k // lanes)


class Layer:
    """One layer of an integer network: weights in a PE's format and what one accumulator LSB is worth.

    Subclasses set ``in_features``, ``out_features``, ``w_scale`` (float64 ``[out]``: the real weight per
    integer weight unit of each output, so that ``acc * s_in * w_scale ~ real_weight() @ (s_in * x)``) and
    ``bias`` (float64 ``[out]``), and implement the methods below.
    """

    in_features: int
    out_features: int
    w_scale: np.ndarray
    bias: np.ndarray
    scheme = ""

    def golden(self, x: np.ndarray) -> np.ndarray:
        """int64 ``[N, out]``: the PE golden model's accumulators for activations ``x [N, in]``."""
        raise NotImplementedError

    def rtl(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """``(acc int64 [N, out], cycles)``: the same through the generated RTL (one simulation per PE)."""
        raise NotImplementedError

    def real_weight(self) -> np.ndarray:
        """float64 ``[out, in]``: the dequantised weight the PE computes with."""
        raise NotImplementedError

    @property
    def acc_bound(self) -> int:
        """Largest ``|acc|`` any legal input can give (from the PE's parameters)."""
        raise NotImplementedError

    @property
    def weight_bits(self) -> int:
        """Bits of weight storage (codes, values, indices, spectra or cells and sign bits; scales excluded)."""
        raise NotImplementedError

    @property
    def pes(self) -> list[tuple[str, Any]]:
        """``(PE name, params)`` of the PEs this layer runs on."""
        raise NotImplementedError


class _DotLayer(Layer):
    """A layer computed as ``out`` dot products per image on a vector PE (``sp2-mac`` / ``fixed-mac``)."""

    def _cycles(self, rows: int, params) -> int:
        # II = 1 without stalls: one beat per cycle, the last result ``latency`` cycles after the last beat
        return rows * _beats(self.in_features, params.lanes) + params.latency


class FixedLayer(_DotLayer):
    """Signed ``w_bits`` fixed-point weights ``w_int [out, in]`` (real ``scale[j] * w``) on ``fixed-mac``."""

    scheme = "fixed-mac"

    def __init__(self, w_int, scale, bias, params):
        self.w_int = as_int_array("Fixed-point weights", w_int, *fixed.weight_range(params.w_bits))
        self.out_features, self.in_features = self.w_int.shape
        self.w_scale = as_real_array("Scale", scale)
        self.bias = as_real_array("Bias", bias)
        self.params = params

    def golden(self, x):
        p = self.params
        acts, w = _pairs(x, self.w_int)
        return fixed.golden_dot(acts, w, p.w_bits, act_bits=p.act_bits, act_signed=p.act_signed
                                ).reshape(len(x), -1)

    def rtl(self, x):
        from tb.fixed_mac import rtl_dot

        acts, w = _pairs(x, self.w_int)
        return rtl_dot(acts, w, self.params).reshape(len(x), -1), self._cycles(len(acts), self.params)

    def real_weight(self):
        return self.w_scale[:, None] * self.w_int

    @property
    def acc_bound(self):
        return max(map(abs, self.params.acc_range))

    @property
    def weight_bits(self):
        return self.w_int.size * self.params.w_bits

    @property
    def pes(self):
        return [("fixed-mac", self.params)]


class SP2Layer(_DotLayer):
    """SP2 codes ``[out, in]`` with per-row ``alpha`` (real ``alpha * v / 2^E``) on ``sp2-mac``."""

    def __init__(self, codes, alpha, bias, params):
        fmt = params.fmt
        self.codes = as_int_array("SP2 codes", codes, 0, fmt.n_codes - 1)
        self.out_features, self.in_features = self.codes.shape
        self.w_scale = as_real_array("Alpha", alpha) / (1 << fmt.E)
        self.bias = as_real_array("Bias", bias)
        self.params = params

    def golden(self, x):
        p = self.params
        acts, codes = _pairs(x, self.codes)
        return sp2.golden_dot(acts, codes, p.fmt, act_bits=p.act_bits, act_signed=p.act_signed).reshape(len(x), -1)

    def rtl(self, x):
        from tb.sp2_mac import rtl_dot

        acts, codes = _pairs(x, self.codes)
        return rtl_dot(acts, codes, self.params).reshape(len(x), -1), self._cycles(len(acts), self.params)

    def real_weight(self):
        return self.w_scale[:, None] * self.params.fmt.decode(self.codes)

    @property
    def acc_bound(self):
        return max(map(abs, self.params.acc_range))

    @property
    def weight_bits(self):
        return self.codes.size * self.params.fmt.bits

    @property
    def pes(self):
        return [("sp2-mac", self.params)]


class MixedLayer(_DotLayer):
    """Mix and Match: the SP2 rows of ``mixed`` on ``sp2-mac``, the fixed-point rows on ``fixed-mac``."""

    def __init__(self, mixed: MixedWeights, bias, sp2_params, fixed_params):
        self.mixed = mixed
        self.out_features, self.in_features = mixed.codes.shape
        self.w_scale = np.asarray(mixed.scale, dtype=np.float64)
        self.bias = as_real_array("Bias", bias)
        self.sp2 = SP2Layer(mixed.codes[mixed.is_sp2], np.ones(int(mixed.is_sp2.sum())), bias[mixed.is_sp2],
                            sp2_params)
        self.fixed = FixedLayer(mixed.fixed[~mixed.is_sp2], np.ones(int((~mixed.is_sp2).sum())),
                                bias[~mixed.is_sp2], fixed_params)

    def _halves(self):
        return [(layer, rows) for layer, rows in ((self.sp2, self.mixed.is_sp2), (self.fixed, ~self.mixed.is_sp2))
                if rows.any()]

    def golden(self, x):
        acc = np.zeros((len(x), self.out_features), dtype=np.int64)
        for layer, rows in self._halves():
            acc[:, rows] = layer.golden(x)
        return acc

    def rtl(self, x):
        acc = np.zeros((len(x), self.out_features), dtype=np.int64)
        cycles = 0
        for layer, rows in self._halves():
            acc[:, rows], c = layer.rtl(x)
            cycles += c
        return acc, cycles

    def real_weight(self):
        return self.mixed.dequantize()

    @property
    def acc_bound(self):
        return max(layer.acc_bound for layer, _ in self._halves())

    @property
    def weight_bits(self):
        # 4-bit codes or integers, plus one bit per row for its scheme
        return self.sp2.weight_bits + self.fixed.weight_bits + self.out_features

    @property
    def pes(self):
        return [pe for layer, _ in self._halves() for pe in layer.pes]


class NMLayer(_DotLayer):
    """N:M sparse weights, packed ``(values, indices)`` ``[out, in * n / m]`` with per-row scale, on ``nm-sparse``."""

    def __init__(self, values, indices, scale, bias, params, in_features: int):
        fmt = params.fmt
        self.values = as_int_array("N:M values", values, *fixed.weight_range(params.w_bits))
        self.indices = as_int_array("N:M indices", indices, 0, fmt.m - 1)
        self.out_features, self.in_features = len(self.values), in_features
        self.w_scale = as_real_array("Scale", scale)
        self.bias = as_real_array("Bias", bias)
        self.params = params

    def _rows(self, x):
        acts = np.repeat(x, self.out_features, axis=0)
        tile = (len(x), 1)
        return acts, np.tile(self.values, tile), np.tile(self.indices, tile)

    def golden(self, x):
        p = self.params
        acts, values, indices = self._rows(x)
        return nm.golden_dot(acts, values, indices, p.fmt, act_bits=p.act_bits, act_signed=p.act_signed,
                             w_bits=p.w_bits).reshape(len(x), -1)

    def rtl(self, x):
        from tb.nm_sparse import rtl_dot

        acts, values, indices = self._rows(x)
        y = rtl_dot(acts, values, indices, self.params).reshape(len(x), -1)
        return y, len(acts) * _beats(self.in_features, self.params.acts_per_beat) + self.params.latency

    def real_weight(self):
        return self.w_scale[:, None] * nm.unpack(self.values, self.indices, self.params.fmt, self.in_features)

    @property
    def acc_bound(self):
        return max(map(abs, self.params.acc_range))

    @property
    def weight_bits(self):
        return self.values.size * (self.params.w_bits + self.params.fmt.index_bits)

    @property
    def pes(self):
        return [("nm-sparse", self.params)]


class CirculantLayer(Layer):
    """Block-circulant weights as quantised half spectra ``[p, q, k/2 + 1, 2]`` on ``circulant-fft``.

    Outputs beyond ``out_features`` (padding up to ``p * k``) are computed and dropped.
    """

    def __init__(self, spectra, scale, bias, params, out_features: int):
        fmt = params.fmt
        self.spectra = as_int_array("Circulant spectra", spectra, *fmt.w_range)
        p, q = self.spectra.shape[:2]
        self.in_features, self.out_features = q * fmt.block, out_features
        self.block_scale = as_real_array("Scale", scale)
        # one output LSB is 2^(prod_shift - guard_bits) * scale[i] (sw.circulant.dequantize)
        self.w_scale = (np.repeat(self.block_scale, fmt.block) * fmt.out_lsb)[:out_features]
        self.bias = as_real_array("Bias", bias)[:out_features]
        self.params = params

    def _blocks(self, x):
        return x.reshape(len(x), -1, self.params.fmt.block)

    def golden(self, x):
        y = circulant.golden_matvec(self._blocks(x), self.spectra, self.params.fmt)
        return y.reshape(len(x), -1)[:, :self.out_features]

    def rtl(self, x):
        from tb.circulant_fft import rtl_matvec

        y = rtl_matvec(self._blocks(x), self.spectra, self.params).reshape(len(x), -1)[:, :self.out_features]
        p, q = self.spectra.shape[:2]
        return y, len(x) * p * q + self.params.latency     # q beats per output block, II = 1

    def real_weight(self):
        columns = circulant.spectra_to_columns(self.spectra, self.block_scale, self.params.fmt)
        return circulant.block_circulant(columns)[:self.out_features]

    @property
    def acc_bound(self):
        lo, hi = self.params.fmt.out_range(self.spectra.shape[1])
        return max(-lo, hi)

    @property
    def weight_bits(self):
        # k real degrees of freedom per block: bins 0 and k/2 real, k/2 - 1 complex bins
        p, q = self.spectra.shape[:2]
        return p * q * self.params.fmt.block * self.params.fmt.w_bits

    @property
    def pes(self):
        return [("circulant-fft", self.params)]


class CrossbarLayer(Layer):
    """Polarised integer weights ``w_int [in, out]`` (crossbar orientation, real ``w * scale[col]``) on
    ``crossbar``.

    The inputs occupy the crossbar's first rows (the others are driven with 0, which zero-skipping never
    reads). The output columns are cut into tiles of ``fmt.cols`` (the last one padded with zero columns);
    each tile is one programming of the crossbar and one simulation, all images streamed through it. Every
    column's products are computed in its tile; nothing is summed outside.
    """

    def __init__(self, w_int, scale, bias, params):
        fmt = params.fmt
        w = as_int_array("Crossbar weights", w_int, -fmt.w_max, fmt.w_max)
        self.in_features, self.out_features = w.shape
        if self.in_features > fmt.rows:
            raise ValueError(f"Crossbar layer inputs must fit the crossbar's {fmt.rows} rows, not "
                             f"{self.in_features}")
        self.w_int = w
        tiles = -(-self.out_features // fmt.cols)
        padded = np.zeros((fmt.rows, tiles * fmt.cols), dtype=np.int64)
        padded[:self.in_features, :self.out_features] = w
        #: int64 [rows, cols] per tile, and its programming (sign bits and cells)
        self.tiles = [padded[:, t * fmt.cols:(t + 1) * fmt.cols] for t in range(tiles)]
        self.mappings = [forms.map_weights(tile, fmt) for tile in self.tiles]
        self.w_scale = as_real_array("Scale", scale)
        self.bias = as_real_array("Bias", bias)
        self.params = params
        self.steps = None   # array reads of the last run (golden or RTL), all tiles

    def _inputs(self, x):
        out = np.zeros((len(x), self.params.fmt.rows), dtype=np.int64)
        out[:, :self.in_features] = x
        return out

    def golden(self, x, *, arrays=None):
        """Accumulators of the golden model; ``arrays(mapping, tile)`` makes each tile's array model
        (default: the ideal array)."""
        x, ys, self.steps = self._inputs(x), [], 0
        for t, mapping in enumerate(self.mappings):
            array = None if arrays is None else arrays(mapping, t)
            y, steps = forms.golden_mvm(x, mapping, self.params.fmt, array=array, zero_skip=self.params.zero_skip)
            ys.append(y)
            self.steps += int(np.asarray(steps).sum())
        return np.concatenate(ys, axis=1)[:, :self.out_features]

    def rtl(self, x):
        from tb.crossbar import rtl_mvm

        x, ys, self.steps = self._inputs(x), [], 0
        for tile in self.tiles:
            y, steps = rtl_mvm(x, tile, self.params)
            ys.append(y)
            # ``steps``: int64 [N] or an int-like total (the API is changing); the total either way
            self.steps += int(np.asarray(steps).sum())
        p = self.params
        # per vector 1 + sum_k (reads_k * array_latency + 2) cycles (hw.crossbar.CrossbarParams.vector_cycles)
        cycles = len(self.tiles) * len(x) * (1 + 2 * p.fmt.sub_arrays) + p.array_latency * self.steps
        return np.concatenate(ys, axis=1)[:, :self.out_features], cycles

    def nonideal(self, x, *, seed: int = 0, **settings) -> np.ndarray:
        """Accumulators through :class:`sw.forms.NonIdealArray` (software only); tile ``t`` is programmed
        with seed ``seed + t``."""
        fmt = self.params.fmt
        return self.golden(x, arrays=lambda mapping, t: forms.NonIdealArray(mapping, fmt, seed=seed + t,
                                                                           **settings))

    def real_weight(self):
        return (self.w_int * self.w_scale).T

    @property
    def acc_bound(self):
        return self.params.fmt.y_max

    @property
    def weight_bits(self):
        fmt = self.params.fmt
        sign_bits = -(-self.in_features // fmt.rows_per_sub) * self.out_features
        return self.w_int.size * fmt.w_bits + sign_bits

    @property
    def pes(self):
        return [("crossbar", self.params)]


# -- the network ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class Network:
    """An integer network: layers, the activation scale at each layer's input, and the requantisations.

    Members
    -------
    scheme : str
    layers : list of Layer
    in_scales : list of float
        Real value of one activation LSB at the input of each layer (``1 / 16`` for the pixels).
    requants : list of Requant
        Hidden layers clip to ``[0, 255]`` (ReLU); the last gives the logits.
    float_accuracy : float
        Test accuracy of the trained compressed model in float (torch, fake-quantised weights, float
        activations).
    train_seconds : float
    """

    scheme: str
    layers: list
    in_scales: list
    requants: list
    float_accuracy: float = math.nan
    train_seconds: float = 0.0

    def forward(self, pixels: Any, matmul: Callable[[Layer, np.ndarray], np.ndarray]) -> np.ndarray:
        """Integer logits ``[N, 10]`` of ``pixels [N, 64]`` (integers 0 .. 16), each layer's accumulators
        from ``matmul(layer, x)``."""
        x = as_int_array("Pixels", pixels, 0, PIXEL_MAX)
        for layer, requant in zip(self.layers, self.requants):
            x = requant(matmul(layer, x))
        return x

    def golden_logits(self, pixels: Any) -> np.ndarray:
        """The integer pipeline with every layer on its PE's golden model."""
        return self.forward(pixels, lambda layer, x: layer.golden(x))

    def rtl_logits(self, pixels: Any, *, step: Callable[[str], Any] | None = None) -> tuple[np.ndarray, int]:
        """``(logits, cycles)``: the pipeline with every layer's products in the generated RTL (Verilator).

        ``step(text)`` is told which layer runs (a progress display).
        """
        cycles = 0

        def matmul(layer, x):
            nonlocal cycles
            if step is not None:
                names = " + ".join(name for name, _ in layer.pes)
                step(f"layer {self.layers.index(layer) + 1}/{len(self.layers)} on {names} (RTL), {len(x)} images")
            acc, c = layer.rtl(x)
            cycles += c
            return acc

        return self.forward(pixels, matmul), cycles

    def nonideal_logits(self, pixels: Any, **settings) -> np.ndarray:
        """``forms`` only: the pipeline through :class:`sw.forms.NonIdealArray` models (software only);
        ``settings`` default to :data:`NONIDEAL`."""
        if not all(isinstance(layer, CrossbarLayer) for layer in self.layers):
            raise ValueError(f"Non-ideal arrays must run a crossbar network, not scheme {self.scheme!r}")
        settings = {**NONIDEAL, **settings}
        return self.forward(pixels, lambda layer, x: layer.nonideal(x, **settings))

    @property
    def weight_bits(self) -> int:
        return sum(layer.weight_bits for layer in self.layers)

    @property
    def float32_bits(self) -> int:
        """Storage of the same layers' weights as dense float32 (``in * out * 32``)."""
        return sum(32 * layer.in_features * layer.out_features for layer in self.layers)

    @property
    def pes(self) -> list[tuple[str, Any]]:
        """Distinct ``(PE name, params)`` the network runs on (one Verilator build each)."""
        seen, out = set(), []
        for layer in self.layers:
            for name, params in layer.pes:
                key = (name, params.digest())
                if key not in seen:
                    seen.add(key)
                    out.append((name, params))
        return out


# -- training (torch, imported here only) -----------------------------------------------------------------------

@contextlib.contextmanager
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny matrices: threads only add overhead (and make runs machine-dependent)
    try:
        yield torch
    finally:
        torch.set_num_threads(threads)


def _tensors(split: Split):
    import torch

    return (torch.tensor(split.x_train / PIXEL_MAX, dtype=torch.float32), torch.tensor(split.y_train),
            torch.tensor(split.x_test / PIXEL_MAX, dtype=torch.float32))


def _fit(model, x, y, *, epochs: int, lr: float, seed: int) -> None:
    """Adam on cross-entropy over the first 10 outputs, batches of 64 in a seeded order."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=order)
        for start in range(0, len(x), 64):
            batch = perm[start:start + 64]
            loss = torch.nn.functional.cross_entropy(model(x[batch])[:, :10], y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def _mlp(first, second):
    import torch

    return torch.nn.Sequential(first, torch.nn.ReLU(), second)


def _float_accuracy(model, x_test, y_test) -> float:
    import torch

    with torch.no_grad():
        return float((model(x_test)[:, :10].argmax(1).numpy() == y_test).mean())


@functools.lru_cache(maxsize=1)
def _float_state(seed: int):
    """Train the float baseline once per process: ``(state_dict, test accuracy, seconds)``."""
    split = load_split()
    with _one_thread() as torch:
        start = time.perf_counter()
        x, y, x_test = _tensors(split)
        torch.manual_seed(seed)
        model = _mlp(torch.nn.Linear(64, HIDDEN), torch.nn.Linear(HIDDEN, 10))
        _fit(model, x, y, epochs=40, lr=1e-2, seed=seed)
        acc = _float_accuracy(model, x_test, split.y_test)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return state, acc, time.perf_counter() - start


def train_float(seed: int = TRAIN_SEED) -> tuple[float, float]:
    """``(test accuracy, seconds)`` of the float baseline MLP (trained once per process and seed)."""
    _, acc, seconds = _float_state(seed)
    return acc, seconds


def _load_float(model, seed: int) -> None:
    """Start a compressed model from the float baseline's weights (its weight parameters by position)."""
    import torch

    state, _, _ = _float_state(seed)
    with torch.no_grad():
        for layer, name in ((model[0], "0"), (model[2], "2")):
            target = getattr(layer, "dense_weight", None)
            if target is None:
                target = layer.weight
            target.copy_(state[f"{name}.weight"])
            layer.bias.copy_(state[f"{name}.bias"])


def _mixed_linear(in_features: int, out_features: int, fraction: float, fmt, w_bits: int):
    """A ``QuantLinear`` whose weight is fake-quantised by :func:`sw.msq.quantize_mixed` (straight-through)."""
    from .layers import QuantLinear, RowFakeQuant

    class MixedQuantizer(RowFakeQuant):
        @staticmethod
        def _quantize(w, settings):
            mixed = quantize_mixed(w, settings[0], sp2_fmt=settings[1], w_bits=settings[2])
            return mixed, mixed.scale

        @staticmethod
        def _dequantize(mixed, scale, settings):
            return mixed.dequantize()

    return QuantLinear(in_features, out_features, quantizer=MixedQuantizer((fraction, fmt, w_bits)))


def _bias(layer) -> np.ndarray:
    return layer.bias.detach().double().numpy()


def _dot_params(cls, layer_widths, **fields):
    """Vector-PE params for the layers: ``max_len`` the widest input, ``lanes = min(LANES, max_len)``,
    8-bit unsigned activations (pixels and post-ReLU values)."""
    max_len = max(layer_widths)
    return cls(lanes=min(LANES, max_len), act_bits=ACT_BITS, act_signed=False, max_len=max_len, **fields)


def _train_scheme(scheme: str, split: Split, seed: int):
    """Train ``scheme`` and return ``(model, layers, float accuracy)``; ``model`` maps pixels / 16 to logits."""
    import torch

    from hw.circulant_fft import CirculantParams
    from hw.crossbar import CrossbarParams
    from hw.fixed_mac import FixedMacParams
    from hw.nm_sparse import NMSparseParams
    from hw.sp2_mac import SP2MacParams

    x, y, x_test = _tensors(split)
    widths = (64, HIDDEN)
    torch.manual_seed(seed)
    if scheme == "fixed8":
        from .layers import FixedLinear
        model = _mlp(FixedLinear(64, HIDDEN, w_bits=8), FixedLinear(HIDDEN, 10, w_bits=8))
        _load_float(model, seed)
        _fit(model, x, y, epochs=10, lr=1e-3, seed=seed + 1)
        params = _dot_params(FixedMacParams, widths, w_bits=8, dsp=True)
        layers = [FixedLayer(*m.export(), _bias(m), params) for m in (model[0], model[2])]
    elif scheme == "sp2":
        from .layers import SP2Linear
        fmt = sp2.SP2Format(4)
        model = _mlp(SP2Linear(64, HIDDEN, fmt=fmt), SP2Linear(HIDDEN, 10, fmt=fmt))
        _load_float(model, seed)
        _fit(model, x, y, epochs=10, lr=2e-3, seed=seed + 1)
        params = _dot_params(SP2MacParams, widths, fmt=fmt)
        layers = [SP2Layer(*m.export(), _bias(m), params) for m in (model[0], model[2])]
    elif scheme == "msq":
        fmt, fraction = sp2.SP2Format(4), 0.5
        model = _mlp(_mixed_linear(64, HIDDEN, fraction, fmt, 4), _mixed_linear(HIDDEN, 10, fraction, fmt, 4))
        _load_float(model, seed)
        _fit(model, x, y, epochs=10, lr=2e-3, seed=seed + 1)
        sp2_params = _dot_params(SP2MacParams, widths, fmt=fmt)
        fixed_params = _dot_params(FixedMacParams, widths, w_bits=4, dsp=True)
        layers = [MixedLayer(m.export()[0], _bias(m), sp2_params, fixed_params) for m in (model[0], model[2])]
    elif scheme == "nm":
        fmt = nm.NMFormat(2, 4)
        model = _mlp(nm.NMSparseLinear(64, HIDDEN, fmt=fmt), nm.NMSparseLinear(HIDDEN, 10, fmt=fmt))
        _load_float(model, seed)
        _fit(model, x, y, epochs=30, lr=2e-3, seed=seed + 1)
        params = NMSparseParams(fmt=fmt, groups=LANES // fmt.m, act_bits=ACT_BITS, act_signed=False, w_bits=8,
                                max_len=max(widths), dsp=True)
        layers = [NMLayer(*m.export(8), _bias(m), params, m.in_features) for m in (model[0], model[2])]
    elif scheme == "circulant":
        # the hidden layer block-circulant; the 10-way classifier (not a multiple of k) 8-bit fixed point
        from .layers import FixedLinear
        model = _mlp(circulant.BlockCirculantLinear(64, HIDDEN, BLOCK), FixedLinear(HIDDEN, 10, w_bits=8))
        _fit(model, x, y, epochs=40, lr=1e-2, seed=seed + 1)
        # 4 guard bits and no rounding of the forward FFT's growth (prod_shift = guard_bits): the PE output
        # LSB is one (activation x spectral weight) LSB, and the FFT rounding moves 3.5 % of the hidden
        # codes by one step (the default 2 guard bits, prod_shift 5: 21 %)
        fmt = circulant.CirculantFormat(block=BLOCK, act_bits=ACT_BITS, act_signed=False, w_bits=8, guard_bits=4,
                                        prod_shift=4, max_q=64 // BLOCK)
        layers = [CirculantLayer(*model[0].export(fmt), _bias(model[0]), CirculantParams(fmt=fmt, arch="parallel"),
                                 HIDDEN),
                  FixedLayer(*model[2].export(), _bias(model[2]),
                             _dot_params(FixedMacParams, widths, w_bits=8, dsp=True))]
    elif scheme == "forms":
        rows_per_sub = 8
        model = _mlp(forms.PolarizedLinear(64, HIDDEN, rows_per_sub=rows_per_sub),
                     forms.PolarizedLinear(HIDDEN, 10, rows_per_sub=rows_per_sub))
        _load_float(model, seed)
        forms.admm_polarize(model, x, y, seed=seed + 1)
        settings = dict(act_bits=ACT_BITS, w_bits=8, cell_bits=2)
        params = CrossbarParams(fmt=forms.CrossbarFormat(rows=max(widths), cols=XBAR_COLS,
                                                         rows_per_sub=rows_per_sub, **settings))
        layers = [CrossbarLayer(*m.export(m.crossbar_format(**settings)), _bias(m), params)
                  for m in (model[0], model[2])]
    else:
        raise ValueError(f"Scheme must be one of {', '.join(map(repr, SCHEMES))}, not {scheme!r}")
    return model, layers, _float_accuracy(model, x_test, split.y_test)


def build(scheme: str, *, seed: int = TRAIN_SEED) -> Network:
    """Train ``scheme`` (seeded, from the float baseline where the scheme fine-tunes) and export its
    integer network: the activation scales are calibrated on the training images (the largest hidden
    activation of the trained model maps to 255; the largest logit magnitude to 2^15).

    Raises
    ------
    ValueError
        ``"Scheme must be one of 'fixed8', 'sp2', 'msq', 'nm', 'circulant', 'forms', not 'int4'"``.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"Scheme must be one of {', '.join(map(repr, SCHEMES))}, not {scheme!r}")
    split = load_split()
    with _one_thread() as torch:
        start = time.perf_counter()
        model, layers, float_acc = _train_scheme(scheme, split, seed)
        with torch.no_grad():
            x = torch.tensor(split.x_train / PIXEL_MAX, dtype=torch.float32)
            hidden = torch.relu(model[0](x))
            logits = model[2](hidden)[:, :10]
            h_scale = float(hidden.max()) / ((1 << ACT_BITS) - 1)
            out_scale = float(logits.abs().max()) / (1 << 15)
        seconds = time.perf_counter() - start
    in_scales = [1.0 / PIXEL_MAX, h_scale]
    requants = []
    for layer, s_in, (s_out, lo, hi) in zip(layers, in_scales,
                                            [(h_scale, 0, (1 << ACT_BITS) - 1), (out_scale, None, None)]):
        requants.append(Requant.fit(s_in * layer.w_scale, layer.bias, s_out, acc_bound=layer.acc_bound,
                                    lo=lo, hi=hi))
    return Network(scheme, layers, in_scales, requants, float_acc, seconds)
