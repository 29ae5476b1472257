"""2-D convolution and transposed convolution (PyTorch semantics; no groups), channels-last inside.

The public layout is NCHW, as PyTorch's. Inside, both layers compute on channels-last (NHWC)
memory with three kernels, im2col, col2im and one GEMM, because the two layers are each other's
adjoint (``kernels/shapes.py`` names the sides: the *image* that im2col reads, the *grid* with
one GEMM row per pixel):

=======================  ======================  ===========================================
                         conv2d                  conv_transpose2d
=======================  ======================  ===========================================
forward                  im2col + GEMM           GEMM + col2im
input gradient           GEMM + col2im           im2col + GEMM
weight gradient          GEMM (gy^T @ cols)      GEMM (x^T @ cols(gy))
=======================  ======================  ===========================================

Outputs are NCHW-shaped views of NHWC memory (``y.transpose(0, 3, 1, 2)``), so the next layer's
``x.transpose(0, 2, 3, 1)`` is free: NumPy's elementwise ops in between give their results the
layout of their inputs. CuPy's allocate C order instead, so on the GPU the next conv copies its
input (im2col) or its gradient rows to channels-last: one transpose each, 13 per step of the
paper's InfoGAN (33 MB at batch 64, counted with the tests' CuPy stand-in), about 1% of that
step's 1,300 CuPy calls, whose launches bound it; NHWC is kept there too, for one implementation.

The weight, (A, B, kH, kW), enters the GEMMs as the matrix ``wmat`` (A, kH*kW*B), a cheap copy
(each row is one contiguous block of the weight): for conv2d A, B = out, in channels; for
conv_transpose2d A, B = in, out channels, the same matrix as for the conv it is the adjoint of.
Every GEMM takes its operands as they are, C-contiguous or transposed views of C-contiguous
arrays, which BLAS reads without a copy. "GEMM + col2im" is one call, ``kernels.gemm_col2im``:
on NumPy it multiplies and scatters tap by tap, so the (N*OH*OW, kH*kW*B) ``cols`` of the
product is never built (the same FLOPs, 7-8% faster on the InfoGAN convs).
"""

from __future__ import annotations

from typing import Any

from .. import kernels
from ..function import Function
from ..kernels.shapes import ConvGeometry, conv2d_geometry, conv_transpose2d_geometry, pair
from ..tensor import Tensor
from .linear import ChannelSum


# ---- the shared pieces: three kernels serve both layers -------------------------------------
def _check_dtypes(op: str, *arrays: Any) -> None:
    dtypes = {a.dtype for a in arrays if a is not None}
    if len(dtypes) > 1 or next(iter(dtypes)).kind != "f":
        names = ", ".join(str(a.dtype) for a in arrays if a is not None)
        raise TypeError(f"{op}: input, weight and bias must share one floating dtype; got {names}")


def _rows(a: Any) -> Any:
    """(N, C, H, W) -> (N*H*W, C), channels-last rows; free when ``a``'s memory is NHWC."""
    n, c, h, w = a.shape
    return a.transpose(0, 2, 3, 1).reshape(n * h * w, c)


def _weight_matrix(weight: Any) -> Any:
    """(A, B, kH, kW) -> (A, kH*kW*B), C-contiguous (a small copy)."""
    a, b, kh, kw = weight.shape
    return weight.transpose(0, 2, 3, 1).reshape(a, kh * kw * b)


def _weight_grad(rows: Any, cols: Any, w_shape: tuple[int, ...]) -> Any:
    """``rows^T @ cols``: (A, M) @ (M, kH*kW*B), back to the weight's (A, B, kH, kW), contiguous."""
    a, b, kh, kw = w_shape
    return (rows.T @ cols).reshape(a, kh, kw, b).transpose(0, 3, 1, 2).copy()


def _im2col(image: Any, g: ConvGeometry) -> Any:
    """Image (N, C, H, W), any strides -> cols (N*OH*OW, kH*kW*C), one row per grid pixel."""
    cols = kernels.im2col(
        image.transpose(0, 2, 3, 1), *g.kernel, g.stride, g.padding, g.dilation, g.grid_hw
    )
    n, oh, ow = cols.shape[:3]
    return cols.reshape(n * oh * ow, g.kernel[0] * g.kernel[1] * image.shape[1])


