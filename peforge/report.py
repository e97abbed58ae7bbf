"""Tables for terminals and Markdown, and the benchmark results files they are rendered from.

Results files
-------------
Every ``make bench`` suite writes ``docs/results/<suite>.json`` and renders ``<suite>.md`` from it;
``peforge e2e`` reads the JSON. Schema version :data:`RESULTS_SCHEMA_VERSION` (checked by
:func:`validate_results`)::

    {"schema_version": 1, "suite": "nm", "date": "2026-11-21",
     "git_revision": "ec7ea47" | null, "host": {"machine": "x86_64", "python": "3.11.7"},
     "tools": {"amaranth": "0.5.10", ...}, "target": "ecp5-85k", "seeds": [1, 2, 3],
     "provenance": "how these numbers were measured",
     "designs": [{"label": "2:4 x4 groups DSP", "pe": "nm-sparse", "params": {Params.to_dict()},
                  "digest": "Params.digest()", "wrapped": true,
                  "synth": {"lut": 441, "ff": 618, "dsp": 8, "bram": 0, "fmax_mhz": 140.2,
                            "per_seed": [{"seed": 1, "fmax_mhz": 139.0}, ...] | null} | null,
                  "error": "first line of the synthesis error (only when synth is null)",
                  ...suite-specific fields: "lanes", "macs_per_cycle", "sqnr_db"...}],
     "study": {...suite-specific measurements that are not one design's (crossbar software study)}}

``lut``/``ff``/``dsp``/``bram`` are the first seed's (the flow counts them once; placement barely
changes them), ``fmax_mhz`` the median over the seeds that routed, ``per_seed`` each seed's Fmax (null when
not recorded; a seed stopped at the bench's time limit is ``{"seed": 2, "fmax_mhz": null, "unrouted": true}``,
after the seeds that routed); a number is null when the design has none (no register-to-register path) or it was not
recorded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

__all__ = ["log_axis", "si_label", "or_dash", "params_label", "synth_rows", "synth_table", "markdown_table", "text_table",
           "RESULTS_SCHEMA_VERSION", "synth_record", "validate_results", "load_results", "dump_results"]

#: Version of the results-file schema above; a file with another version is rejected.
RESULTS_SCHEMA_VERSION = 1


def params_label(params) -> str:
    """Compact ``name=value`` list of a parameter set (nested names dotted)."""
    parts = []
    for name, _kind, value, _doc in params.describe():
        value = str(value).lower() if isinstance(value, bool) else value
        parts.append(f"{name}={value}")
    return " ".join(parts)


def _fmax(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def synth_rows(entries) -> tuple[list[str], list[list[str]]]:
    """Header and rows for ``[(pe_name, params, SynthResult)]``."""
    header = ["PE", "parameters", "target", "LUT", "FF", "DSP", "BRAM", "Fmax MHz", "MACs/cycle",
              "GMAC/s", "wrapped"]
    rows = []
    for name, params, r in entries:
        macs = getattr(params, "macs_per_cycle", None)
        gmacs = "-" if macs is None or r.fmax_mhz is None else f"{macs * r.fmax_mhz / 1000:.2f}"
        rows.append([name, params_label(params), r.target, str(r.lut), str(r.ff), str(r.dsp),
                     str(r.bram), _fmax(r.fmax_mhz), "-" if macs is None else str(macs), gmacs,
                     "yes" if r.wrapped else "no"])
    return header, rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def or_dash(value, fmt: str = "{}") -> str:
    """``fmt.format(value)``, or ``"-"`` for a value that was not measured (None)."""
    return "-" if value is None else fmt.format(value)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def synth_table(entries) -> str:
    return text_table(*synth_rows(entries))


# -- results files ------------------------------------------------------------------------------------

def synth_record(result) -> dict | None:
    """The ``synth`` entry of a design for a :class:`synth.SynthResult` (None for a failed synthesis)."""
    if result is None:
        return None
    return {"lut": result.lut, "ff": result.ff, "dsp": result.dsp, "bram": result.bram,
            "fmax_mhz": result.fmax_mhz,
            "per_seed": [{"seed": s, "fmax_mhz": f} for s, f in zip(result.seeds, result.fmax_per_seed)]
            + [{"seed": s, "fmax_mhz": None, "unrouted": True} for s in result.unrouted_seeds]}


_INT, _NUMBER, _STR, _BOOL = "an integer", "a number", "a string", "a boolean"
_KINDS = {_INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
          _NUMBER: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          _STR: lambda v: isinstance(v, str), _BOOL: lambda v: isinstance(v, bool),
          "a list": lambda v: isinstance(v, list), "an object": lambda v: isinstance(v, Mapping)}
_TOP = {"schema_version": _INT, "suite": _STR, "date": _STR, "git_revision": (_STR, None),
        "host": "an object", "tools": "an object", "target": _STR, "seeds": "a list", "provenance": _STR,
        "designs": "a list", "study": "an object"}
_DESIGN = {"label": _STR, "pe": _STR, "params": "an object", "digest": _STR, "wrapped": _BOOL,
           "synth": ("an object", None)}
_SYNTH = {"lut": (_INT, None), "ff": (_INT, None), "dsp": (_INT, None), "bram": (_INT, None),
          "fmax_mhz": (_NUMBER, None), "per_seed": ("a list", None)}
_SEED = {"seed": _INT, "fmax_mhz": (_NUMBER, None)}


def _check_fields(node, spec: dict, where: str, source: str) -> None:
    for name, kinds in spec.items():
        field = f"{where}{name}"
        if name not in node:
            raise ValueError(f"Results file {source} must have field {field!r}")
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        value = node[name]
        if not any(value is None if kind is None else _KINDS[kind](value) for kind in kinds):
            wanted = " or ".join("null" if kind is None else kind for kind in kinds)
            raise ValueError(f"Results file {source}: field {field!r} must be {wanted}, not {value!r}")


def validate_results(doc, source: str = "<results>") -> dict:
    """Check a results document against the schema above; return it unchanged.

    Raises
    ------
    ValueError
        One line naming the file and the field, e.g. ``"Results file docs/results/nm.json: field
        'designs[1].synth.lut' must be an integer or null, not '441'"``.
    """
    if not isinstance(doc, Mapping):
        raise ValueError(f"Results file {source} must hold a JSON object, not {type(doc).__name__}")
    _check_fields(doc, _TOP, "", source)
    if doc["schema_version"] != RESULTS_SCHEMA_VERSION:
        raise ValueError(f"Results file {source}: field 'schema_version' must be {RESULTS_SCHEMA_VERSION}, "
                         f"not {doc['schema_version']!r}")
    for n, seed in enumerate(doc["seeds"]):
        _check_fields({f"seeds[{n}]": seed}, {f"seeds[{n}]": _INT}, "", source)
    for n, design in enumerate(doc["designs"]):
        where = f"designs[{n}]."
        if not isinstance(design, Mapping):
            raise ValueError(f"Results file {source}: field {where[:-1]!r} must be an object, not {design!r}")
        _check_fields(design, _DESIGN, where, source)
        synth = design["synth"]
        if synth is None:
            _check_fields(design, {"error": _STR}, where, source)
            continue
        _check_fields(synth, _SYNTH, f"{where}synth.", source)
        for m, seed in enumerate(synth["per_seed"] or ()):
            if not isinstance(seed, Mapping):
                raise ValueError(f"Results file {source}: field '{where}synth.per_seed[{m}]' must be an object, "
                                 f"not {seed!r}")
            _check_fields(seed, _SEED, f"{where}synth.per_seed[{m}].", source)
    return doc


def load_results(path) -> dict:
    """Read and validate one results file (raises the one-line ValueError of :func:`validate_results`)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"Results file {path} must be valid JSON, not invalid at line {exc.lineno} "
                         f"column {exc.colno}: {exc.msg}") from None
    return validate_results(doc, str(path))


