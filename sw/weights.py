"""A layer's integer weights, one class per weight scheme, each in exactly the format of the PE it runs on.

:data:`SCHEMES` maps a scheme name to its class (in table order). Every class is a frozen dataclass validated at
construction, and says everything callers need to know about its weights, in one place:

* the arrays (:attr:`Weights.roles`, :meth:`Weights.arrays`), the manifest ``format`` object
  (:meth:`Weights.format_dict` / :meth:`Weights.parse_format`, every field required) and the array shapes of a
  layer ``in -> out`` (:meth:`Weights.shapes`);
* the golden accumulation (:meth:`Weights.accumulate`: the PE's golden model) and its bound
  (:meth:`Weights.acc_bound`);
* the dense integer matrix the products use (:meth:`Weights.dense`, where one exists), the storage bits
  (:meth:`Weights.storage_bits`) and a random draw for tests (:meth:`Weights.random`).

A new scheme is one class here and its line in :data:`SCHEMES` (plus its engine in ``hw.network``).
This module imports numpy only (and the numpy halves of the format modules); torch never.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from . import circulant, fixed, forms, nm, sp2
from .circulant import CirculantFormat
from .forms import CrossbarFormat
from .intops import as_int_array
from .nm import NMFormat
from .params import Params, check_int
from .sp2 import SP2Format

__all__ = ["Weights", "FixedWeights", "SP2Weights", "MSQWeights", "NMWeights", "CirculantWeights",
           "CrossbarWeights", "SCHEMES", "manifest_keys", "strict_format", "read_only", "range_text",
           "equal_arrays"]


def read_only(arr: np.ndarray) -> np.ndarray:
    """``arr`` marked read-only (a frozen description's arrays do not change)."""
    arr.flags.writeable = False
    return arr


def range_text(bits: int, signed: bool) -> str:
    """``"8-bit unsigned"``: how errors name an integer range."""
    return f"{bits}-bit {'signed' if signed else 'unsigned'}"


def equal_arrays(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    """Whether two dicts of arrays hold the same keys, dtypes and values."""
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


class Weights:
    """A layer's integer weights in one PE's format (the subclasses below).

    Subclasses define :attr:`scheme`, :attr:`roles` (the names of their arrays), the format parameters,
    and the methods below; they are frozen dataclasses validated at construction.
    """

    scheme: ClassVar[str]
    roles: ClassVar[tuple[str, ...]]

    @property
    def in_features(self) -> int:
        raise NotImplementedError

    @property
    def out_features(self) -> int:
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        """The weight arrays by role (the keys of :attr:`roles`)."""
        return {role: getattr(self, role) for role in self.roles}

    def format_dict(self) -> dict[str, Any]:
        """The manifest's ``format`` object."""
        raise NotImplementedError

    @classmethod
    def parse_format(cls, data: Any) -> dict[str, Any]:
        """Constructor keywords (format parameters) from a manifest ``format`` object."""
        raise NotImplementedError

    @classmethod
    def shapes(cls, params: Mapping[str, Any], in_features: int, out_features: int
               ) -> dict[str, tuple[tuple[int, ...], str]]:
        """``{role: (shape, axis names)}`` of the arrays for a layer ``in_features -> out_features``."""
        raise NotImplementedError

    @classmethod
    def build(cls, params: Mapping[str, Any], arrays: Mapping[str, np.ndarray], in_features: int,
              out_features: int) -> Weights:
        return cls(**params, **arrays)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Weights):
            return NotImplemented
        return (type(self) is type(other) and self.format_dict() == other.format_dict()
                and self.out_features == other.out_features and equal_arrays(self.arrays(), other.arrays()))

    __hash__ = None

    def check_input(self, bits: int, signed: bool, subject: str) -> None:
        """Raise unless the PE takes inputs of this range (``subject`` names the layer's input)."""

    def accumulate(self, x: np.ndarray, bits: int, signed: bool) -> np.ndarray:
        """int64 ``[N, out]``: the PE golden model's accumulators of ``x [N, in]`` (``bits``-bit inputs)."""
        raise NotImplementedError

    def acc_bound(self, in_max: int) -> int:
        """Largest ``|acc|`` for any input of magnitude at most ``in_max``."""
        raise NotImplementedError

    #: True when the PE takes only unsigned inputs (the crossbar's bit-serial word lines).
    unsigned_input: ClassVar[bool] = False

    def dense(self) -> np.ndarray:
        """int64 ``[out, in]``: the integer weight of every input and output, as the products use it (codes
        decoded, N:M unpacked, crossbar transposed). Raises for a scheme whose product is not a matrix of
        integers (circulant: the product runs through a fixed-point FFT)."""
        raise ValueError(f"{self.scheme} weights must be a dense integer matrix to be read as one, not "
                         f"{type(self).__name__}")

    def storage_bits(self) -> int:
        """Bits the weights occupy as stored (codes, values and indices, spectra, cells and signs; scales,
        biases and requantisation excluded)."""
        raise NotImplementedError

    def take_rows(self, rows) -> Weights:
        """The weights of output rows ``rows`` only (a depthwise convolution's groups), same format."""
        raise ValueError(f"{self.scheme} weights must be split by rows to run in groups, not {type(self).__name__}")

    @classmethod
    def random_unit(cls, rng: np.random.Generator) -> int:
        """A random choice of what this scheme's input features must be a multiple of (N:M ``m``, circulant
        ``k``; 1 otherwise), for :meth:`random`."""
        return 1

    @classmethod
    def random(cls, rng: np.random.Generator, n_in: int, n_out: int, bits: int, signed: bool, unit: int) -> Weights:
        """Random weights ``n_in -> n_out`` in a random legal format for ``bits``-bit inputs (signed or not),
        ``n_in`` a multiple of ``unit`` (:meth:`random_unit`); for tests and random networks."""
        raise NotImplementedError


def strict_format(cls: type[Params], data: Any, subject: str) -> Params:
    """The format ``cls`` (a :class:`sw.params.Params`) of a manifest ``format`` object, every field required.

    A missing field or a ``null`` would let the class fill in a default that changes the arithmetic (a circulant
    format without ``tw_bits`` would compute with 16-bit twiddles), so both are refused, in nested formats too:
    ``"format.tw_bits must be given, not missing"``, ``"format.sp2.m1 must be given (not null), not None"``.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"{subject} must be an object, not {data!r}")
    types = cls.field_types()
    for f in dataclasses.fields(cls):
        if f.name not in data:
            raise ValueError(f"{subject}.{f.name} must be given, not missing")
        value = data[f.name]
        if value is None:
            raise ValueError(f"{subject}.{f.name} must be given (not null), not None")
        kind = types[f.name]
        if isinstance(kind, type) and issubclass(kind, Params):
            strict_format(kind, value, f"{subject}.{f.name}")
    return cls.from_dict(data)


def manifest_keys(subject: str, data: Any, required: Sequence[str], optional: Sequence[str] = ()) -> Mapping:
    """``data`` if it is a JSON object with every ``required`` key and no key outside ``required + optional``;
    ``subject`` is its path in the manifest (``""`` for the top level)."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{subject or 'The manifest'} must be a JSON object, not {data!r}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{subject + '.' if subject else ''}{missing[0]} must be given, not missing")
    unknown = [k for k in data if k not in required and k not in optional]
    if unknown:
        allowed = ", ".join(map(repr, [*required, *optional]))
        raise ValueError(f"{subject + ' keys' if subject else 'Manifest keys'} must be among {allowed}, "
                         f"not {unknown[0]!r}")
    return data


