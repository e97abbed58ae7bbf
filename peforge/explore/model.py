"""The model builders of ``peforge explore``: a point's per-layer choices to a trained integer network.

``digits-mlp`` is the digits classifier of :mod:`peforge.digits` (``64 -> hidden -> 10``) with a scheme and its
format chosen per layer; it reuses that module's data split, training loop and float baseline recipe, and
exports through :func:`sw.from_torch.from_torch` like :func:`peforge.digits.build`. Training is seeded and
runs on one CPU thread, so a point's network is the same on every worker.

Layer choices (normalised by :func:`layer_choice`; keys that do not apply to a scheme are dropped):

========== ==================================================================== ============================
scheme     trained module                                                       format keys (default)
========== ==================================================================== ============================
fixed      ``FixedLinear(w_bits=bits)``                                          bits (8)
sp2        ``SP2Linear(SP2Format(bits))``                                        bits (4)
msq        half the rows SP2(bits), half fixed(bits) (:mod:`sw.msq`)             bits (4)
nm         ``NMSparseLinear(NMFormat(n, m))``, values ``bits`` wide              nm ("2:4"), bits (8)
circulant  ``BlockCirculantLinear(block)``, spectra ``bits`` wide                block (8), bits (8)
crossbar   ``PolarizedLinear(rows_per_sub)`` (FORMS, ADMM), magnitudes ``bits``  rows_per_sub (8), bits (8),
                                                                                adc_bits (null: lossless)
========== ==================================================================== ============================
"""

from __future__ import annotations

import functools
import time

import numpy as np

from peforge import digits

__all__ = ["LAYER_SCHEMES", "FORMAT_KEYS", "FOLD_KEYS", "layer_choice", "train_digits_mlp"]

#: Per-layer schemes of the digits-mlp builder (the schemes of :mod:`sw.network`).
LAYER_SCHEMES = ("fixed", "sp2", "msq", "nm", "circulant", "crossbar")
#: The format keys each scheme takes, with their defaults.
FORMAT_KEYS = {
    "fixed": {"bits": 8},
    "sp2": {"bits": 4},
    "msq": {"bits": 4},
    "nm": {"nm": "2:4", "bits": 8},
    "circulant": {"block": 8, "bits": 8},
    "crossbar": {"rows_per_sub": 8, "bits": 8, "adc_bits": None},
}
#: Folding keys a layer may fix (the rest of the folding comes from the point's ``fold``); ``impl: unrolled`` (with
#: its ``reuse``) computes the layer as constant adder graphs (:class:`hw.network.folding.LayerFolding`).
FOLD_KEYS = ("lanes", "pes", "requant", "impl", "reuse")


def layer_choice(choice: dict) -> dict:
    """``choice`` with its scheme's format defaults filled in and keys of other schemes dropped."""
    scheme = choice.get("scheme", "fixed")
    out = {"scheme": scheme, **{k: choice.get(k, v) for k, v in FORMAT_KEYS[scheme].items()}}
    out.update({k: choice[k] for k in FOLD_KEYS if k in choice})
    return out


def _nm(text: str) -> tuple[int, int]:
    n, m = text.split(":")
    return int(n), int(m)


@functools.lru_cache(maxsize=4)
def _float_state(hidden: int, seed: int):
    """The float baseline ``64 -> hidden -> 10`` (digits' recipe: Adam, 40 epochs, lr 1e-2), once per process."""
    split = digits.load_split()
    with digits.one_thread() as torch:
        x, y, _ = digits.split_tensors(split)
        torch.manual_seed(seed)
        model = digits.mlp(torch.nn.Linear(64, hidden), torch.nn.Linear(hidden, 10))
        digits.fit(model, x, y, epochs=40, lr=1e-2, seed=seed)
        return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _module(choice: dict, in_features: int, out_features: int):
    from peforge.sw import circulant_torch, forms_torch, nm, nm_torch, sp2
    from peforge.sw.layers import FixedLinear, SP2Linear

    scheme, bits = choice["scheme"], choice["bits"]
    if scheme == "fixed":
        return FixedLinear(in_features, out_features, w_bits=bits)
    if scheme == "sp2":
        return SP2Linear(in_features, out_features, fmt=sp2.SP2Format(bits))
    if scheme == "msq":
        return digits.mixed_linear(in_features, out_features, 0.5, sp2.SP2Format(bits), bits)
    if scheme == "nm":
        return nm_torch.NMSparseLinear(in_features, out_features, fmt=nm.NMFormat(*_nm(choice["nm"])))
    if scheme == "circulant":
        return circulant_torch.BlockCirculantLinear(in_features, out_features, choice["block"])
    return forms_torch.PolarizedLinear(in_features, out_features, rows_per_sub=choice["rows_per_sub"])


