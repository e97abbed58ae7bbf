# peforge: `make demo` and `make test` work on a fresh machine with Python >= 3.11 and pip.
# Both create .venv and install the pinned dependencies (pyproject.toml) on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# pytest workers: the reference machine (and CI) has 2 cores
JOBS   ?= 2

.PHONY: all venv demo test bench lint lock clean distclean help

all: test

help:
	@echo "make demo   generate, simulate against golden and synthesise every PE; report in build/demo/"
	@echo "make test   the layer contract (lint-imports), then the full test suite (sw properties, RTL vs"
	@echo "            golden in Verilator, synthesis flow)"
	@echo "make bench  synthesis benchmarks (ECP5-85F, 3 seeds) -> docs/results/<suite>.json, rendered to .md"
	@echo "make lock   re-resolve the dependencies from pyproject.toml into constraints.txt (then test on a clean clone)"
	@echo "make clean  remove build outputs (keeps .venv); make distclean also removes .venv"

# Installs exactly the versions in constraints.txt (the resolved set CI ran, transitive tools included); the
# editable build uses the pinned setuptools of the venv (no build isolation, which would fetch the newest).
# --no-compile: Python compiles the modules it imports on first use instead of all of torch's at install (-37 s).
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "peforge needs Python >= 3.11, not " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -c constraints.txt pip setuptools
	$(PY) -m pip install --disable-pip-version-check -q --no-compile -c constraints.txt --no-build-isolation -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/peforge demo

# pytest exits 5 when it collected no tests; make treats every non-zero exit as a failure.
test: $(STAMP)
	$(PY) -m tests.layers
	$(PY) -m pytest -n $(JOBS) --dist loadgroup -q --durations=15

bench: $(STAMP)
	$(VENV)/bin/peforge bench

# Re-resolve the dependencies from pyproject.toml alone (newest versions allowed) and freeze them into
# constraints.txt; then run `make test` and `make demo` on a clean clone before committing it.
LOCK_VENV := build/lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --disable-pip-version-check -q --upgrade pip setuptools
	$(LOCK_VENV)/bin/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	{ sed -n '/^#/p' constraints.txt; $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable \
	  | grep -v '^peforge' | sed 's/+[a-z0-9.]*$$//'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(LOCK_VENV)

clean:
	rm -rf build sim_build .pytest_cache .hypothesis
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
