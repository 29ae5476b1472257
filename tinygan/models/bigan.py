"""BiGAN (Donahue, Krähenbühl, Darrell 2017): a GAN that also learns the inverse map.

An encoder E maps data to latents beside the generator G. The discriminator sees pairs: (x, E(x))
for data, (G(z), z) for samples, and learns to tell them apart with the GAN loss; G and E are
trained together to make it swap the two (the non-saturating form of the inverse labels). At
the optimum the two joint distributions match, which makes E the inverse of G, so E(x) is a
representation learned without labels (scored here by a linear probe) and G(E(x)) reconstructs x.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..ops import cat, sigmoid
from ..optim import Adam
from ..tensor import Tensor
from .base import Model, frozen, mlp
from .gan import discriminator_loss

__all__ = ["BiGAN", "PairDiscriminator"]


class PairDiscriminator(nn.Module):
    """D(x, z): flattens x, concatenates z, applies ``net``: -> (N,) raw outputs."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.flatten, self.net = nn.Flatten(), net

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        return self.net(cat([self.flatten(x), z], dim=1)).reshape(-1)


class BiGAN(Model):
    """BiGAN with fully connected networks (the paper's MNIST set-up, 1024 hidden units).

    Parameters
    ----------
    latent_dim : int
        Size of z ~ U(-1, 1) (the paper's 50).
    data_shape : tuple of int
        Shape of one example; the defaults build G (z -> 1024 -> 1024 -> data, batch norm, ReLU,
        sigmoid), E (data -> 1024 -> 1024 -> z, batch norm, LeakyReLU) and D ((x, z) -> 1024 ->
        1024 -> 1, LeakyReLU).
    hidden : int
    lr, betas : Adam's, for D and for G and E together.
    generator, encoder, discriminator : nn.Module, optional
        Other networks (``discriminator`` takes ``(x, z)``, e.g. a ``PairDiscriminator``).
    seed : int
        Seeds the default networks' weights.
    device : {"cpu", "cuda"}
    """

    parts = ("G", "E", "D", "opt_ge", "opt_d")
    recipe_keys = ("latent_dim",)

    def __init__(
        self,
        *,
        latent_dim: int = 50,
        data_shape: tuple[int, ...] = (1, 28, 28),
        hidden: int = 1024,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        generator: nn.Module | None = None,
        encoder: nn.Module | None = None,
        discriminator: nn.Module | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        rng = np.random.default_rng(seed)
        d = int(np.prod(data_shape))
        if generator is None:
            generator = mlp(
                [latent_dim, hidden, hidden, d], batch_norm=True, output="sigmoid", rng=rng
            ).append(nn.Unflatten(1, data_shape))
        if encoder is None:
            encoder = nn.Sequential(
                nn.Flatten(),
                mlp([d, hidden, hidden, latent_dim], activation="leaky_relu", batch_norm=True,
                    rng=rng),
            )  # fmt: skip
        if discriminator is None:
            discriminator = PairDiscriminator(
                mlp([d + latent_dim, hidden, hidden, 1], activation="leaky_relu", rng=rng)
            )
        self.latent_dim, self.device = latent_dim, device
        self.G, self.E, self.D = generator.to(device), encoder.to(device), discriminator.to(device)
        self.opt_ge = Adam([*self.G.parameters(), *self.E.parameters()], lr=lr, betas=betas)
        self.opt_d = Adam(self.D.parameters(), lr=lr, betas=betas)

    def sample_latent(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, latent_dim) float32 draws of z ~ U(-1, 1), on the host."""
        return rng.uniform(-1, 1, (n, self.latent_dim)).astype(np.float32)

    def train_step(self, real: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
        """One D step, then one joint G and E step.

        Parameters
        ----------
        real : np.ndarray, float32, shape (N, *data_shape)
        rng : np.random.Generator
            Draws z.

        Returns
        -------
        dict
            ``d_loss``, ``ge_loss`` (binary cross-entropies), ``d_data`` and ``d_samples`` (mean D
            probabilities of the data pairs and the sample pairs, before the D step).
        """
        x, z = self.tensor(real), self.tensor(self.sample_latent(len(real), rng))
        ex, gz = self.E(x), self.G(z)
        v_data, v_samples = self.D(x, ex.detach()), self.D(gz.detach(), z)
        d_loss = discriminator_loss("gan", v_data, v_samples)
        self.opt_d.zero_grad()
        d_loss.backward()
        self.opt_d.step()
        with frozen(self.D):  # G and E minimise D's loss with the roles of the pairs swapped
            ge_loss = discriminator_loss("gan", self.D(gz, z), self.D(x, ex))
            self.opt_ge.zero_grad()
            ge_loss.backward()
            self.opt_ge.step()
        return {
            "d_loss": d_loss.item(),
            "ge_loss": ge_loss.item(),
            "d_data": sigmoid(v_data.detach()).mean().item(),
            "d_samples": sigmoid(v_samples.detach()).mean().item(),
        }

    def encode(self, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """E(x) in eval mode: (N, latent_dim) on the host."""
        return self.batched(lambda a: self.E(self.tensor(a)), x, (self.E,), batch_size)

    def decode(self, z: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """G(z) in eval mode: (N, *data_shape) on the host."""
        return self.batched(
            lambda a: self.G(self.tensor(a.astype(np.float32))), z, (self.G,), batch_size
        )

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """G(E(x)): (N, *data_shape)."""
        return self.decode(self.encode(x))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n samples G(z), z ~ U(-1, 1): (n, *data_shape) on the host."""
        return self.decode(self.sample_latent(n, rng))
