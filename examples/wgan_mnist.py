"""WGAN on MNIST (Arjovsky et al. 2017): train, then write samples, the critic's Wasserstein
estimate over training, and metrics.json.

    python examples/wgan_mnist.py --split test --data-dir ../shared/data --out runs/wgan

A critic without output activation (DCGAN networks), weights clipped to [-0.01, 0.01],
5 critic steps per generator step, RMSProp with lr 5e-5, batch 64. ``--steps`` counts
generator steps.
"""

from __future__ import annotations

import sys

from tinygan import cli, runner
from tinygan.models import WGAN


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    cli.add_common_flags(parser, out="runs/wgan")
    parser.add_argument("--clip-value", type=cli.real(0.0, low_open=True), default=0.01)
    parser.add_argument("--n-critic", type=cli.integer(1), default=5)
    parser.add_argument("--lr", type=cli.real(0.0, low_open=True), default=5e-5)
    parser.add_argument("--width", type=cli.integer(1), default=64)
    parser.set_defaults(steps=1000, batch_size=64)
    args = cli.parse(parser, argv)
    model = WGAN(width=args.width, clip_value=args.clip_value, n_critic=args.n_critic,
                 lr=args.lr, seed=args.seed, device=cli.pick_device(args.device))  # fmt: skip
    return runner.run_generative(
        model, args, name="WGAN",
        curves={"wasserstein": ("estimate",), "losses": ("d_loss", "g_loss")},
        batch_size=args.n_critic * args.batch_size,  # one batch per critic step
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(cli.run(main))
