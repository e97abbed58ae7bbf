"""The SPACE file of ``peforge explore``: loading, validation and expansion into points (``docs/explore.md``).

A space is a YAML or JSON mapping::

    name: digits-schemes            # optional label of the sweep
    model: digits-mlp               # or {builder: digits-mlp, hidden: 32}, {network: DIR}, {builder: "pkg.mod:fn"}
    data: digits                    # or {npz: FILE} holding x_test, y_test
    seed: 0                         # training seed
    target: ecp5-85k                # or a list: swept
    seeds: [1]                      # nextpnr seeds of each synthesis
    fold: [default, 4, slowest]     # folding: the default, a multiple of its interval, or the smallest; swept
    layers:                         # one entry per layer; every value may be a list (swept)
      - {scheme: [fixed, sp2, nm], bits: [4, 8], lanes: 16}
      - {scheme: fixed, bits: 8}

or, instead of ``layers``, ``variants``: a list of ``{layers, fold, target}``, each expanded alike (``fold`` and
``target`` default to the top-level ones); the points are their union.

Every point is one combination (the product of every list), normalised (:func:`peforge.explore.model.layer_choice`:
defaults filled in, keys of other schemes dropped) and named by a digest of its choices and of the space's model,
data and seed, so two spaces that share a point share its record. Errors are one line naming the key and what is
allowed (:class:`SpaceError`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

from peforge.explore.model import FOLD_KEYS, LAYER_SCHEMES, layer_choice
from peforge.hw.network.folding import IMPLS, MAX_REUSE

__all__ = ["SpaceError", "Space", "load_space", "parse_space", "point_digest", "model_digest", "network_schemes",
           "EXAMPLES"]

TOP_KEYS = ("name", "model", "data", "seed", "target", "seeds", "fold", "layers", "variants")
LAYER_KEYS = ("scheme", "bits", "nm", "block", "rows_per_sub", "adc_bits", *FOLD_KEYS)
BUILTIN = ("digits-mlp",)


class SpaceError(ValueError):
    """A SPACE file that cannot be swept: one line naming the key and what it must be."""


def _values(where: str, value, check) -> list:
    """A scalar or a non-empty list of scalars, each passing ``check(where, v)``; as a list without repeats."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise SpaceError(f"Space {where} must be a value or a non-empty list of values, not []")
    out = []
    for v in items:
        check(where, v)
        if v not in out:
            out.append(v)
    return out


def _int_check(lo: int, hi: int, *, null: bool = False):
    def check(where, v):
        if null and v is None:
            return
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            extra = " or null" if null else ""
            raise SpaceError(f"Space {where} must be an integer from {lo} to {hi}{extra} (or a list of them), "
                             f"not {v!r}")
    return check


def _choice_check(allowed):
    def check(where, v):
        if v not in allowed:
            raise SpaceError(f"Space {where} must be one of {', '.join(map(repr, allowed))} (or a list of them), "
                             f"not {v!r}")
    return check


def _nm_check(where, v):
    found = isinstance(v, str) and re.fullmatch(r"(\d+):(\d+)", v)
    if not found or not 1 <= int(found[1]) < int(found[2]) <= 16:
        raise SpaceError(f"Space {where} must be 'N:M' with 1 <= N < M <= 16 (or a list of them), not {v!r}")


