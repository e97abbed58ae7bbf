"""QONNX in and out: rounding modes, narrow ranges, Brevitas models against execute_onnx, refusals, round trips."""

from __future__ import annotations

import hashlib
import json
import math
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from peforge.sw import network as net
from peforge.sw.requant import requantize

onnx = pytest.importorskip("onnx")
pytest.importorskip("qonnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from qonnx.custom_op.general.intquant import max_int, min_int  # noqa: E402

from peforge.sw.from_qonnx import QONNXError, compare, dequantize_input, from_qonnx, run_qonnx  # noqa: E402
from peforge.sw.to_qonnx import output_scale, to_qonnx  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUANT = "qonnx.custom_op.general"


# -- rounding and narrow ranges against independent math -------------------------------------------------------

def _expected(t: int, shift: int, rounding: str) -> int:
    q = Fraction(t, 1 << shift)
    if rounding == "floor":
        return math.floor(q)
    if rounding == "half_even":
        return round(q)  # Fraction rounds half to even
    return math.floor(q + Fraction(1, 2))


@pytest.mark.parametrize("rounding", ["half_up", "half_even", "floor"])
def test_requantize_roundings_match_exact_rationals(rounding):
    rng = np.random.default_rng(7)
    for shift in (1, 2, 3, 7, 20, 40):
        acc = rng.integers(-5000, 5000, 400)
        mult = rng.integers(0, 1 << 12, 400)
        offset = rng.integers(-(1 << 20), 1 << 20, 400)
        # ties on purpose: t an odd multiple of 2^(S-1)
        offset[:50] = ((2 * rng.integers(-100, 100, 50) + 1) << (shift - 1)) - acc[:50] * mult[:50]
        got = requantize(acc, mult, shift, offset, rounding=rounding)
        want = [_expected(int(a) * int(m) + int(b), shift, rounding) for a, m, b in zip(acc, mult, offset)]
        assert got.tolist() == want


def test_half_even_is_numpy_round():
    t = np.arange(-64, 65)
    assert requantize(t, 1, 2, rounding="half_even").tolist() == np.round(t / 4).astype(int).tolist()


def test_rounding_is_validated():
    with pytest.raises(ValueError, match=r"^Requantisation rounding must be one of 'half_up', 'half_even', "
                                         r"'floor', not 'up'$"):
        requantize([1], 1, 1, rounding="up")


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("narrow", [False, True])
def test_narrow_ranges_are_qonnx_min_max_int(signed, narrow):
    for bits in range(1, 12):
        assert net.narrow_range(bits, signed, narrow) == (min_int(signed, narrow, bits), max_int(signed, narrow, bits))


def test_rounding_and_narrow_round_trip_through_save(tmp_path):
    rng = np.random.default_rng(3)
    network = net.random_network(rng, depth=2, rounding="half_even", narrow=True)
    network.save(tmp_path / "a")
    again = net.load(tmp_path / "a")
    assert again == network
    assert [layer.rounding for layer in again.layers] == ["half_even"] * 2
    assert all(layer.out_narrow for layer in again.layers)
    plain = net.random_network(np.random.default_rng(3), depth=2)
    data, _ = plain.manifest()  # defaults are not written: older manifests and digests stay as they were
    assert all("rounding" not in e["requant"] and "narrow" not in e["output"] for e in data["layers"])
    x = rng.integers(*network.input.range, size=(64, network.in_features), endpoint=True)
    for out, layer in zip(network.layer_outputs(x), network.layers):
        assert out.min() >= layer.out_range[0] and out.max() <= layer.out_range[1]
        lo = min_int(layer.out_signed, True, layer.out_bits)
        assert layer.out_range[0] == (max(lo, 0) if layer.relu else lo)


def test_bad_rounding_in_manifest_names_the_field(tmp_path):
    network = net.random_network(np.random.default_rng(1), depth=1)
    network.save(tmp_path)
    data = json.loads((tmp_path / net.MANIFEST).read_text())
    data["layers"][0]["requant"]["rounding"] = "ceil"
    (tmp_path / net.MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"network\.json: layers\[0\]\.requant\.rounding must be one of 'half_up', "
                                         r"'half_even', 'floor', not 'ceil'$"):
        net.load(tmp_path)


# -- Brevitas models (exported once, cached under build/ by a hash of the recipe) -----------------------------

def brevitas_model(sizes, w_bits, final, *, seed=0, per_channel=False, dynamo=False) -> Path:
    """A seeded Brevitas MLP ``sizes[0] -> ... -> sizes[-1]`` with power-of-two scales, exported with export_qonnx.

    ``final``: ``None`` (unquantised output), ``"int8"`` (Int8 act quantiser) or ``"uint8"`` (QuantReLU).
    """
    recipe = json.dumps([sizes, w_bits, final, seed, per_channel, dynamo, "brevitas-0.13.4", "torch-2.13.0", 2])
    path = ROOT / "build" / "qonnx-models" / f"{hashlib.sha256(recipe.encode()).hexdigest()[:16]}.onnx"
    if path.is_file():
        return path
    import torch
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx
    from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int32Bias,
                                Uint8ActPerTensorFixedPoint)
    from brevitas.quant.fixed_point import Int8WeightPerChannelFixedPoint

    torch.manual_seed(seed)
    wq = Int8WeightPerChannelFixedPoint if per_channel else Int8WeightPerTensorFixedPoint
    mods = [qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)]
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        last = i == len(sizes) - 2
        mods.append(qnn.QuantLinear(a, b, bias=True, weight_quant=wq, bias_quant=Int32Bias,
                                    weight_bit_width=w_bits[i], return_quant_tensor=not last))
        if not last:
            mods.append(qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True))
        elif final == "int8":
            mods.append(qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=False))
        elif final == "uint8":
            mods.append(qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=False))
    model = torch.nn.Sequential(*mods).eval()
    with torch.no_grad():
        model(torch.randn(32, sizes[0]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    export_qonnx(model, torch.randn(1, sizes[0]), str(tmp), **({} if dynamo else {"dynamo": False}))
    tmp.replace(path)
    return path


MODELS = {
    "d1-int8": ([11, 5], [8], "int8", False),
    "d1-raw": ([13, 3], [2], None, False),
    "d2-raw": ([10, 7, 3], [4, 8], None, False),
    "d2-uint8": ([9, 6, 5], [3, 5], "uint8", False),
    "d3-int8-perchannel": ([12, 9, 7, 4], [6, 7, 8], "int8", True),
    "d4-raw": ([17, 11, 9, 6, 3], [2, 3, 5, 8], None, False),
    "d4-uint8-perchannel": ([7, 13, 5, 10, 6], [8, 4, 6, 2], "uint8", True),
}


def _inputs(network, n=300, seed=0):
    """Random input codes plus the extremes of the input range."""
    lo, hi = network.input.range
    x = np.random.default_rng(seed).integers(lo, hi, size=(n, network.in_features), endpoint=True)
    return np.vstack([x, np.full((1, network.in_features), lo), np.full((1, network.in_features), hi)])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_brevitas_golden_equals_execute_onnx(name):
    sizes, w_bits, final, per_channel = MODELS[name]
    path = brevitas_model(sizes, w_bits, final, per_channel=per_channel)
    network = from_qonnx(path)
    assert [layer.in_features for layer in network.layers] == sizes[:-1]
    assert network.layers[-1].out_features == sizes[-1]
    result = compare(path, network, _inputs(network))
    assert result["outputs"] == 302 * sizes[-1]
    assert result["differ"] == 0, result


def test_default_export_path_golden_equals_execute_onnx():
    path = brevitas_model([10, 7, 3], [4, 8], "uint8", seed=5, dynamo=True)  # torch.onnx's dynamo exporter
    network = from_qonnx(path)
    assert compare(path, network, _inputs(network))["differ"] == 0


def test_execute_onnx_input_codes_are_exact():
    """The float inputs compare() feeds quantise to exactly the codes (the documented input convention)."""
    from qonnx.custom_op.general.intquant import int_quant

    path = brevitas_model(*MODELS["d2-raw"][:3])
    network = from_qonnx(path)
    x = _inputs(network)
    xf = dequantize_input(network, x)
    s = np.float32(network.input.scale)
    back = int_quant(xf, s, np.float32(0), np.float32(network.input.bits), network.input.signed, False, "ROUND")
    assert np.array_equal(np.asarray(back, np.float64) / network.input.scale, x)


@pytest.mark.parametrize("name", ["d2-uint8", pytest.param("d1-int8", marks=pytest.mark.slow)])
def test_rtl_infer_equals_execute_onnx(name):
    """The accelerator in Verilator gives exactly execute_onnx's outputs (the second model with -m slow)."""
    from peforge.hw.network import CompiledNetwork
    from peforge.tb.network import rtl_infer

    sizes, w_bits, final, per_channel = MODELS[name]
    path = brevitas_model(sizes, w_bits, final, per_channel=per_channel)
    network = from_qonnx(path)
    x = _inputs(network, n=40, seed=1)
    ref = run_qonnx(path, dequantize_input(network, x, None).reshape(len(x), -1)).reshape(len(x), -1)
    logits, _ = rtl_infer(CompiledNetwork.default(network), x)
    assert np.array_equal(logits * network.layers[-1].out_scale, ref.astype(np.float64)), name


# -- hand-built QONNX graphs ------------------------------------------------------------------------------------

class Graph:
    """A small QONNX graph assembled node by node (tests mutate it to build unsupported constructs)."""

    def __init__(self, features: int):
        self.nodes, self.inits, self.n = [], [], 0
        self.in_shape = [1, features]
        self.tensor = "x"

    def const(self, value, name=None):
        self.n += 1
        name = name or f"c{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(self, op, inputs, domain="", **attrs):
        self.n += 1
        out = f"t{self.n}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{self.n}", domain=domain, **attrs))
        return out

    def quant(self, x, scale, bits, signed=True, narrow=False, mode="ROUND", zp=0.0):
        return self.node("Quant", [x, self.const(scale), self.const(zp), self.const(bits)], QUANT, signed=int(signed),
                         narrow=int(narrow), rounding_mode=mode)

    def act(self, scale, bits, signed=True, **kw):
        self.tensor = self.quant(self.tensor, scale, bits, signed, **kw)

    def dense(self, codes, w_scale, bias_codes=None, relu=False, matmul=False):
        codes = np.asarray(codes, np.float32)
        wq = self.quant(self.const(codes * np.asarray(w_scale, np.float32)), w_scale, 8, narrow=True)
        bias = None if bias_codes is None else self.const(np.asarray(bias_codes, np.float32) * 2.0 ** -12)
        if matmul:
            self.tensor = self.node("MatMul", [self.tensor, self.node("Transpose", [wq])])
            if bias:
                self.tensor = self.node("Add", [self.tensor, bias])
        else:
            self.tensor = self.node("Gemm", [self.tensor, wq] + ([bias] if bias else []), transB=1)
        if relu:
            self.tensor = self.node("Relu", [self.tensor])

    def model(self):
        graph = helper.make_graph(self.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                  self.in_shape)],
                                  [helper.make_tensor_value_info(self.tensor, TensorProto.FLOAT, None)],
                                  initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QUANT, 1)])
        model.ir_version = 8
        return model


