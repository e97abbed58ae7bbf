"""``peforge explore``: SPACE validation, golden-only sweeps on Dask (LocalCluster and a real scheduler with two
worker processes, one killed mid-sweep), resume, failed and timed-out points, Pareto fronts, the estimator."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from peforge.explore.points import pareto_front, read_points
from peforge.explore.run import explore
from peforge.explore.space import SpaceError, parse_space
from peforge.sw import network as net

ROOT = Path(__file__).resolve().parent.parent
BUILDER = "tests.test_explore:random_network"
# one pytest-xdist worker runs them all, so they share one local Dask cluster (the `client` fixture)
pytestmark = pytest.mark.xdist_group("explore")


# -- a builder for the tests: a random two-layer integer network, no training ----------------------------------

def random_network(*, layers, seed, sleep: float = 0.0, **_):
    """``layers[0].bits`` is the hidden width; scheme ``nm`` fails (a point error); sleeps ``sleep`` seconds (or
    60 when ``layers[1].bits`` is 16: a point that times out)."""
    if layers[0].get("scheme") == "nm":
        raise ValueError("Test builder scheme must be fixed, not 'nm'")
    time.sleep(60 if layers[1].get("bits") == 16 else sleep)
    rng = np.random.default_rng(seed + 7 * layers[0].get("bits", 8))
    hidden = layers[0].get("bits", 8)

    def layer(n_in, n_out, last):
        w = rng.integers(-128, 128, (n_out, n_in))
        return net.Layer(net.FixedWeights(w, 8), multiplier=rng.integers(1 << 20, 1 << 21, n_out), shift=30,
                         offset=rng.integers(-(1 << 28), 1 << 28, n_out), relu=not last, in_bits=8,
                         in_signed=False, out_bits=16 if last else 8, out_signed=last)

    return net.Network(net.InputSpec(6, 8, False), (layer(6, hidden, False), layer(hidden, 3, True)))


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, x_test=rng.integers(0, 256, (20, 6)), y_test=rng.integers(0, 3, 20))
    return path


def space_doc(data, *, bits=(4, 6), schemes=("fixed",), seed=None, sleep=0.0, fold=("default",)):
    return {"name": "t", "model": {"builder": BUILDER, "options": {"sleep": sleep}}, "data": {"npz": str(data)},
            "seed": seed if seed is not None else int(time.time() * 1000) % 10 ** 8, "fold": list(fold),
            "layers": [{"scheme": list(schemes), "bits": list(bits)}, {"bits": 8}]}


@pytest.fixture(scope="module")
def client():
    """One local cluster of two worker processes for the module's sweeps (a LocalCluster, as the CLI starts)."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


# -- SPACE validation ------------------------------------------------------------------------------------------

BAD = [
    ({"model": "digits-mlp", "layers": [{}, {}], "colour": 1}, r"Space key 'colour' must be one of name, model"),
    ({"layers": [{}, {}]}, r"Space must have a model"),
    ({"model": "resnet", "layers": [{}, {}]}, r"Space model.builder must be 'digits-mlp' or 'module:function', "
                                              r"not 'resnet'"),
    ({"model": "digits-mlp", "layers": [{"bits": "x"}, {}]},
     r"Space layers\[0\].bits must be an integer from 2 to 16 \(or a list of them\), not 'x'"),
    ({"model": "digits-mlp", "layers": [{}, {"scheme": ["fixed", "int4"]}]},
     r"Space layers\[1\].scheme must be one of 'fixed', 'sp2', 'msq', 'nm', 'circulant', 'crossbar' .*not 'int4'"),
    ({"model": "digits-mlp", "layers": [{"nm": "4:2"}, {}]}, r"Space layers\[0\].nm must be 'N:M' with 1 <= N < M"),
    ({"model": "digits-mlp", "layers": [{"block": 6}, {}]}, r"Space layers\[0\].block must be a power of two"),
    ({"model": "digits-mlp", "layers": [{"lanes": []}, {}]},
     r"Space layers\[0\].lanes must be a value or a non-empty list of values, not \[\]"),
    ({"model": "digits-mlp", "layers": [{}]}, r"Space layers must have 2 entries for the digits-mlp"),
    ({"model": "digits-mlp", "layers": [{}, {}], "fold": ["fast"]},
     r"Space fold must be 'default', 'slowest' or a multiple"),
    ({"model": "digits-mlp", "layers": [{}, {}], "target": "xc7"}, r"Space target must be one of 'ecp5-85k'"),
    ({"model": "digits-mlp", "layers": [{}, {}], "data": {"npz": "missing.npz"}},
     r"Space data must be 'digits' for the digits-mlp builder|Space data.npz must be an existing"),
    ({"model": "digits-mlp", "layers": [{}, {}], "variants": []}, r"Space must have exactly one of layers"),
    ({"model": "digits-mlp", "layers": [{"colour": 1}, {}]}, r"Space layers\[0\].colour must be one of scheme"),
]


