"""Tests for peforge.sw.forms: the crossbar format and its derived widths, polarisation against a brute-force projection,
quantisation, the cell mapping and its inverse, the golden model of the crossbar PE against x @ W, an
independent step count and a hand-written clipping loop, the array models (ideal, non-ideal: seeded, faults,
read order), ADMM polarisation (PolarizedLinear) by hand, and a digits MLP (float vs polarised; zero-skipping
with and without the activation L1 penalty)."""

import doctest
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import peforge.sw.forms_torch
import peforge.sw.forms
from peforge.sw.forms import CrossbarFormat, IdealArray, Mapping, NonIdealArray, active_planes, check_format, check_mapping, count_steps, dequantize, golden_mvm, is_polarized, map_weights, polarize, quantize, quantize_acts, unmap
from peforge.sw.forms_torch import ActivationL1, CrossbarMLP, PolarityConstraint, PolarizedLinear, admm_polarize, train_classifier

ROOT = Path(__file__).resolve().parent.parent


# -- independent references (plain Python integers and loops) ---------------------------------------------

def ref_mvm(x, w):
    """x @ W with Python integers (no overflow, no numpy matmul)."""
    x, w = np.asarray(x).tolist(), np.asarray(w).tolist()
    vectors = x if x and isinstance(x[0], list) else [x]
    out = [[sum(a * row[c] for a, row in zip(v, w)) for c in range(len(w[0]))] for v in vectors]
    return out if vectors is x else out[0]


def ref_steps(x, rps):
    """Steps of one vector: per sub-array, the set bits of the OR of its inputs."""
    total = 0
    for k0 in range(0, len(x), rps):
        merged = 0
        for v in x[k0:k0 + rps]:
            merged |= int(v)
        total += bin(merged).count("1")
    return total


