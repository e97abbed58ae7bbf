"""``peforge explore SPACE -o DIR``: design-space sweeps with accuracy in the loop, on Dask (``docs/explore.md``).

Every point of a space (:mod:`peforge.explore.space`) is evaluated by :func:`evaluate_point`, on a Dask worker:

1. the network: trained by the space's builder (:mod:`peforge.explore.model`; cached on disk by the digest of
   its format choices, so a point that only refolds reuses it) or loaded from a saved directory;
2. its golden accuracy on the test set (exact integers, :meth:`sw.network.Network.golden`);
3. compiled with the point's folding (:class:`hw.network.CompiledNetwork`) and checked against the target's
   block RAM (:func:`synth.check_fits`);
4. synthesised whole (:func:`synth.synthesize_network`, the pin wrapper, one nextpnr seed by default), cached by
   the compiled digest, target, seeds and generator fingerprint in the synthesis cache ``peforge e2e`` and
   ``peforge bench network`` share (:mod:`peforge.synth_cache`);
5. recorded: accuracy, LUT/FF/DSP/BRAM, Fmax, the predicted interval and ``inferences/s = Fmax / interval``,
   wall time, or the error of the first step that failed.

The driver (:func:`explore`) appends each record to ``DIR/points.jsonl`` as it finishes, skips points already
recorded there (resume), resubmits points whose worker died, and writes ``DIR/pareto.md`` and
``DIR/pareto.png`` at the end. ``--rtl`` then runs the test set through the RTL of the Pareto points (Verilator:
measured interval, RTL == golden). ``--estimate-only`` and ``--prune`` use :mod:`peforge.explore.estimate`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from peforge.explore.space import EXAMPLES, Space, SpaceError, load_space, model_digest

__all__ = ["evaluate_point", "explore", "read_points", "pareto_front", "write_report", "add_parser", "main",
           "DEFAULT_TIMEOUT", "EXAMPLES"]

#: Seconds a point may take (training, synthesis) before it is recorded as timed out.
DEFAULT_TIMEOUT = 3600.0
#: Times a point is resubmitted after the worker running it died.
RESUBMITS = 3
POINTS = "points.jsonl"
ESTIMATES = "estimates.jsonl"


# -- one point (runs on a worker) -----------------------------------------------------------------------------

def _cache_root() -> Path:
    from peforge.hw.verilog import build_root

    return build_root() / "explore"


def _load_data(data) -> tuple[np.ndarray, np.ndarray]:
    if data == "digits":
        from peforge.explore.model import digits_data

        return digits_data()
    with np.load(data["npz"], allow_pickle=False) as f:
        return np.asarray(f["x_test"]), np.asarray(f["y_test"])


def _call_builder(spec: str, layers, options: dict, seed: int):
    import importlib

    module, _, name = spec.partition(":")
    result = getattr(importlib.import_module(module), name)(layers=layers, seed=seed, **options)
    return result if isinstance(result, dict) else {"network": result}


def _network(context: dict, point: dict) -> tuple[object, dict]:
    """The point's network and what building it measured (float accuracy, training seconds, cached)."""
    from peforge.sw import network as net

    model = context["model"]
    if "network" in model:
        return net.load(model["network"]), {"cached": True, "dir": model["network"]}
    digest = model_digest(model, context["data"], context["seed"], point["layers"])
    folder = _cache_root() / "networks" / digest
    meta_file = folder / "build.json"
    if meta_file.is_file():
        try:
            return net.load(folder), {**json.loads(meta_file.read_text()), "cached": True, "dir": str(folder)}
        except (OSError, ValueError):
            pass
    if model["builder"] == "digits-mlp":
        from peforge.explore.model import train_digits_mlp

        built = train_digits_mlp(point["layers"], hidden=model.get("hidden", 32), seed=context["seed"])
    else:
        built = _call_builder(model["builder"], point["layers"], model.get("options", {}), context["seed"])
    network = built["network"]
    meta = {k: v for k, v in built.items() if k != "network"}
    folder.mkdir(parents=True, exist_ok=True)
    network.save(folder)
    meta_file.write_text(json.dumps(meta) + "\n")
    return network, {**meta, "cached": False, "dir": str(folder)}


