"""Module and Parameter: PyTorch's container protocol on tinygan Tensors.

Assigning a ``Parameter`` or a ``Module`` to an attribute registers it (in definition order);
buffers (running statistics) are registered with ``register_buffer``. ``state_dict`` maps dotted
names (``body.0.weight``) to the arrays themselves (parameters first, then buffers, module by
module), and ``load_state_dict`` copies values back in place after checking every key, shape and
dtype.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from .. import backend
from ..function import mark_changed
from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module registers as a learnable parameter (``requires_grad=True``)."""

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class IncompatibleKeys(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class of layers and models: override ``forward``; call the module to run it."""

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ---- registration -----------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"call Module.__init__() before assigning {name!r}")
        params, modules = self._parameters, self._modules
        if isinstance(value, (Parameter, Module)):
            self._forget(name)
            (params if isinstance(value, Parameter) else modules)[name] = value
        elif name in params or name in modules:
            if value is not None or name in modules:
                kind = "parameter" if name in params else "submodule"
                raise TypeError(f"cannot assign {type(value).__name__} to {kind} {name!r}")
            params[name] = None
        elif name in self._buffers:
            self._buffers[name] = _as_buffer(name, value)
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str) -> None:
        for d in (self.__dict__, self._parameters, self._buffers, self._modules):
            d.pop(name, None)

    def __getattr__(self, name: str) -> Any:
        for d in ("_parameters", "_buffers", "_modules"):
            store = self.__dict__.get(d, {})
            if name in store:
                return store[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for d in (self._parameters, self._buffers, self._modules):
            if name in d:
                del d[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` (or None, for an absent optional parameter such as a bias)."""
        if param is not None and not isinstance(param, Parameter):
            got = type(param).__name__
            raise TypeError(f"parameter {name!r} must be a Parameter or None; got {got}")
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name: str, value: Any) -> None:
        """Register state that is saved in ``state_dict`` and moved by ``to`` but not learned."""
        value = _as_buffer(name, value)
        self._forget(name)
        self._buffers[name] = value

    # ---- traversal --------------------------------------------------------------------------
    def named_modules(
        self, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """This module and all below it, depth first, with dotted names; a module reachable by
        several paths comes once unless ``remove_duplicate`` is False."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, m = stack.pop()
            if remove_duplicate and id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            children = [(f"{name}.{k}" if name else k, c) for k, c in m._modules.items()]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        return (m for _, m in self.named_modules())

    def children(self) -> Iterator[Module]:
        return iter(list(dict.fromkeys(self._modules.values())))

    def named_children(self) -> Iterator[tuple[str, Module]]:
        return iter(self._modules.items())

    def _named(self, store: str) -> Iterator[tuple[str, Any]]:
        seen: set[int] = set()
        for prefix, m in self.named_modules():
            for k, v in getattr(m, store).items():
                if v is not None and id(v) not in seen:
                    seen.add(id(v))
                    yield (f"{prefix}.{k}" if prefix else k), v

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter) pairs, each parameter once, in registration order."""
        return self._named("_parameters")

    def parameters(self) -> Iterator[Parameter]:
        return (p for _, p in self.named_parameters())

    def named_buffers(self) -> Iterator[tuple[str, Tensor]]:
        return self._named("_buffers")

    def buffers(self) -> Iterator[Tensor]:
        return (b for _, b in self.named_buffers())

    # ---- modes and devices ------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to(self, device: str) -> Module:
        """Move every parameter (and its grad) and buffer to ``device``, in place; return self."""
        backend.check_device(device)
        for t in (*self.parameters(), *self.buffers()):
            t.data = backend.to_device(t.data, device)
            if t.grad is not None:
                t.grad = backend.to_device(t.grad, device)
        return self

    def zero_grad(self) -> None:
        """Set every parameter's grad to None."""
        for p in self.parameters():
            p.grad = None

    # ---- state ------------------------------------------------------------------------------
    def _state_tensors(self) -> OrderedDict[str, Tensor]:
        """Dotted name -> parameter or buffer; a shared tensor appears under each of its names."""
        out: OrderedDict[str, Tensor] = OrderedDict()
        for prefix, m in self.named_modules(remove_duplicate=False):
            for store in (m._parameters, m._buffers):
                for k, v in store.items():
                    if v is not None:
                        out[f"{prefix}.{k}" if prefix else k] = v
        return out

    def state_dict(self) -> OrderedDict[str, Any]:
        """Dotted name -> array (the parameter's or buffer's own data, not a copy)."""
        return OrderedDict((k, t.data) for k, t in self._state_tensors().items())

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True
    ) -> IncompatibleKeys:
        """Copy values from ``state_dict`` into the parameters and buffers, in place.

        Every entry is checked before anything is copied: a wrong shape or dtype always raises,
        and with ``strict`` so do missing and unexpected keys; the error lists all of them.
        Values may be NumPy or CuPy arrays or Tensors; they are moved to each tensor's device.

        Returns
        -------
        IncompatibleKeys(missing_keys, unexpected_keys)
        """
        own = self._state_tensors()
        values = {k: v.data if isinstance(v, Tensor) else v for k, v in state_dict.items()}
        missing = [k for k in own if k not in values]
        unexpected = [k for k in values if k not in own]
        mismatched = []
        for k, t in own.items():
            v = values.get(k)
            shape, dtype = tuple(getattr(v, "shape", ())), getattr(v, "dtype", None)
            if k in values and (shape != t.shape or dtype != t.dtype):
                mismatched.append(f"{k} (expected {t.shape} {t.dtype}, got {shape} {dtype})")
        problems = [
            f"{what}: {', '.join(keys)}"
            for what, keys in (
                ("missing keys", missing if strict else []),
                ("unexpected keys", unexpected if strict else []),
                ("mismatched shapes or dtypes", mismatched),
            )
            if keys
        ]
        if problems:
            name = type(self).__name__
            raise RuntimeError(
                f"error(s) loading state_dict into {name}:\n  " + "\n  ".join(problems)
            )
        for k, t in own.items():
            if k in values:
                t.data[...] = backend.to_device(values[k], t.device)
                mark_changed(t.data)
        return IncompatibleKeys(missing, unexpected)

    # ---- printing ---------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({k}): " + repr(m).replace("\n", "\n  ") for k, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


def _as_buffer(name: str, value: Any) -> Tensor | None:
    if value is None or (isinstance(value, Tensor) and not isinstance(value, Parameter)):
        return value
    if hasattr(value, "dtype") and hasattr(value, "shape"):
        return Tensor(value)
    got = type(value).__name__
    raise TypeError(f"buffer {name!r} must be a Tensor, an array or None; got {got}")
