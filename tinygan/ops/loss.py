"""Losses (PyTorch semantics): each computes its elementwise values in one Function, followed by
its function, which checks the arguments and reduces with ``mean`` or ``sum``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import backend
from ..function import Function, sum_to
from ..tensor import Tensor
from .activation import sigmoid, softmax, stable_log_softmax
from .math import exp
from .reduction import mean, sum

REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return mean(loss)
    if reduction == "sum":
        return sum(loss)
    return loss


def _check_reduction(op: str, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}; got {reduction!r}")


def _check_same_shape(op: str, a: Any, b: Any, names: str = "input and target") -> None:
    """Same shape, both floating point (an integer target would promote the loss's dtype)."""
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{op}: {names} must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    for name, v in zip(names.split(" and "), (a, b)):
        if v.dtype.kind != "f":
            raise TypeError(f"{op}: {name} must be floating point; got dtype {v.dtype}")


class BCEWithLogits(Function):
    """Elementwise ``max(x, 0) - x t + log(1 + exp(-|x|))``: finite for any logit ``x``."""

    def forward(self, x, t):
        xp = self.xp
        return xp.maximum(x, 0) - x * t + xp.log1p(xp.exp(-xp.abs(x)))

    def backward(self, gy):
        x, t = self.inputs
        gx = gy * (sigmoid(x) - t) if self.needs_input_grad[0] else None
        gt = -gy * x if self.needs_input_grad[1] else None
        return gx, gt


def binary_cross_entropy_with_logits(
    input: Tensor, target: Any, *, reduction: str = "mean"
) -> Tensor:
    """Binary cross-entropy of ``sigmoid(input)`` against probabilities ``target``.

    ``loss = -(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x)))``, computed from the logits
    without overflow (finite at ``x = +-1e4``), as ``torch.nn.functional`` does.

    Parameters
    ----------
    input : Tensor, any shape (logits)
    target : Tensor or array, the same shape (values in [0, 1]; may require grad)
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    Tensor: a scalar, or the elementwise losses (shape of ``input``) for ``"none"``.
    """
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    _check_same_shape("binary_cross_entropy_with_logits", input, target)
    return _reduce(BCEWithLogits()(input, target), reduction)


class CrossEntropy(Function):
    """Per-sample ``-log_softmax(x)[n, t_n]`` for logits (N, C) and class indices (N,)."""

    def __init__(self, target):
        self.target = target

    def forward(self, x):
        xp = self.xp
        return -stable_log_softmax(x, 1, xp)[xp.arange(x.shape[0]), self.target]

    def backward(self, gy):
        (x,) = self.inputs
        xp = self.xp
        onehot = xp.zeros(x.shape, dtype=x.dtype)
        onehot[xp.arange(x.shape[0]), self.target] = 1
        return (softmax(x, 1) - onehot) * gy.reshape(-1, 1)


def cross_entropy(input: Tensor, target: Any, *, reduction: str = "mean") -> Tensor:
    """Cross-entropy of logits against class indices, as ``torch.nn.functional.cross_entropy``.

    Applies ``log_softmax`` itself: pass raw logits, not probabilities.

    Parameters
    ----------
    input : Tensor, shape (N, C)
        Unnormalised logits.
    target : Tensor or array of integers, shape (N,)
        Class indices in ``[0, C)``.
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    Tensor: a scalar, or shape (N,) for ``"none"``.
    """
    op = "cross_entropy"
    _check_reduction(op, reduction)
    if input.ndim != 2:
        raise ValueError(f"{op}: input must be logits of shape (N, C); got {input.shape}")
    t = target.data if isinstance(target, Tensor) else target
    if not hasattr(t, "dtype"):
        t = np.asarray(t)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices; got dtype {t.dtype}")
    if tuple(t.shape) != (input.shape[0],):
        raise ValueError(
            f"{op}: target must have shape ({input.shape[0]},) for input {input.shape}; "
            f"got {tuple(t.shape)}"
        )
    xp = backend.get_array_module(input.data, t)
    n_classes = input.shape[1]
    if t.size:
        bad = xp.nonzero((t < 0) | (t >= n_classes))[0]
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{op}: target {int(t[i])} at index {i} is out of range for {n_classes} classes"
            )
    return _reduce(CrossEntropy(t)(input), reduction)


class MSE(Function):
    def forward(self, x, t):
        d = x - t
        return d * d

    def backward(self, gy):
        x, t = self.inputs
        g = 2 * gy * (x - t)
        return g if self.needs_input_grad[0] else None, -g if self.needs_input_grad[1] else None


def mse_loss(input: Tensor, target: Any, *, reduction: str = "mean") -> Tensor:
    """Squared error ``(input - target)**2``, reduced; input and target of one shape."""
    _check_reduction("mse_loss", reduction)
    _check_same_shape("mse_loss", input, target)
    return _reduce(MSE()(input, target), reduction)


class GaussianNLLVar(Function):
    """Elementwise ``0.5 (log v + (x - t)^2 / v)`` with ``v = max(var, eps)``.

    As PyTorch, the clamp is invisible to autograd: the gradient reaches ``var`` as if unclamped.
    ``var`` broadcasts against ``x``; its gradient is summed back to its shape.
    """

    def __init__(self, eps: float, const: float):
        self.eps, self.const = eps, const

    def forward(self, x, t, var):
        xp = self.xp
        d = x - t
        v = xp.maximum(var, self.eps)
        self.clamp = v - var  # added to var: the clamp, invisible to autograd
        y = 0.5 * (xp.log(v) + d * d / v)
        return y + self.const if self.const else y

    def backward(self, gy):
        x, t, var = self.inputs
        d, v = x - t, var + self.clamp
        r = d / v
        gx = gy * r
        need = self.needs_input_grad
        gv = sum_to(0.5 * gy * (1 - d * r) / v, var.shape) if need[2] else None
        return (
            sum_to(gx, x.shape) if need[0] else None,
            sum_to(-gx, t.shape) if need[1] else None,
            gv,
        )


