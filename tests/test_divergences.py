"""tinygan.models.divergences: f-GAN's table checked against convex analysis, in float64."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given

import tinygan as tg
from tinygan.models.divergences import (
    DIVERGENCES,
    Divergence,
    get_divergence,
    variational_bound,
    wright_omega,
)
from tinygan.nn import functional as F
from tinygan.testing import seeds

NAMES = list(DIVERGENCES)
per_divergence = pytest.mark.parametrize("name", NAMES)


def T(a, dtype=np.float64, requires_grad=False) -> tg.Tensor:
    return tg.Tensor(np.asarray(a, dtype=dtype), requires_grad=requires_grad)


def ev(fn, a) -> np.ndarray:
    """``fn`` (a Tensor function) on a float64 array, back as an array."""
    return fn(T(a)).numpy()


def uniform(seed, lo, hi, n):
    return np.random.default_rng(seed).uniform(lo, hi, n)


def maximiser(div: Divergence, t: np.ndarray) -> np.ndarray:
    """``u* = f*'(t)`` by autograd: where ``u* > 0`` it attains ``sup_u (u t - f(u))``."""
    tt = T(t, requires_grad=True)
    div.conjugate(tt).sum().backward()
    return tt.grad


def numeric_conjugate(div: Divergence, t: np.ndarray) -> np.ndarray:
    """``sup_{u > 0} (u t - f(u))`` per element of ``t``: a grid in log u, then golden section.

    ``u t - f(u)`` is concave in ``u``, hence unimodal in ``s = log u``: the grid's best point
    (spacing 0.005) brackets the maximum, which 50 golden-section steps then pin down.
    """

    def objective(s):
        u = np.exp(s)
        return u * t[:, None] - ev(div.f, u)

    grid = np.linspace(-20.0, 20.0, 8001)
    values = objective(np.broadcast_to(grid, (len(t), len(grid))))
    best = values.max(1)
    a = grid[values.argmax(1)][:, None] - 0.005
    b = a + 0.01
    r = (math.sqrt(5) - 1) / 2
    for _ in range(50):  # 0.01 * 0.618**50 = 4e-13
        c, d = b - r * (b - a), a + r * (b - a)
        fc, fd = objective(c), objective(d)
        best = np.maximum(best, np.maximum(fc, fd)[:, 0])
        a, b = np.where(fc > fd, a, c), np.where(fc > fd, d, b)
    return best


def test_the_table_has_the_nine_divergences_of_the_paper():
    assert NAMES == ["total_variation", "kl", "reverse_kl", "pearson", "neyman",
                     "squared_hellinger", "jeffrey", "jensen_shannon", "gan"]  # fmt: skip
    for name, div in DIVERGENCES.items():
        assert div.name == name and get_divergence(name) is div


@per_divergence
@given(seed=seeds)
def test_f_is_convex_and_vanishes_at_one(name, seed):
    div = DIVERGENCES[name]
    # the paper's GAN f is 2 JS - log 4 (f(1) = -log 4), all others are proper divergences
    np.testing.assert_allclose(ev(div.f, 1.0), -math.log(4) if name == "gan" else 0.0, atol=1e-15)
    a, b = np.exp(uniform(seed, -8, 8, (2, 50)))
    mid, chord = ev(div.f, (a + b) / 2), (ev(div.f, a) + ev(div.f, b)) / 2
    scale = np.abs(ev(div.f, a)) + np.abs(ev(div.f, b)) + 1
    assert np.all(mid <= chord + 1e-13 * scale)
    # and strictly convex somewhere between the two points (TV is linear on each side of 1)
    assert np.any(mid < chord - 1e-6 * scale)


