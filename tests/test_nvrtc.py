"""Every CUDA kernel of tinygan/kernels/cuda.py compiled by NVRTC, without a GPU, through CuPy's own
compile path (tests/cuda_build.py), for the A100's and the H100's architectures.

Needs CuPy, NVRTC and the CUDA headers from their pip wheels (what .ci/run installs); without
them the tests are skipped, with the reason, unless TINYGAN_REQUIRE_NVRTC=1 (CI), which turns
the skip into a failure. bench/nvrtc_check.py runs the same compiles for a GPU at hand.
"""

from __future__ import annotations

import os

import pytest

from tests import cuda_build
from tinygan.kernels import cuda

_missing = cuda_build.nvrtc_missing()
if _missing and os.environ.get("TINYGAN_REQUIRE_NVRTC") == "1":
    raise RuntimeError(f"TINYGAN_REQUIRE_NVRTC=1, but {_missing}")
pytestmark = pytest.mark.skipif(_missing is not None, reason=str(_missing))

RAW = sorted(cuda_build.raw_sources())
ELEMENTWISE = sorted(cuda._ELEMENTWISE)


def check_cubin(cubin: bytes, kernel: str, arch: str) -> None:
    assert cuda_build.cubin_arch(cubin) == arch
    assert kernel.encode() in cubin  # the kernel's symbol


def test_every_kernel_is_listed():
    assert RAW == ["col2im", "im2col"]
    assert ELEMENTWISE == ["adam_update", "leaky_relu_backward", "leaky_relu_forward"]


@pytest.mark.parametrize("arch", cuda_build.ARCHS)
@pytest.mark.parametrize("dtype", cuda_build.DTYPES)
@pytest.mark.parametrize("name", RAW)
def test_raw_kernel_compiles(name, dtype, arch):
    check_cubin(cuda_build.compile_raw(name, dtype, arch), name, arch)


@pytest.mark.parametrize("arch", cuda_build.ARCHS)
@pytest.mark.parametrize("dtype", cuda_build.DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_kernel_compiles(name, dtype, arch):
    check_cubin(cuda_build.compile_elementwise(name, dtype, arch), f"tinygan_{name}", arch)


@pytest.mark.parametrize("dtype", cuda_build.DTYPES)
def test_elementwise_code_is_cupys_for_the_launchers_arguments(dtype):
    # adam_update's launcher passes grad as an array and seven scalars, then param, m, v in place
    kernel = cuda_build.elementwise_kernel("adam_update")
    code = cuda_build.elementwise_code(kernel, cuda_build.elementwise_calls(dtype)["adam_update"])
    t = cuda._ctype(dtype)
    assert f"typedef {t} T;" in code
    assert f"const CArray<{t}, 1, 1, 1> _raw_grad, const {t} step_size," in code
    assert f"CArray<{t}, 1, 1, 1> _raw_v, CIndexer<1, 1> _ind)" in code
    assert "T &param = _raw_param[_ind.get()];" in code


@pytest.mark.parametrize("what", sorted(cuda_build.planted_errors()))
def test_planted_error_fails_to_compile(what):
    from cupy.cuda.compiler import CompileException

    with pytest.raises(CompileException, match=cuda_build.PLANTED_ERROR):
        cuda_build.planted_errors()[what]("90")
