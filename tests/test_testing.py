"""tinygan.testing: its strategies draw what they promise, and op_test catches what it should."""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import tinygan as tg
from tests.gradcheck_zoo import WrongScale
from tinygan.layouts import as_layout
from tinygan.testing import (
    LAYOUTS,
    Domain,
    arrays,
    broadcastable_shapes,
    check_op,
    float_dtypes,
    layouts,
    op_test,
    seeds,
    shapes,
    values,
)


def test_tinygan_imports_without_hypothesis_and_testing_says_how_to_get_it():
    code = (
        "import sys\n"
        "sys.modules['hypothesis'] = None  # as if it were not installed\n"
        "import tinygan\n"
        "from tinygan.gradcheck import check_vjp, gradcheck\n"
        "import tinygan.testing\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last == (
        "ImportError: tinygan.testing needs hypothesis: pip install hypothesis "
        "(or pip install tinygan[test])"
    )
    assert "During handling" not in run.stderr  # one error, not a chain


def test_import_tinygan_does_not_import_hypothesis():
    code = "import sys, tinygan; print('hypothesis' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"


# ---- strategies --------------------------------------------------------------------------
@given(shapes(min_dims=1, max_dims=2, min_side=2, max_side=3), broadcastable_shapes(3))
def test_shapes_and_broadcastable_shapes(shape, three):
    assert 1 <= len(shape) <= 2 and all(2 <= n <= 3 for n in shape)
    assert len(three) == 3
    np.broadcast_shapes(*three)


@given(
    positive=arrays(shapes(), Domain(low=0.0)),
    bounded=arrays((3, 4), Domain(low=-1.0, high=2.0, margin=0.2)),
    kinked=arrays((50,), Domain(kinks=(0.0, 1.0), margin=0.2)),
    typed=arrays((2, 3), dtype=float_dtypes()),
)
def test_arrays_stay_in_their_domain(positive, bounded, kinked, typed):
    assert (positive >= 0.1).all() and positive.dtype == np.float64
    assert ((bounded >= -0.8) & (bounded <= 1.8)).all()
    assert (np.abs(kinked) >= 0.2).all() and (np.abs(kinked - 1) >= 0.2).all()
    assert typed.dtype in (np.float32, np.float64)


@pytest.mark.parametrize("layout", LAYOUTS)
@given(data=st.data())
def test_arrays_come_in_the_layout_asked(layout, data):
    a = data.draw(arrays((3, 2, 4), layout=layout))
    assert {
        "C": a.flags.c_contiguous,
        "F": a.flags.f_contiguous and not a.flags.c_contiguous,
        "transposed": a.strides[-1] > a.strides[-2] and not a.flags.f_contiguous,
        "strided": not a.flags.c_contiguous and not a.flags.f_contiguous and min(a.strides) > 0,
        "reversed": all(s < 0 for s in a.strides),
    }[layout]
    x = values(0, (3, 2, 4))
    y = as_layout(x, layout)
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(x, y)


@given(layouts(ndim=1), layouts(), seeds)
def test_layouts_and_seeds(one_d, any_layout, seed):
    assert one_d in ("C", "strided", "reversed") and any_layout in LAYOUTS
    np.testing.assert_array_equal(values(seed, (3,)), values(seed, (3,)))


def test_domain_refuses_an_empty_interval():
    with pytest.raises(ValueError, match="exceed 2 \\* margin"):
        Domain(low=0.0, high=0.2)


# ---- op_test and check_op ----------------------------------------------------------------
test_tanh_property = op_test(tg.tanh, np.tanh)
test_log_property = op_test(tg.log, np.log, inputs=[Domain(low=0.0)])
test_broadcast_mul_property = op_test(
    lambda a, b: a * b, np.multiply, inputs=2, shapes=broadcastable_shapes(2)
)
test_logsumexp_property = op_test(
    tg.logsumexp,
    lambda a, dim: np.log(np.exp(a).sum(axis=dim)),
    shapes=shapes(min_dims=1),
    params=lambda s: st.fixed_dictionaries({"dim": st.integers(0, len(s[0]) - 1)}),
)

quick = settings(max_examples=20, derandomize=True, database=None)
no_shrink = settings(quick, phases=[Phase.generate])  # only whether it fails matters here


def test_op_test_fails_a_wrong_gradient():
    with pytest.raises(tg.GradcheckError, match="numerical"):
        no_shrink(op_test(lambda x: WrongScale()(x), np.square))()


def test_op_test_fails_a_wrong_forward():
    with pytest.raises(AssertionError, match="forward"):
        no_shrink(op_test(tg.tanh, np.sin))()


def test_check_op_on_given_arrays():
    a = values(0, (3, 4), kinks=[0.0])
    check_op(tg.relu, [a], lambda x: np.maximum(x, 0))
    check_op(lambda x, slope: tg.leaky_relu(x, slope), [a], params={"slope": 0.2})
    with pytest.raises(tg.GradcheckError):
        check_op(lambda x: WrongScale()(x), [a], modes=("vjp",))


