"""tinygan.augment: random affine maps of image batches, against a per-pixel loop oracle and
exact identities (identity map, integer shifts as zero-filled rolls, quarter turns as rot90)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import reference
from tinygan import backend
from tinygan.augment import (
    AffineParams,
    RandomAffine,
    affine_transform,
    bilinear_sample,
    source_coordinates,
)
from tinygan.testing import seeds

sizes = st.integers(1, 7)


def images(seed: int, shape, xp=np, dtype=np.float64):
    return xp.asarray(np.random.default_rng(seed).random(shape), dtype=dtype)


def maps(seed: int, n: int, rotation=180.0, scale=(0.5, 2.0), shift=4.0) -> AffineParams:
    return RandomAffine(rotation, scale, shift).sample(n, np.random.default_rng(seed))


@given(seed=seeds, n=st.integers(1, 3), c=st.integers(1, 2), h=sizes, w=sizes)
def test_matches_the_per_pixel_oracle(seed, n, c, h, w):
    x, p = images(seed, (n, c, h, w)), maps(seed + 1, n)
    expected = reference.affine_warp(x, p.angle, p.scale, p.shift)
    np.testing.assert_allclose(affine_transform(x, p), expected, rtol=1e-10, atol=1e-12)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # xp: a module, no state
@given(seed=seeds, h=sizes, w=sizes)
def test_identity_leaves_images_unchanged(seed, h, w, xp):
    for dtype in (np.float64, np.float32):
        x = images(seed, (2, 3, h, w), xp, dtype)
        y = affine_transform(x, AffineParams.identity(2))
        assert y.dtype == dtype and y.shape == x.shape
        xp.testing.assert_array_equal(y, x)


@given(seed=seeds, h=sizes, w=sizes, dy=st.integers(-8, 8), dx=st.integers(-8, 8))
def test_integer_shift_is_a_zero_filled_roll(seed, h, w, dy, dx):
    x = images(seed, (1, 2, h, w))
    shifted = affine_transform(x, AffineParams(np.zeros(1), np.ones(1), np.array([[dy, dx]])))
    rolled = np.roll(x, (dy, dx), axis=(-2, -1))
    source_row, source_col = np.arange(h) - dy, np.arange(w) - dx
    came_from_outside = ~np.logical_and.outer(
        (source_row >= 0) & (source_row < h), (source_col >= 0) & (source_col < w)
    )
    rolled[..., came_from_outside] = 0  # zero-filled: nothing wraps around
    np.testing.assert_array_equal(shifted, rolled)


@given(seed=seeds, side=st.integers(1, 9), turns=st.integers(-4, 4))
def test_quarter_turns_about_the_centre_are_rot90(seed, side, turns):
    """Counter-clockwise as displayed, like np.rot90; odd and even sides (centre on a pixel or
    between four)."""
    x = images(seed, (1, 1, side, side))
    p = AffineParams(np.array([turns * math.pi / 2]), np.ones(1), np.zeros((1, 2)))
    # cos(pi / 2) is 6e-17, not 0: the source points land within 1e-15 of the pixels
    np.testing.assert_allclose(affine_transform(x, p)[0, 0], np.rot90(x[0, 0], turns), atol=1e-12)


@given(seed=seeds, h=st.integers(2, 7), w=st.integers(2, 7))
def test_bilinear_sampling_reproduces_a_linear_ramp_inside(seed, h, w):
    """Bilinear interpolation is exact on a + b row + c col wherever the point lies inside."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.standard_normal(3)
    ramp = a + b * np.arange(h)[:, None] + c * np.arange(w)[None, :]
    rows = rng.uniform(0, h - 1, (2, 5, 4))
    cols = rng.uniform(0, w - 1, (2, 5, 4))
    out = bilinear_sample(np.broadcast_to(ramp, (2, 1, h, w)), rows, cols)
    np.testing.assert_allclose(out[:, 0], a + b * rows + c * cols, rtol=1e-12, atol=1e-12)
    far = bilinear_sample(np.broadcast_to(ramp, (2, 1, h, w)), rows + h, cols)  # all outside
    np.testing.assert_array_equal(far, 0)


def test_scaling_about_the_centre():
    """scale 2 doubles distances from the centre: source offsets are halved."""
    rows, cols = source_coordinates(AffineParams(np.zeros(1), np.full(1, 2.0), np.zeros((1, 2))),
                                    (5, 7))  # fmt: skip
    np.testing.assert_allclose(rows[0] - 2, (np.arange(5)[:, None] - 2) / 2 + 0 * cols[0])
    np.testing.assert_allclose(cols[0] - 3, (np.arange(7)[None, :] - 3) / 2 + 0 * rows[0])


def test_float32_follows_float64_and_keeps_its_dtype(xp):
    x, p = images(0, (4, 1, 28, 28), xp), maps(1, 4, 15.0, (0.9, 1.1), 2.0)
    y64 = affine_transform(x, p)
    y32 = affine_transform(x.astype(np.float32), p)
    assert y32.dtype == np.float32 and y64.dtype == np.float64
    xp.testing.assert_allclose(y32, y64, atol=1e-5)


