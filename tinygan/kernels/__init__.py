"""Hand-written kernels: one signature each, a NumPy version (cpu.py) and a CUDA one (cuda.py).

The functions here pick the version from the arrays they are given (``backend.get_array_module``).
Shapes: ``x`` (N, H, W, C), channels-last; ``cols`` (N, OH, OW, kH, kW, C); pairs are
(height, width). Size arithmetic and validation: ``shapes.py``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ..backend import get_array_module
from . import cpu, cuda, shapes
from .shapes import IntPair


def _impl(*arrays: Any) -> ModuleType:
    return cpu if get_array_module(*arrays) is np else cuda


def im2col(
    x: Any, kh: int, kw: int, stride: IntPair, padding: IntPair, dilation: IntPair, out_hw: IntPair
) -> Any:
    """(N, H, W, C) -> cols (N, OH, OW, kH, kW, C), contiguous; see ``cpu.im2col``."""
    shapes.check_cols_fit("im2col", x.shape[1:3], out_hw, (kh, kw), stride, padding, dilation)
    return _impl(x).im2col(x, kh, kw, stride, padding, dilation, out_hw)


def col2im(cols: Any, x_hw: IntPair, stride: IntPair, padding: IntPair, dilation: IntPair) -> Any:
    """cols (N, OH, OW, kH, kW, C) -> (N, H, W, C), adjoint of ``im2col``; see ``cpu.col2im``."""
    shapes.check_cols_fit(
        "col2im", x_hw, cols.shape[1:3], cols.shape[3:5], stride, padding, dilation
    )
    return _impl(cols).col2im(cols, x_hw, stride, padding, dilation)


def leaky_relu_forward(x: Any, slope: float) -> Any:
    """``x`` where ``x > 0``, else ``slope * x``."""
    return _impl(x).leaky_relu_forward(x, slope)


def leaky_relu_backward(x: Any, gy: Any, slope: float) -> Any:
    """``gy`` where ``x > 0``, else ``slope * gy``."""
    return _impl(x, gy).leaky_relu_backward(x, gy, slope)


def adam_update(
    param: Any,
    grad: Any,
    m: Any,
    v: Any,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    bias_correction1: float,
    bias_correction2: float,
    weight_decay: float = 0.0,
) -> None:
    """One ``torch.optim.Adam`` step, in place; see ``cpu.adam_update``."""
    _impl(param, grad, m, v).adam_update(
        param, grad, m, v, lr, beta1, beta2, eps, bias_correction1, bias_correction2, weight_decay
    )


__all__ = ["adam_update", "col2im", "im2col", "leaky_relu_backward", "leaky_relu_forward", "shapes"]
