"""Tests for tinygan.arguments, the argument checks the models, metrics and density code share."""

from __future__ import annotations

import numpy as np
import pytest

from tinygan import arguments


def test_real_accepts_numbers_in_range_and_returns_floats():
    assert arguments.real(np.float32(0.5), "x", 0, 1, low_open=True, high_open=True) == 0.5
    assert type(arguments.real(np.int64(3), "x", 0)) is float
    assert arguments.real(0, "x", 0) == 0.0  # a closed end is allowed


@pytest.mark.parametrize(
    "call, error, message",
    [(lambda: arguments.real(True, "x"), TypeError, "x must be a real number; got bool True"),
     (lambda: arguments.real("1", "x"), TypeError, "got str '1'"),
     (lambda: arguments.real(0.0, "x", 0, low_open=True), ValueError, "x must be a finite number > 0; got 0.0"),
     (lambda: arguments.real(1.0, "x", 0, 1, high_open=True), ValueError, r"in \[0, 1\); got 1.0"),
     (lambda: arguments.real(float("nan"), "x"), ValueError, "finite number; got nan"),
     (lambda: arguments.integer(2.0, "n", 1), TypeError, "n must be an int; got float 2.0"),
     (lambda: arguments.integer(0, "n", 1), ValueError, "n must be an int >= 1; got 0"),
     (lambda: arguments.integer(4, "k", 1, 3), ValueError, r"k must be an int in \[1, 3\]; got 4"),
     (lambda: arguments.choice("l2", "penalty", ("l1", "log")), ValueError, r"one of \('l1', 'log'\); got 'l2'")],
)  # fmt: skip
def test_bad_values_name_the_argument_the_value_and_the_range(call, error, message):
    with pytest.raises(error, match=message):
        call()