def _row_sums(w: np.ndarray) -> int:
    """Largest ``sum_k |w[j, k]|`` over the rows (0 for no rows)."""
    return int(np.abs(w).sum(axis=1).max(initial=0))


@dataclasses.dataclass(frozen=True, eq=False)
class FixedWeights(Weights):
    """``fixed``: signed ``w_bits`` integers ``weights [out, in]`` (full two's-complement range) on ``fixed-mac``.

    Raises
    ------
    TypeError, ValueError
        ``"Weight bits must be an integer from 2 to 16, not 1"``,
        ``"Fixed-point weights must be integers from -128 to 127, not 300 (at index (0, 1))"``,
        ``"Fixed-point weights must be a 2-D array [out, in], not shape (3,)"``.
    """

    scheme: ClassVar[str] = "fixed"
    roles: ClassVar[tuple[str, ...]] = ("weights",)

    weights: np.ndarray
    w_bits: int

    def __post_init__(self):
        w = as_int_array("Fixed-point weights", self.weights, *fixed.weight_range(self.w_bits))
        if w.ndim != 2 or 0 in w.shape:
            raise ValueError(f"Fixed-point weights must be a non-empty 2-D array [out, in], not shape {w.shape}")
        object.__setattr__(self, "weights", read_only(w))

    in_features = property(lambda self: self.weights.shape[1])
    out_features = property(lambda self: self.weights.shape[0])

    def format_dict(self):
        return {"w_bits": self.w_bits}

    @classmethod
    def parse_format(cls, data):
        data = manifest_keys("format", data, ("w_bits",))
        fixed.check_w_bits(data["w_bits"])
        return {"w_bits": data["w_bits"]}

    @classmethod
    def shapes(cls, params, in_features, out_features):
        return {"weights": ((out_features, in_features), "out_features, in_features")}

    def accumulate(self, x, bits, signed):
        return np.stack([fixed.golden_dot(x, row, self.w_bits, act_bits=bits, act_signed=signed)
                         for row in self.weights], axis=1)

    def acc_bound(self, in_max):
        return in_max * _row_sums(self.weights)

    def dense(self):
        return np.asarray(self.weights, np.int64)

    def storage_bits(self):
        return self.weights.size * self.w_bits

    def take_rows(self, rows):
        return FixedWeights(self.weights[list(rows)], self.w_bits)

    @classmethod
    def random(cls, rng, n_in, n_out, bits, signed, unit):
        w_bits = int(rng.integers(2, 9))
        lo, hi = fixed.weight_range(w_bits)
        return cls(rng.integers(lo, hi + 1, (n_out, n_in)), w_bits)


