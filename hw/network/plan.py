"""An engine's plan: everything derived from one layer and its folding, in one place (:class:`EnginePlan`).

The engine (:mod:`hw.network.engines`, chosen by the layer's kind, scheme and implementation) makes the plan;
the engine component (:mod:`hw.network.engine`) is built from it, the cost model (:mod:`hw.network.cost`) reads
it, and its cycle predictions are what the testbench measures.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import signed
from amaranth.hdl import Shape
from amaranth.lib import data

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

    @property
    def scheme(self) -> str:
        return self.layer.scheme

    @property
    def multipliers(self) -> int:
        """Multiplier lanes of the engine's PEs (dot schemes: lanes per slot x slots)."""
        return self.engine.multipliers(self)

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
        """Multiply-accumulates per input vector that the PEs' multipliers do usefully: ``in x out`` (nm: the
        ``n`` of every ``m`` weights that are stored; circulant: the dense equivalent)."""
        return self.engine.macs(self)
