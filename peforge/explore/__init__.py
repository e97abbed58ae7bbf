"""``peforge explore SPACE -o DIR``: design-space sweeps with accuracy in the loop, on Dask (``docs/explore.md``).

Every point of a space (:mod:`~peforge.explore.space`) is evaluated by :func:`~peforge.explore.point.evaluate_point`,
on a Dask worker:

1. the network: trained by the space's builder (:mod:`~peforge.explore.model`; cached on disk by the digest of
   its format choices, so a point that only refolds reuses it) or loaded from a saved directory;
2. its golden accuracy on the test set (exact integers, :meth:`sw.network.Network.golden`);
3. compiled with the point's folding (:class:`hw.network.CompiledNetwork`) and checked against the target's
   block RAM (:func:`synth.check_fits`);
4. synthesised whole (:func:`synth.synthesize_network`, the pin wrapper, one nextpnr seed by default), cached by
   the compiled digest, target, seeds and generator fingerprint in the synthesis cache ``peforge e2e`` and
   ``peforge bench network`` share (:mod:`peforge.synth_cache`);
5. recorded: accuracy, LUT/FF/DSP/BRAM, Fmax, the predicted interval and ``inferences/s = Fmax / interval``,
   wall time, or the error of the first step that failed.

The driver (:func:`~peforge.explore.run.explore`) appends each record to ``DIR/points.jsonl``
(:mod:`~peforge.explore.points`) as it finishes, skips points already recorded there (resume), resubmits points
whose worker died, and writes ``DIR/pareto.md`` and ``DIR/pareto.png`` at the end (:mod:`~peforge.explore.report`).
``--rtl`` then runs the test set through the RTL of the Pareto points (Verilator: measured interval, RTL ==
golden). ``--estimate-only`` and ``--prune`` use the resource estimator (:mod:`~peforge.explore.estimate`).
:mod:`~peforge.explore.cli` is the subcommand, :mod:`~peforge.explore.bench` the ``peforge bench explore`` suite.

Modules import downwards only: cli -> run -> point, report -> points, space -> model; estimate -> points, model.
"""
