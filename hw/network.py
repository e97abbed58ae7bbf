"""Whole-network accelerators: one engine per layer of a :class:`sw.network.Network`, chained by streams.

Every layer becomes an :class:`Engine`: the layer's PE(s), their weights in on-chip memories initialised from
the network, a double-buffered input buffer (each input vector is read from the stream once), a sequencer over
the output rows, and a requantisation + clipping unit (:class:`Requantizer`) whose integer arithmetic is
:mod:`sw.requant`'s. The :class:`Accelerator` chains the engines between an input stream of features and an
output stream of logits with their argmax (``docs/network.md``)::

    i (one feature per beat, last per sample) -> index -> Engine 0 -> Engine 1 -> ... -> logits + argmax -> o

The scheme of a layer only decides which PE a *slot* holds and how a slot's beat is packed; everything else
(buffers, sequencing, collection, requantisation) is written once, here. One slot is one PE instance:

========== ============================== ============================ ===============================
scheme     slot PE                        one beat carries             a slot's result per row group
========== ============================== ============================ ===============================
fixed      ``fixed-mac`` (``lanes``)      ``lanes`` inputs + weights   1 output row
sp2        ``sp2-mac`` (``lanes``)        ``lanes`` inputs + codes     1 output row
msq        ``sp2-mac`` or ``fixed-mac``   ``lanes`` inputs + weights   1 row of that slot's kind
nm         ``nm-sparse`` (``lanes / M``   ``lanes`` inputs + N of M    1 output row
           groups)                        values and indices per group
circulant  ``circulant-fft``              one block (k inputs) + the   k outputs (one block row)
                                          spectra of block (i, j)
crossbar   ``crossbar`` (controller +     every input (rows)           ``cols`` outputs (one tile; the
           ideal-array emulator)                                       tile's cells load after reset)
========== ============================== ============================ ===============================

Timing of an engine, per input vector (predicted by :class:`EnginePlan`, measured by the testbench): the
buffer takes one element per cycle (``in_features`` cycles); the sequencer issues ``groups x beats`` beats
(times the PE's interval); the collector hands ``groups x slots x width`` results to the requantiser, one per
cycle. The three overlap (two input banks, the PEs' output registers, the collector's register), so an
engine's interval is the largest of the three, and the network's the largest over its engines.

Inside an engine the sequencer offers a beat to every slot in the same cycle and only when all of them are
ready (``valid = staged & all ready``), so the slots stay in lock step. That ``valid`` depends on the slots'
``ready``, which the project's stream rule forbids between components; here each slot's ``ready`` is a
function of that slot's registers only (its output register and state), never of this ``valid``, so no loop
forms. Every stream an engine or the accelerator exposes follows the rule.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.hdl import Shape
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from peforge.sw import network as net
from peforge.sw.intops import int_range, signed_bits_for
from peforge.sw.params import Params, check_int

from .circulant_fft import CirculantFFT, CirculantParams
from .common import equals
from .crossbar import CrossbarParams, CrossbarSystem
from .fixed_mac import FixedMac, FixedMacParams
from .nm_sparse import NMSparse, NMSparseParams
from .sp2_mac import SP2Mac, SP2MacParams

__all__ = ["LayerFolding", "Folding", "EnginePlan", "plan_engine", "plan_network", "default_folding", "folding_at",
           "slowest_interval", "element_layout", "Budget", "Requantizer", "Engine", "Accelerator", "CompiledNetwork",
           "load_compiled", "SCHEME_PES", "folding_text"]

#: The PE each scheme's slots hold (msq slots hold either).
SCHEME_PES = {"fixed": ("fixed-mac",), "sp2": ("sp2-mac",), "msq": ("sp2-mac", "fixed-mac"), "nm": ("nm-sparse",),
              "circulant": ("circulant-fft",), "crossbar": ("crossbar",)}
#: Default folding search: the largest ``lanes`` and ``lanes * pes`` (multipliers) of one layer.
DEFAULT_MAX_LANES = 16
DEFAULT_MAX_MULTIPLIERS = 32
#: The slowest requantiser: cycles per result (:class:`Requantizer`).
MAX_REQUANT_CYCLES = 64


# -- folding ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerFolding(Params):
    """How one layer is folded onto hardware.

    ``lanes`` is the input parallelism: input elements per beat (fixed, sp2, msq: the PE's lanes; nm: a
    multiple of M, ``lanes / M`` groups; circulant: the block size k; crossbar: the crossbar's rows).
    ``pes`` is the output parallelism: PE slots working on different output rows (circulant: block rows;
    crossbar: one slot per tile of ``cols`` outputs, so it is the number of tiles).
    """

    lanes: int = field(default=1, metadata={"doc": "input elements per beat"})
    pes: int = field(default=1, metadata={"doc": "PE slots, output rows computed in parallel"})
    requant: int = field(default=1, metadata={
        "doc": "cycles per requantised result (1: one multiplier; more: shifts and adds in LUTs)"})

    def __post_init__(self):
        check_int("Lanes", self.lanes, min=1, max=4096)
        check_int("PEs (pes)", self.pes, min=1, max=1024)
        check_int("Requantiser cycles (requant)", self.requant, min=1, max=MAX_REQUANT_CYCLES)

    def text(self) -> str:
        """``"16x2"`` (lanes x pes), ``"1x7/r9"`` with a serial requantiser: how every table names a folding."""
        return f"{self.lanes}x{self.pes}" + (f"/r{self.requant}" if self.requant > 1 else "")


@dataclass(frozen=True)
class Folding:
    """The folding of every layer, in order: ``Folding((LayerFolding(16, 2), LayerFolding(2, 3)))``."""

    layers: tuple[LayerFolding, ...]

    def __post_init__(self):
        if not isinstance(self.layers, tuple) or not all(isinstance(f, LayerFolding) for f in self.layers):
            raise TypeError(f"Folding layers must be a tuple of LayerFolding, not {self.layers!r}")

    def to_list(self) -> list[dict]:
        return [f.to_dict() for f in self.layers]

    def text(self) -> str:
        """``"16x2, 8x1"``: every layer's :meth:`LayerFolding.text`, the one way reports write a folding."""
        return ", ".join(f.text() for f in self.layers)

    @classmethod
    def from_list(cls, items) -> Folding:
        if not isinstance(items, list):
            raise TypeError(f"Folding must be a list of {{lanes, pes}} objects, not {items!r}")
        return cls(tuple(LayerFolding.from_dict(item) for item in items))


# -- plans: everything derived from a layer and its folding, in one place ----------------------------------

def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True, eq=False)
class Slot:
    """One PE instance of an engine: its registry name, its Params, and the output row of each of its result
    lanes in every row group (``rows[g][e]``, -1 for padding)."""

    pe: str
    params: object
    rows: tuple[tuple[int, ...], ...]
    kind: str = ""  # msq: "sp2" or "fixed"


