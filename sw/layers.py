"""PyTorch layers of the weight formats: fake quantisation with a straight-through gradient.

Kept apart from the numpy golden models (:mod:`sw.fixed`, :mod:`sw.sp2`) so those import without torch;
both modules re-export their layers from here, so ``from sw.sp2 import SP2Linear`` works as usual.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .fixed import check_w_bits, dequantize as fixed_dequantize, quantize as fixed_quantize
from .sp2 import SP2Format, check_format
from .sp2 import dequantize as sp2_dequantize, quantize as sp2_quantize

__all__ = ["straight_through", "RowFakeQuant", "QuantLinear", "FixedQuantizer", "FixedLinear",
           "SP2Quantizer", "SP2Linear"]


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
