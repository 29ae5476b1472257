"""The general GAN, whose one training step serves the family: GAN (Goodfellow et al. 2014),
f-GAN (Nowozin et al. 2016, fgan.py), WGAN and WGAN-GP (Arjovsky et al. 2017, Gulrajani et al.
2017, wgan.py); DCGAN's networks (Radford et al. 2016) are dcgan.py's.

One formula serves the first two. f-GAN's discriminator maximises a variational lower bound of an
f-divergence,

    F(D, G) = E_data[g_f(v(x))] - E_G[f*(g_f(v(G(z))))] <= D_f(data || G),

and the original GAN objective is the row ``"gan"`` of its table (g_f(v) = log sigmoid(v),
f*(g_f(v)) = softplus(v)), so the discriminator's loss is -F for both. The generator minimises F
(``"minimax"``) or, as the GAN and f-GAN papers do in practice, maximises E_G[g_f(v)]
(``"non_saturating"``: for ``"gan"`` this is -log D(G(z))). WGAN's critic instead maximises
E_data[v] - E_G[v], kept (roughly) 1-Lipschitz either by clipping its weights to [-c, c] after
every step or, as in WGAN-GP (Gulrajani et al. 2017), by the gradient penalty

    lambda * E[(||grad_x D(x_hat)||_2 - 1)^2],  x_hat = eps x_real + (1 - eps) x_fake,
    eps ~ U(0, 1) per example,

added to its loss (``gradient_penalty``), which needs the gradient of a gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import arguments, backend, nn
from ..function import grad_mode, is_grad_enabled, mark_changed, no_grad
from ..optim import Adam, Optimizer, RMSprop
from ..tensor import Tensor, grad
from .base import Model, frozen
from .divergences import DIVERGENCES, get_divergence, variational_bound

__all__ = [
    "GAN", "GENERATOR_LOSSES", "OBJECTIVES", "discriminator_loss", "generator_loss",
    "gradient_penalty",
]  # fmt: skip

GENERATOR_LOSSES = ("non_saturating", "minimax")
OBJECTIVES = (*DIVERGENCES, "wasserstein")


def discriminator_loss(objective: str, v_real: Tensor, v_fake: Tensor) -> Tensor:
    """The discriminator's (or critic's) loss on raw outputs v of shape (N,): -F for an
    f-divergence (``"gan"``: the usual binary cross-entropy), E[v_fake] - E[v_real] for WGAN."""
    if objective == "wasserstein":
        return v_fake.mean() - v_real.mean()
    return -variational_bound(get_divergence(objective), v_real, v_fake)


def generator_loss(objective: str, v_fake: Tensor, kind: str = "non_saturating") -> Tensor:
    """The generator's loss on D's raw outputs (N,) for its samples.

    ``"minimax"`` minimises the discriminator's objective itself (the part that depends on G);
    ``"non_saturating"`` maximises E[g_f(v)] instead, which has strong gradients where D rejects
    the samples. For WGAN both are -E[v].
    """
    if kind not in GENERATOR_LOSSES:
        raise ValueError(f"generator loss must be one of {GENERATOR_LOSSES}; got {kind!r}")
    if objective == "wasserstein":
        return -v_fake.mean()
    div = get_divergence(objective)
    if kind == "minimax":
        return -div.conjugate_of_activation(v_fake).mean()
    return -div.activation(v_fake).mean()


def gradient_penalty(
    critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, eps: Tensor
) -> tuple[Tensor, Tensor]:
    """WGAN-GP's penalty (Gulrajani et al. 2017, eq. 3, without its coefficient lambda):
    mean((||grad_x critic(x_hat)||_2 - 1)^2) on the interpolates x_hat = eps real + (1 - eps) fake.

    The gradient is taken with ``create_graph=True``, so the penalty is differentiable with
    respect to the critic's parameters (a second-order derivative). Neither ``real`` nor ``fake``
    receives gradients. Under ``no_grad()`` the value is computed all the same, without a graph
    (as ``gradcheck``'s finite differences need). Each example's gradient must depend on that
    example alone, so the critic should not use batch norm in training mode (the paper's advice).

    Parameters
    ----------
    critic : callable
        Samples (N, ...) -> raw outputs, one per example: (N,) or (N, 1).
    real, fake : Tensor, shape (N, ...)
    eps : Tensor, shape (N, 1, ..., 1) (or broadcastable to the samples)
        The interpolation weights, eps ~ U(0, 1) per example.

    Returns
    -------
    penalty : Tensor, shape ()
    norms : Tensor, shape (N,)
        ||grad_x critic(x_hat)||_2 per interpolate, detached (for the step's metrics).
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake samples differ in shape: {real.shape} != {fake.shape}")
    record = is_grad_enabled()
    with no_grad():
        x_hat = fake + eps * (real - fake)
    x_hat.requires_grad_()
    with grad_mode(True):  # grad_x needs critic(x_hat)'s graph, even under no_grad()
        (g,) = grad(critic(x_hat).sum(), x_hat, create_graph=record)
    # 1e-12 under the root keeps the norm's derivative finite (0) where a gradient is exactly 0
    norms = ((g * g).reshape(len(g), -1).sum(dim=1) + 1e-12).sqrt()
    return ((norms - 1) ** 2).mean(), norms.detach()


class GAN(Model):
    """A generator and a discriminator (or critic) trained against each other.

    Parameters
    ----------
    generator : nn.Module
        Noise (N, noise_dim) -> samples (N, ...) in ``output_range``.
    discriminator : nn.Module
        Samples -> raw outputs v, shape (N,) or (N, 1) (no final activation).
    noise_dim : int
    objective : str
        A divergence of ``tinygan.models.divergences.DIVERGENCES`` (``"gan"``: Goodfellow et al.)
        or ``"wasserstein"``.
    generator_loss : {"non_saturating", "minimax"}
    optimizer : {"adam", "rmsprop"}
        Both players' optimizer, with learning rates ``lr_g``, ``lr_d`` (and Adam's ``betas``).
    n_critic : int
        Discriminator steps per generator step. ``train_step``'s batch holds ``n_critic * m``
        examples: one chunk of m per discriminator step; the generator's step uses m samples.
    clip_value : float, optional
        Clip every discriminator parameter to [-clip_value, clip_value] after each of its steps.
    gradient_penalty : float, optional
        WGAN-GP's coefficient lambda (>= 0; None or 0: off): ``lambda * gradient_penalty(...)``
        on fresh interpolates of each step's real and fake chunks is added to the
        discriminator's loss. An alternative to ``clip_value``, which must then be None.
    noise : {"uniform", "normal"}
        U(-1, 1) or N(0, 1) noise.
    output_range : (float, float)
        Where the generator's samples live (sigmoid: (0, 1), tanh: (-1, 1)). ``train_step`` takes
        data in [0, 1] and maps it there; ``sample`` maps back.
    device : {"cpu", "cuda"}
    """

    parts = ("G", "D", "opt_g", "opt_d")
    recipe_keys = ("objective", "generator_loss", "noise", "noise_dim", "n_critic", "clip_value",
                   "gradient_penalty", "output_range")  # fmt: skip

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        *,
        noise_dim: int,
        objective: str = "gan",
        generator_loss: str = "non_saturating",
        optimizer: str = "adam",
        lr_g: float = 2e-4,
        lr_d: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        n_critic: int = 1,
        clip_value: float | None = None,
        gradient_penalty: float | None = None,
        noise: str = "uniform",
        output_range: tuple[float, float] = (0.0, 1.0),
        device: str = "cpu",
    ) -> None:
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}")
        if generator_loss not in GENERATOR_LOSSES:
            raise ValueError(
                f"generator_loss must be one of {GENERATOR_LOSSES}; got {generator_loss!r}"
            )
        if noise not in ("uniform", "normal"):
            raise ValueError(f"noise must be 'uniform' or 'normal'; got {noise!r}")
        if not isinstance(n_critic, int) or n_critic < 1:
            raise ValueError(f"n_critic must be a positive int; got {n_critic!r}")
        if clip_value is not None and not clip_value > 0:
            raise ValueError(f"clip_value must be positive or None; got {clip_value!r}")
        if gradient_penalty is not None:
            gradient_penalty = arguments.real(gradient_penalty, "gradient_penalty", 0.0)
            if gradient_penalty and clip_value is not None:
                raise ValueError(
                    f"gradient_penalty={gradient_penalty!r} and clip_value={clip_value!r}: the "
                    "penalty replaces weight clipping; pass clip_value=None"
                )
        if not output_range[0] < output_range[1]:
            raise ValueError(f"output_range must be (low, high), low < high; got {output_range}")
        self.objective, self.generator_loss, self.noise = objective, generator_loss, noise
        self.noise_dim, self.n_critic, self.clip_value = noise_dim, n_critic, clip_value
        self.gradient_penalty = gradient_penalty or None  # 0 is off
        self.output_range, self.device = output_range, device
        self.G, self.D = generator.to(device), discriminator.to(device)
        self.opt_g = _optimizer(optimizer, self.G, lr_g, betas)
        self.opt_d = _optimizer(optimizer, self.D, lr_d, betas)

    def sample_noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, noise_dim) float32 noise, on the host."""
        shape = (n, self.noise_dim)
        z = rng.uniform(-1, 1, shape) if self.noise == "uniform" else rng.standard_normal(shape)
        return z.astype(np.float32)

    def discriminate(self, x: Tensor) -> Tensor:
        """D's raw outputs as (N,)."""
        return self.D(x).reshape(-1)

    def train_step(self, real: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
        """``n_critic`` discriminator steps, then one generator step.

        Parameters
        ----------
        real : np.ndarray, float32, shape (n_critic * m, ...), values in [0, 1]
        rng : np.random.Generator
            Draws the noise.

        Returns
        -------
        dict
            Of the last discriminator step: ``d_loss`` (penalty included) and ``estimate`` (minus
            the loss without the penalty: the bound on the divergence, or the critic's estimate of
            the Wasserstein distance); with a gradient penalty also ``penalty`` (before its
            coefficient) and ``grad_norm`` (the mean ||grad_x D|| on the interpolates). And
            ``g_loss``.
        """
        if len(real) % self.n_critic:
            raise ValueError(
                f"a batch of {len(real)} does not split into n_critic={self.n_critic} equal parts"
            )
        m = len(real) // self.n_critic
        lo, hi = self.output_range
        real = lo + (hi - lo) * real
        for k in range(self.n_critic):
            z = self.tensor(self.sample_noise(m, rng))
            if k < self.n_critic - 1:
                with no_grad():
                    fake = self.G(z)
            else:  # the last fake batch keeps its graph: the generator's step reuses it
                fake = self.G(z)
            chunk = self.tensor(real[k * m : (k + 1) * m])
            objective = discriminator_loss(
                self.objective, self.discriminate(chunk), self.discriminate(fake.detach())
            )
            d_loss = objective
            if self.gradient_penalty:
                eps = rng.uniform(size=(m,) + (1,) * (real.ndim - 1)).astype(real.dtype)
                penalty, norms = gradient_penalty(
                    self.discriminate, chunk, fake.detach(), self.tensor(eps)
                )
                d_loss = objective + self.gradient_penalty * penalty
            self.opt_d.zero_grad()
            d_loss.backward()
            self.opt_d.step()
            if self.clip_value is not None:
                self.clip_critic()

        with frozen(self.D):
            g_loss = generator_loss(self.objective, self.discriminate(fake), self.generator_loss)
            self.opt_g.zero_grad()
            g_loss.backward()
            self.opt_g.step()
        metrics = {"d_loss": d_loss.item(), "estimate": -objective.item(), "g_loss": g_loss.item()}
        if self.gradient_penalty:
            metrics.update(penalty=penalty.item(), grad_norm=norms.mean().item())
        return metrics

    def sample(self, n: int, rng: np.random.Generator, batch_size: int = 500) -> np.ndarray:
        """``n`` samples of G in eval mode, mapped to [0, 1], on the host: (n, ...) float32."""
        lo, hi = self.output_range
        z = self.sample_noise(n, rng)
        x = self.batched(lambda a: self.G(self.tensor(a)), z, (self.G,), batch_size)
        x -= lo  # a fresh float32 array: map it in place
        x /= hi - lo
        return x

    def clip_critic(self) -> None:
        """WGAN's weight clipping: every critic parameter into [-clip_value, clip_value], in
        place (marked changed, as by an optimizer step)."""
        for p in self.D.parameters():
            xp = backend.get_array_module(p.data)
            xp.clip(p.data, -self.clip_value, self.clip_value, out=p.data)
            mark_changed(p.data)


def _optimizer(name: str, module: nn.Module, lr: float, betas: tuple[float, float]) -> Optimizer:
    if name == "adam":
        return Adam(module.parameters(), lr=lr, betas=betas)
    if name == "rmsprop":
        return RMSprop(module.parameters(), lr=lr)
    raise ValueError(f"optimizer must be 'adam' or 'rmsprop'; got {name!r}")
