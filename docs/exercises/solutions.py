"""Solutions to the exercises of docs/exercises.md (the same names as exercises.py).

tests/test_exercises.py runs its checks on this file always, and on exercises.py with
``TINYGAN_EXERCISES=1``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from hypothesis import settings

import tinygan as tg
from tinygan import Function, Tensor, sum_to
from tinygan.function import broadcast_shape
from tinygan.graph import draw_graph
from tinygan.ops.activation import stable_sigmoid
from tinygan.testing import Domain, broadcastable_shapes, op_test

# ---- 1. Predict the backward pass ------------------------------------------------------------
# y = c * e with c = a * b = -6 and e = a + b = -1. The engine lists the graph depth-first from
# y, pushing an op's inputs in order, so the last input (e) is explored first and finishes
# first: the list, inputs before consumers, is a, b, e, c, y (b, a, e, c, y: the leaves do not
# matter here). Walked backwards: y, c, e. The gradients: dy/dc = e = -1, dy/de = c = -6,
# dy/da = dy/dc * b + dy/de * 1 = 3 - 6 = -3, dy/db = dy/dc * a + dy/de * 1 = -2 - 6 = -8.
PREDICTED_ORDER: list[str] = ["y", "c", "e"]
PREDICTED_GRADS: dict[str, float] = {"a": -3.0, "b": -8.0, "c": -1.0, "e": -6.0}


# ---- 2. Sin and Cos: an op and its backward ----------------------------------------------------
class Sin(Function):
    """Elementwise sine."""

    def forward(self, x):
        return self.xp.sin(x)

    def backward(self, gy):
        return gy * cos(self.inputs[0])  # a Tensor op: differentiable again


class Cos(Function):
    """Elementwise cosine."""

    def forward(self, x):
        return self.xp.cos(x)

    def backward(self, gy):
        return -gy * sin(self.inputs[0])


def sin(x: Tensor) -> Tensor:
    """``sin(x)``, differentiable to any order."""
    return Sin()(x)


def cos(x: Tensor) -> Tensor:
    """``cos(x)``, differentiable to any order."""
    return Cos()(x)


# ---- 3. Find the planted bugs ------------------------------------------------------------------
class Hypot(Function):
    """``sqrt(a**2 + b**2)`` elementwise, with broadcasting.

    The two bugs: ``a.abs()`` where ``a`` belongs (wrong for negative ``a``: the check with
    ``rng.random`` drew none), and ``b``'s gradient reduced in two halves,
    ``sum_to(gy * b) / sum_to(y)`` instead of ``sum_to(gy * b / y)`` (the same unless ``b`` was
    broadcast: the check used one shape). The property test below finds each in its first few
    examples, and shrinks it to a 0-d or single-element case.
    """

    def forward(self, a, b):
        broadcast_shape("hypot", a, b)
        return self.xp.hypot(a, b)

    def backward(self, gy):
        a, b = self.inputs
        y = self.output
        ga = sum_to(gy * a / y, a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(gy * b / y, b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def hypot(a: Tensor, b: Tensor) -> Tensor:
    """``sqrt(a**2 + b**2)`` elementwise, with broadcasting."""
    return Hypot()(a, b)


# Values of either sign (Domain() draws normal values), shapes that broadcast against each other.
# 10 examples keep the test suite quick (the default profile draws 30); they find both bugs.
test_hypot = settings(max_examples=10)(
    op_test(hypot, np.hypot, inputs=2, shapes=broadcastable_shapes(2))
)


# ---- 4. Add an activation and property-test it -------------------------------------------------
class SiLU(Function):
    """``x * sigmoid(x)`` (also called swish)."""

    def forward(self, x):
        return x * stable_sigmoid(x, self.xp)  # exp(-x) alone would overflow at x = -1000

    def backward(self, gy):
        (x,) = self.inputs
        s = tg.sigmoid(x)  # d/dx x s(x) = s + x s (1 - s)
        return gy * (s + x * s * (1 - s))


def silu(x: Tensor) -> Tensor:
    """``x * sigmoid(x)``."""
    return SiLU()(x)


def _silu_reference(x: np.ndarray) -> np.ndarray:
    return x / (1 + np.exp(-x))


# Values up to +-8 (beyond, float32's sigmoid saturates); SiLU is smooth, so no kinks to avoid.
test_silu = settings(max_examples=10)(
    op_test(silu, _silu_reference, inputs=[Domain(low=-8.0, high=8.0)])
)


# ---- 5. A second derivative: the Hessian -------------------------------------------------------
def hessian(f: Callable[[Tensor], Tensor], x: np.ndarray) -> np.ndarray:
    """The matrix of second derivatives of ``f`` at ``x``.

    Parameters
    ----------
    f : callable
        Maps a Tensor of shape (n,) to a one-element Tensor, with tinygan ops.
    x : numpy.ndarray, shape (n,), float64

    Returns
    -------
    numpy.ndarray, shape (n, n): ``H[i, j] = d^2 f / dx_i dx_j``.
    """
    xt = tg.tensor(x, requires_grad=True)
    (g,) = tg.grad(f(xt), xt, create_graph=True)  # g: a Tensor in a graph, shape (n,)
    rows = []
    for i in range(len(x)):  # row i: the gradient of g[i]; the graph of g is needed n times
        (row,) = tg.grad(g[i], xt, retain_graph=True, allow_unused=True)
        rows.append(np.zeros_like(x) if row is None else row.numpy())
    return np.stack(rows)


# ---- 6. Draw the graph of InfoGAN's information loss --------------------------------------------
def info_loss_graph(path: str | Path) -> str:
    """Build a tiny InfoGAN and the information loss of its generator step; draw its graph.

    Returns
    -------
    str: the DOT text of the loss's graph, also drawn to ``path``.
    """
    from tinygan.models import LatentSpec, MLPDiscriminator, MLPGenerator, information_terms

    spec = LatentSpec(categorical=(3,), continuous=1, noise=2)
    G = MLPGenerator(spec.dim, 4, hidden=8, rng=np.random.default_rng(0))
    D = MLPDiscriminator(4, spec.q_dim, hidden=8, rng=np.random.default_rng(0))
    latent = spec.sample(5, np.random.default_rng(1))
    fake = G(Tensor(latent.vector()))
    cat_ce, cont_nll = information_terms(D.q_head(D.body(fake)), latent)
    loss = cat_ce + cont_nll
    names = {f"G.{k}": p for k, p in G.named_parameters()}
    names.update({f"D.{k}": p for k, p in D.named_parameters()})
    names["loss"] = loss
    return draw_graph(loss, path, names=names, rankdir="TB")
