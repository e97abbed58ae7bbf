"""Recurrent kinds (sw/recurrent.py): the exact integer golden against an independent integer re-implementation
written here from docs/rnn.md (loops over t, numpy ints), against torch's LSTMCell / GRUCell in float64 on the
dequantised values (within an asserted bound), the activation tables against float, the manifest round trip and
the one-line errors."""

import doctest
import json
import re
import zlib

import numpy as np
import pytest
import torch

from peforge.sw import circulant, recurrent
from peforge.sw.network import SCHEMES, InputSpec, Layer, Network, load, random_rnn
from peforge.sw.recurrent import GRU, LSTM, ActivationTables, CellFormat, activation_tables, random_recurrent

RNN_SCHEMES = [s for s in SCHEMES if s != "crossbar"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- an independent integer model, from the docs ----------------------------------------------------------------

def _rshift_round(v, s):
    """(v + 2^(s-1)) >> s, or v for s = 0: written out in Python ints."""
    return v if s == 0 else (v + (1 << (s - 1))) >> s


def _requant(t, shift, rounding):
    if rounding == "floor":
        return t >> shift
    if rounding == "half_even":
        q, r = divmod(t, 1 << shift)
        half = 1 << (shift - 1)
        return q + (1 if r > half or (r == half and q % 2) else 0)
    return (t + (1 << (shift - 1))) >> shift


def _matrix_product(weights, v):
    """Integer accumulators [rows] of one vector: the dense integer matrix for every scheme but circulant (whose
    PE rounds inside its FFTs: its golden_matvec, tested in test_sw_circulant.py, is the reference)."""
    if weights.scheme == "circulant":
        y = circulant.golden_matvec(np.asarray(v, np.int64).reshape(1, -1, weights.fmt.block), weights.spectra,
                                    weights.fmt)
        return [int(a) for a in y.reshape(-1)[:weights.out_features]]
    dense = weights.dense()
    return [sum(int(dense[r, c]) * int(v[c]) for c in range(len(v))) for r in range(dense.shape[0])]


def reference(layer, x):
    """Hidden states [N, T, H] of one layer, Python ints throughout."""
    n_steps, hid = layer.seq_len, layer.hidden
    p, s, rnd = layer.tables.frac, layer.shift, layer.rounding
    t_lo, t_hi = -(1 << (layer.tables.bits - 1)), (1 << (layer.tables.bits - 1)) - 1
    h_lo, h_hi = -(1 << (layer.out_bits - 1)), (1 << (layer.out_bits - 1)) - 1
    q = layer.out_frac
    sig = [int(v) for v in layer.tables.sigmoid]
    th = [int(v) for v in layer.tables.tanh]
    mx, mh = [int(v) for v in layer.multiplier_x], [int(v) for v in layer.multiplier_h]
    bx, bh = [int(v) for v in layer.offset_x], [int(v) for v in layer.offset_h]

    def clip(v, lo, hi):
        return min(max(v, lo), hi)

    out = []
    for sample in np.asarray(x).reshape(len(x), n_steps, -1):
        h, c, states = [0] * hid, [0] * hid, []
        for t in range(n_steps):
            ax = _matrix_product(layer.w, sample[t])
            ah = _matrix_product(layer.u, h)
            if layer.kind == "lstm":
                z = [clip(_requant(ax[r] * mx[r] + ah[r] * mh[r] + bx[r] + bh[r], s, rnd), t_lo, t_hi)
                     for r in range(4 * hid)]
                cell = layer.cell
                c_lo, c_hi = -(1 << (cell.bits - 1)), (1 << (cell.bits - 1)) - 1
                new_h = []
                for j in range(hid):
                    i, f = sig[z[j] - t_lo], sig[z[hid + j] - t_lo]
                    g, o = th[z[2 * hid + j] - t_lo], sig[z[3 * hid + j] - t_lo]
                    c[j] = clip(_rshift_round(f * c[j], p) + _rshift_round(i * g, 2 * p - cell.frac), c_lo, c_hi)
                    zc = clip(_requant(c[j] * cell.multiplier, cell.shift, rnd), t_lo, t_hi)
                    new_h.append(clip(_rshift_round(o * th[zc - t_lo], 2 * p - q), h_lo, h_hi))
            else:
                new_h = []
                for j in range(hid):
                    rr, zz, nn = j, hid + j, 2 * hid + j
                    r = sig[clip(_requant(ax[rr] * mx[rr] + ah[rr] * mh[rr] + bx[rr] + bh[rr], s, rnd), t_lo, t_hi)
                            - t_lo]
                    z = sig[clip(_requant(ax[zz] * mx[zz] + ah[zz] * mh[zz] + bx[zz] + bh[zz], s, rnd), t_lo, t_hi)
                            - t_lo]
                    hn = clip(_requant(ah[nn] * mh[nn] + bh[nn], s, rnd), t_lo, t_hi)
                    pre = clip(_requant(ax[nn] * mx[nn] + bx[nn], s, rnd) + _rshift_round(r * hn, p), t_lo, t_hi)
                    n = th[pre - t_lo]
                    new_h.append(clip(_rshift_round(((1 << p) - z) * n, 2 * p - q) + _rshift_round(z * h[j], p),
                                      h_lo, h_hi))
            h = new_h
            states.append(list(h))
        out.append(states)
    return np.array(out, dtype=np.int64).reshape(len(x), n_steps, hid)


def _layer(seed, kind, scheme_w, scheme_u, *, seq=None, features=None, hidden=None, in_bits=None, in_signed=None,
           rounding="half_up", formats=None, return_sequences=False):
    rng = np.random.default_rng(seed)
    unit_w = {"nm": 4, "circulant": 4}.get(scheme_w, 1)
    unit_u = {"nm": 4, "circulant": 4}.get(scheme_u, 1)
    seq = seq or int(rng.integers(1, 6))
    features = features or unit_w * int(rng.integers(1, 3))
    hidden = hidden or unit_u * int(rng.integers(1, 3))
    in_bits = in_bits or int(rng.integers(2, 9))
    in_signed = bool(rng.random() < 0.5) if in_signed is None else in_signed
    layer = random_recurrent(rng, kind, seq, features, hidden, in_bits, in_signed, scheme_w=scheme_w,
                             scheme_u=scheme_u, unit_w=unit_w, unit_u=unit_u, rounding=rounding, formats=formats,
                             return_sequences=return_sequences)
    lo, hi = layer.in_range
    x = rng.integers(lo, hi + 1, (6, seq, features))
    x[0], x[1] = lo, hi                                    # extreme input codes
    x[2, ::2], x[2, 1::2] = hi, lo
    return layer, x


CASES = [(kind, w, u) for kind in ("lstm", "gru") for w in RNN_SCHEMES for u in RNN_SCHEMES if w == u or
         (w, u) in (("fixed", "circulant"), ("circulant", "sp2"), ("nm", "msq"))]


@pytest.mark.parametrize("kind, scheme_w, scheme_u", CASES)
def test_golden_equals_an_independent_integer_model(kind, scheme_w, scheme_u):
    for rep in range(3):
        seed = zlib.crc32(repr((kind, scheme_w, scheme_u, rep)).encode())
        rounding = ("half_up", "half_even", "floor")[rep]
        layer, x = _layer(seed, kind, scheme_w, scheme_u, rounding=rounding, return_sequences=True)
        np.testing.assert_array_equal(layer.forward(x), reference(layer, x))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_h1_t1_and_crossbar_input_weights(kind):
    layer, x = _layer(1, kind, "fixed", "sp2", seq=1, hidden=1, return_sequences=True)
    assert layer.out_shape == (1, 1)
    np.testing.assert_array_equal(layer.forward(x), reference(layer, x))
    # w on a crossbar (unsigned inputs) is legal; u never is
    layer, x = _layer(2, kind, "crossbar", "fixed", in_signed=False, hidden=1, return_sequences=True)
    np.testing.assert_array_equal(layer.forward(x), reference(layer, x))
    last = LSTM if kind == "lstm" else GRU
    assert isinstance(layer, last)


def test_last_state_is_the_last_of_the_sequence():
    layer, x = _layer(3, "lstm", "fixed", "fixed", seq=4)
    seq = LSTM(**{**_fields(layer), "return_sequences": True})
    np.testing.assert_array_equal(layer.forward(x), seq.forward(x)[:, -1])
    np.testing.assert_array_equal(layer.forward(x.reshape(len(x), -1)), layer.forward(x))
    assert layer.out_shape == (layer.hidden,) and seq.out_shape == (4, layer.hidden)


def _fields(layer):
    return {f: getattr(layer, f) for f in ("w", "u", "seq_len", "multiplier_x", "multiplier_h", "offset_x", "offset_h",
                                           "shift", "tables", "in_bits", "in_signed", "out_bits", "out_frac",
                                           "return_sequences", "cell", "rounding")}


# -- float: torch's cells in float64 on the dequantised values ---------------------------------------------------

FINE = {"table_bits": 10, "frac": 12, "scale": 1 / 64, "out_bits": 14, "out_frac": 12, "cell_bits": 24,
        "cell_frac": 16, "gain": 0.3, "circulant": {"w_bits": 14, "tw_bits": 16, "guard_bits": 4}}
#: The asserted bound on |h_integer * 2^-out_frac - h_float| (every step, every unit) for FINE formats, T = 8 and a
#: recurrent gain |U|_inf of 2 to 9: measured worst 0.019 over the cases below (already 0.01 at t = 1: a
#: pre-activation code is 1/64, rounded to 1/128, tanh' <= 1; then the tables' and the hidden state's rounding at
#: 2^-13 and the circulant FFT's rounding, carried through U over time).
FLOAT_BOUND = 0.03


def _real_matrix(weights, per_row):
    """The real matrix the integer accumulators stand for, times ``per_row`` [rows]: the integer matrix, or for
    circulant the block-circulant matrix of the stored spectra in PE output LSBs (sw.circulant.dequantize)."""
    if weights.scheme == "circulant":
        fmt = weights.fmt
        cols = circulant.spectra_to_columns(weights.spectra, np.ones(len(weights.spectra)), fmt)
        dense = circulant.block_circulant(cols)[:weights.out_features] / fmt.out_lsb
    else:
        dense = weights.dense().astype(np.float64)
    return dense * per_row[:, None]


def float_states(layer, x):
    """torch.nn.LSTMCell / GRUCell in float64 with the layer's dequantised weights, on x read as reals (one code
    = 1.0); hidden states [N, T, H] as reals."""
    unit = layer.tables.scale * 2.0 ** -layer.shift
    w = _real_matrix(layer.w, layer.multiplier_x * unit)
    u = _real_matrix(layer.u, layer.multiplier_h * unit * 2.0 ** layer.out_frac)
    cell_cls = torch.nn.LSTMCell if layer.kind == "lstm" else torch.nn.GRUCell
    cell = cell_cls(layer.in_features, layer.hidden, dtype=torch.float64)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.from_numpy(w))
        cell.weight_hh.copy_(torch.from_numpy(u))
        cell.bias_ih.copy_(torch.from_numpy(layer.offset_x * unit))
        cell.bias_hh.copy_(torch.from_numpy(layer.offset_h * unit))
        xs = torch.from_numpy(np.asarray(x, np.float64))
        h = torch.zeros(len(x), layer.hidden, dtype=torch.float64)
        c = torch.zeros_like(h)
        out = []
        for t in range(layer.seq_len):
            if layer.kind == "lstm":
                h, c = cell(xs[:, t], (h, c))
            else:
                h = cell(xs[:, t], h)
            out.append(h)
    return torch.stack(out, 1).numpy()


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("scheme", RNN_SCHEMES)
def test_golden_agrees_with_torch_cells_in_float(kind, scheme):
    worst = 0.0
    for rep in range(2):
        seed = zlib.crc32(repr(("float", kind, scheme, rep)).encode())
        layer, x = _layer(seed, kind, scheme, scheme, seq=8, formats=FINE, return_sequences=True)
        got = layer.forward(x) * 2.0 ** -layer.out_frac
        want = float_states(layer, x)
        worst = max(worst, float(np.abs(got - want).max()))
        assert np.abs(want).max() > 0.05       # the comparison is not between two zeros
    assert worst <= FLOAT_BOUND, worst


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def analytic_bound(layer, x):
    """float64 [N, T, H]: a worst-case bound on |h_integer * 2^-Q - h_float| at every step, derived from the formats
    (docs/rnn.md), with the float model's own intermediates (the cell equations of torch's LSTMCell / GRUCell, in
    numpy). Per step: a requantised code is within rho (half a code, a whole one with floor) of its real value plus
    |U| times the hidden state's error; a table entry within half an LSB of its function at its code; sigmoid is
    1/4-Lipschitz and tanh 1-Lipschitz, clipping to the table's range costs |f(clip(v)) - f(v)| of the float
    pre-activation v; every product's rounding half an LSB of its result. For non-circulant weights (the circulant
    PE's FFT rounding has no bound here) and no cell clipping. Returns (bound, h_float)."""
    s, p, q = layer.tables.scale, layer.tables.frac, layer.out_frac
    rho = s if layer.rounding == "floor" else s / 2
    unit = s * 2.0 ** -layer.shift
    w = layer.w.dense() * (layer.multiplier_x * unit)[:, None]
    u = layer.u.dense() * (layer.multiplier_h * unit * 2.0 ** q)[:, None]
    bx, bh = layer.offset_x * unit, layer.offset_h * unit
    lo, hi = (np.array(layer.tables.code_range) * s)
    table = 2.0 ** -(p + 1) * (1 + 1e-9)
    h_top = (2 ** (layer.out_bits - 1) - 1) * 2.0 ** -q
    out_clip = max(0.0, 1 - h_top)

    def act(fn, lip, pre, delta):
        return table + lip * delta + np.abs(fn(np.clip(pre, lo, hi)) - fn(pre))

    hid, n = layer.hidden, len(x)
    h, c = np.zeros((n, hid)), np.zeros((n, hid))
    e_h, e_c = np.zeros((n, hid)), np.zeros((n, hid))
    bounds, states = [], []
    for t in range(layer.seq_len):
        gx, gh = x[:, t] @ w.T + bx, h @ u.T + bh
        spread = e_h @ np.abs(u).T                           # |U| e_h, per row
        if layer.kind == "lstm":
            pre = gx + gh
            delta = rho + spread
            part = [slice(k * hid, (k + 1) * hid) for k in range(4)]
            i, f, g, o = _sigmoid(pre[:, part[0]]), _sigmoid(pre[:, part[1]]), np.tanh(pre[:, part[2]]), \
                _sigmoid(pre[:, part[3]])
            e_i, e_f, e_o = (act(_sigmoid, 0.25, pre[:, part[k]], delta[:, part[k]]) for k in (0, 1, 3))
            e_g = act(np.tanh, 1.0, pre[:, part[2]], delta[:, part[2]])
            cell = layer.cell
            e_c = e_c + e_f * np.abs(c) + e_g + e_i * np.abs(g) + 2.0 ** -cell.frac
            c = f * c + i * g
            rel = abs(cell.multiplier * 2.0 ** -cell.shift * s * 2.0 ** cell.frac - 1)
            e_tc = act(np.tanh, 1.0, c, rho + (np.abs(c) + e_c) * rel + e_c)
            h_new = o * np.tanh(c)
            e_h = e_o * np.abs(np.tanh(c)) + e_tc + 2.0 ** -(q + 1) + out_clip
        else:
            rz = slice(0, 2 * hid)
            nn_ = slice(2 * hid, 3 * hid)
            pre = gx[:, rz] + gh[:, rz]
            r, z = _sigmoid(pre[:, :hid]), _sigmoid(pre[:, hid:])
            e_rz = act(_sigmoid, 0.25, pre, rho + spread[:, rz])
            e_r, e_z = e_rz[:, :hid], e_rz[:, hid:]
            hn = gh[:, nn_]
            e_hn = rho + spread[:, nn_] + np.abs(np.clip(hn, lo, hi) - hn)
            pre_n = gx[:, nn_] + r * hn
            nval = np.tanh(pre_n)
            e_n = act(np.tanh, 1.0, pre_n, rho + s / 2 + e_hn + e_r * np.abs(hn))
            h_new = (1 - z) * nval + z * h
            # (1 - z) n + z h is a convex combination: its error is |dz| |h - n| plus at most the larger one
            e_h = e_z * np.abs(h - nval) + np.maximum(e_n, e_h) + 2.0 ** -q + out_clip
        h = h_new
        bounds.append(e_h)
        states.append(h)
    return np.stack(bounds, 1), np.stack(states, 1)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("scheme", ["fixed", "sp2", "msq", "nm"])
