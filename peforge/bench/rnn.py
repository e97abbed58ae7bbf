"""``peforge bench rnn``: recurrent accelerators (issue 33): LSTMs and GRUs of every scheme compiled whole, run in
Verilator against the golden model and synthesised.

Two tasks, both offline:

* **digits as sequences**: sklearn's digits of :func:`peforge.digits.load_split` (1437 training, 360 test images)
  read as ``T = 8`` rows (time steps) of ``F = 8`` pixels, the pixels as 5-bit unsigned integers (``1/16``); an
  ``lstm`` or ``gru`` of ``H = 32`` (peforge's trainable :class:`sw.rnn_torch.QuantLSTM` / ``QuantGRU`` of the
  scheme) and a dense head of 10, as ``docs/examples/rnn_digits.py``: :data:`DIGITS_STEPS` full-batch Adam steps
  (learning rate :data:`DIGITS_LR`), seeded, one torch thread.
* **a synthetic task** (:func:`synthetic_task`, ``T = 32``): ``F = 8`` Gaussian features per step; is the sum of
  feature 0 over the first 16 steps larger than over the last 16? An LSTM of ``H = 16`` and a dense head of 2,
  :data:`SYNTH_STEPS` full-batch Adam steps on 512 sequences, tested on 256 others.

Every model is exported by :func:`sw.from_torch.from_torch` (default recurrent formats: 8-bit hidden state,
10-bit table codes, ``P = 12``), compiled with the default folding (:meth:`hw.network.CompiledNetwork.default`) and
every test sequence runs through the accelerator in one Verilator simulation (:func:`tb.network.rtl_infer`: the
measured interval and latency); a row whose RTL logits differ from the golden ones on any sequence is an error
row and is not synthesised. Then each is synthesised whole in the pin wrapper through
:func:`peforge.synth_cache.synthesise` (ECP5-85F, one seed). Each digits model is compiled again with the
iCE40-UP5K budget: a refusal is the row's note (its one-line message); one that compiles is simulated and
synthesised for the UP5K.

``busy`` is the recurrent engine's useful MACs per sequence (:attr:`EnginePlan.macs`, both gate matrices over the
``T`` steps; N:M only the kept weights) over its multiplier lanes (:attr:`EnginePlan.multipliers`) times the
measured interval; circulant matrices run on FFT PEs without multiplier lanes, so they have none.
``sequences/s = Fmax / measured interval``, ``time steps/s = T x sequences/s``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from peforge.bench.cnn import compile_for, layer_rows, plain_document, refusal_record, synthesis_fields
from peforge.bench.common import TARGET, header, suite_document, target_table
from peforge.progress import Progress
from peforge.report import markdown_table
from peforge.report import or_dash as _num

__all__ = ["rnn_suite", "render", "figures", "MODELS", "SYNTH_MODELS", "build_digits", "build_synthetic",
           "synthetic_task", "reading"]

UP5K = "ice40-up5k"
#: digits read as sequences: time steps (rows), features (pixels per row), hidden size
DIGITS_T, DIGITS_F, DIGITS_H = 8, 8, 32
DIGITS_STEPS, DIGITS_LR = 150, 0.01
#: the synthetic task: time steps, features, hidden size, training and test sequences
SYNTH_T, SYNTH_F, SYNTH_H = 32, 8, 16
SYNTH_TRAIN, SYNTH_TEST = 512, 256
SYNTH_STEPS, SYNTH_LR = 150, 0.01
#: (cell, scheme, circulant block or None, circulant spectra bits or None: from_torch's 12) of the digits rows, in
#: the order of the page; the last is the LSTM circulant k = 8 model again, its spectra rounded to 8 bits at export
MODELS = tuple((cell, scheme, block, None) for cell in ("lstm", "gru")
               for scheme, block in (("fixed", None), ("sp2", None), ("nm", None), ("circulant", 4),
                                     ("circulant", 8))) + (("lstm", "circulant", 8, 8),)
#: the synthetic task's rows
SYNTH_MODELS = (("lstm", "fixed", None, None), ("lstm", "circulant", 8, None))
#: issue 33: circulant k = 8 stores this many times fewer weight bits than the dense LSTM ...
BITS_RATIO_TARGET = 7.0
#: ... at most this much accuracy below it (points of accuracy, as a fraction)
LOSS_TARGET = 0.02
BUSY_TARGET = 0.9
PENDING = "synthesis not run (the bench stopped before it)"


def model_label(cell: str, scheme: str, block: int | None, spectra: int | None = None) -> str:
    """``"LSTM fixed"``, ``"GRU circulant k=8"``, ``"LSTM circulant k=8 (8-bit spectra)"``."""
    return f"{cell.upper()} {scheme}" + (f" k={block}" if block else "") + (
        f" ({spectra}-bit spectra)" if spectra else "")


# -- the models --------------------------------------------------------------------------------------------------

def _recurrent(cell: str, scheme: str, block: int | None, features: int, hidden: int):
    from peforge.sw.rnn_torch import QuantGRU, QuantLSTM

    cls = QuantLSTM if cell == "lstm" else QuantGRU
    return cls(features, hidden, scheme=scheme, **({"block": block} if block else {}))


def _train(model, x, y, steps: int, lr: float) -> None:
    """Full-batch Adam on cross-entropy."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()


