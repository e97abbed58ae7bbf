"""``make demo``: every registered PE generated, simulated against golden and synthesised; one table. Then
the end-to-end digits classifiers (``peforge e2e``): every scheme's whole accelerator simulated against golden on
all 360 test images, and :data:`DEMO_SYNTH`'s synthesised on ECP5-85F, with their table and plot (the rest of
``peforge e2e``'s synthesis takes longer than a first run should: ``peforge e2e`` does it all)."""

from __future__ import annotations

import time
from pathlib import Path

from peforge.hw import registry
from peforge.hw.verilog import build_root, lint, write_design
from peforge.e2e import run_e2e
from peforge.progress import Progress
from peforge.report import markdown_table, params_label, text_table

__all__ = ["run_demo", "DEMO_SYNTH"]

#: The digits accelerators ``make demo`` places and routes (SP2 against its fixed-point baseline).
DEMO_SYNTH = ("fixed", "sp2")


def _synthesise(pe, params, target):
    """One PE's place and route in the synthesis thread: the result and its seconds, or the error."""
    from peforge.synth import SynthError, synthesize_pe

    begin = time.monotonic()
    try:
        result = synthesize_pe(pe, params, target=target, seeds=(1,), wrap=None, freq=None)
    except SynthError as exc:
        print(f"synthesis of {pe.name} for {target} FAILED: {exc}", flush=True)
        return None, time.monotonic() - begin, str(exc).splitlines()[0]
    seconds = time.monotonic() - begin
    print(f"{pe.name}: synthesised for {target}: {result.lut} LUT, {result.ff} FF, {result.dsp} DSP, "
          f"{'-' if result.fmax_mhz is None else f'{result.fmax_mhz:.1f}'} MHz ({seconds:.0f} s)", flush=True)
    return result, seconds, None


def run_demo(*, vectors: int = 200, target: str = "ecp5-85k", out_dir: Path | None = None) -> int:
    """Every PE generated, linted, simulated against golden (in the main thread) and placed and routed (in a
    second thread, one PE at a time, largest first, so the two cores share the work); then ``peforge e2e`` with
    :data:`DEMO_SYNTH` synthesised. Writes ``report.md`` and the e2e files to ``out_dir`` (``build/demo``)."""
    from concurrent.futures import ThreadPoolExecutor

    from peforge.synth.flow import warm_tools
    from peforge.tb.runner import random_sim

    out_dir = out_dir or build_root() / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    with Progress("demo: preparing the synthesis tools") as progress:
        warm_tools(progress=progress.step)
    header = ["PE", "parameters", "lint", "sim vs golden", "vectors", "cycles", "cycles/s",
              "LUT", "FF", "DSP", "BRAM", "Fmax MHz", "MACs/cycle", "wrapped", "P&R s"]
    pes = [pe for pe in registry.REGISTRY.values() if pe.source != "test"]
    params = {pe.name: pe.default_params() for pe in pes}
    rows, failed, digests, labels, sims = [], [], {}, {}, {}
    start = time.monotonic()
    # largest first: the circulant PE's place and route is most of the synthesis time
    order = sorted(pes, key=lambda pe: -getattr(params[pe.name], "macs_per_cycle", 0) or 0)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth") as pool:
        synths = {pe.name: pool.submit(_synthesise, pe, params[pe.name], target) for pe in order}
        for pe in pes:
            with Progress(f"demo {pe.name}") as progress:
                progress.step("generate + lint")
                write_design(pe, params[pe.name], out_dir / pe.name)
                lint(out_dir / pe.name / f"{pe.top}.v", pe.top)
                sim = random_sim(pe, params[pe.name], vectors=vectors, seed=1, waves=False, p_valid=0.5,
                                 p_ready=0.5, progress=progress)
            sims[pe.name] = sim
            print(f"{pe.name}: sim {'PASS' if sim['passed'] else 'FAIL'} ({sim.get('vectors', 0)} vectors, "
                  f"{sim.get('cycles', 0)} cycles, random stalls on both streams)", flush=True)
        print("\nend to end: the digits classifiers as whole accelerators (while the PEs place and route)",
              flush=True)
        e2e_failed = run_e2e(out_dir=out_dir, synth=DEMO_SYNTH, up5k=False)  # e2e.md, .json, .png
        with Progress("demo: waiting for the PEs' place and route") as progress:
            progress.step(", ".join(name for name, f in synths.items() if not f.done()) or "done")
            results = {name: f.result() for name, f in synths.items()}
    for pe in pes:
        sim, (result, seconds, error) = sims[pe.name], results[pe.name]
        if not sim["passed"]:
            failed.append(f"{pe.name}: {sim.get('error') or 'simulation failed'} (log: {sim['log']})")
        if error:
            failed.append(f"{pe.name}: synthesis failed: {error}")
        rate = sim.get("cycles", 0) / sim["seconds"] if sim.get("seconds") else 0
        digests[pe.name], labels[pe.name] = params[pe.name].digest(), params_label(params[pe.name])
        res = (["-"] * 5 if result is None else
               [str(result.lut), str(result.ff), str(result.dsp), str(result.bram),
                "-" if result.fmax_mhz is None else f"{result.fmax_mhz:.1f}"])
        rows.append([pe.name, labels[pe.name], "clean", "PASS" if sim["passed"] else "FAIL",
                     str(sim.get("vectors", 0)), str(sim.get("cycles", 0)), f"{rate:,.0f}", *res,
                     str(getattr(params[pe.name], "macs_per_cycle", "-")),
                     "-" if result is None else "yes" if result.wrapped else "no", f"{seconds:.0f}"])

    elapsed = time.monotonic() - start
    print()
    # the terminal table names each configuration by its digest (the build directory's name);
    # report.md and the lines below it spell the parameters out
    print(text_table(["PE", "config"] + header[2:], [[r[0], digests[r[0]]] + r[2:] for r in rows]))
    for name, digest in digests.items():
        print(f"  {name} {digest}: {labels[name]}")
    note = (f"Random vectors (lengths 1..max_len) with random stalls on both streams (p = 0.5), "
            f"checked bit for bit against the golden model in Verilator; synthesis with yosys + "
            f"nextpnr for {target}, seed 1 (P&R s: yosys + nextpnr, in a thread beside the simulations). Default "
            f"parameters of each PE. Whole accelerators: e2e.md, e2e.json, e2e.png. Total {elapsed:.0f} s.")
    report = "# peforge demo\n\n" + markdown_table(header, rows) + "\n\n" + note + "\n"
    (out_dir / "report.md").write_text(report)
    print(f"\n{note}\nreport: {out_dir / 'report.md'}")
    for line in failed:
        print(f"FAILED {line}")
    return 1 if failed or e2e_failed else 0
