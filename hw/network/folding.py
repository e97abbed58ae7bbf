"""How each layer of a network is folded onto hardware, and the one way a folding is written.

A :class:`LayerFolding` is a layer's ``lanes`` (input parallelism), ``pes`` (output parallelism) and ``requant``
(cycles per requantised result); a :class:`Folding` is every layer's, in order. :class:`Budget` is what a device
offers the default folding (:mod:`hw.network.search`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...sw.params import Params, check_int

__all__ = ["LayerFolding", "Folding", "Budget", "folding_text", "DEFAULT_MAX_LANES", "DEFAULT_MAX_MULTIPLIERS",
           "MAX_REQUANT_CYCLES"]

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
    """

    lanes: int = field(default=1, metadata={"doc": "input elements per beat"})
    pes: int = field(default=1, metadata={"doc": "PE slots, output rows computed in parallel"})
    requant: int = field(default=1, metadata={
        "doc": "cycles per requantised result (1: one multiplier; more: shifts and adds in LUTs)"})

    def __post_init__(self):
        check_int("Lanes", self.lanes, min=1, max=4096)
        check_int("PEs (pes)", self.pes, min=1, max=1024)
        check_int("Requantiser cycles (requant)", self.requant, min=1, max=MAX_REQUANT_CYCLES)

    def text(self) -> str:
        """``"16x2"`` (lanes x pes), ``"1x7/r9"`` with a serial requantiser: how every table names a folding."""
        return f"{self.lanes}x{self.pes}" + (f"/r{self.requant}" if self.requant > 1 else "")


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
    return Folding(tuple(LayerFolding(f["lanes"], f["pes"], f.get("requant", 1)) for f in folding)).text()


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
