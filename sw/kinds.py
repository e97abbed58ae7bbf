"""Layer kinds: what every kind of layer declares, the registry of kinds, and the checks every kind shares.

A network's layers (:mod:`sw.network`) are of a **kind** (:data:`KINDS`: ``dense`` in :mod:`sw.dense`, the
convolutions and pools of :mod:`sw.conv`, ...): what a layer computes on which tensor shapes. A kind is one
:class:`LayerKind` class registered with :func:`register_kind`; it declares its input and output shapes, its
exact integer golden computation, its manifest fields (every one required on load) and its validation.
``docs/architecture.md``, "Adding a layer kind", is the checklist.

This module imports numpy only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from .intops import INT64_MAX, as_int_array, int_range
from .params import check_bool, check_int
from .requant import REQUANT_BITS
from .weights import manifest_keys, read_only

__all__ = ["KINDS", "register_kind", "LayerKind", "INPUT", "GRAPH_FIELDS", "ManifestReader", "MAX_BITS",
           "MAX_OFFSET", "SHAPES", "check_shape", "check_bits", "check_scale", "narrow_range", "requant_arrays",
           "check_requant_fits", "check_layer_scalars", "check_graph_fields", "graph_entry", "prefixed",
           "int_matrix", "WEIGHTS", "Requantised"]

#: Widest activation (network input, layer input and output) in bits.
MAX_BITS = 32
#: Requantisation offsets are integers of magnitude below 2^62.
MAX_OFFSET = (1 << 62) - 1
#: The arrays file of a network directory (errors name it).
WEIGHTS = "weights.npz"


def check_bits(subject: str, bits: Any) -> None:
    check_int(subject, bits, min=1, max=MAX_BITS)


def check_scale(subject: str, scale: Any) -> None:
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


def int_matrix(subject: str, x: Any, lo: int, hi: int, shape: tuple[int, ...], names: str) -> np.ndarray:
    arr = as_int_array(subject, x, lo, hi)
    if arr.shape != shape:
        raise ValueError(f"{subject} must have shape {shape} ({names}), not {arr.shape}")
    return read_only(arr)


# -- the network input -----------------------------------------------------------------------------------------

def requant_arrays(multiplier: Any, offset: Any, out: int) -> tuple[np.ndarray, np.ndarray]:
    m = int_matrix("Requantisation multipliers", multiplier, 0, (1 << REQUANT_BITS) - 1, (out,), "out_features")
    b = int_matrix("Requantisation offsets", offset, -MAX_OFFSET, MAX_OFFSET, (out,), "out_features")
    return m, b


def check_requant_fits(acc_bound: int, multiplier: np.ndarray, offset: np.ndarray, shift: int) -> None:
    worst = acc_bound * int(multiplier.max()) + int(np.abs(offset).max()) + (1 << (shift - 1))
    if worst > INT64_MAX:
        raise ValueError(f"Requantisation must fit int64 (at most 2^63 - 1), not acc bound {acc_bound} * multiplier "
                         f"{int(multiplier.max())} + offset {int(np.abs(offset).max())} + 2^{shift - 1} = "
                         f"2^{math.log2(worst):.1f}")


# -- layer kinds ---------------------------------------------------------------------------------------------

#: Layer kinds by name: the manifest's ``kind`` (absent: ``dense``). A kind is one class (a :class:`LayerKind`)
#: and its line here, via :func:`register_kind`.
KINDS: dict[str, type[LayerKind]] = {}


def register_kind(cls: type[LayerKind], names: tuple[str, ...] | None = None) -> type[LayerKind]:
    """Class decorator: add a :class:`LayerKind` to :data:`KINDS` under its ``kind`` (or under ``names``: one class
    for ``conv1d`` and ``conv2d``)."""
    for name in names or (cls.kind,):
        if name in KINDS and KINDS[name] is not cls:
            raise ValueError(f"Layer kind must be unique, not {name!r} (already registered)")
        KINDS[name] = cls
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


def check_graph_fields(subject: str, name: Any, inputs: Any, arity: int) -> tuple[str | None, tuple | None]:
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


def check_layer_scalars(prefix: str, shift, relu, in_bits, in_signed, out_bits, out_signed, out_scale,
                         names: Mapping[str, str] | None = None) -> None:
    """The scalar fields of a layer; ``names`` gives each one's subject (default ``"<prefix> <field>"``)."""
    names = names or {"shift": "Requantisation shift", "relu": f"{prefix} relu", "in_bits": f"{prefix} input bits",
                      "in_signed": f"{prefix} input signed", "out_bits": f"{prefix} output bits",
                      "out_signed": f"{prefix} output signed", "out_scale": f"{prefix} output scale"}
    check_int(names["shift"], shift, min=1, max=62)
    check_bool(names["relu"], relu)
    check_bits(names["in_bits"], in_bits)
    check_bool(names["in_signed"], in_signed)
    check_bits(names["out_bits"], out_bits)
    check_bool(names["out_signed"], out_signed)
    check_scale(names["out_scale"], out_scale)


