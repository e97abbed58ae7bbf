"""``crossbar``: the FORMS crossbar controller, a synthesizable ideal-array emulator and the two together.

The controller computes ``y = x @ W`` for ``R`` unsigned inputs through a ReRAM crossbar with polarised
sub-array columns (docs/crossbar.md; the rules and their executable form are in :mod:`sw.forms`,
:func:`sw.forms.golden_mvm`, which this RTL matches bit for bit, including the number of array reads).
Sources: FORMS (Yuan et al., ISCA 2021) for polarisation and zero-skipping; ISAAC (Shafiee et al., ISCA
2016) and PUMA (Ankit et al., ASPLOS 2019) for bit-serial inputs and shift-and-add.

Three components:

* :class:`CrossbarController` walks sub-arrays (outer) and input bit-planes (inner, LSB first), skips
  all-zero planes of a sub-array (``zero_skip``), drives one read per remaining plane through the
  *array port* (:class:`ArraySignature`), shift-adds the ADC codes into ``partial[c]``, applies the
  sub-array column's sign and emits ``y``.
* :class:`IdealArray` is a synthesizable emulator behind the array port: cell levels in registers,
  ``min(sum_i wl[i] * cells[row, j], 2^adc_bits - 1)`` per physical column, ``array_latency`` cycles
  after ``start``.
* :class:`CrossbarSystem` (the registered ``crossbar`` PE) connects the two.

The architecture is serial (docs/architecture.md allows it when the Params say so): one input vector is in flight at a
time, and it takes ``1 + sum_k (n_k * array_latency + 2 + [n_k > 0])`` cycles from acceptance to
``o.valid`` without output stalls, ``n_k`` being the reads of sub-array ``k``
(:meth:`CrossbarParams.vector_cycles`). The next vector can be accepted in the cycle ``o.valid`` rises
(the result waits in the output register).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..sw.forms import CrossbarFormat
from ..sw.params import Params, check_bool, check_choice, check_int

from .common import StreamParams, stream_signature

__all__ = ["CrossbarParams", "ArraySignature", "CrossbarController", "IdealArray", "CrossbarSystem",
           "controller_logic", "emulator_logic", "zero_skip_mask",
           "EMULATORS", "MAX_ARRAY_LATENCY", "MAX_REGISTER_BITS"]

#: Cell storages of :class:`IdealArray` (``"registers"``: one flip-flop per cell bit).
EMULATORS = ("registers",)
#: Largest fixed read latency of :class:`IdealArray`, in cycles.
MAX_ARRAY_LATENCY = 16
#: Largest cell storage (``rows * physical_cols * cell_bits``) of the ``"registers"`` emulator.
MAX_REGISTER_BITS = 1 << 16


def _default_format() -> CrossbarFormat:
    # 32 x 4 weights in 4 sub-arrays of 8 rows, 8-bit inputs and magnitudes in 2-bit cells (ISAAC/PUMA),
    # lossless 5-bit ADC: 1024 cell flip-flops, a Verilator build of seconds, and every feature (several
    # sub-arrays, slices and planes, both signs) is exercised. (tb.runner builds every model unsplit,
    # ``--output-split 0``, so wider defaults would also build; they only take longer.)
    return CrossbarFormat(rows=32, cols=4, rows_per_sub=8, act_bits=8, w_bits=8, cell_bits=2)


@dataclass(frozen=True)
class CrossbarParams(StreamParams, Params):
    """Parameters of :class:`CrossbarSystem` (and of :class:`CrossbarController` / :class:`IdealArray`).

    Members
    -------
    fmt : CrossbarFormat
        Geometry and widths (``sw.forms``); every width below derives from it.
    zero_skip : bool
        Skip bit-planes whose word lines are all zero (FORMS); ``False`` is the baseline that reads
        every plane (``fmt.max_steps`` reads per vector).
    emulator : str
        Cell storage of :class:`IdealArray`; only ``"registers"`` for now.
    array_latency : int
        Cycles from ``start`` to ``valid`` of :class:`IdealArray` (1 to 16). The controller works with any
        latency, even a variable one; this sets the emulator's.
    input_layout, output_layout, cfg_layout, load_layout : data.StructLayout
        The payloads of ``i``, ``o`` (``y`` then ``steps``), ``cfg`` and ``w``.
    i_signature, o_signature, cfg_signature, w_signature : stream.Signature
        Their stream signatures (:class:`hw.common.StreamParams`), read-only; :attr:`array_signature` is
        the array port's.

    Raises
    ------
    TypeError, ValueError
        ``"Crossbar format (fmt) must be a CrossbarFormat, not (32, 8)"``,
        ``"Zero-skip (zero_skip) must be a bool, not 1"``,
        ``"Emulator (emulator) must be one of 'registers', not 'bram'"``,
        ``"Array latency (array_latency) must be an integer from 1 to 16, not 0"``,
        ``"Register emulator cells (rows * physical_cols * cell_bits) must be at most 65536 bits, not
        131072"``.
    """

    fmt: CrossbarFormat = field(default_factory=_default_format, metadata={"doc": "crossbar format"})
    zero_skip: bool = field(default=True, metadata={"doc": "skip all-zero input bit-planes per sub-array"})
    emulator: str = field(default="registers", metadata={"doc": "cell storage of the ideal-array emulator"})
    array_latency: int = field(default=1, metadata={"doc": "emulator cycles from start to ADC codes (1 to 16)"})

    def __post_init__(self):
        if not isinstance(self.fmt, CrossbarFormat):
            raise TypeError(f"Crossbar format (fmt) must be a CrossbarFormat, not {self.fmt!r}")
        check_bool("Zero-skip (zero_skip)", self.zero_skip)
        check_choice("Emulator (emulator)", self.emulator, EMULATORS)
        check_int("Array latency (array_latency)", self.array_latency, min=1, max=MAX_ARRAY_LATENCY)
        if self.cell_storage_bits > MAX_REGISTER_BITS:
            raise ValueError(f"Register emulator cells (rows * physical_cols * cell_bits) must be at most "
                             f"{MAX_REGISTER_BITS} bits, not {self.cell_storage_bits}")

    # -- derived widths ------------------------------------------------------------------------
    @property
    def cell_storage_bits(self) -> int:
        """Flip-flops of the emulator's cells, ``rows * physical_cols * cell_bits``."""
        f = self.fmt
        return f.rows * f.physical_cols * f.cell_bits

    @property
    def sub_bits(self) -> int:
        """Width of a sub-array index (at least 1)."""
        return max(1, ceil_log2(self.fmt.sub_arrays))

    @property
    def row_bits(self) -> int:
        """Width of a row index (at least 1)."""
        return max(1, ceil_log2(self.fmt.rows))

    @property
    def step_bits(self) -> int:
        """Width of the per-vector read counter: ``fmt.max_steps`` fits."""
        return self.fmt.max_steps.bit_length()

    # -- stream layouts ------------------------------------------------------------------------
    @property
    def input_layout(self) -> data.StructLayout:
        """``i`` payload: one input vector per beat, ``x[r]`` at bits ``[r*act_bits, (r+1)*act_bits)``."""
        return data.StructLayout({"x": data.ArrayLayout(unsigned(self.fmt.act_bits), self.fmt.rows)})

    @property
    def output_layout(self) -> data.StructLayout:
        """``o`` payload: ``y[c]`` (signed ``fmt.y_bits``) then ``steps``, the array reads of this vector."""
        return data.StructLayout({"y": data.ArrayLayout(signed(self.fmt.y_bits), self.fmt.cols),
                                  "steps": unsigned(self.step_bits)})

    @property
    def cfg_layout(self) -> data.StructLayout:
        """``cfg`` payload: the sign bits of sub-array ``sub`` (bit ``c`` = column ``c``, 1 = negative)."""
        return data.StructLayout({"sub": unsigned(self.sub_bits), "signs": unsigned(self.fmt.cols)})

    @property
    def load_layout(self) -> data.StructLayout:
        """``w`` payload: the cell levels of one row, ``cells[j]`` = physical column ``j``."""
        return data.StructLayout({"row": unsigned(self.row_bits),
                                  "cells": data.ArrayLayout(unsigned(self.fmt.cell_bits), self.fmt.physical_cols)})

    cfg_signature = stream_signature("cfg_layout", "Signature of the sign-configuration stream ``cfg``.")
    w_signature = stream_signature("load_layout", "Signature of the cell-load stream ``w``.")

    @property
    def array_signature(self) -> ArraySignature:
        """The array port as the controller sees it (:class:`ArraySignature`; ``.flip()`` for the array)."""
        return ArraySignature(self)

    # -- timing --------------------------------------------------------------------------------
    def vector_cycles(self, reads_per_sub) -> int:
        """Cycles from accepting a vector to ``o.valid`` (no output stall) for ``reads_per_sub[k]`` reads.

        ``1 + sum_k (n_k * array_latency + 2 + [n_k > 0])``: the acceptance cycle; per sub-array its reads
        back to back, one cycle to add the last answer (only if there was one), a run and a sign cycle.
        """
        reads = list(reads_per_sub)
        if len(reads) != self.fmt.sub_arrays:
            raise ValueError(f"Reads per sub-array must have {self.fmt.sub_arrays} entries, not {len(reads)}")
        return 1 + sum(n * self.array_latency + 2 + (n > 0) for n in reads)


