"""Tests for conv2d and conv_transpose2d (tinygan.ops.conv): forward against loop oracles,
gradient checks, algebraic identities, validation errors, dtypes, memory layout, CPU/GPU parity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import tinygan as tg
from tests import reference
from tests.reference import ConvCase, conv_cases, conv_dim, conv_transpose_dim
from tinygan.kernels.shapes import conv2d_geometry
from tinygan.ops.conv import Conv2dFunction, conv2d, conv_transpose2d
from tinygan.testing import seeds

# Gradient-check tolerances (guide §6, float64). Conv is linear in each input, so central
# differences are exact up to rounding.
GRAD_TOL = dict(eps=1e-6, rtol=1e-5, atol=1e-8)

EDGE_CONVS = [
    # stride larger than the kernel
    ConvCase(2, 2, 3, conv_dim(2, 3, 0, 1, 7), conv_dim(1, 3, 0, 1, 5), True, False),
    # padding as large as the (dilated) kernel's extent
    ConvCase(1, 2, 2, conv_dim(3, 1, 3, 1, 1), conv_dim(2, 2, 3, 2, 1), False, False),
    # kernel equal to the input size
    ConvCase(2, 3, 2, conv_dim(3, 1, 0, 1, 3), conv_dim(4, 2, 0, 1, 4), True, False),
    # 1x1 kernels
    ConvCase(2, 3, 2, conv_dim(1, 1, 0, 1, 4), conv_dim(1, 2, 0, 1, 5), False, False),
]
EDGE_TRANSPOSED = [
    ConvCase(2, 2, 3, conv_transpose_dim(2, 3, 0, 1, 2, 3), conv_transpose_dim(1, 3, 0, 1, 0, 2),
             True, True),
    ConvCase(1, 2, 2, conv_transpose_dim(3, 2, 2, 1, 1, 3), conv_transpose_dim(3, 1, 2, 1, 0, 3),
             False, True),
    ConvCase(2, 3, 2, conv_transpose_dim(3, 1, 0, 1, 0, 1), conv_transpose_dim(2, 1, 0, 1, 0, 1),
             True, True),
    ConvCase(2, 3, 2, conv_transpose_dim(1, 1, 0, 1, 0, 3), conv_transpose_dim(1, 2, 0, 2, 1, 3),
             False, True),
    # output_padding >= stride (allowed when dilation > stride): the last row gets only bias
    ConvCase(1, 2, 2, conv_transpose_dim(2, 1, 0, 2, 1, 3), conv_transpose_dim(2, 1, 1, 3, 2, 2),
             True, True),
]  # fmt: skip


def with_examples(cases):
    def decorate(test):
        for case in cases:
            test = example(case=case, seed=0)(test)
        return test

    return decorate


def both(max_extra=3, max_grid=4, **kwargs):
    """Conv cases (input sizes up to ``max_extra`` above the smallest valid one) and
    transposed-conv cases (input sizes up to ``max_grid``)."""
    return st.one_of(
        conv_cases(False, max_extra=max_extra, **kwargs),
        conv_cases(True, max_grid=max_grid, **kwargs),
    )


def run(case: ConvCase, x, w, b):
    fn = conv_transpose2d if case.transpose else conv2d
    return fn(x, w, b, **case.kwargs())


def tensors(case: ConvCase, seed: int, dtype=np.float64, requires_grad=True):
    return [None if a is None else tg.tensor(a, requires_grad=requires_grad)
            for a in case.arrays(seed, dtype)]  # fmt: skip


# ---- forward ------------------------------------------------------------------------------------
@with_examples(EDGE_CONVS + EDGE_TRANSPOSED)
@given(case=both(max_kernel=4, max_dilation=3, max_extra=6, max_grid=5), seed=seeds)
def test_forward_matches_loop_oracle(case, seed):
    x, w, b = case.arrays(seed)
    y = run(case, *(None if a is None else tg.tensor(a) for a in (x, w, b)))
    assert y.shape == case.y_shape and y.dtype == np.float64
    # rtol from the guide; atol only for outputs that cancel to ~0 (sums of ~20 products)
    np.testing.assert_allclose(y.numpy(), case.oracle(x, w, b), rtol=1e-10, atol=1e-12)


@given(case=both(max_extra=4), seed=seeds)
def test_output_is_an_nchw_view_of_channels_last_memory(case, seed):
    # channels innermost (unit stride), then W, then H: the next conv reads contiguous taps.
    # (A transposed conv with padding returns a crop of a padded NHWC buffer: not contiguous.)
    y = run(case, *tensors(case, seed, requires_grad=False))
    item, (_, c, _, w) = y.data.itemsize, y.shape
    _, c_stride, h_stride, w_stride = y.data.strides
    assert c_stride == item and w_stride == c * item and h_stride >= w * c * item


# ---- gradients ----------------------------------------------------------------------------------
@with_examples(EDGE_CONVS + EDGE_TRANSPOSED)
@given(case=both(max_extra=4, max_grid=4), seed=seeds)
def test_gradcheck_full_on_small_cases(case, seed):
    x, w, b = tensors(case, seed)
    inputs = [x, w] if b is None else [x, w, b]
    tg.gradcheck(lambda *a: run(case, a[0], a[1], a[2] if len(a) > 2 else None), inputs,
                 **GRAD_TOL)  # fmt: skip


@given(case=both(max_batch=4, max_channels=8, max_kernel=5, max_extra=12, max_grid=10), seed=seeds)
def test_gradcheck_vjp_on_larger_cases(case, seed):
    x, w, b = tensors(case, seed)
    inputs = [x, w] if b is None else [x, w, b]
    tg.gradcheck(lambda *a: run(case, a[0], a[1], a[2] if len(a) > 2 else None), inputs,
                 mode="vjp", n_directions=3, **GRAD_TOL)  # fmt: skip


@pytest.mark.parametrize("which", [(True, False, False), (False, True, False), (False, False, True),
                                   (True, False, True)])  # fmt: skip
@pytest.mark.parametrize("transpose", [False, True])
def test_only_the_needed_grads_are_computed_and_they_are_right(which, transpose):
    case = EDGE_TRANSPOSED[1] if transpose else EDGE_CONVS[1]
    case = case._replace(bias=True)
    full = tensors(case, 3)
    run(case, *full).sum().backward()
    part = [tg.tensor(a.data, requires_grad=r) for a, r in zip(full, which)]
    run(case, *part).sum().backward()
    for a, p, r in zip(full, part, which):
        if r:
            np.testing.assert_array_equal(p.grad, a.grad)
        else:
            assert p.grad is None


@given(seed=seeds, stride=st.integers(1, 2), padding=st.integers(0, 2), bias=st.booleans())
def test_a_chain_of_layers_matches_the_oracles_and_gradchecks(seed, stride, padding, bias):
    # The second and third layers get NHWC-memory inputs, and their upstream grads arrive in
    # NHWC memory: the layouts that a network produces, not the contiguous NCHW of the tests above.
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 7, 6))
    w1, w2, w3 = (rng.standard_normal(s) for s in ((4, 3, 3, 2), (4, 2, 2, 3), (3, 2, 3, 3)))
    b = rng.standard_normal(3) if bias else None
    kw = dict(stride=stride, padding=padding)

    def chain(x, w1, w2, w3, b):
        h = conv2d(x, w1, **kw)
        return conv2d(conv_transpose2d(h, w2, **kw) * 0.5, w3, b)

    want = reference.conv2d(reference.conv_transpose2d(reference.conv2d(x, w1, **pairs(kw)),
                                                       w2, **pairs(kw)) * 0.5, w3, b)  # fmt: skip
    ts = [tg.tensor(a, requires_grad=True) for a in (x, w1, w2, w3)]
    ts.append(None if b is None else tg.tensor(b, requires_grad=True))
    np.testing.assert_allclose(chain(*ts).numpy(), want, rtol=1e-10, atol=1e-12)
    tg.gradcheck(chain, ts, mode="vjp", **GRAD_TOL)


def pairs(kwargs):
    return {k: (v, v) for k, v in kwargs.items()}


class _BrokenConv2d(Conv2dFunction):
    def __init__(self, breakage, x, w, b, **kwargs):
        k = kwargs
        super().__init__(conv2d_geometry(x.shape, w.shape, b.shape, k["stride"], k["padding"],
                                         k["dilation"]))  # fmt: skip
        self.breakage = breakage

    def backward(self, gy):
        gx, gw, gb = super().backward(gy)
        if self.breakage == "input grad shifted one pixel":
            gx = tg.tensor(np.roll(gx.data, 1, axis=3))
        elif self.breakage == "weight grad kernel flipped":
            gw = gw[:, :, ::-1, ::-1]
        else:  # "bias grad averaged over the batch"
            gb = gb / gy.shape[0]
        return gx, gw, gb


@pytest.mark.parametrize("breakage", ["input grad shifted one pixel", "weight grad kernel flipped",
                                      "bias grad averaged over the batch"])  # fmt: skip
@pytest.mark.parametrize("mode", ["full", "vjp"])
def test_a_broken_backward_fails_gradcheck(breakage, mode):
    case = ConvCase(2, 2, 3, conv_dim(3, 1, 1, 1, 5), conv_dim(2, 2, 0, 1, 6), True, False)
    x, w, b = tensors(case, 1)

    def fn(x, w, b):
        return _BrokenConv2d(breakage, x, w, b, **case.kwargs())(x, w, b)

    with pytest.raises(tg.GradcheckError):
        tg.gradcheck(fn, [x, w, b], mode=mode, **GRAD_TOL)


# ---- identities ---------------------------------------------------------------------------------
@given(case=conv_cases(False, max_batch=3, max_channels=4, max_kernel=4, max_extra=6), seed=seeds)
def test_conv_transpose_is_the_adjoint_of_conv(case, seed):
    # <conv2d(x, W), y> == <x, conv_transpose2d(y, W)>, with the output_padding that gives back
    # x's size: image - transposed_out_size(grid, output_padding=0), always below the stride.
    x, w, _ = case.arrays(seed)
    y = np.random.default_rng(seed + 1).standard_normal(case.y_shape)
    output_padding = tuple(
        d.image - ((d.grid - 1) * d.stride - 2 * d.padding + d.dilation * (d.kernel - 1) + 1)
        for d in (case.h, case.w)
    )
    kwargs = case.kwargs()
    lhs = np.vdot(conv2d(tg.tensor(x), tg.tensor(w), **kwargs).numpy(), y)
    back = conv_transpose2d(tg.tensor(y), tg.tensor(w), output_padding=output_padding, **kwargs)
    assert back.shape == x.shape
    assert lhs == pytest.approx(np.vdot(x, back.numpy()), rel=1e-10, abs=1e-10)


@given(n=st.integers(1, 3), c=st.integers(1, 5), out=st.integers(1, 5), h=st.integers(1, 6),
       w=st.integers(1, 6), stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       bias=st.booleans(), seed=seeds)  # fmt: skip
def test_1x1_conv_is_linear_over_channels(n, c, out, h, w, stride, bias, seed):
    rng = np.random.default_rng(seed)
    x, wt = rng.standard_normal((n, c, h, w)), rng.standard_normal((out, c, 1, 1))
    b = rng.standard_normal(out) if bias else None
    y = conv2d(tg.tensor(x), tg.tensor(wt), None if b is None else tg.tensor(b), stride=stride)
    pixels = x[:, :, :: stride[0], :: stride[1]].transpose(0, 2, 3, 1)  # (N, OH, OW, C)
    linear = pixels @ wt[:, :, 0, 0].T + (0 if b is None else b)
    np.testing.assert_allclose(y.numpy(), linear.transpose(0, 3, 1, 2), rtol=1e-10, atol=1e-12)


# ---- validation ---------------------------------------------------------------------------------
BAD_CALLS = [
    ("conv_transpose2d", (1, 2, 4, 4), (2, 3, 3, 3), dict(stride=2, output_padding=2),
     ["output_padding=(2, 2)", "max(stride, dilation) = (2, 2)"]),
    ("conv_transpose2d", (1, 2, 4, 4), (2, 3, 3, 3), dict(stride=(2, 1), dilation=(1, 3),
                                                          output_padding=(1, 3)),
     ["output_padding=(1, 3)", "(2, 3)"]),
    ("conv2d", (1, 2, 4, 5), (3, 2, 5, 3), {}, ["output size (0, 3)", "input size (4, 5)",
                                                "kernel_size=(5, 3)"]),
    ("conv2d", (1, 2, 4, 4), (3, 2, 3, 3), dict(dilation=2), ["output size (0, 0)", "dilation=(2, 2)"]),
    ("conv_transpose2d", (1, 2, 2, 2), (2, 3, 3, 3), dict(padding=(1, 2)),
     ["output size (2, 0)", "input size (2, 2)", "padding=(1, 2)"]),
    ("conv2d", (1, 3, 5, 5), (4, 2, 3, 3), {}, ["3 channels", "(4, 2, 3, 3)", "expects 2"]),
    ("conv_transpose2d", (1, 3, 5, 5), (2, 4, 3, 3), {}, ["3 channels", "(2, 4, 3, 3)", "expects 2"]),
    ("conv2d", (1, 2, 5, 5), (4, 2, 3), {}, ["4-D weight", "(4, 2, 3)"]),
    ("conv2d", (2, 5, 5), (4, 2, 3, 3), {}, ["4-D input", "(2, 5, 5)"]),
    ("conv2d", (1, 2, 5, 5), (4, 2, 3, 3), dict(stride=0), ["stride must be positive", "0"]),
    ("conv2d", (1, 2, 5, 5), (4, 2, 3, 3), dict(padding=-1), ["padding", "-1"]),
    ("conv2d", (1, 2, 5, 5), (4, 2, 0, 3), {}, ["kernel size", "(0, 3)"]),
]  # fmt: skip


@pytest.mark.parametrize("op, x_shape, w_shape, kwargs, words", BAD_CALLS)
def test_bad_arguments_raise_value_errors_naming_the_values(op, x_shape, w_shape, kwargs, words):
    fn = conv2d if op == "conv2d" else conv_transpose2d
    with pytest.raises(ValueError) as info:
        fn(tg.tensor(np.zeros(x_shape)), tg.tensor(np.zeros(w_shape)), **kwargs)
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value}"


@pytest.mark.parametrize("fn", [conv2d, conv_transpose2d])
def test_bias_of_the_wrong_shape_is_named(fn):
    x, w = tg.tensor(np.zeros((1, 2, 4, 4))), tg.tensor(np.zeros((2, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\).*got \(3,\)"):
        fn(x, w, tg.tensor(np.zeros(3)))


@pytest.mark.parametrize("fn", [conv2d, conv_transpose2d])
def test_mixed_or_integer_dtypes_raise_type_errors(fn):
    w = tg.tensor(np.zeros((2, 2, 3, 3), np.float32))
    with pytest.raises(TypeError, match="float32 and float64"):
        fn(tg.tensor(np.zeros((1, 2, 4, 4))), w)
    with pytest.raises(TypeError, match="int64"):
        fn(tg.tensor(np.zeros((1, 2, 4, 4), np.int64)), w)


# ---- dtypes -------------------------------------------------------------------------------------
@with_examples(EDGE_CONVS[:1] + EDGE_TRANSPOSED[:1])
@given(case=both(max_extra=4), seed=seeds)
def test_float32_stays_float32_in_forward_and_backward(case, seed):
    x, w, b = tensors(case, seed, np.float32)
    y = run(case, x, w, b)
    assert y.dtype == np.float32
    u = np.random.default_rng(seed).standard_normal(y.shape).astype(np.float32)
    y.backward(u)
    ref = tensors(case, seed)  # the same values in float64
    run(case, *ref).backward(u.astype(np.float64))
    for a, r in zip((x, w, b), ref):
        if a is not None:
            assert a.grad.dtype == np.float32 and a.grad.shape == a.shape
            np.testing.assert_allclose(a.grad, r.grad, rtol=1e-4, atol=1e-4)  # float32 rounding


# ---- CPU / GPU parity ---------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@with_examples(EDGE_CONVS + EDGE_TRANSPOSED)
@given(case=both(max_batch=3, max_channels=4, max_kernel=4, max_extra=6), seed=seeds)
def test_gpu_matches_cpu(dtype, tol, case, seed):
    cupy = tg.backend.cupy()
    host = tensors(case, seed, dtype)
    dev = [None if a is None else tg.tensor(cupy.asarray(a.data), requires_grad=True) for a in host]
    y_host, y_dev = run(case, *host), run(case, *dev)
    assert y_dev.device == "cuda" and y_dev.dtype == dtype
    np.testing.assert_allclose(y_dev.numpy(), y_host.numpy(), rtol=tol, atol=tol)
    u = np.random.default_rng(seed).standard_normal(y_host.shape).astype(dtype)
    y_host.backward(u)
    y_dev.backward(cupy.asarray(u))
    for a, d in zip(host, dev):
        if a is not None:
            assert d.grad.dtype == dtype
            np.testing.assert_allclose(cupy.asnumpy(d.grad), a.grad, rtol=tol, atol=tol)


def test_conv_keeps_its_patches_only_when_the_weight_needs_a_gradient():
    """With a frozen weight (InfoGAN's G step), forward drops im2col's buffer; the input's
    gradient is the same as with a trainable weight."""
    rng = np.random.default_rng(0)
    a, wa = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    x, w = tg.tensor(a, requires_grad=True), tg.tensor(wa)
    g = conv2d_geometry(a.shape, wa.shape, None, (1, 1), (1, 1), (1, 1))
    frozen = Conv2dFunction(g)
    y = frozen(x, w)
    assert frozen.cols is None
    y.sum().backward()
    x2, w2 = tg.tensor(a, requires_grad=True), tg.tensor(wa, requires_grad=True)
    trained = Conv2dFunction(g)
    y2 = trained(x2, w2)
    assert trained.cols is not None
    y2.sum().backward()
    np.testing.assert_array_equal(x.grad, x2.grad)
