"""Backend selection, device moves, and the same ops on every available backend."""

from __future__ import annotations

import types

import numpy as np
import pytest

import tinygan as tg
from tinygan import backend


def test_numpy_is_the_default_module():
    assert backend.get_array_module(np.ones(2), 3.0, None) is np


def test_mixing_numpy_and_cupy_arrays_raises(monkeypatch):
    class FakeCupyArray(np.ndarray):
        pass

    monkeypatch.setattr(backend, "_cupy", types.SimpleNamespace(ndarray=FakeCupyArray))
    gpu = np.ones(2).view(FakeCupyArray)
    with pytest.raises(TypeError, match="different devices"):
        backend.get_array_module(np.ones(2), gpu)
    with pytest.raises(TypeError, match="different devices"):
        tg.tensor(np.ones(2)) + tg.Tensor(gpu)


def test_bad_device_names():
    with pytest.raises(ValueError, match="'tpu'"):
        tg.tensor(np.ones(2)).to("tpu")
    if not backend.cuda_available():
        with pytest.raises(RuntimeError, match="no CuPy with a CUDA GPU is usable"):
            tg.tensor(np.ones(2)).to("cuda")


def test_ops_and_gradcheck_on_each_backend(xp):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4,))
    x, y = (
        tg.tensor(xp.asarray(a), requires_grad=True),
        tg.tensor(xp.asarray(b), requires_grad=True),
    )

    def f(p, q):
        return tg.log_softmax(tg.leaky_relu(p * q, 0.2) @ q.reshape(4, 1) + p, 1).sum(0)

    ref = f(tg.tensor(a), tg.tensor(b)).data
    out = f(x, y)
    assert backend.device_of(out.data) == backend.device_of(xp.ones(1))
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12)
    tg.gradcheck(f, [x, y])


@pytest.mark.gpu
def test_to_cuda_and_back_carries_gradients():
    x = tg.tensor(np.arange(3.0, dtype=np.float32), requires_grad=True)
    g = x.to("cuda")
    assert g.device == "cuda"
    (g * 2).sum().backward()
    assert x.grad.dtype == np.float32 and isinstance(x.grad, np.ndarray)
    np.testing.assert_array_equal(x.grad, 2)
    np.testing.assert_array_equal(g.to("cpu").numpy(), [0, 1, 2])


def test_to_device_op_and_its_gradient_on_the_cpu():
    # Tensor.to returns the tensor itself on its own device; the op tg.ops.to_device always
    # records a ToDevice, so its backward is checked here on any machine.
    x = tg.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    assert x.to("cpu") is x
    y = tg.ops.to_device(x, "cpu")
    assert type(y.creator).__name__ == "ToDevice" and y.device == "cpu"
    (y * np.array([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 2.0, 3.0])
    tg.gradcheck(lambda t: tg.ops.to_device(t, "cpu") ** 2, [x])
    tg.gradgradcheck(lambda t: tg.ops.to_device(t, "cpu") ** 3, [x])
