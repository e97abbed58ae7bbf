"""PyTorch half of :mod:`sw.circulant`: the trainable :class:`BlockCirculantLinear`.

Imported on first access through ``sw.circulant`` (``from sw.circulant import BlockCirculantLinear``), so that
``import sw.circulant`` stays free of torch. See :mod:`sw.circulant` for the first-column convention, the
spectral export and the PE's fixed-point schedule.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .circulant import CirculantFormat, check_format, export_spectra
from .params import check_bool, check_int

__all__ = ["BlockCirculantLinear"]


class BlockCirculantLinear(torch.nn.Module):
    """A linear layer ``y = W x + b`` whose weight ``W [out, in]`` is ``p x q`` circulant blocks of ``k x k``.

    The trainable parameter is :attr:`columns` ``[p, q, k]``, the first column ``c_ij`` of every block
    (``p = out_features / k``, ``q = in_features / k``): block ``(i, j)`` of ``W`` is
    ``C[r, s] = c_ij[(r - s) mod k]`` (CirCNN, Ding et al., MICRO 2017). ``k`` values per block instead of
    ``k^2``; the forward pass is ``O(n log n)``:

        y_i = irfft( sum_j rfft(c_ij) * rfft(x_j), n=k ) + b_i

    (``torch.fft``; gradients flow through the transforms). :meth:`to_dense` builds ``W``. Initialisation as
    ``torch.nn.Linear``: columns and bias uniform in ``+-1/sqrt(in_features)`` (every weight of ``W`` is one of
    the column entries, so ``W`` has ``nn.Linear``'s distribution).

    Parameters
    ----------
    in_features, out_features : int
        Positive multiples of ``block``.
    block : int
        Block size ``k`` >= 1 (the ``circulant-fft`` PE takes powers of two from 4 to 64).
    bias : bool

    Raises
    ------
    TypeError, ValueError
        ``"BlockCirculantLinear block must be a positive integer, not 0"``,
        ``"BlockCirculantLinear in_features must be a multiple of block = 8, not 10"``,
        ``"BlockCirculantLinear out_features must be a multiple of block = 8, not 12"``.

    Examples
    --------
    >>> layer = BlockCirculantLinear(16, 8, 4)
    >>> tuple(layer.columns.shape), tuple(layer.to_dense().shape)
    ((2, 4, 4), (8, 16))
    """

    def __init__(self, in_features: int, out_features: int, block: int, bias: bool = True, *, device=None,
                 dtype=None):
        super().__init__()
        check_int("BlockCirculantLinear block", block, min=1)
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            check_int(f"BlockCirculantLinear {name}", value, min=1)
            if value % block:
                raise ValueError(f"BlockCirculantLinear {name} must be a multiple of block = {block}, not {value!r}")
        check_bool("BlockCirculantLinear bias", bias)
        self.in_features, self.out_features, self.block = in_features, out_features, block
        factory = {"device": device, "dtype": dtype}
        self.columns = torch.nn.Parameter(torch.empty(out_features // block, in_features // block, block, **factory))
        self.bias = torch.nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.in_features)
        torch.nn.init.uniform_(self.columns, -bound, bound)
        if self.bias is not None:
            torch.nn.init.uniform_(self.bias, -bound, bound)

    @property
    def p(self) -> int:
        """Output blocks, ``out_features / block``."""
        return self.out_features // self.block

    @property
    def q(self) -> int:
        """Input blocks, ``in_features / block``."""
        return self.in_features // self.block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"BlockCirculantLinear input must have {self.in_features} features in its last "
                             f"dimension, not shape {tuple(x.shape)}")
        k, lead = self.block, x.shape[:-1]
        spectrum_x = torch.fft.rfft(x.reshape(*lead, self.q, k), dim=-1)           # [..., q, k/2+1]
        spectrum_c = torch.fft.rfft(self.columns, dim=-1)                          # [p, q, k/2+1]
        spectrum_y = torch.einsum("...jm,ijm->...im", spectrum_x, spectrum_c)      # sum over j, per bin
        y = torch.fft.irfft(spectrum_y, n=k, dim=-1).reshape(*lead, self.out_features)
        return y if self.bias is None else y + self.bias

    def to_dense(self) -> torch.Tensor:
        """The weight ``W [out, in]``: block ``(i, j)`` is ``scipy.linalg.circulant(c_ij)``."""
        k = self.block
        r = torch.arange(k, device=self.columns.device)
        blocks = self.columns[:, :, (r[:, None] - r[None, :]) % k]                 # [p, q, k, k]
        return blocks.permute(0, 2, 1, 3).reshape(self.out_features, self.in_features)

    def export(self, fmt: CirculantFormat) -> tuple[np.ndarray, np.ndarray]:
        """``sw.circulant.export_spectra(columns, fmt)``: the quantised half spectra and per-block-row scale.

        Raises
        ------
        ValueError
            ``"Circulant format block must match the layer's block = 8, not 16"``.
        """
        fmt = check_format(fmt)
        if fmt.block != self.block:
            raise ValueError(f"Circulant format block must match the layer's block = {self.block}, "
                             f"not {fmt.block!r}")
        with torch.no_grad():
            return export_spectra(self.columns.detach(), fmt)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, block={self.block}, "
                f"bias={self.bias is not None}")
