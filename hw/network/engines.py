"""The engines: how a layer of one kind and scheme becomes hardware, one table keyed by (kind, scheme, impl).

An engine (an :class:`EngineSpec`) answers every question the compiler asks about one kind of layer, as FINN's
nodes do for ``SetFolding`` and hls4ml's per-node strategies pick a kernel:

=========================  ===========================================================================
``plan(layer, folding)``   the :class:`hw.network.plan.EnginePlan`: slots (PE instances), beats, groups
``candidates(layer)``      the foldings the default-folding search may choose from
``weight_fields(slot)``    the payload fields of a slot's beat that its weight memory fills
``weight_words(plan, s)``  the memory image of slot ``s``: one word per (row group, beat)
``pack(slot, payload,..)`` how a beat of the sequencer (input word, weight word, ``last``) fills a slot's payload
``loader(plan)``           a component that programs the slots after reset, or None (the crossbar's arrays)
``multipliers``, ``macs``  what the cost model and ``busy`` read
=========================  ===========================================================================

:data:`ENGINES` holds the entries, ``impl`` ``"folded"`` (PEs reused over rows, weights in memory) or
``"unrolled"`` (dense fixed, sp2, msq and nm layers: the weights as constant adder graphs, :class:`UnrolledEngine`,
chosen per layer by :attr:`hw.network.folding.LayerFolding.impl`). The engine component of every folded entry is
the same (:class:`hw.network.engine.Engine`): input buffer -> sequencer -> fan-out -> slots -> collector ->
requantiser; an unrolled entry's is :class:`hw.network.unrolled.UnrolledUnit`.

=========== ============================== ============================ ===============================
scheme      slot PE                        one beat carries             a slot's result per row group
=========== ============================== ============================ ===============================
fixed       ``fixed-mac`` (``lanes``)      ``lanes`` inputs + weights   1 output row
sp2         ``sp2-mac`` (``lanes``)        ``lanes`` inputs + codes     1 output row
msq         ``sp2-mac`` or ``fixed-mac``   ``lanes`` inputs + weights   1 row of that slot's kind
nm          ``nm-sparse`` (``lanes / M``   ``lanes`` inputs + N of M    1 output row
            groups)                        values and indices per group
circulant   ``circulant-fft``              one block (k inputs) + the   k outputs (one block row)
                                           spectra of block (i, j)
crossbar    ``crossbar`` (controller +     every input (rows)           ``cols`` outputs (one tile; the
            ideal-array emulator)                                       tile's cells load after reset)
=========== ============================== ============================ ===============================
"""

from __future__ import annotations

import dataclasses
import numpy as np
from amaranth import Cat, signed, unsigned
from amaranth.hdl import Shape
from amaranth.lib import data
from amaranth.utils import ceil_log2

from ...sw import network as net

from ..circulant_fft import CirculantParams
from ..crossbar import CrossbarParams
from ..fixed_mac import FixedMacParams
from ..nm_sparse import NMSparseParams
from ..sp2_mac import SP2MacParams
from .components import CrossbarLoader
from .engine import Engine, PoolUnit
from .folding import DEFAULT_MAX_LANES, DEFAULT_MAX_MULTIPLIERS, IMPLS, LayerFolding
from .plan import EnginePlan, Slot, ceil_div
from .pool import PoolWindow
from .unrolled import UNROLLED_SCHEMES, UnrolledUnit, digit_serial, layer_graphs
from .window import Window

__all__ = ["EngineSpec", "ENGINES", "IMPLS", "engine_for", "plan_engine", "field_bits", "SCHEME_PES",
           "UnrolledEngine"]

# IMPLS, the implementations an engine can have ("folded", "unrolled"), is defined in hw.network.folding, where a
# layer's folding names its own


def field_bits(layout: data.StructLayout, name: str, values) -> int:
    """Pack ``values`` (one per lane, lane 0 first) as field ``name`` of ``layout``, returned as an int of the
    field's own width."""
    shape = layout[name].shape
    if isinstance(shape, data.ArrayLayout):
        elem = Shape.cast(shape.elem_shape) if not isinstance(shape.elem_shape, data.Layout) else None
        width = shape.elem_shape.size if elem is None else elem.width
        word = 0
        for n, v in enumerate(values):
            word |= (int(v) & ((1 << width) - 1)) << (n * width)
        return word
    return int(values) & ((1 << Shape.cast(shape).width) - 1)


