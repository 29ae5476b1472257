"""tinygan.optim: SGD, Adam and RMSprop against torch.optim's update rules written out in NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygan as tg
from tinygan import nn, optim
from tinygan.testing import seeds, values

STEPS = 6


def torch_sgd(p, grads, lr, momentum, dampening, weight_decay, nesterov):
    """torch.optim.SGD's single-tensor step, over a list of gradients."""
    p, buf = p.copy(), None
    for g in grads:
        if weight_decay != 0:
            g = g + weight_decay * p
        if momentum != 0:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


def torch_adam(p, grads, lr, betas, eps, weight_decay):
    """torch.optim.Adam's single-tensor step (lerp for the first moment), over a list of grads."""
    p, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    b1, b2 = betas
    for t, g in enumerate(grads, start=1):
        if weight_decay != 0:
            g = g + weight_decay * p
        w = 1 - b1
        m = m + w * (g - m) if w < 0.5 else g - (g - m) * (1 - w)
        v = v * b2 + (1 - b2) * g * g
        denom = np.sqrt(v) / math.sqrt(1 - b2**t) + eps
        p = p + (-(lr / (1 - b1**t)) * m) / denom
    return p


def torch_rmsprop(p, grads, lr, alpha, eps, weight_decay, momentum, centered):
    """torch.optim.RMSprop's single-tensor step (lerp for grad_avg), in float64, over a list of
    grads."""
    p, grads = p.astype(np.float64), [g.astype(np.float64) for g in grads]
    square_avg, grad_avg, buf = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        if weight_decay != 0:
            g = g + weight_decay * p
        square_avg = alpha * square_avg + (1 - alpha) * g * g
        if centered:
            w = 1 - alpha
            grad_avg = grad_avg + w * (g - grad_avg) if w < 0.5 else g - (g - grad_avg) * (1 - w)
            avg = np.sqrt(square_avg - grad_avg * grad_avg) + eps
        else:
            avg = np.sqrt(square_avg) + eps
        if momentum > 0:
            buf = momentum * buf + g / avg
            p = p - lr * buf
        else:
            p = p - lr * g / avg
    return p


def run(opt_cls, kwargs, p0, grads):
    p = nn.Parameter(p0.copy())
    opt = opt_cls([p], **kwargs)
    for g in grads:
        p.grad = g.copy()
        opt.step()
    return p, opt


sgd_configs = st.fixed_dictionaries({
    "lr": st.sampled_from([0.1, 0.01]),
    "momentum": st.sampled_from([0.0, 0.9]),
    "dampening": st.sampled_from([0.0, 0.5]),
    "weight_decay": st.sampled_from([0.0, 1e-2]),
    "nesterov": st.booleans(),
}).map(lambda c: {**c, "dampening": 0.0} if c["nesterov"] else c).map(
    lambda c: {**c, "momentum": 0.9} if c["nesterov"] else c
)  # repaired: Nesterov needs momentum and no dampening  # fmt: skip


@given(config=sgd_configs, dtype=st.sampled_from([np.float32, np.float64]), seed=seeds)
def test_sgd_matches_torch_formulas(config, dtype, seed):
    p0 = values(seed, (3, 2)).astype(dtype)
    grads = [values(seed + i + 1, (3, 2)).astype(dtype) for i in range(STEPS)]
    p, _ = run(optim.SGD, config, p0, grads)
    assert p.dtype == dtype
    np.testing.assert_allclose(p.data, torch_sgd(p0, grads, **config),
                               rtol=1e-6 if dtype == np.float32 else 1e-13)  # fmt: skip


adam_configs = st.fixed_dictionaries({
    "lr": st.sampled_from([1e-3, 2e-4, 0.1]),
    "betas": st.sampled_from([(0.9, 0.999), (0.5, 0.999), (0.3, 0.9)]),  # 0.5, 0.3: lerp's 2nd form
    "eps": st.sampled_from([1e-8, 1e-3]),
    "weight_decay": st.sampled_from([0.0, 1e-2]),
})  # fmt: skip


@given(config=adam_configs, dtype=st.sampled_from([np.float32, np.float64]), seed=seeds)
def test_adam_matches_torch_formulas(config, dtype, seed):
    p0 = values(seed, (4,)).astype(dtype)
    grads = [values(seed + i + 1, (4,)).astype(dtype) for i in range(STEPS)]
    p, opt = run(optim.Adam, config, p0, grads)
    assert p.dtype == dtype and opt.state[0]["exp_avg"].dtype == dtype
    assert opt.state[0]["step"] == STEPS
    np.testing.assert_allclose(p.data, torch_adam(p0, grads, **config),
                               rtol=1e-5 if dtype == np.float32 else 1e-12)  # fmt: skip


