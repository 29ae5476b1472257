"""The multi-seed InfoGAN study of issue 16: one run of examples/infogan_mnist.py per seed,
resumable, then the table of their metrics.json (mean +- sd over the seeds).

    python bench/infogan_study.py --recipe paper --seeds 0-4 --parallel 2 --resume
    python bench/infogan_study.py --recipe consistency --seeds 0-4 --parallel 2 --resume
    python bench/infogan_study.py --recipe consistency --seeds 0-4 --table   # table only

Each run goes to ``<runs>/<study>/seed<k>`` (``<study>``: ``paper``, or e.g.
``consistency1_iic``) with its log in ``log.txt``; ``study.json`` there records the command, and
a run is only ever resumed with the same one. ``--resume`` skips finished runs (their
metrics.json is for ``--steps``) and continues interrupted ones from their checkpoints (the
example's ``--resume``: exactly as if never stopped); without it, a run folder that exists is
refused. Ctrl-C stops the runs after their current step, each saving its checkpoint.

The table reports, per seed and as mean +- sd (sample standard deviation, n - 1): the
categorical code's accuracy on the 1,000 held-out test images and on the 8,000 training images
(Hungarian matching; labels only score), L_I at the end (nats, of ln 10 = 2.303), the Parzen
log-likelihood of the test images (nats) and the classifier score, for the final state and for
the state chosen without labels (``--select-every``: IIC's mutual information on the validation
images).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tinygan import cli
from tinygan.models.infogan import CONSISTENCY_OBJECTIVES, DEFAULT_CONSISTENCY_OBJECTIVE
from tinygan.serialization import atomic_path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "infogan_mnist.py"


def seed_list(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,2,5-6"`` -> [0, 2, 5, 6]."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            low, high = int(low), int(high or low)
            if high < low:
                raise argparse.ArgumentTypeError(
                    f"the range {part} is reversed (write {high}-{low}); got {text!r}"
                )
            seeds += range(low, high + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seeds like 0-4 or 0,2,5; got {text!r}"
        ) from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds >= 0; got {text!r}")
    return seeds


def study_name(args: argparse.Namespace) -> str:
    if args.recipe == "paper":
        return "paper"
    return f"consistency{args.consistency:g}_{args.consistency_objective}"


def command(args: argparse.Namespace, seed: int, out: Path) -> list[str]:
    """The example's command line for one seed (without --resume)."""
    argv = [sys.executable, str(EXAMPLE), "--split", args.split, "--data-dir", args.data_dir,
            "--steps", str(args.steps), "--batch-size", str(args.batch_size),
            "--seed", str(seed), "--checkpoint-every", str(args.checkpoint_every),
            "--select-every", str(args.select_every), "--out", str(out),
            "--no-progress"]  # fmt: skip
    if args.recipe == "consistency":
        argv += ["--consistency", str(args.consistency),
                 "--consistency-objective", args.consistency_objective]  # fmt: skip
    return argv


def finished(out: Path, steps: int) -> bool:
    try:
        return json.loads((out / "metrics.json").read_text())["flags"]["steps"] == steps
    except (OSError, ValueError, KeyError, TypeError):
        return False


def prepare(args: argparse.Namespace, seed: int, out: Path) -> list[str] | None:
    """The command to run for ``seed`` (without ``--resume``; None if its run is finished),
    checking that a run being resumed was started with the same one (its ``study.json``);
    nothing is written."""
    argv = command(args, seed, out)
    record = out / "study.json"
    if record.exists():
        if not args.resume:
            sys.exit(f"error: {out} holds a run; continue it with --resume, or remove it")
        before = json.loads(record.read_text())["command"]
        if before[1:] != argv[1:]:  # the interpreter may differ
            sys.exit(
                f"error: {out} was started as {shlex.join(before[1:])}; this study would "
                f"continue it as {shlex.join(argv[1:])}; use the same settings, or remove it"
            )
        if finished(out, args.steps):
            return None
    return argv


