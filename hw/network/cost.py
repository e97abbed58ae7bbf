"""The cost model of an engine and of a compiled network: what a plan predicts it needs in DSPs, LUTs and memory,
in one place.

The default folding reads it (:mod:`hw.network.search`: the cheapest folding within a target interval, and one
that fits every budget of a device, :class:`hw.network.folding.Budget`), ``peforge compile --target`` refuses what
it predicts cannot fit, and ``peforge explore``'s estimator predicts with it. Synthesis measures the real numbers.

* **DSPs** (:func:`dsps`): one per multiplier lane of the fixed-point and N:M slots (more when a product is wider
  than the target's DSP operands), and the requantiser's ``acc x M`` when it takes one result per cycle.
* **Memory** (:func:`memory_split`, :func:`buffer_split`, :func:`block_ram`): every slot's weight memory is one
  word per (row group, beat), and every engine has one buffer (a dense layer's two input banks, a convolution's
  ring of input rows, a pool's accumulators); memories of at least :data:`BRAM_DEPTH` words and
  :data:`BRAM_MIN_BITS` bits go to block RAM (the rule yosys followed on the measured networks), the shallower
  ones to LUTs.
* **LUTs** (:func:`luts`): a linear model on structural features: each slot costed by its PE's model
  (:func:`pe_features`: multiplier bits, adder trees, multiplexers, ``k^2`` of a parallel FFT, crossbar cells),
  plus every engine's own logic, its results and its LUT memories (:func:`network_features`), plus what a serial
  requantiser costs in LUTs (:func:`requant_lut`: its shift-and-add partial products; a breast-cancer MLP folded
  for the UP5K's DSPs alone put 6,800 of its 7,159 LUTs into three serial requantisers), plus every unrolled
  engine's adder graphs (:func:`unrolled_lut`: :data:`UNROLLED_LUT_PER_CARRY_BIT` per carry-chain bit of every adder,
  its requantisation's included, and the element streams' gather and scatter). The coefficients
  are data, :data:`MODEL` (``cost_model.json`` beside this file), fitted by non-negative least squares on every
  measured ECP5 synthesis (``peforge explore --refit``, :mod:`peforge.explore.estimate`, which also reports the
  held-out error); ``tests/test_cost.py`` checks the file is what the committed results give.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

from amaranth.hdl import Shape
from amaranth.lib import data

from .unrolled import layer_graphs

__all__ = ["dsps", "weight_bits", "folding_cost", "memory_split", "buffer_split", "block_ram", "requantises",
           "pe_features", "network_features", "luts", "pe_lut", "requant_features", "requant_lut", "MODEL", "model",
           "BRAM_DEPTH", "BRAM_MIN_BITS", "DP16KD", "NETWORK_FEATURES", "PE_FEATURES", "unrolled_lut",
           "UNROLLED_LUT_PER_CARRY_BIT"]

#: Weight memories with fewer words than this are counted as LUT memory, deeper ones as block RAM (yosys maps
#: the shallow, wide ROMs of a fast folding to LUTs on ECP5; docs/results/network.json).
BRAM_DEPTH = 128
#: ... and so are memories of fewer bits than this (a 160 x 8 ROM went to LUTs, 160 x 16 to a DP16KD).
BRAM_MIN_BITS = 2048
#: The ECP5 block RAM's (DP16KD) depth x width configurations.
DP16KD = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
#: The fitted LUT model's coefficients (:func:`model`).
MODEL = Path(__file__).with_name("cost_model.json")
#: LUT4s per carry-chain bit of an unrolled layer's adders (:meth:`hw.network.unrolled.LayerGraphs.carry_bits`: each
#: adder's width less the low bits one operand passes through alone): the least-squares slope through 0 of the four
#: routed unrolled digits SP2 networks of docs/results/unrolled.json (one level per stage, reuse 1, 2, 5, 8: 24,022
#: LUT for 16,232 carry bits ... 14,362 for 9,167; each within 5 %). The bits themselves undercount: the rest is
#: the pipeline's flip-flops' LUTs, the digit multiplexers and the pin wrapper of those points.
UNROLLED_LUT_PER_CARRY_BIT = 1.55


def pieces(a_bits: int, b_bits: int, dsp_bits: int) -> int:
    """DSP multipliers of ``dsp_bits``-bit operands one ``a_bits x b_bits`` product takes."""
    return -(-a_bits // dsp_bits) * -(-b_bits // dsp_bits)


def dsps(plan, dsp_bits: int) -> int:
    """Predicted DSP multipliers of ``dsp_bits``-bit operands: one per multiplier lane of the fixed-point
    and N:M slots (more if a product is wider), and the requantiser's ``acc x M`` when ``requant`` is 1 (an
    unrolled engine: none, its adder graphs and requantisation are constants' shifts and adds).
    SP2 slots shift; circulant and crossbar slots are not counted. Synthesis measures the real number. An engine
    of several datapaths (:attr:`EnginePlan.parts`) counts theirs and its own (``EngineSpec.extra_dsps``)."""
    if plan.folding.impl == "unrolled":
        return 0
    if plan.parts:
        return sum(dsps(p, dsp_bits) for p in plan.parts) + plan.engine.extra_dsps(plan, dsp_bits)
    layer = plan.layer
    act = layer.in_bits + (0 if layer.in_signed else 1)
    total = sum(getattr(s.params, "lanes", 0) * pieces(act, s.params.w_bits, dsp_bits)
                for s in plan.engine.dsp_slots(plan))
    if plan.folding.requant == 1 and requantises(plan):
        m_bits = max(1, int(layer.multiplier.max()).bit_length()) + 1
        total += pieces(plan.acc_shape.width, m_bits, dsp_bits)
    return total


def weight_bits(plan) -> int:
    """Bits of the engine's weight memories (one word per row group and beat per slot; crossbar cells sit in the
    arrays, not counted)."""
    if plan.parts:
        return sum(weight_bits(p) for p in plan.parts)
    total = 0
    for slot in plan.slots:
        layout = slot.params.input_layout
        total += plan.groups * plan.beats * sum(layout[f].shape.size if isinstance(layout[f].shape, data.Layout)
                                                else Shape.cast(layout[f].shape).width
                                                for f in plan.engine.weight_fields(slot))
    return total


def folding_cost(plan) -> int:
    """Rough hardware cost of a folding, to rank the foldings of one layer: a multiplier lane each, and a slot's
    own accumulator, output register, weight memory and collector entry about as much as one more lane."""
    return plan.multipliers + len(plan.slots)


def _split(bits: int, depth: int, memories: int) -> tuple[int, int, int]:
    """``(LUT bits, block RAM bits, block RAMs)`` of ``memories`` memories of ``depth`` words, ``bits`` in all."""
    if not bits or not memories:
        return 0, 0, 0
    per_memory = bits // memories
    if depth < BRAM_DEPTH or per_memory < BRAM_MIN_BITS:
        return bits, 0, 0
    width = -(-per_memory // max(depth, 1))
    # DP16KD: 16384 x 1 .. 512 x 36; a memory takes the configuration that needs the fewest blocks
    blocks = min(math.ceil(width / w) * math.ceil(depth / d) for d, w in DP16KD)
    return 0, bits, memories * max(1, blocks)


def memory_split(plan) -> tuple[int, int, int]:
    """``(bits in LUT memories, bits in block RAM, block RAMs)`` of an engine's weight memories (one per slot):
    the rule yosys followed on the measured networks (:data:`BRAM_DEPTH`, :data:`BRAM_MIN_BITS`, :data:`DP16KD`)."""
    return _split(weight_bits(plan), plan.groups * plan.beats, len(plan.slots))


def buffer_split(plan) -> tuple[int, int, int]:
    """:func:`memory_split` of the engine's buffer (:meth:`hw.network.engines.EngineSpec.buffer`: a dense
    layer's two input banks, a convolution's ring of input rows, a pool's accumulators; none for a flatten)."""
    depth, width = plan.engine.buffer(plan)
    return _split(depth * width, depth, 1 if depth else 0)


