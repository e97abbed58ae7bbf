"""PyTorch half of :mod:`sw.forms`: polarisation by ADMM (:class:`PolarizedLinear`, and the convolutions
:class:`PolarizedConv1d` / :class:`PolarizedConv2d`), the activation L1 penalty and a small classifier trainer.

Imported on first access to one of these names through ``sw.forms``
(``from peforge.sw.forms import PolarizedLinear``), so that ``import peforge.sw.forms`` stays free of torch. See :mod:`sw.forms` for the polarised format and the
projection (:func:`sw.forms.polarize`), which both halves share: the sign rule is defined once, in numpy.

Orientation: a ``torch.nn.Linear`` weight is ``[out, in]``; the crossbar holds its transpose ``W = weight.T``
(``rows = in_features``, ``cols = out_features``), so a fragment is ``rows_per_sub`` consecutive *input*
weights of one output. A convolution's crossbar holds its weight matrix ``[kh * kw * C_in / groups, C_out]``
(:func:`sw.layers.conv_matrix` transposed): every input window is one crossbar read (im2col, as FORMS maps
convolutions).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.nn.utils import parametrize

from .forms import (CrossbarFormat, Steps, check_format, golden_mvm, is_polarized, map_weights, projection_signs,
                    quantize, quantize_acts)
from .layers import ConvMatrix, check_conv_groups, conv_matrix, conv_weight
from .params import check_int

__all__ = ["PolarityConstraint", "PolarizedLinear", "PolarizedConv1d", "PolarizedConv2d", "ActivationL1",
           "train_classifier", "admm_polarize", "CrossbarMLP"]


def _check_real(subject: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{subject} must be a real number, not {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        what = "a positive" if positive else "a non-negative"
        raise ValueError(f"{subject} must be {what} finite number, not {value!r}")
    return float(value)


def _signs_of(w: torch.Tensor, rows_per_sub: int) -> np.ndarray:
    """Sign bits ``[in / rows_per_sub, out]`` of the projection of a weight ``[out, in]``."""
    return projection_signs(w.detach().double().cpu().numpy().T, rows_per_sub)


def _keep_tensor(w: torch.Tensor, signs: torch.Tensor, rows_per_sub: int) -> torch.Tensor:
    """Bool mask ``[out, in]`` of the entries of ``w`` agreeing with their fragment's sign bit (torch ops)."""
    out, inp = w.shape
    frag = w.T.reshape(inp // rows_per_sub, rows_per_sub, out)
    keep = torch.where(signs[:, None, :] == 1, frag <= 0, frag >= 0)
    return keep.reshape(inp, out).T


def project(w: torch.Tensor, rows_per_sub: int) -> torch.Tensor:
    """:func:`sw.forms.polarize` of a Linear weight ``[out, in]`` (crossbar orientation ``w.T``), no gradient."""
    signs = torch.from_numpy(_signs_of(w, rows_per_sub)).to(w.device)
    w = w.detach()
    return torch.where(_keep_tensor(w, signs, rows_per_sub), w, torch.zeros((), dtype=w.dtype, device=w.device))


class PolarityConstraint(torch.nn.Module):
    """Parametrization (``torch.nn.utils.parametrize``) of a Linear weight ``[out, in]`` with fixed polarity.

    Until :meth:`fix` is called it is the identity (the ADMM phase trains a free weight). Afterwards the
    forward value is the weight with every entry of the wrong sign for its fragment set to 0 (the Euclidean
    projection onto the fixed-sign set, a clamp); such entries get no gradient, the others the plain one.

    Parameters
    ----------
    rows_per_sub : int
        Fragment length along the input features.
    """

    def __init__(self, rows_per_sub: int):
        super().__init__()
        check_int("Polarity rows_per_sub", rows_per_sub, min=1)
        self.rows_per_sub = rows_per_sub
        self.register_buffer("signs", None)

    @property
    def fixed(self) -> bool:
        return self.signs is not None

    def fix(self, w: torch.Tensor) -> None:
        """Fix the sign bits to those of the projection of ``w`` (``[in / rows_per_sub, out]``, 1 = negative)."""
        self.signs = torch.from_numpy(_signs_of(w, self.rows_per_sub)).to(w.device)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.signs is None:
            return w
        return torch.where(_keep_tensor(w, self.signs, self.rows_per_sub), w,
                           torch.zeros((), dtype=w.dtype, device=w.device))

    def extra_repr(self) -> str:
        return f"rows_per_sub={self.rows_per_sub}, fixed={self.fixed}"


class _Polarized:
    """ADMM polarisation and the crossbar export, shared by :class:`PolarizedLinear` and the polarised convolutions.

    Every method works on the layer's weight matrix ``[out, in]`` (:meth:`_matrix`: a Linear's weight itself, a
    convolution's :func:`sw.layers.conv_matrix`); the crossbar holds its transpose (``rows = in``). A subclass
    registers the :class:`PolarityConstraint` on ``weight`` (a convolution through :class:`sw.layers.ConvMatrix`),
    the buffers ``admm_z`` / ``admm_u`` and ``rho``.
    """

    def _matrix(self, w: torch.Tensor) -> torch.Tensor:
        return w

    def _from_matrix(self, w: torch.Tensor) -> torch.Tensor:
        return w

    @property
    def _constraint(self) -> PolarityConstraint:
        return self.parametrizations.weight[0]

    @property
    def _crossbar_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the layer's crossbar: the weight matrix's ``(in, out)``."""
        out, inp = self._matrix(self.dense_weight).shape
        return inp, out

    @property
    def rows_per_sub(self) -> int:
        return self._constraint.rows_per_sub

    @property
    def dense_weight(self) -> torch.nn.Parameter:
        """The trained weight (the parameter the optimiser updates), in torch's shape."""
        return self.parametrizations.weight.original

    @property
    def hardened(self) -> bool:
        """Whether :meth:`harden` has fixed the signs."""
        return self._constraint.fixed

    def projection(self) -> torch.Tensor:
        """The polarised weight matrix ``[out, in]`` nearest to the current one (no gradient)."""
        return project(self._matrix(self.weight), self.rows_per_sub)

    def polarity_error(self) -> float:
        """``||W - polarize(W)|| / ||W||``: 0 for a polarised weight (the energy lost by projecting now)."""
        w = self._matrix(self.weight.detach())
        norm = float(w.norm())
        return float((w - project(w, self.rows_per_sub)).norm()) / norm if norm else 0.0

    # -- ADMM ---------------------------------------------------------------------------------------------
    def admm_start(self, rho: float) -> None:
        """Begin ADMM: ``Z = polarize(W)``, ``U = 0``, penalty weight ``rho``."""
        self.rho = _check_real("ADMM rho", rho, positive=True)
        self.admm_z = self.projection()
        self.admm_u = torch.zeros_like(self.admm_z)

    def admm_penalty(self) -> torch.Tensor:
        """``rho/2 ||W - Z + U||^2`` (0 outside ADMM), differentiable in ``W``."""
        if self.admm_z is None:
            return torch.zeros((), dtype=self.dense_weight.dtype, device=self.dense_weight.device)
        return 0.5 * self.rho * (self._matrix(self.dense_weight) - self.admm_z + self.admm_u).square().sum()

    def admm_update(self) -> float:
        """``Z = polarize(W + U)``, ``U += W - Z``; returns the primal residual ``||W - Z|| / ||W||``."""
        if self.admm_z is None:
            raise ValueError(f"{self._name} ADMM must be started (admm_start) before admm_update, not idle")
        with torch.no_grad():
            w = self._matrix(self.dense_weight.detach())
            self.admm_z = project(w + self.admm_u, self.rows_per_sub)
            self.admm_u += w - self.admm_z
            norm = float(w.norm())
            return float((w - self.admm_z).norm()) / norm if norm else 0.0

    def harden(self) -> None:
        """Project the weight onto the polarised set, fix its signs and end ADMM (then fine-tune)."""
        with torch.no_grad():
            self.dense_weight.copy_(self._from_matrix(self.projection()))
        self._constraint.fix(self._matrix(self.dense_weight))
        self.admm_z = self.admm_u = None

    @property
    def _name(self) -> str:
        return type(self).__name__.removeprefix("Parametrized")

    # -- export -------------------------------------------------------------------------------------------
    def crossbar_format(self, **settings: Any) -> CrossbarFormat:
        """``CrossbarFormat(rows=in, cols=out, rows_per_sub=rows_per_sub, **settings)`` of the weight matrix
        ``[out, in]``."""
        rows, cols = self._crossbar_shape
        return CrossbarFormat(rows=rows, cols=cols, rows_per_sub=self.rows_per_sub, **settings)

    def export(self, fmt: CrossbarFormat) -> tuple[np.ndarray, np.ndarray]:
        """The polarised weight in crossbar orientation (the transposed weight matrix), quantised
        (:func:`sw.forms.quantize`).

        Returns
        -------
        (w_int, scale) : int64 [in, out], float64 [out]
            ``matrix.T ~= w_int * scale``; ``sw.forms.map_weights(w_int, fmt)`` programs it.

        Raises
        ------
        ValueError
            ``"Crossbar format must match the layer (rows=64, cols=10, rows_per_sub=8), not ..."``,
            ``"PolarizedLinear weight must be polarised (harden() it first), not 0.31 away from it"``.
        """
        fmt = check_format(fmt)
        want = (*self._crossbar_shape, self.rows_per_sub)
        if (fmt.rows, fmt.cols, fmt.rows_per_sub) != want:
            raise ValueError(f"Crossbar format must match the layer (rows={want[0]}, cols={want[1]}, "
                             f"rows_per_sub={want[2]}), not {fmt!r}")
        w = self._matrix(self.weight.detach()).double().cpu().numpy().T
        if not is_polarized(w, fmt):
            raise ValueError(f"{self._name} weight must be polarised (harden() it first), not "
                             f"{self.polarity_error():.3g} away from it")
        return quantize(w, fmt)


class PolarizedLinear(_Polarized, torch.nn.Linear):
    """A ``torch.nn.Linear`` trained towards polarised sub-array columns by ADMM, as in FORMS (Yuan et al. 2021).

    Problem: ``min_W f(W)`` subject to ``W in P`` (every fragment of ``rows_per_sub`` input weights of one
    output has one sign). ADMM splits it with ``Z in P`` and the scaled dual ``U``:

    1. W-update: SGD on ``f(W) + rho/2 ||W - Z + U||^2`` (:meth:`admm_penalty` is the second term);
    2. Z-update: ``Z = polarize(W + U)`` (:meth:`admm_update`, the Euclidean projection);
    3. dual update: ``U = U + W - Z``.

    At the end :meth:`harden` projects ``W`` itself and fixes the signs (:class:`PolarityConstraint`), and
    fine-tuning trains the kept weights under that constraint. Before :meth:`admm_start` the layer is an
    ordinary Linear (train it to float accuracy first). The bias stays float (added digitally).

    Parameters
    ----------
    in_features, out_features : int
        ``in_features`` (the crossbar rows) a multiple of ``rows_per_sub``.
    bias : bool
    rows_per_sub : int, default 8

    Raises
    ------
    ValueError
        ``"PolarizedLinear in_features must be a multiple of rows_per_sub = 8, not 10"``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, rows_per_sub: int = 8,
                 device=None, dtype=None):
        constraint = PolarityConstraint(rows_per_sub)  # validates rows_per_sub first
        check_int("PolarizedLinear in_features", in_features, min=1)
        if in_features % rows_per_sub:
            raise ValueError(f"PolarizedLinear in_features must be a multiple of rows_per_sub = {rows_per_sub}, "
                             f"not {in_features!r}")
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        parametrize.register_parametrization(self, "weight", constraint)
        self.register_buffer("admm_z", None)
        self.register_buffer("admm_u", None)
        self.rho = 0.0

    def extra_repr(self) -> str:
        return super().extra_repr() + f", rows_per_sub={self.rows_per_sub}"


class _PolarizedConv(_Polarized):
    """What :class:`PolarizedConv1d` and :class:`PolarizedConv2d` add to ``torch.nn.Conv1d`` / ``Conv2d``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, groups: int = 1,
                 bias: bool = True, *, rows_per_sub: int = 8, device=None, dtype=None):
        name = type(self).__name__
        constraint = PolarityConstraint(rows_per_sub)  # validates rows_per_sub first
        check_conv_groups(name, in_channels, groups)
        dims = 1 if isinstance(self, torch.nn.Conv1d) else 2
        kernel = (kernel_size,) * dims if isinstance(kernel_size, int) else tuple(kernel_size)
        window = math.prod(kernel) * (in_channels // groups)
        if window % rows_per_sub:
            per_group = in_channels // groups
            raise ValueError(f"{name} window (kernel {' x '.join(map(str, kernel))} x {per_group} input "
                             f"channel{'s' if per_group > 1 else ''} per group) must be a multiple of rows_per_sub = "
                             f"{rows_per_sub}, not {window}")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups,
                         bias=bias, device=device, dtype=dtype)
        parametrize.register_parametrization(self, "weight", ConvMatrix(constraint))
        self.register_buffer("admm_z", None)
        self.register_buffer("admm_u", None)
        self.rho = 0.0

    def _matrix(self, w: torch.Tensor) -> torch.Tensor:
        return conv_matrix(w)

    def _from_matrix(self, w: torch.Tensor) -> torch.Tensor:
        return conv_weight(w, self.dense_weight.shape)

    @property
    def _constraint(self) -> PolarityConstraint:
        return self.parametrizations.weight[0].inner

    def extra_repr(self) -> str:
        return super().extra_repr() + f", rows_per_sub={self.rows_per_sub}"


