"""The engine's parts alone (hw/network/components.py), each in Amaranth's simulator against a plain Python model
under random stalls on both sides: the input buffer with the sequencer that reads it, the fan-out that keeps the
slots in lock step, the collector, the crossbar loader, and the requantiser against sw.requant (its proofs are in
tests/test_formal.py; the whole engine and accelerator run in Verilator in tests/test_network.py)."""

import random

import numpy as np
import pytest
from amaranth import Module, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from peforge.hw.network import Collector, CrossbarLoader, Dest, Fanout, LayerFolding, Requantizer, element_layout, \
    plan_engine
from peforge.hw.network.components import REQUANT_DSP_BITS, Handoff, beat_layout
from peforge.sw.network import CrossbarWeights, FixedWeights, Layer
from peforge.sw.requant import ROUNDINGS
from peforge.sw.forms import CrossbarFormat
from peforge.tb.formal import VectorReplay

STALLS = [(1.0, 1.0), (0.5, 0.5), (0.9, 0.2), (0.3, 0.9)]


def _run(dut, bench, cycles):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run_until(cycles * 1e-6)


async def _transfer(ctx, dut, beats, results, rng, p_valid, p_ready, fields):
    """Offer ``beats`` (``i`` payload fields by name) on ``dut.i`` and take ``results`` beats of ``dut.o`` (their
    ``fields``), each side idle at random; returns what came out."""
    got, k = [], 0
    while len(got) < results:
        valid = k < len(beats) and rng.random() < p_valid
        ready = rng.random() < p_ready
        if k < len(beats):
            for name, value in beats[k].items():
                ctx.set(getattr(dut.i.payload, name), value)
        ctx.set(dut.i.valid, valid)
        ctx.set(dut.o.ready, ready)
        if ready and ctx.get(dut.o.valid):
            got.append(tuple(ctx.get(getattr(dut.o.payload, f)) for f in fields))
        if valid and ctx.get(dut.i.ready):
            k += 1
        await ctx.tick()
    return got


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
        beats = [{"x": x, "word": word, "lane": lane} for x, word, lane in flat]
        got.extend(await _transfer(ctx, dut, beats, len(expected), rng, p_valid, p_ready, ("x", "w", "last")))

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


# -- the hand-off between engines -----------------------------------------------------------------------------------

@pytest.mark.parametrize("p_valid, p_ready", STALLS)
def test_handoff_passes_every_beat_in_order_with_registered_ready(p_valid, p_ready):
    layout = element_layout(signed(6), 5, 2)
    dut = Handoff(layout)
    rng = random.Random(11)
    beats = [{"x": rng.randrange(-32, 32), "word": rng.randrange(5), "lane": rng.randrange(2)} for _ in range(200)]
    got = []

    async def bench(ctx):
        got.extend(await _transfer(ctx, dut, beats, len(beats), rng, p_valid, p_ready, ("x", "word", "lane")))
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 1)
        for _ in range(4):   # nothing more comes out
            assert not ctx.get(dut.o.valid)
            await ctx.tick()

    _run(dut, bench, 3000)
    assert got == [(b["x"], b["word"], b["lane"]) for b in beats]


def test_handoff_takes_one_beat_per_cycle_and_its_ready_is_a_register():
    dut = Handoff(element_layout(unsigned(4), 4, 1))
    seen = []

    async def bench(ctx):
        sent = 0
        for cycle in range(12):
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload.x, sent)
            ready_before = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, cycle % 5 != 3)      # a consumer stall changes no ready in the same cycle
            assert ctx.get(dut.i.ready) == ready_before
            assert ctx.get(dut.i.ready) or ctx.get(dut.o.valid)
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                seen.append((cycle, ctx.get(dut.o.payload.x)))
            sent += ctx.get(dut.i.ready)
            await ctx.tick()

    _run(dut, bench, 20)
    # latency 1, then a beat every cycle but the stalled ones
    assert seen[0] == (1, 0)
    assert [c for c, _ in seen] == [c for c in range(1, 12) if c % 5 != 3]
    assert [x for _, x in seen] == list(range(len(seen)))


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


