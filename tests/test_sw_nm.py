"""Tests for peforge.sw.nm: the N:M format, pruning masks (row-wise, bidirectional, transposable) against brute-force
references and exact optima, canonical packing, NVIDIA 2:4 metadata against torch's own conversion, the
golden model of the nm-sparse PE against float64 numpy and an independent loop, SR-STE gradients by hand,
NMSparseLinear, and a small digits MLP (dense vs 2:4)."""

import doctest
import itertools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import peforge.sw.nm
from peforge.sw import fixed
from peforge.sw.nm import NMFormat, bidirectional_masks, check_format, golden_dense_dot, golden_dot, nm_mask, nvidia_indices, nvidia_metadata, pack, transposable_mask, unpack
from peforge.sw.nm_torch import NMMask, NMSparseLinear, sr_ste

INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1
LEGAL = [(n, m) for m in (2, 4, 8, 16) for n in range(1, m)]
FORMATS = [(2, 4), (1, 4), (2, 8), (4, 8), (1, 16)]  # the sampled ones: NVIDIA's, and 1:4 to 1:16
formats = st.sampled_from(FORMATS).map(lambda p: NMFormat(*p))
ROOT = Path(__file__).resolve().parent.parent


# -- independent references (plain Python loops) -------------------------------------------------------

def ref_mask(w, n, m):
    """Row-wise N:M mask: the n largest |w| of each group, ties to the lower index, zeros never kept."""
    w = np.asarray(w, dtype=np.float64)
    out = np.zeros(w.shape, dtype=bool)
    for r in range(w.shape[0]):
        for g0 in range(0, w.shape[1], m):
            ranked = sorted(range(m), key=lambda j: (-abs(w[r, g0 + j]), j))
            for j in ranked[:n]:
                out[r, g0 + j] = w[r, g0 + j] != 0
    return out


def ref_transposable(w, n, m):
    """Greedy per m x m block: decreasing |w|, ties in row-major order, accept while row and column < n."""
    w = np.asarray(w, dtype=np.float64)
    out = np.zeros(w.shape, dtype=bool)
    for r0 in range(0, w.shape[0], m):
        for c0 in range(0, w.shape[1], m):
            entries = sorted((-abs(w[r0 + i, c0 + j]), i, j) for i in range(m) for j in range(m))
            rows, cols = [0] * m, [0] * m
            for neg, i, j in entries:
                if neg < 0 and rows[i] < n and cols[j] < n:
                    out[r0 + i, c0 + j] = True
                    rows[i] += 1
                    cols[j] += 1
    return out


def ref_pack(w, n, m):
    """Per group: the non-zeros plus the smallest unused indices (zero values), ascending."""
    values, indices = [], []
    for row in np.asarray(w).tolist():
        vs, ix = [], []
        for g0 in range(0, len(row), m):
            group = row[g0:g0 + m]
            nonzero = [j for j in range(m) if group[j] != 0]
            pad = [j for j in range(m) if group[j] == 0][:n - len(nonzero)]
            chosen = sorted(nonzero + pad)
            vs += [group[j] for j in chosen]
            ix += chosen
        values.append(vs)
        indices.append(ix)
    return values, indices


