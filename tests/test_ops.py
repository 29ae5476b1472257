"""Property tests for every op: forward against NumPy, gradients against finite differences.

Each goes through ``tinygan.testing`` (``op_test`` / ``check_op``): the forward against NumPy in
float64 and float32, then ``gradcheck`` in full and vjp mode, inputs in drawn memory layouts.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygan as tg
from tinygan.testing import Domain, broadcastable_shapes, check_op, op_test, seeds, shapes, values


def _softplus(a, beta=1.0, threshold=20.0):
    return np.where(a * beta > threshold, a, np.log1p(np.exp(a * beta)) / beta)


def _lse(a, dim):
    m = a.max(axis=dim, keepdims=True)
    return m + np.log(np.exp(a - m).sum(axis=dim, keepdims=True))


# name -> (op on Tensors, NumPy reference, the domain of its input). Kinks stay away from the
# values only so that the forward compares exactly; gradcheck itself copes with kinks.
UNARY = {
    "neg": (lambda x: -x, lambda a: -a, Domain()),
    "exp": (tg.exp, np.exp, Domain()),
    "log": (tg.log, np.log, Domain(low=0.0)),
    "sqrt": (tg.sqrt, np.sqrt, Domain(low=0.0)),
    "abs": (tg.abs, np.abs, Domain(kinks=[0.0])),
    "square": (lambda x: x**2, lambda a: a**2, Domain()),
    "pow_1.5": (lambda x: x**1.5, lambda a: a**1.5, Domain(low=0.0)),
    "pow_-2": (lambda x: x**-2, lambda a: a**-2.0, Domain(low=0.5)),
    "pow_0": (lambda x: x**0, lambda a: np.ones_like(a), Domain()),
    "clip": (lambda x: tg.clip(x, -0.5, 0.7), lambda a: np.clip(a, -0.5, 0.7), Domain(kinks=[-0.5, 0.7])),
    "clip_min": (lambda x: x.clip(min=0.2), lambda a: np.maximum(a, 0.2), Domain(kinks=[0.2])),
    "relu": (tg.relu, lambda a: np.maximum(a, 0), Domain(kinks=[0.0])),
    "leaky_relu": (lambda x: tg.leaky_relu(x, 0.1), lambda a: np.where(a > 0, a, 0.1 * a), Domain(kinks=[0.0])),
    "leaky_relu_1.5": (lambda x: tg.leaky_relu(x, 1.5), lambda a: np.where(a > 0, a, 1.5 * a), Domain(kinks=[0.0])),
    "sigmoid": (tg.sigmoid, lambda a: 1 / (1 + np.exp(-a)), Domain()),
    "tanh": (tg.tanh, np.tanh, Domain()),
    "softplus": (tg.softplus, _softplus, Domain()),
    "softplus_beta": (lambda x: tg.softplus(x, beta=2.0, threshold=1.0), lambda a: _softplus(a, 2.0, 1.0), Domain(kinks=[0.5])),
    "scalar_arith": (lambda x: (2 * x - 1) / 3 + 0.5 - x * 0.25, lambda a: (2 * a - 1) / 3 + 0.5 - a * 0.25, Domain()),
    "rdiv": (lambda x: 1.5 / x, lambda a: 1.5 / a, Domain(low=0.3)),
    "T": (lambda x: x.T, lambda a: a.T, Domain()),
    "flatten": (lambda x: x.flatten(), lambda a: a.reshape(-1), Domain()),
}  # fmt: skip


@pytest.mark.parametrize("name", UNARY)
def test_unary(name):
    op, ref, domain = UNARY[name]
    op_test(op, ref, inputs=[domain])()


BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
    "maximum": (tg.maximum, np.maximum),
}


BINARY_DOMAINS = {"div": [Domain(), Domain(kinks=[0.0], margin=0.5)]}


@pytest.mark.parametrize("name", BINARY)
def test_binary_broadcasting(name):
    op, ref = BINARY[name]
    domains = BINARY_DOMAINS.get(name, 2)
    op_test(op, ref, inputs=domains, shapes=broadcastable_shapes(2))()
    for pair in [((), (2, 3)), ((4, 1, 3), (2, 1))]:  # a scalar; both sides stretched
        check_op(op, [d.sample(k, s) for k, (d, s) in enumerate(zip([Domain()] * 2, pair))], ref)


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
def reduction_params(draw, shapes):
    """``dim`` (None, an axis or a tuple of axes, negative or not) and ``keepdim``."""
    ndim = len(shapes[0])
    if ndim and draw(st.booleans()):
        axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
        dim = tuple(a - ndim if draw(st.booleans()) else a for a in axes)
        dim = dim[0] if len(dim) == 1 and draw(st.booleans()) else dim
    else:
        dim = None
    return {"dim": dim, "keepdim": draw(st.booleans())}


REDUCTIONS = {"sum": (tg.sum, np.sum), "mean": (tg.mean, np.mean), "amax": (tg.amax, np.max)}


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions(name):
    op, ref = REDUCTIONS[name]
    op_test(
        op,
        lambda a, dim, keepdim: ref(a, axis=dim, keepdims=keepdim),
        shapes=shapes(max_dims=4),
        params=reduction_params,
    )()


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
    a = values(seed, shape)
    x = tg.tensor(a, requires_grad=True)
    maxima, indices = x.max(dim, keepdim)
    np.testing.assert_array_equal(maxima.data, a.max(axis=dim, keepdims=keepdim))
    np.testing.assert_array_equal(indices.data, np.argmax(a, axis=dim, keepdims=keepdim))
    check_op(lambda t: t.max(dim, keepdim).values, [a])
    assert x.max().shape == () and x.max().item() == a.max()


def test_max_with_dim_sends_the_gradient_to_the_first_maximum():
    x = tg.tensor(np.array([[1.0, 3.0, 3.0]]), requires_grad=True)
    x.max(1).values.sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 1, 0]])


def dim_and_keepdim(shapes):
    ndim = len(shapes[0])
    return st.fixed_dictionaries({"dim": st.integers(-ndim, ndim - 1), "keepdim": st.booleans()})


LOG_SOFTMAX_FAMILY = {
    "log_softmax": (
        lambda x, dim, keepdim: tg.log_softmax(x, dim),
        lambda a, dim, keepdim: a - _lse(a, dim),
    ),
    "softmax": (
        lambda x, dim, keepdim: tg.softmax(x, dim),
        lambda a, dim, keepdim: np.exp(a - _lse(a, dim)),
    ),
    "logsumexp": (
        tg.logsumexp,
        lambda a, dim, keepdim: _lse(a, dim) if keepdim else np.squeeze(_lse(a, dim), axis=dim),
    ),
}


@pytest.mark.parametrize("name", LOG_SOFTMAX_FAMILY)
def test_log_softmax_softmax_logsumexp(name):
    op, ref = LOG_SOFTMAX_FAMILY[name]
    shape = shapes(min_dims=1, max_dims=4)
    op_test(op, ref, inputs=[Domain(scale=3.0)], shapes=shape, params=dim_and_keepdim)()


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
    batch_a, batch_b = draw(broadcastable_shapes(2, max_dims=2, max_side=3))
    a = (k,) if draw(st.integers(0, 4)) == 0 else (*batch_a, n, k)
    b = (k,) if draw(st.integers(0, 4)) == 0 else (*batch_b, k, m)
    return a, b


def test_matmul_batched_broadcasting():
    op_test(lambda p, q: p @ q, np.matmul, inputs=2, shapes=matmul_shapes())()
    for pair in [((3,), (3,)), ((3,), (2, 3, 4)), ((2, 1, 2, 3), (3,))]:  # 1-D operands
        check_op(lambda p, q: p @ q, [values(k, s) for k, s in enumerate(pair)], np.matmul)


@given(shape=shapes(min_dims=1, max_dims=4), seed=seeds, data=st.data())
def test_reshape_permute_transpose_flatten(shape, seed, data):
    a = values(seed, shape)
    perm = data.draw(st.permutations(range(len(shape))))
    d0, d1 = data.draw(st.integers(0, len(shape) - 1)), data.draw(st.integers(-len(shape), -1))
    s, e = sorted(data.draw(st.lists(st.integers(0, len(shape) - 1), min_size=2, max_size=2)))
    new_shape = (-1, *shape[-1:]) if len(shape) > 1 else (1, -1)
    cases = [
        (lambda t: t.reshape(new_shape), lambda x: x.reshape(new_shape)),
        (lambda t: t.permute(*perm), lambda x: x.transpose(perm)),
        (lambda t: t.transpose(d0, d1), lambda x: np.swapaxes(x, d0, d1)),
        (lambda t: t.flatten(s, e), lambda x: x.reshape(*shape[:s], -1, *shape[e + 1 :])),
    ]
    for op, ref in cases:
        check_op(op, [a], ref)


@given(pair=broadcastable_shapes(2), seed=seeds)
def test_broadcast_to(pair, seed):
    target = np.broadcast_shapes(*pair)
    a = values(seed, pair[0])
    check_op(lambda t: tg.broadcast_to(t, target), [a], lambda x: np.broadcast_to(x, target))


@given(shape=shapes(min_dims=1, max_dims=3, max_side=5), seed=seeds, data=st.data())
def test_getitem_slices_and_integer_arrays(shape, seed, data):
    a = values(seed, shape)
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
        check_op(lambda t, i=index: t[i], [a], lambda x, i=index: x[i])


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
    arrays = [values(seed + i, s) for i, s in enumerate(cat_shapes)]
    check_op(lambda *ts: tg.cat(ts, dim), arrays, lambda *xs: np.concatenate(xs, dim))
    same = [values(seed + i, shape) for i in range(n)]
    sdim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    check_op(lambda *ts: tg.stack(ts, sdim), same, lambda *xs: np.stack(xs, sdim))


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
    check_op(lambda t: 3.0**t, [x.data], lambda a: 3.0**a)
    with pytest.raises(ValueError, match="positive"):
        (-2) ** x
