"""da4ml as a bench anchor: a peforge integer network fully unrolled with constant weights.

`da4ml <https://pypi.org/project/da4ml/>`_ (distributed arithmetic for machine learning; a bench-only
dependency) turns a constant matrix-vector product into a shared adder graph and writes it as pipelined
Verilog. :func:`da4ml_network` traces a :class:`sw.network.Network` through da4ml's numpy API, layer by
layer, with exactly the network's integer arithmetic::

    x_0 = input                                   da4ml fixed-point variables: input.bits, signed or not
    for every layer l:
        acc_l = x_l @ W_l.T                       W_l the dense integer weights of the layer (dense_weights)
        x_l+1[j] = clip(floor((acc_l[j] * m[j] + c[j]) / 2^s[j]), lo_l, hi_l)

where ``(m, c, s)`` (:func:`floor_requant`) are the smallest-shift integers for which that line equals the
layer's own requantisation (:mod:`sw.requant`: ``requantize(acc, M, S, B, rounding)`` then the clip) for
*every* accumulator the layer's inputs can produce; for ``half_up`` and ``floor`` the layer's
``(M, B + 2^(S-1) or B, S)`` is one solution, so a smaller one always exists or that one is used. A 31-bit
``M`` would cost every output a 31-bit constant multiplier in adders; the reduced one gives the same integers
with a few bits (the search and its check are exhaustive over the accumulator range, so the result is exact,
not approximate). ``half_even`` layers work when ties never occur in the range (otherwise no floor of a
linear function equals them, and the layer is refused).

Only schemes with a dense integer matrix are traced: ``fixed``, ``sp2`` and ``msq`` (SP2 codes decoded by
:meth:`sw.sp2.SP2Format.decode`) and ``nm`` (:meth:`sw.network.NMWeights.dense`). A ``circulant`` layer
(its FFT rounds) and a ``crossbar`` layer (its ADC clips column sums) are not matrix products of their
weights and are refused.

:meth:`Da4mlDesign.evaluate` runs da4ml's own Python evaluation of the traced graph (and of the pipeline
the Verilog is generated from); the bench compares it with :meth:`sw.network.Network.golden`.
:class:`Da4mlNetwork` wraps the generated top in an Amaranth component (flat ports ``x`` and ``y``) so that
:func:`synth.synthesize` builds it in the project's pin wrapper like every other design
(:func:`synthesize_da4ml`).

>>> design = da4ml_network(network, name="d4_digits", out_dir="build/da4ml/digits")  # doctest: +SKIP
>>> bool((design.evaluate(x) == network.golden(x)).all()), design.cost, design.latency_cycles  # doctest: +SKIP
(True, 32810.5, 10)
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from amaranth.hdl import ClockSignal, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from peforge.sw.intops import as_int_array
from peforge.sw.network import Layer, Network
from peforge.sw.params import check_bool
from peforge.sw.requant import requantize

__all__ = ["DENSE_SCHEMES", "LATENCY_CUTOFF", "ROUTER", "dense_weights", "acc_bounds", "floor_requant", "Da4mlDesign",
           "da4ml_network", "Da4mlNetwork", "synthesize_da4ml"]

#: Schemes whose layers are a dense integer matrix product (the others are refused).
DENSE_SCHEMES = ("fixed", "sp2", "msq", "nm")
#: da4ml adder levels per pipeline stage (``VerilogModel(latency_cutoff=...)``); <= 0: combinational.
LATENCY_CUTOFF = 5
#: nextpnr router for da4ml netlists (router1 stalls on them, /work/shared/TOOLCHAIN.md).
ROUTER = "router2"
#: Most accumulator values per output that :func:`floor_requant` evaluates (above: the layer's own formula).
MAX_ACC_VALUES = 1 << 22
#: Intermediate products in the search stay below this (int64 with headroom).
_INT_LIMIT = 1 << 62
#: da4ml evaluates its graph in float64: every value must be an integer of at most 53 bits in its LSBs.
_FLOAT_EXACT = 1 << 53


# -- the integer network as a dense product and a floor requantisation ---------------------------------------

def dense_weights(layer: Layer, index: int = 0) -> np.ndarray:
    """int64 ``[out, in]``: the layer's weights as one dense integer matrix, ``acc = x @ W.T``.

    ``fixed``: the weights; ``sp2``: the decoded codes; ``msq``: decoded SP2 rows and fixed-point rows;
    ``nm``: :meth:`sw.network.NMWeights.dense`.

    Raises
    ------
    ValueError
        ``"layers[1].scheme must be one of 'fixed', 'sp2', 'msq', 'nm' to trace through da4ml (a dense
        integer matrix), not 'circulant'"``.
    """
    w = layer.weights
    if w.scheme == "fixed":
        return np.asarray(w.weights, np.int64)
    if w.scheme == "sp2":
        return np.asarray(w.fmt.decode(w.codes), np.int64)
    if w.scheme == "msq":
        return np.where(w.is_sp2[:, None], w.sp2_fmt.decode(w.codes), w.fixed).astype(np.int64)
    if w.scheme == "nm":
        return np.asarray(w.dense(), np.int64)
    allowed = ", ".join(map(repr, DENSE_SCHEMES))
    raise ValueError(f"layers[{index}].scheme must be one of {allowed} to trace through da4ml (a dense integer "
                     f"matrix), not {w.scheme!r}")


def acc_bounds(w: np.ndarray, x_lo: np.ndarray, x_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-output ``[min, max]`` of ``x @ w.T`` over the box ``x_lo <= x <= x_hi``."""
    a, b = w * x_lo[None, :], w * x_hi[None, :]
    return np.minimum(a, b).sum(axis=1), np.maximum(a, b).sum(axis=1)


