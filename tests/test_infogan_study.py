"""bench/infogan_study.py, the multi-seed study driver: its flags are checked and a run's folder
is made only when that run starts (the runs themselves are the example's, tested elsewhere)."""

from __future__ import annotations

import importlib
import signal

import pytest

from .conftest import ROOT


@pytest.fixture
def study(monkeypatch):
    """The driver's module, with nothing to be trained or started for real."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    module = importlib.import_module("infogan_study")

    def refuse(*args, **kwargs):
        raise AssertionError("the study went on to train or start a run")

    monkeypatch.setattr(module, "ensure_classifier", refuse)
    monkeypatch.setattr(module.subprocess, "Popen", refuse)
    return module


def test_ctrl_c_while_the_classifier_trains_leaves_no_folder(study, tmp_path, monkeypatch,
                                                             capsys):  # fmt: skip
    """Regression (issue 24): the seeds' folders were made before the scoring classifier was
    trained, so a Ctrl-C then left folders that the rerun refused ("holds a run"), after a
    traceback."""

    def ctrl_c(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(study, "ensure_classifier", ctrl_c)
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    runs = str(tmp_path / "runs")  # --data-dir: any folder, the classifier never loads
    argv = ["--recipe", "paper", "--seeds", "0-1", "--runs", runs, "--data-dir", str(tmp_path)]
    assert study.main(argv) == 130
    assert "interrupted" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()  # the same command runs again as if never started
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--recipe", "consistency", "--consistency", "nan"],
         "argument --consistency: must be a finite number > 0; got nan"),
        (["--recipe", "consistency", "--consistency=-1"],
         "argument --consistency: must be a finite number > 0; got -1.0"),
        (["--recipe", "consistency", "--consistency", "0"],
         "argument --consistency: must be a finite number > 0; got 0.0"),
        (["--recipe", "paper", "--seeds", "4-0"],
         "argument --seeds: the range 4-0 is reversed (write 0-4); got '4-0'"),
        (["--recipe", "paper", "--seeds", "0,3-1"],
         "argument --seeds: the range 3-1 is reversed (write 1-3); got '0,3-1'"),
        (["--recipe", "paper", "--threads=-1"], "argument --threads: must be an int >= 0; got -1"),
        (["--recipe", "paper", "--steps", "0"], "argument --steps: must be an int >= 1; got 0"),
        (["--recipe", "paper", "--split", "tset"], "argument --split: invalid choice: 'tset'"),
        (["--recipe", "paper", "--data-dir", "{tmp}/nowhere"],
         "argument --data-dir: no folder {tmp}/nowhere"),
    ],
)  # fmt: skip
def test_bad_flags_are_refused_before_any_folder(flags, message, study, tmp_path, capsys):
    """Regression (issue 24): --consistency nan or -1 (and --threads -1) made the study's
    folders and started runs that failed; --seeds 4-0 said 'expected distinct seeds >= 0'."""
    argv = [f.format(tmp=tmp_path) for f in flags] + ["--runs", str(tmp_path / "runs")]
    with pytest.raises(SystemExit) as info:
        study.main(argv)
    assert info.value.code == 2
    assert f"error: {message.format(tmp=tmp_path)}" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_run_that_cannot_start_leaves_no_record(study, tmp_path, monkeypatch):
    """(The folder's study.json was written before the process started, so a failed start left
    a folder that a rerun refused.)"""

    def cannot(*args, **kwargs):
        raise OSError("no such interpreter")

    monkeypatch.setattr(study.subprocess, "Popen", cannot)
    out = tmp_path / "seed0"
    with pytest.raises(OSError, match="no such interpreter"):
        study.launch(["python", "example.py"], out, {}, resume=False)
    assert sorted(p.name for p in out.iterdir()) == ["log.txt"]  # no study.json: no run
