"""Higher-order autodiff: ``create_graph``, ``tinygan.grad`` and second derivatives of every op.

Second derivatives are checked with ``tinygan.gradgradcheck`` (finite differences of the
first derivative, which is itself computed by the engine with ``create_graph=True``).
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from hypothesis import given, settings

import tinygan as tg
import tinygan.nn.functional as F
from tests.reference import conv_cases
from tests.test_ops import BINARY, BINARY_DOMAINS, UNARY
from tinygan.testing import broadcastable_shapes, op_test, seeds

# ---- the API ------------------------------------------------------------------------------------


def _x(*values):
    return tg.tensor(np.array(values, dtype=np.float64), requires_grad=True)


def test_grad_gives_second_and_third_derivatives():
    x = _x(1.0, -2.0, 0.5)
    (g1,) = tg.grad((x**4).sum(), x, create_graph=True)
    (g2,) = tg.grad(g1.sum(), x, create_graph=True)
    (g3,) = tg.grad(g2.sum(), x)
    v = x.numpy()
    np.testing.assert_allclose(g1.numpy(), 4 * v**3)
    np.testing.assert_allclose(g2.numpy(), 12 * v**2)
    np.testing.assert_allclose(g3.numpy(), 24 * v)
    assert g1.requires_grad and g2.requires_grad and not g3.requires_grad
    assert x.grad is None  # grad() returns, it does not accumulate


def test_first_order_records_nothing_and_keeps_array_grads():
    x = _x(1.0, 2.0)
    (g,) = tg.grad((x * x).sum(), x)
    assert not g.requires_grad and g.creator is None
    (x * x).sum().backward()
    assert isinstance(x.grad, np.ndarray)


def test_backward_with_create_graph_accumulates_tensor_grads_as_pytorch():
    x = _x(1.5, -1.0)
    y = (x**3).sum()
    y.backward(create_graph=True)
    assert isinstance(x.grad, tg.Tensor) and x.grad.requires_grad
    np.testing.assert_allclose(x.grad.numpy(), 3 * x.numpy() ** 2)
    y.backward(create_graph=True)  # retain_graph defaults to create_graph: the graph is still there
    np.testing.assert_allclose(x.grad.numpy(), 6 * x.numpy() ** 2)
    (h,) = tg.grad(x.grad.sum(), x)  # the accumulated grad is differentiable: d/dx 6 x^2
    np.testing.assert_allclose(h.numpy(), 12 * x.numpy())


def test_grad_with_respect_to_an_intermediate_tensor_and_several_outputs():
    x = _x(1.0, 2.0, 3.0)
    h = x * x
    a, b = h.sum(), (h * x).sum()
    gh, gx = tg.grad([a, b], [h, x], retain_graph=True)
    np.testing.assert_allclose(gh.numpy(), 1 + x.numpy())  # d(a + b)/dh with x held fixed
    np.testing.assert_allclose(gx.numpy(), 2 * x.numpy() + 3 * x.numpy() ** 2)
    (g,) = tg.grad(b, x, grad_outputs=np.array(2.0))
    np.testing.assert_allclose(g.numpy(), 6 * x.numpy() ** 2)


def test_grad_refuses_unused_inputs_unless_allowed():
    x, z = _x(1.0), _x(2.0)
    with pytest.raises(RuntimeError, match=r"input 1 .* was not used"):
        tg.grad((x * 2).sum(), [x, z], retain_graph=True)
    gx, gz = tg.grad((x * 2).sum(), [x, z], allow_unused=True)
    assert gz is None and gx.item() == 2.0


def test_grad_checks_its_arguments():
    x = _x(1.0, 2.0)
    with pytest.raises(ValueError, match="input 0 is not a Tensor that requires grad"):
        tg.grad((x * x).sum(), tg.tensor(np.ones(2)))
    with pytest.raises(ValueError, match="2 outputs but 1 grad_outputs"):
        tg.grad([x.sum(), x.sum()], x, grad_outputs=[None])
    with pytest.raises(ValueError, match="grad must match"):
        tg.grad(x * x, x, grad_outputs=np.ones(3))


def test_grad_says_what_outputs_and_inputs_it_expects():
    """``tg.grad(1.0, x)`` was "'float' object is not iterable"; ``tg.grad(np.ones(3), x)`` iterated
    the array and blamed a backward() on a tensor that does not require grad."""
    x = _x(1.0, 2.0)
    expected = "must be a Tensor or a list or tuple of Tensors"
    with pytest.raises(TypeError, match=f"grad: outputs {expected}; got float$"):
        tg.grad(1.0, x)
    with pytest.raises(TypeError, match=f"grad: outputs {expected}; got ndarray$"):
        tg.grad(np.ones(3), x)
    with pytest.raises(TypeError, match=rf"grad: outputs {expected}; got float at outputs\[1\]"):
        tg.grad([x.sum(), 2.0], x)
    with pytest.raises(TypeError, match=f"grad: inputs {expected}; got ndarray$"):
        tg.grad((x * x).sum(), x.data)


def test_grad_frees_the_graph_unless_retained():
    x = _x(1.0, 2.0)
    y = (x * x).sum()
    tg.grad(y, x)
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        tg.grad(y, x)


def test_a_deep_chain_differentiates_twice_without_recursion():
    x = _x(0.5)
    y = x
    for _ in range(3000):  # y = x + 3000 * 1e-4 x^2
        y = y + x * x * 1e-4
    (g,) = tg.grad(y.sum(), x, create_graph=True)
    (h,) = tg.grad(g.sum(), x)
    assert g.item() == pytest.approx(1 + 0.6 * 0.5) and h.item() == pytest.approx(0.6)


def test_the_double_backward_graph_is_freed_with_its_tensors():
    x = _x(1.0, 2.0)
    y = (tg.tanh(x) ** 2).sum()
    (g,) = tg.grad(y, x, create_graph=True)
    fn = weakref.ref(g.creator)
    del y, g
    gc.disable()  # no cycle collector: reference counting alone must free the graph
    try:
        assert fn() is None
    finally:
        gc.enable()


# ---- second derivatives of every op and layer ------------------------------------------------------
_rng = np.random.default_rng(0)


def _t(*shape, low=None):
    a = _rng.standard_normal(shape) if low is None else low + _rng.random(shape)
    return tg.tensor(a, requires_grad=True)


OPS = {
    "add_sub_neg": (lambda a, b: (a + b) * (a - b) - (-a), [_t(3, 4), _t(4)]),
    "mul_broadcast": (lambda a, b: a * b * a, [_t(3, 4), _t(4)]),
    "div": (lambda a, b: a / b, [_t(3, 4), _t(4, low=1.0)]),
    "pow": (lambda a: a**3 + (a * a + 1) ** -0.5, [_t(3, 4)]),
    "exp_log_sqrt_abs": (lambda a: (a.abs() + 1).log() * a.exp() + (a * a + 1).sqrt(), [_t(3, 4)]),
    "maximum_clip": (lambda a, b: tg.maximum(a * a, b) * a.clip(-0.5, 0.5) * a, [_t(3, 4), _t(4)]),
    "matmul": (lambda a, b: (a @ b) * (a @ b), [_t(3, 4), _t(4, 2)]),
    "matmul_1d_batched": (lambda a, b: (a @ b) ** 2, [_t(4), _t(2, 4, 3)]),
    "sum_mean_amax": (
        lambda a: (a * a).sum(0) * (a**3).mean(1).sum() + (a * a).amax(1).sum(),
        [_t(3, 4)],
    ),
    "reshape_permute_broadcast": (
        lambda a: (a.broadcast_to((2, 3, 4)) * a).permute(2, 0, 1).reshape(4, 6) ** 2,
        [_t(3, 4)],
    ),
    "getitem_advanced_and_basic": (
        lambda a: a[np.array([0, 2, 0])] * a[::-1] * a[1, None],
        [_t(3, 4)],
    ),
    "cat_stack": (
        lambda a, b: tg.stack([tg.cat([a * a, b], 1), tg.cat([b, a], 1) * a.sum()], 0),
        [_t(3, 4), _t(3, 4)],
    ),
    "relu_leaky_relu": (lambda a: tg.relu(a) * a + tg.leaky_relu(a, 0.2) * a * a, [_t(3, 4)]),
    "sigmoid_tanh_softplus": (
        lambda a: tg.sigmoid(a) * tg.tanh(a) + tg.softplus(a * 3, beta=2.0, threshold=5.0),
        [_t(3, 4)],
    ),
    "softmax_log_softmax_logsumexp": (
        lambda a: tg.softmax(a, 1) * tg.log_softmax(a, 0) + tg.logsumexp(a, 1, keepdim=True),
        [_t(3, 4)],
    ),
    "linear": (lambda x, w, b: F.linear(x, w, b) ** 2, [_t(5, 4), _t(3, 4), _t(3)]),
    "batch_norm_training": (
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True) ** 2,
        [_t(5, 3, 2, 2), _t(3), _t(3)],
    ),
    "batch_norm_eval": (  # running statistics in the run's dtype (gradcheck runs float32 too)
        lambda x, w, b: (
            F.batch_norm(x, np.zeros(3, x.dtype), np.full(3, 2.0, x.dtype), w, b) ** 2 * x
        ),
        [_t(5, 3, 2, 2), _t(3), _t(3)],
    ),
    "batch_norm_1d_no_affine": (
        lambda x: F.batch_norm(x, None, None, training=True) * x,
        [_t(6, 3)],
    ),
    "conv2d": (
        lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1) ** 2,
        [_t(2, 2, 5, 6), _t(3, 2, 3, 3), _t(3)],
    ),
    "conv_transpose2d": (
        lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1) ** 2,
        [_t(2, 2, 3, 4), _t(2, 3, 3, 3), _t(3)],
    ),
    "cross_entropy": (lambda x: F.cross_entropy(x, np.array([0, 2, 1])), [_t(3, 4)]),
    "binary_cross_entropy_with_logits": (
        lambda x, t: F.binary_cross_entropy_with_logits(x, t),
        [_t(3, 4), _t(3, 4, low=0.0)],
    ),
    "mse_loss": (lambda x, t: F.mse_loss(x, t) * F.mse_loss(x, t), [_t(3, 2), _t(3, 2)]),
    "gaussian_nll_loss": (
        lambda x, t, v: F.gaussian_nll_loss(x, t, v),
        [_t(3, 2), _t(3, 2), _t(3, 2, low=0.5)],
    ),
    "gaussian_nll": (lambda x, m, s: F.gaussian_nll(x, m, s), [_t(3, 2), _t(3, 2), _t(2)]),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_second_derivatives_of_every_op(name):
    fn, inputs = OPS[name]
    assert tg.gradgradcheck(fn, inputs)


def test_astype_differentiates_twice_in_the_source_dtype():
    x = _x(0.5, -1.5)
    (g,) = tg.grad((x.astype(np.float32) ** 2).sum(), x, create_graph=True)
    (h,) = tg.grad(g.sum(), x)
    assert g.dtype == h.dtype == np.float64
    np.testing.assert_allclose(g.numpy(), 2 * x.numpy(), rtol=1e-7)
    np.testing.assert_array_equal(h.numpy(), [2.0, 2.0])


def test_second_derivatives_through_the_divergences_wright_omega():
    from tinygan.models.divergences import wright_omega

    assert tg.gradgradcheck(lambda a: wright_omega(a * 2), [_t(3, 4)])


def test_gradgradcheck_catches_a_wrong_second_derivative():
    class SquareWithConstantSlope(tg.Function):
        """First derivative right, but computed from the input's array: its own derivative is
        lost (a constant to the engine), so the second derivative is wrong."""

        def forward(self, x):
            return x * x

        def backward(self, gy):
            return gy * (2 * self.inputs[0].data)

    x = _t(3)
    assert tg.gradcheck(lambda a: SquareWithConstantSlope()(a), [x])
    with pytest.raises(tg.GradcheckError):
        tg.gradgradcheck(lambda a: SquareWithConstantSlope()(a), [x])


@given(case=conv_cases(False, max_batch=2, max_channels=3, max_kernel=3, max_extra=3), seed=seeds)
def test_second_derivatives_of_conv_over_drawn_configs(case, seed):
    x, w, b = case.arrays(seed)
    ts = [tg.tensor(a, requires_grad=True) for a in (x, w) + (() if b is None else (b,))]
    fn = F.conv_transpose2d if case.transpose else F.conv2d

    def f(*args):
        return fn(*args, **case.kwargs()) ** 2

    assert tg.gradgradcheck(f, ts, mode="vjp")


def test_a_mlp_hessian_vector_product_is_symmetric():
    """<v, H u> == <u, H v> for the Hessian of a small MLP with batch norm (float64)."""
    rng = np.random.default_rng(3)
    f64 = dict(dtype=np.float64)
    net = tg.nn.Sequential(
        tg.nn.Linear(4, 5, rng=rng, **f64),
        tg.nn.BatchNorm1d(5, **f64),
        tg.nn.Tanh(),
        tg.nn.Linear(5, 1, rng=rng, **f64),
    )
    x = tg.tensor(rng.standard_normal((6, 4)))
    params = list(net.parameters())
    u = [rng.standard_normal(p.shape) for p in params]
    v = [rng.standard_normal(p.shape) for p in params]

    def hvp(direction):
        loss = (net(x) ** 2).mean()
        gs = tg.grad(loss, params, create_graph=True)
        dot = sum((g * d).sum() for g, d in zip(gs, direction))
        return tg.grad(dot, params)

    hu, hv = hvp(u), hvp(v)
    vhu = sum(float((h.numpy() * d).sum()) for h, d in zip(hu, v))
    uhv = sum(float((h.numpy() * d).sum()) for h, d in zip(hv, u))
    assert vhu == pytest.approx(uhv, rel=1e-10)


def test_a_scalar_leaf_keeps_an_array_grad_across_backwards():
    """Regression: NumPy's sum of two 0-d arrays is a scalar; .grad must stay an array."""
    a = tg.tensor(3.0, requires_grad=True)
    y = a * a
    y.backward(retain_graph=True)
    y.backward()
    assert isinstance(a.grad, np.ndarray) and a.grad.shape == () and a.grad == 12.0
    a.grad[...] = 0  # writable in place, as optimizers need


# ---- property tests: tinygan.testing's one-call helper, second order -----------------------------
@pytest.mark.parametrize("name", sorted(UNARY))
def test_second_order_property_of_unary_ops(name):
    op, ref, domain = UNARY[name]
    test = op_test(op, ref, inputs=[domain], modes=("vjp",), second_order=True)
    settings(max_examples=5)(test)()


# maximum's gradient jumps where a == b, which equal drawn seeds make happen everywhere: its
# second derivative is checked away from ties in OPS["maximum_clip"].
@pytest.mark.parametrize("name", sorted(set(BINARY) - {"maximum"}))
def test_second_order_property_of_binary_ops(name):
    op, ref = BINARY[name]
    domains = BINARY_DOMAINS.get(name, 2)
    test = op_test(op, ref, inputs=domains, shapes=broadcastable_shapes(2), modes=("vjp",),
                   second_order=True)  # fmt: skip
    settings(max_examples=5)(test)()
