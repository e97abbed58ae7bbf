"""To QONNX: an integer :class:`sw.network.Network` as a QONNX model that ``execute_onnx`` runs bit-exactly.

The graph is one chain from a float input ``[1, features]`` through an input ``Quant`` (the network input's
bits and signedness) to one node group per layer:

``fixed`` and ``nm`` layers, when float32 computes them exactly (below): standard QONNX ::

    Quant(W) -> Gemm(x, W, c, transB=1) [-> Relu] -> Quant(scale s_out, out_bits, signed, narrow, rounding)

with ``W[j, k] = w[j, k] * s_w[j]`` (the dense integer weights, N:M zeros included), ``s_w[j] = M[j] 2^-S
s_out / s_in``, and the bias ``c[j] = B'[j] 2^-S s_out``. ``B' = B`` and ``rounding_mode`` ``ROUND`` for
``half_even``, ``FLOOR`` for ``floor``; for ``half_up`` ``B' = B + 2^(S-1)`` and ``FLOOR``. Then
``Quant(y) = clip(round((acc M + B') / 2^S), lo, hi) * s_out``: the layer's integer formula. float32 is exact when
every weight, scale and bias above is a float32 value and every partial sum stays below ``2^24`` times its
step (``(acc_bound M[j] + |B'[j]|) / 2^t[j] < 2^24`` with ``2^t[j]`` the largest power of two dividing
``M[j]`` and ``B'[j]``), which :func:`to_qonnx` checks per layer.

Every other layer (``sp2``, ``msq``, ``circulant``, ``crossbar``, and ``fixed`` / ``nm`` layers that float32
would round) is one node of the :mod:`sw.qonnx_ops` domain, whose Python reference implementation is the
layer's golden model.

A peforge node's output wider than 24 bits is a float64 (``DOUBLE``) tensor, and the layer after it is a
peforge node too. Activations travel as ``code * s`` with ``s`` the layer's ``out_scale`` (the input's ``scale``) when that is a
power of two, else ``1.0`` (the integer codes): the model's output is ``logits * s_last``
(:func:`output_scale`).
"""

from __future__ import annotations

import math
import os
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


def output_scale(network: Network) -> float:
    """The factor from the network's logits to the exported model's outputs."""
    return activation_scale(network.layers[-1].out_scale)


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


def to_qonnx(network: Network, *, name: str = "peforge"):
    """The QONNX ``ModelProto`` of ``network`` (module docstring), shapes inferred; batch size 1.

    Raises
    ------
    TypeError
        ``"Network must be a Network, not 3"``.
    """
    from onnx import TensorProto, helper, numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    if not isinstance(network, Network):
        raise TypeError(f"Network must be a Network, not {network!r}")
    nodes, inits = [], []

    def const(key: str, value: Any, dtype=np.float32) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype), key))
        return key

    def quant(x: str, y: str, key: str, scale, bits: int, signed: bool, narrow: bool, mode: str) -> None:
        nodes.append(helper.make_node(
            "Quant", [x, const(f"{key}_scale", scale), const(f"{key}_zeropt", 0.0), const(f"{key}_bits", bits)],
            [y], name=f"{key}_quant", domain=_QUANT_DOMAIN, signed=int(signed), narrow=int(narrow),
            rounding_mode=mode))

    spec = network.input
    s_in = activation_scale(spec.scale)
    quant("input", "act0", "input", s_in, spec.bits, spec.signed, False, "ROUND")
    x, wide = "act0", False
    for n, layer in enumerate(network.layers):
        s_out = activation_scale(layer.out_scale)
        y = f"act{n + 1}"
        std = None if wide else _standard(layer, s_in, s_out)
        if std is None:
            arrays = {**layer.weights.arrays(), "multiplier": layer.multiplier, "offset": layer.offset}
            names = [const(f"layer{n}_{role}", arr, np.int64) for role, arr in arrays.items()]
            nodes.append(qonnx_ops.make_node(layer, x, names, y, f"layer{n}_{qonnx_ops.OP_TYPES[layer.scheme]}",
                                             s_in, s_out))
        else:
            weights, w_scale, bias = std
            w_bits = layer.weights.w_bits
            quant(const(f"layer{n}_weight", weights), f"layer{n}_wq", f"layer{n}_weight", w_scale[:, None], w_bits,
                  True, False, "ROUND")
            gemm_out = f"layer{n}_gemm"
            nodes.append(helper.make_node("Gemm", [x, f"layer{n}_wq", const(f"layer{n}_bias", bias)], [gemm_out],
                                          name=f"layer{n}_gemm", transB=1))
            if layer.relu:
                nodes.append(helper.make_node("Relu", [gemm_out], [f"layer{n}_relu"], name=f"layer{n}_relu"))
                gemm_out = f"layer{n}_relu"
            quant(gemm_out, y, f"layer{n}_out", s_out, layer.out_bits, layer.out_signed, layer.out_narrow,
                  _QUANT_MODE[layer.rounding])
        x, s_in = y, s_out
        wide = std is None and layer.out_bits > qonnx_ops.WIDE_BITS
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, spec.features])],
        [helper.make_tensor_value_info(x, TensorProto.DOUBLE if wide else TensorProto.FLOAT,
                                       [1, network.out_features])], initializer=inits)
    model = helper.make_model(graph, producer_name="peforge", opset_imports=[
        helper.make_opsetid("", 13), helper.make_opsetid(_QUANT_DOMAIN, 1), helper.make_opsetid(qonnx_ops.DOMAIN, 1)])
    model.ir_version = 8
    return ModelWrapper(model).transform(InferShapes()).model


def save_qonnx(network: Network, path: str | os.PathLike) -> str:
    """Write :func:`to_qonnx` of ``network`` to ``path``; returns the path."""
    import onnx

    onnx.save(to_qonnx(network), str(path))
    return str(path)
