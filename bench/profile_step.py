"""Profile one InfoGAN training step: where the time goes, and what it allocates.

    python bench/profile_step.py [--batch 64] [--steps 20]

Wraps every Function's ``forward`` and ``backward`` and the optimisers' ``step``, runs the
step (after warm-up) and prints, per part: wall ms per step, its share of the step, and the
heap allocations of at least 4 KiB it makes per step (NumPy's array buffers: count and MB).
"The rest" is the step minus the wrapped parts: the autograd engine (gradient accumulation,
freeing), latent sampling, the losses' Python. The GEMMs run inside the parts (Linear, Conv2d,
ConvTranspose2d); the analysis in bench/RESULTS.md splits them out with ``perf``.

Allocations are counted by ``bench/alloc_count.c``, built with the system C compiler and
preloaded into a child process (Linux/glibc). Without a compiler the table has times only.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import tinygan as tg
from tinygan.function import Function
from tinygan.models import InfoGAN, LatentSpec
from tinygan.runner import tune_allocator

HERE = Path(__file__).resolve().parent
CHILD = "TINYGAN_PROFILE_CHILD"


class Counters:
    """The preloaded counters (all zero when the library is absent)."""

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL(None)
            self.on = ctypes.c_int.in_dll(lib, "tg_alloc_on")
            self.count = ctypes.c_long.in_dll(lib, "tg_alloc_count")
            self.bytes = ctypes.c_long.in_dll(lib, "tg_alloc_bytes")
            self.available = True
        except ValueError:
            self.available = False

    def read(self) -> tuple[int, int]:
        return (self.count.value, self.bytes.value) if self.available else (0, 0)


def instrument(table: dict, counters: Counters) -> None:
    """Wrap forward/backward of every Function subclass and ``Adam.step``: add (seconds,
    allocations, bytes) of each call to ``table[name]``."""

    def timed(key, fn):
        def wrapper(*args, **kwargs):
            c0, b0 = counters.read()
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                t1 = time.perf_counter()
                c1, b1 = counters.read()
                row = table[key]
                row[0] += t1 - t0
                row[1] += c1 - c0
                row[2] += b1 - b0

        return wrapper

    seen, todo = set(), list(Function.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.add(cls)
            todo.extend(cls.__subclasses__())
            for name in ("forward", "backward"):
                if name in cls.__dict__:
                    setattr(cls, name, timed(f"{cls.__name__}.{name}", cls.__dict__[name]))
    tg.optim.Adam.step = timed("Adam.step", tg.optim.Adam.step)


def profile(batch: int, steps: int) -> None:
    tune_allocator()
    counters = Counters()
    model = InfoGAN(LatentSpec(), seed=0)
    x = np.random.default_rng(0).random((batch, 1, 28, 28), dtype=np.float32)
    rng = np.random.default_rng(1)
    table: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0, 0])
    instrument(table, counters)
    for _ in range(3):
        model.train_step(x, rng)
    table.clear()
    if counters.available:
        counters.on.value = 1
    c0, b0 = counters.read()
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_step(x, rng)
    total = (time.perf_counter() - t0) / steps * 1e3
    c1, b1 = counters.read()
    per = {k: (v[0] / steps * 1e3, v[1] / steps, v[2] / steps / 1e6) for k, v in table.items()}
    rows = sorted(per.items(), key=lambda kv: -kv[1][0])
    rest = (total - sum(v[0] for v in per.values()),
            (c1 - c0) / steps - sum(v[1] for v in per.values()),
            (b1 - b0) / steps / 1e6 - sum(v[2] for v in per.values()))  # fmt: skip
    print(f"batch {batch}: {total:.1f} ms/step (mean of {steps} steps after 3 warm-up)")
    if counters.available:
        print(f"allocations >= 4 KiB: {(c1 - c0) / steps:.0f} per step, "
              f"{(b1 - b0) / steps / 1e6:.0f} MB per step\n")  # fmt: skip
    else:
        print("(allocations not counted: bench/alloc_count.c was not preloaded)\n")
    counted = counters.available
    print("| part | ms/step | share |" + (" allocations | MB |" if counted else ""))
    print("|---|---|---|" + ("---|---|" if counted else ""))
    for key, (ms, count, mb) in [*rows, ("(the rest: engine, sampling, losses)", rest)]:
        row = f"| {key} | {ms:.2f} | {ms / total:.1%} |"
        print(row + (f" {count:.0f} | {mb:.1f} |" if counted else ""))


def build_counter(folder: Path) -> Path | None:
    """Compile alloc_count.c into a shared library in ``folder``; None without a C compiler."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return None
    out = folder / "alloc_count.so"
    source = HERE / "alloc_count.c"
    done = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(out), str(source)])
    return out if done.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    if os.environ.get(CHILD):
        profile(args.batch, args.steps)
        return
    with tempfile.TemporaryDirectory() as folder:
        lib = build_counter(Path(folder))
        env = dict(os.environ, **{CHILD: "1"})
        if lib is not None:
            env["LD_PRELOAD"] = " ".join(filter(None, [str(lib), os.environ.get("LD_PRELOAD")]))
        done = subprocess.run([sys.executable, __file__, *sys.argv[1:]], env=env)
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
