"""Hypothesis strategies shared by the tests: shapes, broadcasting pairs, seeded arrays."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 4):
    """Array shapes, size-1 and 0-d included."""
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )


def broadcast_pairs(max_dims: int = 3, max_side: int = 4):
    """Two shapes that broadcast together (one may have fewer dims or size-1 axes)."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=2, max_dims=max_dims, max_side=max_side
    ).map(lambda s: s.input_shapes)


seeds = st.integers(0, 2**32 - 1)


def randn(seed: int, shape, low: float | None = None, kinks=(), margin: float = 0.1):
    """Float64 normal values drawn from ``seed``.

    ``low`` moves them to ``low + margin`` and above (for log, sqrt); ``kinks`` pushes every
    value at least ``margin`` away from each kink (for relu-like ops, whose finite differences
    are wrong across a kink). Kinks must be more than ``4 * margin`` apart.
    """
    x = np.random.default_rng(seed).standard_normal(shape)
    if low is not None:
        x = low + np.abs(x) + margin
    for k in kinks:
        d = x - k
        x = np.where(np.abs(d) < margin, k + np.where(d >= 0, 1, -1) * (np.abs(d) + margin), x)
    return x
