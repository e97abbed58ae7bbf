"""``make bench`` suite ``nm``: nm-sparse 2:4, 1:4 and 2:8 against a dense 16-lane fixed-mac at 16 logical MACs
per cycle, with DSPs and LUT-only (``docs/results/nm.md``)."""

from __future__ import annotations

from peforge.bench.common import (WRAPPER_NOTE, Design, fmax, header, measure_designs, results_table, suite_document,
                                  synth_of, target_table)

__all__ = ["nm_designs", "nm_suite", "render"]


def nm_designs() -> list[Design]:
    """Dense 16-lane fixed-mac and three N:M units at 16 logical MACs/cycle, with and without DSPs."""
    from peforge.hw.fixed_mac import FixedMacParams
    from peforge.hw.nm_sparse import NMSparseParams
    from peforge.sw.nm import NMFormat

    common = dict(act_bits=8, act_signed=True, w_bits=8, max_len=4096)
    designs = []
    for dsp in (True, False):
        kind = "DSP" if dsp else "LUT"
        designs += [
            Design(f"dense fixed-mac {kind}", "fixed-mac", FixedMacParams(lanes=16, dsp=dsp, **common)),
            Design(f"2:4 x4 groups {kind}", "nm-sparse", NMSparseParams(fmt=NMFormat(2, 4), groups=4, dsp=dsp, **common)),
            Design(f"1:4 x4 groups {kind}", "nm-sparse", NMSparseParams(fmt=NMFormat(1, 4), groups=4, dsp=dsp, **common)),
            Design(f"2:8 x2 groups {kind}", "nm-sparse", NMSparseParams(fmt=NMFormat(2, 8), groups=2, dsp=dsp, **common)),
        ]
    return designs


def nm_suite(seeds) -> dict:
    """Synthesise :func:`nm_designs`; the results document of ``docs/results/nm.json``."""
    return suite_document("nm", seeds, measure_designs(nm_designs(), seeds))


def render(doc: dict) -> str:
    """The page ``docs/results/nm.md`` from its results document."""
    designs = doc["designs"]
    nm24, dense_lut = synth_of(designs, "2:4 x4 groups DSP"), synth_of(designs, "dense fixed-mac LUT")
    nm24_lut = synth_of(designs, "2:4 x4 groups LUT")
    ratio = nm24_lut["lut"] / dense_lut["lut"]
    checks = [
        ("2:4 at 16 logical MACs/cycle: <= 8 DSP", nm24["dsp"] <= 8, f"{nm24['dsp']} DSP"),
        ("2:4: fewer than 464 LUT", nm24["lut"] < 464, f"{nm24['lut']} LUT"),
        ("2:4: >= 140 MHz", fmax(nm24) >= 140, f"{fmax(nm24):.1f} MHz"),
        ("2:4 LUT-only <= 0.5x the LUTs of the dense LUT-only 16-lane unit", ratio <= 0.5,
         f"{nm24_lut['lut']} / {dense_lut['lut']} = {ratio:.2f}x"),
    ]
    return "\n".join([
        header("nm-sparse vs dense fixed-mac at 16 logical MACs/cycle", doc),
        "All designs: 8-bit signed activations and weights, accumulator for max_len = 4096 (28 bits). "
        "`lanes` is the number of multipliers; MACs/cycle counts logical (dense-equivalent) MACs: "
        "nm-sparse reads groups x M activations per beat. Every row in the pin wrapper.",
        "",
        WRAPPER_NOTE,
        "",
        results_table(designs),
        "",
        "## Targets",
        "",
        target_table(checks),
        "",
        "References measured on this flow outside peforge when nm-sparse was specified: a hand-written 2:4 unit "
        "464 LUT + 8 DSP at 138 MHz; the dense 16-lane int8 dot 550 LUT + 16 DSP at 132 MHz, 5391 LUT "
        "LUT-only.",
        "",
    ])
