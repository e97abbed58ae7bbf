"""From QONNX: a quantised MLP or CNN (as Brevitas ``export_qonnx`` writes it) to a :class:`sw.network.Network`.

Accepted graphs, after ``qonnx.util.cleanup.cleanup_model`` (which :func:`from_qonnx` runs), are one chain::

    input -> Quant -> stage -> stage -> ... -> output

    stage = Gemm | MatMul [+ Add] | Conv     -> [Relu] [MaxPool] [Flatten] (any order) -> [Quant]
          | AveragePool | GlobalAveragePool  -> [Relu] -> [Trunc | Quant]
          | MaxPool | Flatten | Reshape      (on quantised codes)

=======================================  ===================================================================
node                                     accepted
=======================================  ===================================================================
``Quant`` on the input / activations     scale per tensor, zero point 0, 1 to 32 bits (signed: 2 to 32),
                                         ``signed``, ``narrow``; ``rounding_mode`` ``ROUND`` / ``HALF_EVEN``
                                         (-> ``half_even``), ``FLOOR`` (-> ``floor``), ``HALF_UP`` on unsigned
                                         or ReLU outputs (-> ``half_up``)
linear                                   ``Gemm`` (``alpha = beta = 1``, ``transA = 0``, either ``transB``), or
                                         ``MatMul`` [+ ``Add`` of a constant bias]; 2-D input ``[batch, in]``
``Conv``                                 1-D or 2-D (``QuantConv1d`` / ``QuantConv2d``): any kernel, strides and
                                         zero padding per side (``pads``, or ``auto_pad``), ``group`` 1 or the
                                         input channels (depthwise), dilations 1, bias or none
weight                                   a ``Quant`` of a constant: scale per tensor or per output channel,
                                         zero point 0, 2 to 16 bits signed (1 to 15 unsigned), any rounding
bias                                     a constant, or a ``Quant`` of one (zero point 0), per output channel
``Relu``                                 after a linear or Conv (before or after its ``MaxPool``), or after an
                                         average pool
``MaxPool``                              kernel and strides, no padding, ``ceil_mode`` only where it changes
                                         nothing, one output; on quantised codes, or between a Conv (or linear)
                                         and its ``Quant`` (max commutes with the monotone Relu and Quant)
``AveragePool`` / ``GlobalAveragePool``  on quantised codes, no padding; then a ``Trunc`` (Brevitas
                                         ``TruncAvgPool``) or a ``Quant`` (or neither: the window sums)
``Flatten`` / ``Reshape``                to ``[batch, features]`` per sample only (channels slowest)
output                                   quantised (a ``Quant`` ends the last layer) or not (the last linear or
                                         Conv, or its ``Relu``, is the graph output)
=======================================  ===================================================================

Anything else is refused with one line naming the node, its op type and what is supported
(:class:`QONNXError`, a ValueError). Never a guess.

Layers. A Gemm / MatMul is a dense layer, a Conv a ``conv1d`` / ``conv2d`` layer (its weight ``[C_out, C_in / g,
kh, kw]`` becomes the matrix ``[C_out, kh * kw * C_in / g]`` in (kernel row, kernel column, channel) order,
``docs/cnn.md``), a MaxPool a ``maxpool``, an average pool an ``avgpool`` / ``globalavgpool`` and a Flatten a
``flatten`` layer (none at the input: the input spec is flat then). A MaxPool between a Conv and its Quant comes
after the Conv's layer: ``quant(relu(max(v))) = max(quant(relu(v)))`` for the monotone, per-channel Relu and
Quant, exactly.

Integers. The network's input is the input ``Quant``'s integer codes, ``x_int = x / scale`` (``InputSpec.scale``
holds the scale, ``InputSpec.shape`` the model's input shape without the batch). A hidden layer's output is its
activation ``Quant``'s codes; ``Layer.out_scale`` its scale. An unquantised output is given as integers of the
finest power-of-two step that holds every value exactly (``out_scale``; 32 bits at most). The QONNX model's
output is ``logits * network.out_scale``.

Requantisation. Per layer, with the float32 values the QONNX executor computes with (input scale ``s_in``,
weight scale ``s_w[j]``, bias ``c[j]`` as its ``Quant`` outputs them, output scale ``s_out``)::

    m[j] = s_in * s_w[j] / s_out      beta[j] = c[j] / s_out      (exact rationals)
    S    = the smallest shift >= 1 making every m[j] 2^S and beta[j] 2^S an integer
    M[j] = m[j] 2^S,  B[j] = beta[j] 2^S                           exact

when that ``S`` exists with ``M < 2^31`` (always for power-of-two scales: the FINN convention); the layer then
computes exactly what the ``Quant`` computes. Otherwise the layer uses :meth:`sw.requant.Requant.fit` (31-bit
multipliers), close to but not always equal to the float reference; :func:`compare` counts the differences.

Average pools. A pool's integer output is a function of its window sum ``W`` alone. :func:`from_qonnx` runs the
model's own pool, Relu and Trunc / Quant nodes in ``execute_onnx`` on one window for every possible ``W`` (from
``k * lo`` to ``k * hi``, ``k`` the window size) and finds the requantisation ``clip(round((W M + B) / 2^S))``
that gives exactly those outputs: the node's own arithmetic when it is a power-of-two division (``TruncAvgPool``:
``W / 2^t`` rounded as its ``rounding_mode``), else the smallest ``S`` with a ``floor`` rounding that matches every
window sum (a 3 x 3 average requantised by a ``Quant``). With no Trunc or Quant the output codes are the window
sums themselves (``out_scale = s_in / k``).

Schemes: every layer with weights is ``fixed`` (``fixed-mac``) unless ``schemes`` chooses ``"nm"`` (weights N:M
sparse in every group, groups inside one kernel position of a Conv: the sparsest legal format is used) or
``"sp2"`` (every weight an SP2 level times a power of two per row: the narrowest SP2 format is used) for it.

This module imports numpy, onnx and qonnx (never torch).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from . import nm
from .conv import AvgPool, Conv, Flatten, GlobalAvgPool, MaxPool, window_geometry
from .intops import INT64_MAX, int_range, signed_bits_for
from .network import MAX_OFFSET, FixedWeights, InputSpec, Layer, Network, NMWeights, SP2Weights, narrow_range
from .nm import NMFormat
from .requant import REQUANT_BITS, Requant, requantize
from .sp2 import SP2Format

__all__ = ["QONNXError", "SUPPORTED", "load_model", "from_qonnx", "run_qonnx", "dequantize_input", "compare",
           "quantize_input"]

#: What the front-end accepts, for the refusals.
SUPPORTED = ("Quant, Gemm, MatMul, Add (bias), Conv, MaxPool, AveragePool, GlobalAveragePool, Trunc, Relu, Flatten "
             "or Reshape")
_QUANT_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas")
_CUSTOM = ("Quant", "Trunc")
_ROUNDINGS = {"ROUND": "half_even", "HALF_EVEN": "half_even", "FLOOR": "floor"}
#: Largest number of window elements (window sums x window size) :func:`_pool_table` runs through execute_onnx.
_TABLE_ELEMENTS = 1 << 22


class QONNXError(ValueError):
    """A construct peforge does not compile: one line naming the node, its op type and what is supported."""


def _node_text(node) -> str:
    return f"QONNX node {node.name!r} ({node.op_type})"


def load_model(model: Any):
    """A cleaned-up ``qonnx`` ``ModelWrapper`` of a path, ``ModelWrapper`` or ``onnx.ModelProto``.

    Before qonnx's ``cleanup_model`` runs, the model must be an ONNX model (an opset import and a graph with
    nodes: protobuf reads an empty file, or many a file that is not ONNX, as an empty model) and every node of a
    QONNX custom-op domain must be one qonnx knows (its shape inference raises on the others).

    Raises
    ------
    TypeError, ValueError
        ``"QONNX model must be an .onnx path, a ModelWrapper or a ModelProto, not 3"``,
        ``"QONNX model must be an ONNX model file, not 'x.onnx' (the file is empty)"``.
    QONNXError (ValueError)
        ``"QONNX node 'QuantLSTMCell_0' (QuantLSTMCell) must be one of Quant, Gemm, ...: peforge compiles MLPs
        and CNNs (recurrent layers come in through from_torch only: docs/rnn.md), not the
        qonnx.custom_op.general op 'QuantLSTMCell'"``, and the like for any op qonnx does not know.
    """
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    what = "the model given"
    if isinstance(model, (str, os.PathLike)):
        what = repr(str(model))
        try:
            empty = os.path.getsize(model) == 0
            model = ModelWrapper(str(model))
        except Exception as e:  # protobuf and file errors alike: one line
            raise ValueError(f"QONNX model must be an ONNX model file, not {what} ({e})") from None
        if empty:
            raise ValueError(f"QONNX model must be an ONNX model file, not {what} (the file is empty)")
    elif isinstance(model, onnx.ModelProto):
        model = ModelWrapper(model)
    elif not isinstance(model, ModelWrapper):
        raise TypeError(f"QONNX model must be an .onnx path, a ModelWrapper or a ModelProto, not {model!r}")
    if not model.model.opset_import or not model.graph.node:
        missing = " and ".join(part for part, there in (("no opset_import", model.model.opset_import),
                                                         ("no graph nodes", model.graph.node)) if not there)
        raise ValueError(f"QONNX model must be an ONNX model file, not {what} ({missing}: not an ONNX model)")
    _check_custom_ops(model)
    return cleanup_model(ModelWrapper(model.model.__deepcopy__()))


#: ONNX op types of recurrent layers (standard and Brevitas'), refused with a word on where they stand.
_RECURRENT = ("LSTM", "GRU", "RNN", "Scan", "Loop", "QuantLSTMCell", "QuantLSTM", "QuantGRU", "QuantRNN")


def _unsupported(node) -> QONNXError:
    """The refusal of a node peforge does not compile (a standard op by its type, a custom op with its domain)."""
    standard = node.domain in ("", "ai.onnx")
    op = repr(node.op_type) if standard else f"the {node.domain} op {node.op_type!r}"
    why = "peforge compiles MLPs and CNNs"
    if node.op_type in _RECURRENT:
        why += " (recurrent layers come in through from_torch only: docs/rnn.md)"
    return QONNXError(f"{_node_text(node)} must be one of {SUPPORTED}: {why}, not {op}")


def _check_custom_ops(model) -> None:
    """Refuse a node of a QONNX custom-op domain that qonnx has no op for (``cleanup_model`` would raise
    ``Exception("Custom op_type QuantLSTMCell is currently not supported.")`` on it)."""
    from qonnx.custom_op.registry import is_custom_op

    for node in model.graph.node:
        if is_custom_op(node.domain) and not is_custom_op(node.domain, node.op_type):
            raise _unsupported(node)


# -- graph walking ------------------------------------------------------------------------------------------

class _Graph:
    """Producers, consumers and constants of a cleaned-up model."""

    def __init__(self, model):
        self.model = model
        self.producer = {out: n for n in model.graph.node for out in n.output}
        self.consumers: dict[str, list] = {}
        for n in model.graph.node:
            for name in n.input:
                if name:
                    self.consumers.setdefault(name, []).append(n)
        init = {i.name for i in model.graph.initializer}
        inputs = [i.name for i in model.graph.input if i.name not in init]
        # constant outputs (the scale, zero point and bit width of a QuantTensor output) are not computed
        outputs = [o.name for o in model.graph.output if o.name not in init and o.name in self.producer]
        if len(inputs) != 1 or len(outputs) != 1:
            raise QONNXError(f"QONNX graph must have one input and one output, not {len(inputs)} inputs "
                             f"{inputs} and {len(outputs)} outputs {outputs}")
        self.input, self.output = inputs[0], outputs[0]

    def const(self, name: str):
        return self.model.get_initializer(name) if name else None

    def shape(self, name: str):
        return self.model.get_tensor_shape(name)

    def next(self, tensor: str):
        """The one node consuming ``tensor`` (None at the graph output)."""
        users = self.consumers.get(tensor, [])
        if tensor == self.output:
            if users:
                raise QONNXError(f"QONNX graph output {tensor!r} must not also feed nodes, not "
                                 f"{', '.join(repr(u.name) for u in users)}")
            return None
        if len(users) != 1:
            names = ", ".join(f"{u.name!r} ({u.op_type})" for u in users) or "none"
            raise QONNXError(f"QONNX tensor {tensor!r} must feed exactly one node (peforge compiles chains: no "
                             f"branches or residual Adds), not {names}")
        return users[0]


def _attr(node, name: str, default):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _check_domain(node) -> None:
    if node.op_type in _CUSTOM and node.domain not in _QUANT_DOMAINS:
        raise QONNXError(f"{_node_text(node)} must be in the QONNX domain 'qonnx.custom_op.general', not "
                         f"{node.domain!r}")
    if node.op_type not in _CUSTOM and node.domain not in ("", "ai.onnx"):
        raise _unsupported(node)


class _Quant:
    """A ``Quant`` node's constant parameters."""

    def __init__(self, g: _Graph, node, what: str):
        _check_domain(node)
        self.node = node
        params = [g.const(name) for name in node.input[1:4]]
        if len(node.input) != 4 or any(p is None for p in params):
            raise QONNXError(f"{_node_text(node)} must have constant scale, zero point and bit width, not "
                             f"computed ones")
        scale, zp, bits = (np.asarray(p, np.float32) for p in params)
        if np.any(zp != 0):
            raise QONNXError(f"{_node_text(node)} zero point must be 0 (peforge quantisation is symmetric), not "
                             f"{float(zp.ravel()[np.flatnonzero(zp)[0]])!r}")
        if bits.size != 1 or float(bits) != int(bits) or not 1 <= int(bits) <= 32:
            raise QONNXError(f"{_node_text(node)} bit width must be one integer from 1 to 32, not {bits.ravel()!r}")
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise QONNXError(f"{_node_text(node)} scale must be positive and finite, not {scale.ravel()[:4]!r}")
        self.scale, self.zp, self.bits = scale, zp, int(bits)
        self.signed = bool(_attr(node, "signed", 1))
        self.narrow = bool(_attr(node, "narrow", 0))
        self.mode = str(_attr(node, "rounding_mode", "ROUND")).upper()
        if self.signed and self.bits == 1:
            raise QONNXError(f"{_node_text(node)} {what} must have at least 2 bits when signed (1-bit signed Quant "
                             f"is bipolar), not 1")

    def codes(self, x: np.ndarray) -> np.ndarray:
        """The integer codes the node gives ``x`` (qonnx's own arithmetic, in float32)."""
        from qonnx.custom_op.general.intquant import int_quant

        y = int_quant(np.asarray(x, np.float32), self.scale, self.zp, np.float32(self.bits), self.signed, self.narrow,
                      self.mode)
        return np.rint(np.asarray(y, np.float32) / self.scale).astype(np.int64)

    def values(self, x: np.ndarray) -> np.ndarray:
        """float32: the node's output for ``x``."""
        from qonnx.custom_op.general.intquant import int_quant

        return np.asarray(int_quant(np.asarray(x, np.float32), self.scale, self.zp, np.float32(self.bits),
                                    self.signed, self.narrow, self.mode), np.float32)