def _dot_rows(out: int, pes: int) -> tuple[int, tuple[tuple[tuple[int, ...], ...], ...]]:
    groups = ceil_div(out, pes)
    rows = tuple(tuple((g * pes + s,) if g * pes + s < out else (-1,) for g in range(groups)) for s in range(pes))
    return groups, rows


class EngineSpec:
    """One entry of :data:`ENGINES` (see the module docstring). Subclasses set :attr:`kind`, :attr:`schemes`
    and :attr:`impl` and implement the questions."""

    kind: str = "dense"
    schemes: tuple[str, ...] = ()
    impl: str = "folded"
    #: The PEs its slots hold (the registry names).
    pes: tuple[str, ...] = ()
    #: The payload field of a slot's beat the input word fills.
    x_field: str = "acts"

    def plan(self, layer, folding: LayerFolding) -> EnginePlan:
        raise NotImplementedError

    def candidates(self, layer) -> list[LayerFolding]:
        raise NotImplementedError

    def weight_fields(self, slot: Slot) -> list[str]:
        raise NotImplementedError

    def weight_words(self, plan: EnginePlan, slot: Slot) -> list[int]:
        raise NotImplementedError

    def pack(self, m, slot: Slot, payload, x, word, last) -> None:
        """Fill the slot's input ``payload`` from the sequencer's beat: the input word ``x``, the slot's weight
        memory word ``word`` (its :meth:`weight_fields`, in order, LSB first) and ``last``."""
        fields = self.weight_fields(slot)
        statements = [payload[self.x_field].as_value().eq(x), payload.last.eq(last)]
        if fields:
            statements.append(Cat(*[payload[f].as_value() for f in fields]).eq(word))
        m.d.comb += statements

    def loader(self, plan: EnginePlan):
        """A component that programs the slots after reset (its ``loaded`` output gates the sequencer), or
        None."""
        return None

    def multipliers(self, plan: EnginePlan) -> int:
        """Multiplier lanes of the engine's PEs (lanes per slot x slots; 0 where the PE has none)."""
        return sum(getattr(s.params, "lanes", 0) for s in plan.slots)

    def macs(self, plan: EnginePlan) -> int:
        """Multiply-accumulates per input vector the PEs do usefully (``in x out``)."""
        return plan.layer.in_features * plan.layer.out_features

    def dsp_slots(self, plan: EnginePlan) -> list[Slot]:
        """The slots whose multiplier lanes take a DSP each (fixed-point and N:M products)."""
        return [s for s in plan.slots if s.pe in ("fixed-mac", "nm-sparse")]

    def cycles(self, plan: EnginePlan) -> int:
        """Predicted cycles per sample in steady state: loading the input (one element per cycle), or its work
        (:meth:`work_cycles`), whichever is longer."""
        return max(plan.load_cycles, self.work_cycles(plan))

    def work_cycles(self, plan: EnginePlan) -> int:
        """Cycles of a sample's work once its input is there: per item and row group the longer of issuing its
        beats and draining the group's results (:attr:`EnginePlan.group_drains`)."""
        return plan.positions * sum(max(plan.beats * plan.interval, d) for d in plan.group_drains)

    def acc_shape(self, plan: EnginePlan):
        raise NotImplementedError

    # -- where the engine's input lives, and the component ---------------------------------------------------

    def input_words(self, plan: EnginePlan) -> tuple[int, int, int | None]:
        """``(words, lanes, ring)`` of the engine's input buffer: what an element's ``word`` and ``lane`` address,
        and the ring its addresses wrap round (None: a buffer of whole samples, in two banks)."""
        return plan.beats, plan.lanes, None

    def buffer(self, plan: EnginePlan) -> tuple[int, int]:
        """``(depth, width)`` of the engine's buffer memory (:mod:`hw.network.cost` places it): two banks of
        ``beats`` words of ``lanes`` elements; a window engine's ring of rows."""
        words, lanes, ring = self.input_words(plan)
        return (2 * words if ring is None else ring), lanes * plan.network_layer.in_bits

    def input_address(self, plan: EnginePlan, channel: int, position: int, positions: int) -> tuple[int, int]:
        """``(word, lane)`` of input element (``channel``, ``position``) of a producer with ``positions`` positions
        per sample (a dense input: its flat index ``channel * positions + position``, as ``torch.flatten``)."""
        n = channel * positions + position
        return n // plan.lanes, n % plan.lanes

    def component(self, plan: EnginePlan, dest):
        """The engine's component: ``i`` takes the input elements, ``o`` gives the outputs to ``dest``
        (a :class:`hw.network.components.Dest`), or None (a flatten: nothing to compute)."""
        return Engine(plan, dest)

    def _check_pes(self, layer, pes: int) -> None:
        if pes > layer.out_features:
            raise ValueError(f"Layer {layer.scheme} pes must be at most its {layer.out_features} output rows, "
                             f"not {pes}")


