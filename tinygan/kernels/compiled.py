"""Compiled CPU kernels (Numba): ``cpu.py``'s memory-bound work, one pass per kernel.

Optional: with ``pip install tinygan[fast]`` (Numba) the dispatcher in ``kernels/__init__.py``
runs these on NumPy arrays instead of the ``cpu.py`` versions; without Numba, or with the
environment variable ``TINYGAN_COMPILED=0``, ``cpu.py`` runs. The results are the same bits:
every loop does ``cpu.py``'s float operations in its order and precision (scalars are cast to
the arrays' dtype first, as NumPy does with a Python float; no fast-math, so no contraction
into fused multiply-adds; the conv kernels add the taps in ``cpu._add_taps``'s order and return
the same memory layout), which ``tests/test_compiled_kernels.py`` checks. What changes is the
memory traffic: one read of each operand and one write of each result, instead of one NumPy
pass (a read and a write of a whole array) per operation.

- Elementwise, over the arrays' memory in order (``flat_views``): leaky ReLU forward and
  backward, Adam's update.
- Per channel, over (A, C, B) views (``channel_views``): batch norm's centring, scaling and
  input gradient (its channel sums stay BLAS GEMVs, ``kernels.channel_sum``).
- Convolution data movement: ``im2col``, and ``col2im``/``gemm_col2im`` writing each image
  pixel once (for 8 channels or more; narrower taps stay on ``cpu.py``, which is as fast).

A kernel returns ``None`` (``adam_update``: False) where its arrays do not suit it (another
dtype than float32/float64, layouts that differ, memory with gaps): the dispatcher then runs
``cpu.py``. Each is compiled at its first call per signature and cached on disk (``cache=True``;
in memory where no cache folder is writable). Unlike NumPy's passes, the loops do not report
floating-point errors: ``np.errstate(invalid="raise")`` and ``np.seterr`` do not apply to them.
"""

from __future__ import annotations

import math
import os

import numpy as np

from . import cpu

try:  # the optional dependency
    import numba
except ImportError:  # pragma: no cover - exercised where Numba is not installed
    numba = None


def available() -> bool:
    """Whether the compiled kernels run: Numba is installed and ``TINYGAN_COMPILED`` is not 0.

    Raises ``ValueError`` for another value of ``TINYGAN_COMPILED`` than 0 or 1."""
    value = os.environ.get("TINYGAN_COMPILED", "1")
    if value not in ("0", "1"):
        raise ValueError(f"TINYGAN_COMPILED must be 0 (off) or 1 (on, the default); got {value!r}")
    return numba is not None and value == "1"


def _in_memory_order(arrays) -> tuple[list[np.ndarray], tuple[int, ...]] | None:
    """The arrays transposed into their memory order, C-contiguous, and that order; ``None``
    where they differ in shape or strides, or are not dense (the caller falls back). Plain
    Python on the strides: this runs on every call, also for arrays of a few kB."""
    first = arrays[0]
    if any(a.shape != first.shape or a.strides != first.strides for a in arrays[1:]):
        strides = [_strides(a) for a in arrays]  # (a length-1 axis's stride does not matter)
        if any(a.shape != first.shape or s != strides[0] for a, s in zip(arrays, strides)):
            return None
    if first.flags.c_contiguous:
        return list(arrays), tuple(range(first.ndim))
    if any(s < 0 for s in first.strides):
        return None
    strides = _strides(first)
    order = tuple(sorted(range(first.ndim), key=lambda i: -strides[i]))  # stable
    views = [a.transpose(order) for a in arrays]
    return (views, order) if views[0].flags.c_contiguous else None


def _strides(a: np.ndarray) -> tuple[int, ...]:
    return tuple(s if n > 1 else 0 for s, n in zip(a.strides, a.shape))


def flat_views(*arrays: np.ndarray) -> list[np.ndarray] | None:
    """1-D views, in memory order, of dense arrays alike in shape and strides (e.g. channels-
    last views of NCHW tensors); ``None`` where there are none."""
    found = _in_memory_order(arrays)
    return None if found is None else [v.reshape(-1) for v in found[0]]


