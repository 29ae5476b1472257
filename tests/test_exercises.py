"""The exercises of docs/exercises.md: one check per exercise, run on the solutions always and on
your answers (docs/exercises/exercises.py) with ``TINYGAN_EXERCISES=1``.

``test_checks_reject_wrong_answers`` runs every check on wrong answers (the planted bugs, a
backward computed on arrays, the other valid visiting order, ...), so that a check passing on
the solutions means something.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import settings

import tinygan as tg
from tinygan.graph import BackwardTrace
from tinygan.testing import broadcastable_shapes, check_op, op_test

EXERCISES = Path(__file__).resolve().parents[1] / "docs" / "exercises"
ENABLED = os.environ.get("TINYGAN_EXERCISES") == "1"
SKIP_REASON = (
    "your answers in docs/exercises/exercises.py are checked with TINYGAN_EXERCISES=1 "
    "(e.g. TINYGAN_EXERCISES=1 python -m pytest tests/test_exercises.py -k predict)"
)


def load(name: str) -> SimpleNamespace:
    """docs/exercises/<name>.py, imported from its path (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"tinygan_exercises_{name}", EXERCISES / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def solutions():
    return load("solutions")


@pytest.fixture(params=["solutions", "yours"])
def answers(request, solutions):
    if request.param == "solutions":
        return solutions
    if not ENABLED:
        pytest.skip(SKIP_REASON)
    return load("exercises")


# ---- the checks ---------------------------------------------------------------------------------
def check_predict(m) -> None:
    assert m.PREDICTED_ORDER and m.PREDICTED_GRADS, "fill in PREDICTED_ORDER and PREDICTED_GRADS"
    a = tg.tensor(2.0, requires_grad=True)
    b = tg.tensor(-3.0, requires_grad=True)
    c = a * b
    e = a + b
    y = c * e
    names = {"a": a, "b": b, "c": c, "e": e, "y": y}
    with BackwardTrace(y, names) as trace:
        y.backward()
    order = [s.output for s in trace.steps]
    assert list(m.PREDICTED_ORDER) == order, f"the order is {order}, not {m.PREDICTED_ORDER}"
    truth = {"a": a.grad, "b": b.grad, "c": trace.grad_of(c), "e": trace.grad_of(e)}
    assert set(m.PREDICTED_GRADS) == set(truth), f"predict the gradients of {sorted(truth)}"
    for k, g in truth.items():
        assert m.PREDICTED_GRADS[k] == pytest.approx(float(g)), f"dy/d{k} is {float(g)}"


def check_sin_cos(m) -> None:
    x = np.linspace(-3, 3, 7)
    for fn, ref in ((m.sin, np.sin), (m.cos, np.cos)):
        np.testing.assert_allclose(fn(tg.tensor(x)).numpy(), ref(x), rtol=1e-12)
        assert tg.gradcheck(fn, [tg.tensor(x, requires_grad=True)])
    # Derivatives of sin to the fourth: cos, -sin, -cos, sin. Each needs the one before recorded.
    xt = tg.tensor(x, requires_grad=True)
    g = m.sin(xt)
    for k, want in enumerate((np.cos(x), -np.sin(x), -np.cos(x), np.sin(x)), start=1):
        (g,) = tg.grad(g.sum(), xt, create_graph=True)
        np.testing.assert_allclose(g.numpy(), want, atol=1e-12, err_msg=f"derivative {k} of sin")
        assert g.requires_grad, NOT_RECORDED.format(f"derivative {k} of sin")


NOT_RECORDED = (
    "{} is a constant to the engine, not a Tensor in a graph: write backward with Tensor ops on "
    "self.inputs / self.output (arrays such as self.inputs[0].data are constants)"
)


def _property_test(fn, reference, **options):
    """op_test with a fixed sample of examples (whatever the hypothesis profile)."""
    return settings(max_examples=10, derandomize=True, database=None)(
        op_test(fn, reference, **options)
    )


def _is_property_test(test) -> bool:
    return callable(test) and hasattr(test, "hypothesis")


def check_hypot(m) -> None:
    rng = np.random.default_rng(0)  # values of either sign; b broadcast over a's rows
    check_op(m.hypot, [rng.standard_normal((2, 3)), rng.standard_normal(3)], np.hypot)
    _property_test(m.hypot, np.hypot, inputs=2, shapes=broadcastable_shapes(2))()
    assert _is_property_test(m.test_hypot), "test_hypot must be a test made by op_test"
    m.test_hypot()


def _silu(x):
    return x / (1 + np.exp(-x))


def check_silu(m) -> None:
    x = np.array([-30.0, -2.5, -0.5, 0.0, 0.7, 3.0, 30.0])
    for dtype in (np.float64, np.float32):
        y = m.silu(tg.tensor(x, dtype=dtype))
        assert y.dtype == dtype, f"silu of {np.dtype(dtype)} gave {y.dtype}"
        np.testing.assert_allclose(y.numpy(), _silu(x), rtol=1e-6, atol=1e-12)
    assert tg.gradcheck(m.silu, [tg.tensor(x[1:-1], requires_grad=True)])
    xt = tg.tensor(x, requires_grad=True)
    (g,) = tg.grad(m.silu(xt).sum(), xt, create_graph=True)
    assert g.requires_grad, NOT_RECORDED.format("the gradient of silu")
    (g2,) = tg.grad(g.sum(), xt)
    s = 1 / (1 + np.exp(-x))
    want = s * (1 - s) * (2 + x * (1 - 2 * s))
    np.testing.assert_allclose(g2.numpy(), want, atol=1e-12, err_msg="second derivative of silu")
    _property_test(m.silu, _silu, inputs=1)()
    assert _is_property_test(m.test_silu), "test_silu must be a test made by op_test"
    m.test_silu()


def check_hessian(m) -> None:
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 4))
    x = rng.standard_normal(4)
    quadratic = m.hessian(lambda v: 0.5 * (v * (tg.tensor(A) @ v)).sum(), x)
    np.testing.assert_allclose(quadratic, (A + A.T) / 2, atol=1e-12)
    W = tg.tensor(rng.standard_normal((3, 4)))

    def f(v):
        return (W @ v).tanh().sum() + (v**3).sum() + v[0] * v[2]

    def gradient(v):
        vt = tg.tensor(v, requires_grad=True)
        return tg.grad(f(vt), vt)[0].numpy()

    h = 1e-6  # column j: the central difference of the gradient along x_j
    numerical = np.stack(
        [(gradient(x + h * e) - gradient(x - h * e)) / (2 * h) for e in np.eye(4)], axis=1
    )
    H = m.hessian(f, x)
    assert H.shape == (4, 4)
    np.testing.assert_allclose(H, numerical, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(H, H.T, atol=1e-12)


def check_info_graph(m, tmp_path: Path) -> None:
    from tinygan.models import LatentSpec, MLPDiscriminator, MLPGenerator

    dot = m.info_loss_graph(tmp_path / "info.png")
    assert isinstance(dot, str) and dot.startswith("digraph")
    assert (tmp_path / "info.png").read_bytes()[:4] == b"\x89PNG", "no picture at path"
    spec = LatentSpec(categorical=(3,), continuous=1, noise=2)
    G, D = MLPGenerator(spec.dim, 4, hidden=8), MLPDiscriminator(4, spec.q_dim, hidden=8)
    for name in [f"G.{k}" for k, _ in G.named_parameters()] + [
        f"D.{k}" for k, _ in D.named_parameters() if not k.startswith("d_head")
    ]:
        assert f'label="{name}\\n' in dot, f"{name} is not in the graph (or not named so)"
    assert "D.d_head" not in dot, "the information loss does not use D's real/fake head"
    for op in ("CrossEntropy", "GaussianNLLLogStd", "LinearFunction", "BatchNormFunction"):
        assert f'label="{op}"' in dot, f"no {op} op in the graph"


CHECKS = {  # exercise -> check(answers, tmp_path)
    "predict": lambda m, _: check_predict(m),
    "sin_cos": lambda m, _: check_sin_cos(m),
    "hypot": lambda m, _: check_hypot(m),
    "silu": lambda m, _: check_silu(m),
    "hessian": lambda m, _: check_hessian(m),
    "info_graph": check_info_graph,
}


def test_1_predict(answers):
    check_predict(answers)


def test_2_sin_cos(answers):
    check_sin_cos(answers)


def test_3_hypot(answers):
    check_hypot(answers)


def test_4_silu(answers):
    check_silu(answers)


def test_5_hessian(answers):
    check_hessian(answers)


def test_6_info_graph(answers, tmp_path):
    check_info_graph(answers, tmp_path)


# ---- the checks fail on wrong answers ----------------------------------------------------------
WRONG = (
    "predict: another valid order",
    "predict: signs",
    "sin_cos: sign of cos'",
    "sin_cos: backward on arrays",
    "hypot: the planted bugs",
    "hypot: no property test",
    "silu: a term missing",
    "silu: backward on arrays",
    "hessian: g g^T",
    "info_graph: Q on detached features",
)


def wrong_answers(sol) -> dict[str, dict]:
    """For each of ``WRONG``: the names that replace the solution's."""

    class SignCos(sol.Cos):  # d cos/dx = +sin
        def backward(self, gy):
            return gy * sol.sin(self.inputs[0])

    class ArraySin(sol.Sin):  # right first derivative, but a constant to the second
        def backward(self, gy):
            return gy * self.xp.cos(self.inputs[0].data)

    class PlantedHypot(sol.Hypot):  # the two bugs of exercises.py as shipped
        def backward(self, gy):
            a, b = self.inputs
            y = self.output
            ga = tg.sum_to(gy * a.abs() / y, a.shape) if self.needs_input_grad[0] else None
            gb = tg.sum_to(gy * b, b.shape) / tg.sum_to(y, b.shape)
            return ga, gb if self.needs_input_grad[1] else None

    class HalfSiLU(sol.SiLU):  # forgets the x s (1 - s) term
        def backward(self, gy):
            return gy * tg.sigmoid(self.inputs[0])

    class ArraySiLU(sol.SiLU):  # right first derivative, computed on arrays
        def backward(self, gy):
            x = self.inputs[0].data
            s = 1 / (1 + self.xp.exp(-x))
            return gy * (s + x * s * (1 - s))

    def outer_hessian(f, x):  # the Gauss-Newton shortcut g g^T, not second derivatives
        xt = tg.tensor(x, requires_grad=True)
        g = tg.grad(f(xt), xt)[0].numpy()
        return np.outer(g, g)

    def detached_graph(path):  # Q reads detached features: the loss never reaches G
        from tinygan.graph import draw_graph
        from tinygan.models import LatentSpec, MLPDiscriminator, MLPGenerator, information_terms

        spec = LatentSpec(categorical=(3,), continuous=1, noise=2)
        G = MLPGenerator(spec.dim, 4, hidden=8, rng=np.random.default_rng(0))
        D = MLPDiscriminator(4, spec.q_dim, hidden=8, rng=np.random.default_rng(0))
        latent = spec.sample(5, np.random.default_rng(1))
        h = D.body(G(tg.tensor(latent.vector()))).detach()
        loss = sum(information_terms(D.q_head(h), latent))
        names = {f"G.{k}": p for k, p in G.named_parameters()}
        names.update({f"D.{k}": p for k, p in D.named_parameters()})
        return draw_graph(loss, path, names=names)

    answers = dict(
        zip(
            WRONG,
            [
                {"PREDICTED_ORDER": ["y", "e", "c"]},  # consumers first too, but not the engine's
                {"PREDICTED_GRADS": {"a": 3.0, "b": 8.0, "c": 1.0, "e": 6.0}},
                {"cos": lambda x: SignCos()(x)},
                {"sin": lambda x: ArraySin()(x)},
                {"hypot": lambda a, b: PlantedHypot()(a, b)},
                {"test_hypot": lambda: None},
                {"silu": lambda x: HalfSiLU()(x)},
                {"silu": lambda x: ArraySiLU()(x)},
                {"hessian": outer_hessian},
                {"info_loss_graph": detached_graph},
            ],
            strict=True,
        )
    )
    return answers


@pytest.mark.parametrize("case", WRONG)
def test_checks_reject_wrong_answers(case, solutions, tmp_path):
    exercise = case.split(":")[0]
    wrong = SimpleNamespace(**{**vars(solutions), **wrong_answers(solutions)[case]})
    with pytest.raises(AssertionError):
        CHECKS[exercise](wrong, tmp_path)
