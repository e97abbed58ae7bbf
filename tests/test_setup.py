"""The environment `make` installs is exactly constraints.txt: every installed distribution pinned there, at
that version, so a fresh install in a year gets what this suite ran with."""

import importlib.metadata
import re
import sysconfig
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

CONSTRAINTS = Path(__file__).resolve().parent.parent / "constraints.txt"


def _pins() -> dict[str, Version]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"constraints.txt: {line!r} must pin one version"
        pins[canonicalize_name(req.name)] = Version(spec[0].version)
    return pins


def test_constraints_pin_every_installed_distribution():
    pins = _pins()
    # the environment's own site-packages (setuptools puts its vendored copies on sys.path once imported)
    paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version)
                 for d in importlib.metadata.distributions(path=paths)}
    installed.pop("peforge", None)
    unpinned = sorted(set(installed) - set(pins))
    assert not unpinned, f"installed but not in constraints.txt (run `make lock`): {unpinned}"
    # a local label (torch's +cpu) is not part of the pin
    wrong = {name: (str(installed[name]), str(pins[name])) for name in installed
             if Version(re.sub(r"\+.*$", "", str(installed[name]))) != pins[name]}
    assert not wrong, f"installed versions differ from constraints.txt (installed, pinned): {wrong}"


def test_direct_requirements_are_pinned_alike():
    """pyproject's exact pins agree with constraints.txt (one source would drift from the other otherwise)."""
    import tomllib

    project = tomllib.loads((CONSTRAINTS.parent / "pyproject.toml").read_text())["project"]
    pins = _pins()
    for line in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        req = Requirement(line)
        for spec in req.specifier:
            if spec.operator == "==":
                assert pins[canonicalize_name(req.name)] == Version(spec.version), line


def test_the_wheel_installs_one_top_level_package(tmp_path):
    """``pip install`` of the built wheel adds exactly one import name, ``peforge``, with the four folders in it."""
    import subprocess
    import sys
    import zipfile

    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                             "-w", str(tmp_path), str(CONSTRAINTS.parent)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("peforge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"peforge"}
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["peforge"]
    assert {f"peforge/{folder}/__init__.py" for folder in ("sw", "hw", "tb", "synth")} <= set(names)
    # every module and data file of the source tree, subpackages too (a package missing from pyproject's list
    # is silently left out of the wheel)
    root = CONSTRAINTS.parent
    tree = {("peforge/" + folder + "/" if folder != "peforge" else "peforge/") + f.relative_to(root / folder).as_posix()
            for folder in ("sw", "hw", "tb", "synth", "peforge") for f in (root / folder).rglob("*")
            if f.suffix in (".py", ".json") and "__pycache__" not in f.parts}
    assert tree - set(names) == set()
