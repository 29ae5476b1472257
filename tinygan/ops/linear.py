"""The affine map ``x @ weight.T + bias`` (PyTorch's ``linear``), one GEMM each way, and the
per-channel sum that is the bias gradient of linear and convolution layers.
"""

from __future__ import annotations

from .. import kernels
from ..function import Function
from ..tensor import Tensor
from .shape import broadcast_to


class LinearFunction(Function):
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
        return LinearFunction()(x, weight)
    if bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},); got {bias.shape}")
    return LinearFunction()(x, weight, bias)


class ChannelSum(Function):
    """Sum over every axis but axis 1: (N, C, ...) -> (C,), by ``kernels.channel_sum`` (a GEMV
    on channels-last memory); the bias gradient of linear and convolution layers."""

    def forward(self, x):
        return kernels.channel_sum(x)

    def backward(self, gy):
        shape = self.inputs[0].shape
        return broadcast_to(gy.reshape(1, -1, *(1,) * (len(shape) - 2)), shape)
