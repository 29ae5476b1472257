"""The one training loop every example uses: batches, progress bar, checkpoints, resume.

A model is anything with ``train_step(batch, rng) -> dict[str, float]``, ``state_dict()`` and
``load_state_dict(state)``. Randomness is a function of (seed, step) alone — the batch order of
each epoch and the generator passed to ``train_step`` — so a run resumed from a checkpoint
continues exactly as if it had never stopped, and one seed gives one run.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from .data import batches
from .serialization import load, save


class Trainable(Protocol):
    def train_step(self, batch: Any, rng: np.random.Generator) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; training stopped without saving the bad state."""


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
) -> list[dict[str, float]]:
    """Train ``model`` for ``steps`` steps of ``batch_size`` examples from ``data``.

    Parameters
    ----------
    model : Trainable
    data : np.ndarray, shape (N, ...), or a tuple of them
        The training examples; batches are ``data[indices]``, or for a tuple (e.g. images and
        labels, all of length N) the tuple ``(a[indices] for a in data)``.
    steps, batch_size, seed : int
    checkpoint : path, optional
        ``.npz`` file written atomically every ``checkpoint_every`` steps, at the end, and on
        Ctrl-C. It holds the model's state, the step, the history, and the seed, batch size and
        data size (a resume with other values is refused).
    resume : bool
        Continue from ``checkpoint`` if it exists.
    on_step : callable, optional
        Called as ``on_step(step, metrics)`` after every step (step counts from 1).

    Ctrl-C lets the current step finish, writes the checkpoint, then raises KeyboardInterrupt
    (press it twice to stop at once, without saving).

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
    """
    for name, value in (
        ("steps", steps),
        ("batch_size", batch_size),
        ("checkpoint_every", checkpoint_every),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    arrays = data if isinstance(data, tuple) else (data,)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"the data arrays differ in length: {[len(a) for a in arrays]}")
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the data ({n} examples)")
    path = Path(checkpoint) if checkpoint is not None else None
    run = {"seed": seed, "batch_size": batch_size, "examples": n}
    start, history = 0, []
    if resume and path is not None and path.exists():
        start, history = _restore(model, path, run)
    bar = tqdm(total=steps, initial=start, disable=not progress, dynamic_ncols=True)
    step = start
    clock = time.perf_counter() - (history[-1].get("seconds", math.nan) if history else 0.0)
    try:
        with _deferred_interrupt() as interrupted:
            while step < steps:
                index = batch_indices(n, batch_size, seed, step)
                batch = tuple(a[index] for a in data) if isinstance(data, tuple) else data[index]
                metrics = model.train_step(batch, step_rng(seed, step))
                bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
                if bad:
                    where = f"; the last good checkpoint is {path}" if path is not None else ""
                    raise NonFiniteLossError(
                        f"step {step + 1}: non-finite {bad}, training stopped{where}"
                    )
                step += 1
                history.append(
                    {"step": float(step), "seconds": time.perf_counter() - clock, **metrics}
                )
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in metrics.items()}, refresh=False)
                if on_step is not None:
                    on_step(step, metrics)
                if path is not None and (
                    step % checkpoint_every == 0 or step == steps or interrupted
                ):
                    _checkpoint(model, path, step, history, run)
                if interrupted:
                    if path is not None:
                        print(f"\ninterrupted: saved step {step} to {path}; continue with resume")
                    raise KeyboardInterrupt
    finally:
        bar.close()
    return history


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[list[bool]]:
    """Let a Ctrl-C finish the step in progress: the first SIGINT only sets a flag (the loop
    saves a consistent checkpoint and stops after the step); a second one interrupts at once.
    Outside the main thread signals cannot be caught, and nothing changes."""
    flag: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag:
            raise KeyboardInterrupt
        flag.append(True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _checkpoint(
    model: Trainable, path: Path, step: int, history: list[dict[str, float]], run: dict[str, int]
) -> None:
    keys = sorted({k for h in history for k in h})
    state = {f"model/{k}": v for k, v in model.state_dict().items()}
    state.update({f"train/{k}": np.array(v) for k, v in run.items()})
    state["train/step"] = np.array(step)
    state["train/history_keys"] = np.array(keys)
    state["train/history"] = np.array(
        [[h.get(k, np.nan) for k in keys] for h in history], np.float64
    )
    save(state, path)


def _restore(
    model: Trainable, path: Path, run: dict[str, int]
) -> tuple[int, list[dict[str, float]]]:
    state = load(path)
    saved = {k: int(state[f"train/{k}"]) for k in run if f"train/{k}" in state}
    if saved != {k: run[k] for k in saved}:  # (checkpoints of older versions lack these)
        raise ValueError(
            f"{path} was written by a run with {saved}; resuming it with {run} would not "
            "continue that run (use the same seed, batch size and data, or a new checkpoint)"
        )
    model.load_state_dict(
        {k[len("model/") :]: v for k, v in state.items() if k.startswith("model/")}
    )
    keys = [str(k) for k in state["train/history_keys"]]
    history = [dict(zip(keys, map(float, row))) for row in state["train/history"]]
    return int(state["train/step"]), history
