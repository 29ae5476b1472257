"""Tests for tinygan.data: IDX reader, dataset lookup, checksummed download, batching."""

import gzip
import hashlib
import io
import struct
import urllib.error
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinygan import data
from tinygan.data import DataError, batches, load_fashion_mnist, load_mnist, read_idx
from tinygan.testing import seeds

from .conftest import SHARED_DATA

CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D,
         np.float64: 0x0E}  # fmt: skip


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise ``array`` in the IDX format (big-endian payload)."""
    code = CODES[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path: Path, payload: bytes) -> Path:
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No network, no user cache, no TINYGAN_DATA unless a test sets them."""

    def no_network(url, *args, **kwargs):
        raise AssertionError(f"test tried to reach the network: {url}")

    monkeypatch.setattr(data.urllib.request, "urlopen", no_network)
    monkeypatch.setenv("TINYGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TINYGAN_DATA", raising=False)


# ----------------------------------------------------------------------------- read_idx


@settings(
    deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    dtype=st.sampled_from(list(CODES)),
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    seed=seeds,
    compressed=st.booleans(),
)
def test_read_idx_round_trip(tmp_path, dtype, shape, seed, compressed):
    rng = np.random.default_rng(seed)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    path = write(tmp_path / ("a.idx.gz" if compressed else "a.idx"), idx_bytes(array))
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == tuple(shape)
    np.testing.assert_array_equal(out, array)
    out[...] = 0  # writable, not a view of the file's bytes


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("extra", [-1, 1])
def test_read_idx_rejects_wrong_payload_length(tmp_path, suffix, extra):
    good = idx_bytes(np.zeros((3, 4, 5), np.int16))
    bad = good[:extra] if extra < 0 else good + b"\0"
    path = write(tmp_path / f"x{suffix}", bad)
    kind = "truncated" if extra < 0 else "over-long"
    with pytest.raises(
        ValueError, match=rf"{kind}.*expected 120 bytes, got {119 + 2 * (extra > 0)}"
    ):
        read_idx(path)
    with pytest.raises(ValueError, match=str(path)):
        read_idx(path)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x00", "magic number 0x01000801"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x00", "type code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated IDX header"),
        (b"\x00\x00", "too short"),
    ],
)
def test_read_idx_rejects_bad_header(tmp_path, payload, message):
    path = write(tmp_path / "bad", payload)
    with pytest.raises(ValueError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_rejects_truncated_gzip(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))[:-10])
    with pytest.raises(ValueError, match="corrupt gzip"):
        read_idx(path)


# ----------------------------------------------------------------------------- real data

needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"shared datasets not found at {SHARED_DATA}"
)


def check_split(images, labels, n):
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert set(np.unique(labels)) == set(range(10))
    assert images.max() == 255


@needs_shared_data
def test_load_mnist_test_split_from_root():
    check_split(*load_mnist("test", root=SHARED_DATA / "mnist", download=False), 10_000)


@needs_shared_data
@pytest.mark.parametrize("layout", ["parent", "folder"])
def test_load_from_tinygan_data(monkeypatch, layout):
    monkeypatch.setenv(
        "TINYGAN_DATA", str(SHARED_DATA if layout == "parent" else SHARED_DATA / "mnist")
    )
    images, labels = load_mnist("test", download=False)
    check_split(images, labels, 10_000)
    direct = load_mnist("test", root=SHARED_DATA / "mnist", download=False)
    np.testing.assert_array_equal(images, direct[0])


@needs_shared_data
def test_load_fashion_mnist_both_splits(monkeypatch):
    monkeypatch.setenv("TINYGAN_DATA", str(SHARED_DATA))
    check_split(*load_fashion_mnist("test", download=False), 10_000)
    check_split(*load_fashion_mnist("train", download=False), 60_000)


def test_rejects_unknown_split():
    with pytest.raises(ValueError, match=r"'valid'.*\['train', 'test'\]"):
        load_mnist("valid")


def test_missing_files_without_download(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist("train", root=tmp_path / "nowhere", download=False)
    message = str(info.value)
    for expected in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                     str(tmp_path / "nowhere"), str(tmp_path / "cache" / "mnist"), "TINYGAN_DATA",
                     "root="]:  # fmt: skip
        assert expected in message


