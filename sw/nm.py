"""N:M structured sparsity: format, pruning masks, packing, NVIDIA 2:4 metadata and the ``nm-sparse`` golden model.

An N:M sparse weight matrix ``W [out, in]`` has at most ``N`` non-zeros in every group of ``M`` consecutive
weights along the reduction axis (the input features): group ``g`` of row ``r`` is
``W[r, g*M : (g+1)*M]``. The ``nm-sparse`` PE (docs/nm-sparse.md) stores each group as ``N`` signed
values and ``N`` indices of ``ceil(log2 M)`` bits and computes

    y[r] = sum_g sum_{t < N} a[r, g*M + idx[r, g, t]] * val[r, g, t]

(the ``N`` kept activations of each group are muxed into ``N`` multipliers). Sources:

* NVIDIA Ampere 2:4 ("Accelerating Sparse Deep Neural Networks", Mishra et al., arXiv:2104.08378), whose
  metadata layout :func:`nvidia_metadata` produces;
* SR-STE ("Learning N:M Fine-grained Structured Sparse Neural Networks From Scratch", Zhou et al., ICLR 2021),
  the training rule of :class:`NMSparseLinear`;
* SAT / BDWP ("Efficient N:M Sparse DNN Training Using Algorithm, Architecture, and Dataflow Co-Design",
  Fang et al., IEEE TCAD 2023), bidirectional masks (:func:`bidirectional_masks`);
* transposable masks ("Accelerated Sparse Neural Training: A Provable and Efficient Method to Find N:M
  Transposable Masks", Hubara et al., NeurIPS 2021), :func:`transposable_mask`.

Rules fixed here (the hardware, the testbench and the docs rely on them):

* **Ties** (:func:`nm_mask`): the ``N`` largest magnitudes of a group are kept; among equal magnitudes the
  lower index wins. A zero weight is never marked kept, so a group keeps exactly ``min(N, non-zeros)``.
* **Canonical packing** (:func:`pack`): per group, ``N`` slots with strictly ascending indices. The slots
  hold the group's non-zeros; a group with fewer than ``N`` non-zeros is padded with zero values at the
  **smallest unused indices** (2:4, only index 3 non-zero: indices ``(0, 3)``, values ``(0, v)``; an all-zero
  group: indices ``(0, 1)``, values ``(0, 0)``).
* **Any index list is legal input** to :func:`unpack` and :func:`golden_dot`: slots that hit the same
  position add up (the hardware computes ``y += a[idx] * val`` for every slot).

This module imports numpy only, so the simulator can load the golden model without torch. The PyTorch half
(:class:`NMSparseLinear`, :class:`NMMask`, :func:`sr_ste`, and the masks of tensors) is :mod:`sw.nm_torch`.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import numpy as np

from . import fixed
from .intops import INT64_MAX, INT64_MIN, as_acts, as_int_array, as_real_array, exact_dot
from .params import Params, check_int

__all__ = [
    "NMFormat", "check_format", "nm_mask", "bidirectional_masks", "transposable_mask", "pack", "unpack",
    "nvidia_metadata", "nvidia_indices", "golden_dot", "golden_dense_dot",
]

#: Largest group size M; index fields are then at most 4 bits wide.
MAX_M = 16





@dataclasses.dataclass(frozen=True)
class NMFormat(Params):
    """An N:M sparsity format: at most ``n`` non-zeros in every group of ``m`` consecutive weights.

    Members
    -------
    n : int
        Kept weights per group, ``1 <= n < m``.
    m : int
        Group size along the reduction axis, a power of two from 2 to 16.

    Raises
    ------
    TypeError
        ``"N:M n must be an integer, not 2.0"``.
    ValueError
        ``"N:M m must be a power of two from 2 to 16, not 6"``,
        ``"N:M n must be an integer from 1 to 3 for m = 4 (n < m), not 4"``.

    Examples
    --------
    >>> fmt = NMFormat(2, 4)
    >>> fmt.index_bits, fmt.density, fmt.packed_width(16)
    (2, 0.5, 8)
    >>> NMFormat(1, 16).index_bits
    4
    """

    n: int = dataclasses.field(default=2, metadata={"doc": "kept (non-zero) weights per group, 1 <= n < m"})
    m: int = dataclasses.field(default=4, metadata={
        "doc": "group size along the reduction axis (input features), a power of two from 2 to 16"})

    def __post_init__(self):
        check_int("N:M m", self.m)
        if not (2 <= self.m <= MAX_M and self.m & (self.m - 1) == 0):
            raise ValueError(f"N:M m must be a power of two from 2 to {MAX_M}, not {self.m!r}")
        check_int("N:M n", self.n)
        if not 1 <= self.n < self.m:
            raise ValueError(f"N:M n must be an integer from 1 to {self.m - 1} for m = {self.m} (n < m), "
                             f"not {self.n!r}")

    @property
    def index_bits(self) -> int:
        """Width of one index field, ``ceil(log2 m)``."""
        return (self.m - 1).bit_length()

    @property
    def density(self) -> float:
        """Fraction of weights kept, ``n / m``."""
        return self.n / self.m

    def groups(self, k: int, subject: str = "K") -> int:
        """Number of groups ``k / m`` of a reduction length ``k``.

        Raises
        ------
        ValueError
            ``"K must be a multiple of m = 4, not 6"`` (``subject`` names the length).
        """
        check_int(subject, k, min=0)
        if k % self.m:
            raise ValueError(f"{subject} must be a multiple of m = {self.m}, not {k!r}")
        return k // self.m

    def packed_width(self, k: int) -> int:
        """Values (and indices) per row once packed, ``k * n / m``."""
        return self.groups(k) * self.n


def check_format(fmt: Any) -> NMFormat:
    """Return ``fmt`` if it is an :class:`NMFormat`, else raise ``TypeError("N:M format must be ...")``."""
    if not isinstance(fmt, NMFormat):
        raise TypeError(f"N:M format must be an NMFormat, not {fmt!r}")
    return fmt


# -- pruning masks ---------------------------------------------------------------------------------------

def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")  # a torch tensor implies torch is imported: never import it here
    return torch is not None and isinstance(x, torch.Tensor)


def _mask_of_tensor(w: Any, fmt: NMFormat, axis: int) -> Any:
    """:func:`nm_mask` of a torch tensor (axis checked and normalised): the same rule in torch ops, on torch as
    the caller imported it (``sys.modules``), so this module imports neither torch nor :mod:`sw.nm_torch`."""
    torch = sys.modules["torch"]
    mag = w.detach().movedim(axis, -1).abs()
    shape = mag.shape
    grouped = mag.reshape(*shape[:-1], shape[-1] // fmt.m, fmt.m)
    order = torch.sort(grouped, dim=-1, descending=True, stable=True).indices  # ties: lower index first
    rank = torch.argsort(order, dim=-1)  # inverse permutation
    keep = (rank < fmt.n) & (grouped > 0)
    return keep.reshape(shape).movedim(-1, axis)


def _bool_tensor_like(mask: np.ndarray, like: Any) -> Any:
    return sys.modules["torch"].from_numpy(np.ascontiguousarray(mask)).to(device=like.device)


def _check_axis(shape: tuple[int, ...], axis: Any, fmt: NMFormat) -> int:
    """``axis`` normalised to ``[0, ndim)``, after checking the length along it is a multiple of ``m``."""
    ndim = len(shape)
    if ndim == 0:
        raise ValueError(f"Weights must be an array of at least 1 dimension, not shape {tuple(shape)}")
    check_int("Axis", axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"Axis must be an integer from {-ndim} to {ndim - 1} for a {ndim}-D array, "
                         f"not {axis!r}")
    axis %= ndim
    fmt.groups(int(shape[axis]), f"Weights' length along axis {axis}")
    return axis


def _check_matrix(shape: tuple[int, ...], fmt: NMFormat, what: str) -> None:
    if len(shape) != 2:
        raise ValueError(f"Weights must be a 2-D array [out, in], not shape {tuple(shape)}")
    for axis, name in ((0, "rows (out)"), (1, "columns (in)")):
        fmt.groups(int(shape[axis]), f"Weights' {name} for {what}")


def _top_n(mag: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask of the ``n`` largest non-zero entries along the last axis; ties to the lower index."""
    order = np.argsort(-mag, axis=-1, kind="stable")   # stable: equal magnitudes keep index order
    rank = np.argsort(order, axis=-1)                   # inverse permutation: rank of every entry
    return (rank < n) & (mag > 0)


