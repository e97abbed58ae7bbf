"""Unrolled constant-weight layers: a whole dense layer as an adder graph, a vector per cycle (issue 32).

:class:`UnrolledLayer` computes one dense layer of an integer network (:class:`sw.network.Layer` of scheme
``fixed``, ``sp2``, ``msq`` or ``nm``) with its weights as constants::

    acc[j] = sum_i W[j, i] x[i]                   W = layer.weights.dense(), as an adder graph
                                                  (hw.adder_graph: CSD terms, shared two-term patterns,
                                                  balanced trees)
    t[j]   = acc[j] * m[j] + c[j]                 m[j] a constant: its own CSD adder graph, no multiplier
    z[j]   = t[j] >> s[j]                         ("floor"), or sw.requant's half_even formula
    y[j]   = clip(z[j], lo, hi)                   the layer's output range (ReLU included)

with ``(m, c, s)`` the layer's own requantisation by default (``half_up``: ``(M, B + 2^(S-1), S)`` floored,
``floor``: ``(M, B, S)``, ``half_even``: ``(M, B, S)`` with its tie rule, exactly as :mod:`sw.requant` and
``hw.network.Requantizer``), or a smaller exact floor formula given as ``requant`` (the bench passes
``peforge.bench.da4ml.floor_requant``'s, which is checked equal to the layer's over every accumulator the inputs
can produce, so ``y`` equals :meth:`sw.network.Layer.forward` bit for bit either way).

**Pipeline.** A register every ``levels_per_stage`` adder levels (1 or 2), the accumulators registered, the
requantisation's product graph likewise, then bias, rounding and clip into the output register. Flow control is a
valid shift register with one global stall: the whole pipeline advances when the output register is empty or
being read (``en = ~o.valid | o.ready``), so ``i.ready = en``; ``o.valid`` never depends on ``o.ready``
combinationally, ``o.payload`` holds while stalled, nothing is lost or duplicated, and a synchronous reset clears
every valid bit.

**Reuse** ``r`` (as hls4ml's ReuseFactor): digit-serial inputs. With ``r > 1`` a vector is taken in one beat and
its inputs are fed to the graph ``w = ceil(in_bits / r)`` bits at a time, most significant digit first (the top
digit sign-extended when the inputs are signed, the others unsigned), and the graph outputs are accumulated as
``acc = (acc << w) + G(digit)``: ``ceil(in_bits / w)`` cycles per vector (:attr:`UnrolledLayer.interval`), with
every adder of the graph ``in_bits - w`` bits narrower. ``r = 1``: a vector every cycle.

:class:`UnrolledNetwork` chains the layers of a dense network with streams (II = the slowest layer's interval).

Members (both components)
-------------------------
i : In(stream.Signature(StructLayout({"x": ArrayLayout(input shape, in_features)})))
o : Out(stream.Signature(StructLayout({"x": ArrayLayout(output shape, out_features)})))

:class:`UnrolledUnit` is the component of the engine table's ``impl="unrolled"`` entries
(:class:`hw.network.engines.UnrolledEngine`): an :class:`UnrolledLayer` between the element streams every engine
has, so that one accelerator mixes folded and unrolled layers::

    i (elements, each with its word = input index) --> gather (a register per input) --> UnrolledLayer
        --> scatter (the outputs, one per cycle, each with its place in the consumer's buffer: a Dest) --> o
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from amaranth.hdl import Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...hw.adder_graph import AdderGraph, Term, adder_graph
from ...hw.common import SkidOutput, equals
from ...sw.intops import as_int_array
from ...sw.params import check_bool, check_int
from .components import Dest, element_layout, rom, select, value_shape

__all__ = ["UNROLLED_SCHEMES", "UnrolledLayer", "UnrolledNetwork", "UnrolledUnit", "digit_serial", "layer_requant",
           "layer_graphs", "LayerGraphs", "vector_layout"]

#: Schemes whose layers are a dense integer matrix product.
UNROLLED_SCHEMES = ("fixed", "sp2", "msq", "nm")


def vector_layout(bits: int, signed_: bool, n: int) -> data.StructLayout:
    """The payload of a vector stream: ``x``, ``n`` integers of ``bits`` (lane 0 at the LSBs)."""
    return data.StructLayout({"x": data.ArrayLayout(signed(bits) if signed_ else unsigned(bits), n)})


def _shape(lo: int, hi: int) -> Shape:
    """The narrowest shape holding ``lo .. hi``."""
    if lo >= 0:
        return unsigned(max(1, int(hi).bit_length()))
    return signed(max(int(-lo - 1).bit_length(), int(hi).bit_length()) + 1)


def digit_serial(bits: int, reuse: int) -> tuple[int, int]:
    """``(digit bits, cycles per vector)`` of ``bits``-bit inputs at ``reuse``: digits of ``ceil(bits / reuse)``
    bits, as many as it takes to cover the input bits (reuse 3 of 8 bits: 3-bit digits, 3 cycles)."""
    digit = -(-bits // reuse)
    return digit, -(-bits // digit)


def layer_requant(layer) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """``(m, c, s, mode)``: the layer's own requantisation as ``z = round_mode((acc m + c) / 2^s)``, ``mode``
    ``"floor"`` (``half_up`` becomes floor with ``c = B + 2^(S-1)``) or ``"half_even"``."""
    n = layer.out_features
    m = np.asarray(layer.multiplier, np.int64)
    c = np.asarray(layer.offset, object).astype(object)
    if layer.rounding == "half_up":
        c = c + (1 << (layer.shift - 1))
    s = np.full(n, layer.shift, np.int64)
    return m, c, s, ("half_even" if layer.rounding == "half_even" else "floor")


class _Stages:
    """Pipeline values by key: each first available (combinationally) in one stage, delayed by registers that
    advance with ``en`` for any later stage that reads it."""

    def __init__(self, m: Module, en: Signal):
        self.m, self.en = m, en
        self.chains: dict[Any, list[Signal]] = {}
        self.base: dict[Any, int] = {}

    def put(self, key, sig: Signal, stage: int) -> None:
        self.chains[key], self.base[key] = [sig], stage

    def get(self, key, stage: int) -> Signal:
        chain, base = self.chains[key], self.base[key]
        if stage < base:
            raise RuntimeError(f"pipeline value {key!r} read in stage {stage} before its stage {base}")
        while base + len(chain) - 1 < stage:
            prev = chain[-1]
            reg = Signal(prev.shape(), name=f"{prev.name}_s{base + len(chain)}", reset_less=True)
            with self.m.If(self.en):
                self.m.d.sync += reg.eq(prev)
            chain.append(reg)
        return chain[stage - base]


def _emit_graph(m: Module, st: _Stages, graph: AdderGraph, name: str, in_keys: list, in_stage: int,
                ranges: list[tuple[int, int]], levels_per_stage: int) -> list:
    """Put every node of ``graph`` into the stage its level gives (inputs: ``in_keys``, read in ``in_stage``);
    return the keys of its outputs (None for a zero output), each available in the stage of its source."""
    level = graph.levels()
    keys = list(in_keys)
    stage_of = [in_stage] * graph.n_in

    def term(t: Term, stage: int):
        v = st.get(keys[t.source], stage) << t.shift if t.shift else st.get(keys[t.source], stage)
        return -v if t.sign < 0 else v

    for k, node in enumerate(graph.nodes):
        v = graph.n_in + k
        stage = in_stage + (level[v] - 1) // levels_per_stage
        sig = Signal(_shape(*ranges[v]), name=f"{name}_n{k}")
        m.d.comb += sig.eq(term(node.a, stage) + term(node.b, stage))
        keys.append((name, v))
        st.put((name, v), sig, stage)
        stage_of.append(stage)
    out_keys = []
    for j, t in enumerate(graph.outputs):
        if t is None:
            out_keys.append(None)
            continue
        stage = stage_of[t.source]
        lo, hi = ranges[t.source]
        lo, hi = lo << t.shift, hi << t.shift
        sig = Signal(_shape(*((lo, hi) if t.sign > 0 else (-hi, -lo))), name=f"{name}_y{j}")
        m.d.comb += sig.eq(term(t, stage))
        st.put((name, "y", j), sig, stage)
        out_keys.append((name, "y", j))
    return out_keys


def _stages_for(depth: int, levels_per_stage: int) -> int:
    """Register stages after a graph of ``depth`` levels (at least one)."""
    return max(1, -(-depth // levels_per_stage))


def _dense():
    from ...sw.dense import Layer

    return Layer


class LayerGraphs:
    """The arithmetic of an unrolled layer, without hardware: the weights' adder graph, the requantisation's
    product graphs, the digits and every value's range; what :class:`UnrolledLayer` builds and the cost model reads
    (:func:`layer_graphs`). Arguments and errors as :class:`UnrolledLayer`'s."""

    def __init__(self, layer, *, reuse: int = 1, requant=None, share: bool = True):
        if not isinstance(layer, _dense()):
            raise TypeError(f"Layer must be a dense sw.network.Layer, not {layer!r}")
        if layer.scheme not in UNROLLED_SCHEMES:
            allowed = ", ".join(map(repr, UNROLLED_SCHEMES))
            raise ValueError(f"Layer scheme must be one of {allowed} to unroll, not {layer.scheme!r}")
        check_int("Reuse", reuse, min=1, max=layer.in_bits)
        check_bool("Share", share)
        n_out = layer.out_features
        if requant is None:
            self.requant = layer_requant(layer)
        else:
            if not (isinstance(requant, (tuple, list)) and len(requant) == 3):
                raise ValueError(f"Requant must be three int arrays of shape ({n_out},), not {requant!r}")
            m_, c_, s_ = (as_int_array("Requant", a, -(1 << 62), 1 << 62) for a in requant)
            if any(a.shape != (n_out,) for a in (m_, c_, s_)) or (m_ < 0).any() or (s_ < 0).any():
                raise ValueError(f"Requant must be three int arrays of shape ({n_out},), not shapes "
                                 f"{[a.shape for a in (m_, c_, s_)]} with m, s >= 0")
            self.requant = (m_, c_.astype(object), s_, "floor")
        bits = layer.in_bits
        self.digit, self.cycles = digit_serial(bits, reuse)
        self.graph = adder_graph(layer.weights.dense(), scheme="nm" if layer.scheme == "nm" else "fixed",
                                 share=share)
        lo, hi = layer.in_range
        self.in_range = (lo, hi)
        self.acc_ranges = self.graph.output_ranges(lo, hi)
        if self.cycles == 1:
            self.graph_in = (lo, hi)
        else:
            top = bits - (self.cycles - 1) * self.digit
            self.graph_in = ((-(1 << (top - 1)) if layer.in_signed else 0), (1 << self.digit) - 1)
        self.mult = [adder_graph(np.array([[int(v)]]), share=False) for v in self.requant[0]]
        self.mult_depth = max([g.depth for g in self.mult], default=0)

    @property
    def acc_shapes(self) -> list[Shape]:
        """The shape of every output's accumulator."""
        return [_shape(min(lo, 0), max(hi, 0)) for lo, hi in self.acc_ranges]

    def adder_bits(self) -> int:
        """The widths of every adder of the weights' graph (for the digits the graph takes) and of the
        requantisation's product graphs: about the LUT4s of the arithmetic."""
        return self._bits("adder_bits")

    def carry_bits(self) -> int:
        """:meth:`adder_bits` without the low bits an adder passes through from one operand alone
        (:meth:`hw.adder_graph.AdderGraph.carry_bits`): the bits that take a carry-chain cell."""
        return self._bits("carry_bits")

    def _bits(self, count: str) -> int:
        total = getattr(self.graph, count)(*self.graph_in)
        for g, (lo, hi) in zip(self.mult, self.acc_ranges):
            total += getattr(g, count)(lo, hi)
        return total


