"""From QONNX: a quantised MLP (as Brevitas ``export_qonnx`` writes it) to an integer :class:`sw.network.Network`.

Accepted graphs, after ``qonnx.util.cleanup.cleanup_model`` (which :func:`from_qonnx` runs), are one chain::

    input -> Quant -> [Flatten | Reshape] -> linear -> [Relu] -> [Quant] -> linear -> ... -> output

=======================================  ===================================================================
node                                     accepted
=======================================  ===================================================================
``Quant`` on the input / activations     scale per tensor, zero point 0, 1 to 32 bits (signed: 2 to 32),
                                         ``signed``, ``narrow``; ``rounding_mode`` ``ROUND`` / ``HALF_EVEN``
                                         (-> ``half_even``), ``FLOOR`` (-> ``floor``), ``HALF_UP`` on unsigned
                                         or ReLU outputs (-> ``half_up``)
linear                                   ``Gemm`` (``alpha = beta = 1``, ``transA = 0``, either ``transB``), or
                                         ``MatMul`` [+ ``Add`` of a constant bias]; 2-D input ``[batch, in]``
weight                                   a ``Quant`` of a constant: scale per tensor or per output channel,
                                         zero point 0, 2 to 16 bits signed (1 to 15 unsigned), any rounding
bias                                     a constant, or a ``Quant`` of one (zero point 0), per output channel
``Relu``                                 after a linear
``Flatten`` / ``Reshape``                to ``[batch, features]`` only
output                                   quantised (a ``Quant`` ends the last layer) or not (the last linear,
                                         or its ``Relu``, is the graph output)
=======================================  ===================================================================

Anything else is refused with one line naming the node, its op type and what is supported
(:class:`QONNXError`, a ValueError). Never a guess.

Integers. The network's input is the input ``Quant``'s integer codes, ``x_int = x / scale`` (``InputSpec.scale``
holds the scale). A hidden layer's output is its activation ``Quant``'s codes; ``Layer.out_scale`` its scale.
An unquantised output is given as integers of the finest power-of-two step that holds every value exactly
(``out_scale``; 32 bits at most). The QONNX model's output is ``logits * out_scale``.

Requantisation. Per layer, with the float32 values the QONNX executor computes with (input scale ``s_in``,
weight scale ``s_w[j]``, bias ``c[j]`` as its ``Quant`` outputs them, output scale ``s_out``)::

    m[j] = s_in * s_w[j] / s_out      beta[j] = c[j] / s_out      (exact rationals)
    S    = the smallest shift >= 1 making every m[j] 2^S and beta[j] 2^S an integer
    M[j] = m[j] 2^S,  B[j] = beta[j] 2^S                           exact

when that ``S`` exists with ``M < 2^31`` (always for power-of-two scales: the FINN convention); the layer then
computes exactly what the ``Quant`` computes. Otherwise the layer uses :meth:`sw.requant.Requant.fit` (31-bit
multipliers), close to but not always equal to the float reference; :func:`compare` counts the differences.

Schemes: every layer is ``fixed`` (``fixed-mac``) unless ``schemes`` chooses ``"nm"`` (weights N:M sparse in
every group: the sparsest legal format is used) or ``"sp2"`` (every weight an SP2 level times a power of two
per row: the narrowest SP2 format is used) for it.

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
from .intops import INT64_MAX, int_range, signed_bits_for
from .network import MAX_OFFSET, FixedWeights, InputSpec, Layer, Network, NMWeights, SP2Weights
from .nm import NMFormat
from .requant import REQUANT_BITS, Requant
from .sp2 import SP2Format

__all__ = ["QONNXError", "SUPPORTED", "load_model", "from_qonnx", "run_qonnx", "dequantize_input", "compare"]

#: What the front-end accepts, for the refusals.
SUPPORTED = "Quant, Gemm, MatMul, Add (bias), Relu, Flatten or Reshape"
_QUANT_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas")
_ROUNDINGS = {"ROUND": "half_even", "HALF_EVEN": "half_even", "FLOOR": "floor"}


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
        (no front-end takes recurrent layers yet: not QONNX, not from_torch), not the
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
_RECURRENT = ("LSTM", "GRU", "RNN", "QuantLSTMCell", "QuantLSTM", "QuantGRU", "QuantRNN")


def _unsupported(node) -> QONNXError:
    """The refusal of a node peforge does not compile (a standard op by its type, a custom op with its domain)."""
    standard = node.domain in ("", "ai.onnx")
    op = repr(node.op_type) if standard else f"the {node.domain} op {node.op_type!r}"
    why = "peforge compiles MLPs"
    if node.op_type in _RECURRENT:
        why += " (no front-end takes recurrent layers yet: not QONNX, not from_torch)"
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
        outputs = [o.name for o in model.graph.output if o.name not in init]
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
    if node.op_type in ("Quant",) and node.domain not in _QUANT_DOMAINS:
        raise QONNXError(f"{_node_text(node)} must be in the QONNX domain 'qonnx.custom_op.general', not "
                         f"{node.domain!r}")
    if node.op_type not in ("Quant",) and node.domain not in ("", "ai.onnx"):
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


class _Linear:
    """One Gemm / MatMul (+ bias Add): integer weights [out, in], weight scales [out], float32 bias [out]."""

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
        wq_node = g.producer.get(node.input[1])
        if wq_node is None or wq_node.op_type != "Quant" or g.const(wq_node.input[0]) is None:
            what = "a constant without a Quant" if g.const(node.input[1]) is not None else "a computed tensor"
            raise QONNXError(f"{_node_text(node)} weight must be a Quant of a constant (peforge compiles quantised "
                             f"weights), not {what} ({node.input[1]!r})")
        wq = _Quant(g, wq_node, "weight")
        w = g.const(wq_node.input[0])
        if w.ndim != 2 or w.shape[0 if trans_b else 1] == 0:
            raise QONNXError(f"{_node_text(wq_node)} weight must be 2-D, not shape {w.shape}")
        codes, values = wq.codes(w), wq.values(w)
        try:
            scale = np.broadcast_to(wq.scale, w.shape)
        except ValueError:
            scale = None
        if not trans_b:
            codes, values, scale = codes.T, values.T, None if scale is None else scale.T
        if scale is None or np.any(scale != scale[:, :1]):
            raise QONNXError(f"{_node_text(wq_node)} weight scale must be per tensor or per output channel, not "
                             f"shape {wq.scale.shape}")
        if codes.shape[1] != shape[1]:
            raise QONNXError(f"{_node_text(node)} weight must have {shape[1]} inputs, not shape {w.shape}")
        self.codes, self.w_scale = codes, scale[:, 0].astype(np.float32)
        self.w_bits = wq.bits + (0 if wq.signed else 1)
        if not 2 <= self.w_bits <= 16:
            raise QONNXError(f"{_node_text(wq_node)} weight bits must be 2 to 16 signed (1 to 15 unsigned), not "
                             f"{wq.bits} {'signed' if wq.signed else 'unsigned'}")
        # the float weights the executor multiplies with must be codes x scale exactly
        self.exact = bool(np.all(values.astype(np.float64) == codes * scale.astype(np.float64)))
        self.out = codes.shape[0]
        self.bias = np.zeros(self.out, np.float32)
        self.output = node.output[0]
        if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
            self.bias = self._bias(g, node, node.input[2])

    def _bias(self, g: _Graph, node, name: str) -> np.ndarray:
        value = g.const(name)
        producer = g.producer.get(name)
        if value is None and producer is not None and producer.op_type == "Quant" and \
                g.const(producer.input[0]) is not None:
            value = _Quant(g, producer, "bias").values(g.const(producer.input[0]))
        if value is None:
            raise QONNXError(f"{_node_text(node)} bias must be a constant or a Quant of one, not the computed "
                             f"tensor {name!r} (a residual Add is not supported)")
        value = np.asarray(value, np.float32)
        if value.size not in (1, self.out) or (value.ndim >= 1 and value.shape[-1] not in (1, self.out)) or \
                (value.ndim == 2 and value.shape[0] != 1) or value.ndim > 2:
            raise QONNXError(f"{_node_text(node)} bias must be one value per output ({self.out}), not shape "
                             f"{value.shape}")
        return np.broadcast_to(value.reshape(-1), (self.out,)).astype(np.float32)

    def add_bias(self, g: _Graph, node) -> None:
        other = [name for name in node.input if name != self.output]
        if len(node.input) != 2 or len(other) != 1:
            raise QONNXError(f"{_node_text(node)} must add a constant bias to the linear output, not {list(node.input)}")
        if np.any(self.bias != 0):
            raise QONNXError(f"{_node_text(node)} must be the only bias of {self.node.name!r}, not a second one")
        self.bias = self._bias(g, node, other[0])
        self.output = node.output[0]


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
    LSB and bias, and the signed width holding every output."""
    values = [Fraction(float(v)) for v in (*acc_scale, *bias) if v != 0]
    k = min(_v2(v) for v in values)
    top = math.floor(math.log2(float(acc_scale.max())))
    if top - k >= REQUANT_BITS - 1:  # not exactly representable with 31-bit multipliers: round (Requant.fit)
        k = top - (REQUANT_BITS - 2)
    step = Fraction(2) ** k
    bound = acc_bound * max(math.ceil(Fraction(float(a)) / step) for a in acc_scale) + \
        max(math.ceil(abs(Fraction(float(b))) / step) for b in bias)
    bits = signed_bits_for(-bound, bound)
    if bits > 32:
        raise QONNXError(f"{_node_text(node)} unquantised output must fit 32-bit integers of its finest step "
                         f"2^{k}, not {bits} bits (add an output Quant)")
    return math.ldexp(1.0, k), max(bits, 2)


