"""Whole-network accelerators (hw/network.py, tb/network.py): planning and folding, lint of generated
networks, the whole network in one Verilator simulation against the golden model, and the command line.

The random networks come from :func:`sw.network.random_network` (every scheme, depth 1 to 4, odd sizes); the
expected logits come from :meth:`sw.network.Network.golden`, itself checked against independent integer
arithmetic in ``tests/test_sw_network.py``.
"""

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from peforge.hw.network import (CompiledNetwork, Folding, LayerFolding, default_folding, load_compiled, plan_engine,
                        plan_network)
from peforge.hw.verilog import lint, to_verilog
from peforge.sw import network as net
from peforge.sw.sp2 import SP2Format

ROOT = Path(__file__).resolve().parent.parent


def fixed_layer(rng, n_in, n_out, *, relu=True, out_bits=8, in_bits=8, in_signed=False, out_signed=False):
    w = rng.integers(-128, 128, (n_out, n_in))
    return net.Layer(net.FixedWeights(w, 8), multiplier=rng.integers(1 << 20, 1 << 21, n_out), shift=30,
                     offset=rng.integers(-(1 << 28), 1 << 28, n_out), relu=relu, in_bits=in_bits,
                     in_signed=in_signed, out_bits=out_bits, out_signed=out_signed)


def two_layer(rng, n_in=10, hidden=12, n_out=3) -> net.Network:
    first = fixed_layer(rng, n_in, hidden)
    last = fixed_layer(rng, hidden, n_out, relu=False, out_bits=16, out_signed=True)
    return net.Network(net.InputSpec(n_in, 8, False), (first, last))


# -- plans and folding -----------------------------------------------------------------------------------------

def test_plan_counts_beats_groups_and_cycles():
    network = two_layer(np.random.default_rng(0))
    plan = plan_engine(network.layers[0], LayerFolding(lanes=4, pes=3))
    # 10 inputs in beats of 4: 3 beats; 12 rows on 3 slots: 4 groups; per group max(3 beats, 3 results)
    assert (plan.lanes, plan.beats, plan.groups, len(plan.slots), plan.width) == (4, 3, 4, 3, 1)
    assert [s.rows for s in plan.slots][0] == ((0,), (3,), (6,), (9,))
    assert plan.multipliers == 12 and plan.macs == 120
    assert plan.cycles == max(10, 4 * max(3, 3)) == 12
    # padding rows: 12 rows on 5 slots leave 3 empty entries in the last group
    plan = plan_engine(network.layers[0], LayerFolding(lanes=10, pes=5))
    assert plan.groups == 3 and sum(r == (-1,) for s in plan.slots for r in s.rows) == 3


def test_default_folding_balances_to_the_slowest_stream():
    rng = np.random.default_rng(1)
    layers = (fixed_layer(rng, 64, 32), fixed_layer(rng, 32, 10, relu=False, out_bits=16, out_signed=True))
    network = net.Network(net.InputSpec(64, 8, False), layers)
    compiled = CompiledNetwork(network, default_folding(network))
    # loading 64 inputs takes 64 cycles: every engine is folded to keep up with that, and no faster
    assert compiled.interval == 64
    assert [p.cycles <= 64 for p in compiled.plans] == [True, True]
    first = compiled.plans[0]
    assert first.multipliers * 64 >= 64 * 32  # enough multiplier lanes for 2048 MACs in 64 cycles
    assert first.macs / (first.multipliers * compiled.interval) >= 0.9


@pytest.mark.parametrize("scheme, folding, message", [
    ("fixed", LayerFolding(lanes=4, pes=13), r"Layer fixed pes must be at most its 12 output rows, not 13"),
    ("nm", LayerFolding(lanes=6, pes=1), r"Layer nm lanes must be a multiple of M = 4, not 6"),
    ("circulant", LayerFolding(lanes=4, pes=1), r"Layer circulant lanes must be the block size 8 \(or left at 1\), "
                                                r"not 4"),
])
def test_bad_folding_is_one_line(scheme, folding, message):
    rng = np.random.default_rng(2)
    if scheme == "fixed":
        layer = fixed_layer(rng, 10, 12)
    else:
        layer = next(l for seed in range(200)
                     for l in net.random_network(np.random.default_rng(seed), schemes=[scheme]).layers
                     if l.scheme == scheme and (scheme != "nm" or l.weights.fmt.m == 4)
                     and (scheme != "circulant" or l.weights.fmt.block == 8))
    with pytest.raises(ValueError, match=rf"^{message}$"):
        plan_engine(layer, folding)


