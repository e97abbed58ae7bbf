"""The designs the runner builds and runs, and how a cocotb test reads its design back from the environment.

A *design* is anything with ``name``, ``top``, ``tb_module``, ``params``, ``key()`` (its build directory's name),
``is_written_in(directory)``, ``write(directory)`` (the Verilog as ``<top>.v``), ``component()`` and ``config()``:
:class:`PEDesign` (a registered PE and its params) and :class:`NetworkDesign` (a compiled network) here, the
board core and the DSP cells in their own modules. The configuration reaches the cocotb side as JSON in
``$PEFORGE_CONFIG`` (:data:`CONFIG_ENV`), never read back from the DUT.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..hw import registry
from ..hw.network import TOP, CompiledNetwork, load_compiled
from ..hw.verilog import design_is_current, write_design

__all__ = ["CONFIG_ENV", "PEDesign", "NetworkDesign", "load_design", "load_config"]

CONFIG_ENV = "PEFORGE_CONFIG"


@dataclass(frozen=True)
class PEDesign:
    """A registered PE with its params: the design :func:`build_design` compiles and :func:`run_design` runs.

    Any object with the same members can be built and run (``tb.network.NetworkDesign`` is the other one):
    ``name``, ``top``, ``tb_module``, ``params``, ``key()`` (the build directory's name),
    ``is_written_in(directory)``, ``write(directory)`` (the Verilog as ``<top>.v``), ``component()`` (the
    Amaranth component, whose stream members the testbench drives) and ``config()`` (what the cocotb side reads
    to rebuild the design, :func:`load_design`).
    """

    pe: object
    params: object

    def __post_init__(self):
        if not isinstance(self.params, self.pe.params_cls):
            raise TypeError(f"Params for {self.pe.name} must be {self.pe.params_cls.__name__}, not {self.params!r}")

    name = property(lambda self: self.pe.name)
    top = property(lambda self: self.pe.top)
    tb_module = property(lambda self: self.pe.tb_module)

    def key(self) -> str:
        return f"{self.pe.name}-{self.params.digest()}"

    def is_written_in(self, directory: Path) -> bool:
        return design_is_current(self.pe, self.params, directory)

    def write(self, directory: Path) -> None:
        write_design(self.pe, self.params, directory)

    def component(self):
        return self.pe.component_cls(self.params)

    def config(self) -> dict:
        return {"pe": self.pe.name, "params": self.params.to_dict()}


@dataclasses.dataclass(frozen=True)
class NetworkDesign:
    """A compiled network as a design the runner builds (see :class:`tb.runner.PEDesign`)."""

    compiled: CompiledNetwork

    name = "network"
    top = TOP
    tb_module = "peforge.tb.network"

    def key(self) -> str:
        return f"network-{self.compiled.digest()}"

    def is_written_in(self, directory: Path) -> bool:
        return self.compiled.is_written_in(directory)

    def write(self, directory: Path) -> None:
        self.compiled.write(directory)

    @property
    def params(self) -> CompiledNetwork:
        return self.compiled

    def component(self):
        return self.compiled.build()

    def config(self) -> dict:
        return {"design": "network"}



def load_design():
    """Inside a cocotb test: ``(design, config)`` from the environment: a :class:`PEDesign`, or for a compiled
    network (``"design": "network"``) a :class:`tb.network.NetworkDesign` read from the build directory; a
    configuration with ``"loader": "<module>:<function>"`` (:class:`tb.unrolled.UnrolledDesign`) is rebuilt by
    that function from the configuration."""
    config = json.loads(os.environ[CONFIG_ENV])
    if "loader" in config:   # a design of another module: "<module>:<function>" rebuilds it from the configuration
        module, _, function = config["loader"].partition(":")
        return getattr(importlib.import_module(module), function)(config), config
    if config.get("design") == "network":
        return NetworkDesign(load_compiled(config["build_dir"])), config
    pe = registry.get(config["pe"])
    return PEDesign(pe, pe.params_cls.from_dict(config["params"])), config


def load_config():
    """Inside a cocotb test of a PE: ``(pe, params, config)`` from the environment."""
    config = json.loads(os.environ[CONFIG_ENV])
    pe = registry.get(config["pe"])
    return pe, pe.params_cls.from_dict(config["params"]), config
