"""The training loop's files: the checkpoint (the model's state, the step, the history and the
run's record), the resume rules that check a checkpoint continues the run at hand, and model
selection during training (``BestCheckpoint``).

A checkpoint is only ever replaced by a good one: the state (parameters, buffers, optimizer
moments) is checked for NaN and infinity before each write, and a run that blew up stops there,
keeping the last good file. A checkpoint also records what it was trained on (the seed, batch
size and a SHA-256 fingerprint of the data, the model's recipe), and resuming it with anything
else is refused. Nothing here asks the MPI rank: ``train`` says which process writes.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import arguments, backend
from .serialization import CheckpointError, load, save
from .tensor import Tensor

if TYPE_CHECKING:
    from .train import Trainable


@dataclass
class BestCheckpoint:
    """Model selection during training: keep the state with the best score so far.

    ``train`` calls ``score()`` every ``every`` steps and at the last step; when the value beats
    every earlier one (ties keep the earlier step), it checks the model's state for NaN and
    infinity and writes it atomically to ``path`` with ``select/step``, ``select/score`` and
    the run's record (``train/...``: seed, batch size, data fingerprint, recipe, as in a
    training checkpoint; ``tinygan.load`` reads it; ``model/...`` keys as there). ``load``
    gives the selected state back only if the file holds that step of this run. The scores so
    far are saved in the training checkpoint too, so a resumed run continues the same selection
    (a state saved after that checkpoint is either found again by the resumed run, which
    repeats those steps exactly, or replaced by a better one); a resume checks that ``path``
    holds the selected state, and writes it again where the checkpoint is at that step.

    Parameters
    ----------
    score : callable
        ``score() -> float``, higher is better: the model as it is now, e.g. a loss on
        validation data, negated. It must not change the model or use the training's random
        generators (the run then trains exactly as without selection).
    path : path
        The ``.npz`` file of the selected state.
    every : int
        Positive.

    Attributes
    ----------
    scores : list of (int, float)
        (step, score) of every evaluation so far, in order.
    run : dict
        The record of the run that selects (set by ``train``): written into ``path`` with the
        state, and checked by ``load`` (empty until ``train`` sets it: nothing is compared).
    """

    score: Callable[[], float]
    path: str | os.PathLike
    every: int
    scores: list[tuple[int, float]] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.every = arguments.integer(self.every, "every", 1)
        self.path = Path(self.path)

    @property
    def best(self) -> tuple[int, float] | None:
        """(step, score) of the selected state (the earliest of equal scores), or None."""
        return max(self.scores, key=lambda s: s[1]) if self.scores else None

    def load(self) -> dict[str, np.ndarray]:
        """The selected state from ``path``, keyed as the model's ``state_dict()``.

        Raises
        ------
        CheckpointError
            If nothing is selected yet, or ``path`` is missing, damaged, written by another run
            (another seed, batch size, data or recipe than ``run``) or holds another step.
        """
        if self.best is None:
            raise CheckpointError(f"nothing is selected yet (no scores): {self.path} is not read")
        step, state = _read_selected(self)
        if step != self.best[0]:
            raise CheckpointError(
                f"the selected state {self.path} holds step {step}, but the selection's scores "
                f"chose step {self.best[0]}; start the run again (in the examples: "
                "--overwrite), or resume it without selection (--select-every 0)"
            )
        return state


class NonFiniteError(FloatingPointError):
    """Training produced NaN or infinity; it stopped without saving the bad state."""


class NonFiniteLossError(NonFiniteError):
    """A metric (a loss) that ``train_step`` reported became NaN or infinite."""


class NonFiniteStateError(NonFiniteError):
    """A parameter, buffer or optimizer state became NaN or infinite (checked before a save)."""


def fingerprint(data: np.ndarray | tuple[np.ndarray, ...]) -> str:
    """SHA-256 (hex) of training data: each array's dtype, shape and bytes, in order."""
    digest = hashlib.sha256()
    for a in data if isinstance(data, tuple) else (data,):
        a = np.ascontiguousarray(backend.to_device(a, "cpu"))
        digest.update(f"{a.dtype.str} {a.shape};".encode())
        digest.update(a)
    return digest.hexdigest()


def non_finite(state: Mapping[str, Any]) -> list[str]:
    """The entries of ``state`` holding NaN or infinity, in order, each described as
    ``"'key' (3 of 1024 values, e.g. inf)"``.

    Values may be NumPy or CuPy arrays, Tensors, Python numbers or tuples of numbers (an
    optimizer's betas); integer, boolean and string values are always finite.
    """
    found = []
    for key, value in state.items():
        value = value.data if isinstance(value, Tensor) else value
        if isinstance(value, (tuple, list)):
            value = np.asarray(value)
        xp = backend.get_array_module(value)
        value = xp.asarray(value)
        if value.dtype.kind not in "fc":
            continue
        bad = ~xp.isfinite(value)
        count = int(bad.sum())
        if count:
            first = value[bad].ravel()[0].item()
            found.append(f"{key!r} ({count} of {value.size} values, e.g. {first})")
    return found


