"""Recurrent layers on hardware: the ``lstm`` and ``gru`` engines (issue 33; the integer semantics in
``docs/rnn.md``, the golden model in :mod:`sw.recurrent`).

The gate matrices run on the dense engines' PE-slot datapaths (:func:`hw.network.engine.dot_datapath`), one for
``w`` over ``x_t`` and one for ``u`` over ``h_{t-1}``, each in its own scheme and folded by the layer's folding;
their accumulators (not requantised) land in two memories of ``G*H`` rows, and the element-wise unit walks the
hidden units::

    x_t --> [w datapath] --ax--> AX memory --+
                                              +--> element-wise unit --h_t--> o (the next engine)
    h_{t-1} --> [u datapath] --ah--> AH memory +     (gate codes, sigmoid/tanh ROMs,
          ^                                         cell / hidden state memory)
          +----------------------- h_t ------------+

Per hidden unit ``j`` the element-wise unit reads row ``q*H + j`` of both memories for every gate ``q``, one gate
per cycle, requantises (``t = ax*Mx + ah*Mh + Bx + Bh``, rounded by the layer's mode, clipped to the table codes),
reads the table, and then updates the state: LSTM ``c = clip(mul(f, c, P) + mul(i, g, 2P - C))``, ``h =
clip(mul(o, Th[zc], 2P - Q))``; GRU ``h = clip(mul(2^P - z, n, 2P - Q) + mul(z, h, P))``. It gives ``h_j`` to the
``u`` datapath's input buffer (for the next step) and to the next engine (every step with ``return_sequences``,
else the last). One sequence is in flight: the recurrence makes a step wait for the previous one's ``h``, so a
sample takes ``T`` steps of :meth:`RecurrentEngine.step_cycles` (``tests/test_rnn_hw.py`` measures it).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory
from amaranth.utils import ceil_log2

from ...sw.intops import signed_bits_for
from ...sw.weights import SCHEMES

from ..common import equals
from .components import DestOffset, rom, value_shape
from .cost import pieces
from .engine import EngineUnit, dot_datapath
from .engines import ENGINES, EngineSpec, engine_for
from .folding import LayerFolding
from .plan import EnginePlan

__all__ = ["GateView", "RecurrentEngine", "RecurrentUnit", "round_shift", "clip"]


class GateView:
    """One gate matrix of a recurrent layer (``role`` ``"w"`` or ``"u"``) seen as a dense layer without a
    requantiser: the dense engines plan and fill their slots from it."""

    kind = "dense"
    multiplier = None            # no requantiser of its own: the element-wise unit requantises

    def __init__(self, layer, role: str):
        self.weights = layer.w if role == "w" else layer.u
        self.role = role
        self.scheme = self.weights.scheme
        self.in_features = self.weights.in_features
        self.out_features = self.weights.out_features
        self.in_bits, self.in_signed = (layer.in_bits, layer.in_signed) if role == "w" else (layer.out_bits, True)
        self.in_shape, self.out_shape = (self.in_features,), (self.out_features,)


def round_shift(total, shift: int, rounding: str):
    """``total / 2^shift`` rounded by ``rounding`` (:mod:`sw.requant`'s three formulas, arithmetic shifts)."""
    if rounding == "half_up":
        return (total + (1 << (shift - 1))) >> shift
    if rounding == "half_even":
        return (total + ((1 << (shift - 1)) - 1) + total[shift]) >> shift
    if rounding == "floor":
        return total >> shift
    raise ValueError(f"Layer rounding must be one of 'half_up', 'half_even', 'floor', not {rounding!r}")


def clip(value, lo: int, hi: int):
    """``min(max(value, lo), hi)``."""
    return Mux(value < lo, lo, Mux(value > hi, hi, value))


def _mul(a, b, s: int):
    """:func:`sw.recurrent.mul`: ``(a*b + 2^(s-1)) >> s``, exact for ``s = 0``."""
    return a * b if s == 0 else (a * b + (1 << (s - 1))) >> s


class RecurrentEngine(EngineSpec):
    """``lstm`` and ``gru`` layers of any schemes: the folding (``lanes x pes``) applies to both gate matrices;
    the layer must be the network's first (its input streams in time order)."""

    impl = "folded"
    first_only = True

    def __init__(self, kind: str):
        self.kind = kind
        self.schemes = tuple(SCHEMES)

    @staticmethod
    def _parts(layer, folding: LayerFolding) -> tuple[EnginePlan, EnginePlan]:
        views = GateView(layer, "w"), GateView(layer, "u")
        folding = folding.replace(requant=1)      # no requantiser of their own: results go to memories
        return tuple(engine_for(v).plan(v, folding) for v in views)

    def plan(self, layer, folding):
        xplan, hplan = self._parts(layer, folding)
        # the folding as given: each matrix clips it to its own shape (a plan's folding plans it again)
        return EnginePlan(layer, folding, xplan.lanes, xplan.beats, 1, 1, (), 1, self, parts=(xplan, hplan))

    def candidates(self, layer):
        out = []
        views = GateView(layer, "w"), GateView(layer, "u")
        offered = [LayerFolding()] + [f for v in views for f in engine_for(v).candidates(v)]
        for f in dict.fromkeys(offered):       # those of either matrix that both can take, once each
            try:
                self._parts(layer, f)
            except ValueError:
                continue
            out.append(f)
        return out

    def weight_fields(self, slot):
        return []

    def weight_words(self, plan, slot):
        return []

    def multipliers(self, plan):
        return sum(p.multipliers for p in plan.parts)

    def macs(self, plan):
        return plan.network_layer.seq_len * sum(p.macs for p in plan.parts)

    def acc_shape(self, plan):
        return plan.parts[0].acc_shape

    def extra_dsps(self, plan, dsp_bits: int) -> int:
        """DSPs of the element-wise unit's products: ``ax * Mx``, ``ah * Mh``; the LSTM's ``f * c``, ``i * g``,
        ``c * M_cell`` and ``o * tanh``; the GRU's ``r * hn``, ``(1 - z) * n`` and ``z * h``."""
        layer = plan.network_layer
        entry = _entry_layout(layer)
        gate = layer.tables.frac + 2
        total = (pieces(plan.parts[0].acc_shape.width, entry["mx"].shape.width + 1, dsp_bits) +
                 pieces(plan.parts[1].acc_shape.width, entry["mh"].shape.width + 1, dsp_bits))
        if layer.kind == "lstm":
            cell = layer.cell.bits
            total += (pieces(gate, cell, dsp_bits) + pieces(gate, gate, dsp_bits) * 2 +
                      pieces(cell, layer.cell.multiplier.bit_length() + 1, dsp_bits))
        else:
            total += pieces(gate, gate, dsp_bits) * 2 + pieces(gate, layer.out_bits, dsp_bits)
        return total

    # -- timing ------------------------------------------------------------------------------------------------
    @staticmethod
    def step_cycles(layer) -> int:
        """Cycles of the element-wise unit per step without stalls: a gate per cycle (``G * H``), then its
        pipeline's depth to the last ``h`` (LSTM 5, GRU 3)."""
        return len(layer.gates) * layer.hidden + (5 if layer.kind == "lstm" else 3)

    @staticmethod
    def u_cycles(hplan) -> int:
        """Cycles a step waits for ``u h_{t-1}``: from the transfer of the last ``h`` into the ``u`` buffer to the
        element-wise unit's start. The sequencer issues row group ``g``'s last beat ``(g + 1) * beats * interval -
        1`` cycles after its first; the collector drains a group (:attr:`EnginePlan.group_drains`) once its results
        are in and the previous group is drained (the last group up to its last real result); then the slots' latency and 3 cycles of hand-over (the buffer's
        full flag, the sequencer's stage, the accumulator memory's full flag). Measured: tests/test_rnn_hw.py."""
        drains = list(hplan.group_drains)
        # the last group counts to its last real result (the item's last: padding after it does not delay it)
        final = [r for slot in hplan.slots for r in slot.rows[-1]]
        drains[-1] = max(e for e, r in enumerate(final) if r >= 0) + 1
        done = 0
        for g, drain in enumerate(drains):
            done = max((g + 1) * hplan.beats * hplan.interval - 1, done) + drain
        return done + max(s.params.latency for s in hplan.slots) + 3

    def compute_cycles(self, plan) -> int:
        """Beats both datapaths issue per sample (``T`` vectors of ``x``, ``T - 1`` of ``h``), times their
        interval."""
        x, h = plan.parts
        t = plan.network_layer.seq_len
        return t * x.compute_cycles + (t - 1) * h.compute_cycles

    def drain_cycles(self, plan) -> int:
        """Cycles both collectors take per sample to hand over their accumulators."""
        x, h = plan.parts
        t = plan.network_layer.seq_len
        return t * x.drain_cycles + (t - 1) * h.drain_cycles

    def work_cycles(self, plan):
        """The recurrence of one sample: ``T`` steps of the element-wise unit (:meth:`step_cycles`), ``T - 1``
        waits for ``u h`` (:meth:`u_cycles`), and a cycle between samples."""
        layer = plan.network_layer
        t = layer.seq_len
        return t * self.step_cycles(layer) + 1 + (t - 1) * self.u_cycles(plan.parts[1])

    def cycles(self, plan):
        """Cycles per sample: the recurrence, or the ``w`` datapath's ``T`` vectors (two steps ahead at most),
        whichever is slower."""
        return max(plan.network_layer.seq_len * plan.parts[0].cycles, self.work_cycles(plan))

    # -- ports -------------------------------------------------------------------------------------------------
    def input_words(self, plan):
        return 1, 1, None        # the unit addresses its input itself: elements in time order

    def input_address(self, plan, channel, position, positions):
        return 0, 0

    def buffer(self, plan):
        return plan.parts[0].engine.buffer(plan.parts[0])

    def memories(self, plan) -> list[tuple[int, int]]:
        """``(depth, width)`` of the element-wise unit's memories: the accumulators of both matrices, the
        requantisation table, the two activation ROMs and the state (:mod:`hw.network.cost` places them)."""
        layer = plan.network_layer
        rows = layer.w.out_features
        entry = _entry_layout(layer)
        depth = 1 << layer.tables.bits
        state = layer.cell.bits if layer.kind == "lstm" else layer.out_bits
        return [(rows, plan.parts[0].acc_shape.width), (rows, plan.parts[1].acc_shape.width), (rows, entry.size),
                (depth, layer.tables.frac + 1), (depth, layer.tables.frac + 2), (layer.hidden, state)]

    def component(self, plan, dest):
        return RecurrentUnit(plan, dest)


def _entry_layout(layer) -> data.StructLayout:
    """One row of the requantisation table: ``Mx``, ``Mh``, ``Bx``, ``Bh``."""
    def m_bits(a):
        return max(1, int(a.max()).bit_length())

    def b_bits(a):
        return signed_bits_for(int(a.min()), int(a.max()))

    return data.StructLayout({"mx": unsigned(m_bits(layer.multiplier_x)), "mh": unsigned(m_bits(layer.multiplier_h)),
                              "bx": signed(b_bits(layer.offset_x)), "bh": signed(b_bits(layer.offset_h))})


class RecurrentUnit(EngineUnit):
    """A recurrent layer on hardware (see the module docstring). Ports as :class:`hw.network.engine.Engine`'s,
    except that ``i`` takes the input in time order (``word`` and ``lane`` are not read)."""

    def elaborate(self, platform):
        m = Module()
        plan = self._plan
        layer = plan.network_layer
        xplan, hplan = plan.parts
        gates, hidden, steps = len(layer.gates), layer.hidden, layer.seq_len
        rows = gates * hidden
        lstm = layer.kind == "lstm"
        p_frac = layer.tables.frac
        lo, hi = layer.tables.code_range
        h_shape = value_shape(layer.out_bits, True)

        xbuf, xcol = dot_datapath(m, xplan, self._in_shape, "x_")
        hbuf, hcol = dot_datapath(m, hplan, h_shape, "h_")

        # the input, in time order: element f of x_t to word f // lanes, lane f % lanes of the x buffer
        f_count = Signal(range(max(layer.in_features, 2)))
        f_word = Signal(range(max(xplan.beats, 2)))
        f_lane = Signal(range(max(xplan.lanes, 2)))
        m.d.comb += [xbuf.i.valid.eq(self.i.valid), self.i.ready.eq(xbuf.i.ready),
                     xbuf.i.payload.x.eq(self.i.payload.x), xbuf.i.payload.word.eq(f_word),
                     xbuf.i.payload.lane.eq(f_lane)]
        with m.If(self.i.valid & self.i.ready):
            with m.If(equals(f_count, layer.in_features - 1)):
                m.d.sync += [f_count.eq(0), f_word.eq(0), f_lane.eq(0)]
            with m.Else():
                m.d.sync += f_count.eq(f_count + 1)
                with m.If(equals(f_lane, xplan.lanes - 1)):
                    m.d.sync += [f_lane.eq(0), f_word.eq(f_word + 1)]
                with m.Else():
                    m.d.sync += f_lane.eq(f_lane + 1)

        # the accumulators of a step, by row, in banks (ax: two, so that the w datapath computes the next step's
        # while the unit reads this one's; ah: one, as the u datapath waits for h): a bank is full once the item's
        # last result is in, free when its step is done
        step_done = Signal()
        reads = []
        for name, col, shape, banks in (("ax", xcol, xplan.acc_shape, 2), ("ah", hcol, hplan.acc_shape, 1)):
            m.submodules[f"{name}_mem"] = mem = Memory(shape=shape, depth=max(banks * rows, 2), init=[])
            wp, rp = mem.write_port(), mem.read_port()
            full = Signal(banks, name=f"{name}_full")
            wbank, rbank = Signal(name=f"{name}_wbank"), Signal(name=f"{name}_rbank")
            writing = Mux(wbank, full[-1], full[0])
            accepted = col.o.valid & ~writing
            m.d.comb += [col.o.ready.eq(~writing), wp.addr.eq(col.o.payload.row + Mux(wbank, rows, 0)),
                         wp.data.eq(col.o.payload.acc), wp.en.eq(accepted)]
            done = accepted & col.o.payload.last
            for b in range(banks):
                with m.If(done & (wbank == b)):
                    m.d.sync += full[b].eq(1)
                with m.Elif(step_done & (rbank == b)):
                    m.d.sync += full[b].eq(0)
            if banks > 1:
                with m.If(done):
                    m.d.sync += wbank.eq(~wbank)
                with m.If(step_done):
                    m.d.sync += rbank.eq(~rbank)
            reads.append((rp, Mux(rbank, full[-1], full[0]), Mux(rbank, rows, 0)))
        (ax_rd, ax_full, ax_base), (ah_rd, ah_full, _) = reads

        entry = _entry_layout(layer)
        m.submodules.params = params = rom(entry.size, [
            entry.const({"mx": int(a), "mh": int(b), "bx": int(c), "bh": int(d)}).as_value().value
            for a, b, c, d in zip(layer.multiplier_x, layer.multiplier_h, layer.offset_x, layer.offset_h)])
        par_rd = params.read_port()
        m.submodules.sigmoid = sig_mem = Memory(shape=unsigned(p_frac + 1), depth=len(layer.tables.sigmoid),
                                                init=[int(v) for v in layer.tables.sigmoid])
        m.submodules.tanh = tanh_mem = Memory(shape=signed(p_frac + 2), depth=len(layer.tables.tanh),
                                              init=[int(v) for v in layer.tables.tanh])
        sig_rd, tanh_rd = sig_mem.read_port(), tanh_mem.read_port()
        state_shape = signed(layer.cell.bits) if lstm else h_shape
        m.submodules.state = state_mem = Memory(shape=state_shape, depth=max(hidden, 2), init=[])
        st_wr, st_rd = state_mem.write_port(), state_mem.read_port(domain="comb")

        # the element-wise unit, a pipeline that every stage advances together (`en`: the output register is
        # free or being emptied): issue (gate q of unit j: row q*H + j of the memories) -> S1 (requantise: the
        # table code) -> S2 (the table's value: a gate; after a unit's last gate, the GRU's h_t, the LSTM's c_t)
        # -> LSTM: S3 (c_t's code) -> S4 (h_t); every stage a cycle, a gate per cycle, the units overlapped
        en = Signal()
        t = Signal(range(max(steps, 2)))
        first = Signal()
        m.d.comb += first.eq(equals(t, 0))
        last_step = equals(t, steps - 1)
        busy = Signal()
        issuing = Signal()
        q_i = Signal(range(max(gates, 2)))
        j_i = Signal(range(max(hidden, 2)))
        row_i = Signal(range(max(rows, 2)))          # q_i * H + j_i
        with m.If(~busy & ax_full & (ah_full | first)):
            m.d.sync += [busy.eq(1), issuing.eq(1), q_i.eq(0), j_i.eq(0), row_i.eq(0)]
        with m.If(issuing & en):
            with m.If(equals(q_i, gates - 1)):
                m.d.sync += [q_i.eq(0), j_i.eq(j_i + 1), row_i.eq(j_i + 1)]
                with m.If(equals(j_i, hidden - 1)):
                    m.d.sync += issuing.eq(0)
            with m.Else():
                m.d.sync += [q_i.eq(q_i + 1), row_i.eq(row_i + hidden)]
        m.d.comb += [ax_rd.addr.eq(row_i + ax_base), ah_rd.addr.eq(row_i), par_rd.addr.eq(row_i)]
        for rp in (ax_rd, ah_rd, par_rd, sig_rd, tanh_rd):
            m.d.comb += rp.en.eq(en)

        def stage(name, valid, fields):
            """Registers of the next stage, loaded from ``fields`` (name -> value) when the pipeline advances."""
            regs = {"v": Signal(name=f"{name}_v")}
            regs.update({k: Signal.like(v, name=f"{name}_{k}") if isinstance(v, Signal) else
                         Signal(v.shape(), name=f"{name}_{k}") for k, v in fields.items()})
            with m.If(en):
                m.d.sync += [regs["v"].eq(valid)] + [regs[k].eq(v) for k, v in fields.items()]
            return regs

        s1 = stage("s1", issuing, {"q": q_i, "j": j_i})

        # S1: the gate's requantisation from the memories' data (the GRU's n gate: x and h apart)
        e = entry(par_rd.data)
        ah = Mux(first, 0, ah_rd.data)
        px, ph = ax_rd.data * e.mx, ah * e.mh
        shift, rounding = layer.shift, layer.rounding
        code = Signal(signed(signed_bits_for(lo, hi)))
        m.d.comb += code.eq(clip(round_shift(px + ph + e.bx + e.bh, shift, rounding), lo, hi))
        gate = [Signal(signed(p_frac + 2), name=f"gate_{g}") for g in layer.gates]
        if not lstm:
            zx = round_shift(px + e.bx, shift, rounding)
            hn = clip(round_shift(ph + e.bh, shift, rounding), lo, hi)
            with m.If(equals(s1["q"], 2)):
                m.d.comb += code.eq(clip(zx + _mul(gate[0], hn, p_frac), lo, hi))
        m.d.comb += [sig_rd.addr.eq(code - lo), tanh_rd.addr.eq(code - lo)]
        s2 = stage("s2", s1["v"], {"q": s1["q"], "j": s1["j"]})

        # S2: the table's value; a unit's earlier gates wait in `gate` (the next unit's first gate comes G - 1
        # cycles after its last, G >= 3)
        value = Mux(equals(s2["q"], 2), tanh_rd.data, sig_rd.data)     # gate 2, g or n: the tanh table
        with m.If(en & s2["v"]):
            for q in range(gates - 1):
                with m.If(equals(s2["q"], q)):
                    m.d.sync += gate[q].eq(value)
        final = Signal()                         # a unit's last gate is in S2
        m.d.comb += [final.eq(s2["v"] & equals(s2["q"], gates - 1)), st_rd.addr.eq(s2["j"]), st_wr.addr.eq(s2["j"])]
        prev = Mux(first, 0, st_rd.data)
        o_lo, o_hi = layer.out_range
        out = Signal(h_shape)                   # h_t of the unit in the last stage
        out_valid = Signal()
        out_j = Signal(range(max(hidden, 2)))
        if lstm:
            cell = layer.cell
            i_, f_, g_ = gate[:3]
            c_new = Signal(state_shape)
            m.d.comb += c_new.eq(clip(_mul(f_, prev, p_frac) + _mul(i_, g_, 2 * p_frac - cell.frac), *cell.range))
            m.d.comb += [st_wr.data.eq(c_new), st_wr.en.eq(en & final)]
            s3 = stage("s3", final, {"c": c_new, "o": sig_rd.data, "j": s2["j"]})
            # S3: c_t's table code, to the tanh table's second port
            m.submodules.tanh_c = tanh_c = Memory(shape=signed(p_frac + 2), depth=len(layer.tables.tanh),
                                                  init=[int(v) for v in layer.tables.tanh])
            tc_rd = tanh_c.read_port()
            zc = clip(round_shift(s3["c"] * cell.multiplier, cell.shift, rounding), lo, hi)
            m.d.comb += [tc_rd.addr.eq(zc - lo), tc_rd.en.eq(en)]
            s4 = stage("s4", s3["v"], {"o": s3["o"], "j": s3["j"]})
            # S4: h_t
            m.d.comb += [out.eq(clip(_mul(s4["o"], tc_rd.data, 2 * p_frac - layer.out_frac), o_lo, o_hi)),
                         out_valid.eq(s4["v"]), out_j.eq(s4["j"])]
        else:
            z_ = gate[1]
            m.d.comb += out.eq(clip(_mul((1 << p_frac) - z_, tanh_rd.data, 2 * p_frac - layer.out_frac) +
                                    _mul(z_, prev, p_frac), o_lo, o_hi))
            m.d.comb += [out_valid.eq(final), out_j.eq(s2["j"]), st_wr.data.eq(out), st_wr.en.eq(en & final)]

        # the output register: h_j to the u buffer for the next step and to the next engine (every step with
        # return_sequences, else the last one); the pipeline holds while it waits for either
        dest = self._dest
        u_word = Signal(range(max(hplan.beats, 2)))
        u_lane = Signal(range(max(hplan.lanes, 2)))
        pend_u, pend_o, out_last = Signal(), Signal(), Signal()
        h_reg = Signal(h_shape)
        m.d.comb += [hbuf.i.valid.eq(pend_u), hbuf.i.payload.x.eq(h_reg)]
        outputs = plan.rows
        r_out = Signal(range(max(outputs, 2)))        # the next output's row (of the flattened output)
        word_w, lane_w = self.o.payload.word.shape().width, self.o.payload.lane.shape().width
        m.submodules.dest = dest_rom = rom(word_w + lane_w, [w | l << word_w for w, l in dest.table])
        dest_rd = dest_rom.read_port(domain="comb")
        m.d.comb += dest_rd.addr.eq(r_out)
        offset = DestOffset(dest)
        d_word, d_lane = offset.add(dest_rd.data[:word_w], dest_rd.data[word_w:])
        hb_word, hb_lane = Signal.like(u_word), Signal.like(u_lane)
        m.d.comb += [hbuf.i.payload.word.eq(hb_word), hbuf.i.payload.lane.eq(hb_lane)]
        took_u = pend_u & hbuf.i.ready
        took_o = pend_o & self.o.ready
        occupied = pend_u | pend_o
        emptied = Signal()
        m.d.comb += [emptied.eq(occupied & (~pend_u | took_u) & (~pend_o | took_o)), en.eq(~occupied | emptied)]
        with m.If(took_u):
            m.d.sync += pend_u.eq(0)
        with m.If(took_o):
            m.d.sync += pend_o.eq(0)
        send_o = layer.return_sequences | last_step
        with m.If(en & out_valid):
            m.d.sync += [h_reg.eq(out), pend_u.eq(~last_step), pend_o.eq(send_o), out_last.eq(equals(out_j, hidden - 1)),
                         hb_word.eq(u_word), hb_lane.eq(u_lane),
                         self.o.payload.x.eq(out), self.o.payload.word.eq(d_word), self.o.payload.lane.eq(d_lane)]
            with m.If(~last_step):
                with m.If(equals(u_lane, hplan.lanes - 1) | equals(out_j, hidden - 1)):
                    m.d.sync += [u_lane.eq(0), u_word.eq(Mux(equals(out_j, hidden - 1), 0, u_word + 1))]
                with m.Else():
                    m.d.sync += u_lane.eq(u_lane + 1)
            with m.If(send_o):
                m.d.sync += r_out.eq(Mux(equals(r_out, outputs - 1), 0, r_out + 1))
        m.d.comb += self.o.valid.eq(pend_o)
        offset.advance(m, en & out_valid & send_o & equals(r_out, outputs - 1))
        with m.If(step_done):
            m.d.sync += [busy.eq(0), t.eq(Mux(last_step, 0, t + 1))]
        m.d.comb += step_done.eq(emptied & out_last)
        return m


ENGINES.update({(kind, scheme, "folded"): RecurrentEngine(kind) for kind in ("lstm", "gru") for scheme in SCHEMES})
