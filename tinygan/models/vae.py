"""The variational autoencoder (Kingma & Welling 2014) with a Bernoulli decoder.

The encoder gives q(z|x) = N(mu(x), diag exp(logvar(x))), the prior is p(z) = N(0, I), the
decoder gives Bernoulli pixel probabilities sigmoid(logits(z)). Training maximises the evidence
lower bound

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) <= log p(x),

with one reparameterised sample z = mu + exp(logvar / 2) * eps, eps ~ N(0, I), for the first term
and the KL in closed form, 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar). Grey images are binarised
afresh every step (each pixel on with its intensity as probability), so the Bernoulli likelihood
is a proper one and the ELBO is in nats per image.
"""

from __future__ import annotations

import math

import numpy as np

from .. import nn
from ..nn import functional as F
from ..ops import exp, logsumexp, stack
from ..optim import Adam
from ..tensor import Tensor
from .base import Model, mlp

__all__ = ["VAE", "binarize", "gaussian_kl"]


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per row: (N, D) -> (N,) nats."""
    return 0.5 * (mu * mu + exp(logvar) - 1 - logvar).sum(1)


def binarize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each value in [0, 1] becomes 1 with that probability, else 0 (same shape and dtype)."""
    return (rng.random(x.shape) < x).astype(x.dtype)


class VAE(Model):
    """A VAE with fully connected encoder and decoder (the PyTorch example's: 400 ReLU units).

    Parameters
    ----------
    latent_dim : int
        Size of z (2 gives the paper's manifold figure).
    data_shape : tuple of int
        Shape of one example, values in [0, 1].
    hidden : int
    lr : float
        Adam's learning rate.
    binarize_data : bool
        Binarise batches afresh each step (for grey images); False for data already in {0, 1}.
    seed : int
        Seeds the weights.
    device : {"cpu", "cuda"}
    """

    parts = ("encoder", "decoder", "opt")
    recipe_keys = ("latent_dim", "binarize_data")

    def __init__(
        self,
        *,
        latent_dim: int = 20,
        data_shape: tuple[int, ...] = (1, 28, 28),
        hidden: int = 400,
        lr: float = 1e-3,
        binarize_data: bool = True,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be positive; got {latent_dim}")
        rng = np.random.default_rng(seed)
        d = int(np.prod(data_shape))
        self.latent_dim, self.binarize_data, self.device = latent_dim, binarize_data, device
        self.encoder = nn.Sequential(nn.Flatten(), mlp([d, hidden, 2 * latent_dim], rng=rng)).to(
            device
        )
        self.decoder = mlp([latent_dim, hidden, d], rng=rng).append(
            nn.Unflatten(1, data_shape)
        ).to(device)  # fmt: skip
        self.opt = Adam([*self.encoder.parameters(), *self.decoder.parameters()], lr=lr)

    def _posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)
        return h[:, : self.latent_dim], h[:, self.latent_dim :]

    def _sample(
        self, mu: Tensor, logvar: Tensor, rng: np.random.Generator
    ) -> tuple[Tensor, Tensor]:
        """The reparameterised z = mu + exp(logvar / 2) * eps, and eps ~ N(0, I): (N, D) each."""
        eps = self.tensor(rng.standard_normal(mu.shape).astype(np.float32))
        return mu + exp(0.5 * logvar) * eps, eps

    def _nll(self, z: Tensor, x: Tensor) -> Tensor:
        """-log p(x | z) per example (Bernoulli decoder), nats: (N,)."""
        nll = F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none")
        return nll.reshape(len(x), -1).sum(1)

    def _terms(self, x: Tensor, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        """-E_q[log p(x|z)] (one sample) and KL(q || p), per example: (N,), (N,)."""
        mu, logvar = self._posterior(x)
        return self._nll(self._sample(mu, logvar, rng)[0], x), gaussian_kl(mu, logvar)

    def _data(self, batch: np.ndarray, rng: np.random.Generator) -> Tensor:
        return self.tensor(binarize(batch, rng) if self.binarize_data else batch)

    def train_step(self, batch: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
        """One Adam step on -ELBO (batch mean).

        Returns
        -------
        dict
            ``elbo``, ``reconstruction`` (-E_q[log p(x|z)]) and ``kl``, batch means in nats.
        """
        nll, kl = self._terms(self._data(batch, rng), rng)
        loss = (nll + kl).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"elbo": -loss.item(), "reconstruction": nll.mean().item(), "kl": kl.mean().item()}

    def elbo(
        self, x: np.ndarray, rng: np.random.Generator, batch_size: int = 500
    ) -> dict[str, np.ndarray]:
        """Per-image ELBO and its two terms (nats), one posterior sample each, on images
        binarised with ``rng`` (when the model binarises): arrays of shape (N,)."""
        terms = self.batched(
            lambda a: stack(self._terms(self._data(a, rng), rng), 1),
            x, (self.encoder, self.decoder), batch_size,
        )  # fmt: skip
        nll, kl = terms[:, 0], terms[:, 1]
        return {"elbo": -(nll + kl), "reconstruction": nll, "kl": kl}

    def log_likelihood(
        self, x: np.ndarray, rng: np.random.Generator, k: int = 100, batch_size: int = 100
    ) -> np.ndarray:
        """Importance-sampled estimate of log p(x) with ``k`` posterior samples (Burda et al.'s
        bound: log mean_k p(x, z_k) / q(z_k | x) <= log p(x), tighter as k grows): (N,) nats."""

        def bound(a: np.ndarray) -> Tensor:
            t = self._data(a, rng)
            mu, logvar = self._posterior(t)
            log_w = []
            for _ in range(k):
                z, eps = self._sample(mu, logvar, rng)
                log_prior = -0.5 * (z * z).sum(1)
                log_q = -0.5 * ((eps * eps).sum(1) + logvar.sum(1))  # the same 2 pi term
                log_w.append(log_prior - log_q - self._nll(z, t))
            return logsumexp(stack(log_w, 1), dim=1) - math.log(k)

        return self.batched(bound, x, (self.encoder, self.decoder), batch_size)

    def decode(self, z: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Bernoulli means sigmoid(logits(z)): (N, *data_shape) on the host."""
        return self.batched(
            lambda a: F.sigmoid(self.decoder(self.tensor(a.astype(np.float32)))),
            z, (self.decoder,), batch_size,
        )  # fmt: skip

    def encode(self, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Posterior means mu(x) (the grey images as given, not binarised): (N, latent_dim)."""
        return self.batched(
            lambda a: self._posterior(self.tensor(a))[0], x, (self.encoder,), batch_size
        )

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Bernoulli means for z ~ N(0, I): (n, *data_shape) in [0, 1]."""
        return self.decode(rng.standard_normal((n, self.latent_dim)).astype(np.float32))
