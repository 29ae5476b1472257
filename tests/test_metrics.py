"""Tests for tinygan.metrics: Hungarian assignment, confusion matrix, cluster accuracy."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygan.metrics import cluster_accuracy, confusion_matrix, linear_sum_assignment


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
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
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
@given(n_classes=st.integers(1, 10), n=st.integers(1, 200), seed=st.integers(0, 2**32 - 1))
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
