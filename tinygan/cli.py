"""The command line every example shares: flags checked as they are parsed (flag types, and the
flag groups of the examples), the output folder's rules, what the flags name (the device, the
batch, the scoring classifier), and errors a user can act on.

An example is written as::

    def main(argv: list[str] | None = None) -> int:
        parser = cli.parser(__doc__)
        parser.add_argument("--steps", type=cli.integer(1), default=100)
        cli.add_out_flags(parser, "runs/example")
        args = cli.parse(parser, argv)     # every flag checked; nothing read or created yet
        ...                                # load the data, then
        with runner.make_out(args) as out: # create --out and lock it while the run lasts
            ...                            # (emptied of an old run with --overwrite)


    if __name__ == "__main__":
        sys.exit(cli.run(main))

``run`` prints an expected error as one line ``error: ...`` on stderr, without a traceback, and
returns the exit status: 2 for a usage error (a bad flag, an ``--out`` that holds a run or
cannot be written), 1 for the rest (missing or damaged data, a damaged or mismatched checkpoint,
no GPU, a full disk, training that diverged), 130 for Ctrl-C. Any other exception is a bug and
keeps its traceback; ``TINYGAN_DEBUG=1`` shows the traceback of expected errors too.

Runs never overwrite runs: an ``--out`` holding a run's files (``RUN_FILES``) is refused unless
``--resume`` continues it or ``--overwrite`` replaces it, and an ``--out`` that a live run is
writing (its lock, ``LOCK_FILE``, which ``runner.make_out`` takes) is refused even then.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import arguments, backend, distributed, evaluation, kernels
from .checkpoints import NonFiniteError
from .data import DataError, DownloadError
from .serialization import CheckpointError
from .train import exit_status

RUN_FILES = ("checkpoint.npz", "best.npz", "history.json", "metrics.json", "layer*.npz")
LOCK_FILE = "run.lock"  # present while a run writes the folder (not a run's file)


class UsageError(Exception):
    """A bad command line: a flag's value, or flags that do not go together (exit status 2)."""


class CommandError(Exception):
    """An expected failure the command cannot recover from, e.g. no GPU (exit status 1)."""


EXPECTED = (CommandError, CheckpointError, DataError, DownloadError, NonFiniteError, OSError)
HINTS = {NonFiniteError: "training diverged: try smaller learning rates or loss weights"}


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors raise ``UsageError`` instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def parser(doc: str | None) -> ArgumentParser:
    """A parser described by an example's docstring (kept as written)."""
    return ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Call ``main(argv)``; an expected error becomes one ``error:`` line and an exit status.

    Under ``mpiexec`` the process's rank is set up first (``distributed.init``: rank 0 alone
    prints), and an error that every rank meets is printed once (``distributed.report_error``).
    """
    debug = os.environ.get("TINYGAN_DEBUG", "") not in ("", "0")
    try:
        try:
            distributed.init(quiet=True)
            kernels.compiled.available()
        except ValueError as e:  # a bad TINYGAN_DIST_TIMEOUT or TINYGAN_COMPILED
            raise UsageError(str(e)) from e
        return main(argv)
    except UsageError as e:
        if debug:
            raise
        return _report(e, 2)
    except EXPECTED as e:
        if debug:
            raise
        return _report(e, 1)
    except KeyboardInterrupt as e:  # 130 for Ctrl-C; train.Interrupted names its signal
        if debug:
            raise
        return _report(None, exit_status(e))


def _report(error: Exception | None, code: int) -> int:
    """Print ``error`` (None: an interruption) as one ``error:`` line, once for the whole job;
    return ``code``."""
    if error is None:
        line = "error: interrupted"
    else:
        message = " ".join(str(error).split()) or type(error).__name__  # one line
        hint = next((h for t, h in HINTS.items() if isinstance(error, t)), None)
        line = f"error: {message}" + (f" ({hint})" if hint else "")
    distributed.report_error(line, code)
    return code


# ---- flag types: each checks its value while argparse parses ---------------------------------
def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an int in [low, high] (``arguments.integer``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an int; got {text!r}") from None
        return _checked(arguments.integer, value, low, high)

    parse.__name__ = "int"
    return parse


def real(
    low: float = -float("inf"),
    high: float = float("inf"),
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], float]:
    """An argparse ``type``: a finite float in [low, high] (``arguments.real``; nan and inf are
    refused)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
        return _checked(arguments.real, value, low, high, low_open=low_open, high_open=high_open)

    parse.__name__ = "float"
    return parse