def test_golden_is_within_the_analytic_bound_of_float(kind, scheme):
    rounding = {"fixed": "floor", "sp2": "half_even"}.get(scheme, "half_up")
    for rep in range(2):
        seed = zlib.crc32(repr(("bound", kind, scheme, rep)).encode())
        layer, x = _layer(seed, kind, scheme, scheme, seq=4, formats={**FINE, "gain": 0.05}, return_sequences=True,
                          rounding=rounding)
        bound, h_float = analytic_bound(layer, x)
        np.testing.assert_allclose(h_float, float_states(layer, x), atol=1e-12)    # the same float model as torch's
        err = np.abs(layer.forward(x) * 2.0 ** -layer.out_frac - h_float)
        assert np.all(err <= bound), float((err - bound).max())
        # a worst case compounds through |U| at every step: measured 0.03 at t = 1, up to 0.28 at t = 4 (floor
        # rounding; the errors themselves up to 0.009)
        assert bound.max() < 0.35


def test_float_reference_detects_a_wrong_gate_order():
    """The float check can fail: swapping two gates of the integer layer moves it far outside the bound."""
    layer, x = _layer(11, "lstm", "fixed", "fixed", seq=8, formats=FINE, return_sequences=True)
    h = layer.hidden
    order = np.r_[h:2 * h, 0:h, 2 * h:4 * h]             # f and i swapped in the weights only
    swapped = LSTM(**{**_fields(layer), "w": SCHEMES["fixed"](layer.w.weights[order], layer.w.w_bits)})
    err = np.abs(swapped.forward(x) * 2.0 ** -layer.out_frac - float_states(layer, x)).max()
    assert err > 3 * FLOAT_BOUND


