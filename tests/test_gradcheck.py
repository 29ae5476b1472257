"""The gradient checker passes correct ops at every size and catches each way a backward goes wrong.

The zoos live in tests/gradcheck_zoo.py. Full mode costs 2 calls of the op per input element
(about a second per 100 x 100 input here), so the biggest sizes run for a few ops only;
``python bench/bench_gradcheck.py numerics`` sweeps the whole correct zoo up to 200 x 200.
"""

from __future__ import annotations

import inspect
import traceback

import numpy as np
import pytest
from hypothesis import given

import tinygan as tg
from tests.gradcheck_zoo import CORRECT, PLANTED, Square, WrongScale
from tinygan.gradcheck import GradcheckReport, check_vjp
from tinygan.layouts import as_layout
from tinygan.testing import seeds, shapes, values


def _x(shape=(3, 4), seed=0):
    return tg.tensor(values(seed, shape), requires_grad=True)


def _report(fn, arrays, **options) -> GradcheckReport:
    xs = [tg.tensor(a, requires_grad=True) for a in arrays]
    return tg.gradcheck(fn, xs, raise_exception=False, **options)


# ---- planted bugs: caught, the right input blamed -----------------------------------------
# At 100 x 100, full mode (a second or more per input here) where only it can catch the bug, or
# where an innocent input must survive it; vjp mode catches the others as surely, and cheaply.
FULL_AT_100 = ("1% off on one element", "bias add reduced over the wrong axis",
               "wrong subgradient at a kink")  # fmt: skip
CASES = [(name, 6, "full") for name in PLANTED]
CASES += [(name, 6, "vjp") for name in PLANTED if name != "wrong subgradient at a kink"]
CASES += [(n, 100, "full" if n in FULL_AT_100 else "vjp") for n in PLANTED]


@pytest.mark.parametrize("name, n, mode", CASES)
def test_planted_bug_is_caught_and_blames_the_right_input(name, n, mode):
    bug = PLANTED[name]
    report = _report(lambda *a: bug.op()(*a), bug.inputs(n, np.random.default_rng(0)), mode=mode)
    assert not report.ok
    assert report.blamed == [bug.blamed], str(report)
    assert any(f.check == bug.check and f.input == bug.blamed for f in report.failures), str(report)


def test_the_wrong_subgradient_is_reported_as_not_differentiable_near_its_element():
    bug = PLANTED["wrong subgradient at a kink"]
    with pytest.raises(tg.GradcheckError) as err:
        tg.gradcheck(lambda t: bug.op()(t), [tg.tensor(bug.inputs(6, np.random.default_rng(0))[0],
                                                       requires_grad=True)])  # fmt: skip
    msg = str(err.value)
    assert "not differentiable near element (" in msg
    assert "one-sided derivatives" in msg and "is not between them" in msg


def test_vjp_mode_says_it_cannot_judge_a_line_through_kinks():
    bug = PLANTED["wrong subgradient at a kink"]
    report = _report(lambda t: bug.op()(t), bug.inputs(6, np.random.default_rng(0)), mode="vjp")
    assert report.ok and any("cannot judge" in n for n in report.notes), str(report)


# ---- correct ops: no false alarm ---------------------------------------------------------
@pytest.mark.parametrize("name", CORRECT)
@pytest.mark.parametrize("n, mode", [(6, "full"), (6, "vjp"), (100, "vjp")])
def test_correct_op_passes(name, n, mode):
    fn, arrays = CORRECT[name](n, np.random.default_rng(n))
    report = _report(fn, arrays, mode=mode)
    assert report.ok, str(report)


def test_the_issue_s_false_alarm_is_gone():
    """Full mode at 100 x 100 failed tanh at element (39, 7), inputs from default_rng(0), before
    the fix (the innocent input of a bias add passes too: see the planted bias add above)."""
    x = tg.tensor(np.random.default_rng(0).standard_normal((100, 100)), requires_grad=True)
    assert tg.gradcheck(lambda t: tg.tanh(t), [x], layouts=False, dtypes=("float64",))