def _two_layer(rng, codes0=None, codes1=None, features=8):
    g = Graph(features)
    g.act(2.0 ** -4, 8)
    codes0 = rng.integers(-100, 101, (6, features)) if codes0 is None else codes0
    g.dense(codes0, 2.0 ** -6, rng.integers(-500, 500, 6), relu=True)
    g.act(2.0 ** -3, 6, signed=False)
    codes1 = rng.integers(-100, 101, (4, 6)) if codes1 is None else codes1
    g.dense(codes1, 2.0 ** -7, rng.integers(-500, 500, 4))
    g.act(2.0 ** -2, 8, mode="FLOOR")
    return g


def _exact(model, network):
    return compare(model, network, _inputs(network, 200))["differ"] == 0


def test_hand_built_model_with_floor_and_matmul():
    rng = np.random.default_rng(0)
    g = Graph(8)
    g.act(2.0 ** -4, 8)
    g.dense(rng.integers(-100, 101, (5, 8)), 2.0 ** -6, rng.integers(-500, 500, 5), matmul=True)
    g.act(2.0 ** -2, 7, mode="FLOOR", narrow=True)
    network = from_qonnx(g.model())
    assert network.layers[0].rounding == "floor" and network.layers[0].out_range == (-63, 63)
    assert _exact(g.model(), network)


