"""Convolutional networks on hardware (hw/network/window.py, pool.py, the conv engines of engines.py): whole CNNs in
one Verilator simulation against the golden model, the parts' geometry against independent enumeration, the cost
of their buffers against the elaborated memories, and the errors.

The random CNNs come from :func:`sw.network.random_cnn`; their golden (:meth:`sw.network.Network.golden`) is the
layers' ``forward``, each checked against torch's convolutions and pools in ``tests/test_sw_conv.py``.
"""

import math
import re
import subprocess
import sys

import numpy as np
import pytest
from peforge.hw.network import CompiledNetwork, Dest, LayerFolding, default_folding, plan_engine
from peforge.hw.network import cost
from peforge.hw.network.components import value_shape
from peforge.hw.network.window import LineBuffer
from peforge.hw.verilog import to_verilog
from peforge.sw import network as net
from peforge.sw.conv import Conv, Flatten, MaxPool
from peforge.sw.weights import SCHEMES, FixedWeights

#: random CNNs the RTL tests draw: together every layer kind, every convolution scheme (depthwise: fixed and
#: SP2), every dense scheme after them, 1-D and 2-D, padding, strides, one input channel
RTL_SEEDS = [62, 40, 42, 34, 108, 21]


def _features(network) -> set[str]:
    found = {f"dims{len(network.input.shape) - 1}"}
    for layer in network.layers:
        if layer.kind in ("conv1d", "conv2d"):
            found |= {layer.kind, f"conv {layer.scheme}"}
            found |= {f"depthwise {layer.scheme}"} if layer.groups > 1 else set()
            found |= {"padded"} if any(layer.padding) else set()
            found |= {"strided"} if max(layer.stride) > 1 else set()
        elif layer.kind == "dense":
            found.add(f"dense {layer.scheme}")
        else:
            found.add(layer.kind)
    return found


def test_rtl_cnns_cover_every_kind_and_scheme():
    found = set().union(*[_features(net.random_cnn(np.random.default_rng(s))) for s in RTL_SEEDS])
    conv_schemes = {f"conv {s}" for s in net.SCHEMES if s != "crossbar"}   # a crossbar convolution is refused
    want = {"conv1d", "conv2d", "maxpool", "avgpool", "globalavgpool", "flatten", "padded", "strided", "dims1",
            "dims2", "depthwise fixed", "depthwise sp2", *conv_schemes, *{f"dense {s}" for s in net.SCHEMES}}
    assert want <= found, sorted(want - found)


def _edge_network(rng, shape, kernel, stride, padding, c_out, pool=None) -> net.Network:
    """One fixed convolution on ``shape`` (perhaps a max pool after it), flatten, a dense layer of 3 logits."""
    bits, signed = 4, True
    spec = net.InputSpec(math.prod(shape), bits, signed, shape=shape)
    x = rng.integers(*spec.range, (64, spec.features), endpoint=True)
    w = FixedWeights(rng.integers(-8, 8, (c_out, math.prod(kernel) * shape[0])), 4)

    def conv(mult, shift, offset):
        return Conv(w, shape, kernel, stride, padding, 1, mult, shift, offset, True, bits, signed, 5, False, None,
                    "half_up", dims=len(shape) - 1)
    probe = conv(np.ones(c_out, np.int64), 1, np.zeros(c_out, np.int64))
    acc = np.moveaxis(probe.accumulate(x), 1, -1).reshape(-1, c_out)
    layers = [conv(*net.calibrate(rng, acc, probe.out_range, probe.acc_bound))]
    if pool is not None:
        layers.append(MaxPool(layers[-1].out_shape, pool, pool, 5, False, dims=len(shape) - 1))
    out = layers[-1].out_shape
    layers.append(Flatten(out, 5, False))
    n = math.prod(out)
    dense = SCHEMES["fixed"].random(rng, n, 3, 5, False, 1)
    h = net.Network(spec, tuple(layers)).golden(x)
    probe = net.Layer(dense, np.ones(3, np.int64), 1, np.zeros(3, np.int64), False, 5, False, 24, True)
    mult, shift, offset = net.calibrate(rng, probe.accumulate(h), probe.out_range, probe.acc_bound)
    layers.append(net.Layer(dense, mult, shift, offset, False, 5, False, 24, True))
    return net.Network(spec, tuple(layers))


