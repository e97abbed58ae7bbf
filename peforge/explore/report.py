"""The pages of a sweep: ``pareto.md`` and ``pareto.png`` (``estimate.md`` and ``estimate.png`` under
``--estimate-only``), from the records of its points: the Pareto fronts, every point, the failed ones."""

from __future__ import annotations

from pathlib import Path

from peforge.explore.points import pareto_front
from peforge.explore.space import Space
from peforge.report import markdown_table
from peforge.report import or_dash as _num

__all__ = ["choice_text", "plot_fronts", "write_report"]


def choice_text(point: dict, schemes=None) -> str:
    """``"fixed(bits=8) / nm(lanes=8); fold default"``: each layer's scheme (the point's choice, else ``schemes[n]``:
    a saved network's own) and its other choices."""
    parts = []
    for n, choice in enumerate(point["layers"]):
        keys = [f"{k}={v}" for k, v in choice.items() if k != "scheme" and v is not None]
        scheme = choice.get("scheme") or (schemes[n] if schemes and n < len(schemes) else "layer")
        parts.append(scheme + (f"({', '.join(keys)})" if keys else ""))
    return " / ".join(parts) + f"; fold {point['fold']}"


def _rows(records: list[dict], prefix: str = "", schemes=()) -> list[list[str]]:
    from peforge.hw.network import folding_text

    rows = []
    for r in records:
        rate = r.get(f"{prefix}inferences_per_s")
        rtl = f"{r['rtl_equal']}/{r['test_samples']}" if r.get("rtl_equal") is not None else "-"
        rows.append([r["digest"], choice_text(r["point"], r.get("schemes") or schemes), r["point"]["target"],
                     folding_text(r.get("folding")),
                     _num(r.get("accuracy"), "{:.2%}"), _num(r.get(f"{prefix}lut")), _num(r.get(f"{prefix}ff")),
                     _num(r.get(f"{prefix}dsp")), _num(r.get(f"{prefix}bram")),
                     _num(r.get(f"{prefix}fmax_mhz"), "{:.1f}"),
                     _num(r.get("interval_measured") or r.get("interval"), "{:g}")
                     + ("" if r.get("interval_measured") else " (p)"),
                     _num(rate, "{:,.0f}"), rtl, _num(r.get("seconds"), "{:.0f}")])
    return rows


def _head(prefix: str) -> list[str]:
    est = " (est.)" if prefix else ""
    return ["digest", "choices", "target", "folding", "accuracy", f"LUT{est}", f"FF{est}", f"DSP{est}",
            f"BRAM{est}", f"Fmax MHz{est}", "interval", f"inferences/s{est}", "RTL == golden", "wall s"]


def plot_fronts(records: list[dict], path: Path, prefix: str, title: str) -> dict[str, dict[str, int]]:
    """Accuracy against LUTs, inferences/s and the predicted interval: one row of panels per target, so points of
    every target are shown (a target without LUT or Fmax values, such as iCE40 under the estimator, which is
    fitted on ECP5 results, says so in its panels and still has its interval panel).

    Returns the points drawn, ``{target: {"lut": n, "inferences_per_s": n, "interval": n}}``; empty (nothing
    written) when no record has a LUT count."""
    from peforge.report import log_axis

    lut, rate = f"{prefix}lut", f"{prefix}inferences_per_s"
    if not any(r.get(lut) is not None for r in records):
        return {}
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = sorted({r["point"]["target"] for r in records})
    fig, axes = plt.subplots(len(targets), 3, figsize=(16, 4.6 * len(targets)), squeeze=False)
    label = "estimated " if prefix else ""
    panels = ((lut, False, f"{label}LUTs", f"{label}LUTs of the whole design (log)"),
              (rate, True, f"{label}inferences/s", f"{label}inferences/s = Fmax / interval (log)"),
              ("interval", False, "predicted interval", "predicted interval, cycles per sample (log)"))
    schemes = sorted({"/".join(r.get("schemes") or ["?"]) for r in records})
    colours = {scheme: f"C{n % 10}" for n, scheme in enumerate(schemes)}
    drawn = {}
    for row, target in zip(axes, targets):
        mine = [r for r in records if r["point"]["target"] == target]
        for ax, (cost, better, what, xlabel) in zip(row, panels):
            pts = [r for r in mine if r.get(cost) is not None and r.get("accuracy") is not None]
            drawn.setdefault(target, {})[cost.removeprefix(prefix)] = len(pts)
            ax.set_title(f"{target}: accuracy vs {what}", fontsize=10)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("golden test accuracy (%)")
            if not pts:
                why = ("\nthe estimator's LUT and Fmax models\nare fitted on ECP5 results only" if prefix else
                       "\n(not synthesised)")
                ax.text(0.5, 0.5, f"no {what} for {target}:{why}", ha="center", va="center", transform=ax.transAxes,
                        fontsize=9)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            for scheme in schemes:
                group = [r for r in pts if "/".join(r.get("schemes") or ["?"]) == scheme]
                if group:
                    ax.scatter([r[cost] for r in group], [100 * r["accuracy"] for r in group], label=scheme,
                               color=colours[scheme], alpha=0.8)
            front = pareto_front(pts, cost, larger_is_better=better)
            ax.step([r[cost] for r in front], [100 * r["accuracy"] for r in front], "k--", where="post",
                    label="Pareto front", linewidth=1)
            ax.scatter([r[cost] for r in front], [100 * r["accuracy"] for r in front], facecolors="none",
                       edgecolors="k", s=140, linewidths=1.5)
            log_axis(ax, [r[cost] for r in pts])
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize=7, loc="lower left", title=f"target {target}", title_fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return drawn


