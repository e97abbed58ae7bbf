"""Synthesis of a registered PE configuration or of a compiled network, each in its own build directory.

``build/synth/<pe>-<params digest>-<target>`` (``network-<digest>-<target>``) holds every file of the run, so
configurations never share outputs and a rerun of the same configuration finds its previous files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..hw.verilog import build_root

from .flow import DoesNotFit, Netlist, SynthResult, for_target, get_target, synthesize, synthesize_netlist

__all__ = ["synthesize_pe", "synthesize_network", "check_fits", "netlist_pe", "netlist_network"]


def synthesize_pe(pe, params, *, target: str, seeds: Iterable[int] = (1,), wrap: bool | None = None,
                  freq: float | None = None, progress=None, **options) -> SynthResult:
    """Synthesise ``pe`` (a :class:`hw.registry.PE`) built from ``params`` for ``target``.

    The target's facts (its DSP operand width) replace those of ``params`` first (:func:`synth.for_target`),
    so what is built, and the digest naming its directory, are the target's. ``progress`` is anything with a
    ``step(text)`` method (:class:`peforge.progress.Progress`) or None; the other arguments, and ``options``
    (``seed_timeout_s``, ``spare_seeds``, ``nextpnr_args``), are those of :func:`synth.synthesize`.
    """
    params = for_target(params, target)
    directory = build_root() / "synth" / f"{pe.name}-{params.digest()}-{target}"
    step: Callable[[str], None] | None = progress.step if progress is not None else None
    return synthesize(pe.build(params), name=pe.top, target=target, build_dir=directory,
                      seeds=tuple(seeds), wrap=wrap, freq_mhz=freq, progress=step, **options)


def check_fits(compiled, target: str) -> None:
    """Refuse, before any tool runs, a compiled network whose weight memories exceed the target's block RAM.

    Raises
    ------
    DoesNotFit
        ``"Network 1a2b3c4d5e6f must fit the iCE40UP5K's block RAM (120 kbit): its weight memories hold
        300 kbit (layer 0: 256 kbit, layer 1: 44 kbit)"``.
    ValueError
        An unknown target.
    """
    tgt = get_target(target)
    bits = [p.weight_bits for p in compiled.plans]
    if sum(bits) > tgt.bram_bits:
        per_layer = ", ".join(f"layer {n}: {b / 1024:g} kbit" for n, b in enumerate(bits))
        raise DoesNotFit(f"Network {compiled.digest()} must fit the {tgt.device}'s block RAM "
                         f"({tgt.bram_bits / 1024:g} kbit): its weight memories hold {sum(bits) / 1024:g} kbit "
                         f"({per_layer})")


def synthesize_network(compiled, *, target: str, seeds: Iterable[int] = (1,), wrap: bool | None = None,
                       freq: float | None = None, progress=None) -> SynthResult:
    """Synthesise a :class:`hw.network.CompiledNetwork` (the whole accelerator, block RAM counted) for
    ``target``, built for it (:meth:`hw.network.CompiledNetwork.for_target`: the slots' multipliers are the
    target's DSP primitive with its registers); the arguments are those of :func:`synthesize_pe`.

    Raises
    ------
    DoesNotFit
        Its weights exceed the target's block RAM (:func:`check_fits`, before any tool runs), or nextpnr
        finds a resource over the device's count.
    """
    check_fits(compiled, target)
    compiled = compiled.for_target(get_target(target).facts())
    directory = build_root() / "synth" / f"network-{compiled.digest()}-{target}"
    step: Callable[[str], None] | None = progress.step if progress is not None else None
    return synthesize(compiled.build(), name=compiled.top, target=target, build_dir=directory,
                      seeds=tuple(seeds), wrap=wrap, freq_mhz=freq, progress=step)


def netlist_pe(pe, params, *, target: str, progress=None) -> Netlist:
    """:func:`synthesize_pe` with yosys only (:func:`synth.flow.synthesize_netlist`): does it synthesise, and to
    which cells. Its directory is ``build/synth/<pe>-<digest>-<target>-yosys``."""
    params = for_target(params, target)
    directory = build_root() / "synth" / f"{pe.name}-{params.digest()}-{target}-yosys"
    return synthesize_netlist(pe.build(params), name=pe.top, target=target, build_dir=directory,
                              progress=progress.step if progress is not None else None)


def netlist_network(compiled, *, target: str, progress=None) -> Netlist:
    """:func:`synthesize_network` with yosys only, in ``build/synth/network-<digest>-<target>-yosys``."""
    check_fits(compiled, target)
    compiled = compiled.for_target(get_target(target).facts())
    directory = build_root() / "synth" / f"network-{compiled.digest()}-{target}-yosys"
    return synthesize_netlist(compiled.build(), name=compiled.top, target=target, build_dir=directory,
                              progress=progress.step if progress is not None else None)