def compile_point(network, point: dict):
    """The point's :class:`hw.network.CompiledNetwork`: its ``fold`` (``default``: the balanced folding, for the
    iCE40's DSPs on that target; a number ``f``: :func:`hw.network.folding_at` ``f`` x the default interval;
    ``slowest``) and then each layer's own ``lanes``/``pes``/``requant``."""
    from peforge.hw.network import CompiledNetwork, folding_at, slowest_interval
    from peforge.synth import TARGETS

    target, fold = point["target"], point["fold"]
    budget = TARGETS[target].budget() if target.startswith("ice40") else None
    base = CompiledNetwork.default(network, budget)
    if fold == "default":
        compiled = base
    elif fold == "slowest":
        compiled = CompiledNetwork(network, folding_at(network, slowest_interval(network)))
    else:
        compiled = CompiledNetwork(network, folding_at(network, max(1, int(round(base.interval * fold)))))
    settings = {f"layer.{n}.{key}": str(choice[key]) for n, choice in enumerate(point["layers"])
                for key in ("lanes", "pes", "requant") if key in choice}
    return compiled.with_settings(settings) if settings else compiled


class SynthFailed(Exception):
    """A point's synthesis failed, in this call or before (:mod:`peforge.synth_cache` keeps failures): the message is
    the record's error line, ``"<error class>: <first line>"``."""


def synthesise(compiled, target: str, seeds, *, cache: bool = True) -> dict:
    """``{"synth": synth record, "wrapped", "synth_seconds", "synth_cached"}`` of a compiled network in the pin
    wrapper, through the synthesis cache ``peforge e2e`` and ``peforge bench network`` share
    (:func:`peforge.synth_cache.synthesise`: by digest, target, seeds and generator fingerprint; ``cache`` False
    synthesises again). Two points of one design (two folds that compile alike) do not synthesise at once: the
    second waits for the first and then finds its result in the cache.

    Raises
    ------
    SynthFailed
        The synthesis failed, now or (``"... (cached: this design and generator failed before)"``) before.
    """
    from peforge.synth_cache import RECORD, error_line, synthesise as cached_synthesis

    entry = cached_synthesis(compiled, target, seeds=tuple(seeds), wrap=True, reuse=cache)
    if not entry["placed"]:   # a design that fails fails again: the cache remembers it (by digest and generator)
        text = error_line(entry["error"])
        line = f"{entry['error_type']}: {text}" if text.strip() else entry["error_type"]
        raise SynthFailed(line + (" (cached: this design and generator failed before)" if entry["cached"] else ""))
    return {"synth": {k: entry[k] for k in RECORD}, "wrapped": entry["wrapped"], "synth_seconds": entry["seconds"],
            "synth_cached": entry["cached"]}


