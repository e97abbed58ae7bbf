"""nm-sparse: parameters, elaboration and lint, RTL vs golden in Verilator, the batch API vs numpy."""


import numpy as np
import pytest

from peforge.hw.nm_sparse import NMSparse, NMSparseParams
from peforge.hw.verilog import lint, write_design
from peforge.hw import registry
from peforge.sw.nm import NMFormat
from peforge.tb import nm_sparse as tb_nm
from peforge.tb.runner import run
from peforge.tb.batch import SimStats

# 2:4, 1:4, 2:8, 4:8, 1:16; signed and unsigned activations; 1 and 4 groups; DSP and LUT multipliers; the
# target DSP primitives with their own registers (hw/dsp.py: ECP5 MULT18X18D with one adder per stage, iCE40
# SB_MAC16) next to inferred multiplies
GRID = [
    NMSparseParams(fmt=NMFormat(2, 4), groups=4, act_signed=True, w_bits=8, max_len=128),
    NMSparseParams(fmt=NMFormat(1, 4), groups=1, act_signed=False, w_bits=4, max_len=24, dsp=False),
    NMSparseParams(fmt=NMFormat(2, 8), groups=4, act_signed=False, w_bits=8, max_len=256, dsp_cell="MULT18X18D",
                   tree_levels=1),
    NMSparseParams(fmt=NMFormat(4, 8), groups=1, act_signed=True, w_bits=6, max_len=40, mux_register=False),
    NMSparseParams(fmt=NMFormat(1, 16), groups=4, act_signed=True, act_bits=4, w_bits=8, max_len=512,
                   dsp_cell="SB_MAC16"),
    NMSparseParams(fmt=NMFormat(2, 4), groups=1, act_signed=True, w_bits=8, max_len=4096),
]


def ident(p):
    return (f"{p.fmt.n}of{p.fmt.m}-g{p.groups}-{'s' if p.act_signed else 'u'}{p.act_bits}-w{p.w_bits}"
            f"{'' if p.dsp else 'lut'}{'' if p.mux_register else '-nomuxreg'}-k{p.max_len}"
            f"{'' if p.dsp_cell in ('target', 'inferred') else '-' + p.dsp_cell}"
            f"{'' if p.tree_levels == 2 else f'-t{p.tree_levels}'}")


@pytest.mark.parametrize("kwargs, kind, message", [
    ({"groups": 0}, ValueError, r"^Groups must be an integer from 1 to 64, not 0$"),
    ({"fmt": (2, 4)}, TypeError, r"^N:M format \(fmt\) must be an NMFormat, not \(2, 4\)$"),
    ({"fmt": NMFormat(2, 8), "max_len": 4}, ValueError,
     r"^Maximum vector length \(max_len\) must be an integer from 8 to 16777216, not 4$"),
    ({"mux_register": "no"}, TypeError, r"^Mux register \(mux_register\) must be a bool, not 'no'$"),
    ({"w_bits": 1}, ValueError, r"^Weight bits must be an integer from 2 to 16, not 1$"),
])
def test_params_errors(kwargs, kind, message):
    with pytest.raises(kind, match=message):
        NMSparseParams(**kwargs)


def test_derived_values():
    p = NMSparseParams(fmt=NMFormat(2, 4), groups=4)
    assert (p.lanes, p.acts_per_beat, p.macs_per_cycle) == (8, 16, 16)
    # mux register + product register + 2 tree stages (8 operands: 3 levels) + accumulator
    assert p.latency == 1 + 1 + 2 + 1
    layout = p.input_layout
    assert layout.size == 16 * 8 + 8 * 8 + 8 * 2 + 1 + 1
    assert [name for name, _ in layout] == ["acts", "values", "indices", "dense", "last"]
    # dense mode bounds the accumulator: max_len products of (-128) * (-128)
    assert p.acc_bits == (4096 * 128 * 128).bit_length() + 1


@pytest.mark.parametrize("params", GRID, ids=ident)
def test_generate_and_lint(tmp_path, params):
    pe = registry.get("nm-sparse")
    manifest = write_design(pe, params, tmp_path)
    assert manifest["ports"]["i__payload"]["width"] == params.input_layout.size
    lint(tmp_path / "nm_sparse.v", "nm_sparse")