def test_folding_sweep_points_slow_down_and_shrink():
    from peforge.hw.network import folding_at, plan_network, slowest_interval

    rng = np.random.default_rng(1)
    layers = (fixed_layer(rng, 64, 32), fixed_layer(rng, 32, 10, relu=False, out_bits=16, out_signed=True))
    network = net.Network(net.InputSpec(64, 8, False), layers)
    assert folding_at(network, 64) == default_folding(network)
    # every layer fully folded: 64 beats x 32 rows on one lane
    assert slowest_interval(network) == 64 * 32
    points = [plan_network(network, folding_at(network, t)) for t in (64, 256, 1024, 2048)]
    intervals = [max(p.cycles for p in plans) for plans in points]
    multipliers = [sum(p.multipliers for p in plans) for plans in points]
    assert intervals == sorted(intervals) and all(i <= t for i, t in zip(intervals, (64, 256, 1024, 2048)))
    assert multipliers == sorted(multipliers, reverse=True) and multipliers[-1] == 2


def test_budget_folding_fits_the_dsps_and_says_when_it_cannot():
    from peforge.hw.network import Budget

    rng = np.random.default_rng(1)
    layers = (fixed_layer(rng, 64, 32), fixed_layer(rng, 32, 10, relu=False, out_bits=16, out_signed=True))
    network = net.Network(net.InputSpec(64, 8, False), layers)
    for dsps in (8, 20, 200):
        plans = plan_network(network, default_folding(network, Budget(dsps=dsps, dsp_bits=16)))
        assert sum(p.dsps(16) for p in plans) <= dsps
    # plenty of DSPs: the same folding as without a budget
    assert default_folding(network, Budget(dsps=200, dsp_bits=18)) == default_folding(network)
    # serial requantisers use no DSP: with 2 DSPs only the two multiplier lanes remain
    tight = plan_network(network, default_folding(network, Budget(dsps=2, dsp_bits=16)))
    assert [p.folding.requant > 1 for p in tight] == [True, True] and sum(p.multipliers for p in tight) == 2
    with pytest.raises(ValueError, match=r"^Network must fit 1 DSPs: its slowest folding still needs 2$"):
        default_folding(network, Budget(dsps=1, dsp_bits=16))


def test_settings_refold_and_name_the_bad_one():
    compiled = CompiledNetwork.default(two_layer(np.random.default_rng(3)))
    refolded = compiled.with_settings({"layer.0.lanes": "2", "layer.1.pes": "3"})
    assert refolded.folding.layers[0].lanes == 2 and refolded.folding.layers[1].pes == 3
    assert refolded.digest() != compiled.digest()
    with pytest.raises(ValueError, match=r"^Setting 'layer.2.lanes' must name a layer from 0 to 1, not 2$"):
        compiled.with_settings({"layer.2.lanes": "2"})
    with pytest.raises(ValueError, match=r"^Setting 'layer.0.width' must be layer.N.lanes, layer.N.pes, "
                                         r"layer.N.requant, layer.N.impl or layer.N.reuse, not 'width'$"):
        compiled.with_settings({"layer.0.width": "2"})
    with pytest.raises(ValueError, match=r"^layer\.0\.lanes: Lanes must be an integer from 1 to 4096, not 0$"):
        compiled.with_settings({"layer.0.lanes": "0"})
    with pytest.raises(ValueError, match=r"^layer\.1\.pes: PEs \(pes\) must be an integer from 1 to 1024, not 0$"):
        compiled.with_settings({"layer.1.pes": "0"})
    with pytest.raises(ValueError, match=r"^layer\.1: Layer fixed pes must be at most its 3 output rows, not 4$"):
        compiled.with_settings({"layer.1.pes": "4"})


# -- unrolled layers (impl="unrolled": hw/network/unrolled.py) in the engine table -----------------------------

