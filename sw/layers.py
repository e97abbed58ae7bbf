"""PyTorch layers of the weight formats: fake quantisation with a straight-through gradient.

Kept apart from the numpy golden models (:mod:`sw.fixed`, :mod:`sw.sp2`, :mod:`sw.msq`) so those import without
torch.

Linear layers (:class:`QuantLinear`: :class:`FixedLinear`, :class:`SP2Linear`, :class:`MixedLinear`) and their
convolutions (:class:`QuantConv1d` / :class:`QuantConv2d`: :class:`FixedConv1d`, :class:`FixedConv2d`,
:class:`SP2Conv1d`, :class:`SP2Conv2d`, :class:`MixedConv1d`, :class:`MixedConv2d`). A convolution quantises its
weight as the matrix ``[C_out, kh * kw * C_in / groups]`` that :mod:`sw.conv` runs on the PE
(:func:`conv_matrix`: kernel row, kernel column, channel; channel fastest), one scale per row, i.e. per output
channel; ``groups`` is 1 or the input channels (depthwise), as :mod:`sw.conv` allows. :class:`ConvMatrix` lets
any parametrization of a matrix ``[out, in]`` (an N:M mask, a polarity constraint) act on a convolution weight
the same way (:mod:`sw.nm_torch`, :mod:`sw.forms_torch`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .fixed import check_w_bits, dequantize as fixed_dequantize, quantize as fixed_quantize
from .msq import MixedWeights, assign_rows, quantize_mixed
from .params import check_int
from .sp2 import SP2Format, check_format
from .sp2 import dequantize as sp2_dequantize, quantize as sp2_quantize

__all__ = ["straight_through", "RowFakeQuant", "QuantLinear", "FixedQuantizer", "FixedLinear",
           "SP2Quantizer", "SP2Linear", "MixedQuantizer", "MixedLinear", "conv_matrix", "conv_weight",
           "check_conv_groups", "ConvMatrix", "QuantConv1d", "QuantConv2d", "FixedConv1d", "FixedConv2d",
           "SP2Conv1d", "SP2Conv2d", "MixedConv1d", "MixedConv2d"]


# -- shared --------------------------------------------------------------------------------------------

def straight_through(w: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
    """Straight-through estimator: the value of ``wq``, the gradient of ``w`` (identity).

    Written as ``wq + (w - w.detach())`` so that the value is exactly ``wq`` (``w - w.detach()`` is exactly
    zero), which :meth:`QuantLinear.export` relies on.
    """
    return wq.detach() + (w - w.detach())


class RowFakeQuant(torch.nn.Module):
    """Per-output-row fake quantisation of a weight matrix with a straight-through gradient.

    A subclass names its format's functions: ``_quantize(w, fmt) -> (ints, scale)`` (the scale fitted
    to the detached weight) and ``_dequantize(ints, scale, fmt) -> float64``. The forward value is
    exactly ``_dequantize(*_quantize(w, fmt), fmt)`` cast to the weight's dtype; the backward pass is
    the identity.
    """

    _quantize = _dequantize = None

    def __init__(self, fmt: Any):
        super().__init__()
        self.fmt = fmt

    def export(self, w: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The weight in the integer format and its per-row scale, as numpy arrays."""
        return self._quantize(w, self.fmt)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            wq = torch.from_numpy(self._dequantize(*self.export(w), self.fmt))
        return straight_through(w, wq.to(dtype=w.dtype, device=w.device))

    def extra_repr(self) -> str:
        return f"fmt={self.fmt!r}"


class QuantLinear(torch.nn.Linear):
    """A ``torch.nn.Linear`` whose forward pass uses ``quantizer(weight)``; the bias stays float.

    The latent float weight trains through the quantiser's straight-through gradient; :meth:`export` returns
    the integer format the PE consumes.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 quantizer: RowFakeQuant, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.quantizer = quantizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.quantizer(self.weight), self.bias)

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        """The weight in the PE's integer format and its per-row scale, as numpy arrays."""
        return self.quantizer.export(self.weight)