KINKS = [-1.5, 0.0, 0.7, 1.0, 0.0, 2.0]


@pytest.mark.parametrize(
    "op, x, noted",
    [(tg.relu, KINKS, True), (lambda t: tg.leaky_relu(t, 0.1), KINKS, True),
     (lambda t: tg.clip(t, 0.0, 1.0), KINKS, True),
     # These take the mean of the one-sided slopes, which the central difference sees:
     (tg.abs, KINKS, False), (lambda t: tg.maximum(t, 0.0), KINKS, False),
     (lambda t: tg.amax(t.reshape(3, 2), 1), [1.0, 1.0, 0.5, -2.0, 0.3, 0.3], False)],
)  # fmt: skip
def test_correct_ops_pass_at_their_kinks_and_say_so(op, x, noted):
    for mode in ("full", "vjp"):
        report = _report(op, [np.array(x)], mode=mode)
        assert report.ok, str(report)
        if mode == "full":
            assert any("not differentiable there" in n for n in report.notes) == noted, report


def test_a_kink_within_the_step_but_not_at_the_point_passes():
    x = np.array([3e-7, -4e-7, 1e-9, 0.5])
    assert _report(tg.relu, [x]).ok


@given(shape=shapes(), seed=seeds)
def test_passes_a_correct_user_op(shape, seed):
    x = _x(shape, seed)
    assert tg.gradcheck(lambda t: Square()(t), [x]) is True
    assert tg.gradcheck(lambda t: Square()(t), [x], mode="vjp") is True


# ---- reporting ---------------------------------------------------------------------------
def test_every_failing_input_is_listed_with_its_worst_element():
    def fn(a, b, c):
        return WrongScale()(a) + tg.tanh(b) + PLANTED["1% off on one element"].op()(c)

    arrays = [values(k, (6, 6)) for k in range(3)]
    report = _report(fn, arrays)
    assert report.blamed == [0, 2]
    numerical = [f for f in report.failures if f.check == "numerical"]
    assert [f.input for f in numerical] == [0, 2]
    assert "input 2 (shape (6, 6)), element (3, 2): numerical" in numerical[1].message
    with pytest.raises(tg.GradcheckError) as err:
        tg.gradcheck(fn, [tg.tensor(a, requires_grad=True) for a in arrays])
    assert err.value.report.blamed == [0, 2]
    assert "input 0 (shape (6, 6))" in str(err.value) and "input 2 (shape (6, 6))" in str(err.value)


def test_structural_failures_come_before_numerical_ones():
    report = _report(lambda t: PLANTED["ignores the upstream gradient"].op()(t), [values(0, (4,))])
    assert [f.check for f in report.failures] == ["zero upstream", "numerical"]


def test_failure_message_names_input_index_values_and_tolerance():
    x, y = _x((2, 3)), _x((2, 3), 1)
    with pytest.raises(tg.GradcheckError) as err:
        tg.gradcheck(lambda p, q: p + WrongScale()(q), [x, y])
    msg = str(err.value)
    assert "input 1 (shape (2, 3)), element (" in msg
    for word in ("numerical", "analytic", "tolerance", "atol", "rtol"):
        assert word in msg


def test_raise_exception_false_returns_the_report():
    ok = tg.gradcheck(lambda t: Square()(t), [_x()], raise_exception=False)
    assert isinstance(ok, GradcheckReport) and ok and ok.failures == [] and ok.checked == [0]
    bad = tg.gradcheck(lambda t: WrongScale()(t), [_x()], raise_exception=False)
    assert not bad and bad.blamed == [0] and "gradcheck failed" in str(bad)


# ---- options and inputs ------------------------------------------------------------------
def test_float32_inputs_are_checked_against_float64_numerics():
    x = tg.tensor(values(0, (3, 4)).astype(np.float32), requires_grad=True)
    assert tg.gradcheck(tg.tanh, [x])
    assert x.grad is None and x.dtype == np.float32


