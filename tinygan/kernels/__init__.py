"""Hand-written kernels: one signature each, a NumPy version (cpu.py) and a CUDA one (cuda.py).

With Numba installed (``tinygan[fast]``), the memory-bound ones run as compiled single-pass loops
on NumPy arrays (compiled.py), with the same results to the bit; ``TINYGAN_COMPILED=0`` turns
them off.

The functions here pick the version from the arrays they are given (``backend.get_array_module``).
Shapes: ``x`` (N, H, W, C), channels-last; ``cols`` (N, OH, OW, kH, kW, C); pairs are
(height, width). Size arithmetic and validation: ``shapes.py``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ..backend import get_array_module
from . import compiled, cpu, cuda, shapes
from .shapes import IntPair


def _impl(*arrays: Any) -> ModuleType:
    return cpu if get_array_module(*arrays) is np else cuda


def _compiled(name: str, arrays: tuple, *args: Any) -> Any:
    """``compiled.<name>(*args)`` where ``arrays`` are NumPy arrays and the compiled kernels run
    (``compiled.available()``); None (or False) where not, or where the kernel does not take
    these arrays: the caller then runs its NumPy or CUDA version."""
    if _impl(*arrays) is not cpu or not compiled.available():
        return None
    return getattr(compiled, name)(*args)


def im2col(
    x: Any, kh: int, kw: int, stride: IntPair, padding: IntPair, dilation: IntPair, out_hw: IntPair
) -> Any:
    """(N, H, W, C) -> cols (N, OH, OW, kH, kW, C), contiguous; see ``cpu.im2col``."""
    shapes.check_cols_fit("im2col", x.shape[1:3], out_hw, (kh, kw), stride, padding, dilation)
    args = (x, kh, kw, stride, padding, dilation, out_hw)
    cols = _compiled("im2col", (x,), *args)
    return _impl(x).im2col(*args) if cols is None else cols


def col2im(cols: Any, x_hw: IntPair, stride: IntPair, padding: IntPair, dilation: IntPair) -> Any:
    """cols (N, OH, OW, kH, kW, C) -> (N, H, W, C), adjoint of ``im2col``; see ``cpu.col2im``."""
    shapes.check_cols_fit(
        "col2im", x_hw, cols.shape[1:3], cols.shape[3:5], stride, padding, dilation
    )
    args = (cols, x_hw, stride, padding, dilation)
    x = _compiled("col2im", (cols,), *args)
    return _impl(cols).col2im(*args) if x is None else x


def gemm_col2im(
    rows: Any,
    wmat: Any,
    grid_hw: IntPair,
    x_hw: IntPair,
    kernel: IntPair,
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
) -> Any:
    """``col2im`` of the product ``rows @ wmat``: rows (N*OH*OW, A), wmat (A, kH*kW*C) ->
    (N, H, W, C). On NumPy with wide taps (C >= ``cpu.TAP_GEMM_MIN_CHANNELS``), tap by tap
    without building ``cols`` (``cpu.gemm_col2im``); otherwise one GEMM, then ``col2im``."""
    shapes.check_cols_fit("col2im", x_hw, grid_hw, kernel, stride, padding, dilation)
    impl, c = _impl(rows, wmat), wmat.shape[1] // (kernel[0] * kernel[1])
    geometry = (grid_hw, x_hw, kernel, stride, padding, dilation)
    if impl is cpu and c >= cpu.TAP_GEMM_MIN_CHANNELS:
        x = _compiled("gemm_col2im", (rows, wmat), rows, wmat, *geometry)
        return cpu.gemm_col2im(rows, wmat, *geometry) if x is None else x
    cols = (rows @ wmat).reshape(-1, *grid_hw, *kernel, c)
    return col2im(cols, x_hw, stride, padding, dilation)


def leaky_relu_forward(x: Any, slope: float) -> Any:
    """``x`` where ``x > 0``, else ``slope * x``."""
    out = _compiled("leaky_relu_forward", (x,), x, slope)
    return _impl(x).leaky_relu_forward(x, slope) if out is None else out


def leaky_relu_backward(x: Any, gy: Any, slope: float) -> Any:
    """``gy`` where ``x > 0``, else ``slope * gy``."""
    out = _compiled("leaky_relu_backward", (x, gy), x, gy, slope)
    return _impl(x, gy).leaky_relu_backward(x, gy, slope) if out is None else out


def adam_update(
    param: Any,
    grad: Any,
    m: Any,
    v: Any,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    bias_correction1: float,
    bias_correction2: float,
    weight_decay: float = 0.0,
) -> None:
    """One ``torch.optim.Adam`` step, in place; see ``cpu.adam_update``."""
    args = (param, grad, m, v, lr, beta1, beta2, eps, bias_correction1, bias_correction2)
    if not _compiled("adam_update", args[:4], *args, weight_decay):
        _impl(*args[:4]).adam_update(*args, weight_decay)


def batch_norm_center(x: Any, mu: Any, squares: bool) -> tuple[Any, Any]:
    """Batch norm's centring: ``xc = x - mu`` and, if ``squares``, ``xc * xc`` (else None).

    ``x`` (N, C, ...), any layout; ``mu`` per channel, (1, C, 1, ...). Results in ``x``'s
    layout."""
    out = _compiled("batch_norm_center", (x, mu), x, mu, squares)
    if out is not None:
        return out
    xc = x - mu
    return xc, (xc * xc if squares else None)


def batch_norm_scale(xc: Any, scale: Any, bias: Any, out: Any = None) -> Any:
    """Batch norm's output ``xc * scale + bias`` (two roundings, in that order), into ``out``
    if given (``xc``'s shape and layout). ``scale`` per channel (1, C, 1, ...); ``bias`` (C,)
    or None."""
    y = _compiled("batch_norm_scale", (xc, scale), xc, scale, bias, out)
    if y is not None:
        return y
    y = get_array_module(xc).multiply(xc, scale, out=out)
    if bias is not None:
        y += bias.reshape(scale.shape)
    return y


def batch_norm_input_grad(gy: Any, xc: Any, scale: Any, k1: Any, k2: Any, out: Any = None) -> Any:
    """Batch norm's input gradient in training mode, ``gy * scale - xc * k1 - k2`` (each product
    and difference rounded in that order), into ``out`` if given. ``gy`` and ``xc`` (N, C, ...);
    ``scale``, ``k1``, ``k2`` per channel (1, C, 1, ...)."""
    gx = _compiled("batch_norm_input_grad", (gy, xc, scale), gy, xc, scale, k1, k2, out)
    if gx is not None:
        return gx
    xp = get_array_module(gy, xc)
    gx = gy * scale
    gx -= xp.multiply(xc, k1, out=out)
    gx -= k2
    return gx


def channel_sum(a: Any) -> Any:
    """Sum over every axis but axis 1: (N, C, ...) -> (C,), ``a``'s dtype.

    Where ``a``'s memory is channels-last (a conv output, or any C-contiguous 2-D array), it is
    the matrix ``rows`` (M, C) without a copy; when that matrix is tall (M >= 1024, C >= 8), the
    sum is the GEMV ``ones(M) @ rows``: BLAS runs it on all cores, 2-2.5x faster here than
    NumPy's reduction over the outer axes (measured: (12544, 64) 90 vs 200 us, (3136, 128)
    37 vs 76 us). Smaller sums, where a BLAS call's ~5 us overhead dominates, and other layouts
    use ``a.sum`` over those axes.
    """
    xp = get_array_module(a)
    last = xp.moveaxis(a, 1, -1)
    m = a.size // max(a.shape[1], 1)
    if not (last.flags.c_contiguous and m >= 1024 and a.shape[1] >= 8):
        return a.sum(axis=(0, *range(2, a.ndim)))
    return xp.ones(m, dtype=a.dtype) @ last.reshape(m, a.shape[1])


__all__ = [
    "adam_update",
    "batch_norm_center",
    "batch_norm_input_grad",
    "batch_norm_scale",
    "channel_sum",
    "col2im",
    "gemm_col2im",
    "im2col",
    "leaky_relu_backward",
    "leaky_relu_forward",
    "shapes",
]
