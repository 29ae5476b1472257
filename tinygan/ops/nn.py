"""Neural-network ops: linear, batch norm, losses, dropout (PyTorch semantics).

Each op is one Function with its forward (on raw NumPy/CuPy arrays) and backward (Tensor ops)
side by side. Losses compute their elementwise values in one Function and reduce with
``mean``/``sum``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import backend, kernels
from ..function import Function, is_grad_enabled, sum_to
from ..tensor import Tensor, local_grad
from .activation import sigmoid, softmax, stable_log_softmax
from .math import exp
from .math import mean as _mean
from .math import sum as _sum
from .shape import broadcast_to

REDUCTIONS = ("mean", "sum", "none")


# ---- linear --------------------------------------------------------------------------------
class Linear(Function):
    """``y = x @ weight.T + bias`` over the last axis of ``x``; one GEMM each way."""

    def forward(self, x, weight, bias=None):
        y = x.reshape(-1, x.shape[-1]) @ weight.T  # (M, out), M = product of the leading dims
        if bias is not None:
            y += bias
        return y.reshape(*x.shape[:-1], weight.shape[0])

    def backward(self, gy):
        x, w = self.inputs[:2]
        flat = x.ndim != 2  # (..., in) -> (M, in) and back
        g2 = gy.reshape(-1, gy.shape[-1]) if flat else gy  # (M, out)
        need = self.needs_input_grad
        gx = g2 @ w if need[0] else None
        gx = gx.reshape(*x.shape) if flat and need[0] else gx
        gw = g2.T @ (x.reshape(-1, x.shape[-1]) if flat else x) if need[1] else None
        return (gx, gw) if len(need) == 2 else (gx, gw, ChannelSum()(g2) if need[2] else None)


class ChannelSum(Function):
    """Sum over every axis but axis 1: (N, C, ...) -> (C,), by ``kernels.channel_sum`` (a GEMV
    on channels-last memory); the bias gradient of linear and convolution layers."""

    def forward(self, x):
        return kernels.channel_sum(x)

    def backward(self, gy):
        shape = self.inputs[0].shape
        return broadcast_to(gy.reshape(1, -1, *(1,) * (len(shape) - 2)), shape)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Affine map over the last axis, as ``torch.nn.functional.linear``.

    Parameters
    ----------
    x : Tensor, shape (..., in_features)
    weight : Tensor, shape (out_features, in_features)
    bias : Tensor, shape (out_features,), optional

    Returns
    -------
    Tensor, shape (..., out_features)
    """
    if x.ndim < 1 or weight.ndim != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {x.shape} does not match weight of shape {weight.shape} "
            "(expected input (..., in_features) and weight (out_features, in_features))"
        )
    if bias is None:
        return Linear()(x, weight)
    if bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},); got {bias.shape}")
    return Linear()(x, weight, bias)


