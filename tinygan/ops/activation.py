"""Activations and the log-sum-exp family, in numerically stable forms matching PyTorch; each
op's Function followed by its function. The Functions are named apart from the layers of
``tinygan.nn`` that call them (``ReLUFunction`` under ``nn.ReLU``).
"""

from __future__ import annotations

from .. import kernels
from ..function import Function
from ..tensor import Tensor
from .math import exp


def stable_sigmoid(x, xp):
    """``1 / (1 + exp(-x))`` on a raw array, without overflow for any ``x``."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _stable_max(x, axis, xp):
    """Max over ``axis`` (kept), with non-finite maxima replaced by 0 so ``x - m`` is safe."""
    m = x.max(axis=axis, keepdims=True)
    return xp.where(xp.isfinite(m), m, 0)


def stable_log_softmax(x, axis, xp):
    """``x - logsumexp(x, axis)`` on a raw array, shifted by the max so it never overflows."""
    shifted = x - _stable_max(x, axis, xp)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def _dim(x: Tensor, dim: int) -> int:
    if not -max(x.ndim, 1) <= dim < max(x.ndim, 1):
        raise ValueError(f"dim {dim} is out of range for a tensor with {x.ndim} dims")
    return dim % max(x.ndim, 1) if x.ndim else None


class ReLUFunction(Function):
    def forward(self, x):
        return self.xp.maximum(x, 0)

    def backward(self, gy):
        return gy * (self.output.data > 0)  # gradient 0 at x == 0, as PyTorch


def relu(x: Tensor) -> Tensor:
    """``max(x, 0)``."""
    return ReLUFunction()(x)


class LeakyReLUFunction(Function):
    def __init__(self, negative_slope: float):
        self.slope = negative_slope

    def forward(self, x):
        return kernels.leaky_relu_forward(x, self.slope)

    def backward(self, gy):
        return LeakyReLUGrad(self.inputs[0].data, self.slope)(gy)


class LeakyReLUGrad(Function):
    """``gy`` where ``x > 0``, else ``slope * gy``: linear in ``gy`` (``x`` is a constant: the
    slope is piecewise constant), so its own backward is itself."""

    def __init__(self, x, slope: float):
        self.x, self.slope = x, slope

    def forward(self, gy):
        return kernels.leaky_relu_backward(self.x, gy, self.slope)

    def backward(self, ggx):
        return LeakyReLUGrad(self.x, self.slope)(ggx)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """``x`` where ``x > 0``, else ``negative_slope * x``."""
    return LeakyReLUFunction(negative_slope)(x)


class SigmoidFunction(Function):
    def forward(self, x):
        return stable_sigmoid(x, self.xp)

    def backward(self, gy):
        y = self.output
        return gy * y * (1 - y)


def sigmoid(x: Tensor) -> Tensor:
    """``1 / (1 + exp(-x))``, computed without overflow."""
    return SigmoidFunction()(x)


class TanhFunction(Function):
    def forward(self, x):
        return self.xp.tanh(x)

    def backward(self, gy):
        y = self.output
        return gy * (1 - y * y)


def tanh(x: Tensor) -> Tensor:
    """Elementwise hyperbolic tangent."""
    return TanhFunction()(x)


class Softplus(Function):
    """``log(1 + exp(beta x)) / beta``, and ``x`` itself where ``beta x > threshold`` (PyTorch)."""

    def __init__(self, beta: float, threshold: float):
        self.beta, self.threshold = beta, threshold

    def forward(self, x):
        xp = self.xp
        bx = x * self.beta
        self.linear = bx > self.threshold
        soft = xp.log1p(xp.exp(xp.minimum(bx, self.threshold))) / self.beta
        return xp.where(self.linear, x, soft)

    def backward(self, gy):
        (x,) = self.inputs  # the slope: sigmoid(beta x) in the soft part, 1 in the linear part
        slope = sigmoid(x * self.beta) * ~self.linear + self.linear
        return gy * slope


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """``log(1 + exp(beta * x)) / beta``; linear where ``beta * x > threshold``."""
    return Softplus(beta, threshold)(x)


class LogSumExp(Function):
    def __init__(self, dim: int, keepdim: bool):
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x):
        xp = self.xp
        m = _stable_max(x, self.dim, xp)
        y = m + xp.log(xp.exp(x - m).sum(axis=self.dim, keepdims=True))
        return y if self.keepdim else xp.squeeze(y, axis=self.dim)

    def backward(self, gy):
        (x,) = self.inputs
        kept = tuple(1 if i == self.dim else n for i, n in enumerate(x.shape))
        return gy.reshape(*kept) * exp(x - self.output.reshape(*kept))


def logsumexp(x: Tensor, dim: int, keepdim: bool = False) -> Tensor:
    """``log(sum(exp(x), dim))``, shifted by the max so it never overflows."""
    return LogSumExp(_dim(x, dim), keepdim)(x)


class LogSoftmax(Function):
    def __init__(self, dim: int):
        self.dim = dim

    def forward(self, x):
        return stable_log_softmax(x, self.dim, self.xp)

    def backward(self, gy):
        return gy - exp(self.output) * gy.sum(self.dim, keepdim=True)


def log_softmax(x: Tensor, dim: int) -> Tensor:
    """``x - logsumexp(x, dim)``: log-probabilities along ``dim``."""
    return LogSoftmax(_dim(x, dim))(x)


class Softmax(Function):
    def __init__(self, dim: int):
        self.dim = dim

    def forward(self, x):
        xp = self.xp
        e = xp.exp(x - _stable_max(x, self.dim, xp))
        return e / e.sum(axis=self.dim, keepdims=True)

    def backward(self, gy):
        y = self.output
        return y * (gy - (gy * y).sum(self.dim, keepdim=True))


def softmax(x: Tensor, dim: int) -> Tensor:
    """Probabilities along ``dim``: ``exp(x) / sum(exp(x), dim)``."""
    return Softmax(_dim(x, dim))(x)
