"""Build and run a PE's cocotb testbench through Verilator.

Each configuration gets its own build directory, named by the PE and a hash of its parameters
(``build/sim/<pe>-<digest>[-waves]``): the Verilog and the manifest are written there, Verilator
compiles once, and later runs reuse the objects (an unchanged rebuild takes ~0.1 s). A file lock makes concurrent pytest workers
share one build instead of racing.

The configuration reaches the cocotb test as JSON in the environment (``PEFORGE_CONFIG``); it is never
read back from the DUT.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cocotb_tools.check_results import get_results
from cocotb_tools.runner import get_runner

from ..hw.verilog import LINT_WAIVERS, build_root, sim_sources, verilator_env
from ..hw import registry

from .designs import CONFIG_ENV, PEDesign, load_config, load_design

__all__ = ["build_root", "PEDesign", "Build", "build", "build_design", "run", "run_design", "random_sim",
           "SimulationError", "load_design", "load_config"]



class SimulationError(RuntimeError):
    """A cocotb run failed; the message holds the failing tests and the log location."""


@dataclass(frozen=True)
class Build:
    design: object
    directory: Path
    waves: bool

    @property
    def verilog(self) -> Path:
        return self.directory / f"{self.design.top}.v"

    @property
    def pe(self):
        return self.design.pe

    @property
    def params(self):
        return self.design.params


@contextmanager
def _locked(directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(pe_name: str, params, *, waves: bool = False, runner=None) -> Build:
    """Generate and compile PE ``pe_name`` with ``params`` once; later calls with equal params reuse the binary.

    ``runner`` (a cocotb Verilator runner) is prepared for :meth:`test` either way.
    """
    return build_design(PEDesign(registry.get(pe_name), params), waves=waves, runner=runner)


def build_design(design, *, waves: bool = False, runner=None) -> Build:
    """Write ``design``'s Verilog (unless its build directory holds it already) and compile it with Verilator
    in ``build/sim/<design.key()>[-waves]``; an unchanged rebuild takes ~0.1 s."""
    directory = build_root() / "sim" / f"{design.key()}{'-waves' if waves else ''}"
    result = Build(design, directory, waves)
    with _locked(directory):
        if not design.is_written_in(directory):  # elaboration costs 0.3-1.6 s per run
            design.write(directory)
        os.environ.update(verilator_env())
        runner = runner or get_runner("verilator")
        # --output-split 0: when Verilator splits a large model's C++, the PyPI wheel's parallel
        # build looks for a precompiled header it never made (Vtop__pch.h.fast); one file avoids it.
        # -CFLAGS -O0 (after Verilator's -Os, so it wins): the testbench's Python sets the pace, not the
        # model, while compiling the model is most of a cold run; measured on a 4-layer network, the C++
        # build 33 s -> 17 s (a bigger one 65 s -> 24 s), its cocotb run 4.3 s -> 5.0 s.
        kwargs = dict(sources=sim_sources(result.verilog), hdl_toplevel=design.top, build_dir=directory,
                      build_args=[*LINT_WAIVERS, "-O2", "--output-split", "0", "-CFLAGS", "-O0"], waves=waves,
                      log_file=directory / "build.log")
        try:
            runner.build(**kwargs)
        except (RuntimeError, SystemExit) as exc:
            log = (directory / "build.log").read_text()[-3000:]
            raise SimulationError(f"Verilator build of {design.name} failed ({exc}):\n{log}") from None
    return result


def run(pe_name: str, params, *, testcases: list[str], extra: dict | None = None,
        seed: int = 1, waves: bool = False, tag: str = "run") -> tuple[int, int]:
    """Run ``testcases`` of the PE's cocotb module; return ``(tests, failures)``.

    ``extra`` is merged into the JSON configuration the tests read (paths of batch data, counts).
    Raises :class:`SimulationError` when the simulation did not produce a result file.
    """
    return run_design(PEDesign(registry.get(pe_name), params), testcases=testcases, extra=extra, seed=seed,
                      waves=waves, tag=tag)


def run_design(design, *, testcases: list[str], extra: dict | None = None, seed: int = 1, waves: bool = False,
               tag: str = "run") -> tuple[int, int]:
    """:func:`run` for any design (see :class:`PEDesign`)."""
    runner = get_runner("verilator")
    result = build_design(design, waves=waves, runner=runner)
    config = {**design.config(), "build_dir": str(result.directory), **(extra or {})}
    test_dir = result.directory / tag
    test_dir.mkdir(parents=True, exist_ok=True)
    results_xml = test_dir / "results.xml"
    # cocotb's runner exits the process itself under pytest; keep the decision here instead.
    pytest_test = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        runner.test(test_module=design.tb_module, hdl_toplevel=design.top, testcase=testcases,
                    build_dir=result.directory, test_dir=test_dir, results_xml=str(results_xml),
                    extra_env={CONFIG_ENV: json.dumps(config), "COCOTB_RANDOM_SEED": str(seed)},
                    seed=seed, waves=waves, log_file=test_dir / "sim.log")
    except (RuntimeError, SystemExit):
        pass  # judged by the result file below
    finally:
        if pytest_test is not None:
            os.environ["PYTEST_CURRENT_TEST"] = pytest_test
    try:
        tests, failures = get_results(results_xml)
    except RuntimeError:
        log = (test_dir / "sim.log").read_text()[-3000:] if (test_dir / "sim.log").exists() else ""
        raise SimulationError(f"Simulation of {design.name} ended without results:\n{log}") from None
    if tests != len(testcases):
        raise SimulationError(f"Expected {len(testcases)} cocotb tests to run, {tests} ran; "
                              f"see {test_dir / 'sim.log'}")
    return tests, failures


def random_sim(pe, params, *, vectors: int, seed: int = 1, waves: bool = False, p_valid: float = 0.5,
               p_ready: float = 0.5, progress=None) -> dict:
    """Random vectors under random stalls against golden in Verilator (``peforge sim``, ``make demo``).

    Runs the PE's ``random_vectors`` cocotb test and returns its summary: ``vectors``, ``elements``,
    ``beats``, ``cycles`` (counted in the simulation), ``seconds``, ``error`` (the first line of a mismatch
    or None), plus ``passed`` and the ``log`` path. ``progress`` has a ``step(text)`` method, or is None.
    """
    import tempfile

    if progress:
        progress.step("Verilator build (first build of a configuration: ~10-15 s)")
    built = build(pe.name, params, waves=waves)
    build_root().mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="sim-", suffix=".json", dir=build_root())
    os.close(handle)
    summary_path = Path(name)
    if progress:
        progress.step(f"simulating {vectors} vectors")
    try:
        tests, failures = run(pe.name, params, testcases=["random_vectors"], seed=seed, waves=waves,
                              tag="cli", extra={"vectors": vectors, "summary": str(summary_path),
                                                "p_valid": p_valid, "p_ready": p_ready})
        summary = json.loads(summary_path.read_text()) if summary_path.stat().st_size else {}
    finally:
        summary_path.unlink(missing_ok=True)
    summary["passed"] = failures == 0 and tests == 1 and summary.get("error") is None
    summary["log"] = str(built.directory / "cli" / "sim.log")
    return summary
