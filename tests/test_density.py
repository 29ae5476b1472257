"""Tests for tinygan.density: Parzen windows, k-NN and histogram estimators, bandwidth selection.

References are direct float64 loops over (query, sample) pairs, written from the definitions and
independently of the batched ||a||^2 + ||b||^2 - 2 a.b expansion.
"""

import functools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygan import density
from tinygan.density import (
    Histogram,
    gaussian_kde_log_density,
    hypercube_kde_log_density,
    knn_log_density,
    select_bandwidth,
    sq_distance_blocks,
)
from tinygan.testing import seeds

from . import reference

EPS = np.finfo(np.float64).eps


def unit_ball_volume(d: int) -> float:
    """V_0 = 1, V_1 = 2, V_d = 2 pi / d * V_{d-2} (no Gamma function, unlike the code)."""
    return 1.0 if d == 0 else 2.0 if d == 1 else 2 * math.pi / d * unit_ball_volume(d - 2)


@st.composite
def point_sets(draw, max_query=5, max_samples=6, max_dim=4):
    rng = np.random.default_rng(draw(seeds))
    n_query, n, d = (draw(st.integers(lo, hi)) for lo, hi in
                     ((0, max_query), (1, max_samples), (1, max_dim)))  # fmt: skip
    scale = 10.0 ** draw(st.integers(-2, 1))
    return rng.standard_normal((n_query, d)) * scale, rng.standard_normal((n, d)) * scale


# ---- Gaussian KDE -------------------------------------------------------------------------------
@given(points=point_sets(), log_sigma=st.floats(-3, 2), batch=st.integers(1, 6))
def test_gaussian_kde_matches_direct_logsumexp(points, log_sigma, batch):
    x, samples = points
    sigma = 10.0**log_sigma
    out = gaussian_kde_log_density(x, samples, sigma, batch_size=batch)
    ref = reference.gaussian_kde(x, samples, sigma)
    assert out.shape == (len(x),) and out.dtype == np.float64
    # The expansion's rounding in ||x - s||^2 is about D * eps * (||x||^2 + ||s||^2); dividing by
    # 2 sigma^2 turns it into an absolute error of the log-density.
    norms = (x**2).sum(1).max(initial=0) + (samples**2).sum(1).max()
    atol = 8 * x.shape[1] * EPS * norms / (2 * sigma**2)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=atol)


def test_gaussian_kde_tiny_sigma_does_not_underflow():
    sigma = 1e-3
    samples = np.array([[1.0, 0.0], [0.0, 1.5]])
    x = np.zeros((1, 2))
    naive = np.exp(-((x - samples) ** 2).sum(1) / (2 * sigma**2)).mean()
    assert naive == 0.0  # exp(-5e5) underflows: log(naive) would be -inf
    out = gaussian_kde_log_density(x, samples, sigma)
    # logsumexp of -0.5e6 and -1.125e6 is -0.5e6 + log1p(exp(-625000)) = -0.5e6 exactly in float64
    expected = -1 / (2 * sigma**2) - math.log(2) - math.log(2 * math.pi * sigma**2)
    assert np.isfinite(out[0]) and out[0] == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("d", [1, 2])
def test_gaussian_kde_integrates_to_one(d):
    # The trapezoid rule on a uniform grid of step h is spectrally accurate for a Gaussian of
    # width sigma (error ~ exp(-2 pi^2 sigma^2 / h^2) = exp(-316) at h = sigma / 4), and the
    # grid reaches 10 sigma past every sample (lost tail mass < 1e-22), so only rounding remains.
    rng = np.random.default_rng(0)
    sigma = 0.5
    samples = rng.standard_normal((7, d))
    axis = np.arange(samples.min() - 10 * sigma, samples.max() + 10 * sigma, sigma / 4)
    grid = np.stack(np.meshgrid(*[axis] * d, indexing="ij"), -1).reshape(-1, d)
    p = np.exp(gaussian_kde_log_density(grid, samples, sigma))
    assert p.sum() * (sigma / 4) ** d == pytest.approx(1.0, abs=1e-10)


