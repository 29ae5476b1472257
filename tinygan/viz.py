"""Figures written to files with matplotlib's Agg canvas (no pyplot, no window, no global state).

Every figure function writes one PNG atomically (a temporary file renamed into place) and returns
its path (under ``mpiexec`` every rank may call them; rank 0 writes). ``draw_graph`` and
``BackwardTrace`` show the autograd graph: what the ops recorded, and what backward passed along
it (see docs/autograd.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import backend, distributed
from .function import Function
from .serialization import atomic_path
from .tensor import Tensor


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    if not distributed.is_main():  # under mpiexec every rank draws, rank 0 writes
        return path
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


# ---- the autograd graph ---------------------------------------------------------------------
_FREED = (
    "the graph of this tensor was freed by a backward() without retain_graph=True (each op drops "
    "its inputs once its backward has run); pass retain_graph=True to backward() to draw or "
    "trace the graph afterwards"
)
_FORMATTER = {
    "float_kind": lambda v: f"{v + 0.0:.4g}",  # + 0.0: no "-0"
    "int_kind": str,
    "bool": str,
}


def _host(a: Any) -> np.ndarray:
    """A NumPy copy of a gradient or value (a Tensor's data, or an array on either device)."""
    a = a.data if isinstance(a, Tensor) else a
    return np.array(backend.to_device(a, "cpu"), copy=True)


def _values(a: np.ndarray, max_values: int) -> str:
    """``a`` on one line if it has at most ``max_values`` elements, else its largest magnitude."""
    if a.size <= max_values:
        text = np.array2string(a, separator=", ", formatter=_FORMATTER, max_line_width=10**6)
        return " ".join(text.split())
    return f"max|.| {np.abs(a).max():.4g}" if a.size else "empty"


class _Graph:
    """The graph behind a tensor, walked breadth-first from it along ``creator.inputs``.

    Every tensor and op gets an id in the order the walk meets it (``t0`` the root, ``f0`` its
    creator, ...), so the DOT text of one graph is always the same. Constants (tensors that do not
    require grad) are part of the graph too: ops record all their inputs.
    """

    def __init__(self, root: Tensor, names: Mapping[str, Tensor] | None) -> None:
        if not isinstance(root, Tensor):
            raise TypeError(f"expected a Tensor; got {type(root).__name__}")
        if names is not None and not isinstance(names, Mapping):
            raise TypeError(
                f"names must map labels to Tensors (a dict); got {type(names).__name__}"
            )
        self.names: dict[int, str] = {}
        for name, t in (names or {}).items():
            if not isinstance(t, Tensor):
                raise TypeError(f"names[{name!r}] is a {type(t).__name__}, not a Tensor")
            self.names[id(t)] = str(name)
        self.tensors: list[Tensor] = [root]
        self.functions: list[Function] = []
        self.ids: dict[int, str] = {id(root): "t0"}
        self.op_labels: dict[str, str] = {}  # op node -> its label: the Function's class name
        self.edges: list[tuple[str, str, str]] = []  # (from, to, input position or "")
        for t in self.tensors:  # the list grows as the walk finds inputs
            fn = t.creator
            if fn is None:
                continue
            if fn.inputs is None:
                raise RuntimeError(_FREED)
            fid = self.ids.get(id(fn))
            if fid is None:
                fid = self.ids[id(fn)] = f"f{len(self.functions)}"
                self.functions.append(fn)
                self.op_labels[fid] = type(fn).__name__
            self.edges.append((fid, self.ids[id(t)], ""))
            for k, x in enumerate(fn.inputs):
                if id(x) not in self.ids:
                    self.ids[id(x)] = f"t{len(self.tensors)}"
                    self.tensors.append(x)
                self.edges.append((self.ids[id(x)], fid, str(k) if len(fn.inputs) > 1 else ""))

    def label(self, t: Tensor) -> str:
        """The tensor's name in ``names``, else its id in the walk (``t3``)."""
        return self.names.get(id(t), self.ids[id(t)])

    @property
    def size(self) -> int:
        """The number of nodes: tensors and ops."""
        return len(self.tensors) + len(self.functions)

    def collapse_chains(self, shortest: int = 3) -> None:
        """Fold every chain of ``shortest`` or more ops of one class into one node, the chain's
        last op, labelled ``"Mul ×2000"``.

        A chain links an op to the next when its output is used once, by the next op, and is
        neither named nor the root. The tensors inside a chain are dropped, and so are the
        constants that only the chain's ops use (counted in the label); every other input of
        the chain is drawn once, with one edge into the folded node.
        """
        made_by, inputs_of, uses = {}, {}, {}
        for src, dst, _ in self.edges:
            if src.startswith("f"):
                made_by[dst] = src
            else:
                inputs_of.setdefault(dst, []).append(src)
                uses.setdefault(src, []).append(dst)
        output_of = {f: t for t, f in made_by.items()}
        nodes = {self.ids[id(x)]: x for x in (*self.tensors, *self.functions)}
        named = {self.ids[k] for k in self.names if k in self.ids}
        feeds: dict[str, list[str]] = {}  # op -> the ops of its class whose output only it uses
        for t, f in made_by.items():
            users = uses.get(t, [])
            user = users[0] if len(users) == 1 and t != "t0" and t not in named else None
            if user is not None and type(nodes[f]) is type(nodes[user]):
                feeds.setdefault(user, []).append(f)
        after = {fs[0]: g for g, fs in feeds.items() if len(fs) == 1}  # chains, not trees
        linked = set(after.values())
        folded: dict[str, str] = {}  # op -> the node it is folded into
        dropped: set[str] = set()
        for start in list(self.op_labels):
            if start in linked or start not in after:
                continue  # not the first op of a chain
            chain = [start]
            while chain[-1] in after:
                chain.append(after[chain[-1]])
            if len(chain) < shortest:
                continue
            members = set(chain)
            constants = {
                x
                for f in chain
                for x in inputs_of[f]
                if self.kind(nodes[x]) == "constant" and x not in named and set(uses[x]) <= members
            }
            dropped |= constants | members - {chain[-1]} | {output_of[f] for f in chain[:-1]}
            folded.update((f, chain[-1]) for f in chain)
            more = f"\n{len(constants)} constants" if constants else ""
            self.op_labels[chain[-1]] = f"{self.op_labels[start]} ×{len(chain)}{more}"
        edges, seen = [], set()
        for src, dst, position in self.edges:
            if src in dropped:
                continue
            if dst in folded:
                dst, position = folded[dst], ""
                if (src, dst) in seen:
                    continue
                seen.add((src, dst))
            edges.append((src, dst, position))
        self.edges = edges
        self.tensors = [t for t in self.tensors if self.ids[id(t)] not in dropped]
        self.functions = [f for f in self.functions if self.ids[id(f)] not in dropped]

    def kind(self, t: Tensor) -> str:
        if t.creator is not None:
            return "root" if t is self.tensors[0] else "op output"
        return "leaf" if t.requires_grad else "constant"


@dataclass(frozen=True)
class BackwardStep:
    """One op's backward as the engine ran it (see ``BackwardTrace``).

    Attributes
    ----------
    op : str
        The Function's class name (``"Mul"``).
    output : str
        The label of the op's output tensor (its name, or its id in ``draw_graph``'s text).
    grad : numpy.ndarray
        The output's gradient that the op received: complete, since every consumer of the
        output ran its backward before this one.
    inputs : tuple of str
        The labels of the op's inputs, in order (a tensor used twice appears twice).
    input_grads : tuple of (numpy.ndarray or None)
        What the op's backward returned for each input (None where no gradient was needed).
    """

    op: str
    output: str
    grad: np.ndarray
    inputs: tuple[str, ...]
    input_grads: tuple[np.ndarray | None, ...]

    def __str__(self) -> str:
        passed = ", ".join(
            f"{x}: {_values(g, 6)}" for x, g in zip(self.inputs, self.input_grads) if g is not None
        )
        return f"{self.op} {self.output}: grad {_values(self.grad, 6)} -> {passed}"


class BackwardTrace:
    """Record what the engine's backward does on a graph: which op runs when, with which grads.

    A context manager. On entry it wraps the ``backward`` of every op in the graph of ``root``
    (an attribute set on each Function instance, which Python looks up before the class's
    method); the wrapper calls the op's own backward and records a ``BackwardStep``. Nothing else
    changes: the engine, its order and its results are the ones it has without the trace. On exit
    the wrappers are removed.

    Parameters
    ----------
    root : Tensor
        The tensor whose graph is traced (the one ``backward`` will start from, or one below).
    names : mapping of str to Tensor, optional
        Labels for tensors (``dict(a=a, y=y)``, or ``dict(model.named_parameters())``); other
        tensors are labelled by their id in ``draw_graph``'s text.

    Attributes
    ----------
    steps : list of BackwardStep
        In the order the engine ran the ops' backwards.

    Examples
    --------
    >>> a = Tensor(3.0, requires_grad=True)
    >>> y = a * a + a
    >>> with BackwardTrace(y, names={"a": a, "y": y}) as trace:
    ...     y.backward()
    >>> for step in trace.steps:
    ...     print(step)
    Add y: grad 1 -> t1: 1, a: 1
    Mul t1: grad 1 -> a: 3, a: 3
    """

    def __init__(self, root: Tensor, names: Mapping[str, Tensor] | None = None) -> None:
        self.graph = _Graph(root, names)
        self.steps: list[BackwardStep] = []
        self._grads: dict[int, np.ndarray] = {}  # by id of the op's output tensor

    def _wrap(self, fn: Function) -> Any:
        original = fn.backward

        def traced(grad: Tensor) -> Any:
            returned = original(grad)
            out = fn.output
            gxs = returned if isinstance(returned, tuple) else (returned,)
            kept = tuple(
                None if g is None or not need else _host(g)
                for g, need in zip(gxs, fn.needs_input_grad)
            )
            self.steps.append(
                BackwardStep(
                    op=type(fn).__name__,
                    output=self.graph.label(out),
                    grad=_host(grad),
                    inputs=tuple(self.graph.label(x) for x in fn.inputs),
                    input_grads=kept,
                )
            )
            self._grads[id(out)] = self.steps[-1].grad
            return returned

        traced.traced_by = self  # how __exit__ recognises its own wrappers
        return traced

    def __enter__(self) -> BackwardTrace:
        for fn in self.graph.functions:
            if fn.inputs is None:
                raise RuntimeError(_FREED)
            fn.backward = self._wrap(fn)
        return self

    def __exit__(self, *exc: object) -> None:
        for fn in self.graph.functions:  # ops that released themselves dropped their wrapper too
            wrapper = fn.__dict__.get("backward")
            if getattr(wrapper, "traced_by", None) is self:
                del fn.backward

    def grad_of(self, t: Tensor) -> np.ndarray | None:
        """The gradient the traced backward passed to ``t``'s creator (None if none ran)."""
        return self._grads.get(id(t))


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _tensor_lines(
    graph: _Graph, t: Tensor, trace: BackwardTrace | None, max_values: int
) -> list[str]:
    lines = [graph.label(t), f"{tuple(t.shape)} {t.dtype}"]
    if t.data.size <= max_values:
        lines.append(f"data {_values(_host(t), max_values)}")
    grad = t.grad if t.creator is None else (trace.grad_of(t) if trace is not None else None)
    if grad is not None:
        lines.append(f"grad {_values(_host(grad), max_values)}")
    return lines


_DOT_STYLE = {
    "root": 'shape=box, style="rounded,bold"',
    "op output": 'shape=box, style="rounded"',
    "leaf": 'shape=box, style="rounded,filled", fillcolor="#d6e6f5"',
    "constant": 'shape=box, style="rounded,dashed"',
}
RENDERERS = ("auto", "dot", "matplotlib")
_MAX_SIDE = 2**15  # pixels: the longest side of a picture (Graphviz's own limit)
GRAPH_FORMATS = (".png", ".svg", ".dot", ".gv")


def draw_graph(
    tensor: Tensor,
    path: str | os.PathLike | None = None,
    *,
    names: Mapping[str, Tensor] | None = None,
    trace: BackwardTrace | None = None,
    renderer: str = "auto",
    rankdir: str | None = None,
    max_values: int = 6,
    max_nodes: int | None = 300,
) -> str:
    """The autograd graph behind ``tensor`` as Graphviz DOT text, optionally drawn to a file.

    Tensors are boxes (a label, the shape and dtype, the values when there are at most
    ``max_values``, and the gradient when there is one); ops are ellipses with the Function's
    class name. Edges run from inputs to consumers; an op's input edges are numbered by position,
    so a tensor used twice (``a * a``) has two edges. Leaves that require grad are filled blue,
    constants dashed, ``tensor`` itself bold.

    A picture (``.png``, ``.svg``) of a graph of more than ``max_nodes`` nodes (tensors and ops)
    shows every chain of three or more ops of one class as one node (``"Mul ×2000"``: the
    tensors inside the chain, and the constants only it uses, are left out); if that is still
    more than ``max_nodes``, nothing is drawn and a ``ValueError`` says so. The DOT text (the
    return value, and ``.dot`` / ``.gv`` files) always holds the whole graph.

    Gradients: a leaf's ``.grad`` (after ``backward``); an op output's gradient only from
    ``trace`` (the engine keeps no intermediate gradients). A ``backward`` without
    ``retain_graph=True`` frees the graph, so draw before it, or keep the graph.

    Parameters
    ----------
    tensor : Tensor
        Usually a loss; any tensor made by ops.
    path : str or os.PathLike, optional
        Where to write the picture: ``.png`` or ``.svg`` (drawn by the renderer), or ``.dot`` /
        ``.gv`` (the DOT text itself). None: nothing is written.
    names : mapping of str to Tensor, optional
        Labels for tensors (``dict(x=x, w=w)``, ``dict(model.named_parameters())``); the others
        are labelled with their node id (``t3``).
    trace : BackwardTrace, optional
        A trace of a backward through this graph: its gradients label the op outputs.
    renderer : {"auto", "dot", "matplotlib"}
        "dot" runs Graphviz's ``dot`` program (Debian: ``apt-get install graphviz``);
        "matplotlib" lays the graph out in columns by depth itself; "auto" is "dot" when the
        program is on the PATH, else "matplotlib".
    rankdir : {"LR", "TB"}, optional
        Inputs to the left of their consumers, or above them. Default: "LR" for graphs of up to
        20 nodes, "TB" for larger ones (a deep graph drawn left to right is too wide to view).
    max_values : int
        Tensors with at most this many elements show their values (and gradients); larger ones
        show their largest magnitude.
    max_nodes : int or None
        The most nodes a picture draws (after folding chains); None: no limit. A drawing takes
        time and memory that grow faster than the number of nodes, and past a few hundred it is
        too large to read.

    Returns
    -------
    str
        The DOT text (also when a file is written).

    Raises
    ------
    TypeError
        ``tensor`` is not a Tensor, or a value of ``names`` is not one.
    ValueError
        Unknown ``renderer``, ``rankdir`` or file suffix, a negative ``max_values``, a
        ``max_nodes`` below 1, or a picture of more than ``max_nodes`` nodes.
    RuntimeError
        The graph was freed by a backward, or ``renderer="dot"`` without the ``dot`` program
        (or it failed).
    """
    if renderer not in RENDERERS:
        raise ValueError(f"renderer must be one of {RENDERERS}; got {renderer!r}")
    if rankdir not in (None, "LR", "TB"):
        raise ValueError(f"rankdir must be 'LR', 'TB' or None; got {rankdir!r}")
    if isinstance(max_values, bool) or not isinstance(max_values, int) or max_values < 0:
        raise ValueError(f"max_values must be an integer >= 0; got {max_values!r}")
    if max_nodes is not None and (
        isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 1
    ):
        raise ValueError(f"max_nodes must be an integer >= 1 or None; got {max_nodes!r}")
    suffix = None if path is None else Path(path).suffix.lower()
    if suffix is not None and suffix not in GRAPH_FORMATS:
        raise ValueError(f"path must end in one of {GRAPH_FORMATS}; got {os.fspath(path)!r}")
    if trace is not None and not isinstance(trace, BackwardTrace):
        raise TypeError(f"trace must be a BackwardTrace; got {type(trace).__name__}")
    graph = _Graph(tensor, names)
    tensor_lines = {
        graph.ids[id(t)]: _tensor_lines(graph, t, trace, max_values) for t in graph.tensors
    }
    rankdir = rankdir or ("LR" if graph.size <= 20 else "TB")
    text = _dot_text(graph, tensor_lines, rankdir)
    if path is None:
        return text
    path = Path(path)
    drawn = text
    if suffix not in (".dot", ".gv") and max_nodes is not None and graph.size > max_nodes:
        whole = graph.size
        graph.collapse_chains()
        if graph.size > max_nodes:
            raise ValueError(
                f"draw_graph: the graph has {whole} nodes ({graph.size} with its chains of one "
                f"op folded), more than max_nodes={max_nodes}; pass max_nodes={graph.size} (or "
                "None) to draw it anyway, or write its DOT text (a path ending in .dot)"
            )
        drawn = _dot_text(graph, tensor_lines, rankdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".dot", ".gv"):
        with atomic_path(path) as tmp:
            Path(tmp).write_text(text)
    elif renderer == "dot" or (renderer == "auto" and shutil.which("dot")):
        _render_dot(drawn, path, suffix[1:])
    else:
        _render_matplotlib(graph, tensor_lines, path, suffix[1:], rankdir)
    return text


def _dot_text(graph: _Graph, tensor_lines: Mapping[str, list[str]], rankdir: str) -> str:
    lines = [
        "digraph autograd {",
        f"  rankdir={rankdir};",
        '  node [fontname="Helvetica", fontsize=10];',
        "  edge [fontsize=8];",
    ]
    for t in graph.tensors:
        node = graph.ids[id(t)]
        label = _dot_quote("\n".join(tensor_lines[node]))
        lines.append(f"  {node} [{_DOT_STYLE[graph.kind(t)]}, label={label}];")
    for fn in graph.functions:
        node = graph.ids[id(fn)]
        lines.append(
            f'  {node} [shape=ellipse, style=filled, fillcolor="#eeeeee", '
            f"label={_dot_quote(graph.op_labels[node])}];"
        )
    for src, dst, position in graph.edges:
        attributes = f" [label={_dot_quote(position)}]" if position else ""
        lines.append(f"  {src} -> {dst}{attributes};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _render_dot(text: str, path: Path, fmt: str) -> None:
    program = shutil.which("dot")
    if program is None:
        raise RuntimeError(
            "renderer='dot' needs Graphviz's dot program on the PATH (Debian/Ubuntu: "
            "apt-get install graphviz); renderer='matplotlib' needs nothing more"
        )
    done = subprocess.run(
        [program, f"-T{fmt}"], input=text.encode(), capture_output=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"dot failed (exit {done.returncode}): {done.stderr.decode().strip()}")
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(done.stdout)


def _layout(graph: _Graph) -> dict[str, tuple[int, float]]:
    """Rank and position of every node, for drawing in ranks (columns or rows).

    A node's rank counts back from ``tensor`` (the last rank) along the longest path to it, so
    every edge goes to a later rank and each input sits as close to its consumer as it can.
    Within a rank, from the last one back, nodes are ordered by the mean position of their
    consumers (ties in the walk's order), one position apart and centred on 0.
    """
    consumers: dict[str, list[str]] = {}
    for src, dst, _ in graph.edges:
        consumers.setdefault(src, []).append(dst)
    order = [graph.ids[id(t)] for t in graph.tensors] + [graph.ids[id(f)] for f in graph.functions]
    depth: dict[str, int] = {}
    stack = list(order)  # iterative depth-first: a node's depth once its consumers have theirs
    while stack:
        node = stack[-1]
        if node in depth:
            stack.pop()
            continue
        pending = [c for c in consumers.get(node, []) if c not in depth]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        depth[node] = 1 + max((depth[c] for c in consumers.get(node, [])), default=-1)
    last = max(depth.values())
    by_depth: list[list[str]] = [[] for _ in range(last + 1)]
    for n in order:
        by_depth[depth[n]].append(n)
    where: dict[str, float] = {}
    for here in by_depth:
        key = {n: np.mean([where[c] for c in consumers.get(n, [])] or [0.0]) for n in here}
        here.sort(key=key.get)  # stable: ties keep the walk's order
        for i, n in enumerate(here):
            where[n] = i - (len(here) - 1) / 2
    return {n: (last - depth[n], where[n]) for n in order}


def _render_matplotlib(
    graph: _Graph, tensor_lines: Mapping[str, list[str]], path: Path, fmt: str, rankdir: str
) -> None:
    """Draw the graph with matplotlib: ranks (``_layout``'s columns) left to right (``"LR"``) or
    top to bottom (``"TB"``), each node's box sized from its text, then the edges as arrows from
    box to box."""
    place = _layout(graph)
    texts = {graph.ids[id(t)]: "\n".join(tensor_lines[graph.ids[id(t)]]) for t in graph.tensors}
    texts.update({graph.ids[id(f)]: graph.op_labels[graph.ids[id(f)]] for f in graph.functions})
    size = 8  # points; the font is monospaced, so a box's size follows from its text
    pad = 0.08  # inches around the text
    box_w = {n: 0.61 * size / 72 * max(map(len, s.split("\n"))) + 2 * pad for n, s in texts.items()}
    box_h = {n: 1.25 * size / 72 * (s.count("\n") + 1) + 2 * pad for n, s in texts.items()}
    ranks = max(r for r, _ in place.values()) + 1
    extent, across = (box_w, box_h) if rankdir == "LR" else (box_h, box_w)
    along = [0.0] * ranks  # each rank as deep as its largest box; positions one pitch apart
    for n, (r, _) in place.items():
        along[r] = max(along[r], extent[n])
    pitch = max(across.values()) + 0.25
    starts = np.concatenate([[0.0], np.cumsum(np.array(along) + 0.45)])
    spread = max(abs(o) for _, o in place.values())
    centre = {}
    for n, (r, o) in place.items():
        a, b = starts[r] + along[r] / 2, (o + spread) * pitch + pitch / 2
        centre[n] = (a, 2 * spread * pitch + pitch - b) if rankdir == "LR" else (b, -a)
    xs, ys = [c[0] for c in centre.values()], [c[1] for c in centre.values()]
    x0, x1 = min(xs) - max(box_w.values()), max(xs) + max(box_w.values())
    y0, y1 = min(ys) - max(box_h.values()), max(ys) + max(box_h.values())
    dpi = min(100, _MAX_SIDE / max(x1 - x0, y1 - y0))  # a huge graph: smaller, not gigapixels
    fig = Figure(figsize=(x1 - x0, y1 - y0), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.axis("off")
    boxes = {}
    for t in graph.tensors:
        node, kind = graph.ids[id(t)], graph.kind(t)
        box = dict(boxstyle=f"round,pad={pad * 72 / size:.2f}",
                   linewidth=1.6 if kind == "root" else 0.8,
                   facecolor="#d6e6f5" if kind == "leaf" else "white", edgecolor="0.2",
                   linestyle="--" if kind == "constant" else "-")  # fmt: skip
        boxes[node] = ax.text(*centre[node], texts[node], ha="center", va="center",
                              fontsize=size, family="monospace", bbox=box, zorder=2)  # fmt: skip
    for fn in graph.functions:
        node = graph.ids[id(fn)]
        boxes[node] = ax.text(*centre[node], texts[node], ha="center", va="center",
                              fontsize=size, family="monospace", style="italic", zorder=2,
                              bbox=dict(boxstyle=f"round4,pad={pad * 72 / size:.2f}",
                                        facecolor="#eeeeee", edgecolor="0.4"))  # fmt: skip
    seen: dict[tuple[str, str], int] = {}
    for src, dst, _ in graph.edges:
        k = seen[src, dst] = seen.get((src, dst), -1) + 1  # a repeated edge (a * a) curves
        bend = 0.0 if k == 0 else 0.25 * (1 if k % 2 else -1) * ((k + 1) // 2)
        if place[dst][0] - place[src][0] > 1 and place[dst][1] == place[src][1]:
            bend -= 0.2  # around the nodes between, not through them
        ax.annotate("", xy=centre[dst], xytext=centre[src], zorder=1,
                    arrowprops=dict(arrowstyle="-|>", color="0.35", shrinkA=1, shrinkB=1,
                                    patchA=boxes[src].get_bbox_patch(),
                                    patchB=boxes[dst].get_bbox_patch(),
                                    connectionstyle=f"arc3,rad={bend}"))  # fmt: skip
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=fig.dpi, bbox_inches="tight", pad_inches=0.05)
