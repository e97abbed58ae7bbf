"""The ``peforge`` command line: list, generate, sim, synth, compile, infer, export, board, demo, e2e, bench.

Bad input (an unknown PE, a parameter out of range, a missing config file) prints one line naming the
parameter and what is allowed, and exits with status 2; a failed check exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from peforge.errors import UsageError

__all__ = ["main"]


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
    from peforge.hw import registry

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
    parser.add_argument("pe", help="PE name (see `peforge list`); for synth also a `peforge compile` directory")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override one parameter (repeatable; nested with dots, e.g. fmt.bits=5)")
    parser.add_argument("--config", metavar="FILE.json",
                        help="parameters from a JSON file (a params dict or a generated manifest)")


# -- commands ------------------------------------------------------------------------------------

def cmd_list(args) -> int:
    from peforge.hw import registry

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
    from peforge.hw.verilog import lint, write_design

    pe, params = resolve(args.pe, args.set, args.config)
    out = Path(args.output)
    manifest = write_design(pe, params, out)
    if args.lint:
        try:
            lint(out / f"{pe.top}.v", pe.top)
        except RuntimeError as exc:  # generated Verilog that does not lint is a bug: report it, exit 1
            print(f"peforge generate: failed: {exc}", file=sys.stderr)
            return 1
    print(f"wrote {out / (pe.top + '.v')} and {out / (pe.top + '.json')}"
          + (" (Verilator lint clean)" if args.lint else ""))
    derived = ", ".join(f"{k}={v}" for k, v in manifest["derived"].items())
    print(f"{pe.name} {params.digest()}: {derived}")
    return 0


def cmd_sim(args) -> int:
    from peforge.progress import Progress
    from peforge.tb.runner import random_sim

    pe, params = resolve(args.pe, args.set, args.config)
    if args.vectors < 1:
        raise UsageError(f"--vectors must be a positive integer, not {args.vectors}")
    for name in ("p_valid", "p_ready"):
        value = getattr(args, name)
        if not 0.05 <= value <= 1.0:
            raise UsageError(f"--{name.replace('_', '-')} must be a probability from 0.05 to 1, not {value}")
    with Progress(f"sim {pe.name}") as progress:
        s = random_sim(pe, params, vectors=args.vectors, seed=args.seed, waves=args.waves,
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
    from peforge.synth import for_target, synthesize_network, synthesize_pe

    _check_synth_path(args.pe)
    if (Path(args.pe) / "compiled.json").is_file():  # a compiled network synthesises like a PE
        if args.set or args.config:
            raise UsageError("--set and --config must not be given for a compiled network (fold it with "
                             "`peforge compile --set layer.N.lanes=..`), not "
                             f"{' '.join(args.set) or args.config!r}")
        compiled = _load_compiled(args.pe)
        with Progress(f"synth network {compiled.digest()} for {args.target}", enabled=not args.json) as progress:
            result = synthesize_network(compiled, target=args.target, seeds=_seeds(args.seeds),
                                        wrap=_wrap(args.wrap), freq=args.freq, progress=progress)
        rate = None if result.fmax_mhz is None else result.fmax_mhz * 1e6 / compiled.interval
        if args.json:
            print(json.dumps({"network": args.pe, "digest": compiled.digest(), "folding": compiled.folding.to_list(),
                              "predicted_interval": compiled.interval, **result.to_dict(),
                              "inferences_per_s_predicted": rate}, indent=2))
        else:
            from peforge.report import text_table

            folding = " ".join(f"{n}:{f.text()}" for n, f in enumerate(compiled.folding.layers))
            print(text_table(["network", "folding (layer:lanes x pes)", "target", "LUT", "FF", "DSP", "BRAM",
                              "Fmax MHz", "wrapped"],
                             [[compiled.digest(), folding, result.target, str(result.lut), str(result.ff),
                               str(result.dsp), str(result.bram),
                               "-" if result.fmax_mhz is None else f"{result.fmax_mhz:.1f}",
                               "yes" if result.wrapped else "no"]]))
            if rate is not None:
                print(f"inferences/s = Fmax / interval = {result.fmax_mhz:.1f} MHz / {compiled.interval} cycles "
                      f"(predicted; `peforge infer --rtl` measures the interval) = {rate:,.0f}")
        return 0
    pe, params = resolve(args.pe, args.set, args.config)
    params = for_target(params, args.target)  # the target's facts (DSP width), as synthesize_pe builds it
    with Progress(f"synth {pe.name} for {args.target}", enabled=not args.json) as progress:
        result = synthesize_pe(pe, params, target=args.target, seeds=_seeds(args.seeds),
                           wrap=_wrap(args.wrap), freq=args.freq, progress=progress)
    if args.json:
        print(json.dumps({"pe": pe.name, "params": params.to_dict(), **result.to_dict()}, indent=2))
    else:
        print(synth_table([(pe.name, params, result)]))
    return 0


def _check_synth_path(name: str) -> None:
    """A path given to ``synth`` that is not a compiled network directory (nor a PE name): say what it is and
    what to run first."""
    from peforge.hw import registry

    path = Path(name)
    if name in registry.REGISTRY or not path.exists() or (path / "compiled.json").is_file():
        return
    compile_first = f"run `peforge compile {name} -o OUT` first, then `peforge synth OUT`"
    if (path / "network.json").is_file():
        raise UsageError(f"PE must be a PE name or a compiled network directory, not the saved network directory "
                         f"{name!r} ({compile_first})")
    if path.is_file() and path.suffix == ".onnx":
        raise UsageError(f"PE must be a PE name or a compiled network directory, not the QONNX model {name!r} "
                         f"({compile_first})")
    kind = "directory" if path.is_dir() else "file"
    raise UsageError(f"PE must be a PE name (see `peforge list`) or a compiled network directory (with "
                     f"compiled.json, written by `peforge compile`), not the {kind} {name!r}")


def _load_network(path: str, settings: list[str] = ()):
    """``(network, the settings left)``: a saved network directory (``network.json`` + ``weights.npz``) or a
    QONNX ``.onnx`` model (:func:`sw.from_qonnx.from_qonnx`, taking the ``layer.N.scheme`` settings), validated;
    one-line errors."""
    from peforge.sw import network as net

    if str(path).endswith(".onnx"):
        return _load_qonnx(path, settings)
    if not Path(path).exists():
        raise UsageError(f"Network must be a saved network directory, not {path!r} (no such file or directory)")
    try:
        return net.load(path), list(settings)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None


#: Random input samples on which `peforge compile MODEL.onnx` compares the network with execute_onnx.
QONNX_CHECK_SAMPLES = 256


def _load_qonnx(path: str, settings: list[str], check: bool = True):
    """A QONNX model as a network (``layer.N.scheme`` settings taken out), with its comparison against
    ``execute_onnx`` printed (``check``)."""
    import numpy as np

    from peforge.sw.from_qonnx import compare, from_qonnx

    if not Path(path).is_file():
        raise UsageError(f"Network must be a saved network directory or a QONNX .onnx file, not {path!r} (no such "
                         f"file)")
    schemes, rest = {}, []
    for name, value in _settings(settings).items():
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "layer" and parts[2] == "scheme":
            if not parts[1].isdigit():
                raise UsageError(f"Setting {name!r} must be layer.N.scheme with N a layer index, not {parts[1]!r}")
            schemes[int(parts[1])] = value
        else:
            rest.append(f"{name}={value}")
    try:
        network = from_qonnx(path, schemes=schemes)
        if not check:
            return network, rest
        x = np.random.default_rng(0).integers(*network.input.range, size=(QONNX_CHECK_SAMPLES, network.in_features),
                                              endpoint=True)
        result = compare(path, network, x)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    print(f"QONNX {path}: {len(network.layers)} layers, input = codes of scale {network.input.scale:g}, output = "
          f"logits x {network.out_scale or network.input.scale:g}; against execute_onnx on {QONNX_CHECK_SAMPLES} random inputs: "
          f"{result['differ']} of {result['outputs']} outputs differ (max {result['max_lsb']:g} output LSB)")
    return network, rest


def _load_compiled(path: str):
    from peforge.hw.network import load_compiled

    try:
        return load_compiled(path)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None


def cmd_compile(args) -> int:
    from peforge.hw.network import CompiledNetwork
    from peforge.report import text_table

    network, fold_settings = _load_network(args.network, args.set)
    try:
        budget = None
        if args.target is not None:
            from peforge.synth import TARGETS

            budget = TARGETS[args.target].budget()
        compiled = CompiledNetwork.default(network, budget).with_settings(_settings(fold_settings))
        if args.target is not None:
            from peforge.synth import TARGETS, check_fits

            check_fits(compiled, args.target)
            compiled = compiled.for_target(TARGETS[args.target].facts())   # its DSP primitives, as synthesised
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"Output must be a directory, not the file {args.output!r}")
    manifest = compiled.write(out)  # generated in full, then moved in: a failure leaves no half-written directory
    rows = [[str(r["layer"]), r["scheme"] if r["kind"] in ("dense", r["scheme"]) else f"{r['kind']} {r['scheme']}",
             f"{r['in']} -> {r['out']}", str(r["lanes"]), str(r["pes"]),
             str(r["requant"]), "+".join(sorted(set(r["pes_used"]))) or _impl_text(r), str(r["multipliers"]),
             str(r["load_cycles"]),
             str(r["compute_cycles"]), str(r["drain_cycles"]), str(r["cycles"])]
            for r in manifest["layers"]]
    print(text_table(["layer", "scheme", "size", "lanes", "pes", "requant", "PE", "multipliers", "load", "compute",
                      "drain", "cycles"], rows))
    print(f"predicted interval: {manifest['predicted_interval']} cycles per sample (the slowest engine); "
          f"cycles per sample and engine, without stalls")
    print(f"wrote {out / 'accelerator.v'}, {out / 'compiled.json'}, the network and {out / 'memories'}/ "
          f"(digest {manifest['digest']})")
    return 0


def _impl_text(row: dict) -> str:
    """How the compile table names a layer without PE slots: ``unrolled`` (``unrolled, reuse 4``), else ``-``."""
    if row.get("impl") != "unrolled":
        return "-"
    return "unrolled" + (f", reuse {row['reuse']}" if row.get("reuse", 1) > 1 else "")


def _infer_target(path: str, rtl: bool):
    """``(network, compiled or None, quantize or None)`` of what ``infer`` runs: a compiled directory, or (golden
    only) a QONNX model, whose own input ``Quant`` then quantises real inputs."""
    if not (str(path).endswith(".onnx") and Path(path).is_file()):
        compiled = _load_compiled(path)  # also says what is missing
        return compiled.network, compiled, None
    if rtl:
        raise UsageError(f"--rtl must be given a compiled directory (run `peforge compile {path} -o DIR` first, then "
                         f"`peforge infer DIR --rtl`), not the QONNX model {path!r}")
    from peforge.sw.from_qonnx import quantize_input

    network, _ = _load_qonnx(path, [], check=False)
    return network, None, lambda x: quantize_input(path, x)


def cmd_infer(args) -> int:
    import numpy as np

    from peforge.arrays import npy_output, read_inputs, read_labels
    network, compiled, quantize = _infer_target(args.compiled, args.rtl)
    scale = network.out_scale if args.real else None
    if args.real and scale is None:
        raise UsageError("--real must be given a network with an output scale (the last layer's out_scale: every "
                         "QONNX and from_torch model), not one without")
    samples = read_inputs(args.input, network, quantize=quantize)
    x, golden = samples.codes, samples.golden
    labels = read_labels(args.labels, len(x)) if args.labels else None
    output = npy_output(args.output) if args.output else None
    logits = golden
    line = f"golden: {len(x)} samples"
    if samples.real:
        line += f" (real inputs quantised by the input scale {network.input.scale:g})"
    exit_code = 0
    if args.rtl:
        from peforge.progress import Progress
        from peforge.tb.network import rtl_infer

        with Progress(f"infer {len(x)} samples in Verilator") as progress:
            progress.step("Verilator build (cached by digest) and simulation")
            logits, stats = rtl_infer(compiled, x)
        same = int(np.sum(np.all(logits == golden, axis=1)))
        line = (f"RTL: {len(x)} samples, RTL == golden on {same}/{len(x)}; latency {stats.latency} cycles, "
                f"interval {stats.interval:g} cycles per sample (predicted {compiled.interval}), "
                f"{stats.cycles} cycles in all (counted in the simulation)")
        exit_code = 0 if same == len(x) else 1
    if labels is not None:
        accuracy = float(np.mean(np.argmax(logits, axis=1) == labels))
        line += f"; accuracy {100 * accuracy:.2f} %"
    if output is not None:
        if args.real:
            np.save(output, np.asarray(logits, np.float64) * scale)
            line += f"; real outputs (logits x {scale:g}) written to {output}"
        else:
            np.save(output, logits)
            line += f"; logits written to {output}"
    print(line)
    return exit_code


def cmd_export(args) -> int:
    import onnx

    from peforge.sw.to_qonnx import activation_scale, output_scale, save_qonnx

    if (Path(args.network) / "compiled.json").is_file():
        network = _load_compiled(args.network).network
    else:
        network, _ = _load_network(args.network)
    out = Path(args.output)
    if out.suffix != ".onnx" or out.is_dir():
        raise UsageError(f"Output must be an .onnx file path, not {args.output!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_qonnx(network, out)
    kinds = [n.op_type for n in onnx.load(str(out)).graph.node if n.op_type != "Quant"]
    print(f"wrote {out}: {len(network.layers)} layers as {', '.join(kinds)}; input = codes x "
          f"{activation_scale(network.input.scale):g}, output = logits x {output_scale(network):g}")
    return 0


def cmd_demo(args) -> int:
    from peforge.demo import run_demo

    return run_demo(vectors=args.vectors, target=args.target)


def cmd_e2e(args) -> int:
    from peforge.digits import SCHEMES

    for scheme in args.scheme:
        if scheme not in SCHEMES:
            raise UsageError(f"--scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
    from peforge.e2e import run_e2e

    return run_e2e(list(dict.fromkeys(args.scheme)) or None, out_dir=Path(args.out) if args.out else None,
                   settings=_settings(args.set), synth=not args.no_synth)


def cmd_bench(args) -> int:
    from peforge.bench.run import run_bench

    return run_bench(args.suite, out_dir=Path(args.out), seeds=_seeds(args.seeds), render_only=args.render_only)


# -- entry point ---------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    from peforge.synth import TARGETS

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

    p = sub.add_parser("compile", help="a saved network as one streaming accelerator: Verilog, manifest, memories")
    p.add_argument("network", help="saved network directory (network.json + weights.npz)")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="output directory (written in full or not at all; peforge's files in an existing one are "
                        "replaced, stale memories/*.hex removed, other files kept)")
    p.add_argument("--set", action="append", default=[], metavar="layer.N.lanes=V",
                   help="fold layer N (from 0): layer.N.lanes (input elements per beat), layer.N.pes (PE slots), "
                        "layer.N.requant (cycles per requantised result), layer.N.impl (folded or unrolled: "
                        "constant adder graphs), layer.N.reuse (an unrolled layer's cycles per vector), or the whole "
                        "folding as tables write it: layer.N=16x2, 1x7/r9, u or u/reuse4")
    p.add_argument("--target", choices=("ecp5-85k", "ice40-up5k"), default=None,
                   help="fold for this device's DSPs, instantiate its DSP primitive in the PE slots (simulated "
                        "with its model) and refuse a network its block RAM cannot hold (default: fold for speed, "
                        "no device limits, generic Verilog)")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("infer", help="run a network: golden model, or the compiled RTL in Verilator with --rtl")
    p.add_argument("compiled", metavar="DIR",
                   help="directory written by `peforge compile` (golden or --rtl); or, golden only, a QONNX "
                        "MODEL.onnx")
    p.add_argument("--input", required=True, metavar="X.npy",
                   help="samples in the model's input shape [N, C, H, W] / [N, C, L] or flattened [N, features]: "
                        "integer input codes, or real values (a float array) quantised by the model's input scale")
    p.add_argument("--output", metavar="Y.npy", help="write the logits [N, classes] here (.npy is appended to a "
                                                     "name without it, as numpy does; the path written is printed)")
    p.add_argument("--real", action="store_true",
                   help="write real-valued outputs to --output: the logits x the last layer's output scale (float64)")
    p.add_argument("--labels", metavar="L.npy", help="labels [N]: print the accuracy")
    p.add_argument("--rtl", action="store_true", help="simulate the accelerator (Verilator) and compare with golden")
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("export", help="a compiled (or saved) network as a QONNX model that execute_onnx runs exactly")
    p.add_argument("network", metavar="DIR", help="directory written by `peforge compile` (or a saved network)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.onnx", help="output QONNX file")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="every PE: generate, simulate against golden, synthesise; one table")
    p.add_argument("--vectors", type=int, default=200, help="random vectors per PE (default 200)")
    p.add_argument("--target", default="ecp5-85k", choices=sorted(TARGETS))
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("e2e", help="compressed digits classifiers compiled into accelerators: RTL, cycles, synthesis")
    p.add_argument("--scheme", action="append", default=[], metavar="S",
                   help="fixed, sp2, msq, nm, circulant or crossbar (repeatable; default: all)")
    p.add_argument("--set", action="append", default=[], metavar="layer.N.lanes=V",
                   help="refold every scheme's default folding: layer.N.lanes or layer.N.pes (repeatable)")
    p.add_argument("--no-synth", action="store_true",
                   help="skip synthesis (no LUT/FF/DSP/BRAM/Fmax, inferences/s or UP5K fit)")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default build/demo)")
    p.set_defaults(func=cmd_e2e)

    p = sub.add_parser("bench", help="synthesis benchmarks: docs/results/<suite>.json, rendered to .md")
    p.add_argument("suite", nargs="*", help="suites to run (default: all)")
    p.add_argument("--out", default="docs/results", help="output directory (default docs/results)")
    p.add_argument("--seeds", default="1,2,3", help="nextpnr seeds (default 1,2,3; Fmax median)")
    p.add_argument("--render-only", action="store_true",
                   help="synthesise nothing: render the Markdown pages again from the JSON results")
    p.set_defaults(func=cmd_bench)

    from peforge import board as board_cli  # `peforge board build|run`

    board_cli.add_parser(sub)
    from peforge.explore import cli as explore_cli  # `peforge explore SPACE -o DIR`

    explore_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from peforge.synth import DoesNotFit, SynthError
    from peforge.tb.runner import SimulationError

    command = getattr(args, "command_name", args.command)  # "board build": a subcommand's own name
    try:
        return args.func(args)
    except (UsageError, DoesNotFit) as exc:
        print(f"peforge {command}: error: {exc}", file=sys.stderr)
        return 2
    except (SimulationError, SynthError) as exc:
        print(f"peforge {command}: failed: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `peforge list | head`: the reader left; nothing to report
        sys.stderr.close()
        return 0
    except OSError as exc:  # a path that cannot be read or written: the user's input, not a bug
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"peforge {command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("peforge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
