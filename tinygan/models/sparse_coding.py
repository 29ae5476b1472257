"""Sparse coding (Olshausen & Field 1996; Goodfellow et al., *Deep Learning*, 13.4 and 14.3).

A dictionary ``A`` of ``p`` atoms (columns, shape (d, p); over-complete ``p > d`` allowed) and one
code ``z`` (p,) per example ``x`` (d,) are learned by minimising, summed over the examples,

    J(A, Z) = sum_n ||x_n - A z_n||^2 + eta * rho(z_n)    [+ lam * ||A||_F^2 for "ridge"]

with one of three sparsity penalties rho, each a sum over the code's entries:

    "l1":  |z_i|                 codes by ISTA or FISTA (proximal gradient, soft-thresholding)
    "log": log(1 + z_i^2)        codes by gradient descent
    "exp": -exp(-z_i^2)          codes by gradient descent

Convention: the data term carries no 1/2, so its gradient in z is ``2 A^T (A z - x)`` and every
step size is ``1 / L`` with ``L = 2 ||A||_2^2`` (the largest eigenvalue of the Hessian 2 A^T A).
For "log" and "exp", the penalty's own curvature is added: ``|rho''(z)| <= 2`` for both, so
``L = 2 ||A||_2^2 + 2 eta`` and a fixed step ``1 / L`` provably decreases the objective (no line
search needed). An l1 code is optimal when, with ``g = 2 A^T (A z - x)``,
``g_i = -eta sign(z_i)`` where ``z_i != 0`` and ``|g_i| <= eta`` where ``z_i = 0``.

Learning alternates two half-steps, each of which never increases J:

- codes, the dictionary fixed: up to ``code_iter`` solver iterations warm-started at the current
  codes. ISTA and gradient descent with step 1/L decrease the objective at every iteration;
  FISTA's iterates may not, but none is worse than the start (the proof of FISTA's rate in
  Beck & Teboulle 2009 holds for any comparison point; taken at the start, it gives this);
- dictionary, the codes fixed: ``"ridge"`` sets ``A = X^T Z (Z^T Z + lam I)^-1``, the exact
  minimiser of the data term plus ``lam ||A||_F^2`` (UFLDL's convention; with a halved data term
  it reads ``lam / 2``). ``"normalize"`` keeps every atom at unit norm, which rules out the
  degenerate solution of large atoms with tiny codes: each atom in turn gets its least-squares
  value given the others, then is scaled to unit norm, which is the exact minimiser over unit
  atoms (block coordinate descent, as in Mairal et al. 2010). Solving all atoms jointly by least
  squares and normalising afterwards is a common shortcut, but it is not the constrained
  minimiser and can increase J. Atoms no code uses are restarted at the worst-fitted example's
  residual, which leaves J unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import arguments

__all__ = ["SparseCoding", "code_objective", "soft_threshold", "sparse_encode", "sparsity_penalty"]

SOLVERS = {"l1": ("fista", "ista"), "log": ("gd",), "exp": ("gd",)}
DICT_UPDATES = ("normalize", "ridge")


def soft_threshold(x: np.ndarray, threshold: float) -> np.ndarray:
    """The proximal operator of ``threshold * |.|``: ``sign(x) * max(|x| - threshold, 0)``."""
    return np.sign(x) * np.maximum(np.abs(x) - threshold, 0)


def sparsity_penalty(Z: np.ndarray, kind: str) -> np.ndarray:
    """The sparsity penalty rho of each code.

    Parameters
    ----------
    Z : np.ndarray, shape (N, p)
    kind : {"l1", "log", "exp"}

    Returns
    -------
    np.ndarray, shape (N,)
    """
    arguments.choice(kind, "penalty", SOLVERS)
    if kind == "l1":
        return np.abs(Z).sum(axis=1)
    if kind == "log":
        return np.log1p(Z**2).sum(axis=1)
    return -np.exp(-(Z**2)).sum(axis=1)


def _penalty_grad(Z: np.ndarray, kind: str) -> np.ndarray:
    """d rho / d Z for the smooth penalties, shape (N, p)."""
    if kind == "log":
        return 2 * Z / (1 + Z**2)
    return 2 * Z * np.exp(-(Z**2))


def code_objective(
    X: np.ndarray, A: np.ndarray, Z: np.ndarray, *, penalty: str = "l1", eta: float = 0.1
) -> np.ndarray:
    """Each example's ``||x - A z||^2 + eta * rho(z)``.

    Parameters
    ----------
    X : np.ndarray, shape (N, d)
    A : np.ndarray, shape (d, p)
    Z : np.ndarray, shape (N, p)

    Returns
    -------
    np.ndarray, shape (N,)
    """
    return ((X - Z @ A.T) ** 2).sum(axis=1) + eta * sparsity_penalty(Z, penalty)


def sparse_encode(
    X: np.ndarray,
    A: np.ndarray,
    *,
    penalty: str = "l1",
    eta: float = 0.1,
    solver: str | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    init: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Codes minimising ``||x - A z||^2 + eta * rho(z)`` for every row of ``X`` at once.

    Parameters
    ----------
    X : np.ndarray, shape (N, d)
        Examples, floating point; the codes have the same dtype.
    A : np.ndarray, shape (d, p)
        The dictionary, same dtype as ``X``.
    penalty : {"l1", "log", "exp"}
    eta : float
        Weight of the penalty, >= 0.
    solver : {"fista", "ista"} for "l1", "gd" for "log" and "exp"; None picks the first.
    max_iter : int
        Most iterations, >= 1.
    tol : float
        Stop once no code entry moved by more than ``tol`` in one iteration (0: run max_iter).
    init : np.ndarray, shape (N, p), optional
        Starting codes (warm start); zeros by default.

    Returns
    -------
    Z : np.ndarray, shape (N, p)
    n_iter : int
        Iterations run.
    """
    X = _check_data(X, "X")
    A = _check_data(A, "A", dtype=X.dtype)
    if A.shape[0] != X.shape[1]:
        raise ValueError(f"A has {A.shape[0]} rows but X has {X.shape[1]} features; expected equal")
    solver = _check_solver(penalty, solver)
    eta = arguments.real(eta, "eta", 0)
    tol = arguments.real(tol, "tol", 0)
    max_iter = arguments.integer(max_iter, "max_iter", 1)
    shape = (X.shape[0], A.shape[1])
    if init is None:
        Z = np.zeros(shape, X.dtype)
    else:
        Z = _check_data(init, "init", dtype=X.dtype)  # only read: each iteration makes a new Z
        if Z.shape != shape:
            raise ValueError(f"init must have shape {shape} (N, p); got {Z.shape}")
    L = 2 * np.linalg.norm(A, 2) ** 2 + (0.0 if penalty == "l1" else 2 * eta)
    if L == 0:
        raise ValueError("A is all zeros: the codes are undetermined")
    gram, xa = A.T @ A, X @ A  # (p, p), (N, p): the data term's gradient is 2 (Z gram - xa)
    Y, t = Z, 1.0  # FISTA's extrapolated point and momentum; ISTA and gd keep Y = Z
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        grad = 2 * (Y @ gram - xa)
        if penalty == "l1":
            Z_new = soft_threshold(Y - grad / L, eta / L)
        else:
            Z_new = Y - (grad + eta * _penalty_grad(Y, penalty)) / L
        if solver == "fista":
            t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
            Y, t = Z_new + ((t - 1) / t_new) * (Z_new - Z), t_new
        else:
            Y = Z_new
        done = np.max(np.abs(Z_new - Z)) <= tol
        Z = Z_new
        if done:
            break
    return Z, n_iter


