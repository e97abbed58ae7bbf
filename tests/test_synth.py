"""Synthesis flow and pin wrapper: tiny designs through yosys + nextpnr on both targets."""

import gc
import json
import os
import statistics

import pytest
from amaranth.hdl import Fragment, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from peforge.synth import TARGETS, PinWrapper, SynthError, ToolTimeout, synthesize

# Components built only to test argument checks are never elaborated: silence the warning, and
# collect them while the filter applies (components sit in reference cycles).
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.fixture(autouse=True)
def _collect_unused():
    yield
    gc.collect()


class Mac(wiring.Component):
    """Registered 6x6 multiply-accumulate: 31 port bits with clk and rst, fits both packages."""

    a: In(6)
    b: In(6)
    clr: In(1)
    y: Out(16)

    def elaborate(self, platform):
        m = Module()
        a, b, p = Signal(6), Signal(6), Signal(12)
        m.d.sync += [a.eq(self.a), b.eq(self.b), p.eq(a * b)]
        with m.If(self.clr):
            m.d.sync += self.y.eq(0)
        with m.Else():
            m.d.sync += self.y.eq(self.y + p)
        return m


class WideXor(wiring.Component):
    """A 640-bit stream XOR-reduced into 8 lanes (lane k: bits k, k+8, ...): 654 port bits."""

    i: In(stream.Signature(640))
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.ready):
            m.d.sync += self.o.valid.eq(self.i.valid)
            for k in range(8):
                m.d.sync += self.o.payload[k].eq(self.i.payload[k::8].xor())
        return m


class Passthrough(wiring.Component):
    a: In(3)
    y: Out(6)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(self.a.replicate(2))
        return m


