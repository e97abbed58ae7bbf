"""hw.common.SkidOutput: a registered pipeline enable with a skid register, in Amaranth's simulator against a
plain Python model of the stream (every value out once, in order) under random stalls on both sides."""

import random

import pytest
from amaranth import Cat, Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from peforge.hw.common import SkidOutput, register

STAGES = 3


class _Pipe(wiring.Component):
    """``y = x + 1`` after ``STAGES`` registers on a SkidOutput enable, with ``ahead`` of the last stage's valid
    exposed for the check ``ahead == en & valid``, and two replicas of ``en``."""

    i: In(stream.Signature(unsigned(8)))
    o: Out(stream.Signature(unsigned(9)))
    en: Out(1)
    ahead: Out(1)
    last_valid: Out(1)
    replicas: Out(2)

    def elaborate(self, platform):
        m = Module()
        out = SkidOutput(m, self.o)
        m.d.comb += [self.i.ready.eq(out.en), self.en.eq(out.en),
                     self.replicas.eq(Cat(out.replica(), out.replica()))]
        data, valid = self.i.payload + 1, self.i.valid & out.en
        for n in range(STAGES - 1):
            data = register(m, data, en=out.en, name=f"d{n}")
            previous = valid
            valid = register(m, valid, en=out.en, name=f"v{n}", reset_less=False)
        m.d.comb += [self.ahead.eq(out.ahead(previous, stalled=valid, name="v_ahead")),
                     self.last_valid.eq(valid)]
        with m.If(out.en):
            m.d.sync += [out.valid.eq(valid), out.payload.eq(data)]
        return m


def _run(p_valid, p_ready, cycles=3000, seed=1):
    rng = random.Random(seed)
    dut = _Pipe()
    sent, received, timing = [], [], []

    async def bench(ctx):
        value = 0
        for cycle in range(cycles):
            ready_now = rng.random() < p_ready
            valid_now = rng.random() < p_valid
            ctx.set(dut.o.ready, ready_now)
            ctx.set(dut.i.valid, valid_now)
            ctx.set(dut.i.payload, value)
            if ctx.get(dut.o.valid) and ready_now:
                received.append(ctx.get(dut.o.payload))
            if valid_now and ctx.get(dut.i.ready):
                sent.append(value + 1)
                timing.append(cycle)
                value = (value + 1) % 256
            # the registered copy of `en & valid` of the last stage, every cycle
            assert ctx.get(dut.ahead) == (ctx.get(dut.en) & ctx.get(dut.last_valid))
            # every replica of the enable equals it
            assert ctx.get(dut.replicas) == 3 * ctx.get(dut.en)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return sent, received


@pytest.mark.parametrize("p_valid, p_ready", [(1.0, 1.0), (0.9, 0.3), (0.5, 0.5), (1.0, 0.7), (0.3, 0.95)])
def test_skid_output_keeps_every_value_in_order(p_valid, p_ready):
    sent, received = _run(p_valid, p_ready)
    assert len(sent) > 300
    # everything sent came out exactly once and in order, except what is still in flight at the end
    assert received == sent[:len(received)]
    assert len(sent) - len(received) <= STAGES + 2


def test_skid_output_full_rate_without_stalls():
    sent, received = _run(1.0, 1.0, cycles=200)
    # one value per cycle in and out: the plain pipeline's interval; STAGES in flight at the end
    assert len(sent) == 200 and received == sent[:200 - STAGES]
