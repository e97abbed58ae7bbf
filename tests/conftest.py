import os
from pathlib import Path

# Generated designs and simulator builds go under build/ of the checkout, whatever the cwd.
os.environ.setdefault("PEFORGE_BUILD_DIR", str(Path(__file__).resolve().parent.parent / "build"))

import pytest


def pytest_sessionstart(session):
    """Compile the YoWASP tools once before any test runs: pytest-xdist workers that all reached yosys at once
    would each compile it (~40 s of two cores each) on a machine whose cache is cold."""
    from peforge.synth.flow import warm_tools

    warm_tools()


@pytest.fixture
def mutants(monkeypatch):
    """Register the broken PEs of ``tests/mutants.py`` (in this process and in the simulator's, which
    loads ``$PEFORGE_PLUGINS``), so a test can assert that the testbench fails them."""
    root = str(Path(__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", root)
    monkeypatch.setenv("PEFORGE_PLUGINS", "tests.mutants")
    monkeypatch.syspath_prepend(root)
    import tests.mutants  # noqa: F401


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's training and float references (the suite's workers share two cores; torch's
    own thread pool only contends there). Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