class DotEngine(EngineSpec):
    """fixed, sp2 and msq layers: dot-product PEs of ``lanes`` lanes, one output row per slot and group."""

    schemes = ("fixed", "sp2", "msq")
    pes = ("fixed-mac", "sp2-mac")

    def plan(self, layer, folding):
        w, scheme = layer.weights, layer.scheme
        lanes, pes = folding.lanes, folding.pes
        act = dict(act_bits=layer.in_bits, act_signed=layer.in_signed)
        self._check_pes(layer, pes)
        lanes = min(lanes, layer.in_features)
        beats = ceil_div(layer.in_features, lanes)
        max_len = beats * lanes

        def fixed_params(bits):
            return FixedMacParams(lanes=lanes, w_bits=bits, max_len=max_len, dsp=True, **act)

        def sp2_params(fmt):
            return SP2MacParams(lanes=lanes, fmt=fmt, max_len=max_len, **act)

        if scheme != "msq":
            groups, rows = _dot_rows(layer.out_features, pes)
            pe, params = (("fixed-mac", fixed_params(w.w_bits)) if scheme == "fixed" else
                          ("sp2-mac", sp2_params(w.fmt)))
            slots = tuple(Slot(pe, params, r) for r in rows)
        else:
            kinds = np.asarray(w.is_sp2)
            sp2_rows = [int(r) for r in np.flatnonzero(kinds)]
            fixed_rows = [int(r) for r in np.flatnonzero(~kinds)]
            n_sp2 = 0 if not sp2_rows else (len(fixed_rows) == 0 and pes or
                                            min(max(1, round(pes * len(sp2_rows) / len(kinds))), pes - 1))
            if pes < 2 and sp2_rows and fixed_rows:
                raise ValueError(f"Layer msq pes must be at least 2 (one SP2 and one fixed-point slot), not {pes}")
            n_fixed = pes - n_sp2
            groups = max(ceil_div(len(sp2_rows), n_sp2) if n_sp2 else 0,
                         ceil_div(len(fixed_rows), n_fixed) if n_fixed else 0)

            def spread(rows, count):
                return [tuple((rows[g * count + s],) if g * count + s < len(rows) else (-1,) for g in range(groups))
                        for s in range(count)]

            slots = tuple([Slot("sp2-mac", sp2_params(w.sp2_fmt), r, "sp2") for r in spread(sp2_rows, n_sp2)]
                          + [Slot("fixed-mac", fixed_params(w.w_bits), r, "fixed") for r in spread(fixed_rows, n_fixed)])
        return EnginePlan(layer, dataclasses.replace(folding, lanes=lanes, pes=pes), lanes, beats, groups, 1, slots,
                          1, self)

    def candidates(self, layer):
        lanes = sorted({min(2 ** e, layer.in_features) for e in range(13)})
        lanes = [n for n in lanes if n <= DEFAULT_MAX_LANES]
        low = 2 if layer.scheme == "msq" and 0 < int(np.sum(layer.weights.is_sp2)) < layer.out_features else 1
        return [LayerFolding(lanes=n, pes=p) for n in lanes for p in range(low, layer.out_features + 1)
                if n * p <= max(DEFAULT_MAX_MULTIPLIERS, n * low)]

    def weight_fields(self, slot):
        return [slot.params.weight_field]

    def weight_words(self, plan, slot):
        w, lanes, layout = plan.layer.weights, plan.lanes, slot.params.input_layout
        if plan.scheme == "msq":
            src = w.codes if slot.kind == "sp2" else w.fixed
        else:
            src = w.weights if plan.scheme == "fixed" else w.codes
        words = []
        for g in range(plan.groups):
            row = slot.rows[g][0]
            for b in range(plan.beats):
                vals = [0] * lanes if row < 0 else list(src[row, b * lanes:(b + 1) * lanes])
                vals += [0] * (lanes - len(vals))
                words.append(field_bits(layout, slot.params.weight_field, vals))
        return words


