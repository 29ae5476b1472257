"""InfoGAN (Chen et al. 2016) and its plain-GAN baseline, with the paper's MNIST networks.

The generator maps ``[z, c]`` to an image; the discriminator's body feeds two heads: D (a real/fake
logit) and Q (the recognition network, predicting the codes c). InfoGAN maximises the variational
lower bound of the mutual information I(c; G(z, c)):

    L_I = H(c) + E[log Q(c | G(z, c))] <= I(c; G(z, c))

Both players get ``-lambda * L_I`` in their loss (as in the authors' code): the discriminator's
step trains Q's head *and the shared body* on it; the generator's step trains G to make codes
recoverable. The baseline (``info_in_g=False``) trains Q just the same but does not reward G.

Optionally (``consistency=W > 0``; off by default, the paper's recipe) the D/Q step also asks Q's
categorical head to give the same answer for a real image x and a slightly moved copy T(x) (a
small random rotation, scaling and shift, ``tinygan.augment``), the one thing the clustering
methods that find MNIST's ten digits on every run (IIC, IMSAT) add to a recognition network:
either IIC's mutual information between Q(c | x) and Q(c | T(x)) (Ji et al. 2019), or a
symmetric KL between them minus IMSAT's marginal-minus-conditional entropy (``consistency_loss``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .. import arguments, nn
from ..augment import RandomAffine
from ..function import no_grad
from ..nn import functional as F
from ..ops import cat, log, log_softmax, sigmoid, softmax
from ..optim import Adam
from ..tensor import Tensor
from .base import Model, frozen
from .gan import discriminator_loss, generator_loss


@dataclass(frozen=True)
class LatentSpec:
    """The generator's input: noise ~ U(-1, 1), categorical codes (one-hot), continuous codes
    ~ U(-1, 1). The paper's MNIST spec is the default: 62 noise dims, Cat(10), two continuous."""

    categorical: tuple[int, ...] = (10,)
    continuous: int = 2
    noise: int = 62

    def __post_init__(self) -> None:
        if any(k < 2 for k in self.categorical):
            raise ValueError(
                f"categorical codes need at least 2 values each; got {self.categorical}"
            )
        if self.continuous < 0 or self.noise < 0:
            raise ValueError(
                f"continuous and noise sizes must be >= 0; got {self.continuous}, {self.noise}"
            )

    @property
    def dim(self) -> int:
        """Width of the generator's input."""
        return self.noise + sum(self.categorical) + self.continuous

    @property
    def q_dim(self) -> int:
        """Width of Q's output: one logit per category, one mean per continuous code."""
        return sum(self.categorical) + self.continuous

    @property
    def categorical_entropy(self) -> float:
        """H(c) of the categorical codes in nats (ln 10 = 2.303 for Cat(10))."""
        return float(sum(math.log(k) for k in self.categorical))

    @property
    def continuous_entropy(self) -> float:
        """H(c) of the continuous codes in nats (ln 2 each, for U(-1, 1))."""
        return self.continuous * math.log(2.0)

    def sample(self, n: int, rng: np.random.Generator) -> Latent:
        """Draw ``n`` latents."""
        return Latent(
            noise=rng.uniform(-1, 1, (n, self.noise)).astype(np.float32),
            categories=np.stack([rng.integers(0, k, n) for k in self.categorical], axis=1)
            if self.categorical
            else np.zeros((n, 0), np.int64),
            continuous=rng.uniform(-1, 1, (n, self.continuous)).astype(np.float32),
            spec=self,
        )


@dataclass(frozen=True)
class Latent:
    """A batch of latents: noise (N, noise), category indices (N, n_cat), continuous (N, n_cont)."""

    noise: np.ndarray
    categories: np.ndarray
    continuous: np.ndarray
    spec: LatentSpec

    def vector(self) -> np.ndarray:
        """The generator's input (N, spec.dim), float32: [noise, one-hots..., continuous]."""
        n = len(self.noise)
        onehots = []
        for i, k in enumerate(self.spec.categorical):
            o = np.zeros((n, k), np.float32)
            o[np.arange(n), self.categories[:, i]] = 1
            onehots.append(o)
        return np.concatenate([self.noise, *onehots, self.continuous], axis=1)