def launch(
    argv: list[str], out: Path, env: dict[str, str], resume: bool
) -> tuple[subprocess.Popen, Any]:
    """Start the run (``argv``, with ``--resume`` if asked) in its folder, logging to
    ``log.txt``, and record its command in ``study.json`` once it started (so that only a run
    that started leaves a record); the process and the log."""
    out.mkdir(parents=True, exist_ok=True)
    run = [*argv, "--resume"] if resume else argv
    log = open(out / "log.txt", "a")  # noqa: SIM115 (open while the run lasts)
    try:
        log.write(f"\n$ {shlex.join(run)}\n")
        log.flush()
        # its own session: a Ctrl-C in the terminal reaches the run once, through this driver
        # (twice would stop it without saving); SIGINT handled even where this driver was
        # started with it ignored (in the background)
        proc = subprocess.Popen(run, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, preexec_fn=default_sigint)  # fmt: skip
    except BaseException:
        log.close()
        raise
    with atomic_path(out / "study.json") as tmp:
        Path(tmp).write_text(json.dumps({"command": argv}, indent=2))
    return proc, log


def ensure_classifier(args: argparse.Namespace) -> None:
    """Train the scoring classifier once before the runs start (else two parallel runs would
    each train it)."""
    from tinygan.evaluation import load_splits, scoring_classifier

    path = ROOT / f"runs/mnist_{args.split}_classifier_3000.npz"  # the example's default
    if not path.exists():
        scoring_classifier(path, load_splits("mnist", args.split, args.data_dir))


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_all(args: argparse.Namespace, folder: Path) -> int:
    """Run the seeds' examples, ``--parallel`` at a time, once the scoring classifier is there;
    on Ctrl-C or SIGTERM, interrupt them (each saves its checkpoint after its current step) and
    wait for them."""
    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run_all(args, folder)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_all(args: argparse.Namespace, folder: Path) -> int:
    jobs = []
    for seed in args.seeds:
        out = folder / f"seed{seed}"
        argv = prepare(args, seed, out)
        if argv is None:
            print(f"seed {seed}: finished ({out / 'metrics.json'})")
        else:
            jobs.append((seed, out, argv))
    if not jobs:
        return 0
    threads = str(args.threads or max(1, (os.cpu_count() or 1) // args.parallel))
    env = {**os.environ, **{k: threads for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                  "MKL_NUM_THREADS")}}  # fmt: skip
    running: dict[int, tuple[subprocess.Popen, Any, float]] = {}
    failed = []
    try:
        ensure_classifier(args)
        while jobs or running:
            while jobs and len(running) < args.parallel:
                seed, out, argv = jobs.pop(0)
                proc, log = launch(argv, out, env, args.resume)
                print(f"seed {seed}: started, log {out / 'log.txt'}")
                running[seed] = (proc, log, time.time())
            time.sleep(2)
            for seed, (proc, log, start) in list(running.items()):
                if proc.poll() is not None:
                    log.close()
                    del running[seed]
                    minutes = (time.time() - start) / 60
                    print(f"seed {seed}: exit status {proc.returncode} after {minutes:.1f} min")
                    if proc.returncode:
                        failed.append(seed)
    except KeyboardInterrupt:  # the runs save their checkpoints after their current step
        for signum in (signal.SIGINT, signal.SIGTERM):  # wait for them whatever comes next
            signal.signal(signum, signal.SIG_IGN)
        for proc, _, _ in running.values():
            proc.send_signal(signal.SIGINT)
        for proc, log, _ in running.values():
            proc.wait()
            log.close()
        print("interrupted: continue with --resume")
        return 130
    if failed:
        print(f"failed: seeds {failed} (see their log.txt)")
    return 1 if failed else 0


def mean_sd(values: list[float], digits: int) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} +- {statistics.stdev(values):.{digits}f}"


COLUMNS = [  # header, key in the metrics (final / selected), digits
    ("held-out accuracy", ("accuracy",), 3),
    ("training-image accuracy", ("accuracy_on_training_images",), 3),
    ("L_I (nats)", ("info_cat_final", "info_cat"), 3),
    ("Parzen (nats)", ("parzen", "mean"), 1),
    ("classifier score", ("classifier_score",), 2),
]