def write_report(out: Path, space: Space, records: list[dict], *, estimated: bool = False,
                 timing: dict | None = None) -> list[Path]:
    """``pareto.md`` and ``pareto.png`` (``estimate.md`` / ``estimate.png`` when ``estimated``) in ``out`` from
    the records of the space's points."""
    prefix = "est_" if estimated else ""
    stem = "estimate" if estimated else "pareto"
    ok = [r for r in records if r.get("status") == "ok"]
    failed = [r for r in records if r.get("status") != "ok"]
    title = f"peforge explore {space.name}: {len(records)} points"
    lines = [f"# {title}", ""]
    if estimated:
        lines += ["**Resources here are estimates** (`--estimate-only`: `peforge/explore/estimate.py`, fitted on "
                  "measured synthesis results; its held-out error is below). Accuracy is the golden model's, "
                  "measured on the test set; `interval (p)` is the compiled network's predicted interval.", ""]
    else:
        lines += ["Every number is measured by this sweep: golden accuracy on the test set (exact integer model), "
                  "resources and Fmax from yosys + nextpnr of the whole accelerator in the pin wrapper, "
                  "`inferences/s = Fmax / interval`; `interval (p)` is the compiled network's predicted interval "
                  "(cycles per sample), a measured one (without `(p)`) is counted in Verilator (`--rtl`).", ""]
    if timing:
        lines += [f"Sweep: {timing['points']} points computed in {timing['seconds']:.0f} s on "
                  f"{timing['workers']} worker(s); {timing['skipped']} already recorded (resumed)."
                  + (f" `--prune {timing['margin']:g}`: {timing['pruned']} points left out, the estimate puts them "
                     f"more than {timing['margin']:.0%} behind a front (`estimate.md`)." if timing.get("margin")
                     is not None else ""), ""]
    lines += [f"{len(ok)} points ok, {len(failed)} failed or timed out.", ""]
    for cost, better, what in ((f"{prefix}lut", False, "accuracy vs LUT"),
                               (f"{prefix}inferences_per_s", True, "accuracy vs inferences/s")):
        front = pareto_front(ok, cost, larger_is_better=better)
        if front:
            lines += [f"## Pareto front: {what}" + (" (estimated)" if prefix else ""), "",
                      markdown_table(_head(prefix), _rows(front, prefix, space.schemes)), ""]
    if not any(r.get(f"{prefix}lut") is not None for r in ok):
        front = pareto_front(ok, "interval")
        if front:
            lines += ["## Pareto front: accuracy vs predicted interval (no synthesis)", "",
                      markdown_table(_head(prefix), _rows(front, prefix, space.schemes)), ""]
    order = sorted(ok, key=lambda r: (-r.get("accuracy", 0), r.get(f"{prefix}lut") or 0))
    lines += ["## Every point", "", markdown_table(_head(prefix), _rows(order, prefix, space.schemes)), ""]
    if failed:
        lines += ["## Failed points", "", markdown_table(["digest", "choices", "target", "status", "stage", "error"],
                                                    [[r["digest"], choice_text(r["point"], space.schemes),
                                                      r["point"]["target"], r["status"], r.get("stage", "-"),
                                                      r.get("error", "")]
                                                     for r in failed]), ""]
    if estimated:
        from peforge.explore.estimate import held_out_table

        lines += ["## Estimator: held-out error", "", held_out_table(), ""]
    written = []
    figure = out / f"{stem}.png"
    if plot_fronts(ok, figure, prefix, title + (" (estimated resources)" if estimated else "")):
        lines += [f"![{what}]({figure.name})" for what in ("accuracy vs LUT and inferences/s",)] + [""]
        written.append(figure)
    page = out / f"{stem}.md"
    page.write_text("\n".join(lines))
    return [page, *written]
