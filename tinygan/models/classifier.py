"""Supervised models for evaluation: ``Classifier`` (a network of logits trained with
cross-entropy), the MNIST CNN behind the sample-quality score, and the softmax regression of the
linear probe (``tinygan.evaluation`` trains them)."""

from __future__ import annotations

import numpy as np

from .. import nn
from ..nn import functional as F
from ..optim import Adam
from .base import Model

__all__ = ["Classifier", "mnist_cnn"]


def mnist_cnn(rng: np.random.Generator | None = None) -> nn.Sequential:
    """A small CNN for 28x28 digits: conv 32 (5x5, s2)-ReLU, conv 64 (5x5, s2)-ReLU,
    FC 128-ReLU, FC 10 (logits); (N, 1, 28, 28) -> (N, 10)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, 2, 2, rng=rng), nn.ReLU(),
        nn.Conv2d(32, 64, 5, 2, 2, rng=rng), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128, rng=rng), nn.ReLU(),
        nn.Linear(128, 10, rng=rng),
    )  # fmt: skip


class Classifier(Model):
    """A network of logits trained with cross-entropy and Adam.

    Parameters
    ----------
    net : nn.Module
        Inputs (N, ...) -> logits (N, n_classes).
    lr, weight_decay : float
        Adam's learning rate and L2 penalty.
    """

    parts = ("net", "opt")

    def __init__(
        self, net: nn.Module, *, lr: float = 1e-3, weight_decay: float = 0.0, device: str = "cpu"
    ) -> None:
        self.device = device
        self.net = net.to(device)
        self.opt = Adam(self.net.parameters(), lr=lr, weight_decay=weight_decay)

    def train_step(
        self, batch: tuple[np.ndarray, np.ndarray], rng: np.random.Generator
    ) -> dict[str, float]:
        """One Adam step on a batch ``(inputs (N, ...), int labels (N,))``."""
        x, y = batch
        logits = self.net(self.tensor(x))
        loss = F.cross_entropy(logits, self.tensor(y))
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    def predict_proba(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Class probabilities (N, n_classes), eval mode, on the host."""
        return self.batched(
            lambda a: F.softmax(self.net(self.tensor(a)), dim=1), x, (self.net,), batch_size
        )

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        """Fraction of ``x`` whose most probable class is ``y``."""
        return float(np.mean(self.predict_proba(x).argmax(1) == y))