def test_explicit_root_overrides_env(monkeypatch, tmp_path):
    """root= wins over TINYGAN_DATA: a root lacking the files fails even if the env has them."""
    make_split(tmp_path / "env" / "mnist", "t10k", n=2)
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "env"))
    assert len(load_mnist("test", download=False)[0]) == 2
    with pytest.raises(FileNotFoundError):
        load_mnist("test", root=tmp_path / "empty", download=False)


def make_split(folder: Path, prefix: str, n: int, gz: bool = True, n_labels: int | None = None):
    """Write a small fake split; returns (images, labels, {file name: gz bytes})."""
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n_labels if n_labels is not None else n, dtype=np.uint8)
    blobs = {f"{prefix}-images-idx3-ubyte.gz": gzip.compress(idx_bytes(images)),
             f"{prefix}-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(labels))}  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    for name, blob in blobs.items():
        if gz:
            (folder / name).write_bytes(blob)
        else:
            (folder / name.removesuffix(".gz")).write_bytes(gzip.decompress(blob))
    return images, labels, blobs


def test_uncompressed_files_and_debian_dir(monkeypatch, tmp_path):
    debian = tmp_path / "debian"
    images, labels, _ = make_split(debian, "train", n=3, gz=False)
    monkeypatch.setattr(data, "_FASHION_MNIST", replace(data._FASHION_MNIST, system_dirs=(debian,)))
    got_images, got_labels = load_fashion_mnist("train", download=False)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_count_mismatch(tmp_path):
    make_split(tmp_path, "t10k", n=3, n_labels=4)
    with pytest.raises(DataError, match=r"3 images but .* 4 labels"):
        load_mnist("test", root=tmp_path, download=False)


def test_labels_out_of_range_are_named(tmp_path):
    """Regression (issue 14): 'expected uint8 labels (N,) in 0..9' did not say which label."""
    make_split(tmp_path, "t10k", n=5)
    labels = np.array([3, 1, 12, 0, 200], np.uint8)
    write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(labels))
    with pytest.raises(
        DataError,
        match=r"t10k-labels-idx1-ubyte.gz: label 12 at index 2 is not in 0..9 \(2 of 5 labels",
    ):
        load_mnist("test", root=tmp_path, download=False)


@pytest.mark.parametrize("download", [False, True])
def test_a_folder_with_the_images_but_not_the_labels_says_so(tmp_path, monkeypatch, download):
    """Regression (issue 14): such a folder gave 'could not download t10k-images...', the file
    that was there."""
    make_split(tmp_path / "mine", "t10k", n=3)
    (tmp_path / "mine" / "t10k-labels-idx1-ubyte.gz").unlink()

    def offline(url, timeout=None):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError if not download else data.DownloadError) as info:
        load_mnist("test", root=tmp_path / "mine", download=download)
    message = str(info.value)
    assert (
        f"{tmp_path / 'mine'} has t10k-images-idx3-ubyte.gz but not t10k-labels-idx1-ubyte.gz"
        in message
    )
    assert "\n" not in message and "root=" in message and "--data-dir" in message


# ----------------------------------------------------------------------------- download


class Interrupted(io.BytesIO):
    """A response that fails after its first chunk, like a dropped connection."""

    def __init__(self, payload: bytes, error: BaseException):
        super().__init__(payload)
        self.error = error

    def read(self, size=-1):
        if self.tell() > 0:
            raise self.error
        return super().read(max(1, min(size, 10)))


@pytest.fixture
def fake_mnist(monkeypatch, tmp_path):
    """Fake MNIST test split served by a fake opener; MD5s set to the fake files'."""
    images, labels, blobs = make_split(tmp_path / "source", "t10k", n=5)
    md5 = {name: hashlib.md5(blob).hexdigest() for name, blob in blobs.items()}
    monkeypatch.setattr(data, "_MNIST", replace(data._MNIST, md5=md5))
    served = {}  # url -> bytes or a callable returning a response

    def opener(url, timeout=None):
        response = served[url]
        return response() if callable(response) else io.BytesIO(response)

    monkeypatch.setattr(data.urllib.request, "urlopen", opener)
    return images, labels, blobs, served


