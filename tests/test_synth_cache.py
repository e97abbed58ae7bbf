"""The one synthesis cache of e2e, the network bench and explore (``peforge/synth_cache.py``), with a stand-in flow:
its key, failures as results, what each caller returns from it, and two processes that want one design."""

import json
import multiprocessing
import time

import pytest

import peforge.hw.verilog
import peforge.synth
from peforge import synth_cache


class Compiled:
    """What the cache reads of a compiled network: its digest (the stand-in flow never builds it)."""

    def __init__(self, digest="c0ffee"):
        self._digest = digest

    def digest(self):
        return self._digest


def result(target, lut=1234, fmax=50.0):
    return peforge.synth.SynthResult(design="accelerator", target=target, lut=lut, ff=2 * lut, dsp=3, bram=1,
                                     fmax_mhz=fmax, fmax_per_seed=(fmax,), seeds=(1,), freq_target_mhz=48,
                                     wrapped=True, io_bits=10, build_dir="x")


@pytest.fixture
def flow(tmp_path, monkeypatch):
    """A stand-in synthesize_network: records each call's keyword arguments; a target named ``*-small`` does not
    fit."""
    calls = []

    def synthesize_network(compiled, *, target, **kwargs):
        calls.append({"target": target, **kwargs})
        if target.endswith("-small"):
            raise peforge.synth.DoesNotFit("Design must fit the part, not 9000 LUTs (log: /tmp/x/yosys.log):\nmore")
        return result(target)

    monkeypatch.setattr(peforge.hw.verilog, "build_root", lambda: tmp_path)
    monkeypatch.setattr(peforge.synth, "synthesize_network", synthesize_network)
    return calls


def test_an_entry_is_keyed_by_digest_target_seeds_wrap_and_generator(flow, tmp_path, monkeypatch):
    first = synth_cache.synthesise(Compiled(), "ecp5-85k", seeds=(1, 2), wrap=True)
    assert first["placed"] and not first["cached"] and first["lut"] == 1234
    assert first["per_seed"] == [{"seed": 1, "fmax_mhz": 50.0}] and first["error"] is None
    assert flow == [{"target": "ecp5-85k", "seeds": (1, 2), "wrap": True, "progress": None}]
    stored = json.loads((tmp_path / "synth-cache" / "c0ffee-ecp5-85k-1-2-wrapped.json").read_text())
    assert {k: stored[k] for k in ("digest", "target", "seeds", "wrap", "lut")} == \
        {"digest": "c0ffee", "target": "ecp5-85k", "seeds": [1, 2], "wrap": True, "lut": 1234}
    assert synth_cache.synthesise(Compiled(), "ecp5-85k", seeds=(1, 2), wrap=True)["cached"] and len(flow) == 1
    # other seeds, wrapper, design or generator: synthesised again
    assert not synth_cache.synthesise(Compiled(), "ecp5-85k", seeds=(1,), wrap=True)["cached"]
    assert not synth_cache.synthesise(Compiled(), "ecp5-85k", seeds=(1, 2))["cached"]
    assert not synth_cache.synthesise(Compiled("beef"), "ecp5-85k", seeds=(1, 2), wrap=True)["cached"]
    assert flow[-1] == {"target": "ecp5-85k", "seeds": (1, 2), "wrap": True, "progress": None} and len(flow) == 4
    monkeypatch.setattr(peforge.hw.verilog, "generator_fingerprint", lambda: "0" * 16)
    assert not synth_cache.synthesise(Compiled(), "ecp5-85k", seeds=(1, 2), wrap=True)["cached"] and len(flow) == 5
    # reuse=False (explore --resynth) synthesises again
    assert not synth_cache.synthesise(Compiled(), "ecp5-85k", seeds=(1, 2), wrap=True, reuse=False)["cached"]
    with pytest.raises(TypeError, match=r"^Synthesis option must be seeds or wrap, not 'freq'$"):
        synth_cache.synthesise(Compiled(), "ecp5-85k", freq=50)


def test_a_failed_synthesis_is_a_cached_result(flow):
    first = synth_cache.synthesise(Compiled(), "ice40-small")
    assert not first["placed"] and first["lut"] is None and first["error_type"] == "DoesNotFit"
    assert first["error"].startswith("Design must fit the part") and not first["cached"]
    again = synth_cache.synthesise(Compiled(), "ice40-small")
    assert again["cached"] and again["error"] == first["error"] and len(flow) == 1
    assert synth_cache.error_line(first["error"]) == "Design must fit the part, not 9000 LUTs"


def test_each_caller_reads_its_own_fields_from_one_entry(flow, tmp_path):
    from peforge.explore.point import SynthFailed, synthesise

    measured = synthesise(Compiled(), "ecp5-85k", [1])
    assert measured == {"synth": {"lut": 1234, "ff": 2468, "dsp": 3, "bram": 1, "fmax_mhz": 50.0,
                                  "per_seed": [{"seed": 1, "fmax_mhz": 50.0}]},
                        "wrapped": True, "synth_seconds": measured["synth_seconds"], "synth_cached": False}
    assert synthesise(Compiled(), "ecp5-85k", [1])["synth_cached"]
    with pytest.raises(SynthFailed, match=r"^DoesNotFit: Design must fit the part, not 9000 LUTs$"):
        synthesise(Compiled(), "ice40-small", [1])
    with pytest.raises(SynthFailed, match=r"^DoesNotFit: .* LUTs \(cached: this design and generator failed before\)$"):
        synthesise(Compiled(), "ice40-small", [1])
    assert len(flow) == 2 and flow[0] == {"target": "ecp5-85k", "seeds": (1,), "wrap": True, "progress": None}


def _synthesise_in_a_process(queue):
    entry = synth_cache.synthesise(Compiled(), "ecp5-85k", seeds=(1,), wrap=True)
    queue.put(entry["cached"])


def test_two_processes_that_want_one_design_synthesise_it_once(tmp_path, monkeypatch):
    """The second waits on the design's lock and reads the first one's entry."""
    started = tmp_path / "started"

    def slow(compiled, *, target, **kwargs):
        with open(started, "a") as f:
            f.write("x")
        time.sleep(2)
        return result(target)

    monkeypatch.setattr(peforge.hw.verilog, "build_root", lambda: tmp_path)
    monkeypatch.setattr(peforge.synth, "synthesize_network", slow)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [context.Process(target=_synthesise_in_a_process, args=(queue,)) for _ in range(2)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
    assert sorted(queue.get(timeout=5) for _ in processes) == [False, True]
    assert started.read_text() == "x"
    assert not [p for p in (tmp_path / "synth-cache").iterdir() if p.name.startswith(".")]   # no temporary left


def test_the_generator_fingerprint_covers_every_generator_module():
    """A change anywhere in sw/ or hw/ (hw/network's modules too: the engines were once left out, and a stale
    simulation build of an older generator was reused) names new Verilog."""
    from pathlib import Path

    from peforge.hw.verilog import generator_sources

    root = Path(__file__).resolve().parents[1]
    names = {p.relative_to(root).as_posix() for p in generator_sources()}
    on_disk = {p.relative_to(root).as_posix() for folder in ("sw", "hw") for p in (root / folder).rglob("*.py")
               if "__pycache__" not in p.parts}
    assert names == on_disk and "hw/network/engines.py" in names and "hw/network/window.py" in names
