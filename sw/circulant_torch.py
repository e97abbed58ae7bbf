"""PyTorch half of :mod:`sw.circulant`: the trainable :class:`BlockCirculantLinear` and the block-circulant
convolutions :class:`BlockCirculantConv1d` / :class:`BlockCirculantConv2d` (CirCNN).

Imported on first access through ``sw.circulant`` (``from peforge.sw.circulant import BlockCirculantLinear``), so that
``import peforge.sw.circulant`` stays free of torch. See :mod:`sw.circulant` for the first-column convention, the
spectral export and the PE's fixed-point schedule.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from .circulant import CirculantFormat, check_format, export_spectra
from .params import check_bool, check_int

__all__ = ["BlockCirculantLinear", "BlockCirculantConv1d", "BlockCirculantConv2d"]


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


def _per_axis(subject: str, value, dims: int, minimum: int) -> tuple[int, ...]:
    """An int or a tuple of ``dims`` ints, each ``>= minimum``, as a tuple (torch's ``kernel_size`` / ``stride``)."""
    values = (value,) * dims if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(values, (tuple, list)) or len(values) != dims or \
            not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in values):
        raise ValueError(f"{subject} must be an integer >= {minimum} or {dims} of them, not {value!r}")
    return tuple(values)


class _BlockCirculantConv(torch.nn.Module):
    """What :class:`BlockCirculantConv1d` and :class:`BlockCirculantConv2d` share (``dims`` 1 or 2)."""

    dims: ClassVar[int]

    def __init__(self, in_channels: int, out_channels: int, kernel_size, block: int, stride=1, padding=0,
                 bias: bool = True, *, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        check_int(f"{name} block", block, min=1)
        for what, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            check_int(f"{name} {what}", value, min=1)
            if value % block:
                raise ValueError(f"{name} {what} must be a multiple of block = {block}, not {value!r}")
        kernel = _per_axis(f"{name} kernel_size", kernel_size, self.dims, 1)
        stride = _per_axis(f"{name} stride", stride, self.dims, 1)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{name} padding must be 'same', 'valid' or integers, not {padding!r}")
            if padding == "same" and stride != (1,) * self.dims:
                raise ValueError(f"{name} padding 'same' must have stride 1, not {stride}")
        else:
            padding = _per_axis(f"{name} padding", padding, self.dims, 0)
        check_bool(f"{name} bias", bias)
        self.in_channels, self.out_channels, self.block = in_channels, out_channels, block
        self.kernel_size, self.stride, self.padding = kernel, stride, padding
        # torch.nn.Conv's attributes, so that code reading a convolution's geometry reads this one alike
        self.dilation, self.groups, self.padding_mode = (1,) * self.dims, 1, "zeros"
        factory = {"device": device, "dtype": dtype}
        self.columns = torch.nn.Parameter(torch.empty(*kernel, out_channels // block, in_channels // block, block,
                                                      **factory))
        self.bias = torch.nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.window)
        torch.nn.init.uniform_(self.columns, -bound, bound)
        if self.bias is not None:
            torch.nn.init.uniform_(self.bias, -bound, bound)

    @property
    def window(self) -> int:
        """Columns of the weight matrix, ``kh * kw * C_in`` (torch's fan-in)."""
        return math.prod(self.kernel_size) * self.in_channels

    @property
    def p(self) -> int:
        """Output channel blocks, ``out_channels / block``."""
        return self.out_channels // self.block

    @property
    def q(self) -> int:
        """Input channel blocks per kernel position, ``in_channels / block``."""
        return self.in_channels // self.block

    def to_dense(self) -> torch.Tensor:
        """The weight in torch's shape ``[C_out, C_in, *kernel]``: at every kernel position the ``C_out x C_in``
        matrix whose block ``(i, j)`` is ``scipy.linalg.circulant(columns[pos][i, j])``."""
        k, d = self.block, self.dims
        r = torch.arange(k, device=self.columns.device)
        blocks = self.columns[..., (r[:, None] - r[None, :]) % k]             # [*kernel, p, q, k, k]
        mats = blocks.transpose(-3, -2).reshape(*self.kernel_size, self.out_channels, self.in_channels)
        return mats.permute(d, d + 1, *range(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = torch.nn.functional.conv1d if self.dims == 1 else torch.nn.functional.conv2d
        return conv(x, self.to_dense(), self.bias, self.stride, self.padding)

    def matrix_columns(self) -> torch.Tensor:
        """``[p, kh * kw * q, k]``: the first columns of the blocks of the weight matrix ``[C_out, kh * kw * C_in]``
        (:func:`sw.layers.conv_matrix`'s order): input block ``pos * q + j`` of it is channel block ``j`` at kernel
        position ``pos = i * kw + j'``, so block ``(P, pos * q + j)`` is ``columns[pos][P, j]``."""
        positions = math.prod(self.kernel_size)
        cols = self.columns.reshape(positions, self.p, self.q, self.block)
        return cols.permute(1, 0, 2, 3).reshape(self.p, positions * self.q, self.block)

    def export(self, fmt: CirculantFormat) -> tuple[np.ndarray, np.ndarray]:
        """``sw.circulant.export_spectra(matrix_columns(), fmt)``: the quantised half spectra ``[p, kh * kw * q,
        k/2 + 1, 2]`` of the weight matrix and the per-block-row scale ``[p]``.

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
            return export_spectra(self.matrix_columns().detach(), fmt)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, block={self.block}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


class BlockCirculantConv1d(_BlockCirculantConv):
    """A 1-D convolution whose channel matrix at every kernel position is block-circulant (CirCNN, Ding et al.,
    MICRO 2017, section 3.2: the ``C_out x C_in`` matrix of each kernel position is ``p x q`` circulant blocks of
    ``k x k``).

    The trainable parameter is :attr:`columns` ``[k_len, p, q, k]``: the first column of every block at every
    kernel position. The forward pass is ``conv1d`` with the dense weight :meth:`to_dense` (the same function CirCNN
    computes with FFTs; gradients reach the columns). The weight matrix ``[C_out, k_len * C_in]`` in (kernel
    position, channel) order is block-circulant with block ``k`` because ``C_in`` is a multiple of ``k``;
    :meth:`export` gives its half spectra for the ``circulant-fft`` PE. Initialisation as ``torch.nn.Conv1d``
    (uniform in ``+-1/sqrt(fan_in)``). No groups, no dilation; zero padding (ints per axis, ``"same"``,
    ``"valid"``).

    Parameters
    ----------
    in_channels, out_channels : int
        Positive multiples of ``block``.
    kernel_size, stride : int or tuple of 1 int
    block : int
        ``k`` (the ``circulant-fft`` PE takes powers of two from 4 to 64).
    padding : int, tuple of 1 int, ``"same"`` or ``"valid"``
    bias : bool

    Raises
    ------
    TypeError, ValueError
        ``"BlockCirculantConv1d in_channels must be a multiple of block = 8, not 12"``,
        ``"BlockCirculantConv1d padding 'same' must have stride 1, not (2,)"``.
    """

    dims: ClassVar[int] = 1


class BlockCirculantConv2d(_BlockCirculantConv):
    """A 2-D convolution whose channel matrix at every kernel position is block-circulant (CirCNN, Ding et al.,
    MICRO 2017, section 3.2: the ``C_out x C_in`` matrix of each kernel position is ``p x q`` circulant blocks of
    ``k x k``).

    The trainable parameter is :attr:`columns` ``[kh, kw, p, q, k]``: the first column of every block at every
    kernel position. The forward pass is ``conv2d`` with the dense weight :meth:`to_dense` (the same function CirCNN
    computes with FFTs; gradients reach the columns). The weight matrix ``[C_out, kh * kw * C_in]`` in (kernel
    row, kernel column, channel) order is block-circulant with block ``k`` because ``C_in`` is a multiple of ``k``;
    :meth:`export` gives its half spectra for the ``circulant-fft`` PE. Initialisation as ``torch.nn.Conv2d``
    (uniform in ``+-1/sqrt(fan_in)``). No groups, no dilation; zero padding (ints per axis, ``"same"``,
    ``"valid"``).

    Parameters
    ----------
    in_channels, out_channels : int
        Positive multiples of ``block``.
    kernel_size, stride : int or tuple of 2 ints
    block : int
        ``k`` (the ``circulant-fft`` PE takes powers of two from 4 to 64).
    padding : int, tuple of 2 ints, ``"same"`` or ``"valid"``
    bias : bool

    Raises
    ------
    TypeError, ValueError
        ``"BlockCirculantConv2d in_channels must be a multiple of block = 8, not 12"``,
        ``"BlockCirculantConv2d kernel_size must be an integer >= 1 or 2 of them, not (3, 0)"``.

    Examples
    --------
    >>> layer = BlockCirculantConv2d(8, 16, 3, 4, padding=1)
    >>> tuple(layer.columns.shape), tuple(layer.to_dense().shape), tuple(layer.matrix_columns().shape)
    ((3, 3, 4, 2, 4), (16, 8, 3, 3), (4, 18, 4))
    """

    dims: ClassVar[int] = 2
