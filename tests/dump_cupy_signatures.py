"""Write ``tests/cupy_signatures.json``: the signatures of the real CuPy's functions, ufuncs and
``ndarray`` methods, which the test-only CuPy stand-in (``tests/cupy_standin.py``) enforces.

Run once per CuPy release with any CuPy wheel installed; it needs no GPU (the wheel imports
without one)::

    pip install cupy-cuda12x && python tests/dump_cupy_signatures.py

Each signature is stored as a parameter list with its defaults written ``...``
(``"a, dtype=..., order=..., *, copy=..., blocking=..."``): which arguments CuPy accepts, by
position and by name, is all the stand-in checks. Functions and methods compiled with Cython
have no ``inspect`` signature; theirs is the first line of their docstring.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import cupy
import numpy

OUT = Path(__file__).with_name("cupy_signatures.json")


def _split_top(params: str) -> list[str]:
    """Split a parameter list at the commas outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(params):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(params[start:i])
            start = i + 1
    parts.append(params[start:])
    return [p.strip() for p in parts if p.strip()]


def _from_docstring(obj) -> str:
    """``name(self, Py_ssize_t axis, x=None, \\*, y=1) -> t`` -> ``"axis, x=..., *, y=..."``."""
    line = (obj.__doc__ or "").strip().splitlines()[0]
    params = line[line.index("(") + 1 : line.rindex(")")]
    out = []
    for p in _split_top(params.replace("\\*", "*")):
        name = p.split("=")[0].split(":")[0].split()[-1]  # drop a C type before the name
        if name != "self":
            out.append(name + ("=..." if "=" in p else ""))
    return ", ".join(out)


def _from_signature(sig: inspect.Signature) -> str:
    out, kind = [], None
    for p in sig.parameters.values():
        if kind == p.POSITIONAL_ONLY and p.kind != kind:
            out.append("/")
        if p.kind == p.KEYWORD_ONLY and kind not in (p.KEYWORD_ONLY, p.VAR_POSITIONAL):
            out.append("*")
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        out.append(prefix + p.name + ("" if p.default is p.empty else "=..."))
        kind = p.kind
    if kind == inspect.Parameter.POSITIONAL_ONLY:
        out.append("/")
    return ", ".join(out)


def signature(obj) -> str:
    try:
        params = _from_signature(inspect.signature(obj))
    except (TypeError, ValueError):
        params = _from_docstring(obj)
    params = re.sub(r"^self(, )?", "", params)
    eval(f"lambda {params}: None", {})  # a valid Python parameter list
    return params


def _ufunc_keywords(ufunc) -> list[str]:
    """The keyword arguments a ufunc takes besides its inputs and outputs, from its docstring
    (``add(x1, x2, /, out=None, \\*, casting='same_kind', dtype=None)``)."""
    line = ufunc.__doc__.strip().splitlines()[0]
    keywords = line[line.index("/") + 1 : line.rindex(")")].replace("\\*", "")
    return sorted(re.findall(r"(\w+)=", keywords))


def main() -> None:
    functions, ufuncs, numpy_objects = {}, {}, []
    for name in sorted(n for n in dir(cupy) if not n.startswith("_")):
        obj = getattr(cupy, name)
        if obj is getattr(numpy, name, None):
            numpy_objects.append(name)  # dtypes, finfo, ...: the very NumPy object
        elif isinstance(obj, cupy.ufunc):
            ufuncs[name] = dict(nin=obj.nin, nout=obj.nout, keywords=_ufunc_keywords(obj))
        elif inspect.isfunction(obj) or type(obj).__name__ == "_GUFunc":
            functions[name] = signature(obj)
    methods, attributes = {}, []
    for name in sorted(dir(cupy.ndarray)):
        obj = getattr(cupy.ndarray, name)
        if (name.startswith("_") and not name.startswith("__")) or name.startswith("__pyx"):
            continue  # Cython's and CuPy's private members
        if name.startswith("__") or not callable(obj):
            attributes.append(name)  # dunders (which exist is what matters) and properties
        else:
            methods[name] = signature(obj)
    data = dict(
        cupy_version=cupy.__version__,
        numpy_version=numpy.__version__,
        functions=functions,
        ufuncs=ufuncs,
        numpy_objects=numpy_objects,
        ndarray_methods=methods,
        ndarray_attributes=attributes,
    )
    OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}: CuPy {cupy.__version__}, {len(functions)} functions, {len(ufuncs)} "
          f"ufuncs, {len(methods)} ndarray methods")  # fmt: skip


if __name__ == "__main__":
    main()