# ---- batch norm ----------------------------------------------------------------------------
class BatchNorm(Function):
    """Batch normalisation over all axes but 1 (channels), fused forward and analytic backward.

    Training: ``xhat = (x - mean_B) / sqrt(var_B + eps)`` with the biased batch variance;
    the running statistics (if given) are updated in place. Evaluation: the running statistics
    replace the batch ones and are constants. Then ``y = xhat * weight + bias``, computed as
    ``xc * scale + bias`` with ``xc = x - mean`` and the per-channel ``scale = weight * invstd``:
    ``xhat`` is never formed, and backward works from ``xc`` (``xhat = xc * invstd``).

    Every elementwise op works on ``x`` as it lies in memory (an NCHW view of NHWC memory stays
    NHWC: NumPy/CuPy keep the input's layout), so nothing is copied; the per-channel sums are
    ``kernels.channel_sum`` (one GEMV on channels-last memory).
    """

    def __init__(self, running_mean, running_var, training, momentum, eps):
        self.running = (running_mean, running_var)
        self.training, self.momentum, self.eps = training, momentum, eps

    def forward(self, x, weight=None, bias=None):
        xp = self.xp
        self.cshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)  # per-channel arrays broadcast
        if self.training:
            m = self._count(x.size // x.shape[1])  # a host int: the check below syncs nothing
            if m <= 1:
                raise ValueError(
                    f"batch norm: expected more than one value per channel over all "
                    f"ranks; got {m} (input shape on this rank {x.shape})"
                )
            self.m = m  # values per channel (over every rank's part of the batch)
            (total,) = self._all(kernels.channel_sum(x), what="mean")
            mu = (total / m).reshape(self.cshape)
            xc = x - mu
            squares = xc * xc
            (var_sum,) = self._all(kernels.channel_sum(squares).reshape(self.cshape), what="var")
            self._update_running(mu, var_sum / (m - 1))
            var = var_sum / m  # biased, for normalising
        else:
            rm, rv = (r.data if isinstance(r, Tensor) else r for r in self.running)
            mu, var = rm.reshape(self.cshape), rv.reshape(self.cshape)
            self.mu = mu
            xc = x - mu
            squares = None  # nothing to reuse
        self.invstd = 1 / xp.sqrt(var + self.eps)
        self.xc, self.weight = xc, weight
        scale = self.invstd if weight is None else self.invstd * weight.reshape(self.cshape)
        y = xp.multiply(xc, scale, out=squares)  # the summed squares' memory, when there is any
        if bias is not None:
            y += bias.reshape(self.cshape)
        return y

    def _count(self, m: int) -> int:
        """The number of values per channel in the whole batch: here this process's ``m``;
        ``distributed.SyncBatchNormFunction`` adds up every rank's."""
        return m

    def _all(self, *sums, what):
        """The per-channel sums over the whole batch: here this process's own;
        ``distributed.SyncBatchNormFunction`` adds up every rank's."""
        return sums

    def _all_gradients(self, *sums):
        """``_all`` for sums of the output's gradient (``distributed.SyncBatchNormFunction``
        weights each rank's by its share of the loss)."""
        return self._all(*sums, what="backward")

    def _update_running(self, mu, unbiased_var):
        """``running = momentum * batch + (1 - momentum) * running``, in place (PyTorch's order)."""
        for r, batch in zip(self.running, (mu, unbiased_var)):
            r = r.data if isinstance(r, Tensor) else r
            if r is not None:
                r[...] = self.momentum * batch.reshape(-1) + (1 - self.momentum) * r

    def backward(self, gy):
        if is_grad_enabled():  # create_graph: differentiate the formula, not the fused kernel
            return local_grad(self._formula, self.inputs, gy, self.needs_input_grad)
        gy = gy.data
        xc, invstd, cshape = self.xc, self.invstd, self.cshape
        need = self.needs_input_grad
        stats = need[0] and self.training  # the input's gradient needs both sums
        gw = gb = gx = None
        if stats or need[1:2] == (True,):  # sum(gy * xhat) = invstd * sum(gy * xc)
            gy_xc = gy * xc
            gw = kernels.channel_sum(gy_xc).reshape(cshape) * invstd
        if stats or need[2:3] == (True,):
            gb = kernels.channel_sum(gy).reshape(cshape)
        if need[0]:
            scale = invstd if self.weight is None else invstd * self.weight.reshape(cshape)
            gx = gy * scale
            if self.training:  # mean and var depend on x: gx = scale (gy - gb/m - xhat gw/m)
                gw_all, gb_all = self._all_gradients(gw, gb)  # (the whole batch's sums)
                m = self.m
                gx -= self.xp.multiply(xc, scale * invstd * gw_all / m, out=gy_xc)
                gx -= scale * gb_all / m
        grads = (gx, None if gw is None else gw.reshape(-1), None if gb is None else gb.reshape(-1))
        return tuple(Tensor(g) if n else None for g, n in zip(grads, need))

    def _formula(self, x, weight=None, bias=None):
        """The same normalisation written with Tensor ops (what a higher derivative sees)."""
        if self.training:
            axes = (0, *range(2, x.ndim))
            xc = x - x.mean(axes, keepdim=True)
            invstd = ((xc * xc).mean(axes, keepdim=True) + self.eps) ** -0.5
        else:
            xc, invstd = x - self.mu, self.invstd  # the running statistics: constants
        y = xc * invstd
        if weight is not None:
            y = y * weight.reshape(*self.cshape)
        return y if bias is None else y + bias.reshape(*self.cshape)


def batch_norm(
    x: Tensor,
    running_mean: Any,
    running_var: Any,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalisation, as ``torch.nn.functional.batch_norm``.

    Parameters
    ----------
    x : Tensor, shape (N, C) or (N, C, L) or (N, C, H, W)
    running_mean, running_var : Tensor or array, shape (C,), or None
        Updated in place in training mode:
        ``running = (1 - momentum) * running + momentum * batch_stat``, with the unbiased batch
        variance. Used instead of the batch statistics in evaluation mode.
    weight, bias : Tensor, shape (C,), optional
        The affine transform applied after normalising.
    training : bool
        Use (and track) batch statistics; otherwise use the running ones.
    momentum : float
    eps : float
        Added to the variance before the square root.

    Returns
    -------
    Tensor, the shape of ``x``.
    """
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected input of shape (N, C, ...); got {x.shape}")
    c = x.shape[1]
    for name, t in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(
                f"batch_norm: {name} must have shape ({c},) for input {x.shape}; "
                f"got {tuple(t.shape)}"
            )
    if training:
        if x.numel() // max(c, 1) <= 1:
            raise ValueError(
                "batch_norm: expected more than 1 value per channel when training; "
                f"got input {x.shape}"
            )
    elif running_mean is None or running_var is None:
        raise ValueError("batch_norm: running_mean and running_var are needed when training=False")
    for name, r in (("running_mean", running_mean), ("running_var", running_var)):
        if r is not None:
            backend.get_array_module(x.data, r.data if isinstance(r, Tensor) else r)
            if r.dtype != x.dtype:
                raise TypeError(f"batch_norm: {name} is {r.dtype} but the input is {x.dtype}")
    inputs = [x] + ([weight, bias] if bias is not None else [weight] if weight is not None else [])
    if weight is None and bias is not None:
        inputs[1] = Tensor(backend.get_array_module(x.data).ones(c, dtype=x.dtype))
    return BatchNorm(running_mean, running_var, training, momentum, eps)(*inputs)


# ---- losses ---------------------------------------------------------------------------------
def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return _mean(loss)
    if reduction == "sum":
        return _sum(loss)
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


# ---- dropout --------------------------------------------------------------------------------
_dropout_rng = np.random.default_rng()


def check_dropout_p(p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"dropout: p must be a number in [0, 1); got {p!r}")
    return p


class Dropout(Function):
    def __init__(self, mask):
        self.mask = mask

    def forward(self, x):
        return x * self.mask

    def backward(self, gy):
        return gy * self.mask


def dropout(
    x: Tensor, p: float = 0.5, training: bool = True, rng: np.random.Generator | None = None
) -> Tensor:
    """Inverted dropout: zero each element with probability ``p``, scale the rest by ``1/(1-p)``.

    Parameters
    ----------
    x : Tensor, any shape
    p : float in [0, 1)
    training : bool
        If False (or ``p == 0``), return ``x`` itself.
    rng : numpy.random.Generator, optional
        Draws the mask on the host (then moved to ``x``'s device, so one seed gives the same
        mask on CPU and GPU); default: a module-level generator.
    """
    check_dropout_p(p)
    if not training or p == 0:
        return x
    rng = _dropout_rng if rng is None else rng
    keep = rng.random(x.shape) >= p
    mask = (keep / (1 - p)).astype(x.dtype)
    return Dropout(backend.to_device(mask, x.device))(x)
