"""``peforge e2e``: compressed digits classifiers whose every multiply-accumulate runs in the generated RTL.

For each scheme (:data:`sw.models.SCHEMES`) the runner trains the model (seeded), exports its integer network
(:func:`sw.models.build`), runs the 360 test images through the golden pipeline and through the RTL (every
layer's products on its PE in Verilator, one build per PE configuration, all images in one simulation per
layer), and reports float / golden / RTL accuracy, RTL == golden agreement, weight storage, cycles and wall
time. It writes ``e2e.md``, ``e2e.json`` and ``e2e.png`` (accuracy against weight bits and against the ECP5
LUTs and DSPs of the PEs used) to ``build/demo/`` (or ``out_dir``).

ECP5 resources are not synthesised here: they come from the benchmark pages ``docs/results/*.md``
(``make bench``) when a page has the configuration's row, else from :data:`MEASURED` (single
``peforge synth`` runs, documented there).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from peforge.progress import Progress
from peforge.report import markdown_table, params_label, text_table

__all__ = ["run_e2e", "pe_resources", "MEASURED"]

ROOT = Path(__file__).resolve().parent.parent

#: What each scheme is, for the tables.
DESCRIPTIONS = {
    "float": "float32 baseline (torch)",
    "fixed8": "8-bit fixed point (QAT)",
    "sp2": "4-bit SP2 (QAT)",
    "msq": "Mix and Match: 1/2 rows SP2-4, 1/2 fixed-4 (QAT)",
    "nm": "2:4 sparse, 8-bit (SR-STE)",
    "circulant": "block-circulant k=8 hidden layer, fixed-8 classifier",
    "forms": "FORMS polarised, 8-bit magnitudes, ideal ADC",
    "forms-nonideal": "FORMS on a non-ideal array (software only)",
}

#: ECP5-85F resources of PE configurations that no ``docs/results`` page holds, from one
#: ``peforge synth <pe> --config <params.json> --target ecp5-85k --seeds 1`` run each (in the pin wrapper;
#: 2026-11-21, the hw/ code of that day): ``(pe, params digest) -> (LUT, DSP)``. A changed parameter set
#: changes the digest, and the row then shows "-" until it is measured again.
MEASURED: dict[tuple[str, str], tuple[int, int]] = {
    # k = 8 parallel, 8-bit unsigned acts, 8-bit spectra, guard 4, prod_shift 4, max_q 8: 3085 FF, 140.8 MHz
    ("circulant-fft", "04a76eade151"): (2155, 11),
    # 64 x 16, 8-row sub-arrays, 8-bit inputs and magnitudes in 2-bit cells, lossless 5-bit ADC: the
    # controller AND the ideal-array emulator (8192 cell flip-flops and the column adders, which a real
    # ReRAM array replaces); 11642 FF, 55.9 MHz
    ("crossbar", "95b4aa68fc6e"): (21373, 0),
}


def _bench_key(pe: str, params) -> tuple[str, str, int] | None:
    """``(page, design label, lanes)`` of the ``make bench`` row for a PE configuration, if it has one.

    The bench rows are sized for ``max_len = 4096`` and signed activations; the e2e PEs for ``max_len = 64``
    and unsigned ones, so the accumulator is a few bits narrower: the row is the nearest measured design.
    """
    if pe == "sp2-mac":
        return "sp2.md", f"SP2-{params.fmt.bits} (m1={params.fmt.m1})", params.lanes
    if pe == "fixed-mac":
        return "sp2.md", f"fixed-{params.w_bits} {'DSP' if params.dsp else 'LUT'}", params.lanes
    if pe == "nm-sparse":
        return ("nm.md", f"{params.fmt.n}:{params.fmt.m} x{params.groups} groups {'DSP' if params.dsp else 'LUT'}",
                params.lanes)
    return None


def _bench_rows(page: Path) -> dict[tuple[str, int], tuple[int, int]]:
    """``(design, lanes) -> (LUT, DSP)`` from the first table of a results page that has each row."""
    rows: dict[tuple[str, int], tuple[int, int]] = {}
    columns = None
    for line in page.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if not cells:
            columns = None
            continue
        if {"design", "lanes", "LUT", "DSP"} <= set(cells):
            columns = {name: i for i, name in enumerate(cells)}
            continue
        if columns is None or set(line) <= set("|-: "):
            continue
        try:
            key = (cells[columns["design"]], int(cells[columns["lanes"]]))
            rows.setdefault(key, (int(cells[columns["LUT"]]), int(cells[columns["DSP"]])))
        except (ValueError, IndexError):
            continue
    return rows


def pe_resources(pe: str, params, results_dir: Path | None = None) -> tuple[int, int, str] | None:
    """``(LUT, DSP, source)`` of one PE configuration on ECP5-85F, or None when nothing is measured."""
    results_dir = results_dir or ROOT / "docs" / "results"
    key = _bench_key(pe, params)
    if key is not None and (results_dir / key[0]).is_file():
        found = _bench_rows(results_dir / key[0]).get(key[1:])
        if found is not None:
            return found[0], found[1], f"docs/results/{key[0]}: {key[1]}, {key[2]} lanes"
    measured = MEASURED.get((pe, params.digest()))
    if measured is not None:
        return measured[0], measured[1], f"peforge synth {pe} {params.digest()}"
    return None


def _scheme_resources(pes) -> tuple[int | None, int | None, list[str]]:
    """Summed LUT/DSP of a network's PEs (None if any is unmeasured) and where each number came from."""
    lut = dsp = 0
    sources = []
    for name, params in pes:
        found = pe_resources(name, params)
        if found is None:
            sources.append(f"{name} {params.digest()}: not measured")
            lut = dsp = None
            continue
        if lut is not None:
            lut, dsp = lut + found[0], dsp + found[1]
        sources.append(f"{name} {params.digest()}: {found[2]}")
    return lut, dsp, sources


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _row(r: dict) -> list[str]:
    bits = r["weight_bits"]
    return [r["scheme"], " + ".join(r["pes"]) or "-", _pct(r["float_acc"]), _pct(r.get("compressed_float_acc")),
            _pct(r.get("golden_acc")), _pct(r.get("rtl_acc")),
            "-" if r.get("agree") is None else f"{r['agree']}/{r['images']}", str(bits),
            f"{r['float32_bits'] / bits:.1f}x", "-" if r.get("cycles") is None else str(r["cycles"]),
            "-" if r.get("rtl_seconds") is None else f"{r['rtl_seconds']:.1f}",
            "-" if r.get("lut") is None else str(r["lut"]), "-" if r.get("dsp") is None else str(r["dsp"])]


