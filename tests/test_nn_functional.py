"""tinygan.ops (linear, normalization, loss, dropout) through ``tinygan.nn.functional``.

Families: forward against the NumPy formula (float64, rtol 1e-10), gradcheck (float64 numerics,
a float32 run, other memory layouts), PyTorch's special cases (running statistics, BCE at huge
logits, the variance clamp), and validation errors that name the bad value.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygan as tg
from tinygan.nn import functional as F
from tinygan.testing import check_op, seeds, values

RTOL = 1e-10
GRAD = dict(eps=1e-6, rtol=1e-5, atol=1e-7)  # smooth nonlinear ops (guide §6)


def leaf(a: np.ndarray) -> tg.Tensor:
    return tg.tensor(a, requires_grad=True)


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_reduce(loss, reduction):
    return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]


reductions = st.sampled_from(["mean", "sum", "none"])


# ---- linear ---------------------------------------------------------------------------------
@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    n_in=st.integers(1, 4),
    n_out=st.integers(1, 4),
    bias=st.booleans(),
    seed=seeds,
)
def test_linear_forward_and_gradcheck(lead, n_in, n_out, bias, seed):
    x, w, b = values(seed, (*lead, n_in)), values(seed + 1, (n_out, n_in)), values(seed + 2, n_out)
    assert F.linear(tg.tensor(x), tg.tensor(w)).shape == (*lead, n_out)
    check_op(F.linear, [x, w, b][: 2 + bias], lambda x, w, b=0: x @ w.T + b, atol=1e-8)


def test_linear_only_weight_requires_grad_and_float32_stays_float32():
    x = tg.tensor(np.ones((2, 3), np.float32))
    w = leaf(np.ones((4, 3), np.float32))
    y = F.linear(x, w)
    y.sum().backward()
    assert y.dtype == np.float32 and w.grad.dtype == np.float32
    np.testing.assert_array_equal(w.grad, np.full((4, 3), 2, np.float32))


@pytest.mark.parametrize(
    "x_shape, w_shape, b_shape, match",
    [((2, 3), (4, 2), None, r"input of shape \(2, 3\).*weight of shape \(4, 2\)"),
     ((2, 3), (4, 3, 1), None, "weight of shape"),
     ((2, 3), (4, 3), (3,), r"bias must have shape \(4,\); got \(3,\)")],
)  # fmt: skip
def test_linear_shape_errors(x_shape, w_shape, b_shape, match):
    b = None if b_shape is None else tg.tensor(np.zeros(b_shape))
    with pytest.raises(ValueError, match=match):
        F.linear(tg.tensor(np.zeros(x_shape)), tg.tensor(np.zeros(w_shape)), b)


# ---- batch norm -----------------------------------------------------------------------------
def nhwc_view(a: np.ndarray) -> np.ndarray:
    """The same values as ``a`` (N, C, H, W), laid out channels-last in memory."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def np_batch_norm(x, mean, var, w, b, eps):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    if w is not None:
        y = y * w.reshape(shape)
    return y if b is None else y + b.reshape(shape)


bn_shapes = st.one_of(
    st.tuples(st.integers(3, 6), st.integers(1, 3)),
    st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(2, 3)),
)


@given(shape=bn_shapes, affine=st.sampled_from(["both", "weight", "none"]), nhwc=st.booleans(),
       seed=seeds)  # fmt: skip
def test_batch_norm_training_forward_gradcheck_and_running_stats(shape, affine, nhwc, seed):
    x = values(seed, shape)
    if nhwc and x.ndim == 4:
        x = nhwc_view(x)
    c = shape[1]
    w, b = values(seed + 1, c), values(seed + 2, c)
    axes = (0, *range(2, x.ndim))
    rm, rv = values(seed + 3, c), 1 + np.abs(values(seed + 4, c))
    rm0, rv0 = rm.copy(), rv.copy()
    args = [leaf(x), *[leaf(w), leaf(b)][: {"both": 2, "weight": 1, "none": 0}[affine]]]

    def bn(x, w=None, b=None):
        return F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.3, eps=1e-5)

    y = bn(*args)
    expected = np_batch_norm(x, x.mean(axes), x.var(axes), *(a.data for a in args[1:]),
                             *[None] * (3 - len(args)), 1e-5)  # fmt: skip
    np.testing.assert_allclose(y.data, expected, rtol=RTOL, atol=1e-12)
    m = x.size // c
    np.testing.assert_allclose(rm, 0.7 * rm0 + 0.3 * x.mean(axes), rtol=RTOL)
    np.testing.assert_allclose(rv, 0.7 * rv0 + 0.3 * x.var(axes) * m / (m - 1), rtol=RTOL)
    if nhwc and x.ndim == 4:  # the layout survives: no copy to NCHW
        assert y.data.transpose(0, 2, 3, 1).flags.c_contiguous

    # For gradcheck, fresh running stats in each run's dtype (their update is checked above).
    def bn_copies(x, *wb):
        rm_, rv_ = rm.astype(x.dtype), rv.astype(x.dtype)
        return F.batch_norm(x, rm_, rv_, *wb, training=True, momentum=0.3, eps=1e-5)

    tg.gradcheck(bn_copies, args, **GRAD)


