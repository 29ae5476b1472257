"""Tests for tinygan.models.sparse_coding: code solvers (optimality, speed), dictionary learning
(monotone objective, unit atoms, ridge closed form, recovery of a known dictionary), shapes and
input validation."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygan.metrics import linear_sum_assignment
from tinygan.models.sparse_coding import (
    SparseCoding,
    code_objective,
    soft_threshold,
    sparse_encode,
    sparsity_penalty,
)


def random_problem(seed: int, n: int = 12, d: int = 10, p: int = 20):
    """Examples X (n, d) and a unit-atom over-complete dictionary A (d, p), float64."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((d, p))
    return rng.standard_normal((n, d)), A / np.linalg.norm(A, axis=0)


def sparse_data(seed: int, d: int = 16, p: int = 24, n: int = 1000, k: int = 3):
    """Examples made of k atoms of a known unit-norm dictionary (d, p), with a little noise."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((d, p))
    A /= np.linalg.norm(A, axis=0)
    Z = np.zeros((n, p))
    for row in Z:
        idx = rng.choice(p, k, replace=False)
        row[idx] = rng.choice([-1, 1], k) * rng.uniform(0.5, 1.5, k)
    return Z @ A.T + 0.01 * rng.standard_normal((n, d)), A


def numerical_code_grad(X, A, Z, penalty, eta, h=1e-6):
    """Central differences of each example's objective in each code entry, shape (N, p)."""
    grad = np.zeros_like(Z)
    for i in range(Z.shape[1]):
        e = np.zeros_like(Z)
        e[:, i] = h
        up = code_objective(X, A, Z + e, penalty=penalty, eta=eta)
        down = code_objective(X, A, Z - e, penalty=penalty, eta=eta)
        grad[:, i] = (up - down) / (2 * h)
    return grad


def test_soft_threshold_and_penalties_known_values():
    x = np.array([[-3.0, -0.5, 0.0, 0.2, 2.5]])
    np.testing.assert_array_equal(soft_threshold(x, 1.0), [[-2.0, 0.0, 0.0, 0.0, 1.5]])
    z = np.array([[0.0, 1.0, -2.0]])
    np.testing.assert_allclose(sparsity_penalty(z, "l1"), [3.0])
    np.testing.assert_allclose(sparsity_penalty(z, "log"), [np.log(2) + np.log(5)])
    np.testing.assert_allclose(sparsity_penalty(z, "exp"), [-1 - np.exp(-1) - np.exp(-4)])
    X, A = np.array([[1.0, 2.0]]), np.array([[1.0, 0.0], [0.0, 2.0]])
    # ||x - A z||^2 = (1 - 0)^2 + (2 - 2)^2 = 1, plus 0.5 * |0| + 0.5 * |1|
    np.testing.assert_allclose(code_objective(X, A, np.array([[0.0, 1.0]]), eta=0.5), [1.5])


@pytest.mark.parametrize("solver", ["ista", "fista"])
def test_l1_codes_satisfy_subgradient_conditions(solver):
    X, A = random_problem(0)
    eta = 0.5
    Z, n_iter = sparse_encode(X, A, eta=eta, solver=solver, max_iter=20000, tol=1e-13)
    assert n_iter < 20000  # converged by the tolerance, not the cap
    grad = 2 * (Z @ A.T - X) @ A  # gradient of ||x - A z||^2 in z, for every example
    active = Z != 0
    assert 0.1 < active.mean() < 0.9  # a genuinely sparse solution, not all or nothing
    np.testing.assert_allclose(grad[active], -eta * np.sign(Z[active]), atol=1e-8)
    assert np.all(np.abs(grad[~active]) <= eta + 1e-8)
    # the factor 2 matters: the same codes violate the conditions without it
    assert np.abs(grad[active] / 2 + eta * np.sign(Z[active])).max() > 1e-2


@pytest.mark.outcome
def test_fista_reaches_objective_in_fewer_iterations_than_ista(seed_offset, outcome):
    """FISTA after 300 iterations is nearer the optimum than ISTA after 1,200.

    Once the support settles both converge linearly, at rates about 1 - 1/k and 1 - 1/sqrt(k)
    per iteration for the restricted condition number k, so FISTA with 4x fewer iterations wins
    wherever sqrt(k) > 4; these random over-complete problems need thousands of ISTA
    iterations (k in the hundreds). Over 40 random problems FISTA's excess over the optimum is
    at most 0.096 of ISTA's (median 0.011); a FISTA without its momentum would be ISTA at 300
    iterations, 9-18x worse than ISTA at 1,200 (seeds 0-2). (A fixed level, 1e-6 of the
    starting gap, held for 3 of seeds 0-9: it was seed 0's.)"""
    X, A = random_problem(seed_offset, n=10, d=20, p=40)
    eta = 0.1

    def total(Z):
        return code_objective(X, A, Z, eta=eta).sum()

    best = total(sparse_encode(X, A, eta=eta, max_iter=20000, tol=0)[0])
    fista = sparse_encode(X, A, eta=eta, solver="fista", max_iter=300, tol=0)[0]
    ista = sparse_encode(X, A, eta=eta, solver="ista", max_iter=1200, tol=0)[0]
    ratio = (total(fista) - best) / (total(ista) - best)
    outcome.check("excess over the optimum, FISTA 300 / ISTA 1,200", ratio, "<", 1)