def test_bad_target(tmp_path):
    with pytest.raises(ValueError, match=r"^Target must be one of 'ecp5-85k', 'ice40-up5k', not 'x'$"):
        synthesize(Mac(), name="mac", target="x", build_dir=tmp_path)


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match=r"^Component must be an amaranth\.lib\.wiring\.Component, not 1$"):
        synthesize(1, name="mac", build_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^Name must be a Verilog identifier, not 'my pe'$"):
        synthesize(Mac(), name="my pe", build_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^Seeds must be a non-empty sequence of non-negative integers, not \(\)$"):
        synthesize(Mac(), name="mac", build_dir=tmp_path, seeds=())
    with pytest.raises(ValueError, match=r"^Frequency must be a positive number of MHz, not 0$"):
        synthesize(Mac(), name="mac", build_dir=tmp_path, freq_mhz=0)
    with pytest.raises(ValueError, match=r"^Seeds and spare seeds must be distinct, not \(1, 2\) and \(2,\)$"):
        synthesize(Mac(), name="mac", build_dir=tmp_path, seeds=(1, 2), spare_seeds=(2,))
    with pytest.raises(ValueError, match=r"^Spare seeds must be a sequence of non-negative integers, not \(-1,\)$"):
        synthesize(Mac(), name="mac", build_dir=tmp_path, spare_seeds=(-1,))
    with pytest.raises(ValueError, match=r"^Seed timeout must be a positive number of seconds or None, not 0$"):
        synthesize(Mac(), name="mac", build_dir=tmp_path, seed_timeout_s=0)


def test_a_seed_past_the_time_limit_gives_way_to_the_next_spare():
    """The scheduling of :func:`synth.flow._route_seeds` with a stand-in for nextpnr: seeds 2 and 4 time out."""
    from peforge.synth.flow import _route_seeds

    def route(seed):
        if seed in (2, 4):
            raise ToolTimeout(f"seed {seed}")
        return {"seed": seed}

    routed, unrouted = _route_seeds(route, (1, 2, 3), (4, 5, 6), workers=2)
    assert routed == [(1, {"seed": 1}), (3, {"seed": 3}), (5, {"seed": 5})] and unrouted == [2, 4]
    routed, unrouted = _route_seeds(route, (1, 2), (), workers=2)     # no spare left: fewer seeds, said so
    assert routed == [(1, {"seed": 1})] and unrouted == [2]
    with pytest.raises(SynthError, match="^boom$"):                   # any other failure still fails the run

        def broken(seed):
            raise SynthError("boom")

        _route_seeds(broken, (1,), (2,), workers=1)


@pytest.mark.synth
def test_nextpnr_is_stopped_at_the_seed_time_limit(tmp_path):
    """The real tools: nextpnr cannot finish in a millisecond, so both seeds are stopped and the run says so."""
    with pytest.raises(ToolTimeout, match=r"^nextpnr did not finish within 0\.001 s on any of seeds 1, 2 \(logs: "):
        synthesize(Mac(), name="mac", target="ice40-up5k", build_dir=tmp_path, seeds=(1,), spare_seeds=(2,),
                   seed_timeout_s=0.001)
    assert not (tmp_path / "result.json").exists()


def test_targets():
    assert set(TARGETS) == {"ecp5-85k", "ice40-up5k"}
    for target in TARGETS.values():
        assert 0 < target.usable_io < target.io_pins


def test_pin_wrapper_ports():
    wrapper = PinWrapper(WideXor())
    Fragment.get(wrapper, None)  # elaborates the wrapper and the wide design
    # i.payload + i.valid + o.ready in; i.ready + o.valid + o.payload out
    assert (wrapper.in_bits, wrapper.out_bits) == (642, 10)
    assert [(path, member.flow) for path, member, _ in wrapper.signature.flatten(wrapper)] == [
        (("sin",), In), (("sout",), Out)]
    with pytest.raises(TypeError, match=r"^Component must be an amaranth\.lib\.wiring\.Component, not 'x'$"):
        PinWrapper("x")
    with pytest.raises(ValueError, match=r"^Output pins must be a positive integer, not 0$"):
        PinWrapper(Mac(), out_pins=0)


def test_pin_wrapper_sim():
    dut = PinWrapper(Passthrough(), out_pins=4)
    bits = [1, 1, 0]  # sin enters at bit 0 and moves up: a = 0b110 after three cycles

    async def bench(ctx):
        for bit in bits:
            ctx.set(dut.sin, bit)
            await ctx.tick()
        await ctx.tick()  # the outputs are registered before the fold
        # y = a a = 0b110110; sout[k] = XOR of y[k], y[k+4]
        y = 0b110110
        expected = sum((((y >> k) ^ (y >> (k + 4))) & 1) << k for k in range(4))
        assert ctx.get(dut.sout) == expected

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def _check_files(result, name):
    files = set(os.listdir(result.build_dir))
    assert {f"{name}.v", f"{name}.json", "stat.json", "yosys.log", "result.json"} <= files
    for seed in result.seeds:
        assert {f"report_seed{seed}.json", f"nextpnr_seed{seed}.log"} <= files
    with open(os.path.join(result.build_dir, "result.json")) as f:
        assert json.load(f) == result.to_dict()


@pytest.mark.synth
@pytest.mark.parametrize("target", ["ecp5-85k", "ice40-up5k"])
def test_mac(tmp_path, target):
    steps = []
    result = synthesize(Mac(), name="mac", target=target, build_dir=tmp_path / target,
                        seeds=(1, 2), progress=steps.append)
    assert (result.design, result.target) == ("mac", target)
    assert not result.wrapped
    assert result.io_bits == 6 + 6 + 1 + 16 + 2
    assert result.lut > 0 and result.ff > 0
    assert result.dsp >= 1  # MULT18X18D on ECP5, SB_MAC16 on iCE40
    assert result.bram == 0
    assert result.seeds == (1, 2) and len(result.fmax_per_seed) == 2
    assert all(f > 0 for f in result.fmax_per_seed)
    assert result.fmax_mhz == statistics.median(result.fmax_per_seed)
    assert result.freq_target_mhz == TARGETS[target].freq_mhz
    assert steps[:2] == ["verilog", "yosys"]
    assert sorted(steps[2:]) == ["nextpnr seed 1", "nextpnr seed 2"]
    _check_files(result, "mac")
    if TARGETS[target].carry_out is not None:   # the netlist nextpnr read has no unread carry-out left
        from peforge.synth.flow import _disconnect_unread_carries
        assert _disconnect_unread_carries(os.path.join(result.build_dir, "mac.json"), *TARGETS[target].carry_out) == 0


@pytest.mark.synth
@pytest.mark.parametrize("target", ["ecp5-85k", "ice40-up5k"])
def test_wide_design_is_wrapped_and_kept(tmp_path, target):
    result = synthesize(WideXor(), name="wide_xor", target=target, build_dir=tmp_path)
    assert result.wrapped
    assert result.io_bits == 642 + 10 + 2
    # Each 80-input XOR lane needs at least ceil(79 / 3) = 27 LUT4s: with fewer, the wrapper let
    # synthesis drop some of the design.
    assert result.lut >= 8 * 27
    assert result.ff >= 642 + 10 + 9  # the wrapper's shift register and output register + the PE's
    assert result.fmax_mhz > 0
    _check_files(result, "wide_xor")


@pytest.mark.synth
def test_wrap_forced(tmp_path):
    result = synthesize(Mac(), name="mac", target="ice40-up5k", build_dir=tmp_path, wrap=True,
                        freq_mhz=30)
    assert result.wrapped and result.io_bits == 31
    assert result.freq_target_mhz == 30
    assert result.lut > 0 and result.dsp >= 1


@pytest.mark.synth
def test_too_many_pins_unwrapped(tmp_path):
    # nextpnr's utilisation table is read back into one line naming the resource (a SynthError subclass)
    from peforge.synth import DoesNotFit

    with pytest.raises(DoesNotFit, match=r"^Design wide_xor must fit the iCE40UP5K \(ice40-up5k\): it needs \d+ "
                                         r"SB_IO, the device has 39 \(log: .*nextpnr_seed1.log\)$"):
        synthesize(WideXor(), name="wide_xor", target="ice40-up5k", build_dir=tmp_path, wrap=False)


def test_dsp_width_is_a_target_fact():
    # The generators' default DSP operand width is the default target's, and synth sets each target's.
    from peforge.hw.circulant_fft import CirculantParams
    from peforge.hw.common import DEFAULT_DSP_BITS
    from peforge.hw.sp2_mac import SP2MacParams
    from peforge.synth import for_target

    assert (TARGETS["ecp5-85k"].dsp_bits, TARGETS["ice40-up5k"].dsp_bits) == (18, 16)
    assert DEFAULT_DSP_BITS == TARGETS["ecp5-85k"].dsp_bits
    p = CirculantParams(dsp_cell="inferred", carry_cell="inferred")   # every target accepts 'inferred'
    assert for_target(p, "ecp5-85k") is p          # already at the target's facts: unchanged
    assert for_target(p, "ice40-up5k") == p.replace(dsp_bits=16)
    assert for_target(CirculantParams(), "ice40-up5k") == p.replace(dsp_bits=16, dsp_cell="SB_MAC16")
    assert for_target(CirculantParams(), "ecp5-85k") == p.replace(dsp_cell="MULT18X18D", carry_cell="CCU2C")
    assert for_target(SP2MacParams(), "ice40-up5k") == SP2MacParams()   # no target fact: unchanged
    with pytest.raises(ValueError, match=r"^Target must be one of 'ecp5-85k', 'ice40-up5k', not 'x'$"):
        for_target(p, "x")


def test_unread_carry_outs_are_disconnected(tmp_path):
    """synth.flow: a CCU2C COUT bit nothing reads becomes "x" (nextpnr-ecp5 would feed it out through another
    CCU2C); one read by a cell or by a module output stays, and so does every other port."""
    from peforge.synth.flow import _disconnect_unread_carries

    def ccu(cin, cout, s0):
        return {"type": "CCU2C", "port_directions": {"CIN": "input", "COUT": "output", "S0": "output"},
                "connections": {"CIN": [cin], "COUT": [cout], "S0": [s0]}}

    netlist = {"modules": {"top": {
        "ports": {"q": {"direction": "output", "bits": [7]}},
        "cells": {"c0": ccu("0", 2, 3), "c1": ccu(2, 4, 5), "c2": ccu("1", 7, 8), "c3": ccu("0", 9, 10)}}}}
    path = tmp_path / "n.json"
    path.write_text(json.dumps(netlist))
    assert _disconnect_unread_carries(str(path), "CCU2C", "COUT") == 2
    cells = json.loads(path.read_text())["modules"]["top"]["cells"]
    assert [cells[c]["connections"]["COUT"] for c in ("c0", "c1", "c2", "c3")] == [[2], ["x"], [7], ["x"]]
    assert [cells[c]["connections"]["S0"] for c in ("c0", "c1", "c2", "c3")] == [[3], [5], [8], [10]]
    assert _disconnect_unread_carries(str(path), "CCU2C", "COUT") == 0