def test_float32_tolerance_follows_the_terms_summed_not_the_gradient():
    """log_softmax ignores a constant added to a row, so q's gradient is 0, a cancellation of
    terms of size 1 that float32 leaves at about 1e-6 (a tolerance relative to |grad| failed)."""

    def f(p, q):
        return tg.log_softmax(tg.leaky_relu(p * q, 0.2) @ q.reshape(4, 1) + p, 1).sum(0)

    for mode in ("full", "vjp"):
        assert _report(f, [values(0, (3, 4)), values(1, (4,))], mode=mode).ok


def test_dtypes_float64_only_skips_the_float32_run():
    bug = PLANTED["right only in float64"]
    arrays = bug.inputs(6, np.random.default_rng(0))
    assert _report(lambda t: bug.op()(t), arrays, dtypes=("float64",)).ok
    assert not _report(lambda t: bug.op()(t), arrays).ok


def test_layouts_false_skips_the_layout_runs():
    bug = PLANTED["right only for C-contiguous inputs"]
    arrays = bug.inputs(6, np.random.default_rng(0))
    assert _report(lambda t: bug.op()(t), arrays, layouts=False).ok


def test_refuses_bad_arguments():
    with pytest.raises(ValueError, match="only float32 and float64"):
        tg.gradcheck(lambda t: t * 2, [tg.tensor(np.ones(2, np.float16), requires_grad=True)])
    with pytest.raises(ValueError, match="requires_grad"):
        tg.gradcheck(lambda t: t * 2, [tg.tensor(np.ones(2))])
    with pytest.raises(ValueError, match="mode"):
        tg.gradcheck(lambda t: t * 2, [_x()], mode="fast")
    with pytest.raises(ValueError, match="dtypes"):
        tg.gradcheck(lambda t: t * 2, [_x()], dtypes=("float16",))


def test_passes_through_constants_and_leaves_the_callers_tensors_alone():
    x, c = _x(), tg.tensor(np.arange(12.0).reshape(3, 4))
    x.grad = np.full(x.shape, 7.0)
    before = x.data.copy()
    assert tg.gradcheck(lambda t, k, scale, ks: t * k * scale * ks[0], [x, c, 2.0, [3]])
    np.testing.assert_array_equal(x.grad, 7.0)
    np.testing.assert_array_equal(x.data, before)


def test_an_input_no_gradient_reaches_has_a_zero_gradient():
    report = _report(lambda a, b: a * 2, [values(0, (2, 3)), values(1, (4,))])
    assert report.ok, str(report)


def test_check_vjp_checks_any_array_function():
    """The numerics alone, as a second-order check will use them (f: array -> array)."""
    x, u = values(0, (4, 3)), values(1, (4, 3))
    assert check_vjp(np.sin, x, u, np.cos(x) * u).ok
    off = np.cos(x) * u
    off[1, 2] *= 1.01
    result = check_vjp(np.sin, x, u, off)
    assert not result.ok and result.message.startswith("element (1, 2): numerical")
    assert check_vjp(np.sin, x, u, np.cos(x) * u, mode="vjp").ok
    assert not check_vjp(np.sin, x, u, 1.01 * np.cos(x) * u, mode="vjp").ok


# ---- errors that point at the user's line ------------------------------------------------
class RaisesInBackward(tg.Function):
    def forward(self, x):
        return 2 * x

    def backward(self, gy):
        raise ValueError("a bug in the user's backward")


class ReshapesWronglyInBackward(tg.Function):
    def forward(self, x):
        return 2 * x

    def backward(self, gy):
        return gy.reshape(-1, 7)  # raises inside tinygan's Reshape


def _bug(t):
    raise RuntimeError("a bug")


def _line_of(fn, text: str) -> int:
    lines, first = inspect.getsourcelines(fn)
    return first + next(k for k, line in enumerate(lines) if text in line)


