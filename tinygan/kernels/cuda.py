"""CUDA kernels through CuPy: the same signatures as ``kernels/cpu.py``, sources beside launchers.

CuPy is reached through ``backend.cupy()`` when a kernel runs, so importing this module (and
``tinygan``) works without it. Each raw kernel is compiled once per dtype (float or double, via
a ``typedef``) and cached.
The conv kernels take contiguous arrays (inputs are made contiguous first) and use one thread
per *output* element, with a grid-stride loop; col2im gathers instead of scattering: each
thread sums the ``cols`` entries that touch its own pixel, so it needs no atomics and its
result does not depend on scheduling.

Shapes as in ``kernels/cpu.py``: ``x`` (N, H, W, C), ``cols`` (N, OH, OW, kH, kW, C).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .. import backend

_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_THREADS = 256

# The conv geometry every raw kernel receives, after the two array pointers, as long longs.
_GEOMETRY = """
    const long long N, const long long H, const long long W, const long long C,
    const long long KH, const long long KW, const long long OH, const long long OW,
    const long long SH, const long long SW, const long long PH, const long long PW,
    const long long DH, const long long DW, const long long total"""

_IM2COL_SRC = (
    """
extern "C" __global__ void im2col(const T* __restrict__ x, T* __restrict__ cols,"""
    + _GEOMETRY
    + """)
{
    // one thread per cols[n, oh, ow, i, j, c]
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < total;
         k += (long long)blockDim.x * gridDim.x) {
        long long r = k;
        const long long c = r % C; r /= C;
        const long long j = r % KW; r /= KW;
        const long long i = r % KH; r /= KH;
        const long long ow = r % OW; r /= OW;
        const long long oh = r % OH;
        const long long n = r / OH;
        const long long h = oh * SH - PH + i * DH;
        const long long w = ow * SW - PW + j * DW;
        cols[k] = (0 <= h && h < H && 0 <= w && w < W) ? x[((n * H + h) * W + w) * C + c] : (T)0;
    }
}
"""
)

_COL2IM_SRC = (
    """