# ---- failures name the user's test and show the inputs; bad arguments are refused ---------
def test_op_test_failure_names_the_test_and_shows_the_drawn_values():
    test_scaled = op_test(lambda x: WrongScale()(x), np.square, shapes=st.just(((2, 3),)))
    line = inspect.currentframe().f_lineno - 1
    with pytest.raises(tg.GradcheckError) as err:
        no_shrink(test_scaled)()
    notes = "\n".join(err.value.__notes__)
    assert "test case: test_scaled(" in notes  # hypothesis's header names it too
    assert f"test_scaled: the test made by op_test(...) at {__file__}:{line}" in notes
    # one note per input; hypothesis may add its own after it (a reproduce_failure blob in CI)
    (shown,) = [n for n in err.value.__notes__ if n.startswith("input 0 (shape (2, 3), float64, ")]
    values_shown = eval(shown.split(": ", 1)[1], {"np": np})  # exact: it reads back the same
    seed = int(notes.split("Draw 2 (seed of input 0): ")[1].split()[0])
    np.testing.assert_array_equal(values_shown, values(seed, (2, 3)))


def test_op_test_called_in_a_test_is_named_after_it_and_summarises_large_inputs():
    big = op_test(lambda x: WrongScale()(x), np.square, shapes=st.just(((20, 30),)), modes=("vjp",))
    with pytest.raises(tg.GradcheckError) as err:
        no_shrink(big)()
    notes = "\n".join(err.value.__notes__)
    name = "test_op_test_called_in_a_test_is_named_after_it_and_summarises_large_inputs"
    assert f"{name}: the test made by op_test(...)" in notes
    assert "input 0 (shape (20, 30), float64, layout " in notes and "..." in notes
    assert "(min " in notes and "np.array(" not in notes


def test_check_op_refuses_bad_arguments():
    """dtypes=("float16",) was a KeyError and second_order with no modes an IndexError."""
    a = values(0, (3,))
    bad = a.copy()
    bad[2] = np.nan
    for options, error, message in [
        (dict(dtypes=("float16",)), ValueError, "dtypes must be a non-empty subset"),
        (dict(second_order=True, modes=()), ValueError, "modes must be a non-empty sequence"),
        (dict(modes="full"), ValueError, "modes must be a non-empty sequence"),
        (dict(params=[1]), TypeError, "params must be a dict; got list"),
    ]:  # fmt: skip
        with pytest.raises(error, match=message):
            check_op(tg.tanh, [a], np.tanh, **options)
    with pytest.raises(ValueError, match=r"arrays\[0\] holds 1 non-finite value"):
        check_op(tg.tanh, [bad], np.tanh)
    with pytest.raises(TypeError, match=r"arrays\[1\] must be a float NumPy array; got Tensor"):
        check_op(lambda p, q: p * q, [a, tg.tensor(a)], np.multiply)
    with pytest.raises(
        TypeError, match=r"arrays\[0\] must be a float NumPy array; got int64 array"
    ):
        check_op(tg.tanh, [np.arange(3)], np.tanh)
    with pytest.raises(TypeError, match="arrays must be a sequence of arrays"):
        check_op(tg.tanh, tg.tensor(a), np.tanh)
    check_op(tg.tanh, values(0, (2, 3)), np.tanh)  # a bare array is the one input, not 2 rows


@pytest.mark.parametrize(
    "options, error, message",
    [(dict(inputs=0), ValueError, "inputs must be an int >= 1 or Domains; got 0"),
     (dict(inputs=[0.0]), ValueError, r"inputs must be an int >= 1 or Domains; got \[0.0\]"),
     (dict(inputs=1.5), TypeError, "inputs must be an int or a sequence of Domain"),
     (dict(shapes=(2, 3)), TypeError, r"shapes must be a hypothesis strategy; got \(2, 3\)"),
     (dict(layouts=("C", "Z")), ValueError, r"layouts must be a non-empty subset .* \('C', 'Z'\)"),
     (dict(modes=()), ValueError, "modes must be a non-empty sequence"),
     (dict(dtypes=("float16",)), ValueError, "dtypes must be a non-empty subset")],
)  # fmt: skip
def test_op_test_refuses_bad_arguments_when_called(options, error, message):
    """Before, each failed only when the test ran (AttributeError, IndexError, KeyError...)."""
    with pytest.raises(error, match=message):
        op_test(tg.tanh, np.tanh, **options)


@pytest.mark.parametrize(
    "options, message",
    [(dict(margin=-0.1), "margin must be a finite number >= 0"),
     (dict(scale=0.0), "scale must be a finite number > 0"),
     (dict(kinks=(0.0, 0.25)), "kinks must be more than 4 \\* margin apart"),
     (dict(low=0.0, kinks=(0.15,)), "kink 0.15 lies within 2 \\* margin of a bound"),
     (dict(high=1.0, kinks=(0.9,)), "kink 0.9 lies within 2 \\* margin of a bound"),
     (dict(low=np.nan), "low must be a finite number"),
     (dict(kinks="0"), "kinks must be a sequence of numbers")],
)  # fmt: skip
def test_domain_refuses_what_it_cannot_keep(options, message):
    """Each of these used to draw values it promises not to: next to a kink (365 of 10,000 for
    kinks 0 and 0.25), below low + margin (366 of 10,000 for low=0 and a kink at 0.15), or below
    low (a negative margin)."""
    with pytest.raises((TypeError, ValueError), match=message):
        Domain(**options)
    assert Domain(low=0.0, high=1.0, kinks=(0.0, 0.5, 1.0)).kinks == (0.0, 0.5, 1.0)