class FixedQuantizer(RowFakeQuant):
    """Fake quantisation to signed ``w_bits`` fixed point per output row (see :func:`sw.fixed.quantize`)."""

    _quantize = staticmethod(fixed_quantize)
    _dequantize = staticmethod(fixed_dequantize)

    def __init__(self, w_bits: int = 4):
        check_w_bits(w_bits)
        super().__init__(w_bits)


class FixedLinear(QuantLinear):
    """``torch.nn.Linear`` trained with ``w_bits`` fixed-point weights; :meth:`export` gives
    ``(v int64 [out, in], scale float64 [out])``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, w_bits: int = 4,
                 device=None, dtype=None):
        super().__init__(in_features, out_features, bias, quantizer=FixedQuantizer(w_bits),
                         device=device, dtype=dtype)

    @property
    def w_bits(self) -> int:
        return self.quantizer.fmt


# -- SP2 ---------------------------------------------------------------------------------------------

class SP2Quantizer(RowFakeQuant):
    """Fake quantisation of a weight matrix to SP2 per output row, straight-through gradient.

    Each forward pass recomputes ``alpha`` from the detached weight (:func:`sw.sp2.fit_alpha`) and returns exactly
    ``dequantize(*quantize(w, fmt), fmt)`` in the weight's dtype; the gradient passes through unchanged.
    """

    _quantize = staticmethod(sp2_quantize)
    _dequantize = staticmethod(sp2_dequantize)

    def __init__(self, fmt: SP2Format = SP2Format()):
        super().__init__(check_format(fmt))


class SP2Linear(QuantLinear):
    """``torch.nn.Linear`` trained with SP2 weights; :meth:`export` gives ``(codes int64 [out, in],
    alpha float64 [out])``, the real weight being ``alpha * v(codes) / 2^E``. The bias stays float."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 fmt: SP2Format = SP2Format(), device=None, dtype=None):
        super().__init__(in_features, out_features, bias, quantizer=SP2Quantizer(fmt),
                         device=device, dtype=dtype)

    @property
    def fmt(self) -> SP2Format:
        return self.quantizer.fmt


# -- Mix and Match -------------------------------------------------------------------------------------------

class MixedQuantizer(RowFakeQuant):
    """Fake quantisation of Mix and Match (:func:`sw.msq.quantize_mixed`): each row (output) SP2 or fixed point.

    Every forward pass assigns the rows again (the ``round(sp2_fraction * rows)`` rows where SP2 gains the most
    SQNR are SP2) and returns exactly ``MixedWeights.dequantize()``; the gradient passes straight through.
    :meth:`export` gives ``(MixedWeights, scale float64 [rows])``.

    Raises
    ------
    TypeError, ValueError
        ``"SP2 fraction must be a number from 0 to 1, not 1.5"``, ``"Weight bits must be an integer from 2 to
        16, not 1"``, ``"SP2 format must be an SP2Format, not 4"``.
    """

    def __init__(self, sp2_fraction: float = 0.5, sp2_fmt: SP2Format = SP2Format(4), w_bits: int = 4):
        assign_rows(np.zeros((1, 1)), sp2_fraction, sp2_fmt=sp2_fmt, w_bits=w_bits)   # sw.msq's own checks
        super().__init__((float(sp2_fraction), sp2_fmt, w_bits))

    @staticmethod
    def _quantize(w, settings) -> tuple[MixedWeights, np.ndarray]:
        fraction, sp2_fmt, w_bits = settings
        mixed = quantize_mixed(w, fraction, sp2_fmt=sp2_fmt, w_bits=w_bits)
        return mixed, mixed.scale

    @staticmethod
    def _dequantize(mixed, scale, settings) -> np.ndarray:
        return mixed.dequantize()

    sp2_fraction = property(lambda self: self.fmt[0], doc="Fraction of the rows in SP2.")
    sp2_fmt = property(lambda self: self.fmt[1], doc="The SP2 rows' format.")
    w_bits = property(lambda self: self.fmt[2], doc="The fixed-point rows' width.")

    def extra_repr(self) -> str:
        return f"sp2_fraction={self.sp2_fraction!r}, sp2_fmt={self.sp2_fmt!r}, w_bits={self.w_bits!r}"


