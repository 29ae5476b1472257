"""Datasets: an IDX reader, MNIST / Fashion-MNIST loaders with checksummed download, batching.

Where the loaders look for files, in order:

1. ``root`` if given (the folder holding the files, or its parent with a ``mnist/`` or
   ``fashion-mnist/`` sub-folder); otherwise the environment variable ``TINYGAN_DATA`` (same two
   layouts) and, for Fashion-MNIST, Debian's ``/usr/share/datasets/fashion-mnist/``;
2. the cache ``~/.cache/tinygan/<dataset>/`` (``$TINYGAN_CACHE/<dataset>/`` when set), which is
   also where downloads go.

Downloaded files are MD5-checked before they appear in the cache; local files are not (Debian
recompresses Fashion-MNIST) but every file is validated by :func:`read_idx`. Errors are one line
each: ``DataError`` (a ``ValueError``) for a file that is damaged or not what it should be,
``FileNotFoundError`` for files that are missing, ``DownloadError`` (a ``RuntimeError``) for files
missing that could not be downloaded either.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .serialization import atomic_path

__all__ = [
    "DataError",
    "DownloadError",
    "batches",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
]


class DataError(ValueError):
    """A data file that cannot be used: damaged, or not the data it should hold."""


class DownloadError(RuntimeError):
    """Files that are not on this machine and could not be downloaded."""


# IDX type code -> big-endian dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a native-endian array.

    Parameters
    ----------
    path : str or path-like
        The file. Gzip is detected from the content, not the name.

    Returns
    -------
    np.ndarray
        Array of the file's shape and dtype (uint8, int8, int16, int32, float32 or float64).

    Raises
    ------
    DataError
        A ``ValueError``, if the file is not valid IDX: bad magic number, unknown type code, or
        a payload whose length does not match the dimensions (truncated or over-long file). The
        message names the file and the offending value.
    """
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt gzip stream ({e})") from e
    if len(raw) < 4:
        raise DataError(f"{path}: file too short for an IDX header ({len(raw)} bytes)")
    if raw[:2] != b"\x00\x00":
        raise DataError(f"{path}: bad IDX magic number 0x{raw[:4].hex()} (must start with 0000)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise DataError(f"{path}: unknown IDX type code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header: expected {header} bytes, got {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header
    if actual != expected:
        kind = "truncated" if actual < expected else "over-long"
        raise DataError(
            f"{path}: {kind} IDX payload for shape {shape} and dtype {dtype.name}: "
            f"expected {expected} bytes, got {actual}"
        )
    data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # native byte order, writable copy


# ----------------------------------------------------------------------------- datasets

_SPLITS = {"train": "train", "test": "t10k"}


@dataclass(frozen=True)
class _Dataset:
    name: str  # sub-folder and cache name
    title: str
    mirrors: tuple[str, ...]
    md5: dict[str, str] = field(repr=False)
    system_dirs: tuple[Path, ...] = ()


_MNIST = _Dataset(
    name="mnist",
    title="MNIST",
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    md5={
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
)

_FASHION_MNIST = _Dataset(
    name="fashion-mnist",
    title="Fashion-MNIST",
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    md5={
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),  # Debian: dataset-fashion-mnist
)


def load_mnist(
    split: str = "train", root: str | os.PathLike | None = None, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST.

    Parameters
    ----------
    split : {"train", "test"}
        60,000 training or 10,000 test examples.
    root : str or path-like, optional
        Folder holding the standard ``*-idx?-ubyte.gz`` files (or its parent with a ``mnist/``
        sub-folder). When given, ``TINYGAN_DATA`` is not consulted. See the module docstring.
    download : bool
        Download missing files from the official mirrors into the cache (MD5-verified).

    Returns
    -------
    images : np.ndarray, uint8, shape (N, 28, 28)
    labels : np.ndarray, int64, shape (N,), values in 0..9
    """
    return _load(_MNIST, split, root, download)


def load_fashion_mnist(
    split: str = "train", root: str | os.PathLike | None = None, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Load Fashion-MNIST; the same as :func:`load_mnist` (sub-folder ``fashion-mnist/``)."""
    return _load(_FASHION_MNIST, split, root, download)


def _cache_dir(ds: _Dataset) -> Path:
    base = os.environ.get("TINYGAN_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "tinygan") / ds.name


def _search_dirs(ds: _Dataset, root: str | os.PathLike | None) -> list[Path]:
    if root is not None:
        bases = [Path(root)]
    else:
        env = os.environ.get("TINYGAN_DATA")
        bases = [Path(env)] if env else []
    dirs = [d for b in bases for d in (b, b / ds.name)]
    if root is None:
        dirs += ds.system_dirs
    return [*dirs, _cache_dir(ds)]


def _find(directory: Path, name: str) -> Path | None:
    """The file ``name`` (.gz) or its uncompressed twin in ``directory``, if either exists."""
    for candidate in (directory / name, directory / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _load(
    ds: _Dataset, split: str, root: str | os.PathLike | None, download: bool
) -> tuple[np.ndarray, np.ndarray]:
    if split not in _SPLITS:
        raise ValueError(f"unknown {ds.title} split {split!r}; expected one of {list(_SPLITS)}")
    names = [f"{_SPLITS[split]}-images-idx3-ubyte.gz", f"{_SPLITS[split]}-labels-idx1-ubyte.gz"]
    dirs = _search_dirs(ds, root)
    paths, partial = None, ""
    for d in dirs:
        found = [_find(d, name) for name in names]
        if None not in found:
            paths = found
            break
        if any(found) and not partial:  # a folder with some of the files: say what it lacks
            have = [n for n, f in zip(names, found) if f is not None]
            lack = [n for n, f in zip(names, found) if f is None]
            partial = f"; {d} has {' and '.join(have)} but not {' and '.join(lack)}"
    if paths is None:
        where = (
            f"{ds.title} {split!r} not found: expected {' and '.join(names)} (or uncompressed) "
            f"in one of: {', '.join(map(str, dirs))}{partial}"
        )
        hint = (
            "put them in a folder and pass it as root= (the examples' --data-dir), or set "
            f"TINYGAN_DATA to it (or to the parent of a {ds.name}/ folder)"
        )
        if not download:
            raise FileNotFoundError(f"{where}. To fix: {hint}, or use download=True")
        try:
            paths = [_download(ds, name) for name in names]
        except DownloadError as e:
            raise DownloadError(f"{where}, and {e}. To fix: {hint}") from e
    images, labels = (read_idx(p) for p in paths)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(
            f"{paths[0]}: expected uint8 images (N, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{paths[1]}: expected uint8 labels (N,), got {labels.dtype} {labels.shape}"
        )
    wrong = np.flatnonzero(labels > 9)
    if wrong.size:
        raise DataError(
            f"{paths[1]}: label {labels[wrong[0]]} at index {wrong[0]} is not in 0..9 "
            f"({wrong.size} of {labels.size} labels are out of range)"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{paths[0]} has {len(images)} images but {paths[1]} has {len(labels)} labels"
        )
    return images, labels.astype(np.int64)


def _download(ds: _Dataset, name: str) -> Path:
    """Fetch ``name`` into the cache (unless there already) and return its path.

    The bytes go through ``serialization.atomic_path``: a temporary file in the cache folder,
    renamed into place only once its MD5 matches. On any failure or interruption it is removed
    (one left by a killed process is removed by the next download of the same file).
    """
    target_dir = _cache_dir(ds)
    target = target_dir / name
    if target.is_file():
        return target
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"could not download {name}: cannot create the cache ({e})") from e
    errors = []
    for mirror in ds.mirrors:
        url = mirror + name
        print(f"tinygan: downloading {url} -> {target}", file=sys.stderr)
        try:
            with (
                atomic_path(target) as tmp,
                open(tmp, "wb") as out,
                urllib.request.urlopen(url, timeout=60) as response,
            ):
                md5 = hashlib.md5()
                while chunk := response.read(_CHUNK):
                    md5.update(chunk)
                    out.write(chunk)
                if md5.hexdigest() != ds.md5[name]:
                    raise DataError(f"MD5 mismatch: expected {ds.md5[name]}, got {md5.hexdigest()}")
            return target
        except (OSError, DataError, http.client.HTTPException) as e:  # URLError is an OSError
            errors.append(f"{url}: {' '.join(str(e).split()) or type(e).__name__}")
    raise DownloadError(f"could not download {name} ({'; '.join(errors)})")


# ----------------------------------------------------------------------------- batching


def batches(
    n: int,
    batch_size: int,
    rng: np.random.Generator | int | None = None,
    *,
    shuffle: bool = True,
    drop_last: bool = True,
) -> Iterator[np.ndarray]:
    """Index arrays for one epoch of mini-batches over ``n`` examples.

    Parameters
    ----------
    n : int
        Number of examples (positive).
    batch_size : int
        Examples per batch (positive; at most ``n`` when ``drop_last``).
    rng : np.random.Generator or int or None
        Generator (or seed for one) used to shuffle; pass the same seed to get the same batches.
    shuffle : bool
        Draw a fresh permutation; otherwise batches follow ``0..n-1`` in order.
    drop_last : bool
        Drop the final short batch so that every batch has exactly ``batch_size`` indices.

    Returns
    -------
    Iterator[np.ndarray]
        int64 index arrays of shape (batch_size,) (the last one shorter when not ``drop_last``).
    """
    for arg, value in (("n", n), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}")
    if drop_last and batch_size > n:
        raise ValueError(f"batch_size={batch_size} > n={n} with drop_last=True yields no batch")
    order = np.random.default_rng(rng).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    return (order[i : i + batch_size] for i in range(0, stop, batch_size))
