"""Models built on tinygan: the GAN family (GAN, f-GAN, WGAN, DCGAN, BiGAN), InfoGAN, the VAE,
autoencoders, sparse coding, and the supervised models used to evaluate them."""

from .autoencoder import (
    Autoencoder,
    conv_autoencoder,
    mask_noise,
    mlp_autoencoder,
    pretrain_stack,
    sparsity_kl,
    stack_autoencoders,
    weight_decay_penalty,
)
from .base import Model, evaluating, frozen, mlp
from .bigan import BiGAN, PairDiscriminator
from .classifier import Classifier, linear_probe, mnist_cnn
from .divergences import (
    DIVERGENCES,
    Divergence,
    WrightOmega,
    get_divergence,
    variational_bound,
    wright_omega,
)
from .gan import (
    DCGAN,
    FGAN,
    GAN,
    WGAN,
    DCGANDiscriminator,
    DCGANGenerator,
    discriminator_loss,
    generator_loss,
)
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
from .sparse_coding import SparseCoding, code_objective, soft_threshold, sparse_encode
from .vae import VAE, binarize, gaussian_kl

__all__ = [
    "DCGAN", "DIVERGENCES", "FGAN", "GAN", "VAE", "WGAN", "Autoencoder", "BiGAN", "Classifier",
    "DCGANDiscriminator", "DCGANGenerator", "Discriminator", "Divergence", "Generator", "InfoGAN",
    "Latent", "LatentSpec", "MLPDiscriminator", "MLPGenerator", "Model", "PairDiscriminator",
    "SparseCoding", "WrightOmega", "binarize", "code_objective", "conv_autoencoder",
    "discriminator_loss", "evaluating", "frozen", "gaussian_kl", "generator_loss", "get_divergence",
    "information_terms", "linear_probe", "mask_noise", "mlp", "mlp_autoencoder", "mnist_cnn",
    "pretrain_stack", "soft_threshold", "sparse_encode", "sparsity_kl", "stack_autoencoders",
    "sweep_latents", "variational_bound", "weight_decay_penalty", "wright_omega",
]  # fmt: skip
