"""One layer of a network on hardware: the engine component, the same for every entry of the engine table that
computes with PE slots, and the pooling unit.

The engine of the layer (:mod:`hw.network.engines`) says which PEs its slots hold, what their weight memories
contain and how a beat fills their payloads; this component joins the parts (:mod:`hw.network.components`; a
convolution's line buffer and window sequencer: :mod:`hw.network.window`)::

    i --> InputBuffer --read--> Sequencer --o--> Fanout --o<n>--> slot n --o--> Collector --o--> Requantizer --> o
          (LineBuffer)          (WindowSequencer)
                                    ^ loaded (CrossbarLoader, crossbar engines)

    i --> StreamPool --o--> Requantizer --> o          (PoolUnit: pools whose windows do not overlap)
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .. import registry
from ..dsp import INFERRED
from .components import Collector, Dest, Fanout, InputBuffer, Requantizer, Sequencer, beat_layout, element_layout, \
    value_shape
from .plan import EnginePlan
from .pool import StreamPool
from .window import LineBuffer, WindowSequencer

__all__ = ["Engine", "EngineUnit", "PoolUnit", "dot_datapath"]


class EngineUnit(wiring.Component):
    """An engine's ports: ``i`` takes the input elements where the engine keeps them (:meth:`EngineSpec.input_words`),
    ``o`` gives the outputs to ``dest``."""

    def __init__(self, plan: EnginePlan, dest: Dest):
        self._plan, self._dest = plan, dest
        layer = plan.network_layer
        self._in_shape = value_shape(layer.in_bits, layer.in_signed)
        self._out_shape = value_shape(layer.out_bits, layer.out_signed)
        words, lanes, _ = plan.engine.input_words(plan)
        super().__init__({
            "i": In(stream.Signature(element_layout(self._in_shape, words, lanes))),
            "o": Out(stream.Signature(element_layout(self._out_shape, dest.words, dest.lanes))),
        })

    @property
    def plan(self) -> EnginePlan:
        return self._plan

    def _requantizer(self, m, acc_shape, rows: int):
        plan = self._plan
        m.submodules.requant = requant = Requantizer(
            acc_shape=acc_shape, layer=plan.layer, dest=self._dest, cycles=plan.folding.requant, rows=rows,
            out_layout=element_layout(self._out_shape, self._dest.words, self._dest.lanes),
            dsp_cell=INFERRED if plan.target is None else plan.target.dsp_cell)
        wiring.connect(m, producer=requant.o, consumer=wiring.flipped(self.o))
        return requant


def dot_datapath(m: Module, plan: EnginePlan, in_shape, prefix: str = ""):
    """Add the PE-slot datapath of ``plan`` to ``m`` (its submodules named with ``prefix``): input buffer (or line
    buffer) -> sequencer -> fan-out -> slots -> collector. Returns ``(buffer, collector)``: the caller connects
    the buffer's ``i`` (elements) and the collector's ``o`` (accumulators, each with its output ``row``)."""
    layer, engine = plan.layer, plan.engine
    x_width = plan.lanes * in_shape.width

    slots = []
    for n, slot in enumerate(plan.slots):
        m.submodules[f"{prefix}slot{n}"] = comp = registry.get(slot.pe).build(slot.params)
        slots.append(comp)
    widths = [sum(comp.i.payload[f].as_value().shape().width for f in engine.weight_fields(slot))
              for slot, comp in zip(plan.slots, slots)]
    words = [engine.weight_words(plan, slot) for slot in plan.slots]

    if plan.window is None:
        buffer = InputBuffer(shape=in_shape, features=layer.in_features, beats=plan.beats, lanes=plan.lanes)
        sequencer = Sequencer(groups=plan.groups, beats=plan.beats, x_width=x_width, widths=widths, words=words)
    else:
        buffer = LineBuffer(shape=in_shape, window=plan.window)
        sequencer = WindowSequencer(window=plan.window, groups=plan.groups, x_width=x_width, widths=widths,
                                    words=words)
    m.submodules[f"{prefix}buffer"], m.submodules[f"{prefix}sequencer"] = buffer, sequencer
    wiring.connect(m, buffer=buffer.read, sequencer=sequencer.read)

    loader = engine.loader(plan)
    if loader is not None:   # crossbar: program every tile's array after reset, then compute
        m.submodules[f"{prefix}loader"] = loader
        m.d.comb += sequencer.loaded.eq(loader.loaded)
        for n, comp in enumerate(slots):
            wiring.connect(m, producer=getattr(loader, f"cfg{n}"), consumer=comp.cfg)
            wiring.connect(m, producer=getattr(loader, f"w{n}"), consumer=comp.w)

    m.submodules[f"{prefix}fanout"] = fanout = Fanout(
        beat=beat_layout(x_width, sum(widths)), slots=[comp.i.signature.flip() for comp in slots],
        pack=lambda mm, n, payload, x, word, last: engine.pack(mm, plan.slots[n], payload, x, word, last),
        offsets=sequencer.word_offsets, widths=widths)
    wiring.connect(m, producer=sequencer.o, consumer=fanout.i)
    for n, comp in enumerate(slots):
        wiring.connect(m, producer=getattr(fanout, f"o{n}"), consumer=comp.i)

    m.submodules[f"{prefix}collector"] = collector = Collector(
        slots=[comp.o.signature for comp in slots], width=plan.width, acc_shape=plan.acc_shape,
        rows=[[r for slot in plan.slots for r in slot.rows[g]] for g in range(plan.groups)],
        out_features=layer.out_features)
    for n, comp in enumerate(slots):
        wiring.connect(m, producer=comp.o, consumer=getattr(collector, f"i{n}"))
    return buffer, collector


class Engine(EngineUnit):
    """One layer of a network on hardware (see the module docstring).

    Members
    -------
    i : In(stream.Signature(element_layout(input shape, words, lanes)))
        Elements of the input in any order within a sample (a convolution's: within an input row), each with
        its ``word`` / ``lane`` in this engine's buffer.
    o : Out(stream.Signature(element_layout(output shape, dest words, dest lanes)))
        The requantised outputs, each with its place in the next engine's buffer (``dest``).
    """

    def elaborate(self, platform):
        m = Module()
        plan = self._plan
        buffer, collector = dot_datapath(m, plan, self._in_shape)
        wiring.connect(m, producer=wiring.flipped(self.i), consumer=buffer.i)
        requant = self._requantizer(m, plan.acc_shape, plan.layer.out_features)
        wiring.connect(m, producer=collector.o, consumer=requant.i)
        return m


class PoolUnit(EngineUnit):
    """A pool layer whose windows do not overlap: :class:`hw.network.pool.StreamPool` and the requantiser (an
    average pool's; a max pool's passes the values through). Ports as :class:`Engine`'s."""

    def elaborate(self, platform):
        m = Module()
        plan = self._plan
        m.submodules.pool = pool = StreamPool(shape=self._in_shape, acc_shape=plan.acc_shape, window=plan.window,
                                              op="max" if plan.layer.kind == "maxpool" else "sum")
        wiring.connect(m, producer=wiring.flipped(self.i), consumer=pool.i)
        requant = self._requantizer(m, plan.acc_shape, plan.window.channels)
        wiring.connect(m, producer=pool.o, consumer=requant.i)
        return m
