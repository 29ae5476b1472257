"""Fault injection: a full disk during a checkpoint, a SIGKILL during a write, an interrupted
download, damaged checkpoints, a resume on other data, a diverged optimizer state. Each test
checks that nothing good is lost (the last good checkpoint, a cached file) and that the error
names the problem."""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
from dataclasses import replace

import numpy as np
import pytest

from tinygan import cli, data, runner
from tinygan.checkpoints import NonFiniteStateError
from tinygan.serialization import CheckpointError, load
from tinygan.train import train

from .conftest import ROOT
from .test_train import DATA, model


def run_to(steps, ckpt=None, resume=False, **kwargs):
    """The small test model trained to ``steps`` (resumed from ``ckpt`` if asked)."""
    m = model(seed=kwargs.pop("init", 0))
    train(m, DATA, steps=steps, batch_size=20, seed=1, checkpoint=ckpt, resume=resume,
          progress=False, **kwargs)  # fmt: skip
    return m


def assert_same_state(a, b):
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        np.testing.assert_array_equal(x, y, err_msg=k)


# should a run reach its evaluation (it must not, in these tests), it is a short one
QUICK_EVALUATION = ("--eval-samples", "10", "--classifier-steps", "1", "--classifier")


def temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---- disk full ---------------------------------------------------------------------------------
def fill_the_disk(monkeypatch):
    """From now on every array written to a checkpoint fails half-way with ENOSPC."""

    def full(f, array, **kwargs):
        f.write(b"\x93NUMPY half an array")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np.lib.format, "write_array", full)


def test_disk_full_during_a_checkpoint_keeps_the_last_good_one(tmp_path, monkeypatch):
    ckpt = tmp_path / "ckpt.npz"
    good = {}

    def at_step(step, metrics):
        if step == 5:
            good["bytes"] = ckpt.read_bytes()  # the step-4 checkpoint
            fill_the_disk(monkeypatch)

    with pytest.raises(OSError) as info:
        run_to(10, ckpt, checkpoint_every=4, on_step=at_step)
    assert info.value.errno == errno.ENOSPC
    assert str(info.value) == (
        "step 8: could not write the checkpoint: [Errno 28] No space left on device; the last "
        f"good checkpoint, step 4, is kept in {ckpt}"
    )
    assert ckpt.read_bytes() == good["bytes"] and temporaries(tmp_path) == []
    monkeypatch.undo()  # space again: the run resumes from step 4 as if nothing happened
    assert_same_state(run_to(10, ckpt, resume=True, init=7), run_to(10))


def test_disk_full_in_an_example_is_one_line_and_leaves_no_file(tmp_path, monkeypatch, example,
                                                                mnist_dir, capsys):  # fmt: skip
    fill_the_disk(monkeypatch)
    out = tmp_path / "run"
    argv = ["--split", "test", "--data-dir", mnist_dir, "--steps", "2", "--batch-size", "8",
            "--out", str(out), "--no-progress", *QUICK_EVALUATION,
            str(tmp_path / "c.npz")]  # fmt: skip
    assert cli.run(example("vae_mnist").main, argv) == 1
    err = capsys.readouterr().err
    assert err == (
        "error: step 2: could not write the checkpoint: [Errno 28] No space left on device; "
        f"this run wrote no checkpoint ({out / 'checkpoint.npz'} untouched)\n"
    )
    assert os.listdir(out) == []


