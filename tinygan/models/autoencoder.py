"""Autoencoders: plain, sparse (UFLDL), denoising (Vincent et al. 2008) and stacked.

One ``Autoencoder`` trains any encoder/decoder pair on one objective, per example (summed over
the example's components, averaged over the batch, the scale of the UFLDL notes):

    J = L(x, g(f(x~)))  +  beta * sum_j KL(rho || rho_hat_j)  +  lambda/2 * sum_W ||W||^2
        reconstruction     sparsity (optional)                  weight decay (optional)

where ``f`` is the encoder, ``g`` the decoder (it outputs logits for ``loss="bce"``, values for
``loss="mse"``), ``x~`` is ``x`` with masking noise (denoising: each component set to 0 with
probability ``mu``; the target stays the clean ``x``), ``rho_hat_j`` is hidden unit j's mean
activation over the batch, and ``W`` runs over weight matrices and kernels, not biases.

``mlp_autoencoder`` and ``conv_autoencoder`` build encoder/decoder pairs;
``tinygan.train.pretrain_stack`` trains a stack of autoencoders greedily, each on the codes of the
one below, and ``stack_autoencoders`` joins them into one deep autoencoder to fine-tune end to end
with ``tinygan.train.train``.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .. import arguments, nn
from ..nn import functional as F
from ..ops import log
from ..optim import Adam
from ..tensor import Tensor
from .base import Model, activation_layer

LOSSES = ("bce", "mse")


# ---- the three terms --------------------------------------------------------------------------
def sparsity_kl(rho_hat: Tensor, rho: float, eps: float = 1e-6) -> Tensor:
    """Sum over hidden units of KL(Bernoulli(rho) || Bernoulli(rho_hat_j)), in nats.

    ``sum_j rho log(rho / rho_hat_j) + (1 - rho) log((1 - rho) / (1 - rho_hat_j))``, with
    ``rho_hat`` clamped into ``[eps, 1 - eps]`` so that it stays finite for saturated units.

    Parameters
    ----------
    rho_hat : Tensor, any shape
        Mean activations of the hidden units (values in [0, 1]).
    rho : float
        The target activation, in (0, 1).
    eps : float
        Clamp margin, in (0, 0.5).

    Returns
    -------
    Tensor, shape ()
    """
    arguments.real(rho, "rho", 0, 1, low_open=True, high_open=True)
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5); got {eps!r}")
    r = rho_hat.clip(eps, 1 - eps)
    kl = rho * (math.log(rho) - log(r)) + (1 - rho) * (math.log(1 - rho) - log(1 - r))
    return kl.sum()


def weight_decay_penalty(parameters: Iterable[Tensor], weight_decay: float) -> Tensor:
    """``weight_decay / 2 * sum ||W||^2`` over the weights among ``parameters``.

    Weights are the parameters with two or more dimensions (Linear matrices, convolution
    kernels); biases (and BatchNorm's per-channel scale and shift) are left out.

    Parameters
    ----------
    parameters : iterable of Tensor
    weight_decay : float
        lambda, >= 0.

    Returns
    -------
    Tensor, shape ()
    """
    arguments.real(weight_decay, "weight_decay", 0)
    weights = [p for p in parameters if p.ndim >= 2]
    if not weights:
        raise ValueError("weight_decay_penalty: no weights (parameters with ndim >= 2) given")
    return weight_decay / 2 * sum((w * w).sum() for w in weights)


def mask_noise(x: np.ndarray, mu: float, rng: np.random.Generator) -> np.ndarray:
    """Vincent et al.'s masking noise: each component of ``x`` set to 0 with probability ``mu``,
    independently; the others are left as they are.

    Parameters
    ----------
    x : np.ndarray, any shape
    mu : float
        Corruption rate, in [0, 1).
    rng : np.random.Generator

    Returns
    -------
    np.ndarray, the shape and dtype of ``x`` (a new array)
    """
    arguments.real(mu, "mu", 0, 1, high_open=True)
    return x * (rng.random(x.shape) >= mu).astype(x.dtype)


# ---- networks ---------------------------------------------------------------------------------
def mlp_autoencoder(
    sizes: Sequence[int],
    *,
    activation: str = "sigmoid",
    rng: np.random.Generator | None = None,
) -> tuple[nn.Sequential, nn.Sequential]:
    """A fully connected encoder and its mirror-image decoder.

    ``sizes = (784, 256, 64)`` gives the encoder 784 -> 256 -> 64, each Linear followed by
    ``activation`` (so the codes are activations too), and the decoder 64 -> 256 -> 784, with
    ``activation`` after every Linear but the last (it outputs logits or values, see
    ``Autoencoder``'s ``loss``).

    Parameters
    ----------
    sizes : sequence of int, length >= 2
        Input width, then the widths of the hidden layers down to the code.
    activation : {"sigmoid", "relu", "tanh"}
        Sparse autoencoders need codes in [0, 1]: sigmoid.
    rng : np.random.Generator, optional
        Draws the initial weights (default: ``tinygan.nn.init``'s generator).

    Returns
    -------
    encoder : nn.Sequential, (N, sizes[0]) -> (N, sizes[-1])
    decoder : nn.Sequential, (N, sizes[-1]) -> (N, sizes[0])
    """
    if len(sizes) < 2:
        raise ValueError(f"sizes needs the input width and at least one layer; got {sizes!r}")
    linear = functools.partial(nn.Linear, rng=rng)
    return _mirrored(sizes, linear, linear, activation)


def conv_autoencoder(
    channels: Sequence[int] = (16, 8),
    *,
    in_channels: int = 1,
    image_size: int = 28,
    activation: str = "relu",
    rng: np.random.Generator | None = None,
) -> tuple[nn.Sequential, nn.Sequential]:
    """A convolutional encoder (4x4 kernels, stride 2, padding 1: each halves the image) and a
    transposed-convolution decoder that doubles it back.

    The defaults map (N, 1, 28, 28) to codes (N, 8, 7, 7) (392 numbers, half the input) and back.

    Parameters
    ----------
    channels : sequence of int
        Output channels of each encoder layer; the last is the code's.
    in_channels : int
    image_size : int
        Height and width of the input; must be divisible by ``2 ** len(channels)``.
    activation : {"sigmoid", "relu", "tanh"}
        After every layer but the decoder's last.
    rng : np.random.Generator, optional

    Returns
    -------
    encoder : nn.Sequential, (N, in_channels, S, S) -> (N, channels[-1], S / 2**k, S / 2**k)
    decoder : nn.Sequential, back to (N, in_channels, S, S)
    """
    if len(channels) < 1:
        raise ValueError(f"channels needs at least one layer; got {channels!r}")
    if image_size % 2 ** len(channels):
        raise ValueError(
            f"image_size {image_size} is not divisible by 2**{len(channels)}: "
            f"{len(channels)} stride-2 layers cannot be inverted exactly"
        )
    halve = functools.partial(nn.Conv2d, kernel_size=4, stride=2, padding=1, rng=rng)
    double = functools.partial(nn.ConvTranspose2d, kernel_size=4, stride=2, padding=1, rng=rng)
    return _mirrored([in_channels, *channels], halve, double, activation)


def _mirrored(
    widths: Sequence[int],
    down: Callable[[int, int], nn.Module],
    up: Callable[[int, int], nn.Module],
    activation: str,
) -> tuple[nn.Sequential, nn.Sequential]:
    """Encoder ``down(w0, w1), act, down(w1, w2), act, ...`` and the mirror-image decoder
    ``..., up(w2, w1), act, up(w1, w0)`` (no activation after the last layer)."""
    act = activation_layer(activation)
    pairs = list(itertools.pairwise(widths))
    encoder = [m for a, b in pairs for m in (down(a, b), act())]
    decoder = [m for a, b in reversed(pairs) for m in (up(b, a), act())]
    return nn.Sequential(*encoder), nn.Sequential(*decoder[:-1])


# ---- the MNIST settings the examples share -----------------------------------------------------
_NO_EXTRAS = {"rho": 0.1, "beta": 0.0, "weight_decay": 0.0, "corruption": 0.0}
MNIST_SETTINGS: dict[str, dict[str, Any]] = {  # training steps, hidden widths (MLP), options
    kind: {**_NO_EXTRAS, **settings} for kind, settings in {
        "plain": {"steps": 4000, "hidden": [256], "loss": "bce", "lr": 1e-3},
        "sparse": {"steps": 12000, "hidden": [196], "loss": "mse", "lr": 1e-2, "beta": 3.0,
                   "weight_decay": 3e-3},  # UFLDL's sparse autoencoder
        "denoising": {"steps": 4000, "hidden": [256], "loss": "bce", "lr": 1e-3,
                      "corruption": 0.25},
        "stacked": {"steps": 4000, "hidden": [256, 64], "loss": "bce", "lr": 1e-3,
                    "corruption": 0.25},
    }.items()
}  # fmt: skip


def autoencoder_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``Autoencoder``'s keyword arguments from a settings mapping of ``MNIST_SETTINGS``' keys
    (``rho``/``beta`` -> ``sparsity``, none when beta is 0)."""
    s = settings
    sparsity = (s["rho"], s["beta"]) if s["beta"] else None
    return {"loss": s["loss"], "lr": s["lr"], "weight_decay": s["weight_decay"],
            "corruption": s["corruption"], "sparsity": sparsity}  # fmt: skip


# ---- the model --------------------------------------------------------------------------------
class Autoencoder(Model):
    """An encoder/decoder pair, its Adam optimiser and one training step.

    Parameters
    ----------
    encoder, decoder : nn.Module
        ``decoder(encoder(x))`` has the shape of ``x``; the decoder's output is a logit for
        ``loss="bce"`` and the reconstruction itself for ``loss="mse"``.
    loss : {"bce", "mse"}
        Binary cross-entropy with logits (data in [0, 1]), or half the squared error (UFLDL's);
        either summed over an example's components and averaged over the batch.
    sparsity : (rho, beta), optional
        Add ``beta * sparsity_kl(rho_hat, rho)``, rho_hat the batch means of the codes (each
        component of a code is a hidden unit: for conv codes, each channel at each position);
        needs codes in [0, 1] (sigmoid hidden units). rho in (0, 1), beta >= 0.
    weight_decay : float
        lambda of ``weight_decay_penalty`` on the encoder's and decoder's weights.
    corruption : float
        Denoising: masking-noise rate mu in [0, 1) applied to the encoder's input (0: none).
    lr, betas : Adam's settings.
    device : {"cpu", "cuda"}
    """

    parts = ("encoder", "decoder", "opt")
    recipe_keys = ("loss", "sparsity", "weight_decay", "corruption")

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        *,
        loss: str = "bce",
        sparsity: tuple[float, float] | None = None,
        weight_decay: float = 0.0,
        corruption: float = 0.0,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        device: str = "cpu",
    ) -> None:
        for name, m in (("encoder", encoder), ("decoder", decoder)):
            if not isinstance(m, nn.Module):
                raise TypeError(f"{name} must be an nn.Module; got {type(m).__name__}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")
        if sparsity is not None:
            if not (isinstance(sparsity, tuple) and len(sparsity) == 2):
                raise ValueError(f"sparsity must be a pair (rho, beta); got {sparsity!r}")
            arguments.real(sparsity[0], "rho", 0, 1, low_open=True, high_open=True)
            arguments.real(sparsity[1], "beta", 0)
        arguments.real(weight_decay, "weight_decay", 0)
        arguments.real(corruption, "corruption", 0, 1, high_open=True)
        self.encoder, self.decoder = encoder.to(device), decoder.to(device)
        self.loss, self.sparsity, self.device = loss, sparsity, device
        self.weight_decay, self.corruption = weight_decay, corruption
        self.net = nn.Sequential(encoder, decoder)  # every parameter once, one eval() switch
        # the decoder's output as a reconstruction; an empty Sequential is the identity
        self.output_activation = nn.Sigmoid() if loss == "bce" else nn.Sequential()
        self.opt = Adam(self.net.parameters(), lr=lr, betas=betas)

    def reconstruction_loss(self, output: Tensor, target: Tensor) -> Tensor:
        """The reconstruction term: per example summed over components, averaged over the batch.

        Parameters
        ----------
        output : Tensor, shape (N, ...)
            The decoder's output (logits for "bce").
        target : Tensor, the same shape

        Returns
        -------
        Tensor, shape ()
        """
        if self.loss == "bce":
            total = F.binary_cross_entropy_with_logits(output, target, reduction="sum")
        else:
            total = 0.5 * F.mse_loss(output, target, reduction="sum")
        return total / len(output)

    def train_step(self, batch: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
        """One Adam step on J for a batch of clean inputs.

        Parameters
        ----------
        batch : np.ndarray, shape (N, ...)
            What the encoder takes; the reconstruction target.
        rng : np.random.Generator
            Draws the masking noise (denoising).

        Returns
        -------
        dict
            ``loss`` (J), ``reconstruction``; with sparsity ``sparsity_kl`` (the KL sum) and
            ``mean_activation`` (mean of rho_hat); with weight decay ``weight_decay``.
        """
        target = self.tensor(batch)  # the clean batch, uploaded once
        inp = self.tensor(mask_noise(batch, self.corruption, rng)) if self.corruption else target
        codes = self.encoder(inp)
        rec = self.reconstruction_loss(self.decoder(codes), target)
        loss, metrics = rec, {"reconstruction": rec.item()}
        if self.sparsity is not None:
            if codes.data.min() < 0 or codes.data.max() > 1:
                raise ValueError(
                    "sparsity needs codes in [0, 1] (sigmoid hidden units); got codes in "
                    f"[{float(codes.data.min()):.3g}, {float(codes.data.max()):.3g}]"
                )
            rho, beta = self.sparsity
            rho_hat = codes.mean(0)
            kl = sparsity_kl(rho_hat, rho)
            loss = loss + beta * kl
            metrics.update(sparsity_kl=kl.item(), mean_activation=rho_hat.mean().item())
        if self.weight_decay:
            decay = weight_decay_penalty(self.net.parameters(), self.weight_decay)
            loss = loss + decay
            metrics["weight_decay"] = decay.item()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), **metrics}

    def encode(self, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """The codes (features) of ``x``: (N, ...) -> the encoder's output shape, on the host."""
        return self.batched(lambda a: self.encoder(self.tensor(a)), x, (self.net,), batch_size)

    def reconstruct(self, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """The reconstructions of ``x`` (no corruption added), of ``x``'s shape, on the host."""
        return self.batched(
            lambda a: self.output_activation(self.decoder(self.encoder(self.tensor(a)))),
            x, (self.net,), batch_size,
        )  # fmt: skip

    def reconstruction_error(
        self, x: np.ndarray, target: np.ndarray | None = None, batch_size: int = 500
    ) -> float:
        """The reconstruction term of ``x`` against ``target`` (default ``x``; e.g. corrupted
        inputs against clean ones), averaged over all of ``x``, in eval mode.

        Parameters
        ----------
        x : np.ndarray, shape (N, ...)
            The encoder's inputs.
        target : np.ndarray, the shape of ``x``, optional

        Returns
        -------
        float: per example (summed over its components), as ``train_step``'s ``reconstruction``
        """
        target = x if target is None else target
        if target.shape != x.shape:
            raise ValueError(f"target shape {target.shape} differs from input shape {x.shape}")

        def total(rows: np.ndarray) -> np.ndarray:  # a chunk of row indices: no copy of x, target
            out = self.decoder(self.encoder(self.tensor(x[rows])))
            mean = self.reconstruction_loss(out, self.tensor(target[rows])).item()
            return np.array([mean * len(rows)])

        rows = np.arange(len(x))
        return float(self.batched(total, rows, (self.net,), batch_size).sum()) / len(x)


# ---- stacks -----------------------------------------------------------------------------------
def stack_autoencoders(layers: Sequence[Autoencoder], **options: Any) -> Autoencoder:
    """One deep autoencoder from a stack: encoders bottom-up, then decoders top-down, each inner
    decoder followed by its layer's output activation (so the next decoder gets codes).

    The deep model shares the layers' modules (training it changes them) and has its own Adam.
    Its loss is the bottom layer's unless ``options`` says otherwise; ``options`` go to
    ``Autoencoder`` (by default no sparsity, weight decay or corruption).

    Parameters
    ----------
    layers : sequence of Autoencoder
    **options
        ``Autoencoder``'s keyword arguments.

    Returns
    -------
    Autoencoder
    """
    if not layers or not all(isinstance(layer, Autoencoder) for layer in layers):
        raise TypeError(f"layers must be a non-empty sequence of Autoencoder; got {layers!r}")
    decoders = [
        m
        for i, layer in reversed(list(enumerate(layers)))
        for m in ((layer.decoder, layer.output_activation) if i else (layer.decoder,))
    ]
    options = {"loss": layers[0].loss, "device": layers[0].device, **options}
    return Autoencoder(
        nn.Sequential(*(layer.encoder for layer in layers)), nn.Sequential(*decoders), **options
    )
