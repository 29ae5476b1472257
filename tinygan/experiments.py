"""What the example scripts share: flags, data splits, device, the train-evaluate-plot run of
every generative model (Parzen log-likelihood, classifier score) and InfoGAN's figures.

The scripts in ``examples/`` only parse flags and call into here, so every piece lives in the
library once: models in ``tinygan.models``, the loop in ``tinygan.train``, metrics in
``tinygan.metrics``, figures in ``tinygan.viz``, the command line's rules in ``tinygan.cli``.
Every flag is checked before data is read or a folder created.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from . import backend, cli, data, distributed, metrics, viz
from .models.classifier import Classifier, linear_probe, mnist_cnn
from .models.infogan import InfoGAN, LatentSpec, sweep_latents
from .models.vae import binarize
from .serialization import CheckpointError, atomic_path, load, save
from .train import BestCheckpoint, train


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """``--dataset``, ``--split`` and ``--data-dir``: which images, from where."""
    add = parser.add_argument
    add("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    add(
        "--split",
        choices=["train", "test"],
        default="train",
        help="which split to train on (offline here only MNIST's test split exists: use test)",
    )
    add(
        "--data-dir",
        type=cli.folder,
        default=None,
        help="folder with the IDX files (default: $TINYGAN_DATA, cache)",
    )


def add_common_flags(parser: argparse.ArgumentParser, *, out: str) -> None:
    """Flags every MNIST example that trains with ``fit`` takes (the paper's defaults)."""
    add_data_flags(parser)
    add = parser.add_argument
    add("--steps", type=cli.integer(1), default=5000)
    add("--batch-size", type=cli.integer(1), default=128)
    add("--seed", type=cli.integer(0), default=0)
    add("--device", choices=["cpu", "cuda", "auto"], default="auto")
    cli.add_out_flags(parser, out)
    add("--checkpoint-every", type=cli.integer(1), default=500)
    add("--no-progress", action="store_true", help="no progress bar")
    add(
        "--eval-samples",
        type=cli.integer(1),
        default=10000,
        help="samples drawn for the Parzen log-likelihood and the classifier score",
    )
    add(
        "--classifier",
        default=None,
        help="the scoring classifier's weights (default "
        "runs/<dataset>_<split>_classifier_<steps>.npz; trained on the training images and "
        "saved there if missing)",
    )
    add(
        "--classifier-steps",
        type=cli.integer(1),
        default=3000,
        help="training steps of that classifier",
    )


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
    """``auto`` is cuda where CuPy sees a GPU, else cpu; ``cuda`` without one is a
    ``cli.CommandError`` that says why."""
    if name == "auto":
        return "cuda" if backend.cuda_available() else "cpu"
    try:
        return backend.check_device(name)
    except RuntimeError as e:
        raise cli.CommandError(f"{e}; run with --device cpu (or auto)") from e


def load_images(
    dataset: str, split: str, data_dir: str | os.PathLike | None
) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 (N, 1, 28, 28) in [0, 1], and int64 labels (N,)."""
    loader = data.load_mnist if dataset == "mnist" else data.load_fashion_mnist
    images, labels = loader(split, root=data_dir)
    return (images.astype(np.float32) / 255)[:, None], labels


@dataclass(frozen=True)
class Splits:
    """Disjoint training, validation and test sets: (images, labels) each, and how they were cut."""

    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    description: str
    train_name: str = ""  # the training images alone, e.g. "mnist test[:8000]"


def load_splits(
    dataset: str, split: str, data_dir: str | os.PathLike | None, validation: int = 1000
) -> Splits:
    """The evaluation protocol every example shares: models train on ``train`` only.

    ``split="train"``: the train split without its last ``validation`` images (those are the
    validation set); the test split is the test set. ``split="test"`` (offline MNIST, where only
    the 10,000 test images exist): its first N - 2 * ``validation`` images train, the next
    ``validation`` validate, the last ``validation`` test.
    """
    images, labels = load_images(dataset, split, data_dir)
    n = len(images)
    held = validation if split == "train" else 2 * validation
    if not (validation > 0 and held < n):
        raise ValueError(f"validation={validation} leaves no training images out of {n}")
    cut = n - held
    val = slice(cut, cut + validation)
    if split == "train":
        test = load_images(dataset, "test", data_dir)
        where = f"{dataset} train[:{cut}] / train[{cut}:] / test"
    else:
        test = images[cut + validation :], labels[cut + validation :]
        end = cut + validation
        where = f"{dataset} test[:{cut}] / test[{cut}:{end}] / test[{end}:]"
    return Splits(
        train=(images[:cut], labels[:cut]),
        validation=(images[val], labels[val]),
        test=test,
        description=f"train / validation / test = {where}",
        train_name=f"{dataset} {split}[:{cut}]",
    )


def write_json(path: Path, obj: Any) -> Path:
    if not distributed.is_main():  # under mpiexec every rank computes, rank 0 writes
        return path
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


def fit(
    model: Any,
    images: np.ndarray,
    args: argparse.Namespace,
    batch_size: int,
    data_name: str | None = None,
    best: BestCheckpoint | None = None,
) -> list | int:
    """Train with the shared loop as the flags say (checkpoint in ``--out``); the history, or
    130 if Ctrl-C stopped it (after saving). ``data_name`` goes into the checkpoint beside the
    data's hash; ``best`` selects a state during training (``train.BestCheckpoint``). A run that
    diverges raises ``train.NonFiniteError`` (the last good checkpoint kept); ``cli.run``
    reports it. A resumed run that trains on removes its old ``metrics.json`` at its first
    step: it no longer describes the run (the evaluation writes it again)."""
    old = [Path(args.out) / "metrics.json"] if distributed.is_main() else []

    def moved_on(step: int, metrics: dict[str, float]) -> None:
        while old:
            old.pop().unlink(missing_ok=True)

    try:
        return train(
            model,
            images,
            steps=args.steps,
            batch_size=batch_size,
            seed=args.seed,
            checkpoint=Path(args.out) / "checkpoint.npz",
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            progress=not args.no_progress,
            data_name=data_name,
            best=best,
            on_step=moved_on,
        )
    except KeyboardInterrupt:
        return 130


def check_batch(batch_size: int, images: np.ndarray, model: Any = None) -> None:
    """A batch must fit in the training images, and under ``mpiexec`` give every rank a row of
    each of the chunks ``model`` takes it in (``cli.UsageError`` if not)."""
    if batch_size > len(images):
        raise cli.UsageError(
            f"a batch of {batch_size} images does not fit in the {len(images)} training "
            "images; lower --batch-size"
        )
    try:
        distributed.check_batch(model, batch_size)
    except ValueError as e:
        raise cli.UsageError(f"--batch-size: {e}") from None


def check_classifier(args: argparse.Namespace) -> None:
    """Before any training: the scoring classifier's file (``classifier_path``) loads into the
    classifier if it exists (else ``CheckpointError``), or its folder can be written."""
    path = Path(classifier_path(args))
    if path.is_dir():
        raise cli.UsageError(f"--classifier {path} is a folder; name a .npz file")
    if not path.exists():
        cli.writable(path.parent, "--classifier's folder")
        return
    try:
        Classifier(mnist_cnn(np.random.default_rng(0))).load_state_dict(load(path))
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(
            f"the scoring classifier {path} cannot be used ({' '.join(str(e).split())}); "
            "remove it to train a new one there, or pass another --classifier"
        ) from None


def scoring_classifier(
    path: str | Path, splits: Splits, steps: int = 3000, seed: int = 0
) -> Classifier:
    """The MNIST CNN that scores samples: loaded from ``path``, or trained on the training
    images (labels used: it is the judge, not a model under test) and saved there."""
    model = Classifier(mnist_cnn(np.random.default_rng(seed)))
    path = Path(path)
    if path.exists():
        model.load_state_dict(load(path))
        return model
    print(f"training the scoring classifier into {path}")
    train(model, splits.train, steps=steps, batch_size=64, seed=seed, progress=False)
    if distributed.is_main():
        path.parent.mkdir(parents=True, exist_ok=True)
        save(model.state_dict(), path)
    return model


def classifier_path(args: argparse.Namespace) -> str:
    """``--classifier``, or a default named by everything the judge's training depends on
    (dataset, split, steps), so that a judge trained on other images is never reused."""
    default = f"runs/{args.dataset}_{args.split}_classifier_{args.classifier_steps}.npz"
    return args.classifier or default


def evaluate_samples(model: Any, splits: Splits, args: argparse.Namespace) -> dict[str, Any]:
    """The numbers every generator is compared on, from ``--eval-samples`` samples (in [0, 1]):
    the GAN paper's Parzen-window log-likelihood of the test images (sigma chosen on the
    validation images) and the classifier score."""
    samples = model.sample(args.eval_samples, np.random.default_rng([args.seed, 2]))
    parzen = metrics.parzen_log_likelihood(samples, splits.validation[0], splits.test[0])
    judge = scoring_classifier(classifier_path(args), splits, args.classifier_steps)
    probs = judge.predict_proba(samples)
    return {
        "parzen": parzen,
        "classifier_score": metrics.classifier_score(probs),
        "classifier_test_accuracy": judge.accuracy(*splits.test),
        "sample_class_counts": np.bincount(probs.argmax(1), minlength=probs.shape[1]).tolist(),
    }


def probe(encode: Any, splits: Splits, seed: int = 0) -> float:
    """Linear-probe accuracy of learned features: a softmax regression on ``encode(images)`` of
    the training images (with their labels), scored on the test images."""
    (xa, ya), (xb, yb) = splits.train, splits.test
    return linear_probe(encode(xa).reshape(len(xa), -1), ya, encode(xb).reshape(len(xb), -1), yb,
                        seed=seed)  # fmt: skip


def feature_scores(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    n_labelled: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """How much of the labels learned features hold, with few labels or none.

    - Linear probe: ``linear_probe`` (a softmax regression on standardised features) trained on
      ``n_labelled`` training rows with their labels, a class-balanced subset: the rows in a
      seeded random order, taken round-robin over the classes, so every class gets
      ``n_labelled // k`` or one more (fewer only if it has fewer rows); scored on the test rows.
    - k-means: ``metrics.kmeans`` with k = the number of classes on the test features as given
      (not standardised: the representation's own geometry), then ``metrics.cluster_accuracy``
      (clusters matched one-to-one to labels, Hungarian).

    Parameters
    ----------
    train_features : np.ndarray, shape (N, D)
    train_labels : np.ndarray, int, shape (N,)
        Labels 0 .. k-1; only those of the chosen subset are used.
    test_features : np.ndarray, shape (M, D)
    test_labels : np.ndarray, int, shape (M,)
    n_labelled : int
        Size of the labelled subset, k <= n_labelled <= N.
    seed : int
        Draws the subset, the probe's initialisation and batches, and k-means' initial centres.

    Returns
    -------
    dict
        ``dims`` (D), ``labelled_per_class`` (list of k counts), ``probe_accuracy`` and
        ``kmeans_accuracy`` (fractions of the test rows).
    """
    pairs = {"train": (train_features, train_labels), "test": (test_features, test_labels)}
    for name, (f, y) in pairs.items():
        if not (isinstance(f, np.ndarray) and f.ndim == 2):
            raise ValueError(f"{name}_features must be a 2-D np.ndarray; got shape {np.shape(f)}")
        if not (isinstance(y, np.ndarray) and np.issubdtype(y.dtype, np.integer)):
            raise TypeError(f"{name}_labels must be an int np.ndarray; got {type(y).__name__} "
                            f"of dtype {np.asarray(y).dtype}")  # fmt: skip
        if y.shape != (len(f),):
            raise ValueError(f"{name}_labels has shape {y.shape}; expected ({len(f)},)")
    k = int(np.unique(train_labels).size)
    if not (isinstance(n_labelled, int) and k <= n_labelled <= len(train_features)):
        raise ValueError(
            f"n_labelled must be an int from {k} (one per class) to {len(train_features)} "
            f"(the training rows); got {n_labelled!r}"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train_labels))
    rank = np.empty(len(order), np.int64)  # of each row in ``order`` among its class's rows
    for c in np.unique(train_labels):
        rank[train_labels[order] == c] = np.arange(np.count_nonzero(train_labels == c))
    pick = order[np.argsort(rank, kind="stable")[:n_labelled]]  # round-robin over the classes
    probe_accuracy = linear_probe(
        train_features[pick], train_labels[pick], test_features, test_labels, seed=seed
    )
    clusters = metrics.kmeans(test_features, k, rng=rng)[0]
    return {
        "dims": int(train_features.shape[1]),
        "labelled_per_class": np.unique(train_labels[pick], return_counts=True)[1].tolist(),
        "probe_accuracy": probe_accuracy,
        "kmeans_accuracy": metrics.cluster_accuracy(test_labels, clusters)[0],
    }


def run_generative(
    model: Any,
    args: argparse.Namespace,
    *,
    name: str,
    curves: dict[str, tuple[str, ...]],
    batch_size: int | None = None,
    extra: Any = None,
) -> int:
    """Train a generative model on the training images, evaluate it, write figures and
    ``metrics.json``: what every example but InfoGAN's runs.

    ``curves`` maps a figure name to the history keys it plots; ``extra(model, splits, out)``
    returns further metrics (and may write figures). ``batch_size`` overrides the flag (WGAN
    takes ``n_critic`` batches per step).
    """
    check_classifier(args)
    splits = load_splits(args.dataset, args.split, args.data_dir)
    device = model.device
    tune_allocator()
    images = splits.train[0]
    batch_size = batch_size or args.batch_size
    check_batch(batch_size, images, model)
    with cli.make_out(args) as out:
        print(
            f"{name}: {args.dataset} {args.split} ({len(images)} training images), "
            f"device {device}, {args.steps} steps, seed {args.seed}, writing to {out}"
        )
        history = fit(model, images, args, batch_size, splits.train_name)
        if isinstance(history, int):
            return history
        write_json(out / "history.json", history)
        summary: dict[str, Any] = {"model": name, **evaluate_samples(model, splits, args)}
        if extra is not None:
            summary.update(extra(model, splits, out))
        summary.update(
            splits=splits.description,
            train_seconds=history[-1]["seconds"] if history else 0.0,
            final={  # means over the last 50 steps
                k: float(np.mean([h[k] for h in history[-50:]]))
                for k in history[-1]
                if k not in ("step", "seconds")
            },
            flags=vars(args),
            device=device,
        )
        write_json(out / "metrics.json", summary)
        steps = [h["step"] for h in history]
        for figure, keys in curves.items():
            viz.curves(out / f"{figure}.png", {k: (steps, [h[k] for h in history]) for k in keys},
                       title=f"{name}: {figure}", ylabel=", ".join(keys))  # fmt: skip
        samples = model.sample(100, np.random.default_rng([args.seed, 3]))
        viz.image_grid(
            out / "samples.png", samples.reshape(10, 10, 28, 28), title=f"{name} samples"
        )
        parzen = summary["parzen"]
        print(
            f"Parzen log-likelihood {parzen['mean']:.1f} +- {parzen['sem']:.1f} nats "
            f"(sigma {parzen['sigma']:.3f}), classifier score {summary['classifier_score']:.2f}"
        )
        print(f"wrote {out / 'metrics.json'}, figures and checkpoint in {out}")
        return 0


def _rows(*arrays: np.ndarray) -> np.ndarray:
    """Interleave image batches (N, 1, H, W) as grid rows: a[0:10], b[0:10], a[10:20], ..."""
    n, h, w = len(arrays[0]) // 10, *arrays[0].shape[-2:]
    return np.stack([a.reshape(n, 10, h, w) for a in arrays], 1).reshape(-1, 10, h, w)


def bigan_report(model: Any, splits: Splits, out: Path) -> dict[str, Any]:
    """BiGAN's extras: linear-probe accuracy of E(x), reconstruction error of G(E(x)) on the
    test images, and a figure of test images above their reconstructions."""
    x = splits.test[0]
    rec = model.reconstruct(x)
    viz.image_grid(out / "reconstructions.png", _rows(x[:40], rec[:40]),
                   title="test images (odd rows) and G(E(x)) (even rows)")  # fmt: skip
    return {
        "linear_probe_accuracy": probe(model.encode, splits),
        "reconstruction_mse": float(np.mean((rec - x) ** 2)),
    }


def vae_report(model: Any, splits: Splits, out: Path) -> dict[str, Any]:
    """The VAE's extras: held-out ELBO and its terms (nats, test images binarised once with a
    fixed seed), an importance-sampled log-likelihood (k = 100), the linear probe on mu(x),
    reconstructions, and the 2-D latent manifold figure when the latent is 2-D."""
    x = splits.test[0]
    if model.binarize_data:  # once, so that both bounds score the same binary images
        x = binarize(x, np.random.default_rng(0))
    terms = model.elbo(x, np.random.default_rng(1))  # binarising 0/1 images again keeps them
    ll = model.log_likelihood(x, np.random.default_rng(2), k=100)
    report = {
        f"test_{k}": metrics.mean_sem(v) for k, v in {**terms, "log_likelihood_k100": ll}.items()
    }
    report["linear_probe_accuracy"] = probe(model.encode, splits)
    rec = model.decode(model.encode(x[:40]))
    viz.image_grid(out / "reconstructions.png", _rows(x[:40], rec),
                   title="test images (odd rows) and decoded mu(x) (even rows)")  # fmt: skip
    if model.latent_dim == 2:  # the paper's Figure 4: a grid of z through the Gaussian's CDF
        ppf = np.array([NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, 15)])
        z = np.stack(np.meshgrid(ppf, ppf[::-1]), -1).reshape(-1, 2)
        viz.image_grid(out / "manifold.png", model.decode(z).reshape(15, 15, 28, 28),
                       title="learned 2-D manifold: z on a grid of N(0, I) quantiles")  # fmt: skip
    return report


def baseline_history(run: Path) -> list[dict[str, float]]:
    """The history of a finished baseline run (``--compare``): its ``history.json``, which must
    be a list of steps with ``info_cat`` (``cli.UsageError`` if it is not)."""
    path = Path(run) / "history.json"
    try:
        history = json.loads(path.read_text())
        if not history or not all({"step", "info_cat"} <= set(h) for h in history):
            raise ValueError("not a list of steps with 'step' and 'info_cat'")
    except (OSError, ValueError, TypeError) as e:
        raise cli.UsageError(
            f"--compare {run}: {path} is not an InfoGAN or baseline history ({e})"
        ) from None
    return history


def run_infogan(args: argparse.Namespace) -> int:
    """Train InfoGAN (or the baseline) as the flags say; write figures, checkpoint, metrics.

    With ``--select-every K`` (K > 0) the state to report is also chosen without labels
    (``infogan_selection``): ``metrics.json`` then holds the final state's numbers at its top
    level and the selected state's under ``"selected"``, and ``selected/`` its figures."""
    device = pick_device(args.device)
    spec = LatentSpec()
    with cli.flag_errors():  # the model checks its options (e.g. --consistency) before any data
        model = InfoGAN(
            spec,
            lambda_cat=args.lambda_cat,
            lambda_cont=args.lambda_cont,
            info_in_g=not args.baseline,
            seed=args.seed,
            device=device,
            consistency=args.consistency,
            consistency_objective=args.consistency_objective,
        )
    if args.compare is not None:
        baseline_history(args.compare)
    check_classifier(args)
    tune_allocator()
    splits = load_splits(args.dataset, args.split, args.data_dir)
    images, labels = splits.train
    check_batch(args.batch_size, images, model)
    with cli.make_out(args) as out:
        name = "GAN baseline (Q trained, G not rewarded)" if args.baseline else "InfoGAN"
        if model.consistency:
            name += f" + consistency {model.consistency:g} ({model.consistency_objective})"
        print(
            f"{name}: {args.dataset} {args.split} ({len(images)} images), device {device}, "
            f"{args.steps} steps of batch {args.batch_size}, seed {args.seed}, writing to {out}"
        )
        best = infogan_selection(model, splits, args.select_every, args.seed, out)
        history = fit(model, images, args, args.batch_size, splits.train_name, best)
        if isinstance(history, int):
            return history
        seconds = history[-1].get("seconds", math.nan) if history else 0.0
        write_json(out / "history.json", history)

        result = evaluate(model, *splits.test)
        info = [h["info_cat"] for h in history]
        summary = {
            "model": "gan" if args.baseline else "infogan",
            "accuracy": result["accuracy"],
            "info_cat_at_1000": float(np.mean(info[990:1000])) if len(info) >= 1000 else None,
            "info_cat_final": float(np.mean(info[-10:])),
            "info_cat_ceiling": spec.categorical_entropy,
            "accuracy_on_training_images": evaluate(model, images, labels)["accuracy"],
            **evaluate_samples(model, splits, args),
            "splits": splits.description,
            "train_seconds": seconds,
            "flags": {k: v for k, v in vars(args).items() if k != "compare"},
            "device": device,  # what "auto" resolved to
            **result,
        }
        paths = write_figures(model, history, result, out, args)
        print(
            f"accuracy {result['accuracy']:.4f}, L_I {summary['info_cat_final']:.3f} of "
            f"{spec.categorical_entropy:.3f} nats, Parzen {summary['parzen']['mean']:.1f} nats, "
            f"{seconds:.0f} s"
        )
        if best is not None:  # last: it loads the selected state into the model
            summary.update(evaluate_selected(model, best, history, splits, args, out, summary))
            selected = summary["selected"]
            print(
                f"selected (label-free, step {selected['step']} of {args.steps}): accuracy "
                f"{selected['accuracy']:.4f}, Parzen {selected['parzen']['mean']:.1f} nats"
            )
            paths += [best.path, out / "selected"]
        write_json(out / "metrics.json", summary)
        print(
            "wrote",
            ", ".join(str(p) for p in [out / "metrics.json", out / "checkpoint.npz", *paths]),
        )
        return 0


