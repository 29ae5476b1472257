"""A test-only stand-in for CuPy: NumPy computes, CuPy's rules are enforced, so that every device
path of tinygan runs, and is checked, on a machine without a GPU.

``tests/conftest.py`` points ``tinygan.backend`` at this module for the tests marked ``gpu``
where no GPU is usable (with one, they run on the real CuPy). What it emulates:

- ``ndarray``: a NumPy array inside a wrapper that is *not* an ``np.ndarray`` subclass. It has
  exactly the methods and operators of CuPy's ndarray, with their parameters
  (``cupy_signatures.json``, dumped from the real CuPy wheel by ``dump_cupy_signatures.py``), so
  a call CuPy would refuse raises ``TypeError`` here too. ``__array__`` raises as CuPy's does: an
  implicit host conversion (``np.asarray(a)``, a NumPy function CuPy lacks) fails; ``.get()``,
  ``asnumpy``, ``float()``, ``bool()`` are the explicit ways (the last two are counted in
  ``syncs``: on a GPU each waits for the device).
- the module's functions and ufuncs: those of the real CuPy with their parameters, computed by
  NumPy's function of the same name. A NumPy array among their arguments raises ``TypeError``
  (mixed devices: CuPy refuses implicit host-to-device copies), except in ``array``/``asarray``
  and as an index; assigning one into an array raises ``ValueError``, as in CuPy.
- CuPy's memory layout: every new array is C-contiguous (CuPy's ufuncs and elementwise kernels
  allocate C order, where NumPy keeps the input's layout), except from functions that take an
  ``order`` argument (``astype``, ``empty_like``, ...), which follow it as NumPy does. Views stay
  views. Reductions give 0-d arrays, not scalars.
- ``RawKernel``: each launch is checked as the GPU would need it (grid and block within CUDA's
  limits; as many arguments as the kernel's C parameters, each of the C type: pointers are
  C-contiguous arrays of the element type, scalars NumPy scalars of exactly that type, a
  Python int being int64 as in CuPy), then the kernel runs as the NumPy emulation registered
  under its name in ``KERNELS``, on the flat buffers: an index outside a buffer raises.
- ``ElementwiseKernel``: CuPy's argument rules (type placeholders bound by the arrays, a
  conflict raises; scalars cast to their parameter's type; outputs allocated C-contiguous with
  the broadcast shape, or given with exactly that shape), then the NumPy emulation in
  ``KERNELS``.
- ``cuda``: one device, a stream whose events are done at once, NCCL in a world of one.

What it cannot catch: anything of the hardware (races, uninitialised memory, memory limits,
asynchronous errors, speed); whether the CUDA sources compile and compute what their
emulations here compute (the NVRTC check and the host-compiled kernel tests do that); where
CuPy's results differ from NumPy's in value (the order of float sums in reductions and GEMMs)
or in dtype; functions that CuPy accepts host arrays in besides ``array``/``asarray`` (refused
here); multi-GPU and multi-process NCCL.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import re
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

SIGNATURES = json.loads(Path(__file__).with_name("cupy_signatures.json").read_text())
__version__ = SIGNATURES["cupy_version"] + "+standin"
syncs = 0  # device-to-host waits: bool(), float(), int(), item(), get(), asnumpy()

_SCALARS = (bool, int, float, complex, np.generic)


@functools.cache
def _signature(params: str) -> inspect.Signature:
    return inspect.signature(eval(f"lambda {params}: None", {}))  # our own JSON's text


def _bind(what: str, params: str, args: tuple, kwargs: dict) -> None:
    """Raise TypeError where CuPy's ``what`` would refuse these arguments."""
    try:
        _signature(params).bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{what}() {e} (CuPy {SIGNATURES['cupy_version']}'s signature)") from None


# ---- between host and device ------------------------------------------------------------------
def _host_error(what: str, a: np.ndarray) -> TypeError:
    return TypeError(
        f"{what}: got a numpy.ndarray {a.shape} among CuPy arrays (Unsupported type "
        "<class 'numpy.ndarray'>): move it to the device explicitly"
    )


def _unwrap(x: Any, what: str, host_ok: bool = False) -> Any:
    """Stand-in arrays to their NumPy arrays, in nested tuples, lists and dicts; a NumPy array
    is a TypeError unless ``host_ok``."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray) and not host_ok:
        raise _host_error(what, x)
    if isinstance(x, (tuple, list)):
        return type(x)(_unwrap(e, what, host_ok) for e in x)
    if isinstance(x, dict):
        return {k: _unwrap(v, what, host_ok) for k, v in x.items()}
    return x


def _wrap(x: Any, inputs: tuple = (), keep_layout: bool = False) -> Any:
    """NumPy results to stand-in arrays: the very input object where NumPy returned an input's
    array (``out=``), a view where it is one, else a C-contiguous new array (CuPy's layout),
    unless ``keep_layout``; NumPy scalars become 0-d arrays."""
    if isinstance(x, np.generic):
        return ndarray._of(np.asarray(x))
    if isinstance(x, np.ndarray):
        mine = [a for a in inputs if isinstance(a, ndarray)]
        for a in mine:
            if x is a._a:
                return a
        if not keep_layout and not any(np.may_share_memory(x, a._a) for a in mine):
            x = np.ascontiguousarray(x)
        return ndarray._of(x)
    if isinstance(x, (tuple, list)):
        return type(x)(_wrap(e, inputs, keep_layout) for e in x)
    return x


def _leaves(*xs: Any) -> tuple:
    """The stand-in arrays among ``xs``, in nested tuples, lists and dicts."""
    out: list = []
    for x in xs:
        if isinstance(x, ndarray):
            out.append(x)
        elif isinstance(x, (tuple, list)):
            out.extend(_leaves(*x))
        elif isinstance(x, dict):
            out.extend(_leaves(*x.values()))
    return tuple(out)


def _call(what: str, params: str, fn, args: tuple, kwargs: dict, owner: Any = None):
    """Check the arguments against CuPy's ``params``, run NumPy's ``fn``, wrap the result
    (``owner``: the array whose method ``fn`` is)."""
    _bind(what, params, args, kwargs)
    result = fn(*_unwrap(args, what), **_unwrap(kwargs, what))
    inputs = _leaves(args, kwargs, owner)
    return _wrap(result, inputs, keep_layout="order" in _signature(params).parameters)


def _sync(a: ndarray) -> np.ndarray:
    global syncs
    syncs += 1
    return a._a


# ---- the array -------------------------------------------------------------------------------
class ndarray:  # (CuPy's names, lower case)
    """A device array: NumPy's ``_a`` inside, CuPy's interface outside."""

    __slots__ = ("__weakref__", "_a")
    __array_priority__ = 100

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("the stand-in's ndarray() takes no memptr or strides")
        self._a = np.empty(shape, dtype, order=order)

    @classmethod
    def _of(cls, a: np.ndarray) -> ndarray:
        out = cls.__new__(cls)
        out._a = a
        return out

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: SimpleNamespace(c_contiguous=self._a.flags.c_contiguous,
                                                  f_contiguous=self._a.flags.f_contiguous,
                                                  owndata=self._a.base is None))  # fmt: skip
    T = property(lambda self: ndarray._of(self._a.T))
    mT = property(lambda self: ndarray._of(self._a.mT))
    real = property(lambda self: ndarray._of(self._a.real))
    imag = property(lambda self: ndarray._of(self._a.imag))
    base = property(lambda self: None if self._a.base is None else ndarray._of(self._a.base))
    device = property(lambda self: cuda.Device(0))
    data = property(lambda self: SimpleNamespace(ptr=self._a.ctypes.data, device_id=0))

    def __getattr__(self, name: str):
        params = SIGNATURES["ndarray_methods"].get(name)
        if params is None:
            raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r}")
        if not hasattr(self._a, name):
            raise NotImplementedError(f"the stand-in does not emulate cupy.ndarray.{name}")
        method = getattr(self._a, name)
        return lambda *args, **kwargs: _call(f"ndarray.{name}", params, method, args, kwargs, self)

    # the methods NumPy's ndarray lacks, or where CuPy differs
    def get(self, stream=None, order="C", out=None, blocking=True) -> np.ndarray:
        if out is not None:
            raise NotImplementedError("the stand-in's get() takes no out")
        return np.array(_sync(self), order=order, copy=True)

    def item(self):
        return _sync(self).item()

    def tolist(self):
        return _sync(self).tolist()

    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly."
        )

    def __array_ufunc__(self, np_ufunc, method, *inputs, **kwargs):
        """As CuPy's: NumPy's ufuncs on these arrays run CuPy's of the same name."""
        if "out" in kwargs:
            (kwargs["out"],) = kwargs["out"]
        try:
            fn = getattr(_this, np_ufunc.__name__)
            fn = fn if method == "__call__" else getattr(fn, method)
        except AttributeError:
            return NotImplemented
        if np_ufunc.__name__ in _COMPARISONS:  # as CuPy: 0-d NumPy arrays compare as scalars
            inputs = tuple(x.item() if isinstance(x, np.ndarray) and x.ndim == 0 else x
                           for x in inputs)  # fmt: skip
        return fn(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        """As CuPy's: NumPy's functions on these arrays run CuPy's of the same name, if any."""
        if func.__module__ != "numpy" or func.__name__ not in SIGNATURES["functions"]:
            return NotImplemented
        if not all(issubclass(t, (ndarray, np.ndarray)) for t in types):
            return NotImplemented
        return getattr(_this, func.__name__)(*args, **kwargs)

    def __getitem__(self, index):
        return _wrap(self._a[_unwrap(index, "indexing", host_ok=True)], (self,))

    def __setitem__(self, index, value):
        if isinstance(value, (np.ndarray, list)) and np.shape(value) != ():
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        self._a[_unwrap(index, "indexing", host_ok=True)] = _unwrap(value, "assignment", True)

    def __bool__(self) -> bool:
        if self.size == 0:
            warnings.warn("The truth value of an empty array is ambiguous", DeprecationWarning,
                          stacklevel=2)  # fmt: skip
            return False
        if self.size > 1:
            raise ValueError(
                "The truth value of an array with more than one element is ambiguous. "
                "Use a.any() or a.all()"
            )
        return bool(_sync(self))

    def __float__(self) -> float:
        return float(_sync(self).reshape(()))

    def __int__(self) -> int:
        return int(_sync(self).reshape(()))

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __repr__(self) -> str:
        return f"standin.{self._a!r}"

    def __copy__(self) -> ndarray:
        return self.copy()

    def __deepcopy__(self, memo) -> ndarray:
        return self.copy()


def _operator(name: str, reflected: bool = False, inplace: bool = False):
    def op(self, other=None):
        fn = getattr(_this, name)
        if name in ("negative", "positive", "absolute", "invert"):
            return fn(self)
        if inplace:
            return fn(self, other, out=self)
        return fn(other, self) if reflected else fn(self, other)

    return op


_OPERATORS = dict(add="add", sub="subtract", mul="multiply", truediv="true_divide",
                  floordiv="floor_divide", mod="remainder", pow="power", matmul="matmul",
                  and_="bitwise_and", or_="bitwise_or", xor="bitwise_xor",
                  lshift="left_shift", rshift="right_shift")  # fmt: skip
for _op, _fn in _OPERATORS.items():
    _op = _op.rstrip("_")
    setattr(ndarray, f"__{_op}__", _operator(_fn))
    setattr(ndarray, f"__r{_op}__", _operator(_fn, reflected=True))
    if f"__i{_op}__" in SIGNATURES["ndarray_attributes"]:  # (no __imatmul__)
        setattr(ndarray, f"__i{_op}__", _operator(_fn, inplace=True))
_COMPARISONS = dict(lt="less", le="less_equal", eq="equal", ne="not_equal", gt="greater",
                    ge="greater_equal")  # fmt: skip
for _op, _fn in dict(**_COMPARISONS, neg="negative", pos="positive", abs="absolute",
                     invert="invert").items():  # fmt: skip
    setattr(ndarray, f"__{_op}__", _operator(_fn))
ndarray.__hash__ = None  # unhashable, as CuPy's
_missing = {n for n in vars(ndarray) if n.startswith("__") and n.endswith("__")} - set(
    SIGNATURES["ndarray_attributes"]
) - {"__slots__", "__weakref__", "__getattr__", "__module__", "__dict__", "__qualname__",
     "__firstlineno__", "__static_attributes__"}  # fmt: skip
assert not _missing, f"the stand-in defines what CuPy's ndarray has not: {_missing}"


# ---- ufuncs and module functions ---------------------------------------------------------------
class ufunc:
    """CuPy's ufunc ``name``: inputs are device arrays or scalars, outputs C-contiguous."""

    def __init__(self, name: str):
        spec = SIGNATURES["ufuncs"][name]
        self.__name__ = self.name = name
        self.nin, self.nout, self.keywords = spec["nin"], spec["nout"], set(spec["keywords"])
        self._np = getattr(np, name)

    def _check(self, args: tuple) -> None:
        for a in args:
            if isinstance(a, np.ndarray):
                raise _host_error(f"cupy.{self.name}", a)
            if not isinstance(a, (ndarray, *_SCALARS)):
                raise TypeError(f"cupy.{self.name}: Unsupported type {type(a)}")

    def __call__(self, *args, **kwargs):
        if not self.nin <= len(args) <= self.nin + self.nout:
            raise TypeError(f"Wrong number of arguments for {self.name!r}: {len(args)}")
        if set(kwargs) - self.keywords:
            raise TypeError(f"Wrong arguments {kwargs} (cupy.{self.name} takes {self.keywords})")
        inputs, outs, out = args[: self.nin], args[self.nin :], kwargs.pop("out", None)
        if out is not None:
            outs = out if isinstance(out, tuple) else (out,)
        self._check(inputs)
        if not all(isinstance(o, ndarray) for o in outs):
            raise TypeError("Output arguments type must be cupy.ndarray")
        out = tuple(o._a for o in outs) or None
        result = self._np(*_unwrap(inputs, self.name), out=out, order="C", **kwargs)
        return _wrap(result, (*inputs, *outs))

    def at(self, a, indices, b=None) -> None:
        self._check((a,) if b is None else (a, b))
        values = () if b is None else (_unwrap(b, f"cupy.{self.name}.at"),)
        self._np.at(a._a, _unwrap(indices, "indexing", host_ok=True), *values)


def asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    """Host data is copied to the device; a device array is returned as it is when it fits."""
    if isinstance(a, ndarray):
        return _call("asarray", SIGNATURES["functions"]["asarray"], np.asarray, (a, dtype, order),
                     {"copy": copy})  # fmt: skip
    return ndarray._of(np.array(a, dtype=dtype, order=order or "K", copy=True))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    if isinstance(obj, ndarray):
        return ndarray._of(np.array(obj._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin))
    return ndarray._of(np.array(obj, dtype=dtype, order=order, ndmin=ndmin, copy=True))


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if isinstance(a, ndarray):
        return a.get(order=order)
    return np.asarray(a, order=order)


def get_array_module(*args):
    return _this if any(isinstance(a, ndarray) for a in args) else np


def _host_assert(check):
    return lambda actual, desired, *args, **kwargs: check(asnumpy(actual), asnumpy(desired), *args,
                                                          **kwargs)  # fmt: skip


testing = SimpleNamespace(assert_allclose=_host_assert(np.testing.assert_allclose),
                          assert_array_equal=_host_assert(np.testing.assert_array_equal))  # fmt: skip


def __getattr__(name: str):
    """CuPy's other functions and ufuncs, made on first use (PEP 562)."""
    if name in SIGNATURES["numpy_objects"]:
        value = getattr(np, name)
    elif name in SIGNATURES["ufuncs"]:
        value = ufunc(name)
    elif name in SIGNATURES["functions"]:
        fn, params = getattr(np, name, None), SIGNATURES["functions"][name]
        if fn is None:
            raise AttributeError(f"the stand-in does not emulate cupy.{name}")
        value = functools.wraps(fn)(lambda *a, **k: _call(name, params, fn, a, k))
    else:
        raise AttributeError(f"module 'cupy' has no attribute {name!r} (CuPy {__version__})")
    globals()[name] = value
    return value


# ---- kernels -----------------------------------------------------------------------------------
_CTYPES = {"float": np.float32, "double": np.float64, "int": np.int32, "long long": np.int64,
           "unsigned int": np.uint32, "size_t": np.uint64, "bool": np.bool_}  # fmt: skip
KERNELS: dict[str, Any] = {}  # kernel name -> its NumPy emulation (registered below)


def _c_params(code: str, name: str) -> list[tuple[str, bool]]:
    """The ``(C type, is pointer)`` of each parameter of ``__global__ void name(...)``, with the
    source's ``typedef``s resolved."""
    typedefs = dict(
        (alias, ctype) for ctype, alias in re.findall(r"typedef\s+([\w ]+?)\s+(\w+);", code)
    )
    match = re.search(rf"__global__\s+void\s+{name}\s*\(([^)]*)\)", code)
    if match is None:
        raise ValueError(f"no __global__ function {name!r} in the kernel's source")
    params = []
    for p in match.group(1).split(","):
        words = p.replace("*", " * ").replace("const", "").replace("__restrict__", "").split()
        ctype = " ".join(w for w in words[:-1] if w != "*")
        params.append((typedefs.get(ctype, ctype), "*" in words))
    return params


def _launch_dims(dims: Any, what: str, limits: tuple[int, int, int]) -> int:
    dims = dims if isinstance(dims, tuple) else (dims,)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, (int, np.integer)) for d in dims):
        raise TypeError(f"RawKernel {what} must be a tuple of 1 to 3 ints; got {dims!r}")
    for d, limit in zip(dims, limits):
        if not 1 <= d <= limit:
            raise ValueError(f"RawKernel {what} {dims}: each size must be in [1, {limit}]")
    return math.prod(dims)


class RawKernel:
    """A CUDA kernel from source: launches are checked against its C parameters, then run by
    its NumPy emulation ``KERNELS[name](*args)`` on the flat buffers."""

    def __init__(self, code: str, name: str, options=(), backend="nvrtc", *args, **kwargs):
        if name not in KERNELS:
            raise NotImplementedError(f"the stand-in has no emulation of the kernel {name!r}")
        self.code, self.name, self.params = code, name, _c_params(code, name)

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None):
        _launch_dims(grid, "grid", (2**31 - 1, 65535, 65535))
        threads = _launch_dims(block, "block", (1024, 1024, 64))
        if threads > 1024:
            raise ValueError(f"RawKernel block {block}: at most 1024 threads per block")
        if not isinstance(args, tuple) or len(args) != len(self.params):
            raise TypeError(f"{self.name}: needs a tuple of {len(self.params)} arguments")
        flat = []
        for i, (a, (ctype, pointer)) in enumerate(zip(args, self.params)):
            dtype = np.dtype(_CTYPES[ctype])
            if pointer:
                if not isinstance(a, ndarray) or a.dtype != dtype or not a.flags.c_contiguous:
                    raise TypeError(f"{self.name} argument {i}: needs a C-contiguous device array "
                                    f"of {ctype} ({dtype}); got {a!r:.80}")  # fmt: skip
                flat.append(a._a.reshape(-1))
            else:  # a kernel reads a scalar's bytes as its C type, so the type must be exact
                got = np.asarray(a).dtype if isinstance(a, _SCALARS) else None
                if got != dtype:
                    raise TypeError(f"{self.name} argument {i}: needs a {ctype} ({dtype}); got "
                                    f"{type(a).__name__} {a!r}")  # fmt: skip
                flat.append(a)
        KERNELS[self.name](*flat)  # (a grid-stride loop: any grid covers every element)


