"""Synthesis flows: yosys + nextpnr (YoWASP) on ECP5 and iCE40, with a pin-limited wrapper."""

from .flow import TARGETS, SynthError, SynthResult, Target, for_target, synthesize
from .pe import synthesize_network, synthesize_pe
from .wrapper import PinWrapper

__all__ = ["TARGETS", "Target", "SynthResult", "SynthError", "synthesize", "synthesize_pe", "synthesize_network",
           "for_target", "PinWrapper"]
