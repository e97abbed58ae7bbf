"""Convolution and pooling layer kinds: ``conv1d``, ``conv2d``, ``maxpool``, ``avgpool``, ``globalavgpool``,
``flatten`` (``docs/cnn.md``).

Tensors are ``[C, L]`` (1-D) and ``[C, H, W]`` (2-D); arrays hold them so (``[N, C, H, W]``, or flattened in
that order). A 1-D layer is the 2-D one with ``H = 1`` (kernel, stride and padding given for the one axis).

**conv** (``conv1d`` / ``conv2d``): zero padding (the integer code 0) per side, stride ``s``, ``groups`` 1 or
the input channels (depthwise). The weight of output channel ``o`` is a row of length ``kh * kw * C_in / g`` in
(kernel row, kernel column, channel) order, channel fastest, in any weight scheme (:data:`sw.weights.SCHEMES`,
the matrix ``[C_out, kh * kw * C_in / g]``)::

    acc[o, y, x] = sum over (i, j, c) of x_pad[g(o) * C_in / g + c, y * sh + i, x * sw + j] * w[o, (i * kw + j) * C_in / g + c]

(``g(o) = o // (C_out / g)``, the group of output channel ``o``), computed by the scheme's golden model on the
im2col rows, then requantised per output channel, clipped and ReLU'd exactly as a dense layer
(:class:`sw.kinds.Requantised`). N:M groups then run along the input channels of one kernel position, and a
circulant layer's ``C_out x C_in`` matrix at each kernel position is block-circulant (CirCNN).

**maxpool**: the largest value of each window (window and stride per axis, no padding); the range passes.
**avgpool**: the window sum, requantised per channel like a layer (``multiplier / 2^shift`` is ``1 / window``
in the real domain, any window size exact). **globalavgpool**: the same over the whole ``H x W`` (output
``[C, 1, 1]`` / ``[C, 1]``). **flatten**: ``[C, H, W]`` to ``[C * H * W]`` in that order (torch's).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from .intops import as_int_array
from .kinds import (GRAPH_FIELDS, LayerKind, ManifestReader, Requantised, check_bits, check_graph_fields,
                    check_shape, graph_entry, register_kind)
from .params import check_bool, check_choice, check_int
from .weights import SCHEMES, Weights, equal_arrays, manifest_keys

__all__ = ["Conv", "MaxPool", "AvgPool", "GlobalAvgPool", "Flatten", "im2col", "window_geometry"]


def _ints(subject: str, value: Any, n: int, minimum: int) -> tuple[int, ...]:
    """``value`` as a tuple of ``n`` integers ``>= minimum`` (a list or tuple of that length)."""
    if not isinstance(value, (list, tuple)) or len(value) != n or \
            not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value):
        raise ValueError(f"{subject} must be {n} integer{'s' if n > 1 else ''} >= {minimum}, not {value!r}")
    return tuple(value)


def _spatial(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(H, W)`` of a ``[C, L]`` (H = 1) or ``[C, H, W]`` tensor."""
    return (1, shape[1]) if len(shape) == 2 else (shape[1], shape[2])