def test_fista_is_not_monotone_but_never_worse_than_its_start():
    X, A = random_problem(0, n=10, d=10, p=20)
    Z0 = np.random.default_rng(1).standard_normal((10, 20))  # a warm start, as in fit
    start = code_objective(X, A, Z0, eta=0.1)
    J = np.array(
        [
            code_objective(
                X, A, sparse_encode(X, A, eta=0.1, max_iter=k, tol=0, init=Z0)[0], eta=0.1
            )
            for k in range(1, 150)
        ]
    )  # (iterations, N)
    assert (np.diff(J, axis=0) > 1e-12).any()  # FISTA's objective goes up at times...
    assert np.all(start >= J)  # ...but never above the start: fit's code step is monotone


@pytest.mark.parametrize("penalty", ["log", "exp"])
def test_gd_step_decreases_objective_even_where_the_penalty_dominates(penalty):
    X, A = random_problem(2)
    A, eta = 0.2 * A, 5.0  # the penalty's curvature (up to 2 eta) dominates 2 ||A||^2
    Z = np.random.default_rng(3).standard_normal((12, 20))
    J = [code_objective(X, A, Z, penalty=penalty, eta=eta)]
    for _ in range(50):  # gradient descent keeps no state: one iteration at a time
        Z = sparse_encode(X, A, penalty=penalty, eta=eta, max_iter=1, init=Z)[0]
        J.append(code_objective(X, A, Z, penalty=penalty, eta=eta))
    J = np.array(J)  # (iterations + 1, N)
    assert np.all(np.diff(J, axis=0) <= 1e-12 * np.abs(J[:-1]))
    assert np.all(J[-1] < J[0] - 1.0)


