"""Window engines: convolutions (and depthwise convolutions) on the dot-product slots of the dense engines, fed
from a line buffer by a window sequencer (FINN's sliding-window generator + MVAU split; ``docs/cnn.md``)::

    elements --i--> LineBuffer --read--> WindowSequencer --o--> Fanout --> slots --> Collector --> Requantizer
                    (a ring of         (output positions x
                     input rows)        row groups x beats)

A window engine's input is the layer's tensor channels-last: position by position (row by row), each
position's ``C`` channels in ``C / lanes`` words of ``lanes`` elements. The line buffer keeps a ring of
:attr:`Window.rows` input rows; the sequencer walks the output positions in raster order and, per position,
every row group over the window's beats (kernel row, kernel column, channel word: the weight matrix's column
order, so a beat's weights are those of the dense view of the layer), reading each beat's word from the ring,
or zeros where the window lies in the padding. It frees the rows no later window needs after each output row,
and the rest of a sample's rows after its last.

A 1-D layer is the 2-D one with its length as rows of one position (``H = L, W = 1``), and so is a 1 x 1 2-D
convolution of stride 1 without padding (``H = H * W``): the ring then holds positions, not image rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.hdl import Shape
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..common import equals
from .components import BeatSource, element_layout, rom

__all__ = ["Window", "WindowRead", "LineBuffer", "WindowSequencer"]


@dataclass(frozen=True)
class Window:
    """The geometry of a window engine: its input (``height`` rows of ``width`` positions of ``channels``), the
    kernel, stride and padding (top, left; bottom and right follow from the output size), the output size, the
    ``lanes`` of a buffer word (a divisor of ``channels``), the ring's ``rows``, and whether each output channel
    sees one input channel (``depthwise``, ``multiplier`` output channels per input channel)."""

    height: int
    width: int
    channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    out_height: int
    out_width: int
    lanes: int
    rows: int
    depthwise: bool = False
    multiplier: int = 1

    @classmethod
    def of(cls, layer, lanes: int, *, depthwise: bool = False) -> Window:
        """The window of a convolution or pool ``layer`` (:mod:`sw.conv`) with ``lanes`` channels per word.

        Raises
        ------
        ValueError
            ``"Layer conv2d lanes must divide its 12 input channels, not 8"``.
        """
        c = layer.in_shape[0]
        if c % lanes:
            raise ValueError(f"Layer {layer.kind} lanes must divide its {c} input channels, not {lanes}")
        (kh, kw), (sh, sw), (pt, pb, pl, pr) = layer.kernel2d, layer.stride2d, getattr(
            layer, "padding2d", (0, 0, 0, 0))
        h, w = (1, layer.in_shape[1]) if layer.dims == 1 else layer.in_shape[1:]
        oh, ow = layer.out_spatial
        if h == 1 and kh == 1 and sh == 1 and pt == pb == 0:        # rows of single positions: H = L, W = 1
            h, w, kh, kw, sh, sw, pt, pl, oh, ow = w, 1, kw, 1, sw, 1, pl, 0, ow, 1
        elif kh == kw == sh == sw == 1 and pt == pb == pl == pr == 0:   # 1 x 1, stride 1: positions as rows
            h, w, oh, ow = h * w, 1, oh * ow, 1
        # the ring: the rows an output row waits for (its windows', and those a stride longer than the kernel
        # skips), the next stride's, which arrive while it is computed, and a stride more for the input an output
        # row that is late (the last of a sample reads fewer new rows than the others) lets arrive; at a sample's
        # end the last output row's rows and the next sample's first, again with a stride to spare; never more
        # than a whole sample, the next one's first rows and a stride (then a producer as fast as this engine
        # never waits)
        first = min(h, max(kh, sh) - pt)
        tail = h - max(0, (oh - 1) * sh - pt)
        rows = min(h + first + sh, max(max(kh, sh) + 2 * sh, tail + first + sh))
        multiplier = layer.out_shape[0] // c if depthwise else 1
        return cls(h, w, c, (kh, kw), (sh, sw), (pt, pl), oh, ow, lanes, rows, depthwise, multiplier)

    @property
    def words_per_position(self) -> int:
        return self.channels // self.lanes

    @property
    def row_words(self) -> int:
        """Words of one input row in the ring."""
        return self.width * self.words_per_position

    @property
    def ring_words(self) -> int:
        return self.rows * self.row_words

    @property
    def positions(self) -> int:
        """Output positions per sample: the items of the engine."""
        return self.out_height * self.out_width

    @property
    def in_positions(self) -> int:
        return self.height * self.width

    @property
    def beats(self) -> int:
        """Beats per row group: every kernel position's channel words (depthwise: one word per kernel position)."""
        kh, kw = self.kernel
        return kh * kw * (1 if self.depthwise else self.words_per_position)

    def taps(self) -> int:
        """Kernel positions inside the input, summed over the output positions (the padding's are not MACs)."""
        kh, kw = self.kernel
        sh, sw = self.stride
        pt, pl = self.pad
        rows = sum(sum(0 <= y * sh - pt + i < self.height for i in range(kh)) for y in range(self.out_height))
        cols = sum(sum(0 <= x * sw - pl + j < self.width for j in range(kw)) for x in range(self.out_width))
        return rows * cols

    def address(self, channel: int, position: int) -> tuple[int, int]:
        """``(word, lane)`` in the ring of input element (``channel``, ``position``), positions counted from the
        ring's start (:class:`hw.network.components.Dest`: the producer's addresses run on round the ring)."""
        return ((position % (self.rows * self.width)) * self.words_per_position + channel // self.lanes,
                channel % self.lanes)


