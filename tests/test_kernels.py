"""Tests for tinygan.kernels: size arithmetic and validation, im2col/col2im, fused kernels;
CPU/GPU parity (marked ``gpu``)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests import reference
from tests.reference import Dim, conv_dim, conv_transpose_dim
from tinygan import backend, kernels
from tinygan.kernels import cpu, shapes
from tinygan.testing import seeds


# ---- shapes.py ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, minimum, expected",
    [(3, 1, (3, 3)), ((2, 5), 1, (2, 5)), ([1, 4], 1, (1, 4)), (0, 0, (0, 0)),
     (np.int64(2), 1, (2, 2))],
)  # fmt: skip
def test_pair_accepts_ints_and_pairs(value, minimum, expected):
    assert shapes.pair(value, "stride", minimum) == expected


@pytest.mark.parametrize(
    "value, minimum, words",
    [(0, 1, ["stride must be positive", "0"]), ((2, -1), 0, ["stride must be >= 0", "(2, -1)"]),
     (1.5, 1, ["int or a pair", "1.5"]), ((1, 2, 3), 1, ["(1, 2, 3)"]), (True, 1, ["True"]),
     ("2", 1, ["'2'"])],
)  # fmt: skip
def test_pair_rejects_bad_values_naming_them(value, minimum, words):
    with pytest.raises(ValueError) as info:
        shapes.pair(value, "stride", minimum)
    for word in words:
        assert word in str(info.value)


def test_out_size_formulas_pinned():
    # PyTorch's documented formulas, e.g. InfoGAN: 28 -> 14 -> 7 and back up.
    assert shapes.conv_out_size(28, 4, 2, 1, 1) == 14
    assert shapes.conv_out_size(14, 4, 2, 1, 1) == 7
    assert shapes.conv_out_size(5, 3, 1, 0, 2) == 1
    assert shapes.conv_out_size(4, 3, 1, 0, 2) == 0  # not positive: the caller rejects it
    assert shapes.conv_transpose_out_size(7, 4, 2, 1, 0, 1) == 14
    assert shapes.conv_transpose_out_size(14, 4, 2, 1, 0, 1) == 28
    assert shapes.conv_transpose_out_size(3, 3, 2, 1, 1, 1) == 6


@given(dim=reference.conv_dims(max_kernel=5, max_stride=4, max_dilation=3, max_extra=8))
def test_transpose_out_size_inverts_conv_out_size(dim: Dim):
    # The transposed conv maps the conv's output size back to its input size, for the
    # output_padding (image - smallest preimage) that is always below the stride.
    k, s, p, d = dim.kernel, dim.stride, dim.padding, dim.dilation
    op = dim.image - shapes.conv_transpose_out_size(dim.grid, k, s, p, 0, d)
    assert 0 <= op < s
    assert shapes.conv_transpose_out_size(dim.grid, k, s, p, op, d) == dim.image


@pytest.mark.parametrize(
    "args, words",
    [(((1, 2, 5, 5), (3, 2, 6, 1), None), ["output size (0, 5)", "input size (5, 5)",
                                           "kernel_size=(6, 1)"]),
     (((1, 2, 5, 5), (3, 2, 3, 3), None, 1, 0, 3), ["output size (-1, -1)", "dilation=(3, 3)"])],
)  # fmt: skip
def test_geometry_errors_name_sizes_and_config(args, words):
    with pytest.raises(ValueError) as info:
        shapes.conv2d_geometry(*args)
    for word in words:
        assert word in str(info.value)


def test_check_cols_fit_rejects_a_grid_larger_than_the_conv_output():
    shapes.check_cols_fit("im2col", (5, 5), (3, 2), (3, 3), (1, 2), (0, 0), (1, 1))
    with pytest.raises(ValueError, match=r"\(4, 2\).*expected between \(1, 1\) and \(3, 2\)"):
        shapes.check_cols_fit("im2col", (5, 5), (4, 2), (3, 3), (1, 2), (0, 0), (1, 1))


# ---- im2col / col2im (NumPy) --------------------------------------------------------------------
def geometry_args(h: Dim, w: Dim):
    """(kernel, stride, padding, dilation) pairs of two dims."""
    return tuple(zip(h[:4], w[:4]))


def any_dims():
    """Conv dims (grid = the conv's output) and transposed-conv dims (grid may be smaller)."""
    return st.one_of(reference.conv_dims(max_extra=4), reference.conv_transpose_dims())


edge_dims = [  # stride > kernel, padding as large as the dilated kernel, kernel == input, 1x1
    (conv_dim(2, 3, 0, 1, 7), conv_dim(1, 3, 0, 1, 5)),
    (conv_dim(3, 1, 3, 1, 1), conv_dim(2, 2, 3, 2, 1)),
    (conv_dim(3, 1, 0, 1, 3), conv_dim(4, 2, 0, 1, 4)),
    (conv_transpose_dim(2, 1, 0, 2, 1, 3), conv_dim(1, 1, 0, 1, 4)),  # output_padding >= stride
]


def with_edge_examples(test):
    for h, w in edge_dims:
        test = example(h=h, w=w, n=2, c=3, seed=0)(test)
    return test


@with_edge_examples
@given(h=any_dims(), w=any_dims(), n=st.integers(1, 2), c=st.integers(1, 3), seed=seeds)
def test_im2col_matches_loops(h, w, n, c, seed):
    k, s, p, d = geometry_args(h, w)
    x = np.random.default_rng(seed).standard_normal((n, h.image, w.image, c))
    cols = cpu.im2col(x, *k, s, p, d, (h.grid, w.grid))
    assert cols.shape == (n, h.grid, w.grid, *k, c) and cols.flags.c_contiguous
    np.testing.assert_array_equal(cols, reference.im2col(x, k, s, p, d, (h.grid, w.grid)))
    x_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # a strided NHWC view reads the same
    np.testing.assert_array_equal(cpu.im2col(x_nchw.transpose(0, 2, 3, 1), *k, s, p, d,
                                             (h.grid, w.grid)), cols)  # fmt: skip


@with_edge_examples
@given(h=any_dims(), w=any_dims(), n=st.integers(1, 2), c=st.integers(1, 3), seed=seeds)
def test_col2im_matches_loops(h, w, n, c, seed):
    k, s, p, d = geometry_args(h, w)
    cols = np.random.default_rng(seed).standard_normal((n, h.grid, w.grid, *k, c))
    x = cpu.col2im(cols, (h.image, w.image), s, p, d)
    assert x.shape == (n, h.image, w.image, c)
    np.testing.assert_allclose(x, reference.col2im(cols, (h.image, w.image), s, p, d), rtol=1e-12)


@with_edge_examples
@given(h=any_dims(), w=any_dims(), n=st.integers(1, 2), c=st.integers(1, 3), seed=seeds)
@pytest.mark.parametrize("tap_gemm_min_channels", [0, cpu.TAP_GEMM_MIN_CHANNELS])
def test_gemm_col2im_is_col2im_of_the_product(tap_gemm_min_channels, h, w, n, c, seed):
    # both paths against the loop reference: tap by tap (threshold 0) and one GEMM + col2im
    k, s, p, d = geometry_args(h, w)
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((n * h.grid * w.grid, 2))
    wmat = rng.standard_normal((2, k[0] * k[1] * c))
    cols = (rows @ wmat).reshape(n, h.grid, w.grid, *k, c)
    want = reference.col2im(cols, (h.image, w.image), s, p, d)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cpu, "TAP_GEMM_MIN_CHANNELS", tap_gemm_min_channels)
        got = kernels.gemm_col2im(rows, wmat, (h.grid, w.grid), (h.image, w.image), k, s, p, d)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@with_edge_examples
