"""The resource estimator of ``peforge explore``: linear models on structural features, fitted on measured
synthesis results (``docs/results/*.json`` and the records of earlier sweeps), with their held-out error.

Two levels, both non-negative least squares (``scipy.optimize.nnls``) on features derived from the Params:

* **per PE** (:data:`PE_FEATURES`): one model per registered PE, on the PE suites' rows: LUT multiplier bits,
  adder-tree bits, shifter or multiplexer inputs, accumulator and wrapper bits (``fixed-mac``, ``sp2-mac``,
  ``nm-sparse``), ``k^2`` (parallel) or ``sqrt(k)`` (streaming) for ``circulant-fft``, rows, cells and
  zero-skipping for ``crossbar``;
* **per network** (:func:`network_features`): each engine's slots costed by the PE models, plus the
  engine's own logic (buffers, sequencer, collector, requantiser) and its weight memories held in LUTs
  (memories shallower than :data:`BRAM_DEPTH` words), fitted on every whole network measured on ECP5
  (``docs/results/network.json``, ``docs/results/explore.json`` and the synthesised points of the sweeps'
  ``points.jsonl`` under ``build/``).

The held-out error is leave-one-out: each measured point predicted by the model fitted without it, as a mean
absolute percentage of its measured LUTs, per PE and per network scheme (:func:`held_out`). Fmax is estimated
as the median measured Fmax of networks with the same schemes, DSPs by :meth:`hw.network.EnginePlan.dsps`, block
RAMs by the rule yosys followed on the measured networks (:func:`_memory_split`: memories of at least
:data:`BRAM_DEPTH` words and :data:`BRAM_MIN_BITS` bits, in the DP16KD configuration needing the fewest blocks).
Every number the estimator gives is an estimate and is labelled so in reports.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np

__all__ = ["PE_FEATURES", "BRAM_DEPTH", "pe_features", "network_features", "fit", "held_out", "held_out_table",
           "estimate_compiled", "near_front", "TARGET_ERROR"]

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = ROOT / "docs" / "results"
#: The issue's target: mean absolute LUT error on held-out points of each PE.
TARGET_ERROR = 0.10
#: Weight memories with fewer words than this are counted as LUT memory, deeper ones as block RAM (yosys maps
#: the shallow, wide ROMs of a fast folding to LUTs on ECP5; docs/results/network.json).
BRAM_DEPTH = 128
#: ... and so are memories of fewer bits than this (a 160 x 8 ROM went to LUTs, 160 x 16 to a DP16KD).
BRAM_MIN_BITS = 2048
#: The ECP5 block RAM's (DP16KD) depth x width configurations.
DP16KD = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))


# -- per-PE features ------------------------------------------------------------------------------------------

def _dot(p: dict, wrapped: bool) -> tuple[int, int, int]:
    act = p["act_bits"] + (0 if p.get("act_signed", True) else 1)
    return act, p.get("max_len", 4096), int(wrapped)


def _acc(act: int, w: int, max_len: int) -> int:
    return act + w + max(1, math.ceil(math.log2(max_len)))


def _fixed(p: dict, wrapped: bool) -> list[float]:
    act, max_len, wr = _dot(p, wrapped)
    lanes, w = p["lanes"], p["w_bits"]
    acc = _acc(act, w, max_len)
    return [1.0, lanes * act * w * (not p["dsp"]), lanes * (act + w), acc, wr * acc]


def _sp2(p: dict, wrapped: bool) -> list[float]:
    act, max_len, wr = _dot(p, wrapped)
    fmt = p["fmt"]
    m1 = fmt.get("m1") or math.ceil((fmt["bits"] - 1) / 2)
    m2 = fmt["bits"] - 1 - m1
    e = (1 << m1) - 1
    lanes = p["lanes"]
    acc = _acc(act, e + 1, max_len)
    return [1.0, lanes * (act + e), lanes * (act + e) * (1 << m1), acc, wr * acc]


def _nm(p: dict, wrapped: bool) -> list[float]:
    act, max_len, wr = _dot(p, wrapped)
    n, m = p["fmt"]["n"], p["fmt"]["m"]
    mults, w = p["groups"] * n, p["w_bits"]
    # LUT multipliers, the activation bits a beat carries (groups x M), the N-of-M multiplexers
    return [1.0, mults * act * w * (not p["dsp"]), p["groups"] * m * act, mults * m * act]


def _circulant(p: dict, wrapped: bool) -> list[float]:
    k = p["fmt"]["block"]
    parallel = p.get("arch") == "parallel"
    # parallel: k^2 (every bin's butterflies and products side by side); streaming: an intercept of its own and
    # growth as sqrt(k) over k = 8 .. 64 on the bench (one butterfly per stage, the rest in memories). The
    # streaming LUTs extrapolate to a negative value at k = 0 (934 / 1496 / 3700 at k = 8 / 16 / 64 on CCU2C
    # butterflies), which non-negative coefficients cannot fit on sqrt(k) alone: sqrt(k) - 2 keeps the
    # streaming intercept positive (k >= 4, the smallest streaming block)
    return [1.0, parallel * k * k, float(not parallel), (not parallel) * (math.sqrt(k) - 2)]


def _crossbar(p: dict, wrapped: bool) -> list[float]:
    fmt = p["fmt"]
    return [1.0, fmt["rows"] * fmt["act_bits"], fmt["cols"] * fmt["w_bits"] * fmt["rows"] / fmt["rows_per_sub"],
            int(p.get("zero_skip", True)) * fmt["rows"]]


#: PE model name -> (feature function, selects a bench row ``(pe, params) -> bool``)
PE_FEATURES = {
    "fixed-mac": (_fixed, lambda pe, p: pe == "fixed-mac"),
    "sp2-mac": (_sp2, lambda pe, p: pe == "sp2-mac"),
    "nm-sparse": (_nm, lambda pe, p: pe == "nm-sparse"),
    "circulant-fft": (_circulant, lambda pe, p: pe == "circulant-fft"),
    "crossbar": (_crossbar, lambda pe, p: pe in ("crossbar", "crossbar-controller")),
}


def pe_features(pe: str, params: dict, wrapped: bool = True, *, emulator: bool = True) -> list[float]:
    """The feature vector of a PE configuration (``params`` as ``Params.to_dict()``); a ``crossbar`` with its
    ideal-array emulator (the registry's ``crossbar``, and a network's crossbar slots) or without it (the
    registry's ``crossbar-controller``)."""
    f = PE_FEATURES[pe][0](params, wrapped)
    if pe == "crossbar":   # the ideal-array emulator: cell flip-flops and adders
        fmt = params["fmt"]
        f.append(emulator * fmt["rows"] * fmt["cols"] * fmt["w_bits"])
    return f


def _pe_rows() -> dict[str, list[tuple[list[float], float, str]]]:
    """``{pe model: [(features, measured LUT, label)]}`` from the PE suites' results files."""
    rows: dict[str, list] = {name: [] for name in PE_FEATURES}
    for suite in ("sp2", "nm", "circulant", "crossbar"):
        try:
            doc = json.loads((RESULTS / f"{suite}.json").read_text())
        except (OSError, ValueError):
            continue
        for d in doc["designs"]:
            if not d.get("synth") or d["synth"].get("lut") is None:
                continue
            for name, (_, selects) in PE_FEATURES.items():
                if selects(d["pe"], d["params"]):
                    features = pe_features(name, d["params"], d["wrapped"], emulator=d["pe"] == "crossbar")
                    key = (d["pe"], d["wrapped"], json.dumps(d["params"], sort_keys=True))   # one row per design
                    if key not in [r[3] for r in rows[name]]:
                        rows[name].append((features, float(d["synth"]["lut"]), f"{d['label']} ({suite})", key))
    return {k: [(f, y, label) for f, y, label, _ in v] for k, v in rows.items()}


# -- fitting --------------------------------------------------------------------------------------------------

def fit(features: list[list[float]], targets: list[float]) -> np.ndarray:
    """Non-negative least squares with each row weighted by ``1 / target`` (relative error), so small and large
    designs count alike."""
    from scipy.optimize import nnls

    a = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    w = 1.0 / np.maximum(y, 1.0)
    scale = np.maximum(np.abs(a).max(axis=0), 1e-12)
    coef, _ = nnls(a / scale * w[:, None], y * w)
    return coef / scale


def _loo(rows: list[tuple[list[float], float, str]]) -> dict:
    """Leave-one-out: mean absolute percentage error and each point's prediction."""
    errors, detail = [], []
    for i in range(len(rows)):
        train = rows[:i] + rows[i + 1:]
        if len(train) < 2:
            continue
        coef = fit([r[0] for r in train], [r[1] for r in train])
        pred = float(np.dot(coef, rows[i][0]))
        errors.append(abs(pred - rows[i][1]) / rows[i][1])
        detail.append({"label": rows[i][2], "measured": rows[i][1], "predicted": round(pred, 1)})
    return {"points": len(rows), "mape": float(np.mean(errors)) if errors else None, "detail": detail}


@functools.lru_cache(maxsize=1)
def pe_models() -> dict[str, np.ndarray]:
    return {name: fit([r[0] for r in rows], [r[1] for r in rows]) for name, rows in _pe_rows().items() if rows}


def pe_lut(pe: str, params: dict, wrapped: bool = False) -> float:
    """Estimated LUTs of one PE configuration (the PE model; 0 for a PE without one)."""
    models = pe_models()
    if pe not in models:
        return 0.0
    return float(np.dot(models[pe], pe_features(pe, params, wrapped)))


# -- networks ------------------------------------------------------------------------------------------------

def _memory_split(plan) -> tuple[int, int, int]:
    """``(bits in LUT memories, bits in block RAM, block RAMs)`` of an engine's weight memories (one per slot):
    the rule yosys followed on the measured networks (:data:`BRAM_DEPTH`, :data:`BRAM_MIN_BITS`, :data:`DP16KD`)."""
    if plan.scheme == "crossbar" or not plan.slots:
        return 0, 0, 0
    depth = plan.groups * plan.beats
    per_slot = plan.weight_bits // len(plan.slots)
    if depth < BRAM_DEPTH or per_slot < BRAM_MIN_BITS:
        return plan.weight_bits, 0, 0
    width = per_slot // max(depth, 1)
    # DP16KD: 16384 x 1 .. 512 x 36; a memory takes the configuration that needs the fewest blocks
    blocks = min(math.ceil(width / w) * math.ceil(depth / d) for d, w in DP16KD)
    return 0, plan.weight_bits, len(plan.slots) * max(1, blocks)


NETWORK_FEATURES = ("one", "engines", "pe_lut", "lut_memory_bits", "slot_results", "requant_bits",
                    "crossbar_cells", "circulant")


def network_features(compiled) -> list[float]:
    """One feature vector of a compiled network (see :data:`NETWORK_FEATURES`)."""
    engines = pe = lut_mem = results = requant = cells = circ = 0.0
    for plan in compiled.plans:
        engines += 1
        for slot in plan.slots:
            if slot.pe == "crossbar":
                fmt = slot.params.fmt
                cells += fmt.rows * fmt.cols * fmt.w_bits
                pe += pe_lut("crossbar", slot.params.to_dict())
            elif slot.pe == "circulant-fft":
                circ += 1
                pe += pe_lut("circulant-fft", slot.params.to_dict())
            else:
                pe += pe_lut(slot.pe, slot.params.to_dict())
        # the LUT model reads the shallow (< BRAM_DEPTH words) memories: on the measured networks that fits better
        # (2.2 % held out) than every memory the block RAM count leaves in LUTs (2.8 %)
        if plan.scheme != "crossbar" and plan.groups * plan.beats < BRAM_DEPTH:
            lut_mem += plan.weight_bits
        results += len(plan.slots) * plan.width * plan.acc_shape.width
        requant += plan.acc_shape.width / plan.folding.requant
    return [1.0, engines, pe, lut_mem, results, requant, cells, circ]


#: The digits networks of ``peforge bench network`` (peforge.digits scheme) as digits-mlp layers.
DIGITS_LAYERS = {"fixed": ("fixed", "fixed"), "sp2": ("sp2", "sp2"), "msq": ("msq", "msq"), "nm": ("nm", "nm"),
                 "circulant": ("circulant", "fixed"), "crossbar": ("crossbar", "crossbar")}


@functools.lru_cache(maxsize=None)
def _digits_network(scheme: str):
    """A network of the structure of a bench scheme's digits network (formats, sizes, row kinds: what the features
    read), exported untrained by the explore builder in about a second."""
    from peforge.explore.model import layer_choice, train_digits_mlp

    return train_digits_mlp([layer_choice({"scheme": s}) for s in DIGITS_LAYERS[scheme]], train=False)["network"]


def _network_rows(extra: list[dict] | None = None):
    """``[(features, measured LUT, label, schemes, fmax, synth)]`` of every measured whole network on ECP5: the
    network bench's sweep and the synthesised points of sweeps (``extra``)."""
    from peforge.hw.network import CompiledNetwork, Folding
    from peforge.sw import network as net

    rows, seen = [], set()
    candidates = []
    for suite in ("network", "explore"):
        try:
            doc = json.loads((RESULTS / f"{suite}.json").read_text())
        except (OSError, ValueError):
            continue
        candidates += [d for d in doc["designs"] if d.get("pe") == "network"]
    candidates += extra or []
    for d in candidates:
        s = d.get("synth")
        if not s or s.get("lut") is None or d.get("target") != "ecp5-85k":
            continue
        try:
            if d.get("network_dir"):
                network = net.load(d["network_dir"])
            elif d.get("params", {}).get("scheme") in DIGITS_LAYERS:
                network = _digits_network(d["params"]["scheme"])
            else:
                continue
            folding = d.get("folding") or d["params"]["folding"]
            compiled = CompiledNetwork(network, Folding.from_list(folding))
        except (OSError, ValueError, TypeError, KeyError):
            continue
        if compiled.digest() in seen:
            continue
        seen.add(compiled.digest())
        schemes = "/".join(p.scheme for p in compiled.plans)
        rows.append((network_features(compiled), float(s["lut"]), f"{schemes} {compiled.digest()}", schemes,
                     s.get("fmax_mhz"), s))
    return rows


def _records_on_disk() -> list[dict]:
    """Synthesised points of earlier sweeps: the ``points.jsonl`` files under ``build/``."""
    from peforge.hw.verilog import build_root
    from peforge.explore.points import read_points

    out = []
    for path in sorted(build_root().glob("**/points.jsonl")):
        out += [r for r in read_points(path).values() if r.get("synthesised") and r.get("lut") is not None]
    return [{"synth": {k: r[k] for k in ("lut", "ff", "dsp", "bram", "fmax_mhz")}, "target": r["point"]["target"],
             "network_dir": r.get("network_dir"), "folding": r.get("folding")} for r in out]


def _cached_network_rows():
    """:func:`_network_rows` of the measured networks, kept under ``build/explore/estimator/`` by a digest of
    everything they are computed from (the results files, the sweeps' records, the generator and this code)."""
    import hashlib

    from peforge.hw.verilog import build_root, generator_fingerprint

    extra = _records_on_disk()
    h = hashlib.sha256(json.dumps(extra, sort_keys=True).encode() + generator_fingerprint().encode())
    for path in (RESULTS / "network.json", RESULTS / "explore.json", Path(__file__),
                 Path(__file__).with_name("model.py")):
        try:
            h.update(path.read_bytes())
        except OSError:
            pass
    cache = build_root() / "explore" / "estimator" / f"rows-{h.hexdigest()[:16]}.json"
    try:
        return [tuple(r) for r in json.loads(cache.read_text())]
    except (OSError, ValueError):
        pass
    rows = _network_rows(extra)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(rows) + "\n")
    return rows


