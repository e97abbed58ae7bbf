"""The DSP primitives' simulation models side by side (hw/dsp.py), cycle by cycle, in Verilator.

One design instantiates ``MULT18X18D`` (ECP5, the model peforge writes from Lattice's guide), ``SB_MAC16``
(iCE40, the model yosys ships) and :func:`hw.dsp.behavioural_product` (what the generator's latency assumes)
on the same signed 16-bit operands and clock enable. The cocotb test drives random operands (extremes
included) with a random enable and checks, every cycle, that all three outputs equal ``a * b`` of the
operands taken three enabled cycles earlier (the primitives' two registers and the fabric one), holding while
the enable is low.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from pathlib import Path

import cocotb
from amaranth import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from hw.dsp import DSP_CELLS, behavioural_product, product_stages, registered_product, sim_models
from hw.verilog import to_verilog

from .stream import to_signed

__all__ = ["DspCells", "DspCellsDesign", "CHECKS"]

CHECKS = ["models_agree"]
BITS = 16            # the narrower primitive's operands (SB_MAC16)
WIDTH = 2 * BITS     # every product of two signed 16-bit operands fits
STAGES = 3           # the primitives' input and output registers and the fabric register after them


class DspCells(wiring.Component):
    """``a * b`` through every primitive of :data:`hw.dsp.DSP_CELLS` and the behavioural model, one output each."""

    def __init__(self):
        super().__init__({"a": In(signed(BITS)), "b": In(signed(BITS)), "en": In(1),
                          **{f"p_{name}": Out(signed(WIDTH)) for name in ("model", *DSP_CELLS)}})

    def elaborate(self, platform):
        m = Module()
        stages = {product_stages(cell, signed(BITS), signed(BITS)) for cell in DSP_CELLS}
        if stages != {STAGES}:
            raise ValueError(f"DSP product stages must all be {STAGES} for this check, not {sorted(stages)}")
        m.d.comb += self.p_model.eq(behavioural_product(m, self.a, self.b, en=self.en, stages=STAGES, width=WIDTH,
                                                        name="model"))
        for cell in DSP_CELLS:
            product = registered_product(m, self.a, self.b, en=self.en, cell=cell, width=WIDTH, name=cell.lower())
            m.d.comb += getattr(self, f"p_{cell}").eq(product)
        return m


@dataclasses.dataclass(frozen=True)
class DspCellsDesign:
    """:class:`DspCells` as a design :func:`tb.runner.run_design` builds: its Verilog, the primitives' models,
    and the manifest that lists them (``hw.verilog.sim_sources``)."""

    name = "dsp-cells"
    top = "dsp_cells"
    tb_module = "tb.dsp"
    params = None

    def _text(self) -> dict[str, str]:
        models = sim_models(DSP_CELLS)
        return {f"{self.top}.v": to_verilog(DspCells(), self.top), **models,
                f"{self.top}.json": json.dumps({"sim_models": sorted(models)}) + "\n"}

    def key(self) -> str:
        text = json.dumps(self._text(), sort_keys=True).encode()
        return f"{self.name}-{hashlib.sha256(text).hexdigest()[:12]}"

    def is_written_in(self, directory: Path) -> bool:
        return all((Path(directory) / name).is_file() for name in self._text())

    def write(self, directory: Path) -> None:
        for name, text in self._text().items():
            (Path(directory) / name).write_text(text)

    def component(self):
        return DspCells()

    def config(self) -> dict:
        return {"design": self.name}


@cocotb.test()
async def models_agree(dut):
    """Random operands and enable for 3000 cycles: every output is the product of the operands accepted
    ``STAGES`` enabled cycles earlier (extremes and zero included)."""
    rng = random.Random(1)
    lo, hi = -(1 << (BITS - 1)), (1 << (BITS - 1)) - 1
    special = [lo, hi, 0, -1, 1]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 0
    dut.en.value = 1
    dut.a.value = dut.b.value = 0
    for _ in range(STAGES + 1):    # fill every stage with 0 * 0
        await RisingEdge(dut.clk)
    regs = [(0, 0)] + [0] * (STAGES - 1)   # the model: operand registers, then the product registers
    outputs = ("p_model", "p_MULT18X18D", "p_SB_MAC16")
    for cycle in range(3000):
        a = rng.choice(special) if rng.random() < 0.2 else rng.randint(lo, hi)
        b = rng.choice(special) if rng.random() < 0.2 else rng.randint(lo, hi)
        en = int(rng.random() < 0.7)
        dut.a.value, dut.b.value, dut.en.value = a & 0xFFFF, b & 0xFFFF, en
        await RisingEdge(dut.clk)
        if en:
            regs = [(a, b), regs[0][0] * regs[0][1], *regs[1:-1]]
        await ReadOnly()
        got = {name: to_signed(int(getattr(dut, name).value), WIDTH) for name in outputs}
        if set(got.values()) != {regs[-1]}:
            raise AssertionError(f"cycle {cycle}: expected {regs[-1]}, got {got}")
        await FallingEdge(dut.clk)  # leave the read-only phase before driving the next operands
