"""Tests for sw.sp2: the SP2 format against an independent transcription of docs/sp2-mac.md, the
encoder against brute force, the golden dot product against float64 numpy, the alpha search against a
fine grid, and the PyTorch layer (STE training, export round trip)."""

import itertools
import json
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from peforge.sw.sp2 import SP2Format, dequantize, fit_alpha, golden_dot, quantize

from peforge.sw.layers import SP2Linear, SP2Quantizer

# Every legal (bits, m1): m1 >= m2 = bits - 1 - m1 >= 0 and m1 <= 4 (E = 2^m1 - 1 <= 15).
LEGAL = [(bits, m1) for bits in range(2, 9) for m1 in range(bits) if m1 >= bits - 1 - m1 >= 0 and m1 <= 4]


def reference(bits, m1):
    """``{code: (sign, e1, e2, v)}`` straight from the docs/sp2-mac.md formula, in Python ints."""
    m2 = bits - 1 - m1
    big_e = 2 ** m1 - 1

    def t(e):
        return 0 if e == 0 else 2 ** (big_e - e)

    out = {}
    for sign, e1, e2 in itertools.product(range(2), range(2 ** m1), range(2 ** m2)):
        code = sign * 2 ** (bits - 1) + e1 * 2 ** m2 + e2
        out[code] = (sign, e1, e2, (-1) ** sign * (t(e1) + t(e2)))
    assert sorted(out) == list(range(2 ** bits))
    return out


def reference_canonical(bits, m1):
    """Canonical code of every value: smallest e2, then smallest e1, then sign 0."""
    best = {}
    for code, (sign, e1, e2, v) in reference(bits, m1).items():
        if v not in best or (e2, e1, sign) < best[v][0]:
            best[v] = ((e2, e1, sign), code)
    return {v: code for v, (_, code) in best.items()}


def nearest_value(x, values):
    """The level nearest to x (exact rational arithmetic); a tie goes to the smaller magnitude."""
    return min(values, key=lambda v: (abs(Fraction(x) - v), abs(v)))


legal_formats = st.sampled_from(LEGAL).map(lambda p: SP2Format(*p))


# -- the format -----------------------------------------------------------------------------------------

def test_legal_list_is_the_expected_one():
    assert LEGAL == [(2, 1), (3, 1), (3, 2), (4, 2), (4, 3), (5, 2), (5, 3), (5, 4), (6, 3), (6, 4),
                     (7, 3), (7, 4), (8, 4)]


@pytest.mark.parametrize("bits, m1", LEGAL)
def test_every_code_decodes_to_its_level(bits, m1):
    fmt = SP2Format(bits, m1)
    ref = reference(bits, m1)
    expected = [ref[c][3] for c in range(2 ** bits)]
    assert fmt.m2 == bits - 1 - m1 and fmt.E == 2 ** m1 - 1 and fmt.n_codes == 2 ** bits
    assert fmt.table.dtype == np.int64
    assert fmt.table.tolist() == expected
    assert fmt.decode(np.arange(2 ** bits)).tolist() == expected
    sign, e1, e2 = fmt.split(np.arange(2 ** bits))
    assert list(zip(sign.tolist(), e1.tolist(), e2.tolist())) == [ref[c][:3] for c in range(2 ** bits)]
    magnitudes = sorted({abs(v) for v in expected})
    assert fmt.levels.tolist() == magnitudes
    assert fmt.max_level == magnitudes[-1]
    # Every level is reachable with either sign.
    assert sorted(set(expected)) == sorted({s * m for m in magnitudes for s in (1, -1)})


def test_worked_example_4bit():
    # docs/sp2-mac.md: 4-bit codes, q1 in {0, 1/2, 1/4, 1/8}, q2 in {0, 1/2}: 1/2 twice, +0 and -0.
    fmt = SP2Format(4)
    assert (fmt.m1, fmt.m2, fmt.E) == (2, 1, 3)
    assert fmt.levels.tolist() == [0, 1, 2, 4, 5, 6, 8]
    assert sorted(fmt.table.tolist()).count(4) == 2 and sorted(fmt.table.tolist()).count(0) == 2