rmsprop_configs = st.fixed_dictionaries({
    "lr": st.sampled_from([1e-2, 1e-3]),
    "alpha": st.sampled_from([0.99, 0.9, 0.3]),  # 0.3: lerp's second form for grad_avg
    "eps": st.sampled_from([1e-8, 1e-3]),
    "weight_decay": st.sampled_from([0.0, 1e-2]),
    "momentum": st.sampled_from([0.0, 0.9]),
    "centered": st.booleans(),
})  # fmt: skip


@given(config=rmsprop_configs, dtype=st.sampled_from([np.float32, np.float64]), seed=seeds)
def test_rmsprop_matches_torch_formulas(config, dtype, seed):
    p0 = values(seed, (3, 4)).astype(dtype)
    grads = [values(seed + i + 1, (3, 4)).astype(dtype) for i in range(10)]
    p, opt = run(optim.RMSprop, config, p0, grads)
    state = opt.state[0]
    assert p.dtype == dtype and state["step"] == 10
    assert all(state[k].dtype == dtype for k in ("square_avg", "momentum_buffer", "grad_avg"))
    # float32: each step rounds at ~6e-8 relative; 10 steps of size <= lr * 10 stay within 1e-5
    np.testing.assert_allclose(p.data, torch_rmsprop(p0, grads, **config),
                               rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 0)  # fmt: skip


def test_rmsprop_defaults_are_torchs():
    p = nn.Parameter(np.ones(2))
    opt = optim.RMSprop([p])
    hparams = (opt.lr, opt.alpha, opt.eps, opt.weight_decay, opt.momentum, opt.centered)
    assert hparams == (1e-2, 0.99, 1e-8, 0.0, 0.0, False)
    p.grad = np.array([2.0, -3.0])
    opt.step()  # first step: g / sqrt(0.01 g^2) = sign(g) * 10, times lr
    np.testing.assert_allclose(p.data, [1 - 0.1, 1 + 0.1], rtol=1e-7)


def test_params_without_grad_are_skipped_and_zero_grad_clears():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = np.ones(2)
    opt.step()
    assert (a.data < 1).all() and (b.data == 1).all() and opt.state[1] == {}
    opt.zero_grad()
    assert a.grad is None and b.grad is None


@pytest.mark.parametrize("opt_cls", [optim.SGD, optim.Adam, optim.RMSprop])
def test_a_step_after_backward_with_create_graph_uses_the_values(opt_cls):
    # .grad is then a Tensor in the graph; the step must equal the one from a plain backward
    # (it raised "operand 'Tensor' does not support ufuncs")
    params = []
    for create_graph in (False, True):
        p = nn.Parameter(np.array([1.0, -2.0, 0.5]))
        opt = opt_cls([p], lr=0.1, weight_decay=0.01)
        for _ in range(2):
            opt.zero_grad()
            (p**3).sum().backward(create_graph=create_graph)
            opt.step()
        assert isinstance(p.grad, tg.Tensor) == create_graph
        params.append(p.data)
    np.testing.assert_array_equal(*params)


def test_updates_are_in_place():
    p = nn.Parameter(np.ones(3, np.float32))
    data = p.data
    for opt in (optim.SGD([p], lr=0.1, momentum=0.5), optim.Adam([p])):
        p.grad = np.ones(3, np.float32)
        opt.step()
    assert p.data is data and p.data.dtype == np.float32


@pytest.mark.parametrize(
    "make, match",
    [(lambda p: optim.SGD(p, lr=-1), "SGD: lr must be a finite number >= 0; got -1"),
     (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), "SGD: momentum must be .* got -0.5"),
     (lambda p: optim.SGD(p, lr=0.1, dampening=float("inf")), "SGD: dampening must be a finite number; got inf"),
     (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "Nesterov momentum needs momentum > 0"),
     (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "dampening == 0"),
     (lambda p: optim.Adam(p, lr=float("nan")), "Adam: lr must be a finite number >= 0; got nan"),
     (lambda p: optim.Adam(p, lr=float("inf")), "Adam: lr must be a finite number >= 0; got inf"),
     (lambda p: optim.Adam(p, betas=(1.0, 0.999)), r"betas\[0\] must be .* in \[0, 1\); got 1.0"),
     (lambda p: optim.Adam(p, betas=(0.9, -0.1)), r"betas\[1\] must be .*; got -0.1"),
     (lambda p: optim.Adam(p, betas=(0.9,)), "betas must be a pair of numbers"),
     (lambda p: optim.Adam(p, eps=-1e-8), "Adam: eps must be"),
     (lambda p: optim.Adam(p, weight_decay=-1), "Adam: weight_decay must be"),
     (lambda p: optim.RMSprop(p, lr=-1e-2), "RMSprop: lr must be .*; got -0.01"),
     (lambda p: optim.RMSprop(p, alpha=1.5), r"alpha must be a finite number in \[0, 1\]; got 1.5"),
     (lambda p: optim.RMSprop(p, alpha=-0.1), "alpha must be .*; got -0.1"),
     (lambda p: optim.RMSprop(p, eps=-1e-8), "RMSprop: eps must be"),
     (lambda p: optim.RMSprop(p, momentum=-0.9), "momentum must be .*; got -0.9"),
     (lambda p: optim.RMSprop(p, weight_decay=float("nan")), "weight_decay must be .*; got nan"),
     (lambda p: optim.Adam([]), "empty parameter list"),
     (lambda p: optim.Adam(p + p), "more than once")],
)  # fmt: skip
def test_validation_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make([nn.Parameter(np.ones(2))])


