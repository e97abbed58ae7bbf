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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .dense import Layer  # noqa: I001 (dense registers first: it is the default kind)
from . import conv as _conv  # noqa: F401 (registers the convolution and pooling kinds)
from . import recurrent as _recurrent  # noqa: F401 (registers the lstm and gru kinds)
from .intops import INT64_MAX, as_int_array, as_real_array, int_range
from .kinds import (INPUT, KINDS, MAX_BITS, MAX_OFFSET, SHAPES, LayerKind, ManifestReader, Requantised, check_bits,
                    check_scale, check_shape, narrow_range, prefixed, register_kind)
from .params import check_bool, check_choice, check_int
from .requant import REQUANT_BITS, check_rounding
from .weights import (SCHEMES, CirculantWeights, CrossbarWeights, FixedWeights, MSQWeights, NMWeights, SP2Weights,
                      Weights, equal_arrays, manifest_keys, range_text)

__all__ = [
    "FORMAT", "VERSION", "MANIFEST", "WEIGHTS", "SCHEMES", "MAX_BITS", "InputSpec", "FixedWeights", "SP2Weights",
    "MSQWeights", "NMWeights", "CirculantWeights", "CrossbarWeights", "Layer", "Network", "load", "save",
    "layer_from_manifest", "narrow_range", "random_network", "random_cnn", "random_rnn", "calibrate", "KINDS",
    "LayerKind", "register_kind", "INPUT", "ManifestReader", "check_shape", "SHAPES", "tensor_names", "Weights",
]

#: The manifest's ``format`` and ``version``.
FORMAT = "peforge-network"
VERSION = 1
#: File names inside a network directory.
MANIFEST = "network.json"
WEIGHTS = "weights.npz"


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
        sequence of ``L`` positions of ``C`` channels, ``(C, H, W)`` for an image, ``(T, F)`` for the ``T`` steps of
        ``F`` features a recurrent layer takes (channels last, ``docs/rnn.md``); its product is ``features``.
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
        check_bits("Input bits", self.bits)
        check_bool("Input signed", self.signed)
        check_scale("Input scale", self.scale)
        shape = (self.features,) if self.shape is None else self.shape
        object.__setattr__(self, "shape", check_shape("Input shape", shape, self.features))

    @property
    def range(self) -> tuple[int, int]:
        """Inclusive ``(lo, hi)`` of an input integer."""
        return int_range(self.bits, self.signed)


# -- a layer ----------------------------------------------------------------------------------------------------

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
        """The logits per sample: the size of the last layer's output tensor."""
        return math.prod(self.layers[-1].out_shape)

    @property
    def out_scale(self) -> float | None:
        """Real value of one logit LSB: the last layer's ``out_scale``, or (after a max pool or a flatten, which
        pass values through) that of the last layer before it that has one; None when none says."""
        for layer in reversed(self.layers):
            scale = getattr(layer, "out_scale", None)
            if scale is not None:
                return scale
            if getattr(layer, "kind", "dense") not in ("maxpool", "flatten"):
                return None
        return None

    def _run(self, x: Any) -> tuple[list[np.ndarray | None], list[np.ndarray]]:
        arr = as_int_array("Network input", x, *self.input.range)
        shape = self.input.shape
        if len(shape) > 1 and arr.shape[1:] == shape:      # [N, *shape] (a sequence [N, T, F], an image)
            arr = arr.reshape(len(arr), self.input.features)
        if arr.ndim != 2 or arr.shape[1] != self.input.features:
            also = f" or (N, {', '.join(map(str, shape))})" if len(shape) > 1 else ""
            raise ValueError(f"Network input must have shape (N, {self.input.features}){also}, not {arr.shape}")
        accs, outs = [], []
        n = len(arr)
        for layer, src in zip(self.layers, self._sources):
            args = [arr if j < 0 else outs[j] for j in src]
            # every tensor travels flattened per sample ([N, features], channels last); a kind sees its shape
            args = [a.reshape(n, *layer.in_shape) for a in args]
            if isinstance(layer, Requantised):
                accs.append(layer.accumulate(*args))
                out = layer.finish(accs[-1])
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

    top = prefixed(jname, lambda: manifest_keys("", data, ("format", "version", "input", "layers")))
    if top["format"] != FORMAT:
        raise ValueError(f"{jname}: format must be {FORMAT!r}, not {top['format']!r}")
    if isinstance(top["version"], bool) or top["version"] != VERSION:
        raise ValueError(f"{jname}: version must be {VERSION} (the versions this peforge reads), "
                         f"not {top['version']!r}")
    spec_data = prefixed(jname, lambda: manifest_keys("input", top["input"], ("features", "bits", "signed"),
                                                       ("scale", "shape")))
    shape = spec_data.get("shape")
    spec = prefixed(f"{jname}: input", lambda: InputSpec(spec_data["features"], spec_data["bits"], spec_data["signed"],
                                                          spec_data.get("scale"),
                                                          tuple(shape) if isinstance(shape, list) else shape))
    if not isinstance(top["layers"], list) or not top["layers"]:
        raise ValueError(f"{jname}: layers must be a non-empty list, not {top['layers']!r}")
    used: set[str] = set()
    layers = [_load_layer(i, entry, stored, used, jname, nname) for i, entry in enumerate(top["layers"])]
    unused = sorted(set(stored) - used)
    if unused:
        raise ValueError(f"{nname} must hold only the arrays network.json names, not also {unused[0]!r}")
    prefixed(jname, lambda: _check_graph(spec, layers))
    return Network(spec, tuple(layers))