extern "C" __global__ void col2im(const T* __restrict__ cols, T* __restrict__ x,"""
    + _GEOMETRY
    + """)
{
    // one thread per x[n, h, w, c]: sum the taps (i, j) of the grid pixels (oh, ow) that read it,
    // i.e. oh*SH + i*DH == h + PH and ow*SW + j*DW == w + PW, in the order i, then j.
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < total;
         k += (long long)blockDim.x * gridDim.x) {
        long long r = k;
        const long long c = r % C; r /= C;
        const long long w = r % W; r /= W;
        const long long h = r % H;
        const long long n = r / H;
        T sum = 0;
        for (long long i = 0; i < KH; ++i) {
            const long long th = h + PH - i * DH;
            if (th < 0) break;  // th only decreases with i
            if (th % SH != 0 || th / SH >= OH) continue;
            const long long oh = th / SH;
            for (long long j = 0; j < KW; ++j) {
                const long long tw = w + PW - j * DW;
                if (tw < 0) break;
                if (tw % SW != 0 || tw / SW >= OW) continue;
                const long long ow = tw / SW;
                sum += cols[((((n * OH + oh) * OW + ow) * KH + i) * KW + j) * C + c];
            }
        }
        x[k] = sum;
    }
}
"""
)


def _ctype(dtype: Any) -> str:
    try:
        return _CTYPES[np.dtype(dtype)]
    except KeyError:
        raise TypeError(
            f"CUDA kernels support float32 and float64; got {np.dtype(dtype)}"
        ) from None


@functools.cache
def _raw_kernel(cupy, name: str, ctype: str):
    source = {"im2col": _IM2COL_SRC, "col2im": _COL2IM_SRC}[name]
    return cupy.RawKernel(f"typedef {ctype} T;\n" + source, name)


def _launch(name: str, src, dst, geometry: tuple[int, ...]) -> None:
    total = dst.size
    if total == 0:
        return
    blocks = min((total + _THREADS - 1) // _THREADS, 65535)
    args = (src, dst, *(np.int64(v) for v in geometry), np.int64(total))
    _raw_kernel(backend.cupy(), name, _ctype(dst.dtype))((blocks,), (_THREADS,), args)


def im2col(x, kh: int, kw: int, stride, padding, dilation, out_hw):
    """CUDA version of ``cpu.im2col``: (N, H, W, C) -> (N, OH, OW, kH, kW, C), contiguous."""
    cupy = backend.cupy()
    x = cupy.ascontiguousarray(x)
    n, h, w, c = x.shape
    oh, ow = out_hw
    cols = cupy.empty((n, oh, ow, kh, kw, c), dtype=x.dtype)
    _launch("im2col", x, cols, (n, h, w, c, kh, kw, oh, ow, *stride, *padding, *dilation))
    return cols


def col2im(cols, x_hw, stride, padding, dilation):
    """CUDA version of ``cpu.col2im``: (N, OH, OW, kH, kW, C) -> (N, H, W, C), contiguous."""
    cupy = backend.cupy()
    cols = cupy.ascontiguousarray(cols)
    n, oh, ow, kh, kw, c = cols.shape
    h, w = x_hw
    x = cupy.empty((n, h, w, c), dtype=cols.dtype)
    _launch("col2im", cols, x, (n, h, w, c, kh, kw, oh, ow, *stride, *padding, *dilation))
    return x


# ---- fused elementwise kernels ---------------------------------------------------------------
# name: (input params, output params, operation) of a cupy.ElementwiseKernel
_ELEMENTWISE = {
    "leaky_relu_forward": ("T x, T slope", "T y", "y = x > (T)0 ? x : x * slope"),
    "leaky_relu_backward": ("T x, T gy, T slope", "T gx", "gx = x > (T)0 ? gy : gy * slope"),
    "adam_update": (  # the arithmetic of cpu.adam_update, in place on param, m and v
        "T grad, T step_size, T w1, T beta2, T w2, T eps, T bc2_sqrt, T weight_decay",
        "T param, T m, T v",
        """
        const T g = weight_decay != (T)0 ? grad + weight_decay * param : grad;
        m = (w1 < (T)0.5 && w1 > (T)-0.5) ? m + w1 * (g - m) : g - (g - m) * ((T)1 - w1);
        v = v * beta2 + w2 * g * g;
        param = param + (-step_size * m) / (sqrt(v) / bc2_sqrt + eps);
        """,
    ),
}


@functools.cache
def _elementwise(cupy, name: str):
    return cupy.ElementwiseKernel(*_ELEMENTWISE[name], f"tinygan_{name}")


def leaky_relu_forward(x, slope: float):
    """``x`` where ``x > 0``, else ``slope * x``; same shape and dtype."""
    return _elementwise(backend.cupy(), "leaky_relu_forward")(x, x.dtype.type(slope))


def leaky_relu_backward(x, gy, slope: float):
    """``gy`` where ``x > 0``, else ``slope * gy``."""
    return _elementwise(backend.cupy(), "leaky_relu_backward")(x, gy, gy.dtype.type(slope))


def adam_update(
    param, grad, m, v, lr, beta1, beta2, eps, bias_correction1, bias_correction2, weight_decay=0.0
) -> None:
    """CUDA version of ``cpu.adam_update``: one Adam step in place on ``param``, ``m``, ``v``.

    The arrays must share one shape and dtype; the scalars are cast to that dtype.
    """
    t = param.dtype.type
    scalars = (lr / bias_correction1, 1 - beta1, beta2, 1 - beta2, eps, bias_correction2**0.5)
    kernel = _elementwise(backend.cupy(), "adam_update")
    kernel(grad, *map(t, scalars), t(weight_decay), param, m, v)