def _param_list(params: str) -> list[tuple[str, str]]:
    """``"T x, float32 y"`` -> [("T", "x"), ("float32", "y")]."""
    return [tuple(p.split()[-2:]) for p in params.split(",") if p.strip()]


class ElementwiseKernel:
    """CuPy's ``ElementwiseKernel``: its argument rules, then ``KERNELS[name](**inputs)``, which
    returns the outputs by name."""

    def __init__(self, in_params: str, out_params: str, operation: str, name="kernel", *args,
                 **kwargs):  # fmt: skip
        if name not in KERNELS:
            raise NotImplementedError(f"the stand-in has no emulation of the kernel {name!r}")
        self.ins, self.outs = _param_list(in_params), _param_list(out_params)
        self.name, self.operation = name, operation

    def __call__(self, *args, size=None, block_size=128, stream=None):
        if len(args) not in (len(self.ins), len(self.ins) + len(self.outs)):
            raise TypeError(f"Wrong number of arguments for {self.name!r}: {len(args)}")
        for a in args:
            if isinstance(a, np.ndarray):
                raise _host_error(self.name, a)
            if not isinstance(a, (ndarray, *_SCALARS)):
                raise TypeError(f"{self.name}: Unsupported type {type(a)}")
        outs = args[len(self.ins) :]
        if not all(isinstance(o, ndarray) for o in outs):
            raise TypeError("Output arguments type must be cupy.ndarray")
        types: dict[str, np.dtype] = {}
        for (ctype, pname), a in zip(self.ins + self.outs, args):
            if isinstance(a, ndarray):  # a one-letter type is a placeholder, bound by an array
                want = types.setdefault(ctype, a.dtype) if len(ctype) == 1 else np.dtype(ctype)
                if a.dtype != want:
                    raise TypeError(f"Type is mismatched. {pname} {a.dtype} {want} {ctype}")
        shape = np.broadcast_shapes(
            *(a.shape for a in args[: len(self.ins)] if isinstance(a, ndarray))
        )
        for o in outs:
            if o.shape != shape:
                raise ValueError("Out shape is mismatched")
        outs = outs or tuple(ndarray(shape, types[t]) for t, _ in self.outs)
        values = {p: a._a if isinstance(a, ndarray) else types[t].type(a)
                  for (t, p), a in zip(self.ins + self.outs, (*args[: len(self.ins)], *outs))}  # fmt: skip
        results = KERNELS[self.name](**values)
        for o, (_, p) in zip(outs, self.outs):
            o._a[...] = results[p]
        return outs[0] if len(outs) == 1 else outs