def _csd_digits(m: int) -> int:
    """Non-zero digits of ``m`` in canonical signed digits (the adders of a constant multiplier, plus one)."""
    return bin(m ^ (3 * m)).count("1") // 2 if m else 0


def _pick_addend(lo_c: int, hi_c: int) -> int:
    """The integer of ``[lo_c, hi_c]`` with the most trailing zero bits (0 when it is inside)."""
    for p in range(62, -1, -1):
        c = -(-lo_c >> p) << p  # ceil(lo_c / 2^p) * 2^p
        if c <= hi_c:
            return c
    return lo_c


def _fit_output(acc: np.ndarray, f: np.ndarray, lo: int, hi: int, ratio: float, max_shift: int
                ) -> tuple[int, int, int] | None:
    """``(m, c, s)`` with the smallest ``s <= max_shift`` such that ``clip(floor((acc m + c) / 2^s), lo, hi) == f``
    on every ``acc`` (consecutive integers, ``f`` non-decreasing), ``m`` near ``ratio 2^s``; None if none is
    found. The constraints are the first and last accumulator of each run of equal ``f``."""
    if lo == hi or f[0] == f[-1]:
        return 0, int(f[0]), 0
    edges = np.flatnonzero(np.diff(f)) + 1
    first, last = acc[np.r_[0, edges]], acc[np.r_[edges - 1, len(f) - 1]]
    vals = f[np.r_[0, edges]]
    low, up = vals > lo, vals < hi    # runs that bound c from below (g >= v) and from above (g < v + 1)
    top = int(max(np.abs(acc[[0, -1]]).max(), 1))
    for s in range(max_shift + 1):
        step = 1 << s
        base = math.floor(ratio * step)
        if (int(np.abs(vals).max()) + 1) * step >= _INT_LIMIT or top * (base + 2) >= _INT_LIMIT:
            return None
        for m in sorted({max(base + d, 0) for d in (0, 1, -1, 2)}, key=lambda m: (_csd_digits(m), m)):
            lo_c = int((vals[low] * step - first[low] * m).max()) if low.any() else None
            hi_c = int(((vals[up] + 1) * step - 1 - last[up] * m).min()) if up.any() else None
            lo_c = hi_c - step + 1 if lo_c is None else lo_c
            hi_c = lo_c + step - 1 if hi_c is None else hi_c
            if lo_c <= hi_c:
                return m, _pick_addend(lo_c, hi_c), s
    return None


