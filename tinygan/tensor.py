"""Tensor: an array, its gradient, and the Function that created it; and the engine.

Reading order: ``Tensor`` (the array, ``.grad``, ``.creator``; its operators and op methods,
``+``, ``@``, ``.sum``, ``.reshape``, ... are the ops of ``tinygan.ops``, installed on it by
``ops.install_tensor_methods``); ``grad`` and ``Tensor.backward``, the two ways in;
``_backprop``, the chain rule itself, with its helpers; last, ``as_tensors``, the dtype rules by
which an op's inputs become Tensors (they decide dtypes, not derivatives).

The graph is built on the fly as ops run (see function.py). ``_backprop`` orders the graph's
tensors by an iterative depth-first search, then visits them consumers-first: each node's
gradient is complete before it is passed on. Intermediate gradients are dropped as soon as they
are used; leaf gradients accumulate in ``.grad`` across calls, as in PyTorch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import backend
from .function import Function, grad_mode, owner

Shape = tuple[int, ...]


class Tensor:
    """An n-dimensional array (``numpy.ndarray`` or ``cupy.ndarray``) with autograd.

    Parameters
    ----------
    data : array_like
        The values. NumPy/CuPy arrays are used as they are (no copy, dtype kept); other
        input goes through ``numpy.asarray`` (so Python floats become float64).
    requires_grad : bool
        Record operations on this tensor so that ``backward`` can fill ``.grad``.
        Only floating-point tensors can require gradients.
    dtype : optional
        Convert ``data`` to this dtype first.
    """

    __array_ufunc__ = None  # NumPy arrays defer to Tensor's operators: ndarray + Tensor -> Tensor

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        if isinstance(data, Tensor):
            raise TypeError("Tensor(Tensor) is ambiguous; use t.detach() or t.astype(dtype)")
        if backend.is_cupy_array(data):
            data = data if dtype is None else data.astype(dtype, copy=False)
        else:
            data = np.asarray(data, dtype=dtype)
        if data.dtype == object:
            raise TypeError(
                f"cannot make a Tensor from objects of type {type(data.flat[0]).__name__}"
            )
        self.data = data
        self.grad: Any = None
        self.creator: Function | None = None
        self.requires_grad = False
        self.requires_grad_(requires_grad)

    # ---- properties -------------------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    device = property(lambda self: backend.device_of(self.data))

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        return len(self.data)

    def __bool__(self) -> bool:
        """The truth of a one-element tensor (NumPy's error for more elements)."""
        return bool(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        dev = ", device='cuda'" if self.device == "cuda" else ""
        return f"Tensor({self.numpy()!r}{dev}{grad})"

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"only floating-point tensors can require grad; got dtype {self.data.dtype}"
            )
        self.requires_grad = bool(requires_grad)
        return self

    def item(self) -> float | int | bool:
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element; got shape {self.shape}")
        return self.data.reshape(()).item()

    def numpy(self) -> np.ndarray:
        """The values as a NumPy array (a copy from the GPU; shared memory on the CPU)."""
        return backend.to_device(self.data, "cpu")

    def detach(self) -> Tensor:
        """A tensor sharing this one's data, cut from the graph."""
        return Tensor(self.data)

    # ---- autograd ---------------------------------------------------------------------------
    def backward(
        self, grad: Any = None, retain_graph: bool | None = None, create_graph: bool = False
    ) -> None:
        """Accumulate d(self)/d(leaf) * grad into ``.grad`` of every leaf that requires grad.

        Parameters
        ----------
        grad : Tensor or array, optional
            The upstream gradient, same shape and dtype as ``self``. May be omitted only for
            one-element tensors (it is then 1).
        retain_graph : bool, optional
            Keep the graph (and the arrays it saved) so that backward can run through it again.
            Default: ``create_graph``.
        create_graph : bool
            Record the backward pass itself, so that the gradients can be differentiated again:
            the leaves' ``.grad`` are then Tensors in the graph. An ordinary backward leaves
            arrays, also where it adds to a Tensor that an earlier ``create_graph`` left.
        """
        _backprop([self], [grad], retain_graph, create_graph)


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """Make a Tensor (same as ``Tensor(data, requires_grad, dtype)``)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> tuple[Tensor | None, ...]:
    """The gradients of ``outputs`` with respect to ``inputs``, as ``torch.autograd.grad``.

    Unlike ``backward``, nothing is accumulated into ``.grad``: the gradients are returned.

    Parameters
    ----------
    outputs : Tensor or sequence of Tensors
    inputs : Tensor or sequence of Tensors
        Leaves or intermediate tensors of the graph of ``outputs``.
    grad_outputs : Tensor/array or sequence of them (or None entries), optional
        The upstream gradient of each output; None stands for 1 on a one-element output.
    retain_graph : bool, optional
        Keep the graph for another backward; default ``create_graph``.
    create_graph : bool
        Record the computation of the gradients, so that they can be differentiated again.
    allow_unused : bool
        Return None for an input that ``outputs`` do not depend on, instead of raising.

    Returns
    -------
    tuple of Tensor (or None), one per input, each of the input's shape and dtype.
    """
    for what, given in (("outputs", outputs), ("inputs", inputs)):
        items = given if isinstance(given, (list, tuple)) else [given]
        for i, t in enumerate(items):
            if not isinstance(t, Tensor):
                where = f" at {what}[{i}]" if items is given else ""
                raise TypeError(
                    f"grad: {what} must be a Tensor or a list or tuple of Tensors; got "
                    f"{type(t).__name__}{where}"
                )
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor) or hasattr(grad_outputs, "shape"):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    grad_outputs = list(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: {len(outputs)} outputs but {len(grad_outputs)} grad_outputs")
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor) or not x.requires_grad:
            raise ValueError(f"grad: input {i} is not a Tensor that requires grad")
    found = _backprop(outputs, grad_outputs, retain_graph, create_graph, inputs)
    result = []
    for i, x in enumerate(inputs):
        g = found.get(id(x))
        if g is None and not allow_unused:
            raise RuntimeError(
                f"grad: input {i} (shape {x.shape}) was not used to compute the outputs; "
                "pass allow_unused=True to get None for it"
            )
        result.append(g)
    return tuple(result)


def local_grad(
    formula: Any, inputs: Sequence[Tensor], grad: Tensor, needs: Sequence[bool]
) -> tuple[Tensor | None, ...]:
    """The vector-Jacobian product of ``formula(*inputs)`` (Tensor ops) for the ``inputs`` that
    ``needs`` marks, recorded: the backward of a fused op under ``create_graph``.

    Partial derivatives: the graph below ``inputs`` is not entered.
    """
    wanted = [x for x, n in zip(inputs, needs) if n]
    found = _backprop([formula(*inputs)], [grad], True, True, wanted, local=True)
    return tuple(found.get(id(x)) if n else None for x, n in zip(inputs, needs))


# ---- the engine: the chain rule over the graph ------------------------------------------------
def _backprop(
    roots: list[Tensor],
    seeds: list[Any],
    retain_graph: bool | None,
    create_graph: bool,
    wanted: list[Tensor] | None = None,
    local: bool = False,
) -> dict[int, Tensor]:
    """The chain rule over the graph of ``roots``, whose upstream gradients are ``seeds``.

    Visits the graph consumers first, so that a tensor's gradient is complete (summed over all
    its consumers) before its creator's ``backward`` passes it on. Without ``wanted``
    (``Tensor.backward``), accumulates into the leaves' ``.grad``; with it (``grad``), returns
    the gradients of those tensors by id and leaves ``.grad`` alone (``local``: without
    looking below them). ``create_graph`` records the backward ops, so that the gradients are
    Tensors in the graph; otherwise recording is off while they run.
    """
    seeds = [_seed(t, g) for t, g in zip(roots, seeds)]
    retain_graph = create_graph if retain_graph is None else retain_graph
    wanted_ids = {id(t) for t in wanted or ()}
    order = _graph_order(roots, wanted_ids if local else set())
    if wanted is not None:  # only what lies on a path to a wanted tensor needs a backward
        needed = _leading_to(order, wanted_ids)
        order = [t for t in order if id(t) in needed]
    grads: dict[int, Tensor] = {}  # id(tensor) -> its gradient so far
    for t, g in zip(roots, seeds):
        grads[id(t)] = grads[id(t)] + g if id(t) in grads else g
    memory = _LeafGrads()
    for g in grads.values():
        memory.add(g.data, 2)  # pending here, and the caller's
    found: dict[int, Tensor] = {}
    with grad_mode(create_graph):
        while order:
            t = order.pop()  # consumers come off the end before the tensors they consumed
            g = grads.pop(id(t), None)
            if g is None:
                continue
            memory.add(g.data, -1)
            if id(t) in wanted_ids:
                found[id(t)] = g if create_graph else g.detach()
                if local:
                    continue
            fn = t.creator
            if fn is None:
                if wanted is None:
                    _accumulate(t, g, memory, create_graph)
                continue
            if wanted is not None and not any(id(x) in needed for x in fn.inputs):
                continue
            for x, gx in _input_grads(fn, g):
                if id(x) in grads:
                    memory.add(grads[id(x)].data, -1)
                    gx = grads[id(x)] + gx
                grads[id(x)] = gx
                memory.add(gx.data)
            if not retain_graph:
                fn.release()
    return found


def _graph_order(roots: list[Tensor], stop: set[int]) -> list[Tensor]:
    """The tensors that ``roots`` depend on (and that require grad), inputs before consumers,
    by an iterative depth-first search (no recursion: a chain 10,000 ops deep works); the
    tensors in ``stop`` (by id) are included but not what they depend on."""
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(r, False) for r in reversed(roots)]
    while stack:
        t, done = stack.pop()
        if done:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        if t.creator is not None and id(t) not in stop:
            if t.creator.inputs is None:
                raise RuntimeError(
                    "backward through a part of the graph that an earlier backward already freed; "
                    "pass retain_graph=True to the first backward() or grad() to run it twice"
                )
            stack.extend((x, False) for x in t.creator.inputs if x.requires_grad)
    return order


def _leading_to(order: list[Tensor], targets: set[int]) -> set[int]:
    """Ids of the tensors of ``order`` (inputs first) from which a target can be reached."""
    reach = set(targets)
    for t in order:
        fn = t.creator
        if fn is not None and fn.inputs and any(id(x) in reach for x in fn.inputs):
            reach.add(id(t))
    return reach


def _input_grads(fn: Function, grad: Tensor) -> list[tuple[Tensor, Tensor]]:
    """``fn.backward(grad)``, checked: (input, gradient) for each input that needs one."""
    fn.check_inputs()
    gxs = fn.backward(grad)
    gxs = gxs if isinstance(gxs, tuple) else (gxs,)
    if len(gxs) != len(fn.inputs):
        raise RuntimeError(f"{fn!r}.backward returned {len(gxs)} grads for {len(fn.inputs)} inputs")
    pairs = []
    for x, gx, need in zip(fn.inputs, gxs, fn.needs_input_grad):
        if not need or gx is None:
            continue
        gx = gx if isinstance(gx, Tensor) else Tensor(gx)  # an array: a constant
        if gx.shape != x.shape or gx.dtype != x.dtype:
            raise RuntimeError(
                f"{fn!r}.backward returned a grad of shape {gx.shape} {gx.dtype} for an input "
                f"of shape {x.shape} {x.dtype}"
            )
        pairs.append((x, gx))
    return pairs


def _accumulate(leaf: Tensor, grad: Tensor, memory: _LeafGrads, create_graph: bool) -> None:
    """``leaf.grad += grad``, out of place (no array handed out before changes): a Tensor in the
    graph under ``create_graph``, an array otherwise (whatever the earlier backward left)."""
    if create_graph:
        leaf.grad = grad if leaf.grad is None else leaf.grad + grad
    elif leaf.grad is None:
        leaf.grad = memory.take(grad.data)
    else:  # asarray: NumPy's 0-d sum is a scalar, not an array
        old = leaf.grad.data if isinstance(leaf.grad, Tensor) else leaf.grad
        leaf.grad = backend.get_array_module(grad.data).asarray(old + grad.data)


def _seed(t: Tensor, grad: Any) -> Tensor:
    """The upstream gradient of an output ``t`` as a Tensor, checked against ``t``."""
    if not isinstance(t, Tensor) or not t.requires_grad:
        raise RuntimeError(
            "backward() on a tensor that does not require grad: no input of the ops that made "
            "it has requires_grad=True (or it was made under no_grad())"
        )
    if grad is None:
        if t.data.size != 1:
            raise RuntimeError(
                f"backward() without grad works only for one-element tensors; got shape "
                f"{t.shape}: pass grad= with that shape"
            )
        return Tensor(backend.get_array_module(t.data).ones_like(t.data))
    data = grad.data if isinstance(grad, Tensor) else grad
    backend.get_array_module(data, t.data)
    if not hasattr(data, "shape") or data.shape != t.shape or data.dtype != t.dtype:
        got = f"{getattr(data, 'shape', '?')} {getattr(data, 'dtype', type(data).__name__)}"
        raise ValueError(f"grad must match the tensor: {t.shape} {t.dtype}; got {got}")
    return grad if isinstance(grad, Tensor) else Tensor(grad)


class _LeafGrads:
    """Fills the leaves' ``.grad`` arrays without handing out memory that something else uses.

    Backward passes gradients along without copying: ``Add`` hands the same array to both of
    its inputs, ``Reshape`` a view of its upstream gradient, ``BroadcastTo``'s input may get a
    stride-0 view. A leaf's ``.grad`` must be its own array (optimizers and users update it in
    place: ``zero_grad``, clipping, SGD's weight decay), yet copying every gradient would double
    the memory traffic of
    backward. So the engine counts the users of each block of memory (by the array that owns
    it): pending gradients, ``.grad`` arrays already filled, and the caller's ``grad``. A leaf
    takes a gradient's memory as its ``.grad`` only when nobody else uses it and it is not a
    stretched (stride-0) view; otherwise it takes a copy.
    """

    def __init__(self) -> None:
        self.users: Counter[int] = Counter()

    def add(self, a: Any, n: int = 1) -> None:
        self.users[id(owner(a))] += n

    def take(self, a: Any) -> Any:
        """``a`` if nothing else uses its memory, else a copy; counted as used from then on."""
        stretched = any(s == 0 and n > 1 for s, n in zip(a.strides, a.shape))
        if self.users[id(owner(a))] or stretched:
            a = a.copy()
        self.add(a)
        return a


# ---- dtype rules: how an op's inputs become Tensors (not differentiation) ----------------------
def as_tensors(inputs: Sequence[Any], op: str) -> tuple[Tensor, ...]:
    """Wrap an op's inputs as Tensors: arrays become constants, Python scalars take the dtype
    of the op's floating-point tensors (so a scalar never promotes float32 to float64).

    Raises ``TypeError`` if tensors of different floating-point dtypes, or integer and
    floating-point tensors, meet in one op (NumPy would silently promote them).
    """

    def is_scalar(x: Any) -> bool:
        return isinstance(x, (int, float, np.generic)) and not isinstance(x, (bool, np.bool_))

    arrays = [x.data if isinstance(x, Tensor) else x for x in inputs if not is_scalar(x)]
    for a in arrays:
        if not hasattr(a, "dtype"):
            raise TypeError(f"{op} got an input of type {type(a).__name__}; expected a Tensor")
    if not arrays:
        raise TypeError(f"{op} needs at least one Tensor input")
    floats = {a.dtype for a in arrays if a.dtype.kind == "f"}
    if len(floats) > 1:
        names = " and ".join(sorted(str(d) for d in floats))
        raise TypeError(f"{op} got {names} inputs; convert one explicitly with .astype()")
    ints = {a.dtype for a in arrays if a.dtype.kind in "iu"}
    if floats and ints:  # NumPy would promote int64 + float32 to float64
        names = " and ".join(sorted(str(d) for d in floats | ints))
        raise TypeError(
            f"{op} got {names} inputs; convert the integer one explicitly with .astype()"
        )
    dtype = floats.pop() if floats else arrays[0].dtype
    xp = backend.get_array_module(*arrays)

    def wrap(x: Any) -> Tensor:
        if isinstance(x, Tensor):
            return x
        if not is_scalar(x):
            return Tensor(x)
        if dtype.kind != "f" and isinstance(x, (float, np.floating)):
            raise TypeError(f"{op} got the float {x!r} beside {dtype} tensors; use float tensors")
        return Tensor(xp.asarray(x, dtype=dtype))

    return tuple(wrap(x) for x in inputs)