def test_folding_text_is_read_back_and_folded_digests_stay():
    for text in ("16x2", "1x7/r9", "u", "u/reuse4"):
        assert LayerFolding.parse(text).text() == text
    assert LayerFolding.parse("u/reuse4") == LayerFolding(impl="unrolled", reuse=4)
    # impl and reuse are left out at their defaults: a folded layer's manifest and digest are what they were
    assert LayerFolding(4, 2).to_dict() == {"lanes": 4, "pes": 2, "requant": 1}
    assert LayerFolding.from_dict({"lanes": 1, "pes": 1, "impl": "unrolled", "reuse": 3}).text() == "u/reuse3"
    with pytest.raises(ValueError, match=r"^Layer folding must be LANESxPES, LANESxPES/rCYCLES, u or u/reuseR, "
                                         r"not 'u/r4'$"):
        LayerFolding.parse("u/r4")
    with pytest.raises(ValueError, match=r"^Reuse must be 1 for a folded layer \(reuse is an unrolled layer's\), "
                                         r"not 2$"):
        LayerFolding(reuse=2)
    with pytest.raises(ValueError, match=r"^Implementation \(impl\) must be one of 'folded', 'unrolled', not 'x'$"):
        LayerFolding(impl="x")


def test_unrolled_layers_plan_cost_and_settings(tmp_path):
    from peforge.hw.network import cost, engine_for
    from peforge.hw.network.unrolled import layer_graphs

    compiled = CompiledNetwork.default(two_layer(np.random.default_rng(3)))    # 10 -> 12 -> 3, fixed, 8-bit inputs
    mixed = compiled.with_settings({"layer.0": "u/reuse3", "layer.1.impl": "unrolled"})
    assert mixed.folding.text() == "u/reuse3, u" and mixed.digest() != compiled.digest()
    first, last = mixed.plans
    # reuse 3 of 8 bits: 3-bit digits, 3 cycles a vector; loading 10 inputs and sending 12 outputs take longer
    assert (first.interval, first.cycles, last.interval, last.cycles) == (3, 12, 1, 12)
    assert mixed.interval == 12 and not first.slots and first.multipliers == 0
    assert [p.dsps(18) for p in mixed.plans] == [0, 0] and mixed.busy(12) is None
    # the LUT model: every carry-chain bit at the fitted rate, plus the gather and the scatter
    graphs = layer_graphs(first.layer, 3)
    assert 0 < graphs.carry_bits() < graphs.adder_bits()      # the low bits of shifted operands pass through
    assert cost.unrolled_lut(first) == pytest.approx(cost.UNROLLED_LUT_PER_CARRY_BIT * graphs.carry_bits() + 10
                                                     + 12 * 8 / 2)
    assert cost.unrolled_lut(compiled.plans[0]) == 0
    if cost.luts(compiled.plans) is not None:
        assert cost.luts(mixed.plans) > cost.unrolled_lut(first) + cost.unrolled_lut(last)
    # the search offers the smallest reuse of each interval; a layer folds back, and its lanes come back too
    offered = engine_for(first.layer, "unrolled").candidates(first.layer)     # 8-bit inputs: 1, 2, 3, 4, 8 cycles
    assert [f.text() for f in offered] == ["u", "u/reuse2", "u/reuse3", "u/reuse4", "u/reuse8"]
    assert mixed.with_settings({"layer.1": "3x2"}).folding.text() == "u/reuse3, 3x2"
    with pytest.raises(ValueError, match=r"^layer\.0: Layer fixed reuse must be at most its 8 input bits, not 9$"):
        compiled.with_settings({"layer.0.impl": "unrolled", "layer.0.reuse": "9"})
    with pytest.raises(ValueError, match=r"^layer\.1\.reuse: Reuse must be 1 for a folded layer \(reuse is an "
                                         r"unrolled layer's\), not 2$"):
        compiled.with_settings({"layer.1.reuse": "2"})
    # the manifest carries the implementation; the directory reads back to the same compiled network
    manifest = mixed.write(tmp_path)
    assert manifest["folding"][0] == {"lanes": 1, "pes": 1, "requant": 1, "impl": "unrolled", "reuse": 3}
    assert [r["impl"] for r in manifest["layers"]] == ["unrolled", "unrolled"]
    again = load_compiled(tmp_path)
    assert again.digest() == mixed.digest() and again.folding == mixed.folding
    assert not list((tmp_path / "memories").glob("*.hex"))     # constants in the adder graphs, no memories