def _jit(fn):
    # error_model="numpy": x / 0 is inf or NaN as in NumPy, with no check that stops the
    # loop from being vectorised
    if numba is None:
        return fn
    try:
        return numba.njit(cache=True, nogil=True, error_model="numpy")(fn)
    except RuntimeError:  # nowhere to cache (a read-only install, no writable home): in memory
        return numba.njit(nogil=True, error_model="numpy")(fn)


# ---- elementwise: leaky ReLU, Adam ---------------------------------------------------------


@_jit
def _leaky_forward(x, s, clamp, out):
    for i in range(x.size):
        a = x[i]
        b = a * s
        if clamp:  # np.maximum(x, x * s): NaN from either side propagates
            out[i] = a if (a >= b or a != a) else b
        else:  # np.where(x > 0, x, x * s)
            out[i] = a if a > 0 else b


@_jit
def _leaky_backward(x, gy, s, one, clamp, out):
    for i in range(x.size):
        if clamp:  # max([x > 0], s) * gy, the factor exactly 1 or s
            out[i] = (one if x[i] > 0 else s) * gy[i]
        else:  # np.where(x > 0, gy, gy * s)
            out[i] = gy[i] if x[i] > 0 else gy[i] * s


@_jit
def _leaky_backward_4d(x, gy, s, one, out):
    for a in range(x.shape[0]):
        for b in range(x.shape[1]):
            for c in range(x.shape[2]):
                for d in range(x.shape[3]):
                    out[a, b, c, d] = (one if x[a, b, c, d] > 0 else s) * gy[a, b, c, d]


def _clamps(slope: float, s) -> bool | None:
    """cpu.py's choice of formula, from the Python value (``0 <= slope <= 1``: the max form);
    ``None`` (fall back) where the slope is -0.0 in the arrays' dtype, where NumPy's maximum
    breaks the tie between 0.0 and -0.0 by the platform's max instruction."""
    clamp = 0 <= slope <= 1
    return None if clamp and s == 0 and np.signbit(s) else clamp


def leaky_relu_forward(x: np.ndarray, slope: float) -> np.ndarray | None:
    """``cpu.leaky_relu_forward`` in one pass; ``None`` where ``x`` is not dense or the slope
    is -0.0 (see ``_clamps``)."""
    if x.dtype not in (np.float32, np.float64) or x.ndim == 0:  # (NumPy gives a scalar there)
        return None
    s = x.dtype.type(slope)
    clamp = _clamps(slope, s)
    out = np.empty_like(x)
    flat = flat_views(x, out)
    if flat is None or clamp is None:
        return None
    _leaky_forward(flat[0], s, clamp, flat[1])
    return out


def leaky_relu_backward(x: np.ndarray, gy: np.ndarray, slope: float) -> np.ndarray | None:
    """``cpu.leaky_relu_backward`` in one pass, the result in ``x``'s layout; ``None`` where
    the dtypes differ or are not float32/float64, or where ``x`` is not dense or has more than
    four axes while ``gy``'s layout is another, or where ``slope`` is outside [0, 1] and the
    layouts differ (np.where's result then has a layout of its own)."""
    if x.dtype != gy.dtype or gy.dtype not in (np.float32, np.float64) or x.shape != gy.shape:
        return None
    dt = gy.dtype.type
    s = dt(slope)
    clamp = _clamps(slope, s)
    if clamp is None:
        return None
    out = np.empty_like(x)
    flat = flat_views(x, gy, out)
    if flat is not None:
        _leaky_backward(flat[0], flat[1], s, dt(1), clamp, flat[2])
        return out
    if not clamp or x.ndim > 4 or flat_views(x, out) is None:
        return None
    # gy in another layout (an NCHW gradient for a channels-last x, a cropped view): walk
    # x's memory in order and read gy through its strides
    order = _in_memory_order([x, out])[1]
    pad = (None,) * (4 - x.ndim)
    x4, gy4, out4 = (a.transpose(order)[pad] for a in (x, gy, out))
    _leaky_backward_4d(x4, gy4, s, dt(1), out4)
    return out


