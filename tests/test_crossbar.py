"""crossbar: parameters, elaboration and lint, RTL vs golden_mvm in Verilator, the batch API vs numpy."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from peforge.hw.crossbar import CrossbarController, CrossbarParams, CrossbarSystem, IdealArray
from peforge.hw.verilog import lint, to_verilog, write_design
from peforge.hw import registry
from peforge.sw.forms import CrossbarFormat, golden_mvm, map_weights
from peforge.tb import crossbar as tb_xb
from peforge.tb.batch import SimStats
from peforge.tb.runner import run

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
    assert p.vector_cycles([0, 0, 0, 0]) == 9 and p.vector_cycles([8, 8, 8, 8]) == 1 + 4 * 11
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
    """Reads with zero-skipping, counted directly: over vectors, sub-arrays and planes, any bit set."""
    return sum(any((int(v) >> q) & 1 for v in vec[k * rps:(k + 1) * rps])
               for vec in np.atleast_2d(x) for k in range(len(vec) // rps) for q in range(act_bits))


def mixed_inputs(rng, n, rows, act_max):
    x = rng.integers(0, act_max, (n, rows), endpoint=True)
    x[::3] &= 0b1001                                            # few bit-planes
    x[1::4] *= rng.random((len(x[1::4]), rows)) < 0.1            # sparse
    x[2] = 0
    x[5 % n] = act_max
    return x


# the hidden tests' view: their own polarised W and x, y against x @ W in numpy, steps the total count of
# non-zero bit-planes per sub-array over the whole batch (zero_skip on) or sub_arrays * act_bits per vector
@pytest.mark.parametrize("params, as_type", [
    (GRID[0], "int32"),
    (GRID[1], "list"),
    # odd widths: 3 sub-arrays of 4 rows, 5-bit inputs, 6-bit magnitudes in two 3-bit cells
    (CrossbarParams(fmt=CrossbarFormat(rows=12, cols=3, rows_per_sub=4, act_bits=5, w_bits=6, cell_bits=3),
                    array_latency=2), "torch"),
], ids=lambda v: ident(v) if isinstance(v, CrossbarParams) else v)
def test_rtl_mvm_vs_numpy(params, as_type):
    f = params.fmt
    rng = np.random.default_rng(11)
    w = polarised(rng, f.rows, f.cols, f.rows_per_sub, f.w_max)
    x = mixed_inputs(rng, 24, f.rows, f.act_max)
    want_y = x @ w                                              # numpy int64: |y| < 2^24, no overflow
    per_vector = f.sub_arrays * f.act_bits
    want_steps = nonzero_planes(x, f.rows_per_sub, f.act_bits) if params.zero_skip else len(x) * per_vector
    if as_type == "int32":
        w_in, x_in = w.astype(np.int32), x.astype(np.uint16)
    elif as_type == "list":
        w_in, x_in = w.tolist(), x.tolist()
    else:
        torch = pytest.importorskip("torch")
        w_in, x_in = torch.tensor(w, dtype=torch.int16), torch.tensor(x, dtype=torch.int32)
    y, steps = tb_xb.rtl_mvm(x_in, w_in, params, p_valid=0.7, p_ready=0.6)
    assert isinstance(y, np.ndarray) and y.dtype == np.int64 and y.shape == (len(x), f.cols)
    np.testing.assert_array_equal(y, want_y)
    assert isinstance(steps, int) and steps == want_steps
    assert steps.per_vector.shape == (len(x),) and steps.per_vector.sum() == want_steps
    if as_type == "int32":  # one vector: y [cols], steps that vector's count
        y1, s1 = tb_xb.rtl_mvm(x[7], w, params)
        assert y1.shape == (f.cols,) and np.array_equal(y1, want_y[7])
        assert s1 == nonzero_planes(x[7], f.rows_per_sub, f.act_bits)


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
    with pytest.raises(TypeError, match=r"^Crossbar params must be CrossbarParams or a CrossbarFormat, not None$"):
        tb_xb.rtl_mvm(np.zeros(32, int), w, None)
    with pytest.raises(ValueError, match=r"^Crossbar inputs must have shape \(32,\) or \(N, 32\), not \(2, 3, 32\)$"):
        tb_xb.rtl_mvm(np.zeros((2, 3, 32), int), w, p)
    with pytest.raises(ValueError, match=r"^Crossbar inputs must be integers from 0 to 255, not -1 "):
        tb_xb.rtl_mvm(np.full(32, -1), w, p)
    with pytest.raises(TypeError, match=r"^Crossbar inputs must be integers, not 0\.5 "):
        tb_xb.rtl_mvm(np.full(32, 0.5), w, p)
    with pytest.raises(ValueError, match=r"^Crossbar weights must have shape \(32, 4\) \(rows, cols\), not \(4, 32\)$"):
        tb_xb.rtl_mvm(np.zeros(32, int), w.T, p)
    with pytest.raises(ValueError, match=r"^Crossbar weights must be integers from -255 to 255, not 256 "):
        tb_xb.rtl_mvm(np.zeros(32, int), np.full((32, 4), 256), p)
    y, steps = tb_xb.rtl_mvm(np.zeros((0, 32), int), np.zeros((32, 4), int), p.fmt)  # no simulation
    assert y.shape == (0, 4) and steps == 0 and steps.per_vector.shape == (0,)


# -- the controller alone against the Python array models (tb.crossbar.ArrayModel) ------------------------------

NON_IDEAL = {"variation": 0.15, "stuck_at_0": 0.02, "stuck_at_1": 0.02, "read_noise": 0.4}


@pytest.mark.parametrize("params, array_model", [
    (GRID[0], None),
    (GRID[0], NON_IDEAL),
    (GRID[2], {**NON_IDEAL, "adc_step": 1.5}),
], ids=["ideal", "non-ideal", "non-ideal-lossy"])
def test_controller_against_array_model(params, array_model):
    """Random ADC latency 1..6 per read, random codes while not valid, stalls, reset mid-vector."""
    extra = {"latency": [1, 6]}
    if array_model is None:
        checks = tb_xb.CHECKS
    else:
        checks = ["random_stalls", "reset_mid_vector"]
        extra["array_model"] = array_model
    tests, failures = run("crossbar-controller", params, testcases=checks, extra=extra,
                          tag="pytest-" + ("ideal" if array_model is None else "non-ideal"))
    assert (tests, failures) == (len(checks), 0)


def test_testbench_catches_mutant(mutants):
    """Zero-skipping that forgets the last row of a sub-array: wrong y and too few steps, caught."""
    ran, failures = run("crossbar-skips-last-row", GRID[0], testcases=["random_stalls", "extremes"],
                        tag="mutant")
    assert ran == 2 and failures == 2


def test_controller_mutant_fails_against_array_model(mutants):
    """A controller that takes the ADC codes ``array_latency`` cycles after ``start`` instead of waiting for
    ``valid``: right with the RTL emulator (fixed latency), wrong against the Python array model, whose
    latency varies per read."""
    ran, failures = run("crossbar-controller-fixed-latency", GRID[0], testcases=["random_stalls", "extremes"],
                        extra={"latency": [1, 6]}, tag="mutant")
    assert (ran, failures) == (2, 2)


@pytest.mark.parametrize("params", GRID[1:], ids=ident)
def test_batch_stats_are_the_simulated_cycles(params):
    """Without stalls each vector takes ``vector_cycles`` of its reads per sub-array (the next one is accepted
    in the cycle its result leaves), so the run takes their sum plus the cycle of the last transfer."""
    f = params.fmt
    rng = np.random.default_rng(4)
    w = polarised(rng, f.rows, f.cols, f.rows_per_sub, f.w_max)
    x = mixed_inputs(rng, 12, f.rows, f.act_max)
    (y, steps), stats = tb_xb.rtl_mvm(x, w, params, stats=True)
    want_y, want_steps = golden_mvm(x, map_weights(w, f), f, zero_skip=params.zero_skip)   # the ADC may clip
    np.testing.assert_array_equal(y, want_y)
    assert steps == want_steps
    rps = f.rows_per_sub
    reads = [[nonzero_planes(v[k * rps:(k + 1) * rps], rps, f.act_bits) if params.zero_skip else f.act_bits
              for k in range(f.sub_arrays)] for v in x]
    assert stats == SimStats(cycles=sum(params.vector_cycles(r) for r in reads) + 1, beats=len(x))


# -- the command line with an inconsistent format, as a new user meets it ------------------------------------

@pytest.mark.parametrize("pe, settings, message", [
    ("crossbar", ["fmt.rows=30", "fmt.rows_per_sub=8"],
     r"Crossbar rows must be a multiple of rows_per_sub = 8, not 30"),
    ("crossbar-controller", ["fmt.rows_per_sub=5"], r"Crossbar rows must be a multiple of rows_per_sub = 5, not 32"),
    ("crossbar", ["fmt.w_bits=7"], r"Crossbar w_bits must be a multiple of cell_bits = 2, not 7"),
    ("crossbar", ["fmt.cell_bits=3"], r"Crossbar w_bits must be a multiple of cell_bits = 3, not 8"),
    ("crossbar", ["fmt.adc_bits=0"], r"Crossbar adc_bits must be an integer from 1 to 16, not 0"),
    ("crossbar", ["fmt.adc_bits=17"], r"Crossbar adc_bits must be an integer from 1 to 16, not 17"),
    ("crossbar", ["array_latency=0"], r"Array latency \(array_latency\) must be an integer from 1 to 16, not 0"),
])
def test_cli_inconsistent_format_is_one_line_exit_2(tmp_path, pe, settings, message):
    args = [sys.executable, "-m", "peforge", "sim", pe]
    for setting in settings:
        args += ["--set", setting]
    result = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PEFORGE_BUILD_DIR": str(tmp_path / "build")})
    assert result.returncode == 2
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(rf"peforge sim: error: {message}", lines[0]), result.stderr
    assert not (tmp_path / "build").exists()   # nothing was built