def _checked(check: Callable, value: object, *args: object, **kwargs: object):
    try:
        return check(value, "value", *args, **kwargs)
    except (TypeError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("value ")) from None


def folder(text: str) -> str:
    """An argparse ``type``: an existing folder (its name is kept as given)."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text} is not a folder" if path.exists() else f"no folder {text}"
        )
    return text


def run_folder(*required: str) -> Callable[[str], str]:
    """An argparse ``type``: an existing folder holding the files ``required`` (a run's)."""

    def parse(text: str) -> str:
        missing = [name for name in required if not (Path(folder(text)) / name).is_file()]
        if missing:
            raise argparse.ArgumentTypeError(f"no {' or '.join(missing)} in {text}")
        return text

    parse.__name__ = "run folder"
    return parse


@contextlib.contextmanager
def flag_errors() -> Iterator[None]:
    """Report the ValueError/TypeError of the block (e.g. a model built from the flags refusing
    a combination of them) as a ``UsageError``, before any data is read."""
    try:
        yield
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from e


# ---- flag groups ---------------------------------------------------------------------------
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
        type=folder,
        default=None,
        help="folder with the IDX files (default: $TINYGAN_DATA, cache)",
    )


def add_common_flags(parser: argparse.ArgumentParser, *, out: str) -> None:
    """Flags every MNIST example that trains with ``fit`` takes (the paper's defaults)."""
    add_data_flags(parser)
    add = parser.add_argument
    add("--steps", type=integer(1), default=5000)
    add("--batch-size", type=integer(1), default=128)
    add("--seed", type=integer(0), default=0)
    add("--device", choices=["cpu", "cuda", "auto"], default="auto")
    add_out_flags(parser, out)
    add("--checkpoint-every", type=integer(1), default=500)
    add("--no-progress", action="store_true", help="no progress bar")
    add(
        "--eval-samples",
        type=integer(1),
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
        type=integer(1),
        default=3000,
        help="training steps of that classifier",
    )


def add_out_flags(parser: argparse.ArgumentParser, default: str, *, resume: bool = True) -> None:
    """``--out`` (default ``default``), ``--overwrite`` and, if the example can, ``--resume``."""
    add = parser.add_argument
    add("--out", default=default, help=f"output folder (default {default})")
    add("--overwrite", action="store_true", help="replace the run that --out holds")
    if resume:
        add("--resume", action="store_true", help="continue the run that --out holds")


# ---- the output folder -----------------------------------------------------------------------
def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv`` and check ``--out`` (``check_out``): every flag is checked on return."""
    args = parser.parse_args(argv)
    check_out(args)
    return args


def check_out(args: argparse.Namespace) -> None:
    """Refuse an ``--out`` that is a file, cannot be written, or holds a run (unless ``--resume``
    or ``--overwrite``); nothing is created."""
    resume, overwrite = getattr(args, "resume", False), args.overwrite
    if resume and overwrite:
        raise UsageError("--resume continues the run in --out, --overwrite replaces it: pick one")
    out = Path(args.out)
    writable(out, "--out")
    run = found_run(out)
    if run and not (resume or overwrite):
        how = "continue it with --resume, replace" if hasattr(args, "resume") else "replace"
        raise UsageError(
            f"--out {out} holds a run ({', '.join(run)}); {how} it with --overwrite, or choose "
            "another --out"
        )


def writable(path: Path, flag: str) -> None:
    """Check that the folder ``path`` exists and can be written, or can be created (the nearest
    existing folder above it is written to a temporary file and back); ``UsageError`` if not."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file, not a folder; choose a folder")
    if path.is_symlink() and not path.exists():
        raise UsageError(
            f"{flag} {path} is a link to {os.readlink(path)}, which does not exist; create that "
            "folder, or choose another"
        )
    above = path
    while not above.exists():
        if above.parent == above:
            break
        above = above.parent
    if not above.is_dir():
        raise UsageError(f"{flag} {path}: {above} is a file, so the folder cannot be created")
    try:
        with tempfile.TemporaryFile(dir=above):
            pass
    except OSError as e:
        raise UsageError(
            f"{flag} {path} cannot be written ({e.strerror or e} in {above}); choose another"
        ) from e


def found_run(out: Path) -> list[str]:
    """The names of a run's files (``RUN_FILES``) that the folder ``out`` holds."""
    if not out.is_dir():
        return []
    return sorted({p.name for pattern in RUN_FILES for p in out.glob(pattern) if p.is_file()})