def test_compiled_directory_round_trip(tmp_path):
    compiled = CompiledNetwork.default(two_layer(np.random.default_rng(4))).with_settings({"layer.0.lanes": "4"})
    manifest = compiled.write(tmp_path)
    again = load_compiled(tmp_path)
    assert again.digest() == compiled.digest() == manifest["digest"]
    assert again.network == compiled.network and again.folding == compiled.folding
    assert compiled.is_written_in(tmp_path)
    # the memory image holds the weights: slot 0's first word is row 0, inputs 0..3, lane 0 at the LSBs
    first = int((tmp_path / "memories" / "layer0_slot0.hex").read_text().split()[0], 16)
    w = compiled.network.layers[0].weights.weights
    assert first == sum((int(v) & 0xFF) << (8 * n) for n, v in enumerate(w[0, :4]))
    (tmp_path / "compiled.json").write_text(json.dumps({"format": "peforge-compiled", "version": 1,
                                                        "folding": [{"lanes": 0, "pes": 1}] * 2}))
    with pytest.raises(ValueError, match=r"compiled.json: folding: Lanes must be an integer from 1 to 4096, not 0$"):
        load_compiled(tmp_path)


@pytest.mark.parametrize("seed", range(3))
def test_random_networks_lint_clean(tmp_path, seed):
    rng = np.random.default_rng(100 + seed)
    network = net.random_network(rng, depth=int(rng.integers(1, 5)))
    compiled = CompiledNetwork.default(network)
    path = tmp_path / "accelerator.v"
    path.write_text(to_verilog(compiled.build(), "accelerator"))
    lint(path, "accelerator")


# -- the whole network in Verilator ------------------------------------------------------------------------------

def _rtl_network(seed: int, schemes=None, depth=None) -> CompiledNetwork:
    rng = np.random.default_rng(seed)
    rounding, narrow = ROUNDING.get(seed, ("half_up", False))
    network = net.random_network(rng, depth=depth, schemes=schemes, max_features=12, rounding=rounding, narrow=narrow)
    if rounding != "half_up":
        network = _power_of_two_scales(network)
    compiled = CompiledNetwork.default(network)
    if len(compiled.plans) > 1:  # fold one layer away from the default, so non-default foldings run too
        p = compiled.plans[0]
        if p.scheme in ("fixed", "sp2", "msq") and p.layer.out_features > 2:
            compiled = compiled.with_settings({"layer.0.pes": str(2 + seed % (p.layer.out_features - 1))})
    # serial requantisers (shifts and adds over several cycles), one of them the slowest stage of its network
    layer, cycles = SERIAL_REQUANT.get(seed, (None, 1))
    if layer is not None:
        compiled = compiled.with_settings({f"layer.{layer}.requant": str(cycles)})
    return compiled


#: seed -> (layer, requantiser cycles) for the RTL networks
SERIAL_REQUANT = {11: (1, 3), 13: (0, 7)}
#: seed -> (rounding, narrow output ranges) for the RTL networks (the others: half up, full ranges)
ROUNDING = {12: ("half_even", True), 13: ("floor", False), 14: ("half_even", False)}


def _power_of_two_scales(network: net.Network) -> net.Network:
    """``network`` with every multiplier rounded to a power of two (at most ``2^(S-1)``) and every offset to a
    multiple of it (the QONNX/FINN convention), so that ``acc * M + B`` lands exactly halfway between outputs
    often: the rounding modes differ only there."""
    layers = []
    for layer in network.layers:
        e = np.minimum(np.rint(np.log2(np.maximum(layer.multiplier, 1))), layer.shift - 1).astype(np.int64)
        m = np.left_shift(1, e)
        b = np.rint(layer.offset / m).astype(np.int64) * m
        layers.append(dataclasses.replace(layer, multiplier=m, offset=b))
    return net.Network(network.input, tuple(layers))


#: networks the RTL tests draw: together they hold every scheme, mixed, at depths 1 to 4
RTL_NETWORKS = [(11, None, 4), (12, ["crossbar", "circulant"], 2), (13, ["msq", "nm", "sp2"], 3), (14, ["fixed"], 1)]


def test_rtl_networks_cover_every_scheme():
    schemes = {layer.scheme for seed, s, d in RTL_NETWORKS for layer in _rtl_network(seed, s, d).network.layers}
    assert schemes == set(net.SCHEMES), schemes
    assert {len(_rtl_network(seed, s, d).plans) for seed, s, d in RTL_NETWORKS} == {1, 2, 3, 4}


