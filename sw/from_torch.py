"""From PyTorch: an ``nn.Sequential`` of peforge's trainable layers (MLPs, CNNs and recurrent models) to an integer
:class:`sw.network.Network`.

Supported modules, in any order and number (any sizes the layers themselves allow):

==================================================  =========  ==================================================
module                                              scheme     export (weights of the matrix ``[out, in]``)
==================================================  =========  ==================================================
``sw.layers.FixedLinear``, ``FixedConv1d/2d``       ``fixed``  ``export()``: integers and per-row scale
``sw.layers.SP2Linear``, ``SP2Conv1d/2d``           ``sp2``    ``export()``: codes and ``alpha`` (``alpha / 2^E``)
``sw.layers.MixedLinear``, ``MixedConv1d/2d``       ``msq``    ``export()[0]``, a :class:`sw.msq.MixedWeights`
(any ``QuantLinear`` / ``QuantConv*`` quantiser
exporting one of these three)
``sw.nm_torch.NMSparseLinear``, ``NMSparseConv*``   ``nm``     ``export(nm_w_bits)``: packed values, indices, scale
``sw.circulant_torch.BlockCirculantLinear``,        circulant  ``export(fmt)``: half spectra, per-block-row scale
``BlockCirculantConv1d/2d``
``sw.forms_torch.PolarizedLinear``,                 crossbar   ``export(fmt)``: polarised ``[in, out]``, scale
``PolarizedConv1d/2d`` (hardened)
``torch.nn.Linear``, ``nn.Conv1d/2d`` (plain)       ``fixed``  post-training :func:`sw.fixed.quantize`
                                                               to ``linear_w_bits``
``nn.BatchNorm1d/2d`` (after a weighted layer)      --         folded into its requantisation (below)
``nn.MaxPool1d/2d``                                 --         ``maxpool`` (kernel, stride; no padding)
``nn.AvgPool1d/2d``                                 --         ``avgpool`` (kernel, stride; no padding)
``nn.AdaptiveAvgPool1d/2d(1)``                      --         ``globalavgpool``
``nn.ReLU``                                         --         ReLU of the requantised layer before it
``nn.Flatten``                                      --         ``flatten`` (nothing in an MLP)
``nn.Identity``, ``nn.Dropout``                     --         nothing
``sw.rnn_torch.QuantLSTM`` / ``QuantGRU``           any        ``lstm`` / ``gru``: ``ih`` and ``hh`` exported as
                                                               the linear layers of their scheme (below)
``torch.nn.LSTM`` / ``nn.GRU``                      ``fixed``  ``lstm`` / ``gru`` of the last hidden state;
(``batch_first=True``, one layer, one direction)               post-training quantisation to ``linear_w_bits``
==================================================  =========  ==================================================

**Recurrent layers** (``docs/rnn.md``) come first: the calibration data is ``[N, T, F]`` and the network input
``(T, F)``. Their formats are not calibrated but fixed by ``rnn=`` (:data:`RNN_DEFAULTS`): sigmoid and tanh tables
of ``table_bits`` codes covering ``+-table_range`` with ``table_frac`` fraction bits, a hidden state of ``act_bits``
signed bits with ``act_bits - 1`` fraction bits (``|h| < 1``), a cell state of ``cell_bits`` with
``min(2 table_frac, cell_bits - 1 - ceil(log2(T + 1)))`` fraction bits (``|c_t| <= t``: it never clips). The gate
requantisation is :meth:`sw.requant.Requant.fit` of ``acc LSB = s_x w_scale`` (input) and ``2^-(act_bits-1)
u_scale`` (hidden state) and the biases ``b_ih``, ``b_hh`` onto the table's code scale. A plain ``nn.LSTM`` /
``nn.GRU`` stands for its last hidden state (``output[:, -1]``) in the model; a ``QuantLSTM(return_sequences=True)``
gives ``[T, H]`` for an ``nn.Flatten`` and dense layers.

A convolution's weights are the matrix ``[C_out, kh * kw * C_in / groups]`` of :mod:`sw.conv` (kernel row, kernel
column, channel; channel fastest: :func:`sw.layers.conv_matrix`); its geometry is torch's: kernel, stride, zero
padding (ints, ``"same"`` as per-side ints, the extra one of an even kernel at the bottom / right as torch puts it,
``"valid"``), ``groups`` 1 or the input channels (depthwise), no dilation. A model with a convolution or a pool
takes the calibration data's shape ``[N, C, L]`` / ``[N, C, H, W]`` as its input shape; an MLP's input is
flattened per sample (as before convolutions existed, so its network is unchanged).

Activation scales are calibrated on ``calibration_data`` with the float model (eval mode, no gradients), as
``sw.models`` does: the input scale maps the largest input magnitude to the top input code (unless
``input_scale`` is given); a hidden layer's output is ``act_bits`` unsigned after a ReLU (its largest
calibration value maps to ``2^act_bits - 1``) and signed otherwise (the largest magnitude maps to
``2^(act_bits - 1) - 1``); the logits are signed ``logit_bits`` integers whose largest calibration magnitude
maps to ``2^(logit_bits - 3)`` (8x headroom before they clip). Each weighted layer's requantisation is
:meth:`sw.requant.Requant.fit` of ``acc LSB = s_in * weight scale`` and the float bias onto the output scale.

**Pools.** A max pool passes its input's range and scale (rounding is monotone, so the max of the quantised
values is the quantised max). An average pool, global or not, is the window sum requantised like a layer:
``acc LSB = s_in / window`` (so ``multiplier / 2^shift`` is ``1 / window`` times ``s_in / s_out``, exact to the
31-bit multiplier), its output scale calibrated as a hidden layer's, unsigned when its input is. The last
requantised layer (weighted or average pool) gives the logits, whatever max pools or flattens follow it.

**ReLU** belongs to the nearest requantised layer before it (weighted or average pool); max pools and flattens
in between commute with it (``relu(max(x)) = max(relu(x))``), so ``Conv2d, MaxPool2d, ReLU`` is exact too.

**BatchNorm** (FINN's streamlining). ``nn.BatchNorm1d/2d`` directly after a weighted layer (before its ReLU) is
folded into that layer's requantisation, per output channel: with ``a = gamma / sqrt(running_var + eps)``, the
accumulator LSB becomes ``s_in * w_scale * |a|`` and the bias ``a * (bias - running_mean) + beta``; a channel with
``a < 0`` gets its integer weights negated (exact: every exported format is symmetric; a circulant row cannot be
negated alone, so a circulant layer needs ``a > 0``). The weights stay as trained.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from . import fixed
from .circulant import CirculantFormat
from .circulant_torch import BlockCirculantConv1d, BlockCirculantConv2d, BlockCirculantLinear
from .conv import AvgPool, Conv, Flatten, GlobalAvgPool, MaxPool
from .forms_torch import PolarizedConv1d, PolarizedConv2d, PolarizedLinear
from .intops import int_range, to_numpy
from .layers import FixedQuantizer, QuantConv1d, QuantConv2d, QuantLinear, SP2Quantizer, conv_matrix
from .msq import MixedWeights
from .network import (CirculantWeights, CrossbarWeights, FixedWeights, InputSpec, Layer, MSQWeights, Network,
                      NMWeights, SP2Weights)
from .nm_torch import NMSparseConv1d, NMSparseConv2d, NMSparseLinear
from .params import check_bool, check_int
from .recurrent import GRU, LSTM, CellFormat, activation_tables
from .requant import Requant
from .rnn_torch import QuantGRU, QuantLSTM

__all__ = ["from_torch", "CIRCULANT_DEFAULTS", "CROSSBAR_DEFAULTS", "RNN_DEFAULTS", "SUPPORTED"]

#: CirculantFormat fields used unless ``circulant=`` overrides them (block, act_bits, act_signed and max_q
#: come from the layer and its input).
CIRCULANT_DEFAULTS: Mapping[str, Any] = {"w_bits": 12, "guard_bits": 4}
#: CrossbarFormat fields used unless ``crossbar=`` overrides them (rows, rows_per_sub, act_bits from the layer;
#: ``cols`` there is the tile width, default all outputs).
CROSSBAR_DEFAULTS: Mapping[str, Any] = {"w_bits": 8, "cell_bits": 2}
#: Formats of the recurrent layers unless ``rnn=`` overrides them (docs/rnn.md): the tables' code width, fraction
#: bits and the real value of the top code, the cell state's width.
RNN_DEFAULTS: Mapping[str, Any] = {"table_bits": 10, "table_frac": 12, "table_range": 8.0, "cell_bits": 24}

#: What a model may hold (the refusal names it).
SUPPORTED = ("a peforge linear, convolution or recurrent layer, nn.Linear, nn.Conv1d/2d, nn.LSTM, nn.GRU, "
             "nn.BatchNorm1d/2d, nn.MaxPool1d/2d, nn.AvgPool1d/2d, nn.AdaptiveAvgPool1d/2d(1), nn.ReLU, nn.Flatten, "
             "nn.Identity or nn.Dropout")

nn = torch.nn
_NO_OPS = (nn.Identity, nn.Dropout)
_NM = (NMSparseLinear, NMSparseConv1d, NMSparseConv2d)
_CIRCULANT = (BlockCirculantLinear, BlockCirculantConv1d, BlockCirculantConv2d)
_POLARIZED = (PolarizedLinear, PolarizedConv1d, PolarizedConv2d)
_QUANT = (QuantLinear, QuantConv1d, QuantConv2d)
_CONV_1D = (nn.Conv1d, BlockCirculantConv1d)
_CONV_2D = (nn.Conv2d, BlockCirculantConv2d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)
_MAXPOOL = (nn.MaxPool1d, nn.MaxPool2d)
_AVGPOOL = (nn.AvgPool1d, nn.AvgPool2d)
_GLOBALPOOL = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
_RECURRENT = (QuantLSTM, QuantGRU, nn.LSTM, nn.GRU)


def _check_recurrent(m: nn.Module) -> None:
    """Refuse a plain ``nn.LSTM`` / ``nn.GRU`` that is not one batch-first layer in one direction."""
    if not isinstance(m, (nn.LSTM, nn.GRU)):
        return
    for field, want in (("batch_first", True), ("num_layers", 1), ("bidirectional", False),
                        ("proj_size", 0)):
        value = getattr(m, field, want)
        if value != want or type(value) is not type(want):
            why = {"batch_first": "inputs [N, T, F]", "num_layers": "one layer per kind",
                   "bidirectional": "one direction", "proj_size": "no projection"}[field]
            raise ValueError(f"{_name(m)} {field} must be {want} ({why}), not {value!r}")


def _name(m: nn.Module) -> str:
    return type(m).__name__.removeprefix("Parametrized")


def _is_conv(m: nn.Module) -> bool:
    return isinstance(m, (*_CONV_1D, *_CONV_2D))


def _is_weighted(m: nn.Module) -> bool:
    """A layer with weights on a PE: one of peforge's trainable layers, or a plain ``nn.Linear`` / ``nn.Conv*``."""
    return isinstance(m, (*_QUANT, *_NM, *_CIRCULANT, *_POLARIZED)) or \
        type(m) in (nn.Linear, nn.Conv1d, nn.Conv2d)


