"""Tests for sw.network: the integer network description (golden against independent integer arithmetic for
every scheme, save/load, every validation error, random networks end to end)."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from peforge.sw import circulant, forms, nm
from peforge.sw.circulant import CirculantFormat
from peforge.sw.forms import CrossbarFormat
from peforge.sw.network import (SCHEMES, CirculantWeights, CrossbarWeights, FixedWeights, InputSpec, Layer, MSQWeights,
                        Network, NMWeights, SP2Weights, load, random_network, save)
from peforge.sw.nm import NMFormat
from peforge.sw.sp2 import SP2Format

# -- independent reference arithmetic (Python ints, written from DESIGN.md, not from sw) ------------------------


def sp2_value(code, bits, m1):
    """DESIGN.md, sp2-mac: ``sign | e1 (m1 bits) | e2 (m2 bits)``, ``t(e) = 0 if e == 0 else 2^(E - e)``."""
    m2 = bits - 1 - m1
    big_e = 2 ** m1 - 1
    sign = code >> (bits - 1)
    e1 = (code >> m2) & (2 ** m1 - 1)
    e2 = code & (2 ** m2 - 1)

    def t(e):
        return 0 if e == 0 else 2 ** (big_e - e)

    return (-1) ** sign * (t(e1) + t(e2))


def nm_dense(values, indices, n, m, in_features):
    """DESIGN.md, nm-sparse: slot s of row r is in group s // n and adds val at column g*m + idx."""
    dense = [[0] * in_features for _ in values]
    for r, (vals, idxs) in enumerate(zip(values.tolist(), indices.tolist())):
        for s, (v, i) in enumerate(zip(vals, idxs)):
            dense[r][(s // n) * m + i] += v
    return np.array(dense, dtype=np.int64)


def dense_integer_weights(layer):
    """int64 [out, in] of a non-circulant layer, decoded here from its arrays."""
    w = layer.weights
    if isinstance(w, FixedWeights):
        return np.array(w.weights, dtype=np.int64)
    if isinstance(w, SP2Weights):
        return np.vectorize(lambda c: sp2_value(int(c), w.fmt.bits, w.fmt.m1))(w.codes).astype(np.int64)
    if isinstance(w, MSQWeights):
        sp2_rows = np.vectorize(lambda c: sp2_value(int(c), w.sp2_fmt.bits, w.sp2_fmt.m1))(w.codes)
        return np.where(w.is_sp2[:, None], sp2_rows, w.fixed).astype(np.int64)
    if isinstance(w, NMWeights):
        return nm_dense(w.values, w.indices, w.fmt.n, w.fmt.m, layer.in_features)
    if isinstance(w, CrossbarWeights):
        return np.array(w.weights, dtype=np.int64).T
    raise AssertionError(w)


def requant_reference(acc, layer):
    """Round half up of acc * M / 2^S + B / 2^S in Python ints, then the clip to the output range and ReLU."""
    lo = -(2 ** (layer.out_bits - 1)) if layer.out_signed else 0
    hi = 2 ** (layer.out_bits - 1) - 1 if layer.out_signed else 2 ** layer.out_bits - 1
    if layer.relu:
        lo = max(lo, 0)
    s = layer.shift
    out = [[min(max((int(a) * int(m) + int(b) + 2 ** (s - 1)) // 2 ** s, lo), hi)
            for a, m, b in zip(row, layer.multiplier, layer.offset)] for row in acc.tolist()]
    return np.array(out, dtype=np.int64).reshape(acc.shape)


def reference_acc(layer, x):
    if isinstance(layer.weights, CirculantWeights):
        w = layer.weights
        y = circulant.golden_matvec(x.reshape(len(x), -1, w.fmt.block), w.spectra, w.fmt)
        return y.reshape(len(x), -1)[:, :layer.out_features]
    return x.astype(np.int64) @ dense_integer_weights(layer).T


def reference_network(net, x):
    for layer in net.layers:
        x = requant_reference(reference_acc(layer, x), layer)
    return x


def inputs(rng, spec, n=16):
    return rng.integers(*spec.range, size=(n, spec.features), endpoint=True)


def requant_for(rng, out, shift=20):
    return rng.integers(1 << (shift - 8), 1 << (shift - 4), out), rng.integers(-(1 << shift), 1 << shift, out)


def one_layer(weights, *, in_bits=8, in_signed=False, out_bits=12, out_signed=True, relu=False, shift=24, seed=0):
    """A one-layer network whose requantisation maps 1.5 x the largest |acc| of each output on random inputs to
    the top of the output range (so some outputs clip), with random offsets of up to 16 output LSBs."""
    rng = np.random.default_rng(seed)
    zeros = np.zeros(weights.out_features, np.int64)
    probe = Layer(weights, zeros, shift, zeros, relu, in_bits, in_signed, out_bits, out_signed)
    acc = probe.accumulate(inputs(rng, InputSpec(weights.in_features, in_bits, in_signed), 40))
    top = probe.out_range[1]
    mult = np.rint(1.5 * top / np.maximum(np.abs(acc).max(axis=0), 1) * 2 ** shift).astype(np.int64)
    offset = rng.integers(-16 << shift, 16 << shift, weights.out_features)
    layer = Layer(weights, mult, shift, offset, relu, in_bits, in_signed, out_bits, out_signed)
    return Network(InputSpec(weights.in_features, in_bits, in_signed), (layer,))


# -- golden equals independent math, every scheme ----------------------------------------------------------------

def _fixed(rng):
    return FixedWeights(rng.integers(-128, 128, (9, 13)), 8)


def _sp2(rng):
    return SP2Weights(rng.integers(0, 32, (11, 7)), SP2Format(5, m1=3))


def _msq(rng):
    kinds = np.array([True, False, False, True, True, False, True])
    fmt = SP2Format(4)
    return MSQWeights(kinds, np.where(kinds[:, None], rng.integers(0, 16, (7, 10)), 0),
                      np.where(kinds[:, None], 0, rng.integers(-8, 8, (7, 10))), fmt, 4)


def _nm(rng):
    fmt = NMFormat(2, 4)
    dense = rng.integers(-128, 128, (5, 12)) * (rng.random((5, 12)) < 0.4)
    dense = dense.reshape(5, 3, 4)
    dense[..., 2:] = 0          # at most 2 non-zeros per group of 4
    return NMWeights(*nm.pack(dense.reshape(5, 12), fmt), fmt, 8)


def _crossbar(rng):
    fmt = CrossbarFormat(rows=12, cols=4, rows_per_sub=3, act_bits=8, w_bits=6, cell_bits=2)
    signs = np.repeat(rng.choice([-1, 1], (4, 9)), 3, axis=0)[:11]
    return CrossbarWeights(rng.integers(0, 64, (11, 9)) * signs, fmt)


@pytest.mark.parametrize("make", [_fixed, _sp2, _msq, _nm, _crossbar], ids=["fixed", "sp2", "msq", "nm", "crossbar"])
@pytest.mark.parametrize("relu", [False, True])
def test_golden_equals_integer_reference(make, relu):
    rng = np.random.default_rng(1)
    net = one_layer(make(rng), relu=relu, out_bits=10)
    x = inputs(rng, net.input, 40)
    logits, (acc,) = net.golden(x, return_acc=True)
    np.testing.assert_array_equal(acc, x @ dense_integer_weights(net.layers[0]).T)
    np.testing.assert_array_equal(logits, requant_reference(acc, net.layers[0]))
    assert logits.dtype == np.int64
    if relu:
        assert logits.min() == 0
    else:
        assert logits.min() < 0
    # the clip bites somewhere, and not everywhere
    assert 0 < np.mean(logits == 511) + np.mean(logits == -512) < 0.5


def test_sp2_reference_table_matches_design():
    # 4-bit: E = 3; 0b0_10_0 -> t(2) = 2; 0b1_11_1 -> -(1 + 4); the canonical and non-canonical zero
    assert [sp2_value(c, 4, 2) for c in (0b0_10_0, 0b0_00_1, 0b1_11_1, 0b1_00_0, 0b0_01_1)] == [2, 4, -5, 0, 8]


def test_msq_rows_use_their_own_pe():
    net = one_layer(_msq(np.random.default_rng(2)))
    w = net.layers[0].weights
    x = inputs(np.random.default_rng(3), net.input)
    acc = net.layers[0].accumulate(x)
    # an SP2 row with the fixed row's integers (or vice versa) would differ: the rows really pick their PE
    sp2_rows = np.vectorize(lambda c: sp2_value(int(c), 4, 2))(w.codes)
    assert not np.array_equal(acc[:, ~w.is_sp2], (x @ sp2_rows.T)[:, ~w.is_sp2])
    np.testing.assert_array_equal(acc[:, w.is_sp2], (x @ sp2_rows.T)[:, w.is_sp2])


def test_crossbar_tiles_and_lossy_adc_follow_golden_mvm():
    rng = np.random.default_rng(4)
    w = _crossbar(rng)
    x = inputs(rng, InputSpec(11, 8, False), 20)
    padded = np.zeros((20, 12), np.int64)
    padded[:, :11] = x
    lossy = CrossbarWeights(w.weights, w.fmt.replace(adc_bits=3))
    for weights in (w, lossy):
        tiles = np.zeros((12, 12), np.int64)
        tiles[:11, :9] = weights.weights
        expected = np.concatenate([forms.golden_mvm(padded, forms.map_weights(tiles[:, t:t + 4], weights.fmt),
                                                    weights.fmt)[0] for t in (0, 4, 8)], axis=1)[:, :9]
        np.testing.assert_array_equal(one_layer(weights).layers[0].accumulate(x), expected)
    assert not np.array_equal(one_layer(lossy).layers[0].accumulate(x), x @ w.weights)


def test_circulant_golden_matches_golden_matvec_and_the_float_product():
    rng = np.random.default_rng(5)
    fmt = CirculantFormat(block=8, act_bits=8, act_signed=False, w_bits=12, guard_bits=4, max_q=3)
    columns = rng.standard_normal((3, 3, 8))
    spectra, scale = circulant.export_spectra(columns, fmt)
    net = one_layer(CirculantWeights(spectra, fmt, 19), in_bits=8, in_signed=False, out_bits=16)
    x = inputs(rng, net.input, 50)
    logits, (acc,) = net.golden(x, return_acc=True)
    direct = circulant.golden_matvec(x.reshape(50, 3, 8), spectra, fmt).reshape(50, 24)
    np.testing.assert_array_equal(acc, direct[:, :19])
    np.testing.assert_array_equal(logits, requant_reference(acc, net.layers[0]))
    # float product with scipy's circulant of the stored spectra's first columns
    cols = np.fft.irfft(spectra[..., 0] + 1j * spectra[..., 1], n=8, axis=-1)
    dense = np.block([[scipy.linalg.circulant(cols[i, j]) for j in range(3)] for i in range(3)])
    reference = (x @ dense.T)[:, :19] * 2.0 ** (fmt.guard_bits - fmt.prod_shift)
    assert circulant.sqnr_db(reference, acc) > 45


# -- save and load -------------------------------------------------------------------------------------------

def _base_network():
    """Input 8 x 4-bit unsigned; sp2 8 -> 8 (relu, 8-bit unsigned); nm 2:4 8 -> 6; crossbar 6 -> 5 (16-bit)."""
    rng = np.random.default_rng(7)
    layers = []
    w0 = SP2Weights(rng.integers(0, 16, (8, 8)), SP2Format(4))
    layers.append(Layer(w0, *_mo(rng, 8, 16), True, 4, False, 8, False, out_scale=0.5))
    fmt = NMFormat(2, 4)
    w1 = NMWeights(rng.integers(-8, 8, (6, 4)), np.tile([0, 3, 1, 2], (6, 1)), fmt, 4)
    layers.append(Layer(w1, *_mo(rng, 6, 16), False, 8, False, 6, False))
    xfmt = CrossbarFormat(rows=6, cols=2, rows_per_sub=3, act_bits=6, w_bits=4, cell_bits=2)
    signs = np.repeat(rng.choice([-1, 1], (2, 5)), 3, axis=0)
    w2 = CrossbarWeights(rng.integers(0, 16, (6, 5)) * signs, xfmt)
    layers.append(Layer(w2, *_mo(rng, 5, 16), False, 6, False, 16, True))
    return Network(InputSpec(8, 4, False, scale=1 / 16), tuple(layers))


def _mo(rng, out, shift):
    m, b = requant_for(rng, out, shift)
    return m, shift, b


def test_save_load_round_trip(tmp_path):
    net = _base_network()
    assert net.save(tmp_path / "net") == tmp_path / "net"
    again = load(tmp_path / "net")
    assert again == net and again is not net
    assert again.manifest()[0] == net.manifest()[0]
    assert Network.load(tmp_path / "net" / "network.json") == net
    x = inputs(np.random.default_rng(0), net.input, 30)
    np.testing.assert_array_equal(again.golden(x), net.golden(x))
    np.testing.assert_array_equal(net.golden(x), reference_network(net, x))
    assert again.digest() == net.digest()
    data = json.loads((tmp_path / "net" / "network.json").read_text())
    assert data["format"] == "peforge-network" and data["version"] == 1
    assert [layer["scheme"] for layer in data["layers"]] == ["sp2", "nm", "crossbar"]
    assert data["layers"][0]["arrays"] == {"codes": "layers.0.codes", "multiplier": "layers.0.multiplier",
                                           "offset": "layers.0.offset"}
    save(again, tmp_path / "copy")
    assert (tmp_path / "copy" / "network.json").read_text() == (tmp_path / "net" / "network.json").read_text()


def test_equality_sees_every_change():
    net = _base_network()
    layer = net.layers[2]
    other = Layer(layer.weights, layer.multiplier + 1, layer.shift, layer.offset, layer.relu, layer.in_bits,
                  layer.in_signed, layer.out_bits, layer.out_signed)
    assert Network(net.input, net.layers[:2] + (other,)) != net
    assert Network(InputSpec(8, 4, False), net.layers) != net  # the input scale is part of the description
    assert net.digest() != Network(InputSpec(8, 4, False), net.layers).digest()


def test_layer_outputs_and_predict():
    net = _base_network()
    x = inputs(np.random.default_rng(1), net.input, 25)
    outs = net.layer_outputs(x)
    assert [o.shape for o in outs] == [(25, 8), (25, 6), (25, 5)]
    assert outs[0].min() >= 0 and outs[0].max() <= 255 and outs[1].max() <= 63
    np.testing.assert_array_equal(outs[-1], net.golden(x))
    np.testing.assert_array_equal(net.predict(x), np.argmax(outs[-1], axis=1))
    assert net.golden(np.zeros((0, 8), np.int64)).shape == (0, 5)


def test_import_does_not_load_torch():
    code = "import sw.network, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- validation errors: loading ---------------------------------------------------------------------------------

def _saved(tmp_path, edit_json=None, edit_arrays=None):
    d = tmp_path / "net"
    _base_network().save(d)
    if edit_json is not None:
        data = json.loads((d / "network.json").read_text())
        edit_json(data)
        (d / "network.json").write_text(json.dumps(data))
    if edit_arrays is not None:
        with np.load(d / "weights.npz") as npz:
            arrays = {k: npz[k] for k in npz.files}
        edit_arrays(arrays)
        np.savez(d / "weights.npz", **arrays)
    return d


def _set(path, value):
    def edit(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _drop(path):
    def edit(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return edit


J = r"^\S*net/network\.json: "
N = r"^\S*net/weights\.npz: "

JSON_ERRORS = [
    (_set(["layers", 1, "scheme"], "conv"),
     J + r"layers\[1\]\.scheme must be one of 'fixed', 'sp2', 'msq', 'nm', 'circulant', 'crossbar', not 'conv'$"),
    (_set(["version"], 2), J + r"version must be 1 \(the versions this peforge reads\), not 2$"),
    (_set(["format"], "onnx"), J + r"format must be 'peforge-network', not 'onnx'$"),
    (_drop(["layers", 0, "relu"]), J + r"layers\[0\]\.relu must be given, not missing$"),
    (_set(["layers", 0, "bias"], 0), J + r"layers\[0\] keys must be among 'scheme', .*'arrays', 'kind', 'name', 'inputs', not 'bias'$"),
    (_set(["extra"], 1), J + r"Manifest keys must be among 'format', 'version', 'input', 'layers', not 'extra'$"),
    (_set(["layers", 0, "arrays", "codes"], "nope"),
     J + r"layers\[0\]\.arrays\.codes must name an array of weights\.npz, not 'nope'$"),
    (_set(["layers", 0, "arrays", "offset"], "layers.0.multiplier"),
     J + r"layers\[0\]\.arrays\.offset must name an array no other field names, not 'layers\.0\.multiplier'$"),
    (_set(["layers", 0, "requant", "shift"], 0),
     J + r"layers\[0\]\.requant\.shift must be an integer from 1 to 62, not 0$"),
    (_set(["layers", 0, "relu"], 1), J + r"layers\[0\]\.relu must be a bool, not 1$"),
    (_set(["layers", 0, "output", "bits"], 40),
     J + r"layers\[0\]\.output\.bits must be an integer from 1 to 32, not 40$"),
    (_set(["layers", 0, "format", "bits"], 9),
     J + r"layers\[0\]\.format: SP2 bits must be an integer from 2 to 8, not 9$"),
    (_set(["layers", 1, "format", "m"], 6),
     J + r"layers\[1\]\.format: N:M m must be a power of two from 2 to 16, not 6$"),
    (_set(["layers", 1, "input", "signed"], True),
     J + r"layers\[1\]\.input must be 8-bit unsigned \(layers\[0\]\.output\), not 8-bit signed$"),
    (_set(["input", "features"], 9), J + r"layers\[0\]\.in_features must be 9 \(input\.features\), not 8$"),
    (_set(["layers", 2, "input", "signed"], True),
     J + r"layers\[2\]\.input must be the crossbar's 6-bit unsigned inputs \(act_bits, unsigned\), not 6-bit signed$"),
    (_set(["layers", 0, "out_features"], 7),
     N + r"'layers\.0\.codes' \(layers\[0\]\.arrays\.codes\) must have shape \(7, 8\) \(out_features, in_features\), "
         r"not \(8, 8\)$"),
    (_set(["layers", 1, "in_features"], 6), J + r"layers\[1\]: in_features must be a multiple of m = 4, not 6$"),
    (_set(["layers"], []), J + r"layers must be a non-empty list, not \[\]$"),
    (_set(["input"], 8), J + r"input must be a JSON object, not 8$"),
]


@pytest.mark.parametrize("edit, message", JSON_ERRORS)
def test_load_rejects_bad_manifest(tmp_path, edit, message):
    d = _saved(tmp_path, edit_json=edit)
    with pytest.raises((ValueError, TypeError), match=message) as info:
        load(d)
    assert "\n" not in str(info.value)


def _put(key, index, value):
    def edit(arrays):
        arrays[key][index] = value
    return edit


ARRAY_ERRORS = [
    (_put("layers.0.codes", (0, 3), 16), N + r"layers\[0\]: SP2 codes must be integers from 0 to 15, not 16 "
                                           r"\(at index \(0, 3\)\)$"),
    (_put("layers.1.indices", (2, 1), 4), N + r"layers\[1\]: N:M indices must be integers from 0 to 3, not 4 "
                                            r"\(at index \(2, 1\)\)$"),
    (_put("layers.1.values", (0, 0), 8), N + r"layers\[1\]: N:M values must be integers from -8 to 7, not 8 "
                                           r"\(at index \(0, 0\)\)$"),
    (_put("layers.0.multiplier", 2, -1), N + r"layers\[0\]: Requantisation multipliers must be integers from 0 to "
                                           r"2147483647, not -1 \(at index 2\)$"),
    (lambda a: a.update({"extra": np.zeros(3)}),
     N[:-2] + r" must hold only the arrays network\.json names, not also 'extra'$"),
    (lambda a: a.update({"layers.0.codes": a["layers.0.codes"] + 0.5}),
     N + r"layers\[0\]: SP2 codes must be integers, not \d+\.5 \(at index \(0, 0\)\)$"),
]


def _unpolarise(arrays):
    w = arrays["layers.2.weights"]
    w[0, 1], w[1, 1] = 3, -2          # rows 0 and 1 share sub-array 0 of column 1


ARRAY_ERRORS.append((_unpolarise, N + r"layers\[2\]: Crossbar weights must have one sign in every sub-array column, "
                                      r"not 3 \(row 0\) and -2 \(row 1\) in sub-array 0 \(rows 0 to 2\), column 1$"))


@pytest.mark.parametrize("edit, message", ARRAY_ERRORS)
def test_load_rejects_bad_arrays(tmp_path, edit, message):
    d = _saved(tmp_path, edit_arrays=edit)
    with pytest.raises((ValueError, TypeError), match=message):
        load(d)


def test_load_rejects_missing_and_broken_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^Network directory must hold network\.json and weights\.npz, "
                                                r"not '.*nowhere' \(no network\.json\)$"):
        load(tmp_path / "nowhere")
    d = _saved(tmp_path)
    (d / "network.json").write_text('{"format": ')
    with pytest.raises(ValueError, match=J[:-2] + r" must be JSON, not text with an error at Expecting value: "
                                             r"line 1 column 12 \(char 11\)$"):
        load(d)
    d = _saved(tmp_path)
    (d / "weights.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=N[:-2] + r" must be a numpy \.npz archive without pickles, not unreadable"):
        load(d)
    (d / "weights.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"\(no weights\.npz\)$"):
        load(d)


# -- validation errors: construction and golden inputs ------------------------------------------------------------

def test_construction_errors():
    net = _base_network()
    l0, l1, l2 = net.layers
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"^layers\[1\]\.in_features must be 8 \(layers\[0\]\.out_features\), not 6$"):
        Network(net.input, (l0, l2))
    with pytest.raises(ValueError, match=r"^layers must be a non-empty list, not \[\]$"):
        Network(net.input, ())
    with pytest.raises(TypeError, match=r"^Network layers\[1\] must be a Layer, not 3$"):
        Network(net.input, (l0, 3))
    with pytest.raises(ValueError, match=r"^Input bits must be an integer from 1 to 32, not 0$"):
        InputSpec(8, 0, False)
    with pytest.raises(TypeError, match=r"^Layer weights must be one of FixedWeights, SP2Weights, MSQWeights, "
                                        r"NMWeights, CirculantWeights, CrossbarWeights, not 3$"):
        Layer(3, [1], 1, [0], False, 8, False, 8, False)
    with pytest.raises(ValueError, match=r"^Requantisation offsets must have shape \(8,\) \(out_features\), "
                                         r"not \(7,\)$"):
        Layer(l0.weights, l0.multiplier, 16, l0.offset[:7], True, 4, False, 8, False)
    with pytest.raises(ValueError, match=r"^Requantisation must fit int64 \(at most 2\^63 - 1\), not acc bound "
                                         r"281466386776064 \* multiplier 2147483647 \+ offset 0 \+ 2\^0 = 2\^79\.0$"):
        Layer(FixedWeights([[32767] * 4], 16), [2 ** 31 - 1], 1, [0], False, 32, True, 8, False)
    with pytest.raises(ValueError, match=r"^MSQ SP2 codes must be 0 on fixed-point rows, not 3 \(at index \(1, 0\)\)$"):
        MSQWeights(np.array([True, False]), [[1, 2], [3, 0]], [[0, 0], [1, 1]], SP2Format(4), 4)
    with pytest.raises(ValueError, match=r"^MSQ fixed-point weights must be 0 on SP2 rows, "
                                         r"not 1 \(at index \(0, 1\)\)$"):
        MSQWeights(np.array([True, False]), [[1, 2], [0, 0]], [[0, 1], [1, 1]], SP2Format(4), 4)
    with pytest.raises(ValueError, match=r"^Circulant out_features \(p = 1 blocks of k = 4\) must be an integer from 1 "
                                         r"to 4, not 5$"):
        CirculantWeights(np.zeros((1, 1, 3, 2), np.int64), CirculantFormat(block=4), 5)
    with pytest.raises(ValueError, match=r"^Layer input must be the circulant format's 8-bit signed activations "
                                         r"\(act_bits, act_signed\), not 8-bit unsigned$"):
        Layer(CirculantWeights(np.zeros((1, 1, 3, 2), np.int64), CirculantFormat(block=4), 4), [1] * 4, 1, [0] * 4,
              False, 8, False, 8, False)
    with pytest.raises(ValueError, match=r"^Crossbar in_features must be at most the crossbar's 6 rows, not 7$"):
        CrossbarWeights(np.ones((7, 2), np.int64), l2.weights.fmt)
    with pytest.raises(ValueError, match=r"^N:M indices must have the shape of the values, \(2, 2\), not \(2, 4\)$"):
        NMWeights([[1, 2], [3, 4]], np.zeros((2, 4), np.int64), NMFormat(2, 4), 8)
    with pytest.raises(ValueError, match=r"^Fixed-point weights must be integers from -8 to 7, not 8 "
                                         r"\(at index \(0, 0\)\)$"):
        FixedWeights([[8]], 4)
    assert rng is not None


def test_golden_input_errors():
    net = _base_network()
    with pytest.raises(ValueError, match=r"^Network input must be integers from 0 to 15, "
                                         r"not 16 \(at index \(0, 3\)\)$"):
        net.golden([[0, 0, 0, 16, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"^Network input must have shape \(N, 8\), not \(2, 7\)$"):
        net.golden(np.zeros((2, 7), np.int64))
    with pytest.raises(TypeError, match=r"^Network input must be integers, not 0\.5 \(at index \(0, 0\)\)$"):
        net.golden(np.full((1, 8), 0.5))
    with pytest.raises(ValueError, match=r"^Layer input must have shape \(N, 8\), not \(3,\)$"):
        net.layers[1].accumulate([1, 2, 3])


# -- random networks end to end -------------------------------------------------------------------------------

@settings(deadline=None, max_examples=40)
@given(st.integers(0, 2 ** 32 - 1))
def test_random_networks_match_independent_arithmetic(seed):
    rng = np.random.default_rng(seed)
    net = random_network(rng)
    assert 1 <= len(net.layers) <= 4
    x = inputs(rng, net.input, 12)
    logits, accs = net.golden(x, return_acc=True)
    np.testing.assert_array_equal(logits, reference_network(net, x))
    for layer, acc in zip(net.layers, accs):
        assert np.abs(acc).max(initial=0) <= layer.acc_bound


def test_random_networks_cover_every_scheme_depth_and_odd_sizes(tmp_path):
    seen, depths, odd = set(), set(), 0
    for seed in range(40):
        net = random_network(np.random.default_rng(seed))
        seen |= {layer.scheme for layer in net.layers}
        depths.add(len(net.layers))
        odd += sum(layer.out_features % 2 for layer in net.layers)
        if seed < 8:
            net.save(tmp_path / str(seed))
            assert load(tmp_path / str(seed)) == net
    assert seen == set(SCHEMES) and depths == {1, 2, 3, 4} and odd > 10


def test_random_network_options():
    net = random_network(np.random.default_rng(3), depth=4, schemes=["circulant", "fixed"])
    assert len(net.layers) == 4 and {layer.scheme for layer in net.layers} <= {"circulant", "fixed"}
    with pytest.raises(ValueError, match=r"^Depth must be an integer from 1 to 4, not 5$"):
        random_network(np.random.default_rng(0), depth=5)
    with pytest.raises(ValueError, match=re.escape("Schemes must be one of 'fixed', 'sp2', 'msq', 'nm', "
                                                   "'circulant', 'crossbar', not 'conv'")):
        random_network(np.random.default_rng(0), schemes=["conv"])


def test_requantisation_rounds_half_up_and_clips():
    # identity weights, multiplier 1, shift 1: z = floor(acc / 2 + 1/2), ties up (-1.5 -> -1, 1.5 -> 2)
    w = FixedWeights([[1], [-1]], 2)
    x = np.array([[-8], [-3], [-1], [0], [1], [3], [7]])
    for relu, expected in ((False, [[-4, 3], [-1, 2], [0, 1], [0, 0], [1, 0], [2, -1], [3, -3]]),
                           (True, [[0, 3], [0, 2], [0, 1], [0, 0], [1, 0], [2, 0], [3, 0]])):
        layer = Layer(w, [1, 1], 1, [0, 0], relu, 4, True, 3, True)
        np.testing.assert_array_equal(Network(InputSpec(1, 4, True), (layer,)).golden(x), expected)
    # the offset is the bias at 2^-shift output LSBs: +1 at shift 1 is half an LSB
    layer = Layer(w, [1, 1], 1, [1, -1], False, 4, True, 8, True)
    np.testing.assert_array_equal(layer.forward([[3], [-3]]), [[2, -2], [-1, 1]])


# -- from PyTorch (sw.from_torch; torch imported by these tests only) ------------------------------------------

def _torch_model():
    torch = pytest.importorskip("torch")
    from peforge.sw.circulant_torch import BlockCirculantLinear
    from peforge.sw.forms_torch import PolarizedLinear
    from peforge.sw.layers import FixedLinear, QuantLinear, RowFakeQuant, SP2Linear
    from peforge.sw.msq import quantize_mixed
    from peforge.sw.nm_torch import NMSparseLinear

    class MixedQuantizer(RowFakeQuant):   # Mix and Match rows, as sw.models trains them
        @staticmethod
        def _quantize(w, fmt):
            mixed = quantize_mixed(w, 0.5, sp2_fmt=fmt, w_bits=4)
            return mixed, mixed.scale

        @staticmethod
        def _dequantize(mixed, scale, fmt):
            return mixed.dequantize()

    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), FixedLinear(16, 13, w_bits=8), nn.ReLU(), SP2Linear(13, 12, fmt=SP2Format(5)), nn.ReLU(),
        QuantLinear(12, 12, quantizer=MixedQuantizer(SP2Format(4))), nn.ReLU(),
        NMSparseLinear(12, 8, fmt=NMFormat(2, 4)), nn.ReLU(), BlockCirculantLinear(8, 8, 4), nn.ReLU(),
        PolarizedLinear(8, 6, rows_per_sub=4), nn.ReLU(), nn.Dropout(0.1), nn.Linear(6, 4))
    model[11].harden()
    return torch, model


def test_from_torch_every_scheme(tmp_path):
    torch, model = _torch_model()
    from peforge.sw.from_torch import from_torch

    x = torch.randn(300, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    net = from_torch(model, x, crossbar={"cols": 4})
    assert [layer.scheme for layer in net.layers] == ["fixed", "sp2", "msq", "nm", "circulant", "crossbar", "fixed"]
    assert net.input == InputSpec(16, 8, True, net.input.scale) and net.layers[-1].out_bits == 16
    assert [(layer.in_signed, layer.relu) for layer in net.layers[1:]] == [(False, True)] * 5 + [(False, False)]
    assert net.layers[5].weights.fmt.cols == 4
    xi = net.quantize_input(x.numpy())
    logits = net.golden(xi)
    np.testing.assert_array_equal(logits, reference_network(net, xi))     # exact: independent arithmetic
    assert model.training                                                  # from_torch restores the mode
    with torch.no_grad():
        ref = model.eval()(x).double().numpy()
    real = logits * net.layers[-1].out_scale
    assert np.linalg.norm(real - ref) / np.linalg.norm(ref) < 0.02
    assert np.mean(real.argmax(1) == ref.argmax(1)) >= 0.95
    net.save(tmp_path / "net")
    assert load(tmp_path / "net") == net


def test_from_torch_signed_hidden_layers_and_plain_linear():
    torch = pytest.importorskip("torch")
    from peforge.sw.from_torch import from_torch
    from peforge.sw.layers import FixedLinear

    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(7, 9), FixedLinear(9, 3, w_bits=6, bias=False))
    x = torch.rand(100, 7) * 16
    net = from_torch(model, x, input_bits=5, input_scale=1.0, act_bits=10, logit_bits=24)
    assert net.input == InputSpec(7, 5, False, 1.0)
    assert (net.layers[0].out_bits, net.layers[0].out_signed, net.layers[0].relu) == (10, True, False)
    assert not net.layers[1].offset.any()                                   # no bias
    xi = net.quantize_input(x.numpy())
    np.testing.assert_array_equal(net.golden(xi), reference_network(net, xi))
    with torch.no_grad():
        ref = model(torch.tensor(xi, dtype=torch.float32)).double().numpy()
    real = net.golden(xi) * net.layers[-1].out_scale
    assert np.linalg.norm(real - ref) / np.linalg.norm(ref) < 0.03       # plain Linear: post-training 8 bits


def test_from_torch_errors():
    torch = pytest.importorskip("torch")
    from peforge.sw.forms_torch import PolarizedLinear
    from peforge.sw.from_torch import from_torch

    nn, x = torch.nn, torch.randn(10, 8)
    with pytest.raises(TypeError, match=r"^Model must be a torch\.nn\.Sequential, not Linear\("):
        from_torch(nn.Linear(8, 2), x)
    # (the lists of what is allowed grew with the convolution and pooling modules)
    with pytest.raises(TypeError, match=r"^Model layer 1 must be a peforge linear, convolution or recurrent layer, "
                                        r"nn\.Linear, nn\.Conv1d/2d, nn\.LSTM, nn\.GRU, nn\.BatchNorm1d/2d, nn\.MaxPool1d/2d, nn\.AvgPool1d/2d, "
                                        r"nn\.AdaptiveAvgPool1d/2d\(1\), nn\.ReLU, nn\.Flatten, nn\.Identity or "
                                        r"nn\.Dropout, not Tanh\(\)$"):
        from_torch(nn.Sequential(nn.Linear(8, 2), nn.Tanh()), x)
    with pytest.raises(ValueError, match=r"^Model layer 0 must follow a linear, convolution or average pooling layer, "
                                         r"not ReLU\(\)$"):
        from_torch(nn.Sequential(nn.ReLU(), nn.Linear(8, 2)), x)
    with pytest.raises(ValueError, match=r"^Model must have a linear or convolution layer, not none$"):
        from_torch(nn.Sequential(nn.Flatten()), x)
    with pytest.raises(ValueError, match=r"^Model layer 1 \(PolarizedLinear\): Layer input must be the crossbar's "
                                         r"8-bit unsigned inputs \(act_bits, unsigned\), not 8-bit signed$"):
        crossbar = PolarizedLinear(8, 2, rows_per_sub=4)
        crossbar.harden()
        from_torch(nn.Sequential(nn.Linear(8, 8), crossbar), x)
    with pytest.raises(ValueError, match=r"^Model layer 0 \(PolarizedLinear\): PolarizedLinear weight must be "
                                         r"polarised \(harden\(\) it first\), not [\d.]+ away from it$"):
        from_torch(nn.Sequential(PolarizedLinear(8, 2, rows_per_sub=4)), x.abs())


# -- layer kinds, the graph, strict formats (issue 29) ---------------------------------------------------------

STRICT_FORMAT_ERRORS = [
    (_drop(["layers", 0, "format", "m1"]), J + r"layers\[0\]\.format: format\.m1 must be given, not missing$"),
    (_set(["layers", 0, "format", "m1"], None),
     J + r"layers\[0\]\.format: format\.m1 must be given \(not null\), not None$"),
    (_drop(["layers", 2, "format", "adc_bits"]),
     J + r"layers\[2\]\.format: format\.adc_bits must be given, not missing$"),
    (_set(["layers", 1, "kind"], "conv9d"), J + r"layers\[1\]\.kind must be one of 'dense', 'avgpool', 'conv1d', 'conv2d', 'flatten', "
         r"'globalavgpool', 'gru', 'lstm', 'maxpool', not 'conv9d'$"),
    (_set(["layers", 1, "inputs"], ["nowhere"]),
     J + r"layers\[1\]\.inputs must name the input or earlier layers' tensors \('input', 'layer0'\), not 'nowhere'$"),
    (_set(["layers", 1, "inputs"], ["a", "b"]),
     J + r"layers\[1\] inputs must be 1 tensor name \(strings\) or None, not \['a', 'b'\]$"),
    (_set(["layers", 1, "name"], "layer0"), J + r"layers\[1\]\.name must be unique among the tensors, not 'layer0'$"),
    (_set(["input", "shape"], [2, 3]),
     J + r"input: Input shape must be a tuple of 1 to 3 positive integers whose product is features = 8, "
         r"not \(2, 3\)$"),
]


@pytest.mark.parametrize("edit, message", STRICT_FORMAT_ERRORS)
def test_load_requires_every_format_field_and_a_valid_graph(tmp_path, edit, message):
    with pytest.raises((ValueError, TypeError), match=message):
        load(_saved(tmp_path, edit))


def _circulant_manifest_without(tmp_path, field):
    rng = np.random.default_rng(3)
    w = CirculantWeights.random(rng, 8, 8, 8, False, 4)
    net = Network(InputSpec(8, 8, False), (one_layer(w, in_bits=8).layers[0],))
    d = net.save(tmp_path / field)
    data = json.loads((d / "network.json").read_text())
    del data["layers"][0]["format"][field]
    (d / "network.json").write_text(json.dumps(data))
    return d


@pytest.mark.parametrize("field", ["tw_bits", "max_q", "guard_bits", "ifft_scale"])
def test_a_circulant_format_without_a_field_is_refused(tmp_path, field):
    """Before: a circulant format without tw_bits loaded with 16, without max_q with 64 (defaults that change
    the arithmetic)."""
    with pytest.raises(ValueError, match=rf"^\S*network\.json: layers\[0\]\.format: format\.{field} must be "
                                         r"given, not missing$"):
        load(_circulant_manifest_without(tmp_path, field))


def test_msq_sp2_format_is_strict(tmp_path):
    rng = np.random.default_rng(4)
    w = MSQWeights.random(rng, 6, 4, 8, False, 1)
    net = Network(InputSpec(6, 8, False), (one_layer(w).layers[0],))
    d = net.save(tmp_path / "msq")
    data = json.loads((d / "network.json").read_text())
    del data["layers"][0]["format"]["sp2"]["m1"]
    (d / "network.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"^\S*network\.json: layers\[0\]\.format: format\.sp2\.m1 must be given, "
                                         r"not missing$"):
        load(d)


def test_a_version_1_chain_keeps_its_manifest_and_digest(tmp_path):
    """A chain of dense layers writes exactly the version-1 fields (no kind, name, inputs or input shape), so
    every network saved before layer kinds loads and keeps its digest."""
    net = _base_network()
    data, _ = net.manifest()
    assert set(data["input"]) == {"features", "bits", "signed", "scale"}
    for entry in data["layers"]:
        assert set(entry) == {"scheme", "in_features", "out_features", "input", "format", "requant", "relu",
                              "output", "arrays"}
    again = load(net.save(tmp_path / "n"))
    assert again.digest() == net.digest() and again.is_chain and [layer.kind for layer in again.layers] == ["dense"] * 3
    assert net.input.shape == (8,)


def test_kinds_registry_and_shapes():
    from peforge.sw.network import KINDS, LayerKind

    assert KINDS["dense"] is Layer and issubclass(Layer, LayerKind)
    layer = _base_network().layers[1]
    assert (layer.in_shape, layer.out_shape) == ((8,), (6,))


def test_a_graph_that_is_not_a_chain_runs_by_names(tmp_path):
    """Layer 2 takes the network input by name, not layer 1's output: golden follows the names, and the
    manifest round trip keeps them."""
    rng = np.random.default_rng(11)
    w0 = FixedWeights(rng.integers(-8, 8, (5, 8)), 4)
    w1 = FixedWeights(rng.integers(-8, 8, (3, 5)), 4)
    w2 = FixedWeights(rng.integers(-8, 8, (3, 8)), 4)
    l0 = Layer(w0, *_mo(rng, 5, 12), True, 4, False, 8, False, name="hidden")
    l1 = Layer(w1, *_mo(rng, 3, 12), False, 8, False, 16, True, inputs=("hidden",))
    l2 = Layer(w2, *_mo(rng, 3, 12), False, 4, False, 16, True, name="skip", inputs=("input",))
    net = Network(InputSpec(8, 4, False), (l0, l1, l2))
    assert not net.is_chain and net.sources == ((-1,), (0,), (-1,))
    x = rng.integers(0, 16, (20, 8))
    np.testing.assert_array_equal(net.golden(x), requant_reference(reference_acc(l2, x), l2))
    again = load(net.save(tmp_path / "g"))
    assert again == net and again.sources == net.sources and again.layers[2].name == "skip"
    with pytest.raises(ValueError, match=r"^layers\[2\]\.in_features must be 8 \(input\.features\), not 5$"):
        Network(InputSpec(8, 4, False), (l0, l1, Layer(w1, *_mo(rng, 3, 12), False, 4, False, 16, True,
                                                         inputs=("input",))))


def test_a_dense_layer_takes_a_vector_only():
    """A shaped input ([C, H, W]) reaches a dense layer only through a layer that flattens it."""
    rng = np.random.default_rng(12)
    w = FixedWeights(rng.integers(-8, 8, (3, 12)), 4)
    assert InputSpec(12, 4, False, shape=(3, 2, 2)).shape == (3, 2, 2)
    with pytest.raises(ValueError, match=r"^layers\[0\] input shape must be \(3, 2, 2\) \(input output\), not \(12,\)$"):
        Network(InputSpec(12, 4, False, shape=(3, 2, 2)), (Layer(w, *_mo(rng, 3, 12), False, 4, False, 16, True),))


def test_weights_know_their_dense_matrix_storage_and_random_draw():
    """Callers no longer recompute these per scheme: checked against the independent decoders above."""
    rng = np.random.default_rng(13)
    for scheme, cls in SCHEMES.items():
        unit = cls.random_unit(rng)
        w = cls.random(rng, 4 * unit, 5, 8, scheme != "crossbar" and bool(rng.random() < 0.5), unit)
        assert type(w) is cls and w.in_features == 4 * unit and w.out_features == 5 and w.storage_bits() > 0
        if scheme == "circulant":
            with pytest.raises(ValueError, match=r"^circulant weights must be a dense integer matrix"):
                w.dense()
            continue
        layer = Layer(w, np.zeros(5, np.int64), 1, np.zeros(5, np.int64), False, 8, False, 16, True)
        np.testing.assert_array_equal(w.dense(), dense_integer_weights(layer))