def test_nm_and_sp2_schemes_from_qonnx():
    rng = np.random.default_rng(1)
    dense = rng.integers(-100, 101, (6, 8))
    sparse = dense * (np.arange(8) % 4 < 2)          # 2:4 in every group
    sp2 = rng.choice([0, 1, 2, 4, 5, 6, 8, -1, -2, -4, -5, -6, -8], (4, 6)) * 4  # SP2(4) levels times 2^2
    g = _two_layer(rng, sparse, sp2)
    network = from_qonnx(g.model(), schemes={0: "nm", 1: "sp2"})
    assert network.layers[0].scheme == "nm" and network.layers[0].weights.fmt.to_dict() == {"n": 2, "m": 4}
    assert network.layers[1].scheme == "sp2"
    assert np.array_equal(network.layers[1].weights.fmt.decode(network.layers[1].weights.codes) * 4, sp2)
    assert _exact(g.model(), network)
    with pytest.raises(QONNXError, match=r"^QONNX node 'Gemm_\d+' \(Gemm\) weights must be N:M sparse"):
        from_qonnx(_two_layer(rng, dense).model(), schemes={0: "nm"})


def test_non_power_of_two_scales_are_close_and_counted():
    rng = np.random.default_rng(2)
    g = Graph(8)
    g.act(0.0371, 8)
    g.dense(rng.integers(-100, 101, (6, 8)), 0.00913, relu=True)
    g.act(0.0517, 8, signed=False)
    network = from_qonnx(g.model())
    result = compare(g.model(), network, _inputs(network, 500))
    assert result["max_lsb"] <= 1  # the 31-bit multiplier is off by far less than one output step
    assert result["differ"] <= result["outputs"] // 20


def _refusal_cases():
    rng = np.random.default_rng(4)

    def base(features=8):
        g = Graph(features)
        g.act(2.0 ** -4, 8)
        return g

    def conv():  # 1-D and 2-D convolutions compile; a 3-D one does not
        g = Graph(8)
        g.in_shape = [1, 1, 4, 4, 4]
        g.act(2.0 ** -4, 8)
        g.tensor = g.node("Conv", [g.tensor, g.const(np.ones((2, 1, 3, 3, 3)))])
        return g

    def batchnorm():
        g = base()
        g.dense(rng.integers(-9, 9, (4, 8)), 2.0 ** -6)
        ones = np.ones(4)
        g.tensor = g.node("BatchNormalization", [g.tensor] + [g.const(ones) for _ in range(4)])
        return g

    def sigmoid():
        g = base()
        g.dense(rng.integers(-9, 9, (4, 8)), 2.0 ** -6)
        g.tensor = g.node("Sigmoid", [g.tensor])
        return g

    def zero_point():
        g = Graph(8)
        g.act(2.0 ** -4, 8, zp=3.0)
        g.dense(rng.integers(-9, 9, (4, 8)), 2.0 ** -6)
        return g

    def three_d():
        g = Graph(8)
        g.in_shape = [1, 2, 8]
        g.act(2.0 ** -4, 8)
        g.dense(rng.integers(-9, 9, (4, 8)), 2.0 ** -6, matmul=True)
        return g

    def residual():
        g = base()
        skip = g.tensor
        g.dense(rng.integers(-9, 9, (8, 8)), 2.0 ** -6)
        g.act(2.0 ** -4, 8)
        g.tensor = g.node("Add", [g.tensor, skip])
        return g

    def float_weight():
        g = base()
        g.tensor = g.node("Gemm", [g.tensor, g.const(rng.normal(size=(4, 8)))], transB=1)
        return g

    def unquantised_input():
        g = base()
        g.dense(rng.integers(-9, 9, (4, 8)), 2.0 ** -6, relu=True)
        g.dense(rng.integers(-9, 9, (3, 4)), 2.0 ** -6)
        return g

    def ceil_rounding():
        g = base()
        g.dense(rng.integers(-9, 9, (4, 8)), 2.0 ** -6)
        g.act(2.0 ** -2, 8, mode="CEIL")
        return g

    def bipolar():
        g = base()
        g.tensor = g.node("BipolarQuant", [g.tensor, g.const(1.0)], QUANT)
        return g

    def per_channel_act():
        g = base()
        g.dense(rng.integers(-9, 9, (4, 8)), 2.0 ** -6)
        g.act(np.full(4, 2.0 ** -2), 8)
        return g

    def trans_a():
        g = base()
        wq = g.quant(g.const(np.ones((8, 4)) * 2.0 ** -6), 2.0 ** -6, 8)
        g.tensor = g.node("Gemm", [g.tensor, wq], transA=1)
        return g

    def wide_weights():
        g = base()
        codes = rng.integers(-9, 9, (4, 8)).astype(np.float32)
        wq = g.quant(g.const(codes * 2.0 ** -6), 2.0 ** -6, 20)
        g.tensor = g.node("Gemm", [g.tensor, wq], transB=1)
        return g

    def softmax():
        g = base()
        g.dense(rng.integers(-9, 9, (4, 8)), 2.0 ** -6)
        g.tensor = g.node("Softmax", [g.tensor])
        return g

    def branch():
        g = base()
        x = g.tensor
        g.dense(rng.integers(-9, 9, (4, 8)), 2.0 ** -6)
        g.node("Relu", [x])
        return g

    def no_input_quant():
        g = Graph(8)
        g.dense(rng.integers(-9, 9, (4, 8)), 2.0 ** -6)
        return g

    return {
        "conv": (conv, r"'Conv_\d+' \(Conv\) must be 1-D or 2-D \(input \[batch, C, L\] or \[batch, C, H, W\]\), "
                       r"not 3-D \(input shape \[1, 1, 4, 4, 4\]\)$"),
        "batchnorm": (batchnorm, r"'BatchNormalization_\d+' \(BatchNormalization\) must be one of Quant, Gemm"),
        "sigmoid": (sigmoid, r"'Sigmoid_\d+' \(Sigmoid\) must be one of Quant, Gemm"),
        "zero-point": (zero_point, r"'Quant_\d+' \(Quant\) zero point must be 0 \(peforge quantisation is "
                                   r"symmetric\), not 3\.0$"),
        "3-d input": (three_d, r"'MatMul_\d+' \(MatMul\) input must be 2-D \[batch, features\] \(flatten it "
                               r"first\), not shape \[1, 2, 8\]"),
        "residual add": (residual, r"tensor '\w+' must feed exactly one node \(peforge compiles chains: no "
                                   r"branches or residual Adds\), not 'Gemm_\d+' \(Gemm\), 'Add_\d+' \(Add\)"),
        "float weight": (float_weight, r"'Gemm_\d+' \(Gemm\) weight must be a Quant of a constant \(peforge "
                                       r"compiles quantised weights\), not a constant without a Quant"),
        "unquantised activation": (unquantised_input, r"'Gemm_\d+' \(Gemm\) input must come from a Quant node"),
        "ceil rounding": (ceil_rounding, r"'Quant_\d+' \(Quant\) rounding_mode must be ROUND, HALF_EVEN, FLOOR "
                                         r"\(or HALF_UP on unsigned or ReLU outputs\), not 'CEIL'"),
        "bipolar": (bipolar, r"'BipolarQuant_\d+' \(BipolarQuant\) must be one of Quant, Gemm"),
        "per-channel activation": (per_channel_act, r"'Quant_\d+' \(Quant\) activation scale must be one per "
                                                    r"tensor, not shape \(4,\)"),
        "transA": (trans_a, r"'Gemm_\d+' \(Gemm\) transA must be 0, not 1"),
        "20-bit weights": (wide_weights, r"'Quant_\d+' \(Quant\) weight bits must be 2 to 16 signed \(1 to 15 "
                                         r"unsigned\), not 20 signed"),
        "softmax": (softmax, r"'Softmax_\d+' \(Softmax\) must be one of Quant, Gemm"),
        "branch": (branch, r"tensor '\w+' must feed exactly one node"),
        "no input quant": (no_input_quant, r"'Gemm_\d+' \(Gemm\) input must come from a Quant node"),
    }


