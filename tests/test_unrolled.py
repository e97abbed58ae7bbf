"""Unrolled constant-weight engines (issue 32): adder graphs (hw.adder_graph) and UnrolledNetwork in Verilator.

Expected values are independent of the code under test: ``x @ W.T`` by numpy for the graphs, the digit count of a
canonical signed-digit form by the ``v ^ 3v`` identity, and :meth:`sw.network.Network.golden` (the PE golden models
and :mod:`sw.requant`) for the RTL, which runs through the project's runner and the one cocotb testbench.
"""

import numpy as np
import pytest

from peforge.hw.adder_graph import adder_graph, csd
from peforge.hw.network.unrolled import UnrolledLayer, UnrolledNetwork
from peforge.sw.network import random_network
from peforge.sw.weights import NMWeights, SP2Weights


def _check(w, scheme, rng, *, lo=-128, hi=127, share=True):
    g = adder_graph(w, scheme=scheme, share=share)
    x = rng.integers(lo, hi, (64, w.shape[1]), endpoint=True)
    x[0], x[1] = lo, hi                                   # both corners of the input box
    x[2] = np.where(np.asarray(w).sum(axis=0) % 2 == 0, lo, hi)
    want = x @ np.asarray(w, np.int64).T
    assert np.array_equal(g.evaluate(x), want)
    r = g.output_ranges(lo, hi)
    assert all(a <= v <= b for row in want for v, (a, b) in zip(row, r))
    return g


def _sp2_matrix(rng, n_out, n_in):
    return np.asarray(SP2Weights.random(rng, n_in, n_out, 8, True, 1).dense(), np.int64)


def _nm_matrix(rng, n_out, n_in):
    return np.asarray(NMWeights.random(rng, n_in - n_in % 4 or 4, n_out, 8, True, 4).dense(), np.int64)


def _circulant_matrix(rng, p, q, k):
    c = rng.integers(-20, 21, (p, q, k))
    rows = [np.hstack([np.array([[c[i, j, (r - s) % k] for s in range(k)] for r in range(k)]) for j in range(q)])
            for i in range(p)]
    return np.vstack(rows)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("share", [True, False])
def test_graph_equals_the_matrix_product_for_every_scheme(seed, share):
    rng = np.random.default_rng(seed)
    n_out, n_in = int(rng.integers(1, 12)), int(rng.integers(1, 12))
    _check(rng.integers(-128, 128, (n_out, n_in)), "fixed", rng, share=share)
    _check(_sp2_matrix(rng, n_out, n_in), "sp2", rng, share=share)
    w = _nm_matrix(rng, n_out, n_in)
    assert (w == 0).any()
    g = _check(w, "nm", rng, share=share)
    assert g.terms == sum(len(csd(v)) for v in w.ravel())   # only the kept weights have terms
    _check(_circulant_matrix(rng, 2, 3, 4), "circulant", rng, share=share)


def test_graph_extremes_and_sizes_from_one():
    rng = np.random.default_rng(7)
    big = (1 << 31) - 1
    for w in (np.array([[1]]), np.array([[-1]]), np.zeros((3, 2), np.int64), np.array([[big, -big, 0]]),
              np.full((5, 4), -128), np.full((4, 5), 127), np.array([[0], [0], [3]])):
        g = _check(w, "fixed", rng, lo=-(1 << 15), hi=(1 << 15) - 1)
        assert g.n_out == w.shape[0] and g.n_in == w.shape[1]
    assert adder_graph(np.zeros((3, 2), np.int64)).adders == 0


def test_csd_is_the_non_adjacent_form():
    for v in list(range(-300, 301)) + [(1 << 31) - 1, -(1 << 31) + 1, 0x55555555]:
        digits = csd(v)
        assert sum(g << s for s, g in digits) == v
        shifts = [s for s, _ in digits]
        assert all(b - a >= 2 for a, b in zip(shifts, shifts[1:]))
        assert len(digits) == bin(abs(v) ^ 3 * abs(v)).count("1")   # the NAF weight of v: popcount(v ^ 3v)


def test_sharing_finds_repeated_patterns():
    rng = np.random.default_rng(1)
    row = rng.integers(-128, 128, 16)
    w = np.tile(row, (8, 1))                       # eight equal rows: one row's adders, shared
    shared, plain = adder_graph(w, share=True), adder_graph(w, share=False)
    assert shared.adders <= plain.adders
    assert shared.adders < 2 * shared.terms / 8
    w = _circulant_matrix(rng, 2, 2, 8)
    assert adder_graph(w).adders < adder_graph(w, share=False).adders


def test_carry_bits_leave_out_what_one_operand_passes_through():
    # x0 + (x1 << 2) over 8-bit signed inputs: -640 .. 635, 11 bits, the low 2 of them x0's own
    plus, minus, minuend = (adder_graph(np.array(w)) for w in ([[1, 4]], [[1, -4]], [[-1, 4]]))
    assert [g.adder_bits(-128, 127) for g in (plus, minus, minuend)] == [11, 11, 11]
    # x0 - (x1 << 2) too; (x1 << 2) - x0 negates x0 from bit 0 up: every bit takes a carry cell
    assert [g.carry_bits(-128, 127) for g in (plus, minus, minuend)] == [9, 9, 11]
    rng = np.random.default_rng(3)
    g = adder_graph(rng.integers(-128, 128, (6, 9)))
    assert 0 < g.carry_bits(-128, 127) < g.adder_bits(-128, 127)


