"""The ``peforge.sw.qonnx_ops`` ONNX domain: peforge layers as QONNX custom ops, with their Python reference implementation.

``qonnx`` finds a custom op by importing the node's domain as a Python module and reading its ``custom_op``
dict (``qonnx.custom_op.registry``), so a model written by :func:`sw.to_qonnx.to_qonnx` runs in
``qonnx.core.onnx_exec.execute_onnx`` wherever peforge is installed, with no registration step. The domain
name is this module's import path, :data:`DOMAIN`.

Every op is one whole layer of a :class:`sw.network.Network` (``docs/qonnx.md`` has the table): a dense layer
(``FixedDense``, ... :data:`OP_TYPES`), a convolution (``FixedConv``, ... :data:`CONV_OP_TYPES`) or an average
pool (``AvgPool``, ``GlobalAvgPool``)::

    codes = x / in_scale                      must be integers in the layer's input range
    acc   = the layer's exact integer golden  the scheme's dot products (sw.network, sw.conv), or window sums
    z     = clip(requantize(acc, multiplier, shift, offset, rounding), lo, hi)
    y     = float32(z * out_scale)           float64 (DOUBLE) when out_bits > 24 (WIDE_BITS)

Inputs: ``x`` (float ``[N, in]``, or ``[N, C, L]`` / ``[N, C, H, W]`` for a convolution or pool), then the
scheme's weight arrays in the order of its ``roles`` (int64 tensors, as in ``weights.npz``; none for a pool),
then ``multiplier`` and ``offset`` (int64 ``[out]``, per output channel). Attributes: ``format`` (the layer's
``format`` object of ``network.json``, as JSON text; not for pools), ``shift``, ``rounding``, ``relu``,
``in_bits``, ``in_signed``, ``out_bits``, ``out_signed``, ``out_narrow`` (ints 0/1 for the bools), ``in_scale``
and ``out_scale`` (floats); a convolution also ``in_shape``, ``kernel``, ``stride``, ``padding`` (ints, as in
``network.json``) and ``groups``, an average pool ``in_shape``, ``kernel`` and ``stride``, a global one
``in_shape``.
"""

from __future__ import annotations

import json

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.custom_op.base import CustomOp

from .network import SCHEMES, Layer, layer_from_manifest

__all__ = ["DOMAIN", "OP_TYPES", "CONV_OP_TYPES", "POOL_OP_TYPES", "WIDE_BITS", "custom_op", "layer_of_node",
           "make_node", "op_type"]

#: The ONNX domain of the peforge ops: this module's import path.
DOMAIN = __name__
#: Op type of a dense layer, by scheme.
OP_TYPES = {"fixed": "FixedDense", "sp2": "SP2Dense", "msq": "MSQDense", "nm": "NMDense",
            "circulant": "CirculantDense", "crossbar": "CrossbarDense"}
#: Op type of a convolution (``conv1d`` / ``conv2d``), by scheme.
CONV_OP_TYPES = {"fixed": "FixedConv", "sp2": "SP2Conv", "msq": "MSQConv", "nm": "NMConv",
                 "circulant": "CirculantConv", "crossbar": "CrossbarConv"}
#: Op type of an average pool, by kind.
POOL_OP_TYPES = {"avgpool": "AvgPool", "globalavgpool": "GlobalAvgPool"}

#: Outputs wider than this many bits are float64 (``DOUBLE``) tensors: float32 holds integers to 2^24 exactly.
WIDE_BITS = 24

_REQUANT_ATTRS = {"shift": ("i", True, 1), "rounding": ("s", False, "half_up"), "relu": ("i", True, 0),
                  "in_bits": ("i", True, 8), "in_signed": ("i", True, 1), "out_bits": ("i", True, 8),
                  "out_signed": ("i", True, 1), "out_narrow": ("i", False, 0), "in_scale": ("f", False, 1.0),
                  "out_scale": ("f", False, 1.0)}
