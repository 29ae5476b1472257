"""The f-divergences of f-GAN (Nowozin, Cseke & Tomioka 2016, Tables 1, 2 and 6) and its bound.

An f-divergence ``D_f(P || Q) = E_Q[f(p(x) / q(x))]`` is fixed by a convex ``f`` with ``f(1) = 0``.
Its Fenchel conjugate ``f*(t) = sup_{u > 0} (u t - f(u))`` gives the variational lower bound

    D_f(P || Q) >= F(T) = E_P[T(x)] - E_Q[f*(T(x))]     for any T with values in dom f*,

tight at ``T = f'(p / q)``. f-GAN's discriminator outputs a raw ``v`` and sets ``T = g_f(v)`` with
an output activation ``g_f: R -> dom f*``; the discriminator maximises ``F``, the generator
minimises it. ``conjugate_of_activation`` is ``f*(g_f(v))`` simplified by hand (e.g. ``softplus``)
so that it stays finite where ``g_f(v)`` rounds onto the edge of ``dom f*``.

Jeffrey's conjugate needs the Lambert W of ``e^(1 - t)``, i.e. the Wright omega function
``omega(x) = W(e^x)`` (the solution of ``omega + log(omega) = x``): ``WrightOmega`` below.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..function import Function
from ..ops import abs, exp, log, softplus, sqrt, tanh
from ..tensor import Tensor

__all__ = [
    "DIVERGENCES", "Divergence", "WrightOmega", "get_divergence", "variational_bound",
    "wright_omega",
]  # fmt: skip

LOG2 = math.log(2.0)
INF = math.inf


class WrightOmega(Function):
    """``omega(x)``, the solution of ``omega + log(omega) = x`` (so ``omega(x) = W(e^x)``).

    Forward: the starting values of Lawrence, Corless & Jeffrey (2012, "Algorithm 917"), then
    three Halley steps: full precision (against mpmath on [-60, 1e25], relative error at most
    about |x| eps, what rounding ``x`` itself causes). No exponential of a large argument is
    formed, so nothing overflows: ``omega(x) = e^x`` to double precision below -50 and
    ``x - log(x)`` above 1e20.
    Backward: differentiating ``omega + log(omega) = x`` gives ``omega' = omega / (1 + omega)``.
    """

    def forward(self, x):
        xp = self.xp
        xc = xp.clip(x, -50.0, 1e20)
        big = xp.maximum(xc, 1.0)
        w = xp.where(
            xc < -2,
            xp.exp(xp.minimum(xc, -2.0)),  # omega = e^x - e^(2x) + ...
            xp.where(
                xc < 1,
                xp.exp(2 * (xp.minimum(xc, 1.0) - 1) / 3),
                big - xp.log(big) + xp.log(big) / big,  # omega = x - log x + log(x) / x + ...
            ),
        )
        for _ in range(3):  # Halley on r(w) = w + log(w) - x: r' = (1 + w) / w, r'' = -1 / w^2
            r = w + xp.log(w) - xc
            w = w - r * w / (1 + w + r / (2 * (1 + w)))  # w - 2 r r' / (2 r'^2 - r r'')
        return xp.where(x < -50, xp.exp(xp.minimum(x, -50.0)), xp.where(x > 1e20, x, w))

    def backward(self, gy):
        y = self.output
        return gy * y / (1 + y)


def wright_omega(x: Tensor) -> Tensor:
    """Elementwise Wright omega ``omega(x) = W(e^x)``, solving ``omega + log(omega) = x``.

    Parameters
    ----------
    x : Tensor, any shape, float32 or float64

    Returns
    -------
    Tensor, the shape and dtype of ``x``, values > 0 (0 where ``e^x`` underflows).
    """
    return WrightOmega()(x)


@dataclass(frozen=True)
class Divergence:
    """One row of f-GAN's Table 6: ``f``, the activation ``g_f``, ``f*`` and ``f*(g_f(v))``.

    All four are elementwise Tensor functions (any shape, float32 or float64, NumPy or CuPy).

    Attributes
    ----------
    name : str
    f : callable
        The generator function ``f(u)`` for ``u > 0``: convex, ``f(1) = 0`` (except ``"gan"``,
        whose ``f(1) = -log 4``, as in the paper: ``D_GAN = 2 D_JS - log 4``).
    activation : callable
        ``g_f(v)``: maps the discriminator's raw output ``v`` (any real) into ``dom f*``.
    conjugate : callable
        ``f*(t)`` for ``t`` in ``dom f*``.
    conjugate_of_activation : callable
        ``f*(g_f(v))`` written directly in ``v``: finite wherever the result is representable.
    domain : tuple of float
        The open interval ``dom f*`` (with ``-inf``/``inf`` for unbounded ends).
    """

    name: str
    f: Callable[[Tensor], Tensor]
    activation: Callable[[Tensor], Tensor]
    conjugate: Callable[[Tensor], Tensor]
    conjugate_of_activation: Callable[[Tensor], Tensor]
    domain: tuple[float, float]


def _jeffrey_conjugate(t: Tensor) -> Tensor:
    # f*(t) = w + 1/w + t - 2 with w = W(e^(1 - t)) = omega(1 - t); 1/w = e^(w + t - 1) because
    # w + log(w) = 1 - t, which stays finite where w underflows.
    w = wright_omega(1 - t)
    return w + exp(w + t - 1) + t - 2


def _identity(v: Tensor) -> Tensor:
    return v


DIVERGENCES: dict[str, Divergence] = {
    d.name: d
    for d in [
        Divergence(
            "total_variation",
            f=lambda u: 0.5 * abs(u - 1),
            activation=lambda v: 0.5 * tanh(v),
            conjugate=_identity,
            conjugate_of_activation=lambda v: 0.5 * tanh(v),
            domain=(-0.5, 0.5),
        ),
        Divergence(
            "kl",
            f=lambda u: u * log(u),
            activation=_identity,
            conjugate=lambda t: exp(t - 1),
            conjugate_of_activation=lambda v: exp(v - 1),
            domain=(-INF, INF),
        ),
        Divergence(
            "reverse_kl",
            f=lambda u: -log(u),
            activation=lambda v: -exp(-v),
            conjugate=lambda t: -1 - log(-t),
            conjugate_of_activation=lambda v: v - 1,
            domain=(-INF, 0.0),
        ),
        Divergence(  # f* is the conjugate over all real u: for t < -2 it exceeds sup_{u>0} = -1
            "pearson",
            f=lambda u: (u - 1) ** 2,
            activation=_identity,
            conjugate=lambda t: 0.25 * t**2 + t,
            conjugate_of_activation=lambda v: 0.25 * v**2 + v,
            domain=(-INF, INF),
        ),
        Divergence(
            "neyman",
            f=lambda u: (1 - u) ** 2 / u,
            activation=lambda v: 1 - exp(-v),
            conjugate=lambda t: 2 - 2 * sqrt(1 - t),
            conjugate_of_activation=lambda v: 2 - 2 * exp(-0.5 * v),
            domain=(-INF, 1.0),
        ),
        Divergence(
            "squared_hellinger",
            f=lambda u: (sqrt(u) - 1) ** 2,
            activation=lambda v: 1 - exp(-v),
            conjugate=lambda t: t / (1 - t),
            conjugate_of_activation=lambda v: exp(v) - 1,
            domain=(-INF, 1.0),
        ),
        Divergence(
            "jeffrey",
            f=lambda u: (u - 1) * log(u),
            activation=_identity,
            conjugate=_jeffrey_conjugate,
            conjugate_of_activation=_jeffrey_conjugate,
            domain=(-INF, INF),
        ),
        Divergence(  # the paper's f, which gives D_f = 2 JS(P, Q)
            "jensen_shannon",
            f=lambda u: -(u + 1) * log((1 + u) / 2) + u * log(u),
            activation=lambda v: LOG2 - softplus(-v),
            conjugate=lambda t: -log(2 - exp(t)),
            conjugate_of_activation=lambda v: softplus(v) - LOG2,
            domain=(-INF, LOG2),
        ),
        Divergence(  # f(1) = -log 4; then -F is exactly the GAN discriminator's BCE loss
            "gan",
            f=lambda u: u * log(u) - (u + 1) * log(u + 1),
            activation=lambda v: -softplus(-v),
            conjugate=lambda t: -log(1 - exp(t)),
            conjugate_of_activation=softplus,
            domain=(-INF, 0.0),
        ),
    ]
}


def get_divergence(name: str) -> Divergence:
    """The divergence called ``name`` (a key of ``DIVERGENCES``, e.g. ``"kl"``, ``"gan"``).

    Raises
    ------
    TypeError
        If ``name`` is not a str.
    ValueError
        If there is no divergence of that name; the message lists the valid ones.
    """
    if not isinstance(name, str):
        raise TypeError(f"divergence name must be a str; got {type(name).__name__} {name!r}")
    if name not in DIVERGENCES:
        raise ValueError(f"unknown divergence {name!r}; expected one of {', '.join(DIVERGENCES)}")
    return DIVERGENCES[name]


def variational_bound(div: Divergence, v_real: Tensor, v_fake: Tensor) -> Tensor:
    """f-GAN's objective ``F = mean(g_f(v_real)) - mean(f*(g_f(v_fake)))``, a lower bound of
    ``D_f(P || Q)`` (P: the data, Q: the generator). The discriminator maximises it, the
    generator minimises it; for ``"gan"``, ``-F`` is the usual discriminator BCE loss.

    Parameters
    ----------
    div : Divergence
    v_real : Tensor, any shape (N, ...)
        The discriminator's raw outputs on samples of P.
    v_fake : Tensor, any shape (M, ...)
        Its raw outputs on samples of Q.

    Returns
    -------
    Tensor, shape (): the bound, differentiable in both inputs.
    """
    if not isinstance(div, Divergence):
        raise TypeError(f"div must be a Divergence (see get_divergence); got {type(div).__name__}")
    for name, v in (("v_real", v_real), ("v_fake", v_fake)):
        if not isinstance(v, Tensor):
            raise TypeError(f"{name} must be a Tensor; got {type(v).__name__}")
        if v.numel() == 0:
            raise ValueError(f"{name} is empty (shape {v.shape}); the bound needs samples")
    return div.activation(v_real).mean() - div.conjugate_of_activation(v_fake).mean()