@per_divergence
@given(seed=seeds)
def test_fenchel_young_holds_and_is_tight_at_the_maximiser(name, seed):
    """``f(u) + f*(t) >= u t`` for all u > 0, t in dom f*; equality at ``u = f*'(t)``."""
    div = DIVERGENCES[name]
    u = np.exp(uniform(seed, -10, 10, 200))
    t = ev(div.activation, uniform(seed + 1, -10, 10, 200))
    fu, ft = ev(div.f, u), ev(div.conjugate, t)
    scale = np.abs(fu) + np.abs(ft) + np.abs(u * t)
    assert np.all(fu + ft - u * t >= -1e-13 * scale)

    star = maximiser(div, t)
    ok = star > 0  # Pearson's f* is the conjugate over all real u: u* = 1 + t/2 < 0 for t < -2
    assert ok.sum() >= 50 if name == "pearson" else ok.all()  # Pearson: 60% of t expected
    t, star, ft = t[ok], star[ok], ft[ok]
    fs = ev(div.f, star)
    scale = np.abs(fs) + np.abs(ft) + np.abs(star * t)
    # 1e-10: near the edge of dom f* the plain conjugates cancel (GAN's 1 - e^t at t = -5e-5,
    # v = 10, keeps 1e-16 / 5e-5 = 2e-12 relative), beyond the eps-level rounding of the sum
    np.testing.assert_array_less(np.abs(fs + ft - star * t), 1e-10 * scale + 1e-14)


@per_divergence
@given(seed=seeds)
def test_conjugate_is_the_numeric_supremum(name, seed):
    """Closed-form ``f*(t)`` against ``sup_{u>0} (u t - f(u))`` found by search.

    At the maximum the objective is flat, so golden section's location error (~1e-8 in log u,
    the sqrt(eps) limit of comparing values) moves the value by ~1e-16 relative; what is left is
    rounding in ``u t - f(u)``, a few eps times ``|u t| + |f(u)|``: hence 1e-12 of that scale.
    """
    div = DIVERGENCES[name]
    lo = -1.9 if name == "pearson" else -5.0  # Pearson: t >= -2 keeps the maximiser 1 + t/2 > 0
    t = ev(div.activation, uniform(seed, lo, 5, 8))
    closed, numeric = ev(div.conjugate, t), numeric_conjugate(div, t)
    star = maximiser(div, t)
    scale = np.abs(star * t) + np.abs(ev(div.f, star)) + 1e-3
    assert np.all(numeric <= closed + 1e-13 * scale)  # the search never beats the supremum
    np.testing.assert_array_less(np.abs(closed - numeric), 1e-12 * scale)


def test_pearson_conjugate_is_over_all_real_u():
    """For t < -2, the paper's ``t^2/4 + t`` exceeds ``sup_{u>0} = -f(0) = -1``: a valid but
    looser bound (F only gets smaller), kept as in the paper."""
    div = DIVERGENCES["pearson"]
    t = np.array([-2.5, -4.0, -10.0])
    np.testing.assert_allclose(numeric_conjugate(div, t), -1.0, atol=1e-6)
    np.testing.assert_allclose(ev(div.conjugate, t), t**2 / 4 + t)


@per_divergence
@given(seed=seeds)
def test_activation_maps_into_the_domain(name, seed):
    div = DIVERGENCES[name]
    lo, hi = div.domain
    # |v| <= 18: strictly inside (beyond, 1 - e^-v and 0.5 tanh(v) round onto the edge in float64)
    g = ev(div.activation, np.concatenate([uniform(seed, -18, 18, 100), [-18.0, 0.0, 18.0]]))
    assert np.all((lo < g) & (g < hi)), g[~((lo < g) & (g < hi))]
    g = ev(div.activation, np.concatenate([uniform(seed, -700, 700, 100), [-700.0, 700.0]]))
    assert np.all((lo <= g) & (g <= hi)) and np.all(np.isfinite(g))


@per_divergence
@given(seed=seeds)
def test_conjugate_of_activation_is_the_conjugate_of_the_activation(name, seed):
    """Equal for moderate v. The composed form loses up to e^|v| <= 2e4 times eps (e.g.
    ``1 - t`` for ``t = 1 - e^-v``), ~3e-12 relative: 1e-9 leaves margin and catches any slip."""
    div = DIVERGENCES[name]
    v = np.concatenate([uniform(seed, -10, 10, 50), [-10.0, 0.0, 10.0]])
    direct, composed = ev(div.conjugate_of_activation, v), ev(div.conjugate, ev(div.activation, v))
    np.testing.assert_allclose(direct, composed, rtol=1e-9, atol=1e-12)


