"""One point of a sweep, evaluated on a Dask worker (:func:`evaluate_point`): its network (trained or loaded, cached
on disk), golden accuracy, compile, synthesis (:mod:`peforge.synth_cache`) and record; :func:`run_point` runs it in
a child process killed at the timeout, :func:`rtl_point` runs the test set through its RTL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from peforge.explore.space import model_digest

__all__ = ["evaluate_point", "compile_point", "synthesise", "SynthFailed", "run_point", "rtl_point"]


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
    ``slowest``) and then each layer's own ``lanes``/``pes``/``requant``/``impl``/``reuse``
    (:data:`peforge.explore.model.FOLD_KEYS`)."""
    from peforge.explore.model import FOLD_KEYS
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
                for key in FOLD_KEYS if key in choice}
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
                      schemes=[p.label for p in compiled.plans])
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
    proc = subprocess.Popen([sys.executable, "-c", "from peforge.explore.point import _child_main; _child_main()"],
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
