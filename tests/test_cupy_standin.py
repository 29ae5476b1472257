"""The CuPy stand-in (``tests/cupy_standin.py``) itself: it refuses what CuPy refuses, and
planted bugs in tinygan's device paths (an implicit host conversion, mixed devices, a wrong
kernel launch argument) fail under it. These run everywhere, on the stand-in only."""

from __future__ import annotations

import numpy as np
import pytest

import tinygan as tg
from tests import cupy_standin as cp
from tinygan import backend, kernels
from tinygan.kernels import cpu, cuda
from tinygan.ops.activation import TanhFunction
from tinygan.ops.dropout import DropoutFunction


@pytest.fixture(autouse=True)
def standin(monkeypatch):
    monkeypatch.setattr(backend, "_cupy", cp)


def test_functions_refuse_what_cupy_refuses():
    with pytest.raises(TypeError, match=r"indices.*unexpected keyword argument 'sparse'"):
        cp.indices((2, 3), sparse=True)  # numpy takes it, CuPy 14 does not
    a = cp.arange(6.0).reshape(2, 3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'initial'"):
        a.max(initial=0.0)
    with pytest.raises(TypeError, match="Wrong arguments"):
        cp.exp(a, where=a > 0)
    with pytest.raises(AttributeError, match="has no attribute 'tostring'"):
        a.tostring()
    with pytest.raises(TypeError):
        range(cp.asarray(3))  # CuPy's ndarray has no __index__
    with pytest.raises(AttributeError, match="no attribute 'not_a_function'"):
        cp.not_a_function  # noqa: B018


def test_arrays_follow_cupy_not_numpy():
    nhwc = cp.asarray(np.ones((2, 3, 4, 5), np.float32)).transpose(0, 3, 1, 2)  # a conv output
    assert not nhwc.flags.c_contiguous
    assert (nhwc * 2).flags.c_contiguous  # CuPy's ufuncs allocate C order; NumPy's keep K
    assert cuda.leaky_relu_forward(nhwc, 0.1).flags.c_contiguous
    assert nhwc.astype(np.float64).strides[1] == 8  # 'order' in the signature: K, as NumPy
    assert nhwc.transpose(0, 2, 3, 1).flags.c_contiguous  # a view stays a view
    s = nhwc.sum()
    assert isinstance(s, cp.ndarray) and s.shape == ()  # 0-d arrays, not scalars
    before = cp.syncs
    assert bool(s > 0) and float(s) == 120.0
    assert cp.syncs == before + 2  # each a wait for the device on a GPU


def test_planted_implicit_host_conversion_is_caught(monkeypatch):
    x = tg.tensor(np.ones(3)).to("cuda")
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(x.data)
    monkeypatch.setattr(
        TanhFunction, "forward", lambda self, a: np.tanh(np.asarray(a))
    )  # the plant
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        tg.tanh(x)


def test_planted_mixed_devices_are_caught():
    """A host array reaching a device op outside the Function's inputs (here: dropout's mask
    left on the host, which ``dropout`` moves) raises, as on CuPy."""
    x = tg.tensor(np.ones((2, 3), np.float32)).to("cuda")
    host_mask = np.full((2, 3), 2.0, np.float32)
    with pytest.raises(TypeError, match=r"numpy\.ndarray .* among CuPy arrays"):
        DropoutFunction(host_mask)(x)
    with pytest.raises(ValueError, match=r"non-scalar numpy\.ndarray"):
        x.data[...] = host_mask  # assignment from the host, refused by CuPy too
    np.testing.assert_array_equal(DropoutFunction(cp.asarray(host_mask))(x).numpy(), host_mask)


def _plant_launch(monkeypatch, change):
    """Make ``kernels.cuda._launch`` pass ``change(args)`` to the kernel."""

    def launch(name, src, dst, geometry):
        args = (src, dst, *(np.int64(v) for v in geometry), np.int64(dst.size))
        cuda._raw_kernel(cp, name, cuda._ctype(dst.dtype))((1,), (cuda._THREADS,), change(args))

    monkeypatch.setattr(cuda, "_launch", launch)


@pytest.mark.parametrize(
    "plant, error",
    [
        pytest.param(lambda a: (*a[:2], *(np.int32(v) for v in a[2:])), "needs a long long",
                     id="int32 for long long"),
        pytest.param(lambda a: (*a[:2], *(int(v) for v in a[2:-1]), 0.0), "needs a long long",
                     id="Python float for long long"),
        pytest.param(lambda a: (a[0][:, ::2], *a[1:]), "C-contiguous", id="strided view"),
        pytest.param(lambda a: (a[0].astype(np.float64), *a[1:]), "device array of float",
                     id="double for float"),
        pytest.param(lambda a: a[:-1], "a tuple of 17 arguments", id="one left out"),
        pytest.param(lambda a: (*a[:-1], a[-1] + 1), "out of bounds", id="total one too many"),
    ],
)  # fmt: skip
def test_planted_wrong_launch_arguments_are_caught(monkeypatch, plant, error):
    x = cp.asarray(np.random.default_rng(0).random((2, 5, 6, 3), dtype=np.float32))
    args = (3, 3, (1, 1), (1, 1), (1, 1), (5, 6))
    np.testing.assert_array_equal(kernels.im2col(x, *args).get(), cpu.im2col(x.get(), *args))
    _plant_launch(monkeypatch, plant)
    with pytest.raises((TypeError, IndexError), match=error):
        kernels.im2col(x, *args)


def test_planted_swapped_geometry_gives_wrong_values(monkeypatch):
    """Two long longs swapped (H and W): every argument has its type, the values are wrong,
    which the CPU parity of the gpu tests then reports."""
    x = cp.asarray(np.random.default_rng(0).random((2, 5, 6, 3), dtype=np.float32))
    args = (3, 3, (1, 1), (1, 1), (1, 1), (5, 6))
    _plant_launch(monkeypatch, lambda a: (*a[:3], a[4], a[3], *a[5:]))
    assert not np.array_equal(kernels.im2col(x, *args).get(), cpu.im2col(x.get(), *args))


def test_launch_limits_are_cudas():
    kernel = cuda._raw_kernel(cp, "im2col", "float")
    with pytest.raises(ValueError, match="at most 1024 threads"):
        kernel((1,), (32, 64), ())
    with pytest.raises(ValueError, match=r"grid \(1, 65536\)"):
        kernel((1, 65536), (256,), ())


def test_nccl_without_its_library_is_one_clear_error(monkeypatch):
    """Regression: with NCCL missing (``cupy.cuda.nccl.available`` False, what the cuda extra
    gave before), creating the communicator failed with an AttributeError from inside CuPy."""
    from tinygan import distributed as dist

    monkeypatch.setattr(cp.cuda.nccl, "available", False)
    with pytest.raises(RuntimeError, match="NCCL is not available to CuPy"):
        dist.NCCLCommunicator(mpi=None)
