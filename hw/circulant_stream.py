"""``circulant-fft``, architecture ``"streaming"``: one sample per cycle, block sizes up to 64.

The same PE as the ``"parallel"`` architecture (:mod:`hw.circulant_fft`: the same ports, payloads and
bits, :func:`sw.circulant.golden_matvec`), built from one butterfly per stage instead of ``k/2``: the
forward and inverse transforms are radix-2 single-path delay-feedback (R2SDF) pipelines, so an input
block is accepted every ``k`` cycles (II = ``k``) and the hardware grows with ``log k``, not ``k log k``.

Data flow (every register advances on ``step``, see *Sequencing*)::

    i (x_j, W_ij) -> x buffer      -> stage-1 butterfly on the pair (x[n], x[n + k/2]) -> rotate (real input)
                  -> weight banks  -> SDF DIF stages 2 .. L (delay line k/2^s, rotate) -> X, natural position
                                   -> X * W[bitrev(pos)] exact, R_sp, += accumulator RAM (two banks)
    on ``last``: the finished bank is read in bit-reversed order with the Hermitian extension
                  -> SDF DIT stages 1 .. L (rotate, delay line 2^(s-1)) -> R_L(re) -> lane ``pos`` of o.y

Every value is the golden schedule's: the SDF stages compute exactly the butterflies of
:func:`sw.circulant.golden_matvec`, in position order, with the twiddle of each position read from
:attr:`sw.circulant.CirculantFormat.twiddles` (a product with a trivial twiddle rounds exactly,
``R_F(v 2^F) = v``, so every position goes through the same multiplier). Real-valued input: the first
forward stage reads both butterfly inputs from the buffered block (no delay line) and its rotation has a
real operand (two multipliers, not four). Positions whose bins are above ``k/2`` flow through the forward
stages (a streaming butterfly is shared in time, so pruning saves nothing) and are not accumulated.

Sequencing
----------
A *slot* is one ``step`` of the pipeline; a block takes ``k`` consecutive slots. ``t`` counts the slots
of the block at the input; a point of the pipeline ``d`` registers downstream sees position
``(t - d) mod k`` of the block that entered ``d`` slots earlier, so one counter times every stage, and
the per-block flags (valid, first, last, weight bank) live in a short history indexed by ``d div k``.
The pipeline steps while a block is being serialised; at a block boundary it starts the next block when
a beat is offered, or an empty (bubble) block while a result is still in flight, and otherwise stops, so
a vector's result comes out without waiting for more input. The output lanes are written one per slot;
``o.valid`` rises with the last lane. Like every PE, all of it holds while ``o`` is full and stalled.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory
from amaranth.utils import ceil_log2

from sw.circulant import CirculantFormat, bit_reverse
from sw.intops import signed_bits_for

from .common import DEFAULT_DSP_BITS, add_with_carry

__all__ = ["streaming_latency", "elaborate_streaming"]

#: Delay lines at least this deep live in distributed RAM (ECP5 DPR16X4, 16 deep) rather than flip-flops;
#: shorter ones stay in flip-flops, where a half-used RAM would cost more LUTs than it saves.
LINE_RAM_DEPTH = 16


def mult_stages(a_bits: int, b_bits: int, dsp_bits: int = DEFAULT_DSP_BITS) -> int:
    """Registers of an exact signed product on ``dsp_bits`` x ``dsp_bits`` DSPs (the target's operand
    width, :attr:`hw.circulant_fft.CirculantParams.dsp_bits`): 1 when both operands fit one DSP or both
    are wider (left to yosys), 2 when one must be split into ``dsp_bits - 1``-bit pieces (partial
    products, then their sum)."""
    return 2 if min(a_bits, b_bits) <= dsp_bits < max(a_bits, b_bits) else 1


def rotate_stages(data_bits: int, tw_bits: int, dsp_bits: int = DEFAULT_DSP_BITS) -> int:
    """Registers of a twiddle rotation with multipliers: operands (and ``re + im``), products, the two
    sums, the rounding. ``data_bits``: the width of ``re + im``; ``tw_bits``: of ``c + d`` and ``d - c``."""
    return 3 + mult_stages(data_bits, tw_bits, dsp_bits)


def _table_bits(values) -> int:
    return max(signed_bits_for(min(values), max(values)), 1)


def _three_mult_table(table):
    """``(c, d - c, c + d)`` for each twiddle ``c + jd`` of a 3-multiplier complex product."""
    return [(c, d - c, c + d) for c, d in table]


# -- the plan: twiddle tables and register offsets, from the format alone ------------------------------

def _kind(table: list[tuple[int, int]], one: int) -> str:
    """``"none"`` (all twiddles 1), ``"swap"`` (only 1 and one of +-j) or ``"multiply"``."""
    values = set(table)
    if values <= {(one, 0)}:
        return "none"
    if values <= {(one, 0), (0, -one)} or values <= {(one, 0), (0, one)}:
        return "swap"
    return "multiply"


def _rotation_latency(kind: str, table, data_bits: int, dsp_bits: int) -> int:
    if kind == "none":
        return 0
    if kind == "swap":
        return 1
    tw_bits = _table_bits([v for row in _three_mult_table(table) for v in row])
    return rotate_stages(data_bits + 1, tw_bits, dsp_bits)


@dataclass(frozen=True)
class _Plan:
    fft_tw: list          # per forward stage s = 1 .. L: twiddle of each position of its output
    ifft_tw: list         # per inverse stage s = 1 .. L: twiddle of each position of its input
    fft_kind: list
    ifft_kind: list
    fft_lat: list         # registers of each rotation
    ifft_lat: list
    product_mult: int     # registers of the X * W multipliers
    forward: int          # offset of the spectrum X (natural position order)
    acc: int              # offset of the accumulator update
    ifft_in: int          # offset of v_0 (after the bank read and the Hermitian extension)
    out: int              # offset of the last inverse stage's register (the output lanes are written there)
    weight_banks: int     # input beats whose weights are held at once (banks of the weight RAM)
    dsp_bits: int         # the target's DSP operand width (splits of the multipliers)


def _conj_bits(lo_hi) -> int:
    lo, hi = lo_hi
    return signed_bits_for(min(lo, -hi), max(hi, -lo))


@functools.lru_cache(maxsize=64)
def _plan(fmt: CirculantFormat, dsp_bits: int = DEFAULT_DSP_BITS) -> _Plan:
    k, L, one = fmt.block, fmt.stages, 1 << fmt.tw_frac
    tw = [(int(re), int(im)) for re, im in fmt.twiddles]
    fft_tw, ifft_tw = [], []
    for s in range(1, L + 1):
        n, h = k >> (s - 1), k >> s               # DIF group size and half
        fft_tw.append([tw[(p % n - h) << (s - 1)] if p % n >= h else (one, 0) for p in range(k)])
        n, h = 1 << s, 1 << (s - 1)               # DIT group size and half
        ifft_tw.append([(tw[(p % n - h) * (k // n)][0], -tw[(p % n - h) * (k // n)][1]) if p % n >= h
                        else (one, 0) for p in range(k)])
    fft_kind = [_kind(t, one) for t in fft_tw]
    ifft_kind = [_kind(t, one) for t in ifft_tw]
    # a rotation multiplies re + im (one bit wider than the stage's values) by a twiddle sum
    fft_lat = [_rotation_latency(fft_kind[s - 1], fft_tw[s - 1], fmt.fft_bits(s), dsp_bits)
               for s in range(1, L + 1)]
    ifft_lat = [_rotation_latency(ifft_kind[s - 1], ifft_tw[s - 1],
                                  fmt.ifft_bits(s - 1) if s > 1 else _conj_bits(fmt.acc_range()), dsp_bits)
                for s in range(1, L + 1)]
    # forward: pair register, sum/difference register, rotation; then per SDF stage the delay line, its
    # output register and the rotation
    d = 2 + fft_lat[0]
    for s in range(2, L + 1):
        d += (k >> s) + 1 + fft_lat[s - 1]
    forward = d
    product_mult = mult_stages(fmt.fft_bits(L) + 1, fmt.w_bits + 1, dsp_bits)
    acc = forward + 1 + product_mult + 1          # operands, products, exact sums
    ifft_in = acc + k + 2                         # one block later: bank read address, read data, conj
    d = ifft_in
    for s in range(1, L + 1):
        d += ifft_lat[s - 1] + (1 << (s - 1)) + 1
    # Weight RAM: bin m of a block is written in its slot m + 1 and read (one slot before the product
    # stage) in slot forward - 1 + bitrev^-1(m); a bank is written again B blocks later, so
    # B k >= forward + k - 2.
    rev = bit_reverse(k)
    late = [int(rev[p]) + 1 - (forward - 2 + p) for p in range(k) if rev[p] <= k // 2]
    if max(late) > 0:
        raise RuntimeError(f"streaming weights would be read {max(late)} slots before they are written")
    return _Plan(fft_tw, ifft_tw, fft_kind, ifft_kind, fft_lat, ifft_lat, product_mult, forward, acc,
                 ifft_in, d, weight_banks=-(-(forward + k - 2) // k), dsp_bits=dsp_bits)


def streaming_latency(fmt: CirculantFormat, dsp_bits: int = DEFAULT_DSP_BITS) -> int:
    """Cycles from accepting the ``last`` beat to ``o.valid`` with no stalls: the block's first sample
    is presented the cycle after the beat is accepted, its ``k`` samples flow to the last inverse stage
    (offset ``out``), and the output register takes the last lane one cycle later."""
    return 1 + _plan(fmt, dsp_bits).out + fmt.block


# -- generation helpers ----------------------------------------------------------------------------------

def _range_shape(*ranges: tuple[int, int]):
    return signed(signed_bits_for(min(r[0] for r in ranges), max(r[1] for r in ranges)))


class _Builder:
    """Shared state of one streaming datapath: the module, the step enable and the slot counter."""

    def __init__(self, m: Module, k: int, step, t, history, dsp_bits: int):
        self.m, self.k, self.step, self.t, self.history = m, k, step, t, history
        self.dsp_bits = dsp_bits
        self.bits = ceil_log2(k)
        self._pos = {}

    def reg(self, value, shape, name):
        r = Signal(shape, name=name, reset_less=True)
        with self.m.If(self.step):
            self.m.d.sync += r.eq(value)
        return r

    def pos(self, d: int):
        """Position (0 .. k-1) of the sample at offset ``d``: ``(t - d) mod k``."""
        d %= self.k
        if d not in self._pos:
            p = Signal(unsigned(self.bits), name=f"pos_{d}")
            self.m.d.comb += p.eq((self.t - d)[:self.bits] if d else self.t)
            self._pos[d] = p
        return self._pos[d]

    def flags(self, d: int):
        """The flags of the block at offset ``d``: the one that entered ``d`` slots ago."""
        a, b = divmod(d, self.k)
        if b == 0:
            return self.history[a]
        return Mux(self.t >= b, self.history[a].as_value(), self.history[a + 1].as_value())

    def table(self, values, d: int, shape, name):
        """``values[pos(d)]``: a constant table indexed by the position at offset ``d``."""
        if len(set(values)) == 1:
            return Const(values[0], shape)
        return self.select(values, d, shape, name)

    def select(self, values, d: int, shape, name):
        """``values[pos(d)]`` for ``k`` values (constants or signals): a ``k``-way multiplexer."""
        sig = Signal(shape, name=name)
        with self.m.Switch(self.pos(d)):
            for p, v in enumerate(values):
                with self.m.Case(p):
                    self.m.d.comb += sig.eq(v)
        return sig

    def rotate(self, re, im, table, kind: str, d: int, frac: int, out_shape, name):
        """``rot(b, tw[pos])`` of the golden schedule for the sample at offset ``d``; ``im is None`` for a
        real operand. Returns the rotated pair, :func:`_rotation_latency` slots later."""
        if kind == "none":
            return re, im
        if kind == "swap":                       # (re + j im) * (+-j), exact
            plus_j = any(ti > 0 for _, ti in table)
            sel = self.table([int(ti != 0) for _, ti in table], d, unsigned(1), f"{name}_swap")
            im_v = Const(0, 1).as_signed() if im is None else im
            if plus_j:                           # * +j = (-im, re)
                out = (Mux(sel, -im_v, re), Mux(sel, re, im_v))
            else:                                # * -j = (im, -re)
                out = (Mux(sel, im_v, re), Mux(sel, -re, im_v))
            return (self.reg(out[0], out_shape, f"{name}_re"), self.reg(out[1], out_shape, f"{name}_im"))
        # 3-multiplier complex product (exact): with t = c + jd, k1 = c (re + im), k2 = re (d - c),
        # k3 = im (c + d); re t = k1 - k3, im t = k1 + k2. The twiddle sums come from the table.
        rows = _three_mult_table(table)
        tw_shape = signed(_table_bits([v for row in rows for v in row]))
        lat = _rotation_latency(kind, table, len(re), self.dsp_bits)
        ms = lat - 3
        c, dc, cd = (self.reg(self.table([row[n] for row in rows], d, tw_shape, f"{name}_tw{n}"), tw_shape,
                              f"{name}_t{n}") for n in range(3))
        a_re = self.reg(re, re.shape(), f"{name}_a_re")
        half = 1 << (frac - 1)
        if im is None:                           # real operand: re t = re c, im t = re d = re ((c + d) - c)
            k1 = self.mul(a_re, c, ms, f"{name}_k1")
            k2 = self.mul(a_re, dc, ms, f"{name}_k2")
            sum_re = self.reg(k1, k1.shape(), f"{name}_sre")
            sum_im = self.reg(k1 + k2, signed(len(k1) + 1), f"{name}_sim")
        else:
            a_im = self.reg(im, im.shape(), f"{name}_a_im")
            a_sum = self.reg(re + im, signed(len(re) + 1), f"{name}_a_sum")
            k1 = self.mul(a_sum, c, ms, f"{name}_k1")
            k2 = self.mul(a_re, dc, ms, f"{name}_k2")
            k3 = self.mul(a_im, cd, ms, f"{name}_k3")
            sum_re = self.reg(k1 - k3, signed(len(k1) + 1), f"{name}_sre")
            sum_im = self.reg(k1 + k2, signed(len(k1) + 1), f"{name}_sim")
        return (self.reg((sum_re + half) >> frac, out_shape, f"{name}_re"),
                self.reg((sum_im + half) >> frac, out_shape, f"{name}_im"))

    def mul(self, a, b, stages: int, name):
        """The exact product ``a * b`` after ``stages`` registers. An operand wider than a DSP (when the
        other fits) is split into ``dsp_bits - 1``-bit unsigned pieces (the top one signed) whose partial
        products are registered, then summed."""
        shape = signed(len(a) + len(b))
        dsp = self.dsp_bits
        natural = mult_stages(len(a), len(b), dsp)
        if natural == 2:
            wide, narrow = (a, b) if len(a) > len(b) else (b, a)
            step = dsp - 1
            pieces = [wide[n:n + step] for n in range(0, len(wide) - dsp, step)]
            pieces.append(wide[len(pieces) * step:].as_signed())
            partial = [self.reg(piece * narrow, signed(len(piece) + len(narrow) + 1), f"{name}_pp{n}")
                       for n, piece in enumerate(pieces)]
            total = partial[0]
            for n, pp in enumerate(partial[1:], 1):
                total = total + (pp << (n * step))
            value = self.reg(total, shape, name)
        else:
            value = self.reg(a * b, shape, name)
        for n in range(stages - natural):
            value = self.reg(value, shape, f"{name}_pad{n}")
        return value

    def sdf(self, re, im, d: int, half: int, line_shape, out_shape, name):
        """A radix-2 single-path delay-feedback butterfly on the stream at offset ``d`` whose pairs are
        ``half`` positions apart: tops go into the delay line, each bottom meets its top and the sum
        leaves at once while the difference waits in the line for the next group's top slots. Returns
        the registered stream (position ``p - half`` at offset ``d + half + 1``)."""
        bottom = self.pos(d)[ceil_log2(half)]
        if half >= LINE_RAM_DEPTH:
            # a circular buffer in distributed RAM, addressed by the low position bits: each slot reads the
            # entry written ``half`` slots ago and overwrites it
            layout = data.StructLayout({"re": line_shape, "im": line_shape})
            mem = Memory(shape=layout, depth=half, init=[])
            self.m.submodules[f"{name}_line"] = mem
            rd, wr = mem.read_port(domain="comb"), mem.write_port()
            ptr = self.pos(d)[:ceil_log2(half)]
            old_re, old_im = rd.data.re, rd.data.im
            self.m.d.comb += [rd.addr.eq(ptr), wr.addr.eq(ptr), wr.en.eq(self.step),
                              wr.data.re.eq(Mux(bottom, old_re - re, re)),
                              wr.data.im.eq(Mux(bottom, old_im - im, im))]
        else:
            line_re = [Signal(line_shape, name=f"{name}_line{n}_re", reset_less=True) for n in range(half)]
            line_im = [Signal(line_shape, name=f"{name}_line{n}_im", reset_less=True) for n in range(half)]
            old_re, old_im = line_re[-1], line_im[-1]
            with self.m.If(self.step):
                self.m.d.sync += [line_re[0].eq(Mux(bottom, old_re - re, re)),
                                  line_im[0].eq(Mux(bottom, old_im - im, im))]
                self.m.d.sync += [line_re[n].eq(line_re[n - 1]) for n in range(1, half)]
                self.m.d.sync += [line_im[n].eq(line_im[n - 1]) for n in range(1, half)]
        out_re = Mux(bottom, old_re + re, old_re)
        out_im = Mux(bottom, old_im + im, old_im)
        return self.reg(out_re, out_shape, f"{name}_re"), self.reg(out_im, out_shape, f"{name}_im")


# -- the component's body --------------------------------------------------------------------------------

def elaborate_streaming(pe) -> Module:
    """The ``"streaming"`` datapath of :class:`hw.circulant_fft.CirculantFFT` ``pe``."""
    p, fmt = pe.params, pe.params.fmt
    k, L, half, frac, sp, g = fmt.block, fmt.stages, fmt.block // 2, fmt.tw_frac, fmt.prod_shift, fmt.guard_bits
    plan = _plan(fmt, p.dsp_bits)
    rev = [int(r) for r in bit_reverse(k)]
    m = Module()

    # -- sequencing -----------------------------------------------------------------------------------
    en = Signal()
    m.d.comb += en.eq(~pe.o.valid | pe.o.ready)
    t = Signal(unsigned(ceil_log2(k)), init=k - 1)          # slot of the block at the input
    drain = Signal(range(plan.out + k + 1))                  # steps until the last result is out
    flushing = Signal()                                      # drain != 0, registered (off the step path)
    block_end = t == k - 1
    start = Signal()                                         # a new block (beat or bubble) begins
    step = Signal()
    m.d.comb += [
        start.eq(en & block_end & (pe.i.valid | flushing)),
        step.eq(en & (~block_end | pe.i.valid | flushing)),
        pe.i.ready.eq(en & block_end),
    ]
    accept = pe.i.valid & pe.i.ready

    flag_layout = {"valid": 1, "first": 1, "last": 1, "bank": range(plan.weight_banks)}
    flags_shape = data.StructLayout(flag_layout)
    depth = plan.out // k + 2
    history = [Signal(flags_shape, name=f"block{n}") for n in range(depth)]
    first = Signal(init=1)                                    # the next beat starts a vector
    wsel = Signal(range(plan.weight_banks))                   # the weight bank the next beat fills
    with m.If(step):
        m.d.sync += t.eq(t + 1)
        with m.If(flushing):
            m.d.sync += [drain.eq(drain - 1), flushing.eq(drain != 1)]
    with m.If(start):
        m.d.sync += [history[n].eq(history[n - 1]) for n in range(1, depth)]
        m.d.sync += [history[0].valid.eq(accept), history[0].first.eq(first),
                     history[0].last.eq(pe.i.payload.last), history[0].bank.eq(wsel)]
    with m.If(accept):
        m.d.sync += first.eq(pe.i.payload.last)
        m.d.sync += wsel.eq(Mux(wsel == plan.weight_banks - 1, 0, wsel + 1))
        with m.If(pe.i.payload.last):
            m.d.sync += [drain.eq(plan.out + k), flushing.eq(1)]
    b = _Builder(m, k, step, t, history, p.dsp_bits)

    # -- input buffers: the block being serialised; its weights go into the weight RAM, one bin per slot --
    x_shape = p.act_shape
    xbuf = [Signal(x_shape, name=f"x{n}", reset_less=True) for n in range(k)]
    wbuf = [(Signal(signed(fmt.w_bits), name=f"w{n}_re", reset_less=True),
             Signal(signed(fmt.w_bits), name=f"w{n}_im", reset_less=True)) for n in range(fmt.bins)]
    with m.If(accept):
        m.d.sync += [xbuf[n].eq(pe.i.payload.x[n]) for n in range(k)]
        m.d.sync += [part.eq(pe.i.payload.w[n][field]) for n, pair in enumerate(wbuf)
                     for part, field in zip(pair, ("re", "im"))]
    zero_w = Const(0, signed(fmt.w_bits))
    bin_layout = data.StructLayout({"re": signed(fmt.w_bits), "im": signed(fmt.w_bits)})
    wmem = Memory(shape=bin_layout, depth=plan.weight_banks * k, init=[])
    m.submodules.weights = wmem
    w_write = wmem.write_port()
    # bin m is selected in slot m and written in slot m + 1 (registered, off the counter's critical path);
    # bins 0 and k/2 are real: their imaginary fields are ignored
    w_addr = b.reg(Cat(t, history[0].bank), unsigned(len(w_write.addr)), "w_addr")
    w_re_in = b.reg(b.select([wbuf[n][0] if n <= half else zero_w for n in range(k)], 0, signed(fmt.w_bits),
                             "w_in_re"), signed(fmt.w_bits), "w_re_in")
    w_im_in = b.reg(b.select([wbuf[n][1] if 0 < n < half else zero_w for n in range(k)], 0, signed(fmt.w_bits),
                             "w_in_im"), signed(fmt.w_bits), "w_im_in")
    w_en = Signal(name="w_en")
    with m.If(step):
        m.d.sync += w_en.eq(history[0].valid & (t <= half))
    m.d.comb += [w_write.addr.eq(w_addr), w_write.data.re.eq(w_re_in), w_write.data.im.eq(w_im_in),
                 w_write.en.eq(step & w_en)]

    # -- forward stage 1 on the buffered pair (x[n], x[n + k/2]), real input ---------------------------
    pair = t[:L - 1] if L > 1 else Const(0, 1)
    top_x, bot_x = Array(xbuf[:half])[pair], Array(xbuf[half:])[pair]
    in_shape = _range_shape(fmt.fft_range(0))
    a = b.reg(top_x << g, in_shape, "fft1_a")
    c = b.reg(bot_x << g, in_shape, "fft1_c")
    s1_shape = _range_shape(fmt.fft_range(1))
    u = b.reg(Mux(b.pos(1)[L - 1], a - c, a + c), s1_shape, "fft1_sum")
    u_re, u_im = b.rotate(u, None, plan.fft_tw[0], plan.fft_kind[0], 2, frac, s1_shape, "fft1_rot")
    if u_im is None:
        u_im = Const(0, s1_shape)
    d = 2 + plan.fft_lat[0]
    for s in range(2, L + 1):
        shape = _range_shape(fmt.fft_range(s))
        line = _range_shape(fmt.fft_range(s - 1), fmt.fft_range(s))
        u_re, u_im = b.sdf(u_re, u_im, d, k >> s, line, shape, f"fft{s}")
        d += (k >> s) + 1
        u_re, u_im = b.rotate(u_re, u_im, plan.fft_tw[s - 1], plan.fft_kind[s - 1], d, frac, shape, f"fft{s}_rot")
        d += plan.fft_lat[s - 1]
    if d != plan.forward:
        raise RuntimeError(f"streaming plan out of step: forward offset {d} != {plan.forward}")

    # -- products X[m] * W[m] for the bins m = bitrev(pos) <= k/2, exact, registered ------------------
    # the weight of bin bitrev(pos), read one slot ahead so it arrives with the spectrum
    w_read = wmem.read_port(domain="sync")
    flags_w = data.View(flags_shape, b.flags(d - 1))
    bin_at = b.table([rev[pos] if rev[pos] <= half else 0 for pos in range(k)], d - 1, unsigned(L), "w_bin")
    m.d.comb += [w_read.en.eq(step), w_read.addr.eq(Cat(bin_at, flags_w.bank))]
    w_re_sel, w_im_sel = w_read.data.re, w_read.data.im
    # 3-multiplier complex product, exact: k1 = w_re (x_re + x_im), k2 = x_re (w_im - w_re),
    # k3 = x_im (w_re + w_im); re P = k1 - k3, im P = k1 + k2
    x_shape_f = _range_shape(fmt.fft_range(L))
    ws = signed(fmt.w_bits + 1)
    x_re, x_im = b.reg(u_re, x_shape_f, "x_re"), b.reg(u_im, x_shape_f, "x_im")
    x_sum = b.reg(u_re + u_im, signed(x_shape_f.width + 1), "x_sum")
    w_re = b.reg(w_re_sel, signed(fmt.w_bits), "w_re")
    w_dif, w_sum = b.reg(w_im_sel - w_re_sel, ws, "w_dif"), b.reg(w_re_sel + w_im_sel, ws, "w_sum")
    k1 = b.mul(x_sum, w_re, plan.product_mult, "p_k1")
    k2 = b.mul(x_re, w_dif, plan.product_mult, "p_k2")
    k3 = b.mul(x_im, w_sum, plan.product_mult, "p_k3")
    prod_shape = _range_shape(fmt.product_range)
    prod_re, prod_im = b.reg(k1 - k3, prod_shape, "prod_re"), b.reg(k1 + k2, prod_shape, "prod_im")
    d += 1 + plan.product_mult + 1

    # -- accumulation in RAM: two banks of k positions, the one being read by the IFFT and the other ------
    acc_shape = signed(fmt.acc_bits())
    acc_layout = data.StructLayout({"re": acc_shape, "im": acc_shape})
    mem = Memory(shape=acc_layout, depth=2 * k, init=[])
    m.submodules.acc = mem
    bank = Signal()                                           # the bank being accumulated
    flags_acc = data.View(flags_shape, b.flags(d))
    rmw = mem.read_port(domain="sync")
    m.d.comb += [rmw.en.eq(step), rmw.addr.eq((bank << L) | b.pos(d - 1))]
    needed = b.table([int(rev[pos] <= half) for pos in range(k)], d, unsigned(1), "acc_needed")

    def accumulate(prod, old):
        rounded = (prod >> sp, prod[sp - 1]) if sp else (prod, None)
        return add_with_carry(Mux(flags_acc.first, 0, old), *rounded)

    wr = mem.write_port()
    m.d.comb += [
        wr.addr.eq((bank << L) | b.pos(d)),
        wr.data.re.eq(accumulate(prod_re, rmw.data.re)),
        wr.data.im.eq(accumulate(prod_im, rmw.data.im)),
        wr.en.eq(step & flags_acc.valid & needed),
    ]
    with m.If(step & flags_acc.valid & flags_acc.last & (b.pos(d) == k - 1)):
        m.d.sync += bank.eq(~bank)
    if d != plan.acc:
        raise RuntimeError(f"streaming plan out of step: accumulator offset {d} != {plan.acc}")

    # -- inverse: the finished bank in bit-reversed order, Hermitian extension ------------------------
    d += k                                                   # one block later, the read address
    read_addr, conj = [], []
    for pos in range(k):
        mbin = rev[pos]
        read_addr.append(pos if mbin <= half else rev[k - mbin])
        conj.append(int(mbin > half))
    rd = mem.read_port(domain="sync")
    m.d.comb += [rd.en.eq(step), rd.addr.eq((~bank << L) | b.table(read_addr, d, unsigned(L), "ifft_addr"))]
    d += 1
    neg = b.table(conj, d, unsigned(1), "ifft_conj")
    lo, hi = fmt.acc_range()
    v_range = (min(lo, -hi), max(hi, -lo))
    v_shape = _range_shape(v_range)
    v_re = b.reg(rd.data.re, v_shape, "v0_re")
    v_im = b.reg(Mux(neg, -rd.data.im, rd.data.im), v_shape, "v0_im")
    d += 1
    if d != plan.ifft_in:
        raise RuntimeError(f"streaming plan out of step: inverse offset {d} != {plan.ifft_in}")
    for s in range(1, L + 1):
        shape = _range_shape(fmt.ifft_range(s))
        v_re, v_im = b.rotate(v_re, v_im, plan.ifft_tw[s - 1], plan.ifft_kind[s - 1], d, frac, shape,
                              f"ifft{s}_rot")
        d += plan.ifft_lat[s - 1]
        line = _range_shape(fmt.ifft_range(s - 1) if s > 1 else v_range, fmt.ifft_range(s))
        v_re, v_im = b.sdf(v_re, v_im, d, 1 << (s - 1), line, shape, f"ifft{s}")
        d += (1 << (s - 1)) + 1
    if d != plan.out:
        raise RuntimeError(f"streaming plan out of step: output offset {d} != {plan.out}")

    # -- output: y[pos] = R_L(re v_L), one lane per slot; o.valid with the last lane --------------------
    flags_out = data.View(flags_shape, b.flags(d))
    done = flags_out.valid & flags_out.last
    y = ((v_re + (1 << (L - 1))) >> L)
    pos_out = b.pos(d)
    with m.If(step & done):
        with m.Switch(pos_out):
            for n in range(k):
                with m.Case(n):
                    m.d.sync += pe.o.payload.y[n].eq(y)
    with m.If(en):
        m.d.sync += pe.o.valid.eq(step & done & (pos_out == k - 1))
    return m
