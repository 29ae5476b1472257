"""Shared test set-up: hypothesis profiles, the device for ``gpu`` tests, the ``xp`` backend
fixture, and outcome tests.

Tests marked ``gpu`` run on every machine: on the real CuPy where it sees a GPU, else on the
test-only stand-in ``tests/cupy_standin.py`` (NumPy underneath, CuPy's rules enforced), to
which ``tinygan.backend`` is pointed for the test's duration. Such a test reaches CuPy only
through ``backend.cupy()`` (never ``import cupy``), so that it gets whichever is in use.

HYPOTHESIS_PROFILE=dev|ci|thorough picks how many examples each property test draws
(default: ci, or dev when running one file by hand is what you want).

Tests marked ``outcome`` assert what training (or estimation from samples) achieves: a
statistical claim that must hold for any seed and BLAS kernel. Each adds ``seed_offset``
(``--seed-offset N``, default 0) to every seed it uses and states its claims through the
``outcome`` fixture, which also appends them to the JSON-lines file named by
``TINYGAN_OUTCOME_LOG`` (``bench/outcome_matrix.py`` reads it). ``-m outcome`` runs only these.
"""

from __future__ import annotations

import importlib
import json
import operator
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from tests import cupy_standin
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
def wide_floats(monkeypatch) -> set[tuple[str, str]]:
    """Records (op, dtype) for every float array wider than float32 that enters or leaves a
    Function while the test runs: a float32 step must leave it empty. (Python numbers never
    promote and are not checked.)"""
    import tinygan as tg

    wide: set[tuple[str, str]] = set()
    call = tg.Function.__call__

    def recording(fn, *inputs):
        out = call(fn, *inputs)
        for t in (*inputs, out):
            dtype = getattr(t.data if isinstance(t, tg.Tensor) else t, "dtype", None)
            if dtype is not None and dtype.kind == "f" and dtype != np.float32:
                wide.add((type(fn).__name__, str(dtype)))
        return out

    monkeypatch.setattr(tg.Function, "__call__", recording)
    return wide


@pytest.fixture
def example(monkeypatch):
    """Import a script of ``examples/`` by module name, e.g. ``example("vae_mnist").main(argv)``."""
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    return importlib.import_module


def pytest_addoption(parser):
    parser.addoption(
        "--seed-offset",
        type=int,
        default=0,
        help="added to every seed of the tests marked outcome (run them under other seeds)",
    )


REAL_GPU = backend.cuda_available()  # else gpu tests run on the stand-in


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "gpu: runs on CuPy with a GPU, else on the CuPy stand-in (tests/cupy_standin.py)"
    )
    config.addinivalue_line(
        "markers", "outcome: asserts a training outcome; its seeds move with --seed-offset"
    )


def pytest_collection_modifyitems(config, items):
    for item in items:  # the marker and the fixture go together, so -m outcome misses none
        marked = "outcome" in item.keywords
        if marked != ("seed_offset" in getattr(item, "fixturenames", ())):
            raise pytest.UsageError(f"{item.nodeid}: mark it outcome iff it uses seed_offset")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Without a GPU, a gpu test (its fixtures too) runs with the backend on the stand-in."""
    real = backend._cupy
    if "gpu" in item.keywords and not REAL_GPU:
        backend._cupy = cupy_standin
    yield
    backend._cupy = real


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module a backend test runs on: numpy, and CuPy (or its stand-in)."""
    return np if request.param == "numpy" else backend.cupy()


@pytest.fixture
def seed_offset(request) -> int:
    """``--seed-offset``: an outcome test adds it to each of its seeds."""
    return request.config.getoption("--seed-offset")


_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


class Outcome:
    """Asserts ``value op bound`` for a named metric of an outcome test, and appends
    ``{"test", "seed_offset", "metric", "value", "op", "bound"}`` as one JSON line to the file
    named by ``TINYGAN_OUTCOME_LOG``, if set (written before the assertion, so failures show)."""

    def __init__(self, test: str, seed_offset: int):
        self.test, self.seed_offset = test, seed_offset

    def check(self, metric: str, value, op: str, bound) -> None:
        value, bound = float(value), float(bound)
        log = os.environ.get("TINYGAN_OUTCOME_LOG")
        if log:
            record = dict(test=self.test, seed_offset=self.seed_offset, metric=metric,
                          value=value, op=op, bound=bound)  # fmt: skip
            with open(log, "a") as f:
                f.write(json.dumps(record) + "\n")
        assert _OPS[op](value, bound), (
            f"{metric}: {value:.6g} is not {op} {bound:.6g} (seed offset {self.seed_offset})"
        )


@pytest.fixture
def outcome(request, seed_offset) -> Outcome:
    return Outcome(request.node.nodeid, seed_offset)
