"""``peforge explore``: the subcommand's arguments (:func:`add_parser`) and what it does with them (:func:`main`)."""

from __future__ import annotations

from pathlib import Path

from peforge.explore.report import choice_text
from peforge.explore.run import DEFAULT_TIMEOUT, explore
from peforge.explore.space import EXAMPLES, SpaceError, load_space

__all__ = ["add_parser", "main"]


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
    p.add_argument("--refit", action="store_true",
                   help="fit the compiler's cost model on the committed results (docs/results) and store it in "
                        "hw/network/cost_model.json (make bench does this after the suites it is fitted on)")
    p.set_defaults(func=main)


def main(args) -> int:
    """``peforge explore``: bad input raises :class:`peforge.errors.UsageError` (exit 2) before anything is
    written."""
    from peforge.errors import UsageError

    if args.example:
        import yaml

        print(yaml.safe_dump(EXAMPLES[args.example], sort_keys=False), end="")
        return 0
    if args.refit:
        from peforge.explore.estimate import refit

        doc = refit()
        print(f"refitted on {doc['provenance']['network_points']} networks and "
              f"{doc['provenance']['requantiser_points']} requantisers: wrote hw/network/cost_model.json")
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
            print(space.digest(point), point["target"], choice_text(point, space.schemes))
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