@functools.lru_cache(maxsize=1)
def network_model():
    rows = _cached_network_rows()
    if len(rows) < 2:
        return None, rows
    return fit([r[0] for r in rows], [r[1] for r in rows]), rows


def estimate_compiled(compiled, target: str) -> dict:
    """Estimated ``lut``, ``ff`` (scaled from the measured networks of the same schemes), ``dsp``, ``bram``,
    ``fmax_mhz`` and ``inferences_per_s`` of a compiled network. The LUT, FF and Fmax models are fitted on ECP5
    results only: for another target they are None (DSPs and block RAM are still estimated)."""
    from peforge.synth import TARGETS

    dsp_bits = TARGETS[target].dsp_bits
    if target != "ecp5-85k":
        return {"lut": None, "ff": None, "dsp": sum(p.dsps(dsp_bits) for p in compiled.plans),
                "bram": sum(_memory_split(p)[2] for p in compiled.plans), "fmax_mhz": None, "inferences_per_s": None}
    coef, rows = network_model()
    f = network_features(compiled)
    lut = float(np.dot(coef, f)) if coef is not None else None
    schemes = "/".join(p.scheme for p in compiled.plans)
    same = [r for r in rows if r[3] == schemes and r[4]] or [r for r in rows if r[4]]
    fmax = float(np.median([r[4] for r in same])) if same else None
    ratio = float(np.median([r[5]["ff"] / r[1] for r in same])) if same else None
    return {"lut": None if lut is None else round(lut), "ff": None if lut is None or ratio is None else
            round(lut * ratio), "dsp": sum(p.dsps(dsp_bits) for p in compiled.plans),
            "bram": sum(_memory_split(p)[2] for p in compiled.plans), "fmax_mhz": fmax,
            "inferences_per_s": None if fmax is None else fmax * 1e6 / compiled.interval}


