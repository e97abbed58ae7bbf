"""Deliberately broken PEs, registered as a plugin, to prove the testbenches can fail.

Loaded in the simulator too, through ``PEFORGE_PLUGINS=tests.mutants``.
"""

from types import SimpleNamespace

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data

from peforge.hw.circulant_fft import CirculantFFT, CirculantParams, _ParallelDatapath
from peforge.hw.circulant_stream import elaborate_streaming
from peforge.hw.crossbar import CrossbarController, CrossbarParams, CrossbarSystem, controller_logic
from peforge.hw.fixed_mac import FixedMac, FixedMacParams
from peforge.hw.nm_sparse import NMSparse, NMSparseParams
from peforge.hw.sp2_mac import SP2Mac, SP2MacParams
from peforge.hw.registry import PE, register


class SP2MacDropsCarry(SP2Mac):
    """Forgets the +1 of the one's-complement negation: off by one per negative weight."""

    def lane_product(self, m, act, code, lane):
        folded, sign = super().lane_product(m, act, code, lane)
        return folded, sign & 0


class FixedMacTruncates(FixedMac):
    """Drops the top partial product of the weight (wrong for negative weights only)."""

    def lane_operands(self, m, payload):
        return [(act, Mux(weight[-1], 0, weight)) for act, weight in super().lane_operands(m, payload)]


register(PE("sp2-mac-drops-carry", "mutant", SP2MacParams, SP2MacDropsCarry, "peforge.tb.sp2_mac", "test"))
register(PE("fixed-mac-truncates", "mutant", FixedMacParams, FixedMacTruncates, "peforge.tb.fixed_mac", "test"))


class NMSparseReversedIndex(NMSparse):
    """Reads position M-1-idx: right only for symmetric patterns."""

    def lane_operands(self, m, payload):
        flipped = ~payload.indices.as_value()
        view = data.View(payload.shape(), Cat(payload.acts.as_value(), payload.values.as_value(), flipped,
                                              payload.dense, payload.last))
        return super().lane_operands(m, view)


register(PE("nm-sparse-reversed-index", "mutant", NMSparseParams, NMSparseReversedIndex, "peforge.tb.nm_sparse", "test"))


class CrossbarSkipsLastRow(CrossbarSystem):
    """Zero-skipping ORs all but the last row of a sub-array: a plane set only there is skipped."""

    def plane_mask(self, rows):
        return super().plane_mask(rows[:-1])


register(PE("crossbar-skips-last-row", "mutant", CrossbarParams, CrossbarSkipsLastRow, "peforge.tb.crossbar", "test"))


class _RoundsHalfDown(_ParallelDatapath):
    def output_bias(self):
        return super().output_bias() - 1


class CirculantRoundsHalfDown(CirculantFFT):
    """The output rounding R_L rounds ties down (bias 2^(L-1) - 1): wrong only on exact halves."""

    _datapath = _RoundsHalfDown


register(PE("circulant-fft-rounds-half-down", "mutant", CirculantParams, CirculantRoundsHalfDown,
            "peforge.tb.circulant_fft", "test"))


class CirculantStreamNyquistFromIm(CirculantFFT):
    """``arch="streaming"`` reading the Nyquist bin's weight (bin k/2, real) from its ignored imaginary field:
    wrong whenever that field differs from the real one and the input has a Nyquist component."""

    def elaborate(self, platform):
        payload = Signal(self.params.input_layout)
        half = self.params.fmt.block // 2
        port = SimpleNamespace(valid=self.i.valid, ready=self.i.ready, payload=payload)
        m = elaborate_streaming(SimpleNamespace(params=self.params, i=port, o=self.o))
        m.d.comb += payload.eq(self.i.payload)
        m.d.comb += payload.w[half].re.eq(self.i.payload.w[half].im)
        return m


register(PE("circulant-stream-nyquist-from-im", "mutant", CirculantParams, CirculantStreamNyquistFromIm,
            "peforge.tb.circulant_fft", "test"))