def window_geometry(in_shape, kernel, stride, padding) -> tuple[int, int]:
    """``(H_out, W_out)`` of a sliding window: ``floor((H + pad_top + pad_bottom - kh) / sh) + 1`` per axis.
    ``kernel``, ``stride`` are ``(kh, kw)``, ``padding`` ``(top, bottom, left, right)``."""
    h, w = _spatial(in_shape)
    (kh, kw), (sh, sw), (pt, pb, pl, pr) = kernel, stride, padding
    return (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1


def im2col(x: np.ndarray, kernel, stride, padding, channels: slice | None = None) -> np.ndarray:
    """The windows of ``x [N, C, H, W]`` as rows ``[N, H_out, W_out, kh * kw * C]`` in (kernel row, kernel
    column, channel) order, channel fastest; zero padding (``padding = (top, bottom, left, right)``)."""
    (kh, kw), (sh, sw), (pt, pb, pl, pr) = kernel, stride, padding
    if channels is not None:
        x = x[:, channels]
    n, c, h, w = x.shape
    padded = np.zeros((n, c, h + pt + pb, w + pl + pr), np.int64)
    padded[:, :, pt:pt + h, pl:pl + w] = x
    ho, wo = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    rows = np.empty((n, ho, wo, kh, kw, c), np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = padded[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]   # [n, c, ho, wo]
            rows[:, :, :, i, j, :] = patch.transpose(0, 2, 3, 1)
    return rows.reshape(n, ho, wo, kh * kw * c)


class _Geometry:
    """Window fields shared by convolutions and pools: ``dims`` (1 or 2), ``kernel``, ``stride``, ``padding``
    (2-D ``(top, bottom, left, right)``, 1-D ``(left, right)``), all given per axis as the kind's dims say."""

    def _check_geometry(self, subject: str, in_shape, kernel, stride, padding) -> None:
        dims = self.dims
        shape = check_shape(f"{subject} input shape", tuple(in_shape) if isinstance(in_shape, list) else in_shape)
        if len(shape) != dims + 1:
            want = "(channels, length)" if dims == 1 else "(channels, height, width)"
            raise ValueError(f"{subject} input shape must be {want} for a {dims}-D layer, not {shape!r}")
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "kernel", _ints(f"{subject} kernel", list(kernel), dims, 1))
        object.__setattr__(self, "stride", _ints(f"{subject} stride", list(stride), dims, 1))
        object.__setattr__(self, "padding", _ints(f"{subject} padding (per side)", list(padding), 2 * dims, 0))
        h, w = _spatial(shape)
        kh, kw = self.kernel2d
        pt, pb, pl, pr = self.padding2d
        if kh > h + pt + pb or kw > w + pl + pr:
            raise ValueError(f"{subject} kernel must fit the padded input {(h + pt + pb, w + pl + pr)[2 - dims:]}, "
                             f"not {self.kernel}")
        if any(p >= k for p, k in zip(self.padding2d, (kh, kh, kw, kw))):
            raise ValueError(f"{subject} padding must be smaller than the kernel on every side, not {self.padding} "
                             f"for kernel {self.kernel}")

    @property
    def kernel2d(self) -> tuple[int, int]:
        return (1, *self.kernel) if self.dims == 1 else self.kernel

    @property
    def stride2d(self) -> tuple[int, int]:
        return (1, *self.stride) if self.dims == 1 else self.stride

    @property
    def padding2d(self) -> tuple[int, int, int, int]:
        return (0, 0, *self.padding) if self.dims == 1 else self.padding

    @property
    def out_spatial(self) -> tuple[int, int]:
        return window_geometry(self.input_shape, self.kernel2d, self.stride2d, self.padding2d)

    def _as_4d(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), self.input_shape[0], *_spatial(self.input_shape))

    def _geometry_entry(self) -> dict[str, Any]:
        return {"in_shape": list(self.input_shape), "kernel": list(self.kernel), "stride": list(self.stride),
                "padding": list(self.padding)}


def _kind_dims(kind: str) -> int:
    return 1 if kind.endswith("1d") else 2


