"""Every registered PE's defaults and one small compiled network per scheme through yosys, on both targets.

Synthesis only (no place and route: seconds per design), so that a generator change that breaks synthesis fails
the suite: the crossbar's default stopped synthesising on ECP5 once (yosys 0.70's abc_ops_reintegrate and
Amaranth's `x[0]` alias names, see synth/flow.py) and nothing in `make test` noticed.
"""

import numpy as np
import pytest

from peforge.hw import registry
from peforge.hw.network import CompiledNetwork
from peforge.sw.network import SCHEMES, random_network, random_rnn
from peforge.synth import TARGETS, netlist_network, netlist_pe

pytestmark = pytest.mark.synth

#: Cell types that hold logic and flip-flops on each target.
LOGIC = {"ecp5-85k": ("LUT4", "CCU2C", "MULT18X18D"), "ice40-up5k": ("SB_LUT4", "SB_CARRY", "SB_MAC16")}
FLOPS = {"ecp5-85k": ("TRELLIS_FF",), "ice40-up5k": ("SB_DFF",)}


def _counts(netlist, prefixes):
    return sum(n for cell, n in netlist.cells.items() if cell.startswith(prefixes))


def _check(netlist, target):
    assert not [c for c in netlist.cells if c.startswith("$") and c != "$scopeinfo"], netlist.cells
    assert _counts(netlist, LOGIC[target]) > 0, netlist.cells
    assert _counts(netlist, FLOPS[target]) > 0, netlist.cells


PES = [name for name, pe in registry.REGISTRY.items() if pe.source != "test"]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("pe", PES)
def test_every_pe_synthesises(pe, target):
    entry = registry.get(pe)
    _check(netlist_pe(entry, entry.default_params(), target=target), target)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_network_of_every_scheme_synthesises(scheme, target):
    network = random_network(np.random.default_rng(sorted(SCHEMES).index(scheme)), depth=1, schemes=[scheme],
                             max_features=8, samples=16)
    _check(netlist_network(CompiledNetwork.default(network), target=target), target)


@pytest.mark.parametrize("kind, target", [("lstm", "ecp5-85k"), ("gru", "ice40-up5k")])
def test_a_recurrent_network_synthesises(kind, target):
    network = random_rnn(np.random.default_rng(2), kind=kind, schemes=["fixed", "sp2"], max_seq=3, max_features=4,
                         max_hidden=4)
    _check(netlist_network(CompiledNetwork.default(network), target=target), target)
