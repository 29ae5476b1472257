"""Compile every CUDA kernel of tinygan/kernels/cuda.py with NVRTC as CuPy does before a launch,
in float32 and float64, for the given GPU architectures, or with ``--arch native`` for the GPU at
hand (CuPy's choice for it), whose driver then loads each cubin. Kernels with a planted error
must fail to compile.

    python bench/nvrtc_check.py [--arch 80 90 | --arch native]

tests/test_nvrtc.py runs the same compiles in CI (both through tests/cuda_build.py); this is for
the device check (bench/gpu_check.sh) and a look at sizes and times. Needs CuPy with NVRTC and
the CUDA headers (the ``cuda12``/``cuda13`` extras; no GPU unless ``native``). Exits 1 if a
kernel fails to compile or to load, or a planted error compiles.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import cuda_build  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=list(cuda_build.ARCHS),
                        help="compute capabilities without the dot (default: %(default)s), or "
                             "'native': the GPU's, and load the results")  # fmt: skip
    args = parser.parse_args(argv)
    missing = cuda_build.nvrtc_missing()
    if missing:
        print(f"FAILED: {missing}")
        return 1
    from cupy.cuda import compiler, nvrtc

    native = args.arch == ["native"]
    try:
        archs = [compiler._get_arch()] if native else args.arch
    except Exception as e:  # CUDARuntimeError: no GPU, or a driver too old
        print(f"FAILED: --arch native needs a usable GPU: {type(e).__name__}: {e}")
        return 1
    where = " (this GPU's)" if native else ""
    print(f"NVRTC {'.'.join(map(str, nvrtc.getVersion()))}; architectures "
          f"{', '.join(f'sm_{a}' for a in archs)}{where}")  # fmt: skip
    failures, compiled = [], 0
    for arch in archs:
        for name, dtype, compile_one in cuda_build.kernel_compiles(arch, load=native):
            what = f"sm_{arch} {name:20s} {dtype:8s}"
            t0 = time.perf_counter()
            try:  # CompileException, or the driver's error loading the cubin
                cubin = compile_one()
                built = cuda_build.cubin_arch(cubin)
            except Exception as e:
                print(f"{what} FAILED: {type(e).__name__}: {str(e).rstrip()}")
                failures.append(f"{name} {dtype} sm_{arch}")
                continue
            print(f"{what} {len(cubin):7d} bytes  {time.perf_counter() - t0:5.2f} s"
                  + ("" if built == arch else f"  FAILED: built for sm_{built}"))  # fmt: skip
            if built != arch:
                failures.append(f"{name} {dtype} sm_{arch}")
            compiled += built == arch
        for what, compile_planted in cuda_build.planted_errors().items():
            try:
                compile_planted(arch)
                error = "it compiled"
            except compiler.CompileException as e:
                error = str(e).splitlines()[0]
            if cuda_build.PLANTED_ERROR in error:
                print(f"sm_{arch} planted error ({what}) rejected: {error}")
            else:
                print(f"sm_{arch} FAILED: the planted error ({what}): {error}")
                failures.append(f"planted error not rejected as such: {what}")
    loaded = " and loaded" if native else ""
    if failures:
        print(f"FAILED: {'; '.join(failures)} ({compiled} compiled{loaded})")
        return 1
    planted = len(cuda_build.planted_errors()) * len(archs)
    print(f"nvrtc ok: {compiled} kernels compiled{loaded}, {planted} planted errors rejected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