class CrossbarControllerFixedLatency(CrossbarController):
    """Takes the ADC codes ``array_latency`` cycles after ``start`` instead of when ``valid`` says: right
    behind the RTL emulator, wrong behind an array whose latency varies."""

    def elaborate(self, platform):
        m = Module()
        start = Signal()
        due = start
        for n in range(self.params.array_latency):
            later = Signal(name=f"start_d{n}")
            m.d.sync += later.eq(due)
            due = later
        port = SimpleNamespace(sub=self.array.sub, wl=self.array.wl, start=start, adc=self.array.adc, valid=due)
        m.d.comb += self.array.start.eq(start)
        controller_logic(m, self.params, i=self.i, o=self.o, cfg=self.cfg, array=port, busy=self.busy,
                         plane_mask=self.plane_mask)
        return m


register(PE("crossbar-controller-fixed-latency", "mutant", CrossbarParams, CrossbarControllerFixedLatency,
            "peforge.tb.crossbar", "test"))


# -- broken variants for the formal proofs (tb/formal.py, tests/test_formal.py); not registered as PEs -----------

from amaranth import Const  # noqa: E402
from amaranth.lib import wiring  # noqa: E402

from peforge.hw.network import Requantizer  # noqa: E402


class _Wrapped(wiring.Component):
    """``inner`` behind the same signature; every member but ``i`` and ``o`` passes straight through, and a
    subclass decides how ``i`` and ``o`` connect (:meth:`connect`)."""

    def __init__(self, inner):
        self.inner = inner
        super().__init__(inner.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self.inner
        for name, member in self.signature.members.items():
            if name in ("i", "o"):
                continue
            outer, port = getattr(self, name), getattr(inner, name)
            if member.is_port:
                m.d.comb += (port.eq(outer) if member.flow == wiring.In else outer.eq(port))
            elif member.flow == wiring.In:
                wiring.connect(m, wiring.flipped(outer), port)
            else:
                wiring.connect(m, port, wiring.flipped(outer))
        self.connect(m, inner)
        return m

    def connect(self, m, inner):
        wiring.connect(m, wiring.flipped(self.i), inner.i)
        wiring.connect(m, inner.o, wiring.flipped(self.o))


class IgnoresBackpressure(_Wrapped):
    """The sink's ``ready`` never reaches the PE: a stalled result is overwritten or dropped (stream contract)."""

    def connect(self, m, inner):
        wiring.connect(m, wiring.flipped(self.i), inner.i)
        m.d.comb += [self.o.valid.eq(inner.o.valid), self.o.payload.eq(inner.o.payload), inner.o.ready.eq(1)]


class ValidAtReset(_Wrapped):
    """A reset-less flag keeps ``o.valid`` high from power-up and through reset until one beat is taken."""

    def connect(self, m, inner):
        stale = Signal(init=1, reset_less=True)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += stale.eq(0)
        wiring.connect(m, wiring.flipped(self.i), inner.i)
        m.d.comb += [self.o.valid.eq(inner.o.valid | stale), self.o.payload.eq(inner.o.payload),
                     inner.o.ready.eq(self.o.ready & ~stale)]


class _Slice(_Wrapped):
    """``inner`` then one output register, correct as a stream; ``twice`` sends every result two times."""

    twice = False

    def connect(self, m, inner):
        wiring.connect(m, wiring.flipped(self.i), inner.i)
        again = Signal()
        done = Const(1) if not self.twice else again
        m.d.comb += inner.o.ready.eq(~self.o.valid | (self.o.ready & done))
        with m.If(inner.o.valid & inner.o.ready):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(inner.o.payload), again.eq(0)]
        with m.Elif(self.o.ready & self.o.valid):
            if self.twice:
                m.d.sync += [again.eq(1), self.o.valid.eq(~again)]
            else:
                m.d.sync += self.o.valid.eq(0)


class LateByOne(_Slice):
    """One register stage more than the Params' ``latency`` says (timing)."""


class EmitsTwice(_Slice):
    """Every result comes out twice (the counter property: nothing but a ``last`` yields an output)."""

    twice = True