def block_ram(plan) -> tuple[int, int]:
    """``(bits, blocks)`` of block RAM the engine's memories take (weights and buffer; an engine of several
    datapaths: theirs and its own memories, ``EngineSpec.memories``)."""
    if plan.parts:
        own = [_split(depth * width, depth, 1) for depth, width in plan.engine.memories(plan)]
        inner = [block_ram(p) for p in plan.parts]
        return sum(b for b, _ in inner) + sum(o[1] for o in own), sum(n for _, n in inner) + sum(o[2] for o in own)
    weights, buffer = memory_split(plan), buffer_split(plan)
    return weights[1] + buffer[1], weights[2] + buffer[2]


def expand(plans) -> list:
    """The plans with every engine of several datapaths (:attr:`EnginePlan.parts`) replaced by its parts."""
    return [q for p in plans for q in (p.parts or (p,))]


def requantises(plan) -> bool:
    """Whether the engine's requantiser multiplies (every layer with a ``multiplier``; not a max pool's
    pass-through, not a flatten)."""
    return getattr(plan.layer, "multiplier", None) is not None


# -- the LUT model: features ----------------------------------------------------------------------------------------

def _dot(p: dict, wrapped: bool) -> tuple[int, int, int]:
    act = p["act_bits"] + (0 if p.get("act_signed", True) else 1)
    return act, p.get("max_len", 4096), int(wrapped)