# -- schemes ------------------------------------------------------------------------------------------------

def _nm_weights(codes: np.ndarray, w_bits: int, node) -> NMWeights:
    best = None
    for m in (2, 4, 8, 16):
        if codes.shape[1] % m:
            continue
        n = int(np.count_nonzero(codes.reshape(codes.shape[0], -1, m), axis=2).max(initial=0))
        n = max(n, 1)
        if n < m and (best is None or n / m < best.n / best.m):
            best = NMFormat(n, m)
    if best is None:
        raise QONNXError(f"{_node_text(node)} weights must be N:M sparse (at most n < m non-zeros in every group of "
                         f"m = 2, 4, 8 or 16 inputs dividing {codes.shape[1]}) for scheme nm, not dense")
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


# -- the front-end --------------------------------------------------------------------------------------------

def _layer_plan(g: _Graph):
    """Walk the chain: ``(input Quant, input features, [(linear, relu, act Quant or None, relu node)])``."""
    tensor, node = g.input, g.next(g.input)
    in_quant, stages = None, []
    while node is not None:
        _check_domain(node)
        op = node.op_type
        if op in ("Flatten", "Reshape"):
            tensor = _flatten(g, node, tensor)
        elif op == "Quant" and in_quant is None and not stages:
            in_quant = _act_quant(g, node, False)
            tensor = node.output[0]
        elif op in ("Gemm", "MatMul"):
            if in_quant is None or (stages and stages[-1][2] is None):
                raise QONNXError(f"{_node_text(node)} input must come from a Quant node (peforge layers take "
                                 f"integer activations), not the unquantised tensor {tensor!r}")
            lin = _Linear(g, node, tensor)
            tensor, relu, act = lin.output, False, None
            node = g.next(tensor)
            if node is not None and node.op_type == "Add":
                lin.add_bias(g, node)
                tensor = lin.output
                node = g.next(tensor)
            if node is not None and node.op_type == "Relu":
                relu, tensor = True, node.output[0]
                node = g.next(tensor)
            if node is not None and node.op_type == "Quant":
                act = _act_quant(g, node, relu)
                tensor = node.output[0]
                node = g.next(tensor)
            stages.append((lin, relu, act))
            continue
        elif op == "Quant":
            raise QONNXError(f"{_node_text(node)} must follow a linear layer (Gemm or MatMul [+ Add] [+ Relu]), not "
                             f"another Quant or the input alone")
        elif op in ("Add", "Relu"):
            raise QONNXError(f"{_node_text(node)} must follow a Gemm or MatMul (a bias Add, then a Relu), not "
                             f"{g.producer[tensor].op_type if tensor in g.producer else 'the input'}")
        else:
            raise _unsupported(node)
        node = g.next(tensor)
    if not stages:
        raise QONNXError(f"QONNX graph must have a Gemm or MatMul layer after its input Quant, not "
                         f"{'none' if in_quant else 'no input Quant either'}")
    return in_quant, stages