@pytest.mark.parametrize("doc, message", BAD)
def test_space_errors_are_one_line_naming_the_key(doc, message):
    with pytest.raises(SpaceError, match=message) as info:
        parse_space(doc)
    assert "\n" not in str(info.value)


def test_space_expands_normalises_and_deduplicates():
    space = parse_space({"model": "digits-mlp", "fold": ["default", 4],
                         "layers": [{"scheme": ["fixed", "nm"], "nm": ["2:4", "1:4"], "bits": 8}, {"scheme": "fixed"}]})
    # fixed ignores nm (one point per fold), nm takes both patterns: 3 layer choices x 2 folds
    assert len(space.points) == 6
    first = space.points[0]["layers"]
    assert first == [{"scheme": "fixed", "bits": 8}, {"scheme": "fixed", "bits": 8}]
    digests = [space.digest(p) for p in space.points]
    assert len(set(digests)) == 6 and all(re.fullmatch(r"[0-9a-f]{12}", d) for d in digests)
    variants = parse_space({"model": "digits-mlp", "variants": [{"layers": [{"scheme": "sp2"}, {"scheme": "sp2"}]},
                                                                {"layers": [{"scheme": "circulant"}, {}],
                                                                 "fold": "slowest"}]})
    assert [(p["layers"][0]["scheme"], p["fold"]) for p in variants.points] == [("sp2", "default"),
                                                                               ("circulant", "slowest")]


def test_a_point_may_unroll_a_layer():
    from peforge.explore.point import compile_point
    from peforge.hw.network import cost

    space = parse_space({"model": "digits-mlp", "layers": [{"scheme": "sp2", "impl": ["folded", "unrolled"],
                                                            "reuse": 2}, {"scheme": "fixed"}]})
    assert [p["layers"][0].get("impl") for p in space.points] == ["folded", "unrolled"]
    with pytest.raises(ValueError, match=r"^Space layers\[0\]\.impl must be one of 'folded', 'unrolled'"):
        parse_space({"model": "digits-mlp", "layers": [{"impl": "rolled"}, {}]})
    network = net.random_network(np.random.default_rng(3), depth=2, schemes=["sp2"], max_features=8)
    compiled = compile_point(network, {"target": "ecp5-85k", "fold": "default",
                                       "layers": [{"impl": "unrolled", "reuse": 2}, {}]})
    assert compiled.folding.layers[0].text() == "u/reuse2" and compiled.plans[0].dsps(18) == 0
    assert cost.unrolled_lut(compiled.plans[0]) > 0


# -- sweeps --------------------------------------------------------------------------------------------------------

