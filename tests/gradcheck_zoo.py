"""Two zoos for the gradient checker: correct library ops, and ops with a planted bug.

``CORRECT[name](n, rng) -> (fn, arrays)``: a library op on n x n inputs (vectors of n for biases)
that gradcheck must pass at any size. ``PLANTED[name] = Bug(...)``: a user op with one bug each,
the check that must catch it and the one input it must blame. Used by tests/test_gradcheck.py
and bench/bench_gradcheck.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import tinygan as tg
import tinygan.nn.functional as F

Case = tuple[Callable[..., tg.Tensor], list[Any]]


def _r(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape)


def _away(x: np.ndarray, margin: float = 0.5) -> np.ndarray:
    return np.where(x >= 0, 1, -1) * (np.abs(x) + margin)


CORRECT: dict[str, Callable[[int, np.random.Generator], Case]] = {
    "tanh": lambda n, rng: (tg.tanh, [_r(rng, n, n)]),
    "sigmoid": lambda n, rng: (tg.sigmoid, [_r(rng, n, n)]),
    "softplus": lambda n, rng: (tg.softplus, [_r(rng, n, n)]),
    "exp": lambda n, rng: (tg.exp, [_r(rng, n, n)]),
    "relu": lambda n, rng: (tg.relu, [_r(rng, n, n)]),
    "leaky_relu": lambda n, rng: (lambda x: tg.leaky_relu(x, 0.1), [_r(rng, n, n)]),
    "abs": lambda n, rng: (tg.abs, [_r(rng, n, n)]),
    "bias_add": lambda n, rng: (lambda x, b: x + b, [_r(rng, n, n), _r(rng, n)]),
    "mul": lambda n, rng: (lambda a, b: a * b, [_r(rng, n, n), _r(rng, n, n)]),
    "div": lambda n, rng: (lambda a, b: a / b, [_r(rng, n, n), _away(_r(rng, n, n))]),
    "matmul": lambda n, rng: (lambda a, b: a @ b, [_r(rng, n, n), _r(rng, n, n)]),
    "softmax": lambda n, rng: (lambda x: tg.softmax(x, 1), [_r(rng, n, n)]),
    "log_softmax": lambda n, rng: (lambda x: tg.log_softmax(x, 1), [_r(rng, n, n)]),
    "logsumexp": lambda n, rng: (lambda x: tg.logsumexp(x, 1), [_r(rng, n, n)]),
    "amax": lambda n, rng: (lambda x: tg.amax(x, 1), [_r(rng, n, n)]),
    "linear": lambda n, rng: (F.linear, [_r(rng, n, n), _r(rng, n, n), _r(rng, n)]),
    "mse_loss": lambda n, rng: (F.mse_loss, [_r(rng, n, n), _r(rng, n, n)]),
    "cross_entropy": lambda n, rng: (
        lambda x: F.cross_entropy(x, rng_targets(n)),
        [3 * _r(rng, n, n)],
    ),
    "batch_norm": lambda n, rng: (
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        [_r(rng, n, n), _r(rng, n), _r(rng, n)],
    ),
}


def rng_targets(n: int) -> np.ndarray:
    """Fixed integer class targets for an n x n cross-entropy (n classes)."""
    return np.arange(n) * 7 % n


# ---- planted bugs ---------------------------------------------------------------------------
# Backward gets the upstream gradient as a Tensor and returns Tensors or arrays (function.py);
# the bugs below that need raw memory reach it through ``.data``, as a user's op would.
class Square(tg.Function):
    """A correct user op, written the documented way."""

    def forward(self, x):
        return x * x

    def backward(self, gy):
        (x,) = self.inputs
        return 2 * x * gy


class WrongScale(Square):
    def backward(self, gy):
        return 1.01 * super().backward(gy)


class OneElementOff(tg.Function):
    """tanh whose gradient is 1% off at one element (the middle row, a third across)."""

    def forward(self, x):
        return np.tanh(x)

    def backward(self, gy):
        y = self.output
        g = (gy * (1 - y * y)).data
        n, m = g.shape
        g[n // 2, m // 3] *= 1.01
        return g


class BiasAddWrongAxis(tg.Function):
    """``x + b`` (b broadcast over rows) whose bias gradient sums the wrong axis."""

    def forward(self, x, b):
        return x + b

    def backward(self, gy):
        return gy, gy.sum(1)  # should be 0; the shapes agree when x is square


class MatMulTransposedGrad(tg.Function):
    def forward(self, a, b):
        return a @ b

    def backward(self, gy):
        a, b = self.inputs
        return gy @ b, a.T @ gy  # the first should be gy @ b.T


class WritesUpstream(tg.Function):
    """``2 x`` whose backward doubles the upstream gradient's array in place and returns it."""

    def forward(self, x):
        return 2 * x

    def backward(self, gy):
        g = gy.data
        g *= 2
        return g


class ContiguousOnly(Square):
    """Reads its input in memory order: right only for C-contiguous inputs."""

    def backward(self, gy):
        x = self.inputs[0].data
        return 2 * x.ravel(order="K").reshape(x.shape) * gy


