"""Your answers to the exercises of docs/exercises.md: edit this file.

Check one exercise (by its number or name) or all of them with::

    TINYGAN_EXERCISES=1 python -m pytest tests/test_exercises.py -k predict
    TINYGAN_EXERCISES=1 python -m pytest tests/test_exercises.py

Without ``TINYGAN_EXERCISES=1`` the tests of this file are skipped (and the same tests run on
``solutions.py``, so that you can trust them). Look at ``solutions.py`` when you are stuck.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

import tinygan as tg  # noqa: F401 (for your answers: tg.grad, tg.sigmoid, ...)
from tinygan import Function, Tensor, sum_to
from tinygan.function import broadcast_shape

# ---- 1. Predict the backward pass ------------------------------------------------------------
# The graph: a = 2, b = -3;  c = a * b;  e = a + b;  y = c * e.
# Fill in, without running anything:
# - the names of the tensors whose op's backward runs, in the order tinygan runs them
#   (three of "y", "c", "e");
# - the gradient dy/d(name) of a, b, c and e.
PREDICTED_ORDER: list[str] = []
PREDICTED_GRADS: dict[str, float] = {}


# ---- 2. Sin and Cos: an op and its backward ----------------------------------------------------
class Sin(Function):
    """Elementwise sine."""

    def forward(self, x):
        return self.xp.sin(x)

    def backward(self, gy):
        raise NotImplementedError("exercise 2: d sin(x)/dx = cos(x); use the Cos op")


class Cos(Function):
    """Elementwise cosine."""

    def forward(self, x):
        raise NotImplementedError("exercise 2: forward computes on arrays (self.xp is the module)")

    def backward(self, gy):
        raise NotImplementedError("exercise 2: d cos(x)/dx = -sin(x); use the Sin op")


def sin(x: Tensor) -> Tensor:
    """``sin(x)``, differentiable to any order."""
    return Sin()(x)


def cos(x: Tensor) -> Tensor:
    """``cos(x)``, differentiable to any order."""
    return Cos()(x)


# ---- 3. Find the planted bugs ------------------------------------------------------------------
class Hypot(Function):
    """``sqrt(a**2 + b**2)`` elementwise, with broadcasting.

    This check passes, yet the backward has two bugs:

        rng = np.random.default_rng(0)
        a, b = (tg.tensor(rng.random(3), requires_grad=True) for _ in range(2))
        tg.gradcheck(hypot, [a, b])  # True
    """

    def forward(self, a, b):
        broadcast_shape("hypot", a, b)
        return self.xp.hypot(a, b)

    def backward(self, gy):
        a, b = self.inputs
        y = self.output
        ga = sum_to(gy * a.abs() / y, a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(gy * b, b.shape) / sum_to(y, b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def hypot(a: Tensor, b: Tensor) -> Tensor:
    """``sqrt(a**2 + b**2)`` elementwise, with broadcasting."""
    return Hypot()(a, b)


# Exercise 3: a property test of hypot made with tinygan.testing.op_test (drawing broadcastable
# shapes and values of either sign), which fails on the planted bugs and passes once fixed.
test_hypot: Callable[[], None] | None = None


# ---- 4. Add an activation and property-test it -------------------------------------------------
class SiLU(Function):
    """``x * sigmoid(x)`` (also called swish)."""

    def forward(self, x):
        raise NotImplementedError("exercise 4")

    def backward(self, gy):
        raise NotImplementedError("exercise 4: write it with Tensor ops, so it has a backward too")


def silu(x: Tensor) -> Tensor:
    """``x * sigmoid(x)``."""
    return SiLU()(x)


# Exercise 4: a property test of silu made with tinygan.testing.op_test.
test_silu: Callable[[], None] | None = None


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
    raise NotImplementedError("exercise 5: tg.grad(..., create_graph=True), then grad again")


# ---- 6. Draw the graph of InfoGAN's information loss --------------------------------------------
def info_loss_graph(path: str | Path) -> str:
    """Build a tiny InfoGAN and the information loss of its generator step; draw its graph.

    Use ``tinygan.models.LatentSpec(categorical=(3,), continuous=1, noise=2)``,
    ``MLPGenerator(spec.dim, 4, hidden=8)`` and ``MLPDiscriminator(4, spec.q_dim, hidden=8)``
    (both with ``rng=np.random.default_rng(0)``), a batch of 5 latents, and
    ``tinygan.models.information_terms`` on Q's output for G's images; the loss is the sum of
    the two terms. Name the parameters ``G.<name>`` and ``D.<name>`` (``named_parameters()``).

    Returns
    -------
    str: the DOT text of the loss's graph, also drawn to ``path``.
    """
    raise NotImplementedError("exercise 6")