def calibrate(rng: np.random.Generator, acc: np.ndarray, out_range: tuple[int, int], acc_bound: int
              ) -> tuple[np.ndarray, int, np.ndarray]:
    """Random-network requantisation ``(multiplier, shift, offset)`` of accumulators ``acc [samples, channels]``:
    mean -/+ 2 standard deviations of each channel mapped onto ``out_range``, multipliers varied per channel by
    up to 40 %, random offsets; the worst case (``acc_bound``) kept inside int64."""
    acc = acc.astype(np.float64)
    lo, hi = out_range
    n = acc.shape[1]
    m = (hi - lo) / (4 * np.maximum(acc.std(axis=0), 0.5)) * rng.uniform(0.6, 1.4, n)
    bias = (lo + hi) / 2 - acc.mean(axis=0) * m + rng.uniform(-0.1, 0.1, n) * (hi - lo)
    shift = int(np.clip(REQUANT_BITS - 1 - math.floor(math.log2(m.max())), 1, 62))
    while True:  # keep the worst case inside int64 (wide accumulators, few output bits)
        mult = np.clip(np.rint(m * 2.0 ** shift), 0, (1 << REQUANT_BITS) - 1).astype(np.int64)
        offset = np.clip(np.rint(bias * 2.0 ** shift), -MAX_OFFSET, MAX_OFFSET).astype(np.int64)
        worst = acc_bound * int(mult.max()) + int(np.abs(offset).max()) + (1 << (shift - 1))
        if worst <= INT64_MAX or shift == 1:
            return mult, shift, offset
        shift -= 1


