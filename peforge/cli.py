"""The ``peforge`` command line: list, generate, sim, synth, demo, e2e, bench.

Bad input (an unknown PE, a parameter out of range, a missing config file) prints one line naming the
parameter and what is allowed, and exits with status 2; a failed check exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


# -- parameters ----------------------------------------------------------------------------------

def _settings(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set must be given as name=value, not {pair!r}")
        out[name.strip()] = value.strip()
    return out


def resolve(pe_name: str, settings: list[str], config: str | None):
    """Registry entry and validated params from ``--config`` then ``--set`` overrides."""
    from peforge import registry

    try:
        pe = registry.get(pe_name)
        params = pe.default_params()
        if config:
            path = Path(config)
            if not path.is_file():
                raise UsageError(f"Config file must exist, not {config!r}")
            try:
                params = pe.params_cls.from_json(path.read_text())
            except json.JSONDecodeError as exc:
                raise UsageError(f"Config file must be JSON: {config}: {exc}") from None
        return pe, params.with_settings(_settings(settings))
    except (ValueError, TypeError) as exc:  # the Params' own one-line validation messages
        raise UsageError(str(exc)) from None


def _add_params_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pe", help="PE name (see `peforge list`)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override one parameter (repeatable; nested with dots, e.g. fmt.bits=5)")
    parser.add_argument("--config", metavar="FILE.json",
                        help="parameters from a JSON file (a params dict or a generated manifest)")


# -- commands ------------------------------------------------------------------------------------

def cmd_list(args) -> int:
    from peforge import registry

    for pe in registry.REGISTRY.values():
        if pe.source == "test":
            continue
        print(f"{pe.name}: {pe.summary}")
        print(f"  source: {pe.source}")
        rows = [(f"{name}={_fmt_value(value)}", doc) for name, _kind, value, doc
                in pe.default_params().describe()]
        width = max(len(r[0]) for r in rows)
        for setting, doc in rows:
            print(f"  --set {setting.ljust(width)}  {doc}")
        print()
    print("Set parameters with --set NAME=VALUE (repeatable) or --config FILE.json.")
    return 0


def _fmt_value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def cmd_generate(args) -> int:
    from hw.verilog import lint, write_design

    pe, params = resolve(args.pe, args.set, args.config)
    out = Path(args.output)
    manifest = write_design(pe, params, out)
    if args.lint:
        lint(out / f"{pe.top}.v", pe.top)
    print(f"wrote {out / (pe.top + '.v')} and {out / (pe.top + '.json')}"
          + (" (Verilator lint clean)" if args.lint else ""))
    derived = ", ".join(f"{k}={v}" for k, v in manifest["derived"].items())
    print(f"{pe.name} {params.digest()}: {derived}")
    return 0


def run_random_sim(pe, params, *, vectors: int, seed: int, waves: bool, p_valid: float,
                   p_ready: float, progress=None) -> dict:
    """Random vectors with stalls against golden in Verilator; returns the summary dict."""
    import tempfile

    from tb.runner import build, build_root, run

    if progress:
        progress.step("Verilator build (first build of a configuration: ~10-15 s)")
    built = build(pe.name, params, waves=waves)
    build_root().mkdir(parents=True, exist_ok=True)
    summary_path = Path(tempfile.mkstemp(prefix="sim-", suffix=".json", dir=build_root())[1])
    if progress:
        progress.step(f"simulating {vectors} vectors")
    tests, failures = run(pe.name, params, testcases=["random_vectors"], seed=seed, waves=waves,
                          tag="cli", extra={"vectors": vectors, "summary": str(summary_path),
                                            "p_valid": p_valid, "p_ready": p_ready})
    summary = json.loads(summary_path.read_text()) if summary_path.stat().st_size else {}
    summary_path.unlink()
    summary["passed"] = failures == 0 and tests == 1 and summary.get("error") is None
    summary["log"] = str(built.directory / "cli" / "sim.log")
    return summary


def cmd_sim(args) -> int:
    from peforge.progress import Progress

    pe, params = resolve(args.pe, args.set, args.config)
    if args.vectors < 1:
        raise UsageError(f"--vectors must be a positive integer, not {args.vectors}")
    for name in ("p_valid", "p_ready"):
        value = getattr(args, name)
        if not 0.05 <= value <= 1.0:
            raise UsageError(f"--{name.replace('_', '-')} must be a probability from 0.05 to 1, not {value}")
    with Progress(f"sim {pe.name}") as progress:
        s = run_random_sim(pe, params, vectors=args.vectors, seed=args.seed, waves=args.waves,
                           p_valid=args.p_valid, p_ready=args.p_ready, progress=progress)
    verdict = "PASS" if s["passed"] else "FAIL"
    rate = s.get("cycles", 0) / s["seconds"] if s.get("seconds") else 0.0
    print(f"{verdict}  {pe.name} {params.digest()}: {s.get('vectors', 0)} vectors, "
          f"{s.get('beats', 0)} beats, {s.get('cycles', 0)} cycles with stalls "
          f"(p_valid={args.p_valid}, p_ready={args.p_ready}) against the golden model; "
          f"{rate:,.0f} cycles/s")
    if not s["passed"]:
        print(f"  {s.get('error') or 'simulation failed'}\n  log: {s['log']}")
    if args.waves:
        print(f"  waves: {Path(s['log']).parent / 'dump.vcd'}")
    return 0 if s["passed"] else 1


def run_synth(pe, params, *, target: str, seeds, wrap, freq, progress=None):
    from synth import synthesize
    from tb.runner import build_root

    directory = build_root() / "synth" / f"{pe.name}-{params.digest()}-{target}"
    return synthesize(pe.build(params), name=pe.top, target=target, build_dir=directory,
                      seeds=tuple(seeds), wrap=wrap, freq_mhz=freq,
                      progress=progress.step if progress else None)


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(s < 1 for s in seeds):
        raise UsageError(f"--seeds must be a comma-separated list of positive integers, not {text!r}")
    return seeds


def _wrap(text: str):
    return {"auto": None, "yes": True, "no": False}[text]


def cmd_synth(args) -> int:
    from peforge.progress import Progress
    from peforge.report import synth_table

    pe, params = resolve(args.pe, args.set, args.config)
    with Progress(f"synth {pe.name} for {args.target}", enabled=not args.json) as progress:
        result = run_synth(pe, params, target=args.target, seeds=_seeds(args.seeds),
                           wrap=_wrap(args.wrap), freq=args.freq, progress=progress)
    if args.json:
        print(json.dumps({"pe": pe.name, "params": params.to_dict(), **result.to_dict()}, indent=2))
    else:
        print(synth_table([(pe.name, params, result)]))
    return 0


def cmd_demo(args) -> int:
    from peforge.demo import run_demo

    return run_demo(vectors=args.vectors, target=args.target)


def cmd_e2e(args) -> int:
    from sw.models import SCHEMES

    for scheme in args.scheme:
        if scheme not in SCHEMES:
            raise UsageError(f"--scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
    from peforge.e2e import run_e2e

    return run_e2e(list(dict.fromkeys(args.scheme)) or None, out_dir=Path(args.out) if args.out else None)


def cmd_bench(args) -> int:
    from peforge.bench import run_bench

    return run_bench(args.suite, out_dir=Path(args.out), seeds=_seeds(args.seeds))


# -- entry point ---------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    from synth import TARGETS

    parser = argparse.ArgumentParser(
        prog="peforge", description="Generate, verify and measure PEs for compressed neural networks.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list PEs and their parameters with defaults")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("generate", help="write Verilog and a JSON manifest for one configuration")
    _add_params_options(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    p.add_argument("--lint", action="store_true", help="also run Verilator lint on the output")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("sim", help="random vectors with stalls in Verilator, checked against golden")
    _add_params_options(p)
    p.add_argument("--vectors", type=int, default=200, help="number of random vectors (default 200)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--p-valid", type=float, default=0.5, help="source offers a beat with this probability")
    p.add_argument("--p-ready", type=float, default=0.5, help="sink is ready with this probability")
    p.add_argument("--waves", action="store_true", help="record a VCD (separate build)")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("synth", help="yosys + nextpnr: LUT/FF/DSP/BRAM and Fmax")
    _add_params_options(p)
    p.add_argument("--target", default="ecp5-85k", choices=sorted(TARGETS), help="FPGA flow")
    p.add_argument("--seeds", default="1", help="nextpnr seeds, e.g. 1,2,3 (Fmax is the median)")
    p.add_argument("--wrap", default="auto", choices=["auto", "yes", "no"],
                   help="pin-limited wrapper (auto: only when the ports outnumber the pins)")
    p.add_argument("--freq", type=float, default=None, help="nextpnr target MHz (default per target)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("demo", help="every PE: generate, simulate against golden, synthesise; one table")
    p.add_argument("--vectors", type=int, default=200, help="random vectors per PE (default 200)")
    p.add_argument("--target", default="ecp5-85k", choices=sorted(TARGETS))
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("e2e", help="compressed digits classifiers with every multiply-accumulate in the RTL")
    p.add_argument("--scheme", action="append", default=[], metavar="S",
                   help="fixed8, sp2, msq, nm, circulant or forms (repeatable; default: all)")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default build/demo)")
    p.set_defaults(func=cmd_e2e)

    p = sub.add_parser("bench", help="synthesis benchmarks written to docs/results/")
    p.add_argument("suite", nargs="*", help="suites to run (default: all)")
    p.add_argument("--out", default="docs/results", help="output directory (default docs/results)")
    p.add_argument("--seeds", default="1,2,3", help="nextpnr seeds (default 1,2,3; Fmax median)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from synth import SynthError
    from tb.runner import SimulationError

    try:
        return args.func(args)
    except UsageError as exc:
        print(f"peforge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (SimulationError, SynthError) as exc:
        print(f"peforge {args.command}: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("peforge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
