"""One layer of a network on hardware: the engine component, the same for every engine of the registry.

The engine of the layer (:mod:`hw.network.engines`) says which PEs its slots hold, what their weight memories
contain and how a beat fills their payloads; this component joins the parts (:mod:`hw.network.components`)::

    i --> InputBuffer --read--> Sequencer --o--> Fanout --o<n>--> slot n --o--> Collector --o--> Requantizer --> o
                                    ^ loaded (CrossbarLoader, crossbar engines)
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .. import registry
from .components import Collector, Fanout, InputBuffer, Requantizer, Sequencer, beat_layout, element_layout, \
    value_shape
from .plan import EnginePlan

__all__ = ["Engine"]


class Engine(wiring.Component):
    """One layer of a network on hardware (see the module docstring).

    Members
    -------
    i : In(stream.Signature(element_layout(input shape, beats, lanes)))
        Elements of the input vector in any order, each with its ``word`` / ``lane`` in this engine's buffer;
        a vector is complete when ``in_features`` elements have arrived.
    o : Out(stream.Signature(element_layout(output shape, dest_words, dest_lanes)))
        The requantised outputs, each with its place in the next engine's buffer (``dest``).
    """

    def __init__(self, plan: EnginePlan, *, dest_words: int, dest_lanes: int):
        self._plan = plan
        layer = plan.layer
        self._dest_words, self._dest_lanes = dest_words, dest_lanes
        self._in_shape = value_shape(layer.in_bits, layer.in_signed)
        self._out_shape = value_shape(layer.out_bits, layer.out_signed)
        super().__init__({
            "i": In(stream.Signature(element_layout(self._in_shape, plan.beats, plan.lanes))),
            "o": Out(stream.Signature(element_layout(self._out_shape, dest_words, dest_lanes))),
        })

    @property
    def plan(self) -> EnginePlan:
        return self._plan

    def elaborate(self, platform):
        m = Module()
        plan, layer, engine = self._plan, self._plan.layer, self._plan.engine
        x_width = plan.lanes * self._in_shape.width

        m.submodules.buffer = buffer = InputBuffer(shape=self._in_shape, features=layer.in_features,
                                                   beats=plan.beats, lanes=plan.lanes)
        wiring.connect(m, producer=wiring.flipped(self.i), consumer=buffer.i)

        slots = []
        for n, slot in enumerate(plan.slots):
            m.submodules[f"slot{n}"] = comp = registry.get(slot.pe).build(slot.params)
            slots.append(comp)

        widths = [sum(comp.i.payload[f].as_value().shape().width for f in engine.weight_fields(slot))
                  for slot, comp in zip(plan.slots, slots)]
        m.submodules.sequencer = sequencer = Sequencer(
            groups=plan.groups, beats=plan.beats, x_width=x_width, widths=widths,
            words=[engine.weight_words(plan, slot) for slot in plan.slots])
        wiring.connect(m, buffer=buffer.read, sequencer=sequencer.read)

        loader = engine.loader(plan)
        if loader is not None:   # crossbar: program every tile's array after reset, then compute
            m.submodules.loader = loader
            m.d.comb += sequencer.loaded.eq(loader.loaded)
            for n, comp in enumerate(slots):
                wiring.connect(m, producer=getattr(loader, f"cfg{n}"), consumer=comp.cfg)
                wiring.connect(m, producer=getattr(loader, f"w{n}"), consumer=comp.w)

        m.submodules.fanout = fanout = Fanout(
            beat=beat_layout(x_width, sum(widths)), slots=[comp.i.signature.flip() for comp in slots],
            pack=lambda mm, n, payload, x, word, last: engine.pack(mm, plan.slots[n], payload, x, word, last),
            offsets=sequencer.word_offsets, widths=widths)
        wiring.connect(m, producer=sequencer.o, consumer=fanout.i)
        for n, comp in enumerate(slots):
            wiring.connect(m, producer=getattr(fanout, f"o{n}"), consumer=comp.i)

        m.submodules.collector = collector = Collector(
            slots=[comp.o.signature for comp in slots], width=plan.width, acc_shape=plan.acc_shape,
            rows=[[r for slot in plan.slots for r in slot.rows[g]] for g in range(plan.groups)],
            out_features=layer.out_features)
        for n, comp in enumerate(slots):
            wiring.connect(m, producer=comp.o, consumer=getattr(collector, f"i{n}"))

        dest = [(n // self._dest_lanes, n % self._dest_lanes) for n in range(layer.out_features)]
        m.submodules.requant = requant = Requantizer(
            acc_shape=plan.acc_shape, layer=layer, dest=dest, cycles=plan.folding.requant,
            out_layout=element_layout(self._out_shape, self._dest_words, self._dest_lanes))
        wiring.connect(m, producer=collector.o, consumer=requant.i)
        wiring.connect(m, producer=requant.o, consumer=wiring.flipped(self.o))
        return m
