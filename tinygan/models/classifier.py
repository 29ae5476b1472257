"""Supervised models for evaluation: the MNIST classifier behind the sample-quality score, and
the linear probe that scores learned features (a softmax regression trained on a few labels)."""

from __future__ import annotations

import numpy as np

from .. import nn
from ..nn import functional as F
from ..optim import Adam
from ..train import train
from .base import Model

__all__ = ["Classifier", "linear_probe", "mnist_cnn"]


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


def linear_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> float:
    """Test accuracy of a softmax regression trained on frozen features.

    Features are standardised with the training set's mean and standard deviation, then a
    ``Linear(D, n_classes)`` layer is trained with Adam on cross-entropy.

    Parameters
    ----------
    train_features : np.ndarray, shape (N, D)
    train_labels : np.ndarray, int, shape (N,)
    test_features : np.ndarray, shape (M, D)
    test_labels : np.ndarray, int, shape (M,)

    Returns
    -------
    float
        Accuracy on the test features.
    """
    a, b = np.asarray(train_features), np.asarray(test_features)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"features must be (N, D) and (M, D) with the same D; got {a.shape} and {b.shape}"
        )
    if len(train_labels) != len(a) or len(test_labels) != len(b):
        raise ValueError(
            f"{len(train_labels)} and {len(test_labels)} labels for {len(a)} and {len(b)} rows"
        )
    mean, std = a.mean(0), a.std(0) + 1e-6
    a, b = ((a - mean) / std).astype(np.float32), ((b - mean) / std).astype(np.float32)
    n_classes = int(max(train_labels.max(), test_labels.max())) + 1
    probe = Classifier(
        nn.Linear(a.shape[1], n_classes, rng=np.random.default_rng(seed)),
        lr=lr,
        weight_decay=weight_decay,
    )
    train(
        probe,
        (a, train_labels.astype(np.int64)),
        steps=steps,
        batch_size=min(batch_size, len(a)),
        seed=seed,
        progress=False,
    )
    return probe.accuracy(b, test_labels)
