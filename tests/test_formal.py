"""Formal proofs (tb/formal.py, docs/verification.md): every proof of the table passes with every cover reached,
and a broken variant of each property's target fails its proof."""

import pytest

from peforge.hw import registry
from peforge.tb import formal
from tests import mutants

PROOFS = sorted(name for name, p in formal.PROOFS.items() if not p.slow)
DEEP = sorted(name for name, p in formal.PROOFS.items() if p.slow)


@pytest.mark.parametrize("name", [*PROOFS, *[pytest.param(n, marks=pytest.mark.slow) for n in DEEP]])
def test_proof(name):
    result = formal.run_proof(name)
    assert result.check == "PASS", f"{name} failed: {result.directory}"
    assert result.cover == "PASS", f"{name}: a cover is unreachable (vacuous proof?): {result.directory}"


def _wrapped(wrapper):
    return lambda target: wrapper(target.build())


def _cls(cls):
    return lambda target: target.build(cls)


# (proof, broken variant, what it breaks); the first group runs in make test, the rest with -m slow
BROKEN = [
    ("circulant-fft.contract", "ignores-backpressure", _wrapped(mutants.IgnoresBackpressure)),
    ("crossbar.contract", "valid-at-reset", _wrapped(mutants.ValidAtReset)),
    ("requant-serial.count", "emits-twice", _wrapped(mutants.EmitsTwice)),
    ("nm-sparse.latency", "late-by-one", _wrapped(mutants.LateByOne)),
    ("sp2-mac.datapath", "drops-carry", _cls(mutants.SP2MacDropsCarry)),
    ("fixed-mac.datapath", "truncates", _cls(mutants.FixedMacTruncates)),
    ("nm-sparse.datapath", "reversed-index", _cls(mutants.NMSparseReversedIndex)),
    ("crossbar-controller.datapath", "fixed-latency", _cls(mutants.CrossbarControllerFixedLatency)),
    ("crossbar-controller.datapath", "skips-last-row", _cls(mutants.CrossbarControllerSkipsLastRow)),
    ("requant-half-up.datapath", "ties-down", _cls(mutants.RequantizerTiesDown)),
    *[(f"requant-{r}.datapath", "ignores-rounding", _cls(mutants.RequantizerIgnoresRounding))
      for r in ("half-even", "floor")],
    ("accelerator.count", "phantom-beat", _wrapped(mutants.PhantomBeatAfterReset)),
    # the engine's parts alone
    ("vector-replay.count", "emits-twice", _wrapped(mutants.EmitsTwice)),
    ("collector.contract", "ignores-backpressure", _wrapped(mutants.IgnoresBackpressure)),
]
_WRAPPERS = {"contract": [("ignores-backpressure", mutants.IgnoresBackpressure),
                          ("valid-at-reset", mutants.ValidAtReset)],
             "count": [("emits-twice", mutants.EmitsTwice)],
             "latency": [("late-by-one", mutants.LateByOne)]}
SLOW = [*[(name, tag, _wrapped(cls)) for name in PROOFS for prop, wrappers in _WRAPPERS.items()
          if name.endswith("." + prop) for tag, cls in wrappers
          if (name, tag) not in {(b[0], b[1]) for b in BROKEN}],
        ("sp2-mac-b5.datapath", "drops-carry", _cls(mutants.SP2MacDropsCarry)),
        *[(f"requant-{r}.datapath", "ties-down", _cls(mutants.RequantizerTiesDown)) for r in ("half-even", "floor")],
        # the engine's and the accelerator's -m slow rows
        ("engine.count", "phantom-beat", _wrapped(mutants.PhantomBeatAfterReset)),
        ("engine.contract-deep", "ignores-backpressure", _wrapped(mutants.IgnoresBackpressure)),
        ("engine.latency-deep", "drops-row-zero", _wrapped(mutants.DropsRowZero)),
        ("accelerator.latency-deep", "drops-row-zero", _wrapped(mutants.DropsRowZero)),
        ("accelerator.latency-deep", "late-by-one", _wrapped(mutants.LateByOne)),
        ("accelerator.datapath-deep", "wrong-weight", _cls(mutants.AcceleratorWrongWeight)),
        ("accelerator.datapath-deep", "argmax-last-of-equal", _wrapped(mutants.ArgmaxLastOfEqual))]


def _check_fails(name, tag, make):
    proof = formal.proof(name)
    dut = make(formal.TARGETS[proof.target])
    result = formal.run_proof(proof, dut, tag=tag, cover=False)
    assert result.check == "FAIL", f"{name} passed on the broken variant {tag}: {result.directory}"


@pytest.mark.parametrize("name,tag,make", BROKEN, ids=[f"{b[0]}-{b[1]}" for b in BROKEN])
def test_broken_variant_fails(name, tag, make):
    _check_fails(name, tag, make)


@pytest.mark.slow
@pytest.mark.parametrize("name,tag,make", SLOW, ids=[f"{b[0]}-{b[1]}" for b in SLOW])
def test_every_target_broken_variant_fails(name, tag, make):
    _check_fails(name, tag, make)


def test_every_pe_and_property_has_a_proof():
    pes = {name for name, pe in registry.REGISTRY.items() if pe.summary != "mutant"}
    targets = {p.target for p in formal.PROOFS.values()}
    assert pes <= targets, f"PEs without proofs: {sorted(pes - targets)}"
    for pe in pes:
        props = {p.prop for p in formal.PROOFS.values() if p.target == pe}
        assert {"contract", "count", "latency"} <= props, f"{pe} proves only {sorted(props)}"
    for p in formal.PROOFS.values():
        assert p.mode in ("prove", "bmc") and p.depth >= 1
        if p.prop in ("contract", "count", "latency"):
            # a result (held under a stall, for the contract's base case) must fit inside the bound
            assert p.depth > formal.TARGETS[p.target].latency


def test_engine_and_accelerator_have_proofs():
    props = {(p.target, p.prop) for p in formal.PROOFS.values()}
    assert {("engine", "contract"), ("engine", "count"), ("accelerator", "contract"), ("accelerator", "count"),
            ("accelerator", "latency"), ("accelerator", "datapath")} <= props
    # and the engine's parts alone: the buffer with its sequencer, the collector, the requantiser
    assert {("vector-replay", "contract"), ("vector-replay", "count"), ("collector", "contract"),
            ("collector", "count"), ("requant-half-up", "contract"), ("requant-half-up", "count")} <= props


def test_unknown_proof_is_rejected():
    with pytest.raises(ValueError, match="Proof must be one of the"):
        formal.run_proof("sp2-mac.nothing")
