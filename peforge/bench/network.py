"""``peforge bench network``: whole digits accelerators, folded from fastest to smallest, on ECP5-85F.

For every scheme's digits network (:mod:`peforge.digits`, the networks of ``peforge e2e``) the suite compiles a
folding sweep (:func:`hw.network.folding_at` at multiples of the default interval, and the smallest folding),
runs the 360 test images through each accelerator in Verilator (the interval and latency are counted there,
RTL == golden checked) and synthesises it whole (one nextpnr seed: a whole network takes minutes). Beside the
sweep: each network folded for the iCE40-UP5K's DSPs (``--target ice40-up5k``) and synthesised for it, and
the same networks fully unrolled with constant weights by da4ml (:mod:`peforge.bench.da4ml`), so a reader
sees where folded PEs and unrolled adder graphs each win. ``inferences/s = Fmax / measured interval``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from peforge.bench.common import TARGET, header, suite_document, target_table
from peforge.hw.network import folding_text
from peforge.progress import Progress
from peforge.report import markdown_table, synth_record
from peforge.report import or_dash as _num

__all__ = ["network_suite", "render", "figures", "SCHEMES", "SWEEP"]

#: The digits networks of the sweep (peforge.digits scheme names).
SCHEMES = ("fixed", "sp2", "msq", "nm", "circulant", "crossbar")
#: Target intervals of the sweep as multiples of the default folding's; the smallest folding is always added.
SWEEP = (1, 4)
#: Schemes whose network da4ml unrolls beside the sweep. da4ml takes fixed, sp2, msq and nm weights as
#: constants; the 8-bit fixed-point network's adder graph (about 33k LUTs by da4ml's estimate) needs more than
#: 20 minutes of nextpnr per seed here, so the bench unrolls the SP2 one (about 15k).
DA4ML_SCHEMES = ("sp2",)
#: The issue's targets.
SPAN_TARGET = 16
BUSY_TARGET = 0.9
UP5K_LIMITS = {"lc": 5280, "dsp": 8, "bram": 30, "fmax_mhz": 24.0}


def measure_point(scheme: str, kind: str, compiled, x, golden, *, target: str, seeds, progress) -> dict:
    """One accelerator: RTL run of every image (interval, latency, equality), then synthesis for ``target`` in the
    pin wrapper through :func:`peforge.synth_cache.synthesise`, so an interrupted bench resumes: a design whose
    synthesis with these seeds and this generator is in the cache (by this bench, ``peforge e2e`` or
    ``peforge explore``) is not synthesised twice (its record says ``cached``)."""
    from peforge.synth_cache import RECORD, error_line, synthesise
    from peforge.tb.network import rtl_infer

    progress.step(f"RTL: {len(x)} images through {compiled.digest()}")
    rtl, stats = rtl_infer(compiled, x)
    equal = int(np.sum(np.all(rtl == golden, axis=1)))
    progress.step(f"synthesis for {target}")
    record = {"label": f"{scheme} {compiled.folding.text()}", "pe": "network",
              "params": {"scheme": scheme, "folding": compiled.folding.to_list(),
                         "network_digest": compiled.network.digest()},
              "digest": compiled.digest(), "wrapped": True, "synth": None,
              "scheme": scheme, "kind": kind, "target": target, "images": len(x), "rtl_equal": equal,
              "interval": stats.interval, "predicted_interval": compiled.interval, "latency": stats.latency,
              "multipliers": sum(p.multipliers for p in compiled.plans), "busy": compiled.busy(stats.interval),
              "weight_bits": sum(p.weight_bits for p in compiled.plans), "inferences_per_s": None}
    entry = synthesise(compiled, target, seeds=tuple(seeds), wrap=True)
    if not entry["placed"]:  # one failed design must not lose the rest of the table
        record["error"] = error_line(entry["error"])
    else:
        record.update(wrapped=entry["wrapped"], synth={k: entry[k] for k in RECORD})
        if target.startswith("ice40"):
            record["lc"] = entry["logic_cells"]
        if entry["fmax_mhz"]:
            record["inferences_per_s"] = entry["fmax_mhz"] * 1e6 / stats.interval
    record["seconds"] = entry["seconds"]
    return {**record, "generator": entry["generator"], "cached": entry["cached"]}


def _sweep(network) -> list:
    """The foldings of the sweep, fastest first, without repeats."""
    from peforge.hw.network import CompiledNetwork, folding_at, slowest_interval

    base = CompiledNetwork.default(network).interval
    foldings = []
    for interval in [base * f for f in SWEEP] + [slowest_interval(network)]:
        folding = folding_at(network, interval)
        if folding not in foldings:
            foldings.append(folding)
    return foldings


def network_suite(seeds) -> dict:
    """The results document of the network suite (one nextpnr seed: the first of ``seeds``)."""
    from peforge.hw.network import CompiledNetwork, slowest_interval
    from peforge import digits
    from peforge.synth import TARGETS

    seeds = list(seeds)[:1]
    split = digits.load_split()
    records, study = [], {"interval_span": {}, "da4ml": {}}
    for scheme in SCHEMES:
        network = digits.build(scheme).network
        golden = network.golden(split.x_test)
        default = CompiledNetwork.default(network)
        study["interval_span"][scheme] = slowest_interval(network) / default.interval
        points = [("sweep", CompiledNetwork(network, f), TARGET) for f in _sweep(network)]
        points.append(("up5k", CompiledNetwork.default(network, TARGETS["ice40-up5k"].budget()), "ice40-up5k"))
        for n, (kind, compiled, target) in enumerate(points, 1):
            title = f"bench network {scheme} [{n}/{len(points)}] {compiled.folding.text()} on {target}"
            with Progress(title) as progress:
                record = measure_point(scheme, kind, compiled, split.x_test, golden, target=target, seeds=seeds,
                                       progress=progress)
            records.append(record)
            s = record["synth"] or {}
            print(f"  {record['label']:<28} {target:<10} interval {record['interval']:g}, "
                  f"RTL == golden {record['rtl_equal']}/{record['images']}, "
                  + (f"{s['lut']} LUT {s['dsp']} DSP {s['bram']} BRAM {s['fmax_mhz'] or 0:.1f} MHz"
                     if s else f"FAILED: {record.get('error')}"), flush=True)
    for scheme in DA4ML_SCHEMES:
        records.append(_da4ml_point(scheme, seeds, study))
    return suite_document("network", seeds, records, study)


def _da4ml_point(scheme: str, seeds, study: dict) -> dict:
    """The ``scheme`` digits network fully unrolled by da4ml (:mod:`peforge.bench.da4ml`), checked against the
    golden model with da4ml's own evaluation and synthesised in the same wrapper and flow (router2); cached like
    :func:`measure_point` by the design's digest."""
    from peforge.hw.verilog import build_root
    from peforge import digits
    from peforge.bench.da4ml import da4ml_network, synthesize_da4ml
    from peforge.synth import SynthError
    from peforge.synth_cache import error_line

    split = digits.load_split()
    network = digits.build(scheme).network
    out = build_root() / "bench-network" / f"da4ml-{scheme}"
    with Progress(f"bench network da4ml {scheme}") as progress:
        progress.step("tracing the network through da4ml")
        design = da4ml_network(network, name=f"da4ml_{scheme}", out_dir=out)
        path = build_root() / "bench-network" / f"da4ml-{design.digest}-{TARGET}-{'-'.join(map(str, seeds))}.json"
        try:
            cached = json.loads(path.read_text())
        except (OSError, ValueError):
            cached = {}
        if cached.get("digest") == design.digest:
            return {**cached, "cached": True}
        progress.step("evaluating it on the test images")
        equal = int(np.sum(np.all(design.evaluate(split.x_test) == network.golden(split.x_test), axis=1)))
        record = {"label": f"da4ml {scheme}", "pe": "da4ml", "params": {"scheme": scheme, "latency_cutoff": 5},
                  "digest": design.digest, "wrapped": True, "synth": None, "scheme": scheme, "kind": "da4ml",
                  "target": TARGET, "images": len(split.x_test), "rtl_equal": equal,
                  "latency": design.latency_cycles, "da4ml_cost": design.cost, "inferences_per_s": None}
        start = time.monotonic()
        progress.step("synthesis (yosys + nextpnr router2: many minutes)")
        try:
            result = synthesize_da4ml(design, build_dir=out / "synth", target=TARGET, seeds=tuple(seeds),
                                      progress=progress.step)
        except SynthError as exc:
            record["error"] = error_line(str(exc))
        else:
            record.update(wrapped=result.wrapped, synth=synth_record(result))
            if result.fmax_mhz:
                record["inferences_per_s"] = result.fmax_mhz * 1e6   # a whole sample per cycle
        record["seconds"] = round(time.monotonic() - start, 1)
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"  {record['label']:<28} {TARGET:<10} da4ml == golden {equal}/{len(split.x_test)}, "
          + (f"{record['synth']['lut']} LUT {record['synth']['fmax_mhz'] or 0:.1f} MHz" if record["synth"]
             else f"FAILED: {record.get('error')}"), flush=True)
    return {**record, "cached": False}