# ---- cuda: one device, no asynchrony ------------------------------------------------------------
class _Device:
    def __init__(self, device=0):
        if device != 0:
            raise ValueError(f"the stand-in has one device (0); got {device}")
        self.id, self.compute_capability = 0, "90"

    def use(self) -> None:
        pass


class _Event:
    done = True  # nothing runs asynchronously here


class _Stream:
    ptr = 0

    def record(self, event=None) -> _Event:
        return _Event()


class _NcclCommunicator:
    """NCCL in a world of one: the collectives leave the buffers as they are."""

    def __init__(self, ndev: int, commId, rank: int):
        if (ndev, rank) != (1, 0):
            raise NotImplementedError("the stand-in's NCCL has a world of one rank")

    def _check(self, count, datatype, stream) -> None:
        if not isinstance(count, int) or datatype not in _NCCL_TYPES.values() or stream != 0:
            raise TypeError(f"NCCL call with count {count!r}, datatype {datatype!r}")

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        self._check(count, datatype, stream)
        if sendbuf != recvbuf:
            raise NotImplementedError("the stand-in's NCCL reduces in place only")

    def bcast(self, buff, count, datatype, root, stream):
        self._check(count, datatype, stream)
        if root != 0:
            raise ValueError(f"root {root} in a world of one")

    def abort(self) -> None:
        pass