def _block_check(where, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 2 or v > 64 or v & (v - 1):
        raise SpaceError(f"Space {where} must be a power of two from 2 to 64 (or a list of them), not {v!r}")


def _fold_check(where, v):
    if v in ("default", "slowest"):
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 <= v <= 1024:
        raise SpaceError(f"Space {where} must be 'default', 'slowest' or a multiple of the default interval from "
                         f"1 to 1024 (or a list of them), not {v!r}")


LAYER_CHECKS = {
    "scheme": _choice_check(LAYER_SCHEMES), "bits": _int_check(2, 16), "nm": _nm_check, "block": _block_check,
    "rows_per_sub": _int_check(1, 64), "adc_bits": _int_check(1, 16, null=True),
    "lanes": _int_check(1, 4096), "pes": _int_check(1, 1024), "requant": _int_check(1, 64),
    "impl": _choice_check(IMPLS), "reuse": _int_check(1, MAX_REUSE),
}


@dataclass(frozen=True)
class Space:
    """A validated space: its settings and its points (each ``{"layers": [...], "fold": f, "target": t}``),
    in order, without repeats."""

    name: str
    model: dict
    data: object
    seed: int
    seeds: tuple[int, ...]
    points: tuple[dict, ...]
    source: str = ""
    #: the schemes of a saved network's layers (model ``{network: DIR}``), which its points do not choose
    schemes: tuple[str, ...] = ()

    def digest(self, point: dict) -> str:
        return point_digest(self, point)

    def context(self) -> dict:
        """What a worker needs besides the point (plain JSON)."""
        return {"model": self.model, "data": self.data, "seed": self.seed, "seeds": list(self.seeds)}


def _canon(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def model_digest(space_model: dict, data, seed: int, layers: list[dict]) -> str:
    """Names the trained network of a point: model, data, seed and the layers' format choices (not folding)."""
    formats = [{k: v for k, v in c.items() if k not in FOLD_KEYS} for c in layers]
    return hashlib.sha256(_canon([space_model, data, seed, formats]).encode()).hexdigest()[:12]


def point_digest(space: Space, point: dict) -> str:
    return hashlib.sha256(_canon([space.model, space.data, space.seed, list(space.seeds), point]).encode()
                          ).hexdigest()[:12]


def _model(value, base: Path) -> dict:
    if isinstance(value, str):
        value = {"builder": value}
    if not isinstance(value, dict):
        raise SpaceError(f"Space model must be 'digits-mlp', {{network: DIR}} or {{builder: 'module:function'}}, "
                         f"not {value!r}")
    unknown = [k for k in value if k not in ("builder", "network", "hidden", "options")]
    if unknown:
        raise SpaceError(f"Space model.{unknown[0]} must be one of builder, network, hidden, options, not "
                         f"{unknown[0]!r}")
    if ("network" in value) == ("builder" in value):
        raise SpaceError(f"Space model must name exactly one of builder or network, not {sorted(value)!r}")
    if "network" in value:
        path = value["network"]
        if not isinstance(path, str) or not (base / path / "network.json").is_file():
            raise SpaceError(f"Space model.network must be a saved network directory (network.json + "
                             f"weights.npz), not {path!r}")
        return {"network": str((base / path).resolve())}
    builder = value["builder"]
    if not isinstance(builder, str) or not (builder in BUILTIN or re.fullmatch(r"[\w.]+:\w+", builder)):
        raise SpaceError(f"Space model.builder must be {', '.join(map(repr, BUILTIN))} or 'module:function', "
                         f"not {builder!r}")
    out = {"builder": builder}
    if "hidden" in value:
        _int_check(1, 1024)("model.hidden", value["hidden"])
        out["hidden"] = value["hidden"]
    if "options" in value:
        if not isinstance(value["options"], dict):
            raise SpaceError(f"Space model.options must be a mapping, not {value['options']!r}")
        out["options"] = value["options"]
    return out


def _data(value, base: Path):
    if value == "digits":
        return "digits"
    if isinstance(value, dict) and set(value) == {"npz"} and isinstance(value["npz"], str):
        path = base / value["npz"]
        if not path.is_file():
            raise SpaceError(f"Space data.npz must be an existing .npz file with x_test and y_test, not "
                             f"{value['npz']!r}")
        return {"npz": str(path.resolve())}
    raise SpaceError(f"Space data must be 'digits' or {{npz: FILE}}, not {value!r}")


def network_schemes(path: str) -> tuple[str, ...]:
    """The scheme of each layer of the saved network in ``path`` (``network.json``), for the points' labels."""
    layers = json.loads((Path(path) / "network.json").read_text()).get("layers", [])
    return tuple(str(layer.get("scheme", "layer")) if isinstance(layer, dict) else "layer" for layer in layers)


def parse_space(doc, *, source: str = "<space>", base: Path | str = ".") -> Space:
    """Validate a space document (already parsed) and expand its points; ``base`` resolves relative paths.

    Raises
    ------
    SpaceError
        ``"Space layers[0].bits must be an integer from 2 to 16 (or a list of them), not 'x'"``,
        ``"Space key 'layer' must be one of name, model, ..., not 'layer'"``, ...
    """
    base = Path(base)
    if not isinstance(doc, dict):
        raise SpaceError(f"Space must be a mapping of keys (name, model, data, layers, ...), not "
                         f"{type(doc).__name__}")
    for key in doc:
        if key not in TOP_KEYS:
            raise SpaceError(f"Space key {key!r} must be one of {', '.join(TOP_KEYS)}, not {key!r}")
    if "model" not in doc:
        raise SpaceError("Space must have a model (digits-mlp, {network: DIR} or {builder: 'module:function'}), "
                         "not none")
    model = _model(doc["model"], base)
    data = _data(doc.get("data", "digits"), base)
    if model.get("builder") == "digits-mlp" and data != "digits":
        raise SpaceError(f"Space data must be 'digits' for the digits-mlp builder, not {doc.get('data')!r}")
    seed = doc.get("seed", 0)
    _int_check(0, 2 ** 31)("seed", seed)
    name = doc.get("name", Path(source).stem)
    if not isinstance(name, str):
        raise SpaceError(f"Space name must be a string, not {name!r}")
    from peforge.synth import TARGETS

    targets = _values("target", doc.get("target", "ecp5-85k"), _choice_check(tuple(TARGETS)))
    seeds = doc.get("seeds", [1])
    if not isinstance(seeds, list) or not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                                                       for s in seeds) or len(set(seeds)) != len(seeds):
        raise SpaceError(f"Space seeds must be a non-empty list of distinct positive integers, not {seeds!r}")
    folds = _values("fold", doc.get("fold", "default"), _fold_check)
    if ("layers" in doc) == ("variants" in doc) and "network" not in model:
        raise SpaceError("Space must have exactly one of layers (one mapping per layer) or variants (a list of "
                         f"{{layers, fold, target}}), not {'both' if 'layers' in doc else 'neither'}")
    if "variants" in doc:
        variants = doc["variants"]
        if not isinstance(variants, list) or not variants:
            raise SpaceError(f"Space variants must be a non-empty list of {{layers, fold, target}}, not {variants!r}")
    else:
        variants = [{"layers": doc.get("layers")}]
    points = []
    for v, variant in enumerate(variants):
        where = f"variants[{v}]." if "variants" in doc else ""
        if not isinstance(variant, dict) or any(k not in ("layers", "fold", "target") for k in variant):
            raise SpaceError(f"Space {where[:-1] or 'variant'} must be a mapping of layers, fold and target, not "
                             f"{variant!r}")
        v_targets = (_values(f"{where}target", variant["target"], _choice_check(tuple(TARGETS)))
                     if "target" in variant else targets)
        v_folds = _values(f"{where}fold", variant["fold"], _fold_check) if "fold" in variant else folds
        for point in _expand(variant.get("layers"), model, v_folds, v_targets, where):
            if point not in points:
                points.append(point)
    schemes = network_schemes(model["network"]) if "network" in model else ()
    return Space(name, model, data, seed, tuple(seeds), tuple(points), source, schemes)


def _expand(layers, model: dict, folds: list, targets: list, where: str) -> list[dict]:
    """The points of one variant: the product of its targets, folds and every layer's choices."""
    if "network" in model:
        count = len(network_schemes(model["network"]))
        layers = [{} for _ in range(count)] if layers is None else layers
    if not isinstance(layers, list) or not layers:
        raise SpaceError(f"Space {where}layers must be a non-empty list with one mapping per layer, not {layers!r}")
    if model.get("builder") == "digits-mlp" and len(layers) != 2:
        raise SpaceError(f"Space {where}layers must have 2 entries for the digits-mlp (64 -> hidden -> 10), not "
                         f"{len(layers)}")
    if "network" in model and len(layers) != count:
        raise SpaceError(f"Space {where}layers must have one entry per layer of the network ({count}), not "
                         f"{len(layers)}")
    per_layer = []
    for n, layer in enumerate(layers):
        at = f"{where}layers[{n}]"
        if not isinstance(layer, dict):
            raise SpaceError(f"Space {at} must be a mapping of choices, not {layer!r}")
        options = {}
        for key, value in layer.items():
            if key not in LAYER_KEYS:
                raise SpaceError(f"Space {at}.{key} must be one of {', '.join(LAYER_KEYS)}, not {key!r}")
            if "network" in model and key not in FOLD_KEYS:
                raise SpaceError(f"Space {at}.{key} must not be set for a saved network (only "
                                 f"{', '.join(FOLD_KEYS)} are), not {value!r}")
            options[key] = _values(f"{at}.{key}", value, LAYER_CHECKS[key])
        keys = list(options)
        combos = []
        for values in itertools.product(*(options[k] for k in keys)):
            choice = dict(zip(keys, values))
            if model.get("builder") == "digits-mlp":
                choice = layer_choice(choice)
            if choice not in combos:
                combos.append(choice)
        per_layer.append(combos)
    return [{"layers": list(combo), "fold": fold, "target": target}
            for target, fold, *combo in itertools.product(targets, folds, *per_layer)]


def load_space(path) -> Space:
    """Read a ``.yaml``/``.yml``/``.json`` SPACE file (or ``example:NAME``, :data:`EXAMPLES`) and validate it."""
    text = str(path)
    if text.startswith("example:"):
        name = text.removeprefix("example:")
        if name not in EXAMPLES:
            raise SpaceError(f"Space example must be one of {', '.join(EXAMPLES)}, not {name!r}")
        return parse_space(json.loads(json.dumps(EXAMPLES[name])), source=name)
    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"Space file must exist, not {text!r}")
    raw = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise SpaceError(f"Space file {text} must be JSON when PyYAML is not installed, not YAML") from None
        try:
            doc = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise SpaceError(f"Space file {text} must be valid YAML: {' '.join(str(exc).split())}") from None
    else:
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SpaceError(f"Space file {text} must be valid JSON, not invalid at line {exc.lineno} column "
                             f"{exc.colno}: {exc.msg}") from None
    return parse_space(doc, source=text, base=path.parent)


