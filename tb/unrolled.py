"""cocotb testbench and batch API of an unrolled dense network (:class:`hw.network.unrolled.UnrolledNetwork`).

The network is a *design* of :mod:`tb.runner` (:class:`UnrolledDesign`: its own build directory per network,
reuse and pipelining, the network and any requantisation written beside the Verilog) and a *case* of the one
testbench (:mod:`tb.bench`): a vector is one sample, sent as one beat carrying every feature; its result is one
beat with every output (``x``), compared bit for bit with :meth:`sw.network.Network.golden`. pytest runs the shared
tests (:data:`CHECKS`): random samples under every stall mix, extreme samples, reset with a sample in flight and
with results pending, and every result on the cycle the component's ``interval`` and ``latency`` predict.

:func:`rtl_unrolled` runs an input array through one simulation and returns the outputs and what was counted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

import cocotb

from ..hw.verilog import build_root, to_verilog

from . import network as network_tb
from .bench import Bench, Case, extremes, random_stalls, reset_mid_vector, throughput_and_latency  # noqa: F401
from .runner import SimulationError, run_design

__all__ = ["UnrolledDesign", "load_unrolled", "rtl_unrolled", "CHECKS", "CASE"]

#: the cocotb tests pytest runs (``infer`` serves :func:`rtl_unrolled`)
CHECKS = ["random_stalls", "extremes", "reset_mid_vector", "throughput_and_latency"]
TOP = "unrolled"


@dataclasses.dataclass(frozen=True, eq=False)
class UnrolledDesign:
    """An :class:`~hw.network.unrolled.UnrolledNetwork` as a design :func:`tb.runner.run_design` builds and runs.

    Members
    -------
    network : sw.network.Network
    reuse : int
    levels_per_stage : int
    requants : tuple of ((m, c, s) int arrays or None) or None
        Per layer, as :class:`~hw.network.unrolled.UnrolledLayer`'s ``requant``.
    skid : bool
        The layers' enables are flip-flops (:class:`~hw.network.unrolled.UnrolledLayer`'s ``skid``).
    """

    network: object
    reuse: int = 1
    levels_per_stage: int = 1
    requants: tuple | None = None
    skid: bool = False

    name = "unrolled"
    top = TOP
    tb_module = "peforge.tb.unrolled"

    @property
    def params(self) -> "UnrolledDesign":
        return self

    def component(self):
        from ..hw.network.unrolled import UnrolledNetwork

        return UnrolledNetwork(self.network, reuse=self.reuse, levels_per_stage=self.levels_per_stage,
                               requants=self.requants, skid=self.skid)

    def _arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for k, q in enumerate(self.requants or ()):
            if q is not None:
                for name, a in zip("mcs", q):
                    out[f"{k}.{name}"] = np.asarray(a, np.int64)
        return out

    def key(self) -> str:
        from ..hw import adder_graph
        from ..hw.network import unrolled

        h = hashlib.sha256(f"{self.network.digest()} {self.reuse} {self.levels_per_stage} {self.skid}".encode())
        for name, a in sorted(self._arrays().items()):
            h.update(name.encode() + np.ascontiguousarray(a).tobytes())
        for module in (adder_graph, unrolled):
            h.update(Path(module.__file__).read_bytes())
        return f"unrolled-{h.hexdigest()[:12]}"

    def is_written_in(self, directory: Path) -> bool:
        try:
            manifest = json.loads((Path(directory) / f"{TOP}.json").read_text())
        except (OSError, ValueError):
            return False
        return manifest.get("key") == self.key() and (Path(directory) / f"{TOP}.v").is_file()

    def write(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.network.save(directory / "network")
        np.savez(directory / "requants.npz", **self._arrays())
        (directory / f"{TOP}.v").write_text(to_verilog(self.component(), TOP))
        (directory / f"{TOP}.json").write_text(json.dumps({"key": self.key()}) + "\n")

    def config(self) -> dict:
        return {"loader": "peforge.tb.unrolled:load_unrolled", "reuse": self.reuse,
                "levels_per_stage": self.levels_per_stage, "layers": len(self.network.layers), "skid": self.skid}


def load_unrolled(config: dict) -> UnrolledDesign:
    """Inside a cocotb test: the :class:`UnrolledDesign` written in ``config["build_dir"]``."""
    from ..sw.network import load

    directory = Path(config["build_dir"])
    with np.load(directory / "requants.npz") as arrays:
        stored = {k: arrays[k] for k in arrays.files}
    requants = tuple((stored[f"{k}.m"], stored[f"{k}.c"], stored[f"{k}.s"]) if f"{k}.m" in stored else None
                     for k in range(int(config["layers"])))
    return UnrolledDesign(load(directory / "network"), int(config["reuse"]), int(config["levels_per_stage"]),
                          requants if any(q is not None for q in requants) else None, bool(config["skid"]))


# -- cocotb side: the network as a case of the one testbench (tb/bench.py) ----------------------------------

class CASE(network_tb.CASE):
    """One vector is one sample (``features`` integers), sent as one beat; its result is the outputs ``x``. The
    samples are drawn as for a compiled network (:class:`tb.network.CASE`: random, and the extremes 0, lo, hi and
    alternating corners)."""

    count = 30

    def __init__(self, bench):
        Case.__init__(self, bench)      # not the compiled network's: there is no CompiledNetwork here
        self.design = bench.params
        self.network = self.design.network
        self.dut_component = self.design.component()

    def beats(self, vector):
        return {"x": np.asarray(vector, np.int64).reshape(1, -1)}

    def expect(self, vectors):
        return {"x": self.network.golden(np.array(vectors, np.int64).reshape(len(vectors), -1))}

    @property
    def interval(self) -> int:
        return self.dut_component.interval

    @property
    def latency(self) -> int:
        return self.dut_component.latency

    def timing_rounds(self) -> list:
        return [self.draw(12)]

    def predict(self, vectors) -> list[int]:
        return [n * self.interval + self.latency + 1 for n in range(len(vectors))]

    def in_flight(self) -> list[int]:
        """Samples sent with the pipeline still full."""
        return self.payloads(self.draw(3))

    def pending(self):
        return self.draw(self.latency + 2), self.latency * 2 + 8


@cocotb.test()
async def infer(dut):
    """Batch API: every sample of ``in.npz`` through the network; outputs and result cycles to ``out.npz``."""
    bench = Bench.from_config(dut, 1.0)
    work = Path(bench.config["batch_dir"])
    await bench.start()
    with np.load(work / "in.npz") as arrays:
        vectors = bench.case.from_batch({k: arrays[k] for k in arrays.files})
    run = await bench.transfer(vectors)
    np.savez(work / "out.npz", **bench.decode(run), result_cycles=np.array([c for _, c in run.received], np.int64),
             cycles=run.cycles)


# -- batch API --------------------------------------------------------------------------------------------------

def rtl_unrolled(network, x, *, reuse: int = 1, levels_per_stage: int = 1, requants=None, skid: bool = False,
                 p_valid: float = 1.0, p_ready: float = 1.0, seed: int = 1) -> tuple[np.ndarray, dict]:
    """:meth:`sw.network.Network.golden` of ``x [N, features]`` computed by the unrolled network in Verilator.

    Returns
    -------
    (outputs, stats) : (int64 [N, out], dict)
        ``stats``: ``cycles`` (first cycle to the last result), ``latency`` (cycles to the first result, counted
        as :class:`tb.stream.StreamRun` does, minus one) and ``interval`` (median spacing of the second half of
        the results; 0 with fewer than 4).

    Raises
    ------
    ValueError
        ``"Network input must have shape (N, 64), not (3, 63)"`` and the input range errors of
        :meth:`sw.network.Network.golden`.
    """
    from ..sw.intops import as_int_array

    arr = as_int_array("Network input", x, *network.input.range)
    if arr.ndim != 2 or arr.shape[1] != network.in_features:
        raise ValueError(f"Network input must have shape (N, {network.in_features}), not {arr.shape}")
    design = UnrolledDesign(network, reuse, levels_per_stage, None if requants is None else tuple(requants), skid)
    build_root().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="unrolled-", dir=build_root()))
    np.savez(work / "in.npz", x=arr)
    _, failures = run_design(design, testcases=["infer"], seed=seed, tag=f"../../{work.name}",
                             extra={"batch_dir": str(work), "p_valid": p_valid, "p_ready": p_ready})
    if failures:
        raise SimulationError(f"RTL run of the unrolled network failed; see {work / 'sim.log'}")
    with np.load(work / "out.npz") as out:
        y = out["x"].astype(np.int64).reshape(len(arr), -1)
        cycles = [int(c) for c in out["result_cycles"]]
        total = int(out["cycles"])
    shutil.rmtree(work, ignore_errors=True)
    tail = np.diff(cycles[len(cycles) // 2:]) if len(cycles) >= 4 else np.zeros(0)
    return y, {"cycles": total, "latency": cycles[0] - 1 if cycles else 0,
               "interval": float(np.median(tail)) if tail.size else 0.0}
