"""Folding search: the default (balanced) folding of a network, the points of a folding sweep, and the plans
of a network under a folding.

Each engine offers its candidate foldings (:meth:`hw.network.engines.EngineSpec.candidates`), the plans
predict their cycles, and the cost model (:mod:`hw.network.cost`) ranks them: as FINN's ``SetFolding`` asks
every node for its cycles and relaxes to the bottleneck.
"""

from __future__ import annotations

import dataclasses

from peforge.sw import network as net
from peforge.sw.params import check_int

from .cost import folding_cost
from .engines import engine_for, plan_engine
from .folding import MAX_REQUANT_CYCLES, Budget, Folding
from .plan import EnginePlan, ceil_div

__all__ = ["plan_network", "default_folding", "folding_at", "slowest_interval", "candidates"]


def candidates(layer) -> list[EnginePlan]:
    """The plans of every folding ``layer``'s engine offers the search."""
    engine = engine_for(layer)
    return [engine.plan(layer, f) for f in engine.candidates(layer)]


def plan_network(network, folding: Folding | None = None) -> tuple[EnginePlan, ...]:
    """One :class:`EnginePlan` per layer (``folding`` None: :func:`default_folding`).

    Raises
    ------
    ValueError
        ``"Network must be a chain of layers to be compiled (each takes the previous one's output), not a
        graph (layers[2] takes input)"``.
    """
    if not isinstance(network, net.Network):
        raise TypeError(f"Network must be a sw.network.Network, not {network!r}")
    if not network.is_chain:
        i = next(i for i, src in enumerate(network.sources) if src != (i - 1,))
        names = ", ".join("input" if j < 0 else f"layers[{j}]" for j in network.sources[i])
        raise ValueError(f"Network must be a chain of layers to be compiled (each takes the previous one's "
                         f"output), not a graph (layers[{i}] takes {names})")
    folding = folding or default_folding(network)
    if len(folding.layers) != len(network.layers):
        raise ValueError(f"Folding must have one entry per layer ({len(network.layers)}), not {len(folding.layers)}")
    return tuple(plan_engine(layer, f) for layer, f in zip(network.layers, folding.layers))


def _requant_cycles(plan: EnginePlan, target: int) -> int:
    """The slowest requantiser that keeps ``plan`` within ``target`` cycles (1 if none is slower)."""
    per_group = ceil_div(target, plan.groups) if plan.groups else target
    c = per_group // max(1, len(plan.slots) * plan.width)
    return max(1, min(c, MAX_REQUANT_CYCLES))


def _cheapest(options: list[list[EnginePlan]], target: int) -> list[EnginePlan]:
    """Per layer the cheapest plan within ``target`` cycles (the fastest one if none is)."""
    return [min((p for p in plans if p.cycles <= target), key=lambda p: (folding_cost(p), p.cycles, len(p.slots)),
                default=min(plans, key=lambda p: (p.cycles, folding_cost(p))))
            for plans in options]


def folding_at(network, interval: int) -> Folding:
    """The cheapest folding of every layer whose predicted cycles are at most ``interval`` (a layer that cannot
    be that fast takes its fastest folding): the points of a folding sweep from fast and large to slow and
    small. ``folding_at(network, default interval)`` is :func:`default_folding` (without a budget)."""
    check_int("Interval", interval, min=1)
    options = [candidates(layer) for layer in network.layers]
    return Folding(tuple(p.folding for p in _cheapest(options, interval)))


def slowest_interval(network) -> int:
    """The interval of the smallest folding :func:`folding_at` reaches (every layer at its slowest)."""
    return max(max(p.cycles for p in candidates(layer)) for layer in network.layers)


def default_folding(network, budget: Budget | None = None) -> Folding:
    """Balanced folding: every engine as fast as the slowest has to be, with the fewest multipliers.

    The target interval ``T`` is the largest, over the layers, of what the element streams allow (loading
    ``in_features`` inputs, draining ``out_features`` results) and of the fastest folding within
    :data:`hw.network.folding.DEFAULT_MAX_LANES` lanes and :data:`hw.network.folding.DEFAULT_MAX_MULTIPLIERS`
    multipliers. Each layer then takes the cheapest folding (:func:`hw.network.cost.folding_cost`: multiplier
    lanes plus slots) whose predicted cycles are at most ``T``, so no engine starves the next and none is
    bigger than the pipeline's pace needs.

    With a ``budget`` the folding must also fit the device's DSPs (:meth:`EnginePlan.dsps`): ``T`` grows
    until it does, first with the cheapest foldings, then with the fewest DSPs (each requantiser as slow as
    ``T`` allows: shifts and adds instead of a multiplier).

    Raises
    ------
    ValueError
        ``"Network must fit 8 DSPs: its slowest folding still needs 12"``.
    """
    options = [candidates(layer) for layer in network.layers]
    fastest = max(min(p.cycles for p in plans) for plans in options)

    def cheapest(target):
        return _cheapest(options, target)

    if budget is None:
        return Folding(tuple(p.folding for p in cheapest(fastest)))

    def fewest_dsps(target):
        chosen = []
        for plans in options:
            slow = [plan_engine(p.layer, dataclasses.replace(p.folding, requant=_requant_cycles(p, target)))
                    for p in plans if p.cycles <= target]
            chosen.append(min(slow, key=lambda p: (p.dsps(budget.dsp_bits), folding_cost(p), p.cycles)))
        return chosen

    least = None
    for target in sorted({p.cycles for plans in options for p in plans if p.cycles >= fastest}):
        for choose in (cheapest, fewest_dsps):
            plans = choose(target)
            need = sum(p.dsps(budget.dsp_bits) for p in plans)
            if need <= budget.dsps:
                return Folding(tuple(p.folding for p in plans))
            least = need
    raise ValueError(f"Network must fit {budget.dsps} DSPs: its slowest folding still needs {least}")
