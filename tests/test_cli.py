"""The examples' command line (tinygan.cli): every flag checked before data is read or a folder
created, runs never overwriting runs, and expected errors as one ``error:`` line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error

import pytest

from tinygan import backend, cli, data
from tinygan.cli import CommandError, UsageError
from tinygan.serialization import CheckpointError
from tinygan.train import NonFiniteError

from .conftest import ROOT


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
    assert cli.make_out(args) == out
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_overwrite_removes_the_old_run_on_rank_0_only(tmp_path, monkeypatch):
    """Regression (issue 15): under mpiexec every rank removed the old run's files, and the
    rank that came second failed with FileNotFoundError."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("old")
    args = cli.parser("").parse_args([])
    args.out, args.overwrite, args.resume = str(out), True, False
    monkeypatch.setattr(cli.distributed, "is_main", lambda: False)
    assert cli.make_out(args) == out and (out / "metrics.json").exists()
    monkeypatch.setattr(cli.distributed, "is_main", lambda: True)
    assert cli.make_out(args) == out and not (out / "metrics.json").exists()


def can_write(folder) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("where", ["file", "under a file", "read-only"])
def test_an_out_that_cannot_be_written_is_refused_before_anything(where, tmp_path, example,
                                                                   no_data):  # fmt: skip
    """Regression (issue 14): a read-only --out lost the work up to the first checkpoint; an
    --out naming a file gave a traceback."""
    (tmp_path / "a_file").write_text("x")
    if where == "read-only":
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
