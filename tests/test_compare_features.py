"""Scoring learned features (linear probe on a few labels, k-means accuracy) and the example
that compares representations end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinygan.cli import UsageError
from tinygan.evaluation import feature_scores, load_splits
from tinygan.models import VAE
from tinygan.runner import write_json
from tinygan.train import train


def one_hot_features(labels, rng, scale=5.0, noise=0.1):
    """Each class at its own corner of a simplex, plus a little noise: linearly separable and
    in 10 tight clusters."""
    return scale * np.eye(10)[labels] + noise * rng.standard_normal((len(labels), 10))


def test_feature_scores_on_features_with_known_answers():
    rng = np.random.default_rng(0)
    y, y_test = rng.integers(0, 10, 600), rng.integers(0, 10, 300)
    f, f_test = one_hot_features(y, rng), one_hot_features(y_test, rng)
    scores = feature_scores(f, y, f_test, y_test, n_labelled=100, seed=1)
    assert scores == {"dims": 10, "labelled_per_class": [10] * 10, "probe_accuracy": 1.0,
                      "kmeans_accuracy": 1.0}  # fmt: skip
    assert feature_scores(f, y, f_test, y_test, n_labelled=100, seed=1) == scores  # seeded

    # two loud dimensions of pure noise: the probe (standardised features) still reads the
    # labels, k-means (the features as given) clusters the noise instead
    loud = [np.c_[a, 100 * rng.standard_normal((len(a), 2))] for a in (f, f_test)]
    scores = feature_scores(loud[0], y, loud[1], y_test, n_labelled=100, seed=1)
    assert scores["dims"] == 12 and scores["probe_accuracy"] == 1.0
    assert scores["kmeans_accuracy"] < 0.35

    # features that know nothing of the labels: both near chance (0.1)
    noise = [rng.standard_normal((len(a), 10)) for a in (y, y_test)]
    scores = feature_scores(noise[0], y, noise[1], y_test, n_labelled=100, seed=1)
    assert scores["probe_accuracy"] < 0.25 and scores["kmeans_accuracy"] < 0.3


@pytest.mark.parametrize(
    ("sizes", "n_labelled", "counts", "fixed"),
    [
        ([900] + [10] * 9, 100, [10] * 10, {}),  # one class 90% of the rows: still 10 of each
        ([900] + [10] * 9, 105, [10] * 9 + [15], {0: 15}),  # the small classes run out
        ([30, 5] + [30] * 8, 100, [5] + [10] * 4 + [11] * 5, {1: 5}),  # the 95 left over nine
    ],
)
def test_labelled_subset_is_class_balanced(sizes, n_labelled, counts, fixed):
    rng = np.random.default_rng(0)
    y = rng.permutation(np.repeat(np.arange(10), sizes))
    y_test = np.arange(10).repeat(3)
    scores = feature_scores(one_hot_features(y, rng), y, one_hot_features(y_test, rng), y_test,
                            n_labelled=n_labelled)  # fmt: skip
    assert sorted(scores["labelled_per_class"]) == counts
    assert all(scores["labelled_per_class"][c] == n for c, n in fixed.items())
    assert scores["probe_accuracy"] == 1.0  # every class labelled


def test_feature_scores_rejects_bad_input():
    rng = np.random.default_rng(0)
    y = np.arange(10).repeat(5)
    f = rng.standard_normal((50, 4))
    with pytest.raises(ValueError, match=r"n_labelled must be an int from 10 .* to 50"):
        feature_scores(f, y, f, y, n_labelled=51)
    with pytest.raises(ValueError, match="n_labelled must be an int from 10"):
        feature_scores(f, y, f, y, n_labelled=9)
    with pytest.raises(ValueError, match=r"got 20\.0"):
        feature_scores(f, y, f, y, n_labelled=20.0)
    with pytest.raises(TypeError, match=r"train_labels must be an int np\.ndarray.*float64"):
        feature_scores(f, y.astype(float), f, y, n_labelled=20)
    with pytest.raises(
        ValueError, match=r"test_features must be a 2-D np.ndarray; got shape \(50,\)"
    ):
        feature_scores(f, y, f[:, 0], y, n_labelled=20)
    with pytest.raises(ValueError, match=r"test_labels has shape \(49,\); expected \(50,\)"):
        feature_scores(f, y, f, y[:-1], n_labelled=20)


def test_example_script_end_to_end(tmp_path, capsys, mnist_dir, example):
    compare_features = example("compare_features")
    splits = load_splits("mnist", "test", mnist_dir)
    (x, y), (x_test, y_test) = splits.train, splits.test
    vae_run = tmp_path / "vae"  # a finished run with a non-default latent size
    vae = VAE(latent_dim=3, seed=0)
    vae_run.mkdir()
    train(vae, x[:32], steps=2, batch_size=16, checkpoint=vae_run / "checkpoint.npz",
          progress=False)  # fmt: skip
    write_json(vae_run / "metrics.json", {"splits": splits.description, "train_seconds": 1.5,
                                          "flags": {"latent_dim": 3}})  # fmt: skip

    out = tmp_path / "compare"
    argv = ["--split", "test", "--data-dir", mnist_dir, "--labels", "100", "--ae-steps", "3",
            "--sparse-ae-steps", "3", "--sc-atoms", "16", "--sc-iters", "1", "--vae", str(vae_run),
            "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert compare_features.main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["splits"] == splits.description
    reps = m["representations"]
    dims = {"pixels": 784, "autoencoder": 256, "sparse_autoencoder": 196,
            "denoising_autoencoder": 256, "stacked_autoencoder": 64, "sparse_coding": 16, "vae": 3}  # fmt: skip
    assert {k: r["dims"] for k, r in reps.items()} == dims  # in this order, too
    assert list(reps) == list(dims)
    for r in reps.values():
        assert r["labelled_per_class"] == [10] * 10
        assert 0 <= r["kmeans_accuracy"] <= 1 and r["train_seconds"] >= 0

    # the numbers are feature_scores' on the right features: pixels, and the restored VAE's mu(x)
    flat = [a.reshape(len(a), -1) for a in (x, x_test)]
    assert reps["pixels"] == {**feature_scores(flat[0], y, flat[1], y_test, n_labelled=100),
                              "train_seconds": reps["pixels"]["train_seconds"]}  # fmt: skip
    assert reps["pixels"]["probe_accuracy"] > 0.6  # raw pixels, 100 labels: about 0.67
    expected = feature_scores(vae.encode(x), y, vae.encode(x_test), y_test, n_labelled=100)
    assert {k: reps["vae"][k] for k in expected} == expected
    assert reps["vae"]["checkpoint_step"] == 2 and reps["vae"]["train_seconds"] == 1.5
    assert reps["vae"]["finished"] and "warning" not in capsys.readouterr().out

    table = (out / "table.md").read_text().splitlines()
    assert len(table) == 2 + len(dims)
    assert table[2] == f"| pixels | 784 | {reps['pixels']['probe_accuracy']:.3f} | " \
        f"{reps['pixels']['kmeans_accuracy']:.3f} | 0 |"  # fmt: skip
    assert table[-1].startswith("| vae | 3 |") and table[-1].endswith("| 2 (run) |")

    # --only picks a subset; a name that is not there, or a run without a checkpoint, is refused
    assert compare_features.main([*argv, "--only", "pixels", "--out", str(tmp_path / "o")]) == 0
    only = json.loads((tmp_path / "o" / "metrics.json").read_text())["representations"]
    assert only == {"pixels": reps["pixels"] | {"train_seconds": only["pixels"]["train_seconds"]}}
    with pytest.raises(UsageError, match=r"--only \['infogan'\]: not among"):
        compare_features.main([*argv, "--only", "pixels,infogan"])  # no --infogan given
    with pytest.raises(UsageError, match=rf"argument --bigan: no checkpoint\.npz in {tmp_path}"):
        compare_features.main([*argv, "--only", "bigan", "--bigan", str(tmp_path)])
