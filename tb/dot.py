"""The case of the dot-product PEs (``sp2-mac``, ``fixed-mac``) and their shared batch API.

A vector is ``{"acts": [K], "weights": [K]}`` where ``weights`` holds the raw weight field (SP2 codes
or fixed-point integers), sent as ``ceil(K / lanes)`` beats with ``last`` on the final one; the PE answers
one ``y``. The PE module (``tb/sp2_mac.py``, ``tb/fixed_mac.py``) subclasses :class:`DotCase` with its
golden function and the weight values worth enumerating; the tests are :mod:`tb.bench`'s.
"""

from __future__ import annotations

import numpy as np

from ..sw.intops import as_int_array, int_range

from .batch import run_rows
from .bench import CHECKS as SHARED_CHECKS
from .bench import Case, lanes_of, last_beat_flags

__all__ = ["DotCase", "CHECKS", "rtl_dot", "weight_field_range"]

#: the cocotb tests of a dot-product PE (and nm-sparse) in pytest
CHECKS = [*SHARED_CHECKS, "every_code"]


def weight_field_range(params) -> tuple[int, int]:
    """Range of the raw weight field of one lane (SP2 codes are unsigned, fixed weights signed)."""
    shape = params.weight_shape
    return int_range(shape.width, shape.signed)


class VectorCase(Case):
    """A PE that reduces a vector ``{"acts": [K], ...}`` to one ``y`` (the dot products, nm-sparse)."""

    def random_acts(self, n: int) -> np.ndarray:
        lo, hi = self.params.act_range
        return self.rng.integers(lo, hi, n, endpoint=True)

    def length(self, vector) -> int:
        return len(vector["acts"])

    def describe(self, vector) -> str:
        shown = {k: ([int(e) for e in v[:8]] if hasattr(v, "__len__") else v) for k, v in vector.items()}
        return f"K={self.length(vector)}; first elements: {shown}"


class DotCase(VectorCase):
    """Dot-product vectors; subclasses give ``golden_rows``, ``all_weights`` and ``extreme_weights``."""

    def golden_rows(self, acts: np.ndarray, weights: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def all_weights(self) -> np.ndarray:
        raise NotImplementedError

    def extreme_weights(self) -> list[int]:
        raise NotImplementedError

    def vector(self, acts, weights) -> dict:
        return {"acts": np.asarray(acts, dtype=np.int64), "weights": np.asarray(weights, dtype=np.int64)}

    def random(self, k: int) -> dict:
        lo, hi = weight_field_range(self.params)
        return self.vector(self.random_acts(k), self.rng.integers(lo, hi, k, endpoint=True))

    def golden(self, vector) -> int:
        return int(self.golden_rows(vector["acts"][None, :], vector["weights"])[0])

    def beats(self, vector) -> dict[str, np.ndarray]:
        """Split into beats of ``lanes`` elements, zero-padding the final beat (v = 0 either way)."""
        lanes = self.params.lanes
        n = -(-len(vector["acts"]) // lanes)
        return {"acts": lanes_of(vector["acts"], n, lanes),
                self.params.weight_field: lanes_of(vector["weights"], n, lanes),
                "last": last_beat_flags(n)}

    def extremes(self) -> list[dict]:
        p = self.params
        a_lo, a_hi = p.act_range
        return [self.vector(np.full(k, a), np.full(k, w))
                for k in sorted({1, p.lanes, p.max_len})
                for a in (a_lo, a_hi, 0)
                for w in self.extreme_weights() + [0]]

    def every_code(self) -> list[dict]:
        """Each weight value alone in each lane (the others zero), then all of them in one vector."""
        p, codes = self.params, self.all_weights()
        a_lo, a_hi = p.act_range
        out = [self.vector(np.full(lane + 1, a), np.r_[np.zeros(lane, np.int64), c])
               for a in (a_lo, a_hi, int(self.random_acts(1)[0]))
               for lane in range(min(p.lanes, p.max_len))
               for c in codes]
        k = min(len(codes), p.max_len)
        out.append(self.vector(self.random_acts(k), codes[:k]))
        return out

    def from_batch(self, arrays) -> list[dict]:
        return [self.vector(a, w) for a, w in zip(arrays["acts"], arrays["weights"])]


def check_batch(params, acts, weights) -> tuple[np.ndarray, np.ndarray]:
    """Validate batch-API inputs: shapes, value ranges and the length limit."""
    acts = as_int_array("Acts", acts, *params.act_range)
    if acts.ndim != 2:
        raise ValueError(f"Acts must be a 2-D array [rows, K], not shape {acts.shape}")
    name = params.weight_field.capitalize()
    weights = as_int_array(name, weights, *weight_field_range(params))
    if weights.ndim == 1:
        weights = np.broadcast_to(weights, acts.shape)
    if weights.shape != acts.shape:
        raise ValueError(f"{name} must have shape [K] or {list(acts.shape)} like the acts, "
                         f"not {list(weights.shape)}")
    if acts.shape[1] < 1:
        raise ValueError("Vector length K must be at least 1, not 0")
    if acts.shape[1] > params.max_len:
        raise ValueError(f"Vector length K must be at most max_len={params.max_len}, "
                         f"not {acts.shape[1]}")
    return acts, weights


def rtl_dot(pe_name: str, acts, weights, params, *, stats: bool = False, **kwargs):
    """Run ``rows`` dot products of PE ``pe_name`` through the generated RTL; one int64 result per row.

    The design for ``params`` is generated and compiled once (cached by a hash of the params); all
    rows stream through one simulation, back to back unless ``p_valid``/``p_ready`` add stalls.

    Parameters
    ----------
    acts, weights, params
        As the PE's ``rtl_dot`` (:func:`tb.sp2_mac.rtl_dot`, :func:`tb.fixed_mac.rtl_dot`).
    p_valid, p_ready : float, optional
        Probability of offering a beat / accepting a result per cycle (1.0: no stalls).
    seed : int, optional
        Seed of the simulation's stalls.
    waves : bool, optional
        Record waveforms (a separate build).
    stats : bool, optional
        Also return the :class:`tb.batch.SimStats` the simulation counted.

    Returns
    -------
    numpy.ndarray of int64, shape [rows]; or ``(y, stats)`` with ``stats=True``
    """
    acts, weights = check_batch(params, acts, weights)
    return run_rows(pe_name, params, {"acts": acts, "weights": weights}, len(acts), stats=stats, **kwargs)
