"""Does splitting the step's elementwise work over both cores pay on this machine?

    python bench/threads.py [--repeats 15]

NumPy releases the GIL inside its ufunc loops, so chunks of one large elementwise op can run on
a small thread pool. This times, 1 thread against 2 (the op's elements split in halves, each
half in cache-sized chunks), right after a GEMM as in a training step: the InfoGAN step's
largest elementwise ops at batch 64 (leaky ReLU's backward, the batch-norm passes, the
engine's gradient sums), Adam's update of the model's 13.3M parameters, a memory-bound copy
and a compute-bound ufunc (``sin``) for scale. Medians of paired runs; ratio = 2 threads /
1 thread (below 1: the second core helps).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tinygan.kernels import cpu
from tinygan.models import InfoGAN, LatentSpec

CHUNK = 1 << 16  # elements per chunk: a few chunk-sized operands stay in a core's L2


def chunked(fn, *arrays):
    """``fn`` applied to aligned chunks of flat contiguous arrays, as a list of tasks."""
    flat = [a.reshape(-1) for a in arrays]
    starts = range(0, flat[0].size, CHUNK)
    return [lambda i=i: fn(*(a[i : i + CHUNK] for a in flat)) for i in starts]


def cases(rng: np.random.Generator):
    """(name, tasks): each task works on its own part of the arrays."""
    act = rng.standard_normal((64, 14, 14, 64), dtype=np.float32)
    gy, out = np.ones_like(act), np.empty_like(act)
    big = rng.standard_normal(6272 * 1024, dtype=np.float32)
    other, total = np.ones_like(big), np.empty_like(big)

    def leaky_backward(x, g, o):
        o[...] = cpu.leaky_relu_backward(x, g, 0.1)

    def batch_norm_passes(x, g, o):  # centre, scale, shift
        np.subtract(x, 0.1, out=o)
        o *= 1.3
        o += 0.2

    def adam(p, g, m, v):
        cpu.adam_update(p, g, m, v, 1e-3, 0.5, 0.999, 1e-8, 0.5, 0.001)

    model = InfoGAN(LatentSpec(), seed=0)
    params = [p.data.copy() for p in (*model.G.parameters(), *model.D.parameters())]
    state = [(p, np.ones_like(p), np.zeros_like(p), np.zeros_like(p)) for p in params]
    return [
        ("leaky ReLU backward, 64x64x14x14", chunked(leaky_backward, act, gy, out)),
        ("batch norm's 3 passes, 64x64x14x14", chunked(batch_norm_passes, act, gy, out)),
        (
            "gradient sum, 6272x1024 (26 MB)",
            chunked(lambda a, b, c: np.add(a, b, out=c), big, other, total),
        ),
        ("Adam, 13.3M parameters", [t for s in state for t in chunked(adam, *s)]),
        ("copy, 6272x1024", chunked(lambda a, c: np.copyto(c, a), big, total)),
        ("sin, 6272x1024", chunked(lambda a, c: np.sin(a, out=c), big, total)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    pool = ThreadPoolExecutor(2)
    a = rng.standard_normal((1024, 1024), dtype=np.float32)

    def one(tasks):
        for t in tasks:
            t()

    def two(tasks):
        for f in [pool.submit(one, tasks[::2]), pool.submit(one, tasks[1::2])]:
            f.result()

    def timed(run, tasks):
        a @ a  # as in a step: OpenBLAS's threads have just run
        t0 = time.perf_counter()
        run(tasks)
        return time.perf_counter() - t0

    print("| op | 1 thread ms | 2 threads ms | ratio |\n|---|---|---|---|")
    for name, tasks in cases(rng):
        ones, twos = [], []
        for _ in range(args.repeats):
            ones.append(timed(one, tasks))
            twos.append(timed(two, tasks))
        t1, t2 = np.median(ones) * 1e3, np.median(twos) * 1e3
        ratio = np.median(np.array(twos) / np.array(ones))
        print(f"| {name} | {t1:.2f} | {t2:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