class PolarizedConv1d(_PolarizedConv, torch.nn.Conv1d):
    """A ``torch.nn.Conv1d`` polarised by ADMM for a crossbar, as FORMS maps convolutions (im2col rows on the arrays).

    The crossbar holds the transposed weight matrix ``[k * C_in / groups, C_out]`` (:func:`sw.layers.conv_matrix`:
    kernel position, channel; channel fastest), one input window per crossbar read; a fragment is ``rows_per_sub``
    consecutive rows of it (one sign per sub-array column), so the window ``k * C_in / groups`` must be a multiple of
    ``rows_per_sub``. Training, :meth:`harden` and :meth:`export` as :class:`PolarizedLinear` (the ADMM of
    :func:`admm_polarize` takes both). ``groups`` 1 or ``in_channels`` (depthwise); no dilation; zero padding.

    Raises
    ------
    ValueError
        ``"PolarizedConv1d window (kernel 3 x 2 input channels per group) must be a multiple of rows_per_sub = 4,
        not 6"``, ``"PolarizedConv1d groups must be 1 or the 4 input channels (depthwise), not 2"``.
    """


class PolarizedConv2d(_PolarizedConv, torch.nn.Conv2d):
    """A ``torch.nn.Conv2d`` polarised by ADMM for a crossbar, as FORMS maps convolutions (im2col rows on the arrays).

    The crossbar holds the transposed weight matrix ``[kh * kw * C_in / groups, C_out]``
    (:func:`sw.layers.conv_matrix`: kernel row, kernel column, channel; channel fastest), one input window per
    crossbar read; a fragment is ``rows_per_sub`` consecutive rows of it (one sign per sub-array column), so the
    window ``kh * kw * C_in / groups`` must be a multiple of ``rows_per_sub``. Training, :meth:`harden` and
    :meth:`export` as :class:`PolarizedLinear` (the ADMM of :func:`admm_polarize` takes both). ``groups`` 1 or
    ``in_channels`` (depthwise); no dilation; zero padding.

    Raises
    ------
    ValueError
        ``"PolarizedConv2d window (kernel 3 x 3 x 1 input channel per group) must be a multiple of rows_per_sub =
        8, not 9"``, ``"PolarizedConv2d groups must be 1 or the 4 input channels (depthwise), not 2"``.
    """


