"""f-GAN on MNIST (Nowozin et al. 2016): variational divergence minimisation with a chosen
f-divergence; writes samples, the divergence bound over training, and metrics.json.

    python examples/fgan_mnist.py --divergence kl --split test --data-dir ../shared/data
    for d in total_variation kl reverse_kl pearson neyman squared_hellinger jeffrey \\
             jensen_shannon gan; do python examples/fgan_mnist.py --divergence $d; done

The paper's MNIST networks (fully connected; LeakyReLU in D where it used maxout), U(-1, 1)
noise of 100 dims, Adam (lr 2e-4, beta1 0.5), batch 64, the output activation and conjugate
of the divergence's row of the paper's table; G takes the "alternative" (non-saturating) update.
"""

from __future__ import annotations

import sys

from tinygan import cli, runner
from tinygan.models import DIVERGENCES, FGAN


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    cli.add_common_flags(parser, out="")
    parser.add_argument("--divergence", choices=list(DIVERGENCES), default="gan")
    parser.add_argument("--generator-loss", choices=["non_saturating", "minimax"],
                        default="non_saturating")  # fmt: skip
    parser.set_defaults(steps=3000, batch_size=64)
    args = parser.parse_args(argv)
    args.out = args.out or f"runs/fgan_{args.divergence}"  # the default depends on a flag
    cli.check_out(args)
    model = FGAN(args.divergence, generator_loss=args.generator_loss, seed=args.seed,
                 device=cli.pick_device(args.device))  # fmt: skip
    return runner.run_generative(
        model, args, name=f"f-GAN ({args.divergence})",
        curves={"divergence": ("estimate",), "losses": ("d_loss", "g_loss")},
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(cli.run(main))
