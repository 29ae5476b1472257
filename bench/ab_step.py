"""A/B: the InfoGAN training step of another git revision of tinygan against the working tree.

    python bench/ab_step.py [--base HEAD] [--batch 64] [--steps 30]

Exports the ``tinygan`` package at ``--base`` into a temporary folder as ``tinygan_base`` (the
package imports itself relatively, so it runs under that name), builds the same model from it
and from the working tree, and alternates their training steps in one process. Both see the
same machine at the same moments: on a shared VM whose timings swing by 10-20% between runs,
that is the fair way to measure a change worth a few percent. Prints both medians and the
median of the paired ratios (working tree / base; below 1 is faster).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tinygan.runner import tune_allocator

ROOT = Path(__file__).resolve().parents[1]


def export(rev: str) -> Path:
    """``tinygan/`` at ``rev`` as ``<tmp>/tinygan_base``; returns ``<tmp>``."""
    out = Path(tempfile.mkdtemp())
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "tinygan"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    (out / "tinygan").rename(out / "tinygan_base")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="HEAD", help="git revision to compare against")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    sys.path.insert(0, str(export(args.base)))
    import tinygan_base.models as base  # type: ignore[import-not-found]

    import tinygan.models as new

    tune_allocator()
    x = np.random.default_rng(0).random((args.batch, 1, 28, 28), dtype=np.float32)
    models = [pkg.InfoGAN(pkg.LatentSpec(), seed=0) for pkg in (base, new)]
    rngs = [np.random.default_rng(1) for _ in models]
    times = np.zeros((2, args.steps))
    for k in range(3 + args.steps):
        for i, (model, rng) in enumerate(zip(models, rngs)):
            t0 = time.perf_counter()
            model.train_step(x, rng)
            if k >= 3:
                times[i, k - 3] = time.perf_counter() - t0
    b, n = np.median(times, axis=1) * 1e3
    print(f"batch {args.batch}, {args.steps} interleaved steps after 3 warm-up: base "
          f"({args.base}) {b:.1f} ms, working tree {n:.1f} ms; median paired ratio "
          f"{np.median(times[1] / times[0]):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
