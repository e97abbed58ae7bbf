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

from hw.verilog import LINT_WAIVERS, verilator_env, write_design
from peforge import registry

__all__ = ["build_root", "Build", "build", "run", "SimulationError", "load_config"]

CONFIG_ENV = "PEFORGE_CONFIG"


class SimulationError(RuntimeError):
    """A cocotb run failed; the message holds the failing tests and the log location."""


def build_root() -> Path:
    """Root of generated outputs: ``$PEFORGE_BUILD_DIR`` or ``./build``."""
    return Path(os.environ.get("PEFORGE_BUILD_DIR", "build")).resolve()


@dataclass(frozen=True)
class Build:
    pe: object
    params: object
    directory: Path
    waves: bool

    @property
    def verilog(self) -> Path:
        return self.directory / f"{self.pe.top}.v"


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
    """Generate and compile ``params`` once; later calls with equal params reuse the binary.

    ``runner`` (a cocotb Verilator runner) is prepared for :meth:`test` either way.
    """
    pe = registry.get(pe_name)
    if not isinstance(params, pe.params_cls):
        raise TypeError(f"Params for {pe_name} must be {pe.params_cls.__name__}, not {params!r}")
    directory = build_root() / "sim" / f"{pe.name}-{params.digest()}{'-waves' if waves else ''}"
    result = Build(pe, params, directory, waves)
    with _locked(directory):
        write_design(pe, params, directory)
        os.environ.update(verilator_env())
        runner = runner or get_runner("verilator")
        # --output-split 0: when Verilator splits a large model's C++, the PyPI wheel's parallel
        # build looks for a precompiled header it never made (Vtop__pch.h.fast); one file avoids it.
        kwargs = dict(sources=[result.verilog], hdl_toplevel=pe.top, build_dir=directory,
                      build_args=[*LINT_WAIVERS, "-O2", "--output-split", "0"], waves=waves, log_file=directory / "build.log")
        try:
            runner.build(**kwargs)
        except (RuntimeError, SystemExit) as exc:
            log = (directory / "build.log").read_text()[-3000:]
            raise SimulationError(f"Verilator build of {pe.name} failed ({exc}):\n{log}") from None
    return result


def run(pe_name: str, params, *, testcases: list[str], extra: dict | None = None,
        seed: int = 1, waves: bool = False, tag: str = "run") -> tuple[int, int]:
    """Run ``testcases`` of the PE's cocotb module; return ``(tests, failures)``.

    ``extra`` is merged into the JSON configuration the tests read (paths of batch data, counts).
    Raises :class:`SimulationError` when the simulation did not produce a result file.
    """
    runner = get_runner("verilator")
    result = build(pe_name, params, waves=waves, runner=runner)
    config = {"pe": pe_name, "params": params.to_dict(), **(extra or {})}
    test_dir = result.directory / tag
    test_dir.mkdir(parents=True, exist_ok=True)
    results_xml = test_dir / "results.xml"
    # cocotb's runner exits the process itself under pytest; keep the decision here instead.
    pytest_test = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        runner.test(test_module=result.pe.tb_module, hdl_toplevel=result.pe.top, testcase=testcases,
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
        raise SimulationError(f"Simulation of {pe_name} ended without results:\n{log}") from None
    if tests != len(testcases):
        raise SimulationError(f"Expected {len(testcases)} cocotb tests to run, {tests} ran; "
                              f"see {test_dir / 'sim.log'}")
    return tests, failures


def load_config():
    """Inside a cocotb test: ``(pe, params, config)`` from the environment."""
    config = json.loads(os.environ[CONFIG_ENV])
    pe = registry.get(config["pe"])
    return pe, pe.params_cls.from_dict(config["params"]), config
