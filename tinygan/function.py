"""Function: one differentiable operation, its forward and backward side by side.

A subclass implements ``forward(*arrays) -> array`` on raw NumPy/CuPy arrays and
``backward(grad) -> grad(s)`` on Tensors. Calling an instance on Tensors runs ``forward`` and,
when gradients are wanted, records the call in the graph: the output remembers its creator, and
the creator remembers its inputs. ``Tensor.backward`` (tensor.py) walks that graph.

``backward`` is written with Tensor ops, so it is itself differentiable: the engine runs it with
recording off for an ordinary backward (the ops then only compute), and with recording on under
``create_graph=True``, which makes the gradients Tensors in the graph, ready to be
differentiated again. Ops whose gradient is best computed by a hand-written kernel call another
Function for it (``Conv2dFunction``'s input gradient is a ``ConvTranspose2dFunction``), whose
own backward makes the pair differentiable to any order.

Rules for a ``backward``:
- read what it needs from ``self.inputs`` and ``self.output`` (Tensors, so that a second
  derivative sees how they depend on the graph's leaves); arrays that forward saved on ``self``
  are constants to a higher derivative (fine for masks and shapes, wrong for values of x);
- return one gradient per input (``None`` where no gradient is needed, see
  ``self.needs_input_grad``), each with exactly its input's shape and dtype: undo broadcasting
  with ``sum_to``.

The example every other op follows, ``Mul``, comes right after ``Function``, and ``SumTo``
(``sum_to``), which undoes broadcasting in every backward, after it; the other ops live in
``tinygan.ops``, which also installs Tensor's operators (``ops.install_tensor_methods``).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import get_array_module

if TYPE_CHECKING:
    from .tensor import Tensor

_grad_enabled = True
# In-place changes of memory the graph may have read: a counter of changes, and for each array
# that owns changed memory (by id: alive while a graph holds it) the count at its last change.
_changes = 0
_changed_at: dict[int, int] = {}


@contextlib.contextmanager
def grad_mode(enabled: bool) -> Iterator[None]:
    """Context manager: record the graph (``True``) or not (``False``) inside it."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, enabled
    try:
        yield
    finally:
        _grad_enabled = previous


def no_grad() -> contextlib.AbstractContextManager[None]:
    """Context manager (or decorator) in which no graph is recorded."""
    return grad_mode(False)


def is_grad_enabled() -> bool:
    """Whether ops record the graph now (False inside ``no_grad()``)."""
    return _grad_enabled


def mark_changed(a: Any) -> None:
    """Note that the memory of the array ``a`` was changed in place (optimizer steps,
    ``load_state_dict``, weight clipping call this; so should code that writes into a
    tensor's ``.data``): a graph that read it, through any view or ``detach()``, then refuses to
    backward (``Function.check_inputs``)."""
    global _changes
    _changes += 1
    _changed_at[id(owner(a))] = _changes


def owner(a: Any) -> Any:
    """The array that owns ``a``'s memory (``a`` itself unless it is a view)."""
    while getattr(a, "base", None) is not None and hasattr(a.base, "shape"):
        a = a.base
    return a


