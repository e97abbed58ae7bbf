"""circulant-fft: parameters, elaboration and lint, RTL vs golden in Verilator, the batch API vs golden and
vs an independent float product (scipy's circulant matrices)."""

import subprocess
import sys

import numpy as np
import pytest
from scipy.linalg import circulant

from peforge.hw.circulant_fft import CirculantFFT, CirculantParams
from peforge.hw.common import csd_digits
from peforge.hw.verilog import lint, write_design
from peforge.hw import registry
from peforge.sw.circulant import CirculantFormat, dequantize, export_spectra, golden_matvec, quantize_acts, sqnr_db
from peforge.tb import circulant_fft as tb_cf
from peforge.tb.runner import run

# k = 4: unsigned 6-bit activations, narrow weights and twiddles, one guard bit, few blocks;
# k = 8: the default schedule (8-bit signed activations, 12-bit weights, 16-bit twiddles, max_q = 64), its
# products on ECP5's MULT18X18D primitive with its own registers (hw/dsp.py; k = 4 infers its multiplies).
# (the parallel architecture; tests/test_circulant_stream.py covers the streaming one)
SIM_GRID = [
    CirculantParams(fmt=CirculantFormat(block=4, act_bits=6, act_signed=False, w_bits=8, tw_bits=10,
                                        guard_bits=1, max_q=8), arch="parallel"),
    CirculantParams(fmt=CirculantFormat(block=8), arch="parallel", dsp_cell="MULT18X18D"),
]
# k = 16 with 18-bit weights and 4 guard bits: the spectrum and the weight pre-adds exceed an 18 x 18 DSP,
# so the complex products take four multipliers instead of three
LINT_GRID = SIM_GRID + [CirculantParams(fmt=CirculantFormat(block=16, tw_bits=18, w_bits=18, guard_bits=4),
                                        arch="parallel")]


def ident(p):
    f = p.fmt
    return (f"k{f.block}-{'s' if f.act_signed else 'u'}{f.act_bits}-w{f.w_bits}-tw{f.tw_bits}-g{f.guard_bits}"
            f"-q{f.max_q}")


@pytest.mark.parametrize("kwargs, kind, message", [
    ({"fmt": 16}, TypeError, r"^Circulant format \(fmt\) must be a CirculantFormat, not 16$"),
    ({"arch": 1}, TypeError, r"^Architecture \(arch\) must be a string, not 1$"),
    ({"arch": "serial"}, ValueError, r"^Architecture \(arch\) must be one of 'parallel', 'streaming', not 'serial'$"),
    ({"fmt": CirculantFormat(block=32), "arch": "parallel"}, ValueError,
     r"^Block size \(fmt\.block\) must be at most 16 for arch='parallel', not 32 "
     r"\(larger blocks need arch='streaming'\)$"),
    ({"fmt": CirculantFormat(ifft_scale=True), "arch": "parallel"}, ValueError,
     r"^Inverse stage scaling \(fmt\.ifft_scale\) must be False for arch='parallel', not True "
     r"\(it needs arch='streaming'\)$"),
])
def test_params_errors(kwargs, kind, message):
    with pytest.raises(kind, match=message):
        CirculantParams(**kwargs)


def test_derived_values():
    p = CirculantParams(fmt=CirculantFormat(block=16), arch="parallel")
    assert (p.block, p.initiation_interval, p.macs_per_cycle) == (16, 1, 256)
    # the output lanes hold the largest outputs: each bin driven to its extreme over max_q blocks
    # (inputs at full scale with the bin's cosine/sine signs, every weight at its extreme)
    f, n = p.fmt, np.arange(16)
    x = np.array([np.where(phase(2 * np.pi * b * n / 16) >= 0, f.act_range[1], f.act_range[0])
                  for b in range(f.bins) for phase in (np.cos, np.sin)])
    peak = 0
    for w_value in f.w_range:
        w = np.full((1, f.max_q, f.bins, 2), w_value)
        w[..., [0, -1], 1] = 0
        y = golden_matvec(np.repeat(x[:, None, :], f.max_q, axis=1), w, f)
        peak = max(peak, int(np.abs(y).max()))
    assert 2 ** (p.out_bits - 5) <= peak < 2 ** (p.out_bits - 1)
    assert [name for name, _ in p.input_layout] == ["x", "w", "last"]
    assert p.input_layout.size == 16 * 8 + 9 * 2 * 12 + 1
    assert p.output_layout.size == 16 * p.fmt.out_bits()
    # bin m of w is (re, im) at bits [2 m w_bits, 2 (m + 1) w_bits) of the field: export_spectra's order
    assert p.input_layout["w"].offset == 16 * 8 and p.bin_layout["im"].offset == 12
    # the as-soon-as-possible schedule (two adder levels per register, registered DSP products), pinned:
    # the testbench checks the RTL against it cycle for cycle
    assert [CirculantParams(fmt=CirculantFormat(block=k), arch="parallel").latency for k in (4, 8, 16)] == [6, 12, 16]
    # a DSP primitive with its own registers: one more register per product (4 instead of 3)
    assert [CirculantParams(fmt=CirculantFormat(block=k), arch="parallel", dsp_cell=cell).latency
            for k in (4, 8, 16) for cell in ("MULT18X18D", "SB_MAC16")] == [7, 7, 13, 13, 17, 17]
    assert CirculantParams.from_json(p.to_json()) == p
    assert p.with_settings({"fmt.block": "8"}).fmt.block == 8


