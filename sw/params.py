"""Parameter-set plumbing shared by every format and PE.

A parameter set is a frozen dataclass that also inherits :class:`Params`. It validates itself in
``__post_init__`` with the ``check_*`` helpers below, exposes derived values as properties and
round-trips through JSON. The same object drives the golden model, the generator, the testbench and
the synthesis flow, so a value is derived in exactly one place.

Error messages follow one grammar: ``"<Subject> must be <constraint>, not <value!r>"``; TypeError for
a wrong type, ValueError for a bad value or a conflicting combination.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from collections.abc import Mapping
from typing import Any

__all__ = ["Params", "Spec", "TargetFacts", "at_target", "check_int", "check_bool", "check_choice"]


def check_int(subject: str, value: Any, *, min: int | None = None, max: int | None = None) -> None:
    """Raise unless ``value`` is an int (not a bool) within ``[min, max]``.

    >>> check_int("Lanes", 0, min=1)
    Traceback (most recent call last):
    ...
    ValueError: Lanes must be a positive integer, not 0
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{subject} must be an integer, not {value!r}")
    if min is not None and max is not None and not (min <= value <= max):
        raise ValueError(f"{subject} must be an integer from {min} to {max}, not {value!r}")
    if min is not None and value < min:
        what = {0: "a non-negative integer", 1: "a positive integer"}.get(min, f"an integer >= {min}")
        raise ValueError(f"{subject} must be {what}, not {value!r}")
    if max is not None and value > max:
        raise ValueError(f"{subject} must be an integer <= {max}, not {value!r}")


