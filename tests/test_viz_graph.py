"""tinygan.graph: draw_graph (DOT text, both renderers, errors) and BackwardTrace."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

import tinygan as tg
from tinygan import graph as drawer
from tinygan.graph import BackwardTrace, draw_graph

PNG = b"\x89PNG\r\n\x1a\n"


def reuse_graph():
    """y = a * a + a at a = 3, every tensor named."""
    a = tg.tensor(3.0, requires_grad=True)
    aa = a * a
    y = aa + a
    return y, {"a": a, "aa": aa, "y": y}


def mlp_graph():
    """A two-layer network's loss with a constant input and target (float32)."""
    rng = np.random.default_rng(0)
    x = tg.tensor(rng.standard_normal((4, 3)), dtype=np.float32)
    t = tg.tensor(rng.standard_normal((4, 1)), dtype=np.float32)
    w1 = tg.tensor(rng.standard_normal((5, 3)), requires_grad=True, dtype=np.float32)
    b1 = tg.tensor(np.zeros(5), requires_grad=True, dtype=np.float32)
    w2 = tg.tensor(rng.standard_normal((1, 5)), requires_grad=True, dtype=np.float32)
    loss = (((x @ w1.T + b1).relu() @ w2.T - t) ** 2).mean()
    return loss, {"x": x, "t": t, "w1": w1, "b1": b1, "w2": w2, "loss": loss}


def test_dot_text_of_a_known_graph():
    y, names = reuse_graph()
    assert draw_graph(y, names=names) == (
        "digraph autograd {\n"
        "  rankdir=LR;\n"
        '  node [fontname="Helvetica", fontsize=10];\n'
        "  edge [fontsize=8];\n"
        '  t0 [shape=box, style="rounded,bold", label="y\\n() float64\\ndata 12"];\n'
        '  t1 [shape=box, style="rounded", label="aa\\n() float64\\ndata 9"];\n'
        '  t2 [shape=box, style="rounded,filled", fillcolor="#d6e6f5", '
        'label="a\\n() float64\\ndata 3"];\n'
        '  f0 [shape=ellipse, style=filled, fillcolor="#eeeeee", label="Add"];\n'
        '  f1 [shape=ellipse, style=filled, fillcolor="#eeeeee", label="Mul"];\n'
        "  f0 -> t0;\n"
        '  t1 -> f0 [label="0"];\n'
        '  t2 -> f0 [label="1"];\n'
        "  f1 -> t1;\n"
        '  t2 -> f1 [label="0"];\n'
        '  t2 -> f1 [label="1"];\n'
        "}\n"
    )


def test_dot_text_shows_gradients_constants_and_large_tensors():
    loss, names = mlp_graph()
    loss.backward(retain_graph=True)
    dot = draw_graph(loss, names={"w1": names["w1"], "t": names["t"]}, rankdir="TB")
    assert "rankdir=TB;" in dot
    w1_grad = np.abs(names["w1"].grad).max()
    assert f'label="w1\\n(5, 3) float32\\nmax|.| {w1_grad:.4g}"' not in dot  # values: 15 > 6
    assert f"(5, 3) float32\\ngrad max|.| {w1_grad:.4g}" in dot  # the leaf's .grad, summarised
    assert 'style="rounded,dashed", label="t\\n(4, 1) float32\\ndata [[' in dot  # a constant
    for op in ("Mean", "Pow", "Sub", "MatMul", "ReLUFunction", "Add", "Permute"):
        assert f'label="{op}"' in dot
    assert 'label="t5\\n' in dot  # unnamed tensors: their node id
    small = draw_graph(loss, max_values=20)
    assert "data [[" in small and "grad [[" in small  # now every value is shown


def test_trace_follows_the_engine_and_changes_nothing():
    """Every op once, each after all the ops that consumed its output; same gradients."""
    loss, names = mlp_graph()
    graph = drawer._Graph(loss, names)
    with BackwardTrace(loss, names) as trace:
        loss.backward(retain_graph=True)
    ran = [s.output for s in trace.steps]
    made = [graph.label(t) for t in graph.tensors if t.creator is not None]
    assert sorted(ran) == sorted(made)
    for step in trace.steps:
        for x in step.inputs:
            if x in ran:
                assert ran.index(x) > ran.index(step.output), (x, step.output)
    traced = {k: names[k].grad.copy() for k in ("w1", "b1", "w2")}
    for k in traced:
        names[k].grad = None
    loss.backward()
    for k, g in traced.items():
        np.testing.assert_array_equal(g, names[k].grad)  # bit for bit
    assert not any("backward" in vars(fn) for fn in graph.functions)


def test_trace_steps_hold_the_gradients():
    y, names = reuse_graph()
    with BackwardTrace(y, names) as trace:
        y.backward(retain_graph=True)
    assert [str(s) for s in trace.steps] == [
        "Add y: grad 1 -> aa: 1, a: 1",
        "Mul aa: grad 1 -> a: 3, a: 3",
    ]
    assert trace.grad_of(names["aa"]) == 1 and trace.grad_of(names["a"]) is None
    assert "backward" not in vars(y.creator)  # the wrappers are gone after the block
    dot = draw_graph(y, names=names, trace=trace)
    assert "data 12\\ngrad 1" in dot and "data 9\\ngrad 1" in dot and "data 3\\ngrad 7" in dot