def test_component_type_check():
    with pytest.raises(TypeError, match=r"^CirculantFFT params must be CirculantParams, not "):
        CirculantFFT(CirculantFormat())


@pytest.mark.parametrize("params", LINT_GRID, ids=ident)
def test_generate_and_lint(tmp_path, params):
    pe = registry.get("circulant-fft")
    manifest = write_design(pe, params, tmp_path)
    assert manifest["ports"]["i__payload"]["width"] == params.input_layout.size
    assert manifest["ports"]["o__payload"]["width"] == params.output_layout.size
    assert manifest["derived"]["latency"] == params.latency
    lint(tmp_path / "circulant_fft.v", "circulant_fft")


@pytest.mark.parametrize("params", SIM_GRID, ids=ident)
def test_circulant_fft_cocotb(params):
    tests, failures = run("circulant-fft", params, testcases=tb_cf.CHECKS, tag="pytest")
    assert (tests, failures) == (len(tb_cf.CHECKS), 0)


def dense_block_circulant(columns):
    """``[p*k, q*k]`` from first columns ``[p, q, k]`` with scipy (independently of sw.circulant)."""
    return np.block([[circulant(c) for c in row] for row in columns])


def test_rtl_matvec_vs_golden_and_float():
    params = SIM_GRID[1]
    fmt = params.fmt
    p, q, k, rows = 3, 4, fmt.block, 12
    rng = np.random.default_rng(11)
    columns = rng.normal(size=(p, q, k))
    spectra, scale = export_spectra(columns, fmt)
    x, act_scale = quantize_acts(rng.normal(size=(rows, q * k)), fmt)
    got = tb_cf.rtl_matvec(x.reshape(rows, q, k), spectra, params, p_valid=0.8, p_ready=0.7)
    assert got.shape == (rows, p, k) and got.dtype == np.int64
    np.testing.assert_array_equal(got, golden_matvec(x.reshape(rows, q, k), spectra, fmt))
    # the real output: y * 2^(prod_shift - guard_bits) * scale[i] (activations in integer units)
    real = got * (2.0 ** (fmt.prod_shift - fmt.guard_bits) * scale[None, :, None])
    reference = x.astype(np.float64) @ dense_block_circulant(columns).T
    assert sqnr_db(reference, real.reshape(rows, p * k)) >= 50
    np.testing.assert_allclose(dequantize(got, scale, fmt), real)


def test_rtl_matvec_errors():
    params = SIM_GRID[1]
    spectra = np.zeros((2, 3, 5, 2), np.int64)
    with pytest.raises(ValueError, match=r"^Acts must have q = 3 blocks of k = 8 \(shape \[\.\.\., 3, 8\]\) to "
                                         r"match the spectra, not shape \(2, 8\)$"):
        tb_cf.rtl_matvec(np.zeros((2, 8), int), spectra, params)
    spectra[1, 2, 4, 1] = 3
    with pytest.raises(ValueError, match=r"^Circulant spectra must have imaginary part 0 in bins 0 and k/2, "
                                         r"not 3 \(at index \(1, 2, 4, 1\)\)$"):
        tb_cf.rtl_matvec(np.zeros((3, 8), int), spectra, params)
    with pytest.raises(ValueError, match=r"^Circulant spectra must be an array \[p, q, 5, 2\] with p, q >= 1 "
                                         r"\(k = 8\), not shape \(3, 5, 2\)$"):
        tb_cf.rtl_matvec(np.zeros((3, 8), int), spectra[0], params)
    with pytest.raises(ValueError, match=r"^Acts must be integers from -128 to 127, not 300 "):
        tb_cf.rtl_matvec(np.full((3, 8), 300), np.zeros((2, 3, 5, 2), np.int64), params)
    with pytest.raises(TypeError, match=r"^Params must be CirculantParams, not "):
        tb_cf.rtl_matvec(np.zeros((3, 8), int), np.zeros((2, 3, 5, 2), np.int64), params.fmt)


