"""InfoGAN's augmentation-consistency option: IIC's mutual information and the symmetric-KL
objective (bounds, definitions, gradients), the D/Q step with the term, and label-free model
selection during training (``checkpoints.BestCheckpoint``)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygan as tg
from tinygan import data, nn
from tinygan.augment import RandomAffine
from tinygan.checkpoints import BestCheckpoint, NonFiniteLossError
from tinygan.cli import UsageError
from tinygan.models.infogan import (
    CONSISTENCY_OBJECTIVES,
    DEFAULT_CONSISTENCY_OBJECTIVE,
    InfoGAN,
    LatentSpec,
    consistency_loss,
    iic_mutual_information,
)
from tinygan.ops import softmax
from tinygan.optim import SGD
from tinygan.serialization import CheckpointError, load
from tinygan.testing import seeds
from tinygan.train import train


def probs(logits: np.ndarray) -> tg.Tensor:
    return softmax(tg.tensor(logits), 1)


def mutual_information(p: np.ndarray, q: np.ndarray) -> float:
    """I of the symmetrised joint (1/N) sum_i p_i q_i^T, from the definition (no clamping)."""
    joint = sum(np.outer(a, b) for a, b in zip(p, q)) / len(p)
    joint = (joint + joint.T) / 2
    row, col = joint.sum(1), joint.sum(0)
    return math.fsum(
        joint[a, b] * math.log(joint[a, b] / (row[a] * col[b]))
        for a in range(len(row))
        for b in range(len(col))
    )


@given(seed=seeds, n=st.integers(1, 40), k=st.integers(2, 12), scale=st.sampled_from([0.1, 3, 30]))
def test_iic_information_lies_between_0_and_ln_k(seed, n, k, scale):
    rng = np.random.default_rng(seed)
    a, b = (scale * rng.standard_normal((n, k)) for _ in range(2))
    value = iic_mutual_information(probs(a), probs(b)).item()
    assert -1e-12 <= value <= math.log(k) + 1e-12


@given(seed=seeds, n=st.integers(1, 20), k=st.integers(2, 6))
def test_iic_information_follows_its_definition(seed, n, k):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((2, n, k))
    expected = mutual_information(probs(a).numpy(), probs(b).numpy())
    assert iic_mutual_information(probs(a), probs(b)).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("k", [2, 3, 10])
def test_iic_information_is_ln_k_for_one_hot_consistent_balanced_assignments(k):
    labels = np.random.default_rng(k).permutation(np.repeat(np.arange(k), 7))
    one_hot = tg.tensor(np.eye(k)[labels])
    assert iic_mutual_information(one_hot, one_hot).item() == pytest.approx(math.log(k), abs=1e-12)
    swap = np.arange(k) ^ 1 if k % 2 == 0 else np.arange(k)  # an involution: pairs swapped
    moved = tg.tensor(np.eye(k)[swap[labels]])
    assert iic_mutual_information(one_hot, moved).item() == pytest.approx(math.log(k), abs=1e-12)
    unbalanced = tg.tensor(np.eye(k)[np.zeros_like(labels)])  # one cluster for everything
    assert iic_mutual_information(unbalanced, unbalanced).item() == pytest.approx(0, abs=1e-12)
    uniform = tg.tensor(np.full((len(labels), k), 1 / k))  # the second view says nothing
    assert iic_mutual_information(one_hot, uniform).item() == pytest.approx(0, abs=1e-12)


def test_symmetrisation_costs_a_cyclic_relabelling_ln_2():
    """Views that agree up to a 3-cycle of the clusters: J is a permutation matrix / 3, its
    symmetrised P spreads each row over two cells, so I = ln 3 - ln 2 (a consistent head,
    the same on both views, never relabels)."""
    labels = np.repeat(np.arange(3), 5)
    p, q = tg.tensor(np.eye(3)[labels]), tg.tensor(np.eye(3)[(labels + 1) % 3])
    assert iic_mutual_information(p, q).item() == pytest.approx(math.log(1.5), abs=1e-12)


@given(seed=seeds, n=st.integers(1, 12), k=st.integers(2, 5))
def test_kl_objective_follows_its_definition_and_bound(seed, n, k):
    rng = np.random.default_rng(seed)
    a, b = 2 * rng.standard_normal((2, n, k))
    p, q = probs(a).numpy(), probs(b).numpy()
    sym = np.mean(np.sum((p - q) * (np.log(p) - np.log(q)), 1)) / 2
    conditional = -np.mean(np.sum(p * np.log(p) + q * np.log(q), 1)) / 2
    mean = (p.mean(0) + q.mean(0)) / 2
    expected = sym + conditional + np.sum(mean * np.log(mean))
    value = consistency_loss(tg.tensor(a), tg.tensor(b), "kl").item()
    assert value == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert value >= -math.log(k) - 1e-12


@pytest.mark.parametrize("objective", ["iic", "kl"])
def test_both_objectives_reach_minus_ln_k_only_when_confident_consistent_and_balanced(objective):
    labels = np.tile(np.arange(4), 5)
    logits = tg.tensor(40.0 * np.eye(4)[labels])  # softmax within e-40 of one-hot
    assert consistency_loss(logits, logits, objective).item() == pytest.approx(-math.log(4))
    lazy = tg.tensor(np.zeros((20, 4)))  # uniform answers: consistent but uninformative
    assert consistency_loss(lazy, lazy, objective).item() == pytest.approx(0, abs=1e-12)
    collapsed = tg.tensor(40.0 * np.eye(4)[np.zeros_like(labels)])  # confident, one cluster
    assert consistency_loss(collapsed, collapsed, objective).item() == pytest.approx(0, abs=1e-9)
    cycled = tg.tensor(40.0 * np.eye(4)[(labels + 1) % 4])  # confident, balanced, inconsistent
    assert consistency_loss(logits, cycled, objective).item() > -math.log(4) + 0.5


@pytest.mark.parametrize("objective", ["iic", "kl"])
def test_objective_gradients(objective):
    rng = np.random.default_rng(3)
    a, b = (tg.tensor(rng.standard_normal((6, 4)), requires_grad=True) for _ in range(2))
    assert tg.gradcheck(lambda x, y: consistency_loss(x, y, objective), [a, b])


def test_objectives_reject_bad_arguments():
    x = tg.tensor(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"objective must be one of \('iic', 'kl'\); got 'js'"):
        consistency_loss(x, x, "js")
    with pytest.raises(ValueError, match=r"got \(3, 4\) and \(3, 5\)"):
        consistency_loss(x, tg.tensor(np.zeros((3, 5))))
    with pytest.raises(ValueError, match=r"got \(3, 4\) and \(12,\)"):
        iic_mutual_information(x, x.reshape(-1))


def test_infogan_checks_its_consistency_options():
    with pytest.raises(ValueError, match="consistency must be a finite number >= 0; got -1"):
        InfoGAN(consistency=-1)
    with pytest.raises(ValueError, match="consistency_objective must be one of"):
        InfoGAN(consistency=1, consistency_objective="mse")
    with pytest.raises(ValueError, match=r"consistency=1 trains D's body on real images"):
        InfoGAN(consistency=1, info_in_g=False)
    with pytest.raises(ValueError, match="needs a categorical code"):
        InfoGAN(LatentSpec(categorical=()), consistency=0.5)
    with pytest.raises(TypeError, match="augment must be a RandomAffine; got dict"):
        InfoGAN(consistency=1, augment={"rotation": 10})


# ---- the D/Q step with the term ------------------------------------------------------------
def images_of_bars(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """12 x 12 images of 4 kinds (a horizontal, a vertical bar, a diagonal, a square), each drawn
    at a random offset of up to 2 pixels, with noise: (n, 1, 12, 12) in [0, 1], labels (n,)."""
    shapes = np.zeros((4, 12, 12), np.float32)
    shapes[0, 5:7, 2:10] = 1
    shapes[1, 2:10, 5:7] = 1
    shapes[2][np.arange(2, 10), np.arange(2, 10)] = 1
    shapes[3, 3:9, 3:9], shapes[3, 4:8, 4:8] = 1, 0
    labels = rng.integers(0, 4, n)
    dy, dx = rng.integers(-2, 3, (2, n))
    x = np.stack([np.roll(shapes[k], (a, b), (0, 1)) for k, a, b in zip(labels, dy, dx)])
    x = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
    return x[:, None], labels


def small_image_infogan(seed: int, **kwargs) -> InfoGAN:
    """InfoGAN on 12 x 12 images with fully connected networks (fast enough for tests)."""
    spec = LatentSpec(categorical=(4,), continuous=1, noise=4)
    rng = np.random.default_rng(seed)
    g = nn.Sequential(
        nn.Linear(spec.dim, 64, rng=rng), nn.BatchNorm1d(64), nn.ReLU(),
        nn.Linear(64, 144, rng=rng), nn.Sigmoid(), nn.Unflatten(1, (1, 12, 12)),
    )  # fmt: skip
    d = nn.Module()
    d.body = nn.Sequential(nn.Flatten(), nn.Linear(144, 64, rng=rng), nn.BatchNorm1d(64),
                           nn.LeakyReLU(0.1))  # fmt: skip
    d.d_head = nn.Linear(64, 1, rng=rng)
    d.q_head = nn.Sequential(nn.Linear(64, 32, rng=rng), nn.BatchNorm1d(32), nn.LeakyReLU(0.1),
                             nn.Linear(32, spec.q_dim, rng=rng))  # fmt: skip
    return InfoGAN(spec, generator=g, discriminator=d, seed=seed, **kwargs)


REAL = images_of_bars(16, np.random.default_rng(0))[0]


@pytest.mark.parametrize("objective", CONSISTENCY_OBJECTIVES)
def test_the_term_trains_q_and_the_body_not_the_d_head(objective):
    """One step from the same weights and generator: with the term, D's body and Q's head move
    differently, D's head exactly as without it (the term's gradient never reaches it)."""
    plain = small_image_infogan(0)
    with_term = small_image_infogan(0, consistency=1.0, consistency_objective=objective)
    for model in (plain, with_term):  # Adam's first step is about lr * sign(grad): SGD shows more
        model.opt_d = SGD(model.D.parameters(), lr=0.1)
    plain.train_step(REAL, np.random.default_rng(1))
    metrics = with_term.train_step(REAL, np.random.default_rng(1))
    assert metrics["consistency"] >= -math.log(4)  # both objectives; only iic's is also <= 0
    assert objective != "iic" or metrics["consistency"] <= 0
    a, b = plain.D.state_dict(), with_term.D.state_dict()
    for key in a:
        if key.startswith("d_head"):
            np.testing.assert_array_equal(a[key], b[key])
    for part in ("body.1.weight", "q_head.3.weight"):
        assert not np.array_equal(a[part], b[part]), part


def test_the_step_with_the_term_is_float32_end_to_end(wide_floats):
    for objective in ("iic", "kl"):
        model = small_image_infogan(0, consistency=1.0, consistency_objective=objective)
        model.train_step(REAL, np.random.default_rng(1))
    assert not wide_floats


def test_consistency_score_is_iic_information_of_the_categorical_logits():
    model = small_image_infogan(0)
    moved = RandomAffine()(REAL, np.random.default_rng(2))
    a, b = model.categorical_logits(REAL), model.categorical_logits(moved)
    assert a.shape == (16, 4)
    expected = mutual_information(probs(a.astype(np.float64)).numpy(),
                                  probs(b.astype(np.float64)).numpy())  # fmt: skip
    assert model.consistency_score(REAL, moved) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    with pytest.raises(ValueError, match=r"same shape; got \(16, 1, 12, 12\) and \(3, 1, 12, 12\)"):
        model.consistency_score(REAL, moved[:3])


# ---- label-free selection during training ------------------------------------------------------
def selection(model: InfoGAN, path, every: int, seed: int = 0) -> BestCheckpoint:
    x, _ = images_of_bars(200, np.random.default_rng([seed, 9]))
    moved = model.augment(x, np.random.default_rng(4))
    return BestCheckpoint(lambda: model.consistency_score(x, moved), path, every)


def test_selection_keeps_the_best_state_and_leaves_training_alone(tmp_path):
    data = images_of_bars(256, np.random.default_rng(0))[0]
    plain = small_image_infogan(0, consistency=1.0)
    h_plain = train(plain, data, steps=12, batch_size=32, seed=1, progress=False)
    model = small_image_infogan(0, consistency=1.0)
    snapshots = {}
    best = selection(model, tmp_path / "best.npz", every=5)
    history = train(model, data, steps=12, batch_size=32, seed=1, progress=False, best=best,
                    on_step=lambda s, m: snapshots.update(
                        {s: {k: np.copy(v) for k, v in model.state_dict().items()}}))  # fmt: skip
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in h_plain]
    assert [s for s, _ in best.scores] == [5, 10, 12]  # every 5 steps and the last
    step, score = best.best
    assert score == max(v for _, v in best.scores)
    saved = load(tmp_path / "best.npz")
    assert int(saved["select/step"]) == step and float(saved["select/score"]) == score
    for k, v in snapshots[step].items():
        np.testing.assert_array_equal(saved[f"model/{k}"], v)


def test_selection_resumes_with_its_scores(tmp_path):
    data = images_of_bars(256, np.random.default_rng(0))[0]
    whole = small_image_infogan(0, consistency=1.0)
    best_whole = selection(whole, tmp_path / "whole.npz", every=3)
    train(whole, data, steps=10, batch_size=32, seed=1, progress=False, best=best_whole)
    ckpt, path = tmp_path / "ckpt.npz", tmp_path / "best.npz"
    part = small_image_infogan(0, consistency=1.0)

    def killed(step, metrics):  # the process dies during step 7: the checkpoint holds step 4
        if step == 7:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        train(part, data, steps=10, batch_size=32, seed=1, progress=False, checkpoint=ckpt,
              checkpoint_every=4, best=selection(part, path, every=3), on_step=killed)  # fmt: skip
    assert int(load(path)["select/step"]) in (3, 6)  # written after the checkpoint, maybe
    resumed = small_image_infogan(5, consistency=1.0)  # other weights: all comes from the file
    best = selection(resumed, path, every=3)
    train(resumed, data, steps=10, batch_size=32, seed=1, progress=False, checkpoint=ckpt,
          resume=True, best=best)  # fmt: skip
    assert best.scores == best_whole.scores and [s for s, _ in best.scores] == [3, 6, 9, 10]
    assert int(load(path)["select/step"]) == best.best[0]


OTHER_OBJECTIVE = next(o for o in CONSISTENCY_OBJECTIVES if o != DEFAULT_CONSISTENCY_OBJECTIVE)


def test_a_run_is_not_resumed_with_another_recipe(tmp_path):
    """Regression (issue 16): the example resumed a checkpoint with another --consistency (or
    lambda) without a word, and the run went on as a different recipe."""
    data = images_of_bars(64, np.random.default_rng(0))[0]
    ckpt = tmp_path / "ckpt.npz"
    flags = dict(steps=2, batch_size=16, seed=1, progress=False, checkpoint=ckpt)
    train(small_image_infogan(0, consistency=1.0), data, **flags)
    for changed in (dict(consistency=0.5), dict(consistency=1.0, lambda_cat=2.0),
                    dict(consistency=1.0, consistency_objective=OTHER_OBJECTIVE)):  # fmt: skip
        with pytest.raises(CheckpointError, match=r"written by a run with .*consistency"):
            train(small_image_infogan(0, **changed), data, resume=True, **{**flags, "steps": 3})
    history = train(small_image_infogan(0, consistency=1.0), data, resume=True,
                    **{**flags, "steps": 3})  # fmt: skip
    assert [h["step"] for h in history] == [1, 2, 3]


def test_selection_refuses_bad_settings_and_scores(tmp_path):
    with pytest.raises(ValueError, match="every must be an int >= 1; got 0"):
        BestCheckpoint(lambda: 0.0, tmp_path / "b.npz", 0)
    model = small_image_infogan(0)
    data = images_of_bars(64, np.random.default_rng(0))[0]
    with pytest.raises(TypeError, match="best must be a BestCheckpoint; got str"):
        train(model, data, steps=1, batch_size=32, progress=False, best="best.npz")
    nan = BestCheckpoint(lambda: float("nan"), tmp_path / "b.npz", 1)
    with pytest.raises(NonFiniteLossError, match="step 1: the selection score is nan, training"):
        train(model, data, steps=2, batch_size=32, progress=False, best=nan)
    assert not (tmp_path / "b.npz").exists()


# ---- the example's flags -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--consistency", "-1"], "argument --consistency: must be a finite number >= 0; got -1"),
        (["--consistency", "nan"], "argument --consistency: must be a finite number >= 0"),
        (["--consistency-objective", "js"], "argument --consistency-objective: invalid choice"),
        (["--select-every", "-5"], "argument --select-every: must be an int >= 0; got -5"),
        (["--consistency", "1", "--baseline"], "consistency=1.0 trains D's body on real images"),
    ],
)
def test_bad_consistency_flags_are_refused_before_data_or_folders(
    flags, message, tmp_path, example, monkeypatch
):
    def refuse(*args, **kwargs):
        raise AssertionError("the data was loaded before the flags were checked")

    monkeypatch.setattr(data, "_load", refuse)
    out = tmp_path / "run"
    with pytest.raises(UsageError, match=re.escape(message)):
        example("infogan_mnist").main([*flags, "--out", str(out)])
    assert not out.exists()