def _act_quant(g: _Graph, node, relu: bool) -> _Quant:
    q = _Quant(g, node, "activation")
    if q.scale.size != 1:
        raise QONNXError(f"{_node_text(node)} activation scale must be one per tensor, not shape {q.scale.shape}")
    if q.mode == "HALF_UP" and (relu or not q.signed):
        q.rounding = "half_up"  # half away from zero == half up on values >= 0
    elif q.mode in _ROUNDINGS:
        q.rounding = _ROUNDINGS[q.mode]
    else:
        raise QONNXError(f"{_node_text(node)} rounding_mode must be ROUND, HALF_EVEN, FLOOR (or HALF_UP on unsigned "
                         f"or ReLU outputs), not {q.mode!r}")
    return q


def _flatten(g: _Graph, node, tensor: str) -> str:
    """Check that a Flatten / Reshape keeps one sample per row: ``[batch, ...] -> [batch, features]``."""
    src, dst = g.shape(tensor), g.shape(node.output[0])
    if dst is None or src is None or len(dst) != 2 or dst[0] != src[0] or dst[1] != math.prod(src[1:]):
        raise QONNXError(f"{_node_text(node)} must flatten each sample to [batch, features], not {src} -> {dst}")
    if node.op_type == "Flatten" and _attr(node, "axis", 1) != 1:
        raise QONNXError(f"{_node_text(node)} axis must be 1, not {_attr(node, 'axis', 1)}")
    return node.output[0]


