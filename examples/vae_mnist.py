"""The variational autoencoder on MNIST (Kingma & Welling 2014): writes samples,
reconstructions, the held-out ELBO in nats, and (with --latent-dim 2) the 2-D manifold figure.

    python examples/vae_mnist.py --split test --data-dir ../shared/data --out runs/vae
    python examples/vae_mnist.py --latent-dim 2 --out runs/vae2d

Gaussian encoder and Bernoulli decoder with 400 ReLU units, the reparameterisation trick,
closed-form KL, Adam (lr 1e-3), batch 100; images binarised afresh each step.
"""

from __future__ import annotations

import sys
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from tinygan import cli, evaluation, metrics, runner, viz
from tinygan.models import VAE
from tinygan.models.vae import binarize


def vae_report(model: VAE, splits: evaluation.Splits, out: Path) -> dict[str, Any]:
    """The VAE's extras: held-out ELBO and its terms (nats, test images binarised once with a
    fixed seed), an importance-sampled log-likelihood (k = 100), the linear probe on mu(x),
    reconstructions, and the 2-D latent manifold figure when the latent is 2-D."""
    x = splits.test[0]
    if model.binarize_data:  # once, so that both bounds score the same binary images
        x = binarize(x, np.random.default_rng(0))
    terms = model.elbo(x, np.random.default_rng(1))  # binarising 0/1 images again keeps them
    ll = model.log_likelihood(x, np.random.default_rng(2), k=100)
    report = {
        f"test_{k}": metrics.mean_sem(v) for k, v in {**terms, "log_likelihood_k100": ll}.items()
    }
    report["linear_probe_accuracy"] = evaluation.probe(model.encode, splits)
    if runner.is_main():
        write_figures(model, x, out)
    return report


def write_figures(model: VAE, x: np.ndarray, out: Path) -> None:
    """Test images ``x`` above their reconstructions; with a 2-D latent, the manifold."""
    rec = model.decode(model.encode(x[:40]))
    viz.image_grid(out / "reconstructions.png", viz.interleave_rows(x[:40], rec),
                   title="test images (odd rows) and decoded mu(x) (even rows)")  # fmt: skip
    if model.latent_dim == 2:  # the paper's Figure 4: a grid of z through the Gaussian's CDF
        ppf = np.array([NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, 15)])
        z = np.stack(np.meshgrid(ppf, ppf[::-1]), -1).reshape(-1, 2)
        viz.image_grid(out / "manifold.png", model.decode(z).reshape(15, 15, 28, 28),
                       title="learned 2-D manifold: z on a grid of N(0, I) quantiles")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    cli.add_common_flags(parser, out="runs/vae")
    parser.add_argument("--latent-dim", type=cli.integer(1), default=20)
    parser.set_defaults(steps=8000, batch_size=100)
    args = cli.parse(parser, argv)
    model = VAE(latent_dim=args.latent_dim, seed=args.seed, device=cli.pick_device(args.device))
    return runner.run_generative(
        model, args, name="VAE", curves={"elbo": ("elbo",), "terms": ("reconstruction", "kl")},
        extra=vae_report,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(cli.run(main))
