"""``tinygan.nn.functional`` (import as ``F``): the stateless ops under PyTorch's names."""

from __future__ import annotations

from ..ops.activation import (
    leaky_relu,
    log_softmax,
    logsumexp,
    relu,
    sigmoid,
    softmax,
    softplus,
    tanh,
)
from ..ops.conv import conv2d, conv_transpose2d
from ..ops.dropout import dropout
from ..ops.linear import linear
from ..ops.loss import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    gaussian_nll,
    gaussian_nll_loss,
    mse_loss,
)
from ..ops.normalization import batch_norm

__all__ = [
    "batch_norm", "binary_cross_entropy_with_logits", "conv2d", "conv_transpose2d",
    "cross_entropy", "dropout", "gaussian_nll", "gaussian_nll_loss", "leaky_relu", "linear",
    "log_softmax", "logsumexp", "mse_loss", "relu", "sigmoid", "softmax", "softplus", "tanh",
]  # fmt: skip