@dataclasses.dataclass(frozen=True, eq=False)
class SP2Weights(Weights):
    """``sp2``: SP2 codes ``codes [out, in]`` of :class:`sw.sp2.SP2Format` ``fmt`` (every code legal) on ``sp2-mac``.

    Raises
    ------
    TypeError, ValueError
        ``"SP2 format must be an SP2Format, not 4"``,
        ``"SP2 codes must be integers from 0 to 15, not 16 (at index (0, 3))"``.
    """

    scheme: ClassVar[str] = "sp2"
    roles: ClassVar[tuple[str, ...]] = ("codes",)

    codes: np.ndarray
    fmt: SP2Format

    def __post_init__(self):
        sp2.check_format(self.fmt)
        c = as_int_array("SP2 codes", self.codes, 0, self.fmt.n_codes - 1)
        if c.ndim != 2 or 0 in c.shape:
            raise ValueError(f"SP2 codes must be a non-empty 2-D array [out, in], not shape {c.shape}")
        object.__setattr__(self, "codes", read_only(c))

    in_features = property(lambda self: self.codes.shape[1])
    out_features = property(lambda self: self.codes.shape[0])

    def format_dict(self):
        return self.fmt.to_dict()

    @classmethod
    def parse_format(cls, data):
        return {"fmt": strict_format(SP2Format, data, "format")}

    @classmethod
    def shapes(cls, params, in_features, out_features):
        return {"codes": ((out_features, in_features), "out_features, in_features")}

    def accumulate(self, x, bits, signed):
        return np.stack([sp2.golden_dot(x, row, self.fmt, act_bits=bits, act_signed=signed) for row in self.codes],
                        axis=1)

    def acc_bound(self, in_max):
        return in_max * _row_sums(self.fmt.decode(self.codes))

    def dense(self):
        return np.asarray(self.fmt.decode(self.codes), np.int64)

    def storage_bits(self):
        return self.codes.size * self.fmt.bits

    def take_rows(self, rows):
        return SP2Weights(self.codes[list(rows)], self.fmt)

    @classmethod
    def random(cls, rng, n_in, n_out, bits, signed, unit):
        fmt = SP2Format(int(rng.integers(3, 7)))
        return cls(rng.integers(0, fmt.n_codes, (n_out, n_in)), fmt)


