"""circulant-fft, architecture "streaming": the same bits as the golden model (and so as "parallel") at one
sample per cycle, for every block size including the ones "parallel" does not build."""

import numpy as np
import pytest

from peforge.hw.circulant_fft import CirculantParams
from amaranth import Module, Signal, signed
from amaranth.sim import Simulator

from peforge.hw.circulant_stream import _onehot_mux, _plan, mult_stages, rotate_stages
from peforge.hw.verilog import lint, write_design
from peforge.hw import registry
from peforge.sw.circulant import CirculantFormat, golden_matvec
from peforge.tb import circulant_fft as tb_cf
from peforge.tb.batch import SimStats
from peforge.tb.runner import run

STREAM = "streaming"

# k = 4 (no multiplier at all), a narrow k = 8 without guard bits, k = 16 on the scaled inverse schedule
# (every inverse stage halved, two more bits off each product) and k = 64 with the default widths; max_q is
# small to keep the runs short (max_q only sizes the accumulator and inverse widths); k = 8 and 16 build their
# products from the iCE40 / ECP5 DSP primitive and its simulation model (hw/dsp.py), k = 16 its butterflies from
# CCU2C cells (hw/carry.py), k = 64 infers them
SIM_GRID = [
    CirculantParams(fmt=CirculantFormat(block=4, act_bits=6, act_signed=False, w_bits=8, tw_bits=10,
                                        guard_bits=1, max_q=8), arch=STREAM),
    CirculantParams(fmt=CirculantFormat(block=8, act_bits=5, w_bits=6, tw_bits=8, guard_bits=0, max_q=4),
                    arch=STREAM, dsp_cell="SB_MAC16"),
    CirculantParams(fmt=CirculantFormat(block=16, max_q=8, ifft_scale=True, prod_shift=8), arch=STREAM,
                    dsp_cell="MULT18X18D", carry_cell="CCU2C"),
    CirculantParams(fmt=CirculantFormat(block=64, max_q=4), arch=STREAM),
]


def ident(p):
    f = p.fmt
    return (f"k{f.block}-{'s' if f.act_signed else 'u'}{f.act_bits}-w{f.w_bits}-tw{f.tw_bits}-q{f.max_q}"
            f"{'-scaled' if f.ifft_scale else ''}{'' if p.dsp_cell == 'target' else '-' + p.dsp_cell}"
            f"{'' if p.carry_cell == 'target' else '-' + p.carry_cell}")


def test_arch_default_and_derived_values():
    assert CirculantParams(fmt=CirculantFormat(block=16)).arch == "parallel"
    assert CirculantParams(fmt=CirculantFormat(block=16, ifft_scale=True)).arch == STREAM
    p = CirculantParams(fmt=CirculantFormat(block=32))
    assert p.arch == STREAM and p.initiation_interval == 32 and p.macs_per_cycle == 32
    assert CirculantParams.from_json(p.to_json()) == p
    # the default is re-derived when the block size changes on the command line
    assert p.with_settings({"fmt.block": "8"}).arch == "parallel"


def test_mult_stages():
    # one DSP (18 x 18 signed) in one register, DSP_PIPELINE (1) more on each side; one wide operand is
    # split into 17-bit pieces (+1 register)
    assert [mult_stages(a, b) for a, b in ((18, 18), (19, 18), (36, 12), (12, 40), (19, 19))] == [3, 4, 4, 4, 3]
    assert rotate_stages(12, 17) == 6 and rotate_stages(27, 17) == 7


@pytest.mark.parametrize("k", [4, 8, 16, 32, 64])
def test_plan(k):
    """Register offsets from the structure: the forward delay lines hold k/4 + ... + 1 = k/2 - 1 samples, the
    inverse ones 1 + ... + k/2 = k - 1; each SDF stage has an output register; rotations with a multiplier
    take rotate_stages(), the +-j ones 1, the trivial ones 0; one more block passes between the accumulator
    and the inverse transform."""
    fmt = CirculantFormat(block=k)
    plan, L = _plan(fmt), fmt.stages
    tw = fmt.tw_bits + 1                          # the twiddle sums c + d, d - c of a 3-multiplier product

    def cost(kind, data_bits):
        return {"none": 0, "swap": 1, "multiply": rotate_stages(data_bits + 1, tw)}[kind]

    assert plan.forward == 2 + (k // 2 - 1) + (L - 1) + sum(
        cost(c, fmt.fft_bits(s)) for s, c in enumerate(plan.fft_kind, 1))
    assert plan.out - plan.ifft_in == (k - 1) + L + sum(
        cost(c, fmt.ifft_bits(s - 1)) for s, c in enumerate(plan.ifft_kind, 1) if s > 1)
    assert plan.ifft_in - plan.forward == 2 + mult_stages(fmt.fft_bits(L) + 1, fmt.w_bits + 1) + k + 2
    # only the last two stages of each transform have trivial twiddles (tw[0] and tw[k/4] = -j)
    assert plan.fft_kind[-2:] == ["swap", "none"] and plan.ifft_kind[:2] == ["none", "swap"]
    assert set(plan.fft_kind[:-2]) <= {"multiply"} and set(plan.ifft_kind[2:]) <= {"multiply"}
    # weight RAM banks: a bank is rewritten B blocks later, after the product stage has read it
    assert plan.weight_banks * k >= plan.forward + k - 2 > (plan.weight_banks - 1) * k


