"""``make bench`` suite ``sp2``: sp2-mac against fixed-mac with 4- and 8-bit weights, LUT-only and with DSPs, at
1, 8 and 16 lanes in the pin wrapper, and one lane unwrapped (``docs/results/sp2.md``)."""

from __future__ import annotations

from peforge.bench.common import (WRAPPER_NOTE, Design, fmax, header, measure_designs, results_table, suite_document,
                                  synth_of, target_table)

__all__ = ["sp2_designs", "sp2_suite", "render"]


def sp2_designs() -> tuple[list[Design], list[Design]]:
    """Every design in the pin wrapper at 1, 8 and 16 lanes, and the one-lane designs unwrapped."""
    from peforge.hw.fixed_mac import FixedMacParams
    from peforge.hw.sp2_mac import SP2MacParams
    from peforge.sw.sp2 import SP2Format

    common = dict(act_bits=8, act_signed=True, max_len=4096)
    rows_spec = [
        ("SP2-4 (m1=2)", "sp2-mac", lambda l: SP2MacParams(lanes=l, fmt=SP2Format(4, 2), **common)),
        ("fixed-4 LUT", "fixed-mac", lambda l: FixedMacParams(lanes=l, w_bits=4, dsp=False, **common)),
        ("fixed-4 DSP", "fixed-mac", lambda l: FixedMacParams(lanes=l, w_bits=4, dsp=True, **common)),
        ("SP2-8 (m1=4)", "sp2-mac", lambda l: SP2MacParams(lanes=l, fmt=SP2Format(8, 4), **common)),
        ("fixed-8 LUT", "fixed-mac", lambda l: FixedMacParams(lanes=l, w_bits=8, dsp=False, **common)),
        ("fixed-8 DSP", "fixed-mac", lambda l: FixedMacParams(lanes=l, w_bits=8, dsp=True, **common)),
    ]
    wrapped = [Design(label, pe, make(lanes)) for lanes in (1, 8, 16) for label, pe, make in rows_spec]
    # the one-lane targets of sp2-mac are stated for an unwrapped lane (its ports fit the package)
    bare = [Design(label, pe, make(1), wrap=False) for label, pe, make in rows_spec]
    return wrapped, bare


def sp2_suite(seeds) -> dict:
    """Synthesise :func:`sp2_designs`; the results document of ``docs/results/sp2.json``."""
    wrapped, bare = sp2_designs()
    return suite_document("sp2", seeds, measure_designs(wrapped + bare, seeds))


def render(doc: dict) -> str:
    """The page ``docs/results/sp2.md`` from its results document."""
    designs = doc["designs"]
    sp2_1, fix4_1 = synth_of(designs, "SP2-4 (m1=2)", 1, False), synth_of(designs, "fixed-4 LUT", 1, False)
    sp2_16, sp2_1w = synth_of(designs, "SP2-4 (m1=2)", 16), synth_of(designs, "SP2-4 (m1=2)", 1)
    fix4_16 = synth_of(designs, "fixed-4 LUT", 16)
    ratio, ratio_16 = sp2_1["lut"] / fix4_1["lut"], sp2_16["lut"] / fix4_16["lut"]
    checks = [
        ("one SP2 lane (8-bit act, 4-bit SP2, max_len 4096) <= 80 LUT", sp2_1["lut"] <= 80, f"{sp2_1['lut']} LUT"),
        ("one SP2 lane >= 200 MHz", fmax(sp2_1) >= 200, f"{fmax(sp2_1):.1f} MHz"),
        ("(stricter) one SP2 lane >= 200 MHz with every path timed (wrapped)", fmax(sp2_1w) >= 200,
         f"{fmax(sp2_1w):.1f} MHz, {sp2_1w['lut']} LUT with the wrapper"),
        ("one SP2 lane <= 0.5x the LUTs of a LUT-only fixed lane with 4-bit weights", ratio <= 0.5,
         f"{sp2_1['lut']} / {fix4_1['lut']} = {ratio:.2f}x"),
        ("(per lane) the same ratio at 16 lanes, where the accumulator and control are shared", ratio_16 <= 0.5,
         f"{sp2_16['lut']} / {fix4_16['lut']} = {ratio_16:.2f}x (wrapped)"),
        ("16 SP2 lanes >= 150 MHz", fmax(sp2_16) >= 150, f"{fmax(sp2_16):.1f} MHz (wrapped)"),
    ]
    return "\n".join([
        header("sp2-mac vs fixed-mac", doc),
        "All designs: 8-bit signed activations, accumulator sized for max_len = 4096 (SP2-4: 24 bits, "
        "fixed-4: 26, fixed-8: 28, SP2-8: 40). LUT rows use no DSP; `fixed-* DSP` may use MULT18X18D.",
        "",
        "## Side by side, every design in the pin wrapper",
        "",
        WRAPPER_NOTE,
        "",
        results_table([d for d in designs if d["wrapped"]]),
        "",
        "## One lane, unwrapped (its ports fit the package; how the sp2-mac targets and references were taken)",
        "",
        "Without the wrapper, nextpnr does not time paths from input pins, so Fmax here leaves out "
        "the logic in front of the first register: the SP2 shift selection, and for the fixed rows "
        "the whole multiplier (which is why the DSP rows look fast). Compare designs in the wrapped "
        "table; this one matches how the references and targets below were taken.",
        "",
        results_table([d for d in designs if not d["wrapped"]]),
        "",
        "## Targets",
        "",
        target_table(checks),
        "",
        "References measured on this flow outside peforge when sp2-mac was specified: a hand-written SP2 MAC "
        "84 LUT at 218 MHz; a LUT-only 8x4 MAC 183 LUT; a DSP 8x8 MAC 30 LUT + 1 DSP at 151 MHz.",
        "",
    ])
