"""The CUDA kernels' arithmetic on the CPU: the sources of tinygan/kernels/cuda.py compiled as C++
for the host (tests/cuda_build.py: a shim for the thread indices; a launch runs its threads in
turn) against kernels/cpu.py, bit for bit.

Launches have 1-4 blocks of 1-33 threads, usually fewer threads than elements, so that threads
go round the grid-stride loop several times, as on a GPU past 65535 x 256 elements (a planted
stride bug must fail with such a grid); outputs start as NaN, so an element no thread writes
shows. The elementwise kernels run through their
launchers in kernels/cuda.py. Needs a C++ compiler (g++): without one the tests are skipped,
with the reason.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests import cuda_build, reference
from tests.reference import Dim, conv_dim
from tinygan.kernels import cpu, cuda
from tinygan.testing import seeds

pytestmark = pytest.mark.skipif(
    cuda_build.host_compiler() is None, reason="no C++ compiler (g++, or $CXX) on PATH"
)

RAW = cuda_build.raw_sources()
dims = st.one_of(reference.conv_dims(max_extra=4), reference.conv_transpose_dims())
grids = st.tuples(st.integers(1, 4), st.integers(1, 33))  # (blocks, threads per block)


def run_im2col(source: str, dtype, h: Dim, w: Dim, n: int, c: int, seed: int, grid) -> None:
    """im2col compiled from ``source`` against cpu.im2col (raises AssertionError if they differ)."""
    k, s, p, d = zip(h[:4], w[:4])
    x = np.random.default_rng(seed).standard_normal((n, h.image, w.image, c)).astype(dtype)
    cols = np.full((n, h.grid, w.grid, *k, c), np.nan, dtype)
    kernel = cuda_build.HostKernel(source, "im2col", dtype)
    kernel(*grid, x=x, cols=cols, total=cols.size, **geometry(h, w, n, c))
    np.testing.assert_array_equal(cols, cpu.im2col(x, *k, s, p, d, (h.grid, w.grid)))


def run_col2im(source: str, dtype, h: Dim, w: Dim, n: int, c: int, seed: int, grid) -> None:
    """col2im compiled from ``source`` against cpu.col2im (the same sums in the same order)."""
    k, s, p, d = zip(h[:4], w[:4])
    cols = np.random.default_rng(seed).standard_normal((n, h.grid, w.grid, *k, c)).astype(dtype)
    x = np.full((n, h.image, w.image, c), np.nan, dtype)
    kernel = cuda_build.HostKernel(source, "col2im", dtype)
    kernel(*grid, cols=cols, x=x, total=x.size, **geometry(h, w, n, c))
    np.testing.assert_array_equal(x, cpu.col2im(cols, (h.image, w.image), s, p, d))


def geometry(h: Dim, w: Dim, n: int, c: int) -> dict[str, int]:
    """The conv geometry the raw kernels take, by parameter name."""
    return dict(N=n, H=h.image, W=w.image, C=c, KH=h.kernel, KW=w.kernel, OH=h.grid, OW=w.grid,
                SH=h.stride, SW=w.stride, PH=h.padding, PW=w.padding, DH=h.dilation,
                DW=w.dilation)  # fmt: skip


@pytest.mark.parametrize("dtype", cuda_build.DTYPES)
@given(h=dims, w=dims, n=st.integers(1, 2), c=st.integers(1, 3), seed=seeds, grid=grids)
def test_im2col_matches_cpu(dtype, h, w, n, c, seed, grid):
    run_im2col(RAW["im2col"], dtype, h, w, n, c, seed, grid)


@pytest.mark.parametrize("dtype", cuda_build.DTYPES)
@given(h=dims, w=dims, n=st.integers(1, 2), c=st.integers(1, 3), seed=seeds, grid=grids)
def test_col2im_matches_cpu(dtype, h, w, n, c, seed, grid):
    run_col2im(RAW["col2im"], dtype, h, w, n, c, seed, grid)


# the geometry and launch of the planted-bug controls: non-square, every pair unequal
H, W = conv_dim(3, 2, 2, 2, 9), conv_dim(2, 1, 1, 1, 6)
SMALL_GRID = (2, 3)


@pytest.mark.parametrize(
    "run, old, new",
    [(run_im2col, "+ j * DW", "+ j * DH"),  # the wrong dilation
     (run_col2im, "w + PW - j", "w + PH - j"),  # the wrong padding
     (run_col2im, "* KW + j) * C + c]", "* KW + j) * C + (C - 1 - c)]")],  # the wrong channel
)  # fmt: skip
def test_a_planted_wrong_index_fails_the_comparison(run, old, new):
    source = RAW[run.__name__.removeprefix("run_")]
    run(source, np.float64, H, W, 2, 3, 0, SMALL_GRID)
    with pytest.raises(AssertionError, match="Mismatched elements"):
        run(cuda_build.plant(source, old, new), np.float64, H, W, 2, 3, 0, SMALL_GRID)


@pytest.mark.parametrize("run", [run_im2col, run_col2im])
def test_a_planted_grid_stride_bug_fails_only_with_a_grid_smaller_than_the_work(run):
    # threads that skip every other turn of the loop leave elements unwritten (NaN)
    source = RAW[run.__name__.removeprefix("run_")]
    planted = cuda_build.plant(source, "k += (long long)blockDim.x * gridDim.x",
                               "k += 2 * (long long)blockDim.x * gridDim.x")  # fmt: skip
    run(planted, np.float64, H, W, 2, 3, 0, (64, 64))  # a thread per element: one turn each
    with pytest.raises(AssertionError, match="nan location mismatch"):
        run(planted, np.float64, H, W, 2, 3, 0, SMALL_GRID)


# ---- elementwise kernels, through their launchers ----------------------------------------------
def vectors(seed: int, size: int, dtype, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(size).astype(dtype) for _ in range(count)]


@pytest.mark.parametrize("dtype", cuda_build.DTYPES)
@given(size=st.integers(1, 300), seed=seeds, grid=grids,
       slope=st.sampled_from([0.0, 0.01, 0.1, 0.2, 1.0, -0.5, 1.5]))  # fmt: skip
def test_leaky_relu_kernels_match_cpu(dtype, size, seed, grid, slope):
    x, gy = vectors(seed, size, dtype, 2)
    x[::7] = 0  # the kink: the gradient there is slope
    with cuda_build.host_elementwise(grid):
        y, gx = cuda.leaky_relu_forward(x, slope), cuda.leaky_relu_backward(x, gy, slope)
    np.testing.assert_array_equal(y, cpu.leaky_relu_forward(x, slope))
    np.testing.assert_array_equal(gx, cpu.leaky_relu_backward(x, gy, slope))


def run_adam(dtype, size: int, seed: int, grid, hyper: tuple, operations=None) -> None:
    """Three Adam steps of the launcher on host kernels against cpu.adam_update."""
    lr, beta1, beta2, eps, weight_decay = hyper
    param, m, v, *grads = vectors(seed, size, dtype, 6)
    v = v * v  # a second moment is not negative
    host, want = [param, m, v], [param.copy(), m.copy(), v.copy()]
    for t, g in enumerate(grads, start=1):
        args = (lr, beta1, beta2, eps, 1 - beta1**t, 1 - beta2**t, weight_decay)
        with cuda_build.host_elementwise(grid, operations):
            cuda.adam_update(host[0], g, host[1], host[2], *args)
        cpu.adam_update(want[0], g, want[1], want[2], *args)
        for got, expected in zip(host, want):
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", cuda_build.DTYPES)
@given(size=st.integers(1, 300), seed=seeds, grid=grids,
       lr=st.sampled_from([1e-3, 2e-4, 0.1]), beta1=st.sampled_from([0.0, 0.3, 0.5, 0.9]),
       beta2=st.sampled_from([0.9, 0.999]), eps=st.sampled_from([1e-8, 1e-3]),
       weight_decay=st.sampled_from([0.0, 0.01]))  # fmt: skip
def test_adam_kernel_matches_cpu(dtype, size, seed, grid, lr, beta1, beta2, eps, weight_decay):
    run_adam(dtype, size, seed, grid, (lr, beta1, beta2, eps, weight_decay))


def test_a_planted_adam_bug_fails_the_comparison():
    hyper = (1e-3, 0.9, 0.999, 1e-8, 0.0)
    run_adam(np.float32, 100, 0, SMALL_GRID, hyper)
    op = cuda_build.plant(cuda._ELEMENTWISE["adam_update"][2], "w2 * g * g", "w1 * g * g")
    with pytest.raises(AssertionError, match="Mismatched elements"):
        run_adam(np.float32, 100, 0, SMALL_GRID, hyper, {"adam_update": op})
