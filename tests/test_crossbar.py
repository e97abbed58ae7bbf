"""crossbar: parameters, elaboration and lint, RTL vs golden_mvm in Verilator, the batch API vs numpy."""

import numpy as np
import pytest

from hw.crossbar import CrossbarController, CrossbarParams, CrossbarSystem, IdealArray
from hw.verilog import lint, to_verilog, write_design
from peforge import registry
from sw.forms import CrossbarFormat
from tb import crossbar as tb_xb
from tb.runner import run

GRID = [
    CrossbarParams(),
    CrossbarParams(zero_skip=False, array_latency=3),
    # odd sizes, a lossy 2-bit ADC (column sums clip), 3 sub-arrays of 2 rows
    CrossbarParams(fmt=CrossbarFormat(rows=6, cols=3, rows_per_sub=2, act_bits=3, w_bits=4, cell_bits=2,
                                      adc_bits=2), array_latency=2),
]
LINT_ONLY = [
    CrossbarParams(fmt=CrossbarFormat(rows=4, cols=1, rows_per_sub=4, act_bits=1, w_bits=1, cell_bits=1)),
    CrossbarParams(fmt=CrossbarFormat(rows=16, cols=2, rows_per_sub=16, act_bits=4, w_bits=6, cell_bits=3)),
]


def ident(p):
    f = p.fmt
    return (f"r{f.rows}c{f.cols}s{f.rows_per_sub}-a{f.act_bits}w{f.w_bits}cell{f.cell_bits}adc{f.adc_bits}"
            f"-{'skip' if p.zero_skip else 'noskip'}-L{p.array_latency}")


@pytest.mark.parametrize("kwargs, kind, message", [
    ({"fmt": (32, 8)}, TypeError, r"^Crossbar format \(fmt\) must be a CrossbarFormat, not \(32, 8\)$"),
    ({"zero_skip": 1}, TypeError, r"^Zero-skip \(zero_skip\) must be a bool, not 1$"),
    ({"emulator": "bram"}, ValueError, r"^Emulator \(emulator\) must be one of 'registers', not 'bram'$"),
    ({"array_latency": 0}, ValueError, r"^Array latency \(array_latency\) must be an integer from 1 to 16, not 0$"),
    ({"array_latency": 2.0}, TypeError, r"^Array latency \(array_latency\) must be an integer, not 2\.0$"),
    ({"fmt": CrossbarFormat(rows=1024, cols=16)}, ValueError,
     r"^Register emulator cells \(rows \* physical_cols \* cell_bits\) must be at most 65536 bits, not 131072$"),
])
def test_params_errors(kwargs, kind, message):
    with pytest.raises(kind, match=message):
        CrossbarParams(**kwargs)


def test_component_type_checks():
    for cls in (CrossbarController, IdealArray, CrossbarSystem):
        with pytest.raises(TypeError, match=rf"^{cls.__name__} params must be CrossbarParams, not 3$"):
            cls(3)


def test_derived_values_and_json():
    p = CrossbarParams()
    f = p.fmt
    assert (f.sub_arrays, f.slices, f.physical_cols, f.adc_bits) == (4, 4, 16, 5)
    assert (p.sub_bits, p.row_bits, p.step_bits) == (2, 5, 6)
    assert p.input_layout.size == 32 * 8
    assert p.output_layout.size == 4 * f.y_bits + 6
    assert p.load_layout.size == 5 + 16 * 2
    assert p.vector_cycles([0, 0, 0, 0]) == 9 and p.vector_cycles([8, 8, 8, 8]) == 1 + 4 * 10
    assert CrossbarParams.from_json(p.to_json()) == p
    q = p.with_settings({"fmt.rows_per_sub": "4", "zero_skip": "false"})
    assert q.fmt.rows_per_sub == 4 and q.fmt.adc_bits == 4 and not q.zero_skip