@pytest.mark.parametrize("params", GRID, ids=ident)
def test_nm_sparse_cocotb(params):
    tests, failures = run("nm-sparse", params, testcases=tb_nm.CHECKS, tag="pytest")
    assert (tests, failures) == (len(tb_nm.CHECKS), 0)


def dense_reference(acts, values, indices, n, m):
    """Scatter the packed weights into a dense matrix (independently of sw.nm) and multiply."""
    rows, K = acts.shape
    w = np.zeros((rows, K), dtype=np.float64)
    for r in range(rows):
        for s in range(values.shape[1]):
            g = s // n
            w[r, g * m + indices[r, s]] += values[r, s]
    return (acts.astype(np.float64) * w).sum(axis=1)


@pytest.mark.parametrize("params", GRID[:3], ids=ident)
def test_rtl_dot_vs_numpy(params):
    rng = np.random.default_rng(7)
    n, m = params.fmt.n, params.fmt.m
    K = params.max_len // m * m
    a_lo, a_hi = params.act_range
    acts = rng.integers(a_lo, a_hi, (30, K), endpoint=True)
    values = rng.integers(-2 ** (params.w_bits - 1), 2 ** (params.w_bits - 1) - 1, (30, K // m * n), endpoint=True)
    indices = rng.integers(0, m, values.shape)
    acts[0] = a_lo
    values[0] = -2 ** (params.w_bits - 1)
    got = tb_nm.rtl_dot(acts, values, indices, params, p_valid=0.8, p_ready=0.7)
    np.testing.assert_array_equal(got, dense_reference(acts, values, indices, n, m).astype(np.int64))
    # dense mode on the same multipliers
    dense_w = rng.integers(-2 ** (params.w_bits - 1), 2 ** (params.w_bits - 1) - 1, (30, K), endpoint=True)
    got = tb_nm.rtl_dot(acts, dense_w, None, params, dense=True)
    np.testing.assert_array_equal(got, (acts.astype(np.float64) * dense_w).sum(axis=1).astype(np.int64))


def test_batch_stats_are_the_simulated_cycles():
    """Full beats back to back without stalls: ``n_beats + latency`` cycles (see tests/test_tb_dot.py)."""
    p = GRID[1]
    rng = np.random.default_rng(5)
    rows, K = 20, 2 * p.acts_per_beat
    acts = rng.integers(*p.act_range, (rows, K), endpoint=True)
    values = rng.integers(-8, 7, (rows, K // p.fmt.m * p.fmt.n), endpoint=True)
    indices = rng.integers(0, p.fmt.m, values.shape)
    y, stats = tb_nm.rtl_dot(acts, values, indices, p, stats=True)
    np.testing.assert_array_equal(y, dense_reference(acts, values, indices, p.fmt.n, p.fmt.m).astype(np.int64))
    assert stats == SimStats(cycles=2 * rows + p.latency, beats=2 * rows)


def test_rtl_dot_errors():
    p = GRID[0]
    with pytest.raises(ValueError, match=r"^Vector length K must be a multiple of M=4 in sparse mode, not 6$"):
        tb_nm.rtl_dot(np.zeros((1, 6), int), np.zeros(3, int), np.zeros(3, int), p)
    with pytest.raises(ValueError, match=r"^Indices must be integers from 0 to 3, not 4 "):
        tb_nm.rtl_dot(np.zeros((1, 4), int), [1, 2], [0, 4], p)
    with pytest.raises(ValueError, match=r"^Values must have shape \[2\] or \[1, 2\], not \[1, 3\]$"):
        tb_nm.rtl_dot(np.zeros((1, 4), int), [[1, 2, 3]], [0, 1], p)


def test_testbench_catches_mutant(mutants):
    ran, failures = run("nm-sparse-reversed-index", GRID[1], testcases=["random_stalls", "every_code"],
                          tag="mutant")
    assert ran == 2 and failures == 2


def test_component_type_check():
    from peforge.hw.sp2_mac import SP2MacParams
    with pytest.raises(TypeError, match=r"^NMSparse params must be NMSparseParams, not "):
        NMSparse(SP2MacParams())