def test_an_exception_in_backward_is_chained_and_names_the_user_s_line():
    with pytest.raises(tg.GradcheckError) as err:
        tg.gradcheck(lambda t: RaisesInBackward()(t), [_x()])
    cause = err.value.__cause__
    assert isinstance(cause, ValueError) and str(cause) == "a bug in the user's backward"
    first = traceback.extract_tb(cause.__traceback__)[0]  # the traceback starts at the user's code
    line = _line_of(RaisesInBackward.backward, "raise ValueError")
    assert (first.filename, first.lineno, first.name) == (__file__, line, "backward")
    where = f"(at {__file__}:{line}, in backward)"
    assert f"backward failed: ValueError: a bug in the user's backward {where}" in str(err.value)
    report = _report(lambda t: RaisesInBackward()(t), [values(0, (3,))])
    assert report.failures[0].exception.__class__ is ValueError


def test_an_error_raised_inside_tinygan_names_the_user_s_line_that_called_it():
    with pytest.raises(tg.GradcheckError) as err:
        tg.gradcheck(lambda t: ReshapesWronglyInBackward()(t), [_x((2, 3))])
    line = _line_of(ReshapesWronglyInBackward.backward, "gy.reshape")
    where = f"(at {__file__}:{line}, in backward)"
    assert f"cannot reshape a tensor of shape (2, 3) to (-1, 7) {where}" in str(err.value)
    frames = traceback.extract_tb(err.value.__cause__.__traceback__)
    assert (frames[0].filename, frames[0].name) == (__file__, "backward")


def test_an_exception_in_fn_is_chained():
    def fn(t):
        raise KeyError("no such op")

    with pytest.raises(tg.GradcheckError, match=r"\[forward\] fn on float64 inputs") as err:
        tg.gradcheck(fn, [_x()])
    assert isinstance(err.value.__cause__, KeyError)
    assert traceback.extract_tb(err.value.__cause__.__traceback__)[0].name == "fn"


@pytest.mark.parametrize("mode", ["full", "vjp"])
def test_an_exception_at_a_shifted_input_is_reported_and_chained(mode):
    """(From review: fn raising only at x +- eps, e.g. a domain check near a bound, escaped the
    checker as a bare ValueError, also with raise_exception=False.)"""

    class SafeSqrt(tg.Function):
        def forward(self, x):
            if (x < 0).any():
                raise ValueError("negative input")
            return np.sqrt(x)

        def backward(self, gy):
            return gy * 0.5 / self.output

    x = tg.tensor(np.array([4e-7, 1.0, 2.0]), requires_grad=True)
    report = tg.gradcheck(lambda t: SafeSqrt()(t), [x], mode=mode, raise_exception=False)
    assert not report
    assert "[numerics] input 0 (shape (3,)), fn failed at a shifted input: ValueError: " \
        "negative input (at " in str(report)  # fmt: skip
    with pytest.raises(tg.GradcheckError) as err:
        tg.gradcheck(lambda t: SafeSqrt()(t), [x], mode=mode)
    assert isinstance(err.value.__cause__, ValueError)


# ---- bad inputs and options: refused up front, with what was expected ---------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_refused_not_blamed_on_the_op(bad):
    a = values(0, (2, 3))
    a[1, 2] = bad
    x = tg.tensor(a, requires_grad=True)
    message = rf"input 0 holds 1 non-finite value \(the first {bad} at element \(1, 2\)\)"
    for check in (tg.gradcheck, tg.gradgradcheck):
        with pytest.raises(ValueError, match=message):
            check(lambda t: t * t, [x])
    u = np.ones(3)
    u[0] = bad
    with pytest.raises(ValueError, match="grad_outputs holds 1 non-finite value"):
        tg.gradgradcheck(lambda t: t * t, [_x((3,))], grad_outputs=u)
    masked = np.array([0.0, -np.inf, 0.0])  # a non-finite constant (a mask) is the op's business
    assert tg.gradcheck(lambda t, m: tg.logsumexp(t + m, 0), [_x((3,)), masked])