# -- the requantiser ------------------------------------------------------------------------------------------------

def _requant_layer(config, rounding):
    """``wide``: 32-bit accumulators times 31-bit multipliers with 41-bit offsets (most results clip, small
    accumulators do not); ``ties``: small multipliers and shift, so exact halves are frequent."""
    if config == "wide":
        return signed(32), Layer(FixedWeights(np.ones((4, 2), np.int64), 4), shift=30,
                                 multiplier=[2**31 - 1, 2**30 + 12345, 3, 1], offset=[-(2**40), 2**40 - 1, 0, 12345],
                                 relu=False, in_bits=4, in_signed=True, out_bits=8, out_signed=True, rounding=rounding)
    return unsigned(11), Layer(FixedWeights(np.ones((4, 2), np.int64), 4), multiplier=[1, 3, 5, 7], shift=2,
                               offset=[0, 1, -2, 2], relu=True, in_bits=4, in_signed=True, out_bits=8,
                               out_signed=False, rounding=rounding)


def _accumulators(rng, shape, n):
    lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed else (0, (1 << shape.width) - 1)
    edges = [lo, hi, 0, 1, -1, lo + 1, hi - 1]
    small = [rng.randrange(-300, 300) for _ in range(n)]
    wide = [rng.randrange(lo, hi + 1) for _ in range(n)]
    return [min(max(v, lo), hi) for v in edges + [rng.choice(small + wide) for _ in range(n)]]