# -- activation sparsity ------------------------------------------------------------------------------------

class ActivationL1:
    """L1 penalty on post-ReLU activations, collected by forward hooks (a context manager).

    Zero-skipping saves a step when all ``rows_per_sub`` inputs of a sub-array have a zero bit-plane, so
    sparser activations save more; an L1 penalty on them is the knob. Inside ``with ActivationL1(model) as
    l1:``, every forward pass of a module of ``kinds`` (default ``torch.nn.ReLU``) records its output, and
    :meth:`penalty` returns ``sum over recorded outputs of mean(|a|)`` (the mean over batch and units, so
    the weight does not depend on the layer width) and forgets them.

    Examples
    --------
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    >>> with ActivationL1(model) as l1:
    ...     _ = model(torch.ones(4, 2))
    ...     float(l1.penalty().detach()) >= 0.0
    True
    """

    def __init__(self, model: torch.nn.Module, kinds: tuple[type, ...] = (torch.nn.ReLU,)):
        self._modules = [m for m in model.modules() if isinstance(m, kinds)]
        self._handles: list[Any] = []
        self._outputs: list[torch.Tensor] = []

    def __enter__(self) -> "ActivationL1":
        self._handles = [m.register_forward_hook(self._record) for m in self._modules]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._outputs = [], []

    def _record(self, module, inputs, output) -> None:
        self._outputs.append(output)

    def penalty(self) -> torch.Tensor:
        total = sum((out.abs().mean() for out in self._outputs), torch.zeros(()))
        self._outputs = []
        return total


