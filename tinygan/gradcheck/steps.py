"""The named steps of ``gradcheck``, each a function of a ``Checker`` (which runs ``fn`` on
fresh copies of the inputs and records what fails): ``structure`` (the float64 run: backward runs,
gradient shapes and dtypes, no input or upstream gradient modified, no gradient sharing memory
with them, a zero upstream gradient adds nothing, a second backward adds the same), ``layouts``
(the same gradients for inputs in other memory layouts), ``float32`` (a float32 run keeps
float32) and ``numerics`` (finite differences, ``numerics.check_vjp``, per input).
"""

from __future__ import annotations

import os
import sysconfig
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import get_array_module, is_array
from ..function import no_grad
from ..layouts import DESCRIPTIONS, as_layout, distinct_layouts
from ..tensor import Tensor
from .numerics import STREAM, check_vjp, compare, float64_on_host
from .report import Failure, GradcheckReport

Array = Any  # numpy.ndarray or cupy.ndarray

_TINYGAN = Path(__file__).parents[1]
_ENGINE = {str(Path(__file__).with_name(f)) for f in ("__init__.py", "steps.py", "numerics.py")}
_ENGINE |= {str(_TINYGAN / f) for f in ("tensor.py", "function.py")}  # the checker, the engine
_LIBRARIES = {sysconfig.get_path(k) for k in ("stdlib", "purelib", "platlib")}
_NOT_USER = tuple(os.path.join(d, "") for d in {str(_TINYGAN), *_LIBRARIES})


def user_error(e: BaseException) -> str:
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
class Run:
    """One call of ``fn`` (and its backward): arguments, output, upstream gradient, grads, and
    what went wrong (the report line, and the exception ``fn`` or its backward raised)."""

    args: list[Any]
    out: Any = None
    upstream: Array = None
    grads: dict[int, Array] = field(default_factory=dict)
    error: str | None = None
    exception: BaseException | None = None

    def caught(self, e: BaseException) -> Run:
        self.error, self.exception = user_error(e), e
        return self


class Checker:
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
            if isinstance(x, Tensor) or is_array(x):
                xp = get_array_module(data)
                data = data.astype(dtype) if data.dtype.kind == "f" else xp.array(data, copy=True)
                if i in layouts:
                    data = as_layout(data, layouts[i])
            if isinstance(x, Tensor):
                data = Tensor(data, requires_grad=i in leaves)
            out.append(data)
        return out

    def forward(self, dtype: Any, leaves: Sequence[int], layouts: dict | None = None) -> Run:
        r = Run(self.args(dtype, leaves, layouts))
        try:
            r.out = self.fn(*r.args)
        except Exception as e:  # a user's op may raise anything: report it
            return r.caught(e)
        if (wrong := not_a_tensor(r.out)) is not None:
            r.error = wrong
        elif r.out.dtype != dtype:
            r.error = f"TypeError: the output is {r.out.dtype} for {dtype} inputs"
        elif not r.out.requires_grad:
            r.error = "RuntimeError: the output does not depend on any input that requires grad"
        return r

    def backward(self, r: Run, u: Array, retain: bool = False) -> Run:
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

    def blame(self, dtype: Any, u: Array, leaves: list[int], what: str, failed: Run,
              retain: bool) -> Run | None:  # fmt: skip
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


_ZERO = "a zero upstream gradient gave a nonzero grad"
_SECOND = (
    "a second backward through the same graph did not add the same grad (does backward modify "
    "what forward saved?)"
)
_UPSTREAM = (
    "backward modified the upstream gradient in place (where that array also feeds another "
    "branch of a graph, that branch's gradient comes out wrong)"
)


def not_a_tensor(out: Any) -> str | None:
    """Why ``fn``'s output ``out`` is not a Tensor (None if it is one)."""
    if isinstance(out, Tensor):
        return None
    return f"TypeError: fn must return a Tensor; got {type(out).__name__}"