def _built(model, network, x_test_real, y_test, seconds: float, **training) -> dict:
    """What a trained model gives the suite: its network, float accuracy on the test set and the training."""
    import torch

    with torch.no_grad():
        float_acc = float((model(x_test_real).argmax(1).numpy() == y_test).mean())
    rnn = network.layers[0]
    return {"network": network, "float_accuracy": float_acc, "train_seconds": round(seconds, 1),
            "weight_bits": {"w": int(rnn.w.storage_bits()), "u": int(rnn.u.storage_bits())}, **training}


def build_digits(cell: str, scheme: str, block: int | None, spectra: int | None = None, *, seed: int = 0) -> dict:
    """Train the digits sequence model of ``(cell, scheme, block)`` and export it (5-bit unsigned pixels; circulant
    spectra of ``spectra`` bits, default from_torch's)."""
    from peforge import digits
    from peforge.sw.from_torch import from_torch

    split = digits.load_split()
    with digits.one_thread() as torch:
        start = time.perf_counter()
        x, y, x_test = digits.split_tensors(split)
        x, x_test = x.reshape(-1, DIGITS_T, DIGITS_F), x_test.reshape(-1, DIGITS_T, DIGITS_F)
        torch.manual_seed(seed)
        model = torch.nn.Sequential(_recurrent(cell, scheme, block, DIGITS_F, DIGITS_H),
                                    torch.nn.Linear(DIGITS_H, 10))
        _train(model, x, y, DIGITS_STEPS, DIGITS_LR)
        network = from_torch(model, x, input_bits=digits.INPUT_BITS, input_signed=False,
                             input_scale=1.0 / digits.PIXEL_MAX, circulant={"w_bits": spectra} if spectra else None)
        return _built(model, network, x_test, split.y_test, time.perf_counter() - start, steps=DIGITS_STEPS,
                      lr=DIGITS_LR, train_size=len(x))


def synthetic_task(n: int, seed: int, steps: int = SYNTH_T, features: int = SYNTH_F):
    """``(x [n, steps, features] float32 tensor, y [n])``: standard normal features; the label is whether feature 0
    sums to more over the first half of the steps than over the second (``tests/test_from_torch_rnn.py``'s task)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, steps, features, generator=g)
    y = ((x[:, :steps // 2, 0].sum(1) - x[:, steps // 2:, 0].sum(1)) > 0).long()
    return x, y


def build_synthetic(cell: str, scheme: str, block: int | None, spectra: int | None = None, *, seed: int = 0) -> dict:
    """Train the synthetic task's model of ``(cell, scheme, block)`` and export it (8-bit signed inputs)."""
    from peforge import digits
    from peforge.sw.from_torch import from_torch

    (x, y), (x_test, y_test) = synthetic_task(SYNTH_TRAIN, 0), synthetic_task(SYNTH_TEST, 1)
    with digits.one_thread() as torch:
        start = time.perf_counter()
        torch.manual_seed(seed)
        model = torch.nn.Sequential(_recurrent(cell, scheme, block, SYNTH_F, SYNTH_H), torch.nn.Linear(SYNTH_H, 2))
        _train(model, x, y, SYNTH_STEPS, SYNTH_LR)
        network = from_torch(model, x, circulant={"w_bits": spectra} if spectra else None)
        built = _built(model, network, x_test, y_test.numpy(), time.perf_counter() - start, steps=SYNTH_STEPS,
                       lr=SYNTH_LR, train_size=len(x))
    built["x_test"] = network.quantize_input(x_test.numpy())
    built["y_test"] = y_test.numpy()
    return built