def infogan_selection(
    model: InfoGAN, splits: Splits, every: int, seed: int, out: Path
) -> BestCheckpoint | None:
    """Label-free model selection for InfoGAN (None if ``every`` is 0): every ``every`` steps,
    IIC's mutual information between Q's categorical code on the validation images and on
    copies of them moved by the model's random affine maps (``model.augment``, drawn once from
    ``[seed, 4]``: every evaluation scores the same pairs). The labels are never read; the best
    state goes to ``out/best.npz``."""
    if not every:
        return None
    images = splits.validation[0]
    moved = model.augment(images, np.random.default_rng([seed, 4]))
    return BestCheckpoint(lambda: model.consistency_score(images, moved), out / "best.npz", every)


def evaluate_selected(
    model: InfoGAN,
    best: BestCheckpoint,
    history: list[dict],
    splits: Splits,
    args: argparse.Namespace,
    out: Path,
    final: dict[str, Any],
) -> dict[str, Any]:
    """Load the selected state (``best.load()``: this run's, of the selected step) into
    ``model`` and score it as the final one (test and training accuracy, L_I, Parzen, classifier
    score; figures in ``out/selected``): ``{"selection": how it was chosen, "selected": its
    numbers}``. Where the final state is the selected one, it is the model's own (``best.path``
    is not read) and ``final``'s numbers (the run's summary) are reused."""
    step, score = best.best
    if step != len(history):
        model.load_state_dict(best.load())
    result = evaluate(model, *splits.test)
    info = [h["info_cat"] for h in history[:step]]
    selected = {"step": step, "score": score, "info_cat": float(np.mean(info[-10:])), **result}
    same = ("accuracy_on_training_images", "parzen", "classifier_score",
            "classifier_test_accuracy", "sample_class_counts")  # fmt: skip
    if step == len(history):  # the final state: its numbers are already known
        selected.update({k: final[k] for k in same})
    else:
        selected["accuracy_on_training_images"] = evaluate(model, *splits.train)["accuracy"]
        selected.update(evaluate_samples(model, splits, args))
    write_figures(model, history, result, out / "selected", args)
    return {
        "selection": {
            "criterion": "IIC mutual information (nats) of Q's categorical code between the "
            "validation images and randomly moved copies; labels unused",
            "every": best.every,
            "scores": [list(s) for s in best.scores],
        },
        "selected": selected,
    }


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
    if args.compare is not None:
        other = baseline_history(args.compare)
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
