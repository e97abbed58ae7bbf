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
RAMs by the rule yosys followed on the measured networks (:func:`hw.network.cost.block_ram`: memories of at least
:data:`BRAM_DEPTH` words and :data:`BRAM_MIN_BITS` bits, in the DP16KD configuration needing the fewest blocks).
Every number the estimator gives is an estimate and is labelled so in reports.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from peforge.hw.network import cost
from peforge.hw.network.cost import BRAM_DEPTH, PE_FEATURES, pe_features

__all__ = ["PE_FEATURES", "BRAM_DEPTH", "pe_features", "network_features", "fit", "held_out", "held_out_table",
           "estimate_compiled", "near_front", "TARGET_ERROR", "refit", "pe_models", "network_model",
           "committed_network_rows", "measure_requantisers", "REQUANT_GRID"]

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = ROOT / "docs" / "results"
#: The issue's target: mean absolute LUT error on held-out points of each PE.
TARGET_ERROR = 0.10


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
def pe_models() -> dict[str, list[float]]:
    """The PE models fitted on the measured PE results (what :func:`refit` stores)."""
    return {name: [float(c) for c in fit([r[0] for r in rows], [r[1] for r in rows])]
            for name, rows in _pe_rows().items() if rows}


def pe_lut(pe: str, params: dict, wrapped: bool = False) -> float:
    """Estimated LUTs of one PE configuration: the stored model (:func:`peforge.hw.network.cost.pe_lut`)."""
    return cost.pe_lut(pe, params, wrapped)


# -- networks ------------------------------------------------------------------------------------------------

