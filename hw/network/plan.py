"""An engine's plan: everything derived from one layer and its folding, in one place (:class:`EnginePlan`).

The engine (:mod:`hw.network.engines`, chosen by the layer's kind, scheme and implementation) makes the plan;
the engine component (:mod:`hw.network.engine`) is built from it, the cost model (:mod:`hw.network.cost`) reads
it, and its cycle predictions are what the testbench measures.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from amaranth import signed
from amaranth.hdl import Shape
from amaranth.lib import data

from ...sw.params import at_target

from .folding import LayerFolding

__all__ = ["Slot", "EnginePlan", "ceil_div"]


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` of integers."""
    return -(-a // b)


@dataclass(frozen=True, eq=False)
class Slot:
    """One PE instance of an engine: its registry name, its Params, and the output row of each of its result
    lanes in every row group (``rows[g][e]``, -1 for padding)."""

    pe: str
    params: object
    rows: tuple[tuple[int, ...], ...]
    kind: str = ""  # msq: "sp2" or "fixed"
    lane: int | None = None  # the one lane of the input word the slot takes (depthwise), None: the whole word


@dataclass(frozen=True, eq=False)
class EnginePlan:
    """A layer's engine, derived once from the layer and its folding (:func:`hw.network.engines.plan_engine`).

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
    engine : hw.network.engines.EngineSpec
        The engine that made the plan (what its slots are and how their beats are packed).
    window : hw.network.window.Window, hw.network.pool.PoolWindow or None
        A convolution's or pool's geometry (None: a dense layer, one item per sample).
    source : the network's layer, or None (then ``layer``). A convolution's ``layer`` is the dense view of its
        weight matrix (``in_features`` the window, ``out_features`` the output channels).
    target : sw.params.TargetFacts or None
        The target the slots' Params are at (:meth:`at_target`; its DSP cell also the requantiser's), None: generic.
    parts : tuple of EnginePlan
        The plans of the PE-slot datapaths an engine is made of when it has several (a recurrent layer's gate
        matrices ``w`` and ``u``: :mod:`hw.network.recurrent`); empty for the others, whose slots are their own.
    """

    layer: object
    folding: LayerFolding
    lanes: int
    beats: int
    groups: int
    width: int
    slots: tuple[Slot, ...]
    interval: int
    engine: object
    window: object = None
    source: object = None
    parts: tuple = ()
    target: object = None

    def at_target(self, target) -> EnginePlan:
        """This plan with every slot's Params (its parts' too) at ``target``'s facts (:func:`sw.params.at_target`:
        ``dsp_cell="target"`` becomes the target's DSP primitive, with its registers) and ``target`` recorded (the
        requantiser's partial products take its DSP primitive too), so the Verilog a network simulates is the one
        it synthesises."""
        if self.target == target:
            return self
        slots = tuple(dataclasses.replace(s, params=at_target(s.params, target)) for s in self.slots)
        parts = tuple(p.at_target(target) for p in self.parts)
        return dataclasses.replace(self, slots=slots, parts=parts, target=target)

    @property
    def network_layer(self):
        """The network's layer this plan computes."""
        return self.source if self.source is not None else self.layer

    @property
    def positions(self) -> int:
        """Items per sample: output positions of a convolution or pool, 1 for a dense layer."""
        return self.window.positions if self.window is not None else 1

    @property
    def in_elements(self) -> int:
        """Elements of one sample's input tensor (what the engine's buffer takes, one per cycle)."""
        return math.prod(self.network_layer.in_shape)

    @property
    def out_elements(self) -> int:
        return math.prod(self.network_layer.out_shape)

    @property
    def rows(self) -> int:
        """Results per item: output rows (a convolution's or pool's channels)."""
        return self.network_layer.out_shape[0] if self.window is not None else self.out_elements

    @property
    def scheme(self) -> str | None:
        """The weight scheme (None for a layer without weights: a pool, a flatten)."""
        return getattr(self.layer, "scheme", None)

    @property
    def kind(self) -> str:
        return self.network_layer.kind

    @property
    def label(self) -> str:
        """How tables name the layer: its scheme, or its kind when it has no weights (``"maxpool"``)."""
        return self.scheme or self.kind

    @property
    def multipliers(self) -> int:
        """Multiplier lanes of the engine's PEs (dot schemes: lanes per slot x slots)."""
        return self.engine.multipliers(self)

    @property
    def load_cycles(self) -> int:
        return self.in_elements

    @property
    def compute_cycles(self) -> int:
        """Beats the sequencer issues per sample (times the slots' interval; an engine of several datapaths: its
        :meth:`EngineSpec.compute_cycles`)."""
        if self.parts:
            return self.engine.compute_cycles(self)
        return self.positions * self.groups * self.beats * self.interval

    @property
    def group_drains(self) -> list[int]:
        """Cycles the collector takes to hand row group ``g``'s results to the requantiser: a cycle per entry
        (``slots x width``), or ``folding.requant`` per real result when the requantiser is the slower (padding
        entries are skipped; measured: 5 rows on 2 slots at requant 3 drain in 6 + 6 + 3 cycles)."""
        entries = len(self.slots) * self.width
        return [max(entries, self.folding.requant * sum(r >= 0 for slot in self.slots for r in slot.rows[g]))
                for g in range(self.groups)]

    @property
    def drain_cycles(self) -> int:
        """Cycles the collector takes per sample to hand its results to the requantiser (:attr:`group_drains`; an
        engine of several datapaths: its :meth:`EngineSpec.drain_cycles`)."""
        if self.parts:
            return self.engine.drain_cycles(self)
        return self.positions * sum(self.group_drains)

    @property
    def work_cycles(self) -> int:
        """Cycles of a sample's work once its input is there (the engine's :meth:`EngineSpec.work_cycles`)."""
        return self.engine.work_cycles(self)

    @property
    def cycles(self) -> int:
        """Predicted cycles per sample in steady state (the engine's :meth:`EngineSpec.cycles`): loading the
        buffer, or per item and row group the longer of issuing its beats and draining the previous group's
        results, whichever is slowest."""
        return self.engine.cycles(self)

    @property
    def acc_shape(self) -> Shape:
        """The accumulators the collector holds and the requantiser takes: the widest slot result, signed (an
        engine without slots says: :meth:`EngineSpec.acc_shape`)."""
        if not self.slots:
            return self.engine.acc_shape(self)
        widths = []
        for s in self.slots:
            shape = s.params.output_layout["y"].shape
            elem = shape.elem_shape if isinstance(shape, data.ArrayLayout) else shape
            widths.append(Shape.cast(elem).width)
        return signed(max(widths))

    def dsps(self, dsp_bits: int) -> int:
        """Predicted DSP multipliers of ``dsp_bits``-bit operands (:func:`hw.network.cost.dsps`)."""
        from .cost import dsps

        return dsps(self, dsp_bits)

    @property
    def weight_bits(self) -> int:
        """Bits of the engine's weight memories (:func:`hw.network.cost.weight_bits`)."""
        from .cost import weight_bits

        return weight_bits(self)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample that the PEs' multipliers do usefully: ``in x out`` (nm: the ``n`` of
        every ``m`` weights that are stored; circulant: the dense equivalent; a convolution's windows: not the
        padding's)."""
        return self.engine.macs(self)
