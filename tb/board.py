"""The board top (:class:`hw.board.BoardCore`: UART, framing, accelerator) in Verilator, with a bit-level UART
model on its pins, driven from the host process as a byte transport.

The cocotb test :func:`host_link` is a bridge: it connects to a socket the host side (:class:`SimulatedBoard`)
listens on, and serves its commands one at a time, each a JSON line:

``{"op": "write", "data": hex}``
    queue bytes for the ``rx`` pin; the UART model sends them 8N1, back to back from the current simulated
    time, while later commands run the clock;
``{"op": "read", "n": N, "timeout": s}``
    run the clock until N bytes the board sent on ``tx`` have been received (each sampled in the middle of
    its bits, the stop bit checked) or ``s`` simulated seconds have passed; the answer holds them, and the
    simulated time each began (its start bit's falling edge);
``{"op": "wait", "seconds": s}``
    run the clock that long; ``{"op": "close"}`` ends the test.

Every answer carries the simulated time in seconds (cycles / ``clk_freq``). Simulated time advances only inside
``read`` and ``wait``, so the host's own speed never shows in the board's timing: images/s measured through
this transport are those of the UART link and the board. The clock runs in the simulator (cocotb's GPI clock);
Python runs only once per UART bit.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Event, FallingEdge, First, RisingEdge, Timer

from ..hw.board import BoardCore, link_timing
from ..hw.network import CompiledNetwork
from ..hw.verilog import build_root, generator_fingerprint, to_verilog

from .runner import SimulationError, run_design

__all__ = ["BoardDesign", "SimulatedBoard", "TOP", "PERIOD_NS"]

TOP = "board"
#: Simulated clock period; the design's nominal ``clk_freq`` converts cycles to seconds.
PERIOD_NS = 10


@dataclasses.dataclass(frozen=True)
class BoardDesign:
    """A board core as a design the runner builds (see :class:`tb.runner.PEDesign`)."""

    compiled: CompiledNetwork
    clk_freq: float
    baud: int
    timeout: float

    name = "board"
    top = TOP
    tb_module = "peforge.tb.board"

    def component(self) -> BoardCore:
        return BoardCore(self.compiled, clk_freq=self.clk_freq, baud=self.baud, timeout=self.timeout)

    @property
    def params(self):
        return self

    def _identity(self) -> dict:
        return {"compiled": self.compiled.digest(), "clk_freq": self.clk_freq, "baud": self.baud,
                "timeout": self.timeout}

    def key(self) -> str:
        text = json.dumps(self._identity(), sort_keys=True)
        return f"board-{hashlib.sha256(text.encode()).hexdigest()[:12]}"

    def is_written_in(self, directory: Path) -> bool:
        try:
            manifest = json.loads((Path(directory) / f"{TOP}.json").read_text())
        except (OSError, ValueError):
            return False
        return (manifest.get("identity") == self._identity() and manifest.get("generator") == generator_fingerprint()
                and (Path(directory) / f"{TOP}.v").is_file())

    def write(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        core = self.component()
        (directory / f"{TOP}.v").write_text(to_verilog(core, TOP))
        (directory / f"{TOP}.json").write_text(json.dumps(
            {"identity": self._identity(), "generator": generator_fingerprint(), "divider": core.divider,
             "timeout_cycles": core.timeout_cycles}, indent=1) + "\n")

    def config(self) -> dict:
        divider, _ = link_timing(self.clk_freq, self.baud, self.timeout)
        return {"design": "board", "divider": divider, "clk_freq": self.clk_freq}


# -- cocotb side: the UART model on the pins and the bridge ------------------------------------------------------

class _UART:
    """8N1 at ``divider`` clock cycles per bit on ``dut.rx`` (driven) and ``dut.tx`` (received)."""

    def __init__(self, dut, divider: int):
        self.dut, self.bit_ns = dut, divider * PERIOD_NS
        self.pending: collections.deque[int] = collections.deque()
        self.received = bytearray()
        self.began: list[float] = []        # the start bit of each byte received, in ns
        self.framing_errors = 0
        self.arrived = Event()
        self._more = Event()

    async def drive(self):
        dut = self.dut
        while True:
            while not self.pending:
                self._more.clear()
                await self._more.wait()
            byte = self.pending.popleft()
            for level in [0, *((byte >> b) & 1 for b in range(8)), 1]:
                dut.rx.value = level
                await Timer(self.bit_ns, unit="ns")

    def send(self, data: bytes):
        self.pending.extend(data)
        self._more.set()

    async def monitor(self):
        dut = self.dut
        while True:
            await FallingEdge(dut.tx)
            edge = cocotb.utils.get_sim_time("ns")
            await Timer(self.bit_ns // 2, unit="ns")
            if int(dut.tx.value) != 0:
                continue                         # a glitch, not a start bit
            byte = 0
            for b in range(8):
                await Timer(self.bit_ns, unit="ns")
                byte |= int(dut.tx.value) << b
            await Timer(self.bit_ns, unit="ns")
            if int(dut.tx.value) != 1:
                self.framing_errors += 1
            self.received.append(byte)
            self.began.append(edge)
            self.arrived.set()


@cocotb.test()
async def host_link(dut):
    """Serve the host's commands (module docstring) until it closes the link."""
    config = json.loads(os.environ["PEFORGE_CONFIG"])
    clk_freq = float(config["clk_freq"])
    dut.rx.value = 1
    dut.rst.value = 1
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    uart = _UART(dut, int(config["divider"]))
    cocotb.start_soon(uart.drive())
    cocotb.start_soon(uart.monitor())
    link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    link.connect(config["socket"])
    stream = link.makefile("rw")

    def now() -> float:
        return cocotb.utils.get_sim_time("ns") / PERIOD_NS / clk_freq

    def answer(**fields):
        stream.write(json.dumps({"time": now(), "framing_errors": uart.framing_errors, **fields}) + "\n")
        stream.flush()

    while True:
        line = stream.readline()           # blocks the simulator: no simulated time passes meanwhile
        if not line:
            break
        command = json.loads(line)
        op = command["op"]
        if op == "write":
            uart.send(bytes.fromhex(command["data"]))
            answer()
        elif op == "read":
            n, deadline = int(command["n"]), now() + float(command["timeout"])
            while len(uart.received) < n and now() < deadline:
                uart.arrived.clear()
                left_ns = max(PERIOD_NS, int((deadline - now()) * clk_freq) * PERIOD_NS)
                await First(uart.arrived.wait(), Timer(left_ns, unit="ns"))
            data = bytes(uart.received[:n])
            began = [t / PERIOD_NS / clk_freq for t in uart.began[:n]]
            del uart.received[:n], uart.began[:n]
            answer(data=data.hex(), began=began)
        elif op == "wait":
            cycles = max(1, int(float(command["seconds"]) * clk_freq))
            await Timer(cycles * PERIOD_NS, unit="ns")
            answer()
        elif op == "close":
            answer()
            break
        else:
            raise ValueError(f"Bridge command must be write, read, wait or close, not {op!r}")
    link.close()


