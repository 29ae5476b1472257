"""Benchmark one full InfoGAN training step (D step + G step, the paper's MNIST networks) in
tinygan and in PyTorch (same networks, losses and update order) in the same process; also
forward+backward of linear, batch_norm and leaky_relu at the model's shapes.

    python bench/bench_step.py [--batches 64 128] [--repeats 15] [--warmup 3] [--device cuda]

The two steps take turns, a few steps each (``interleaved_ms``), so that both see the machine's
slow and fast minutes alike. Prints ms (median after warm-up), the tinygan/PyTorch ratio (the
median over the rounds of the two blocks' ratio), achieved GFLOP/s (GEMM FLOPs of the
step counted analytically, ``step_gemms``), the peak memory a step adds (measured in a fresh
subprocess per library and batch: the high-water mark after the steps minus the resident size
before them), and the step's GEMMs alone (NumPy's ``matmul`` and PyTorch's at the step's shapes:
the part that no framework code can shave off). Both libraries run with the allocator setting
the training entry points apply (``tinygan.runner.tune_allocator``).

With ``--device cuda`` it times the step on the GPU instead (tinygan through CuPy, PyTorch
CUDA), with CUDA events; the batch is on the device before the step, the latents are drawn on
the host and copied in by both, and both read their six metrics back at the end of the step.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import bench_conv  # beside this file
import numpy as np

import tinygan as tg
from tinygan.models import InfoGAN, LatentSpec
from tinygan.nn import functional as F
from tinygan.runner import tune_allocator

try:
    import torch
except ImportError:
    torch = None

SPEC = LatentSpec()


def step_gemms(batch: int) -> list[tuple[str, int, int, int, int]]:
    """The GEMMs of one training step: (layer and role, M, K, N, calls per step).

    G's layers run forward once and backward once (weight and input grads; no input grad for
    the first layer, whose input is the latent). D's layers run forward three times (real and
    fake in the D step, fake in the G step), weight grads twice (D step), input grads twice in
    the D step and once in the G step (all layers but the first in the D step: images need no
    gradient; in the G step it flows on into G). Q's head sees only fake images: forward and
    input grad twice, weight grad once. Convolutions: M = N*OH*OW grid rows; K = kH*kW*C_in
    (conv2d) or C_in (conv_transpose2d).
    """
    b, q = batch, SPEC.q_dim
    m7, m14 = b * 7 * 7, b * 14 * 14
    return [
        ("G fc 74->1024 fwd / dW", b, SPEC.dim, 1024, 2),
        ("G fc 1024->6272 fwd, dX, dW", b, 1024, 6272, 3),
        ("G convT 128->64 fwd, dX, dW", m7, 128, 1024, 3),
        ("G convT 64->1 fwd, dX, dW", m14, 64, 16, 3),
        ("D conv 1->64 fwd x3, dW x2, dX x1", m14, 16, 64, 6),
        ("D conv 64->128 fwd x3, dW x2, dX x3", m7, 1024, 128, 8),
        ("D fc 6272->1024 fwd x3, dW x2, dX x3", b, 6272, 1024, 8),
        ("D head 1024->1 fwd x3, dW x2, dX x3", b, 1024, 1, 8),
        ("Q fc 1024->128 fwd x2, dW x1, dX x2", b, 1024, 128, 5),
        ("Q fc 128->12 fwd x2, dW x1, dX x2", b, 128, q, 5),
    ]


def step_gflop(batch: int) -> float:
    """GEMM FLOPs of one training step (2*M*K*N per GEMM of ``step_gemms``)."""
    return sum(2 * m * k * n * calls for _, m, k, n, calls in step_gemms(batch)) / 1e9


def gemms_alone(batch: int, matmul) -> Callable[[], None]:
    """A function that runs every GEMM of the step, at its shape, ``calls`` times, through
    ``matmul(a, b)`` on float32 arrays: the step with everything but its GEMMs taken out."""
    rng = np.random.default_rng(0)
    pairs = [(rng.standard_normal((m, k), dtype=np.float32),
              rng.standard_normal((k, n), dtype=np.float32), calls)
             for _, m, k, n, calls in step_gemms(batch)]  # fmt: skip

    def run():
        for a, b, calls in pairs:
            for _ in range(calls):
                matmul(a, b)

    return run


def tinygan_step(batch: int, device: str = "cpu"):
    model = InfoGAN(SPEC, seed=0, device=device)
    x = np.random.default_rng(0).random((batch, 1, 28, 28), dtype=np.float32)
    x = tg.backend.to_device(x, device)  # the batch already on the device, as a loader would
    rng = np.random.default_rng(1)
    return lambda: model.train_step(x, rng)


def torch_step(batch: int, device: str = "cpu"):
    """The same step in PyTorch; like tinygan's ``train_step`` it returns its six metrics as
    Python floats (``.item()``), so that on a GPU both synchronise the same way."""
    nn = torch.nn
    torch.manual_seed(0)
    G = nn.Sequential(
        nn.Linear(SPEC.dim, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
        nn.Linear(1024, 6272), nn.BatchNorm1d(6272), nn.ReLU(), nn.Unflatten(1, (128, 7, 7)),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Sigmoid(),
    )  # fmt: skip
    body = nn.Sequential(
        nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.1),
        nn.Conv2d(64, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU(0.1), nn.Flatten(),
        nn.Linear(6272, 1024), nn.BatchNorm1d(1024), nn.LeakyReLU(0.1),
    )  # fmt: skip
    d_head = nn.Linear(1024, 1)
    q_head = nn.Sequential(nn.Linear(1024, 128), nn.BatchNorm1d(128), nn.LeakyReLU(0.1),
                           nn.Linear(128, SPEC.q_dim))  # fmt: skip
    for module in (G, body, d_head, q_head):
        module.to(device)
    d_params = [*body.parameters(), *d_head.parameters(), *q_head.parameters()]
    opt_d = torch.optim.Adam(d_params, lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
    x = torch.from_numpy(np.random.default_rng(0).random((batch, 1, 28, 28), dtype=np.float32))
    x = x.to(device)
    rng = np.random.default_rng(1)
    bce, ce = (
        torch.nn.functional.binary_cross_entropy_with_logits,
        torch.nn.functional.cross_entropy,
    )

    def D(images):
        h = body(images)
        return d_head(h).reshape(-1), q_head(h)

    def info(q, cats, cont):
        nll = (0.5 * (q[:, 10:] - cont) ** 2 + 0.5 * np.log(2 * np.pi)).sum(1).mean()
        return ce(q[:, :10], cats), nll

    def step():
        latent = SPEC.sample(batch, rng)
        cats = torch.from_numpy(latent.categories[:, 0]).to(device)
        cont = torch.from_numpy(latent.continuous).to(device)
        fake = G(torch.from_numpy(latent.vector()).to(device))
        ones, zeros = torch.ones(batch, device=device), torch.zeros(batch, device=device)
        d_real, _ = D(x)
        d_fake, q = D(fake.detach())
        d_loss = bce(d_real, ones) + bce(d_fake, zeros)
        cat_ce, cont_nll = info(q, cats, cont)
        opt_d.zero_grad()
        (d_loss + cat_ce + 0.1 * cont_nll).backward()
        opt_d.step()
        for p in d_params:
            p.requires_grad_(False)
        d_fake_g, q = D(fake)
        g_loss = bce(d_fake_g, ones)
        cat_g, cont_g = info(q, cats, cont)
        opt_g.zero_grad()
        (g_loss + cat_g + 0.1 * cont_g).backward()
        opt_g.step()
        for p in d_params:
            p.requires_grad_(True)
        with torch.no_grad():
            return {"d_loss": d_loss.item(), "g_loss": g_loss.item(),
                    "info_cat": SPEC.categorical_entropy - cat_ce.item(),
                    "info_cont": SPEC.continuous_entropy - cont_nll.item(),
                    "d_real": torch.sigmoid(d_real).mean().item(),
                    "d_fake": torch.sigmoid(d_fake).mean().item()}  # fmt: skip

    return step


def layer_cases(batch: int):
    """(name, tinygan fwd+bwd, torch fwd+bwd or None) at the model's shapes."""
    rng = np.random.default_rng(0)
    x_fc = rng.standard_normal((batch, 6272), dtype=np.float32)
    w_fc = 0.01 * rng.standard_normal((1024, 6272), dtype=np.float32)
    b_fc = np.zeros(1024, np.float32)
    x_bn = np.ascontiguousarray(rng.standard_normal((batch, 7, 7, 128), dtype=np.float32))
    x_bn = x_bn.transpose(0, 3, 1, 2)  # NCHW view of NHWC memory, as conv outputs are
    gamma, beta = np.ones(128, np.float32), np.zeros(128, np.float32)
    x_lr = rng.standard_normal((batch, 64, 14, 14), dtype=np.float32)
    cases = {
        "linear 6272->1024": (lambda m: m.linear, (x_fc, w_fc, b_fc), {}),
        "batch_norm2d 128ch 7x7": (
            lambda m: (lambda a, g, b: m.batch_norm(a, None, None, g, b, training=True)),
            (x_bn, gamma, beta), {},
        ),
        "leaky_relu 64x14x14": (lambda m: (lambda a: m.leaky_relu(a, 0.1)), (x_lr,), {}),
    }  # fmt: skip
    out = []
    for name, (get, arrays, _) in cases.items():

        def ours(get=get, arrays=arrays):
            ts = [tg.tensor(a, requires_grad=True) for a in arrays]
            y = get(F)(*ts)
            y.backward(np.ones(y.shape, np.float32))

        theirs = None
        if torch is not None:

            def theirs(get=get, arrays=arrays):
                ts = [torch.from_numpy(np.ascontiguousarray(a)).requires_grad_() for a in arrays]
                y = get(torch.nn.functional)(*ts)
                y.backward(torch.ones_like(y))

        out.append((name, ours, theirs))
    return out


