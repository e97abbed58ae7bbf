"""The ``dense`` layer kind (:class:`Layer`): weights on a PE, requantisation, ReLU, output range."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from .intops import as_int_array
from .params import check_choice, check_int
from .kinds import GRAPH_FIELDS, ManifestReader, Requantised, check_graph_fields, graph_entry, register_kind
from .weights import SCHEMES, Weights, equal_arrays, manifest_keys

__all__ = ["Layer"]


@register_kind
@dataclasses.dataclass(frozen=True, eq=False)
class Layer(Requantised):
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
        name, inputs = check_graph_fields("Layer", self.name, self.inputs, self.arity)
        object.__setattr__(self, "inputs", inputs)
        if not isinstance(self.weights, tuple(SCHEMES.values())):
            names = ", ".join(cls.__name__ for cls in SCHEMES.values())
            raise TypeError(f"Layer weights must be one of {names}, not {self.weights!r}")
        self._init_requant("Layer", self.out_features)

    def _check_input(self):
        self.weights.check_input(self.in_bits, self.in_signed, "Layer input")

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
    def acc_bound(self) -> int:
        """Largest ``|acc|`` any legal input can give with these weights."""
        lo, hi = self.in_range
        return self.weights.acc_bound(max(-lo, hi))

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
        req = self._requant_entry()   # optional fields only when not their default: older manifests keep digests
        entry = {
            "scheme": self.scheme,
            "in_features": self.in_features,
            "out_features": self.out_features,
            "input": req["input"],
            "format": self.weights.format_dict(),
            "requant": req["requant"],
            "relu": self.relu,
            "output": req["output"],
            "arrays": keys,
        }
        return self._graph_fields(entry), {keys[role]: arr for role, arr in arrays.items()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Layer):
            return NotImplemented
        (a, arrays_a), (b, arrays_b) = self.manifest(0), other.manifest(0)
        return a == b and equal_arrays(arrays_a, arrays_b)

    __hash__ = None


def _load_dense(cls, entry: Mapping, reader: ManifestReader, at: str) -> Layer:
    entry = reader.field(lambda: manifest_keys(at, entry, ("scheme", "in_features", "out_features", "input",
                                                            "format", "requant", "relu", "output", "arrays"),
                                               GRAPH_FIELDS))
    reader.field(lambda: check_choice(f"{at}.scheme", entry["scheme"], SCHEMES))
    scheme = SCHEMES[entry["scheme"]]
    req = cls._load_requant(entry, reader, at)
    for field in ("in_features", "out_features"):
        reader.field(lambda: check_int(f"{at}.{field}", entry[field], min=1))
    graph = graph_entry(reader, entry, at, cls.arity)
    params = reader.check(f"{at}.format", lambda: scheme.parse_format(entry["format"]))
    n_in, n_out = entry["in_features"], entry["out_features"]
    shapes = reader.check(at, lambda: scheme.shapes(params, n_in, n_out))
    shapes.update(multiplier=((n_out,), "out_features"), offset=((n_out,), "out_features"))
    keys = reader.field(lambda: manifest_keys(f"{at}.arrays", entry["arrays"], tuple(shapes)))
    arrays = reader.arrays(at, keys, shapes)
    weights = reader.build(at, lambda: scheme.build(params, {r: arrays[r] for r in scheme.roles}, n_in, n_out))
    reader.field(lambda: weights.check_input(req["in_bits"], req["in_signed"], f"{at}.input"))
    return reader.build(at, lambda: cls(weights=weights, multiplier=arrays["multiplier"], offset=arrays["offset"],
                                        **req, **graph))


Layer.from_manifest = classmethod(_load_dense)
