"""A compiled network: the network and its folding, what ``peforge compile`` writes and every later step reads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ...sw import network as net
from ...sw.params import TargetFacts

from .accelerator import Accelerator, input_order
from .folding import Budget, Folding, LayerFolding
from .plan import EnginePlan
from .engines import plan_engine
from .search import default_folding, handoffs, network_interval, paced, plan_network

__all__ = ["CompiledNetwork", "load_compiled", "COMPILED", "TOP", "MEMORIES"]

#: File names inside a compiled network directory (beside the network's own ``network.json`` / ``weights.npz``).
COMPILED = "compiled.json"
TOP = "accelerator"
MEMORIES = "memories"


@dataclass(frozen=True, eq=False)
class CompiledNetwork:
    """A network and its folding: what ``peforge compile`` writes and every later step reads.

    ``digest()`` names the pair (the network's arrays and manifest, and the folding), so simulator builds and
    synthesis runs are cached by it. ``write(directory)`` writes ``accelerator.v``, ``compiled.json`` (folding,
    per-layer plan and predictions), the network (``network.json`` + ``weights.npz``) and one ``.hex`` image per
    weight memory (``memories/``, one word per line, for inspection; the Verilog holds the same contents).

    ``target`` (a :class:`sw.params.TargetFacts`, set by :meth:`for_target`: ``synth.synthesize_network``,
    ``peforge compile --target``) puts the slots' Params at that target's facts, so their multipliers are its DSP
    primitive with its registers (``hw.dsp``); ``write`` then adds the primitives' simulation models and lists them
    in ``accelerator.json`` (``sim_models``), so Verilator simulates the Verilog that synthesis reads. None: generic
    Verilog, multipliers inferred.
    """

    network: object
    folding: Folding
    target: TargetFacts | None = None

    name = "network"
    top = TOP

    def __post_init__(self):
        if not isinstance(self.network, net.Network):
            raise TypeError(f"Network must be a sw.network.Network, not {self.network!r}")
        if not isinstance(self.folding, Folding):
            raise TypeError(f"Folding must be a Folding, not {self.folding!r}")
        if self.target is not None and not isinstance(self.target, TargetFacts):
            raise TypeError(f"Compiled network target must be a sw.params.TargetFacts or None, not {self.target!r}")
        object.__setattr__(self, "_plans", plan_network(self.network, self.folding, self.target))
        # the plans fill in the fixed lanes/pes of circulant and crossbar layers
        object.__setattr__(self, "folding", Folding(tuple(p.folding for p in self._plans)))

    @classmethod
    def default(cls, network, budget: Budget | None = None) -> CompiledNetwork:
        """``network`` with its :func:`default_folding` (for a device's ``budget`` if given)."""
        return cls(network, default_folding(network, budget))

    @property
    def plans(self) -> tuple[EnginePlan, ...]:
        return self._plans

    @property
    def interval(self) -> int:
        """Predicted steady-state cycles between samples: the slowest engine's, each in its place
        (:func:`hw.network.search.network_interval`)."""
        return network_interval(self._plans)

    def digest(self, length: int = 12) -> str:
        text = self.network.digest(32) + json.dumps(self.folding.to_list(), sort_keys=True)
        if self.target is not None:   # (untargeted digests as before)
            text += json.dumps(self.target.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:length]

    def for_target(self, target: TargetFacts) -> CompiledNetwork:
        """This network and folding built for ``target`` (``synth.TARGETS[name].facts()``); itself if it already is.

        Raises
        ------
        ValueError
            ``"Compiled network target must be 'ice40-up5k' (it was compiled for it), not 'ecp5-85k'"``.
        """
        if not isinstance(target, TargetFacts):
            raise TypeError(f"Compiled network target must be a sw.params.TargetFacts, not {target!r}")
        if self.target == target:
            return self
        if self.target is not None:
            raise ValueError(f"Compiled network target must be {self.target.name!r} (it was compiled for it), "
                             f"not {target.name!r}")
        return CompiledNetwork(self.network, self.folding, target)

    def with_settings(self, settings: dict[str, str]) -> CompiledNetwork:
        """Refold: ``{"layer.0.lanes": "16", "layer.1.pes": "2"}`` (layers counted from 0), a layer's fields
        (``lanes``, ``pes``, ``requant``, ``impl``, ``reuse``) or its whole folding as
        :meth:`hw.network.folding.LayerFolding.text` writes it: ``{"layer.1": "u/reuse4"}``, ``{"layer.0": "8x2"}``.
        A layer's whole folding is set before its fields.

        Raises
        ------
        ValueError
            ``"Setting 'layer.3.lanes' must name a layer from 0 to 1, not 3"``,
            ``"Setting 'layer.0.width' must be layer.N.lanes, layer.N.pes, layer.N.requant, layer.N.impl or
            layer.N.reuse, not 'width'"``, ``"layer.0.lanes: Lanes must be an integer from 1 to 4096, not 0"``,
            ``"layer.1: Layer folding must be LANESxPES, LANESxPES/rCYCLES, u or u/reuseR, not '16'"``,
            ``"layer.1: Layer nm lanes must be a multiple of M = 4, not 6"``.
        """
        layers = list(self.folding.layers)
        whole: dict[int, tuple[str, str]] = {}
        fields: dict[int, dict[str, tuple[str, str]]] = {}
        for name, value in settings.items():
            parts = name.split(".")
            if len(parts) not in (2, 3) or parts[0] != "layer" or not parts[1].isdigit():
                raise ValueError(f"Setting {name!r} must be layer.N or layer.N.lanes, .pes, .requant, .impl or .reuse "
                                 f"(N from 0 to {len(layers) - 1}), not {name!r}")
            index = int(parts[1])
            if index >= len(layers):
                raise ValueError(f"Setting {name!r} must name a layer from 0 to {len(layers) - 1}, not {index}")
            if len(parts) == 2:
                whole[index] = (name, value)
                continue
            if parts[2] not in ("lanes", "pes", "requant", "impl", "reuse"):
                raise ValueError(f"Setting {name!r} must be layer.N.lanes, layer.N.pes, layer.N.requant, layer.N.impl "
                                 f"or layer.N.reuse, not {parts[2]!r}")
            fields.setdefault(index, {})[parts[2]] = (name, value)
        for index, (name, value) in whole.items():
            try:
                layers[index] = LayerFolding.parse(value)
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"{name}: {exc}") from None
        for index, items in fields.items():   # together: layer.N.impl=unrolled with layer.N.reuse=4
            try:
                layers[index] = layers[index].with_settings({key: value for key, (_, value) in items.items()})
            except (ValueError, TypeError) as exc:
                names = ", ".join(name for name, _ in items.values())
                raise type(exc)(f"{names}: {exc}") from None
        changed = set(whole) | set(fields)
        for index in sorted(changed):  # the layer's own rules (nm lanes a multiple of M, ...), naming it
            try:
                plan_engine(self.network.layers[index], layers[index])
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"layer.{index}: {exc}") from None
        return CompiledNetwork(self.network, Folding(tuple(layers)), self.target)

    def build(self) -> Accelerator:
        return Accelerator(self.network, self.folding, self.target)

    def cells(self) -> tuple[str, ...]:
        """The vendor primitives the accelerator instantiates (:func:`hw.cells.cells_used` of every slot)."""
        from ..cells import cells_used

        plans = [q for p in self._plans for q in (p, *p.parts)]
        return tuple(sorted({c for p in plans for s in p.slots for c in cells_used(s.params)}))

    def input_order(self):
        """The order the accelerator's input stream takes a sample's features in (:meth:`Accelerator.input_order`:
        ``x_flat[order]`` is what to send)."""
        return input_order(self.network, self._plans)

    def busy(self, interval: float) -> float | None:
        """Useful MACs / (multiplier lanes x ``interval``) of the slowest engine (:attr:`EnginePlan.macs`:
        ``in x out``, N:M layers only the kept ``n`` of every ``m`` weights); None if it has no multiplier
        lanes (circulant, crossbar) or ``interval`` is 0."""
        slowest = max(self._plans, key=lambda p: p.cycles)
        if not slowest.multipliers or not interval:
            return None
        return slowest.macs / (slowest.multipliers * interval)

    def summary(self) -> list[dict]:
        """Per layer: kind, scheme, sizes, folding and the predicted cycles per sample (``cycles``: in its place,
        :func:`hw.network.search.paced`)."""
        hand = handoffs(self.network.layers)
        return [{"layer": n, "kind": p.kind, "scheme": p.label, "impl": p.folding.impl, "reuse": p.folding.reuse,
                 "in": p.in_elements, "out": p.out_elements, "lanes": p.folding.lanes, "pes": p.folding.pes, "requant": p.folding.requant,
                 "slots": len(p.slots), "beats": p.beats,
                 "groups": p.groups, "multipliers": p.multipliers, "load_cycles": p.load_cycles,
                 "compute_cycles": p.compute_cycles, "drain_cycles": p.drain_cycles, "cycles": paced(p, h),
                 "pes_used": [s.pe for q in (p.parts or (p,)) for s in q.slots]}
                for n, (p, h) in enumerate(zip(self._plans, hand))]

    def manifest(self) -> dict:
        target = {} if self.target is None else {"target": self.target.to_dict()}
        return {"format": "peforge-compiled", "version": 1, "top": TOP, "digest": self.digest(),
                "network_digest": self.network.digest(), "folding": self.folding.to_list(), **target,
                "predicted_interval": self.interval, "layers": self.summary()}

    def write(self, directory) -> dict:
        """Write the compiled network into ``directory`` (see the class docstring); returns the manifest.

        Everything is generated first, then written into a temporary sibling directory; a new ``directory`` is
        that directory renamed. An existing one keeps the files peforge does not own; of its own it holds exactly
        this compile's afterwards (stale ``memories/*.hex`` of another network are removed). ``compiled.json``
        is removed first and written last, so a write that stops half-way never leaves a directory
        :func:`load_compiled` reads.

        Raises
        ------
        NotADirectoryError
            ``directory`` is an existing file.
        """
        import os
        import shutil
        import uuid

        from ..cells import sim_models
        from ..verilog import generator_fingerprint, to_verilog

        out = Path(directory)
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(out))
        manifest = {**self.manifest(), "generator": generator_fingerprint()}
        files = {}
        for n, plan in enumerate(self._plans):
            for s, slot in enumerate(plan.slots):
                if not plan.engine.weight_fields(slot):   # crossbar cells sit in the arrays
                    continue
                words = plan.engine.weight_words(plan, slot)
                digits = max(1, -(-max(w.bit_length() for w in words) // 4)) if words else 1
                files[f"{MEMORIES}/layer{n}_slot{s}.hex"] = "".join(f"{w:0{digits}x}\n" for w in words)
        files[f"{TOP}.v"] = to_verilog(self.build(), TOP)
        models = sim_models(self.cells())   # the primitives' Verilator models (hw.verilog.sim_sources reads the list)
        files.update(models)
        files[f"{TOP}.json"] = json.dumps({"sim_models": sorted(models)}) + "\n"
        files[COMPILED] = json.dumps(manifest, indent=1) + "\n"
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = out.parent / f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        staging.mkdir()  # (mkdir, not mkdtemp: the directory gets the umask's mode, as ``out`` would)
        try:
            self.network.save(staging)
            (staging / MEMORIES).mkdir()
            for name, text in files.items():
                (staging / name).write_text(text)
            if not out.exists():
                staging.rename(out)
                return manifest
            (out / COMPILED).unlink(missing_ok=True)
            (out / MEMORIES).mkdir(exist_ok=True)
            for old in (out / MEMORIES).glob("*.hex"):
                if f"{MEMORIES}/{old.name}" not in files:
                    old.unlink()
            for name in [net.MANIFEST, net.WEIGHTS, *files]:  # COMPILED is the last of ``files``
                (staging / name).replace(out / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return manifest

    def is_written_in(self, directory) -> bool:
        """Whether ``directory`` already holds this compiled network, written by this very generator."""
        from ..verilog import generator_fingerprint

        try:
            manifest = json.loads((Path(directory) / COMPILED).read_text())
        except (OSError, ValueError):
            return False
        return (manifest.get("digest") == self.digest() and manifest.get("generator") == generator_fingerprint()
                and (Path(directory) / f"{TOP}.v").is_file()
                and all((Path(directory) / f"{cell}.v").is_file() for cell in self.cells()))


def load_compiled(directory) -> CompiledNetwork:
    """Read a directory ``peforge compile`` wrote: the network and its folding.

    Raises
    ------
    ValueError
        ``"out/compiled.json must exist (write it with peforge compile), not missing"``, the errors of
        :func:`sw.network.load`, ``"out/compiled.json: folding must ..."``.
    """
    path = Path(directory)
    file = path / COMPILED
    if not file.is_file():
        raise ValueError(f"Compiled network {file} must exist (write it with `peforge compile`), not missing")
    try:
        data = json.loads(file.read_text())
    except ValueError as exc:
        raise ValueError(f"{file} must be JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != "peforge-compiled" or data.get("version") != 1:
        raise ValueError(f"{file}: format must be 'peforge-compiled' version 1, not "
                         f"{data.get('format') if isinstance(data, dict) else data!r}")
    network = net.load(path)
    try:
        folding = Folding.from_list(data.get("folding"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{file}: folding: {exc}") from None
    try:
        target = None if data.get("target") is None else TargetFacts.from_dict(data["target"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{file}: target: {exc}") from None
    try:
        return CompiledNetwork(network, folding, target)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{file}: folding: {exc}") from None