# -- training ---------------------------------------------------------------------------------------------------

def _polarized_layers(model: torch.nn.Module) -> list[_Polarized]:
    return [m for m in model.modules() if isinstance(m, _Polarized)]


def train_classifier(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float = 0.1,
                     momentum: float = 0.9, batch_size: int = 64, act_l1: float = 0.0, seed: int = 0,
                     after_epoch: Callable[[int], Any] | None = None) -> float:
    """Mini-batch SGD on ``cross_entropy + act_l1 * activation L1 + sum of ADMM penalties``.

    The ADMM penalties (:meth:`PolarizedLinear.admm_penalty`) are 0 for layers outside ADMM, so this trains
    a float model, the W-update of ADMM and the fine-tuning alike. The batch order comes from a
    ``torch.Generator`` seeded with ``seed``; ``after_epoch(epoch)`` is called after every epoch.

    Returns the mean cross-entropy of the last epoch.
    """
    check_int("Epochs", epochs, min=0)
    check_int("Batch size", batch_size, min=1)
    _check_real("Learning rate", lr, positive=True)
    _check_real("Activation L1 weight", act_l1)
    layers = _polarized_layers(model)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    order = torch.Generator().manual_seed(seed)
    last = math.nan
    model.train()
    with ActivationL1(model) as l1:
        for epoch in range(epochs):
            perm = torch.randperm(len(x), generator=order)
            total = 0.0
            for start in range(0, len(x), batch_size):
                batch = perm[start:start + batch_size]
                ce = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
                loss = ce + act_l1 * l1.penalty() if act_l1 else ce
                for layer in layers:
                    loss = loss + layer.admm_penalty()
                l1.penalty()  # forget this batch's activations when the penalty is off
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += ce.item() * len(batch)
            last = total / len(x)
            if after_epoch is not None:
                after_epoch(epoch)
    model.eval()
    return last


