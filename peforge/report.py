"""Tables for terminals and Markdown: one row per (PE, params, synthesis result)."""

from __future__ import annotations

__all__ = ["params_label", "synth_rows", "synth_table", "markdown_table", "text_table"]


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


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def synth_table(entries) -> str:
    return text_table(*synth_rows(entries))