#: Named spaces (``peforge explore example:NAME``; ``peforge explore --example NAME`` prints one as YAML).
EXAMPLES = {
    # every scheme of the digits network, each at three foldings (crossbar: its one): 16 points (docs/explore.md)
    # (the networks of peforge e2e: the circulant one keeps its 10-way classifier in 8-bit fixed point)
    "digits-all": {
        "name": "digits-all", "model": "digits-mlp", "data": "digits", "seed": 0, "target": "ecp5-85k",
        "fold": ["default", 4, "slowest"],
        "variants": [{"layers": [{"scheme": s}, {"scheme": s}]} for s in ("fixed", "sp2", "msq", "nm")]
        + [{"layers": [{"scheme": "circulant"}, {"scheme": "fixed"}]},
           # crossbar engines have one folding (a slot per tile): one point
           {"layers": [{"scheme": "crossbar"}, {"scheme": "crossbar"}], "fold": "default"}],
    },
    # one small synthesised point, for a smoke run of `peforge bench explore` and of the synthesis path
    "smoke": {
        "name": "smoke", "model": "digits-mlp", "data": "digits", "seed": 0, "target": "ecp5-85k",
        "fold": ["slowest"], "layers": [{"scheme": "sp2"}, {"scheme": "sp2"}],
    },
    # the benchmark's 16 ECP5 points: four schemes (both layers alike) x four foldings
    "bench16": {
        "name": "bench16", "model": "digits-mlp", "data": "digits", "seed": 0, "target": "ecp5-85k",
        "fold": ["default", 2, 4, "slowest"],
        "layers": [{"scheme": ["fixed", "sp2", "nm", "msq"]}, {"scheme": "fixed", "bits": 8}],
    },
}
