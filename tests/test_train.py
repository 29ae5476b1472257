"""The training loop: determinism, exact resume, non-finite losses, Ctrl-C."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from tinygan.checkpoints import (
    BestCheckpoint,
    NonFiniteLossError,
    NonFiniteStateError,
    fingerprint,
)
from tinygan.models import InfoGAN, LatentSpec, MLPDiscriminator, MLPGenerator
from tinygan.serialization import CheckpointError, load, save
from tinygan.train import Interrupted, batch_indices, train


def model(seed=0):
    spec = LatentSpec(categorical=(3,), continuous=1, noise=2)
    rng = np.random.default_rng(seed)
    return InfoGAN(spec, generator=MLPGenerator(spec.dim, 2, hidden=16, rng=rng),
                   discriminator=MLPDiscriminator(2, spec.q_dim, hidden=16, rng=rng), seed=seed)  # fmt: skip


def copied(state):
    return {k: np.copy(v) for k, v in state.items()}


def without_time(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


DATA = np.random.default_rng(0).standard_normal((100, 2)).astype(np.float32)


def test_same_seed_same_run():
    a, b = model(), model()
    ha = train(a, DATA, steps=5, batch_size=20, seed=3, progress=False)
    hb = train(b, DATA, steps=5, batch_size=20, seed=3, progress=False)
    assert without_time(ha) == without_time(hb)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])


def test_batches_cover_each_epoch_once():
    idx = np.concatenate([batch_indices(100, 20, 7, s) for s in range(5)])
    assert sorted(idx) == list(range(100))
    assert not np.array_equal(batch_indices(100, 20, 7, 0), batch_indices(100, 20, 7, 5))


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tmp_path):
    whole = model()
    h_whole = train(whole, DATA, steps=8, batch_size=20, seed=1, progress=False)
    ckpt = tmp_path / "ckpt.npz"
    part = model()
    train(part, DATA, steps=5, batch_size=20, seed=1, checkpoint=ckpt, progress=False)
    resumed = model(seed=99)  # different initial weights: everything must come from the file
    h_resumed = train(
        resumed, DATA, steps=8, batch_size=20, seed=1, checkpoint=ckpt, resume=True, progress=False
    )
    assert without_time(h_resumed) == without_time(h_whole)
    assert h_resumed[-1]["seconds"] >= h_resumed[5]["seconds"] > 0
    for k, v in whole.state_dict().items():
        np.testing.assert_array_equal(v, resumed.state_dict()[k], err_msg=k)


class Faulty:
    """Wraps a model; at step ``at`` its step returns NaN, or Ctrl-C (SIGTERM) arrives
    mid-step."""

    def __init__(self, inner, at, fault):
        self.inner, self.at, self.fault, self.steps = inner, at, fault, 0

    def train_step(self, batch, rng):
        self.steps += 1
        if self.steps == self.at and self.fault in ("sigint", "sigterm", "sigterm twice"):
            signum = signal.SIGINT if self.fault == "sigint" else signal.SIGTERM
            for _ in range(2 if self.fault.endswith("twice") else 1):
                signal.raise_signal(signum)  # as if Ctrl-C (or kill) came now
        metrics = self.inner.train_step(batch, rng)
        if self.steps == self.at and self.fault == "nan":
            metrics["g_loss"] = float("nan")
        return metrics

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt.npz"
    with pytest.raises(NonFiniteLossError, match=r"step 6: non-finite \{'g_loss': nan\}"):
        train(Faulty(model(), 6, "nan"), DATA, steps=10, batch_size=20, checkpoint=ckpt,
              checkpoint_every=4, progress=False)  # fmt: skip
    assert int(load(ckpt)["train/step"]) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]


def killed(signum, frame):
    """Stands in for SIGTERM's default action (the process dies at once, pytest with it)."""
    raise RuntimeError("killed by SIGTERM without saving")