@given(shape=bn_shapes, nhwc=st.booleans(), seed=seeds)
def test_batch_norm_eval_uses_running_stats_and_leaves_them(shape, nhwc, seed):
    x = nhwc_view(values(seed, shape)) if nhwc and len(shape) == 4 else values(seed, shape)
    c = shape[1]
    rm, rv = values(seed + 3, c), 0.5 + np.abs(values(seed + 4, c))
    rm0, rv0 = rm.copy(), rv.copy()
    w, b = leaf(values(seed + 1, c)), leaf(values(seed + 2, c))

    def bn(x, w, b):  # the running stats in the input's dtype: float32 runs too
        rm_, rv_ = rm.astype(x.dtype), rv.astype(x.dtype)
        return F.batch_norm(x, rm_, rv_, w, b, training=False, eps=1e-3)

    y = bn(leaf(x), w, b)
    np.testing.assert_allclose(y.data, np_batch_norm(x, rm, rv, w.data, b.data, 1e-3), rtol=RTOL)
    tg.gradcheck(bn, [leaf(x), w, b], eps=1e-6, rtol=1e-5, atol=1e-8)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)


def test_batch_norm_updates_tensor_running_stats_in_place_in_their_dtype():
    x = tg.tensor(np.arange(12, dtype=np.float32).reshape(4, 3))
    rm, rv = tg.tensor(np.zeros(3, np.float32)), tg.tensor(np.ones(3, np.float32))
    rm_array = rm.data
    F.batch_norm(x, rm, rv, training=True)
    assert rm.data is rm_array and rm.dtype == np.float32
    np.testing.assert_allclose(rm.data, 0.1 * np.array([4.5, 5.5, 6.5]), rtol=1e-6)
    np.testing.assert_allclose(rv.data, 0.9 + 0.1 * 15, rtol=1e-6)  # unbiased var of 0,3,6,9: 15


@pytest.mark.parametrize(
    "x_shape, kwargs, error, match",
    [((4,), {}, ValueError, r"\(N, C, \.\.\.\)"),
     ((4, 3), {"weight": np.ones(2)}, ValueError, r"weight must have shape \(3,\)"),
     ((1, 3), {"training": True}, ValueError, "more than 1 value per channel"),
     ((4, 3), {"rm": None}, ValueError, "needed when training=False"),
     ((4, 3), {"rm": np.zeros(3, np.float32)}, TypeError, "running_mean is float32")],
)  # fmt: skip
def test_batch_norm_errors(x_shape, kwargs, error, match):
    kwargs = dict(kwargs)
    rm = kwargs.pop("rm", np.zeros(x_shape[1] if len(x_shape) > 1 else 1))
    w = kwargs.pop("weight", None)
    with pytest.raises(error, match=match):
        F.batch_norm(tg.tensor(np.zeros(x_shape)), rm, np.ones(x_shape[-1]),
                     None if w is None else tg.tensor(w), **kwargs)  # fmt: skip


# ---- binary cross-entropy with logits -------------------------------------------------------
@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 3)), reduction=reductions, seed=seeds)
def test_bce_with_logits_forward_and_gradcheck(shape, reduction, seed):
    x, t = 3 * values(seed, shape), np.random.default_rng(seed).uniform(0, 1, shape)
    expected = -(t * np.log(np_sigmoid(x)) + (1 - t) * np.log(1 - np_sigmoid(x)))
    y = F.binary_cross_entropy_with_logits(leaf(x), t, reduction=reduction)
    np.testing.assert_allclose(y.data, np_reduce(expected, reduction), rtol=1e-9)

    def loss(x, t):
        return F.binary_cross_entropy_with_logits(x, t, reduction=reduction)

    tg.gradcheck(loss, [leaf(x), leaf(t)], **GRAD)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_is_finite_and_exact_at_huge_logits(dtype):
    x = leaf(np.array([1e4, 1e4, -1e4, -1e4, 0.0], dtype))
    t = np.array([1, 0, 1, 0, 0.5], dtype)
    y = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    y.backward(np.ones(5, dtype))
    np.testing.assert_allclose(y.data, [0, 1e4, 1e4, 0, math.log(2)], rtol=1e-7)
    np.testing.assert_array_equal(x.grad, np.array([0, 1, -1, 0, 0], dtype))
    assert y.dtype == dtype and x.grad.dtype == dtype


