"""Unit and property tests for sw.intops: integer ranges, input validation, the exact dot product and the
per-row scale search."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from peforge.sw.intops import (INT64_MAX, as_acts, as_int_array, as_real_matrix, as_row_scale, exact_dot,
                       fit_row_scale, int_range, max_abs, signed_bits_for)


# -- ranges ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits, signed, expected", [
    (1, True, (-1, 0)), (1, False, (0, 1)), (4, True, (-8, 7)), (4, False, (0, 15)),
    (8, True, (-128, 127)), (16, False, (0, 65535)), (64, True, (-2 ** 63, 2 ** 63 - 1)),
])
def test_int_range(bits, signed, expected):
    assert int_range(bits, signed) == expected


@given(st.integers(1, 70), st.booleans())
def test_int_range_counts_every_pattern(bits, signed):
    lo, hi = int_range(bits, signed)
    assert hi - lo + 1 == 2 ** bits
    assert max_abs(bits, signed) == (2 ** (bits - 1) if signed else 2 ** bits - 1)


def test_int_range_wrong():
    with pytest.raises(TypeError, match=r"^Bits must be an integer, not 4\.0$"):
        int_range(4.0, True)
    with pytest.raises(ValueError, match=r"^Bits must be a positive integer, not 0$"):
        int_range(0, True)
    with pytest.raises(TypeError, match=r"^Signed must be a bool, not 1$"):
        int_range(4, 1)


def _brute_signed_bits(lo, hi):
    bits = 1
    while not (-(2 ** (bits - 1)) <= lo and hi <= 2 ** (bits - 1) - 1):
        bits += 1
    return bits


@pytest.mark.parametrize("lo, hi, expected", [
    (0, 0, 1), (-1, 0, 1), (0, 1, 2), (-2, 1, 2), (-128, 127, 8), (-129, 0, 9), (0, 128, 9), (-1, 255, 9),
])
def test_signed_bits_for(lo, hi, expected):
    assert signed_bits_for(lo, hi) == expected


@given(st.integers(-2 ** 40, 2 ** 40), st.integers(0, 2 ** 40))
def test_signed_bits_for_is_minimal(lo, span):
    assert signed_bits_for(lo, lo + span) == _brute_signed_bits(lo, lo + span)


def test_signed_bits_for_wrong():
    with pytest.raises(ValueError, match=r"^Range must have lo <= hi, not \[3, 2\]$"):
        signed_bits_for(3, 2)
    with pytest.raises(TypeError, match=r"^Range lo must be an integer, not 0\.5$"):
        signed_bits_for(0.5, 2)


# -- as_int_array ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    [[1, -2], [3, 4]],
    np.array([[1, -2], [3, 4]], dtype=np.int8),
    np.array([[1., -2.], [3., 4.]], dtype=np.float32),
    torch.tensor([[1, -2], [3, 4]]),
    torch.tensor([[1., -2.], [3., 4.]], requires_grad=True),
])
def test_as_int_array_accepts(data):
    out = as_int_array("Acts", data, -8, 7)
    assert out.dtype == np.int64
    assert out.tolist() == [[1, -2], [3, 4]]


def test_as_int_array_copies():
    data = np.array([1, 2], dtype=np.int64)
    out = as_int_array("Acts", data, 0, 7)
    out[0] = 5
    assert data[0] == 1


def test_as_int_array_out_of_range_names_first_offender():
    acts = np.zeros((4, 8), dtype=np.int64)
    acts[2, 5] = 300
    acts[3, 0] = -300
    with pytest.raises(ValueError, match=r"^Acts must be integers from -128 to 127, not 300 \(at index \(2, 5\)\)$"):
        as_int_array("Acts", acts, -128, 127)
    with pytest.raises(ValueError, match=r"^Codes must be integers from 0 to 15, not -1 \(at index 3\)$"):
        as_int_array("Codes", [0, 1, 2, -1, 16], 0, 15)
    with pytest.raises(ValueError, match=r"^Codes must be integers from 0 to 15, not 16$"):
        as_int_array("Codes", 16, 0, 15)


def test_as_int_array_unsigned_and_huge_values():
    with pytest.raises(ValueError, match=r"^W must be integers from -8 to 7, not 18446744073709551615 "
                                         r"\(at index 1\)$"):
        as_int_array("W", np.array([1, 2 ** 64 - 1], dtype=np.uint64), -8, 7)
    with pytest.raises(ValueError, match=r"^W must be integers from -8 to 7, not 1267650600228229401496703205376 "
                                         r"\(at index 0\)$"):
        as_int_array("W", [2 ** 100], -8, 7)
    with pytest.raises(ValueError, match=r"^W must be integers from 0 to 9223372036854775807, "
                                         r"not 9\.223372036854776e\+18 \(at index 0\)$"):
        as_int_array("W", [2.0 ** 63], 0, INT64_MAX)


def test_as_int_array_rejects_non_integers():
    with pytest.raises(TypeError, match=r"^Acts must be integers, not 0\.5 \(at index \(1, 0\)\)$"):
        as_int_array("Acts", [[1, 2], [0.5, 3]], -8, 7)
    with pytest.raises(TypeError, match=r"^Acts must be integers, not nan \(at index 1\)$"):
        as_int_array("Acts", [1, np.nan], -8, 7)
    with pytest.raises(TypeError, match=r"^Acts must be integers, not bool values$"):
        as_int_array("Acts", np.array([True, False]), -8, 7)
    with pytest.raises(TypeError, match=r"^Acts must be integers, not bool values$"):
        as_int_array("Acts", torch.tensor([True]), -8, 7)
    with pytest.raises(TypeError, match=r"^Acts must be integers, not True \(at index 1\)$"):
        as_int_array("Acts", np.array([1, True, 'x'], dtype=object), -8, 7)
    with pytest.raises(TypeError, match=r"^Acts must be integers, not <U1 values$"):
        as_int_array("Acts", ["a"], -8, 7)


# -- real arrays ----------------------------------------------------------------------------------------

def test_as_real_matrix():
    out = as_real_matrix("Weights", torch.ones(2, 3, requires_grad=True))
    assert out.dtype == np.float64 and out.shape == (2, 3)
    with pytest.raises(ValueError, match=r"^Weights must be a 2-D array \[rows, K\], not shape \(5,\)$"):
        as_real_matrix("Weights", np.zeros(5))
    with pytest.raises(ValueError, match=r"^Weights must be finite, not inf \(at index \(0, 1\)\)$"):
        as_real_matrix("Weights", [[0, np.inf]])
    with pytest.raises(TypeError, match=r"^Weights must be real numbers, not complex128 values$"):
        as_real_matrix("Weights", np.zeros((1, 1), complex))
    with pytest.raises(TypeError, match=r"^Weights must be real numbers, not bool values$"):
        as_real_matrix("Weights", np.zeros((1, 1), bool))


def test_as_row_scale():
    assert as_row_scale("Scale", [1, 0.5], 2).tolist() == [1.0, 0.5]
    with pytest.raises(ValueError, match=r"^Scale must have shape \(3,\) \(one per row\), not \(2,\)$"):
        as_row_scale("Scale", [1, 2], 3)
    with pytest.raises(ValueError, match=r"^Scale must be positive, not 0\.0 \(at index 1\)$"):
        as_row_scale("Scale", [1, 0], 2)
    with pytest.raises(ValueError, match=r"^Scale must be finite, not nan \(at index 0\)$"):
        as_row_scale("Scale", [np.nan], 1)


def test_as_acts():
    assert as_acts([[255]], 8, False).tolist() == [[255]]
    assert as_acts([[2 ** 40]], None, True).tolist() == [[2 ** 40]]
    with pytest.raises(ValueError, match=r"^Acts must be integers from -128 to 127, not 255 \(at index \(0, 0\)\)$"):
        as_acts([[255]], 8, True)
    with pytest.raises(ValueError, match=r"^Activation bits must be an integer from 1 to 32, not 0$"):
        as_acts([[0]], 0, True)
    with pytest.raises(TypeError, match=r"^Activation signedness must be a bool, not 'yes'$"):
        as_acts([[0]], 8, "yes")


# -- exact_dot ------------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=60)
@given(st.data())
def test_exact_dot_matches_python_ints(data):
    rows = data.draw(st.integers(1, 5))
    k = data.draw(st.integers(0, 12))
    big = st.integers(-2 ** 29, 2 ** 29)  # K <= 12: |sum| < 2^62, so the guard never fires
    acts = data.draw(st.lists(st.lists(big, min_size=k, max_size=k), min_size=rows, max_size=rows))
    shared = data.draw(st.booleans())
    if shared:
        weights = data.draw(st.lists(big, min_size=k, max_size=k))
        expected = [sum(a * w for a, w in zip(row, weights)) for row in acts]
    else:
        weights = data.draw(st.lists(st.lists(big, min_size=k, max_size=k), min_size=rows, max_size=rows))
        expected = [sum(a * w for a, w in zip(ra, rw)) for ra, rw in zip(acts, weights)]
    out = exact_dot(np.array(acts, dtype=np.int64).reshape(rows, k), np.array(weights, dtype=np.int64))
    assert out.dtype == np.int64
    assert out.tolist() == expected


def test_exact_dot_overflow_guard():
    acts = np.full((1, 4), 2 ** 30, dtype=np.int64)
    weights = np.full(4, 2 ** 31 - 1, dtype=np.int64)
    assert exact_dot(acts, weights).tolist() == [2 ** 63 - 2 ** 32]  # worst case 2^63 - 2^32 fits
    weights[0] = 2 ** 31
    with pytest.raises(ValueError, match=r"^Dot product worst case K \* max\|acts\| \* max\|weights\| must fit in "
                                         r"int64 \(at most 9223372036854775807\), not 4 \* 1073741824 \* "
                                         r"2147483648 = 9223372036854775808$"):
        exact_dot(acts, weights)
    with pytest.raises(ValueError, match=r"^Dot product worst case .* not 1 \* 9223372036854775808 \* 1 = "):
        exact_dot(np.array([[-2 ** 63]]), np.array([-1]))


def test_exact_dot_shapes_and_types():
    with pytest.raises(ValueError, match=r"^Acts must be a 2-D array \[rows, K\], not shape \(3,\)$"):
        exact_dot(np.zeros(3, np.int64), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"^Weights must have shape \(3,\) or \(2, 3\) to match acts of shape "
                                         r"\(2, 3\), not \(3, 2\)$"):
        exact_dot(np.zeros((2, 3), np.int64), np.zeros((3, 2), np.int64))
    with pytest.raises(TypeError, match=r"^Weights must be integers, not float64 values$"):
        exact_dot(np.zeros((2, 3), np.int64), np.zeros(3))
    assert exact_dot(np.zeros((2, 0), np.int64), np.zeros(0, np.int64)).tolist() == [0, 0]


# -- fit_row_scale --------------------------------------------------------------------------------------

def _round_to_grid(top):
    return lambda x: np.clip(np.rint(x), -top, top)


def test_fit_row_scale_exact_grid_and_zero_rows():
    # A row already on a grid (3 * {-2, .., 2}) is recovered exactly; an all-zero row gets zero_scale.
    w = np.array([[6.0, -3.0, 0.0, 3.0, -6.0], [0.0] * 5])
    scale = fit_row_scale(w, _round_to_grid(2), 2, zero_scale=0.25)
    assert scale.tolist() == [3.0, 0.25]


def test_fit_row_scale_beats_plain_clipping():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((20, 40))
    to_grid = _round_to_grid(7)
    scale = fit_row_scale(w, to_grid, 7)
    err = np.square(w - scale[:, None] * to_grid(w / scale[:, None])).sum(axis=1)
    for ratio in (0.3, 0.6, 1.0):
        s = np.abs(w).max(axis=1) * ratio / 7
        other = np.square(w - s[:, None] * to_grid(w / s[:, None])).sum(axis=1)
        assert np.all(err <= other)


def test_fit_row_scale_keeps_the_first_best_candidate():
    # Every scale in [2/3, 2) rounds [1, -1] to [1, -1] (top 1) and s = 1 is exact: ratio 1 must win.
    w = np.array([[1.0, -1.0]])
    assert fit_row_scale(w, _round_to_grid(1), 1, ratios=(0.9, 1.0, 1.1), starts=1).tolist() == [1.0]


def test_exact_dot_beyond_float_precision():
    # 2^53 + 1 is not a float64: a float dot product would lose the final 1.
    acts = np.array([[2 ** 33, 1]], dtype=np.int64)
    weights = np.array([2 ** 20, 1], dtype=np.int64)
    assert exact_dot(acts, weights).tolist() == [2 ** 53 + 1]
    assert exact_dot(acts, weights[None, :]).tolist() == [2 ** 53 + 1]


def test_golden_models_import_without_torch():
    """The simulator imports the golden models; torch would add seconds to every simulation."""
    import subprocess
    import sys

    code = ("import sys, peforge.sw.sp2, peforge.sw.fixed, peforge.sw.msq, peforge.tb.sp2_mac, peforge.tb.fixed_mac; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
