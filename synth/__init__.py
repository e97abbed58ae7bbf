"""Synthesis flows: yosys + nextpnr (YoWASP) on ECP5 and iCE40, with a pin-limited wrapper."""

from .flow import TARGETS, SynthError, SynthResult, Target, synthesize
from .wrapper import PinWrapper

__all__ = ["TARGETS", "Target", "SynthResult", "SynthError", "synthesize", "PinWrapper"]