@given(h=any_dims(), w=any_dims(), n=st.integers(1, 2), c=st.integers(1, 3), seed=seeds)
def test_im2col_and_col2im_are_adjoint(h, w, n, c, seed):
    # <im2col(x), cols> == <x, col2im(cols)>, through the dispatching entry points
    k, s, p, d = geometry_args(h, w)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h.image, w.image, c))
    cols = rng.standard_normal((n, h.grid, w.grid, *k, c))
    lhs = np.vdot(kernels.im2col(x, *k, s, p, d, (h.grid, w.grid)), cols)
    rhs = np.vdot(x, kernels.col2im(cols, (h.image, w.image), s, p, d))
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_keep_dtype(dtype):
    x = np.ones((2, 5, 6, 3), dtype)
    cols = kernels.im2col(x, 3, 2, (1, 2), (1, 0), (1, 1), (5, 3))
    assert cols.dtype == dtype
    assert kernels.col2im(cols, (5, 6), (1, 2), (1, 0), (1, 1)).dtype == dtype


# ---- fused elementwise kernels (NumPy) ----------------------------------------------------------
# float32: inputs rounded to float32 and cancellation in g - m leave errors of a few ulps of O(1)
@pytest.mark.parametrize(
    "dtype, rtol, atol", [(np.float64, 1e-12, 1e-14), (np.float32, 1e-5, 1e-6)]
)
@pytest.mark.parametrize("beta1, weight_decay", [(0.5, 0.0), (0.9, 0.01)])
@pytest.mark.parametrize("n", [50, 2 * cpu._ADAM_BLOCK + 7])  # one block; blocks and a partial one
def test_adam_update_matches_torch_algorithm(dtype, rtol, atol, beta1, weight_decay, n):
    rng = np.random.default_rng(0)
    lr, beta2, eps = 1e-3, 0.999, 1e-8
    param0 = rng.standard_normal(n)
    grads = [rng.standard_normal(n) for _ in range(4)]
    param, m, v = param0.astype(dtype), np.zeros(n, dtype), np.zeros(n, dtype)
    ids = id(param), id(m), id(v)
    p, mm, vv = param0.copy(), 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        bc1, bc2 = 1 - beta1**t, 1 - beta2**t
        kernels.adam_update(param, g.astype(dtype), m, v, lr, beta1, beta2, eps, bc1, bc2,
                            weight_decay)  # fmt: skip
        # torch.optim.Adam (docs): eps is added to sqrt(v) / sqrt(bc2), not to sqrt(v / bc2)
        g = g + weight_decay * p
        mm = beta1 * mm + (1 - beta1) * g
        vv = beta2 * vv + (1 - beta2) * g * g
        p = p - lr / bc1 * mm / (np.sqrt(vv) / np.sqrt(bc2) + eps)
    assert (id(param), id(m), id(v)) == ids and param.dtype == m.dtype == v.dtype == dtype
    for got, want in ((param, p), (m, mm), (v, vv)):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def test_adam_update_on_strided_arrays_matches_contiguous():
    rng = np.random.default_rng(0)
    p, g, m = (rng.standard_normal((40, 30)).astype(np.float32) for _ in range(3))
    v = rng.random((40, 30), dtype=np.float32)
    args = (1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001, 0.01)
    strided = [a.T.copy().T for a in (p, g, m, v)]  # same values, Fortran order
    kernels.adam_update(*strided, *args)
    kernels.adam_update(p, g, m, v, *args)
    for a, b in zip((p, m, v), (strided[0], strided[2], strided[3])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "shape, channels_last",
    [((4, 3, 5, 5), False), ((64, 16, 8, 8), True), ((64, 16, 8, 8), False), ((2048, 9), True),
     ((2048, 4), True), ((3, 7), True)],
)  # fmt: skip
def test_channel_sum_matches_float64_sum_on_every_layout(shape, channels_last):
    # tall channels-last matrices go through the GEMV, the rest through NumPy's reduction
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape).astype(np.float32)
    if channels_last and a.ndim == 4:
        a = np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    got = kernels.channel_sum(a)
    want = a.astype(np.float64).sum(axis=(0, *range(2, a.ndim)))
    assert got.shape == (shape[1],) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.sqrt(a.size / shape[1]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_leaky_relu_kernels(dtype):
    x = np.array([-2.0, -0.0, 0.0, 1.5], dtype)
    gy = np.array([1.0, 2.0, 3.0, 4.0], dtype)
    y, gx = kernels.leaky_relu_forward(x, 0.1), kernels.leaky_relu_backward(x, gy, 0.1)
    assert y.dtype == gx.dtype == dtype
    np.testing.assert_allclose(y, np.array([-0.2, 0, 0, 1.5], dtype), rtol=1e-6)
    np.testing.assert_allclose(gx, np.array([0.1, 0.2, 0.3, 4.0], dtype), rtol=1e-6)  # 0 -> slope


# ---- CPU / GPU parity ---------------------------------------------------------------------------
DTYPES_TOL = [(np.float32, 1e-5), (np.float64, 1e-12)]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tol", DTYPES_TOL)
@with_edge_examples
@given(h=any_dims(), w=any_dims(), n=st.integers(1, 2), c=st.integers(1, 3), seed=seeds)
def test_gpu_im2col_col2im_match_cpu(dtype, tol, h, w, n, c, seed):
    cupy = backend.cupy()
    from tinygan.kernels import cuda

    k, s, p, d = geometry_args(h, w)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h.image, w.image, c)).astype(dtype)
    cols = rng.standard_normal((n, h.grid, w.grid, *k, c)).astype(dtype)
    gpu_cols = cuda.im2col(cupy.asarray(x), *k, s, p, d, (h.grid, w.grid))
    assert gpu_cols.dtype == dtype and gpu_cols.flags.c_contiguous
    np.testing.assert_array_equal(
        cupy.asnumpy(gpu_cols), cpu.im2col(x, *k, s, p, d, (h.grid, w.grid))
    )
    gpu_x = kernels.col2im(cupy.asarray(cols), (h.image, w.image), s, p, d)  # via the dispatcher
    assert isinstance(gpu_x, cupy.ndarray) and gpu_x.dtype == dtype
    np.testing.assert_allclose(cupy.asnumpy(gpu_x), cpu.col2im(cols, (h.image, w.image), s, p, d),
                               rtol=tol, atol=tol)  # fmt: skip


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tol", DTYPES_TOL)
def test_gpu_im2col_on_a_strided_view_and_a_large_input(dtype, tol):
    cupy = backend.cupy()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 64, 14, 14)).astype(dtype)  # NCHW; im2col reads an NHWC view
    args = (4, 4, (2, 2), (1, 1), (1, 1), (7, 7))
    gpu = kernels.im2col(cupy.asarray(x).transpose(0, 2, 3, 1), *args)
    np.testing.assert_array_equal(cupy.asnumpy(gpu), cpu.im2col(x.transpose(0, 2, 3, 1), *args))
    cols = rng.standard_normal((64, 7, 7, 4, 4, 64)).astype(dtype)
    gpu = kernels.col2im(cupy.asarray(cols), (14, 14), (2, 2), (1, 1), (1, 1))
    cpu_x = cpu.col2im(cols, (14, 14), (2, 2), (1, 1), (1, 1))
    np.testing.assert_allclose(cupy.asnumpy(gpu), cpu_x, rtol=tol, atol=tol)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tol", DTYPES_TOL)