HEADER = ["scheme", "PEs", "float %", "compressed float %", "golden %", "RTL %", "RTL == golden", "weight bits",
          "vs float32", "RTL cycles", "RTL wall s", "LUT", "DSP"]


#: One colour and marker per row of the table, the same in every panel.
_STYLE = {"float": ("black", "*"), "fixed8": ("tab:blue", "o"), "sp2": ("tab:orange", "s"),
          "msq": ("tab:green", "D"), "nm": ("tab:red", "^"), "circulant": ("tab:purple", "v"),
          "forms": ("tab:brown", "P"), "forms-nonideal": ("tab:gray", "X")}


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), sharey=True)
    panels = [("weight_bits", "weight storage (bits, log scale)", True),
              ("lut", "ECP5 LUTs of the PEs used (log scale)", True),
              ("dsp", "ECP5 DSPs (MULT18X18D) of the PEs used", False)]
    handles = {}
    for ax, (key, label, log) in zip(axes, panels):
        for r in results:
            acc = r.get("rtl_acc", r.get("golden_acc", r["float_acc"]))
            if r.get(key) is None or acc is None:
                continue
            color, marker = _STYLE.get(r["scheme"], ("tab:olive", "o"))
            handles[r["scheme"]] = ax.scatter(r[key], 100 * acc, s=70, c=color, marker=marker, alpha=0.85,
                                              label=r["scheme"])
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("test accuracy on 360 digits (%)")
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), frameon=False)
    fig.suptitle("peforge e2e: MLP 64-32-10 on sklearn digits; compressed schemes: RTL accuracy "
                 "(every multiply-accumulate in the generated RTL); float and forms-nonideal: software")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_scheme(scheme: str, *, float_acc: float, progress=None) -> dict:
    """Train, export and run one scheme (golden and RTL); the result row as a dict."""
    from sw import models

    split = models.load_split()
    step = progress.step if progress else (lambda text: None)
    step("training (seeded, one CPU thread)")
    net = models.build(scheme)
    step("golden inference")
    golden = net.golden_logits(split.x_test)
    start = time.perf_counter()
    rtl, cycles = net.rtl_logits(split.x_test, step=step)
    seconds = time.perf_counter() - start
    lut, dsp, sources = _scheme_resources(net.pes)
    row = {
        "scheme": scheme, "description": DESCRIPTIONS[scheme], "pes": [name for name, _ in net.pes],
        "params": [{"pe": name, "digest": p.digest(), "label": params_label(p), "params": p.to_dict()}
                   for name, p in net.pes],
        "images": len(split.y_test), "float_acc": float_acc, "compressed_float_acc": net.float_accuracy,
        "golden_acc": models.accuracy(golden, split.y_test), "rtl_acc": models.accuracy(rtl, split.y_test),
        "agree": int(np.sum(golden.argmax(1) == rtl.argmax(1))), "logits_equal": bool(np.array_equal(golden, rtl)),
        "weight_bits": net.weight_bits, "float32_bits": net.float32_bits, "cycles": int(cycles),
        "rtl_seconds": seconds, "train_seconds": net.train_seconds, "lut": lut, "dsp": dsp,
        "resource_sources": sources,
    }
    if scheme == "forms":
        row["nonideal"] = {"settings": dict(models.NONIDEAL),
                           "golden_acc": models.accuracy(net.nonideal_logits(split.x_test), split.y_test)}
    return row