@pytest.mark.parametrize("block", ["12", "2", "128"])
def test_cli_block_size_not_allowed(tmp_path, block):
    """A new user asks for a block size that is not a power of two from 4 to 64: one line, exit 2."""
    result = subprocess.run([sys.executable, "-m", "peforge", "sim", "circulant-fft", "--set", f"fmt.block={block}"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"peforge sim: error: Circulant block must be a power of two from 4 to 64, not {block}"]


def test_testbench_catches_mutant(mutants):
    """A parallel datapath whose output rounding sends ties down (wrong on exact halves only) fails."""
    ran, failures = run("circulant-fft-rounds-half-down", SIM_GRID[0], testcases=["random_stalls", "extremes"],
                        tag="mutant")
    assert (ran, failures) == (2, 2)


def test_csd_digits():
    for c in range(-3000, 3001):
        digits = csd_digits(c)
        assert sum(d << s for s, d in digits) == c
        shifts = [s for s, _ in digits]
        assert all(b - a >= 2 for a, b in zip(shifts, shifts[1:])), (c, digits)   # non-adjacent
        assert len(digits) <= (abs(c).bit_length() + 2) // 2 + 1
    # 11585 = round(2^14 / sqrt 2), the pi/4 twiddle: six digits instead of seven ones in binary
    assert csd_digits(11585) == [(0, 1), (6, 1), (8, 1), (10, -1), (12, -1), (14, 1)]


@pytest.mark.parametrize("tw_bits", [4, 9, 16])
def test_twiddle_trees_round_like_golden(tw_bits):
    """Every twiddle component of k = 16 as a shift-and-add tree (both signs of the inputs, one or two of
    them) equals the golden rotation ``R_F(b_re t_re - b_im t_im)``, ``R_F(b_re t_im + b_im t_re)`` on
    random and extreme inputs: the bias wired into a digit term, the negated form and the extra-adder form
    (which one a tree uses depends on the constants: tw_bits = 4, 9 and 16 cover all three)."""
    from amaranth import Const, Module, Signal, signed
    from amaranth.sim import Simulator

    from peforge.hw.circulant_fft import _Pipeline, _rotate_part, _Term
    from peforge.sw.circulant import round_shift

    fmt = CirculantFormat(block=16, tw_bits=tw_bits)
    frac, lo, hi = fmt.tw_frac, -(1 << 11), (1 << 11) - 1
    m = Module()
    pipe = _Pipeline(m, Const(1))
    b_re, b_im = Signal(signed(12)), Signal(signed(12))
    cases, terms = [], []
    for tr, ti in fmt.twiddles.tolist():
        for coefs in ((tr, -ti), (ti, tr)):
            for sign_re, sign_im, use_im in ((1, 1, True), (-1, 1, True), (1, -1, True), (-1, -1, False)):
                t_re = _Term(b_re, lo, hi, neg=sign_re < 0)
                t_im = _Term(b_im, lo, hi, neg=sign_im < 0) if use_im else _Term(None)
                terms.append(pipe.positive(_rotate_part(pipe, (t_re, t_im), coefs, frac)))
                cases.append((coefs, sign_re, sign_im if use_im else 0))
    terms = pipe.align(terms)
    latency = max(t.cycle for t in terms if t.value is not None)
    outs = []
    for n, t in enumerate(terms):
        sig = Signal(signed(64), name=f"out{n}")
        m.d.comb += sig.eq(t.value if t.value is not None else 0)
        outs.append(sig)
    rng = np.random.default_rng(tw_bits)
    samples = [(lo, lo), (hi, hi), (lo, hi), (hi, lo), (0, 0)] + [tuple(int(v) for v in rng.integers(lo, hi, 2, endpoint=True))
                                                                  for _ in range(40)]
    mismatches = []

    async def bench(ctx):
        for v_re, v_im in samples:
            ctx.set(b_re, v_re)
            ctx.set(b_im, v_im)
            await ctx.tick().repeat(latency + 1)
            for n, ((c_re, c_im), s_re, s_im) in enumerate(cases):
                want = int(round_shift(s_re * v_re * c_re + s_im * v_im * c_im, frac))
                if ctx.get(outs[n]) != want:
                    mismatches.append((c_re, c_im, s_re, s_im, v_re, v_im, ctx.get(outs[n]), want))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert not mismatches, mismatches[:5]