@pytest.mark.parametrize("fault", ["sigint", "sigterm", "sigterm twice"])
def test_ctrl_c_finishes_the_step_saves_and_resumes_exactly(fault, tmp_path):
    """Regression (issue 24) for SIGTERM (``kill``, a scheduler ending the job): it ended the run
    at once, losing every step since the last checkpoint. A second SIGTERM (the scheduler's and
    mpiexec's) must not stop it before it saves either (from review); the run stops with
    ``Interrupted``, naming the signal for the exit status."""
    ckpt = tmp_path / "ckpt.npz"
    previous = signal.signal(signal.SIGTERM, killed)
    try:
        with pytest.raises(Interrupted) as info:
            train(Faulty(model(), 3, fault), DATA, steps=8, batch_size=20, seed=1,
                  checkpoint=ckpt, checkpoint_every=100, progress=False)  # fmt: skip
        assert info.value.signum == (signal.SIGINT if fault == "sigint" else signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is killed  # restored
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert int(load(ckpt)["train/step"]) == 3
    resumed = model(seed=5)
    train(
        resumed, DATA, steps=8, batch_size=20, seed=1, checkpoint=ckpt, resume=True, progress=False
    )
    whole = model()
    train(whole, DATA, steps=8, batch_size=20, seed=1, progress=False)
    for k, v in whole.state_dict().items():
        np.testing.assert_array_equal(v, resumed.state_dict()[k], err_msg=k)


def test_resume_with_other_settings_is_refused(tmp_path):
    ckpt = tmp_path / "ckpt.npz"
    train(model(), DATA, steps=2, batch_size=20, seed=1, checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match=r"'seed': 1.*'seed': 2"):
        train(model(), DATA, steps=4, batch_size=20, seed=2, checkpoint=ckpt, resume=True)


def test_bad_arguments():
    with pytest.raises(ValueError, match="steps must be an int >= 1; got 0"):
        train(model(), DATA, steps=0, batch_size=20)
    with pytest.raises(ValueError, match="batch_size 200 is larger than the data"):
        train(model(), DATA, steps=1, batch_size=200)
    with pytest.raises(ValueError, match="seed must be an int >= 0; got -1"):
        train(model(), DATA, steps=1, batch_size=20, seed=-1)
    with pytest.raises(TypeError, match="data_name must be a str"):
        train(model(), DATA, steps=1, batch_size=20, data_name=3)


@pytest.mark.parametrize("name", ["steps", "batch_size", "checkpoint_every"])
def test_bools_are_not_step_counts(name):
    """Regression (issue 14): train(steps=True) was taken as one step (bool is an int)."""
    kwargs = {"steps": 2, "batch_size": 20, "checkpoint_every": 5, name: True}
    with pytest.raises(TypeError, match=f"{name} must be an int; got bool True"):
        train(model(), DATA, progress=False, **kwargs)


def test_a_blow_up_with_finite_losses_is_not_saved(tmp_path):
    """Regression (issue 14): raising the learning rate to 1e6 after step 5 filled Adam's
    second moments with inf while every loss stayed finite, and the step-10 checkpoint
    replaced the good one of step 5."""
    ckpt = tmp_path / "ckpt.npz"
    m = model()

    def boost(step, metrics):
        if step == 5:
            m.opt_g.lr = m.opt_d.lr = 1e6

    good = {}

    def remember(step, metrics):
        boost(step, metrics)
        if step == 6:  # the step-5 checkpoint, as written
            good["bytes"] = ckpt.read_bytes()

    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(NonFiniteStateError) as info:
        train(m, DATA, steps=10, batch_size=20, checkpoint=ckpt, checkpoint_every=5,
              on_step=remember, progress=False)  # fmt: skip
    message = str(info.value)
    assert message.startswith("step 10: the model's state is not finite: 'opt_g/0.exp_avg_sq'")
    assert "the last good checkpoint, step 5, is kept in" in message
    assert ckpt.read_bytes() == good["bytes"] and int(load(ckpt)["train/step"]) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]