# ---- SIGKILL during a write --------------------------------------------------------------------
def test_sigkill_during_a_write_keeps_the_good_checkpoint_and_the_next_run_cleans_up(tmp_path):
    ckpt = tmp_path / "ckpt.npz"
    script = textwrap.dedent(
        f"""
        import sys, time
        import numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from tests.test_train import DATA, model
        from tinygan.train import train

        def on_step(step, metrics):
            if step == 4:  # the next checkpoint (step 6) stops half-way, to be killed there
                def stuck(f, array, **kwargs):
                    f.write(b"\\x93NUMPY" + bytes(100000))
                    f.flush()
                    print("writing", flush=True)
                    time.sleep(120)
                np.lib.format.write_array = stuck

        train(model(), DATA, steps=6, batch_size=20, seed=1, checkpoint={str(ckpt)!r},
              checkpoint_every=3, on_step=on_step, progress=False)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "writing\n"
        good = ckpt.read_bytes()  # the step-3 checkpoint
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    left = temporaries(tmp_path)
    assert left and left[0].startswith(f".ckpt.npz.{child.pid}.")  # the killed write's file
    assert ckpt.read_bytes() == good and int(load(ckpt)["train/step"]) == 3
    resumed = run_to(6, ckpt, resume=True, init=5)  # a later run removes it, and resumes
    assert temporaries(tmp_path) == []
    assert_same_state(resumed, run_to(6))


# ---- an interrupted download -------------------------------------------------------------------
def idx(array: np.ndarray) -> bytes:
    code = {np.uint8: 0x08}[array.dtype.type]
    shape = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(bytes([0, 0, code, array.ndim]) + shape + array.tobytes())


class DropsAfter(io.BytesIO):
    """A response whose connection drops after ``n`` bytes."""

    def __init__(self, payload: bytes, n: int):
        super().__init__(payload)
        self.n = n

    def read(self, size=-1):
        if self.tell() >= self.n:
            raise ConnectionResetError(104, "Connection reset by peer")
        return super().read(min(size, self.n - self.tell()))


def test_an_interrupted_download_keeps_the_cached_file(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    files = {"t10k-images-idx3-ubyte.gz": idx(rng.integers(0, 256, (5, 28, 28), np.uint8)),
             "t10k-labels-idx1-ubyte.gz": idx(rng.integers(0, 10, 5).astype(np.uint8))}  # fmt: skip
    md5 = {name: hashlib.md5(blob).hexdigest() for name, blob in files.items()}
    monkeypatch.setattr(data, "_MNIST", replace(data._MNIST, md5=md5))
    monkeypatch.setenv("TINYGAN_CACHE", str(tmp_path))
    monkeypatch.delenv("TINYGAN_DATA", raising=False)
    cache = tmp_path / "mnist"
    cache.mkdir()
    images = cache / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(files[images.name])  # downloaded by an earlier run
    served = []

    def dropping(url, timeout=None):
        served.append(url)
        blob = files[url.rsplit("/", 1)[1]]
        return DropsAfter(blob, len(blob) // 2)

    monkeypatch.setattr(data.urllib.request, "urlopen", dropping)
    with pytest.raises(data.DownloadError) as info:
        data.load_mnist("test")
    message = str(info.value)
    assert "could not download t10k-labels-idx1-ubyte.gz" in message
    assert "Connection reset by peer" in message and "\n" not in message
    assert f"{cache} has t10k-images-idx3-ubyte.gz but not t10k-labels-idx1-ubyte.gz" in message
    assert sorted(os.listdir(cache)) == [images.name]  # no partial file, no temporary
    assert images.read_bytes() == files[images.name]
    assert len(served) == len(data._MNIST.mirrors)  # every mirror tried, only for the labels

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(
        files[url.rsplit("/", 1)[1]]))  # fmt: skip
    assert len(data.load_mnist("test")[1]) == 5  # the connection is back: the rest arrives


# ---- damaged checkpoints -----------------------------------------------------------------------
def damage(path, how):
    blob = path.read_bytes()
    if how == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif how == "byte-flipped":  # one bit of the largest array's data
        with zipfile.ZipFile(path) as archive:
            entry = max(archive.infolist(), key=lambda e: e.file_size)
        # its data starts after the 30-byte local header, the name and the extra field
        name, extra = struct.unpack_from("<HH", blob, entry.header_offset + 26)
        flipped = bytearray(blob)
        flipped[entry.header_offset + 30 + name + extra + entry.file_size // 2] ^= 0x01
        path.write_bytes(bytes(flipped))
    elif how == "empty":
        path.write_bytes(b"")
    else:
        path.write_text("checkpoint: step 4\n")
    return path.read_bytes()


@pytest.mark.parametrize("how", ["truncated", "byte-flipped", "empty", "text"])
def test_resuming_a_damaged_checkpoint_is_refused_naming_it(tmp_path, how):
    ckpt = tmp_path / "ckpt.npz"
    run_to(4, ckpt)
    damaged = damage(ckpt, how)
    with pytest.raises(CheckpointError) as info:
        run_to(8, ckpt, resume=True)
    message = str(info.value)
    assert message.startswith(f"cannot resume: load: '{ckpt}' is not a readable .npz archive (")
    assert message.endswith("start a new run instead (in the examples: --overwrite, or another "
                            "--out)")  # fmt: skip
    assert ckpt.read_bytes() == damaged  # left for the user to look at, not replaced


def test_an_example_resuming_a_damaged_checkpoint_prints_one_line(tmp_path, example, mnist_dir,
                                                                  capsys):  # fmt: skip
    """Regression (issue 14): --resume from a damaged file printed a 30-line traceback."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.npz").write_bytes(b"PK\x03\x04" + bytes(100))
    argv = ["--split", "test", "--data-dir", mnist_dir, "--steps", "2", "--batch-size", "8",
            "--out", str(out), "--no-progress", *QUICK_EVALUATION,
            str(tmp_path / "c.npz")]  # fmt: skip
    assert cli.run(example("vae_mnist").main, [*argv, "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot resume: load: '{out / 'checkpoint.npz'}' is not a ")
    assert err.count("\n") == 1 and "--overwrite" in err
    assert (out / "checkpoint.npz").read_bytes() == b"PK\x03\x04" + bytes(100)


# ---- a resume on other data --------------------------------------------------------------------
def test_an_example_resumed_on_another_dataset_is_refused_naming_both(tmp_path, example,
                                                                      mnist_dir, monkeypatch,
                                                                      capsys):  # fmt: skip
    """Regression (issue 14): --resume accepted different images of the same size, or another
    dataset."""
    if not os.path.isdir(os.path.join(mnist_dir, "fashion-mnist")):
        pytest.skip("needs Fashion-MNIST beside MNIST")
    out = tmp_path / "run"
    argv = ["--split", "test", "--data-dir", mnist_dir, "--steps", "2", "--batch-size", "8",
            "--out", str(out), "--no-progress", *QUICK_EVALUATION,
            str(tmp_path / "c.npz")]  # fmt: skip

    def ctrl_c(*args, **kwargs):  # Ctrl-C once training is over: the run keeps its checkpoint
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(runner, "evaluate_samples", ctrl_c)
        assert cli.run(example("vae_mnist").main, argv) == 130
    written = (out / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    status = cli.run(example("vae_mnist").main, [*argv, "--resume", "--dataset", "fashion-mnist"])
    assert status == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    train_name = "test[:8000] (sha256 "
    assert f"it was trained on mnist {train_name}" in err
    assert f"but this run's data is fashion-mnist {train_name}" in err
    assert (out / "checkpoint.npz").read_bytes() == written


# ---- a diverged optimizer state ----------------------------------------------------------------
def test_a_non_finite_optimizer_state_is_never_saved(tmp_path):
    ckpt = tmp_path / "ckpt.npz"
    m = model()
    good = {}

    def at_step(step, metrics):
        if step == 5:
            good["bytes"] = ckpt.read_bytes()  # the step-4 checkpoint
        if step == 6:  # the moments blow up; the parameters (and so the losses) stay finite
            m.opt_g.state[1]["exp_avg_sq"][:] = np.inf

    with pytest.raises(NonFiniteStateError) as info:
        train(m, DATA, steps=12, batch_size=20, seed=1, checkpoint=ckpt, checkpoint_every=4,
              on_step=at_step, progress=False)  # fmt: skip
    assert str(info.value).startswith(
        "step 8: the model's state is not finite: 'opt_g/1.exp_avg_sq' ("
    )
    assert str(info.value).endswith(f"the last good checkpoint, step 4, is kept in {ckpt}")
    assert ckpt.read_bytes() == good["bytes"] and temporaries(tmp_path) == []
    assert_same_state(run_to(12, ckpt, resume=True, init=3), run_to(12))  # still a good start


def test_an_example_that_diverges_with_finite_losses_saves_nothing(tmp_path, example, mnist_dir,
                                                                   capsys):  # fmt: skip
    """Regression (issue 14): --lambda-cat 1e30 exited 0 with inf in 30 Adam exp_avg_sq arrays
    of its checkpoint."""
    out = tmp_path / "run"
    argv = ["--split", "test", "--data-dir", mnist_dir, "--steps", "5", "--batch-size", "8",
            "--lambda-cat", "1e30", "--out", str(out), "--no-progress",
            *QUICK_EVALUATION, str(tmp_path / "c.npz")]  # fmt: skip
    with np.errstate(over="ignore", invalid="ignore"):
        assert cli.run(example("infogan_mnist").main, argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: step 5: the model's state is not finite: 'opt_")
    assert "exp_avg_sq" in err and "this run wrote no checkpoint" in err
    assert err.endswith("(training diverged: try smaller learning rates or loss weights)\n")
    assert os.listdir(out) == []  # no checkpoint, no metrics: nothing claims to be a result


def test_stale_temporaries_in_a_download_cache_are_removed(tmp_path, monkeypatch):
    """A download killed half-way leaves its temporary file; the next download removes it."""
    blob = idx(np.zeros(3, np.uint8))
    name = "t10k-labels-idx1-ubyte.gz"
    monkeypatch.setattr(
        data, "_MNIST", replace(data._MNIST, md5={name: hashlib.md5(blob).hexdigest()})
    )
    monkeypatch.setenv("TINYGAN_CACHE", str(tmp_path))
    cache = tmp_path / "mnist"
    cache.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    stale = cache / f".{name}.{child.pid}.k9x_2a.tmp"
    stale.write_bytes(blob[:10])
    os.utime(stale, (time.time() - 60, time.time() - 60))
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(blob))
    assert data._download(data._MNIST, name) == cache / name
    assert sorted(os.listdir(cache)) == [name]
