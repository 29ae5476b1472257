"""NumPy reference kernels: im2col/col2im on channels-last data, and the fused elementwise ones.

The conv kernels work on NHWC arrays: one tap (kh, kw) of every output pixel is then a strided
slice whose innermost axis, the channels, is a contiguous block, so copying it is cheap (about
5x faster than gathering the same taps from NCHW). im2col copies all taps at once from one
strided view; col2im loops over the kH*kW taps only; there is no Python loop over the batch or
the pixels, and no ``np.add.at``.

Shapes: ``x`` is (N, H, W, C); ``cols`` is (N, OH, OW, kH, kW, C), so that
``cols.reshape(N*OH*OW, kH*kW*C)`` is the GEMM operand, free of copies. Pairs are
(height, width), already validated (``kernels/shapes.py``).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def im2col(x: np.ndarray, kh: int, kw: int, stride, padding, dilation, out_hw) -> np.ndarray:
    """Gather every kernel tap of every output pixel: the conv's patches, channels-last.

    ``cols[n, oh, ow, i, j, c] = x_padded[n, oh*sh + i*dh, ow*sw + j*dw, c]``, where
    ``x_padded`` is ``x`` with ``padding`` zeros on each side.

    Parameters
    ----------
    x : ndarray, shape (N, H, W, C)
        Any strides (a channels-last view of an NCHW array works; contiguous is fastest).
    kh, kw : int
        Kernel size.
    stride, padding, dilation : (int, int)
    out_hw : (int, int)
        (OH, OW): the output grid, at most the conv's output size (it may be smaller).

    Returns
    -------
    cols : ndarray, shape (N, OH, OW, kH, kW, C), C-contiguous, ``x.dtype``.
    """
    n, h, w, c = x.shape
    (sh, sw), (ph, pw), (dh, dw), (oh, ow) = stride, padding, dilation, out_hw
    if ph or pw:
        padded = np.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)
        padded[:, ph : ph + h, pw : pw + w] = x
        x = padded
    # every tap of every output pixel as one strided view of the padded image, copied once
    # (one C-level copy: 40% faster than a copy per tap, measured at InfoGAN's D conv)
    s_n, s_h, s_w, s_c = x.strides
    steps = (s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c)
    patches = as_strided(x, (n, oh, ow, kh, kw, c), steps, writeable=False)
    return np.ascontiguousarray(patches)


def col2im(cols: np.ndarray, x_hw, stride, padding, dilation) -> np.ndarray:
    """The adjoint of ``im2col``: add every patch entry back onto the pixel it came from.

    ``x[n, h, w, c] = sum of cols[n, oh, ow, i, j, c]`` over the (oh, ow, i, j) with
    ``oh*sh + i*dh - ph == h`` and ``ow*sw + j*dw - pw == w``.

    Parameters
    ----------
    cols : ndarray, shape (N, OH, OW, kH, kW, C)
    x_hw : (int, int)
        (H, W), the image size to rebuild.
    stride, padding, dilation : (int, int)

    Returns
    -------
    x : ndarray, shape (N, H, W, C), ``cols.dtype``; a view of a padded buffer when
        ``padding`` is not zero (the crop is not copied).
    """
    n, oh, ow, kh, kw, c = cols.shape
    return _add_taps(lambda i, j: cols[:, :, :, i, j], (n, oh, ow, c), cols.dtype, x_hw,
                     (kh, kw), stride, padding, dilation)  # fmt: skip


TAP_GEMM_MIN_CHANNELS = 32  # narrower taps: one GEMM, then col2im (``kernels.gemm_col2im``)


def gemm_col2im(
    rows: np.ndarray, wmat: np.ndarray, grid_hw, x_hw, kernel, stride, padding, dilation
) -> np.ndarray:
    """``col2im(rows @ wmat)``, computed tap by tap without building ``cols``.

    Each tap's product ``rows @ wmat[:, tap]`` (N*OH*OW, C) is added onto its pixels while it
    is still in cache, instead of one GEMM writing all kH*kW of them (12.8 MB for D's second
    conv at batch 64) and ``col2im`` reading them back. Same FLOPs, 7-8% less time on the
    InfoGAN convs (measured on D's second conv: 7.1 -> 6.5 ms at batch 64, 14.5 -> 13.5 ms at
    128). For narrow taps (C < ``TAP_GEMM_MIN_CHANNELS``) the dispatcher keeps one GEMM and
    ``col2im``: there a tap's GEMM is nearly a GEMV (G's last layer, C = 1: 0.63 ms one GEMM,
    0.80 ms tap by tap).

    Parameters
    ----------
    rows : ndarray, shape (N*OH*OW, A)
    wmat : ndarray, shape (A, kH*kW*C), the taps in (kH, kW, C) order
    grid_hw, x_hw : (int, int)
        (OH, OW) and the image size (H, W).
    kernel, stride, padding, dilation : (int, int)

    Returns
    -------
    x : ndarray, shape (N, H, W, C), as ``col2im``.
    """
    (oh, ow), (kh, kw) = grid_hw, kernel
    n, a, c = rows.shape[0] // (oh * ow), wmat.shape[0], wmat.shape[1] // (kh * kw)
    taps = wmat.reshape(a, kh, kw, c)  # taps[:, i, j] is a strided (A, C) view: BLAS reads it
    return _add_taps(lambda i, j: (rows @ taps[:, i, j]).reshape(n, oh, ow, c), (n, oh, ow, c),
                     rows.dtype, x_hw, kernel, stride, padding, dilation)  # fmt: skip


def _add_taps(tap, grid_shape, dtype, x_hw, kernel, stride, padding, dilation) -> np.ndarray:
    """The image that receives, for every tap (i, j), the (N, OH, OW, C) block ``tap(i, j)``.

    Works phase by phase: padded row ``r = oh*sh + i*dh`` is ``sh*R + a`` with phase
    ``a = i*dh % sh`` and ``R = oh + i*dh // sh``, so the taps of one phase (a, b) land on one
    strided sub-grid of the padded image, each on a shifted (OH, OW) rectangle of it. The first
    tap of a phase is copied in (the rest of its sub-grid zeroed), the others are added: no
    zero-filled image to add every tap onto. Returns the crop of the padded image (a view).
    """
    n, oh, ow, c = grid_shape
    (h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = x_hw, kernel, stride, padding, dilation
    padded, _ = image_buffer(grid_shape, dtype, x_hw, kernel, stride, padding, dilation)
    rb, cb = padded.shape[1] // sh, padded.shape[2] // sw  # sub-grid size per phase
    buf = padded.reshape(n, rb, sh, cb, sw, c)
    for a in range(sh):
        for b in range(sw):
            grid = buf[:, :, a, :, b]  # (N, rb, cb, C): padded pixels (sh*R + a, sw*Q + b)
            taps = [(i, j) for i in range(kh) if i * dh % sh == a
                    for j in range(kw) if j * dw % sw == b]  # fmt: skip
            if not taps:
                grid[...] = 0
            for t, (i, j) in enumerate(taps):
                r0, c0 = i * dh // sh, j * dw // sw
                target = grid[:, r0 : r0 + oh, c0 : c0 + ow]
                if t == 0:
                    _zero_outside(grid, (r0, r0 + oh), (c0, c0 + ow))
                    target[...] = tap(i, j)
                else:
                    target += tap(i, j)
    return buf.reshape(n, rb * sh, cb * sw, c)[:, ph : ph + h, pw : pw + w]


def image_buffer(grid_shape, dtype, x_hw, kernel, stride, padding, dilation):
    """``col2im``'s output memory: an uninitialised padded image (N, rb*sh, cb*sw, C) that
    every tap's shifted (OH, OW) rectangle fits in, phase by phase, and its (N, H, W, C) crop."""
    n, oh, ow, c = grid_shape
    (h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = x_hw, kernel, stride, padding, dilation
    rb = max(-(-(h + 2 * ph) // sh), oh + (kh - 1) * dh // sh)
    cb = max(-(-(w + 2 * pw) // sw), ow + (kw - 1) * dw // sw)
    padded = np.empty((n, rb * sh, cb * sw, c), dtype=dtype)
    return padded, padded[:, ph : ph + h, pw : pw + w]


def _zero_outside(a: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> None:
    """Zero ``a`` (N, R, Q, C) outside the rectangle ``rows x cols`` (at most four strips)."""
    (r0, r1), (c0, c1) = rows, cols
    for strip in ((slice(None, r0),), (slice(r1, None),),
                  (slice(r0, r1), slice(None, c0)), (slice(r0, r1), slice(c1, None))):  # fmt: skip
        part = a[(slice(None), *strip)]
        if part.size:
            part[...] = 0


def leaky_relu_forward(x: np.ndarray, slope: float) -> np.ndarray:
    """``x`` where ``x > 0``, else ``slope * x``; same shape, dtype and memory layout.

    For ``0 <= slope <= 1`` this is ``max(x, slope * x)``: two fast ufunc passes (a select
    with ``np.where`` on a random sign pattern is ~20x slower here).
    """
    s = x.dtype.type(slope)
    if 0 <= slope <= 1:
        return np.maximum(x, x * s)
    return np.where(x > 0, x, x * s)


def leaky_relu_backward(x: np.ndarray, gy: np.ndarray, slope: float) -> np.ndarray:
    """``gy`` where ``x > 0``, else ``slope * gy`` (the gradient at 0 is ``slope``, as PyTorch).

    For ``0 <= slope <= 1`` the factor is ``max([x > 0], slope)``, exactly 1 or ``slope``,
    computed with ufuncs only (no select on a random mask).
    """
    s = gy.dtype.type(slope)
    if 0 <= slope <= 1:
        factor = np.asarray(np.greater(x, 0)).astype(gy.dtype)  # asarray: 0-d stays an array
        np.maximum(factor, s, out=factor)
        factor *= gy
        return factor
    return np.where(x > 0, gy, gy * s)


# elements per block: a block's six arrays (3 MB in float32) stay in the last-level cache
# between the ~13 passes, and a step makes few Python calls (Adam over InfoGAN's 13.3M
# parameters: 38 ms at 1 << 15, 27 ms at 1 << 17 and 1 << 18, 32 ms at 1 << 19, 54 ms unblocked)
_ADAM_BLOCK = 1 << 17


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
) -> None:
    """One Adam step, in place on ``param``, ``m`` and ``v``, as ``torch.optim.Adam`` does it.

    ``g = grad + weight_decay * param`` (L2 style); ``m = lerp(m, g, 1 - beta1)``;
    ``v = beta2 v + (1 - beta2) g^2``; ``param -= lr / bias_correction1 * m / denom`` with
    ``denom = sqrt(v) / sqrt(bias_correction2) + eps``, where ``bias_correction_i`` is
    ``1 - beta_i ** step``. All arrays share one shape and dtype; the arithmetic stays in it,
    with PyTorch's order of operations (its ``lerp``, ``addcmul``, ``addcdiv``); the scalars
    ``lr / bias_correction1`` and ``sqrt(bias_correction2)`` are formed in double precision.
    """
    args = (lr, beta1, beta2, eps, bias_correction1, bias_correction2, weight_decay)
    if not all(a.flags.c_contiguous for a in (param, m, v)):
        _adam_block(param, grad, m, v, *args, *(np.empty_like(param) for _ in range(2)))
        return
    p, g, m, v = param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1)  # views
    scratch = [np.empty(min(p.size, _ADAM_BLOCK), p.dtype) for _ in range(2)]  # reused
    for i in range(0, p.size, _ADAM_BLOCK):  # ~13 passes per block, but each block in cache
        block = slice(i, i + _ADAM_BLOCK)
        t1, t2 = (t[: p[block].size] for t in scratch)
        _adam_block(p[block], g[block], m[block], v[block], *args, t1, t2)


def _adam_block(param, grad, m, v, lr, beta1, beta2, eps, bias_correction1, bias_correction2, wd,
                t1, t2):  # fmt: skip
    """One block of ``adam_update``; ``t1`` and ``t2`` are scratch arrays of the block's size."""
    if wd != 0:
        grad = np.add(grad, np.multiply(param, wd, out=t2), out=t2)  # grad + wd * param
    w = param.dtype.type(1 - beta1)
    np.subtract(grad, m, out=t1)
    if abs(w) < 0.5:  # torch.lerp's two forms, each exact at its own end
        t1 *= w
        m += t1
    else:
        t1 *= 1 - w
        np.subtract(grad, t1, out=m)
    v *= beta2
    np.multiply(grad, 1 - beta2, out=t1)
    t1 *= grad
    v += t1
    denom = np.sqrt(v, out=t1)
    denom /= bias_correction2**0.5
    denom += eps
    step = np.multiply(m, -(lr / bias_correction1), out=t2)
    step /= denom
    param += step