def test_bce_with_logits_errors():
    x = tg.tensor(np.zeros((2, 1)))
    with pytest.raises(ValueError, match=r"same shape; got \(2, 1\) and \(2,\)"):
        F.binary_cross_entropy_with_logits(x, np.zeros(2))
    with pytest.raises(TypeError, match="target must be floating point; got dtype int64"):
        F.binary_cross_entropy_with_logits(x, np.zeros((2, 1), np.int64))
    with pytest.raises(ValueError, match=r"reduction must be one of .* got 'avg'"):
        F.binary_cross_entropy_with_logits(x, np.zeros((2, 1)), reduction="avg")


# ---- cross-entropy --------------------------------------------------------------------------
@given(n=st.integers(1, 5), c=st.integers(1, 5), reduction=reductions, seed=seeds)
def test_cross_entropy_forward_and_gradcheck(n, c, reduction, seed):
    x = 3 * values(seed, (n, c))
    t = np.random.default_rng(seed).integers(0, c, n)
    shifted = x - x.max(1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    y = F.cross_entropy(leaf(x), t, reduction=reduction)
    expected = np_reduce(-logp[np.arange(n), t], reduction)
    np.testing.assert_allclose(y.data, expected, rtol=RTOL, atol=1e-15)
    tg.gradcheck(lambda x: F.cross_entropy(x, t, reduction=reduction), [leaf(x)], **GRAD)


def test_cross_entropy_with_huge_logits_and_int32_tensor_targets():
    x = leaf(np.array([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]], np.float32))
    y = F.cross_entropy(x, tg.tensor(np.array([1, 2], np.int32)), reduction="none")
    y.sum().backward()
    np.testing.assert_allclose(y.data, [2e4, math.log(3)], rtol=1e-6)
    assert np.isfinite(x.grad).all() and x.grad.dtype == np.float32


@pytest.mark.parametrize(
    "logits, target, error, match",
    [((3, 4), np.array([0.0, 1.0, 2.0]), TypeError, "integer class indices; got dtype float64"),
     ((3, 4), np.array([0, 4, 1]), ValueError, "target 4 at index 1 is out of range for 4 classes"),
     ((3, 4), np.array([0, 1, -1]), ValueError, "target -1 at index 2 is out of range"),
     ((3, 4), np.array([0, 1]), ValueError, r"target must have shape \(3,\).*got \(2,\)"),
     ((4,), np.array([0]), ValueError, r"logits of shape \(N, C\); got \(4,\)")],
)  # fmt: skip
def test_cross_entropy_errors(logits, target, error, match):
    with pytest.raises(error, match=match):
        F.cross_entropy(tg.tensor(np.zeros(logits)), target)
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.cross_entropy(tg.tensor(np.zeros((2, 2))), np.array([0, 1]), reduction="max")


# ---- mse ------------------------------------------------------------------------------------
@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 3)), reduction=reductions, seed=seeds)
def test_mse_forward_and_gradcheck(shape, reduction, seed):
    x, t = values(seed, shape), values(seed + 1, shape)
    y = F.mse_loss(leaf(x), t, reduction=reduction)
    np.testing.assert_allclose(y.data, np_reduce((x - t) ** 2, reduction), rtol=RTOL)
    tg.gradcheck(lambda x, t: F.mse_loss(x, t, reduction=reduction), [leaf(x), leaf(t)],
                 eps=1e-6, rtol=1e-5, atol=1e-8)  # fmt: skip


def test_mse_shape_error():
    with pytest.raises(ValueError, match=r"same shape; got \(2, 3\) and \(3,\)"):
        F.mse_loss(tg.tensor(np.zeros((2, 3))), np.zeros(3))


# ---- Gaussian negative log-likelihood -------------------------------------------------------
var_forms = st.sampled_from(["full", "per_sample", "per_sample_1", "float"])


@given(n=st.integers(1, 4), d=st.integers(1, 3), form=var_forms, full=st.booleans(),
       reduction=reductions, seed=seeds)  # fmt: skip
def test_gaussian_nll_loss_forward_and_gradcheck(n, d, form, full, reduction, seed):
    x, t = values(seed, (n, d)), values(seed + 1, (n, d))
    var = {"full": 0.2 + np.abs(values(seed + 2, (n, d))),
           "per_sample": 0.2 + np.abs(values(seed + 2, n)),
           "per_sample_1": 0.2 + np.abs(values(seed + 2, (n, 1))),
           "float": 0.7}[form]  # fmt: skip
    v = np.broadcast_to(var if form != "per_sample" else var[:, None], (n, d))
    expected = 0.5 * (np.log(v) + (x - t) ** 2 / v) + (0.5 * np.log(2 * np.pi) if full else 0)
    y = F.gaussian_nll_loss(leaf(x), t, var, full=full, reduction=reduction)
    np.testing.assert_allclose(y.data, np_reduce(expected, reduction), rtol=RTOL)

    def loss(x, t, *var_arg):
        return F.gaussian_nll_loss(x, t, *(var_arg or (var,)), full=full, reduction=reduction)

    args = [leaf(x), leaf(t)] + ([] if form == "float" else [leaf(var)])
    tg.gradcheck(loss, args, **GRAD)


