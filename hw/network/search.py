"""Folding search: the default (balanced) folding of a network, the points of a folding sweep, and the plans
of a network under a folding.

Each engine offers its candidate foldings (:meth:`hw.network.engines.EngineSpec.candidates`), the plans
predict their cycles, and the cost model (:mod:`hw.network.cost`) ranks them: as FINN's ``SetFolding`` asks
every node for its cycles and relaxes to the bottleneck.
"""

from __future__ import annotations

import dataclasses

from ...sw import network as net
from ...sw.params import check_int

from . import cost
from .cost import folding_cost
from .engines import engine_for, plan_engine
from .folding import MAX_REQUANT_CYCLES, Budget, Folding
from .plan import EnginePlan, ceil_div

__all__ = ["plan_network", "default_folding", "folding_at", "slowest_interval", "candidates", "engine_luts",
           "network_interval", "handoffs", "HANDOFF"]


#: Cycles per sample a dense engine needs beyond its work (:attr:`EnginePlan.work_cycles`) when a convolution or a
#: pool feeds it: measured (tests/test_cnn_hw.py), a dense engine whose work takes the whole interval after one
#: gives one cycle more per sample, while after a dense engine it does not.
HANDOFF = 1


def handoffs(layers) -> list[int]:
    """Per layer the cycles its engine needs beyond its work (:data:`HANDOFF` for a dense layer that a convolution
    or a pool feeds, through any flattens; else 0)."""
    out, before = [], "dense"
    for layer in layers:
        out.append(HANDOFF if layer.kind == "dense" and before != "dense" else 0)
        before = before if layer.kind == "flatten" else layer.kind
    return out


def paced(plan: EnginePlan, handoff: int) -> int:
    """The cycles per sample ``plan`` takes in its network, where it needs ``handoff`` cycles beyond its work."""
    return max(plan.cycles, plan.work_cycles + handoff) if handoff else plan.cycles


def network_interval(plans) -> int:
    """Predicted steady-state cycles between samples of a compiled network's engines ``plans``: the slowest
    engine's, each :func:`paced` in its place."""
    return max(paced(p, h) for p, h in zip(plans, handoffs([p.network_layer for p in plans])))


def candidates(layer) -> list[EnginePlan]:
    """The plans of every folding ``layer``'s engine offers the search."""
    engine = engine_for(layer)
    return [engine.plan(layer, f) for f in engine.candidates(layer)]


