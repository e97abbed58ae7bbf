"""``make bench`` suite ``dsp``: registered DSP primitives and shorter adder-tree stages, before and after, in one run.

Each PE is synthesised three ways on ECP5-85F, in the pin wrapper, with the same seeds: the multiply left to
yosys (``dsp_cell="inferred"``, today's default before hw/dsp.py; yosys maps it onto MULT18X18D without the
block's registers), the target's primitive with its input and output registers and a fabric register after it
(``dsp_cell="target"``), and that with one adder level per register stage in the lane sum (``tree_levels=1``).
Each row also names its critical path (first seed): where it starts and ends and how much of it is routing, read
from nextpnr's log of that run.
"""

from __future__ import annotations

import re

from peforge.bench.common import (TARGET, WRAPPER_NOTE, Design, fmax, header, measure_designs, results_table,
                                  suite_document, synth_of, target_table)
from peforge.hw.verilog import build_root
from peforge.report import markdown_table

__all__ = ["dsp_designs", "dsp_suite", "render", "critical_path", "path_fields", "path_table"]

VARIANTS = (  # (label suffix, dsp_cell, tree_levels)
    ("inferred DSP", "inferred", 2),
    ("MULT18X18D registered", "target", 2),
    ("MULT18X18D registered, tree 1", "target", 1),
)


def dsp_designs() -> list[Design]:
    """fixed-mac at 1 and 16 lanes and nm-sparse 2:4 x 4 groups (8 multipliers), each in every variant."""
    from peforge.hw.fixed_mac import FixedMacParams
    from peforge.hw.nm_sparse import NMSparseParams
    from peforge.sw.nm import NMFormat

    common = dict(act_bits=8, act_signed=True, w_bits=8, max_len=4096, dsp=True)
    makers = [
        ("fixed-mac 16 lanes", "fixed-mac", lambda **kw: FixedMacParams(lanes=16, **common, **kw)),
        ("2:4 x4 groups", "nm-sparse", lambda **kw: NMSparseParams(fmt=NMFormat(2, 4), groups=4, **common, **kw)),
        ("fixed-mac 1 lane", "fixed-mac", lambda **kw: FixedMacParams(lanes=1, **common, **kw)),
    ]
    return [Design(f"{name}, {suffix}", pe, make(dsp_cell=cell, tree_levels=levels))
            for name, pe, make in makers for suffix, cell, levels in VARIANTS]


_STEP = re.compile(r"Info:\s+(clk-to-q|routing|logic|setup)\s+(-?[\d.]+)\s+(-?[\d.]+)\s+(?:Source|Net)\s+(\S+)")


def critical_path(log: str) -> dict | None:
    """The last clock-domain critical path of a nextpnr log: ``{"from", "to", "ns", "routing_ns"}`` (cell names as
    nextpnr prints them, without the ``dut.`` prefix), or None when the log has none."""
    start = log.rfind("Critical path report for clock")
    if start < 0:
        return None
    end = log.find("Critical path report for cross-domain", start)
    steps = _STEP.findall(log[start:end if end > 0 else None])
    if not steps:
        return None
    routing = sum(float(delay) for kind, delay, _total, _name in steps if kind == "routing")
    sinks = re.findall(r"Sink (\S+)", log[start:end if end > 0 else None])
    strip = lambda name: name.removeprefix("dut.")  # noqa: E731
    return {"from": strip(steps[0][3]), "to": strip(sinks[-1]) if sinks else strip(steps[-1][3]),
            "ns": float(steps[-1][2]), "routing_ns": round(routing, 2)}


def path_fields(design: Design) -> dict:
    """The row's ``latency`` (of the parameters built for the bench target) and ``critical_path``: that of the
    first seed that routed (seed 1 unless it was stopped, then with its ``seed``), read from the nextpnr log of
    the synthesis just run (None when there is none)."""
    import json

    from peforge.synth import for_target

    params = for_target(design.params, TARGET)
    directory = build_root() / "synth" / f"{design.pe}-{params.digest()}-{TARGET}"
    result = directory / "result.json"
    seed = json.loads(result.read_text())["seeds"][0] if result.is_file() else 1
    log = directory / f"nextpnr_seed{seed}.log"
    path = critical_path(log.read_text()) if log.is_file() else None
    if path is not None and seed != 1:
        path["seed"] = seed
    return {"latency": params.latency, "critical_path": path}


def path_table(designs: list[dict]) -> str:
    """Markdown: each row's latency and seed-1 critical path (another seed's says which; rows measured without
    them show "-")."""
    rows = []
    for d in designs:
        path = d.get("critical_path")
        seed = "" if path is None or "seed" not in path else f" (seed {path['seed']})"
        rows.append([d["label"], str(d.get("latency", "-")),
                     "-" if path is None else f"{path['from']} -> {path['to']}{seed}",
                     "-" if path is None else f"{path['ns']:.2f}",
                     "-" if path is None else f"{path['routing_ns']:.2f}"])
    return markdown_table(["design", "latency", "critical path", "ns", "routing ns"], rows)


def _path_fields(design: Design) -> dict:
    params = design.params
    return {"lanes": params.lanes, "macs_per_cycle": params.macs_per_cycle, **path_fields(design)}


def dsp_suite(seeds) -> dict:
    """Synthesise :func:`dsp_designs`; the results document of ``docs/results/dsp.json``."""
    designs = dsp_designs()
    records = measure_designs(designs, seeds, fields=lambda d: {})
    return suite_document("dsp", seeds, [{**r, **_path_fields(d)} for d, r in zip(designs, records)])


def render(doc: dict) -> str:
    """The page ``docs/results/dsp.md`` from its results document."""
    designs = doc["designs"]
    fixed, nm = synth_of(designs, "fixed-mac 16 lanes, MULT18X18D registered, tree 1"), \
        synth_of(designs, "2:4 x4 groups, MULT18X18D registered, tree 1")
    before_fixed = synth_of(designs, "fixed-mac 16 lanes, inferred DSP")
    before_nm = synth_of(designs, "2:4 x4 groups, inferred DSP")
    checks = [
        ("fixed-mac 16 lanes with DSPs >= 200 MHz", fmax(fixed) >= 200,
         f"{fmax(fixed):.1f} MHz (inferred: {fmax(before_fixed):.1f})"),
        ("nm-sparse 2:4 with DSPs >= 200 MHz", fmax(nm) >= 200,
         f"{fmax(nm):.1f} MHz (inferred: {fmax(before_nm):.1f})"),
    ]
    return "\n".join([
        header("Registered DSP primitives: before and after", doc),
        "All designs: 8-bit signed activations and weights, accumulator for max_len = 4096 (28 bits), DSP "
        "multipliers. `inferred DSP`: `a * w` left to yosys, which maps it onto MULT18X18D without the block's "
        "registers. `MULT18X18D registered`: the primitive instantiated with its input and output registers "
        "and a fabric register after it (`dsp_cell=\"target\"`, hw/dsp.py). `tree 1`: one adder level per "
        "register stage in the lane sum (`tree_levels=1`; the default is 2). MACs/cycle counts logical MACs.",
        "",
        WRAPPER_NOTE,
        "",
        results_table(designs),
        "",
        "## Latency and critical path (seed 1)",
        "",
        "Latency: register stages from an input's `last` beat to its result, from the Params (each configuration's "
        "RTL test measures it equal). Critical path: where nextpnr's slowest register-to-register path starts and "
        "ends, its length and how much of it is routing.",
        "",
        path_table(designs),
        "",
        "## Targets",
        "",
        target_table(checks),
        "",
    ])
