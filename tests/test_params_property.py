"""Every legal parameter set of every registered PE generates Verilog that lints; every bad one says why.

Hypothesis draws parameter sets the way a user writes them (``--set name=text`` through
:meth:`sw.params.Params.with_settings`), a few fields at a time around each PE's defaults, with values
at and just past the edges of every range. Each draw either raises its one-line ``ValueError`` or
``TypeError`` in the project's grammar (``"<Subject> must be <constraint>, not <value>"``), or it builds,
converts (:func:`hw.verilog.write_design`) and passes the project's Verilator lint (:func:`hw.verilog.lint`).

The fields come from each Params' :meth:`~sw.params.Params.describe` (nested ``fmt.*`` settings
included), so a new PE is covered without a change here. :data:`DRAW` only narrows where values are
drawn, to keep the designs small enough for a quick lint; a field it does not name gets a generic range
around its default.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peforge.hw import registry
from peforge.hw.verilog import lint, write_design

#: One line, "<Subject> must be <constraint>, not <value>" (docs: STYLE.md's error grammar).
ERROR = re.compile(r"^[A-Z][^\n]* must be [^\n]+, not [^\n]+$")

PES = [pe for pe in registry.REGISTRY.values() if pe.source != "test"]

_WIDTH = [0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 18, 19, 31, 32, 33]

#: Where values are drawn for a dotted parameter name (all PEs): a list of candidates. Sizes stay small
#: (a lint of seconds); widths and counts include the values just outside each legal range.
DRAW: dict[str, list] = {
    "lanes": [0, 1, 2, 3, 5, 8],
    "groups": [0, 1, 2, 3],
    "act_bits": _WIDTH,
    "w_bits": _WIDTH,
    "max_len": [0, 1, 2, 3, 4, 7, 8, 100, 4096, 1 << 24, (1 << 24) + 1],
    "fmt.bits": [1, 2, 3, 4, 5, 6, 7, 8, 9],
    "fmt.m1": [None, -1, 0, 1, 2, 3, 4, 7, 8],
    "fmt.n": [0, 1, 2, 3, 4, 5],
    "fmt.m": [0, 1, 2, 3, 4, 5, 8, 9],
    # circulant-fft
    "fmt.block": [2, 4, 4, 8, 12],
    "arch": [None, "parallel", "streaming", "serial"],
    "fmt.act_bits": _WIDTH,
    "fmt.w_bits": _WIDTH,
    "fmt.tw_bits": [3, 4, 5, 8, 10, 16, 17, 18, 19],
    "fmt.guard_bits": [-1, 0, 1, 3, 8, 9],
    "fmt.prod_shift": [None, -1, 0, 1, 3, 8, 24, 40],
    "fmt.max_q": [0, 1, 2, 3, 64, 1 << 16, (1 << 16) + 1],
    "dsp_bits": [0, 1, 2, 8, 9, 12, 16, 17, 18, 25, 27, 36, 37],
    # crossbar
    "fmt.rows": [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32],
    "fmt.cols": [0, 1, 2, 3, 4, 7],
    "fmt.rows_per_sub": [0, 1, 2, 3, 4, 8, 16],
    "fmt.cell_bits": [0, 1, 2, 3, 4, 5],
    "fmt.adc_bits": [None, 0, 1, 2, 3, 4, 5, 8, 10, 16, 17],
    "array_latency": [0, 1, 2, 16, 17],
    "emulator": ["registers", "bram"],
}

#: Drawn in every example where the PE has them: their defaults make designs too large for a quick lint.
ALWAYS = ("fmt.block",)

#: Larger designs, only in the slow sweep (``-m slow``).
DRAW_SLOW: dict[str, list] = {
    "lanes": [0, 1, 2, 3, 5, 8, 16, 17],
    "groups": [0, 1, 2, 3, 4, 8],
    "fmt.block": [2, 4, 8, 12, 16, 32, 64, 128],
    "fmt.rows": [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128],
    "fmt.cols": [0, 1, 2, 3, 4, 7, 8, 16],
}

#: Regression cases a new user tried (issue 10): each must lint clean.
KNOWN = [
    ("crossbar", {"fmt.rows": "16", "fmt.w_bits": "4", "fmt.adc_bits": "10"}),
    ("crossbar", {"fmt.cols": "7", "fmt.rows_per_sub": "4", "fmt.cell_bits": "1"}),
]


def candidates(name: str, kind: str, default, table: dict[str, list]):
    """A strategy for parameter ``name`` of type name ``kind`` (``"int"``, ``"bool"``, ``"int | None"``)."""
    if name in table:
        return st.sampled_from(table[name])
    if kind == "bool":
        return st.booleans()
    values = []
    if "int" in kind:
        base = default if isinstance(default, int) else 4
        values = [-1, 0, 1, 2, base - 1, base, base + 1, 2 * base]
    elif "str" in kind:
        values = [default, "bogus"]
    if "None" in kind:
        values.append(None)
    return st.sampled_from(values or [default])


def as_text(value) -> str:
    """``value`` as a user types it after ``--set name=``."""
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


@st.composite
def settings_for(draw, pe, table):
    rows = pe.default_params().describe()
    names = [row[0] for row in rows]
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=4, unique=True))
    chosen += [name for name in ALWAYS if name in names and name not in chosen]
    kinds = {name: (kind, value) for name, kind, value, _ in rows}
    return {name: as_text(draw(candidates(name, *kinds[name], table))) for name in chosen}


def check(pe, overrides: dict[str, str]) -> str:
    """Build ``pe`` with ``overrides``: the one-line error, or Verilog that lints. Returns what happened."""
    try:
        params = pe.default_params().with_settings(overrides)
    except (ValueError, TypeError) as error:
        message = str(error)
        assert ERROR.match(message), f"{pe.name} {overrides}: error not in the project's grammar: {message!r}"
        return "error"
    assert type(params).from_json(params.to_json()) == params
    with tempfile.TemporaryDirectory() as out:
        write_design(pe, params, Path(out))
        lint(Path(out) / f"{pe.top}.v", pe.top)
    return "lint"


@pytest.mark.parametrize("name, overrides", KNOWN, ids=lambda x: x if isinstance(x, str) else
                         ",".join(f"{k}={v}" for k, v in x.items()))
def test_known_sets_lint(name, overrides):
    assert check(registry.get(name), overrides) == "lint"


def _property(pe, table, examples):
    @settings(max_examples=examples, deadline=None, derandomize=examples <= 20, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(settings_for(pe, table))
    def run(overrides):
        check(pe, overrides)
    run()


@pytest.mark.parametrize("pe", PES, ids=lambda pe: pe.name)
def test_every_params_lints_or_says_why(pe):
    _property(pe, DRAW, examples=10)


@pytest.mark.slow
@pytest.mark.parametrize("pe", PES, ids=lambda pe: pe.name)
def test_every_params_lints_or_says_why_slow(pe):
    """Deselected by default (``-m "not slow"`` in pyproject's addopts); ``pytest -m slow`` runs it."""
    _property(pe, {**DRAW, **DRAW_SLOW}, examples=150)