class Function:
    """Base class of all differentiable operations.

    In ``forward`` and ``backward``, ``self.xp`` is the array module (numpy or cupy) of the inputs
    and ``self.needs_input_grad`` says which inputs will want a gradient (``forward`` can skip
    saving what only an unneeded gradient would use). ``self.inputs`` are the input Tensors and
    ``self.output`` the output Tensor; anything else ``backward`` needs is stored on ``self`` by
    ``forward``. ``release`` drops it all.

    An instance is one node of the graph: it is called once (a second call raises), so that
    what one call saved is never overwritten by another; make a new instance per call.
    """

    inputs: tuple[Tensor, ...] | None = ()  # None once ``release`` has freed the graph here
    needs_input_grad: tuple[bool, ...] = ()

    def forward(self, *xs: Any) -> Any:
        raise NotImplementedError

    def backward(self, grad: Tensor) -> Any:
        raise NotImplementedError

    def __call__(self, *inputs: Any) -> Tensor:
        from .tensor import Tensor, as_tensors

        if "xp" in self.__dict__ or self.inputs is None:  # set by an earlier call / release
            raise RuntimeError(
                f"{type(self).__name__} instance called a second time: a Function is one node "
                f"of the graph and records one call; make a new instance per call "
                f"({type(self).__name__}(...)(x), or the op's function)"
            )
        tensors = as_tensors(inputs, type(self).__name__)
        self.xp = get_array_module(*(t.data for t in tensors))
        self.needs_input_grad = tuple(_grad_enabled and t.requires_grad for t in tensors)
        try:
            y = self.forward(*(t.data for t in tensors))
        except BaseException:  # a call that raised recorded nothing: the instance is unused
            del self.xp
            raise
        if not hasattr(y, "shape"):  # (a tuple would be stacked into one array by Tensor)
            raise TypeError(
                f"{type(self).__name__}.forward must return one array; got {type(y).__name__}"
            )
        if not any(self.needs_input_grad):
            return Tensor(y)
        out = Tensor(y)
        out.requires_grad, out.creator = True, self
        self.inputs, self._output = tensors, weakref.ref(out)  # weak: out already holds self
        self.input_state = [t.data for t in tensors], _changes  # see check_inputs
        return out

    @property
    def output(self) -> Tensor:
        """The output Tensor (alive while backward runs: the graph walk holds it)."""
        return self._output()

    def check_inputs(self) -> None:
        """Raise if an input's values changed since the call (its array replaced, or its memory
        changed in place, through any view of it: ``mark_changed``): backward would silently
        use the new values."""
        arrays, changes = self.input_state
        for t, data in zip(self.inputs, arrays):
            if t.data is not data or _changed_at.get(id(owner(data)), 0) > changes:
                i = self.inputs.index(t)
                raise RuntimeError(
                    f"input {i} of {self!r} ({t.shape} {t.dtype}) was changed after the op used "
                    "it (an optimizer step, load_state_dict or a new .data between forward and "
                    "backward), so its gradient would use the new values; call backward before "
                    "changing it, or run the forward again"
                )

    def release(self) -> None:
        """Drop the saved arrays and the graph edges once backward has used them."""
        self.__dict__.clear()
        self.inputs = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class Mul(Function):
    """Elementwise ``a * b`` with broadcasting: the pattern of every op.

    ``forward`` computes on arrays; ``backward`` applies the chain rule with Tensor ops (here
    ``*`` and ``sum_to``), reading the inputs from the graph, so that it can be differentiated.
    """

    def forward(self, a, b):
        broadcast_shape("mul", a, b)
        return a * b

    def backward(self, gy):
        a, b = self.inputs
        ga = sum_to(gy * b, a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(gy * a, b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def mul(a: Any, b: Any) -> Tensor:
    """Elementwise ``a * b`` with broadcasting."""
    return Mul()(a, b)


def broadcast_shape(op: str, a: Any, b: Any) -> tuple[int, ...]:
    """The shape ``a`` and ``b`` broadcast to; a ``ValueError`` naming ``op`` if they do not."""
    if a.shape == b.shape:  # the common case, without NumPy's general (and slower) rule
        return a.shape
    try:
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{op}: shapes {a.shape} and {b.shape} cannot be broadcast together"
        ) from None


class SumTo(Function):
    """The adjoint of broadcasting: sum the axes that broadcasting added or stretched."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape

    def forward(self, x):
        return sum_to_shape(x, self.shape)

    def backward(self, gy):
        return gy.broadcast_to(self.inputs[0].shape)


def sum_to(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum ``x`` over the axes that broadcasting added or stretched, to get ``shape``.

    The inverse of broadcasting in backward: a gradient of the broadcast shape becomes the
    gradient of the input's shape. ``x`` itself when the shapes already agree.
    """
    if tuple(x.shape) == tuple(shape):
        return x
    return SumTo(tuple(shape))(x)


def sum_to_shape(grad: Any, shape: tuple[int, ...]) -> Any:
    """``sum_to`` on a raw array (for forward code): sum the stretched axes to get ``shape``."""
    if grad.shape == tuple(shape):
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    )
    return grad.sum(axis=axes, keepdims=True).reshape(shape)