def gaussian_nll_loss(
    input: Tensor,
    target: Any,
    var: Any,
    full: bool = False,
    eps: float = 1e-6,
    reduction: str = "mean",
) -> Tensor:
    """Gaussian negative log-likelihood, exactly as ``torch.nn.functional.gaussian_nll_loss``.

    ``loss = 0.5 * (log(max(var, eps)) + (input - target)**2 / max(var, eps))``, plus
    ``0.5 * log(2 pi)`` if ``full``; ``input`` is the predicted mean, ``target`` the sample.

    Parameters
    ----------
    input : Tensor, shape (N, *)
        Expected values.
    target : Tensor or array, shape (N, *) (may require grad)
    var : Tensor, array or float
        Variances: the shape of ``input``, or that shape with its last dim dropped or one dim
        set to 1 (shared along that dim); a float is a fixed variance for every element.
        Must be non-negative.
    full : bool
        Include the constant ``0.5 log(2 pi)``.
    eps : float
        Lower clamp on ``var`` (the gradient passes the clamp unchanged, as in PyTorch).
    reduction : {"mean", "sum", "none"}
    """
    op = "gaussian_nll_loss"
    _check_reduction(op, reduction)
    _check_same_shape(op, input, target)
    xp = backend.get_array_module(input.data)
    if isinstance(var, (int, float)):
        var = Tensor(xp.full(input.shape, var, dtype=input.dtype))
    elif not isinstance(var, Tensor):
        var = Tensor(var)
    if var.shape != input.shape:  # PyTorch's rule: one variance per sample along one axis
        mismatched = [v for n, v in zip(input.shape, var.shape) if n != v]
        if var.shape == input.shape[:-1]:
            var = var.reshape(*var.shape, 1)
        elif var.ndim != input.ndim or mismatched != [1]:
            raise ValueError(
                f"{op}: var of shape {var.shape} does not fit input of shape {input.shape} "
                "(expected the input's shape, that shape without its last dim, or with one dim "
                "set to 1)"
            )
    neg = backend.get_array_module(var.data).any(var.data < 0)
    if neg:
        raise ValueError(f"{op}: var has negative entries (min {float(var.data.min())})")
    const = 0.5 * math.log(2 * math.pi) if full else 0.0
    return _reduce(GaussianNLLVar(eps, const)(input, target, var), reduction)


class GaussianNLLLogStd(Function):
    """Elementwise ``log_std + 0.5 log(2 pi) + 0.5 ((x - mean) / exp(log_std))^2``."""

    def forward(self, x, mu, log_std):
        z = (x - mu) * self.xp.exp(-log_std)  # standardised residual
        return log_std + (0.5 * z * z + 0.5 * math.log(2 * math.pi))

    def backward(self, gy):
        x, mu, log_std = self.inputs
        inv_std = exp(-log_std)
        z = (x - mu) * inv_std
        need = self.needs_input_grad
        gx = gy * z * inv_std if need[0] or need[1] else None
        gs = sum_to(gy * (1 - z * z), log_std.shape) if need[2] else None
        return (
            sum_to(gx, x.shape) if need[0] else None,
            sum_to(-gx, mu.shape) if need[1] else None,
            gs,
        )


def gaussian_nll(x: Any, mean: Tensor, log_std: Any = None, *, reduction: str = "mean") -> Tensor:
    """``-log N(x; mean, exp(log_std)^2)``, the normalising constant included (InfoGAN's form).

    This is ``gaussian_nll_loss(mean, x, exp(2 * log_std), full=True)`` without the ``eps``
    clamp, parametrised by the log standard deviation so that a learned std stays positive.

    Parameters
    ----------
    x : Tensor or array, shape (N, D)
        The samples (InfoGAN: the continuous codes fed to G).
    mean : Tensor, shape (N, D)
        The predicted means (InfoGAN: Q's output).
    log_std : Tensor, array or float, broadcastable to (N, D); default 0 (std 1)
        Fixed or learned log standard deviations.
    reduction : {"mean", "sum", "none"}
        Over all elements; for InfoGAN's per-sample sum over codes use ``"none"`` then
        ``.sum(1).mean()``.
    """
    op = "gaussian_nll"
    _check_reduction(op, reduction)
    _check_same_shape(op, x, mean, "x and mean")
    if log_std is None or isinstance(log_std, (int, float)):
        xp = backend.get_array_module(mean.data)
        log_std = Tensor(xp.asarray(0.0 if log_std is None else log_std, dtype=mean.dtype))
    try:
        np.broadcast_shapes(tuple(log_std.shape), tuple(mean.shape))
    except ValueError:
        raise ValueError(
            f"{op}: log_std of shape {tuple(log_std.shape)} does not broadcast to {mean.shape}"
        ) from None
    if np.broadcast_shapes(tuple(log_std.shape), tuple(mean.shape)) != tuple(mean.shape):
        raise ValueError(
            f"{op}: log_std of shape {tuple(log_std.shape)} does not broadcast to {mean.shape}"
        )
    return _reduce(GaussianNLLLogStd()(x, mean, log_std), reduction)
