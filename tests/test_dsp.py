"""DSP primitives (hw/dsp.py): which cell a target gets, when operands fit, the latency it adds, and the
simulation models against each other and the behavioural model in Verilator (tb/dsp.py)."""

import pytest
from amaranth import signed, unsigned

from peforge.hw.dsp import DSP_CELL, fits, product_stages
from peforge.hw.fixed_mac import FixedMacParams
from peforge.hw.nm_sparse import NMSparseParams
from peforge.synth import TARGETS, for_target
from peforge.tb.dsp import CARRY_CHECKS, CHECKS, CarryCellsDesign, DspCellsDesign
from peforge.tb.runner import run_design


def test_models_agree_cycle_by_cycle():
    assert run_design(DspCellsDesign(), testcases=CHECKS, tag="pytest") == (len(CHECKS), 0)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_target_resolves_the_cell_and_latency_grows_by_two(target):
    for params in (FixedMacParams(lanes=4), NMSparseParams()):
        built = for_target(params, target)
        assert built.dsp_cell == TARGETS[target].dsp_cell
        assert built.latency == params.latency + 2  # operand, output and fabric registers for the product one
        kept = for_target(params.replace(dsp_cell="inferred"), target)
        assert kept.dsp_cell == "inferred" and kept.latency == params.latency


def test_lut_lanes_and_wide_operands_keep_one_stage():
    assert for_target(FixedMacParams(dsp=False), "ecp5-85k").product_stages == 1
    wide = FixedMacParams(act_bits=18, act_signed=False, w_bits=8, max_len=16)   # 19 signed bits: no MULT18X18D
    assert for_target(wide, "ecp5-85k").product_stages == 1
    assert fits("MULT18X18D", signed(18), signed(18)) and not fits("MULT18X18D", unsigned(18), signed(2))
    assert fits("SB_MAC16", unsigned(15), signed(16)) and not fits("SB_MAC16", signed(17), signed(2))
    assert product_stages("inferred", signed(4), signed(4)) == product_stages("target", signed(4), signed(4)) == 1


def test_wrong_cell_for_target_is_one_line():
    with pytest.raises(ValueError, match=r"^DSP cell \(dsp_cell\) must be one of 'target', 'inferred', 'SB_MAC16' "
                                         r"for ice40-up5k, not 'MULT18X18D'$"):
        for_target(FixedMacParams(dsp_cell="MULT18X18D"), "ice40-up5k")
    with pytest.raises(ValueError, match=r"^DSP cell \(dsp_cell\) must be one of 'target', 'inferred', "
                                         r"'MULT18X18D', 'SB_MAC16', not 'DSP48'$"):
        FixedMacParams(dsp_cell="DSP48")
    assert DSP_CELL.choices == ("target", "inferred", "MULT18X18D", "SB_MAC16")


def test_carry_chain_equals_its_expression_exhaustively():
    """hw/carry.py: CCU2C chains (yosys' vendor model) and the expression give X + Y + cin on every input."""
    assert run_design(CarryCellsDesign(), testcases=CARRY_CHECKS, tag="pytest") == (len(CARRY_CHECKS), 0)
