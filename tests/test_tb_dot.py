"""The dot-product PEs in RTL (Verilator + cocotb) against golden, and the batch API against numpy.

Each configuration is built once (``build/sim/<pe>-<digest>``) and runs every cocotb test of its PE:
random vectors with lengths 1..max_len under random valid/ready stalls, extreme values, every weight
code in every lane, reset in the middle of a vector and with results pending, II = 1 and the latency.
"""


import numpy as np
import pytest

from peforge.hw.fixed_mac import FixedMacParams
from peforge.hw.sp2_mac import SP2MacParams
from peforge.sw.sp2 import SP2Format
from peforge.tb import fixed_mac as tb_fixed
from peforge.tb import sp2_mac as tb_sp2
from peforge.tb.batch import SimStats
from peforge.tb.runner import run

COCOTB_TESTS = tb_sp2.CHECKS


# lanes 1/4/8, signed and unsigned activations, SP2 4/5/6 bits (incl. m2 = 0 and m2 = m1)
SP2_GRID = [
    SP2MacParams(lanes=1, act_signed=True, fmt=SP2Format(4, 2), max_len=64),
    SP2MacParams(lanes=1, act_signed=False, fmt=SP2Format(5, 2), max_len=33),
    SP2MacParams(lanes=4, act_signed=True, fmt=SP2Format(6, 3), max_len=64),
    SP2MacParams(lanes=4, act_signed=False, fmt=SP2Format(4, 3), max_len=7),
    SP2MacParams(lanes=8, act_signed=True, fmt=SP2Format(5, 3), max_len=4096),
    SP2MacParams(lanes=8, act_signed=False, act_bits=6, fmt=SP2Format(6, 3), max_len=100),
]
# DSP lanes through each target's primitive and its simulation model (hw/dsp.py: one more register stage,
# which the latency test measures); inferred DSP products are covered by nm-sparse and the networks
FIXED_GRID = [
    FixedMacParams(lanes=1, act_signed=True, w_bits=8, dsp=True, dsp_cell="MULT18X18D", max_len=64),
    FixedMacParams(lanes=4, act_signed=False, w_bits=4, dsp=False, max_len=64),
    FixedMacParams(lanes=8, act_signed=True, w_bits=4, dsp=False, max_len=4096),
    FixedMacParams(lanes=3, act_signed=True, act_bits=12, w_bits=12, dsp=True, dsp_cell="SB_MAC16", max_len=50),
]


def ident(p):
    dsp = ("dsp" if p.dsp_cell == "target" else p.dsp_cell) if getattr(p, "dsp", False) else "lut"
    fmt = f"sp2{p.fmt.bits}m{p.fmt.m1}" if hasattr(p, "fmt") else f"w{p.w_bits}{dsp}"
    return f"l{p.lanes}-{'s' if p.act_signed else 'u'}{p.act_bits}-{fmt}-k{p.max_len}"


def sp2_value(code: int, bits: int, m1: int) -> int:
    """The SP2 definition of docs/sp2-mac.md, written out independently of sw.sp2."""
    m2 = bits - 1 - m1
    E = 2 ** m1 - 1
    sign, e1, e2 = code >> (bits - 1), (code >> m2) & (2 ** m1 - 1), code & (2 ** m2 - 1)
    term = lambda e: 0 if e == 0 else 2 ** (E - e)
    return (-1) ** sign * (term(e1) + term(e2))


def random_batch(rng, p, lo_w, hi_w, rows=40):
    a_lo, a_hi = p.act_range
    K = int(rng.integers(1, p.max_len, endpoint=True)) if p.max_len > 1 else 1
    K = min(K, 300)
    acts = rng.integers(a_lo, a_hi, (rows, K), endpoint=True)
    weights = rng.integers(lo_w, hi_w, (rows, K), endpoint=True)
    acts[0], acts[1] = a_lo, a_hi          # extreme rows
    weights[0] = weights[1] = hi_w
    acts[2] = 0
    return acts, weights


@pytest.mark.parametrize("params", SP2_GRID, ids=ident)
def test_sp2_mac_cocotb(params):
    tests, failures = run("sp2-mac", params, testcases=COCOTB_TESTS, tag="pytest")
    assert (tests, failures) == (len(COCOTB_TESTS), 0)


