"""tinygan.nn: Module protocol, layers, default initialisation, init functions, save/load."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygan as tg
from tinygan import nn
from tinygan.nn import functional as F
from tinygan.nn import init
from tinygan.testing import seeds, values


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 4, rng=0), nn.BatchNorm1d(4), nn.ReLU())
        self.scale = nn.Parameter(np.ones(1, np.float32))
        self.head = nn.Linear(4, 2, bias=False, rng=1)
        self.note = "not registered"

    def forward(self, x):
        return self.head(self.body(x)) * self.scale


# ---- the Module protocol --------------------------------------------------------------------
def test_registration_order_names_and_traversal():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "body.0.weight", "body.0.bias", "body.1.weight", "body.1.bias",
                     "head.weight"]  # fmt: skip
    assert list(net.state_dict()) == [
        "scale", "body.0.weight", "body.0.bias", "body.1.weight", "body.1.bias",
        "body.1.running_mean", "body.1.running_var", "body.1.num_batches_tracked", "head.weight",
    ]  # fmt: skip
    assert [type(m).__name__ for m in net.children()] == ["Sequential", "Linear"]
    assert [type(m).__name__ for m in net.modules()] == ["Net", "Sequential", "Linear",
                                                        "BatchNorm1d", "ReLU", "Linear"]  # fmt: skip
    assert [n for n, _ in net.named_buffers()] == [
        "body.1.running_mean", "body.1.running_var", "body.1.num_batches_tracked"]  # fmt: skip
    assert net.head.bias is None and net.note == "not registered"
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())


def test_shared_parameters_and_modules_are_listed_once():
    lin = nn.Linear(2, 2)
    seq = nn.Sequential(lin, nn.Tanh(), lin)
    assert len(list(seq.parameters())) == 2 and len(list(seq.modules())) == 3
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_reassigning_and_deleting_attributes():
    lin = nn.Linear(2, 3)
    lin.bias = None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    with pytest.raises(TypeError, match="cannot assign ndarray to parameter 'weight'"):
        lin.weight = np.zeros((3, 2))
    lin.weight = nn.Parameter(np.zeros((3, 2), np.float32))
    assert lin.weight.data.sum() == 0
    del lin.weight
    assert list(lin.state_dict()) == []


def test_forward_backward_zero_grad_train_eval():
    net = Net()
    x = tg.tensor(values(0, (5, 3)).astype(np.float32))
    net(x).sum().backward()
    assert all(p.grad is not None and p.grad.dtype == np.float32 for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    assert net.eval() is net and not any(m.training for m in net.modules())
    assert net.train() is net and all(m.training for m in net.modules())


def test_to_cpu_returns_self_and_unknown_device_fails():
    net = Net()
    assert net.to("cpu") is net
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        net.to("tpu")


def test_repr_is_readable():
    text = repr(nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.LeakyReLU(0.2)))
    assert text == (
        "Sequential(\n"
        "  (0): Conv2d(1, 8, kernel_size=(3, 3), stride=1, padding=1, bias=False)\n"
        "  (1): LeakyReLU(negative_slope=0.2)\n"
        ")"
    )
    assert repr(nn.Linear(2, 3)) == "Linear(in_features=2, out_features=3, bias=True)"


# ---- state_dict / load_state_dict -----------------------------------------------------------
def test_state_dict_round_trip_copies_values_in_place():
    a, b = Net(), Net()
    for p in b.parameters():
        p.data[...] = 7
    weight = a.head.weight.data
    a.load_state_dict(b.state_dict())
    assert a.head.weight.data is weight  # copied in, not rebound
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(va, vb, err_msg=k)


def test_load_state_dict_lists_every_problem_and_changes_nothing():
    net = Net()
    sd = {k: v.copy() for k, v in net.state_dict().items()}
    before = {k: v.copy() for k, v in sd.items()}
    del sd["head.weight"], sd["body.1.running_var"]
    sd["extra.weight"] = np.zeros(2, np.float32)
    sd["body.0.weight"] = np.zeros((3, 4), np.float32)
    sd["body.0.bias"] = np.zeros(4, np.float64)
    sd["scale"] = sd["scale"] + 1
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(sd)
    msg = str(info.value)
    for key in ("head.weight", "body.1.running_var", "extra.weight", "body.0.weight",
                "body.0.bias"):  # fmt: skip
        assert key in msg
    assert "missing keys" in msg and "unexpected keys" in msg and "mismatched" in msg
    assert "expected (4, 3) float32, got (3, 4) float32" in msg
    for k, v in net.state_dict().items():  # nothing was loaded, not even the valid "scale"
        np.testing.assert_array_equal(v, before[k])


def test_load_state_dict_not_strict_reports_keys_but_still_rejects_shapes():
    net = Net()
    sd = dict(net.state_dict())
    del sd["head.weight"]
    sd["extra"] = np.zeros(1)
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["head.weight"] and result.unexpected_keys == ["extra"]
    sd["scale"] = np.zeros(2, np.float32)
    with pytest.raises(RuntimeError, match="scale"):
        net.load_state_dict(sd, strict=False)


# ---- layers ---------------------------------------------------------------------------------
@given(n=st.integers(2, 4), c=st.integers(1, 3), h=st.integers(1, 3), seed=seeds)
def test_batchnorm2d_running_stats_follow_pytorch(n, c, h, seed):
    bn = nn.BatchNorm2d(c, momentum=0.2, dtype=np.float64)
    xs = [values(seed + i, (n, c, h, h + 1)) for i in range(3)]
    rm, rv = np.zeros(c), np.ones(c)
    for x in xs:
        bn(tg.tensor(x))
        m = x.size // c
        rm = 0.8 * rm + 0.2 * x.mean((0, 2, 3))
        rv = 0.8 * rv + 0.2 * x.var((0, 2, 3)) * m / (m - 1)
    np.testing.assert_allclose(bn.running_mean.data, rm, rtol=1e-10)
    np.testing.assert_allclose(bn.running_var.data, rv, rtol=1e-10)
    assert int(bn.num_batches_tracked.item()) == 3
    bn.eval()
    y = bn(tg.tensor(xs[0]))
    expected = (xs[0] - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5)
    np.testing.assert_allclose(y.data, expected, rtol=1e-10)


def test_batchnorm_cumulative_average_without_tracking_and_input_ranks():
    bn = nn.BatchNorm1d(2, momentum=None, dtype=np.float64)
    xs = [values(i, (4, 2, 3)) for i in range(3)]
    for x in xs:
        bn(tg.tensor(x))
    np.testing.assert_allclose(bn.running_mean.data, np.mean([x.mean((0, 2)) for x in xs], 0))
    free = nn.BatchNorm1d(2, affine=False, track_running_stats=False, dtype=np.float64).eval()
    assert list(free.state_dict()) == [] and list(free.parameters()) == []
    y = free(tg.tensor(xs[0]))  # no running stats: batch statistics even in eval mode
    np.testing.assert_allclose(y.data.mean((0, 2)), 0, atol=1e-12)
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected 2D or 3D input; got shape \(4,\)"):
        bn(tg.tensor(np.zeros(4)))
    with pytest.raises(ValueError, match="BatchNorm2d: expected 4D input"):
        nn.BatchNorm2d(2)(tg.tensor(np.zeros((4, 2), np.float32)))


def test_activation_flatten_and_dropout_modules():
    x = tg.tensor(np.array([[-2.0, 0.5], [1.0, -0.25]]))
    np.testing.assert_array_equal(nn.ReLU()(x).data, [[0, 0.5], [1, 0]])
    np.testing.assert_array_equal(nn.LeakyReLU(0.1)(x).data, [[-0.2, 0.5], [1, -0.025]])
    np.testing.assert_allclose(nn.Sigmoid()(x).data, 1 / (1 + np.exp(-x.data)), rtol=1e-12)
    np.testing.assert_allclose(nn.Tanh()(x).data, np.tanh(x.data), rtol=1e-12)
    assert nn.Flatten()(tg.tensor(np.zeros((2, 3, 4, 5)))).shape == (2, 60)
    drop = nn.Dropout(0.5, rng=3)
    assert drop.eval()(x) is x
    assert drop.train()(x).shape == x.shape
    with pytest.raises(ValueError, match="got 1"):
        nn.Dropout(1)


def test_sequential_indexing_and_type_check():
    seq = nn.Sequential(nn.ReLU(), nn.Tanh())
    assert len(seq) == 2 and isinstance(seq[1], nn.Tanh) and next(iter(seq)) is seq[0]
    with pytest.raises(TypeError, match="argument 1 is a function"):
        nn.Sequential(nn.ReLU(), lambda x: x)


@given(n=st.integers(1, 2), cin=st.integers(1, 3), cout=st.integers(1, 3), k=st.integers(1, 3),
       stride=st.integers(1, 2), bias=st.booleans(), seed=seeds)  # fmt: skip
def test_conv_layers_match_the_functional_ops(n, cin, cout, k, stride, bias, seed):
    x = tg.tensor(values(seed, (n, cin, 5, 4)))
    conv = nn.Conv2d(cin, cout, k, stride, padding=1, bias=bias, dtype=np.float64, rng=seed)
    assert conv.weight.shape == (cout, cin, k, k)
    y = conv(x)
    np.testing.assert_array_equal(y.data, F.conv2d(x, conv.weight, conv.bias, stride, 1).data)
    assert y.shape == (n, cout, (5 + 2 - k) // stride + 1, (4 + 2 - k) // stride + 1)
    up = nn.ConvTranspose2d(cin, cout, k, stride, 0, stride - 1, bias=bias, dtype=np.float64)
    assert up.weight.shape == (cin, cout, k, k)
    z = up(x)
    expected = F.conv_transpose2d(x, up.weight, up.bias, stride, 0, stride - 1)
    np.testing.assert_array_equal(z.data, expected.data)
    assert z.shape == (
        n,
        cout,
        (5 - 1) * stride + k + stride - 1,
        (4 - 1) * stride + k + stride - 1,
    )


# ---- default initialisation and init functions ----------------------------------------------
@pytest.mark.parametrize(
    "make, fan_in",
    [(lambda rng: nn.Linear(300, 200, rng=rng), 300),
     (lambda rng: nn.Conv2d(16, 32, 3, rng=rng), 16 * 9),
     (lambda rng: nn.ConvTranspose2d(32, 16, 4, rng=rng), 16 * 16)],  # fan_in from weight dim 1
)  # fmt: skip
def test_default_init_is_pytorchs(make, fan_in):
    layer = make(0)
    bound = 1 / math.sqrt(fan_in)
    for t in (layer.weight, layer.bias):
        assert t.dtype == np.float32
        assert np.abs(t.data).max() <= bound
    w = layer.weight.data
    assert abs(w.std() - bound / math.sqrt(3)) < 0.03 * bound and abs(w.mean()) < 0.03 * bound
    np.testing.assert_array_equal(w, make(0).weight.data)  # same seed, same weights
    np.testing.assert_array_equal(w, make(np.random.default_rng(0)).weight.data)
    assert not np.array_equal(w, make(1).weight.data)
    bn = nn.BatchNorm2d(3)
    np.testing.assert_array_equal(bn.weight.data, 1)
    np.testing.assert_array_equal(bn.bias.data, 0)


def test_manual_seed_drives_layers_built_without_rng():
    init.manual_seed(42)
    a = nn.Linear(4, 4, dtype=np.float64)
    init.manual_seed(42)
    b = nn.Linear(4, 4, dtype=np.float64)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)


def test_init_functions_statistics_and_gains():
    t = nn.Parameter(np.empty((400, 100, 3, 3)))  # fan_in 900, fan_out 3600
    rng = np.random.default_rng(0)
    cases = [
        (lambda: init.kaiming_normal_(t, generator=rng), math.sqrt(2) / 30),  # a=0: gain sqrt(2)
        (lambda: init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu", generator=rng),
         math.sqrt(2) / 60),
        (lambda: init.xavier_normal_(t, gain=2.0, generator=rng), 2 * math.sqrt(2 / 4500)),
        (lambda: init.xavier_uniform_(t, generator=rng), math.sqrt(2 / 4500)),
        (lambda: init.normal_(t, 1.0, 0.5, generator=rng), 0.5),
        (lambda: init.uniform_(t, -2, 2, generator=rng), 4 / math.sqrt(12)),
    ]  # fmt: skip
    for fill, std in cases:
        assert fill() is t
        assert abs(t.data.std() - std) < 0.01 * std
    init.uniform_(t, -2, 2, generator=rng)
    assert t.data.min() >= -2 and t.data.max() <= 2
    init.xavier_uniform_(t, generator=rng)
    assert np.abs(t.data).max() <= math.sqrt(6 / 4500)
    assert init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    assert init.calculate_gain("tanh") == 5 / 3 and init.calculate_gain("conv_transpose2d") == 1
    assert init.calculate_fan_in_and_fan_out(t) == (900, 3600)
    for fill, value in ((init.zeros_, 0), (init.ones_, 1), (lambda t: init.constant_(t, 3.5), 3.5)):
        np.testing.assert_array_equal(fill(t).data, value)
    with pytest.raises(ValueError, match=r"at least 2 dims; got shape \(3,\)"):
        init.xavier_uniform_(nn.Parameter(np.empty(3)))
    with pytest.raises(ValueError, match="unsupported nonlinearity 'gelu'"):
        init.calculate_gain("gelu")
    with pytest.raises(ValueError, match="mode must be"):
        init.kaiming_normal_(t, mode="fan")


# ---- save / load ----------------------------------------------------------------------------
def test_save_load_round_trips_exactly(tmp_path):
    net = Net()
    path = tmp_path / "net.npz"
    tg.save(net, path)
    state = tg.load(path)
    assert list(state) == list(net.state_dict())
    for k, v in net.state_dict().items():
        assert state[k].dtype == v.dtype
        np.testing.assert_array_equal(state[k], v)
    mixed = {"G/body.0.weight": values(0, (2, 3)), "x32": values(1, 4).astype(np.float32),
             "step": 7, "lr": 1e-3, "names": np.array(["a", "bc"]), "t": tg.tensor(np.ones(2))}  # fmt: skip
    tg.save(mixed, path)
    back = tg.load(path)
    np.testing.assert_array_equal(back["G/body.0.weight"], mixed["G/body.0.weight"])
    assert back["x32"].dtype == np.float32 and back["x32"].tobytes() == mixed["x32"].tobytes()
    assert int(back["step"]) == 7 and float(back["lr"]) == 1e-3
    assert list(back["names"]) == ["a", "bc"]
    fresh = Net()
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh.head.weight.data, net.head.weight.data)


def test_failing_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    tg.save({"a": np.arange(3)}, path)
    old = path.read_bytes()

    def broken_write(f, array, **kwargs):
        f.write(b"half an array")
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", broken_write)
    with pytest.raises(OSError, match="disk full"):
        tg.save({"a": np.arange(4)}, path)
    with pytest.raises(OSError, match="disk full"):
        tg.save({"a": np.arange(4)}, tmp_path / "new.npz")
    assert path.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]


def test_save_rejects_objects_and_bad_keys(tmp_path):
    with pytest.raises(TypeError, match="'a' is not plain array data"):
        tg.save({"a": {"nested": 1}}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="non-empty strings"):
        tg.save({3: np.zeros(1)}, tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


def test_load_refuses_pickled_objects_and_non_archives(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, weight=np.zeros(2), payload=np.array([{"run": "code"}], dtype=object))
    with pytest.raises(ValueError, match=r"entry 'payload' .* holds Python objects"):
        tg.load(path)
    np.save(tmp_path / "one.npy", np.zeros(2))
    with pytest.raises(ValueError, match=r"single .npy array, not an .npz archive"):
        tg.load(tmp_path / "one.npy")
    (tmp_path / "junk.npz").write_bytes(b"\x80\x04not a zip at all")
    with pytest.raises(ValueError, match=r"not a readable .npz archive"):
        tg.load(tmp_path / "junk.npz")


# ---- GPU parity -----------------------------------------------------------------------------
@pytest.mark.gpu
def test_modules_on_gpu_match_cpu():
    torch_like = nn.Sequential(
        nn.Conv2d(1, 4, 4, 2, 1, rng=0), nn.BatchNorm2d(4), nn.LeakyReLU(0.1), nn.Flatten(),
        nn.Linear(4 * 4 * 4, 8, rng=1), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1, rng=2),
    )  # fmt: skip
    gpu = nn.Sequential(
        nn.Conv2d(1, 4, 4, 2, 1, rng=0), nn.BatchNorm2d(4), nn.LeakyReLU(0.1), nn.Flatten(),
        nn.Linear(4 * 4 * 4, 8, rng=1), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1, rng=2),
    ).to("cuda")  # fmt: skip
    for (k, a), b in zip(torch_like.state_dict().items(), gpu.state_dict().values()):
        np.testing.assert_array_equal(a, b.get(), err_msg=k)  # one seed, same weights
    x = values(0, (6, 1, 8, 8)).astype(np.float32)
    y_cpu = torch_like(tg.tensor(x))
    y_gpu = gpu(tg.tensor(x).to("cuda"))
    y_cpu.sum().backward()
    y_gpu.sum().backward()
    np.testing.assert_allclose(y_gpu.numpy(), y_cpu.numpy(), rtol=1e-5, atol=1e-5)
    for (k, p), q in zip(torch_like.named_parameters(), gpu.parameters()):
        np.testing.assert_allclose(q.grad.get(), p.grad, rtol=1e-4, atol=1e-5, err_msg=k)
    for (k, a), b in zip(torch_like.state_dict().items(), gpu.state_dict().values()):
        np.testing.assert_allclose(b.get(), a, rtol=1e-5, atol=1e-6, err_msg=k)
    assert gpu.to("cpu") is gpu and isinstance(gpu[0].weight.data, np.ndarray)


@pytest.mark.gpu
def test_save_from_gpu_and_load_into_cpu(tmp_path):
    net = Net().to("cuda")
    tg.save(net, tmp_path / "g.npz")
    cpu = Net()
    cpu.load_state_dict(tg.load(tmp_path / "g.npz"))
    np.testing.assert_array_equal(cpu.head.weight.data, net.head.weight.data.get())
    net.load_state_dict(cpu.state_dict())  # host arrays go to the device
    assert net.head.weight.device == "cuda"


def test_save_accepts_any_key_name(tmp_path):
    """Regression: np.savez's keyword form dropped a key named 'allow_pickle' and refused 'file'."""
    state = {"file": np.arange(3.0), "allow_pickle": np.ones(2, np.float32), "a/b.c": np.zeros(())}
    tg.save(state, tmp_path / "s.npz")
    back = tg.load(tmp_path / "s.npz")
    assert sorted(back) == sorted(state)
    for k, v in state.items():
        np.testing.assert_array_equal(back[k], v)
        assert back[k].dtype == v.dtype


def test_sequential_slice_is_a_sequential():
    seq = nn.Sequential(nn.ReLU(), nn.Tanh(), nn.Sigmoid())
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and isinstance(seq[-1], nn.Sigmoid)
