"""The evaluation protocol every example shares, on plain values: which images train, validate
and test (``load_splits``), how a generator's samples are scored (``sample_scores``: the GAN
paper's Parzen-window log-likelihood and the classifier score, by ``scoring_classifier``), how
InfoGAN's categorical code is scored against the labels (``code_accuracy``, Hungarian matching),
and how learned features are scored (``linear_probe``, ``probe``, ``feature_scores``).

Nothing here reads flags or asks the MPI rank: ``tinygan.runner`` calls it with the flags'
values and says whether to write.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import data, metrics, nn
from .models.classifier import Classifier, mnist_cnn
from .serialization import load, save
from .train import train


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


def code_accuracy(model: Any, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Unsupervised accuracy of InfoGAN's first categorical code: Q's argmax on real images
    (``model.predict_codes``), matched one-to-one to the labels (Hungarian), with the confusion
    matrix (rows: labels)."""
    predicted = model.predict_codes(images)[:, 0]
    accuracy, mapping, confusion = metrics.cluster_accuracy(labels, predicted)
    return {
        "accuracy": accuracy,
        "category_to_label": {int(k): int(v) for k, v in mapping.items()},
        "confusion": confusion.tolist(),
    }


def scoring_classifier(
    path: str | os.PathLike, splits: Splits, steps: int = 3000, seed: int = 0, *, write: bool = True
) -> Classifier:
    """The MNIST CNN that scores samples: loaded from ``path``, or trained on the training
    images (labels used: it is the judge, not a model under test) and, if ``write``, saved
    there (under ``mpiexec`` every rank trains it and rank 0 writes it)."""
    path = Path(path)
    if path.exists():
        return load_scoring_classifier(path, seed)
    model = Classifier(mnist_cnn(np.random.default_rng(seed)))
    print(f"training the scoring classifier into {path}")
    train(model, splits.train, steps=steps, batch_size=64, seed=seed, progress=False)
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        save(model.state_dict(), path)
    return model


def load_scoring_classifier(path: str | os.PathLike, seed: int = 0) -> Classifier:
    """The scoring classifier saved at ``path`` (``ValueError``, ``KeyError`` or
    ``RuntimeError`` if the file does not hold one)."""
    model = Classifier(mnist_cnn(np.random.default_rng(seed)))
    model.load_state_dict(load(path))
    return model


def sample_scores(
    model: Any, splits: Splits, judge: Classifier, n_samples: int, seed: int
) -> dict[str, Any]:
    """The numbers every generator is compared on, from ``n_samples`` samples of
    ``model.sample`` (images (N, 1, 28, 28) in [0, 1], drawn from ``[seed, 2]``): the GAN
    paper's Parzen-window log-likelihood of the test images (sigma chosen on the validation
    images), and the classifier score of ``judge`` (the scoring classifier), with its accuracy
    on the test images and the samples' class counts."""
    samples = model.sample(n_samples, np.random.default_rng([seed, 2]))
    parzen = metrics.parzen_log_likelihood(samples, splits.validation[0], splits.test[0])
    probs = judge.predict_proba(samples)
    return {
        "parzen": parzen,
        "classifier_score": metrics.classifier_score(probs),
        "classifier_test_accuracy": judge.accuracy(*splits.test),
        "sample_class_counts": np.bincount(probs.argmax(1), minlength=probs.shape[1]).tolist(),
    }


def linear_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> float:
    """Test accuracy of a softmax regression trained on frozen features.

    Features are standardised with the training set's mean and standard deviation, then a
    ``Linear(D, n_classes)`` layer is trained with Adam on cross-entropy.

    Parameters
    ----------
    train_features : np.ndarray, shape (N, D)
    train_labels : np.ndarray, int, shape (N,)
    test_features : np.ndarray, shape (M, D)
    test_labels : np.ndarray, int, shape (M,)

    Returns
    -------
    float
        Accuracy on the test features.
    """
    a, b = np.asarray(train_features), np.asarray(test_features)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"features must be (N, D) and (M, D) with the same D; got {a.shape} and {b.shape}"
        )
    if len(train_labels) != len(a) or len(test_labels) != len(b):
        raise ValueError(
            f"{len(train_labels)} and {len(test_labels)} labels for {len(a)} and {len(b)} rows"
        )
    mean, std = a.mean(0), a.std(0) + 1e-6
    a, b = ((a - mean) / std).astype(np.float32), ((b - mean) / std).astype(np.float32)
    n_classes = int(max(train_labels.max(), test_labels.max())) + 1
    probe = Classifier(
        nn.Linear(a.shape[1], n_classes, rng=np.random.default_rng(seed)),
        lr=lr,
        weight_decay=weight_decay,
    )
    train(
        probe,
        (a, train_labels.astype(np.int64)),
        steps=steps,
        batch_size=min(batch_size, len(a)),
        seed=seed,
        progress=False,
    )
    return probe.accuracy(b, test_labels)


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
