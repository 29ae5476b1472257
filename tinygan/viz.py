"""Training figures written to files with matplotlib's Agg canvas (no pyplot, no window, no
global state): image grids, curves, a confusion matrix, density and curve panels.

Every figure function writes one PNG atomically (a temporary file renamed into place) where it is
told and returns its path; under ``mpiexec`` the caller decides which rank draws
(``tinygan.runner.is_main``). The autograd graph's drawer is ``tinygan.graph``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .serialization import atomic_path


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi, bbox_inches="tight")
    return path


def tile(images: np.ndarray, pad: int = 1) -> np.ndarray:
    """Tile a grid of images into one picture.

    Parameters
    ----------
    images : np.ndarray, shape (R, C, H, W)
        Values in [0, 1].
    pad : int
        Pixels of white space between images.

    Returns
    -------
    np.ndarray, shape (R*(H+pad)-pad, C*(W+pad)-pad)
    """
    if images.ndim != 4:
        raise ValueError(f"tile expects images of shape (R, C, H, W); got {images.shape}")
    r, c, h, w = images.shape
    out = np.ones((r * (h + pad) - pad, c * (w + pad) - pad), dtype=np.float32)
    for i in range(r):
        for j in range(c):
            out[i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = images[i, j]
    return out


def interleave_rows(*batches: np.ndarray, columns: int = 10) -> np.ndarray:
    """Image batches as alternating grid rows: ``a[0:10]``, ``b[0:10]``, ``a[10:20]``, ...
    (e.g. test images above their reconstructions).

    Parameters
    ----------
    *batches : np.ndarray, shape (N, ..., H, W) each, N a multiple of ``columns``
    columns : int

    Returns
    -------
    np.ndarray, shape (len(batches) * N / columns, columns, H, W), for ``image_grid``
    """
    n, h, w = len(batches[0]) // columns, *batches[0].shape[-2:]
    return np.stack([b.reshape(n, columns, h, w) for b in batches], 1).reshape(-1, columns, h, w)


def image_grid(
    path: str | os.PathLike,
    images: np.ndarray,
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    xlabel: str | None = None,
) -> Path:
    """Write a grid of grey images (R, C, H, W), values in [0, 1], with optional labels."""
    r, c = images.shape[:2]
    fig = Figure(figsize=(0.5 * c + 1.2, 0.5 * r + 0.8), dpi=100)
    ax = fig.add_subplot()
    h, w = images.shape[2:]
    ax.imshow(tile(images), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([(w + 1) * j + w / 2 - 0.5 for j in range(c)] if col_labels else [])
    ax.set_yticks([(h + 1) * i + h / 2 - 0.5 for i in range(r)] if row_labels else [])
    if col_labels:
        ax.set_xticklabels(col_labels, fontsize=7)
    if row_labels:
        ax.set_yticklabels(row_labels, fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if xlabel:
        ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def curves(
    path: str | os.PathLike,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str,
    ylabel: str,
    xlabel: str = "iteration",
    hlines: Mapping[str, float] | None = None,
) -> Path:
    """Write line plots: ``series`` maps a label to (x values, y values); ``hlines`` maps a
    label to a constant drawn dashed (e.g. the entropy H(c) that bounds L_I)."""
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    for label, (x, y) in series.items():
        ax.plot(x, y, label=label, linewidth=1.2)
    for label, value in (hlines or {}).items():
        ax.axhline(value, linestyle="--", color="gray", linewidth=1, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def confusion(
    path: str | os.PathLike, matrix: np.ndarray, *, title: str, xlabel: str, ylabel: str
) -> Path:
    """Write a confusion matrix (rows: true labels, columns: predicted) with counts in cells."""
    fig = Figure(figsize=(6, 5), dpi=100)
    ax = fig.add_subplot()
    im = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(im, ax=ax)
    for (i, j), v in np.ndenumerate(matrix):
        color = "white" if v > matrix.max() / 2 else "black"
        ax.text(j, i, str(v), ha="center", va="center", fontsize=6, color=color)
    ax.set_xticks(range(matrix.shape[1]))
    ax.set_yticks(range(matrix.shape[0]))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _save(fig, path)


def density_panels(
    path: str | os.PathLike,
    panels: Mapping[str, np.ndarray],
    extent: tuple[float, float, float, float],
    *,
    points: np.ndarray | None = None,
    span: float = 10.0,
    vmax: float | None = None,
    title: str | None = None,
) -> Path:
    """Write side-by-side heat maps of 2-D log-densities on one shared colour scale.

    Parameters
    ----------
    path : str or os.PathLike
        Where the PNG goes.
    panels : mapping of str to np.ndarray, shape (H, W)
        Panel title to log-density on a regular grid, row 0 at the bottom (``y = extent[2]``).
        ``-inf`` (density 0) is drawn white.
    extent : (x_min, x_max, y_min, y_max)
        Where the grid lies.
    points : np.ndarray, shape (N, 2), optional
        Data drawn as dots over every panel.
    span : float
        Nats shown below ``vmax``; lower values get the lowest colour.
    vmax : float, optional
        Top of the colour scale; default the highest finite value of all panels.
    title : str, optional
        Above all panels.

    Returns
    -------
    Path
    """
    if not panels or any(np.ndim(z) != 2 for z in panels.values()):
        shapes = {k: np.shape(z) for k, z in panels.items()}
        raise ValueError(f"panels must map titles to 2-D arrays (at least one), got {shapes}")
    if vmax is None:
        finite = [p[np.isfinite(p)] for p in panels.values()]
        vmax = max((f.max() for f in finite if f.size), default=0.0)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    fig = Figure(figsize=(3 * len(panels) + 0.8, 3.6), dpi=100)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, z) in zip(axes, panels.items(), strict=True):
        im = ax.imshow(np.ma.masked_invalid(z), origin="lower", extent=extent, cmap=cmap,
                       vmin=vmax - span, vmax=vmax, interpolation="nearest")  # fmt: skip
        if points is not None:
            ax.scatter(points[:, 0], points[:, 1], s=0.3, c="black", alpha=0.4, linewidths=0)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes), label="log-density (white: 0, i.e. -inf)", shrink=0.9)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def curve_panels(
    path: str | os.PathLike,
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    *,
    xlabel: str,
    title: str,
    logx: bool = False,
) -> Path:
    """Write side-by-side line plots with a marker at every point: ``panels`` maps a y-axis
    label to its series, each a label mapped to (x values, y values). Non-finite y values are left
    out, so a series with one finite point still shows as a dot."""
    fig = Figure(figsize=(5 * len(panels), 4), dpi=100)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (ylabel, series) in zip(axes, panels.items(), strict=True):
        for label, (x, y) in series.items():
            ax.plot(x, y, "o-", label=label, linewidth=1.2, markersize=3)
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)
