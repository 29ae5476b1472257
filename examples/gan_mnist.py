"""The paper's baseline for Figure 1: a plain GAN with the same networks and a Q head that is
trained to predict c, but G is not rewarded for making c recoverable.

    python examples/gan_mnist.py --split test --steps 1000 --out runs/gan
    python examples/infogan_mnist.py --split test --compare runs/gan   # Figure 1 with both
"""

from __future__ import annotations

import sys

from infogan_mnist import main

from tinygan import cli

if __name__ == "__main__":
    sys.exit(cli.run(main, ["--baseline", "--out", "runs/gan", *sys.argv[1:]]))