def _acc(act: int, w: int, max_len: int) -> int:
    return act + w + max(1, math.ceil(math.log2(max_len)))


def _fixed(p: dict, wrapped: bool) -> list[float]:
    act, max_len, wr = _dot(p, wrapped)
    lanes, w = p["lanes"], p["w_bits"]
    acc = _acc(act, w, max_len)
    return [1.0, lanes * act * w * (not p["dsp"]), lanes * (act + w), acc, wr * acc]


def _sp2(p: dict, wrapped: bool) -> list[float]:
    act, max_len, wr = _dot(p, wrapped)
    fmt = p["fmt"]
    m1 = fmt.get("m1") or math.ceil((fmt["bits"] - 1) / 2)
    e = (1 << m1) - 1
    lanes = p["lanes"]
    acc = _acc(act, e + 1, max_len)
    return [1.0, lanes * (act + e), lanes * (act + e) * (1 << m1), acc, wr * acc]


def _nm(p: dict, wrapped: bool) -> list[float]:
    act, max_len, wr = _dot(p, wrapped)
    n, m = p["fmt"]["n"], p["fmt"]["m"]
    mults, w = p["groups"] * n, p["w_bits"]
    # LUT multipliers, the activation bits a beat carries (groups x M), the N-of-M multiplexers
    return [1.0, mults * act * w * (not p["dsp"]), p["groups"] * m * act, mults * m * act]


def _circulant(p: dict, wrapped: bool) -> list[float]:
    k = p["fmt"]["block"]
    parallel = p.get("arch") == "parallel"
    # parallel: k^2 (every bin's butterflies and products side by side); streaming: an intercept of its own and
    # growth as sqrt(k) over k = 8 .. 64 on the bench (one butterfly per stage, the rest in memories). The
    # streaming LUTs extrapolate to a negative value at k = 0 (934 / 1496 / 3700 at k = 8 / 16 / 64 on CCU2C
    # butterflies), which non-negative coefficients cannot fit on sqrt(k) alone: sqrt(k) - 2 keeps the
    # streaming intercept positive (k >= 4, the smallest streaming block)
    return [1.0, parallel * k * k, float(not parallel), (not parallel) * (math.sqrt(k) - 2)]


def _crossbar(p: dict, wrapped: bool) -> list[float]:
    fmt = p["fmt"]
    return [1.0, fmt["rows"] * fmt["act_bits"], fmt["cols"] * fmt["w_bits"] * fmt["rows"] / fmt["rows_per_sub"],
            int(p.get("zero_skip", True)) * fmt["rows"]]


#: PE model name -> (feature function, selects a bench row ``(pe, params) -> bool``)
PE_FEATURES = {
    "fixed-mac": (_fixed, lambda pe, p: pe == "fixed-mac"),
    "sp2-mac": (_sp2, lambda pe, p: pe == "sp2-mac"),
    "nm-sparse": (_nm, lambda pe, p: pe == "nm-sparse"),
    "circulant-fft": (_circulant, lambda pe, p: pe == "circulant-fft"),
    "crossbar": (_crossbar, lambda pe, p: pe in ("crossbar", "crossbar-controller")),
}


def pe_features(pe: str, params: dict, wrapped: bool = True, *, emulator: bool = True) -> list[float]:
    """The feature vector of a PE configuration (``params`` as ``Params.to_dict()``); a ``crossbar`` with its
    ideal-array emulator (the registry's ``crossbar``, and a network's crossbar slots) or without it (the
    registry's ``crossbar-controller``)."""
    f = PE_FEATURES[pe][0](params, wrapped)
    if pe == "crossbar":   # the ideal-array emulator: cell flip-flops and adders
        fmt = params["fmt"]
        f.append(emulator * fmt["rows"] * fmt["cols"] * fmt["w_bits"])
    return f


@functools.lru_cache(maxsize=1)
def model() -> dict:
    """The fitted coefficients (:data:`MODEL`): ``{"pe": {pe: [...]}, "network": [...], "provenance": {...}}``."""
    try:
        return json.loads(MODEL.read_text())
    except (OSError, ValueError):
        return {"pe": {}, "network": None, "provenance": {}}


