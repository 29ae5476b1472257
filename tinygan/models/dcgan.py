"""DCGAN (Radford et al. 2016): its convolutional networks for 28x28 images and its set-up, the
GAN objective of ``GAN`` on them."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import nn
from ..nn import init
from ..tensor import Tensor
from .gan import GAN

__all__ = ["DCGAN", "DCGANDiscriminator", "DCGANGenerator"]


def _dcgan_init_(module: nn.Module, rng: np.random.Generator) -> nn.Module:
    """DCGAN's initialisation: conv weights N(0, 0.02), batch-norm scales N(1, 0.02), shifts 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            init.normal_(m.weight, 0.0, 0.02, rng)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            init.normal_(m.weight, 1.0, 0.02, rng)
            init.zeros_(m.bias)
    return module


class DCGANGenerator(nn.Module):
    """DCGAN's generator for 28x28 images: fractionally-strided convolutions with batch norm and
    ReLU, tanh output. (N, noise_dim) -> project to (2*width, 7, 7) -> (width, 14, 14) ->
    (channels, 28, 28) in (-1, 1)."""

    def __init__(
        self,
        noise_dim: int = 100,
        width: int = 64,
        channels: int = 1,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        rng = np.random.default_rng() if rng is None else rng
        self.net = nn.Sequential(
            nn.Unflatten(1, (noise_dim, 1, 1)),
            nn.ConvTranspose2d(noise_dim, 2 * width, 7, 1, 0, bias=False, rng=rng),
            nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False, rng=rng),
            nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False, rng=rng), nn.Tanh(),
        )  # fmt: skip
        _dcgan_init_(self.net, rng)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class DCGANDiscriminator(nn.Module):
    """DCGAN's discriminator for 28x28 images: strided convolutions, batch norm (not on the
    input layer), LeakyReLU(0.2); (N, channels, 28, 28) -> (N,) raw outputs. With
    ``batch_norm=False`` (WGAN-GP's critic) the convolutions have biases instead."""

    def __init__(
        self,
        width: int = 64,
        channels: int = 1,
        batch_norm: bool = True,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        rng = np.random.default_rng() if rng is None else rng
        norm = [nn.BatchNorm2d(2 * width)] if batch_norm else []
        bias = not batch_norm
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1, bias=bias, rng=rng), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=bias, rng=rng), *norm, nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 1, 7, 1, 0, bias=bias, rng=rng), nn.Flatten(0),
        )  # fmt: skip
        _dcgan_init_(self.net, rng)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class DCGAN(GAN):
    """Radford et al.: DCGAN networks, Adam (lr 2e-4, beta1 0.5), N(0, 1) noise of 100 dims, the
    GAN objective with the non-saturating (default) or minimax generator loss.
    ``discriminator_batch_norm=False`` builds D without batch norm (``DCGANDiscriminator``)."""

    def __init__(
        self,
        *,
        noise_dim: int = 100,
        width: int = 64,
        generator_loss: str = "non_saturating",
        discriminator_batch_norm: bool = True,
        seed: int = 0,
        device: str = "cpu",
        **kwargs: Any,
    ) -> None:
        rng = np.random.default_rng(seed)
        super().__init__(
            DCGANGenerator(noise_dim, width, rng=rng),
            DCGANDiscriminator(width, batch_norm=discriminator_batch_norm, rng=rng),
            noise_dim=noise_dim,
            generator_loss=generator_loss,
            noise="normal",
            output_range=(-1.0, 1.0),
            device=device,
            **kwargs,
        )
