"""A whole network on chip: one engine per layer, chained by element streams (``docs/network.md``)::

    i (one feature per beat, last per sample) -> index -> Engine 0 -> Engine 1 -> ... -> logits + argmax -> o
"""

from __future__ import annotations

from amaranth import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..common import equals
from .components import value_shape
from .engine import Engine
from .folding import Folding
from .plan import EnginePlan
from .search import plan_network

__all__ = ["Accelerator"]


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
        last = network.layers[-1]
        self._in_shape = value_shape(network.input.bits, network.input.signed)
        self._out_shape = value_shape(last.out_bits, last.out_signed)
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