class WindowRead(wiring.Signature):
    """The read port of a :class:`LineBuffer`, as its reader (the :class:`WindowSequencer`) sees it.

    Members
    -------
    en : Out(1)
        The memory's read register takes ``addr`` this cycle.
    addr : Out(range(ring words))
    data : In(lanes * element bits)
        The word read (a cycle after ``en``).
    avail : In(range(rows + 1))
        Complete input rows in the ring not yet released.
    release : Out(1), count : Out(range(rows + 1))
        Free the ``count`` oldest rows once this cycle ends.
    """

    def __init__(self, *, words: int, width: int, rows: int):
        self._key = (words, width, rows)
        super().__init__({"en": Out(1), "addr": Out(range(max(words, 2))), "data": In(width),
                          "avail": In(range(rows + 1)), "release": Out(1), "count": Out(range(rows + 1))})

    def __eq__(self, other):
        return isinstance(other, WindowRead) and self._key == other._key

    def __repr__(self):
        return f"WindowRead(words={self._key[0]}, width={self._key[1]}, rows={self._key[2]})"


class LineBuffer(wiring.Component):
    """A ring of ``window.rows`` input rows of ``window.row_words`` words of ``lanes`` elements (``shape`` each).

    The elements of a row arrive in any order, each with its ``word`` (its place in the ring) and ``lane``; a
    row is complete after ``width x channels`` of them, and the rows complete in order. The buffer takes
    elements while a row of the ring is free (fewer than ``rows`` complete rows held).

    Members
    -------
    i : In(stream.Signature(element_layout(shape, ring words, lanes)))
    read : In(WindowRead(...))
    """

    def __init__(self, *, shape, window: Window):
        self._shape, self._window = Shape.cast(shape), window
        width = window.lanes * self._shape.width
        super().__init__({
            "i": In(stream.Signature(element_layout(shape, window.ring_words, window.lanes))),
            "read": In(WindowRead(words=window.ring_words, width=width, rows=window.rows)),
        })

    def elaborate(self, platform):
        m = Module()
        win, ebits = self._window, self._shape.width
        lanes, rows = win.lanes, win.rows
        row_elements = win.width * win.channels
        m.submodules.mem = mem = Memory(shape=unsigned(lanes * ebits), depth=max(2, win.ring_words), init=[])
        wr = mem.write_port(granularity=ebits)
        rd = mem.read_port()
        avail = Signal(range(rows + 1))
        count = Signal(range(max(row_elements, 2)))
        accepted = self.i.valid & self.i.ready
        m.d.comb += [
            self.i.ready.eq(avail < rows),
            wr.addr.eq(self.i.payload.word),
            wr.data.eq(Cat(*[Value.cast(self.i.payload.x)] * lanes)),
            wr.en.eq(Mux(accepted, Const(1, lanes) << self.i.payload.lane, 0)),
        ]
        row_done = Signal()
        m.d.comb += row_done.eq(accepted & equals(count, row_elements - 1))
        with m.If(accepted):
            m.d.sync += count.eq(Mux(equals(count, row_elements - 1), 0, count + 1))
        freed = Mux(self.read.release, self.read.count, 0)
        m.d.sync += avail.eq(avail + row_done - freed)
        m.d.comb += [rd.en.eq(self.read.en), rd.addr.eq(self.read.addr), self.read.data.eq(rd.data),
                     self.read.avail.eq(avail)]
        return m