class _Offset:
    """A layer whose requantisation offsets are moved by ``delta`` (and rounding forced, if given)."""

    def __init__(self, layer, delta=0, rounding=None):
        self._layer, self.offset = layer, layer.offset + delta
        if rounding is not None:
            self.rounding = rounding

    def __getattr__(self, name):
        return getattr(self._layer, name)


class RequantizerTiesDown(Requantizer):
    """Adds ``2^(S-1) - 1`` instead of ``2^(S-1)`` (its offsets one lower): exact halves round down."""

    def __init__(self, *, layer, **kwargs):
        super().__init__(layer=_Offset(layer, -1), **kwargs)


class RequantizerIgnoresRounding(Requantizer):
    """Rounds half up whatever the layer's rounding mode says."""

    def __init__(self, *, layer, **kwargs):
        super().__init__(layer=_Offset(layer, 0, "half_up"), **kwargs)


class CrossbarControllerSkipsLastRow(CrossbarController):
    """The controller alone with the zero-skipping bug of ``crossbar-skips-last-row``."""

    def plane_mask(self, rows):
        return super().plane_mask(rows[:-1])


# -- broken variants of the network engine and accelerator (tb/formal.py targets "engine", "accelerator") -------

import dataclasses  # noqa: E402

from peforge.hw.network import Accelerator  # noqa: E402
from peforge.sw import network as _net  # noqa: E402


class DropsRowZero(_Wrapped):
    """The collector drops a result: the element bound for place 0 (``word`` and ``lane`` 0; an accelerator's: a
    sample whose class is 0) is taken from the design and never sent on (fewer outputs than owed: bounded
    liveness)."""

    def connect(self, m, inner):
        wiring.connect(m, wiring.flipped(self.i), inner.i)
        payload = inner.o.payload
        if "word" in payload.shape().members:
            drop = ~payload.word.any() & ~payload.lane.any()
        else:
            drop = ~payload.cls.any()
        m.d.comb += [self.o.valid.eq(inner.o.valid & ~drop), self.o.payload.eq(inner.o.payload),
                     inner.o.ready.eq(self.o.ready | drop)]


class PhantomBeatAfterReset(_Wrapped):
    """Feeds the design one zero beat of its own after reset, so it frames every sample one host beat early: a
    sample's result can come out before the host sent that sample's ``last`` (counting)."""

    def connect(self, m, inner):
        phantom = Signal(init=1)
        with m.If(phantom & inner.i.ready):
            m.d.sync += phantom.eq(0)
        m.d.comb += [inner.i.valid.eq(phantom | self.i.valid),
                     inner.i.payload.eq(Mux(phantom, 0, self.i.payload.as_value())),
                     self.i.ready.eq(inner.i.ready & ~phantom)]
        wiring.connect(m, inner.o, wiring.flipped(self.o))


class ArgmaxLastOfEqual(_Wrapped):
    """``cls`` picks the last of equal largest logits instead of the first (datapath)."""

    def connect(self, m, inner):
        wiring.connect(m, wiring.flipped(self.i), inner.i)
        logits = inner.o.payload.logits
        best, cls = logits[0], Const(0, 1)
        for j in range(1, len(logits)):
            bigger = logits[j] >= best
            best, cls = Mux(bigger, logits[j], best), Mux(bigger, j, cls)
        m.d.comb += [self.o.valid.eq(inner.o.valid), self.o.payload.logits.eq(logits), self.o.payload.cls.eq(cls),
                     inner.o.ready.eq(self.o.ready)]


class AcceleratorWrongWeight(Accelerator):
    """Built with weight ``[0, 1]`` of the first layer one higher than the network says (its weight ROM)."""

    def __init__(self, network, folding=None):
        first = network.layers[0]
        w = first.weights.weights.copy()
        w[0, 1] += 1
        layer = dataclasses.replace(first, weights=_net.FixedWeights(w, first.weights.w_bits))
        super().__init__(_net.Network(network.input, (layer, *network.layers[1:])), folding)
