"""Models built on tinygan: InfoGAN and its plain-GAN baseline (more GANs follow)."""

from .infogan import (
    Discriminator,
    Generator,
    InfoGAN,
    Latent,
    LatentSpec,
    MLPDiscriminator,
    MLPGenerator,
    information_terms,
    sweep_latents,
)

__all__ = [
    "Discriminator", "Generator", "InfoGAN", "Latent", "LatentSpec", "MLPDiscriminator",
    "MLPGenerator", "information_terms", "sweep_latents",
]  # fmt: skip
