"""Naive loop oracles (float64, one multiply-add at a time) and valid-by-construction conv configs.

The oracles are written from the definitions, independently of tinygan's kernels: conv2d as a
sum over each output pixel's taps, conv_transpose2d as a scatter of each input pixel through the
kernel (not via conv), im2col/col2im as loops over pixels and taps.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from hypothesis import strategies as st


# ---- oracles ------------------------------------------------------------------------------------
def conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1)) -> np.ndarray:
    """x (N, C, H, W), w (OC, C, kH, kW), b (OC,) -> (N, OC, OH, OW), float64."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n_, c_, h_, w_ = x.shape
    oc_, _, kh_, kw_ = w.shape
    oh_ = (h_ + 2 * ph - dh * (kh_ - 1) - 1) // sh + 1
    ow_ = (w_ + 2 * pw - dw * (kw_ - 1) - 1) // sw + 1
    y = np.zeros((n_, oc_, oh_, ow_))
    for n in range(n_):
        for oc in range(oc_):
            for oh in range(oh_):
                for ow in range(ow_):
                    acc = 0.0 if b is None else float(b[oc])
                    for ic in range(c_):
                        for kh in range(kh_):
                            for kw in range(kw_):
                                h, w_in = oh * sh - ph + kh * dh, ow * sw - pw + kw * dw
                                if 0 <= h < h_ and 0 <= w_in < w_:
                                    acc += float(x[n, ic, h, w_in]) * float(w[oc, ic, kh, kw])
                    y[n, oc, oh, ow] = acc
    return y


def conv_transpose2d(
    x, w, b=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1)
) -> np.ndarray:
    """x (N, C, H, W), w (C, OC, kH, kW), b (OC,) -> (N, OC, OH, OW), float64.

    Each input pixel (h, w) adds ``x[n, ic, h, w] * w[ic, oc, kh, kw]`` to the output pixel
    ``(h*sh - ph + kh*dh, w*sw - pw + kw*dw)`` when that lies inside the output.
    """
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    n_, c_, h_, w_ = x.shape
    _, oc_, kh_, kw_ = w.shape
    oh_ = (h_ - 1) * sh - 2 * ph + dh * (kh_ - 1) + oph + 1
    ow_ = (w_ - 1) * sw - 2 * pw + dw * (kw_ - 1) + opw + 1
    y = np.zeros((n_, oc_, oh_, ow_))
    if b is not None:
        y += np.asarray(b, dtype=float)[:, None, None]
    for n in range(n_):
        for ic in range(c_):
            for h in range(h_):
                for w_in in range(w_):
                    for oc in range(oc_):
                        for kh in range(kh_):
                            for kw in range(kw_):
                                oh, ow = h * sh - ph + kh * dh, w_in * sw - pw + kw * dw
                                if 0 <= oh < oh_ and 0 <= ow < ow_:
                                    y[n, oc, oh, ow] += float(x[n, ic, h, w_in]) * float(
                                        w[ic, oc, kh, kw]
                                    )
    return y


def im2col(x, kernel, stride, padding, dilation, out_hw) -> np.ndarray:
    """x (N, H, W, C) -> cols (N, OH, OW, kH, kW, C), zeros where a tap reads the padding."""
    n_, h_, w_, c_ = x.shape
    cols = np.zeros((n_, *out_hw, *kernel, c_), dtype=x.dtype)
    for oh in range(out_hw[0]):
        for ow in range(out_hw[1]):
            for kh in range(kernel[0]):
                for kw in range(kernel[1]):
                    h = oh * stride[0] - padding[0] + kh * dilation[0]
                    w = ow * stride[1] - padding[1] + kw * dilation[1]
                    if 0 <= h < h_ and 0 <= w < w_:
                        cols[:, oh, ow, kh, kw, :] = x[:, h, w, :]
    return cols


