"""Autoencoders on MNIST: plain, sparse (UFLDL), denoising (Vincent et al. 2008) or stacked,
fully connected or convolutional; held-out reconstruction error, figures, a checkpoint.

    python examples/autoencoder_mnist.py --kind sparse --split test --data-dir ../shared/data \
        --out runs/ae_sparse
    python examples/autoencoder_mnist.py --kind denoising --arch conv --out runs/ae_dae_conv

--kind only picks defaults for the flags left unset (an explicit --corruption makes any kind
denoising, --beta sparse), all with sigmoid units and batches of 64: plain 784-256, binary
cross-entropy, Adam lr 1e-3, 4,000 steps; sparse 784-196, half squared error, rho 0.1, beta 3,
lambda 3e-3 (UFLDL's MNIST exercise), lr 1e-2, 12,000 steps; denoising as plain with masking
noise mu 0.25; stacked 784-256-64, each layer denoising, 4,000 steps per layer, then 4,000 of
fine-tuning. --arch conv reads --hidden as channels (default 16 8: codes 8x7x7; ReLU units
unless sparse or stacked).

Writes into --out: reconstructions.png (test images, for denoising their corrupted versions, and
the reconstructions), filters.png (first-layer weights, mlp only), losses.png, metrics.json,
history.json and checkpoint.npz (stacked: also layer1.npz, layer2.npz, ...).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tinygan import cli, evaluation, runner, viz
from tinygan.models.autoencoder import (
    MNIST_SETTINGS,
    Autoencoder,
    autoencoder_options,
    conv_autoencoder,
    mask_noise,
    mlp_autoencoder,
    stack_autoencoders,
)
from tinygan.train import pretrain_stack


def settings(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the flags left unset from ``MNIST_SETTINGS[args.kind]`` (and the conv channels)."""
    defaults = dict(MNIST_SETTINGS[args.kind])
    if args.arch == "conv":
        defaults["hidden"] = [16, 8]
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.activation is None:  # sparsity and stacked bce layers need codes in [0, 1]
        plain_conv = args.arch == "conv" and not args.beta and args.kind != "stacked"
        args.activation = "relu" if plain_conv else "sigmoid"
    return args


