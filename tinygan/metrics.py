"""Evaluation metrics: optimal assignment (Hungarian algorithm), cluster accuracy, k-means, and
the Parzen-window log-likelihood of generated samples (Goodfellow et al. 2014)."""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.typing import ArrayLike

from . import arguments
from .density import _points, gaussian_kde_log_density, select_bandwidth, sq_distance_blocks

__all__ = [
    "classifier_score", "cluster_accuracy", "confusion_matrix", "kmeans", "kmeans_plusplus",
    "linear_sum_assignment", "lloyd", "mean_sem", "parzen_log_likelihood",
]  # fmt: skip


def mean_sem(values: ArrayLike) -> dict[str, float]:
    """``{"mean", "sem"}`` of per-example values (N,), N >= 2: the standard error of the mean is
    ``std(ddof=1) / sqrt(N)``. Infinite values (a density of 0) give an infinite mean and a NaN
    standard error, without a warning."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(v) < 2:
        raise ValueError(f"mean_sem needs at least 2 values for a standard error, got {len(v)}")
    with np.errstate(invalid="ignore"):  # inf - inf inside std
        return {"mean": float(v.mean()), "sem": float(v.std(ddof=1) / math.sqrt(len(v)))}


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


def parzen_log_likelihood(
    samples: ArrayLike,
    validation: ArrayLike,
    test: ArrayLike,
    sigmas: ArrayLike | None = None,
    batch_size: int | None = None,
) -> dict:
    """Log-likelihood of test data under a Gaussian Parzen window on generated samples.

    The protocol of the GAN paper (Goodfellow et al. 2014, section 5): fit
    ``density.gaussian_kde_log_density`` to the generated samples (the paper uses 10,000), pick
    ``sigma`` from ``sigmas`` by the mean log-likelihood of a validation set (the paper: 1,000
    held-out images), and report the test set's mean log-likelihood and its standard error.
    Images of any shape are flattened: row ``i`` of each array is ``x[i].ravel()``.

    Parameters
    ----------
    samples : array_like, shape (n, ...)
        Generated samples.
    validation : array_like, shape (N_val, ...)
        Held-out real data that chooses sigma; same shape per row as ``samples``.
    test : array_like, shape (N_test, ...), N_test >= 2
        Real data that is scored.
    sigmas : array_like, shape (G,), optional
        Candidate kernel widths; default ``np.logspace(-1, 0, 10)`` (0.1 to 1, as the paper's code).
    batch_size : int, optional
        Query rows per batch (see ``density.sq_distance_blocks``).

    Returns
    -------
    dict
        ``"sigma"``: the chosen width; ``"mean"``: mean test log-likelihood in nats;
        ``"sem"``: its standard error ``std(ddof=1) / sqrt(N_test)``; ``"validation"``:
        ``{sigma: mean validation log-likelihood}`` for every candidate.
    """
    flat = {}
    for name, a in (("samples", samples), ("validation", validation), ("test", test)):
        a = np.asarray(a)
        if a.ndim < 2:
            raise ValueError(f"{name} must have shape (N, ...) with at least 2 dims, got {a.shape}")
        flat[name] = _points(a.reshape(a.shape[0], math.prod(a.shape[1:])), name)
    sizes = tuple(a.shape[1] for a in flat.values())
    if len(set(sizes)) > 1:
        raise ValueError(f"samples, validation, test must have the same size per row, got {sizes}")
    if len(flat["test"]) < 2:
        raise ValueError(
            f"test needs at least 2 rows for a standard error, got {len(flat['test'])}"
        )
    sigmas = np.logspace(-1, 0, 10) if sigmas is None else np.asarray(sigmas, dtype=np.float64)
    kde = functools.partial(gaussian_kde_log_density, batch_size=batch_size)
    sigma, scores = select_bandwidth(kde, flat["samples"], flat["validation"], sigmas)
    ll = kde(flat["test"], flat["samples"], sigma)
    return {
        "sigma": sigma,
        **mean_sem(ll),
        "validation": {float(s): float(v) for s, v in zip(sigmas, scores, strict=True)},
    }


def _assign(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, float]:
    """Nearest centre of each row of ``x`` and the inertia (sum of squared distances to it)."""
    labels = np.empty(len(x), dtype=np.int64)
    inertia = 0.0
    for rows, d2 in sq_distance_blocks(x, centers):
        labels[rows] = d2.argmin(axis=1)
        inertia += float(d2[np.arange(len(d2)), labels[rows]].sum())
    return labels, inertia


def kmeans_plusplus(x: ArrayLike, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ initial centres (Arthur and Vassilvitskii 2007).

    The first centre is a uniformly drawn row of ``x``; each next one is a row drawn with
    probability proportional to its squared distance to the nearest centre chosen so far
    (uniformly again if every row already sits on a centre).

    Parameters
    ----------
    x : array_like, shape (N, D)
    k : int
        Number of centres, 1 <= k <= N.
    rng : np.random.Generator

    Returns
    -------
    np.ndarray, float64, shape (k, D)
        Rows of ``x``.
    """
    x = _points(x, "x")
    k = arguments.integer(k, "k", 1, len(x))
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.Generator, got {type(rng).__name__}")
    chosen = [int(rng.integers(len(x)))]
    nearest = np.full(len(x), np.inf)
    for _ in range(k - 1):
        for rows, d2 in sq_distance_blocks(x, x[chosen[-1]][None]):
            np.minimum(nearest[rows], d2[:, 0], out=nearest[rows])
        total = nearest.sum()
        p = nearest / total if total > 0 else None
        chosen.append(int(rng.choice(len(x), p=p)))
    return x[chosen].copy()


def lloyd(
    x: ArrayLike, centers: ArrayLike, max_iter: int = 300
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lloyd's k-means iterations from given centres, until the assignment stops changing.

    Each iteration moves every centre to the mean of its rows (a centre with no rows stays where
    it is), then reassigns each row to its nearest centre. Neither step can increase the inertia.

    Parameters
    ----------
    x : array_like, shape (N, D)
    centers : array_like, shape (k, D)
        Initial centres.
    max_iter : int
        Most centre updates, >= 1.

    Returns
    -------
    labels : np.ndarray, int64, shape (N,)
        Nearest final centre of each row.
    centers : np.ndarray, float64, shape (k, D)
    inertias : np.ndarray, float64, shape (iterations + 1,)
        Sum of squared distances of the rows to their centres after the initial assignment and
        after each iteration; the last is the final inertia.
    """
    x, centers = _points(x, "x"), _points(centers, "centers").copy()
    if len(centers) == 0 or centers.shape[1] != x.shape[1]:
        raise ValueError(f"centers must have shape (k >= 1, {x.shape[1]}), got {centers.shape}")
    max_iter = arguments.integer(max_iter, "max_iter", 1)
    labels, inertia = _assign(x, centers)
    inertias = [inertia]
    for _ in range(max_iter):
        onehot = (labels[:, None] == np.arange(len(centers))).astype(np.float64)
        counts = onehot.sum(axis=0)[:, None]
        np.divide(onehot.T @ x, counts, out=centers, where=counts > 0)
        new_labels, inertia = _assign(x, centers)
        inertias.append(inertia)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    return new_labels, centers, np.array(inertias)


def kmeans(
    x: ArrayLike, k: int, *, n_init: int = 10, max_iter: int = 300, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, float]:
    """k-means clustering: the best of ``n_init`` runs of ``kmeans_plusplus`` then ``lloyd``.

    With ``cluster_accuracy(y_true, labels)`` this gives the k-means clustering accuracy of
    learned features.

    Parameters
    ----------
    x : array_like, shape (N, D)
    k : int
        Number of clusters, 1 <= k <= N.
    n_init : int
        Restarts, >= 1; the run with the lowest inertia is returned.
    max_iter : int
        Most Lloyd iterations per run, >= 1.
    rng : np.random.Generator
        Draws the initial centres.

    Returns
    -------
    labels : np.ndarray, int64, shape (N,)
    centers : np.ndarray, float64, shape (k, D)
    inertia : float
        Sum of squared distances of the rows to their centres.
    """
    x = _points(x, "x")
    n_init = arguments.integer(n_init, "n_init", 1)
    best = None
    for _ in range(n_init):
        labels, centers, inertias = lloyd(x, kmeans_plusplus(x, k, rng), max_iter)
        if best is None or inertias[-1] < best[2]:
            best = (labels, centers, float(inertias[-1]))
    return best


def classifier_score(probs: ArrayLike) -> float:
    """The Inception score of Salimans et al. (2016) with a classifier of the data's own classes:
    exp(E_x KL(p(y|x) || p(y))), p(y) the mean of p(y|x) over the samples.

    It is high (at most the number of classes) when each sample is classified confidently and
    the classes are used evenly; 1 when every sample gets the same distribution.

    Parameters
    ----------
    probs : array_like, shape (N, K)
        Class probabilities p(y|x) of N samples (rows sum to 1).

    Returns
    -------
    float
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"probs must be a non-empty (N, K) matrix; got shape {p.shape}")
    if np.any(p < 0) or not np.allclose(p.sum(1), 1, atol=1e-4):
        raise ValueError("probs must be non-negative rows summing to 1 (probabilities)")
    marginal = p.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(p > 0, p * (np.log(p) - np.log(marginal)), 0.0).sum(1)
    return float(np.exp(kl.mean()))