_ATTRS = {"format": ("s", True, ""), **_REQUANT_ATTRS}
_GEOMETRY = {"in_shape": ("ints", True, []), "kernel": ("ints", True, []), "stride": ("ints", True, [])}
_CONV_ATTRS = {**_ATTRS, **_GEOMETRY, "padding": ("ints", True, []), "groups": ("i", True, 1)}
_POOL_ATTRS = {**_REQUANT_ATTRS, **_GEOMETRY}
_GLOBAL_POOL_ATTRS = {**_REQUANT_ATTRS, "in_shape": ("ints", True, [])}


def op_type(layer) -> str:
    """The op type of a layer with a node of its own: dense, conv or average pool."""
    if layer.kind in POOL_OP_TYPES:
        return POOL_OP_TYPES[layer.kind]
    return (CONV_OP_TYPES if layer.kind in ("conv1d", "conv2d") else OP_TYPES)[layer.scheme]


def layer_of_node(op: CustomOp, arrays: list[np.ndarray]) -> Layer:
    """The layer a peforge node describes (``arrays``: its inputs after ``x``), validated.

    Raises
    ------
    TypeError, ValueError
        ``"node 'SP2Dense_0': layers[0]: SP2 codes must be integers from 0 to 15, not 16 (at index (0, 3))"``
        and the other layer errors of :func:`sw.network.load`.
    """
    scheme = op.scheme
    roles = (*(SCHEMES[scheme].roles if scheme else ()), "multiplier", "offset")
    where = f"node {op.onnx_node.name!r}"
    if len(arrays) != len(roles):
        raise ValueError(f"{where} inputs must be x, {', '.join(roles)}, not {len(arrays) + 1} inputs")
    get = op.get_nodeattr
    out = len(np.asarray(arrays[-1]).reshape(-1))
    entry = {"input": {"bits": get("in_bits"), "signed": bool(get("in_signed"))},
             "requant": {"shift": get("shift"), "rounding": get("rounding")}, "relu": bool(get("relu")),
             "output": {"bits": get("out_bits"), "signed": bool(get("out_signed")),
                        "narrow": bool(get("out_narrow"))},
             "arrays": {role: role for role in roles}}
    if scheme:
        try:
            entry["format"] = json.loads(get("format"))
        except ValueError as e:
            raise ValueError(f"{where} format must be JSON text, not {get('format')!r} ({e})") from None
        entry["scheme"] = scheme
    named = {role: np.asarray(a).astype(bool if role == "is_sp2" else np.int64) for role, a in zip(roles, arrays)}
    if op.kind == "dense":
        entry.update(in_features=0, out_features=out)
        entry["in_features"] = _in_features(scheme, named["codes" if scheme == "msq" else roles[0]], entry["format"])
    else:
        shape = [int(n) for n in get("in_shape")]
        entry["in_shape"] = shape
        if op.kind == "conv":
            entry.update(kind=f"conv{len(shape) - 1}d", kernel=list(get("kernel")), stride=list(get("stride")),
                         padding=list(get("padding")), groups=get("groups"), out_channels=out)
        elif op.kind == "avgpool":
            entry.update(kind="avgpool", kernel=list(get("kernel")), stride=list(get("stride")))
        else:
            entry.update(kind="globalavgpool")
    return layer_from_manifest(entry, named, where)


def _in_features(scheme: str, first: np.ndarray, fmt) -> int:
    """The layer's input width from its first weight array (0 where the shape does not tell: load refuses it)."""
    fmt = fmt if isinstance(fmt, dict) else {}
    if first.ndim < 2:
        return 0
    if scheme == "crossbar":
        return first.shape[0]
    if scheme == "nm":
        return first.shape[1] // max(1, int(fmt.get("n", 1))) * int(fmt.get("m", 1))
    if scheme == "circulant":
        return first.shape[1] * int(fmt.get("block", 1))
    return first.shape[1]


