"""Tests for peforge.sw.circulant: the circulant-fft format and its derived widths, twiddles and rounding, the
first-column convention against scipy, BlockCirculantLinear against its dense matrix, spectral export, the
integer golden model against an independent recursive re-implementation of the schedule (bit exact), worst-case
inputs against the derived widths, SQNR against the float product, and a digits MLP through the golden."""

import doctest
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import peforge.sw.circulant_torch
import peforge.sw.circulant
from peforge.sw.circulant import CirculantFormat, bit_reverse, block_circulant, check_format, dequantize, export_spectra, golden_matvec, quantize_acts, round_shift, spectra_to_columns, sqnr_db
from peforge.sw.circulant_torch import BlockCirculantLinear
from peforge.sw.intops import int_range, signed_bits_for

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = (4, 8, 16, 32, 64)


# -- an independent re-implementation of the schedule: recursive, Python integers ----------------------------

def ref_twiddles(k, tw_bits):
    one = 1 << (tw_bits - 2)
    return [(round(math.cos(2 * math.pi * n / k) * one), round(-math.sin(2 * math.pi * n / k) * one))
            for n in range(k // 2)]


def ref_round(v, s):
    """floor(v / 2^s + 1/2), exactly."""
    return math.floor(Fraction(v, 1 << s) + Fraction(1, 2))


def ref_rot(v, t, frac):
    (a, b), (c, d) = v, t
    return ref_round(a * c - b * d, frac), ref_round(a * d + b * c, frac)


def ref_fft(v, tw, k, frac):
    """Recursive radix-2 decimation in frequency, natural order in and out."""
    n = len(v)
    if n == 1:
        return v
    h = n // 2
    top = [(v[j][0] + v[j + h][0], v[j][1] + v[j + h][1]) for j in range(h)]
    bottom = [ref_rot((v[j][0] - v[j + h][0], v[j][1] - v[j + h][1]), tw[j * (k // n)], frac) for j in range(h)]
    out = [None] * n
    out[0::2], out[1::2] = ref_fft(top, tw, k, frac), ref_fft(bottom, tw, k, frac)
    return out


def ref_ifft(v, tw, k, frac, scale=False):
    """Recursive radix-2 decimation in time with conjugate twiddles, natural order in and out (k x IDFT;
    with ``scale`` every butterfly output is halved, floor: the IDFT)."""
    n = len(v)
    if n == 1:
        return v
    h = n // 2
    even, odd = ref_ifft(v[0::2], tw, k, frac, scale), ref_ifft(v[1::2], tw, k, frac, scale)
    out = [None] * n
    s = int(scale)
    for j in range(h):
        c, d = tw[j * (k // n)]
        t = ref_rot(odd[j], (c, -d), frac)
        out[j] = ((even[j][0] + t[0]) >> s, (even[j][1] + t[1]) >> s)
        out[j + h] = ((even[j][0] - t[0]) >> s, (even[j][1] - t[1]) >> s)
    return out


def ref_matvec(x, spectra, fmt):
    """One vector x [q][k] -> y [p][k], Python integers, following the module docstring's formulas."""
    k, g, frac, sp = fmt.block, fmt.guard_bits, fmt.tw_bits - 2, fmt.prod_shift
    tw = ref_twiddles(k, fmt.tw_bits)
    spectra = np.asarray(spectra).tolist()
    xs = [ref_fft([(int(v) << g, 0) for v in block], tw, k, frac)[:k // 2 + 1] for block in x]
    y = []
    for row in spectra:
        acc = [(0, 0)] * (k // 2 + 1)
        for xj, wj in zip(xs, row):
            for m, ((a, b), (c, d)) in enumerate(zip(xj, wj)):
                acc[m] = (acc[m][0] + ref_round(a * c - b * d, sp), acc[m][1] + ref_round(a * d + b * c, sp))
        full = acc + [(re, -im) for re, im in acc[1:k // 2][::-1]]
        v = ref_ifft(full, tw, k, frac, fmt.ifft_scale)
        y.append([re if fmt.ifft_scale else ref_round(re, fmt.stages) for re, _ in v])
    return y


def random_spectra(rng, fmt, p, q, extreme=False):
    lo, hi = fmt.w_range
    w = rng.choice([lo, hi, 0], (p, q, fmt.bins, 2)) if extreme else rng.integers(lo, hi, (p, q, fmt.bins, 2),
                                                                                     endpoint=True)
    w[:, :, [0, -1], 1] = 0
    return w


def assert_within_widths(trace, fmt, q):
    """Every returned intermediate value lies within its derived width (for q and for max_q)."""
    for qq in {q, fmt.max_q}:
        widths = fmt.widths(qq)
        for s, stage in enumerate(trace.fft):
            lo, hi = int_range(fmt.fft_bits(s), True)
            assert lo <= stage.min() and stage.max() <= hi, f"forward stage {s}"
        for name, arr in (("product", trace.products), ("rounded", trace.rounded), ("acc", trace.acc),
                          ("out", trace.y)):
            lo, hi = int_range(widths[name], True)
            assert lo <= arr.min() and arr.max() <= hi, name
        assert signed_bits_for(int(trace.acc.min()), int(trace.acc.max())) <= fmt.acc_bits(qq)
        for s, stage in enumerate(trace.ifft):
            lo, hi = int_range(fmt.ifft_bits(s, qq), True)
            assert lo <= stage.min() and stage.max() <= hi, f"inverse stage {s}"


# -- the format ---------------------------------------------------------------------------------------------

def test_default_format_and_widths():
    fmt = CirculantFormat()
    assert (fmt.block, fmt.act_bits, fmt.act_signed, fmt.w_bits, fmt.tw_bits, fmt.guard_bits, fmt.prod_shift,
            fmt.max_q) == (16, 8, True, 12, 16, 2, 6, 64)
    assert (fmt.stages, fmt.bins, fmt.tw_frac, fmt.out_lsb) == (4, 9, 14, 16.0)
    # Pinned: the hardware generator sizes its registers from these.
    assert fmt.widths() == {"x": 8, "fft1": 11, "fft2": 12, "fft3": 13, "fft4": 14, "product": 26, "rounded": 20,
                            "acc": 26, "ifft1": 27, "ifft2": 28, "ifft3": 29, "ifft4": 30, "out": 26}
    assert fmt.widths(1) == {**fmt.widths(), "acc": 20, "ifft1": 21, "ifft2": 22, "ifft3": 23, "ifft4": 24,
                             "out": 20}
    assert [fmt.twiddle_product_bits("fft", s) for s in range(1, 5)] == [26, 27, 28, 29]
    assert [fmt.twiddle_product_bits("ifft", s) for s in range(1, 5)] == [40, 41, 42, 43]
    # 8160 = 4 * (8 * 127 + 8 * 128): bin k/2 of alternating 127, -128
    assert fmt.fft_range(0) == (-512, 508) and fmt.fft_range(4) == (-8192, 8160)
    docs = {name: doc for name, _, _, doc in fmt.describe()}
    assert set(docs) == {"block", "act_bits", "act_signed", "w_bits", "tw_bits", "guard_bits", "prod_shift",
                         "max_q", "ifft_scale"} and all(docs.values())
    assert fmt.ifft_scale is False
    # halving every inverse stage keeps it at the accumulator's width; the output needs no shift
    assert fmt.replace(ifft_scale=True).widths() == {**fmt.widths(), "ifft1": 26, "ifft2": 26, "ifft3": 26,
                                                     "ifft4": 26, "out": 26}


@pytest.mark.parametrize("block", BLOCKS)
def test_forward_widths_grow_one_bit_per_stage(block):
    fmt = CirculantFormat(block=block)
    assert [fmt.fft_bits(s) for s in range(fmt.stages + 1)] == [10 + s for s in range(fmt.stages + 1)]
    assert fmt.widths()["rounded"] == 20  # prod_shift = guard_bits + stages drops the guard bits and the growth
    assert [fmt.ifft_bits(s) for s in range(fmt.stages + 1)] == [26 + s for s in range(fmt.stages + 1)]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"block": 12}, ValueError, r"^Circulant block must be a power of two from 4 to 64, not 12$"),
    ({"block": 2}, ValueError, r"^Circulant block must be a power of two from 4 to 64, not 2$"),
    ({"block": 128}, ValueError, r"^Circulant block must be a power of two from 4 to 64, not 128$"),
    ({"block": 0}, ValueError, r"^Circulant block must be a power of two from 4 to 64, not 0$"),
    ({"block": 16.0}, TypeError, r"^Circulant block must be an integer, not 16\.0$"),
    ({"act_bits": 1}, ValueError, r"^Circulant activation bits must be an integer from 2 to 16, not 1$"),
    ({"act_bits": 17}, ValueError, r"^Circulant activation bits must be an integer from 2 to 16, not 17$"),
    ({"act_signed": 1}, TypeError, r"^Circulant act_signed must be a bool, not 1$"),
    ({"w_bits": 3}, ValueError, r"^Circulant weight bits must be an integer from 4 to 18, not 3$"),
    ({"w_bits": 19}, ValueError, r"^Circulant weight bits must be an integer from 4 to 18, not 19$"),
    ({"tw_bits": 20}, ValueError, r"^Circulant twiddle bits must be an integer from 4 to 18, not 20$"),
    ({"tw_bits": True}, TypeError, r"^Circulant twiddle bits must be an integer, not True$"),
    ({"guard_bits": 9}, ValueError, r"^Circulant guard bits must be an integer from 0 to 8, not 9$"),
    ({"max_q": 0}, ValueError, r"^Circulant max_q must be an integer from 1 to 65536, not 0$"),
    ({"ifft_scale": 1}, TypeError, r"^Circulant ifft_scale must be a bool, not 1$"),
    ({"prod_shift": -1}, ValueError, r"^Circulant product shift must be a non-negative integer, not -1$"),
    ({"prod_shift": 30}, ValueError,
     r"^Circulant product shift must be an integer from 0 to 24 \(below the 26-bit product\), not 30$"),
    # combinations that would overflow the int64 golden (and a 62-bit datapath)
    ({"block": 64, "act_bits": 16, "w_bits": 18, "tw_bits": 18, "guard_bits": 8, "max_q": 65536}, ValueError,
     r"^Circulant datapath must be at most 62 bits wide, not 71 \(inverse twiddle product of stage 6\); lower "
     r"max_q, act_bits, guard_bits, w_bits or tw_bits, or raise prod_shift$"),
    ({"act_bits": 16, "w_bits": 18, "guard_bits": 8, "prod_shift": 0, "max_q": 65536}, ValueError,
     r"^Circulant datapath must be at most 62 bits wide, not 79 \(inverse twiddle product of stage 4\); "),
    ({"block": 4, "act_bits": 16, "w_bits": 18, "tw_bits": 4, "guard_bits": 8, "prod_shift": 0,
      "max_q": 65536}, ValueError, r"^Circulant datapath must be at most 62 bits wide, not 63 \(inverse twiddle "
                                   r"product of stage 2\); "),
])
def test_format_wrong(kwargs, error, message):
    with pytest.raises(error, match=message):
        CirculantFormat(**kwargs)


def test_format_helpers_wrong():
    fmt = CirculantFormat()
    with pytest.raises(TypeError, match=r"^Circulant format must be a CirculantFormat, not 16$"):
        check_format(16)
    with pytest.raises(ValueError, match=r"^Stage must be an integer from 0 to 4, not 5$"):
        fmt.fft_bits(5)
    with pytest.raises(ValueError, match=r"^Stage must be an integer from 1 to 4, not 0$"):
        fmt.twiddle_product_bits("ifft", 0)
    with pytest.raises(ValueError, match=r"^Transform must be one of 'fft', 'ifft', not 'dft'$"):
        fmt.twiddle_product_bits("dft", 1)
    with pytest.raises(ValueError, match=r"^Circulant q must be an integer from 1 to 64, not 65$"):
        fmt.acc_bits(65)


def test_prod_shift_default_json_and_settings():
    fmt = CirculantFormat(block=64, guard_bits=3)
    assert fmt.prod_shift == 9 and fmt.to_dict()["prod_shift"] == 9
    assert CirculantFormat.from_json(fmt.to_json()) == fmt
    assert fmt.with_settings({"guard_bits": "1"}).prod_shift == 7            # derived again
    assert fmt.with_settings({"guard_bits": "1", "prod_shift": "4"}).prod_shift == 4
    assert fmt.with_settings({"act_signed": "false"}).act_signed is False


@settings(deadline=None, max_examples=60)
@given(st.sampled_from(BLOCKS), st.integers(2, 16), st.booleans(), st.integers(4, 18), st.integers(4, 18),
       st.integers(0, 8), st.integers(0, 12), st.integers(1, 1 << 16))
def test_every_format_fits_or_says_why(block, act_bits, act_signed, w_bits, tw_bits, guard_bits, extra, max_q):
    kwargs = dict(block=block, act_bits=act_bits, act_signed=act_signed, w_bits=w_bits, tw_bits=tw_bits,
                  guard_bits=guard_bits, max_q=max_q)
    try:
        fmt = CirculantFormat(**kwargs, prod_shift=guard_bits + extra)
    except ValueError as e:
        assert str(e).startswith(("Circulant datapath must be at most 62 bits wide, not ",
                                  "Circulant product shift must be an integer from 0 to ")), str(e)
        return
    rows = fmt._datapath()
    assert max(rows.values()) <= 62 and fmt.out_bits() <= fmt.ifft_bits(fmt.stages)
    assert fmt.acc_bits(1) <= fmt.acc_bits() <= fmt.acc_bits(1) + max_q.bit_length()


# -- integer primitives ------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=200)
@given(st.integers(-(1 << 55), 1 << 55), st.integers(0, 6))
def test_round_shift_is_round_half_up(v, s):
    assert int(round_shift(v, s)) == ref_round(v, s)
    assert round_shift(np.array([v, v]), s).tolist() == [ref_round(v, s)] * 2


@pytest.mark.parametrize("block", BLOCKS)
def test_bit_reverse(block):
    order = bit_reverse(block)
    bits = block.bit_length() - 1
    assert order.tolist() == [int(f"{i:0{bits}b}"[::-1], 2) for i in range(block)]
    assert order[order].tolist() == list(range(block))
    with pytest.raises(ValueError, match=r"^Bit-reversal length must be a power of two, not 12$"):
        bit_reverse(12)


@pytest.mark.parametrize("block", BLOCKS)
def test_twiddles(block):
    for tw_bits in range(4, 19):
        fmt = CirculantFormat(block=block, tw_bits=tw_bits, w_bits=4)
        tw, one = fmt.twiddles, 1 << fmt.tw_frac
        assert tw.dtype == np.int64 and tw.shape == (block // 2, 2) and not tw.flags.writeable
        assert tw.tolist() == [list(t) for t in ref_twiddles(block, tw_bits)]
        assert np.abs(tw).max() == one and -(1 << (tw_bits - 1)) <= tw.min() and tw.max() < 1 << (tw_bits - 1)
        assert tw[0].tolist() == [one, 0] and tw[block // 4].tolist() == [0, -one]
        # No twiddle is near a rounding tie, so any correct cos/sin gives this table.
        n = np.arange(block // 2)
        for exact in (np.cos(2 * np.pi * n / block) * one, np.sin(2 * np.pi * n / block) * one):
            frac = np.abs(exact - np.floor(exact) - 0.5)
            assert frac.min() > 1e-6
    # trivial twiddles are exact: R_F(v * 2^F) = v
    v = np.arange(-1000, 1000)
    assert (round_shift(v * (1 << 14), 14) == v).all()


# -- float side: the first-column convention, the layer -------------------------------------------------------

@pytest.mark.parametrize("p, q, k", [(1, 1, 4), (2, 3, 8), (3, 1, 5), (1, 2, 1)])
def test_block_circulant_is_scipy_circulant(p, q, k):
    c = np.random.default_rng(0).standard_normal((p, q, k))
    dense = block_circulant(c)
    expected = np.block([[scipy.linalg.circulant(c[i, j]) for j in range(q)] for i in range(p)])
    assert dense.shape == (p * k, q * k) and np.array_equal(dense, expected)
    assert np.array_equal(dense[:k, 0], c[0, 0])   # the first column of block (0, 0) is c_00


@pytest.mark.parametrize("in_features, out_features, block, bias, lead", [
    (16, 8, 4, True, (5,)), (24, 24, 8, False, (2, 3)), (15, 10, 5, True, ()), (64, 64, 64, True, (7,)),
])
def test_layer_forward_equals_dense(in_features, out_features, block, bias, lead):
    torch.manual_seed(0)
    layer = BlockCirculantLinear(in_features, out_features, block, bias=bias, dtype=torch.float64)
    c = layer.columns.detach().numpy()
    assert layer.columns.shape == (out_features // block, in_features // block, block)
    assert (layer.p, layer.q) == (out_features // block, in_features // block)
    dense = layer.to_dense()
    assert np.array_equal(dense.detach().numpy(), block_circulant(c))
    x = torch.randn(*lead, in_features, dtype=torch.float64)
    expected = x @ dense.T + (layer.bias if bias else 0)
    assert torch.allclose(layer(x), expected, rtol=1e-12, atol=1e-12)
    assert np.abs(c).max() <= 1 / math.sqrt(in_features)


def test_layer_gradients_equal_dense_gradients():
    torch.manual_seed(1)
    layer = BlockCirculantLinear(32, 16, 8, dtype=torch.float64)
    x = torch.randn(6, 32, dtype=torch.float64)
    target = torch.randn(6, 16, dtype=torch.float64)
    (torch.square(layer(x) - target)).sum().backward()
    grad_fft = layer.columns.grad.clone()
    layer.columns.grad = None
    (torch.square(x @ layer.to_dense().T + layer.bias - target)).sum().backward()
    assert torch.allclose(grad_fft, layer.columns.grad, rtol=1e-10, atol=1e-10)


def test_layer_wrong():
    with pytest.raises(ValueError, match=r"^BlockCirculantLinear in_features must be a multiple of block = 8, "
                                         r"not 10$"):
        BlockCirculantLinear(10, 8, 8)
    with pytest.raises(ValueError, match=r"^BlockCirculantLinear out_features must be a multiple of block = 8, "
                                         r"not 12$"):
        BlockCirculantLinear(8, 12, 8)
    with pytest.raises(ValueError, match=r"^BlockCirculantLinear block must be a positive integer, not 0$"):
        BlockCirculantLinear(8, 8, 0)
    with pytest.raises(TypeError, match=r"^BlockCirculantLinear in_features must be an integer, not 8\.0$"):
        BlockCirculantLinear(8.0, 8, 4)
    with pytest.raises(ValueError, match=r"^BlockCirculantLinear input must have 8 features in its last "
                                         r"dimension, not shape \(2, 4\)$"):
        BlockCirculantLinear(8, 8, 4)(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"^Circulant format block must match the layer's block = 8, not 16$"):
        BlockCirculantLinear(16, 16, 8).export(CirculantFormat())


# -- export ---------------------------------------------------------------------------------------------------

def test_export_spectra():
    fmt = CirculantFormat(block=8, w_bits=10)
    rng = np.random.default_rng(2)
    c = rng.standard_normal((3, 2, 8))
    c[2] = 0.0                                            # an all-zero block row
    w, scale = export_spectra(c, fmt)
    assert w.dtype == np.int64 and w.shape == (3, 2, 5, 2) and scale.shape == (3,)
    assert (w[:, :, [0, -1], 1] == 0).all() and np.abs(w).max() == 511 and scale[2] == 1.0 and (w[2] == 0).all()
    spec = np.fft.fft(c, axis=-1)[..., :5]                # the full DFT's bins 0 .. k/2
    for i in range(2):
        assert math.isclose(scale[i], np.abs(np.stack([spec[i].real, spec[i].imag])).max() / 511)
        assert (np.abs(w[i] - np.stack([spec[i].real, spec[i].imag], axis=-1) / scale[i]) <= 0.5 + 1e-9).all()
    back = spectra_to_columns(w, scale, fmt)
    assert np.abs(back - c).max() <= 8 * scale.max()      # quantisation error of the columns
    # torch columns, a given scale (clipping beyond the range), the layer's export
    w2, scale2 = export_spectra(torch.from_numpy(c), fmt, scale=scale / 2)
    parts = np.stack([spec.real, spec.imag], axis=-1)
    parts[..., [0, -1], 1] = 0
    assert np.array_equal(w2, np.clip(np.rint(parts / (scale / 2)[:, None, None, None]), -511, 511))
    assert np.abs(w2).max() == 511 and np.array_equal(scale2, scale / 2)
    layer = BlockCirculantLinear(16, 24, 8)
    lw, ls = layer.export(fmt)
    assert np.array_equal(lw, export_spectra(layer.columns.detach().numpy(), fmt)[0])


def test_export_wrong():
    fmt = CirculantFormat(block=8)
    with pytest.raises(ValueError, match=r"^Circulant columns must have k = 8 entries per block \(last axis\), "
                                         r"not shape \(2, 3, 16\)$"):
        export_spectra(np.zeros((2, 3, 16)), fmt)
    with pytest.raises(ValueError, match=r"^Circulant columns must be a 3-D array \[p, q, k\], not shape \(8,\)$"):
        export_spectra(np.zeros(8), fmt)
    with pytest.raises(ValueError, match=r"^Scale must be positive, not 0\.0 \(at index 0\)$"):
        export_spectra(np.ones((1, 1, 8)), fmt, scale=[0.0])


def test_quantize_acts_and_dequantize():
    fmt = CirculantFormat(act_bits=4, act_signed=False)
    x, s = quantize_acts([0.0, 1.5, 3.0, -1.0], fmt)
    assert x.tolist() == [0, 8, 15, 0] and s == 0.2
    x, s = quantize_acts([7.0, -9.0], fmt, scale=0.5)
    assert x.tolist() == [14, 0] and s == 0.5
    with pytest.raises(ValueError, match=r"^Activation scale must be a positive finite number, not 0$"):
        quantize_acts([1.0], fmt, scale=0)
    fmt = CirculantFormat(block=4, guard_bits=1, prod_shift=5)
    y = dequantize([[[1, -2, 3, 0]]], [0.5], fmt, act_scale=0.25)
    assert y.tolist() == [[[2.0, -4.0, 6.0, 0.0]]]    # y * 2^(5 - 1) * 0.5 * 0.25
    lo, hi = fmt.out_range()
    with pytest.raises(ValueError, match=rf"^Circulant outputs must be integers from {lo} to {hi}, "
                                         rf"not {hi + 1} \(at index \(0, 1\)\)$"):
        dequantize([[0, hi + 1, 0, 0]], [1.0], fmt)
    with pytest.raises(ValueError, match=r"^Circulant outputs must be an array \[\.\.\., p, 4\], not shape \(4,\)$"):
        dequantize([0, 0, 0, 0], [1.0], fmt)
    with pytest.raises(ValueError, match=r"^Scale must have shape \(1,\) \(one per row\), not \(2,\)$"):
        dequantize([[0, 0, 0, 0]], [1.0, 1.0], fmt)


def test_sqnr_db():
    assert sqnr_db([1.0, -1.0], [1.0, -1.0]) == math.inf
    assert math.isclose(sqnr_db([3.0, 4.0], [3.0, 4.5]), 10 * math.log10(25 / 0.25))
    assert sqnr_db([0.0], [1.0]) == -math.inf
    with pytest.raises(ValueError, match=r"^SQNR estimate must have the reference's shape \(2,\), not \(3,\)$"):
        sqnr_db([1.0, 2.0], [1.0, 2.0, 3.0])


# -- the golden model -------------------------------------------------------------------------------------------

@st.composite
def formats(draw, max_q=4):
    block = draw(st.sampled_from(BLOCKS))
    kwargs = dict(block=block, act_bits=draw(st.integers(2, 12)), act_signed=draw(st.booleans()),
                  w_bits=draw(st.integers(4, 16)), tw_bits=draw(st.integers(4, 18)),
                  guard_bits=draw(st.integers(0, 4)), max_q=draw(st.integers(1, max_q)),
                  ifft_scale=draw(st.booleans()))
    fmt = CirculantFormat(**kwargs)
    try:  # a small prod_shift can make the inverse FFT too wide (checked by test_every_format_fits_or_says_why)
        return fmt.replace(prod_shift=draw(st.integers(0, fmt.product_bits - 2)))
    except ValueError:
        assume(False)


@settings(deadline=None, max_examples=60)
@given(formats(), st.integers(1, 3), st.integers(0, 2), st.booleans(), st.data())
def test_golden_matches_recursive_reference(fmt, p, batch, extreme, data):
    q = data.draw(st.integers(1, fmt.max_q))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    lo, hi = fmt.act_range
    shape = (batch, q, fmt.block) if batch else (q, fmt.block)
    x = rng.choice([lo, hi], shape) if extreme else rng.integers(lo, hi, shape, endpoint=True)
    w = random_spectra(rng, fmt, p, q, extreme)
    y, trace = golden_matvec(x, w, fmt, trace=True)
    assert y.dtype == np.int64 and y.shape == shape[:-2] + (p, fmt.block)
    assert np.array_equal(trace.y, y) and np.array_equal(golden_matvec(x, w, fmt), y)
    for xv, yv in zip(x.reshape(-1, q, fmt.block), y.reshape(-1, p, fmt.block)):
        assert yv.tolist() == ref_matvec(xv, w, fmt)
    assert_within_widths(trace, fmt, q)


def test_golden_trace_layout():
    fmt = CirculantFormat(block=8, max_q=3)
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (4, 3, 8))
    w = random_spectra(rng, fmt, 2, 3)
    y, t = golden_matvec(x, w, fmt, trace=True)
    order = bit_reverse(8)
    assert len(t.fft) == len(t.ifft) == 4
    assert [a.shape for a in t.fft] == [(4, 3, 8, 2)] * 4 and [a.shape for a in t.ifft] == [(4, 2, 8, 2)] * 4
    assert t.spectrum.shape == (4, 3, 5, 2) and t.products.shape == t.rounded.shape == (4, 2, 3, 5, 2)
    assert t.acc.shape == (4, 2, 5, 2)
    assert np.array_equal(t.fft[0][..., 0], x << 2) and not t.fft[0][..., 1].any()
    assert np.array_equal(t.spectrum, t.fft[3][..., order[:5], :])       # bit-reversed positions
    assert not t.spectrum[..., [0, 4], 1].any()                           # bins 0 and k/2 are real
    assert np.array_equal(t.spectrum[..., 0, 0], (x << 2).sum(axis=-1))   # bin 0 is the exact sum
    assert np.array_equal(t.rounded, round_shift(t.products, fmt.prod_shift))
    assert np.array_equal(t.acc, t.rounded.sum(axis=-3))
    first = t.ifft[0][..., order, :]                                      # back to natural order
    assert np.array_equal(first[..., :5, :], t.acc)
    assert np.array_equal(first[..., 5:, 0], t.acc[..., 3:0:-1, 0])
    assert np.array_equal(first[..., 5:, 1], -t.acc[..., 3:0:-1, 1])
    assert np.array_equal(y, round_shift(t.ifft[3][..., 0], 3))
    # the spectrum is close to the exact DFT (only the twiddle products round)
    exact = np.fft.rfft(x << 2, axis=-1)
    assert np.abs(t.spectrum[..., 0] - exact.real).max() < 4 and np.abs(t.spectrum[..., 1] - exact.imag).max() < 4


def test_golden_batches_are_independent():
    fmt = CirculantFormat(block=16, max_q=2)
    rng = np.random.default_rng(4)
    x = rng.integers(-128, 128, (3, 5, 2, 16))
    w = random_spectra(rng, fmt, 3, 2)
    y = golden_matvec(x, w, fmt)
    assert y.shape == (3, 5, 3, 16)
    assert all(np.array_equal(y[a, b], golden_matvec(x[a, b], w, fmt)) for a in range(3) for b in range(5))
    assert np.array_equal(golden_matvec(torch.from_numpy(x), torch.from_numpy(w), fmt), y)
    assert np.array_equal(golden_matvec(x.tolist(), w.tolist(), fmt), y)


def test_golden_wrong():
    fmt = CirculantFormat(max_q=2)
    w = np.zeros((1, 2, 9, 2), np.int64)
    x = np.zeros((2, 16), np.int64)
    with pytest.raises(ValueError, match=r"^Acts must be integers from -128 to 127, not 128 \(at index \(1, 3\)\)$"):
        golden_matvec(np.where(np.arange(32).reshape(2, 16) == 19, 128, 0), w, fmt)
    with pytest.raises(TypeError, match=r"^Acts must be integers, not 0\.5 \(at index \(0, 0\)\)$"):
        golden_matvec(x + 0.5, w, fmt)
    bad = w.copy()
    bad[0, 1, 3, 0] = 2048
    with pytest.raises(ValueError, match=r"^Circulant spectra must be integers from -2048 to 2047, not 2048 "
                                         r"\(at index \(0, 1, 3, 0\)\)$"):
        golden_matvec(x, bad, fmt)
    bad = w.copy()
    bad[0, 1, 8, 1] = -3
    with pytest.raises(ValueError, match=r"^Circulant spectra must have imaginary part 0 in bins 0 and k/2, "
                                         r"not -3 \(at index \(0, 1, 8, 1\)\)$"):
        golden_matvec(x, bad, fmt)
    with pytest.raises(ValueError, match=r"^Circulant spectra must be an array \[p, q, 9, 2\] with q >= 1 "
                                         r"\(k = 16\), not shape \(1, 2, 8, 2\)$"):
        golden_matvec(x, np.zeros((1, 2, 8, 2), np.int64), fmt)
    with pytest.raises(ValueError, match=r"^Acts must have q = 2 blocks of k = 16 \(shape \[\.\.\., 2, 16\]\) to "
                                         r"match the spectra, not shape \(3, 16\)$"):
        golden_matvec(np.zeros((3, 16), np.int64), w, fmt)
    with pytest.raises(ValueError, match=r"^Circulant q must be an integer from 1 to 2, not 3$"):
        golden_matvec(np.zeros((3, 16), np.int64), np.zeros((1, 3, 9, 2), np.int64), fmt)
    with pytest.raises(TypeError, match=r"^Trace must be a bool, not 1$"):
        golden_matvec(x, w, fmt, trace=1)


def worst_inputs(fmt):
    """DC at both extremes, impulses, alternating signs and, per bin, the input that maximises re X[m]."""
    k, (lo, hi) = fmt.block, fmt.act_range
    rows = [np.full(k, lo), np.full(k, hi), np.where(np.arange(k) % 2, lo, hi), np.where(np.arange(k) % 2, hi, lo)]
    for n in range(k):
        rows += [np.where(np.arange(k) == n, lo, 0), np.where(np.arange(k) == n, hi, 0)]
    phase = 2 * np.pi * np.outer(np.arange(k // 2 + 1), np.arange(k)) / k
    for basis in (np.cos(phase), np.sin(phase), np.cos(phase) + np.sin(phase), np.cos(phase) - np.sin(phase)):
        rows += [*np.where(basis >= 0, hi, lo), *np.where(basis >= 0, lo, hi)]
    return np.array(rows, dtype=np.int64)


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("act_signed", [True, False])
def test_worst_case_inputs_stay_within_widths(block, act_signed):
    fmt = CirculantFormat(block=block, act_signed=act_signed, max_q=4)
    x = worst_inputs(fmt)                               # [cases, k], the same block in all q = max_q inputs
    xs = np.repeat(x[:, None, :], 4, axis=1)
    lo, hi = fmt.w_range
    seen = {}

    def run(x_blocks, w):
        _, t = golden_matvec(x_blocks, w, fmt, trace=True)
        assert_within_widths(t, fmt, 4)
        for name, arr in [(f"fft{s}", a) for s, a in enumerate(t.fft)] + [("product", t.products), ("acc", t.acc)]:
            old = seen.get(name, (0, 0))
            seen[name] = (min(old[0], int(arr.min())), max(old[1], int(arr.max())))
        return t

    for value in (lo, hi):                              # every bin and component at one extreme
        w = np.full((1, 4, fmt.bins, 2), value)
        w[..., [0, -1], 1] = 0
        spectrum = run(xs, w).spectrum[:, 0]            # [cases, bins, 2]
    for case in range(len(x)):                          # weights aligned with the case's spectrum: every
        xr, xi = spectrum[case, :, 0], spectrum[case, :, 1]     # product at its largest or smallest real part
        for w in (np.stack([np.where(xr >= 0, hi, lo), np.where(xi >= 0, lo, hi)], axis=-1),
                  np.stack([np.where(xr >= 0, lo, hi), np.where(xi >= 0, hi, lo)], axis=-1)):
            w[[0, -1], 1] = 0
            run(xs[case], np.broadcast_to(w, (1, 4, fmt.bins, 2)))
    # The derived widths are tight for the forward FFT, the products and the accumulator: some input needs them.
    for s in range(fmt.stages + 1):
        assert signed_bits_for(*seen[f"fft{s}"]) == fmt.fft_bits(s)
    assert signed_bits_for(*seen["product"]) == fmt.product_bits
    assert signed_bits_for(*seen["acc"]) == fmt.acc_bits()


# -- accuracy ---------------------------------------------------------------------------------------------------

def measure_sqnr(fmt, p=4, q=4, n=64, seed=0):
    """SQNR (dB) of dequantize(golden) against the float64 product block_circulant(c) @ x, for Gaussian first
    columns and activations uniform over the whole act_bits range (the activations' own quantisation is not
    counted: both sides see the same integers)."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((p, q, fmt.block))
    spectra, scale = export_spectra(c, fmt)
    lo, hi = fmt.act_range
    x = rng.integers(lo, hi, (n, q, fmt.block), endpoint=True)
    reference = x.reshape(n, -1) @ block_circulant(c).T
    return sqnr_db(reference, dequantize(golden_matvec(x, spectra, fmt), scale, fmt).reshape(n, -1))


@pytest.mark.parametrize("block, floor", [(8, 62), (16, 60), (64, 58)])
def test_sqnr_default_configuration(block, floor):
    fmt = CirculantFormat(block=block)
    sqnr = measure_sqnr(fmt)
    print(f"k = {block}: {sqnr:.1f} dB")
    assert sqnr >= floor >= 50


@pytest.mark.parametrize("block", [16, 64])
def test_sqnr_scaled_inverse(block):
    """Halving every inverse stage (``ifft_scale``, floor) keeps the inverse values at the accumulator's width
    and costs at most 0.5 dB at the default format (k = 16: 62.5 -> 62.5 dB, k = 64: 60.2 -> 59.8 dB in the
    bench recipe); two more bits off each product (``prod_shift + 2``) cost more (k = 64: 4 dB; the inverse
    stages' floors then sit 4x coarser) but stay at 55 dB or more."""
    fmt = CirculantFormat(block=block)
    scaled = fmt.replace(ifft_scale=True)
    assert [scaled.ifft_bits(s) for s in range(fmt.stages + 1)] == [fmt.acc_bits()] * (fmt.stages + 1)
    assert scaled.out_bits() <= fmt.out_bits() + 1
    base, half, coarse = (measure_sqnr(f) for f in (fmt, scaled, scaled.replace(prod_shift=fmt.prod_shift + 2)))
    print(f"k = {block}: {base:.2f} dB, ifft_scale {half:.2f} dB, and prod_shift + 2 {coarse:.2f} dB")
    assert base - 0.5 <= half <= base + 0.2 and half - 4.5 <= coarse < half and coarse >= 55


def test_fine_quantisation_approaches_float():
    coarse = measure_sqnr(CirculantFormat(guard_bits=0, w_bits=8))
    default = measure_sqnr(CirculantFormat())
    fine = measure_sqnr(CirculantFormat(w_bits=18, tw_bits=18, guard_bits=8))
    print(f"k = 16: coarse {coarse:.1f} dB, default {default:.1f} dB, fine {fine:.1f} dB")
    assert coarse + 10 < default and default + 25 < fine and fine > 90


# -- a digits MLP through the golden model -------------------------------------------------------------------------

def train_digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.25, random_state=0, stratify=y)
    xt, yt = torch.tensor(x_train, dtype=torch.float32), torch.tensor(y_train)
    torch.manual_seed(0)
    model = torch.nn.Sequential(BlockCirculantLinear(64, 64, 8), torch.nn.ReLU(), BlockCirculantLinear(64, 64, 8),
                                torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    order = torch.Generator().manual_seed(1)
    for _ in range(30):
        perm = torch.randperm(len(xt), generator=order)
        for start in range(0, len(xt), 64):
            batch = perm[start:start + 64]
            loss = torch.nn.functional.cross_entropy(model(xt[batch]), yt[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model, x_train, x_test, y_test


def golden_layer(layer, fmt, calibration, x):
    """The layer through the PE: activations quantised with a scale calibrated on the training set."""
    _, act_scale = quantize_acts(calibration, fmt)
    x_int, _ = quantize_acts(x, fmt, scale=act_scale)
    spectra, scale = layer.export(fmt)
    y = golden_matvec(x_int.reshape(len(x), layer.q, layer.block), spectra, fmt)
    return dequantize(y, scale, fmt, act_scale).reshape(len(x), -1) + layer.bias.detach().double().numpy()


def test_digits_mlp_through_golden():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead
    try:
        model, x_train, x_test, y_test = train_digits()
        fmt = CirculantFormat(block=8, act_signed=False)            # post-ReLU (and pixel) activations
        with torch.no_grad():
            float_acc = (model(torch.tensor(x_test, dtype=torch.float32)).argmax(1).numpy() == y_test).mean()
            h_train = torch.relu(model[0](torch.tensor(x_train, dtype=torch.float32))).double().numpy()
            h = np.maximum(golden_layer(model[0], fmt, x_train, x_test), 0)
            h = np.maximum(golden_layer(model[2], fmt, h_train, h), 0)
            logits = model[4](torch.tensor(h, dtype=torch.float32))
        golden_acc = (logits.argmax(1).numpy() == y_test).mean()
    finally:
        torch.set_num_threads(threads)
    print(f"digits 64-64-64-10 (two block-circulant k = 8 layers): float {float_acc:.4f}, "
          f"golden (8-bit activations) {golden_acc:.4f}")
    assert float_acc > 0.93
    assert golden_acc >= float_acc - 0.03


# -- import cost, docs ------------------------------------------------------------------------------------------

def test_import_does_not_load_torch():
    code = ("import sys, peforge.sw.circulant as c; assert 'torch' not in sys.modules, 'torch imported'; "
            "f = c.CirculantFormat(block=4); w, s = c.export_spectra([[[1.0, 0, 0, 0]]], f); "
            "c.dequantize(c.golden_matvec([[1, 2, 3, 4]], w, f), s, f); "
            "assert 'torch' not in sys.modules, 'torch imported by a call'; "
            "from peforge.sw.circulant_torch import BlockCirculantLinear; assert 'torch' in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_torch_half_is_its_own_module():
    """The numpy half neither imports nor re-exports the torch half (no import circle between the two files)."""
    assert peforge.sw.circulant_torch.BlockCirculantLinear is BlockCirculantLinear and not hasattr(peforge.sw.circulant, "BlockCirculantLinear")
    with pytest.raises(AttributeError, match=r"^module 'peforge\.sw\.circulant' has no attribute 'BlockCirculant'$"):
        peforge.sw.circulant.BlockCirculant


@pytest.mark.parametrize("module", [peforge.sw.circulant, peforge.sw.circulant_torch])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted >= 2 and result.failed == 0
