"""Synthesis flows: yosys + nextpnr (YoWASP) on ECP5 and iCE40, with a pin-limited wrapper."""

from .flow import (TARGETS, DoesNotFit, Netlist, SynthError, SynthResult, Target, ToolTimeout, for_target, get_target,
                   synthesize, synthesize_netlist)
from .pe import check_fits, netlist_network, netlist_pe, synthesize_network, synthesize_pe
from .wrapper import PinWrapper

__all__ = ["TARGETS", "Target", "SynthResult", "SynthError", "DoesNotFit", "ToolTimeout", "Netlist", "synthesize",
           "synthesize_netlist", "synthesize_pe", "synthesize_network", "netlist_pe", "netlist_network", "check_fits",
           "for_target", "get_target", "PinWrapper"]
