"""Synchronized batch normalisation: batch statistics over every rank's part of the batch.

``SyncBatchNormFunction`` is the fused batch norm (``ops.normalization.BatchNormFunction``) whose
per-channel sums are all-reduced: forward, the row count (on the host), the sums of ``x``, then
the sums of the squared deviations (two passes over the data as the fused kernel does:
``E[x^2] - mean^2`` in one message would lose digits in float32 when |mean| >> std); backward,
the sums of ``gy`` and ``gy * xhat`` in one message. Under ``create_graph`` its backward
differentiates the same statistics written as Tensor ops around ``AllReduceSum`` (forward, the
sum over ranks of an array; backward, the sum over ranks of the gradient: all-reduce is its own
adjoint, every rank's input reaches every rank's output with weight 1), so higher derivatives
come out of autograd.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_array_module
from ..function import Function
from ..nn.layers import _BatchNorm
from ..nn.module import Module
from ..ops.normalization import BatchNormFunction
from ..tensor import Tensor
from .comm import Communicator, world

__all__ = [
    "AllReduceSum",
    "SyncBatchNorm",
    "SyncBatchNormFunction",
    "all_reduce_sum",
    "convert_sync_batchnorm",
    "sync_batch_norm",
]


class AllReduceSum(Function):
    """``y = sum over ranks of x`` (``x`` of the same shape and dtype on every rank).

    Backward: ``gx = sum over ranks of gy``: each rank's loss depends on every rank's ``x``
    through ``y``, so the gradient of the total loss (what the data-parallel average of the
    parameter gradients differentiates) needs every rank's ``gy``.
    """

    def __init__(self, comm: Communicator, what: str = "all_reduce_sum") -> None:
        self.comm, self.what = comm, what

    def forward(self, x):
        return self.comm.allreduce_(x.copy(), self.what)

    def backward(self, gy):
        return AllReduceSum(self.comm, f"{self.what} (backward)")(gy)  # differentiable again


def all_reduce_sum(x: Tensor, comm: Communicator | None = None, what: str = "all_reduce_sum"):
    """The sum of ``x`` over all ranks, differentiable (see ``AllReduceSum``).

    Parameters
    ----------
    x : Tensor
        The same shape and dtype on every rank.
    comm : Communicator, optional
        Default: ``tinygan.distributed.world()``.
    what : str
        Names the collective in a timeout message.
    """
    return AllReduceSum(world() if comm is None else comm, what)(x)


def _rows(x: Tensor) -> Tensor:
    """(N, C, *S) -> (N * prod(S), C): channels last. A view when the memory is channels-last
    (what this library's convolutions produce), a copy otherwise."""
    if x.ndim == 2:
        return x
    return x.permute(0, *range(2, x.ndim), 1).reshape(-1, x.shape[1])


def _unrows(y: Tensor, shape: tuple[int, ...]) -> Tensor:
    """The inverse of ``_rows``: (M, C) -> ``shape`` (N, C, *S)."""
    if len(shape) == 2:
        return y
    n, c, *spatial = shape
    return y.reshape(n, *spatial, c).permute(0, len(shape) - 1, *range(1, len(shape) - 1))


class SyncBatchNormFunction(BatchNormFunction):
    """``ops.normalization.BatchNormFunction`` in training mode whose per-channel sums cover every
    rank's rows: the fused kernel and its first-order backward, with four all-reduces per call (the
    row count, on the host; the sums; the squared deviations; in backward the sums of ``gy`` and
    ``gy * xhat``, which the input's gradient needs over the whole batch; the weight's and bias's
    gradients stay this rank's, for the data-parallel average). Under ``create_graph`` its backward
    differentiates ``_formula``: Tensor ops around ``AllReduceSum``.

    The row count goes through ``allreduce_values`` (MPI, on the host, with the deadline), so
    that checking it reads no GPU value: a host read of an array that a pending NCCL
    all-reduce writes would wait for a dead peer forever.

    ``share`` is this rank's weight in the loss that the gradients differentiate (the total
    is ``sum over ranks of share_r * loss_r``, each ``loss_r`` a mean over the rank's rows:
    ``DataParallel`` sets each rank's share of the batch). Each rank's ``gy`` is the gradient of
    its own ``loss_r``, so the gradient sums that couple the ranks add up ``share_r * gy_r``,
    divided by this rank's share (the gradient averaging multiplies by it again). None (or an
    even share, 1 / size, on every rank): the same weight on every rank, plain sums.
    """

    def __init__(
        self, comm: Communicator, running_mean, running_var, momentum, eps, share=None
    ) -> None:
        super().__init__(running_mean, running_var, True, momentum, eps)
        self.comm, self.share = comm, share

    def _count(self, m: int) -> int:
        return int(self.comm.allreduce_values([m], "SyncBatchNorm count")[0])

    def _all(self, *sums, what):
        parts = [a.reshape(-1) for a in sums]
        total = self.comm.allreduce_(self.xp.concatenate(parts), f"SyncBatchNorm {what}")
        ends = np.cumsum([p.size for p in parts])
        return tuple(total[e - p.size : e].reshape(a.shape) for p, a, e in zip(parts, sums, ends))

    def _uneven(self) -> bool:
        """Whether this rank's share differs from an even one (1 / size)."""
        return self.share is not None and abs(self.share * self.comm.size - 1) > 1e-9

    def _all_gradients(self, *sums):
        if not self._uneven():
            return self._all(*sums, what="backward")
        w = self.share
        return tuple(t / w for t in self._all(*(a * w for a in sums), what="backward"))

    def _formula(self, x, weight=None, bias=None):
        if self._uneven():
            raise NotImplementedError(
                f"SyncBatchNorm: second derivatives (create_graph) when the ranks' shares of "
                f"the batch differ (this rank's: {self.share:.4g} of {self.comm.size} ranks) "
                "are not supported: how the other ranks' gradients are weighted depends on "
                "what each backward differentiates (a mean or a sum); use a batch that the "
                "ranks share evenly"
            )
        rows = _rows(x)
        mean = all_reduce_sum(rows.sum(0), self.comm, "SyncBatchNorm mean") / self.m
        centred = rows - mean
        var = all_reduce_sum((centred * centred).sum(0), self.comm, "SyncBatchNorm var") / self.m
        y = centred * (var + self.eps) ** -0.5
        y = y if weight is None else y * weight
        return _unrows(y if bias is None else y + bias, x.shape)


def sync_batch_norm(
    x: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    momentum: float,
    eps: float,
    comm: Communicator,
    share: float | None = None,
) -> Tensor:
    """Batch normalisation in training mode with the statistics of every rank's batch.

    Parameters
    ----------
    x : Tensor, shape (N, C) or (N, C, L) or (N, C, H, W)
        This rank's part of the batch (N may differ between ranks).
    running_mean, running_var : Tensor, shape (C,), or None
        Updated in place: ``momentum * batch_stat + (1 - momentum) * running``, the variance
        unbiased over the whole batch (the same values on every rank).
    weight, bias : Tensor, shape (C,), optional
    momentum, eps : float
    comm : Communicator
        With a world of one this is exactly ``F.batch_norm`` (training mode).
    share : float, optional
        This rank's weight in the total loss, when each rank's loss is a mean over its rows
        (``SyncBatchNormFunction``); None: the same weight on every rank.

    Returns
    -------
    Tensor, the shape of ``x``
    """
    if x.ndim not in (2, 3, 4):
        raise ValueError(
            f"sync_batch_norm: expected (N, C), (N, C, L) or (N, C, H, W); got {x.shape}"
        )
    inputs = [x] + ([weight, bias] if bias is not None else [weight] if weight is not None else [])
    if weight is None and bias is not None:
        inputs[1] = Tensor(get_array_module(x.data).ones(x.shape[1], dtype=x.dtype))
    return SyncBatchNormFunction(comm, running_mean, running_var, momentum, eps, share)(*inputs)


class SyncBatchNorm(_BatchNorm):
    """``torch.nn.SyncBatchNorm``: batch norm over (N, C), (N, C, L) or (N, C, H, W) inputs
    whose batch statistics in training mode cover every rank's part of the batch.

    Evaluation mode (running statistics) and a world of one process use the fused
    ``F.batch_norm``, with no communication. In training mode every rank must call it, in the
    same order (it is a collective).

    Parameters
    ----------
    num_features, eps, momentum, affine, track_running_stats, dtype
        As ``nn.BatchNorm2d``.
    comm : Communicator, optional
        Default: ``tinygan.distributed.world()`` at the time of the call.

    Attributes
    ----------
    share : float or None
        This rank's weight in the loss its gradients differentiate (``SyncBatchNormFunction``;
        ``distributed.prepare`` sets it to the rank's share of the batch); None: equal weights.
    """

    _dims = (2, 3, 4)
    share: float | None = None

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        dtype: Any = np.float32,
        comm: Communicator | None = None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype=dtype)
        self.comm = comm

    def forward(self, x: Tensor) -> Tensor:
        comm = world() if self.comm is None else self.comm
        if not self.training or comm.size == 1:
            return super().forward(x)
        if x.ndim not in self._dims or x.shape[1] != self.num_features:
            raise ValueError(
                f"SyncBatchNorm({self.num_features}): expected (N, {self.num_features}, ...) with "
                f"2 to 4 dims; got shape {x.shape}"
            )
        if self.momentum is None and self.track_running_stats:  # _momentum reads the count:
            comm.synchronize("the collectives before SyncBatchNorm's batch count")  # (NCCL's)
        return sync_batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                               self._momentum(), self.eps, comm, self.share)  # fmt: skip