@pytest.mark.parametrize("seed, schemes, depth", RTL_NETWORKS)
def test_rtl_network_equals_golden(seed, schemes, depth):
    """Every sample under every stall mix, extremes, resets mid-sample and with results pending, and the
    steady-state interval measured in the simulation against the prediction (tb/network.py)."""
    from peforge.tb.network import CHECKS, NetworkDesign
    from peforge.tb.runner import run_design

    compiled = _rtl_network(seed, schemes, depth)
    tests, failures = run_design(NetworkDesign(compiled), testcases=CHECKS, seed=seed)
    assert (tests, failures) == (len(CHECKS), 0), [p.scheme for p in compiled.plans]


#: RTL networks built for a target: (index into RTL_NETWORKS, target, a primitive its slots instantiate)
TARGETED = [(0, "ecp5-85k", "MULT18X18D"), (1, "ecp5-85k", "MULT18X18D"), (3, "ice40-up5k", "SB_MAC16")]


@pytest.mark.parametrize("index, target, cell", TARGETED)
def test_rtl_network_for_a_target_equals_golden(tmp_path, index, target, cell):
    """Built for a target (as synthesis builds it), the slots' multipliers are its DSP primitive with its registers,
    simulated with the primitive's model: the shared checks and the measured interval against the prediction."""
    from peforge.synth import TARGETS
    from peforge.tb.network import CHECKS, NetworkDesign
    from peforge.tb.runner import run_design

    generic = _rtl_network(*RTL_NETWORKS[index])
    compiled = generic.for_target(TARGETS[target].facts())
    assert compiled.digest() != generic.digest() and compiled.interval == generic.interval
    assert compiled.for_target(TARGETS[target].facts()) is compiled
    other = next(t for t in TARGETS if t != target)
    with pytest.raises(ValueError, match=rf"^Compiled network target must be {target!r} \(it was compiled for it\), "
                                         rf"not {other!r}$"):
        compiled.for_target(TARGETS[other].facts())
    assert cell in compiled.cells() and generic.cells() == ()
    manifest = compiled.write(tmp_path)
    assert manifest["target"]["dsp_cell"] == TARGETS[target].dsp_cell
    assert f"{cell} " in (tmp_path / "accelerator.v").read_text() and (tmp_path / f"{cell}.v").is_file()
    again = load_compiled(tmp_path)
    assert again.digest() == compiled.digest() and again.target == compiled.target and again.is_written_in(tmp_path)
    tests, failures = run_design(NetworkDesign(compiled), testcases=CHECKS, seed=RTL_NETWORKS[index][0])
    assert (tests, failures) == (len(CHECKS), 0), [p.scheme for p in compiled.plans]


#: mixed networks of folded and unrolled layers: seed, depth, max features, rounding, settings
MIXED_NETWORKS = {
    # msq 9 -> 8 unrolled first, nm folded, sp2 6 -> 10 unrolled (sends more than it takes), fixed 10 -> 4 unrolled
    # digit-serial last (to the logits): an interval of 10, the sp2 layer's outputs
    "msq-u,nm,sp2-u,fixed-u/reuse4": (24, 4, 12, "half_up", {"layer.0": "u", "layer.2": "u", "layer.3": "u/reuse4"}),
    # nm 4 -> 2 unrolled first, sp2 2 -> 1 over 7 digits (the slowest: 7 cycles for 4 input features), sp2 1 -> 1
    # folded; rounding floor
    "nm-u,sp2-u/reuse7,sp2-floor": (5, 3, 8, "floor", {"layer.0": "u", "layer.1": "u/reuse7"}),
    # three SP2 convolutions (folded), a flatten and an unrolled sp2 dense head 3 -> 6 (depth None: random_cnn)
    "cnn-sp2,dense-u": (3, None, 6, "half_up", {"layer.4": "u"}),
}


def _mixed_network(name: str) -> CompiledNetwork:
    seed, depth, features, rounding, settings = MIXED_NETWORKS[name]
    rng = np.random.default_rng(seed)
    if depth is None:
        network = net.random_cnn(rng, schemes=["fixed", "sp2"], max_channels=4, max_size=features, rounding=rounding)
    else:
        network = net.random_network(rng, depth=depth, schemes=["fixed", "sp2", "msq", "nm"], max_features=features,
                                     rounding=rounding)
    return CompiledNetwork.default(network).with_settings(settings)


