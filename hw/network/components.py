"""The components an engine is made of, each a ``wiring.Component`` joined to the next by a stream or a port.

::

    elements --i--> InputBuffer --read--> Sequencer --o--> Fanout --o<n>--> slot PEs --o--> Collector --o-->
                    (two banks)          (row groups x     (lock step)      (the layer's      (row table)
                                          beats, weight                      PEs)
                                          memories)                                    --> Requantizer --o--> elements

* :class:`InputBuffer`: two banks of ``beats`` words of ``lanes`` elements; it takes the elements of a vector in
  any order (each names its ``word`` and ``lane``), a bank is full after ``features`` elements, and the
  sequencer reads it through its ``read`` port and releases it.
* :class:`Sequencer`: walks ``groups x beats``, reading the input word and every slot's weight word in the same
  cycle (both memories' read registers are the beat's stage) and offers the beat on ``o``.
* :class:`Fanout`: offers the beat to every slot at once, only when all of them are ready, so the slots stay in
  lock step, and fills each slot's payload as its engine says (:meth:`hw.network.engines.EngineSpec.pack`).
  That ``valid`` depends on the slots' ``ready``, which the stream rule forbids between components: here each
  slot's ``ready`` is a function of that slot's registers only (its output register and state), never of this
  ``valid``, so no loop forms. Every stream an engine or the accelerator exposes follows the rule.
* :class:`Collector`: takes every slot's result for a row group at once and hands them to the requantiser one
  per cycle, with the output row of each from a table (padding rows skipped).
* :class:`Requantizer`: the one requantisation (:mod:`sw.requant`) and where each output goes next.
* :class:`Handoff`: the skid buffer the accelerator puts after every engine, so ``ready`` is a register where
  one engine hands its outputs to the next (or to the logits).
* :class:`CrossbarLoader`: programs every crossbar slot's array after reset (``loaded`` gates the sequencer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.hdl import Shape
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ...sw.intops import signed_bits_for
from ...sw.params import check_int

from ..common import delay, equals, register, tree_stages
from ..dsp import DSP_CELLS, INFERRED, fits, registered_product
from .folding import MAX_REQUANT_CYCLES

__all__ = ["element_layout", "result_layout", "Dest", "DestOffset", "value_shape", "rom", "select", "BufferRead",
           "InputBuffer", "BeatSource", "Sequencer", "word_offsets", "Fanout", "Collector", "Handoff",
           "Requantizer", "CrossbarLoader", "REQUANT_DSP_BITS", "REQUANT_TREE_LEVELS", "requant_digits",
           "requant_latency"]


def value_shape(bits: int, is_signed: bool) -> Shape:
    """The Amaranth shape of a ``bits``-bit integer, signed or not."""
    return signed(bits) if is_signed else unsigned(bits)


def element_layout(shape, words: int, lanes: int) -> data.StructLayout:
    """One element between engines: its value ``x`` and where the consumer's input buffer keeps it (``word``,
    ``lane``: element ``n`` of the vector is lane ``n % lanes`` of word ``n // lanes``)."""
    return data.StructLayout({"x": shape, "word": unsigned(max(1, ceil_log2(words))),
                              "lane": unsigned(max(1, ceil_log2(lanes)))})


def result_layout(acc_shape, rows: int) -> data.StructLayout:
    """One result on its way to the requantiser: the accumulator ``acc``, its output ``row`` and ``last`` (the
    final result of an item: an input vector, or an output position of a window engine)."""
    return data.StructLayout({"acc": acc_shape, "row": unsigned(max(1, ceil_log2(rows))), "last": unsigned(1)})


@dataclass(frozen=True)
class Dest:
    """Where a producer's outputs go in its consumer's input buffer (:func:`element_layout`'s ``word`` and
    ``lane``): output row ``r`` of item ``p`` (an output position; a vector is one item) goes to
    ``table[r] + p * step``, words and lanes added with the carry from lane ``lanes - 1`` to the next word, word
    addresses modulo ``ring`` (a line buffer's ring; None: no wrap). After ``items`` items (one sample) the
    offset starts again at 0, unless ``ring`` is set: a ring's addresses run on from sample to sample.

    Built by :meth:`of` from the consumer's address of every element, which checks that it has this form.
    """

    table: tuple[tuple[int, int], ...]
    words: int
    lanes: int
    step: tuple[int, int] = (0, 0)
    ring: int | None = None
    items: int = 1

    @classmethod
    def of(cls, address, rows: int, items: int, *, words: int, lanes: int, ring: int | None = None) -> Dest:
        """The destinations of ``rows`` outputs per item over ``items`` items, where ``address(r, p)`` gives the
        consumer's ``(word, lane)`` of row ``r`` of item ``p``.

        Raises
        ------
        ValueError
            The consumer's addresses are not ``table[r] + p * step`` (a bug of the consumer's map: every
            buffer's map has that form).
        """
        table = tuple(address(r, 0) for r in range(rows))
        step = (0, 0)
        if items > 1 or ring is not None:         # a ring's addresses run on from sample to sample too
            w0, l0 = address(0, 0)
            w1, l1 = address(0, 1)
            flat = (w1 * lanes + l1) - (w0 * lanes + l0)
            if ring is not None:
                flat %= ring * lanes
            step = divmod(flat, lanes)
        dest = cls(table, words, lanes, step, ring, items)
        for p in range(items if ring is None else items + ring):
            for r in range(rows):
                if dest.at(r, p) != tuple(address(r, p)):
                    raise ValueError(f"Consumer addresses must be table[row] + item * step, not {address(r, p)} "
                                     f"for row {r} of item {p} (expected {dest.at(r, p)})")
        return dest

    def at(self, row: int, item: int) -> tuple[int, int]:
        """The ``(word, lane)`` of ``row`` in ``item``: what the hardware computes."""
        word, lane = self.table[row]
        flat = word * self.lanes + lane + item * (self.step[0] * self.lanes + self.step[1])
        word, lane = divmod(flat, self.lanes)
        return (word % self.ring if self.ring is not None else word), lane

    @property
    def moves(self) -> bool:
        """Whether the destinations move from item to item (else the table alone is the address)."""
        return self.step != (0, 0) and (self.items > 1 or self.ring is not None)


