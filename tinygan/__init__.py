"""tinygan: a small deep-learning framework on NumPy/CuPy, built for GANs and InfoGAN."""

from . import backend, nn, ops, optim
from .function import Function, is_grad_enabled, no_grad, sum_to
from .gradcheck import GradcheckError, GradcheckReport, gradcheck, gradgradcheck
from .ops import (
    abs,
    amax,
    broadcast_to,
    cat,
    clip,
    concat,
    exp,
    flatten,
    leaky_relu,
    log,
    log_softmax,
    logsumexp,
    matmul,
    max,
    maximum,
    mean,
    permute,
    relu,
    reshape,
    sigmoid,
    softmax,
    softplus,
    sqrt,
    stack,
    sum,
    tanh,
    transpose,
)
from .serialization import load, save
from .tensor import Tensor, grad, tensor

ops.install_tensor_methods()  # Tensor's operators and op methods (DeZero's setup_variable)

__version__ = "0.1.0"

__all__ = [
    "Function", "GradcheckError", "GradcheckReport", "Tensor", "__version__", "abs", "amax",
    "backend", "broadcast_to", "cat", "clip", "concat", "exp", "flatten", "grad", "gradcheck",
    "gradgradcheck", "is_grad_enabled", "leaky_relu", "load", "log", "log_softmax", "logsumexp",
    "matmul", "max", "maximum", "mean", "nn", "no_grad", "optim",
    "permute", "relu", "reshape", "save", "sigmoid", "softmax", "softplus", "sqrt", "stack", "sum",
    "sum_to", "tanh", "tensor", "transpose",
]  # fmt: skip