def test_mixed_networks_cover_every_unrolled_scheme():
    from peforge.hw.network.unrolled import UNROLLED_SCHEMES

    plans = [p for name in MIXED_NETWORKS for p in _mixed_network(name).plans]
    assert {p.scheme for p in plans if p.folding.impl == "unrolled"} == set(UNROLLED_SCHEMES)
    assert {p.folding.impl for p in plans} == {"folded", "unrolled"}
    assert [_mixed_network(name).interval for name in MIXED_NETWORKS] == [10, 7, 54]
    assert _mixed_network("cnn-sp2,dense-u").plans[3].kind == "flatten"


@pytest.mark.parametrize("name", MIXED_NETWORKS)
def test_rtl_mixed_folded_and_unrolled_equals_golden(name):
    """Folded and unrolled layers in one accelerator: the shared checks (every stall mix, extremes, resets
    mid-sample and with results pending) and the measured interval against the prediction (tb/network.py)."""
    from peforge.tb.network import CHECKS, NetworkDesign
    from peforge.tb.runner import run_design

    compiled = _mixed_network(name)
    tests, failures = run_design(NetworkDesign(compiled), testcases=CHECKS, seed=MIXED_NETWORKS[name][0])
    assert (tests, failures) == (len(CHECKS), 0), compiled.folding.text()


def test_rtl_infer_returns_the_counts_of_the_simulation():
    from peforge.tb.network import rtl_infer

    compiled = _rtl_network(*RTL_NETWORKS[2])
    rng = np.random.default_rng(5)
    x = rng.integers(*compiled.network.input.range, (40, compiled.network.input.features), endpoint=True)
    logits, stats = rtl_infer(compiled, x)
    assert np.array_equal(logits, compiled.network.golden(x))
    assert stats.samples == 40 and len(stats.result_cycles) == 40
    assert stats.interval == compiled.interval            # steady state, as predicted
    assert stats.latency == stats.result_cycles[0] - 1 > compiled.network.input.features
    assert stats.cycles == stats.result_cycles[-1]        # the run ends with the last result
    spacing = np.diff(stats.result_cycles)
    assert spacing.min() >= compiled.interval - 1 and np.median(spacing) == compiled.interval
    # with stalls on both sides the logits are the same and the run takes longer
    stalled, slow = rtl_infer(compiled, x, p_valid=0.5, p_ready=0.5, seed=2)
    assert np.array_equal(stalled, logits) and slow.cycles > stats.cycles
    with pytest.raises(ValueError, match=rf"^Network input must have shape \(N, {compiled.network.input.features}\), "
                                         rf"not \(2, 1\)$"):
        rtl_infer(compiled, [[0], [0]])


# -- command line ----------------------------------------------------------------------------------------------

def peforge(*args, cwd=None):
    result = subprocess.run([sys.executable, "-m", "peforge", *args], capture_output=True, text=True, cwd=cwd)
    return result.returncode, result.stdout, result.stderr


def test_cli_compile_and_infer(tmp_path):
    compiled = _rtl_network(*RTL_NETWORKS[3])
    compiled.network.save(tmp_path / "net")
    x = np.random.default_rng(6).integers(*compiled.network.input.range, (16, compiled.network.input.features),
                                          endpoint=True)
    np.save(tmp_path / "x.npy", x)
    labels = compiled.network.golden(x).argmax(1)
    np.save(tmp_path / "labels.npy", labels)
    # the folding given on the command line (the RTL test's, so the two share one Verilator build)
    lanes = compiled.folding.layers[0].lanes
    code, out, err = peforge("compile", str(tmp_path / "net"), "-o", str(tmp_path / "acc"),
                             "--set", f"layer.0.lanes={lanes}")
    assert code == 0, err
    assert re.search(rf"^0\s+fixed\s+\d+ -> \d+\s+{lanes}\s+1\s+1\s+fixed-mac", out, re.M), out
    assert load_compiled(tmp_path / "acc").digest() == compiled.digest()
    code, out, err = peforge("infer", str(tmp_path / "acc"), "--input", str(tmp_path / "x.npy"), "--labels",
                             str(tmp_path / "labels.npy"), "--output", str(tmp_path / "y.npy"), "--rtl")
    assert code == 0, err
    assert "RTL == golden on 16/16" in out and "accuracy 100.00 %" in out
    assert np.array_equal(np.load(tmp_path / "y.npy"), compiled.network.golden(x))


