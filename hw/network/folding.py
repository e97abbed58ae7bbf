"""How each layer of a network is folded onto hardware, and the one way a folding is written.

A :class:`LayerFolding` is a layer's implementation ``impl`` (``folded``: PEs reused over the rows, weights in
memories; ``unrolled``: the weights as constant adder graphs, :mod:`hw.network.unrolled`), and for a folded layer
its ``lanes`` (input parallelism), ``pes`` (output parallelism) and ``requant`` (cycles per requantised result),
for an unrolled one its ``reuse`` (cycles per vector of its adder graphs); a :class:`Folding` is every layer's, in
order. :meth:`LayerFolding.text` writes one (``16x2``, ``1x7/r9``, ``u``, ``u/reuse4``) and
:meth:`LayerFolding.parse` reads it back. :class:`Budget` is what a device offers the default folding
(:mod:`hw.network.search`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...sw.params import Params, check_choice, check_int

__all__ = ["LayerFolding", "Folding", "Budget", "folding_text", "IMPLS", "DEFAULT_MAX_LANES",
           "DEFAULT_MAX_MULTIPLIERS", "MAX_REQUANT_CYCLES", "MAX_REUSE"]

#: The implementations a layer's engine can have (:data:`hw.network.engines.ENGINES`' third key).
IMPLS = ("folded", "unrolled")
#: The largest ``reuse`` of an unrolled layer (an input of ``b`` bits takes at most ``b`` cycles).
MAX_REUSE = 32

#: Default folding search: the largest ``lanes`` and ``lanes * pes`` (multipliers) of one layer.
DEFAULT_MAX_LANES = 16
DEFAULT_MAX_MULTIPLIERS = 32
#: The slowest requantiser: cycles per result (:class:`hw.network.components.Requantizer`).
MAX_REQUANT_CYCLES = 64


@dataclass(frozen=True)
class LayerFolding(Params):
    """How one layer is folded onto hardware.

    ``lanes`` is the input parallelism: input elements per beat (fixed, sp2, msq: the PE's lanes; nm: a
    multiple of M, ``lanes / M`` groups; circulant: the block size k; crossbar: the crossbar's rows).
    ``pes`` is the output parallelism: PE slots working on different output rows (circulant: block rows;
    crossbar: one slot per tile of ``cols`` outputs, so it is the number of tiles).
    ``impl`` ``"unrolled"`` computes the layer as constant adder graphs instead (:mod:`hw.network.unrolled`), a
    vector every ``reuse`` cycles (digit-serial inputs); its plan sets ``lanes``, ``pes`` and ``requant`` to 1.
    ``to_dict`` leaves ``impl`` and ``reuse`` out at their defaults, so a folded layer's digest is what it was
    before they existed.
    """

    lanes: int = field(default=1, metadata={"doc": "input elements per beat"})
    pes: int = field(default=1, metadata={"doc": "PE slots, output rows computed in parallel"})
    requant: int = field(default=1, metadata={
        "doc": "cycles per requantised result (1: one multiplier; more: shifts and adds in LUTs)"})
    impl: str = field(default="folded", metadata={
        "doc": "folded (PEs reused over the rows) or unrolled (the weights as constant adder graphs)"})
    reuse: int = field(default=1, metadata={"doc": "unrolled: cycles per input vector (digit-serial inputs)"})

    def __post_init__(self):
        check_int("Lanes", self.lanes, min=1, max=4096)
        check_int("PEs (pes)", self.pes, min=1, max=1024)
        check_int("Requantiser cycles (requant)", self.requant, min=1, max=MAX_REQUANT_CYCLES)
        check_choice("Implementation (impl)", self.impl, IMPLS)
        check_int("Reuse", self.reuse, min=1, max=MAX_REUSE)
        if self.reuse > 1 and self.impl != "unrolled":
            raise ValueError(f"Reuse must be 1 for a {self.impl} layer (reuse is an unrolled layer's), not "
                             f"{self.reuse}")

    def to_dict(self) -> dict:
        out = super().to_dict()
        if self.impl == "folded":
            del out["impl"]
        if self.reuse == 1:
            del out["reuse"]
        return out

    def text(self) -> str:
        """``"16x2"`` (lanes x pes), ``"1x7/r9"`` with a serial requantiser, ``"u"`` unrolled, ``"u/reuse4"``
        unrolled over 4 cycles: how every table names a folding (:meth:`parse` reads it back)."""
        if self.impl == "unrolled":
            return "u" + (f"/reuse{self.reuse}" if self.reuse > 1 else "")
        return f"{self.lanes}x{self.pes}" + (f"/r{self.requant}" if self.requant > 1 else "")

    @classmethod
    def parse(cls, text: str) -> LayerFolding:
        """The folding :meth:`text` writes as ``text`` (``peforge compile --set layer.N=16x2``).

        Raises
        ------
        ValueError
            ``"Layer folding must be LANESxPES, LANESxPES/rCYCLES, u or u/reuseR, not '16'"``, and the fields'
            own errors (``"Lanes must be an integer from 1 to 4096, not 0"``).
        """
        found = re.fullmatch(r"(?:(\d+)x(\d+)(?:/r(\d+))?|u(?:/reuse(\d+))?)", text.strip()) \
            if isinstance(text, str) else None
        if found is None:
            raise ValueError(f"Layer folding must be LANESxPES, LANESxPES/rCYCLES, u or u/reuseR, not {text!r}")
        lanes, pes, requant, reuse = found.groups()
        if lanes is None:
            return cls(impl="unrolled", reuse=int(reuse or 1))
        return cls(int(lanes), int(pes), int(requant or 1))


@dataclass(frozen=True)
class Folding:
    """The folding of every layer, in order: ``Folding((LayerFolding(16, 2), LayerFolding(2, 3)))``."""

    layers: tuple[LayerFolding, ...]

    def __post_init__(self):
        if not isinstance(self.layers, tuple) or not all(isinstance(f, LayerFolding) for f in self.layers):
            raise TypeError(f"Folding layers must be a tuple of LayerFolding, not {self.layers!r}")

    def to_list(self) -> list[dict]:
        return [f.to_dict() for f in self.layers]

    def text(self) -> str:
        """``"16x2, 8x1"``: every layer's :meth:`LayerFolding.text`, the one way reports write a folding."""
        return ", ".join(f.text() for f in self.layers)

    @classmethod
    def from_list(cls, items) -> Folding:
        if not isinstance(items, list):
            raise TypeError(f"Folding must be a list of {{lanes, pes}} objects, not {items!r}")
        return cls(tuple(LayerFolding.from_dict(item) for item in items))


def folding_text(folding) -> str:
    """:meth:`Folding.text` of a :class:`Folding` or of its :meth:`Folding.to_list` form (a results file's
    ``folding``: ``requant`` may be missing); ``"-"`` for None or an empty list."""
    if not folding:
        return "-"
    if isinstance(folding, Folding):
        return folding.text()
    return Folding(tuple(LayerFolding(f["lanes"], f["pes"], f.get("requant", 1), f.get("impl", "folded"),
                                      f.get("reuse", 1)) for f in folding)).text()


@dataclass(frozen=True)
class Budget:
    """What a device offers the default folding: ``dsps`` DSP multipliers of ``dsp_bits``-bit operands, and
    (when not None) ``luts`` LUT4s and ``bram_bits`` bits of block RAM for the weight memories and buffers. The synthesis
    targets give theirs (``synth.TARGETS[name].budget()``); ``device`` names it in errors."""

    dsps: int
    dsp_bits: int
    luts: int | None = None
    bram_bits: int | None = None
    device: str = ""