def dump_results(doc) -> str:
    """The text of a results file: validated, indented, one trailing newline."""
    return json.dumps(validate_results(doc), indent=1) + "\n"


# -- plots ---------------------------------------------------------------------------------------------------------

def si_label(value: float, _pos=None) -> str:
    """A tick label: ``150``, ``1.5k``, ``20k``, ``3M``."""
    for scale, unit in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{unit}"
    return f"{value:g}"


def log_axis(ax, values: list[float]) -> None:
    """A log x axis of ``ax`` over ``values`` with a few labelled ticks (1-2-5 steps, finer on a narrow range), so no two
    labels overlap: matplotlib labels minor ticks on a range under a decade, and those collide."""
    import math

    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    lo, hi = min(values) / 1.25, max(values) * 1.25
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks = []
    for mantissas in ((1,), (1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [m * 10.0 ** e for e in decades for m in mantissas if lo <= m * 10.0 ** e <= hi]
        if len(ticks) >= 3:
            break
    if len(ticks) < 3:  # a range narrower than the finest step: three ticks rounded to two digits
        ticks = sorted({float(f"{t:.2g}") for t in (lo * 1.1, math.sqrt(lo * hi), hi / 1.1)})
    ticks = ticks[::-(-len(ticks) // 8)]  # at most 8 labels
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(si_label))
    ax.xaxis.set_minor_formatter(NullFormatter())