def pe_lut(pe: str, params: dict, wrapped: bool = False, coefficients: dict | None = None) -> float:
    """Estimated LUTs of one PE configuration (its PE model; 0 for a PE without one). ``coefficients`` replace
    the stored ones (``{pe: [...]}``: a refit)."""
    coef = (coefficients if coefficients is not None else model()["pe"]).get(pe)
    if coef is None:
        return 0.0
    return float(sum(c * f for c, f in zip(coef, pe_features(pe, params, wrapped))))


#: The network model's features (:func:`network_features`).
NETWORK_FEATURES = ("one", "engines", "pe_lut", "lut_memory_bits", "slot_results", "requant_bits",
                    "crossbar_cells", "circulant")


def network_features(plans, pe_coefficients: dict | None = None) -> list[float]:
    """One feature vector of the engines ``plans`` of a compiled network (see :data:`NETWORK_FEATURES`)."""
    engines = pe = lut_mem = results = requant = cells = circ = 0.0
    for plan in expand(plans):
        if plan.kind == "flatten" or plan.folding.impl == "unrolled":   # nothing on chip; unrolled_lut
            continue
        engines += 1
        for slot in plan.slots:
            if slot.pe == "crossbar":
                fmt = slot.params.fmt
                cells += fmt.rows * fmt.cols * fmt.w_bits
            elif slot.pe == "circulant-fft":
                circ += 1
            pe += pe_lut(slot.pe, slot.params.to_dict(), coefficients=pe_coefficients)
        # the LUT model reads the shallow (< BRAM_DEPTH words) memories: on the measured networks that fits better
        # (2.2 % held out) than every memory the block RAM count leaves in LUTs (2.8 %)
        if weight_bits(plan) and plan.groups * plan.beats < BRAM_DEPTH:
            lut_mem += weight_bits(plan)
        results += len(plan.slots) * plan.width * plan.acc_shape.width
        requant += plan.acc_shape.width / plan.folding.requant if requantises(plan) else 0
    return [1.0, engines, pe, lut_mem, results, requant, cells, circ]


def requant_features(acc_bits: int, m_bits: int, cycles: int) -> list[float]:
    """The requantiser model's features (:class:`hw.network.components.Requantizer`): its width, and with
    ``cycles > 1`` the shift-and-add partial products, ``digit = ceil(m_bits / cycles)`` rows of
    ``acc_bits + m_bits`` bits each cycle."""
    serial = cycles > 1
    digit = -(-m_bits // cycles)
    return [1.0, float(acc_bits + m_bits), float(serial), serial * digit * float(acc_bits + m_bits)]


def requant_lut(plan, cycles: int | None = None, coefficients=None) -> float:
    """Predicted LUTs of ``plan``'s requantiser (at ``cycles`` per result, default its folding's), from the
    requantiser model (:data:`MODEL`'s ``requantiser``); 0 without one."""
    coef = coefficients if coefficients is not None else model().get("requantiser")
    if coef is None or not requantises(plan):
        return 0.0
    m_bits = max(1, int(plan.layer.multiplier.max()).bit_length())
    f = requant_features(plan.acc_shape.width, m_bits, plan.folding.requant if cycles is None else cycles)
    return float(sum(c * x for c, x in zip(coef, f)))


def unrolled_lut(plan) -> float:
    """Predicted LUTs of an unrolled engine (0 for any other): :data:`UNROLLED_LUT_PER_CARRY_BIT` per carry-chain bit
    of its adders (the weights' graph at its digit width and the requantisation's product graphs), a write enable
    per input of the gather and the scatter's multiplexer, about half a LUT4 per output bit."""
    if plan.folding.impl != "unrolled":
        return 0.0
    layer = plan.layer
    bits = layer_graphs(layer, plan.folding.reuse).carry_bits()
    return UNROLLED_LUT_PER_CARRY_BIT * bits + layer.in_features + layer.out_features * layer.out_bits / 2


def luts(plans) -> float | None:
    """Predicted LUTs of a compiled network's engines ``plans`` (ECP5 LUT4s; an iCE40 LUT4 holds the same
    function), or None when no model has been fitted. The network model is fitted on accelerators whose
    requantisers take one result per cycle (on a DSP); a serial requantiser (shifts and adds in LUTs) adds what
    the requantiser model says it costs beyond that."""
    coef = model()["network"]
    if coef is None:
        return None
    total = float(sum(c * f for c, f in zip(coef, network_features(plans))))
    total += sum(unrolled_lut(p) for p in plans)
    return total + sum(requant_lut(p) - requant_lut(p, 1) for p in plans if p.folding.requant > 1)