_MADE: dict[tuple[int, int], tuple[Any, LayerGraphs]] = {}


def layer_graphs(layer, reuse: int = 1) -> LayerGraphs:
    """``LayerGraphs(layer, reuse=reuse)`` (the layer's own requantisation, shared subexpressions), made once per
    layer object and reuse: the adder graph of a 64 x 32 layer takes seconds, and the engine plan, the cost model
    and the component all read it."""
    key = (id(layer), reuse)
    found = _MADE.get(key)
    if found is None or found[0] is not layer:
        if len(_MADE) >= 64:
            _MADE.clear()
        found = _MADE[key] = (layer, LayerGraphs(layer, reuse=reuse))
    return found[1]


class UnrolledLayer(wiring.Component):
    """One dense layer as constant adder graphs (module docstring): a vector in, the layer's outputs out.

    Parameters
    ----------
    layer : sw.network.Layer
        A dense layer of scheme ``fixed``, ``sp2``, ``msq`` or ``nm``.
    reuse : int
        1 (a vector per cycle) to ``layer.in_bits``: inputs in digits of ``ceil(in_bits / reuse)`` bits.
    levels_per_stage : int
        Adder levels between pipeline registers: 1 (default: on the digits SP2 network fewer LUTs and a higher
        Fmax than 2, since yosys cannot merge adders of one stage into LUT compressors, for twice the FFs) or 2.
    requant : (m, c, s) int arrays [out] or None
        An exact floor formula ``clip((acc m + c) >> s, lo, hi)`` for every accumulator the inputs can give
        (None: the layer's own requantisation, :func:`layer_requant`).
    share : bool
        Share two-term subexpressions across outputs (:func:`hw.adder_graph.adder_graph`).
    skid : bool
        Make the pipeline's enable a flip-flop (:class:`hw.common.SkidOutput`): neither ``i.ready`` nor any clock
        enable depends on ``o.ready`` combinationally, for a register and a 2:1 multiplexer per output bit.
        Same latency and interval. Default off.

    Raises
    ------
    TypeError, ValueError
        ``"Layer must be a dense sw.network.Layer, not 3"``, ``"Layer scheme must be one of 'fixed', 'sp2',
        'msq', 'nm' to unroll, not 'circulant'"``, ``"Reuse must be an integer from 1 to 5, not 0"``,
        ``"Levels per stage must be an integer from 1 to 2, not 3"``, ``"Requant must be three int arrays of
        shape (10,), not ..."``.
    """

    def __init__(self, layer, *, reuse: int = 1, levels_per_stage: int = 1, requant=None, share: bool = True,
                 skid: bool = False):
        check_bool("Skid", skid)
        # the arithmetic (validated there); the layer's own requantisation and shared graphs come from the cache
        g = (layer_graphs(layer, reuse) if requant is None and share is True and isinstance(layer, _dense()) else
             LayerGraphs(layer, reuse=reuse, requant=requant, share=share))
        check_int("Levels per stage", levels_per_stage, min=1, max=2)
        self._skid = skid
        self._requant, self._layer, self._reuse, self._levels = g.requant, layer, reuse, levels_per_stage
        self._digit, self._cycles, self._graph = g.digit, g.cycles, g.graph
        self._in_range, self._acc_ranges, self._graph_in = g.in_range, g.acc_ranges, g.graph_in
        self._mult, self._mult_depth = g.mult, g.mult_depth
        self._graphs = g
        bits, n_out = layer.in_bits, layer.out_features
        super().__init__({
            "i": In(stream.Signature(vector_layout(bits, layer.in_signed, layer.in_features))),
            "o": Out(stream.Signature(vector_layout(layer.out_bits, layer.out_signed, n_out))),
        })

    @property
    def layer(self):
        return self._layer

    @property
    def reuse(self) -> int:
        return self._reuse

    @property
    def levels_per_stage(self) -> int:
        return self._levels

    @property
    def graph(self) -> AdderGraph:
        """The weights' adder graph."""
        return self._graph

    @property
    def digit_bits(self) -> int:
        """Input bits the graph takes per cycle."""
        return self._digit

    @property
    def interval(self) -> int:
        """Cycles between vectors without stalls: ``ceil(in_bits / digit_bits)``."""
        return self._cycles

    @property
    def _acc_stage(self) -> int:
        return _stages_for(self._graph.depth, self._levels)

    @property
    def _out_stage(self) -> int:
        return self._acc_stage + _stages_for(self._mult_depth, self._levels) + 1

    @property
    def latency(self) -> int:
        """Cycles from the cycle a vector is accepted to the first cycle its result is valid (without stalls)."""
        return self._out_stage + 1 + (self._cycles if self._cycles > 1 else 0)

    def adder_bits(self) -> int:
        """:meth:`LayerGraphs.adder_bits`: about the LUT4s of the arithmetic."""
        return self._graphs.adder_bits()

    def elaborate(self, platform):
        m = Module()
        layer, graph, L = self._layer, self._graph, self._levels
        n_in, n_out = layer.in_features, layer.out_features
        if self._skid:      # the enable is a flip-flop; a result the consumer does not take waits in a skid register
            out = SkidOutput(m, self.o, name="out")
            en, out_valid, out_payload = out.en, out.valid, out.payload
        else:
            en = Signal()
            m.d.comb += en.eq(~self.o.valid | self.o.ready)
            out_valid, out_payload = self.o.valid, self.o.payload
        st = _Stages(m, en)
        A, F = self._acc_stage, self._out_stage
        valid = [Signal(name=f"valid{s}") for s in range(F + 1)]   # valid[F] is the output register's
        m.d.comb += out_valid.eq(valid[F])
        with m.If(en):
            for s in range(1, F + 1):
                if s == A and self._cycles > 1:
                    continue        # set with the accumulators below
                m.d.sync += valid[s].eq(valid[s - 1])

        # stage 0: the graph's inputs (a whole vector, or one digit of each input)
        ranges = graph.ranges(*self._graph_in)
        in_keys = []
        lo, hi = self._graph_in
        first = last = None
        if self._cycles == 1:
            m.d.comb += self.i.ready.eq(en)
            with m.If(en):
                m.d.sync += valid[0].eq(self.i.valid)
            for k in range(n_in):
                reg = Signal(_shape(lo, hi), name=f"x{k}", reset_less=True)
                with m.If(en):
                    m.d.sync += reg.eq(self.i.payload.x[k])
                st.put(("x", k), reg, 0)
                in_keys.append(("x", k))
        else:
            w, cycles, bits = self._digit, self._cycles, layer.in_bits
            held = Signal(data.ArrayLayout(unsigned(bits), n_in), name="held", reset_less=True)
            busy = Signal()
            count = Signal(range(cycles), name="digit")
            final = Signal()
            m.d.comb += [final.eq(equals(count, 0)), self.i.ready.eq(en & (~busy | final))]
            first, last = Signal(name="first0", reset_less=True), Signal(name="last0", reset_less=True)
            with m.If(en):
                m.d.sync += [valid[0].eq(busy), first.eq(equals(count, cycles - 1)), last.eq(final)]
                with m.If(busy):
                    m.d.sync += count.eq(count - 1)
                    with m.If(final):
                        m.d.sync += busy.eq(0)
                with m.If(self.i.valid & self.i.ready):
                    m.d.sync += [held.eq(self.i.payload.x.as_value()), busy.eq(1), count.eq(cycles - 1)]
            for k in range(n_in):
                word = held[k]
                digits = [word[d * w:(d + 1) * w] for d in range(cycles - 1)]
                high = word[(cycles - 1) * w:]
                digits.append(high.as_signed() if layer.in_signed else high)
                reg = Signal(_shape(lo, hi), name=f"x{k}", reset_less=True)
                sel = digits[0]
                for d in range(1, cycles):
                    sel = Mux(equals(count, d), digits[d], sel)
                with m.If(en & busy):
                    m.d.sync += reg.eq(sel)
                st.put(("x", k), reg, 0)
                in_keys.append(("x", k))
            # the digit flags travel beside the valid bits up to the accumulators
            flags = [(first, last)]
            for s in range(1, A):
                f, l_ = Signal(name=f"first{s}", reset_less=True), Signal(name=f"last{s}", reset_less=True)
                with m.If(en):
                    m.d.sync += [f.eq(flags[-1][0]), l_.eq(flags[-1][1])]
                flags.append((f, l_))
            first, last = flags[A - 1]

        out_keys = _emit_graph(m, st, graph, "g", in_keys, 0, ranges, L)

        # stage A: the accumulators
        acc = []
        for j, key in enumerate(out_keys):
            a_lo, a_hi = self._acc_ranges[j]
            sig = Signal(_shape(min(a_lo, 0), max(a_hi, 0)), name=f"acc{j}", reset_less=True)
            if self._cycles == 1:
                if key is not None:
                    with m.If(en):
                        m.d.sync += sig.eq(st.get(key, A - 1))
            else:
                part = st.get(key, A - 1) if key is not None else 0
                with m.If(en):
                    with m.If(first):
                        m.d.sync += sig.eq(part)
                    with m.Else():
                        m.d.sync += sig.eq((sig << self._digit) + part)
            st.put(("acc", j), sig, A)
            acc.append(sig)
        if self._cycles > 1:
            with m.If(en):
                m.d.sync += valid[A].eq(valid[A - 1] & last)

        # stages A .. F-1: acc * m by its CSD graph, then bias, rounding and clip into the output register
        mult_m, mult_c, mult_s, mode = self._requant
        out_lo, out_hi = layer.out_range
        P = F - 1
        for j in range(n_out):
            g = self._mult[j]
            a_lo, a_hi = self._acc_ranges[j]
            a_lo, a_hi = min(a_lo, 0), max(a_hi, 0)
            keys = _emit_graph(m, st, g, f"m{j}", [("acc", j)], A, g.ranges(a_lo, a_hi), L)
            p_lo, p_hi = g.output_ranges(a_lo, a_hi)[0]
            c, s = int(mult_c[j]), int(mult_s[j])
            t_lo, t_hi = p_lo + c, p_hi + c
            t_shape = _shape(min(t_lo, -1), max(t_hi, 0))    # signed, and wide enough to read bit s
            t = Signal(signed(max(t_shape.width, s + 2)), name=f"t{j}")
            prod = st.get(keys[0], P) if keys[0] is not None else 0
            m.d.comb += t.eq(prod + c)
            if s == 0:
                z = t
            elif mode == "floor":
                z = t >> s
            else:  # half_even, as sw.requant: (t + 2^(s-1) - 1 + ((t >> s) & 1)) >> s
                z = (t + ((1 << (s - 1)) - 1) + t[s]) >> s
            y = Mux(z < out_lo, out_lo, Mux(z > out_hi, out_hi, z))
            with m.If(en):
                m.d.sync += out_payload.x[j].eq(y)
        return m