# -- measuring ---------------------------------------------------------------------------------------------------

def _accuracy(logits, labels) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def recurrent_busy(compiled, interval) -> float | None:
    """The recurrent engine's useful MACs / (its multiplier lanes x ``interval``); None without lanes."""
    plan = compiled.plans[0]
    if not plan.multipliers or not interval:
        return None
    return plan.macs / (plan.multipliers * interval)


def measure_rtl(label: str, compiled, x, labels, golden, *, kind: str, target: str, progress, **fields) -> dict:
    """One accelerator in Verilator: every sequence of ``x``, RTL == golden checked on each (a mismatch makes the
    row an error row), interval and latency measured. Synthesis comes later (:func:`synthesise_row`)."""
    from peforge.tb.network import rtl_infer

    progress.step(f"RTL: {len(x)} sequences through {compiled.digest()}")
    start = time.monotonic()
    rtl, stats = rtl_infer(compiled, x)
    plan = compiled.plans[0]
    equal = int(np.sum(np.all(rtl == golden, axis=1)))
    record = {"label": label, "pe": "network", "kind": kind, "target": target,
              "params": {"folding": compiled.folding.to_list(), "network_digest": compiled.network.digest()},
              "digest": compiled.digest(), "wrapped": True, "synth": None, "samples": len(x), "rtl_equal": equal,
              "rtl_accuracy": _accuracy(rtl, labels), "interval": stats.interval,
              "predicted_interval": compiled.interval, "latency": stats.latency,
              "sim_seconds": round(time.monotonic() - start, 1), "multipliers": plan.multipliers, "macs": plan.macs,
              "busy": recurrent_busy(compiled, stats.interval), "layers": layer_rows(compiled, target),
              "sequences_per_s": None, "steps_per_s": None, **fields}
    if equal != len(x):   # never silently accepted: the row says so and is not synthesised
        record["error"] = f"RTL != golden on {len(x) - equal} of {len(x)} test sequences"
    else:
        record["error"] = PENDING
    return record


def synthesise_row(record: dict, compiled, seeds, progress) -> None:
    """Synthesise a simulated row (RTL == golden) for its target; fills ``synth``, sequences/s and steps/s."""
    fields = synthesis_fields(compiled, record["target"], seeds, record["interval"], progress)
    per_s = fields.pop("inferences_per_s", None)
    record.update(fields)
    if record.get("synth") and record.get("error") == PENDING:
        del record["error"]
    elif record.get("error") == PENDING:
        record["error"] = "synthesis failed"
    if per_s:
        record["sequences_per_s"] = per_s
        record["steps_per_s"] = per_s * record["seq_len"]


def _failure(label: str, kind: str, target: str, compiled, exc: Exception, **fields) -> dict:
    message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return {"label": label, "pe": "network", "kind": kind, "target": target,
            "params": {"folding": compiled.folding.to_list(), "network_digest": compiled.network.digest()},
            "digest": compiled.digest(), "wrapped": True, "synth": None, "samples": 0, "rtl_equal": 0,
            "rtl_accuracy": None, "interval": None, "predicted_interval": compiled.interval, "latency": None,
            "multipliers": compiled.plans[0].multipliers, "macs": compiled.plans[0].macs, "busy": None,
            "layers": layer_rows(compiled, target), "sequences_per_s": None, "steps_per_s": None, "error": message,
            **fields}


