"""Cross-check second derivatives against PyTorch: Hessian-vector products through every layer.

    python bench/torch_hvp.py          # needs torch (pip install torch==2.13.0), float64

For each op or layer type, the same float64 inputs go through tinygan and PyTorch; a scalar
loss ``L = sum(f(inputs) * w)`` (``w`` fixed random) is differentiated with ``create_graph``,
then ``<grad L, v>`` once more, giving the Hessian-vector product ``H v`` with respect to every
input. Prints the largest absolute difference and the largest difference relative to the
largest |H v| entry (the absolute one where H v = 0), per case. PyTorch is used here only,
never by tinygan or its tests.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as TF

import tinygan as tg
import tinygan.nn.functional as F


def _full(value: float) -> torch.Tensor:
    return torch.full((3,), value, dtype=torch.float64)


CASES = {  # name: (tinygan fn, torch fn, input shapes, positive-input indices)
    "linear": (F.linear, TF.linear, [(5, 4), (3, 4), (3,)], ()),
    "conv2d": (
        lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2)),
        lambda x, w, b: TF.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2)),
        [(2, 3, 7, 8), (4, 3, 3, 2), (4,)],
        (),
    ),
    "conv_transpose2d": (
        lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
        lambda x, w, b: TF.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
        [(2, 3, 4, 5), (3, 2, 4, 4), (2,)],
        (),
    ),
    "batch_norm (training)": (
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True),
        [(6, 3, 2, 2), (3,), (3,)],
        (),
    ),
    "batch_norm (eval)": (
        lambda x, w, b: F.batch_norm(x, np.full(3, 0.1), np.full(3, 1.5), w, b),
        lambda x, w, b: TF.batch_norm(x, _full(0.1), _full(1.5), w, b),
        [(6, 3, 2, 2), (3,), (3,)],
        (),
    ),
    "relu": (tg.relu, torch.relu, [(4, 5)], ()),
    "leaky_relu": (lambda x: tg.leaky_relu(x, 0.1), lambda x: TF.leaky_relu(x, 0.1), [(4, 5)], ()),
    "sigmoid": (tg.sigmoid, torch.sigmoid, [(4, 5)], ()),
    "tanh": (tg.tanh, torch.tanh, [(4, 5)], ()),
    "softplus": (tg.softplus, TF.softplus, [(4, 5)], ()),
    "log_softmax": (lambda x: tg.log_softmax(x, 1), lambda x: TF.log_softmax(x, 1), [(4, 5)], ()),
    "softmax": (lambda x: tg.softmax(x, 0), lambda x: TF.softmax(x, 0), [(4, 5)], ()),
    "logsumexp": (lambda x: tg.logsumexp(x, 1), lambda x: torch.logsumexp(x, 1), [(4, 5)], ()),
    "matmul (batched)": (lambda a, b: a @ b, lambda a, b: a @ b, [(2, 3, 4), (4, 5)], ()),
    "elementwise (div, pow, exp, log, sqrt)": (
        lambda a, b: (a / b) ** 3 + a.exp() * b.log() + (a * a + b).sqrt(),
        lambda a, b: (a / b) ** 3 + a.exp() * b.log() + (a * a + b).sqrt(),
        [(3, 4), (3, 4)],
        (1,),
    ),
    "reductions and shapes": (
        lambda a: (a * a).sum(0) * a.mean(1).reshape(3, 1) + a.T.reshape(3, 4) * a[:, 1:2],
        lambda a: (a * a).sum(0) * a.mean(1).reshape(3, 1) + a.T.reshape(3, 4) * a[:, 1:2],
        [(3, 4)],
        (),
    ),
    "cross_entropy": (
        lambda x: F.cross_entropy(x, np.array([1, 0, 3, 2])),
        lambda x: TF.cross_entropy(x, torch.tensor([1, 0, 3, 2])),
        [(4, 5)],
        (),
    ),
    "binary_cross_entropy_with_logits": (
        F.binary_cross_entropy_with_logits,
        TF.binary_cross_entropy_with_logits,
        [(4, 5)] * 2,
        (1,),
    ),
    "mse_loss": (F.mse_loss, TF.mse_loss, [(4, 5)] * 2, ()),
    "gaussian_nll_loss": (F.gaussian_nll_loss, TF.gaussian_nll_loss, [(4, 5)] * 3, (2,)),
}


def hvp_tinygan(fn, arrays, w, vs):
    xs = [tg.tensor(a, requires_grad=True) for a in arrays]
    loss = (fn(*xs) * w).sum()
    gs = tg.grad(loss, xs, create_graph=True)
    dot = sum((g * v).sum() for g, v in zip(gs, vs))
    if not dot.requires_grad:  # the gradient is constant (relu, leaky_relu): H = 0
        return [np.zeros(x.shape) for x in xs]
    hs = tg.grad(dot, xs, allow_unused=True)  # None: that input's row of H is zero
    return [np.zeros(x.shape) if h is None else h.numpy() for x, h in zip(xs, hs)]


def hvp_torch(fn, arrays, w, vs):
    xs = [torch.tensor(a, requires_grad=True) for a in arrays]
    loss = (fn(*xs) * torch.tensor(w)).sum()
    gs = torch.autograd.grad(loss, xs, create_graph=True)
    dot = sum((g * torch.tensor(v)).sum() for g, v in zip(gs, vs))
    hs = torch.autograd.grad(dot, xs, allow_unused=True)
    return [np.zeros(x.shape) if h is None else h.detach().numpy() for x, h in zip(xs, hs)]


def main() -> None:
    rng = np.random.default_rng(0)
    worst = 0.0
    print(f"{'case':42s} {'max |H v| diff':>15s} {'relative':>10s}")
    for name, (tg_fn, torch_fn, shapes, positive) in CASES.items():
        arrays = [
            rng.random(s) + 0.5 if i in positive else rng.standard_normal(s)
            for i, s in enumerate(shapes)
        ]
        with tg.no_grad():
            out_shape = tg_fn(*(tg.tensor(a) for a in arrays)).shape
        w = rng.standard_normal(out_shape)
        vs = [rng.standard_normal(s) for s in shapes]
        ours, theirs = hvp_tinygan(tg_fn, arrays, w, vs), hvp_torch(torch_fn, arrays, w, vs)
        diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs))
        scale = max(float(np.abs(b).max()) for b in theirs)  # 0 where H = 0 (relu)
        rel = diff / scale if scale else diff
        worst = max(worst, rel)
        print(f"{name:42s} {diff:15.3g} {rel:10.3g}")
    print(f"largest relative difference: {worst:.3g}")


if __name__ == "__main__":
    main()
