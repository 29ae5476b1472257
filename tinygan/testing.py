"""Property tests for ops, yours and tinygan's: hypothesis strategies and a one-call op test.

Needs hypothesis (``pip install hypothesis``, or ``pip install tinygan[test]``); ``import tinygan``
never imports it. One call turns an op into a property test that pytest collects::

    from tinygan.testing import Domain, op_test

    test_my_log = op_test(my_log, np.log, inputs=[Domain(low=0.0)])

Each example draws the shapes, the values (from a drawn seed, inside each input's ``Domain``) and
a memory layout per input, checks the forward against the NumPy reference in float64 and
float32, and runs ``tinygan.gradcheck`` in both modes (every structural check, layouts and a
float32 run included). Hypothesis shrinks a failure to the smallest shapes and seeds.

Strategies: ``shapes``, ``broadcastable_shapes``, ``seeds``, ``layouts``, ``float_dtypes``,
``arrays`` (values in a ``Domain``: positive, bounded, away from kinks; any layout and dtype).
"""

from __future__ import annotations

import itertools
import linecache
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    from hypothesis import given, note
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError:
    raise ImportError(
        "tinygan.testing needs hypothesis: pip install hypothesis (or pip install tinygan[test])"
    ) from None

from . import arguments
from .gradcheck import gradcheck, gradgradcheck, require_finite, run_dtypes
from .layouts import LAYOUTS, as_layout, distinct_layouts
from .tensor import Tensor

Shape = tuple[int, ...]

__all__ = [
    "LAYOUTS", "Domain", "arrays", "broadcastable_shapes", "check_op", "float_dtypes", "layouts",
    "op_test", "seeds", "shapes", "values",
]  # fmt: skip

seeds = st.integers(0, 2**32 - 1)
"""Seeds for ``numpy.random.default_rng``: the contents of arrays are drawn from one of these, so
hypothesis draws and shrinks one integer instead of every element."""


def shapes(
    min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 4
) -> st.SearchStrategy[Shape]:
    """Array shapes, 0-d and size-1 axes included (``min_side=0`` allows empty arrays)."""
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )


def broadcastable_shapes(
    n: int = 2, min_dims: int = 0, max_dims: int = 3, max_side: int = 4
) -> st.SearchStrategy[tuple[Shape, ...]]:
    """``n`` shapes that broadcast together (some with fewer dims, some with size-1 axes)."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=n, min_dims=min_dims, max_dims=max_dims, max_side=max_side
    ).map(lambda s: s.input_shapes)


_ANY_SHAPE = shapes()


def layouts(ndim: int | None = None) -> st.SearchStrategy[str]:
    """A memory layout name from ``LAYOUTS`` (C, Fortran order, transposed, strided, reversed).

    With ``ndim``, only the layouts that differ at that number of dimensions (C always).
    """
    names = LAYOUTS if ndim is None else ("C", *distinct_layouts(ndim))
    return st.sampled_from(names)


def float_dtypes() -> st.SearchStrategy[np.dtype]:
    """float64 or float32 (float64 first: it is what hypothesis shrinks to)."""
    return st.sampled_from([np.dtype(np.float64), np.dtype(np.float32)])


@dataclass(frozen=True)
class Domain:
    """Where an op's input values may lie.

    Parameters
    ----------
    low, high : float, optional
        Bounds; values stay at least ``margin`` inside them (``low=0.0``: positive values, for
        log or sqrt). With both, values are uniform in ``[low + margin, high - margin]``; with
        one, ``margin`` plus the absolute value of a normal draw beyond it; with none, normal.
    kinks : sequence of float
        Points where the op is not differentiable (0 for relu): values are kept at least
        ``margin`` away from each. Kinks must be more than ``4 * margin`` apart, and a kink
        between the bounds at least ``2 * margin`` from each (else moving a value away from it
        could put it next to another kink or outside the bounds).
    margin : float
        At least 0.
    scale : float
        Standard deviation of the normal draws, above 0.
    """

    low: float | None = None
    high: float | None = None
    kinks: tuple[float, ...] = ()
    margin: float = 0.1
    scale: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.kinks, str) or not isinstance(self.kinks, Sequence):
            raise TypeError(f"Domain: kinks must be a sequence of numbers; got {self.kinks!r}")
        kinks = tuple(arguments.real(k, f"Domain: kinks[{i}]") for i, k in enumerate(self.kinks))
        object.__setattr__(self, "kinks", kinks)
        lo, hi, m = self.low, self.high, arguments.real(self.margin, "Domain: margin", 0.0)
        arguments.real(self.scale, "Domain: scale", 0.0, low_open=True)
        for bound in ("low", "high"):
            if getattr(self, bound) is not None:
                arguments.real(getattr(self, bound), f"Domain: {bound}")
        if lo is not None and hi is not None and hi - lo <= 2 * m:
            raise ValueError(f"Domain: high - low must exceed 2 * margin; got {self}")
        ordered = sorted(kinks)
        if any(b - a <= 4 * m for a, b in itertools.pairwise(ordered)):
            raise ValueError(f"Domain: kinks must be more than 4 * margin apart; got {self}")
        for k in kinks:
            if (lo is not None and lo < k < lo + 2 * m) or (hi is not None and hi - 2 * m < k < hi):
                raise ValueError(
                    f"Domain: kink {k} lies within 2 * margin of a bound (values moved away "
                    f"from it could leave the bounds); got {self}"
                )

    def sample(self, seed: int, shape: Shape, dtype: Any = np.float64) -> np.ndarray:
        """Values in this domain, drawn from ``numpy.random.default_rng(seed)``."""
        rng = np.random.default_rng(seed)
        lo, hi, m = self.low, self.high, self.margin
        if lo is not None and hi is not None:
            x = rng.uniform(lo + m, hi - m, shape)
        else:
            x = self.scale * rng.standard_normal(shape)
            if lo is not None:
                x = lo + m + np.abs(x)
            elif hi is not None:
                x = hi - m - np.abs(x)
        for k in self.kinks:
            d = x - k
            x = np.where(np.abs(d) < m, k + np.where(d >= 0, 1, -1) * (np.abs(d) + m), x)
        return np.asarray(x, dtype=dtype)


def values(
    seed: int,
    shape: Shape,
    *,
    low: float | None = None,
    high: float | None = None,
    kinks: Sequence[float] = (),
    margin: float = 0.1,
    scale: float = 1.0,
    dtype: Any = np.float64,
) -> np.ndarray:
    """``Domain(low, high, kinks, margin, scale).sample(seed, shape, dtype)``, in one call."""
    return Domain(low, high, tuple(kinks), margin, scale).sample(seed, shape, dtype)


def arrays(
    shape: Shape | st.SearchStrategy[Shape],
    domain: Domain = Domain(),
    *,
    dtype: Any = np.float64,
    layout: str | st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[np.ndarray]:
    """Arrays of ``shape`` with values in ``domain`` (drawn from a seed), in a memory layout.

    Parameters
    ----------
    shape : tuple of int, or a strategy of them
    domain : Domain
    dtype : dtype, or a strategy of them (``float_dtypes()``)
    layout : str, or a strategy of them; default any of ``LAYOUTS``
    """

    def build(draw: Callable) -> np.ndarray:
        s = draw(shape) if isinstance(shape, st.SearchStrategy) else tuple(shape)
        dt = draw(dtype) if isinstance(dtype, st.SearchStrategy) else dtype
        if layout is None:
            lay = draw(layouts())
        else:
            lay = draw(layout) if isinstance(layout, st.SearchStrategy) else layout
        return as_layout(domain.sample(draw(seeds), s, dt), lay)

    return st.composite(build)()


# ---- the one-call op test -------------------------------------------------------------------
FORWARD_TOL = {np.dtype(np.float64): (1e-12, 1e-10), np.dtype(np.float32): (1e-5, 1e-4)}
"""(atol, rtol) of the forward against the reference, by dtype."""


def check_op(
    fn: Callable[..., Tensor],
    arrays: Sequence[np.ndarray],
    reference: Callable[..., Any] | None = None,
    params: dict[str, Any] | None = None,
    *,
    modes: Sequence[str] = ("full", "vjp"),
    second_order: bool = False,
    **gradcheck_options: Any,
) -> None:
    """Check an op on given inputs: forward against ``reference``, then ``gradcheck``.

    Parameters
    ----------
    fn : callable
        ``fn(*tensors, **params) -> Tensor``.
    arrays : sequence of numpy.ndarray
        The op's differentiable inputs (float, finite; any memory layout); a single array is the
        one input.
    reference : callable, optional
        ``reference(*arrays, **params) -> array``, in NumPy. Compared in float64 (``FORWARD_TOL``)
        and, on the inputs rounded to float32, with the op run in float32 (unless
        ``gradcheck_options`` has ``dtypes`` without float32).
    params : dict, optional
        Keyword arguments for ``fn`` and ``reference`` (options, constants, integer targets).
    modes : sequence of {"full", "vjp"}
        ``gradcheck`` runs once in each; after the first, without repeating the layout and
        float32 runs (unless ``gradcheck_options`` sets them).
    second_order : bool
        Also run ``gradgradcheck`` (the second derivatives, through ``create_graph``) in the
        last of ``modes``, in float64.
    **gradcheck_options
        Passed to ``gradcheck`` (``eps``, ``atol``, ``rtol``, ``dtypes``, ...).

    Raises
    ------
    AssertionError
        From the forward comparison, or ``GradcheckError``.
    TypeError, ValueError
        Before any check: an input that is not a float NumPy array or holds NaN or infinite
        values, ``params`` not a dict, ``modes`` empty or unknown, ``dtypes`` not a subset of
        float64 and float32.
    """
    __tracebackhide__ = True  # pytest: show the failure, not this function's source
    arrays = [arrays] if isinstance(arrays, np.ndarray) else arrays
    if not isinstance(arrays, Sequence):
        raise TypeError(f"check_op: arrays must be a sequence of arrays; got {arrays!r}")
    for k, a in enumerate(arrays):
        if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
            what = f"{a.dtype} array" if isinstance(a, np.ndarray) else type(a).__name__
            raise TypeError(f"check_op: arrays[{k}] must be a float NumPy array; got {what}")
        require_finite(a, f"check_op: arrays[{k}]")
    if params is not None and not isinstance(params, dict):
        raise TypeError(f"check_op: params must be a dict; got {type(params).__name__}")
    params = params or {}
    _check_modes(modes)
    dtypes = run_dtypes(gradcheck_options.get("dtypes", ("float64", "float32")))
    if reference is not None:
        for dtype in dtypes:
            xs = [np.asarray(a, dtype) for a in arrays]
            out = fn(*(Tensor(x) for x in xs), **params)
            want = np.asarray(reference(*(x.astype(np.float64) for x in xs), **params))
            assert out.dtype == dtype, f"forward: {dtype} inputs gave a {out.dtype} output"
            atol, rtol = FORWARD_TOL[dtype]
            np.testing.assert_allclose(
                out.numpy(), want, rtol=rtol, atol=atol, err_msg=f"forward ({dtype})"
            )
    for k, mode in enumerate(modes):
        tensors = [Tensor(np.asarray(a, np.float64), requires_grad=True) for a in arrays]
        options = dict(gradcheck_options)
        if k:
            options.setdefault("layouts", False)
            options.setdefault("dtypes", ("float64",))
        gradcheck(lambda *ts: fn(*ts, **params), tensors, mode=mode, **options)
    if second_order:
        tensors = [Tensor(np.asarray(a, np.float64), requires_grad=True) for a in arrays]
        options = {"layouts": False, "dtypes": ("float64",), **gradcheck_options}
        gradgradcheck(lambda *ts: fn(*ts, **params), tensors, mode=modes[-1], **options)


def _check_modes(modes: Sequence[str]) -> None:
    if isinstance(modes, str) or not modes or any(m not in ("full", "vjp") for m in modes):
        raise ValueError(f"modes must be a non-empty sequence of 'full' and 'vjp'; got {modes!r}")


def _shown(a: np.ndarray, limit: int = 64) -> str:
    """``a``'s values to paste back (each the shortest decimal that reads back the same float)
    if it has at most ``limit`` elements; else its corners, smallest and largest value."""
    if a.size <= limit:
        text = np.array2string(
            a, max_line_width=100, separator=", ", floatmode="unique", prefix="np.array("
        )
        return f"np.array({text})"
    corners = np.array2string(a, separator=", ", threshold=0, edgeitems=2, precision=4)
    return f"{corners} (min {a.min():.6g}, max {a.max():.6g})"


def op_test(
    fn: Callable[..., Tensor],
    reference: Callable[..., Any] | None = None,
    *,
    inputs: int | Sequence[Domain] = 1,
    shapes: st.SearchStrategy | None = None,
    params: Callable[[tuple[Shape, ...]], st.SearchStrategy[dict]] | None = None,
    layouts: Sequence[str] = LAYOUTS,
    modes: Sequence[str] = ("full", "vjp"),
    second_order: bool = False,
    **gradcheck_options: Any,
) -> Callable[[], None]:
    """Turn an op into a hypothesis property test (assign it to a ``test_...`` name).

    Each example draws one shape per input, then per input a seed and a memory layout, and runs
    ``check_op``: the forward against ``reference`` (float64 and float32) and ``gradcheck`` in
    each of ``modes``.

    Parameters
    ----------
    fn : callable
        ``fn(*tensors, **params) -> Tensor``.
    reference : callable, optional
        NumPy version of ``fn``: ``reference(*arrays, **params)``.
    inputs : int or sequence of Domain
        How many differentiable inputs ``fn`` takes (values from ``Domain()``), or each one's
        ``Domain``.
    shapes : strategy, optional
        Draws a tuple with one shape per input (``broadcastable_shapes(2)`` for a binary op); for
        one input it may draw a shape. Default: one shape from ``shapes()`` for every input.
    params : callable, optional
        ``params(shapes) -> strategy of dict``: the keyword arguments of ``fn`` and
        ``reference`` for the drawn shapes (a dim that exists, integer targets, ...).
    layouts : sequence of str
        The memory layouts drawn for the inputs.
    modes : sequence of {"full", "vjp"}
    second_order : bool
        Also check the second derivatives (``gradgradcheck``; see ``check_op``).
    **gradcheck_options
        Passed to ``gradcheck``.

    Returns
    -------
    callable
        A test function taking no arguments, run by pytest (or by calling it). A failure names
        it (the name it is assigned to, else the test function that called ``op_test``), where
        ``op_test`` was called, and the drawn inputs' values.

    Raises
    ------
    TypeError, ValueError
        At once, for arguments that cannot make a test (``inputs`` not a positive int or a
        sequence of ``Domain``, ``shapes`` not a strategy, an unknown layout or mode, ...).
    """
    if isinstance(inputs, bool) or not isinstance(inputs, (int, Sequence)):
        raise TypeError(f"op_test: inputs must be an int or a sequence of Domain; got {inputs!r}")
    domains = [Domain()] * inputs if isinstance(inputs, int) else list(inputs)
    if not domains or not all(isinstance(d, Domain) for d in domains):
        raise ValueError(f"op_test: inputs must be an int >= 1 or Domains; got {inputs!r}")
    if shapes is not None and not isinstance(shapes, st.SearchStrategy):
        raise TypeError(f"op_test: shapes must be a hypothesis strategy; got {shapes!r}")
    if isinstance(layouts, str) or not layouts or any(k not in LAYOUTS for k in layouts):
        raise ValueError(f"op_test: layouts must be a non-empty subset of {LAYOUTS}; got {layouts}")
    _check_modes(modes)
    run_dtypes(gradcheck_options.get("dtypes", ("float64", "float32")))
    origin, name = _caller(fn)
    n = len(domains)
    shape_strategy = shapes if shapes is not None else _ANY_SHAPE.map(lambda s: (s,) * n)
    layout_strategy = st.sampled_from(list(layouts))

    def test(data: st.DataObject) -> None:
        __tracebackhide__ = True
        drawn = data.draw(shape_strategy, label="shapes")
        if n == 1 and all(isinstance(k, int) for k in drawn):
            drawn = (tuple(drawn),)
        if len(drawn) != n:
            raise ValueError(f"op_test: the shapes strategy drew {drawn!r} for {n} inputs")
        kwargs = data.draw(params(drawn), label="params") if params is not None else {}
        arrays, drawn_layouts = [], []
        for k, (domain, shape) in enumerate(zip(domains, drawn)):
            seed = data.draw(seeds, label=f"seed of input {k}")
            drawn_layouts.append(data.draw(layout_strategy, label=f"layout of input {k}"))
            arrays.append(as_layout(domain.sample(seed, shape), drawn_layouts[-1]))
        try:
            check_op(
                fn, arrays, reference, kwargs, modes=modes, second_order=second_order,
                **gradcheck_options,
            )  # fmt: skip
        except Exception:
            note(f"{name}: the test made by op_test(...) at {origin}, on the drawn inputs:")
            for k, (a, lay) in enumerate(zip(arrays, drawn_layouts)):
                note(f"input {k} (shape {a.shape}, {a.dtype}, layout {lay!r}): {_shown(a)}")
            raise

    test.__name__ = test.__qualname__ = name
    return given(data=st.data())(test)


def _caller(fn: Callable) -> tuple[str, str]:
    """Where ``op_test`` was called (``file:line``), and the name of the test it makes: the
    ``test...`` name assigned on that line, else the test function that called it, else
    ``test_<fn's name>``."""
    code, line = sys._getframe(2).f_code, sys._getframe(2).f_lineno
    assigned = re.match(r"\s*(test\w*)\s*=", linecache.getline(code.co_filename, line))
    name = getattr(fn, "__name__", "")
    if assigned:
        name = assigned[1]
    elif code.co_name.startswith("test"):
        name = code.co_name
    else:
        name = f"test_{name if name.isidentifier() else 'op'}"
    return f"{code.co_filename}:{line}", name