def _say(record: dict) -> None:
    s = record.get("synth") or {}
    if record.get("refused"):
        print(f"  {record['label']:<28} {record['target']:<10} REFUSED: {record['refused']}", flush=True)
        return
    if record.get("interval") is None:
        print(f"  {record['label']:<28} {record['target']:<10} FAILED: {record.get('error')}", flush=True)
        return
    print(f"  {record['label']:<28} {record['target']:<10} interval {record['interval']:g} (predicted "
          f"{record['predicted_interval']}), RTL == golden {record['rtl_equal']}/{record['samples']}, "
          + (f"{s['lut']} LUT {s['ff']} FF {s['dsp']} DSP {s['bram']} BRAM {s['fmax_mhz'] or 0:.1f} MHz"
             if s else f"{record.get('error')}"), flush=True)


def checkpoint_path() -> Path:
    from peforge.hw.verilog import build_root

    return build_root() / "bench-rnn" / "partial.json"


def _checkpoint(seeds, records, study) -> None:
    """The document so far, valid under the results schema (an interrupted bench keeps what it measured; rows
    not yet synthesised say so)."""
    path = checkpoint_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plain_document(suite_document("rnn", seeds, records, study)), indent=1) + "\n")


def rnn_suite(seeds, *, models=MODELS, synth_models=SYNTH_MODELS, up5k: bool = True, synth: bool = True,
              limit: int | None = None) -> dict:
    """The results document of the rnn suite (one nextpnr seed: the first of ``seeds``). ``limit`` keeps the first
    test sequences only (a quick run); ``synth`` False simulates without synthesising."""
    from peforge import digits

    seeds = list(seeds)[:1]
    split = digits.load_split()
    records, study = [], {"models": {}, "tasks": {
        "digits": {"seq_len": DIGITS_T, "features": DIGITS_F, "hidden": DIGITS_H, "classes": 10,
                   "train": len(split.x_train), "test": len(split.x_test), "steps": DIGITS_STEPS, "lr": DIGITS_LR},
        "synthetic": {"seq_len": SYNTH_T, "features": SYNTH_F, "hidden": SYNTH_H, "classes": 2,
                      "train": SYNTH_TRAIN, "test": SYNTH_TEST, "steps": SYNTH_STEPS, "lr": SYNTH_LR}}}
    jobs = [("digits", m) for m in models] + [("synthetic", m) for m in synth_models]
    trained = {}
    for task, (cell, scheme, block, spectra) in jobs:   # train every model first
        label = f"{task}: {model_label(cell, scheme, block, spectra)}"
        with Progress(f"bench rnn {label}: training") as progress:
            progress.step("training and export")
            built = (build_digits if task == "digits" else build_synthetic)(cell, scheme, block, spectra)
        network = built.pop("network")
        x, y = (built.pop("x_test"), built.pop("y_test")) if task == "synthetic" else (split.x_test, split.y_test)
        if limit is not None:
            x, y = x[:limit], y[:limit]
        golden = network.golden(x)
        info = {"task": task, "cell": cell, "scheme": scheme, "block": block, "spectra_bits": spectra,
                "golden_accuracy": _accuracy(golden, y), "network_digest": network.digest(),
                "seq_len": network.layers[0].seq_len, **built}
        study["models"][label] = info
        trained[label] = network, x, y, golden
        print(f"  {label}: float {info['float_accuracy']:.2%}, golden {info['golden_accuracy']:.2%}, weight bits "
              f"{sum(info['weight_bits'].values())} ({info['train_seconds']} s)", flush=True)
    pending = []
    targets = [("default", None, TARGET)] + ([("up5k", UP5K, UP5K)] if up5k else [])
    for kind, budget, target in targets:
        for label, (network, x, y, golden) in trained.items():
            if kind == "up5k" and not label.startswith("digits"):
                continue
            info = study["models"][label]
            fields = {k: info[k] for k in ("task", "cell", "scheme", "block", "spectra_bits", "seq_len")}
            fields.update(model=label, float_accuracy=info["float_accuracy"],
                          golden_accuracy=info["golden_accuracy"], weight_bits=info["weight_bits"])
            row = f"{label} ({kind})"
            compiled, refusal = compile_for(network, budget)
            if compiled is None:
                record = refusal_record(row, kind, target, network, refusal, **fields)
            else:
                try:
                    with Progress(f"bench rnn {row} {compiled.folding.text()} on {target}") as progress:
                        record = measure_rtl(row, compiled, x, y, golden, kind=kind, target=target,
                                             progress=progress, **fields)
                except Exception as exc:   # one failed point must not lose the rest of the table
                    record = _failure(row, kind, target, compiled, exc, **fields)
                if record.get("error") == PENDING:
                    pending.append((record, compiled))
            records.append(record)
            _say(record)
            _checkpoint(seeds, records, study)
    if synth:
        for record, compiled in sorted(pending, key=lambda p: _priority(p[0])):
            with Progress(f"bench rnn {record['label']} {compiled.folding.text()} on {record['target']}") as progress:
                synthesise_row(record, compiled, seeds, progress)
            _say(record)
            _checkpoint(seeds, records, study)
    return plain_document(suite_document("rnn", seeds, records, study))


