"""What every model in ``tinygan.models`` shares: named parts saved together, a device, batched
inference, the two context managers a training step needs (eval mode, frozen weights), and the
fully connected network builder."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .. import nn
from ..function import no_grad
from ..tensor import Tensor


class Model:
    """A trainable model made of named parts (modules and optimizers).

    Subclasses set ``parts`` (attribute names) and ``device``; ``state_dict`` holds every part's
    state under ``"<part>/<key>"``, which is what ``tinygan.train`` checkpoints. They also name
    in ``recipe_keys`` the attributes that shape training without being in that state (loss
    choices and weights): ``recipe()``.
    """

    parts: tuple[str, ...] = ()
    recipe_keys: tuple[str, ...] = ()
    device: str = "cpu"

    def recipe(self) -> dict[str, Any]:
        """The ``recipe_keys`` attributes by name: a checkpoint records them, and
        ``tinygan.train`` refuses to resume it with other values (resuming, say, with another
        loss would not continue the run)."""
        return {k: getattr(self, k) for k in self.recipe_keys}

    def tensor(self, a: np.ndarray) -> Tensor:
        """A host array as a Tensor on the model's device."""
        return Tensor(a).to(self.device)

    def batched(
        self,
        fn: Callable[[np.ndarray], Tensor | np.ndarray],
        x: np.ndarray,
        modules: tuple[nn.Module, ...],
        batch_size: int = 500,
    ) -> np.ndarray:
        """``fn`` over ``x`` in chunks of ``batch_size`` rows, ``modules`` in eval mode, no graph;
        the results joined along the first axis on the host."""
        with evaluating(*modules), no_grad():
            out = [fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate([a.numpy() if isinstance(a, Tensor) else a for a in out])

    def state_dict(self) -> dict[str, Any]:
        return {
            f"{name}/{k}": v
            for name in self.parts
            for k, v in getattr(self, name).state_dict().items()
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self.parts:
            part = {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + "/")}
            getattr(self, name).load_state_dict(part)


@contextlib.contextmanager
def evaluating(*modules: nn.Module) -> Iterator[None]:
    """Put ``modules`` in eval mode for the block, then back in the modes they were in."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Stop computing weight gradients of ``modules`` for the block (inputs still get theirs),
    then restore each parameter's ``requires_grad`` as it was: the generator's step
    backpropagates through D without paying for D's weight gradients."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad = False
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad = flag


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


def activation_layer(name: str, what: str = "activation") -> Callable[[], nn.Module]:
    """The layer factory ``ACTIVATIONS[name]``; ``what`` names the argument in the error."""
    if name not in ACTIVATIONS:
        raise ValueError(f"{what} must be one of {list(ACTIVATIONS)}; got {name!r}")
    return ACTIVATIONS[name]


def mlp(
    sizes: list[int],
    *,
    activation: str = "relu",
    batch_norm: bool = False,
    output: str | None = None,
    rng: np.random.Generator | None = None,
) -> nn.Sequential:
    """A fully connected network: Linear layers of ``sizes`` with ``activation`` (a name of
    ``ACTIVATIONS``) between them, BatchNorm1d before each hidden activation if asked, and an
    optional output activation (also a name of ``ACTIVATIONS``)."""
    act = activation_layer(activation, "activation")
    out = None if output is None else activation_layer(output, "output")
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least input and output sizes; got {sizes}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b, rng=rng))
        if i < len(sizes) - 2:
            layers += [nn.BatchNorm1d(b)] if batch_norm else []
            layers.append(act())
    if out is not None:
        layers.append(out())
    return nn.Sequential(*layers)
