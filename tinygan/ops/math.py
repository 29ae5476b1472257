"""Arithmetic, elementwise math, matmul and reductions.

Shapes: elementwise binary ops broadcast as NumPy does; their backward sums each gradient back
to its input's shape with ``sum_to``.
"""

from __future__ import annotations

import builtins
from typing import Any, NamedTuple

import numpy as np

from .. import backend
from ..function import Function, Mul, broadcast_shape, sum_to
from ..tensor import Tensor
from .shape import broadcast_to


class Add(Function):
    def forward(self, a, b):
        broadcast_shape("add", a, b)
        return a + b

    def backward(self, gy):
        a, b = self.inputs
        return sum_to(gy, a.shape), sum_to(gy, b.shape)


class Sub(Function):
    def forward(self, a, b):
        broadcast_shape("sub", a, b)
        return a - b

    def backward(self, gy):
        a, b = self.inputs
        gb = sum_to(-gy, b.shape) if self.needs_input_grad[1] else None
        return sum_to(gy, a.shape), gb


class Div(Function):
    def forward(self, a, b):
        broadcast_shape("div", a, b)
        return a / b

    def backward(self, gy):
        a, b = self.inputs
        ga = sum_to(gy / b, a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(-gy * a / (b * b), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Pow(Function):
    """``x ** p`` for a Python scalar exponent ``p``."""

    def __init__(self, p: float):
        self.p = p

    def forward(self, x):
        return x**self.p

    def backward(self, gy):
        (x,) = self.inputs
        if self.p == 0:
            return gy * 0
        return gy * self.p * x ** (self.p - 1)


class Exp(Function):
    def forward(self, x):
        return self.xp.exp(x)

    def backward(self, gy):
        return gy * self.output


class Log(Function):
    def forward(self, x):
        return self.xp.log(x)

    def backward(self, gy):
        return gy / self.inputs[0]


class Sqrt(Function):
    def forward(self, x):
        return self.xp.sqrt(x)

    def backward(self, gy):
        return gy / (2 * self.output)


class Abs(Function):
    def forward(self, x):
        return self.xp.abs(x)

    def backward(self, gy):
        return gy * self.xp.sign(self.inputs[0].data)


class Maximum(Function):
    """Elementwise maximum; at ties each input gets half the gradient (as PyTorch)."""

    def forward(self, a, b):
        broadcast_shape("maximum", a, b)
        if any(self.needs_input_grad):  # a's share of the gradient: 1, 1/2 or 0
            self.share = ((a > b) + 0.5 * (a == b)).astype(a.dtype)
        return self.xp.maximum(a, b)

    def backward(self, gy):
        a, b = self.inputs
        ga = sum_to(gy * self.share, a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(gy * (1 - self.share), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Clip(Function):
    """Clamp to ``[lo, hi]`` (either may be None); gradient 1 inside, bounds included."""

    def __init__(self, lo: float | None, hi: float | None):
        self.lo, self.hi = lo, hi

    def forward(self, x):
        if self.needs_input_grad[0]:
            self.inside = self.xp.ones(x.shape, dtype=bool)
            if self.lo is not None:
                self.inside &= x >= self.lo
            if self.hi is not None:
                self.inside &= x <= self.hi
        return self.xp.clip(x, self.lo, self.hi)

    def backward(self, gy):
        return gy * self.inside


class MatMul(Function):
    """``a @ b`` with NumPy's rules: 1-D operands are promoted, leading dims broadcast."""

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(
                f"matmul: operands must be at least 1-D; got shapes {a.shape} and {b.shape}"
            )
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(
                f"matmul: shapes {a.shape} and {b.shape} do not match (inner dims differ)"
            )
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])  # raises on a batch-dim mismatch
        return a @ b

    def backward(self, gy):
        a, b = self.inputs
        a2 = a.reshape(1, -1) if a.ndim == 1 else a  # (..., n, k)
        b2 = b.reshape(-1, 1) if b.ndim == 1 else b  # (..., k, m)
        batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
        g2 = gy.reshape(*batch, a2.shape[-2], b2.shape[-1])  # (..., n, m)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = sum_to(g2 @ b2.transpose(-1, -2), a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:
            gb = sum_to(a2.transpose(-1, -2) @ g2, b2.shape).reshape(b.shape)
        return ga, gb


class AsType(Function):
    def __init__(self, dtype: Any):
        self.dtype = np.dtype(dtype)

    def forward(self, x):
        return x.astype(self.dtype)

    def backward(self, gy):
        return gy.astype(self.inputs[0].dtype)


class ToDevice(Function):
    def __init__(self, device: str):
        self.device = device

    def forward(self, x):
        self.src = backend.device_of(x)
        return backend.to_device(x, self.device)

    def backward(self, gy):
        return to_device(gy, self.src)


# ---- reductions ---------------------------------------------------------------------------
def _axes(dim: Any, ndim: int, aliases: dict) -> tuple[int, ...]:
    """Normalise a reduction's ``dim`` (PyTorch) or ``axis`` (NumPy) to a tuple of axes."""
    if "axis" in aliases:
        dim = aliases.pop("axis")
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    out = []
    for d in dims:
        if not -builtins.max(ndim, 1) <= d < builtins.max(ndim, 1):
            raise ValueError(f"dim {d} is out of range for a tensor with {ndim} dims")
        out.append(int(d) % builtins.max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"dim {dim} repeats an axis")
    return tuple(a for a in out if a < ndim)


def _keepdim(keepdim: bool, aliases: dict) -> bool:
    keepdim = aliases.pop("keepdims", keepdim)
    if aliases:
        raise TypeError(f"unexpected keyword arguments {sorted(aliases)}")
    return bool(keepdim)


class _Reduction(Function):
    def __init__(self, axes: tuple[int, ...], keepdim: bool):
        self.axes, self.keepdim = axes, keepdim

    def _kept(self, gy):
        """``gy`` reshaped so that it broadcasts against the input."""
        return gy.reshape(*(1 if i in self.axes else n for i, n in enumerate(self.shape)))


class Sum(_Reduction):
    def forward(self, x):
        self.shape = x.shape
        return x.sum(axis=self.axes, keepdims=self.keepdim)

    def backward(self, gy):
        return broadcast_to(self._kept(gy), self.shape)


class Mean(_Reduction):
    def forward(self, x):
        self.shape = x.shape
        return x.mean(axis=self.axes, keepdims=self.keepdim)

    def backward(self, gy):
        n = int(np.prod([self.shape[a] for a in self.axes]))
        return broadcast_to(self._kept(gy) / n, self.shape)


class Max(_Reduction):
    """Maximum over axes; tied maxima share the gradient equally (as ``torch.amax``)."""

    def forward(self, x):
        if x.size == 0:
            raise ValueError("max of an empty tensor")
        self.shape = x.shape
        y = x.max(axis=self.axes, keepdims=True)
        if self.needs_input_grad[0]:
            mask = (x == y).astype(x.dtype)
            self.share = mask / mask.sum(axis=self.axes, keepdims=True)  # ties share equally
        return (
            y
            if self.keepdim
            else y.reshape([n for i, n in enumerate(x.shape) if i not in self.axes])
        )

    def backward(self, gy):
        return self._kept(gy) * self.share


# ---- the plain functions ------------------------------------------------------------------
def add(a: Any, b: Any) -> Tensor:
    """Elementwise ``a + b`` with broadcasting."""
    return Add()(a, b)


def sub(a: Any, b: Any) -> Tensor:
    """Elementwise ``a - b`` with broadcasting."""
    return Sub()(a, b)


def mul(a: Any, b: Any) -> Tensor:
    """Elementwise ``a * b`` with broadcasting."""
    return Mul()(a, b)


def div(a: Any, b: Any) -> Tensor:
    """Elementwise ``a / b`` with broadcasting."""
    return Div()(a, b)


def neg(x: Tensor) -> Tensor:
    """``-x``."""
    return Neg()(x)


def pow(x: Tensor, exponent: float) -> Tensor:
    """``x ** exponent`` for a Python (or NumPy) scalar exponent."""
    if isinstance(exponent, Tensor) or not isinstance(exponent, (int, float, np.number)):
        raise TypeError(f"pow: the exponent must be a Python number; got {type(exponent).__name__}")
    return Pow(exponent.item() if isinstance(exponent, np.generic) else exponent)(x)


def exp(x: Tensor) -> Tensor:
    """Elementwise ``e**x``."""
    return Exp()(x)


def log(x: Tensor) -> Tensor:
    """Elementwise natural logarithm."""
    return Log()(x)


def sqrt(x: Tensor) -> Tensor:
    """Elementwise square root."""
    return Sqrt()(x)


def abs(x: Tensor) -> Tensor:
    """Elementwise ``|x|``; the gradient at 0 is 0."""
    return Abs()(x)


def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise maximum with broadcasting; ties split the gradient in half."""
    return Maximum()(a, b)


def clip(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    """Clamp ``x`` to ``[min, max]``; the gradient is 1 where ``min <= x <= max``."""
    if min is None and max is None:
        raise ValueError("clip needs at least one of min and max")
    return Clip(min, max)(x)


def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product with NumPy/PyTorch semantics: ``(..., n, k) @ (..., k, m) -> (..., n, m)``."""
    return MatMul()(a, b)


def astype(x: Tensor, dtype: Any) -> Tensor:
    """``x`` converted to ``dtype`` (differentiable; the gradient is converted back)."""
    return AsType(dtype)(x)


def to_device(x: Tensor, device: str) -> Tensor:
    """``x`` copied to ``device`` (differentiable; the gradient is copied back)."""
    return ToDevice(backend.check_device(device))(x)


def sum(x: Tensor, dim: Any = None, keepdim: bool = False, **aliases: Any) -> Tensor:
    """Sum over ``dim`` (int, tuple or None for all; ``axis=``/``keepdims=`` also accepted)."""
    return Sum(_axes(dim, x.ndim, aliases), _keepdim(keepdim, aliases))(x)


def mean(x: Tensor, dim: Any = None, keepdim: bool = False, **aliases: Any) -> Tensor:
    """Mean over ``dim`` (int, tuple or None for all; ``axis=``/``keepdims=`` also accepted)."""
    return Mean(_axes(dim, x.ndim, aliases), _keepdim(keepdim, aliases))(x)


def amax(x: Tensor, dim: Any = None, keepdim: bool = False, **aliases: Any) -> Tensor:
    """Maximum values over ``dim`` (int, tuple or None for all), as ``torch.amax``: tied maxima
    share the gradient equally."""
    return Max(_axes(dim, x.ndim, aliases), _keepdim(keepdim, aliases))(x)


class MaxResult(NamedTuple):
    values: Tensor
    indices: Tensor


def max(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor | MaxResult:
    """As ``torch.max``: without ``dim``, the largest value (a 0-d Tensor); with an int ``dim``,
    the pair ``(values, indices)`` along it, the gradient going to the first maximum of each
    slice (the one ``indices`` names)."""
    if dim is None:
        return amax(x)
    if x.ndim == 0:
        raise ValueError("max(dim) needs a tensor with at least one dimension")
    (axis,) = _axes(dim, x.ndim, {})
    xp = backend.get_array_module(x.data)
    indices = x.data.argmax(axis=axis)
    grid = xp.ix_(*(xp.arange(n) for n in indices.shape))  # the other axes' coordinates
    values = x[(*grid[:axis], indices, *grid[axis:])]
    if keepdim:
        values, indices = (
            values.reshape(*x.shape[:axis], 1, *x.shape[axis + 1 :]),
            xp.expand_dims(indices, axis),
        )
    return MaxResult(values, Tensor(indices))