@pytest.mark.parametrize("bits, m1", LEGAL)
def test_canonical_codes(bits, m1):
    fmt = SP2Format(bits, m1)
    ref = reference(bits, m1)
    canon = reference_canonical(bits, m1)
    codes = np.arange(2 ** bits)
    assert fmt.canonical(codes).tolist() == [canon[ref[c][3]] for c in range(2 ** bits)]
    # encode(decode(c)) == canonical(c), and encoding is idempotent on canonical codes.
    assert fmt.encode(fmt.decode(codes)).tolist() == fmt.canonical(codes).tolist()
    canonical = fmt.canonical(codes)
    assert fmt.encode(fmt.decode(canonical)).tolist() == canonical.tolist()
    # Exactly one canonical code per level, and both zeros map to code 0.
    assert len(set(canonical.tolist())) == len(set(fmt.table.tolist()))
    zeros = [c for c in range(2 ** bits) if ref[c][3] == 0]
    assert sorted(zeros) == [0, 2 ** (bits - 1)]
    assert fmt.canonical(zeros).tolist() == [0, 0]
    # Where one term suffices, the canonical code uses e1 alone (e2 == 0).
    for v, code in canon.items():
        if any(ref[c][3] == v and ref[c][2] == 0 for c in ref):
            assert ref[code][2] == 0


def test_tables_are_read_only():
    fmt = SP2Format(5)
    with pytest.raises(ValueError):
        fmt.table[0] = 3
    with pytest.raises(ValueError):
        fmt.levels[0] = 3


def test_format_params():
    fmt = SP2Format(6)
    assert fmt.m1 == 3 and fmt.to_dict() == {"bits": 6, "m1": 3}
    assert SP2Format.from_json(fmt.to_json()) == fmt
    assert SP2Format(4) == SP2Format(4, 2) == SP2Format(bits=4, m1=None)
    assert SP2Format.from_dict(json.loads('{"bits": 4, "m1": 3}')).m2 == 0
    assert fmt.with_settings({"m1": "4"}) == SP2Format(6, 4)
    assert [name for name, *_ in fmt.describe()] == ["bits", "m1"]
    assert all(doc for *_, doc in fmt.describe())
    for bits in range(2, 9):  # the default m1 is ceil((bits - 1) / 2)
        assert SP2Format(bits).m1 == -(-(bits - 1) // 2)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"bits": 4.0}, TypeError, r"^SP2 bits must be an integer, not 4\.0$"),
    ({"bits": True}, TypeError, r"^SP2 bits must be an integer, not True$"),
    ({"bits": 1}, ValueError, r"^SP2 bits must be an integer from 2 to 8, not 1$"),
    ({"bits": 9}, ValueError, r"^SP2 bits must be an integer from 2 to 8, not 9$"),
    ({"bits": 4, "m1": "2"}, TypeError, r"^SP2 m1 must be an integer, not '2'$"),
    ({"bits": 4, "m1": 1}, ValueError,
     r"^SP2 m1 must be an integer from 2 to 3 for 4-bit codes \(m1 >= m2 = bits - 1 - m1\), not 1$"),
    ({"bits": 4, "m1": 4}, ValueError,
     r"^SP2 m1 must be an integer from 2 to 3 for 4-bit codes \(m1 >= m2 = bits - 1 - m1\), not 4$"),
    ({"bits": 8, "m1": 5}, ValueError,
     r"^SP2 m1 must be an integer from 4 to 4 for 8-bit codes \(m1 >= m2 = bits - 1 - m1, m1 <= 4\), not 5$"),
    ({"bits": 2, "m1": 0}, ValueError,
     r"^SP2 m1 must be an integer from 1 to 1 for 2-bit codes \(m1 >= m2 = bits - 1 - m1\), not 0$"),
])
def test_format_wrong(kwargs, error, message):
    with pytest.raises(error, match=message):
        SP2Format(**kwargs)


