"""The numerics of the gradient checker: central differences of any array -> array function
against an analytic vector-Jacobian product (``check_vjp``), with a closer look at entries that
disagree (smaller steps, one-sided differences at kinks), and the tolerances they are judged by.

The differences are taken of the *output vector* for each perturbed element, and dotted with the
upstream gradient ``u`` afterwards: ``(<fn(x + h e_j) - fn(x - h e_j), u>) / 2h``. Differencing
the scalar ``<fn(x), u>`` instead (as the checker did before) loses the difference in the roundoff
of a sum over every output, which grows with the output's size: correct ops failed from about
50x50 on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import arguments
from ..backend import get_array_module, to_device

Array = Any  # numpy.ndarray or cupy.ndarray

STREAM = 0x67726164  # mixed into the seed, so u never equals the user's own default_rng(seed) data
_LEVELS = (8, 64)  # smaller steps (eps / 8, eps / 64) tried where the central difference disagrees


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
    check_options(mode, eps, atol, rtol, n_directions, seed)
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
        rng = np.random.default_rng((seed, STREAM))
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


def check_options(mode: str, eps: float, atol: float, rtol: float, n_directions: int,
                   seed: int) -> None:  # fmt: skip
    """The options of the numerics (``gradcheck``'s and ``check_vjp``'s), checked."""
    arguments.choice(mode, "mode", ("full", "vjp"))
    arguments.real(eps, "eps", 0.0, low_open=True)
    arguments.real(atol, "atol", 0.0)
    arguments.real(rtol, "rtol", 0.0)
    arguments.integer(n_directions, "n_directions", 1)
    arguments.integer(seed, "seed", 0)


def _mismatch(where: str, n: float, a: float, atol: float, rtol: float, atol_text: str,
              count: str) -> str:  # fmt: skip
    return (
        f"{where}: numerical {n:.10g}, analytic {a:.10g}, |difference| {abs(a - n):.3g} > "
        f"tolerance {atol + rtol * abs(n):.3g} (atol {atol_text} + rtol {rtol:g} * |numerical|); "
        f"{count}"
    )


def compare(
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


def float64_on_host(a: Array) -> np.ndarray:
    """The values of ``a`` as a float64 NumPy array."""
    return np.asarray(to_device(a, "cpu"), dtype=np.float64)
