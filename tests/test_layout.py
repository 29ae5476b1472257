"""The package's layout (issue 26), checked so that it stays one a newcomer can take over: modules
a reader can hold in mind, Functions named apart from layers, the engine a closed unit, and the
MPI rank asked in one place."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil

import tinygan
from tinygan.function import Function
from tinygan.nn import Module

from .conftest import ROOT

PACKAGE = ROOT / "tinygan"


def _modules():
    """Every module of tinygan, imported."""
    for info in pkgutil.walk_packages(tinygan.__path__, "tinygan."):
        yield importlib.import_module(info.name)


def test_no_module_is_over_600_lines():
    lines = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines())
             for p in PACKAGE.rglob("*.py")}  # fmt: skip
    assert {p: n for p, n in lines.items() if n > 600} == {}


def test_no_function_shares_its_name_with_a_layer():
    functions, layers = set(), set()
    for module in _modules():
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__:
                functions |= {name} if issubclass(obj, Function) else set()
                layers |= {name} if issubclass(obj, Module) else set()
    assert {"LinearFunction", "Conv2dFunction", "Linear", "Conv2d"} <= functions | layers
    assert functions & layers == set()


def test_the_engine_imports_no_op():
    """tensor.py and function.py stand on their own; ``ops.install_tensor_methods`` gives Tensor
    its operators."""
    for name in ("tensor.py", "function.py"):
        tree = ast.parse((PACKAGE / name).read_text())
        imported = [
            (node.module or "") + "." + alias.name
            if isinstance(node, ast.ImportFrom)
            else alias.name
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        ]
        assert [m for m in imported if "ops" in m.split(".")] == [], name
    tensor = ast.parse((PACKAGE / "tensor.py").read_text())
    body = next(n.body for n in tensor.body if isinstance(n, ast.ClassDef) and n.name == "Tensor")
    defined = {n.name for n in body if isinstance(n, ast.FunctionDef)}
    assert (
        defined & {"__add__", "__rmul__", "__getitem__", "sum", "reshape", "to", "astype"} == set()
    )
    assert tinygan.Tensor.__add__ is tinygan.ops.add and tinygan.Tensor.sum is tinygan.ops.sum


def test_only_the_runner_asks_which_rank_writes():
    """Outside tinygan.distributed, ``distributed.is_main``/``rank`` are called in runner.py
    alone (the training loop asks its ``DataParallel``)."""
    askers = set()
    for path in PACKAGE.rglob("*.py"):
        if "distributed" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            asks = (  # distributed.is_main(), ....rank, world().rank, or importing them by name
                isinstance(node, ast.Attribute) and node.attr in ("is_main", "rank")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("parallel", "self"))
            ) or (
                isinstance(node, ast.ImportFrom) and "distributed" in (node.module or "")
                and {a.name for a in node.names} & {"is_main", "rank", "world"}
            )  # fmt: skip
            if asks:
                askers.add(path.name)
    assert askers == {"runner.py"}