def test_codes_out_of_range():
    fmt = SP2Format(4)
    with pytest.raises(ValueError, match=r"^SP2 codes must be integers from 0 to 15, not 16 \(at index 2\)$"):
        fmt.decode([0, 1, 16])
    with pytest.raises(ValueError, match=r"^SP2 codes must be integers from 0 to 15, not -1 \(at index \(1, 0\)\)$"):
        fmt.canonical([[0], [-1]])
    with pytest.raises(TypeError, match=r"^SP2 codes must be integers, not 1\.5 \(at index 0\)$"):
        fmt.split([1.5])


# -- the encoder ----------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=300)
@given(legal_formats, st.data())
def test_encode_is_nearest_level(fmt, data):
    values = sorted(set(fmt.table.tolist()))
    x = data.draw(st.floats(-1.5 * fmt.max_level, 1.5 * fmt.max_level, allow_nan=False)
                  | st.sampled_from(values).map(lambda v: v + 0.5)      # midpoints
                  | st.sampled_from(values).map(float))
    expected = nearest_value(x, values)
    code = fmt.encode([x])
    assert fmt.decode(code).tolist() == [expected]
    assert fmt.canonical(code).tolist() == code.tolist()
    if expected == 0:
        assert code.tolist() == [0]


@pytest.mark.parametrize("bits, m1", LEGAL)
def test_encode_ties_go_to_the_smaller_magnitude(bits, m1):
    fmt = SP2Format(bits, m1)
    levels = sorted({abs(v) for v in reference(bits, m1).values() for v in [v[3]]})
    mids = np.array([(a + b) / 2 for a, b in zip(levels, levels[1:])])
    assert fmt.decode(fmt.encode(mids)).tolist() == levels[:-1]
    assert fmt.decode(fmt.encode(-mids)).tolist() == [-v for v in levels[:-1]]
    # Beyond the largest level: clipped.
    assert fmt.decode(fmt.encode([1e30, -1e30])).tolist() == [levels[-1], -levels[-1]]


def test_encode_zero_and_tiny_negatives():
    fmt = SP2Format(4)
    assert fmt.encode([0.0, -0.0, -1e-300, -0.5, 0.5]).tolist() == [0, 0, 0, 0, 0]
    assert fmt.encode(torch.tensor([-0.51])).tolist() == [0b1_11_0]


def test_encode_wrong():
    fmt = SP2Format(4)
    with pytest.raises(ValueError, match=r"^SP2 encoder input must be finite, not nan \(at index 1\)$"):
        fmt.encode([0.0, np.nan])
    with pytest.raises(TypeError, match=r"^SP2 encoder input must be real numbers, not complex128 values$"):
        fmt.encode(np.zeros(2, complex))


def test_encode_large_array():
    fmt = SP2Format(4)
    x = np.random.default_rng(0).uniform(-10, 10, size=(1000, 1000))
    codes = fmt.encode(x)
    assert codes.shape == x.shape and codes.dtype == np.int64
    err = np.abs(np.abs(x).clip(max=8) - np.abs(fmt.decode(codes)))
    assert err.max() <= np.diff(fmt.levels).max() / 2  # never more than half the widest gap
    assert np.all(np.sign(fmt.decode(codes)) * np.sign(x) >= 0)


# -- golden model ---------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=150)
@given(legal_formats, st.integers(1, 4), st.integers(0, 16), st.integers(1, 16), st.booleans(), st.booleans(),
       st.data())