def _check_params(owner: str, params) -> CrossbarParams:
    if not isinstance(params, CrossbarParams):
        raise TypeError(f"{owner} params must be CrossbarParams, not {params!r}")
    return params


class ArraySignature(wiring.Signature):
    """The array port, seen from the controller (the array side is ``.flip()``).

    A read: in the cycle ``start`` is high, ``wl`` (word lines of the sub-array's ``rows_per_sub`` rows,
    bit ``i`` = row ``sub * rows_per_sub + i``) and ``sub`` select what to read; the array must capture
    them then (they are don't-care in other cycles). Some cycles later (at least one, any number) the
    array raises ``valid`` for exactly one cycle with the codes of all physical columns in ``adc``
    (``adc[j]``, ``adc_bits`` each). Reads are answered in order; the controller never starts a read
    before the previous one's ``valid`` (it may start the next one in that very cycle).

    Members
    -------
    wl : Out(rows_per_sub)
    sub : Out(sub_bits)
    start : Out(1)
    adc : In(ArrayLayout(unsigned(adc_bits), physical_cols))
    valid : In(1)
    """

    def __init__(self, params: CrossbarParams):
        f = _check_params("Array signature", params).fmt
        super().__init__({
            "wl": Out(f.rows_per_sub),
            "sub": Out(params.sub_bits),
            "start": Out(1),
            "adc": In(data.ArrayLayout(unsigned(f.adc_bits), f.physical_cols)),
            "valid": In(1),
        })


