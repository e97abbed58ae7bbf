"""Tests for sw.fixed: ranges, the narrow-range quantiser and its scale search, the golden dot product of
the fixed-mac PE against float64 numpy, and the PyTorch layer."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from peforge.sw import sp2
from peforge.sw.fixed import check_w_bits, dequantize, fit_scale, golden_dot, narrow_max, quantize, weight_range
from peforge.sw.layers import FixedLinear, FixedQuantizer
from peforge.sw.sp2 import SP2Format
from peforge.sw.layers import SP2Linear

W_BITS = range(2, 17)


@pytest.mark.parametrize("w_bits", W_BITS)
def test_ranges(w_bits):
    assert weight_range(w_bits) == (-(2 ** (w_bits - 1)), 2 ** (w_bits - 1) - 1)
    assert narrow_max(w_bits) == 2 ** (w_bits - 1) - 1


@pytest.mark.parametrize("w_bits, error, message", [
    (4.0, TypeError, r"^Weight bits must be an integer, not 4\.0$"),
    (None, TypeError, r"^Weight bits must be an integer, not None$"),
    (1, ValueError, r"^Weight bits must be an integer from 2 to 16, not 1$"),
    (17, ValueError, r"^Weight bits must be an integer from 2 to 16, not 17$"),
])
def test_w_bits_wrong(w_bits, error, message):
    with pytest.raises(error, match=message):
        check_w_bits(w_bits)
    with pytest.raises(error, match=message):
        quantize(np.ones((1, 2)), w_bits)
    with pytest.raises(error, match=message):
        golden_dot([[1]], [1], w_bits)
    with pytest.raises(error, match=message):
        FixedLinear(2, 2, w_bits=w_bits)


# -- quantiser ------------------------------------------------------------------------------------------

def reference_ints(w, scale, w_bits):
    """Nearest integer (Python's round: half to even), clipped to the narrow range."""
    top = 2 ** (w_bits - 1) - 1
    return [[max(-top, min(top, round(x / s))) for x in row] for row, s in zip(w.tolist(), scale.tolist())]


def reference_error(w, scale, w_bits):
    ints = np.array(reference_ints(w, scale, w_bits), dtype=np.float64)
    return np.square(w - scale[:, None] * ints).sum(axis=1)


@settings(deadline=None, max_examples=60)
@given(st.integers(2, 16), st.integers(0, 2 ** 32 - 1))
def test_quantize_is_nearest_narrow_integer(w_bits, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((3, 12)) * rng.uniform(1e-3, 1e3)
    w_int, scale = quantize(w, w_bits)
    assert w_int.dtype == np.int64 and scale.dtype == np.float64 and scale.shape == (3,)
    assert np.abs(w_int).max() <= 2 ** (w_bits - 1) - 1
    assert w_int.tolist() == reference_ints(w, scale, w_bits)
    assert dequantize(w_int, scale, w_bits).tolist() == (scale[:, None] * w_int).tolist()
    # With a given scale: the same rule, and the scale is returned as given.
    given_scale = rng.uniform(0.1, 2, 3) * np.abs(w).max(axis=1) / (2 ** (w_bits - 1) - 1)
    w_int, scale = quantize(w, w_bits, scale=given_scale)
    assert scale.tolist() == given_scale.tolist()
    assert w_int.tolist() == reference_ints(w, given_scale, w_bits)


def test_quantize_rounds_half_to_even_and_saturates_narrow():
    w_int, _ = quantize([[0.5, 1.5, 2.5, -0.5, -2.5, 100.0, -100.0]], 4, scale=[1.0])
    assert w_int.tolist() == [[0, 2, 2, 0, -2, 7, -7]]


@pytest.mark.parametrize("w_bits", [2, 3, 4, 8, 16])
def test_fit_scale_beats_max_scale(w_bits):
    w = np.random.default_rng(w_bits).standard_normal((16, 48))
    err = reference_error(w, fit_scale(w, w_bits), w_bits)
    baseline = reference_error(w, np.abs(w).max(axis=1) / (2 ** (w_bits - 1) - 1), w_bits)
    assert np.all(err <= baseline * (1 + 1e-12))
    assert np.mean(err) < np.mean(baseline)


@pytest.mark.parametrize("w_bits", [2, 3, 4, 5])
def test_fit_scale_matches_fine_grid(w_bits):
    w = np.random.default_rng(100 + w_bits).standard_normal((12, 64))
    err = reference_error(w, fit_scale(w, w_bits), w_bits)
    top = 2 ** (w_bits - 1) - 1
    grid = np.geomspace(0.05, 3.0, 3000)[:, None] * np.abs(w).max(axis=1) / top
    brute = np.stack([np.square(w - s[:, None] * np.clip(np.rint(w / s[:, None]), -top, top)).sum(axis=1)
                      for s in grid]).min(axis=0)
    assert np.all(err <= brute * 1.03)
    assert np.mean(err) <= np.mean(brute) * 1.01


def test_zero_rows_and_exact_rows():
    w = np.zeros((2, 4))
    w[1] = [0.3, -0.6, 0.9, 0.0]  # 0.3 * {1, -2, 3, 0}: exact with 3 bits
    w_int, scale = quantize(w, 3)
    assert scale[0] == 1.0 and w_int[0].tolist() == [0, 0, 0, 0]
    assert w_int[1].tolist() == [1, -2, 3, 0]
    assert np.allclose(dequantize(w_int, scale, 3), w, rtol=0, atol=1e-15)


def test_quantize_and_dequantize_wrong():
    with pytest.raises(ValueError, match=r"^Weights must be a 2-D array \[rows, K\], not shape \(4,\)$"):
        quantize(np.ones(4), 4)
    with pytest.raises(ValueError, match=r"^Weights must be finite, not inf \(at index \(0, 1\)\)$"):
        quantize([[1.0, np.inf]], 4)
    with pytest.raises(ValueError, match=r"^Scale must be positive, not 0\.0 \(at index 0\)$"):
        quantize(np.ones((1, 2)), 4, scale=[0.0])
    with pytest.raises(ValueError, match=r"^Fixed-point weights must be integers from -8 to 7, not 8 "
                                         r"\(at index \(0, 1\)\)$"):
        dequantize([[1, 8]], [1.0], 4)
    with pytest.raises(ValueError, match=r"^Fixed-point weights must be a 2-D array \[rows, K\], not shape \(2,\)$"):
        dequantize([1, 2], [1.0], 4)
    assert dequantize([[-8, 7]], [0.5], 4).tolist() == [[-4.0, 3.5]]  # the full range is legal


# -- golden model ---------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=150)
@given(st.integers(2, 16), st.integers(1, 4), st.integers(0, 16), st.integers(1, 16), st.booleans(),
       st.booleans(), st.data())
def test_golden_dot_matches_float_dot(w_bits, rows, k, act_bits, act_signed, shared, data):
    act_lo, act_hi = (-(2 ** (act_bits - 1)), 2 ** (act_bits - 1) - 1) if act_signed else (0, 2 ** act_bits - 1)
    acts = data.draw(arrays(np.int64, (rows, k), elements=st.integers(act_lo, act_hi)), label="acts")
    full_range = st.integers(-(2 ** (w_bits - 1)), 2 ** (w_bits - 1) - 1)
    weights = data.draw(arrays(np.int64, (k,) if shared else (rows, k), elements=full_range), label="weights")
    expected = (acts.astype(np.float64) * weights.astype(np.float64)).sum(axis=1)  # exact below 2^53
    out = golden_dot(acts, weights, w_bits, act_bits=act_bits, act_signed=act_signed)
    assert out.dtype == np.int64
    assert out.tolist() == expected.astype(np.int64).tolist()


def test_golden_dot_extremes():
    # Full-range corners: -2^15 * -2^15 * K, one past float32's exact range.
    k = 300
    acts = np.full((1, k), -(2 ** 15))
    weights = np.full(k, -(2 ** 15))
    assert golden_dot(acts, weights, 16, act_bits=16).tolist() == [k * 2 ** 30]


def test_golden_dot_checks_ranges():
    with pytest.raises(ValueError, match=r"^Fixed-point weights must be integers from -8 to 7, not 8 \(at index 1\)$"):
        golden_dot([[1, 2]], [0, 8], 4)
    with pytest.raises(ValueError, match=r"^Acts must be integers from 0 to 15, not 16 \(at index \(1, 0\)\)$"):
        golden_dot([[1, 2], [16, 0]], [0, 1], 4, act_bits=4, act_signed=False)
    with pytest.raises(TypeError, match=r"^Fixed-point weights must be integers, not 0\.5 \(at index 0\)$"):
        golden_dot([[1, 2]], [0.5, 1], 4)


# -- PyTorch --------------------------------------------------------------------------------------------

# Both QuantLinear subclasses (the base lives in sw.fixed): train, then export and dequantize.
LAYERS = {
    "fixed": (lambda: FixedLinear(10, 4, w_bits=6),
              lambda layer, ints, scale: dequantize(ints, scale, layer.w_bits)),
    "sp2": (lambda: SP2Linear(10, 4, fmt=SP2Format(5)),
            lambda layer, codes, alpha: sp2.dequantize(codes, alpha, layer.fmt)),
}


@pytest.mark.parametrize("kind", LAYERS)
def test_quant_linear_trains_and_exports(kind):
    make, to_real = LAYERS[kind]
    torch.manual_seed(0)
    layer = make()
    assert isinstance(layer, torch.nn.Linear)
    x = torch.randn(128, 10)
    y = x @ torch.randn(10, 4)
    opt = torch.optim.Adam(layer.parameters(), lr=0.02)
    losses = []
    for _ in range(150):
        loss = torch.mean((layer(x) - y) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    ints, scale = layer.export()
    assert ints.dtype == np.int64 and ints.shape == (4, 10)
    assert scale.dtype == np.float64 and scale.shape == (4,)
    wq = layer.quantizer(layer.weight)
    assert torch.equal(torch.from_numpy(to_real(layer, ints, scale)).float(), wq)
    assert torch.equal(layer(x), torch.nn.functional.linear(x, wq, layer.bias))


def test_fixed_linear_export_range():
    torch.manual_seed(3)
    layer = FixedLinear(30, 5, w_bits=6)
    assert layer.w_bits == 6
    w_int, _ = layer.export()
    assert np.abs(w_int).max() == 31  # the narrow range, reached by every row's largest weight


def test_fixed_quantizer_straight_through_gradient():
    torch.manual_seed(2)
    w = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 7, dtype=torch.float64)
    wq = FixedQuantizer(3)(w)
    assert wq.dtype == torch.float64
    w_int, scale = quantize(w.detach().numpy(), 3)
    assert torch.equal(wq, torch.from_numpy(dequantize(w_int, scale, 3)))
    (wq * g).sum().backward()
    assert torch.equal(w.grad, g)
