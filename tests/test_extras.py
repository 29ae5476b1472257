"""The install extras a GPU user picks (README, "GPU"): each brings what CuPy needs for tinygan's
kernels (NVRTC, through CuPy's ``ctk`` extra) and for its NCCL path, for CUDA 12 and CUDA 13;
and bench/gpu_check.sh installs only extras that exist."""

from __future__ import annotations

import configparser
import re

import pytest

from .conftest import ROOT


def extras() -> dict[str, list[str]]:
    """setup.cfg's extras: name -> requirements."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return {name: value.split() for name, value in config["options.extras_require"].items()}


@pytest.mark.parametrize("cuda", ["12", "13"])
def test_the_cuda_extras_bring_nvrtc_and_nccl(cuda):
    # CuPy's ctk extra is cuda-toolkit[cublas,cudart,cufft,curand,cusolver,cusparse,nvrtc]
    requirements = extras()[f"cuda{cuda}"]
    assert any(r.startswith(f"cupy-cuda{cuda}x[ctk]") for r in requirements), requirements
    assert any(r.startswith(f"nvidia-nccl-cu{cuda}") for r in requirements), requirements


def test_the_cuda_extra_is_cuda12():  # what a CUDA 12 or 13 driver runs, on any GPU CuPy supports
    assert extras()["cuda"] == ["tinygan[cuda12]"]


def test_gpu_check_installs_extras_that_exist():
    script = (ROOT / "bench" / "gpu_check.sh").read_text()
    installed = set(re.findall(r"\bextra=(\w+)", script))
    assert installed == {"cuda12", "cuda13"}
    assert installed <= set(extras())