# -- the page --------------------------------------------------------------------------------------------------

def _row(d: dict) -> list[str]:
    s = d["synth"] or {}
    return [folding_text(d["params"]["folding"]), _num(d["interval"], "{:g}"), _num(d["predicted_interval"]),
            _num(d["latency"]), str(d["multipliers"]), _num(d["busy"], "{:.0%}"),
            _num(s.get("lut")), _num(s.get("ff")), _num(s.get("dsp")), _num(s.get("bram")),
            _num(s.get("fmax_mhz"), "{:.1f}"), _num(d["inferences_per_s"], "{:,.0f}"),
            f"{d['rtl_equal']}/{d['images']}", d.get("error", "")]


HEAD = ["folding (lanes x pes per layer)", "interval", "predicted", "latency", "multipliers", "busy", "LUT", "FF",
        "DSP", "BRAM", "Fmax MHz", "inferences/s", "RTL == golden", "note"]


def _span(rows: list[dict]) -> tuple[float | None, dict | None, dict | None]:
    rated = [d for d in rows if d["inferences_per_s"]]
    if len(rated) < 1:
        return None, None, None
    fast = max(rated, key=lambda d: d["inferences_per_s"])
    slow = min(rated, key=lambda d: d["inferences_per_s"])
    return fast["inferences_per_s"] / slow["inferences_per_s"], fast, slow