REFUSALS = _refusal_cases()


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_unsupported_constructs_are_refused_in_one_line(case):
    build, message = REFUSALS[case]
    with pytest.raises(QONNXError) as info:
        from_qonnx(build().model())
    text = str(info.value)
    assert "\n" not in text
    assert re.search(message, text), text


# -- out: round trips -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", list(net.SCHEMES))
@pytest.mark.parametrize("rounding", ["half_up", "half_even", "floor"])
def test_export_round_trip_random_networks(scheme, rounding):
    rng = np.random.default_rng(list(net.SCHEMES).index(scheme))
    network = net.random_network(rng, schemes=[scheme], rounding=rounding, narrow=rounding == "floor")
    model = to_qonnx(network)
    x = _inputs(network, 60)
    y = run_qonnx(model, dequantize_input(network, x) if network.input.scale else x.astype(np.float32))
    assert np.array_equal(y.astype(np.float64), network.golden(x) * output_scale(network))
    if scheme not in ("fixed", "nm"):
        assert {n.domain for n in model.graph.node} >= {"peforge.sw.qonnx_ops"}


@pytest.mark.parametrize("name", ["d2-uint8", "d3-int8-perchannel", "d1-raw"])
@pytest.mark.parametrize("rounding", ["half_up", "half_even", "floor"])
def test_export_round_trip_is_standard_quant_gemm(name, rounding):
    import dataclasses

    sizes, w_bits, final, per_channel = MODELS[name]
    network = from_qonnx(brevitas_model(sizes, w_bits, final, per_channel=per_channel))
    network = net.Network(network.input, tuple(dataclasses.replace(layer, rounding=rounding)
                                               for layer in network.layers))
    model = to_qonnx(network)
    assert {n.op_type for n in model.graph.node} <= {"Quant", "Gemm", "Relu"}
    x = _inputs(network, 200)
    y = run_qonnx(model, dequantize_input(network, x))
    assert np.array_equal(y.astype(np.float64), network.golden(x) * output_scale(network))
    again = from_qonnx(model)  # and back in: the same integers
    assert np.array_equal(again.golden(x) * again.layers[-1].out_scale, network.golden(x) * output_scale(network))


def test_export_nm_and_sp2_round_trip():
    rng = np.random.default_rng(1)
    sparse = rng.integers(-100, 101, (6, 8)) * (np.arange(8) % 4 < 2)
    sp2 = rng.choice([0, 1, 2, 4, 5, 6, 8, -1, -2, -4, -5, -6, -8], (4, 6))
    network = from_qonnx(_two_layer(rng, sparse, sp2).model(), schemes={0: "nm", 1: "sp2"})
    model = to_qonnx(network)
    assert [n.op_type for n in model.graph.node if n.op_type != "Quant"] == ["Gemm", "Relu", "SP2Dense"]
    x = _inputs(network, 100)
    assert np.array_equal(run_qonnx(model, dequantize_input(network, x)).astype(np.float64),
                          network.golden(x) * output_scale(network))


# -- the command line -------------------------------------------------------------------------------------------

