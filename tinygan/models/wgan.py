"""WGAN (Arjovsky et al. 2017) and WGAN-GP (Gulrajani et al. 2017): the critic objective of
``GAN`` (``objective="wasserstein"``) on DCGAN's networks, kept Lipschitz by weight clipping or
by the gradient penalty (``gan.gradient_penalty``)."""

from __future__ import annotations

from typing import Any

from .dcgan import DCGAN

__all__ = ["WGAN", "WGANGP"]


class WGAN(DCGAN):
    """Arjovsky et al.: a critic without output activation (DCGAN networks), weight clipping at
    0.01, 5 critic steps per generator step, RMSProp with lr 5e-5. ``estimate`` in the step's
    metrics is the critic's estimate of the Wasserstein distance (up to the clipping's scale)."""

    def __init__(
        self,
        *,
        clip_value: float = 0.01,
        n_critic: int = 5,
        lr: float = 5e-5,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            objective="wasserstein",
            optimizer="rmsprop",
            lr_g=lr,
            lr_d=lr,
            n_critic=n_critic,
            clip_value=clip_value,
            **kwargs,
        )


class WGANGP(DCGAN):
    """Gulrajani et al.'s WGAN-GP with their MNIST settings: WGAN's critic objective, the
    gradient penalty with lambda 10 in place of weight clipping, 5 critic steps per generator
    step, Adam (lr 1e-4, betas (0.5, 0.9)) for both players. Networks: DCGAN's, as ``WGAN``
    uses, but the critic has no batch norm (the penalty is per example; the paper suggests layer
    norm in its place, which tinygan does not have, so there is none) and has biases instead.
    ``estimate`` in the step's metrics is the critic's estimate of the Wasserstein distance,
    ``grad_norm`` the mean ||grad_x D|| on the interpolates (the penalty pulls it to 1)."""

    def __init__(
        self,
        *,
        gradient_penalty: float = 10.0,
        n_critic: int = 5,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.5, 0.9),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            objective="wasserstein",
            optimizer="adam",
            lr_g=lr,
            lr_d=lr,
            betas=betas,
            n_critic=n_critic,
            gradient_penalty=gradient_penalty,
            discriminator_batch_norm=False,
            **kwargs,
        )
