"""InfoGAN on MNIST (Chen et al. 2016): train, then write figures, a checkpoint and metrics.json.

    python examples/infogan_mnist.py --split test --steps 5000 --out runs/infogan
    python examples/infogan_mnist.py --baseline --out runs/gan   # the plain-GAN baseline
    python examples/infogan_mnist.py --split test --consistency 1 --out runs/infogan_consistency

Defaults are the paper's: Adam (beta1 0.5), lr 2e-4 for D/Q and 1e-3 for G, lambda 1, batch 128,
5,000 steps, one Cat(10) and two U(-1, 1) codes beside 62 noise dims. --consistency W adds an
augmentation-consistency term on Q's categorical code for real images (off by default). Every
--select-every steps the state is scored without labels on the validation images and the best
one kept in best.npz; metrics.json reports the final and that selected state.
"""

from __future__ import annotations

import sys

from tinygan import cli
from tinygan.experiments import add_common_flags, run_infogan
from tinygan.models.infogan import CONSISTENCY_OBJECTIVES, DEFAULT_CONSISTENCY_OBJECTIVE


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    add_common_flags(parser, out="runs/infogan")
    weight = cli.real(0.0)
    parser.add_argument(
        "--lambda-cat", type=weight, default=1.0, help="weight of L_I's categorical part"
    )
    parser.add_argument(
        "--lambda-cont", type=weight, default=0.1, help="weight of L_I's continuous part"
    )
    parser.add_argument(
        "--baseline", action="store_true", help="do not reward G with L_I (plain GAN + Q)"
    )
    parser.add_argument(
        "--consistency",
        type=weight,
        default=0.0,
        metavar="W",
        help="weight of the augmentation-consistency term on Q's categorical code for real "
        "images (0, the default: the paper's recipe)",
    )
    parser.add_argument(
        "--consistency-objective",
        choices=CONSISTENCY_OBJECTIVES,
        default=DEFAULT_CONSISTENCY_OBJECTIVE,
        help=f"the loss of the term (default {DEFAULT_CONSISTENCY_OBJECTIVE}): iic is minus "
        "IIC's mutual information between Q(c|x) and Q(c|T(x)); kl their symmetric KL minus "
        "IMSAT's mutual information H(mean p) - mean H(p)",
    )
    parser.add_argument(
        "--select-every",
        type=cli.integer(0),
        default=500,
        metavar="K",
        help="score the model every K steps by IIC's mutual information on the validation "
        "images (no labels) and keep the best state in best.npz (0: off)",
    )
    parser.add_argument(
        "--compare",
        metavar="RUN_DIR",
        type=cli.run_folder("history.json"),
        help="a baseline run to draw in Figure 1 too",
    )
    return run_infogan(cli.parse(parser, argv))


if __name__ == "__main__":
    sys.exit(cli.run(main))
