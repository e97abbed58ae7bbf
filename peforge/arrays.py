"""The command line's ``.npy`` files: the samples, labels and logits of ``peforge infer`` and ``peforge board run``.

One reader and one writer for every command, so a file that is not a ``.npy`` array, an empty one, labels of
the wrong shape or an output path that cannot be written are refused alike: one line (:class:`UsageError`, exit
status 2) naming the option and the file, before any simulation or build starts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from peforge.errors import UsageError

__all__ = ["read_npy", "read_samples", "read_labels", "npy_output", "NPY_MAGIC"]

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


def read_samples(path: str, network, what: str = "--input") -> tuple[np.ndarray, np.ndarray]:
    """``(x, golden logits)``: at least one sample for ``network`` (a :class:`sw.network.Network`), checked by its
    golden model (shape ``(N, features)``, the input range).

    Raises
    ------
    UsageError
        The errors of :func:`read_npy`; ``"--input x.npy must hold at least one sample, not 0 (shape (0, 64))"``;
        ``"--input x.npy: Network input must have shape (N, 64), not (2, 1)"``.
    """
    x = read_npy(path, what)
    if x.ndim >= 1 and len(x) == 0:
        raise UsageError(f"{what} {path} must hold at least one sample, not 0 (shape {x.shape})")
    try:
        return x, network.golden(x)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{what} {path}: {exc}") from None


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