@_jit
def _adam(p, g, m, v, use_wd, wd, w, one_minus_w, beta2, one_minus_beta2, sqrt_bc2, eps, neg_step,
          small_w):  # fmt: skip
    for i in range(p.size):
        gi = g[i]
        if use_wd:
            gi = gi + p[i] * wd
        t = gi - m[i]
        mi = m[i] + t * w if small_w else gi - t * one_minus_w  # torch.lerp's two forms
        vi = v[i] * beta2 + gi * one_minus_beta2 * gi
        m[i] = mi
        v[i] = vi
        p[i] = p[i] + mi * neg_step / (np.sqrt(vi) / sqrt_bc2 + eps)


def adam_update(
    param: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    bias_correction1: float,
    bias_correction2: float,
    weight_decay: float = 0.0,
) -> bool:
    """``cpu.adam_update`` in one pass over the four arrays; ``False`` (nothing done) where
    ``param``, ``m`` and ``v`` are not contiguous and writeable or the dtype is not
    float32/float64."""
    if param.dtype not in (np.float32, np.float64) or not all(
        a.flags.c_contiguous and a.flags.writeable and a.dtype == param.dtype for a in (param, m, v)
    ):
        return False
    if not isinstance(grad, np.ndarray) or grad.dtype != param.dtype or grad.shape != param.shape:
        return False
    dt = param.dtype.type
    w = dt(1 - beta1)
    p, m, v = param.reshape(-1), m.reshape(-1), v.reshape(-1)
    g = grad.reshape(-1)  # C order (a copy if grad is not C-contiguous), as cpu.py reads it
    sqrt_bc2, neg_step = dt(bias_correction2**0.5), dt(-(lr / bias_correction1))
    # decay or not by the Python value, as cpu.py (a weight decay that is 0 in float32 still
    # adds param * 0: inf * 0 = NaN)
    _adam(p, g, m, v, weight_decay != 0, dt(weight_decay), w, dt(1) - w, dt(beta2),
          dt(1 - beta2), sqrt_bc2, dt(eps), neg_step, bool(abs(w) < 0.5))  # fmt: skip
    return True


# ---- batch norm's passes, per channel --------------------------------------------------------


def channel_views(channel_axis: int, *arrays: np.ndarray) -> list[np.ndarray] | None:
    """C-contiguous 3-D views (A, C, B) of dense arrays alike in shape and strides, where C is
    ``channel_axis`` and A and B gather the axes before and after it in memory order; ``None``
    where there are none."""
    found = _in_memory_order(arrays)
    if found is None:
        return None
    views, order = found
    k, shape = order.index(channel_axis), views[0].shape
    a3 = (math.prod(shape[:k]), shape[k], math.prod(shape[k + 1 :]))
    return [v.reshape(a3) for v in views]


@_jit
def _bn_center(x, mu, xc, sq, squares):
    for a in range(x.shape[0]):
        if x.shape[2] == 1:  # channels innermost: the loop over c is the contiguous one
            for c in range(x.shape[1]):
                d = x[a, c, 0] - mu[c]
                xc[a, c, 0] = d
                if squares:
                    sq[a, c, 0] = d * d
        else:
            for c in range(x.shape[1]):
                m = mu[c]
                for b in range(x.shape[2]):
                    d = x[a, c, b] - m
                    xc[a, c, b] = d
                    if squares:
                        sq[a, c, b] = d * d


@_jit
def _bn_scale(xc, scale, bias, out):
    for a in range(xc.shape[0]):
        if xc.shape[2] == 1:
            for c in range(xc.shape[1]):
                out[a, c, 0] = xc[a, c, 0] * scale[c] + bias[c]
        else:
            for c in range(xc.shape[1]):
                s, t = scale[c], bias[c]
                for b in range(xc.shape[2]):
                    out[a, c, b] = xc[a, c, b] * s + t


