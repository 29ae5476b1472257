"""Sparse coding on MNIST: an over-complete dictionary of 8x8 patch atoms (or whole-digit atoms).

    python examples/sparse_coding_mnist.py --split test --data-dir ../shared/data \
        --out runs/sparse_coding

Learns on random patches (each mean-centred; blank background patches skipped) from the
training images of ``evaluation.load_splits`` (the protocol every example shares), encodes
patches of its test images with the learned dictionary,
and writes into --out: atoms.png (each atom rescaled to [0, 1]), objective.png (J per example
after each half-step) and metrics.json.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from tinygan import cli, evaluation, runner, viz
from tinygan.models.sparse_coding import SparseCoding


def patches(images: np.ndarray, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random ``size`` x ``size`` patches with some ink, mean-centred, shape (n, size^2)."""
    out = []
    while sum(len(o) for o in out) < n:
        i = rng.integers(0, len(images), n)
        r, c = rng.integers(0, images.shape[-1] - size + 1, (2, n))
        p = np.stack([images[k, 0, y : y + size, x : x + size] for k, y, x in zip(i, r, c)])
        p = p.reshape(n, -1)
        out.append(p[p.std(axis=1) > 0.1])  # skip blank and nearly blank background
    p = np.concatenate(out)[:n]
    return p - p.mean(axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__.split("\n")[0])
    cli.add_data_flags(parser)
    add = parser.add_argument
    add("--whole", action="store_true", help="atoms of whole 28x28 digits instead of patches")
    add("--patch", type=cli.integer(1, 28), default=8, help="patch side in pixels")
    add("--examples", type=cli.integer(1), default=10000, help="training patches (or digits)")
    add("--atoms", type=cli.integer(1), default=128)
    add("--penalty", choices=["l1", "log", "exp"], default="l1")
    add("--eta", type=cli.real(0.0), default=0.5)
    add("--iters", type=cli.integer(1), default=20,
        help="alternations of code and dictionary steps")  # fmt: skip
    add("--code-iter", type=cli.integer(1), default=100, help="solver iterations per code step")
    add("--seed", type=cli.integer(0), default=0)
    cli.add_out_flags(parser, "runs/sparse_coding", resume=False)
    args = cli.parse(parser, argv)
    with cli.flag_errors():  # checks the settings before any data is read
        SparseCoding(args.atoms, penalty=args.penalty, eta=args.eta, code_iter=args.code_iter)

    splits = evaluation.load_splits(args.dataset, args.split, args.data_dir)  # every example's
    with runner.make_out(args) as out:
        train, held_out = (images.astype(np.float64) for images, _ in (splits.train, splits.test))
        rng = np.random.default_rng(args.seed)
        if args.whole:
            side = train.shape[-1]
            pick = rng.choice(len(train), min(args.examples, len(train)), replace=False)
            X, X_test = train[pick].reshape(len(pick), -1), held_out.reshape(len(held_out), -1)
        else:
            side = args.patch
            X, X_test = patches(train, args.examples, side, rng), patches(held_out, 2000, side, rng)
        print(f"learning {args.atoms} atoms on {len(X)} examples of dimension {X.shape[1]}")

        start = time.perf_counter()
        model = SparseCoding(
            args.atoms, penalty=args.penalty, eta=args.eta, code_iter=args.code_iter, rng=rng
        ).fit(X, n_iter=args.iters)
        seconds = time.perf_counter() - start
        Z_test = model.encode(X_test)

        def summary(X: np.ndarray, Z: np.ndarray) -> dict[str, float]:
            return {
                "objective_per_example": model.objective(X, Z) / len(X),
                "zero_fraction": float((Z == 0).mean()),
                "active_per_code": float((np.abs(Z) > 1e-3).sum(axis=1).mean()),
                "relative_error": float(((X - model.decode(Z)) ** 2).sum() / (X**2).sum()),
            }

        metrics = {
            "train": {"objective": model.history[-1]["objective"], **summary(X, model.codes)},
            "held_out": summary(X_test, Z_test),
            "seconds": seconds,
            "splits": splits.description,
            "flags": vars(args),
        }
        runner.write_json(out / "metrics.json", metrics)

        if runner.is_main():
            A = model.dictionary.T.reshape(-1, side, side)
            lo, hi = A.min(axis=(1, 2), keepdims=True), A.max(axis=(1, 2), keepdims=True)
            cols = 16 if args.atoms % 16 == 0 else 10
            grid = np.zeros(
                (-(-args.atoms // cols) * cols, side, side)
            )  # pad the last row with black
            grid[: args.atoms] = (A - lo) / np.maximum(hi - lo, 1e-12)
            viz.image_grid(
                out / "atoms.png",
                grid.reshape(-1, cols, side, side),
                title=f"{args.atoms} atoms ({args.penalty}, eta {args.eta})",
            )
            steps = {
                s: [h for h in model.history if h["step"] == s] for s in ("codes", "dictionary")
            }
            viz.curves(
                out / "objective.png",
                {
                    f"after {s} step": (
                        [h["iteration"] for h in hs],
                        [h["objective"] / len(X) for h in hs],
                    )
                    for s, hs in steps.items()
                },
                title="sparse coding objective",
                ylabel="J / N",
            )
        t, h = metrics["train"], metrics["held_out"]
        print(
            f"{seconds:.0f} s: J/N {t['objective_per_example']:.3f}, "
            f"relative error {t['relative_error']:.3f} (held out {h['relative_error']:.3f}), "
            f"{t['active_per_code']:.1f} active atoms per code"
        )
        print("wrote", out / "atoms.png", out / "objective.png", out / "metrics.json")
        return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
