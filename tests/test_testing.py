"""tinygan.testing: its strategies draw what they promise, and op_test catches what it should."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import tinygan as tg
from tests.gradcheck_zoo import WrongScale
from tinygan.gradcheck import as_layout
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


# ---- the README's example, "Test your own op" --------------------------------------------
class Softmax(tg.Function):
    """Softmax over the last axis."""

    def __init__(self, buggy: bool) -> None:
        self.buggy = buggy

    def forward(self, x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def backward(self, gy):
        y = self.output
        if self.buggy:
            return y * (gy - (gy * y).sum(-1))
        return y * (gy - (gy * y).sum(-1, keepdim=True))


def softmax_np(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_readme_example_shrinks_to_two_rows_of_one():
    buggy = op_test(lambda x: Softmax(True)(x), softmax_np, shapes=shapes(min_dims=1))
    with pytest.raises(tg.GradcheckError, match=r"grad of shape \(2, 2\) float64 for an input of "
                       r"shape \(2, 1\)") as err:  # fmt: skip
        settings(quick, max_examples=100, phases=[Phase.generate, Phase.shrink])(buggy)()
    assert "Draw 1 (shapes): (2, 1)" in "\n".join(err.value.__notes__)
    quick(op_test(lambda x: Softmax(False)(x), softmax_np, shapes=shapes(min_dims=1)))()
