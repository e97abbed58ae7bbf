"""Bench of the unrolled constant-weight engines (issue 32): the digits SP2 network as adder graphs, fully unrolled
and digit-serial (``reuse``), beside da4ml's unrolled design of the same network.

Each point is :class:`hw.network.UnrolledNetwork` of the digits network (:func:`peforge.digits.build`) with the
smallest exact floor requantisation per output (:func:`minimal_requants`, the one da4ml's row uses), checked
against :meth:`sw.network.Network.golden` on every test image in Verilator (:func:`peforge.tb.unrolled.rtl_unrolled`)
and synthesised in the pin wrapper with the flow of da4ml's row (ECP5-85F, nextpnr ``--router router2``,
:func:`synth.synthesize`). Results are cached per design digest under ``build/bench-unrolled/`` so an
interrupted run resumes.

Run: ``peforge bench unrolled`` (a suite of ``make bench``: every point, each seed stopped after
:data:`peforge.bench.common.SEED_TIMEOUT_S`) or ``python -m peforge.bench.unrolled [--points sp2:1:1,sp2:2:1:skid]
[--seeds 1] [--seed-timeout 900]`` (``scheme:reuse:levels_per_stage[:skid]``); both write
``docs/results/unrolled.json`` and render ``docs/results/unrolled.md``.

The points are the standalone :class:`hw.network.unrolled.UnrolledNetwork` (a whole vector per beat, as da4ml's
design takes it), not a compiled accelerator: a compiled network's unrolled layers (``impl="unrolled"`` in the
engine table, :class:`hw.network.engines.UnrolledEngine`) take their inputs one element per cycle, so their interval
is at least the features they load, a different point from da4ml's II = 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from peforge.bench.common import SEED_TIMEOUT_S, TARGET, header, suite_document
from peforge.report import dump_results, markdown_table
from peforge.report import or_dash as _num
from peforge.report import synth_record

__all__ = ["minimal_requants", "unrolled_point", "unrolled_suite", "bench_suite", "render", "POINTS", "DA4ML"]

#: (scheme, reuse, levels_per_stage, skid) of the suite's points.
POINTS = (("sp2", 1, 2, False), ("sp2", 1, 1, False), ("sp2", 2, 1, False), ("sp2", 5, 1, False),
          ("sp2", 8, 1, False), ("sp2", 2, 1, True), ("fixed", 1, 1, False))
#: The scheme of the digits network the suite unrolls.
SCHEME = "sp2"
#: Where the committed results live.
RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"


def minimal_requants(network) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per layer, :func:`peforge.bench.da4ml.floor_requant`'s smallest exact floor formula over the accumulators
    the previous layer's outputs can produce (the ranges chained from the network input, as da4ml's trace does)."""
    from peforge.bench.da4ml import acc_bounds, floor_requant

    n = network.in_features
    x_lo, x_hi = (np.full(n, v, np.int64) for v in network.input.range)
    out = []
    for i, layer in enumerate(network.layers):
        w = layer.weights.dense()
        acc_lo, acc_hi = acc_bounds(w, x_lo, x_hi)
        m, c, s = floor_requant(layer, acc_lo, acc_hi, index=i)
        out.append((m, c, s))
        lo, hi = layer.out_range
        x_lo = np.clip((acc_lo * m + c) >> s, lo, hi)
        x_hi = np.clip((acc_hi * m + c) >> s, lo, hi)
    return out


def _digest(verilog: str, seeds) -> str:
    """Names a point: the Verilog synthesis reads (the design in its pin wrapper) and the seeds, so that a change
    elsewhere in ``hw/`` that leaves this design alone does not synthesise it again."""
    return hashlib.sha256(f"{verilog}\n{TARGET} {list(seeds)} router2".encode()).hexdigest()[:12]


