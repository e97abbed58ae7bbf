"""cocotb testbench and batch API of ``nm-sparse``: its case (:class:`CASE`), run by :mod:`tb.bench`'s tests.

A sparse vector is ``{"acts": [K], "values": [K*N/M], "indices": [K*N/M], "dense": False}`` with K a
multiple of M; a dense one is ``{"acts": [K], "values": [K], "dense": True}``. Random vectors mix
both modes (the mode may change from one vector to the next), canonical packings from ``sw.nm.pack``
(padded and all-zero groups included) and arbitrary index lists (duplicates, any order), which the
hardware must compute exactly like the golden model.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..sw import nm
from ..sw.intops import as_int_array, int_range

from .batch import run_rows
from .bench import (batch, every_code, extremes, lanes_of, last_beat_flags,  # noqa: F401  (cocotb tests)
                    random_stalls, random_vectors, reset_mid_vector, throughput_and_latency)
from .dot import CHECKS, VectorCase  # noqa: F401

__all__ = ["rtl_dot", "CASE", "CHECKS"]


class CASE(VectorCase):
    @property
    def granule(self) -> int:
        return self.params.fmt.m

    # -- building vectors ---------------------------------------------------------------------
    def sparse(self, acts, values, indices) -> dict:
        return {"acts": np.asarray(acts, np.int64), "values": np.asarray(values, np.int64),
                "indices": np.asarray(indices, np.int64), "dense": False}

    def dense(self, acts, weights) -> dict:
        return {"acts": np.asarray(acts, np.int64), "values": np.asarray(weights, np.int64), "dense": True}

    def random_values(self, n: int) -> np.ndarray:
        lo, hi = int_range(self.params.w_bits, True)
        return self.rng.integers(lo, hi, n, endpoint=True)

    def random(self, k: int) -> dict:
        fmt = self.params.fmt
        kind = self.rng.integers(3)
        if kind == 0:  # dense mode, any length up to k
            k = int(self.rng.integers(1, k, endpoint=True))
            return self.dense(self.random_acts(k), self.random_values(k))
        slots = k // fmt.m * fmt.n
        if kind == 1:  # arbitrary index lists: duplicates and any order
            return self.sparse(self.random_acts(k), self.random_values(slots),
                               self.rng.integers(0, fmt.m, slots))
        # canonical packing of a random N:M matrix, some groups with fewer non-zeros or none
        w = self.random_values(k) * (self.rng.random(k) < 0.7)
        w = w * nm.nm_mask(np.abs(w)[None, :] + 0.0, fmt)[0]
        values, indices = nm.pack(w[None, :], fmt)
        return self.sparse(self.random_acts(k), values[0], indices[0])

    def one_beat(self) -> dict:
        """Randomly a full sparse beat or a full dense beat."""
        p = self.params
        if self.rng.integers(2):
            return self.dense(self.random_acts(p.lanes), self.random_values(p.lanes))
        k = p.acts_per_beat
        slots = p.lanes
        return self.sparse(self.random_acts(k), self.random_values(slots), self.rng.integers(0, p.fmt.m, slots))

    def timing_rounds(self) -> list:
        return [[self.one_beat() for _ in range(20)]]

    def extremes(self) -> list[dict]:
        p, fmt = self.params, self.params.fmt
        a_lo, a_hi = p.act_range
        w_lo, w_hi = int_range(p.w_bits, True)
        out = []
        for k in sorted({fmt.m, p.max_len // fmt.m * fmt.m}):
            slots = k // fmt.m * fmt.n
            for a in (a_lo, a_hi, 0):
                for w in (w_lo, w_hi, 0):
                    # every slot of a group on the same position: the worst case of a sparse sum
                    out.append(self.sparse(np.full(k, a), np.full(slots, w), np.zeros(slots, np.int64)))
                    out.append(self.dense(np.full(k, a), np.full(k, w)))
        return out

    def every_code(self) -> list[dict]:
        """Every index pattern of a group (sampled above 256), then every value in every lane."""
        p, fmt = self.params, self.params.fmt
        a_lo, a_hi = p.act_range
        patterns = list(itertools.product(range(fmt.m), repeat=fmt.n))
        if len(patterns) > 256:
            patterns = [patterns[i] for i in self.rng.choice(len(patterns), 256, replace=False)]
        out = []
        for pattern in patterns:  # distinct activations show which position each slot read
            acts = self.random_acts(fmt.m)
            out.append(self.sparse(acts, self.random_values(fmt.n), np.array(pattern)))
        lo, hi = int_range(p.w_bits, True)
        values = np.arange(lo, hi + 1) if p.w_bits <= 8 else np.r_[lo, self.random_values(254), hi]
        for a in (a_lo, a_hi):
            for lane in range(min(p.lanes, p.max_len)):
                for v in values:
                    out.append(self.dense(np.full(lane + 1, a), np.r_[np.zeros(lane, np.int64), v]))
        return out

    # -- beats and golden ---------------------------------------------------------------------
    def beats(self, vector) -> dict[str, np.ndarray]:
        p = self.params
        if vector["dense"]:
            n = -(-len(vector["acts"]) // p.lanes)
            acts = lanes_of(vector["acts"], n, p.lanes)
            acts = np.pad(acts, ((0, 0), (0, p.acts_per_beat - p.lanes)))
            values, indices = lanes_of(vector["values"], n, p.lanes), np.zeros((n, p.lanes), np.int64)
        else:
            n = -(-len(vector["acts"]) // p.acts_per_beat)
            acts = lanes_of(vector["acts"], n, p.acts_per_beat)
            values = lanes_of(vector["values"], n, p.lanes)
            indices = lanes_of(vector["indices"], n, p.lanes)
        return {"acts": acts, "values": values, "indices": indices,
                "dense": np.full(n, int(vector["dense"])), "last": last_beat_flags(n)}

    def golden(self, vector) -> int:
        p = self.params
        kwargs = dict(act_bits=p.act_bits, act_signed=p.act_signed, w_bits=p.w_bits)
        if vector["dense"]:
            return int(nm.golden_dense_dot(vector["acts"][None, :], vector["values"][None, :], **kwargs)[0])
        return int(nm.golden_dot(vector["acts"][None, :], vector["values"], vector["indices"], p.fmt,
                                 **kwargs)[0])

    def from_batch(self, arrays) -> list[dict]:
        if bool(arrays["dense"]):
            return [self.dense(a, w) for a, w in zip(arrays["acts"], arrays["values"])]
        return [self.sparse(a, v, i) for a, v, i in zip(arrays["acts"], arrays["values"], arrays["indices"])]


def _rows(name: str, x, rows: int, width: int, lo: int, hi: int) -> np.ndarray:
    x = as_int_array(name, x, lo, hi)
    if x.ndim == 1:
        x = np.broadcast_to(x, (rows, len(x)))
    if x.shape != (rows, width):
        raise ValueError(f"{name} must have shape [{width}] or [{rows}, {width}], not {list(x.shape)}")
    return x


def rtl_dot(acts, values, indices, params, dense: bool = False, *, stats: bool = False, **kwargs):
    """``sw.nm.golden_dot`` (or, with ``dense=True``, ``golden_dense_dot``) computed by the RTL.

    Parameters
    ----------
    acts : int array [rows, K]
        ``act_bits`` integers; K <= ``max_len`` and, in sparse mode, a multiple of M.
    values : int array [rows, K*N/M] or [K*N/M] (dense: [rows, K] or [K])
        signed ``w_bits`` integers.
    indices : int array like ``values`` (sparse mode), in ``[0, M)``; ignored (may be None) when dense.
        Any index list is computed as given: duplicates add, order does not matter.
    params : hw.nm_sparse.NMSparseParams
    dense : bool
        Run the PE in dense mode: ``y = sum_k acts[k] * values[k]`` on the same multipliers.
    stats : bool, optional
        Also return the :class:`tb.batch.SimStats` the simulation counted.
    **kwargs
        ``p_valid``, ``p_ready``, ``seed``, ``waves`` as :func:`tb.dot.rtl_dot`.

    Returns
    -------
    numpy.ndarray of int64, shape [rows]; or ``(y, stats)`` with ``stats=True``
    """
    fmt = params.fmt
    acts = as_int_array("Acts", acts, *params.act_range)
    if acts.ndim != 2:
        raise ValueError(f"Acts must be a 2-D array [rows, K], not shape {acts.shape}")
    rows, K = acts.shape
    if not 1 <= K <= params.max_len:
        raise ValueError(f"Vector length K must be from 1 to max_len={params.max_len}, not {K}")
    w_range = int_range(params.w_bits, True)
    if dense:
        values = _rows("Values", values, rows, K, *w_range)
        indices = np.zeros_like(values)
    else:
        if K % fmt.m:
            raise ValueError(f"Vector length K must be a multiple of M={fmt.m} in sparse mode, not {K}")
        slots = K // fmt.m * fmt.n
        values = _rows("Values", values, rows, slots, *w_range)
        indices = _rows("Indices", indices, rows, slots, 0, fmt.m - 1)
    return run_rows("nm-sparse", params, {"acts": acts, "values": values, "indices": indices,
                                          "dense": np.array(dense)}, rows, stats=stats, **kwargs)
