"""Streaming pooling: max and average pools whose windows do not overlap (stride at least the kernel; a global
average pool is one window over the whole input), reduced as the elements stream past, without a line buffer.

::

    elements --i--> StreamPool --o--> Requantizer (average: the layer's; max: a pass-through) --> elements

Each element (its channel in ``word``) is combined into the accumulator of its window and channel, kept in a
memory of ``out_width x channels`` words (one output row's windows); the first element of a window starts its
accumulator, the last sends the result on. Elements outside every window (the rows and columns a stride skips)
are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Module, Mux, Signal
from amaranth.hdl import Shape
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..common import equals
from .components import element_layout, result_layout

__all__ = ["PoolWindow", "StreamPool"]


@dataclass(frozen=True)
class PoolWindow:
    """A pool's geometry: the input (``height`` x ``width`` positions of ``channels``), the kernel and stride
    (stride >= kernel on both axes) and the output size. A 1-D pool is ``height = 1``."""

    height: int
    width: int
    channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    out_height: int
    out_width: int

    @classmethod
    def of(cls, layer) -> PoolWindow:
        """The geometry of a pool layer (:mod:`sw.conv`).

        Raises
        ------
        ValueError
            ``"Layer maxpool stride must be at least its kernel (windows that do not overlap), not (1, 1) for
            kernel (2, 2)"``.
        """
        (kh, kw), (sh, sw) = layer.kernel2d, layer.stride2d
        if sh < kh or sw < kw:
            raise ValueError(f"Layer {layer.kind} stride must be at least its kernel (windows that do not overlap), "
                             f"not {tuple(layer.stride)} for kernel {tuple(layer.kernel)}")
        h, w = (1, layer.in_shape[1]) if layer.dims == 1 else layer.in_shape[1:]
        oh, ow = layer.out_spatial
        return cls(h, w, layer.in_shape[0], (kh, kw), (sh, sw), oh, ow)

    @property
    def positions(self) -> int:
        return self.out_height * self.out_width

    @property
    def in_positions(self) -> int:
        return self.height * self.width


class StreamPool(wiring.Component):
    """The max or the sum of every window, one element per cycle (see the module docstring).

    Members
    -------
    i : In(stream.Signature(element_layout(shape, channels, 1)))
        The input elements position by position (raster order), a position's channels in any order, each
        naming its channel in ``word``.
    o : Out(stream.Signature(result_layout(acc_shape, channels)))
        A window's result for each channel (``row``), ``last`` on the final channel of an output position.
    """

    def __init__(self, *, shape, acc_shape, window: PoolWindow, op: str):
        if op not in ("max", "sum"):
            raise ValueError(f"Pool op must be 'max' or 'sum', not {op!r}")
        self._shape, self._acc_shape, self._window, self._op = Shape.cast(shape), Shape.cast(acc_shape), window, op
        super().__init__({
            "i": In(stream.Signature(element_layout(shape, window.channels, 1))),
            "o": Out(stream.Signature(result_layout(acc_shape, window.channels))),
        })

    def elaborate(self, platform):
        m = Module()
        win = self._window
        c = win.channels
        (kh, kw), (sh, sw) = win.kernel, win.stride
        # where the next element is: its position's element count, column and row, each split into the window
        # index along the axis and the offset inside the stride
        n = Signal(range(max(c, 2)))
        kx, jw = Signal(range(max(sw, 2))), Signal(range(win.width + 1))
        ky, jh = Signal(range(max(sh, 2))), Signal(range(win.height + 1))
        iw, ih = Signal(range(max(win.width, 2))), Signal(range(max(win.height, 2)))

        m.submodules.mem = mem = Memory(shape=self._acc_shape, depth=max(2, win.out_width * c), init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=(wr,))

        # stage 1: the element beside its accumulator (the memory's read register)
        v1 = Signal()
        x1 = Signal(self._shape, reset_less=True)
        ch1 = Signal(range(max(c, 2)), reset_less=True)
        addr1 = Signal(range(max(2, win.out_width * c)), reset_less=True)
        use1, first1, final1 = Signal(), Signal(), Signal()
        free_o = Signal()
        m.d.comb += free_o.eq(~self.o.valid | self.o.ready)
        done1 = Signal()
        m.d.comb += done1.eq(v1 & (~(use1 & final1) | free_o))
        take = Signal()
        m.d.comb += [self.i.ready.eq(~v1 | done1), take.eq(self.i.valid & self.i.ready)]

        inside = (kx < kw) & (ky < kh) & (jw < win.out_width) & (jh < win.out_height)
        addr = Signal.like(addr1)
        m.d.comb += addr.eq(jw * c + self.i.payload.word)
        m.d.comb += [rd.en.eq(self.i.ready), rd.addr.eq(addr)]
        with m.If(self.i.ready):
            m.d.sync += [v1.eq(take), x1.eq(self.i.payload.x), ch1.eq(self.i.payload.word), addr1.eq(addr),
                         use1.eq(inside), first1.eq(equals(kx, 0) & equals(ky, 0)),
                         final1.eq(equals(kx, kw - 1) & equals(ky, kh - 1))]
        with m.If(take):                            # step the position after its last channel
            m.d.sync += n.eq(Mux(equals(n, c - 1), 0, n + 1))
            with m.If(equals(n, c - 1)):
                with m.If(~equals(iw, win.width - 1)):
                    m.d.sync += iw.eq(iw + 1)
                    with m.If(equals(kx, sw - 1)):
                        m.d.sync += [kx.eq(0), jw.eq(jw + 1)]
                    with m.Else():
                        m.d.sync += kx.eq(kx + 1)
                with m.Else():
                    m.d.sync += [iw.eq(0), kx.eq(0), jw.eq(0)]
                    with m.If(~equals(ih, win.height - 1)):
                        m.d.sync += ih.eq(ih + 1)
                        with m.If(equals(ky, sh - 1)):
                            m.d.sync += [ky.eq(0), jh.eq(jh + 1)]
                        with m.Else():
                            m.d.sync += ky.eq(ky + 1)
                    with m.Else():
                        m.d.sync += [ih.eq(0), ky.eq(0), jh.eq(0)]

        # stage 2: combine and write back; a window's last element sends its result
        acc = Signal(self._acc_shape)
        old = rd.data
        if self._op == "max":
            m.d.comb += acc.eq(Mux(first1 | (x1 > old), x1, old))
        else:
            m.d.comb += acc.eq(Mux(first1, x1, old + x1))
        m.d.comb += [wr.addr.eq(addr1), wr.data.eq(acc), wr.en.eq(done1 & use1)]
        sent = Signal(range(max(c, 2)))             # results sent of the current output position
        with m.If(free_o):
            m.d.sync += self.o.valid.eq(v1 & use1 & final1)
            with m.If(v1 & use1 & final1):
                m.d.sync += [self.o.payload.acc.eq(acc), self.o.payload.row.eq(ch1),
                             self.o.payload.last.eq(equals(sent, c - 1)),
                             sent.eq(Mux(equals(sent, c - 1), 0, sent + 1))]
        return m