def unrolled_point(network, *, reuse: int, levels_per_stage: int, skid: bool = False, seeds=(1,), x_test=None,
                   scheme: str = SCHEME, label: str | None = None, seed_timeout_s: float | None = None,
                   progress=print) -> dict:
    """One design (the digits network of ``scheme``): RTL == golden on ``x_test`` (when given), then synthesis
    (each seed stopped after ``seed_timeout_s``, None: no limit); cached by digest."""
    from peforge.hw.network.unrolled import UnrolledNetwork
    from peforge.hw.verilog import build_root, to_verilog
    from peforge.synth import PinWrapper, SynthError, synthesize

    requants = minimal_requants(network)
    start = time.monotonic()
    design = UnrolledNetwork(network, reuse=reuse, levels_per_stage=levels_per_stage, requants=requants, skid=skid)
    build_seconds = time.monotonic() - start
    name = (f"unrolled_{scheme}_r{reuse}" + (f"_l{levels_per_stage}" if levels_per_stage != 2 else "")
            + ("_skid" if skid else ""))
    digest = _digest(to_verilog(PinWrapper(design), name), seeds)
    root = build_root() / "bench-unrolled"
    root.mkdir(parents=True, exist_ok=True)
    cache = root / f"{digest}.json"
    try:
        cached = json.loads(cache.read_text())
    except (OSError, ValueError):
        cached = {}
    if cached.get("digest") == digest and (x_test is None or cached.get("rtl_equal") is not None):
        return {**_schema(cached), "cached": True}
    record = {"label": label or (f"unrolled {scheme} r={reuse}, {levels_per_stage} levels/stage"
                                 + (", skid" if skid else "")),
              "kind": "unrolled", "scheme": scheme, "skid": skid,
              "reuse": reuse, "levels_per_stage": levels_per_stage, "digest": digest, "target": TARGET,
              "interval": design.interval, "latency": design.latency, "adders": design.adders,
              "adder_bits": design.adder_bits(), "graph_seconds": round(build_seconds, 1),
              "digit_bits": [u.digit_bits for u in design.layers], "synth": None, "inferences_per_s": None,
              "rtl_equal": cached.get("rtl_equal"), "images": cached.get("images")}
    if x_test is not None and record["rtl_equal"] is None:
        from peforge.tb.unrolled import rtl_unrolled

        progress(f"  RTL: {len(x_test)} images through the unrolled network (Verilator)")
        got, stats = rtl_unrolled(network, x_test, reuse=reuse, levels_per_stage=levels_per_stage,
                                  requants=requants, skid=skid)
        record["rtl_equal"] = int(np.sum(np.all(got == network.golden(x_test), axis=1)))
        record["images"] = len(x_test)
        record["measured_interval"] = stats["interval"]
        record["measured_latency"] = stats["latency"]
    if cached.get("digest") == digest and (cached.get("synth") is not None or "error" in cached):
        # synthesised already (or stopped at the time limit: not tried again; delete the cache file to retry)
        record.update({k: cached[k] for k in ("synth", "inferences_per_s", "seconds", "pnr_seconds", "wrapped",
                                              "error", "packed") if k in cached})
    else:
        progress(f"  synthesis of {record['label']} (yosys + nextpnr router2: minutes)")
        start = time.monotonic()
        steps = {}

        def step(text):
            steps.setdefault(text.split()[0], time.monotonic())   # "verilog", "yosys", "nextpnr seed 1"
            progress(f"    {text}")

        try:
            result = synthesize(design, name=name, target=TARGET,
                                build_dir=root / f"{scheme}-r{reuse}-l{levels_per_stage}{'-skid' if skid else ''}",
                                seeds=tuple(seeds),
                                wrap=True, nextpnr_args=("--router", "router2"), progress=step,
                                seed_timeout_s=seed_timeout_s)
        except SynthError as exc:
            record["error"] = str(exc).splitlines()[0] if str(exc) else "synthesis failed"
            record["packed"] = _packed(root / f"{scheme}-r{reuse}-l{levels_per_stage}{'-skid' if skid else ''}")
        else:
            record.update(wrapped=result.wrapped, synth=synth_record(result))
            if result.fmax_mhz:
                record["inferences_per_s"] = result.fmax_mhz * 1e6 / design.interval
        record["seconds"] = round(time.monotonic() - start, 1)
        if "nextpnr" in steps:     # place and route of every seed (one seed: that seed's)
            record["pnr_seconds"] = round(time.monotonic() - steps["nextpnr"], 1)
    cache.write_text(json.dumps(_schema(record), indent=1) + "\n")
    return {**_schema(record), "cached": False}


def _packed(build_dir: Path) -> dict | None:
    """LUTs and FFs of nextpnr's packing report (before placement) of seed 1, for a design that did not route."""
    import re

    try:
        log = (build_dir / "nextpnr_seed1.log").read_text()
    except OSError:
        return None
    found = {key: re.search(rf"{cell}:\s+(\d+)/", log) for key, cell in (("lut", "TRELLIS_COMB"), ("ff", "TRELLIS_FF"))}
    return {key: int(m.group(1)) for key, m in found.items() if m} or None


def _schema(record: dict) -> dict:
    """The fields every results row has (:func:`peforge.report.validate_results`)."""
    params = {"scheme": record["scheme"], "reuse": record["reuse"], "levels_per_stage": record["levels_per_stage"],
              "skid": record.get("skid", False)}
    return {"pe": "unrolled", "params": params, "wrapped": True, **record}


def _da4ml_rows() -> list[dict]:
    """da4ml's committed row(s) of ``docs/results/network.json`` (measured by ``make bench``, not here)."""
    try:
        doc = json.loads((RESULTS / "network.json").read_text())
    except (OSError, ValueError):
        return []
    return [{**d, "source": "docs/results/network.json"} for d in doc.get("designs", []) if d.get("kind") == "da4ml"]


#: da4ml's committed numbers for the SP2 digits network (docs/results/network.json), for the comparison.
DA4ML = {"lut": 26907, "fmax_mhz": 46.5, "inferences_per_s": 46.5e6}


def bench_suite(seeds) -> dict:
    """The suite as ``make bench`` runs it (:data:`peforge.bench.run.SUITES`): every point, each nextpnr seed stopped
    after :data:`peforge.bench.common.SEED_TIMEOUT_S`."""
    doc = unrolled_suite(tuple(seeds), POINTS, SEED_TIMEOUT_S)
    doc["provenance"] = "measured by `make bench` (`peforge bench unrolled`) on the date and git revision above"
    return doc


