"""DCGAN on MNIST (Radford et al. 2016): train, then write samples, curves and metrics.json.

    python examples/dcgan_mnist.py --split test --data-dir ../shared/data --out runs/dcgan
    python examples/dcgan_mnist.py --generator-loss minimax --out runs/dcgan_minimax

Strided convolutions in D, fractionally-strided ones in G, batch norm, ReLU/tanh in G, LeakyReLU
in D; Adam (lr 2e-4, beta1 0.5), batch 64, N(0, 1) noise of 100 dims.
"""

from __future__ import annotations

import sys

from tinygan import cli, runner
from tinygan.models import DCGAN


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    cli.add_common_flags(parser, out="runs/dcgan")
    parser.add_argument("--generator-loss", choices=["non_saturating", "minimax"],
                        default="non_saturating")  # fmt: skip
    parser.add_argument(
        "--width", type=cli.integer(1), default=64, help="channels of the first D layer"
    )
    parser.set_defaults(steps=2000, batch_size=64)
    args = cli.parse(parser, argv)
    model = DCGAN(width=args.width, generator_loss=args.generator_loss, seed=args.seed,
                  device=cli.pick_device(args.device))  # fmt: skip
    return runner.run_generative(model, args, name="DCGAN", curves={"losses": ("d_loss", "g_loss")})


if __name__ == "__main__":
    sys.exit(cli.run(main))
