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

The numerics difference the *output vector* for each perturbed element and take the dot product
with ``u`` afterwards: ``(<fn(x + h e_j) - fn(x - h e_j), u>) / 2h``. Differencing the scalar
``<fn(x), u>`` instead (as this checker did before) loses the difference in the roundoff of a sum
over every output, which grows with the output's size: correct ops failed from about 50x50 on.
``check_vjp`` is the numerical part alone, for any array -> array function (a second-order check
reuses it on the map from ``x`` to a gradient).
"""

from __future__ import annotations

import os
import sysconfig
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from . import checks
from .backend import get_array_module, is_cupy_array, to_device
from .function import grad_mode, is_grad_enabled, no_grad
from .ops import cat
from .tensor import Tensor, grad

Array = Any  # numpy.ndarray or cupy.ndarray

LAYOUTS = ("C", "F", "transposed", "strided", "reversed")
"""Memory layouts of ``as_layout``: C order, Fortran order, the last two axes swapped in memory,
every other element of a buffer twice as large (positive strides), every axis reversed (negative
strides)."""

_STREAM = 0x67726164  # mixed into the seed, so u never equals the user's own default_rng(seed) data
_LEVELS = (8, 64)  # smaller steps (eps / 8, eps / 64) tried where the central difference disagrees


def as_layout(a: Array, layout: str) -> Array:
    """The values of ``a`` in a new array with the given memory layout (see ``LAYOUTS``).

    Parameters
    ----------
    a : array, any shape
    layout : {"C", "F", "transposed", "strided", "reversed"}

    Returns
    -------
    array
        Equal to ``a`` elementwise, same shape and dtype; never shares memory with ``a``.
    """
    if not _is_array(a):
        raise TypeError(f"as_layout: a must be a NumPy or CuPy array; got {type(a).__name__}")
    xp = get_array_module(a)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    if layout == "C" or a.ndim == 0:
        return xp.array(a, order="C", copy=True)
    if layout == "F":
        return xp.array(a, order="F", copy=True)
    if layout == "transposed":
        if a.ndim < 2:
            return xp.array(a, copy=True)
        return xp.ascontiguousarray(xp.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    if layout == "strided":
        view = xp.zeros(tuple(2 * n for n in a.shape), a.dtype)[(slice(None, None, 2),) * a.ndim]
        view[...] = a
        return view
    every = (slice(None, None, -1),) * a.ndim  # reversed
    return xp.ascontiguousarray(a[every])[every]


def distinct_layouts(ndim: int) -> tuple[str, ...]:
    """The layouts of ``LAYOUTS`` other than C that differ from C and each other at ``ndim``."""
    return {0: (), 1: ("strided", "reversed"), 2: ("F", "strided", "reversed")}.get(
        ndim, ("F", "transposed", "strided", "reversed")
    )


# ---- the report -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Failure:
    """One failed check: which check, the input blamed (None: the op as a whole), what happened,
    and the exception that ``fn`` or its backward raised, if one did (its traceback begins at the
    first frame outside the checker and the engine: the user's code)."""

    check: str
    input: int | None
    message: str
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"[{self.check}] {self.message}"


@dataclass
class GradcheckReport:
    """What ``gradcheck`` found; true when nothing failed.

    Attributes
    ----------
    failures : list of Failure
        Structural checks first (in the order they ran), then the numerical ones, input by input.
    notes : list of str
        What passed only after a closer look: a non-differentiable point where the analytic value
        lies between the one-sided derivatives, or a kink that a smaller step steps around.
    checked : list of int
        The positions of the inputs whose gradients were checked.
    """

    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def __bool__(self) -> bool:
        return self.ok

    @property
    def blamed(self) -> list[int]:
        """The inputs named by at least one failure, in order."""
        return sorted({f.input for f in self.failures if f.input is not None})

    def __str__(self) -> str:
        inputs = ", ".join(str(i) for i in self.checked)
        if self.ok:
            head = f"gradcheck passed (inputs {inputs})"
        else:
            n = len(self.failures)
            head = f"gradcheck failed ({n} problem{'s' * (n > 1)}, inputs checked: {inputs}):"
        lines = [head, *(f"  {f}" for f in self.failures)]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the numerical one (or misbehaves).

    ``report`` holds every failure found (a ``GradcheckReport``). Where ``fn`` or its backward
    raised, the first such exception is the ``__cause__``, so a traceback shows the user's line.
    """

    def __init__(self, report: GradcheckReport | str) -> None:
        if isinstance(report, str):
            report = GradcheckReport([Failure("gradcheck", None, report)])
        self.report = report
        super().__init__(str(report))


# ---- numerics: any array -> array function ----------------------------------------------------
@dataclass
class VJPCheck:
    """The result of ``check_vjp``.

    Attributes
    ----------
    ok : bool
    numerical, analytic : numpy.ndarray, float64
        Per element (``mode="full"``: the shape of ``x``) or per direction (``mode="vjp"``:
        shape ``(n_directions,)``, the analytic entry being ``<analytic, v_k>``).
    excused : numpy.ndarray of bool
        Entries that disagreed at step ``eps`` but passed on a closer look (a smaller step, or a
        non-differentiable point with the analytic value between the one-sided derivatives).
    magnitude : numpy.ndarray, float64
        Per entry, ``sum_k |f(x + h d) - f(x - h d)|_k |u_k| / 2h`` (``d`` the element or the
        direction): in full mode ``sum_k |J_kj| |u_k|``, the size of the terms the entry of the
        vector-Jacobian product sums, which its roundoff in a lower precision scales with.
    check : str
        ``"numerical"`` or ``"not differentiable"``: what the failure (if any) is.
    message : str or None
        The worst failing entry: where, both values, the tolerance, how many entries fail.
    notes : list of str
    directions : list of arrays or None
        The random directions of ``mode="vjp"``.
    """

    ok: bool
    numerical: np.ndarray
    analytic: np.ndarray
    excused: np.ndarray
    magnitude: np.ndarray
    check: str = "numerical"
    message: str | None = None
    notes: list[str] = field(default_factory=list)
    directions: list[Array] | None = None

    def project(self, grad: Array) -> np.ndarray:
        """``grad`` as this check saw the analytic gradient (itself, or along each direction)."""
        g = np.asarray(to_device(grad, "cpu"), dtype=np.float64)
        if self.directions is None:
            return g
        return np.array([np.vdot(g, to_device(v, "cpu")) for v in self.directions])


class _Line:
    """``f`` along one line through ``x``: element ``j`` moved alone, or ``x + t v``. ``y0`` is
    ``f(x)``."""

    def __init__(self, f: Callable[[Array], Array], x: Array, u: Array, y0: Array):
        self.f, self.x, self.y0 = f, x, y0
        self.xp = get_array_module(x)
        self.u = self.xp.ascontiguousarray(u).ravel()
        self.abs_u = self.xp.abs(self.u)

    def dot(self, d: Array) -> float:
        return float(self.xp.vdot(d.ravel(), self.u))

    def size(self, d: Array) -> float:
        """``sum_k |d_k| |u_k|``."""
        return float(self.xp.vdot(self.xp.abs(d).ravel(), self.abs_u))

    def outputs(self, where: Any, h: float) -> tuple[Array, Array, float, float]:
        """``f`` at ``x`` moved by +h and -h along ``where``, and the steps really taken."""
        if isinstance(where, tuple):  # an element
            xw = self.x.copy()
            v = float(self.x[where])
            hi, lo = v + h, v - h
            xw[where] = hi
            yp = self.xp.array(self.f(xw), copy=True)
            xw[where] = lo
            return yp, self.f(xw), float(xw.dtype.type(hi) - v), float(v - xw.dtype.type(lo))
        yp = self.xp.array(self.f(self.x + h * where), copy=True)
        return yp, self.f(self.x - h * where), h, h

    def sided(self, where: Any, h: float) -> tuple[float, float, float]:
        """Central, left and right differences along ``where`` with step ``h``."""
        yp, ym, tp, tm = self.outputs(where, h)
        central = self.dot(yp - ym) / (tp + tm)
        return central, self.dot(self.y0 - ym) / tm, self.dot(yp - self.y0) / tp


def _close(a: float, n: float, atol: float, rtol: float) -> bool:
    return abs(a - n) <= atol + rtol * abs(n)


def _resolve(line: _Line, where: Any, a: float, eps: float, atol: float, rtol: float):
    """Look closer at an entry whose central difference disagrees with the analytic value ``a``.

    Smaller steps first: if one agrees, a kink (or strong curvature) lay within ``eps`` but not at
    the point itself. Else compare one-sided differences at the smallest step: a jump between them
    that does not shrink with the step is a non-differentiable point. There the analytic value
    must lie between the two one-sided derivatives (any value there is a valid subgradient).

    Returns ``(verdict, left, right)``, the verdict one of ``"smaller step"`` (passes),
    ``"between"`` (passes), ``"outside"`` (a non-differentiable point, ``a`` not between the
    one-sided derivatives) and ``"mismatch"``; ``left, right`` are the one-sided derivatives at
    step ``eps`` for the first verdict, at the smallest step for the others.
    """
    _, left0, right0 = line.sided(where, eps)
    for level in _LEVELS:
        central, left, right = line.sided(where, eps / level)
        if _close(a, central, atol, rtol):
            return "smaller step", left0, right0
    lo, hi = min(left, right), max(left, right)
    tol = atol + rtol * max(abs(lo), abs(hi))
    if hi - lo > tol and lo - tol <= a <= hi + tol:
        return "between", left, right
    if hi - lo > tol and hi - lo >= 0.5 * abs(right0 - left0):
        return "outside", left, right
    return "mismatch", left, right


def _describe(where: Any) -> str:
    if isinstance(where, tuple):
        return f"element {tuple(int(k) for k in where)}"
    return f"random direction {where}"


def check_vjp(
    f: Callable[[Array], Array],
    x: Array,
    u: Array,
    analytic: Array,
    *,
    eps: float = 1e-6,
    atol: float = 1e-7,
    rtol: float = 1e-5,
    mode: str = "full",
    n_directions: int = 2,
    seed: int = 0,
) -> VJPCheck:
    """Check a vector-Jacobian product ``analytic ~ J(x)^T u`` against finite differences.

    ``f`` is any function of one array; its Jacobian at ``x`` is probed by central differences
    of the output vector, dotted with ``u`` afterwards (so roundoff does not grow with the size of
    the output). An entry passes if ``|analytic - numerical| <= atol + rtol * |numerical|``;
    one that does not is looked at closer (smaller steps, then one-sided differences), so that a
    kink near ``x`` is reported as "not differentiable near ..." and a correct value at a kink
    (between the one-sided derivatives) passes.

    Parameters
    ----------
    f : callable
        ``f(x) -> array`` of ``u``'s shape, deterministic, float64. It may return a view of its
        argument but must not modify it.
    x : array, float64
    u : array, the shape of ``f(x)``
    analytic : array, the shape of ``x``
        The gradient to check (any float dtype; compared in float64).
    eps, atol, rtol : float
    mode : {"full", "vjp"}
        ``"full"``: every element of ``x`` (2 calls of ``f`` each); ``"vjp"``: ``n_directions``
        random directions ``v``, comparing ``<analytic, v>`` (2 calls each).
    n_directions : int
    seed : int
        Seeds the directions.

    Returns
    -------
    VJPCheck

    Raises
    ------
    TypeError, ValueError
        An option out of range (as ``gradcheck``'s), ``x`` not float64 or not finite, or
        ``analytic``, ``u`` not of the shapes of ``x``, ``f(x)``.
    """
    _check_options(mode, eps, atol, rtol, n_directions, seed)
    xp = get_array_module(x, u)
    if x.dtype != np.float64:
        raise TypeError(f"check_vjp: x must be float64 (for the differences); got {x.dtype}")
    require_finite(x, "check_vjp: x")
    y0 = xp.array(f(x), copy=True)
    for name, a, shape in (("analytic", analytic, x.shape), ("u", u, y0.shape)):
        if tuple(a.shape) != tuple(shape):
            what = "x" if name == "analytic" else "f(x)"
            raise ValueError(f"check_vjp: {name} must have the shape of {what}, {shape}; got "
                             f"{tuple(a.shape)}")  # fmt: skip
    line = _Line(f, x, u, y0)
    g = np.asarray(to_device(analytic, "cpu"), dtype=np.float64)
    if mode == "full":
        numerical, magnitude = np.empty(x.shape), np.empty(x.shape)
        xw = x.copy()
        for j in np.ndindex(*x.shape):
            v = float(x[j])
            xw[j] = v + eps
            yp = xp.array(f(xw), copy=True)
            hi = float(xw[j])
            xw[j] = v - eps
            ym = f(xw)
            d, step = yp - ym, hi - float(xw[j])
            numerical[j], magnitude[j] = line.dot(d) / step, line.size(d) / step
            xw[j] = v
        directions, analytic_seen = None, g
    else:
        rng = np.random.default_rng((seed, _STREAM))
        directions = [xp.asarray(rng.standard_normal(x.shape)) for _ in range(n_directions)]
        diffs = [line.outputs(v, eps)[:2] for v in directions]
        numerical = np.array([line.dot(yp - ym) / (2 * eps) for yp, ym in diffs])
        magnitude = np.array([line.size(yp - ym) / (2 * eps) for yp, ym in diffs])
        analytic_seen = np.array([np.vdot(g, to_device(v, "cpu")) for v in directions])
    result = VJPCheck(True, numerical, analytic_seen, np.zeros(numerical.shape, bool), magnitude)
    result.directions = directions

    error = np.abs(analytic_seen - numerical) - (atol + rtol * np.abs(numerical))
    error = np.where(np.isnan(error), np.inf, error)
    bad = np.flatnonzero(error > 0)
    unit = "elements" if mode == "full" else "directions"
    count = f"{len(bad)} of {numerical.size} {unit} out of tolerance at step {eps:g}"
    passed: dict[str, list[str]] = {}
    for k in bad[np.argsort(-error.ravel()[bad], kind="stable")]:  # worst first
        entry = np.unravel_index(k, numerical.shape) if mode == "full" else int(k)
        where = entry if mode == "full" else directions[entry]
        a, n = float(analytic_seen[entry]) + 0.0, float(numerical[entry])  # + 0.0: no "-0"
        verdict, left, right = "mismatch", n, n
        if np.isfinite(n) and np.isfinite(a):
            verdict, left, right = _resolve(line, where, a, eps, atol, rtol)
        sides = f"one-sided derivatives {left:.10g} (left) and {right:.10g} (right)"
        if verdict == "outside" and mode == "vjp":  # several kinks crossed at once: no verdict
            verdict = "crossed"
        if verdict != "mismatch" and verdict != "outside":
            result.excused[entry] = True
            passed.setdefault(verdict, []).append(f"{_describe(entry)} ({sides})")
            continue
        result.ok = False
        if verdict == "outside":
            result.check = "not differentiable"
            result.message = (
                f"not differentiable near {_describe(entry)}: {sides}, analytic {a:.10g} is not "
                f"between them ({count})"
            )
        else:
            result.message = _mismatch(_describe(entry), n, a, atol, rtol, f"{atol:g}", count)
        break
    why = {
        "smaller step": f"a central difference with a step below {eps:g} agrees",
        "between": "not differentiable there; the analytic value lies between the one-sided "
        "derivatives",
        "crossed": "the line crosses non-differentiable points, where a directional check "
        "cannot judge the analytic value (mode='full' can)",
    }
    for verdict, places in passed.items():
        more = f" and {len(places) - 1} more" if len(places) > 1 else ""
        result.notes.append(f"passed after a closer look at {places[0]}{more}: {why[verdict]}")
    return result


def _check_options(mode: str, eps: float, atol: float, rtol: float, n_directions: int,
                   seed: int) -> None:  # fmt: skip
    """The options of the numerics (``gradcheck``'s and ``check_vjp``'s), checked."""
    checks.choice(mode, "mode", ("full", "vjp"))
    checks.real(eps, "eps", 0.0, low_open=True)
    checks.real(atol, "atol", 0.0)
    checks.real(rtol, "rtol", 0.0)
    checks.integer(n_directions, "n_directions", 1)
    checks.integer(seed, "seed", 0)


def _mismatch(where: str, n: float, a: float, atol: float, rtol: float, atol_text: str,
              count: str) -> str:  # fmt: skip
    return (
        f"{where}: numerical {n:.10g}, analytic {a:.10g}, |difference| {abs(a - n):.3g} > "
        f"tolerance {atol + rtol * abs(n):.3g} (atol {atol_text} + rtol {rtol:g} * |numerical|); "
        f"{count}"
    )


def _compare(
    numerical: np.ndarray,
    analytic: np.ndarray,
    atol: float | np.ndarray,
    rtol: float,
    skip: np.ndarray | None = None,
    unit: str = "element",
    atol_text: str | None = None,
) -> str | None:
    """Elementwise ``|analytic - numerical| <= atol + rtol * |numerical|`` (``atol`` a number or
    one per entry), entries in ``skip`` left out; a description of the worst violation, or
    None if there is none."""
    error = np.abs(analytic - numerical) - (atol + rtol * np.abs(numerical))
    error = np.where(np.isnan(error), np.inf, error)
    if skip is not None:
        error = np.where(skip, -np.inf, error)
    if not error.size or error.max() <= 0:
        return None
    k = int(np.argmax(error))
    if unit == "element":
        where = f"element {tuple(int(i) for i in np.unravel_index(k, error.shape))}"
    else:
        where = f"random direction {k}"
    n, a = float(numerical.ravel()[k]), float(analytic.ravel()[k]) + 0.0
    count = f"{int((error > 0).sum())} of {error.size} {unit}s out of tolerance"
    atol_k = float(np.broadcast_to(atol, error.shape).ravel()[k])
    return _mismatch(where, n, a, atol_k, rtol, atol_text or f"{atol_k:g}", count)


# ---- runs of fn -----------------------------------------------------------------------------
def _is_array(x: Any) -> bool:
    return isinstance(x, np.ndarray) or is_cupy_array(x)


_ENGINE = {str(Path(__file__).with_name(f)) for f in ("gradcheck.py", "tensor.py", "function.py")}
_LIBRARIES = {sysconfig.get_path(k) for k in ("stdlib", "purelib", "platlib")}
_NOT_USER = tuple(os.path.join(d, "") for d in {str(Path(__file__).parent), *_LIBRARIES})


def _caught(e: BaseException) -> str:
    """``e`` as a report line naming the user's line that raised it; cuts ``e``'s traceback to
    begin at the first frame outside the checker and the engine (``tensor.py``, ``function.py``),
    so that the chained exception's traceback starts in the user's code.

    The line named is the innermost frame outside tinygan and the Python and site libraries (an
    error raised in a tinygan op or in NumPy is placed where the user's code called it), else the
    first frame outside the checker and the engine (an op of tinygan's own).
    """
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in _ENGINE:
        tb = tb.tb_next
    text = f"{type(e).__name__}: {e}"
    if tb is None:  # raised by the checker or the engine itself: no user frame to show
        return text
    e.with_traceback(tb)
    frames = list(traceback.walk_tb(tb))
    users = [(f, n) for f, n in frames if not f.f_code.co_filename.startswith(_NOT_USER)]
    frame, line = users[-1] if users else frames[0]
    return f"{text} (at {frame.f_code.co_filename}:{line}, in {frame.f_code.co_name})"


@dataclass
class _Run:
    """One call of ``fn`` (and its backward): arguments, output, upstream gradient, grads, and
    what went wrong (the report line, and the exception ``fn`` or its backward raised)."""

    args: list[Any]
    out: Any = None
    upstream: Array = None
    grads: dict[int, Array] = field(default_factory=dict)
    error: str | None = None
    exception: BaseException | None = None

    def caught(self, e: BaseException) -> _Run:
        self.error, self.exception = _caught(e), e
        return self


class _Checker:
    """Runs ``fn`` on fresh copies of the inputs and records what fails in ``report``."""

    def __init__(self, fn: Callable[..., Tensor], inputs: list[Any], report: GradcheckReport):
        self.fn, self.inputs, self.report = fn, inputs, report

    def fail(self, check: str, i: int | None, message: str, exception: Any = None) -> None:
        self.report.failures.append(Failure(check, i, message, exception))

    def args(self, dtype: Any, leaves: Sequence[int] = (), layouts: dict | None = None) -> list:
        """Fresh arguments: float arrays cast to ``dtype`` (copies), leaves for ``leaves``."""
        layouts = layouts or {}
        out = []
        for i, x in enumerate(self.inputs):
            data = x.data if isinstance(x, Tensor) else x
            if isinstance(x, Tensor) or _is_array(x):
                xp = get_array_module(data)
                data = data.astype(dtype) if data.dtype.kind == "f" else xp.array(data, copy=True)
                if i in layouts:
                    data = as_layout(data, layouts[i])
            if isinstance(x, Tensor):
                data = Tensor(data, requires_grad=i in leaves)
            out.append(data)
        return out

    def forward(self, dtype: Any, leaves: Sequence[int], layouts: dict | None = None) -> _Run:
        r = _Run(self.args(dtype, leaves, layouts))
        try:
            r.out = self.fn(*r.args)
        except Exception as e:  # a user's op may raise anything: report it
            return r.caught(e)
        if (wrong := _not_a_tensor(r.out)) is not None:
            r.error = wrong
        elif r.out.dtype != dtype:
            r.error = f"TypeError: the output is {r.out.dtype} for {dtype} inputs"
        elif not r.out.requires_grad:
            r.error = "RuntimeError: the output does not depend on any input that requires grad"
        return r

    def backward(self, r: _Run, u: Array, retain: bool = False) -> _Run:
        """``r.out.backward(u)``; the leaves' grads (zeros where none flowed) into ``r.grads``."""
        if r.error is not None:
            return r
        r.upstream = u
        try:
            r.out.backward(u, retain_graph=retain)
        except Exception as e:  # a user's op may raise anything: report it
            return r.caught(e)
        xp = get_array_module(u)
        for i, a in enumerate(r.args):
            if isinstance(a, Tensor) and a.requires_grad:
                r.grads[i] = xp.zeros_like(a.data) if a.grad is None else a.grad
        return r

    def run(self, dtype: Any, u: Array, leaves: Sequence[int], layouts: dict | None = None):
        return self.backward(self.forward(dtype, leaves, layouts), u)

    def blame(self, dtype: Any, u: Array, leaves: list[int], what: str, failed: _Run,
              retain: bool) -> _Run | None:  # fmt: skip
        """A joint run ``failed``: try each input alone and blame those that fail.

        Returns a run of the others together (None if none is left or that fails too).
        """
        alone = {i: self.run(dtype, u.copy(), [i]) for i in leaves}
        culprits = [i for i in leaves if alone[i].error is not None]
        for i in culprits:
            self.fail(what, i, f"input {i}: {what} failed: {alone[i].error}", alone[i].exception)
        if not culprits:
            self.fail(what, None, f"{what} failed: {failed.error}", failed.exception)
            return None
        rest = [i for i in leaves if i not in culprits]
        if not rest:
            return None
        r = self.backward(self.forward(dtype, rest), u.copy(), retain)
        if r.error is not None:
            self.fail(what, None, f"{what} failed with inputs {rest} alone: {r.error}", r.exception)
            return None
        return r

    def structure(self, main: _Run, dtype: Any, u: Array, tag: str = "") -> dict[int, Array]:
        """Grad shapes and dtypes, purity, the upstream gradient, aliasing; the usable grads."""
        xp = get_array_module(u)
        grads = {}
        for i, g in main.grads.items():
            shape = self.inputs[i].shape
            if g.shape != shape or g.dtype != dtype:
                check = "shape" if g.shape != shape else "dtype"
                message = f"{tag}grad is {g.shape} {g.dtype}, input is {shape} {dtype}"
                self.fail(check, i, f"input {i}: {message}")
            else:
                grads[i] = g
        if tag:
            return grads
        for k, (a, b) in enumerate(zip(main.args, self.args(dtype))):
            a, b = (a.data, b.data) if isinstance(a, Tensor) else (a, b)
            if _is_array(a) and not xp.array_equal(a, b, equal_nan=True):
                self.fail("purity", k, f"input {k} was modified by fn or its backward")
        if not xp.array_equal(main.upstream, u):
            leaves = list(main.grads)
            culprits = [
                i for i in leaves if not xp.array_equal(self.run(dtype, u.copy(), [i]).upstream, u)
            ]
            for i in culprits or [None]:
                self.fail("upstream", i, _UPSTREAM if i is None else f"input {i}: {_UPSTREAM}")
        for i, g in main.grads.items():
            others = [
                (f"input {k}'s data", a.data if isinstance(a, Tensor) else a)
                for k, a in enumerate(main.args)
            ]
            for name, other in [*others, ("the upstream gradient", main.upstream)]:
                if _is_array(other) and xp.shares_memory(g, other):
                    self.fail("aliasing", i, f"input {i}: grad shares memory with {name}")
        return grads

    def repeat(self, main: _Run, u: Array, grads: dict[int, Array]) -> None:
        """Through ``main``'s graph (kept): a zero upstream gradient adds nothing to the grads,
        then a second backward with ``u`` adds exactly the first one's grads again."""
        xp = get_array_module(u)
        leaves = list(grads)
        zero_added: dict[int, float] = {}
        for upstream, check in ((xp.zeros_like(u), "zero upstream"), (u.copy(), "second backward")):
            before = {i: main.args[i].grad for i in leaves}
            try:
                main.out.backward(upstream, retain_graph=check == "zero upstream")
            except Exception as e:  # a user's op may raise anything: report it
                error = _caught(e)
                for i in leaves:
                    self.fail(check, i, f"input {i}: {check} failed: {error}", e)
                return
            for i in leaves:
                g = main.args[i].grad
                g = xp.zeros_like(main.args[i].data) if g is None else g  # no gradient flowed
                added = g if before[i] is None else g - before[i]
                if check == "zero upstream" and xp.any(added != 0):
                    zero_added[i] = float(xp.abs(added).max())
                    self.fail(check, i, f"input {i}: {_ZERO} (max |grad| {zero_added[i]:.3g})")
                elif check == "second backward" and i not in zero_added:
                    same = xp.array_equal(g, 2 * grads[i])
                    if not same:
                        self.fail(check, i, f"input {i}: {_SECOND}")

    def relaid(self, dtype: Any, u: Array, grads: dict, lay: str, causes: list, tol) -> dict:
        """The grads that differ from ``grads`` when the inputs in ``causes`` (None: the upstream
        gradient) are in layout ``lay``: ``{input: (why, the exception raised or None)}``."""
        up = as_layout(u, lay) if None in causes else u.copy()
        r = self.run(dtype, up, list(grads), {i: lay for i in causes if i is not None})
        out = {}
        for j, g in grads.items():
            if r.error:
                out[j] = f"backward failed: {r.error}", r.exception
            elif bad := _compare(_numbers(g), _numbers(r.grads[j]), *tol):
                name = _LAYOUT_NAMES[lay]
                out[j] = bad.replace("numerical", "C order").replace("analytic", name), None
        return out

    def layouts(self, dtype: Any, u: Array, grads: dict[int, Array], atol: float, rtol: float):
        """The same grads with the inputs and the upstream gradient in other layouts: all of
        them at once per layout, then one at a time where a grad differs, to name the cause."""
        found: dict[int, tuple[str, Any]] = {}
        for lay in ("F", "transposed", "strided", "reversed"):
            causes: list = [i for i in grads if lay in distinct_layouts(self.inputs[i].ndim)]
            causes += [None] if lay in distinct_layouts(u.ndim) else []
            together = self.relaid(dtype, u, grads, lay, causes, (atol, rtol)) if causes else {}
            if not together:
                continue
            name = _LAYOUT_NAMES[lay]
            for cause in causes:
                what = "the upstream gradient" if cause is None else f"input {cause}"
                alone = together
                if len(causes) > 1:
                    alone = self.relaid(dtype, u, grads, lay, [cause], (atol, rtol))
                for j, (why, e) in alone.items():
                    found.setdefault(j, (f"when {what} is {name}: {why}", e))
            for j, (why, e) in together.items():  # only all of them together
                found.setdefault(j, (f"when all are {name}: {why}", e))
        for j, (message, e) in sorted(found.items()):
            self.fail("layout", j, f"input {j}: the gradient differs {message}", e)


_ZERO = "a zero upstream gradient gave a nonzero grad"
_SECOND = (
    "a second backward through the same graph did not add the same grad (does backward modify "
    "what forward saved?)"
)
_UPSTREAM = (
    "backward modified the upstream gradient in place (where that array also feeds another "
    "branch of a graph, that branch's gradient comes out wrong)"
)

_LAYOUT_NAMES = {
    "C": "C-contiguous",
    "F": "in Fortran order",
    "transposed": "transposed in memory",
    "strided": "a strided view",
    "reversed": "reversed (negative strides)",
}


def _numbers(a: Array) -> np.ndarray:
    return np.asarray(to_device(a, "cpu"), dtype=np.float64)


def _not_a_tensor(out: Any) -> str | None:
    if isinstance(out, Tensor):
        return None
    return f"TypeError: fn must return a Tensor; got {type(out).__name__}"


def require_finite(a: Array, what: str) -> None:
    """Refuse an array with NaN or infinite values: finite differences through one are
    meaningless, and every check would blame the op. ``what`` names the array in the error."""
    xp = get_array_module(a)
    bad = ~xp.isfinite(a)
    if xp.any(bad):
        where = tuple(int(k) for k in np.unravel_index(int(xp.argmax(bad)), a.shape))
        n = int(bad.sum())
        raise ValueError(
            f"{what} holds {n} non-finite value{'s' * (n > 1)} (the first {float(a[where])} at "
            f"element {where}); the finite differences need finite inputs"
        )


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


def _raise(report: GradcheckReport) -> NoReturn:
    """Raise ``GradcheckError(report)``, chained to the first exception ``fn`` raised."""
    __tracebackhide__ = True
    cause = next((f.exception for f in report.failures if f.exception is not None), None)
    raise GradcheckError(report) from cause


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
    _check_options(mode, eps, atol, rtol, n_directions, seed)
    if not isinstance(float32_tol, Sequence) or len(float32_tol) != 2:
        raise TypeError(f"float32_tol must be a pair (atol, rtol); got {float32_tol!r}")
    for k, tol in enumerate(float32_tol):
        checks.real(tol, f"float32_tol[{k}]", 0.0)
    dtypes = run_dtypes(dtypes)
    inputs, checked = _checked_inputs(inputs, "gradcheck")
    report = GradcheckReport(checked=checked)
    checker = _Checker(fn, inputs, report)
    f64, f32 = np.dtype(np.float64), np.dtype(np.float32)

    # Structural checks, float64 then float32.
    main = checker.forward(f64, checked)
    if main.error is not None:
        checker.fail("forward", None, f"fn on float64 inputs: {main.error}", main.exception)
        if raise_exception:
            _raise(report)
        return report
    xp = get_array_module(main.out.data)
    u = xp.asarray(np.random.default_rng((seed, _STREAM)).standard_normal(main.out.shape))
    checker.backward(main, u.copy(), retain=True)
    if main.error is not None:
        main = checker.blame(f64, u, checked, "backward", main, retain=True)
    grads: dict[int, Array] = {}
    if main is not None:
        grads = checker.structure(main, f64, u)
        checker.repeat(main, u, grads)
        if layouts:
            checker.layouts(f64, u, grads, atol, rtol)
    grads32: dict[int, Array] = {}
    if f32 in dtypes:
        u32 = u.astype(f32)
        run32 = checker.run(f32, u32.copy(), checked)
        if run32.error is not None:
            run32 = checker.blame(f32, u32, checked, "float32 run", run32, retain=False)
        if run32 is not None:
            grads32 = checker.structure(run32, f32, u32, tag="float32 run: ")

    # Numerics, for every input with a usable gradient.
    copies = any(x.check == "purity" for x in report.failures)  # fn writes its inputs: fresh ones
    base_args = checker.args(f64)
    for i in checked:
        analytic = grads.get(i) if f64 in dtypes else None
        if analytic is None and i not in grads32:
            continue

        def f(xi: Array, i: int = i) -> Array:
            args = checker.args(f64) if copies else list(base_args)
            args[i] = Tensor(xi.copy() if copies else xi)
            with no_grad():
                return fn(*args).data

        x = base_args[i].data  # unchanged: fn writes no input, or f gives it fresh copies
        check = check_vjp(
            f,
            x,
            u,
            grads32[i] if analytic is None else analytic,
            eps=eps,
            atol=atol,
            rtol=rtol,
            mode=mode,
            n_directions=n_directions,
            seed=seed + 1 + i,
        )
        head = f"input {i} (shape {tuple(x.shape)}), "
        if analytic is not None and not check.ok:
            checker.fail(check.check, i, head + check.message)
        report.notes += [head + n for n in check.notes]
        if i in grads32 and (analytic is None or check.ok):  # float32 alone, not twice
            unit = "element" if mode == "full" else "direction"
            atol32, rtol32 = float32_tol
            atol_each = atol32 * (1 + check.magnitude)
            bad = _compare(check.numerical, check.project(grads32[i]), atol_each, rtol32,
                           check.excused, unit, f"{atol32:g} * (1 + magnitude)")  # fmt: skip
            if bad:
                checker.fail("float32", i, f"{head}float32 run: {bad}")
    if not raise_exception:
        return report
    if not report.ok:
        _raise(report)
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
    checks.integer(seed, "seed", 0)
    inputs, checked = _checked_inputs(inputs, "gradgradcheck")
    try:
        with no_grad():
            out = fn(*inputs)
        wrong = _not_a_tensor(out)
        failure = None if wrong is None else Failure("forward", None, f"fn: {wrong}")
    except Exception as e:  # a user's op may raise anything: report it
        failure = Failure("forward", None, f"fn: {_caught(e)}", e)
    if failure is not None:
        report = GradcheckReport([failure], checked=checked)
        if options.get("raise_exception", True):
            _raise(report)
        return report
    xp = get_array_module(out.data)
    if grad_outputs is None:
        rng = np.random.default_rng((seed, _STREAM + 1))
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
