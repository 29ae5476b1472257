"""Output sizes and argument validation for 2-D convolutions, with PyTorch semantics.

Every check of a conv's arguments lives here, so that ``conv2d`` and ``conv_transpose2d`` (and
the layers built on them) raise the same errors. Each message names the offending values and
what was expected.

Per spatial dimension, with kernel ``k``, stride ``s``, padding ``p``, dilation ``d``:

- conv:            ``out = floor((in + 2p - d(k-1) - 1) / s) + 1``
- transposed conv: ``out = (in - 1) s - 2p + d(k-1) + output_padding + 1``,
  with ``0 <= output_padding < max(s, d)``.

A conv and the transposed conv with the same weight are each other's adjoint. Both are computed
by the same kernels on an *image* (the side that ``im2col`` reads and ``col2im`` writes: the
conv's input, the transposed conv's output) and a *grid* (the other side: one GEMM row per grid
pixel): see ``ConvGeometry``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

IntPair = tuple[int, int]


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def pair(value: Any, name: str, minimum: int = 1) -> IntPair:
    """``value`` (an int, or a pair of ints for (height, width)) as a pair of ints.

    Parameters
    ----------
    value : int or (int, int)
    name : str
        The argument's name, for the error message.
    minimum : int
        Smallest allowed value: 1 for kernel sizes, strides and dilations, 0 for paddings.

    Raises
    ------
    ValueError
        If ``value`` is not an int or a pair of ints, or a value is below ``minimum``.
    """
    values = (value, value) if _is_int(value) else value
    if not (isinstance(values, (tuple, list)) and len(values) == 2 and all(map(_is_int, values))):
        raise ValueError(f"{name} must be an int or a pair of ints (height, width); got {value!r}")
    if min(values) < minimum:
        kind = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {kind}; got {value!r}")
    return int(values[0]), int(values[1])


def conv_out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a conv along one dimension (may be <= 0: the caller validates)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_out_size(
    size: int, kernel: int, stride: int, padding: int, output_padding: int, dilation: int
) -> int:
    """Output length of a transposed conv along one dimension (may be <= 0)."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


class ConvGeometry(NamedTuple):
    """A validated conv configuration; all fields are (height, width) pairs.

    ``image_hw`` is the spatial size that ``im2col`` reads and ``col2im`` writes (conv2d's
    input, conv_transpose2d's output); ``grid_hw`` the other side (conv2d's output,
    conv_transpose2d's input), one row of the GEMM per grid pixel.
    """

    kernel: IntPair
    stride: IntPair
    padding: IntPair
    dilation: IntPair
    image_hw: IntPair
    grid_hw: IntPair


def _config(kernel, stride, padding, dilation, output_padding=None) -> str:
    text = f"kernel_size={kernel}, stride={stride}, padding={padding}"
    if output_padding is not None:
        text += f", output_padding={output_padding}"
    return text + f", dilation={dilation}"


def _check_operands(op: str, x_shape, w_shape, b_shape, in_axis: int, out_axis: int, w_layout):
    """Ranks, channels and bias shape; returns the kernel size."""
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    if len(x_shape) != 4:
        raise ValueError(
            f"{op}: expected a 4-D input (N, C, H, W); got shape {x_shape} ({len(x_shape)}-D)"
        )
    if len(w_shape) != 4:
        raise ValueError(
            f"{op}: expected a 4-D weight {w_layout}; got shape {w_shape} ({len(w_shape)}-D)"
        )
    if x_shape[1] != w_shape[in_axis]:
        raise ValueError(
            f"{op}: input has {x_shape[1]} channels (shape {x_shape}) but the weight of shape "
            f"{w_shape} {w_layout} expects {w_shape[in_axis]}"
        )
    if b_shape is not None and tuple(b_shape) != (w_shape[out_axis],):
        raise ValueError(
            f"{op}: bias must have shape ({w_shape[out_axis]},), one value per output channel of "
            f"the weight {w_shape}; got {tuple(b_shape)}"
        )
    return pair(w_shape[2:], f"{op}: weight's kernel size")