class UpstreamContiguousOnly(Square):
    """Reads the upstream gradient in memory order: right only for a C-contiguous one."""

    def backward(self, gy):
        g = gy.data
        return 2 * self.inputs[0] * g.ravel(order="K").reshape(g.shape)


class Float64Only(tg.Function):
    """tanh whose backward takes its own finite difference, step 1e-8: fine in float64 only."""

    def forward(self, x):
        return np.tanh(x)

    def backward(self, gy):
        x, h = self.inputs[0].data, 1e-8
        return gy * ((np.tanh(x + h) - np.tanh(x - h)) / (2 * h))


class PromotesFloat32(tg.Function):
    """leaky_relu whose backward builds a float64 slope array: float32 gradients break."""

    def forward(self, x):
        return np.where(x > 0, x, 0.1 * x)

    def backward(self, gy):
        return gy * np.where(self.inputs[0].data > 0, 1.0, 0.1)


class WrongDtype(tg.Function):
    """``a * b`` whose gradient for ``b`` is cast to float32."""

    def forward(self, a, b):
        return a * b

    def backward(self, gy):
        a, b = self.inputs
        return gy * b, (gy * a).astype(np.float32)


class AddNoReduce(tg.Function):
    """Broadcasting add whose backward forgets to sum back to the bias's shape."""

    def forward(self, x, b):
        return x + b

    def backward(self, gy):
        return gy, gy


class ReluInPlace(tg.Function):
    """``a + relu(b)`` that applies the relu to ``b`` in place."""

    def forward(self, a, b):
        np.maximum(b, 0, out=b)
        self.mask = (b > 0).astype(b.dtype)
        return a + b

    def backward(self, gy):
        return gy, gy * self.mask


class ConsumesSaved(tg.Function):
    """``x * x`` whose backward halves what forward saved: a second backward differs."""

    def forward(self, x):
        self.x = x.copy()
        return x * x

    def backward(self, gy):
        g = 2 * self.x * gy
        self.x *= 0.5
        return g


class AliasesInput(tg.Function):
    """Identity whose backward hands back the input's own memory (filled with the grad)."""

    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        x = self.inputs[0].data
        x[...] = gy.data
        return x


class IgnoresUpstream(tg.Function):
    """``3 x`` whose backward returns 3 whatever the upstream gradient."""

    def forward(self, x):
        return x * 3

    def backward(self, gy):
        return np.full(gy.shape, 3.0, gy.dtype)


class KinkWrongSubgradient(tg.Function):
    """leaky_relu(0.1) with gradient 0 at x == 0, outside [0.1, 1] (its one-sided slopes)."""

    def forward(self, x):
        return np.where(x > 0, x, 0.1 * x)

    def backward(self, gy):
        x = self.inputs[0].data
        return gy * np.where(x > 0, 1.0, np.where(x < 0, 0.1, 0.0)).astype(x.dtype)


def _with_zeros(x: np.ndarray) -> np.ndarray:
    """``x`` with every fifth element set to exactly 0 (a kink of relu-like ops)."""
    x = x.copy()
    x.reshape(-1)[::5] = 0.0
    return x


@dataclass(frozen=True)
class Bug:
    """A planted bug: the op, its inputs at size n, the check that must fail, the input blamed."""

    op: type[tg.Function]
    inputs: Callable[[int, np.random.Generator], list[np.ndarray]]
    check: str
    blamed: int


_one = lambda n, rng: [_r(rng, n, n)]  # noqa: E731
_two = lambda n, rng: [_r(rng, n, n), _r(rng, n, n)]  # noqa: E731
_bias = lambda n, rng: [_r(rng, n, n), _r(rng, n)]  # noqa: E731

PLANTED: dict[str, Bug] = {
    "wrong scale (1.01x)": Bug(WrongScale, _one, "numerical", 0),
    "1% off on one element": Bug(OneElementOff, _one, "numerical", 0),
    "bias add reduced over the wrong axis": Bug(BiasAddWrongAxis, _bias, "numerical", 1),
    "matmul gradient not transposed": Bug(MatMulTransposedGrad, _two, "numerical", 0),
    "writes into the upstream gradient": Bug(WritesUpstream, _one, "upstream", 0),
    "right only for C-contiguous inputs": Bug(ContiguousOnly, _one, "layout", 0),
    "right only for a C-contiguous upstream": Bug(UpstreamContiguousOnly, _one, "layout", 0),
    "right only in float64": Bug(Float64Only, _one, "float32", 0),
    "float32 gradient promoted to float64": Bug(PromotesFloat32, _one, "float32 run", 0),
    "gradient of the wrong dtype": Bug(WrongDtype, _two, "backward", 1),
    "gradient of the wrong shape": Bug(AddNoReduce, _bias, "backward", 1),
    "mutates an input": Bug(ReluInPlace, _two, "purity", 1),
    "state changed by backward": Bug(ConsumesSaved, _one, "second backward", 0),
    "gradient aliases the input": Bug(AliasesInput, _one, "aliasing", 0),
    "ignores the upstream gradient": Bug(IgnoresUpstream, _one, "zero upstream", 0),
    "wrong subgradient at a kink": Bug(
        KinkWrongSubgradient, lambda n, rng: [_with_zeros(_r(rng, n, n))], "not differentiable", 0
    ),
}