@pytest.mark.parametrize(
    "make, match",
    [(lambda p: optim.SGD(p, lr="0.1"), "SGD: lr must be a real number; got str '0.1'"),
     (lambda p: optim.Adam(p, lr=True), "Adam: lr must be a real number; got bool"),
     (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=1), "nesterov must be a bool"),
     (lambda p: optim.RMSprop(p, centered="no"), "centered must be a bool; got str 'no'")],
)  # fmt: skip
def test_hyperparameters_of_the_wrong_type_are_not_coerced(make, match):
    with pytest.raises(TypeError, match=match):
        make([nn.Parameter(np.ones(2))])


@pytest.mark.parametrize(
    "opt_cls, name, value",
    [(optim.Adam, "lr", float("nan")), (optim.Adam, "lr", float("inf")),
     (optim.Adam, "betas", (0.9, 1.0)), (optim.SGD, "momentum", -1.0),
     (optim.RMSprop, "alpha", 2.0), (optim.RMSprop, "eps", float("inf"))],
)  # fmt: skip
def test_assigning_a_bad_hyperparameter_is_refused_and_changes_nothing(opt_cls, name, value):
    """Regression (issue 14): ``opt.lr = nan`` after construction was accepted silently, and the
    next step() wrote NaN into every parameter."""
    p = nn.Parameter(np.ones(2))
    opt = opt_cls([p], lr=0.1)
    before = opt.state_dict()
    with pytest.raises(ValueError, match=rf"{name}.* must be"):
        setattr(opt, name, value)
    assert opt.state_dict() == before
    p.grad = np.ones(2)
    opt.step()
    assert np.isfinite(p.data).all()


def test_assigned_hyperparameters_are_normalised():
    opt = optim.Adam([nn.Parameter(np.ones(2))])
    opt.lr = np.float32(0.5)
    opt.betas = [0.5, 0.9]
    assert type(opt.lr) is float and opt.lr == 0.5 and opt.betas == (0.5, 0.9)
    sgd = optim.SGD([nn.Parameter(np.ones(2))], lr=0.1, momentum=0.9, nesterov=True)
    with pytest.raises(ValueError, match="Nesterov"):
        sgd.momentum = 0.0  # checked with the others: Nesterov needs momentum
    assert sgd.momentum == 0.9


def test_non_leaf_parameters_are_rejected():
    p = nn.Parameter(np.ones(2))
    with pytest.raises(TypeError, match="parameter 0 is not a floating-point leaf Tensor"):
        optim.SGD([p * 2], lr=0.1)


def train(model, opt, steps, seed):
    """A few steps of a small regression, one gradient per step from (seed, step)."""
    for step in range(steps):
        rng = np.random.default_rng([seed, step])
        x = tg.tensor(rng.standard_normal((8, 3)).astype(np.float32))
        t = rng.standard_normal((8, 1)).astype(np.float32)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), t).backward()
        opt.step()