def _plot(doc: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for scheme in SCHEMES:
        rows = [d for d in doc["designs"] if d.get("scheme") == scheme and d.get("kind") == "sweep"
                and d["synth"] and d["inferences_per_s"]]
        if rows:
            ax.plot([d["synth"]["lut"] for d in rows], [d["inferences_per_s"] for d in rows], "o-", label=scheme)
    for d in doc["designs"]:
        if d.get("kind") == "da4ml" and d["synth"] and d["inferences_per_s"]:
            ax.scatter(d["synth"]["lut"], d["inferences_per_s"], marker="*", s=160, label=d["label"], zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ECP5-85F LUTs of the whole design (log)")
    ax.set_ylabel("inferences/s = Fmax / measured interval (log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("digits networks: folding sweep per scheme, and da4ml fully unrolled")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(doc: dict) -> str:
    designs = doc["designs"]
    lines = [header("Whole networks: folding sweeps of the digits accelerators, and da4ml unrolled", doc), ""]
    lines += ["Every row is one whole accelerator (`peforge compile`) of a digits network (`peforge e2e`): the "
              "360 test images run through it in Verilator (interval and latency counted there, logits checked "
              "against the golden model), then it is synthesised whole in the pin wrapper. `busy` is the slowest "
              "engine's useful MACs / (multiplier lanes x interval). `/rC`: a requantiser taking C cycles per "
              "result (shifts and adds, no DSP). Seed 1 only: each whole network takes minutes.", ""]
    checks = []
    for scheme in SCHEMES:
        rows = [d for d in designs if d.get("scheme") == scheme and d.get("kind") == "sweep"]
        if not rows:
            continue
        lines += [f"## {scheme}", "", markdown_table(HEAD, [_row(d) for d in rows]), ""]
        span, fast, slow = _span(rows)
        limit = doc["study"].get("interval_span", {}).get(scheme)
        got = "-" if span is None else (f"{span:.1f}x ({fast['inferences_per_s']:,.0f} to "
                                        f"{slow['inferences_per_s']:,.0f} inferences/s); the foldings allow "
                                        f"{limit:g}x in interval")
        checks.append((f"{scheme}: folding sweep spans >= {SPAN_TARGET}x in inferences/s",
                       span is not None and span >= SPAN_TARGET, got))
        first = rows[0]
        if first["busy"] is not None:   # circulant and crossbar engines have no multiplier lanes to keep busy
            checks.append((f"{scheme}: default folding's slowest engine busy >= {BUSY_TARGET:.0%}",
                           first["busy"] >= BUSY_TARGET, f"{first['busy']:.1%}"))
        checks.append((f"{scheme}: RTL == golden on every image of every folding",
                       all(d["rtl_equal"] == d["images"] for d in rows),
                       ", ".join(f"{d['rtl_equal']}/{d['images']}" for d in rows)))
    up5k = [d for d in designs if d.get("kind") == "up5k"]
    if up5k:
        head = ["network", "folding for 8 DSPs", "interval", "LUT4", "LC", "FF", "DSP", "EBR", "Fmax MHz",
                "inferences/s", "RTL == golden", "fits"]
        rows = []
        for d in up5k:
            s = d["synth"] or {}
            rows.append([d["scheme"], _row(d)[0], _num(d["interval"], "{:g}"), _num(s.get("lut")), _num(d.get("lc")),
                         _num(s.get("ff")), _num(s.get("dsp")), _num(s.get("bram")), _num(s.get("fmax_mhz"), "{:.1f}"),
                         _num(d["inferences_per_s"], "{:,.0f}"), f"{d['rtl_equal']}/{d['images']}",
                         "yes" if s else f"no: {d.get('error', '')}"])
        lines += ["## iCE40-UP5K", "", "Each network compiled with `--target ice40-up5k` (folded for 8 DSPs) and "
                  "synthesised for the UP5K (seed 1). LUT4 = SB_LUT4 cells after yosys, LC = ICESTORM_LC after "
                  "placement (a LUT, a carry and a FF share one).", "", markdown_table(head, rows), ""]
        fixed = next((d for d in up5k if d["scheme"] == "fixed"), None)
        if fixed is not None:
            s = fixed["synth"] or {}
            ok = bool(s) and (fixed.get("lc") or 1 << 30) <= UP5K_LIMITS["lc"] and s["dsp"] <= UP5K_LIMITS["dsp"] \
                and s["bram"] <= UP5K_LIMITS["bram"] and (s["fmax_mhz"] or 0) >= UP5K_LIMITS["fmax_mhz"]
            checks.append(("fixed-8 digits fits iCE40-UP5K (<= 5280 LC, 8 DSP, 30 EBR) at >= 24 MHz", ok,
                           f"{fixed.get('lc')} LC, {s.get('dsp')} DSP, {s.get('bram')} EBR, "
                           f"{_num(s.get('fmax_mhz'), '{:.1f}')} MHz" if s else fixed.get("error", "")))
    da4ml = [d for d in designs if d.get("kind") == "da4ml"]
    if da4ml:
        head = ["design", "latency (cycles)", "LUT", "FF", "DSP", "BRAM", "Fmax MHz", "inferences/s (II = 1)",
                "da4ml == golden", "vs the fastest folded (inferences/s, LUT)"]
        rows = []
        for d in da4ml:
            s = d["synth"] or {}
            folded = [x for x in designs if x.get("scheme") == d["scheme"] and x.get("kind") == "sweep"
                      and x["inferences_per_s"]]
            best = max(folded, key=lambda x: x["inferences_per_s"], default=None)
            versus = "-" if not (best and d["inferences_per_s"] and s) else (
                f"{d['inferences_per_s'] / best['inferences_per_s']:.1f}x, {s['lut'] / best['synth']['lut']:.1f}x")
            rows.append([d["label"], _num(d.get("latency")), _num(s.get("lut")), _num(s.get("ff")),
                         _num(s.get("dsp")), _num(s.get("bram")), _num(s.get("fmax_mhz"), "{:.1f}"),
                         _num(d["inferences_per_s"], "{:,.0f}"), f"{d['rtl_equal']}/{d['images']}",
                         versus if s else f"synthesis failed: {d.get('error', '')}"])
        lines += ["## da4ml: the same networks fully unrolled", "",
                  "da4ml (`peforge/bench/da4ml.py`) turns each network into one combinational adder graph with "
                  "constant weights and the network's exact requantisation, pipelined by da4ml; it takes a whole "
                  "sample per cycle (II = 1). Checked against the golden model with da4ml's own evaluation of the "
                  "traced graph on the 360 test images; synthesised in the same wrapper and flow.", "",
                  markdown_table(head, rows), ""]
    lines += ["## Targets", "", target_table(checks), ""]
    if any(d.get("kind") == "sweep" and d["synth"] for d in designs):
        lines += ["![inferences/s against LUTs](network.png)", ""]
    return "\n".join(lines)


def figures(doc: dict, out_dir: Path) -> list[Path]:
    """The page's plot, ``network.png`` in ``out_dir``, drawn from the results document."""
    if not any(d.get("kind") == "sweep" and d["synth"] for d in doc["designs"]):
        return []
    path = Path(out_dir) / "network.png"
    _plot(doc, path)
    return [path]