class NMEngine(EngineSpec):
    """nm layers: ``nm-sparse`` PEs of ``lanes / M`` groups, one output row per slot and group."""

    schemes = ("nm",)
    pes = ("nm-sparse",)

    def plan(self, layer, folding):
        w = layer.weights
        lanes, pes = folding.lanes, folding.pes
        self._check_pes(layer, pes)
        m_ = w.fmt.m
        if lanes % m_ and lanes != 1:
            raise ValueError(f"Layer nm lanes must be a multiple of M = {m_}, not {lanes}")
        lanes = max(lanes, m_)
        lanes = min(lanes, ceil_div(layer.in_features, m_) * m_)
        beats = ceil_div(layer.in_features, lanes)
        params = NMSparseParams(fmt=w.fmt, groups=lanes // m_, w_bits=w.w_bits, max_len=beats * lanes, dsp=True,
                                act_bits=layer.in_bits, act_signed=layer.in_signed)
        groups, rows = _dot_rows(layer.out_features, pes)
        return EnginePlan(layer, dataclasses.replace(folding, lanes=lanes, pes=pes), lanes, beats, groups, 1,
                          tuple(Slot("nm-sparse", params, r) for r in rows), 1, self)

    def candidates(self, layer):
        unit = layer.weights.fmt.m
        lanes = sorted({min(unit * 2 ** e, ceil_div(layer.in_features, unit) * unit) for e in range(13)})
        lanes = [n for n in lanes if n <= max(DEFAULT_MAX_LANES, unit)]
        return [LayerFolding(lanes=n, pes=p) for n in lanes for p in range(1, layer.out_features + 1)
                if n * p <= max(DEFAULT_MAX_MULTIPLIERS, n)]

    def weight_fields(self, slot):
        return ["values", "indices"]

    def weight_words(self, plan, slot):
        w, layout = plan.layer.weights, slot.params.input_layout
        n_ = slot.params.lanes
        vw = layout["values"].shape.size
        words = []
        for g in range(plan.groups):
            row = slot.rows[g][0]
            for b in range(plan.beats):
                if row < 0:
                    vals, idx = [0] * n_, [0] * n_
                else:
                    vals = list(w.values[row, b * n_:(b + 1) * n_])
                    idx = list(w.indices[row, b * n_:(b + 1) * n_])
                vals += [0] * (n_ - len(vals))
                idx += [0] * (n_ - len(idx))
                words.append(field_bits(layout, "values", vals) | field_bits(layout, "indices", idx) << vw)
        return words

    def macs(self, plan):
        # the n of every m weights that are stored
        return plan.layer.out_features * plan.layer.weights.values.shape[1]


