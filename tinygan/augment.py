"""Random affine maps of image batches, on the array backend (NumPy or CuPy).

A transform moves each image's content: a rotation by ``angle`` (counter-clockwise as the image
is displayed, rows running downwards, like ``np.rot90``) and a scaling by ``scale``, both about
the image centre ``((H - 1) / 2, (W - 1) / 2)``, then a shift by ``shift = (rows, cols)`` pixels
(positive: down and right, like ``np.roll``). Each output pixel is read back from its source
point by bilinear interpolation (inverse warping), zero where it falls outside the image.

The random parameters are drawn on the host from a NumPy ``Generator`` (``RandomAffine.sample``),
so one seed gives the same transforms on CPU and GPU; the warp itself runs on the images' array
module, the whole batch at once (no per-image Python loop), in the images' dtype.

Example::

    augment = RandomAffine(rotation=15.0, scale=(0.9, 1.1), shift=2.0)
    moved = augment(images, np.random.default_rng(0))  # images: (N, 1, 28, 28)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import arguments
from .backend import get_array_module

Array = Any  # numpy.ndarray or cupy.ndarray


@dataclass(frozen=True)
class AffineParams:
    """The parameters of ``N`` affine maps, as float64 host arrays.

    Attributes
    ----------
    angle : np.ndarray, shape (N,)
        Rotations in radians, counter-clockwise as displayed.
    scale : np.ndarray, shape (N,)
        Positive scale factors (above 1 enlarges the content).
    shift : np.ndarray, shape (N, 2)
        Shifts in pixels, (rows, cols): positive moves the content down and right.
    """

    angle: np.ndarray
    scale: np.ndarray
    shift: np.ndarray

    def __post_init__(self) -> None:
        for name in ("angle", "scale", "shift"):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{name} must be finite; got {value}")
            object.__setattr__(self, name, value)
        n = len(self.angle) if self.angle.ndim == 1 else -1
        if n < 0 or self.scale.shape != (n,) or self.shift.shape != (n, 2):
            raise ValueError(
                f"angle (N,), scale (N,) and shift (N, 2) must describe N maps; got shapes "
                f"{self.angle.shape}, {self.scale.shape} and {self.shift.shape}"
            )
        if np.any(self.scale <= 0):
            raise ValueError(f"scale must be positive; got {self.scale[self.scale <= 0]}")

    def __len__(self) -> int:
        return len(self.angle)

    @classmethod
    def identity(cls, n: int) -> AffineParams:
        """``n`` maps that change nothing."""
        return cls(np.zeros(n), np.ones(n), np.zeros((n, 2)))


@dataclass(frozen=True)
class RandomAffine:
    """Draws small random affine maps and applies them to a batch.

    Parameters
    ----------
    rotation : float
        Largest rotation in degrees, in [0, 180]: angles ~ U(-rotation, rotation).
    scale : (float, float)
        Range of the scale factor, 0 < low <= high: scale ~ U(low, high).
    shift : float
        Largest shift in pixels along each axis, >= 0: shifts ~ U(-shift, shift).
    """

    rotation: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 2.0

    def __post_init__(self) -> None:
        arguments.real(self.rotation, "rotation", 0.0, 180.0)
        arguments.real(self.shift, "shift", 0.0)
        if not (isinstance(self.scale, (tuple, list)) and len(self.scale) == 2):
            raise ValueError(f"scale must be a pair (low, high); got {self.scale!r}")
        low = arguments.real(self.scale[0], "scale[0]", 0.0, low_open=True)
        high = arguments.real(self.scale[1], "scale[1]", 0.0, low_open=True)
        if low > high:
            raise ValueError(f"scale must be (low, high) with low <= high; got {self.scale!r}")
        object.__setattr__(self, "scale", (low, high))

    def sample(self, n: int, rng: np.random.Generator) -> AffineParams:
        """``n`` maps drawn from ``rng`` (on the host: the same on every device)."""
        n = arguments.integer(n, "n", 0)
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
        angle = np.deg2rad(rng.uniform(-self.rotation, self.rotation, n))
        scale = rng.uniform(*self.scale, n)
        shift = rng.uniform(-self.shift, self.shift, (n, 2))
        return AffineParams(angle, scale, shift)

    def __call__(self, images: Array, rng: np.random.Generator) -> Array:
        """``images`` (N, C, H, W), each moved by its own random map: (N, C, H, W)."""
        return affine_transform(images, self.sample(len(images), rng))


def source_coordinates(
    params: AffineParams, size: tuple[int, int], xp: Any = np, dtype: Any = np.float64
) -> tuple[Array, Array]:
    """Where each output pixel of each map reads its value from.

    For output pixel ``p = (i, j)`` and centre ``c = ((H - 1) / 2, (W - 1) / 2)`` the source is
    ``c + R(-angle) (p - c - shift) / scale``, where ``R(a)`` rotates (row, col) vectors by ``a``
    counter-clockwise as displayed: ``R(-a) = [[cos a, sin a], [-sin a, cos a]]``.

    Parameters
    ----------
    params : AffineParams, N maps
    size : (int, int)
        (H, W) of the images, both positive.
    xp : module
        ``numpy`` or ``cupy``: where the coordinates are computed.
    dtype : dtype
        Floating dtype of the coordinates.

    Returns
    -------
    rows, cols : arrays, shape (N, H, W)
        Fractional source coordinates, in pixels.
    """
    h, w = (arguments.integer(s, "size", 1) for s in size)
    dtype = np.dtype(dtype)
    cos, sin = np.cos(params.angle), np.sin(params.angle)
    inv = 1.0 / params.scale
    # per map, source = m @ (p - c - shift) + c, with m = R(-angle) / scale, as (N, 1, 1) arrays
    m = [xp.asarray(a.reshape(-1, 1, 1), dtype=dtype) for a in (cos * inv, sin * inv)]
    shift = xp.asarray(params.shift.reshape(-1, 2, 1, 1), dtype=dtype)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    u = xp.arange(h, dtype=dtype).reshape(1, h, 1) - cy - shift[:, 0]  # (N, H, 1)
    v = xp.arange(w, dtype=dtype).reshape(1, 1, w) - cx - shift[:, 1]  # (N, 1, W)
    rows = m[0] * u + m[1] * v + cy
    cols = m[0] * v - m[1] * u + cx
    return rows, cols


def bilinear_sample(images: Array, rows: Array, cols: Array) -> Array:
    """Sample each image at fractional points, bilinearly, zero outside the image.

    The value at ``(r, c)`` mixes the four pixels around it, ``(floor r + a, floor c + b)`` for
    ``a, b in {0, 1}``, with weights ``(1 - |r - row|) (1 - |c - col|)``; a pixel outside the
    image counts as 0, so content fades out over the last pixel beyond the border.

    Parameters
    ----------
    images : array, shape (N, C, H, W), floating
    rows, cols : arrays, shape (N, H', W')
        Source coordinates in pixels (row 0 is the top row), on the images' device.

    Returns
    -------
    array, shape (N, C, H', W'), the images' dtype (computed in float32 at least)

    Only the taps with a non-zero weight inside the image are read, so a NaN or inf pixel
    reaches just the points that interpolate it.
    """
    xp = get_array_module(images, rows, cols)
    _check_images(images)
    n, c, h, w = images.shape
    if rows.shape != cols.shape or rows.ndim != 3 or rows.shape[0] != n:
        raise ValueError(
            f"rows and cols must both have shape (N, H', W') with N = {n} (the images'); got "
            f"{rows.shape} and {cols.shape}"
        )
    out_hw = rows.shape[1:]
    work = _work_dtype(images.dtype)
    rows, cols = rows.astype(work, copy=False), cols.astype(work, copy=False)
    r0, c0 = xp.floor(rows), xp.floor(cols)
    fr, fc = rows - r0, cols - c0  # in [0, 1)
    r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
    flat = xp.ascontiguousarray(images).reshape(-1)
    base = (xp.arange(n * c, dtype=np.int64) * (h * w)).reshape(n, c, 1, 1)  # image starts
    out = xp.zeros((n, c, *out_hw), dtype=work)
    for dr, wr in ((0, 1 - fr), (1, fr)):
        r = r0 + dr
        for dc, wc in ((0, 1 - fc), (1, fc)):
            col = c0 + dc
            weight = wr * wc
            used = (weight != 0) & (r >= 0) & (r < h) & (col >= 0) & (col < w)
            index = xp.where(used, r * w + col, 0)  # any valid pixel where unused: masked below
            # a mask, not a zero weight: an unused tap must not carry a NaN or inf pixel in
            out += xp.where(used[:, None], flat[base + index[:, None]] * weight[:, None], 0)
    return out.astype(images.dtype, copy=False)


def affine_transform(images: Array, params: AffineParams) -> Array:
    """Move each image by its own affine map (see the module's docstring).

    Parameters
    ----------
    images : array, shape (N, C, H, W), floating (NumPy or CuPy)
    params : AffineParams, N maps

    Returns
    -------
    array, shape (N, C, H, W), the images' dtype and device
    """
    _check_images(images)
    if len(params) != len(images):
        raise ValueError(f"{len(params)} maps for {len(images)} images; give one map per image")
    xp = get_array_module(images)
    rows, cols = source_coordinates(params, images.shape[2:], xp, _work_dtype(images.dtype))
    return bilinear_sample(images, rows, cols)


def _work_dtype(dtype: Any) -> np.dtype:
    """Coordinates and weights in float32 at least: float16 is off by up to 0.25 pixel from
    row 512 on (its spacing there), so a half-precision image is warped in float32."""
    return np.promote_types(dtype, np.float32)


def _check_images(images: Array) -> None:
    dtype = getattr(images, "dtype", None)
    if getattr(images, "ndim", None) != 4 or dtype is None or dtype.kind != "f":
        raise ValueError(
            f"images must be a floating array of shape (N, C, H, W); got "
            f"{type(images).__name__} of shape {getattr(images, 'shape', None)} and dtype {dtype}"
        )


__all__ = [
    "AffineParams", "RandomAffine", "affine_transform", "bilinear_sample", "source_coordinates",
]  # fmt: skip
