"""Models built on tinygan: the GAN family (GAN, f-GAN, WGAN, WGAN-GP, DCGAN, BiGAN), InfoGAN,
the VAE, autoencoders, sparse coding, and the supervised models used to evaluate them."""

from .autoencoder import (
    MNIST_SETTINGS,
    Autoencoder,
    autoencoder_options,
    conv_autoencoder,
    mask_noise,
    mlp_autoencoder,
    sparsity_kl,
    stack_autoencoders,
    weight_decay_penalty,
)
from .base import Model, evaluating, frozen, mlp
from .bigan import BiGAN, PairDiscriminator
from .classifier import Classifier, mnist_cnn
from .dcgan import DCGAN, DCGANDiscriminator, DCGANGenerator
from .divergences import (
    DIVERGENCES,
    Divergence,
    WrightOmega,
    get_divergence,
    variational_bound,
    wright_omega,
)
from .fgan import FGAN
from .gan import GAN, discriminator_loss, generator_loss, gradient_penalty
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
from .wgan import WGAN, WGANGP

__all__ = [
    "DCGAN",
    "DIVERGENCES",
    "FGAN",
    "GAN",
    "MNIST_SETTINGS",
    "VAE",
    "WGAN",
    "WGANGP",
    "Autoencoder",
    "BiGAN",
    "Classifier",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "Discriminator",
    "Divergence",
    "Generator",
    "InfoGAN",
    "Latent",
    "LatentSpec",
    "MLPDiscriminator",
    "MLPGenerator",
    "Model",
    "PairDiscriminator",
    "SparseCoding",
    "WrightOmega",
    "autoencoder_options",
    "binarize",
    "code_objective",
    "conv_autoencoder",
    "discriminator_loss",
    "evaluating",
    "frozen",
    "gaussian_kl",
    "generator_loss",
    "get_divergence",
    "gradient_penalty",
    "information_terms",
    "mask_noise",
    "mlp",
    "mlp_autoencoder",
    "mnist_cnn",
    "soft_threshold",
    "sparse_encode",
    "sparsity_kl",
    "stack_autoencoders",
    "sweep_latents",
    "variational_bound",
    "weight_decay_penalty",
    "wright_omega",
]  # fmt: skip