@pytest.mark.parametrize("penalty", ["log", "exp"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_smooth_penalty_gd_reaches_stationary_point(penalty, dtype):
    X, A = random_problem(1)
    eta = 0.5
    X32, A32 = X.astype(dtype), A.astype(dtype)
    Z, _ = sparse_encode(X32, A32, penalty=penalty, eta=eta, max_iter=20000, tol=0)
    assert Z.dtype == dtype
    # stationarity judged in float64, by finite differences of the objective itself
    grad = numerical_code_grad(X, A, Z.astype(np.float64), penalty, eta)
    scale = np.abs(numerical_code_grad(X, A, np.zeros_like(Z, np.float64), penalty, eta)).max()
    assert np.abs(grad).max() <= (1e-8 if dtype == np.float64 else 1e-4) * scale
    start = code_objective(X, A, np.zeros_like(X @ A), penalty=penalty, eta=eta)
    assert np.all(code_objective(X, A, Z.astype(np.float64), penalty=penalty, eta=eta) < start)


@pytest.mark.parametrize(
    "penalty, solver", [("l1", "fista"), ("l1", "ista"), ("log", "gd"), ("exp", "gd")]
)
@pytest.mark.parametrize("dict_update, lam", [("normalize", None), ("ridge", 1.0)])
def test_fit_decreases_objective_at_every_half_step(penalty, solver, dict_update, lam):
    X, _ = sparse_data(0, n=300)
    model = SparseCoding(
        24, penalty=penalty, eta=0.3, solver=solver, dict_update=dict_update, lam=lam, rng=100
    )
    model.fit(X, n_iter=8)
    steps = [h["step"] for h in model.history]
    assert steps == ["init"] + ["codes", "dictionary"] * 8
    J = np.array([h["objective"] for h in model.history])
    assert np.all(np.diff(J) <= 1e-12 * np.abs(J[:-1]))
    # every dictionary half-step does real work (a no-op update would pass the line above)
    assert np.all(J[2::2] < J[1::2] - 1e-4 * np.abs(J[1::2]))
    assert J[-1] == pytest.approx(model.objective(X, model.codes), rel=1e-12)


def test_normalize_gives_unit_atoms_and_ridge_is_the_closed_form():
    X, _ = sparse_data(1, n=300)
    unit = SparseCoding(24, eta=0.3, rng=101).fit(X, n_iter=5)
    np.testing.assert_allclose(np.linalg.norm(unit.dictionary, axis=0), 1.0, rtol=1e-12)
    lam = 2.0
    ridge = SparseCoding(24, eta=0.3, dict_update="ridge", lam=lam, rng=101).fit(X, n_iter=5)
    A, Z = ridge.dictionary, ridge.codes
    # the last half-step set A for the final codes: the gradient of J in A vanishes there
    grad_A = -2 * (X - Z @ A.T).T @ Z + 2 * lam * A
    assert np.abs(grad_A).max() <= 1e-9 * np.abs(X.T @ Z).max()
    assert not np.allclose(np.linalg.norm(A, axis=0), 1.0, atol=1e-3)  # ridge does not normalise


@pytest.mark.outcome
def test_recovers_overcomplete_dictionary(seed_offset, outcome):
    """Four problems of 24 unit atoms in 16 dimensions, 3 atoms per example: the learned
    dictionaries recover 90% of the true atoms on average (cos > 0.9, one learned atom per true
    atom), and each problem's codes come back sparse and reconstruct its data.

    Alternating minimisation is not convex: a run may leave an atom or two in a poor local
    minimum (seeds 0-19: 12 problems recovered all 24 atoms, 4 missed one, 4 missed two), so
    one problem's fraction is a draw with a tail at 22/24 = 0.917, one atom above the bound
    (the test this replaces asked it of each of seeds 0 and 1 alone). The mean of four is
    0.975 on average with a standard deviation near 0.017 (from those 20): 0.9 is 4 below."""
    recovered, nonzeros, errors = [], [], []
    for seed in range(4 * seed_offset, 4 * seed_offset + 4):
        X, true = sparse_data(seed)  # 24 atoms in 16 dimensions
        # another seed than the data's: the same seed would draw the true dictionary as the start
        start = SparseCoding(24, eta=0.3, rng=100 + seed).fit(X, n_iter=0).dictionary
        assert (np.abs(start.T @ true).max(axis=0) > 0.9).mean() < 0.2
        model = SparseCoding(24, eta=0.3, code_iter=100, rng=100 + seed).fit(X, n_iter=60)
        cos = np.abs(model.dictionary.T @ true)  # learned x true, both unit atoms
        rows, cols = linear_sum_assignment(cos, maximize=True)  # one learned atom per true atom
        recovered.append((cos[rows, cols] > 0.9).mean())
        # the codes come back sparse and reconstruct the data
        codes = model.encode(X)
        nonzeros.append((codes != 0).sum(axis=1).mean())
        errors.append(((X - model.decode(codes)) ** 2).sum() / (X**2).sum())
    outcome.check("true atoms recovered (cos > 0.9), mean of 4", np.mean(recovered), ">=", 0.9)
    outcome.check("non-zero codes per example, worst of 4", max(nonzeros), "<", 6)
    outcome.check("relative squared error, worst of 4", max(errors), "<", 0.05)


@pytest.mark.outcome
def test_unused_atoms_are_restarted_where_the_data_is(seed_offset, outcome):
    # 100-dimensional data in 10 dimensions: random unit atoms are nearly orthogonal to it,
    # so most go unused at first (|2 a^T x| <= eta) and would never move without a restart
    X = np.zeros((200, 100))
    X[:, :10] = np.random.default_rng([4, seed_offset]).standard_normal((200, 10))
    model = SparseCoding(20, eta=3.0, rng=5 + seed_offset)
    model.fit(X, n_iter=1)
    first_codes = model.codes
    outcome.check("atoms unused after one iteration", (~first_codes.any(axis=0)).sum(), ">=", 10)
    model.fit(X, n_iter=15)
    assert model.codes.any(axis=0).all()  # every atom ends up in use...
    assert np.abs(model.dictionary[10:]).max() < 1e-6  # ...and inside the data's subspace
    J = np.array([h["objective"] for h in model.history])
    assert np.all(np.diff(J) <= 1e-12 * np.abs(J[:-1]))


@given(
    n=st.integers(1, 8),
    d=st.integers(1, 6),
    p=st.integers(1, 10),
    penalty=st.sampled_from(["l1", "log", "exp"]),
    dict_update=st.sampled_from(["normalize", "ridge"]),
    dtype=st.sampled_from([np.float64, np.float32]),
    seed=st.integers(0, 2**16),
)
def test_shapes_dtypes_and_monotone_for_any_sizes(n, d, p, penalty, dict_update, dtype, seed):
    X = np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)
    lam = 0.5 if dict_update == "ridge" else None
    model = SparseCoding(p, penalty=penalty, eta=0.2, dict_update=dict_update, lam=lam, rng=seed)
    model.fit(X, n_iter=3)
    assert model.dictionary.shape == (d, p) and model.dictionary.dtype == dtype
    assert model.codes.shape == (n, p) and model.codes.dtype == dtype
    Z = model.encode(X[:1])
    assert Z.shape == (1, p) and Z.dtype == dtype
    assert model.decode(Z).shape == (1, d)
    J = np.array([h["objective"] for h in model.history])
    assert len(J) == 7
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert np.all(np.diff(J) <= rtol * np.abs(J[:-1]))


X_OK = np.ones((4, 3))
A_OK = np.ones((3, 5))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: SparseCoding(0), ValueError, "n_atoms must be an int >= 1"),
        (lambda: SparseCoding(2.0), TypeError, "n_atoms must be an int"),
        (lambda: SparseCoding(4, penalty="l2"), ValueError, "penalty must be one of"),
        (lambda: SparseCoding(4, penalty="log", solver="fista"), ValueError, "does not fit"),
        (lambda: SparseCoding(4, solver="gd"), ValueError, "solver 'gd' does not fit"),
        (lambda: SparseCoding(4, eta=-1.0), ValueError, "eta must be a finite number >= 0"),
        (lambda: SparseCoding(4, eta="1"), TypeError, "eta must be a real number"),
        (lambda: SparseCoding(4, dict_update="qr"), ValueError, "dict_update must be one of"),
        (lambda: SparseCoding(4, dict_update="ridge"), ValueError, "needs lam > 0"),
        (lambda: SparseCoding(4, dict_update="ridge", lam=0.0), ValueError, "lam must be"),
        (lambda: SparseCoding(4, lam=1.0), ValueError, "lam applies only to"),
        (lambda: SparseCoding(4, rng="seed"), TypeError, "rng must be"),
        (lambda: SparseCoding(4).fit(X_OK.tolist()), TypeError, "X must be a np.ndarray"),
        (lambda: SparseCoding(4).fit(np.ones((4, 3), int)), TypeError, "floating-point"),
        (lambda: SparseCoding(4).fit(np.ones(3)), ValueError, "non-empty 2-D"),
        (lambda: SparseCoding(4).fit(np.ones((0, 3))), ValueError, "non-empty 2-D"),
        (lambda: SparseCoding(4).fit(np.full((2, 3), np.nan)), ValueError, "finite"),
        (lambda: SparseCoding(4).fit(X_OK, n_iter=-1), ValueError, "n_iter must be an int >= 0"),
        (lambda: SparseCoding(4).encode(X_OK), RuntimeError, "call fit"),
        (lambda: SparseCoding(4).fit(X_OK, 1).encode(np.ones((2, 4))), ValueError, "3"),
        (lambda: SparseCoding(4).fit(X_OK, 1).encode(X_OK.astype(np.float32)), TypeError, "dtype"),
        (lambda: SparseCoding(4).fit(X_OK, 1).decode(np.ones((2, 3))), ValueError, "4 columns"),
        (lambda: sparse_encode(X_OK, np.ones((4, 5))), ValueError, "A has 4 rows"),
        (lambda: sparse_encode(X_OK, np.zeros((3, 5))), ValueError, "all zeros"),
        (lambda: sparse_encode(X_OK, A_OK, max_iter=0), ValueError, "max_iter must be an int >= 1"),
        (lambda: sparse_encode(X_OK, A_OK, tol=float("nan")), ValueError, "tol must be"),
        (lambda: sparse_encode(X_OK, A_OK, init=np.ones((4, 4))), ValueError, "init must have"),
        (lambda: sparsity_penalty(A_OK, "l0"), ValueError, "penalty must be one of"),
    ],
)
def test_invalid_inputs_raise_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("whole", [False, True])
def test_example_script_end_to_end(tmp_path, mnist_dir, example, whole):
    import json

    out = tmp_path / "run"
    argv = ["--split", "test", "--data-dir", mnist_dir, "--out", str(out), "--examples", "300",
            "--atoms", "16", "--iters", "2", "--code-iter", "5"] + (["--whole"] if whole else [])  # fmt: skip
    assert example("sparse_coding_mnist").main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["splits"].startswith("train / validation / test")  # the protocol every example shares
    for part in ("train", "held_out"):
        assert 0 < m[part]["relative_error"] < 1 and 0 <= m[part]["zero_fraction"] <= 1
    for name in ("atoms.png", "objective.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