@pytest.mark.parametrize("params", GRID + LINT_ONLY, ids=ident)
def test_generate_and_lint(tmp_path, params):
    manifest = write_design(registry.get("crossbar"), params, tmp_path)
    assert manifest["ports"]["i__payload"]["width"] == params.input_layout.size
    assert manifest["ports"]["o__payload"]["width"] == params.output_layout.size
    lint(tmp_path / "crossbar.v", "crossbar")
    for comp, name in [(CrossbarController(params), "controller"), (IdealArray(params), "emulator")]:
        (tmp_path / f"{name}.v").write_text(to_verilog(comp, name))
        lint(tmp_path / f"{name}.v", name)


@pytest.mark.parametrize("params", GRID, ids=ident)
def test_crossbar_cocotb(params):
    tests, failures = run("crossbar", params, testcases=tb_xb.CHECKS, tag="pytest")
    assert (tests, failures) == (len(tb_xb.CHECKS), 0)


def polarised(rng, rows, cols, rps, w_max):
    """Independent of sw.forms: random magnitudes, one random sign per fragment, some zero fragments."""
    w = rng.integers(0, w_max, (rows, cols), endpoint=True)
    for k in range(rows // rps):
        for c in range(cols):
            sign = rng.choice([-1, 0, 1])
            w[k * rps:(k + 1) * rps, c] *= sign
    return w


def nonzero_planes(x, rps, act_bits):
    """Reads with zero-skipping, counted directly: per vector, sub-array and plane, any bit set."""
    steps = np.zeros(len(x), dtype=np.int64)
    for n, vec in enumerate(x):
        for k in range(len(vec) // rps):
            for q in range(act_bits):
                steps[n] += any((int(v) >> q) & 1 for v in vec[k * rps:(k + 1) * rps])
    return steps


@pytest.mark.parametrize("params", GRID[:2], ids=ident)
def test_rtl_mvm_vs_numpy(params):
    f = params.fmt
    rng = np.random.default_rng(11)
    w = polarised(rng, f.rows, f.cols, f.rows_per_sub, f.w_max)
    x = rng.integers(0, f.act_max, (24, f.rows), endpoint=True)
    x[::3] &= 0b1001          # few bit-planes
    x[1::4] *= rng.random((len(x[1::4]), f.rows)) < 0.1   # sparse
    x[2] = 0
    x[5] = f.act_max
    y, steps = tb_xb.rtl_mvm(x, w, params, p_valid=0.7, p_ready=0.6)
    np.testing.assert_array_equal(y, (x.astype(object) @ w.astype(object)).astype(np.int64))
    want = nonzero_planes(x, f.rows_per_sub, f.act_bits) if params.zero_skip else \
        np.full(len(x), f.sub_arrays * f.act_bits)
    np.testing.assert_array_equal(steps, want)
    y1, s1 = tb_xb.rtl_mvm(x[0], w, params)
    np.testing.assert_array_equal(y1, y[0])
    assert s1 == steps[0]


def test_rtl_mvm_errors():
    p = GRID[0]
    w = np.zeros((32, 4), int)
    with pytest.raises(ValueError, match=r"^Crossbar inputs must have shape \(32,\) or \(N, 32\), not \(31,\)$"):
        tb_xb.rtl_mvm(np.zeros(31, int), w, p)
    with pytest.raises(ValueError, match=r"^Crossbar inputs must be integers from 0 to 255, not 256 "):
        tb_xb.rtl_mvm(np.full(32, 256), w, p)
    w[0, 0], w[1, 0] = 3, -2
    with pytest.raises(ValueError, match=r"^Crossbar weights must have one sign in every sub-array column"):
        tb_xb.rtl_mvm(np.zeros(32, int), w, p)
    with pytest.raises(TypeError, match=r"^Crossbar params must be CrossbarParams, not None$"):
        tb_xb.rtl_mvm(np.zeros(32, int), w, None)
