"""``peforge e2e``: compressed digits classifiers compiled into whole-network accelerators, simulated and synthesised.

For each scheme (:data:`peforge.digits.SCHEMES`) the runner trains the model (seeded) and turns it into an
integer network through :func:`sw.from_torch.from_torch` (:func:`peforge.digits.build`), compiles it with the
default (balanced) folding, or that folding with ``--set layer.N.lanes=..`` overrides
(:class:`hw.network.CompiledNetwork`), and then measures it:

* accuracy of the float model, of the golden integer network (:meth:`sw.network.Network.golden`) and of the
  RTL, and the number of test images whose RTL logits equal the golden ones: all 360 test images stream
  through ONE Verilator simulation of the whole accelerator (:func:`tb.network.rtl_infer`);
* latency (first input beat to logits) and the steady-state interval between results, both counted in that
  simulation (:class:`tb.network.NetworkStats`), and how busy the slowest engine's multipliers are
  (useful MACs / (multiplier lanes x measured interval));
* LUT / FF / DSP / BRAM / Fmax of the whole accelerator on ECP5-85F from a real synthesis
  (:func:`synth.synthesize_network`), inferences/s = Fmax / measured interval, and whether it fits the
  iCE40-UP5K (a real iCE40 synthesis: nextpnr places it or fails to). Every synthesis result is cached as JSON
  by compiled digest, target, seeds and generator fingerprint (:mod:`peforge.synth_cache`, shared with
  ``peforge bench network`` and ``peforge explore``), so a rerun with the same code resynthesises nothing.
  ``synth=False`` (``--no-synth``) skips synthesis and leaves those columns empty.

It writes ``e2e.md``, ``e2e.json`` and ``e2e.png`` (accuracy against ECP5 LUTs and against inferences/s) to
``build/demo/`` (or ``out_dir``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from peforge.errors import UsageError
from peforge.hw.network import folding_text
from peforge.progress import Progress
from peforge.report import markdown_table, text_table
from peforge.report import or_dash as _num

__all__ = ["run_e2e", "run_scheme", "cached_synth", "SYNTH_TARGETS", "UP5K_LC", "ICE40_ATTEMPT_LUTS"]

#: What each scheme is, for the tables.
DESCRIPTIONS = {
    "float": "float32 baseline (torch)",
    "fixed": "8-bit fixed point (QAT)",
    "sp2": "4-bit SP2 (QAT)",
    "msq": "Mix and Match: 1/2 rows SP2-4, 1/2 fixed-4 (QAT)",
    "nm": "2:4 sparse, 8-bit (SR-STE)",
    "circulant": "block-circulant k=8 hidden layer, fixed-8 classifier",
    "crossbar": "FORMS polarised, 8-bit magnitudes, ideal ADC",
    "crossbar-nonideal": "FORMS on a non-ideal array (software only)",
}

#: The ECP5 part every resource column is measured on, and the small part the fit is tested on.
SYNTH_TARGETS = ("ecp5-85k", "ice40-up5k")
#: Logic cells of the iCE40-UP5K.
UP5K_LC = 5280
#: An accelerator whose ECP5 synthesis needs more LUT4s than this is not synthesised for the UP5K (an ECP5 LUT4
#: and an iCE40 logic cell hold the same 4-input LUT, so it cannot fit 5280 cells); it is reported as not fitting.
ICE40_ATTEMPT_LUTS = 2 * UP5K_LC


# -- synthesis, cached by digest ---------------------------------------------------------------------------

def cached_synth(compiled, target: str, *, progress=None) -> dict:
    """The synthesis of ``compiled`` (the whole accelerator) for ``target`` (:func:`synth.synthesize_network`, seed 1,
    its automatic pin wrapper) through :func:`peforge.synth_cache.synthesise`: from the cache when it holds this
    digest and generator, else run and cached; a failed place and route is cached too.

    Returns a dict: ``placed`` (nextpnr placed and routed it), ``lut``, ``ff``, ``dsp``, ``bram``, ``fmax_mhz``
    (None unless placed), ``error`` (the failing tool's message, or None), ``seconds`` (of the synthesis that
    produced it), ``cached`` (read from the cache), ``digest``, ``target``, ``generator``.
    """
    from peforge.synth_cache import synthesise

    entry = synthesise(compiled, target, progress=progress)
    return {k: entry[k] for k in ("lut", "ff", "dsp", "bram", "fmax_mhz", "wrapped", "placed", "error", "digest",
                                  "target", "generator", "seconds", "cached")}


def _fits_up5k(compiled, ecp5: dict, progress) -> dict:
    """The iCE40-UP5K attempt: a real synthesis unless the ECP5 LUTs alone exceed :data:`ICE40_ATTEMPT_LUTS`."""
    if ecp5.get("lut") is not None and ecp5["lut"] > ICE40_ATTEMPT_LUTS:
        return {"placed": False, "attempted": False, "lut": None, "ff": None, "dsp": None, "bram": None,
                "fmax_mhz": None, "error": f"not attempted: {ecp5['lut']} ECP5 LUT4s, more than 2 x the UP5K's "
                                            f"{UP5K_LC} logic cells", "cached": False, "seconds": 0.0}
    return {**cached_synth(compiled, "ice40-up5k", progress=progress), "attempted": True}


# -- one scheme ------------------------------------------------------------------------------------------------

def run_scheme(scheme: str, *, float_acc: float, settings: dict[str, str] | None = None, synth: bool = True,
               up5k: bool = True, progress=None) -> dict:
    """Train, export, compile, simulate (and synthesise) one scheme; the result row as a dict. ``synth``: place and
    route the accelerator on ECP5-85F, and (``up5k``) try the UP5K folding on the iCE40-UP5K.

    Raises
    ------
    UsageError
        ``settings`` that fold no layer of this scheme's network (the message of
        :meth:`hw.network.CompiledNetwork.with_settings`, prefixed with the scheme).
    """
    from peforge.hw.network import CompiledNetwork
    from peforge import digits
    from peforge.tb.network import rtl_infer

    split = digits.load_split()
    step = progress.step if progress else (lambda text: None)
    step("training (seeded, one CPU thread) and from_torch")
    trained = digits.build(scheme)
    network = trained.network
    golden = network.golden(split.x_test)
    compiled = CompiledNetwork.default(network)
    if settings:
        try:
            compiled = compiled.with_settings(settings)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--set for {scheme}: {exc}") from None
    step(f"RTL: {len(split.x_test)} images through one simulation of the accelerator {compiled.digest()}")
    start = time.perf_counter()
    rtl, stats = rtl_infer(compiled, split.x_test)
    rtl_seconds = time.perf_counter() - start
    equal = np.all(rtl == golden, axis=1)
    interval = stats.interval
    pes = sorted({slot.pe for plan in compiled.plans for slot in plan.slots})
    row = {
        "scheme": scheme, "description": DESCRIPTIONS[scheme], "layers": [layer.scheme for layer in network.layers],
        "pes": pes, "digest": compiled.digest(), "network_digest": network.digest(),
        "folding": compiled.folding.to_list(), "settings": dict(settings or {}), "plans": compiled.summary(),
        "images": len(split.y_test), "float_acc": float_acc, "compressed_float_acc": trained.float_accuracy,
        "golden_acc": digits.accuracy(golden, split.y_test), "rtl_acc": digits.accuracy(rtl, split.y_test),
        "agree": int(np.sum(golden.argmax(1) == rtl.argmax(1))), "rtl_equal": int(equal.sum()),
        "logits_equal": bool(equal.all()),
        "weight_bits": sum(digits.weight_bits(layer) for layer in network.layers),
        "float32_bits": sum(32 * layer.in_features * layer.out_features for layer in network.layers),
        "samples": stats.samples, "cycles": stats.cycles, "latency": stats.latency, "interval": interval,
        "predicted_interval": compiled.interval, "busy": compiled.busy(interval),
        "rtl_seconds": rtl_seconds, "train_seconds": trained.train_seconds,
        "ecp5": None, "ice40": None, "inferences_per_s": None, "fits_up5k": None,
    }
    if synth:
        step("synthesis: ECP5-85F (yosys + nextpnr; cached by digest)")
        ecp5 = cached_synth(compiled, "ecp5-85k", progress=progress)
        row.update(ecp5=ecp5)
        if ecp5["fmax_mhz"] and interval:
            row["inferences_per_s"] = ecp5["fmax_mhz"] * 1e6 / interval
    if synth and up5k:
        # the UP5K gets the folding for its 8 DSPs (unless --set folded the network by hand), measured itself
        from peforge.synth import TARGETS

        small = compiled if settings else CompiledNetwork.default(network, TARGETS["ice40-up5k"].budget())
        step("synthesis: iCE40-UP5K (does it fit?)")
        ice40 = _fits_up5k(small, row["ecp5"], progress)
        ice40.update(folding=small.folding.to_list(), digest=small.digest(), interval=interval,
                     inferences_per_s=None)
        if ice40["placed"] and small is not compiled:
            step(f"RTL: the UP5K folding {small.digest()}, every image")
            small_rtl, small_stats = rtl_infer(small, split.x_test)
            ice40.update(interval=small_stats.interval, rtl_equal=int(np.sum(np.all(small_rtl == golden, axis=1))))
        if ice40["placed"] and ice40["fmax_mhz"]:
            ice40["inferences_per_s"] = ice40["fmax_mhz"] * 1e6 / ice40["interval"]
        row.update(ice40=ice40, fits_up5k=ice40["placed"])
    if scheme == "crossbar":
        row["nonideal"] = {"settings": dict(digits.NONIDEAL),
                           "golden_acc": digits.accuracy(digits.nonideal_logits(network, split.x_test),
                                                         split.y_test)}
    return row


# -- the report ---------------------------------------------------------------------------------------------

def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _up5k(r: dict) -> str:
    ice = r.get("ice40")
    if ice is None:
        return "-"
    if ice["placed"]:
        folding = folding_text(ice.get("folding"))
        rate = _num(ice.get("inferences_per_s"), "{:,.0f} inf/s")
        return (f"yes ({folding}: {ice['lut']} LUT, {ice['dsp']} DSP, {ice['bram']} EBR, "
                f"{_num(ice['fmax_mhz'], '{:.1f}')} MHz, {rate})")
    return "no" if ice.get("attempted") is False or "nextpnr" in (ice["error"] or "") else "synthesis failed"


def _row(r: dict) -> list[str]:
    ecp5 = r.get("ecp5") or {}
    bits = r["weight_bits"]
    return [r["scheme"], " + ".join(r.get("pes", [])) or "-", folding_text(r.get("folding")), _pct(r["float_acc"]),
            _pct(r.get("compressed_float_acc")), _pct(r.get("golden_acc")), _pct(r.get("rtl_acc")),
            "-" if r.get("rtl_equal") is None else f"{r['rtl_equal']}/{r['images']}", str(bits),
            f"{r['float32_bits'] / bits:.1f}x", _num(r.get("latency")), _num(r.get("interval"), "{:g}"),
            _pct(r.get("busy")), _num(r.get("rtl_seconds"), "{:.1f}"), _num(ecp5.get("lut")), _num(ecp5.get("ff")),
            _num(ecp5.get("dsp")), _num(ecp5.get("bram")), _num(ecp5.get("fmax_mhz"), "{:.1f}"),
            _num(r.get("inferences_per_s"), "{:,.0f}"), _up5k(r)]


HEADER = ["scheme", "PEs", "folding (lanes x pes)", "float %", "compressed float %", "golden %", "RTL %",
          "RTL == golden", "weight bits", "vs float32", "latency", "interval", "busy %", "RTL wall s", "LUT", "FF",
          "DSP", "BRAM", "Fmax MHz", "inferences/s", "fits UP5K"]

#: One colour and marker per scheme, the same in both panels.
_STYLE = {"fixed": ("tab:blue", "o"), "sp2": ("tab:orange", "s"), "msq": ("tab:green", "D"),
          "nm": ("tab:red", "^"), "circulant": ("tab:purple", "v"), "crossbar": ("tab:brown", "P")}


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from peforge.report import log_axis

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    panels = [(lambda r: (r.get("ecp5") or {}).get("lut"), "ECP5-85F LUTs of the whole accelerator (log scale)"),
              (lambda r: r.get("inferences_per_s"), "inferences/s = Fmax / measured interval (log scale)")]
    float_acc = next((r["float_acc"] for r in results if r["scheme"] == "float"), None)
    handles = {}
    for ax, (x_of, label) in zip(axes, panels):
        points = [(r, x_of(r)) for r in results if r.get("rtl_acc") is not None and x_of(r)]
        for r, x in points:
            color, marker = _STYLE.get(r["scheme"], ("tab:olive", "o"))
            name = f"{r['scheme']} ({folding_text(r.get('folding'))})"
            handles[name] = ax.scatter(x, 100 * r["rtl_acc"], s=70, c=color, marker=marker, alpha=0.85, label=name)
        if float_acc is not None:
            handles["float baseline"] = ax.axhline(100 * float_acc, color="black", ls="--", lw=1,
                                                   label="float baseline")
        if points:
            log_axis(ax, [x for _, x in points])
        else:
            ax.text(0.5, 0.3, "not synthesised (--no-synth)", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
        ax.set_xlabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("RTL test accuracy on 360 digits (%)")
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(len(handles), 4), frameon=False)
    fig.suptitle("peforge e2e: MLP 64-32-10 on sklearn digits, each scheme compiled into one accelerator "
                 "(folding lanes x pes per layer)")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _note(split_size: int, synthesised: list[str], up5k: bool, elapsed: float) -> str:
    from peforge import digits

    settings = ", ".join(f"{k}={v}" for k, v in digits.NONIDEAL.items())
    fit = (f"fits UP5K: placed and routed on the iCE40-UP5K by nextpnr (accelerators over {ICE40_ATTEMPT_LUTS} "
           "ECP5 LUTs are not attempted: no)" if up5k else "fits UP5K: not attempted in this run")
    which = "" if set(synthesised) == set(digits.SCHEMES) else (
        f" Synthesised in this run: {', '.join(synthesised)} (the others: - ; `peforge e2e` synthesises all).")
    resources = ("LUT/FF/DSP/BRAM/Fmax: the whole accelerator on ECP5-85F (yosys + nextpnr, seed 1, cached by "
                 "compiled digest under build/synth-cache/); inferences/s = Fmax / measured interval; "
                 f"{fit}; crossbar: controller + register emulator of the array (a real ReRAM array replaces the "
                 f"emulator).{which}" if synthesised else
                 "Not synthesised (--no-synth): no LUT/FF/DSP/BRAM/Fmax, inferences/s or UP5K fit.")
    return (f"MLP 64-{digits.HIDDEN}-10 on sklearn digits, {split_size} test images (stratified split, seed "
            f"{digits.SPLIT_SEED}), trained at run time (seed {digits.TRAIN_SEED}) and exported by "
            f"sw.from_torch.from_torch (input: the pixels 0..16 as {digits.INPUT_BITS}-bit unsigned integers, "
            f"hidden {digits.ACT_BITS}-bit unsigned, logits {digits.LOGIT_BITS}-bit signed). *float*: the float32 "
            f"baseline; *compressed float*: the trained compressed model in torch; *golden*: "
            f"sw.network.Network.golden; *RTL*: the compiled accelerator (default balanced folding, lanes x pes "
            f"per layer) in ONE Verilator simulation of all test images back to back; RTL == golden: images "
            f"whose 10 logits are all equal. Latency (first input beat to logits) and interval (steady-state "
            f"cycles between results) are counted in that simulation; busy: useful MACs / (multiplier lanes x "
            f"interval) of the slowest engine (- for circulant and crossbar engines, which have no multiplier "
            f"lanes). RTL wall s: the simulation including Verilator build check and start-up, builds cached. "
            f"{resources} Weight bits: codes/values/indices/spectra/cells + sign bits (scales, biases, "
            f"requantisation excluded). crossbar-nonideal: the crossbar network on sw.forms.NonIdealArray ({settings}), "
            f"software only. Total {elapsed:.0f} s.")


def run_e2e(schemes=None, *, out_dir: Path | None = None, settings: dict[str, str] | None = None,
            synth=True, up5k: bool = True) -> int:
    """Run ``schemes`` (default: all), print the table, write ``e2e.md``/``e2e.json``/``e2e.png``.

    ``settings`` (``{"layer.0.lanes": "8"}``) refold every scheme's default folding. ``synth``: True synthesises
    every scheme's accelerator, False none, a collection of scheme names only those (``make demo``: two, so it
    stays within minutes); ``up5k=False`` skips the iCE40-UP5K attempt. Returns 0 when the RTL logits equal the
    golden ones on every image of every scheme, else 1.

    Raises
    ------
    ValueError
        ``"Scheme must be one of fixed, sp2, msq, nm, circulant, crossbar, not 'int4'"``.
    """
    from peforge.hw.verilog import build_root
    from peforge import digits

    schemes = list(schemes or digits.SCHEMES)
    unknown = [s for s in schemes if s not in digits.SCHEMES]
    if unknown:
        raise ValueError(f"Scheme must be one of {', '.join(digits.SCHEMES)}, not {unknown[0]!r}")
    synthesised = set(schemes) if synth is True else set() if synth is False else set(synth)
    unknown = sorted(synthesised - set(digits.SCHEMES))
    if unknown:
        raise ValueError(f"Synthesised schemes must be among {', '.join(digits.SCHEMES)}, not {unknown[0]!r}")
    out_dir = Path(out_dir) if out_dir else build_root() / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    split = digits.load_split()
    start = time.monotonic()
    with Progress("e2e float baseline") as progress:
        progress.step("training (seeded, one CPU thread)")
        float_acc, float_seconds = digits.train_float()
    dense_bits = 32 * (64 * digits.HIDDEN + digits.HIDDEN * 10)
    results = [{"scheme": "float", "description": DESCRIPTIONS["float"], "pes": [], "images": len(split.y_test),
                "float_acc": float_acc, "weight_bits": dense_bits, "float32_bits": dense_bits,
                "train_seconds": float_seconds}]
    print(f"float: {100 * float_acc:.2f} % (torch, trained in {float_seconds:.1f} s)", flush=True)
    for n, scheme in enumerate(schemes, 1):
        begin = time.monotonic()
        with Progress(f"e2e [{n}/{len(schemes)}] {scheme}") as progress:
            row = run_scheme(scheme, float_acc=float_acc, settings=settings, synth=scheme in synthesised, up5k=up5k,
                             progress=progress)
        row["seconds"] = time.monotonic() - begin
        results.append(row)
        ecp5 = row["ecp5"]
        hardware = "" if ecp5 is None else (f", ECP5 {_num(ecp5['lut'])} LUT {_num(ecp5['fmax_mhz'], '{:.1f}')} MHz, "
                                            f"{_num(row['inferences_per_s'], '{:,.0f}')} inferences/s, UP5K "
                                            f"{_up5k(row)}")
        print(f"{scheme}: golden {_pct(row['golden_acc'])} %, RTL {_pct(row['rtl_acc'])} %, RTL == golden "
              f"{row['rtl_equal']}/{row['images']}, latency {row['latency']}, interval {row['interval']:g} cycles "
              f"(predicted {row['predicted_interval']}), RTL {row['rtl_seconds']:.1f} s{hardware}; "
              f"{row['seconds']:.0f} s in all", flush=True)
        if "nonideal" in row:
            ni = row["nonideal"]
            results.append({"scheme": "crossbar-nonideal", "description": DESCRIPTIONS["crossbar-nonideal"],
                            "pes": [], "images": row["images"], "float_acc": float_acc,
                            "golden_acc": ni["golden_acc"], "weight_bits": row["weight_bits"],
                            "float32_bits": row["float32_bits"], "settings": ni["settings"]})
    elapsed = time.monotonic() - start

    rows = [_row(r) for r in results]
    print()
    print(text_table(HEADER, rows))
    failed = [r["scheme"] for r in results if r.get("rtl_equal") is not None and r["rtl_equal"] != r["images"]]
    note = _note(len(split.y_test), [s for s in schemes if s in synthesised], up5k, elapsed)
    (out_dir / "e2e.md").write_text("# peforge e2e: compressed digits classifiers as whole-network accelerators\n\n"
                                    + markdown_table(HEADER, rows) + "\n\n" + note + "\n")
    (out_dir / "e2e.json").write_text(json.dumps({"results": results, "synth": sorted(synthesised), "up5k": up5k,
                                                  "seconds": elapsed},
                                                 indent=2) + "\n")
    _plot(results, out_dir / "e2e.png")
    print(f"\n{note}\nreport: {out_dir / 'e2e.md'}, {out_dir / 'e2e.json'}, {out_dir / 'e2e.png'}")
    for scheme in failed:
        print(f"FAILED {scheme}: RTL logits differ from golden")
    return 1 if failed else 0