def _requant_bench(config, rounding, cycles, dsp_bits):
    acc_shape, layer = _requant_layer(config, rounding)
    rows, items = layer.out_features, 3
    # each item's rows go to consecutive places of a 2-lane buffer, the item after the one before
    dest = Dest.of(lambda r, p: divmod(p * rows + r, 2), rows, items, words=rows * items // 2, lanes=2)
    dut = Requantizer(acc_shape=acc_shape, layer=layer, dest=dest, cycles=cycles, dsp_bits=dsp_bits,
                      out_layout=element_layout(signed(layer.out_bits + 1), rows * items // 2, 2))
    return dut, layer, dest


@pytest.mark.parametrize("p_valid, p_ready", STALLS[1:3])
@pytest.mark.parametrize("cycles, dsp_bits", [(1, REQUANT_DSP_BITS), (1, 5), (3, REQUANT_DSP_BITS)])
@pytest.mark.parametrize("config", ["wide", "ties"])
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_requantizer_equals_the_golden_requantisation(rounding, config, cycles, dsp_bits, p_valid, p_ready):
    """Every result clip(requantize(acc, M, S, B)) bit for bit, at its destination, in order, under stalls."""
    rng = random.Random(hash((rounding, config, cycles, dsp_bits, p_valid)) & 0xFFFF)
    dut, layer, dest = _requant_bench(config, rounding, cycles, dsp_bits)
    accs = _accumulators(rng, Shape.cast(dut.i.payload.acc.shape()), 150)
    beats = []                               # (acc, row, last, item)
    item = 0
    while len(beats) < len(accs):
        order = rng.sample(range(layer.out_features), layer.out_features)
        for k, r in enumerate(order):
            beats.append((accs[len(beats) % len(accs)], r, int(k == len(order) - 1), item))
        item += 1
    rows = np.array([b[1] for b in beats])
    z = layer.requant(np.array([b[0] for b in beats], np.int64)[:, None] * np.ones((1, layer.out_features), np.int64))
    expected = [(int(z[k, r]), *dest.at(r, b[3] % dest.items)) for k, (b, r) in enumerate(zip(beats, rows))]
    got = []

    async def bench(ctx):
        offered = [{"acc": acc, "row": row, "last": last} for acc, row, last, _ in beats]
        got.extend(await _transfer(ctx, dut, offered, len(expected), rng, p_valid, p_ready, ("x", "word", "lane")))
        for _ in range(2 * dut.latency + 4):     # nothing more comes out
            ctx.set(dut.o.ready, 1)
            assert not ctx.get(dut.o.valid)
            await ctx.tick()

    _run(dut, bench, 60 * len(beats))
    assert got == expected


# expected latency per config: wide (32-bit acc x 31-bit M: 3 x 3 pieces on 16-bit DSPs, 8 x 8 on 5-bit, 16 x 16 on
# 3-bit, and B: 4, 7 or 9 adder levels), ties (11-bit acc x 3-bit M: 1, 3 x 1, 6 x 2 pieces and B: 1, 2, 4 levels)
@pytest.mark.parametrize("cycles, dsp_bits, wide, ties", [(1, REQUANT_DSP_BITS, 7, 4), (1, 5, 10, 5), (1, 3, 12, 7),
                                                          (2, REQUANT_DSP_BITS, 4, 4)])
@pytest.mark.parametrize("config", ["wide", "ties"])
def test_requantizer_latency_and_interval_are_as_predicted(config, cycles, dsp_bits, wide, ties):
    """Without stalls: a result every ``cycles`` cycles, each ``latency`` cycles after its accumulator was taken
    (the pipelined unit's latency grows with its partial products: 3 + the sum's register stages)."""
    dut, layer, _ = _requant_bench(config, "half_even", cycles, dsp_bits)
    assert dut.latency == (wide if config == "wide" else ties)
    n = 20
    taken, out = [], []

    async def bench(ctx):
        cycle = 0
        ctx.set(dut.o.ready, 1)
        while len(out) < n:
            ctx.set(dut.i.valid, len(taken) < n)
            ctx.set(dut.i.payload.row, len(taken) % layer.out_features)
            ctx.set(dut.i.payload.last, len(taken) % layer.out_features == layer.out_features - 1)
            if ctx.get(dut.o.valid):
                out.append(cycle)
            if len(taken) < n and ctx.get(dut.i.ready):
                taken.append(cycle)
            await ctx.tick()
            cycle += 1

    _run(dut, bench, 40 * n)
    assert [o - t for t, o in zip(taken, out)] == [dut.latency] * n
    assert all(b - a == cycles for a, b in zip(out, out[1:]))


@pytest.mark.parametrize("cell", ["MULT18X18D", "SB_MAC16"])
def test_requantizer_takes_its_targets_dsp_primitive_with_its_registers(cell):
    """Every partial product that is a multiply (not a 1-bit digit's multiplexer) is the primitive with its input,
    output and a fabric register: 2 cycles more than the inferred pieces (simulated in Verilator with the
    primitive's model by tests/test_network.py's networks built for a target)."""
    from peforge.hw.network.components import requant_digits, requant_latency
    from peforge.hw.verilog import to_verilog

    acc_shape, layer = _requant_layer("wide", "half_even")
    dut, _, dest = _requant_bench("wide", "half_even", 1, REQUANT_DSP_BITS)
    built = Requantizer(acc_shape=acc_shape, layer=layer, dest=dest, out_layout=dut.o.payload.shape(), dsp_cell=cell)
    pieces = sum(a_bits > 1 or a_signed
                 for _, a_bits, a_signed in requant_digits(acc_shape.width, acc_shape.signed, REQUANT_DSP_BITS)
                 for _, m_bits, _ in requant_digits(31, False, REQUANT_DSP_BITS) if m_bits > 1)
    assert to_verilog(built, "requant").count(f"  {cell} ") == pieces == 6
    assert built.latency == dut.latency + 2 == requant_latency(acc_shape, layer, dsp_cell=cell)
    with pytest.raises(ValueError, match=r"^Requantiser DSP cell must be one of 'inferred', 'MULT18X18D', "
                                         r"'SB_MAC16', not 'target'$"):
        Requantizer(acc_shape=acc_shape, layer=layer, dest=dest, out_layout=dut.o.payload.shape(), dsp_cell="target")