# -- held-out error -------------------------------------------------------------------------------------------

def held_out() -> dict:
    """Leave-one-out LUT error per PE model and per network scheme (and over every network)."""
    out = {"pe": {name: _loo(rows) for name, rows in _pe_rows().items() if rows}}
    _, rows = network_model()
    nets = {"all": _loo([r[:3] for r in rows])}
    for schemes in sorted({r[3] for r in rows}):
        errors = [d for d in nets["all"]["detail"] if d["label"].startswith(schemes + " ")]
        if errors:
            nets[schemes] = {"points": len(errors), "mape": float(np.mean([abs(d["predicted"] - d["measured"]) /
                                                                           d["measured"] for d in errors])),
                             "detail": errors}
    out["network"] = nets
    return out


def held_out_table(markdown: bool = True) -> str:
    """The held-out errors as a table (Markdown or text)."""
    from peforge.report import markdown_table, text_table

    errors = held_out()
    head = ["model", "measured points", "held-out mean absolute LUT error", f"target <= {TARGET_ERROR:.0%}"]
    rows = [[f"PE {name}", str(e["points"]), "-" if e["mape"] is None else f"{e['mape']:.1%}",
             "-" if e["mape"] is None else ("met" if e["mape"] <= TARGET_ERROR else "missed")]
            for name, e in errors["pe"].items()]
    rows += [[f"network {name}", str(e["points"]), "-" if e["mape"] is None else f"{e['mape']:.1%}", "(reported)"]
             for name, e in errors["network"].items()]
    return (markdown_table if markdown else text_table)(head, rows)


# -- pruning --------------------------------------------------------------------------------------------------

def near_front(records: list[dict], margin: float) -> list[dict]:
    """Records the estimate puts within ``margin`` of a Pareto front: no other record has at least their accuracy
    with ``(1 + margin)`` x fewer estimated LUTs, or with ``(1 + margin)`` x more estimated inferences/s."""
    keep = []
    for r in records:
        acc = r.get("accuracy")
        if acc is None:
            continue
        lut, rate = r.get("est_lut"), r.get("est_inferences_per_s")
        beaten_lut = lut is not None and any(o.get("accuracy") is not None and o["accuracy"] >= acc and
                                             o.get("est_lut") is not None and o["est_lut"] * (1 + margin) < lut
                                             for o in records)
        beaten_rate = rate is not None and any(o.get("accuracy") is not None and o["accuracy"] >= acc and
                                               o.get("est_inferences_per_s") is not None and
                                               o["est_inferences_per_s"] > rate * (1 + margin) for o in records)
        if not (beaten_lut and beaten_rate):
            keep.append(r)
    return keep