# -- activation tables ---------------------------------------------------------------------------------------

def test_tables_round_the_float_functions_to_half_an_lsb():
    t = activation_tables(10, 12, 1 / 64)
    codes = np.arange(-512, 512)
    for table, fn in ((t.sigmoid, lambda v: 1 / (1 + np.exp(-v))), (t.tanh, np.tanh)):
        err = np.abs(table - fn(codes / 64) * 4096)
        assert err.max() <= 0.5 + 1e-9
    assert t.sigmoid.min() >= 0 and t.sigmoid.max() <= 4096 and t.tanh.min() >= -4096
    assert t.sigmoid[512] == 2048 and t.tanh[512] == 0        # code 0
    assert np.all(np.diff(t.sigmoid) >= 0) and np.all(np.diff(t.tanh) >= 0)


# -- manifest ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(8))
def test_random_rnn_round_trips_and_takes_n_t_f(seed, tmp_path):
    rng = np.random.default_rng(seed)
    net = random_rnn(rng, kind=("lstm", "gru")[seed % 2])
    x = rng.integers(*net.input.range, size=(4, *net.input.shape), endpoint=True)
    y = net.golden(x)
    np.testing.assert_array_equal(y, net.golden(x.reshape(4, -1)))
    net.save(tmp_path)
    back = load(tmp_path)
    assert back == net and back.digest() == net.digest()
    np.testing.assert_array_equal(back.golden(x), y)
    entry = json.loads((tmp_path / "network.json").read_text())["layers"][0]
    assert entry["kind"] == net.layers[0].kind and entry["output"]["signed"] is True
    with pytest.raises(ValueError, match=r"^Network input must have shape \(N, \d+\) or \(N, \d+, \d+\), not"):
        net.golden(x[:, :, :-1] if x.shape[2] > 1 else x[:, :-1])


