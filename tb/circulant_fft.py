"""cocotb testbench and batch API of ``circulant-fft`` (both architectures): its case (:class:`CASE`), run
by :mod:`tb.bench`'s tests; every expected value comes from :func:`sw.circulant.golden_matvec`.

A *vector* here is the work of one output block: ``x [q, k]`` (the input blocks, ``act_bits`` integers)
and ``w [q, k/2 + 1, 2]`` (the stored spectra ``W_ij`` of one block row ``i``), sent as ``q`` beats with
``last`` on the final one; the PE answers with one beat ``y_i [k]`` (k lanes). The imaginary weight fields of
bins 0 and ``k/2`` are ignored by the PE (the golden model requires them to be 0): the tests fill them with
random junk in the payload to check that.

The batch API :func:`rtl_matvec` runs whole layers (every output block of every batch row) through one
simulation (:func:`tb.batch.run_batch`).
"""

from __future__ import annotations

import numpy as np

from ..sw.circulant import check_format, golden_matvec
from ..sw.intops import as_int_array

from .batch import NO_SIMULATION, run_batch, with_stats
from .bench import CHECKS, Case  # noqa: F401  (CHECKS: the tests pytest runs)
from .stream import pack
from .bench import (batch, extremes, random_stalls, random_vectors, reset_mid_vector,  # noqa: F401  (cocotb tests)
                    throughput_and_latency)

__all__ = ["rtl_matvec", "CASE", "CHECKS"]


