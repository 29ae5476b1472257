"""The examples' shared run on parsed flags: the output folder made and locked, training as the
flags say (``fit``), the train-evaluate-plot run of every generative model but InfoGAN
(``run_generative``), and the files written.

This is the one place that asks the MPI rank: under ``mpiexec`` every rank computes and rank 0
(``is_main``) alone writes files and figures. The evaluation itself is ``tinygan.evaluation``'s,
on plain values; the flags are ``tinygan.cli``'s.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import cli, distributed, evaluation, viz
from .checkpoints import BestCheckpoint
from .serialization import atomic_path
from .train import exit_status, train


def is_main() -> bool:
    """Whether this process writes the run's files and figures: rank 0 under ``mpiexec``,
    where every rank computes; always in a plain process."""
    return distributed.is_main()


@contextlib.contextmanager
def make_out(args: argparse.Namespace) -> Iterator[Path]:
    """Create ``--out`` and hold its lock (``cli.lock_folder``) while the block runs; once it is
    held, the folder is checked again (``cli.check_out``: a run that started and ended while
    this one read its data has left its files there) and ``--overwrite`` removes the run files
    the folder holds (the rest of an old run, its
    figures, is overwritten as the new run writes its own). Under ``mpiexec`` only rank 0, the
    process that writes, takes the lock and removes files; a refusal is raised on every rank."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as lock:
        refusal = None
        if is_main():
            try:
                lock.enter_context(cli.lock_folder(out))
                cli.check_out(args)  # again: a run may have ended here since flags were read
            except (cli.UsageError, OSError) as e:
                refusal = e
        refusal = distributed.world().allgather(refusal, what="the lock of --out")[0]
        if refusal is not None:
            raise refusal
        if args.overwrite and is_main():
            for name in cli.found_run(out):
                (out / name).unlink(missing_ok=True)
        yield out


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (rank 0 only); the path."""
    if not is_main():
        return path
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    return path


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


def fit(
    model: Any,
    images: np.ndarray,
    args: argparse.Namespace,
    batch_size: int,
    data_name: str | None = None,
    best: BestCheckpoint | None = None,
) -> list | int:
    """Train with the shared loop as the flags say (checkpoint in ``--out``); the history, or
    the exit status if a signal stopped it (after saving): 130 for Ctrl-C, 143 for SIGTERM.
    ``data_name`` goes into the checkpoint beside the data's hash; ``best`` selects a state
    during training (``checkpoints.BestCheckpoint``). A run that diverges raises
    ``checkpoints.NonFiniteError`` (the last good checkpoint kept); ``cli.run`` reports it. A
    resumed run that trains on removes its old ``metrics.json`` at its first step: it no longer
    describes the run (the evaluation writes it again)."""
    old = [Path(args.out) / "metrics.json"] if is_main() else []

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
    except KeyboardInterrupt as e:  # after saving (train.Interrupted): 130 Ctrl-C, 143 SIGTERM
        return exit_status(e)


def evaluate_samples(
    model: Any, splits: evaluation.Splits, args: argparse.Namespace
) -> dict[str, Any]:
    """``evaluation.sample_scores`` of ``--eval-samples`` samples (drawn from ``--seed``), by
    the scoring classifier of ``--classifier`` (trained there first if missing)."""
    judge = evaluation.scoring_classifier(
        cli.classifier_path(args), splits, args.classifier_steps, write=is_main()
    )
    return evaluation.sample_scores(model, splits, judge, args.eval_samples, args.seed)


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
    returns further metrics (and may write figures, where ``is_main``). ``batch_size`` overrides
    the flag (WGAN takes ``n_critic`` batches per step).
    """
    cli.check_classifier(args)
    splits = evaluation.load_splits(args.dataset, args.split, args.data_dir)
    device = model.device
    tune_allocator()
    images = splits.train[0]
    batch_size = batch_size or args.batch_size
    cli.check_batch(batch_size, images, model)
    with make_out(args) as out:
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
        if is_main():
            write_figures(model, history, curves, name, args.seed, out)
        parzen = summary["parzen"]
        print(
            f"Parzen log-likelihood {parzen['mean']:.1f} +- {parzen['sem']:.1f} nats "
            f"(sigma {parzen['sigma']:.3f}), classifier score {summary['classifier_score']:.2f}"
        )
        print(f"wrote {out / 'metrics.json'}, figures and checkpoint in {out}")
        return 0


def write_figures(
    model: Any,
    history: list[dict[str, float]],
    curves: dict[str, tuple[str, ...]],
    name: str,
    seed: int,
    out: Path,
) -> None:
    """``run_generative``'s figures: one of curves per entry of ``curves``, and 100 samples
    (drawn from ``[seed, 3]``)."""
    steps = [h["step"] for h in history]
    for figure, keys in curves.items():
        viz.curves(out / f"{figure}.png", {k: (steps, [h[k] for h in history]) for k in keys},
                   title=f"{name}: {figure}", ylabel=", ".join(keys))  # fmt: skip
    samples = model.sample(100, np.random.default_rng([seed, 3]))
    viz.image_grid(out / "samples.png", samples.reshape(10, 10, 28, 28), title=f"{name} samples")
