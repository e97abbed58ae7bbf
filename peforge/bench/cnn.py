"""``peforge bench cnn``: convolutional accelerators (issue 30): a digits CNN of every convolution scheme, and the
MLPerf Tiny keyword-spotting DS-CNN on the iCE40-UP5K and ECP5-85F.

The digits CNN (input ``[1, 8, 8]``: conv 3x3 pad 1 to 8 channels, BatchNorm, ReLU, max pool 2; conv 3x3 pad 1 to
16 channels, BatchNorm, ReLU, max pool 2; flatten; dense 10) is trained with peforge's trainable convolutions of
each scheme (:data:`SCHEMES`) and exported by :func:`sw.from_torch.from_torch` (calibrated on the training images,
the pixels as 5-bit unsigned inputs as in :mod:`peforge.digits`). Crossbar convolutions are refused by the
compiler (no window engine for them), so there is no crossbar row. Each network is compiled with the default
folding and with the iCE40-UP5K budget (a refusal is a result: its one-line message is recorded), the 360 test
images run through each accelerator in Verilator (RTL == golden asserted, interval and latency counted there)
and it is synthesised whole in the pin wrapper through :func:`peforge.synth_cache.synthesise` (ECP5-85F for the
default folding, the UP5K for the UP5K folding; one seed). ``inferences/s = Fmax / measured interval``.

The keyword-spotting network (:func:`kws_network`) has random weights of the right ranges (int8 fixed point) and
requantisations calibrated on random inputs as :func:`sw.network.random_cnn` calibrates them.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from peforge.bench.common import TARGET, header, suite_document, target_table
from peforge.hw.network import folding_text
from peforge.progress import Progress
from peforge.report import markdown_table
from peforge.report import or_dash as _num

__all__ = ["cnn_suite", "render", "SCHEMES", "build_cnn", "kws_network", "measure", "layer_rows", "compile_for",
           "synthesis_fields", "refusal_record", "plain_document"]

#: The convolution schemes of the digits CNN (crossbar convolutions are refused by the compiler).
SCHEMES = ("fixed", "sp2", "msq", "nm", "circulant")
UP5K = "ice40-up5k"
#: CFU Playground's KWS DS-CNN on the UP5K (issue 30): 24,601 ticks of 1024 cycles.
CFU_CYCLES = 24_601 * 1024
KWS_TARGET_CYCLES = 1_000_000
BUSY_TARGET = 0.9
#: The digits MLP's fixed-point accuracy (issue 30's bar for the CNNs).
MLP_ACCURACY = 0.9722
#: Training: float epochs, then quantisation-aware epochs (seeded, one CPU thread).
FLOAT_EPOCHS = 30
QAT_EPOCHS = 10
#: Schemes trained in float first (a plain-torch twin, :data:`FLOAT_EPOCHS`), then :data:`QAT_EPOCHS` of
#: quantisation-aware training from those weights: 4-bit SP2 trained from scratch reached 94.7 % here, from float
#: 98.3 % (the digits MLP's SP2 fine-tunes from float too); the others train with their quantisers from the start
#: for :data:`FLOAT_EPOCHS` + :data:`QAT_EPOCHS` epochs (MSQ from float: 97.5 %, from scratch 98.9 %).
WARM_START = ("sp2",)
#: KWS samples simulated per compiled network (the testbench measures the interval from 4 samples on).
KWS_SAMPLES = 4


# -- the digits CNN --------------------------------------------------------------------------------------------

def _model(scheme: str):
    """The CNN of ``scheme``: both convolutions of the scheme where it allows (N:M and circulant need input
    channels a multiple of m / k: their first convolution, of one input channel, is 8-bit fixed point), the dense
    head of the scheme (circulant: 8-bit fixed point, 10 outputs are not a multiple of k)."""
    from torch import nn

    from peforge.sw.circulant_torch import BlockCirculantConv2d
    from peforge.sw.layers import FixedConv2d, FixedLinear, MixedConv2d, MixedLinear, SP2Conv2d, SP2Linear
    from peforge.sw.nm import NMFormat
    from peforge.sw.nm_torch import NMSparseConv2d, NMSparseLinear
    from peforge.sw.sp2 import SP2Format

    fixed_conv = lambda i, o: FixedConv2d(i, o, 3, padding=1, w_bits=8)   # noqa: E731
    msq = {"sp2_fraction": 0.5, "sp2_fmt": SP2Format(4), "w_bits": 4}
    first, second, head, bn2 = {
        "fixed": (fixed_conv, fixed_conv, lambda i, o: FixedLinear(i, o, w_bits=8), True),
        "sp2": (lambda i, o: SP2Conv2d(i, o, 3, padding=1, fmt=SP2Format(4)),
                lambda i, o: SP2Conv2d(i, o, 3, padding=1, fmt=SP2Format(4)),
                lambda i, o: SP2Linear(i, o, fmt=SP2Format(4)), True),
        "msq": (lambda i, o: MixedConv2d(i, o, 3, padding=1, **msq), lambda i, o: MixedConv2d(i, o, 3, padding=1, **msq),
                lambda i, o: MixedLinear(i, o, **msq), True),
        "nm": (fixed_conv, lambda i, o: NMSparseConv2d(i, o, 3, padding=1, fmt=NMFormat(2, 4)),
               lambda i, o: NMSparseLinear(i, o, fmt=NMFormat(2, 4)), True),
        # no BatchNorm after the circulant convolution: a negative scale cannot be folded into a circulant row
        "circulant": (fixed_conv, lambda i, o: BlockCirculantConv2d(i, o, 3, 8, padding=1),
                      lambda i, o: FixedLinear(i, o, w_bits=8), False),
    }[scheme]
    return nn.Sequential(first(1, 8), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         second(8, 16), *([nn.BatchNorm2d(16)] if bn2 else []), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), head(64, 10))


def _float_twin(model):
    """``model`` with every fake-quantised layer (``QuantConv2d``, ``QuantLinear``) a plain torch layer of the same
    parameters, so its float weights train first and load back (``load_state_dict``) for QAT."""
    import copy

    from torch import nn

    from peforge.sw.layers import QuantConv2d, QuantLinear

    def plain(m):
        if isinstance(m, QuantConv2d):
            return nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, groups=m.groups,
                             bias=m.bias is not None)
        if isinstance(m, QuantLinear):
            return nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        return copy.deepcopy(m)
    return nn.Sequential(*map(plain, model))


def build_cnn(scheme: str, *, seed: int = 0) -> dict:
    """Train the digits CNN of ``scheme`` and export it: ``{"network", "float_accuracy", "train_seconds"}``."""
    from peforge import digits
    from peforge.sw.from_torch import from_torch

    split = digits.load_split()
    with digits.one_thread() as torch:
        start = time.perf_counter()
        x, y, x_test = digits.split_tensors(split)
        x, x_test = x.reshape(-1, 1, 8, 8), x_test.reshape(-1, 1, 8, 8)
        torch.manual_seed(seed)
        model = _model(scheme)
        if scheme in WARM_START:
            twin = _float_twin(model)
            digits.fit(twin, x, y, epochs=FLOAT_EPOCHS, lr=3e-3, seed=seed + 1)
            model.load_state_dict(twin.state_dict())
            digits.fit(model, x, y, epochs=QAT_EPOCHS, lr=1e-3, seed=seed + 2)
        else:
            digits.fit(model, x, y, epochs=FLOAT_EPOCHS + QAT_EPOCHS, lr=3e-3, seed=seed + 1)
        float_acc = digits.float_accuracy(model, x_test, split.y_test)
        network = from_torch(model, x, input_bits=digits.INPUT_BITS, input_signed=False,
                             input_scale=1.0 / digits.PIXEL_MAX, act_bits=digits.ACT_BITS,
                             logit_bits=digits.LOGIT_BITS, nm_w_bits=8, circulant=digits.CIRCULANT)
        seconds = time.perf_counter() - start
    return {"network": network, "float_accuracy": float_acc, "train_seconds": seconds}


# -- the keyword-spotting DS-CNN ---------------------------------------------------------------------------------

def kws_network(seed: int = 0, samples: int = 16):
    """The MLPerf Tiny KWS DS-CNN with random int8 weights: input ``[1, 49, 10]`` (8-bit signed), conv 10x4 stride
    2 (padding 4/5 rows, 1/2 columns: torch's "same" for that kernel, output ``[64, 25, 5]``), four depthwise 3x3
    (pad 1) + pointwise 1x1 blocks of 64 channels with ReLU, global average pool, flatten, dense 12 (16-bit
    logits). Requantisations calibrated on ``samples`` random inputs (:func:`sw.network.calibrate`)."""
    from peforge.sw import fixed
    from peforge.sw.conv import Conv, Flatten, GlobalAvgPool
    from peforge.sw.dense import Layer
    from peforge.sw.network import InputSpec, Network, calibrate
    from peforge.sw.weights import SCHEMES as WEIGHTS

    rng = np.random.default_rng(seed)
    spec = InputSpec(49 * 10, 8, True, shape=(1, 49, 10))
    x = rng.integers(*spec.range, size=(samples, spec.features), endpoint=True)
    lo, hi = fixed.weight_range(8)
    fixed_w = WEIGHTS["fixed"]
    layers: list = []
    shape, bits, signed = spec.shape, 8, True

    def requantised(make, channels):
        nonlocal x
        probe = make(np.zeros(channels, np.int64), 1, np.zeros(channels, np.int64))
        acc = probe.accumulate(x)
        acc = np.moveaxis(acc, 1, -1).reshape(-1, acc.shape[1]) if acc.ndim > 2 else acc
        layer = make(*calibrate(rng, acc, probe.out_range, probe.acc_bound))
        x = layer.forward(x).reshape(samples, -1)
        layers.append(layer)
        return layer

    def conv(c_out, kernel, stride, padding, groups):
        nonlocal shape, bits, signed
        n_in = math.prod(kernel) * (shape[0] // groups)
        w = fixed_w(rng.integers(lo, hi + 1, (c_out, n_in)), 8)
        in_shape, in_bits, in_signed = shape, bits, signed

        def make(mult, shift, offset):
            return Conv(w, in_shape, kernel, stride, padding, groups, mult, shift, offset, True, in_bits, in_signed,
                        8, False)
        layer = requantised(make, c_out)
        shape, bits, signed = layer.out_shape, 8, False

    conv(64, (10, 4), (2, 2), (4, 5, 1, 2), 1)
    for _ in range(4):
        conv(64, (3, 3), (1, 1), (1, 1, 1, 1), 64)
        conv(64, (1, 1), (1, 1), (0, 0, 0, 0), 1)
    gap_shape = shape

    def make_gap(mult, shift, offset):
        return GlobalAvgPool(gap_shape, multiplier=mult, shift=shift, offset=offset, relu=False, in_bits=8,
                             in_signed=False, out_bits=8, out_signed=False)
    gap = requantised(make_gap, shape[0])
    layers.append(Flatten(gap.out_shape, 8, False))
    w = fixed_w(rng.integers(lo, hi + 1, (12, shape[0])), 8)

    def make_dense(mult, shift, offset):
        return Layer(w, mult, shift, offset, False, 8, False, 16, True)
    requantised(make_dense, 12)
    return Network(spec, tuple(layers)), rng.integers(*spec.range, size=(KWS_SAMPLES, spec.features), endpoint=True)


# -- measuring -------------------------------------------------------------------------------------------------

def layer_rows(compiled, target_name: str) -> list[dict]:
    """Per layer: kind, scheme, folding, predicted cycles, DSPs, and the buffer (line buffer for a convolution)
    and block RAM the cost model gives (:func:`hw.network.cost.block_ram`, ``plan.engine.buffer``)."""
    from peforge.hw.network import cost
    from peforge.synth import get_target

    dsp_bits = get_target(target_name).dsp_bits
    rows = []
    for n, (plan, summary) in enumerate(zip(compiled.plans, compiled.summary())):
        depth, width = plan.engine.buffer(plan)
        lut_bits, bram_bits, bram_blocks = cost.buffer_split(plan)
        total_bits, total_blocks = cost.block_ram(plan)
        rows.append({"layer": n, "kind": plan.kind, "scheme": plan.label, "in_shape": list(plan.network_layer.in_shape),
                     "out_shape": list(plan.network_layer.out_shape), "lanes": summary["lanes"], "pes": summary["pes"],
                     "cycles": summary["cycles"], "multipliers": plan.multipliers, "dsps": cost.dsps(plan, dsp_bits),
                     "buffer_depth": depth, "buffer_width": width, "buffer_lut_bits": lut_bits,
                     "buffer_bram_bits": bram_bits, "buffer_bram_blocks": bram_blocks,
                     "block_ram_bits": total_bits, "block_ram_blocks": total_blocks})
    return rows


def compile_for(network, target_name: str | None):
    """``(compiled, None)``, or ``(None, refusal line)`` when the folding search refuses the budget."""
    from peforge.hw.network import CompiledNetwork
    from peforge.synth import get_target

    budget = None if target_name is None else get_target(target_name).budget()
    try:
        return CompiledNetwork.default(network, budget), None
    except (ValueError, TypeError) as exc:
        return None, str(exc).splitlines()[0]


def measure(label: str, compiled, x, golden, *, kind: str, target: str, seeds, progress, synth: bool = True,
            **fields) -> dict:
    """One accelerator: RTL run of ``x`` (equality with ``golden`` asserted, interval and latency measured), then
    synthesis for ``target`` in the pin wrapper through the shared cache (skipped when ``synth`` is False)."""
    from peforge.tb.network import rtl_infer

    progress.step(f"RTL: {len(x)} samples through {compiled.digest()}")
    start = time.monotonic()
    rtl, stats = rtl_infer(compiled, x)
    sim_seconds = round(time.monotonic() - start, 1)
    equal = int(np.sum(np.all(rtl == golden, axis=1)))
    record = {"label": label, "pe": "network", "kind": kind, "target": target,
              "params": {"folding": compiled.folding.to_list(), "network_digest": compiled.network.digest()},
              "digest": compiled.digest(), "wrapped": True, "synth": None, "samples": len(x), "rtl_equal": equal,
              "interval": stats.interval, "predicted_interval": compiled.interval, "latency": stats.latency,
              "sim_seconds": sim_seconds, "multipliers": sum(p.multipliers for p in compiled.plans),
              "busy": compiled.busy(stats.interval), "layers": layer_rows(compiled, target),
              "inferences_per_s": None, **fields}
    if equal != len(x):   # a wrong accelerator is not synthesised; the row and the targets say so
        record["error"] = f"RTL != golden on {len(x) - equal} of {len(x)} samples"
        return record
    if not synth:
        record["error"] = "not synthesised"
        return record
    record.update(synthesis_fields(compiled, target, seeds, stats.interval, progress))
    return record


def synthesis_fields(compiled, target: str, seeds, interval, progress) -> dict:
    """The synthesis fields of a record: ``synth`` (or ``error``), LC on the iCE40, inferences/s = Fmax / the
    measured ``interval``; through :func:`peforge.synth_cache.synthesise` (pin wrapper, ``seeds``)."""
    from peforge.synth_cache import RECORD, error_line, synthesise

    progress.step(f"synthesis for {target}")
    entry = synthesise(compiled, target, seeds=tuple(seeds), wrap=True)
    fields = {"synth_seconds": entry["seconds"], "cached": entry["cached"], "generator": entry["generator"]}
    if not entry["placed"]:
        fields["error"] = error_line(entry["error"])
        return fields
    fields.update(wrapped=entry["wrapped"], synth={k: entry[k] for k in RECORD})
    if target.startswith("ice40"):
        fields["lc"] = entry["logic_cells"]
    if entry["fmax_mhz"] and interval:
        fields["inferences_per_s"] = entry["fmax_mhz"] * 1e6 / interval
    return fields


def refusal_record(label: str, kind: str, target: str, network, message: str, **fields) -> dict:
    """The record of a network the folding search refused for ``target``'s budget: its one-line message."""
    return {"label": label, "pe": "network", "kind": kind, "target": target,
            "params": {"network_digest": network.digest()}, "digest": network.digest(), "wrapped": True,
            "synth": None, "refused": message, "error": message, "inferences_per_s": None, **fields}


def _failure(label: str, kind: str, target: str, compiled, exc: Exception, **fields) -> dict:
    """The record of a point whose simulation raised: the exception's first line, the prediction kept."""
    message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return {"label": label, "pe": "network", "kind": kind, "target": target,
            "params": {"folding": compiled.folding.to_list(), "network_digest": compiled.network.digest()},
            "digest": compiled.digest(), "wrapped": True, "synth": None, "samples": 0, "rtl_equal": 0,
            "interval": None, "predicted_interval": compiled.interval, "latency": None, "busy": None,
            "multipliers": sum(p.multipliers for p in compiled.plans), "layers": layer_rows(compiled, target),
            "inferences_per_s": None, "error": message, **fields}


def _say(record: dict) -> None:
    s = record.get("synth") or {}
    if record.get("refused"):
        print(f"  {record['label']:<24} {record['target']:<10} REFUSED: {record['refused']}", flush=True)
        return
    print(f"  {record['label']:<24} {record['target']:<10} interval {record['interval']:g} (predicted "
          f"{record['predicted_interval']}), RTL == golden {record['rtl_equal']}/{record['samples']}, "
          + (f"{s['lut']} LUT {s['ff']} FF {s['dsp']} DSP {s['bram']} BRAM {s['fmax_mhz'] or 0:.1f} MHz"
             if s else f"no synthesis: {record.get('error')}"), flush=True)


def _checkpoint(seeds, records, study) -> None:
    """The document so far, under build/ (an interrupted bench keeps what it measured)."""
    from peforge.hw.verilog import build_root

    path = build_root() / "bench-cnn" / "partial.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plain_document(suite_document("cnn", seeds, records, study)), indent=1) + "\n")


def cnn_suite(seeds, *, schemes=SCHEMES, kws: bool = True, kws_ecp5_synth: bool = True) -> dict:
    """The results document of the cnn suite (one nextpnr seed: the first of ``seeds``)."""
    from peforge import digits

    seeds = list(seeds)[:1]
    split = digits.load_split()
    records, study = [], {"accuracy": {}, "mlp_accuracy": MLP_ACCURACY, "cfu_cycles": CFU_CYCLES}
    kws_pending = []
    if kws:   # first the KWS DS-CNN's compilations and simulations; its ECP5 synthesis last (the longest)
        network, x = kws_network()
        golden = network.golden(x)
        study["kws"] = {"network_digest": network.digest(), "samples": len(x),
                        "macs": int(sum(_macs(layer) for layer in network.layers))}
        for kind, budget, target, synth in (("kws-up5k", UP5K, UP5K, True), ("kws-default", None, TARGET, False),
                                            ("kws-ecp5", TARGET, TARGET, kws_ecp5_synth)):
            compiled, refusal = compile_for(network, budget)
            if compiled is None:
                record = refusal_record(kind, kind, target, network, refusal, scheme="fixed")
            else:
                try:
                    with Progress(f"bench cnn {kind} {compiled.folding.text()} on {target}") as progress:
                        record = measure(kind, compiled, x, golden, kind=kind, target=target, seeds=seeds,
                                         progress=progress, synth=False, scheme="fixed")
                except Exception as exc:   # one failed point must not lose the rest of the table
                    record = _failure(kind, kind, target, compiled, exc, scheme="fixed")
                else:
                    if synth and record["rtl_equal"] == record["samples"]:
                        record["error"] = "synthesis not run (the bench stopped before it)"
                        kws_pending.append((record, compiled))
            records.append(record)
            _say(record)
            _checkpoint(seeds, records, study)
    networks = {}
    for scheme in schemes:   # train every scheme first, then measure the default foldings, then the UP5K's
        with Progress(f"bench cnn {scheme}: training") as progress:
            progress.step("training and export")
            built = build_cnn(scheme)
        network = built["network"]
        golden = network.golden(split.x_test)
        acc = {"float": built["float_accuracy"], "integer": digits.accuracy(golden, split.y_test),
               "train_seconds": round(built["train_seconds"], 1),
               "layers": [f"{layer.kind} {getattr(layer, 'scheme', '') or ''}".strip() for layer in network.layers],
               "network_digest": network.digest()}
        study["accuracy"][scheme] = acc
        networks[scheme] = network, golden
        print(f"  {scheme}: float {acc['float']:.2%}, integer {acc['integer']:.2%} ({acc['train_seconds']} s)",
              flush=True)
    for kind, budget, target in (("default", None, TARGET), ("up5k", UP5K, UP5K)):
        for scheme in schemes:
            network, golden = networks[scheme]
            label = f"{scheme} {kind}"
            compiled, refusal = compile_for(network, budget)
            if compiled is None:
                record = refusal_record(label, kind, target, network, refusal, scheme=scheme)
            else:
                try:
                    with Progress(f"bench cnn {label} {compiled.folding.text()} on {target}") as progress:
                        record = measure(label, compiled, split.x_test, golden, kind=kind, target=target,
                                         seeds=seeds, progress=progress, scheme=scheme)
                except Exception as exc:   # one failed point must not lose the rest of the table
                    record = _failure(label, kind, target, compiled, exc, scheme=scheme)
            record["accuracy"] = study["accuracy"][scheme]["integer"]
            records.append(record)
            _say(record)
            _checkpoint(seeds, records, study)
    for record, compiled in kws_pending:
        with Progress(f"bench cnn {record['label']} {compiled.folding.text()} on {record['target']}") as progress:
            record.update(synthesis_fields(compiled, record["target"], seeds, record["interval"], progress))
        if record.get("synth"):
            record.pop("error", None)
        _say(record)
        _checkpoint(seeds, records, study)
    return plain_document(suite_document("cnn", seeds, records, study))


def plain_document(doc: dict) -> dict:
    """The document with numpy scalars as Python numbers (the results file is plain JSON)."""
    return json.loads(json.dumps(doc, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)))


