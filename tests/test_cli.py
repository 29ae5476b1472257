"""The examples' command line (tinygan.cli): every flag checked before data is read or a folder
created, runs never overwriting runs, and expected errors as one ``error:`` line."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error

import numpy as np
import pytest

from tinygan import backend, cli, data, runner
from tinygan.checkpoints import NonFiniteError
from tinygan.cli import CommandError, UsageError
from tinygan.serialization import CheckpointError, load

from .conftest import ROOT
from .test_distributed_mpi import MPIEXEC
from .test_distributed_mpi import _missing as mpi_missing


@pytest.fixture
def no_data(monkeypatch):
    """Any attempt to read a dataset fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the data was loaded before the flags were checked")

    monkeypatch.setattr(data, "_load", refuse)


# (example, flags, the error's message): each a flag the examples accepted, or checked only
# after loading the data or after training (issue 14)
BAD_FLAGS = [
    ("infogan_mnist", ["--steps", "0"], "argument --steps: must be an int >= 1; got 0"),
    ("infogan_mnist", ["--steps", "ten"], "argument --steps: expected an int; got 'ten'"),
    ("infogan_mnist", ["--batch-size", "-1"], "argument --batch-size: must be an int >= 1; got -1"),
    ("infogan_mnist", ["--eval-samples", "0"], "argument --eval-samples: must be an int >= 1"),
    ("infogan_mnist", ["--eval-samples", "-5"], "argument --eval-samples: must be an int >= 1"),
    ("infogan_mnist", ["--lambda-cat", "nan"],
     "argument --lambda-cat: must be a finite number >= 0; got nan"),
    ("infogan_mnist", ["--lambda-cont=-inf"], "argument --lambda-cont: must be a finite"),
    ("infogan_mnist", ["--seed", "-1"], "argument --seed: must be an int >= 0; got -1"),
    ("infogan_mnist", ["--checkpoint-every", "0"], "argument --checkpoint-every: must be an int"),
    ("infogan_mnist", ["--classifier-steps", "0"], "argument --classifier-steps: must be an int"),
    ("infogan_mnist", ["--compare", "{tmp}/nowhere"], "argument --compare: no folder"),
    ("infogan_mnist", ["--compare", "{tmp}"], "argument --compare: no history.json in"),
    ("infogan_mnist", ["--data-dir", "{tmp}/nowhere"], "argument --data-dir: no folder"),
    ("infogan_mnist", ["--resume", "--overwrite"], "--resume continues the run in --out"),
    ("infogan_mnist", ["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    ("dcgan_mnist", ["--width", "0"], "argument --width: must be an int >= 1; got 0"),
    ("wgan_mnist", ["--clip-value", "0"], "argument --clip-value: must be a finite number > 0"),
    ("wgan_mnist", ["--n-critic", "0"], "argument --n-critic: must be an int >= 1; got 0"),
    ("wgan_mnist", ["--lr", "inf"], "argument --lr: must be a finite number > 0; got inf"),
    ("fgan_mnist", ["--divergence", "kl2"], "argument --divergence: invalid choice: 'kl2'"),
    ("bigan_mnist", ["--latent-dim", "0"], "argument --latent-dim: must be an int >= 1; got 0"),
    ("vae_mnist", ["--latent-dim", "-2"], "argument --latent-dim: must be an int >= 1; got -2"),
    ("vae_mnist", ["--classifier", "{tmp}"], "--classifier {tmp} is a folder"),
    ("autoencoder_mnist", ["--rho", "1.5"], "argument --rho: must be a finite number in (0, 1)"),
    ("autoencoder_mnist", ["--corruption", "1"], "argument --corruption: must be a finite"),
    ("autoencoder_mnist", ["--hidden", "12", "0"], "argument --hidden: must be an int >= 1"),
    ("autoencoder_mnist", ["--arch", "conv", "--hidden", "4", "4", "4"],
     "image_size 28 is not divisible by 2**3"),
    ("density_mnist", ["--widths", "1"], "argument --widths: must be an int >= 2; got 1"),
    ("density_mnist", ["--knn", "5", "0"], "argument --knn: must be an int >= 1; got 0"),
    ("density_mnist", ["--points", "100"], "argument --points: must be an int >= 256; got 100"),
    ("sparse_coding_mnist", ["--patch", "29"], "argument --patch: must be an int in [1, 28]"),
    ("sparse_coding_mnist", ["--eta", "nan"], "argument --eta: must be a finite number >= 0"),
    ("compare_features", ["--labels", "5"], "argument --labels: must be an int >= 10; got 5"),
    ("compare_features", ["--vae", "{tmp}"], "argument --vae: no checkpoint.npz in {tmp}"),
    ("compare_features", ["--only", "pixels,vae"], "--only ['vae']: not among"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "flags", "message"), BAD_FLAGS)
def test_bad_flags_are_refused_before_data_or_folders(name, flags, message, tmp_path, example,
                                                       no_data):  # fmt: skip
    """Regression (issue 14): --eval-samples 0 or -5, --compare and --classifier were checked
    only after training, bad --steps / --batch-size after loading the data (leaving an empty
    --out), --lambda-cat nan not at all."""
    out = tmp_path / "run"
    argv = [f.format(tmp=tmp_path) for f in flags] + ["--out", str(out)]
    with pytest.raises(UsageError, match=re.escape(message.format(tmp=tmp_path))):
        example(name).main(argv)
    assert not out.exists()


WITH_OUT = ["infogan_mnist", "vae_mnist", "autoencoder_mnist", "density_mnist",
            "sparse_coding_mnist", "compare_features"]  # fmt: skip


@pytest.mark.parametrize("name", WITH_OUT)
def test_an_out_holding_a_run_is_refused(name, tmp_path, example, no_data):
    """Regression (issue 14): a run without --resume into an --out holding a checkpoint
    replaced it (and --out has a default: the README's command run twice lost the first run)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    resumable = name not in ("density_mnist", "sparse_coding_mnist", "compare_features")
    offer = "continue it with --resume, replace it" if resumable else "replace it"
    with pytest.raises(UsageError) as info:
        example(name).main(["--out", str(out)])
    assert str(info.value) == (
        f"--out {out} holds a run (metrics.json); {offer} with --overwrite, or choose another --out"
    )
    assert (out / "metrics.json").read_text() == "{}" and (out / "notes.txt").exists()


def test_overwrite_removes_only_the_old_runs_files(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in ["checkpoint.npz", "history.json", "metrics.json", "layer2.npz", "notes.txt"]:
        (out / name).write_text("old")
    args = cli.parser("").parse_args([])
    args.out, args.overwrite, args.resume = str(out), True, False
    cli.check_out(args)
    with runner.make_out(args) as made:
        assert made == out
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "run.lock"]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_overwrite_removes_the_old_run_on_rank_0_only(tmp_path, monkeypatch):
    """Regression (issue 15): under mpiexec every rank removed the old run's files, and the
    rank that came second failed with FileNotFoundError."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("old")
    args = cli.parser("").parse_args([])
    args.out, args.overwrite, args.resume = str(out), True, False
    monkeypatch.setattr(runner.distributed, "is_main", lambda: False)
    with runner.make_out(args) as made:
        assert made == out and (out / "metrics.json").exists()
        assert not (out / "run.lock").exists()  # the lock too is rank 0's
    monkeypatch.setattr(runner.distributed, "is_main", lambda: True)
    with runner.make_out(args) as made:
        assert made == out and not (out / "metrics.json").exists()


def can_write(folder) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("where", ["file", "under a file", "read-only", "dangling link"])
def test_an_out_that_cannot_be_written_is_refused_before_anything(where, tmp_path, example,
                                                                   no_data):  # fmt: skip
    """Regression (issue 14): a read-only --out lost the work up to the first checkpoint; an
    --out naming a file gave a traceback. A link to a missing folder printed "[Errno 17] File
    exists" (from review)."""
    (tmp_path / "a_file").write_text("x")
    if where == "dangling link":
        out = tmp_path / "link"
        out.symlink_to(tmp_path / "missing")
        expected = f"is a link to {tmp_path / 'missing'}, which does not exist"
    elif where == "read-only":
        mine = tmp_path / "ro"
        mine.mkdir()
        mine.chmod(0o555)
        # root may write there anyway: then a system folder nobody can create files in
        parent = next((p for p in (mine, "/sys", "/proc") if not can_write(p)), None)
        if parent is None:
            pytest.skip("no folder that this user cannot write to")
        out, expected = os.path.join(parent, "run"), "cannot be written"
    else:
        out = tmp_path / "a_file" if where == "file" else tmp_path / "a_file" / "run"
        expected = "is a file"
    with pytest.raises(UsageError, match=expected):
        example("infogan_mnist").main(["--out", str(out)])


def test_cuda_without_a_gpu_is_one_error_before_the_data(monkeypatch, example, no_data, tmp_path,
                                                         capsys):  # fmt: skip
    """Regression (issue 14): --device cuda without CuPy printed a traceback."""
    monkeypatch.setattr(backend, "cuda_available", lambda: False)
    out = tmp_path / "run"
    argv = ["--device", "cuda", "--out", str(out)]
    with pytest.raises(CommandError, match=r"device 'cuda' requested .* run with --device cpu"):
        example("vae_mnist").main(argv)
    assert cli.run(example("vae_mnist").main, argv) == 1
    assert not out.exists()
    err = capsys.readouterr().err
    assert err.startswith("error: device 'cuda' requested") and err.count("\n") == 1


def test_a_bad_tinygan_compiled_is_one_line(monkeypatch, tmp_path, example, capsys):
    """It was a traceback from the first kernel of the first step."""
    monkeypatch.setenv("TINYGAN_COMPILED", "yes")
    argv = ["--out", str(tmp_path / "run"), "--steps", "1"]
    assert cli.run(example("infogan_mnist").main, argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: TINYGAN_COMPILED must be 0 (off) or 1 (on, the default); got 'yes'"]


def test_the_offline_default_is_one_line_naming_data_dir(monkeypatch, tmp_path, example, capsys):
    """Regression (issue 14): ``python examples/infogan_mnist.py`` offline printed a 30-line
    chained traceback whose hint said root= instead of --data-dir, and created --out."""

    def offline(url, timeout=None):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    monkeypatch.setenv("TINYGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TINYGAN_DATA", raising=False)
    out = tmp_path / "run"
    assert cli.run(example("infogan_mnist").main, ["--out", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if not line.startswith("tinygan: downloading")] == err[-1:]
    assert err[-1].startswith("error: MNIST 'train' not found") and "--data-dir" in err[-1]
    assert not out.exists()


def test_a_folder_missing_the_labels_is_named(tmp_path, example, capsys, mnist_dir):
    """Regression (issue 14): a folder with the images but not the labels gave 'could not
    download t10k-images...'."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "t10k-images-idx3-ubyte.gz").symlink_to(
        os.path.join(mnist_dir, "mnist", "t10k-images-idx3-ubyte.gz")
    )
    argv = ["--split", "test", "--data-dir", str(mine), "--out", str(tmp_path / "run")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data, "_download", lambda ds, name: (_ for _ in ()).throw(
            data.DownloadError(f"could not download {name} (offline)")))  # fmt: skip
        mp.setenv("TINYGAN_CACHE", str(tmp_path / "cache"))
        assert cli.run(example("vae_mnist").main, argv) == 1
    err = capsys.readouterr().err
    assert f"{mine} has t10k-images-idx3-ubyte.gz but not t10k-labels-idx1-ubyte.gz" in err
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_damaged_data_is_one_line_naming_the_file(tmp_path, example, capsys, mnist_dir):
    mine = tmp_path / "mine"
    mine.mkdir()
    images = mine / "t10k-images-idx3-ubyte.gz"
    source = os.path.join(mnist_dir, "mnist", "t10k-images-idx3-ubyte.gz")
    with open(source, "rb") as f:
        images.write_bytes(f.read()[:5000])  # a download cut short
    labels = os.path.join(mnist_dir, "mnist", "t10k-labels-idx1-ubyte.gz")
    (mine / "t10k-labels-idx1-ubyte.gz").symlink_to(labels)
    argv = ["--split", "test", "--data-dir", str(mine), "--out", str(tmp_path / "run")]
    assert cli.run(example("wgan_mnist").main, argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {images}: corrupt gzip stream")
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_a_damaged_classifier_is_reported_before_the_data(tmp_path, example, no_data):
    """Regression (issue 14): --classifier was read only after training."""
    clf = tmp_path / "clf.npz"
    clf.write_text("not weights")
    argv = ["--classifier", str(clf), "--out", str(tmp_path / "run")]
    with pytest.raises(CheckpointError, match=rf"scoring classifier {clf} cannot be used"):
        example("dcgan_mnist").main(argv)
    assert not (tmp_path / "run").exists()


def test_a_baseline_history_without_info_cat_is_refused(tmp_path, example, no_data):
    run = tmp_path / "gan"
    run.mkdir()
    (run / "history.json").write_text(json.dumps([{"step": 1, "d_loss": 0.5}]))
    with pytest.raises(UsageError, match=rf"--compare {run}: .* not an InfoGAN or baseline"):
        example("infogan_mnist").main(["--compare", str(run), "--out", str(tmp_path / "o")])


def test_run_maps_errors_to_one_line_and_exit_statuses(capsys, monkeypatch):
    def failing(error):
        def main(argv):
            raise error

        return main

    monkeypatch.delenv("TINYGAN_DEBUG", raising=False)
    cases = [(UsageError("argument --x: bad"), 2), (OSError(28, "No space left on device"), 1),
             (CheckpointError("damaged\n  on two lines"), 1), (KeyboardInterrupt(), 130),
             (NonFiniteError("step 3: nan"), 1)]  # fmt: skip
    for error, status in cases:
        assert cli.run(failing(error)) == status
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "error: argument --x: bad",
        "error: [Errno 28] No space left on device",
        "error: damaged on two lines",
        "error: interrupted",
        "error: step 3: nan (training diverged: try smaller learning rates or loss weights)",
    ]
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        cli.run(failing(ZeroDivisionError("bug")))
    monkeypatch.setenv("TINYGAN_DEBUG", "1")
    with pytest.raises(UsageError):
        cli.run(failing(UsageError("shown with its traceback")))


@pytest.mark.parametrize("debug", [False, True])
def test_a_script_prints_one_line_and_no_traceback(tmp_path, debug):
    env = {k: v for k, v in os.environ.items() if k != "TINYGAN_DEBUG"}
    if debug:
        env["TINYGAN_DEBUG"] = "1"
    script = ROOT / "examples" / "gan_mnist.py"
    done = subprocess.run([sys.executable, str(script), "--batch-size", "0"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert done.returncode == (1 if debug else 2)  # with the traceback: Python's own status
    if debug:
        assert "Traceback" in done.stderr and "UsageError" in done.stderr
    else:
        assert done.stderr == "error: argument --batch-size: must be an int >= 1; got 0\n"
    assert done.stdout == "" and not (tmp_path / "runs").exists()


# ---- the run folder's lock -----------------------------------------------------------------------
HOLD = """
import sys, time
from pathlib import Path
from tinygan import cli
with cli.lock_folder(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def holder():
    """``holder(folder)``: a process that holds the lock of ``folder`` until it is killed."""
    procs = []

    def start(folder):
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
        procs.append(proc)
        assert proc.stdout.readline() == "locked\n"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def quick_infogan(out, data):
    """Flags of a short InfoGAN run into ``out`` (the lock is taken before it trains)."""
    return ["--split", "test", "--data-dir", data, "--steps", "2", "--batch-size", "8",
            "--select-every", "1", "--no-progress", "--eval-samples", "10",
            "--classifier-steps", "1", "--classifier", str(out.parent / "clf.npz"),
            "--out", str(out)]  # fmt: skip


@pytest.mark.parametrize("how", [[], ["--resume"], ["--overwrite"]])
def test_a_second_live_run_on_one_out_is_refused(how, tmp_path, example, holder, mnist_dir,
                                                 capsys):  # fmt: skip
    """Regression (issue 24): two runs on one --out at the same time both exited 0, the folder
    held one run's files and the other reported its selected numbers from the first's best.npz.
    --overwrite must not remove the live run's files either."""
    out = tmp_path / "run"
    out.mkdir()
    live = holder(out)
    (out / "notes.txt").write_text("the live run's")
    argv = quick_infogan(out, mnist_dir) + how
    with pytest.raises(UsageError) as info:
        example("infogan_mnist").main(argv)
    message = str(info.value)
    assert message.startswith(
        f"--out {out} is in use by another run (pid {live.pid} on host {socket.gethostname()}, "
        "started 2"
    )
    assert message.endswith(
        f"holding {out / 'run.lock'}); wait for it to end, or choose another --out"
    )
    assert cli.run(example("infogan_mnist").main, argv) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "run.lock"]
    assert json.loads((out / "run.lock").read_text())["pid"] == live.pid


def test_a_run_that_ended_while_this_one_started_is_not_overwritten(tmp_path):
    """(From review: the folder was checked when the flags were read, not again once the lock
    was held, so a run that started and ended on --out while this one loaded its data had its
    files overwritten.)"""
    out = tmp_path / "run"
    args = cli.parser("").parse_args([])
    args.out, args.overwrite, args.resume = str(out), False, False
    cli.check_out(args)  # empty: fine when the flags are read
    out.mkdir()
    (out / "checkpoint.npz").write_bytes(b"the other run's")  # ... which then ran and ended
    with pytest.raises(UsageError, match=r"holds a run \(checkpoint.npz\)"), runner.make_out(args):
        pass
    assert (out / "checkpoint.npz").read_bytes() == b"the other run's"
    assert not (out / "run.lock").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_the_lock_of_a_dead_run_is_taken_over(signum, tmp_path, holder, capsys):
    out = tmp_path / "run"
    out.mkdir()
    dead = holder(out)
    dead.send_signal(signum)
    dead.wait()
    assert json.loads((out / "run.lock").read_text())["pid"] == dead.pid  # left behind
    args = cli.parser("").parse_args([])
    args.out, args.overwrite, args.resume = str(out), False, False
    cli.check_out(args)  # the lock is no run's file
    with runner.make_out(args):
        assert json.loads((out / "run.lock").read_text())["pid"] == os.getpid()
    assert not (out / "run.lock").exists()
    printed = capsys.readouterr().out
    assert printed.startswith(f"{out / 'run.lock'}: taking over the lock of pid {dead.pid} on host")
    assert printed.endswith(", which has ended\n")


def test_a_lock_from_another_host_is_not_taken_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    record = '{"host": "elsewhere", "pid": 4242, "started": "2026-12-01 10:00:00"}'
    (out / "run.lock").write_text(record)
    with pytest.raises(UsageError) as info, cli.lock_folder(out):
        pass
    assert str(info.value) == (
        f"--out {out} is locked by pid 4242 on host elsewhere, started 2026-12-01 10:00:00, "
        f"which cannot be checked from {socket.gethostname()}; if that run has ended, remove "
        f"{out / 'run.lock'}"
    )
    assert (out / "run.lock").read_text() == record


@pytest.mark.parametrize("error", [None, RuntimeError("a bug"), KeyboardInterrupt()])
def test_the_lock_is_released_on_every_exit(error, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    outcome = contextlib.suppress(type(error)) if error else contextlib.nullcontext()
    with outcome, cli.lock_folder(out) as lock:
        with pytest.raises(UsageError, match="in use by another run"), cli.lock_folder(out):
            pass  # held: a second holder, in this same process, is refused
        if error is not None:
            raise error
    assert not lock.exists()
    with cli.lock_folder(out):  # free again
        pass


def test_a_run_stopped_by_sigterm_exits_143(tmp_path, monkeypatch):
    """(From review: SIGTERM, once it let the run save, exited 130 as for Ctrl-C; schedulers
    read 143, 128 + SIGTERM, as a job they ended.)"""
    from tinygan.train import Interrupted

    def stopped(*args, **kwargs):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(runner, "train", stopped)
    args = argparse.Namespace(out=str(tmp_path), steps=3, seed=0, checkpoint_every=1,
                              resume=False, no_progress=True)  # fmt: skip
    assert runner.fit(None, np.zeros((4, 1)), args, 2) == 143
    assert cli.run(lambda argv: runner.fit(None, np.zeros((4, 1)), args, 2), []) == 143

    def main(argv):
        raise Interrupted(signal.SIGTERM)

    assert cli.run(main, []) == 143


def test_an_example_releases_the_lock_when_interrupted(tmp_path, example, mnist_dir, monkeypatch):
    out = tmp_path / "run"

    def ctrl_c(*args, **kwargs):
        assert (out / "run.lock").exists()
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "evaluate_samples", ctrl_c)
    assert cli.run(example("infogan_mnist").main, quick_infogan(out, mnist_dir)) == 130
    assert (out / "checkpoint.npz").exists() and not (out / "run.lock").exists()


MAKE_OUT = """
import sys
from tinygan import cli, distributed, runner


def main(argv):
    args = cli.parser("").parse_args([])
    args.out, args.overwrite, args.resume = sys.argv[1], False, False
    with runner.make_out(args):
        print(f"rank {distributed.rank()} went on", file=sys.stderr)
    return 0


sys.exit(cli.run(main))
"""


@pytest.mark.skipif(mpi_missing() is not None, reason=str(mpi_missing()))
def test_under_mpiexec_every_rank_stops_at_a_locked_out(tmp_path):
    """Only rank 0 takes the lock; were its refusal its own, the other ranks would go on into
    the run and wait for rank 0 until the collectives' deadline."""
    out = tmp_path / "run"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_SIZE", "PMI_RANK")}
    with cli.lock_folder(out):
        done = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", MAKE_OUT, str(out)],
                              capture_output=True, text=True, timeout=300, cwd=ROOT,
                              env={**env, "TINYGAN_DIST_TIMEOUT": "120"})  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"error: --out {out} is in use by another run (pid {os.getpid()}" in done.stderr
    assert "went on" not in done.stderr


def test_a_finished_run_resumed_with_fewer_steps_or_without_best_npz(tmp_path, example, mnist_dir,
                                                                     capsys):  # fmt: skip
    """Regression (issue 24): --resume --steps 1 on a run at step 2 was accepted (metrics.json
    then claimed 1 step beside a 2-step history); a finished run whose best.npz was lost could
    not be evaluated again, though its checkpoint holds the selected state (the last step's)."""
    infogan_mnist = example("infogan_mnist").main
    out = tmp_path / "run"
    argv = [*quick_infogan(out, mnist_dir), "--select-every", "2"]  # one score: at step 2
    assert infogan_mnist(argv) == 0
    metrics = (out / "metrics.json").read_text()
    capsys.readouterr()
    assert cli.run(infogan_mnist, [*argv, "--resume", "--steps", "1"]) == 1
    assert capsys.readouterr().err.startswith(
        f"error: cannot resume from {out / 'checkpoint.npz'}: it is at step 2, after the last "
        "step asked for (1); ask for 2 steps or more (in the examples: --steps 2)"
    )
    assert (out / "metrics.json").read_text() == metrics
    (out / "best.npz").unlink()
    assert infogan_mnist([*argv, "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["selected"]["step"] == 2
    assert int(load(out / "best.npz")["select/step"]) == 2


def test_a_folder_that_cannot_be_locked_is_one_error(tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(cli.fcntl, "flock", no_locks)
    with pytest.raises(UsageError) as info, cli.lock_folder(tmp_path):
        pass
    assert str(info.value) == (
        f"--out {tmp_path}: {tmp_path / 'run.lock'} cannot be locked (No locks available); "
        "choose an --out on a file system that supports flock"
    )


def test_a_resumed_run_that_trains_on_drops_its_old_metrics(tmp_path, example, mnist_dir,
                                                            monkeypatch):  # fmt: skip
    """Regression (issue 24, of the kind of item 6): a finished 2-step run resumed with --steps 3
    and stopped in its evaluation kept the 2-step metrics.json beside a 3-step history.json and
    checkpoint (and compare_features took it for a finished run)."""
    infogan_mnist = example("infogan_mnist").main
    out = tmp_path / "run"
    argv = [*quick_infogan(out, mnist_dir), "--select-every", "0"]
    assert infogan_mnist(argv) == 0
    assert json.loads((out / "metrics.json").read_text())["flags"]["steps"] == 2

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(runner, "evaluate_samples", ctrl_c)
        assert cli.run(infogan_mnist, [*argv, "--resume", "--steps", "3"]) == 130
    assert len(json.loads((out / "history.json").read_text())) == 3
    assert not (out / "metrics.json").exists()
    assert infogan_mnist([*argv, "--resume", "--steps", "3"]) == 0  # evaluated again
    assert json.loads((out / "metrics.json").read_text())["flags"]["steps"] == 3