@pytest.mark.parametrize("params", FIXED_GRID, ids=ident)
def test_fixed_mac_cocotb(params):
    tests, failures = run("fixed-mac", params, testcases=COCOTB_TESTS, tag="pytest")
    assert (tests, failures) == (len(COCOTB_TESTS), 0)


@pytest.mark.parametrize("params", SP2_GRID[::2], ids=ident)
def test_sp2_rtl_dot_vs_numpy(params):
    rng = np.random.default_rng(params.lanes)
    acts, codes = random_batch(rng, params, 0, 2 ** params.fmt.bits - 1)
    table = np.array([sp2_value(c, params.fmt.bits, params.fmt.m1) for c in range(2 ** params.fmt.bits)])
    expected = (acts.astype(np.float64) * table[codes]).sum(axis=1)
    got = tb_sp2.rtl_dot(acts, codes, params, p_valid=0.7, p_ready=0.6)
    assert got.dtype == np.int64 and got.shape == (len(acts),)
    np.testing.assert_array_equal(got, expected.astype(np.int64))


@pytest.mark.parametrize("params", FIXED_GRID[1:3], ids=ident)
def test_fixed_rtl_dot_vs_numpy(params):
    rng = np.random.default_rng(params.lanes)
    lo, hi = -2 ** (params.w_bits - 1), 2 ** (params.w_bits - 1) - 1
    acts, weights = random_batch(rng, params, lo, hi)
    weights[3] = lo
    expected = (acts.astype(np.float64) * weights).sum(axis=1)
    got = tb_fixed.rtl_dot(acts, weights, params)
    np.testing.assert_array_equal(got, expected.astype(np.int64))


def test_rtl_dot_broadcast_weights_and_errors():
    p = SP2_GRID[0]
    acts = np.array([[1, 2, 3], [-4, 5, -6]])
    codes = np.array([0b0010, 0b1010, 0b0001])  # +4, -4, +4 (e1 = 1, and the non-canonical e2 = 1)
    np.testing.assert_array_equal(tb_sp2.rtl_dot(acts, codes, p), [4 - 8 + 12, -16 - 20 - 24])
    with pytest.raises(ValueError, match=r"^Codes must be integers from 0 to 15, not 16 \(at index 2\)$"):
        tb_sp2.rtl_dot(acts, [1, 2, 16], p)
    with pytest.raises(ValueError, match=r"^Vector length K must be at most max_len=64, not 65$"):
        tb_sp2.rtl_dot(np.zeros((1, 65), int), np.zeros(65, int), p)
    with pytest.raises(ValueError, match=r"^Acts must be integers from -128 to 127, not 128 "):
        tb_sp2.rtl_dot([[128]], [1], p)
    assert tb_sp2.rtl_dot(np.zeros((0, 3), int), codes, p).shape == (0,)


@pytest.mark.parametrize("rtl_dot, params, beats", [(tb_sp2.rtl_dot, SP2_GRID[2], 3), (tb_fixed.rtl_dot, FIXED_GRID[1], 1)])
def test_batch_stats_are_the_simulated_cycles(rtl_dot, params, beats):
    """Back to back without stalls, beat n is accepted in cycle n (from 0) and a vector's result is
    transferred in the cycle ``latency`` after its last beat: the run takes ``n_beats + latency`` cycles."""
    rng = np.random.default_rng(3)
    rows = 25
    K = params.lanes * beats
    acts = rng.integers(*params.act_range, (rows, K), endpoint=True)
    weights = np.ones((rows, K), np.int64)      # SP2 code 1 (its value from the table), fixed weight 1
    y, stats = rtl_dot(acts, weights, params, stats=True)
    one = params.fmt.table[1] if hasattr(params, "fmt") else 1
    np.testing.assert_array_equal(y, acts.sum(axis=1) * one)
    assert stats == SimStats(cycles=rows * beats + params.latency, beats=rows * beats)
    assert rtl_dot(acts[:0], weights[0], params, stats=True)[1] == SimStats(0, 0)


@pytest.mark.parametrize("pe, params", [("sp2-mac-drops-carry", SP2_GRID[0]),
                                        ("fixed-mac-truncates", FIXED_GRID[1])])
def test_testbench_catches_mutants(mutants, pe, params):
    """A testbench that cannot fail proves nothing: broken PEs must fail it."""
    ran, failures = run(pe, params, testcases=["random_stalls", "every_code"], tag="mutant")
    assert ran == 2 and failures == 2
