"""The public gradient checker: test any op's backward against finite differences.

Usage::

    x = tinygan.tensor(np.random.randn(3, 4), requires_grad=True)
    tinygan.gradcheck(lambda x: my_op(x), [x])  # True, or raises GradcheckError

``gradcheck`` first runs the structural checks (backward runs; gradient shapes and dtypes; inputs
and the upstream gradient left unchanged; no gradient sharing memory with them; zero upstream
gives zero gradients; a second backward repeats the first; the same gradients for inputs in other
memory layouts; a float32 run keeping float32), then the numerical one for every input: central
differences in float64 against the analytic vector-Jacobian product for a random upstream
gradient ``u``. It reports every failing input with its worst element, not just the first.

``gradcheck`` is a dispatcher over the named steps of ``steps.py`` (structure, layouts, float32,
numerics); ``numerics.py`` holds the finite differences (``check_vjp``, the numerical part alone,
for any array -> array function: a second-order check reuses it on the map from ``x`` to a
gradient) and ``report.py`` how failures are told. ``gradgradcheck`` checks second derivatives
by ``gradcheck`` of the first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import arguments
from ..backend import get_array_module
from ..function import grad_mode, is_grad_enabled, no_grad
from ..ops import cat
from ..tensor import Tensor, grad
from . import steps
from .numerics import STREAM, VJPCheck, check_options, check_vjp, require_finite
from .report import Failure, GradcheckError, GradcheckReport, raise_error

__all__ = [
    "Failure", "GradcheckError", "GradcheckReport", "VJPCheck", "check_vjp", "gradcheck",
    "gradgradcheck", "require_finite", "run_dtypes",
]  # fmt: skip


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
    dtypes: Sequence[Any] = ("float64", "float32"),
    float32_tol: tuple[float, float] = (1e-4, 1e-3),
    layouts: bool = True,
    raise_exception: bool = True,
) -> bool | GradcheckReport:
    """Check ``fn``'s gradients with respect to every input tensor that requires grad.

    With a random upstream gradient ``u`` (shape of the output), the analytic vector-Jacobian
    product from ``backward`` is compared with central differences of ``fn`` in float64 (see
    ``check_vjp``):

    - ``mode="full"``: one element at a time (2 evaluations of ``fn`` per input element);
    - ``mode="vjp"``: along ``n_directions`` random directions per input (a dot-product check,
      ``<grad_x, v> ~ <fn(x + eps v) - fn(x - eps v), u> / (2 eps)``), for large inputs.

    Before the numerics, in this order: ``backward`` runs (when it fails, each input is tried
    alone to name the culprit); each gradient has its input's shape and dtype; ``fn`` and its
    backward modify neither the inputs nor the upstream gradient; no gradient shares memory with
    them; a zero upstream gradient gives zero gradients; a second backward through the same graph
    adds exactly the same gradients; inputs (and ``u``) in other memory layouts (Fortran order,
    transposed, strided, reversed) give the same gradients; and a float32 run gives a float32
    output and float32 gradients, which must then agree with the float64 numerics within
    ``float32_tol``. Every failure is reported, and every input is checked.

    Parameters
    ----------
    fn : callable
        ``fn(*inputs) -> Tensor``; must be deterministic.
    inputs : Tensor or sequence
        Tensors with ``requires_grad=True`` are checked (float32 or float64, finite: the numerics
        always run in float64); a single Tensor is the one input. Anything else (constants,
        integer targets, options) is passed through; float Tensors and arrays among them are
        cast to the dtype of each run. ``fn`` always gets fresh copies: the caller's tensors and
        their ``.grad`` are left alone.
    eps : float
        Finite-difference step.
    atol, rtol : float
        A float64 entry passes if ``|analytic - numerical| <= atol + rtol * |numerical|``.
    mode : {"full", "vjp"}
    n_directions : int
        Random directions per input in ``"vjp"`` mode.
    seed : int
        Seeds the upstream gradient and the directions.
    dtypes : sequence of {"float64", "float32"}
        The dtypes ``fn`` is run and differentiated in. ``("float64",)`` skips the float32 run
        (for an op that is float64-only by design).
    float32_tol : (atol, rtol)
        A float32 gradient entry passes if ``|grad - numerical| <= atol * (1 + m) + rtol *
        |numerical|``, where ``m = sum_k |J_kj| |u_k|`` (from the same differences; see
        ``VJPCheck.magnitude``) is the size of the terms the entry sums, which float32 roundoff
        grows with. On the ops of tests/gradcheck_zoo.py up to 200 x 200, and on one whose
        gradient is 0 by cancellation, the largest float32 error was 0.004 of this tolerance.
    layouts : bool
        Also run with each input and ``u`` in every other memory layout (float64).
    raise_exception : bool
        If False, return the ``GradcheckReport`` instead of raising.

    Returns
    -------
    True, or the ``GradcheckReport`` (true if nothing failed) if ``raise_exception=False``.

    Raises
    ------
    GradcheckError
        Listing every failed check: the input blamed and, for the numerics, its worst element (or
        direction), both values and the tolerance. ``.report`` holds the ``GradcheckReport``.
    TypeError, ValueError
        Before any check: ``inputs`` is neither a Tensor nor a sequence; no input requires grad;
        one that does is neither float32 nor float64, or holds NaN or infinite values; an option
        is out of range (``eps`` not positive, a negative tolerance or ``seed``,
        ``n_directions`` below 1, ``dtypes`` not a subset of float64 and float32, an unknown
        ``mode``).
    """
    __tracebackhide__ = True  # pytest: show the report, not this function's source
    check_options(mode, eps, atol, rtol, n_directions, seed)
    if not isinstance(float32_tol, Sequence) or len(float32_tol) != 2:
        raise TypeError(f"float32_tol must be a pair (atol, rtol); got {float32_tol!r}")
    for k, tol in enumerate(float32_tol):
        arguments.real(tol, f"float32_tol[{k}]", 0.0)
    dtypes = run_dtypes(dtypes)
    inputs, checked = _checked_inputs(inputs, "gradcheck")
    checker = steps.Checker(fn, inputs, GradcheckReport(checked=checked))
    ran = steps.structure(checker, seed)
    if ran is not None:
        u, grads = ran
        if layouts and grads:
            steps.layouts(checker, u, grads, atol, rtol)
        grads32 = steps.float32(checker, u) if np.float32 in dtypes else {}
        steps.numerics(checker, u, grads if np.float64 in dtypes else {}, grads32, eps=eps,
                       atol=atol, rtol=rtol, mode=mode, n_directions=n_directions, seed=seed,
                       float32_tol=float32_tol)  # fmt: skip
    return _told(checker.report, raise_exception)


def _told(report: GradcheckReport, raise_exception: bool) -> bool | GradcheckReport:
    """``report`` (``raise_exception=False``), else True if it holds no failure; else raise."""
    __tracebackhide__ = True
    if not raise_exception:
        return report
    if not report.ok:
        raise_error(report)
    return True


def gradgradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    *,
    grad_outputs: Any = None,
    seed: int = 0,
    **options: Any,
) -> bool | GradcheckReport:
    """Check ``fn``'s second derivatives: ``gradcheck`` of its first derivative.

    The first derivative ``g(x, u) = J_fn(x)^T u`` (every checked input's gradient, flattened and
    joined) is computed by the engine with ``create_graph=True``; ``gradcheck`` then checks *its*
    backward, the second-order vector-Jacobian product (what a Hessian-vector product or a
    gradient penalty differentiates), against finite differences of ``g``, with every check it
    makes of a first derivative. The upstream gradient ``u`` is one more input that requires
    grad, so the derivative of ``g`` with respect to ``u`` (the backward's linearity) is checked
    too.

    Parameters
    ----------
    fn, inputs
        As for ``gradcheck``.
    grad_outputs : array or Tensor, optional
        The upstream gradient ``u`` (the output's shape, finite); default: a random one from
        ``seed``.
    seed : int
        Seeds ``u`` and ``gradcheck``'s own draws.
    **options
        Passed to ``gradcheck`` (``eps``, ``atol``, ``rtol``, ``mode``, ``dtypes``, ...).

    Returns, Raises
        As ``gradcheck``; its messages name the inputs of ``fn`` by position, ``u`` last.
    """
    __tracebackhide__ = True
    arguments.integer(seed, "seed", 0)
    inputs, checked = _checked_inputs(inputs, "gradgradcheck")
    try:
        with no_grad():
            out = fn(*inputs)
        wrong = steps.not_a_tensor(out)
        failure = None if wrong is None else Failure("forward", None, f"fn: {wrong}")
    except Exception as e:  # a user's op may raise anything: report it
        failure = Failure("forward", None, f"fn: {steps.user_error(e)}", e)
    if failure is not None:
        return _told(GradcheckReport([failure], checked=checked),
                     options.get("raise_exception", True))  # fmt: skip
    xp = get_array_module(out.data)
    if grad_outputs is None:
        rng = np.random.default_rng((seed, STREAM + 1))
        grad_outputs = xp.asarray(rng.standard_normal(out.shape), dtype=out.dtype)
    if isinstance(grad_outputs, Tensor):
        grad_outputs = grad_outputs.data
    grad_outputs = xp.asarray(grad_outputs)
    if grad_outputs.shape != out.shape or grad_outputs.dtype.kind != "f":
        raise ValueError(
            f"gradgradcheck: grad_outputs must be a float array of the output's shape "
            f"{tuple(out.shape)}; got {grad_outputs.dtype} of shape {tuple(grad_outputs.shape)}"
        )
    require_finite(grad_outputs, "gradgradcheck: grad_outputs")
    u = Tensor(grad_outputs, requires_grad=True)

    def first_derivatives(*args: Any) -> Tensor:
        *xs, u = args
        record = is_grad_enabled()  # gradcheck's numerics run without a graph: values only
        for i in checked:  # ... and pass plain Tensors there: differentiate them all the same
            if not xs[i].requires_grad:
                xs[i] = Tensor(xs[i].data, requires_grad=True)
        with grad_mode(True):
            gs = grad(fn(*xs), [xs[i] for i in checked], u, create_graph=record, allow_unused=True)
        parts = [g.reshape(-1) for g in gs if g is not None]
        if not parts:
            raise ValueError("gradgradcheck: fn does not depend on any input that requires grad")
        return cat(parts)

    return gradcheck(first_derivatives, [*inputs, u], seed=seed, **options)


def run_dtypes(dtypes: Any) -> list[np.dtype]:
    """``dtypes`` (a ``gradcheck`` option) as NumPy dtypes, checked: a non-empty sequence of
    float64 and float32."""
    try:
        out = [np.dtype(d) for d in dtypes] if not isinstance(dtypes, str) else []
    except TypeError:
        out = []
    if not out or any(d not in (np.float32, np.float64) for d in out):
        raise ValueError(f"dtypes must be a non-empty subset of (float64, float32); got {dtypes!r}")
    return out


def _checked_inputs(inputs: Any, who: str) -> tuple[list[Any], list[int]]:
    """``inputs`` as a list (a bare Tensor is the one input) and the positions of those that
    require grad, each float32 or float64 and finite."""
    if isinstance(inputs, Tensor):
        inputs = [inputs]
    if not isinstance(inputs, Sequence) or isinstance(inputs, str):
        raise TypeError(
            f"{who}: inputs must be a Tensor or a sequence of inputs (a list or a tuple); "
            f"got {type(inputs).__name__}"
        )
    inputs = list(inputs)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError(f"{who}: no input is a Tensor with requires_grad=True")
    for i in checked:
        if inputs[i].dtype not in (np.float32, np.float64):
            raise ValueError(
                f"{who}: input {i} is {inputs[i].dtype}; only float32 and float64 are checked"
            )
        require_finite(inputs[i].data, f"{who}: input {i}")
    return inputs, checked
