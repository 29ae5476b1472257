"""The one training loop every example uses: batches, progress bar, checkpoints, resume; and
the greedy layer-wise pretraining of a stack of autoencoders on it (``pretrain_stack``).

A model is anything with ``train_step(batch, rng) -> dict[str, float]``, ``state_dict()`` and
``load_state_dict(state)``. Randomness is a function of (seed, step) alone — the batch order of
each epoch and the generator passed to ``train_step`` — so a run resumed from a checkpoint
continues exactly as if it had never stopped, and one seed gives one run. The checkpoint's
records and the resume rules are ``tinygan.checkpoints``'.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from tqdm import tqdm

from . import arguments, checkpoints, distributed
from .checkpoints import BestCheckpoint, NonFiniteLossError
from .data import batches
from .serialization import load, remove_stale_temporaries

if TYPE_CHECKING:  # the loop itself knows no model
    from .models.autoencoder import Autoencoder


class Trainable(Protocol):
    """What ``train`` needs of a model. A model may also have ``recipe() -> dict``: the settings
    that shape its training but are not in its state (loss weights, options), JSON-able; a
    checkpoint records it, and resuming with another recipe is refused."""

    def train_step(self, batch: Any, rng: np.random.Generator) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Indices of the batch at ``step``: epochs of ``n // batch_size`` batches, each epoch
    shuffled by ``data.batches`` with a generator drawn from (seed, epoch)."""
    epoch, i = divmod(step, n // batch_size)
    epoch_batches = batches(n, batch_size, np.random.default_rng([seed, 0, epoch]))
    return next(itertools.islice(epoch_batches, i, None))


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The generator handed to ``train_step`` at ``step`` (latent samples, dropout...)."""
    return np.random.default_rng([seed, 1, step])


def train(
    model: Trainable,
    data: np.ndarray | tuple[np.ndarray, ...],
    *,
    steps: int,
    batch_size: int,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 500,
    resume: bool = False,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    data_name: str | None = None,
    best: BestCheckpoint | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` for ``steps`` steps of ``batch_size`` examples from ``data``.

    Parameters
    ----------
    model : Trainable
    data : np.ndarray, shape (N, ...), or a tuple of them
        The training examples; batches are ``data[indices]``, or for a tuple (e.g. images and
        labels, all of length N) the tuple ``(a[indices] for a in data)``.
    steps, batch_size : int
        Positive.
    seed : int
        Non-negative.
    checkpoint : path, optional
        ``.npz`` file written atomically every ``checkpoint_every`` steps, at the end, and on
        Ctrl-C or SIGTERM, once the model's state is checked to be finite. It holds that state,
        the step, the history, the seed, batch size and data size, the model's ``recipe()`` if
        it has one, and the data's fingerprint (SHA-256 and ``data_name``). Stale temporary
        files of killed writers beside it are removed at start.
    resume : bool
        Continue from ``checkpoint`` if it exists; one written with another seed, batch size,
        data or recipe, or past ``steps``, is refused.
    on_step : callable, optional
        Called as ``on_step(step, metrics)`` after every step (step counts from 1).
    data_name : str, optional
        What the data is (e.g. ``"mnist test[:8000]"``), stored beside its SHA-256 and named in
        a refused resume.
    best : BestCheckpoint, optional
        Score the model every ``best.every`` steps and at the end, and keep the best state in
        ``best.path``; its ``scores`` are restored on resume (from ``checkpoint``), and
        ``best.path`` is checked to hold the selected state (written again from the checkpoint
        when it is at the selected step).

    Ctrl-C (or SIGTERM) lets the current step finish, writes the checkpoint, then raises
    KeyboardInterrupt (press it twice to stop at once, without saving).

    Returns
    -------
    list of dict
        One entry per step: ``{"step": s, "seconds": wall time of the loop so far, **metrics}``
        (the resumed part included: the time counts every run that led to it, checkpoint writes
        and ``on_step`` calls too).

    Raises
    ------
    NonFiniteLossError
        If a metric becomes NaN or infinite; the last checkpoint written is kept.
    NonFiniteStateError
        If the model's state holds NaN or infinity when a checkpoint is due, or at the end; the
        message names the first such array and the step. The last good checkpoint is kept.
    CheckpointError
        If the checkpoint to resume is damaged, does not fit the model, was written by a run
        with another seed, batch size, data or recipe, or is past ``steps``; or if ``best``'s
        selected state cannot be resumed (another run's, missing or damaged, and not the
        checkpoint's step; or the checkpoint has no selection).
    OSError
        If a checkpoint cannot be written (disk full...): the last good one is kept.
    """
    steps = arguments.integer(steps, "steps", 1)
    batch_size = arguments.integer(batch_size, "batch_size", 1)
    seed = arguments.integer(seed, "seed", 0)
    checkpoint_every = arguments.integer(checkpoint_every, "checkpoint_every", 1)
    if data_name is not None and not isinstance(data_name, str):
        raise TypeError(f"data_name must be a str; got {type(data_name).__name__}")
    arrays = data if isinstance(data, tuple) else (data,)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"the data arrays differ in length: {[len(a) for a in arrays]}")
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the data ({n} examples)")
    path = Path(checkpoint) if checkpoint is not None else None
    run: dict[str, Any] = {"seed": seed, "batch_size": batch_size, "examples": n}
    if callable(getattr(model, "recipe", None)):
        run["recipe"] = json.dumps(model.recipe(), sort_keys=True, default=str)
    run["data_sha256"] = checkpoints.fingerprint(arrays)
    if data_name is not None:
        run["data"] = data_name
    if best is not None and not isinstance(best, BestCheckpoint):
        raise TypeError(f"best must be a BestCheckpoint; got {type(best).__name__}")
    if best is not None:
        best.run = run
    start, history, selection = 0, [], None
    resumed = resume and path is not None and path.exists()
    if resumed:
        start, history, selection = checkpoints.restore(model, path, run, steps)
    # a no-op in one process; under mpiexec the ranks must agree on the run's settings, and
    # rank 0 (parallel.is_main) alone writes
    settings = {**run, "steps": steps, "select_every": best.every if best else None}
    parallel = distributed.DataParallel(model, batch_size, start, settings=settings)
    if path is not None and parallel.is_main:  # (the writer's; pids are per machine)
        remove_stale_temporaries(path)
    if resumed and best is not None:
        checkpoints.resume_selection(model, best, selection, path, start, steps, parallel.is_main)
    saved = start if start else None  # the step of the last good checkpoint this run has
    show = progress and parallel.is_main
    bar = tqdm(total=steps, initial=start, disable=not show, dynamic_ncols=True)
    step = start
    clock = time.perf_counter() - (history[-1].get("seconds", math.nan) if history else 0.0)
    try:
        with _deferred_interrupt() as interrupted:
            while step < steps:
                # under mpiexec: this rank's rows of the batch, metrics over the whole batch
                index, rng = parallel.shard(batch_indices(n, batch_size, seed, step),
                                            step_rng(seed, step))  # fmt: skip
                batch = tuple(a[index] for a in data) if isinstance(data, tuple) else data[index]
                metrics = parallel.average(model.train_step(batch, rng))
                bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
                if bad:
                    raise NonFiniteLossError(
                        f"step {step + 1}: non-finite {bad}, training stopped"
                        + checkpoints.kept(path, saved)
                    )
                step += 1
                history.append(
                    {"step": float(step), "seconds": time.perf_counter() - clock, **metrics}
                )
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in metrics.items()}, refresh=False)
                if on_step is not None:
                    on_step(step, metrics)
                if best is not None and (step % best.every == 0 or step == steps):
                    checkpoints.select(model, best, step, parallel.is_main, path, saved)
                stop = parallel.any(bool(interrupted))  # a Ctrl-C seen by any rank stops all
                due = path is not None and (step % checkpoint_every == 0 or stop)
                if due or step == steps:  # every rank checks the state, rank 0 writes it
                    writes = path if parallel.is_main else None
                    checkpoints.save_checkpoint(model, writes, step, history, run, saved, best)
                    saved = step if path is not None else None
                if stop:
                    if path is not None and parallel.is_main:
                        print(f"\ninterrupted: saved step {step} to {path}; continue with resume")
                    raise Interrupted(interrupted[0] if interrupted else signal.SIGINT)
    finally:
        bar.close()
    return history