def check_bool(subject: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{subject} must be a bool, not {value!r}")


def check_choice(subject: str, value: Any, choices: typing.Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{subject} must be one of {allowed}, not {value!r}")


@dataclasses.dataclass(frozen=True)
class Spec:
    """One parameter declared once: how its errors name it, its doc, its type and its range.

    A parameter shared by several parameter sets (``act_bits`` of every dot-product PE) is a module-level
    ``Spec``; each set declares its field with :meth:`field` and checks it with
    :meth:`Params.check_fields`, so the name, the range, the check and the doc live in one place.

    Parameters
    ----------
    subject : str
        The parameter as its error messages name it, e.g. ``"Activation bits (act_bits)"``.
    doc : str
        One line for ``peforge list`` (the field's ``metadata["doc"]``).
    kind : type
        ``int`` (checked with :func:`check_int`), ``bool`` (:func:`check_bool`) or ``str`` (one of
        ``choices``, :func:`check_choice`).
    min, max : int or None
        Range of an ``int`` parameter (inclusive; None: unbounded).
    choices : tuple of str
        The values a ``str`` parameter may take. A ``str`` parameter that stands for a target fact has the
        choice ``"target"`` (the target's value, once the flow knows the target) and ``portable`` choices that
        every target accepts; any other choice is accepted only by the target whose value it is
        (:meth:`for_target`).
    target : str or None
        A fact of the synthesis target this parameter stands for (an attribute of ``synth.Target``, e.g.
        ``"dsp_bits"``): the synthesis flow sets it for the target it builds for; elsewhere the default
        holds.

    Examples
    --------
    >>> LANES = Spec("Lanes", "elements per beat", min=1, max=256)
    >>> LANES.check(0)
    Traceback (most recent call last):
    ...
    ValueError: Lanes must be an integer from 1 to 256, not 0
    """

    subject: str
    doc: str
    kind: type = int
    min: int | None = None
    max: int | None = None
    target: str | None = None
    choices: tuple[str, ...] = ()
    portable: tuple[str, ...] = ()

    def __post_init__(self):
        check_choice("Spec kind", self.kind, (int, bool, str))
        if (self.kind is str) != bool(self.choices):
            raise ValueError(f"Spec choices must be given for a str parameter and only for one, not {self.choices!r}")

    def for_target(self, value: Any, fact: Any, target: str) -> Any:
        """The value this parameter takes on a target whose fact (``getattr(target, self.target)``) is ``fact``.

        An ``int`` fact replaces the value. A ``str`` parameter keeps a ``portable`` value or the target's own,
        and turns ``"target"`` into ``fact``; another target's value raises ``ValueError`` naming what
        ``target`` allows.
        """
        if self.kind is not str or value == "target":
            return fact
        if value in self.portable or value == fact:
            return value
        allowed = ", ".join(repr(c) for c in dict.fromkeys(("target", *self.portable, fact)))
        raise ValueError(f"{self.subject} must be one of {allowed} for {target}, not {value!r}")

    def field(self, default: Any) -> Any:
        """A dataclass field with this spec: ``lanes: int = LANES.field(8)``."""
        return dataclasses.field(default=default, metadata={"doc": self.doc, "spec": self})

    def check(self, value: Any, *, min: int | None = None, max: int | None = None) -> None:
        """Raise the one-line error unless ``value`` is legal; ``min``/``max`` narrow the range for one
        owner (nm-sparse's ``max_len`` starts at its group size ``M``)."""
        if self.kind is bool:
            check_bool(self.subject, value)
        elif self.kind is str:
            check_choice(self.subject, value, self.choices)
        else:
            check_int(self.subject, value, min=self.min if min is None else min,
                      max=self.max if max is None else max)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclasses.dataclass(frozen=True)
class TargetFacts:
    """The facts of a synthesis target that parameters stand for (a :class:`Spec`'s ``target``), named by the target:
    what ``synth.Target.facts()`` gives a design that must know its target without importing ``synth`` (a compiled
    network's slots). Round-trips through :meth:`to_dict` / :meth:`from_dict`.

    Raises
    ------
    TypeError, ValueError
        ``"Target facts must be a mapping of name, dsp_bits, dsp_cell, carry_cell, not ..."``.
    """

    name: str
    dsp_bits: int
    dsp_cell: str
    carry_cell: str

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Target name must be a non-empty string, not {self.name!r}")
        check_int("Target DSP bits (dsp_bits)", self.dsp_bits, min=2, max=64)
        for name in ("dsp_cell", "carry_cell"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"Target {name} must be a string, not {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TargetFacts:
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(data, Mapping) or sorted(data) != sorted(names):
            raise ValueError(f"Target facts must be a mapping of {', '.join(names)}, not {data!r}")
        return cls(**data)


def at_target(params, target):
    """``params`` (a :class:`Params` or any dataclass, nested sets included) with every parameter that stands for
    a fact of ``target`` (a ``synth.Target`` or :class:`TargetFacts`: the fact is its attribute of the spec's
    ``target`` name) set to that target's value (:meth:`Spec.for_target`); ``params`` itself when nothing changes.
    ``synth.for_target`` is this with a target's name."""
    changes = {}
    for f in dataclasses.fields(params):
        spec, value = f.metadata.get("spec"), getattr(params, f.name)
        if spec is not None and spec.target is not None:
            changes[f.name] = spec.for_target(value, getattr(target, spec.target), target.name)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            nested = at_target(value, target)
            if nested is not value:
                changes[f.name] = nested
    if all(getattr(params, name) == value for name, value in changes.items()):
        return params
    return dataclasses.replace(params, **changes)


def _parse_scalar(name: str, text: str, kind: Any) -> Any:
    """Turn a command-line string into a value of ``kind`` (int, bool, str, float, or ``X | None``)."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if args and type(None) in typing.get_args(kind):
        if text.strip().lower() in ("none", "auto", ""):
            return None
        kind = args[0]
    if kind is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"Parameter {name!r} must be true or false, not {text!r}")
    if kind is int:
        try:
            return int(text, 0)
        except ValueError:
            raise ValueError(f"Parameter {name!r} must be an integer, not {text!r}") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"Parameter {name!r} must be a number, not {text!r}") from None
    return text


class Params:
    """Mixin for frozen dataclass parameter sets (see the module docstring).

    Fields may carry ``metadata={"doc": "..."}``; :meth:`describe` lists them for ``peforge list``.
    Nested parameter sets (a PE's number format) are addressed with dotted names (``fmt.bits``).
    """

    def check_fields(self) -> None:
        """Check every field declared with a :class:`Spec`, in declaration order."""
        for f in dataclasses.fields(self):
            spec = f.metadata.get("spec")
            if spec is not None:
                spec.check(getattr(self, f.name))

    # -- construction from outside data ---------------------------------------------------------
    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Every field's type (resolved annotations): a nested :class:`Params` field's type is its class."""
        return typing.get_type_hints(cls)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """Build from a plain mapping (as produced by :meth:`to_dict`), rejecting unknown keys."""
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__} must be given a mapping, not {data!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in data if k not in names]
        if unknown:
            raise ValueError(
                f"Parameter {unknown[0]!r} is not a parameter of {cls.__name__}; "
                f"allowed: {', '.join(names)}")
        types = cls.field_types()
        kwargs = {}
        for key, value in data.items():
            kind = types[key]
            if isinstance(kind, type) and issubclass(kind, Params) and isinstance(value, Mapping):
                value = kind.from_dict(value)
            kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str):
        data = json.loads(text)
        if isinstance(data, Mapping) and "params" in data and "pe" in data:
            data = data["params"]  # a generated manifest
        return cls.from_dict(data)

    def with_settings(self, settings: Mapping[str, str]):
        """Return a copy with ``{"name": "text"}`` overrides parsed from strings (the CLI's ``--set``)."""
        data = self.to_dict()
        # A field whose default is None is derived from its siblings (SP2Format.m1 from bits) or from
        # what its owner contains (CirculantParams.arch from fmt.block): when a parameter at or below its
        # level is set and the field itself is not, derive it again instead of keeping the old value.
        for dotted in settings:
            owner_cls, node, prefix = type(self), data, ""
            for part in dotted.split(".")[:-1] + [None]:
                for f in dataclasses.fields(owner_cls):
                    name = f"{prefix}{f.name}"
                    if f.default is None and name not in settings:
                        node[f.name] = None
                kind = owner_cls.field_types().get(part) if part is not None else None
                if not (isinstance(kind, type) and issubclass(kind, Params)):
                    break
                owner_cls, node, prefix = kind, node[part], f"{prefix}{part}."
        for dotted, text in settings.items():
            path = dotted.split(".")
            owner_cls, node = type(self), data
            for part in path[:-1]:
                kind = owner_cls.field_types().get(part)
                if not (isinstance(kind, type) and issubclass(kind, Params)):
                    raise ValueError(f"Parameter {dotted!r} is not a parameter of {type(self).__name__}; "
                                     f"allowed: {', '.join(self.parameter_names())}")
                owner_cls, node = kind, node[part]
            leaf = path[-1]
            kind = owner_cls.field_types().get(leaf) if dataclasses.is_dataclass(owner_cls) else None
            if kind is None or (isinstance(kind, type) and issubclass(kind, Params)):
                raise ValueError(f"Parameter {dotted!r} is not a parameter of {type(self).__name__}; "
                                 f"allowed: {', '.join(self.parameter_names())}")
            node[leaf] = _parse_scalar(dotted, text, kind)
        return type(self).from_dict(data)

    # -- export ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, Params) else value
        return out

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, **kwargs)

    def digest(self, length: int = 12) -> str:
        """A short hash naming this exact configuration (build directories, caches)."""
        text = type(self).__name__ + ":" + self.to_json()
        return hashlib.sha256(text.encode()).hexdigest()[:length]

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    # -- documentation --------------------------------------------------------------------------
    @classmethod
    def parameter_names(cls, prefix: str = "") -> list[str]:
        names = []
        types = cls.field_types()
        for f in dataclasses.fields(cls):
            kind = types[f.name]
            if isinstance(kind, type) and issubclass(kind, Params):
                names += kind.parameter_names(prefix + f.name + ".")
            else:
                names.append(prefix + f.name)
        return names

    def describe(self, prefix: str = "") -> list[tuple[str, str, Any, str]]:
        """``(dotted name, type name, value, doc)`` for every leaf parameter of this instance."""
        rows = []
        types = type(self).field_types()
        for f in dataclasses.fields(self):
            kind, value = types[f.name], getattr(self, f.name)
            if isinstance(value, Params):
                rows += value.describe(prefix + f.name + ".")
            else:
                rows.append((prefix + f.name, getattr(kind, "__name__", str(kind)), value,
                             f.metadata.get("doc", "")))
        return rows
