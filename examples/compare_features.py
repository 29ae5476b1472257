"""Representations of MNIST compared: how much of the labels each learner's features hold.

    python examples/compare_features.py --split test --data-dir ../shared/data \
        --bigan runs/bigan --vae runs/vae --infogan runs/infogan --out runs/compare

Trains each learner on the training images without their labels: raw pixels (nothing learned:
the baseline), four fully connected autoencoders with sigmoid units and Adam, batch 64 (plain
784-256, binary cross-entropy, lr 1e-3; sparse 784-196, UFLDL's settings: half squared error,
rho 0.1, beta 3, lambda 3e-3, lr 1e-2; denoising as plain with masking noise 0.25; stacked
784-256-64, each layer denoising, pretrained greedily, then fine-tuned), and sparse coding of
whole digits (200 atoms, l1 with eta 1, FISTA, 15 alternations); features of InfoGAN (D's
body, 1024-d), BiGAN (E(x)) and the VAE (mu(x)) come from finished runs' checkpoints
(--infogan/--bigan/--vae RUN_DIR).

Each representation is scored by ``tinygan.evaluation.feature_scores``: a linear probe trained
on a class-balanced labelled subset of the training images (--labels), accuracy on the test
images; and k-means (k = 10) clustering accuracy on the test images' features. Writes
metrics.json and table.md into --out. The defaults train for about 3 minutes on one core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tinygan import cli, evaluation, runner
from tinygan.models import VAE, BiGAN, InfoGAN
from tinygan.models.autoencoder import (
    MNIST_SETTINGS,
    Autoencoder,
    autoencoder_options,
    mlp_autoencoder,
    stack_autoencoders,
)
from tinygan.models.sparse_coding import SparseCoding
from tinygan.serialization import CheckpointError, load
from tinygan.train import pretrain_stack, train

Encoder = Callable[[np.ndarray], np.ndarray]  # images (N, 1, 28, 28) -> features (N, D)
LEARNED = ("pixels", "autoencoder", "sparse_autoencoder", "denoising_autoencoder",
           "stacked_autoencoder", "sparse_coding")  # fmt: skip
LOADED = {"infogan": InfoGAN, "bigan": BiGAN, "vae": VAE}


def flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


def autoencoder(sizes: list[int], kind: str, args: argparse.Namespace) -> Autoencoder:
    """An MLP autoencoder of sigmoid units with the options of ``MNIST_SETTINGS[kind]``."""
    parts = mlp_autoencoder(sizes, rng=np.random.default_rng(args.seed))
    return Autoencoder(*parts, **autoencoder_options(MNIST_SETTINGS[kind]), device=args.device)


def learn(name: str, x: np.ndarray, args: argparse.Namespace) -> Encoder:
    """Train learner ``name`` on the training images ``x`` (N, 1, 28, 28); its encoder."""
    fit = {"batch_size": 64, "seed": args.seed, "progress": False}
    x = flat(x)
    if name == "pixels":
        return flat
    if name == "sparse_coding":
        model = SparseCoding(args.sc_atoms, eta=args.sc_eta, code_iter=100, rng=args.seed)
        model.fit(x.astype(np.float64), n_iter=args.sc_iters)
        return lambda a: model.encode(flat(a).astype(np.float64))
    if name == "stacked_autoencoder":
        layers = [autoencoder([784, 256], "stacked", args),
                  autoencoder([256, 64], "stacked", args)]  # fmt: skip
        pretrain_stack(layers, x, steps=args.ae_steps, **fit)
        model, steps = stack_autoencoders(layers), args.ae_steps
    elif name == "sparse_autoencoder":
        model = autoencoder([784, 196], "sparse", args)
        steps = args.sparse_ae_steps
    else:
        kind = "denoising" if name == "denoising_autoencoder" else "plain"
        model, steps = autoencoder([784, 256], kind, args), args.ae_steps
    train(model, x, steps=steps, **fit)
    return lambda a: model.encode(flat(a))


def restore(name: str, run: Path, device: str, splits: str) -> tuple[Encoder, dict[str, Any]]:
    """The model of a finished run (default constructor arguments, but the run's --latent-dim),
    its encoder, and what the run's metrics.json says about it; warns if the run is not
    finished or was trained on other images than ``splits`` says."""
    done = (run / "metrics.json").is_file()  # a run writes it when training is over
    try:
        info = json.loads((run / "metrics.json").read_text()) if done else {}
        kwargs = {k: v for k, v in info.get("flags", {}).items() if k == "latent_dim"}
        model = LOADED[name](device=device, **kwargs)
        state = load(run / "checkpoint.npz")
        model.load_state_dict(
            {k.removeprefix("model/"): v for k, v in state.items() if k.startswith("model/")}
        )
    except (ValueError, KeyError, TypeError, RuntimeError, AttributeError) as e:
        raise CheckpointError(
            f"--{name} {run}: not a usable {name} run ({' '.join(str(e).split())})"
        ) from None
    details = {
        "run": str(run),
        "checkpoint_step": int(state["train/step"]),
        "finished": done,
        "run_splits": info.get("splits"),
        "train_seconds": info.get("train_seconds"),
    }
    if not done:
        print(f"warning: no metrics.json in {run}: its checkpoint (step "
              f"{details['checkpoint_step']}) may be from a run still training")  # fmt: skip
    elif details["run_splits"] != splits:
        print(f"warning: {run} was trained on {details['run_splits']}, not on {splits}: "
              "it may have seen the test images")  # fmt: skip
    if name == "infogan":
        body = model.D.body
        return lambda a: model.batched(lambda b: body(model.tensor(b)), a, (body,)), details
    return model.encode, details


def table(results: dict[str, dict[str, Any]], n_labelled: int) -> str:
    lines = [
        f"| representation | dims | linear probe ({n_labelled:,} labels) | k-means (k = 10) "
        "| training s |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        seconds = r["train_seconds"]
        seconds = "-" if seconds is None else f"{seconds:.0f}" + (" (run)" if "run" in r else "")
        lines.append(
            f"| {name} | {r['dims']} | {r['probe_accuracy']:.3f} | {r['kmeans_accuracy']:.3f} "
            f"| {seconds} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    cli.add_data_flags(parser)
    add = parser.add_argument
    add("--labels", type=cli.integer(10), default=1000,
        help="size of the probe's labelled subset (at least one per class)")  # fmt: skip
    add("--ae-steps", type=cli.integer(1), default=4000,
        help="steps of the plain and denoising autoencoders and of each stacked stage")  # fmt: skip
    add("--sparse-ae-steps", type=cli.integer(1), default=12000)
    add("--sc-atoms", type=cli.integer(1), default=200, help="sparse coding: dictionary atoms")
    add("--sc-eta", type=cli.real(0.0), default=1.0,
        help="sparse coding: weight of the l1 penalty")  # fmt: skip
    add("--sc-iters", type=cli.integer(1), default=15,
        help="sparse coding: code/dictionary alternations")  # fmt: skip
    for name in LOADED:
        add(f"--{name}", type=cli.run_folder("checkpoint.npz"), metavar="RUN_DIR",
            help=f"a finished {name} run's folder")  # fmt: skip
    add("--only", default=None, help=f"comma-separated names among {', '.join(LEARNED)} "
        f"and the loaded runs' {', '.join(LOADED)}")  # fmt: skip
    add("--seed", type=cli.integer(0), default=0)
    add("--device", choices=["cpu", "cuda", "auto"], default="auto")
    cli.add_out_flags(parser, "runs/compare", resume=False)
    args = parser.parse_args(argv)
    names = [*LEARNED, *(n for n in LOADED if getattr(args, n) is not None)]
    if args.only is not None:
        only = args.only.split(",")
        unknown = [n for n in only if n not in names]
        if unknown:
            parser.error(f"--only {unknown}: not among {names} (loaded runs need their flag)")
        names = [n for n in names if n in only]
    cli.check_out(args)
    args.device = cli.pick_device(args.device)

    splits = evaluation.load_splits(args.dataset, args.split, args.data_dir)
    (x, y), (x_test, y_test) = splits.train, splits.test
    if args.labels > len(x):
        raise cli.UsageError(f"--labels {args.labels}: there are {len(x)} training images")
    # the finished runs first: a damaged one is reported before any learner trains
    restored = {
        name: restore(name, Path(getattr(args, name)), args.device, splits.description)
        for name in names
        if name in LOADED
    }
    with runner.make_out(args) as out:
        runner.tune_allocator()
        print(
            f"{splits.description}; probe on {args.labels} labels (class-balanced), "
            f"writing to {out}"
        )
        results: dict[str, dict[str, Any]] = {}
        for name in names:
            start = time.perf_counter()
            if name in LOADED:
                encode, details = restored[name]
            else:
                encode = learn(name, x, args)
                details = {"train_seconds": time.perf_counter() - start}
            scores = evaluation.feature_scores(
                flat(encode(x)),
                y,
                flat(encode(x_test)),
                y_test,
                n_labelled=args.labels,
                seed=args.seed,
            )
            results[name] = {**scores, **details}
            seconds = time.perf_counter() - start
            print(f"{name}: {scores['dims']} dims, probe {scores['probe_accuracy']:.3f}, "
                  f"k-means {scores['kmeans_accuracy']:.3f}, {seconds:.0f} s")  # fmt: skip
            summary = {
                "splits": splits.description,
                "labelled_subset": (
                    f"{args.labels} training images, class-balanced, seed {args.seed}"
                ),
                "representations": results,
                "flags": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            }
            # after each, so that a long run keeps its part
            runner.write_json(out / "metrics.json", summary)
        if runner.is_main():
            (out / "table.md").write_text(table(results, args.labels))
        print(table(results, args.labels), end="")
        print(f"wrote {out / 'metrics.json'} and {out / 'table.md'}")
        return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