def col2im(cols, x_hw, stride, padding, dilation) -> np.ndarray:
    """cols (N, OH, OW, kH, kW, C) -> x (N, H, W, C): each entry added to the pixel it reads."""
    n_, oh_, ow_, kh_, kw_, c_ = cols.shape
    x = np.zeros((n_, *x_hw, c_), dtype=cols.dtype)
    for oh in range(oh_):
        for ow in range(ow_):
            for kh in range(kh_):
                for kw in range(kw_):
                    h = oh * stride[0] - padding[0] + kh * dilation[0]
                    w = ow * stride[1] - padding[1] + kw * dilation[1]
                    if 0 <= h < x_hw[0] and 0 <= w < x_hw[1]:
                        x[:, h, w, :] += cols[:, oh, ow, kh, kw, :]
    return x


# ---- configurations -------------------------------------------------------------------------
class Dim(NamedTuple):
    """One spatial dimension of a conv: kernel, stride, padding, dilation, output_padding, and
    ``image``/``grid``, the sizes of the side im2col reads and of the output grid (for conv2d,
    input and output; for conv_transpose2d, output and input)."""

    kernel: int
    stride: int
    padding: int
    dilation: int
    output_padding: int
    image: int
    grid: int


def conv_dim(kernel, stride, padding, dilation, image) -> Dim:
    """A conv2d dimension with input size ``image`` (which must give a positive output)."""
    grid = (image + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    assert grid >= 1, "not a valid conv dimension"
    return Dim(kernel, stride, padding, dilation, 0, image, grid)


def conv_transpose_dim(kernel, stride, padding, dilation, output_padding, grid) -> Dim:
    """A conv_transpose2d dimension with input size ``grid``."""
    assert 0 <= output_padding < max(stride, dilation)
    image = (grid - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
    assert image >= 1, "not a valid conv_transpose dimension"
    return Dim(kernel, stride, padding, dilation, output_padding, image, grid)


@st.composite
def conv_dims(draw, max_kernel=3, max_stride=3, max_dilation=2, max_extra=3) -> Dim:
    """A conv2d dimension; padding up to the dilated kernel's extent, then the input size is
    derived so that the output has between 1 and about ``max_extra / stride + 1`` pixels."""
    k, s, d = (draw(st.integers(1, hi)) for hi in (max_kernel, max_stride, max_dilation))
    p = draw(st.integers(0, d * (k - 1) + 1))
    smallest = max(1, d * (k - 1) + 1 - 2 * p)  # the smallest input with one output pixel
    return conv_dim(k, s, p, d, smallest + draw(st.integers(0, max_extra)))


@st.composite
def conv_transpose_dims(draw, max_kernel=3, max_stride=3, max_dilation=2, max_grid=4) -> Dim:
    """A conv_transpose2d dimension; any output_padding below max(stride, dilation), and a
    padding repaired (lowered) until the output size is positive."""
    k, s, d = (draw(st.integers(1, hi)) for hi in (max_kernel, max_stride, max_dilation))
    op = draw(st.integers(0, max(s, d) - 1))
    grid = draw(st.integers(1, max_grid))
    p = min(draw(st.integers(0, d * (k - 1) + 1)), ((grid - 1) * s + d * (k - 1) + op) // 2)
    return conv_transpose_dim(k, s, p, d, op, grid)


class ConvCase(NamedTuple):
    """A whole conv2d or conv_transpose2d configuration (``transpose`` says which)."""

    n: int
    c_in: int
    c_out: int
    h: Dim
    w: Dim
    bias: bool
    transpose: bool

    def kwargs(self) -> dict:
        kw = dict(
            stride=(self.h.stride, self.w.stride),
            padding=(self.h.padding, self.w.padding),
            dilation=(self.h.dilation, self.w.dilation),
        )
        if self.transpose:
            kw["output_padding"] = (self.h.output_padding, self.w.output_padding)
        return kw

    @property
    def x_shape(self) -> tuple[int, ...]:
        hw = (self.h.grid, self.w.grid) if self.transpose else (self.h.image, self.w.image)
        return (self.n, self.c_in, *hw)

    @property
    def y_shape(self) -> tuple[int, ...]:
        hw = (self.h.image, self.w.image) if self.transpose else (self.h.grid, self.w.grid)
        return (self.n, self.c_out, *hw)

    @property
    def w_shape(self) -> tuple[int, ...]:
        channels = (self.c_in, self.c_out) if self.transpose else (self.c_out, self.c_in)
        return (*channels, self.h.kernel, self.w.kernel)

    def arrays(self, seed: int, dtype=np.float64):
        """x, weight and bias (None without one) from ``seed``."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.x_shape).astype(dtype)
        w = rng.standard_normal(self.w_shape).astype(dtype)
        b = rng.standard_normal(self.c_out).astype(dtype) if self.bias else None
        return x, w, b

    def oracle(self, x, w, b) -> np.ndarray:
        fn = conv_transpose2d if self.transpose else conv2d
        return fn(x, w, b, **self.kwargs())


@st.composite
def conv_cases(draw, transpose: bool, max_batch=2, max_channels=3, **dim_kwargs) -> ConvCase:
    """Conv or transposed-conv configurations, valid by construction, non-square in general."""
    dims = conv_transpose_dims(**dim_kwargs) if transpose else conv_dims(**dim_kwargs)
    n, c_in, c_out = (draw(st.integers(1, hi)) for hi in (max_batch, max_channels, max_channels))
    return ConvCase(n, c_in, c_out, draw(dims), draw(dims), draw(st.booleans()), transpose)


# ---- densities --------------------------------------------------------------------------------
def sq_dist(a, b) -> float:
    """||a - b||^2 of two vectors, summed exactly (math.fsum)."""
    return math.fsum((float(u) - float(v)) ** 2 for u, v in zip(a, b, strict=True))


def gaussian_kde(x, samples, sigma) -> np.ndarray:
    """log mean_j N(x_i; s_j, sigma^2 I) for each row of ``x``, by loops, the log-sum-exp shifted
    by its maximum."""
    out = []
    for xi in x:
        e = [-sq_dist(xi, s) / (2 * sigma**2) for s in samples]
        m = max(e)
        lse = m + math.log(math.fsum(math.exp(v - m) for v in e))
        d = len(xi)
        out.append(lse - math.log(len(samples)) - 0.5 * d * math.log(2 * math.pi * sigma**2))
    return np.array(out)


# ---- image augmentation ----------------------------------------------------------------------
def affine_warp(images, angle, scale, shift) -> np.ndarray:
    """images (N, C, H, W) moved by affine maps, float64, one output pixel at a time.

    Map ``n`` rotates the content by ``angle[n]`` radians (counter-clockwise as displayed, rows
    downwards) and scales it by ``scale[n]`` about the centre ((H-1)/2, (W-1)/2), then shifts it
    by ``shift[n] = (rows, cols)``. Output pixel (i, j) undoes that: it takes its offset from the
    shifted centre, rotates it back by -angle, divides it by the scale, and reads the input there
    by bilinear interpolation over the four pixels around it, a pixel outside the image being 0.
    """
    n_, c_, h_, w_ = images.shape
    cy, cx = (h_ - 1) / 2, (w_ - 1) / 2
    out = np.zeros((n_, c_, h_, w_))
    for n in range(n_):
        a, s = float(angle[n]), float(scale[n])
        for i in range(h_):
            for j in range(w_):
                dy, dx = i - cy - float(shift[n][0]), j - cx - float(shift[n][1])
                # counter-clockwise as displayed, (dy, dx) -> (dy cos a - dx sin a,
                # dy sin a + dx cos a) (a point right of the centre goes up); undone here
                sy = cy + (math.cos(a) * dy + math.sin(a) * dx) / s
                sx = cx + (-math.sin(a) * dy + math.cos(a) * dx) / s
                y0, x0 = math.floor(sy), math.floor(sx)
                for c in range(c_):
                    acc = 0.0
                    for y in (y0, y0 + 1):
                        for x in (x0, x0 + 1):
                            if 0 <= y < h_ and 0 <= x < w_:
                                wy, wx = 1 - abs(sy - y), 1 - abs(sx - x)
                                acc += wy * wx * float(images[n, c, y, x])
                    out[n, c, i, j] = acc
    return out