def _weight(g: _Graph, node, name: str, ndim: int, out_axis: int, layout: str):
    """``(codes, per-output scale float32 [out], bits, exact, Quant node, float weight)`` of the weight input
    ``name`` of ``node``: a ``Quant`` of a constant of ``ndim`` dimensions (``layout`` names them), with a scale per
    tensor or per output (axis ``out_axis``). ``exact``: the float weights the executor multiplies with are
    ``codes x scale`` exactly."""
    wq_node = g.producer.get(name)
    if wq_node is None or wq_node.op_type != "Quant" or g.const(wq_node.input[0]) is None:
        what = "a constant without a Quant" if g.const(name) is not None else "a computed tensor"
        raise QONNXError(f"{_node_text(node)} weight must be a Quant of a constant (peforge compiles quantised "
                         f"weights), not {what} ({name!r})")
    wq = _Quant(g, wq_node, "weight")
    w = g.const(wq_node.input[0])
    if w.ndim != ndim or w.shape[out_axis] == 0 or w.size == 0:
        raise QONNXError(f"{_node_text(wq_node)} weight must be {layout}, not shape {w.shape}")
    codes, values = wq.codes(w), wq.values(w)
    try:
        scale = np.broadcast_to(wq.scale, w.shape)
    except ValueError:
        scale = None
    rows = None if scale is None else np.moveaxis(scale, out_axis, 0).reshape(w.shape[out_axis], -1)
    if rows is None or np.any(rows != rows[:, :1]):
        raise QONNXError(f"{_node_text(wq_node)} weight scale must be per tensor or per output channel, not "
                         f"shape {wq.scale.shape}")
    bits = wq.bits + (0 if wq.signed else 1)
    if not 2 <= bits <= 16:
        raise QONNXError(f"{_node_text(wq_node)} weight bits must be 2 to 16 signed (1 to 15 unsigned), not "
                         f"{wq.bits} {'signed' if wq.signed else 'unsigned'}")
    exact = bool(np.all(values.astype(np.float64) == codes * scale.astype(np.float64)))
    return codes, rows[:, 0].astype(np.float32), bits, exact, wq_node, w


def _bias(g: _Graph, node, name: str, out: int) -> np.ndarray:
    """float32 ``[out]``: a constant bias, or a ``Quant`` of one, as the executor adds it."""
    value = g.const(name)
    producer = g.producer.get(name)
    if value is None and producer is not None and producer.op_type == "Quant" and \
            g.const(producer.input[0]) is not None:
        value = _Quant(g, producer, "bias").values(g.const(producer.input[0]))
    if value is None:
        raise QONNXError(f"{_node_text(node)} bias must be a constant or a Quant of one, not the computed "
                         f"tensor {name!r} (a residual Add is not supported)")
    value = np.asarray(value, np.float32)
    if value.size not in (1, out) or (value.ndim >= 1 and value.shape[-1] not in (1, out)) or \
            (value.ndim == 2 and value.shape[0] != 1) or value.ndim > 2:
        raise QONNXError(f"{_node_text(node)} bias must be one value per output ({out}), not shape {value.shape}")
    return np.broadcast_to(value.reshape(-1), (out,)).astype(np.float32)


class _Linear:
    """One Gemm / MatMul (+ bias Add): integer weights [out, in], weight scales [out], float32 bias [out]."""

    kind = "dense"

    def __init__(self, g: _Graph, node, tensor: str):
        self.node = node
        shape = g.shape(tensor)
        if shape is None or len(shape) != 2:
            raise QONNXError(f"{_node_text(node)} input must be 2-D [batch, features] (flatten it first), not "
                             f"shape {shape}")
        if node.op_type == "Gemm":
            for name, want in (("alpha", 1.0), ("beta", 1.0), ("transA", 0)):
                if _attr(node, name, want) != want:
                    raise QONNXError(f"{_node_text(node)} {name} must be {want}, not {_attr(node, name, want)!r}")
            trans_b = bool(_attr(node, "transB", 0))
        else:
            trans_b = False
        if node.input[0] != tensor:
            raise QONNXError(f"{_node_text(node)} must take the activations as its first input, not {node.input[1]!r}")
        codes, self.w_scale, self.w_bits, self.exact, _, w = _weight(g, node, node.input[1], 2, 0 if trans_b else 1,
                                                                      "2-D")
        self.codes = codes if trans_b else codes.T
        if self.codes.shape[1] != shape[1]:
            raise QONNXError(f"{_node_text(node)} weight must have {shape[1]} inputs, not shape {w.shape}")
        self.out = self.codes.shape[0]
        self.unit = self.codes.shape[1]  # N:M groups may run along all inputs
        self.bias = np.zeros(self.out, np.float32)
        self.output = node.output[0]
        if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
            self.bias = _bias(g, node, node.input[2], self.out)

    def add_bias(self, g: _Graph, node) -> None:
        other = [name for name in node.input if name != self.output]
        if len(node.input) != 2 or len(other) != 1:
            raise QONNXError(f"{_node_text(node)} must add a constant bias to the linear output, not "
                             f"{list(node.input)}")
        if np.any(self.bias != 0):
            raise QONNXError(f"{_node_text(node)} must be the only bias of {self.node.name!r}, not a second one")
        self.bias = _bias(g, node, other[0], self.out)
        self.output = node.output[0]

    def layer(self, weights, req: dict, in_shape: tuple[int, ...]):
        return Layer(weights, **req)


def _window_attrs(node, dims: int, subject: str = "") -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(strides, dilations)`` of a Conv or pool node (defaults 1), dilations checked to be 1."""
    strides = tuple(int(s) for s in _attr(node, "strides", [1] * dims))
    dilations = tuple(int(d) for d in _attr(node, "dilations", [1] * dims))
    if len(strides) != dims or any(s < 1 for s in strides):
        raise QONNXError(f"{_node_text(node)} strides must be {dims} positive integers, not {list(strides)}")
    if any(d != 1 for d in dilations):
        raise QONNXError(f"{_node_text(node)} dilations must be 1 (peforge {subject}windows are dense), not "
                         f"{list(dilations)}")
    return strides, dilations


def _pads(node, spatial, kernel, strides) -> tuple[int, ...]:
    """ONNX ``pads`` (``[begin per axis..., end per axis...]``) of a node, ``auto_pad`` resolved."""
    dims = len(kernel)
    auto = str(_attr(node, "auto_pad", "NOTSET")).upper()
    if auto in ("NOTSET", "VALID"):
        pads = tuple(int(p) for p in _attr(node, "pads", [0] * (2 * dims))) if auto == "NOTSET" else (0,) * (2 * dims)
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for n, k, s in zip(spatial, kernel, strides):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            small, large = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else large)
            end.append(large if auto == "SAME_UPPER" else small)
        pads = (*begin, *end)
    else:
        raise QONNXError(f"{_node_text(node)} auto_pad must be NOTSET, VALID, SAME_UPPER or SAME_LOWER, not {auto!r}")
    if len(pads) != 2 * dims or any(p < 0 for p in pads):
        raise QONNXError(f"{_node_text(node)} pads must be {2 * dims} integers >= 0, not {list(pads)}")
    return pads


def _peforge_padding(pads: tuple[int, ...]) -> tuple[int, ...]:
    """ONNX ``[top, left, bottom, right]`` (``[left, right]``) as peforge's ``(top, bottom, left, right)``."""
    return pads if len(pads) == 2 else (pads[0], pads[2], pads[1], pads[3])


