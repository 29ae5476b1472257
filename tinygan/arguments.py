"""Validation of numeric and choice arguments (``arguments.real``, ``arguments.integer``,
``arguments.choice``), shared by the models, metrics, optimizers and the command line.

Each error names the argument, the value and what was expected: a value of the wrong type is a
``TypeError`` (bools are not numbers here), a number out of range a ``ValueError``. Each check
returns the value as a plain Python number, so nothing downstream sees a NumPy scalar.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import Any


def real(
    value: Any,
    name: str,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a float: a finite real number in [low, high] (an end excluded if ``*_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    v = float(value)
    if not (
        math.isfinite(v)
        and (v > low if low_open else v >= low)
        and (v < high if high_open else v <= high)
    ):
        where = _bounds(low, high, "(" if low_open else "[", ")" if high_open else "]")
        raise ValueError(f"{name} must be a finite number{where}; got {value!r}")
    return v


def integer(value: Any, name: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int in [low, high] (either end may be absent)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}")
    lo, hi = -math.inf if low is None else low, math.inf if high is None else high
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be an int{_bounds(lo, hi, '[', ']')}; got {value}")
    return int(value)


def choice(value: Any, name: str, choices: Collection[str]) -> str:
    """``value``, one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}")
    return value


def _bounds(low: float, high: float, left: str, right: str) -> str:
    """' >= 0', ' > 0', ' in (0, 1)', '' ... for the error messages."""
    if math.isinf(low) and math.isinf(high):
        return ""
    if math.isinf(high):
        return f" {'>' if left == '(' else '>='} {low:g}"
    if math.isinf(low):
        return f" {'<' if right == ')' else '<='} {high:g}"
    return f" in {left}{low:g}, {high:g}{right}"
