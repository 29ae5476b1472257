"""SGD, Adam and RMSprop, step for step as ``torch.optim`` (single-tensor path, one group).

Updates happen in place on ``param.data``; optimizer state has the parameter's dtype and device;
parameters whose ``grad`` is None are skipped. Hyperparameters are attributes (``opt.lr = 1e-4``
works) and are saved by ``state_dict`` with the per-parameter state, so training resumes exactly.
Every value a hyperparameter takes, in the constructor, by assignment or from ``load_state_dict``,
is checked first (``Adam(lr=inf)`` and ``opt.lr = nan`` raise, and leave the optimizer as it was).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import arguments, backend, kernels
from .function import mark_changed
from .tensor import Tensor


class Optimizer:
    """Base class: the parameters, their state, and the hyperparameters named in ``hparams``.

    Subclasses define ``_validate``, which checks a full set of hyperparameters and returns them
    normalised (numbers as Python floats); assigning one of them goes through it too.
    """

    hparams: tuple[str, ...] = ()
    state_names: tuple[str, ...] = ()  # what a parameter's state holds once it has any

    def __init__(self, params: Iterable[Tensor], **hparams: Any) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor) or p.dtype.kind != "f" or p.creator is not None:
                raise TypeError(
                    f"parameter {i} is not a floating-point leaf Tensor: {type(p).__name__}"
                )
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError("some parameters appear more than once in the list")
        self.__dict__.update(self._validate(hparams))
        self.state: list[dict[str, Any]] = [{} for _ in self.params]
        # called as hook(self) at the start of every step (tinygan.distributed.synchronize
        # adds the averaging of the gradients over data-parallel ranks)
        self.step_pre_hooks: list[Callable[[Optimizer], None]] = []

    def __setattr__(self, name: str, value: Any) -> None:
        """Hyperparameters are checked (with the others) before they are set."""
        if name in self.hparams:
            current = {k: self.__dict__[k] for k in self.hparams}
            self.__dict__.update(self._validate({**current, name: value}))
        else:
            super().__setattr__(name, value)

    def _validate(self, hparams: dict[str, Any]) -> dict[str, Any]:
        """``hparams`` checked and normalised; raise TypeError/ValueError naming a bad one."""
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Set every parameter's grad to None."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Run ``step_pre_hooks``, then update every parameter that has a grad, in place."""
        for hook in self.step_pre_hooks:
            hook(self)
        for p, state in zip(self.params, self.state):
            if p.grad is not None:  # a Tensor after backward(create_graph=True): its values
                self._update(p, p.grad.data if isinstance(p.grad, Tensor) else p.grad, state)
                mark_changed(p.data)  # a graph that read the old values can no longer backward

    def _update(self, p: Tensor, grad: Any, state: dict[str, Any]) -> None:
        """Update ``p.data`` in place from ``grad`` (an array of ``p``'s shape and dtype)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Flat, like a Module's: ``{"lr": ..., <other hparams>, "<i>.<name>": state}``.

        ``<i>`` is the parameter's index and ``<name>`` e.g. ``step``, ``exp_avg``. The arrays are
        the optimizer's own, not copies (as in PyTorch); ``tinygan.save`` writes this dict as it
        is, and ``load_state_dict`` takes back what ``tinygan.load`` returns.
        """
        out = {k: getattr(self, k) for k in self.hparams}
        for i, state in enumerate(self.state):
            out.update((f"{i}.{name}", value) for name, value in state.items())
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyperparameters and per-parameter state (copied in), after checking it all."""
        missing = [k for k in self.hparams if k not in state_dict]
        new_state: list[dict[str, Any]] = [{} for _ in self.params]
        for key, value in state_dict.items():
            if key in self.hparams:
                continue
            index, _, name = key.partition(".")
            if not (index.isdigit() and int(index) < len(self.params) and name):
                expected = ", ".join(self.hparams)
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: unexpected key {key!r} (expected "
                    f"{expected} or '<i>.<name>' with i < {len(self.params)})"
                )
            p = self.params[int(index)]
            value = value.data if isinstance(value, Tensor) else value
            if name == "step":
                new_state[int(index)][name] = int(value)
            elif tuple(value.shape) != p.shape or value.dtype != p.dtype:
                raise ValueError(
                    f"state {key!r} is {tuple(value.shape)} {value.dtype}; parameter {index} is "
                    f"{p.shape} {p.dtype}"
                )
            else:
                value = backend.to_device(value, p.device)
                new_state[int(index)][name] = backend.get_array_module(value).array(
                    value, copy=True
                )
        for i, state in enumerate(new_state):  # a parameter's state is all there or absent
            if state and set(state) != set(self.state_names):
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: parameter {i}'s state has "
                    f"{sorted(state)}; expected all of {list(self.state_names)}"
                )
        if missing:
            raise ValueError(f"{type(self).__name__}.load_state_dict: missing keys {missing}")
        hparams = self._validate({k: _like(getattr(self, k), state_dict[k]) for k in self.hparams})
        self.__dict__.update(hparams)
        self.state = new_state


def _like(current: Any, value: Any) -> Any:
    """``value`` (maybe a 0-d or 1-d array from a checkpoint) as the type of ``current``."""
    if isinstance(current, tuple):
        return tuple(float(v) for v in value)
    return type(current)(value.item() if hasattr(value, "item") else value)


def _at_least_0(owner: str, hparams: dict[str, Any], *names: str) -> dict[str, float]:
    """The named hyperparameters as floats, each checked to be finite and >= 0."""
    return {k: arguments.real(hparams[k], f"{owner}: {k}", 0.0) for k in names}


def _flag(owner: str, hparams: dict[str, Any], name: str) -> bool:
    value = hparams[name]
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be a bool; got {type(value).__name__} {value!r}")
    return value


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (PyTorch's form), Nesterov, L2 decay.

    ``g = grad + weight_decay * p``; with momentum ``buf = g`` at the first step, then
    ``buf = momentum * buf + (1 - dampening) * g``, and ``g = buf`` (or ``g + momentum * buf``
    for Nesterov); ``p -= lr * g``.
    """

    hparams = ("lr", "momentum", "dampening", "weight_decay", "nesterov")
    state_names = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )

    def _validate(self, hparams: dict[str, Any]) -> dict[str, Any]:
        out = _at_least_0("SGD", hparams, "lr", "momentum", "weight_decay")
        out["dampening"] = arguments.real(hparams["dampening"], "SGD: dampening")
        out["nesterov"] = _flag("SGD", hparams, "nesterov")
        if out["nesterov"] and (out["momentum"] <= 0 or out["dampening"] != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening == 0")
        return out

    def _update(self, p: Tensor, g: Any, state: dict[str, Any]) -> None:
        if self.weight_decay != 0:
            g = g + self.weight_decay * p.data
        if self.momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= self.momentum
                buf += (1 - self.dampening) * g
            g = g + self.momentum * buf if self.nesterov else buf
        p.data -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba) with PyTorch's bias correction and L2 ``weight_decay``.

    ``g = grad + weight_decay * p``; ``m = lerp(m, g, 1 - beta1)``;
    ``v = beta2 * v + (1 - beta2) * g * g``;
    ``p -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)``.
    The update itself is ``kernels.adam_update`` (NumPy in cache-sized blocks; one fused CUDA
    kernel on CuPy arrays).
    """

    hparams = ("lr", "betas", "eps", "weight_decay")
    state_names = ("step", "exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _validate(self, hparams: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = _at_least_0("Adam", hparams, "lr", "eps", "weight_decay")
        betas = hparams["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"Adam: betas must be a pair of numbers; got {betas!r}")
        out["betas"] = tuple(
            arguments.real(b, f"Adam: betas[{i}]", 0.0, 1.0, high_open=True)
            for i, b in enumerate(betas)
        )
        return out

    def _update(self, p: Tensor, grad: Any, state: dict[str, Any]) -> None:
        xp = backend.get_array_module(p.data)
        if not state:
            state.update(step=0, exp_avg=xp.zeros_like(p.data), exp_avg_sq=xp.zeros_like(p.data))
        state["step"] += 1
        beta1, beta2 = self.betas
        bc1, bc2 = 1 - beta1 ** state["step"], 1 - beta2 ** state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        kernels.adam_update(
            p.data, grad, m, v, self.lr, beta1, beta2, self.eps, bc1, bc2, self.weight_decay
        )


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e) as ``torch.optim.RMSprop``: optional momentum, centering, L2.

    ``g = grad + weight_decay * p``; ``s = alpha * s + (1 - alpha) * g * g``; the denominator
    is ``sqrt(s) + eps``, or with ``centered`` ``sqrt(s - m * m) + eps`` where
    ``m = lerp(m, g, 1 - alpha)`` estimates the mean gradient; with momentum
    ``buf = momentum * buf + g / denom`` and ``p -= lr * buf``, else ``p -= lr * g / denom``.
    All three buffers exist from the first step (zeros, as torch starts them) whatever the
    settings, so a checkpoint always holds the same names; ``step`` counts the updates.
    """

    hparams = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")
    state_names = ("step", "square_avg", "momentum_buffer", "grad_avg")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
        )

    def _validate(self, hparams: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = _at_least_0(
            "RMSprop", hparams, "lr", "eps", "weight_decay", "momentum"
        )
        out["alpha"] = arguments.real(hparams["alpha"], "RMSprop: alpha", 0.0, 1.0)
        out["centered"] = _flag("RMSprop", hparams, "centered")
        return out

    def _update(self, p: Tensor, g: Any, state: dict[str, Any]) -> None:
        xp = backend.get_array_module(p.data)
        if not state:
            state["step"] = 0
            for name in self.state_names[1:]:
                state[name] = xp.zeros_like(p.data)
        state["step"] += 1
        if self.weight_decay != 0:
            g = g + self.weight_decay * p.data
        square_avg = state["square_avg"]
        square_avg *= self.alpha
        square_avg += (1 - self.alpha) * g * g
        if self.centered:
            grad_avg = state["grad_avg"]
            grad_avg += (1 - self.alpha) * (g - grad_avg)
            denom = xp.sqrt(square_avg - grad_avg * grad_avg)
        else:
            denom = xp.sqrt(square_avg)
        denom += self.eps
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            buf += g / denom
            p.data -= self.lr * buf
        else:
            p.data -= self.lr * (g / denom)