def _tensor_shape(g: _Graph, node, tensor: str, what: str = "input") -> tuple[int, ...]:
    """The ``[batch, C, L]`` / ``[batch, C, H, W]`` shape of ``tensor``, checked."""
    shape = g.shape(tensor)
    if shape is None or len(shape) not in (3, 4):
        raise QONNXError(f"{_node_text(node)} {what} must be [batch, C, L] or [batch, C, H, W] (1-D or 2-D), not "
                         f"shape {shape}")
    return tuple(shape)


def _check_output_shape(g: _Graph, node, want: tuple[int, ...]) -> None:
    got = g.shape(node.output[0])
    if got is None or tuple(got[1:]) != tuple(want):
        raise QONNXError(f"{_node_text(node)} output must be [batch, {', '.join(map(str, want))}] (peforge's window "
                         f"arithmetic), not shape {got}")


class _Conv:
    """One Conv: integer weights as the matrix ``[C_out, kh * kw * C_in / g]``, weight scales ``[C_out]``, float32
    bias ``[C_out]`` and the geometry."""

    kind = "conv"

    def __init__(self, g: _Graph, node, tensor: str):
        self.node = node
        shape = g.shape(tensor)
        if shape is not None and len(shape) not in (3, 4):
            raise QONNXError(f"{_node_text(node)} must be 1-D or 2-D (input [batch, C, L] or [batch, C, H, W]), not "
                             f"{len(shape) - 2}-D (input shape {shape})")
        shape = _tensor_shape(g, node, tensor)
        dims = self.dims = len(shape) - 2
        if node.input[0] != tensor:
            raise QONNXError(f"{_node_text(node)} must take the activations as its first input, not {node.input[1]!r}")
        codes, self.w_scale, self.w_bits, self.exact, _, w = _weight(
            g, node, node.input[1], dims + 2, 0, f"[C_out, C_in / group, {'kh, kw' if dims == 2 else 'k'}]")
        c_in, (c_out, per_group) = shape[1], w.shape[:2]
        group = int(_attr(node, "group", 1))
        if group not in (1, c_in) or per_group * group != c_in or c_out % group:
            raise QONNXError(f"{_node_text(node)} group must be 1 or the {c_in} input channels (depthwise), not "
                             f"{group} (weight shape {list(w.shape)})")
        kernel = tuple(int(k) for k in w.shape[2:])
        declared = _attr(node, "kernel_shape", None)
        if declared is not None and tuple(declared) != kernel:
            raise QONNXError(f"{_node_text(node)} kernel_shape must be the weight's {list(kernel)}, not "
                             f"{list(declared)}")
        strides, _ = _window_attrs(node, dims)
        pads = _pads(node, shape[2:], kernel, strides)
        self.in_shape = tuple(shape[1:])
        self.kernel, self.stride, self.padding, self.groups = kernel, strides, _peforge_padding(pads), group
        # [C_out, C_in/g, kh, kw] -> [C_out, kh, kw, C_in/g] -> rows in (kernel row, kernel column, channel) order
        self.codes = np.moveaxis(codes, 1, -1).reshape(c_out, -1)
        self.out = c_out
        self.unit = per_group  # N:M groups stay inside one kernel position
        self.bias = np.zeros(c_out, np.float32)
        if len(node.input) > 2 and node.input[2]:
            self.bias = _bias(g, node, node.input[2], c_out)
        self.output = node.output[0]
        geometry = window_geometry(self.in_shape, (1, *kernel)[-2:], (1, *strides)[-2:],
                                   (0, 0, *self.padding) if dims == 1 else self.padding)
        _check_output_shape(g, node, (c_out, *geometry[2 - dims:]))

    def layer(self, weights, req: dict, in_shape: tuple[int, ...]):
        return Conv(weights, in_shape, self.kernel, self.stride, self.padding, self.groups, dims=self.dims, **req)


def _maxpool(g: _Graph, node, tensor: str) -> dict[str, Any]:
    """The fields of a ``MaxPool`` node as :class:`sw.conv.MaxPool` takes them (``input_shape``, ``kernel``,
    ``stride``, ``dims``)."""
    shape = _tensor_shape(g, node, tensor)
    dims = len(shape) - 2
    if len([o for o in node.output if o]) != 1:
        raise QONNXError(f"{_node_text(node)} must have one output (peforge max pools give no indices), not "
                         f"{len(node.output)}")
    kernel = tuple(int(k) for k in _attr(node, "kernel_shape", []))
    if len(kernel) != dims:
        raise QONNXError(f"{_node_text(node)} kernel_shape must be {dims} integers, not {list(kernel)}")
    strides, _ = _window_attrs(node, dims, "pool ")
    pads = _pads(node, shape[2:], kernel, strides)
    if any(pads):
        raise QONNXError(f"{_node_text(node)} pads must be 0 (peforge pools take no padding), not {list(pads)}")
    fields = {"input_shape": tuple(shape[1:]), "kernel": kernel, "stride": strides, "dims": dims}
    out = window_geometry(shape[1:], (1, *kernel)[-2:], (1, *strides)[-2:], (0, 0, 0, 0))
    _check_output_shape(g, node, (shape[1], *out[2 - dims:]))  # ceil_mode only where it changes nothing
    return fields


def _avgpool(g: _Graph, node, tensor: str) -> dict[str, Any]:
    """The geometry of an ``AveragePool`` / ``GlobalAveragePool`` node (``input_shape``, ``kernel``, ``stride``,
    ``dims``, ``global``)."""
    shape = _tensor_shape(g, node, tensor)
    dims = len(shape) - 2
    if node.op_type == "GlobalAveragePool":
        _check_output_shape(g, node, (shape[1], *[1] * dims))
        return {"input_shape": tuple(shape[1:]), "kernel": tuple(shape[2:]), "stride": tuple(shape[2:]), "dims": dims,
                "global_": True}
    kernel = tuple(int(k) for k in _attr(node, "kernel_shape", []))
    if len(kernel) != dims:
        raise QONNXError(f"{_node_text(node)} kernel_shape must be {dims} integers, not {list(kernel)}")
    strides, _ = _window_attrs(node, dims, "pool ")
    pads = _pads(node, shape[2:], kernel, strides)
    if any(pads):
        raise QONNXError(f"{_node_text(node)} pads must be 0 (peforge pools take no padding), not {list(pads)}")
    out = window_geometry(shape[1:], (1, *kernel)[-2:], (1, *strides)[-2:], (0, 0, 0, 0))
    _check_output_shape(g, node, (shape[1], *out[2 - dims:]))
    return {"input_shape": tuple(shape[1:]), "kernel": kernel, "stride": strides, "dims": dims, "global_": False}


# -- exact requantisation -----------------------------------------------------------------------------------

def _exact_shift(ms: list[Fraction], betas: list[Fraction]) -> int | None:
    """The smallest ``S >= 1`` making every ``m 2^S`` and ``beta 2^S`` an integer (None if some denominator is
    not a power of two, or ``S`` would exceed 62)."""
    shift = 1
    for v in (*ms, *betas):
        d = v.denominator
        if d & (d - 1):
            return None
        shift = max(shift, d.bit_length() - 1)
    return shift if shift <= 62 else None