def _conv_dims(m: nn.Module) -> int:
    return 1 if isinstance(m, (*_CONV_1D, nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.BatchNorm1d)) else 2


def _matrix(m: nn.Module) -> torch.Tensor:
    """The weight matrix ``[out, in]`` of a plain or quantised linear / convolution module (detached)."""
    w = m.weight.detach()
    return conv_matrix(w) if _is_conv(m) else w


def _export(m: nn.Module, in_bits: int, in_signed: bool, *, nm_w_bits: int, linear_w_bits: int,
            circulant: Mapping[str, Any], crossbar: Mapping[str, Any]):
    """``(weights, w_scale float64 [out])`` of one weighted module: real weight = ``w_scale[j] * integer weight``
    (per accumulator LSB of output ``j``), the integer weights those of the matrix ``[out, in]``."""
    if isinstance(m, _NM):
        values, indices, scale = m.export(nm_w_bits)
        return NMWeights(values, indices, m.fmt, nm_w_bits), scale
    if isinstance(m, _CIRCULANT):
        q = m.in_features // m.block if isinstance(m, BlockCirculantLinear) else m.window // m.block
        out = m.out_features if isinstance(m, BlockCirculantLinear) else m.out_channels
        fmt = CirculantFormat(**{**CIRCULANT_DEFAULTS, **circulant, "block": m.block, "act_bits": in_bits,
                                 "act_signed": in_signed, "max_q": q})
        spectra, scale = m.export(fmt)
        # one PE output LSB is out_lsb spectral-weight x activation LSBs (sw.circulant.dequantize)
        return CirculantWeights(spectra, fmt, out), np.repeat(scale, m.block) * fmt.out_lsb
    if isinstance(m, _POLARIZED):
        settings = {**CROSSBAR_DEFAULTS, **crossbar}
        cols = settings.pop("cols", None)
        fmt = m.crossbar_format(act_bits=in_bits, **settings)
        w_int, scale = m.export(fmt)
        if cols is not None:
            check_int("Crossbar cols", cols, min=1)
            fmt = fmt.replace(cols=min(cols, fmt.cols))
        return CrossbarWeights(w_int, fmt), scale
    if isinstance(m, _QUANT):
        exported = m.export()
        if isinstance(exported[0], MixedWeights):
            mixed = exported[0]
            return MSQWeights(mixed.is_sp2, mixed.codes, mixed.fixed, mixed.sp2_fmt, mixed.w_bits), mixed.scale
        if isinstance(m.quantizer, FixedQuantizer):
            return FixedWeights(exported[0], m.quantizer.fmt), exported[1]
        if isinstance(m.quantizer, SP2Quantizer):
            return SP2Weights(exported[0], m.quantizer.fmt), exported[1] / (1 << m.quantizer.fmt.E)
        raise TypeError(f"{_name(m)} quantizer must export fixed, SP2 or MixedWeights, not "
                        f"{type(exported[0]).__name__}")
    w_int, scale = fixed.quantize(_matrix(m), linear_w_bits)       # plain nn.Linear / nn.Conv1d / nn.Conv2d
    return FixedWeights(w_int, linear_w_bits), scale