def _macs(layer) -> int:
    """Multiply-accumulates of one sample through ``layer`` (0 for layers without weights)."""
    w = getattr(layer, "weights", None)
    if w is None:
        return 0
    out = layer.out_shape
    positions = math.prod(out[1:]) if len(out) > 1 else 1
    return w.in_features * w.out_features * positions


# -- the page --------------------------------------------------------------------------------------------------

def _pct(v) -> str:
    return "-" if v is None else f"{v:.2%}"


HEAD = ["scheme", "float acc.", "integer acc.", "folding (lanes x pes per layer)", "interval (measured)",
        "predicted", "latency", "busy", "LUT", "FF", "DSP", "BRAM", "Fmax MHz", "inferences/s", "RTL == golden",
        "note"]


def _row(d: dict, acc: dict) -> list[str]:
    s = d.get("synth") or {}
    if d.get("refused"):
        return [d["scheme"], _pct(acc.get("float")), _pct(acc.get("integer")), "refused"] + ["-"] * 11 + \
            [d["refused"]]
    note = d.get("error", "") if not s else ""
    return [d["scheme"], _pct(acc.get("float")), _pct(acc.get("integer")), folding_text(d["params"]["folding"]),
            _num(d["interval"], "{:g}"), _num(d["predicted_interval"]), _num(d["latency"]),
            _num(d["busy"], "{:.0%}"), _num(s.get("lut")), _num(s.get("ff")), _num(s.get("dsp")),
            _num(s.get("bram")), _num(s.get("fmax_mhz"), "{:.1f}"), _num(d["inferences_per_s"], "{:,.0f}"),
            f"{d['rtl_equal']}/{d['samples']}", note]