@dataclass(frozen=True, eq=False)
class EnginePlan:
    """A layer's engine, derived once from the layer and its folding (:func:`plan_engine`).

    Members
    -------
    layer : sw.network.Layer
    folding : LayerFolding
        As given (circulant and crossbar: with their fixed ``lanes`` / ``pes`` filled in).
    lanes : int
        Input elements per word of the input buffer (one beat of every slot).
    beats : int
        Beats per row group: ``ceil(in_features / lanes)`` (circulant: q blocks).
    groups : int
        Row groups the sequencer walks per input vector.
    width : int
        Results per slot per row group (1; circulant k; crossbar cols).
    slots : tuple of Slot
    interval : int
        Cycles between beats a slot accepts (its PE's initiation interval; crossbar: a vector's cycles at
        most, every plane of every sub-array read).
    """

    layer: object
    folding: LayerFolding
    lanes: int
    beats: int
    groups: int
    width: int
    slots: tuple[Slot, ...]
    interval: int

    @property
    def scheme(self) -> str:
        return self.layer.scheme

    @property
    def multipliers(self) -> int:
        """Multiplier lanes of the engine's PEs (dot schemes: lanes per slot x slots)."""
        return sum(getattr(s.params, "lanes", 0) for s in self.slots)

    @property
    def load_cycles(self) -> int:
        return self.layer.in_features

    @property
    def compute_cycles(self) -> int:
        """Beats the sequencer issues per input vector (times the slots' interval)."""
        return self.groups * self.beats * self.interval

    @property
    def drain_cycles(self) -> int:
        """Cycles the collector takes per input vector to hand its results to the requantiser, which takes
        one every ``folding.requant`` cycles."""
        return self.groups * len(self.slots) * self.width * self.folding.requant

    @property
    def cycles(self) -> int:
        """Predicted cycles per input vector in steady state: loading the buffer, or per row group the longer
        of issuing its beats and draining the previous group's results, whichever is slowest."""
        per_group = max(self.beats * self.interval, len(self.slots) * self.width * self.folding.requant)
        return max(self.load_cycles, self.groups * per_group)

    @property
    def acc_shape(self) -> Shape:
        """The accumulators the collector holds and the requantiser takes: the widest slot result, signed."""
        widths = []
        for s in self.slots:
            shape = s.params.output_layout["y"].shape
            elem = shape.elem_shape if isinstance(shape, data.ArrayLayout) else shape
            widths.append(Shape.cast(elem).width)
        return signed(max(widths))

    def dsps(self, dsp_bits: int) -> int:
        """Predicted DSP multipliers of ``dsp_bits``-bit operands: one per multiplier lane of the fixed-point
        and N:M slots (more if a product is wider), and the requantiser's ``acc x M`` when ``requant`` is 1.
        SP2 slots shift; circulant and crossbar slots are not counted. Synthesis measures the real number."""
        def pieces(a_bits, b_bits):
            return _ceil_div(a_bits, dsp_bits) * _ceil_div(b_bits, dsp_bits)

        act = self.layer.in_bits + (0 if self.layer.in_signed else 1)
        total = 0
        for s in self.slots:
            if s.pe in ("fixed-mac", "nm-sparse"):
                total += getattr(s.params, "lanes", 0) * pieces(act, s.params.w_bits)
        if self.folding.requant == 1:
            m_bits = max(1, int(self.layer.multiplier.max()).bit_length()) + 1
            total += pieces(self.acc_shape.width, m_bits)
        return total

    @property
    def weight_bits(self) -> int:
        """Bits of the engine's weight memories (one word per row group and beat per slot; crossbar cells
        sit in the arrays, not counted)."""
        if self.scheme == "crossbar":
            return 0
        total = 0
        for slot in self.slots:
            layout = slot.params.input_layout
            total += self.groups * self.beats * sum(layout[f].shape.size if isinstance(layout[f].shape, data.Layout)
                                                    else Shape.cast(layout[f].shape).width
                                                    for f in _weight_fields(self.scheme, slot))
        return total

    @property
    def macs(self) -> int:
        """Multiply-accumulates per input vector that the PEs' multipliers do usefully: ``in x out`` (nm: the
        ``n`` of every ``m`` weights that are stored; circulant: the dense equivalent)."""
        if self.scheme == "nm":
            return self.layer.out_features * self.layer.weights.values.shape[1]
        return self.layer.in_features * self.layer.out_features


def _dot_rows(out: int, pes: int) -> tuple[int, tuple[tuple[tuple[int, ...], ...], ...]]:
    groups = _ceil_div(out, pes)
    rows = tuple(tuple((g * pes + s,) if g * pes + s < out else (-1,) for g in range(groups)) for s in range(pes))
    return groups, rows


def plan_engine(layer, folding: LayerFolding) -> EnginePlan:
    """The engine of ``layer`` folded by ``folding``.

    Raises
    ------
    ValueError
        ``"Layer nm lanes must be a multiple of M = 4, not 6"``, ``"Layer circulant lanes must be the block
        size 8 (or left at 1), not 4"``, ``"Layer crossbar pes must be its 2 tiles (or left at 1), not 3"``,
        ``"Layer fixed pes must be at most its 10 output rows, not 12"``.
    """
    w, scheme = layer.weights, layer.scheme
    lanes, pes = folding.lanes, folding.pes
    act = dict(act_bits=layer.in_bits, act_signed=layer.in_signed)
    if scheme in ("fixed", "sp2", "msq", "nm"):
        if pes > layer.out_features:
            raise ValueError(f"Layer {scheme} pes must be at most its {layer.out_features} output rows, not {pes}")
    if scheme in ("fixed", "sp2", "msq"):
        lanes = min(lanes, layer.in_features)
        beats = _ceil_div(layer.in_features, lanes)
        max_len = beats * lanes
        fixed_params = lambda bits: FixedMacParams(lanes=lanes, w_bits=bits, max_len=max_len, dsp=True, **act)
        sp2_params = lambda fmt: SP2MacParams(lanes=lanes, fmt=fmt, max_len=max_len, **act)
        if scheme != "msq":
            groups, rows = _dot_rows(layer.out_features, pes)
            pe, params = (("fixed-mac", fixed_params(w.w_bits)) if scheme == "fixed" else
                          ("sp2-mac", sp2_params(w.fmt)))
            slots = tuple(Slot(pe, params, r) for r in rows)
        else:
            kinds = np.asarray(w.is_sp2)
            sp2_rows = [int(r) for r in np.flatnonzero(kinds)]
            fixed_rows = [int(r) for r in np.flatnonzero(~kinds)]
            n_sp2 = 0 if not sp2_rows else (len(fixed_rows) == 0 and pes or
                                            min(max(1, round(pes * len(sp2_rows) / len(kinds))), pes - 1))
            if pes < 2 and sp2_rows and fixed_rows:
                raise ValueError(f"Layer msq pes must be at least 2 (one SP2 and one fixed-point slot), not {pes}")
            n_fixed = pes - n_sp2
            groups = max(_ceil_div(len(sp2_rows), n_sp2) if n_sp2 else 0,
                         _ceil_div(len(fixed_rows), n_fixed) if n_fixed else 0)

            def spread(rows, count):
                return [tuple((rows[g * count + s],) if g * count + s < len(rows) else (-1,) for g in range(groups))
                        for s in range(count)]

            slots = tuple([Slot("sp2-mac", sp2_params(w.sp2_fmt), r, "sp2") for r in spread(sp2_rows, n_sp2)]
                          + [Slot("fixed-mac", fixed_params(w.w_bits), r, "fixed") for r in spread(fixed_rows, n_fixed)])
        return EnginePlan(layer, dataclasses.replace(folding, lanes=lanes, pes=pes), lanes, beats, groups, 1, slots,
                          1)
    if scheme == "nm":
        m_ = w.fmt.m
        if lanes % m_ and lanes != 1:
            raise ValueError(f"Layer nm lanes must be a multiple of M = {m_}, not {lanes}")
        lanes = max(lanes, m_)
        lanes = min(lanes, _ceil_div(layer.in_features, m_) * m_)
        beats = _ceil_div(layer.in_features, lanes)
        params = NMSparseParams(fmt=w.fmt, groups=lanes // m_, w_bits=w.w_bits, max_len=beats * lanes, dsp=True,
                                **act)
        groups, rows = _dot_rows(layer.out_features, pes)
        return EnginePlan(layer, dataclasses.replace(folding, lanes=lanes, pes=pes), lanes, beats, groups, 1,
                          tuple(Slot("nm-sparse", params, r) for r in rows), 1)
    if scheme == "circulant":
        k = w.fmt.block
        if lanes not in (1, k):
            raise ValueError(f"Layer circulant lanes must be the block size {k} (or left at 1), not {lanes}")
        p, q = w.spectra.shape[:2]
        if pes > p:
            raise ValueError(f"Layer circulant pes must be at most its {p} block rows, not {pes}")
        params = CirculantParams(fmt=w.fmt)
        groups = _ceil_div(p, pes)
        slots = tuple(Slot("circulant-fft", params,
                           tuple(tuple((g * pes + s) * k + e if g * pes + s < p and (g * pes + s) * k + e < layer.out_features
                                       else -1 for e in range(k)) for g in range(groups)))
                      for s in range(pes))
        return EnginePlan(layer, dataclasses.replace(folding, lanes=k, pes=pes), k, q, groups, k, slots,
                          params.initiation_interval)
    if scheme == "crossbar":
        fmt = w.fmt
        tiles = len(w.mappings)
        if lanes not in (1, fmt.rows):
            raise ValueError(f"Layer crossbar lanes must be its {fmt.rows} rows (or left at 1), not {lanes}")
        if pes not in (1, tiles):
            raise ValueError(f"Layer crossbar pes must be its {tiles} tiles (or left at 1), not {pes}")
        params = CrossbarParams(fmt=fmt)
        slots = tuple(Slot("crossbar", params, (tuple(t * fmt.cols + c if t * fmt.cols + c < layer.out_features
                                                      else -1 for c in range(fmt.cols)),))
                      for t in range(tiles))
        worst = params.vector_cycles([fmt.act_bits] * fmt.sub_arrays)
        return EnginePlan(layer, dataclasses.replace(folding, lanes=fmt.rows, pes=tiles), fmt.rows, 1, 1, fmt.cols,
                          slots, worst)
    raise ValueError(f"Layer scheme must be one of {', '.join(map(repr, net.SCHEMES))}, not {scheme!r}")