def _priority(record: dict) -> tuple:
    """Synthesis order: the rows the page's reading compares first (the digits LSTMs fixed and circulant k = 8),
    then the other ECP5 rows, the synthetic task, the UP5K last."""
    headline = record["task"] == "digits" and record["cell"] == "lstm" and (
        record["scheme"] == "fixed" or record["block"] == 8) and not record.get("spectra_bits")
    return (record["kind"] != "default", not headline, record["task"] != "digits")


# -- the page ----------------------------------------------------------------------------------------------------

def _pct(v) -> str:
    return "-" if v is None else f"{v:.2%}"


def _bits(d: dict) -> int:
    return d["weight_bits"]["w"] + d["weight_bits"]["u"]


HEAD = ["model", "float acc.", "golden acc.", "RTL acc.", "weight bits (w + u)", "folding", "interval (measured)",
        "predicted", "latency", "busy", "LUT", "FF", "DSP", "BRAM", "Fmax MHz", "time steps/s", "sequences/s",
        "RTL == golden", "note"]


def _row(d: dict) -> list[str]:
    from peforge.hw.network import folding_text

    s = d.get("synth") or {}
    w = d["weight_bits"]
    bits = f"{w['w'] + w['u']:,} ({w['w']:,} + {w['u']:,})"
    head = [d["model"].split(": ", 1)[1], _pct(d["float_accuracy"]), _pct(d["golden_accuracy"])]
    if d.get("refused"):
        return head + ["-", bits, "refused"] + ["-"] * 12 + [d["refused"]]
    busy = "- (FFT)" if d["busy"] is None and d["scheme"] == "circulant" and d["interval"] else \
        _num(d["busy"], "{:.0%}")
    return head + [_pct(d.get("rtl_accuracy")), bits, folding_text(d["params"]["folding"]),
                   _num(d["interval"], "{:g}"), _num(d["predicted_interval"], "{:,}"), _num(d["latency"], "{:,}"),
                   busy, _num(s.get("lut")), _num(s.get("ff")), _num(s.get("dsp")), _num(s.get("bram")),
                   _num(s.get("fmax_mhz"), "{:.1f}"), _num(d.get("steps_per_s"), "{:,.0f}"),
                   _num(d.get("sequences_per_s"), "{:,.0f}"), f"{d['rtl_equal']}/{d['samples']}",
                   d.get("error", "") if not s else ""]


def _find(designs, task: str, cell: str, scheme: str, block, spectra=None, kind: str = "default") -> dict | None:
    return next((d for d in designs if d.get("task") == task and d.get("cell") == cell and d.get("scheme") == scheme
                 and d.get("block") == block and d.get("spectra_bits") == spectra and d.get("kind") == kind), None)


def _compare(designs, task: str, block: int, spectra: int | None = None) -> tuple | None:
    """``(bits ratio, golden accuracy loss, dense row, circulant row)`` of the LSTM of ``task``: fixed against
    circulant ``block`` (spectra of ``spectra`` bits; None: from_torch's 12)."""
    dense = _find(designs, task, "lstm", "fixed", None)
    circ = _find(designs, task, "lstm", "circulant", block, spectra)
    if dense is None or circ is None:
        return None
    return _bits(dense) / _bits(circ), dense["golden_accuracy"] - circ["golden_accuracy"], dense, circ