def ref_clipped(x, w, rps, act_bits, cell_bits, w_bits, adc_max):
    """The controller written as nested loops with divmod-based slicing, for one input vector."""
    base = 2 ** cell_bits
    rows, cols = len(w), len(w[0])
    y = [0] * cols
    for c in range(cols):
        for k0 in range(0, rows, rps):
            frag = [w[r][c] for r in range(k0, k0 + rps)]
            sign = -1 if any(v < 0 for v in frag) else 1
            partial = 0
            for p in range(act_bits):
                for s in range(w_bits // cell_bits):
                    total = 0
                    for i, v in enumerate(frag):
                        level = (abs(v) // base ** s) % base
                        total += ((int(x[k0 + i]) // 2 ** p) % 2) * level
                    partial += min(total, adc_max) * 2 ** (p + s * cell_bits)
            y[c] += sign * partial
    return y


def random_polarised(rng, fmt, density=0.7):
    """Integer weights of ``fmt`` with a random sign per fragment (zeros mixed in, full-scale values too)."""
    mags = rng.integers(0, fmt.w_max, (fmt.rows, fmt.cols), endpoint=True)
    mags[rng.random(mags.shape) < 0.1] = fmt.w_max
    mags[rng.random(mags.shape) > density] = 0
    signs = np.repeat(rng.integers(0, 2, (fmt.sub_arrays, fmt.cols)), fmt.rows_per_sub, axis=0)
    return np.where(signs == 1, -mags, mags)


def random_inputs(rng, fmt, kind, n=None):
    shape = (fmt.rows,) if n is None else (n, fmt.rows)
    if kind == "zero":
        return np.zeros(shape, dtype=np.int64)
    if kind == "full":
        return np.full(shape, fmt.act_max, dtype=np.int64)
    x = rng.integers(0, fmt.act_max, shape, endpoint=True)
    if kind == "sparse":
        x[rng.random(shape) < 0.8] = 0
    return x


@st.composite
def formats(draw, lossless=True):
    rps = draw(st.sampled_from([1, 2, 3, 4, 8]))
    cell_bits = draw(st.integers(1, 3))
    fmt = CrossbarFormat(rows=rps * draw(st.integers(1, 4)), cols=draw(st.integers(1, 5)), rows_per_sub=rps,
                         act_bits=draw(st.integers(1, 8)), w_bits=cell_bits * draw(st.integers(1, 3)),
                         cell_bits=cell_bits)
    if lossless:
        return fmt.replace(adc_bits=fmt.adc_bits + draw(st.integers(0, 2)))
    return fmt.replace(adc_bits=draw(st.integers(1, max(1, fmt.lossless_adc_bits - 1))))


kinds = st.sampled_from(["zero", "full", "sparse", "random"])
seeds = st.integers(0, 2 ** 32 - 1)


# -- the format ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, cols, rps, act_bits, w_bits, cell_bits", [
    (128, 128, 8, 8, 8, 2), (64, 10, 4, 8, 8, 2), (16, 3, 16, 1, 1, 1), (12, 5, 3, 4, 6, 3),
    (4096, 4096, 1024, 16, 16, 4), (4096, 1, 1, 16, 16, 1),
])
def test_format_derived(rows, cols, rps, act_bits, w_bits, cell_bits):
    fmt = CrossbarFormat(rows, cols, rps, act_bits, w_bits, cell_bits)
    column_max = rps * (2 ** cell_bits - 1)
    assert fmt.sub_arrays == rows // rps and fmt.slices == w_bits // cell_bits
    assert fmt.physical_cols == cols * (w_bits // cell_bits)
    assert fmt.column_max == column_max
    assert 2 ** (fmt.lossless_adc_bits - 1) <= column_max < 2 ** fmt.lossless_adc_bits  # smallest that holds it
    assert fmt.adc_bits == fmt.lossless_adc_bits and fmt.is_lossless
    assert fmt.max_steps == rows // rps * act_bits
    # the largest partial: every code at adc_max, every plane, every slice
    partial = sum((2 ** fmt.adc_bits - 1) << (p + s * cell_bits)
                  for p in range(act_bits) for s in range(w_bits // cell_bits))
    assert fmt.partial_max == partial and fmt.partial_bits == partial.bit_length()
    y_max = rows // rps * partial
    assert -(2 ** (fmt.y_bits - 1)) <= -y_max and y_max < 2 ** (fmt.y_bits - 1)
    assert y_max >= 2 ** (fmt.y_bits - 2)  # no bit to spare
    assert y_max >= rows * (2 ** act_bits - 1) * (2 ** w_bits - 1)  # covers the exact product
    assert fmt.y_bits <= 62
    assert CrossbarFormat.from_json(fmt.to_json()) == fmt
    lossy = fmt.replace(adc_bits=fmt.lossless_adc_bits - 1) if fmt.lossless_adc_bits > 1 else fmt
    assert lossy.is_lossless == (lossy is fmt)


def test_format_defaults_settings_and_docs():
    fmt = CrossbarFormat()
    assert (fmt.rows, fmt.cols, fmt.rows_per_sub, fmt.act_bits, fmt.w_bits, fmt.cell_bits, fmt.adc_bits) == \
        (128, 128, 8, 8, 8, 2, 5)
    assert fmt.to_dict()["adc_bits"] == 5
    # adc_bits defaults to lossless: it follows rows_per_sub unless it is set too
    assert fmt.with_settings({"rows_per_sub": "32"}).adc_bits == 7
    assert fmt.with_settings({"rows_per_sub": "32", "adc_bits": "4"}).adc_bits == 4
    docs = {name: doc for name, _, _, doc in fmt.describe()}
    assert set(docs) == {"rows", "cols", "rows_per_sub", "act_bits", "w_bits", "cell_bits", "adc_bits"}
    assert all(docs.values()) and "magnitude" in docs["w_bits"]
    widest = CrossbarFormat(rows=4096, cols=1, rows_per_sub=1, act_bits=16, w_bits=16, cell_bits=1, adc_bits=16)
    assert widest.y_bits == 61  # the widest legal result still fits int64 (and the 62-bit accumulator rule)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"rows": 0}, ValueError, r"^Crossbar rows must be an integer from 1 to 4096, not 0$"),
    ({"rows": 8192}, ValueError, r"^Crossbar rows must be an integer from 1 to 4096, not 8192$"),
    ({"rows": 8.0}, TypeError, r"^Crossbar rows must be an integer, not 8\.0$"),
    ({"cols": 0}, ValueError, r"^Crossbar cols must be an integer from 1 to 4096, not 0$"),
    ({"cols": True}, TypeError, r"^Crossbar cols must be an integer, not True$"),
    ({"rows_per_sub": 0}, ValueError, r"^Crossbar rows_per_sub must be an integer from 1 to 1024, not 0$"),
    ({"rows": 2048, "rows_per_sub": 2048}, ValueError,
     r"^Crossbar rows_per_sub must be an integer from 1 to 1024, not 2048$"),
    ({"act_bits": 0}, ValueError, r"^Crossbar act_bits must be an integer from 1 to 16, not 0$"),
    ({"act_bits": 17}, ValueError, r"^Crossbar act_bits must be an integer from 1 to 16, not 17$"),
    ({"w_bits": 0}, ValueError, r"^Crossbar w_bits must be an integer from 1 to 16, not 0$"),
    ({"w_bits": 18}, ValueError, r"^Crossbar w_bits must be an integer from 1 to 16, not 18$"),
    ({"cell_bits": 5, "w_bits": 10}, ValueError, r"^Crossbar cell_bits must be an integer from 1 to 4, not 5$"),
    ({"cell_bits": "2"}, TypeError, r"^Crossbar cell_bits must be an integer, not '2'$"),
    ({"adc_bits": 0}, ValueError, r"^Crossbar adc_bits must be an integer from 1 to 16, not 0$"),
    ({"adc_bits": 17}, ValueError, r"^Crossbar adc_bits must be an integer from 1 to 16, not 17$"),
    ({"adc_bits": 4.0}, TypeError, r"^Crossbar adc_bits must be an integer, not 4\.0$"),
    ({"rows": 12}, ValueError, r"^Crossbar rows must be a multiple of rows_per_sub = 8, not 12$"),
    ({"rows": 4}, ValueError, r"^Crossbar rows must be a multiple of rows_per_sub = 8, not 4$"),
    ({"w_bits": 7}, ValueError, r"^Crossbar w_bits must be a multiple of cell_bits = 2, not 7$"),
    ({"w_bits": 1, "cell_bits": 2}, ValueError, r"^Crossbar w_bits must be a multiple of cell_bits = 2, not 1$"),
])
def test_format_wrong(kwargs, error, message):
    with pytest.raises(error, match=message):
        CrossbarFormat(**kwargs)


def test_check_format():
    fmt = CrossbarFormat()
    assert check_format(fmt) is fmt
    with pytest.raises(TypeError, match=r"^Crossbar format must be a CrossbarFormat, not \(128, 128\)$"):
        check_format((128, 128))
    with pytest.raises(TypeError, match=r"^Crossbar format must be a CrossbarFormat, not None$"):
        golden_mvm([0] * 128, map_weights(np.zeros((128, 128), int), fmt), None)


# -- polarisation ------------------------------------------------------------------------------------------------

def brute_force_projection(w, rps):
    """Nearest polarised matrix over every choice of fragment signs (each choice: clip to its orthants).

    Returns (best distance^2, list of all nearest candidates)."""
    rows, cols = w.shape
    frags = [(k0, c) for k0 in range(0, rows, rps) for c in range(cols)]
    results = []
    for choice in itertools.product((1, -1), repeat=len(frags)):
        z = w.copy()
        for (k0, c), sign in zip(frags, choice):
            part = z[k0:k0 + rps, c]
            z[k0:k0 + rps, c] = np.maximum(part, 0) if sign > 0 else np.minimum(part, 0)
        results.append((float(np.square(w - z).sum()), z))
    best = min(d for d, _ in results)
    return best, [z for d, z in results if d == best]


@settings(deadline=None, max_examples=200)
@given(st.sampled_from([1, 2, 3, 4]), st.integers(1, 2), st.integers(1, 3), seeds, st.booleans())
def test_polarize_is_the_euclidean_projection(rps, subs, cols, seed, small_ints):
    rng = np.random.default_rng(seed)
    fmt = CrossbarFormat(rows=rps * subs, cols=cols, rows_per_sub=rps, w_bits=2, cell_bits=1)
    # small integers make ties between the two signs of a fragment likely
    w = rng.integers(-2, 3, fmt.rows * cols).reshape(fmt.rows, cols).astype(float) if small_ints else \
        rng.standard_normal((fmt.rows, cols))
    p = polarize(w, fmt)
    best, nearest = brute_force_projection(w, rps)
    assert np.isclose(np.square(w - p).sum(), best, rtol=1e-12, atol=1e-12)
    assert any(np.array_equal(p, z) for z in nearest)
    assert is_polarized(p, fmt)
    assert np.array_equal(polarize(p, fmt), p)  # idempotent
    # no polarised point is nearer: random ones around w, and w's own polarised perturbations
    for _ in range(20):
        z = polarize(w + 0.3 * rng.standard_normal(w.shape), fmt)
        assert np.square(w - z).sum() >= best - 1e-12


def test_polarize_ties_and_kept_values():
    fmt = CrossbarFormat(rows=2, cols=3, rows_per_sub=2, w_bits=2)
    w = np.array([[1.0, -2.0, 0.0], [-1.0, 1.0, 0.0]])
    # tie (1 vs 1): positive kept; 1 < 4: negative kept; all-zero stays zero
    assert polarize(w, fmt).tolist() == [[1.0, -2.0, 0.0], [0.0, 0.0, 0.0]]
    t = torch.tensor(w, dtype=torch.float16)
    out = polarize(t, fmt)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float16
    assert out.tolist() == [[1.0, -2.0, 0.0], [0.0, 0.0, 0.0]]


def test_polarize_wrong():
    fmt = CrossbarFormat(rows=8, cols=2)
    with pytest.raises(ValueError, match=r"^Crossbar weights must have shape \(8, 2\) \(rows, cols\), not \(8, 3\)$"):
        polarize(np.zeros((8, 3)), fmt)
    with pytest.raises(ValueError, match=r"^Crossbar weights must be finite, not nan \(at index \(0, 1\)\)$"):
        polarize([[0.0, np.nan]] + [[0.0, 0.0]] * 7, fmt)
    with pytest.raises(TypeError, match=r"^Crossbar format must be a CrossbarFormat, not 8$"):
        polarize(np.zeros((8, 2)), 8)


# -- quantisation ------------------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=30)
@given(st.integers(1, 8), seeds)
def test_quantize_keeps_polarity(w_bits, seed):
    rng = np.random.default_rng(seed)
    fmt = CrossbarFormat(rows=8, cols=3, rows_per_sub=4, w_bits=w_bits, cell_bits=1)
    w = polarize(rng.standard_normal((8, 3)), fmt)
    v, scale = quantize(w, fmt)
    assert v.dtype == np.int64 and scale.shape == (3,) and (scale > 0).all()
    assert np.abs(v).max() <= fmt.w_max and is_polarized(v, fmt)
    assert np.array_equal(v, np.clip(np.rint(w / scale), -fmt.w_max, fmt.w_max))
    assert np.allclose(dequantize(v, scale, fmt), v * scale)
    # the fitted scale is at least as good as the plain max scale
    plain = np.abs(w).max(axis=0) / fmt.w_max
    plain[plain == 0] = 1.0
    v_plain, _ = quantize(w, fmt, scale=plain)
    assert np.square(w - v * scale).sum() <= np.square(w - v_plain * plain).sum() + 1e-12


def test_quantize_wrong():
    fmt = CrossbarFormat(rows=8, cols=2)
    with pytest.raises(ValueError, match=r"^Column scale must have shape \(2,\) \(one per column\), not \(3,\)$"):
        quantize(np.ones((8, 2)), fmt, scale=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"^Column scale must be positive, not 0\.0$"):
        quantize(np.ones((8, 2)), fmt, scale=[1.0, 0.0])
    with pytest.raises(ValueError, match=r"^Activation scale must be a positive finite number, not 0$"):
        quantize_acts([1.0], fmt, 0)
    assert quantize_acts([-1.0, 0.4, 0.6, 1e9], fmt, 1.0).tolist() == [0, 0, 1, 255]


# -- mapping --------------------------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=150)
@given(formats(), seeds)
def test_map_unmap_round_trip(fmt, seed):
    rng = np.random.default_rng(seed)
    w = random_polarised(rng, fmt)
    m = map_weights(w, fmt)
    assert m.signs.shape == (fmt.sub_arrays, fmt.cols) and m.cells.shape == (fmt.rows, fmt.physical_cols)
    base = 2 ** fmt.cell_bits
    for r in range(fmt.rows):
        for c in range(fmt.cols):
            mag = abs(int(w[r, c]))
            for s in range(fmt.slices):  # least significant slice first, adjacent physical columns
                mag, level = divmod(mag, base)
                assert m.cells[r, c * fmt.slices + s] == level
            assert mag == 0
    for k in range(fmt.sub_arrays):
        for c in range(fmt.cols):
            frag = w[k * fmt.rows_per_sub:(k + 1) * fmt.rows_per_sub, c]
            assert m.signs[k, c] == (1 if (frag < 0).any() else 0)
    back = unmap(m, fmt)
    assert back.dtype == np.int64 and np.array_equal(back, w)
    again = map_weights(back, fmt)
    assert np.array_equal(again.signs, m.signs) and np.array_equal(again.cells, m.cells)


def test_unmap_any_mapping():
    fmt = CrossbarFormat(rows=2, cols=2, rows_per_sub=2, w_bits=2, cell_bits=1)
    m = Mapping(signs=[[1, 1]], cells=[[1, 1, 0, 0], [0, 1, 0, 0]])  # column 1 all zero, sign bit 1
    w = unmap(m, fmt)
    assert w.tolist() == [[-3, 0], [-2, 0]]
    assert map_weights(w, fmt).signs.tolist() == [[1, 0]]  # canonical sign of an all-zero fragment


def test_map_weights_wrong():
    fmt = CrossbarFormat(rows=16, cols=5, rows_per_sub=8, w_bits=8)
    w = np.zeros((16, 5), dtype=np.int64)
    w[9, 4], w[12, 4] = 3, -2
    with pytest.raises(ValueError, match=r"^Crossbar weights must have one sign in every sub-array column, not "
                                         r"3 \(row 9\) and -2 \(row 12\) in sub-array 1 \(rows 8 to 15\), column 4$"):
        map_weights(w, fmt)
    with pytest.raises(ValueError, match=r"^Crossbar weights must be integers from -255 to 255, not 256 "
                                         r"\(at index \(0, 1\)\)$"):
        map_weights([[0, 256, 0, 0, 0]] + [[0] * 5] * 15, fmt)
    with pytest.raises(ValueError, match=r"^Crossbar weights must be integers from -255 to 255, not -256 "
                                         r"\(at index \(2, 0\)\)$"):
        map_weights(np.where(np.arange(80).reshape(16, 5) == 10, -256, 0), fmt)
    with pytest.raises(TypeError, match=r"^Crossbar weights must be integers, not 0\.5 \(at index \(0, 0\)\)$"):
        map_weights(np.full((16, 5), 0.5), fmt)
    with pytest.raises(ValueError, match=r"^Crossbar weights must have shape \(16, 5\) \(rows, cols\), "
                                         r"not \(5, 16\)$"):
        map_weights(np.zeros((5, 16), int), fmt)


def test_check_mapping_wrong():
    fmt = CrossbarFormat(rows=16, cols=5, rows_per_sub=8, w_bits=4)
    good = map_weights(np.zeros((16, 5), int), fmt)
    with pytest.raises(TypeError, match=r"^Crossbar mapping must be a Mapping, not \(1, 2\)$"):
        check_mapping((1, 2), fmt)
    with pytest.raises(ValueError, match=r"^Crossbar sign bits must have shape \(2, 5\) \(sub_arrays, cols\), "
                                         r"not \(2, 4\)$"):
        unmap(good._replace(signs=np.zeros((2, 4), int)), fmt)
    with pytest.raises(ValueError, match=r"^Crossbar sign bits must be integers from 0 to 1, not 2 "
                                         r"\(at index \(0, 0\)\)$"):
        unmap(good._replace(signs=np.full((2, 5), 2)), fmt)
    with pytest.raises(ValueError, match=r"^Crossbar cells must be integers from 0 to 3, not 4 \(at index \(0, 1\)\)$"):
        cells = good.cells.copy()
        cells[0, 1] = 4
        golden_mvm(np.zeros(16, int), good._replace(cells=cells), fmt)
    with pytest.raises(ValueError, match=r"^Crossbar cells must have shape \(16, 10\) \(rows, physical_cols\), "
                                         r"not \(16, 5\)$"):
        IdealArray(good._replace(cells=np.zeros((16, 5), int)), fmt)


# -- golden model ---------------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=300)
@given(formats(lossless=True), seeds, kinds, st.booleans())
def test_golden_lossless_is_x_at_w(fmt, seed, kind, batched):
    rng = np.random.default_rng(seed)
    w = random_polarised(rng, fmt)
    x = random_inputs(rng, fmt, kind, n=3 if batched else None)
    y, steps = golden_mvm(x, map_weights(w, fmt), fmt)
    assert y.dtype == np.int64 and y.tolist() == ref_mvm(x, w)
    vectors = x.tolist() if batched else [x.tolist()]
    per_vector = [ref_steps(v, fmt.rows_per_sub) for v in vectors]
    assert isinstance(steps, int) and steps == sum(per_vector)  # the total of the whole call
    assert steps.per_vector.dtype == np.int64 and steps.per_vector.tolist() == per_vector
    assert np.array_equal(count_steps(x, fmt), per_vector if batched else per_vector[0])
    y_all, steps_all = golden_mvm(x, map_weights(w, fmt), fmt, zero_skip=False)
    assert np.array_equal(y_all, y)  # the ideal array reads 0 from an all-zero plane anyway
    assert steps_all == len(vectors) * fmt.max_steps and np.all(steps_all.per_vector == fmt.max_steps)
    if kind == "zero":
        assert steps == 0 and not y.any()
    if kind == "full":
        assert steps == len(vectors) * fmt.max_steps


@settings(deadline=None, max_examples=200)
@given(formats(lossless=False), seeds, kinds)
def test_golden_clipping_matches_the_loop(fmt, seed, kind):
    rng = np.random.default_rng(seed)
    w = random_polarised(rng, fmt, density=1.0)
    x = random_inputs(rng, fmt, kind, n=2)
    y, _ = golden_mvm(x, map_weights(w, fmt), fmt)
    ref = [ref_clipped(v, w.tolist(), fmt.rows_per_sub, fmt.act_bits, fmt.cell_bits, fmt.w_bits,
                       2 ** fmt.adc_bits - 1) for v in x.tolist()]
    assert y.tolist() == ref
    # clipping only lowers each sub-array's partial sum: with non-negative weights y <= x @ W
    clipped, _ = golden_mvm(x, map_weights(np.abs(w), fmt), fmt)
    assert (clipped <= np.array(ref_mvm(x, np.abs(w)))).all()


def test_golden_clipping_by_hand():
    # 4 rows in one sub-array, 2-bit cells, 4-bit magnitudes (2 slices), 2-bit inputs, 3-bit ADC (max 7);
    # a column sum can reach 4 * 3 = 12, so lossless would need 4 bits.
    fmt = CrossbarFormat(rows=4, cols=2, rows_per_sub=4, act_bits=2, w_bits=4, cell_bits=2, adc_bits=3)
    assert fmt.lossless_adc_bits == 4
    w = [[15, -1], [15, 0], [15, -2], [5, 0]]   # 15 = slices (3, 3), 5 = (1, 1); column 1 negative
    m = map_weights(w, fmt)
    # x = (3, 3, 3, 3): planes 0 and 1 drive all four rows.
    # column 0, each plane: slice 0 sum 3+3+3+1 = 10 -> 7, slice 1 the same -> 7;
    #   partial = (7 + 7 * 4) * (1 + 2) = 105, exact would be 3 * 50 = 150.
    # column 1: slice 0 sum 1 + 2 = 3, slice 1 sum 0 -> partial 3 * 3 = 9 -> y = -9 (no clipping).
    y, steps = golden_mvm([3, 3, 3, 3], m, fmt)
    assert y.tolist() == [105, -9] and steps == 2
    # x = (1, 1, 0, 0): plane 0 only, slice sums 6 and 6 fit -> exact 30; plane 1 skipped.
    y, steps = golden_mvm([1, 1, 0, 0], m, fmt)
    assert y.tolist() == [30, -1] and steps == 1
    # the lossless ADC gives x @ W
    assert golden_mvm([3, 3, 3, 3], m, fmt.replace(adc_bits=4))[0].tolist() == [150, -9]


def test_golden_signs_per_sub_array():
    fmt = CrossbarFormat(rows=4, cols=1, rows_per_sub=2, act_bits=2, w_bits=2, cell_bits=2)
    m = map_weights([[3], [1], [-2], [0]], fmt)
    assert m.signs.tolist() == [[0], [1]]
    # 3*2 + 1*1 - 2*3 = 1, steps: sub-array 0 OR = 3 (2 planes), sub-array 1 OR = 3 (2 planes)
    y, steps = golden_mvm([2, 1, 3, 1], m, fmt)
    assert y.tolist() == [1] and steps == 4


@settings(deadline=None, max_examples=40)
@given(st.one_of(formats(lossless=True), formats(lossless=False)), seeds)
def test_golden_with_an_array_object_is_the_batched_path(fmt, seed):
    rng = np.random.default_rng(seed)
    w = random_polarised(rng, fmt)
    m = map_weights(w, fmt)
    x = random_inputs(rng, fmt, "sparse", n=4)
    y, steps = golden_mvm(x, m, fmt)
    y2, steps2 = golden_mvm(x, m, fmt, array=IdealArray(m, fmt))
    assert np.array_equal(y, y2) and steps == steps2 and np.array_equal(steps.per_vector, steps2.per_vector)
    for v, yv, sv in zip(x, y, steps.per_vector):  # a batch is N independent runs
        one = golden_mvm(v, m, fmt)
        assert np.array_equal(one[0], yv) and one[1] == sv


class RecordingArray(IdealArray):
    """An ideal array that records every read (sub-array, word lines)."""

    def __init__(self, mapping, fmt):
        super().__init__(mapping, fmt)
        self.reads = []

    def read(self, sub, wl):
        for line in np.atleast_2d(wl):
            self.reads.append((sub, tuple(int(b) for b in line)))
        return super().read(sub, wl)


def test_golden_read_order():
    fmt = CrossbarFormat(rows=4, cols=1, rows_per_sub=2, act_bits=3, w_bits=1, cell_bits=1)
    m = map_weights([[1], [1], [1], [1]], fmt)
    array = RecordingArray(m, fmt)
    x = [[5, 0, 2, 3], [0, 0, 4, 0]]
    y, steps = golden_mvm(x, m, fmt, array=array)
    assert y.tolist() == [[10], [4]] and steps == 5 and steps.per_vector.tolist() == [4, 1]
    assert array.reads == [
        (0, (1, 0)), (0, (1, 0)),              # vector 0, sub-array 0: planes 0 and 2 (plane 1 skipped)
        (1, (0, 1)), (1, (1, 1)),              # vector 0, sub-array 1: planes 0 and 1 (plane 2 skipped)
        (1, (1, 0)),                           # vector 1: sub-array 0 skipped, sub-array 1 plane 2
    ]
    array.reads.clear()
    golden_mvm(x[1], m, fmt, array=array, zero_skip=False)
    assert array.reads == [(0, (0, 0))] * 3 + [(1, (0, 0)), (1, (0, 0)), (1, (1, 0))]


def test_active_planes():
    fmt = CrossbarFormat(rows=6, cols=1, rows_per_sub=3, act_bits=4, w_bits=1, cell_bits=1)
    act = active_planes([[8, 1, 0, 0, 0, 0], [15, 0, 0, 0, 6, 0]], fmt)
    assert act.astype(int).tolist() == [[[1, 0, 0, 1], [0, 0, 0, 0]], [[1, 1, 1, 1], [0, 1, 1, 0]]]


def test_golden_wrong():
    fmt = CrossbarFormat(rows=16, cols=2, rows_per_sub=8, act_bits=8, w_bits=2)
    m = map_weights(np.zeros((16, 2), int), fmt)
    with pytest.raises(ValueError, match=r"^Crossbar inputs must be integers from 0 to 255, not 256 \(at index 3\)$"):
        golden_mvm([0, 0, 0, 256] + [0] * 12, m, fmt)
    with pytest.raises(ValueError, match=r"^Crossbar inputs must be integers from 0 to 255, not -1 \(at index 0\)$"):
        golden_mvm([-1] + [0] * 15, m, fmt)
    with pytest.raises(ValueError, match=r"^Crossbar inputs must have shape \(16,\) or \(N, 16\), not \(15,\)$"):
        golden_mvm([0] * 15, m, fmt)
    with pytest.raises(ValueError, match=r"^Crossbar inputs must have shape \(16,\) or \(N, 16\), not \(1, 1, 16\)$"):
        golden_mvm([[[0] * 16]], m, fmt)
    with pytest.raises(TypeError, match=r"^Zero-skip must be a bool, not 1$"):
        golden_mvm([0] * 16, m, fmt, zero_skip=1)

    class Broken(IdealArray):
        def read(self, sub, wl):
            return super().read(sub, wl) + 32

    with pytest.raises(ValueError, match=r"^ADC codes must be integers from 0 to 31, not 32 \(at index \(0, 0\)\)$"):
        golden_mvm([1] * 16, m, fmt, array=Broken(m, fmt))


# -- array models ----------------------------------------------------------------------------------------------

def test_ideal_array_read():
    fmt = CrossbarFormat(rows=4, cols=1, rows_per_sub=2, w_bits=2, cell_bits=2, adc_bits=2)
    array = IdealArray(map_weights([[3], [2], [1], [0]], fmt), fmt)
    assert array.read(0, [1, 1]).tolist() == [3] and array.column_sums(0, [1, 1]).tolist() == [5]
    assert array.read(1, [[1, 0], [0, 1], [1, 1]]).tolist() == [[1], [0], [1]]
    with pytest.raises(ValueError, match=r"^Sub-array must be an integer from 0 to 1, not 2$"):
        array.read(2, [1, 1])
    with pytest.raises(ValueError, match=r"^Word lines must be integers from 0 to 1, not 2 \(at index 0\)$"):
        array.read(0, [2, 0])
    with pytest.raises(ValueError, match=r"^Word lines must have shape \(2,\) or \(M, 2\), not \(3,\)$"):
        array.read(0, [1, 0, 1])


@settings(deadline=None, max_examples=30)
@given(st.one_of(formats(lossless=True), formats(lossless=False)), seeds)
def test_non_ideal_with_zero_strength_is_ideal(fmt, seed):
    rng = np.random.default_rng(seed)
    m = map_weights(random_polarised(rng, fmt), fmt)
    x = random_inputs(rng, fmt, "random", n=3)
    ideal = golden_mvm(x, m, fmt)
    noisy = golden_mvm(x, m, fmt, array=NonIdealArray(m, fmt, seed=seed))
    assert np.array_equal(ideal[0], noisy[0]) and np.array_equal(ideal[1], noisy[1])


def test_non_ideal_is_seeded():
    fmt = CrossbarFormat(rows=32, cols=4, rows_per_sub=8, act_bits=4, w_bits=4, cell_bits=2)
    rng = np.random.default_rng(0)
    m = map_weights(random_polarised(rng, fmt, density=1.0), fmt)
    x = random_inputs(rng, fmt, "random", n=20)
    kw = dict(variation=0.1, stuck_at_0=0.02, stuck_at_1=0.02, read_noise=0.5)
    a = golden_mvm(x, m, fmt, array=NonIdealArray(m, fmt, seed=7, **kw))[0]
    b = golden_mvm(x, m, fmt, array=NonIdealArray(m, fmt, seed=7, **kw))[0]
    c = golden_mvm(x, m, fmt, array=NonIdealArray(m, fmt, seed=8, **kw))[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    exact = golden_mvm(x, m, fmt)[0]
    assert not np.array_equal(a, exact)
    # a batch is the same sequence of reads as the vectors one after another on one array
    array = NonIdealArray(m, fmt, seed=7, **kw)
    one_by_one = np.stack([golden_mvm(v, m, fmt, array=array)[0] for v in x])
    assert np.array_equal(one_by_one, a)
    # M reads at once draw the same noise as M single reads
    a1, a2 = NonIdealArray(m, fmt, seed=3, read_noise=2.0), NonIdealArray(m, fmt, seed=3, read_noise=2.0)
    wl = rng.integers(0, 2, (5, 8))
    assert np.array_equal(a1.read(1, wl), np.stack([a2.read(1, line) for line in wl]))


class InOrder:
    """Hides an array's ``stateless`` flag: golden_mvm then reads it in the RTL's order, active planes only."""

    def __init__(self, array):
        self.array = array

    def read(self, sub, wl):
        return self.array.read(sub, wl)


def test_stateless_array_batched_equals_in_order():
    fmt = CrossbarFormat(rows=32, cols=3, rows_per_sub=8, act_bits=4, w_bits=4, cell_bits=2, adc_bits=4)
    rng = np.random.default_rng(5)
    m = map_weights(random_polarised(rng, fmt, density=1.0), fmt)
    x = np.vstack([random_inputs(rng, fmt, kind, n=5) for kind in ("random", "sparse", "zero", "full")])
    kw = dict(variation=0.3, stuck_at_0=0.05, stuck_at_1=0.05, adc_step=1.7)
    assert NonIdealArray(m, fmt, **kw).stateless and not NonIdealArray(m, fmt, read_noise=0.1).stateless
    for zero_skip in (True, False):
        batched = golden_mvm(x, m, fmt, array=NonIdealArray(m, fmt, seed=4, **kw), zero_skip=zero_skip)
        in_order = golden_mvm(x, m, fmt, array=InOrder(NonIdealArray(m, fmt, seed=4, **kw)), zero_skip=zero_skip)
        assert np.array_equal(batched[0], in_order[0]) and batched[1] == in_order[1]
        assert np.array_equal(batched[1].per_vector, in_order[1].per_vector)
    assert not np.array_equal(batched[0], golden_mvm(x, m, fmt)[0])   # the devices do change the result


def test_non_ideal_devices():
    fmt = CrossbarFormat(rows=64, cols=16, rows_per_sub=8, act_bits=2, w_bits=2, cell_bits=2)
    rng = np.random.default_rng(1)
    w = random_polarised(rng, fmt, density=1.0)
    m = map_weights(w, fmt)
    # variation: multiplicative, mean 1, standard deviation `variation`; level-0 cells stay 0
    g = NonIdealArray(m, fmt, variation=0.2, seed=0).conductance
    on = m.cells > 0
    ratio = g[on] / m.cells[on]
    assert abs(ratio.mean() - 1) < 0.03 and abs(ratio.std() - 0.2) < 0.03 and not g[~on].any()
    # strengths share their draws: doubling the variation doubles every deviation
    g2 = NonIdealArray(m, fmt, variation=0.4, seed=0).conductance
    ratio2 = g2[on] / m.cells[on]
    assert np.allclose(ratio2[ratio2 > 0] - 1, 2 * (ratio[ratio2 > 0] - 1))
    assert (ratio2 >= 0).all() and ((ratio2 == 0) == (ratio <= 0.5)).all()  # clamped at 0 below 1 + 0.4 z = 0
    # stuck-at rates
    arr = NonIdealArray(m, fmt, stuck_at_0=0.1, stuck_at_1=0.05, seed=0)
    assert abs((arr.stuck == 1).mean() - 0.1) < 0.03 and abs((arr.stuck == 2).mean() - 0.05) < 0.03
    assert np.array_equal(arr.conductance, np.choose(arr.stuck, [m.cells, 0, 3]))
    # every cell stuck at 0: nothing flows; every cell stuck at 1: every |weight| reads as w_max = 3
    x = random_inputs(rng, fmt, "random", n=5)
    assert not golden_mvm(x, m, fmt, array=NonIdealArray(m, fmt, stuck_at_0=1.0))[0].any()
    all_on = golden_mvm(x, m, fmt, array=NonIdealArray(m, fmt, stuck_at_1=1.0))[0]
    signs = np.repeat(1 - 2 * m.signs, fmt.rows_per_sub, axis=0)
    assert all_on.tolist() == ref_mvm(x, signs * 3)


def test_non_ideal_adc_and_skipping():
    fmt = CrossbarFormat(rows=8, cols=1, rows_per_sub=8, act_bits=2, w_bits=2, cell_bits=2, adc_bits=3)
    m = map_weights(np.full((8, 1), 3), fmt)
    # full-range ADC: column sums 0..24 on codes 0..7, step 24/7; 8 rows at level 3 = 24 -> code 7
    arr = NonIdealArray(m, fmt, adc_step=fmt.column_max / fmt.adc_max)
    assert arr.read(0, [1] * 8).tolist() == [7] and arr.read(0, [1, 1] + [0] * 6).tolist() == [2]  # 6/3.43 = 1.75
    # zero-skipping also skips the read noise: a zero input gives exactly 0, without skipping it does not
    noisy = NonIdealArray(m, fmt, read_noise=3.0, seed=0)
    y, steps = golden_mvm([0] * 8, m, fmt, array=noisy)
    assert y.tolist() == [0] and steps == 0
    y, steps = golden_mvm(np.zeros((50, 8), int), m, fmt, array=noisy, zero_skip=False)
    assert steps == 100 and (steps.per_vector == 2).all() and y.any()


@pytest.mark.parametrize("kwargs, error, message", [
    ({"variation": -0.1}, ValueError, r"^Conductance variation must be a non-negative finite number, not -0\.1$"),
    ({"variation": "0.1"}, TypeError, r"^Conductance variation must be a real number, not '0\.1'$"),
    ({"stuck_at_0": 1.5}, ValueError, r"^Stuck-at-0 rate must be a number from 0 to 1, not 1\.5$"),
    ({"stuck_at_1": -0.5}, ValueError, r"^Stuck-at-1 rate must be a number from 0 to 1, not -0\.5$"),
    ({"stuck_at_0": 0.6, "stuck_at_1": 0.6}, ValueError,
     r"^Stuck-at rates must add up to at most 1, not 0\.6 \+ 0\.6$"),
    ({"read_noise": float("inf")}, ValueError, r"^Read noise must be a non-negative finite number, not inf$"),
    ({"adc_step": 0.0}, ValueError, r"^ADC step must be a positive finite number, not 0\.0$"),
    ({"seed": -1}, ValueError, r"^Seed must be a non-negative integer, not -1$"),
    ({"seed": None}, TypeError, r"^Seed must be an integer, not None$"),
])
def test_non_ideal_wrong(kwargs, error, message):
    fmt = CrossbarFormat(rows=8, cols=1)
    with pytest.raises(error, match=message):
        NonIdealArray(map_weights(np.zeros((8, 1), int), fmt), fmt, **kwargs)


# -- PyTorch: ADMM, polarity constraint, activation L1 --------------------------------------------------------

def test_polarized_linear_admm_by_hand():
    torch.manual_seed(0)
    layer = PolarizedLinear(4, 2, rows_per_sub=2)
    fmt = layer.crossbar_format(w_bits=4, cell_bits=2)
    assert (fmt.rows, fmt.cols, fmt.rows_per_sub) == (4, 2, 2)
    w = layer.dense_weight.detach().clone()
    layer.admm_start(rho=0.5)
    assert torch.equal(layer.admm_z, polarize(w.T, fmt).T) and not layer.admm_u.any()
    # penalty and its gradient: rho/2 ||W - Z + U||^2, d/dW = rho (W - Z + U)
    penalty = layer.admm_penalty()
    assert torch.isclose(penalty, 0.25 * (w - layer.admm_z).square().sum())
    penalty.backward()
    assert torch.allclose(layer.dense_weight.grad, 0.5 * (w - layer.admm_z))
    with torch.no_grad():
        layer.dense_weight.add_(torch.randn_like(w))
    w1, u0 = layer.dense_weight.detach().clone(), layer.admm_u.clone()
    layer.admm_update()
    z1 = polarize((w1 + u0).T, fmt).T
    assert torch.equal(layer.admm_z, z1) and torch.allclose(layer.admm_u, u0 + w1 - z1)
    # harden: the weight becomes its projection, the signs are fixed, ADMM ends
    layer.harden()
    assert layer.hardened and layer.admm_z is None and float(layer.admm_penalty()) == 0.0
    assert torch.equal(layer.weight, polarize(w1.T, fmt).T) and layer.polarity_error() == 0.0
    # the constraint clamps wrong-sign entries (no gradient there) and keeps the weight polarised
    with torch.no_grad():
        layer.dense_weight.copy_(torch.tensor([[1.0, -1.0, 2.0, 3.0], [-1.0, -2.0, 1.0, -1.0]]))
    signs = layer.parametrizations.weight[0].signs
    keep = torch.where(signs.repeat_interleave(2, dim=0).T == 1, layer.dense_weight <= 0, layer.dense_weight >= 0)
    assert torch.equal(layer.weight, torch.where(keep, layer.dense_weight, torch.zeros(())))
    assert is_polarized(layer.weight.detach().T, fmt)
    layer.dense_weight.grad = None
    layer(torch.ones(3, 4)).sum().backward()
    assert torch.equal(layer.dense_weight.grad == 0, ~keep)
    w_int, scale = layer.export(fmt)
    assert w_int.shape == (4, 2) and np.allclose(w_int * scale, layer.weight.detach().double().numpy().T,
                                                 atol=scale.max())


def test_polarized_linear_wrong():
    with pytest.raises(ValueError, match=r"^PolarizedLinear in_features must be a multiple of rows_per_sub = 8, "
                                         r"not 10$"):
        PolarizedLinear(10, 2)
    with pytest.raises(ValueError, match=r"^Polarity rows_per_sub must be a positive integer, not 0$"):
        PolarizedLinear(8, 2, rows_per_sub=0)
    layer = PolarizedLinear(8, 2, rows_per_sub=4)
    with pytest.raises(ValueError, match=r"^ADMM rho must be a positive finite number, not 0$"):
        layer.admm_start(0)
    with pytest.raises(ValueError, match=r"^PolarizedLinear ADMM must be started \(admm_start\) before admm_update, "
                                         r"not idle$"):
        layer.admm_update()
    with torch.no_grad():
        layer.dense_weight.copy_(torch.tensor([[1.0, -1.0] * 4, [1.0] * 8]))
    with pytest.raises(ValueError, match=r"^PolarizedLinear weight must be polarised \(harden\(\) it first\), "
                                         r"not 0\.5 away from it$"):
        layer.export(layer.crossbar_format())
    with pytest.raises(ValueError, match=r"^Crossbar format must match the layer \(rows=8, cols=2, rows_per_sub=4\), "
                                         r"not CrossbarFormat\(rows=8, cols=2, rows_per_sub=8, "):
        layer.export(CrossbarFormat(rows=8, cols=2))
    with pytest.raises(ValueError, match=r"^Model must contain a PolarizedLinear or PolarizedConv1d/2d layer, not Linear$"):
        admm_polarize(torch.nn.Linear(2, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))


def test_polarity_constraint_identity_until_fixed():
    c = PolarityConstraint(2)
    w = torch.tensor([[1.0, -3.0, 2.0, 1.0]])
    assert c(w) is w and not c.fixed
    c.fix(w)
    assert c.fixed and c(w).tolist() == [[0.0, -3.0, 2.0, 1.0]]


def test_activation_l1():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2), torch.nn.ReLU())
    x = torch.randn(5, 2)
    h = model[1](model[0](x))
    expected = h.mean() + model[3](model[2](h)).mean()
    with ActivationL1(model) as l1:
        model(x)
        assert torch.isclose(l1.penalty(), expected)
        assert float(l1.penalty()) == 0.0  # penalty() forgets what it returned
    model(x)
    assert all(not m._forward_hooks for m in model.modules())  # hooks removed on exit


# -- import cost, docs --------------------------------------------------------------------------------------

def test_steps_total_and_per_vector():
    import pickle
    s = peforge.sw.forms.Steps(np.array([3, 0, 5], dtype=np.int32))
    assert isinstance(s, int) and s == 8 and s.per_vector.dtype == np.int64 and s.per_vector.tolist() == [3, 0, 5]
    assert pickle.loads(pickle.dumps(s)).per_vector.tolist() == [3, 0, 5] and type(s + 1) is int
    with pytest.raises(ValueError, match=r"^Steps per vector must have shape \(N,\), not \(1, 2\)$"):
        peforge.sw.forms.Steps([[1, 2]])
    with pytest.raises(ValueError, match=r"^Steps per vector must be integers from 0 to "):
        peforge.sw.forms.Steps([-1])
    with pytest.raises(ValueError, match=r"^assignment destination is read-only$"):
        s.per_vector[0] = 1


def test_crossbar_mlp_wrong():
    with pytest.raises(ValueError, match=r"^Model must be PolarizedLinear layers and ReLUs, not Sequential"):
        CrossbarMLP(torch.nn.Sequential(torch.nn.Linear(8, 2)), torch.ones(1, 8))


def test_import_does_not_load_torch():
    code = ("import sys, numpy as np, peforge.sw.forms as f; assert 'torch' not in sys.modules, 'torch imported'; "
            "fmt = f.CrossbarFormat(rows=8, cols=2); m = f.map_weights(np.zeros((8, 2), int), fmt); "
            "f.golden_mvm([1] * 8, m, fmt); f.golden_mvm([1] * 8, m, fmt, array=f.NonIdealArray(m, fmt)); "
            "f.polarize(np.ones((8, 2)), fmt); f.unmap(m, fmt); "
            "assert 'torch' not in sys.modules, 'torch imported by a call'; "
            "from peforge.sw.forms_torch import PolarizedLinear; assert 'torch' in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_torch_half_is_its_own_module():
    """The numpy half neither imports nor re-exports the torch half (no import circle between the two files)."""
    assert peforge.sw.forms_torch.PolarizedLinear is PolarizedLinear and not hasattr(peforge.sw.forms, "PolarizedLinear")
    with pytest.raises(AttributeError, match=r"^module 'peforge\.sw\.forms' has no attribute 'Polarized'$"):
        peforge.sw.forms.Polarized


def test_docstring_examples():
    result = doctest.testmod(peforge.sw.forms)
    assert result.attempted > 20 and result.failed == 0
    result = doctest.testmod(peforge.sw.forms_torch)
    assert result.attempted > 0 and result.failed == 0


# -- digits MLP: float vs ADMM-polarised, zero-skipping with and without the activation L1 penalty ----------

@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.25, random_state=0, stratify=y)
    as_x = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return as_x(x_train), as_x(x_test), torch.tensor(y_train), torch.tensor(y_test)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead
    yield
    torch.set_num_threads(threads)


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(dim=1) == y).float().mean().item()


def crossbar_run(model, x_train, x_test):
    """Both layers on crossbars (8-bit inputs, 8-bit magnitudes, 2-bit cells, lossless ADC), integer golden.

    Returns (predicted labels, fraction of layer-2 steps skipped)."""
    mlp = CrossbarMLP(model, x_train, act_bits=8, w_bits=8, cell_bits=2)
    assert mlp.act_scales[0] == 1 / 255                                   # pixels in [0, 1]
    logits, inputs, steps = mlp.forward(x_test)
    assert steps[1] == count_steps(inputs[1], mlp.formats[1]).sum()
    return logits.argmax(axis=1), 1 - steps[1] / (len(x_test) * mlp.formats[1].max_steps)


def test_digits_mlp_polarised_and_zero_skipping(digits, one_thread):
    x_train, x_test, y_train, y_test = digits
    results = {}
    for act_l1 in (0.0, 0.3):
        torch.manual_seed(0)
        model = torch.nn.Sequential(PolarizedLinear(64, 64), torch.nn.ReLU(), PolarizedLinear(64, 10))
        train_classifier(model, x_train, y_train, epochs=30, lr=0.1, act_l1=act_l1)
        dense = accuracy(model, x_test, y_test)
        stats = admm_polarize(model, x_train, y_train, act_l1=act_l1)
        polarised = accuracy(model, x_test, y_test)
        assert all(layer.hardened and layer.polarity_error() == 0.0 for layer in (model[0], model[2]))
        assert stats["residual"][-1] < stats["residual"][0]
        labels, skipped = crossbar_run(model, x_train, x_test)
        integer = float((labels == y_test.numpy()).mean())
        results[act_l1] = dense, polarised, integer, skipped
        print(f"digits 64-64-10, act L1 {act_l1}: float {dense:.4f}, ADMM-polarised {polarised:.4f}, "
              f"crossbar golden {integer:.4f}, layer-2 steps skipped {skipped:.3f}")
        assert dense > 0.95
        assert polarised >= dense - 0.02
        assert integer >= polarised - 0.01
    assert results[0.3][3] > results[0.0][3] + 0.15
