"""PyTorch half of :mod:`sw.nm`: SR-STE, the N:M mask parametrization, :class:`NMSparseLinear` and the sparse
convolutions :class:`NMSparseConv1d` / :class:`NMSparseConv2d`.

:mod:`sw.nm` (the format, the tie rule, the packing, the golden model) imports numpy only; this module is the
trainable half. :func:`sw.nm.nm_mask` and :func:`sw.nm.transposable_mask` take tensors too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.nn.utils import parametrize

from .fixed import quantize
from .layers import ConvMatrix, conv_matrix, conv_weight
from .nm import NMFormat, check_format, nm_mask, pack, transposable_mask
from .params import check_choice

__all__ = ["SRSTE_LAMBDA_W", "MODES", "CONV_MODES", "sr_ste", "NMMask", "NMSparseLinear", "NMSparseConv1d",
           "NMSparseConv2d"]

#: Default SR-STE decay of the pruned weights, lambda_w (the value Zhou et al., ICLR 2021, train with).
SRSTE_LAMBDA_W = 2e-4

#: Mask modes of :class:`NMMask` / :class:`NMSparseLinear`.
MODES = ("forward", "bidirectional", "transposable")
#: Mask modes of the sparse convolutions (BDWP's backward mask needs a linear layer's own backward pass).
CONV_MODES = ("forward", "transposable")


def _check_lambda(lambda_w: Any) -> float:
    if isinstance(lambda_w, bool) or not isinstance(lambda_w, (int, float)):
        raise TypeError(f"SR-STE lambda_w must be a real number, not {lambda_w!r}")
    if not (math.isfinite(lambda_w) and lambda_w >= 0):
        raise ValueError(f"SR-STE lambda_w must be a non-negative finite number, not {lambda_w!r}")
    return float(lambda_w)


class _SRSTE(torch.autograd.Function):
    """Forward ``where(mask, w, 0)``; backward ``grad + lambda_w * (1 - mask) * w`` (SR-STE, eq. 4)."""

    @staticmethod
    def forward(ctx, w, mask, lambda_w):
        ctx.save_for_backward(w, mask)
        ctx.lambda_w = lambda_w
        return torch.where(mask, w, torch.zeros((), dtype=w.dtype, device=w.device))

    @staticmethod
    def backward(ctx, grad):
        w, mask = ctx.saved_tensors
        return grad + ctx.lambda_w * torch.where(mask, torch.zeros((), dtype=w.dtype, device=w.device), w), \
            None, None


def sr_ste(w: torch.Tensor, mask: torch.Tensor, lambda_w: float = SRSTE_LAMBDA_W) -> torch.Tensor:
    """Sparse-refined straight-through estimator (Zhou et al., ICLR 2021, eq. 4).

    The value is the masked weight ``W~ = W * mask``. The gradient reaching the dense ``W`` is the gradient
    of ``W~`` passed straight through plus the decay of the pruned weights,

        dL/dW := dL/dW~ + lambda_w * (1 - mask) * W,

    so that an SGD step is ``W <- W - lr * (g(W~) + lambda_w * (~E) * W)`` as in the paper.

    Parameters
    ----------
    w : float tensor
    mask : bool tensor of ``w``'s shape (not differentiated)
    lambda_w : float >= 0, default 2e-4
    """
    if mask.dtype != torch.bool or mask.shape != w.shape:
        raise ValueError(f"SR-STE mask must be a bool tensor of shape {tuple(w.shape)}, "
                         f"not {mask.dtype} {tuple(mask.shape)}")
    return _SRSTE.apply(w, mask.detach(), _check_lambda(lambda_w))


class NMMask(torch.nn.Module):
    """Parametrization (``torch.nn.utils.parametrize``) that makes a weight ``[out, in]`` N:M sparse.

    Every forward pass recomputes the mask from the dense weight and returns :func:`sr_ste` of it:

    * ``"forward"``: :func:`sw.nm.nm_mask` along the input features;
    * ``"bidirectional"``: the same forward mask; :class:`NMSparseLinear` also uses the backward mask
      (:func:`sw.nm.bidirectional_masks`) for the input gradient (BDWP);
    * ``"transposable"``: :func:`sw.nm.transposable_mask`, N:M along both axes (computed in numpy).

    Raises
    ------
    TypeError, ValueError
        ``"N:M format must be an NMFormat, not ..."``, ``"N:M mode must be one of 'forward',
        'bidirectional', 'transposable', not 'x'"``, ``"SR-STE lambda_w must be a non-negative finite number,
        not -1.0"``.
    """

    def __init__(self, fmt: NMFormat = NMFormat(), mode: str = "forward", lambda_w: float = SRSTE_LAMBDA_W):
        super().__init__()
        self.fmt = check_format(fmt)
        check_choice("N:M mode", mode, MODES)
        self.mode = mode
        self.lambda_w = _check_lambda(lambda_w)

    def mask(self, w: torch.Tensor) -> torch.Tensor:
        """The (forward) mask of the dense weight ``w``, a ``torch.bool`` tensor."""
        if self.mode == "transposable":
            return transposable_mask(w.detach(), self.fmt)
        return nm_mask(w.detach(), self.fmt, axis=-1)

    def backward_mask(self, w: torch.Tensor) -> torch.Tensor:
        """The mask of the weight used in back-propagation (``dx = dy @ (W * mask)``): N:M along the output
        features in ``"bidirectional"`` mode, the forward mask otherwise."""
        if self.mode == "bidirectional":
            return nm_mask(w.detach(), self.fmt, axis=0)
        return self.mask(w)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return sr_ste(w, self.mask(w), self.lambda_w)

    def extra_repr(self) -> str:
        return f"fmt={self.fmt!r}, mode={self.mode!r}, lambda_w={self.lambda_w!r}"


class _BidirectionalLinear(torch.autograd.Function):
    """``y = x @ w_fwd^T + b`` whose input gradient uses another weight: ``dx = dy @ w_bwd`` (BDWP).

    The weight gradient stays dense, ``dW = dy^T x``, and reaches ``w_fwd`` (whose SR-STE parametrization
    passes it on to the dense weight); ``w_bwd`` gets none.
    """

    @staticmethod
    def forward(ctx, x, w_fwd, w_bwd, bias):
        ctx.save_for_backward(x, w_bwd)
        return torch.nn.functional.linear(x, w_fwd, bias)

    @staticmethod
    def backward(ctx, dy):
        x, w_bwd = ctx.saved_tensors
        dy2 = dy.reshape(-1, dy.shape[-1])
        dx = dy @ w_bwd if ctx.needs_input_grad[0] else None
        dw = dy2.T @ x.reshape(-1, x.shape[-1]) if ctx.needs_input_grad[1] else None
        db = dy2.sum(dim=0) if ctx.needs_input_grad[3] else None
        return dx, dw, None, db


class NMSparseLinear(torch.nn.Linear):
    """A ``torch.nn.Linear`` whose weight is N:M sparse, trained from scratch with SR-STE.

    ``weight`` is parametrized by :class:`NMMask` (``torch.nn.utils.parametrize``): reading it gives the
    masked weight, the dense one is ``parametrizations.weight.original`` (:attr:`dense_weight`). The mask is
    recomputed from the dense weight in every forward pass; the pruned weights keep receiving the dense
    gradient plus the SR-STE decay ``lambda_w * (1 - mask) * W``. In ``"bidirectional"`` mode the input
    gradient is computed with the backward mask, ``dx = dy @ (W * mask_bwd)`` (BDWP); ``"transposable"`` uses
    one mask that is N:M along both axes. The bias stays dense and float.

    Parameters
    ----------
    in_features, out_features : int
        ``in_features`` a multiple of ``m``; ``out_features`` too unless ``mode == "forward"``.
    bias : bool
    fmt : NMFormat, default 2:4
    mode : "forward", "bidirectional" or "transposable"
    lambda_w : float >= 0, default 2e-4

    Raises
    ------
    ValueError
        ``"NMSparseLinear in_features must be a multiple of m = 4, not 10"``, and :class:`NMMask`'s errors.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, fmt: NMFormat = NMFormat(),
                 mode: str = "forward", lambda_w: float = SRSTE_LAMBDA_W, device=None, dtype=None):
        mask = NMMask(fmt, mode, lambda_w)  # validates fmt, mode and lambda_w first
        fmt.groups(in_features, "NMSparseLinear in_features")
        if mode != "forward":
            fmt.groups(out_features, f"NMSparseLinear out_features (mode {mode!r})")
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        parametrize.register_parametrization(self, "weight", mask)

    @property
    def _mask_module(self) -> NMMask:
        return self.parametrizations.weight[0]

    @property
    def fmt(self) -> NMFormat:
        return self._mask_module.fmt

    @property
    def mode(self) -> str:
        return self._mask_module.mode

    @property
    def lambda_w(self) -> float:
        return self._mask_module.lambda_w

    @property
    def dense_weight(self) -> torch.nn.Parameter:
        """The trained dense weight (the parameter the optimiser updates)."""
        return self.parametrizations.weight.original

    def mask(self) -> torch.Tensor:
        """The current forward mask, a ``torch.bool`` tensor ``[out, in]``."""
        return self._mask_module.mask(self.dense_weight)

    def backward_mask(self) -> torch.Tensor:
        """The current mask of the back-propagation weight (see :meth:`NMMask.backward_mask`)."""
        return self._mask_module.backward_mask(self.dense_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "bidirectional":
            dense = self.dense_weight.detach()
            w_bwd = torch.where(self.backward_mask(), dense, torch.zeros((), dtype=dense.dtype,
                                                                         device=dense.device))
            return _BidirectionalLinear.apply(x, self.weight, w_bwd, self.bias)
        return torch.nn.functional.linear(x, self.weight, self.bias)

    def export(self, w_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The masked weight quantised to signed ``w_bits`` integers and packed for the ``nm-sparse`` PE.

        ``v, scale = sw.fixed.quantize(W * mask, w_bits)`` (per-row scale, symmetric narrow range; pruned
        weights stay 0, a kept weight may round to 0), then ``sw.nm.pack(v, fmt)``.

        Returns
        -------
        (values, indices, scale) : int64 [out, in*n/m], int64 [out, in*n/m], float64 [out]
            The real weight is ``scale[:, None] * unpack(values, indices, fmt, in)``.
        """
        with torch.no_grad():
            w_int, scale = quantize(self.weight.detach(), w_bits)
        values, indices = pack(w_int, self.fmt)
        return values, indices, scale


class _NMSparseConv:
    """What :class:`NMSparseConv1d` and :class:`NMSparseConv2d` add to ``torch.nn.Conv1d`` / ``Conv2d``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, bias: bool = True, *,
                 fmt: NMFormat = NMFormat(), mode: str = "forward", lambda_w: float = SRSTE_LAMBDA_W, device=None,
                 dtype=None):
        name = type(self).__name__
        mask = NMMask(fmt, mode, lambda_w)  # validates fmt, mode and lambda_w first
        check_choice(f"{name} mode", mode, CONV_MODES)
        fmt.groups(in_channels, f"{name} in_channels")
        if mode == "transposable":
            fmt.groups(out_channels, f"{name} out_channels (mode 'transposable')")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias,
                         device=device, dtype=dtype)
        parametrize.register_parametrization(self, "weight", ConvMatrix(mask))

    @property
    def _mask_module(self) -> NMMask:
        return self.parametrizations.weight[0].inner

    fmt = property(lambda self: self._mask_module.fmt, doc="The N:M format.")
    mode = property(lambda self: self._mask_module.mode, doc="The mask mode (:data:`CONV_MODES`).")
    lambda_w = property(lambda self: self._mask_module.lambda_w, doc="The SR-STE decay.")

    @property
    def dense_weight(self) -> torch.nn.Parameter:
        """The trained dense weight (the parameter the optimiser updates), in torch's shape."""
        return self.parametrizations.weight.original

    def mask(self) -> torch.Tensor:
        """The current mask, a ``torch.bool`` tensor of the weight's shape (N:M along :func:`sw.layers.conv_matrix`'s
        rows)."""
        return conv_weight(self._mask_module.mask(conv_matrix(self.dense_weight)), self.dense_weight.shape)

    def export(self, w_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The masked weight matrix ``[C_out, kh * kw * C_in]`` (:func:`sw.layers.conv_matrix`) quantised to signed
        ``w_bits`` integers per output channel and packed for the ``nm-sparse`` PE, as
        :meth:`NMSparseLinear.export`.

        Returns
        -------
        (values, indices, scale) : int64 [C_out, K*n/m], int64 [C_out, K*n/m], float64 [C_out]
            ``K = kh * kw * C_in``; the real weight matrix is ``scale[:, None] * unpack(values, indices, fmt, K)``.
        """
        with torch.no_grad():
            w_int, scale = quantize(conv_matrix(self.weight.detach()), w_bits)
        values, indices = pack(w_int, self.fmt)
        return values, indices, scale


class NMSparseConv1d(_NMSparseConv, torch.nn.Conv1d):
    """A ``torch.nn.Conv1d`` whose weight is N:M sparse, trained from scratch with SR-STE as :class:`NMSparseLinear`.

    The groups of ``m`` run along the input channels of one kernel position (NVIDIA's sparse convolutions): the
    mask (:class:`NMMask` through :class:`sw.layers.ConvMatrix`) is N:M along each row of the weight matrix
    ``[C_out, k * C_in]`` in (kernel position, channel) order, channel fastest, so ``in_channels`` must be a
    multiple of ``m`` (a group never straddles two kernel positions; no depthwise: one channel per position).
    Modes :data:`CONV_MODES` (``"transposable"``: N:M along the output channels too). No dilation, no groups;
    zero padding (any ``padding`` torch takes). The bias stays dense and float.

    Raises
    ------
    ValueError
        ``"NMSparseConv1d in_channels must be a multiple of m = 4, not 6"``, ``"NMSparseConv1d mode must be one of
        'forward', 'transposable', not 'bidirectional'"``, and :class:`NMMask`'s errors.
    """


class NMSparseConv2d(_NMSparseConv, torch.nn.Conv2d):
    """A ``torch.nn.Conv2d`` whose weight is N:M sparse, trained from scratch with SR-STE as :class:`NMSparseLinear`.

    The groups of ``m`` run along the input channels of one kernel position (NVIDIA's sparse convolutions): the
    mask (:class:`NMMask` through :class:`sw.layers.ConvMatrix`) is N:M along each row of the weight matrix
    ``[C_out, kh * kw * C_in]`` in (kernel row, kernel column, channel) order, channel fastest, so ``in_channels``
    must be a multiple of ``m`` (a group never straddles two kernel positions; no depthwise: one channel per
    position). Modes :data:`CONV_MODES` (``"transposable"``: N:M along the output channels too). No dilation, no
    groups; zero padding (any ``padding`` torch takes). The bias stays dense and float.

    Raises
    ------
    ValueError
        ``"NMSparseConv2d in_channels must be a multiple of m = 4, not 6"``, ``"NMSparseConv2d mode must be one of
        'forward', 'transposable', not 'bidirectional'"``, and :class:`NMMask`'s errors.
    """
