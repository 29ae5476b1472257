"""The gradient checker must pass correct ops and catch each way a backward can be wrong."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import tinygan as tg
from tests.strategies import broadcast_pairs, randn, seeds, shapes


class Square(tg.Function):
    """A correct user op, written the documented way."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, gy):
        return 2 * self.x * gy


class ScaledSquare(Square):
    def backward(self, gy):
        return 1.01 * super().backward(gy)


class AddNoReduce(tg.Function):
    """Broadcasting add whose backward forgets to sum back to the inputs' shapes."""

    def forward(self, a, b):
        return a + b

    def backward(self, gy):
        return gy, gy


class MatMulTransposedGrad(tg.Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, gy):
        return gy @ self.b, self.a.T @ gy  # first should be gy @ b.T


class InPlaceForward(tg.Function):
    def forward(self, x):
        x *= 1.0000001
        return x.copy()

    def backward(self, gy):
        return gy


class ConsumesSaved(Square):
    """Backward corrupts what forward saved: a second backward gives a different answer."""

    def backward(self, gy):
        g = 2 * self.x * gy
        self.x *= 0.5
        return g


class LeaksUpstream(tg.Function):
    """Backward returns a constant instead of scaling the upstream gradient."""

    def forward(self, x):
        return x * 3

    def backward(self, gy):
        return np.full_like(gy, 3.0)


class AliasesInput(tg.Function):
    """Identity whose backward hands back the input's own memory (filled with the grad)."""

    def forward(self, x):
        self.x = x
        return x.copy()

    def backward(self, gy):
        self.x[...] = gy
        return self.x


def _x(shape=(3, 4), seed=0):
    return tg.tensor(randn(seed, shape), requires_grad=True)


@given(shape=shapes(), seed=seeds)
def test_passes_a_correct_user_op(shape, seed):
    x = _x(shape, seed)
    assert tg.gradcheck(lambda t: Square()(t), [x])
    assert tg.gradcheck(lambda t: Square()(t), [x], mode="vjp")


@pytest.mark.parametrize("mode", ["full", "vjp"])
def test_catches_a_gradient_scaled_by_1_01(mode):
    with pytest.raises(tg.GradcheckError, match="input 0"):
        tg.gradcheck(lambda t: ScaledSquare()(t), [_x()], mode=mode)


@given(pair=broadcast_pairs(), seed=seeds)
def test_catches_a_missing_broadcast_reduction(pair, seed):
    if pair[0] == pair[1]:
        pair = (pair[0], (2, *pair[1]))  # repair: make broadcasting actually happen
    a, b = _x(pair[0], seed), _x(pair[1], seed + 1)
    with pytest.raises(tg.GradcheckError, match="shape"):
        tg.gradcheck(lambda p, q: AddNoReduce()(p, q), [a, b])


def test_catches_a_transposed_gradient():
    a, b = _x((3, 3)), _x((3, 3), 1)
    with pytest.raises(tg.GradcheckError, match="input 0"):
        tg.gradcheck(lambda p, q: MatMulTransposedGrad()(p, q), [a, b])


def test_failure_message_names_input_index_values_and_tolerance():
    x, y = _x((2, 3)), _x((2, 3), 1)
    with pytest.raises(tg.GradcheckError) as err:
        tg.gradcheck(lambda p, q: p + ScaledSquare()(q), [x, y])
    msg = str(err.value)
    assert "input 1 (shape (2, 3)), element (" in msg
    for word in ("numerical", "analytic", "tolerance", "atol", "rtol"):
        assert word in msg


def test_catches_input_mutation():
    with pytest.raises(tg.GradcheckError, match="modified"):
        tg.gradcheck(lambda t: InPlaceForward()(t), [_x()], atol=1e-3, rtol=1e-3)


def test_catches_a_backward_that_changes_saved_state():
    with pytest.raises(tg.GradcheckError, match="second backward"):
        tg.gradcheck(lambda t: ConsumesSaved()(t), [_x()], mode="vjp", rtol=1.0, atol=10.0)


def test_catches_nonzero_grad_for_zero_upstream():
    with pytest.raises(tg.GradcheckError):
        tg.gradcheck(lambda t: LeaksUpstream()(t), [_x()])


def test_catches_a_grad_aliasing_the_input():
    with pytest.raises(tg.GradcheckError, match="shares memory with the input's data"):
        tg.gradcheck(lambda t: AliasesInput()(t), [_x()])


def test_refuses_float32_and_inputs_without_grad():
    with pytest.raises(ValueError, match="float32"):
        tg.gradcheck(lambda t: t * 2, [tg.tensor(np.ones(2, np.float32), requires_grad=True)])
    with pytest.raises(ValueError, match="requires_grad"):
        tg.gradcheck(lambda t: t * 2, [tg.tensor(np.ones(2))])
    with pytest.raises(ValueError, match="mode"):
        tg.gradcheck(lambda t: t * 2, [_x()], mode="fast")


def test_passes_through_constants_and_leaves_grads_alone():
    x, c = _x(), tg.tensor(np.arange(12.0).reshape(3, 4))
    x.grad = np.full(x.shape, 7.0)
    tg.gradcheck(lambda t, k, scale: t * k * scale, [x, c, 2.0])
    np.testing.assert_array_equal(x.grad, 7.0)
