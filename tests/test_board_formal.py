"""Formal proofs of the board link (tb/formal_board.py, docs/board.md): the receiver decides exactly the documented
answers for every byte sequence and the transmitter sends each one as its frame, every cover reached (the pair end
to end with -m slow); and the old one-deep event register fails the receiver's proof and the pair's, a transmitter
that does not wait for a result the transmitter's."""

from __future__ import annotations

import dataclasses

import pytest

from peforge.hw.board import Deframer, Framer
from peforge.tb import formal_board


PROOFS = sorted(name for name, p in formal_board.LINK_PROOFS.items() if not p.slow)
DEEP = sorted(name for name, p in formal_board.LINK_PROOFS.items() if p.slow)


@pytest.mark.parametrize("name", [*PROOFS, *[pytest.param(n, marks=pytest.mark.slow) for n in DEEP]])
def test_link_proof(name):
    result = formal_board.run_link_proof(name)
    assert result.check == "PASS", f"{name} failed: {result.directory}"
    assert result.cover == "PASS", f"{name}: a cover is unreachable (vacuous proof?): {result.directory}"


class OneDeepDeframer(Deframer):
    """The receiver before issue 34: one event register, so an answer decided while one is still waiting to be
    sent is dropped (here: while the queue holds one)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        with m.If(self.queued != 0):
            m.d.comb += self.answer.valid.eq(0)
        return m


class UnawaitedResultFramer(Framer):
    """A transmitter that takes a RESULT entry without waiting for the accelerator's result (it sends whatever
    the result stream holds, and the results slip against the entries)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.answer.ready.eq(~self.o.valid)
        return m


BROKEN = [
    ("board-receiver.decisions", "one-deep-register", lambda t: {"deframer": t.deframer(OneDeepDeframer)}),
    ("board-link.answers-deep", "one-deep-register", lambda t: {"deframer": t.deframer(OneDeepDeframer)}),
    ("board-transmitter.frames", "result-not-awaited", lambda t: {"framer": t.framer(UnawaitedResultFramer)}),
]


@pytest.mark.parametrize("name,tag,make", BROKEN, ids=[f"{b[0]}-{b[1]}" for b in BROKEN])
def test_broken_link_fails(name, tag, make):
    proof = formal_board.LINK_PROOFS[name]
    # bounded, from reset: a counterexample the variant can reach (k-induction would only say "unknown")
    bmc = dataclasses.replace(proof, mode="bmc", depth=10)
    result = formal_board.run_link_proof(bmc, tag=tag, cover=False, **make(formal_board.LINK_TARGETS[proof.target]))
    assert result.check == "FAIL", f"{name} passed on the broken variant {tag}: {result.directory}"


def test_unknown_link_proof_is_rejected():
    with pytest.raises(ValueError, match=r"^Link proof must be one of the 3 in tb\.formal_board\.LINK_PROOFS, "
                                         r"not 'board-link\.nothing'$"):
        formal_board.run_link_proof("board-link.nothing")
