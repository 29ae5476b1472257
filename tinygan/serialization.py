"""Checkpoints as ``.npz`` archives, written atomically and read without pickle.

``save(obj, path)`` writes a Module's ``state_dict`` or any flat mapping of names to arrays,
Tensors or numbers (a checkpoint of several parts prefixes their keys, e.g. ``"G/body.0.weight"``,
``"optG/0.exp_avg"``); ``load(path)`` gives back the mapping with NumPy arrays on the CPU, ready
for ``load_state_dict``.

Files are written through ``atomic_path``: into a temporary file in the same directory, flushed
to disk, then renamed over the target (``os.replace``), so a crash or an error leaves the old file
or the new one, never a torn one, and no temporary file behind. A process killed outright
(SIGKILL, power loss) cannot remove its temporary file; its name holds the writer's process id,
and the next write of the same target removes it once that process is gone
(``remove_stale_temporaries``). Reading never unpickles: an archive holding Python objects is
refused, so a crafted checkpoint cannot run code; a damaged archive (truncated, a flipped byte,
empty, not an archive at all) raises ``CheckpointError`` naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import backend
from .tensor import Tensor


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: not an archive, damaged, or written by another run."""


_active: set[str] = set()  # temporary files this process is writing now


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; once the block succeeds, it replaces ``path``.

    The file is fsynced before the rename and the directory after it. If the block raises, the
    temporary file is removed and ``path`` is left as it was. The temporary file is named
    ``.<name>.<pid>.<random>.tmp``; stale ones of earlier writers are removed first
    (``remove_stale_temporaries``). A ``path`` that is a symbolic link (or runs through one)
    is resolved first: the link's target is replaced, and the link stays a link. A file that is
    replaced keeps its permissions; a new one gets a normal file's (``0666`` less the umask).
    """
    given, path = path, os.path.realpath(path)
    if os.path.islink(path):  # realpath stops at a loop of links
        raise OSError(errno.ELOOP, "a loop of symbolic links", os.fspath(given))
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_UMASK
    remove_stale_temporaries(path)
    prefix = f".{os.path.basename(path)}.{os.getpid()}."
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT, f"no folder {directory} to write into", os.fspath(given)
        ) from None
    os.close(fd)
    _active.add(tmp)
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, mode)  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    finally:
        _active.discard(tmp)
    with contextlib.suppress(OSError):  # not every platform can open a directory
        _fsync(directory)


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writers of ``path`` left beside it.

    Only the names ``atomic_path`` makes for this target are considered
    (``.<name>.<pid>.<random>.tmp``), and one is removed only if it cannot belong to a write in
    progress: its writer process no longer exists, or the writer's id is this process's own (a
    process id reused after a kill) and this process is not writing it, or it is older than
    ``path`` itself (a writer still alive would have renamed it over ``path`` instead). Process
    ids are checked on this machine only.

    Returns
    -------
    list of Path
        The files removed.
    """
    path = Path(os.path.abspath(path))
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[a-z0-9_]+\.tmp")
    try:
        final = path.stat().st_mtime
    except OSError:
        final = None
    removed = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(path.parent):
            match = pattern.fullmatch(entry.name)
            if match is None or entry.path in _active or not entry.is_file(follow_symlinks=False):
                continue
            pid = int(match[1])
            try:
                older = final is not None and entry.stat().st_mtime < final
            except FileNotFoundError:
                continue
            if pid == os.getpid() or not _process_exists(pid) or older:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _process_exists(pid: int) -> bool:
    if pid <= 0:  # 0 and negative ids name process groups, never a writer
        return False
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except (ProcessLookupError, OverflowError):  # gone, or not a process id at all
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    except OSError:
        return True  # cannot tell (e.g. no os.kill on this platform): keep the file
    return True


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

    Each entry ``<key>.npy`` of the archive gives ``key`` (exactly one ``.npy`` suffix is
    removed, so keys that themselves end in ``.npy`` come back as they were saved). Every byte
    read is checked against the archive's CRC-32.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (other ``OSError`` for a file that cannot be opened).
    CheckpointError
        A ``ValueError`` naming the file: it is not an ``.npz`` archive (empty, text, a single
        ``.npy`` array), it is damaged (truncated, a changed byte), or an entry holds Python
        objects (pickled data, never loaded).
    """
    name = os.fspath(path)
    out: dict[str, np.ndarray] = {}
    try:
        with open(name, "rb") as f:
            head = f.read(6)
            if head == b"\x93NUMPY":
                raise CheckpointError(
                    f"load: {name!r} holds a single .npy array, not an .npz archive"
                )
            f.seek(0)
            with zipfile.ZipFile(f) as archive:
                for info in archive.infolist():
                    key, array = _read_entry(archive, info, name, out)
                    out[key] = array
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, struct.error, ValueError) as e:
        what = "empty" if not os.path.getsize(name) else "damaged or not a checkpoint"
        raise CheckpointError(
            f"load: {name!r} is not a readable .npz archive ({what}: {type(e).__name__}: {e})"
        ) from None
    return out


def _read_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, seen: Mapping[str, Any]
) -> tuple[str, np.ndarray]:
    """One ``<key>.npy`` entry of an archive, as (key, array)."""
    key = info.filename.removesuffix(".npy")
    if key == info.filename or not key:
        raise CheckpointError(f"load: {name!r} has an entry {info.filename!r}, not <key>.npy")
    if key in seen:
        raise CheckpointError(f"load: {name!r} holds the entry {info.filename!r} twice")
    with archive.open(info) as f:
        try:
            array = np.lib.format.read_array(f, allow_pickle=False)
        except ValueError as e:
            if "allow_pickle" not in str(e):
                raise
            raise CheckpointError(
                f"load: entry {key!r} of {name!r} holds Python objects (pickled data); "
                "refusing to load it (allow_pickle=False)"
            ) from None
        if f.read(1):  # also reads to the entry's end, where its CRC-32 is checked
            raise CheckpointError(f"load: entry {key!r} of {name!r} has bytes after its array")
    return key, array


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
