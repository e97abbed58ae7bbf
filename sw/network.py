"""Integer networks: the one description between front-ends (torch, QONNX) and back-ends (golden, hw, tb, synth).

A :class:`Network` is an input spec (:class:`InputSpec`: features, bits, signedness) and a chain of dense
:class:`Layer` s. Each layer holds its weights in exactly the integer format of the PE it runs on (one of
the weight classes of :data:`SCHEMES`), its requantisation (per-output integer multipliers and offsets, one
shift: :mod:`sw.requant`, where the formula is defined), ReLU or not, and its output range::

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

from . import circulant, fixed, forms, nm, sp2
from .circulant import CirculantFormat
from .forms import CrossbarFormat
from .intops import INT64_MAX, as_int_array, as_real_array, int_range
from .nm import NMFormat
from .params import Params, check_bool, check_choice, check_int
from .requant import REQUANT_BITS, ROUNDINGS, Requant, check_rounding
from .sp2 import SP2Format

__all__ = [
    "FORMAT", "VERSION", "MANIFEST", "WEIGHTS", "SCHEMES", "MAX_BITS", "InputSpec", "FixedWeights", "SP2Weights",
    "MSQWeights", "NMWeights", "CirculantWeights", "CrossbarWeights", "Layer", "Network", "load", "save",
    "layer_from_manifest", "narrow_range", "random_network",
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


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


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


def _range_text(bits: int, signed: bool) -> str:
    return f"{bits}-bit {'signed' if signed else 'unsigned'}"


def _int_matrix(subject: str, x: Any, lo: int, hi: int, shape: tuple[int, ...], names: str) -> np.ndarray:
    arr = as_int_array(subject, x, lo, hi)
    if arr.shape != shape:
        raise ValueError(f"{subject} must have shape {shape} ({names}), not {arr.shape}")
    return _read_only(arr)


def _equal_arrays(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


# -- the network input -----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class InputSpec:
    """The network input: ``features`` integers of ``bits`` bits, signed or not, per sample.

    Members
    -------
    features : int
        Input features per sample, at least 1.
    bits : int
        1 to 32.
    signed : bool
    scale : float or None
        Real value of one input LSB (documentation for front-ends; the integer network does not use it).

    Raises
    ------
    TypeError, ValueError
        ``"Input features must be a positive integer, not 0"``, ``"Input bits must be an integer from 1 to
        32, not 40"``, ``"Input signed must be a bool, not 1"``.
    """

    features: int
    bits: int
    signed: bool
    scale: float | None = None

    def __post_init__(self):
        check_int("Input features", self.features, min=1)
        _check_bits("Input bits", self.bits)
        check_bool("Input signed", self.signed)
        _check_scale("Input scale", self.scale)

    @property
    def range(self) -> tuple[int, int]:
        """Inclusive ``(lo, hi)`` of an input integer."""
        return int_range(self.bits, self.signed)


# -- weights: one class per scheme, each in its PE's format ---------------------------------------------------

class _Weights:
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
              out_features: int) -> _Weights:
        return cls(**params, **arrays)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Weights):
            return NotImplemented
        return (type(self) is type(other) and self.format_dict() == other.format_dict()
                and self.out_features == other.out_features and _equal_arrays(self.arrays(), other.arrays()))

    __hash__ = None

    def check_input(self, bits: int, signed: bool, subject: str) -> None:
        """Raise unless the PE takes inputs of this range (``subject`` names the layer's input)."""

    def accumulate(self, x: np.ndarray, bits: int, signed: bool) -> np.ndarray:
        """int64 ``[N, out]``: the PE golden model's accumulators of ``x [N, in]`` (``bits``-bit inputs)."""
        raise NotImplementedError

    def acc_bound(self, in_max: int) -> int:
        """Largest ``|acc|`` for any input of magnitude at most ``in_max``."""
        raise NotImplementedError


def _params_format(cls: type[Params], data: Any, subject: str) -> Params:
    if not isinstance(data, Mapping):
        raise TypeError(f"{subject} must be an object, not {data!r}")
    return cls.from_dict(data)


def _keys(subject: str, data: Any, required: Sequence[str], optional: Sequence[str] = ()) -> Mapping:
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
class FixedWeights(_Weights):
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
        object.__setattr__(self, "weights", _read_only(w))

    in_features = property(lambda self: self.weights.shape[1])
    out_features = property(lambda self: self.weights.shape[0])

    def format_dict(self):
        return {"w_bits": self.w_bits}

    @classmethod
    def parse_format(cls, data):
        data = _keys("format", data, ("w_bits",))
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


@dataclasses.dataclass(frozen=True, eq=False)
class SP2Weights(_Weights):
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
        object.__setattr__(self, "codes", _read_only(c))

    in_features = property(lambda self: self.codes.shape[1])
    out_features = property(lambda self: self.codes.shape[0])

    def format_dict(self):
        return self.fmt.to_dict()

    @classmethod
    def parse_format(cls, data):
        return {"fmt": _params_format(SP2Format, data, "format")}

    @classmethod
    def shapes(cls, params, in_features, out_features):
        return {"codes": ((out_features, in_features), "out_features, in_features")}

    def accumulate(self, x, bits, signed):
        return np.stack([sp2.golden_dot(x, row, self.fmt, act_bits=bits, act_signed=signed) for row in self.codes],
                        axis=1)

    def acc_bound(self, in_max):
        return in_max * _row_sums(self.fmt.decode(self.codes))


@dataclasses.dataclass(frozen=True, eq=False)
class MSQWeights(_Weights):
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
        for name, arr in (("is_sp2", _read_only(kinds)), ("codes", sp2_part.codes), ("fixed", fixed_part.weights)):
            object.__setattr__(self, name, arr)

    in_features = property(lambda self: self.codes.shape[1])
    out_features = property(lambda self: self.codes.shape[0])

    def format_dict(self):
        return {"sp2": self.sp2_fmt.to_dict(), "w_bits": self.w_bits}

    @classmethod
    def parse_format(cls, data):
        data = _keys("format", data, ("sp2", "w_bits"))
        fixed.check_w_bits(data["w_bits"])
        return {"sp2_fmt": _params_format(SP2Format, data["sp2"], "format.sp2"), "w_bits": data["w_bits"]}

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


@dataclasses.dataclass(frozen=True, eq=False)
class NMWeights(_Weights):
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
        object.__setattr__(self, "values", _read_only(v))
        object.__setattr__(self, "indices", _read_only(i))

    in_features = property(lambda self: self.values.shape[1] // self.fmt.n * self.fmt.m)
    out_features = property(lambda self: self.values.shape[0])

    def format_dict(self):
        return {**self.fmt.to_dict(), "w_bits": self.w_bits}

    @classmethod
    def parse_format(cls, data):
        data = _keys("format", data, ("n", "m", "w_bits"))
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


@dataclasses.dataclass(frozen=True, eq=False)
class CirculantWeights(_Weights):
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
        object.__setattr__(self, "spectra", _read_only(w))

    in_features = property(lambda self: self.spectra.shape[1] * self.fmt.block)
    out_features = property(lambda self: self.out)

    def format_dict(self):
        return self.fmt.to_dict()

    @classmethod
    def parse_format(cls, data):
        return {"fmt": _params_format(CirculantFormat, data, "format")}

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
            want = _range_text(self.fmt.act_bits, self.fmt.act_signed)
            raise ValueError(f"{subject} must be the circulant format's {want} activations (act_bits, act_signed), "
                             f"not {_range_text(bits, signed)}")

    def accumulate(self, x, bits, signed):
        y = circulant.golden_matvec(x.reshape(len(x), -1, self.fmt.block), self.spectra, self.fmt)
        return y.reshape(len(x), -1)[:, :self.out]

    def acc_bound(self, in_max):
        lo, hi = self.fmt.out_range(self.spectra.shape[1])
        return max(-lo, hi)


@dataclasses.dataclass(frozen=True, eq=False)
class CrossbarWeights(_Weights):
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
        object.__setattr__(self, "weights", _read_only(w))
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
        return {"fmt": _params_format(CrossbarFormat, data, "format")}

    @classmethod
    def shapes(cls, params, in_features, out_features):
        return {"weights": ((in_features, out_features), "in_features, out_features")}

    def check_input(self, bits, signed, subject):
        if (self.fmt.act_bits, False) != (bits, signed):
            raise ValueError(f"{subject} must be the crossbar's {_range_text(self.fmt.act_bits, False)} inputs "
                             f"(act_bits, unsigned), not {_range_text(bits, signed)}")

    def accumulate(self, x, bits, signed):
        xp = np.zeros((len(x), self.fmt.rows), np.int64)
        xp[:, :self.in_features] = x
        ys = [forms.golden_mvm(xp, mapping, self.fmt)[0] for mapping in self._mappings]
        return np.concatenate(ys, axis=1)[:, :self.out_features]

    def acc_bound(self, in_max):
        # the ideal ADC only clips column sums down, so |y| <= sum_r |w[r, c]| * max x
        return in_max * _row_sums(self.weights.T)


#: Weight classes by scheme name, in table order.
SCHEMES: dict[str, type[_Weights]] = {cls.scheme: cls for cls in (
    FixedWeights, SP2Weights, MSQWeights, NMWeights, CirculantWeights, CrossbarWeights)}


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


@dataclasses.dataclass(frozen=True, eq=False)
class Layer:
    """One dense layer of an integer network: weights on a PE, requantisation, ReLU, output range.

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

    weights: _Weights
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

    def __post_init__(self):
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
    def in_range(self) -> tuple[int, int]:
        return int_range(self.in_bits, self.in_signed)

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
        return entry, {keys[role]: arr for role, arr in arrays.items()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Layer):
            return NotImplemented
        (a, arrays_a), (b, arrays_b) = self.manifest(0), other.manifest(0)
        return a == b and _equal_arrays(arrays_a, arrays_b)

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

def _check_chain(spec: InputSpec, layers: Sequence[Layer], prefix: str = "") -> None:
    """Widths and ranges chain: layer 0 takes the input spec, layer n the output of layer n - 1."""
    if not layers:
        raise ValueError(f"{prefix}layers must be a non-empty list, not {list(layers)!r}")
    features, bits, signed, source = spec.features, spec.bits, spec.signed, "input"
    for i, layer in enumerate(layers):
        if layer.in_features != features:
            what = "features" if source == "input" else "out_features"
            raise ValueError(f"{prefix}layers[{i}].in_features must be {features} ({source}.{what}), "
                             f"not {layer.in_features}")
        if (layer.in_bits, layer.in_signed) != (bits, signed):
            where = "input" if source == "input" else f"{source}.output"
            raise ValueError(f"{prefix}layers[{i}].input must be {_range_text(bits, signed)} ({where}), "
                             f"not {_range_text(layer.in_bits, layer.in_signed)}")
        features, bits, signed, source = layer.out_features, layer.out_bits, layer.out_signed, f"layers[{i}]"


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    """An integer network: :class:`InputSpec` then a chain of :class:`Layer` s (see the module docstring).

    Members
    -------
    input : InputSpec
    layers : tuple of Layer
        At least one; ``layers[0]`` takes the input (features and range), ``layers[n]`` the output of
        ``layers[n - 1]``. The last layer's outputs are the logits.

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
            if not isinstance(layer, Layer):
                raise TypeError(f"Network layers[{i}] must be a Layer, not {layer!r}")
        _check_chain(self.input, layers)
        object.__setattr__(self, "layers", layers)

    # -- running ------------------------------------------------------------------------------------------
    @property
    def in_features(self) -> int:
        return self.input.features

    @property
    def out_features(self) -> int:
        return self.layers[-1].out_features

    def _run(self, x: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
        arr = as_int_array("Network input", x, *self.input.range)
        if arr.ndim != 2 or arr.shape[1] != self.input.features:
            raise ValueError(f"Network input must have shape (N, {self.input.features}), not {arr.shape}")
        accs, outs = [], []
        for layer in self.layers:
            accs.append(layer.accumulate(arr))
            arr = layer.requant(accs[-1])
            outs.append(arr)
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
            "input": {"features": spec.features, "bits": spec.bits, "signed": spec.signed, "scale": spec.scale},
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
        return a == b and _equal_arrays(arrays_a, arrays_b)

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

    top = _prefixed(jname, lambda: _keys("", data, ("format", "version", "input", "layers")))
    if top["format"] != FORMAT:
        raise ValueError(f"{jname}: format must be {FORMAT!r}, not {top['format']!r}")
    if isinstance(top["version"], bool) or top["version"] != VERSION:
        raise ValueError(f"{jname}: version must be {VERSION} (the versions this peforge reads), "
                         f"not {top['version']!r}")
    spec_data = _prefixed(jname, lambda: _keys("input", top["input"], ("features", "bits", "signed"), ("scale",)))
    spec = _prefixed(f"{jname}: input", lambda: InputSpec(spec_data["features"], spec_data["bits"], spec_data["signed"],
                                                          spec_data.get("scale")))
    if not isinstance(top["layers"], list) or not top["layers"]:
        raise ValueError(f"{jname}: layers must be a non-empty list, not {top['layers']!r}")
    used: set[str] = set()
    layers = [_load_layer(i, entry, stored, used, jname, nname) for i, entry in enumerate(top["layers"])]
    unused = sorted(set(stored) - used)
    if unused:
        raise ValueError(f"{nname} must hold only the arrays network.json names, not also {unused[0]!r}")
    _prefixed(jname, lambda: _check_chain(spec, layers))
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
                nname: str) -> Layer:
    at = f"layers[{i}]"
    entry = _prefixed(jname, lambda: _keys(at, entry, ("scheme", "in_features", "out_features", "input", "format",
                                                       "requant", "relu", "output", "arrays")))
    _prefixed(jname, lambda: check_choice(f"{at}.scheme", entry["scheme"], SCHEMES))
    cls = SCHEMES[entry["scheme"]]
    inp = _prefixed(jname, lambda: _keys(f"{at}.input", entry["input"], ("bits", "signed")))
    out = _prefixed(jname, lambda: _keys(f"{at}.output", entry["output"], ("bits", "signed"), ("scale", "narrow")))
    req = _prefixed(jname, lambda: _keys(f"{at}.requant", entry["requant"], ("shift",), ("rounding",)))
    rounding, narrow = req.get("rounding", ROUNDINGS[0]), out.get("narrow", False)
    _prefixed(jname, lambda: check_rounding(f"{at}.requant.rounding", rounding))
    _prefixed(jname, lambda: check_bool(f"{at}.output.narrow", narrow))
    names = {"shift": f"{at}.requant.shift", "relu": f"{at}.relu", "in_bits": f"{at}.input.bits",
             "in_signed": f"{at}.input.signed", "out_bits": f"{at}.output.bits", "out_signed": f"{at}.output.signed",
             "out_scale": f"{at}.output.scale"}
    _prefixed(jname, lambda: _check_layer_scalars("", req["shift"], entry["relu"], inp["bits"], inp["signed"],
                                                  out["bits"], out["signed"], out.get("scale"), names))
    for field in ("in_features", "out_features"):
        _prefixed(jname, lambda: check_int(f"{at}.{field}", entry[field], min=1))
    params = _prefixed(f"{jname}: {at}.format", lambda: cls.parse_format(entry["format"]))
    n_in, n_out = entry["in_features"], entry["out_features"]
    shapes = _prefixed(f"{jname}: {at}", lambda: cls.shapes(params, n_in, n_out))
    shapes.update(multiplier=((n_out,), "out_features"), offset=((n_out,), "out_features"))
    keys = _prefixed(jname, lambda: _keys(f"{at}.arrays", entry["arrays"], tuple(shapes)))
    arrays = {}
    for role, (shape, axes) in shapes.items():
        key = keys[role]
        if not isinstance(key, str) or key not in stored:
            raise ValueError(f"{jname}: {at}.arrays.{role} must name an array of {WEIGHTS}, not {key!r}")
        if key in used:
            raise ValueError(f"{jname}: {at}.arrays.{role} must name an array no other field names, not {key!r}")
        used.add(key)
        if stored[key].shape != shape:
            raise ValueError(f"{nname}: {key!r} ({at}.arrays.{role}) must have shape {shape} ({axes}), "
                             f"not {stored[key].shape}")
        arrays[role] = stored[key]
    weights = _prefixed(f"{nname}: {at}", lambda: cls.build(params, {r: arrays[r] for r in cls.roles}, n_in, n_out))
    _prefixed(jname, lambda: weights.check_input(inp["bits"], inp["signed"], f"{at}.input"))
    return _prefixed(f"{nname}: {at}", lambda: Layer(
        weights, arrays["multiplier"], req["shift"], arrays["offset"], entry["relu"], inp["bits"], inp["signed"],
        out["bits"], out["signed"], out.get("scale"), rounding, narrow))


# -- random networks (tests, hardware tests) -----------------------------------------------------------------

def _divisor(scheme: str, rng: np.random.Generator) -> int:
    """What the layer's in_features must be a multiple of (N:M m or circulant k; 1 otherwise)."""
    if scheme == "nm":
        return int(rng.choice([2, 4, 8]))
    if scheme == "circulant":
        return int(rng.choice([4, 8]))
    return 1


def _random_weights(scheme: str, rng: np.random.Generator, n_in: int, n_out: int, bits: int, signed: bool,
                    m_or_k: int) -> _Weights:
    if scheme == "fixed":
        w_bits = int(rng.integers(2, 9))
        lo, hi = fixed.weight_range(w_bits)
        return FixedWeights(rng.integers(lo, hi + 1, (n_out, n_in)), w_bits)
    if scheme == "sp2":
        fmt = SP2Format(int(rng.integers(3, 7)))
        return SP2Weights(rng.integers(0, fmt.n_codes, (n_out, n_in)), fmt)
    if scheme == "msq":
        fmt, w_bits = SP2Format(int(rng.integers(3, 6))), int(rng.integers(2, 7))
        kinds = rng.random(n_out) < 0.5
        lo, hi = fixed.weight_range(w_bits)
        return MSQWeights(kinds, np.where(kinds[:, None], rng.integers(0, fmt.n_codes, (n_out, n_in)), 0),
                          np.where(kinds[:, None], 0, rng.integers(lo, hi + 1, (n_out, n_in))), fmt, w_bits)
    if scheme == "nm":
        fmt, w_bits = NMFormat(int(rng.integers(1, m_or_k)), m_or_k), int(rng.integers(2, 9))
        lo, hi = fixed.weight_range(w_bits)
        dense = rng.integers(lo, hi + 1, (n_out, n_in))
        keep = np.zeros((n_out, n_in // fmt.m, fmt.m), bool)
        order = np.argsort(rng.random(keep.shape), axis=-1)[..., :fmt.n]
        np.put_along_axis(keep, order, rng.random(order.shape) < 0.8, axis=-1)
        return NMWeights(*nm.pack(dense * keep.reshape(n_out, n_in), fmt), fmt, w_bits)
    if scheme == "circulant":
        fmt = CirculantFormat(block=m_or_k, act_bits=bits, act_signed=signed, w_bits=int(rng.integers(6, 11)),
                              tw_bits=int(rng.integers(8, 15)), guard_bits=int(rng.integers(0, 4)),
                              max_q=max(1, n_in // m_or_k))
        lo, hi = fmt.w_range
        spectra = rng.integers(lo, hi + 1, (-(-n_out // fmt.block), n_in // fmt.block, fmt.bins, 2))
        spectra[:, :, [0, -1], 1] = 0
        return CirculantWeights(spectra, fmt, n_out)
    # crossbar: one sign per fragment of rows_per_sub rows of a column
    rps = int(rng.integers(1, 9))
    cell_bits = int(rng.integers(1, 3))
    fmt = CrossbarFormat(rows=-(-n_in // rps) * rps, cols=int(rng.integers(1, n_out + 1)), rows_per_sub=rps,
                         act_bits=bits, w_bits=cell_bits * int(rng.integers(1, 4)), cell_bits=cell_bits)
    mags = rng.integers(0, fmt.w_max + 1, (fmt.rows, n_out))
    signs = np.repeat(rng.choice([-1, 1], (fmt.sub_arrays, n_out)), rps, axis=0)
    return CrossbarWeights((mags * signs)[:n_in], fmt)


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
        allowed = [s for s in pool if s != "crossbar" or not signed[i]] or ["crossbar"]
        scheme = str(rng.choice(allowed))
        if scheme == "crossbar":
            signed[i] = False
        plan.append(scheme)
    divisors = [_divisor(s, rng) for s in plan]
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
        w = _random_weights(scheme, rng, widths[i], widths[i + 1], bits[i], signed[i], divisors[i])
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