def _error_line(exc: BaseException) -> str:
    from peforge.synth_cache import error_line

    if isinstance(exc, SynthFailed):
        return str(exc)
    text = error_line(str(exc)) if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def evaluate_point(point: dict, context: dict, *, synth: bool = True, estimate: bool = False,
                   cache: bool = True, on_stage=None) -> dict:
    """Evaluate one point in this process; never raises: a failure is the record's ``error`` (and ``stage``).

    ``synth`` False stops after the golden accuracy and the compile (golden-only); ``estimate`` adds the
    estimator's resources (``est_*`` fields) from :mod:`peforge.explore.estimate`. ``on_stage(record)`` is
    called with the record so far before synthesis (so a point that times out there keeps its accuracy).
    """
    import socket

    start = time.monotonic()
    from peforge.hw.verilog import generator_fingerprint

    record = {"point": point, "digest": context["digest"], "status": "ok", "synthesised": False,
              "host": socket.gethostname(), "pid": os.getpid(), "generator": generator_fingerprint()}
    stage = "network"
    try:
        network, built = _network(context, point)
        record.update(network_digest=network.digest(), float_accuracy=built.get("float_accuracy"),
                      train_seconds=None if built.get("cached") else built.get("train_seconds"),
                      network_cached=built.get("cached", False), network_dir=built.get("dir"))
        stage = "golden"
        x, y = _load_data(context["data"])
        logits = network.golden(x)
        record["accuracy"] = float(np.mean(np.argmax(logits, axis=1) == y))
        record["test_samples"] = int(len(x))
        stage = "compile"
        compiled = compile_point(network, point)
        record.update(compiled_digest=compiled.digest(), folding=compiled.folding.to_list(),
                      interval=compiled.interval,
                      multipliers=sum(p.multipliers for p in compiled.plans),
                      weight_bits=sum(p.weight_bits for p in compiled.plans),
                      schemes=[p.scheme for p in compiled.plans])
        from peforge.synth import check_fits

        check_fits(compiled, point["target"])
        if estimate:
            from peforge.explore.estimate import estimate_compiled

            stage = "estimate"
            record.update({f"est_{k}": v for k, v in estimate_compiled(compiled, point["target"]).items()})
        if synth:
            stage = "synth"
            if on_stage is not None:
                on_stage({**record, "stage": stage})
            measured = synthesise(compiled, point["target"], context["seeds"], cache=cache)
            s = measured["synth"]
            record.update(synthesised=True, wrapped=measured["wrapped"], synth_seconds=measured["synth_seconds"],
                          synth_cached=measured["synth_cached"],
                          **{k: s[k] for k in ("lut", "ff", "dsp", "bram", "fmax_mhz")})
            record["inferences_per_s"] = (s["fmax_mhz"] * 1e6 / compiled.interval) if s["fmax_mhz"] else None
    except Exception as exc:  # one failed point must not stop the sweep: record it
        record.update(status="failed", stage=stage, error=_error_line(exc),
                      traceback=traceback.format_exc(limit=-3))
    record["seconds"] = round(time.monotonic() - start, 2)
    return record


def _child_main() -> None:
    """Entry of the isolated point process (:func:`run_point`): JSON arguments on stdin, the record on stdout."""
    args = json.loads(sys.stdin.read())

    def partial(record):
        sys.stdout.write("\n@@partial@@" + json.dumps(record) + "\n")
        sys.stdout.flush()

    record = evaluate_point(args["point"], args["context"], **args["options"], on_stage=partial)
    sys.stdout.write("\n@@record@@" + json.dumps(record) + "\n")


def run_point(point: dict, context: dict, options: dict, timeout: float | None) -> dict:
    """The task Dask runs: :func:`evaluate_point` in this worker (``timeout`` None or 0), or in a child process
    killed with everything it started after ``timeout`` seconds (the record then says ``timeout``)."""
    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        worker = None
    record = _run_point(point, context, options, timeout)
    record["worker"] = worker
    return record


