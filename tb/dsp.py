"""The target primitives' simulation models side by side (hw/dsp.py, hw/carry.py), in Verilator.

One design instantiates ``MULT18X18D`` (ECP5, the model peforge writes from Lattice's guide), ``SB_MAC16``
(iCE40, the model yosys ships) and :func:`hw.dsp.behavioural_product` (what the generator's latency assumes)
on the same signed 16-bit operands and clock enable. The cocotb test drives random operands (extremes
included) with a random enable and checks, every cycle, that all three outputs equal ``a * b`` of the
operands taken three enabled cycles earlier (the primitives' two registers and the fabric one), holding while
the enable is low.

A second design puts :func:`hw.carry.selected_add` as ``CCU2C`` chains (the model yosys ships) next to its
expression form, in three configurations (the delay-feedback butterfly ``sel ? v + top : bot + ~top``, an
add/subtract of one operand, and an inverted operand that wraps): the cocotb test drives every combination of
select, operands and carry-in and checks both outputs against the sum computed here, in Python.
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

from ..hw.carry import selected_add
from ..hw.cells import sim_models
from ..hw.dsp import DSP_CELLS, behavioural_product, product_stages, registered_product
from ..hw.verilog import to_verilog

from .stream import to_signed

__all__ = ["DspCells", "DspCellsDesign", "CHECKS", "CarryCells", "CarryCellsDesign", "CARRY_CHECKS"]

CHECKS = ["models_agree"]
CARRY_CHECKS = ["carry_chain_exhaustive"]
#: selected_add configurations: name -> (inv1, inv0, x1 operand, x0 operand, width); operands "a" (signed),
#: "b" (unsigned) or None, y is "y" (signed 3 bits) in all of them
CARRY_CONFIGS = {
    "butterfly": (0, 1, "a", "b_s", 5),      # sel ? a + y + cin : b + ~y + cin, the SDF stage
    "addsub": (1, 0, "b", "b", 6),           # b + (sel ? ~y : y) + cin, forward stage 1
    "wrap": (1, 1, None, "a", 3),            # (sel ? 0 : a) + ~y + cin, 3 bits: overflows wrap
}
OPERAND_BITS = 3
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


class CarryCells(wiring.Component):
    """:func:`hw.carry.selected_add` of every :data:`CARRY_CONFIGS` entry, as an expression and as CCU2C cells."""

    def __init__(self):
        b = OPERAND_BITS
        super().__init__({"sel": In(1), "cin": In(1), "y": In(signed(b)), "a": In(signed(b)), "b": In(b),
                          **{f"{name}_{form}": Out(signed(cfg[-1])) for name, cfg in CARRY_CONFIGS.items()
                             for form in ("expr", "ccu2c")}})

    def elaborate(self, platform):
        m = Module()
        operands = {"a": self.a, "b": self.b, "b_s": self.b.as_signed(), None: None}
        for name, (inv1, inv0, x1, x0, width) in CARRY_CONFIGS.items():
            for form, cell in (("expr", None), ("ccu2c", "CCU2C")):
                out = selected_add(m, self.sel, self.y, operands[x1], operands[x0], self.cin, width, inv1=inv1,
                                   inv0=inv0, cell=cell, name=f"{name}_{form}_sum")
                m.d.comb += getattr(self, f"{name}_{form}").eq(out)
        return m


@dataclasses.dataclass(frozen=True)
class DspCellsDesign:
    """:class:`DspCells` as a design :func:`tb.runner.run_design` builds: its Verilog, the primitives' models,
    and the manifest that lists them (``hw.verilog.sim_sources``)."""

    name = "dsp-cells"
    top = "dsp_cells"
    tb_module = "peforge.tb.dsp"
    params = None
    cells = tuple(DSP_CELLS)

    def _text(self) -> dict[str, str]:
        models = sim_models(self.cells)
        return {f"{self.top}.v": to_verilog(self.component(), self.top), **models,
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


@dataclasses.dataclass(frozen=True)
class CarryCellsDesign(DspCellsDesign):
    """:class:`CarryCells` with the CCU2C model, built and run like :class:`DspCellsDesign`."""

    name = "carry-cells"
    top = "carry_cells"
    cells = ("CCU2C",)

    def component(self):
        return CarryCells()


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


def _wrap(value: int, width: int) -> int:
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


@cocotb.test()
async def carry_chain_exhaustive(dut):
    """Every select, carry-in and 3-bit y, a, b: both forms of each configuration equal ``X + Y + cin`` computed
    here (``X = sel ? x1 : x0``, ``Y = y`` or ``~y = -y - 1``), wrapped to the configuration's width."""
    from itertools import product

    from cocotb.triggers import Timer

    b = OPERAND_BITS
    signed_range = range(-(1 << (b - 1)), 1 << (b - 1))
    checked = 0
    for sel, cin, y, a, ub in product((0, 1), (0, 1), signed_range, signed_range, range(1 << b)):
        dut.sel.value, dut.cin.value = sel, cin
        dut.y.value, dut.a.value, dut.b.value = y & ((1 << b) - 1), a & ((1 << b) - 1), ub
        await Timer(1, unit="ns")
        ops = {"a": a, "b": ub, "b_s": _wrap(ub, b), None: 0}
        for name, (inv1, inv0, x1, x0, width) in CARRY_CONFIGS.items():
            x = ops[x1] if sel else ops[x0]
            yy = (-y - 1) if (inv1 if sel else inv0) else y
            want = _wrap(x + yy + cin, width)
            for form in ("expr", "ccu2c"):
                got = to_signed(int(getattr(dut, f"{name}_{form}").value), width)
                if got != want:
                    raise AssertionError(f"{name} {form}: sel={sel} cin={cin} y={y} a={a} b={ub}: "
                                         f"expected {want}, got {got}")
                checked += 1
    if checked != 2 * 2 * 8 * 8 * 8 * len(CARRY_CONFIGS) * 2:
        raise AssertionError(f"checked {checked} sums")