@_jit
def _bn_scale_nobias(xc, scale, out):
    for a in range(xc.shape[0]):
        if xc.shape[2] == 1:
            for c in range(xc.shape[1]):
                out[a, c, 0] = xc[a, c, 0] * scale[c]
        else:
            for c in range(xc.shape[1]):
                s = scale[c]
                for b in range(xc.shape[2]):
                    out[a, c, b] = xc[a, c, b] * s


@_jit
def _bn_input_grad(gy, xc, scale, k1, k2, out):
    for a in range(gy.shape[0]):
        if gy.shape[2] == 1:
            for c in range(gy.shape[1]):
                out[a, c, 0] = gy[a, c, 0] * scale[c] - xc[a, c, 0] * k1[c] - k2[c]
        else:
            for c in range(gy.shape[1]):
                s, u, w = scale[c], k1[c], k2[c]
                for b in range(gy.shape[2]):
                    out[a, c, b] = gy[a, c, b] * s - xc[a, c, b] * u - w


def _per_channel(a: np.ndarray, dtype: np.dtype) -> np.ndarray | None:
    """A per-channel array (C,) or (1, C, 1, ...) as a contiguous (C,) of ``dtype``, or None
    where its dtype is another (NumPy's promotion would then differ: fall back)."""
    return np.ascontiguousarray(a.reshape(-1)) if a.dtype == dtype else None


def batch_norm_center(x: np.ndarray, mu: np.ndarray, squares: bool):
    """``kernels.batch_norm_center`` in one pass; ``None`` where it cannot."""
    mu1 = _per_channel(mu, x.dtype)
    if mu1 is None or x.dtype not in (np.float32, np.float64) or x.ndim < 2:
        return None
    xc = np.empty_like(x)
    sq = np.empty_like(x) if squares else xc
    views = channel_views(1, x, xc, sq)
    if views is None:
        return None
    _bn_center(views[0], mu1, views[1], views[2], squares)
    return xc, (sq if squares else None)


def batch_norm_scale(xc: np.ndarray, scale: np.ndarray, bias: np.ndarray | None, out):
    """``kernels.batch_norm_scale`` in one pass; ``None`` where it cannot."""
    if xc.dtype not in (np.float32, np.float64):  # float16: Numba has none
        return None
    scale1 = _per_channel(scale, xc.dtype)
    bias1 = None if bias is None else _per_channel(bias, xc.dtype)
    if scale1 is None or (bias is not None and bias1 is None):
        return None
    out = np.empty_like(xc) if out is None else out
    views = channel_views(1, xc, out)
    if views is None:
        return None
    if bias1 is None:
        _bn_scale_nobias(views[0], scale1, views[1])
    else:
        _bn_scale(views[0], scale1, bias1, views[1])
    return out


def batch_norm_input_grad(gy, xc, scale, k1, k2, out):
    """``kernels.batch_norm_input_grad`` in one pass; ``None`` where it cannot."""
    if xc.dtype not in (np.float32, np.float64) or gy.dtype != xc.dtype:
        return None
    per = [_per_channel(a, xc.dtype) for a in (scale, k1, k2)]
    if any(p is None for p in per):
        return None
    out = np.empty_like(xc) if out is None else out
    views = channel_views(1, gy, xc, out)
    if views is None:
        return None
    _bn_input_grad(views[0], views[1], *per, views[2])
    return out


# ---- convolution data movement ------------------------------------------------------------


@_jit
def _im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, cols):
    n, h, w, c = x.shape
    for b in range(n):
        for r in range(cols.shape[1]):
            for q in range(cols.shape[2]):
                for i in range(kh):
                    y = r * sh + i * dh - ph
                    for j in range(kw):
                        z = q * sw + j * dw - pw
                        inside = 0 <= y < h and 0 <= z < w
                        for k in range(c):
                            cols[b, r, q, i, j, k] = x[b, y, z, k] if inside else 0


IM2COL_MIN_CHANNELS = 8  # narrower taps: cpu.py's one strided copy is faster (C = 1: 2x)