def conv2d_geometry(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    b_shape: tuple[int, ...] | None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
) -> ConvGeometry:
    """Validate ``conv2d(x, weight, bias, stride, padding, dilation)``'s arguments.

    Parameters
    ----------
    x_shape : (N, C, H, W)
    w_shape : (out_channels, C, kH, kW)
    b_shape : (out_channels,) or None

    Returns
    -------
    ConvGeometry
        ``image_hw = (H, W)``, ``grid_hw = (OH, OW)``, the output's spatial size.

    Raises
    ------
    ValueError
        Wrong ranks, a channel or bias mismatch, a bad stride/padding/dilation, or an output
        size that is not positive.
    """
    kernel = _check_operands(
        "conv2d", x_shape, w_shape, b_shape, 1, 0, "(out_channels, in_channels, kH, kW)"
    )
    stride, padding = pair(stride, "stride"), pair(padding, "padding", 0)
    dilation = pair(dilation, "dilation")
    image = tuple(x_shape[2:])
    grid = tuple(map(conv_out_size, image, kernel, stride, padding, dilation))
    if min(grid) <= 0:
        extent = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
        padded = tuple(n + 2 * p for n, p in zip(image, padding))
        raise ValueError(
            f"conv2d: output size {grid} is not positive for input size {image} with "
            f"{_config(kernel, stride, padding, dilation)}: the dilated kernel {extent} is larger "
            f"than the padded input {padded}"
        )
    return ConvGeometry(kernel, stride, padding, dilation, image, grid)


def conv_transpose2d_geometry(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    b_shape: tuple[int, ...] | None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    dilation: Any = 1,
) -> ConvGeometry:
    """Validate ``conv_transpose2d(x, weight, bias, stride, padding, output_padding, dilation)``.

    Parameters
    ----------
    x_shape : (N, C, H, W)
    w_shape : (C, out_channels, kH, kW)
    b_shape : (out_channels,) or None

    Returns
    -------
    ConvGeometry
        ``grid_hw = (H, W)``, ``image_hw = (OH, OW)``, the output's spatial size.

    Raises
    ------
    ValueError
        As ``conv2d_geometry``, and if ``output_padding >= max(stride, dilation)`` in a dim.
    """
    kernel = _check_operands(
        "conv_transpose2d", x_shape, w_shape, b_shape, 0, 1, "(in_channels, out_channels, kH, kW)"
    )
    stride, padding = pair(stride, "stride"), pair(padding, "padding", 0)
    output_padding, dilation = pair(output_padding, "output_padding", 0), pair(dilation, "dilation")
    limit = tuple(max(s, d) for s, d in zip(stride, dilation))
    if any(op >= lim for op, lim in zip(output_padding, limit)):
        raise ValueError(
            f"conv_transpose2d: output_padding={output_padding} must be smaller than "
            f"max(stride, dilation) = {limit} in each dim (stride={stride}, dilation={dilation})"
        )
    grid = tuple(x_shape[2:])
    image = tuple(
        map(conv_transpose_out_size, grid, kernel, stride, padding, output_padding, dilation)
    )
    if min(image) <= 0:
        raise ValueError(
            f"conv_transpose2d: output size {image} is not positive for input size {grid} with "
            f"{_config(kernel, stride, padding, dilation, output_padding)}: padding is too large"
        )
    return ConvGeometry(kernel, stride, padding, dilation, image, grid)


def check_cols_fit(op: str, image_hw, grid_hw, kernel, stride, padding, dilation) -> None:
    """Raise ValueError unless every tap of a ``grid_hw`` grid lies inside the padded image.

    ``grid_hw`` may be smaller than the conv's output size (a transposed conv whose
    ``output_padding`` reaches past the last tap); it may not be larger.
    """
    most = tuple(map(conv_out_size, image_hw, kernel, stride, padding, dilation))
    if any(g > m or g <= 0 for g, m in zip(grid_hw, most)):
        raise ValueError(
            f"{op}: a grid of {tuple(grid_hw)} pixels does not fit an image of {tuple(image_hw)} "
            f"with {_config(tuple(kernel), tuple(stride), tuple(padding), tuple(dilation))}: "
            f"expected between (1, 1) and {most}"
        )