def admm_polarize(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, rho: float = 0.01,
                  rho_growth: float = 1.3, rounds: int = 10, epochs_per_round: int = 2, finetune_epochs: int = 20,
                  lr: float = 0.05, finetune_lr: float | None = None, act_l1: float = 0.0,
                  batch_size: int = 64, seed: int = 0) -> dict[str, list[float]]:
    """Polarise every :class:`PolarizedLinear`, :class:`PolarizedConv1d` and :class:`PolarizedConv2d` of a trained
    ``model`` by ADMM, then harden and fine-tune.

    ``rounds`` times: ``epochs_per_round`` epochs of :func:`train_classifier` (the W-update with the ADMM
    penalty), then :meth:`PolarizedLinear.admm_update` of every layer and ``rho *= rho_growth`` (a growing
    ``rho``, as in ADMM pruning, pulls ``W`` onto ``Z`` by the end). Then :meth:`PolarizedLinear.harden`
    and ``finetune_epochs`` epochs at ``finetune_lr`` (default ``lr``).

    Returns
    -------
    dict
        ``"residual"``: per round, the largest primal residual ``||W - Z|| / ||W||`` over the layers;
        ``"hardening_loss"``: per layer, the relative weight change made by the final projection.

    Raises
    ------
    ValueError
        ``"Model must contain a PolarizedLinear or PolarizedConv1d/2d layer, not Sequential"``, or a bad
        hyper-parameter.
    """
    layers = _polarized_layers(model)
    if not layers:
        raise ValueError(f"Model must contain a PolarizedLinear or PolarizedConv1d/2d layer, not {type(model).__name__}")
    _check_real("ADMM rho growth", rho_growth, positive=True)
    check_int("ADMM rounds", rounds, min=0)
    for layer in layers:
        layer.admm_start(rho)
    residual = []
    for r in range(rounds):
        train_classifier(model, x, y, epochs=epochs_per_round, lr=lr, batch_size=batch_size, act_l1=act_l1,
                         seed=seed + 1 + r)
        residual.append(max(layer.admm_update() for layer in layers))
        for layer in layers:
            layer.rho *= rho_growth
    hardening = [layer.polarity_error() for layer in layers]
    for layer in layers:
        layer.harden()
    train_classifier(model, x, y, epochs=finetune_epochs, lr=lr if finetune_lr is None else finetune_lr,
                     batch_size=batch_size, act_l1=act_l1, seed=seed + 1 + rounds)
    return {"residual": residual, "hardening_loss": hardening}