def reading(doc: dict) -> str:
    """One paragraph on the measured numbers, written from the document."""
    designs = doc["designs"]
    parts = []
    simulated = [d for d in designs if d.get("interval")]
    if simulated:
        wrong = [d for d in simulated if d["rtl_equal"] != d["samples"]]
        off = [d for d in simulated if d["interval"] != d["predicted_interval"]]
        parts.append(f"{len(simulated)} accelerators ran their whole test sets in Verilator; RTL == golden on "
                     + ("every test sequence of every one" if not wrong else
                        "every sequence except in " + ", ".join(f"{d['label']} ({d['rtl_equal']}/{d['samples']})"
                                                                for d in wrong))
                     + "; the measured interval equals the predicted one "
                     + ("on every row" if not off else "except on " + ", ".join(
                         f"{d['label']} ({d['interval']:g} against {d['predicted_interval']})" for d in off)) + ".")
    cmp = _compare(designs, "digits", 8)
    if cmp:
        ratio, loss, dense, circ = cmp
        verdict = ("met" if ratio >= BITS_RATIO_TARGET and loss <= LOSS_TARGET else
                   "missed on the bits" if loss <= LOSS_TARGET else
                   "missed on the accuracy" if ratio >= BITS_RATIO_TARGET else "missed on both")
        parts.append(f"On the digits, circulant k = 8 stores {ratio:.1f}x fewer weight bits than the 8-bit dense "
                     f"LSTM ({_bits(circ):,} against {_bits(dense):,}; 12-bit spectra, k real degrees of freedom "
                     f"per k x k block) and {'loses' if loss >= 0 else 'gains'} {abs(loss) * 100:.1f} points of "
                     f"golden accuracy ({circ['golden_accuracy']:.1%} against {dense['golden_accuracy']:.1%}): the "
                     f"issue's >= {BITS_RATIO_TARGET:g}x at <= {LOSS_TARGET * 100:g} points is {verdict}"
                     + ".")
        eight = _compare(designs, "digits", 8, 8)
        if eight:
            ratio8, loss8, _, circ8 = eight
            parts.append(f"The same trained model with its spectra rounded to 8 bits at export stores {ratio8:.1f}x "
                         f"fewer ({_bits(circ8):,} bits) and {'loses' if loss8 >= 0 else 'gains'} "
                         f"{abs(loss8) * 100:.1f} points ({circ8['golden_accuracy']:.1%}; RTL == golden "
                         f"{circ8.get('rtl_equal', 0)}/{circ8.get('samples', 0)}).")
        if dense.get("synth") and circ.get("synth"):
            a, b = dense["synth"], circ["synth"]
            parts.append(f"Synthesised, the dense LSTM takes {a['lut']:,} LUT, {a['dsp']} DSP, {a['bram']} BRAM at "
                         f"{a['fmax_mhz'] or 0:.1f} MHz ({dense['sequences_per_s'] or 0:,.0f} sequences/s), "
                         f"circulant k = 8 {b['lut']:,} LUT, {b['dsp']} DSP, {b['bram']} BRAM at "
                         f"{b['fmax_mhz'] or 0:.1f} MHz ({circ['sequences_per_s'] or 0:,.0f} sequences/s).")
    busy = [d for d in simulated if d.get("busy") is not None and d["kind"] == "default"]
    if busy:
        top = max(busy, key=lambda d: d["busy"])
        parts.append(f"With one sequence in flight the recurrence bounds the interval (each step waits for "
                     f"h_(t-1) and the element-wise unit walks the hidden units one gate per cycle), so the "
                     f"multiplier lanes are busy at most {top['busy']:.0%} of the measured interval "
                     f"({top['model']}; the lowest {min(d['busy'] for d in busy):.0%}); the issue's >= {BUSY_TARGET:.0%} needs "
                     f"interleaved sequences, which the engine does not have yet.")
    synthetic = _compare(designs, "synthetic", 8)
    if synthetic:
        ratio, loss, dense, circ = synthetic
        parts.append(f"On the synthetic T = {dense['seq_len']} task circulant k = 8 stores {ratio:.1f}x fewer bits "
                     f"and {'loses' if loss >= 0 else 'gains'} {abs(loss) * 100:.1f} points "
                     f"({circ['golden_accuracy']:.1%} against {dense['golden_accuracy']:.1%}).")
    up5k = [d for d in designs if d.get("kind") == "up5k"]
    if up5k:
        refused = [d for d in up5k if d.get("refused")]
        placed = [d for d in up5k if d.get("synth")]
        parts.append(f"For the UP5K budget {len(refused)} of {len(up5k)} models are refused at compile time"
                     + (f" (e.g. \"{refused[0]['refused']}\")" if refused else "")
                     + (f"; {', '.join(d['model'].split(': ', 1)[1] for d in placed)} placed" if placed else "")
                     + ".")
    return " ".join(parts)


