"""Arithmetic and elementwise math, matmul, dtype and device moves; each op's Function followed
by its function.

Shapes: elementwise binary ops broadcast as NumPy does; their backward sums each gradient back
to its input's shape with ``sum_to``. ``Mul``, the pattern every op follows, lives beside
``Function`` in function.py.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import backend
from ..function import Function, broadcast_shape, sum_to
from ..tensor import Tensor


class Add(Function):
    def forward(self, a, b):
        broadcast_shape("add", a, b)
        return a + b

    def backward(self, gy):
        a, b = self.inputs
        return sum_to(gy, a.shape), sum_to(gy, b.shape)


def add(a: Any, b: Any) -> Tensor:
    """Elementwise ``a + b`` with broadcasting."""
    return Add()(a, b)


class Sub(Function):
    def forward(self, a, b):
        broadcast_shape("sub", a, b)
        return a - b

    def backward(self, gy):
        a, b = self.inputs
        gb = sum_to(-gy, b.shape) if self.needs_input_grad[1] else None
        return sum_to(gy, a.shape), gb


def sub(a: Any, b: Any) -> Tensor:
    """Elementwise ``a - b`` with broadcasting."""
    return Sub()(a, b)


class Div(Function):
    def forward(self, a, b):
        broadcast_shape("div", a, b)
        return a / b

    def backward(self, gy):
        a, b = self.inputs
        ga = sum_to(gy / b, a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(-gy * a / (b * b), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def div(a: Any, b: Any) -> Tensor:
    """Elementwise ``a / b`` with broadcasting."""
    return Div()(a, b)


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


def neg(x: Tensor) -> Tensor:
    """``-x``."""
    return Neg()(x)


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


def pow(x: Tensor, exponent: float) -> Tensor:
    """``x ** exponent`` for a Python (or NumPy) scalar exponent."""
    if isinstance(exponent, Tensor) or not isinstance(exponent, (int, float, np.number)):
        raise TypeError(f"pow: the exponent must be a Python number; got {type(exponent).__name__}")
    return Pow(exponent.item() if isinstance(exponent, np.generic) else exponent)(x)


class Exp(Function):
    def forward(self, x):
        return self.xp.exp(x)

    def backward(self, gy):
        return gy * self.output


def exp(x: Tensor) -> Tensor:
    """Elementwise ``e**x``."""
    return Exp()(x)


def rpow(x: Tensor, base: float) -> Tensor:
    """``base ** x`` for a positive Python number ``base``: ``exp(x * ln(base))``."""
    if not isinstance(base, (int, float)) or base <= 0:
        raise ValueError(f"base ** tensor needs a positive number as the base; got {base!r}")
    return exp(x * math.log(base))


class Log(Function):
    def forward(self, x):
        return self.xp.log(x)

    def backward(self, gy):
        return gy / self.inputs[0]


def log(x: Tensor) -> Tensor:
    """Elementwise natural logarithm."""
    return Log()(x)


class Sqrt(Function):
    def forward(self, x):
        return self.xp.sqrt(x)

    def backward(self, gy):
        return gy / (2 * self.output)


def sqrt(x: Tensor) -> Tensor:
    """Elementwise square root."""
    return Sqrt()(x)


class Abs(Function):
    def forward(self, x):
        return self.xp.abs(x)

    def backward(self, gy):
        return gy * self.xp.sign(self.inputs[0].data)


def abs(x: Tensor) -> Tensor:
    """Elementwise ``|x|``; the gradient at 0 is 0."""
    return Abs()(x)


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


def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise maximum with broadcasting; ties split the gradient in half."""
    return Maximum()(a, b)


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


def clip(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    """Clamp ``x`` to ``[min, max]``; the gradient is 1 where ``min <= x <= max``."""
    if min is None and max is None:
        raise ValueError("clip needs at least one of min and max")
    return Clip(min, max)(x)


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


def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product with NumPy/PyTorch semantics: ``(..., n, k) @ (..., k, m) -> (..., n, m)``."""
    return MatMul()(a, b)


class AsType(Function):
    def __init__(self, dtype: Any):
        self.dtype = np.dtype(dtype)

    def forward(self, x):
        return x.astype(self.dtype)

    def backward(self, gy):
        return gy.astype(self.inputs[0].dtype)


def astype(x: Tensor, dtype: Any) -> Tensor:
    """``x`` converted to ``dtype`` (differentiable; the gradient is converted back)."""
    return AsType(dtype)(x)


class ToDevice(Function):
    def __init__(self, device: str):
        self.device = device

    def forward(self, x):
        self.src = backend.device_of(x)
        return backend.to_device(x, self.device)

    def backward(self, gy):
        return to_device(gy, self.src)


def to_device(x: Tensor, device: str) -> Tensor:
    """``x`` copied to ``device`` (differentiable; the gradient is copied back)."""
    return ToDevice(backend.check_device(device))(x)


def to(x: Tensor, device: str) -> Tensor:
    """``x`` on ``device`` ("cpu" or "cuda"): ``x`` itself if it is already there, else
    ``to_device(x, device)`` (``Tensor.to``)."""
    backend.check_device(device)
    return x if device == x.device else to_device(x, device)