class DestOffset:
    """The running offset of a :class:`Dest` in hardware: :meth:`add` a row's table entry to it, :meth:`advance`
    it after the last row of an item."""

    def __init__(self, dest: Dest, name: str = "dest"):
        self._dest = dest
        d = dest
        self.word = Signal(range(max(2, d.ring if d.ring is not None else d.words)), name=f"{name}_word")
        self.lane = Signal(range(max(2, d.lanes)), name=f"{name}_lane")
        self.item = Signal(range(max(2, d.items)), name=f"{name}_item")

    def add(self, word: Value, lane: Value) -> tuple[Value, Value]:
        """``(word, lane)`` of a table entry plus the offset (a lane carry, a ring wrap)."""
        d = self._dest
        if not d.moves:
            return word, lane
        lane_sum = lane + self.lane
        carry = lane_sum >= d.lanes
        out_lane = Mux(carry, lane_sum - d.lanes, lane_sum)
        word_sum = word + self.word + carry
        if d.ring is not None:
            word_sum = Mux(word_sum >= d.ring, word_sum - d.ring, word_sum)
        return word_sum, out_lane

    def advance(self, m: Module, when: Value) -> None:
        """Step the offset to the next item in the cycle ``when`` is high (back to 0 after the sample's last
        item, unless the destinations run round a ring)."""
        d = self._dest
        if not d.moves:
            return
        dw, dl = d.step
        lane_sum = self.lane + dl
        carry = lane_sum >= d.lanes
        word_sum = self.word + dw + carry
        if d.ring is not None:
            word_sum = Mux(word_sum >= d.ring, word_sum - d.ring, word_sum)
        with m.If(when):
            if d.ring is not None:
                m.d.sync += [self.word.eq(word_sum), self.lane.eq(Mux(carry, lane_sum - d.lanes, lane_sum))]
            else:
                with m.If(equals(self.item, d.items - 1)):
                    m.d.sync += [self.word.eq(0), self.lane.eq(0), self.item.eq(0)]
                with m.Else():
                    m.d.sync += [self.word.eq(word_sum), self.lane.eq(Mux(carry, lane_sum - d.lanes, lane_sum)),
                                 self.item.eq(self.item + 1)]


def rom(width: int, words: list[int]) -> Memory:
    """A read-only memory of ``words`` (at least two deep, so its address has a bit)."""
    words = list(words) + [0] * max(0, 2 - len(words))
    return Memory(shape=unsigned(max(1, width)), depth=len(words), init=words)


def select(values: list, index: Value) -> Value:
    """``values[index]`` as a balanced mux tree (an out-of-range index reads the last value)."""
    level = list(values)
    bit = 0
    while len(level) > 1:
        level = [Mux(index[bit], level[n + 1], level[n]) if n + 1 < len(level) else level[n]
                 for n in range(0, len(level), 2)]
        bit += 1
    return level[0]


def _address(word: Value, bank: Value, beats: int) -> Value:
    """The memory address of ``word`` in ``bank`` (banks of ``beats`` words): a concatenation when ``beats`` is a
    power of two, else ``bank * beats + word``."""
    return Cat(word, bank) if beats & (beats - 1) == 0 and beats > 1 else bank * beats + word


class BufferRead(wiring.Signature):
    """The read port of an :class:`InputBuffer`, as its reader (the :class:`Sequencer`) sees it.

    Members
    -------
    en : Out(1)
        The memory's read register takes ``beat`` of the bank being read this cycle.
    beat : Out(range(beats))
    release : Out(1)
        The reader issued the last beat of the last row group: the bank is free once this cycle ends.
    data : In(lanes * element bits)
        The word read (a cycle after ``en``).
    full : In(1)
        The bank being read holds a whole vector.
    """

    def __init__(self, *, beats: int, width: int):
        self._beats, self._width = beats, width
        super().__init__({"en": Out(1), "beat": Out(range(max(beats, 2))), "release": Out(1),
                          "data": In(width), "full": In(1)})

    def __eq__(self, other):
        return isinstance(other, BufferRead) and (self._beats, self._width) == (other._beats, other._width)

    def __repr__(self):
        return f"BufferRead(beats={self._beats}, width={self._width})"


