"""tinygan.save / tinygan.load beyond the round trips of test_modules.py: keys that look like
entry names, damaged archives, and the temporary files of killed writers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import tinygan as tg
from tinygan.serialization import CheckpointError, atomic_path, remove_stale_temporaries


def test_keys_ending_in_npy_come_back_as_saved(tmp_path):
    """Regression (issue 14): ``{'a': x, 'a.npy': y}`` loaded as x for both keys."""
    x, y = np.arange(3.0), np.ones((2, 2), np.float32)
    tg.save({"a": x, "a.npy": y, "b.npy.npy": np.int64(4)}, tmp_path / "s.npz")
    back = tg.load(tmp_path / "s.npz")
    assert sorted(back) == ["a", "a.npy", "b.npy.npy"]
    np.testing.assert_array_equal(back["a"], x)
    np.testing.assert_array_equal(back["a.npy"], y)
    assert back["a.npy"].dtype == np.float32 and int(back["b.npy.npy"]) == 4


def a_checkpoint(path):
    tg.save({"w": np.arange(2000, dtype=np.float64), "step": 3}, path)
    return path.read_bytes()


def damage(blob: bytes, how: str) -> bytes:
    if how == "truncated":
        return blob[: len(blob) // 2]
    if how == "byte-flipped":  # a byte inside the array data of 'w'
        flipped = bytearray(blob)
        flipped[len(blob) // 3] ^= 0xFF
        return bytes(flipped)
    if how == "empty":
        return b""
    if how == "text":
        return b"step = 3\nweights are elsewhere\n"
    raise ValueError(how)


@pytest.mark.parametrize("how", ["truncated", "byte-flipped", "empty", "text"])
def test_damaged_archives_raise_checkpoint_error_naming_the_file(tmp_path, how):
    """Regression (issue 14): truncated, byte-flipped and empty files raised raw
    zipfile.BadZipFile / EOFError without the path, and a text file was called pickled data."""
    path = tmp_path / "ckpt.npz"
    path.write_bytes(damage(a_checkpoint(path), how))
    with pytest.raises(CheckpointError) as info:
        tg.load(path)
    message = str(info.value)
    assert isinstance(info.value, ValueError)  # what load's docstring promised
    assert str(path) in message and "not a readable .npz archive" in message
    assert "pickle" not in message
    assert ("empty" in message) == (how == "empty")


def open_files() -> set[str]:
    return {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")}  # fmt: skip


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_a_failed_load_closes_the_file(tmp_path):
    """Regression (issue 14): a truncated archive stayed open after the failed load."""
    path = tmp_path / "ckpt.npz"
    path.write_bytes(damage(a_checkpoint(path), "truncated"))
    with pytest.raises(Exception) as info:  # which one: the test above
        tg.load(path)
    # closed by load itself, not by the garbage collector once the traceback (held here) goes
    assert str(path) not in open_files(), info.value


def test_archives_not_written_by_save_are_refused(tmp_path):
    path = tmp_path / "other.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(CheckpointError, match=r"entry 'notes.txt', not <key>.npy"):
        tg.load(path)
    with pytest.raises(FileNotFoundError):
        tg.load(tmp_path / "missing.npz")


def stale(path, pid: int, age: float = 0.0, tag: str = "ab12_z9"):
    """A temporary file as a writer with ``pid`` killed mid-write would leave for ``path``."""
    tmp = path.parent / f".{path.name}.{pid}.{tag}.tmp"
    tmp.write_bytes(b"half a checkpoint")
    if age:
        t = time.time() - age
        os.utime(tmp, (t, t))
    return tmp


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # reaped: no process has this id now (until it is reused)


def test_stale_temporaries_of_dead_writers_are_removed_and_nothing_else(tmp_path):
    path = tmp_path / "ckpt.npz"
    a_checkpoint(path)
    dead = stale(path, dead_pid())
    mine = stale(path, os.getpid())  # a reused id: this process is not writing it
    alive = stale(path, os.getppid())  # a live writer (newer than ckpt.npz): kept
    other_target = stale(tmp_path / "other.npz", dead_pid())
    lookalike = tmp_path / f".{path.name}.notapid.tmp"
    lookalike.write_bytes(b"not ours")
    assert sorted(remove_stale_temporaries(path)) == sorted([dead, mine])
    assert alive.exists() and other_target.exists() and lookalike.exists()
    old_alive = stale(
        path, os.getppid(), age=3600, tag="x7"
    )  # older than ckpt.npz: its writer is gone
    assert remove_stale_temporaries(path) == [old_alive]
    assert alive.exists()


def test_a_write_removes_stale_temporaries_but_not_its_own(tmp_path):
    path = tmp_path / "ckpt.npz"
    dead = stale(path, dead_pid())
    with atomic_path(path) as tmp:
        assert not dead.exists()
        with open(tmp, "wb") as f:
            f.write(b"new")
        assert remove_stale_temporaries(path) == []  # a write in progress is never stale
        assert os.path.exists(tmp)
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]


def test_save_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path):
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "model.npz"
    tg.save({"w": np.zeros(2)}, target)
    link = tmp_path / "latest.npz"
    link.symlink_to(target)
    folder_link = tmp_path / "current"  # a link to the folder, as `ln -s runs current`
    folder_link.symlink_to(tmp_path / "runs")
    tg.save({"w": np.ones(2)}, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(tg.load(target)["w"], np.ones(2))
    tg.save({"w": np.full(2, 2.0)}, folder_link / "model.npz")
    assert folder_link.is_symlink()
    np.testing.assert_array_equal(tg.load(target)["w"], np.full(2, 2.0))
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["model.npz"]  # no temporary


def test_save_keeps_permissions_and_refuses_link_loops_and_missing_folders(tmp_path):
    """(From review: a loop of links was replaced by a file, a 0600 checkpoint came back 0644,
    and a missing folder was reported under the temporary file's name.)"""
    private = tmp_path / "private.npz"
    tg.save({"w": np.zeros(2)}, private)
    private.chmod(0o600)
    tg.save({"w": np.ones(2)}, private)
    assert private.stat().st_mode & 0o777 == 0o600
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(OSError, match="a loop of symbolic links") as info:
        tg.save({"w": np.ones(2)}, tmp_path / "a")
    assert info.value.filename == str(tmp_path / "a") and (tmp_path / "a").is_symlink()
    with pytest.raises(FileNotFoundError, match=f"no folder {tmp_path / 'nowhere'}") as info:
        tg.save({"w": np.ones(2)}, tmp_path / "nowhere" / "x.npz")
    assert info.value.filename == str(tmp_path / "nowhere" / "x.npz")