@pytest.mark.parametrize(
    "opt_cls, kwargs",
    [(optim.Adam, {"lr": 1e-2, "betas": (0.5, 0.99), "weight_decay": 1e-3}),
     (optim.SGD, {"lr": 1e-2, "momentum": 0.9, "nesterov": True}),
     (optim.RMSprop, {"lr": 1e-2}),
     (optim.RMSprop, {"lr": 1e-2, "alpha": 0.9, "momentum": 0.9, "centered": True,
                      "weight_decay": 1e-3})],
)  # fmt: skip
def test_state_dict_round_trip_through_a_file_resumes_exactly(tmp_path, opt_cls, kwargs):
    def make():
        model = nn.Sequential(nn.Linear(3, 5, rng=0), nn.Tanh(), nn.Linear(5, 1, rng=1))
        return model, opt_cls(model.parameters(), **kwargs)

    model, opt = make()
    train(model, opt, 3, seed=1)
    state = {f"model/{k}": v for k, v in model.state_dict().items()}
    state.update({f"opt/{k}": v for k, v in opt.state_dict().items()})
    tg.save(state, tmp_path / "ckpt.npz")
    train(model, opt, 4, seed=2)

    model2, opt2 = make()
    opt2.lr = 123.0  # overwritten by the checkpoint
    loaded = tg.load(tmp_path / "ckpt.npz")
    model2.load_state_dict({k[6:]: v for k, v in loaded.items() if k.startswith("model/")})
    opt2.load_state_dict({k[4:]: v for k, v in loaded.items() if k.startswith("opt/")})
    assert opt2.lr == kwargs["lr"] and type(opt2.lr) is float
    train(model2, opt2, 4, seed=2)
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)


def test_load_state_dict_errors():
    p = nn.Parameter(np.ones(2, np.float32))
    opt = optim.Adam([p])
    p.grad = np.ones(2, np.float32)
    opt.step()
    good = opt.state_dict()
    with pytest.raises(ValueError, match="missing keys \\['eps'\\]"):
        opt.load_state_dict({k: v for k, v in good.items() if k != "eps"})
    with pytest.raises(ValueError, match=r"unexpected key '3.exp_avg'"):
        opt.load_state_dict({**good, "3.exp_avg": np.zeros(2, np.float32)})
    with pytest.raises(
        ValueError, match=r"state '0.exp_avg' is \(3,\) float32; parameter 0 is \(2,\)"
    ):
        opt.load_state_dict({**good, "0.exp_avg": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"betas\[0\] must be .*; got 1.5"):
        opt.load_state_dict({**good, "betas": np.array([1.5, 0.9])})
    assert opt.betas == (0.9, 0.999)


@given(seed=seeds)
def test_optimizer_state_is_copied_on_load(seed):
    p = nn.Parameter(values(seed, 3))
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = values(seed + 1, 3)
    opt.step()
    sd = opt.state_dict()
    opt2 = optim.SGD([p], lr=0.1, momentum=0.9)
    opt2.load_state_dict(sd)
    assert opt2.state[0]["momentum_buffer"] is not sd["0.momentum_buffer"]
    np.testing.assert_array_equal(opt2.state[0]["momentum_buffer"], sd["0.momentum_buffer"])


@pytest.mark.gpu
@pytest.mark.parametrize("opt_cls, kwargs", [
    (optim.Adam, {"lr": 1e-2, "betas": (0.5, 0.999), "weight_decay": 1e-2}),
    (optim.Adam, {"lr": 1e-3}),
    (optim.SGD, {"lr": 1e-2, "momentum": 0.9, "weight_decay": 1e-2}),
    (optim.SGD, {"lr": 1e-2}),
    (optim.RMSprop, {"lr": 1e-2, "momentum": 0.9, "centered": True, "weight_decay": 1e-2}),
    (optim.RMSprop, {"lr": 1e-2}),
])  # fmt: skip
def test_gpu_steps_match_cpu(opt_cls, kwargs):
    cupy = tg.backend.cupy()
    p0 = values(0, (64, 33)).astype(np.float32)
    grads = [values(i + 1, (64, 33)).astype(np.float32) for i in range(STEPS)]
    cpu, _ = run(opt_cls, kwargs, p0, grads)
    p = nn.Parameter(cupy.asarray(p0))
    opt = opt_cls([p], **kwargs)
    for g in grads:
        p.grad = cupy.asarray(g)
        opt.step()
    np.testing.assert_allclose(p.data.get(), cpu.data, rtol=1e-5, atol=1e-6)
    for value in opt.state[0].values():  # the moments and buffers stay on the device
        assert isinstance(value, (int, cupy.ndarray)), type(value)


def test_incomplete_parameter_state_is_refused():
    """Regression: a state with 'step' but no moments loaded, then failed at the next step()."""
    p = tg.nn.Parameter(np.ones(3, np.float32))
    opt = tg.optim.Adam([p], lr=0.1)
    p.grad = np.ones(3, np.float32)
    opt.step()
    state = opt.state_dict()
    del state["0.exp_avg"]
    with pytest.raises(ValueError, match=r"parameter 0's state has \['exp_avg_sq', 'step'\]"):
        tg.optim.Adam([p], lr=0.1).load_state_dict(state)
