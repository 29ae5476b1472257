"""Benchmark conv2d / conv_transpose2d forward+backward at the InfoGAN MNIST shapes (float32).

Prints, per layer: tinygan's forward and forward+backward times (median over repeats after
warm-up), PyTorch's in the same process when it is importable, the ratio, and GFLOP/s
(forward + backward = 3 GEMMs of 2*M*K*N FLOP each); then im2col/col2im alone, and the float32
GEMM ceiling of NumPy's BLAS on this machine (a (3136 x 1024) @ (1024 x 128) matmul, the
largest GEMM of the model's convs).

    python bench/bench_conv.py [--batch 64] [--repeats 30] [--warmup 5]

All inputs, weight and bias require grad (as for D on generated images). Each library gets
its arrays in the layout it produces in the model: torch NCHW; tinygan NHWC memory for the
upstream gradient and for inputs that are a conv's output (NCHW for the image and G's reshaped
FC output).

On a small VM the numbers swing with the machine's neighbours: run it twice. Two settings of
the environment matter a lot here: OPENBLAS_CORETYPE (this image sets Haswell, i.e. AVX2; the
CPU has AVX-512, and SkylakeX kernels run NumPy's float32 GEMM up to 2x faster) and glibc's
malloc returning large freed buffers to the OS (the "faults" column: minor page faults per
step; MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ keep them in the process).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

import tinygan as tg
from tinygan import kernels
from tinygan.kernels.shapes import conv_out_size, conv_transpose_out_size
from tinygan.ops.conv import conv2d, conv_transpose2d
from tinygan.runner import tune_allocator

try:
    import torch
except ImportError:
    torch = None


class Layer(NamedTuple):
    name: str
    transpose: bool
    c_in: int
    c_out: int
    size: int  # input height = width
    kernel: int = 4
    stride: int = 2
    padding: int = 1
    input_from_conv: bool = False  # in the model, x is a conv's output (NHWC memory in tinygan)

    @property
    def out_size(self) -> int:
        k, s, p = self.kernel, self.stride, self.padding
        if self.transpose:
            return conv_transpose_out_size(self.size, k, s, p, 0, 1)
        return conv_out_size(self.size, k, s, p, 1)

    def gflop(self, batch: int) -> float:
        """Forward + backward: three GEMMs of the same size (fwd, input grad, weight grad)."""
        grid = self.size if self.transpose else self.out_size
        small, big = (self.c_out, self.c_in) if self.transpose else (self.c_in, self.c_out)
        return 3 * 2 * batch * grid * grid * self.kernel * self.kernel * small * big / 1e9


LAYERS = [
    Layer("D conv 1->64, 28->14", False, 1, 64, 28),
    Layer("D conv 64->128, 14->7", False, 64, 128, 14, input_from_conv=True),
    Layer("G convT 128->64, 7->14", True, 128, 64, 7),
    Layer("G convT 64->1, 14->28", True, 64, 1, 14, input_from_conv=True),
]


def median_ms(fns: list[Callable[[], object]], repeats: int, warmup: int) -> list[float]:
    """Median wall time (ms) of each function, each timed in its own block of calls (taking
    turns call by call would make NumPy's and PyTorch's spinning thread pools fight)."""
    out = []
    for fn in fns:
        time.sleep(0.5)  # let the other library's spinning worker threads go to sleep
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out.append(1e3 * statistics.median(times))
    return out


def faults_per_call(fn: Callable[[], object], calls: int = 5) -> float:
    """Minor page faults per call: memory handed back to the OS and touched again."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def arrays(layer: Layer, batch: int, rng: np.random.Generator):
    x = rng.standard_normal((batch, layer.c_in, layer.size, layer.size), dtype=np.float32)
    w_shape = (layer.c_in, layer.c_out) if layer.transpose else (layer.c_out, layer.c_in)
    w = 0.05 * rng.standard_normal((*w_shape, layer.kernel, layer.kernel), dtype=np.float32)
    b = rng.standard_normal(layer.c_out, dtype=np.float32)
    u = rng.standard_normal((batch, layer.c_out, layer.out_size, layer.out_size), dtype=np.float32)
    return x, w, b, u