def from_qonnx(model: Any, *, schemes: Mapping[int, str] | None = None) -> Network:
    """The integer network of a QONNX MLP (see the module docstring).

    Parameters
    ----------
    model : str, os.PathLike, qonnx ModelWrapper or onnx.ModelProto
    schemes : mapping int -> str, optional
        ``{layer index: "fixed" | "nm" | "sp2"}``; default ``"fixed"`` for every layer.

    Returns
    -------
    Network
        ``input.scale`` and every ``out_scale`` set (the QONNX output is ``logits * layers[-1].out_scale``).

    Raises
    ------
    QONNXError (ValueError)
        ``"QONNX node 'Conv_0' (Conv) must be one of Quant, Gemm, MatMul, Add (bias), Relu, Flatten or Reshape:
        peforge compiles MLPs, not 'Conv'"`` and the other refusals.
    """
    g = _Graph(load_model(model))
    in_quant, stages = _layer_plan(g)
    schemes = dict(schemes or {})
    for index, scheme in schemes.items():
        if not isinstance(index, int) or not 0 <= index < len(stages):
            raise ValueError(f"Scheme layer must be an integer from 0 to {len(stages) - 1}, not {index!r}")
        if scheme not in ("fixed", "nm", "sp2"):
            raise ValueError(f"Layer {index} scheme must be one of 'fixed', 'nm', 'sp2', not {scheme!r}")
    features = stages[0][0].codes.shape[1]
    spec = InputSpec(features, in_quant.bits, in_quant.signed, float(in_quant.scale.reshape(())))
    layers = []
    bits, signed, s_in = spec.bits, spec.signed, np.float32(spec.scale)
    for n, (lin, relu, act) in enumerate(stages):
        weights = FixedWeights(lin.codes, lin.w_bits)
        acc_bound = weights.acc_bound(max(map(abs, int_range(bits, signed))))
        acc_scale = np.float64(s_in) * lin.w_scale.astype(np.float64)  # exact: two float32 factors
        if act is None:
            out_scale, out_bits = _raw_output(acc_scale, lin.bias, acc_bound, lin.node)
            out_signed, narrow, rounding = True, False, "half_up"
        else:
            out_scale, out_bits, out_signed, narrow, rounding = (float(act.scale.reshape(())), act.bits, act.signed,
                                                                 act.narrow, act.rounding)
        mult, shift, offset, rounding, _exact = _requant(acc_scale, lin.bias, out_scale, acc_bound, rounding,
                                                         lin.exact)
        scheme = schemes.get(n, "fixed")
        if scheme == "nm":
            weights = _nm_weights(lin.codes, lin.w_bits, lin.node)
        elif scheme == "sp2":
            weights, e = _sp2_weights(lin.codes, lin.node)
            mult, shift, offset = _fold_row_shifts(mult, shift, offset, e, lin.node)
        try:
            layers.append(Layer(weights, mult, shift, offset, relu, bits, signed, out_bits, out_signed,
                                out_scale=out_scale, rounding=rounding, out_narrow=narrow))
        except (ValueError, TypeError) as e:
            raise QONNXError(f"{_node_text(lin.node)}: {e}") from None
        bits, signed, s_in = out_bits, out_signed, np.float32(out_scale)
    return Network(spec, tuple(layers))