# ---- batching -----------------------------------------------------------------------------------
def test_sq_distance_blocks_match_direct_and_respect_the_budget(monkeypatch):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((10, 3)), rng.standard_normal((4, 3))
    monkeypatch.setattr(density, "BLOCK_BYTES", 8 * 4 * 3)  # room for 3 rows of 4 distances
    blocks = list(sq_distance_blocks(x, y))
    assert [b.shape for _, b in blocks] == [(3, 4), (3, 4), (3, 4), (1, 4)]
    d2 = np.concatenate([b for _, b in blocks])
    ref = np.array([[reference.sq_dist(a, b) for b in y] for a in x])
    np.testing.assert_allclose(d2, ref, rtol=1e-13, atol=1e-14)
    same = np.concatenate([b for _, b in sq_distance_blocks(x, x[:2])])
    assert same[0, 0] == 0.0 and same[1, 1] == 0.0 and same.min() >= 0.0  # clamped at 0


@pytest.mark.parametrize(
    ("fn", "param"),
    [(gaussian_kde_log_density, 0.7), (hypercube_kde_log_density, 1.5), (knn_log_density, 3)],
)
def test_batching_gives_the_one_batch_result(fn, param):
    rng = np.random.default_rng(2)
    x, samples = rng.standard_normal((23, 3)), rng.standard_normal((40, 3))
    whole = fn(x, samples, param, batch_size=len(x))
    for batch in (1, 4, 22, None):
        # Each row's distances come from its own GEMM row, so only BLAS blocking can differ.
        np.testing.assert_allclose(fn(x, samples, param, batch_size=batch), whole, rtol=1e-13)


# ---- hypercube KDE ------------------------------------------------------------------------------
@given(seed=seeds, n_query=st.integers(0, 6), n=st.integers(1, 8), d=st.integers(1, 3),
       h=st.sampled_from([0.5, 1.0, 2.0, 3.0]))  # fmt: skip
def test_hypercube_kde_matches_direct_count(seed, n_query, n, d, h):
    # Integer points, so |x - s| == h / 2 happens: the window is closed on both sides.
    rng = np.random.default_rng(seed)
    x, samples = rng.integers(0, 4, (n_query, d)), rng.integers(0, 4, (n, d))
    out = hypercube_kde_log_density(x, samples, h)
    for i, xi in enumerate(x):
        count = sum(all(abs(int(a) - int(b)) <= h / 2 for a, b in zip(xi, s)) for s in samples)
        expected = math.log(count / (n * h**d)) if count else -math.inf
        assert out[i] == pytest.approx(expected, rel=1e-14)


def test_hypercube_kde_integrates_to_one_in_1d():
    # p is constant between consecutive window edges s_j +- h/2: summing p(midpoint) * length
    # over those intervals is the exact integral, up to rounding.
    rng = np.random.default_rng(3)
    samples, h = rng.standard_normal((9, 1)), 0.4
    edges = np.unique(np.concatenate([samples[:, 0] - h / 2, samples[:, 0] + h / 2]))
    mids = (edges[:-1] + edges[1:]) / 2
    p = np.exp(hypercube_kde_log_density(mids[:, None], samples, h))
    assert (p * np.diff(edges)).sum() == pytest.approx(1.0, abs=1e-12)
    assert hypercube_kde_log_density([[edges[0] - 1e-9]], samples, h)[0] == -np.inf


# ---- k-nearest neighbours -----------------------------------------------------------------------
@given(points=point_sets(max_samples=8, max_dim=5), data=st.data())
def test_knn_matches_direct(points, data):
    x, samples = points
    n, d = samples.shape
    k = data.draw(st.integers(1, n))
    out = knn_log_density(x, samples, k)
    for i, xi in enumerate(x):
        r = math.sqrt(sorted(reference.sq_dist(xi, s) for s in samples)[k - 1])
        expected = math.log(k / (n * unit_ball_volume(d) * r**d))
        assert out[i] == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_knn_ties_and_zero_radius():
    samples = np.array([[0.0], [0.0], [1.0], [-1.0]])
    out = [knn_log_density([[0.0]], samples, k)[0] for k in (1, 2, 3, 4)]
    # Repeated samples count once each: r_1 = r_2 = 0 (+inf), r_3 = r_4 = 1 (tied).
    assert out[:2] == [np.inf, np.inf]
    assert out[2] == pytest.approx(math.log(3 / (4 * 2 * 1.0)))
    assert out[3] == pytest.approx(math.log(4 / (4 * 2 * 1.0)))
    # A query far from the origin still gets exactly r = 0 on a repeated sample.
    far = np.array([[1e8, -3e7, 5e7]] * 2 + [[0.0, 0.0, 0.0]])
    assert knn_log_density(far[:1], far, 2)[0] == np.inf


