"""Ops that move values around without arithmetic: reshape, permute, indexing, joining."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..function import Function, sum_to
from ..tensor import Tensor


def _shape_args(shape: tuple[Any, ...]) -> tuple[int, ...]:
    """Accept ``f(2, 3)`` and ``f((2, 3))`` alike, as PyTorch does."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(n) for n in shape)


class Reshape(Function):
    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape

    def forward(self, x):
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(
                f"cannot reshape a tensor of shape {x.shape} to {self.shape}"
            ) from None

    def backward(self, gy):
        return gy.reshape(self.inputs[0].shape)


def reshape(x: Tensor, *shape: Any) -> Tensor:
    """``x`` with a new shape (one entry may be -1); a view where NumPy can make one."""
    return Reshape(_shape_args(shape))(x)


class Permute(Function):
    def __init__(self, dims: tuple[int, ...]):
        self.dims = dims

    def forward(self, x):
        in_range = all(-x.ndim <= d < x.ndim for d in self.dims)
        if not in_range or sorted(d % x.ndim for d in self.dims) != list(range(x.ndim)):
            raise ValueError(f"permute: dims {self.dims} are not a permutation of {x.ndim} axes")
        return x.transpose(self.dims)

    def backward(self, gy):
        return gy.permute(*(int(d) for d in np.argsort([d % gy.ndim for d in self.dims])))


def permute(x: Tensor, *dims: Any) -> Tensor:
    """Reorder all axes: output axis i is input axis ``dims[i]``."""
    return Permute(_shape_args(dims))(x)


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap two axes (PyTorch's ``transpose``; ``x.T`` reverses all axes)."""
    dims = list(range(x.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return Permute(tuple(dims))(x)


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge axes ``start_dim..end_dim`` (inclusive) into one."""
    if x.ndim == 0:
        return reshape(x, 1)
    s, e = start_dim % x.ndim, end_dim % x.ndim
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    return reshape(x, *x.shape[:s], -1, *x.shape[e + 1 :])


class BroadcastTo(Function):
    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape

    def forward(self, x):
        try:
            return self.xp.broadcast_to(x, self.shape)
        except ValueError:
            raise ValueError(
                f"cannot broadcast a tensor of shape {x.shape} to {self.shape}"
            ) from None

    def backward(self, gy):
        return sum_to(gy, self.inputs[0].shape)


def broadcast_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    """``x`` broadcast to ``shape`` (a read-only view); backward sums back."""
    return BroadcastTo(tuple(int(n) for n in shape))(x)


class GetItem(Function):
    """``x[index]`` for basic (ints, slices, None, ...) and advanced (integer/bool array) indices.

    Backward scatters the gradient into zeros; repeated integer indices accumulate.
    """

    def __init__(self, index: Any):
        self.index = index

    def forward(self, x):
        return x[self.index]

    def backward(self, gy):
        return IndexAdd(self.index, self.inputs[0].shape)(gy)


def getitem(x: Tensor, index: Any) -> Tensor:
    """``x[index]``; Tensor or list indices are used as integer/bool arrays."""

    def as_index(i: Any) -> Any:
        if isinstance(i, Tensor):
            return i.data
        return np.asarray(i) if isinstance(i, list) else i

    index = tuple(as_index(i) for i in index) if isinstance(index, tuple) else as_index(index)
    return GetItem(index)(x)


class IndexAdd(Function):
    """The adjoint of ``GetItem``: ``gy`` scattered into zeros of ``shape`` at ``index``,
    repeated integer indices accumulating."""

    def __init__(self, index: Any, shape: tuple[int, ...]):
        self.index, self.shape = index, shape

    def forward(self, gy):
        xp = self.xp
        gx = xp.zeros(self.shape, dtype=gy.dtype)
        parts = self.index if isinstance(self.index, tuple) else (self.index,)
        if any(hasattr(p, "dtype") and p.dtype.kind in "iu" for p in parts):
            xp.add.at(gx, self.index, gy)  # unbuffered: duplicates accumulate
        else:
            gx[self.index] = gy
        return gx

    def backward(self, ggx):
        return GetItem(self.index)(ggx)


class Concat(Function):
    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, *xs):
        ndim = xs[0].ndim
        if not -ndim <= self.axis < ndim:
            raise ValueError(
                f"cat: dim {self.axis} is out of range for tensors with {ndim} dims "
                f"(expected {-ndim} <= dim < {ndim})"
            )
        self.axis %= ndim
        try:
            y = self.xp.concatenate(xs, axis=self.axis)
        except ValueError:
            shapes = ", ".join(str(x.shape) for x in xs)
            raise ValueError(
                f"cat along dim {self.axis}: incompatible shapes {shapes} (expected one rank "
                "and equal sizes in every other dim)"
            ) from None
        self.ends = np.cumsum([x.shape[self.axis] for x in xs]).tolist()
        return y

    def backward(self, gy):
        lead = (slice(None),) * self.axis
        return tuple(
            gy[(*lead, slice(end - x.shape[self.axis], end))] if need else None
            for x, end, need in zip(self.inputs, self.ends, self.needs_input_grad)
        )


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along an existing axis (``torch.cat``)."""
    if not tensors:
        raise ValueError("cat needs at least one tensor")
    return Concat(dim)(*tensors)


concat = cat


class Stack(Function):
    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, *xs):
        if len({x.shape for x in xs}) > 1:
            shapes = ", ".join(str(x.shape) for x in xs)
            raise ValueError(f"stack needs tensors of one shape; got {shapes}")
        return self.xp.stack(xs, axis=self.axis)

    def backward(self, gy):
        lead = (slice(None),) * (self.axis % gy.ndim)
        return tuple(
            gy[(*lead, i)] if need else None for i, need in enumerate(self.needs_input_grad)
        )


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join same-shaped tensors along a new axis (``torch.stack``)."""
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    return Stack(dim)(*tensors)