def test_golden_dot_matches_float_dot(fmt, rows, k, act_bits, act_signed, shared, data):
    lo, hi = (-(2 ** (act_bits - 1)), 2 ** (act_bits - 1) - 1) if act_signed else (0, 2 ** act_bits - 1)
    acts = data.draw(arrays(np.int64, (rows, k), elements=st.integers(lo, hi)), label="acts")
    codes = data.draw(arrays(np.int64, (k,) if shared else (rows, k), elements=st.integers(0, fmt.n_codes - 1)),
                      label="codes")
    ref = reference(fmt.bits, fmt.m1)
    values = np.array([ref[c][3] for c in codes.ravel().tolist()], dtype=np.float64).reshape(codes.shape)
    expected = (acts.astype(np.float64) * values).sum(axis=1)  # exact: every partial sum < 2^53
    out = golden_dot(acts, codes, fmt, act_bits=act_bits, act_signed=act_signed)
    assert out.dtype == np.int64
    assert out.tolist() == expected.astype(np.int64).tolist()


def test_golden_dot_checks_ranges():
    fmt = SP2Format(4)
    acts = np.array([[1, 8, 0]])
    with pytest.raises(ValueError, match=r"^Acts must be integers from -8 to 7, not 8 \(at index \(0, 1\)\)$"):
        golden_dot(acts, [0, 0, 0], fmt, act_bits=4)
    with pytest.raises(ValueError, match=r"^Acts must be integers from 0 to 7, not -1 \(at index \(0, 0\)\)$"):
        golden_dot([[-1]], [0], fmt, act_bits=3, act_signed=False)
    assert golden_dot(acts, [0, 0, 0], fmt).tolist() == [0]  # no act_bits: any int64
    with pytest.raises(ValueError, match=r"^SP2 codes must be integers from 0 to 15, not 16 \(at index 2\)$"):
        golden_dot(acts, [0, 1, 16], fmt)
    with pytest.raises(ValueError, match=r"^Weights must have shape \(3,\) or \(1, 3\) to match acts of shape "
                                         r"\(1, 3\), not \(2,\)$"):
        golden_dot(acts, [0, 1], fmt)
    with pytest.raises(TypeError, match=r"^SP2 format must be an SP2Format, not 4$"):
        golden_dot(acts, [0, 0, 0], 4)


# -- alpha search and quantisation ----------------------------------------------------------------------

def reference_error(w, alpha, fmt):
    """Squared error of each row at the given alpha, nearest levels by brute force (ties to the lower)."""
    levels = np.array(sorted({abs(v) for *_, v in reference(fmt.bits, fmt.m1).values()}), dtype=np.float64)
    x = np.abs(w) * 2 ** fmt.E / alpha[..., None]
    q = levels[np.argmin(np.abs(x[..., None] - levels), axis=-1)]  # argmin: first = smaller on a tie
    return np.square(np.abs(w) - alpha[..., None] * q / 2 ** fmt.E).sum(axis=-1)


@pytest.mark.parametrize("bits, m1", LEGAL)
def test_fit_alpha_beats_max_abs(bits, m1):
    fmt = SP2Format(bits, m1)
    w = np.random.default_rng(bits * 10 + m1).standard_normal((16, 48))
    alpha = fit_alpha(w, fmt)
    err = reference_error(w, alpha, fmt)
    baseline = reference_error(w, np.abs(w).max(axis=1), fmt)
    assert np.all(err <= baseline * (1 + 1e-12))
    assert np.mean(err) < np.mean(baseline)


@pytest.mark.parametrize("fmt", [SP2Format(3), SP2Format(4), SP2Format(4, 3), SP2Format(5)])
def test_fit_alpha_matches_fine_grid(fmt):
    w = np.random.default_rng(fmt.bits * 10 + fmt.m1).standard_normal((12, 64))
    err = reference_error(w, fit_alpha(w, fmt), fmt)
    grid = np.geomspace(0.05, 3.0, 3000)[:, None] * np.abs(w).max(axis=1)  # [candidates, rows]
    brute = np.stack([reference_error(w, a, fmt) for a in grid]).min(axis=0)
    assert np.all(err <= brute * 1.03)
    assert np.mean(err) <= np.mean(brute) * 1.01