def _gemm_col2im(rows: Any, wmat: Any, g: ConvGeometry) -> Any:
    """Conv input gradient / transposed-conv forward: grid rows (N*OH*OW, A) -> image
    (N, C, H, W) as a view of NHWC memory (``col2im(rows @ wmat)``, see ``kernels.gemm_col2im``)."""
    x = kernels.gemm_col2im(rows, wmat, g.grid_hw, g.image_hw, g.kernel, g.stride, g.padding,
                            g.dilation)  # fmt: skip
    return x.transpose(0, 3, 1, 2)


def _nchw(rows: Any, n: int, hw: tuple[int, int]) -> Any:
    """Rows (N*H*W, C) -> (N, C, H, W), a view of the NHWC memory."""
    return rows.reshape(n, *hw, rows.shape[1]).transpose(0, 3, 1, 2)


# ---- the Functions, each followed by its function; each backward is made of the three -------
class Conv2dFunction(Function):
    """Image -> grid: x (N, C, H, W), weight (OUT, C, kH, kW), bias (OUT,) or absent ->
    y (N, OUT, OH, OW), channels-last in memory, for a validated geometry ``g``.

    ``cols`` (im2col of x) and ``wmat`` (the weight matrix) may be passed when a backward has
    them already; they are caches of the inputs' values, never separate inputs.
    """

    def __init__(self, g: ConvGeometry, cols: Any = None, wmat: Any = None):
        self.g, self.cols, self.wmat = g, cols, wmat

    def forward(self, x, weight, bias=None):
        _check_dtypes("conv2d", x, weight, bias)
        self.wmat = _weight_matrix(weight) if self.wmat is None else self.wmat
        cols = _im2col(x, self.g) if self.cols is None else self.cols
        y = cols @ self.wmat.T  # (N*OH*OW, OUT)
        self.cols = cols if self.needs_input_grad[1] else None  # only the weight grad reads it
        if bias is not None:
            y += bias
        return _nchw(y, x.shape[0], self.g.grid_hw)

    def backward(self, gy):
        x, weight = self.inputs[:2]
        need = self.needs_input_grad
        gx = ConvTranspose2dFunction(self.g, wmat=self.wmat)(gy, weight) if need[0] else None
        gw = ConvWeightGrad(self.g, cols=self.cols)(x, gy) if need[1] else None
        return (gx, gw) if len(need) == 2 else (gx, gw, ChannelSum()(gy) if need[2] else None)


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
) -> Tensor:
    """2-D cross-correlation, as ``torch.nn.functional.conv2d`` (without groups).

    Parameters
    ----------
    x : Tensor, shape (N, C, H, W)
    weight : Tensor, shape (OUT, C, kH, kW)
    bias : Tensor, shape (OUT,), optional
    stride, dilation : int or (int, int), positive
    padding : int or (int, int), zeros added on both sides, non-negative

    Returns
    -------
    Tensor, shape (N, OUT, OH, OW), ``OH = (H + 2 pH - dH (kH - 1) - 1) // sH + 1`` (same for W);
    its memory is channels-last (an NCHW view of an NHWC array).

    Raises
    ------
    ValueError
        Wrong ranks, channel or bias mismatch, bad stride/padding/dilation, non-positive output.
    TypeError
        Inputs of different or non-floating dtypes.
    """
    g = conv2d_geometry(
        x.shape,
        weight.shape,
        None if bias is None else bias.shape,
        pair(stride, "stride"),
        pair(padding, "padding", 0),
        pair(dilation, "dilation"),
    )
    return Conv2dFunction(g)(x, weight) if bias is None else Conv2dFunction(g)(x, weight, bias)


