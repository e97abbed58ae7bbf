"""Synthesis of a registered PE configuration or of a compiled network, each in its own build directory.

``build/synth/<pe>-<params digest>-<target>`` (``network-<digest>-<target>``) holds every file of the run, so
configurations never share outputs and a rerun of the same configuration finds its previous files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from hw.verilog import build_root

from .flow import SynthResult, for_target, synthesize

__all__ = ["synthesize_pe", "synthesize_network"]


def synthesize_pe(pe, params, *, target: str, seeds: Iterable[int] = (1,), wrap: bool | None = None,
                  freq: float | None = None, progress=None) -> SynthResult:
    """Synthesise ``pe`` (a :class:`hw.registry.PE`) built from ``params`` for ``target``.

    The target's facts (its DSP operand width) replace those of ``params`` first (:func:`synth.for_target`),
    so what is built, and the digest naming its directory, are the target's. ``progress`` is anything with a
    ``step(text)`` method (:class:`peforge.progress.Progress`) or None; the other arguments are those of
    :func:`synth.synthesize`.
    """
    params = for_target(params, target)
    directory = build_root() / "synth" / f"{pe.name}-{params.digest()}-{target}"
    step: Callable[[str], None] | None = progress.step if progress is not None else None
    return synthesize(pe.build(params), name=pe.top, target=target, build_dir=directory,
                      seeds=tuple(seeds), wrap=wrap, freq_mhz=freq, progress=step)


def synthesize_network(compiled, *, target: str, seeds: Iterable[int] = (1,), wrap: bool | None = None,
                       freq: float | None = None, progress=None) -> SynthResult:
    """Synthesise a :class:`hw.network.CompiledNetwork` (the whole accelerator, block RAM counted) for
    ``target``; the arguments are those of :func:`synthesize_pe`."""
    directory = build_root() / "synth" / f"network-{compiled.digest()}-{target}"
    step: Callable[[str], None] | None = progress.step if progress is not None else None
    return synthesize(compiled.build(), name=compiled.top, target=target, build_dir=directory,
                      seeds=tuple(seeds), wrap=wrap, freq_mhz=freq, progress=step)