def _layer_table(d: dict) -> str:
    head = ["layer", "kind", "scheme", "in", "out", "lanes x pes", "cycles", "DSPs", "buffer depth x width",
            "buffer in LUT bits", "buffer in BRAM (bits, blocks)", "block RAM of the engine (bits, blocks)"]
    rows = [[str(r["layer"]), r["kind"], r["scheme"] or "-", "x".join(map(str, r["in_shape"])),
             "x".join(map(str, r["out_shape"])), f"{r['lanes']} x {r['pes']}", _num(r["cycles"]), str(r["dsps"]),
             f"{r['buffer_depth']} x {r['buffer_width']}", str(r["buffer_lut_bits"]),
             f"{r['buffer_bram_bits']}, {r['buffer_bram_blocks']}", f"{r['block_ram_bits']}, {r['block_ram_blocks']}"]
            for r in d["layers"]]
    return markdown_table(head, rows)


def reading(doc: dict) -> str:
    """One paragraph on the numbers, written from the document."""
    designs, acc = doc["designs"], doc["study"].get("accuracy", {})
    parts = []
    default = [d for d in designs if d.get("kind") == "default" and not d.get("refused")]
    if default:
        simulated = [d for d in designs if d.get("interval")]
        wrong = [d for d in simulated if d["interval"] != d["predicted_interval"]]
        parts.append(f"{len(default)} digits CNN{'s' * (len(default) > 1)} compiled with the default folding ran "
                     f"all {default[0]['samples']} test images with RTL == golden"
                     + (", as every other simulated row did" if all(d["rtl_equal"] == d["samples"] for d in simulated)
                        else "") + "; the measured interval equals the predicted one on "
                     + (f"every row" if not wrong else f"every row but {len(wrong)} ("
                        + ", ".join(f"{d['label']}: {d['interval']:,g} measured, {d['predicted_interval']:,} "
                                    f"predicted" for d in wrong) + ")") + ".")
        rated = [d for d in default if d["inferences_per_s"]]
        if rated:
            best = max(rated, key=lambda d: d["inferences_per_s"])
            small = min(rated, key=lambda d: d["synth"]["lut"])
            parts.append(f"On ECP5-85F the fastest is {best['scheme']} ({best['inferences_per_s']:,.0f} inferences/s "
                         f"at {best['synth']['fmax_mhz']:.1f} MHz, interval {best['interval']:g}); the smallest is "
                         f"{small['scheme']} ({small['synth']['lut']} LUT, {small['synth']['dsp']} DSP).")
    if acc:
        below = [s for s, a in acc.items() if a["integer"] < doc["study"].get("mlp_accuracy", MLP_ACCURACY)]
        parts.append("Integer accuracy " + ", ".join(f"{s} {a['integer']:.1%}" for s, a in acc.items())
                     + (f"; {', '.join(below)} below the fixed8 MLP's {MLP_ACCURACY:.2%} (a two-convolution network "
                        "of 8 and 16 channels on 8x8 images, trained for seconds; not tuned)" if below else
                        f", every scheme above the fixed8 MLP's {MLP_ACCURACY:.2%}") + ".")
    up5k = [d for d in designs if d.get("kind") == "up5k"]
    if up5k:
        fits = [d for d in up5k if d.get("synth")]
        refused = [d["scheme"] for d in up5k if d.get("refused")]
        unplaced = [d for d in up5k if not d.get("synth") and not d.get("refused")]
        parts.append(f"For the UP5K budget: {', '.join(d['scheme'] for d in fits) or 'none'} compiled and placed"
                     + (f" (interval {', '.join(format(d['interval'], ',g') for d in fits)} cycles, "
                        f"{min(d['synth']['fmax_mhz'] or 0 for d in fits):.1f} to "
                        f"{max(d['synth']['fmax_mhz'] or 0 for d in fits):.1f} MHz)" if fits else "")
                     + (f"; {', '.join(refused)} refused" if refused else "")
                     + (f"; {', '.join(d['scheme'] for d in unplaced)} compiled (the folding search's LUT prediction "
                        f"fitted) but did not place: " + "; ".join(f"{d['scheme']}: {d.get('error', '')}"
                                                                    for d in unplaced) if unplaced else "") + ".")
    kws = next((d for d in designs if d.get("kind") == "kws-up5k"), None)
    if kws is not None:
        if kws.get("refused"):
            parts.append(f"The KWS DS-CNN is refused for the UP5K: \"{kws['refused']}\".")
        elif kws.get("interval"):
            parts.append(f"The KWS DS-CNN on the UP5K folding takes {kws['interval']:,.0f} cycles per inference in "
                         f"simulation against CFU Playground's ~{CFU_CYCLES / 1e6:.0f} M.")
    for kind, what in (("kws-default", f"the default folding (no budget; CFU Playground: ~{CFU_CYCLES / 1e6:.0f} M "
                                       "cycles on the UP5K)"), ("kws-ecp5", "the ECP5-85F budget")):
        d = next((d for d in designs if d.get("kind") == kind and d.get("interval")), None)
        if d is None:
            continue
        dsps = sum(r["dsps"] for r in d["layers"])
        blocks = sum(r["block_ram_blocks"] for r in d["layers"])
        s = d.get("synth") or {}
        parts.append(f"With {what} it takes {d['interval']:,.0f} cycles per inference in simulation (predicted "
                     f"{d['predicted_interval']:,}), {d['multipliers']} multipliers, {dsps} DSPs and {blocks} block "
                     f"RAMs by the cost model"
                     + (f"; placed on ECP5-85F: {s['lut']} LUT, {s['dsp']} DSP, {s['bram']} BRAM, "
                        f"{s['fmax_mhz'] or 0:.1f} MHz, {d['inferences_per_s'] or 0:,.0f} inferences/s" if s else
                        f" ({_why_not(d, dsps)})") + ".")
    return " ".join(parts)