class InputBuffer(wiring.Component):
    """Two banks of ``beats`` words of ``lanes`` elements (``shape`` each): a vector of ``features`` elements is
    written into one bank while the reader reads the other.

    Members
    -------
    i : In(stream.Signature(element_layout(shape, beats, lanes)))
        The elements, in any order, each with its ``word`` and ``lane``; ready while the bank being written is
        not full.
    read : In(BufferRead(...))
        The reader's port; the bank it reads alternates with every release.
    """

    def __init__(self, *, shape, features: int, beats: int, lanes: int):
        self._shape, self._features, self._beats, self._lanes = Shape.cast(shape), features, beats, lanes
        super().__init__({
            "i": In(stream.Signature(element_layout(shape, beats, lanes))),
            "read": In(BufferRead(beats=beats, width=lanes * Shape.cast(shape).width)),
        })

    def elaborate(self, platform):
        m = Module()
        beats, lanes, n_in, ebits = self._beats, self._lanes, self._features, self._shape.width
        m.submodules.mem = buf = Memory(shape=unsigned(lanes * ebits), depth=2 * beats, init=[])
        wr = buf.write_port(granularity=ebits)
        rd = buf.read_port()
        full = Signal(2)
        wbank = Signal()
        rbank = Signal()
        count = Signal(range(n_in + 1))
        lane_onehot = Signal(lanes)
        accepted = self.i.valid & self.i.ready
        m.d.comb += lane_onehot.eq(Const(1, lanes) << self.i.payload.lane)
        m.d.comb += [
            self.i.ready.eq(~Mux(wbank, full[1], full[0])),
            wr.addr.eq(_address(self.i.payload.word, wbank, beats)),
            wr.data.eq(Cat(*[Value.cast(self.i.payload.x)] * lanes)),
            wr.en.eq(Mux(accepted, lane_onehot, 0)),
        ]
        done_filling = Signal()
        m.d.comb += done_filling.eq(accepted & equals(count, n_in - 1))
        with m.If(accepted):
            m.d.sync += count.eq(Mux(equals(count, n_in - 1), 0, count + 1))
            with m.If(equals(count, n_in - 1)):
                m.d.sync += wbank.eq(~wbank)
        for bank in range(2):
            with m.If(done_filling & (wbank == bank)):
                m.d.sync += full[bank].eq(1)
            with m.Elif(self.read.release & (rbank == bank)):
                m.d.sync += full[bank].eq(0)
        with m.If(self.read.release):
            m.d.sync += rbank.eq(~rbank)
        m.d.comb += [rd.en.eq(self.read.en), rd.addr.eq(_address(self.read.beat, rbank, beats)),
                     self.read.data.eq(rd.data), self.read.full.eq(Mux(rbank, full[1], full[0]))]
        return m


def word_offsets(widths: Sequence[int]) -> list[int]:
    """Where each slot's weight word starts in a beat's ``w`` (the slots' words of ``widths`` bits, in order)."""
    offsets, at = [], 0
    for w in widths:
        offsets.append(at)
        at += w
    return offsets


def beat_layout(x_width: int, w_width: int) -> data.StructLayout:
    """One beat of the sequencer: the input word ``x``, every slot's weight word ``w`` (slot 0 at the LSBs) and
    ``last`` (the last beat of a row group)."""
    return data.StructLayout({"x": unsigned(max(1, x_width)), "w": unsigned(max(1, w_width)), "last": unsigned(1)})


class BeatSource(wiring.Component):
    """What a sequencer offers the slots: beats (the input word, every slot's weight word, ``last``) on ``o``,
    read from an input buffer's port ``read`` (of signature ``read_signature``), gated by ``loaded``; the slots'
    weight memories ``words[slot]`` of ``widths[slot]`` bits."""

    def __init__(self, read_signature, *, x_width: int, words: Sequence[Sequence[int]], widths: Sequence[int]):
        self._words, self._widths = [list(w) for w in words], list(widths)
        super().__init__({
            "read": Out(read_signature),
            "loaded": In(1, init=1),
            "o": Out(stream.Signature(beat_layout(x_width, sum(self._widths)))),
        })

    @property
    def word_offsets(self) -> list[int]:
        """Where each slot's weight word starts in ``o.payload.w``."""
        return word_offsets(self._widths)


class Sequencer(BeatSource):
    """Row groups x beats, one beat per cycle: reads the input word (``read``) and each slot's weight word (its
    memory: ``words[slot]``, one word per (group, beat)) in the same cycle, and offers the beat on ``o``.

    Members
    -------
    read : Out(BufferRead(...))
    loaded : In(1)
        No beat is issued until it is high (a crossbar engine's arrays are programmed after reset).
    o : Out(stream.Signature(beat_layout(...)))
        ``valid`` from the beat's register (the memories' read registers hold its data), ``ready`` taken as the
        next stage says (the :class:`Fanout`: all slots ready).
    """

    def __init__(self, *, groups: int, beats: int, x_width: int, words: Sequence[Sequence[int]],
                 widths: Sequence[int]):
        self._groups, self._beats = groups, beats
        super().__init__(BufferRead(beats=beats, width=x_width), x_width=x_width, words=words, widths=widths)

    def elaborate(self, platform):
        m = Module()
        groups, beats = self._groups, self._beats
        g = Signal(range(max(groups, 2)))
        b = Signal(range(max(beats, 2)))
        staged = Signal()           # a beat waits in the payload stage (the memories' read registers)
        staged_last = Signal()
        fire = Signal()
        m.d.comb += fire.eq(staged & self.o.ready)
        advance = Signal()
        m.d.comb += advance.eq(~staged | fire)
        issue = Signal()
        m.d.comb += issue.eq(advance & self.read.full & self.loaded)
        last_beat = equals(b, beats - 1)
        last_group = equals(g, groups - 1)
        m.d.comb += [self.read.en.eq(advance), self.read.beat.eq(b),
                     self.read.release.eq(issue & last_beat & last_group)]
        with m.If(advance):
            m.d.sync += [staged.eq(issue), staged_last.eq(last_beat)]
        with m.If(issue):
            m.d.sync += b.eq(Mux(last_beat, 0, b + 1))
            with m.If(last_beat):
                m.d.sync += g.eq(Mux(last_group, 0, g + 1))
        parts = []
        for n, (words, width) in enumerate(zip(self._words, self._widths)):
            if not width:
                continue
            mem = rom(width, words)
            m.submodules[f"weights{n}"] = mem
            wp = mem.read_port()
            m.d.comb += [wp.en.eq(advance), wp.addr.eq(g * beats + b)]
            parts.append(wp.data)
        m.d.comb += [self.o.valid.eq(staged), self.o.payload.x.eq(self.read.data), self.o.payload.last.eq(staged_last)]
        if parts:
            m.d.comb += self.o.payload.w.eq(Cat(*parts))
        return m


