"""Profile one InfoGAN training step: where the time goes, by kind of work, in tinygan and in
PyTorch, and what tinygan allocates.

    python bench/profile_step.py [--batches 64 128] [--steps 20] [--no-torch]

Kinds of work:

- GEMM: tinygan's time inside BLAS (OpenBLAS's gemm, gemv, syrk and dot, timed exactly by
  ``bench/probe.c``, which the script builds and preloads into a child process); PyTorch's
  matrix products and its convolutions' kernels (oneDNN does the data movement of im2col inside
  them, so PyTorch has no im2col row).
- im2col / col2im: tinygan's ``kernels.im2col``, ``col2im`` and ``gemm_col2im`` (less the GEMMs
  they call).
- batch norm: the batch norm op's forward and backward (less its GEMVs).
- optimizer: ``Optimizer.step`` (Adam's update, in blocks).
- elementwise and reductions: every other op's forward and backward (activations, losses,
  reshapes, sums), less the GEMMs inside.
- engine and Python: the rest of the step (recording the graph, the backward walk and
  gradient accumulation, the model's Python, sampling the latents).

Each part is exclusive: a wrapped function's time less the wrapped functions and BLAS calls it
makes. tinygan's parts come from wrappers (perf_counter) around its ops, kernels and optimizer;
PyTorch's from ``torch.profiler`` (self CPU time of each aten op; the optimizer's ops are those
under its ``Optimizer.step`` region); the profiler slows PyTorch's step, so its plain time is
printed beside. Allocations (>= 4 KiB, NumPy's array buffers) are counted by the same
preloaded library. Needs Linux/glibc and a C compiler for the BLAS and allocation counts;
without them the GEMM time is not split out (it stays in the parts that call it).
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
from tinygan import kernels
from tinygan.function import Function
from tinygan.models import InfoGAN, LatentSpec
from tinygan.runner import tune_allocator

HERE = Path(__file__).resolve().parent
CHILD = "TINYGAN_PROFILE_CHILD"
KINDS = ("GEMM", "im2col / col2im", "batch norm", "optimizer", "elementwise and reductions",
         "engine and Python")  # fmt: skip


class Probe:
    """The preloaded counters of ``probe.c`` (all zero when it is not loaded)."""

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL(None)
            self.on = ctypes.c_int.in_dll(lib, "tg_probe_on")
            self._values = [ctypes.c_long.in_dll(lib, name) for name in
                            ("tg_blas_ns", "tg_alloc_count", "tg_alloc_bytes")]  # fmt: skip
            self.available = True
        except ValueError:
            self.available = False

    def read(self) -> tuple[float, int, int]:
        """(seconds in BLAS, allocations, bytes allocated) so far."""
        if not self.available:
            return 0.0, 0, 0
        ns, count, size = (v.value for v in self._values)
        return ns / 1e9, count, size


def kind_of(name: str) -> str:
    if name.startswith("kernels.") and ("im2col" in name or "col2im" in name):
        return "im2col / col2im"
    if "BatchNorm" in name:
        return "batch norm"
    if name.startswith("Optimizer"):
        return "optimizer"
    return "elementwise and reductions"


def instrument(table: dict, probe: Probe) -> None:
    """Wrap forward/backward of every Function subclass, the conv kernels and
    ``Optimizer.step``: add each call's exclusive (seconds, allocations, bytes) to
    ``table[name]``, less the BLAS time inside (which ``probe`` counts)."""
    stack: list[list[float]] = []  # per open call: [children's seconds, children's counts...]

    def timed(key, fn):
        def wrapper(*args, **kwargs):
            t0, (b0, c0, s0) = time.perf_counter(), probe.read()
            stack.append([0.0, 0.0, 0, 0])
            try:
                return fn(*args, **kwargs)
            finally:
                t1, (b1, c1, s1) = time.perf_counter(), probe.read()
                inner = stack.pop()
                total = [t1 - t0, b1 - b0, c1 - c0, s1 - s0]
                if stack:
                    for i, v in enumerate(total):
                        stack[-1][i] += v
                row = table[key]
                row[0] += (total[0] - inner[0]) - (total[1] - inner[1])  # less BLAS inside
                row[1] += total[2] - inner[2]
                row[2] += total[3] - inner[3]

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
    for name in ("im2col", "col2im", "gemm_col2im"):
        setattr(kernels, name, timed(f"kernels.{name}", getattr(kernels, name)))
    tg.optim.Optimizer.step = timed("Optimizer.step", tg.optim.Optimizer.step)


def profile_tinygan(batch: int, steps: int, probe: Probe) -> dict:
    model = InfoGAN(LatentSpec(), seed=0)
    x = np.random.default_rng(0).random((batch, 1, 28, 28), dtype=np.float32)
    rng = np.random.default_rng(1)
    table: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0, 0])
    instrument(table, probe)
    for _ in range(3):
        model.train_step(x, rng)
    table.clear()
    if probe.available:
        probe.on.value = 1
    b0, c0, s0 = probe.read()
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_step(x, rng)
    total = time.perf_counter() - t0
    b1, c1, s1 = probe.read()
    kinds = dict.fromkeys(KINDS, 0.0)
    allocs = {k: [0, 0] for k in KINDS}
    for name, (seconds, count, size) in table.items():
        kinds[kind_of(name)] += seconds
        allocs[kind_of(name)][0] += count
        allocs[kind_of(name)][1] += size
    kinds["GEMM"] = b1 - b0
    kinds["engine and Python"] = total - sum(kinds.values())
    rest = [(c1 - c0) - sum(a[0] for a in allocs.values()),
            (s1 - s0) - sum(a[1] for a in allocs.values())]  # fmt: skip
    allocs["engine and Python"] = rest
    ms = 1e3 / steps
    return {
        "step": total * ms,
        "kinds": {k: v * ms for k, v in kinds.items()},
        "allocs": {k: (a[0] / steps, a[1] / steps / 1e6) for k, a in allocs.items()},
        "ops": sorted(((k, v[0] * ms) for k, v in table.items()), key=lambda kv: -kv[1]),
        "counted": probe.available,
    }


def profile_torch(batch: int, steps: int) -> dict | None:
    try:
        import torch
        from bench_step import torch_step  # beside this file
    except ImportError:
        return None
    step = torch_step(batch)
    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    plain = (time.perf_counter() - t0) / steps * 1e3
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        total = time.perf_counter() - t0
    kinds = dict.fromkeys(KINDS, 0.0)
    kinds.pop("im2col / col2im")
    for event in prof.events():
        if not event.name.startswith("aten::"):
            continue
        parent, in_optimizer = event.cpu_parent, False
        while parent is not None:
            in_optimizer |= parent.name.startswith("Optimizer.step")
            parent = parent.cpu_parent
        name = event.name
        if in_optimizer:
            kind = "optimizer"
        elif any(s in name for s in ("mm", "matmul", "conv", "mkldnn")):
            kind = "GEMM"
        elif "batch_norm" in name:
            kind = "batch norm"
        else:
            kind = "elementwise and reductions"
        kinds[kind] += event.self_cpu_time_total / 1e6
    kinds["engine and Python"] = total - sum(kinds.values())
    ms = 1e3 / steps
    return {"step": total * ms, "plain": plain, "kinds": {k: v * ms for k, v in kinds.items()}}


def report(batch: int, steps: int, ours: dict, theirs: dict | None) -> None:
    print(f"\n### Batch {batch} (means of {steps} steps after 3 warm-up)\n")
    head = "| kind of work | tinygan ms | share |"
    rule = "|---|---|---|"
    if ours["counted"]:
        head, rule = head + " allocations | MB |", rule + "---|---|"
    if theirs:
        head, rule = head + " PyTorch ms | share |", rule + "---|---|"
    print(head + "\n" + rule)
    for kind in KINDS:
        ms = ours["kinds"][kind]
        row = f"| {kind} | {ms:.1f} | {ms / ours['step']:.0%} |"
        if ours["counted"]:
            count, mb = ours["allocs"][kind]
            row += f" {count:.0f} | {mb:.1f} |"
        if theirs:
            t = theirs["kinds"].get(kind)
            row += " - | - |" if t is None else f" {t:.1f} | {t / theirs['step']:.0%} |"
        print(row)
    row = f"| **step** | **{ours['step']:.1f}** | |"
    if ours["counted"]:
        total = [sum(a[i] for a in ours["allocs"].values()) for i in (0, 1)]
        row += f" {total[0]:.0f} | {total[1]:.0f} |"
    if theirs:
        row += f" **{theirs['step']:.1f}** (unprofiled: {theirs['plain']:.1f}) | |"
    print(row)
    print("\ntinygan's ten largest ops (exclusive, less BLAS), ms per step: " + ", ".join(
        f"{k} {v:.1f}" for k, v in ours["ops"][:int(os.environ.get("TOP", 10))]))  # fmt: skip


def main_child(batches: list[int], steps: int, with_torch: bool) -> None:
    tune_allocator()
    probe = Probe()
    if not probe.available:
        print("(bench/probe.c was not preloaded: GEMM time stays in its callers; no allocations)")
    results = []
    for batch in batches:  # PyTorch first: instrumenting tinygan cannot be undone
        theirs = profile_torch(batch, steps) if with_torch else None
        results.append((batch, theirs))
    for batch, theirs in results:
        report(batch, steps, profile_tinygan(batch, steps, probe), theirs)


def build_probe(folder: Path) -> Path | None:
    """Compile probe.c into a shared library in ``folder``; None without a C compiler."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return None
    out = folder / "probe.so"
    done = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(out), str(HERE / "probe.c"),
                           "-ldl"])  # fmt: skip
    return out if done.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-torch", action="store_true", help="profile tinygan alone")
    args = parser.parse_args()
    if os.environ.get(CHILD):
        main_child(args.batches, args.steps, not args.no_torch)
        return
    with tempfile.TemporaryDirectory() as folder:
        lib = build_probe(Path(folder))
        env = dict(os.environ, **{CHILD: "1"})
        if lib is not None:
            env["LD_PRELOAD"] = " ".join(filter(None, [str(lib), os.environ.get("LD_PRELOAD")]))
        done = subprocess.run([sys.executable, __file__, *sys.argv[1:]], env=env)
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
