"""``make bench``: synthesis benchmarks, side by side in one run on one flow, written to docs/results/.

Each suite is one module (:mod:`~peforge.bench.sp2`, :mod:`~peforge.bench.nm`, :mod:`~peforge.bench.circulant`,
:mod:`~peforge.bench.crossbar`, :mod:`~peforge.bench.network`, :mod:`~peforge.bench.dsp`, and
:mod:`peforge.explore.bench`): it builds a list of designs, synthesises them with the same flow and seeds
(:mod:`peforge.bench.common`, which every suite shares), and returns its results as data (the schema in
:mod:`peforge.report`). :func:`peforge.bench.run.run_bench` writes them to ``docs/results/<suite>.json`` and renders
``<suite>.md`` from that file with the suite's renderer: the table, a check of the targets the PE's issue set
against the measured numbers, and the tool versions. Timing numbers live here, never in tests.
:mod:`peforge.bench.da4ml` is the da4ml baseline the network suite synthesises beside its foldings.
"""
