"""Inverted dropout (PyTorch's ``dropout``), its mask drawn on the host."""

from __future__ import annotations

import numpy as np

from .. import backend
from ..function import Function
from ..tensor import Tensor

_dropout_rng = np.random.default_rng()


def check_dropout_p(p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"dropout: p must be a number in [0, 1); got {p!r}")
    return p


class DropoutFunction(Function):
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
    return DropoutFunction(backend.to_device(mask, x.device))(x)