def test_cli_compile_export_and_refusal(tmp_path, capsys):
    from peforge.cli import main

    path = brevitas_model(*MODELS["d2-raw"][:3])
    assert main(["compile", str(path), "-o", str(tmp_path / "c"), "--set", "layer.1.scheme=fixed",
                 "--set", "layer.0.lanes=5"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"against execute_onnx on 256 random inputs: 0 of 768 outputs differ", out), out
    assert main(["export", str(tmp_path / "c"), "-o", str(tmp_path / "m.onnx")]) == 0
    assert re.search(r"wrote .*m\.onnx: 2 layers as Gemm, Relu, Gemm", capsys.readouterr().out)
    network = net.load(tmp_path / "c")
    x = _inputs(network, 50)
    assert np.array_equal(run_qonnx(tmp_path / "m.onnx", dequantize_input(network, x)).astype(np.float64),
                          network.golden(x) * network.layers[-1].out_scale)
    bad = tmp_path / "bad.onnx"
    onnx.save(REFUSALS["conv"][0]().model(), str(bad))
    assert main(["compile", str(bad), "-o", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(r"^peforge compile: error: QONNX node 'Conv_\d+' \(Conv\) must be", err)


# -- Brevitas CNNs (trained briefly on scikit-learn's digits, exported once, cached under build/) -----------------

def digits_images(dims):
    """Digits images as float32 ``[N, 1, 8, 8]`` in [0, 1] (2-D), or ``[N, 8, 8]`` (1-D: rows as channels)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)
    return (x[:, None] if dims == 2 else x), data.target.astype(np.int64)


def brevitas_cnn(name) -> Path:
    """The Brevitas CNN of recipe ``CNNS[name]``, trained for a few epochs on the digits and exported with
    export_qonnx (cached under build/qonnx-models/ by a hash of the recipe)."""
    recipe = CNNS[name]
    key = json.dumps([recipe, "brevitas-0.13.4", "torch-2.13.0", "cnn", 4])
    path = ROOT / "build" / "qonnx-models" / f"cnn-{hashlib.sha256(key.encode()).hexdigest()[:16]}.onnx"
    if path.is_file():
        return path
    import torch
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx
    from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int32Bias,
                                Uint8ActPerTensorFixedPoint)
    from brevitas.quant.fixed_point import Int8WeightPerChannelFixedPoint

    torch.manual_seed(recipe.get("seed", 0))
    dims = recipe["dims"]
    conv = {1: qnn.QuantConv1d, 2: qnn.QuantConv2d}[dims]
    maxpool = {1: torch.nn.MaxPool1d, 2: torch.nn.MaxPool2d}[dims]
    avgpool = {1: torch.nn.AvgPool1d, 2: torch.nn.AvgPool2d}[dims]
    gap = {1: torch.nn.AdaptiveAvgPool1d, 2: torch.nn.AdaptiveAvgPool2d}[dims]
    wq = Int8WeightPerChannelFixedPoint if recipe.get("per_channel") else Int8WeightPerTensorFixedPoint
    x, y = digits_images(dims)
    x, y = x[:recipe.get("train", 1024)], y[:recipe.get("train", 1024)]
    channels = x.shape[1]
    mods = [qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)]
    for op, *args in recipe["layers"]:
        if op == "conv":  # out channels, kernel, stride, padding, groups ("dw": depthwise)
            out, kernel, stride, padding, groups = args
            groups = channels if groups == "dw" else groups
            mods.append(conv(channels, out, kernel, stride=stride, padding=padding, groups=groups, bias=True,
                             weight_quant=wq, bias_quant=Int32Bias, weight_bit_width=recipe.get("w_bits", 8),
                             return_quant_tensor=True))
            channels = out
        elif op == "relu":
            mods.append(qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True))
        elif op == "act":
            mods.append(qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True))
        elif op == "maxpool":
            mods.append(maxpool(*args))
        elif op == "avgpool":
            mods.append(avgpool(*args))
        elif op == "gap":
            mods.append(gap(1))
        elif op == "truncavg":
            mods.append(qnn.TruncAvgPool2d(args[0], return_quant_tensor=True))
        elif op == "truncgap":
            mods.append(qnn.TruncAdaptiveAvgPool2d((1, 1), return_quant_tensor=True))
        elif op == "flatten":
            mods.append(torch.nn.Flatten())
        elif op == "linear":
            with torch.no_grad():
                features = torch.nn.Sequential(*mods)(torch.from_numpy(x[:2])).value.reshape(2, -1).shape[1]
            last = recipe["final"] is None
            mods.append(qnn.QuantLinear(features, args[0], bias=True, weight_quant=wq, bias_quant=Int32Bias,
                                        weight_bit_width=recipe.get("w_bits", 8), return_quant_tensor=not last))
        else:
            raise ValueError(op)
    if recipe["final"] == "int8":
        mods.append(qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=False))
    model = torch.nn.Sequential(*mods)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.get("lr", 0.01))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(recipe.get("epochs", 3)):
        for i in torch.randperm(len(xt)).split(32):
            out = model(xt[i])
            out = out.value if hasattr(out, "value") else out
            loss = torch.nn.functional.cross_entropy(out.reshape(len(i), -1)[:, :10], yt[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    export_qonnx(model, torch.from_numpy(x[:1]), str(tmp), dynamo=False)
    tmp.replace(path)
    return path


#: name -> recipe; "kinds" the layers from_qonnx makes of it.
CNNS = {
    "conv2d-pad-maxpool-stride": {
        "dims": 2, "final": None, "layers": [("conv", 6, 3, 1, 1, 1), ("relu",), ("maxpool", 2),
                                             ("conv", 8, 3, 2, 1, 1), ("relu",), ("flatten",), ("linear", 10)],
        "kinds": ["conv2d", "maxpool", "conv2d", "flatten", "dense"]},
    "conv2d-depthwise-truncavg": {
        "dims": 2, "final": "int8", "per_channel": True,
        "layers": [("conv", 4, 3, 1, 1, 1), ("relu",), ("conv", 8, 3, 1, 1, "dw"), ("relu",), ("truncavg", 2),
                   ("flatten",), ("linear", 10)],
        "kinds": ["conv2d", "conv2d", "avgpool", "flatten", "dense"]},
    "conv2d-maxpool-before-relu-avgpool3": {
        "dims": 2, "final": None, "w_bits": 4,
        "layers": [("conv", 6, 3, 1, 0, 1), ("maxpool", 2), ("relu",), ("conv", 12, 1, 1, 0, 1), ("relu",),
                   ("avgpool", 3), ("relu",), ("flatten",), ("linear", 10)],
        "kinds": ["conv2d", "maxpool", "conv2d", "avgpool", "flatten", "dense"]},
    "conv2d-signed-gap": {
        "dims": 2, "final": "int8",
        "layers": [("conv", 8, 3, 1, 1, 1), ("act",), ("conv", 8, 3, 2, 1, "dw"), ("relu",), ("gap",), ("relu",),
                   ("flatten",), ("linear", 10)],
        "kinds": ["conv2d", "conv2d", "globalavgpool", "flatten", "dense"]},
    "conv2d-truncgap-head": {  # all-convolutional: ends in a global pool (an output scale that is not 2^k)
        "dims": 2, "final": None,
        "layers": [("conv", 8, 3, 1, 0, 1), ("relu",), ("maxpool", 2), ("conv", 10, 1, 1, 0, 1), ("relu",),
                   ("truncgap",), ("flatten",)],
        "kinds": ["conv2d", "maxpool", "conv2d", "globalavgpool", "flatten"]},
    "conv1d-pad-stride-maxpool": {
        "dims": 1, "final": None,
        "layers": [("conv", 12, 3, 2, 2, 1), ("maxpool", 2), ("relu",), ("conv", 12, 3, 1, 1, "dw"), ("relu",),
                   ("flatten",), ("linear", 10)],
        "kinds": ["conv1d", "maxpool", "conv1d", "flatten", "dense"]},
    "conv1d-avgpool-int8": {
        "dims": 1, "final": "int8", "per_channel": True,
        "layers": [("conv", 8, 5, 1, 2, 1), ("relu",), ("avgpool", 2), ("relu",), ("flatten",), ("linear", 10)],
        "kinds": ["conv1d", "avgpool", "flatten", "dense"]},
}
EXACT_CNNS = sorted(CNNS)


@pytest.mark.parametrize("name", sorted(EXACT_CNNS))
def test_brevitas_cnn_golden_equals_execute_onnx(name):
    """Every Brevitas CNN: the layers expected, and the integer network times the output scale equals execute_onnx
    bit for bit, on random input codes with the extremes and on the real digits (quantised by the model's Quant)."""
    from peforge.sw.from_qonnx import quantize_input

    path = brevitas_cnn(name)
    network = from_qonnx(path)
    assert [layer.kind for layer in network.layers] == CNNS[name]["kinds"]
    dims = CNNS[name]["dims"]
    assert network.input.shape == ((1, 8, 8) if dims == 2 else (8, 8))
    result = compare(path, network, _inputs(network, 200))
    assert result["differ"] == 0 and result["outputs"] == 202 * network.layers[-1].out_shape[0], result
    x, _ = digits_images(dims)
    x = x[-120:]  # real images the model was not trained on
    codes = quantize_input(path, x)
    want = run_qonnx(path, x).reshape(len(x), -1)
    # the exact real outputs, rounded once to the executor's float32 (a no-op for power-of-two scales)
    assert np.array_equal((network.golden(codes) * network.out_scale).astype(np.float32), want)


def test_brevitas_cnn_geometry_and_requantisation():
    """What the front-end read from the exports: padding, strides, depthwise groups, per-channel requantisation,
    the pools' requantisation (a power-of-two Trunc, an exact floor fit for a 3 x 3 average)."""
    net = from_qonnx(brevitas_cnn("conv2d-pad-maxpool-stride"))
    conv0, pool, conv1 = net.layers[:3]
    assert (conv0.kernel, conv0.stride, conv0.padding, conv0.groups) == ((3, 3), (1, 1), (1, 1, 1, 1), 1)
    assert (pool.kernel, pool.stride, pool.out_shape) == ((2, 2), (2, 2), (6, 4, 4))
    assert (conv1.stride, conv1.out_shape, conv1.in_bits, conv1.in_signed) == ((2, 2), (8, 2, 2), 8, False)
    net = from_qonnx(brevitas_cnn("conv2d-depthwise-truncavg"))
    dw, avg = net.layers[1:3]
    assert dw.groups == 4 and dw.out_channels == 8 and dw.weights.in_features == 9  # channel multiplier 2
    assert (avg.kernel, int(avg.multiplier[0]), avg.shift, avg.rounding) == ((2, 2), 1, 2, "half_even")
    net = from_qonnx(brevitas_cnn("conv2d-maxpool-before-relu-avgpool3"))
    assert net.layers[0].relu and net.layers[0].out_range[0] == 0  # the Relu after the MaxPool is the conv's
    avg3 = net.layers[3]
    assert avg3.window == 9 and avg3.rounding == "floor"
    net = from_qonnx(brevitas_cnn("conv1d-pad-stride-maxpool"))
    assert (net.layers[0].kind, net.layers[0].padding, net.layers[0].stride) == ("conv1d", (2, 2), (2,))
    head = from_qonnx(brevitas_cnn("conv2d-truncgap-head"))
    gap = head.layers[-2]
    assert gap.window == 9 and (int(gap.multiplier[0]), gap.shift) == (1, 4)  # W / 16 (TruncAvgPool: 2^round(log2 9))
    s_in = head.layers[-3].out_scale
    assert gap.out_scale == float(np.float32(s_in * 16 / 9))  # a scale that is not a power of two


@pytest.mark.parametrize("name", ["conv2d-pad-maxpool-stride", "conv2d-depthwise-truncavg", "conv1d-avgpool-int8",
                                  "conv2d-signed-gap"])
def test_cnn_export_round_trip_is_standard_ops(name):
    """A Brevitas CNN with power-of-two scales and windows goes back out as standard QONNX (Conv, MaxPool,
    AveragePool, GlobalAveragePool, Flatten, Gemm), which execute_onnx runs as peforge's golden, and comes back
    in as the same integers."""
    network = from_qonnx(brevitas_cnn(name))
    model = to_qonnx(network)
    assert {n.op_type for n in model.graph.node} <= {"Quant", "Conv", "Relu", "MaxPool", "AveragePool",
                                                     "GlobalAveragePool", "Flatten", "Gemm"}
    x = _inputs(network, 100)
    want = network.golden(x) * output_scale(network)
    assert np.array_equal(run_qonnx(model, dequantize_input(network, x)).reshape(len(x), -1).astype(np.float64), want)
    again = from_qonnx(model)
    assert [layer.kind for layer in again.layers] == [layer.kind for layer in network.layers]
    assert np.array_equal(again.golden(x) * again.layers[-1].out_scale, want)


def _random_cnn(rng, scheme):
    """conv 3x3 (pad 1, scheme) -> maxpool 2 -> depthwise conv -> avgpool 3 (a custom op) -> flatten -> dense
    (scheme); unsigned 6-bit activations, a wide last layer."""
    from peforge.sw.conv import AvgPool, Conv, Flatten, MaxPool

    def weights(rows, cols, scheme):
        return net.SCHEMES[scheme].random(rng, cols, rows, 6, False, {"nm": 4, "circulant": 4}.get(scheme, 1))

    def req(channels, shift=12):
        return rng.integers(1, 1 << 9, channels), shift, rng.integers(-(1 << 13), 1 << 13, channels)

    scale = 2.0 ** -5
    layers = [Conv(weights(8, 9 * 4, scheme), (4, 8, 8), (3, 3), (1, 1), (1, 1, 1, 1), 1, *req(8), True, 6, False,
                   6, False, out_scale=scale),
              MaxPool((8, 8, 8), (2, 2), (2, 2), 6, False)]
    dw_scheme = "fixed" if scheme == "circulant" else scheme  # circulant convolutions are not depthwise
    layers.append(Conv(weights(8, 9, dw_scheme if dw_scheme != "nm" else "fixed"), (8, 4, 4), (3, 3), (1, 1),
                       (0, 1, 1, 0), 8, *req(8), True, 6, False, 6, False, out_scale=scale))
    layers.append(AvgPool((8, 3, 3), (3, 3), (1, 1), np.full(8, 455), 12, np.full(8, 1000), False, 6, False, 6,
                          False, out_scale=scale, rounding="floor"))
    layers.append(Flatten((8, 1, 1), 6, False))
    layers.append(net.Layer(weights(5, 8, scheme), *req(5, 8), False, 6, False, 28, True))
    return net.Network(net.InputSpec(256, 6, False, scale, shape=(4, 8, 8)), tuple(layers))


@pytest.mark.parametrize("scheme", list(net.SCHEMES))
def test_export_round_trip_random_cnns(scheme):
    """Convolutions and pools of every scheme out to QONNX: standard ops where float32 is exact, the peforge
    domain's FixedConv / SP2Conv / ... / AvgPool nodes elsewhere; execute_onnx equals the golden model."""
    network = _random_cnn(np.random.default_rng(list(net.SCHEMES).index(scheme)), scheme)
    model = to_qonnx(network)
    ops = [n.op_type for n in model.graph.node if n.op_type != "Quant"]
    assert "MaxPool" in ops and "Flatten" in ops and "AvgPool" in ops  # a 3x3 average is not a float32 AveragePool
    if scheme not in ("fixed", "nm"):
        assert ops[0] in {"SP2Conv", "MSQConv", "CirculantConv", "CrossbarConv"}
    x = _inputs(network, 40)
    y = run_qonnx(model, dequantize_input(network, x)).reshape(len(x), -1)
    assert y.dtype == np.float64  # 28-bit logits travel as DOUBLE
    assert np.array_equal(y, network.golden(x) * output_scale(network))


class ConvGraph(Graph):
    """:class:`Graph` with the CNN nodes."""

    def conv(self, codes, w_scale, bias, **attrs):
        codes = np.asarray(codes, np.float32)
        wq = self.quant(self.const(codes * np.float32(w_scale)), w_scale, 8, narrow=True)
        inputs = [self.tensor, wq] + ([self.const(bias)] if bias is not None else [])
        self.tensor = self.node("Conv", inputs, **attrs)

    def op(self, op, domain="", inputs=(), **attrs):
        self.tensor = self.node(op, [self.tensor, *inputs], domain, **attrs)


def test_non_power_of_two_scales_exact_in_a_cnn():
    """Scales 3 * 2^k: every requantisation ratio is a power of two and every float32 value exact, so a CNN with
    them is exact too (as is a Trunc average pool with a scale of 1/9 of a power of two)."""
    rng = np.random.default_rng(11)
    g = ConvGraph(0)
    g.in_shape = [1, 2, 6, 6]
    s_in, s_w = 3 * 2.0 ** -8, 2.0 ** -6
    g.act(s_in, 8)
    g.conv(rng.integers(-60, 61, (4, 2, 3, 3)), s_w, rng.integers(-300, 300, 4) * s_in * s_w, pads=[1, 0, 1, 2],
           strides=[1, 2], kernel_shape=[3, 3])
    g.op("Relu")
    g.act(3 * 2.0 ** -5, 8, signed=False)
    g.op("MaxPool", kernel_shape=[2, 1], strides=[2, 1])
    g.op("Flatten", axis=1)
    g.dense(rng.integers(-100, 101, (5, 4 * 3 * 3)), 2.0 ** -7)
    g.act(3 * 2.0 ** -3, 8)
    network = from_qonnx(g.model())
    assert [layer.kind for layer in network.layers] == ["conv2d", "maxpool", "flatten", "dense"]
    assert network.layers[0].padding == (1, 1, 0, 2) and network.layers[0].multiplier.max() < 1 << 10
    assert _exact(g.model(), network)


def test_average_over_an_even_window_with_round_differs_only_at_ties():
    """A 6 x 6 global average requantised by a ROUND Quant: a window sum that is an odd multiple of 18 is a tie
    of sum / 36, which execute_onnx rounds to even; one integer requantisation (a multiplier over 2^S) cannot round
    ties both ways, so those (and only those) may differ by one code. compare() counts them."""
    g = ConvGraph(0)
    g.in_shape = [1, 1, 6, 6]
    g.act(2.0 ** -4, 6, signed=False)
    g.op("GlobalAveragePool")
    g.act(2.0 ** -4, 6, signed=False)
    g.op("Flatten", axis=1)
    network = from_qonnx(g.model())
    gap = network.layers[0]
    assert gap.kind == "globalavgpool" and gap.rounding == "half_even"
    sums = np.arange(0, 36 * 63 + 1)
    x = np.zeros((len(sums), 36), np.int64)
    for j in range(36):
        x[:, j] = np.clip(sums - 63 * j, 0, 63)
    ref = run_qonnx(g.model(), dequantize_input(network, x, load_model_for(g.model()))).reshape(len(x))
    ours = network.golden(x).reshape(len(x))
    differ = np.flatnonzero(ours != np.rint(ref / 2.0 ** -4))
    assert len(differ) > 0 and np.all(sums[differ] % 36 == 18)
    assert np.all(np.abs(ours[differ] - np.rint(ref[differ] / 2.0 ** -4)) == 1)


def load_model_for(model):
    from peforge.sw.from_qonnx import load_model

    return load_model(model)


def _cnn_refusals():
    rng = np.random.default_rng(5)

    def base(shape=(1, 4, 6, 6)):
        g = ConvGraph(0)
        g.in_shape = list(shape)
        g.act(2.0 ** -4, 8)
        return g

    def dilated():
        g = base()
        g.conv(rng.integers(-9, 9, (4, 4, 3, 3)), 2.0 ** -6, None, dilations=[2, 2])
        return g

    def grouped():
        g = base()
        g.conv(rng.integers(-9, 9, (4, 2, 3, 3)), 2.0 ** -6, None, group=2)
        return g

    def padded_maxpool():
        g = base()
        g.op("MaxPool", kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1])
        return g

    def ceil_maxpool():
        g = base((1, 4, 5, 5))
        g.op("MaxPool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
        return g

    def padded_avgpool():
        g = base()
        g.op("AveragePool", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        return g

    def lone_trunc():
        g = base()
        g.op("Trunc", QUANT, [g.const(2.0 ** -4), g.const(0.0), g.const(8.0), g.const(2.0 ** -2), g.const(6.0)],
             rounding_mode="FLOOR")
        return g

    def unquantised_pool():
        g = base()
        g.conv(rng.integers(-9, 9, (4, 4, 3, 3)), 2.0 ** -6, None)
        g.op("AveragePool", kernel_shape=[2, 2], strides=[2, 2])
        return g

    def float_conv_weight():
        g = base()
        g.tensor = g.node("Conv", [g.tensor, g.const(np.ones((2, 4, 3, 3)))])
        return g

    return {
        "dilated conv": (dilated, r"^QONNX node 'Conv_\d+' \(Conv\) dilations must be 1 \(peforge windows are "
                                  r"dense\), not \[2, 2\]$"),
        "grouped conv": (grouped, r"^QONNX node 'Conv_\d+' \(Conv\) group must be 1 or the 4 input channels "
                                  r"\(depthwise\), not 2 \(weight shape \[4, 2, 3, 3\]\)$"),
        "padded maxpool": (padded_maxpool, r"^QONNX node 'MaxPool_\d+' \(MaxPool\) pads must be 0 \(peforge pools "
                                           r"take no padding\), not \[1, 1, 1, 1\]$"),
        "ceil_mode maxpool": (ceil_maxpool, r"^QONNX node 'MaxPool_\d+' \(MaxPool\) output must be \[batch, 4, 2, 2\] "
                                            r"\(peforge's window arithmetic\), not shape \[1, 4, 3, 3\]$"),
        "padded avgpool": (padded_avgpool, r"^QONNX node 'AveragePool_\d+' \(AveragePool\) pads must be 0"),
        "trunc alone": (lone_trunc, r"^QONNX node 'Trunc_\d+' \(Trunc\) must follow an AveragePool or "
                                    r"GlobalAveragePool \(a Brevitas TruncAvgPool\), not Quant$"),
        "pool of an unquantised conv": (unquantised_pool, r"^QONNX node 'AveragePool_\d+' \(AveragePool\) input must "
                                                          r"come from a Quant node"),
        "float conv weight": (float_conv_weight, r"^QONNX node 'Conv_\d+' \(Conv\) weight must be a Quant of a "
                                                 r"constant \(peforge compiles quantised weights\), not a constant "
                                                 r"without a Quant"),
    }


CNN_REFUSALS = _cnn_refusals()


@pytest.mark.parametrize("case", sorted(CNN_REFUSALS))
def test_unsupported_cnn_constructs_are_refused_in_one_line(case):
    build, message = CNN_REFUSALS[case]
    with pytest.raises(QONNXError) as info:
        from_qonnx(build().model())
    assert re.search(message, str(info.value)), str(info.value)


def test_nm_and_sp2_schemes_on_convolutions():
    """`schemes` counts the network's layers (pools and flattens too): an N:M conv keeps its groups inside one kernel
    position (along the input channels), an SP2 conv folds its per-row powers of two into the requantisation."""
    rng = np.random.default_rng(12)
    g = ConvGraph(0)
    g.in_shape = [1, 4, 5, 5]
    g.act(2.0 ** -4, 8)
    sparse = rng.integers(-100, 101, (6, 4, 3, 3)) * (np.arange(4) % 4 < 2)[None, :, None, None]  # 2:4 per position
    g.conv(sparse, 2.0 ** -6, rng.integers(-500, 500, 6) * 2.0 ** -10, pads=[1, 1, 1, 1])
    g.op("Relu")
    g.act(2.0 ** -3, 6, signed=False)
    g.op("MaxPool", kernel_shape=[2, 2], strides=[1, 1])
    sp2 = rng.choice([0, 1, 2, 4, 5, 6, 8, -1, -2, -4, -5, -6, -8], (4, 6, 2, 2)) * 4
    g.conv(sp2, 2.0 ** -7, None)
    g.act(2.0 ** -2, 8, mode="FLOOR")
    network = from_qonnx(g.model(), schemes={0: "nm", 2: "sp2"})
    assert [(layer.kind, getattr(layer, "scheme", None)) for layer in network.layers] == [
        ("conv2d", "nm"), ("maxpool", None), ("conv2d", "sp2")]
    assert network.layers[0].weights.fmt.to_dict() == {"n": 2, "m": 4}
    assert _exact(g.model(), network)
    with pytest.raises(ValueError, match=r"^Layer 1 scheme must be set on a layer with weights \(Gemm, MatMul or "
                                         r"Conv\), not on the MaxPool layer 1$"):
        from_qonnx(g.model(), schemes={1: "nm"})
    with pytest.raises(QONNXError, match=r"^QONNX node 'Conv_\d+' \(Conv\) weights must be N:M sparse \(at most n < m "
                                         r"non-zeros in every group of m = 2, 4, 8 or 16 inputs dividing 6\) for "
                                         r"scheme nm, not dense$"):
        from_qonnx(g.model(), schemes={2: "nm"})


#: Brevitas CNNs that cannot be exact: a layer after an activation whose scale is not a power of two.
CLOSE_CNNS = {
    "conv2d-truncavg3-raw": {  # a 3 x 3 TruncAvgPool2d: output scale 16/9 of its input's, then an unquantised dense
        "dims": 2, "final": None,
        "layers": [("conv", 6, 3, 1, 0, 1), ("relu",), ("truncavg", 3), ("flatten",), ("linear", 10)],
        "kinds": ["conv2d", "avgpool", "flatten", "dense"]},
}
CNNS.update(CLOSE_CNNS)  # built by brevitas_cnn like the others


@pytest.mark.parametrize("name", sorted(CLOSE_CNNS))
def test_brevitas_cnn_with_a_scale_not_a_power_of_two_is_close_and_counted(name):
    """The pool itself is exact (its Trunc divides by a power of two), the dense layer after it is not (its input
    scale 1/144 has no finite binary expansion): every output within half an output LSB of execute_onnx."""
    path = brevitas_cnn(name)
    network = from_qonnx(path)
    assert [layer.kind for layer in network.layers] == CLOSE_CNNS[name]["kinds"]
    pool = network.layers[1]
    assert (int(pool.multiplier[0]), pool.shift, pool.rounding) == (1, 4, "half_even")
    result = compare(path, network, _inputs(network, 200))
    assert result["max_lsb"] <= 0.5, result


# -- recurrent layers: refused by name (they come in through from_torch: docs/rnn.md) ------------------------------

@pytest.mark.parametrize("op, domain", [("LSTM", ""), ("GRU", ""), ("RNN", ""), ("Scan", ""),
                                        ("QuantLSTMCell", QUANT)])
def test_recurrent_nodes_are_refused_by_name(op, domain):
    g = Graph(4)
    g.act(2.0 ** -4, 8)
    g.tensor = g.node(op, [g.tensor], domain)
    with pytest.raises(QONNXError) as info:
        from_qonnx(g.model())
    text = str(info.value)
    assert re.match(rf"^QONNX node '{op}_\d+' \({op}\) must be one of Quant, .*: peforge compiles MLPs and CNNs "
                    r"\(recurrent layers come in through from_torch only: docs/rnn\.md\), not ", text), text
    assert "\n" not in text


def test_to_qonnx_refuses_a_recurrent_network():
    network = net.random_rnn(np.random.default_rng(2), kind="gru")
    with pytest.raises(ValueError, match=r"^Network layers\[0\] must be a kind QONNX can carry \(dense, convolutions, "
                                         r"pools, flatten\), not 'gru' \(QONNX has no recurrent layer peforge writes: "
                                         r"docs/rnn\.md\)$"):
        to_qonnx(network)