def cuda_median_ms(fn, repeats: int, warmup: int, lib: str) -> float:
    """Median time (ms) of ``fn`` on the GPU, after ``warmup`` calls: measured between two CUDA
    events recorded on the current stream around each call (CuPy's events for tinygan,
    PyTorch's for torch), waiting for the second one before the next call."""
    if lib == "tinygan":
        import cupy

        event, elapsed = cupy.cuda.Event, cupy.cuda.get_elapsed_time
    else:
        event, elapsed = (
            (lambda: torch.cuda.Event(enable_timing=True)),
            (lambda a, b: a.elapsed_time(b)),
        )
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = event(), event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(elapsed(start, end))
    return float(np.median(times))


def main_cuda(batches: list[int], repeats: int, warmup: int) -> None:
    """The step on the GPU: tinygan (CuPy) against PyTorch CUDA on the same device."""
    tg.backend.check_device("cuda")  # a clear error without CuPy or a GPU
    import cupy

    name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"].decode()
    print(f"float32 on {name}; CUDA-event median of {repeats} after {warmup} warm-up")
    print("\n| InfoGAN step (GPU) | tinygan ms | GFLOP/s | torch ms | GFLOP/s | ratio |")
    print("|---|---|---|---|---|---|")
    for b in batches:
        gf = step_gflop(b)
        ours = cuda_median_ms(tinygan_step(b, "cuda"), repeats, warmup, "tinygan")
        row = f"| batch {b} ({gf:.1f} GFLOP) | {ours:.2f} | {gf / ours * 1e3:.0f} |"
        if torch is not None and torch.cuda.is_available():
            theirs = cuda_median_ms(torch_step(b, "cuda"), repeats, warmup, "torch")
            row += f" {theirs:.2f} | {gf / theirs * 1e3:.0f} | {ours / theirs:.2f} |"
        print(row)


