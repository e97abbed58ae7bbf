"""The command line's ``.npy`` files: the samples, labels and logits of ``peforge infer`` and ``peforge board run``.

One reader and one writer for every command, so a file that is not a ``.npy`` array, an empty one, samples of the
wrong shape or type, labels of the wrong shape or an output path that cannot be written are refused alike: one
line (:class:`UsageError`, exit status 2) naming the option and the file, before any simulation or build starts.

Samples (:func:`read_inputs`) are ``[N, *input.shape]`` (the model's shape: ``[N, C, H, W]``, ``[N, C, L]``) or
flattened ``[N, features]`` (channels slowest, as ``torch.flatten``); a network with a vector input takes any
``[N, ...]`` of ``features`` values per sample. An integer array holds the input codes; a floating-point array
holds real values when the network has an input scale (every QONNX and ``from_torch`` model), quantised as the
model's input quantiser does (:func:`quantize_real`), and integer-valued codes otherwise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from peforge.errors import UsageError

__all__ = ["read_npy", "read_inputs", "read_samples", "Samples", "quantize_real", "read_labels", "npy_output",
           "NPY_MAGIC"]

#: The first bytes of every ``.npy`` file (``numpy.lib.format``).
NPY_MAGIC = b"\x93NUMPY"


def read_npy(path: str, what: str) -> np.ndarray:
    """The array in the ``.npy`` file ``path`` (``what`` names the option: ``"--input"``).

    Raises
    ------
    UsageError
        ``"--input must be an existing .npy file, not 'x.npy'"``,
        ``"--input must be a .npy array file, not 'x.npy' (the file is empty)"``, ``(... no .npy header ...)``,
        ``(Object arrays cannot be loaded when allow_pickle=False)``.
    """
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{what} must be an existing .npy file, not {path!r}")
    with file.open("rb") as f:
        head = f.read(len(NPY_MAGIC))
    if not head:
        raise UsageError(f"{what} must be a .npy array file, not {path!r} (the file is empty)")
    if head != NPY_MAGIC:
        kind = " (an .npz archive: save one array with numpy.save)" if head.startswith(b"PK") else ""
        raise UsageError(f"{what} must be a .npy array file, not {path!r} (no .npy header{kind})")
    try:
        return np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # a truncated or pickled file: one line
        raise UsageError(f"{what} must be a .npy array file, not {path!r} ({' '.join(str(exc).split())})") from None


def quantize_real(x: np.ndarray, scale: float, lo: int, hi: int) -> np.ndarray:
    """int64 codes ``clip(round(x / scale), lo, hi)`` of real inputs, rounded half to even, as QONNX's input
    ``Quant`` (``ROUND``) and :meth:`sw.network.Network.quantize_input` compute them.

    The division runs in the array's float type when ``scale`` is a float32 value (every QONNX scale): float32
    data in float32, as ``execute_onnx`` quantises its float32 input; float64 data (and any scale that is not a
    float32 value, such as ``from_torch``'s) in float64, exactly ``Network.quantize_input``. Values beyond the
    range clip to it (infinities too), as the quantiser clips.

    Examples
    --------
    >>> quantize_real(np.array([[0.5, 0.49, 1.5, 300.0, -1.0]], np.float32), 1.0, 0, 255).tolist()
    [[0, 0, 2, 255, 0]]
    """
    s32 = np.float32(scale)
    q = np.asarray(x) / (s32 if float(s32) == scale else np.float64(scale))
    return np.clip(np.round(q), lo, hi).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Samples:
    """What :func:`read_inputs` read: the input ``codes`` ``[N, features]`` (int64), the network's ``golden``
    logits of them, and whether the file held real values (``real``: quantised by the input scale)."""

    codes: np.ndarray
    golden: np.ndarray
    real: bool


def _shape_text(shape: tuple[int, ...]) -> str:
    return f"(N, {', '.join(map(str, shape))})"


def read_inputs(path: str, network, what: str = "--input",
                quantize: Callable[[np.ndarray], np.ndarray] | None = None) -> Samples:
    """At least one sample for ``network`` (a :class:`sw.network.Network`): the codes and their golden logits.

    ``quantize`` turns real inputs (a float array, already in shape ``[N, features]``) into codes; default
    :func:`quantize_real` with the network's input scale (``peforge infer MODEL.onnx`` passes the model's own
    input ``Quant``).

    Raises
    ------
    UsageError
        The errors of :func:`read_npy`; ``"--input x.npy must hold at least one sample, not 0 (shape (0, 64))"``;
        ``"--input x.npy: Network input must have shape (N, 1, 8, 8) (the model's input shape) or (N, 64)
        (flattened), not (5, 8, 8)"``, ``"--input x.npy: Network input must have shape (N, 64), not (2, 63)"``;
        ``"--input x.npy: Network input must be integer codes or real numbers, not bool values"``;
        ``"--input x.npy: Network input must be finite real numbers, not nan (at index (0, 3))"``;
        ``"--input x.npy: Network input must be integers from 0 to 255, not 256 (at index (0, 3))"``.
    """
    x = read_npy(path, what)
    if x.ndim >= 1 and len(x) == 0:
        raise UsageError(f"{what} {path} must hold at least one sample, not 0 (shape {x.shape})")
    spec = network.input
    if x.dtype.kind not in "iuf":
        raise UsageError(f"{what} {path}: Network input must be integer codes or real numbers, not "
                         f"{'bool' if x.dtype.kind == 'b' else x.dtype} values")
    sample = x.shape[1:]
    if len(spec.shape) > 1:
        ok = sample in (tuple(spec.shape), (spec.features,))
        want = f"{_shape_text(spec.shape)} (the model's input shape) or {_shape_text((spec.features,))} (flattened)"
    else:  # a vector: any [N, ...] of its features, flattened
        ok = x.ndim >= 2 and math.prod(sample) == spec.features
        want = _shape_text((spec.features,))
    if x.ndim < 2 or not ok:
        raise UsageError(f"{what} {path}: Network input must have shape {want}, not {x.shape}")
    flat = x.reshape(len(x), spec.features)
    real = x.dtype.kind == "f" and spec.scale is not None
    if real:
        nan = np.argwhere(np.isnan(flat))
        if len(nan):
            index = tuple(int(i) for i in np.unravel_index(int(np.ravel_multi_index(tuple(nan[0]), flat.shape)),
                                                           x.shape))
            raise UsageError(f"{what} {path}: Network input must be finite real numbers, not nan (at index {index})")
        codes = quantize(flat) if quantize is not None else quantize_real(flat, spec.scale, *spec.range)
    else:
        codes = flat
    try:
        golden = network.golden(codes)
    except (ValueError, TypeError) as exc:
        hint = " (the network has no input scale to quantise real values with)" if x.dtype.kind == "f" else ""
        raise UsageError(f"{what} {path}: {exc}{hint}") from None
    return Samples(np.asarray(codes, np.int64), golden, real)


def read_samples(path: str, network, what: str = "--input") -> tuple[np.ndarray, np.ndarray]:
    """``(codes [N, features], golden logits)``: :func:`read_inputs` as a pair (real inputs quantised).

    Raises
    ------
    UsageError
        The errors of :func:`read_inputs`.
    """
    samples = read_inputs(path, network, what)
    return samples.codes, samples.golden


def read_labels(path: str, count: int, what: str = "--labels") -> np.ndarray:
    """Integer labels ``[count]``, one per sample.

    Raises
    ------
    UsageError
        The errors of :func:`read_npy`; ``"--labels must be an integer array of shape (16,) like the inputs, not
        float64 (16,)"``.
    """
    labels = read_npy(path, what)
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(f"{what} must be an integer array of shape ({count},) like the inputs, not "
                         f"{labels.dtype} {labels.shape}")
    return labels


def npy_output(path: str, what: str = "--output") -> Path:
    """The file an array given ``path`` is written to: ``path`` itself if it ends in ``.npy``, else ``path``
    with ``.npy`` appended (as :func:`numpy.save` does). Checked before the work that makes the array.

    Raises
    ------
    UsageError
        ``"--output must be a .npy file path, not the directory 'out'"``,
        ``"--output must be in an existing directory, not 'nowhere/y.npy' (no directory 'nowhere')"``.
    """
    out = Path(path)
    if out.is_dir() or not out.name:
        raise UsageError(f"{what} must be a .npy file path, not the directory {path!r}")
    if out.suffix != ".npy":
        out = out.with_name(out.name + ".npy")
    if out.is_dir():
        raise UsageError(f"{what} must be a .npy file path, not the directory {str(out)!r}")
    if not out.parent.is_dir():
        raise UsageError(f"{what} must be in an existing directory, not {path!r} (no directory "
                         f"{str(out.parent)!r})")
    return out