@pytest.mark.parametrize("kind, scheme_w, scheme_u", CASES)
def test_every_scheme_round_trips(kind, scheme_w, scheme_u, tmp_path):
    layer, x = _layer(zlib.crc32(repr(("trip", kind, scheme_w, scheme_u)).encode()), kind, scheme_w, scheme_u,
                      rounding="half_even")
    net = Network(InputSpec(x[0].size, layer.in_bits, layer.in_signed, shape=x.shape[1:]), (layer,))
    net.save(tmp_path)
    back = load(tmp_path)
    assert back == net and (back.layers[0].w.scheme, back.layers[0].u.scheme) == (scheme_w, scheme_u)
    np.testing.assert_array_equal(back.golden(x), layer.forward(x))


def _saved(tmp_path, kind="lstm", scheme_u="fixed"):
    layer, _ = _layer(5, kind, "fixed", scheme_u, seq=3, features=2, hidden=4, in_bits=6, in_signed=True)
    net = Network(InputSpec(6, 6, True, shape=(3, 2)), (layer,))
    net.save(tmp_path)
    return json.loads((tmp_path / "network.json").read_text())


def _edit(tmp_path, data):
    (tmp_path / "network.json").write_text(json.dumps(data))
    return lambda: load(tmp_path)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["layers"][0].pop("cell"), r"layers\[0\]\.cell must be given, not missing"),
    (lambda d: d["layers"][0]["output"].update(signed=False),
     r"layers\[0\]\.output\.signed must be true \(the hidden state is signed\), not False"),
    (lambda d: d["layers"][0]["tables"].update(bits=9),
     r"'layers\.0\.sigmoid' \(layers\[0\]\.arrays\.sigmoid\) must have shape \(512,\)"),
    (lambda d: d["layers"][0].update(hidden=3), r"layers\[0\]\.arrays\.w\.weights\) must have shape \(12, 2\) "
                                                r"\(out_features, in_features\), not \(16, 2\)$"),
    (lambda d: d["layers"][0]["u"].update(scheme="conv"), r"layers\[0\]\.u\.scheme must be one of"),
    (lambda d: d["layers"][0]["requant"].update(shift=0), r"layers\[0\]\.requant\.shift must be an integer from 1"),
    (lambda d: d["layers"][0]["cell"].update(frac=40), r"layers\[0\]\.cell: Cell frac must be an integer from 0 to 32"),
    (lambda d: d["layers"][0]["output"].update(frac=40),
     r"network\.json: layers\[0\]\.output\.frac must be an integer from 0 to \d+ \(2 \* table frac\), not 40$"),
    (lambda d: d["layers"][0]["cell"].update(frac=d["layers"][0]["tables"]["frac"] * 2 + 1),
     r"network\.json: layers\[0\]\.cell\.frac must be an integer from 0 to \d+ \(2 \* table frac\), not \d+$"),
    (lambda d: d["layers"][0]["output"].update(bits=1), r"network\.json: layers\[0\]\.output\.bits must be an "
                                                        r"integer from 2 to 32, not 1$"),
    (lambda d: d["layers"][0].update(kind="rnn"), r"layers\[0\]\.kind must be one of 'dense', .*'gru', .*'lstm'"),
])
def test_load_errors_name_the_field(tmp_path, edit, message):
    data = _saved(tmp_path)
    edit(data)
    with pytest.raises((ValueError, TypeError)) as info:
        _edit(tmp_path, data)()
    text = str(info.value)
    assert "\n" not in text
    assert re.search(message, text), text