# -- deployment: an MLP on crossbars ----------------------------------------------------------------------------

class CrossbarMLP:
    """A trained ``Sequential`` of :class:`PolarizedLinear` layers (a ``ReLU`` between them) run on crossbars.

    Every layer becomes a crossbar of its own format (``rows = in_features``, ``cols = out_features``, the
    layer's ``rows_per_sub``, the widths given here): weights exported with :meth:`PolarizedLinear.export`
    (one scale per column) and mapped with :func:`sw.forms.map_weights`. Inputs of layer ``l`` are quantised
    with :func:`sw.forms.quantize_acts` at a scale calibrated on ``x_calib`` (its largest input of that layer
    maps to ``act_max``). Each layer computes ``golden_mvm`` (integer, the controller's exact result), then
    ``y * adc_step * act_scale * w_scale + bias`` in float and the ReLU, as the digital periphery would.

    Parameters
    ----------
    model : torch.nn.Sequential
        Hardened polarised layers with a ``ReLU`` between two of them,
        e.g. ``Sequential(PolarizedLinear, ReLU, PolarizedLinear)``.
    x_calib : tensor [N, in_features]
        Calibration inputs (non-negative), e.g. the training set.
    act_bits, w_bits, cell_bits, adc_bits :
        As :class:`sw.forms.CrossbarFormat` (``adc_bits=None``: lossless).

    Members
    -------
    formats, mappings, w_scales, act_scales : lists, one entry per layer
    """

    def __init__(self, model: torch.nn.Sequential, x_calib: torch.Tensor, *, act_bits: int = 8, w_bits: int = 8,
                 cell_bits: int = 2, adc_bits: int | None = None):
        self.layers = [m for m in model if isinstance(m, PolarizedLinear)]
        if not self.layers or len(self.layers) != len(model) - sum(isinstance(m, torch.nn.ReLU) for m in model):
            raise ValueError(f"Model must be PolarizedLinear layers and ReLUs, not {model!r}")
        self.formats, self.mappings, self.w_scales, self.act_scales, self.biases = [], [], [], [], []
        h = x_calib.detach()
        with torch.no_grad():
            for n, layer in enumerate(self.layers):
                fmt = layer.crossbar_format(act_bits=act_bits, w_bits=w_bits, cell_bits=cell_bits,
                                            adc_bits=adc_bits)
                w_int, scale = layer.export(fmt)
                self.formats.append(fmt)
                self.mappings.append(map_weights(w_int, fmt))
                self.w_scales.append(scale)
                top = float(h.max())
                self.act_scales.append((top if top > 0 else 1.0) / fmt.act_max)
                bias = layer.bias
                self.biases.append(np.zeros(fmt.cols) if bias is None else bias.detach().double().cpu().numpy())
                h = torch.relu(layer(h))

    def forward(self, x: Any, *, arrays: Callable[[int, Any, CrossbarFormat], Any] | None = None,
                zero_skip: bool = True) -> tuple[np.ndarray, list[np.ndarray], list[Steps]]:
        """Run ``x [N, in_features]`` (tensor or array) through the crossbars.

        ``arrays(layer, mapping, fmt)`` gives the array model of a layer (e.g. a seeded
        :class:`sw.forms.NonIdealArray`; its ``adc_step`` scales the codes back), ``None`` the ideal array.

        Returns
        -------
        (logits, inputs, steps)
            float64 ``[N, classes]``; the integer inputs of every layer (int64 ``[N, rows]``); the
            :class:`sw.forms.Steps` of every layer.
        """
        h = x.detach().double().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)
        inputs, steps = [], []
        for n, fmt in enumerate(self.formats):
            xq = quantize_acts(h, fmt, self.act_scales[n])
            array = None if arrays is None else arrays(n, self.mappings[n], fmt)
            y, s = golden_mvm(xq, self.mappings[n], fmt, array=array, zero_skip=zero_skip)
            step = getattr(array, "adc_step", 1.0)
            h = y * (step * self.act_scales[n] * self.w_scales[n]) + self.biases[n]
            if n + 1 < len(self.formats):
                h = np.maximum(h, 0.0)
            inputs.append(xq)
            steps.append(s)
        return h, inputs, steps