def nm_mask(w: Any, fmt: NMFormat, axis: int = -1) -> Any:
    """Keep the ``n`` largest magnitudes in every group of ``m`` consecutive weights along ``axis``.

    Ties between equal magnitudes go to the lower index; zero weights are never kept, so a group keeps
    exactly ``min(n, its non-zeros)`` entries.

    Parameters
    ----------
    w : real array (numpy, list or torch tensor), at least 1-D
        Weights, ``[out, in]`` for a linear layer; the length along ``axis`` a multiple of ``m``.
    fmt : NMFormat
    axis : int
        The reduction axis the groups run along (default -1: the input features of ``[out, in]``).

    Returns
    -------
    bool array of ``w``'s shape: numpy for numpy input, a ``torch.bool`` tensor on ``w``'s device for a
    tensor (torch tensors are not checked for NaN).

    Raises
    ------
    ValueError
        ``"Weights' length along axis 1 must be a multiple of m = 4, not 6"``,
        ``"Weights must be finite, not nan (at index (0, 1))"``.

    Examples
    --------
    >>> nm_mask([[0.1, -0.5, 0.3, 0.2, 1.0, 1.0, 1.0, 0.0]], NMFormat(2, 4)).astype(int).tolist()
    [[0, 1, 1, 0, 1, 1, 0, 0]]
    """
    fmt = check_format(fmt)
    if _is_tensor(w):
        return _mask_of_tensor(w, fmt, _check_axis(tuple(w.shape), axis, fmt))
    w = as_real_array("Weights", w)
    axis = _check_axis(w.shape, axis, fmt)
    moved = np.moveaxis(np.abs(w), axis, -1)
    grouped = moved.reshape(*moved.shape[:-1], moved.shape[-1] // fmt.m, fmt.m)
    keep = _top_n(grouped, fmt.n).reshape(moved.shape)
    return np.moveaxis(keep, -1, axis)


def bidirectional_masks(w: Any, fmt: NMFormat) -> tuple[Any, Any]:
    """BDWP masks of ``w [out, in]``: ``(forward, backward)``.

    ``forward`` is N:M along the input features (axis 1, the reduction of ``y = W x``); ``backward`` is N:M
    along the output features (axis 0, the reduction of the back-propagated ``dx = W^T dy``), both
    :func:`nm_mask` with its tie rule. Both dimensions must be multiples of ``m``. Numpy or torch, as
    :func:`nm_mask`.

    Examples
    --------
    >>> fwd, bwd = bidirectional_masks([[4, 3], [1, 2]], NMFormat(1, 2))
    >>> fwd.astype(int).tolist(), bwd.astype(int).tolist()
    ([[1, 0], [0, 1]], [[1, 1], [0, 0]])
    """
    fmt = check_format(fmt)
    _check_matrix(tuple(w.shape) if _is_tensor(w) else np.shape(w), fmt, "bidirectional masks")
    return nm_mask(w, fmt, axis=1), nm_mask(w, fmt, axis=0)


def _greedy_transposable(mag: np.ndarray, n: int, m: int) -> np.ndarray:
    """Greedy transposable mask of blocks ``mag [blocks, m, m]`` (see :func:`transposable_mask`)."""
    blocks = mag.shape[0]
    flat = mag.reshape(blocks, m * m)
    order = np.argsort(-flat, axis=1, kind="stable")   # decreasing magnitude, ties in row-major order
    rows_used = np.zeros((blocks, m), dtype=np.int64)
    cols_used = np.zeros((blocks, m), dtype=np.int64)
    keep = np.zeros((blocks, m * m), dtype=bool)
    b = np.arange(blocks)
    for step in range(m * m):
        pos = order[:, step]
        r, c = pos // m, pos % m
        take = (rows_used[b, r] < n) & (cols_used[b, c] < n) & (flat[b, pos] > 0)
        keep[b, pos] = take
        rows_used[b, r] += take
        cols_used[b, c] += take
    return keep.reshape(blocks, m, m)


def transposable_mask(w: Any, fmt: NMFormat) -> Any:
    """One mask of ``w [out, in]`` that is N:M along both axes (Hubara et al. 2021), found greedily.

    In every aligned ``m x m`` block, entries are visited in decreasing magnitude (ties in row-major order,
    the lower flat index first) and kept while their row and their column of the block hold fewer than
    ``n`` kept entries; zeros are never kept. Every group of ``m`` along a row and along a column then holds
    at most ``n`` kept entries, so ``W * mask`` and its transpose are both N:M sparse. For 2:4 this is the
    greedy rule of ``torch.sparse._semi_structured_conversions._sparse_semi_structured_tile`` applied to
    ``|w|``.

    Greedy is a 1/2-approximation of the largest kept magnitude ``sum |w| * mask`` in the worst case.
    Measured on blocks of i.i.d. standard normal weights (numpy seed 0) against the exact optimum of each
    block (exhaustive search over every valid 4 x 4 mask for m = 4, ``scipy.optimize.linear_sum_assignment``
    for n = 1, ``scipy.optimize.milp`` for 2:8 and 4:8; ``tests/test_sw_nm.py`` re-checks smaller samples):

    =====  ======  ===========  ===========  ==============  ================  ==================
    N:M    blocks  mean ratio   worst ratio  blocks optimal  greedy / N:M row  optimum / N:M row
    =====  ======  ===========  ===========  ==============  ================  ==================
    1:4    20000   0.9725       0.6728       61.0 %          0.8721            0.8960
    2:4    20000   0.9847       0.8128       54.4 %          0.9298            0.9441
    3:4    20000   0.9938       0.8995       63.1 %          0.9647            0.9707
    1:8    20000   0.9668       0.7802       24.3 %          0.8723            0.9020
    2:8    2000    0.9755       0.8933       11.5 %          0.9172            0.9400
    4:8    2000    0.9877       0.9470       8.3 %           0.9552            0.9671
    1:16   20000   0.9652       0.8464       3.3 %           0.8835            0.9152
    =====  ======  ===========  ===========  ==============  ================  ==================

    "ratio" is greedy / optimal kept magnitude per block; the last two columns compare the total kept
    magnitude with that of the row-wise :func:`nm_mask` (the price of transposability).

    Parameters
    ----------
    w : real array [out, in] (numpy, list or torch tensor); both dimensions multiples of ``m``
    fmt : NMFormat

    Returns
    -------
    bool array [out, in] (a ``torch.bool`` tensor on ``w``'s device for a tensor; computed in numpy).

    Examples
    --------
    >>> transposable_mask([[9, 8], [7, 1]], NMFormat(1, 2)).astype(int).tolist()
    [[1, 0], [0, 1]]
    """
    fmt = check_format(fmt)
    tensor = w if _is_tensor(w) else None
    w = as_real_array("Weights", w)
    _check_matrix(w.shape, fmt, "a transposable mask")
    (rows, cols), m = w.shape, fmt.m
    blocks = np.abs(w).reshape(rows // m, m, cols // m, m).transpose(0, 2, 1, 3).reshape(-1, m, m)
    keep = _greedy_transposable(blocks, fmt.n, m)
    keep = keep.reshape(rows // m, cols // m, m, m).transpose(0, 2, 1, 3).reshape(rows, cols)
    if tensor is not None:
        return _bool_tensor_like(keep, tensor)
    return keep


# -- packing ---------------------------------------------------------------------------------------------

def _matrix(subject: str, arr: np.ndarray) -> np.ndarray:
    if arr.ndim != 2:
        raise ValueError(f"{subject} must be a 2-D array [rows, K], not shape {arr.shape}")
    return arr


def pack(w_int: Any, fmt: NMFormat) -> tuple[np.ndarray, np.ndarray]:
    """Canonical packing of an N:M sparse integer matrix: ``(values, indices)``, each ``[rows, K*n/m]``.

    Group ``g`` of row ``r`` becomes slots ``g*n .. g*n + n - 1``: its non-zeros with their in-group indices
    ``0 .. m-1``, strictly ascending; a group with fewer than ``n`` non-zeros is padded with zero values at
    its smallest unused indices. :func:`unpack` inverts it exactly.

    Parameters
    ----------
    w_int : int array [rows, K]
        Any int64 values; ``K`` a multiple of ``m``; at most ``n`` non-zeros per group.
    fmt : NMFormat

    Returns
    -------
    (values, indices) : int64 [rows, K*n/m] each

    Raises
    ------
    ValueError
        ``"Weights must have at most 2 non-zeros in every group of 4, not 3 (row 1, group 0: columns 0 to
        3)"``, ``"Weights' K must be a multiple of m = 4, not 6"``.

    Examples
    --------
    >>> values, indices = pack([[0, 5, 0, -3, 0, 0, 0, 7]], NMFormat(2, 4))
    >>> values.tolist(), indices.tolist()
    ([[5, -3, 0, 7]], [[1, 3, 0, 3]])
    """
    fmt = check_format(fmt)
    w = _matrix("Weights", as_int_array("Weights", w_int, INT64_MIN, INT64_MAX))
    (rows, k), n, m = w.shape, fmt.n, fmt.m
    groups = fmt.groups(k, "Weights' K")
    grouped = w.reshape(rows, groups, m)
    nonzero = grouped != 0
    count = nonzero.sum(axis=-1)
    if np.any(count > n):
        r, g = (int(i) for i in np.argwhere(count > n)[0])
        raise ValueError(f"Weights must have at most {n} non-zeros in every group of {m}, not {int(count[r, g])} "
                         f"(row {r}, group {g}: columns {g * m} to {g * m + m - 1})")
    # Non-zeros first (in index order), then the zeros in index order: the first n are the kept slots.
    chosen = np.sort(np.argsort(~nonzero, axis=-1, kind="stable")[..., :n], axis=-1)
    values = np.take_along_axis(grouped, chosen, axis=-1)
    return values.reshape(rows, groups * n), chosen.reshape(rows, groups * n)


def _packed_pair(values: Any, indices: Any, fmt: NMFormat, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    v = as_int_array("N:M values", values, lo, hi)
    i = as_int_array("N:M indices", indices, 0, fmt.m - 1)
    for name, arr in (("N:M values", v), ("N:M indices", i)):
        if arr.ndim not in (1, 2):
            raise ValueError(f"{name} must be a 1-D [K*n/m] or 2-D [rows, K*n/m] array, not shape {arr.shape}")
    return v, i


def _columns(indices: np.ndarray, fmt: NMFormat) -> np.ndarray:
    """Absolute column ``g*m + idx`` of every slot (slot ``s`` belongs to group ``s // n``)."""
    return (np.arange(indices.shape[-1]) // fmt.n) * fmt.m + indices


def unpack(values: Any, indices: Any, fmt: NMFormat, K: int) -> np.ndarray:
    """Dense int64 weights ``[rows, K]`` (or ``[K]``) of packed ``(values, indices)``.

    ``w[r, g*m + idx[r, s]] += val[r, s]`` for every slot ``s`` of group ``g = s // n``, so any index list is
    accepted: slots hitting the same position add up, as in the hardware. ``unpack(*pack(w, fmt), fmt, K)``
    returns ``w``.

    Parameters
    ----------
    values, indices : int arrays of one shape, [rows, K*n/m] or [K*n/m]
        Indices in ``[0, m)``.
    fmt : NMFormat
    K : int, a multiple of ``m``

    Raises
    ------
    ValueError
        ``"N:M indices must be integers from 0 to 3, not 4 (at index (0, 1))"``,
        ``"N:M values must have shape (rows, 4) or (4,) (K*n/m for K = 8, 2:4), not (0, 3)"``.

    Examples
    --------
    >>> unpack([[5, -3, 0, 7]], [[1, 3, 0, 3]], NMFormat(2, 4), 8).tolist()
    [[0, 5, 0, -3, 0, 0, 0, 7]]
    >>> unpack([2, 3], [1, 1], NMFormat(2, 4), 4).tolist()  # both slots hit column 1
    [0, 5, 0, 0]
    """
    fmt = check_format(fmt)
    width = fmt.groups(K) * fmt.n
    v, i = _packed_pair(values, indices, fmt, INT64_MIN, INT64_MAX)
    for name, arr in (("N:M values", v), ("N:M indices", i)):
        if arr.shape[-1] != width:
            raise ValueError(f"{name} must have shape (rows, {width}) or ({width},) (K*n/m for K = {K}, "
                             f"{fmt.n}:{fmt.m}), not {arr.shape}")
    if v.shape != i.shape:
        raise ValueError(f"N:M indices must have the shape of the values, {v.shape}, not {i.shape}")
    count = v.shape[0] if v.ndim == 2 else 1
    rows = v.reshape(count, width)
    cols = _columns(i.reshape(count, width), fmt)
    peak = max(-int(rows.min()), int(rows.max())) if rows.size else 0
    wide = fmt.n * peak > INT64_MAX  # colliding slots could overflow int64: add in Python integers
    dense = np.zeros((count, K), dtype=object if wide else np.int64)
    np.add.at(dense, (np.arange(count)[:, None], cols), rows.astype(object) if wide else rows)
    if wide:
        dense = as_int_array("Unpacked weights", dense, INT64_MIN, INT64_MAX)
    return dense.reshape(v.shape[:-1] + (K,))


# -- NVIDIA 2:4 metadata ----------------------------------------------------------------------------------

def _check_word_bits(word_bits: Any) -> int:
    check_int("Metadata word bits", word_bits)
    if word_bits not in (16, 32):
        raise ValueError(f"Metadata word bits must be 16 or 32, not {word_bits!r}")
    return word_bits // 4


def nvidia_metadata(indices: Any, *, word_bits: int = 16) -> np.ndarray:
    """NVIDIA sparse-tensor-core metadata of packed 2:4 indices.

    Each group's two indices form a nibble, bits [1:0] the lower index and [3:2] the higher; the nibbles
    of consecutive groups are packed into ``word_bits``-bit words, group 0 in the least significant nibble
    (4 groups per 16-bit word, 8 per 32-bit word). The indices must be strictly ascending within a group,
    so a nibble is one of 0x4, 0x8, 0x9, 0xC, 0xD, 0xE.

    This is the ``meta`` matrix of ``torch.sparse._semi_structured_conversions.
    sparse_semi_structured_from_dense_cutlass`` (int16 words for half / bfloat16, int32 for int8) *before*
    torch scatters it into CUTLASS's ``ColumnMajorInterleaved<2>`` order
    (``_calculate_meta_reordering_scatter_offsets``): this function does no reordering. Groups with two
    non-zeros get the same nibble as torch; padded groups can differ (torch pads an all-zero group as
    ``(2, 3)``, :func:`pack` as ``(0, 1)``), which changes no product since the padded values are zero.

    Parameters
    ----------
    indices : int array [rows, K/2] or [K/2], in [0, 4)
        As produced by :func:`pack` with ``NMFormat(2, 4)``; ``K/2`` a multiple of 8 (16-bit words) or 16.
    word_bits : 16 or 32

    Returns
    -------
    uint16 array [rows, K/16] (or [K/16]); uint32 [rows, K/32] for 32-bit words.

    Raises
    ------
    ValueError
        ``"2:4 indices must have a multiple of 8 entries (4 groups of 2 per 16-bit word) per row, not 6"``,
        ``"2:4 indices must be strictly ascending within a group, not [3, 1] (row 0, group 1)"``.

    Examples
    --------
    >>> hex(int(nvidia_metadata([0, 1, 0, 2, 1, 3, 2, 3])[0]))
    '0xed84'
    """
    per_word = _check_word_bits(word_bits)
    i = as_int_array("2:4 indices", indices, 0, 3)
    if i.ndim not in (1, 2):
        raise ValueError(f"2:4 indices must be a 1-D [K/2] or 2-D [rows, K/2] array, not shape {i.shape}")
    width = i.shape[-1]
    if width % (2 * per_word):
        raise ValueError(f"2:4 indices must have a multiple of {2 * per_word} entries ({per_word} groups of 2 "
                         f"per {word_bits}-bit word) per row, not {width}")
    pairs = i.reshape(-1, width // 2, 2)
    bad = pairs[..., 0] >= pairs[..., 1]
    if np.any(bad):
        r, g = (int(x) for x in np.argwhere(bad)[0])
        raise ValueError(f"2:4 indices must be strictly ascending within a group, not {pairs[r, g].tolist()} "
                         f"(row {r}, group {g})")
    nibbles = (pairs[..., 0] | (pairs[..., 1] << 2)).reshape(len(pairs), -1, per_word)
    words = (nibbles << (4 * np.arange(per_word))).sum(axis=-1)
    return words.astype(np.uint16 if word_bits == 16 else np.uint32).reshape(i.shape[:-1] + (-1,))


def nvidia_indices(meta: Any, *, word_bits: int = 16) -> np.ndarray:
    """The inverse of :func:`nvidia_metadata`: int64 indices ``[rows, words * word_bits/2]`` of metadata
    words (any nibble is decoded, valid or not).

    >>> nvidia_indices([0xED84]).tolist()
    [0, 1, 0, 2, 1, 3, 2, 3]
    """
    per_word = _check_word_bits(word_bits)
    words = as_int_array("Metadata words", meta, 0, (1 << word_bits) - 1)
    fields = (words[..., None] >> (2 * np.arange(2 * per_word))) & 3
    return fields.reshape(words.shape[:-1] + (-1,)) if words.ndim else fields


# -- golden model ---------------------------------------------------------------------------------------

def _value_range(w_bits: int | None) -> tuple[int, int]:
    """The full signed ``w_bits`` range (:func:`sw.fixed.weight_range`), or all of int64 for ``None``."""
    return (INT64_MIN, INT64_MAX) if w_bits is None else fixed.weight_range(w_bits)


def golden_dot(acts: Any, values: Any, indices: Any, fmt: NMFormat, *, act_bits: int | None = None,
               act_signed: bool = True, w_bits: int | None = None) -> np.ndarray:
    """Bit-exact result of the ``nm-sparse`` PE in sparse mode.

    .. math:: y_r = \\sum_{g} \\sum_{t < n} a_{r,\\, g m + idx_{g,t}} \\; val_{g,t}

    Every slot contributes, whatever its index (duplicates add, the order does not matter), so the result
    equals the dense product with :func:`unpack`'s weights.

    Parameters
    ----------
    acts : int array [rows, K], ``K`` a multiple of ``m``
        Range-checked against ``act_bits`` (signed or not) when ``act_bits`` is given.
    values : int array [rows, K*n/m] or [K*n/m] (shared by every row)
        Signed ``w_bits`` integers (full two's-complement range) when ``w_bits`` (2 to 16) is given.
    indices : int array [rows, K*n/m] or [K*n/m], in ``[0, m)``
    fmt : NMFormat

    Returns
    -------
    np.ndarray of int64 [rows], exact (see :func:`sw.intops.exact_dot`).

    Raises
    ------
    TypeError, ValueError
        ``"N:M indices must be integers from 0 to 3, not 4 (at index 1)"``,
        ``"N:M values must be integers from -8 to 7, not 8 (at index (0, 1))"``,
        ``"Acts must be integers from -8 to 7, not 8 (at index (0, 1))"``,
        ``"Acts' K must be a multiple of m = 4, not 6"``, or a shape mismatch.

    Examples
    --------
    >>> golden_dot([[1, 2, 3, 4, 5, 6, 7, 8]], [10, -1, 0, 3], [0, 3, 0, 3], NMFormat(2, 4), w_bits=8)
    array([30])
    """
    fmt = check_format(fmt)
    a = _matrix("Acts", as_acts(acts, act_bits, act_signed))
    rows, k = a.shape
    width = fmt.groups(k, "Acts' K") * fmt.n
    v, i = _packed_pair(values, indices, fmt, *_value_range(w_bits))
    for name, arr in (("N:M values", v), ("N:M indices", i)):
        if arr.shape not in ((width,), (rows, width)):
            raise ValueError(f"{name} must have shape ({width},) or ({rows}, {width}) to match acts of shape "
                             f"{a.shape} ({fmt.n}:{fmt.m}), not {arr.shape}")
    picked = np.take_along_axis(a, np.broadcast_to(_columns(i, fmt), (rows, width)), axis=1)
    return exact_dot(picked, v)


def golden_dense_dot(acts: Any, weights: Any, *, act_bits: int | None = None, act_signed: bool = True,
                     w_bits: int | None = None) -> np.ndarray:
    """Bit-exact result of the ``nm-sparse`` PE in dense mode: ``y[r] = sum_k a[r, k] * w[k]`` (or ``w[r, k]``).

    The dense mode feeds activations and weights straight to the multipliers, so this is
    :func:`sw.fixed.golden_dot` (with ``w_bits`` optional: without it any int64 weight is accepted).

    Raises
    ------
    TypeError, ValueError
        ``"Fixed-point weights must be integers from -8 to 7, not 8 (at index 3)"``, ``"Acts must be ..."``,
        ``"Weight bits must be an integer from 2 to 16, not 1"``, or a shape mismatch.

    Examples
    --------
    >>> golden_dense_dot([[1, 2], [3, -4]], [-8, 7], act_bits=4, w_bits=4)
    array([  6, -52])
    """
    if w_bits is not None:
        return fixed.golden_dot(acts, weights, w_bits, act_bits=act_bits, act_signed=act_signed)
    a = as_acts(acts, act_bits, act_signed)
    return exact_dot(a, as_int_array("Fixed-point weights", weights, INT64_MIN, INT64_MAX))