class MixedLinear(QuantLinear):
    """``torch.nn.Linear`` trained with Mix and Match weights (:class:`MixedQuantizer`); :meth:`export` gives
    ``(MixedWeights, scale float64 [out])``. The bias stays float."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, sp2_fraction: float = 0.5,
                 sp2_fmt: SP2Format = SP2Format(4), w_bits: int = 4, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, quantizer=MixedQuantizer(sp2_fraction, sp2_fmt, w_bits),
                         device=device, dtype=dtype)


# -- convolutions --------------------------------------------------------------------------------------------

def conv_matrix(weight: torch.Tensor) -> torch.Tensor:
    """The weight matrix ``[C_out, kh * kw * C_in / groups]`` of a torch convolution weight ``[C_out, C_in / groups,
    kh, kw]`` (1-D: ``[C_out, C_in / groups, k]``), in :mod:`sw.conv`'s order: (kernel row, kernel column, channel),
    channel fastest. A permutation and a reshape, so gradients pass; :func:`conv_weight` inverts it.

    Examples
    --------
    >>> w = torch.arange(12.0).reshape(2, 3, 1, 2)       # C_out 2, C_in 3, kernel 1 x 2
    >>> conv_matrix(w)[0].tolist()                       # (j = 0: c = 0, 1, 2), (j = 1: c = 0, 1, 2)
    [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]
    >>> bool((conv_weight(conv_matrix(w), w.shape) == w).all())
    True
    """
    return weight.movedim(1, -1).reshape(weight.shape[0], -1)


def conv_weight(matrix: torch.Tensor, shape) -> torch.Tensor:
    """The torch convolution weight of ``shape`` (``[C_out, C_in / groups, *kernel]``) whose
    :func:`conv_matrix` is ``matrix``."""
    c_out, per_group, *kernel = shape
    return matrix.reshape(c_out, *kernel, per_group).movedim(-1, 1)


def check_conv_groups(subject: str, in_channels: int, groups: int) -> None:
    """Raise unless ``groups`` is 1 or ``in_channels`` (depthwise), the groupings :mod:`sw.conv` has.

    Raises
    ------
    TypeError, ValueError
        ``"FixedConv2d groups must be 1 or the 4 input channels (depthwise), not 2"``.
    """
    check_int(f"{subject} in_channels", in_channels, min=1)
    if isinstance(groups, bool) or groups not in (1, in_channels):
        raise ValueError(f"{subject} groups must be 1 or the {in_channels} input channels (depthwise), "
                         f"not {groups!r}")


class ConvMatrix(torch.nn.Module):
    """Parametrization (``torch.nn.utils.parametrize``) of a convolution weight by a parametrization ``inner`` of a
    matrix ``[out, in]``: ``inner`` acts on the weight's :func:`conv_matrix` and the result goes back to the
    weight's shape. So an N:M mask (:class:`sw.nm_torch.NMMask`) groups along the row of one output channel in
    (kernel row, kernel column, channel) order, and a polarity constraint
    (:class:`sw.forms_torch.PolarityConstraint`) takes fragments of ``rows_per_sub`` consecutive entries of it,
    exactly as the PE sees the weights."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return conv_weight(self.inner(conv_matrix(w)), w.shape)


class _QuantConv:
    """What :class:`QuantConv1d` and :class:`QuantConv2d` add to ``torch.nn.Conv1d`` / ``Conv2d``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, groups: int = 1,
                 bias: bool = True, *, quantizer: RowFakeQuant, device=None, dtype=None):
        check_conv_groups(type(self).__name__, in_channels, groups)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups,
                         bias=bias, device=device, dtype=dtype)
        self.quantizer = quantizer

    def quantized_weight(self) -> torch.Tensor:
        """The fake-quantised weight in torch's shape: ``quantizer`` of :func:`conv_matrix` (per output channel)."""
        return conv_weight(self.quantizer(conv_matrix(self.weight)), self.weight.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)

    def export(self) -> tuple[Any, np.ndarray]:
        """The weight matrix ``[C_out, kh * kw * C_in / groups]`` (:func:`conv_matrix`) in the PE's integer format
        and its per-output-channel scale, as the quantiser exports it."""
        return self.quantizer.export(conv_matrix(self.weight))