def test_gru_manifest_has_no_cell(tmp_path):
    data = _saved(tmp_path, "gru")
    assert "cell" not in data["layers"][0]
    data["layers"][0]["cell"] = {"bits": 8, "frac": 4, "multiplier": 1, "shift": 1}
    with pytest.raises(ValueError, match=r"layers\[0\] keys must be among .*not 'cell'$"):
        _edit(tmp_path, data)()


def test_construction_errors():
    layer, _ = _layer(6, "lstm", "fixed", "fixed", seq=2, features=2, hidden=2, in_bits=6, in_signed=True)
    f = _fields(layer)
    crossbar = SCHEMES["crossbar"].random(np.random.default_rng(0), 2, 8, 6, False, 1)
    cases = [
        ({"u": crossbar}, ValueError, r"^Lstm u must take the signed hidden state \(any scheme but crossbar\), "
                                      r"not 'crossbar'$"),
        ({"w": SCHEMES["fixed"](np.ones((6, 2), int), 4)}, ValueError,
         r"^Lstm w must have 4 \* hidden rows \(the gates i, f, g, o\), not 6$"),
        ({"u": SCHEMES["fixed"](np.ones((8, 3), int), 4)}, ValueError, r"^Lstm u must be \[4 \* 2, 2\]"),
        ({"cell": None}, TypeError, r"^Lstm cell must be a CellFormat, not None$"),
        ({"cell": CellFormat(16, 30, 1, 1)}, ValueError, r"^Lstm cell frac must be an integer from 0 to \d+"),
        ({"seq_len": 0}, ValueError, r"^Lstm seq_len must be a positive integer, not 0$"),
        ({"tables": 3}, TypeError, r"^Lstm tables must be ActivationTables, not 3$"),
        ({"multiplier_x": np.full(8, 1 << 40)}, ValueError, r"^Requantisation multipliers must be integers from 0"),
        ({"shift": 62, "offset_x": np.full(8, (1 << 62) - 1), "offset_h": np.full(8, (1 << 62) - 1)}, ValueError,
         r"^Lstm requantisation must fit int64"),
    ]
    for change, error, message in cases:
        with pytest.raises(error, match=message):
            LSTM(**{**f, **change})
    with pytest.raises(TypeError, match=r"^Gru cell must be None \(a GRU has no cell state\), not CellFormat"):
        GRU(**{**_fields(_layer(7, "gru", "fixed", "fixed", seq=2, features=2, hidden=2)[0]), "cell": layer.cell})
    with pytest.raises(ValueError, match=r"^Sigmoid table must have 2\^bits entries \(bits 2 to 16\), not shape"):
        ActivationTables(np.zeros(5, int), np.zeros(5, int), 4)
    with pytest.raises(ValueError, match=r"^Tanh table must be integers from -16 to 16, not 17"):
        ActivationTables(np.zeros(8, int), np.full(8, 17), 4)
    with pytest.raises(ValueError, match=r"^Lstm input must have shape \(N, 2, 2\) or \(N, 4\), not \(3, 2, 3\)$"):
        layer.forward(np.zeros((3, 2, 3), int))
    with pytest.raises(ValueError, match=r"^Lstm input must be integers from -32 to 31, not 32"):
        layer.forward(np.full((3, 2, 2), 32))