class _LayerOp(CustomOp):
    """One peforge layer (module docstring); subclasses name the kind and the scheme."""

    kind = "dense"
    scheme = ""
    attrs = _ATTRS

    def get_nodeattr_types(self):
        return dict(self.attrs)

    def make_shape_compatible_op(self, model):
        # the shapes are hidden together: take the batch size from the graph input, the rest from the layer
        batch = model.get_tensor_shape(model.graph.input[0].name)[0]
        if self.kind == "dense":
            shape = [len(model.get_initializer(self.onnx_node.input[-1]))]
        else:
            shape = list(layer_of_node(self, [model.get_initializer(n) for n in self.onnx_node.input[1:]]).out_shape)
        return helper.make_node("RandomNormal", [], [self.onnx_node.output[0]], mean=0.0, scale=1.0,
                                dtype=TensorProto.DOUBLE if self.wide else TensorProto.FLOAT, shape=[batch, *shape])

    @property
    def wide(self) -> bool:
        """Whether the output is float64: codes wider than float32's 24-bit significand."""
        return self.get_nodeattr("out_bits") > WIDE_BITS

    def infer_node_datatype(self, model):
        model.set_tensor_datatype(self.onnx_node.output[0], DataType["FLOAT32"])  # qonnx has no FLOAT64 type

    def execute_node(self, context, graph):
        node = self.onnx_node
        layer = layer_of_node(self, [context[name] for name in node.input[1:]])
        x = np.asarray(context[node.input[0]], np.float64)
        codes = np.rint(x / self.get_nodeattr("in_scale"))
        bad = np.argwhere(np.abs(codes * self.get_nodeattr("in_scale") - x) > 0)
        if len(bad):
            index = tuple(int(i) for i in bad[0])
            raise ValueError(f"node {node.name!r} input must be integer multiples of in_scale "
                             f"{self.get_nodeattr('in_scale')!r}, not {x[index]!r} (at index {index})")
        z = layer.forward(codes.reshape(len(codes), *layer.in_shape).astype(np.int64))
        y = np.asarray(z).reshape(len(codes), *layer.out_shape) * np.float64(self.get_nodeattr("out_scale"))
        context[node.output[0]] = y if self.wide else y.astype(np.float32)

    def verify_node(self):
        return []


def _op_class(name: str, kind: str, scheme: str, attrs) -> type[_LayerOp]:
    what = f"``{scheme}`` {kind} layer" if scheme else f"``{kind}`` layer"
    return type(name, (_LayerOp,), {"kind": kind, "scheme": scheme, "attrs": attrs, "__doc__": f"A {what}."})


#: The registry qonnx reads: op type -> CustomOp class.
custom_op = {
    **{OP_TYPES[s]: _op_class(OP_TYPES[s], "dense", s, _ATTRS) for s in OP_TYPES},
    **{CONV_OP_TYPES[s]: _op_class(CONV_OP_TYPES[s], "conv", s, _CONV_ATTRS) for s in CONV_OP_TYPES},
    "AvgPool": _op_class("AvgPool", "avgpool", "", _POOL_ATTRS),
    "GlobalAvgPool": _op_class("GlobalAvgPool", "globalavgpool", "", _GLOBAL_POOL_ATTRS),
}


def make_node(layer, x: str, arrays: list[str], y: str, name: str, in_scale: float, out_scale: float):
    """The ONNX node of ``layer`` (a dense, conv or average pool layer; inputs ``x`` and the initializer names
    ``arrays``, output ``y``)."""
    attrs = dict(shift=layer.shift, rounding=layer.rounding, relu=int(layer.relu), in_bits=layer.in_bits,
                 in_signed=int(layer.in_signed), out_bits=layer.out_bits, out_signed=int(layer.out_signed),
                 out_narrow=int(layer.out_narrow), in_scale=float(in_scale), out_scale=float(out_scale))
    if layer.kind not in POOL_OP_TYPES:
        attrs["format"] = json.dumps(layer.weights.format_dict(), sort_keys=True)
    if layer.kind != "dense":
        attrs["in_shape"] = list(layer.in_shape)
    if layer.kind in ("conv1d", "conv2d", "avgpool"):
        attrs.update(kernel=list(layer.kernel), stride=list(layer.stride))
    if layer.kind in ("conv1d", "conv2d"):
        attrs.update(padding=list(layer.padding), groups=layer.groups)
    return helper.make_node(op_type(layer), [x, *arrays], [y], name=name, domain=DOMAIN, **attrs)