@pytest.mark.parametrize("params", SIM_GRID, ids=ident)
def test_generate_and_lint(tmp_path, params):
    manifest = write_design(registry.get("circulant-fft"), params, tmp_path)
    assert manifest["ports"]["i__payload"]["width"] == params.input_layout.size
    lint(tmp_path / "circulant_fft.v", "circulant_fft")


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 16, 33])
def test_onehot_mux(n):
    """The AND-OR multiplexer of the input serialisers picks the value whose select bit is set."""
    m = Module()
    values = [Signal(signed(6), name=f"v{i}") for i in range(n)]
    onehot = Signal(n)
    out = _onehot_mux(m, values, onehot, "sel")
    rng = np.random.default_rng(n)
    sim = Simulator(m)

    async def bench(ctx):
        for _ in range(20):
            data = rng.integers(-32, 32, n)
            for sig, v in zip(values, data):
                ctx.set(sig, int(v))
            for i in range(n):
                ctx.set(onehot, 1 << i)
                assert ctx.get(out) == data[i]

    sim.add_testbench(bench)
    sim.run()


def test_products_on_the_primitive(tmp_path):
    """With the ECP5 primitive named, every product is a MULT18X18D with its registers, the split (wider than 18
    bits) inverse products too: none is left to yosys."""
    params = SIM_GRID[2]
    write_design(registry.get("circulant-fft"), params, tmp_path)
    text = (tmp_path / "circulant_fft.v").read_text()
    assert text.count("MULT18X18D ") == 20 and " * " not in text


def test_butterflies_on_the_carry_primitive(tmp_path):
    """carry_cell: CCU2C builds every delay-feedback butterfly (7 inverse and 6 forward components at k = 16) and
    forward stage 1 as chains of one cell per two bits; 'inferred' and iCE40 build none; ECP5 resolves it."""
    from peforge.synth import for_target
    from peforge.hw.circulant_stream import _ifft_bits

    params = SIM_GRID[2]
    fmt = params.fmt
    bits = [fmt.fft_bits(1) - fmt.guard_bits] + [fmt.fft_bits(s) for s in range(2, 5) for _ in range(2)]
    bits += [_ifft_bits(fmt, s) + 1 for s in range(1, 5) for _ in range(2 if s < 4 else 1)]   # + 1: halved
    for carry, cells in (("CCU2C", sum(-(-b // 2) for b in bits)), ("inferred", 0)):
        write_design(registry.get("circulant-fft"), params.replace(carry_cell=carry), tmp_path / carry)
        assert (tmp_path / carry / "circulant_fft.v").read_text().count("CCU2C ") == cells
    portable = params.replace(carry_cell="target", dsp_cell="target")
    assert for_target(portable, "ecp5-85k").carry_cell == "CCU2C"
    assert for_target(portable, "ice40-up5k").carry_cell == "inferred"
    with pytest.raises(ValueError, match=r"^Carry cell \(carry_cell\) must be one of 'target', 'inferred' for "
                                         r"ice40-up5k, not 'CCU2C'$"):
        for_target(params.replace(dsp_cell="target"), "ice40-up5k")


@pytest.mark.parametrize("params", SIM_GRID, ids=ident)
def test_streaming_cocotb(params):
    tests, failures = run("circulant-fft", params, testcases=tb_cf.CHECKS, tag="pytest")
    assert (tests, failures) == (len(tb_cf.CHECKS), 0)


def test_streaming_equals_parallel_and_golden():
    """The two architectures of one format give the same bits, through the batch API."""
    fmt = CirculantFormat(block=8, max_q=4)
    rng = np.random.default_rng(5)
    x = rng.integers(*fmt.act_range, (6, 3, 8), endpoint=True)
    w = rng.integers(*fmt.w_range, (2, 3, fmt.bins, 2), endpoint=True)
    w[:, :, [0, -1], 1] = 0
    want = golden_matvec(x, w, fmt)
    for arch in ("parallel", STREAM):
        got = tb_cf.rtl_matvec(x, w, CirculantParams(fmt=fmt, arch=arch), p_valid=0.7, p_ready=0.6)
        np.testing.assert_array_equal(got, want, err_msg=arch)


@pytest.mark.parametrize("params", SIM_GRID[1:3], ids=ident)
def test_latency_and_interval_measured(params):
    """``latency`` and ``initiation_interval`` against the cycles the simulation counted: n single-block
    vectors back to back, the last one accepted in cycle (n - 1) II, its result transferred in the cycle
    ``latency`` later; a wrong formula, or a datapath that does not keep to it, changes the count."""
    fmt = params.fmt
    rng = np.random.default_rng(9)
    x = rng.integers(*fmt.act_range, (7, 1, fmt.block), endpoint=True)
    w = rng.integers(*fmt.w_range, (2, 1, fmt.bins, 2), endpoint=True)
    w[:, :, [0, -1], 1] = 0
    y, stats = tb_cf.rtl_matvec(x, w, params, stats=True)
    np.testing.assert_array_equal(y, golden_matvec(x, w, fmt))
    n = len(x) * len(w)
    assert stats == SimStats(cycles=(n - 1) * fmt.block + params.latency + 1, beats=n)
    assert params.initiation_interval == fmt.block


def test_testbench_catches_streaming_mutant(mutants):
    """A streaming datapath that takes the Nyquist weight from the (ignored) imaginary field fails."""
    ran, failures = run("circulant-stream-nyquist-from-im", SIM_GRID[0], testcases=["random_stalls", "extremes"],
                        tag="mutant")
    assert (ran, failures) == (2, 2)
