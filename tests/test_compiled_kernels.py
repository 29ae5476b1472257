"""The compiled CPU kernels (tinygan/kernels/compiled.py, Numba) give cpu.py's results to the bit.

Needs Numba (``pip install -e ".[fast]"``, which .ci/run installs after the main run); without it
the tests are skipped, with the reason, unless TINYGAN_REQUIRE_NUMBA=1 (CI), which turns the skip
into a failure. The main run covers the pure NumPy path; this file compares the two paths on
hypothesis-drawn shapes, layouts, values (NaN, inf, signed zeros) and settings, and a few
InfoGAN steps end to end.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests import reference
from tests.test_kernels import any_dims, geometry_args, with_edge_examples
from tinygan import kernels
from tinygan.kernels import compiled, cpu

if compiled.numba is None and os.environ.get("TINYGAN_REQUIRE_NUMBA") == "1":
    raise RuntimeError("TINYGAN_REQUIRE_NUMBA=1, but Numba is not installed")
pytestmark = pytest.mark.skipif(compiled.numba is None, reason="Numba is not installed")

DTYPES = st.sampled_from([np.float32, np.float64])
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shape, dtype and bits, but for a NaN's sign and payload (0.0 != -0.0)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    nan = np.isnan(a)
    ints = f"i{a.dtype.itemsize}"
    return np.array_equal(nan, np.isnan(b)) and np.array_equal(a.view(ints)[~nan],
                                                                b.view(ints)[~nan])  # fmt: skip


def layout(a: np.ndarray) -> tuple[int, ...]:
    """The strides that matter (a length-1 axis's does not)."""
    return tuple(s if n > 1 else 0 for s, n in zip(a.strides, a.shape))


@st.composite
def laid_out(draw, shape=None, dtype=None, layout=None):
    """An array of a drawn shape (up to 4-D) in a drawn memory layout (an axis order, maybe a
    cropped window of a larger array), with NaN, inf and signed zeros among its values."""
    shape = shape or tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)))
    dtype = dtype or draw(DTYPES)
    order = layout or draw(st.permutations(range(len(shape))))
    crop = draw(st.booleans()) if layout is None else False
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    mem_shape = [shape[i] + (2 if crop else 0) for i in order]
    base = rng.standard_normal(mem_shape).astype(dtype)
    flat = base.reshape(-1)
    picks = rng.integers(0, flat.size, size=min(3, flat.size))
    flat[picks] = rng.choice(SPECIAL, size=len(picks))
    if crop:
        base = base[tuple(slice(1, -1) for _ in order)]
    return base.transpose(np.argsort(order))


def test_the_compiled_kernels_run_here():
    assert compiled.available()  # else every comparison below would compare cpu.py with itself


@given(laid_out(), st.sampled_from([0.0, 0.2, 1.0, 1.5, -0.3]))
def test_leaky_relu_forward_is_cpus(x, slope):
    with np.errstate(invalid="ignore"):  # inf * 0
        expected = cpu.leaky_relu_forward(x, slope)
        got = compiled.leaky_relu_forward(x, slope)
    if got is None:  # not dense: the dispatcher falls back
        assert compiled.flat_views(x) is None
        return
    assert same_bits(got, expected)
    assert layout(got) == layout(x)  # the input's layout, as cpu.py keeps it


@given(st.data(), st.sampled_from([0.0, 0.2, 1.0, 1.5, -0.3]))
def test_leaky_relu_backward_is_cpus(data, slope):
    x = data.draw(laid_out())
    gy = data.draw(laid_out(shape=x.shape, dtype=x.dtype))  # maybe another layout
    with np.errstate(invalid="ignore"):  # inf * 0
        expected = cpu.leaky_relu_backward(x, gy, slope)
        got = compiled.leaky_relu_backward(x, gy, slope)
    if got is None:  # x not dense, or np.where's own layout (a slope outside [0, 1])
        assert compiled.flat_views(x) is None or not 0 <= slope <= 1
        return
    assert same_bits(got, expected)
    assert layout(got) == layout(expected) == layout(np.empty_like(x))  # x's layout


@given(st.data(), st.integers(1, 4), st.sampled_from([0.0, 0.01]), st.sampled_from([0.3, 0.9]))
def test_adam_update_is_cpus(data, steps, weight_decay, beta1):
    """Both forms of torch.lerp (beta1 above and below 0.5), L2 decay, several steps."""
    p = data.draw(laid_out(layout=(0,)))
    p[~np.isfinite(p)] = 1.0
    m, v = np.zeros_like(p), np.zeros_like(p)
    mine = [a.copy() for a in (p, m, v)]
    for t in range(1, steps + 1):
        g = data.draw(laid_out(shape=p.shape, dtype=p.dtype, layout=(0,)))
        args = (1e-3, beta1, 0.999, 1e-8, 1 - beta1**t, 1 - 0.999**t, weight_decay)
        with np.errstate(invalid="ignore"):
            cpu.adam_update(p, g, m, v, *args)
            assert compiled.adam_update(mine[0], g, mine[1], mine[2], *args)
        for a, b in zip((p, m, v), mine):
            assert same_bits(b, a)