def urls(name):
    return [mirror + name for mirror in data._MNIST.mirrors]


def test_download_good_bytes_land_in_cache(fake_mnist, tmp_path):
    images, labels, blobs, served = fake_mnist
    for name, blob in blobs.items():
        first, second = urls(name)
        served[first] = lambda: (_ for _ in ()).throw(urllib.error.URLError("mirror down"))
        served[second] = blob  # the second mirror is used when the first fails
    got_images, got_labels = load_mnist("test")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    cache = tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(blobs)
    served.clear()  # cached now: loading again must not download
    np.testing.assert_array_equal(load_mnist("test", download=False)[0], images)


def test_download_wrong_checksum_leaves_nothing(fake_mnist, tmp_path):
    _, _, blobs, served = fake_mnist
    for name, blob in blobs.items():
        for url in urls(name):
            served[url] = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(RuntimeError, match="MD5 mismatch") as info:
        load_mnist("test")
    assert "TINYGAN_DATA" in str(info.value)
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []


@pytest.mark.parametrize(
    ("error", "raised"),
    [(ConnectionResetError("reset"), RuntimeError), (KeyboardInterrupt(), KeyboardInterrupt)],
)
def test_interrupted_download_leaves_nothing(fake_mnist, tmp_path, error, raised):
    _, _, blobs, served = fake_mnist
    for name, blob in blobs.items():
        for url in urls(name):
            served[url] = lambda blob=blob: Interrupted(blob, error)
    with pytest.raises(raised):
        load_mnist("test")
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []


def test_no_network_no_files(monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(
        data.DownloadError, match=r"could not download.*Name or service.*TINYGAN_DATA"
    ) as info:
        load_mnist("train")
    assert "\n" not in str(info.value)  # one line, for the examples' one-line errors
    assert "the examples' --data-dir" in str(info.value)  # not only the library's root=


# ----------------------------------------------------------------------------- batches


@settings(deadline=None)
@given(n=st.integers(1, 60), batch_size=st.integers(1, 70), seed=seeds)
def test_batches_cover_each_index_once(n, batch_size, seed):
    got = list(batches(n, batch_size, seed, drop_last=False))
    assert all(len(b) == batch_size for b in got[:-1]) and 1 <= len(got[-1]) <= batch_size
    np.testing.assert_array_equal(np.sort(np.concatenate(got)), np.arange(n))


@settings(deadline=None)
@given(n=st.integers(1, 60), batch_size=st.integers(1, 60), seed=seeds)
def test_batches_drop_last_and_reproducible(n, batch_size, seed):
    batch_size = min(batch_size, n)  # repair: drop_last needs batch_size <= n
    a = list(batches(n, batch_size, np.random.default_rng(seed)))
    b = list(batches(n, batch_size, np.random.default_rng(seed)))
    assert len(a) == n // batch_size and all(len(x) == batch_size for x in a)
    flat = np.concatenate(a)
    assert len(np.unique(flat)) == len(flat)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_batches_in_order_without_shuffle():
    got = list(batches(7, 3, shuffle=False, drop_last=False))
    assert [b.tolist() for b in got] == [[0, 1, 2], [3, 4, 5], [6]]


def test_batches_epochs_differ_with_one_generator():
    rng = np.random.default_rng(0)
    first, second = (np.concatenate(list(batches(100, 10, rng))) for _ in range(2))
    assert not np.array_equal(first, second)


@pytest.mark.parametrize(
    ("args", "message"),
    [((0, 1), "n must be"), ((5, 0), "batch_size must be"), ((5.0, 1), "n must be"),
     ((5, True), "batch_size must be"), ((3, 4), "drop_last")],
)  # fmt: skip
def test_batches_validation(args, message):
    with pytest.raises(ValueError, match=message):
        batches(*args)


def test_corrupt_gzip_payload_is_a_value_error(tmp_path):
    """Regression: a damaged deflate stream escaped as zlib.error instead of ValueError."""
    import gzip

    raw = bytearray(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x04abcd" * 50))
    raw[20:30] = b"\xff" * 10
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"bad\.gz"):
        read_idx(path)