def test_graph_refusals():
    with pytest.raises(ValueError, match=r"^Weights must be sums of at most two powers of two for scheme 'sp2', "
                                         r"not 7 \(at index \(0, 1\)\)$"):
        adder_graph(np.array([[1, 7]]), scheme="sp2")
    with pytest.raises(ValueError, match=r"^Weights must have shape \(n_out, n_in\), not \(3,\)$"):
        adder_graph(np.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"^Scheme must be one of 'fixed', 'sp2', 'msq', 'nm', 'circulant', "
                                         r"not 'x'$"):
        adder_graph(np.array([[1]]), scheme="x")
    with pytest.raises(TypeError, match=r"^Share must be a bool, not 1$"):
        adder_graph(np.array([[1]]), share=1)


def test_component_refusals():
    net = random_network(np.random.default_rng(0), depth=2, schemes=["fixed"], max_features=8)
    layer = net.layers[0]
    with pytest.raises(TypeError, match=r"^Layer must be a dense sw.network.Layer, not 3$"):
        UnrolledLayer(3)
    with pytest.raises(ValueError, match=rf"^Reuse must be an integer from 1 to {layer.in_bits}, not 0$"):
        UnrolledLayer(layer, reuse=0)
    with pytest.raises(ValueError, match=r"^Levels per stage must be an integer from 1 to 2, not 3$"):
        UnrolledLayer(layer, levels_per_stage=3)
    with pytest.raises(ValueError, match=r"^Requant must be three int arrays of shape "):
        UnrolledLayer(layer, requant=(np.ones(layer.out_features + 1, np.int64),) * 3)
    with pytest.raises(ValueError, match=r"^Reuse must be an int or one int per layer \(2\), not \[1\]$"):
        UnrolledNetwork(net, reuse=[1])
    circ = random_network(np.random.default_rng(2), depth=2, schemes=["circulant"], max_features=16)
    with pytest.raises(ValueError, match=r"^Layer scheme must be one of 'fixed', 'sp2', 'msq', 'nm' to unroll, "
                                         r"not 'circulant'$"):
        UnrolledLayer(circ.layers[0])


# -- RTL == golden in Verilator (tb/unrolled.py through tb/runner.py: one build directory per configuration) -------

def _minimal(net):
    from peforge.bench.unrolled import minimal_requants

    return tuple(minimal_requants(net))


RTL_CONFIGS = {
    # seed, depth, max_features, rounding, reuse, levels per stage, the bench's minimal requantisation, skid
    "half_even-ii1-l2": (0, 3, 12, "half_even", 1, 2, False, False),             # fixed, sp2, nm; signed inputs
    "half_up-reuse3-l1-minimal-skid": (6, 3, 12, "half_up", 3, 1, True, True),   # sp2, fixed, sp2; signed digits
    "floor-size1-reuse2-l2": (12, None, 8, "floor", 2, 2, False, False),         # 6 -> 1 -> 8 -> 2 features
}


@pytest.mark.parametrize("name", RTL_CONFIGS)
def test_rtl_equals_golden(name):
    """The shared checks of tb/bench.py: random samples under every valid/ready stall mix, extreme samples, reset
    with samples in flight and with results pending, and the predicted interval and latency."""
    from peforge.tb.runner import run_design
    from peforge.tb.unrolled import CHECKS, UnrolledDesign

    seed, depth, features, rounding, reuse, levels, minimal, skid = RTL_CONFIGS[name]
    net = random_network(np.random.default_rng(seed), depth=depth, schemes=["fixed", "sp2", "nm"],
                         max_features=features, rounding=rounding)
    design = UnrolledDesign(net, reuse, levels, _minimal(net) if minimal else None, skid)
    cycles = []   # digit-serial: digits of ceil(bits / reuse) bits, as many as it takes to cover the input bits
    for layer in net.layers:
        digit = -(-layer.in_bits // min(reuse, layer.in_bits))
        cycles.append(-(-layer.in_bits // digit))
    assert design.component().interval == max(cycles) and (reuse == 1) == (max(cycles) == 1)
    tests, failures = run_design(design, testcases=CHECKS, seed=seed + 1)
    assert (tests, failures) == (len(CHECKS), 0)


def test_rtl_batch_api_equals_golden_and_counts_cycles():
    """tb.unrolled.rtl_unrolled (the bench's check) on the first configuration's network (its build is reused)."""
    from peforge.tb.unrolled import rtl_unrolled

    seed, depth, features, rounding, reuse, levels, _, _ = RTL_CONFIGS["half_even-ii1-l2"]
    net = random_network(np.random.default_rng(seed), depth=depth, schemes=["fixed", "sp2", "nm"],
                         max_features=features, rounding=rounding)
    x = np.random.default_rng(5).integers(*net.input.range, (40, net.in_features), endpoint=True)
    y, stats = rtl_unrolled(net, x, reuse=reuse, levels_per_stage=levels, p_valid=0.6, p_ready=0.6)
    assert np.array_equal(y, net.golden(x))
    assert stats["cycles"] >= len(x) and stats["latency"] > 0
    with pytest.raises(ValueError, match=rf"^Network input must have shape \(N, {net.in_features}\), not \(2, 1\)$"):
        rtl_unrolled(net, np.zeros((2, 1), np.int64))