class CirculantEngine(EngineSpec):
    """circulant layers: ``circulant-fft`` PEs, one block row (k outputs) per slot and group, one block per beat."""

    schemes = ("circulant",)
    pes = ("circulant-fft",)
    x_field = "x"

    def plan(self, layer, folding):
        w = layer.weights
        lanes, pes = folding.lanes, folding.pes
        k = w.fmt.block
        if lanes not in (1, k):
            raise ValueError(f"Layer circulant lanes must be the block size {k} (or left at 1), not {lanes}")
        p, q = w.spectra.shape[:2]
        if pes > p:
            raise ValueError(f"Layer circulant pes must be at most its {p} block rows, not {pes}")
        params = CirculantParams(fmt=w.fmt)
        groups = ceil_div(p, pes)
        slots = tuple(Slot("circulant-fft", params,
                           tuple(tuple((g * pes + s) * k + e if g * pes + s < p and (g * pes + s) * k + e
                                       < layer.out_features else -1 for e in range(k)) for g in range(groups)))
                      for s in range(pes))
        return EnginePlan(layer, dataclasses.replace(folding, lanes=k, pes=pes), k, q, groups, k, slots,
                          params.initiation_interval, self)

    def candidates(self, layer):
        p = layer.weights.spectra.shape[0]
        return [LayerFolding(lanes=layer.weights.fmt.block, pes=n) for n in range(1, p + 1)]

    def weight_fields(self, slot):
        return ["w"]

    def weight_words(self, plan, slot):
        w = plan.layer.weights
        bits = w.fmt.w_bits
        mask = (1 << bits) - 1
        words = []
        for g in range(plan.groups):
            i = g * len(plan.slots) + plan.slots.index(slot)
            for b in range(plan.beats):
                bins = w.spectra[i, b] if i < w.spectra.shape[0] else np.zeros(w.spectra.shape[2:], np.int64)
                word = 0
                for n, (re, im) in enumerate(bins):
                    word |= ((int(re) & mask) | (int(im) & mask) << bits) << (2 * bits * n)
                words.append(word)
        return words


class CrossbarEngine(EngineSpec):
    """crossbar layers: one ``crossbar`` slot (controller + ideal-array emulator) per tile of ``cols`` outputs;
    the cells sit in the arrays, programmed after reset by :class:`hw.network.components.CrossbarLoader`."""

    schemes = ("crossbar",)
    pes = ("crossbar",)
    x_field = "x"

    def plan(self, layer, folding):
        w = layer.weights
        lanes, pes = folding.lanes, folding.pes
        fmt = w.fmt
        tiles = len(w.mappings)
        if lanes not in (1, fmt.rows):
            raise ValueError(f"Layer crossbar lanes must be its {fmt.rows} rows (or left at 1), not {lanes}")
        if pes not in (1, tiles):
            raise ValueError(f"Layer crossbar pes must be its {tiles} tiles (or left at 1), not {pes}")
        params = CrossbarParams(fmt=fmt)
        slots = tuple(Slot("crossbar", params, (tuple(t * fmt.cols + c if t * fmt.cols + c < layer.out_features
                                                      else -1 for c in range(fmt.cols)),))
                      for t in range(tiles))
        worst = params.vector_cycles([fmt.act_bits] * fmt.sub_arrays)
        return EnginePlan(layer, dataclasses.replace(folding, lanes=fmt.rows, pes=tiles), fmt.rows, 1, 1, fmt.cols,
                          slots, worst, self)

    def candidates(self, layer):
        return [LayerFolding(lanes=layer.weights.fmt.rows, pes=len(layer.weights.mappings))]

    def weight_fields(self, slot):
        return []

    def weight_words(self, plan, slot):
        return []

    def pack(self, m, slot, payload, x, word, last):
        m.d.comb += payload.x.as_value().eq(x)   # one vector per beat: no last, no weights

    def loader(self, plan):
        return CrossbarLoader(plan)


# -- convolutions and pools --------------------------------------------------------------------------------------

class RowView:
    """A convolution seen as the dense layer of its weight matrix: ``in_features`` the window (``kh x kw x C_in /
    groups``), ``out_features`` the output channels, everything else the layer's. The dense engines plan and
    fill their slots from it; the window engine walks the positions."""

    def __init__(self, layer):
        self._layer = layer
        self.in_features = layer.weights.in_features
        self.out_features = layer.weights.out_features

    def __getattr__(self, name):
        return getattr(self._layer, name)


def _divisors(n: int, most: int) -> list[int]:
    return [d for d in range(1, min(n, most) + 1) if n % d == 0]