@per_divergence
def test_conjugate_of_activation_is_finite_in_float32(name):
    div = DIVERGENCES[name]
    v = np.linspace(-20, 20, 401)
    v32 = T(v, np.float32, requires_grad=True)
    y = div.conjugate_of_activation(v32)
    y.sum().backward()
    assert y.dtype == np.float32 and v32.grad.dtype == np.float32
    assert np.all(np.isfinite(y.numpy())) and np.all(np.isfinite(v32.grad))
    np.testing.assert_allclose(y.numpy(), ev(div.conjugate_of_activation, v), rtol=1e-5, atol=1e-6)
    # so the bound is finite too, where f*(g(v)) composed would hit f*'s pole (1 - g(20) == 0)
    assert np.isfinite(variational_bound(div, v32, v32).item())


@per_divergence
@given(seed=seeds)
def test_gradcheck_activation_and_conjugate_of_activation(name, seed):
    div = DIVERGENCES[name]
    v = T(uniform(seed, -6, 6, 6), requires_grad=True)
    assert tg.gradcheck(div.conjugate_of_activation, [v])
    assert tg.gradcheck(div.activation, [v])


@pytest.mark.gpu
@per_divergence
def test_gpu_matches_cpu(name):
    cupy = tg.backend.cupy()
    div = DIVERGENCES[name]
    v = np.linspace(-20, 20, 101)
    for fn in (div.activation, div.conjugate_of_activation):
        out = fn(tg.Tensor(cupy.asarray(v)))
        assert isinstance(out.data, cupy.ndarray)
        np.testing.assert_allclose(out.data.get(), ev(fn, v), rtol=1e-12, atol=1e-15)
    vc = tg.Tensor(cupy.asarray(v), requires_grad=True)
    variational_bound(div, vc, vc).backward()
    v64 = T(v, requires_grad=True)
    variational_bound(div, v64, v64).backward()
    np.testing.assert_allclose(vc.grad.get(), v64.grad, rtol=1e-12, atol=1e-15)


@given(seed=seeds)
def test_gradcheck_wright_omega(seed):
    x = T(np.concatenate([uniform(seed, -30, 30, 6), [0.0, 1.0, -2.0]]), requires_grad=True)
    assert tg.gradcheck(wright_omega, [x])


@given(seed=seeds)
def test_wright_omega_solves_omega_plus_log_omega_equals_x(seed):
    """The residual pins omega down: ``d(w + log w)/dw >= 1``, so |error| <= |residual|."""
    x = np.concatenate([uniform(seed, -30, 700, 500), [-30.0, -2.0, 0.0, 1.0, 700.0]])
    w = ev(wright_omega, x)
    residual = np.abs(w + np.log(w) - x)
    np.testing.assert_array_less(residual, 1e-12 * (w + np.abs(np.log(w))))
    assert np.all(np.diff(w[np.argsort(x)]) >= 0)