def folding_text(folding) -> str:
    """:meth:`Folding.text` of a :class:`Folding` or of its :meth:`Folding.to_list` form (a results file's
    ``folding``: ``requant`` may be missing); ``"-"`` for None or an empty list."""
    if not folding:
        return "-"
    if isinstance(folding, Folding):
        return folding.text()
    return Folding(tuple(LayerFolding(f["lanes"], f["pes"], f.get("requant", 1)) for f in folding)).text()


def plan_network(network, folding: Folding | None = None) -> tuple[EnginePlan, ...]:
    """One :class:`EnginePlan` per layer (``folding`` None: :func:`default_folding`)."""
    if not isinstance(network, net.Network):
        raise TypeError(f"Network must be a sw.network.Network, not {network!r}")
    folding = folding or default_folding(network)
    if len(folding.layers) != len(network.layers):
        raise ValueError(f"Folding must have one entry per layer ({len(network.layers)}), not {len(folding.layers)}")
    return tuple(plan_engine(layer, f) for layer, f in zip(network.layers, folding.layers))


def _candidates(layer) -> list[LayerFolding]:
    scheme = layer.scheme
    if scheme in ("circulant", "crossbar"):
        if scheme == "circulant":
            p = layer.weights.spectra.shape[0]
            return [LayerFolding(lanes=layer.weights.fmt.block, pes=n) for n in range(1, p + 1)]
        return [LayerFolding(lanes=layer.weights.fmt.rows, pes=len(layer.weights.mappings))]
    unit = layer.weights.fmt.m if scheme == "nm" else 1
    lanes = sorted({min(unit * 2 ** e, _ceil_div(layer.in_features, unit) * unit) for e in range(13)})
    lanes = [n for n in lanes if n <= max(DEFAULT_MAX_LANES, unit)]
    low = 2 if scheme == "msq" and 0 < int(np.sum(layer.weights.is_sp2)) < layer.out_features else 1
    return [LayerFolding(lanes=n, pes=p) for n in lanes for p in range(low, layer.out_features + 1)
            if n * p <= max(DEFAULT_MAX_MULTIPLIERS, n * low)]


def _cost(plan: EnginePlan) -> int:
    """Rough hardware cost of a folding: a multiplier lane each, and a slot's own accumulator, output register,
    weight memory and collector entry about as much as one more lane."""
    return plan.multipliers + len(plan.slots)


@dataclass(frozen=True)
class Budget:
    """What a device offers the default folding: ``dsps`` DSP multipliers of ``dsp_bits``-bit operands
    (the synthesis targets give theirs: ``synth.budget(target)``)."""

    dsps: int
    dsp_bits: int


def _requant_cycles(plan: EnginePlan, target: int) -> int:
    """The slowest requantiser that keeps ``plan`` within ``target`` cycles (1 if none is slower)."""
    per_group = _ceil_div(target, plan.groups) if plan.groups else target
    c = per_group // max(1, len(plan.slots) * plan.width)
    return max(1, min(c, MAX_REQUANT_CYCLES))


def _cheapest(options: list[list[EnginePlan]], target: int) -> list[EnginePlan]:
    """Per layer the cheapest plan within ``target`` cycles (the fastest one if none is)."""
    return [min((p for p in plans if p.cycles <= target), key=lambda p: (_cost(p), p.cycles, len(p.slots)),
                default=min(plans, key=lambda p: (p.cycles, _cost(p))))
            for plans in options]


def folding_at(network, interval: int) -> Folding:
    """The cheapest folding of every layer whose predicted cycles are at most ``interval`` (a layer that cannot
    be that fast takes its fastest folding): the points of a folding sweep from fast and large to slow and
    small. ``folding_at(network, default interval)`` is :func:`default_folding` (without a budget)."""
    check_int("Interval", interval, min=1)
    options = [[plan_engine(layer, f) for f in _candidates(layer)] for layer in network.layers]
    return Folding(tuple(p.folding for p in _cheapest(options, interval)))


def slowest_interval(network) -> int:
    """The interval of the smallest folding :func:`folding_at` reaches (every layer at its slowest)."""
    return max(max(plan_engine(layer, f).cycles for f in _candidates(layer)) for layer in network.layers)


