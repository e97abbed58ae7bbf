"""The vendor primitives a design instantiates, and the simulation models Verilator compiles in their place.

A design instantiates a DSP primitive (:mod:`hw.dsp`, its ``dsp_cell``) and a carry-chain primitive
(:mod:`hw.carry`, its ``carry_cell``) when its Params name one. :func:`cells_used` reads which from the Params
(nested parameter sets included); :func:`sim_models` gives each cell's Verilog model, which
:func:`hw.verilog.write_design` writes next to the design and the runner and ``lint`` compile with it (synthesis
never reads them).
"""

from __future__ import annotations

import dataclasses

from .carry import CARRY_CELL, CARRY_CELLS, sim_model as ccu2c_model
from .dsp import DSP_CELL, DSP_CELLS, mult18x18d_model, sb_mac16_model

__all__ = ["cells_used", "sim_models", "MODELS"]

#: The simulation model of every cell a generator instantiates.
MODELS = {"MULT18X18D": mult18x18d_model, "SB_MAC16": sb_mac16_model, "CCU2C": ccu2c_model}


def cells_used(params) -> tuple[str, ...]:
    """The primitives a design built from ``params`` (nested parameter sets included) may instantiate: its DSP
    cell (:data:`hw.dsp.DSP_CELL`) and its carry-chain cell (:data:`hw.carry.CARRY_CELL`)."""
    found = []
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        spec = f.metadata.get("spec")
        if spec is DSP_CELL and value in DSP_CELLS or spec is CARRY_CELL and value in CARRY_CELLS:
            found.append(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            found.extend(cells_used(value))
    return tuple(sorted(set(found)))


def sim_models(cells) -> dict[str, str]:
    """Verilog simulation models of ``cells`` (names from :data:`MODELS`): ``{file name: text}``."""
    return {f"{cell}.v": MODELS[cell]() for cell in cells}