def _negate_rows(weights, rows: np.ndarray):
    """``weights`` with the outputs ``rows`` (bool ``[out]``) negated, exactly (the exported formats are
    symmetric: a fixed-point or N:M value is never ``-2^(w_bits-1)``, an SP2 code negates by its sign bit, a
    crossbar column keeps its polarity with every sign flipped)."""
    if not rows.any():
        return weights
    sign = np.where(rows, -1, 1)
    if isinstance(weights, FixedWeights):
        return dataclasses.replace(weights, weights=weights.weights * sign[:, None])
    if isinstance(weights, SP2Weights):
        flip = np.int64(1 << (weights.fmt.bits - 1))
        return dataclasses.replace(weights, codes=np.where(rows[:, None], weights.codes ^ flip, weights.codes))
    if isinstance(weights, MSQWeights):
        flip = np.int64(1 << (weights.sp2_fmt.bits - 1))
        codes = np.where((rows & weights.is_sp2)[:, None], weights.codes ^ flip, weights.codes)
        return dataclasses.replace(weights, codes=codes, fixed=weights.fixed * sign[:, None])
    if isinstance(weights, NMWeights):
        return dataclasses.replace(weights, values=weights.values * sign[:, None])
    if isinstance(weights, CrossbarWeights):
        return dataclasses.replace(weights, weights=weights.weights * sign[None, :])
    raise ValueError(f"BatchNorm scale must be positive on every channel of a {weights.scheme} layer (a "
                     f"{weights.scheme} row cannot be negated alone), not negative on channel "
                     f"{int(np.flatnonzero(rows)[0])}")


