"""Batch normalisation (PyTorch's ``batch_norm``): one fused Function with an analytic backward,
and its formula in Tensor ops for higher derivatives.
"""

from __future__ import annotations

from typing import Any

from .. import backend, kernels
from ..function import Function, is_grad_enabled
from ..tensor import Tensor, local_grad


class BatchNormFunction(Function):
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
            xc, squares = kernels.batch_norm_center(x, mu, squares=True)
            (var_sum,) = self._all(kernels.channel_sum(squares).reshape(self.cshape), what="var")
            self._update_running(mu, var_sum / (m - 1))
            var = var_sum / m  # biased, for normalising
        else:
            rm, rv = (r.data if isinstance(r, Tensor) else r for r in self.running)
            mu, var = rm.reshape(self.cshape), rv.reshape(self.cshape)
            self.mu = mu
            xc, squares = kernels.batch_norm_center(x, mu, squares=False)  # nothing to reuse
        self.invstd = 1 / xp.sqrt(var + self.eps)
        self.xc, self.weight = xc, weight
        scale = self.invstd if weight is None else self.invstd * weight.reshape(self.cshape)
        # into the summed squares' memory, when there is any
        return kernels.batch_norm_scale(xc, scale, bias, out=squares)

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
            if self.training:  # mean and var depend on x: gx = scale (gy - gb/m - xhat gw/m)
                gw_all, gb_all = self._all_gradients(gw, gb)  # (the whole batch's sums)
                k1, k2 = scale * invstd * gw_all / self.m, scale * gb_all / self.m
                gx = kernels.batch_norm_input_grad(gy, xc, scale, k1, k2, out=gy_xc)
            else:
                gx = gy * scale
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
    return BatchNormFunction(running_mean, running_var, training, momentum, eps)(*inputs)