def unrolled_suite(seeds=(1,), points=POINTS, seed_timeout_s: float | None = None) -> dict:
    """The suite's results document: every point of ``points`` and da4ml's committed row."""
    from peforge import digits

    split = digits.load_split()
    networks = {}
    designs = []
    for scheme, reuse, levels, skid in points:
        if scheme not in networks:
            networks[scheme] = digits.build(scheme).network
        print(f"bench unrolled: {scheme}, reuse {reuse}, {levels} adder levels per stage"
              + (", skid" if skid else ""), flush=True)
        d = unrolled_point(networks[scheme], scheme=scheme, reuse=reuse, levels_per_stage=levels, skid=skid,
                           seeds=seeds, x_test=split.x_test, seed_timeout_s=seed_timeout_s)
        print(f"  {d['label']}: RTL == golden {d.get('rtl_equal')}/{d.get('images')}, "
              + (f"{d['synth']['lut']} LUT, {d['synth']['fmax_mhz'] or 0:.1f} MHz" if d["synth"] else
                 f"no synthesis: {d.get('error')}"), flush=True)
        designs.append(d)
    doc = suite_document("unrolled", seeds, designs + _da4ml_rows(),
                         {"network_digests": {k: n.digest() for k, n in networks.items()}})
    doc["provenance"] = ("measured by `python -m peforge.bench.unrolled` on the date and git revision above; P&R "
                         "times of points synthesised before the bench timed its steps are the time between the yosys "
                         "and nextpnr logs' last writes")
    return doc


def render(doc: dict) -> str:
    """The Markdown page of a results document of this suite."""
    title = "Unrolled constant-weight engines: the digits networks as adder graphs, beside da4ml"
    head = header(title, doc)
    if doc["provenance"].startswith("measured by `python -m peforge.bench.unrolled`"):
        head = head.replace("Generated by `make bench`", "Generated by `python -m peforge.bench.unrolled`")
    lines = [head, ""]
    head = ["design", "reuse", "II (cycles)", "latency (cycles)", "adders", "LUT", "FF", "DSP", "Fmax MHz",
            "inferences/s", "P&R s", "synthesis in all s", "RTL == golden"]
    rows = []
    for d in doc["designs"]:
        s = d.get("synth") or {}
        ips = d.get("inferences_per_s")
        packed = d.get("packed") or {}
        lut = _num(s.get("lut")) if s else (f"{packed['lut']} (packed, not routed)" if "lut" in packed else "-")
        ff = _num(s.get("ff")) if s else (f"{packed['ff']} (packed)" if "ff" in packed else "-")
        rows.append([d["label"], str(d.get("reuse", 1)), str(d.get("interval", 1)), _num(d.get("latency")),
                     _num(d.get("adders")), lut, ff, _num(s.get("dsp")),
                     f"{s['fmax_mhz']:.1f}" if s.get("fmax_mhz") else "-", f"{ips:,.0f}" if ips else "-",
                     _num(d.get("pnr_seconds")), _num(d.get("seconds")), f"{d.get('rtl_equal')}/{d.get('images')}" if d.get("images") else "-"])
    lines += [markdown_table(head, rows), ""]
    lines += ["da4ml's row is its committed measurement (`docs/results/network.json`, `make bench`), same wrapper "
              "and flow (ECP5-85F, pin wrapper, nextpnr router2); its 'RTL == golden' is da4ml's own evaluation of "
              "its traced graph. The unrolled rows are checked in Verilator on every test image. II is the cycles "
              "between samples; inferences/s = Fmax / II. 'P&R s' is nextpnr's wall time, 'synthesis in all' adds the "
              "Verilog and yosys (both on a 2-core machine shared with other work)."]
    failed = [d for d in doc["designs"] if not d.get("synth") and d.get("error")]
    if failed:
        lines += ["", "Not routed:", ""]
    lines += [f"- {d['label']}: {d['error'].split(' (logs:')[0]}" for d in failed]
    lines += [""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default=",".join(f"{s}:{r}:{l_}" + (":skid" if k else "") for s, r, l_, k in POINTS),
                        help="comma-separated scheme:reuse:levels_per_stage[:skid]")
    parser.add_argument("--seed-timeout", type=float, default=None, help="seconds of nextpnr per seed at most")
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--out-dir", default=str(RESULTS))
    args = parser.parse_args(argv)
    points = []
    for p in filter(None, args.points.split(",")):
        parts = p.split(":")
        points.append((parts[0], int(parts[1]), int(parts[2]), parts[3:] == ["skid"]))
    seeds = tuple(int(s) for s in args.seeds.split(","))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = unrolled_suite(seeds, points, args.seed_timeout)
    (out / "unrolled.json").write_text(dump_results(doc))
    (out / "unrolled.md").write_text(render(doc))
    print(f"wrote {out / 'unrolled.json'} and {out / 'unrolled.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
