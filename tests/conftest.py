"""Shared test set-up: hypothesis profiles and the ``xp`` backend fixture.

HYPOTHESIS_PROFILE=dev|ci|thorough picks how many examples each property test draws
(default: ci, or dev when running one file by hand is what you want).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from tinygan import backend

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=10, **_common)
settings.register_profile("ci", max_examples=30, derandomize=True, **_common)
settings.register_profile("thorough", max_examples=500, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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
