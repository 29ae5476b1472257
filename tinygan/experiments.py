"""What the example scripts share: flags, data, device, and InfoGAN's train-evaluate-plot run.

The scripts in ``examples/`` only parse flags and call into here, so every piece lives in the
library once: models in ``tinygan.models``, the loop in ``tinygan.train``, metrics in
``tinygan.metrics``, figures in ``tinygan.viz``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from . import backend, data, metrics, viz
from .models.infogan import InfoGAN, LatentSpec, sweep_latents
from .serialization import atomic_path
from .train import NonFiniteLossError, train


def add_common_flags(parser: argparse.ArgumentParser, *, out: str) -> None:
    """Flags every MNIST example takes (the paper's defaults)."""
    add = parser.add_argument
    add("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    add(
        "--split",
        choices=["train", "test"],
        default="train",
        help="which split to train on (offline here only MNIST's test split exists: use test)",
    )
    add(
        "--data-dir", default=None, help="folder with the IDX files (default: $TINYGAN_DATA, cache)"
    )
    add("--steps", type=int, default=5000)
    add("--batch-size", type=int, default=128)
    add("--seed", type=int, default=0)
    add("--device", choices=["cpu", "cuda", "auto"], default="auto")
    add("--out", default=out, help="folder for figures, checkpoint and metrics.json")
    add("--checkpoint-every", type=int, default=500)
    add("--resume", action="store_true", help="continue from the checkpoint in --out")
    add("--no-progress", action="store_true", help="no progress bar")


def tune_allocator() -> bool:
    """Keep freed memory in the process instead of returning it to the OS (glibc only).

    A training step frees and reallocates the same large buffers every iteration; with glibc's
    defaults each one comes back as fresh pages from the kernel, page-faulted one by one. Raising
    the mmap threshold to its maximum (32 MiB) and the trim threshold to 1 GiB makes the step
    reuse them (measured: InfoGAN step 215 -> 191 ms at batch 64). Returns False where glibc's
    ``mallopt`` is not available.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(
        libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 1 << 30)
    )


def pick_device(name: str) -> str:
    """``auto`` is cuda where CuPy sees a GPU, else cpu."""
    if name == "auto":
        return "cuda" if backend.cuda_available() else "cpu"
    return backend.check_device(name)


def load_images(dataset: str, split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 (N, 1, 28, 28) in [0, 1], and int64 labels (N,)."""
    loader = data.load_mnist if dataset == "mnist" else data.load_fashion_mnist
    images, labels = loader(split, root=data_dir)
    return (images.astype(np.float32) / 255)[:, None], labels


def write_json(path: Path, obj: Any) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    return path


def evaluate(model: InfoGAN, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Unsupervised accuracy of the first categorical code: Q's argmax on real images, matched
    one-to-one to the labels (Hungarian), with the confusion matrix (rows: labels)."""
    predicted = model.predict_codes(images)[:, 0]
    accuracy, mapping, confusion = metrics.cluster_accuracy(labels, predicted)
    return {
        "accuracy": accuracy,
        "category_to_label": {int(k): int(v) for k, v in mapping.items()},
        "confusion": confusion.tolist(),
    }


def run_infogan(args: argparse.Namespace) -> int:
    """Train InfoGAN (or the baseline) as the flags say; write figures, checkpoint, metrics."""
    device = pick_device(args.device)
    tune_allocator()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images, labels = load_images(args.dataset, args.split, args.data_dir)
    name = "GAN baseline (Q trained, G not rewarded)" if args.baseline else "InfoGAN"
    print(
        f"{name}: {args.dataset} {args.split} ({len(images)} images), device {device}, "
        f"{args.steps} steps of batch {args.batch_size}, seed {args.seed}, writing to {out}"
    )
    spec = LatentSpec()
    model = InfoGAN(
        spec,
        lambda_cat=args.lambda_cat,
        lambda_cont=args.lambda_cont,
        info_in_g=not args.baseline,
        seed=args.seed,
        device=device,
    )
    try:
        history = train(
            model,
            images,
            steps=args.steps,
            batch_size=args.batch_size,
            seed=args.seed,
            checkpoint=out / "checkpoint.npz",
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            progress=not args.no_progress,
        )
    except NonFiniteLossError as e:
        print(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        return 130
    seconds = history[-1].get("seconds", math.nan) if history else 0.0
    write_json(out / "history.json", history)

    result = evaluate(model, images, labels)
    info = [h["info_cat"] for h in history]
    summary = {
        "model": "gan" if args.baseline else "infogan",
        "accuracy": result["accuracy"],
        "info_cat_at_1000": float(np.mean(info[990:1000])) if len(info) >= 1000 else None,
        "info_cat_final": float(np.mean(info[-10:])),
        "info_cat_ceiling": spec.categorical_entropy,
        "evaluated_on": f"{args.dataset} {args.split} (the training images; labels unseen)",
        "train_seconds": seconds,
        "flags": {k: v for k, v in vars(args).items() if k != "compare"},
        "device": device,  # what "auto" resolved to
        **result,
    }
    write_json(out / "metrics.json", summary)
    paths = write_figures(model, history, result, out, args)
    print(
        f"accuracy {result['accuracy']:.4f}, L_I {summary['info_cat_final']:.3f} of "
        f"{spec.categorical_entropy:.3f} nats, {seconds:.0f} s"
    )
    print(
        "wrote", ", ".join(str(p) for p in [out / "metrics.json", out / "checkpoint.npz", *paths])
    )
    return 0


def write_figures(model: InfoGAN, history: list[dict], result: dict, out: Path, args) -> list[Path]:
    """The paper's Figure 2 (one grid per continuous code), Figure 1 (L_I), losses, samples,
    and the confusion matrix."""
    spec = model.spec
    label_of = result["category_to_label"]
    # rows in digit order: the category matched to label 0 first (unmatched categories last)
    order = sorted(range(spec.categorical[0]), key=lambda c: label_of.get(c, 99))
    row_names = [f"c={c} ({label_of[c]})" if c in label_of else f"c={c}" for c in order]
    values = np.linspace(-2, 2, 10)
    paths = []
    for j in range(spec.continuous):
        latent = sweep_latents(spec, j, order, values, np.random.default_rng(args.seed))
        grid = model.generate(latent).reshape(len(order), len(values), 28, 28)
        paths.append(
            viz.image_grid(
                out / f"figure2_code{j + 1}.png",
                grid,
                row_labels=row_names,
                col_labels=[f"{v:.1f}" for v in values],
                xlabel=f"continuous code c{j + 2} from -2 to 2",
                title=f"varying c{j + 2}, one row per category (matched digit)",
            )
        )
    steps = [h["step"] for h in history]
    series = {"InfoGAN" if model.info_in_g else "GAN": (steps, [h["info_cat"] for h in history])}
    if getattr(args, "compare", None):
        other = json.loads((Path(args.compare) / "history.json").read_text())
        series["GAN baseline"] = ([h["step"] for h in other], [h["info_cat"] for h in other])
    paths.append(
        viz.curves(
            out / "figure1_info.png",
            series,
            title="lower bound L_I of I(c; G(z, c))",
            ylabel="L_I (nats)",
            hlines={"H(c) = ln 10": spec.categorical_entropy},
        )
    )
    paths.append(
        viz.curves(
            out / "losses.png",
            {k: (steps, [h[k] for h in history]) for k in ("d_loss", "g_loss")},
            title="GAN losses",
            ylabel="loss",
        )
    )
    rng = np.random.default_rng(args.seed + 1)
    latent = spec.sample(len(order) * 10, rng)
    latent.categories[:, 0] = np.repeat(order, 10)
    samples = model.generate(latent).reshape(len(order), 10, 28, 28)
    paths.append(
        viz.image_grid(
            out / "samples.png",
            samples,
            row_labels=row_names,
            title="samples: one row per category",
        )
    )
    paths.append(
        viz.confusion(
            out / "confusion.png",
            np.array(result["confusion"]),
            title=f"accuracy {result['accuracy']:.3f}",
            xlabel="category of c1 (Q's argmax)",
            ylabel="true label",
        )
    )
    return paths