class _PlaneMask:
    """The controller's choice of planes to read, a method so that a test can plant a bug (tests/mutants.py)."""

    def plane_mask(self, rows):
        """Planes to read of one sub-array whose inputs are ``rows``: :func:`zero_skip_mask`."""
        return zero_skip_mask(self._params, rows)


class CrossbarController(_PlaneMask, wiring.Component):
    """The FORMS controller: bit-serial walk, zero-skipping, shift-and-add, signs, accumulation.

    Per accepted vector (``i`` beat): for sub-array ``k = 0 ..``: the planes to read are those with a
    set bit among the sub-array's inputs (all ``act_bits`` planes without ``zero_skip``), read LSB first,
    one read in flight; each answer adds ``sum_s adc[c*slices + s] << (p + s*cell_bits)`` into
    ``partial[c]``; then ``y[c] += partial[c]`` (sign bit 0) or ``-= partial[c]`` (sign bit 1). After the
    last sub-array ``y`` and the read count go to the output register ``o``.

    Members
    -------
    i : In(params.i_signature)
        One vector per beat; ready only while idle (no vector in flight).
    o : Out(params.o_signature)
        ``y`` and ``steps`` (array reads issued for this vector); held until accepted.
    cfg : In(params.cfg_signature)
        Sign bits, one sub-array per beat (addressed by ``sub``); ready only while idle. A sub-array whose
        signs were never loaded has sign bits 0. Sign bits survive ``rst`` (configuration, not state).
    array : Out(params.array_signature)
    busy : Out(1)
        A vector is in flight (``i`` and ``cfg`` are not ready).
    params : CrossbarParams
        The parameters it was built from (read-only).

    Reset (``rst``, synchronous) abandons the vector in flight, clears ``o.valid`` and the
    accumulators; a read in flight at reset is ignored when it comes back.
    """

    def __init__(self, params: CrossbarParams):
        self._params = _check_params("CrossbarController", params)
        super().__init__({
            "i": In(params.i_signature),
            "o": Out(params.o_signature),
            "cfg": In(params.cfg_signature),
            "array": Out(params.array_signature),
            "busy": Out(1),
        })

    @property
    def params(self) -> CrossbarParams:
        """The parameters this component was built from."""
        return self._params

    def elaborate(self, platform):
        m = Module()
        controller_logic(m, self._params, i=self.i, o=self.o, cfg=self.cfg, array=self.array, busy=self.busy,
                         plane_mask=self.plane_mask)
        return m


