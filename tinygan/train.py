"""The one training loop every example uses: batches, progress bar, checkpoints, resume.

A model is anything with ``train_step(batch, rng) -> dict[str, float]``, ``state_dict()`` and
``load_state_dict(state)``. Randomness is a function of (seed, step) alone — the batch order of
each epoch and the generator passed to ``train_step`` — so a run resumed from a checkpoint
continues exactly as if it had never stopped, and one seed gives one run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from .serialization import load, save


class Trainable(Protocol):
    def train_step(self, batch: np.ndarray, rng: np.random.Generator) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; training stopped without saving the bad state."""


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Indices of the batch at ``step``: epochs of ``n // batch_size`` batches, each epoch a
    permutation drawn from (seed, epoch)."""
    per_epoch = n // batch_size
    epoch, i = divmod(step, per_epoch)
    order = np.random.default_rng([seed, 0, epoch]).permutation(n)
    return order[i * batch_size : (i + 1) * batch_size]


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The generator handed to ``train_step`` at ``step`` (latent samples, dropout...)."""
    return np.random.default_rng([seed, 1, step])


def train(
    model: Trainable,
    data: np.ndarray,
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
    data : np.ndarray, shape (N, ...)
        The training examples; batches are ``data[indices]``.
    steps, batch_size, seed : int
    checkpoint : path, optional
        ``.npz`` file written atomically every ``checkpoint_every`` steps, at the end, and on
        Ctrl-C (then KeyboardInterrupt is re-raised). It holds the model's state, the step and
        the history.
    resume : bool
        Continue from ``checkpoint`` if it exists.
    on_step : callable, optional
        Called as ``on_step(step, metrics)`` after every step (step counts from 1).

    Returns
    -------
    list of dict
        One entry per step: ``{"step": s, **metrics}`` (the resumed part included).

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
    if batch_size > len(data):
        raise ValueError(f"batch_size {batch_size} is larger than the data ({len(data)} examples)")
    path = Path(checkpoint) if checkpoint is not None else None
    start, history = 0, []
    if resume and path is not None and path.exists():
        start, history = _restore(model, path)
    bar = tqdm(total=steps, initial=start, disable=not progress, dynamic_ncols=True)
    step = start
    try:
        while step < steps:
            batch = data[batch_indices(len(data), batch_size, seed, step)]
            metrics = model.train_step(batch, step_rng(seed, step))
            bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
            if bad:
                where = f"; the last good checkpoint is {path}" if path is not None else ""
                raise NonFiniteLossError(
                    f"step {step + 1}: non-finite {bad}, training stopped{where}"
                )
            step += 1
            history.append({"step": float(step), **metrics})
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in metrics.items()}, refresh=False)
            if on_step is not None:
                on_step(step, metrics)
            if path is not None and (step % checkpoint_every == 0 or step == steps):
                _checkpoint(model, path, step, history)
    except KeyboardInterrupt:
        if path is not None and step > start:
            _checkpoint(model, path, step, history)
            print(f"\ninterrupted: saved step {step} to {path}; continue with resume")
        raise
    finally:
        bar.close()
    return history


def _checkpoint(model: Trainable, path: Path, step: int, history: list[dict[str, float]]) -> None:
    keys = sorted({k for h in history for k in h})
    state = {f"model/{k}": v for k, v in model.state_dict().items()}
    state["train/step"] = np.array(step)
    state["train/history_keys"] = np.array(keys)
    state["train/history"] = np.array(
        [[h.get(k, np.nan) for k in keys] for h in history], np.float64
    )
    save(state, path)


def _restore(model: Trainable, path: Path) -> tuple[int, list[dict[str, float]]]:
    state = load(path)
    model.load_state_dict(
        {k[len("model/") :]: v for k, v in state.items() if k.startswith("model/")}
    )
    keys = [str(k) for k in state["train/history_keys"]]
    history = [dict(zip(keys, map(float, row))) for row in state["train/history"]]
    return int(state["train/step"]), history
