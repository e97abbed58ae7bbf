"""Recurrent layer kinds: ``lstm`` and ``gru`` (one layer, exact integer semantics; ``docs/rnn.md``).

A layer takes a sequence ``x [T, F]`` (time steps ``T``, features ``F``; channels last: a sample is ``T`` rows of
``F`` integers, flattened in that order) and gives the last hidden state ``h_T [H]`` or, with
``return_sequences``, every hidden state ``[T, H]``. ``h_0 = 0`` and ``c_0 = 0``.

Weights: ``w [G*H, F]`` on the input and ``u [G*H, H]`` on the hidden state, each in any weight scheme
(:data:`sw.weights.SCHEMES`; ``u`` not ``crossbar``: the hidden state is signed and the crossbar takes unsigned
inputs), the gates stacked in torch's order (LSTM ``G = 4``: i, f, g, o; GRU ``G = 3``: r, z, n). Each gate's
``W`` and ``U`` are block-circulant with block ``k`` when the scheme is ``circulant`` and ``H`` is a multiple of
``k`` (C-LSTM, E-RNN). Every step::

    ax = w(x_t)                     exact integers, the scheme's golden model (input: in_bits, in_signed)
    ah = u(h_{t-1})                 exact integers, the scheme's golden model (input: out_bits, signed)

Formats: a table code is a signed ``tables.bits`` integer ``[lo, hi]``; a gate value (table output) has
``P = tables.frac`` fraction bits (sigmoid ``0 .. 2^P``, tanh ``-2^P .. 2^P``); the hidden state ``h`` is a
signed ``out_bits`` integer with ``out_frac`` fraction bits; the LSTM cell state ``c`` a signed ``cell.bits``
integer with ``cell.frac`` fraction bits. Two integer helpers, each defined once here:

    req(a, M, b)   = requantize(a, M, shift, b, rounding)           sw.requant: (a*M + b) / 2^shift rounded
    mul(a, b, s)   = (a*b + 2^(s-1)) >> s   (s >= 1);  a*b (s = 0)  every element-wise product, half up
    clip(v, L)     = min(max(v, lo_L), hi_L)
    Sg[z], Th[z]   = tables.sigmoid[z - lo], tables.tanh[z - lo]     the ROM tables, indexed by a code

**lstm** (rows of gate ``q``: ``q*H .. q*H + H - 1``)::

    z_q = clip(req(ax_q, Mx_q, ah_q * Mh_q + Bx_q + Bh_q), table)    q = i, f, g, o
    i, f, g, o = Sg[z_i], Sg[z_f], Th[z_g], Sg[z_o]
    c_t = clip(mul(f, c_{t-1}, P) + mul(i, g, 2P - C), cell)          C = cell.frac <= 2P
    h_t = clip(mul(o, Th[clip(req_c(c_t), table)], 2P - Q), out)      Q = out_frac <= 2P
    req_c(c) = requantize(c, cell.multiplier, cell.shift, 0, rounding)

**gru**::

    z_q = clip(req(ax_q, Mx_q, ah_q * Mh_q + Bx_q + Bh_q), table)    q = r, z
    r, z = Sg[z_r], Sg[z_z]
    hn  = clip(req(ah_n, Mh_n, Bh_n), table)                          U_n h + b_hn, as a table code
    n   = Th[clip(req(ax_n, Mx_n, Bx_n) + mul(r, hn, P), table)]
    h_t = clip(mul(2^P - z, n, 2P - Q) + mul(z, h_{t-1}, P), out)

(``req`` applies the layer's one ``shift`` and ``rounding``; every worst case is checked to fit int64 at
construction.) The tables are stored (ROM contents): :func:`activation_tables` builds the standard ones,
``round_half_up(2^P f(code * scale))``.

This module imports numpy only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from .circulant import CirculantFormat, export_spectra
from .intops import INT64_MAX, as_int_array, int_range
from .kinds import (GRAPH_FIELDS, LayerKind, ManifestReader, check_bits, check_graph_fields, check_scale,
                    graph_entry, register_kind, requant_arrays)
from .params import check_bool, check_choice, check_int
from .requant import REQUANT_BITS, ROUNDINGS, check_rounding, requantize
from .weights import SCHEMES, CirculantWeights, Weights, equal_arrays, manifest_keys, read_only

__all__ = ["ActivationTables", "CellFormat", "Recurrent", "LSTM", "GRU", "activation_tables", "mul", "random_recurrent",
           "MAX_TABLE_BITS", "MAX_FRAC"]

#: Widest table code (a table has ``2^bits`` entries).
MAX_TABLE_BITS = 16
#: Most fraction bits of a gate value (table output).
MAX_FRAC = 16


def mul(a: Any, b: Any, s: int) -> np.ndarray:
    """The one element-wise product of the recurrent kinds: ``a * b`` rounded half up by ``s`` bits,
    ``(a*b + 2^(s-1)) >> s`` (arithmetic shift), exact for ``s = 0``.

    >>> mul([3, -3, 5], [1, 1, 1], 1).tolist()     # 1.5, -1.5, 2.5
    [2, -1, 3]
    >>> mul([3], [-7], 0).tolist()
    [-21]
    """
    p = np.asarray(a, np.int64) * np.asarray(b, np.int64)
    return p if s == 0 else (p + (1 << (s - 1))) >> s


def _round_half_up(v: np.ndarray) -> np.ndarray:
    return np.floor(v + 0.5).astype(np.int64)


def activation_tables(bits: int, frac: int, scale: float) -> ActivationTables:
    """The standard tables: code ``z`` in ``[-2^(bits-1), 2^(bits-1) - 1]`` stands for the real ``z * scale``;
    ``sigmoid[z - lo] = floor(2^frac sigmoid(z scale) + 1/2)``, ``tanh[z - lo] = floor(2^frac tanh(z scale) + 1/2)``
    (float64; the stored tables, not this formula, define a layer).

    >>> t = activation_tables(4, 4, 0.5)
    >>> t.sigmoid.tolist()[:4], t.tanh.tolist()[-2:]
    ([0, 0, 1, 1], [16, 16])
    """
    check_int("Table bits", bits, min=2, max=MAX_TABLE_BITS)
    check_int("Table frac", frac, min=1, max=MAX_FRAC)
    check_scale("Table scale", scale)
    lo, hi = int_range(bits, True)
    real = np.arange(lo, hi + 1, dtype=np.float64) * scale
    sig = _round_half_up(2.0 ** frac / (1.0 + np.exp(-real)))
    th = _round_half_up(2.0 ** frac * np.tanh(real))
    return ActivationTables(sig, th, frac, float(scale))


@dataclasses.dataclass(frozen=True, eq=False)
class ActivationTables:
    """The sigmoid and tanh ROMs of a recurrent layer, indexed by a signed ``bits``-bit code minus its lowest.

    Members
    -------
    sigmoid : int64 [2^bits]
        Values ``0 .. 2^frac``.
    tanh : int64 [2^bits]
        Values ``-2^frac .. 2^frac``.
    frac : int
        Fraction bits of a gate value, 1 to 16 (``P``).
    scale : float or None
        Real value of one code (documentation; the integer layer does not use it).

    Raises
    ------
    TypeError, ValueError
        ``"Sigmoid table must have 2^bits entries (bits 2 to 16), not shape (5,)"``, ``"Tanh table must have the
        sigmoid table's 256 entries, not shape (128,)"``, ``"Sigmoid table must be integers from 0 to 4096, not
        5000 (at index (3,))"``.
    """

    sigmoid: np.ndarray
    tanh: np.ndarray
    frac: int
    scale: float | None = None

    def __post_init__(self):
        check_int("Table frac", self.frac, min=1, max=MAX_FRAC)
        check_scale("Table scale", self.scale)
        one = 1 << self.frac
        sig = as_int_array("Sigmoid table", self.sigmoid, 0, one)
        n = sig.shape[0] if sig.ndim == 1 else 0
        if sig.ndim != 1 or n < 4 or n > 1 << MAX_TABLE_BITS or n & (n - 1):
            raise ValueError(f"Sigmoid table must have 2^bits entries (bits 2 to {MAX_TABLE_BITS}), not shape "
                             f"{sig.shape}")
        th = as_int_array("Tanh table", self.tanh, -one, one)
        if th.shape != sig.shape:
            raise ValueError(f"Tanh table must have the sigmoid table's {n} entries, not shape {th.shape}")
        object.__setattr__(self, "sigmoid", read_only(sig))
        object.__setattr__(self, "tanh", read_only(th))

    @property
    def bits(self) -> int:
        """Width of a table code: ``log2`` of the entries."""
        return len(self.sigmoid).bit_length() - 1

    @property
    def code_range(self) -> tuple[int, int]:
        """Inclusive ``(lo, hi)`` of a table code (signed ``bits``)."""
        return int_range(self.bits, True)


@dataclasses.dataclass(frozen=True)
class CellFormat:
    """The LSTM cell state: a signed ``bits``-bit integer with ``frac`` fraction bits, and the requantisation
    ``requantize(c, multiplier, shift, 0)`` of ``c`` to a table code (for ``tanh(c)``).

    Raises
    ------
    TypeError, ValueError
        ``"Cell bits must be an integer from 2 to 32, not 40"``, ``"Cell multiplier must be an integer from 0 to
        2147483647, not -1"``.
    """

    bits: int
    frac: int
    multiplier: int
    shift: int

    def __post_init__(self):
        check_int("Cell bits", self.bits, min=2, max=32)
        check_int("Cell frac", self.frac, min=0, max=2 * MAX_FRAC)
        check_int("Cell multiplier", self.multiplier, min=0, max=(1 << REQUANT_BITS) - 1)
        check_int("Cell shift", self.shift, min=1, max=62)

    @property
    def range(self) -> tuple[int, int]:
        return int_range(self.bits, True)


def _check_frac(subject: str, value: Any, table_frac: int) -> None:
    """A fraction width of a product of two gate values: ``0 .. 2 * table_frac`` (every product shift >= 0)."""
    check_int(subject, value, min=0)
    if value > 2 * table_frac:
        raise ValueError(f"{subject} must be an integer from 0 to {2 * table_frac} (2 * table frac), not {value!r}")


def _check_weights(subject: str, role: str, weights: Any) -> None:
    if not isinstance(weights, tuple(SCHEMES.values())):
        names = ", ".join(cls.__name__ for cls in SCHEMES.values())
        raise TypeError(f"{subject} {role} must be one of {names}, not {weights!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class Recurrent(LayerKind):
    """What :class:`LSTM` and :class:`GRU` share (the module docstring gives the integer semantics).

    Members
    -------
    w : Weights ``[G*H, F]``
        Input weights, any scheme; the gates stacked in torch's order.
    u : Weights ``[G*H, H]``
        Recurrent weights, any scheme that takes signed inputs (not ``crossbar``).
    seq_len : int
        Time steps ``T``.
    multiplier_x, multiplier_h : int64 [G*H]
        Requantisation multipliers of ``ax`` and ``ah``, ``0 .. 2^31 - 1``.
    offset_x, offset_h : int64 [G*H]
        Biases in units of ``2^-shift`` table codes (``b_ih`` and ``b_hh``; only the GRU's n gate keeps them apart).
    shift : int
        1 to 62.
    tables : ActivationTables
    in_bits, in_signed : int, bool
        The input range.
    out_bits : int
        Width of the signed hidden state (the layer's output and ``u``'s input), 2 to 32.
    out_frac : int
        Its fraction bits, 0 to ``2 * tables.frac``.
    return_sequences : bool
        Output every hidden state ``[T, H]`` instead of the last ``[H]``.
    cell : CellFormat or None
        The LSTM's cell state (None for a GRU).
    rounding : str
        The requantisations' rounding (:data:`sw.requant.ROUNDINGS`); products always round half up (:func:`mul`).

    Raises
    ------
    TypeError, ValueError
        ``"Lstm w must have 4 * hidden rows (the gates i, f, g, o), not 10"``, ``"Lstm u must be [4 * 3, 3]
        (gates x hidden, hidden), not (12, 4)"``, ``"Lstm u must take the signed hidden state (any scheme but
        crossbar), not 'crossbar'"``, ``"Lstm output frac must be an integer from 0 to 24 (2 * table frac), not
        30"``, ``"Lstm requantisation must fit int64 (at most 2^63 - 1), not ... = 2^64.0"``.
    """

    w: Weights
    u: Weights
    seq_len: int
    multiplier_x: np.ndarray
    multiplier_h: np.ndarray
    offset_x: np.ndarray
    offset_h: np.ndarray
    shift: int
    tables: ActivationTables
    in_bits: int
    in_signed: bool
    out_bits: int
    out_frac: int
    return_sequences: bool = False
    cell: CellFormat | None = None
    rounding: str = "half_up"
    name: str | None = None
    inputs: tuple[str, ...] | None = None

    kind: ClassVar[str]
    gates: ClassVar[tuple[str, ...]]

    # -- construction ----------------------------------------------------------------------------------------
    def _init(self) -> None:
        subject = self.subject
        _, inputs = check_graph_fields(subject, self.name, self.inputs, self.arity)
        object.__setattr__(self, "inputs", inputs)
        _check_weights(subject, "w", self.w)
        _check_weights(subject, "u", self.u)
        if not isinstance(self.tables, ActivationTables):
            raise TypeError(f"{subject} tables must be ActivationTables, not {self.tables!r}")
        g = len(self.gates)
        rows = self.w.out_features
        if rows % g:
            raise ValueError(f"{subject} w must have {g} * hidden rows (the gates {', '.join(self.gates)}), "
                             f"not {rows}")
        hidden = rows // g
        if (self.u.out_features, self.u.in_features) != (rows, hidden):
            raise ValueError(f"{subject} u must be [{g} * {hidden}, {hidden}] (gates x hidden, hidden), not "
                             f"{(self.u.out_features, self.u.in_features)}")
        if self.u.scheme == "crossbar":
            raise ValueError(f"{subject} u must take the signed hidden state (any scheme but crossbar), not "
                             f"'crossbar'")
        check_int(f"{subject} seq_len", self.seq_len, min=1)
        check_int(f"{subject} requantisation shift", self.shift, min=1, max=62)
        check_rounding(f"{subject} rounding", self.rounding)
        check_bits(f"{subject} input bits", self.in_bits)
        check_bool(f"{subject} input signed", self.in_signed)
        check_int(f"{subject} output bits", self.out_bits, min=2, max=32)
        _check_frac(f"{subject} output frac", self.out_frac, self.tables.frac)
        check_bool(f"{subject} return_sequences", self.return_sequences)
        self.w.check_input(self.in_bits, self.in_signed, f"{subject} input")
        self.u.check_input(self.out_bits, True, f"{subject} hidden state")
        m_x, b_x = requant_arrays(self.multiplier_x, self.offset_x, rows)
        m_h, b_h = requant_arrays(self.multiplier_h, self.offset_h, rows)
        for name, arr in (("multiplier_x", m_x), ("offset_x", b_x), ("multiplier_h", m_h), ("offset_h", b_h)):
            object.__setattr__(self, name, arr)
        self._check_fits()

    def _check_fits(self) -> None:
        lo, hi = self.in_range
        wx = self.w.acc_bound(max(-lo, hi))
        wh = self.u.acc_bound(1 << (self.out_bits - 1))
        worst = (wx * int(self.multiplier_x.max()) + wh * int(self.multiplier_h.max()) +
                 int(np.abs(self.offset_x).max()) + int(np.abs(self.offset_h).max()) + (1 << (self.shift - 1)))
        if worst > INT64_MAX:
            raise ValueError(f"{self.subject} requantisation must fit int64 (at most 2^63 - 1), not acc bounds "
                             f"{wx} * {int(self.multiplier_x.max())} + {wh} * {int(self.multiplier_h.max())} + "
                             f"offsets = 2^{math.log2(worst):.1f}")

    @property
    def subject(self) -> str:
        return self.kind.capitalize()

    # -- shapes and ranges -----------------------------------------------------------------------------------
    @property
    def hidden(self) -> int:
        return self.w.out_features // len(self.gates)

    @property
    def in_features(self) -> int:
        return self.w.in_features

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.seq_len, self.in_features)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.seq_len, self.hidden) if self.return_sequences else (self.hidden,)

    out_signed = True

    @property
    def out_range(self) -> tuple[int, int]:
        return int_range(self.out_bits, True)

    @property
    def out_scale(self) -> float:
        """Real value of one hidden-state LSB, ``2^-out_frac``."""
        return 2.0 ** -self.out_frac

    @property
    def scheme(self) -> str:
        """The input weights' scheme (``u``'s may differ: :attr:`u`)."""
        return self.w.scheme

    # -- the golden model ------------------------------------------------------------------------------------
    def _req(self, acc: np.ndarray, multiplier: np.ndarray, offset: np.ndarray) -> np.ndarray:
        return requantize(acc, multiplier, self.shift, offset, rounding=self.rounding)

    def _table(self, z: np.ndarray) -> np.ndarray:
        lo, hi = self.tables.code_range
        return np.clip(z, lo, hi)

    def forward(self, x: Any) -> np.ndarray:
        """int64 ``[N, H]`` (or ``[N, T, H]`` with ``return_sequences``): the hidden states of inputs
        ``x [N, T, F]`` (or ``[N, T * F]``).

        Raises
        ------
        TypeError, ValueError
            ``"Lstm input must be integers from -128 to 127, not 300 (at index (0, 3, 1))"``,
            ``"Lstm input must have shape (N, 5, 3) or (N, 15), not (2, 4, 3)"``.
        """
        states = self._run(x, None)
        return states if self.return_sequences else states[:, -1]

    def trace(self, x: Any) -> dict[str, np.ndarray]:
        """Every intermediate of :meth:`forward`, int64 ``[N, T, ...]`` by name, to find the first step and value
        where an implementation differs: ``ax``, ``ah`` (accumulators, ``[G*H]``), ``z`` (the clipped gate codes of
        the rows requantised together: LSTM all ``4H``, GRU r and z ``2H``), the gate values (LSTM ``i``, ``f``,
        ``g``, ``o``; GRU ``r``, ``zg``), LSTM ``c`` and ``zc`` (the cell's table code), GRU ``hn``, ``zn`` (the n
        gate's code) and ``n``, and ``h``."""
        record: dict[str, list[np.ndarray]] = {}
        self._run(x, record)
        return {name: np.stack(values, axis=1) for name, values in record.items()}

    def _run(self, x: Any, record: dict[str, list[np.ndarray]] | None) -> np.ndarray:
        arr = as_int_array(f"{self.subject} input", x, *self.in_range)
        t, f, h = self.seq_len, self.in_features, self.hidden
        if arr.ndim < 2 or arr.shape[1:] not in ((t, f), (t * f,)):
            raise ValueError(f"{self.subject} input must have shape (N, {t}, {f}) or (N, {t * f}), not {arr.shape}")
        n = len(arr)
        states = np.zeros((n, t, h), np.int64)
        if n:
            ax = self.w.accumulate(arr.reshape(n * t, f), self.in_bits, self.in_signed).reshape(n, t, -1)
            state = self._initial(n)
            for step in range(t):
                ah = self.u.accumulate(state[0], self.out_bits, True)
                values = None if record is None else {"ax": ax[:, step], "ah": ah}
                state = self._step(ax[:, step], ah, state, values)
                states[:, step] = state[0]
                if record is not None:
                    for name, value in {**values, "h": state[0]}.items():
                        record.setdefault(name, []).append(value)
        return states

    def _initial(self, n: int) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def _step(self, ax: np.ndarray, ah: np.ndarray, state: tuple[np.ndarray, ...],
              record: dict[str, np.ndarray] | None) -> tuple[np.ndarray, ...]:
        """The next state of the current one, given the step's accumulators (``record``: filled with the
        intermediates :meth:`trace` names)."""
        raise NotImplementedError

    # -- the manifest ----------------------------------------------------------------------------------------
    def manifest(self, index: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {**{f"w.{r}": a for r, a in self.w.arrays().items()},
                  **{f"u.{r}": a for r, a in self.u.arrays().items()},
                  "multiplier_x": self.multiplier_x, "multiplier_h": self.multiplier_h,
                  "offset_x": self.offset_x, "offset_h": self.offset_h,
                  "sigmoid": self.tables.sigmoid, "tanh": self.tables.tanh}
        keys = {role: f"layers.{index}.{role}" for role in arrays}
        requant = {"shift": self.shift}
        if self.rounding != ROUNDINGS[0]:
            requant["rounding"] = self.rounding
        entry = {"seq_len": self.seq_len, "in_features": self.in_features, "hidden": self.hidden,
                 "return_sequences": self.return_sequences,
                 "input": {"bits": self.in_bits, "signed": self.in_signed},
                 "w": {"scheme": self.w.scheme, "format": self.w.format_dict()},
                 "u": {"scheme": self.u.scheme, "format": self.u.format_dict()},
                 "requant": requant,
                 "tables": {"bits": self.tables.bits, "frac": self.tables.frac, "scale": self.tables.scale},
                 **self._cell_entry(),
                 "output": {"bits": self.out_bits, "signed": True, "frac": self.out_frac},
                 "arrays": keys}
        return self._graph_fields(entry), {keys[role]: arr for role, arr in arrays.items()}

    def _cell_entry(self) -> dict[str, Any]:
        return {}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        (a, arrays_a), (b, arrays_b) = self.manifest(0), other.manifest(0)
        return a == b and equal_arrays(arrays_a, arrays_b)

    __hash__ = None

    _cell_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_manifest(cls, entry: Mapping, reader: ManifestReader, at: str) -> Recurrent:
        entry = reader.field(lambda: manifest_keys(at, entry, (
            "seq_len", "in_features", "hidden", "return_sequences", "input", "w", "u", "requant", "tables",
            *cls._cell_fields, "output", "arrays"), GRAPH_FIELDS))
        for field in ("seq_len", "in_features", "hidden"):
            reader.field(lambda: check_int(f"{at}.{field}", entry[field], min=1))
        reader.field(lambda: check_bool(f"{at}.return_sequences", entry["return_sequences"]))
        inp = reader.field(lambda: manifest_keys(f"{at}.input", entry["input"], ("bits", "signed")))
        reader.field(lambda: check_bits(f"{at}.input.bits", inp["bits"]))
        reader.field(lambda: check_bool(f"{at}.input.signed", inp["signed"]))
        out = reader.field(lambda: manifest_keys(f"{at}.output", entry["output"], ("bits", "signed", "frac")))
        if out["signed"] is not True:
            raise ValueError(f"{reader.jname}: {at}.output.signed must be true (the hidden state is signed), "
                             f"not {out['signed']!r}")
        reader.field(lambda: check_int(f"{at}.output.bits", out["bits"], min=2, max=32))
        req = reader.field(lambda: manifest_keys(f"{at}.requant", entry["requant"], ("shift",), ("rounding",)))
        rounding = req.get("rounding", ROUNDINGS[0])
        reader.field(lambda: check_rounding(f"{at}.requant.rounding", rounding))
        reader.field(lambda: check_int(f"{at}.requant.shift", req["shift"], min=1, max=62))
        tab = reader.field(lambda: manifest_keys(f"{at}.tables", entry["tables"], ("bits", "frac", "scale")))
        reader.field(lambda: check_int(f"{at}.tables.bits", tab["bits"], min=2, max=MAX_TABLE_BITS))
        reader.field(lambda: check_int(f"{at}.tables.frac", tab["frac"], min=1, max=MAX_FRAC))
        reader.field(lambda: check_scale(f"{at}.tables.scale", tab["scale"]))
        reader.field(lambda: _check_frac(f"{at}.output.frac", out["frac"], tab["frac"]))
        n_in, hidden, g = entry["in_features"], entry["hidden"], len(cls.gates)
        shapes: dict[str, tuple[tuple[int, ...], str]] = {}
        parsed = {}
        for role, cols in (("w", n_in), ("u", hidden)):
            part = reader.field(lambda: manifest_keys(f"{at}.{role}", entry[role], ("scheme", "format")))
            reader.field(lambda: check_choice(f"{at}.{role}.scheme", part["scheme"], SCHEMES))
            scheme = SCHEMES[part["scheme"]]
            params = reader.check(f"{at}.{role}.format", lambda: scheme.parse_format(part["format"]))
            for r, shape in reader.check(f"{at}.{role}", lambda: scheme.shapes(params, cols, g * hidden)).items():
                shapes[f"{role}.{r}"] = shape
            parsed[role] = (scheme, params, cols)
        rows = ((g * hidden,), f"{g} gates x hidden")
        table = ((1 << tab["bits"],), "2^tables.bits")
        shapes.update(multiplier_x=rows, multiplier_h=rows, offset_x=rows, offset_h=rows, sigmoid=table, tanh=table)
        keys = reader.field(lambda: manifest_keys(f"{at}.arrays", entry["arrays"], tuple(shapes)))
        arrays = reader.arrays(at, keys, shapes)
        weights = {role: reader.build(f"{at}.{role}", lambda: scheme.build(
            params, {r: arrays[f"{role}.{r}"] for r in scheme.roles}, cols, g * hidden))
            for role, (scheme, params, cols) in parsed.items()}
        tables = reader.build(f"{at}.tables", lambda: ActivationTables(arrays["sigmoid"], arrays["tanh"], tab["frac"],
                                                                       tab["scale"]))
        extra = cls._load_cell(entry, reader, at)
        graph = graph_entry(reader, entry, at, cls.arity)
        return reader.build(at, lambda: cls(
            weights["w"], weights["u"], entry["seq_len"], arrays["multiplier_x"], arrays["multiplier_h"],
            arrays["offset_x"], arrays["offset_h"], req["shift"], tables, inp["bits"], inp["signed"], out["bits"],
            out["frac"], entry["return_sequences"], rounding=rounding, **extra, **graph))

    @classmethod
    def _load_cell(cls, entry: Mapping, reader: ManifestReader, at: str) -> dict[str, Any]:
        return {}


@register_kind
@dataclasses.dataclass(frozen=True, eq=False)
class LSTM(Recurrent):
    """``lstm``: gates i, f, g, o; a cell state (:class:`CellFormat`, ``cell.frac <= 2 * tables.frac``). See
    :class:`Recurrent` for the members and the module docstring for the step.

    Raises
    ------
    TypeError, ValueError
        ``"Lstm cell must be a CellFormat, not None"``, ``"Lstm cell frac must be an integer from 0 to 24 (2 *
        table frac), not 30"``, and those of :class:`Recurrent`.
    """

    kind: ClassVar[str] = "lstm"
    gates: ClassVar[tuple[str, ...]] = ("i", "f", "g", "o")
    _cell_fields: ClassVar[tuple[str, ...]] = ("cell",)

    def __post_init__(self):
        self._init()
        if not isinstance(self.cell, CellFormat):
            raise TypeError(f"Lstm cell must be a CellFormat, not {self.cell!r}")
        _check_frac("Lstm cell frac", self.cell.frac, self.tables.frac)

    def _initial(self, n):
        h = self.hidden
        return np.zeros((n, h), np.int64), np.zeros((n, h), np.int64)

    def _step(self, ax, ah, state, record):
        _, c = state
        p, hid = self.tables.frac, self.hidden
        lo = self.tables.code_range[0]
        z = self._table(self._req(ax, self.multiplier_x, ah * self.multiplier_h + self.offset_x + self.offset_h))
        sig, th = self.tables.sigmoid, self.tables.tanh
        i, f, g, o = (z[:, q * hid:(q + 1) * hid] - lo for q in range(4))
        i, f, g, o = sig[i], sig[f], th[g], sig[o]
        c = np.clip(mul(f, c, p) + mul(i, g, 2 * p - self.cell.frac), *self.cell.range)
        zc = self._table(requantize(c, self.cell.multiplier, self.cell.shift, 0, rounding=self.rounding))
        h = np.clip(mul(o, th[zc - lo], 2 * p - self.out_frac), *self.out_range)
        if record is not None:
            record.update(z=z, i=i, f=f, g=g, o=o, c=c, zc=zc)
        return h, c

    def _cell_entry(self):
        return {"cell": dataclasses.asdict(self.cell)}

    @classmethod
    def _load_cell(cls, entry, reader, at):
        cell = reader.field(lambda: manifest_keys(f"{at}.cell", entry["cell"], ("bits", "frac", "multiplier",
                                                                               "shift")))
        made = reader.check(f"{at}.cell", lambda: CellFormat(**cell))
        reader.field(lambda: _check_frac(f"{at}.cell.frac", made.frac, entry["tables"]["frac"]))
        return {"cell": made}


@register_kind
@dataclasses.dataclass(frozen=True, eq=False)
class GRU(Recurrent):
    """``gru``: gates r, z, n (torch's GRU: ``n = tanh(W_n x + b_in + r * (U_n h + b_hn))``). See
    :class:`Recurrent` for the members and the module docstring for the step.

    Raises
    ------
    TypeError, ValueError
        ``"Gru cell must be None (a GRU has no cell state), not CellFormat(...)"``, and those of
        :class:`Recurrent`.
    """

    kind: ClassVar[str] = "gru"
    gates: ClassVar[tuple[str, ...]] = ("r", "z", "n")

    def __post_init__(self):
        self._init()
        if self.cell is not None:
            raise TypeError(f"Gru cell must be None (a GRU has no cell state), not {self.cell!r}")

    def _initial(self, n):
        return (np.zeros((n, self.hidden), np.int64),)

    def _step(self, ax, ah, state, record):
        (h,) = state
        p, hid = self.tables.frac, self.hidden
        lo = self.tables.code_range[0]
        sig, th = self.tables.sigmoid, self.tables.tanh
        rz = slice(0, 2 * hid)
        nn_ = slice(2 * hid, 3 * hid)
        z = self._table(self._req(ax[:, rz], self.multiplier_x[rz],
                                  ah[:, rz] * self.multiplier_h[rz] + self.offset_x[rz] + self.offset_h[rz]))
        r, zg = sig[z[:, :hid] - lo], sig[z[:, hid:] - lo]
        hn = self._table(self._req(ah[:, nn_], self.multiplier_h[nn_], self.offset_h[nn_]))
        zn = self._table(self._req(ax[:, nn_], self.multiplier_x[nn_], self.offset_x[nn_]) + mul(r, hn, p))
        n = th[zn - lo]
        h = np.clip(mul((1 << p) - zg, n, 2 * p - self.out_frac) + mul(zg, h, p), *self.out_range)
        if record is not None:
            record.update(z=z, r=r, zg=zg, hn=hn, zn=zn, n=n)
        return (h,)


# -- random layers (tests, hardware tests) -------------------------------------------------------------------------

def _fit_shift(real: np.ndarray, worst_of) -> int:
    """The largest shift (1 to 62) whose multipliers ``rint(real 2^shift)`` stay below ``2^31`` and whose worst case
    ``worst_of(shift)`` fits int64."""
    top = float(np.max(real, initial=0.0))
    shift = 62 if top <= 0 else int(np.clip(REQUANT_BITS - 1 - math.floor(math.log2(top)), 1, 62))
    while shift > 1 and worst_of(shift) > INT64_MAX:
        shift -= 1
    return shift


def _random_weights(rng, scheme, n_in, n_out, bits, signed, unit, circ):
    if scheme != "circulant" or circ is None:
        return SCHEMES[scheme].random(rng, n_in, n_out, bits, signed, unit)
    fmt = CirculantFormat(**{**circ, "block": unit, "act_bits": bits, "act_signed": signed, "max_q": n_in // unit})
    spectra, _ = export_spectra(rng.normal(size=(-(-n_out // unit), n_in // unit, unit)), fmt)
    return CirculantWeights(spectra, fmt, n_out)


def random_recurrent(rng: np.random.Generator, kind: str, seq_len: int, in_features: int, hidden: int, in_bits: int,
                     in_signed: bool, *, scheme_w: str, scheme_u: str, unit_w: int = 1, unit_u: int = 1,
                     return_sequences: bool = False, rounding: str = "half_up", samples: int = 32,
                     formats: Mapping[str, Any] | None = None) -> Recurrent:
    """A random valid ``lstm`` / ``gru`` layer, for tests: random weights of the two schemes (``in_features`` a
    multiple of ``unit_w``, ``hidden`` of ``unit_u``: N:M ``m``, circulant ``k``), random table width (3 to 10
    bits), gate fraction (2 to 12), table scale (codes covering +-2 to +-10), hidden width and fraction, cell
    format; multipliers calibrated on ``samples`` random inputs and hidden states so the pre-activations spread
    over the table (some beyond it: clipping is exercised), random biases. ``formats`` fixes any of
    ``table_bits``, ``frac``, ``scale``, ``out_bits``, ``out_frac``, ``cell_bits``, ``cell_frac`` instead, ``gain``
    scales the recurrent multipliers (default 1; below 1 a less chaotic recurrence) and ``circulant`` (a dict of
    :class:`sw.circulant.CirculantFormat` fields) makes circulant weights of that format from random columns."""
    cls = {"lstm": LSTM, "gru": GRU}[kind]
    g = len(cls.gates)
    rows = g * hidden
    fixed = dict(formats or {})
    t_bits = fixed.pop("table_bits", None) or int(rng.integers(3, 11))
    frac = fixed.pop("frac", None) or int(rng.integers(2, 13))
    scale = fixed.pop("scale", None) or float(rng.uniform(2, 10)) / (1 << (t_bits - 1))
    tables = activation_tables(t_bits, frac, scale)
    code_hi = tables.code_range[1]
    out_bits = fixed.pop("out_bits", None) or int(rng.integers(2, 13))
    out_frac = fixed.pop("out_frac", None)
    out_frac = int(np.clip(out_bits - 1 - rng.integers(0, 3), 0, 2 * frac)) if out_frac is None else out_frac
    c_bits, c_frac = fixed.pop("cell_bits", None), fixed.pop("cell_frac", None)
    gain, circ = fixed.pop("gain", 1.0), fixed.pop("circulant", None)
    if fixed:
        raise ValueError(f"Formats must be among table_bits, frac, scale, out_bits, out_frac, cell_bits, cell_frac, "
                         f"gain, circulant, not {next(iter(fixed))!r}")
    w = _random_weights(rng, scheme_w, in_features, rows, in_bits, in_signed, unit_w, circ)
    u = _random_weights(rng, scheme_u, hidden, rows, out_bits, True, unit_u, circ)
    x = rng.integers(*int_range(in_bits, in_signed), size=(samples, in_features), endpoint=True)
    one = 1 << out_frac
    h = np.clip(rng.integers(-one, one, size=(samples, hidden), endpoint=True), *int_range(out_bits, True))
    spread = [np.maximum(weights.accumulate(v, bits, signed).astype(np.float64).std(axis=0), 0.5)
              for weights, v, bits, signed in ((w, x, in_bits, in_signed), (u, h, out_bits, True))]
    mx, mh = (code_hi * rng.uniform(0.3, 1.5, rows) / (2 * s) for s in spread)
    mh = mh * gain
    bx, bh = (code_hi * rng.uniform(-0.3, 0.3, rows) for _ in range(2))
    lo, hi = int_range(in_bits, in_signed)
    wx, wh = w.acc_bound(max(-lo, hi)), u.acc_bound(1 << (out_bits - 1))

    def ints(real, shift):
        return np.clip(np.rint(real * 2.0 ** shift), 0, (1 << REQUANT_BITS) - 1).astype(np.int64)

    def offsets(real, shift):
        return np.clip(np.rint(real * 2.0 ** shift), -(1 << 61), 1 << 61).astype(np.int64)

    def worst(shift):
        return (wx * int(ints(mx, shift).max()) + wh * int(ints(mh, shift).max()) + 2 * (1 << 61 if shift > 59 else
                int(np.abs(offsets(np.concatenate([bx, bh]), shift)).max())) + (1 << (shift - 1)))
    shift = _fit_shift(np.concatenate([mx, mh]), worst)
    cell = None
    if kind == "lstm":
        c_bits = c_bits or int(rng.integers(4, 25))
        c_frac = int(rng.integers(0, min(2 * frac, c_bits - 2) + 1)) if c_frac is None else c_frac
        real = 2.0 ** -c_frac / scale
        c_shift = _fit_shift(np.array([real]), lambda s: 0)
        cell = CellFormat(c_bits, c_frac, int(ints(np.array([real]), c_shift)[0]), c_shift)
    return cls(w, u, seq_len, ints(mx, shift), ints(mh, shift), offsets(bx, shift), offsets(bh, shift), shift, tables,
               in_bits, in_signed, out_bits, out_frac, return_sequences, cell, rounding)
