# peforge: `make demo` and `make test` work on a fresh machine with Python >= 3.11 and pip.
# Both create .venv and install the pinned dependencies (pyproject.toml) on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# pytest workers: the reference machine (and CI) has 2 cores
JOBS   ?= 2

.PHONY: all venv demo test bench lint clean distclean help

all: test

help:
	@echo "make demo   generate, simulate against golden and synthesise every PE; report in build/demo/"
	@echo "make test   the layer contract (lint-imports), then the full test suite (sw properties, RTL vs"
	@echo "            golden in Verilator, synthesis flow)"
	@echo "make bench  synthesis benchmarks (ECP5-85F, 3 seeds) -> docs/results/<suite>.json, rendered to .md"
	@echo "make clean  remove build outputs (keeps .venv); make distclean also removes .venv"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "peforge needs Python >= 3.11, not " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/peforge demo

# pytest exits 5 when it collected no tests; make treats every non-zero exit as a failure.
test: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -n $(JOBS) --dist loadgroup -q --durations=15

bench: $(STAMP)
	$(VENV)/bin/peforge bench

clean:
	rm -rf build sim_build .pytest_cache .hypothesis
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
