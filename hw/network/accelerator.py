"""A whole network on chip: one engine per layer, chained by element streams (``docs/network.md``)::

    i (one feature per beat, last per sample) -> index -> Engine 0 -> Handoff -> Engine 1 -> Handoff -> ...
                                                      -> logits + argmax -> o

Each :class:`hw.network.components.Handoff` is a skid buffer whose ``ready`` is a register.
"""

from __future__ import annotations

import math

import numpy as np
from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..common import equals
from .components import Dest, Handoff, value_shape
from .folding import Folding
from .plan import EnginePlan
from .search import plan_network

__all__ = ["Accelerator", "input_order"]


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

    def __init__(self, network, folding: Folding | None = None, target=None):
        self._network = network
        self._plans = plan_network(network, folding, target)   # target: the slots' DSP cells (sw.params.TargetFacts)
        last = network.layers[-1]
        self._in_shape = value_shape(network.input.bits, network.input.signed)
        self._out_shape = value_shape(last.out_bits, last.out_signed)
        self._classes = math.prod(last.out_shape)
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

    def input_order(self):
        """The order the input stream takes a sample's features in: ``order[k]`` is the index (in the network's
        flat input, ``[C, H, W]`` flattened) of the ``k``-th feature sent. Channels-last (every position's
        channels, position by position) when the first engine is a convolution or a pool; else as flattened."""
        return input_order(self._network, self._plans)

    def elaborate(self, platform):
        m = Module()
        plans = [p for p in self._plans if p.engine.kind != "flatten"]
        engines = []
        for n, plan in enumerate(plans):
            nxt = plans[n + 1] if n + 1 < len(plans) else None
            if nxt is not None:
                words, lanes, ring = nxt.engine.input_words(nxt)
                positions = plan.positions

                def address(r, p, nxt=nxt, positions=positions):
                    return nxt.engine.input_address(nxt, r, p, positions)
            else:                # the logits: element n of the flattened output in word n
                words, lanes, ring, positions = self._classes, 1, None, plan.positions

                def address(r, p, positions=positions):
                    return r * positions + p, 0
            dest = Dest.of(address, plan.rows, plan.positions, words=words, lanes=lanes, ring=ring)
            engine = plan.engine.component(plan, dest)
            m.submodules[f"engine{self._plans.index(plan)}"] = engine
            engines.append(engine)
        # a registered hand-off after every engine: no ready path from one engine into the next, or from the
        # logits gathering into the last engine
        outputs = []
        for n, engine in enumerate(engines):
            m.submodules[f"handoff{self._plans.index(plans[n])}"] = handoff = Handoff(engine.o.payload.shape())
            wiring.connect(m, producer=engine.o, consumer=handoff.i)
            outputs.append(handoff.o)
        for a, b in zip(outputs, engines[1:]):
            wiring.connect(m, producer=a, consumer=b.i)

        # input: each feature where the first engine keeps it, in the stream's order (input_order): a counter of
        # words and lanes, round the first engine's ring, or from 0 again for every sample
        first = plans[0]
        words, lanes, ring = first.engine.input_words(first)
        lane = Signal(range(max(lanes, 2)))
        word = Signal(range(max(words, 2)))
        e0 = engines[0].i
        m.d.comb += [e0.valid.eq(self.i.valid), self.i.ready.eq(e0.ready), e0.payload.x.eq(self.i.payload.x),
                     e0.payload.word.eq(word), e0.payload.lane.eq(lane)]
        n_in = self._network.input.features
        count = Signal(range(n_in + 1))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += count.eq(Mux(equals(count, n_in - 1), 0, count + 1))
            with m.If(equals(lane, lanes - 1)):
                m.d.sync += [lane.eq(0), word.eq(word + 1)]
                if ring is not None:
                    with m.If(equals(word, ring - 1)):
                        m.d.sync += word.eq(0)
            with m.Else():
                m.d.sync += lane.eq(lane + 1)
            if ring is None:
                with m.If(equals(count, n_in - 1)):
                    m.d.sync += [lane.eq(0), word.eq(0)]

        # output: gather the logits (in any order) with a running argmax, then one beat per sample
        src = outputs[-1]
        k = self._classes
        logits = [Signal(self._out_shape, name=f"logit{j}", reset_less=True) for j in range(k)]
        best = Signal(self._out_shape, reset_less=True)
        best_idx = Signal(range(max(k, 2)), reset_less=True)
        got = Signal(range(k + 1))
        fresh = Signal(init=1)  # no logit of the current sample has arrived yet
        complete = Signal()     # all k have (got == k), a register: the logits' clock enables start at flip-flops
        m.d.comb += src.ready.eq(~complete)
        idx = src.payload.word
        x = src.payload.x
        with m.If(src.valid & src.ready):
            m.d.sync += [got.eq(got + 1), fresh.eq(0), complete.eq(equals(got, k - 1))]
            for j in range(k):
                with m.If(equals(idx, j)):
                    m.d.sync += logits[j].eq(x)
            with m.If(fresh | (x > best) | ((x == best) & (idx < best_idx))):
                m.d.sync += [best.eq(x), best_idx.eq(idx)]
        with m.If(complete & (~self.o.valid | self.o.ready)):
            m.d.sync += [self.o.valid.eq(1), got.eq(0), fresh.eq(1), complete.eq(0), self.o.payload.cls.eq(best_idx)]
            m.d.sync += [self.o.payload.logits[j].eq(logits[j]) for j in range(k)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


def input_order(network, plans) -> np.ndarray:
    """:meth:`Accelerator.input_order` of ``network`` with its ``plans``."""
    n = network.input.features
    first = next(p for p in plans if p.engine.kind != "flatten")
    if first.window is None:
        return np.arange(n)
    c = first.network_layer.in_shape[0]
    positions = n // c
    return np.array([ch * positions + p for p in range(positions) for ch in range(c)])
