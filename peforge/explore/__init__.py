"""``peforge explore``: design-space sweeps with accuracy in the loop, on Dask (``docs/explore.md``); the driver
and the command line are in :mod:`peforge.explore.run`."""
