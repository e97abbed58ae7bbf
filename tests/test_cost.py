"""The one cost model (hw/network/cost.py): the stored coefficients are what the committed measurements give, its
requantiser model agrees with a synthesis it was not fitted on, and the default folding keeps to every budget of
a device or refuses."""

import json

import numpy as np
import pytest

from peforge.hw.network import Budget, CompiledNetwork, cost, default_folding, plan_network
from peforge.sw.network import FixedWeights, InputSpec, Layer, NMWeights, Network, SP2Weights
from peforge.sw.nm import NMFormat, nm_mask, pack
from peforge.sw.sp2 import SP2Format
from peforge.synth import TARGETS

pytestmark = pytest.mark.xdist_group("cost")


def test_stored_model_is_the_fit_of_the_committed_measurements(tmp_path):
    from peforge.explore import estimate

    stored = json.loads(cost.MODEL.read_text())
    fresh = estimate.refit(tmp_path / "model.json", requant_rows=stored["requantiser_rows"])
    cost.model.cache_clear()
    # (to a relative 1e-9: another CPU's BLAS may round the least squares differently in the last bits)
    for key in ("network", "requantiser"):
        np.testing.assert_allclose(fresh[key], stored[key], rtol=1e-9, atol=1e-9,
                                   err_msg=f"{key}: run `peforge explore --refit` after changing docs/results")
    assert fresh["pe"].keys() == stored["pe"].keys()
    for pe in stored["pe"]:
        np.testing.assert_allclose(fresh["pe"][pe], stored["pe"][pe], rtol=1e-9, atol=1e-9, err_msg=pe)
    assert fresh["provenance"]["network_points"] >= 10 and len(stored["requantiser_rows"]) >= 20


@pytest.mark.synth
@pytest.mark.parametrize("acc_bits, m_bits, cycles", [(16, 24, 3), (24, 20, 1)])
def test_requantiser_model_predicts_a_synthesis_it_was_not_fitted_on(acc_bits, m_bits, cycles):
    """A configuration off the fitted grid, synthesised (yosys, ECP5) here and predicted by the model."""
    from amaranth import signed

    from peforge.hw.network import Requantizer, element_layout
    from peforge.hw.verilog import build_root
    from peforge.synth import synthesize_netlist

    rng = np.random.default_rng(1)
    n = 8
    layer = Layer(FixedWeights(np.ones((n, 2), np.int64), 4), rng.integers(1 << (m_bits - 1), 1 << m_bits, n), 20,
                  rng.integers(-1000, 1000, n), False, 4, True, 8, True)
    comp = Requantizer(acc_shape=signed(acc_bits), layer=layer, dest=[(k, 0) for k in range(n)],
                       out_layout=element_layout(signed(8), n, 1), cycles=cycles)
    cells = synthesize_netlist(comp, name="requantiser", target="ecp5-85k",
                               build_dir=build_root() / "test-cost" / f"{acc_bits}-{m_bits}-{cycles}").cells
    measured = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
    coef = cost.model()["requantiser"]
    predicted = sum(c * f for c, f in zip(coef, cost.requant_features(acc_bits, m_bits, cycles)))
    assert abs(predicted - measured) <= 0.3 * measured, (predicted, measured)


def _breast_cancer_like(seed=0):
    """A 30-16-8-2 MLP of SP2 and 2:4 layers with the wide (31-bit) multipliers from_torch gives: folded for
    the UP5K's 8 DSPs alone, its three requantisers went serial and it needed 8,722 of 5,280 logic cells."""
    rng = np.random.default_rng(seed)

    def req(n, shift=34):
        return rng.integers(1 << 30, (1 << 31) - 1, n), shift, rng.integers(-(1 << 35), 1 << 35, n)
    l0 = Layer(SP2Weights(rng.integers(0, 16, (16, 30)), SP2Format(4)), *req(16), True, 8, False, 8, False)
    d = rng.integers(-8, 8, (8, 16))
    v, i = pack(d * nm_mask(d, NMFormat(2, 4)), NMFormat(2, 4))
    l1 = Layer(NMWeights(v, i, NMFormat(2, 4), 4), *req(8, 38), True, 8, False, 8, False)
    l2 = Layer(SP2Weights(rng.integers(0, 16, (2, 8)), SP2Format(4)), *req(2, 29), False, 8, False, 16, True)
    return Network(InputSpec(30, 8, False), (l0, l1, l2))


def test_the_up5k_folding_keeps_to_its_luts_too():
    net = _breast_cancer_like()
    ice40 = TARGETS["ice40-up5k"]
    dsps_only = plan_network(net, default_folding(net, Budget(dsps=ice40.dsps, dsp_bits=ice40.dsp_bits)))
    every = plan_network(net, default_folding(net, ice40.budget()))
    assert cost.luts(dsps_only) > ice40.luts                     # what the DSP-only search chose does not fit
    assert cost.luts(every) <= ice40.luts                        # the search with every budget keeps to it
    assert sum(p.dsps(ice40.dsp_bits) for p in every) <= ice40.dsps
    # and no slower than it has to be: the same interval as the DSP-only folding here
    assert max(p.cycles for p in every) == max(p.cycles for p in dsps_only)


def test_a_network_that_cannot_fit_is_refused_with_what_it_needs():
    net = _breast_cancer_like()
    # only what no folding fits is named: here the LUTs
    with pytest.raises(ValueError, match=r"^Network must fit the tiny's 99 DSPs, 500 LUTs and 1e\+06 kbit of block "
                                         r"RAM: its smallest foldings still need \d+ LUTs \(predicted by "
                                         r"hw\.network\.cost\)$"):
        default_folding(net, Budget(dsps=99, dsp_bits=16, luts=500, bram_bits=1024 * 10**6, device="tiny"))
    # the block RAM, per layer
    big = Layer(FixedWeights(np.ones((64, 256), np.int64), 8), np.ones(64, np.int64), 8, np.zeros(64, np.int64),
                True, 8, False, 8, False)
    with pytest.raises(ValueError, match=r"^Network must fit 99 DSPs, 1000000 LUTs and 64 kbit of block RAM: its "
                                         r"smallest foldings still need 128 kbit of block RAM \(layer 0: 128 kbit\)$"):
        default_folding(Network(InputSpec(256, 8, False), (big,)),
                        Budget(dsps=99, dsp_bits=16, luts=10**6, bram_bits=64 * 1024))
    # a DSP budget alone keeps its old message
    with pytest.raises(ValueError, match=r"^Network must fit 0 DSPs: its slowest folding still needs \d+$"):
        default_folding(net, Budget(dsps=0, dsp_bits=16))


def test_compile_for_the_up5k_uses_every_budget():
    net = _breast_cancer_like()
    compiled = CompiledNetwork.default(net, TARGETS["ice40-up5k"].budget())
    assert cost.luts(compiled.plans) <= TARGETS["ice40-up5k"].luts