def median_ms(fn, repeats: int, warmup: int) -> float:
    """Median wall time of ``fn`` in ms, after ``warmup`` calls (``bench_conv.median_ms``)."""
    return bench_conv.median_ms([fn], repeats, warmup)[0]


def interleaved_ms(fns, repeats: int, warmup: int, block: int = 3) -> tuple[list[float], float]:
    """Each function's median step time (ms), the functions taking turns in blocks of ``block``
    calls (after ``warmup`` calls each), so that every one sees the machine's slow and fast
    minutes alike; a pause before each block lets the other library's spinning worker threads
    go to sleep. Also the median over the rounds of the first two's ratio of block medians."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    ratios = []
    for _ in range(-(-repeats // block)):
        medians = []
        for fn, ts in zip(fns, times):
            time.sleep(0.3)
            mine = []
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                mine.append(time.perf_counter() - t0)
            ts.extend(mine)
            medians.append(statistics.median(mine))
        if len(medians) > 1:
            ratios.append(medians[0] / medians[1])
    return [1e3 * statistics.median(ts) for ts in times], (
        statistics.median(ratios) if ratios else math.nan
    )


def peak_mb(lib: str, batch: int, tune: bool) -> float:
    """Peak resident memory that the model, its optimiser state and three steps add, in MB:
    measured in a fresh process as the high-water mark (VmHWM, reset first through
    /proc/self/clear_refs) minus the resident size before the model was built (Linux only)."""
    code = (
        "import sys; sys.path.insert(0, 'bench'); import bench_step as b; "
        + ("b.tune_allocator(); " if tune else "")
        + "b.step_memory(b.tinygan_step if sys.argv[1] == 'tinygan' else b.torch_step, "
        "int(sys.argv[2]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, lib, str(batch)], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def step_memory(make_step, batch: int) -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark to the current resident size
    before = _status_kb("VmRSS")
    step = make_step(batch)
    for _ in range(3):
        step()
    print((_status_kb("VmHWM") - before) / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--malloc-defaults", action="store_true", help="leave glibc's malloc as it is (A/B)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    if args.device == "cuda":
        main_cuda(args.batches, args.repeats, args.warmup)
        return
    if not args.malloc_defaults:
        tune_allocator()
    print(f"float32; median of {args.repeats} steps after {args.warmup} warm-up, the two "
          "libraries taking turns in blocks of 3 (ratio: median over the rounds); "
          f"numpy {np.__version__}, torch {torch.__version__ if torch else 'absent'}")  # fmt: skip
    print(
        "\n| InfoGAN step | tinygan ms | GFLOP/s | peak MB | torch ms | GFLOP/s | peak MB | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for b in args.batches:
        gf = step_gflop(b)
        steps = [tinygan_step(b)] + ([torch_step(b)] if torch is not None else [])
        medians, ratio = interleaved_ms(steps, args.repeats, args.warmup)
        ours, mem = medians[0], peak_mb("tinygan", b, not args.malloc_defaults)
        row = f"| batch {b} ({gf:.1f} GFLOP) | {ours:.0f} | {gf / ours * 1e3:.0f} | {mem:.0f} |"
        if torch is not None:
            theirs, mem = medians[1], peak_mb("torch", b, not args.malloc_defaults)
            row += f" {theirs:.0f} | {gf / theirs * 1e3:.0f} | {mem:.0f} | {ratio:.2f} |"
        print(row)
        # the floor of this design: the step's GEMMs alone, at their shapes, nothing else
        ours = median_ms(gemms_alone(b, np.matmul), args.repeats, args.warmup)
        row = f"| batch {b}, its GEMMs alone | {ours:.0f} | {gf / ours * 1e3:.0f} | |"
        if torch is not None:
            torch_mm = lambda x, y: torch.from_numpy(x) @ torch.from_numpy(y)  # noqa: E731
            theirs = median_ms(gemms_alone(b, torch_mm), args.repeats, args.warmup)
            row += f" {theirs:.0f} | {gf / theirs * 1e3:.0f} | | {ours / theirs:.2f} |"
        print(row)
    for b in args.batches[:1]:
        print(f"\n| layer fwd+bwd, batch {b} | tinygan ms | torch ms | ratio |\n|---|---|---|---|")
        for name, ours_fn, theirs_fn in layer_cases(b):
            ours = median_ms(ours_fn, 4 * args.repeats, args.warmup)
            row = f"| {name} | {ours:.2f} |"
            if theirs_fn is not None:
                theirs = median_ms(theirs_fn, 4 * args.repeats, args.warmup)
                row += f" {theirs:.2f} | {ours / theirs:.2f} |"
            print(row)


if __name__ == "__main__":
    main()