class WindowSequencer(BeatSource):
    """Output positions x row groups x beats, one beat per cycle: the input word of each beat from the ring (zeros
    in the padding), every slot's weight word from its memory (``words[slot]``, one word per (group, beat), the
    same for every position), offered on ``o`` as the dense :class:`hw.network.components.Sequencer` does.

    An output row starts when the ring holds every input row its windows read; after it the rows no later window
    reads are released, and after a sample's last output row all its remaining rows, once they have arrived.

    Members
    -------
    read : Out(WindowRead(...))
    loaded : In(1)
    o : Out(stream.Signature(beat_layout(...)))
    """

    def __init__(self, *, window: Window, groups: int, x_width: int, words, widths):
        self._window, self._groups = window, groups
        super().__init__(WindowRead(words=window.ring_words, width=x_width, rows=window.rows), x_width=x_width,
                         words=words, widths=widths)

    def elaborate(self, platform):
        m = Module()
        win, groups = self._window, self._groups
        (kh, kw), (sh, sw), (pt, pl) = win.kernel, win.stride, win.pad
        h, w, wpp = win.height, win.width, win.words_per_position
        rw, ring = win.row_words, win.ring_words
        beats = win.beats
        dw = win.depthwise
        col_step = wpp if dw else 1

        def ring_add(value, const):
            const %= ring
            total = value + const
            return Mux(total >= ring, total - ring, total)

        coord = signed(max(ceil_log2(max(h, w) + max(pt, pl) + max(kh, kw) + max(sh, sw) + 2) + 2, 4))
        oh = Signal(range(max(win.out_height, 2)))
        ow = Signal(range(max(win.out_width, 2)))
        g = Signal(range(max(groups, 2)))
        ky = Signal(range(max(kh, 2)))
        kx = Signal(range(max(kw, 2)))
        ch = Signal(range(max(wpp, 2)))             # the channel word of a beat (convolution; depthwise: g)
        ih0 = Signal(coord, init=-pt)               # the first input row of this output row's windows
        iw0 = Signal(coord, init=-pl)               # the first input column of this window
        head = Signal(range(h + 1))                 # the oldest input row held in the ring
        a_head = Signal(range(max(ring, 2)))        # ... its word address
        a_ih0 = Signal(range(max(ring, 2)), init=(-pt * rw) % ring)  # the address row ih0 has (or would have)
        a_row = Signal(range(max(ring, 2)), init=(-pt * rw) % ring)  # ... and row ih0 + ky
        col = Signal(signed(coord.width + ceil_log2(max(wpp, 1) + 1) + 2), init=-pl * wpp)  # iw * wpp (+ g)
        wa = Signal(range(max(groups * beats, 2)))  # the weight words' address: g * beats + beat
        drain = Signal()                            # the sample's last beat is issued: release its rows

        staged = Signal()
        staged_last = Signal()
        staged_pad = Signal()
        fire = Signal()
        m.d.comb += fire.eq(staged & self.o.ready)
        advance = Signal()
        m.d.comb += advance.eq(~staged | fire)

        ih = Signal(coord)
        iw = Signal(coord)
        m.d.comb += [ih.eq(ih0 + ky), iw.eq(iw0 + kx)]
        pad = Signal()
        m.d.comb += pad.eq((ih < 0) | (ih >= h) | (iw < 0) | (iw >= w))
        # an output row starts when the rows its windows read have arrived, and those a stride larger than the
        # kernel skips (so that the rows it releases after it are all there)
        need = Signal(coord)
        m.d.comb += need.eq(Mux(ih0 + max(kh, sh) > h, h, ih0 + max(kh, sh)))
        have = Signal(coord)
        m.d.comb += have.eq(head + self.read.avail)
        ready_rows = Signal()
        m.d.comb += ready_rows.eq(have >= need)
        issue = Signal()
        m.d.comb += issue.eq(advance & self.loaded & ready_rows & ~drain)

        last_j = equals(kx, kw - 1) & (1 if dw else equals(ch, wpp - 1))
        last_ky = equals(ky, kh - 1)
        last_beat = last_j & last_ky
        last_g = equals(g, groups - 1)
        last_ow = equals(ow, win.out_width - 1)
        last_oh = equals(oh, win.out_height - 1)
        m.d.comb += [self.read.en.eq(advance), self.read.addr.eq(a_row + col)]

        with m.If(advance):
            m.d.sync += [staged.eq(issue), staged_last.eq(last_beat), staged_pad.eq(pad)]

        # after the sample's last beat: its rows from the last output row's first on are freed, the next
        # sample's first row is the ring's oldest
        all_rows = Signal()
        m.d.comb += all_rows.eq(head + self.read.avail >= h)
        tail = h - max(0, (win.out_height - 1) * sh - pt)

        def next_sample():
            m.d.comb += [self.read.release.eq(1), self.read.count.eq(tail)]
            new_head = ring_add(a_head, tail * rw)
            m.d.sync += [head.eq(0), ih0.eq(-pt), a_head.eq(new_head),
                         a_ih0.eq(ring_add(new_head, -pt * rw)), a_row.eq(ring_add(new_head, -pt * rw))]

        # the window's start column in words: iw0 * wpp, plus the group's channel word when depthwise
        col_start = Signal.like(col)
        m.d.comb += col_start.eq(iw0 * wpp + (g if dw else 0))
        with m.If(issue):
            m.d.sync += wa.eq(Mux(equals(wa, groups * beats - 1), 0, wa + 1))
            with m.If(~last_j):
                m.d.sync += col.eq(col + col_step)
                if dw or wpp == 1:
                    m.d.sync += kx.eq(kx + 1)
                else:
                    with m.If(equals(ch, wpp - 1)):
                        m.d.sync += [ch.eq(0), kx.eq(kx + 1)]
                    with m.Else():
                        m.d.sync += ch.eq(ch + 1)
            with m.Else():
                m.d.sync += [ch.eq(0), kx.eq(0)]
                with m.If(~last_ky):                # the next kernel row of this window
                    m.d.sync += [ky.eq(ky + 1), a_row.eq(ring_add(a_row, rw)), col.eq(col_start)]
                with m.Else():
                    m.d.sync += [ky.eq(0), a_row.eq(a_ih0)]
                    next_g = Signal.like(col)
                    m.d.comb += next_g.eq(iw0 * wpp + (g + 1 if dw else 0))
                    with m.If(~last_g):             # the next row group of this position
                        m.d.sync += [g.eq(g + 1), col.eq(next_g)]
                    with m.Else():
                        m.d.sync += g.eq(0)
                        with m.If(~last_ow):        # the next position of this output row
                            m.d.sync += [ow.eq(ow + 1), iw0.eq(iw0 + sw), col.eq((iw0 + sw) * wpp)]
                        with m.Else():
                            m.d.sync += [ow.eq(0), iw0.eq(-pl), col.eq(-pl * wpp)]
                            with m.If(~last_oh):    # the next output row: free the rows no window reads again
                                nxt = Signal(coord)
                                m.d.comb += nxt.eq(ih0 + sh)
                                keep = Mux(nxt < 0, 0, nxt)
                                freed = Signal(range(win.rows + 1))
                                m.d.comb += freed.eq(keep - head)
                                m.d.comb += [self.read.release.eq(1), self.read.count.eq(freed)]
                                m.d.sync += [oh.eq(oh + 1), ih0.eq(nxt), head.eq(keep),
                                             a_ih0.eq(ring_add(a_ih0, sh * rw)),
                                             a_row.eq(ring_add(a_ih0, sh * rw)),
                                             a_head.eq(_ring_mul_add(a_head, freed, rw, ring, win.rows))]
                            with m.Else():
                                m.d.sync += oh.eq(0)
                                with m.If(all_rows):    # the sample's rows are all in: free them now
                                    next_sample()
                                with m.Else():
                                    m.d.sync += drain.eq(1)

        # the sample's last output row is issued: once its remaining rows have all arrived, free them
        with m.If(drain & all_rows):
            m.d.sync += drain.eq(0)
            next_sample()

        parts = []
        for n, (words, width) in enumerate(zip(self._words, self._widths)):
            if not width:
                continue
            mem = rom(width, words)
            m.submodules[f"weights{n}"] = mem
            wp = mem.read_port()
            m.d.comb += [wp.en.eq(advance), wp.addr.eq(wa)]
            parts.append(wp.data)
        m.d.comb += [self.o.valid.eq(staged), self.o.payload.x.eq(Mux(staged_pad, 0, self.read.data)),
                     self.o.payload.last.eq(staged_last)]
        if parts:
            m.d.comb += self.o.payload.w.eq(Cat(*parts))
        return m


def _ring_mul_add(value, count, step: int, ring: int, most: int):
    """``(value + count * step) mod ring`` for a small ``count`` (at most ``most``): a mux over the constants."""
    out = value
    for n in range(1, most + 1):
        total = value + (n * step) % ring
        out = Mux(count == n, Mux(total >= ring, total - ring, total), out)
    return out