def value(metrics: dict[str, Any], key: tuple[str, ...], selected: bool) -> float:
    if key == ("parzen", "mean"):
        return metrics["parzen"]["mean"]
    return metrics[key[-1] if selected else key[0]]


def table(args: argparse.Namespace, folder: Path) -> str:
    found = {}
    for seed in args.seeds:
        path = folder / f"seed{seed}" / "metrics.json"
        if finished(path.parent, args.steps):
            found[seed] = json.loads(path.read_text())
    lines = [f"{study_name(args)}: {len(found)} of {len(args.seeds)} seeds finished "
             f"({args.steps} steps x {args.batch_size}; {folder})", ""]  # fmt: skip
    missing = [s for s in args.seeds if s not in found]
    for part in ("final", "selected"):
        rows = {s: (m if part == "final" else m.get("selected")) for s, m in found.items()}
        rows = {s: m for s, m in rows.items() if m}
        if not rows:
            continue
        heads = [h for h, _, _ in COLUMNS]
        extra = ["step"] if part == "selected" else ["minutes"]
        lines += [f"### {part} state", "", "| seed | " + " | ".join(heads + extra) + " |",
                  "|---" * (len(heads) + 2) + "|"]  # fmt: skip
        for seed, m in rows.items():
            cells = [f"{value(m, k, part == 'selected'):.{d}f}" for _, k, d in COLUMNS]
            cells.append(str(m["step"]) if part == "selected"
                         else f"{found[seed]['train_seconds'] / 60:.0f}")  # fmt: skip
            lines.append(f"| {seed} | " + " | ".join(cells) + " |")
        means = [mean_sd([value(m, k, part == "selected") for m in rows.values()], d)
                 for _, k, d in COLUMNS]  # fmt: skip
        lines += ["| mean +- sd | " + " | ".join(means) + " | |", ""]
    if missing:
        lines.append(f"not finished: seeds {missing}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--recipe", choices=["paper", "consistency"], required=True)
    add("--seeds", type=seed_list, default=seed_list("0-4"))
    add("--steps", type=cli.integer(1), default=5000)
    add("--batch-size", type=cli.integer(1), default=128)
    add("--consistency", type=cli.real(0.0, low_open=True), default=1.0,
        help="weight (recipe consistency)")  # fmt: skip
    add("--consistency-objective", choices=CONSISTENCY_OBJECTIVES,
        default=DEFAULT_CONSISTENCY_OBJECTIVE)  # fmt: skip
    add("--select-every", type=cli.integer(0), default=250)
    add("--checkpoint-every", type=cli.integer(1), default=250)
    add("--parallel", type=cli.integer(1), default=2,
        help="runs at a time (at most 2 on 2 cores)")  # fmt: skip
    add("--threads", type=cli.integer(0), default=0,
        help="BLAS threads per run (default cores/parallel)")  # fmt: skip
    add("--runs", default="runs/study", help="folder of the studies (default runs/study)")
    add("--split", choices=["train", "test"], default="test")
    add("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    add("--resume", action="store_true", help="skip finished runs, continue interrupted ones")
    add("--table", action="store_true", help="only print the table of the finished runs")
    args = parser.parse_args(argv)
    explicit = {a.split("=")[0] for a in (sys.argv[1:] if argv is None else argv)}
    if args.recipe == "paper" and explicit & {"--consistency", "--consistency-objective"}:
        parser.error("--consistency and --consistency-objective belong to --recipe consistency")
    if not (args.table or Path(args.data_dir).is_dir()):
        parser.error(f"argument --data-dir: no folder {args.data_dir}")
    folder = (ROOT / args.runs / study_name(args)).resolve()
    status = 0 if args.table else run_all(args, folder)
    text = table(args, folder)
    print(text)
    if folder.is_dir():
        with atomic_path(folder / "table.md") as tmp:
            Path(tmp).write_text(text + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
