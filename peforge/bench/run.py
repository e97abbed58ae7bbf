"""``peforge bench`` (``make bench``): run the suites of :data:`SUITES`, write each one's results file and render its
page (and figures) from that file."""

from __future__ import annotations

from pathlib import Path

from peforge.bench import circulant, cnn, crossbar, dsp, network, nm, rnn, sp2, unrolled
from peforge.errors import UsageError
from peforge.explore import bench as explore
from peforge.report import dump_results, load_results

__all__ = ["run_bench", "render", "SUITES", "FIGURES"]

#: name -> (suite function ``seeds -> results document``, renderer ``results document -> Markdown``)
SUITES = {
    "sp2": (sp2.sp2_suite, sp2.render),
    "nm": (nm.nm_suite, nm.render),
    "circulant": (circulant.circulant_suite, circulant.render),
    "crossbar": (crossbar.crossbar_suite, crossbar.render),
    "network": (network.network_suite, network.render),
    "explore": (explore.explore_suite, explore.render),
    "dsp": (dsp.dsp_suite, dsp.render),
    "cnn": (cnn.cnn_suite, cnn.render),
    "unrolled": (unrolled.bench_suite, unrolled.render),
    "rnn": (rnn.rnn_suite, rnn.render),
}
#: the suites whose results the compiler's cost model is fitted on (:func:`peforge.explore.estimate.refit`)
FITTED = {"sp2", "nm", "circulant", "crossbar", "network", "explore"}
#: where the committed results live
RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"
#: name -> ``(results document, out_dir) -> [paths]``: figures a suite draws from its results beside the page
FIGURES = {"network": network.figures, "explore": explore.figures, "rnn": rnn.figures}


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
    if not render_only and out_dir.resolve() == RESULTS.resolve() and set(chosen) & FITTED:
        # the compiler's cost model is the fit of the committed results: keep the two together
        from peforge.explore.estimate import refit

        refit()
        print("refitted peforge/hw/network/cost_model.json")
    return 0