def test_the_worked_example_of_the_docs():
    """docs/rnn.md's worked example, whose every intermediate value is computed by hand there."""
    tables = ActivationTables([0, 0, 1, 1, 2, 3, 4, 6, 8, 10, 12, 13, 14, 15, 15, 16],
                              [-16, -16, -16, -16, -15, -14, -12, -7, 0, 7, 12, 14, 15, 16, 16, 16], 4, 0.5)
    assert np.array_equal(tables.sigmoid, activation_tables(4, 4, 0.5).sigmoid)
    w = SCHEMES["fixed"](np.array([[2], [3], [1], [-1]]), 4)
    u = SCHEMES["fixed"](np.array([[1], [0], [2], [1]]), 4)
    layer = LSTM(w, u, 2, np.full(4, 4), np.ones(4, int), np.array([0, 8, 0, 0]), np.zeros(4, int), 3, tables, 4,
                 True, 8, 6, True, CellFormat(12, 6, 1, 5))
    assert layer.forward([[[3], [-2]]]).tolist() == [[[11], [21]]]
    trace = layer.trace([[[3], [-2]]])                   # every intermediate, as docs/rnn.md computes it by hand
    assert trace["ax"].tolist() == [[[6, 9, 3, -3], [-4, -6, -2, 2]]]
    assert trace["ah"].tolist() == [[[0, 0, 0, 0], [11, 0, 22, 11]]]
    assert trace["z"].tolist() == [[[3, 6, 2, -1], [-1, -2, 2, 2]]]
    assert [trace[g][0, :, 0].tolist() for g in "ifgo"] == [[13, 6], [15, 4], [12, 12], [6, 12]]
    assert trace["c"].tolist() == [[[39], [28]]] and trace["zc"].tolist() == [[[1], [1]]]
    assert trace["h"].tolist() == [[[11], [21]]]