#: the smallest CNN (one channel of one pixel, a 1 x 1 kernel, one output channel) and a kernel larger than its
#: input (3 x 3 on 2 x 2, padded to fit)
EDGES = {
    "1x1x1": lambda rng: _edge_network(rng, (1, 1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 1),
    "kernel>input": lambda rng: _edge_network(rng, (2, 2, 2), (3, 3), (1, 1), (1, 1, 1, 1), 3, pool=(2, 2)),
}


def _rtl_cnn(key) -> CompiledNetwork:
    rng = np.random.default_rng(key if isinstance(key, int) else 7)
    network = net.random_cnn(rng) if isinstance(key, int) else EDGES[key](rng)
    return CompiledNetwork.default(network)


@pytest.mark.parametrize("key", [*RTL_SEEDS, *EDGES])
def test_rtl_cnn_equals_golden(key):
    """Every sample under every stall mix, extremes, resets mid-sample and with results pending, and the
    steady-state interval measured in the simulation equal to the prediction (tb/network.py)."""
    from peforge.tb.network import CHECKS, NetworkDesign
    from peforge.tb.runner import run_design

    compiled = _rtl_cnn(key)
    tests, failures = run_design(NetworkDesign(compiled), testcases=CHECKS, seed=key if isinstance(key, int) else 3)
    assert (tests, failures) == (len(CHECKS), 0), [(p.kind, p.label) for p in compiled.plans]


def test_rtl_infer_takes_samples_as_the_model_flattens_them():
    """rtl_infer takes ``[N, C * H * W]`` in torch's order; the accelerator's input stream is channels-last
    (CompiledNetwork.input_order), which the bench applies, so a channels-first stream would differ."""
    from peforge.tb.network import rtl_infer

    compiled = _rtl_cnn(RTL_SEEDS[1])
    network = compiled.network
    order = compiled.input_order()
    c, positions = network.input.shape[0], network.input.features // network.input.shape[0]
    assert order.tolist() == [ch * positions + p for p in range(positions) for ch in range(c)]
    x = np.random.default_rng(4).integers(*network.input.range, (12, network.input.features), endpoint=True)
    logits, stats = rtl_infer(compiled, x, p_valid=0.7, p_ready=0.7)
    assert np.array_equal(logits, network.golden(x))
    assert stats.samples == 12


# -- the parts ---------------------------------------------------------------------------------------------------

def test_dest_is_the_consumers_address_of_every_element():
    # a ring of 5 words of 2 lanes, 3 channels per position: element (r, p) at flat r + 3 p, round the ring
    def address(r, p):
        return divmod((r + 3 * p) % 10, 2)
    dest = Dest.of(address, rows=3, items=7, words=5, lanes=2, ring=5)
    assert all(dest.at(r, p) == address(r, p) for r in range(3) for p in range(7))
    assert dest.moves and dest.step == (1, 1)
    # a dense consumer: output r of position p at flat r * 4 + p (torch.flatten of [C, 4])
    dest = Dest.of(lambda r, p: divmod(r * 4 + p, 3), rows=2, items=4, words=3, lanes=3)
    assert [dest.at(r, p) for r in range(2) for p in range(4)] == [divmod(r * 4 + p, 3) for r in range(2)
                                                                    for p in range(4)]
    # one item per sample (a global pool) into a ring of 3 positions of 5 words: the next sample one position on
    dest = Dest.of(lambda r, p: ((p % 3) * 5 + r, 0), rows=5, items=1, words=15, lanes=1, ring=15)
    assert dest.moves and [dest.at(4, p) for p in range(4)] == [(4, 0), (9, 0), (14, 0), (4, 0)]
    with pytest.raises(ValueError, match=r"^Consumer addresses must be table\[row\] \+ item \* step, not \(0, 0\) "
                                         r"for row 0 of item 2"):
        Dest.of(lambda r, p: (r + p * (p < 2), 0), rows=1, items=3, words=4, lanes=1)


def _taps(layer) -> int:
    """Kernel positions inside the input, over every output position, counted one by one."""
    (kh, kw), (sh, sw), (pt, _, pl, _) = layer.kernel2d, layer.stride2d, layer.padding2d
    h, w = (1, layer.in_shape[1]) if layer.dims == 1 else layer.in_shape[1:]
    oh, ow = layer.out_spatial
    return sum(0 <= y * sh - pt + i < h and 0 <= x * sw - pl + j < w
               for y in range(oh) for x in range(ow) for i in range(kh) for j in range(kw))


def test_window_geometry_and_ring_against_enumeration():
    """For the convolutions of many random CNNs: the window's taps (the MACs it issues) counted one by one, and
    every input element of a ring's worth of rows at a distinct word and lane of the ring."""
    checked = 0
    for seed in range(40):
        compiled = CompiledNetwork.default(net.random_cnn(np.random.default_rng(seed)))
        for plan in compiled.plans:
            if plan.kind not in ("conv1d", "conv2d"):
                continue
            layer, win = plan.network_layer, plan.window
            assert win.taps() == _taps(layer), (seed, layer.kernel, layer.stride, layer.padding)
            c = layer.in_shape[0]
            places = {win.address(ch, p) for p in range(win.rows * win.width) for ch in range(c)}
            assert len(places) == win.rows * win.width * c
            assert all(0 <= word < win.ring_words and 0 <= lane < win.lanes for word, lane in places)
            checked += 1
    assert checked > 40


def test_buffer_cost_is_the_generated_memory():
    """The buffer the cost model places (EngineSpec.buffer) is the memory in the generated Verilog."""
    compiled = _rtl_cnn(RTL_SEEDS[1])
    for plan in compiled.plans:
        if plan.window is None or plan.kind not in ("conv1d", "conv2d"):
            continue
        layer = plan.network_layer
        text = to_verilog(LineBuffer(shape=value_shape(layer.in_bits, layer.in_signed), window=plan.window), "lb")
        (msb, last), = re.findall(r"reg \[(\d+):0\] \S+ \[(\d+):0\];", text)
        assert plan.engine.buffer(plan) == (int(last) + 1, int(msb) + 1) == (plan.window.ring_words,
                                                                          plan.window.lanes * layer.in_bits)


def test_line_buffer_bits_reach_the_budget():
    """A convolution's ring of rows is block RAM the UP5K budget counts: a wide image's ring does not fit."""
    rng = np.random.default_rng(0)
    shape = (16, 8, 1000)
    layer = Conv(FixedWeights(rng.integers(-2, 2, (4, 9 * 16)), 3), shape, (3, 3), (1, 1), (1, 1, 1, 1), 1,
                 np.ones(4, np.int64), 8, np.zeros(4, np.int64), True, 8, False, 8, False)
    plan = plan_engine(layer, LayerFolding(lanes=1, pes=1))
    bits, blocks = cost.block_ram(plan)
    assert bits >= plan.window.rows * 1000 * 16 * 8 and blocks > 0
    network = net.Network(net.InputSpec(math.prod(shape), 8, False, shape=shape),
                          (layer, Flatten(layer.out_shape, 8, False)))
    from peforge.synth.flow import get_target

    with pytest.raises(ValueError, match=r"120 kbit of block RAM: its smallest foldings still need .*kbit of block "
                                         r"RAM \(layer 0: \d+ kbit\)"):
        default_folding(network, get_target("ice40-up5k").budget())


# -- errors ------------------------------------------------------------------------------------------------------

def _conv(rng, scheme="fixed", groups=1, shape=(4, 5, 5)):
    c = shape[0]
    n_in = 9 if groups > 1 else 9 * c
    w = SCHEMES[scheme].random(rng, n_in, c, 4, False, SCHEMES[scheme].random_unit(rng) if groups == 1 else 1)
    if scheme == "nm" and groups > 1:
        pytest.skip("no N:M format for 9 weights")
    return Conv(w, shape, (3, 3), (1, 1), (1, 1, 1, 1), groups, np.ones(c, np.int64), 8, np.zeros(c, np.int64),
                True, 4, False, 4, False)


@pytest.mark.parametrize("make, message", [
    (lambda rng: plan_engine(_conv(rng, "crossbar"), LayerFolding()),
     r"^Layer conv2d \(crossbar\) must be a dense layer to be compiled: a crossbar convolution's windows have no "
     r"engine yet$"),
    (lambda rng: plan_engine(_conv(rng, "fixed"), LayerFolding(lanes=3)),
     r"^Layer conv2d lanes must divide its 4 input channels, not 3$"),
    (lambda rng: plan_engine(_conv(rng, "fixed", groups=4), LayerFolding(lanes=8, pes=8)),
     r"^Layer conv2d lanes must divide its 4 input channels, not 8$"),
    (lambda rng: plan_engine(MaxPool((2, 4, 4), (2, 2), (1, 1), 4, False), LayerFolding()),
     r"^Layer maxpool stride must be at least its kernel \(windows that do not overlap\), not \(1, 1\) for kernel "
     r"\(2, 2\)$"),
])
def test_bad_cnn_layers_are_one_line(make, message):
    with pytest.raises(ValueError, match=message):
        make(np.random.default_rng(1))


def test_depthwise_weights_of_other_schemes_are_refused():
    rng = np.random.default_rng(3)
    w = SCHEMES["msq"].random(rng, 9, 4, 4, False, 1)
    layer = Conv(w, (4, 5, 5), (3, 3), (1, 1), (1, 1, 1, 1), 4, np.ones(4, np.int64), 8, np.zeros(4, np.int64),
                 True, 4, False, 4, False)
    with pytest.raises(ValueError, match=r"^Layer conv2d depthwise weights must be one of fixed, sp2 to be compiled, "
                                         r"not msq$"):
        plan_engine(layer, LayerFolding())


# -- command line ------------------------------------------------------------------------------------------------

def test_cli_compile_and_infer_rtl_on_a_cnn(tmp_path):
    compiled = _rtl_cnn(RTL_SEEDS[0])
    network = compiled.network
    network.save(tmp_path / "net")
    x = np.random.default_rng(6).integers(*network.input.range, (10, *network.input.shape), endpoint=True)
    np.save(tmp_path / "x.npy", x)
    run = subprocess.run([sys.executable, "-m", "peforge", "compile", str(tmp_path / "net"), "-o",
                          str(tmp_path / "acc")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert re.search(r"conv1d", run.stdout) and re.search(r"globalavgpool", run.stdout), run.stdout
    run = subprocess.run([sys.executable, "-m", "peforge", "infer", str(tmp_path / "acc"), "--input",
                          str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"), "--rtl"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "RTL == golden on 10/10" in run.stdout, run.stdout
    assert np.array_equal(np.load(tmp_path / "y.npy"), network.golden(x.reshape(10, -1)))


def test_a_serial_requantiser_after_padded_slots_drains_as_predicted():
    """5 output channels on 2 slots (the last row group half padding) with a requantiser taking 3 cycles per
    result: the collector skips the padding, so a position drains in 6 + 6 + 3 cycles, not 3 x 6; the measured
    interval equals the prediction (the bench's budget foldings measured 64/65 and 8/9 of the old formula)."""
    from peforge.tb.network import CHECKS, NetworkDesign
    from peforge.tb.runner import run_design

    compiled = _rtl_cnn(RTL_SEEDS[1]).with_settings({"layer.0.pes": "2", "layer.0.requant": "3"})
    plan = compiled.plans[0]
    assert [sum(r >= 0 for s in plan.slots for r in s.rows[g]) for g in range(plan.groups)] == [2, 2, 1]
    assert plan.group_drains == [6, 6, 3] and compiled.interval == plan.positions * 15
    tests, failures = run_design(NetworkDesign(compiled), testcases=CHECKS, seed=5)
    assert (tests, failures) == (len(CHECKS), 0)