# ---- the steps --------------------------------------------------------------------------------
def structure(checker: Checker, seed: int) -> tuple[Array, dict[int, Array]] | None:
    """The float64 run of ``fn`` and its backward with a random upstream gradient ``u`` (from
    ``seed``), where each input that makes it fail is tried alone and blamed; then the checks of
    its gradients: shapes and dtypes, the inputs and ``u`` left unchanged, no gradient sharing
    memory with them, a zero upstream gradient adding nothing and a second backward adding the
    same again. ``(u, the usable gradients by input)``, or None if ``fn`` itself fails."""
    f64 = np.dtype(np.float64)
    checked = checker.report.checked
    main = checker.forward(f64, checked)
    if main.error is not None:
        checker.fail("forward", None, f"fn on float64 inputs: {main.error}", main.exception)
        return None
    xp = get_array_module(main.out.data)
    u = xp.asarray(np.random.default_rng((seed, STREAM)).standard_normal(main.out.shape))
    checker.backward(main, u.copy(), retain=True)
    if main.error is not None:
        main = checker.blame(f64, u, checked, "backward", main, retain=True)
    if main is None:
        return u, {}
    grads = _well_formed(checker, main, f64)
    _unchanged_and_unshared(checker, main, u)
    _repeat(checker, main, u, grads)
    return u, grads


def _well_formed(checker: Checker, run: Run, dtype: Any, tag: str = "") -> dict[int, Array]:
    """The gradients of ``run`` that have their input's shape and ``dtype``; a failure for each
    of the others."""
    grads = {}
    for i, g in run.grads.items():
        shape = checker.inputs[i].shape
        if g.shape != shape or g.dtype != dtype:
            check = "shape" if g.shape != shape else "dtype"
            message = f"{tag}grad is {g.shape} {g.dtype}, input is {shape} {dtype}"
            checker.fail(check, i, f"input {i}: {message}")
        else:
            grads[i] = g
    return grads


def _unchanged_and_unshared(checker: Checker, main: Run, u: Array) -> None:
    """Purity (``fn`` and its backward leave the inputs alone), the upstream gradient ``u``
    left alone (blaming the inputs whose backward alone changes it), aliasing (no gradient
    shares memory with an input or ``u``)."""
    xp = get_array_module(u)
    dtype = np.dtype(np.float64)
    for k, (a, b) in enumerate(zip(main.args, checker.args(dtype))):
        a, b = (a.data, b.data) if isinstance(a, Tensor) else (a, b)
        if is_array(a) and not xp.array_equal(a, b, equal_nan=True):
            checker.fail("purity", k, f"input {k} was modified by fn or its backward")
    if not xp.array_equal(main.upstream, u):
        leaves = list(main.grads)
        culprits = [
            i for i in leaves if not xp.array_equal(checker.run(dtype, u.copy(), [i]).upstream, u)
        ]
        for i in culprits or [None]:
            checker.fail("upstream", i, _UPSTREAM if i is None else f"input {i}: {_UPSTREAM}")
    for i, g in main.grads.items():
        others = [
            (f"input {k}'s data", a.data if isinstance(a, Tensor) else a)
            for k, a in enumerate(main.args)
        ]
        for name, other in [*others, ("the upstream gradient", main.upstream)]:
            if is_array(other) and xp.shares_memory(g, other):
                checker.fail("aliasing", i, f"input {i}: grad shares memory with {name}")


def _repeat(checker: Checker, main: Run, u: Array, grads: dict[int, Array]) -> None:
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
            error = user_error(e)
            for i in leaves:
                checker.fail(check, i, f"input {i}: {check} failed: {error}", e)
            return
        for i in leaves:
            g = main.args[i].grad
            g = xp.zeros_like(main.args[i].data) if g is None else g  # no gradient flowed
            added = g if before[i] is None else g - before[i]
            if check == "zero upstream" and xp.any(added != 0):
                zero_added[i] = float(xp.abs(added).max())
                checker.fail(check, i, f"input {i}: {_ZERO} (max |grad| {zero_added[i]:.3g})")
            elif check == "second backward" and i not in zero_added:
                same = xp.array_equal(g, 2 * grads[i])
                if not same:
                    checker.fail(check, i, f"input {i}: {_SECOND}")


