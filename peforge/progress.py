"""A small progress display for steps that take more than a moment (Verilator builds, nextpnr).

On a terminal it keeps one status line with a spinner and the elapsed time; otherwise (CI logs, pipes)
it prints one line per step. It writes to stderr so ``--json`` output on stdout stays clean.
"""

from __future__ import annotations

import sys
import threading
import time

__all__ = ["Progress"]


class Progress:
    """``with Progress("synth sp2-mac") as p: p.step("yosys"); ...``"""

    _FRAMES = "|/-\\"

    def __init__(self, label: str, *, stream=None, enabled: bool = True):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._text = "starting"
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread = None
        self._lock = threading.Lock()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def step(self, text: str) -> None:
        with self._lock:
            self._text = text
        if self.enabled and not self.tty:
            print(f"  [{self.elapsed:6.1f}s] {self.label}: {text}", file=self.stream, flush=True)

    def _spin(self) -> None:
        frame = 0
        while not self._stop.wait(0.2):
            with self._lock:
                line = f"{self._FRAMES[frame % 4]} [{self.elapsed:6.1f}s] {self.label}: {self._text}"
            self.stream.write("\r\033[K" + line[:120])
            self.stream.flush()
            frame += 1

    def __enter__(self):
        if self.tty:
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind, value, tb):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.stream.write("\r\033[K")
            self.stream.flush()
        return False
