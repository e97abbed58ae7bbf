"""Run import-linter on the package as it installs: ``peforge`` with ``peforge.sw``, ``peforge.hw``, ``peforge.tb``
and ``peforge.synth`` inside it.

In the repository those four folders sit beside ``peforge/`` and setuptools maps them into it (``package-dir``);
import-linter (grimp) reads a package from the one directory it finds it in, so it would not see them. This
stages a tree of symbolic links, ``build/lint/peforge/`` (``peforge/``'s entries plus the four folders), and runs
``lint-imports`` with that tree first on the path. ``make test`` runs ``python -m tests.layers``;
``tests/test_layers.py`` runs it on copies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The folders that install inside peforge (pyproject.toml, [tool.setuptools.package-dir]).
MAPPED = ("sw", "hw", "tb", "synth")


def stage(root: Path, dest: Path) -> Path:
    """``dest/peforge``: links to every entry of ``root/peforge`` and to ``root/<folder>`` for each mapped folder."""
    package = dest / "peforge"
    shutil.rmtree(dest, ignore_errors=True)
    package.mkdir(parents=True)
    for entry in (root / "peforge").iterdir():
        if entry.name != "__pycache__" and entry.name not in MAPPED:   # peforge/<folder> links to ../<folder>
            (package / entry.name).symlink_to(entry.resolve())
    for name in MAPPED:
        (package / name).symlink_to((root / name).resolve(), target_is_directory=True)
    return dest


def lint_imports(root: Path = ROOT, dest: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """``lint-imports --no-cache`` on the staged tree of ``root`` (the contracts of ``root/pyproject.toml``)."""
    dest = stage(root, dest or root / "build" / "lint")
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        raise FileNotFoundError(f"lint-imports must be installed next to {sys.executable}, not missing")
    # import-linter puts its working directory first on the path: run it in the staged tree, so the repository's
    # own peforge/ (without the four folders) is not the one it finds
    env = {**(os.environ if env is None else env), "PYTHONPATH": str(dest)}
    return subprocess.run([exe, "--no-cache", str(root / "pyproject.toml")], cwd=dest,
                          capture_output=True, text=True, env=env)


if __name__ == "__main__":
    result = lint_imports()
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.exit(result.returncode)