def autoencoder(
    sizes: list[int], args: argparse.Namespace, rng: np.random.Generator, image_size: int = 28
) -> Autoencoder:
    """One autoencoder from the flags: widths ``sizes`` (mlp), or channels (conv) for inputs of
    ``image_size`` pixels square."""
    if args.arch == "mlp":
        parts = mlp_autoencoder(sizes, activation=args.activation, rng=rng)
    else:
        parts = conv_autoencoder(
            sizes[1:],
            in_channels=sizes[0],
            image_size=image_size,
            activation=args.activation,
            rng=rng,
        )
    return Autoencoder(*parts, **autoencoder_options(vars(args)), device=args.device)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    cli.add_common_flags(parser, out="runs/autoencoder")
    add = parser.add_argument
    add("--kind", choices=list(MNIST_SETTINGS), default="sparse")
    add("--arch", choices=["mlp", "conv"], default="mlp")
    add("--hidden", type=cli.integer(1), nargs="+", help="hidden widths (mlp) or channels (conv)")
    add("--activation", choices=["sigmoid", "relu", "tanh"])
    add("--loss", choices=["bce", "mse"])
    add("--lr", type=cli.real(0.0, low_open=True))
    add("--rho", type=cli.real(0.0, 1.0, low_open=True, high_open=True),
        help="target mean activation of the sparsity penalty")  # fmt: skip
    add("--beta", type=cli.real(0.0), help="weight of the sparsity penalty (0: none)")
    add("--weight-decay", type=cli.real(0.0), help="lambda of lambda/2 ||W||^2")
    add("--corruption", type=cli.real(0.0, 1.0, high_open=True),
        help="masking-noise rate mu (0: not denoising)")  # fmt: skip
    parser.set_defaults(steps=None, batch_size=64)
    args = settings(cli.parse(parser, argv))
    args.device = cli.pick_device(args.device)
    # MNIST and Fashion-MNIST images are 1 x 28 x 28: the models are built (and the flags that
    # shape them checked) before any data is read
    sizes = [784 if args.arch == "mlp" else 1, *args.hidden]
    rng = np.random.default_rng(args.seed)
    with cli.flag_errors():
        if args.kind == "stacked":
            layers = [
                autoencoder(sizes[i : i + 2], args, rng, image_size=28 // 2**i)
                for i in range(len(sizes) - 1)
            ]
        else:
            model = autoencoder(sizes, args, rng)

    splits = evaluation.load_splits(args.dataset, args.split, args.data_dir)
    x, x_test = splits.train[0], splits.test[0]
    if args.arch == "mlp":
        x, x_test = x.reshape(len(x), -1), x_test.reshape(len(x_test), -1)
    cli.check_batch(args.batch_size, x)
    with runner.make_out(args) as out:
        runner.tune_allocator()
        print(
            f"{args.kind} {args.arch} autoencoder {sizes}: {len(x)} training images, "
            f"writing to {out}"
        )

        report: dict[str, Any] = {}
        if args.kind == "stacked":
            histories = pretrain_stack(
                layers,
                x,
                steps=args.steps,
                batch_size=args.batch_size,
                seed=args.seed,
                checkpoint_dir=out,
                resume=args.resume,
                progress=not args.no_progress,
            )
            model = stack_autoencoders(layers, lr=args.lr)
            report["greedy_test_reconstruction_error"] = model.reconstruction_error(x_test)
        else:
            histories = []
        history = runner.fit(model, x, args, args.batch_size, splits.train_name)
        if isinstance(history, int):
            return history
        histories.append(history)
        runner.write_json(out / "history.json", histories)

        codes = model.encode(x_test)
        report.update(
            test_reconstruction_error=model.reconstruction_error(x_test),
            test_pixel_mse=float(np.mean((model.reconstruct(x_test) - x_test) ** 2)),
            mean_hidden_activation=float(codes.mean()),
            unit_mean_activation_min_median_max=np.percentile(codes.mean(0), [0, 50, 100]).tolist(),
        )
        # every kind is scored on masked inputs too (at its own rate, or 0.25), so that plain and
        # denoising runs compare on the same corrupted test images
        mu = args.corruption or 0.25
        masked = mask_noise(x_test, mu, np.random.default_rng([args.seed, 2]))
        report["masking_rate"] = mu
        report["test_masked_reconstruction_error"] = model.reconstruction_error(masked, x_test)
        noisy = masked if args.corruption else None
        metrics = {
            "model": f"{args.kind} {args.arch} autoencoder",
            "loss": "binary cross-entropy" if args.loss == "bce" else "half squared error",
            "errors_are": "per test image, summed over its pixels (pixel_mse: mean over pixels)",
            **report,
            "seconds": sum(h[-1]["seconds"] for h in histories),
            "splits": splits.description,
            "flags": vars(args),
        }
        runner.write_json(out / "metrics.json", metrics)
        if runner.is_main():
            write_figures(model, x_test, noisy, histories, out, args)
        print(
            f"test reconstruction error {report['test_reconstruction_error']:.3f} per image, "
            f"mean hidden activation {report['mean_hidden_activation']:.3f}, "
            f"{metrics['seconds']:.0f} s; wrote {out}"
        )
        return 0


def write_figures(
    model: Autoencoder,
    x_test: np.ndarray,
    noisy: np.ndarray | None,
    histories: list[list[dict[str, float]]],
    out: Path,
    args: argparse.Namespace,
) -> None:
    """reconstructions.png, filters.png (mlp) and losses.png."""
    # 3 groups of 10 test images: a row of inputs (and one corrupted), a row of reconstructions
    inputs = [x_test[:30]] if noisy is None else [x_test[:30], noisy[:30]]
    rows = [*inputs, model.reconstruct(inputs[-1])]
    grid = viz.interleave_rows(*(r.reshape(-1, 28, 28) for r in rows))
    names = (
        ["test", "corrupted", "reconstructed"] if noisy is not None else ["test", "reconstructed"]
    )
    title = f"{args.kind} {args.arch} autoencoder: held-out test images"
    viz.image_grid(out / "reconstructions.png", grid, row_labels=names * 3, title=title)
    if args.arch == "mlp":
        w = next(p for p in model.encoder.parameters() if p.ndim == 2).numpy()  # the first layer
        w = 0.5 + 0.5 * w[:100] / np.abs(w[:100]).max(1, keepdims=True)  # per filter; grey is 0
        title = f"first-layer weights ({len(w)} of {args.hidden[0]} units)"
        w = np.concatenate([w, np.full((-len(w) % 10, w.shape[1]), 0.5, w.dtype)])  # full rows
        viz.image_grid(out / "filters.png", w.reshape(-1, 10, 28, 28), title=title)
    stages = [f"layer {i + 1}" for i in range(len(histories) - 1)]
    stages.append("fine-tuning" if stages else "reconstruction")
    series = {
        stage: ([e["step"] for e in h], [e["reconstruction"] for e in h])
        for stage, h in zip(stages, histories)
    }
    last = histories[-1]
    for key in ("sparsity_kl", "weight_decay"):
        if key in last[-1]:
            series[key] = ([e["step"] for e in last], [e[key] for e in last])
    viz.curves(out / "losses.png", series, title="training loss terms", ylabel="per example")


if __name__ == "__main__":
    sys.exit(cli.run(main))