_NCCL_TYPES = dict(NCCL_FLOAT16=6, NCCL_FLOAT32=7, NCCL_FLOAT64=8, NCCL_INT32=2, NCCL_INT64=4)
cuda = SimpleNamespace(
    Device=_Device,
    get_current_stream=lambda: _Stream(),
    runtime=SimpleNamespace(getDeviceCount=lambda: 1),
    nccl=SimpleNamespace(
        available=True,
        get_unique_id=lambda: b"standin",
        NcclCommunicator=_NcclCommunicator,
        NCCL_SUM=0,
        **_NCCL_TYPES,
    ),
)
_this = sys.modules[__name__]


# ---- tinygan's kernels (tinygan/kernels/cuda.py), emulated from their CUDA sources -------------
def _chunks(total, size: int = 1 << 20):
    """The flat indices ``k < total`` a grid-stride loop visits, in chunks."""
    for start in range(0, int(total), size):
        yield np.arange(start, min(start + size, int(total)), dtype=np.int64)


def _read(buf: np.ndarray, index: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``valid ? buf[index] : 0``, refusing an index outside ``buf`` where it is read."""
    bad = valid & ((index < 0) | (index >= buf.size))
    if bad.any():
        raise IndexError(f"kernel reads outside a buffer of {buf.size}: index {index[bad][0]}")
    return np.where(valid, buf[np.where(valid, index, 0)], 0).astype(buf.dtype)


def _im2col(x, cols, N, H, W, C, KH, KW, OH, OW, SH, SW, PH, PW, DH, DW, total):
    for k in _chunks(total):  # one thread per cols[n, oh, ow, i, j, c]
        r = k
        c, r = r % C, r // C
        j, r = r % KW, r // KW
        i, r = r % KH, r // KH
        ow, r = r % OW, r // OW
        oh, n = r % OH, r // OH
        h, w = oh * SH - PH + i * DH, ow * SW - PW + j * DW
        inside = (h >= 0) & (h < H) & (w >= 0) & (w < W)
        cols[k] = _read(x, ((n * H + h) * W + w) * C + c, inside)


def _col2im(cols, x, N, H, W, C, KH, KW, OH, OW, SH, SW, PH, PW, DH, DW, total):
    for k in _chunks(total):  # one thread per x[n, h, w, c], gathering its taps in order i, j
        r = k
        c, r = r % C, r // C
        w, r = r % W, r // W
        h, n = r % H, r // H
        total_k = np.zeros(k.size, x.dtype)
        for i in range(KH):
            th = h + PH - i * DH
            for j in range(KW):
                tw = w + PW - j * DW
                hit = (th >= 0) & (th % SH == 0) & (th // SH < OH)
                hit &= (tw >= 0) & (tw % SW == 0) & (tw // SW < OW)
                index = ((((n * OH + th // SH) * OW + tw // SW) * KH + i) * KW + j) * C + c
                total_k += _read(cols, index, hit)
        x[k] = total_k


def _adam_update(grad, step_size, w1, beta2, w2, eps, bc2_sqrt, weight_decay, param, m, v):
    g = grad + weight_decay * param if weight_decay != 0 else grad
    m = m + w1 * (g - m) if -0.5 < w1 < 0.5 else g - (g - m) * (1 - w1)
    v = v * beta2 + w2 * g * g
    return dict(param=param + (-step_size * m) / (np.sqrt(v) / bc2_sqrt + eps), m=m, v=v)


KERNELS.update(
    im2col=_im2col,
    col2im=_col2im,
    tinygan_leaky_relu_forward=lambda x, slope, y: dict(y=np.where(x > 0, x, x * slope)),
    tinygan_leaky_relu_backward=lambda x, gy, slope, gx: dict(gx=np.where(x > 0, gy, gy * slope)),
    tinygan_adam_update=_adam_update,
)