# -- host side: the simulated transport ------------------------------------------------------------------------

class SimulatedBoard:
    """The board core in Verilator as a byte transport (``write``, ``read``, ``wait``, ``now``, ``close``), the
    same interface as a serial port (``peforge.board.Transport``). Use it as a context manager::

        with SimulatedBoard(compiled, clk_freq=25e6, baud=115200) as board:
            board.write(frame)
            answer = board.read(4, timeout=0.01)

    The Verilator build is cached by the design (``build/sim/board-<digest>``); ``timeout`` is the board's
    inter-byte timeout (seconds, as :class:`hw.board.BoardCore` takes it).

    Raises
    ------
    SimulationError
        The build or the simulation failed (the message names the log).
    """

    def __init__(self, compiled: CompiledNetwork, *, clk_freq: float, baud: int, timeout: float = 0.1,
                 seed: int = 1):
        self.design = BoardDesign(compiled, float(clk_freq), int(baud), float(timeout))
        link_timing(clk_freq, baud, timeout)       # validates the parameters before any build
        self._seed = seed
        self._time = 0.0
        self.framing_errors = 0
        self._thread = None
        self._result = None

    # the transport
    def write(self, data: bytes) -> None:
        self._command(op="write", data=bytes(data).hex())

    def read(self, n: int, timeout: float) -> bytes:
        return self.read_timed(n, timeout)[0]

    def read_timed(self, n: int, timeout: float) -> tuple[bytes, list[float]]:
        """:meth:`read`, and the simulated time (seconds) at which each byte's start bit began on ``tx``."""
        reply = self._command(op="read", n=int(n), timeout=float(timeout))
        return bytes.fromhex(reply["data"]), [float(t) for t in reply["began"]]

    def wait(self, seconds: float) -> None:
        self._command(op="wait", seconds=float(seconds))

    def now(self) -> float:
        return self._time

    # lifetime
    def __enter__(self) -> SimulatedBoard:
        build_root().mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix="board-", dir="/tmp"))
        path = str(self._dir / "link")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(1)
        server.settimeout(1.0)

        def simulate():
            try:
                self._result = run_design(self.design, testcases=["host_link"], seed=self._seed,
                                          tag=f"run-{os.getpid()}-{threading.get_ident()}", extra={"socket": path})
            except BaseException as exc:  # handed to the caller's thread
                self._result = exc

        self._thread = threading.Thread(target=simulate, daemon=True)
        self._thread.start()
        while True:
            try:
                conn, _ = server.accept()
                break
            except socket.timeout:
                if not self._thread.is_alive():
                    server.close()
                    self._raise_result()
                    raise SimulationError("The board simulation ended before it connected")
        server.close()
        conn.settimeout(None)
        self._conn = conn
        self._stream = conn.makefile("rw")
        return self

    def close(self) -> None:
        if self._thread is None:
            return
        try:
            self._command(op="close")
        except (OSError, SimulationError):
            pass
        self._conn.close()
        self._thread.join()
        self._thread = None
        shutil.rmtree(self._dir, ignore_errors=True)
        self._raise_result()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _raise_result(self):
        result = self._result
        if isinstance(result, BaseException):
            raise result
        if result is not None and result[1]:
            raise SimulationError(f"The board simulation failed; see {build_root() / 'sim' / self.design.key()}")

    def _command(self, **command) -> dict:
        if self._thread is None:
            raise SimulationError("The simulated board must be opened (use it in a with block), not closed")
        self._stream.write(json.dumps(command) + "\n")
        self._stream.flush()
        line = self._stream.readline()
        if not line:
            self._thread.join()
            self._thread = None
            self._raise_result()
            raise SimulationError("The board simulation ended in the middle of a command")
        reply = json.loads(line)
        self._time = float(reply["time"])
        self.framing_errors = int(reply["framing_errors"])
        return reply
