"""Reductions: sum, mean and the maxima (``amax``, ``max``) over axes given as PyTorch's ``dim``
or NumPy's ``axis``; each backward broadcasts the gradient back over the reduced axes.
"""

from __future__ import annotations

import builtins
from typing import Any, NamedTuple

import numpy as np

from .. import backend
from ..function import Function
from ..tensor import Tensor
from .shape import broadcast_to


def _axes(dim: Any, ndim: int, aliases: dict) -> tuple[int, ...]:
    """Normalise a reduction's ``dim`` (PyTorch) or ``axis`` (NumPy) to a tuple of axes."""
    if "axis" in aliases:
        dim = aliases.pop("axis")
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    out = []
    for d in dims:
        if not -builtins.max(ndim, 1) <= d < builtins.max(ndim, 1):
            raise ValueError(f"dim {d} is out of range for a tensor with {ndim} dims")
        out.append(int(d) % builtins.max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"dim {dim} repeats an axis")
    return tuple(a for a in out if a < ndim)


def _keepdim(keepdim: bool, aliases: dict) -> bool:
    keepdim = aliases.pop("keepdims", keepdim)
    if aliases:
        raise TypeError(f"unexpected keyword arguments {sorted(aliases)}")
    return bool(keepdim)


class _Reduction(Function):
    def __init__(self, axes: tuple[int, ...], keepdim: bool):
        self.axes, self.keepdim = axes, keepdim

    def _kept(self, gy):
        """``gy`` reshaped so that it broadcasts against the input."""
        return gy.reshape(*(1 if i in self.axes else n for i, n in enumerate(self.shape)))


class Sum(_Reduction):
    def forward(self, x):
        self.shape = x.shape
        return x.sum(axis=self.axes, keepdims=self.keepdim)

    def backward(self, gy):
        return broadcast_to(self._kept(gy), self.shape)


def sum(x: Tensor, dim: Any = None, keepdim: bool = False, **aliases: Any) -> Tensor:
    """Sum over ``dim`` (int, tuple or None for all; ``axis=``/``keepdims=`` also accepted)."""
    return Sum(_axes(dim, x.ndim, aliases), _keepdim(keepdim, aliases))(x)


class Mean(_Reduction):
    def forward(self, x):
        self.shape = x.shape
        return x.mean(axis=self.axes, keepdims=self.keepdim)

    def backward(self, gy):
        n = int(np.prod([self.shape[a] for a in self.axes]))
        return broadcast_to(self._kept(gy) / n, self.shape)


def mean(x: Tensor, dim: Any = None, keepdim: bool = False, **aliases: Any) -> Tensor:
    """Mean over ``dim`` (int, tuple or None for all; ``axis=``/``keepdims=`` also accepted)."""
    return Mean(_axes(dim, x.ndim, aliases), _keepdim(keepdim, aliases))(x)


class Max(_Reduction):
    """Maximum over axes; tied maxima share the gradient equally (as ``torch.amax``)."""

    def forward(self, x):
        if x.size == 0:
            raise ValueError("max of an empty tensor")
        self.shape = x.shape
        y = x.max(axis=self.axes, keepdims=True)
        if self.needs_input_grad[0]:
            mask = (x == y).astype(x.dtype)
            self.share = mask / mask.sum(axis=self.axes, keepdims=True)  # ties share equally
        return (
            y
            if self.keepdim
            else y.reshape([n for i, n in enumerate(x.shape) if i not in self.axes])
        )

    def backward(self, gy):
        return self._kept(gy) * self.share


def amax(x: Tensor, dim: Any = None, keepdim: bool = False, **aliases: Any) -> Tensor:
    """Maximum values over ``dim`` (int, tuple or None for all), as ``torch.amax``: tied maxima
    share the gradient equally."""
    return Max(_axes(dim, x.ndim, aliases), _keepdim(keepdim, aliases))(x)


class MaxResult(NamedTuple):
    values: Tensor
    indices: Tensor


def max(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor | MaxResult:
    """As ``torch.max``: without ``dim``, the largest value (a 0-d Tensor); with an int ``dim``,
    the pair ``(values, indices)`` along it, the gradient going to the first maximum of each
    slice (the one ``indices`` names)."""
    if dim is None:
        return amax(x)
    if x.ndim == 0:
        raise ValueError("max(dim) needs a tensor with at least one dimension")
    (axis,) = _axes(dim, x.ndim, {})
    xp = backend.get_array_module(x.data)
    indices = x.data.argmax(axis=axis)
    grid = xp.ix_(*(xp.arange(n) for n in indices.shape))  # the other axes' coordinates
    values = x[(*grid[:axis], indices, *grid[axis:])]
    if keepdim:
        values, indices = (
            values.reshape(*x.shape[:axis], 1, *x.shape[axis + 1 :]),
            xp.expand_dims(indices, axis),
        )
    return MaxResult(values, Tensor(indices))