def test_cli_compile_for_a_target_instantiates_its_dsp(tmp_path):
    compiled = _rtl_network(*RTL_NETWORKS[3])
    compiled.network.save(tmp_path / "net")
    code, out, err = peforge("compile", str(tmp_path / "net"), "-o", str(tmp_path / "acc"), "--target", "ice40-up5k")
    assert code == 0, err
    again = load_compiled(tmp_path / "acc")
    assert again.target.name == "ice40-up5k" and again.cells() == ("SB_MAC16",)
    assert json.loads((tmp_path / "acc" / "accelerator.json").read_text()) == {"sim_models": ["SB_MAC16.v"]}
    assert "SB_MAC16 " in (tmp_path / "acc" / "accelerator.v").read_text()


@pytest.mark.parametrize("args, message", [
    (["compile", "missing", "-o", "out"], r"Network must be a saved network directory, not 'missing' \(no such file "
                                          r"or directory\)"),
    (["compile", "{net}", "-o", "out", "--set", "layer.7.pes=2"], r"Setting 'layer.7.pes' must name a layer from 0 "
                                                                  r"to 0, not 7"),
    (["compile", "{net}", "-o", "out", "--set", "layers.0.pes=2"], r"Setting 'layers.0.pes' must be layer.N or "
                                                                   r"layer.N.lanes, .pes, .requant, .impl or .reuse "
                                                                   r"\(N from 0 to 0\), not 'layers.0.pes'"),
    (["compile", "{net}", "-o", "out", "--set", "layer.0=16"], r"layer.0: Layer folding must be LANESxPES, "
                                                               r"LANESxPES/rCYCLES, u or u/reuseR, not '16'"),
    (["compile", "{big}", "-o", "out", "--target", "ice40-up5k"], r"Network must fit the iCE40UP5K's 8 DSPs, 3900 LUTs "
                                                                  r"and 120 kbit of block RAM: its smallest foldings "
                                                                  r"still need 128 kbit of block RAM \(layer 0: "
                                                                  r"128 kbit\)"),
    (["infer", "{net}", "--input", "x.npy"], r"Compiled network .*compiled.json must exist \(write it with `peforge "
                                             r"compile`\), not missing"),
    (["infer", "{acc}", "--input", "nothing.npy"], r"--input must be an existing .npy file, not 'nothing.npy'"),
    (["infer", "{acc}", "--input", "bad.npy"], r"--input bad.npy: Network input must have shape \(N, \d+\), not "
                                               r"\(2, 1\)"),
    (["synth", "{acc}", "--set", "lanes=2"], r"--set and --config must not be given for a compiled network .*"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, message):
    compiled = CompiledNetwork.default(net.random_network(np.random.default_rng(8), depth=1))
    compiled.network.save(tmp_path / "net")
    compiled.write(tmp_path / "acc")
    np.save(tmp_path / "bad.npy", np.zeros((2, 1), np.int64))
    # 256 x 64 8-bit weights: 128 kbit, more than the UP5K's 30 block RAMs of 4 kbit
    big = fixed_layer(np.random.default_rng(9), 256, 64, relu=False, out_bits=16, out_signed=True)
    net.Network(net.InputSpec(256, 8, False), (big,)).save(tmp_path / "big")
    args = [a.format(net=tmp_path / "net", acc=tmp_path / "acc", big=tmp_path / "big") for a in args]
    code, out, err = peforge(*args, cwd=tmp_path)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert re.fullmatch(rf"peforge {args[0]}: error: {message}", lines[0]), lines[0]
    assert not (tmp_path / "out").exists()


def test_useful_macs_count_the_kept_nm_weights():
    layer = next(l for seed in range(200) for l in net.random_network(np.random.default_rng(seed), schemes=["nm"]).layers
                 if l.weights.fmt.n * 2 == l.weights.fmt.m)
    plan = plan_engine(layer, LayerFolding(lanes=layer.weights.fmt.m, pes=1))
    assert plan.macs * 2 == layer.in_features * layer.out_features   # n of every m = 1/2 of the dense products
    assert plan.multipliers == layer.weights.fmt.n                   # one group: n multipliers
