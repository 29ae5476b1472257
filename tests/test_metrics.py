"""Tests for tinygan.metrics: Hungarian assignment, confusion matrix, cluster accuracy, Parzen
log-likelihood, k-means."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import reference
from tinygan.metrics import (
    classifier_score,
    cluster_accuracy,
    confusion_matrix,
    kmeans,
    kmeans_plusplus,
    linear_sum_assignment,
    lloyd,
    mean_sem,
    parzen_log_likelihood,
)
from tinygan.testing import seeds


def brute_force(cost: np.ndarray, maximize: bool) -> float:
    """Best total over all injective assignments of the smaller side."""
    n, m = cost.shape
    if n > m:
        cost, (n, m) = cost.T, (m, n)
    totals = [cost[np.arange(n), list(cols)].sum() for cols in itertools.permutations(range(m), n)]
    return max(totals) if maximize else min(totals)


@st.composite
def cost_matrices(draw):
    n, m = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(seeds))
    kind = draw(st.sampled_from(["int", "ties", "float"]))
    if kind == "int":
        return rng.integers(-20, 20, (n, m))
    if kind == "ties":
        return rng.integers(0, 2, (n, m)).astype(float)
    return rng.standard_normal((n, m)) * 10.0 ** draw(st.integers(-3, 3))


@settings(deadline=None, max_examples=200)
@given(cost=cost_matrices(), maximize=st.booleans())
def test_hungarian_matches_brute_force(cost, maximize):
    rows, cols = linear_sum_assignment(cost, maximize=maximize)
    k = min(cost.shape)
    assert rows.shape == cols.shape == (k,) and rows.dtype == cols.dtype == np.int64
    assert np.all(np.diff(rows) > 0) and len(set(cols.tolist())) == k  # one-to-one
    best = brute_force(cost, maximize)
    assert cost[rows, cols].sum() == pytest.approx(best, rel=1e-12, abs=1e-9)


def test_hungarian_known_examples():
    # Classic 3x3 example (SciPy's documentation): optimum 5 via (0,1), (1,0), (2,2).
    cost = np.array([[4, 1, 3], [2, 0, 5], [3, 2, 2]])
    rows, cols = linear_sum_assignment(cost)
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [1, 0, 2]
    rows, cols = linear_sum_assignment(cost, maximize=True)
    assert cost[rows, cols].sum() == 11
    # Rectangular, both orientations.
    wide = np.array([[10, 1, 10, 10], [1, 10, 10, 10]])
    assert [r.tolist() for r in linear_sum_assignment(wide)] == [[0, 1], [1, 0]]
    assert [r.tolist() for r in linear_sum_assignment(wide.T)] == [[0, 1], [1, 0]]
    for empty in (np.zeros((0, 3)), np.zeros((3, 0)), np.zeros((0, 0))):
        assert [r.tolist() for r in linear_sum_assignment(empty)] == [[], []]


@pytest.mark.parametrize(
    ("cost", "message"),
    [(np.zeros(3), "2-D"), (np.zeros((2, 2, 2)), "2-D"), ([[0.0, np.nan]], "finite"),
     ([[np.inf, 0.0]], "finite")],
)  # fmt: skip
def test_hungarian_validation(cost, message):
    with pytest.raises(ValueError, match=message):
        linear_sum_assignment(cost)


def test_confusion_matrix():
    out = confusion_matrix([0, 0, 1, 2, 2, 2], [1, 1, 0, 2, 2, 0])
    np.testing.assert_array_equal(out, [[0, 2, 0], [1, 0, 0], [1, 0, 2]])
    assert out.dtype == np.int64
    assert confusion_matrix([0, 1], [0, 0], n_true=3, n_pred=4).shape == (3, 4)
    assert confusion_matrix([], []).shape == (0, 0)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "kwargs", "message"),
    [([0, 1], [0], {}, "differ in length"), ([0.5], [0], {}, "integers"),
     ([-1], [0], {}, "non-negative"), ([[0]], [[0]], {}, "1-D"),
     ([0, 3], [0, 0], {"n_true": 3}, "n_true=3")],
)  # fmt: skip
def test_confusion_matrix_validation(y_true, y_pred, kwargs, message):
    with pytest.raises(ValueError, match=message):
        confusion_matrix(y_true, y_pred, **kwargs)


@settings(deadline=None)
@given(n_classes=st.integers(1, 10), n=st.integers(1, 200), seed=seeds)
def test_cluster_accuracy_of_a_relabelling_is_one(n_classes, n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    perm = rng.permutation(n_classes)
    accuracy, mapping, confusion = cluster_accuracy(labels, perm[labels])
    assert accuracy == 1.0
    for label in np.unique(labels):
        assert mapping[int(perm[label])] == label
    assert confusion.sum() == n


def test_cluster_accuracy_known_example():
    y_true = [0, 0, 0, 1, 1, 1, 2, 2]
    y_pred = [2, 2, 1, 0, 0, 2, 1, 1]  # best: 2->0, 0->1, 1->2: 2 + 2 + 2 = 6 of 8
    accuracy, mapping, confusion = cluster_accuracy(y_true, y_pred)
    assert accuracy == 0.75
    assert mapping == {2: 0, 0: 1, 1: 2}
    np.testing.assert_array_equal(confusion, [[0, 1, 2], [2, 0, 1], [0, 2, 0]])


def test_cluster_accuracy_more_clusters_than_labels():
    accuracy, mapping, _ = cluster_accuracy([0, 0, 1, 1], [0, 1, 2, 2])
    assert accuracy == 0.75 and mapping[2] == 1 and len(mapping) == 2


def test_cluster_accuracy_needs_examples():
    with pytest.raises(ValueError, match="at least one"):
        cluster_accuracy([], [])


# ---- Parzen-window log-likelihood ---------------------------------------------------------------
def test_parzen_log_likelihood_matches_direct_computation():
    rng = np.random.default_rng(0)
    samples, valid, test = (rng.random((n, 2, 3)) for n in (15, 8, 9))  # images, flattened
    sigmas = [0.05, 0.2, 0.6]
    out = parzen_log_likelihood(samples, valid, test, sigmas=sigmas, batch_size=4)
    flat = [a.reshape(len(a), 6) for a in (samples, valid, test)]
    valid_ll = {s: reference.gaussian_kde(flat[1], flat[0], s).mean() for s in sigmas}
    assert out["validation"].keys() == valid_ll.keys()
    for s in sigmas:
        assert out["validation"][s] == pytest.approx(valid_ll[s], rel=1e-12)
    best = max(sigmas, key=valid_ll.get)
    test_ll = reference.gaussian_kde(flat[2], flat[0], best)
    assert out["sigma"] == best
    assert out["mean"] == pytest.approx(test_ll.mean(), rel=1e-12)
    assert out["sem"] == pytest.approx(test_ll.std(ddof=1) / 3.0, rel=1e-10)  # sqrt(9) = 3


@pytest.mark.outcome
def test_parzen_log_likelihood_picks_the_right_sigma(seed_offset):
    # One generated sample at the data's mean makes the Parzen window exactly N(mu, sigma^2 I):
    # data with std 10^(-5/9) (the default grid's 5th value) must select it, and the test score
    # is the Gaussian log-likelihood in closed form.
    rng = np.random.default_rng(1 + seed_offset)
    grid = np.logspace(-1, 0, 10)
    d, mu = 20, rng.random(20)
    valid, test = (mu + grid[4] * rng.standard_normal((n, d)) for n in (1000, 500))
    out = parzen_log_likelihood(mu[None], valid, test)
    assert out["sigma"] == grid[4] and list(out["validation"]) == grid.tolist()
    ll = -d / 2 * np.log(2 * np.pi * grid[4] ** 2) - ((test - mu) ** 2).sum(1) / (2 * grid[4] ** 2)
    assert out["mean"] == pytest.approx(ll.mean(), rel=1e-12)
    assert out["sem"] == pytest.approx(ll.std(ddof=1) / math.sqrt(500), rel=1e-10)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [((np.zeros(4), np.zeros((2, 4)), np.zeros((2, 4))), {}, "samples must have shape"),
     ((np.zeros((3, 4)), np.zeros((2, 5)), np.zeros((2, 4))), {}, r"same size per row, got \(4, 5, 4\)"),
     ((np.zeros((3, 4)), np.zeros((2, 4)), np.zeros((1, 4))), {}, "at least 2 rows"),
     ((np.zeros((3, 4)), np.zeros((2, 4)), np.zeros((2, 4))), {"sigmas": [0.1, -1.0]}, "sigma must be a finite number > 0"),
     ((np.zeros((3, 4)), np.zeros((2, 4)), np.zeros((2, 4))), {"sigmas": []}, "non-empty")],
)  # fmt: skip
def test_parzen_log_likelihood_validation(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        parzen_log_likelihood(*args, **kwargs)


# ---- k-means ------------------------------------------------------------------------------------
def blobs(rng: np.random.Generator, n_per: int = 40):
    centres = np.array([[0, 0, 0], [20, 0, 0], [0, 20, 0], [0, 0, 20], [20, 20, 20]], float)
    labels = np.repeat(np.arange(len(centres)), n_per)
    return centres[labels] + rng.standard_normal((len(labels), 3)), labels, centres


@pytest.mark.outcome
def test_kmeans_recovers_separated_blobs(seed_offset):
    rng = np.random.default_rng(2 + seed_offset)
    x, y, _ = blobs(rng)
    labels, centers, inertia = kmeans(x, 5, n_init=3, rng=rng)
    assert labels.dtype == np.int64 and centers.shape == (5, 3)
    accuracy, mapping, _ = cluster_accuracy(y, labels)
    assert accuracy == 1.0
    for cluster, label in mapping.items():  # each centre is its blob's mean
        np.testing.assert_allclose(centers[cluster], x[y == label].mean(0), rtol=1e-12, atol=1e-12)
    assert inertia == pytest.approx(((x - centers[labels]) ** 2).sum(), rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_lloyd_inertia_never_increases(seed):
    # Uniform data has no clear clusters, so Lloyd takes many small steps. Inertias come from the
    # expanded distances: rounding of about eps * D * sum ||x||^2 each, hence the tolerance.
    rng = np.random.default_rng(seed)
    x = rng.random((400, 2))
    labels, centers, inertias = lloyd(x, kmeans_plusplus(x, 12, rng))
    assert len(inertias) > 4
    assert np.all(np.diff(inertias) <= 1e-13 * (x**2).sum())
    assert inertias[-1] == pytest.approx(((x - centers[labels]) ** 2).sum(), rel=1e-12)
    d2 = ((x[:, None] - centers[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(labels, d2.argmin(1))  # final labels: nearest final centres


def test_lloyd_known_example_and_empty_cluster():
    x = np.array([[0.0], [1.0], [10.0], [11.0]])
    labels, centers, inertias = lloyd(x, [[0.0], [1.0]])
    assert labels.tolist() == [0, 0, 1, 1] and centers.ravel().tolist() == [0.5, 10.5]
    # Centres (0, 1) -> (0, 22/3) -> (0.5, 10.5), then the labels stop changing.
    np.testing.assert_allclose(inertias, [1 + 81 + 100 - 1, 1 + (8 / 3) ** 2 + (11 / 3) ** 2, 1])
    labels, centers, _ = lloyd(x, [[5.0], [100.0]])  # centre 100 never gets a point: it stays
    assert labels.tolist() == [0, 0, 0, 0] and centers.ravel().tolist() == [5.5, 100.0]


@pytest.mark.outcome
def test_kmeans_keeps_the_best_of_n_init(seed_offset, outcome):
    # The first of n_init runs draws the same initial centres as n_init=1 with the same seed, so
    # the best of 6 can be no worse, and on unclustered data it is strictly better for some seed.
    x = np.random.default_rng(3 + seed_offset).random((300, 2))
    gains = []
    for seed in range(5 * seed_offset, 5 * seed_offset + 5):
        one = kmeans(x, 9, n_init=1, rng=np.random.default_rng(seed))[2]
        six = kmeans(x, 9, n_init=6, rng=np.random.default_rng(seed))[2]
        assert six <= one
        gains.append(one - six)
    outcome.check("best gain of n_init=6 over 1", max(gains), ">", 0)


def test_kmeans_plusplus_draws_rows_and_never_repeats_a_distinct_point():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((7, 3))
    centers = kmeans_plusplus(x, 7, rng)  # a row on a centre has probability 0 afterwards
    assert sorted(map(tuple, centers)) == sorted(map(tuple, x))
    same = kmeans_plusplus(np.ones((3, 2)), 3, rng)  # all distances 0: uniform draws
    np.testing.assert_array_equal(same, np.ones((3, 2)))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [(lambda: kmeans(np.zeros((3, 2)), 4, rng=np.random.default_rng()), ValueError, r"k must be an int in \[1, 3\]; got 4"),
     (lambda: kmeans(np.zeros((3, 2)), 0, rng=np.random.default_rng()), ValueError, "got 0"),
     (lambda: kmeans(np.zeros((3, 2)), 2, rng=0), TypeError, "rng must be a np.random.Generator, got int"),
     (lambda: kmeans(np.zeros(3), 2, rng=np.random.default_rng()), ValueError, "2-D"),
     (lambda: kmeans(np.zeros((3, 2)), 2, n_init=0, rng=np.random.default_rng()), ValueError, "n_init"),
     (lambda: lloyd(np.zeros((3, 2)), np.zeros((2, 3))), ValueError, r"centers must have shape \(k >= 1, 2\)"),
     (lambda: lloyd(np.zeros((3, 2)), np.zeros((2, 2)), max_iter=0), ValueError, "max_iter")],
)  # fmt: skip
def test_kmeans_validation(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_classifier_score_extremes_and_formula():
    k = 10
    assert classifier_score(np.eye(k)) == pytest.approx(k)  # confident, all classes
    assert classifier_score(np.tile(np.eye(k)[3], (5, 1))) == pytest.approx(1.0)
    assert classifier_score(np.full((7, k), 1 / k)) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), 50)
    marginal = p.mean(0)
    direct = np.exp(np.mean([np.sum(r * np.log(r / marginal)) for r in p]))
    assert classifier_score(p) == pytest.approx(direct, rel=1e-12)
    with pytest.raises(ValueError, match="summing to 1"):
        classifier_score(np.ones((3, 2)))
    with pytest.raises(ValueError, match="shape"):
        classifier_score(np.ones(3))


def test_mean_sem_uses_the_unbiased_std_and_names_too_few_values():
    got = mean_sem([1.0, 2.0, 3.0, 6.0])
    assert got["mean"] == 3.0 and got["sem"] == pytest.approx(np.std([1, 2, 3, 6], ddof=1) / 2)
    assert mean_sem([0.0, -np.inf])["mean"] == -np.inf
    with pytest.raises(ValueError, match=r"at least 2 values.*got 1"):
        mean_sem([1.0])
