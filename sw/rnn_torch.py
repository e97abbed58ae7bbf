"""Trainable LSTM and GRU layers with the weight schemes (:class:`QuantLSTM`, :class:`QuantGRU`), for
:func:`sw.from_torch.from_torch` and the ``lstm`` / ``gru`` kinds of :mod:`sw.recurrent`.

A layer is torch's cell (``nn.LSTM`` / ``nn.GRU`` with ``batch_first=True``, one layer: the same equations and gate
order) whose two weight matrices are peforge linear layers of one scheme: ``ih`` ``[G*H, F]`` (with ``b_ih``) and
``hh`` ``[G*H, H]`` (with ``b_hh``), each trained as that scheme trains a linear layer:

=============  ===================================================================================================
scheme         ``ih`` and ``hh``
=============  ===================================================================================================
``float``      ``torch.nn.Linear`` (post-training fixed-point quantisation on export, as a plain ``nn.Linear``)
``fixed``      :class:`sw.layers.FixedLinear` (``w_bits``)
``sp2``        :class:`sw.layers.SP2Linear` (``sp2_fmt``)
``msq``        :class:`sw.layers.MixedLinear` (``sp2_fraction``, ``sp2_fmt``, ``w_bits``)
``nm``         :class:`sw.nm_torch.NMSparseLinear` (``nm_fmt``, SR-STE)
``circulant``  :class:`sw.circulant_torch.BlockCirculantLinear` (``block``): every gate's ``W`` and ``U`` a
               block-circulant matrix of ``k x k`` blocks trained through FFTs, as C-LSTM and E-RNN train them
               (``input_size`` and ``hidden_size`` multiples of ``block``)
=============  ===================================================================================================

Input ``[N, T, F]``; output the last hidden state ``[N, H]`` or, with ``return_sequences``, ``[N, T, H]``.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from .circulant_torch import BlockCirculantLinear
from .layers import FixedLinear, MixedLinear, QuantLinear, SP2Linear
from .nm import NMFormat
from .nm_torch import NMSparseLinear
from .params import check_bool, check_choice, check_int
from .sp2 import SP2Format

__all__ = ["QuantLSTM", "QuantGRU", "TORCH_SCHEMES"]

#: The schemes a :class:`QuantLSTM` / :class:`QuantGRU` trains with.
TORCH_SCHEMES = ("float", "fixed", "sp2", "msq", "nm", "circulant")


def _linear(scheme: str, n_in: int, n_out: int, bias: bool, *, w_bits: int, sp2_fmt: SP2Format, sp2_fraction: float,
            nm_fmt: NMFormat, block: int) -> torch.nn.Module:
    if scheme == "fixed":
        return FixedLinear(n_in, n_out, bias, w_bits=w_bits)
    if scheme == "sp2":
        return SP2Linear(n_in, n_out, bias, fmt=sp2_fmt)
    if scheme == "msq":
        return MixedLinear(n_in, n_out, bias, sp2_fraction=sp2_fraction, sp2_fmt=sp2_fmt, w_bits=w_bits)
    if scheme == "nm":
        return NMSparseLinear(n_in, n_out, bias, fmt=nm_fmt)
    if scheme == "circulant":
        return BlockCirculantLinear(n_in, n_out, block, bias)
    return torch.nn.Linear(n_in, n_out, bias)


def _matrix(linear: torch.nn.Module) -> torch.Tensor:
    """The weight ``[out, in]`` a linear layer of any scheme multiplies by (quantised, masked or block-circulant,
    with its gradient), computed once per sequence instead of once per time step."""
    if isinstance(linear, QuantLinear):
        return linear.quantizer(linear.weight)
    if isinstance(linear, BlockCirculantLinear):
        return linear.to_dense()
    return linear.weight                      # nn.Linear; NMSparseLinear's parametrised (masked) weight


class _QuantRecurrent(torch.nn.Module):
    """What :class:`QuantLSTM` and :class:`QuantGRU` share: ``ih``, ``hh`` and the loop over time."""

    gates: ClassVar[int]

    def __init__(self, input_size: int, hidden_size: int, *, scheme: str = "float", bias: bool = True,
                 return_sequences: bool = False, w_bits: int = 8, sp2_fmt: SP2Format = SP2Format(),
                 sp2_fraction: float = 0.5, nm_fmt: NMFormat = NMFormat(), block: int = 4):
        super().__init__()
        name = type(self).__name__
        check_int(f"{name} input_size", input_size, min=1)
        check_int(f"{name} hidden_size", hidden_size, min=1)
        check_choice(f"{name} scheme", scheme, TORCH_SCHEMES)
        check_bool(f"{name} bias", bias)
        check_bool(f"{name} return_sequences", return_sequences)
        if scheme == "circulant":
            check_int(f"{name} block", block, min=1)
            for field, value in (("input_size", input_size), ("hidden_size", hidden_size)):
                if value % block:
                    raise ValueError(f"{name} {field} must be a multiple of block = {block} (every gate matrix "
                                     f"block-circulant), not {value}")
        self.input_size, self.hidden_size, self.scheme = input_size, hidden_size, scheme
        self.return_sequences = return_sequences
        rows = self.gates * hidden_size
        options = dict(w_bits=w_bits, sp2_fmt=sp2_fmt, sp2_fraction=sp2_fraction, nm_fmt=nm_fmt, block=block)
        self.ih = _linear(scheme, input_size, rows, bias, **options)
        self.hh = _linear(scheme, hidden_size, rows, bias, **options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"{type(self).__name__} input must be [N, T, {self.input_size}], not shape "
                             f"{tuple(x.shape)}")
        gx = self.ih(x)                                                     # [N, T, G*H], b_ih included
        u, b_hh = _matrix(self.hh), self.hh.bias
        h = x.new_zeros(len(x), self.hidden_size)
        state = (h, x.new_zeros(len(x), self.hidden_size))
        out = []
        for t in range(x.shape[1]):
            state = self._cell(gx[:, t], torch.nn.functional.linear(state[0], u, b_hh), state)
            out.append(state[0])
        return torch.stack(out, 1) if self.return_sequences else out[-1]

    def _cell(self, gx, gh, state):
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, scheme={self.scheme!r}, "
                f"return_sequences={self.return_sequences}")


class QuantLSTM(_QuantRecurrent):
    """An LSTM (torch's ``nn.LSTM`` equations, gates i, f, g, o) with ``ih`` / ``hh`` of a weight scheme (module
    docstring)::

        i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of (ih(x_t) + hh(h_{t-1})), split in four
        c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)

    Raises
    ------
    TypeError, ValueError
        ``"QuantLSTM scheme must be one of 'float', 'fixed', 'sp2', 'msq', 'nm', 'circulant', not 'x'"``,
        ``"QuantLSTM hidden_size must be a multiple of block = 4 (every gate matrix block-circulant), not 6"``.
    """

    gates = 4

    def _cell(self, gx, gh, state):
        _, c = state
        i, f, g, o = (gx + gh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class QuantGRU(_QuantRecurrent):
    """A GRU (torch's ``nn.GRU`` equations, gates r, z, n) with ``ih`` / ``hh`` of a weight scheme::

        r, z = sigmoid of (ih(x_t) + hh(h_{t-1})) [r, z rows]
        n = tanh(ih(x_t)[n] + r * hh(h_{t-1})[n]);   h_t = (1 - z) * n + z * h_{t-1}

    Raises
    ------
    TypeError, ValueError
        As :class:`QuantLSTM`.
    """

    gates = 3

    def _cell(self, gx, gh, state):
        h, _ = state
        xr, xz, xn = gx.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, state[1]
