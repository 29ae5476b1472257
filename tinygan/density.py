"""Non-parametric density estimators on host NumPy arrays, in float64.

Gaussian and hypercube Parzen windows, the k-nearest-neighbour estimator, a regular histogram, and
bandwidth selection by held-out log-likelihood. Every estimator returns log-densities. Query rows
are processed in batches so that the (n_query, n_ref) distance matrix is never built whole: by
default a batch's block of distances takes at most ``BLOCK_BYTES``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from numpy.typing import ArrayLike

from . import arguments
from .ops import logsumexp
from .tensor import Tensor

__all__ = [
    "BLOCK_BYTES", "Histogram", "gaussian_kde_log_density", "hypercube_kde_log_density",
    "knn_log_density", "select_bandwidth", "sq_distance_blocks",
]  # fmt: skip

BLOCK_BYTES = 16 * 2**20  # one batch's (batch, n_ref) float64 block; peak use is about 3 blocks


# ---- validation ---------------------------------------------------------------------------------
def _points(a: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D, shape (N, D), got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return a


def _query_and_samples(
    x: ArrayLike, samples: ArrayLike, x_name: str = "x"
) -> tuple[np.ndarray, np.ndarray]:
    x, samples = _points(x, x_name), _points(samples, "samples")
    if len(samples) == 0:
        raise ValueError("samples must have at least one row, got shape (0, D)")
    if x.shape[1] != samples.shape[1]:
        raise ValueError(
            f"{x_name} has D={x.shape[1]} columns but samples has D={samples.shape[1]}: "
            "they must match"
        )
    return x, samples


def _batch_rows(batch_size: int | None, n_ref: int) -> int:
    if batch_size is None:
        return max(1, BLOCK_BYTES // (8 * max(n_ref, 1)))
    return arguments.integer(batch_size, "batch_size", 1)


# ---- distances ----------------------------------------------------------------------------------
def sq_distance_blocks(
    x: ArrayLike, y: ArrayLike, batch_size: int | None = None
) -> Iterator[tuple[slice, np.ndarray]]:
    """Squared Euclidean distances from the rows of ``x`` to those of ``y``, a batch at a time.

    ``||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b`` (one GEMM per batch), clamped at 0 against
    rounding. The absolute rounding error is about ``eps * D * (||a||^2 + ||b||^2)``.

    Parameters
    ----------
    x : array_like, shape (N, D)
    y : array_like, shape (M, D), M >= 1
    batch_size : int, optional
        Rows of ``x`` per batch; default the most whose block fits in ``BLOCK_BYTES``.

    Yields
    ------
    rows : slice
        The rows of ``x`` in this batch.
    d2 : np.ndarray, float64, shape (len(rows), M)
        ``d2[i, j] = ||x[rows][i] - y[j]||^2``; a fresh array the caller may overwrite.
    """
    x, y = _query_and_samples(x, y)
    return _blocks(x, y, _batch_rows(batch_size, len(y)))


def _blocks(x: np.ndarray, y: np.ndarray, rows: int) -> Iterator[tuple[slice, np.ndarray]]:
    y_sq = np.einsum("ij,ij->i", y, y)
    for start in range(0, len(x), rows):
        xb = x[start : start + rows]
        d2 = xb @ y.T
        d2 *= -2.0
        d2 += np.einsum("ij,ij->i", xb, xb)[:, None]
        d2 += y_sq
        np.maximum(d2, 0.0, out=d2)
        yield slice(start, start + len(xb)), d2


# ---- estimators ---------------------------------------------------------------------------------
def gaussian_kde_log_density(
    x: ArrayLike, samples: ArrayLike, sigma: float, batch_size: int | None = None
) -> np.ndarray:
    """Log-density of a Gaussian Parzen window (kernel density estimate) at each query point.

    ``log p(x_i) = logsumexp_j(-||x_i - s_j||^2 / (2 sigma^2)) - log n - (D/2) log(2 pi sigma^2)``,
    with the log-sum-exp shifted by its maximum, so a tiny ``sigma`` gives a finite value where
    ``exp`` alone would underflow to 0.

    Parameters
    ----------
    x : array_like, shape (N, D)
        Query points.
    samples : array_like, shape (n, D), n >= 1
        The kernel centres.
    sigma : float
        Kernel standard deviation, > 0.
    batch_size : int, optional
        Query rows per batch (see ``sq_distance_blocks``).

    Returns
    -------
    np.ndarray, float64, shape (N,)
    """
    x, samples = _query_and_samples(x, samples)
    sigma = arguments.real(sigma, "sigma", 0, low_open=True)
    n, d = samples.shape
    out = np.empty(len(x))
    for rows, d2 in _blocks(x, samples, _batch_rows(batch_size, n)):
        d2 *= -0.5 / sigma**2
        out[rows] = logsumexp(Tensor(d2), dim=1).numpy()
    return out - math.log(n) - d * (math.log(sigma) + 0.5 * math.log(2 * math.pi))


def hypercube_kde_log_density(
    x: ArrayLike, samples: ArrayLike, h: float, batch_size: int | None = None
) -> np.ndarray:
    """Log-density of a Parzen window whose kernel is the hypercube of side ``h``.

    ``p(x) = count(x) / (n h^D)``, where ``count(x)`` is the number of samples ``s`` with
    ``|x_k - s_k| <= h / 2`` in every coordinate ``k``; ``-inf`` where the count is 0. Meant for
    low ``D``: it compares one coordinate at a time (``D`` passes over each batch's block).

    Parameters
    ----------
    x : array_like, shape (N, D)
    samples : array_like, shape (n, D), n >= 1
    h : float
        Side of the window, > 0.
    batch_size : int, optional
        Query rows per batch (see ``sq_distance_blocks``).

    Returns
    -------
    np.ndarray, float64, shape (N,)
    """
    x, samples = _query_and_samples(x, samples)
    h = arguments.real(h, "h", 0, low_open=True)
    n, d = samples.shape
    rows = _batch_rows(batch_size, n)
    counts = np.empty(len(x))
    for start in range(0, len(x), rows):
        xb = x[start : start + rows]
        inside = np.ones((len(xb), n), dtype=bool)
        for k in range(d):
            inside &= np.abs(xb[:, k, None] - samples[:, k]) <= h / 2
        counts[start : start + len(xb)] = inside.sum(axis=1)
    with np.errstate(divide="ignore"):
        return np.log(counts) - math.log(n) - d * math.log(h)


def knn_log_density(
    x: ArrayLike, samples: ArrayLike, k: int, batch_size: int | None = None
) -> np.ndarray:
    """Log-density of the k-nearest-neighbour estimator ``p(x) = k / (n V_D r_k(x)^D)``.

    ``r_k(x)`` is the distance from ``x`` to its k-th nearest sample, counting tied and repeated
    samples once each; ``V_D = pi^(D/2) / Gamma(D/2 + 1)`` is the volume of the unit ball. The
    neighbour is found from the expanded distances of ``sq_distance_blocks``, then its distance
    is recomputed directly, so a query that coincides with ``k`` or more samples has
    ``r_k = 0`` and log-density ``+inf``. A query that is itself one of ``samples`` counts it as a
    neighbour (leave it out of ``samples`` for a leave-one-out estimate).

    Parameters
    ----------
    x : array_like, shape (N, D)
    samples : array_like, shape (n, D), n >= 1
    k : int
        Neighbour rank, 1 <= k <= n.
    batch_size : int, optional
        Query rows per batch (see ``sq_distance_blocks``).

    Returns
    -------
    np.ndarray, float64, shape (N,)
    """
    x, samples = _query_and_samples(x, samples)
    n, d = samples.shape
    k = arguments.integer(k, "k", 1, n)
    r2 = np.empty(len(x))
    for rows, d2 in _blocks(x, samples, _batch_rows(batch_size, n)):
        nearest = np.argpartition(d2, k - 1, axis=1)[:, k - 1]
        r2[rows] = ((x[rows] - samples[nearest]) ** 2).sum(axis=1)
    log_unit_ball = 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1)
    with np.errstate(divide="ignore"):
        return math.log(k) - math.log(n) - log_unit_ball - 0.5 * d * np.log(r2)


class Histogram:
    """Regular D-dimensional histogram density estimate, for low D.

    ``p(x) = count(cell of x) / (n * cell volume)``: ``-inf`` in empty cells and outside
    ``range``. Cells are half-open ``[lo, hi)`` except the last along each axis, which includes its
    right edge (as ``np.histogramdd``). The density is divided by all ``n`` samples, so it
    integrates to the fraction of samples inside ``range`` (1 with the default range).

    Parameters
    ----------
    bins : int or sequence of int
        Cells per axis, >= 1 (one value for every axis, or one per axis).
    range : sequence of (float, float), optional
        ``(lo, hi)`` per axis, ``lo < hi``; default the samples' min and max (widened by 0.5 on
        either side where they are equal, as ``np.histogramdd``).

    Attributes
    ----------
    edges_ : list of np.ndarray, shapes (bins[k] + 1,)
        Cell edges per axis, set by ``fit``.
    log_density_ : np.ndarray, float64, shape (bins[0], ..., bins[D-1])
        Log-density of each cell, set by ``fit``.
    """

    max_cells = 2**26

    def __init__(
        self, bins: int | Sequence[int] = 10, range: Sequence[tuple[float, float]] | None = None
    ) -> None:
        for b in [bins] if isinstance(bins, numbers.Number) else bins:
            arguments.integer(b, "bins", 1)
        if range is not None:
            for lo, hi in range:
                if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                    raise ValueError(
                        f"each range must be finite (lo, hi) with lo < hi, got {range}"
                    )
        self.bins, self.range = bins, range
        self.edges_: list[np.ndarray] | None = None
        self.log_density_: np.ndarray | None = None

    def fit(self, samples: ArrayLike) -> Histogram:
        """Count ``samples``, array_like of shape (n, D), n >= 1, into the cells; returns self."""
        samples = _points(samples, "samples")
        n, d = samples.shape
        if n == 0:
            raise ValueError("samples must have at least one row, got shape (0, D)")
        bins = [int(self.bins)] * d if isinstance(self.bins, numbers.Integral) else list(self.bins)
        if len(bins) != d:
            raise ValueError(f"bins has {len(bins)} entries but samples has D={d} columns")
        if self.range is not None and len(self.range) != d:
            raise ValueError(f"range has {len(self.range)} entries but samples has D={d} columns")
        if math.prod(bins) > self.max_cells:
            raise ValueError(f"{math.prod(bins)} cells is more than {self.max_cells}: lower bins")
        counts, self.edges_ = np.histogramdd(samples, bins=bins, range=self.range)
        log_volume = sum(math.log(e[1] - e[0]) for e in self.edges_)
        with np.errstate(divide="ignore"):
            self.log_density_ = np.log(counts) - math.log(n) - log_volume
        return self

    def log_density(self, x: ArrayLike) -> np.ndarray:
        """Log-density at each row of ``x``, array_like of shape (N, D); returns shape (N,)."""
        if self.edges_ is None:
            raise ValueError("Histogram.log_density called before fit")
        x = _points(x, "x")
        if x.shape[1] != len(self.edges_):
            raise ValueError(
                f"x has D={x.shape[1]} columns but the histogram was fit on D={len(self.edges_)}"
            )
        inside = np.ones(len(x), dtype=bool)
        cells = []
        for k, edges in enumerate(self.edges_):
            inside &= (x[:, k] >= edges[0]) & (x[:, k] <= edges[-1])
            cells.append(
                np.clip(np.searchsorted(edges, x[:, k], side="right") - 1, 0, len(edges) - 2)
            )
        out = np.full(len(x), -np.inf)
        out[inside] = self.log_density_[tuple(c[inside] for c in cells)]
        return out


# ---- bandwidth selection ------------------------------------------------------------------------
def select_bandwidth(
    log_density_fn: Callable[[np.ndarray, np.ndarray, float], np.ndarray],
    samples: ArrayLike,
    held_out: ArrayLike,
    grid: Sequence[float] | np.ndarray,
) -> tuple[float, np.ndarray]:
    """Pick the bandwidth that maximises the mean log-likelihood of held-out points.

    Parameters
    ----------
    log_density_fn : callable
        ``log_density_fn(held_out, samples, bandwidth) -> (N,)`` log-densities, e.g.
        ``gaussian_kde_log_density`` (use ``functools.partial`` to fix ``batch_size``).
    samples : array_like, shape (n, D)
        The estimator's data.
    held_out : array_like, shape (N, D), N >= 1
        Points not in ``samples`` that score each bandwidth.
    grid : sequence of float, length G >= 1
        Candidate bandwidths; the first wins a tie.

    Returns
    -------
    best : float
        The grid value with the highest mean held-out log-likelihood.
    scores : np.ndarray, float64, shape (G,)
        Mean held-out log-likelihood per grid value (``-inf`` where some point gets density 0).
    """
    held_out, samples = _query_and_samples(held_out, samples, "held_out")
    if len(held_out) == 0:
        raise ValueError("held_out must have at least one row, got shape (0, D)")
    grid = np.asarray(grid)
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"grid must be a non-empty 1-D sequence, got shape {grid.shape}")
    scores = np.array([np.mean(log_density_fn(held_out, samples, g.item())) for g in grid])
    if np.isnan(scores).any() or not (scores > -np.inf).any():
        raise ValueError(f"no grid value gives a usable held-out log-likelihood: {scores}")
    return grid[np.argmax(scores)].item(), scores
