"""The layer contract: sw < hw < (tb | synth) < the rest of peforge, as pyproject.toml states it and
docs/architecture.md shows it, checked on the package as it installs (``tests/layers.py``); and no import circle
between files. ``make test`` also runs the contracts before pytest; this test keeps ``pytest`` alone honest."""

import shutil
import tomllib

from tests.layers import MAPPED, ROOT, lint_imports


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_import_linter_keeps_the_layers(tmp_path):
    result = lint_imports(dest=tmp_path / "lint")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"{len(_contracts())} kept, 0 broken" in result.stdout


def test_contract_covers_every_package_and_the_docs_say_the_same():
    layers, forbidden = _contracts()
    assert layers["type"] == "layers" and layers["containers"] == ["peforge"]
    named = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    assert named == set(MAPPED), f"the contract names {sorted(named)}, the mapped folders are {sorted(MAPPED)}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["setuptools"]["package-dir"] == {f"peforge.{n}": n for n in MAPPED}
    # every other module of peforge is above the four: the forbidden contract lists them all
    tops = {p.stem if p.is_file() else p.name for p in (ROOT / "peforge").iterdir()
            if ((p.suffix == ".py" and p.stem not in ("__init__", "__main__")) or (p / "__init__.py").is_file())
            and p.name not in MAPPED}   # peforge/sw ... link to the four folders
    assert forbidden["source_modules"] == [f"peforge.{n}" for n in MAPPED]
    assert set(forbidden["forbidden_modules"]) == {f"peforge.{t}" for t in tops}
    doc = (ROOT / "docs" / "architecture.md").read_text()
    assert f"layers: peforge > {' > '.join(layers['layers'])}" in doc, "docs/architecture.md must state the layers"


def test_a_violation_is_caught(tmp_path):
    """The contract bites: a copy of sw that imports tb breaks it."""
    for name in (*MAPPED, "peforge"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "sw" / "intops.py", "a") as handle:
        handle.write("\n\ndef _upward():\n    from peforge.tb import runner  # noqa: F401\n")
    result = lint_imports(tmp_path, tmp_path / "build" / "lint")
    assert result.returncode != 0 and "peforge.sw.intops -> peforge.tb.runner" in result.stdout, result.stdout[-2000:]
