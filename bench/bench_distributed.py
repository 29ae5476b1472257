"""Data-parallel InfoGAN step on this machine's cores, against one process and PyTorch.

    python bench/bench_distributed.py [--batches 64 128] [--rounds 3] [--steps 10]

In one run, each configuration in its own process(es), the configurations taking turns round
after round (the machine is shared: medians over rounds of the median step of each):

- ``1 rank x 2 threads``: tinygan in one process, OpenBLAS with 2 threads (``bench_step``'s step);
- ``2 ranks x 1 thread``: ``mpiexec -n 2``, each rank half the batch, one OpenBLAS thread,
  ``SyncBatchNorm`` and averaged gradients (what ``tinygan.train`` does under mpiexec);
- ``2 ranks x 1 thread, local BN``: the same with each rank's batch norm on its own half (not
  equivalent to one process; it shows what synchronising batch norm costs);
- ``PyTorch, 2 threads``: ``bench_step.torch_step``, the same model and step.

Then: all-reduce time against message size on 2 ranks (the cost model's alpha and beta), the
share of the 2-rank step spent in collectives, whether a non-blocking all-reduce overlaps with
computation here, and SyncBatchNorm (fused, and as Tensor ops) against the fused batch norm in
one process.
Needs mpi4py and mpiexec (``pip install -e ".[distributed]"``); PyTorch is optional.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import bench_step  # beside this file
import numpy as np

HERE = Path(__file__).resolve().parent
CONFIGS = ("1 rank x 2 threads", "2 ranks x 1 thread", "2 ranks x 1 thread, local BN",
           "PyTorch, 2 threads")  # fmt: skip


# ---- workers (one configuration, one batch size; print one JSON line) ---------------------------


def worker_step(kind: str, batch: int, steps: int, warmup: int) -> None:
    from tinygan import distributed as dist
    from tinygan.runner import tune_allocator

    tune_allocator()
    if kind == "torch":
        import torch

        torch.set_num_threads(2)
        step, comm = bench_step.torch_step(batch), None
    elif kind == "single":
        step, comm = bench_step.tinygan_step(batch), None
    else:
        from tinygan.models import InfoGAN

        comm = dist.init()
        rows = len(dist.shard(batch, comm.rank, comm.size))
        model = InfoGAN(bench_step.SPEC, seed=0)
        if kind == "dp":
            dist.prepare(model, comm=comm)
        else:  # dp-local: averaged gradients, batch norm on each rank's rows alone
            dist.prepare(model, comm=comm, sync_batchnorm=False)
        x = np.random.default_rng(comm.rank).random((rows, 1, 28, 28), dtype=np.float32)
        rng = np.random.default_rng(1)

        def step():
            return model.train_step(x, rng)

    for _ in range(warmup):
        step()
    times, comm_s = [], []
    for _ in range(steps):
        before = comm.seconds if comm is not None else 0.0
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        comm_s.append((comm.seconds - before) if comm is not None else 0.0)
    if comm is None or comm.is_main:
        load = os.getloadavg()[0]
        print(json.dumps({"ms": 1e3 * statistics.median(times),
                          "comm_ms": 1e3 * statistics.median(comm_s), "load": load}))  # fmt: skip


def worker_allreduce(sizes: list[int], repeats: int) -> None:
    """Median time of an in-place float32 all-reduce (tinygan's communicator, so with its
    guard) for each size in bytes; each array written before each call (so not in cache)."""
    from tinygan import distributed as dist

    comm = dist.init()
    out = {}
    for nbytes in sizes:
        a = np.ones(nbytes // 4, np.float32)
        times = []
        for _ in range(repeats):
            a.fill(1.0)
            comm.barrier()
            t0 = time.perf_counter()
            comm.allreduce_(a)
            times.append(time.perf_counter() - t0)
        out[nbytes] = 1e3 * statistics.median(times)
    if comm.is_main:
        print(json.dumps(out))


def worker_overlap(repeats: int) -> None:
    """A 26 MB all-reduce (one weight gradient) and 20 ms of GEMMs: one after the other, and
    the all-reduce started non-blocking before the GEMMs and waited for after them."""
    from mpi4py import MPI

    from tinygan import distributed as dist

    comm = dist.init().comm
    g = np.ones(6_422_528, np.float32)
    a = np.random.default_rng(0).random((512, 512), dtype=np.float32)

    def compute():
        for _ in range(8):
            a @ a

    def serial():
        comm.Allreduce(MPI.IN_PLACE, g)
        compute()

    def overlapped():
        request = comm.Iallreduce(MPI.IN_PLACE, g)
        compute()
        request.Wait()

    out = {}
    for name, fn in (("compute", compute), ("serial", serial), ("overlapped", overlapped)) * 2:
        times = []
        for _ in range(repeats):
            comm.Barrier()
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = 1e3 * statistics.median(times)
    if comm.rank == 0:
        print(json.dumps(out))


def sync_bn_cost(batch: int, repeats: int) -> list[tuple[str, float, float, float]]:
    """Forward + backward (CPU ms, one thread) of the fused batch norm, of SyncBatchNorm's fused
    function (a world of one: its all-reduces copy, send nothing) and of its Tensor-op formula
    (what a second derivative differentiates; SyncBatchNorm's first-order path before it was
    fused) at the InfoGAN batch-norm shapes of one rank's half batch."""
    import tinygan as tg
    from tinygan import distributed as dist
    from tinygan.nn import functional as F

    comm, rng = dist.SingleProcess(), np.random.default_rng(0)
    half = batch // 2
    shapes = [(half, 1024), (half, 6272), (half, 64, 14, 14), (half, 128, 7, 7), (half, 128)]
    rows = []
    for shape in shapes:
        x = tg.tensor(rng.standard_normal(shape, dtype=np.float32), requires_grad=True)
        if len(shape) == 4:  # channels-last memory, as the convolutions produce
            x = tg.tensor(np.ascontiguousarray(x.data.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),
                          requires_grad=True)  # fmt: skip
        w, b = (tg.tensor(np.ones(shape[1], np.float32), requires_grad=True) for _ in range(2))
        g = rng.standard_normal(shape, dtype=np.float32)
        rm, rv = np.zeros(shape[1], np.float32), np.ones(shape[1], np.float32)

        def fused(x=x, w=w, b=b, g=g, rm=rm, rv=rv):
            F.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5).backward(g)

        def sync(x=x, w=w, b=b, g=g, rm=rm, rv=rv):
            dist.sync_batch_norm(x, tg.tensor(rm), tg.tensor(rv), w, b, 0.1, 1e-5, comm).backward(g)

        def ops(x=x, w=w, b=b, g=g):
            dist.SyncBatchNormFunction(comm, None, None, 0.1, 1e-5)._formula(x, w, b).backward(g)

        rows.append((str(shape), *(cpu_ms(f, repeats) for f in (fused, sync, ops))))
    return rows


