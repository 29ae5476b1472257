"""Shared test set-up: hypothesis profiles and the ``xp`` backend fixture.

HYPOTHESIS_PROFILE=dev|ci|thorough picks how many examples each property test draws
(default: ci, or dev when running one file by hand is what you want).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from tinygan import backend

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=10, **_common)
settings.register_profile("ci", max_examples=30, derandomize=True, **_common)
settings.register_profile("thorough", max_examples=500, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"  # the real MNIST files beside the checkout


@pytest.fixture
def mnist_dir() -> str:
    """The folder holding the real MNIST files (as ``--data-dir``); skips the test without it."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"the MNIST test split is not at {SHARED_DATA / 'mnist'}")
    return str(SHARED_DATA)


@pytest.fixture
def example(monkeypatch):
    """Import a script of ``examples/`` by module name, e.g. ``example("vae_mnist").main(argv)``."""
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    return importlib.import_module


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs CuPy and a CUDA GPU (skipped without one)")


def pytest_collection_modifyitems(config, items):
    if backend.cuda_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU / CuPy on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module a backend test runs on: numpy always, cupy where a GPU is present."""
    if request.param == "numpy":
        return np
    import cupy

    return cupy
