"""A sweep's records: ``DIR/points.jsonl`` (``DIR/estimates.jsonl`` for ``--estimate-only``), one JSON record per
line, appended as each point finishes, and the Pareto front over them."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["POINTS", "ESTIMATES", "read_points", "append_point", "pareto_front"]

#: The records of the measured points, and of the estimated ones, in the output directory.
POINTS = "points.jsonl"
ESTIMATES = "estimates.jsonl"


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


def append_point(path: Path, record: dict) -> None:
    """Append ``record`` to the records file ``path`` as one line, flushed to disk (a run killed later keeps
    it)."""
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