def test_golden_sweep_records_failures_and_resumes_only_new_points(tmp_path, data, client):
    doc = space_doc(data, bits=(4, 6), schemes=("fixed", "nm"))
    out = tmp_path / "out"
    first = explore(parse_space(doc), out, synth=False, timeout=None, client=client)
    assert first["computed"] == 4
    records = read_points(out / "points.jsonl")
    assert len(records) == 4 and len((out / "points.jsonl").read_text().splitlines()) == 4
    ok = [r for r in records.values() if r["status"] == "ok"]
    failed = [r for r in records.values() if r["status"] == "failed"]
    assert len(ok) == 2 and len(failed) == 2
    assert all(r["stage"] == "network" and "Test builder scheme must be fixed, not 'nm'" in r["error"]
               for r in failed)
    for r in ok:
        x, y = np.load(data)["x_test"], np.load(data)["y_test"]
        network = net.load(r["network_dir"])
        assert r["accuracy"] == float(np.mean(np.argmax(network.golden(x), axis=1) == y))
        assert r["interval"] > 0 and r["folding"] and not r["synthesised"]
    page = (out / "pareto.md").read_text()
    assert "2 points ok, 2 failed" in page and "Test builder scheme must be fixed" in page
    # an extended space: only its new points are computed, the old records stay as they were
    doc["layers"][0]["bits"] = [4, 6, 8]
    second = explore(parse_space(doc), out, synth=False, timeout=None, client=client)
    assert second["computed"] == 2 and second["skipped"] == 4
    again = read_points(out / "points.jsonl")
    assert len(again) == 6 and all(again[d] == r for d, r in records.items())
    # a rerun computes nothing; --retry-failed computes the failed ones again
    assert explore(parse_space(doc), out, synth=False, timeout=None, client=client)["computed"] == 0
    assert explore(parse_space(doc), out, synth=False, timeout=None, retry_failed=True,
                   client=client)["computed"] == 3


def test_a_point_that_runs_too_long_is_recorded_as_timed_out(tmp_path, data, client):
    doc = space_doc(data, bits=(4,))
    doc["layers"][1]["bits"] = [8, 16]            # bits 16: the test builder sleeps a minute
    result = explore(parse_space(doc), tmp_path / "out", synth=False, timeout=6.0, client=client)
    status = sorted((r["point"]["layers"][1]["bits"], r["status"]) for r in result["records"])
    assert status == [(8, "ok"), (16, "timeout")]
    timed_out = next(r for r in result["records"] if r["status"] == "timeout")
    assert "timeout of 6 s" in timed_out["error"] and timed_out["seconds"] < 30


@pytest.mark.slow
def test_estimate_only_ranks_with_labelled_estimates(tmp_path, data, client):
    doc = space_doc(data, bits=(4, 8), fold=("default", "slowest"))
    out = tmp_path / "out"
    result = explore(parse_space(doc), out, estimate_only=True, timeout=None, client=client)
    assert result["computed"] == 4 and not (out / "points.jsonl").exists()
    records = read_points(out / "estimates.jsonl")
    assert all(r["status"] == "ok" and r["est_lut"] > 0 and r["est_dsp"] >= 0 and not r["synthesised"]
               and "lut" not in r for r in records.values())
    # more multipliers (the default folding) estimate more LUTs than the slowest folding of the same network
    by = {(r["point"]["layers"][0]["bits"], r["point"]["fold"]): r for r in records.values()}
    assert by[(8, "default")]["est_lut"] > by[(8, "slowest")]["est_lut"]
    page = (out / "estimate.md").read_text()
    assert "**Resources here are estimates**" in page and "LUT (est.)" in page and "held-out" in page


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_workers(address: str, count: int, deadline: float) -> None:
    from distributed import Client

    with Client(address, timeout="20s") as c:
        c.wait_for_workers(count, timeout=deadline)


