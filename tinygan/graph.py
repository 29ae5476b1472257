"""The autograd graph drawn and traced: ``draw_graph`` writes what the ops recorded (tensors,
ops, the edges between them) as Graphviz DOT text or a picture, and ``BackwardTrace`` records
what the engine's backward passed along it, op by op (see docs/autograd.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import backend
from .function import Function
from .serialization import atomic_path
from .tensor import Tensor

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
                              fontsize=size, family="monospace", parse_math=False, bbox=box,
                              zorder=2)  # fmt: skip
    for fn in graph.functions:
        node = graph.ids[id(fn)]
        boxes[node] = ax.text(*centre[node], texts[node], ha="center", va="center",
                              fontsize=size, family="monospace", parse_math=False,
                              style="italic", zorder=2,
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
