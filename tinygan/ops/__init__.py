"""Differentiable ops, one family per module, each op a Function followed by its function:
``math`` (arithmetic, elementwise math, matmul, dtype and device moves), ``reduction``, ``shape``,
``activation``, ``linear``, ``conv``, ``normalization``, ``loss``, ``dropout``. (``Mul`` and
``SumTo``, the ops the engine itself shows and uses, live in function.py.)

``install_tensor_methods`` gives ``Tensor`` its operators and op methods.
"""

from collections.abc import Callable
from functools import partialmethod
from typing import Any

import numpy as np

from ..function import mul, sum_to
from ..tensor import Tensor
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
    neg,
    pow,
    rpow,
    sqrt,
    sub,
    to,
    to_device,
)
from .reduction import amax, max, mean, sum
from .shape import broadcast_to, cat, concat, flatten, getitem, permute, reshape, stack, transpose

__all__ = [
    "abs", "add", "amax", "astype", "broadcast_to", "cat", "clip", "concat", "div", "exp",
    "flatten", "getitem", "install_tensor_methods", "leaky_relu", "log", "log_softmax",
    "logsumexp", "matmul", "max", "maximum", "mean", "mul", "neg", "permute", "pow", "relu",
    "reshape", "rpow", "sigmoid", "softmax", "softplus", "sqrt", "stack", "sub", "sum", "sum_to",
    "tanh", "to", "to_device", "transpose",
]  # fmt: skip


def _reflected(op: Callable[[Any, Any], Tensor]) -> Callable[[Tensor, Any], Tensor]:
    """The reflected operator of ``op`` (``other + x`` for ``x.__radd__(other)``)."""

    def reflected(x: Tensor, other: Any) -> Tensor:
        return op(other, x)

    reflected.__name__ = reflected.__qualname__ = f"r{op.__name__}"
    return reflected


def install_tensor_methods() -> None:
    """Give ``Tensor`` its operators and op methods, each one of the ops above (DeZero's
    ``setup_variable``): ``+ - * / ** @`` and their reflected forms, unary ``-``, ``[]``,
    ``.exp .log .sqrt .abs .clip/.clamp``, ``.sum .mean .amax .max``, ``.reshape .transpose
    .permute .flatten .broadcast_to .T``, ``.relu .sigmoid .tanh``, ``.astype .float .double
    .to``. tensor.py defines no op; ``tinygan/__init__.py`` calls this once."""
    operators = {"add": add, "sub": sub, "mul": mul, "truediv": div, "matmul": matmul}
    for name, op in operators.items():
        setattr(Tensor, f"__{name}__", op)
        setattr(Tensor, f"__r{name}__", _reflected(op))
    Tensor.__neg__, Tensor.__pow__, Tensor.__rpow__ = neg, pow, rpow
    Tensor.__getitem__ = getitem
    Tensor.exp, Tensor.log, Tensor.sqrt, Tensor.abs = exp, log, sqrt, abs
    Tensor.clip = Tensor.clamp = clip
    Tensor.sum, Tensor.mean, Tensor.amax, Tensor.max = sum, mean, amax, max
    Tensor.reshape, Tensor.transpose, Tensor.permute = reshape, transpose, permute
    Tensor.flatten, Tensor.broadcast_to = flatten, broadcast_to
    Tensor.T = property(lambda x: permute(x, *reversed(range(x.ndim))))
    Tensor.relu, Tensor.sigmoid, Tensor.tanh = relu, sigmoid, tanh
    Tensor.astype, Tensor.to = astype, to
    Tensor.float, Tensor.double = (
        partialmethod(astype, np.float32),
        partialmethod(astype, np.float64),
    )