class ConvEngine(EngineSpec):
    """conv1d and conv2d layers (``groups = 1``) of a scheme: the scheme's dense engine on the layer's weight
    matrix (:class:`RowView`), fed by a line buffer and a window sequencer (:mod:`hw.network.window`);
    ``lanes`` channels per beat (a divisor of the input channels), ``pes`` output channels at once."""

    def __init__(self, kind: str, dense: EngineSpec):
        self.kind, self._dense = kind, dense
        self.schemes, self.pes, self.x_field = dense.schemes, dense.pes, dense.x_field

    def plan(self, layer, folding):
        if layer.groups > 1:
            return DEPTHWISE.plan(layer, folding)
        if layer.scheme == "crossbar":
            raise ValueError(f"Layer {layer.kind} (crossbar) must be a dense layer to be compiled: a crossbar "
                             f"convolution's windows have no engine yet")
        inner = self._dense.plan(RowView(layer), folding)
        window = Window.of(layer, inner.lanes)
        return dataclasses.replace(inner, engine=self, window=window, source=layer)

    def candidates(self, layer):
        if layer.groups > 1:
            return DEPTHWISE.candidates(layer)
        c = layer.in_shape[0]
        return [f for f in self._dense.candidates(RowView(layer)) if c % f.lanes == 0]

    def weight_fields(self, slot):
        return (DEPTHWISE if slot.lane is not None else self._dense).weight_fields(slot)

    def weight_words(self, plan, slot):
        return (DEPTHWISE if plan.window.depthwise else self._dense).weight_words(plan, slot)

    def pack(self, m, slot, payload, x, word, last):
        (DEPTHWISE if slot.lane is not None else self._dense).pack(m, slot, payload, x, word, last)

    def multipliers(self, plan):
        return (DEPTHWISE if plan.window.depthwise else self._dense).multipliers(plan)

    def macs(self, plan):
        kh, kw = plan.window.kernel
        return (DEPTHWISE if plan.window.depthwise else self._dense).macs(plan) * plan.window.taps() // (kh * kw)

    def input_words(self, plan):
        return plan.window.ring_words, plan.window.lanes, plan.window.ring_words

    def input_address(self, plan, channel, position, positions):
        return plan.window.address(channel, position)