def test_non_finite_state_is_caught_at_the_end_without_a_checkpoint():
    m = model()

    def poison(step, metrics):  # after the last step: its losses were finite
        if step == 3:
            m.opt_d.state[0]["exp_avg_sq"][0] = np.inf

    with pytest.raises(NonFiniteStateError) as info:
        train(m, DATA, steps=3, batch_size=20, on_step=poison, progress=False)
    assert str(info.value) == (
        "step 3: the model's state is not finite: 'opt_d/0.exp_avg_sq' (2 of 32 values, e.g. "
        "inf); training stopped, nothing saved"
    )


def test_a_stop_before_any_checkpoint_does_not_point_at_one(tmp_path):
    """Regression (issue 14): a NaN at step 1 said 'the last good checkpoint is <path>', a file
    that did not exist."""
    ckpt = tmp_path / "ckpt.npz"
    with pytest.raises(NonFiniteLossError) as info:
        train(Faulty(model(), 1, "nan"), DATA, steps=5, batch_size=20, checkpoint=ckpt,
              progress=False)  # fmt: skip
    assert str(info.value).endswith(f"this run wrote no checkpoint ({ckpt} untouched)")
    assert not ckpt.exists()


def test_resume_with_other_data_is_refused_naming_both(tmp_path):
    """Regression (issue 14): --resume accepted other images of the same size."""
    ckpt = tmp_path / "ckpt.npz"
    train(model(), DATA, steps=2, batch_size=20, checkpoint=ckpt, progress=False,
          data_name="ring train[:100]")  # fmt: skip
    other = DATA[::-1].copy()  # the same images in another order: other data
    old, new = fingerprint(DATA)[:12], fingerprint(other)[:12]
    with pytest.raises(
        CheckpointError,
        match=rf"trained on ring train\[:100\] \(sha256 {old}\), but this run's data is "
        rf"ring test\[:100\] \(sha256 {new}\)",
    ):
        train(model(), other, steps=4, batch_size=20, checkpoint=ckpt, resume=True,
              progress=False, data_name="ring test[:100]")  # fmt: skip
    with pytest.raises(
        CheckpointError,
        match=rf"on ring train\[:100\] \(sha256 {old}\), but this run's data is sha256 {new};",
    ):
        train(model(), other, steps=4, batch_size=20, checkpoint=ckpt, resume=True,
              progress=False)  # fmt: skip
    assert int(load(ckpt)["train/step"]) == 2


def test_resume_into_another_model_names_the_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt.npz"
    train(model(), DATA, steps=2, batch_size=20, checkpoint=ckpt, progress=False)
    spec = LatentSpec(categorical=(3,), continuous=1, noise=2)
    rng = np.random.default_rng(0)
    wider = InfoGAN(spec, generator=MLPGenerator(spec.dim, 2, hidden=8, rng=rng),
                    discriminator=MLPDiscriminator(2, spec.q_dim, hidden=16, rng=rng))  # fmt: skip
    with pytest.raises(
        CheckpointError, match=rf"cannot resume from {ckpt}: it does not fit this model"
    ):
        train(wider, DATA, steps=4, batch_size=20, checkpoint=ckpt, resume=True, progress=False)


def test_resume_past_the_steps_asked_for_is_refused_naming_both(tmp_path):
    """Regression (issue 24): resuming a checkpoint at step 4 with steps=3 was accepted (the
    example's metrics.json then claimed 3 steps beside a 4-step history)."""
    ckpt = tmp_path / "ckpt.npz"
    train(model(), DATA, steps=4, batch_size=20, seed=1, checkpoint=ckpt, progress=False)
    m = model(seed=5)
    before = copied(m.state_dict())
    with pytest.raises(CheckpointError) as info:
        train(m, DATA, steps=3, batch_size=20, seed=1, checkpoint=ckpt, resume=True,
              progress=False)  # fmt: skip
    assert str(info.value).startswith(
        f"cannot resume from {ckpt}: it is at step 4, after the last step asked for (3); ask "
        "for 4 steps or more (in the examples: --steps 4)"
    )
    for k, v in m.state_dict().items():  # refused before anything was loaded
        np.testing.assert_array_equal(v, before[k], err_msg=k)