def render(doc: dict) -> str:
    designs, study = doc["designs"], doc["study"]
    tasks = study.get("tasks", {})
    dg, sy = tasks.get("digits", {}), tasks.get("synthetic", {})
    lines = [header("Recurrent layers: LSTM and GRU accelerators of every scheme", doc), ""]
    lines += ["Every row is one whole accelerator (`CompiledNetwork.default`: the recurrent engine, then a dense "
              "head) of a model trained with peforge's trainable recurrent layers of the scheme "
              "(`sw.rnn_torch.QuantLSTM` / `QuantGRU`) and exported by `from_torch` (8-bit hidden state, 10-bit "
              "table codes over +-8, `P = 12`; 8-bit fixed-point and N:M values, 4-bit SP2 codes, 12-bit "
              "circulant spectra; the head 8-bit fixed point). Training: full-batch Adam, seeded, one torch "
              "thread. "
              f"**Digits as sequences**: sklearn's digits, {dg.get('train', '-')} training and "
              f"{dg.get('test', '-')} test images, each read as T = {dg.get('seq_len', '-')} rows of "
              f"F = {dg.get('features', '-')} pixels (5-bit unsigned), H = {dg.get('hidden', '-')}, a dense head "
              f"of 10; {dg.get('steps', '-')} steps at learning rate {dg.get('lr', '-')} (as "
              "`docs/examples/rnn_digits.py`). "
              f"**Synthetic**: T = {sy.get('seq_len', '-')} steps of F = {sy.get('features', '-')} standard normal "
              "features; is feature 0's sum over the first half larger than over the second? H = "
              f"{sy.get('hidden', '-')}, a dense head of 2, {sy.get('train', '-')} training and "
              f"{sy.get('test', '-')} test sequences, {sy.get('steps', '-')} steps at learning rate "
              f"{sy.get('lr', '-')}, 8-bit signed inputs. "
              "Every test sequence runs through each accelerator in one Verilator simulation (interval and latency "
              "counted there; RTL == golden checked on every sequence: a mismatch is an error row, not "
              "synthesised); then it is synthesised whole in the pin wrapper (seed 1). Weight bits are the "
              "recurrent layer's `w` and `u` as stored (`storage_bits`). `busy` is the recurrent engine's useful "
              "MACs per sequence / (its multiplier lanes x the measured interval); circulant matrices run on FFT "
              "PEs, which have no multiplier lanes. Time steps/s = T x sequences/s = T x Fmax / interval. One "
              "sequence is in flight at a time.", ""]
    if designs:
        lines += [f"**Reading.** {reading(doc)}", ""]
    checks = []
    for task, title in (("digits", "Digits as sequences, ECP5-85F"), ("synthetic", "Synthetic task, ECP5-85F")):
        rows = [d for d in designs if d.get("task") == task and d.get("kind") == "default"]
        if rows:
            lines += [f"## {title}", "", markdown_table(HEAD, [_row(d) for d in rows]), ""]
        for d in rows:
            if d.get("interval"):
                checks.append((f"{d['model']}: RTL == golden on every test sequence", d["rtl_equal"] == d["samples"],
                               f"{d['rtl_equal']}/{d['samples']}"))
                checks.append((f"{d['model']}: measured interval == predicted",
                               d["interval"] == d["predicted_interval"],
                               f"{d['interval']:g} / {d['predicted_interval']}"))
    up5k = [d for d in designs if d.get("kind") == "up5k"]
    if up5k:
        head = ["model", "folding", "interval (measured)", "predicted", "LUT4", "LC", "FF", "DSP", "EBR", "Fmax MHz",
                "sequences/s", "RTL == golden", "fits"]
        rows = []
        for d in up5k:
            name = d["model"].split(": ", 1)[1]
            if d.get("refused"):
                rows.append([name, "refused"] + ["-"] * 10 + [f"no: {d['refused']}"])
                continue
            from peforge.hw.network import folding_text

            s = d.get("synth") or {}
            rows.append([name, folding_text(d["params"]["folding"]), _num(d["interval"], "{:g}"),
                         _num(d["predicted_interval"]), _num(s.get("lut")), _num(d.get("lc")), _num(s.get("ff")),
                         _num(s.get("dsp")), _num(s.get("bram")), _num(s.get("fmax_mhz"), "{:.1f}"),
                         _num(d.get("sequences_per_s"), "{:,.0f}"), f"{d['rtl_equal']}/{d['samples']}",
                         "yes" if s else f"no: {d.get('error', '')}"])
        lines += ["## iCE40-UP5K (digits)", "",
                  "Each digits model compiled with the UP5K budget (`CompiledNetwork.default(network, "
                  "get_target('ice40-up5k').budget())`); a refusal is the compiler's one-line message. One that "
                  "compiles is simulated and synthesised for the UP5K (seed 1). LUT4 = SB_LUT4 cells after yosys, "
                  "LC = ICESTORM_LC after placement.", "", markdown_table(head, rows), ""]
    for task, spectra in (("digits", None), ("digits", 8), ("synthetic", None)):
        cmp = _compare(designs, task, 8, spectra)
        if cmp:
            ratio, loss, dense, circ = cmp
            name = f"{task}: circulant k = 8" + (f" ({spectra}-bit spectra)" if spectra else "")
            checks.append((f"{name} stores >= {BITS_RATIO_TARGET:g}x fewer weight bits than the dense LSTM",
                           ratio >= BITS_RATIO_TARGET, f"{ratio:.2f}x"))
            checks.append((f"{name} loses <= {LOSS_TARGET * 100:g} points against the dense LSTM",
                           loss <= LOSS_TARGET, f"{loss * 100:+.1f} points (golden)"))
    busy = [d for d in designs if d.get("busy") is not None and d.get("kind") == "default"]
    if busy:
        top = max(busy, key=lambda d: d["busy"])
        checks.append((f"multiplier lanes busy >= {BUSY_TARGET:.0%} (best row)", top["busy"] >= BUSY_TARGET,
                       f"{top['busy']:.1%} ({top['model']})"))
    if checks:
        lines += ["## Targets", "", target_table(checks), ""]
    if any(d.get("kind") == "default" and d.get("weight_bits") for d in designs):
        lines += ["![weight bits against accuracy](rnn.png)", ""]
    return "\n".join(lines)