def default_folding(network, budget: Budget | None = None) -> Folding:
    """Balanced folding: every engine as fast as the slowest has to be, with the fewest multipliers.

    The target interval ``T`` is the largest, over the layers, of what the element streams allow (loading
    ``in_features`` inputs, draining ``out_features`` results) and of the fastest folding within
    :data:`DEFAULT_MAX_LANES` lanes and :data:`DEFAULT_MAX_MULTIPLIERS` multipliers. Each layer then takes the
    cheapest folding (:func:`_cost`: multiplier lanes plus slots) whose predicted cycles are at most ``T``, so
    no engine starves the next and none is bigger than the pipeline's pace needs.

    With a ``budget`` the folding must also fit the device's DSPs (:meth:`EnginePlan.dsps`): ``T`` grows
    until it does, first with the cheapest foldings, then with the fewest DSPs (each requantiser as slow as
    ``T`` allows: shifts and adds instead of a multiplier).

    Raises
    ------
    ValueError
        ``"Network must fit 8 DSPs: its slowest folding still needs 12"``.
    """
    options = [[plan_engine(layer, f) for f in _candidates(layer)] for layer in network.layers]
    fastest = max(min(p.cycles for p in plans) for plans in options)

    def cheapest(target):
        return _cheapest(options, target)

    if budget is None:
        return Folding(tuple(p.folding for p in cheapest(fastest)))

    def fewest_dsps(target):
        chosen = []
        for plans in options:
            slow = [plan_engine(p.layer, dataclasses.replace(p.folding, requant=_requant_cycles(p, target)))
                    for p in plans if p.cycles <= target]
            chosen.append(min(slow, key=lambda p: (p.dsps(budget.dsp_bits), _cost(p), p.cycles)))
        return chosen

    least = None
    for target in sorted({p.cycles for plans in options for p in plans if p.cycles >= fastest}):
        for choose in (cheapest, fewest_dsps):
            plans = choose(target)
            need = sum(p.dsps(budget.dsp_bits) for p in plans)
            if need <= budget.dsps:
                return Folding(tuple(p.folding for p in plans))
            least = need
    raise ValueError(f"Network must fit {budget.dsps} DSPs: its slowest folding still needs {least}")


# -- streams ---------------------------------------------------------------------------------------------------

def _shape(bits: int, is_signed: bool) -> Shape:
    return signed(bits) if is_signed else unsigned(bits)


def element_layout(shape, words: int, lanes: int) -> data.StructLayout:
    """One element between engines: its value ``x`` and where the consumer's input buffer keeps it (``word``,
    ``lane``: element ``n`` of the vector is lane ``n % lanes`` of word ``n // lanes``)."""
    return data.StructLayout({"x": shape, "word": unsigned(max(1, ceil_log2(words))),
                              "lane": unsigned(max(1, ceil_log2(lanes)))})


# -- requantisation -----------------------------------------------------------------------------------------