def test_the_gru_worked_example_of_the_docs():
    w = SCHEMES["fixed"](np.array([[2], [3], [1]]), 4)
    u = SCHEMES["fixed"](np.array([[1], [-1], [2]]), 4)
    layer = GRU(w, u, 2, np.full(3, 4), np.ones(3, int), np.array([0, 0, 4]), np.array([0, 0, 8]), 3,
                activation_tables(4, 4, 0.5), 4, True, 8, 6, True)
    trace = layer.trace([[[3], [-2]]])
    expected = {"z": [[3, 5], [-1, -3]], "r": [[13], [6]], "zg": [[15], [3]], "hn": [[1], [2]], "zn": [[3], [1]],
                "n": [[14], [7]], "h": [[4], [24]]}
    assert {name: trace[name][0].tolist() for name in expected} == expected


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_trace_ends_in_forward(kind):
    layer, x = _layer(8, kind, "sp2", "fixed", seq=3, return_sequences=True)
    trace = layer.trace(x)
    np.testing.assert_array_equal(trace["h"], layer.forward(x))
    g = len(layer.gates) * layer.hidden
    assert trace["ax"].shape == trace["ah"].shape == (len(x), 3, g)


def test_docstring_examples():
    result = doctest.testmod(recurrent)
    assert result.attempted >= 4 and result.failed == 0