def test_fit_alpha_zero_rows_and_shapes():
    w = np.zeros((3, 5))
    w[1, 2] = -0.75
    alpha = fit_alpha(w, SP2Format(4))
    assert alpha[0] == 1.0 and alpha[2] == 1.0
    codes, alpha2 = quantize(w, SP2Format(4))
    assert alpha2.tolist() == alpha.tolist()
    assert dequantize(codes, alpha2, SP2Format(4))[1, 2] == -0.75  # one weight: exact
    assert codes[0].tolist() == [0] * 5
    with pytest.raises(ValueError, match=r"^Weights must be a 2-D array \[rows, K\], not shape \(5,\)$"):
        fit_alpha(np.zeros(5), SP2Format(4))


@settings(deadline=None, max_examples=40)
@given(legal_formats, st.integers(0, 2 ** 32 - 1))
def test_quantize_with_given_alpha_is_nearest(fmt, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((3, 10)) * rng.uniform(0.001, 100)
    alpha = rng.uniform(0.1, 2, 3) * np.abs(w).max(axis=1)
    codes, alpha_out = quantize(w, fmt, alpha=alpha)
    assert alpha_out.tolist() == alpha.tolist()
    values = sorted(set(fmt.table.tolist()))
    expected = [[nearest_value(x, values) for x in row] for row in (w * 2 ** fmt.E / alpha[:, None]).tolist()]
    assert fmt.decode(codes).tolist() == expected
    assert fmt.canonical(codes).tolist() == codes.tolist()
    assert dequantize(codes, alpha, fmt).tolist() == (alpha[:, None] * np.array(expected) / 2 ** fmt.E).tolist()


def test_quantize_wrong():
    with pytest.raises(ValueError, match=r"^Alpha must be positive, not -1\.0 \(at index 1\)$"):
        quantize(np.ones((2, 2)), SP2Format(4), alpha=[1.0, -1.0])
    with pytest.raises(ValueError, match=r"^Alpha must have shape \(2,\) \(one per row\), not \(3,\)$"):
        dequantize(np.zeros((2, 2), int), [1.0, 1.0, 1.0], SP2Format(4))
    with pytest.raises(ValueError, match=r"^SP2 codes must be a 2-D array \[rows, K\], not shape \(2,\)$"):
        dequantize([0, 1], [1.0], SP2Format(4))


# -- PyTorch --------------------------------------------------------------------------------------------

# Training and the export round trip of SP2Linear: tests/test_sw_fixed.py::test_quant_linear_trains_and_exports.

def test_sp2_linear_export():
    torch.manual_seed(0)
    layer = SP2Linear(20, 3, bias=False, fmt=SP2Format(4, 3))
    assert isinstance(layer, torch.nn.Linear) and layer.fmt == SP2Format(4, 3) and layer.bias is None
    codes, alpha = layer.export()
    assert codes.shape == (3, 20) and alpha.shape == (3,)
    assert layer.fmt.canonical(codes).tolist() == codes.tolist()
    expected, expected_alpha = quantize(layer.weight.detach().numpy(), SP2Format(4, 3))
    assert codes.tolist() == expected.tolist() and alpha.tolist() == expected_alpha.tolist()


def test_sp2_quantizer_straight_through_gradient():
    torch.manual_seed(1)
    w = torch.randn(4, 9, requires_grad=True)
    g = torch.randn(4, 9)
    quantizer = SP2Quantizer(SP2Format(4))
    wq = quantizer(w)
    codes, alpha = quantize(w.detach().numpy(), SP2Format(4))
    assert torch.equal(wq, torch.from_numpy(dequantize(codes, alpha, SP2Format(4))).float())
    (wq * g).sum().backward()
    assert torch.equal(w.grad, g)  # the identity: d(sum(wq * g)) / dw == g


def test_sp2_quantizer_wrong():
    with pytest.raises(TypeError, match=r"^SP2 format must be an SP2Format, not 4$"):
        SP2Quantizer(4)
    with pytest.raises(TypeError, match=r"^SP2 format must be an SP2Format, not 4$"):
        SP2Linear(2, 2, fmt=4)