# ---- the checkpoint --------------------------------------------------------------------------
def save_checkpoint(
    model: Trainable,
    path: Path | None,
    step: int,
    history: list[dict[str, float]],
    run: dict[str, Any],
    saved: int | None,
    best: BestCheckpoint | None = None,
) -> None:
    """Check the model's state; write it with the run's record (and the selection's scores so
    far) to ``path`` (if not None)."""
    model_state = _finite_state(model, step, path, saved)
    if path is None:
        return
    keys = sorted({k for h in history for k in h})
    state = {f"model/{k}": v for k, v in model_state.items()}
    state.update(_record_entries(run))
    state["train/step"] = np.array(step)
    state["train/history_keys"] = np.array(keys)
    state["train/history"] = np.array(
        [[h.get(k, np.nan) for k in keys] for h in history], np.float64
    )
    if best is not None:
        state["train/selection"] = np.array(best.scores, np.float64).reshape(-1, 2)
        state["train/selection_every"] = np.array(best.every)
    try:
        save(state, path)
    except OSError as e:
        error = OSError(f"step {step}: could not write the checkpoint: {e}{kept(path, saved)}")
        error.errno = e.errno
        raise error from e


def kept(path: Path | None, saved: int | None) -> str:
    """What a stopped run leaves, for its error message."""
    if path is None:
        return ""
    if saved is None:
        return f"; this run wrote no checkpoint ({path} untouched)"
    return f"; the last good checkpoint, step {saved}, is kept in {path}"


def _finite_state(
    model: Trainable, step: int, path: Path | None, saved: int | None
) -> dict[str, Any]:
    """The model's state, checked to be finite (``NonFiniteStateError`` naming the first bad
    array, the step and what ``path`` keeps, if not)."""
    model_state = model.state_dict()
    bad = non_finite(model_state)
    if bad:
        more = f" and {len(bad) - 1} more arrays" if len(bad) > 1 else ""
        raise NonFiniteStateError(
            f"step {step}: the model's state is not finite: {bad[0]}{more}; training stopped, "
            "nothing saved" + kept(path, saved)
        )
    return model_state


_RECORD = ("seed", "batch_size", "examples", "recipe", "data", "data_sha256")
_DATA = ("data", "data_sha256")