def test_gaussian_nll_loss_clamp_passes_the_gradient_through_as_pytorch():
    x, t = leaf(np.array([[0.5]])), np.array([[0.0]])
    var = leaf(np.array([[1e-9]]))  # below eps: clamped to 1e-3 in value, not in gradient
    F.gaussian_nll_loss(x, t, var, eps=1e-3).backward()
    v = 1e-3
    np.testing.assert_allclose(var.grad, 0.5 * (1 / v - 0.25 / v**2), rtol=RTOL)
    np.testing.assert_allclose(x.grad, 0.5 / v, rtol=RTOL)


@pytest.mark.parametrize(
    "var, error, match",
    [(np.array([[1.0, -1.0]]), ValueError, "negative"),
     (np.ones((1, 3)), ValueError, r"var of shape \(1, 3\) does not fit input of shape \(1, 2\)"),
     (np.ones(2), ValueError, "does not fit")],
)  # fmt: skip
def test_gaussian_nll_loss_errors(var, error, match):
    with pytest.raises(error, match=match):
        F.gaussian_nll_loss(tg.tensor(np.zeros((1, 2))), np.zeros((1, 2)), var)


@given(n=st.integers(1, 4), d=st.integers(1, 3), std_form=st.sampled_from(["none", "row", "full"]),
       reduction=reductions, seed=seeds)  # fmt: skip
def test_gaussian_nll_is_the_normal_log_density_and_matches_the_torch_form(
    n, d, std_form, reduction, seed
):
    x, mu = values(seed, (n, d)), values(seed + 1, (n, d))
    log_std = {
        "none": None,
        "row": 0.3 * values(seed + 2, d),
        "full": 0.3 * values(seed + 2, (n, d)),
    }[std_form]
    s = np.exp(0 if log_std is None else log_std)
    expected = -np.log(np.exp(-0.5 * ((x - mu) / s) ** 2) / (s * np.sqrt(2 * np.pi)))
    y = F.gaussian_nll(x, leaf(mu), log_std, reduction=reduction)
    np.testing.assert_allclose(y.data, np_reduce(expected, reduction), rtol=1e-9)
    as_torch = F.gaussian_nll_loss(tg.tensor(mu), x, np.broadcast_to(s * s, (n, d)).copy(),
                                   full=True, reduction=reduction)  # fmt: skip
    np.testing.assert_allclose(y.data, as_torch.data, rtol=1e-9)
    args = [leaf(x), leaf(mu)] + ([] if log_std is None else [leaf(log_std)])
    tg.gradcheck(lambda *a: F.gaussian_nll(*a, reduction=reduction), args, **GRAD)


def test_gaussian_nll_errors():
    with pytest.raises(ValueError, match=r"x and mean must have the same shape"):
        F.gaussian_nll(np.zeros((2, 2)), tg.tensor(np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"log_std of shape \(3,\) does not broadcast"):
        F.gaussian_nll(np.zeros((2, 2)), tg.tensor(np.zeros((2, 2))), tg.tensor(np.zeros(3)))


# ---- dropout --------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, "0.5", True])
def test_dropout_rejects_p_out_of_range(p):
    with pytest.raises(ValueError, match=f"p must be a number in \\[0, 1\\); got {p!r}"):
        F.dropout(tg.tensor(np.ones(3)), p)


def test_dropout_is_inverted_seeded_and_identity_in_eval():
    x = tg.tensor(np.ones((200, 50), np.float32))
    assert F.dropout(x, 0.3, training=False) is x and F.dropout(x, 0.0) is x
    y = F.dropout(x, 0.3, True, np.random.default_rng(5))
    y2 = F.dropout(x, 0.3, True, np.random.default_rng(5))
    np.testing.assert_array_equal(y.data, y2.data)
    assert y.dtype == np.float32
    assert set(np.unique(y.data)) <= {0.0, np.float32(1 / 0.7)}
    assert abs((y.data == 0).mean() - 0.3) < 0.02


@given(seed=seeds)
def test_dropout_gradient_is_the_mask(seed):
    x = leaf(values(seed, (3, 4)))
    tg.gradcheck(lambda x: F.dropout(x, 0.5, True, np.random.default_rng(seed)), [x],
                 eps=1e-6, rtol=1e-5, atol=1e-8)  # fmt: skip
