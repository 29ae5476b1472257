"""Run every benchmark and write one report: ``python bench/run_all.py [--out bench/latest.md]``.

Runs ``bench_conv.py`` (layers, kernels, GEMM ceiling), ``bench_step.py`` (the full InfoGAN
step, its GEMMs alone and the other layers) and ``profile_step.py`` (the step's time and
allocations per op) one after the other, each in its own process, and writes their
tables with the machine, the date and the environment settings that move the numbers.
Benchmarks are never part of the test suite: machines here are shared, so compare the
tinygan/PyTorch ratios measured side by side in one run, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env = ", ".join(
        f"{k}={v}"
        for k, v in sorted(os.environ.items())
        if k.startswith(("OPENBLAS", "OMP", "MKL", "MALLOC"))
    )
    python = platform.python_version()
    return f"{cpu}, {os.cpu_count()} CPUs, Python {python}; environment: {env or 'none set'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(HERE / "latest.md"))
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    args = parser.parse_args()
    runs = [
        ["bench_conv.py", "--batch", "64"]
        + (["--repeats", "3", "--warmup", "1"] if args.quick else []),
        ["bench_step.py"] + (["--repeats", "2", "--warmup", "1"] if args.quick else []),
        ["profile_step.py", "--batch", "64"] + (["--steps", "2"] if args.quick else []),
    ]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"# tinygan benchmarks, {now}\n", f"Machine: {machine()}\n",
             f"Command: `python bench/run_all.py{' --quick' if args.quick else ''}`\n"]  # fmt: skip
    for run in runs:
        print("running", " ".join(run), flush=True)
        done = subprocess.run(
            [sys.executable, str(HERE / run[0]), *run[1:]],
            capture_output=True,
            text=True,
            check=True,
        )
        print(done.stdout)
        parts.append(f"## {' '.join(run)}\n\n```\n{done.stdout.strip()}\n```\n")
    Path(args.out).write_text("\n".join(parts))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
