"""WGAN-GP on MNIST (Gulrajani et al. 2017): train, then write samples, the critic's
Wasserstein estimate and its gradient norm on interpolates over training, and metrics.json.

    python examples/wgangp_mnist.py --split test --data-dir ../shared/data --out runs/wgangp

WGAN's critic (DCGAN networks, as examples/wgan_mnist.py, but no batch norm in the critic) kept
near 1-Lipschitz by the gradient penalty lambda * E[(||grad_x D(x_hat)|| - 1)^2] on random
interpolates of real and generated images instead of weight clipping: lambda 10, 5 critic steps
per generator step, Adam with lr 1e-4 and betas (0.5, 0.9), batch 64. ``--steps`` counts
generator steps.
"""

from __future__ import annotations

import sys

from tinygan import cli, runner
from tinygan.models import WGANGP


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    cli.add_common_flags(parser, out="runs/wgangp")
    parser.add_argument("--gradient-penalty", type=cli.real(0.0, low_open=True), default=10.0,
                        help="the penalty's coefficient lambda (default 10)")  # fmt: skip
    parser.add_argument("--n-critic", type=cli.integer(1), default=5)
    parser.add_argument("--lr", type=cli.real(0.0, low_open=True), default=1e-4)
    parser.add_argument("--width", type=cli.integer(1), default=64)
    parser.set_defaults(steps=1000, batch_size=64)
    args = cli.parse(parser, argv)
    model = WGANGP(width=args.width, gradient_penalty=args.gradient_penalty,
                   n_critic=args.n_critic, lr=args.lr, seed=args.seed,
                   device=cli.pick_device(args.device))  # fmt: skip
    return runner.run_generative(
        model, args, name="WGAN-GP",
        curves={"wasserstein": ("estimate",), "grad_norm": ("grad_norm",),
                "losses": ("d_loss", "g_loss")},
        batch_size=args.n_critic * args.batch_size,  # one batch per critic step
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(cli.run(main))