def channels_last(a: np.ndarray) -> np.ndarray:
    """The same NCHW values, stored NHWC (as tinygan's conv outputs, and their gradients, are)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def tinygan_step(layer: Layer, x, w, b, u, backward: bool) -> Callable[[], object]:
    fn = conv_transpose2d if layer.transpose else conv2d
    x, u = channels_last(x) if layer.input_from_conv else x, channels_last(u)
    kw = dict(stride=layer.stride, padding=layer.padding)

    def step():
        ts = [tg.tensor(a, requires_grad=True) for a in (x, w, b)]
        y = fn(*ts, **kw)
        if backward:
            y.backward(u)
        return y

    return step


def torch_step(layer: Layer, x, w, b, u, backward: bool) -> Callable[[], object]:
    f = torch.nn.functional
    fn = f.conv_transpose2d if layer.transpose else f.conv2d
    kw = dict(stride=layer.stride, padding=layer.padding)
    u_t = torch.from_numpy(u)

    def step():
        ts = [torch.from_numpy(a).requires_grad_() for a in (x, w, b)]
        y = fn(*ts, **kw)
        if backward:
            y.backward(u_t)
        return y

    return step


def environment() -> str:
    """What decides the numbers besides the code: library versions, threads, and the settings
    of OpenBLAS and glibc's malloc that this machine turned out to be sensitive to."""
    text = f"numpy {np.__version__}"
    if torch is not None:
        text += f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
    names = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "MALLOC_MMAP_THRESHOLD_",
             "MALLOC_TRIM_THRESHOLD_")  # fmt: skip
    settings = ", ".join(f"{n}={os.environ[n]}" for n in names if n in os.environ)
    return f"{text}; {os.cpu_count()} CPUs; {settings or 'no OpenBLAS/malloc settings'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--malloc-defaults", action="store_true", help="leave glibc's malloc as it is (A/B)"
    )
    args = parser.parse_args()
    tuned = not args.malloc_defaults and tune_allocator()  # as the training entry points do
    rng = np.random.default_rng(0)
    r, wu = args.repeats, args.warmup
    print(f"float32, batch {args.batch}, median of {r} after {wu} warm-up\n{environment()}")
    print(f"malloc: {'tinygan.runner.tune_allocator' if tuned else 'glibc defaults'}\n")

    a = rng.standard_normal((3136, 1024), dtype=np.float32)
    bmat = rng.standard_normal((1024, 128), dtype=np.float32)
    (gemm,) = median_ms([lambda: a @ bmat], r, wu)
    gflop = 2 * 3136 * 1024 * 128 / 1e9
    rate = gflop / gemm * 1e3
    print(f"GEMM ceiling, NumPy (3136x1024 @ 1024x128): {gemm:.2f} ms, {rate:.0f} GFLOP/s")
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(bmat)
        (t_gemm,) = median_ms([lambda: ta @ tb], r, wu)
        print(f"GEMM, torch (same shapes):                  {t_gemm:.2f} ms, "
              f"{gflop / t_gemm * 1e3:.0f} GFLOP/s")  # fmt: skip

    head = f"\n{'layer':<24}{'fwd ms':>8}{'fwd+bwd':>9}{'GFLOP/s':>9}{'faults':>8}"
    if torch is not None:
        head += f"{'torch fwd':>11}{'fwd+bwd':>9}{'GFLOP/s':>9}{'faults':>8}{'ratio':>7}"
    print(head)
    total = [0.0, 0.0]
    for layer in LAYERS:
        x, w, b, u = arrays(layer, args.batch, rng)
        steps = [tinygan_step(layer, x, w, b, u, False), tinygan_step(layer, x, w, b, u, True)]
        if torch is not None:
            steps += [torch_step(layer, x, w, b, u, False), torch_step(layer, x, w, b, u, True)]
        ms = median_ms(steps, r, wu)
        gflop = layer.gflop(args.batch)
        faults = faults_per_call(steps[1])
        t_faults = faults_per_call(steps[3]) if torch is not None else 0
        line = f"{layer.name:<24}{ms[0]:8.2f}{ms[1]:9.2f}{gflop / ms[1] * 1e3:9.0f}{faults:8.0f}"
        total[0] += ms[1]
        if torch is not None:
            line += f"{ms[2]:11.2f}{ms[3]:9.2f}{gflop / ms[3] * 1e3:9.0f}{t_faults:8.0f}"
            line += f"{ms[1] / ms[3]:7.2f}"
            total[1] += ms[3]
        print(line)
    line = f"{'total':<24}{'':8}{total[0]:9.2f}{'':17}"
    if torch is not None:
        line += f"{'':11}{total[1]:9.2f}{'':17}{total[0] / total[1]:7.2f}"
    print(line + "\n")

    print(f"{'kernel alone (NHWC)':<48}{'ms':>6}")
    for layer in LAYERS[:2]:  # the transposed layers have the same two geometries, reversed
        image, grid, c = layer.size, layer.out_size, layer.c_in
        k, s, p = (layer.kernel,) * 2, (layer.stride,) * 2, (layer.padding,) * 2
        x = rng.standard_normal((args.batch, image, image, c), dtype=np.float32)
        cols = kernels.im2col(x, *k, s, p, (1, 1), (grid, grid))
        ms = median_ms(
            [lambda: kernels.im2col(x, *k, s, p, (1, 1), (grid, grid)),  # noqa: B023
             lambda: kernels.col2im(cols, (image, image), s, p, (1, 1))],  # noqa: B023
            r, wu,
        )  # fmt: skip
        shape = f"{image}x{image}x{c} <-> {grid}x{grid}x{k[0]}x{k[1]}x{c}"
        print(f"  im2col {shape:<40}{ms[0]:6.2f}\n  col2im {shape:<40}{ms[1]:6.2f}")


if __name__ == "__main__":
    main()