class Fanout(wiring.Component):
    """One beat to every slot in the same cycle, only when all of them are ready (lock step).

    Members
    -------
    i : In(stream.Signature(beat_layout(...)))
    o<n> : Out(slot n's input signature)
        Filled by ``pack(m, n, payload, x, word, last)`` from the beat (its engine's packing).
    """

    def __init__(self, *, beat: data.StructLayout, slots: Sequence[stream.Signature], pack, offsets: Sequence[int],
                 widths: Sequence[int]):
        self._pack, self._offsets, self._widths = pack, list(offsets), list(widths)
        super().__init__({"i": In(stream.Signature(beat)),
                          **{f"o{n}": Out(sig) for n, sig in enumerate(slots)}})
        self._outputs = [getattr(self, f"o{n}") for n in range(len(slots))]

    def elaborate(self, platform):
        m = Module()
        all_ready = Signal()
        m.d.comb += all_ready.eq(Cat(*[o.ready for o in self._outputs]).all())
        fire = Signal()
        m.d.comb += [fire.eq(self.i.valid & all_ready), self.i.ready.eq(all_ready)]
        beat = self.i.payload
        for n, (o, at, width) in enumerate(zip(self._outputs, self._offsets, self._widths)):
            m.d.comb += o.valid.eq(fire)
            self._pack(m, n, o.payload, beat.x, beat.w[at:at + width] if width else Const(0, 1), beat.last)
        return m


class Collector(wiring.Component):
    """Every slot's result for a row group at once, then one per cycle to ``o`` with its output row.

    ``rows[g]`` lists the output row of every result of row group ``g`` (slot 0's lanes first; -1: padding,
    skipped). It takes the next group's results in the cycle it hands over the last entry of the previous one.

    Members
    -------
    i<n> : In(slot n's output signature)
        ``y`` (``width`` lanes, or one value).
    o : Out(stream.Signature(result_layout(...)))
        ``acc``, its ``row`` and ``last``: the last result of an item (every row group walked once: one input
        vector, or one output position of a window engine).
    """

    def __init__(self, *, slots: Sequence[stream.Signature], width: int, rows: Sequence[Sequence[int]],
                 acc_shape, out_features: int):
        self._width, self._rows, self._acc_shape = width, [list(r) for r in rows], Shape.cast(acc_shape)
        self._row_bits = max(1, ceil_log2(out_features))
        if not any(r >= 0 for group in self._rows for r in group):
            raise ValueError("Collector rows must name at least one output row, not only padding")
        super().__init__({**{f"i{n}": In(sig) for n, sig in enumerate(slots)},
                          "o": Out(stream.Signature(result_layout(acc_shape, out_features)))})
        self._inputs = [getattr(self, f"i{n}") for n in range(len(slots))]

    def elaborate(self, platform):
        m = Module()
        groups, width, row_bits = len(self._rows), self._width, self._row_bits
        entries = len(self._inputs) * width
        held = [Signal(self._acc_shape, name=f"held{e}", reset_less=True) for e in range(entries)]
        busy = Signal()
        ce = Signal(range(max(entries, 2)))      # the entry of the row group being drained
        ci = Signal(range(max(groups * entries, 2)))   # its index in the row table: group * entries + ce
        all_valid = Signal()
        m.d.comb += all_valid.eq(Cat(*[s.valid for s in self._inputs]).all())
        take = Signal()
        finishing = Signal()  # the collector hands over its last entry this cycle: it can take the next group
        m.d.comb += take.eq(all_valid & (~busy | finishing))
        for s in self._inputs:
            m.d.comb += s.ready.eq(take)
        with m.If(take):
            e = 0
            for s in self._inputs:
                y = s.payload.y
                for v in ([y[k] for k in range(width)] if width > 1 else [y]):
                    m.d.sync += held[e].eq(v)
                    e += 1
        flat = [r for group in self._rows for r in group]
        final = max(n for n, r in enumerate(flat) if r >= 0)      # the item's last result
        m.submodules.rows = rows_rom = rom(row_bits + 2, [(r if r >= 0 else 0) | (r >= 0) << row_bits |
                                                          (n == final) << (row_bits + 1) for n, r in enumerate(flat)])
        rr = rows_rom.read_port(domain="comb")
        m.d.comb += rr.addr.eq(ci)   # a counter, not group * entries + ce: no adder before the table
        row_valid = rr.data[row_bits]
        m.d.comb += [self.o.valid.eq(busy & row_valid), self.o.payload.acc.eq(select(held, ce)),
                     self.o.payload.row.eq(rr.data[:row_bits]), self.o.payload.last.eq(rr.data[row_bits + 1])]
        step = Signal()
        m.d.comb += [step.eq(busy & (~row_valid | self.o.ready)), finishing.eq(step & equals(ce, entries - 1))]
        with m.If(step):
            m.d.sync += [ce.eq(Mux(equals(ce, entries - 1), 0, ce + 1)),
                         ci.eq(Mux(equals(ci, groups * entries - 1), 0, ci + 1))]
        with m.If(take):
            m.d.sync += busy.eq(1)
        with m.Elif(finishing):
            m.d.sync += busy.eq(0)
        return m