def test_gpu_leaky_relu_matches_cpu(dtype, tol):
    cupy = backend.cupy()
    rng = np.random.default_rng(1)
    x, gy = (rng.standard_normal(1000).astype(dtype) for _ in range(2))
    x[:3] = 0
    for slope in (0.1, 0.2):
        y = kernels.leaky_relu_forward(cupy.asarray(x), slope)
        gx = kernels.leaky_relu_backward(cupy.asarray(x), cupy.asarray(gy), slope)
        assert y.dtype == gx.dtype == dtype
        np.testing.assert_allclose(cupy.asnumpy(y), cpu.leaky_relu_forward(x, slope), rtol=tol)
        np.testing.assert_allclose(
            cupy.asnumpy(gx), cpu.leaky_relu_backward(x, gy, slope), rtol=tol
        )


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tol", DTYPES_TOL)
@pytest.mark.parametrize("beta1, weight_decay", [(0.5, 0.0), (0.9, 0.01)])
def test_gpu_adam_update_matches_cpu(dtype, tol, beta1, weight_decay):
    cupy = backend.cupy()
    rng = np.random.default_rng(2)
    lr, beta2, eps = 2e-4, 0.999, 1e-8
    host = [rng.standard_normal((30, 40)).astype(dtype), np.zeros((30, 40), dtype),
            np.zeros((30, 40), dtype)]  # fmt: skip
    dev = [cupy.asarray(a) for a in host]
    for t in range(1, 6):
        g = rng.standard_normal((30, 40)).astype(dtype)
        scalars = (lr, beta1, beta2, eps, 1 - beta1**t, 1 - beta2**t, weight_decay)
        cpu.adam_update(host[0], g, host[1], host[2], *scalars)
        kernels.adam_update(dev[0], cupy.asarray(g), dev[1], dev[2], *scalars)
    for d, h in zip(dev, host):
        assert d.dtype == dtype
        np.testing.assert_allclose(cupy.asnumpy(d), h, rtol=tol, atol=tol)