def network_features(compiled, pe_coefficients: dict | None = None) -> list[float]:
    """:func:`peforge.hw.network.cost.network_features` of a compiled network (the stored PE models, or
    ``pe_coefficients`` while fitting)."""
    return cost.network_features(compiled.plans, pe_coefficients)


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
        schemes = "/".join(p.label for p in compiled.plans)
        rows.append((network_features(compiled, pe_models()), float(s["lut"]), f"{schemes} {compiled.digest()}", schemes,
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
    """The network model fitted on every measured network (what :func:`refit` stores), and its rows."""
    rows = _cached_network_rows()
    if len(rows) < 2:
        return None, rows
    return fit([r[0] for r in rows], [r[1] for r in rows]), rows


#: The requantiser configurations :func:`measure_requantisers` synthesises: accumulator bits, multiplier bits,
#: cycles per result (8 rows each).
REQUANT_GRID = [(a, m, c) for a in (12, 20, 28) for m in (12, 31) for c in (1, 2, 4, 8, 16) if c <= m]


def measure_requantisers(progress=None) -> list[dict]:
    """Synthesise every :data:`REQUANT_GRID` requantiser with yosys for ECP5 (seconds each) and return the rows
    the requantiser model is fitted on: ``acc_bits``, ``m_bits``, ``cycles``, ``lut`` (LUT4 + 2 x CCU2C)."""
    from amaranth import signed

    from peforge.hw.network import Requantizer, element_layout
    from peforge.hw.verilog import build_root
    from peforge.sw.network import FixedWeights, Layer
    from peforge.synth import synthesize_netlist

    rows = []
    for acc_bits, m_bits, cycles in REQUANT_GRID:
        rng = np.random.default_rng(acc_bits * 100 + m_bits + cycles)
        n = 8
        layer = Layer(FixedWeights(np.ones((n, 2), np.int64), 4), rng.integers(1 << (m_bits - 1), (1 << m_bits) - 1, n),
                      20, rng.integers(-1000, 1000, n), False, 4, True, 8, True)
        comp = Requantizer(acc_shape=signed(acc_bits), layer=layer, dest=[(k, 0) for k in range(n)],
                           out_layout=element_layout(signed(8), n, 1), cycles=cycles)
        if progress is not None:
            progress(f"requantiser acc {acc_bits} bits, M {m_bits} bits, {cycles} cycles")
        cells = synthesize_netlist(comp, name="requantiser", target="ecp5-85k",
                                   build_dir=build_root() / "explore" / "requant" / f"{acc_bits}-{m_bits}-{cycles}").cells
        rows.append({"acc_bits": acc_bits, "m_bits": m_bits, "cycles": cycles,
                     "lut": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)})
    return rows


def committed_network_rows():
    """The measured networks of the committed results only (``docs/results/network.json``, ``explore.json``):
    what the stored model is fitted on, so a clean checkout refits to the same coefficients."""
    return _network_rows(None)


def refit(path=None, requant_rows: list[dict] | None = None) -> dict:
    """Fit the PE and network models on the committed measured results and store them where the compiler's cost
    model reads them (:data:`peforge.hw.network.cost.MODEL`, or ``path``); returns what was written. (The held-out
    error, :func:`held_out`, also counts the synthesised points of local sweeps.)"""
    rows = committed_network_rows()
    coef = fit([r[0] for r in rows], [r[1] for r in rows]) if len(rows) >= 2 else None
    # the requantiser rows are measured by measure_requantisers (yosys, ECP5) and kept with the model
    requant_rows = requant_rows if requant_rows is not None else cost.model().get("requantiser_rows") or []
    requant = fit([cost.requant_features(r["acc_bits"], r["m_bits"], r["cycles"]) for r in requant_rows],
                  [r["lut"] for r in requant_rows]) if len(requant_rows) >= 2 else None
    doc = {"pe": pe_models(), "network": None if coef is None else [float(c) for c in coef],
           "requantiser": None if requant is None else [float(c) for c in requant], "requantiser_rows": requant_rows,
           "features": {"network": list(cost.NETWORK_FEATURES)},
           "provenance": {"network_points": len(rows),
                          "pe_points": {k: len(v) for k, v in _pe_rows().items()},
                          "sources": ["docs/results/sp2.json", "docs/results/nm.json", "docs/results/circulant.json",
                                      "docs/results/crossbar.json", "docs/results/network.json",
                                      "docs/results/explore.json"]}}
    doc["provenance"]["requantiser_points"] = len(requant_rows)
    out = Path(path) if path is not None else cost.MODEL
    out.write_text(json.dumps(doc, indent=1) + "\n")
    cost.model.cache_clear()
    return doc


def estimate_compiled(compiled, target: str) -> dict:
    """Estimated ``lut``, ``ff`` (scaled from the measured networks of the same schemes), ``dsp``, ``bram``,
    ``fmax_mhz`` and ``inferences_per_s`` of a compiled network. The LUT, FF and Fmax models are fitted on ECP5
    results only: for another target they are None (DSPs and block RAM are still estimated)."""
    from peforge.synth import TARGETS

    dsp_bits = TARGETS[target].dsp_bits
    if target != "ecp5-85k":
        return {"lut": None, "ff": None, "dsp": sum(p.dsps(dsp_bits) for p in compiled.plans),
                "bram": sum(cost.block_ram(p)[1] for p in compiled.plans), "fmax_mhz": None,
                "inferences_per_s": None}
    _, rows = network_model()
    lut = cost.luts(compiled.plans)   # the compiler's cost model: the one the default folding reads
    schemes = "/".join(p.label for p in compiled.plans)
    same = [r for r in rows if r[3] == schemes and r[4]] or [r for r in rows if r[4]]
    fmax = float(np.median([r[4] for r in same])) if same else None
    ratio = float(np.median([r[5]["ff"] / r[1] for r in same])) if same else None
    return {"lut": None if lut is None else round(lut), "ff": None if lut is None or ratio is None else
            round(lut * ratio), "dsp": sum(p.dsps(dsp_bits) for p in compiled.plans),
            "bram": sum(cost.block_ram(p)[1] for p in compiled.plans), "fmax_mhz": fmax,
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
