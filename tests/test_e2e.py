"""End to end: compressed digits classifiers (sw.models) against an independent float64 reimplementation, the
RTL against the golden pipeline image for image, the accuracy targets of issue 6, and the e2e command line.

Each scheme's tests share one xdist group (one worker trains the scheme once and builds its PEs); the groups
spread over the workers. Every RTL test streams all 360 test images through every layer's PE.
"""

import doctest
import functools
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sw.models
from sw import models
from sw.models import (CirculantLayer, CrossbarLayer, FixedLayer, MixedLayer, NMLayer, Requant, SP2Layer,
                       requantize)

ROOT = Path(__file__).resolve().parent.parent
SCHEMES = models.SCHEMES
#: Largest accuracy loss against the float baseline (issue 6): 1 point, 3 points for the structural schemes.
GAP = {"fixed8": 0.01, "sp2": 0.01, "msq": 0.01, "nm": 0.03, "circulant": 0.03, "forms": 0.03}


def per_scheme(names=SCHEMES):
    return [pytest.param(s, marks=pytest.mark.xdist_group(f"e2e-{s}")) for s in names]


@functools.lru_cache(maxsize=None)
def network(scheme):
    return models.build(scheme)


@functools.lru_cache(maxsize=None)
def golden_logits(scheme):
    return network(scheme).golden_logits(models.load_split().x_test)


# -- requantisation -----------------------------------------------------------------------------------------

@given(st.lists(st.integers(-(1 << 24), 1 << 24), min_size=1, max_size=20), st.integers(0, (1 << 31) - 1),
       st.integers(1, 40), st.integers(-(1 << 40), 1 << 40))
def test_requantize_is_round_half_up(acc, multiplier, shift, offset):
    want = [int(np.floor(Fraction(a * multiplier + offset, 1 << shift) + Fraction(1, 2))) for a in acc]
    assert requantize(acc, multiplier, shift, offset).tolist() == want


def test_requant_fit_tracks_the_real_value():
    rng = np.random.default_rng(0)
    acc_scale, bias = rng.uniform(1e-5, 1e-3, 8), rng.normal(0, 1, 8)
    out_scale = 0.01
    requant = Requant.fit(acc_scale, bias, out_scale, acc_bound=1 << 20)
    acc = rng.integers(-(1 << 20), 1 << 20, (100, 8))
    exact = (acc * acc_scale + bias) / out_scale
    assert requant.multiplier.max() < 1 << 31 <= 2 * requant.multiplier.max()
    assert np.max(np.abs(requant(acc) - exact)) <= 0.5 + 1e-6
    clipped = Requant.fit(acc_scale, bias, out_scale, acc_bound=1 << 20, lo=0, hi=255)(acc)
    assert clipped.min() == 0 and clipped.max() == 255


def test_requant_fit_errors():
    with pytest.raises(ValueError, match=r"^Requantisation multiplier must be at most 2\^30 \(shift >= 1\), not "):
        Requant.fit([1e10], [0.0], 1.0, acc_bound=1)
    with pytest.raises(ValueError, match=r"^Requantisation must fit int64: acc bound 1152921504606846976 \* "):
        Requant.fit([1.0], [0.0], 1.0, acc_bound=1 << 60)
    with pytest.raises(ValueError, match=r"^Requantisation shift must be an integer from 1 to 62, not 0$"):
        requantize([1], 1, 0)


def test_docstring_examples():
    result = doctest.testmod(sw.models)
    assert result.attempted >= 2 and result.failed == 0


def test_import_loads_neither_torch_nor_the_simulator():
    code = ("import sys, sw.models; loaded = {'torch', 'cocotb', 'amaranth'} & set(sys.modules); "
            "assert not loaded, loaded")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_split_is_fixed():
    split = models.load_split()
    assert split.x_test.shape == (360, 64) and split.x_train.shape == (1797 - 360, 64)
    assert split.x_test.min() == 0 and split.x_test.max() == models.PIXEL_MAX
    share = np.bincount(split.y_train + 0) + np.bincount(split.y_test)       # stratified: the class shares kept
    assert np.all(np.abs(np.bincount(split.y_test) - 360 * share / share.sum()) < 1)
    again = models.load_split.__wrapped__()
    assert np.array_equal(again.x_test, split.x_test) and np.array_equal(again.y_train, split.y_train)
    with pytest.raises(ValueError, match=r"^Scheme must be one of 'fixed8', .* not 'int4'$"):
        models.build("int4")


# -- golden pipeline against an independent float64 reimplementation ----------------------------------------