# ---- the selected state (BestCheckpoint) on resume ---------------------------------------------
def scripted(path, scores, every=2):
    """A selection whose scores are ``scores``, in the order of its evaluations."""
    values = iter(scores)
    return BestCheckpoint(lambda: next(values), path, every)


def selected_run(folder, scores, seed=1, resume=False):
    """Six steps, selection every 2 steps (``scores`` at steps 2, 4, 6), into ``folder``; the
    model and its BestCheckpoint."""
    m = model()
    best = scripted(folder / "best.npz", scores)
    train(m, DATA, steps=6, batch_size=20, seed=seed, checkpoint=folder / "ckpt.npz",
          resume=resume, progress=False, best=best, data_name="ring")  # fmt: skip
    return m, best


def test_the_selected_state_records_its_run(tmp_path):
    snapshots = {}
    best = scripted(tmp_path / "best.npz", [1.0, 3.0, 2.0])
    m = model()
    train(m, DATA, steps=6, batch_size=20, seed=1, progress=False, best=best, data_name="ring",
          on_step=lambda s, _: snapshots.update({s: copied(m.state_dict())}))  # fmt: skip
    saved = load(tmp_path / "best.npz")
    assert int(saved["select/step"]) == 4 and float(saved["select/score"]) == 3.0
    assert int(saved["train/seed"]) == 1 and int(saved["train/batch_size"]) == 20
    assert str(saved["train/data"]) == "ring" and str(saved["train/recipe"]) == json.dumps(
        m.recipe(), sort_keys=True
    )
    assert str(saved["train/data_sha256"]) == fingerprint(DATA)
    for k, v in best.load().items():
        np.testing.assert_array_equal(v, snapshots[4][k], err_msg=k)


def test_another_runs_selected_state_is_refused(tmp_path):
    """Regression (issue 24): best.npz was used whoever wrote it: a resumed run (and then the
    example's "selected" numbers) took another run's state for its own."""
    mine, other = tmp_path / "mine", tmp_path / "other"
    mine.mkdir()
    other.mkdir()
    selected_run(mine, [1.0, 3.0, 2.0], seed=1)
    selected_run(other, [1.0, 3.0, 2.0], seed=2)
    (mine / "best.npz").write_bytes((other / "best.npz").read_bytes())
    with pytest.raises(CheckpointError) as info:
        selected_run(mine, [], resume=True)
    message = str(info.value)
    assert message.startswith(
        f"cannot resume the selection: the selected state {mine / 'best.npz'} is another run's: "
        "it was written by a run with {'seed': 2, "
    )
    assert message.endswith(
        f"the selection chose step 4 and the checkpoint {mine / 'ckpt.npz'} is at step 6, so "
        "that state is lost; start the run again (in the examples: --overwrite), or resume it "
        "without selection (--select-every 0)"
    )
    best = scripted(mine / "best.npz", [])
    best.scores, best.run = [(4, 3.0)], {"seed": 1}
    with pytest.raises(CheckpointError, match=r"is another run's: .*'seed': 2.*'seed': 1"):
        best.load()


@pytest.mark.parametrize("how", ["missing", "damaged", "another run's", "another step"])
def test_a_lost_selected_state_of_the_checkpoints_step_is_written_again(how, tmp_path):
    """Regression (issue 24): a finished run whose best.npz was missing or damaged could not be
    evaluated again, though its checkpoint holds the selected state (the last step's)."""
    other = tmp_path / "other"
    other.mkdir()
    selected_run(other, [1.0, 2.0, 3.0], seed=2)
    m, _ = selected_run(tmp_path, [1.0, 2.0, 3.0])
    path = tmp_path / "best.npz"
    if how == "missing":
        path.unlink()
    elif how == "damaged":
        path.write_bytes(path.read_bytes()[:100])
    elif how == "another run's":
        path.write_bytes((other / "best.npz").read_bytes())
    else:  # a state of this run, but not the selected step
        state = load(path)
        state["select/step"] = np.array(2)
        save(state, path)
    _, best = selected_run(tmp_path, [], resume=True)  # finished: nothing to train
    assert best.scores == [(2, 1.0), (4, 2.0), (6, 3.0)]
    assert int(load(path)["select/step"]) == 6
    for k, v in best.load().items():
        np.testing.assert_array_equal(v, m.state_dict()[k], err_msg=k)