def test_real_scheduler_and_two_workers_survive_a_killed_worker(tmp_path, data):
    """``dask scheduler`` + two ``dask worker`` processes on 127.0.0.1; one is killed while the sweep runs through
    ``peforge explore --scheduler``, and every point is still recorded."""
    bin_dir = Path(sys.executable).parent
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PEFORGE_BUILD_DIR": str(tmp_path / "build")}
    procs = [subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    try:
        time.sleep(1.0)
        for _ in range(2):
            procs.append(subprocess.Popen([str(bin_dir / "dask"), "worker", address, "--nthreads", "1",
                                           "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"], env=env, cwd=ROOT,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        _wait_for_workers(address, 2, 60)
        space = tmp_path / "space.json"
        space.write_text(json.dumps(space_doc(data, bits=(3, 4, 5, 6, 7, 8), sleep=1.0)))
        out = tmp_path / "out"
        sweep = subprocess.Popen([sys.executable, "-m", "peforge", "explore", str(space), "-o", str(out),
                                  "--golden-only", "--scheduler", address, "--timeout", "0"], env=env, cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        points = out / "points.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(read_points(points)) < 1:
            time.sleep(0.1)
        assert len(read_points(points)) < 6, "the sweep finished before a worker could be killed"
        victim = procs[1]
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        stdout, stderr = sweep.communicate(timeout=120)
        assert sweep.returncode == 0, stderr
        records = read_points(points)
        assert len(records) == 6 and all(r["status"] == "ok" for r in records.values()), records
        assert "6 points (6 computed" in stdout
        survivor = procs[2].pid
        assert any(r["pid"] == survivor for r in records.values())
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


# -- fronts, estimator ---------------------------------------------------------------------------------------------

def test_pareto_front_keeps_only_the_undominated():
    r = [{"accuracy": 0.9, "lut": 100}, {"accuracy": 0.95, "lut": 200}, {"accuracy": 0.9, "lut": 150},
         {"accuracy": 0.97, "lut": 1000}, {"accuracy": 0.8, "lut": 120}, {"accuracy": 0.99}]
    assert [x["lut"] for x in pareto_front(r, "lut")] == [100, 200, 1000]
    rate = [{"accuracy": 0.9, "rate": 10}, {"accuracy": 0.95, "rate": 5}, {"accuracy": 0.8, "rate": 5}]
    assert [x["rate"] for x in pareto_front(rate, "rate", larger_is_better=True)] == [10, 5]


def test_prune_keeps_the_points_near_an_estimated_front():
    from peforge.explore.estimate import near_front

    r = [{"accuracy": 0.95, "est_lut": 1000, "est_inferences_per_s": 100},
         {"accuracy": 0.95, "est_lut": 1100, "est_inferences_per_s": 90},    # within 15 % of the first: kept
         {"accuracy": 0.95, "est_lut": 3000, "est_inferences_per_s": 50},    # beaten on both by far: pruned
         {"accuracy": 0.90, "est_lut": 3000, "est_inferences_per_s": 1000},  # the fastest: kept
         {"accuracy": 0.97, "est_lut": 5000, "est_inferences_per_s": 10}]    # the most accurate: kept
    kept = near_front(r, 0.15)
    assert [x["est_lut"] for x in kept] == [1000, 1100, 3000, 5000] and r[2] not in kept
    assert len(near_front(r, 10.0)) == 5


def test_example_spaces_round_trip_through_yaml(tmp_path):
    import yaml

    from peforge.explore.space import EXAMPLES, load_space

    for name in EXAMPLES:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(EXAMPLES[name], sort_keys=False))
        assert load_space(path).points == load_space(f"example:{name}").points
    assert len(load_space("example:bench16").points) == 16 and len(load_space("example:digits-all").points) == 16


def test_estimator_fits_and_its_held_out_error_per_pe_meets_the_target():
    from peforge.explore.estimate import TARGET_ERROR, _loo, _pe_rows, fit

    a = np.array([[1, 2, 0], [1, 4, 1], [1, 8, 3], [1, 16, 2]], dtype=float)
    coef = np.array([10.0, 3.0, 5.0])
    assert np.allclose(fit(a.tolist(), (a @ coef).tolist()), coef)
    rows = _pe_rows()
    assert {"fixed-mac", "sp2-mac", "nm-sparse", "circulant-fft", "crossbar"} <= set(rows)
    for name, pe_rows in rows.items():
        result = _loo(pe_rows)
        assert result["points"] >= 5 and result["mape"] <= TARGET_ERROR, (name, result["mape"])


@pytest.mark.slow
def test_rtl_of_the_front_measures_interval_and_equality(tmp_path, data, client):
    """``--rtl``: the front's accelerators run the test set in Verilator (a build each: slow)."""
    doc = space_doc(data, bits=(4,), fold=("default",))
    result = explore(parse_space(doc), tmp_path / "out", synth=False, rtl=True, timeout=None, client=client)
    (r,) = result["records"]
    assert r["rtl_equal"] == r["test_samples"] == 20 and r["interval_measured"] == r["interval"]


@pytest.mark.slow
def test_estimator_on_whole_networks():
    """The network-level model on the network bench's points (trains the digits networks once, ~30 s)."""
    from peforge.explore.estimate import held_out

    nets = held_out()["network"]["all"]
    assert nets["points"] >= 10 and nets["mape"] <= 0.15


# -- command line --------------------------------------------------------------------------------------------------

def peforge(*args, cwd=ROOT):
    result = subprocess.run([sys.executable, "-m", "peforge", *args], capture_output=True, text=True, cwd=cwd)
    return result.returncode, result.stdout, result.stderr


def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    from peforge.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("model: digits-mlp\nlayers:\n  - {bits: 99}\n  - {}\n")
    out = tmp_path / "out"
    cases = [
        ((str(bad), "-o", str(out)), r"peforge explore: error: Space layers\[0\].bits must be an integer from 2 "
                                     r"to 16 \(or a list of them\), not 99"),
        ((str(tmp_path / "none.yaml"), "-o", str(out)), r"Space file must exist, not"),
        (("example:digits-all",), r"Output \(-o DIR\) must be given"),
        (("example:digits-all", "-o", str(out), "--workers", "0"), r"--workers must be a positive integer, not 0"),
        (("example:nothing", "-o", str(out)), r"Space example must be one of digits-all"),
    ]
    for args, message in cases:
        assert main(["explore", *args]) == 2, args
        stderr = capsys.readouterr().err
        assert re.search(message, stderr) and len(stderr.strip().splitlines()) == 1, stderr
    assert not out.exists()
    code, stdout, stderr = peforge("explore", str(bad), "-o", str(out))     # the installed command line too
    assert code == 2 and "Space layers[0].bits must be" in stderr and not out.exists()
    assert main(["explore", "example:digits-all", "--list"]) == 0
    assert capsys.readouterr().out.strip().endswith("16 points")


def test_bench_page_renders_the_speedup_target_from_its_results(tmp_path):
    from peforge.bench.common import suite_document
    from peforge.explore.bench import _design, figures, render
    from peforge.report import dump_results, load_results

    records = [{"point": {"layers": [{"scheme": s}, {"scheme": s}], "fold": "default", "target": "ecp5-85k"},
                "digest": f"d{n}", "compiled_digest": f"c{n}", "status": "ok", "synthesised": True, "wrapped": True,
                "lut": 1000 * (n + 1), "ff": 900, "dsp": 4, "bram": 1, "fmax_mhz": 90.0, "accuracy": 0.9 + n / 100,
                "interval": 64, "inferences_per_s": 90e6 / 64 / (n + 1), "schemes": [s, s], "folding": []}
               for n, s in enumerate(("fixed", "sp2"))]
    study = {"scaling": {"space": "bench16", "runs": {"1": {"seconds": 200.0, "points": 16, "failed": 0,
                                                              "synth_seconds": 190.0},
                                                        "2": {"seconds": 105.0, "points": 16, "failed": 0,
                                                              "synth_seconds": 195.0}}, "speedup": 200 / 105},
             "sweeps": {"digits-all": {"seconds": 50.0, "points": 2, "computed": 2}},
             "estimator": {"pe": {"sp2-mac": {"points": 8, "mape": 0.02}}, "network": {}}}
    designs = [_design(r, "scaling") for r in records] + [_design(r, "digits-all") for r in records]
    path = tmp_path / "explore.json"
    path.write_text(dump_results(suite_document("explore", [1], designs, study)))
    page = render(load_results(path))
    assert "| 16-point ECP5 sweep (`bench16`): 2 local workers >= 1.8x faster than 1 | met | 200 s / 105 s = 1.90x |" \
        in page
    assert "| estimator: held-out mean absolute LUT error of sp2-mac <= 10 % | met | 2.0% over 8 points |" in page
    study["scaling"]["runs"]["2"]["seconds"] = 150.0
    study["scaling"]["speedup"] = 200 / 150
    path.write_text(dump_results(suite_document("explore", [1], designs, study)))
    assert "| **missed** | 200 s / 150 s = 1.33x |" in render(load_results(path))
    assert [p.name for p in figures(load_results(path), tmp_path)] == ["explore.png"]


# -- what a newcomer sees (issue 28): every layer named, every target plotted, readable log axes --------------------

def _saved_network(path):
    """A saved three-layer network whose layers have different schemes."""
    for seed in range(100):
        network = net.random_network(np.random.default_rng(seed), depth=3, schemes=["fixed", "sp2", "nm"])
        schemes = [layer.scheme for layer in network.layers]
        if len(set(schemes)) > 1:
            network.save(path)
            return schemes
    raise AssertionError("no mixed network in 100 seeds")


def test_a_saved_network_space_names_each_layers_scheme(tmp_path, data, capsys):
    from peforge.cli import main
    from peforge.explore.report import write_report

    schemes = _saved_network(tmp_path / "net")
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps({"name": "saved", "model": {"network": "net"}, "data": {"npz": str(data)},
                                      "fold": ["default", "slowest"],
                                      "layers": [{"pes": [1, 2]}, {}, {}]}))
    assert main(["explore", str(space_file), "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    want = [rf"[0-9a-f]{{12}} ecp5-85k {schemes[0]}\(pes={pes}\) / {schemes[1]} / {schemes[2]}; fold {fold}"
            for pes in (1, 2) for fold in ("default", "slowest")]
    assert len(lines) == 5 and lines[-1] == "4 points"
    assert all(any(re.fullmatch(w, line) for line in lines[:4]) for w in want), lines
    # the report names them too, for failed points (no compiled schemes recorded) as for the others
    from peforge.explore.space import load_space

    space = load_space(space_file)
    point = space.points[0]
    records = [{"point": point, "digest": space.digest(point), "status": "failed", "stage": "golden",
                "error": "ValueError: x"}]
    write_report(tmp_path, space, records)
    page = (tmp_path / "pareto.md").read_text()
    assert f"{schemes[0]}(pes=1) / {schemes[1]} / {schemes[2]}; fold default" in page and "layer /" not in page


def _records(targets=("ecp5-85k", "ice40-up5k")):
    rng = np.random.default_rng(0)
    records = []
    for target in targets:
        for n in range(6):
            lut = None if target.startswith("ice40") else float(rng.integers(2500, 9000))
            records.append({"point": {"target": target, "layers": [{}, {}], "fold": "default"},
                            "schemes": ["fixed", "fixed"] if n % 2 else ["sp2", "sp2"],
                            "accuracy": float(rng.uniform(0.9, 0.98)), "est_lut": lut,
                            "est_inferences_per_s": None if lut is None else float(rng.uniform(2e5, 9e5)),
                            "interval": int(rng.integers(30, 400))})
    return records


def test_the_estimate_plot_shows_the_ice40_points(tmp_path):
    """The estimator has no LUT or Fmax model for iCE40: its points are still drawn, against the interval."""
    from peforge.explore.report import plot_fronts as _plot

    drawn = _plot(_records(), tmp_path / "estimate.png", "est_", "t")
    assert drawn == {"ecp5-85k": {"lut": 6, "inferences_per_s": 6, "interval": 6},
                     "ice40-up5k": {"lut": 0, "inferences_per_s": 0, "interval": 6}}
    assert (tmp_path / "estimate.png").stat().st_size > 10_000
    assert _plot(_records(("ice40-up5k",)), tmp_path / "none.png", "est_", "t") == {}  # no LUTs at all: no plot


@pytest.mark.parametrize("lo, hi", [(2500, 9000), (2e5, 9e5), (31, 390), (900, 1100), (40, 3e6)])
def test_log_axis_labels_do_not_overlap(lo, hi):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from peforge.report import log_axis

    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    values = list(np.geomspace(lo, hi, 7))
    ax.scatter(values, range(7))
    log_axis(ax, values)
    fig.canvas.draw()
    labels = [t for t in ax.get_xticklabels(minor=False) + ax.get_xticklabels(minor=True)
              if t.get_visible() and t.get_text() and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]]
    boxes = sorted((t.get_window_extent() for t in labels), key=lambda b: b.x0)
    plt.close(fig)
    assert len(boxes) >= 2
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), [t.get_text() for t in labels]