class DepthwiseEngine(DotEngine):
    """Depthwise convolutions (``groups = C_in``, ``m`` output channels per input channel) of fixed and SP2
    weights: ``lanes`` channels per input word, ``lanes x m`` one-lane slots, slot ``s`` taking lane ``s // m``;
    a row group is one channel word, a beat one kernel position."""

    kind = "conv2d"
    schemes = ("fixed", "sp2")

    def plan(self, layer, folding):
        if layer.scheme not in self.schemes:
            raise ValueError(f"Layer {layer.kind} depthwise weights must be one of {', '.join(self.schemes)} to be "
                             f"compiled, not {layer.scheme}")
        lanes = folding.lanes
        window = Window.of(layer, lanes, depthwise=True)
        view = RowView(layer)
        mult = window.multiplier
        w = layer.weights
        act = dict(act_bits=layer.in_bits, act_signed=layer.in_signed)
        taps = view.in_features
        if layer.scheme == "fixed":
            pe, params = "fixed-mac", FixedMacParams(lanes=1, w_bits=w.w_bits, max_len=taps, dsp=True, **act)
        else:
            pe, params = "sp2-mac", SP2MacParams(lanes=1, fmt=w.fmt, max_len=taps, **act)
        groups = window.words_per_position
        per = lanes * mult
        slots = tuple(Slot(pe, params, tuple((g * per + s,) for g in range(groups)), lane=s // mult)
                      for s in range(per))
        return EnginePlan(view, dataclasses.replace(folding, lanes=lanes, pes=per), lanes, window.beats, groups, 1,
                          slots, 1, ENGINES[(layer.kind, layer.scheme, "folded")], window, layer)

    def candidates(self, layer):
        c, mult = layer.in_shape[0], layer.out_shape[0] // layer.in_shape[0]
        return [LayerFolding(lanes=n, pes=n * mult) for n in _divisors(c, DEFAULT_MAX_LANES)
                if n * mult <= max(DEFAULT_MAX_MULTIPLIERS, mult)]

    def weight_words(self, plan, slot):
        w, layout = plan.layer.weights, slot.params.input_layout
        src = w.weights if plan.scheme == "fixed" else w.codes
        return [field_bits(layout, slot.params.weight_field, [src[slot.rows[g][0], b]])
                for g in range(plan.groups) for b in range(plan.beats)]

    def pack(self, m, slot, payload, x, word, last):
        bits = len(payload[self.x_field].as_value())      # one element: the slot's one lane
        super().pack(m, slot, payload, x[slot.lane * bits:(slot.lane + 1) * bits], word, last)

    def multipliers(self, plan):
        return len(plan.slots)

    def macs(self, plan):
        return plan.layer.in_features * plan.layer.out_features


DEPTHWISE = DepthwiseEngine()


class _Weightless(EngineSpec):
    """An engine without weights or PE slots: one folding (a lane, a "pe"), no multipliers."""

    schemes = (None,)

    def candidates(self, layer):
        return [LayerFolding(lanes=1, pes=1)]

    def weight_fields(self, slot):
        return []

    def weight_words(self, plan, slot):
        return []

    def multipliers(self, plan):
        return 0

    def macs(self, plan):
        return 0


class PoolEngine(_Weightless):
    """maxpool, avgpool and globalavgpool layers whose windows do not overlap: a streaming reduction
    (:class:`hw.network.pool.StreamPool`), one input element per cycle, then the requantiser (average pools)
    or a pass-through (max pools)."""

    def __init__(self, kind: str):
        self.kind = kind

    def plan(self, layer, folding):
        window = PoolWindow.of(layer)
        return EnginePlan(layer, dataclasses.replace(folding, lanes=1, pes=1), 1, 1, 1, 1, (), 1, self, window, layer)

    def work_cycles(self, plan):
        return plan.out_elements * plan.folding.requant

    def acc_shape(self, plan):
        layer = plan.layer
        if self.kind == "maxpool":
            return signed(layer.in_bits) if layer.in_signed else unsigned(layer.in_bits)
        kh, kw = plan.window.kernel
        return signed(layer.in_bits + (0 if layer.in_signed else 1) + ceil_log2(kh * kw))

    def input_words(self, plan):
        return plan.window.channels, 1, plan.window.channels

    def buffer(self, plan):
        """The accumulators of one output row's windows (:class:`hw.network.pool.StreamPool`)."""
        return max(2, plan.window.out_width * plan.window.channels), plan.acc_shape.width

    def input_address(self, plan, channel, position, positions):
        return channel, 0

    def component(self, plan, dest):
        return PoolUnit(plan, dest)


class FlattenEngine(_Weightless):
    """flatten: nothing on chip; the producer sends each element where the consumer keeps it (``torch.flatten``'s
    order)."""

    kind = "flatten"

    def plan(self, layer, folding):
        return EnginePlan(layer, dataclasses.replace(folding, lanes=1, pes=1), 1, 0, 0, 1, (), 1, self, None, layer)

    def cycles(self, plan):
        return 0

    def work_cycles(self, plan):
        return 0

    def acc_shape(self, plan):
        return signed(plan.layer.in_bits + 1)

    def buffer(self, plan):
        return 0, 0

    def component(self, plan, dest):
        return None


class UnrolledEngine(_Weightless):
    """Dense layers of fixed, sp2, msq and nm weights unrolled: every output an adder graph of shifted inputs with
    the weights as constants (:mod:`hw.network.unrolled`), the layer's own requantisation as the graph of its
    multiplier; no PE slots, no weight memories, no DSPs. ``reuse`` r takes each vector in digits over
    ``ceil(in_bits / ceil(in_bits / r))`` cycles (:func:`hw.network.unrolled.digit_serial`). Its inputs arrive as
    every engine's do, one element per cycle (element ``n`` in word ``n``), so a sample takes ``in_features``
    cycles to load and ``out_features`` to send on. Like a pool or a flatten it has no PE slots, no weight memories
    and no multipliers (:class:`_Weightless`)."""

    schemes = UNROLLED_SCHEMES
    impl = "unrolled"

    def plan(self, layer, folding):
        if folding.reuse > layer.in_bits:
            raise ValueError(f"Layer {layer.scheme} reuse must be at most its {layer.in_bits} input bits, not "
                             f"{folding.reuse}")
        _, cycles = digit_serial(layer.in_bits, folding.reuse)
        return EnginePlan(layer, LayerFolding(impl="unrolled", reuse=folding.reuse), 1, 1, 1, 1, (), cycles, self)

    def candidates(self, layer):
        """The smallest ``reuse`` of every interval the digits give."""
        seen = {}
        for r in range(1, layer.in_bits + 1):
            seen.setdefault(digit_serial(layer.in_bits, r)[1], r)
        return [LayerFolding(impl="unrolled", reuse=r) for r in seen.values()]

    def work_cycles(self, plan):
        """Sending the outputs on, one per cycle, or the adder graphs' cycles per vector."""
        return max(plan.out_elements, plan.interval)

    def acc_shape(self, plan):
        """The widest accumulator of the adder graphs (signed)."""
        return signed(max(Shape.cast(s).width for s in layer_graphs(plan.layer, plan.folding.reuse).acc_shapes))

    def input_words(self, plan):
        return plan.layer.in_features, 1, None

    def buffer(self, plan):
        return 0, 0            # a register per input (flip-flops), no memory

    def component(self, plan, dest):
        return UnrolledUnit(plan, dest)


_DENSE = (DotEngine(), NMEngine(), CirculantEngine(), CrossbarEngine())
UNROLLED = UnrolledEngine()

#: The engine of every (layer kind, weight scheme, implementation).
ENGINES: dict[tuple[str, str | None, str], EngineSpec] = {
    **{(spec.kind, scheme, spec.impl): spec for spec in _DENSE for scheme in spec.schemes},
    **{(kind, scheme, "folded"): ConvEngine(kind, spec) for kind in ("conv1d", "conv2d") for spec in _DENSE
       for scheme in spec.schemes},
    **{(kind, None, "folded"): PoolEngine(kind) for kind in ("maxpool", "avgpool", "globalavgpool")},
    ("flatten", None, "folded"): FlattenEngine(),
    **{("dense", scheme, "unrolled"): UNROLLED for scheme in UNROLLED.schemes},
}

#: The PEs each scheme's slots hold (msq slots hold either), from the engines.
SCHEME_PES = {"fixed": ("fixed-mac",), "sp2": ("sp2-mac",), "msq": ("sp2-mac", "fixed-mac"), "nm": ("nm-sparse",),
              "circulant": ("circulant-fft",), "crossbar": ("crossbar",)}


def engine_for(layer, impl: str = "folded") -> EngineSpec:
    """The engine of ``layer`` (its kind and scheme) in implementation ``impl``.

    Raises
    ------
    ValueError
        ``"Layer scheme must be one of 'fixed', ..., not 'conv'"``, ``"Layer kind 'pool' must have an engine
        (one of dense), not none"``.
    """
    kind, scheme = getattr(layer, "kind", "dense"), getattr(layer, "scheme", None)
    if scheme not in net.SCHEMES and kind in ("dense", "conv1d", "conv2d"):
        raise ValueError(f"Layer scheme must be one of {', '.join(map(repr, net.SCHEMES))}, not {scheme!r}")
    key = (kind, scheme, impl)
    if key not in ENGINES:
        kinds = sorted({k for k, _, i in ENGINES if i == impl})
        raise ValueError(f"Layer kind {kind!r} ({scheme}, {impl}) must have an engine (kinds with one: "
                         f"{', '.join(kinds)}), not none")
    return ENGINES[key]


def plan_engine(layer, folding: LayerFolding) -> EnginePlan:
    """The engine of ``layer`` folded by ``folding`` (in its implementation, ``folding.impl``).

    Raises
    ------
    ValueError
        ``"Layer nm lanes must be a multiple of M = 4, not 6"``, ``"Layer circulant lanes must be the block
        size 8 (or left at 1), not 4"``, ``"Layer crossbar pes must be its 2 tiles (or left at 1), not 3"``,
        ``"Layer fixed pes must be at most its 10 output rows, not 12"``, ``"Layer kind 'conv2d' (fixed,
        unrolled) must have an engine (kinds with one: dense), not none"``.
    """
    return engine_for(layer, folding.impl).plan(layer, folding)
