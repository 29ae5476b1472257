"""BiGAN on MNIST (Donahue et al. 2017): a generator and an encoder learned together; writes
samples, reconstructions G(E(x)), a linear probe's accuracy on E(x), and metrics.json.

    python examples/bigan_mnist.py --split test --data-dir ../shared/data --out runs/bigan

Fully connected G, E and D (1024 hidden units), U(-1, 1) latents of 50 dims, Adam (lr 2e-4,
beta1 0.5), batch 64.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from tinygan import cli, evaluation, runner, viz
from tinygan.models import BiGAN


def bigan_report(model: BiGAN, splits: evaluation.Splits, out: Path) -> dict[str, Any]:
    """BiGAN's extras: linear-probe accuracy of E(x), reconstruction error of G(E(x)) on the
    test images, and a figure of test images above their reconstructions."""
    x = splits.test[0]
    rec = model.reconstruct(x)
    if runner.is_main():
        viz.image_grid(out / "reconstructions.png", viz.interleave_rows(x[:40], rec[:40]),
                       title="test images (odd rows) and G(E(x)) (even rows)")  # fmt: skip
    return {
        "linear_probe_accuracy": evaluation.probe(model.encode, splits),
        "reconstruction_mse": float(np.mean((rec - x) ** 2)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    cli.add_common_flags(parser, out="runs/bigan")
    parser.add_argument("--latent-dim", type=cli.integer(1), default=50)
    parser.set_defaults(steps=3000, batch_size=64)
    args = cli.parse(parser, argv)
    model = BiGAN(latent_dim=args.latent_dim, seed=args.seed, device=cli.pick_device(args.device))
    return runner.run_generative(
        model, args, name="BiGAN", curves={"losses": ("d_loss", "ge_loss")}, extra=bigan_report
    )


if __name__ == "__main__":
    sys.exit(cli.run(main))