class Requantizer(wiring.Component):
    """``z = clip(round((acc * M[row] + B[row]) / 2^S), lo, hi)`` (:mod:`sw.requant`), one result per
    ``cycles`` cycles.

    Three stages: the table read beside the accumulator; the product ``acc * M``; the bias, rounding (the
    layer's mode: half up ``(t + 2^(S-1)) >> S``, half even ``(t + 2^(S-1) - 1 + ((t >> S) & 1)) >> S``,
    floor ``t >> S``, with ``t = acc * M + B``) and clip. ``M``, ``B`` and the destination (``word``, ``lane``)
    of each row sit in one ROM indexed by ``row``. With ``cycles = 1`` the product is one multiplier (a DSP
    where the target has them); with ``cycles = c > 1`` it is computed over ``c`` cycles, ``ceil(M bits / c)``
    bits of ``M`` per cycle, by shifts and adds (LUTs only), for engines whose results come slowly enough.
    Each stage hands over to the next in the cycle the next can take it, so the unit takes a new accumulator
    every ``cycles`` cycles exactly.

    Members
    -------
    i : In(stream.Signature({acc, row}))
    o : Out(stream.Signature(element_layout(...)))
    """

    def __init__(self, *, acc_shape, layer, dest: Sequence[tuple[int, int]], out_layout: data.StructLayout,
                 cycles: int = 1):
        self._layer = layer
        rows = layer.out_features
        self._dest = list(dest)
        self._m_bits = max(1, int(layer.multiplier.max()).bit_length())
        self._b_bits = signed_bits_for(int(layer.offset.min()), int(layer.offset.max()))
        self._acc_shape = Shape.cast(acc_shape)
        self._row_bits = max(1, ceil_log2(rows))
        self._out_layout = out_layout
        check_int("Requantiser cycles", cycles, min=1, max=MAX_REQUANT_CYCLES)
        self._cycles = cycles
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"acc": acc_shape, "row": unsigned(self._row_bits)}))),
            "o": Out(stream.Signature(out_layout)),
        })

    @property
    def latency(self) -> int:
        """Cycles from an accepted accumulator to its result on ``o`` (without stalls)."""
        return self._cycles + 2

    def elaborate(self, platform):
        m = Module()
        layer = self._layer
        c = self._cycles
        digit = -(-self._m_bits // c)           # bits of M per cycle
        word_w = self._out_layout["word"].shape.width
        lane_w = self._out_layout["lane"].shape.width
        entry = data.StructLayout({"m": unsigned(self._m_bits), "b": signed(self._b_bits),
                                   "word": unsigned(word_w), "lane": unsigned(lane_w)})
        init = [entry.const({"m": int(mm), "b": int(bb), "word": wd, "lane": ln}).as_value().value
                for mm, bb, (wd, ln) in zip(layer.multiplier, layer.offset, self._dest)]
        m.submodules.table = table = _rom(entry.size, init)
        rd = table.read_port()

        # stage 3 (output register) takes a finished product when it is empty or being read
        free3 = Signal()
        m.d.comb += free3.eq(~self.o.valid | self.o.ready)
        # stage 2: the product, one digit of M per cycle; `done2` when its last digit is in
        v2 = Signal()
        count = Signal(range(max(c, 2)))
        done2 = Signal()
        m.d.comb += done2.eq(v2 & equals(count, c - 1))
        load2 = Signal()
        m.d.comb += load2.eq(~v2 | (done2 & free3))
        # stage 1: the accumulator beside its row's table entry (the ROM's read register)
        v1 = Signal()
        acc1 = Signal(self._acc_shape, reset_less=True)
        en1 = Signal()
        m.d.comb += [en1.eq(~v1 | load2), rd.en.eq(en1), rd.addr.eq(self.i.payload.row)]
        # With several cycles per product, stage 1 refills in the cycle after it empties and is still full in
        # time, so its `ready` can be a register (no path from `o.ready` back to `i.ready`). With one cycle
        # per product that would halve the rate: then `ready` passes the next stages' state through.
        m.d.comb += self.i.ready.eq(~v1 if c > 1 else en1)
        with m.If(en1):
            m.d.sync += [v1.eq(self.i.valid & self.i.ready), acc1.eq(self.i.payload.acc)]
        e1 = entry(rd.data)

        acc_w = self._acc_shape.width
        prod = Signal(signed(acc_w + self._m_bits + 1), reset_less=True)
        b2 = Signal(signed(self._b_bits), reset_less=True)
        d2 = Signal(unsigned(word_w + lane_w), reset_less=True)

        def partial(a, bits):
            # a * bits (bits unsigned, `digit` wide): one multiplier for the whole of M, else shifts and adds
            if c == 1:
                return a * bits
            return sum(Mux(bits[k], a << k, 0) for k in range(len(bits)))

        with m.If(load2):
            m.d.sync += [v2.eq(v1), count.eq(0), b2.eq(e1.b), d2.eq(Cat(e1.word, e1.lane)),
                         prod.eq(partial(acc1, e1.m[:digit]))]
        if c > 1:
            acc_sh = Signal(signed(acc_w + self._m_bits), reset_less=True)   # acc << (digit * (count + 1))
            m_rest = Signal(unsigned(max(1, self._m_bits - digit)), reset_less=True)
            with m.If(load2):
                m.d.sync += [acc_sh.eq(acc1 << digit), m_rest.eq(e1.m[digit:] if self._m_bits > digit else 0)]
            with m.Elif(v2 & ~done2):
                m.d.sync += [count.eq(count + 1), prod.eq(prod + partial(acc_sh, m_rest[:digit])),
                             acc_sh.eq(acc_sh << digit), m_rest.eq(m_rest >> digit)]

        # stage 3: bias, rounding, shift, clip
        shift = layer.shift
        total = Signal(signed(max(len(prod), self._b_bits) + 2))
        m.d.comb += total.eq(prod + b2)
        rounding = layer.rounding
        if rounding == "half_up":
            z = (total + (1 << (shift - 1))) >> shift
        elif rounding == "half_even":
            z = (total + ((1 << (shift - 1)) - 1) + total[shift]) >> shift
        elif rounding == "floor":
            z = total >> shift
        else:
            raise ValueError(f"Layer rounding must be one of 'half_up', 'half_even', 'floor', not {rounding!r}")
        lo, hi = layer.out_range
        clipped = Mux(z < lo, lo, Mux(z > hi, hi, z))
        with m.If(free3):
            m.d.sync += self.o.valid.eq(done2)
            with m.If(done2):
                m.d.sync += [self.o.payload.x.eq(clipped), self.o.payload.word.eq(d2[:word_w]),
                             self.o.payload.lane.eq(d2[word_w:])]
        return m


# -- the engine ---------------------------------------------------------------------------------------------

def _field_bits(layout: data.StructLayout, name: str, values) -> int:
    """Pack ``values`` (one per lane, lane 0 first) as field ``name`` of ``layout``, returned as an int of the
    field's own width."""
    shape = layout[name].shape
    if isinstance(shape, data.ArrayLayout):
        elem = Shape.cast(shape.elem_shape) if not isinstance(shape.elem_shape, data.Layout) else None
        width = shape.elem_shape.size if elem is None else elem.width
        word = 0
        for n, v in enumerate(values):
            word |= (int(v) & ((1 << width) - 1)) << (n * width)
        return word
    return int(values) & ((1 << Shape.cast(shape).width) - 1)


def _rom(width: int, words: list[int]) -> Memory:
    """A read-only memory of ``words`` (at least two deep, so its address has a bit)."""
    words = list(words) + [0] * max(0, 2 - len(words))
    return Memory(shape=unsigned(max(1, width)), depth=len(words), init=words)


def _select(values: list, index: Value) -> Value:
    """``values[index]`` as a balanced mux tree (an out-of-range index reads the last value)."""
    level = list(values)
    bit = 0
    while len(level) > 1:
        level = [Mux(index[bit], level[n + 1], level[n]) if n + 1 < len(level) else level[n]
                 for n in range(0, len(level), 2)]
        bit += 1
    return level[0]


def _weight_fields(scheme: str, slot: Slot) -> list[str]:
    """The payload fields of ``slot``'s beat that its weight memory fills."""
    if scheme in ("fixed", "sp2", "msq"):
        return [slot.params.weight_field]
    return {"nm": ["values", "indices"], "circulant": ["w"]}[scheme]


def _weight_words(plan: EnginePlan, slot: Slot) -> tuple[list[int], list[str]]:
    """Memory image of ``slot``: one word per (row group, beat), and the payload fields it fills."""
    w, lanes, beats = plan.layer.weights, plan.lanes, plan.beats
    layout = slot.params.input_layout
    words = []
    for g in range(plan.groups):
        row = slot.rows[g][0]
        for b in range(beats):
            if plan.scheme in ("fixed", "sp2", "msq"):
                if row < 0:
                    vals = [0] * lanes
                elif plan.scheme == "msq":
                    src = w.codes if slot.kind == "sp2" else w.fixed
                    vals = list(src[row, b * lanes:(b + 1) * lanes])
                else:
                    src = w.weights if plan.scheme == "fixed" else w.codes
                    vals = list(src[row, b * lanes:(b + 1) * lanes])
                vals += [0] * (lanes - len(vals))
                words.append(_field_bits(layout, slot.params.weight_field, vals))
            elif plan.scheme == "nm":
                n_ = slot.params.lanes
                if row < 0:
                    vals, idx = [0] * n_, [0] * n_
                else:
                    vals = list(w.values[row, b * n_:(b + 1) * n_])
                    idx = list(w.indices[row, b * n_:(b + 1) * n_])
                vals += [0] * (n_ - len(vals))
                idx += [0] * (n_ - len(idx))
                vw = layout["values"].shape.size
                words.append(_field_bits(layout, "values", vals) | _field_bits(layout, "indices", idx) << vw)
            elif plan.scheme == "circulant":
                i = g * len(plan.slots) + plan.slots.index(slot)
                bins = w.spectra[i, b] if i < w.spectra.shape[0] else np.zeros(w.spectra.shape[2:], np.int64)
                bits = w.fmt.w_bits
                mask = (1 << bits) - 1
                word = 0
                for n, (re, im) in enumerate(bins):
                    word |= ((int(re) & mask) | (int(im) & mask) << bits) << (2 * bits * n)
                words.append(word)
            else:
                raise AssertionError(plan.scheme)  # crossbar slots have no weight words
    return words, _weight_fields(plan.scheme, slot)


class Engine(wiring.Component):
    """One layer of a network on hardware (see the module docstring).

    Members
    -------
    i : In(stream.Signature(element_layout(input shape, beats * 2 banks... , lanes)))
        Elements of the input vector in any order, each with its ``word`` / ``lane`` in this engine's buffer;
        a vector is complete when ``in_features`` elements have arrived.
    o : Out(stream.Signature(element_layout(output shape, ...)))
        The requantised outputs, each with its place in the next engine's buffer (``dest``).
    """

    def __init__(self, plan: EnginePlan, *, dest_words: int, dest_lanes: int):
        self._plan = plan
        layer = plan.layer
        self._dest_words, self._dest_lanes = dest_words, dest_lanes
        in_shape = _shape(layer.in_bits, layer.in_signed)
        lo, hi = layer.out_range
        self._out_shape = _shape(layer.out_bits, layer.out_signed)
        super().__init__({
            "i": In(stream.Signature(element_layout(in_shape, plan.beats, plan.lanes))),
            "o": Out(stream.Signature(element_layout(self._out_shape, dest_words, dest_lanes))),
        })

    @property
    def plan(self) -> EnginePlan:
        return self._plan

    def elaborate(self, platform):
        m = Module()
        plan, layer = self._plan, self._plan.layer
        lanes, beats, groups = plan.lanes, plan.beats, plan.groups
        in_shape = _shape(layer.in_bits, layer.in_signed)
        ebits = in_shape.width
        n_in = layer.in_features

        # -- input buffer: two banks of `beats` words of `lanes` elements --------------------------------
        m.submodules.buffer = buf = Memory(shape=unsigned(lanes * ebits), depth=2 * beats, init=[])
        wr = buf.write_port(granularity=ebits)
        rd = buf.read_port()
        full = Signal(2)
        wbank = Signal()
        count = Signal(range(n_in + 1))
        lane_onehot = Signal(lanes)
        m.d.comb += lane_onehot.eq(Const(1, lanes) << self.i.payload.lane)
        m.d.comb += [
            self.i.ready.eq(~Mux(wbank, full[1], full[0])),
            wr.addr.eq(Cat(self.i.payload.word, wbank) if beats & (beats - 1) == 0 and beats > 1 else
                       wbank * beats + self.i.payload.word),
            wr.data.eq(Cat(*[Value.cast(self.i.payload.x)] * lanes)),
            wr.en.eq(Mux(self.i.valid & self.i.ready, lane_onehot, 0)),
        ]
        release = Signal()  # the sequencer read the last word of bank `rbank`
        rbank = Signal()
        done_filling = Signal()
        m.d.comb += done_filling.eq(self.i.valid & self.i.ready & equals(count, n_in - 1))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += count.eq(Mux(equals(count, n_in - 1), 0, count + 1))
            with m.If(equals(count, n_in - 1)):
                m.d.sync += wbank.eq(~wbank)
        for bank in range(2):
            with m.If(done_filling & (wbank == bank)):
                m.d.sync += full[bank].eq(1)
            with m.Elif(release & (rbank == bank)):
                m.d.sync += full[bank].eq(0)

        # -- slots -------------------------------------------------------------------------------------
        slots = []
        for n, slot in enumerate(plan.slots):
            comp = {"fixed-mac": FixedMac, "sp2-mac": SP2Mac, "nm-sparse": NMSparse, "circulant-fft": CirculantFFT,
                    "crossbar": CrossbarSystem}[slot.pe](slot.params)
            m.submodules[f"slot{n}"] = comp
            slots.append(comp)

        # crossbar: program every tile's array after reset, then compute
        loaded = Signal(init=plan.scheme != "crossbar")
        if plan.scheme == "crossbar":
            self._crossbar_loader(m, slots, loaded)

        # -- sequencer: row groups x beats, one beat per cycle into every slot ------------------------------
        g = Signal(range(max(groups, 2)))
        b = Signal(range(max(beats, 2)))
        staged = Signal()           # a beat waits in the payload stage (the memories' read registers)
        staged_last = Signal()
        all_ready = Signal()
        m.d.comb += all_ready.eq(Cat(*[s.i.ready for s in slots]).all())
        fire = Signal()
        m.d.comb += fire.eq(staged & all_ready)
        advance = Signal()
        m.d.comb += advance.eq(~staged | fire)
        issue = Signal()
        m.d.comb += issue.eq(advance & Mux(rbank, full[1], full[0]) & loaded)
        last_beat = equals(b, beats - 1)
        last_group = equals(g, groups - 1)
        m.d.comb += [rd.en.eq(advance),
                     rd.addr.eq(Cat(b, rbank) if beats & (beats - 1) == 0 and beats > 1 else rbank * beats + b),
                     release.eq(issue & last_beat & last_group)]
        with m.If(advance):
            m.d.sync += [staged.eq(issue), staged_last.eq(last_beat)]
        with m.If(issue):
            m.d.sync += b.eq(Mux(last_beat, 0, b + 1))
            with m.If(last_beat):
                m.d.sync += g.eq(Mux(last_group, 0, g + 1))
                with m.If(last_group):
                    m.d.sync += rbank.eq(~rbank)

        xword = rd.data
        for n, (slot, comp) in enumerate(zip(plan.slots, slots)):
            payload = comp.i.payload
            m.d.comb += comp.i.valid.eq(fire)
            if plan.scheme == "crossbar":
                m.d.comb += payload.x.as_value().eq(xword)
                continue
            words, fields = _weight_words(plan, slot)
            width = sum(payload[f].as_value().shape().width for f in fields)
            mem = _rom(width, words)
            m.submodules[f"weights{n}"] = mem
            wp = mem.read_port()
            m.d.comb += [wp.en.eq(advance), wp.addr.eq(g * beats + b)]
            m.d.comb += Cat(*[payload[f].as_value() for f in fields]).eq(wp.data)
            if plan.scheme == "circulant":
                m.d.comb += [payload.x.as_value().eq(xword), payload.last.eq(staged_last)]
            else:
                m.d.comb += [payload.acts.as_value().eq(xword), payload.last.eq(staged_last)]

        # -- collector: every slot's result for a row group, then one per cycle to the requantiser -----------
        acc_shape = plan.acc_shape
        entries = len(slots) * plan.width
        table = [[r for slot in plan.slots for r in slot.rows[gg]] for gg in range(groups)]
        held = [Signal(acc_shape, name=f"held{e}", reset_less=True) for e in range(entries)]
        busy = Signal()
        ce = Signal(range(max(entries, 2)))      # the entry of the row group being drained
        ci = Signal(range(max(groups * entries, 2)))   # its index in the row table: group * entries + ce
        all_valid = Signal()
        m.d.comb += all_valid.eq(Cat(*[s.o.valid for s in slots]).all())
        take = Signal()
        finishing = Signal()  # the collector hands over its last entry this cycle: it can take the next group
        m.d.comb += take.eq(all_valid & (~busy | finishing))
        for comp in slots:
            m.d.comb += comp.o.ready.eq(take)
        with m.If(take):
            e = 0
            for comp in slots:
                y = comp.o.payload.y
                values = [y[k] for k in range(plan.width)] if plan.width > 1 else [y]
                for v in values:
                    m.d.sync += held[e].eq(v)
                    e += 1
        row_bits = max(1, ceil_log2(layer.out_features))
        flat = [r for gg in range(groups) for r in table[gg]]
        m.submodules.rows = rows_rom = _rom(row_bits + 1, [(r if r >= 0 else 0) | (r >= 0) << row_bits for r in flat])
        rr = rows_rom.read_port(domain="comb")
        m.d.comb += rr.addr.eq(ci)   # a counter, not group * entries + ce: no adder before the table
        row_valid = rr.data[row_bits]

        dest = [(n // self._dest_lanes, n % self._dest_lanes) for n in range(layer.out_features)]
        out_layout = element_layout(self._out_shape, self._dest_words, self._dest_lanes)
        m.submodules.requant = rq = Requantizer(acc_shape=acc_shape, layer=layer, dest=dest, out_layout=out_layout,
                                                cycles=plan.folding.requant)
        m.d.comb += [rq.i.valid.eq(busy & row_valid), rq.i.payload.acc.eq(_select(held, ce)),
                     rq.i.payload.row.eq(rr.data[:row_bits])]
        step = Signal()
        m.d.comb += [step.eq(busy & (~row_valid | rq.i.ready)), finishing.eq(step & equals(ce, entries - 1))]
        with m.If(step):
            m.d.sync += [ce.eq(Mux(equals(ce, entries - 1), 0, ce + 1)),
                         ci.eq(Mux(equals(ci, groups * entries - 1), 0, ci + 1))]
        with m.If(take):
            m.d.sync += busy.eq(1)
        with m.Elif(finishing):
            m.d.sync += busy.eq(0)
        wiring.connect(m, producer=rq.o, consumer=wiring.flipped(self.o))
        return m

    def _crossbar_loader(self, m: Module, slots, loaded: Signal) -> None:
        """After reset, stream every tile's sign bits (``cfg``) and cell levels (``w``) from ROMs."""
        plan = self._plan
        params = plan.slots[0].params
        fmt = params.fmt
        n_cfg, n_w = fmt.sub_arrays, fmt.rows
        step = Signal(range(n_cfg + n_w + 1))
        m.d.comb += loaded.eq(equals(step, n_cfg + n_w))
        go = Signal()
        m.d.comb += go.eq(~loaded & Cat(*[Mux(step < n_cfg, s.cfg.ready, s.w.ready) for s in slots]).all())
        for n, (slot, comp) in enumerate(zip(plan.slots, slots)):
            mapping = plan.layer.weights.mappings[n]
            cfg_layout, w_layout = params.cfg_layout, params.load_layout
            cfg_words = [cfg_layout.const({"sub": k, "signs": int(sum(int(bit) << c for c, bit in
                                                                     enumerate(mapping.signs[k])))}).as_value().value
                         for k in range(n_cfg)]
            w_words = [w_layout.const({"row": r, "cells": [int(c) for c in mapping.cells[r]]}).as_value().value
                       for r in range(n_w)]
            m.submodules[f"cfg_rom{n}"] = cfg_rom = _rom(cfg_layout.size, cfg_words)
            m.submodules[f"w_rom{n}"] = w_rom = _rom(w_layout.size, w_words)
            cp, wp = cfg_rom.read_port(domain="comb"), w_rom.read_port(domain="comb")
            m.d.comb += [cp.addr.eq(step), wp.addr.eq(step - n_cfg),
                         comp.cfg.payload.as_value().eq(cp.data), comp.w.payload.as_value().eq(wp.data),
                         comp.cfg.valid.eq(go & (step < n_cfg)), comp.w.valid.eq(go & (step >= n_cfg))]
        with m.If(go):
            m.d.sync += step.eq(step + 1)


# -- the accelerator ----------------------------------------------------------------------------------------

class Accelerator(wiring.Component):
    """A whole :class:`sw.network.Network` on chip: engines chained by element streams.

    Members
    -------
    i : In(stream.Signature({x: input shape, last}))
        One feature per beat, in order; a sample is ``network.input.features`` beats (``last`` on the final
        one is carried for the host's framing; the accelerator counts).
    o : Out(stream.Signature({logits: ArrayLayout(output shape, classes), cls}))
        One beat per sample: the last layer's outputs and ``cls``, the index of the largest (the first among
        equal ones).
    """

    def __init__(self, network, folding: Folding | None = None):
        self._network = network
        self._plans = plan_network(network, folding)
        first, last = network.layers[0], network.layers[-1]
        self._in_shape = _shape(network.input.bits, network.input.signed)
        self._out_shape = _shape(last.out_bits, last.out_signed)
        self._classes = last.out_features
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"x": self._in_shape, "last": unsigned(1)}))),
            "o": Out(stream.Signature(data.StructLayout({
                "logits": data.ArrayLayout(self._out_shape, self._classes),
                "cls": unsigned(max(1, ceil_log2(self._classes)))}))),
        })

    @property
    def plans(self) -> tuple[EnginePlan, ...]:
        return self._plans

    @property
    def folding(self) -> Folding:
        return Folding(tuple(p.folding for p in self._plans))

    def elaborate(self, platform):
        m = Module()
        plans = self._plans
        engines = []
        for n, plan in enumerate(plans):
            nxt = plans[n + 1] if n + 1 < len(plans) else None
            dest_words, dest_lanes = (nxt.beats, nxt.lanes) if nxt else (self._classes, 1)
            engine = Engine(plan, dest_words=dest_words, dest_lanes=dest_lanes)
            m.submodules[f"engine{n}"] = engine
            engines.append(engine)
        for a, b in zip(engines, engines[1:]):
            wiring.connect(m, producer=a.o, consumer=b.i)

        # input: number the features for the first engine's buffer
        first = plans[0]
        lane = Signal(range(max(first.lanes, 2)))
        word = Signal(range(max(first.beats, 2)))
        e0 = engines[0].i
        m.d.comb += [e0.valid.eq(self.i.valid), self.i.ready.eq(e0.ready), e0.payload.x.eq(self.i.payload.x),
                     e0.payload.word.eq(word), e0.payload.lane.eq(lane)]
        n_in = self._network.input.features
        count = Signal(range(n_in + 1))
        with m.If(self.i.valid & self.i.ready):
            with m.If(equals(count, n_in - 1)):
                m.d.sync += [count.eq(0), lane.eq(0), word.eq(0)]
            with m.Else():
                m.d.sync += count.eq(count + 1)
                with m.If(equals(lane, first.lanes - 1)):
                    m.d.sync += [lane.eq(0), word.eq(word + 1)]
                with m.Else():
                    m.d.sync += lane.eq(lane + 1)

        # output: gather the logits (in any order) with a running argmax, then one beat per sample
        src = engines[-1].o
        k = self._classes
        logits = [Signal(self._out_shape, name=f"logit{j}", reset_less=True) for j in range(k)]
        best = Signal(self._out_shape, reset_less=True)
        best_idx = Signal(range(max(k, 2)), reset_less=True)
        got = Signal(range(k + 1))
        fresh = Signal(init=1)  # no logit of the current sample has arrived yet
        complete = Signal()
        m.d.comb += complete.eq(equals(got, k))
        m.d.comb += src.ready.eq(~complete)
        idx = src.payload.word
        x = src.payload.x
        with m.If(src.valid & src.ready):
            m.d.sync += [got.eq(got + 1), fresh.eq(0)]
            for j in range(k):
                with m.If(equals(idx, j)):
                    m.d.sync += logits[j].eq(x)
            with m.If(fresh | (x > best) | ((x == best) & (idx < best_idx))):
                m.d.sync += [best.eq(x), best_idx.eq(idx)]
        with m.If(complete & (~self.o.valid | self.o.ready)):
            m.d.sync += [self.o.valid.eq(1), got.eq(0), fresh.eq(1), self.o.payload.cls.eq(best_idx)]
            m.d.sync += [self.o.payload.logits[j].eq(logits[j]) for j in range(k)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


# -- a compiled network: the network, its folding, and what is written for it ----------------------------------

#: File names inside a compiled network directory (beside the network's own ``network.json`` / ``weights.npz``).
COMPILED = "compiled.json"
TOP = "accelerator"
MEMORIES = "memories"


@dataclass(frozen=True, eq=False)
class CompiledNetwork:
    """A network and its folding: what ``peforge compile`` writes and every later step reads.

    ``digest()`` names the pair (the network's arrays and manifest, and the folding), so simulator builds and
    synthesis runs are cached by it. ``write(directory)`` writes ``accelerator.v``, ``compiled.json`` (folding,
    per-layer plan and predictions), the network (``network.json`` + ``weights.npz``) and one ``.hex`` image per
    weight memory (``memories/``, one word per line, for inspection; the Verilog holds the same contents).
    """

    network: object
    folding: Folding

    name = "network"
    top = TOP

    def __post_init__(self):
        if not isinstance(self.network, net.Network):
            raise TypeError(f"Network must be a sw.network.Network, not {self.network!r}")
        if not isinstance(self.folding, Folding):
            raise TypeError(f"Folding must be a Folding, not {self.folding!r}")
        object.__setattr__(self, "_plans", plan_network(self.network, self.folding))
        # the plans fill in the fixed lanes/pes of circulant and crossbar layers
        object.__setattr__(self, "folding", Folding(tuple(p.folding for p in self._plans)))

    @classmethod
    def default(cls, network, budget: Budget | None = None) -> CompiledNetwork:
        """``network`` with its :func:`default_folding` (for a device's ``budget`` if given)."""
        return cls(network, default_folding(network, budget))

    @property
    def plans(self) -> tuple[EnginePlan, ...]:
        return self._plans

    @property
    def interval(self) -> int:
        """Predicted steady-state cycles between samples: the slowest engine's."""
        return max(p.cycles for p in self._plans)

    def digest(self, length: int = 12) -> str:
        text = self.network.digest(32) + json.dumps(self.folding.to_list(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:length]

    def with_settings(self, settings: dict[str, str]) -> CompiledNetwork:
        """Refold: ``{"layer.0.lanes": "16", "layer.1.pes": "2"}`` (layers counted from 0).

        Raises
        ------
        ValueError
            ``"Setting 'layer.3.lanes' must name a layer from 0 to 1, not 3"``,
            ``"Setting 'layer.0.width' must be layer.N.lanes or layer.N.pes, not 'width'"``,
            ``"layer.0.lanes: Lanes must be an integer from 1 to 4096, not 0"``,
            ``"layer.1: Layer nm lanes must be a multiple of M = 4, not 6"``.
        """
        layers, changed = list(self.folding.layers), set()
        for name, value in settings.items():
            parts = name.split(".")
            if len(parts) != 3 or parts[0] != "layer" or not parts[1].isdigit():
                raise ValueError(f"Setting {name!r} must be layer.N.lanes, layer.N.pes or layer.N.requant (N from 0 "
                                 f"to {len(layers) - 1}), not {name!r}")
            index, key = int(parts[1]), parts[2]
            if index >= len(layers):
                raise ValueError(f"Setting {name!r} must name a layer from 0 to {len(layers) - 1}, not {index}")
            if key not in ("lanes", "pes", "requant"):
                raise ValueError(f"Setting {name!r} must be layer.N.lanes, layer.N.pes or layer.N.requant, not "
                                 f"{key!r}")
            try:
                layers[index] = layers[index].with_settings({key: value})
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"{name}: {exc}") from None
            changed.add(index)
        for index in sorted(changed):  # the layer's own rules (nm lanes a multiple of M, ...), naming it
            try:
                plan_engine(self.network.layers[index], layers[index])
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"layer.{index}: {exc}") from None
        return CompiledNetwork(self.network, Folding(tuple(layers)))

    def build(self) -> Accelerator:
        return Accelerator(self.network, self.folding)

    def busy(self, interval: float) -> float | None:
        """Useful MACs / (multiplier lanes x ``interval``) of the slowest engine (:attr:`EnginePlan.macs`:
        ``in x out``, N:M layers only the kept ``n`` of every ``m`` weights); None if it has no multiplier
        lanes (circulant, crossbar) or ``interval`` is 0."""
        slowest = max(self._plans, key=lambda p: p.cycles)
        if not slowest.multipliers or not interval:
            return None
        return slowest.macs / (slowest.multipliers * interval)

    def summary(self) -> list[dict]:
        """Per layer: scheme, sizes, folding and the predicted cycles per sample."""
        return [{"layer": n, "scheme": p.scheme, "in": p.layer.in_features, "out": p.layer.out_features,
                 "lanes": p.folding.lanes, "pes": p.folding.pes, "requant": p.folding.requant,
                 "slots": len(p.slots), "beats": p.beats,
                 "groups": p.groups, "multipliers": p.multipliers, "load_cycles": p.load_cycles,
                 "compute_cycles": p.compute_cycles, "drain_cycles": p.drain_cycles, "cycles": p.cycles,
                 "pes_used": [s.pe for s in p.slots]}
                for n, p in enumerate(self._plans)]

    def manifest(self) -> dict:
        return {"format": "peforge-compiled", "version": 1, "top": TOP, "digest": self.digest(),
                "network_digest": self.network.digest(), "folding": self.folding.to_list(),
                "predicted_interval": self.interval, "layers": self.summary()}

    def write(self, directory) -> dict:
        """Write the compiled network into ``directory`` (see the class docstring); returns the manifest.

        Everything is generated first, then written into a temporary sibling directory; a new ``directory`` is
        that directory renamed. An existing one keeps the files peforge does not own; of its own it holds exactly
        this compile's afterwards (stale ``memories/*.hex`` of another network are removed). ``compiled.json``
        is removed first and written last, so a write that stops half-way never leaves a directory
        :func:`load_compiled` reads.

        Raises
        ------
        NotADirectoryError
            ``directory`` is an existing file.
        """
        import os
        import shutil
        import uuid

        from .verilog import generator_fingerprint, to_verilog

        out = Path(directory)
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(out))
        manifest = {**self.manifest(), "generator": generator_fingerprint()}
        files = {}
        for n, plan in enumerate(self._plans):
            if plan.scheme == "crossbar":
                continue
            for s, slot in enumerate(plan.slots):
                words, _ = _weight_words(plan, slot)
                digits = max(1, -(-max(w.bit_length() for w in words) // 4)) if words else 1
                files[f"{MEMORIES}/layer{n}_slot{s}.hex"] = "".join(f"{w:0{digits}x}\n" for w in words)
        files[f"{TOP}.v"] = to_verilog(self.build(), TOP)
        files[COMPILED] = json.dumps(manifest, indent=1) + "\n"
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = out.parent / f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        staging.mkdir()  # (mkdir, not mkdtemp: the directory gets the umask's mode, as ``out`` would)
        try:
            self.network.save(staging)
            (staging / MEMORIES).mkdir()
            for name, text in files.items():
                (staging / name).write_text(text)
            if not out.exists():
                staging.rename(out)
                return manifest
            (out / COMPILED).unlink(missing_ok=True)
            (out / MEMORIES).mkdir(exist_ok=True)
            for old in (out / MEMORIES).glob("*.hex"):
                if f"{MEMORIES}/{old.name}" not in files:
                    old.unlink()
            for name in [net.MANIFEST, net.WEIGHTS, *files]:  # COMPILED is the last of ``files``
                (staging / name).replace(out / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return manifest

    def is_written_in(self, directory) -> bool:
        """Whether ``directory`` already holds this compiled network, written by this very generator."""
        from .verilog import generator_fingerprint

        try:
            manifest = json.loads((Path(directory) / COMPILED).read_text())
        except (OSError, ValueError):
            return False
        return (manifest.get("digest") == self.digest() and manifest.get("generator") == generator_fingerprint()
                and (Path(directory) / f"{TOP}.v").is_file())


def load_compiled(directory) -> CompiledNetwork:
    """Read a directory ``peforge compile`` wrote: the network and its folding.

    Raises
    ------
    ValueError
        ``"out/compiled.json must exist (write it with peforge compile), not missing"``, the errors of
        :func:`sw.network.load`, ``"out/compiled.json: folding must ..."``.
    """
    path = Path(directory)
    file = path / COMPILED
    if not file.is_file():
        raise ValueError(f"Compiled network {file} must exist (write it with `peforge compile`), not missing")
    try:
        data = json.loads(file.read_text())
    except ValueError as exc:
        raise ValueError(f"{file} must be JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != "peforge-compiled" or data.get("version") != 1:
        raise ValueError(f"{file}: format must be 'peforge-compiled' version 1, not "
                         f"{data.get('format') if isinstance(data, dict) else data!r}")
    network = net.load(path)
    try:
        folding = Folding.from_list(data.get("folding"))
        return CompiledNetwork(network, folding)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{file}: folding: {exc}") from None
