"""The layer contract: sw < hw < (tb | synth) < peforge, as pyproject.toml states it and docs/architecture.md
shows it. ``make test`` also runs ``lint-imports`` before pytest; this test keeps ``pytest`` alone honest."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = config["contracts"]
    return contract


def test_import_linter_keeps_the_layers():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter (lint-imports) is not installed in this environment"
    result = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_contract_covers_every_package_and_the_docs_say_the_same():
    contract = _contract()
    assert contract["type"] == "layers"
    layers = contract["layers"]
    named = {name.strip() for layer in layers for name in layer.split("|")}
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name != "tests"}
    assert named == packages, f"the contract names {sorted(named)}, the packages are {sorted(packages)}"
    doc = (ROOT / "docs" / "architecture.md").read_text()
    assert f"layers: {' > '.join(layers)}" in doc, "docs/architecture.md must state the contract's layers"


def test_a_violation_is_caught(tmp_path):
    """The contract bites: a copy of sw that imports tb breaks it."""
    for name in ("sw", "hw", "tb", "synth", "peforge"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "sw" / "intops.py", "a") as handle:
        handle.write("\n\ndef _upward():\n    from tb import runner  # noqa: F401\n")
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    result = subprocess.run([exe, "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent)})
    assert result.returncode != 0 and "sw.intops -> tb.runner" in result.stdout, result.stdout[-2000:]