class SparseCoding:
    """Dictionary learning with sparse codes, by alternating minimisation.

    Parameters
    ----------
    n_atoms : int
        p, the number of atoms (may exceed the data's dimension d).
    penalty : {"l1", "log", "exp"}
        The sparsity penalty rho (see the module docstring).
    eta : float
        Weight of the penalty, >= 0.
    solver : {"fista", "ista", "gd"}, optional
        Code solver; default "fista" for "l1", "gd" for the smooth penalties.
    dict_update : {"normalize", "ridge"}
        Unit-norm atoms, or the closed form with ``lam * ||A||_F^2``.
    lam : float, optional
        The ridge weight, > 0; required by "ridge", rejected by "normalize".
    code_iter : int
        Most solver iterations per code half-step (and in ``encode``).
    tol : float
        The solver's stopping tolerance (see ``sparse_encode``).
    rng : np.random.Generator or int, optional
        Draws the initial dictionary: Gaussian atoms scaled to unit norm.

    Attributes
    ----------
    dictionary : np.ndarray, shape (d, p)
        A, after ``fit``.
    codes : np.ndarray, shape (N, p)
        The training examples' codes at the end of ``fit``.
    history : list of dict
        ``{"iteration", "step", "objective"}`` after the initialisation (step "init") and after
        each half-step ("codes", "dictionary"): J never increases along it.
    """

    def __init__(
        self,
        n_atoms: int,
        *,
        penalty: str = "l1",
        eta: float = 0.1,
        solver: str | None = None,
        dict_update: str = "normalize",
        lam: float | None = None,
        code_iter: int = 200,
        tol: float = 1e-6,
        rng: np.random.Generator | int | None = None,
    ) -> None:
        self.n_atoms = arguments.integer(n_atoms, "n_atoms", 1)
        self.solver = _check_solver(penalty, solver)
        self.penalty = penalty
        self.eta = arguments.real(eta, "eta", 0)
        self.dict_update = arguments.choice(dict_update, "dict_update", DICT_UPDATES)
        if dict_update == "ridge":
            if lam is None:
                raise ValueError("dict_update='ridge' needs lam > 0; got lam=None")
            self.lam = arguments.real(lam, "lam", 0, low_open=True)
        elif lam is not None:
            raise ValueError(
                f"lam applies only to dict_update='ridge'; got lam={lam!r} with 'normalize'"
            )
        else:
            self.lam = 0.0
        self.code_iter = arguments.integer(code_iter, "code_iter", 1)
        self.tol = arguments.real(tol, "tol", 0)
        if rng is not None and not isinstance(rng, np.random.Generator | int):
            raise TypeError(f"rng must be a np.random.Generator, an int seed or None; got {rng!r}")
        self.rng = np.random.default_rng(rng)
        self.dictionary: np.ndarray | None = None
        self.codes: np.ndarray | None = None
        self.history: list[dict[str, Any]] = []

    def fit(self, X: np.ndarray, n_iter: int = 30) -> SparseCoding:
        """Learn the dictionary (from a fresh random one) and the codes of ``X``.

        Parameters
        ----------
        X : np.ndarray, shape (N, d)
            Training examples, floating point; the dictionary takes their dtype.
        n_iter : int
            Alternations (each a code half-step then a dictionary half-step), >= 0.

        Returns
        -------
        SparseCoding
            ``self``.
        """
        X = _check_data(X, "X")
        n_iter = arguments.integer(n_iter, "n_iter", 0)
        A = self.rng.standard_normal((X.shape[1], self.n_atoms)).astype(X.dtype)
        self.dictionary = A / np.linalg.norm(A, axis=0)
        Z = np.zeros((X.shape[0], self.n_atoms), X.dtype)
        self.history = [{"iteration": 0, "step": "init", "objective": self.objective(X, Z)}]
        for it in range(1, n_iter + 1):
            Z = self._encode(X, init=Z)[0]
            self.history.append(
                {"iteration": it, "step": "codes", "objective": self.objective(X, Z)}
            )
            self.dictionary = self._dictionary_step(X, Z)
            self.history.append(
                {"iteration": it, "step": "dictionary", "objective": self.objective(X, Z)}
            )
        self.codes = Z
        return self

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes of new examples under the learned dictionary (solved from zero).

        Parameters
        ----------
        X : np.ndarray, shape (N, d)
            Same dtype as the training data.

        Returns
        -------
        np.ndarray, shape (N, p)
        """
        return self._encode(X)[0]

    def decode(self, Z: np.ndarray) -> np.ndarray:
        """Reconstructions ``A z``, shape (N, d), of codes ``Z`` of shape (N, p)."""
        A = self._fitted()
        Z = _check_data(Z, "Z", dtype=A.dtype)
        if Z.shape[1] != self.n_atoms:
            raise ValueError(f"Z must have {self.n_atoms} columns (one per atom); got {Z.shape}")
        return Z @ A.T

    def objective(self, X: np.ndarray, Z: np.ndarray) -> float:
        """J(A, Z): the summed per-example objective, plus ``lam ||A||_F^2`` for "ridge".

        Parameters
        ----------
        X : np.ndarray, shape (N, d)
        Z : np.ndarray, shape (N, p)
        """
        X = self._check_features(X)
        if _check_data(Z, "Z", dtype=X.dtype).shape != (X.shape[0], self.n_atoms):
            raise ValueError(f"Z must have shape {(X.shape[0], self.n_atoms)}; got {Z.shape}")
        A = self.dictionary
        data = code_objective(X, A, Z, penalty=self.penalty, eta=self.eta).sum()
        return float(data + self.lam * (A**2).sum())

    def _encode(self, X: np.ndarray, init: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        X = self._check_features(X)
        return sparse_encode(
            X,
            self.dictionary,
            penalty=self.penalty,
            eta=self.eta,
            solver=self.solver,
            max_iter=self.code_iter,
            tol=self.tol,
            init=init,
        )

    def _dictionary_step(self, X: np.ndarray, Z: np.ndarray) -> np.ndarray:
        xz, gram = X.T @ Z, Z.T @ Z  # (d, p), (p, p)
        if self.dict_update == "ridge":
            return np.linalg.solve(gram + self.lam * np.eye(self.n_atoms, dtype=X.dtype), xz.T).T
        A = self.dictionary.copy()
        # an unused atom (z_j = 0) does not change J: restart it at the residual of the worst-fitted
        # example, where the next code step can use it (else random atoms in high dimension can
        # stay unused for good)
        unused = np.flatnonzero(~Z.any(axis=0))
        residual = X - Z @ A.T
        errors = (residual**2).sum(axis=1)
        worst = np.argsort(-errors)[: len(unused)]
        worst = worst[errors[worst] > 0]
        A[:, unused[: len(worst)]] = (residual[worst] / np.sqrt(errors[worst])[:, None]).T
        for j in range(self.n_atoms):
            # residual without atom j, times z_j: the least-squares atom j is this / ||z_j||^2
            u = xz[:, j] - A @ gram[:, j] + A[:, j] * gram[j, j]
            norm = np.linalg.norm(u)
            if norm > 0:  # else z_j = 0: keep the (restarted) atom
                A[:, j] = u / norm
        return A

    def _fitted(self) -> np.ndarray:
        if self.dictionary is None:
            raise RuntimeError("SparseCoding has no dictionary yet: call fit(X) first")
        return self.dictionary

    def _check_features(self, X: np.ndarray) -> np.ndarray:
        A = self._fitted()
        X = _check_data(X, "X", dtype=A.dtype)
        if X.shape[1] != A.shape[0]:
            raise ValueError(
                f"X has {X.shape[1]} features but the dictionary was fitted on {A.shape[0]}"
            )
        return X


def _check_data(a: Any, name: str, dtype: np.dtype | None = None) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a np.ndarray; got {type(a).__name__}")
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array; got dtype {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but {dtype} was expected (no silent casts)")
    if a.ndim != 2 or 0 in a.shape:
        raise ValueError(f"{name} must be a non-empty 2-D array; got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return a


def _check_solver(penalty: str, solver: str | None) -> str:
    allowed = SOLVERS[arguments.choice(penalty, "penalty", SOLVERS)]
    if solver is None:
        return allowed[0]
    if solver not in allowed:
        raise ValueError(
            f"solver {solver!r} does not fit penalty {penalty!r}; expected one of {allowed}"
        )
    return solver