def figures(doc: dict, out_dir: Path) -> list[Path]:
    """``rnn.png`` in ``out_dir``: the recurrent weight bits against golden test accuracy, per task and cell."""
    rows = [d for d in doc["designs"] if d.get("kind") == "default" and d.get("weight_bits")]
    if not rows:
        return []
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    tasks = [t for t in ("digits", "synthetic") if any(d["task"] == t for d in rows)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for cell, marker in (("lstm", "o"), ("gru", "s")):
            pts = [d for d in rows if d["task"] == task and d["cell"] == cell]
            if not pts:
                continue
            ax.scatter([_bits(d) for d in pts], [100 * d["golden_accuracy"] for d in pts], marker=marker,
                       label=cell.upper())
            for d in pts:
                ax.annotate(d["scheme"] + (f" k={d['block']}" if d["block"] else "")
                            + (f" s{d['spectra_bits']}" if d.get("spectra_bits") else ""),
                            (_bits(d), 100 * d["golden_accuracy"]), textcoords="offset points", xytext=(4, 3),
                            fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("recurrent weight bits (w + u, stored)")
        ax.set_ylabel("golden test accuracy (%)")
        ax.set_title(f"{task} (T = {rows[[d['task'] for d in rows].index(task)]['seq_len']})")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = Path(out_dir) / "rnn.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