def _why_not(d: dict, dsps: int) -> str:
    """Why a KWS row has no synthesis: the device's DSPs it exceeds, or its record's note."""
    from peforge.synth import get_target

    available = get_target(d["target"]).dsps
    if dsps > available:
        return f"not synthesised: more DSPs than the {available} of the device"
    return d.get("error", "not synthesised")


def render(doc: dict) -> str:
    designs, study = doc["designs"], doc["study"]
    acc = study.get("accuracy", {})
    lines = [header("CNNs: a digits CNN of every convolution scheme, and the KWS DS-CNN", doc), ""]
    lines += ["Every digits row is one whole accelerator (`CompiledNetwork.default`) of a CNN `[1, 8, 8]` -> conv "
              "3x3 pad 1 (8 ch), BatchNorm, ReLU, max pool 2 -> conv 3x3 pad 1 (16 ch), BatchNorm, ReLU, max pool 2 "
              "-> flatten -> dense 10, trained with peforge's trainable convolutions of the scheme (Adam, 40 epochs with the "
              "scheme's quantisers from the start; SP2: 30 float epochs, then 10 of quantisation-aware training; "
              "seeded, one thread) and exported by `from_torch` (N:M and circulant: the first convolution, of one input channel, is 8-bit fixed point; "
              "circulant: no BatchNorm after the circulant convolution, and a fixed-point head). Crossbar "
              "convolutions are refused by the compiler, so there is no crossbar row. The 360 test images run "
              "through each accelerator in Verilator (interval and latency counted there, RTL == golden asserted); "
              "then it is synthesised whole in the pin wrapper. `busy` is the slowest engine's useful MACs / "
              "(multiplier lanes x measured interval). Seed 1 only.", ""]
    if designs:
        lines += [f"**Reading.** {reading(doc)}", ""]
    default = [d for d in designs if d.get("kind") == "default"]
    checks = []
    if default:
        lines += ["## ECP5-85F, default folding", "", markdown_table(HEAD, [_row(d, acc.get(d["scheme"], {}))
                                                                          for d in default]), ""]
        for d in default:
            if d.get("refused"):
                continue
            checks.append((f"{d['scheme']}: measured interval == predicted", d["interval"] == d["predicted_interval"],
                           f"{d['interval']:g} / {d['predicted_interval']}"))
            if d["busy"] is not None:
                checks.append((f"{d['scheme']}: slowest engine busy >= {BUSY_TARGET:.0%}", d["busy"] >= BUSY_TARGET,
                               f"{d['busy']:.1%}"))
        for s, a in acc.items():
            checks.append((f"{s}: integer accuracy above the fixed8 MLP's {MLP_ACCURACY:.2%}",
                           a["integer"] > MLP_ACCURACY, f"{a['integer']:.2%}"))
    up5k = [d for d in designs if d.get("kind") == "up5k"]
    if up5k:
        head = ["scheme", "folding for 8 DSPs", "interval (measured)", "predicted", "LUT4", "LC", "FF", "DSP", "EBR",
                "Fmax MHz", "inferences/s", "RTL == golden", "fits"]
        rows = []
        for d in up5k:
            s = d.get("synth") or {}
            if d.get("refused"):
                rows.append([d["scheme"], "refused"] + ["-"] * 10 + [f"no: {d['refused']}"])
                continue
            rows.append([d["scheme"], folding_text(d["params"]["folding"]), _num(d["interval"], "{:g}"),
                         _num(d["predicted_interval"]), _num(s.get("lut")), _num(d.get("lc")), _num(s.get("ff")),
                         _num(s.get("dsp")), _num(s.get("bram")), _num(s.get("fmax_mhz"), "{:.1f}"),
                         _num(d["inferences_per_s"], "{:,.0f}"), f"{d['rtl_equal']}/{d['samples']}",
                         "yes" if s else f"no: {d.get('error', '')}"])
        lines += ["## iCE40-UP5K", "", "Each CNN compiled with the UP5K budget (`CompiledNetwork.default(network, "
                  "get_target('ice40-up5k').budget())`) and synthesised for the UP5K (seed 1); a refusal is the "
                  "compiler's one-line message. LUT4 = SB_LUT4 cells after yosys, LC = ICESTORM_LC after placement.",
                  "", markdown_table(head, rows), ""]
    kws = [d for d in designs if d.get("kind", "").startswith("kws")]
    if kws:
        info = study.get("kws", {})
        head = ["folding", "target", "interval (measured)", "predicted", "latency", "multipliers", "DSPs (model)",
                "block RAM (model: bits, blocks)", "LUT", "LC", "FF", "DSP", "BRAM", "Fmax MHz", "inferences/s",
                "RTL == golden", "note"]
        rows = []
        for d in kws:
            if d.get("refused"):
                rows.append([d["label"], d["target"]] + ["-"] * 14 + [f"refused: {d['refused']}"])
                continue
            s = d.get("synth") or {}
            bits = sum(r["block_ram_bits"] for r in d["layers"])
            blocks = sum(r["block_ram_blocks"] for r in d["layers"])
            rows.append([d["label"], d["target"], _num(d["interval"], "{:,g}"), _num(d["predicted_interval"], "{:,}"),
                         _num(d["latency"], "{:,}"), str(d["multipliers"]), str(sum(r["dsps"] for r in d["layers"])),
                         f"{bits:,}, {blocks}", _num(s.get("lut")), _num(d.get("lc")), _num(s.get("ff")),
                         _num(s.get("dsp")), _num(s.get("bram")), _num(s.get("fmax_mhz"), "{:.1f}"),
                         _num(d["inferences_per_s"], "{:,.1f}"), f"{d['rtl_equal']}/{d['samples']}",
                         d.get("error", "") if not s else ""])
        lines += ["## The MLPerf Tiny KWS DS-CNN", "",
                  "Input `[1, 49, 10]` 8-bit, conv 10x4 stride 2 (64 ch), four depthwise 3x3 + pointwise 1x1 blocks "
                  "(64 ch), global average pool, dense 12; random int8 weights, requantisation calibrated on random "
                  f"inputs (`sw.network.calibrate`); {info.get('macs', 0):,} MACs per inference. "
                  f"{info.get('samples', '-')} random samples simulated per folding. CFU Playground runs this "
                  f"network on the UP5K in about {CFU_CYCLES:,} cycles.", "", markdown_table(head, rows), ""]
        up = kws[0]
        if not up.get("refused") and up["interval"]:
            checks.append((f"KWS on the UP5K: cycles per inference <= {KWS_TARGET_CYCLES:,} (CFU Playground "
                           f"~{CFU_CYCLES / 1e6:.0f} M)", up["interval"] <= KWS_TARGET_CYCLES, f"{up['interval']:,}"))
        elif up.get("refused"):
            checks.append(("KWS compiles for the UP5K", False, up["refused"]))
    layered = [d for d in designs if d.get("layers")]
    if layered:
        lines += ["## Line buffers and block RAM per layer", "",
                  "From the cost model: `plan.engine.buffer(plan)` (a convolution's ring of input rows, a dense "
                  "layer's two input banks, a pool's accumulators), placed by `hw.network.cost.buffer_split` (LUT "
                  "memory or block RAM), and `hw.network.cost.block_ram(plan)` (weights and buffer).", ""]
        for d in layered:
            lines += [f"### {d['label']} ({d['target']})", "", _layer_table(d), ""]
    if checks:
        lines += ["## Targets", "", target_table(checks), ""]
    return "\n".join(lines)