class UnrolledNetwork(wiring.Component):
    """Every layer of a dense chain network as an :class:`UnrolledLayer`, joined by streams.

    Parameters
    ----------
    network : sw.network.Network
        A chain of dense layers of :data:`UNROLLED_SCHEMES`.
    reuse : int or sequence of int
        Per layer (one int for all: each layer's capped at its ``in_bits``).
    levels_per_stage : int
    requants : sequence of ((m, c, s) or None) or None
        Per layer, as :class:`UnrolledLayer`'s ``requant``.
    share : bool
    skid : bool
        Every layer with :class:`UnrolledLayer`'s ``skid``: no combinational ready path between the layers.

    Raises
    ------
    TypeError, ValueError
        ``"Network must be a sw.network.Network, not 3"``, ``"Network must be a chain of dense layers, not
        one with a 'conv2d' layer"``, ``"Reuse must be an int or one int per layer (2), not [1]"``,
        ``"Requants must be one entry per layer (2), not 1"``, and :class:`UnrolledLayer`'s errors.
    """

    def __init__(self, network, *, reuse: int | Sequence[int] = 1, levels_per_stage: int = 1,
                 requants: Sequence | None = None, share: bool = True, skid: bool = False):
        from ...sw.dense import Layer
        from ...sw.network import Network

        if not isinstance(network, Network):
            raise TypeError(f"Network must be a sw.network.Network, not {network!r}")
        for layer in network.layers:
            if not isinstance(layer, Layer):
                raise ValueError(f"Network must be a chain of dense layers, not one with a {layer.kind!r} layer")
        if not network.is_chain:
            raise ValueError("Network must be a chain of dense layers, not a graph")
        n = len(network.layers)
        if isinstance(reuse, int) and not isinstance(reuse, bool):
            check_int("Reuse", reuse, min=1)
            reuse = [min(reuse, layer.in_bits) for layer in network.layers]
        elif not (isinstance(reuse, (list, tuple)) and len(reuse) == n):
            raise ValueError(f"Reuse must be an int or one int per layer ({n}), not {reuse!r}")
        if requants is None:
            requants = [None] * n
        elif len(requants) != n:
            raise ValueError(f"Requants must be one entry per layer ({n}), not {len(requants)}")
        self._network = network
        self._layers = [UnrolledLayer(layer, reuse=r, levels_per_stage=levels_per_stage, requant=q, share=share,
                                      skid=skid)
                        for layer, r, q in zip(network.layers, reuse, requants)]
        first, last = network.layers[0], network.layers[-1]
        super().__init__({
            "i": In(stream.Signature(vector_layout(first.in_bits, first.in_signed, first.in_features))),
            "o": Out(stream.Signature(vector_layout(last.out_bits, last.out_signed, last.out_features))),
        })

    @property
    def network(self):
        return self._network

    @property
    def layers(self) -> tuple[UnrolledLayer, ...]:
        return tuple(self._layers)

    @property
    def interval(self) -> int:
        """Cycles between samples without stalls: the slowest layer's."""
        return max(u.interval for u in self._layers)

    @property
    def latency(self) -> int:
        """Cycles from accepting a sample to its result being valid, without stalls (every layer's latency)."""
        return sum(u.latency for u in self._layers)

    @property
    def adders(self) -> int:
        return sum(u.graph.adders + sum(g.adders for g in u._mult) for u in self._layers)

    def adder_bits(self) -> int:
        return sum(u.adder_bits() for u in self._layers)

    def elaborate(self, platform):
        m = Module()
        for k, u in enumerate(self._layers):
            m.submodules[f"layer{k}"] = u
        wiring.connect(m, wiring.flipped(self.i), self._layers[0].i)
        for a, b in zip(self._layers, self._layers[1:]):
            wiring.connect(m, a.o, b.i)
        wiring.connect(m, self._layers[-1].o, wiring.flipped(self.o))
        return m


