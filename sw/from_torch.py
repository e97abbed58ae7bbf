"""From PyTorch: an ``nn.Sequential`` of peforge's trainable layers to an integer :class:`sw.network.Network`.

Supported modules, in any order and number (any sizes the layers themselves allow):

=============================================  =========  ==========================================================
module                                         scheme     export
=============================================  =========  ==========================================================
``sw.layers.FixedLinear`` (``FixedQuantizer``)  ``fixed``  ``export()``: integers and per-row scale
``sw.layers.SP2Linear`` (``SP2Quantizer``)      ``sp2``    ``export()``: codes and ``alpha`` (scale ``alpha / 2^E``)
``QuantLinear`` exporting ``MixedWeights``      ``msq``    ``export()[0]``, a :class:`sw.msq.MixedWeights`
``sw.nm.NMSparseLinear``                        ``nm``     ``export(nm_w_bits)``: packed values, indices, scale
``sw.circulant.BlockCirculantLinear``           circulant  ``export(fmt)``: half spectra, per-block-row scale
``sw.forms.PolarizedLinear`` (hardened)         crossbar   ``export(fmt)``: polarised integers ``[in, out]``, scale
``torch.nn.Linear`` (plain)                     ``fixed``  post-training :func:`sw.fixed.quantize` to ``linear_w_bits``
``nn.ReLU``                                     --         ReLU of the layer before it
``nn.Flatten``, ``nn.Identity``, ``nn.Dropout``  --         nothing (the input is flattened per sample)
=============================================  =========  ==========================================================

Activation scales are calibrated on ``calibration_data`` with the float model (eval mode, no gradients), as
``sw.models`` does: the input scale maps the largest input magnitude to the top input code (unless
``input_scale`` is given); a hidden layer's output is ``act_bits`` unsigned after a ReLU (its largest
calibration value maps to ``2^act_bits - 1``) and signed otherwise (the largest magnitude maps to
``2^(act_bits - 1) - 1``); the logits are signed ``logit_bits`` integers whose largest calibration magnitude
maps to ``2^(logit_bits - 3)`` (8x headroom before they clip). Each layer's requantisation is
:meth:`sw.requant.Requant.fit` of ``acc LSB = s_in * weight scale`` and the float bias onto the output scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from . import fixed
from .circulant_torch import BlockCirculantLinear
from .forms_torch import PolarizedLinear
from .nm_torch import NMSparseLinear
from .circulant import CirculantFormat
from .intops import int_range, to_numpy
from .layers import FixedQuantizer, QuantLinear, SP2Quantizer
from .msq import MixedWeights
from .network import (CirculantWeights, CrossbarWeights, FixedWeights, InputSpec, Layer, MSQWeights, Network,
                      NMWeights, SP2Weights)
from .params import check_bool, check_int
from .requant import Requant

__all__ = ["from_torch", "CIRCULANT_DEFAULTS", "CROSSBAR_DEFAULTS"]

#: CirculantFormat fields used unless ``circulant=`` overrides them (block, act_bits, act_signed and max_q
#: come from the layer and its input).
CIRCULANT_DEFAULTS: Mapping[str, Any] = {"w_bits": 12, "guard_bits": 4}
#: CrossbarFormat fields used unless ``crossbar=`` overrides them (rows, rows_per_sub, act_bits from the layer;
#: ``cols`` there is the tile width, default all outputs).
CROSSBAR_DEFAULTS: Mapping[str, Any] = {"w_bits": 8, "cell_bits": 2}

_NO_OPS = (torch.nn.Flatten, torch.nn.Identity, torch.nn.Dropout)
_KINDS = "a peforge linear layer, nn.Linear, nn.ReLU, nn.Flatten, nn.Identity or nn.Dropout"


def _export(m: torch.nn.Module, in_bits: int, in_signed: bool, *, nm_w_bits: int, linear_w_bits: int,
            circulant: Mapping[str, Any], crossbar: Mapping[str, Any]):
    """``(weights, w_scale float64 [out])`` of one linear module: real weight = ``w_scale[j] * integer weight``
    (per accumulator LSB of output ``j``)."""
    if isinstance(m, NMSparseLinear):
        values, indices, scale = m.export(nm_w_bits)
        return NMWeights(values, indices, m.fmt, nm_w_bits), scale
    if isinstance(m, BlockCirculantLinear):
        fmt = CirculantFormat(**{**CIRCULANT_DEFAULTS, **circulant, "block": m.block, "act_bits": in_bits,
                                 "act_signed": in_signed, "max_q": m.in_features // m.block})
        spectra, scale = m.export(fmt)
        # one PE output LSB is out_lsb spectral-weight x activation LSBs (sw.circulant.dequantize)
        return CirculantWeights(spectra, fmt, m.out_features), np.repeat(scale, m.block) * fmt.out_lsb
    if isinstance(m, PolarizedLinear):
        settings = {**CROSSBAR_DEFAULTS, **crossbar}
        cols = settings.pop("cols", None)
        fmt = m.crossbar_format(act_bits=in_bits, **settings)
        w_int, scale = m.export(fmt)
        if cols is not None:
            check_int("Crossbar cols", cols, min=1)
            fmt = fmt.replace(cols=min(cols, m.out_features))
        return CrossbarWeights(w_int, fmt), scale
    if isinstance(m, QuantLinear):
        if isinstance(m.quantizer, FixedQuantizer):
            w_int, scale = m.export()
            return FixedWeights(w_int, m.quantizer.fmt), scale
        if isinstance(m.quantizer, SP2Quantizer):
            codes, alpha = m.export()
            return SP2Weights(codes, m.quantizer.fmt), alpha / (1 << m.quantizer.fmt.E)
        mixed = m.export()[0]
        if isinstance(mixed, MixedWeights):
            return MSQWeights(mixed.is_sp2, mixed.codes, mixed.fixed, mixed.sp2_fmt, mixed.w_bits), mixed.scale
        raise TypeError(f"QuantLinear quantizer must export fixed, SP2 or MixedWeights, not {type(mixed).__name__}")
    if type(m) is torch.nn.Linear:
        w_int, scale = fixed.quantize(m.weight.detach(), linear_w_bits)
        return FixedWeights(w_int, linear_w_bits), scale
    raise TypeError(f"Model layer must be {_KINDS}, not {m!r}")


def _is_linear(m: torch.nn.Module) -> bool:
    return isinstance(m, (QuantLinear, NMSparseLinear, BlockCirculantLinear, PolarizedLinear)) or \
        type(m) is torch.nn.Linear


def _peak(x: np.ndarray, signed: bool) -> float:
    return float(np.abs(x).max(initial=0.0) if signed else np.maximum(x, 0).max(initial=0.0))


def from_torch(model: torch.nn.Sequential, calibration_data: Any, *, input_bits: int = 8,
               input_signed: bool | None = None, input_scale: float | None = None, act_bits: int = 8,
               logit_bits: int = 16, nm_w_bits: int = 8, linear_w_bits: int = 8,
               circulant: Mapping[str, Any] | None = None, crossbar: Mapping[str, Any] | None = None) -> Network:
    """The integer network of a trained ``nn.Sequential`` (see the module docstring for the modules and scales).

    Parameters
    ----------
    model : torch.nn.Sequential
    calibration_data : float array or tensor [N, ...]
        Model inputs (real values); they set the activation scales.
    input_bits : int
        Width of the network input integers.
    input_signed : bool or None
        Default: signed iff some calibration input is negative.
    input_scale : float or None
        Real value of one input LSB (e.g. ``1 / 16`` for digits pixels); default ``max|x| / top code``.
    act_bits : int
        Hidden activation width (unsigned after a ReLU, signed otherwise).
    logit_bits : int
        Width of the signed logits.
    nm_w_bits : int
        Value width of N:M layers (``NMSparseLinear.export``).
    linear_w_bits : int
        Weight width of plain ``nn.Linear`` layers (post-training quantisation).
    circulant, crossbar : mapping, optional
        Format fields overriding :data:`CIRCULANT_DEFAULTS` / :data:`CROSSBAR_DEFAULTS` (``crossbar`` may set
        ``cols``, the tile width).

    Returns
    -------
    Network
        With ``input.scale`` and each layer's ``out_scale`` set (``Network.quantize_input`` quantises real
        inputs).

    Raises
    ------
    TypeError, ValueError
        ``"Model must be a torch.nn.Sequential, not Linear(...)"``,
        ``"Model layer 2 must be a peforge linear layer, ..., not Conv2d(...)"``,
        ``"Model layer 0 must follow a linear layer, not ReLU()"``, ``"Model must have a linear layer, not
        none"``, ``"Model layer 4 (PolarizedLinear): PolarizedLinear weight must be polarised (harden() it
        first), not 0.31 away from it"``, ``"Model layer 4 (PolarizedLinear): Layer input must be the
        crossbar's 8-bit unsigned inputs (act_bits, unsigned), not 8-bit signed"``.
    """
    if not isinstance(model, torch.nn.Sequential):
        raise TypeError(f"Model must be a torch.nn.Sequential, not {model!r}")
    check_int("Input bits", input_bits, min=1, max=32)
    check_int("Activation bits", act_bits, min=1, max=32)
    check_int("Logit bits", logit_bits, min=4, max=32)
    if input_signed is not None:
        check_bool("Input signed", input_signed)
    stages: list[list[Any]] = []          # [module index, module, relu]
    for i, m in enumerate(model):
        if _is_linear(m):
            stages.append([i, m, False])
        elif isinstance(m, torch.nn.ReLU):
            if not stages:
                raise ValueError(f"Model layer {i} must follow a linear layer, not {m!r}")
            stages[-1][2] = True
        elif not isinstance(m, _NO_OPS):
            raise TypeError(f"Model layer {i} must be {_KINDS}, not {m!r}")
    if not stages:
        raise ValueError("Model must have a linear layer, not none")

    x = torch.as_tensor(to_numpy(calibration_data), dtype=torch.float32)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"Calibration data must be a non-empty batch [N, ...], not shape {tuple(x.shape)}")
    outputs: list[np.ndarray] = []
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            h = x
            for m in model:
                h = m(h)
                if _is_linear(m):
                    outputs.append(None)
                if outputs:
                    outputs[-1] = h
    finally:
        model.train(training)
    outputs = [o.reshape(len(o), -1).double().numpy() for o in outputs]

    x_np = x.reshape(len(x), -1).double().numpy()
    signed = bool(x_np.min() < 0) if input_signed is None else input_signed
    if input_scale is None:
        peak = _peak(x_np, signed)
        input_scale = peak / int_range(input_bits, signed)[1] if peak > 0 else 1.0
    spec = InputSpec(x_np.shape[1], input_bits, signed, float(input_scale))

    layers = []
    bits, in_signed, s_in = spec.bits, spec.signed, spec.scale
    for n, ((i, m, relu), h) in enumerate(zip(stages, outputs)):
        where = f"Model layer {i} ({type(m).__name__.removeprefix('Parametrized')})"
        last = n == len(stages) - 1
        out_bits, out_signed = (logit_bits, True) if last else (act_bits, not relu)
        peak = _peak(h, out_signed)
        top = 1 << (logit_bits - 3) if last else int_range(out_bits, out_signed)[1]
        s_out = peak / top if peak > 0 else 1.0
        try:
            weights, w_scale = _export(m, bits, in_signed, nm_w_bits=nm_w_bits, linear_w_bits=linear_w_bits,
                                       circulant=circulant or {}, crossbar=crossbar or {})
            bias = np.zeros(m.out_features) if m.bias is None else m.bias.detach().double().numpy()
            lo, hi = int_range(bits, in_signed)
            requant = Requant.fit(s_in * np.asarray(w_scale, np.float64), bias, float(s_out),
                                  acc_bound=weights.acc_bound(max(-lo, hi)))
            layers.append(Layer(weights, requant.multiplier, requant.shift, requant.offset, relu, bits, in_signed,
                                out_bits, out_signed, out_scale=float(s_out)))
        except (ValueError, TypeError) as e:
            raise type(e)(f"{where}: {e}") from None
        bits, in_signed, s_in = out_bits, out_signed, s_out
    return Network(spec, tuple(layers))
