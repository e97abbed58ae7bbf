"""Recurrent layers on hardware (hw/network/recurrent.py): whole LSTM and GRU networks in one Verilator simulation
against the golden model (:meth:`sw.recurrent.Recurrent.forward`, itself checked against an independent integer
re-implementation and torch's cells in tests/test_sw_rnn.py), under the shared checks (random stalls on both sides,
extreme inputs, reset in the middle of a sequence, the measured interval equal to the predicted one), and the
compiler's refusals.
"""

import re
import subprocess
import sys

import numpy as np
import pytest
from peforge.hw.network import CompiledNetwork, Folding, LayerFolding, cost, plan_engine
from peforge.hw.network.recurrent import RecurrentEngine
from peforge.sw import network as net

#: random recurrent networks (:func:`sw.network.random_rnn`) the RTL tests run: together LSTM and GRU, every scheme
#: of ``w`` (crossbar on an unsigned input) and of ``u``, the last state and every state, T = 1 and H = 1
RTL_SEEDS = [194, 23, 371, 311, 484, 431]


def _network(seed: int) -> net.Network:
    return net.random_rnn(np.random.default_rng(seed), max_seq=4, max_features=8, max_hidden=8)


def _features(network) -> set[str]:
    layer = network.layers[0]
    found = {layer.kind, f"w {layer.w.scheme}", f"u {layer.u.scheme}",
             "sequences" if layer.return_sequences else "last"}
    found |= {"T = 1"} if layer.seq_len == 1 else set()
    found |= {"H = 1"} if layer.hidden == 1 else set()
    return found


def test_rtl_rnns_cover_every_kind_and_scheme():
    found = set().union(*[_features(_network(s)) for s in RTL_SEEDS])
    want = {"lstm", "gru", "sequences", "last", "T = 1", "H = 1", *{f"w {s}" for s in net.SCHEMES},
            *{f"u {s}" for s in net.SCHEMES if s != "crossbar"}}
    assert want <= found, sorted(want - found)


def _folding(seed: int, network) -> Folding:
    """The default folding, or (odd seeds) a random one of the layer's candidates: the interval formula is checked
    on foldings the search would not pick."""
    if seed % 2 == 0:
        return CompiledNetwork.default(network).folding
    rng = np.random.default_rng(seed)
    layer = network.layers[0]
    options = RecurrentEngine(layer.kind).candidates(layer)
    chosen = options[int(rng.integers(len(options)))]
    return Folding((chosen,) + CompiledNetwork.default(network).folding.layers[1:])


@pytest.mark.parametrize("seed", RTL_SEEDS)
def test_rtl_rnn_equals_golden(seed):
    from peforge.tb.network import CHECKS, NetworkDesign
    from peforge.tb.runner import run_design

    network = _network(seed)
    compiled = CompiledNetwork(network, _folding(seed, network))
    tests, failures = run_design(NetworkDesign(compiled), testcases=CHECKS, seed=seed)
    assert (tests, failures) == (len(CHECKS), 0), compiled.folding.text()


def test_the_gate_matrices_take_the_folding_and_the_cost_counts_both():
    network = _network(5)
    layer = network.layers[0]
    plan = plan_engine(layer, LayerFolding(2, 3))
    xplan, hplan = plan.parts
    assert (xplan.lanes, len(xplan.slots), hplan.lanes, len(hplan.slots)) == (min(2, layer.in_features), 3,
                                                                                min(2, layer.hidden), 3)
    assert plan.multipliers == xplan.multipliers + hplan.multipliers
    assert cost.weight_bits(plan) == cost.weight_bits(xplan) + cost.weight_bits(hplan)
    assert plan.macs == layer.seq_len * (xplan.macs + hplan.macs)
    # the tables and accumulators count as memory beside the weights
    bits, _ = cost.block_ram(plan)
    assert bits >= sum(cost.block_ram(p)[0] for p in plan.parts)
    assert cost.dsps(plan, 18) > cost.dsps(xplan, 18) + cost.dsps(hplan, 18)


def test_a_recurrent_layer_after_another_is_refused_in_one_line():
    from peforge.hw.network import plan_network
    from peforge.sw.recurrent import random_recurrent

    rng = np.random.default_rng(3)
    first = random_recurrent(rng, "gru", 3, 2, 4, 6, True, scheme_w="fixed", scheme_u="fixed", return_sequences=True)
    second = random_recurrent(rng, "lstm", 3, 4, 2, first.out_bits, True, scheme_w="fixed", scheme_u="fixed")
    network = net.Network(net.InputSpec(6, 6, True, shape=(3, 2)), (first, second))
    with pytest.raises(ValueError, match=r"^Layer kind 'lstm' must be the network's first layer to be compiled "
                                         r"\(its input streams in time order\), not layers\[1\]$"):
        plan_network(network)


def peforge(*args):
    return subprocess.run([sys.executable, "-m", "peforge", *map(str, args)], capture_output=True, text=True)


def test_cli_compiles_a_recurrent_network_and_infers_sequences_shaped_as_the_model(tmp_path):
    network = _network(RTL_SEEDS[0])        # the default folding of an RTL test's network: the same Verilator build
    layer = network.layers[0]
    network.save(tmp_path / "net")
    done = peforge("compile", tmp_path / "net", "-o", tmp_path / "acc")
    assert done.returncode == 0, done.stderr
    x = np.random.default_rng(1).integers(*network.input.range, (3, layer.seq_len, layer.in_features),
                                          endpoint=True)
    np.save(tmp_path / "x.npy", x)
    done = peforge("infer", tmp_path / "acc", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--rtl")
    assert done.returncode == 0, done.stderr
    assert "RTL == golden on 3/3" in done.stdout, done.stdout
    assert np.array_equal(np.load(tmp_path / "y.npy"), network.golden(x.reshape(3, -1)))


def test_board_link_runs_a_recurrent_network():
    """The board top (UART link, docs/board.md) around a compiled GRU, simulated: every answer equals golden."""
    from peforge import board as host

    network = _network(2)
    compiled = CompiledNetwork.default(network)
    x = np.random.default_rng(4).integers(*network.input.range, (6, network.input.features), endpoint=True)
    with host.simulated(compiled, clk_freq=25e6, baud=3_125_000) as board:
        result = host.run(board, x)
    assert np.array_equal(result.logits, network.golden(x))