def convert_sync_batchnorm(module: Module, comm: Communicator | None = None) -> Module:
    """Replace every ``BatchNorm1d``/``BatchNorm2d`` in ``module`` by a ``SyncBatchNorm`` that
    holds the same Parameter and buffer objects (optimizers built on the old layers keep
    working; ``state_dict`` keys do not change), as PyTorch's
    ``SyncBatchNorm.convert_sync_batchnorm``.

    Children are replaced in place; the return value is ``module`` itself, or its replacement if
    ``module`` is itself a batch-norm layer. A layer shared by several parents stays shared.
    """
    if not isinstance(module, Module):
        raise TypeError(f"convert_sync_batchnorm expects a Module; got {type(module).__name__}")
    return _convert(module, comm, {})


def _convert(module: Module, comm: Communicator | None, done: dict[int, Module]) -> Module:
    if id(module) in done:
        return done[id(module)]
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        ref = module.weight if module.weight is not None else module.running_mean
        dtype = np.float32 if ref is None else ref.dtype
        new = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, dtype=dtype, comm=comm)  # fmt: skip
        for name in ("weight", "bias"):
            new.register_parameter(name, module._parameters[name])
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            new.register_buffer(name, module._buffers[name])
        new.train(module.training)
        done[id(module)] = new
        return new
    done[id(module)] = module
    for name, child in module._modules.items():
        module._modules[name] = _convert(child, comm, done)  # in place: keeps Sequential's order
    return module
