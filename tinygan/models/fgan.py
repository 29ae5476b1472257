"""f-GAN (Nowozin et al. 2016): ``GAN`` with an f-divergence's variational bound as its objective
(``divergences``), on the paper's fully connected MNIST networks."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import nn
from .base import mlp
from .divergences import get_divergence
from .gan import GAN

__all__ = ["FGAN"]


class FGAN(GAN):
    """Nowozin et al.'s MNIST set-up: fully connected G (noise_dim -> 1200 -> 1200 -> 784,
    batch norm, ReLU, sigmoid) and D (784 -> 240 -> 240 -> 1, LeakyReLU(0.2) in place of the
    paper's maxout), U(-1, 1) noise, Adam (lr 2e-4, beta1 0.5), the named divergence."""

    def __init__(
        self,
        divergence: str = "gan",
        *,
        noise_dim: int = 100,
        image_shape: tuple[int, ...] = (1, 28, 28),
        hidden_g: int = 1200,
        hidden_d: int = 240,
        generator_loss: str = "non_saturating",
        seed: int = 0,
        device: str = "cpu",
        **kwargs: Any,
    ) -> None:
        get_divergence(divergence)  # a clear error for an unknown name
        rng = np.random.default_rng(seed)
        d = int(np.prod(image_shape))
        generator = mlp(
            [noise_dim, hidden_g, hidden_g, d], batch_norm=True, output="sigmoid", rng=rng
        )
        generator.append(nn.Unflatten(1, image_shape))
        discriminator = nn.Sequential(
            nn.Flatten(), mlp([d, hidden_d, hidden_d, 1], activation="leaky_relu", rng=rng)
        )
        super().__init__(
            generator,
            discriminator,
            noise_dim=noise_dim,
            objective=divergence,
            generator_loss=generator_loss,
            device=device,
            **kwargs,
        )
