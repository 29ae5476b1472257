"""The public gradient checker: test any op's backward against finite differences.

Usage::

    x = tinygan.tensor(np.random.randn(3, 4), requires_grad=True)   # float64
    tinygan.gradcheck(lambda x: my_op(x), [x])  # True, or raises GradcheckError

For large inputs, ``mode="vjp"`` compares directional derivatives instead of every element.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .backend import get_array_module, to_device
from .function import no_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the numerical one (or misbehaves)."""


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    *,
    eps: float = 1e-6,
    atol: float = 1e-7,
    rtol: float = 1e-5,
    mode: str = "full",
    n_directions: int = 2,
    seed: int = 0,
) -> bool:
    """Check ``fn``'s gradients with respect to every input tensor that requires grad.

    With a random upstream gradient ``u`` (shape of the output), the analytic vector-Jacobian
    product from ``backward`` is compared with central differences of ``<fn(x), u>``, in float64:

    - ``mode="full"``: one element at a time (2 evaluations of ``fn`` per input element);
    - ``mode="vjp"``: along ``n_directions`` random directions per input (dot-product check,
      ``<grad_x, v> ~ (<fn(x + eps v), u> - <fn(x - eps v), u>) / (2 eps)``), for large inputs.

    It also checks that each gradient has its input's shape and dtype, that a zero upstream
    gradient gives zero gradients, that a second backward through the same graph adds exactly
    the same gradients, that gradients share no memory with the inputs or the upstream
    gradient, and that ``fn`` does not modify its inputs.

    Parameters
    ----------
    fn : callable
        ``fn(*inputs) -> Tensor``; must be deterministic.
    inputs : sequence
        Passed to ``fn`` as they are. Tensors with ``requires_grad=True`` are checked and must be
        float64; anything else (constants, integer targets, options) is passed through.
    eps : float
        Finite-difference step.
    atol, rtol : float
        An element passes if ``|analytic - numerical| <= atol + rtol * |numerical|``.
    mode : {"full", "vjp"}
    n_directions : int
        Random directions per input in ``"vjp"`` mode.
    seed : int
        Seeds the upstream gradient and the directions.

    Returns
    -------
    True

    Raises
    ------
    GradcheckError
        Naming the input, the worst element's index (or the direction), both values and the
        tolerance; or the property that failed.
    ValueError
        If no input requires grad, or one that does is not float64, or ``mode`` is unknown.
    """
    if mode not in ("full", "vjp"):
        raise ValueError(f"mode must be 'full' or 'vjp'; got {mode!r}")
    inputs = list(inputs)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input is a Tensor with requires_grad=True")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise ValueError(
                f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need float64 "
                "(use .double())"
            )
    before = [x.data.copy() if isinstance(x, Tensor) else None for x in inputs]
    rng = np.random.default_rng(seed)
    with no_grad():
        out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise GradcheckError(f"fn must return a Tensor; got {type(out).__name__}")
    xp = get_array_module(out.data)
    u = xp.asarray(rng.standard_normal(out.shape)).astype(out.dtype)

    grads = _backward(fn, inputs, checked, u)
    for i, g in zip(checked, grads):
        x = inputs[i]
        if g.shape != x.shape or g.dtype != x.dtype:
            raise GradcheckError(
                f"input {i}: grad is {g.shape} {g.dtype}, input is {x.shape} {x.dtype}"
            )
        for name, other in (("the input's data", x.data), ("the upstream gradient", u)):
            if xp.shares_memory(g, other):
                raise GradcheckError(f"input {i}: grad shares memory with {name}")

    def f(args: list[Any]) -> float:
        with no_grad():
            return float((fn(*args).data * u).sum())

    for i, g in zip(checked, grads):
        g = to_device(g, "cpu")
        if mode == "full":
            _check_elements(f, inputs, i, g, eps, atol, rtol)
        else:
            _check_directions(f, inputs, i, g, eps, atol, rtol, n_directions, rng)

    for i, g in zip(checked, _backward(fn, inputs, checked, xp.zeros_like(u))):
        if xp.any(g != 0):
            raise GradcheckError(f"input {i}: a zero upstream gradient gave a nonzero grad")
    for i, g, g2 in zip(checked, grads, _backward(fn, inputs, checked, u, twice=True)):
        if not xp.array_equal(g2, g + g):
            raise GradcheckError(
                f"input {i}: a second backward through the same graph did not add the same grad "
                "(does backward modify what forward saved?)"
            )
    for i, (x, b) in enumerate(zip(inputs, before)):
        if b is not None and not xp.array_equal(x.data, b, equal_nan=True):
            raise GradcheckError(f"input {i} was modified by fn or its backward")
    return True


def _backward(fn, inputs, checked, u, twice=False) -> list[Any]:
    """Analytic grads of ``<fn(*inputs), u>`` for the checked inputs (zeros if none flowed)."""
    saved = [inputs[i].grad for i in checked]
    for i in checked:
        inputs[i].grad = None
    try:
        out = fn(*inputs)
        if not out.requires_grad:
            raise GradcheckError("the output does not depend on any input that requires grad")
        out.backward(u, retain_graph=twice)
        if twice:
            out.backward(u)
        xp = get_array_module(u)
        return [
            xp.zeros_like(inputs[i].data) if inputs[i].grad is None else inputs[i].grad
            for i in checked
        ]
    except (RuntimeError, ValueError, TypeError) as e:
        raise GradcheckError(f"backward failed: {e}") from e
    finally:
        for i, g in zip(checked, saved):
            inputs[i].grad = g


def _with_input(inputs: list[Any], i: int, data: Any) -> list[Any]:
    args = list(inputs)
    args[i] = Tensor(data, requires_grad=True)
    return args


def _check_elements(f, inputs, i, g, eps, atol, rtol) -> None:
    x = inputs[i].data
    xp = get_array_module(x)
    numerical = np.empty(x.shape)
    for j in np.ndindex(*x.shape):
        step = xp.zeros_like(x)
        step[j] = eps
        numerical[j] = (
            f(_with_input(inputs, i, x + step)) - f(_with_input(inputs, i, x - step))
        ) / (2 * eps)
    err = np.abs(g - numerical) - (atol + rtol * np.abs(numerical))
    if x.size and (np.isnan(err).any() or err.max() > 0):
        j = np.unravel_index(np.nanargmax(np.where(np.isnan(err), np.inf, err)), x.shape)
        where = f"element {tuple(int(k) for k in j)}"
        raise _mismatch(i, x.shape, where, numerical[j], g[j], atol, rtol)


def _check_directions(f, inputs, i, g, eps, atol, rtol, n, rng) -> None:
    x = inputs[i].data
    xp = get_array_module(x)
    for k in range(n):
        v = rng.standard_normal(x.shape)
        vd = xp.asarray(v)
        numerical = (
            f(_with_input(inputs, i, x + eps * vd)) - f(_with_input(inputs, i, x - eps * vd))
        ) / (2 * eps)
        analytic = float((g * v).sum())
        if not abs(analytic - numerical) <= atol + rtol * abs(numerical):
            raise _mismatch(i, x.shape, f"random direction {k}", numerical, analytic, atol, rtol)


def _mismatch(i, shape, where, numerical, analytic, atol, rtol) -> GradcheckError:
    tol = atol + rtol * abs(numerical)
    return GradcheckError(
        f"input {i} (shape {shape}), {where}: numerical {numerical:.10g}, analytic "
        f"{analytic:.10g}, |difference| {abs(analytic - numerical):.3g} > tolerance {tol:.3g} "
        f"(atol {atol} + rtol {rtol} * |numerical|)"
    )
