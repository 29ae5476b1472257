"""The command line every example shares: flags checked as they are parsed, the output folder's
rules, and errors a user can act on.

An example is written as::

    def main(argv: list[str] | None = None) -> int:
        parser = cli.parser(__doc__)
        parser.add_argument("--steps", type=cli.integer(1), default=100)
        cli.add_out_flags(parser, "runs/example")
        args = cli.parse(parser, argv)  # every flag checked; nothing read or created yet
        ...                             # load the data, then
        out = cli.make_out(args)        # create --out (emptied of an old run with --overwrite)


    if __name__ == "__main__":
        sys.exit(cli.run(main))

``run`` prints an expected error as one line ``error: ...`` on stderr, without a traceback, and
returns the exit status: 2 for a usage error (a bad flag, an ``--out`` that holds a run or
cannot be written), 1 for the rest (missing or damaged data, a damaged or mismatched checkpoint,
no GPU, a full disk, training that diverged), 130 for Ctrl-C. Any other exception is a bug and
keeps its traceback; ``TINYGAN_DEBUG=1`` shows the traceback of expected errors too.

Runs never overwrite runs: an ``--out`` holding a run's files (``RUN_FILES``) is refused unless
``--resume`` continues it or ``--overwrite`` replaces it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from . import checks, distributed
from .data import DataError, DownloadError
from .serialization import CheckpointError
from .train import NonFiniteError

RUN_FILES = ("checkpoint.npz", "best.npz", "history.json", "metrics.json", "layer*.npz")


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
        except ValueError as e:  # a bad TINYGAN_DIST_TIMEOUT
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
    except KeyboardInterrupt:
        if debug:
            raise
        return _report(None, 130)


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
    """An argparse ``type``: an int in [low, high] (``checks.integer``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an int; got {text!r}") from None
        return _checked(checks.integer, value, low, high)

    parse.__name__ = "int"
    return parse


def real(
    low: float = -float("inf"),
    high: float = float("inf"),
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], float]:
    """An argparse ``type``: a finite float in [low, high] (``checks.real``; nan and inf are
    refused)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
        return _checked(checks.real, value, low, high, low_open=low_open, high_open=high_open)

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


# ---- the output folder -----------------------------------------------------------------------
def add_out_flags(parser: argparse.ArgumentParser, default: str, *, resume: bool = True) -> None:
    """``--out`` (default ``default``), ``--overwrite`` and, if the example can, ``--resume``."""
    add = parser.add_argument
    add("--out", default=default, help=f"output folder (default {default})")
    add("--overwrite", action="store_true", help="replace the run that --out holds")
    if resume:
        add("--resume", action="store_true", help="continue the run that --out holds")


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


def make_out(args: argparse.Namespace) -> Path:
    """Create ``--out``; with ``--overwrite``, first remove the run files it holds (the rest of
    an old run, its figures, is overwritten as the new run writes its own). Under ``mpiexec``
    only rank 0, the process that writes, removes them."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.overwrite and distributed.is_main():
        for name in found_run(out):
            (out / name).unlink(missing_ok=True)
    return out