def plan_network(network, folding: Folding | None = None, target=None) -> tuple[EnginePlan, ...]:
    """One :class:`EnginePlan` per layer (``folding`` None: :func:`default_folding`); with a ``target``
    (:class:`sw.params.TargetFacts`) its slots' Params at that target's facts (:meth:`EnginePlan.at_target`).

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
    for i, layer in enumerate(network.layers):
        before = [other.kind for other in network.layers[:i]]
        if getattr(engine_for(layer), "first_only", False) and any(kind != "flatten" for kind in before):
            raise ValueError(f"Layer kind {layer.kind!r} must be the network's first layer to be compiled (its "
                             f"input streams in time order), not layers[{i}]")
    folding = folding or default_folding(network)
    if len(folding.layers) != len(network.layers):
        raise ValueError(f"Folding must have one entry per layer ({len(network.layers)}), not {len(folding.layers)}")
    plans = tuple(plan_engine(layer, f) for layer, f in zip(network.layers, folding.layers))
    return plans if target is None else tuple(p.at_target(target) for p in plans)


def _requant_cycles(plan: EnginePlan, target: int) -> int:
    """The slowest requantiser that keeps ``plan`` within ``target`` cycles (1 if none is slower; 1 for an engine
    without slots: a pool, whose results come in bursts a slower requantiser would hold up)."""
    if not plan.slots:
        return 1
    per_group = ceil_div(target, plan.positions * plan.groups) if plan.groups else target   # per item and row group
    c = per_group // max(1, len(plan.slots) * plan.width)
    return max(1, min(c, MAX_REQUANT_CYCLES))


def _options(network) -> list[list[tuple[EnginePlan, int]]]:
    """Per layer every candidate plan with the cycles it takes in its place (:func:`paced`)."""
    return [[(p, paced(p, h)) for p in candidates(layer)]
            for layer, h in zip(network.layers, handoffs(network.layers))]


def _cheapest(options, target: int) -> list[EnginePlan]:
    """Per layer the cheapest plan within ``target`` cycles (the fastest one if none is)."""
    return [min((p for p, c in plans if c <= target), key=lambda p: (folding_cost(p), p.cycles, len(p.slots)),
                default=min(plans, key=lambda pc: (pc[1], folding_cost(pc[0])))[0])
            for plans in options]


def folding_at(network, interval: int) -> Folding:
    """The cheapest folding of every layer whose predicted cycles are at most ``interval`` (a layer that cannot
    be that fast takes its fastest folding): the points of a folding sweep from fast and large to slow and
    small. ``folding_at(network, default interval)`` is :func:`default_folding` (without a budget)."""
    check_int("Interval", interval, min=1)
    return Folding(tuple(p.folding for p in _cheapest(_options(network), interval)))


def slowest_interval(network) -> int:
    """The interval of the smallest folding :func:`folding_at` reaches (every layer at its slowest)."""
    return max(max(c for _, c in plans) for plans in _options(network))


def default_folding(network, budget: Budget | None = None) -> Folding:
    """Balanced folding: every engine as fast as the slowest has to be, with the fewest multipliers.

    The target interval ``T`` is the largest, over the layers, of what the element streams allow (loading
    ``in_features`` inputs, draining ``out_features`` results) and of the fastest folding within
    :data:`hw.network.folding.DEFAULT_MAX_LANES` lanes and :data:`hw.network.folding.DEFAULT_MAX_MULTIPLIERS`
    multipliers. Each layer then takes the cheapest folding (:func:`hw.network.cost.folding_cost`: multiplier
    lanes plus slots) whose predicted cycles are at most ``T``, so no engine starves the next and none is
    bigger than the pipeline's pace needs.

    With a ``budget`` the folding must also fit every budget of the device the cost model can predict
    (:mod:`hw.network.cost`): its DSPs, its LUTs and its block RAM when the budget gives them. ``T`` grows until
    the folding fits, trying at each ``T`` the cheapest foldings, then the fewest DSPs (each requantiser as slow
    as ``T`` allows: shifts and adds instead of a multiplier), then the fewest predicted LUTs, then the fewest
    LUTs traded for DSPs where a DSP costs the fewest LUTs to save.

    Raises
    ------
    ValueError
        ``"Network must fit 8 DSPs: its slowest folding still needs 12"`` (a DSP budget alone), ``"Network must
        fit the iCE40UP5K's 8 DSPs, 3900 LUTs and 120 kbit of block RAM: its smallest foldings still need 7012
        LUTs (predicted by hw.network.cost)"``: only what no folding tried fits is named, block RAM per layer.
    """
    options = _options(network)
    hand = handoffs(network.layers)
    fastest = max(min(c for _, c in plans) for plans in options)

    def cheapest(target):
        return _cheapest(options, target)

    if budget is None:
        return Folding(tuple(p.folding for p in cheapest(fastest)))

    def fewest_dsps(target):
        chosen = []
        for plans, h in zip(options, hand):
            slow = [plan_engine(p.layer, dataclasses.replace(p.folding, requant=_requant_cycles(p, target - h)))
                    for p, c in plans if c <= target]
            chosen.append(min(slow, key=lambda p: (p.dsps(budget.dsp_bits), folding_cost(p), p.cycles)))
        return chosen

    def fewest_luts(target):
        chosen = []
        for plans, h in zip(options, hand):
            slow = [p for p, c in plans if c <= target] or [min(plans, key=lambda pc: pc[1])[0]]
            slow += [plan_engine(p.layer, dataclasses.replace(p.folding, requant=_requant_cycles(p, target - h)))
                     for p in slow]
            chosen.append(min(slow, key=lambda p: (engine_luts(p), p.dsps(budget.dsp_bits), p.cycles)))
        return chosen

    def within_dsps(target):
        # the fewest predicted LUTs per layer, then trade LUTs for DSPs where it costs the fewest LUTs per DSP saved
        # (a slower, serial requantiser; fewer multiplier lanes) until the DSPs fit
        variants = []
        for plans, h in zip(options, hand):
            fit_t = [p for p, c in plans if c <= target] or [min(plans, key=lambda pc: pc[1])[0]]
            variants.append(fit_t + [plan_engine(p.layer, dataclasses.replace(
                p.folding, requant=_requant_cycles(p, target - h))) for p in fit_t])
        chosen = [min(v, key=lambda p: (engine_luts(p), p.dsps(budget.dsp_bits))) for v in variants]
        while sum(p.dsps(budget.dsp_bits) for p in chosen) > budget.dsps:
            moves = [((engine_luts(q) - engine_luts(chosen[i])) / (chosen[i].dsps(budget.dsp_bits) -
                                                                   q.dsps(budget.dsp_bits)), i, q)
                     for i, v in enumerate(variants) for q in v
                     if q.dsps(budget.dsp_bits) < chosen[i].dsps(budget.dsp_bits)]
            if not moves:
                break
            _, i, q = min(moves, key=lambda move: move[0])
            chosen[i] = q
        return chosen

    def needs(plans):
        return (sum(p.dsps(budget.dsp_bits) for p in plans), cost.luts(plans) or 0.0,
                sum(cost.block_ram(p)[0] for p in plans))

    def fits(need):
        dsp, lut, bram = need
        return (dsp <= budget.dsps and (budget.luts is None or lut <= budget.luts)
                and (budget.bram_bits is None or bram <= budget.bram_bits))

    least = None                     # the least each resource needed over every folding tried, with its plans
    for target in sorted({c for plans in options for _, c in plans if c >= fastest}):
        for choose in (cheapest, fewest_dsps, fewest_luts, within_dsps):
            plans = choose(target)
            need = needs(plans)
            if fits(need):
                return Folding(tuple(p.folding for p in plans))
            least = [(n, plans) for n in need] if least is None else \
                [min(old, (n, plans), key=lambda x: x[0]) for old, n in zip(least, need)]
    (dsp, _), (lut, _), (bram, bram_plans) = least
    if budget.luts is None and budget.bram_bits is None:
        raise ValueError(f"Network must fit {budget.dsps} DSPs: its slowest folding still needs {dsp}")
    offer = [f"{budget.dsps} DSPs"] + ([f"{budget.luts} LUTs"] if budget.luts is not None else []) + \
        ([f"{budget.bram_bits / 1024:g} kbit of block RAM"] if budget.bram_bits is not None else [])
    short = [f"{dsp} DSPs"] if dsp > budget.dsps else []
    if budget.luts is not None and lut > budget.luts:
        short.append(f"{lut:.0f} LUTs (predicted by hw.network.cost)")
    if budget.bram_bits is not None and bram > budget.bram_bits:
        per_layer = ", ".join(f"layer {n}: {cost.block_ram(p)[0] / 1024:g} kbit" for n, p in enumerate(bram_plans)
                              if cost.block_ram(p)[0])
        short.append(f"{bram / 1024:g} kbit of block RAM ({per_layer})")
    still = (" and ".join(short) if short else
             f"{dsp} DSPs, {lut:.0f} LUTs and {bram / 1024:g} kbit, but never all at once")
    device = f"the {budget.device}'s " if budget.device else ""
    raise ValueError(f"Network must fit {device}{', '.join(offer[:-1])} and {offer[-1]}: its smallest foldings "
                     f"still need {still}")

def engine_luts(plan) -> float:
    """The predicted LUTs one engine adds (:func:`hw.network.cost.luts` of the engine alone, without the model's
    intercept): what the budget folding minimises per layer."""
    alone, nothing = cost.luts([plan]), cost.luts([])
    return 0.0 if alone is None else alone - (nothing or 0.0)