def _fits(acc_bound: int, mult: list[int], offset: list[int], shift: int) -> bool:
    return (max(mult) < 1 << REQUANT_BITS and max(map(abs, offset)) <= MAX_OFFSET
            and acc_bound * max(mult) + max(map(abs, offset)) + (1 << (shift - 1)) <= INT64_MAX)


def _requant(acc_scale: np.ndarray, bias: np.ndarray, out_scale: float, acc_bound: int, rounding: str,
             exact_inputs: bool) -> tuple[np.ndarray, int, np.ndarray, str, bool]:
    """``(multiplier, shift, offset, rounding, exact)`` for ``z = round((acc * acc_scale + bias) / out_scale)``."""
    s_out = Fraction(float(out_scale))
    ms = [Fraction(float(a)) / s_out for a in acc_scale]
    betas = [Fraction(float(b)) / s_out for b in bias]
    shift = _exact_shift(ms, betas) if exact_inputs else None
    if shift is not None:
        mult = [int(m * (1 << shift)) for m in ms]
        offset = [int(b * (1 << shift)) for b in betas]
        if _fits(acc_bound, mult, offset, shift):
            return np.array(mult, np.int64), shift, np.array(offset, np.int64), rounding, True
    r = Requant.fit(acc_scale.astype(np.float64), bias.astype(np.float64), float(out_scale), acc_bound=acc_bound)
    return r.multiplier, r.shift, r.offset, rounding, False


def _v2(x: Fraction) -> int:
    """Exponent of the lowest set bit of a non-zero dyadic rational."""
    n, d = abs(x.numerator), x.denominator
    return ((n & -n).bit_length() - 1) - (d.bit_length() - 1)


def _raw_output(acc_scale: np.ndarray, bias: np.ndarray, acc_bound: int, node) -> tuple[float, int]:
    """``(out_scale, out_bits)`` of an unquantised output: the coarsest power of two dividing every accumulator
    LSB and bias, and the signed width holding every output. When that needs more than 32 bits (scales that are
    not powers of two: no exact integer output exists), the largest power of two at most the smallest accumulator
    LSB (the output rounds to it; :func:`compare` counts the differences)."""
    def bits_of(k: int) -> int:
        step = Fraction(2) ** k
        bound = acc_bound * max(math.ceil(Fraction(float(a)) / step) for a in acc_scale) + \
            max(math.ceil(abs(Fraction(float(b))) / step) for b in bias)
        return signed_bits_for(-bound, bound)

    values = [Fraction(float(v)) for v in (*acc_scale, *bias) if v != 0]
    k = min(_v2(v) for v in values)
    top = math.floor(math.log2(float(acc_scale.max())))
    if top - k >= REQUANT_BITS - 1:  # not exactly representable with 31-bit multipliers: round (Requant.fit)
        k = top - (REQUANT_BITS - 2)
    bits = bits_of(k)
    if bits > 32:
        k = math.floor(math.log2(float(acc_scale.min())))
        bits = bits_of(k)
    if bits > 32:
        raise QONNXError(f"{_node_text(node)} unquantised output must fit 32-bit integers of its step 2^{k}, not "
                         f"{bits} bits (add an output Quant)")
    return math.ldexp(1.0, k), max(bits, 2)


# -- schemes ------------------------------------------------------------------------------------------------

def _nm_weights(codes: np.ndarray, w_bits: int, node, unit: int) -> NMWeights:
    """The sparsest N:M format of ``codes`` with ``m`` dividing ``unit`` (a Conv's input channels per group: the
    groups stay inside one kernel position)."""
    best = None
    for m in (2, 4, 8, 16):
        if unit % m:
            continue
        n = int(np.count_nonzero(codes.reshape(codes.shape[0], -1, m), axis=2).max(initial=0))
        n = max(n, 1)
        if n < m and (best is None or n / m < best.n / best.m):
            best = NMFormat(n, m)
    if best is None:
        raise QONNXError(f"{_node_text(node)} weights must be N:M sparse (at most n < m non-zeros in every group of "
                         f"m = 2, 4, 8 or 16 inputs dividing {unit}) for scheme nm, not dense")
    return NMWeights(*nm.pack(codes, best), best, w_bits)


