"""The variational autoencoder on MNIST (Kingma & Welling 2014): writes samples,
reconstructions, the held-out ELBO in nats, and (with --latent-dim 2) the 2-D manifold figure.

    python examples/vae_mnist.py --split test --data-dir ../shared/data --out runs/vae
    python examples/vae_mnist.py --latent-dim 2 --out runs/vae2d

Gaussian encoder and Bernoulli decoder with 400 ReLU units, the reparameterisation trick,
closed-form KL, Adam (lr 1e-3), batch 100; images binarised afresh each step.
"""

from __future__ import annotations

import sys

from tinygan import cli
from tinygan.experiments import add_common_flags, pick_device, run_generative, vae_report
from tinygan.models import VAE


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    add_common_flags(parser, out="runs/vae")
    parser.add_argument("--latent-dim", type=cli.integer(1), default=20)
    parser.set_defaults(steps=8000, batch_size=100)
    args = cli.parse(parser, argv)
    model = VAE(latent_dim=args.latent_dim, seed=args.seed, device=pick_device(args.device))
    return run_generative(
        model, args, name="VAE", curves={"elbo": ("elbo",), "terms": ("reconstruction", "kl")},
        extra=vae_report,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(cli.run(main))
