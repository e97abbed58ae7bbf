"""Integer networks: the one description between front-ends (torch, QONNX) and back-ends (golden, hw, tb, synth).

A :class:`Network` is an input spec (:class:`InputSpec`: features, bits, signedness, tensor shape) and layers.
Two axes describe a layer: its **kind** (:data:`KINDS`: what it computes on which tensor shapes; ``dense``
today, each kind one :class:`LayerKind` class) and, for layers with weights, its weight **scheme**
(:data:`SCHEMES`, :mod:`sw.weights`: how the weight matrix is stored and multiplied). The layers form a small
graph of named tensors (``name``, ``inputs``; by default a chain, each layer taking the previous one's output).
A dense :class:`Layer` holds its weights in exactly the integer format of the PE it runs on, its requantisation
(per-output integer multipliers and offsets, one shift: :mod:`sw.requant`, where the formula is defined), ReLU
or not, and its output range::

    x_0 = input                                     integers of input.bits (signed or not)
    for every layer l:
        acc_l = PE_l(x_l)                           exact integers: the PE's golden model
        z_l   = requantize(acc_l, M_l, S_l, B_l)    sw.requant.requantize, rounded as the layer says
                                                    (half_up, the default; half_even; floor)
        x_l+1 = clip(z_l, lo_l, hi_l)               [lo, hi] = range of output.bits / output.signed
                                                    (narrowed by one code with output.narrow, as
                                                    QONNX's min_int / max_int), lo raised to 0 with ReLU
    logits = x_L

Every layer clips to its output range, the last one included: the logits are ``output.bits`` integers (the
width of the accelerator's output stream); give the last layer enough bits (e.g. 24 or 32) so nothing
clips. ``B_l`` (the ``offset``) is the layer's bias in units of ``2^-S_l`` output LSBs.

A layer's input range is stated on the layer (``in_bits``, ``in_signed``) and must equal the previous
layer's output range (the network input for the first layer); widths chain the same way. Everything is
validated at construction with one-line errors, and again on :func:`load` with the file and field named.

Saved as a directory (:meth:`Network.save`, :func:`load`): ``network.json`` (a versioned manifest,
``"format": "peforge-network", "version": 1``) and ``weights.npz`` (every array, named by the manifest).
``docs/network.md`` documents every field.

This module imports numpy only (and the numpy halves of the format modules); torch never.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .intops import INT64_MAX, as_int_array, as_real_array, int_range
from .params import check_bool, check_choice, check_int
from .requant import REQUANT_BITS, ROUNDINGS, Requant, check_rounding
from .weights import (SCHEMES, CirculantWeights, CrossbarWeights, FixedWeights, MSQWeights, NMWeights, SP2Weights,
                      Weights, equal_arrays, manifest_keys, range_text, read_only)

__all__ = [
    "FORMAT", "VERSION", "MANIFEST", "WEIGHTS", "SCHEMES", "MAX_BITS", "InputSpec", "FixedWeights", "SP2Weights",
    "MSQWeights", "NMWeights", "CirculantWeights", "CrossbarWeights", "Layer", "Network", "load", "save",
    "layer_from_manifest", "narrow_range", "random_network", "KINDS", "LayerKind", "register_kind", "INPUT",
    "ManifestReader", "check_shape", "SHAPES", "tensor_names", "Weights",
]

#: The manifest's ``format`` and ``version``.
FORMAT = "peforge-network"
VERSION = 1
#: File names inside a network directory.
MANIFEST = "network.json"
WEIGHTS = "weights.npz"
#: Widest activation (network input, layer input and output) in bits.
MAX_BITS = 32
#: Requantisation offsets are integers of magnitude below 2^62.
MAX_OFFSET = (1 << 62) - 1


def _check_bits(subject: str, bits: Any) -> None:
    check_int(subject, bits, min=1, max=MAX_BITS)


def _check_scale(subject: str, scale: Any) -> None:
    if scale is None:
        return
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{subject} must be a positive finite number or None, not {scale!r}")


def narrow_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    """Inclusive ``(lo, hi)`` of a ``bits``-wide integer, narrowed as QONNX's ``min_int`` / ``max_int``.

    ``narrow`` drops one code: the most negative of a signed range, the largest of an unsigned one.

    Examples
    --------
    >>> narrow_range(8, True, True), narrow_range(8, False, True), narrow_range(8, True, False)
    ((-127, 127), (0, 254), (-128, 127))
    """
    lo, hi = int_range(bits, signed)
    check_bool("Narrow", narrow)
    if narrow:
        return (lo + 1, hi) if signed else (lo, hi - 1)
    return lo, hi


#: The tensor ranks a sample can have: a vector, ``[C, L]``, ``[C, H, W]``.
SHAPES = {1: "(features,)", 2: "(channels, length)", 3: "(channels, height, width)"}


def check_shape(subject: str, shape: Any, features: int | None = None) -> tuple[int, ...]:
    """``shape`` as a tuple of 1 to 3 positive integers (whose product is ``features`` if given)."""
    good = (isinstance(shape, (tuple, list)) and 1 <= len(shape) <= len(SHAPES)
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape))
    if not good or (features is not None and math.prod(shape) != features):
        what = "" if features is None else f" whose product is features = {features}"
        raise ValueError(f"{subject} must be a tuple of 1 to {len(SHAPES)} positive integers{what}, not {shape!r}")
    return tuple(shape)


def _int_matrix(subject: str, x: Any, lo: int, hi: int, shape: tuple[int, ...], names: str) -> np.ndarray:
    arr = as_int_array(subject, x, lo, hi)
    if arr.shape != shape:
        raise ValueError(f"{subject} must have shape {shape} ({names}), not {arr.shape}")
    return read_only(arr)


# -- the network input -----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class InputSpec:
    """The network input: ``features`` integers of ``bits`` bits, signed or not, per sample, in a tensor of
    ``shape``.

    Members
    -------
    features : int
        Input features per sample, at least 1.
    bits : int
        1 to 32.
    signed : bool
    scale : float or None
        Real value of one input LSB (documentation for front-ends; the integer network does not use it).
    shape : tuple of int
        The tensor one sample is (:data:`SHAPES`): ``(features,)`` for a vector (the default), ``(C, L)`` for a
        sequence of ``L`` positions of ``C`` channels, ``(C, H, W)`` for an image; its product is ``features``.
        Arrays hold a sample in this shape, or flattened in its order (C slowest, as ``torch.flatten``); the
        accelerator's stream order is the hardware's business (``docs/network.md``).

    Raises
    ------
    TypeError, ValueError
        ``"Input features must be a positive integer, not 0"``, ``"Input bits must be an integer from 1 to
        32, not 40"``, ``"Input signed must be a bool, not 1"``, ``"Input shape must be a tuple of 1 to 3
        positive integers whose product is features = 64, not (8, 7)"``.
    """

    features: int
    bits: int
    signed: bool
    scale: float | None = None
    shape: tuple[int, ...] | None = None

    def __post_init__(self):
        check_int("Input features", self.features, min=1)
        _check_bits("Input bits", self.bits)
        check_bool("Input signed", self.signed)
        _check_scale("Input scale", self.scale)
        shape = (self.features,) if self.shape is None else self.shape
        object.__setattr__(self, "shape", check_shape("Input shape", shape, self.features))

    @property
    def range(self) -> tuple[int, int]:
        """Inclusive ``(lo, hi)`` of an input integer."""
        return int_range(self.bits, self.signed)


# -- a layer ----------------------------------------------------------------------------------------------------

def _requant_arrays(multiplier: Any, offset: Any, out: int) -> tuple[np.ndarray, np.ndarray]:
    m = _int_matrix("Requantisation multipliers", multiplier, 0, (1 << REQUANT_BITS) - 1, (out,), "out_features")
    b = _int_matrix("Requantisation offsets", offset, -MAX_OFFSET, MAX_OFFSET, (out,), "out_features")
    return m, b


def _check_requant_fits(acc_bound: int, multiplier: np.ndarray, offset: np.ndarray, shift: int) -> None:
    worst = acc_bound * int(multiplier.max()) + int(np.abs(offset).max()) + (1 << (shift - 1))
    if worst > INT64_MAX:
        raise ValueError(f"Requantisation must fit int64 (at most 2^63 - 1), not acc bound {acc_bound} * multiplier "
                         f"{int(multiplier.max())} + offset {int(np.abs(offset).max())} + 2^{shift - 1} = "
                         f"2^{math.log2(worst):.1f}")


# -- layer kinds ---------------------------------------------------------------------------------------------

#: Layer kinds by name: the manifest's ``kind`` (absent: ``dense``). A kind is one class (a :class:`LayerKind`)
#: and its line here, via :func:`register_kind`.
KINDS: dict[str, type[LayerKind]] = {}


def register_kind(cls: type[LayerKind]) -> type[LayerKind]:
    """Class decorator: add a :class:`LayerKind` to :data:`KINDS` under its ``kind``."""
    if cls.kind in KINDS and KINDS[cls.kind] is not cls:
        raise ValueError(f"Layer kind must be unique, not {cls.kind!r} (already registered)")
    KINDS[cls.kind] = cls
    return cls


class LayerKind:
    """What every layer kind declares (the subclasses are frozen dataclasses validated at construction).

    Members every kind has
    ----------------------
    kind : str (class attribute)
        Its name in :data:`KINDS` and in the manifest.
    in_shape, out_shape : tuple of int
        The tensor one sample takes and gives (the shape rule); the network checks that they chain.
    in_bits, in_signed, out_bits, out_signed : int, bool
        The integer ranges in and out; ``out_range`` is the inclusive ``(lo, hi)`` every output is clipped to.
    name : str or None
        The name of the tensor this layer gives (None: ``layer<i>``, its place in the network).
    inputs : tuple of str or None
        The tensors it takes, by name (``"input"`` is the network's input; None: the previous layer's output,
        which makes a chain). Every layer of a network names only tensors made before it.

    A kind implements :meth:`forward` (its exact integer golden computation), :meth:`manifest` and
    :meth:`from_manifest` (its manifest fields, every one required on load), and :attr:`arity` (how many
    inputs it takes). See ``docs/architecture.md``, "Adding a layer kind".
    """

    kind: ClassVar[str]
    #: How many input tensors the kind takes.
    arity: ClassVar[int] = 1

    @property
    def in_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def out_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def in_range(self) -> tuple[int, int]:
        return int_range(self.in_bits, self.in_signed)

    def forward(self, x: Any) -> np.ndarray:
        """int64 ``[N, *out_shape]``: the outputs of inputs ``[N, *in_shape]`` (a vector kind: ``[N, in]``)."""
        raise NotImplementedError

    def manifest(self, index: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The manifest entry of this layer as ``layers[index]`` and its arrays by npz key."""
        raise NotImplementedError

    @classmethod
    def from_manifest(cls, entry: Mapping, reader: ManifestReader, at: str) -> LayerKind:
        """The layer of a manifest entry (``reader`` fetches its arrays and prefixes errors; ``at`` is
        ``"layers[i]"``)."""
        raise NotImplementedError

    def _graph_fields(self, entry: dict[str, Any]) -> dict[str, Any]:
        """``entry`` with this layer's ``kind`` (when not dense), ``name`` and ``inputs`` (when set): fields
        written only when not their default, so a chain of dense layers keeps the version-1 manifest and digest."""
        if self.kind != "dense":
            entry = {"kind": self.kind, **entry}
        if self.name is not None:
            entry["name"] = self.name
        if self.inputs is not None:
            entry["inputs"] = list(self.inputs)
        return entry