def _sp2_weights(codes: np.ndarray, node) -> tuple[SP2Weights, np.ndarray]:
    """SP2 weights and the power of two ``2^e[j]`` per row with ``codes[j] = 2^e[j] * level``."""
    mags = np.abs(codes)
    for bits in range(2, 9):
        for m1 in range(bits // 2, min(bits - 1, 4) + 1):
            fmt = SP2Format(bits, m1)
            levels = set(int(v) for v in fmt.levels)
            shifts, ok = [], True
            for row in mags:
                nz = row[row > 0]
                for e in range(-fmt.E, 16):
                    scaled = nz * 2.0 ** -e
                    if np.all(scaled == np.rint(scaled)) and set(scaled.astype(np.int64).tolist()) <= levels:
                        shifts.append(e)
                        break
                else:
                    ok = False
                    break
            if ok:
                e = np.array(shifts, np.int64)
                units = np.where(e[:, None] >= 0, codes >> np.maximum(e, 0)[:, None],
                                 codes << np.maximum(-e, 0)[:, None])
                return SP2Weights(fmt.encode(units), fmt), e
    raise QONNXError(f"{_node_text(node)} weights must be SP2 levels (sums of two powers of two of an SP2 format "
                     f"up to 8 bits) times a power of two per row for scheme sp2, not codes such as "
                     f"{sorted(set(np.abs(codes).ravel().tolist()))[-3:]}")


def _fold_row_shifts(mult: np.ndarray, shift: int, offset: np.ndarray, e: np.ndarray, node):
    """Requantisation for accumulators ``acc / 2^e[j]`` (SP2 units): ``M[j] 2^(d + e[j])``, ``S + d``, ``B 2^d``."""
    d = max(0, int(-e.min(initial=0)))
    new_mult = [int(m) << (d + int(k)) for m, k in zip(mult, e)]
    new_offset = [int(b) << d for b in offset]
    if shift + d > 62 or max(new_mult) >= 1 << REQUANT_BITS or max(map(abs, new_offset)) > MAX_OFFSET:
        raise QONNXError(f"{_node_text(node)} SP2 weights must keep the requantisation within 31-bit multipliers and "
                         f"shift 62, not shift {shift + d} and multiplier {max(new_mult)}")
    return np.array(new_mult, np.int64), shift + d, np.array(new_offset, np.int64)


# -- the front-end --------------------------------------------------------------------------------------------

class _Stage:
    """One layer to build: ``kind`` (``"weights"``, ``"maxpool"``, ``"avgpool"``, ``"flatten"``), its node, the
    per-sample shape it takes (``in_shape``) and what its kind needs."""

    def __init__(self, kind: str, node, in_shape: tuple[int, ...], **fields):
        self.kind, self.node, self.in_shape = kind, node, tuple(in_shape)
        self.__dict__.update(fields)


def _needs_codes(node, tensor: str) -> QONNXError:
    return QONNXError(f"{_node_text(node)} input must come from a Quant node (peforge layers take integer "
                      f"activations), not the unquantised tensor {tensor!r}")


def _plan(g: _Graph) -> tuple[_Quant, list[_Stage]]:
    """Walk the chain: ``(input Quant, stages)`` (see the module docstring)."""
    tensor, node = g.input, g.next(g.input)
    in_quant, stages = None, []
    quantised = False  # the tensor holds codes x scale: after a Quant, or a pool or flatten of such
    while node is not None:
        _check_domain(node)
        op = node.op_type
        if op in ("Flatten", "Reshape"):
            src = g.shape(tensor)
            tensor = _flatten(g, node, tensor)
            stages.append(_Stage("flatten", node, src[1:]))
        elif op == "Quant" and in_quant is None and all(s.kind == "flatten" for s in stages):
            in_quant = _act_quant(g, node, False)
            tensor, quantised = node.output[0], True
        elif op in ("Gemm", "MatMul", "Conv"):
            if not quantised:
                raise _needs_codes(node, tensor)
            lin = _Conv(g, node, tensor) if op == "Conv" else _Linear(g, node, tensor)
            in_shape = lin.in_shape if op == "Conv" else (lin.codes.shape[1],)
            tensor = lin.output
            node = g.next(tensor)
            if op != "Conv" and node is not None and node.op_type == "Add":
                lin.add_bias(g, node)
                tensor = lin.output
                node = g.next(tensor)
            relu, act, post = False, None, []
            # Relu, MaxPool and Flatten commute with one another and with the Quant (monotone, per channel)
            while node is not None and (node.op_type in ("Relu", "MaxPool", "Flatten", "Reshape")
                                        or (node.op_type == "Quant" and act is None)):
                _check_domain(node)
                if node.op_type == "Relu":
                    relu, tensor = True, node.output[0]
                elif node.op_type == "MaxPool":
                    fields = _maxpool(g, node, tensor)
                    post.append(_Stage("maxpool", node, fields.pop("input_shape"), **fields))
                    tensor = node.output[0]
                elif node.op_type == "Quant":
                    act, tensor = node, node.output[0]
                else:
                    src = g.shape(tensor)
                    tensor = _flatten(g, node, tensor)
                    post.append(_Stage("flatten", node, src[1:]))
                node = g.next(tensor)
            stages.append(_Stage("weights", lin.node, in_shape, op=lin, relu=relu,
                                 act=None if act is None else _act_quant(g, act, relu)))
            stages.extend(post)
            quantised = act is not None
            continue
        elif op == "MaxPool":
            if not quantised:
                raise _needs_codes(node, tensor)
            fields = _maxpool(g, node, tensor)
            stages.append(_Stage("maxpool", node, fields.pop("input_shape"), **fields))
            tensor = node.output[0]
        elif op in ("AveragePool", "GlobalAveragePool"):
            if not quantised:
                raise _needs_codes(node, tensor)
            fields = _avgpool(g, node, tensor)
            tensor = node.output[0]
            relu = req = None
            nxt = g.next(tensor)
            if nxt is not None and nxt.op_type == "Relu":
                relu, tensor = nxt, nxt.output[0]
                nxt = g.next(tensor)
            if nxt is not None and nxt.op_type in ("Trunc", "Quant"):
                _check_domain(nxt)
                req, tensor = nxt, nxt.output[0]
                nxt = g.next(tensor)
            stages.append(_Stage("avgpool", node, fields.pop("input_shape"), relu=relu, req=req, **fields))
            node = nxt
            continue
        elif op == "Trunc":
            after = g.producer[tensor].op_type if tensor in g.producer else "the input"
            raise QONNXError(f"{_node_text(node)} must follow an AveragePool or GlobalAveragePool (a Brevitas "
                             f"TruncAvgPool), not {after}")
        elif op == "Quant":
            raise QONNXError(f"{_node_text(node)} must follow a linear layer (Gemm or MatMul [+ Add] [+ Relu]), a Conv "
                             f"or an average pool, not another Quant or the input alone")
        elif op in ("Add", "Relu"):
            raise QONNXError(f"{_node_text(node)} must follow a Gemm, MatMul or Conv (a bias Add, then a Relu), not "
                             f"{g.producer[tensor].op_type if tensor in g.producer else 'the input'}")
        else:
            raise _unsupported(node)
        node = g.next(tensor)
    if in_quant is None or all(s.kind == "flatten" for s in stages):
        raise QONNXError(f"QONNX graph must have a layer (Gemm, MatMul, Conv or a pool) after its input Quant, not "
                         f"{'none' if in_quant else 'no input Quant either'}")
    return in_quant, stages


def _layer_stages(stages: list[_Stage]) -> list[_Stage]:
    """The stages that become layers: none before the first layer that is not a flatten (the input spec takes
    their shape), and no flatten of a tensor already flat."""
    first = next(i for i, s in enumerate(stages) if s.kind != "flatten")
    return [s for s in stages[first:] if not (s.kind == "flatten" and len(s.in_shape) == 1)]


def from_qonnx(model: Any, *, schemes: Mapping[int, str] | None = None) -> Network:
    """The integer network of a QONNX MLP or CNN (see the module docstring).

    Parameters
    ----------
    model : str, os.PathLike, qonnx ModelWrapper or onnx.ModelProto
    schemes : mapping int -> str, optional
        ``{layer index: "fixed" | "nm" | "sp2"}`` for layers with weights (dense or conv); default ``"fixed"``.

    Returns
    -------
    Network
        ``input.scale``, ``input.shape`` and every requantised layer's ``out_scale`` set (the QONNX output is
        ``logits * network.out_scale``).

    Raises
    ------
    QONNXError (ValueError)
        ``"QONNX node 'LSTM_0' (LSTM) must be one of Quant, Gemm, MatMul, Add (bias), Conv, MaxPool, AveragePool,
        GlobalAveragePool, Trunc, Relu, Flatten or Reshape: peforge compiles MLPs and CNNs (...), not 'LSTM'"``,
        ``"QONNX node 'Conv_0' (Conv) dilations must be 1 (peforge windows are dense), not [2, 2]"`` and the other
        refusals.
    """
    g = _Graph(load_model(model))
    in_quant, stages = _plan(g)
    kept = _layer_stages(stages)
    schemes = dict(schemes or {})
    for index, scheme in schemes.items():
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(kept):
            raise ValueError(f"Scheme layer must be an integer from 0 to {len(kept) - 1}, not {index!r}")
        if kept[index].kind != "weights":
            raise ValueError(f"Layer {index} scheme must be set on a layer with weights (Gemm, MatMul or Conv), not "
                             f"on the {kept[index].node.op_type} layer {index}")
        if scheme not in ("fixed", "nm", "sp2"):
            raise ValueError(f"Layer {index} scheme must be one of 'fixed', 'nm', 'sp2', not {scheme!r}")
    shape = kept[0].in_shape
    try:
        spec = InputSpec(math.prod(shape), in_quant.bits, in_quant.signed, float(in_quant.scale.reshape(())),
                         shape=shape)
    except ValueError as e:
        raise QONNXError(f"{_node_text(in_quant.node)} output: {e}") from None
    layers = []
    bits, signed, s_in, exact_in = spec.bits, spec.signed, float(spec.scale), True
    for n, stage in enumerate(kept):
        try:
            if stage.kind == "weights":
                layer, s_out, exact_in = _weight_layer(stage, shape, bits, signed, s_in, exact_in, schemes.get(n))
            elif stage.kind == "maxpool":
                layer, s_out = MaxPool(shape, stage.kernel, stage.stride, bits, signed, dims=stage.dims), s_in
            elif stage.kind == "flatten":
                layer, s_out = Flatten(shape, bits, signed), s_in
            else:
                layer, s_out, exact_in = _pool_layer(g, stage, shape, bits, signed, s_in, exact_in)
        except QONNXError:
            raise
        except (ValueError, TypeError) as e:
            raise QONNXError(f"{_node_text(stage.node)}: {e}") from None
        layers.append(layer)
        bits, signed, s_in, shape = layer.out_bits, layer.out_signed, s_out, layer.out_shape
    return Network(spec, tuple(layers))


def _weight_layer(stage: _Stage, shape, bits: int, signed: bool, s_in: float, exact_in: bool, scheme: str | None):
    """``(layer, its out_scale, exact)`` of a Gemm / MatMul / Conv stage (``exact``: as for :func:`_pool_layer`)."""
    lin, act = stage.op, stage.act
    weights = FixedWeights(lin.codes, lin.w_bits)
    acc_bound = weights.acc_bound(max(map(abs, int_range(bits, signed))))
    acc_scale = np.float64(s_in) * lin.w_scale.astype(np.float64)  # exact: two float32 factors
    if act is None:
        out_scale, out_bits = _raw_output(acc_scale, lin.bias, acc_bound, lin.node)
        out_signed, narrow, rounding = True, False, "half_up"
    else:
        out_scale, out_bits, out_signed, narrow, rounding = (float(act.scale.reshape(())), act.bits, act.signed,
                                                             act.narrow, act.rounding)
    mult, shift, offset, rounding, exact = _requant(acc_scale, lin.bias, out_scale, acc_bound, rounding,
                                                    lin.exact and exact_in)
    if scheme == "nm":
        weights = _nm_weights(lin.codes, lin.w_bits, lin.node, lin.unit)
    elif scheme == "sp2":
        weights, e = _sp2_weights(lin.codes, lin.node)
        mult, shift, offset = _fold_row_shifts(mult, shift, offset, e, lin.node)
    req = dict(multiplier=mult, shift=shift, offset=offset, relu=stage.relu, in_bits=bits, in_signed=signed,
               out_bits=out_bits, out_signed=out_signed, out_scale=out_scale, rounding=rounding, out_narrow=narrow)
    return lin.layer(weights, req, shape), out_scale, True


# -- average pools ----------------------------------------------------------------------------------------------

_POOL_ROUNDING = {"ROUND": "half_even", "HALF_EVEN": "half_even", "FLOOR": "floor", "HALF_UP": "half_up"}


def _scalar_params(g: _Graph, node, names: tuple[str, ...]) -> list[float]:
    """The constant scalar inputs of a Trunc node after its data input (QONNX Trunc version 2)."""
    if len(node.input) != len(names) + 1:
        raise QONNXError(f"{_node_text(node)} must have {len(names) + 1} inputs (x, {', '.join(names)}: QONNX Trunc "
                         f"version 2), not {len(node.input)}")
    values = [g.const(name) for name in node.input[1:]]
    if any(v is None for v in values):
        raise QONNXError(f"{_node_text(node)} must have constant {', '.join(names)}, not computed ones")
    for name, v in zip(names, values):
        if np.asarray(v).size != 1:
            raise QONNXError(f"{_node_text(node)} {name} must be one per tensor, not shape {np.asarray(v).shape}")
    return [float(np.asarray(v, np.float32).reshape(())) for v in values]


def _pool_requant(g: _Graph, stage: _Stage, s_in: float, k: int, nonneg: bool) -> dict[str, Any]:
    """The Trunc or Quant after an average pool: its output range, scale, rounding mode, and the requantisation
    its own arithmetic gives when that is a power-of-two division of the window sum (``analytic``: ``(M, shift,
    rounding)`` or None), with ``slope`` (output codes per window-sum unit) for the search."""
    node = stage.req
    if node.op_type == "Quant":
        q = _Quant(g, node, "activation")
        if q.scale.size != 1:
            raise QONNXError(f"{_node_text(node)} activation scale must be one per tensor, not shape {q.scale.shape}")
        out_scale, bits, signed, narrow, mode = float(q.scale.reshape(())), q.bits, q.signed, q.narrow, q.mode
        slope = Fraction(s_in) / (k * Fraction(out_scale))
        analytic = None
        shift = _exact_shift([slope], [])
        rounding = _POOL_ROUNDING.get(mode)
        if shift is not None and rounding is not None and (rounding != "half_up" or nonneg):
            mult = int(slope * (1 << shift))
            analytic = (mult, shift, rounding) if mult < 1 << REQUANT_BITS else None
    else:
        scale, zp, _, out_scale, out_bits = _scalar_params(
            g, node, ("scale", "zero point", "input bit width", "output scale", "output bit width"))
        if zp != 0:
            raise QONNXError(f"{_node_text(node)} zero point must be 0 (peforge quantisation is symmetric), not {zp!r}")
        if not (out_bits == int(out_bits) and 1 <= out_bits <= 32) or not (scale > 0 and out_scale > 0):
            raise QONNXError(f"{_node_text(node)} output bit width must be an integer from 1 to 32 and the scales "
                             f"positive, not {out_bits!r}, {scale!r}, {out_scale!r}")
        bits, signed, narrow = int(out_bits), bool(_attr(node, "signed", 1)), bool(_attr(node, "narrow", 0))
        mode = str(_attr(node, "rounding_mode", "FLOOR")).upper()
        # qonnx's trunc_v2: y = round(avg / scale) / 2^round(log2(out_scale / scale)), clipped, rounded by mode
        t = int(np.round(np.log2(np.float32(out_scale) / np.float32(scale))))
        slope = Fraction(s_in) / (k * Fraction(scale)) / Fraction(2) ** t
        rounding = _POOL_ROUNDING.get(mode)
        analytic = None
        if rounding is not None and (rounding != "half_up" or nonneg):
            analytic = (1, t, rounding) if t >= 1 else (1 << (1 - t), 1, rounding)
    if signed and bits < 2:
        raise QONNXError(f"{_node_text(node)} must have at least 2 bits when signed, not {bits}")
    return {"out_scale": out_scale, "bits": bits, "signed": signed, "narrow": narrow, "mode": mode,
            "analytic": analytic, "slope": slope}


def _pool_table(g: _Graph, stage: _Stage, sums: np.ndarray, k: int, s_in: float, lo: int, hi: int,
                out_scale: float) -> np.ndarray:
    """int64: the output code the model's own pool, Relu and Trunc / Quant nodes give each window sum in ``sums``
    (one window per sample, its ``k`` input codes from ``[lo, hi]``, run in ``execute_onnx``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    nodes = [n for n in (stage.node, stage.relu, stage.req) if n is not None]
    copies = []
    for n in nodes:
        c = onnx.NodeProto()
        c.CopyFrom(n)
        copies.append(c)
    copies[0].input[0] = "window"
    inits = [numpy_helper.from_array(g.const(name), name) for n in nodes[1:] for name in n.input[1:] if name]
    # each window's codes: lo everywhere, the sum's excess over k * lo filled in element by element
    span = hi - lo
    excess = (sums - k * lo)[:, None] - span * np.arange(k)[None, :]
    codes = lo + np.clip(excess, 0, span)
    window = (codes.astype(np.float32) * np.float32(s_in)).reshape(len(sums), 1, *stage.kernel)
    out = nodes[-1].output[0]
    graph = helper.make_graph(copies, "pool", [helper.make_tensor_value_info("window", TensorProto.FLOAT,
                                                                             list(window.shape))],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], initializer=inits)
    sub = helper.make_model(graph, opset_imports=list(g.model.model.opset_import))
    sub.ir_version = g.model.model.ir_version
    wrapper = ModelWrapper(sub).transform(InferShapes())
    y = np.asarray(execute_onnx(wrapper, {"window": window})[out], np.float32).reshape(len(sums))
    z = np.rint(y.astype(np.float64) / out_scale)
    if np.any((z * np.float64(np.float32(out_scale))).astype(np.float32) != y):
        raise QONNXError(f"{_node_text(stage.req)} output must be integer multiples of its scale {out_scale!r}, not "
                         f"values such as {y[:3].tolist()}")
    return z.astype(np.int64)


def _fit_pool(sums: np.ndarray, z: np.ndarray, lo: int, hi: int, analytic, slope: Fraction):
    """``(M, shift, B, rounding)`` with ``clip(requantize(sums, M, shift, B, rounding), lo, hi) == z`` exactly: the
    analytic candidate if it matches, else the smallest shift with ``floor`` rounding that does; None if none."""
    def matches(m, shift, b, rounding):
        return np.array_equal(np.clip(requantize(sums, m, shift, b, rounding=rounding), lo, hi), z)

    if analytic is not None and matches(analytic[0], analytic[1], 0, analytic[2]):
        return analytic[0], analytic[1], 0, analytic[2]
    inner_lo, inner_hi = z > lo, z < hi  # outputs not clipped from below / from above
    top = max(int(np.abs(sums).max(initial=0)), 1)
    zmax = int(np.abs(z).max(initial=0)) + 1
    for shift in range(1, 62 - zmax.bit_length()):
        base = slope * (1 << shift)
        for m in range(max(0, math.floor(base) - 1), math.ceil(base) + 2):
            if m >= 1 << REQUANT_BITS or top * m >= 1 << 62:
                continue
            t = sums * np.int64(m)
            low = (z << shift) - t  # B >= z 2^S - W M wherever z is above the lower clip
            high = ((z + 1) << shift) - 1 - t  # B <= (z + 1) 2^S - 1 - W M wherever z is below the upper clip
            b_lo = int(low[inner_lo].max(initial=-MAX_OFFSET))
            b_hi = int(high[inner_hi].min(initial=MAX_OFFSET))
            if b_lo <= b_hi:
                b = min(max(0, b_lo), b_hi)
                if matches(m, shift, b, "floor"):
                    return m, shift, b, "floor"
    return None


def _pool_layer(g: _Graph, stage: _Stage, shape, bits: int, signed: bool, s_in: float, exact_in: bool):
    """``(layer, its out_scale, exact)`` of an average pool stage; ``exact``: the executor's output values are the
    codes times ``out_scale`` (after a Trunc or Quant always; the window sums of ``s_in / k`` for ``k = 2^p``)."""
    k = math.prod(stage.kernel)
    lo, hi = int_range(bits, signed)
    relu = stage.relu is not None
    channels = shape[0]
    if stage.req is None:  # the window sums themselves, of scale s_in / k
        top_lo, top_hi = max(k * lo, 0) if relu else k * lo, k * hi
        out_signed = top_lo < 0
        out_bits = signed_bits_for(top_lo, top_hi) if out_signed else max(top_hi.bit_length(), 1)
        fit, narrow, out_scale = (2, 1, 0, "half_up"), False, s_in / k
        exact = exact_in and (k & (k - 1)) == 0
    else:
        rq = _pool_requant(g, stage, s_in, k, relu or lo >= 0)
        out_bits, out_signed, narrow, out_scale = rq["bits"], rq["signed"], rq["narrow"], rq["out_scale"]
        out_lo, out_hi = narrow_range(out_bits, out_signed, narrow)
        out_lo = max(out_lo, 0) if relu else out_lo
        sums = np.arange(k * lo, k * hi + 1, dtype=np.int64)
        fit = None
        if len(sums) * k <= _TABLE_ELEMENTS:
            z = _pool_table(g, stage, sums, k, s_in, lo, hi, out_scale)
            fit = _fit_pool(sums, z, out_lo, out_hi, rq["analytic"], rq["slope"])
        elif rq["analytic"] is not None:
            fit = (rq["analytic"][0], rq["analytic"][1], 0, rq["analytic"][2])
        exact = True
        if fit is None:  # no integer requantisation gives the executor's outputs: the nearest one (compare counts)
            rounding = _POOL_ROUNDING.get(rq["mode"])
            if rounding is None or (rounding == "half_up" and not (relu or lo >= 0)):
                raise QONNXError(f"{_node_text(stage.req)} rounding_mode must be ROUND, HALF_EVEN, FLOOR (or HALF_UP "
                                 f"on unsigned or ReLU outputs), not {rq['mode']!r}")
            r = Requant.fit(np.array([float(rq["slope"])]), np.zeros(1), 1.0, acc_bound=k * max(-lo, hi))
            fit = (int(r.multiplier[0]), r.shift, 0, rounding)
    mult, shift, offset, rounding = fit
    fields = dict(multiplier=np.full(channels, mult, np.int64), shift=shift, offset=np.full(channels, offset, np.int64),
                  relu=relu, in_bits=bits, in_signed=signed, out_bits=out_bits, out_signed=out_signed,
                  out_scale=float(out_scale), rounding=rounding, out_narrow=narrow, dims=stage.dims)
    if stage.global_:
        layer = GlobalAvgPool(shape, **fields)
    else:
        layer = AvgPool(shape, stage.kernel, stage.stride, **fields)
    return layer, float(out_scale), exact


# -- running and comparing ----------------------------------------------------------------------------------

def run_qonnx(model: Any, x: Any) -> np.ndarray:
    """``execute_onnx`` of a batch: float32 outputs ``[N, ...]`` of float inputs ``x [N, ...]`` (one run, the
    model's batch size changed to ``N``)."""
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    wrapper = load_model(model) if not hasattr(model, "graph") or not hasattr(model, "transform") else model
    x = np.asarray(x, np.float32)
    shape = wrapper.get_tensor_shape(wrapper.graph.input[0].name)
    batched = wrapper.transform(ChangeBatchSize(len(x))).transform(InferShapes())
    out = execute_onnx(batched, {batched.graph.input[0].name: x.reshape(len(x), *shape[1:])})
    return np.asarray(out[batched.graph.output[0].name])


def dequantize_input(network: Network, x_int: Any, model: Any = None) -> np.ndarray:
    """float32 inputs that the input ``Quant`` maps to exactly the codes ``x_int``: ``x_int * input.scale``
    (reshaped to the model's input shape when ``model`` is given)."""
    x = np.asarray(x_int, np.int64).astype(np.float64) * network.input.scale
    if model is not None:
        shape = model.get_tensor_shape(model.graph.input[0].name)
        x = x.reshape(len(x), *shape[1:])
    return x.astype(np.float32)


def quantize_input(model: Any, x: Any) -> np.ndarray:
    """int64 ``[N, features]``: the codes the model's input ``Quant`` gives the real inputs ``x [N, ...]``, computed
    by qonnx's own ``int_quant`` (its rounding mode, clip and arithmetic) in ``x``'s float type, as ``execute_onnx``
    computes them on that array (float32: the executor's input type).

    Raises
    ------
    QONNXError (ValueError)
        The refusals of :func:`from_qonnx` (the graph is walked to find the input ``Quant``).
    """
    from qonnx.custom_op.general.intquant import int_quant

    in_quant, _ = _plan(_Graph(load_model(model)))
    x = np.asarray(x)
    x = x if x.dtype.kind == "f" else x.astype(np.float64)
    y = int_quant(x, in_quant.scale, in_quant.zp, np.float32(in_quant.bits), in_quant.signed, in_quant.narrow,
                  in_quant.mode)
    codes = np.rint(np.asarray(y, np.float64) / np.float64(in_quant.scale.reshape(())))
    return codes.reshape(len(codes), -1).astype(np.int64)


def compare(model: Any, network: Network, x_int: Any) -> dict[str, Any]:
    """``execute_onnx`` on the float inputs of the codes ``x_int`` against ``network.golden(x_int)`` times the
    output scale (``network.out_scale``, rounded to the executor's float32, as its own output is): ``{"outputs",
    "differ", "max_lsb"}`` (outputs compared, how many differ, the largest difference in output LSBs)."""
    wrapper = load_model(model)
    ref = run_qonnx(wrapper, dequantize_input(network, x_int, wrapper)).reshape(len(x_int), -1)
    scale = network.out_scale
    if scale is None and all(layer.kind in ("maxpool", "flatten") for layer in network.layers):
        scale = network.input.scale  # nothing but max pools and flattens: the input's scale passes
    # logits x scale, rounded once to the executor's output type (as its own Quant or Gemm rounds its product)
    ours = (network.golden(x_int).astype(np.float64) * scale).astype(ref.dtype)
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64)) / scale
    return {"outputs": int(diff.size), "differ": int(np.count_nonzero(diff)), "max_lsb": float(diff.max(initial=0.0))}