def _shared(layers: list[dict], scheme: str, key: str, default):
    """A format field from_torch takes once per network: the same for every ``scheme`` layer."""
    values = {c[key] for c in layers if c["scheme"] == scheme}
    if len(values) > 1:
        raise ValueError(f"Layer {key} must be the same for every {scheme} layer of a digits-mlp, not "
                         f"{sorted(values, key=str)!r}")
    return values.pop() if values else default


def train_digits_mlp(layers: list[dict], *, hidden: int = digits.HIDDEN, seed: int = digits.TRAIN_SEED,
                     train: bool = True) -> dict:
    """Train the digits MLP with one scheme per layer (two layers) and export it.

    Returns ``{"network": sw.network.Network, "float_accuracy": float, "train_seconds": float}``. With ``train``
    False the model is exported untrained (crossbar layers hardened as they are): a network of the same
    structure (formats, sizes, row kinds) in a second, for the resource estimator; its accuracy means nothing.

    Raises
    ------
    ValueError
        ``"Layer bits must be the same for every nm layer of a digits-mlp, not [4, 8]"``, or the error of a
        layer or of :func:`sw.from_torch.from_torch` (``"Model layer 2 (BlockCirculantLinear): ..."``).
    """
    from peforge.sw import forms_torch
    from peforge.sw.from_torch import from_torch

    layers = [layer_choice(c) for c in layers]
    if len(layers) != 2:
        raise ValueError(f"Digits-mlp layers must be 2 (64 -> hidden -> 10), not {len(layers)}")
    nm_bits = _shared(layers, "nm", "bits", 8)
    circ = {**digits.CIRCULANT, "w_bits": _shared(layers, "circulant", "bits", digits.CIRCULANT["w_bits"])}
    xbar = {"cols": digits.XBAR_COLS, "w_bits": _shared(layers, "crossbar", "bits", 8)}
    adc = _shared(layers, "crossbar", "adc_bits", None)
    if adc is not None:
        xbar["adc_bits"] = adc
    split = digits.load_split()
    start = time.perf_counter()
    with digits.one_thread() as torch:
        x, y, x_test = digits.split_tensors(split)
        torch.manual_seed(seed)
        sizes = [(64, hidden), (hidden, 10)]
        model = digits.mlp(*(_module(c, *s) for c, s in zip(layers, sizes)))
        schemes = {c["scheme"] for c in layers}
        if not train:
            for module in (model[0], model[2]):
                if isinstance(module, forms_torch.PolarizedLinear):
                    module.harden()
        elif "circulant" not in schemes:   # start from the float baseline, as peforge.digits does
            state = _float_state(hidden, seed)
            with torch.no_grad():
                for module, name in ((model[0], "0"), (model[2], "2")):
                    target = getattr(module, "dense_weight", None)
                    (module.weight if target is None else target).copy_(state[f"{name}.weight"])
                    module.bias.copy_(state[f"{name}.bias"])
        if not train:
            pass
        elif "crossbar" in schemes:
            forms_torch.admm_polarize(model, x, y, seed=seed + 1)
        elif "circulant" in schemes:
            digits.fit(model, x, y, epochs=40, lr=1e-2, seed=seed + 1)
        elif "nm" in schemes:
            digits.fit(model, x, y, epochs=30, lr=2e-3, seed=seed + 1)
        else:
            digits.fit(model, x, y, epochs=10, lr=1e-3 if schemes == {"fixed"} else 2e-3, seed=seed + 1)
        float_acc = digits.float_accuracy(model, x_test, split.y_test)
        network = from_torch(model, split.x_train / digits.PIXEL_MAX, input_bits=digits.INPUT_BITS,
                             input_signed=False, input_scale=1.0 / digits.PIXEL_MAX, act_bits=digits.ACT_BITS,
                             logit_bits=digits.LOGIT_BITS, nm_w_bits=nm_bits, circulant=circ, crossbar=xbar)
    return {"network": network, "float_accuracy": float_acc, "train_seconds": time.perf_counter() - start}


def digits_data() -> tuple[np.ndarray, np.ndarray]:
    """The 360 test images and labels of :func:`peforge.digits.load_split`."""
    split = digits.load_split()
    return split.x_test, split.y_test
