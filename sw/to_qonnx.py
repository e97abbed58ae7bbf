"""To QONNX: an integer :class:`sw.network.Network` as a QONNX model that ``execute_onnx`` runs bit-exactly.

The graph is one chain from a float input ``[1, *input.shape]`` (``[1, features]``, ``[1, C, L]`` or
``[1, C, H, W]``) through an input ``Quant`` (the network input's bits and signedness) to one node group per
layer:

``fixed`` and ``nm`` dense and conv layers, when float32 computes them exactly (below): standard QONNX ::

    Quant(W) -> Gemm(x, W, c, transB=1) [-> Relu] -> Quant(scale s_out, out_bits, signed, narrow, rounding)
    Quant(W) -> Conv(x, W, c, kernel_shape, strides, pads, group) [-> Relu] -> Quant(...)

with ``W[j, k] = w[j, k] * s_w[j]`` (the dense integer weights, N:M zeros included; a Conv's ``[C_out, kh * kw
* C_in / g]`` matrix back in ONNX's ``[C_out, C_in / g, kh, kw]``), ``s_w[j] = M[j] 2^-S s_out / s_in``, and the
bias ``c[j] = B'[j] 2^-S s_out``. ``B' = B`` and ``rounding_mode`` ``ROUND`` for ``half_even``, ``FLOOR`` for
``floor``; for ``half_up`` ``B' = B + 2^(S-1)`` and ``FLOOR``. Then ``Quant(y) = clip(round((acc M + B') / 2^S),
lo, hi) * s_out``: the layer's integer formula. float32 is exact when every weight, scale and bias above is a
float32 value and every partial sum stays below ``2^24`` times its step (``(acc_bound M[j] + |B'[j]|) / 2^t[j] <
2^24`` with ``2^t[j]`` the largest power of two dividing ``M[j]`` and ``B'[j]``), which :func:`to_qonnx` checks
per layer.

``maxpool`` and ``flatten`` layers are always the standard ``MaxPool`` (no padding) and ``Flatten`` (axis 1).
An ``avgpool`` / ``globalavgpool`` layer is ``AveragePool`` / ``GlobalAveragePool [-> Relu] -> Quant`` when that
is exact: a window of ``k = 2^p`` elements, one multiplier, offsets 0, ``M 2^-S = s_in / (k s_out)``, rounding
``half_even`` (``ROUND``), ``floor`` (``FLOOR``) or ``half_up`` on values >= 0 (``HALF_UP``), at most 24 output
bits (then ``avg / s_out = W M 2^-S`` exactly, ``W`` the window sum).

Every other layer (``sp2``, ``msq``, ``circulant``, ``crossbar``, ``fixed`` / ``nm`` layers that float32 would
round, and the other average pools) is one node of the :mod:`sw.qonnx_ops` domain, whose Python reference
implementation is the layer's golden model.

A peforge node's output wider than 24 bits is a float64 (``DOUBLE``) tensor, and the layer after it is a
peforge node too (a max pool or flatten between them keeps the type). Activations travel as ``code * s`` with
``s`` the layer's ``out_scale`` (the input's ``scale``) when that is a power of two, else ``1.0`` (the integer
codes); max pools and flattens keep their input's ``s``: the model's output is ``logits * s_last``
(:func:`output_scale`).
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from typing import Any

import numpy as np

from . import qonnx_ops
from .network import Network, NMWeights

__all__ = ["to_qonnx", "save_qonnx", "output_scale", "activation_scale"]

_QUANT_DOMAIN = "qonnx.custom_op.general"
_FLOAT32_STEPS = 24
_QUANT_MODE = {"half_even": "ROUND", "floor": "FLOOR", "half_up": "FLOOR"}


def activation_scale(scale: float | None) -> float:
    """The scale an exported activation carries: ``scale`` when it is a power of two (a normal float32), else 1.0."""
    if scale is None or not math.isfinite(scale) or scale <= 0:
        return 1.0
    mantissa, exp = math.frexp(scale)
    return scale if mantissa == 0.5 and -125 <= exp <= 127 else 1.0


def _passes_scale(layer) -> bool:
    """Whether a layer keeps its input's scale (a max pool or flatten: the codes pass or move)."""
    return layer.kind in ("maxpool", "flatten")


def output_scale(network: Network) -> float:
    """The factor from the network's logits to the exported model's outputs."""
    s = activation_scale(network.input.scale)
    for layer in network.layers:
        s = s if _passes_scale(layer) else activation_scale(layer.out_scale)
    return s


def _v2(n: int) -> int:
    return (n & -n).bit_length() - 1 if n else 10 ** 6