class CrossbarLoader(wiring.Component):
    """After reset, streams every crossbar tile's sign bits (``cfg<n>``) and cell levels (``w<n>``) from ROMs
    into slot ``n``; ``loaded`` rises when every tile is programmed.

    Members
    -------
    cfg<n>, w<n> : Out(the crossbar's cfg and w signatures)
    loaded : Out(1)
    """

    def __init__(self, plan):
        self._plan = plan
        params = plan.slots[0].params
        super().__init__({**{f"cfg{n}": Out(params.cfg_signature) for n in range(len(plan.slots))},
                          **{f"w{n}": Out(params.w_signature) for n in range(len(plan.slots))},
                          "loaded": Out(1)})

    def elaborate(self, platform):
        m = Module()
        plan = self._plan
        params = plan.slots[0].params
        fmt = params.fmt
        n_cfg, n_w = fmt.sub_arrays, fmt.rows
        tiles = range(len(plan.slots))
        cfgs, ws = [getattr(self, f"cfg{n}") for n in tiles], [getattr(self, f"w{n}") for n in tiles]
        step = Signal(range(n_cfg + n_w + 1))
        m.d.comb += self.loaded.eq(equals(step, n_cfg + n_w))
        go = Signal()
        m.d.comb += go.eq(~self.loaded & Cat(*[Mux(step < n_cfg, c.ready, w.ready) for c, w in zip(cfgs, ws)]).all())
        cfg_layout, w_layout = params.cfg_layout, params.load_layout
        for n in tiles:
            mapping = plan.layer.weights.mappings[n]
            cfg_words = [cfg_layout.const({"sub": k, "signs": int(sum(int(bit) << c for c, bit in
                                                                     enumerate(mapping.signs[k])))}).as_value().value
                         for k in range(n_cfg)]
            w_words = [w_layout.const({"row": r, "cells": [int(c) for c in mapping.cells[r]]}).as_value().value
                       for r in range(n_w)]
            m.submodules[f"cfg_rom{n}"] = cfg_rom = rom(cfg_layout.size, cfg_words)
            m.submodules[f"w_rom{n}"] = w_rom = rom(w_layout.size, w_words)
            cp, wp = cfg_rom.read_port(domain="comb"), w_rom.read_port(domain="comb")
            m.d.comb += [cp.addr.eq(step), wp.addr.eq(step - n_cfg),
                         cfgs[n].payload.as_value().eq(cp.data), ws[n].payload.as_value().eq(wp.data),
                         cfgs[n].valid.eq(go & (step < n_cfg)), ws[n].valid.eq(go & (step >= n_cfg))]
        with m.If(go):
            m.d.sync += step.eq(step + 1)
        return m


# -- registered hand-offs --------------------------------------------------------------------------------------

class Handoff(wiring.Component):
    """A skid buffer between two engines, or between the last engine and the logits (a registered hand-off):
    ``i.ready`` and ``o.valid`` are flip-flops, so no combinational ``ready`` path crosses it.

    The output register takes a beat whenever it is empty or being read; a beat that arrives while it is full
    and stalled goes to the skid register, and ``i.ready`` (``~full``) drops in the next cycle until the output
    register has taken the skid's beat. One beat per cycle with ``o.ready`` high (one cycle of latency), nothing
    lost or reordered under stalls. Without it the requantiser's enable (``~o.valid | o.ready``) reached through
    the next engine's input buffer, and the logits gathering's ``got`` reached the last requantiser's clock
    enables (``docs/network.md``, "What limits the accelerators' Fmax").

    Members
    -------
    i : In(stream.Signature(layout))
    o : Out(stream.Signature(layout))
    """

    def __init__(self, layout):
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    def elaborate(self, platform):
        m = Module()
        full = Signal()
        skid = Signal(self.i.payload.shape(), reset_less=True)
        out = Signal(self.o.payload.shape(), reset_less=True)
        m.d.comb += [self.i.ready.eq(~full), self.o.payload.eq(out)]
        with m.If(~self.o.valid | self.o.ready):
            with m.If(full):
                m.d.sync += [self.o.valid.eq(1), out.eq(skid), full.eq(0)]
            with m.Else():
                m.d.sync += [self.o.valid.eq(self.i.valid), out.eq(self.i.payload)]
        with m.Elif(self.i.valid & ~full):
            m.d.sync += [skid.eq(self.i.payload), full.eq(1)]
        return m


# -- requantisation -----------------------------------------------------------------------------------------

#: Signed operand bits of the requantiser's partial products (:func:`requant_digits`): the narrowest DSP of the
#: targets (iCE40 SB_MAC16 16 x 16; ECP5's MULT18X18D takes 18), so the pieces are the same for every target.
REQUANT_DSP_BITS = 16
#: Adder levels between the registers of the pipelined requantiser's sum of partial products (they are 20 to 60
#: bits wide, wider than a PE's adder tree: one carry chain per stage).
REQUANT_TREE_LEVELS = 1