def test_trace_under_create_graph_records_tensors_as_arrays():
    y, names = reuse_graph()
    with BackwardTrace(y, names) as trace:
        (g,) = tg.grad(y, names["a"], create_graph=True)
    assert g.item() == 7 and [s.op for s in trace.steps] == ["Add", "Mul"]
    assert all(isinstance(s.grad, np.ndarray) for s in trace.steps)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_dot_renderer_writes_png_and_svg(tmp_path):
    y, names = reuse_graph()
    draw_graph(y, tmp_path / "g.png", names=names, renderer="dot")
    draw_graph(y, tmp_path / "sub" / "g.svg", names=names, renderer="dot")
    assert (tmp_path / "g.png").read_bytes().startswith(PNG)
    svg = (tmp_path / "sub" / "g.svg").read_text()
    assert "<svg" in svg and ">Mul<" in svg and ">aa<" in svg


def test_matplotlib_renderer_writes_png_and_svg(tmp_path):
    loss, names = mlp_graph()
    loss.backward(retain_graph=True)
    draw_graph(loss, tmp_path / "g.png", names=names, renderer="matplotlib")
    draw_graph(loss, tmp_path / "g.svg", names=names, renderer="matplotlib", rankdir="TB")
    assert (tmp_path / "g.png").read_bytes().startswith(PNG)
    assert "<svg" in (tmp_path / "g.svg").read_text()


def test_matplotlib_draws_names_as_written(tmp_path):
    """(From review: the matplotlib renderer read names as math text: '$x_1$' came out
    subscripted and '$\\frac{a}$' raised matplotlib's ParseSyntaxException.)"""
    a = tg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (a * a).sum()
    for i, name in enumerate(("$x_1$", "$\\frac{a}$")):
        draw_graph(y, tmp_path / f"g{i}.png", names={name: a}, renderer="matplotlib")
        assert (tmp_path / f"g{i}.png").read_bytes().startswith(PNG)


def test_layout_puts_every_input_in_an_earlier_rank():
    loss, names = mlp_graph()
    graph = drawer._Graph(loss, names)
    place = drawer._layout(graph)
    assert all(place[src][0] < place[dst][0] for src, dst, _ in graph.edges)
    assert place["t0"][0] == max(r for r, _ in place.values())  # the loss is last


def test_auto_renderer_falls_back_to_matplotlib(tmp_path, monkeypatch):
    y, names = reuse_graph()
    monkeypatch.setattr(drawer.shutil, "which", lambda name: None)
    drawn = []
    monkeypatch.setattr(drawer, "_render_matplotlib", lambda *args: drawn.append(args[2]))
    draw_graph(y, tmp_path / "g.png", names=names)
    assert drawn == [tmp_path / "g.png"]
    with pytest.raises(RuntimeError, match="apt-get install graphviz"):
        draw_graph(y, tmp_path / "h.png", renderer="dot")


def test_dot_program_failure_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(drawer.shutil, "which", lambda name: sys.executable)  # python -Tpng: exit 2
    y, _ = reuse_graph()
    with pytest.raises(RuntimeError, match=r"dot failed \(exit 2\): .*-T"):
        draw_graph(y, tmp_path / "g.png", renderer="dot")
    assert not (tmp_path / "g.png").exists()


def test_dot_file_is_the_returned_text(tmp_path):
    y, names = reuse_graph()
    assert (tmp_path / "g.dot").exists() is False
    text = draw_graph(y, tmp_path / "g.dot", names=names)
    assert (tmp_path / "g.dot").read_text() == text


def test_deep_chain_without_recursion():
    x = tg.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(3000):
        y = y * 1.0
    graph = drawer._Graph(y, None)
    assert len(graph.functions) == 3000
    assert max(r for r, _ in drawer._layout(graph).values()) == 6000
    assert draw_graph(y).count("->") == 6000 + 3000  # output edges, tensor and constant inputs


def test_bad_input_errors(tmp_path):
    y, _ = reuse_graph()
    with pytest.raises(TypeError, match="expected a Tensor; got ndarray"):
        draw_graph(np.ones(3))
    with pytest.raises(TypeError, match=r"names\['a'\] is a float, not a Tensor"):
        draw_graph(y, names={"a": 3.0})
    with pytest.raises(TypeError, match=r"names must map labels to Tensors \(a dict\); got list"):
        draw_graph(y, names=[y])
    with pytest.raises(ValueError, match=r"renderer must be one of .* got 'graphviz'"):
        draw_graph(y, tmp_path / "g.png", renderer="graphviz")
    with pytest.raises(ValueError, match=r"path must end in one of .*g\.jpg"):
        draw_graph(y, tmp_path / "g.jpg")
    with pytest.raises(ValueError, match="rankdir must be 'LR', 'TB' or None; got 'BT'"):
        draw_graph(y, rankdir="BT")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(
            ValueError, match=f"max_nodes must be an integer >= 1 or None; got {bad}"
        ):
            draw_graph(y, tmp_path / "g.png", max_nodes=bad)
    with pytest.raises(ValueError, match="max_values must be an integer >= 0; got -1"):
        draw_graph(y, max_values=-1)
    with pytest.raises(TypeError, match="trace must be a BackwardTrace; got dict"):
        draw_graph(y, trace={})
    assert not list(tmp_path.iterdir())  # nothing written by a call that raised
    y.backward()
    with pytest.raises(RuntimeError, match=r"freed by a backward.*retain_graph=True"):
        draw_graph(y)
    with pytest.raises(RuntimeError, match="freed by a backward"):
        BackwardTrace(y)


