"""Array backends: NumPy always, CuPy when installed and a GPU is present.

This is the only module that imports CuPy, and ``_cupy`` the one place tinygan reaches it
through: ``cupy()`` returns it to the kernels and the NCCL communicator. (The tests point
``_cupy`` at a NumPy-backed stand-in to run the device paths where no GPU is present.) Every op
asks ``get_array_module`` which library its arrays belong to; there is no global device mode.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

_cupy_error: Exception | None = None
try:  # CuPy is optional: without it, or with a broken CUDA install, only "cpu" exists
    import cupy as _cupy
except Exception as e:  # kept, to say why when "cuda" is asked for
    _cupy, _cupy_error = None, e

DEVICES = ("cpu", "cuda")


def cupy() -> ModuleType:
    """The CuPy module (``cupy``), for code that needs more than ``get_array_module``.

    Raises
    ------
    RuntimeError
        If CuPy is not importable, saying why.
    """
    if _cupy is None:
        raise RuntimeError(f"CuPy is not usable: {type(_cupy_error).__name__}: {_cupy_error}")
    return _cupy


def cuda_available() -> bool:
    """Return True if CuPy is importable and sees at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def is_cupy_array(a: Any) -> bool:
    return _cupy is not None and isinstance(a, _cupy.ndarray)


def get_array_module(*arrays: Any) -> ModuleType:
    """Return ``numpy`` or ``cupy``, whichever the given arrays belong to.

    Non-array arguments (Python scalars, None) are ignored.

    Raises
    ------
    TypeError
        If NumPy and CuPy arrays are mixed.
    """
    kinds = {"cuda" if is_cupy_array(a) else "cpu" for a in arrays if is_array(a)}
    if len(kinds) > 1:
        shapes = ", ".join(
            f"{type(a).__module__}.ndarray{tuple(a.shape)}" for a in arrays if is_array(a)
        )
        raise TypeError(
            f"arrays on different devices in one op: {shapes}; "
            "move them with .to('cpu') or .to('cuda')"
        )
    return _cupy if kinds == {"cuda"} else np


def device_of(a: Any) -> str:
    """Return ``"cuda"`` for a CuPy array, else ``"cpu"``."""
    return "cuda" if is_cupy_array(a) else "cpu"


def check_device(device: str) -> str:
    """Validate a device name; ``"cuda"`` also requires a usable GPU."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")
    if device == "cuda" and not cuda_available():
        why = f": {type(_cupy_error).__name__}: {_cupy_error}" if _cupy_error else ""
        raise RuntimeError(f"device 'cuda' requested but no CuPy with a CUDA GPU is usable{why}")
    return device


def to_device(a: Any, device: str):
    """Return ``a`` as an array on ``device`` (no copy if it is already there)."""
    check_device(device)
    if device_of(a) == device:
        return a
    return _cupy.asarray(a) if device == "cuda" else _cupy.asnumpy(a)


def is_array(a: Any) -> bool:
    """Whether ``a`` is a NumPy or CuPy array."""
    return isinstance(a, np.ndarray) or is_cupy_array(a)
