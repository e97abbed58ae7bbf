"""A pin-limited wrapper that lets a wide component place on a small package.

A PE with a 600-bit input stream has more port bits than any package has pins, and nextpnr cannot
place it. :class:`PinWrapper` hides every port behind two pins without letting synthesis drop any of
the component's logic: every input port bit comes from its own flip-flop of one long shift register,
and every output port bit is registered and then XOR-folded into ``sout``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PinWrapper", "port_bits"]


def _ports(component):
    """Input and output port values of ``component``, in :meth:`Signature.flatten` order.

    ``flatten`` already applies the flips of nested signatures, so the ready of an output stream is
    an ``In`` member here and the valid of an input stream is ``In`` too.
    """
    inputs, outputs = [], []
    for _path, member, value in component.signature.flatten(component):
        value = Value.cast(value)
        (inputs if member.flow == In else outputs).append(value)
    return inputs, outputs


def port_bits(component):
    """Total width of the ports of ``component`` (clock and reset not included)."""
    inputs, outputs = _ports(component)
    return sum(len(v) for v in inputs) + sum(len(v) for v in outputs)


class PinWrapper(wiring.Component):
    """Wrap ``component`` so that only ``sin``, ``sout``, ``clk`` and ``rst`` reach the pins.

    Every input port bit of the component (data, the valid of an input stream, the ready of an output
    stream) is driven by one flip-flop of a shift register fed from ``sin``: ``sin`` enters at bit 0
    and the first port in :meth:`Signature.flatten` order sits at the least significant bits. Every
    output port bit is first registered (so paths leaving the component end at a flip-flop, and
    nextpnr times them as register to register), then the registered bits are XOR-folded into
    ``sout``: output bit ``j`` goes into ``sout[j % out_pins]``. Every bit stays observable, so
    synthesis keeps all the component's logic.

    The wrapper uses the component's own ``sync`` domain (same ``clk`` and ``rst``) and adds no domain.

    Overhead, counted in the synthesis results of a wrapped design:

    - flip-flops: ``in_bits + out_bits`` (one per port bit);
    - LUTs: the XOR fold, about ``(out_bits - out_pins) / 3`` LUT4s; the shift register needs none.

    Parameters
    ----------
    component : wiring.Component
        The design to wrap; elaborated as submodule ``dut``.
    out_pins : int
        Width of ``sout``.

    Members
    -------
    sin : In(1)
        Serial input of the shift register.
    sout : Out(out_pins)
        XOR fold of all registered output port bits.

    Raises
    ------
    TypeError
        ``"Component must be an amaranth.lib.wiring.Component, not ..."``
    ValueError
        ``"Output pins must be a positive integer, not ..."``
    """

    def __init__(self, component, *, out_pins=4):
        if not isinstance(component, wiring.Component):
            raise TypeError(f"Component must be an amaranth.lib.wiring.Component, not {component!r}")
        if isinstance(out_pins, bool) or not isinstance(out_pins, int) or out_pins < 1:
            raise ValueError(f"Output pins must be a positive integer, not {out_pins!r}")
        self._component = component
        self._inputs, self._outputs = _ports(component)
        super().__init__({"sin": In(1), "sout": Out(out_pins)})

    @property
    def component(self):
        """The wrapped component."""
        return self._component

    @property
    def in_bits(self):
        """Number of input port bits, which is the length of the shift register."""
        return sum(len(v) for v in self._inputs)

    @property
    def out_bits(self):
        """Number of output port bits folded into ``sout``."""
        return sum(len(v) for v in self._outputs)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self._component

        if self.in_bits:
            shift = Signal(self.in_bits)
            m.d.sync += shift.eq(Cat(self.sin, shift[:-1]))
            offset = 0
            for port in self._inputs:
                m.d.comb += port.eq(shift[offset:offset + len(port)])
                offset += len(port)

        if self.out_bits:
            captured = Signal(self.out_bits)
            m.d.sync += captured.eq(Cat(*self._outputs))
            pins = len(self.sout)
            for k in range(min(pins, self.out_bits)):
                m.d.comb += self.sout[k].eq(captured[k::pins].xor())

        return m
