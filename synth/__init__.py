"""Synthesis flows: yosys + nextpnr (YoWASP) on ECP5 and iCE40, with a pin-limited wrapper."""

from .flow import TARGETS, DoesNotFit, SynthError, SynthResult, Target, ToolTimeout, for_target, synthesize
from .pe import check_fits, synthesize_network, synthesize_pe
from .wrapper import PinWrapper

__all__ = ["TARGETS", "Target", "SynthResult", "SynthError", "DoesNotFit", "ToolTimeout", "synthesize",
           "synthesize_pe", "synthesize_network", "check_fits", "for_target", "PinWrapper"]