def test_wright_omega_known_values_extremes_and_float32():
    # W(1) = Omega constant; W(e) = 1; omega(x) = e^x to double precision below -50
    np.testing.assert_allclose(ev(wright_omega, [0.0, 1.0]), [0.5671432904097838, 1.0], rtol=1e-15)
    x = np.array([-1e300, -800.0, -745.0, -300.0, -51.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, underflow-to-nan or log(0) on the way
        np.testing.assert_array_equal(ev(wright_omega, x), np.exp(x))
        big = np.array([1e21, 1e300, 1.7e308])
        np.testing.assert_allclose(ev(wright_omega, big), big - np.log(big), rtol=1e-15)
    x = uniform(0, -30, 30, 200)
    w32 = wright_omega(T(x, np.float32))
    assert w32.dtype == np.float32
    # float32 rounding of x alone moves omega by |x| / (1 + omega) * 6e-8 <= 2e-6 relative
    np.testing.assert_allclose(w32.numpy(), ev(wright_omega, x.astype(np.float32)), rtol=5e-6)


def bound_reference(div, v_real, v_fake):
    """``mean(g(v_real)) - mean(f*(g(v_fake)))`` through the plain conjugate."""
    return ev(div.activation, v_real).mean() - ev(div.conjugate, ev(div.activation, v_fake)).mean()


@per_divergence
@given(seed=seeds)
def test_variational_bound_is_the_formula(name, seed):
    div = DIVERGENCES[name]
    v_real, v_fake = uniform(seed, -4, 4, (2, 3, 4))
    v_fake = v_fake[:2]  # any shapes: the two sample sets need not be the same size
    out = variational_bound(div, T(v_real), T(v_fake))
    assert out.shape == () and out.dtype == np.float64
    np.testing.assert_allclose(
        out.item(), bound_reference(div, v_real, v_fake), rtol=1e-10, atol=1e-12
    )
    a, b = T(v_real, requires_grad=True), T(v_fake, requires_grad=True)
    assert tg.gradcheck(lambda a, b: variational_bound(div, a, b), [a, b])


def invert_activation(div, target):
    """v with ``g(v) = target`` by bisection on [-40, 40] (every activation is increasing)."""
    lo, hi = np.full_like(target, -40.0), np.full_like(target, 40.0)
    for _ in range(64):  # 80 / 2**64 is below double resolution
        mid = (lo + hi) / 2
        below = ev(div.activation, mid) < target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return (lo + hi) / 2


@per_divergence
@given(seed=seeds)
def test_bound_is_below_the_divergence_and_tight_at_the_optimal_critic(name, seed):
    """P and Q on 4 atoms with rational masses, as samples (atom k repeated count_k times), so
    sample means are expectations. ``F <= D_f(P || Q) = sum_k q_k f(p_k / q_k)`` for any critic,
    with equality at ``T_k = f'(p_k / q_k)`` (f' by autograd, mapped back to v by bisection)."""
    div = DIVERGENCES[name]
    rng = np.random.default_rng(seed)
    count_p, count_q = rng.integers(1, 5, (2, 4))
    p, q = count_p / count_p.sum(), count_q / count_q.sum()
    u = T(p / q, requires_grad=True)
    div.f(u).sum().backward()
    d_f = float(np.sum(q * ev(div.f, p / q)))

    def bound(v):
        return variational_bound(div, T(np.repeat(v, count_p)), T(np.repeat(v, count_q))).item()

    for _ in range(5):
        assert bound(rng.normal(0, 3, 4)) <= d_f + 1e-12
    np.testing.assert_allclose(bound(invert_activation(div, u.grad)), d_f, rtol=1e-9, atol=1e-12)


@given(seed=seeds)
def test_gan_bound_is_minus_the_discriminator_bce_loss(seed):
    """f-GAN's GAN row: F = mean(log sigmoid(v_real)) + mean(log(1 - sigmoid(v_fake))), so
    -F = BCE(v_real, 1) + BCE(v_fake, 0) with no constant (the f has f(1) = -log 4); the JS row
    differs from it by exactly log 4 (both are 2 JS, one shifted by the constant)."""
    v_real, v_fake = uniform(seed, -15, 15, (2, 16))
    f_gan = variational_bound(get_divergence("gan"), T(v_real), T(v_fake)).item()
    bce = F.binary_cross_entropy_with_logits(T(v_real), T(np.ones(16))) + (
        F.binary_cross_entropy_with_logits(T(v_fake), T(np.zeros(16)))
    )
    np.testing.assert_allclose(-f_gan, bce.item(), rtol=1e-12)
    f_js = variational_bound(get_divergence("jensen_shannon"), T(v_real), T(v_fake)).item()
    np.testing.assert_allclose(f_js, f_gan + math.log(4), rtol=1e-12)


def test_get_divergence_errors():
    with pytest.raises(ValueError, match=r"unknown divergence 'KL'; expected one of "
                       r"total_variation, kl, reverse_kl, .*, jensen_shannon, gan"):  # fmt: skip
        get_divergence("KL")
    with pytest.raises(TypeError, match="must be a str; got int 3"):
        get_divergence(3)


def test_variational_bound_errors():
    div, v = get_divergence("kl"), T(np.zeros(3))
    with pytest.raises(TypeError, match="must be a Divergence"):
        variational_bound("kl", v, v)
    with pytest.raises(TypeError, match="v_fake must be a Tensor; got ndarray"):
        variational_bound(div, v, np.zeros(3))
    with pytest.raises(ValueError, match=r"v_real is empty \(shape \(0,\)\)"):
        variational_bound(div, T(np.zeros(0)), v)
