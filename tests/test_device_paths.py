"""Every device path against the CPU, forward values and input gradients, for the paths no
other ``gpu`` test reaches (the rest: test_conv, test_kernels, test_modules, test_optim, ...).

Marked ``gpu``: with a GPU they run on the real CuPy (the device check, ``bench/gpu_check.sh``,
runs ``pytest -m gpu``); without one, on the CuPy stand-in (``tests/cupy_standin.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

import tinygan as tg
from tinygan import backend, kernels, nn
from tinygan.nn import functional as F

pytestmark = pytest.mark.gpu

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 5))
IMAGES = RNG.normal(size=(4, 3, 9, 9))


def on(device: str, a: np.ndarray, dtype=np.float64) -> tg.Tensor:
    """``a`` as a Tensor on ``device``: floats in ``dtype`` and requiring grad, ints as they are."""
    floating = a.dtype.kind == "f"
    t = tg.Tensor(a.astype(dtype) if floating else a).to(device)
    return t.requires_grad_() if floating else t


def assert_same(a: np.ndarray, b: np.ndarray, rtol: float) -> None:
    """``|a - b| <= rtol * max(|a|, 1)`` elementwise, with the same dtype and shape."""
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_allclose(b, a, rtol=0, atol=rtol * max(float(np.max(np.abs(a))), 1.0))


def assert_paths_agree(fn, arrays, dtype=np.float64, rtol: float = 1e-10) -> None:
    """``fn(*tensors)``, a Tensor, and the floating inputs' gradients of its sum agree on the CPU
    and the device. float64 by default: the two differ only by the order of sums."""
    results = {}
    for device in ("cpu", "cuda"):
        ts = [on(device, a, dtype) for a in arrays]
        y = fn(*ts)
        assert y.device == device
        y.sum().backward()
        grads = [backend.to_device(t.grad, "cpu") for t in ts if t.requires_grad]
        results[device] = [y.numpy(), *grads]
    for a, b in zip(results["cpu"], results["cuda"], strict=True):
        assert_same(a, b, rtol)


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_max_along_a_dim(dim, keepdim):
    assert_paths_agree(lambda a: tg.max(a, dim, keepdim=keepdim).values ** 2, [X])
    for device in ("cpu", "cuda"):
        indices = tg.max(on(device, X), dim, keepdim=keepdim).indices
        np.testing.assert_array_equal(indices.numpy(), X.argmax(dim, keepdims=keepdim))


def test_amax():
    assert_paths_agree(lambda a: a.amax(1), [np.repeat(X, 2, axis=1)])  # ties share the grad


def test_integer_index_backward_accumulates_repeats():
    index = np.array([0, 2, 2, 5, 2])
    assert_paths_agree(lambda a: a[index] ** 2, [X])
    assert_paths_agree(lambda a: a[tg.Tensor(index).to(a.device), 1:3] * 3, [X])


def test_cross_entropy():
    target = np.array([0, 1, 4, 2, 3, 0])
    assert_paths_agree(lambda a, t: F.cross_entropy(a, t), [X, target])
    assert_paths_agree(lambda a, t: F.cross_entropy(a, t, reduction="none"), [X, target])


def test_dropout():
    assert_paths_agree(lambda a: F.dropout(a, 0.3, rng=np.random.default_rng(1)), [X])


def test_gaussian_nll():
    mean, log_std = RNG.normal(size=X.shape), RNG.normal(size=X.shape) * 0.1
    assert_paths_agree(F.gaussian_nll, [X, mean, log_std])
    assert_paths_agree(lambda a, m: F.gaussian_nll_loss(m, a, a * a + 0.1, full=True), [X, mean])


def test_softplus_softmax_logsumexp():
    assert_paths_agree(
        lambda a: tg.softplus(a) + tg.softmax(a, 1) + tg.logsumexp(a, 1)[:, None], [X]
    )
    assert_paths_agree(lambda a: F.log_softmax(a * 30, 0), [X])


def test_bce_with_logits_and_mse():
    targets = (X > 0).astype(np.float64)
    assert_paths_agree(
        lambda a, t: F.binary_cross_entropy_with_logits(a, t) + F.mse_loss(a, t), [X, targets]
    )


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batch_norm(mode, momentum):
    """Two training calls update the running statistics (an average with momentum=None), which
    eval mode then uses; float32, as in training."""
    stats = {}

    def f(a):
        layer = nn.BatchNorm2d(3, momentum=momentum).to(a.device)
        for _ in range(2):
            layer(a * 2 + 1)
        if mode == "eval":
            layer.eval()
        y = layer(a)
        stats[a.device] = [layer.running_mean.numpy().copy(), layer.running_var.numpy().copy()]
        return y

    assert_paths_agree(f, [IMAGES], np.float32, rtol=1e-5)
    for a, b in zip(stats["cpu"], stats["cuda"], strict=True):
        assert_same(a, b, 1e-5)


@pytest.mark.parametrize("layout", ["rows", "channels_last"])
def test_channel_sum_large_batch_branch(layout):
    """The GEMV branch of ``kernels.channel_sum`` (>= 1024 rows of >= 8 channels whose memory
    is channels-last), as the bias gradient of a wide linear layer or a conv reaches it."""
    a = RNG.normal(size=(2048, 16)) if layout == "rows" else RNG.normal(size=(4, 16, 16, 8))
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        host = a.astype(dtype) if layout == "rows" else a.astype(dtype).transpose(0, 3, 1, 2)
        xp = backend.cupy()
        dev = xp.asarray(a.astype(dtype))
        dev = dev if layout == "rows" else dev.transpose(0, 3, 1, 2)
        assert xp.moveaxis(dev, 1, -1).flags.c_contiguous  # the branch's condition holds
        assert_same(kernels.channel_sum(host), xp.asnumpy(kernels.channel_sum(dev)), rtol)


def test_a_launch_larger_than_one_grid():
    """im2col and col2im on 4097 * 4097 > 65535 * 256 elements: the launch is capped at 65535
    blocks of 256 threads and the kernels' grid-stride loops cover the rest (on the stand-in,
    only the launch's arguments are checked: any grid covers everything there). And an
    elementwise kernel of that size (CuPy sizes its grid)."""
    xp = backend.cupy()
    n = 4097
    x = RNG.random((1, n, n, 1), dtype=np.float32)
    cols = kernels.im2col(xp.asarray(x), 1, 1, (1, 1), (0, 0), (1, 1), (n, n))
    assert cols.size > 65535 * 256
    np.testing.assert_array_equal(xp.asnumpy(cols).reshape(x.shape), x)
    back = kernels.col2im(cols, (n, n), (1, 1), (0, 0), (1, 1))
    np.testing.assert_array_equal(xp.asnumpy(back), x)
    y = kernels.leaky_relu_forward(xp.asarray(x - 0.5), 0.1)
    np.testing.assert_array_equal(xp.asnumpy(y), kernels.leaky_relu_forward(x - 0.5, 0.1))


@pytest.mark.parametrize("model", ["infogan", "classifier"])
def test_train_for_a_few_steps(model):
    """``train()`` on one device, 3 steps of the paper's InfoGAN or the MNIST classifier from one
    seed (float32): the first step's losses agree to float32 rounding, and the parameters'
    updates agree to a small part of the updates. Adam amplifies rounding where gradients are
    near zero (InfoGAN, CPU against CPU at 1 and 2 OpenBLAS threads: 0.05% of the update after
    one step, 1.3% after three; the stand-in 0.1% and 2.8%), so the bounds are 1% and 20%; an
    update lost or applied twice is 100%."""
    from tinygan.models import InfoGAN
    from tinygan.models.classifier import Classifier, mnist_cnn
    from tinygan.train import train

    data = np.random.default_rng(0).random((64, 1, 28, 28), dtype=np.float32)
    if model == "classifier":
        data = (data, np.arange(64) % 10)
    cpu = {}  # the CPU's weights and statistics before the first step and after steps 1 and 3
    off = {}  # the device's distance from them after steps 1 and 3
    losses = {}

    def check(step, m):
        if m.device == "cpu":
            cpu[step] = host_state(m, cpu.get(0))
        elif step in cpu:
            dev = host_state(m, cpu[0])
            off[step] = np.sqrt(sum(np.sum((dev[k] - cpu[step][k]) ** 2.0) for k in dev))

    for device in ("cpu", "cuda"):
        if model == "infogan":
            m = InfoGAN(seed=0, device=device)
        else:
            m = Classifier(mnist_cnn(np.random.default_rng(0)), device=device)
        check(0, m)
        history = train(m, data, steps=3, batch_size=16, seed=0, progress=False,
                        on_step=lambda step, _, m=m: check(step, m) if step in (1, 3) else None)  # fmt: skip
        losses[device] = np.array([v for k, v in sorted(history[0].items()) if "loss" in k])
        assert all(np.isfinite(v) for h in history for v in h.values())
    assert losses["cpu"].size >= 1
    assert_same(losses["cpu"], losses["cuda"], 1e-5)
    for step, bound in ((1, 0.01), (3, 0.2)):
        update = np.sqrt(sum(np.sum((cpu[step][k] - cpu[0][k]) ** 2.0) for k in cpu[0]))
        assert off[step] < bound * update, f"step {step}: off by {off[step] / update:.2g} of it"


def host_state(model, like: dict | None = None) -> dict[str, np.ndarray]:
    """A host copy of the model's float state arrays (or of those in ``like``: the state
    before the first step, weights and statistics, without the optimizers' moments)."""
    state = model.state_dict()
    keys = like or [k for k, v in state.items() if getattr(v, "dtype", np.dtype(int)).kind == "f"]
    return {k: np.array(backend.to_device(state[k], "cpu")) for k in keys}
