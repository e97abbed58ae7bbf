"""circulant-fft: parameters, elaboration and lint, RTL vs golden in Verilator, the batch API vs golden and
vs an independent float product (scipy's circulant matrices)."""

import numpy as np
import pytest
from scipy.linalg import circulant

from hw.circulant_fft import CirculantFFT, CirculantParams
from hw.verilog import lint, write_design
from peforge import registry
from sw.circulant import CirculantFormat, export_spectra, golden_matvec, quantize_acts, sqnr_db
from tb import circulant_fft as tb_cf
from tb.runner import run

# k = 4: unsigned 6-bit activations, narrow weights and twiddles, one guard bit, few blocks;
# k = 8: the default schedule (8-bit signed activations, 12-bit weights, 16-bit twiddles, max_q = 64).
SIM_GRID = [
    CirculantParams(fmt=CirculantFormat(block=4, act_bits=6, act_signed=False, w_bits=8, tw_bits=10,
                                        guard_bits=1, max_q=8)),
    CirculantParams(fmt=CirculantFormat(block=8)),
]
LINT_GRID = SIM_GRID + [CirculantParams(fmt=CirculantFormat(block=16, tw_bits=18, w_bits=18, guard_bits=4))]


def ident(p):
    f = p.fmt
    return (f"k{f.block}-{'s' if f.act_signed else 'u'}{f.act_bits}-w{f.w_bits}-tw{f.tw_bits}-g{f.guard_bits}"
            f"-q{f.max_q}")


@pytest.mark.parametrize("kwargs, kind, message", [
    ({"fmt": 16}, TypeError, r"^Circulant format \(fmt\) must be a CirculantFormat, not 16$"),
    ({"arch": 1}, TypeError, r"^Architecture \(arch\) must be a string, not 1$"),
    ({"arch": "serial"}, ValueError, r"^Architecture \(arch\) must be one of 'parallel', 'streaming', not 'serial'$"),
    ({"arch": "streaming"}, ValueError,
     r"^Architecture \(arch\) must be 'parallel' for block sizes up to 16, not 'streaming' "
     r"\(the streaming architecture is not implemented yet\)$"),
    ({"fmt": CirculantFormat(block=32)}, ValueError,
     r"^Block size \(fmt\.block\) must be at most 16 for arch='parallel', not 32 "
     r"\(larger blocks need the streaming architecture, not implemented yet\)$"),
])
def test_params_errors(kwargs, kind, message):
    with pytest.raises(kind, match=message):
        CirculantParams(**kwargs)


def test_derived_values():
    p = CirculantParams(fmt=CirculantFormat(block=16))
    assert (p.block, p.latency, p.macs_per_cycle) == (16, 2 * 4 + 3, 256)
    assert (p.acc_bits, p.out_bits) == (p.fmt.acc_bits(), p.fmt.out_bits())
    assert [name for name, _ in p.input_layout] == ["x", "w", "last"]
    assert p.input_layout.size == 16 * 8 + 9 * 2 * 12 + 1
    assert p.output_layout.size == 16 * p.fmt.out_bits()
    # bin m of w is (re, im) at bits [2 m w_bits, 2 (m + 1) w_bits) of the field: export_spectra's order
    assert p.input_layout["w"].offset == 16 * 8 and p.bin_layout["im"].offset == 12
    assert [CirculantParams(fmt=CirculantFormat(block=k)).latency for k in (4, 8)] == [7, 9]
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
    assert sqnr_db(reference, real.reshape(rows, p * k)) > 40


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