class ConvTranspose2dFunction(Function):
    """Grid -> image, the adjoint of ``Conv2dFunction``: x (N, C, H, W), weight (C, OUT, kH,
    kW), bias (OUT,) or absent -> y (N, OUT, OH, OW), channels-last in memory, for a validated
    geometry."""

    def __init__(self, g: ConvGeometry, wmat: Any = None):
        self.g, self.wmat = g, wmat

    def forward(self, x, weight, bias=None):
        _check_dtypes("conv_transpose2d", x, weight, bias)
        self.wmat = _weight_matrix(weight) if self.wmat is None else self.wmat
        x_rows = _rows(x)
        self.x_rows = x_rows if self.needs_input_grad[1] else None  # the weight grad's operand
        y = _gemm_col2im(x_rows, self.wmat, self.g)
        if bias is not None:
            y += bias[:, None, None]
        return y

    def backward(self, gy):
        x, weight = self.inputs[:2]
        need = self.needs_input_grad
        gx = gw = None
        if need[0] or need[1]:
            cols = _im2col(gy.data, self.g)  # (N*H*W, kH*kW*OUT), shared by both gradients
            gx = Conv2dFunction(self.g, cols, self.wmat)(gy, weight) if need[0] else None
            gw = ConvWeightGrad(self.g, cols, self.x_rows)(gy, x) if need[1] else None
        return (gx, gw) if len(need) == 2 else (gx, gw, ChannelSum()(gy) if need[2] else None)


def conv_transpose2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    dilation: Any = 1,
) -> Tensor:
    """2-D transposed convolution, as ``torch.nn.functional.conv_transpose2d`` (without groups).

    The adjoint of ``conv2d`` with the same weight (the gradient of conv2d w.r.t. its input).

    Parameters
    ----------
    x : Tensor, shape (N, C, H, W)
    weight : Tensor, shape (C, OUT, kH, kW)
    bias : Tensor, shape (OUT,), optional
    stride, dilation : int or (int, int), positive
    padding : int or (int, int), non-negative: removed from both sides of the output
    output_padding : int or (int, int), ``0 <= output_padding < max(stride, dilation)``:
        added to one side of the output (it picks among the input sizes a conv maps to H)

    Returns
    -------
    Tensor, shape (N, OUT, OH, OW), ``OH = (H - 1) sH - 2 pH + dH (kH - 1) + opH + 1``;
    channels-last in memory.

    Raises
    ------
    ValueError, TypeError
        As ``conv2d``; also ``output_padding >= max(stride, dilation)``.
    """
    g = conv_transpose2d_geometry(
        x.shape,
        weight.shape,
        None if bias is None else bias.shape,
        pair(stride, "stride"),
        pair(padding, "padding", 0),
        pair(output_padding, "output_padding", 0),
        pair(dilation, "dilation"),
    )
    fn = ConvTranspose2dFunction(g)
    return fn(x, weight) if bias is None else fn(x, weight, bias)


class ConvWeightGrad(Function):
    """The weight gradient of both layers: image (N, B, H, W) and grid (N, A, OH, OW) ->
    ``rows(grid)^T @ cols(image)`` as a weight (A, B, kH, kW). It is bilinear:
    ``<W(image, grid), v> = <conv2d(image, v), grid> = <image, conv_transpose2d(grid, v)>``,
    which is its backward."""

    def __init__(self, g: ConvGeometry, cols: Any = None, rows: Any = None):
        self.g, self.cols, self.rows = g, cols, rows  # caches: im2col(image), rows(grid)

    def forward(self, image, grid):
        cols = _im2col(image, self.g) if self.cols is None else self.cols
        self.cols = cols if self.needs_input_grad[1] else None
        rows = _rows(grid) if self.rows is None else self.rows
        self.rows = None
        a, b, (kh, kw) = grid.shape[1], image.shape[1], self.g.kernel
        return _weight_grad(rows, cols, (a, b, kh, kw))

    def backward(self, gw):
        image, grid = self.inputs
        g_image = ConvTranspose2dFunction(self.g)(grid, gw) if self.needs_input_grad[0] else None
        g_grid = Conv2dFunction(self.g, self.cols)(image, gw) if self.needs_input_grad[1] else None
        return g_image, g_grid