def sp2_values(codes, bits, m1):
    """SP2 integer weight of each code, from DESIGN.md: sign | e1 | e2, t(e) = 2^(E - e) (0 for e = 0)."""
    m2, big_e = bits - 1 - m1, (1 << m1) - 1
    sign, e1, e2 = codes >> (bits - 1), (codes >> m2) & ((1 << m1) - 1), codes & ((1 << m2) - 1)
    term = lambda e: np.where(e == 0, 0, 2.0 ** (big_e - e))  # noqa: E731
    return np.where(sign == 1, -1.0, 1.0) * (term(e1) + term(e2))


def float_weight(layer):
    """The real weight [out, in] of an exported layer, decoded here from its integer format."""
    if isinstance(layer, FixedLayer):
        return layer.w_scale[:, None] * layer.w_int
    if isinstance(layer, SP2Layer):
        fmt = layer.params.fmt
        return layer.w_scale[:, None] * sp2_values(layer.codes, fmt.bits, fmt.m1)
    if isinstance(layer, MixedLayer):
        mixed, fmt = layer.mixed, layer.mixed.sp2_fmt
        values = np.where(mixed.is_sp2[:, None], sp2_values(mixed.codes, fmt.bits, fmt.m1), mixed.fixed)
        return mixed.scale[:, None] * values
    if isinstance(layer, NMLayer):
        m, n = layer.params.fmt.m, layer.params.fmt.n
        dense = np.zeros((layer.out_features, layer.in_features))
        for r in range(layer.out_features):
            for slot, (value, index) in enumerate(zip(layer.values[r], layer.indices[r])):
                dense[r, slot // n * m + index] += value
        return layer.w_scale[:, None] * dense
    if isinstance(layer, CirculantLayer):
        k = layer.params.fmt.block
        spectrum = layer.block_scale[:, None, None] * (layer.spectra[..., 0] + 1j * layer.spectra[..., 1])
        columns = np.fft.irfft(spectrum, n=k, axis=-1)                    # first columns [p, q, k]
        p, q = columns.shape[:2]
        dense = np.zeros((p * k, q * k))
        for i in range(p):
            for j in range(q):
                for r in range(k):
                    for s in range(k):
                        dense[i * k + r, j * k + s] = columns[i, j, (r - s) % k]
        return dense[:layer.out_features]
    if isinstance(layer, CrossbarLayer):
        return (layer.w_int * layer.w_scale).T
    raise TypeError(layer)


def float_pipeline(net, pixels):
    """float64: real weights and biases, ReLU, hidden activations rounded half up to the 8-bit grid."""
    x = pixels / models.PIXEL_MAX
    hidden_codes = []
    for n, layer in enumerate(net.layers):
        z = x @ float_weight(layer).T + layer.bias
        if n + 1 < len(net.layers):
            scale = net.in_scales[n + 1]
            codes = np.clip(np.floor(z / scale + 0.5), 0, 255)
            hidden_codes.append(codes)
            x = codes * scale
    return z, hidden_codes


@pytest.mark.parametrize("scheme", per_scheme())
def test_golden_matches_float_reimplementation(scheme):
    net = network(scheme)
    pixels = models.load_split().x_test
    logits, hidden = float_pipeline(net, pixels)
    golden_hidden = net.requants[0](net.layers[0].golden(pixels))
    # dense schemes: the integer multiplier differs from the real one by < 2^-30 (relative); the circulant
    # FFT schedule rounds inside the transforms (~60 dB SQNR), so a few codes move by one step
    codes_off = np.abs(golden_hidden - hidden[0])
    assert codes_off.max() <= 1
    assert codes_off.mean() <= (0.05 if scheme == "circulant" else 0.001)
    agree = int(np.sum(golden_logits(scheme).argmax(1) == logits.argmax(1)))
    assert agree >= (356 if scheme == "circulant" else 359), f"{scheme}: {agree}/360 predictions agree"


# -- the RTL, image for image ----------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", per_scheme())
def test_rtl_equals_golden_on_every_image(scheme):
    net = network(scheme)
    pixels = models.load_split().x_test
    rtl, cycles = net.rtl_logits(pixels)
    golden = golden_logits(scheme)
    mismatch = np.flatnonzero(np.any(rtl != golden, axis=1))
    assert mismatch.size == 0, f"{scheme}: RTL logits differ from golden on images {mismatch[:10].tolist()}"
    assert np.array_equal(rtl.argmax(1), golden.argmax(1))
    assert cycles >= len(pixels) * sum(layer.out_features for layer in net.layers
                                       if not isinstance(layer, (CirculantLayer, CrossbarLayer)))
    if scheme == "forms":  # the array reads the PE reported (zero-skipping) equal the golden model's count
        rtl_steps = [layer.steps for layer in net.layers]
        x = pixels
        for layer, requant, steps in zip(net.layers, net.requants, rtl_steps):
            x = requant(layer.golden(x))
            assert layer.steps == steps > 0


@pytest.mark.parametrize("scheme", per_scheme())
def test_accuracy_within_target_of_float(scheme):
    float_acc, _ = models.train_float()
    golden = models.accuracy(golden_logits(scheme), models.load_split().y_test)
    assert float_acc > 0.95
    assert golden >= float_acc - GAP[scheme], f"{scheme}: golden {golden:.4f}, float {float_acc:.4f}"


@pytest.mark.xdist_group("e2e-forms")
def test_forms_nonideal_array():
    net = network("forms")
    split = models.load_split()
    ideal = net.nonideal_logits(split.x_test, variation=0.0, stuck_at_0=0.0, stuck_at_1=0.0, read_noise=0.0)
    assert np.array_equal(ideal, golden_logits("forms"))   # a perfect NonIdealArray is the ideal array
    noisy = models.accuracy(net.nonideal_logits(split.x_test), split.y_test)
    assert 0.5 < noisy < models.accuracy(ideal, split.y_test)
    with pytest.raises(ValueError, match=r"^Non-ideal arrays must run a crossbar network, not scheme 'fixed8'$"):
        network("fixed8").nonideal_logits(split.x_test)


# -- runner, resources, command line -------------------------------------------------------------------------

def test_pe_resources_from_results_pages(tmp_path):
    from hw.fixed_mac import FixedMacParams
    from hw.sp2_mac import SP2MacParams
    from peforge.e2e import pe_resources

    (tmp_path / "sp2.md").write_text(
        "| design | lanes | LUT | FF | DSP | Fmax MHz |\n|---|---|---|---|---|---|\n"
        "| SP2-4 (m1=2) | 16 | 994 | 540 | 0 | 177.9 |\n| fixed-8 DSP | 16 | 386 | 700 | 16 | 137.9 |\n\n"
        "| design | lanes | LUT | FF | DSP | Fmax MHz |\n|---|---|---|---|---|---|\n"
        "| fixed-8 DSP | 16 | 1 | 1 | 1 | 1.0 |\n")
    assert pe_resources("fixed-mac", FixedMacParams(lanes=16, w_bits=8), tmp_path)[:2] == (386, 16)
    assert pe_resources("sp2-mac", SP2MacParams(lanes=16), tmp_path)[:2] == (994, 0)
    assert pe_resources("fixed-mac", FixedMacParams(lanes=8, w_bits=8), tmp_path) is None


def test_cli_unknown_scheme(capsys):
    from peforge.cli import main

    assert main(["e2e", "--scheme", "fixed8", "--scheme", "int4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["peforge e2e: error: --scheme must be one of fixed8, sp2, msq, nm, circulant, forms, "
                   "not 'int4'"]


@pytest.mark.xdist_group("e2e-nm")
def test_run_e2e_writes_table_json_and_plot(tmp_path, capsys, monkeypatch):
    """The runner's table, JSON, plot and exit status; the RTL is stood in for by the golden logits here
    (test_rtl_equals_golden_on_every_image runs it), then by logits with one image changed."""
    from peforge.e2e import run_e2e

    net, golden = network("nm"), golden_logits("nm")
    monkeypatch.setattr(models, "build", lambda scheme: net)
    monkeypatch.setattr(models.Network, "rtl_logits", lambda self, pixels, step=None: (golden, 1234))
    assert run_e2e(["nm"], out_dir=tmp_path) == 0
    result = json.loads((tmp_path / "e2e.json").read_text())["results"]
    assert [r["scheme"] for r in result] == ["float", "nm"]
    nm_row = result[1]
    assert nm_row["agree"] == nm_row["images"] == 360 and nm_row["logits_equal"] and nm_row["cycles"] == 1234
    assert nm_row["golden_acc"] == nm_row["rtl_acc"] == models.accuracy(golden_logits("nm"),
                                                                        models.load_split().y_test)
    assert nm_row["weight_bits"] == (64 * 32 + 32 * 10) // 2 * (8 + 2)      # 2:4: 8-bit values, 2-bit indices
    assert nm_row["lut"] == 441 and nm_row["dsp"] == 8                       # docs/results/nm.md, 2:4 x4 DSP
    table = (tmp_path / "e2e.md").read_text()
    assert "| nm | nm-sparse | " in table and "| 360/360 | 11840 | 6.4x | 1234 |" in table
    assert (tmp_path / "e2e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "360/360" in capsys.readouterr().out

    wrong = golden.copy()
    wrong[7] = -wrong[7]
    monkeypatch.setattr(models.Network, "rtl_logits", lambda self, pixels, step=None: (wrong, 1234))
    assert run_e2e(["nm"], out_dir=tmp_path) == 1
    assert "FAILED nm: RTL predictions differ from golden" in capsys.readouterr().out
    assert json.loads((tmp_path / "e2e.json").read_text())["results"][1]["agree"] == 359