def floor_requant(layer: Layer, acc_lo: Any, acc_hi: Any, *, minimal: bool = True, index: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer ``(m, c, s)`` per output with ``clip(floor((acc m + c) / 2^s), lo, hi)`` equal to
    ``layer.requant(acc)`` for every integer ``acc_lo[j] <= acc[j] <= acc_hi[j]`` (``[lo, hi]`` the layer's
    :attr:`~sw.network.Layer.out_range`).

    With ``minimal`` each output gets the smallest shift ``s`` (and a multiplier ``m`` with few CSD digits)
    for which the equality holds, found and then checked on every accumulator of the range (at most
    :data:`MAX_ACC_VALUES` per output; wider ranges use the layer's own formula). Without, or when the
    range is wider: ``(M, B + 2^(S-1), S)`` for ``half_up``, ``(M, B, S)`` for ``floor``.

    Raises
    ------
    ValueError
        ``"layers[0] rounding must be half_up or floor when no floor formula is found or searched, not
        'half_even' (output 3)"`` (a tie in the range, or a range wider than :data:`MAX_ACC_VALUES`).
    """
    check_bool("Minimal", minimal)
    acc_lo, acc_hi = (np.asarray(a, np.int64).reshape(layer.out_features) for a in (acc_lo, acc_hi))
    lo, hi = layer.out_range
    shift, rounding = layer.shift, layer.rounding
    mult, add, shifts = (np.zeros(layer.out_features, np.int64) for _ in range(3))
    for j in range(layer.out_features):
        m_j, b_j = int(layer.multiplier[j]), int(layer.offset[j])
        found = None
        if minimal and acc_hi[j] - acc_lo[j] < MAX_ACC_VALUES:
            acc = np.arange(acc_lo[j], acc_hi[j] + 1, dtype=np.int64)
            f = np.clip(requantize(acc, m_j, shift, b_j, rounding=rounding), lo, hi)
            found = _fit_output(acc, f, lo, hi, m_j / 2.0 ** shift, shift + 1)
            if found is not None:
                m, c, s = found
                g = np.clip((acc * m + c) >> s, lo, hi)
                if not np.array_equal(g, f):  # the constraints make this impossible; never trust silently
                    raise RuntimeError(f"floor_requant found an inexact formula for layers[{index}] output {j}")
        if found is None:
            if rounding not in ("half_up", "floor"):
                raise ValueError(f"layers[{index}] rounding must be half_up or floor when no floor formula is found "
                                 f"or searched, not {rounding!r} (output {j})")
            found = m_j, b_j + ((1 << (shift - 1)) if rounding == "half_up" else 0), shift
        mult[j], add[j], shifts[j] = found
    return mult, add, shifts


# -- the design ------------------------------------------------------------------------------------------------

def _kifs(qints) -> tuple[int, int, int]:
    """``(max k, max i, max f)`` of da4ml intervals (the field layout of its ``_wrapper`` module)."""
    from da4ml.types import minimal_kif

    kifs = np.array([tuple(minimal_kif(q)) for q in qints], np.int64).reshape(-1, 3)
    return tuple(int(v) for v in kifs.max(axis=0))


@dataclasses.dataclass(frozen=True, eq=False)
class Da4mlDesign:
    """A network traced by da4ml and written as Verilog (:func:`da4ml_network`).

    Members
    -------
    name : str
        da4ml's project name: ``src/<name>.v`` is its top; :attr:`top` (``<name>_wrapper``) is the module
        :class:`Da4mlNetwork` instantiates: ports ``clk`` (when :attr:`clocked`), ``model_inp`` and
        ``model_out``, one field per feature of :attr:`in_field_bits` / :attr:`out_field_bits` bits, feature
        ``j`` at bits ``[j w, (j + 1) w)``.
    out_dir : Path
        Everything da4ml wrote (``src/``, ``model/``, ``metadata.json``).
    sources : tuple of Path
        The Verilog files yosys reads (``src/static/lookup_table.v`` left out: this design has no tables
        and its default memory file does not exist).
    network : sw.network.Network
    latency_cutoff : float
        The cutoff asked for (<= 0: combinational); :attr:`metadata` holds da4ml's actual one.
    in_field_bits, out_field_bits : int
        Width of a feature's field of ``model_inp`` (the input bits) and of an output's field of
        ``model_out`` (the widest output's range; da4ml narrows it from the logit bits).
    out_field_signed : bool
        Whether ``model_out`` fields are two's complement (some output can be negative).
    stages : int
        Pipeline stages (0: combinational).
    cost : float
        da4ml's estimated LUTs of the adder graph.
    reg_bits : int or None
        da4ml's count of pipeline register bits (None when combinational).
    requant : tuple of (m, c, s) arrays
        Each layer's :func:`floor_requant`.
    trace_seconds, write_seconds : float
        Wall time of tracing (CMVM solving included) and of writing the Verilog.
    metadata : dict
        da4ml's ``metadata.json``.
    """

    name: str
    out_dir: Path
    sources: tuple[Path, ...]
    network: Network
    latency_cutoff: float
    in_field_bits: int
    out_field_bits: int
    out_field_signed: bool
    stages: int
    cost: float
    reg_bits: int | None
    requant: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]
    trace_seconds: float
    write_seconds: float
    metadata: dict
    logic: Any = dataclasses.field(repr=False)      # da4ml CombLogic of the whole network
    pipeline: Any = dataclasses.field(repr=False)   # da4ml Pipeline the Verilog comes from (None: combinational)

    @property
    def top(self) -> str:
        return f"{self.name}_wrapper"

    @property
    def clocked(self) -> bool:
        return self.pipeline is not None

    @property
    def latency_cycles(self) -> int:
        """Clock edges from ``model_inp`` to ``model_out``: a register in front of every stage and one on the
        output (0 when combinational)."""
        return self.stages + 1 if self.clocked else 0

    @property
    def in_port_bits(self) -> int:
        return self.network.in_features * self.in_field_bits

    @property
    def out_port_bits(self) -> int:
        return self.network.out_features * self.out_field_bits

    @property
    def digest(self) -> str:
        """Names this build: the network's digest, the cutoff, the requantisation and da4ml's version."""
        h = hashlib.sha256(f"{self.network.digest()} {self.latency_cutoff} "
                           f"{importlib.metadata.version('da4ml')}".encode())
        for arrays in self.requant:
            for a in arrays:
                h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:12]

    def evaluate(self, x: Any, *, pipeline: bool = True) -> np.ndarray:
        """int64 ``[N, out]``: da4ml's own Python evaluation of the traced graph on network inputs ``x``
        (of the pipeline the Verilog comes from, when clocked and ``pipeline``).

        Raises
        ------
        ValueError
            The network's input errors; ``"da4ml values must fit float64 exactly (53 bits), not 2^60.0 at
            op 12"`` (da4ml evaluates in float64).
        """
        check_bool("Pipeline", pipeline)
        arr = as_int_array("Network input", x, *self.network.input.range)
        if arr.ndim != 2 or arr.shape[1] != self.network.in_features:
            raise ValueError(f"Network input must have shape (N, {self.network.in_features}), not {arr.shape}")
        graphs = self.pipeline.solutions if self.clocked and pipeline else (self.logic,)
        for graph in graphs:
            for i, op in enumerate(graph.ops):
                q = op.qint
                top = max(abs(q.min), abs(q.max)) / q.step if q.step > 0 else 0.0
                if top >= _FLOAT_EXACT:
                    raise ValueError(f"da4ml values must fit float64 exactly (53 bits), not 2^{math.log2(top):.1f} "
                                     f"at op {i}")
        run = self.pipeline if self.clocked and pipeline else self.logic
        out = np.array([run(row.astype(np.float64)) for row in arr], np.float64).reshape(len(arr), -1)
        ints = np.rint(out)
        if not np.array_equal(ints, out):
            raise ValueError("da4ml outputs must be integers, not fractions")
        return ints.astype(np.int64)

    def to_dict(self) -> dict:
        """JSON-ready summary: ports, da4ml's cost and latency, timings, the digest."""
        return {"name": self.name, "top": self.top, "digest": self.digest, "out_dir": str(self.out_dir),
                "sources": [str(p) for p in self.sources], "clocked": self.clocked,
                "in_features": self.network.in_features, "in_field_bits": self.in_field_bits,
                "out_features": self.network.out_features, "out_field_bits": self.out_field_bits,
                "out_field_signed": self.out_field_signed, "latency_cutoff": self.latency_cutoff,
                "da4ml_latency_cutoff": self.metadata.get("latency_cutoff"), "stages": self.stages,
                "latency_cycles": self.latency_cycles, "cost_lut": self.cost,
                "reg_bits": self.reg_bits, "requant_shifts": [[int(s) for s in r[2]] for r in self.requant],
                "trace_seconds": round(self.trace_seconds, 3), "write_seconds": round(self.write_seconds, 3),
                "da4ml": importlib.metadata.version("da4ml")}


def da4ml_network(network: Network, *, name: str, out_dir: str | Path, latency_cutoff: float = LATENCY_CUTOFF,
                  minimal_requant: bool = True) -> Da4mlDesign:
    """Trace ``network`` through da4ml (constant weights, fully unrolled) and write its Verilog to ``out_dir``.

    Parameters
    ----------
    network : sw.network.Network
        Layers of :data:`DENSE_SCHEMES` only.
    name : str
        da4ml project and top module name (a Verilog identifier; the wrapper is ``<name>_wrapper``).
    out_dir : str or Path
        Where da4ml writes (created).
    latency_cutoff : float
        da4ml adder levels per pipeline stage (``VerilogModel(latency_cutoff=...)``); <= 0 for one
        combinational block.
    minimal_requant : bool
        Requantise with :func:`floor_requant`'s smallest exact formula (default) or the layer's own.

    Raises
    ------
    TypeError, ValueError
        ``"Network must be a Network, not 3"``, ``"Name must be a Verilog identifier, not '1x'"``,
        :func:`dense_weights`' refusal of a circulant or crossbar layer, :func:`floor_requant`'s errors.
    """
    from da4ml.codegen import VerilogModel
    from da4ml.trace import FixedVariableArray, comb_trace

    if not isinstance(network, Network):
        raise TypeError(f"Network must be a Network, not {network!r}")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"Name must be a Verilog identifier, not {name!r}")
    if isinstance(latency_cutoff, bool) or not isinstance(latency_cutoff, (int, float)):
        raise TypeError(f"Latency cutoff must be a number, not {latency_cutoff!r}")
    weights = [dense_weights(layer, i) for i, layer in enumerate(network.layers)]  # refuse before any work

    start = time.perf_counter()
    spec = network.input
    n = spec.features
    k = int(spec.signed)
    inp = FixedVariableArray.from_kif(np.full(n, k), np.full(n, spec.bits - k), np.zeros(n, np.int64))
    x = inp
    x_lo, x_hi = (np.full(n, v, np.int64) for v in spec.range)
    requants = []
    for i, (layer, w) in enumerate(zip(network.layers, weights)):
        acc = x @ w.T.astype(np.float64)   # da4ml's CMVM takes float32 matrices: integers below 2^24 are exact
        acc_lo, acc_hi = acc_bounds(w, x_lo, x_hi)
        m, c, s = floor_requant(layer, acc_lo, acc_hi, minimal=minimal_requant, index=i)
        requants.append((m, c, s))
        lo, hi = layer.out_range
        outs = []
        for j in range(layer.out_features):
            t = (acc[j] * int(m[j]) + int(c[j])) * 2.0 ** -int(s[j])
            if hasattr(t, "kif"):        # a variable (a constant output is a plain value)
                kk, ii, _ = t.kif
                t = t.quantize(kk, ii + 1, 0, "WRAP", "TRN").max_of(lo).min_of(hi)  # floor, then the clip
            else:
                t = min(max(math.floor(t), lo), hi)
            outs.append(t)
        x = FixedVariableArray(np.array(outs, dtype=object), acc.solver_options, hwconf=acc.hwconf)
        x_lo = np.clip(np.asarray((acc_lo * m + c) >> s), lo, hi)
        x_hi = np.clip(np.asarray((acc_hi * m + c) >> s), lo, hi)
    logic = comb_trace(inp, x)
    trace_seconds = time.perf_counter() - start

    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = VerilogModel(logic, name, out_dir, latency_cutoff=latency_cutoff if latency_cutoff > 0 else -1)
    model.write()
    write_seconds = time.perf_counter() - start
    pipeline = model._pipe   # the Pipeline the Verilog was written from (da4ml has no public accessor)
    metadata = json.loads((out_dir / "metadata.json").read_text())

    src = out_dir / "src"
    stages = sorted(src.glob(f"{name}_stage*.v"), key=lambda p: int(p.stem.rsplit("stage", 1)[1]))
    static = sorted(p for p in (src / "static").glob("*.v") if p.name != "lookup_table.v")
    sources = (src / f"{name}_wrapper.v", src / f"{name}.v", *stages, *static)

    k_in, i_in, f_in = _kifs(logic.inp_qint)
    k_out, i_out, f_out = _kifs(logic.out_qint)
    if (k_in + i_in, f_in) != (spec.bits, 0) or f_out != 0:
        raise RuntimeError(f"da4ml ports must be integer fields of the input bits, not inputs k,i,f = "
                           f"{(k_in, i_in, f_in)} and outputs f = {f_out}")
    return Da4mlDesign(
        name=name, out_dir=out_dir, sources=sources, network=network, latency_cutoff=latency_cutoff,
        in_field_bits=k_in + i_in, out_field_bits=max(k_out + i_out, 1), out_field_signed=bool(k_out),
        stages=len(pipeline.solutions) if pipeline is not None else 0, cost=float(logic.cost),
        reg_bits=int(pipeline.reg_bits) if pipeline is not None else None, requant=tuple(requants),
        trace_seconds=trace_seconds, write_seconds=write_seconds, metadata=metadata, logic=logic,
        pipeline=pipeline)


# -- Amaranth wrapper and synthesis ------------------------------------------------------------------------------

class Da4mlNetwork(wiring.Component):
    """The da4ml design as a component: ``x`` in, ``y`` out, the network's own integer layout.

    ``x`` holds ``in_features`` fields of ``input.bits`` bits (feature ``j`` at bits ``[j b, (j + 1) b)``),
    ``y`` ``out_features`` fields of the last layer's ``out_bits`` (sign-extended from da4ml's narrower
    fields). When the design is pipelined its ``clk`` is the ``sync`` clock and ``y`` follows ``x`` by
    :attr:`Da4mlDesign.latency_cycles` cycles, a new input every cycle (no reset needed: no state but the
    pipeline registers). Elaborates to an ``Instance`` of :attr:`Da4mlDesign.top`; synthesis must read
    :attr:`Da4mlDesign.sources` (:func:`synthesize_da4ml`).

    Members
    -------
    x : In(in_features * input.bits)
    y : Out(out_features * out_bits)

    Raises
    ------
    TypeError
        ``"Design must be a Da4mlDesign, not 3"``.
    """

    def __init__(self, design: Da4mlDesign):
        if not isinstance(design, Da4mlDesign):
            raise TypeError(f"Design must be a Da4mlDesign, not {design!r}")
        self._design = design
        last = design.network.layers[-1]
        super().__init__({"x": In(design.in_port_bits), "y": Out(design.network.out_features * last.out_bits)})

    @property
    def design(self) -> Da4mlDesign:
        return self._design

    def elaborate(self, platform):
        d = self._design
        m = Module()
        model_out = Signal(d.out_port_bits)
        ports = {"i_model_inp": self.x, "o_model_out": model_out}
        if d.clocked:
            ports["i_clk"] = ClockSignal("sync")
        m.submodules.da4ml = Instance(d.top, **ports)
        w, b = d.out_field_bits, d.network.layers[-1].out_bits
        for j in range(d.network.out_features):
            field = model_out[j * w:(j + 1) * w]
            m.d.comb += self.y[j * b:(j + 1) * b].eq(field.as_signed() if d.out_field_signed else field)
        return m


def synthesize_da4ml(design: Da4mlDesign, *, build_dir: str | Path, target: str = "ecp5-85k",
                     seeds: Sequence[int] = (1,), freq_mhz: float | None = None,
                     progress: Callable[[str], None] | None = None, router: str | None = ROUTER):
    """:func:`synth.synthesize` of :class:`Da4mlNetwork` (design top ``<name>_top``) in the pin wrapper, with
    the da4ml sources and nextpnr's ``--router router`` (None: the target's default).

    Returns
    -------
    synth.SynthResult
    """
    from peforge.synth import synthesize

    return synthesize(Da4mlNetwork(design), name=f"{design.name}_top", target=target, build_dir=build_dir,
                      seeds=tuple(seeds), freq_mhz=freq_mhz, wrap=True, progress=progress, sources=design.sources,
                      nextpnr_args=("--router", router) if router else ())