def _batchnorm(bn: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` float64 ``[C]`` of an eval-mode BatchNorm: ``y = a * x + b``."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm must track running statistics (track_running_stats=True), not batch statistics")
    var = bn.running_var.detach().double().numpy()
    mean = bn.running_mean.detach().double().numpy()
    gamma = np.ones_like(var) if bn.weight is None else bn.weight.detach().double().numpy()
    beta = np.zeros_like(var) if bn.bias is None else bn.bias.detach().double().numpy()
    a = gamma / np.sqrt(var + bn.eps)
    if not np.all(a != 0):
        raise ValueError(f"BatchNorm scale must be non-zero on every channel, not 0 (channel "
                         f"{int(np.flatnonzero(a == 0)[0])})")
    return a, beta - a * mean


def _fold(bn: nn.Module, index: int, weights):
    """``(a, b, weights)``: the BatchNorm at model layer ``index`` as ``y = a * x + b`` per channel, and the weights
    with the channels where ``a < 0`` negated (errors name the BatchNorm)."""
    try:
        a, b = _batchnorm(bn)
        return a, b, _negate_rows(weights, a < 0)
    except ValueError as e:
        raise _Named(f"Model layer {index} ({_name(bn)}): {e}") from None


class _Named(ValueError):
    """An error already prefixed with the module it is about."""


def _per_axis(value, dims: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


def _conv_geometry(m: nn.Module, dims: int, in_channels: int) -> dict[str, Any]:
    """The :class:`sw.conv.Conv` geometry of a torch convolution: kernel, stride, padding per side, groups."""
    kernel, stride = _per_axis(m.kernel_size, dims), _per_axis(m.stride, dims)
    if _per_axis(m.dilation, dims) != (1,) * dims:
        raise ValueError(f"Convolution dilation must be 1 (sw.conv has none), not {m.dilation}")
    if m.padding_mode != "zeros":
        raise ValueError(f"Convolution padding_mode must be 'zeros', not {m.padding_mode!r}")
    if m.groups not in (1, in_channels):
        raise ValueError(f"Convolution groups must be 1 or the {in_channels} input channels (depthwise), "
                         f"not {m.groups}")
    if m.padding == "same":       # torch: the odd one of an even kernel goes to the bottom / right
        sides = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel]
    elif m.padding == "valid":
        sides = [(0, 0)] * dims
    else:
        sides = [(p, p) for p in _per_axis(m.padding, dims)]
    return {"kernel": kernel, "stride": stride, "padding": tuple(p for side in sides for p in side),
            "groups": m.groups}


def _pool_geometry(m: nn.Module, dims: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(kernel, stride)`` of a torch max or average pool; one-line errors for what sw.conv's pools lack."""
    kernel = _per_axis(m.kernel_size, dims)
    stride = kernel if m.stride is None or m.stride == () else _per_axis(m.stride, dims)
    if _per_axis(m.padding, dims) != (0,) * dims:
        raise ValueError(f"Pool padding must be 0 (sw.conv's pools have none), not {m.padding}")
    if m.ceil_mode:
        raise ValueError("Pool ceil_mode must be False (windows inside the input), not True")
    if isinstance(m, _MAXPOOL):
        if _per_axis(m.dilation, dims) != (1,) * dims:
            raise ValueError(f"Pool dilation must be 1, not {m.dilation}")
        if m.return_indices:
            raise ValueError("Pool return_indices must be False, not True")
    elif getattr(m, "divisor_override", None) is not None:
        raise ValueError(f"Pool divisor_override must be None (the window size), not {m.divisor_override}")
    return kernel, stride


@dataclasses.dataclass
class _Stage:
    """One integer layer to make: from model layer ``index`` (``op``: weighted, maxpool, avgpool, globalavgpool or
    flatten), the BatchNorm folded into it, its ReLU, and the model layer whose output calibrates it."""

    index: int
    module: nn.Module
    op: str
    tap: int
    bn: int | None = None
    relu: bool = False

    @property
    def requantised(self) -> bool:
        return self.op in ("weighted", "avgpool", "globalavgpool")


def _stages(model: nn.Sequential) -> list[_Stage]:
    """The model's modules as integer layers to make, checked (one-line errors naming the module)."""
    stages: list[_Stage] = []
    previous = None                                   # the last module that is not a no-op
    for i, m in enumerate(model):
        where = f"Model layer {i} ({_name(m)})"
        if isinstance(m, _RECURRENT):
            try:
                _check_recurrent(m)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            if stages:
                raise ValueError(f"{where} must be the model's first layer (it takes the input sequence [N, T, F]), "
                                 f"not after {previous!r}")
            stages.append(_Stage(i, m, "recurrent", i))
        elif _is_weighted(m):
            stages.append(_Stage(i, m, "weighted", i))
        elif isinstance(m, _BATCHNORM):
            last = stages[-1] if stages else None
            if last is None or last.op != "weighted" or last.relu or last.bn is not None:
                raise ValueError(f"{where} must directly follow a linear or convolution layer (before its ReLU), "
                                 f"not {'the input' if previous is None else repr(previous)}")
            last.bn = last.tap = i
        elif isinstance(m, nn.ReLU):
            owner = next((s for s in reversed(stages) if s.op not in ("maxpool", "flatten")), None)
            if owner is None or owner.op == "recurrent":
                raise ValueError(f"Model layer {i} must follow a linear, convolution or average pooling layer, "
                                 f"not {m!r}")
            owner.relu = True                         # idempotent: ReLU twice is ReLU
        elif isinstance(m, _MAXPOOL):
            stages.append(_Stage(i, m, "maxpool", i))
        elif isinstance(m, _AVGPOOL):
            stages.append(_Stage(i, m, "avgpool", i))
        elif isinstance(m, _GLOBALPOOL):
            size = _per_axis(m.output_size, _conv_dims(m))
            if size != (1,) * len(size):
                raise ValueError(f"{where} output size must be 1 (a global average), not {m.output_size!r}")
            stages.append(_Stage(i, m, "globalavgpool", i))
        elif isinstance(m, nn.Flatten):
            if (m.start_dim, m.end_dim) != (1, -1):
                raise ValueError(f"{where} must flatten dimensions 1 to -1 (one sample), not {m.start_dim} to "
                                 f"{m.end_dim}")
            stages.append(_Stage(i, m, "flatten", i))
        elif not isinstance(m, _NO_OPS):
            raise TypeError(f"Model layer {i} must be {SUPPORTED}, not {m!r}")
        if not isinstance(m, _NO_OPS):
            previous = m
    if not any(s.op == "weighted" for s in stages):
        raise ValueError("Model must have a linear or convolution layer, not none")
    if stages[-1].op == "recurrent":
        raise ValueError("Model must end with a linear layer after its recurrent layer, not with it")
    return stages


def _calibrate(model: nn.Sequential, x: torch.Tensor, taps: set[int]) -> dict[int, np.ndarray]:
    """The float outputs (float64 numpy) of the model layers ``taps`` on ``x``, in eval mode without gradients."""
    outputs: dict[int, np.ndarray] = {}
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            h = x
            for i, m in enumerate(model):
                try:
                    h = m(h)
                    if isinstance(m, (nn.LSTM, nn.GRU)):
                        h = h[0][:, -1]                       # a plain recurrent module: its last hidden state
                except RuntimeError as e:
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    raise ValueError(f"Model layer {i} ({_name(m)}) input must fit the layer, not shape "
                                     f"{tuple(h.shape[1:])} (torch: {first})") from None
                if i in taps:
                    outputs[i] = h.double().numpy()
    finally:
        model.train(training)
    return outputs


def _peak(x: np.ndarray, signed: bool) -> float:
    return float(np.abs(x).max(initial=0.0) if signed else np.maximum(x, 0).max(initial=0.0))


def _plain_recurrent_weights(m: nn.Module, linear_w_bits: int):
    """``(w, w_scale, b_ih, u, u_scale, b_hh)`` of a plain ``nn.LSTM`` / ``nn.GRU``: post-training fixed point."""
    w, sw = fixed.quantize(m.weight_ih_l0.detach(), linear_w_bits)
    u, su = fixed.quantize(m.weight_hh_l0.detach(), linear_w_bits)
    rows = len(w)
    b_ih = m.bias_ih_l0.detach().double().numpy() if m.bias else np.zeros(rows)
    b_hh = m.bias_hh_l0.detach().double().numpy() if m.bias else np.zeros(rows)
    return (FixedWeights(w, linear_w_bits), sw, b_ih, FixedWeights(u, linear_w_bits), su, b_hh)


def _bias(linear: nn.Module, rows: int) -> np.ndarray:
    return np.zeros(rows) if linear.bias is None else linear.bias.detach().double().numpy()


def _recurrent_layer(m: nn.Module, shape: tuple[int, ...], in_bits: int, in_signed: bool, s_in: float,
                     act_bits: int, rnn: Mapping[str, Any], **export) -> LSTM | GRU:
    """The ``lstm`` / ``gru`` layer of a recurrent module on inputs ``shape = (T, F)`` of scale ``s_in`` (module
    docstring: the formats and the requantisation)."""
    if len(shape) != 2:
        raise ValueError(f"{_name(m)} input must be a sequence (T, F), not shape {shape}")
    kind = LSTM if isinstance(m, (QuantLSTM, nn.LSTM)) else GRU
    seq, features = shape
    check_int("Rnn table_bits", rnn["table_bits"], min=2, max=16)
    check_int("Rnn table_frac", rnn["table_frac"], min=1, max=16)
    check_int("Rnn cell_bits", rnn["cell_bits"], min=4, max=32)
    if act_bits < 2:
        raise ValueError(f"Activation bits must be at least 2 for a recurrent layer's signed hidden state, not "
                         f"{act_bits}")
    tables = activation_tables(rnn["table_bits"], rnn["table_frac"], float(rnn["table_range"]) /
                               (1 << (rnn["table_bits"] - 1)))
    h_frac = act_bits - 1
    if m.input_size != features:
        raise ValueError(f"{_name(m)} input_size must be the {features} features of the input, not {m.input_size}")
    if isinstance(m, (nn.LSTM, nn.GRU)):
        w, sw, b_ih, u, su, b_hh = _plain_recurrent_weights(m, export["linear_w_bits"])
    else:
        w, sw = _export(m.ih, in_bits, in_signed, crossbar={}, **export)
        u, su = _export(m.hh, act_bits, True, crossbar={}, **export)
        b_ih, b_hh = _bias(m.ih, w.out_features), _bias(m.hh, u.out_features)
    rows = w.out_features
    lo, hi = int_range(in_bits, in_signed)
    bound = max(w.acc_bound(max(-lo, hi)), u.acc_bound(1 << (act_bits - 1)))
    requant = Requant.fit(np.concatenate([s_in * np.asarray(sw, np.float64),
                                          2.0 ** -h_frac * np.asarray(su, np.float64)]),
                          np.concatenate([b_ih, b_hh]), tables.scale, acc_bound=bound)
    cell = None
    if kind is LSTM:
        c_bits = rnn["cell_bits"]
        c_frac = max(0, min(2 * tables.frac, c_bits - 1 - math.ceil(math.log2(seq + 1))))
        c_req = Requant.fit(np.array([2.0 ** -c_frac]), np.zeros(1), tables.scale, acc_bound=1 << (c_bits - 1))
        cell = CellFormat(c_bits, c_frac, int(c_req.multiplier[0]), c_req.shift)
    return kind(w, u, seq, requant.multiplier[:rows], requant.multiplier[rows:], requant.offset[:rows],
                requant.offset[rows:], requant.shift, tables, in_bits, in_signed, act_bits, h_frac,
                bool(getattr(m, "return_sequences", False)), cell)


def from_torch(model: torch.nn.Sequential, calibration_data: Any, *, input_bits: int = 8,
               input_signed: bool | None = None, input_scale: float | None = None, act_bits: int = 8,
               logit_bits: int = 16, nm_w_bits: int = 8, linear_w_bits: int = 8,
               circulant: Mapping[str, Any] | None = None, crossbar: Mapping[str, Any] | None = None,
               rnn: Mapping[str, Any] | None = None) -> Network:
    """The integer network of a trained ``nn.Sequential``: an MLP or a CNN (see the module docstring for the modules,
    scales, pools and BatchNorm folding).

    Parameters
    ----------
    model : torch.nn.Sequential
    calibration_data : float array or tensor [N, ...]
        Model inputs (real values); they set the activation scales. A CNN's are ``[N, C, L]`` or ``[N, C, H, W]``:
        that shape is the network input's.
    input_bits : int
        Width of the network input integers.
    input_signed : bool or None
        Default: signed iff some calibration input is negative.
    input_scale : float or None
        Real value of one input LSB (e.g. ``1 / 16`` for digits pixels); default ``max|x| / top code``.
    act_bits : int
        Hidden activation width (unsigned after a ReLU or after an average of unsigned values, signed otherwise).
    logit_bits : int
        Width of the signed logits.
    nm_w_bits : int
        Value width of N:M layers (``export(nm_w_bits)``).
    linear_w_bits : int
        Weight width of plain ``nn.Linear`` and ``nn.Conv1d/2d`` layers (post-training quantisation per output).
    circulant, crossbar : mapping, optional
        Format fields overriding :data:`CIRCULANT_DEFAULTS` / :data:`CROSSBAR_DEFAULTS` (``crossbar`` may set
        ``cols``, the tile width).
    rnn : mapping, optional
        Recurrent formats overriding :data:`RNN_DEFAULTS` (``table_bits``, ``table_frac``, ``table_range``,
        ``cell_bits``).

    Returns
    -------
    Network
        With ``input.scale`` and each requantised layer's ``out_scale`` set (``Network.quantize_input`` quantises
        real inputs); a CNN's with ``input.shape``. A chain: dense, conv1d/conv2d, maxpool, avgpool,
        globalavgpool and flatten layers.

    Raises
    ------
    TypeError, ValueError
        ``"Model must be a torch.nn.Sequential, not Linear(...)"``,
        ``"Model layer 2 must be a peforge linear, convolution or recurrent layer, nn.Linear, ..., not Tanh()"``,
        ``"Model layer 0 must follow a linear, convolution or average pooling layer, not ReLU()"``,
        ``"Model must have a linear or convolution layer, not none"``,
        ``"Model layer 0 (Conv2d): Convolution dilation must be 1 (sw.conv has none), not (2, 2)"``,
        ``"Model layer 3 (BatchNorm2d) must directly follow a linear or convolution layer (before its ReLU), not
        ReLU()"``, ``"Model layer 5 (Linear): Linear input must be a vector (nn.Flatten first), not shape (8, 2,
        2)"``,
        ``"Model layer 4 (PolarizedLinear): PolarizedLinear weight must be polarised (harden() it first), not
        0.31 away from it"``, ``"Model layer 4 (PolarizedConv2d): Conv2d input must be the crossbar's 8-bit
        unsigned inputs (act_bits, unsigned), not 8-bit signed"``.
    """
    if not isinstance(model, torch.nn.Sequential):
        raise TypeError(f"Model must be a torch.nn.Sequential, not {model!r}")
    check_int("Input bits", input_bits, min=1, max=32)
    check_int("Activation bits", act_bits, min=1, max=32)
    check_int("Logit bits", logit_bits, min=4, max=32)
    if input_signed is not None:
        check_bool("Input signed", input_signed)
    stages = _stages(model)
    spatial = any(s.op in ("maxpool", "avgpool", "globalavgpool") or _is_conv(s.module) for s in stages)
    recurrent = stages[0].op == "recurrent"
    rnn = {**RNN_DEFAULTS, **(rnn or {})}
    unknown = sorted(set(rnn) - set(RNN_DEFAULTS))
    if unknown:
        raise ValueError(f"Rnn settings must be among {', '.join(map(repr, RNN_DEFAULTS))}, not {unknown[0]!r}")

    x = torch.as_tensor(to_numpy(calibration_data), dtype=torch.float32)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"Calibration data must be a non-empty batch [N, ...], not shape {tuple(x.shape)}")
    if recurrent and x.ndim != 3:
        raise ValueError(f"Calibration data of a recurrent model must be [N, T, F], not shape {tuple(x.shape)}")
    if recurrent and x.shape[2] != stages[0].module.input_size:
        m = stages[0].module
        raise ValueError(f"Model layer {stages[0].index} ({_name(m)}) input_size must be the {x.shape[2]} features of "
                         f"the calibration data [N, T, F], not {m.input_size}")
    if spatial and x.ndim not in (3, 4):
        raise ValueError(f"Calibration data of a convolutional model must be [N, C, L] or [N, C, H, W], not shape "
                         f"{tuple(x.shape)}")
    outputs = _calibrate(model, x, {s.tap for s in stages if s.requantised})

    x_np = x.reshape(len(x), -1).double().numpy()
    signed = bool(x_np.min() < 0) if input_signed is None else input_signed
    if input_scale is None:
        peak = _peak(x_np, signed)
        input_scale = peak / int_range(input_bits, signed)[1] if peak > 0 else 1.0
    spec = InputSpec(x_np.shape[1], input_bits, signed, float(input_scale),
                     tuple(x.shape[1:]) if spatial or recurrent else None)

    last = max(n for n, s in enumerate(stages) if s.requantised)
    layers = []
    shape, bits, in_signed, s_in = spec.shape, spec.bits, spec.signed, spec.scale
    for n, stage in enumerate(stages):
        m = stage.module
        where = f"Model layer {stage.index} ({_name(m)})"
        dims = _conv_dims(m)
        try:
            if stage.op == "recurrent":
                layer = _recurrent_layer(m, shape, bits, in_signed, s_in, act_bits, rnn, nm_w_bits=nm_w_bits,
                                         linear_w_bits=linear_w_bits, circulant=circulant or {})
                layers.append(layer)
                shape, bits, in_signed, s_in = layer.out_shape, layer.out_bits, True, layer.out_scale
                continue
            if stage.op == "flatten":
                if len(shape) > 1:
                    layers.append(Flatten(shape, bits, in_signed))
                    shape = (math.prod(shape),)
                continue
            if stage.op != "weighted" or _is_conv(m):
                if len(shape) != dims + 1:
                    want = "(channels, length)" if dims == 1 else "(channels, height, width)"
                    raise ValueError(f"{_name(m)} input must be a {want} tensor, not shape {shape}")
            elif len(shape) != 1:
                raise ValueError(f"{_name(m)} input must be a vector (nn.Flatten first), not shape {shape}")
            if stage.op == "maxpool":
                kernel, stride = _pool_geometry(m, dims)
                layer = MaxPool(shape, kernel, stride, bits, in_signed, dims=dims)
                layers.append(layer)
                shape = layer.out_shape
                continue
            # a requantised layer: the output range and scale from the calibration
            h = outputs[stage.tap]
            h = np.maximum(h, 0) if stage.relu else h
            out_bits, out_signed = (logit_bits, True) if n == last else \
                (act_bits, not stage.relu and (stage.op == "weighted" or in_signed))
            peak = _peak(h, out_signed)
            top = 1 << (logit_bits - 3) if n == last else int_range(out_bits, out_signed)[1]
            s_out = peak / top if peak > 0 else 1.0
            ranges = dict(relu=stage.relu, in_bits=bits, in_signed=in_signed, out_bits=out_bits,
                          out_signed=out_signed, out_scale=float(s_out))
            lo, hi = int_range(bits, in_signed)
            if stage.op == "weighted":
                weights, w_scale = _export(m, bits, in_signed, nm_w_bits=nm_w_bits, linear_w_bits=linear_w_bits,
                                           circulant=circulant or {}, crossbar=crossbar or {})
                acc_scale = s_in * np.asarray(w_scale, np.float64)
                bias = np.zeros(len(acc_scale)) if m.bias is None else m.bias.detach().double().numpy()
                if stage.bn is not None:
                    a, b, weights = _fold(model[stage.bn], stage.bn, weights)
                    acc_scale, bias = acc_scale * np.abs(a), a * bias + b
                requant = Requant.fit(acc_scale, bias, float(s_out), acc_bound=weights.acc_bound(max(-lo, hi)))
                fields = dict(multiplier=requant.multiplier, shift=requant.shift, offset=requant.offset, **ranges)
                if _is_conv(m):
                    layer = Conv(weights, shape, **_conv_geometry(m, dims, shape[0]), dims=dims, **fields)
                else:
                    layer = Layer(weights, **fields)
            else:
                channels = shape[0]
                if stage.op == "avgpool":
                    kernel, stride = _pool_geometry(m, dims)
                    window = math.prod(kernel)
                else:
                    window = math.prod(shape[1:])
                requant = Requant.fit(np.full(channels, s_in / window), np.zeros(channels), float(s_out),
                                      acc_bound=window * max(-lo, hi))
                fields = dict(multiplier=requant.multiplier, shift=requant.shift, offset=requant.offset, **ranges)
                if stage.op == "avgpool":
                    layer = AvgPool(shape, kernel, stride, dims=dims, **fields)
                else:
                    layer = GlobalAvgPool(shape, dims=dims, **fields)
        except _Named as e:
            raise ValueError(str(e)) from None
        except (ValueError, TypeError) as e:
            raise type(e)(f"{where}: {e}") from None
        layers.append(layer)
        shape, bits, in_signed, s_in = layer.out_shape, out_bits, out_signed, s_out
    return Network(spec, tuple(layers))