def im2col(x: np.ndarray, kh: int, kw: int, stride, padding, dilation, out_hw) -> np.ndarray | None:
    """``cpu.im2col`` as one loop that writes every tap's channels once (D's second conv: 2.7-3.5x
    faster than NumPy's strided copy, measured at batch 64 and 128); ``None`` for fewer than
    ``IM2COL_MIN_CHANNELS`` channels or another dtype than float32/float64."""
    if x.shape[3] < IM2COL_MIN_CHANNELS or x.dtype not in (np.float32, np.float64):
        return None
    cols = np.empty((x.shape[0], *out_hw, kh, kw, x.shape[3]), dtype=x.dtype)
    _im2col(x, kh, kw, *stride, *padding, *dilation, cols)
    return cols


@_jit
def _col2im(taps, kh, kw, sh, sw, ph, pw, dh, dw, out):
    """out[b, y, x] = the taps (i, j) of the pixel's phase that reach it, in cpu._add_taps's
    order: the phase's first tap copied (else 0), then the others added."""
    n, h, w, c = out.shape
    oh, ow = taps.shape[1], taps.shape[2]
    for b in range(n):
        for y in range(h):
            r = y + ph
            for x in range(w):
                q = x + pw
                for k in range(c):
                    out[b, y, x, k] = 0
                first = True
                for i in range(kh):
                    if i * dh % sh != r % sh:
                        continue
                    for j in range(kw):
                        if j * dw % sw != q % sw:
                            continue
                        row, col = (r - i * dh) // sh, (q - j * dw) // sw
                        inside = 0 <= row < oh and 0 <= col < ow
                        if inside and first:
                            for k in range(c):
                                out[b, y, x, k] = taps[b, row, col, i, j, k]
                        elif inside:
                            for k in range(c):
                                out[b, y, x, k] += taps[b, row, col, i, j, k]
                        first = False


COL2IM_MIN_CHANNELS = 8  # narrower: cpu.py's tap-by-tap adds are as fast


def col2im(cols: np.ndarray, x_hw, stride, padding, dilation) -> np.ndarray | None:
    """``cpu.col2im`` as one loop over the image (every pixel written once), the same bits and
    the same output memory (a crop of ``cpu.image_buffer``); ``None`` for narrow taps or another
    dtype than float32/float64."""
    n, oh, ow, kh, kw, c = cols.shape
    if c < COL2IM_MIN_CHANNELS or cols.dtype not in (np.float32, np.float64):
        return None
    geometry = ((kh, kw), stride, padding, dilation)
    _, image = cpu.image_buffer((n, oh, ow, c), cols.dtype, x_hw, *geometry)
    _col2im(cols, kh, kw, *stride, *padding, *dilation, image)
    return image


def gemm_col2im(rows, wmat, grid_hw, x_hw, kernel, stride, padding, dilation) -> np.ndarray | None:
    """``cpu.gemm_col2im``: the same tap-by-tap GEMMs, into one buffer, then ``_col2im`` once;
    the same bits and output memory; ``None`` where ``col2im`` would be. Alone it ties with
    ``cpu.py`` (D's second conv, batch 64 and 128); in the step it pays: without it, the step
    took 1.034x (batch 64) and 1.065-1.070x (128) as long (``bench/ab_step.py``)."""
    (oh, ow), (kh, kw) = grid_hw, kernel
    n, a, c = rows.shape[0] // (oh * ow), wmat.shape[0], wmat.shape[1] // (kh * kw)
    if c < COL2IM_MIN_CHANNELS or rows.dtype not in (np.float32, np.float64):
        return None
    taps = wmat.reshape(a, kh, kw, c)
    products = np.empty((kh, kw, rows.shape[0], c), dtype=rows.dtype)
    for i in range(kh):
        for j in range(kw):
            np.matmul(rows, taps[:, i, j], out=products[i, j])  # cpu.py's products, bit for bit
    _, image = cpu.image_buffer((n, oh, ow, c), rows.dtype, x_hw, kernel, stride, padding, dilation)
    cols = products.reshape(kh, kw, n, oh, ow, c).transpose(2, 3, 4, 0, 1, 5)  # a view
    _col2im(cols, kh, kw, *stride, *padding, *dilation, image)
    return image
