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

    def conv():
        g = Graph(8)
        g.in_shape = [1, 1, 8]
        g.act(2.0 ** -4, 8)
        g.tensor = g.node("Conv", [g.tensor, g.const(np.ones((2, 1, 3)))])
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
        "conv": (conv, r"'Conv_\d+' \(Conv\) must be one of Quant, Gemm, MatMul, Add \(bias\), Relu, Flatten or "
                       r"Reshape: peforge compiles MLPs, not 'Conv'"),
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
