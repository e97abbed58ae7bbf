"""FORMS crossbar: format, polarisation, weight mapping, array models and the ``crossbar`` golden model.

The ``crossbar`` PE (docs/crossbar.md) is the digital controller of a ReRAM crossbar that computes
``y = x @ W`` for ``R`` unsigned inputs ``x`` and a weight matrix ``W [R, C]``. Sources:

* FORMS ("FORMS: Fine-grained Polarized ReRAM-based In-situ Computation for Mixed-signal DNN Accelerator",
  Yuan et al., ISCA 2021): polarised sub-array columns (one sign per column of every sub-array, so a column
  needs no second array or offset column for negative weights), fine-grained sub-arrays of a few rows (small
  column sums, so small ADCs) and input zero-skipping; the weights are made polarised by ADMM training
  (:class:`PolarizedLinear`).
* ISAAC (Shafiee et al., ISCA 2016) and PUMA (Ankit et al., ASPLOS 2019): bit-serial inputs through 1-bit
  DACs, 2-bit cells, 8-bit ADCs, shift-and-add of the partial sums.
* NeuroSim (Chen, Peng, Yu, IEEE TCAD 2018) and CrossSim (Sandia): ADC quantisation, conductance variation and
  stuck-at faults, the non-idealities :class:`NonIdealArray` models.

What the controller computes (the rules the RTL follows; :func:`golden_mvm` is their executable form):

* **Polarity.** ``W`` is cut into ``sub_arrays = R / rows_per_sub`` sub-arrays of ``rows_per_sub``
  consecutive rows. Within a sub-array every column's weights share one sign: the *fragment*
  ``W[k*rows_per_sub : (k+1)*rows_per_sub, c]`` is all ``>= 0`` or all ``<= 0``. Its sign bit is
  ``signs[k, c]`` (1 = negative); an all-zero fragment gets sign bit 0.
* **Magnitudes** have ``w_bits`` bits (the sign is separate, so a weight lies in ``[-(2^w_bits - 1),
  2^w_bits - 1]``). Each is bit-sliced into ``slices = w_bits / cell_bits`` cells of ``cell_bits`` bits, least
  significant slice first, on adjacent physical columns: slice ``s`` of column ``c`` sits on physical column
  ``c * slices + s`` and holds ``(|W[r, c]| >> (s * cell_bits)) & (2^cell_bits - 1)``.
* **Walk order.** Sub-arrays outer (``k = 0 .. sub_arrays - 1``), input bit-planes inner, least significant
  plane first (``p = 0 .. act_bits - 1``). The word lines of step ``(k, p)`` are bit ``p`` of the
  sub-array's inputs, ``wl[i] = (x[k * rows_per_sub + i] >> p) & 1``.
* **Zero-skipping.** A step whose word lines are all zero is skipped: no array read, nothing added. Every
  other step is one array read (all physical columns of sub-array ``k`` converted at once) followed by
  ``partial[c] += adc[c * slices + s] << (p + s * cell_bits)`` for every column ``c`` and slice ``s``.
  So the number of steps of one input vector is ``sum_k popcount(OR of the inputs of sub-array k)``.
* **Sign.** After the last plane of sub-array ``k``: ``y[c] += partial[c]`` if ``signs[k, c] == 0`` else
  ``y[c] -= partial[c]``; ``partial`` then clears.
* **Ideal ADC.** ``adc[j] = min(sum_i wl[i] * cells[k * rows_per_sub + i, j], 2^adc_bits - 1)``. With
  ``adc_bits >= lossless_adc_bits`` no column sum clips and ``y == x @ W`` exactly.
* **Batches.** A batch ``x [N, R]`` is ``N`` independent runs, vector 0 first: the array sees the reads of
  vector 0 (in the walk order above), then those of vector 1, and so on. A stateful array model
  (:class:`NonIdealArray`'s read noise) therefore gives the same codes whether it is driven by
  :func:`golden_mvm` or by the RTL through the array port.

This module imports numpy only, so the simulator can load the golden model without torch. The PyTorch half
(:class:`PolarizedLinear`, :class:`PolarityConstraint`, :class:`ActivationL1`, :func:`train_classifier`,
:func:`admm_polarize`, :class:`CrossbarMLP`) is :mod:`sw.forms_torch`. :func:`polarize` also accepts a torch
tensor and then returns one.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any, NamedTuple

import numpy as np

from .intops import as_int_array, as_real_array, fit_row_scale, signed_bits_for
from .params import Params, check_int

__all__ = [
    "CrossbarFormat", "check_format", "polarize", "is_polarized", "quantize", "dequantize", "quantize_acts",
    "Mapping", "map_weights", "check_mapping", "unmap", "active_planes", "count_steps", "IdealArray", "NonIdealArray",
    "Steps", "golden_mvm", "projection_signs",
]

#: Parameter ranges of :class:`CrossbarFormat` (inclusive).
MAX_ROWS = 4096
MAX_COLS = 4096
MAX_ROWS_PER_SUB = 1024
MAX_ACT_BITS = 16
MAX_W_BITS = 16
MAX_CELL_BITS = 4
MAX_ADC_BITS = 16



# -- the format ------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CrossbarFormat(Params):
    """Geometry and widths of a FORMS crossbar: ``rows x cols`` weights in sub-arrays of ``rows_per_sub`` rows.

    Members
    -------
    rows : int
        Inputs ``R`` (word lines), 1 to 4096, a multiple of ``rows_per_sub``.
    cols : int
        Logical columns ``C`` (outputs), 1 to 4096.
    rows_per_sub : int
        Rows of one sub-array (one sign per column of it), 1 to 1024.
    act_bits : int
        Width of the unsigned inputs, 1 to 16: one bit-plane per bit.
    w_bits : int
        Width of the weight **magnitude**, 1 to 16, a multiple of ``cell_bits``. The sign is not part of it
        (it is the sub-array column's sign bit), so weights lie in ``[-(2^w_bits - 1), 2^w_bits - 1]``:
        ``w_bits = 7`` stores what a signed 8-bit format stores, minus -128.
    cell_bits : int
        Bits per ReRAM cell, 1 to 4 (ISAAC and PUMA use 2).
    adc_bits : int or None
        ADC resolution, 1 to 16; ``None`` (the default) resolves to :attr:`lossless_adc_bits` and
        :meth:`to_dict` then holds the resolved integer.

    Raises
    ------
    TypeError
        ``"Crossbar rows must be an integer, not 8.0"``.
    ValueError
        ``"Crossbar rows must be an integer from 1 to 4096, not 0"`` (each field with its range),
        ``"Crossbar rows must be a multiple of rows_per_sub = 8, not 12"``,
        ``"Crossbar w_bits must be a multiple of cell_bits = 2, not 7"``.

    Examples
    --------
    >>> fmt = CrossbarFormat(rows=64, cols=10, rows_per_sub=8, act_bits=8, w_bits=8, cell_bits=2)
    >>> fmt.sub_arrays, fmt.slices, fmt.physical_cols, fmt.adc_bits
    (8, 4, 40, 5)
    >>> fmt.column_max, fmt.lossless_adc_bits, fmt.max_steps, fmt.y_bits
    (24, 5, 64, 24)
    >>> fmt.replace(adc_bits=4).is_lossless
    False
    """

    rows: int = dataclasses.field(default=128, metadata={
        "doc": "inputs R (word lines), a multiple of rows_per_sub (1 to 4096)"})
    cols: int = dataclasses.field(default=128, metadata={"doc": "logical columns C (outputs), 1 to 4096"})
    rows_per_sub: int = dataclasses.field(default=8, metadata={
        "doc": "rows of a sub-array; every sub-array column has one sign (1 to 1024)"})
    act_bits: int = dataclasses.field(default=8, metadata={
        "doc": "width of the unsigned inputs = bit-planes per sub-array (1 to 16)"})
    w_bits: int = dataclasses.field(default=8, metadata={
        "doc": "width of the weight magnitude (sign separate), a multiple of cell_bits (1 to 16)"})
    cell_bits: int = dataclasses.field(default=2, metadata={"doc": "bits per ReRAM cell (1 to 4)"})
    adc_bits: int | None = dataclasses.field(default=None, metadata={
        "doc": "ADC resolution, 1 to 16 (default: lossless_adc_bits, no column sum clips)"})

    def __post_init__(self):
        check_int("Crossbar rows", self.rows, min=1, max=MAX_ROWS)
        check_int("Crossbar cols", self.cols, min=1, max=MAX_COLS)
        check_int("Crossbar rows_per_sub", self.rows_per_sub, min=1, max=MAX_ROWS_PER_SUB)
        check_int("Crossbar act_bits", self.act_bits, min=1, max=MAX_ACT_BITS)
        check_int("Crossbar w_bits", self.w_bits, min=1, max=MAX_W_BITS)
        check_int("Crossbar cell_bits", self.cell_bits, min=1, max=MAX_CELL_BITS)
        if self.rows % self.rows_per_sub:
            raise ValueError(f"Crossbar rows must be a multiple of rows_per_sub = {self.rows_per_sub}, "
                             f"not {self.rows!r}")
        if self.w_bits % self.cell_bits:
            raise ValueError(f"Crossbar w_bits must be a multiple of cell_bits = {self.cell_bits}, "
                             f"not {self.w_bits!r}")
        if self.adc_bits is None:
            object.__setattr__(self, "adc_bits", self.lossless_adc_bits)
        check_int("Crossbar adc_bits", self.adc_bits, min=1, max=MAX_ADC_BITS)

    # -- derived values -----------------------------------------------------------------------------
    @property
    def sub_arrays(self) -> int:
        """Number of sub-arrays, ``rows / rows_per_sub``."""
        return self.rows // self.rows_per_sub

    @property
    def slices(self) -> int:
        """Cells per weight magnitude, ``w_bits / cell_bits``."""
        return self.w_bits // self.cell_bits

    @property
    def physical_cols(self) -> int:
        """Physical (bit-line) columns, ``cols * slices``; slice ``s`` of column ``c`` is at ``c * slices + s``."""
        return self.cols * self.slices

    @property
    def act_max(self) -> int:
        """Largest input, ``2^act_bits - 1``."""
        return (1 << self.act_bits) - 1

    @property
    def w_max(self) -> int:
        """Largest weight magnitude, ``2^w_bits - 1``."""
        return (1 << self.w_bits) - 1

    @property
    def cell_max(self) -> int:
        """Largest cell level, ``2^cell_bits - 1``."""
        return (1 << self.cell_bits) - 1

    @property
    def adc_max(self) -> int:
        """Largest ADC code, ``2^adc_bits - 1`` (the ideal ADC clips the column sum here)."""
        return (1 << self.adc_bits) - 1

    @property
    def column_max(self) -> int:
        """Largest ideal column sum of one read, ``rows_per_sub * (2^cell_bits - 1)``."""
        return self.rows_per_sub * self.cell_max

    @property
    def lossless_adc_bits(self) -> int:
        """ADC bits with which no column sum clips: the width of :attr:`column_max`."""
        return self.column_max.bit_length()

    @property
    def is_lossless(self) -> bool:
        """Whether ``adc_bits >= lossless_adc_bits`` (then the ideal array gives exactly ``x @ W``)."""
        return self.adc_bits >= self.lossless_adc_bits

    @property
    def max_steps(self) -> int:
        """Steps (array reads) of one input vector without zero-skipping, ``sub_arrays * act_bits``."""
        return self.sub_arrays * self.act_bits

    @property
    def partial_max(self) -> int:
        """Largest ``partial[c]`` of one sub-array for ANY ADC codes the array port can deliver.

        ``adc_max * sum_p 2^p * sum_s 2^(s * cell_bits) = adc_max * act_max * w_max / cell_max``.
        """
        return self.adc_max * self.act_max * (self.w_max // self.cell_max)

    @property
    def partial_bits(self) -> int:
        """Width of the unsigned per-sub-array accumulator ``partial[c]``."""
        return self.partial_max.bit_length()

    @property
    def y_max(self) -> int:
        """Largest ``|y[c]|`` for any ADC codes: ``sub_arrays * partial_max``. (With the ideal lossless
        array the exact bound is ``rows * act_max * w_max``, which is never larger.)"""
        return self.sub_arrays * self.partial_max

    @property
    def y_bits(self) -> int:
        """Width of the signed result ``y[c]``: every ``[-y_max, y_max]`` fits (at most 61 bits)."""
        return signed_bits_for(-self.y_max, self.y_max)


def check_format(fmt: Any) -> CrossbarFormat:
    """Return ``fmt`` if it is a :class:`CrossbarFormat`, else raise ``TypeError("Crossbar format must be ...")``."""
    if not isinstance(fmt, CrossbarFormat):
        raise TypeError(f"Crossbar format must be a CrossbarFormat, not {fmt!r}")
    return fmt


def _check_shape(subject: str, arr: np.ndarray, shape: tuple[int, ...], names: str) -> np.ndarray:
    if arr.shape != shape:
        raise ValueError(f"{subject} must have shape {shape} ({names}), not {arr.shape}")
    return arr


# -- polarisation ------------------------------------------------------------------------------------------

def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")  # a torch tensor implies torch is imported: never import it here
    return torch is not None and isinstance(x, torch.Tensor)


def _fragments(w: np.ndarray, rows_per_sub: int) -> np.ndarray:
    """``w [R, C]`` viewed as ``[sub_arrays, rows_per_sub, C]``: axis 1 runs along one fragment."""
    return w.reshape(w.shape[0] // rows_per_sub, rows_per_sub, w.shape[1])


def projection_signs(w: np.ndarray, rows_per_sub: int) -> np.ndarray:
    """Sign bit ``[R / rows_per_sub, C]`` of every fragment (``rows_per_sub`` rows of one column) of ``w [R, C]``: 1
    (negative) iff its negative energy is the larger. :func:`polarize` projects onto these signs; the trainable
    layers of :mod:`sw.forms_torch` use them too."""
    frag = _fragments(w, rows_per_sub)
    positive = np.square(np.where(frag > 0, frag, 0.0)).sum(axis=1)
    negative = np.square(np.where(frag < 0, frag, 0.0)).sum(axis=1)
    return (negative > positive).astype(np.int64)


def _sign_keep(w: np.ndarray, signs: np.ndarray, rows_per_sub: int) -> np.ndarray:
    """Mask of the entries of ``w`` agreeing with their fragment's sign bit (zeros agree with both)."""
    frag = _fragments(w, rows_per_sub)
    keep = np.where(signs[:, None, :] == 1, frag <= 0, frag >= 0)
    return keep.reshape(w.shape)


def _check_weight_shape(w_shape: tuple[int, ...], fmt: CrossbarFormat, subject: str = "Crossbar weights"):
    if tuple(w_shape) != (fmt.rows, fmt.cols):
        raise ValueError(f"{subject} must have shape {(fmt.rows, fmt.cols)} (rows, cols), not {tuple(w_shape)}")


def polarize(w: Any, fmt: CrossbarFormat) -> Any:
    """Euclidean projection of ``w [rows, cols]`` onto the polarised matrices of ``fmt``.

    In every fragment (sub-array ``k``, column ``c``) keep the entries of the sign whose squared magnitudes
    add up to more, zero the others; on a tie the positive entries are kept (sign bit 0).

    **Why this is the projection.** The polarised set is ``P = prod_f (O+_f  u  O-_f)``: every fragment ``f``
    lies in the non-negative or the non-positive orthant of its own coordinates. The squared distance
    ``||w - z||^2`` is a sum over fragments and ``P`` constrains every fragment separately, so the nearest
    point is found fragment by fragment. For one fragment ``v``, the nearest point of a closed union is the
    nearer of the nearest points of its parts; the nearest point of ``O+`` is ``max(v, 0)`` at squared
    distance ``sum_{v_i < 0} v_i^2`` (the coordinates decouple, and for each the nearest ``z_i >= 0`` is
    ``max(v_i, 0)``), and that of ``O-`` is ``min(v, 0)`` at ``sum_{v_i > 0} v_i^2``. So the projection keeps
    the sign with the larger kept energy; on a tie both are nearest and the positive one is chosen. The
    projection is idempotent: a polarised fragment has zero energy of one sign and is kept whole.

    Parameters
    ----------
    w : real array [rows, cols] (numpy, list or torch tensor), crossbar orientation (``y = x @ w``)
    fmt : CrossbarFormat

    Returns
    -------
    float64 numpy array, or a tensor of ``w``'s dtype and device for a tensor (the kept entries are
    ``w``'s own values, bit for bit).

    Raises
    ------
    ValueError
        ``"Crossbar weights must have shape (8, 2) (rows, cols), not (8, 3)"``,
        ``"Crossbar weights must be finite, not nan (at index (0, 1))"``.

    Examples
    --------
    >>> fmt = CrossbarFormat(rows=4, cols=2, rows_per_sub=2, w_bits=2)
    >>> polarize([[3, -1], [-2, 1], [1, -1], [-1, 1]], fmt).tolist()
    [[3.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
    """
    fmt = check_format(fmt)
    tensor = w if _is_tensor(w) else None
    arr = as_real_array("Crossbar weights", w)
    _check_weight_shape(arr.shape, fmt)
    keep = _sign_keep(arr, projection_signs(arr, fmt.rows_per_sub), fmt.rows_per_sub)
    if tensor is not None:
        torch = sys.modules["torch"]
        mask = torch.from_numpy(keep).to(tensor.device)
        return torch.where(mask, tensor, torch.zeros((), dtype=tensor.dtype, device=tensor.device))
    return np.where(keep, arr, 0.0)


def is_polarized(w: Any, fmt: CrossbarFormat) -> bool:
    """Whether every fragment of ``w [rows, cols]`` is all ``>= 0`` or all ``<= 0``.

    >>> fmt = CrossbarFormat(rows=4, cols=1, rows_per_sub=2, w_bits=2)
    >>> is_polarized([[1], [0], [-2], [-1]], fmt), is_polarized([[1], [-1], [0], [0]], fmt)
    (True, False)
    """
    fmt = check_format(fmt)
    arr = as_real_array("Crossbar weights", w)
    _check_weight_shape(arr.shape, fmt)
    frag = _fragments(arr, fmt.rows_per_sub)
    return not np.any((frag > 0).any(axis=1) & (frag < 0).any(axis=1))


# -- quantisation ------------------------------------------------------------------------------------------

def _to_grid(w_max: int):
    return lambda v: np.clip(np.rint(v), -w_max, w_max)


def quantize(w: Any, fmt: CrossbarFormat, *, scale: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Quantise real weights ``w [rows, cols]`` to sign-magnitude integers with one scale per column.

    ``v[r, c] = clip(rint(w[r, c] / scale[c]), -(2^w_bits - 1), 2^w_bits - 1)``; the real weight is
    ``scale[c] * v[r, c]``. ``rint`` rounds half to even and never flips a sign, so a polarised ``w`` gives
    a polarised ``v``. Without ``scale``, each column's scale minimises ``sum_r (w - scale * v)^2``
    (:func:`sw.intops.fit_row_scale`; all-zero columns get 1.0).

    Returns
    -------
    (v, scale) : int64 [rows, cols], float64 [cols]

    Examples
    --------
    >>> fmt = CrossbarFormat(rows=2, cols=2, rows_per_sub=1, w_bits=2)
    >>> quantize([[0.9, -0.2], [0.31, -0.6]], fmt, scale=[0.3, 0.2])
    (array([[ 3, -1],
           [ 1, -3]]), array([0.3, 0.2]))
    """
    fmt = check_format(fmt)
    arr = as_real_array("Crossbar weights", w)
    _check_weight_shape(arr.shape, fmt)
    if scale is None:
        scale = fit_row_scale(arr.T, _to_grid(fmt.w_max), fmt.w_max)
    else:
        scale = as_real_array("Column scale", scale)
        if scale.shape != (fmt.cols,):
            raise ValueError(f"Column scale must have shape ({fmt.cols},) (one per column), not {scale.shape}")
        if np.any(scale <= 0):
            raise ValueError(f"Column scale must be positive, not {float(scale[scale <= 0][0])!r}")
    return _to_grid(fmt.w_max)(arr / scale).astype(np.int64), scale


def dequantize(w_int: Any, scale: Any, fmt: CrossbarFormat) -> np.ndarray:
    """Real weights ``scale[c] * v[r, c]`` (float64) of integer weights ``v [rows, cols]``."""
    fmt = check_format(fmt)
    v = as_int_array("Crossbar weights", w_int, -fmt.w_max, fmt.w_max)
    _check_weight_shape(v.shape, fmt)
    s = as_real_array("Column scale", scale)
    if s.shape != (fmt.cols,):
        raise ValueError(f"Column scale must have shape ({fmt.cols},) (one per column), not {s.shape}")
    return v * s


def quantize_acts(x: Any, fmt: CrossbarFormat, scale: float) -> np.ndarray:
    """Unsigned ``act_bits`` inputs of non-negative real activations: ``clip(rint(x / scale), 0, act_max)``.

    A negative input (not post-ReLU) becomes 0. Choose ``scale`` from calibration data, e.g.
    ``max(x) / act_max`` (nothing clips) or a high percentile over ``act_max`` (the largest values clip).

    >>> quantize_acts([0.0, 0.26, 1.0, 9.0], CrossbarFormat(rows=4, cols=1, act_bits=2, rows_per_sub=1), 0.5)
    array([0, 1, 2, 3])
    """
    fmt = check_format(fmt)
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating)) or not (
            math.isfinite(scale) and scale > 0):
        raise ValueError(f"Activation scale must be a positive finite number, not {scale!r}")
    arr = as_real_array("Activations", x)
    return np.clip(np.rint(arr / scale), 0, fmt.act_max).astype(np.int64)


# -- mapping onto cells -----------------------------------------------------------------------------------

class Mapping(NamedTuple):
    """Integer weights as programmed into a crossbar (:func:`map_weights`; :func:`unmap` inverts it).

    Members
    -------
    signs : int64 [sub_arrays, cols]
        Sign bit of every sub-array column: 1 = the fragment's weights are negative (``y -= partial``),
        0 = non-negative (an all-zero fragment has 0).
    cells : int64 [rows, physical_cols]
        Cell levels ``0 .. 2^cell_bits - 1``: slice ``s`` (least significant first) of ``|W[r, c]|`` at
        ``cells[r, c * slices + s]``.
    """

    signs: np.ndarray
    cells: np.ndarray


def map_weights(w_int: Any, fmt: CrossbarFormat) -> Mapping:
    """Sign bits and cell levels of polarised integer weights ``w_int [rows, cols]``.

    ``signs[k, c] = 1`` iff fragment ``(k, c)`` holds a negative weight; ``cells[r, c * slices + s] =
    (|w[r, c]| >> (s * cell_bits)) & (2^cell_bits - 1)``.

    Raises
    ------
    TypeError, ValueError
        ``"Crossbar weights must be integers from -255 to 255, not 256 (at index (0, 1))"``,
        ``"Crossbar weights must have shape (8, 2) (rows, cols), not (8, 3)"``,
        ``"Crossbar weights must have one sign in every sub-array column, not 3 (row 9) and -2 (row 12) in
        sub-array 1 (rows 8 to 15), column 4"``.

    Examples
    --------
    >>> fmt = CrossbarFormat(rows=4, cols=2, rows_per_sub=2, w_bits=4, cell_bits=2)
    >>> m = map_weights([[13, 0], [2, -1], [-7, 0], [0, 15]], fmt)
    >>> m.signs.tolist()
    [[0, 1], [1, 0]]
    >>> m.cells.tolist()
    [[1, 3, 0, 0], [2, 0, 1, 0], [3, 1, 0, 0], [0, 0, 3, 3]]
    """
    fmt = check_format(fmt)
    w = as_int_array("Crossbar weights", w_int, -fmt.w_max, fmt.w_max)
    _check_weight_shape(w.shape, fmt)
    frag = _fragments(w, fmt.rows_per_sub)
    mixed = (frag > 0).any(axis=1) & (frag < 0).any(axis=1)
    if mixed.any():
        k, c = (int(i) for i in np.argwhere(mixed)[0])
        column = frag[k, :, c]
        pos, neg = int(np.argmax(column > 0)), int(np.argmax(column < 0))
        r0 = k * fmt.rows_per_sub
        raise ValueError(f"Crossbar weights must have one sign in every sub-array column, not "
                         f"{int(column[pos])} (row {r0 + pos}) and {int(column[neg])} (row {r0 + neg}) in "
                         f"sub-array {k} (rows {r0} to {r0 + fmt.rows_per_sub - 1}), column {c}")
    signs = (frag < 0).any(axis=1).astype(np.int64)
    shifts = fmt.cell_bits * np.arange(fmt.slices)
    cells = (np.abs(w)[:, :, None] >> shifts) & fmt.cell_max       # [rows, cols, slices]
    return Mapping(signs, cells.reshape(fmt.rows, fmt.physical_cols))


def check_mapping(mapping: Any, fmt: CrossbarFormat) -> Mapping:
    """``mapping`` as a :class:`Mapping` of int64 arrays, checked against ``fmt`` (shapes and ranges).

    Raises
    ------
    TypeError, ValueError
        ``"Crossbar mapping must be a Mapping, not ..."``,
        ``"Crossbar sign bits must have shape (8, 10) (sub_arrays, cols), not (8, 9)"``,
        ``"Crossbar cells must be integers from 0 to 3, not 4 (at index (0, 1))"``.
    """
    fmt = check_format(fmt)
    if not isinstance(mapping, Mapping):
        raise TypeError(f"Crossbar mapping must be a Mapping, not {mapping!r}")
    signs = _check_shape("Crossbar sign bits", as_int_array("Crossbar sign bits", mapping.signs, 0, 1),
                         (fmt.sub_arrays, fmt.cols), "sub_arrays, cols")
    cells = _check_shape("Crossbar cells", as_int_array("Crossbar cells", mapping.cells, 0, fmt.cell_max),
                         (fmt.rows, fmt.physical_cols), "rows, physical_cols")
    return Mapping(signs, cells)


def unmap(mapping: Mapping, fmt: CrossbarFormat) -> np.ndarray:
    """Integer weights ``[rows, cols]`` of a mapping.

    ``w[r, c] = (-1)^signs[k, c] * sum_s cells[r, c * slices + s] << (s * cell_bits)`` with ``k`` the sub-array
    of row ``r``.

    The exact inverse of :func:`map_weights`. Any mapping is accepted (an all-zero fragment may carry sign
    bit 1; :func:`map_weights` of the result then gives it 0).

    >>> fmt = CrossbarFormat(rows=2, cols=1, rows_per_sub=2, w_bits=4, cell_bits=2)
    >>> unmap(Mapping(signs=[[1]], cells=[[1, 3], [2, 0]]), fmt).tolist()
    [[-13], [-2]]
    """
    m = check_mapping(mapping, fmt)
    mags = (m.cells.reshape(fmt.rows, fmt.cols, fmt.slices) << (fmt.cell_bits * np.arange(fmt.slices))).sum(-1)
    sign = np.repeat(1 - 2 * m.signs, fmt.rows_per_sub, axis=0)
    return sign * mags


# -- inputs and steps --------------------------------------------------------------------------------------

def _inputs(x: Any, fmt: CrossbarFormat) -> np.ndarray:
    """Inputs as int64 ``[N, rows]`` (a vector becomes ``N = 1``), range- and shape-checked."""
    arr = as_int_array("Crossbar inputs", x, 0, fmt.act_max)
    if arr.ndim not in (1, 2) or arr.shape[-1] != fmt.rows:
        raise ValueError(f"Crossbar inputs must have shape ({fmt.rows},) or (N, {fmt.rows}), not {arr.shape}")
    return arr.reshape(-1, fmt.rows)


def _bit_planes(x2: np.ndarray, fmt: CrossbarFormat) -> np.ndarray:
    """Word-line bits ``[N, sub_arrays, act_bits, rows_per_sub]``: ``[n, k, p, i] = x[n, k*rps + i] >> p & 1``."""
    bits = (x2[:, :, None] >> np.arange(fmt.act_bits)) & 1                      # [N, rows, planes]
    return bits.reshape(len(x2), fmt.sub_arrays, fmt.rows_per_sub, fmt.act_bits).transpose(0, 1, 3, 2)


def active_planes(x: Any, fmt: CrossbarFormat) -> np.ndarray:
    """Which steps the controller issues with zero-skipping: bool ``[sub_arrays, act_bits]`` (or ``[N, ...]``).

    ``[k, p]`` is True iff some input of sub-array ``k`` has bit ``p`` set.

    >>> fmt = CrossbarFormat(rows=4, cols=1, rows_per_sub=2, act_bits=3, w_bits=1, cell_bits=1)
    >>> active_planes([1, 4, 0, 0], fmt).astype(int).tolist()
    [[1, 0, 1], [0, 0, 0]]
    """
    fmt = check_format(fmt)
    x2 = _inputs(x, fmt)
    active = _bit_planes(x2, fmt).any(axis=-1)
    return active if np.ndim(x) == 2 else active[0]


def count_steps(x: Any, fmt: CrossbarFormat, *, zero_skip: bool = True) -> Any:
    """Steps (array reads) of :func:`golden_mvm` for inputs ``x``: an int, or int64 ``[N]`` for ``[N, rows]``.

    With ``zero_skip`` the number of active planes (:func:`active_planes`); without, ``sub_arrays * act_bits``.

    >>> fmt = CrossbarFormat(rows=4, cols=1, rows_per_sub=2, act_bits=3, w_bits=1, cell_bits=1)
    >>> count_steps([1, 4, 0, 0], fmt), count_steps([[1, 4, 0, 0], [7, 0, 0, 1]], fmt).tolist()
    (2, [2, 4])
    >>> count_steps([1, 4, 0, 0], fmt, zero_skip=False)
    6
    """
    fmt = check_format(fmt)
    if not isinstance(zero_skip, bool):
        raise TypeError(f"Zero-skip must be a bool, not {zero_skip!r}")
    active = active_planes(x, fmt)
    if not zero_skip:
        active = np.ones_like(active)
    steps = active.sum(axis=(-2, -1))
    return int(steps) if np.ndim(steps) == 0 else steps.astype(np.int64)


# -- array models ---------------------------------------------------------------------------------------------

class IdealArray:
    """Ideal crossbar behind the array port: exact column sums, clipped by the ADC.

    :meth:`read` returns ``min(sum_i wl[i] * cells[k * rows_per_sub + i, j], 2^adc_bits - 1)`` for every
    physical column ``j``. Stateless: the order of reads does not matter.

    Parameters
    ----------
    mapping : Mapping
    fmt : CrossbarFormat

    Examples
    --------
    >>> fmt = CrossbarFormat(rows=2, cols=1, rows_per_sub=2, w_bits=2, cell_bits=2, adc_bits=2)
    >>> IdealArray(Mapping([[0]], [[3], [2]]), fmt).read(0, [[1, 0], [1, 1]]).tolist()
    [[3], [3]]
    """

    def __init__(self, mapping: Mapping, fmt: CrossbarFormat):
        self._fmt = check_format(fmt)
        self._mapping = check_mapping(mapping, fmt)

    @property
    def fmt(self) -> CrossbarFormat:
        return self._fmt

    @property
    def mapping(self) -> Mapping:
        return self._mapping

    def _word_lines(self, sub: Any, wl: Any) -> tuple[slice, np.ndarray]:
        check_int("Sub-array", sub, min=0, max=self._fmt.sub_arrays - 1)
        lines = as_int_array("Word lines", wl, 0, 1)
        if lines.ndim not in (1, 2) or lines.shape[-1] != self._fmt.rows_per_sub:
            raise ValueError(f"Word lines must have shape ({self._fmt.rows_per_sub},) or (M, "
                             f"{self._fmt.rows_per_sub}), not {lines.shape}")
        start = sub * self._fmt.rows_per_sub
        return slice(start, start + self._fmt.rows_per_sub), lines

    def column_sums(self, sub: int, wl: Any) -> np.ndarray:
        """Exact column sums ``wl @ cells[sub-array rows]``, int64 ``[physical_cols]`` or ``[M, physical_cols]``."""
        rows, lines = self._word_lines(sub, wl)
        return lines @ self._mapping.cells[rows]

    def read(self, sub: int, wl: Any) -> np.ndarray:
        """ADC codes of one read (``wl [rows_per_sub]``) or of ``M`` reads in order (``wl [M, rows_per_sub]``).

        Returns int64 ``[physical_cols]`` or ``[M, physical_cols]``, each in ``[0, 2^adc_bits - 1]``.
        """
        return np.minimum(self.column_sums(sub, wl), self._fmt.adc_max)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fmt={self._fmt!r})"


def _check_rate(subject: str, value: Any, hi: int = 1) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"{subject} must be a real number, not {value!r}")
    if not (math.isfinite(value) and 0 <= value <= hi):
        raise ValueError(f"{subject} must be a number from 0 to {hi}, not {value!r}")
    return float(value)


def _check_nonneg(subject: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"{subject} must be a real number, not {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{subject} must be a non-negative finite number, not {value!r}")
    return float(value)


class NonIdealArray(IdealArray):
    """Crossbar with device and converter non-idealities (after NeuroSim and CrossSim), seeded.

    Programming (once, at construction, from ``seed``), per cell in C order of ``cells``:

    1. stuck-at faults: with ``u ~ U[0, 1)``, a cell is stuck at level 0 (SA0, lowest conductance) if
       ``u < stuck_at_0``, at level ``2^cell_bits - 1`` (SA1, highest) if ``stuck_at_0 <= u < stuck_at_0 +
       stuck_at_1``, else it holds its programmed level;
    2. multiplicative conductance variation: ``G = level * max(0, 1 + variation * z)``, ``z ~ N(0, 1)``.

    Each read (one per step; ``M`` reads in order for ``wl [M, rows_per_sub]``):

    3. column value ``v[j] = sum_i wl[i] * G[k * rows_per_sub + i, j] + read_noise * e[j]``, ``e ~ N(0, 1)``
       fresh for every read and column, in units of one cell level;
    4. ADC: ``code = clip(rint(v / adc_step), 0, 2^adc_bits - 1)`` (``rint``: half to even). ``adc_step = 1``
       is the ideal ADC's scale (it clips above ``2^adc_bits - 1``); ``adc_step = fmt.column_max /
       fmt.adc_max`` spreads the codes over the whole column range instead (coarser, no clipping). The
       controller's result is then in units of ``adc_step``: ``y_real ~= adc_step * y``.

    The random numbers are drawn whatever the parameter values (``u`` and ``z`` at construction, ``e`` at
    every read), so arrays with one seed and different strengths share their draws, and the same seed and
    the same sequence of reads always give the same codes. With every strength 0 and ``adc_step = 1`` the
    model is :class:`IdealArray`. The ADC clips at 0, so read noise on a column that carries nothing has a
    positive mean: reading all-zero planes (``golden_mvm(..., zero_skip=False)``) biases the result upwards,
    which zero-skipping avoids. Not modelled: the off-state conductance of level 0, IR drop, drift.

    Parameters
    ----------
    mapping : Mapping
    fmt : CrossbarFormat
    variation : float >= 0
        Relative standard deviation of the cell conductance (``sigma / mu``).
    stuck_at_0, stuck_at_1 : float in [0, 1], sum at most 1
        Fractions of cells stuck at the lowest / highest level.
    read_noise : float >= 0
        Standard deviation of the additive noise of one column read, in cell levels.
    adc_step : float > 0
        Column value per ADC code.
    seed : int >= 0

    Raises
    ------
    TypeError, ValueError
        ``"Conductance variation must be a non-negative finite number, not -0.1"``,
        ``"Stuck-at-0 rate must be a number from 0 to 1, not 1.5"``,
        ``"Stuck-at rates must add up to at most 1, not 0.6 + 0.6"``,
        ``"ADC step must be a positive finite number, not 0.0"``, ``"Seed must be a non-negative integer, not -1"``.
    """

    def __init__(self, mapping: Mapping, fmt: CrossbarFormat, *, variation: float = 0.0,
                 stuck_at_0: float = 0.0, stuck_at_1: float = 0.0, read_noise: float = 0.0,
                 adc_step: float = 1.0, seed: int = 0):
        super().__init__(mapping, fmt)
        self.variation = _check_nonneg("Conductance variation", variation)
        self.stuck_at_0 = _check_rate("Stuck-at-0 rate", stuck_at_0)
        self.stuck_at_1 = _check_rate("Stuck-at-1 rate", stuck_at_1)
        if self.stuck_at_0 + self.stuck_at_1 > 1:
            raise ValueError(f"Stuck-at rates must add up to at most 1, not {stuck_at_0!r} + {stuck_at_1!r}")
        self.read_noise = _check_nonneg("Read noise", read_noise)
        step = _check_nonneg("ADC step", adc_step)
        if step == 0:
            raise ValueError(f"ADC step must be a positive finite number, not {adc_step!r}")
        self.adc_step = step
        check_int("Seed", seed, min=0)
        self.seed = seed
        program, self._read_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
        cells = self.mapping.cells
        u = program.random(cells.shape)
        z = program.standard_normal(cells.shape)
        #: int8 [rows, physical_cols]: 0 healthy, 1 stuck at level 0, 2 stuck at the top level.
        self.stuck = np.where(u < self.stuck_at_0, 1, np.where(u < self.stuck_at_0 + self.stuck_at_1, 2, 0)
                              ).astype(np.int8)
        levels = np.choose(self.stuck, [cells, 0, fmt.cell_max]).astype(np.float64)
        #: float64 [rows, physical_cols]: programmed conductances in cell levels.
        self.conductance = levels * np.maximum(0.0, 1.0 + self.variation * z)
        self.stuck.flags.writeable = False
        self.conductance.flags.writeable = False

    @property
    def stateless(self) -> bool:
        """True without read noise: then the codes of a read do not depend on the reads before it."""
        return self.read_noise == 0

    def column_sums(self, sub: int, wl: Any) -> np.ndarray:
        """Noisy analog column values (float64) of one read or ``M`` reads; draws the read noise."""
        rows, lines = self._word_lines(sub, wl)
        values = lines @ self.conductance[rows]
        return values + self.read_noise * self._read_rng.standard_normal(values.shape)

    def read(self, sub: int, wl: Any) -> np.ndarray:
        values = self.column_sums(sub, wl)
        return np.clip(np.rint(values / self.adc_step), 0, self.fmt.adc_max).astype(np.int64)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(fmt={self.fmt!r}, variation={self.variation!r}, "
                f"stuck_at_0={self.stuck_at_0!r}, stuck_at_1={self.stuck_at_1!r}, read_noise={self.read_noise!r}, "
                f"adc_step={self.adc_step!r}, seed={self.seed!r})")


# -- golden model ---------------------------------------------------------------------------------------------

class Steps(int):
    """The bit-plane steps (array reads) of a run: an ``int``, the total over every vector, with the count of
    each vector in :attr:`per_vector`.

    :func:`golden_mvm` and ``tb.crossbar.rtl_mvm`` return it, so ``steps == n`` compares totals whatever
    the batch shape, and nothing is lost: ``steps.per_vector`` is a read-only int64 ``[N]`` array (``[1]``
    for a single vector). Arithmetic gives plain ints.

    Parameters
    ----------
    per_vector : int array [N]
        Steps of each vector, non-negative.

    Examples
    --------
    >>> s = Steps([3, 0, 5])
    >>> s == 8, s.per_vector.tolist(), s + 1
    (True, [3, 0, 5], 9)
    >>> s
    Steps(8, per_vector=[3, 0, 5])
    """

    per_vector: np.ndarray

    def __new__(cls, per_vector: Any) -> "Steps":
        arr = as_int_array("Steps per vector", per_vector, 0, 1 << 62)
        if arr.ndim != 1:
            raise ValueError(f"Steps per vector must have shape (N,), not {arr.shape}")
        arr.flags.writeable = False
        self = super().__new__(cls, int(arr.sum()))
        self.per_vector = arr
        return self

    def __reduce__(self):
        return type(self), (self.per_vector,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self)}, per_vector={self.per_vector.tolist()})"


def _shift_weights(fmt: CrossbarFormat) -> np.ndarray:
    """``2^(p + s * cell_bits)`` as int64 ``[act_bits, slices]``: the shift of slice ``s`` in plane ``p``."""
    return np.left_shift(1, np.arange(fmt.act_bits)[:, None] + fmt.cell_bits * np.arange(fmt.slices)[None, :])


def golden_mvm(x: Any, mapping: Mapping, fmt: CrossbarFormat, *, array: Any = None,
               zero_skip: bool = True) -> tuple[np.ndarray, Any]:
    """Bit-exact result of the ``crossbar`` PE and the number of steps (array reads) it issues.

    The controller (module docstring) walks sub-arrays ``k`` (outer) and bit-planes ``p`` (inner, LSB
    first); a step whose word lines ``(x[k*rps : (k+1)*rps] >> p) & 1`` are all zero is skipped (with
    ``zero_skip``), every other one reads the array and adds
    ``adc[c * slices + s] << (p + s * cell_bits)`` into ``partial[c]``; after sub-array ``k``,
    ``y[c] += partial[c]`` or ``y[c] -= partial[c]`` by ``signs[k, c]``:

    .. math:: y_c = \\sum_k (-1)^{sign_{k,c}} \\sum_{p \\in active(k)} \\sum_s
              adc_{k,p}[c \\cdot slices + s] \\; 2^{p + s \\cdot cell\\_bits}

    With the ideal array and ``fmt.is_lossless``, ``y = x @ unmap(mapping, fmt)`` exactly.

    Parameters
    ----------
    x : int array [rows] or [N, rows]
        Unsigned ``act_bits`` inputs; a batch is ``N`` runs, vector 0 first.
    mapping : Mapping
        Sign bits and cells (:func:`map_weights`).
    fmt : CrossbarFormat
    array : array model, optional
        Anything with ``read(sub, wl [M, rows_per_sub]) -> codes [M, physical_cols]`` giving the ADC codes
        of ``M`` consecutive reads of sub-array ``sub`` (:class:`IdealArray`, :class:`NonIdealArray`). It is
        called once per vector and sub-array that has an active plane, with the active planes' word lines
        in plane order (vector-major, then sub-array, then plane: the order of the RTL's reads). Default:
        the ideal array of ``mapping``, computed for the whole batch at once. An array whose ``stateless``
        attribute is true (:class:`NonIdealArray` without read noise) is read the same way, once per
        sub-array with every plane of every vector (the codes of skipped planes are dropped): its codes do
        not depend on the order of the reads.
    zero_skip : bool
        Skip all-zero bit-planes (the FORMS controller); ``False`` reads every plane (the baseline).

    Returns
    -------
    (y, steps) : (numpy.ndarray, Steps)
        ``y``: int64 [cols] for ``x [rows]``, int64 [N, cols] for ``x [N, rows]``. ``steps``: the array reads
        (bit-plane steps) issued for the whole call, a :class:`Steps` (an ``int``, the total over every
        vector; ``steps.per_vector`` holds each vector's count, int64 [N], ``[1]`` for a 1-D ``x``).

    Raises
    ------
    TypeError, ValueError
        ``"Crossbar inputs must be integers from 0 to 255, not 256 (at index 3)"``,
        ``"Crossbar inputs must have shape (64,) or (N, 64), not (63,)"``, :func:`check_mapping`'s errors,
        ``"ADC codes must be integers from 0 to 31, not 32 (at index (0, 2))"`` from a misbehaving array model.

    Examples
    --------
    >>> fmt = CrossbarFormat(rows=4, cols=2, rows_per_sub=2, act_bits=3, w_bits=4, cell_bits=2)
    >>> w = [[13, 0], [6, -1], [-7, 0], [0, 15]]
    >>> golden_mvm([1, 4, 0, 0], map_weights(w, fmt), fmt)
    (array([37, -4]), Steps(2, per_vector=[2]))
    >>> golden_mvm([[1, 4, 0, 0], [0, 0, 0, 0], [0, 0, 7, 1]], map_weights(w, fmt), fmt)[1]
    Steps(5, per_vector=[2, 0, 3])

    With a 2-bit ADC the column of the high slices of 13 and 6 (``3 + 1``) clips to 3 when both rows are
    driven: ``y[0] = (1 + 2) * (3 + 3 * 4) = 45`` instead of ``3 * 19 = 57``.

    >>> golden_mvm([3, 3, 0, 0], map_weights(w, fmt), fmt.replace(adc_bits=2))
    (array([45, -3]), Steps(2, per_vector=[2]))
    """
    fmt = check_format(fmt)
    m = check_mapping(mapping, fmt)
    if not isinstance(zero_skip, bool):
        raise TypeError(f"Zero-skip must be a bool, not {zero_skip!r}")
    x2 = _inputs(x, fmt)
    n = len(x2)
    planes = _bit_planes(x2, fmt)                                   # [N, sub_arrays, act_bits, rows_per_sub]
    active = planes.any(axis=-1) if zero_skip else np.ones(planes.shape[:-1], dtype=bool)
    weights = _shift_weights(fmt)                                   # [act_bits, slices]
    negative = m.signs == 1                                         # [sub_arrays, cols]
    y = np.zeros((n, fmt.cols), dtype=np.int64)
    rps = fmt.rows_per_sub
    if array is None or getattr(array, "stateless", False):
        # a stateless array gives the same codes in any order: every plane of all vectors at once,
        # codes [N, act_bits, physical_cols], the inactive planes' codes then dropped
        for k in range(fmt.sub_arrays):
            if array is None:
                codes = np.minimum(planes[:, k] @ m.cells[k * rps:(k + 1) * rps], fmt.adc_max)
            else:
                wl = planes[:, k].reshape(n * fmt.act_bits, rps)
                codes = _codes(array.read(k, wl), fmt, len(wl)).reshape(n, fmt.act_bits, fmt.physical_cols)
            codes = np.where(active[:, k, :, None], codes, 0)
            partial = np.einsum("npcs,ps->nc", codes.reshape(n, fmt.act_bits, fmt.cols, fmt.slices), weights)
            y += np.where(negative[k], -partial, partial)
    else:  # the order of reads matters: vector-major, then sub-array, then plane (the RTL's order)
        for i in range(n):
            for k in range(fmt.sub_arrays):
                live = np.flatnonzero(active[i, k])
                if live.size == 0:
                    continue
                codes = _codes(array.read(k, planes[i, k, live]), fmt, live.size)
                partial = np.einsum("pcs,ps->c", codes.reshape(live.size, fmt.cols, fmt.slices), weights[live])
                y[i] += np.where(negative[k], -partial, partial)
    steps = Steps(active.sum(axis=(1, 2)))
    return (y[0] if np.ndim(x) == 1 else y), steps


def _codes(codes: Any, fmt: CrossbarFormat, reads: int) -> np.ndarray:
    arr = as_int_array("ADC codes", codes, 0, fmt.adc_max)
    if arr.shape != (reads, fmt.physical_cols):
        raise ValueError(f"ADC codes must have shape ({reads}, {fmt.physical_cols}) (reads, physical_cols), "
                         f"not {arr.shape}")
    return arr
