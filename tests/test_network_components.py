"""The engine's parts alone (hw/network/components.py), each in Amaranth's simulator against a plain Python model
under random stalls on both sides: the input buffer with the sequencer that reads it, the fan-out that keeps the
slots in lock step, the collector, and the crossbar loader. (The requantiser's own proofs are in
tests/test_formal.py; the whole engine and accelerator run in Verilator in tests/test_network.py.)"""

import random

import numpy as np
import pytest
from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from peforge.hw.network import Collector, CrossbarLoader, Fanout, LayerFolding, plan_engine
from peforge.hw.network.components import beat_layout
from peforge.sw.network import CrossbarWeights, Layer
from peforge.sw.forms import CrossbarFormat
from peforge.tb.formal import VectorReplay

STALLS = [(1.0, 1.0), (0.5, 0.5), (0.9, 0.2), (0.3, 0.9)]


def _run(dut, bench, cycles):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run_until(cycles * 1e-6)


# -- the input buffer and the sequencer --------------------------------------------------------------------------

@pytest.mark.parametrize("p_valid, p_ready", STALLS)
def test_buffer_and_sequencer_replay_every_vector_groups_times(p_valid, p_ready):
    features, lanes, groups, bits = 5, 2, 3, 4
    beats = -(-features // lanes)
    rng = random.Random(7)
    words = [rng.randrange(32) for _ in range(groups * beats)]
    dut = VectorReplay(shape=unsigned(bits), features=features, beats=beats, lanes=lanes, groups=groups,
                       words=words, width=5)
    vectors = [[rng.randrange(1 << bits) for _ in range(features)] for _ in range(12)]
    # elements of a vector in any order, each with its place
    sent = [[(v[n], n // lanes, n % lanes) for n in rng.sample(range(features), features)] for v in vectors]
    flat = [e for vector in sent for e in vector]
    expected = []
    for v in vectors:
        padded = v + [0] * (beats * lanes - features)
        for g in range(groups):
            for b in range(beats):
                x = sum(padded[b * lanes + k] << (k * bits) for k in range(lanes))
                expected.append((x, words[g * beats + b], int(b == beats - 1)))
    got = []

    async def bench(ctx):
        k = 0
        while len(got) < len(expected):
            valid = k < len(flat) and rng.random() < p_valid
            ready = rng.random() < p_ready
            if k < len(flat):
                x, word, lane = flat[k]
                ctx.set(dut.i.payload.x, x)
                ctx.set(dut.i.payload.word, word)
                ctx.set(dut.i.payload.lane, lane)
            ctx.set(dut.i.valid, valid)
            ctx.set(dut.o.ready, ready)
            if ready and ctx.get(dut.o.valid):
                p = dut.o.payload
                got.append((ctx.get(p.x), ctx.get(p.w), ctx.get(p.last)))
            if valid and ctx.get(dut.i.ready):
                k += 1
            await ctx.tick()

    _run(dut, bench, 20000)
    assert got == expected


# -- the fan-out ----------------------------------------------------------------------------------------------------

class _Packed(wiring.Component):
    def __init__(self, n):
        self._n = n
        self._beat = beat_layout(4, 6)
        self._slot = stream.Signature(data.StructLayout({"x": unsigned(4), "w": unsigned(3), "last": unsigned(1)}))
        super().__init__({"i": In(stream.Signature(self._beat)), **{f"o{k}": Out(self._slot) for k in range(n)}})

    def elaborate(self, platform):
        m = Module()
        tick = Signal()   # the fan-out is combinational: a register gives the simulation its clock domain
        m.d.sync += tick.eq(~tick)

        def pack(mm, k, payload, x, word, last):
            mm.d.comb += [payload.x.eq(x), payload.w.eq(word), payload.last.eq(last)]

        m.submodules.fanout = fanout = Fanout(beat=self._beat, slots=[self._slot] * self._n, pack=pack,
                                              offsets=[0, 3], widths=[3, 3])
        wiring.connect(m, producer=wiring.flipped(self.i), consumer=fanout.i)
        for k in range(self._n):
            wiring.connect(m, producer=getattr(fanout, f"o{k}"), consumer=wiring.flipped(getattr(self, f"o{k}")))
        return m


@pytest.mark.parametrize("p_valid, p_ready", STALLS)
def test_fanout_offers_every_beat_to_every_slot_at_once(p_valid, p_ready):
    rng = random.Random(3)
    dut = _Packed(2)
    beats = [(rng.randrange(16), rng.randrange(64), rng.randrange(2)) for _ in range(200)]
    got = [[], []]

    async def bench(ctx):
        k = 0
        for _ in range(3000):
            valid = k < len(beats) and rng.random() < p_valid
            readies = [rng.random() < p_ready for _ in range(2)]
            if k < len(beats):
                x, w, last = beats[k]
                ctx.set(dut.i.payload.x, x)
                ctx.set(dut.i.payload.w, w)
                ctx.set(dut.i.payload.last, last)
            ctx.set(dut.i.valid, valid)
            for s, ready in enumerate(readies):
                ctx.set(getattr(dut, f"o{s}").ready, ready)
            valids = [ctx.get(getattr(dut, f"o{s}").valid) for s in range(2)]
            # lock step: a slot is offered the beat only when every slot takes it
            assert valids[0] == valids[1] == (valid and all(readies))
            for s in range(2):
                if valids[s]:
                    p = getattr(dut, f"o{s}").payload
                    got[s].append((ctx.get(p.x), ctx.get(p.w), ctx.get(p.last)))
            if valid and ctx.get(dut.i.ready):
                k += 1
            await ctx.tick()

    _run(dut, bench, 3000)
    assert len(got[0]) > 20
    want = beats[:len(got[0])]
    assert got[0] == [(x, w & 7, last) for x, w, last in want]
    assert got[1] == [(x, w >> 3, last) for x, w, last in want]


# -- the collector --------------------------------------------------------------------------------------------------

class _TwoSlots(wiring.Component):
    def __init__(self, rows):
        self._slot = stream.Signature(data.StructLayout({"y": data.ArrayLayout(signed(6), 2)}))
        self._rows = rows
        probe = Collector(slots=[self._slot] * 2, width=2, rows=rows, acc_shape=signed(6), out_features=6)
        super().__init__({"i0": In(self._slot), "i1": In(self._slot), "o": Out(probe.o.signature)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.c = c = Collector(slots=[self._slot] * 2, width=2, rows=self._rows, acc_shape=signed(6),
                                       out_features=6)
        for k in range(2):
            wiring.connect(m, producer=wiring.flipped(getattr(self, f"i{k}")), consumer=getattr(c, f"i{k}"))
        wiring.connect(m, producer=c.o, consumer=wiring.flipped(self.o))
        return m


@pytest.mark.parametrize("p_valid, p_ready", STALLS)
def test_collector_hands_over_every_real_row_in_order(p_valid, p_ready):
    # two slots of 2 lanes, two row groups; -1 is padding, never handed over
    rows = [[0, 1, 2, 3], [4, -1, 5, -1]]
    rng = random.Random(5)
    dut = _TwoSlots(rows)
    n = 40
    results = [[[rng.randrange(-32, 32) for _ in range(2)] for _ in range(n)] for _ in range(2)]   # per slot
    expected = []
    for k in range(n):
        values = results[0][k] + results[1][k]
        expected += [(v, r) for v, r in zip(values, rows[k % 2]) if r >= 0]
    got = []

    async def bench(ctx):
        index = [0, 0]
        while len(got) < len(expected):
            ready = rng.random() < p_ready
            ctx.set(dut.o.ready, ready)
            valids = []
            for s in range(2):
                port = getattr(dut, f"i{s}")
                valid = index[s] < n and rng.random() < p_valid
                if index[s] < n:
                    ctx.set(port.payload.y, results[s][index[s]])
                ctx.set(port.valid, valid)
                valids.append(valid)
            if ready and ctx.get(dut.o.valid):
                got.append((ctx.get(dut.o.payload.acc), ctx.get(dut.o.payload.row)))
            for s in range(2):
                if valids[s] and ctx.get(getattr(dut, f"i{s}").ready):
                    index[s] += 1
            await ctx.tick()

    _run(dut, bench, 20000)
    assert got == expected


# -- the crossbar loader --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("p_ready", [1.0, 0.4])
def test_crossbar_loader_programs_every_tile_then_says_loaded(p_ready):
    rng = np.random.default_rng(2)
    fmt = CrossbarFormat(rows=4, cols=2, rows_per_sub=2, act_bits=2, w_bits=2, cell_bits=1)
    signs = np.repeat(rng.choice([-1, 1], (2, 3)), 2, axis=0)
    w = CrossbarWeights(rng.integers(0, 4, (4, 3)) * signs, fmt)
    layer = Layer(w, np.ones(3, np.int64), 1, np.zeros(3, np.int64), False, 2, False, 8, True)
    plan = plan_engine(layer, LayerFolding())
    dut = CrossbarLoader(plan)
    tiles = len(plan.slots)
    params = plan.slots[0].params
    want_cfg = [[params.cfg_layout.const({"sub": k, "signs": int(sum(int(bit) << c for c, bit in
                                                                  enumerate(w.mappings[t].signs[k])))}).as_value().value
                 for k in range(fmt.sub_arrays)] for t in range(tiles)]
    want_w = [[params.load_layout.const({"row": r, "cells": [int(c) for c in w.mappings[t].cells[r]]}).as_value().value
               for r in range(fmt.rows)] for t in range(tiles)]
    got_cfg, got_w = [[] for _ in range(tiles)], [[] for _ in range(tiles)]
    pyrng = random.Random(1)

    async def bench(ctx):
        loaded_at = None
        for cycle in range(200):
            readies = [(pyrng.random() < p_ready, pyrng.random() < p_ready) for _ in range(tiles)]
            for t, (rc, rw) in enumerate(readies):
                ctx.set(getattr(dut, f"cfg{t}").ready, rc)
                ctx.set(getattr(dut, f"w{t}").ready, rw)
            for t, (rc, rw) in enumerate(readies):
                cfg, wp = getattr(dut, f"cfg{t}"), getattr(dut, f"w{t}")
                if ctx.get(cfg.valid) and rc:
                    got_cfg[t].append(ctx.get(cfg.payload.as_value()))
                if ctx.get(wp.valid) and rw:
                    got_w[t].append(ctx.get(wp.payload.as_value()))
            if ctx.get(dut.loaded) and loaded_at is None:
                loaded_at = cycle
            await ctx.tick()
        assert loaded_at is not None

    _run(dut, bench, 200)
    assert got_cfg == want_cfg and got_w == want_w
