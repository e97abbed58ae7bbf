"""Adder graphs of constant matrix-vector products: ``y = W @ x`` with ``W`` an integer constant, as shifts and adds.

Every weight is split into signed power-of-two *terms* and every output is the sum of its terms::

    W[o, i] = sum_d  g_d 2^(s_d)                 canonical signed digits (CSD, non-adjacent form): g_d = +-1,
                                                 no two adjacent non-zero digits, the fewest non-zero digits
    y[o]    = sum_i sum_d  g_d (x_i << s_d)      a term (source, shift, sign) per non-zero digit

The schemes need no other decomposition: a ``fixed`` weight is its CSD digits; an ``sp2`` weight (a sum of at most
two powers of two) has at most two digits (``2^a + 2^a`` is one: ``2^(a+1)``); an ``nm`` row's pruned weights are
zero, so only the kept weights have terms; a ``circulant`` matrix (expanded) repeats its weights along diagonals,
which the sharing below finds like any other repetition.

**Sharing** (common subexpression elimination over two-term patterns, Hartley's method): a pattern is a pair of terms
normalised to its smaller shift, ``p = (x_a << u) + g (x_b << v)`` with ``min(u, v) = 0``; while some pattern
occurs twice or more (over all outputs, terms not yet used), the most frequent one becomes an adder node of the
graph and each occurrence of it becomes one term ``(p, shift, sign)``. Each occurrence then saves an adder and the
node costs one. Nodes may themselves appear in patterns (multi-level sharing).

**Trees**: each output's remaining terms are summed by a tree that always adds the two terms available earliest
(lowest adder level; a balanced tree when all terms are inputs), a positive term first where there is one, so
the only negation left is an output all of whose terms are negative. Identical tree adders of several outputs
are one node.

**Pipelining** (:mod:`hw.network.unrolled`): a node's *level* is one more than its operands' highest (inputs: 0);
with a register every ``L`` levels, node ``n`` is computed in stage ``(level - 1) // L``.

:meth:`AdderGraph.evaluate` computes the graph in Python (int64), for tests against ``x @ W.T`` computed by
numpy; :attr:`AdderGraph.adders`, :attr:`AdderGraph.terms`, :meth:`AdderGraph.adder_bits` and
:meth:`AdderGraph.carry_bits` count its cost (an adder of ``b`` bits is about ``b`` LUT4s on ECP5 and iCE40: one
carry-chain bit each, less the low bits one operand passes through alone).

>>> g = adder_graph(np.array([[3, 5], [7, 0]]), scheme="fixed")
>>> g.evaluate(np.array([[1, 2], [-4, 3]])).tolist()
[[13, 7], [3, -28]]
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import defaultdict
from typing import Any

import numpy as np

from ..sw.intops import as_int_array
from ..sw.params import check_bool, check_choice

__all__ = ["SCHEMES", "Term", "Node", "AdderGraph", "csd", "adder_graph"]

#: Weight schemes :func:`adder_graph` takes (their integer matrices; ``sp2`` checked to be at most two terms).
SCHEMES = ("fixed", "sp2", "msq", "nm", "circulant")
#: Largest weight magnitude (and input bits) the graph takes: values stay far inside int64.
MAX_WEIGHT_BITS = 32


@dataclasses.dataclass(frozen=True, order=True)
class Term:
    """``sign * (value of source << shift)``; ``source`` indexes the graph's values: inputs ``0 .. n_in - 1``,
    then node ``k`` at ``n_in + k``."""

    source: int
    shift: int
    sign: int


@dataclasses.dataclass(frozen=True)
class Node:
    """One adder: ``a + b`` (each a :class:`Term`; ``b.sign`` is -1 for a subtraction, ``a.sign`` is +1)."""

    a: Term
    b: Term


def csd(value: int) -> list[tuple[int, int]]:
    """The canonical signed digits of ``value``: ``[(shift, sign)]``, lowest shift first.

    >>> csd(7), csd(-6), csd(0)
    ([(0, -1), (3, 1)], [(1, 1), (3, -1)], [])
    """
    value = int(value)
    digits, shift = [], 0
    while value:
        if value & 1:
            d = 2 - (value & 3)        # +1 when value = 1 mod 4, -1 when value = 3 mod 4
            digits.append((shift, d))
            value -= d
        value >>= 1
        shift += 1
    return digits


def _pattern(t1: Term, t2: Term) -> tuple[tuple, int, int]:
    """A pair of terms as ``(key, shift, sign)``: ``key = (a, u, b, v, g)`` names the node
    ``(x_a << u) + g (x_b << v)`` (``min(u, v) = 0``) and the pair equals ``sign * (node << shift)``."""
    (a, sa, ga), (b, sb, gb) = sorted(((t1.source, t1.shift, t1.sign), (t2.source, t2.shift, t2.sign)))
    m = min(sa, sb)
    return (a, sa - m, b, sb - m, ga * gb), m, ga


@dataclasses.dataclass(frozen=True, eq=False)
class AdderGraph:
    """A constant matrix-vector product as adders (:func:`adder_graph`).

    Members
    -------
    n_in : int
        Inputs (value ``i`` is input ``i``).
    nodes : tuple of Node
        Value ``n_in + k`` is node ``k``; a node's operands come before it.
    outputs : tuple of (Term or None)
        Output ``o`` is its term's value (None: the output is 0).
    scheme : str
    terms : int
        Terms before sharing: the non-zero digits of the matrix.
    """

    n_in: int
    nodes: tuple[Node, ...]
    outputs: tuple[Term | None, ...]
    scheme: str
    terms: int

    @property
    def n_out(self) -> int:
        return len(self.outputs)

    @property
    def negations(self) -> int:
        """Outputs that are a negated value (each one more adder)."""
        return sum(1 for t in self.outputs if t is not None and t.sign < 0)

    @property
    def adders(self) -> int:
        """Adders and subtractors in all, the output negations included."""
        return len(self.nodes) + self.negations

    def levels(self) -> list[int]:
        """Adder level of every value (inputs 0, a node one more than its operands' highest)."""
        level = [0] * self.n_in
        for node in self.nodes:
            level.append(1 + max(level[node.a.source], level[node.b.source]))
        return level

    @property
    def depth(self) -> int:
        """Adder levels from the inputs to the last output (an output negation is one more)."""
        level = self.levels()
        return max([level[t.source] + (t.sign < 0) for t in self.outputs if t is not None], default=0)

    def ranges(self, lo: Any, hi: Any) -> list[tuple[int, int]]:
        """Exact ``(min, max)`` of every value for inputs ``lo[i] <= x[i] <= hi[i]`` (interval arithmetic, which
        is exact for a sum of independent inputs and an upper bound when a node reuses an input)."""
        lo = np.broadcast_to(np.asarray(lo, np.int64), (self.n_in,))
        hi = np.broadcast_to(np.asarray(hi, np.int64), (self.n_in,))
        out = [(int(a), int(b)) for a, b in zip(lo, hi)]

        def term(t):
            a, b = out[t.source]
            a, b = a << t.shift, b << t.shift
            return (a, b) if t.sign > 0 else (-b, -a)

        for node in self.nodes:
            (a0, a1), (b0, b1) = term(node.a), term(node.b)
            out.append((a0 + b0, a1 + b1))
        return out

    def output_ranges(self, lo: Any, hi: Any) -> list[tuple[int, int]]:
        """``(min, max)`` of every output for the input box (``(0, 0)`` for a zero output)."""
        values = self.ranges(lo, hi)
        res = []
        for t in self.outputs:
            if t is None:
                res.append((0, 0))
            else:
                a, b = values[t.source]
                a, b = a << t.shift, b << t.shift
                res.append((a, b) if t.sign > 0 else (-b, -a))
        return res

    def adder_bits(self, lo: Any, hi: Any) -> int:
        """Sum of the adders' result widths for the input box: about the LUT4s the graph takes."""
        from ..sw.intops import signed_bits_for

        values = self.ranges(lo, hi)
        bits = sum(signed_bits_for(*values[self.n_in + k]) for k in range(len(self.nodes)))
        return bits + sum(signed_bits_for(*values[t.source]) for t in self.outputs if t is not None and t.sign < 0)

    def carry_bits(self, lo: Any, hi: Any) -> int:
        """:meth:`adder_bits` without the low bits an adder passes through from one operand alone (``a + (b << s)``
        and ``a - (b << s)``: the low ``s`` bits are ``a``'s): the bits that take a carry-chain cell."""
        from ..sw.intops import signed_bits_for

        values = self.ranges(lo, hi)
        bits = 0
        for k, node in enumerate(self.nodes):
            width = signed_bits_for(*values[self.n_in + k])
            alone = node.b.shift if node.b.shift else (node.a.shift if node.b.sign > 0 else 0)
            bits += max(1, width - alone)
        return bits + sum(signed_bits_for(*values[t.source]) for t in self.outputs if t is not None and t.sign < 0)

    def evaluate(self, x: Any) -> np.ndarray:
        """int64 ``[N, n_out]``: the graph's outputs for inputs ``x [N, n_in]``."""
        arr = as_int_array("Adder graph input", x, -(1 << MAX_WEIGHT_BITS), 1 << MAX_WEIGHT_BITS)
        if arr.ndim != 2 or arr.shape[1] != self.n_in:
            raise ValueError(f"Adder graph input must have shape (N, {self.n_in}), not {arr.shape}")
        values = [arr[:, i] for i in range(self.n_in)]

        def term(t):
            return t.sign * (values[t.source] << t.shift)

        for node in self.nodes:
            values.append(term(node.a) + term(node.b))
        zero = np.zeros(len(arr), np.int64)
        return np.stack([zero if t is None else term(t) for t in self.outputs], axis=1).reshape(len(arr), -1)

    def to_dict(self) -> dict:
        """A JSON-ready summary of the cost."""
        return {"scheme": self.scheme, "n_in": self.n_in, "n_out": self.n_out, "terms": self.terms,
                "adders": self.adders, "shared_nodes": len(self.nodes), "depth": self.depth}


class _Builder:
    """Nodes by pattern key, so that equal adders are made once."""

    def __init__(self, n_in: int):
        self.n_in = n_in
        self.nodes: list[Node] = []
        self.index: dict[tuple, int] = {}
        self.level = [0] * n_in

    def node(self, key: tuple) -> int:
        found = self.index.get(key)
        if found is None:
            a, u, b, v, g = key
            self.nodes.append(Node(Term(a, u, 1), Term(b, v, g)))
            found = self.index[key] = self.n_in + len(self.nodes) - 1
            self.level.append(1 + max(self.level[a], self.level[b]))
        return found

    def add(self, t1: Term, t2: Term) -> Term:
        """The sum of two terms as one term (a new or existing node), a positive operand first."""
        if t1.sign < 0 and t2.sign > 0:
            t1, t2 = t2, t1
        m = min(t1.shift, t2.shift)
        if t1.sign > 0:    # t1 - t2 or t1 + t2: a positive result
            key = (t1.source, t1.shift - m, t2.source, t2.shift - m, t2.sign)
            return Term(self.node(key), m, 1)
        key, m, sign = _pattern(t1, t2)   # both negative: -(a + b)
        return Term(self.node(key), m, sign)


def _add_term(terms: dict[tuple[int, int], int], src: int, shift: int, sign: int) -> None:
    """Add ``sign * (x_src << shift)`` to an output's terms (``(source, shift) -> sign``), merging equal ones."""
    while True:
        old = terms.get((src, shift))
        if old is None:
            terms[(src, shift)] = sign
            return
        del terms[(src, shift)]
        if old != sign:
            return            # x - x
        shift += 1            # x + x = x << 1


def adder_graph(w: Any, *, scheme: str = "fixed", share: bool = True) -> AdderGraph:
    """The adder graph of ``y = W @ x`` for an integer constant ``W [n_out, n_in]`` (module docstring).

    Parameters
    ----------
    w : int array [n_out, n_in]
        Weights of magnitude below ``2^32``.
    scheme : str
        One of :data:`SCHEMES`: the scheme of the matrix (``sp2`` weights must be sums of at most two powers of
        two; ``msq`` rows of either kind are taken as they are).
    share : bool
        Share two-term subexpressions across outputs (default) or not.

    Raises
    ------
    TypeError, ValueError
        ``"Weights must have shape (n_out, n_in), not (3,)"``, ``"Scheme must be one of 'fixed', 'sp2', 'msq',
        'nm', 'circulant', not 'x'"``, ``"Weights must be sums of at most two powers of two for scheme 'sp2',
        not 7 (at index (0, 1))"``.
    """
    check_choice("Scheme", scheme, SCHEMES)
    check_bool("Share", share)
    limit = (1 << MAX_WEIGHT_BITS) - 1
    w = as_int_array("Weights", w, -limit, limit)
    if w.ndim != 2:
        raise ValueError(f"Weights must have shape (n_out, n_in), not {w.shape}")
    n_out, n_in = w.shape
    digits = {}
    for (o, i), v in np.ndenumerate(w):
        if v:
            digits[(o, i)] = csd(int(v))
            if scheme == "sp2" and bin(abs(int(v))).count("1") > 2:
                raise ValueError(f"Weights must be sums of at most two powers of two for scheme 'sp2', not {int(v)} "
                                 f"(at index {(o, i)})")
    outs: list[dict[tuple[int, int], int]] = [dict() for _ in range(n_out)]
    for (o, i), ds in digits.items():
        for shift, sign in ds:
            _add_term(outs[o], i, shift, sign)
    terms = sum(len(t) for t in outs)
    builder = _Builder(n_in)
    if share:
        _share(outs, builder)
    outputs = []
    for t in outs:
        outputs.append(_tree(t, builder))
    return AdderGraph(n_in, tuple(builder.nodes), tuple(outputs), scheme, terms)


def _share(outs: list[dict[tuple[int, int], int]], builder: _Builder) -> None:
    """Greedy two-term common subexpression elimination (module docstring), in place on ``outs``."""
    occ: dict[tuple, set] = defaultdict(set)   # pattern key -> {(output, term, term)}

    def pairs(o, t, others):
        for u in others:
            if u != t:
                a, b = (t, u) if t < u else (u, t)
                yield _pattern(a, b)[0], (o, a, b)

    as_terms = [[Term(s, h, g) for (s, h), g in sorted(t.items())] for t in outs]
    for o, ts in enumerate(as_terms):
        for j, t in enumerate(ts):
            for u in ts[j + 1:]:
                occ[_pattern(t, u)[0]].add((o, t, u))
    heap = [(-len(s), key) for key, s in occ.items() if len(s) >= 2]
    heapq.heapify(heap)
    while heap:
        neg, key = heapq.heappop(heap)
        found = occ.get(key)
        if not found or len(found) < 2:
            continue
        if len(found) != -neg:        # a stale count: put it back with the real one
            heapq.heappush(heap, (-len(found), key))
            continue
        node = builder.node(key)
        touched = set()
        for o, t1, t2 in sorted(found):
            current = outs[o]
            if current.get((t1.source, t1.shift)) != t1.sign or current.get((t2.source, t2.shift)) != t2.sign:
                continue            # a term of this occurrence went into an earlier one
            _, shift, sign = _pattern(t1, t2)
            before = {Term(s, h, g) for (s, h), g in current.items()}
            del current[(t1.source, t1.shift)], current[(t2.source, t2.shift)]
            _add_term(current, node, shift, sign)
            after = {Term(s, h, g) for (s, h), g in current.items()}
            for t in before - after:
                for k, inst in pairs(o, t, before):
                    occ[k].discard(inst)
                    touched.add(k)
            for t in after - before:
                for k, inst in pairs(o, t, after):
                    occ[k].add(inst)
                    touched.add(k)
        occ.pop(key, None)
        for k in touched:
            s = occ.get(k)
            if s is not None and len(s) >= 2:
                heapq.heappush(heap, (-len(s), k))


def _tree(terms: dict[tuple[int, int], int], builder: _Builder) -> Term | None:
    """One output's terms summed by a tree that adds the two earliest terms first (None for no terms)."""
    heap = [(builder.level[s], s, h, g) for (s, h), g in sorted(terms.items())]
    heapq.heapify(heap)
    if not heap:
        return None
    while len(heap) > 1:
        l1, s1, h1, g1 = heapq.heappop(heap)
        l2, s2, h2, g2 = heapq.heappop(heap)
        t = builder.add(Term(s1, h1, g1), Term(s2, h2, g2))
        heapq.heappush(heap, (builder.level[t.source], t.source, t.shift, t.sign))
    _, s, h, g = heap[0]
    return Term(s, h, g)