def layouts(checker: Checker, u: Array, grads: dict[int, Array], atol: float, rtol: float) -> None:
    """The same float64 grads with the inputs and the upstream gradient ``u`` in every other
    memory layout: all of them at once per layout, then one at a time where a grad differs, to
    name the cause."""
    found: dict[int, tuple[str, Any]] = {}
    for lay in ("F", "transposed", "strided", "reversed"):
        causes: list = [i for i in grads if lay in distinct_layouts(checker.inputs[i].ndim)]
        causes += [None] if lay in distinct_layouts(u.ndim) else []
        together = _relaid(checker, u, grads, lay, causes, (atol, rtol)) if causes else {}
        if not together:
            continue
        name = DESCRIPTIONS[lay]
        for cause in causes:
            what = "the upstream gradient" if cause is None else f"input {cause}"
            alone = together
            if len(causes) > 1:
                alone = _relaid(checker, u, grads, lay, [cause], (atol, rtol))
            for j, (why, e) in alone.items():
                found.setdefault(j, (f"when {what} is {name}: {why}", e))
        for j, (why, e) in together.items():  # only all of them together
            found.setdefault(j, (f"when all are {name}: {why}", e))
    for j, (message, e) in sorted(found.items()):
        checker.fail("layout", j, f"input {j}: the gradient differs {message}", e)


def _relaid(checker: Checker, u: Array, grads: dict, lay: str, causes: list, tol) -> dict:
    """The grads that differ from ``grads`` when the inputs in ``causes`` (None: the upstream
    gradient) are in layout ``lay``: ``{input: (why, the exception raised or None)}``."""
    up = as_layout(u, lay) if None in causes else u.copy()
    r = checker.run(
        np.dtype(np.float64), up, list(grads), {i: lay for i in causes if i is not None}
    )
    out = {}
    for j, g in grads.items():
        if r.error:
            out[j] = f"backward failed: {r.error}", r.exception
        elif bad := compare(float64_on_host(g), float64_on_host(r.grads[j]), *tol):
            name = DESCRIPTIONS[lay]
            out[j] = bad.replace("numerical", "C order").replace("analytic", name), None
    return out


def float32(checker: Checker, u: Array) -> dict[int, Array]:
    """The float32 run, with ``u`` in float32 (each input that makes it fail tried alone and
    blamed): its gradients that are float32 and of their input's shape."""
    f32 = np.dtype(np.float32)
    u32, checked = u.astype(f32), checker.report.checked
    run = checker.run(f32, u32.copy(), checked)
    if run.error is not None:
        run = checker.blame(f32, u32, checked, "float32 run", run, retain=False)
    return {} if run is None else _well_formed(checker, run, f32, tag="float32 run: ")


def numerics(
    checker: Checker,
    u: Array,
    grads: dict[int, Array],
    grads32: dict[int, Array],
    *,
    eps: float,
    atol: float,
    rtol: float,
    mode: str,
    n_directions: int,
    seed: int,
    float32_tol: tuple[float, float],
) -> None:
    """Finite differences of ``fn`` in float64 against each input's analytic gradient
    (``numerics.check_vjp``): the float64 one in ``grads`` within ``atol``/``rtol``, then the
    float32 one in ``grads32`` within ``float32_tol`` (alone where there is no float64 one)."""
    f64 = np.dtype(np.float64)
    copies = any(x.check == "purity" for x in checker.report.failures)  # fn writes its inputs
    base_args = checker.args(f64)
    for i in checker.report.checked:
        analytic = grads.get(i)
        if analytic is None and i not in grads32:
            continue

        def f(xi: Array, i: int = i) -> Array:
            args = checker.args(f64) if copies else list(base_args)
            args[i] = Tensor(xi.copy() if copies else xi)
            with no_grad():
                return checker.fn(*args).data

        x = base_args[i].data  # unchanged: fn writes no input, or f gives it fresh copies
        head = f"input {i} (shape {tuple(x.shape)}), "
        try:
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
        except Exception as e:  # fn at x +- eps: a user's op may raise anything, report it
            checker.fail("numerics", i, f"{head}fn failed at a shifted input: {user_error(e)}", e)
            continue
        if analytic is not None and not check.ok:
            checker.fail(check.check, i, head + check.message)
        checker.report.notes += [head + n for n in check.notes]
        if i in grads32 and (analytic is None or check.ok):  # float32 alone, not twice
            unit = "element" if mode == "full" else "direction"
            atol32, rtol32 = float32_tol
            atol_each = atol32 * (1 + check.magnitude)
            bad = compare(check.numerical, check.project(grads32[i]), atol_each, rtol32,
                          check.excused, unit, f"{atol32:g} * (1 + magnitude)")  # fmt: skip
            if bad:
                checker.fail("float32", i, f"{head}float32 run: {bad}")