# -- convolution -------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Conv(_Geometry, Requantised):
    """A convolution (kind ``conv1d`` or ``conv2d``): weights on a PE over every window, requantised per output
    channel (see the module docstring).

    Members
    -------
    weights : a weight scheme's class (:data:`sw.weights.SCHEMES`), ``[C_out, kh * kw * C_in / groups]``
    in_shape : tuple
        ``(C_in, L)`` or ``(C_in, H, W)``.
    kernel, stride : tuple of 1 or 2 ints
    padding : tuple of 2 or 4 ints
        Zero padding per side: ``(left, right)``, or ``(top, bottom, left, right)``.
    groups : int
        1, or ``C_in`` (depthwise: each output channel sees one input channel; ``C_out`` a multiple of ``C_in``).
    multiplier, shift, offset, relu, in_bits, in_signed, out_bits, out_signed, out_scale, rounding, out_narrow
        As :class:`sw.dense.Layer`, per output channel.

    Raises
    ------
    TypeError, ValueError
        ``"Conv2d groups must be 1 or the 8 input channels, not 2"``, ``"Conv2d weights must have 36 columns
        (kernel 3 x 3 x 4 input channels per group), not 32"``, ``"Conv2d kernel must fit the padded input
        (4, 4), not (5, 5)"``, and those of :class:`sw.dense.Layer`.
    """

    weights: Weights
    input_shape: tuple
    kernel: tuple
    stride: tuple
    padding: tuple
    groups: int
    multiplier: np.ndarray
    shift: int
    offset: np.ndarray
    relu: bool
    in_bits: int
    in_signed: bool
    out_bits: int
    out_signed: bool
    out_scale: float | None = None
    rounding: str = "half_up"
    out_narrow: bool = False
    name: str | None = None
    inputs: tuple[str, ...] | None = None
    dims: int = 2

    kind: ClassVar[str] = "conv2d"

    def __post_init__(self):
        subject = f"Conv{self.dims}d"
        check_int(f"{subject} dims", self.dims, min=1, max=2)
        object.__setattr__(self, "kind", f"conv{self.dims}d")
        _, inputs = check_graph_fields(subject, self.name, self.inputs, self.arity)
        object.__setattr__(self, "inputs", inputs)
        if not isinstance(self.weights, tuple(SCHEMES.values())):
            names = ", ".join(cls.__name__ for cls in SCHEMES.values())
            raise TypeError(f"{subject} weights must be one of {names}, not {self.weights!r}")
        self._check_geometry(subject, self.input_shape, self.kernel, self.stride, self.padding)
        c_in = self.input_shape[0]
        if self.groups not in (1, c_in) or isinstance(self.groups, bool):
            raise ValueError(f"{subject} groups must be 1 or the {c_in} input channels, not {self.groups!r}")
        kh, kw = self.kernel2d
        per_group = c_in // self.groups
        if self.weights.in_features != kh * kw * per_group:
            raise ValueError(f"{subject} weights must have {kh * kw * per_group} columns (kernel "
                             f"{' x '.join(map(str, self.kernel))} x {per_group} input channel"
                             f"{'s' if per_group > 1 else ''} per group), not {self.weights.in_features}")
        if self.weights.out_features % self.groups:
            raise ValueError(f"{subject} output channels must be a multiple of the {self.groups} groups, not "
                             f"{self.weights.out_features}")
        if self.groups > 1 and self.scheme == "circulant":
            raise ValueError(f"{subject} groups must be 1 for circulant weights (a block of k channels per kernel "
                             f"position), not {self.groups}")
        self._init_requant(subject, self.out_channels)

    def _check_input(self):
        self.weights.check_input(self.in_bits, self.in_signed, f"Conv{self.dims}d input")

    @property
    def scheme(self) -> str:
        return self.weights.scheme

    @property
    def out_channels(self) -> int:
        return self.weights.out_features

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.input_shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        ho, wo = self.out_spatial
        return (self.out_channels, wo) if self.dims == 1 else (self.out_channels, ho, wo)

    @property
    def window(self) -> int:
        """Elements of one window of one group: ``kh * kw * C_in / groups`` (the weight rows' length)."""
        return self.weights.in_features

    @property
    def acc_bound(self) -> int:
        lo, hi = self.in_range
        return self.weights.acc_bound(max(-lo, hi))

    def accumulate(self, x: Any) -> np.ndarray:
        """int64 ``[N, C_out, (H_out,) W_out]``: the accumulators of inputs ``x [N, *in_shape]`` (or flattened)."""
        arr = as_int_array("Conv input", x, *self.in_range)
        x4 = self._as_4d(arr.reshape(len(arr), -1))
        n, c_in = len(x4), self.input_shape[0]
        ho, wo = self.out_spatial
        out = np.zeros((n, ho, wo, self.out_channels), np.int64)
        per_in, per_out = c_in // self.groups, self.out_channels // self.groups
        for g in range(self.groups):
            rows = im2col(x4, self.kernel2d, self.stride2d, self.padding2d, slice(g * per_in, (g + 1) * per_in))
            flat = rows.reshape(n * ho * wo, -1)
            w = self.weights if self.groups == 1 else self.weights.take_rows(range(g * per_out, (g + 1) * per_out))
            if len(flat):
                out[..., g * per_out:(g + 1) * per_out] = w.accumulate(flat, self.in_bits, self.in_signed).reshape(
                    n, ho, wo, per_out)
        out = out.transpose(0, 3, 1, 2)
        return out.reshape(n, self.out_channels, wo) if self.dims == 1 else out

    def manifest(self, index: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {**self.weights.arrays(), "multiplier": self.multiplier, "offset": self.offset}
        keys = {role: f"layers.{index}.{role}" for role in arrays}
        req = self._requant_entry()
        entry = {"scheme": self.scheme, **self._geometry_entry(), "groups": self.groups,
                 "out_channels": self.out_channels, "input": req["input"], "format": self.weights.format_dict(),
                 "requant": req["requant"], "relu": self.relu, "output": req["output"], "arrays": keys}
        return self._graph_fields(entry), {keys[role]: arr for role, arr in arrays.items()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Conv):
            return NotImplemented
        (a, arrays_a), (b, arrays_b) = self.manifest(0), other.manifest(0)
        return a == b and equal_arrays(arrays_a, arrays_b)

    __hash__ = None

    @classmethod
    def from_manifest(cls, entry: Mapping, reader: ManifestReader, at: str) -> Conv:
        dims = _kind_dims(entry.get("kind", ""))
        entry = reader.field(lambda: manifest_keys(at, entry, (
            "scheme", "in_shape", "kernel", "stride", "padding", "groups", "out_channels", "input", "format",
            "requant", "relu", "output", "arrays"), GRAPH_FIELDS))
        reader.field(lambda: check_choice(f"{at}.scheme", entry["scheme"], SCHEMES))
        scheme = SCHEMES[entry["scheme"]]
        req = cls._load_requant(entry, reader, at)
        reader.field(lambda: check_int(f"{at}.out_channels", entry["out_channels"], min=1))
        reader.field(lambda: check_int(f"{at}.groups", entry["groups"], min=1))
        shape = reader.field(lambda: check_shape(f"{at}.in_shape", tuple(entry["in_shape"])
                                                 if isinstance(entry["in_shape"], list) else entry["in_shape"]))
        kernel = reader.field(lambda: _ints(f"{at}.kernel", entry["kernel"], dims, 1))
        if len(shape) != dims + 1 or entry["groups"] not in (1, shape[0]) or shape[0] % entry["groups"]:
            raise ValueError(f"{reader.jname}: {at}.in_shape must be {dims + 1} positive integers with the channels a "
                             f"multiple of groups = {entry['groups']}, not {list(shape)}")
        n_in = math.prod(kernel) * shape[0] // entry["groups"]
        n_out = entry["out_channels"]
        graph = graph_entry(reader, entry, at, cls.arity)
        params = reader.check(f"{at}.format", lambda: scheme.parse_format(entry["format"]))
        shapes = reader.check(at, lambda: scheme.shapes(params, n_in, n_out))
        shapes.update(multiplier=((n_out,), "out_channels"), offset=((n_out,), "out_channels"))
        keys = reader.field(lambda: manifest_keys(f"{at}.arrays", entry["arrays"], tuple(shapes)))
        arrays = reader.arrays(at, keys, shapes)
        weights = reader.build(at, lambda: scheme.build(params, {r: arrays[r] for r in scheme.roles}, n_in, n_out))
        reader.field(lambda: weights.check_input(req["in_bits"], req["in_signed"], f"{at}.input"))
        return reader.build(at, lambda: cls(
            weights=weights, input_shape=shape, kernel=kernel, stride=entry["stride"], padding=entry["padding"],
            groups=entry["groups"], multiplier=arrays["multiplier"], offset=arrays["offset"], dims=dims, **req,
            **graph))



register_kind(Conv, names=("conv1d", "conv2d"))


# -- pooling ---------------------------------------------------------------------------------------------------------

def _pool_geometry(subject, layer, kernel, stride) -> None:
    layer._check_geometry(subject, layer.input_shape, kernel, stride, [0] * (2 * layer.dims))


def _pool_windows(layer, x) -> np.ndarray:
    """``[N, H_out, W_out, kh * kw, C]``: every window's values, per channel."""
    x4 = layer._as_4d(x.reshape(len(x), -1))
    n, c = len(x4), x4.shape[1]
    rows = im2col(x4, layer.kernel2d, layer.stride2d, (0, 0, 0, 0))
    ho, wo = layer.out_spatial
    return rows.reshape(n, ho, wo, -1, c)


def _channels_first(y: np.ndarray, dims: int) -> np.ndarray:
    """``[N, H, W, C]`` to ``[N, C, H, W]`` (``[N, C, W]`` for a 1-D layer)."""
    y = np.moveaxis(y, -1, 1)
    return y.reshape(y.shape[0], y.shape[1], y.shape[3]) if dims == 1 else y


@dataclasses.dataclass(frozen=True, eq=False)
class MaxPool(_Geometry, LayerKind):
    """``maxpool``: the largest value of every window (``kernel``, ``stride`` per axis; no padding); the input
    range passes unchanged (``out_bits`` = ``in_bits``).

    Raises
    ------
    ValueError
        ``"Maxpool input shape must be (channels, height, width) for a 2-D layer, not (4, 8)"``,
        ``"Maxpool kernel must fit the padded input (2, 2), not (3, 3)"``.
    """

    input_shape: tuple
    kernel: tuple
    stride: tuple
    in_bits: int
    in_signed: bool
    name: str | None = None
    inputs: tuple[str, ...] | None = None
    dims: int = 2

    kind: ClassVar[str] = "maxpool"

    def __post_init__(self):
        check_int("Maxpool dims", self.dims, min=1, max=2)
        _, inputs = check_graph_fields("Maxpool", self.name, self.inputs, self.arity)
        object.__setattr__(self, "inputs", inputs)
        check_bits("Maxpool input bits", self.in_bits)
        check_bool("Maxpool input signed", self.in_signed)
        _pool_geometry("Maxpool", self, self.kernel, self.stride)

    out_bits = property(lambda self: self.in_bits)
    out_signed = property(lambda self: self.in_signed)
    out_scale = None
    in_shape = property(lambda self: self.input_shape)

    @property
    def out_shape(self):
        ho, wo = self.out_spatial
        c = self.input_shape[0]
        return (c, wo) if self.dims == 1 else (c, ho, wo)

    @property
    def out_range(self):
        return self.in_range

    def forward(self, x):
        arr = as_int_array("Maxpool input", x, *self.in_range)
        return _channels_first(_pool_windows(self, arr).max(axis=3), self.dims)

    def manifest(self, index):
        entry = {**self._geometry_entry(), "input": {"bits": self.in_bits, "signed": self.in_signed}}
        entry.pop("padding")
        return self._graph_fields(entry), {}

    def __eq__(self, other):
        if not isinstance(other, MaxPool):
            return NotImplemented
        return self.manifest(0) == other.manifest(0)

    __hash__ = None

    @classmethod
    def from_manifest(cls, entry, reader, at):
        entry = reader.field(lambda: manifest_keys(at, entry, ("in_shape", "kernel", "stride", "input"), GRAPH_FIELDS))
        inp = reader.field(lambda: manifest_keys(f"{at}.input", entry["input"], ("bits", "signed")))
        shape = entry["in_shape"]
        dims = len(shape) - 1 if isinstance(shape, list) and len(shape) in (2, 3) else 2
        graph = graph_entry(reader, entry, at, cls.arity)
        return reader.check(at, lambda: cls(tuple(shape) if isinstance(shape, list) else shape, entry["kernel"],
                                            entry["stride"], inp["bits"], inp["signed"], dims=dims, **graph))


register_kind(MaxPool)


@dataclasses.dataclass(frozen=True, eq=False)
class AvgPool(_Geometry, Requantised):
    """``avgpool``: the sum of every window (``kernel``, ``stride`` per axis; no padding), requantised per
    channel like a layer: ``multiplier[c] / 2^shift`` stands for ``1 / (kh * kw)`` (times any scale change), so
    any window size is exact.

    Raises
    ------
    ValueError
        ``"Avgpool kernel must fit the padded input (2, 2), not (3, 3)"``, the errors of the requantisation.
    """

    input_shape: tuple
    kernel: tuple
    stride: tuple
    multiplier: np.ndarray
    shift: int
    offset: np.ndarray
    relu: bool
    in_bits: int
    in_signed: bool
    out_bits: int
    out_signed: bool
    out_scale: float | None = None
    rounding: str = "half_up"
    out_narrow: bool = False
    name: str | None = None
    inputs: tuple[str, ...] | None = None
    dims: int = 2

    kind: ClassVar[str] = "avgpool"
    _subject: ClassVar[str] = "Avgpool"

    def __post_init__(self):
        check_int(f"{self._subject} dims", self.dims, min=1, max=2)
        _, inputs = check_graph_fields(self._subject, self.name, self.inputs, self.arity)
        object.__setattr__(self, "inputs", inputs)
        check_bits(f"{self._subject} input bits", self.in_bits)
        check_bool(f"{self._subject} input signed", self.in_signed)
        _pool_geometry(self._subject, self, self._kernel(), self._kernel() if self.kind == "globalavgpool"
                       else self.stride)
        self._init_requant(self._subject, self.input_shape[0])

    def _kernel(self):
        return self.kernel

    in_shape = property(lambda self: self.input_shape)

    @property
    def out_shape(self):
        ho, wo = self.out_spatial
        c = self.input_shape[0]
        return (c, wo) if self.dims == 1 else (c, ho, wo)

    @property
    def window(self) -> int:
        return math.prod(self.kernel)

    @property
    def acc_bound(self) -> int:
        lo, hi = self.in_range
        return self.window * max(-lo, hi)

    def accumulate(self, x):
        arr = as_int_array(f"{self._subject} input", x, *self.in_range)
        return _channels_first(_pool_windows(self, arr).sum(axis=3), self.dims)

    def _shape_entry(self):
        return self._geometry_entry() | {"padding": None}

    def manifest(self, index):
        arrays = {"multiplier": self.multiplier, "offset": self.offset}
        keys = {role: f"layers.{index}.{role}" for role in arrays}
        req = self._requant_entry()
        geometry = {k: v for k, v in self._shape_entry().items() if v is not None}
        entry = {**geometry, "input": req["input"], "requant": req["requant"], "relu": self.relu,
                 "output": req["output"], "arrays": keys}
        return self._graph_fields(entry), {keys[role]: arr for role, arr in arrays.items()}

    def __eq__(self, other):
        if not isinstance(other, AvgPool):
            return NotImplemented
        (a, arrays_a), (b, arrays_b) = self.manifest(0), other.manifest(0)
        return a == b and equal_arrays(arrays_a, arrays_b)

    __hash__ = None

    _fields: ClassVar[tuple[str, ...]] = ("in_shape", "kernel", "stride")

    @classmethod
    def from_manifest(cls, entry, reader, at):
        entry = reader.field(lambda: manifest_keys(at, entry, (*cls._fields, "input", "requant", "relu", "output",
                                                               "arrays"), GRAPH_FIELDS))
        req = cls._load_requant(entry, reader, at)
        shape = reader.field(lambda: check_shape(f"{at}.in_shape", tuple(entry["in_shape"])
                                                 if isinstance(entry["in_shape"], list) else entry["in_shape"]))
        if len(shape) not in (2, 3):
            raise ValueError(f"{reader.jname}: {at}.in_shape must be [C, L] or [C, H, W], not {list(shape)}")
        channels = shape[0]
        shapes = {"multiplier": ((channels,), "channels"), "offset": ((channels,), "channels")}
        keys = reader.field(lambda: manifest_keys(f"{at}.arrays", entry["arrays"], tuple(shapes)))
        arrays = reader.arrays(at, keys, shapes)
        graph = graph_entry(reader, entry, at, cls.arity)
        geometry = {k: entry[k] for k in cls._fields if k != "in_shape"}
        return reader.build(at, lambda: cls(shape, **geometry, multiplier=arrays["multiplier"],
                                            offset=arrays["offset"], dims=len(shape) - 1, **req, **graph))


register_kind(AvgPool)


@dataclasses.dataclass(frozen=True, eq=False)
class GlobalAvgPool(AvgPool):
    """``globalavgpool``: :class:`AvgPool` over the whole ``H x W`` (or ``L``): output ``[C, 1, 1]`` (``[C, 1]``).
    Construct with ``kernel`` and ``stride`` left as ``None``."""

    kernel: tuple | None = None
    stride: tuple | None = None
    multiplier: np.ndarray = None
    shift: int = None
    offset: np.ndarray = None
    relu: bool = None
    in_bits: int = None
    in_signed: bool = None
    out_bits: int = None
    out_signed: bool = None

    kind: ClassVar[str] = "globalavgpool"
    _subject: ClassVar[str] = "Globalavgpool"
    _fields: ClassVar[tuple[str, ...]] = ("in_shape",)

    def __post_init__(self):
        shape = self.input_shape
        spatial = tuple(shape[1:]) if isinstance(shape, (tuple, list)) else ()
        object.__setattr__(self, "kernel", spatial)
        object.__setattr__(self, "stride", spatial)
        super().__post_init__()

    def _shape_entry(self):
        return {"in_shape": list(self.input_shape)}


register_kind(GlobalAvgPool)


# -- flatten -----------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Flatten(LayerKind):
    """``flatten``: ``[C, H, W]`` (or ``[C, L]``) to ``[C * H * W]`` in that order (``torch.flatten``); the range
    passes unchanged. Free in hardware: the producer's elements go where the consumer expects them."""

    input_shape: tuple
    in_bits: int
    in_signed: bool
    name: str | None = None
    inputs: tuple[str, ...] | None = None

    kind: ClassVar[str] = "flatten"

    def __post_init__(self):
        _, inputs = check_graph_fields("Flatten", self.name, self.inputs, self.arity)
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "input_shape", check_shape("Flatten input shape", tuple(self.input_shape)
                                                            if isinstance(self.input_shape, list) else self.input_shape))
        check_bits("Flatten input bits", self.in_bits)
        check_bool("Flatten input signed", self.in_signed)

    in_shape = property(lambda self: self.input_shape)
    out_shape = property(lambda self: (math.prod(self.input_shape),))
    out_bits = property(lambda self: self.in_bits)
    out_signed = property(lambda self: self.in_signed)
    out_scale = None

    @property
    def out_range(self):
        return self.in_range

    def forward(self, x):
        arr = as_int_array("Flatten input", x, *self.in_range)
        return arr.reshape(len(arr), -1)

    def manifest(self, index):
        return self._graph_fields({"in_shape": list(self.input_shape),
                                   "input": {"bits": self.in_bits, "signed": self.in_signed}}), {}

    def __eq__(self, other):
        if not isinstance(other, Flatten):
            return NotImplemented
        return self.manifest(0) == other.manifest(0)

    __hash__ = None

    @classmethod
    def from_manifest(cls, entry, reader, at):
        entry = reader.field(lambda: manifest_keys(at, entry, ("in_shape", "input"), GRAPH_FIELDS))
        inp = reader.field(lambda: manifest_keys(f"{at}.input", entry["input"], ("bits", "signed")))
        graph = graph_entry(reader, entry, at, cls.arity)
        return reader.check(at, lambda: cls(entry["in_shape"], inp["bits"], inp["signed"], **graph))


register_kind(Flatten)