def requant_digits(width: int, is_signed: bool, dsp_bits: int = REQUANT_DSP_BITS) -> list[tuple[int, int, bool]]:
    """``(low bit, bits, signed)`` of the digits a ``width``-bit operand splits into so that every product of two
    digits fits a ``dsp_bits``-bit signed multiplier: unsigned digits of ``dsp_bits - 1`` bits from the least
    significant bit up; a signed operand's top digit is signed, of up to ``dsp_bits`` bits.

    >>> requant_digits(21, True, 16), requant_digits(31, False, 16)
    ([(0, 15, False), (15, 6, True)], [(0, 15, False), (15, 15, False), (30, 1, False)])
    """
    u = dsp_bits - 1
    n = max(1, -(-(width - 1 if is_signed else width) // u))
    return [(k * u, width - k * u if (is_signed and k == n - 1) else min(u, width - k * u), is_signed and k == n - 1)
            for k in range(n)]


def piece_stages(dsp_cell: str) -> int:
    """Registers of each partial product of the pipelined :class:`Requantizer`: 1 after an inferred multiply, or
    the DSP primitive's own and a fabric register (:func:`hw.dsp.product_stages`; every piece alike)."""
    return DSP_CELLS[dsp_cell].stages + 1 if dsp_cell in DSP_CELLS else 1


def requant_latency(acc_shape, layer, *, cycles: int = 1, dsp_bits: int = REQUANT_DSP_BITS,
                    dsp_cell: str = INFERRED) -> int:
    """Cycles from an accepted accumulator to its result on ``o`` of the :class:`Requantizer` of these arguments
    (without stalls): ``cycles + 2`` serial or a pass-through, else 2, the partial products' registers
    (:func:`piece_stages`) and the register stages of the sum of its partial products (and ``B``, unless every
    ``B`` and the rounding's half are 0)."""
    identity = getattr(layer, "multiplier", None) is None
    if identity or cycles > 1:
        return (1 if identity else cycles) + 2
    acc_shape = Shape.cast(acc_shape)
    pieces = len(requant_digits(acc_shape.width, acc_shape.signed, dsp_bits)) * \
        len(requant_digits(_m_bits(layer), False, dsp_bits))
    return 2 + piece_stages(dsp_cell) + tree_stages(pieces + any(_offsets(layer, True)), REQUANT_TREE_LEVELS)


def _m_bits(layer) -> int:
    """Bits of the layer's largest multiplier ``M`` (1 without requantisation)."""
    return 1 if getattr(layer, "multiplier", None) is None else max(1, int(layer.multiplier.max()).bit_length())


def _offsets(layer, pipelined: bool) -> list[int]:
    """Each row's ``B``; the pipelined unit's with the rounding's half, ``2^(S-1)``, added (half up, half even)."""
    if getattr(layer, "multiplier", None) is None:
        return [0] * layer.out_features
    half = 1 << (layer.shift - 1) if pipelined and layer.rounding != "floor" else 0
    return [int(b) + half for b in layer.offset]


def _add_shifted(low: Value, high: Value, shift: int) -> Value:
    """``low + (high << shift)`` with an adder only where the two overlap: the ``shift`` low bits are ``low``'s."""
    low, high = Value.cast(low), Value.cast(high)
    if shift == 0:
        return low + high
    is_signed = low.shape().signed
    if len(low) <= shift:     # sign- or zero-extend ``low`` past the shift
        low = Cat(low, (low[-1] if is_signed else Const(0, 1)).replicate(shift + 1 - len(low)))
    top = low[shift:].as_signed() if is_signed else low[shift:]
    total = top + high
    joined = Cat(low[:shift], total)
    return joined.as_signed() if total.shape().signed else joined


class Requantizer(wiring.Component):
    """``z = clip(round((acc * M[row] + B[row]) / 2^S), lo, hi)`` (:mod:`sw.requant`), one result per
    ``cycles`` cycles, sent to where its consumer keeps it (a :class:`Dest`).

    ``M``, ``B`` and the destination (``word``, ``lane``) of each row sit in one ROM indexed by ``row``, read
    beside the accumulator (stage 1); the destination moves on by the :class:`Dest`'s step after each item's
    ``last`` result. The rounding is the layer's mode: half up ``(t + 2^(S-1)) >> S``, half even
    ``(t + 2^(S-1) - 1 + ((t >> S) & 1)) >> S``, floor ``t >> S``, with ``t = acc * M + B``.

    With ``cycles = 1`` (pipelined, :attr:`latency` ``3 +`` the sum's stages): the accumulator and ``M`` split
    into digits (:func:`requant_digits`) whose every product fits a ``dsp_bits``-bit DSP; each partial product
    has its register (stage 2), a tree of carry-chain adds sums them and ``B`` (with the rounding's half,
    ``2^(S-1)``, folded into the ROM's ``B``), a register after every :data:`REQUANT_TREE_LEVELS` levels; the
    output stage shifts, rounds a half-even tie to even (clearing the quotient's last bit when the ``S`` low bits
    are zero) and clips. Every register advances on one enable, ``~o.valid | o.ready``, which is ``i.ready``.

    With ``cycles = c > 1`` (serial, latency ``c + 2``): three stages, the product over ``c`` cycles,
    ``ceil(M bits / c)`` bits of ``M`` per cycle, by shifts and adds (LUTs only), for engines whose results come
    slowly enough. Each stage hands over to the next in the cycle the next can take it, so the unit takes a new
    accumulator every ``c`` cycles exactly, and its ``i.ready`` is a register. A layer that is not requantised
    (a max pool: no ``multiplier``) passes its values through the same three stages.

    Members
    -------
    i : In(stream.Signature(result_layout(...)))
    o : Out(stream.Signature(element_layout(...)))
    """

    def __init__(self, *, acc_shape, layer, dest, out_layout: data.StructLayout, cycles: int = 1,
                 rows: int | None = None, dsp_bits: int = REQUANT_DSP_BITS, dsp_cell: str = INFERRED):
        self._layer = layer
        self._identity = getattr(layer, "multiplier", None) is None
        rows = rows if rows is not None else layer.out_features
        if not isinstance(dest, Dest):
            dest = Dest(tuple(dest), out_layout["word"].shape.width, 1)
        self._dest = dest
        check_int("Requantiser cycles", cycles, min=1, max=MAX_REQUANT_CYCLES)
        check_int("Requantiser DSP bits", dsp_bits, min=2, max=64)
        if dsp_cell != INFERRED and dsp_cell not in DSP_CELLS:
            allowed = ", ".join(repr(c) for c in (INFERRED, *DSP_CELLS))
            raise ValueError(f"Requantiser DSP cell must be one of {allowed}, not {dsp_cell!r}")
        self._dsp_cell = dsp_cell
        self._cycles = 1 if self._identity else cycles
        self._pipelined = self._cycles == 1 and not self._identity
        self._m_bits = _m_bits(layer)
        self._offsets = [0] * rows if self._identity else _offsets(layer, self._pipelined)
        self._b_bits = signed_bits_for(min(self._offsets), max(self._offsets))
        self._acc_shape = Shape.cast(acc_shape)
        self._dsp_bits = dsp_bits
        self._row_bits = max(1, ceil_log2(rows))
        self._rows = rows
        self._out_layout = out_layout
        super().__init__({
            "i": In(stream.Signature(result_layout(acc_shape, rows))),
            "o": Out(stream.Signature(out_layout)),
        })

    @property
    def latency(self) -> int:
        """Cycles from an accepted accumulator to its result on ``o`` (without stalls): :func:`requant_latency`."""
        return requant_latency(self._acc_shape, self._layer, cycles=self._cycles, dsp_bits=self._dsp_bits,
                               dsp_cell=self._dsp_cell)

    def elaborate(self, platform):
        m = Module()
        word_w = self._out_layout["word"].shape.width
        lane_w = self._out_layout["lane"].shape.width
        entry = data.StructLayout({"m": unsigned(self._m_bits), "b": signed(self._b_bits),
                                   "word": unsigned(word_w), "lane": unsigned(lane_w)})
        mults = [0] * self._rows if self._identity else self._layer.multiplier
        init = [entry.const({"m": int(mm), "b": bb, "word": wd, "lane": ln}).as_value().value
                for mm, bb, (wd, ln) in zip(mults, self._offsets, self._dest.table)]
        m.submodules.table = table = rom(entry.size, init)
        rd = table.read_port()
        m.d.comb += rd.addr.eq(self.i.payload.row)
        offset = DestOffset(self._dest)
        # stage 1: the accumulator beside its row's table entry (the ROM's read register)
        v1 = Signal()
        acc1 = Signal(self._acc_shape, reset_less=True)
        last1 = Signal(reset_less=True)
        en1 = Signal()
        m.d.comb += rd.en.eq(en1)
        with m.If(en1):
            m.d.sync += [v1.eq(self.i.valid & self.i.ready), acc1.eq(self.i.payload.acc),
                         last1.eq(self.i.payload.last)]
        e1 = entry(rd.data)
        word, lane = offset.add(e1.word, e1.lane)
        dest1 = Cat(word[:word_w], lane[:lane_w])
        if self._pipelined:
            self._pipeline(m, en1, v1, acc1, e1, dest1)
            offset.advance(m, en1 & v1 & last1)
        else:
            load2 = self._serial(m, en1, v1, acc1, e1, dest1)
            offset.advance(m, load2 & v1 & last1)
        return m

    def _rounded(self, t: Value, *, folded: bool) -> Value:
        """``t`` shifted right by ``S``, rounded by the layer's mode, then clipped; ``folded``: the rounding's half
        is already in ``t`` (the pipelined unit's ``B``), so half up is the shift and half even clears the
        quotient's last bit on a tie (the ``S`` low bits all zero)."""
        layer = self._layer
        shift, rounding = layer.shift, layer.rounding
        if rounding not in ("half_up", "half_even", "floor"):
            raise ValueError(f"Layer rounding must be one of 'half_up', 'half_even', 'floor', not {rounding!r}")
        if folded or rounding == "floor":
            z = t >> shift
            if rounding == "half_even":
                z = Cat(z[0] & t[:shift].any(), z[1:]).as_signed()
        elif rounding == "half_up":
            z = (t + (1 << (shift - 1))) >> shift
        else:
            z = (t + ((1 << (shift - 1)) - 1) + t[shift]) >> shift
        lo, hi = layer.out_range
        return Mux(z < lo, lo, Mux(z > hi, hi, z))

    def _output(self, m: Module, en: Value, valid: Value, x: Value, dest: Value) -> None:
        word_w = self._out_layout["word"].shape.width
        with m.If(en):
            m.d.sync += self.o.valid.eq(valid)
            with m.If(valid):
                m.d.sync += [self.o.payload.x.eq(x), self.o.payload.word.eq(dest[:word_w]),
                             self.o.payload.lane.eq(dest[word_w:])]

    def _pipeline(self, m: Module, en: Value, v1: Value, acc1: Value, e1, dest1: Value) -> None:
        """One accumulator per cycle: partial products, their sum, the rounding and clip, all on one enable."""
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        stages = piece_stages(self._dsp_cell)
        operands = []                  # (value, weight: its bit offset in the product)
        for a_lo, a_bits, a_signed in requant_digits(self._acc_shape.width, self._acc_shape.signed, self._dsp_bits):
            a = acc1[a_lo:a_lo + a_bits]
            a = a.as_signed() if a_signed else a
            for m_lo, m_bits, _ in requant_digits(self._m_bits, False, self._dsp_bits):
                b = e1.m[m_lo:m_lo + m_bits]
                # a 1-bit digit selects: a multiply would take a DSP (Amaranth widens it to 2 signed bits)
                name = f"piece_{a_lo}_{m_lo}"
                if m_bits > 1 and not (a_bits == 1 and not a_signed) and fits(self._dsp_cell, a.shape(), b.shape()):
                    shape = (a * b).shape()    # the target's DSP primitive with its registers (hw.dsp)
                    product = registered_product(m, a, b, en=en, cell=self._dsp_cell,
                                                 width=shape.width + (0 if shape.signed else 1), name=name)
                    operands.append((product if shape.signed else product[:shape.width], a_lo + m_lo))
                    continue
                piece = Mux(b, a, 0) if m_bits == 1 else Mux(a, b, 0) if a_bits == 1 and not a_signed else a * b
                piece = delay(m, register(m, piece, en=en, name=name), stages - 1, en=en, name=name)
                operands.append((piece, a_lo + m_lo))
        if any(self._offsets):
            operands.append((delay(m, register(m, e1.b, en=en, name="bias"), stages - 1, en=en, name="bias"), 0))
        valid = delay(m, register(m, v1, en=en, name="valid_p", reset_less=False), stages - 1, en=en, name="valid_p",
                      reset_less=False)
        dest = delay(m, register(m, dest1, en=en, name="dest_p"), stages - 1, en=en, name="dest_p")
        level = 0
        while len(operands) > 1:
            level += 1
            operands.sort(key=lambda o: o[1])
            pairs = [(_add_shifted(x, y, wy - wx), wx) for (x, wx), (y, wy) in zip(operands[::2], operands[1::2])]
            pairs += operands[len(pairs) * 2:]
            if level % REQUANT_TREE_LEVELS == 0 or len(pairs) == 1:
                pairs = [(register(m, v, en=en, name=f"sum{level}_{k}"), w) for k, (v, w) in enumerate(pairs)]
                valid = register(m, valid, en=en, name=f"valid_s{level}", reset_less=False)
                dest = register(m, dest, en=en, name=f"dest_s{level}")
            else:
                pairs = [(_kept(m, v, f"sum{level}_{k}"), w) for k, (v, w) in enumerate(pairs)]
            operands = pairs
        value, weight = operands[0]
        t = Signal(signed(max(len(value) + weight + 1, self._layer.shift + 2)), name="t")
        m.d.comb += t.eq(value << weight)
        self._output(m, en, valid, self._rounded(t, folded=True), dest)

    def _serial(self, m: Module, en1: Value, v1: Value, acc1: Value, e1, dest1: Value) -> Value:
        """``c`` cycles per accumulator (or a pass-through): returns stage 2's load."""
        c = self._cycles
        digit = -(-self._m_bits // c)           # bits of M per cycle
        # stage 3 (output register) takes a finished product when it is empty or being read
        free3 = Signal()
        m.d.comb += free3.eq(~self.o.valid | self.o.ready)
        # stage 2: the product, one digit of M per cycle; `done2` when its last digit is in
        v2 = Signal()
        count = Signal(range(max(c, 2)))
        done2 = Signal()
        m.d.comb += done2.eq(v2 & equals(count, c - 1))
        load2 = Signal()
        m.d.comb += load2.eq(~v2 | (done2 & free3))
        m.d.comb += en1.eq(~v1 | load2)
        # Stage 1 refills in the cycle after it empties and is still full in time, so its `ready` can be a
        # register (no path from `o.ready` back to `i.ready`). A pass-through takes one result per cycle: its
        # `ready` passes the next stages' state through.
        m.d.comb += self.i.ready.eq(~v1 if c > 1 else en1)

        acc_w = self._acc_shape.width
        prod = Signal(signed(acc_w + self._m_bits + 1), reset_less=True)
        b2 = Signal(signed(self._b_bits), reset_less=True)
        d2 = Signal(len(dest1), reset_less=True)

        def partial(a, bits):
            # a * bits (bits unsigned, `digit` wide) by shifts and adds
            if self._identity:
                return a
            return sum(Mux(bits[k], a << k, 0) for k in range(len(bits)))

        with m.If(load2):
            m.d.sync += [v2.eq(v1), count.eq(0), b2.eq(e1.b), d2.eq(dest1), prod.eq(partial(acc1, e1.m[:digit]))]
        if c > 1:
            acc_sh = Signal(signed(acc_w + self._m_bits), reset_less=True)   # acc << (digit * (count + 1))
            m_rest = Signal(unsigned(max(1, self._m_bits - digit)), reset_less=True)
            with m.If(load2):
                m.d.sync += [acc_sh.eq(acc1 << digit), m_rest.eq(e1.m[digit:] if self._m_bits > digit else 0)]
            with m.Elif(v2 & ~done2):
                m.d.sync += [count.eq(count + 1), prod.eq(prod + partial(acc_sh, m_rest[:digit])),
                             acc_sh.eq(acc_sh << digit), m_rest.eq(m_rest >> digit)]

        # stage 3: bias, rounding, shift, clip (a pass-through without requantisation)
        if self._identity:
            clipped = prod
        else:
            total = Signal(signed(max(len(prod), self._b_bits) + 2))
            m.d.comb += total.eq(prod + b2)
            clipped = self._rounded(total, folded=False)
        self._output(m, free3, done2, clipped, d2)
        return load2


def _kept(m: Module, value: Value, name: str) -> Signal:
    """``value`` as a signal yosys keeps (so it does not merge the adds around it: :func:`hw.common.adder_tree`)."""
    kept = Signal(Value.cast(value).shape(), name=name, attrs={"keep": 1})
    m.d.comb += kept.eq(value)
    return kept