# ---- large graphs ------------------------------------------------------------------------
def chain(n, ops=(lambda y: y * 1.0,)):
    """x and y = ops applied n times in turn to x (``y * 1.0``: a new constant each time)."""
    x = tg.tensor(1.0, requires_grad=True)
    y = x
    for k in range(n):
        y = ops[k % len(ops)](y)
    return x, y


def image_shape(path):
    import matplotlib.image

    return matplotlib.image.imread(path).shape[:2]


def test_a_long_chain_is_drawn_folded_into_one_node(tmp_path):
    """A 2,000-op chain (6,001 nodes) drew a 420,399-pixel-wide PNG in a minute and 2.6 GB."""
    x, y = chain(2000)
    assert draw_graph(y).count("->") == 3 * 2000  # the text holds the whole graph
    graph = drawer._Graph(y, {"x": x})
    graph.collapse_chains()
    assert [graph.label(t) for t in graph.tensors] == ["t0", "x"]
    assert [graph.op_labels[graph.ids[id(f)]] for f in graph.functions] == [
        "Mul ×2000\n2000 constants"
    ]
    assert [(s, d) for s, d, _ in graph.edges] == [("f0", "t0"), (graph.ids[id(x)], "f0")]
    draw_graph(y, tmp_path / "chain.png", names={"x": x}, renderer="matplotlib")
    height, width = image_shape(tmp_path / "chain.png")
    assert height < 1000 and width < 1000


def test_folding_keeps_named_tensors_shared_inputs_and_other_ops():
    w = tg.tensor(np.ones(3), requires_grad=True)
    x = tg.tensor(np.ones(3), requires_grad=True)
    y = x
    for _ in range(5):
        y = y * w  # the same leaf into every op: one edge into the folded node
    kept = y
    for _ in range(4):
        y = y * w
    loss = (y.tanh() + kept).sum()
    graph = drawer._Graph(loss, {"kept": kept, "w": w, "x": x})
    graph.collapse_chains()
    labels = {graph.ids[id(f)]: graph.op_labels[graph.ids[id(f)]] for f in graph.functions}
    assert sorted(labels.values()) == ["Add", "Mul ×4", "Mul ×5", "Sum", "TanhFunction"]
    assert {graph.label(t) for t in graph.tensors} >= {"kept", "w", "x"}
    into = {label: [s for s, d, _ in graph.edges if d == node] for node, label in labels.items()}
    assert sorted(into["Mul ×5"]) == sorted([graph.ids[id(w)], graph.ids[id(x)]])
    assert sorted(into["Mul ×4"]) == sorted([graph.ids[id(w)], graph.ids[id(kept)]])


def test_a_picture_above_max_nodes_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    _, y = chain(400, (lambda y: y * 1.0, tg.tanh))  # no two ops alike in a row: nothing folds
    with pytest.raises(ValueError, match=r"has 1001 nodes \(1001 with .* max_nodes=300; pass "):
        draw_graph(y, tmp_path / "g.png")
    with pytest.raises(ValueError, match="more than max_nodes=1000"):
        draw_graph(y, tmp_path / "g.svg", max_nodes=1000)
    assert not list(tmp_path.iterdir())
    assert draw_graph(y, tmp_path / "g.dot") == (tmp_path / "g.dot").read_text()  # no limit
    drawn = []
    monkeypatch.setattr(drawer, "_render_matplotlib", lambda graph, *args: drawn.append(graph.size))
    monkeypatch.setattr(drawer.shutil, "which", lambda name: None)
    draw_graph(y, tmp_path / "g.png", max_nodes=None)
    draw_graph(chain(2000)[1], tmp_path / "h.png", max_nodes=3)
    assert drawn == [1001, 3]


def test_rankdir_defaults_to_top_to_bottom_for_large_graphs():
    y, _ = reuse_graph()
    loss, _ = mlp_graph()
    assert "rankdir=LR;" in draw_graph(y)
    assert drawer._Graph(loss, None).size > 20 and "rankdir=TB;" in draw_graph(loss)
    assert "rankdir=LR;" in draw_graph(loss, rankdir="LR")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_dot_renderer_draws_the_folded_graph(tmp_path):
    _, y = chain(2000)
    draw_graph(y, tmp_path / "chain.svg", renderer="dot")
    svg = (tmp_path / "chain.svg").read_text()
    assert "Mul ×2000" in svg and svg.count('<g id="node') == 3