class Generator(nn.Module):
    """FC 1024-BN-ReLU, FC 7*7*128-BN-ReLU, up-conv 64 (4x4, s2)-BN-ReLU, up-conv 1 (4x4, s2),
    sigmoid: (N, in_dim) -> (N, 1, 28, 28) in [0, 1]."""

    def __init__(self, in_dim: int, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(in_dim, 1024, rng=rng), nn.BatchNorm1d(1024), nn.ReLU(),
            nn.Linear(1024, 128 * 7 * 7, rng=rng), nn.BatchNorm1d(128 * 7 * 7), nn.ReLU(),
        )  # fmt: skip
        self.conv = nn.Sequential(
            nn.ConvTranspose2d(128, 64, 4, 2, 1, rng=rng), nn.BatchNorm2d(64), nn.ReLU(),
            nn.ConvTranspose2d(64, 1, 4, 2, 1, rng=rng), nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, z: Tensor) -> Tensor:
        return self.conv(self.fc(z).reshape(-1, 128, 7, 7))


class Discriminator(nn.Module):
    """Body: conv 64 (4x4, s2)-lReLU, conv 128 (4x4, s2)-BN-lReLU, FC 1024-BN-lReLU (slope 0.1).
    Heads on the body: D, FC 1 (a logit); Q, FC 128-BN-lReLU-FC q_dim (omitted if q_dim is 0)."""

    def __init__(self, q_dim: int, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 64, 4, 2, 1, rng=rng), nn.LeakyReLU(0.1),
            nn.Conv2d(64, 128, 4, 2, 1, rng=rng), nn.BatchNorm2d(128), nn.LeakyReLU(0.1),
            nn.Flatten(),
            nn.Linear(128 * 7 * 7, 1024, rng=rng), nn.BatchNorm1d(1024), nn.LeakyReLU(0.1),
        )  # fmt: skip
        self.d_head = nn.Linear(1024, 1, rng=rng)
        self.q_head = (
            nn.Sequential(
                nn.Linear(1024, 128, rng=rng),
                nn.BatchNorm1d(128),
                nn.LeakyReLU(0.1),
                nn.Linear(128, q_dim, rng=rng),
            )
            if q_dim
            else None
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(N, 1, 28, 28) -> D logits (N,), Q outputs (N, q_dim) or None."""
        h = self.body(x)
        return self.d_head(h).reshape(-1), (self.q_head(h) if self.q_head is not None else None)


class MLPGenerator(nn.Module):
    """A small fully connected generator for low-dimensional data: (N, in_dim) -> (N, out_dim)."""

    def __init__(
        self, in_dim: int, out_dim: int, hidden: int = 64, rng: np.random.Generator | None = None
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden, rng=rng), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, hidden, rng=rng), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, out_dim, rng=rng),
        )  # fmt: skip

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """Fully connected D body with a D head (a logit) and a Q head (q_dim outputs)."""

    def __init__(
        self, in_dim: int, q_dim: int, hidden: int = 64, rng: np.random.Generator | None = None
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(in_dim, hidden, rng=rng), nn.LeakyReLU(0.1),
            nn.Linear(hidden, hidden, rng=rng), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.1),
        )  # fmt: skip
        self.d_head = nn.Linear(hidden, 1, rng=rng)
        self.q_head = nn.Linear(hidden, q_dim, rng=rng)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return self.d_head(h).reshape(-1), self.q_head(h)


def information_terms(q_out: Tensor, latent: Latent) -> tuple[Tensor, Tensor]:
    """The two parts of L_I's expectation, as losses to minimise (nats, batch means).

    Parameters
    ----------
    q_out : Tensor, shape (N, spec.q_dim)
        Q's output on G(z, c): categorical logits, then continuous means.
    latent : Latent
        The codes c that G was given.

    Returns
    -------
    cat_ce : Tensor, ()
        Sum over categorical codes of -E[log Q(c_i | x)]; L_I(cat) = H(cat) - cat_ce.
    cont_nll : Tensor, ()
        Sum over continuous codes of -E[log N(c_j; mu_j(x), 1)] (Q's Gaussian with a fixed unit
        std, the authors' choice); L_I(cont) = H(cont) - cont_nll.
    """
    spec, device = latent.spec, q_out.device
    zero = Tensor(np.zeros((), q_out.dtype)).to(device)
    cat_ce, start = zero, 0
    for i, k in enumerate(spec.categorical):
        target = Tensor(latent.categories[:, i]).to(device)
        cat_ce = cat_ce + F.cross_entropy(q_out[:, start : start + k], target)
        start += k
    cont_nll = zero
    if spec.continuous:
        codes = Tensor(latent.continuous).to(device)
        mean = q_out[:, start : start + spec.continuous]
        cont_nll = F.gaussian_nll(codes, mean, reduction="none").sum(1).mean()
    return cat_ce, cont_nll


CONSISTENCY_OBJECTIVES = ("iic", "kl")
DEFAULT_CONSISTENCY_OBJECTIVE = "iic"
"""The objective of ``consistency_loss`` and ``InfoGAN(consistency=...)`` unless told otherwise
(the example's ``--consistency-objective`` and the study driver share it). The README's
"Augmentation consistency" section compares the two objectives seed by seed."""
TINY = float(np.finfo(np.float64).eps)
"""Probabilities below this are clamped to it before a log (IIC's ``EPS``, 2.2e-16): an entry
that small adds at most ~1e-14 nats, and no gradient, to the objectives."""


def iic_mutual_information(p: Tensor, q: Tensor) -> Tensor:
    """IIC's mutual information between two soft cluster assignments of the same examples.

    With the symmetrised joint ``P = (J + J^T) / 2``, ``J = (1/N) sum_i p_i q_i^T`` (K x K) and its
    marginals ``P_row``, ``P_col``: ``I = sum_ab P_ab log(P_ab / (P_row,a P_col,b))`` in nats
    (Ji et al. 2019, with entries below ``TINY`` clamped to it, as their code does). ``0 <= I <=
    ln K``; ``I = ln K`` when both views put each example in the same one cluster and the
    clusters are equally full.

    Parameters
    ----------
    p, q : Tensor, shape (N, K)
        Each row a distribution over K clusters (e.g. softmax of logits): example i and its
        transformed copy.

    Returns
    -------
    Tensor, shape ()
    """
    if p.ndim != 2 or p.shape != q.shape:
        raise ValueError(
            f"p and q must both have shape (N, K), the same; got {p.shape} and {q.shape}"
        )
    joint = (p.T @ q) / p.shape[0]
    joint = (joint + joint.T) / 2
    row, col = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    joint, row, col = joint.clip(min=TINY), row.clip(min=TINY), col.clip(min=TINY)
    return (joint * (log(joint) - log(row) - log(col))).sum()


def consistency_loss(
    logits: Tensor, logits_moved: Tensor, objective: str = DEFAULT_CONSISTENCY_OBJECTIVE
) -> Tensor:
    """How differently a categorical head answers for examples and their transformed copies.

    Parameters
    ----------
    logits, logits_moved : Tensor, shape (N, K)
        The head's logits for the examples and for their copies, row i for example i.
    objective : {"iic", "kl"}
        ``"iic"``: ``-iic_mutual_information(p, p')`` of the softmaxes ``p``, ``p'``.
        ``"kl"``: the mean symmetric KL ``(KL(p_i || p'_i) + KL(p'_i || p_i)) / 2`` (consistency)
        minus IMSAT's mutual information ``H(m) - mean_i H(p_i)`` over both views, ``m`` their
        mean assignment: the marginal entropy ``H(m)`` keeps the clusters balanced (without it
        every example could go to one cluster), the conditional entropy keeps each answer
        confident (without it, uniform answers for every example would be optimal).

    Returns
    -------
    Tensor, shape ()
        A loss to minimise, in nats; both objectives are >= -ln K, with equality for confident,
        consistent assignments that fill the K clusters equally.
    """
    arguments.choice(objective, "objective", CONSISTENCY_OBJECTIVES)
    if logits.ndim != 2 or logits.shape != logits_moved.shape:
        raise ValueError(
            f"logits and logits_moved must both have shape (N, K), the same; got "
            f"{logits.shape} and {logits_moved.shape}"
        )
    if objective == "iic":
        return -iic_mutual_information(softmax(logits, 1), softmax(logits_moved, 1))
    log_p, log_q = log_softmax(logits, 1), log_softmax(logits_moved, 1)
    p, q = log_p.exp(), log_q.exp()
    symmetric_kl = ((p - q) * (log_p - log_q)).sum(1).mean() / 2
    conditional_entropy = -(p * log_p + q * log_q).sum(1).mean() / 2
    mean = (p.mean(0) + q.mean(0)) / 2
    marginal_entropy = -(mean * log(mean.clip(min=TINY))).sum()
    return symmetric_kl + conditional_entropy - marginal_entropy


class InfoGAN(Model):
    """The paper's MNIST InfoGAN: networks, Adam optimisers and one training step.

    Parameters
    ----------
    spec : LatentSpec
    lr_d, lr_g : float
        Adam learning rates of D (with Q) and G: the paper's 2e-4 and 1e-3.
    betas : (float, float)
        Adam's betas; the paper's beta1 is 0.5.
    lambda_cat, lambda_cont : float
        Weights of the categorical and continuous parts of L_I.
    info_in_g : bool
        Reward G with L_I (InfoGAN). False gives the paper's baseline: a plain GAN (G and D
        trained as without codes) with a Q head trained to recover c from D's body features,
        which Q's loss does not change.
    seed : int
        Seeds the weights (drawn on the host, so CPU and GPU runs start identical).
    device : {"cpu", "cuda"}
    generator, discriminator : nn.Module, optional
        Other networks than the paper's MNIST ones (e.g. ``MLPGenerator``/``MLPDiscriminator``
        for low-dimensional data). The discriminator needs the modules ``body`` (shared
        features), ``d_head`` (to one logit per image) and ``q_head`` (to ``spec.q_dim``).
    consistency : float
        Weight of the augmentation-consistency term, >= 0; 0 (the default) is the paper's
        recipe. Above 0 the D/Q step adds ``consistency * consistency_loss(Q(x), Q(T(x)))``
        over each categorical code's logits, for the real batch x and a copy T(x) moved by
        ``augment``; it trains Q's head and D's shared body.
    consistency_objective : {"iic", "kl"}
        See ``consistency_loss``; default ``DEFAULT_CONSISTENCY_OBJECTIVE``.
    augment : RandomAffine, optional
        The random maps T (default: rotations up to 15 degrees, scale 0.9-1.1, shifts up to 2
        pixels), drawn from the step's generator after the latents. Needs image batches
        (N, C, H, W).
    """

    parts = ("G", "D", "opt_g", "opt_d")
    recipe_keys = ("lambda_cat", "lambda_cont", "info_in_g", "consistency",
                   "consistency_objective")  # fmt: skip

    def __init__(
        self,
        spec: LatentSpec = LatentSpec(),
        *,
        lr_d: float = 2e-4,
        lr_g: float = 1e-3,
        betas: tuple[float, float] = (0.5, 0.999),
        lambda_cat: float = 1.0,
        lambda_cont: float = 0.1,
        info_in_g: bool = True,
        seed: int = 0,
        device: str = "cpu",
        generator: nn.Module | None = None,
        discriminator: nn.Module | None = None,
        consistency: float = 0.0,
        consistency_objective: str = DEFAULT_CONSISTENCY_OBJECTIVE,
        augment: RandomAffine | None = None,
    ) -> None:
        if spec.q_dim == 0:
            raise ValueError(f"InfoGAN needs at least one code to recover; got {spec}")
        self.consistency = arguments.real(consistency, "consistency", 0.0)
        self.consistency_objective = arguments.choice(
            consistency_objective, "consistency_objective", CONSISTENCY_OBJECTIVES
        )
        if self.consistency and not spec.categorical:
            raise ValueError(f"consistency={consistency} needs a categorical code; got {spec}")
        if self.consistency and not info_in_g:
            raise ValueError(
                f"consistency={consistency} trains D's body on real images, which the baseline "
                "(info_in_g=False) leaves to the GAN loss; use one or the other"
            )
        if augment is not None and not isinstance(augment, RandomAffine):
            raise TypeError(f"augment must be a RandomAffine; got {type(augment).__name__}")
        self.augment = RandomAffine() if augment is None else augment
        self.spec, self.device = spec, device
        self.lambda_cat, self.lambda_cont, self.info_in_g = lambda_cat, lambda_cont, info_in_g
        rng = np.random.default_rng(seed)
        self.G = (Generator(spec.dim, rng=rng) if generator is None else generator).to(device)
        self.D = (
            Discriminator(spec.q_dim, rng=rng) if discriminator is None else discriminator
        ).to(device)
        self.opt_d = Adam(self.D.parameters(), lr=lr_d, betas=betas)
        self.opt_g = Adam(self.G.parameters(), lr=lr_g, betas=betas)

    def train_step(self, real: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
        """One D (and Q) update, then one G update, on a batch of real images.

        Parameters
        ----------
        real : np.ndarray, float32, shape (N, 1, 28, 28), values in [0, 1]
        rng : np.random.Generator
            Draws the latents.

        Returns
        -------
        dict
            ``d_loss``, ``g_loss`` (GAN parts), ``info_cat`` and ``info_cont`` (L_I in nats, from
            the D step), ``d_real`` and ``d_fake`` (mean D probabilities); with ``consistency``
            on, also ``consistency`` (the unweighted ``consistency_loss``, nats).
        """
        n = len(real)
        latent = self.spec.sample(n, rng)
        fake = self.G(self.tensor(latent.vector()))

        # D step: real -> 1, fake -> 0; Q learns to recover c. In InfoGAN Q's loss trains the
        # shared body too; in the baseline Q reads the body's features without shaping them.
        D = self.D
        x = self.tensor(real)
        h_real = D.body(x)
        d_real = D.d_head(h_real).reshape(-1)
        h_fake = D.body(fake.detach())
        d_fake = D.d_head(h_fake).reshape(-1)
        q = D.q_head(h_fake if self.info_in_g else h_fake.detach())
        d_loss = discriminator_loss("gan", d_real, d_fake)  # BCE: real -> 1, fake -> 0
        cat_ce, cont_nll = information_terms(q, latent)
        loss = d_loss + (self.lambda_cat * cat_ce + self.lambda_cont * cont_nll)
        if self.consistency:  # Q's categories on real images, moved or not, must agree
            moved = self.tensor(self.augment(x.data, rng))  # the maps drawn after the latents
            q_both = D.q_head(cat([h_real, D.body(moved)], 0))  # one batch norm for both
            consistency = self._consistency(q_both[:n], q_both[n:])
            loss = loss + self.consistency * consistency
        self.opt_d.zero_grad()
        loss.backward()
        self.opt_d.step()

        # G step: fool the updated D (non-saturating loss) and, in InfoGAN, make c recoverable.
        with frozen(D):  # D's weight grads are not needed here: skip computing them
            h = D.body(fake)
            g_loss = generator_loss("gan", D.d_head(h).reshape(-1))  # BCE: fake -> 1
            loss = g_loss
            if self.info_in_g:
                cat_g, cont_g = information_terms(D.q_head(h), latent)
                loss = g_loss + self.lambda_cat * cat_g + self.lambda_cont * cont_g
            self.opt_g.zero_grad()
            loss.backward()
            self.opt_g.step()
        metrics = {
            "d_loss": d_loss.item(),
            "g_loss": g_loss.item(),
            "info_cat": self.spec.categorical_entropy - cat_ce.item(),
            "info_cont": self.spec.continuous_entropy - cont_nll.item(),
            "d_real": sigmoid(d_real.detach()).mean().item(),
            "d_fake": sigmoid(d_fake.detach()).mean().item(),
        }
        if self.consistency:
            metrics["consistency"] = consistency.item()
        return metrics

    def _consistency(self, q: Tensor, q_moved: Tensor) -> Tensor:
        """``consistency_loss`` summed over the categorical codes' logits of two Q outputs."""
        total, start = None, 0
        for k in self.spec.categorical:
            term = consistency_loss(q[:, start : start + k], q_moved[:, start : start + k],
                                    self.consistency_objective)  # fmt: skip
            total = term if total is None else total + term
            start += k
        return total

    def categorical_logits(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Q's logits of the categorical codes for real images (eval mode, batched, no graph):
        (N, sum(spec.categorical)) on the host."""
        k = sum(self.spec.categorical)
        return self.batched(lambda a: self.D.q_head(self.D.body(self.tensor(a)))[:, :k], images,
                            (self.D,), batch_size)  # fmt: skip

    def consistency_score(self, images: np.ndarray, moved: np.ndarray) -> float:
        """IIC's mutual information between Q's categorical codes on ``images`` and on
        ``moved`` (their transformed copies, row for row), summed over the codes, in nats:
        a label-free score of the clustering (higher is better; at most sum ln K).

        Q runs in eval mode; the joint distribution is taken over all the images at once, in
        float64.
        """
        if np.shape(images) != np.shape(moved):
            raise ValueError(
                f"images and moved must have the same shape; got {np.shape(images)} and "
                f"{np.shape(moved)}"
            )
        a, b = (self.categorical_logits(x).astype(np.float64) for x in (images, moved))
        total, start = 0.0, 0
        with no_grad():
            for k in self.spec.categorical:
                p, q = (softmax(Tensor(x[:, start : start + k]), 1) for x in (a, b))
                total += iic_mutual_information(p, q).item()
                start += k
        return total

    def generate(self, latent: Latent) -> np.ndarray:
        """G's images for ``latent`` (eval mode, no graph): (N, 1, 28, 28) on the host."""
        return self.batched(lambda a: self.G(self.tensor(a)), latent.vector(), (self.G,))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` images for random latents (eval mode): (n, 1, 28, 28) in [0, 1]."""
        return self.generate(self.spec.sample(n, rng))

    def predict_codes(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Q's most likely category for each image and categorical code: (N, n_cat) int64.

        Runs D in eval mode (BN with running statistics), in batches, without a graph.
        """
        q = self.batched(lambda a: self.D.q_head(self.D.body(self.tensor(a))), images, (self.D,),
                         batch_size)  # fmt: skip
        bounds = np.cumsum((0, *self.spec.categorical))
        return np.stack([q[:, a:b].argmax(1) for a, b in itertools.pairwise(bounds)], 1)


def sweep_latents(
    spec: LatentSpec,
    code: int,
    categories: list[int],
    values: np.ndarray,
    rng: np.random.Generator,
) -> Latent:
    """Latents for the paper's Figure 2: one row per category of the first categorical code,
    one column per value of continuous code ``code``; noise and the other codes fixed (one noise
    draw for the whole grid, other continuous codes 0). Rows x columns are flattened row-major."""
    if not 0 <= code < spec.continuous:
        raise ValueError(f"continuous code {code} does not exist; the spec has {spec.continuous}")
    rows, cols = len(categories), len(values)
    noise = np.repeat(rng.uniform(-1, 1, (1, spec.noise)).astype(np.float32), rows * cols, 0)
    cats = np.zeros((rows * cols, len(spec.categorical)), np.int64)
    cats[:, 0] = np.repeat(categories, cols)
    cont = np.zeros((rows * cols, spec.continuous), np.float32)
    cont[:, code] = np.tile(values, rows)
    return Latent(noise=noise, categories=cats, continuous=cont, spec=spec)
