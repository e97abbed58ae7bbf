import os
from pathlib import Path

# Generated designs and simulator builds go under build/ of the checkout, whatever the cwd.
os.environ.setdefault("PEFORGE_BUILD_DIR", str(Path(__file__).resolve().parent.parent / "build"))

import pytest


@pytest.fixture
def mutants(monkeypatch):
    """Register the broken PEs of ``tests/mutants.py`` (in this process and in the simulator's, which
    loads ``$PEFORGE_PLUGINS``), so a test can assert that the testbench fails them."""
    root = str(Path(__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", root)
    monkeypatch.setenv("PEFORGE_PLUGINS", "tests.mutants")
    monkeypatch.syspath_prepend(root)
    import tests.mutants  # noqa: F401