def test_a_nan_or_inf_pixel_reaches_only_the_points_that_interpolate_it():
    x = images(0, (2, 1, 9, 9))
    x[0, 0, 4, 4], x[1, 0, 0, 8] = np.nan, np.inf  # one inside, one on the top right corner
    same = affine_transform(x, AffineParams.identity(2))
    np.testing.assert_array_equal(np.isfinite(same), np.isfinite(x))  # nothing spreads
    half = AffineParams(np.zeros(2), np.ones(2), np.full((2, 2), 0.5))  # half a pixel down-right
    moved = affine_transform(x, half)
    bad = ~np.isfinite(moved)
    # output (i, j) reads rows i - 1, i and columns j - 1, j: the NaN at (4, 4) reaches (4, 4),
    # (4, 5), (5, 4), (5, 5); the corner inf (0, 8) reaches (0, 8) and (1, 8) (column 9 is
    # outside); the rest of row 0 and column 8 stay finite
    expected = np.zeros_like(bad)
    expected[0, 0, 4:6, 4:6] = True
    expected[1, 0, 0:2, 8] = True
    np.testing.assert_array_equal(bad, expected)


def test_float16_images_are_warped_with_float32_coordinates():
    # 512x512: float16 coordinates near row 511 are spaced 0.25-0.5 apart, so a warp computed
    # in float16 was off by up to 0.32; in float32 it follows float64 to float16's rounding.
    x = images(0, (1, 1, 512, 512))
    p = AffineParams(np.array([0.3]), np.array([1.05]), np.array([[1.3, -0.7]]))
    y16 = affine_transform(x.astype(np.float16), p)
    assert y16.dtype == np.float16
    y64 = affine_transform(x.astype(np.float16).astype(np.float64), p)
    assert np.max(np.abs(y16.astype(np.float64) - y64)) < 2e-3  # ~ float16's half-ulp at 1


@pytest.mark.gpu
def test_cpu_and_gpu_give_the_same_images():
    cupy = backend.cupy()
    x, p = images(0, (8, 1, 28, 28)), maps(1, 8, 15.0, (0.9, 1.1), 2.0)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        cpu = affine_transform(x.astype(dtype), p)
        gpu = affine_transform(cupy.asarray(x, dtype=dtype), p)
        np.testing.assert_allclose(cupy.asnumpy(gpu), cpu, atol=tol)


def test_random_maps_stay_in_their_ranges_and_follow_the_seed():
    augment = RandomAffine(rotation=15.0, scale=(0.9, 1.1), shift=2.0)
    p = augment.sample(20000, np.random.default_rng(0))
    assert np.abs(p.angle).max() <= math.radians(15) and np.abs(p.angle).max() > math.radians(14.9)
    assert 0.9 <= p.scale.min() < 0.901 and 1.099 < p.scale.max() <= 1.1
    assert np.abs(p.shift).max() <= 2 and np.abs(p.shift).max() > 1.99
    assert abs(p.angle.mean()) < 0.01 and abs(p.shift.mean()) < 0.05  # centred
    q = augment.sample(20000, np.random.default_rng(0))
    for name in ("angle", "scale", "shift"):
        np.testing.assert_array_equal(getattr(p, name), getattr(q, name))
    x = images(2, (3, 1, 8, 8))
    np.testing.assert_array_equal(augment(x, np.random.default_rng(5)),
                                  augment(x, np.random.default_rng(5)))  # fmt: skip
    assert not np.array_equal(augment(x, np.random.default_rng(5)), x)
    assert len(RandomAffine(0.0, (1.0, 1.0), 0.0).sample(0, np.random.default_rng(0))) == 0


def test_a_fixed_map_does_nothing_when_the_ranges_are_zero():
    x = images(3, (2, 1, 6, 6))
    same = RandomAffine(0.0, (1.0, 1.0), 0.0)(x, np.random.default_rng(0))
    np.testing.assert_array_equal(same, x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rotation=-1.0), r"rotation must be a finite number in \[0, 180\]; got -1.0"),
        (dict(rotation=float("nan")), "rotation must be a finite number.*nan"),
        (dict(shift=-0.5), "shift must be a finite number >= 0; got -0.5"),
        (dict(scale=(1.1, 0.9)), r"low <= high; got \(1.1, 0.9\)"),
        (dict(scale=(0.0, 1.0)), r"scale\[0\] must be a finite number > 0; got 0.0"),
        (dict(scale=1.0), "scale must be a pair"),
    ],
)
def test_bad_ranges_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomAffine(**kwargs)


def test_bad_inputs_are_named():
    x = images(0, (2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\); got ndarray of shape \(4, 4\)"):
        affine_transform(x[0, 0], AffineParams.identity(2))
    with pytest.raises(ValueError, match="dtype int64"):
        affine_transform(np.zeros((2, 1, 4, 4), np.int64), AffineParams.identity(2))
    with pytest.raises(ValueError, match="3 maps for 2 images"):
        affine_transform(x, AffineParams.identity(3))
    with pytest.raises(ValueError, match=r"scale must be positive; got \[-1.\]"):
        AffineParams(np.zeros(2), np.array([1.0, -1.0]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"got shapes \(2,\), \(2,\) and \(2, 3\)"):
        AffineParams(np.zeros(2), np.ones(2), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="angle must be finite"):
        AffineParams(np.array([np.inf]), np.ones(1), np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"with N = 2 \(the images'\); got \(2, 3, 3\) and"):
        bilinear_sample(x, np.zeros((2, 3, 3)), np.zeros((2, 3, 4)))
    with pytest.raises(TypeError, match=r"rng must be a numpy\.random\.Generator; got int"):
        RandomAffine().sample(2, 0)
    with pytest.raises(ValueError, match="n must be an int >= 0; got -1"):
        RandomAffine().sample(-1, np.random.default_rng(0))
