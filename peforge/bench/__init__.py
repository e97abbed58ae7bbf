"""``make bench``: synthesis benchmarks, one suite a module; the runner, what the suites share and the sp2 and nm
suites are in :mod:`peforge.bench.common`."""
