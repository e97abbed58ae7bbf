"""The digits classifiers of ``peforge e2e``: trained in torch with each compression scheme, turned into integer
networks by :func:`sw.from_torch.from_torch`.

A multilayer perceptron ``64 -> 32 -> 10`` classifies sklearn's 8x8 digits (``load_digits``; 1797 images,
a fixed stratified split with 360 test images, :func:`load_split`). It is trained at run time (seeded,
seconds on one CPU thread) in float and with each compression scheme (:data:`SCHEMES`), and
:func:`build` exports the trained model through :func:`sw.from_torch.from_torch` (calibrated on the training
images) to a :class:`sw.network.Network`: the one description every back-end reads. Its golden model is
:meth:`sw.network.Network.golden`; ``peforge e2e`` compiles it (:class:`hw.network.CompiledNetwork`) and
runs it whole in Verilator (:func:`tb.network.rtl_infer`).

.. code-block:: text

    x_0 = pixels                                   5-bit unsigned integers 0 .. 16 (real value x / 16)
    hidden = relu(layer 0)                         8-bit unsigned activations (largest training value -> 255)
    logits = layer 1                               16-bit signed (largest training |logit| -> 2^13)
    prediction = argmax(logits)                    (the first index among equal logits)

The network input is the pixels themselves: ``input_scale = 1 / 16`` makes the integer input equal the
pixel, and 5 unsigned bits (0 .. 31) hold 0 .. 16 exactly, so the first layer's PEs take 5-bit activations
(an 8-bit input would only widen the first layer's multipliers and accumulators; its values are the same).

Schemes (:data:`SCHEMES`) and the layers they train
---------------------------------------------------
* ``fixed``: 8-bit fixed-point weights (per-row scale, QAT, ``FixedLinear``): ``fixed`` layers;
* ``sp2``: 4-bit SP2 weights (Mix and Match, QAT, ``SP2Linear``): ``sp2`` layers;
* ``msq``: Mix and Match, half the rows of each layer in 4-bit SP2, the others in 4-bit fixed point, rows
  chosen by :func:`sw.msq.assign_rows` (QAT): ``msq`` layers;
* ``nm``: 2:4 sparse 8-bit weights trained with SR-STE: ``nm`` layers;
* ``circulant``: the hidden layer block-circulant (``k = 8``, :data:`CIRCULANT`); the 10-way classifier
  (10 is not a multiple of ``k``; a circulant one padded to 16 outputs scored 93.1 % in float, 3.6 points
  under the baseline) in 8-bit fixed point;
* ``crossbar``: ADMM-polarised weights (FORMS) on crossbar layers (ideal array, lossless ADC) in column tiles
  of :data:`XBAR_COLS`; :func:`nonideal_logits` runs the same network through
  :class:`sw.forms.NonIdealArray` in software only.

This module imports numpy and the numpy half of ``sw`` only at load time; torch (training and
:mod:`sw.from_torch`) is imported by the functions that need it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from typing import Any

import numpy as np

from peforge.sw import forms
from peforge.sw.intops import as_int_array
from peforge.sw.msq import quantize_mixed
from peforge.sw.network import Layer, Network

__all__ = [
    "SCHEMES", "HIDDEN", "INPUT_BITS", "ACT_BITS", "LOGIT_BITS", "PIXEL_MAX", "TEST_SIZE", "XBAR_COLS",
    "CIRCULANT", "NONIDEAL", "Split", "load_split", "accuracy", "Digits", "train_float", "build",
    "nonideal_logits", "weight_bits", "one_thread", "split_tensors", "fit", "mlp", "float_accuracy", "mixed_linear",
]

#: Compressed schemes, in table order: each named as the layers it trains are (:data:`sw.network.SCHEMES`; the
#: circulant network keeps its 10-way classifier in fixed point).
SCHEMES = ("fixed", "sp2", "msq", "nm", "circulant", "crossbar")
#: Hidden width of the MLP 64 -> HIDDEN -> 10.
HIDDEN = 32
#: Pixels of load_digits are integers 0 .. 16; the network sees pixel / 16.
PIXEL_MAX = 16
#: Network input: the pixels as unsigned integers of this width (0 .. 16 needs 5 bits).
INPUT_BITS = 5
#: Hidden activations: unsigned integers of this width (post-ReLU).
ACT_BITS = 8
#: Logits: signed integers of this width (from_torch maps the largest training logit to 2^(bits - 3)).
LOGIT_BITS = 16
#: Test images of the fixed split.
TEST_SIZE = 360
#: Seeds of the split and of training.
SPLIT_SEED = 0
TRAIN_SEED = 0
#: Columns of a crossbar tile: a layer's outputs run in tiles of this many (a 64 x 16 tile is 8192 cell
#: flip-flops in the ideal-array emulator; 32 columns would double the Verilator build of the accelerator).
XBAR_COLS = 16
#: Block size of the circulant layers.
BLOCK = 8
#: CirculantFormat fields of the circulant layer (``from_torch(circulant=...)``): 8-bit spectra, 4 guard bits
#: and no rounding of the forward FFT's growth (``prod_shift = guard_bits``): the PE output LSB is one
#: (activation x spectral weight) LSB, and the FFT rounding moves few hidden codes by one step (the default
#: 2 guard bits with prod_shift 5 moved 21 % of them).
CIRCULANT = {"w_bits": 8, "guard_bits": 4, "prod_shift": 4}
#: Non-idealities of the software-only crossbar run (after NeuroSim / CrossSim): conductance variation
#: (sigma / mu), stuck-at-0 / stuck-at-1 cell rates, read noise (cell levels), seed.
NONIDEAL = {"variation": 0.1, "stuck_at_0": 0.005, "stuck_at_1": 0.005, "read_noise": 0.5, "seed": 0}


# -- data ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """The digits split: pixels as integers 0 .. 16 (``int64 [n, 64]``) and labels (``int64 [n]``)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@functools.lru_cache(maxsize=1)
def load_split() -> Split:
    """``sklearn.datasets.load_digits`` split once: 360 test images, stratified, ``random_state = 0``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    parts = train_test_split(x.astype(np.int64), y.astype(np.int64), test_size=TEST_SIZE,
                             random_state=SPLIT_SEED, stratify=y)
    for arr in parts:
        arr.flags.writeable = False
    return Split(parts[0], parts[2], parts[1], parts[3])


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose argmax (first index among ties) is the label."""
    return float(np.mean(np.argmax(logits, axis=1) == labels))


