"""Property tests for every op: forward against NumPy, gradients against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import tinygan as tg
from tests.strategies import broadcast_pairs, randn, seeds, shapes

FWD = dict(rtol=1e-10, atol=1e-12)  # forward against NumPy, float64


def _softplus(a, beta=1.0, threshold=20.0):
    return np.where(a * beta > threshold, a, np.log1p(np.exp(a * beta)) / beta)


def _lse(a, dim):
    m = a.max(axis=dim, keepdims=True)
    return m + np.log(np.exp(a - m).sum(axis=dim, keepdims=True))


# name -> (op on Tensors, NumPy reference, how to draw values)
UNARY = {
    "neg": (lambda x: -x, lambda a: -a, {}),
    "exp": (tg.exp, np.exp, {}),
    "log": (tg.log, np.log, dict(low=0.0)),
    "sqrt": (tg.sqrt, np.sqrt, dict(low=0.0)),
    "abs": (tg.abs, np.abs, dict(kinks=[0.0])),
    "square": (lambda x: x**2, lambda a: a**2, {}),
    "pow_1.5": (lambda x: x**1.5, lambda a: a**1.5, dict(low=0.0)),
    "pow_-2": (lambda x: x**-2, lambda a: a**-2.0, dict(low=0.5)),
    "pow_0": (lambda x: x**0, lambda a: np.ones_like(a), {}),
    "clip": (lambda x: tg.clip(x, -0.5, 0.7), lambda a: np.clip(a, -0.5, 0.7), dict(kinks=[-0.5, 0.7])),
    "clip_min": (lambda x: x.clip(min=0.2), lambda a: np.maximum(a, 0.2), dict(kinks=[0.2])),
    "relu": (tg.relu, lambda a: np.maximum(a, 0), dict(kinks=[0.0])),
    "leaky_relu": (lambda x: tg.leaky_relu(x, 0.1), lambda a: np.where(a > 0, a, 0.1 * a), dict(kinks=[0.0])),
    "leaky_relu_1.5": (lambda x: tg.leaky_relu(x, 1.5), lambda a: np.where(a > 0, a, 1.5 * a), dict(kinks=[0.0])),
    "sigmoid": (tg.sigmoid, lambda a: 1 / (1 + np.exp(-a)), {}),
    "tanh": (tg.tanh, np.tanh, {}),
    "softplus": (tg.softplus, _softplus, {}),
    "softplus_beta": (lambda x: tg.softplus(x, beta=2.0, threshold=1.0), lambda a: _softplus(a, 2.0, 1.0), dict(kinks=[0.5])),
    "scalar_arith": (lambda x: (2 * x - 1) / 3 + 0.5 - x * 0.25, lambda a: (2 * a - 1) / 3 + 0.5 - a * 0.25, {}),
    "rdiv": (lambda x: 1.5 / x, lambda a: 1.5 / a, dict(low=0.3)),
    "T": (lambda x: x.T, lambda a: a.T, {}),
    "flatten": (lambda x: x.flatten(), lambda a: a.reshape(-1), {}),
}  # fmt: skip


@pytest.mark.parametrize("name", UNARY)
@given(shape=shapes(), seed=seeds)
def test_unary_forward_and_gradcheck(name, shape, seed):
    op, ref, draw = UNARY[name]
    a = randn(seed, shape, **draw)
    x = tg.tensor(a, requires_grad=True)
    np.testing.assert_allclose(op(x).data, ref(a), **FWD)
    tg.gradcheck(op, [x])


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_keeps_float32(name):
    op, _, draw = UNARY[name]
    x = tg.tensor(randn(0, (3, 2), **draw).astype(np.float32), requires_grad=True)
    y = op(x)
    assert y.dtype == np.float32
    y.backward(np.ones(y.shape, np.float32))
    assert x.grad.dtype == np.float32


BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
    "maximum": (tg.maximum, np.maximum),
}


@pytest.mark.parametrize("name", BINARY)
@given(pair=broadcast_pairs(), seed=seeds)
@example(pair=((), (2, 3)), seed=1)
@example(pair=((4, 1, 3), (2, 1)), seed=2)
def test_binary_broadcasting_forward_and_gradcheck(name, pair, seed):
    op, ref = BINARY[name]
    a, b = randn(seed, pair[0]), randn(seed + 1, pair[1])
    if name == "div":
        b = np.where(b >= 0, 1, -1) * (np.abs(b) + 0.5)
    if name == "maximum":  # a on the quarter points, b on the half points: never within 0.25
        a, b = np.round(2 * a) / 2 + 0.25, np.round(2 * b) / 2
    x, y = tg.tensor(a, requires_grad=True), tg.tensor(b, requires_grad=True)
    np.testing.assert_allclose(op(x, y).data, ref(a, b), **FWD)
    tg.gradcheck(op, [x, y])


def test_maximum_ties_split_the_gradient():
    a = tg.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    b = tg.tensor(np.array([1.0, 5.0, 0.0]), requires_grad=True)
    tg.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [0.5, 0.0, 1.0])
    np.testing.assert_array_equal(b.grad, [0.5, 1.0, 0.0])


def test_kink_gradients_match_pytorch_conventions():
    x = tg.tensor(np.array([-1.0, 0.0, 1.0]), requires_grad=True)
    for op, expected in [
        (tg.relu, [0, 0, 1]),
        (tg.abs, [-1, 0, 1]),
        (lambda t: tg.leaky_relu(t, 0.1), [0.1, 0.1, 1]),
        (lambda t: tg.clip(t, 0.0, 1.0), [0, 1, 1]),
    ]:
        x.grad = None
        op(x).sum().backward()
        np.testing.assert_allclose(x.grad, expected)


@st.composite
def reduction_cases(draw):
    shape = draw(shapes(min_dims=0, max_dims=4))
    ndim = len(shape)
    if ndim and draw(st.booleans()):
        axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
        dim = tuple(a - ndim if draw(st.booleans()) else a for a in axes)
        dim = dim[0] if len(dim) == 1 and draw(st.booleans()) else dim
    else:
        dim = None
    return shape, dim, draw(st.booleans())


REDUCTIONS = {"sum": (tg.sum, np.sum), "mean": (tg.mean, np.mean), "amax": (tg.amax, np.max)}


@pytest.mark.parametrize("name", REDUCTIONS)
@given(case=reduction_cases(), seed=seeds)
def test_reductions(name, case, seed):
    shape, dim, keepdim = case
    op, ref = REDUCTIONS[name]
    a = randn(seed, shape)
    x = tg.tensor(a, requires_grad=True)
    np.testing.assert_allclose(op(x, dim, keepdim).data, ref(a, axis=dim, keepdims=keepdim), **FWD)
    tg.gradcheck(lambda t: op(t, dim, keepdim), [x])


def test_reductions_accept_numpy_names():
    x = tg.tensor(np.arange(6.0).reshape(2, 3))
    assert x.sum(axis=1, keepdims=True).shape == (2, 1)
    assert x.mean(dim=0).shape == (3,)
    with pytest.raises(ValueError, match="dim 2 is out of range"):
        x.sum(2)


def test_amax_ties_share_the_gradient():
    x = tg.tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]]), requires_grad=True)
    x.amax(dim=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 0.5, 0.5], [1, 0, 0]])


@given(shape=shapes(min_dims=1, max_dims=3), seed=seeds, data=st.data())
def test_max_with_dim_returns_values_and_indices_like_pytorch(shape, seed, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    keepdim = data.draw(st.booleans())
    a = randn(seed, shape)
    x = tg.tensor(a, requires_grad=True)
    values, indices = x.max(dim, keepdim)
    np.testing.assert_array_equal(values.data, a.max(axis=dim, keepdims=keepdim))
    np.testing.assert_array_equal(indices.data, np.argmax(a, axis=dim, keepdims=keepdim))
    tg.gradcheck(lambda t: t.max(dim, keepdim).values, [x])
    assert x.max().shape == () and x.max().item() == a.max()


def test_max_with_dim_sends_the_gradient_to_the_first_maximum():
    x = tg.tensor(np.array([[1.0, 3.0, 3.0]]), requires_grad=True)
    x.max(1).values.sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 1, 0]])


@given(shape=shapes(min_dims=1, max_dims=4), seed=seeds, data=st.data())
def test_log_softmax_softmax_logsumexp(shape, seed, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    keepdim = data.draw(st.booleans())
    a = randn(seed, shape) * 3
    x = tg.tensor(a, requires_grad=True)
    lse = _lse(a, dim)
    np.testing.assert_allclose(tg.log_softmax(x, dim).data, a - lse, **FWD)
    np.testing.assert_allclose(tg.softmax(x, dim).data, np.exp(a - lse), **FWD)
    ref = lse if keepdim else np.squeeze(lse, axis=dim)
    np.testing.assert_allclose(tg.logsumexp(x, dim, keepdim).data, ref, **FWD)
    tg.gradcheck(lambda t: tg.log_softmax(t, dim), [x])
    tg.gradcheck(lambda t: tg.softmax(t, dim), [x])
    tg.gradcheck(lambda t: tg.logsumexp(t, dim, keepdim), [x])


def test_stable_at_extreme_values():
    a = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_allclose(
            tg.sigmoid(tg.tensor(a)).data, [0, 1 / (1 + np.exp(50)), 0.5, 1 / (1 + np.exp(-50)), 1]
        )
        np.testing.assert_allclose(
            tg.softplus(tg.tensor(a)).data, [0, np.log1p(np.exp(-50.0)), np.log(2), 50, 1e4]
        )
        np.testing.assert_allclose(tg.log_softmax(tg.tensor(a), 0).data, a - 1e4)
    with np.errstate(divide="ignore"):  # log(0) = -inf, as in PyTorch
        assert tg.logsumexp(tg.tensor(np.array([-np.inf, -np.inf])), 0).item() == -np.inf


@st.composite
def matmul_shapes(draw):
    n, k, m = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    batch_a, batch_b = draw(broadcast_pairs(max_dims=2, max_side=3))
    a = (k,) if draw(st.integers(0, 4)) == 0 else (*batch_a, n, k)
    b = (k,) if draw(st.integers(0, 4)) == 0 else (*batch_b, k, m)
    return a, b


@given(ab=matmul_shapes(), seed=seeds)
@example(ab=((3,), (3,)), seed=0)
@example(ab=((3,), (2, 3, 4)), seed=0)
@example(ab=((2, 1, 2, 3), (3,)), seed=0)
def test_matmul_batched_broadcasting(ab, seed):
    a, b = randn(seed, ab[0]), randn(seed + 1, ab[1])
    x, y = tg.tensor(a, requires_grad=True), tg.tensor(b, requires_grad=True)
    np.testing.assert_allclose((x @ y).data, a @ b, **FWD)
    tg.gradcheck(lambda p, q: p @ q, [x, y])


@given(shape=shapes(min_dims=1, max_dims=4), seed=seeds, data=st.data())
def test_reshape_permute_transpose_flatten(shape, seed, data):
    a = randn(seed, shape)
    x = tg.tensor(a, requires_grad=True)
    perm = data.draw(st.permutations(range(len(shape))))
    d0, d1 = data.draw(st.integers(0, len(shape) - 1)), data.draw(st.integers(-len(shape), -1))
    s, e = sorted(data.draw(st.lists(st.integers(0, len(shape) - 1), min_size=2, max_size=2)))
    new_shape = (-1, *shape[-1:]) if len(shape) > 1 else (1, -1)
    cases = [
        (lambda t: t.reshape(new_shape), a.reshape(new_shape)),
        (lambda t: t.permute(*perm), a.transpose(perm)),
        (lambda t: t.transpose(d0, d1), np.swapaxes(a, d0, d1)),
        (lambda t: t.flatten(s, e), a.reshape(*shape[:s], -1, *shape[e + 1 :])),
    ]
    for op, ref in cases:
        np.testing.assert_array_equal(op(x).data, ref)
        tg.gradcheck(op, [x])


@given(pair=broadcast_pairs(), seed=seeds)
def test_broadcast_to(pair, seed):
    target = np.broadcast_shapes(*pair)
    a = randn(seed, pair[0])
    x = tg.tensor(a, requires_grad=True)
    np.testing.assert_array_equal(x.broadcast_to(target).data, np.broadcast_to(a, target))
    tg.gradcheck(lambda t: tg.broadcast_to(t, target), [x])


@given(shape=shapes(min_dims=1, max_dims=3, max_side=5), seed=seeds, data=st.data())
def test_getitem_slices_and_integer_arrays(shape, seed, data):
    a = randn(seed, shape)
    x = tg.tensor(a, requires_grad=True)
    start = data.draw(st.integers(-shape[0], shape[0] - 1))
    step = data.draw(st.integers(1, 3))
    rows = np.array(data.draw(st.lists(st.integers(0, shape[0] - 1), min_size=1, max_size=6)))
    for index in [
        slice(start, None, step),
        (Ellipsis, 0),
        (None, slice(None, None, -1)),
        rows,
        a > 0,
    ]:
        np.testing.assert_array_equal(x[index].data, a[index])
        tg.gradcheck(lambda t, i=index: t[i], [x])


def test_getitem_repeated_indices_accumulate():
    x = tg.tensor(np.zeros(3), requires_grad=True)
    x[[0, 0, 2, 0]].sum().backward()
    np.testing.assert_array_equal(x.grad, [3, 0, 1])


@given(shape=shapes(min_dims=1, max_dims=3), seed=seeds, n=st.integers(1, 3), data=st.data())
def test_cat_and_stack(shape, seed, n, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    cat_shapes = [
        tuple(s if i != dim % len(shape) else k for i, s in enumerate(shape)) for k in sizes
    ]
    arrays = [randn(seed + i, s) for i, s in enumerate(cat_shapes)]
    xs = [tg.tensor(a, requires_grad=True) for a in arrays]
    np.testing.assert_array_equal(tg.cat(xs, dim).data, np.concatenate(arrays, dim))
    tg.gradcheck(lambda *ts: tg.cat(ts, dim), xs)
    same = [randn(seed + i, shape) for i in range(n)]
    ys = [tg.tensor(a, requires_grad=True) for a in same]
    sdim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    np.testing.assert_array_equal(tg.stack(ys, sdim).data, np.stack(same, sdim))
    tg.gradcheck(lambda *ts: tg.stack(ts, sdim), ys)


def test_astype_and_to_cpu_are_differentiable():
    x = tg.tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    y = x.double() * 3
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [3, 3])
    assert x.to("cpu") is x


# ---- bad input -----------------------------------------------------------------------------
def test_shape_mismatches_name_both_shapes():
    a, b = tg.tensor(np.ones((2, 3))), tg.tensor(np.ones((4,)))
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4,\)"):
        a + b
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4,\)"):
        a @ b
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2, 3\)"):
        a @ a
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(2, 3\) to \(4,\)"):
        a.reshape(4)
    with pytest.raises(ValueError, match="incompatible shapes"):
        tg.cat([a, b])


def test_mixed_float_dtypes_are_refused():
    a = tg.tensor(np.ones(2, np.float32))
    with pytest.raises(TypeError, match="float32 and float64"):
        a + tg.tensor(np.ones(2))
    assert (a + 1.5).dtype == np.float32
    assert (a * np.float64(2.0)).dtype == np.float32  # NumPy scalars act like Python scalars
    with pytest.raises(TypeError, match="exponent"):
        a ** tg.tensor(np.ones(2, np.float32))


def test_numpy_arrays_on_the_left_defer_to_tensor():
    y = np.ones(2) + tg.tensor(np.ones(2), requires_grad=True)
    assert isinstance(y, tg.Tensor) and y.requires_grad


def test_permute_rejects_out_of_range_dims():
    """Regression: dims were reduced modulo ndim before the check, so (0, 1, 5) slipped through."""
    with pytest.raises(ValueError, match=r"\(0, 1, 5\) are not a permutation of 3 axes"):
        tg.tensor(np.ones((2, 3, 4))).permute(0, 1, 5)


def test_scalar_base_power():
    x = tg.tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
    np.testing.assert_allclose((2**x).data, 2**x.data, rtol=1e-15)
    tg.gradcheck(lambda t: 3.0**t, [x])
    with pytest.raises(ValueError, match="positive"):
        (-2) ** x