class QuantConv1d(_QuantConv, torch.nn.Conv1d):
    """A ``torch.nn.Conv1d`` whose forward pass uses ``quantizer`` on the weight matrix (:func:`conv_matrix`, one
    row per output channel); the bias stays float. ``groups`` 1 or ``in_channels``; no dilation; zero padding
    (any ``padding`` torch takes, ``"same"`` too). :meth:`export` gives the integer format."""


class QuantConv2d(_QuantConv, torch.nn.Conv2d):
    """A ``torch.nn.Conv2d`` whose forward pass uses ``quantizer`` on the weight matrix (:func:`conv_matrix`, one
    row per output channel); the bias stays float. ``groups`` 1 or ``in_channels``; no dilation; zero padding
    (any ``padding`` torch takes, ``"same"`` too). :meth:`export` gives the integer format."""


class _FixedConv:
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, groups: int = 1,
                 bias: bool = True, *, w_bits: int = 4, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups, bias,
                         quantizer=FixedQuantizer(w_bits), device=device, dtype=dtype)

    @property
    def w_bits(self) -> int:
        return self.quantizer.fmt


class FixedConv1d(_FixedConv, QuantConv1d):
    """``torch.nn.Conv1d`` trained with ``w_bits`` fixed-point weights per output channel (:class:`FixedQuantizer`);
    :meth:`export` gives ``(v int64 [C_out, k * C_in / groups], scale float64 [C_out])``."""


class FixedConv2d(_FixedConv, QuantConv2d):
    """``torch.nn.Conv2d`` trained with ``w_bits`` fixed-point weights per output channel (:class:`FixedQuantizer`);
    :meth:`export` gives ``(v int64 [C_out, kh * kw * C_in / groups], scale float64 [C_out])``."""


class _SP2Conv:
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, groups: int = 1,
                 bias: bool = True, *, fmt: SP2Format = SP2Format(), device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups, bias,
                         quantizer=SP2Quantizer(fmt), device=device, dtype=dtype)

    @property
    def fmt(self) -> SP2Format:
        return self.quantizer.fmt


class SP2Conv1d(_SP2Conv, QuantConv1d):
    """``torch.nn.Conv1d`` trained with SP2 weights per output channel (:class:`SP2Quantizer`); :meth:`export`
    gives ``(codes int64 [C_out, k * C_in / groups], alpha float64 [C_out])``."""


class SP2Conv2d(_SP2Conv, QuantConv2d):
    """``torch.nn.Conv2d`` trained with SP2 weights per output channel (:class:`SP2Quantizer`); :meth:`export`
    gives ``(codes int64 [C_out, kh * kw * C_in / groups], alpha float64 [C_out])``."""


class _MixedConv:
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, groups: int = 1,
                 bias: bool = True, *, sp2_fraction: float = 0.5, sp2_fmt: SP2Format = SP2Format(4), w_bits: int = 4,
                 device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups, bias,
                         quantizer=MixedQuantizer(sp2_fraction, sp2_fmt, w_bits), device=device, dtype=dtype)


class MixedConv1d(_MixedConv, QuantConv1d):
    """``torch.nn.Conv1d`` trained with Mix and Match weights, SP2 or fixed point per output channel
    (:class:`MixedQuantizer`); :meth:`export` gives ``(MixedWeights, scale float64 [C_out])``."""


class MixedConv2d(_MixedConv, QuantConv2d):
    """``torch.nn.Conv2d`` trained with Mix and Match weights, SP2 or fixed point per output channel
    (:class:`MixedQuantizer`); :meth:`export` gives ``(MixedWeights, scale float64 [C_out])``."""