@dataclasses.dataclass(frozen=True, eq=False)
class MSQWeights(Weights):
    """``msq`` (Mix and Match, :mod:`sw.msq`): per output row either SP2 codes (on ``sp2-mac``) or signed
    ``w_bits`` integers (on ``fixed-mac``).

    Members
    -------
    is_sp2 : bool [out]
        True where the row is SP2.
    codes : int64 [out, in]
        SP2 codes of ``sp2_fmt`` on SP2 rows, 0 on fixed-point rows.
    fixed : int64 [out, in]
        Signed ``w_bits`` integers on fixed-point rows, 0 on SP2 rows.
    sp2_fmt : SP2Format
    w_bits : int

    Raises
    ------
    TypeError, ValueError
        ``"MSQ row kinds must be a non-empty bool array [out], not int64 of shape (4,)"``,
        ``"MSQ SP2 codes must be 0 on fixed-point rows, not 3 (at index (2, 0))"``, the errors of
        :class:`SP2Weights` and :class:`FixedWeights`.
    """

    scheme: ClassVar[str] = "msq"
    roles: ClassVar[tuple[str, ...]] = ("is_sp2", "codes", "fixed")

    is_sp2: np.ndarray
    codes: np.ndarray
    fixed: np.ndarray
    sp2_fmt: SP2Format
    w_bits: int

    def __post_init__(self):
        sp2.check_format(self.sp2_fmt)
        kinds = np.array(self.is_sp2)
        if kinds.dtype != bool or kinds.ndim != 1 or kinds.size == 0:
            raise TypeError(f"MSQ row kinds must be a non-empty bool array [out], not {kinds.dtype} of shape "
                            f"{kinds.shape}")
        sp2_part = SP2Weights(self.codes, self.sp2_fmt)
        fixed_part = FixedWeights(self.fixed, self.w_bits)
        for name, arr in (("SP2 codes", sp2_part.codes), ("fixed-point weights", fixed_part.weights)):
            if arr.shape[0] != len(kinds):
                raise ValueError(f"MSQ {name} must have {len(kinds)} rows (one per row kind), not shape {arr.shape}")
        if sp2_part.codes.shape != fixed_part.weights.shape:
            raise ValueError(f"MSQ SP2 codes and fixed-point weights must have one shape, not "
                             f"{sp2_part.codes.shape} and {fixed_part.weights.shape}")
        for name, arr, rows, other in (("SP2 codes", sp2_part.codes, ~kinds, "fixed-point"),
                                       ("fixed-point weights", fixed_part.weights, kinds, "SP2")):
            bad = arr * rows[:, None]
            if bad.any():
                index = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(f"MSQ {name} must be 0 on {other} rows, not {int(arr[index])} (at index {index})")
        for name, arr in (("is_sp2", read_only(kinds)), ("codes", sp2_part.codes), ("fixed", fixed_part.weights)):
            object.__setattr__(self, name, arr)

    in_features = property(lambda self: self.codes.shape[1])
    out_features = property(lambda self: self.codes.shape[0])

    def format_dict(self):
        return {"sp2": self.sp2_fmt.to_dict(), "w_bits": self.w_bits}

    @classmethod
    def parse_format(cls, data):
        data = manifest_keys("format", data, ("sp2", "w_bits"))
        fixed.check_w_bits(data["w_bits"])
        return {"sp2_fmt": strict_format(SP2Format, data["sp2"], "format.sp2"), "w_bits": data["w_bits"]}

    @classmethod
    def shapes(cls, params, in_features, out_features):
        both = ((out_features, in_features), "out_features, in_features")
        return {"is_sp2": ((out_features,), "out_features"), "codes": both, "fixed": both}

    def accumulate(self, x, bits, signed):
        cols = [sp2.golden_dot(x, c, self.sp2_fmt, act_bits=bits, act_signed=signed) if kind else
                fixed.golden_dot(x, f, self.w_bits, act_bits=bits, act_signed=signed)
                for kind, c, f in zip(self.is_sp2, self.codes, self.fixed)]
        return np.stack(cols, axis=1)

    def acc_bound(self, in_max):
        return in_max * _row_sums(np.where(self.is_sp2[:, None], self.sp2_fmt.decode(self.codes), self.fixed))

    def dense(self):
        return np.where(self.is_sp2[:, None], self.sp2_fmt.decode(self.codes), self.fixed).astype(np.int64)

    def take_rows(self, rows):
        rows = list(rows)
        return MSQWeights(self.is_sp2[rows], self.codes[rows], self.fixed[rows], self.sp2_fmt, self.w_bits)

    def storage_bits(self):
        # each row in its own format, plus one bit per row for its kind
        n_sp2 = int(np.sum(self.is_sp2))
        return (self.in_features * (n_sp2 * self.sp2_fmt.bits + (self.out_features - n_sp2) * self.w_bits)
                + self.out_features)

    @classmethod
    def random(cls, rng, n_in, n_out, bits, signed, unit):
        fmt, w_bits = SP2Format(int(rng.integers(3, 6))), int(rng.integers(2, 7))
        kinds = rng.random(n_out) < 0.5
        lo, hi = fixed.weight_range(w_bits)
        return cls(kinds, np.where(kinds[:, None], rng.integers(0, fmt.n_codes, (n_out, n_in)), 0),
                   np.where(kinds[:, None], 0, rng.integers(lo, hi + 1, (n_out, n_in))), fmt, w_bits)


