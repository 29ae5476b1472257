"""Function: one differentiable operation, its forward and backward side by side.

A subclass implements ``forward(*arrays) -> array`` and ``backward(grad) -> grad(s)`` on raw
NumPy/CuPy arrays (first order only). Calling an instance on Tensors runs ``forward`` and, when
gradients are wanted, records the call in the graph: the output remembers its creator, and the
creator remembers its inputs. ``Tensor.backward`` (tensor.py) walks that graph.

Rules for a ``backward``:
- return one gradient per input (``None`` where no gradient is needed, see
  ``self.needs_input_grad``), each with exactly its input's shape and dtype: undo broadcasting
  with ``sum_to``;
- never modify ``grad`` in place: the same array may be handed to several nodes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .backend import get_array_module

if TYPE_CHECKING:
    from .tensor import Tensor

_grad_enabled = True


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Context manager (or decorator) in which no graph is recorded."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    """Whether ops record the graph now (False inside ``no_grad()``)."""
    return _grad_enabled


class Function:
    """Base class of all differentiable operations.

    In ``forward`` and ``backward``, ``self.xp`` is the array module (numpy or cupy) of the inputs
    and ``self.needs_input_grad`` says which inputs will want a gradient (``forward`` can skip
    saving what only an unneeded gradient would use). Anything ``backward`` needs is stored on
    ``self`` by ``forward``; ``release`` drops it.
    """

    inputs: tuple[Tensor, ...] | None = ()
    needs_input_grad: tuple[bool, ...] = ()

    def forward(self, *xs: Any) -> Any:
        raise NotImplementedError

    def backward(self, grad: Any) -> Any:
        raise NotImplementedError

    def __call__(self, *inputs: Any) -> Tensor:
        from .tensor import Tensor, as_tensors

        tensors = as_tensors(inputs, type(self).__name__)
        self.xp = get_array_module(*(t.data for t in tensors))
        self.needs_input_grad = tuple(_grad_enabled and t.requires_grad for t in tensors)
        y = self.forward(*(t.data for t in tensors))
        if not any(self.needs_input_grad):
            return Tensor(y)
        out = Tensor(y)
        out.requires_grad, out.creator = True, self
        self.inputs = tensors
        return out

    def release(self) -> None:
        """Drop the saved arrays and the graph edges once backward has used them."""
        self.__dict__.clear()
        self.inputs = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def sum_to(grad: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``grad`` over the axes that broadcasting added or stretched, to get ``shape``."""
    if grad.shape == tuple(shape):
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    )
    return grad.sum(axis=axes, keepdims=True).reshape(shape)