def _check_graph_fields(subject: str, name: Any, inputs: Any, arity: int) -> tuple[str | None, tuple | None]:
    if name is not None and (not isinstance(name, str) or not name or name == INPUT):
        raise ValueError(f"{subject} name must be a non-empty string other than {INPUT!r}, or None, not {name!r}")
    if inputs is None:
        return name, None
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence) or len(inputs) != arity or \
            not all(isinstance(t, str) and t for t in inputs):
        raise ValueError(f"{subject} inputs must be {arity} tensor name{'s' if arity > 1 else ''} (strings) or "
                         f"None, not {inputs!r}")
    return name, tuple(inputs)


#: The name of the network's input tensor in ``inputs``.
INPUT = "input"


@register_kind
@dataclasses.dataclass(frozen=True, eq=False)
class Layer(LayerKind):
    """One dense layer of an integer network (kind ``dense``): weights on a PE, requantisation, ReLU, output range.

    ``output = clip(requantize(acc, multiplier, shift, offset, rounding=rounding), lo, hi)``
    (:class:`sw.requant.Requant`) with ``[lo, hi]`` the range of ``out_bits`` / ``out_signed`` (narrowed by
    ``out_narrow``: :func:`narrow_range`) and ``lo`` raised to 0 by ``relu``.

    Members
    -------
    weights : FixedWeights, SP2Weights, MSQWeights, NMWeights, CirculantWeights or CrossbarWeights
        The integer weights in the PE's format; :attr:`scheme` is theirs.
    multiplier : int64 [out]
        Requantisation multipliers, ``0 .. 2^31 - 1``.
    shift : int
        Requantisation shift, 1 to 62.
    offset : int64 [out]
        The bias, in units of ``2^-shift`` output LSBs, magnitude below ``2^62``.
    relu : bool
    in_bits, in_signed : int, bool
        The input range (the previous layer's output range; checked by :class:`Network`).
    out_bits, out_signed : int, bool
        The output range, 1 to 32 bits; every output is clipped to it.
    out_scale : float or None
        Real value of one output LSB (documentation for front-ends; not used by the integer network).
    rounding : str
        The requantisation's rounding (:data:`sw.requant.ROUNDINGS`): ``"half_up"`` (default),
        ``"half_even"`` (QONNX / Brevitas ``ROUND``) or ``"floor"``.
    out_narrow : bool
        Narrow output range (QONNX ``narrow``): no ``-2^(bits-1)`` when signed, no ``2^bits - 1`` when unsigned.

    Raises
    ------
    TypeError, ValueError
        ``"Layer weights must be one of FixedWeights, ..., not 3"``, ``"Layer input bits must be an integer
        from 1 to 32, not 0"``, ``"Requantisation shift must be an integer from 1 to 62, not 0"``,
        ``"Requantisation multipliers must be integers from 0 to 2147483647, not -1 (at index 0)"``,
        ``"Layer input must be the crossbar's 8-bit unsigned inputs (act_bits, unsigned), not 8-bit signed"``,
        ``"Requantisation must fit int64 (at most 2^63 - 1), not acc bound ... = 2^64.0"``.
    """

    weights: Weights
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

    kind: ClassVar[str] = "dense"

    def __post_init__(self):
        name, inputs = _check_graph_fields("Layer", self.name, self.inputs, self.arity)
        object.__setattr__(self, "inputs", inputs)
        if not isinstance(self.weights, tuple(SCHEMES.values())):
            names = ", ".join(cls.__name__ for cls in SCHEMES.values())
            raise TypeError(f"Layer weights must be one of {names}, not {self.weights!r}")
        _check_layer_scalars("Layer", self.shift, self.relu, self.in_bits, self.in_signed, self.out_bits,
                             self.out_signed, self.out_scale)
        check_rounding("Layer rounding", self.rounding)
        check_bool("Layer output narrow", self.out_narrow)
        self.weights.check_input(self.in_bits, self.in_signed, "Layer input")
        m, b = _requant_arrays(self.multiplier, self.offset, self.out_features)
        object.__setattr__(self, "multiplier", m)
        object.__setattr__(self, "offset", b)
        _check_requant_fits(self.acc_bound, m, b, self.shift)
        lo, hi = narrow_range(self.out_bits, self.out_signed, self.out_narrow)
        object.__setattr__(self, "_requant", Requant(m, self.shift, b, max(lo, 0) if self.relu else lo, hi,
                                                     math.nan if self.out_scale is None else float(self.out_scale),
                                                     self.rounding))

    @property
    def scheme(self) -> str:
        return self.weights.scheme

    @property
    def in_features(self) -> int:
        return self.weights.in_features

    @property
    def out_features(self) -> int:
        return self.weights.out_features

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.in_features,)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.out_features,)

    @property
    def out_range(self) -> tuple[int, int]:
        """Inclusive ``(lo, hi)`` of an output: the ``out_bits`` range (narrowed by ``out_narrow``), ``lo >= 0``
        with ReLU."""
        return self._requant.lo, self._requant.hi

    @property
    def acc_bound(self) -> int:
        """Largest ``|acc|`` any legal input can give with these weights."""
        lo, hi = self.in_range
        return self.weights.acc_bound(max(-lo, hi))

    @property
    def requant(self) -> Requant:
        """The requantisation and clipping as a :class:`sw.requant.Requant` (``out_scale`` nan when unknown)."""
        return self._requant

    def _inputs(self, x: Any, subject: str) -> np.ndarray:
        arr = as_int_array(subject, x, *self.in_range)
        if arr.ndim != 2 or arr.shape[1] != self.in_features:
            raise ValueError(f"{subject} must have shape (N, {self.in_features}), not {arr.shape}")
        return arr

    def accumulate(self, x: Any) -> np.ndarray:
        """int64 ``[N, out]``: the accumulators of the PE golden model for inputs ``x [N, in]``.

        Raises
        ------
        TypeError, ValueError
            ``"Layer input must be integers from 0 to 255, not 256 (at index (0, 3))"``,
            ``"Layer input must have shape (N, 64), not (2, 63)"``.
        """
        x = self._inputs(x, "Layer input")
        if len(x) == 0:
            return np.zeros((0, self.out_features), np.int64)
        return self.weights.accumulate(x, self.in_bits, self.in_signed)

    def forward(self, x: Any) -> np.ndarray:
        """int64 ``[N, out]``: the layer's outputs (requantised and clipped accumulators)."""
        return self._requant(self.accumulate(x))

    def manifest(self, index: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The manifest entry of this layer as ``layers[index]`` and its arrays by npz key."""
        arrays = {**self.weights.arrays(), "multiplier": self.multiplier, "offset": self.offset}
        keys = {role: f"layers.{index}.{role}" for role in arrays}
        entry = {
            "scheme": self.scheme,
            "in_features": self.in_features,
            "out_features": self.out_features,
            "input": {"bits": self.in_bits, "signed": self.in_signed},
            "format": self.weights.format_dict(),
            "requant": {"shift": self.shift},
            "relu": self.relu,
            "output": {"bits": self.out_bits, "signed": self.out_signed, "scale": self.out_scale},
            "arrays": keys,
        }
        # optional fields, written only when not the default (older manifests load, digests stay)
        if self.rounding != ROUNDINGS[0]:
            entry["requant"]["rounding"] = self.rounding
        if self.out_narrow:
            entry["output"]["narrow"] = True
        return self._graph_fields(entry), {keys[role]: arr for role, arr in arrays.items()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Layer):
            return NotImplemented
        (a, arrays_a), (b, arrays_b) = self.manifest(0), other.manifest(0)
        return a == b and equal_arrays(arrays_a, arrays_b)

    __hash__ = None


def _check_layer_scalars(prefix: str, shift, relu, in_bits, in_signed, out_bits, out_signed, out_scale,
                         names: Mapping[str, str] | None = None) -> None:
    """The scalar fields of a layer; ``names`` gives each one's subject (default ``"<prefix> <field>"``)."""
    names = names or {"shift": "Requantisation shift", "relu": f"{prefix} relu", "in_bits": f"{prefix} input bits",
                      "in_signed": f"{prefix} input signed", "out_bits": f"{prefix} output bits",
                      "out_signed": f"{prefix} output signed", "out_scale": f"{prefix} output scale"}
    check_int(names["shift"], shift, min=1, max=62)
    check_bool(names["relu"], relu)
    _check_bits(names["in_bits"], in_bits)
    check_bool(names["in_signed"], in_signed)
    _check_bits(names["out_bits"], out_bits)
    check_bool(names["out_signed"], out_signed)
    _check_scale(names["out_scale"], out_scale)


# -- the network --------------------------------------------------------------------------------------------

def tensor_names(layers: Sequence[LayerKind]) -> list[str]:
    """The name of the tensor each layer gives: its ``name``, else ``layer<i>``."""
    return [layer.name if layer.name is not None else f"layer{i}" for i, layer in enumerate(layers)]


def _sources(layers: Sequence[LayerKind], prefix: str = "") -> list[tuple[int, ...]]:
    """Per layer, the indices of the layers whose outputs it takes (-1: the network input). A layer without
    ``inputs`` takes the previous layer's output (the input for the first); named inputs must be made earlier."""
    names, seen, sources = tensor_names(layers), {INPUT: -1}, []
    for i, layer in enumerate(layers):
        if names[i] in seen:
            raise ValueError(f"{prefix}layers[{i}].name must be unique among the tensors, not {names[i]!r}")
        if layer.inputs is None:
            sources.append((i - 1,))
        else:
            missing = [t for t in layer.inputs if t not in seen]
            if missing:
                raise ValueError(f"{prefix}layers[{i}].inputs must name the input or earlier layers' tensors "
                                 f"({', '.join(map(repr, seen))}), not {missing[0]!r}")
            sources.append(tuple(seen[t] for t in layer.inputs))
        seen[names[i]] = i
    return sources


def _check_graph(spec: InputSpec, layers: Sequence[LayerKind], prefix: str = "") -> list[tuple[int, ...]]:
    """Shapes and ranges chain along the graph: every layer takes the tensor shape and integer range its
    sources give (layer 0 of a chain: the input spec). Returns :func:`_sources`."""
    if not layers:
        raise ValueError(f"{prefix}layers must be a non-empty list, not {list(layers)!r}")
    sources = _sources(layers, prefix)
    for i, (layer, src) in enumerate(zip(layers, sources)):
        for j in src:
            source = "input" if j < 0 else f"layers[{j}]"
            shape = spec.shape if j < 0 else layers[j].out_shape
            bits, signed = (spec.bits, spec.signed) if j < 0 else (layers[j].out_bits, layers[j].out_signed)
            if layer.in_shape != shape:
                if len(shape) == 1 and len(layer.in_shape) == 1 and layer.kind == "dense":
                    what = "features" if j < 0 else "out_features"
                    raise ValueError(f"{prefix}layers[{i}].in_features must be {shape[0]} ({source}.{what}), "
                                     f"not {layer.in_shape[0]}")
                raise ValueError(f"{prefix}layers[{i}] input shape must be {shape} ({source} output), "
                                 f"not {layer.in_shape}")
            if (layer.in_bits, layer.in_signed) != (bits, signed):
                where = "input" if j < 0 else f"{source}.output"
                raise ValueError(f"{prefix}layers[{i}].input must be {range_text(bits, signed)} ({where}), "
                                 f"not {range_text(layer.in_bits, layer.in_signed)}")
    return sources


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    """An integer network: :class:`InputSpec` then layers of any kind (:data:`KINDS`), in an order where every
    layer comes after the tensors it takes (see the module docstring).

    Members
    -------
    input : InputSpec
    layers : tuple of LayerKind
        At least one. A layer takes the tensors its ``inputs`` name (by default the previous layer's output,
        the input for ``layers[0]``: a chain); shapes and ranges must match. The last layer's outputs are the
        logits. :attr:`is_chain` says whether every layer takes the one before it (what ``hw`` compiles today).

    Raises
    ------
    TypeError, ValueError
        ``"Network input must be an InputSpec, not 64"``, ``"layers must be a non-empty list, not []"``,
        ``"layers[1].in_features must be 32 (layers[0].out_features), not 30"``,
        ``"layers[1].input must be 8-bit unsigned (layers[0].output), not 8-bit signed"``.
    """

    input: InputSpec
    layers: tuple[Layer, ...]

    def __post_init__(self):
        if not isinstance(self.input, InputSpec):
            raise TypeError(f"Network input must be an InputSpec, not {self.input!r}")
        if isinstance(self.layers, (str, bytes)) or not isinstance(self.layers, Sequence):
            raise TypeError(f"Network layers must be a sequence of Layer, not {self.layers!r}")
        layers = tuple(self.layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, LayerKind):
                raise TypeError(f"Network layers[{i}] must be a Layer, not {layer!r}")  # any kind of KINDS
        object.__setattr__(self, "_sources", tuple(_check_graph(self.input, layers)))
        object.__setattr__(self, "layers", layers)

    @property
    def sources(self) -> tuple[tuple[int, ...], ...]:
        """Per layer, the indices of the layers it takes (-1: the network input)."""
        return self._sources

    @property
    def is_chain(self) -> bool:
        """Whether every layer takes the previous layer's output (the first: the input), and only that."""
        return all(src == (i - 1,) for i, src in enumerate(self._sources))

    # -- running ------------------------------------------------------------------------------------------
    @property
    def in_features(self) -> int:
        return self.input.features

    @property
    def out_features(self) -> int:
        return self.layers[-1].out_features

    def _run(self, x: Any) -> tuple[list[np.ndarray | None], list[np.ndarray]]:
        arr = as_int_array("Network input", x, *self.input.range)
        if arr.ndim != 2 or arr.shape[1] != self.input.features:
            raise ValueError(f"Network input must have shape (N, {self.input.features}), not {arr.shape}")
        accs, outs = [], []
        n = len(arr)
        for layer, src in zip(self.layers, self._sources):
            args = [arr if j < 0 else outs[j] for j in src]
            # every tensor travels flattened per sample ([N, features], channels last); a kind sees its shape
            args = [a.reshape(n, *layer.in_shape) for a in args]
            if hasattr(layer, "accumulate"):
                accs.append(layer.accumulate(*args))
                out = layer.requant(accs[-1])
            else:
                accs.append(None)
                out = layer.forward(*args)
            outs.append(np.asarray(out, np.int64).reshape(n, math.prod(layer.out_shape)))
        return accs, outs

    def golden(self, x: Any, *, return_acc: bool = False):
        """The exact integer outputs (logits) int64 ``[N, out]`` of inputs ``x [N, features]``.

        Every layer runs on its PE's golden model (:meth:`Layer.accumulate`), then :mod:`sw.requant`.
        With ``return_acc``, ``(logits, accs)``: ``accs[l]`` the int64 ``[N, out_l]`` accumulators of layer ``l``.

        Raises
        ------
        TypeError, ValueError
            ``"Network input must be integers from 0 to 255, not 256 (at index (0, 3))"``,
            ``"Network input must have shape (N, 64), not (2, 63)"``.
        """
        check_bool("Return acc", return_acc)
        accs, outs = self._run(x)
        return (outs[-1], accs) if return_acc else outs[-1]

    def layer_outputs(self, x: Any) -> list[np.ndarray]:
        """int64 ``[N, out_l]`` outputs of every layer ``l`` (requantised and clipped; the last are the logits)."""
        return self._run(x)[1]

    def quantize_input(self, x: Any) -> np.ndarray:
        """int64 inputs ``clip(rint(x / input.scale), lo, hi)`` of real inputs ``x [N, ...]`` (flattened per sample).

        ``rint`` rounds half to even (as the weight quantisers). Needs ``input.scale``.

        Raises
        ------
        ValueError
            ``"Input scale must be known to quantise real inputs, not None"``, a shape mismatch.
        """
        if self.input.scale is None:
            raise ValueError("Input scale must be known to quantise real inputs, not None")
        arr = as_real_array("Real input", x)
        arr = arr.reshape(len(arr), -1) if arr.ndim >= 2 else arr
        if arr.ndim != 2 or arr.shape[1] != self.input.features:
            raise ValueError(f"Real input must have {self.input.features} features per sample, not shape {arr.shape}")
        return np.clip(np.rint(arr / self.input.scale), *self.input.range).astype(np.int64)

    def predict(self, x: Any) -> np.ndarray:
        """int64 ``[N]``: the argmax class of each sample's logits (the first index among equal logits)."""
        return np.argmax(self.golden(x), axis=1).astype(np.int64)

    # -- the manifest ---------------------------------------------------------------------------------------
    def manifest(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(network.json object, weights.npz arrays by key)``."""
        spec = self.input
        data: dict[str, Any] = {
            "format": FORMAT, "version": VERSION,
            "input": {"features": spec.features, "bits": spec.bits, "signed": spec.signed, "scale": spec.scale,
                      **({"shape": list(spec.shape)} if len(spec.shape) > 1 else {})},
            "layers": [],
        }
        arrays: dict[str, np.ndarray] = {}
        for i, layer in enumerate(self.layers):
            entry, arr = layer.manifest(i)
            data["layers"].append(entry)
            arrays.update(arr)
        return data, arrays

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``network.json`` and ``weights.npz`` into ``directory`` (created if needed); returns it."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        data, arrays = self.manifest()
        np.savez(path / WEIGHTS, **arrays)
        (path / MANIFEST).write_text(json.dumps(data, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Network:
        """:func:`load`."""
        return load(directory)

    def digest(self, length: int = 12) -> str:
        """A short hash of the manifest and every array (names a build of this exact network)."""
        data, arrays = self.manifest()
        h = hashlib.sha256(json.dumps(data, sort_keys=True).encode())
        for key in sorted(arrays):
            h.update(key.encode() + str(arrays[key].dtype).encode() + np.ascontiguousarray(arrays[key]).tobytes())
        return h.hexdigest()[:length]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Network):
            return NotImplemented
        (a, arrays_a), (b, arrays_b) = self.manifest(), other.manifest()
        return a == b and equal_arrays(arrays_a, arrays_b)

    __hash__ = None


def save(network: Network, directory: str | os.PathLike) -> Path:
    """:meth:`Network.save`."""
    if not isinstance(network, Network):
        raise TypeError(f"Network must be a Network, not {network!r}")
    return network.save(directory)


# -- loading ------------------------------------------------------------------------------------------------

def _prefixed(prefix: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, its ValueError / TypeError re-raised as one line ``"<prefix>: <message>"``."""
    try:
        return fn()
    except (ValueError, TypeError) as e:
        raise type(e)(f"{prefix}: {e}") from None


def load(directory: str | os.PathLike) -> Network:
    """Read and validate a network directory (``network.json`` + ``weights.npz``; or the path of its
    ``network.json``).

    Every error is one line naming the file and the field, e.g.
    ``"net/network.json: layers[1].scheme must be one of 'fixed', 'sp2', 'msq', 'nm', 'circulant', 'crossbar',
    not 'conv'"``, ``"net/network.json: version must be 1, not 2"``,
    ``"net/network.json: layers[0].arrays.codes must name an array of weights.npz, not 'x'"``,
    ``"net/weights.npz: 'layers.0.codes' (layers[0].arrays.codes) must have shape (5, 7) (out_features,
    in_features), not (5, 6)"``, ``"net/weights.npz: layers[0]: SP2 codes must be integers from 0 to 15, not 16
    (at index (0, 3))"``, ``"net/network.json: layers[1].in_features must be 5 (layers[0].out_features), not
    6"``.

    Raises
    ------
    FileNotFoundError
        ``"Network directory must hold network.json and weights.npz, not 'net' (no network.json)"``.
    TypeError, ValueError
        Anything else, as above.
    """
    path = Path(directory)
    if path.is_file() and path.name == MANIFEST:
        path = path.parent
    jpath, npath = path / MANIFEST, path / WEIGHTS
    for f in (jpath, npath):
        if not f.is_file():
            raise FileNotFoundError(f"Network directory must hold {MANIFEST} and {WEIGHTS}, not {str(path)!r} "
                                    f"(no {f.name})")
    jname, nname = str(jpath), str(npath)
    try:
        data = json.loads(jpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{jname} must be JSON, not text with an error at {e}") from None
    try:
        with np.load(npath, allow_pickle=False) as npz:
            stored = {key: npz[key] for key in npz.files}
    except Exception as e:  # zipfile, pickle and format errors alike: one line
        raise ValueError(f"{nname} must be a numpy .npz archive without pickles, not unreadable ({e})") from None

    top = _prefixed(jname, lambda: manifest_keys("", data, ("format", "version", "input", "layers")))
    if top["format"] != FORMAT:
        raise ValueError(f"{jname}: format must be {FORMAT!r}, not {top['format']!r}")
    if isinstance(top["version"], bool) or top["version"] != VERSION:
        raise ValueError(f"{jname}: version must be {VERSION} (the versions this peforge reads), "
                         f"not {top['version']!r}")
    spec_data = _prefixed(jname, lambda: manifest_keys("input", top["input"], ("features", "bits", "signed"),
                                                       ("scale", "shape")))
    shape = spec_data.get("shape")
    spec = _prefixed(f"{jname}: input", lambda: InputSpec(spec_data["features"], spec_data["bits"], spec_data["signed"],
                                                          spec_data.get("scale"),
                                                          tuple(shape) if isinstance(shape, list) else shape))
    if not isinstance(top["layers"], list) or not top["layers"]:
        raise ValueError(f"{jname}: layers must be a non-empty list, not {top['layers']!r}")
    used: set[str] = set()
    layers = [_load_layer(i, entry, stored, used, jname, nname) for i, entry in enumerate(top["layers"])]
    unused = sorted(set(stored) - used)
    if unused:
        raise ValueError(f"{nname} must hold only the arrays network.json names, not also {unused[0]!r}")
    _prefixed(jname, lambda: _check_graph(spec, layers))
    return Network(spec, tuple(layers))


def layer_from_manifest(entry: Any, arrays: Mapping[str, np.ndarray], where: str = "layer") -> Layer:
    """The :class:`Layer` of one manifest entry (:meth:`Layer.manifest`) and its arrays by key, validated as
    :func:`load` validates a layer; errors start with ``where``.

    Raises
    ------
    TypeError, ValueError
        The errors of :func:`load` for one layer, e.g. ``"node 'x': layers[0].scheme must be one of ..."``.
    """
    return _load_layer(0, entry, arrays, set(), where, where)


@dataclasses.dataclass
class ManifestReader:
    """What a kind's :meth:`LayerKind.from_manifest` reads with: the stored arrays, the keys already used, and the
    names of the two files (``jname``: network.json, ``nname``: weights.npz) that errors start with."""

    stored: Mapping[str, np.ndarray]
    used: set[str]
    jname: str
    nname: str

    def field(self, fn: Callable[[], Any]) -> Any:
        """``fn()``: a check of manifest fields, its errors prefixed with network.json's name."""
        return _prefixed(self.jname, fn)

    def check(self, where: str, fn: Callable[[], Any]) -> Any:
        """``fn()``, its errors prefixed with ``<file>: <where>`` (file: network.json)."""
        return _prefixed(f"{self.jname}: {where}", fn)

    def build(self, where: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` building from arrays, its errors prefixed with ``<weights.npz>: <where>``."""
        return _prefixed(f"{self.nname}: {where}", fn)

    def arrays(self, at: str, keys: Mapping[str, Any], shapes: Mapping[str, tuple[tuple[int, ...], str]]
               ) -> dict[str, np.ndarray]:
        """The arrays ``keys[role]`` names, each checked to exist, be named once and have ``shapes[role]``."""
        arrays = {}
        for role, (shape, axes) in shapes.items():
            key = keys[role]
            if not isinstance(key, str) or key not in self.stored:
                raise ValueError(f"{self.jname}: {at}.arrays.{role} must name an array of {WEIGHTS}, not {key!r}")
            if key in self.used:
                raise ValueError(f"{self.jname}: {at}.arrays.{role} must name an array no other field names, "
                                 f"not {key!r}")
            self.used.add(key)
            if self.stored[key].shape != shape:
                raise ValueError(f"{self.nname}: {key!r} ({at}.arrays.{role}) must have shape {shape} ({axes}), "
                                 f"not {self.stored[key].shape}")
            arrays[role] = self.stored[key]
        return arrays


#: The manifest fields every kind may carry (:meth:`LayerKind._graph_fields`).
GRAPH_FIELDS = ("kind", "name", "inputs")


def _load_layer(i: int, entry: Any, stored: Mapping[str, np.ndarray], used: set[str], jname: str,
                nname: str) -> LayerKind:
    at = f"layers[{i}]"
    if not isinstance(entry, Mapping):
        raise TypeError(f"{jname}: {at} must be a JSON object, not {entry!r}")
    kind = entry.get("kind", "dense")
    _prefixed(jname, lambda: check_choice(f"{at}.kind", kind, KINDS))
    return KINDS[kind].from_manifest(entry, ManifestReader(stored, used, jname, nname), at)


def _graph_entry(reader: ManifestReader, entry: Mapping, at: str, arity: int) -> dict[str, Any]:
    """The ``name`` and ``inputs`` of a manifest entry as constructor keywords, checked."""
    name, inputs = reader.field(lambda: _check_graph_fields(at, entry.get("name"), entry.get("inputs"), arity))
    return {"name": name, "inputs": inputs}


def _load_dense(cls, entry: Mapping, reader: ManifestReader, at: str) -> Layer:
    jname = reader.jname
    entry = reader.field(lambda: manifest_keys(at, entry, ("scheme", "in_features", "out_features", "input",
                                                            "format", "requant", "relu", "output", "arrays"),
                                               GRAPH_FIELDS))
    reader.field(lambda: check_choice(f"{at}.scheme", entry["scheme"], SCHEMES))
    scheme = SCHEMES[entry["scheme"]]
    inp = reader.field(lambda: manifest_keys(f"{at}.input", entry["input"], ("bits", "signed")))
    out = reader.field(lambda: manifest_keys(f"{at}.output", entry["output"], ("bits", "signed"), ("scale", "narrow")))
    req = reader.field(lambda: manifest_keys(f"{at}.requant", entry["requant"], ("shift",), ("rounding",)))
    rounding, narrow = req.get("rounding", ROUNDINGS[0]), out.get("narrow", False)
    reader.field(lambda: check_rounding(f"{at}.requant.rounding", rounding))
    reader.field(lambda: check_bool(f"{at}.output.narrow", narrow))
    names = {"shift": f"{at}.requant.shift", "relu": f"{at}.relu", "in_bits": f"{at}.input.bits",
             "in_signed": f"{at}.input.signed", "out_bits": f"{at}.output.bits", "out_signed": f"{at}.output.signed",
             "out_scale": f"{at}.output.scale"}
    reader.field(lambda: _check_layer_scalars("", req["shift"], entry["relu"], inp["bits"], inp["signed"],
                                              out["bits"], out["signed"], out.get("scale"), names))
    for field in ("in_features", "out_features"):
        reader.field(lambda: check_int(f"{at}.{field}", entry[field], min=1))
    graph = _graph_entry(reader, entry, at, cls.arity)
    params = reader.check(f"{at}.format", lambda: scheme.parse_format(entry["format"]))
    n_in, n_out = entry["in_features"], entry["out_features"]
    shapes = reader.check(at, lambda: scheme.shapes(params, n_in, n_out))
    shapes.update(multiplier=((n_out,), "out_features"), offset=((n_out,), "out_features"))
    keys = reader.field(lambda: manifest_keys(f"{at}.arrays", entry["arrays"], tuple(shapes)))
    arrays = reader.arrays(at, keys, shapes)
    weights = reader.build(at, lambda: scheme.build(params, {r: arrays[r] for r in scheme.roles}, n_in, n_out))
    reader.field(lambda: weights.check_input(inp["bits"], inp["signed"], f"{at}.input"))
    return reader.build(at, lambda: cls(
        weights, arrays["multiplier"], req["shift"], arrays["offset"], entry["relu"], inp["bits"], inp["signed"],
        out["bits"], out["signed"], out.get("scale"), rounding, narrow, **graph))


Layer.from_manifest = classmethod(_load_dense)


# -- random networks (tests, hardware tests) -----------------------------------------------------------------

def random_network(rng: np.random.Generator, *, depth: int | None = None, schemes: Sequence[str] | None = None,
                   max_features: int = 24, samples: int = 64, rounding: str = "half_up",
                   narrow: bool = False) -> Network:
    """A random valid network, for tests: depth 1 to 4, sizes 1 to ``max_features`` (most not a multiple of
    anything; N:M and circulant inputs a multiple of their m or k), a random scheme per layer (from
    ``schemes``; crossbar layers only where the input is unsigned), random formats, weights, ranges and ReLU.

    The requantisation is calibrated on ``samples`` random inputs so that the outputs spread over their range
    (about 2 standard deviations of the accumulator map to the top of the range) with random offsets; the last
    layer gives 16- to 32-bit signed logits. Every layer rounds with ``rounding`` and has ``out_narrow =
    narrow`` (neither changes the random draws).

    Raises
    ------
    TypeError, ValueError
        ``"Depth must be an integer from 1 to 4, not 0"``, ``"Schemes must be one of 'fixed', ..., not 'conv'"``.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"Random generator must be a numpy Generator, not {rng!r}")
    depth = int(rng.integers(1, 5)) if depth is None else depth
    check_int("Depth", depth, min=1, max=4)
    check_int("Max features", max_features, min=8)
    check_int("Samples", samples, min=1)
    check_rounding("Rounding", rounding)
    check_bool("Narrow", narrow)
    pool = list(SCHEMES) if schemes is None else list(schemes)
    if not pool:
        raise ValueError(f"Schemes must be a non-empty list, not {pool!r}")
    for s in pool:
        check_choice("Schemes", s, SCHEMES)
    # ranges first (a crossbar needs an unsigned input), then schemes, then the widths they allow
    bits = [int(rng.integers(2, 9)) for _ in range(depth)]
    signed = [bool(rng.random() < 0.5) for _ in range(depth)]
    plan = []
    for i in range(depth):
        allowed = [s for s in pool if not SCHEMES[s].unsigned_input or not signed[i]] or pool[:1]
        scheme = str(rng.choice(allowed))
        if SCHEMES[scheme].unsigned_input:
            signed[i] = False
        plan.append(scheme)
    divisors = [SCHEMES[s].random_unit(rng) for s in plan]
    widths = []
    for d in divisors:
        widths.append(d * int(rng.integers(1, max_features // d + 1)))
    widths.append(int(rng.integers(1, max_features + 1)))
    spec = InputSpec(widths[0], bits[0], signed[0])
    layers = []
    x = rng.integers(*spec.range, size=(samples, spec.features), endpoint=True)
    for i, scheme in enumerate(plan):
        last = i == depth - 1
        out_bits = int(rng.integers(16, 33)) if last else bits[i + 1]
        out_signed = True if last else signed[i + 1]
        relu = bool(rng.random() < 0.5) and not last
        w = SCHEMES[scheme].random(rng, widths[i], widths[i + 1], bits[i], signed[i], divisors[i])
        probe = Layer(w, np.zeros(widths[i + 1], np.int64), 1, np.zeros(widths[i + 1], np.int64), relu, bits[i],
                      signed[i], out_bits, out_signed)
        acc = probe.accumulate(x).astype(np.float64)
        lo, hi = probe.out_range
        # map mean -/+ 2 std of each output's accumulator onto [lo, hi], multipliers varied per output
        m = (hi - lo) / (4 * np.maximum(acc.std(axis=0), 0.5)) * rng.uniform(0.6, 1.4, widths[i + 1])
        bias = (lo + hi) / 2 - acc.mean(axis=0) * m + rng.uniform(-0.1, 0.1, widths[i + 1]) * (hi - lo)
        shift = int(np.clip(REQUANT_BITS - 1 - math.floor(math.log2(m.max())), 1, 62))
        while True:  # keep the worst case inside int64 (wide accumulators, few output bits)
            mult = np.clip(np.rint(m * 2.0 ** shift), 0, (1 << REQUANT_BITS) - 1).astype(np.int64)
            offset = np.clip(np.rint(bias * 2.0 ** shift), -MAX_OFFSET, MAX_OFFSET).astype(np.int64)
            worst = probe.acc_bound * int(mult.max()) + int(np.abs(offset).max()) + (1 << (shift - 1))
            if worst <= INT64_MAX or shift == 1:
                break
            shift -= 1
        layer = Layer(w, mult, shift, offset, relu, bits[i], signed[i], out_bits, out_signed, None, rounding, narrow)
        layers.append(layer)
        x = layer.forward(x)
    return Network(spec, tuple(layers))