def run_e2e(schemes=None, *, out_dir: Path | None = None) -> int:
    """Run ``schemes`` (default: all), print the table, write ``e2e.md``/``e2e.json``/``e2e.png``.

    Returns 0 when the RTL gives the golden predictions for every image of every scheme, else 1.
    """
    from sw import models
    from tb.runner import build_root

    schemes = list(schemes or models.SCHEMES)
    unknown = [s for s in schemes if s not in models.SCHEMES]
    if unknown:
        raise ValueError(f"Scheme must be one of {', '.join(models.SCHEMES)}, not {unknown[0]!r}")
    out_dir = Path(out_dir) if out_dir else build_root() / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    split = models.load_split()
    start = time.monotonic()
    with Progress("e2e float baseline") as progress:
        progress.step("training (seeded, one CPU thread)")
        float_acc, float_seconds = models.train_float()
    dense_bits = 32 * (64 * models.HIDDEN + models.HIDDEN * 10)
    results = [{"scheme": "float", "description": DESCRIPTIONS["float"], "pes": [], "images": len(split.y_test),
                "float_acc": float_acc, "weight_bits": dense_bits, "float32_bits": dense_bits,
                "train_seconds": float_seconds}]
    print(f"float: {100 * float_acc:.2f} % (torch, trained in {float_seconds:.1f} s)", flush=True)
    for n, scheme in enumerate(schemes, 1):
        with Progress(f"e2e [{n}/{len(schemes)}] {scheme}") as progress:
            row = run_scheme(scheme, float_acc=float_acc, progress=progress)
        results.append(row)
        print(f"{scheme}: golden {_pct(row['golden_acc'])} %, RTL {_pct(row['rtl_acc'])} %, RTL == golden "
              f"{row['agree']}/{row['images']}, {row['cycles']} cycles, RTL {row['rtl_seconds']:.1f} s", flush=True)
        if "nonideal" in row:
            ni = row["nonideal"]
            results.append({"scheme": "forms-nonideal", "description": DESCRIPTIONS["forms-nonideal"],
                            "pes": [], "images": row["images"], "float_acc": float_acc,
                            "golden_acc": ni["golden_acc"], "weight_bits": row["weight_bits"],
                            "float32_bits": row["float32_bits"], "settings": ni["settings"]})
    elapsed = time.monotonic() - start

    rows = [_row(r) for r in results]
    print()
    print(text_table(HEADER, rows))
    failed = [r["scheme"] for r in results if r.get("agree") is not None and r["agree"] != r["images"]]
    settings = ", ".join(f"{k}={v}" for k, v in models.NONIDEAL.items())
    note = (f"MLP 64-{models.HIDDEN}-10 on sklearn digits, {len(split.y_test)} test images (stratified split, "
            f"seed {models.SPLIT_SEED}), trained at run time (seed {models.TRAIN_SEED}). *float*: the float32 "
            f"baseline; *compressed float*: the trained compressed model in torch (fake-quantised weights, float "
            f"activations); *golden*: the integer pipeline (8-bit activations, integer requantisation) on the "
            f"PE golden models; *RTL*: the same pipeline with every layer's products computed by the generated "
            f"RTL in Verilator. Weight bits: codes/values/indices/spectra/cells + sign bits (scales and biases "
            f"excluded), against float32 weights. RTL cycles: PE cycles without stalls, summed over layers. "
            f"RTL wall s: all layers' simulations (cocotb + Verilator), builds cached. LUT/DSP: ECP5-85F, "
            f"summed over the PEs used, from docs/results (make bench) or else one peforge synth run "
            f"(peforge.e2e.MEASURED); forms: controller + register emulator of the array. forms-nonideal: the "
            f"forms network on sw.forms.NonIdealArray ({settings}), software only. Total {elapsed:.0f} s.")
    (out_dir / "e2e.md").write_text("# peforge e2e: compressed digits classifiers on the generated RTL\n\n"
                                    + markdown_table(HEADER, rows) + "\n\n" + note + "\n")
    (out_dir / "e2e.json").write_text(json.dumps({"results": results, "seconds": elapsed}, indent=2) + "\n")
    _plot(results, out_dir / "e2e.png")
    print(f"\n{note}\nreport: {out_dir / 'e2e.md'}, {out_dir / 'e2e.json'}, {out_dir / 'e2e.png'}")
    for scheme in failed:
        print(f"FAILED {scheme}: RTL predictions differ from golden")
    return 1 if failed else 0
