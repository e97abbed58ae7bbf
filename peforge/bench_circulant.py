"""``make bench`` suite ``circulant``: the block-circulant PE against a direct dense matrix-vector PE.

Rows on ECP5-85F, one run, one flow: ``circulant-fft`` with the parallel architecture (one ``k x k`` block per
cycle) at k = 8 and 16, the streaming architecture (one sample per cycle) at k = 8, 16 and 64, and the
dense baseline, ``fixed-mac`` with 16 DSP lanes computing the same layer as plain dot products. Each
circulant row counts *equivalent dense MACs*: a ``k x k`` block per :attr:`CirculantParams.initiation_interval`
cycles is ``k^2 / II`` MACs per cycle of the dense product it replaces. SQNR is measured in software with
the bit-exact golden model (the RTL equals it, ``tests/test_circulant_fft.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peforge.bench import WRAPPER_NOTE, Design, header, synthesise_all, target_table
from peforge.report import markdown_table

__all__ = ["circulant_suite", "sqnr_circulant", "sqnr_dense"]

#: the issue's reference designs, measured on this flow outside peforge
FFT_REF = {"lut": 3550, "ff": 4237, "dsp": 16, "fmax": 131.0, "macs": 16}
DENSE_REF = {"lut": 550, "dsp": 16, "fmax": 132.0, "macs": 16}
#: SQNR recipe (sw/circulant.py docstring): p = q = 4 blocks, Gaussian first columns, 256 vectors of
#: activations uniform over the whole act_bits range, numpy seed 0
SQNR_P = SQNR_Q = 4
SQNR_VECTORS = 256
DENSE_W_BITS = 8
DENSE_LANES = 16


def _sqnr_case(block: int):
    from sw.circulant import CirculantFormat

    fmt = CirculantFormat(block=block)
    rng = np.random.default_rng(0)
    columns = rng.standard_normal((SQNR_P, SQNR_Q, block))
    lo, hi = fmt.act_range
    x = rng.integers(lo, hi, (SQNR_VECTORS, SQNR_Q, block), endpoint=True)
    return fmt, columns, x


def sqnr_circulant(block: int) -> float:
    """SQNR (dB) of ``dequantize(golden_matvec(...))`` against the float64 product ``block_circulant(c) @ x``
    at the default format with block size ``block`` (the recipe above; the activations' own quantisation
    is not counted)."""
    from sw.circulant import block_circulant, dequantize, export_spectra, golden_matvec, sqnr_db

    fmt, columns, x = _sqnr_case(block)
    spectra, scale = export_spectra(columns, fmt)
    reference = x.reshape(len(x), -1) @ block_circulant(columns).T
    got = dequantize(golden_matvec(x, spectra, fmt), scale, fmt).reshape(len(x), -1)
    return sqnr_db(reference, got)


def sqnr_dense(block: int, w_bits: int = DENSE_W_BITS) -> float:
    """SQNR (dB) of the same layer as a dense matrix with ``w_bits`` weights (one scale per row,
    :func:`sw.fixed.quantize`), the products exact as in ``fixed-mac``."""
    from sw.circulant import block_circulant, sqnr_db
    from sw.fixed import quantize

    _, columns, x = _sqnr_case(block)
    dense = block_circulant(columns)
    v, scale = quantize(dense, w_bits)
    flat = x.reshape(len(x), -1)
    return sqnr_db(flat @ dense.T, (flat @ v.T) * scale[None, :])


@dataclass(frozen=True)
class _Row:
    design: Design
    macs: float          # equivalent dense MACs per cycle
    sqnr: str


def _rows() -> list[_Row]:
    from hw.circulant_fft import CirculantParams
    from hw.fixed_mac import FixedMacParams
    from sw.circulant import CirculantFormat

    rows = []
    sqnr = {k: sqnr_circulant(k) for k in (8, 16, 64)}
    for arch, blocks in (("parallel", (8, 16)), ("streaming", (8, 16, 64))):
        for k in blocks:
            p = CirculantParams(fmt=CirculantFormat(block=k), arch=arch)
            rows.append(_Row(Design(f"circulant k={k} {arch}", "circulant-fft", p), p.macs_per_cycle,
                             f"{sqnr[k]:.1f}"))
    dense = FixedMacParams(lanes=DENSE_LANES, act_bits=8, act_signed=True, w_bits=DENSE_W_BITS, dsp=True,
                           max_len=64 * 16)
    rows.append(_Row(Design("dense fixed-mac int8 DSP", "fixed-mac", dense), dense.macs_per_cycle,
                     " / ".join(f"{sqnr_dense(k):.1f}" for k in (8, 16, 64))))
    return rows


def _table(rows: list[_Row], results: list) -> str:
    head = ["design", "LUT", "FF", "DSP", "BRAM", "Fmax MHz", "eq. MACs/cycle", "MACs/cycle per DSP",
            "MACs/cycle per 1000 LUT", "GMAC/s", "SQNR dB"]
    out = []
    for row, r in zip(rows, results):
        if r is None:
            out.append([row.design.label, "synthesis failed"] + [""] * 8 + [row.sqnr])
            continue
        fmax = r.fmax_mhz or 0.0
        per_dsp = f"{row.macs / r.dsp:.2f}" if r.dsp else "-"
        out.append([row.design.label, str(r.lut), str(r.ff), str(r.dsp), str(r.bram), f"{fmax:.1f}",
                    f"{row.macs:g}", per_dsp, f"{1000 * row.macs / max(r.lut, 1):.1f}",
                    f"{row.macs * fmax / 1000:.2f}", row.sqnr])
    return markdown_table(head, out)


def _checks(rows: list[_Row], results: list) -> list[tuple[str, bool, str]]:
    by = {row.design.label: (row, r) for row, r in zip(rows, results)}
    ref_cost = FFT_REF["lut"] + FFT_REF["dsp"]
    checks = []
    dense_row, dense = by["dense fixed-mac int8 DSP"]
    stream_row, stream = by["circulant k=16 streaming"]
    par_row, par = by["circulant k=16 parallel"]
    if stream is not None:
        cost = stream.lut + stream.dsp
        checks.append((f"k = 16 at the reference's 16 equivalent MACs/cycle (row `circulant k=16 streaming`): "
                       f"LUT + DSP <= 0.5x the FFT16 reference's {FFT_REF['lut']} + {FFT_REF['dsp']}",
                       cost <= 0.5 * ref_cost,
                       f"{stream.lut} + {stream.dsp} = {cost} = {cost / ref_cost:.2f}x"))
    else:
        checks.append(("k = 16 streaming at 16 equivalent MACs/cycle: LUT + DSP <= 0.5x the FFT16 reference",
                       False, "synthesis failed"))
    if par is not None:
        scale = FFT_REF["macs"] / par_row.macs
        cost = (par.lut + par.dsp) * scale
        checks.append((f"(normalised) row `circulant k=16 parallel` scaled to 16 equivalent MACs/cycle "
                       f"(x {FFT_REF['macs']}/{par_row.macs:g}): LUT + DSP <= 0.5x the reference",
                       cost <= 0.5 * ref_cost,
                       f"({par.lut} + {par.dsp}) x {scale:g} = {cost:.0f} = {cost / ref_cost:.2f}x"))
    base = dense_row.macs / dense.dsp if dense is not None and dense.dsp else None
    for label, (row, r) in ((stream_row.design.label, (stream_row, stream)),
                            (par_row.design.label, (par_row, par))):
        if r is None or base is None:
            checks.append((f"row `{label}`: equivalent MACs per DSP >= 4x the dense 16-lane PE", False,
                           "synthesis failed"))
            continue
        per_dsp = row.macs / r.dsp if r.dsp else float("inf")
        checks.append((f"row `{label}`: equivalent MACs/cycle per DSP >= 4x the dense 16-lane fixed-mac "
                       f"({base:.2f} per DSP, measured here)", per_dsp >= 4 * base,
                       f"{row.macs:g} / {r.dsp} = {per_dsp:.2f} per DSP = {per_dsp / base:.1f}x"))
    return checks


def _meaning(rows: list[_Row], results: list) -> str:
    """What the table says, from the measured numbers (a paragraph per point)."""
    from hw.circulant_fft import CirculantParams
    from sw.circulant import CirculantFormat

    by = {row.design.label: (row, r) for row, r in zip(rows, results)}
    dense_row, dense = by["dense fixed-mac int8 DSP"]
    out = []
    for label in ("circulant k=16 parallel", "circulant k=16 streaming"):
        row, r = by[label]
        if r is None or dense is None:
            continue
        n = row.macs / dense_row.macs
        out.append(f"- `{label}` does the work of {n:g} x the dense 16-lane PE ({row.macs:g} equivalent MACs/cycle) "
                   f"with {r.lut} LUT and {r.dsp} DSP: {r.lut / row.macs:.1f} LUT and {r.dsp / row.macs:.3f} DSP "
                   f"per equivalent MAC/cycle, against {dense.lut / dense_row.macs:.1f} LUT and "
                   f"{dense.dsp / dense_row.macs:.2f} DSP per MAC/cycle for the dense PE; at "
                   f"{r.fmax_mhz or 0:.0f} MHz that is {row.macs * (r.fmax_mhz or 0) / 1000:.1f} equivalent GMAC/s.")
    circ = [sqnr_circulant(k) for k in (8, 16, 64)]
    dense_sqnr = [sqnr_dense(k) for k in (8, 16, 64)]
    circ_lo, circ_hi, dense_lo, dense_hi = min(circ), max(circ), min(dense_sqnr), max(dense_sqnr)
    k16 = CirculantParams(fmt=CirculantFormat(block=16), arch="parallel")
    in_bits = k16.input_layout.size
    out.append(f"- Equivalent MACs are only equivalent for a layer whose matrix *is* block-circulant: a k x k "
               f"block has k free parameters instead of k^2, which is a modelling restriction the training has "
               f"to absorb (8x8 digits with k = 8 hidden layers: 96.4 % in float and through the golden model, "
               f"`sw/circulant.py`). The SQNR column measures only the PE's arithmetic on such a matrix: the "
               f"frequency-domain schedule with 12-bit spectral weights ({circ_lo:.1f} to {circ_hi:.1f} dB over "
               f"k = 8, 16, 64) is more precise than the same matrices as int8 dense weights ({dense_lo:.1f} to "
               f"{dense_hi:.1f} dB).")
    out.append(f"- The parallel PE takes a whole input block and its {k16.fmt.bins}-bin spectrum every cycle: "
               f"{in_bits} input bits per cycle at k = 16 (128 activation bits, 216 weight bits), against 256 "
               f"for the dense 16-lane PE. The weights are not reused inside the PE, so a system must feed "
               f"them at that rate (from BRAM, or reuse one block row over a batch); the bench wrapper feeds "
               f"them from a shift register.")
    fmax = [r.fmax_mhz for row, r in zip(rows, results)
            if r is not None and r.fmax_mhz and "parallel" in row.design.label]
    if fmax:
        out.append(f"- Fmax of the parallel rows ({min(fmax):.0f}-{max(fmax):.0f} MHz) is set by the MULT18X18D "
                   f"multipliers: yosys does not use the DSP's internal registers on ECP5, so about 4 ns of "
                   f"multiplier sit between fabric registers that nextpnr places 20 or more rows away "
                   f"(about 2 ns of routing each way), and it varies by 10-30 % between seeds; next come "
                   f"two 30-bit carry-chain adders of the inverse transform (docs/circulant-fft.md).")
    out.append("- The LUTs of the parallel PE are almost all carry-chain adders: the twiddle trees (no DSP) and "
               "the butterflies, most of them in the inverse transform, whose values are 27-30 bits wide at "
               "k = 16 because the accumulator is sized for max_q = 64 input blocks.")
    return "\n".join(out)


def circulant_suite(seeds) -> str:
    """Synthesise every row and return the Markdown page ``docs/results/circulant.md``."""
    rows = _rows()
    results = synthesise_all([row.design for row in rows], seeds)
    checks = _checks(rows, results)
    return "\n".join([
        header("circulant-fft vs a dense matrix-vector PE", seeds),
        "Circulant rows: the default format (8-bit signed activations, 12-bit spectral weights, 16-bit "
        "twiddles, 2 guard bits, max_q = 64 input blocks per output block). `parallel`: every butterfly "
        "in hardware, one k x k block per cycle; `streaming`: one sample per cycle, a block every k cycles. "
        "`eq. MACs/cycle` counts the dense MACs the PE replaces: k^2 per block, divided by the initiation "
        "interval. The dense baseline is `fixed-mac` with 16 DSP lanes, 8-bit signed activations and 8-bit "
        "weights (the int8 layer a dense PE would run; its accumulator is sized for 64 x 16 = 1024 terms, "
        "the longest row the circulant rows accept at k = 16); it does 16 MACs/cycle whatever the matrix.",
        "",
        "SQNR: measured in software against the float64 product `block_circulant(c) @ x` (p = q = 4 blocks, "
        "Gaussian first columns, 256 vectors of activations uniform over the 8-bit range, numpy seed 0; "
        "the activations' own quantisation is not counted). Circulant rows: the bit-exact golden model "
        "`golden_matvec` (the RTL equals it). Dense row: the same block-circulant matrices quantised to "
        "8-bit weights with one scale per row, at k = 8 / 16 / 64.",
        "",
        WRAPPER_NOTE,
        "",
        _table(rows, results),
        "",
        "## Targets",
        "",
        target_table(checks),
        "",
        "## What the numbers mean",
        "",
        _meaning(rows, results),
        "",
        f"References measured on this flow outside peforge (from the issue): an FFT16 -> complex multiply "
        f"-> IFFT16 PE from a published open FFT core, {FFT_REF['lut']} LUT, {FFT_REF['ff']} FF, "
        f"{FFT_REF['dsp']} DSP at {FFT_REF['fmax']:.0f} MHz, 16 equivalent MACs/cycle (one sample per clock); "
        f"the dense 16-lane int8 dot-product PE {DENSE_REF['lut']} LUT + {DENSE_REF['dsp']} DSP at "
        f"{DENSE_REF['fmax']:.0f} MHz, 16 MACs/cycle (1.00 MAC/cycle per DSP). The DSP targets use the "
        f"dense row measured here, whose MACs per DSP equal the reference's.",
        "",
    ])