def cpu_ms(fn, repeats: int) -> float:
    """Median CPU time (ms) of ``fn`` over ``repeats`` blocks of 5 calls, after 3 calls: on a
    shared machine a sub-millisecond op's wall time mostly measures the scheduler."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        for _ in range(5):
            fn()
        times.append((time.process_time() - t0) / 5)
    return 1e3 * statistics.median(times)


# ---- the driver ---------------------------------------------------------------------------------


def launch(kind: str, batch: int, steps: int, warmup: int) -> dict:
    ranks = 2 if kind.startswith("dp") else 1
    threads = "2" if kind in ("single", "torch") else "1"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--batch", str(batch),
           "--steps", str(steps), "--warmup", str(warmup)]  # fmt: skip
    if ranks > 1:
        cmd = [mpiexec(), "-n", str(ranks), *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def mpiexec() -> str:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    found = shutil.which("mpiexec", path=path)
    if found is None:
        sys.exit("bench_distributed needs mpiexec: pip install -e '.[distributed]'")
    return found


def run_mpi(args: list[str]) -> dict:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    cmd = [mpiexec(), "-n", "2", sys.executable, str(Path(__file__).resolve()), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "allreduce":
        worker_allreduce([1 << k for k in range(12, 26, 2)] + [26_000_000], 15)
        return
    if args.worker == "overlap":
        worker_overlap(10)
        return
    if args.worker == "bn":
        print(json.dumps(sync_bn_cost(args.batch, 20)))
        return
    if args.worker:
        worker_step(args.worker, args.batch, args.steps, args.warmup)
        return

    try:
        import torch  # noqa: F401

        kinds = ["single", "dp", "dp-local", "torch"]
    except ImportError:
        kinds = ["single", "dp", "dp-local"]
    start = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{start}; {os.cpu_count()} CPUs, load average at start "
          f"{os.getloadavg()[0]:.1f}; {args.rounds} rounds, {args.steps} steps each after "
          f"{args.warmup} warm-up; configurations interleaved")  # fmt: skip
    results: dict[tuple[str, int], list[dict]] = {}
    for r in range(args.rounds):
        for batch in args.batches:
            for kind in kinds:
                results.setdefault((kind, batch), []).append(
                    launch(kind, batch, args.steps, args.warmup)
                )
        print(f"round {r + 1} done, load average {os.getloadavg()[0]:.1f}", flush=True)

    def median(kind, batch, key="ms"):
        return statistics.median(x[key] for x in results[kind, batch])

    names = dict(zip(["single", "dp", "dp-local", "torch"], CONFIGS))
    print("\n| InfoGAN step, ms (median of rounds) | " + " | ".join(
        f"batch {b}" for b in args.batches) + " |")  # fmt: skip
    print("|---|" + "---|" * len(args.batches))
    for kind in kinds:
        cells = []
        for b in args.batches:
            ms, each = median(kind, b), ", ".join(f"{x['ms']:.0f}" for x in results[kind, b])
            ratio = f", {ms / median('torch', b):.2f}x PyTorch" if "torch" in kinds else ""
            cells.append(f"{ms:.0f} ({each}){ratio}")
        print(f"| {names[kind]} | " + " | ".join(cells) + " |")
    for kind in ("dp", "dp-local"):
        print(f"| {names[kind]}: in collectives | " + " | ".join(
            f"{median(kind, b, 'comm_ms'):.1f} ms = "
            f"{median(kind, b, 'comm_ms') / median(kind, b):.0%} of the step"
            for b in args.batches) + " |")  # fmt: skip
    loads = [x["load"] for v in results.values() for x in v]
    print(f"\nload average during the runs: {min(loads):.1f} to {max(loads):.1f}")

    sizes = run_mpi(["--worker", "allreduce"])
    print("\n| all-reduce, 2 ranks, float32 | ms | GB/s |\n|---|---|---|")
    xs, ys = [], []
    for nbytes, ms in sizes.items():
        nbytes = int(nbytes)
        xs.append(nbytes)
        ys.append(ms)
        print(f"| {nbytes / 1e6:.3f} MB | {ms:.3f} | {nbytes / ms / 1e6:.2f} |")
    beta = np.polyfit(xs[-4:], ys[-4:], 1)[0]  # the large messages: bandwidth
    print(f"fit on the 4 largest: t = {ys[0]:.3f} ms (smallest message) + {beta * 1e6:.2f} ms/MB "
          f"({1 / beta / 1e6:.2f} GB/s)")  # fmt: skip
    overlap = run_mpi(["--worker", "overlap"])
    print(f"\noverlap, 26 MB all-reduce + {overlap['compute']:.1f} ms of GEMMs: one after the "
          f"other {overlap['serial']:.1f} ms, non-blocking all-reduce around the GEMMs "
          f"{overlap['overlapped']:.1f} ms")  # fmt: skip
    for b in args.batches[:1]:
        print(
            f"\n| batch norm fwd+bwd, one rank's half of batch {b}, CPU ms | F.batch_norm | "
            "SyncBatchNorm | ratio | its Tensor-op formula | ratio |"
        )
        print("|---|---|---|---|---|---|")
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}  # as in a rank
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "bn", "--batch", str(b)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        for shape, fused, sync, ops in json.loads(done.stdout.strip().splitlines()[-1]):
            print(f"| {shape} | {fused:.2f} | {sync:.2f} | {sync / fused:.2f} | {ops:.2f} | "
                  f"{ops / fused:.2f} |")  # fmt: skip
    print(f"\nfinished {time.strftime('%H:%M:%S')}, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