# -- a trained scheme -------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Digits:
    """One trained scheme and its integer network.

    Members
    -------
    scheme : str
        One of :data:`SCHEMES`.
    network : sw.network.Network
        ``from_torch(model, ...)``: input 5-bit unsigned pixels, logits ``[N, 10]``.
    model : torch.nn.Sequential
        The trained model (``pixels / 16`` to logits; fake-quantised weights, float activations).
    float_accuracy : float
        Test accuracy of ``model`` in float (torch).
    train_seconds : float
    """

    scheme: str
    network: Network
    model: Any
    float_accuracy: float
    train_seconds: float


def weight_bits(layer: Layer) -> int:
    """Bits of a layer's weight storage: codes, values and indices, spectra, or cells and sign bits (scales,
    biases and requantisation excluded); an ``msq`` layer also stores one bit per row for its kind."""
    w = layer.weights
    if layer.scheme == "fixed":
        return w.weights.size * w.w_bits
    if layer.scheme == "sp2":
        return w.codes.size * w.fmt.bits
    if layer.scheme == "msq":
        n_sp2 = int(np.sum(w.is_sp2))
        return layer.in_features * (n_sp2 * w.sp2_fmt.bits + (layer.out_features - n_sp2) * w.w_bits) + \
            layer.out_features
    if layer.scheme == "nm":
        return w.values.size * (w.w_bits + w.fmt.index_bits)
    if layer.scheme == "circulant":
        # k real degrees of freedom per block: bins 0 and k/2 real, k/2 - 1 complex bins
        p, q = w.spectra.shape[:2]
        return p * q * w.fmt.block * w.fmt.w_bits
    fmt = w.fmt    # crossbar: magnitudes, and one sign bit per sub-array column
    return w.weights.size * fmt.w_bits + -(-layer.in_features // fmt.rows_per_sub) * layer.out_features


def nonideal_logits(network: Network, pixels: Any, **settings) -> np.ndarray:
    """Logits of a network of crossbar layers with every tile on a :class:`sw.forms.NonIdealArray` (software
    only); ``settings`` override :data:`NONIDEAL`, and tile ``t`` of each layer is programmed with seed
    ``seed + t``. With every non-ideality 0 this is :meth:`sw.network.Network.golden`.

    Raises
    ------
    ValueError
        ``"Non-ideal arrays must run crossbar layers, not a 'fixed' layer (layer 0)"``.
    """
    for n, layer in enumerate(network.layers):
        if layer.scheme != "crossbar":
            raise ValueError(f"Non-ideal arrays must run crossbar layers, not a {layer.scheme!r} layer (layer {n})")
    settings = {**NONIDEAL, **settings}
    seed = settings.pop("seed")
    x = as_int_array("Pixels", pixels, *network.input.range)
    for layer in network.layers:
        w, fmt = layer.weights, layer.weights.fmt
        rows = np.zeros((len(x), fmt.rows), dtype=np.int64)
        rows[:, :layer.in_features] = x
        acc = np.concatenate([forms.golden_mvm(rows, mapping, fmt, array=forms.NonIdealArray(
            mapping, fmt, seed=seed + t, **settings))[0] for t, mapping in enumerate(w.mappings)], axis=1)
        x = layer.requant(acc[:, :layer.out_features])
    return x


# -- training (torch, imported here only) -----------------------------------------------------------------------

@contextlib.contextmanager
def one_thread():
    """``with one_thread() as torch:``: torch on one CPU thread for the block (the thread count restored after), so
    training is as fast on these tiny matrices and the same on every machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny matrices: threads only add overhead (and make runs machine-dependent)
    try:
        yield torch
    finally:
        torch.set_num_threads(threads)


def split_tensors(split: Split):
    """``(x_train, y_train, x_test)`` as torch tensors: the pixels / 16 as float32, the labels as integers."""
    import torch

    return (torch.tensor(split.x_train / PIXEL_MAX, dtype=torch.float32), torch.tensor(split.y_train),
            torch.tensor(split.x_test / PIXEL_MAX, dtype=torch.float32))


def fit(model, x, y, *, epochs: int, lr: float, seed: int) -> None:
    """Adam on cross-entropy over the first 10 outputs, batches of 64 in a seeded order."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=order)
        for start in range(0, len(x), 64):
            batch = perm[start:start + 64]
            loss = torch.nn.functional.cross_entropy(model(x[batch])[:, :10], y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def mlp(first, second):
    """``Sequential(first, ReLU, second)``: the digits MLP around two layer modules."""
    import torch

    return torch.nn.Sequential(first, torch.nn.ReLU(), second)


def float_accuracy(model, x_test, y_test) -> float:
    """Test accuracy of a torch model in float: argmax of its first 10 outputs against ``y_test``."""
    import torch

    with torch.no_grad():
        return float((model(x_test)[:, :10].argmax(1).numpy() == y_test).mean())


@functools.lru_cache(maxsize=1)
def _float_state(seed: int):
    """Train the float baseline once per process: ``(state_dict, test accuracy, seconds)``."""
    split = load_split()
    with one_thread() as torch:
        start = time.perf_counter()
        x, y, x_test = split_tensors(split)
        torch.manual_seed(seed)
        model = mlp(torch.nn.Linear(64, HIDDEN), torch.nn.Linear(HIDDEN, 10))
        fit(model, x, y, epochs=40, lr=1e-2, seed=seed)
        acc = float_accuracy(model, x_test, split.y_test)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return state, acc, time.perf_counter() - start


def train_float(seed: int = TRAIN_SEED) -> tuple[float, float]:
    """``(test accuracy, seconds)`` of the float baseline MLP (trained once per process and seed)."""
    _, acc, seconds = _float_state(seed)
    return acc, seconds


def _load_float(model, seed: int) -> None:
    """Start a compressed model from the float baseline's weights (its weight parameters by position)."""
    import torch

    state, _, _ = _float_state(seed)
    with torch.no_grad():
        for layer, name in ((model[0], "0"), (model[2], "2")):
            target = getattr(layer, "dense_weight", None)
            if target is None:
                target = layer.weight
            target.copy_(state[f"{name}.weight"])
            layer.bias.copy_(state[f"{name}.bias"])


def mixed_linear(in_features: int, out_features: int, fraction: float, fmt, w_bits: int):
    """A ``QuantLinear`` whose weight is fake-quantised by :func:`sw.msq.quantize_mixed` (straight-through)."""
    from peforge.sw.layers import QuantLinear, RowFakeQuant

    class MixedQuantizer(RowFakeQuant):
        @staticmethod
        def _quantize(w, settings):
            mixed = quantize_mixed(w, settings[0], sp2_fmt=settings[1], w_bits=settings[2])
            return mixed, mixed.scale

        @staticmethod
        def _dequantize(mixed, scale, settings):
            return mixed.dequantize()

    return QuantLinear(in_features, out_features, quantizer=MixedQuantizer((fraction, fmt, w_bits)))


def _train_scheme(scheme: str, split: Split, seed: int):
    """Train ``scheme``: ``(model, float test accuracy)``; ``model`` maps pixels / 16 to logits."""
    import torch

    from peforge.sw import circulant_torch, forms_torch, nm, nm_torch, sp2

    x, y, x_test = split_tensors(split)
    torch.manual_seed(seed)
    if scheme == "fixed":
        from peforge.sw.layers import FixedLinear
        model = mlp(FixedLinear(64, HIDDEN, w_bits=8), FixedLinear(HIDDEN, 10, w_bits=8))
        _load_float(model, seed)
        fit(model, x, y, epochs=10, lr=1e-3, seed=seed + 1)
    elif scheme == "sp2":
        from peforge.sw.layers import SP2Linear
        fmt = sp2.SP2Format(4)
        model = mlp(SP2Linear(64, HIDDEN, fmt=fmt), SP2Linear(HIDDEN, 10, fmt=fmt))
        _load_float(model, seed)
        fit(model, x, y, epochs=10, lr=2e-3, seed=seed + 1)
    elif scheme == "msq":
        fmt, fraction = sp2.SP2Format(4), 0.5
        model = mlp(mixed_linear(64, HIDDEN, fraction, fmt, 4), mixed_linear(HIDDEN, 10, fraction, fmt, 4))
        _load_float(model, seed)
        fit(model, x, y, epochs=10, lr=2e-3, seed=seed + 1)
    elif scheme == "nm":
        fmt = nm.NMFormat(2, 4)
        model = mlp(nm_torch.NMSparseLinear(64, HIDDEN, fmt=fmt), nm_torch.NMSparseLinear(HIDDEN, 10, fmt=fmt))
        _load_float(model, seed)
        fit(model, x, y, epochs=30, lr=2e-3, seed=seed + 1)
    elif scheme == "circulant":
        # the hidden layer block-circulant; the 10-way classifier (not a multiple of k) 8-bit fixed point
        from peforge.sw.layers import FixedLinear
        model = mlp(circulant_torch.BlockCirculantLinear(64, HIDDEN, BLOCK), FixedLinear(HIDDEN, 10, w_bits=8))
        fit(model, x, y, epochs=40, lr=1e-2, seed=seed + 1)
    elif scheme == "crossbar":
        model = mlp(forms_torch.PolarizedLinear(64, HIDDEN, rows_per_sub=8),
                     forms_torch.PolarizedLinear(HIDDEN, 10, rows_per_sub=8))
        _load_float(model, seed)
        forms_torch.admm_polarize(model, x, y, seed=seed + 1)
    else:
        raise ValueError(f"Scheme must be one of {', '.join(map(repr, SCHEMES))}, not {scheme!r}")
    return model, float_accuracy(model, x_test, split.y_test)


def build(scheme: str, *, seed: int = TRAIN_SEED) -> Digits:
    """Train ``scheme`` (seeded, one CPU thread; from the float baseline where the scheme fine-tunes) and
    export it with :func:`sw.from_torch.from_torch`, calibrated on the training images: the input is the
    pixels (``input_scale = 1 / 16``, :data:`INPUT_BITS` unsigned), hidden activations :data:`ACT_BITS`
    unsigned, logits :data:`LOGIT_BITS` signed, N:M values 8-bit, the circulant layer in :data:`CIRCULANT`,
    crossbar layers in tiles of :data:`XBAR_COLS` columns.

    Raises
    ------
    ValueError
        ``"Scheme must be one of 'fixed', 'sp2', 'msq', 'nm', 'circulant', 'crossbar', not 'int4'"``.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"Scheme must be one of {', '.join(map(repr, SCHEMES))}, not {scheme!r}")
    from peforge.sw.from_torch import from_torch

    split = load_split()
    with one_thread():
        start = time.perf_counter()
        model, float_acc = _train_scheme(scheme, split, seed)
        network = from_torch(model, split.x_train / PIXEL_MAX, input_bits=INPUT_BITS, input_signed=False,
                             input_scale=1.0 / PIXEL_MAX, act_bits=ACT_BITS, logit_bits=LOGIT_BITS, nm_w_bits=8,
                             circulant=CIRCULANT, crossbar={"cols": XBAR_COLS})
        seconds = time.perf_counter() - start
    return Digits(scheme, network, model, float_acc, seconds)