@contextlib.contextmanager
def lock_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock of the run folder ``folder`` while the block runs: an exclusive ``flock``
    on ``folder/LOCK_FILE``, which records its owner (host, process id, start time) and is
    removed at the end of the block.

    The kernel releases a ``flock`` when its process ends, however it ends (SIGTERM, SIGKILL),
    so the file left by a dead run on this host is taken over. A free lock recorded by another
    host is refused: whether its process still runs cannot be checked from here (``flock``
    reaches other hosts only where the shared file system passes locks on).

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    UsageError
        If another live run holds the lock (naming its owner), it was taken on another host,
        or the file system cannot lock.
    """
    path = Path(folder) / LOCK_FILE
    host = socket.gethostname()
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            owner = _take(fd, path, host)
        except BaseException:
            os.close(fd)
            raise
        if owner is not None:
            break
        os.close(fd)  # its holder removed the file as it was opened here: take the new one
    if owner:
        print(f"{path}: taking over the lock of {_describe_owner(owner)}, which has ended")
    record = {"host": host, "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)  # before the lock goes: a run that opened it meanwhile sees it gone
        os.close(fd)


def _take(fd: int, path: Path, host: str) -> dict | None:
    """Lock ``fd``, the file ``path`` opened; the owner it records (empty if none), or None if
    ``path`` is no longer that file."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UsageError(
            f"--out {path.parent} is in use by another run ({_describe_owner(_owner(fd))}, "
            f"holding {path}); wait for it to end, or choose another --out"
        ) from None
    except OSError as e:  # e.g. a network file system mounted without locks
        raise UsageError(
            f"--out {path.parent}: {path} cannot be locked ({e.strerror or e}); choose an --out "
            "on a file system that supports flock"
        ) from None
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return None
    if (now.st_dev, now.st_ino) != (os.fstat(fd).st_dev, os.fstat(fd).st_ino):
        return None
    owner = _owner(fd)
    if owner.get("host", host) != host:
        raise UsageError(
            f"--out {path.parent} is locked by {_describe_owner(owner)}, which cannot be "
            f"checked from {host}; if that run has ended, remove {path}"
        )
    return owner


def _owner(fd: int) -> dict:
    """The owner a lock file records (empty if it records none yet, or cannot be read)."""
    try:
        owner = json.loads(os.pread(fd, 4096, 0))
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def _describe_owner(owner: dict) -> str:
    if not owner:
        return "a run that has not recorded itself yet"
    return f"pid {owner.get('pid')} on host {owner.get('host')}, started {owner.get('started')}"


# ---- what the flags name: device, batch, scoring classifier ------------------------------------
def pick_device(name: str) -> str:
    """``auto`` is cuda where CuPy sees a GPU, else cpu; ``cuda`` without one is a
    ``CommandError`` that says why."""
    if name == "auto":
        return "cuda" if backend.cuda_available() else "cpu"
    try:
        return backend.check_device(name)
    except RuntimeError as e:
        raise CommandError(f"{e}; run with --device cpu (or auto)") from e


def check_batch(batch_size: int, images: np.ndarray, model: Any = None) -> None:
    """A batch must fit in the training images, and under ``mpiexec`` give every rank a row of
    each of the chunks ``model`` takes it in (``UsageError`` if not)."""
    if batch_size > len(images):
        raise UsageError(
            f"a batch of {batch_size} images does not fit in the {len(images)} training "
            "images; lower --batch-size"
        )
    try:
        distributed.check_batch(model, batch_size)
    except ValueError as e:
        raise UsageError(f"--batch-size: {e}") from None


def check_classifier(args: argparse.Namespace) -> None:
    """Before any training: the scoring classifier's file (``classifier_path``) loads into the
    classifier if it exists (else ``CheckpointError``), or its folder can be written."""
    path = Path(classifier_path(args))
    if path.is_dir():
        raise UsageError(f"--classifier {path} is a folder; name a .npz file")
    if not path.exists():
        writable(path.parent, "--classifier's folder")
        return
    try:
        evaluation.load_scoring_classifier(path)
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(
            f"the scoring classifier {path} cannot be used ({' '.join(str(e).split())}); "
            "remove it to train a new one there, or pass another --classifier"
        ) from None


def classifier_path(args: argparse.Namespace) -> str:
    """``--classifier``, or a default named by everything the judge's training depends on
    (dataset, split, steps), so that a judge trained on other images is never reused."""
    default = f"runs/{args.dataset}_{args.split}_classifier_{args.classifier_steps}.npz"
    return args.classifier or default
