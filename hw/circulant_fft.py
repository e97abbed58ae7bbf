"""``circulant-fft``: a block-circulant matrix-vector PE computing in the frequency domain.

A block-circulant weight matrix is ``p x q`` circulant blocks of ``k x k`` (DESIGN.md, circulant-fft;
CirCNN, Ding et al., MICRO 2017, eq. 3), so an output block is

    y_i = IFFT( sum_j FFT(x_j) o W_ij )

with ``W_ij`` the stored, quantised half spectrum of block ``(i, j)``. The PE computes one output block
per vector: beat ``j`` carries the input block ``x_j`` and the spectrum ``W_ij``; ``last`` marks the
final beat ``j = q - 1``; then ``y_i`` comes out as one beat of ``k`` lanes. The arithmetic is the
fixed-point schedule of :mod:`sw.circulant`, bit for bit (:func:`sw.circulant.golden_matvec`), with every
width taken from :class:`sw.circulant.CirculantFormat`.

Architecture ``"parallel"`` (the only one so far; ``k <= 16``): every butterfly of both transforms is its
own hardware, one input block per cycle (II = 1). Pipeline (all registers advance on
``en = ~o.valid | o.ready``, see :mod:`hw.common`)::

    i.payload.x -> DIF stage 1 .. L (radix-2, a register after each) -> X[0 .. k/2] (bit-reversed positions)
    i.payload.w -> [L delay registers] -------------------------------> exact complex products P (register)
    -> acc += R_sp(P) (rounding carry enters the accumulator's adder); on ``last`` the sum goes to the
       inverse transform and the accumulator clears
    -> Hermitian extension, bit-reversed -> DIT stage 1 .. L (a register after each)
    -> o.payload.y = R_L(re v_L) (output register)

so ``latency = 2 L + 3`` with ``L = log2 k``.

Exactness and the cheap parts:

* Each real value is built as ``(value, negated)`` at generation time: a negation (the conjugates of the
  Hermitian extension, a rotation by ``-j`` or ``+j``) flips a flag instead of costing an adder, and the
  next add or subtract absorbs it (``a + (-b)`` is written ``a - b``); a multiplication by a constant
  twiddle folds the sign into the constant. A value held negated is stored with the negated range of
  its stage (one extra bit at most, for ``-min``).
* Values known to be exactly zero (the imaginary input of the forward transform, and what follows from it;
  the imaginary parts of bins 0 and ``k/2``) are not built at all.
* Twiddles ``1``, ``-1``, ``-j``, ``+j`` skip the multiplier (the golden rounding of such a product is
  exact, ``R_F(v 2^F) = v``); others are ``*`` by a constant, exact, then rounded once per component.
* ``R_s(v) = (v + 2^(s-1)) >> s`` equals ``(v >> s) + v[s-1]``: the product rounding enters the
  accumulator's adder as its carry (:func:`hw.common.add_with_carry`).
* The imaginary weight inputs of bins 0 and ``k/2`` are ignored (the golden model requires them to be 0).
* Outputs the PE never uses (butterfly outputs feeding only bins ``k/2+1 .. k-1``, the imaginary part of
  the last inverse stage) are left unconnected; synthesis removes them.

The accumulator is sized for ``fmt.max_q`` input blocks per output block; a longer vector overflows
(the golden model rejects it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from amaranth import Module, Signal, Value, signed, unsigned
from amaranth.hdl import Shape
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sw.circulant import CirculantFormat, bit_reverse
from sw.intops import signed_bits_for
from sw.params import Params

from .common import add_with_carry, delay, register

__all__ = ["ARCHITECTURES", "MAX_PARALLEL_BLOCK", "CirculantParams", "CirculantFFT"]

#: Architectures the parameters name; only ``"parallel"`` is implemented.
ARCHITECTURES = ("parallel", "streaming")
#: Largest block size of the fully parallel architecture (``k log k`` butterflies in flight).
MAX_PARALLEL_BLOCK = 16


@dataclass(frozen=True)
class CirculantParams(Params):
    """Parameters of :class:`CirculantFFT`.

    Members
    -------
    fmt : CirculantFormat
        Block size ``k``, activation and weight widths and the fixed-point schedule (:mod:`sw.circulant`).
    arch : str
        ``"parallel"``: every butterfly in hardware, one block per cycle, ``k <= 16``. (``"streaming"``,
        for larger blocks, is not implemented yet.)

    Raises
    ------
    TypeError
        ``"Circulant format (fmt) must be a CirculantFormat, not ..."``,
        ``"Architecture (arch) must be a string, not 1"``.
    ValueError
        ``"Architecture (arch) must be one of 'parallel', 'streaming', not 'serial'"``,
        ``"Architecture (arch) must be 'parallel' for block sizes up to 16, not 'streaming' (the streaming
        architecture is not implemented yet)"``,
        ``"Block size (fmt.block) must be at most 16 for arch='parallel', not 32 (larger blocks need the
        streaming architecture, not implemented yet)"``.
    """

    fmt: CirculantFormat = field(default_factory=CirculantFormat, metadata={
        "doc": "number format and fixed-point schedule (sw.circulant.CirculantFormat)"})
    arch: str = field(default="parallel", metadata={
        "doc": "'parallel': all butterflies in hardware, one block per cycle, block <= 16"})

    def __post_init__(self):
        if not isinstance(self.fmt, CirculantFormat):
            raise TypeError(f"Circulant format (fmt) must be a CirculantFormat, not {self.fmt!r}")
        if not isinstance(self.arch, str):
            raise TypeError(f"Architecture (arch) must be a string, not {self.arch!r}")
        if self.arch not in ARCHITECTURES:
            allowed = ", ".join(repr(a) for a in ARCHITECTURES)
            raise ValueError(f"Architecture (arch) must be one of {allowed}, not {self.arch!r}")
        if self.arch != "parallel":
            raise ValueError(f"Architecture (arch) must be 'parallel' for block sizes up to {MAX_PARALLEL_BLOCK}, "
                             f"not {self.arch!r} (the streaming architecture is not implemented yet)")
        if self.fmt.block > MAX_PARALLEL_BLOCK:
            raise ValueError(f"Block size (fmt.block) must be at most {MAX_PARALLEL_BLOCK} for arch='parallel', "
                             f"not {self.fmt.block!r} (larger blocks need the streaming architecture, "
                             f"not implemented yet)")

    # -- derived values ------------------------------------------------------------------------
    @property
    def block(self) -> int:
        """Block size ``k``."""
        return self.fmt.block

    @property
    def latency(self) -> int:
        """Register stages from ``i`` to ``o``: ``L`` forward stages, the product, the accumulator, ``L``
        inverse stages and the output register (``2 L + 3``)."""
        return 2 * self.fmt.stages + 3

    @property
    def macs_per_cycle(self) -> int:
        """Logical MACs per cycle: one ``k x k`` block of the dense product per beat."""
        return self.block * self.block

    @property
    def acc_bits(self) -> int:
        """Accumulator component width, ``fmt.acc_bits()`` (for ``fmt.max_q`` input blocks)."""
        return self.fmt.acc_bits()

    @property
    def out_bits(self) -> int:
        """Output lane width, ``fmt.out_bits()`` (for ``fmt.max_q`` input blocks)."""
        return self.fmt.out_bits()

    # -- stream layouts ------------------------------------------------------------------------
    @property
    def act_shape(self) -> Shape:
        return signed(self.fmt.act_bits) if self.fmt.act_signed else unsigned(self.fmt.act_bits)

    @property
    def bin_layout(self) -> data.StructLayout:
        """One stored spectral bin: ``re`` then ``im``, signed ``w_bits`` each."""
        return data.StructLayout({"re": signed(self.fmt.w_bits), "im": signed(self.fmt.w_bits)})

    @property
    def input_layout(self) -> data.StructLayout:
        """``i`` payload, LSB first: ``x`` (k lanes of ``act_bits``), ``w`` (``k/2 + 1`` bins, each ``re``
        then ``im``: bin m at bits ``[2 m w_bits, 2 (m + 1) w_bits)``, the row-major flattening of
        :func:`sw.circulant.export_spectra`'s ``[k/2 + 1, 2]``; ``im`` of bins 0 and ``k/2`` is ignored),
        ``last`` (1 bit, on the final input block of an output block)."""
        return data.StructLayout({
            "x": data.ArrayLayout(self.act_shape, self.block),
            "w": data.ArrayLayout(self.bin_layout, self.fmt.bins),
            "last": unsigned(1),
        })

    @property
    def output_layout(self) -> data.StructLayout:
        """``o`` payload: ``y``, k signed lanes of :attr:`out_bits`, lane n = ``y[n]``."""
        return data.StructLayout({"y": data.ArrayLayout(signed(self.out_bits), self.block)})


# -- generation-time arithmetic on (value, negated) terms ----------------------------------------------

class _Term(NamedTuple):
    """A real value ``-value if neg else value``; ``value is None`` is an exact 0 (no hardware)."""
    value: Value | None
    neg: bool = False


_ZERO = _Term(None)


def _neg(a: _Term) -> _Term:
    return a if a.value is None else _Term(a.value, not a.neg)


def _add(a: _Term, b: _Term) -> _Term:
    """``a + b`` with one adder or subtractor; the signs fold into the operation."""
    if a.value is None:
        return b
    if b.value is None:
        return a
    if a.neg == b.neg:
        return _Term(a.value + b.value, a.neg)
    return _Term(a.value - b.value) if b.neg else _Term(b.value - a.value)


def _sub(a: _Term, b: _Term) -> _Term:
    return _add(a, _neg(b))


def _scale(a: _Term, c: int) -> _Term:
    """``a * c`` for a constant ``c``: the sign of ``a`` goes into the constant."""
    if a.value is None or c == 0:
        return _ZERO
    return _Term(a.value * (-c if a.neg else c))


def _times(a: _Term, w: Value | None) -> _Term:
    """``a * w`` for a signed signal ``w`` (``None``: 0)."""
    if a.value is None or w is None:
        return _ZERO
    return _Term(a.value * w, a.neg)


def _materialise(a: _Term) -> Value:
    """The value itself (a negation only if it is still held negated)."""
    return -a.value if a.neg else a.value


def _round(a: _Term, s: int) -> _Term:
    """``R_s``: round half up, ``(v + 2^(s-1)) >> s`` (arithmetic shift)."""
    if a.value is None or s == 0:
        return a
    return _Term((_materialise(a) + (1 << (s - 1))) >> s)


def _rotate(b: tuple[_Term, _Term], tw: tuple[int, int], frac: int) -> tuple[_Term, _Term]:
    """``rot(b, t)`` of the golden schedule: the exact complex product, each component rounded by
    ``R_frac``; exact (no multiplier) for ``t`` in ``{1, -1, -j, +j}``."""
    (re, im), (tr, ti), one = b, tw, 1 << frac
    if (tr, ti) == (one, 0):
        return re, im
    if (tr, ti) == (-one, 0):
        return _neg(re), _neg(im)
    if (tr, ti) == (0, -one):       # * -j
        return im, _neg(re)
    if (tr, ti) == (0, one):        # * +j
        return _neg(im), re
    return (_round(_add(_scale(re, tr), _scale(im, -ti)), frac),
            _round(_add(_scale(re, ti), _scale(im, tr)), frac))


def _register(m: Module, a: _Term, value_range: tuple[int, int], *, en: Value, name: str) -> _Term:
    """An enabled, reset-less register for ``a`` sized from the range of the value it stands for (the
    negated range when the stored value is held negated)."""
    if a.value is None:
        return _ZERO
    lo, hi = value_range
    if a.neg:
        lo, hi = -hi, -lo
    reg = Signal(signed(signed_bits_for(lo, hi)), name=name, reset_less=True)
    with m.If(en):
        m.d.sync += reg.eq(a.value)
    return _Term(reg, a.neg)


def _register_all(m, values, value_range, *, en, name):
    return [(_register(m, re, value_range, en=en, name=f"{name}_{n}_re"),
             _register(m, im, value_range, en=en, name=f"{name}_{n}_im")) for n, (re, im) in enumerate(values)]


class CirculantFFT(wiring.Component):
    """The ``circulant-fft`` PE (see the module docstring).

    Members
    -------
    i : ``In(stream.Signature(params.input_layout))``
        One input block ``x_j`` and its spectrum ``W_ij`` per beat; ``last`` on ``j = q - 1``.
    o : ``Out(stream.Signature(params.output_layout))``
        ``y_i`` (k lanes), :attr:`CirculantParams.latency` cycles after the ``last`` beat is accepted.

    Raises
    ------
    TypeError
        ``"CirculantFFT params must be CirculantParams, not ..."``.
    """

    def __init__(self, params: CirculantParams):
        if not isinstance(params, CirculantParams):
            raise TypeError(f"CirculantFFT params must be CirculantParams, not {params!r}")
        self._params = params
        super().__init__({
            "i": In(stream.Signature(params.input_layout)),
            "o": Out(stream.Signature(params.output_layout)),
        })

    @property
    def params(self) -> CirculantParams:
        return self._params

    def elaborate(self, platform):
        p, fmt = self._params, self._params.fmt
        k, L, half, frac, sp = fmt.block, fmt.stages, fmt.block // 2, fmt.tw_frac, fmt.prod_shift
        tw = [(int(re), int(im)) for re, im in fmt.twiddles]
        order = [int(i) for i in bit_reverse(k)]
        m = Module()

        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        accept = self.i.valid & en
        # `last` travels as "valid and last"; both reset, the datapath does not.
        valid, last = accept, accept & self.i.payload.last

        # 2. forward FFT: radix-2 DIF, natural order in, bit-reversed out; u_0 = (x << g, 0)
        u = [(_Term(self.i.payload.x[n] << fmt.guard_bits), _ZERO) for n in range(k)]
        for s in range(1, L + 1):
            size, nxt = k >> (s - 1), list(u)
            for base in range(0, k, size):
                for j in range(size // 2):
                    (a_re, a_im), (c_re, c_im) = u[base + j], u[base + j + size // 2]
                    nxt[base + j] = (_add(a_re, c_re), _add(a_im, c_im))
                    nxt[base + j + size // 2] = _rotate((_sub(a_re, c_re), _sub(a_im, c_im)),
                                                        tw[j << (s - 1)], frac)
            u = _register_all(m, nxt, fmt.fft_range(s), en=en, name=f"fft{s}")
        spectrum = [u[order[b]] for b in range(half + 1)]
        spectrum[0] = (spectrum[0][0], _ZERO)           # exactly 0 (the golden model's note)
        spectrum[half] = (spectrum[half][0], _ZERO)

        # the weights meet the spectrum of their block L cycles later
        weights = data.View(p.input_layout["w"].shape,
                            delay(m, self.i.payload.w.as_value(), L, en=en, name="w"))
        valid = delay(m, valid, L, en=en, name="fft_valid", reset_less=False)
        last = delay(m, last, L, en=en, name="fft_last", reset_less=False)

        # 3. exact complex products X * W (bins 0 and k/2 real), registered
        products = []
        for b, (x_re, x_im) in enumerate(spectrum):
            w_re = weights[b].re
            w_im = weights[b].im if 0 < b < half else None
            p_re = _add(_times(x_re, w_re), _neg(_times(x_im, w_im)))
            p_im = _add(_times(x_re, w_im), _times(x_im, w_re))
            products.append(tuple(
                _register(m, _Term(_materialise(t)) if t.value is not None else t, fmt.product_range, en=en,
                          name=f"prod{b}_{part}").value
                for t, part in ((p_re, "re"), (p_im, "im"))))
        valid = register(m, valid, en=en, name="prod_valid", reset_less=False)
        last = register(m, last, en=en, name="prod_last", reset_less=False)

        # 4. accumulate R_sp(P) = (P >> sp) + P[sp - 1] exactly; on `last` hand the sum to the inverse
        # transform and clear (in its own branch: the flip-flops' synchronous reset)
        acc_shape = signed(fmt.acc_bits())
        acc = []
        for b, parts in enumerate(products):
            pair = []
            for prod, part in zip(parts, ("re", "im")):
                if prod is None:
                    pair.append(_ZERO)
                    continue
                total = Signal(acc_shape, name=f"acc{b}_{part}_next")
                held = Signal(acc_shape, name=f"acc{b}_{part}")
                rounded = (prod >> sp, prod[sp - 1]) if sp else (prod, None)
                m.d.comb += total.eq(add_with_carry(held, *rounded))
                with m.If(en & last):
                    m.d.sync += held.eq(0)
                with m.Elif(en & valid):
                    m.d.sync += held.eq(total)
                pair.append(_register(m, _Term(total), fmt.acc_range(), en=en, name=f"sum{b}_{part}"))
            acc.append(tuple(pair))
        valid = register(m, last, en=en, name="sum_valid", reset_less=False)

        # 5. inverse FFT: Hermitian extension in bit-reversed order, radix-2 DIT, conjugate twiddles
        ext = acc + [(acc[k - b][0], _neg(acc[k - b][1])) for b in range(half + 1, k)]
        v = [ext[order[i]] for i in range(k)]
        for s in range(1, L + 1):
            size, nxt = 1 << s, list(v)
            for base in range(0, k, size):
                for j in range(size // 2):
                    t_re, t_im = _rotate(v[base + j + size // 2], (tw[j * (k // size)][0], -tw[j * (k // size)][1]),
                                         frac)
                    a_re, a_im = v[base + j]
                    nxt[base + j] = (_add(a_re, t_re), _add(a_im, t_im))
                    nxt[base + j + size // 2] = (_sub(a_re, t_re), _sub(a_im, t_im))
            if s == L:                                  # 6. only the real part of the last stage is used
                nxt = [(re, _ZERO) for re, _ in nxt]
            v = _register_all(m, nxt, fmt.ifft_range(s), en=en, name=f"ifft{s}")
        valid = delay(m, valid, L, en=en, name="ifft_valid", reset_less=False)

        # 6. output register: y[n] = R_L(re v_L[n])
        with m.If(en):
            m.d.sync += self.o.valid.eq(valid)
            m.d.sync += [self.o.payload.y[n].eq(_materialise(_round(re, L)) if re.value is not None else 0)
                         for n, (re, _) in enumerate(v)]
        return m