# ---- histogram ----------------------------------------------------------------------------------
def in_cell(v, edges, i):
    """Cell i is [edges[i], edges[i + 1]), the last one closed on the right too."""
    last = i == len(edges) - 2
    return (v >= edges[i]) & ((v <= edges[i + 1]) if last else (v < edges[i + 1]))


def test_histogram_matches_counts_and_integrates_to_one():
    rng = np.random.default_rng(4)
    samples = rng.standard_normal((500, 2))
    hist = Histogram(bins=(6, 4)).fit(samples)
    ex, ey = hist.edges_
    centres = np.stack(
        np.meshgrid((ex[:-1] + ex[1:]) / 2, (ey[:-1] + ey[1:]) / 2, indexing="ij"), -1
    )
    log_p = hist.log_density(centres.reshape(-1, 2)).reshape(6, 4)
    volume = (ex[1] - ex[0]) * (ey[1] - ey[0])
    assert np.exp(log_p).sum() * volume == pytest.approx(1.0, rel=1e-13)
    for i in range(6):
        for j in range(4):
            inx, iny = in_cell(samples[:, 0], ex, i), in_cell(samples[:, 1], ey, j)
            count = int((inx & iny).sum())
            expected = math.log(count / (500 * volume)) if count else -math.inf
            assert log_p[i, j] == pytest.approx(expected, rel=1e-13)
    # The corners of the support are inside (closed last cell); just outside is -inf.
    corner = hist.log_density([[ex[0], ey[0]], [ex[-1], ey[-1]], [ex[-1] + 1e-9, 0.0]])
    assert corner[0] == log_p[0, 0] and corner[1] == log_p[-1, -1] and corner[2] == -np.inf


def test_histogram_with_a_range_counts_only_inside():
    samples = np.array([[0.1], [0.2], [0.7], [5.0]])  # the last falls outside the range
    hist = Histogram(bins=2, range=[(0.0, 1.0)]).fit(samples)
    np.testing.assert_allclose(np.exp(hist.log_density([[0.3], [0.9], [2.0]])), [1.0, 0.5, 0.0])
    # An interior edge belongs to the cell on its right, [0.5, 1]; the range's ends are inside.
    np.testing.assert_allclose(np.exp(hist.log_density([[0.5], [0.0], [1.0]])), [0.5, 1.0, 0.5])


# ---- bandwidth selection ------------------------------------------------------------------------
@pytest.mark.outcome
def test_select_bandwidth_recovers_a_known_sigma(seed_offset, outcome):
    # With a single sample at the true mean, the Gaussian KDE is exactly N(mu, sigma^2 I), whose
    # held-out log-likelihood -D/2 log(2 pi sigma^2) - S / (2 sigma^2) peaks at
    # sigma^2 = S / D (S the mean squared deviation): the grid point with the best closed-form
    # score must win, and it lies next to the true 0.3.
    rng = np.random.default_rng(5 + seed_offset)
    d, mu = 10, rng.standard_normal(10)
    held_out = mu + 0.3 * rng.standard_normal((2000, d))
    grid = np.logspace(-2, 1, 31)
    best, scores = select_bandwidth(gaussian_kde_log_density, mu[None], held_out, grid)
    s = ((held_out - mu) ** 2).sum(1).mean()
    closed = -d / 2 * np.log(2 * np.pi * grid**2) - s / (2 * grid**2)
    np.testing.assert_allclose(scores, closed, rtol=1e-12)
    assert best == grid[np.argmax(closed)]
    outcome.check("|log10(best / 0.3)|", abs(math.log10(best / 0.3)), "<=", 0.05)


@pytest.mark.outcome
def test_select_bandwidth_is_interior_on_gaussian_data(seed_offset, outcome):
    # 200 samples of N(0, 1): the likelihood-optimal bandwidth is of the order of Silverman's
    # 1.06 n^(-1/5) = 0.37, far inside the grid 0.01 .. 10, whose ends must both score worse.
    rng = np.random.default_rng(6 + seed_offset)
    samples, held_out = rng.standard_normal((200, 1)), rng.standard_normal((2000, 1))
    grid = np.logspace(-2, 1, 31)
    fn = functools.partial(gaussian_kde_log_density, batch_size=500)
    best, scores = select_bandwidth(fn, samples, held_out, grid)
    outcome.check("best bandwidth", best, ">", 0.15)
    outcome.check("best bandwidth", best, "<", 0.8)
    assert 3 < np.argmax(scores) < len(grid) - 4
    outcome.check("best score - score at 0.01", scores.max() - scores[0], ">", 1)
    outcome.check("best score - score at 10", scores.max() - scores[-1], ">", 0.5)


