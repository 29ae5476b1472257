"""Differentiable ops, one family per module; each op is a Function plus a plain function."""

from .activation import leaky_relu, log_softmax, logsumexp, relu, sigmoid, softmax, softplus, tanh
from .math import (
    abs,
    add,
    astype,
    clip,
    div,
    exp,
    log,
    matmul,
    maximum,
    mul,
    neg,
    pow,
    sqrt,
    sub,
    to_device,
)
from .reduction import amax, max, mean, sum
from .shape import broadcast_to, cat, concat, flatten, getitem, permute, reshape, stack, transpose

__all__ = [
    "abs", "add", "amax", "astype", "broadcast_to", "cat", "clip", "concat", "div", "exp",
    "flatten", "getitem", "leaky_relu", "log", "log_softmax", "logsumexp", "matmul", "max",
    "maximum", "mean", "mul", "neg", "permute", "pow", "relu", "reshape", "sigmoid", "softmax",
    "softplus", "sqrt", "stack", "sub", "sum", "tanh", "to_device", "transpose",
]  # fmt: skip
