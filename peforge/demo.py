"""``make demo``: every registered PE generated, simulated against golden and synthesised; one table. Then
the end-to-end digits classifiers (``peforge e2e``) on the generated RTL."""

from __future__ import annotations

import time
from pathlib import Path

from hw import registry
from hw.verilog import build_root, lint, write_design
from peforge.e2e import run_e2e
from peforge.progress import Progress
from peforge.report import markdown_table, params_label, text_table

__all__ = ["run_demo"]


def run_demo(*, vectors: int = 200, target: str = "ecp5-85k", out_dir: Path | None = None) -> int:
    from synth import synthesize_pe
    from tb.runner import random_sim

    out_dir = out_dir or build_root() / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    header = ["PE", "parameters", "lint", "sim vs golden", "vectors", "cycles", "cycles/s",
              "LUT", "FF", "DSP", "BRAM", "Fmax MHz", "MACs/cycle", "wrapped"]
    rows, failed, digests, labels = [], [], {}, {}
    start = time.monotonic()
    for pe in registry.REGISTRY.values():
        if pe.source == "test":
            continue
        params = pe.default_params()
        with Progress(f"demo {pe.name}") as progress:
            progress.step("generate + lint")
            write_design(pe, params, out_dir / pe.name)
            lint(out_dir / pe.name / f"{pe.top}.v", pe.top)
            sim = random_sim(pe, params, vectors=vectors, seed=1, waves=False, p_valid=0.5,
                                 p_ready=0.5, progress=progress)
            progress.step(f"synthesis for {target}")
            result = synthesize_pe(pe, params, target=target, seeds=(1,), wrap=None, freq=None,
                               progress=progress)
        if not sim["passed"]:
            failed.append(f"{pe.name}: {sim.get('error') or 'simulation failed'} (log: {sim['log']})")
        rate = sim.get("cycles", 0) / sim["seconds"] if sim.get("seconds") else 0
        digests[pe.name], labels[pe.name] = params.digest(), params_label(params)
        rows.append([pe.name, labels[pe.name], "clean", "PASS" if sim["passed"] else "FAIL",
                     str(sim.get("vectors", 0)), str(sim.get("cycles", 0)), f"{rate:,.0f}",
                     str(result.lut), str(result.ff), str(result.dsp), str(result.bram),
                     "-" if result.fmax_mhz is None else f"{result.fmax_mhz:.1f}",
                     str(getattr(params, "macs_per_cycle", "-")), "yes" if result.wrapped else "no"])
        print(f"{pe.name}: sim {rows[-1][3]}, {result.lut} LUT, {rows[-1][11]} MHz", flush=True)

    elapsed = time.monotonic() - start
    print()
    # the terminal table names each configuration by its digest (the build directory's name);
    # report.md and the lines below it spell the parameters out
    print(text_table(["PE", "config"] + header[2:], [[r[0], digests[r[0]]] + r[2:] for r in rows]))
    for name, digest in digests.items():
        print(f"  {name} {digest}: {labels[name]}")
    note = (f"Random vectors (lengths 1..max_len) with random stalls on both streams (p = 0.5), "
            f"checked bit for bit against the golden model in Verilator; synthesis with yosys + "
            f"nextpnr for {target}, seed 1. Default parameters of each PE. Total {elapsed:.0f} s.")
    report = "# peforge demo\n\n" + markdown_table(header, rows) + "\n\n" + note + "\n"
    (out_dir / "report.md").write_text(report)
    print(f"\n{note}\nreport: {out_dir / 'report.md'}")
    for line in failed:
        print(f"FAILED {line}")
    print()
    e2e_failed = run_e2e(out_dir=out_dir)  # e2e.md, e2e.json, e2e.png next to report.md
    return 1 if failed or e2e_failed else 0