# -- the network --------------------------------------------------------------------------------------------

def prefixed(prefix: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, its ValueError / TypeError re-raised as one line ``"<prefix>: <message>"``."""
    try:
        return fn()
    except (ValueError, TypeError) as e:
        raise type(e)(f"{prefix}: {e}") from None


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
        return prefixed(self.jname, fn)

    def check(self, where: str, fn: Callable[[], Any]) -> Any:
        """``fn()``, its errors prefixed with ``<file>: <where>`` (file: network.json)."""
        return prefixed(f"{self.jname}: {where}", fn)

    def build(self, where: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` building from arrays, its errors prefixed with ``<weights.npz>: <where>``."""
        return prefixed(f"{self.nname}: {where}", fn)

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


def graph_entry(reader: ManifestReader, entry: Mapping, at: str, arity: int) -> dict[str, Any]:
    """The ``name`` and ``inputs`` of a manifest entry as constructor keywords, checked."""
    name, inputs = reader.field(lambda: check_graph_fields(at, entry.get("name"), entry.get("inputs"), arity))
    return {"name": name, "inputs": inputs}


# -- what every requantised kind shares (dense, convolutions, average pools) --------------------------------------

class Requantised(LayerKind):
    """A kind whose outputs are integer accumulators requantised per output channel (:mod:`sw.requant`):
    ``output = clip(requantize(acc, multiplier, shift, offset, rounding), lo, hi)`` with ``[lo, hi]`` the range of
    ``out_bits`` / ``out_signed`` (narrowed by ``out_narrow``: :func:`narrow_range`) and ``lo`` raised to 0 by
    ``relu``. Subclasses are frozen dataclasses with the fields ``multiplier``, ``shift``, ``offset``, ``relu``,
    ``in_bits``, ``in_signed``, ``out_bits``, ``out_signed``, ``out_scale``, ``rounding``, ``out_narrow``; they
    call :meth:`_init_requant` from ``__post_init__`` and implement :meth:`accumulate`; :meth:`forward` is the
    requantised accumulators."""

    def _init_requant(self, subject: str, channels: int) -> None:
        """Check the requantisation fields (``subject`` names the layer in messages) for ``channels`` outputs
        and build the :class:`sw.requant.Requant`; the accumulator bound comes from :attr:`acc_bound`."""
        from .requant import Requant, check_rounding

        check_layer_scalars(subject, self.shift, self.relu, self.in_bits, self.in_signed, self.out_bits,
                            self.out_signed, self.out_scale)
        check_rounding(f"{subject} rounding", self.rounding)
        check_bool(f"{subject} output narrow", self.out_narrow)
        self._check_input()
        m, b = requant_arrays(self.multiplier, self.offset, channels)
        object.__setattr__(self, "multiplier", m)
        object.__setattr__(self, "offset", b)
        check_requant_fits(self.acc_bound, m, b, self.shift)
        lo, hi = narrow_range(self.out_bits, self.out_signed, self.out_narrow)
        object.__setattr__(self, "_requant", Requant(m, self.shift, b, max(lo, 0) if self.relu else lo, hi,
                                                     math.nan if self.out_scale is None else float(self.out_scale),
                                                     self.rounding))

    def _check_input(self) -> None:
        """Raise unless the input range suits the layer (a crossbar takes unsigned inputs only)."""

    @property
    def out_range(self) -> tuple[int, int]:
        """Inclusive ``(lo, hi)`` of an output: the ``out_bits`` range (narrowed by ``out_narrow``), ``lo >= 0``
        with ReLU."""
        return self._requant.lo, self._requant.hi

    @property
    def requant(self):
        """The requantisation and clipping as a :class:`sw.requant.Requant` (``out_scale`` nan when unknown)."""
        return self._requant

    @property
    def acc_bound(self) -> int:
        raise NotImplementedError

    def accumulate(self, x: Any) -> np.ndarray:
        """int64 accumulators of the inputs ``x``: ``[N, out]`` for a vector kind, ``[N, C, ...]`` for a tensor."""
        raise NotImplementedError

    def finish(self, acc: np.ndarray) -> np.ndarray:
        """The outputs of the accumulators ``acc`` (:meth:`accumulate`'s shape): requantised, clipped, ReLU'd per
        output channel (axis 1)."""
        if acc.ndim == 2:
            return self._requant(acc)
        channels = acc.shape[1]
        y = self._requant(np.moveaxis(acc, 1, -1).reshape(-1, channels))
        return np.moveaxis(y.reshape(len(acc), *acc.shape[2:], channels), -1, 1)

    def forward(self, x: Any) -> np.ndarray:
        """The layer's outputs: :meth:`finish` of :meth:`accumulate`."""
        return self.finish(self.accumulate(x))

    def _requant_entry(self) -> dict[str, Any]:
        """The manifest fields of the requantisation and ranges (optional ones only when not their default)."""
        from .requant import ROUNDINGS

        entry = {"input": {"bits": self.in_bits, "signed": self.in_signed}, "requant": {"shift": self.shift},
                 "relu": self.relu, "output": {"bits": self.out_bits, "signed": self.out_signed,
                                               "scale": self.out_scale}}
        if self.rounding != ROUNDINGS[0]:
            entry["requant"]["rounding"] = self.rounding
        if self.out_narrow:
            entry["output"]["narrow"] = True
        return entry

    @staticmethod
    def _load_requant(entry: Mapping, reader: ManifestReader, at: str) -> dict[str, Any]:
        """The requantisation and range fields of a manifest entry (its ``input``, ``requant``, ``relu`` and
        ``output``), checked, as constructor keywords (without the arrays ``multiplier`` and ``offset``)."""
        from .requant import ROUNDINGS, check_rounding

        inp = reader.field(lambda: manifest_keys(f"{at}.input", entry["input"], ("bits", "signed")))
        out = reader.field(lambda: manifest_keys(f"{at}.output", entry["output"], ("bits", "signed"),
                                                 ("scale", "narrow")))
        req = reader.field(lambda: manifest_keys(f"{at}.requant", entry["requant"], ("shift",), ("rounding",)))
        rounding, narrow = req.get("rounding", ROUNDINGS[0]), out.get("narrow", False)
        reader.field(lambda: check_rounding(f"{at}.requant.rounding", rounding))
        reader.field(lambda: check_bool(f"{at}.output.narrow", narrow))
        names = {"shift": f"{at}.requant.shift", "relu": f"{at}.relu", "in_bits": f"{at}.input.bits",
                 "in_signed": f"{at}.input.signed", "out_bits": f"{at}.output.bits",
                 "out_signed": f"{at}.output.signed", "out_scale": f"{at}.output.scale"}
        reader.field(lambda: check_layer_scalars("", req["shift"], entry["relu"], inp["bits"], inp["signed"],
                                                 out["bits"], out["signed"], out.get("scale"), names))
        return dict(shift=req["shift"], relu=entry["relu"], in_bits=inp["bits"], in_signed=inp["signed"],
                    out_bits=out["bits"], out_signed=out["signed"], out_scale=out.get("scale"), rounding=rounding,
                    out_narrow=narrow)