def _exact_in_float32(values: np.ndarray) -> bool:
    return bool(np.all(values.astype(np.float32).astype(np.float64) == values))


def _standard(layer, s_in: float, s_out: float):
    """``(weights float [out, in], weight scales [out], bias [out])`` of the standard form, or None when float32
    would round."""
    if layer.scheme not in ("fixed", "nm") or layer.out_bits > qonnx_ops.WIDE_BITS:
        return None  # float32 clip bounds and outputs are exact up to 24 bits
    w = layer.weights.dense() if isinstance(layer.weights, NMWeights) else layer.weights.weights
    shift = layer.shift
    offsets = [int(b) + ((1 << (shift - 1)) if layer.rounding == "half_up" else 0) for b in layer.offset]
    bound = layer.acc_bound
    for m, b in zip(layer.multiplier.tolist(), offsets):
        t = min(_v2(m), _v2(b))
        if t < 10 ** 6 and bound * m + abs(b) >= 1 << (_FLOAT32_STEPS + t):
            return None
    step = math.ldexp(s_out, -shift)
    w_scale = np.array([m * step / s_in if m else 1.0 for m in layer.multiplier.tolist()], np.float64)
    weights = np.where(layer.multiplier[:, None] == 0, 0, w).astype(np.float64) * w_scale[:, None]
    bias = np.array([b * step for b in offsets], np.float64)
    if not all(_exact_in_float32(a) for a in (w_scale, weights, bias)) or np.any(np.abs(w_scale) < 2.0 ** -126):
        return None
    return weights, w_scale, bias


def _onnx_pads(layer) -> list[int]:
    """peforge's ``(top, bottom, left, right)`` (``(left, right)``) as ONNX ``pads`` ``[top, left, bottom, right]``."""
    p = list(layer.padding)
    return p if len(p) == 2 else [p[0], p[2], p[1], p[3]]


def _standard_pool(layer, s_in: float, s_out: float) -> str | None:
    """The ``rounding_mode`` of an exact ``AveragePool -> Quant`` form of an average pool, or None."""
    k = layer.window
    mult = layer.multiplier
    nonneg = layer.relu or not layer.in_signed
    modes = {"half_even": "ROUND", "floor": "FLOOR", "half_up": "HALF_UP" if nonneg else None}
    if k & (k - 1) or layer.out_bits > qonnx_ops.WIDE_BITS or np.any(layer.offset != 0) or np.any(mult != mult[0]):
        return None
    if k * max(-layer.in_range[0], layer.in_range[1]) >= 1 << _FLOAT32_STEPS:
        return None
    if Fraction(int(mult[0]), 1 << layer.shift) != Fraction(s_in) / (k * Fraction(s_out)):
        return None
    return modes[layer.rounding]