@dataclasses.dataclass(frozen=True, eq=False)
class NMWeights(Weights):
    """``nm``: N:M sparse weights packed as :func:`sw.nm.pack` does, ``values`` and ``indices``
    ``[out, in * n / m]`` (slot ``s`` in group ``s // n``; indices ``0 .. m-1``, any order, duplicates add),
    values signed ``w_bits`` integers, on ``nm-sparse``.

    Raises
    ------
    TypeError, ValueError
        ``"N:M format must be an NMFormat, not ..."``, ``"N:M values must be integers from -128 to 127, not
        300 (at index (0, 1))"``, ``"N:M indices must be integers from 0 to 3, not 4 (at index (0, 1))"``,
        ``"N:M values must be a non-empty 2-D array [out, in * n / m] with a multiple of n = 2 slots per row,
        not shape (4, 3)"``.
    """

    scheme: ClassVar[str] = "nm"
    roles: ClassVar[tuple[str, ...]] = ("values", "indices")

    values: np.ndarray
    indices: np.ndarray
    fmt: NMFormat
    w_bits: int

    def __post_init__(self):
        nm.check_format(self.fmt)
        v = as_int_array("N:M values", self.values, *fixed.weight_range(self.w_bits))
        i = as_int_array("N:M indices", self.indices, 0, self.fmt.m - 1)
        if v.ndim != 2 or 0 in v.shape or v.shape[1] % self.fmt.n:
            raise ValueError(f"N:M values must be a non-empty 2-D array [out, in * n / m] with a multiple of "
                             f"n = {self.fmt.n} slots per row, not shape {v.shape}")
        if i.shape != v.shape:
            raise ValueError(f"N:M indices must have the shape of the values, {v.shape}, not {i.shape}")
        object.__setattr__(self, "values", read_only(v))
        object.__setattr__(self, "indices", read_only(i))

    in_features = property(lambda self: self.values.shape[1] // self.fmt.n * self.fmt.m)
    out_features = property(lambda self: self.values.shape[0])

    def format_dict(self):
        return {**self.fmt.to_dict(), "w_bits": self.w_bits}

    @classmethod
    def parse_format(cls, data):
        data = manifest_keys("format", data, ("n", "m", "w_bits"))
        fixed.check_w_bits(data["w_bits"])
        return {"fmt": NMFormat(data["n"], data["m"]), "w_bits": data["w_bits"]}

    @classmethod
    def shapes(cls, params, in_features, out_features):
        shape = (out_features, params["fmt"].groups(in_features, "in_features") * params["fmt"].n)
        return {role: (shape, "out_features, in_features * n / m") for role in cls.roles}

    def dense(self) -> np.ndarray:
        """int64 ``[out, in]``: :func:`sw.nm.unpack` of the packed weights."""
        return nm.unpack(self.values, self.indices, self.fmt, self.in_features)

    def accumulate(self, x, bits, signed):
        return np.stack([nm.golden_dot(x, v, i, self.fmt, act_bits=bits, act_signed=signed, w_bits=self.w_bits)
                         for v, i in zip(self.values, self.indices)], axis=1)

    def acc_bound(self, in_max):
        return in_max * _row_sums(self.values)

    def storage_bits(self):
        return self.values.size * (self.w_bits + self.fmt.index_bits)

    def take_rows(self, rows):
        rows = list(rows)
        return NMWeights(self.values[rows], self.indices[rows], self.fmt, self.w_bits)

    @classmethod
    def random_unit(cls, rng):
        return int(rng.choice([2, 4, 8]))

    @classmethod
    def random(cls, rng, n_in, n_out, bits, signed, unit):
        fmt, w_bits = NMFormat(int(rng.integers(1, unit)), unit), int(rng.integers(2, 9))
        lo, hi = fixed.weight_range(w_bits)
        dense = rng.integers(lo, hi + 1, (n_out, n_in))
        keep = np.zeros((n_out, n_in // fmt.m, fmt.m), bool)
        order = np.argsort(rng.random(keep.shape), axis=-1)[..., :fmt.n]
        np.put_along_axis(keep, order, rng.random(order.shape) < 0.8, axis=-1)
        return cls(*nm.pack(dense * keep.reshape(n_out, n_in), fmt), fmt, w_bits)


@dataclasses.dataclass(frozen=True, eq=False)
class CirculantWeights(Weights):
    """``circulant``: block-circulant weights as stored half spectra ``spectra [p, q, k/2 + 1, 2]`` of
    :class:`sw.circulant.CirculantFormat` ``fmt`` (:func:`sw.circulant.export_spectra`), on ``circulant-fft``.

    The layer maps ``in = q * k`` inputs to ``out_features`` outputs, ``(p - 1) * k < out_features <= p * k``:
    the PE computes ``p * k`` outputs and the last ``p * k - out_features`` are dropped. The format's
    ``act_bits`` / ``act_signed`` are the layer's input range.

    Raises
    ------
    TypeError, ValueError
        ``"Circulant spectra must be integers from -2048 to 2047, not 4096 (at index (0, 0, 1, 0))"``,
        ``"Circulant spectra must have imaginary part 0 in bins 0 and k/2, not 3 (at index (0, 0, 0, 1))"``,
        ``"Circulant q must be an integer from 1 to 8, not 9"``,
        ``"Circulant out_features must be an integer from 9 to 16 (p = 2 blocks of k = 8), not 17"``.
    """

    scheme: ClassVar[str] = "circulant"
    roles: ClassVar[tuple[str, ...]] = ("spectra",)

    spectra: np.ndarray
    fmt: CirculantFormat
    out: int

    def __post_init__(self):
        fmt = circulant.check_format(self.fmt)
        w = as_int_array("Circulant spectra", self.spectra, *fmt.w_range)
        if w.ndim != 4 or w.shape[2:] != (fmt.bins, 2) or 0 in w.shape:
            raise ValueError(f"Circulant spectra must be a non-empty array [p, q, {fmt.bins}, 2] (k = {fmt.block}), "
                             f"not shape {w.shape}")
        # the PE's own weight check (imaginary parts of bins 0 and k/2), on a zero input
        circulant.golden_matvec(np.zeros((0, w.shape[1], fmt.block), np.int64), w, fmt)
        check_int("Circulant q", w.shape[1], min=1, max=fmt.max_q)
        p, k = w.shape[0], fmt.block
        check_int(f"Circulant out_features (p = {p} blocks of k = {k})", self.out, min=(p - 1) * k + 1, max=p * k)
        object.__setattr__(self, "spectra", read_only(w))

    in_features = property(lambda self: self.spectra.shape[1] * self.fmt.block)
    out_features = property(lambda self: self.out)

    def format_dict(self):
        return self.fmt.to_dict()

    @classmethod
    def parse_format(cls, data):
        return {"fmt": strict_format(CirculantFormat, data, "format")}

    @classmethod
    def shapes(cls, params, in_features, out_features):
        fmt = params["fmt"]
        if in_features % fmt.block:
            raise ValueError(f"in_features must be a multiple of the circulant block k = {fmt.block}, "
                             f"not {in_features!r}")
        p, q = -(-out_features // fmt.block), in_features // fmt.block
        return {"spectra": ((p, q, fmt.bins, 2), "out blocks p, in blocks q, k/2 + 1 bins, re/im")}

    @classmethod
    def build(cls, params, arrays, in_features, out_features):
        return cls(**params, **arrays, out=out_features)

    def check_input(self, bits, signed, subject):
        if (self.fmt.act_bits, self.fmt.act_signed) != (bits, signed):
            want = range_text(self.fmt.act_bits, self.fmt.act_signed)
            raise ValueError(f"{subject} must be the circulant format's {want} activations (act_bits, act_signed), "
                             f"not {range_text(bits, signed)}")

    def accumulate(self, x, bits, signed):
        y = circulant.golden_matvec(x.reshape(len(x), -1, self.fmt.block), self.spectra, self.fmt)
        return y.reshape(len(x), -1)[:, :self.out]

    def acc_bound(self, in_max):
        lo, hi = self.fmt.out_range(self.spectra.shape[1])
        return max(-lo, hi)

    def storage_bits(self):
        # k real degrees of freedom per block: bins 0 and k/2 real, k/2 - 1 complex bins
        p, q = self.spectra.shape[:2]
        return p * q * self.fmt.block * self.fmt.w_bits

    @classmethod
    def random_unit(cls, rng):
        return int(rng.choice([4, 8]))

    @classmethod
    def random(cls, rng, n_in, n_out, bits, signed, unit):
        fmt = CirculantFormat(block=unit, act_bits=bits, act_signed=signed, w_bits=int(rng.integers(6, 11)),
                              tw_bits=int(rng.integers(8, 15)), guard_bits=int(rng.integers(0, 4)),
                              max_q=max(1, n_in // unit))
        lo, hi = fmt.w_range
        spectra = rng.integers(lo, hi + 1, (-(-n_out // fmt.block), n_in // fmt.block, fmt.bins, 2))
        spectra[:, :, [0, -1], 1] = 0
        return cls(spectra, fmt, n_out)


@dataclasses.dataclass(frozen=True, eq=False)
class CrossbarWeights(Weights):
    """``crossbar``: polarised integer weights ``weights [in, out]`` (crossbar orientation, ``y = x @ W``) for
    the ``crossbar`` controller of :class:`sw.forms.CrossbarFormat` ``fmt``, with the ideal array.

    Within every sub-array of ``fmt.rows_per_sub`` rows each column's weights share one sign; magnitudes are
    at most ``2^w_bits - 1``. ``in <= fmt.rows`` (the remaining rows are driven with 0); the outputs run in
    tiles of ``fmt.cols`` columns (the last one padded with zero columns), one crossbar programming each, and
    :func:`sw.forms.golden_mvm` computes each tile. Inputs are unsigned ``fmt.act_bits`` integers.

    Raises
    ------
    TypeError, ValueError
        ``"Crossbar weights must be integers from -255 to 255, not 256 (at index (0, 1))"``,
        ``"Crossbar weights must have one sign in every sub-array column, not 3 (row 9) and -2 (row 12) in
        sub-array 1 (rows 8 to 15), column 4"``, ``"Crossbar in_features must be at most the crossbar's
        8 rows, not 9"``.
    """

    scheme: ClassVar[str] = "crossbar"
    roles: ClassVar[tuple[str, ...]] = ("weights",)

    weights: np.ndarray
    fmt: CrossbarFormat

    def __post_init__(self):
        fmt = forms.check_format(self.fmt)
        w = as_int_array("Crossbar weights", self.weights, -fmt.w_max, fmt.w_max)
        if w.ndim != 2 or 0 in w.shape:
            raise ValueError(f"Crossbar weights must be a non-empty 2-D array [in, out], not shape {w.shape}")
        rows, cols = w.shape
        if rows > fmt.rows:
            raise ValueError(f"Crossbar in_features must be at most the crossbar's {fmt.rows} rows, not {rows}")
        object.__setattr__(self, "weights", read_only(w))
        # polarity, checked on the whole matrix so that the error names the layer's own column
        padded = np.zeros((fmt.rows, cols), np.int64)
        padded[:rows] = w
        if cols <= forms.MAX_COLS:
            forms.map_weights(padded, dataclasses.replace(fmt, cols=cols))
        tiles = -(-cols // fmt.cols)
        wide = np.zeros((fmt.rows, tiles * fmt.cols), np.int64)
        wide[:rows, :cols] = w
        object.__setattr__(self, "_mappings", tuple(forms.map_weights(wide[:, t * fmt.cols:(t + 1) * fmt.cols], fmt)
                                                    for t in range(tiles)))

    in_features = property(lambda self: self.weights.shape[0])
    out_features = property(lambda self: self.weights.shape[1])

    @property
    def mappings(self) -> tuple[forms.Mapping, ...]:
        """The crossbar programming (:func:`sw.forms.map_weights`) of every tile of ``fmt.cols`` outputs."""
        return self._mappings

    def format_dict(self):
        return self.fmt.to_dict()

    @classmethod
    def parse_format(cls, data):
        return {"fmt": strict_format(CrossbarFormat, data, "format")}

    @classmethod
    def shapes(cls, params, in_features, out_features):
        return {"weights": ((in_features, out_features), "in_features, out_features")}

    def check_input(self, bits, signed, subject):
        if (self.fmt.act_bits, False) != (bits, signed):
            raise ValueError(f"{subject} must be the crossbar's {range_text(self.fmt.act_bits, False)} inputs "
                             f"(act_bits, unsigned), not {range_text(bits, signed)}")

    def accumulate(self, x, bits, signed):
        xp = np.zeros((len(x), self.fmt.rows), np.int64)
        xp[:, :self.in_features] = x
        ys = [forms.golden_mvm(xp, mapping, self.fmt)[0] for mapping in self._mappings]
        return np.concatenate(ys, axis=1)[:, :self.out_features]

    def acc_bound(self, in_max):
        # the ideal ADC only clips column sums down, so |y| <= sum_r |w[r, c]| * max x
        return in_max * _row_sums(self.weights.T)

    unsigned_input: ClassVar[bool] = True

    def dense(self):
        return np.asarray(self.weights.T, np.int64)

    def take_rows(self, rows):
        return CrossbarWeights(self.weights[:, list(rows)], self.fmt)

    def storage_bits(self):
        # magnitudes, and one sign bit per sub-array column
        fmt = self.fmt
        return self.weights.size * fmt.w_bits + -(-self.in_features // fmt.rows_per_sub) * self.out_features

    @classmethod
    def random(cls, rng, n_in, n_out, bits, signed, unit):
        # one sign per fragment of rows_per_sub rows of a column
        rps = int(rng.integers(1, 9))
        cell_bits = int(rng.integers(1, 3))
        fmt = CrossbarFormat(rows=-(-n_in // rps) * rps, cols=int(rng.integers(1, n_out + 1)), rows_per_sub=rps,
                             act_bits=bits, w_bits=cell_bits * int(rng.integers(1, 4)), cell_bits=cell_bits)
        mags = rng.integers(0, fmt.w_max + 1, (fmt.rows, n_out))
        signs = np.repeat(rng.choice([-1, 1], (fmt.sub_arrays, n_out)), rps, axis=0)
        return cls((mags * signs)[:n_in], fmt)


#: Weight classes by scheme name, in table order.
SCHEMES: dict[str, type[Weights]] = {cls.scheme: cls for cls in (
    FixedWeights, SP2Weights, MSQWeights, NMWeights, CirculantWeights, CrossbarWeights)}