def _fold_row_shifts(mult: np.ndarray, shift: int, offset: np.ndarray, e: np.ndarray, node):
    """Requantisation for accumulators ``acc / 2^e[j]`` (SP2 units): ``M[j] 2^(d + e[j])``, ``S + d``, ``B 2^d``."""
    d = max(0, int(-e.min(initial=0)))
    new_mult = [int(m) << (d + int(k)) for m, k in zip(mult, e)]
    new_offset = [int(b) << d for b in offset]
    if shift + d > 62 or max(new_mult) >= 1 << REQUANT_BITS or max(map(abs, new_offset)) > MAX_OFFSET:
        raise QONNXError(f"{_node_text(node)} SP2 weights must keep the requantisation within 31-bit multipliers and "
                         f"shift 62, not shift {shift + d} and multiplier {max(new_mult)}")
    return np.array(new_mult, np.int64), shift + d, np.array(new_offset, np.int64)


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


def compare(model: Any, network: Network, x_int: Any) -> dict[str, Any]:
    """``execute_onnx`` on the float inputs of the codes ``x_int`` against ``network.golden(x_int)`` times the
    output scale (rounded to the executor's float32, as its own output is): ``{"outputs", "differ", "max_lsb"}``
    (outputs compared, how many differ, the largest difference in output LSBs)."""
    wrapper = load_model(model)
    ref = run_qonnx(wrapper, dequantize_input(network, x_int, wrapper)).reshape(len(x_int), -1)
    scale = network.layers[-1].out_scale
    # logits x scale, rounded once to the executor's output type (as its own Quant or Gemm rounds its product)
    ours = (network.golden(x_int).astype(np.float64) * scale).astype(ref.dtype)
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64)) / scale
    return {"outputs": int(diff.size), "differ": int(np.count_nonzero(diff)), "max_lsb": float(diff.max(initial=0.0))}