def _record_entries(run: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A run's record as the ``train/...`` entries of a file."""
    return {f"train/{k}": np.array(v) for k, v in run.items()}


def _record(state: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The run's record that a file's ``state`` holds (the ``_RECORD`` entries it has)."""
    return {k: state[f"train/{k}"].item() for k in _RECORD if f"train/{k}" in state}


def _describe(run: Mapping[str, Any]) -> str:
    """The data a run trains on, as its name (if known) and the start of its SHA-256."""
    sha = f"sha256 {run['data_sha256'][:12]}" if "data_sha256" in run else "sha256 unknown"
    return f"{run['data']} ({sha})" if "data" in run else sha


def _differs(saved: Mapping[str, Any], run: Mapping[str, Any]) -> str | None:
    """Why the record ``saved`` of a file is not the record of ``run`` (entries that either
    lacks are not compared), or None if it is."""
    if any(saved[k] != run[k] for k in _DATA if k in saved and k in run):
        return f"it was trained on {_describe(saved)}, but this run's data is {_describe(run)}"
    settings = {k: v for k, v in saved.items() if k not in _DATA and k in run}
    now = {k: run[k] for k in settings}
    if settings != now:
        return f"it was written by a run with {settings}; this run has {now}"
    return None


# ---- resuming --------------------------------------------------------------------------------
def restore(
    model: Trainable, path: Path, run: dict[str, Any], steps: int
) -> tuple[int, list[dict[str, float]], tuple[int | None, list[tuple[int, float]]] | None]:
    """Load the checkpoint at ``path`` into ``model`` after checking that it continues ``run``
    (entries older checkpoints lack are not compared) and is not past ``steps``; its step,
    history and selection: its ``every`` (None in older checkpoints) and scores
    (``BestCheckpoint.scores``), or None if it has none."""
    advice = "start a new run instead (in the examples: --overwrite, or another --out)"
    try:
        state = load(path)
    except CheckpointError as e:
        raise CheckpointError(f"cannot resume: {e}; {advice}") from None
    missing = [k for k in ("train/step", "train/history", "train/history_keys") if k not in state]
    if missing:
        raise CheckpointError(
            f"cannot resume from {path}: not a training checkpoint (no {', '.join(missing)}); "
            + advice
        )
    why = _differs(_record(state), run)
    if why:
        raise CheckpointError(
            f"cannot resume from {path}: {why}; resume it with the same seed, batch size, data "
            f"and model settings, or {advice}"
        )
    step = int(state["train/step"])
    if step > steps:
        raise CheckpointError(
            f"cannot resume from {path}: it is at step {step}, after the last step asked for "
            f"({steps}); ask for {step} steps or more (in the examples: --steps {step}), or "
            f"{advice}"
        )
    try:
        model.load_state_dict(
            {k[len("model/") :]: v for k, v in state.items() if k.startswith("model/")}
        )
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        why = " ".join(str(e).split())  # one line
        raise CheckpointError(
            f"cannot resume from {path}: it does not fit this model ({why}); {advice}"
        ) from None
    keys = [str(k) for k in state["train/history_keys"]]
    history = [dict(zip(keys, map(float, row))) for row in state["train/history"]]
    rows, every = state.get("train/selection"), state.get("train/selection_every")
    scores = None if rows is None else [(int(a), float(b)) for a, b in rows]
    every = None if every is None else int(every)
    return step, history, None if scores is None else (every, scores)


def resume_selection(
    model: Trainable,
    best: BestCheckpoint,
    selection: tuple[int | None, list[tuple[int, float]]] | None,
    path: Path,
    start: int,
    steps: int,
    write: bool,
) -> None:
    """Continue the selection that the checkpoint ``path`` (at step ``start``, loaded into
    ``model``) holds, ``(every, scores)``: check that it scored every ``best.every`` steps,
    restore its scores into ``best`` and check that ``best.path`` holds the selected state of
    this run, or a later one that the resumed run, ``steps`` long, reaches again. If not, the
    state is written again from the model (if ``write``) where the checkpoint is at the
    selected step; otherwise ``CheckpointError`` says what to do."""
    advice = (
        "start the run again (in the examples: --overwrite), or resume it without selection "
        "(--select-every 0)"
    )
    if selection is None:
        raise CheckpointError(
            f"cannot resume the selection: {path} (step {start}) was written by a run without "
            f"one, so steps 1-{start} were never scored; {advice}"
        )
    every, scores = selection
    if every not in (None, best.every):
        raise CheckpointError(
            f"cannot resume the selection: {path} scored it every {every} steps, not every "
            f"{best.every}; resume it with the same interval (in the examples: --select-every "
            f"{every}), or {advice}"
        )
    best.scores = scores
    if best.best is None:
        return
    step, score = best.best
    try:
        held, _ = _read_selected(best)
        reached = held == step or start < held <= steps  # (a later state is found again)
        problem = None if reached else f"{best.path} holds step {held}"
    except CheckpointError as e:
        problem = str(e)
    if problem is None:
        return
    if step != start:
        raise CheckpointError(
            f"cannot resume the selection: {problem}; the selection chose step {step} and the "
            f"checkpoint {path} is at step {start}, so that state is lost; {advice}"
        )
    if write:  # the checkpoint holds the selected state: write it again
        _save_selected(best, _finite_state(model, step, path, start), step, score)


def _read_selected(best: BestCheckpoint) -> tuple[int, dict[str, np.ndarray]]:
    """The step and model state that ``best.path`` holds, checked to be written by the run
    ``best.run`` (``CheckpointError`` saying why not)."""
    what = f"the selected state {best.path}"
    try:
        state = load(best.path)
    except FileNotFoundError:
        raise CheckpointError(f"{what} is missing") from None
    except (OSError, CheckpointError) as e:
        raise CheckpointError(f"{what} cannot be read ({e})") from None
    saved = _record(state)  # none at all: written before files carried it; not compared
    missing = [k for k in best.run if k not in saved] if saved else []
    if "select/step" not in state or missing:
        lacks = ", ".join(f"train/{k}" for k in missing) or "select/step"
        raise CheckpointError(f"{what} is not a selected state of this run (it has no {lacks})")
    why = _differs(saved, best.run)
    if why:
        raise CheckpointError(f"{what} is another run's: {why}")
    model_state = {k[len("model/") :]: v for k, v in state.items() if k.startswith("model/")}
    return int(state["select/step"]), model_state


# ---- selecting -------------------------------------------------------------------------------
def select(
    model: Trainable,
    best: BestCheckpoint,
    step: int,
    write: bool,
    path: Path | None,
    saved: int | None,
) -> None:
    """Score the model at ``step``; if it beats every earlier score, check its state and (if
    ``write``) save it to ``best.path``. ``path`` and ``saved`` (the training checkpoint and
    its last good step) are named in the errors."""
    value = float(best.score())
    if not math.isfinite(value):
        raise NonFiniteLossError(
            f"step {step}: the selection score is {value}, training stopped" + kept(path, saved)
        )
    previous = best.best
    best.scores.append((step, value))
    if previous is not None and value <= previous[1]:
        return
    model_state = _finite_state(model, step, path, saved)
    if write:
        _save_selected(best, model_state, step, value)


def _save_selected(
    best: BestCheckpoint, model_state: Mapping[str, Any], step: int, score: float
) -> None:
    """Write the selected state of ``step`` to ``best.path`` with its score and the run's
    record."""
    state = {f"model/{k}": v for k, v in model_state.items()}
    state.update(_record_entries(best.run))
    state.update({"select/step": np.array(step), "select/score": np.array(score)})
    save(state, best.path)