def ref_unpack(values, indices, n, m, k):
    dense = [0] * k
    for s, (v, i) in enumerate(zip(values, indices)):
        dense[(s // n) * m + i] += v
    return dense


def ref_golden(acts, values, indices, n, m):
    """y[r] = sum over slots s of acts[r][(s // n) * m + idx[s]] * val[s], in Python integers."""
    out = []
    for r, row in enumerate(np.asarray(acts).tolist()):
        v = values if values.ndim == 1 else values[r]
        i = indices if indices.ndim == 1 else indices[r]
        out.append(sum(row[(s // n) * m + int(i[s])] * int(v[s]) for s in range(len(v))))
    return out


def groups_of(mask, m, axis):
    """Kept count of every group of m along axis (axis 1: row groups, axis 0: column groups)."""
    mask = np.asarray(mask)
    if axis == 0:
        mask = mask.T
    return mask.reshape(mask.shape[0], -1, m).sum(axis=-1)


def sparse_ints(rng, rows, k, n, m, lo, hi):
    """Random integers [rows, k] with at most n non-zeros per group (exactly n, fewer or none)."""
    w = rng.integers(lo, hi, (rows, k), endpoint=True)
    for r in range(rows):
        for g0 in range(0, k, m):
            keep = rng.permutation(m)[:rng.integers(0, n + 1)]
            drop = np.setdiff1d(np.arange(m), keep)
            w[r, g0 + drop] = 0
    return w


# -- the format ----------------------------------------------------------------------------------------

def test_legal_list():
    assert len(LEGAL) == 1 + 3 + 7 + 15


@pytest.mark.parametrize("n, m", LEGAL)
def test_format(n, m):
    fmt = NMFormat(n, m)
    assert fmt.index_bits == {2: 1, 4: 2, 8: 3, 16: 4}[m]
    assert fmt.density == n / m
    assert fmt.packed_width(3 * m) == 3 * n
    assert NMFormat.from_json(fmt.to_json()) == fmt
    assert fmt.with_settings({"n": "1"}) == NMFormat(1, m)


def test_format_defaults_and_docs():
    assert NMFormat() == NMFormat(2, 4)
    docs = {name: doc for name, _, _, doc in NMFormat().describe()}
    assert set(docs) == {"n", "m"} and all(docs.values())


@pytest.mark.parametrize("n, m, error, message", [
    (4, 4, ValueError, r"^N:M n must be an integer from 1 to 3 for m = 4 \(n < m\), not 4$"),
    (0, 4, ValueError, r"^N:M n must be an integer from 1 to 3 for m = 4 \(n < m\), not 0$"),
    (2, 2, ValueError, r"^N:M n must be an integer from 1 to 1 for m = 2 \(n < m\), not 2$"),
    (1, 6, ValueError, r"^N:M m must be a power of two from 2 to 16, not 6$"),
    (1, 32, ValueError, r"^N:M m must be a power of two from 2 to 16, not 32$"),
    (1, 1, ValueError, r"^N:M m must be a power of two from 2 to 16, not 1$"),
    (1, -4, ValueError, r"^N:M m must be a power of two from 2 to 16, not -4$"),
    (2.0, 4, TypeError, r"^N:M n must be an integer, not 2\.0$"),
    (True, 4, TypeError, r"^N:M n must be an integer, not True$"),
    (2, "4", TypeError, r"^N:M m must be an integer, not '4'$"),
])
def test_format_wrong(n, m, error, message):
    with pytest.raises(error, match=message):
        NMFormat(n, m)


def test_format_helpers_wrong():
    with pytest.raises(ValueError, match=r"^K must be a multiple of m = 4, not 6$"):
        NMFormat().packed_width(6)
    with pytest.raises(TypeError, match=r"^N:M format must be an NMFormat, not \(2, 4\)$"):
        check_format((2, 4))
    with pytest.raises(TypeError, match=r"^N:M format must be an NMFormat, not '2:4'$"):
        nm_mask([[1.0, 2.0]], "2:4")


# -- row-wise masks ------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=120)
@given(formats, st.integers(1, 4), st.integers(1, 4), st.data())
def test_nm_mask_keeps_the_largest(fmt, rows, groups, data):
    n, m = fmt.n, fmt.m
    # Few distinct magnitudes and both signs: plenty of ties and of zeros.
    w = data.draw(arrays(np.float64, (rows, groups * m), elements=st.sampled_from([0.0, 1.0, -1.0, 2.5, -3.0,
                                                                                  0.125])))
    mask = nm_mask(w, fmt)
    assert mask.dtype == bool and mask.shape == w.shape
    assert mask.tolist() == ref_mask(w, n, m).tolist()
    grouped_w, grouped_mask = np.abs(w).reshape(rows, groups, m), mask.reshape(rows, groups, m)
    nonzeros = (grouped_w > 0).sum(axis=-1)
    assert (grouped_mask.sum(axis=-1) == np.minimum(n, nonzeros)).all()
    for mag, keep in zip(grouped_w.reshape(-1, m), grouped_mask.reshape(-1, m)):
        if keep.any() and (~keep).any():
            assert mag[keep].min() >= mag[~keep].max()
    # torch gives the same mask
    t = nm_mask(torch.from_numpy(w).float(), fmt)
    assert t.dtype == torch.bool and t.numpy().tolist() == mask.tolist()


@pytest.mark.parametrize("row, n, m, expected", [
    ([1, 1, 1, 1], 2, 4, [1, 1, 0, 0]),            # ties: the lower indices
    ([0, 2, -2, 2], 2, 4, [0, 1, 1, 0]),
    ([-3, 3, 0, 0], 1, 4, [1, 0, 0, 0]),
    ([0, 0, 0, 5], 2, 4, [0, 0, 0, 1]),            # one non-zero: one kept, zeros never
    ([0, 0, 0, 0], 2, 4, [0, 0, 0, 0]),
    ([0.5, -4, 4, 3, 1, -4, 2, 0], 4, 8, [0, 1, 1, 1, 0, 1, 0, 0]),
    ([7, 7], 1, 2, [1, 0]),
])
def test_nm_mask_ties(row, n, m, expected):
    assert nm_mask([row], NMFormat(n, m)).astype(int).tolist() == [expected]
    assert nm_mask(torch.tensor([row], dtype=torch.float64), NMFormat(n, m)).int().tolist() == [expected]


def test_nm_mask_axis():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 12))
    fmt = NMFormat(2, 4)
    assert nm_mask(w, fmt, axis=0).tolist() == ref_mask(w.T, 2, 4).T.tolist()
    assert nm_mask(w, fmt, axis=-2).tolist() == nm_mask(w, fmt, axis=0).tolist()
    conv = rng.standard_normal((3, 8, 2, 2))  # [out, in, kh, kw], groups along in
    expected = np.moveaxis(ref_mask(np.moveaxis(conv, 1, -1).reshape(-1, 8), 2, 4).reshape(3, 2, 2, 8), -1, 1)
    assert nm_mask(conv, fmt, axis=1).tolist() == expected.tolist()
    assert nm_mask(torch.from_numpy(conv), fmt, axis=1).numpy().tolist() == expected.tolist()
    v = rng.standard_normal(8)  # 1-D: one row
    assert nm_mask(v, fmt).tolist() == ref_mask(v[None], 2, 4)[0].tolist()


def test_nm_mask_wrong():
    fmt = NMFormat(2, 4)
    with pytest.raises(ValueError, match=r"^Weights' length along axis 1 must be a multiple of m = 4, not 6$"):
        nm_mask(np.ones((2, 6)), fmt)
    with pytest.raises(ValueError, match=r"^Weights' length along axis 0 must be a multiple of m = 4, not 2$"):
        nm_mask(torch.ones(2, 8), fmt, axis=0)
    with pytest.raises(ValueError, match=r"^Axis must be an integer from -2 to 1 for a 2-D array, not 2$"):
        nm_mask(np.ones((4, 4)), fmt, axis=2)
    with pytest.raises(TypeError, match=r"^Axis must be an integer, not 1\.0$"):
        nm_mask(np.ones((4, 4)), fmt, axis=1.0)
    with pytest.raises(ValueError, match=r"^Weights must be finite, not nan \(at index \(0, 1\)\)$"):
        nm_mask([[1.0, np.nan, 0.0, 0.0]], fmt)
    with pytest.raises(ValueError, match=r"^Weights must be an array of at least 1 dimension, not shape \(\)$"):
        nm_mask(1.0, fmt)


# -- bidirectional and transposable masks -----------------------------------------------------------------

@pytest.mark.parametrize("n, m", FORMATS)
def test_bidirectional_masks(n, m):
    fmt = NMFormat(n, m)
    w = np.random.default_rng(m + n).standard_normal((2 * m, 3 * m))
    fwd, bwd = bidirectional_masks(w, fmt)
    assert (groups_of(fwd, m, 1) == n).all() and (groups_of(bwd, m, 0) == n).all()
    assert fwd.tolist() == ref_mask(w, n, m).tolist()
    assert bwd.tolist() == ref_mask(w.T, n, m).T.tolist()
    t_fwd, t_bwd = bidirectional_masks(torch.from_numpy(w), fmt)
    assert t_fwd.numpy().tolist() == fwd.tolist() and t_bwd.numpy().tolist() == bwd.tolist()


def test_bidirectional_and_transposable_wrong():
    fmt = NMFormat(2, 4)
    with pytest.raises(ValueError, match=r"^Weights' rows \(out\) for bidirectional masks must be a multiple of "
                                         r"m = 4, not 6$"):
        bidirectional_masks(np.ones((6, 8)), fmt)
    with pytest.raises(ValueError, match=r"^Weights' columns \(in\) for a transposable mask must be a multiple "
                                         r"of m = 4, not 2$"):
        transposable_mask(np.ones((4, 2)), fmt)
    with pytest.raises(ValueError, match=r"^Weights must be a 2-D array \[out, in\], not shape \(8,\)$"):
        transposable_mask(np.ones(8), fmt)


@settings(deadline=None, max_examples=80)
@given(st.sampled_from(FORMATS + [(1, 2), (3, 4)]), st.integers(1, 3), st.integers(1, 3), st.data())
def test_transposable_mask_is_nm_both_ways(nm, row_blocks, col_blocks, data):
    n, m = nm
    fmt = NMFormat(n, m)
    w = data.draw(arrays(np.float64, (row_blocks * m, col_blocks * m),
                         elements=st.sampled_from([0.0, 1.0, -1.0, 2.0, -0.5, 3.0, 0.25])))
    mask = transposable_mask(w, fmt)
    assert mask.dtype == bool and mask.shape == w.shape
    assert (groups_of(mask, m, 1) <= n).all() and (groups_of(mask, m, 0) <= n).all()
    assert not (mask & (w == 0)).any()
    assert mask.tolist() == ref_transposable(w, n, m).tolist()
    t = transposable_mask(torch.from_numpy(w), fmt)
    assert t.dtype == torch.bool and t.numpy().tolist() == mask.tolist()


def test_transposable_mask_matches_torch_greedy_tile():
    # torch's CPU reference for its 2:4 semi-structured tiles: the same greedy rule, ties by a stable sort.
    tile = pytest.importorskip("torch.sparse._semi_structured_conversions")._sparse_semi_structured_tile
    rng = np.random.default_rng(5)
    for w in (rng.standard_normal((16, 24)), rng.integers(-2, 3, (16, 24)).astype(np.float64)):
        expected = tile(torch.from_numpy(np.abs(w)).clone()) != 0
        assert transposable_mask(w, NMFormat(2, 4)).tolist() == expected.numpy().tolist()


def valid_block_masks(n, m):
    """Every m x m 0/1 matrix with at most n ones in each row and each column, as [count, m*m]."""
    row_choices = [c for k in range(n + 1) for c in itertools.combinations(range(m), k)]
    found = []
    for rows in itertools.product(row_choices, repeat=m):
        p = np.zeros((m, m))
        for i, cols in enumerate(rows):
            p[i, list(cols)] = 1
        if p.sum(axis=0).max() <= n:
            found.append(p.ravel())
    return np.array(found)


def optimum(blocks, n, m):
    """Largest kept magnitude sum |w| * mask of every block [count, m, m] over valid transposable masks."""
    if m == 4:
        return (blocks.reshape(len(blocks), -1) @ valid_block_masks(n, m).T).max(axis=1)
    from scipy.optimize import Bounds, LinearConstraint, linear_sum_assignment, milp
    out = []
    for b in blocks:
        if n == 1:
            r, c = linear_sum_assignment(b, maximize=True)
            out.append(b[r, c].sum())
        else:
            a = np.zeros((2 * m, m * m))
            for i in range(m):
                a[i, i * m:(i + 1) * m] = 1
                a[m + i, i::m] = 1
            res = milp(-b.ravel(), constraints=LinearConstraint(a, 0, n), integrality=np.ones(m * m),
                       bounds=Bounds(0, 1))
            out.append(-res.fun)
    return np.array(out)


def test_valid_block_masks_count():
    # n = 1: partial permutation matrices, sum_k C(m, k)^2 k!
    for m in (2, 4):
        assert len(valid_block_masks(1, m)) == sum(math.comb(m, k) ** 2 * math.factorial(k) for k in range(m + 1))
    # every 4 x 4 0/1 matrix, filtered: the same sets
    every = ((np.arange(1 << 16)[:, None] >> np.arange(16)) & 1).reshape(-1, 4, 4)
    for n in (1, 2, 3):
        ok = every[(every.sum(axis=1).max(axis=1) <= n) & (every.sum(axis=2).max(axis=1) <= n)]
        assert {tuple(p) for p in ok.reshape(-1, 16).tolist()} == \
            {tuple(p) for p in valid_block_masks(n, 4).astype(int).tolist()}


# (format, blocks, mean ratio at least, as measured in transposable_mask's docstring: 20 000 blocks)
OPTIMALITY = [((1, 4), 4000, 0.965), ((2, 4), 4000, 0.978), ((1, 8), 1000, 0.955), ((2, 8), 60, 0.96),
              ((1, 16), 300, 0.955)]


@pytest.mark.parametrize("nm, blocks, mean_at_least", OPTIMALITY)
def test_transposable_mask_optimality(nm, blocks, mean_at_least):
    n, m = nm
    w = np.random.default_rng(11 * m + n).standard_normal((blocks * m, m))  # blocks stacked vertically
    mag = np.abs(w).reshape(blocks, m, m)
    greedy = (mag * transposable_mask(w, NMFormat(n, m)).reshape(blocks, m, m)).sum(axis=(1, 2))
    best = optimum(mag, n, m)
    ratio = greedy / best
    assert (ratio <= 1 + 1e-12).all()
    assert (ratio >= 0.5).all()          # greedy's worst-case guarantee for b-matching
    assert ratio.mean() >= mean_at_least
    assert (ratio > 1 - 1e-12).mean() > 0.02  # and it is often exactly optimal


# -- packing -----------------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=120)
@given(formats, st.integers(0, 4), st.integers(0, 4), st.sampled_from([(-8, 7), (-(2 ** 15), 2 ** 15 - 1),
                                                                    (INT64_MIN, INT64_MAX)]),
       st.integers(0, 2 ** 32 - 1))
def test_pack_unpack_round_trip(fmt, rows, groups, value_range, seed):
    n, m = fmt.n, fmt.m
    k = groups * m
    w = sparse_ints(np.random.default_rng(seed), rows, k, n, m, *value_range)
    values, indices = pack(w, fmt)
    assert values.dtype == np.int64 and indices.dtype == np.int64
    assert values.shape == indices.shape == (rows, groups * n)
    ref_values, ref_indices = ref_pack(w, n, m)
    assert values.tolist() == ref_values and indices.tolist() == ref_indices
    per_group = indices.reshape(rows, groups, n)
    assert (np.diff(per_group, axis=-1) > 0).all() and per_group.min(initial=0) >= 0 and per_group.max(
        initial=0) < m
    assert unpack(values, indices, fmt, k).tolist() == w.tolist()
    assert unpack(values[0], indices[0], fmt, k).tolist() == w[0].tolist() if rows else True


@pytest.mark.parametrize("row, n, m, values, indices", [
    ([0, 0, 0, 7], 2, 4, [0, 7], [0, 3]),
    ([0, 0, 0, 0], 2, 4, [0, 0], [0, 1]),
    ([0, 5, 0, 0], 2, 4, [0, 5], [0, 1]),
    ([5, 0, 0, 0], 2, 4, [5, 0], [0, 1]),
    ([0, 0, 6, 0], 2, 4, [0, 6], [0, 2]),
    ([0, 3, -2, 0], 2, 4, [3, -2], [1, 2]),
    ([0, 0, 9, 0, 0, 0, 0, 1], 4, 8, [0, 0, 9, 1], [0, 1, 2, 7]),
    ([0, 0, 0, 0, 0, 0, 0, -1], 1, 8, [-1], [7]),
    ([0] * 16, 1, 16, [0], [0]),
])
def test_pack_padding_rule(row, n, m, values, indices):
    v, i = pack([row], NMFormat(n, m))
    assert v.tolist() == [values] and i.tolist() == [indices]


def test_pack_wrong():
    fmt = NMFormat(2, 4)
    with pytest.raises(ValueError, match=r"^Weights must have at most 2 non-zeros in every group of 4, not 3 "
                                         r"\(row 1, group 1: columns 4 to 7\)$"):
        pack([[1, 1, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 0, 1, 1]], fmt)
    with pytest.raises(ValueError, match=r"^Weights' K must be a multiple of m = 4, not 6$"):
        pack(np.zeros((1, 6), dtype=int), fmt)
    with pytest.raises(ValueError, match=r"^Weights must be a 2-D array \[rows, K\], not shape \(4,\)$"):
        pack([1, 0, 0, 0], fmt)
    with pytest.raises(TypeError, match=r"^Weights must be integers, not 0\.5 \(at index \(0, 0\)\)$"):
        pack([[0.5, 0, 0, 0]], fmt)


@settings(deadline=None, max_examples=80)
@given(formats, st.integers(1, 3), st.integers(0, 3), st.data())
def test_unpack_adds_colliding_slots(fmt, rows, groups, data):
    n, m = fmt.n, fmt.m
    shape = (rows, groups * n)
    values = data.draw(arrays(np.int64, shape, elements=st.integers(-1000, 1000)), label="values")
    indices = data.draw(arrays(np.int64, shape, elements=st.integers(0, m - 1)), label="indices")  # any order
    dense = unpack(values, indices, fmt, groups * m)
    assert dense.dtype == np.int64
    assert dense.tolist() == [ref_unpack(v, i, n, m, groups * m) for v, i in zip(values.tolist(), indices.tolist())]


def test_unpack_hand_examples():
    fmt = NMFormat(2, 4)
    assert unpack([[2, 3]], [[1, 1]], fmt, 4).tolist() == [[0, 5, 0, 0]]
    assert unpack([[2, 3]], [[3, 1]], fmt, 4).tolist() == [[0, 3, 0, 2]]
    assert unpack([[2, -2, 4, 4]], [[0, 0, 2, 2]], fmt, 8).tolist() == [[0, 0, 0, 0, 0, 0, 8, 0]]
    # int64 extremes: exact without collisions, an error when colliding slots overflow
    assert unpack([[INT64_MAX, INT64_MIN]], [[0, 1]], fmt, 4).tolist() == [[INT64_MAX, INT64_MIN, 0, 0]]
    assert unpack([[INT64_MAX, INT64_MIN]], [[2, 2]], fmt, 4).tolist() == [[0, 0, -1, 0]]
    with pytest.raises(ValueError, match=r"^Unpacked weights must be integers from -9223372036854775808 to "
                                         r"9223372036854775807, not 18446744073709551614 \(at index \(0, 0\)\)$"):
        unpack([[INT64_MAX, INT64_MAX]], [[0, 0]], fmt, 4)


def test_unpack_wrong():
    fmt = NMFormat(2, 4)
    with pytest.raises(ValueError, match=r"^N:M indices must be integers from 0 to 3, not 4 \(at index \(0, 1\)\)$"):
        unpack([[1, 2]], [[0, 4]], fmt, 4)
    with pytest.raises(ValueError, match=r"^N:M values must have shape \(rows, 4\) or \(4,\) \(K\*n/m for K = 8, "
                                         r"2:4\), not \(1, 3\)$"):
        unpack([[1, 2, 3]], [[0, 1, 2]], fmt, 8)
    with pytest.raises(ValueError, match=r"^N:M indices must have the shape of the values, \(2, 2\), not \(2,\)$"):
        unpack([[1, 2], [3, 4]], [0, 1], fmt, 4)
    with pytest.raises(ValueError, match=r"^K must be a multiple of m = 4, not 6$"):
        unpack([[1, 2]], [[0, 1]], fmt, 6)


# -- NVIDIA 2:4 metadata -----------------------------------------------------------------------------------

# The six legal nibbles, transcribed from the table in torch/sparse/_semi_structured_conversions.py:
# bits [1:0] the lower index, bits [3:2] the higher.
NIBBLE = {(0, 1): 0b0100, (0, 2): 0b1000, (1, 2): 0b1001, (0, 3): 0b1100, (1, 3): 0b1101, (2, 3): 0b1110}


def test_nvidia_metadata_hand_examples():
    # groups (0,1) (0,2) (0,3) (1,2) -> nibbles 4, 8, C, 9, group 0 least significant
    assert nvidia_metadata([0, 1, 0, 2, 0, 3, 1, 2]).tolist() == [0x9C84]
    assert nvidia_metadata([[1, 3, 2, 3, 0, 1, 0, 1]]).tolist() == [[0x44ED]]
    meta = nvidia_metadata([[0, 1] * 4 + [2, 3] * 4, [1, 2] * 8])
    assert meta.dtype == np.uint16 and meta.tolist() == [[0x4444, 0xEEEE], [0x9999, 0x9999]]
    wide = nvidia_metadata([0, 1, 0, 2, 0, 3, 1, 2, 1, 3, 2, 3, 0, 1, 0, 1], word_bits=32)
    assert wide.dtype == np.uint32 and wide.tolist() == [0x44ED9C84]
    for (lo, hi), nibble in NIBBLE.items():
        assert nvidia_metadata([lo, hi] * 4).tolist() == [nibble * 0x1111]
    assert nvidia_indices([0x9C84]).tolist() == [0, 1, 0, 2, 0, 3, 1, 2]
    assert nvidia_indices([0x44ED9C84], word_bits=32).tolist() == [0, 1, 0, 2, 0, 3, 1, 2, 1, 3, 2, 3, 0, 1, 0, 1]


def test_nvidia_metadata_of_packed_weights():
    rng = np.random.default_rng(2)
    w = sparse_ints(rng, 5, 64, 2, 4, -8, 7)
    _, indices = pack(w, NMFormat(2, 4))
    meta = nvidia_metadata(indices)
    assert meta.shape == (5, 4)
    expected = [[sum(NIBBLE[tuple(row[2 * g:2 * g + 2])] << (4 * (g % 4)) for g in range(4 * word, 4 * word + 4))
                 for word in range(4)] for row in indices.tolist()]
    assert meta.tolist() == expected
    assert nvidia_indices(meta).tolist() == indices.tolist()


def test_nvidia_metadata_wrong():
    with pytest.raises(ValueError, match=r"^2:4 indices must have a multiple of 8 entries \(4 groups of 2 per "
                                         r"16-bit word\) per row, not 6$"):
        nvidia_metadata([0, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"^2:4 indices must be strictly ascending within a group, not \[3, 1\] "
                                         r"\(row 0, group 1\)$"):
        nvidia_metadata([0, 1, 3, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"^2:4 indices must be strictly ascending within a group, not \[2, 2\] "
                                         r"\(row 1, group 3\)$"):
        nvidia_metadata([[0, 1] * 4, [0, 1] * 3 + [2, 2]])
    with pytest.raises(ValueError, match=r"^2:4 indices must be integers from 0 to 3, not 4 \(at index 1\)$"):
        nvidia_metadata([0, 4, 0, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"^Metadata word bits must be 16 or 32, not 8$"):
        nvidia_metadata([0, 1] * 4, word_bits=8)


@pytest.mark.parametrize("dtype, word_bits", [(torch.float16, 16), (torch.bfloat16, 16), (torch.int8, 32)])
def test_nvidia_metadata_matches_torch_cutlass_conversion(dtype, word_bits):
    """torch's CPU-capable 2:4 compressor, with its CUTLASS ColumnMajorInterleaved<2> reordering undone."""
    conv = pytest.importorskip("torch.sparse._semi_structured_conversions")
    rows, k = 32, 64
    rng = np.random.default_rng(3)
    w = sparse_ints(rng, rows, k, 2, 4, -8, 7)
    full = (w.reshape(rows, -1, 4) != 0).sum(axis=-1) == 2
    w[:4] = np.where(np.arange(k) % 4 < 2, 3, 0)  # some rows whose groups are all full, for the exact check
    full[:4] = True
    dense = torch.from_numpy(w).to(dtype)
    sparse, meta_reordered = conv.sparse_semi_structured_from_dense_cutlass(dense)
    meta_dtype = torch.int16 if word_bits == 16 else torch.int32
    offsets = conv._calculate_meta_reordering_scatter_offsets(rows, meta_reordered.shape[1], meta_dtype, "cpu")
    assert sorted(offsets.tolist()) == list(range(meta_reordered.numel()))  # a permutation of the words
    torch_meta = meta_reordered.reshape(-1)[offsets].reshape(rows, -1).numpy().view(f"uint{word_bits}")
    values, indices = pack(w, NMFormat(2, 4))
    ours = nvidia_metadata(indices, word_bits=word_bits)
    assert ours.shape == torch_meta.shape
    ours_idx, torch_idx = nvidia_indices(ours, word_bits=word_bits), nvidia_indices(torch_meta, word_bits=word_bits)
    slot_full = np.repeat(full, 2, axis=1)
    assert (ours_idx[slot_full] == torch_idx[slot_full]).all()  # full groups: the same nibble
    assert (torch_meta[:4] == ours[:4]).all()                    # full rows: the same words
    assert (sparse.to(torch.int64).numpy()[slot_full] == values[slot_full]).all()
    # Padded groups: torch pads an empty group as (2, 3), we as (0, 1); both decode to the same weights.
    empty = ~(w.reshape(rows, -1, 4) != 0).any(axis=-1)
    assert (torch_idx.reshape(rows, -1, 2)[empty] == [2, 3]).all()
    assert (ours_idx.reshape(rows, -1, 2)[empty] == [0, 1]).all()
    back = conv.sparse_semi_structured_to_dense_cutlass(sparse, meta_reordered)
    assert back.to(torch.int64).numpy().tolist() == unpack(values, indices, NMFormat(2, 4), k).tolist() == w.tolist()


# -- golden model -----------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=150)
@given(formats, st.integers(1, 4), st.integers(0, 4), st.integers(2, 16), st.integers(1, 16), st.booleans(),
       st.booleans(), st.booleans(), st.data())
def test_golden_dot(fmt, rows, groups, w_bits, act_bits, act_signed, shared_values, shared_indices, data):
    n, m = fmt.n, fmt.m
    k, width = groups * m, groups * n
    act_lo, act_hi = (-(2 ** (act_bits - 1)), 2 ** (act_bits - 1) - 1) if act_signed else (0, 2 ** act_bits - 1)
    acts = data.draw(arrays(np.int64, (rows, k), elements=st.integers(act_lo, act_hi)), label="acts")
    values = data.draw(arrays(np.int64, (width,) if shared_values else (rows, width),
                              elements=st.integers(-(2 ** (w_bits - 1)), 2 ** (w_bits - 1) - 1)), label="values")
    # any indices: duplicates and descending orders included
    indices = data.draw(arrays(np.int64, (width,) if shared_indices else (rows, width),
                               elements=st.integers(0, m - 1)), label="indices")
    out = golden_dot(acts, values, indices, fmt, act_bits=act_bits, act_signed=act_signed, w_bits=w_bits)
    assert out.dtype == np.int64 and out.shape == (rows,)
    assert out.tolist() == ref_golden(acts, values, indices, n, m)
    v2, i2 = np.broadcast_arrays(values, indices)
    v2, i2 = np.broadcast_to(v2, (rows, width)), np.broadcast_to(i2, (rows, width))
    dense = unpack(v2, i2, fmt, k).astype(np.float64)
    expected = (acts.astype(np.float64) * dense).sum(axis=1)  # exact: |y| < 2^53
    assert out.tolist() == expected.astype(np.int64).tolist()


def test_golden_dot_extremes():
    fmt = NMFormat(2, 4)
    k = 1024  # 512 products of (-2^15) * (-2^15): beyond float32's exact range
    acts = np.full((1, k), -(2 ** 15))
    values, indices = np.full(k // 2, -(2 ** 15)), np.tile([0, 3], k // 4)
    assert golden_dot(acts, values, indices, fmt, act_bits=16, w_bits=16).tolist() == [512 * 2 ** 30]
    assert golden_dot(np.zeros((2, 0), dtype=int), np.zeros(0, dtype=int), np.zeros(0, dtype=int),
                      fmt).tolist() == [0, 0]


def test_golden_dot_wrong():
    fmt = NMFormat(2, 4)
    acts = [[1, 2, 3, 4]]
    with pytest.raises(ValueError, match=r"^N:M indices must be integers from 0 to 3, not 4 \(at index 1\)$"):
        golden_dot(acts, [1, 1], [0, 4], fmt)
    with pytest.raises(ValueError, match=r"^N:M values must be integers from -8 to 7, not 8 \(at index \(0, 1\)\)$"):
        golden_dot(acts, [[1, 8]], [0, 1], fmt, w_bits=4)
    with pytest.raises(ValueError, match=r"^Acts must be integers from 0 to 15, not 16 \(at index \(0, 1\)\)$"):
        golden_dot([[1, 16, 3, 4]], [1, 1], [0, 1], fmt, act_bits=4, act_signed=False)
    with pytest.raises(ValueError, match=r"^Acts' K must be a multiple of m = 4, not 6$"):
        golden_dot([[1] * 6], [1, 1], [0, 1], fmt)
    with pytest.raises(ValueError, match=r"^N:M values must have shape \(2,\) or \(1, 2\) to match acts of shape "
                                         r"\(1, 4\) \(2:4\), not \(3,\)$"):
        golden_dot(acts, [1, 1, 1], [0, 1], fmt)
    with pytest.raises(ValueError, match=r"^N:M indices must have shape \(2,\) or \(1, 2\) to match acts of shape "
                                         r"\(1, 4\) \(2:4\), not \(2, 2\)$"):
        golden_dot(acts, [1, 1], [[0, 1], [0, 1]], fmt)
    with pytest.raises(ValueError, match=r"^Acts must be a 2-D array \[rows, K\], not shape \(4,\)$"):
        golden_dot([1, 2, 3, 4], [1, 1], [0, 1], fmt)
    with pytest.raises(ValueError, match=r"^Weight bits must be an integer from 2 to 16, not 1$"):
        golden_dot(acts, [0, 0], [0, 1], fmt, w_bits=1)
    with pytest.raises(TypeError, match=r"^N:M indices must be integers, not 0\.5 \(at index 0\)$"):
        golden_dot(acts, [0, 0], [0.5, 1], fmt)


@settings(deadline=None, max_examples=60)
@given(st.integers(2, 16), st.integers(1, 4), st.integers(0, 12), st.integers(1, 16), st.booleans(),
       st.booleans(), st.data())
def test_golden_dense_dot_is_fixed_golden_dot(w_bits, rows, k, act_bits, act_signed, shared, data):
    act_lo, act_hi = (-(2 ** (act_bits - 1)), 2 ** (act_bits - 1) - 1) if act_signed else (0, 2 ** act_bits - 1)
    acts = data.draw(arrays(np.int64, (rows, k), elements=st.integers(act_lo, act_hi)), label="acts")
    weights = data.draw(arrays(np.int64, (k,) if shared else (rows, k),
                               elements=st.integers(-(2 ** (w_bits - 1)), 2 ** (w_bits - 1) - 1)), label="weights")
    out = golden_dense_dot(acts, weights, act_bits=act_bits, act_signed=act_signed, w_bits=w_bits)
    assert out.dtype == np.int64
    assert out.tolist() == fixed.golden_dot(acts, weights, w_bits, act_bits=act_bits, act_signed=act_signed).tolist()
    expected = (acts.astype(np.float64) * weights.astype(np.float64)).sum(axis=1)
    assert out.tolist() == expected.astype(np.int64).tolist()
    assert golden_dense_dot(acts, weights).tolist() == out.tolist()  # w_bits optional


def test_golden_dense_dot_wrong():
    with pytest.raises(ValueError, match=r"^Fixed-point weights must be integers from -8 to 7, not 8 \(at index 1\)$"):
        golden_dense_dot([[1, 2]], [0, 8], w_bits=4)
    with pytest.raises(ValueError, match=r"^Weight bits must be an integer from 2 to 16, not 17$"):
        golden_dense_dot([[1, 2]], [0, 1], w_bits=17)
    assert golden_dense_dot([[3, -1]], [2 ** 40, 2 ** 60]).tolist() == [3 * 2 ** 40 - 2 ** 60]  # no w_bits: int64


def test_sparse_and_dense_modes_agree():
    rng = np.random.default_rng(4)
    fmt = NMFormat(2, 8)
    w = sparse_ints(rng, 3, 32, 2, 8, -128, 127)
    acts = rng.integers(-128, 128, (3, 32))
    values, indices = pack(w, fmt)
    assert golden_dot(acts, values, indices, fmt, act_bits=8, w_bits=8).tolist() == \
        golden_dense_dot(acts, w, act_bits=8, w_bits=8).tolist()


# -- PyTorch: SR-STE and NMSparseLinear ---------------------------------------------------------------------

def test_sr_ste_gradient_by_hand():
    w = torch.tensor([[1.0, -2.0, 3.0, -4.0], [0.5, 0.25, -0.125, 2.0]], dtype=torch.float64, requires_grad=True)
    mask = nm_mask(w, NMFormat(2, 4))
    assert mask.int().tolist() == [[0, 0, 1, 1], [1, 0, 0, 1]]
    g = torch.tensor([[0.5, 0.25, -1.0, 2.0], [1.0, -1.0, 0.5, 0.0]], dtype=torch.float64)
    out = sr_ste(w, mask, lambda_w=0.1)
    assert out.tolist() == [[0.0, 0.0, 3.0, -4.0], [0.5, 0.0, 0.0, 2.0]]
    (out * g).sum().backward()
    # dense gradient g, plus 0.1 * w on the pruned weights (Zhou et al., eq. 4)
    assert w.grad.tolist() == [[0.5 + 0.1 * 1.0, 0.25 + 0.1 * -2.0, -1.0, 2.0],
                               [1.0, -1.0 + 0.1 * 0.25, 0.5 + 0.1 * -0.125, 0.0]]


def test_sr_ste_wrong():
    w = torch.ones(2, 4)
    with pytest.raises(ValueError, match=r"^SR-STE lambda_w must be a non-negative finite number, not -1\.0$"):
        sr_ste(w, w > 0, -1.0)
    with pytest.raises(TypeError, match=r"^SR-STE lambda_w must be a real number, not '0\.1'$"):
        sr_ste(w, w > 0, "0.1")
    with pytest.raises(ValueError, match=r"^SR-STE mask must be a bool tensor of shape \(2, 4\), "
                                         r"not torch\.float32 \(2, 4\)$"):
        sr_ste(w, w, 0.1)


@pytest.mark.parametrize("mode", ["forward", "bidirectional", "transposable"])
def test_nm_sparse_linear_gradients(mode):
    torch.manual_seed(0)
    fmt = NMFormat(2, 4)
    layer = NMSparseLinear(8, 4, fmt=fmt, mode=mode, lambda_w=0.5, dtype=torch.float64)
    assert isinstance(layer, torch.nn.Linear) and torch.nn.utils.parametrize.is_parametrized(layer, "weight")
    assert (layer.fmt, layer.mode, layer.lambda_w) == (fmt, mode, 0.5)
    dense = layer.dense_weight.detach().numpy().copy()
    fwd = ref_transposable(dense, 2, 4) if mode == "transposable" else ref_mask(dense, 2, 4)
    bwd = ref_mask(dense.T, 2, 4).T if mode == "bidirectional" else fwd
    if mode == "transposable":
        assert (groups_of(fwd, 4, 0) <= 2).all() and (groups_of(fwd, 4, 1) <= 2).all()
    assert layer.mask().numpy().tolist() == fwd.tolist()
    assert layer.weight.detach().numpy().tolist() == (dense * fwd).tolist()
    x = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(5, 4, dtype=torch.float64)
    y = layer(x)
    bias = layer.bias.detach().numpy()
    xn, dyn = x.detach().numpy(), dy.numpy()
    assert np.allclose(y.detach().numpy(), xn @ (dense * fwd).T + bias, rtol=0, atol=1e-12)
    (y * dy).sum().backward()
    assert np.allclose(x.grad.numpy(), dyn @ (dense * bwd), rtol=0, atol=1e-12)
    assert np.allclose(layer.dense_weight.grad.numpy(), dyn.T @ xn + 0.5 * (~fwd) * dense, rtol=0, atol=1e-12)
    assert np.allclose(layer.bias.grad.numpy(), dyn.sum(axis=0), rtol=0, atol=1e-12)


def test_nm_sparse_linear_recomputes_the_mask():
    layer = NMSparseLinear(4, 1, bias=False)
    with torch.no_grad():
        layer.dense_weight.copy_(torch.tensor([[4.0, 3.0, 2.0, 1.0]]))
    assert layer.weight.tolist() == [[4.0, 3.0, 0.0, 0.0]]
    with torch.no_grad():
        layer.dense_weight.copy_(torch.tensor([[1.0, 2.0, 3.0, -4.0]]))
    assert layer.weight.tolist() == [[0.0, 0.0, 3.0, -4.0]]
    assert layer(torch.tensor([[1.0, 1.0, 1.0, 1.0]])).tolist() == [[-1.0]]


def test_nm_sparse_linear_default_lambda():
    layer = NMSparseLinear(4, 1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        layer.dense_weight.copy_(torch.tensor([[4.0, 3.0, 2.0, 1.0]]))
    layer(torch.zeros(1, 4, dtype=torch.float64)).sum().backward()
    assert layer.lambda_w == 2e-4
    assert layer.dense_weight.grad.tolist() == [[0.0, 0.0, 2e-4 * 2.0, 2e-4 * 1.0]]


def test_nm_sparse_linear_wrong():
    with pytest.raises(ValueError, match=r"^NMSparseLinear in_features must be a multiple of m = 4, not 10$"):
        NMSparseLinear(10, 4)
    with pytest.raises(ValueError, match=r"^NMSparseLinear out_features \(mode 'transposable'\) must be a multiple "
                                         r"of m = 8, not 4$"):
        NMSparseLinear(8, 4, fmt=NMFormat(2, 8), mode="transposable")
    NMSparseLinear(8, 3, mode="forward")  # out_features is free in forward mode
    with pytest.raises(ValueError, match=r"^N:M mode must be one of 'forward', 'bidirectional', 'transposable', "
                                         r"not 'both'$"):
        NMSparseLinear(8, 4, mode="both")
    with pytest.raises(TypeError, match=r"^N:M format must be an NMFormat, not \(2, 4\)$"):
        NMMask((2, 4))
    with pytest.raises(ValueError, match=r"^SR-STE lambda_w must be a non-negative finite number, not nan$"):
        NMSparseLinear(8, 4, lambda_w=float("nan"))
    with pytest.raises(ValueError, match=r"^Weight bits must be an integer from 2 to 16, not 1$"):
        NMSparseLinear(8, 4).export(1)


@pytest.mark.parametrize("fmt", [NMFormat(2, 4), NMFormat(1, 8)])
def test_nm_sparse_linear_export(fmt):
    torch.manual_seed(1)
    layer = NMSparseLinear(32, 6, fmt=fmt)
    values, indices, scale = layer.export(6)
    width = 32 * fmt.n // fmt.m
    assert values.dtype == indices.dtype == np.int64 and values.shape == indices.shape == (6, width)
    assert scale.dtype == np.float64 and scale.shape == (6,)
    assert np.abs(values).max() <= 31
    w_int, ref_scale = fixed.quantize(layer.weight.detach(), 6)  # the fixed-point quantiser of the kept weights
    assert scale.tolist() == ref_scale.tolist()
    assert unpack(values, indices, fmt, 32).tolist() == w_int.tolist()
    masked = layer.weight.detach().double().numpy()
    assert (unpack(values, indices, fmt, 32)[masked == 0] == 0).all()
    assert np.abs(scale[:, None] * unpack(values, indices, fmt, 32) - masked).max() <= 0.5 * scale.max() + 1e-9


# -- import cost, docs -----------------------------------------------------------------------------------

def test_import_does_not_load_torch():
    code = ("import sys, peforge.sw.nm; assert 'torch' not in sys.modules, 'torch imported'; "
            "peforge.sw.nm.golden_dot([[1, 2, 3, 4]], [1, 1], [0, 1], peforge.sw.nm.NMFormat()); peforge.sw.nm.pack([[1, 0, 0, 0]], "
            "peforge.sw.nm.NMFormat()); peforge.sw.nm.transposable_mask([[1.0] * 4] * 4, peforge.sw.nm.NMFormat()); "
            "assert 'torch' not in sys.modules, 'torch imported by a call'; "
            "from peforge.sw.nm_torch import NMSparseLinear; assert 'torch' in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_torch_half_is_its_own_module():
    """The numpy half neither imports nor re-exports the torch half (no import circle between the two files)."""
    assert peforge.sw.nm_torch.NMSparseLinear is NMSparseLinear and not hasattr(peforge.sw.nm, "NMSparseLinear")
    with pytest.raises(AttributeError, match=r"^module 'peforge\.sw\.nm' has no attribute 'NMSparse'$"):
        peforge.sw.nm.NMSparse


def test_docstring_examples():
    result = doctest.testmod(peforge.sw.nm)
    assert result.attempted > 10 and result.failed == 0


# -- accuracy: dense vs 2:4 SR-STE on sklearn digits --------------------------------------------------------

def train_digits(sparse: bool) -> float:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.25, random_state=0, stratify=y)
    x_train, x_test = torch.tensor(x_train, dtype=torch.float32), torch.tensor(x_test, dtype=torch.float32)
    y_train, y_test = torch.tensor(y_train), torch.tensor(y_test)
    torch.manual_seed(0)
    if sparse:
        model = torch.nn.Sequential(NMSparseLinear(64, 32), torch.nn.ReLU(), NMSparseLinear(32, 10))
    else:
        model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    order = torch.Generator().manual_seed(1)
    for _ in range(40):
        perm = torch.randperm(len(x_train), generator=order)
        for start in range(0, len(x_train), 64):
            batch = perm[start:start + 64]
            loss = torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    if sparse:
        for layer in (model[0], model[2]):
            assert (groups_of(layer.weight.detach().numpy() != 0, 4, 1) <= 2).all()
    with torch.no_grad():
        return (model(x_test).argmax(dim=1) == y_test).float().mean().item()


def test_digits_mlp_2_4_close_to_dense():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead (15 s instead of 1.5 s on 2 cores)
    try:
        dense, sparse = train_digits(False), train_digits(True)
    finally:
        torch.set_num_threads(threads)
    print(f"digits 64-32-10: dense {dense:.4f}, 2:4 SR-STE {sparse:.4f}")
    assert dense > 0.93
    assert sparse >= dense - 0.03