class UnrolledUnit(wiring.Component):
    """A dense layer's :class:`UnrolledLayer` between element streams: the engine component of the engine table's
    ``impl="unrolled"`` entries (module docstring), with the ports of every engine.

    The gather keeps one register per input; an element is written where its ``word`` says (any order), and the
    vector goes to the layer once all ``in_features`` are there; the next sample's elements are taken in the cycle
    the layer takes the vector. The scatter copies the layer's outputs into registers of its own and sends them one
    per cycle, output ``r`` to ``dest.table[r]``, so the layer's pipeline stalls only when a result is ready before
    the previous one is sent. Steady state without stalls: a sample every ``max(in_features, out_features,
    layer interval)`` cycles.

    Parameters
    ----------
    plan : hw.network.plan.EnginePlan
        An unrolled engine's plan (``plan.folding.reuse``).
    dest : hw.network.components.Dest
        Where each output goes in the consumer's buffer (a dense consumer's: a fixed place per output).

    Members
    -------
    i : In(stream.Signature(element_layout(input shape, in_features, 1)))
    o : Out(stream.Signature(element_layout(output shape, dest.words, dest.lanes)))

    Raises
    ------
    ValueError
        ``"Unrolled layer destinations must be one fixed place per output, not ones that move per item"``.
    """

    def __init__(self, plan, dest: Dest):
        layer = plan.layer
        if dest.moves:
            raise ValueError("Unrolled layer destinations must be one fixed place per output, not ones that move "
                             "per item")
        self._plan, self._dest = plan, dest
        self._in_shape = value_shape(layer.in_bits, layer.in_signed)
        self._out_shape = value_shape(layer.out_bits, layer.out_signed)
        super().__init__({
            "i": In(stream.Signature(element_layout(self._in_shape, layer.in_features, 1))),
            "o": Out(stream.Signature(element_layout(self._out_shape, dest.words, dest.lanes))),
        })

    @property
    def plan(self):
        return self._plan

    def elaborate(self, platform):
        m = Module()
        layer = self._plan.layer
        n_in, n_out = layer.in_features, layer.out_features
        m.submodules.layer = core = UnrolledLayer(layer, reuse=self._plan.folding.reuse)

        # gather: a register per input, written where the element's word says
        vec = [Signal(self._in_shape, name=f"in{k}", reset_less=True) for k in range(n_in)]
        count = Signal(range(max(n_in, 2)))
        full = Signal()
        take = Signal()
        accepted = Signal()
        m.d.comb += [take.eq(full & core.i.ready), self.i.ready.eq(~full | take),
                     accepted.eq(self.i.valid & self.i.ready), core.i.valid.eq(full)]
        m.d.comb += [core.i.payload.x[k].eq(v) for k, v in enumerate(vec)]
        with m.If(accepted):
            for k, v in enumerate(vec):
                with m.If(equals(self.i.payload.word, k)):
                    m.d.sync += v.eq(self.i.payload.x)
            m.d.sync += count.eq(Mux(equals(count, n_in - 1), 0, count + 1))
        with m.If(take):
            m.d.sync += full.eq(0)
        with m.If(accepted & equals(count, n_in - 1)):
            m.d.sync += full.eq(1)

        # scatter: the outputs copied, then one per cycle to its place in the consumer's buffer
        held = [Signal(self._out_shape, name=f"out{j}", reset_less=True) for j in range(n_out)]
        index = Signal(range(max(n_out, 2)))
        busy = Signal()
        sent = Signal()
        final = Signal()
        m.d.comb += [sent.eq(self.o.valid & self.o.ready), final.eq(sent & equals(index, n_out - 1)),
                     core.o.ready.eq(~busy | final), self.o.valid.eq(busy)]
        word_w = self.o.payload.word.shape().width
        lane_w = self.o.payload.lane.shape().width
        m.submodules.dest = table = rom(word_w + lane_w, [w | ln << word_w for w, ln in self._dest.table[:n_out]])
        rd = table.read_port(domain="comb")
        m.d.comb += [rd.addr.eq(index), self.o.payload.x.eq(select(held, index)),
                     self.o.payload.word.eq(rd.data[:word_w]), self.o.payload.lane.eq(rd.data[word_w:])]
        with m.If(sent):
            m.d.sync += index.eq(Mux(equals(index, n_out - 1), 0, index + 1))
        with m.If(final):
            m.d.sync += busy.eq(0)
        with m.If(core.o.valid & core.o.ready):
            m.d.sync += [busy.eq(1), *[h.eq(core.o.payload.x[j]) for j, h in enumerate(held)]]
        return m