def conv_geometries(test):
    """Both dtypes; hypothesis geometries (with the edge ones) and 3 (falls back), 8 or 9
    channels."""
    test = given(h=any_dims(), w=any_dims(), n=st.integers(1, 2), c=st.sampled_from([3, 8, 9]),
                 seed=st.integers(0, 2**32 - 1))(test)  # fmt: skip
    return pytest.mark.parametrize("dtype", [np.float32, np.float64])(with_edge_examples(test))


@conv_geometries
def test_im2col_matches_loops(h, w, n, c, seed, dtype):
    """On contiguous NHWC and on the NHWC view of NCHW memory; narrow taps fall back."""
    k, s, p, d = geometry_args(h, w)
    x = np.random.default_rng(seed).standard_normal((n, h.image, w.image, c)).astype(dtype)
    expected = reference.im2col(x, k, s, p, d, (h.grid, w.grid))
    for image in (x, np.ascontiguousarray(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)):
        cols = compiled.im2col(image, *k, s, p, d, (h.grid, w.grid))
        if c < compiled.IM2COL_MIN_CHANNELS:
            assert cols is None
            continue
        assert cols.flags.c_contiguous and cols.dtype == dtype
        assert same_bits(cols, expected)


@conv_geometries
def test_col2im_and_gemm_col2im_are_cpus(h, w, n, c, seed, dtype):
    """The same bits and the same output memory (a crop of the same padded buffer: what reads
    it next, e.g. batch norm's channel sums, then takes the same path)."""
    k, s, p, d = geometry_args(h, w)
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((n * h.grid * w.grid, 5)).astype(dtype)
    wmat = rng.standard_normal((5, k[0] * k[1] * c)).astype(dtype)
    cols = (rows @ wmat).reshape(n, h.grid, w.grid, *k, c)
    geometry = ((h.grid, w.grid), (h.image, w.image), k, s, p, d)
    for got, expected in [
        (compiled.col2im(cols, (h.image, w.image), s, p, d),
         cpu.col2im(cols, (h.image, w.image), s, p, d)),
        (compiled.gemm_col2im(rows, wmat, *geometry), cpu.gemm_col2im(rows, wmat, *geometry)),
    ]:  # fmt: skip
        if c < compiled.COL2IM_MIN_CHANNELS:
            assert got is None
            continue
        assert same_bits(got, expected)
        assert got.strides == expected.strides and got.base.shape == expected.base.shape


def test_adam_update_falls_back_on_other_layouts_and_dtypes():
    p = np.ones((4, 3), np.float32)
    assert not compiled.adam_update(p.T, p.T, p.T.copy(), p.T.copy(), 1e-3, 0.9, 0.999, 1e-8, 0.1,
                                    0.001)  # fmt: skip
    g64 = np.ones((4, 3))
    assert not compiled.adam_update(p, g64, p.copy(), p.copy(), 1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001)