def _select(items, index):
    """``items[index]`` as a mux covering every value of ``index`` (out-of-range: the last item), so the
    generated case statements are complete (Verilator CASEINCOMPLETE)."""
    items = list(items)
    if len(items) == 1:
        return items[0]
    items += [items[-1]] * ((1 << len(index)) - len(items))
    return Array(items)[index]


def _equals(value, const: int):
    """``value == const``, written so that yosys emits no 1-bit ``!`` of a vector (Verilator WIDTHTRUNC)."""
    return ~value.any() if const == 0 else value == const


def zero_skip_mask(p: CrossbarParams, rows):
    """Bit ``q`` set iff plane ``q`` of the sub-array whose ``act_bits``-wide inputs are ``rows`` is read.

    With ``zero_skip`` the OR of the inputs (FORMS' input zero-skipping: a plane is read iff some input of the
    sub-array has that bit set); without, every plane (the ISAAC/PUMA baseline).
    """
    planes = p.fmt.act_bits
    if not p.zero_skip:
        return Const((1 << planes) - 1, planes)
    mask = Const(0, planes)
    for r in rows:
        mask = mask | r
    return mask


def controller_logic(m: Module, p: CrossbarParams, *, i, o, cfg, array, busy, plane_mask=None) -> None:
    """Add :class:`CrossbarController`'s logic to ``m`` on the given interface objects.

    A function rather than only ``elaborate`` so that :class:`CrossbarSystem` is one flat Verilog module
    (the project's lint runs with ``-Wall`` on one file named after the top module). ``plane_mask(rows)``
    gives the planes to read of a sub-array (default :func:`zero_skip_mask`).
    """
    f = p.fmt
    rps, planes, subs = f.rows_per_sub, f.act_bits, f.sub_arrays

    # -- configuration: sign bits per sub-array (reset-less) -------------------------------------
    sign_regs = [Signal(f.cols, name=f"signs{k}", reset_less=True) for k in range(subs)]

    # -- state: one-hot walk states (no FSM: its case statements trip the lint waivers) -----------
    idle = Signal(name="idle", init=1)
    run = Signal(name="run")        # reading the planes of sub-array k
    sign = Signal(name="sign")      # y +-= partial, next sub-array or emit
    done = Signal(name="done")      # result waits for the output register
    x = Signal(f.rows * planes, name="x", reset_less=True)  # the vector, sub-array k at the LSBs
    k = Signal(p.sub_bits, name="k")
    pending = Signal(planes, name="pending")                  # planes of sub-array k still to read
    inflight = Signal(name="inflight")
    plane_q = Signal(max(1, ceil_log2(planes)), name="plane_q")           # plane of the read in flight
    partial = [Signal(f.partial_bits, name=f"partial{c}") for c in range(f.cols)]
    y = [Signal(signed(f.y_bits), name=f"y{c}") for c in range(f.cols)]
    steps = Signal(p.step_bits, name="steps")

    def rows_of(vector, sub):
        """The ``rows_per_sub`` inputs of sub-array ``sub`` of a flat vector (``act_bits`` each)."""
        base = sub * rps * planes
        return [vector[base + r * planes: base + (r + 1) * planes] for r in range(rps)]

    if plane_mask is None:
        def plane_mask(rows):
            return zero_skip_mask(p, rows)

    # -- the read of the lowest pending plane ---------------------------------------------------------
    lowest = Signal(max(1, ceil_log2(planes)), name="lowest")             # priority encoder
    for q in reversed(range(planes)):
        with m.If(pending[q]):
            m.d.comb += lowest.eq(q)
    lowest_onehot = Signal(planes, name="lowest_onehot")
    m.d.comb += lowest_onehot.eq(pending & (~pending + 1))
    m.d.comb += [
        array.sub.eq(k),
        array.wl.eq(Cat((r & lowest_onehot).any() for r in rows_of(x, 0))),
        busy.eq(~idle),
    ]

    # -- shift-and-add of an answer, two register stages (ISAAC/PUMA's shift-and-add unit):
    # (1) the cycle it arrives: term[c] = sum_s adc[c*slices + s] << (s*cell_bits + plane), registered;
    # (2) the next cycle: partial[c] += term[c]. The sign step waits for (2) (see RUN).
    add = Signal(name="add")
    m.d.sync += add.eq(array.valid & inflight)
    term_bits = (f.adc_max * (f.w_max // f.cell_max) << (planes - 1)).bit_length()
    for c in range(f.cols):
        v = 0
        for s_ in range(f.slices):
            v = v + (array.adc[c * f.slices + s_] << (s_ * f.cell_bits))
        term = Signal(term_bits, name=f"term{c}", reset_less=True)
        with m.If(array.valid):
            m.d.sync += term.eq(v << plane_q)
        with m.If(add):
            m.d.sync += partial[c].eq(partial[c] + term)

    # -- output register ------------------------------------------------------------------------------
    o_free = ~o.valid | o.ready
    with m.If(o.ready):
        m.d.sync += o.valid.eq(0)
    y_next = [Signal(signed(f.y_bits), name=f"y{c}_next") for c in range(f.cols)]
    sign_bits = _select(sign_regs, k)
    for c in range(f.cols):
        # y -+ partial as one adder: y + (partial ^ -sign) + sign (two's complement negation by inversion
        # and carry-in), not an adder, a subtractor and a mux
        neg = sign_bits[c]
        m.d.comb += y_next[c].eq(y[c] + (partial[c] ^ neg.replicate(f.y_bits)).as_signed() + neg)

    def emit(values):
        m.d.sync += [o.payload.y[c].eq(values[c]) for c in range(f.cols)]
        m.d.sync += [o.payload.steps.eq(steps), o.valid.eq(1), steps.eq(0)]
        m.d.sync += [yc.eq(0) for yc in y]
        m.d.sync += [idle.eq(1), sign.eq(0), done.eq(0)]

    # IDLE: accept a vector and/or a sign configuration beat
    m.d.comb += [i.ready.eq(idle), cfg.ready.eq(idle)]
    with m.If(cfg.valid & idle):
        for s_ in range(subs):
            with m.If(_equals(cfg.payload.sub, s_)):
                m.d.sync += sign_regs[s_].eq(cfg.payload.signs)
    with m.If(i.valid & idle):
        m.d.sync += [x.eq(i.payload.x), k.eq(0), pending.eq(plane_mask(rows_of(i.payload.x.as_value(), 0))),
                     idle.eq(0), run.eq(1)]

    # RUN: one read in flight at most; the next starts in the cycle the previous one answers. Leave
    # when nothing is pending or in flight: the last answer's term is then being added (stage 2).
    with m.If(run):
        with m.If(~inflight | array.valid):
            m.d.sync += inflight.eq(0)
            with m.If(pending.any()):
                m.d.comb += array.start.eq(1)
                m.d.sync += [plane_q.eq(lowest), pending.eq(pending & ~lowest_onehot), inflight.eq(1),
                             steps.eq(steps + 1)]
            with m.Elif(~inflight):
                m.d.sync += [run.eq(0), sign.eq(1)]

    # SIGN: y[c] +-= partial[c]; next sub-array, or emit (or wait for the output register)
    with m.If(sign):
        m.d.sync += [pc.eq(0) for pc in partial]
        with m.If(k == subs - 1):
            with m.If(o_free):
                emit(y_next)
            with m.Else():
                m.d.sync += [y[c].eq(y_next[c]) for c in range(f.cols)]
                m.d.sync += [sign.eq(0), done.eq(1)]
        with m.Else():
            m.d.sync += [y[c].eq(y_next[c]) for c in range(f.cols)]
            m.d.sync += [sign.eq(0), run.eq(1)]
            if subs > 1:
                m.d.sync += [k.eq(k + 1), x.eq(x >> (rps * planes)), pending.eq(plane_mask(rows_of(x, 1)))]

    with m.If(done & o_free):
        emit(y)


class IdealArray(wiring.Component):
    """Synthesizable ideal crossbar behind the array port (the RTL twin of :class:`sw.forms.IdealArray`).

    A read started in cycle ``t`` returns ``adc[j] = min(sum_i wl[i] * cells[sub*rows_per_sub + i, j],
    2^adc_bits - 1)`` with ``valid`` high in cycle ``t + array_latency`` (a pipeline: a read may start in
    every cycle).

    Cell load format (stream ``w``, always ready): one row per beat, ``row`` (0 .. rows - 1) and
    ``cells[j]`` the level of physical column ``j`` (``sw.forms.Mapping.cells[row]``). Cells are
    configuration: they start at 0 and survive ``rst``. Loading while reads are in flight changes the
    codes of reads started after the beat.

    Members
    -------
    array : In(params.array_signature)
    w : In(params.w_signature)
    params : CrossbarParams
        The parameters it was built from (read-only).
    """

    def __init__(self, params: CrossbarParams):
        self._params = _check_params("IdealArray", params)
        super().__init__({"array": In(params.array_signature), "w": In(params.w_signature)})

    @property
    def params(self) -> CrossbarParams:
        """The parameters this component was built from."""
        return self._params

    def elaborate(self, platform):
        m = Module()
        emulator_logic(m, self._params, array=self.array, w=self.w)
        return m


def emulator_logic(m: Module, p: CrossbarParams, *, array, w, w_enable=None) -> None:
    """Add :class:`IdealArray`'s logic to ``m``; ``w_enable`` (optional) gates the load stream."""
    f = p.fmt
    rps = f.rows_per_sub
    width = f.physical_cols * f.cell_bits
    cell_rows = [Signal(width, name=f"cells{r}", reset_less=True) for r in range(f.rows)]
    enable = Const(1, 1) if w_enable is None else w_enable
    m.d.comb += w.ready.eq(enable)
    with m.If(w.valid & enable):
        for r in range(f.rows):
            with m.If(_equals(w.payload.row, r)):
                m.d.sync += cell_rows[r].eq(w.payload.cells)

    # row i of the selected sub-array (one wide mux per row), then the clipped column sums
    sub_rows = []
    for r in range(rps):
        row = Signal(width, name=f"sub_row{r}")
        m.d.comb += row.eq(_select((cell_rows[s * rps + r] for s in range(f.sub_arrays)), array.sub))
        sub_rows.append(row)
    # The sum is as wide as its largest value; it is clipped only where it can exceed the ADC's range
    # (a comparison that cannot be true is constant: Verilator CMPCONST).
    codes = Signal(f.physical_cols * f.adc_bits, name="codes")
    for j in range(f.physical_cols):
        total = Signal(range(f.column_max + 1), name=f"column{j}")
        m.d.comb += total.eq(sum(Mux(array.wl[r], sub_rows[r][j * f.cell_bits:(j + 1) * f.cell_bits], 0)
                                 for r in range(rps)))
        code = Mux(total > f.adc_max, f.adc_max, total) if f.column_max > f.adc_max else total
        m.d.comb += codes[j * f.adc_bits:(j + 1) * f.adc_bits].eq(code)

    valid, adc = array.start, codes
    for n in range(p.array_latency):
        v = Signal(name=f"array_valid_d{n + 1}")
        a = Signal(len(adc), name=f"array_adc_d{n + 1}", reset_less=True)
        m.d.sync += [v.eq(valid), a.eq(adc)]
        valid, adc = v, a
    m.d.comb += [array.valid.eq(valid), array.adc.eq(adc)]


class CrossbarSystem(_PlaneMask, wiring.Component):
    """The ``crossbar`` PE: :class:`CrossbarController` + :class:`IdealArray` (``params.emulator``).

    Members
    -------
    i, o, cfg :
        As :class:`CrossbarController` (``params.i_signature``, ``o_signature``, ``cfg_signature``).
    w : In(params.w_signature)
        Cell levels, one row per beat (:class:`IdealArray`); ready only while no vector is in flight.
    params : CrossbarParams
        The parameters it was built from (read-only).
    """

    def __init__(self, params: CrossbarParams):
        self._params = _check_params("CrossbarSystem", params)
        super().__init__({
            "i": In(params.i_signature),
            "o": Out(params.o_signature),
            "cfg": In(params.cfg_signature),
            "w": In(params.w_signature),
        })

    @property
    def params(self) -> CrossbarParams:
        """The parameters this component was built from."""
        return self._params

    def elaborate(self, platform):
        # flat: controller and emulator logic in one module (see controller_logic)
        m = Module()
        port = self._params.array_signature.create(path=("array",))
        busy = Signal(name="busy")
        controller_logic(m, self._params, i=self.i, o=self.o, cfg=self.cfg, array=port, busy=busy,
                         plane_mask=self.plane_mask)
        emulator_logic(m, self._params, array=port, w=self.w, w_enable=~busy)
        return m