def to_qonnx(network: Network, *, name: str = "peforge"):
    """The QONNX ``ModelProto`` of ``network`` (module docstring), shapes inferred; batch size 1.

    Raises
    ------
    TypeError, ValueError
        ``"Network must be a Network, not 3"``, ``"Network must be a chain of layers to export, not a graph (layer
        2 takes 'input')"``.
    """
    from onnx import TensorProto, helper, numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    if not isinstance(network, Network):
        raise TypeError(f"Network must be a Network, not {network!r}")
    if not network.is_chain:
        first = next(i for i, layer in enumerate(network.layers) if network.sources[i] != (i - 1,))
        raise ValueError(f"Network must be a chain of layers to export, not a graph (layer {first} takes "
                         f"{', '.join(map(repr, network.layers[first].inputs))})")
    recurrent = [i for i, layer in enumerate(network.layers) if layer.kind in ("lstm", "gru")]
    if recurrent:
        raise ValueError(f"Network layers[{recurrent[0]}] must be a kind QONNX can carry (dense, convolutions, pools, "
                         f"flatten), not {network.layers[recurrent[0]].kind!r} (QONNX has no recurrent layer peforge "
                         f"writes: docs/rnn.md)")
    nodes, inits = [], []

    def const(key: str, value: Any, dtype=np.float32) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype), key))
        return key

    def quant(x: str, y: str, key: str, scale, bits: int, signed: bool, narrow: bool, mode: str) -> None:
        nodes.append(helper.make_node(
            "Quant", [x, const(f"{key}_scale", scale), const(f"{key}_zeropt", 0.0), const(f"{key}_bits", bits)],
            [y], name=f"{key}_quant", domain=_QUANT_DOMAIN, signed=int(signed), narrow=int(narrow),
            rounding_mode=mode))

    def relu_then_quant(n: int, layer, x: str, y: str, s_out: float, mode: str) -> None:
        if layer.relu:
            nodes.append(helper.make_node("Relu", [x], [f"layer{n}_relu"], name=f"layer{n}_relu"))
            x = f"layer{n}_relu"
        quant(x, y, f"layer{n}_out", s_out, layer.out_bits, layer.out_signed, layer.out_narrow, mode)

    spec = network.input
    s_in = activation_scale(spec.scale)
    quant("input", "act0", "input", s_in, spec.bits, spec.signed, False, "ROUND")
    x, wide = "act0", False
    for n, layer in enumerate(network.layers):
        y = f"act{n + 1}"
        if _passes_scale(layer):
            if layer.kind == "maxpool":
                dims = len(layer.kernel)
                nodes.append(helper.make_node("MaxPool", [x], [y], name=f"layer{n}_maxpool",
                                              kernel_shape=list(layer.kernel), strides=list(layer.stride),
                                              pads=[0] * (2 * dims)))
            else:
                nodes.append(helper.make_node("Flatten", [x], [y], name=f"layer{n}_flatten", axis=1))
            x = y
            continue
        s_out = activation_scale(layer.out_scale)
        pooled = layer.kind in qonnx_ops.POOL_OP_TYPES
        std = None if wide or pooled else _standard(layer, s_in, s_out)
        mode = None if wide or not pooled else _standard_pool(layer, s_in, s_out)
        if pooled and mode is not None:
            if layer.kind == "avgpool":
                nodes.append(helper.make_node("AveragePool", [x], [f"layer{n}_pool"], name=f"layer{n}_avgpool",
                                              kernel_shape=list(layer.kernel), strides=list(layer.stride),
                                              pads=[0] * (2 * len(layer.kernel))))
            else:
                nodes.append(helper.make_node("GlobalAveragePool", [x], [f"layer{n}_pool"], name=f"layer{n}_gap"))
            relu_then_quant(n, layer, f"layer{n}_pool", y, s_out, mode)
        elif std is None:
            weights = {} if pooled else layer.weights.arrays()
            arrays = {**weights, "multiplier": layer.multiplier, "offset": layer.offset}
            names = [const(f"layer{n}_{role}", arr, np.int64) for role, arr in arrays.items()]
            nodes.append(qonnx_ops.make_node(layer, x, names, y, f"layer{n}_{qonnx_ops.op_type(layer)}", s_in,
                                             s_out))
        else:
            weights, w_scale, bias = std
            conv = layer.kind != "dense"
            if conv:  # [C_out, kh * kw * C_in/g] (channel fastest) -> ONNX's [C_out, C_in/g, kh, kw]
                c_out = weights.shape[0]
                weights = np.moveaxis(weights.reshape(c_out, *layer.kernel, -1), -1, 1)
            w_scale = w_scale.reshape(-1, *[1] * (weights.ndim - 1))
            quant(const(f"layer{n}_weight", weights), f"layer{n}_wq", f"layer{n}_weight", w_scale,
                  layer.weights.w_bits, True, False, "ROUND")
            out = f"layer{n}_{'conv' if conv else 'gemm'}"
            inputs = [x, f"layer{n}_wq", const(f"layer{n}_bias", bias)]
            if conv:
                dims = len(layer.kernel)
                nodes.append(helper.make_node("Conv", inputs, [out], name=out, kernel_shape=list(layer.kernel),
                                              strides=list(layer.stride), pads=_onnx_pads(layer), group=layer.groups,
                                              dilations=[1] * dims))
            else:
                nodes.append(helper.make_node("Gemm", inputs, [out], name=out, transB=1))
            relu_then_quant(n, layer, out, y, s_out, _QUANT_MODE[layer.rounding])
        x, s_in = y, s_out
        wide = std is None and mode is None and layer.out_bits > qonnx_ops.WIDE_BITS
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, *spec.shape])],
        [helper.make_tensor_value_info(x, TensorProto.DOUBLE if wide else TensorProto.FLOAT,
                                       [1, *network.layers[-1].out_shape])], initializer=inits)
    model = helper.make_model(graph, producer_name="peforge", opset_imports=[
        helper.make_opsetid("", 13), helper.make_opsetid(_QUANT_DOMAIN, 1), helper.make_opsetid(qonnx_ops.DOMAIN, 1)])
    model.ir_version = 8
    return ModelWrapper(model).transform(InferShapes()).model


def save_qonnx(network: Network, path: str | os.PathLike) -> str:
    """Write :func:`to_qonnx` of ``network`` to ``path``; returns the path."""
    import onnx

    onnx.save(to_qonnx(network), str(path))
    return str(path)