def _run_point(point: dict, context: dict, options: dict, timeout: float | None) -> dict:
    if not timeout:
        return evaluate_point(point, context, **options)
    import signal

    start = time.monotonic()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [os.getcwd(), *sys.path] if p)}
    proc = subprocess.Popen([sys.executable, "-c", "from peforge.explore.run import _child_main; _child_main()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(json.dumps({"point": point, "context": context, "options": options}),
                                    timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        record = {"point": point, "digest": context["digest"], "stage": "network"}
        for line in (out or "").splitlines():   # what the point measured before it ran out of time
            if line.startswith("@@partial@@"):
                try:
                    record = json.loads(line[len("@@partial@@"):])
                except ValueError:
                    pass
        return {**record, "status": "timeout", "synthesised": False,
                "error": f"Point must finish within the timeout of {timeout:g} s, not run longer (in {record['stage']})",
                "seconds": round(time.monotonic() - start, 2)}
    marker = out.rfind("@@record@@")
    if proc.returncode != 0 or marker < 0:
        tail = " ".join(err.strip().splitlines()[-1:]) or f"exit code {proc.returncode}"
        return {"point": point, "digest": context["digest"], "status": "failed", "synthesised": False,
                "stage": "process", "error": f"Point process died: {tail}",
                "seconds": round(time.monotonic() - start, 2)}
    return json.loads(out[marker + len("@@record@@"):])


# -- results --------------------------------------------------------------------------------------------------

def read_points(path) -> dict[str, dict]:
    """The records of a ``points.jsonl`` by digest (the last record of a digest wins; a torn last line, from an
    interrupted run, is ignored)."""
    records = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return records
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "digest" in record:
            records[record["digest"]] = record
    return records


def _append(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def pareto_front(records: list[dict], cost: str, *, larger_is_better: bool = False) -> list[dict]:
    """The records no other record beats on both accuracy (higher) and ``cost`` (lower, or higher with
    ``larger_is_better``), sorted by ``cost``; records without both values are left out."""
    rated = [r for r in records if r.get("accuracy") is not None and r.get(cost) is not None]
    sign = -1 if larger_is_better else 1
    front = []
    for r in rated:
        beaten = any(o is not r and o["accuracy"] >= r["accuracy"] and sign * o[cost] <= sign * r[cost]
                     and (o["accuracy"] > r["accuracy"] or sign * o[cost] < sign * r[cost]) for o in rated)
        if not beaten:
            front.append(r)
    return sorted(front, key=lambda r: sign * r[cost])


def _choice_text(point: dict, schemes=None) -> str:
    """``"fixed(bits=8) / nm(lanes=8); fold default"``: each layer's scheme (the point's choice, else ``schemes[n]``:
    a saved network's own) and its other choices."""
    parts = []
    for n, choice in enumerate(point["layers"]):
        keys = [f"{k}={v}" for k, v in choice.items() if k != "scheme" and v is not None]
        scheme = choice.get("scheme") or (schemes[n] if schemes and n < len(schemes) else "layer")
        parts.append(scheme + (f"({', '.join(keys)})" if keys else ""))
    return " / ".join(parts) + f"; fold {point['fold']}"


def _folding_text(folding) -> str:
    if not folding:
        return "-"
    return ", ".join(f"{f['lanes']}x{f['pes']}" + (f"/r{f['requant']}" if f.get("requant", 1) > 1 else "")
                     for f in folding)


def _num(value, fmt="{}"):
    from peforge.report import or_dash

    return or_dash(value, fmt)


def _rows(records: list[dict], prefix: str = "", schemes=()) -> list[list[str]]:
    rows = []
    for r in records:
        rate = r.get(f"{prefix}inferences_per_s")
        rtl = f"{r['rtl_equal']}/{r['test_samples']}" if r.get("rtl_equal") is not None else "-"
        rows.append([r["digest"], _choice_text(r["point"], r.get("schemes") or schemes), r["point"]["target"],
                     _folding_text(r.get("folding")),
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


def _plot(records: list[dict], path: Path, prefix: str, title: str) -> dict[str, dict[str, int]]:
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
                      _markdown(_head(prefix), _rows(front, prefix, space.schemes)), ""]
    if not any(r.get(f"{prefix}lut") is not None for r in ok):
        front = pareto_front(ok, "interval")
        if front:
            lines += ["## Pareto front: accuracy vs predicted interval (no synthesis)", "",
                      _markdown(_head(prefix), _rows(front, prefix, space.schemes)), ""]
    order = sorted(ok, key=lambda r: (-r.get("accuracy", 0), r.get(f"{prefix}lut") or 0))
    lines += ["## Every point", "", _markdown(_head(prefix), _rows(order, prefix, space.schemes)), ""]
    if failed:
        lines += ["## Failed points", "", _markdown(["digest", "choices", "target", "status", "stage", "error"],
                                                    [[r["digest"], _choice_text(r["point"], space.schemes),
                                                      r["point"]["target"], r["status"], r.get("stage", "-"),
                                                      r.get("error", "")]
                                                     for r in failed]), ""]
    if estimated:
        from peforge.explore.estimate import held_out_table

        lines += ["## Estimator: held-out error", "", held_out_table(), ""]
    written = []
    figure = out / f"{stem}.png"
    if _plot(ok, figure, prefix, title + (" (estimated resources)" if estimated else "")):
        lines += [f"![{what}]({figure.name})" for what in ("accuracy vs LUT and inferences/s",)] + [""]
        written.append(figure)
    page = out / f"{stem}.md"
    page.write_text("\n".join(lines))
    return [page, *written]


def _markdown(head, rows):
    from peforge.report import markdown_table

    return markdown_table(head, rows)


# -- the driver ----------------------------------------------------------------------------------------------

class _Status:
    """Points done, failed and an ETA, on a :class:`peforge.progress.Progress` line."""

    def __init__(self, progress, total: int):
        self.progress, self.total, self.done, self.failed = progress, total, 0, 0
        self.start = time.monotonic()
        self.update()

    def update(self, last: str = "") -> None:
        elapsed = time.monotonic() - self.start
        eta = "-" if not self.done else f"{elapsed / self.done * (self.total - self.done):.0f} s"
        self.progress.step(f"{self.done}/{self.total} done, {self.failed} failed, ETA {eta}"
                           + (f" (last: {last})" if last else ""))


def _cluster(scheduler: str | None, workers: int | None):
    from distributed import Client, LocalCluster

    if scheduler:
        return None, Client(scheduler, timeout="20s")
    cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    return cluster, Client(cluster)


def run_points(tasks: list[tuple[dict, dict]], *, options: dict, timeout: float | None, scheduler: str | None,
               workers: int | None, on_record, label: str, client=None) -> int:
    """Run ``[(point, context)]`` on Dask; ``on_record(record)`` for each as it finishes. Returns the number of
    workers. A task whose worker died (``KilledWorker``) is resubmitted up to :data:`RESUBMITS` times."""
    from distributed import as_completed

    from peforge.progress import Progress

    cluster, own = (None, None) if client is not None else _cluster(scheduler, workers)
    client = client or own
    try:
        n_workers = len(client.scheduler_info(n_workers=-1)["workers"]) if hasattr(client, "scheduler_info") else 0
        with Progress(f"explore {label} on {n_workers} worker(s)") as progress:
            status = _Status(progress, len(tasks))
            futures, attempts, submitted = {}, {}, []
            for point, context in tasks:
                f = client.submit(run_point, point, context, options, timeout, pure=False,
                                  key=f"point-{context['digest']}-0")
                futures[f.key] = (point, context)
                attempts[context["digest"]] = 0
                submitted.append(f)
            queue = as_completed(submitted, with_results=False)
            for future in queue:
                point, context = futures.pop(future.key)
                try:
                    record = future.result()
                except Exception as exc:  # the worker died under it (KilledWorker) or the task itself failed
                    digest = context["digest"]
                    attempts[digest] += 1
                    if attempts[digest] <= RESUBMITS:
                        again = client.submit(run_point, point, context, options, timeout, pure=False,
                                              key=f"point-{digest}-{attempts[digest]}")
                        futures[again.key] = (point, context)
                        queue.add(again)
                        continue
                    record = {"point": point, "digest": digest, "status": "failed", "synthesised": False,
                              "stage": "dask", "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
                record["attempts"] = attempts[context["digest"]] + 1
                status.done += 1
                status.failed += record.get("status") != "ok"
                on_record(record)
                status.update(f"{record['digest']} {record.get('status')}")
                future.release()
        return n_workers
    finally:
        if own is not None:
            own.close()
        if cluster is not None:
            cluster.close()


def explore(space: Space, out: Path, *, synth: bool = True, scheduler: str | None = None,
            workers: int | None = None, timeout: float | None = DEFAULT_TIMEOUT, retry_failed: bool = False,
            estimate_only: bool = False, prune: float | None = None, rtl: bool = False, cache: bool = True,
            client=None) -> dict:
    """Sweep ``space`` into ``out``; returns ``{"records": [...], "computed": n, "skipped": n, "seconds": s,
    "workers": n, "files": [...]}``."""
    out.mkdir(parents=True, exist_ok=True)
    contexts = [(point, {**space.context(), "digest": space.digest(point)}) for point in space.points]
    pruned = 0
    base = dict(scheduler=scheduler, workers=workers, client=client)
    if estimate_only or prune is not None:
        path = out / ESTIMATES
        known = read_points(path)
        todo = [(p, c) for p, c in contexts if c["digest"] not in known or known[c["digest"]].get("status") != "ok"]
        # in the workers themselves (no child process): each fits the estimator once and reuses it
        run_points(todo, options={"synth": False, "estimate": True}, timeout=None, label=f"{space.name} estimate",
                   on_record=lambda r: (known.__setitem__(r["digest"], r), _append(path, r)), **base)
        estimates = [known[c["digest"]] for _, c in contexts]
        files = write_report(out, space, estimates, estimated=True)
        if estimate_only:
            return {"records": estimates, "computed": len(todo), "skipped": len(contexts) - len(todo),
                    "seconds": 0.0, "workers": 0, "files": files}
        from peforge.explore.estimate import near_front

        keep = {r["digest"] for r in near_front([r for r in estimates if r.get("status") == "ok"], prune)}
        pruned = len(contexts) - len(keep)
        contexts = [(p, c) for p, c in contexts if c["digest"] in keep]
    path = out / POINTS
    known = read_points(path)

    def needed(digest):
        r = known.get(digest)
        return (r is None or not cache or (synth and not r.get("synthesised") and r.get("status") == "ok")
                or (retry_failed and r.get("status") != "ok"))

    todo = [(p, c) for p, c in contexts if needed(c["digest"])]
    start = time.monotonic()

    def record_it(r):
        known[r["digest"]] = r
        _append(path, r)

    n_workers = run_points(todo, options={"synth": synth, "cache": cache}, timeout=timeout, label=space.name,
                           on_record=record_it, **base) if todo else 0
    seconds = time.monotonic() - start
    records = [known[c["digest"]] for _, c in contexts]
    if rtl:
        _rtl_front(space, records, contexts, record_it, base)
        records = [known[c["digest"]] for _, c in contexts]
    timing = {"points": len(todo), "seconds": seconds, "workers": n_workers, "skipped": len(contexts) - len(todo),
              "pruned": pruned, "margin": prune}
    files = write_report(out, space, records, timing=timing)
    return {"records": records, "computed": len(todo), "skipped": len(contexts) - len(todo), "seconds": seconds,
            "workers": n_workers, "files": files}


def rtl_point(record: dict, context: dict) -> dict:
    """The test set through the point's accelerator in Verilator: measured interval and RTL == golden."""
    from peforge.tb.network import rtl_infer

    out = dict(record)
    try:
        network, _ = _network(context, record["point"])
        compiled = compile_point(network, record["point"])
        x, _ = _load_data(context["data"])
        logits, stats = rtl_infer(compiled, x)
        out["rtl_equal"] = int(np.sum(np.all(logits == network.golden(x), axis=1)))
        out["interval_measured"] = stats.interval
        out["latency"] = stats.latency
        if record.get("fmax_mhz"):
            out["inferences_per_s"] = record["fmax_mhz"] * 1e6 / stats.interval
    except Exception as exc:
        out["rtl_error"] = _error_line(exc)
    return out


def _rtl_front(space, records, contexts, record_it, base) -> None:
    from distributed import as_completed

    ok = [r for r in records if r.get("status") == "ok"]
    front = {r["digest"]: r for cost, better in (("lut", False), ("inferences_per_s", True), ("interval", False))
             for r in pareto_front(ok, cost, larger_is_better=better)}
    by_digest = {c["digest"]: c for _, c in contexts}
    todo = [r for d, r in front.items() if r.get("rtl_equal") is None]
    if not todo:
        return
    cluster, client = (None, base["client"]) if base["client"] is not None else _cluster(base["scheduler"],
                                                                                         base["workers"])
    try:
        futures = [client.submit(rtl_point, r, by_digest[r["digest"]], pure=False) for r in todo]
        for future in as_completed(futures):
            record_it(future.result())
    finally:
        if base["client"] is None:
            client.close()
            if cluster is not None:
                cluster.close()


# -- command line ---------------------------------------------------------------------------------------------

def add_parser(subparsers) -> None:
    """Register ``peforge explore``."""
    p = subparsers.add_parser("explore", help="design-space sweep with accuracy in the loop, on Dask: points.jsonl, "
                                              "Pareto fronts and plots")
    p.add_argument("space", nargs="?", metavar="SPACE",
                   help="YAML or JSON space file (docs/explore.md), or example:NAME (" + ", ".join(EXAMPLES) + ")")
    p.add_argument("-o", "--output", metavar="DIR", help="output directory (points.jsonl, pareto.md, pareto.png)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on an existing Dask cluster (tcp://host:port); "
                                                          "default: a LocalCluster of --workers processes")
    p.add_argument("--workers", type=int, default=None, help="local workers (default: one per core)")
    p.add_argument("--golden-only", action="store_true", help="no synthesis: accuracy, folding and interval only")
    p.add_argument("--estimate-only", action="store_true",
                   help="rank the space with the resource estimator (no synthesis): estimate.md / estimate.png")
    p.add_argument("--prune", type=float, nargs="?", const=0.15, default=None, metavar="MARGIN",
                   help="synthesise only points the estimate puts within MARGIN (default 0.15) of a Pareto front")
    p.add_argument("--rtl", action="store_true", help="run the test set through the RTL of the Pareto points")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds per point before it is recorded as timed out (default {DEFAULT_TIMEOUT:g}; "
                        "0: no limit, evaluated inside the worker)")
    p.add_argument("--retry-failed", action="store_true", help="compute failed and timed-out points again")
    p.add_argument("--resynth", action="store_true",
                   help="compute every point again, synthesis included (no cached synthesis results; the trained "
                        "networks stay cached)")
    p.add_argument("--list", action="store_true", help="print the points of the space and exit")
    p.add_argument("--example", metavar="NAME", choices=sorted(EXAMPLES), help="print a named example space (YAML)")
    p.add_argument("--estimator", action="store_true", help="fit the estimator and print its held-out errors")
    p.set_defaults(func=main)


def main(args) -> int:
    """``peforge explore``: bad input raises :class:`peforge.errors.UsageError` (exit 2) before anything is
    written."""
    from peforge.errors import UsageError

    if args.example:
        import yaml

        print(yaml.safe_dump(EXAMPLES[args.example], sort_keys=False), end="")
        return 0
    if args.estimator:
        from peforge.explore.estimate import held_out_table

        print(held_out_table(markdown=False))
        return 0
    if not args.space:
        raise UsageError("Space must be given (a YAML or JSON file, or example:NAME), not nothing")
    try:
        space = load_space(args.space)
    except SpaceError as exc:
        raise UsageError(str(exc)) from None
    if args.list:
        for point in space.points:
            print(space.digest(point), point["target"], _choice_text(point, space.schemes))
        print(f"{len(space.points)} points")
        return 0
    if not args.output:
        raise UsageError("Output (-o DIR) must be given, not nothing")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"Output must be a directory, not the file {args.output!r}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be a positive integer, not {args.workers}")
    if args.timeout < 0:
        raise UsageError(f"--timeout must be a number of seconds >= 0, not {args.timeout:g}")
    if args.prune is not None and not 0 <= args.prune <= 10:
        raise UsageError(f"--prune must be a margin from 0 to 10, not {args.prune:g}")
    if args.estimate_only and (args.prune is not None or args.rtl):
        raise UsageError("--estimate-only must not be combined with --prune or --rtl, not both")
    if args.scheduler and args.workers:
        raise UsageError(f"--workers must not be given with --scheduler (the cluster has its own), not "
                         f"{args.workers}")
    result = explore(space, out, synth=not args.golden_only, scheduler=args.scheduler, workers=args.workers,
                     timeout=args.timeout or None, retry_failed=args.retry_failed, estimate_only=args.estimate_only,
                     prune=args.prune, rtl=args.rtl, cache=not args.resynth)
    failed = sum(r.get("status") != "ok" for r in result["records"])
    print(f"{len(result['records'])} points ({result['computed']} computed, {result['skipped']} already recorded), "
          f"{failed} failed; " + ", ".join(f"wrote {p}" for p in result["files"]))
    return 0