def test_select_bandwidth_handles_minus_inf_and_ties():
    samples = np.array([[0.0], [2.0]])
    held_out = np.array([[1.0]])
    # h = 1 is too narrow (no sample in the window): -inf; h = 2 and 3 both see both samples.
    best, scores = select_bandwidth(hypercube_kde_log_density, samples, held_out, [1.0, 3.0, 2.0])
    assert scores[0] == -np.inf and best == 2.0  # 1 / (2 * 2) beats 2 / (2 * 3)
    best, _ = select_bandwidth(knn_log_density, samples, held_out, [2, 1])  # tie: first wins
    assert best == 2


# ---- validation ---------------------------------------------------------------------------------
X = np.zeros((3, 2))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [(lambda: gaussian_kde_log_density(X, X, 0.0), ValueError, "sigma must be a finite number > 0; got 0.0"),
     (lambda: gaussian_kde_log_density(X, X, -1), ValueError, "got -1"),
     (lambda: gaussian_kde_log_density(X, X, np.inf), ValueError, "got inf"),
     (lambda: gaussian_kde_log_density(X, X, "1"), TypeError, "sigma must be a real number"),
     (lambda: gaussian_kde_log_density(X, X, True), TypeError, "got bool"),
     (lambda: gaussian_kde_log_density(X[0], X, 1.0), ValueError, r"x must be 2-D.*\(2,\)"),
     (lambda: gaussian_kde_log_density(X, np.zeros((3, 3)), 1.0), ValueError, "D=2 .* D=3"),
     (lambda: gaussian_kde_log_density(X, np.zeros((0, 2)), 1.0), ValueError, "at least one row"),
     (lambda: gaussian_kde_log_density(X, [[np.nan, 0.0]], 1.0), ValueError, "finite"),
     (lambda: gaussian_kde_log_density(X.astype(bool), X, 1.0), TypeError, "dtype bool"),
     (lambda: gaussian_kde_log_density(X, X, 1.0, batch_size=0), ValueError, "batch_size.*got 0"),
     (lambda: gaussian_kde_log_density(X, X, 1.0, batch_size=2.0), TypeError, "batch_size"),
     (lambda: hypercube_kde_log_density(X, X, 0.0), ValueError, "h must be a finite number > 0"),
     (lambda: knn_log_density(X, X, 0), ValueError, r"k must be an int in \[1, 3\]; got 0"),
     (lambda: knn_log_density(X, X, 4), ValueError, r"k must be an int in \[1, 3\]; got 4"),
     (lambda: knn_log_density(X, X, 1.5), TypeError, "k must be an int"),
     (lambda: Histogram(bins=0), ValueError, "bins must be an int >= 1; got 0"),
     (lambda: Histogram(bins=2.5), TypeError, "bins must be an int"),
     (lambda: Histogram(range=[(1.0, 1.0)]), ValueError, "lo < hi"),
     (lambda: Histogram(bins=(2, 3)).fit(np.zeros((3, 3))), ValueError, "bins has 2 entries.*D=3"),
     (lambda: Histogram(range=[(0, 1)]).fit(X), ValueError, "range has 1 entries.*D=2"),
     (lambda: Histogram(bins=2**14).fit(X), ValueError, "cells"),
     (lambda: Histogram().log_density(X), ValueError, "before fit"),
     (lambda: Histogram().fit(X).log_density(np.zeros((1, 3))), ValueError, "D=3.*D=2"),
     (lambda: select_bandwidth(gaussian_kde_log_density, X, X, []), ValueError, "non-empty 1-D"),
     (lambda: select_bandwidth(gaussian_kde_log_density, X, X[:0], [1.0]), ValueError, "held_out"),
     (lambda: select_bandwidth(gaussian_kde_log_density, X, X[:, :1], [1.0]), ValueError, "held_out has D=1"),
     (lambda: select_bandwidth(hypercube_kde_log_density, X, X + 5, [1.0]), ValueError, "usable")],
)  # fmt: skip
def test_validation(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_empty_queries_give_empty_results():
    for fn, param in ((gaussian_kde_log_density, 1.0), (hypercube_kde_log_density, 1.0),
                      (knn_log_density, 1)):  # fmt: skip
        assert fn(np.zeros((0, 2)), X, param).shape == (0,)
