"""cocotb testbench and batch API of ``circulant-fft``; every expected value comes from
:func:`sw.circulant.golden_matvec`.

A *vector* here is the work of one output block: ``x [q, k]`` (the input blocks, ``act_bits`` integers)
and ``w [q, k/2 + 1, 2]`` (the stored spectra ``W_ij`` of one block row ``i``), sent as ``q`` beats with
``last`` on the final one; the PE answers with one beat ``y_i [k]``. The imaginary weight fields of bins 0
and ``k/2`` are ignored by the PE (the golden model requires them to be 0): the tests fill them with
random junk in the payload to check that.

The batch API :func:`rtl_matvec` runs whole layers (every output block of every batch row) through one
simulation.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import cocotb

from sw.circulant import check_format, golden_matvec
from sw.intops import as_int_array

from .runner import load_config
from .stream import STALL_MIXES, StreamBench, pack, run_with_summary, to_signed
from .vector import run_batch

__all__ = ["rtl_matvec", "CirculantBench", "CHECKS"]

#: the cocotb tests pytest runs (``batch`` and ``random_vectors`` serve the batch API and ``peforge sim``)
CHECKS = ["random_stalls", "extremes", "reset_mid_vector", "throughput_and_latency"]


class CirculantBench:
    """One ``circulant-fft`` under test: its params, random vectors, golden values and a :class:`StreamBench`."""

    def __init__(self, dut, *, p_valid: float = 1.0, p_ready: float = 1.0):
        self.pe, self.params, self.config = load_config()
        self.fmt = self.params.fmt
        self.rng = np.random.default_rng(int(os.environ.get("COCOTB_RANDOM_SEED", "1")))
        self.stream = StreamBench(dut, rng=self.rng, p_valid=p_valid, p_ready=p_ready,
                                  interval=self.params.initiation_interval, latency=self.params.latency)

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

    def lengths(self, count: int) -> list[int]:
        """``count`` block counts ``q`` in ``1 .. max_q``, both ends included."""
        top = self.fmt.max_q
        qs = [1, top] + [int(q) for q in self.rng.integers(1, top, max(count - 2, 0), endpoint=True)]
        return qs[:max(count, 1)]

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

    # -- beats, golden, results ------------------------------------------------------------------
    def payloads(self, vectors, *, junk: bool = True) -> list[int]:
        """Pack the beats of ``vectors``; ``junk`` fills the ignored imaginary fields of bins 0 and k/2."""
        fmt = self.fmt
        x = np.concatenate([v[0] for v in vectors])
        w = np.concatenate([v[1] for v in vectors]).copy()
        if junk:
            w[:, [0, -1], 1] = self.rng.integers(*fmt.w_range, (len(w), 2), endpoint=True)
        mask = (1 << fmt.w_bits) - 1
        bins = ((w[..., 1] & mask) << fmt.w_bits) | (w[..., 0] & mask)   # one bin: re at the LSBs, then im
        last = np.concatenate([np.arange(len(v[0])) == len(v[0]) - 1 for v in vectors]).astype(np.int64)
        return pack(self.params.input_layout, {"x": x, "w": bins, "last": last})

    def golden(self, vector) -> np.ndarray:
        x, w = vector
        return golden_matvec(x, w[None], self.fmt)[0]

    def unpack(self, value: int) -> np.ndarray:
        bits = self.params.out_bits
        mask = (1 << bits) - 1
        return np.array([to_signed((value >> (n * bits)) & mask, bits) for n in range(self.fmt.block)],
                        dtype=np.int64)

    async def check(self, vectors, *, what: str, idle_after: int | None = None) -> list[tuple[int, int]]:
        """Send ``vectors`` and compare every output block with golden, in order; afterwards the sink stays
        ready for ``idle_after`` cycles (default latency + 8) and nothing more may come out."""
        expected = [self.golden(v) for v in vectors]
        if idle_after is None:
            idle_after = self.params.latency + 8
        got = await self.stream.run(self.payloads(vectors), outputs=len(vectors), idle_after=idle_after)
        for n, ((value, cycle), want) in enumerate(zip(got, expected)):
            y = self.unpack(value)
            if not np.array_equal(y, want):
                x, w = vectors[n]
                raise AssertionError(f"{what}: output block {n} (q={len(x)}) gave {y.tolist()}, golden "
                                     f"{want.tolist()} (cycle {cycle}); x[0] = {x[0].tolist()}, "
                                     f"w[0] = {w[0].tolist()}")
        return got


@cocotb.test()
async def random_stalls(dut):
    """Random blocks and spectra, q in 1..max_q, with random valid/ready stalls on both sides."""
    bench = CirculantBench(dut)
    await bench.stream.start()
    count = int(bench.config.get("vectors", 24))
    for p_valid, p_ready in STALL_MIXES:
        bench.stream.p_valid, bench.stream.p_ready = p_valid, p_ready
        vectors = [bench.random(q) for q in bench.lengths(count)]
        await bench.check(vectors, what=f"random (p_valid={p_valid}, p_ready={p_ready})")


@cocotb.test()
async def extremes(dut):
    """Zeros, impulses, DC, Nyquist, full-scale inputs and spectra accumulated over max_q blocks."""
    bench = CirculantBench(dut, p_valid=0.8, p_ready=0.8)
    await bench.stream.start()
    await bench.check(bench.extremes(), what="extremes")


@cocotb.test()
async def reset_mid_vector(dut):
    """Reset with a vector half sent, and again with results waiting: nothing stale comes out and the
    accumulator starts from 0."""
    bench = CirculantBench(dut, p_valid=0.8, p_ready=0.8)
    await bench.stream.start()
    p = bench.params
    x, w = bench.random(max(2, min(p.fmt.max_q, 6)))
    partial = bench.payloads([(x, w)])[:-1]                     # everything but the `last` beat
    await bench.stream.run(partial, outputs=0, stop_after_inputs=True)
    await bench.stream.reset()
    fresh = [bench.random(q) for q in bench.lengths(6)]
    await bench.check(fresh, what="after reset mid-vector")
    # results pending in the pipeline and the output register while o.ready is low
    bench.stream.p_ready = 0.0
    short = [bench.random(1) for _ in range(p.latency + 2)]
    await bench.stream.run(bench.payloads(short), outputs=0, for_cycles=p.latency + 4)
    await bench.stream.reset()
    bench.stream.p_ready = 0.8
    await bench.check(fresh, what="after reset with results pending")


@cocotb.test()
async def throughput_and_latency(dut):
    """Without stalls: one block every ``initiation_interval`` cycles (1 for ``"parallel"``, ``k`` for
    ``"streaming"``) and each result exactly ``latency`` cycles after its ``last`` beat."""
    bench = CirculantBench(dut)
    await bench.stream.start()
    p = bench.params
    vectors = [bench.random(1) for _ in range(20)]
    # idle_after: the streaming architecture finishes the (empty) block that flushed the last result
    got = await bench.check(vectors, what="back to back", idle_after=p.initiation_interval)
    # beat n is accepted in cycle n II (ending at edge n II + 1); its result is valid in cycle
    # n II + latency and the bench stamps a sample with the edge ending its cycle
    ii = p.initiation_interval
    cycles = [cycle for _, cycle in got]
    expected = [n * ii + p.latency + 1 for n in range(len(vectors))]
    assert cycles == expected, f"results on cycles {cycles}, expected {expected} (II = {ii}, latency {p.latency})"
    # multi-block vectors back to back: the accumulator hands over and clears without a bubble
    qs = [2, 1, 3, 1, 1, 4]
    vectors = [bench.random(q) for q in qs]
    got = await bench.check(vectors, what="multi-block back to back", idle_after=0)
    ends = np.cumsum(qs) - 1
    expected = [int(e) * ii + p.latency + 1 for e in ends]
    cycles = [cycle for _, cycle in got]
    assert cycles == expected, f"multi-block results on cycles {cycles}, expected {expected}"


@cocotb.test()
async def batch(dut):
    """Batch API: every row of ``x`` against every block row of ``spectra`` (``in.npz``) into ``out.npz``."""
    bench = CirculantBench(dut)
    work = Path(bench.config["batch_dir"])
    bench.stream.p_valid = float(bench.config.get("p_valid", 1.0))
    bench.stream.p_ready = float(bench.config.get("p_ready", 1.0))
    await bench.stream.start()
    with np.load(work / "in.npz") as arrays:
        x, spectra = arrays["x"], arrays["spectra"]
    vectors = [(x[b], spectra[i]) for b in range(len(x)) for i in range(len(spectra))]
    got = await bench.stream.run(bench.payloads(vectors, junk=False), outputs=len(vectors),
                                 idle_after=bench.params.latency + 2)
    y = np.array([bench.unpack(v) for v, _ in got], dtype=np.int64).reshape(len(x), len(spectra), -1)
    np.savez(work / "out.npz", y=y, cycles=bench.stream.cycles)


@cocotb.test()
async def random_vectors(dut):
    """``peforge sim``: random output blocks (q in 1..max_q) under stalls; writes a summary JSON."""
    config = load_config()[2]
    bench = CirculantBench(dut, p_valid=float(config.get("p_valid", 0.5)),
                           p_ready=float(config.get("p_ready", 0.5)))
    await bench.stream.start()
    vectors = [bench.random(q) for q in bench.lengths(int(config.get("vectors", 100)))]
    beats = sum(len(x) for x, _ in vectors)
    summary = {"vectors": len(vectors), "elements": beats * bench.fmt.block, "beats": beats, "error": None}
    await run_with_summary(bench.stream, bench.check(vectors, what="random"), summary,
                           config["summary"])


# -- batch API ----------------------------------------------------------------------------------------

def rtl_matvec(x_blocks, spectra, params, *, p_valid: float = 1.0, p_ready: float = 1.0, seed: int = 1,
               waves: bool = False) -> np.ndarray:
    """:func:`sw.circulant.golden_matvec` computed by the RTL, every output block in one simulation.

    Parameters
    ----------
    x_blocks : int array [..., q, k]
        Activations as ``q`` blocks of ``k`` (``act_bits`` integers); leading axes are a batch.
    spectra : int array [p, q, k/2 + 1, 2]
        Stored half spectra (:func:`sw.circulant.export_spectra`): signed ``w_bits`` components, imaginary
        part 0 in bins 0 and ``k/2``; ``1 <= q <= fmt.max_q``.
    params : hw.circulant_fft.CirculantParams
    p_valid, p_ready : float
        Probability of offering a beat / accepting a result per cycle (1.0: no stalls).

    Returns
    -------
    numpy.ndarray of int64, shape [..., p, k]

    Raises
    ------
    TypeError, ValueError
        ``"Acts must be integers from -128 to 127, not 300 (at index (0, 5))"``,
        ``"Circulant spectra must be an array [p, q, 9, 2] with p, q >= 1 (k = 16), not shape (2, 9, 2)"``,
        ``"Circulant spectra must have imaginary part 0 in bins 0 and k/2, not 3 (at index (0, 0, 0, 1))"``,
        ``"Acts must have q = 2 blocks of k = 16 (shape [..., 2, 16]) to match the spectra, not shape (3, 16)"``,
        ``"Circulant q must be an integer from 1 to 64, not 65"``.
    """
    from hw.circulant_fft import CirculantParams

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
        return np.zeros(batch_shape + (p, k), dtype=np.int64)
    y = run_batch("circulant-fft", params, {"x": rows, "spectra": w}, p_valid=p_valid, p_ready=p_ready,
                  seed=seed, waves=waves)
    return y.reshape(batch_shape + (p, k))
