"""Evaluation metrics: optimal assignment (Hungarian algorithm) and cluster accuracy."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["cluster_accuracy", "confusion_matrix", "linear_sum_assignment"]


def linear_sum_assignment(cost: ArrayLike, maximize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Solve the linear assignment problem (Hungarian algorithm), like SciPy's function.

    Shortest augmenting paths with dual potentials (Jonker-Volgenant style): one augmentation
    per row, each a Dijkstra-like search over the columns, O(n^2 m) in all for n <= m.

    Parameters
    ----------
    cost : array_like, shape (n, m)
        Finite cost of assigning row i to column j. Rectangular matrices are allowed:
        ``min(n, m)`` pairs are made.
    maximize : bool
        Maximise the total instead of minimising it.

    Returns
    -------
    rows, cols : np.ndarray, int64, shape (min(n, m),)
        The optimal pairs ``(rows[k], cols[k])``, ``rows`` ascending; the optimum is
        ``cost[rows, cols].sum()``. With ties, one optimal assignment.
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("cost must be finite (no NaN or inf)")
    if maximize:
        c = -c
    transposed = c.shape[0] > c.shape[1]
    if transposed:  # the algorithm assigns every row: make rows the smaller side
        c = c.T
    n, m = c.shape
    # 1-based indices; column 0 is a virtual column holding the row being inserted.
    a = np.zeros((n + 1, m + 1))
    a[1:, 1:] = c
    u = np.zeros(n + 1)  # row potentials
    v = np.zeros(m + 1)  # column potentials
    p = np.zeros(m + 1, dtype=np.int64)  # p[j]: row matched to column j (0: none)
    way = np.zeros(m + 1, dtype=np.int64)  # previous column on the shortest path
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)  # shortest reduced distance to each column
        used = np.zeros(m + 1, dtype=bool)  # columns whose distance is final
        while p[j0] != 0:
            used[j0] = True
            i0 = p[j0]
            reduced = a[i0] - u[i0] - v
            better = ~used & (reduced < minv)
            minv[better] = reduced[better]
            way[better] = j0
            j1 = int(np.argmin(np.where(used, np.inf, minv)))
            delta = minv[j1]
            u[p[used]] += delta  # the rows of used columns are distinct
            v[used] -= delta
            minv[~used] -= delta
            j0 = j1
        while j0 != 0:  # augment along the path back to the virtual column
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    cols = np.flatnonzero(p[1:])
    rows = p[1:][cols] - 1
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows)
    return rows[order].astype(np.int64), cols[order].astype(np.int64)


def _labels(y: ArrayLike, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise ValueError(f"{name} must be non-negative, got {y.min()}")
    return y.astype(np.int64)


def confusion_matrix(
    y_true: ArrayLike, y_pred: ArrayLike, n_true: int | None = None, n_pred: int | None = None
) -> np.ndarray:
    """Count co-occurrences of true labels and predictions (or clusters).

    Parameters
    ----------
    y_true, y_pred : array_like of non-negative ints, shape (N,)
    n_true, n_pred : int, optional
        Number of label / prediction values; default ``max + 1`` of each (0 when empty).

    Returns
    -------
    np.ndarray, int64, shape (n_true, n_pred)
        ``out[t, p]`` is the number of k with ``y_true[k] == t`` and ``y_pred[k] == p``.
    """
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    sizes = []
    for name, y, size in (("n_true", t, n_true), ("n_pred", p, n_pred)):
        needed = int(y.max()) + 1 if y.size else 0
        if size is None:
            size = needed
        elif size < needed:
            raise ValueError(f"{name}={size} but the values reach {needed - 1}")
        sizes.append(int(size))
    counts = np.bincount(t * sizes[1] + p, minlength=sizes[0] * sizes[1])
    return counts.astype(np.int64).reshape(sizes)


def cluster_accuracy(
    y_true: ArrayLike, y_pred: ArrayLike
) -> tuple[float, dict[int, int], np.ndarray]:
    """Accuracy of a clustering under the best one-to-one matching of clusters to labels.

    Clusters are matched to labels by the Hungarian algorithm so as to maximise the number of
    examples whose cluster maps to their label; with more clusters than labels, the unmatched
    clusters count as errors.

    Parameters
    ----------
    y_true : array_like of non-negative ints, shape (N,)
        Labels.
    y_pred : array_like of non-negative ints, shape (N,)
        Cluster ids (for InfoGAN, the argmax of the categorical code's logits).

    Returns
    -------
    accuracy : float
        Fraction of examples matched, in [0, 1].
    mapping : dict[int, int]
        Cluster id -> label, for the matched clusters.
    confusion : np.ndarray, int64, shape (n_labels, n_clusters)
        ``confusion_matrix(y_true, y_pred)``.
    """
    confusion = confusion_matrix(y_true, y_pred)
    total = int(confusion.sum())
    if total == 0:
        raise ValueError("cluster_accuracy needs at least one example")
    clusters, labels = linear_sum_assignment(confusion.T, maximize=True)
    matched = int(confusion[labels, clusters].sum())
    mapping = {int(k): int(c) for k, c in zip(clusters, labels, strict=True)}
    return matched / total, mapping, confusion