class Interrupted(KeyboardInterrupt):
    """Training stopped, after saving its checkpoint, because of the signal ``signum`` (SIGINT:
    Ctrl-C; SIGTERM: ``kill``, a scheduler ending the job). A command exits with
    ``128 + signum``, as the shell reports a process the signal ended."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} after saving")
        self.signum = int(signum)


def exit_status(interruption: KeyboardInterrupt) -> int:
    """The exit status of a command that ``interruption`` stopped: ``128 + signum`` for an
    ``Interrupted``, 130 (Ctrl-C) for a plain ``KeyboardInterrupt``."""
    return 128 + getattr(interruption, "signum", signal.SIGINT)


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[list[int]]:
    """Let a Ctrl-C or SIGTERM finish the step in progress: the first SIGINT or SIGTERM only
    records its number (the loop saves a consistent checkpoint and stops after the step); a
    second Ctrl-C interrupts at once, a repeated SIGTERM does not (a scheduler and mpiexec may
    both send one). Outside the main thread signals cannot be caught, and nothing changes."""
    flag: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.append(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)


# ---- stacks -----------------------------------------------------------------------------------
def pretrain_stack(
    layers: Sequence[Autoencoder],
    data: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    seed: int = 0,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
) -> list[list[dict[str, float]]]:
    """Greedy layer-wise pretraining: train ``layers[0]`` on ``data``, then each next layer on
    the (clean) codes of the trained one below, with ``tinygan.train.train``, in place.

    Fine-tune afterwards with ``train(stack_autoencoders(layers), data, ...)``.

    Parameters
    ----------
    layers : sequence of Autoencoder
        Layer i's encoder takes layer i-1's codes; each may be plain, sparse or denoising.
    data : np.ndarray, shape (N, ...)
    steps, batch_size : int
        Per layer.
    seed : int
        Layer i trains with seed ``seed + i``.
    checkpoint_dir : path, optional
        Checkpoints ``layer1.npz``, ``layer2.npz``, ... (see ``train``).
    resume : bool
        Continue each layer from its checkpoint (a finished layer is not trained again). The
        layers above one that trains further start over: their inputs, the codes below, changed.

    Returns
    -------
    list of histories, one per layer (``train``'s return value)
    """
    from .models.autoencoder import Autoencoder

    if not layers or not all(isinstance(layer, Autoencoder) for layer in layers):
        raise TypeError(f"layers must be a non-empty sequence of Autoencoder; got {layers!r}")
    histories, inputs, changed = [], data, False
    for i, layer in enumerate(layers):
        if i:
            inputs = layers[i - 1].encode(inputs)
        checkpoint = None if checkpoint_dir is None else Path(checkpoint_dir) / f"layer{i + 1}.npz"
        again = resume and not changed and checkpoint is not None and checkpoint.exists()
        done = int(load(checkpoint)["train/step"]) if again else 0
        history = train(
            layer,
            inputs,
            steps=steps,
            batch_size=batch_size,
            seed=seed + i,
            checkpoint=checkpoint,
            resume=again,
            progress=progress,
        )
        histories.append(history)
        changed = changed or len(history) > done  # this layer trained: the codes above change
    return histories