class CASE(Case):
    """``circulant-fft`` vectors ``(x [q, k], w [q, k/2 + 1, 2])``; sizes are block counts ``q``."""

    count = 24

    def __init__(self, bench):
        super().__init__(bench)
        self.fmt = self.params.fmt
        self.junk = True    # fill the ignored imaginary fields of bins 0 and k/2 with random values

    # -- vectors ---------------------------------------------------------------------------------
    def random_x(self, q: int) -> np.ndarray:
        lo, hi = self.fmt.act_range
        return self.rng.integers(lo, hi, (q, self.fmt.block), endpoint=True)

    def random_w(self, q: int) -> np.ndarray:
        lo, hi = self.fmt.w_range
        w = self.rng.integers(lo, hi, (q, self.fmt.bins, 2), endpoint=True)
        w[:, [0, -1], 1] = 0
        return w

    def random(self, q: int) -> tuple[np.ndarray, np.ndarray]:
        return self.random_x(q), self.random_w(q)

    @property
    def max_size(self) -> int:
        return self.fmt.max_q

    def length(self, vector) -> int:
        return vector[0].size

    def describe(self, vector) -> str:
        x, w = vector
        return f"q={len(x)}; x[0] = {x[0].tolist()}, w[0] = {w[0].tolist()}"

    def extremes(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Zeros, impulses, DC, the alternating (Nyquist) block, full-scale inputs and spectra at max_q, and
        for every bin the input and weight that drive that bin's product and accumulator to its extreme."""
        fmt, k = self.fmt, self.fmt.block
        a_lo, a_hi = fmt.act_range
        w_lo, w_hi = fmt.w_range
        q_max = fmt.max_q
        n = np.arange(k)

        def spectrum(value, q=1, bins=None):
            w = np.zeros((q, fmt.bins, 2), np.int64)
            w[:, slice(None) if bins is None else bins, :] = value
            w[:, [0, -1], 1] = 0
            return w

        out = [(np.zeros((1, k), np.int64), self.random_w(1))]
        for a in (a_lo, a_hi):
            for pos in range(k):                                    # impulses
                x = np.zeros((1, k), np.int64)
                x[0, pos] = a
                out.append((x, self.random_w(1)))
            out.append((np.full((1, k), a), self.random_w(1)))       # DC
            for w in (w_lo, w_hi):                                    # full scale, max_q blocks
                out.append((np.full((q_max, k), a), spectrum(w, q_max)))
        alternating = np.where(n % 2, a_lo, a_hi)[None, :]
        out.append((alternating, self.random_w(1)))
        for w in (w_lo, w_hi):
            out.append((np.repeat(alternating, q_max, axis=0), spectrum(w, q_max)))
        for b in range(fmt.bins):                                     # each bin at its extreme
            for phase in (np.cos, np.sin):
                x = np.where(phase(2 * np.pi * b * n / k) >= 0, a_hi, a_lo)[None, :]
                for w in (w_lo, w_hi):
                    out.append((np.repeat(x, q_max, axis=0), spectrum(w, q_max, bins=b)))
                    out.append((np.repeat(x, q_max, axis=0), spectrum(w, q_max)))
        lo_x = np.full((q_max, k), a_lo)                              # random full-scale signs
        out.append((np.where(self.rng.random((q_max, k)) < 0.5, a_lo, a_hi),
                    np.where(self.rng.random((q_max, fmt.bins, 2)) < 0.5, w_lo, w_hi) * spectrum(1, q_max)))
        out.append((lo_x, np.where(self.rng.random((q_max, fmt.bins, 2)) < 0.5, w_lo, w_hi) * spectrum(1, q_max)))
        return out

    # -- beats, golden, timing ------------------------------------------------------------------
    def payloads(self, vectors) -> list[int]:
        """Pack the beats of ``vectors``; with :attr:`junk` the ignored imaginary fields of bins 0 and k/2
        carry random values."""
        x = np.concatenate([v[0] for v in vectors])
        w = np.concatenate([v[1] for v in vectors]).copy()
        if self.junk:
            w[:, [0, -1], 1] = self.rng.integers(*self.fmt.w_range, (len(w), 2), endpoint=True)
        last = np.concatenate([np.arange(len(v[0])) == len(v[0]) - 1 for v in vectors]).astype(np.int64)
        return pack(self.bench.stream.sources["i"].layout, {"x": x, "w.re": w[..., 0], "w.im": w[..., 1],
                                                            "last": last})

    def beats(self, vector) -> dict[str, np.ndarray]:
        return {"last": np.arange(len(vector[0])) == len(vector[0]) - 1}

    def expect(self, vectors) -> dict[str, np.ndarray]:
        return {"y": np.array([golden_matvec(x, w[None], self.fmt)[0] for x, w in vectors], dtype=np.int64)}

    def timing_rounds(self) -> list:
        """Single blocks back to back, then multi-block vectors back to back: the accumulator hands over
        and clears without a bubble."""
        return [[self.random(1) for _ in range(20)], [self.random(q) for q in [2, 1, 3, 1, 1, 4]]]

    def in_flight(self) -> list[int]:
        return self.payloads([self.random(max(2, min(self.fmt.max_q, 6)))])[:-1]

    def from_batch(self, arrays) -> list:
        """Every row of ``x`` against every block row of ``spectra``, sent as given."""
        self.junk = False
        x, spectra = arrays["x"], arrays["spectra"]
        return [(x[b], spectra[i]) for b in range(len(x)) for i in range(len(spectra))]


# -- batch API ----------------------------------------------------------------------------------------

def rtl_matvec(x_blocks, spectra, params, *, stats: bool = False, **kwargs):
    """:func:`sw.circulant.golden_matvec` computed by the RTL, every output block in one simulation.

    Parameters
    ----------
    x_blocks : int array [..., q, k]
        Activations as ``q`` blocks of ``k`` (``act_bits`` integers); leading axes are a batch.
    spectra : int array [p, q, k/2 + 1, 2]
        Stored half spectra (:func:`sw.circulant.export_spectra`): signed ``w_bits`` components, imaginary
        part 0 in bins 0 and ``k/2``; ``1 <= q <= fmt.max_q``.
    params : hw.circulant_fft.CirculantParams
    stats : bool, optional
        Also return the :class:`tb.batch.SimStats` the simulation counted.
    **kwargs
        ``p_valid``, ``p_ready``, ``seed``, ``waves`` as :func:`tb.dot.rtl_dot`.

    Returns
    -------
    numpy.ndarray of int64, shape [..., p, k]; or ``(y, stats)`` with ``stats=True``

    Raises
    ------
    TypeError, ValueError
        ``"Acts must be integers from -128 to 127, not 300 (at index (0, 5))"``,
        ``"Circulant spectra must be an array [p, q, 9, 2] with p, q >= 1 (k = 16), not shape (2, 9, 2)"``,
        ``"Circulant spectra must have imaginary part 0 in bins 0 and k/2, not 3 (at index (0, 0, 0, 1))"``,
        ``"Acts must have q = 2 blocks of k = 16 (shape [..., 2, 16]) to match the spectra, not shape (3, 16)"``,
        ``"Circulant q must be an integer from 1 to 64, not 65"``.
    """
    from ..hw.circulant_fft import CirculantParams

    if not isinstance(params, CirculantParams):
        raise TypeError(f"Params must be CirculantParams, not {params!r}")
    fmt = check_format(params.fmt)
    k = fmt.block
    w = as_int_array("Circulant spectra", spectra, *fmt.w_range)
    if w.ndim != 4 or w.shape[2:] != (fmt.bins, 2) or w.shape[0] < 1 or w.shape[1] < 1:
        raise ValueError(f"Circulant spectra must be an array [p, q, {fmt.bins}, 2] with p, q >= 1 (k = {k}), "
                         f"not shape {w.shape}")
    p, q = w.shape[:2]
    if q > fmt.max_q:
        raise ValueError(f"Circulant q must be an integer from 1 to {fmt.max_q}, not {q}")
    imag = w[:, :, [0, -1], 1]
    if np.any(imag):
        i, j, b = (int(v) for v in np.argwhere(imag)[0])
        raise ValueError(f"Circulant spectra must have imaginary part 0 in bins 0 and k/2, not "
                         f"{int(imag[i, j, b])} (at index {(i, j, (0, fmt.bins - 1)[b], 1)})")
    x = as_int_array("Acts", x_blocks, *fmt.act_range)
    if x.ndim < 2 or x.shape[-2:] != (q, k):
        raise ValueError(f"Acts must have q = {q} blocks of k = {k} (shape [..., {q}, {k}]) to match the spectra, "
                         f"not shape {x.shape}")
    batch_shape = x.shape[:-2]
    rows = x.reshape(-1, q, k)
    if len(rows) == 0:
        return with_stats(np.zeros(batch_shape + (p, k), dtype=np.int64), NO_SIMULATION, stats)
    result = run_batch("circulant-fft", params, {"x": rows, "spectra": w}, **kwargs)
    return with_stats(result.outputs["y"].astype(np.int64).reshape(batch_shape + (p, k)), result.stats, stats)
