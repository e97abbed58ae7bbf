"""The registry of PEs: name -> parameters, generator, testbench and the scheme's source.

Everything that iterates over PEs (the CLI, ``make demo``, the test grid) reads this table, so a new PE
is added here once.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

from ..hw.circulant_fft import CirculantFFT, CirculantParams
from ..hw.crossbar import CrossbarController, CrossbarParams, CrossbarSystem
from ..hw.fixed_mac import FixedMac, FixedMacParams
from ..hw.nm_sparse import NMSparse, NMSparseParams
from ..hw.sp2_mac import SP2Mac, SP2MacParams

__all__ = ["PE", "REGISTRY", "get", "register"]


@dataclass(frozen=True)
class PE:
    """One registered processing element."""

    name: str           #: command-line name, e.g. ``"sp2-mac"``
    summary: str        #: one line for ``peforge list``
    params_cls: type    #: frozen Params dataclass; its defaults are the PE's defaults
    component_cls: type #: ``wiring.Component`` built from an instance of ``params_cls``
    tb_module: str      #: cocotb test module (also holds the batch API)
    source: str         #: where the scheme comes from

    @property
    def top(self) -> str:
        """Verilog module name of the generated design."""
        return self.name.replace("-", "_")

    def default_params(self):
        return self.params_cls()

    def build(self, params):
        return self.component_cls(params)


REGISTRY: dict[str, PE] = {pe.name: pe for pe in [
    PE("sp2-mac", "dot product with sum-of-power-of-2 weights: two shifts and an add per lane",
       SP2MacParams, SP2Mac, "peforge.tb.sp2_mac", "Mix and Match (Chang et al., HPCA 2021), RMSMP"),
    PE("fixed-mac", "dot product with signed fixed-point weights (DSP or LUT multipliers): the baseline",
       FixedMacParams, FixedMac, "peforge.tb.fixed_mac", "fixed-point baseline for sp2-mac"),
    PE("nm-sparse", "N:M structured-sparse dot product (index muxes into N multipliers per group), dense mode",
       NMSparseParams, NMSparse, "peforge.tb.nm_sparse", "SAT/BDWP (Fang et al., TCAD 2023), NVIDIA Ampere 2:4"),
    PE("circulant-fft", "block-circulant matrix-vector product in the frequency domain: FFT, complex products, "
       "accumulation, IFFT", CirculantParams, CirculantFFT, "peforge.tb.circulant_fft",
       "CirCNN (Ding et al., MICRO 2017), C-LSTM (Wang et al., FPGA 2018), E-RNN (Li et al., HPCA 2019)"),
    PE("crossbar", "FORMS ReRAM crossbar controller (polarised sub-array columns, bit-serial inputs, zero-skipping, "
       "shift-and-add) with an ideal-array emulator", CrossbarParams, CrossbarSystem, "peforge.tb.crossbar",
       "FORMS (Yuan et al., ISCA 2021) vs ISAAC (Shafiee et al., ISCA 2016) / PUMA (Ankit et al., ASPLOS 2019)"),
    PE("crossbar-controller", "the crossbar PE's controller alone, its array port at the top level (simulated "
       "against a Python array model)", CrossbarParams, CrossbarController, "peforge.tb.crossbar",
       "FORMS (Yuan et al., ISCA 2021)"),
]}


def register(pe: PE) -> PE:
    """Add a PE (used by plugins: modules named in ``$PEFORGE_PLUGINS``, comma-separated)."""
    if pe.name in REGISTRY and REGISTRY[pe.name] != pe:
        raise ValueError(f"PE name must be unique, not {pe.name!r} (already registered)")
    REGISTRY[pe.name] = pe
    return pe


def _load_plugins() -> None:
    for module in filter(None, os.environ.get("PEFORGE_PLUGINS", "").split(",")):
        importlib.import_module(module.strip())


def get(name: str) -> PE:
    """Look a PE up by name, with the one-line error the CLI prints."""
    try:
        return REGISTRY[name]
    except KeyError:
        allowed = ", ".join(repr(n) for n in REGISTRY)
        raise ValueError(f"PE must be one of {allowed}, not {name!r}") from None


_load_plugins()