def test_a_selection_cannot_resume_a_checkpoint_without_one(tmp_path):
    """Regression (issue 24): --select-every K added on the resume of a run trained without
    selection gave it no scores for the steps already trained (for a finished run none at all:
    the example then failed with a TypeError)."""
    train(model(), DATA, steps=6, batch_size=20, seed=1, checkpoint=tmp_path / "ckpt.npz",
          progress=False, data_name="ring")  # fmt: skip
    with pytest.raises(CheckpointError) as info:
        selected_run(tmp_path, [], resume=True)
    assert str(info.value) == (
        f"cannot resume the selection: {tmp_path / 'ckpt.npz'} (step 6) was written by a run "
        "without one, so steps 1-6 were never scored; start the run again (in the examples: "
        "--overwrite), or resume it without selection (--select-every 0)"
    )


def test_a_selection_resumes_only_at_its_own_interval(tmp_path):
    """Regression (issue 24): a resume with another --select-every mixed the checkpoint's scores
    (every 2 steps) with the new interval's, and metrics.json named the new one."""
    selected_run(tmp_path, [1.0, 3.0, 2.0])
    best = BestCheckpoint(lambda: 0.0, tmp_path / "best.npz", 3)
    with pytest.raises(CheckpointError) as info:
        train(model(), DATA, steps=9, batch_size=20, seed=1, checkpoint=tmp_path / "ckpt.npz",
              resume=True, progress=False, best=best, data_name="ring")  # fmt: skip
    assert str(info.value).startswith(
        f"cannot resume the selection: {tmp_path / 'ckpt.npz'} scored it every 2 steps, not "
        "every 3; resume it with the same interval (in the examples: --select-every 2), or start"
    )
    assert best.scores == []


def test_a_selected_state_past_the_steps_asked_for_is_written_again(tmp_path):
    """(From review: a best.npz at a step after the resumed run's last one, which the run never
    reaches again, was accepted on resume; the selected state then failed to load only after
    training, without a remedy.)"""
    later = tmp_path / "later"
    later.mkdir()
    selected_run(later, [1.0, 2.0, 3.0])  # the same run to step 6: best.npz at step 6
    m = model()
    best = scripted(tmp_path / "best.npz", [1.0, 2.0])
    train(m, DATA, steps=4, batch_size=20, seed=1, checkpoint=tmp_path / "ckpt.npz",
          progress=False, best=best, data_name="ring")  # fmt: skip
    (tmp_path / "best.npz").write_bytes((later / "best.npz").read_bytes())
    best = scripted(tmp_path / "best.npz", [0.5])  # step 5 scores worse: step 4 stays best
    train(model(), DATA, steps=5, batch_size=20, seed=1, checkpoint=tmp_path / "ckpt.npz",
          resume=True, progress=False, best=best, data_name="ring")  # fmt: skip
    assert best.best == (4, 2.0)
    for k, v in best.load().items():
        np.testing.assert_array_equal(v, m.state_dict()[k], err_msg=k)


def test_a_selected_state_written_before_files_carried_the_record_is_read(tmp_path):
    """(From review: a best.npz of an older tinygan, with no train/... entries, was refused as
    "not a selected state of this run", though it is one: runs in progress could not go on.)"""
    m, best = selected_run(tmp_path, [1.0, 3.0, 2.0])
    path = tmp_path / "best.npz"
    save({k: v for k, v in load(path).items() if not k.startswith("train/")}, path)
    assert set(best.load()) == set(m.state_dict())