def random_cnn(rng: np.random.Generator, *, schemes: Sequence[str] | None = None, dims: int | None = None,
               max_channels: int = 8, max_size: int = 9, samples: int = 32, rounding: str = "half_up") -> Network:
    """A random valid convolutional network, for tests: an input ``[C, H, W]`` (or ``[C, L]``, ``dims = 1``) of
    1 to ``max_channels`` channels and sides 1 to ``max_size``, one to three convolutions (kernel 1 to 3, stride 1
    or 2, padding below the kernel per side, now and then depthwise), each perhaps followed by a max or average
    pool whose windows do not overlap, then a global average pool or a flatten and a dense layer of 16- to
    32-bit signed logits. Schemes per weight layer from ``schemes`` (crossbar only on dense layers; depthwise
    convolutions fixed or SP2); requantisations calibrated as :func:`random_network`'s."""
    from .conv import AvgPool, Conv, Flatten, GlobalAvgPool, MaxPool

    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"Random generator must be a numpy Generator, not {rng!r}")
    check_int("Max channels", max_channels, min=1)
    check_int("Max size", max_size, min=1)
    pool = [s for s in (list(SCHEMES) if schemes is None else list(schemes))]
    for s in pool:
        check_choice("Schemes", s, SCHEMES)
    dims = int(rng.integers(1, 3)) if dims is None else dims
    check_int("Dims", dims, min=1, max=2)
    conv_pool = [s for s in pool if s != "crossbar"] or ["fixed"]
    bits, signed = int(rng.integers(2, 9)), bool(rng.random() < 0.5)
    unit = {s: SCHEMES[s].random_unit(rng) for s in conv_pool}
    c = int(rng.integers(1, max_channels + 1))
    first = conv_pool[int(rng.integers(len(conv_pool)))]
    c = unit[first] * max(1, c // unit[first])
    size = tuple(int(rng.integers(3 if dims == 2 else 4, max_size + 1)) for _ in range(dims))
    spec = InputSpec(c * math.prod(size), bits, signed, shape=(c, *size))
    x = rng.integers(*spec.range, size=(samples, spec.features), endpoint=True)
    layers: list = []
    shape = spec.shape

    def requantised(make, probe_args):
        probe = make(np.zeros(probe_args, np.int64), 1, np.zeros(probe_args, np.int64))
        acc = probe.accumulate(x)
        acc = np.moveaxis(acc, 1, -1).reshape(-1, acc.shape[1]) if acc.ndim > 2 else acc
        mult, shift, offset = calibrate(rng, acc, probe.out_range, probe.acc_bound)
        return make(mult, shift, offset)

    for i in range(int(rng.integers(1, 4))):
        scheme = first if i == 0 else conv_pool[int(rng.integers(len(conv_pool)))]
        c_in = shape[0]
        spatial = shape[1:]
        kernel = tuple(int(rng.integers(1, min(3, s) + 1)) for s in spatial)
        depthwise = scheme in ("fixed", "sp2") and c_in > 1 and rng.random() < 0.3
        if not depthwise and c_in % unit[scheme]:
            scheme = "fixed"
        c_out = c_in * int(rng.integers(1, 3)) if depthwise else \
            unit[scheme] * int(rng.integers(1, max(1, max_channels // unit[scheme]) + 1))
        stride = tuple(int(rng.integers(1, 3)) for _ in spatial)
        padding = tuple(int(rng.integers(0, k)) for k in kernel for _ in range(2))
        padding = (padding[0], padding[1]) if dims == 1 else padding
        out_bits, out_signed = int(rng.integers(2, 9)), bool(rng.random() < 0.5)
        relu = bool(rng.random() < 0.5)
        groups = c_in if depthwise else 1
        n_in = math.prod(kernel) * (1 if depthwise else c_in)
        w = SCHEMES[scheme].random(rng, n_in, c_out, bits, signed, 1 if depthwise else unit[scheme])

        def make(mult, shift, offset, w=w, shape=shape, kernel=kernel, stride=stride, padding=padding, groups=groups,
                 relu=relu, out_bits=out_bits, out_signed=out_signed):
            return Conv(w, shape, kernel, stride, padding, groups, mult, shift, offset, relu, bits, signed, out_bits,
                        out_signed, None, rounding, dims=dims)
        layer = requantised(make, c_out)
        layers.append(layer)
        x = layer.forward(x).reshape(samples, -1)
        shape, bits, signed = layer.out_shape, out_bits, out_signed
        if rng.random() < 0.4 and all(s >= 2 for s in shape[1:]):
            k = tuple(int(rng.integers(1, min(2, s) + 1)) for s in shape[1:])
            if rng.random() < 0.5:
                pooled = MaxPool(shape, k, k, bits, signed, dims=dims)
            else:
                def make(mult, shift, offset, shape=shape, k=k):
                    return AvgPool(shape, k, k, mult, shift, offset, False, bits, signed, bits, signed, None,
                                   rounding, dims=dims)
                pooled = requantised(make, shape[0])
            layers.append(pooled)
            x = pooled.forward(x).reshape(samples, -1)
            shape = pooled.out_shape
    if rng.random() < 0.4:
        def make(mult, shift, offset, shape=shape):
            return GlobalAvgPool(shape, multiplier=mult, shift=shift, offset=offset, relu=False, in_bits=bits,
                                 in_signed=signed, out_bits=bits, out_signed=signed, rounding=rounding, dims=dims)
        gap = requantised(make, shape[0])
        layers.append(gap)
        x = gap.forward(x).reshape(samples, -1)
        shape = gap.out_shape
    layers.append(Flatten(shape, bits, signed))
    n_in, n_out = math.prod(shape), int(rng.integers(1, 11))
    allowed = [s for s in pool if not SCHEMES[s].unsigned_input or not signed] or ["fixed"]
    scheme = allowed[int(rng.integers(len(allowed)))]
    dense_unit = SCHEMES[scheme].random_unit(rng)
    if n_in % dense_unit:
        scheme, dense_unit = "fixed", 1
    w = SCHEMES[scheme].random(rng, n_in, n_out, bits, signed, dense_unit)
    out_bits = int(rng.integers(16, 33))

    def make(mult, shift, offset):
        return Layer(w, mult, shift, offset, False, bits, signed, out_bits, True, None, rounding)
    layers.append(requantised(make, n_out))
    return Network(spec, tuple(layers))


def random_rnn(rng: np.random.Generator, *, kind: str | None = None, schemes: Sequence[str] | None = None,
               max_seq: int = 6, max_features: int = 8, max_hidden: int = 8, return_sequences: bool | None = None,
               samples: int = 32, rounding: str = "half_up") -> Network:
    """A random valid recurrent network, for tests: an input ``[T, F]`` (``T`` 1 to ``max_seq``), one ``lstm`` or
    ``gru`` layer (:func:`sw.recurrent.random_recurrent`: schemes from ``schemes``, ``u`` never crossbar, ``w``
    crossbar only on an unsigned input; sizes a multiple of the schemes' N:M ``m`` or circulant ``k``), its last
    hidden state or its whole sequence (then a flatten), and a dense layer of 16- to 32-bit signed logits."""
    from .conv import Flatten
    from .recurrent import random_recurrent

    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"Random generator must be a numpy Generator, not {rng!r}")
    kind = str(rng.choice(["lstm", "gru"])) if kind is None else kind
    check_choice("Kind", kind, ("lstm", "gru"))
    pool = list(SCHEMES) if schemes is None else list(schemes)
    for s in pool:
        check_choice("Schemes", s, SCHEMES)
    bits, signed = int(rng.integers(2, 9)), bool(rng.random() < 0.5)
    allowed_w = [s for s in pool if not SCHEMES[s].unsigned_input or not signed] or ["fixed"]
    allowed_u = [s for s in pool if not SCHEMES[s].unsigned_input] or ["fixed"]
    scheme_w, scheme_u = str(rng.choice(allowed_w)), str(rng.choice(allowed_u))
    unit_w, unit_u = SCHEMES[scheme_w].random_unit(rng), SCHEMES[scheme_u].random_unit(rng)
    seq = int(rng.integers(1, max_seq + 1))
    features = unit_w * int(rng.integers(1, max(1, max_features // unit_w) + 1))
    hidden = unit_u * int(rng.integers(1, max(1, max_hidden // unit_u) + 1))
    sequences = bool(rng.random() < 0.5) if return_sequences is None else return_sequences
    spec = InputSpec(seq * features, bits, signed, shape=(seq, features))
    layer = random_recurrent(rng, kind, seq, features, hidden, bits, signed, scheme_w=scheme_w, scheme_u=scheme_u,
                             unit_w=unit_w, unit_u=unit_u, return_sequences=sequences, rounding=rounding)
    layers: list = [layer]
    if sequences:
        layers.append(Flatten(layer.out_shape, layer.out_bits, True))
    x = rng.integers(*spec.range, size=(samples, spec.features), endpoint=True)
    h = layer.forward(x).reshape(samples, -1)
    w = FixedWeights(rng.integers(-7, 8, (int(rng.integers(1, 11)), h.shape[1])), 4)
    probe = Layer(w, np.zeros(w.out_features, np.int64), 1, np.zeros(w.out_features, np.int64), False,
                  layer.out_bits, True, int(rng.integers(16, 33)), True)
    mult, shift, offset = calibrate(rng, probe.accumulate(h), probe.out_range, probe.acc_bound)
    layers.append(Layer(w, mult, shift, offset, False, layer.out_bits, True, probe.out_bits, True, None, rounding))
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


def _load_layer(i: int, entry: Any, stored: Mapping[str, np.ndarray], used: set[str], jname: str,
                nname: str) -> LayerKind:
    at = f"layers[{i}]"
    if not isinstance(entry, Mapping):
        raise TypeError(f"{jname}: {at} must be a JSON object, not {entry!r}")
    kind = entry.get("kind", "dense")
    # the default kind first, then the others by name (whatever order their modules were imported in)
    prefixed(jname, lambda: check_choice(f"{at}.kind", kind, ["dense", *sorted(set(KINDS) - {"dense"})]))
    return KINDS[kind].from_manifest(entry, ManifestReader(stored, used, jname, nname), at)


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
        mult, shift, offset = calibrate(rng, acc, probe.out_range, probe.acc_bound)
        layer = Layer(w, mult, shift, offset, relu, bits[i], signed[i], out_bits, out_signed, None, rounding, narrow)
        layers.append(layer)
        x = layer.forward(x)
    return Network(spec, tuple(layers))
