"""Tests for sw.msq: the Mix and Match row assignment (counts, ties, Gaussian vs uniform rows) and the
mixed weight container (each row keeps exactly its own scheme's quantisation)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peforge.sw import fixed, sp2
from peforge.sw.msq import MixedWeights, assign_rows, quantize_mixed
from peforge.sw.sp2 import SP2Format


def row_errors(w, sp2_fmt, w_bits):
    """Per-row squared error of each pure scheme, through the public sp2 / fixed quantisers."""
    codes, alpha = sp2.quantize(w, sp2_fmt)
    ints, scale = fixed.quantize(w, w_bits)
    err_sp2 = np.square(w - sp2.dequantize(codes, alpha, sp2_fmt)).sum(axis=1)
    err_fixed = np.square(w - fixed.dequantize(ints, scale, w_bits)).sum(axis=1)
    return err_sp2, err_fixed


def test_fraction_zero_and_one():
    w = np.random.default_rng(0).standard_normal((7, 16))
    assert assign_rows(w, 0).tolist() == [False] * 7
    assert assign_rows(w, 1).tolist() == [True] * 7
    assert assign_rows(w, 0.0).dtype == bool
    mixed = quantize_mixed(w, 0.0)
    assert not mixed.is_sp2.any() and not mixed.codes.any()
    mixed = quantize_mixed(w, 1.0)
    assert mixed.is_sp2.all() and not mixed.fixed.any()


@settings(deadline=None, max_examples=40)
@given(st.integers(1, 12), st.floats(0, 1), st.floats(0, 1), st.integers(0, 2 ** 32 - 1))
def test_exact_count_and_nested(rows, f1, f2, seed):
    w = np.random.default_rng(seed).standard_normal((rows, 8))
    lo, hi = sorted((f1, f2))
    small, large = assign_rows(w, lo), assign_rows(w, hi)
    assert small.sum() == round(lo * rows) and large.sum() == round(hi * rows)
    assert np.all(large[small])  # more SP2 rows only adds rows


def test_rounding_is_pythons_round():
    w = np.random.default_rng(1).standard_normal((5, 8))
    assert assign_rows(w, 0.5).sum() == 2   # round(2.5) == 2 (half to even)
    assert assign_rows(w, 0.7).sum() == 4   # round(3.5) == 4
    assert assign_rows(w, 0.29).sum() == 1  # round(1.45) == 1


def test_ties_go_to_the_lower_row_index():
    row = np.random.default_rng(2).standard_normal(16)
    w = np.tile(row, (5, 1))
    assert assign_rows(w, 0.4).tolist() == [True, True, False, False, False]
    assert assign_rows(np.zeros((4, 3)), 0.5).tolist() == [True, True, False, False]


@pytest.mark.parametrize("seed", [3, 4])
def test_gaussian_rows_prefer_sp2(seed):
    rng = np.random.default_rng(seed)
    gaussian = rng.standard_normal((8, 2048))
    uniform = rng.uniform(-1, 1, (8, 2048))
    order = rng.permutation(16)
    w = np.vstack([gaussian, uniform])[order] * rng.uniform(0.01, 10, (16, 1))  # any row scale
    is_sp2 = assign_rows(w, 0.5)
    assert is_sp2.tolist() == (order < 8).tolist()


def test_ranking_by_error_ratio():
    rng = np.random.default_rng(5)
    w = np.vstack([rng.standard_normal((6, 64)), rng.uniform(-1, 1, (6, 64)), rng.laplace(size=(6, 64))])
    err_sp2, err_fixed = row_errors(w, SP2Format(4), 4)
    ratio = err_fixed / err_sp2
    for fraction in (0.25, 0.5, 0.75):
        is_sp2 = assign_rows(w, fraction)
        assert ratio[is_sp2].min() >= ratio[~is_sp2].max()


def test_mixed_rows_keep_their_own_scheme():
    rng = np.random.default_rng(6)
    fmt, w_bits = SP2Format(5), 4
    w = np.vstack([rng.standard_normal((10, 64)), rng.uniform(-1, 1, (10, 64))])
    err_sp2, err_fixed = row_errors(w, fmt, w_bits)
    sp2_better = err_sp2 < err_fixed
    assert 0 < sp2_better.sum() < len(w)  # the test needs rows of both kinds
    mixed = quantize_mixed(w, sp2_better.sum() / len(w), sp2_fmt=fmt, w_bits=w_bits)
    err = np.square(w - mixed.dequantize()).sum(axis=1)
    # Exactly the better scheme on every row: the error is the row-wise minimum.
    assert mixed.is_sp2.tolist() == sp2_better.tolist()
    assert err.tolist() == np.minimum(err_sp2, err_fixed).tolist()
    # Any fraction: each row's error is exactly its own scheme's.
    mixed = quantize_mixed(w, 0.3, sp2_fmt=fmt, w_bits=w_bits)
    assert np.square(w - mixed.dequantize()).sum(axis=1).tolist() == \
        np.where(mixed.is_sp2, err_sp2, err_fixed).tolist()


def test_mixed_weights_contents():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((6, 10))
    fmt = SP2Format(4)
    mixed = quantize_mixed(w, 0.5, sp2_fmt=fmt, w_bits=5)
    assert mixed.sp2_fmt == fmt and mixed.w_bits == 5
    assert mixed.is_sp2.sum() == 3
    codes, alpha = sp2.quantize(w, fmt)
    ints, scale = fixed.quantize(w, 5)
    rows = mixed.is_sp2
    assert mixed.codes[rows].tolist() == codes[rows].tolist() and not mixed.codes[~rows].any()
    assert mixed.fixed[~rows].tolist() == ints[~rows].tolist() and not mixed.fixed[rows].any()
    assert mixed.scale[rows].tolist() == (alpha[rows] / 2 ** fmt.E).tolist()
    assert mixed.scale[~rows].tolist() == scale[~rows].tolist()
    expected_ints = np.where(rows[:, None], fmt.decode(codes), ints)
    assert mixed.integer_weights().tolist() == expected_ints.tolist()
    assert mixed.dequantize().tolist() == (mixed.scale[:, None] * expected_ints).tolist()
    with pytest.raises(ValueError):
        mixed.codes[0, 0] = 1  # read-only


@pytest.mark.parametrize("fraction, error, message", [
    ("0.5", TypeError, r"^SP2 fraction must be a number, not '0\.5'$"),
    (True, TypeError, r"^SP2 fraction must be a number, not True$"),
    (1.5, ValueError, r"^SP2 fraction must be a number from 0 to 1, not 1\.5$"),
    (-1, ValueError, r"^SP2 fraction must be a number from 0 to 1, not -1$"),
    (float("nan"), ValueError, r"^SP2 fraction must be a number from 0 to 1, not nan$"),
])
def test_fraction_wrong(fraction, error, message):
    w = np.ones((2, 2))
    with pytest.raises(error, match=message):
        assign_rows(w, fraction)
    with pytest.raises(error, match=message):
        quantize_mixed(w, fraction)


def test_other_arguments_wrong():
    w = np.ones((2, 2))
    with pytest.raises(ValueError, match=r"^Weight bits must be an integer from 2 to 16, not 1$"):
        assign_rows(w, 0.5, w_bits=1)
    with pytest.raises(TypeError, match=r"^SP2 format must be an SP2Format, not 4$"):
        quantize_mixed(w, 0.5, sp2_fmt=4)
    with pytest.raises(ValueError, match=r"^Weights must be a 2-D array \[rows, K\], not shape \(2,\)$"):
        assign_rows(np.ones(2), 0.5)


def test_mixed_weights_validation():
    fmt = SP2Format(4)
    good = dict(is_sp2=np.array([True, False]), codes=np.zeros((2, 3), int), fixed=np.zeros((2, 3), int),
                scale=np.ones(2), sp2_fmt=fmt, w_bits=4)
    MixedWeights(**good)
    with pytest.raises(ValueError, match=r"^SP2 codes must be integers from 0 to 15, not 16 \(at index \(1, 2\)\)$"):
        MixedWeights(**{**good, "codes": [[0, 0, 0], [0, 0, 16]]})
    with pytest.raises(ValueError, match=r"^Fixed-point weights must be integers from -8 to 7, not -9 "
                                         r"\(at index \(0, 0\)\)$"):
        MixedWeights(**{**good, "fixed": [[-9, 0, 0], [0, 0, 0]]})
    with pytest.raises(ValueError, match=r"^SP2 codes must have shape \(2, K\), not \(3, 3\)$"):
        MixedWeights(**{**good, "codes": np.zeros((3, 3), int)})
    with pytest.raises(ValueError, match=r"^SP2 codes and fixed-point weights must have one shape, "
                                         r"not \(2, 3\) and \(2, 4\)$"):
        MixedWeights(**{**good, "fixed": np.zeros((2, 4), int)})
    with pytest.raises(TypeError, match=r"^Row kinds must be a 1-D bool array, not int64 of shape \(2,\)$"):
        MixedWeights(**{**good, "is_sp2": np.array([1, 0])})
    with pytest.raises(ValueError, match=r"^Scale must be positive, not 0\.0 \(at index 1\)$"):
        MixedWeights(**{**good, "scale": [1.0, 0.0]})