@given(st.data(), st.booleans(), st.booleans())
def test_batch_norm_kernels_are_the_formulas(data, squares, with_bias):
    """Each kernel against its NumPy formula in kernels/__init__.py (run with the compiled
    kernels turned off), on (N, C), (N, C, L) and (N, C, H, W) in any layout."""
    x = data.draw(laid_out(shape=tuple(data.draw(st.lists(st.integers(1, 5), min_size=2,
                                                                    max_size=4)))))  # fmt: skip
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    cshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    mu, scale, k1, k2 = (rng.standard_normal(cshape).astype(x.dtype) for _ in range(4))
    bias = rng.standard_normal(x.shape[1]).astype(x.dtype) if with_bias else None
    gy = data.draw(laid_out(shape=x.shape, dtype=x.dtype))

    def results():
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, huge products
            return (
                kernels.batch_norm_center(x, mu, squares),
                kernels.batch_norm_scale(x, scale, bias),
                kernels.batch_norm_input_grad(gy, x, scale, k1, k2),
            )

    fast = results()
    os.environ["TINYGAN_COMPILED"] = "0"
    try:
        slow = results()
    finally:
        del os.environ["TINYGAN_COMPILED"]
    assert same_bits(fast[0][0], slow[0][0])
    assert (fast[0][1] is None) == (slow[0][1] is None) == (not squares)
    if squares:
        assert same_bits(fast[0][1], slow[0][1])
    assert same_bits(fast[1], slow[1])
    assert same_bits(fast[2], slow[2])


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("TINYGAN_COMPILED", "0")
    assert not compiled.available()
    monkeypatch.setenv("TINYGAN_COMPILED", "false")  # not silently taken for on, or for off
    with pytest.raises(ValueError, match=r"TINYGAN_COMPILED must be 0 .* got 'false'"):
        kernels.leaky_relu_forward(np.ones(3, np.float32), 0.2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_infogan_steps_are_the_same_bits_with_and_without_them(dtype, monkeypatch):
    """Three InfoGAN steps (batch norm, leaky ReLU, Adam in both optimizers; D in eval mode
    for the metrics) give every parameter and optimizer state bit for bit."""
    from tests.test_distributed_mpi import paper_infogan  # float64 throughout, where asked

    def run() -> list[np.ndarray]:
        model = paper_infogan(seed=3, dtype=np.dtype(dtype))
        rng = np.random.default_rng(0)
        real = rng.random((6, 1, 28, 28)).astype(dtype)
        for _ in range(3):
            model.train_step(real, rng)
        states = [t.data for t in (*model.G.parameters(), *model.D.parameters(),
                                   *model.G.buffers(), *model.D.buffers())]  # fmt: skip
        for opt in (model.opt_d, model.opt_g):
            for state in opt.state:
                states += [state["exp_avg"], state["exp_avg_sq"]]
        assert all(a.dtype == dtype for a in states if a.dtype.kind == "f")
        return states

    fast = run()
    monkeypatch.setenv("TINYGAN_COMPILED", "0")
    slow = run()
    assert len(fast) == len(slow) > 20
    for a, b in zip(fast, slow):
        assert same_bits(a, b)


def _both_paths(fn, monkeypatch):
    """``fn()`` on the compiled path, then with TINYGAN_COMPILED=0."""
    fast = fn()
    monkeypatch.setenv("TINYGAN_COMPILED", "0")
    slow = fn()
    monkeypatch.delenv("TINYGAN_COMPILED")
    return fast, slow


@pytest.mark.parametrize("slope", [-0.0, -1e-50])
def test_leaky_relu_forward_on_negative_zero_slopes(slope, monkeypatch):
    """-0.0 (NumPy's maximum breaks the tie between -0.0 and 0.0) and a negative slope that
    rounds to -0.0 in float32 (cpu.py picks its formula from the Python value: inf stays inf)."""
    x = np.array([-0.0, 0.0, np.inf, -2.0, 3.0] * 4, np.float32)
    with np.errstate(invalid="ignore"):
        fast, slow = _both_paths(lambda: kernels.leaky_relu_forward(x, slope), monkeypatch)
    assert same_bits(fast, slow)


@pytest.mark.parametrize("slope", [1.5, -0.3])
def test_leaky_relu_backward_outside_0_1_in_cpus_layout(slope, monkeypatch):
    """np.where's result is C-ordered where x and gy differ in layout; the layout matters to
    what reads it next (a conv's bias gradient: kernels.channel_sum takes another path)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32).transpose(0, 3, 1, 2)  # NHWC memory
    gy = rng.standard_normal(x.shape).astype(np.float32)  # NCHW
    fast, slow = _both_paths(lambda: kernels.leaky_relu_backward(x, gy, slope), monkeypatch)
    assert same_bits(fast, slow)
    assert layout(fast) == layout(slow)


def test_batch_norm_in_float16_falls_back(monkeypatch):
    """Numba has no float16: batch norm's scale and input-gradient passes run cpu.py's formula."""
    from tinygan import Tensor
    from tinygan.nn import functional as F

    def run():
        rng = np.random.default_rng(0)
        x = Tensor(rng.standard_normal((4, 3, 5)).astype(np.float16), requires_grad=True)
        w = Tensor(rng.standard_normal(3).astype(np.float16), requires_grad=True)
        y = F.batch_norm(x, None, None, w, w, training=True)
        y.backward(Tensor(rng.standard_normal(y.shape).astype(np.float16)))
        return y.data, np.asarray(x.grad.data if isinstance(x.grad, Tensor) else x.grad)

    fast, slow = _both_paths(run, monkeypatch)
    assert all(same_bits(a, b) for a, b in zip(fast, slow))


def test_adam_update_read_only_and_tiny_weight_decay(monkeypatch):
    """A read-only parameter: NumPy's ValueError, not Numba's typing error. A weight decay that
    is 0 in float32 but not in Python: cpu.py still adds ``param * 0`` (inf * 0 = NaN)."""
    args = (1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001)
    p = np.ones(3, np.float32)
    p.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        kernels.adam_update(p, np.ones(3, np.float32), np.zeros(3, np.float32),
                            np.zeros(3, np.float32), *args)  # fmt: skip

    def run():
        p, m, v = (
            np.array([np.inf, 1.0], np.float32),
            np.zeros(2, np.float32),
            np.zeros(2, np.float32),
        )
        with np.errstate(invalid="ignore"):
            kernels.adam_update(p, np.ones(2, np.float32), m, v, *args, weight_decay=1e-46)
        return p, m, v

    fast, slow = _both_paths(run, monkeypatch)
    assert all(same_bits(a, b) for a, b in zip(fast, slow))


def test_imports_where_numba_cannot_cache():
    """A read-only install with no writable cache directory (no home, a read-only image): Numba
    finds no cache locator; tinygan still imports and the kernels compile in memory."""
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_LOCATOR_CLASSES="numba.core.caching.IPythonCacheLocator")
    code = ("import numpy as np; from tinygan import kernels; "
            "print(kernels.leaky_relu_forward(np.ones(3, np.float32), 0.2).sum())")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "3.0"
