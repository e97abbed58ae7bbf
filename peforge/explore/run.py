"""The driver of ``peforge explore``: every point of a space on Dask, resumed, resubmitted, recorded, reported.

:func:`explore` appends each record to ``DIR/points.jsonl`` (:mod:`peforge.explore.points`) as it finishes, skips
points already recorded there (resume), resubmits points whose worker died, and writes ``DIR/pareto.md`` and
``DIR/pareto.png`` at the end (:mod:`peforge.explore.report`). ``--rtl`` then runs the test set through the RTL of
the Pareto points (Verilator: measured interval, RTL == golden). ``--estimate-only`` and ``--prune`` use
:mod:`peforge.explore.estimate`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from peforge.explore.point import rtl_point, run_point
from peforge.explore.points import ESTIMATES, POINTS, append_point, pareto_front, read_points
from peforge.explore.report import write_report
from peforge.explore.space import Space

__all__ = ["explore", "run_points", "DEFAULT_TIMEOUT", "RESUBMITS"]

#: Seconds a point may take (training, synthesis) before it is recorded as timed out.
DEFAULT_TIMEOUT = 3600.0
#: Times a point is resubmitted after the worker running it died.
RESUBMITS = 3


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
                   on_record=lambda r: (known.__setitem__(r["digest"], r), append_point(path, r)), **base)
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
        append_point(path, r)

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