def test_gradgradcheck_checks_what_fn_returns_and_its_grad_outputs():
    """A tuple was "AttributeError: 'tuple' object has no attribute 'data'"."""
    with pytest.raises(tg.GradcheckError, match="fn must return a Tensor; got tuple"):
        tg.gradgradcheck(lambda t: (t * t, t), [_x()])
    report = tg.gradgradcheck(lambda t: (t * t, t), [_x()], raise_exception=False)
    assert [f.check for f in report.failures] == ["forward"]
    with pytest.raises(tg.GradcheckError, match=r"\[forward\] fn: RuntimeError: a bug") as err:
        tg.gradgradcheck(_bug, [_x()])
    assert isinstance(err.value.__cause__, RuntimeError)
    with pytest.raises(ValueError, match=r"shape \(3, 4\); got float64 of shape \(4,\)"):
        tg.gradgradcheck(lambda t: t * t, [_x()], grad_outputs=np.ones(4))
    with pytest.raises(ValueError, match="got int64 of shape"):
        tg.gradgradcheck(lambda t: t * t, [_x()], grad_outputs=np.ones((3, 4), np.int64))


def test_a_bare_tensor_is_the_one_input():
    """It used to be iterated by rows: fn got two arguments for a (2, 3) tensor."""
    x = _x((2, 3))
    assert tg.gradcheck(lambda t: t * t, x) is True
    assert tg.gradgradcheck(lambda t: t * t * t, x) is True
    for inputs in (x.data, None, "x"):
        with pytest.raises(TypeError, match="inputs must be a Tensor or a sequence"):
            tg.gradcheck(lambda t: t * t, inputs)


@pytest.mark.parametrize(
    "option, message",
    [({"eps": 0.0}, "eps must be a finite number > 0; got 0.0"),
     ({"atol": -1e-7}, "atol must be a finite number >= 0"),
     ({"rtol": np.nan}, "rtol must be a finite number >= 0"),
     ({"mode": "vjp", "n_directions": 0}, "n_directions must be an int >= 1; got 0"),
     ({"float32_tol": 1e-3}, r"float32_tol must be a pair \(atol, rtol\); got 0.001"),
     ({"float32_tol": (1e-4, -1.0)}, r"float32_tol\[1\] must be a finite number >= 0"),
     ({"dtypes": "float64"}, "dtypes must be a non-empty subset")],
)  # fmt: skip
def test_refuses_options_that_would_check_nothing_or_crash(option, message):
    """n_directions=0 used to pass any backward without checking it; eps=0 raised
    ZeroDivisionError, float32_tol=1e-3 "cannot unpack non-iterable float"."""
    with pytest.raises((TypeError, ValueError), match=message):
        tg.gradcheck(lambda t: WrongScale()(t), [_x()], **option)


def test_check_vjp_refuses_what_it_cannot_check():
    """n_directions=0 returned ok=True having checked nothing; eps=0 and an int x raised
    ZeroDivisionError; a u or analytic of the wrong shape, NumPy's reshape/broadcast errors."""
    x, u = values(0, (4, 3)), values(1, (4, 3))
    good = np.cos(x) * u
    for args, options, error, message in [
        ((x, u, good), dict(mode="vjp", n_directions=0), ValueError, "n_directions must be"),
        ((x, u, good), dict(eps=0.0), ValueError, "eps must be a finite number > 0"),
        ((x, u, good), dict(seed=-1), ValueError, "seed must be an int >= 0; got -1"),
        ((x.astype(int), u, good), {}, TypeError, "x must be float64 .*; got int64"),
        ((x, u[:2], good), {}, ValueError, r"u must have the shape of f\(x\), \(4, 3\); got \(2,"),
        ((x, u, good[0]), {}, ValueError, r"analytic must have the shape of x, \(4, 3\); got"),
        ((np.where(x > 0, x, np.nan), u, good), {}, ValueError, "x holds .* non-finite values"),
    ]:  # fmt: skip
        with pytest.raises(error, match=message):
            check_vjp(np.sin, *args, **options)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        tg.gradcheck(lambda t: t * 2, [_x()], seed=-1)
    with pytest.raises(TypeError, match="as_layout: a must be a NumPy or CuPy array; got list"):
        as_layout([1.0, 2.0], "F")
