"""Checkpoints as ``.npz`` archives, written atomically and read without pickle.

``save(obj, path)`` writes a Module's ``state_dict`` or any flat mapping of names to arrays,
Tensors or numbers (a checkpoint of several parts prefixes their keys, e.g. ``"G/body.0.weight"``,
``"optG/0.exp_avg"``); ``load(path)`` gives back the mapping with NumPy arrays on the CPU, ready
for ``load_state_dict``.

Files are written through ``atomic_path``: into a temporary file in the same directory, flushed
to disk, then renamed over the target (``os.replace``), so a crash or an error leaves the old file
or the new one, never a torn one, and no temporary file behind. Reading uses
``allow_pickle=False``: an archive holding Python objects is refused, so a crafted checkpoint
cannot run code.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from . import backend
from .tensor import Tensor


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; once the block succeeds, it replaces ``path``.

    The file is fsynced before the rename and the directory after it. If the block raises, the
    temporary file is removed and ``path`` is left as it was.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp made it 0600; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    with contextlib.suppress(OSError):  # not every platform can open a directory
        _fsync(directory)


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write a Module's ``state_dict``, or a mapping name -> array, to ``path`` atomically.

    Values may be NumPy or CuPy arrays, Tensors, numbers or sequences of them; they are stored
    as NumPy arrays (numbers as 0-d arrays). Strings arrays are allowed, Python objects are not.

    Raises
    ------
    TypeError
        For a key that is not a non-empty string, or a value that is not plain array data.
    """
    from .nn import Module

    state = obj.state_dict() if isinstance(obj, Module) else obj
    if not isinstance(state, Mapping):
        raise TypeError(f"save: expected a Module or a mapping; got {type(obj).__name__}")
    arrays = {}
    for key, value in state.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"save: keys must be non-empty strings; got {key!r}")
        value = backend.to_device(value.data if isinstance(value, Tensor) else value, "cpu")
        try:
            array = np.asarray(value)
        except ValueError:
            array = np.asarray(None)  # ragged sequences: reported below
        if array.dtype.kind not in "biufcUS":
            raise TypeError(f"save: {key!r} is not plain array data (got {type(value).__name__})")
        arrays[key] = array
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        for key, array in arrays.items():  # as np.savez does, but any key is allowed
            with archive.open(f"{key}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, array, allow_pickle=False)


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a checkpoint written by ``save``: name -> NumPy array (numbers come back 0-d).

    Raises
    ------
    ValueError
        If the file is not an ``.npz`` archive, or an entry holds Python objects (pickled data).
    """
    name = os.fspath(path)
    try:
        archive = np.load(name, allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"load: {name!r} is not a readable .npz archive ({e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"load: {name!r} holds a single .npy array, not an .npz archive")
    out = {}
    with archive:
        for key in archive.files:
            try:
                out[key] = archive[key]
            except ValueError:
                raise ValueError(
                    f"load: entry {key!r} of {name!r} holds Python objects (pickled data); "
                    "refusing to load it (allow_pickle=False)"
                ) from None
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import: reading it sets it for a moment


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
