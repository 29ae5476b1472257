"""Memory layouts of test arrays: the same values in C order, Fortran order, transposed in
memory, as a strided view, or reversed. ``tinygan.gradcheck`` checks that an op's gradients do
not depend on them, and ``tinygan.testing`` draws its inputs in them.
"""

from __future__ import annotations

from typing import Any

from .backend import get_array_module, is_array

Array = Any  # numpy.ndarray or cupy.ndarray

LAYOUTS = ("C", "F", "transposed", "strided", "reversed")
"""Memory layouts of ``as_layout``: C order, Fortran order, the last two axes swapped in memory,
every other element of a buffer twice as large (positive strides), every axis reversed (negative
strides)."""

DESCRIPTIONS = {
    "C": "C-contiguous",
    "F": "in Fortran order",
    "transposed": "transposed in memory",
    "strided": "a strided view",
    "reversed": "reversed (negative strides)",
}
"""Each layout as a message says it (``"input 0 is in Fortran order"``)."""


def as_layout(a: Array, layout: str) -> Array:
    """The values of ``a`` in a new array with the given memory layout (see ``LAYOUTS``).

    Parameters
    ----------
    a : array, any shape
    layout : {"C", "F", "transposed", "strided", "reversed"}

    Returns
    -------
    array
        Equal to ``a`` elementwise, same shape and dtype; never shares memory with ``a``.
    """
    if not is_array(a):
        raise TypeError(f"as_layout: a must be a NumPy or CuPy array; got {type(a).__name__}")
    xp = get_array_module(a)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    if layout == "C" or a.ndim == 0:
        return xp.array(a, order="C", copy=True)
    if layout == "F":
        return xp.array(a, order="F", copy=True)
    if layout == "transposed":
        if a.ndim < 2:
            return xp.array(a, copy=True)
        return xp.ascontiguousarray(xp.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    if layout == "strided":
        view = xp.zeros(tuple(2 * n for n in a.shape), a.dtype)[(slice(None, None, 2),) * a.ndim]
        view[...] = a
        return view
    every = (slice(None, None, -1),) * a.ndim  # reversed
    return xp.ascontiguousarray(a[every])[every]


def distinct_layouts(ndim: int) -> tuple[str, ...]:
    """The layouts of ``LAYOUTS`` other than C that differ from C and each other at ``ndim``."""
    return {0: (), 1: ("strided", "reversed"), 2: ("F", "strided", "reversed")}.get(
        ndim, ("F", "transposed", "strided", "reversed")
    )
