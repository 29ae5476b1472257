"""Gradient checking: false alarms by size (before/after issue 12), the planted-bug zoo, and
full vs vjp timings.

    python bench/bench_gradcheck.py numerics [--sizes 10,30,50,70,100,150,200] [--seeds 2]
    python bench/bench_gradcheck.py zoo [--sizes 6,100]
    python bench/bench_gradcheck.py timing [--size 100] [--repeats 3]

``numerics`` runs every correct op of tests/gradcheck_zoo.py on n x n float64 inputs and, from the
same evaluations ``y+- = fn(x +- h e_j)`` for every element ``j``, computes three full-mode checks
(h = 1e-6, atol 1e-7, rtol 1e-5, as gradcheck's defaults):

- before: the old scheme, ``(<y+, u> - <y-, u>) / 2h``, with the old upstream gradient ``u``
  (``default_rng(seed=0)``, gradcheck's default seed, so for inputs drawn from
  ``default_rng(0)`` ``u`` equals the first input's values: the issue's tanh example);
- scaled tolerance: the old scheme with gradcheck's new ``u``, its tolerance widened by a bound on
  the roundoff of the two sums, ``ceil(log2 N) * 2^-52 * (sum|y+ u| + sum|y- u|) / 2h``;
- after: gradcheck's scheme, ``<y+ - y-, u> / 2h``, with its ``u``.

It prints, per size, how many (op, seed) runs each scheme fails although the op is correct (a
false alarm), the worst |error| / tolerance, and for the schemes without false alarms the
smallest relative error planted on one element that the check catches (median over elements)
and the share of elements where a 1% error is caught. ``zoo`` runs gradcheck (full mode) on
every planted bug of tests/gradcheck_zoo.py: caught or not, the inputs blamed, the first message.
``timing`` times ``gradcheck`` (defaults, and without the layout and float32 runs) in both modes,
median over repeats, single-threaded BLAS.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads its BLAS

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tinygan as tg  # noqa: E402
from tests.gradcheck_zoo import CORRECT, PLANTED  # noqa: E402
from tinygan.gradcheck.numerics import STREAM  # noqa: E402

EPS, ATOL, RTOL = 1e-6, 1e-7, 1e-5
DEFAULT_SIZES = "10,30,50,70,100,150,200"
UNIT = 2.0**-52


def _analytic(fn, arrays, u):
    xs = [tg.tensor(a, requires_grad=True) for a in arrays]
    fn(*xs).backward(u)
    return [x.grad for x in xs]


def study(fn, arrays):
    """Per input: the three schemes' numerics and tolerances, and the analytic grads."""
    with tg.no_grad():
        shape = fn(*[tg.tensor(a) for a in arrays]).shape
    u_old = np.random.default_rng(0).standard_normal(shape)
    u_new = np.random.default_rng((0, STREAM)).standard_normal(shape)
    g_old, g_new = _analytic(fn, arrays, u_old), _analytic(fn, arrays, u_new)
    gamma = max(1, math.ceil(math.log2(max(2, math.prod(shape)))))
    rows = []
    for i, x in enumerate(arrays):
        before, scaled, after, bound = (np.empty(x.shape) for _ in range(4))
        args = [tg.tensor(a) for a in arrays]
        xw = x.copy()
        for j in np.ndindex(*x.shape):
            v = x[j]
            xw[j] = v + EPS
            args[i] = tg.tensor(xw)
            with tg.no_grad():
                yp = fn(*args).data.copy()
            xw[j] = v - EPS
            args[i] = tg.tensor(xw)
            with tg.no_grad():
                ym = fn(*args).data
            xw[j] = v
            before[j] = ((yp * u_old).sum() - (ym * u_old).sum()) / (2 * EPS)
            scaled[j] = ((yp * u_new).sum() - (ym * u_new).sum()) / (2 * EPS)
            after[j] = np.vdot((yp - ym).ravel(), u_new.ravel()) / (2 * EPS)
            total = np.abs(yp * u_new).sum() + np.abs(ym * u_new).sum()
            bound[j] = gamma * UNIT * total / (2 * EPS)
        tol = lambda n: ATOL + RTOL * np.abs(n)  # noqa: E731
        rows.append(
            {
                "before": (before, g_old[i], tol(before)),
                "scaled": (scaled, g_new[i], tol(scaled) + bound),
                "after": (after, g_new[i], tol(after)),
            }
        )
    return rows


def smallest_caught(numerical, analytic, tol):
    """Per element: the smallest relative error ``d`` such that an analytic value of
    ``g (1 + d)`` fails the check (<= 0 where the element fails already; NaN where g = 0, as
    relu's zeros, which no relative error changes)."""
    g = np.abs(analytic)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(g > 0, (tol + np.sign(analytic) * (numerical - analytic)) / g, np.nan)


def numerics(sizes, seeds, ops):
    schemes = ("before", "scaled", "after")
    print(
        "| n | runs | false alarms: before / scaled tol. / after | worst err/tol: before / after "
        "| smallest 1-element error caught (median): scaled tol. / after | 1% caught on: "
        "scaled tol. / after | s |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        t0 = time.perf_counter()
        alarms = dict.fromkeys(schemes, 0)
        worst = dict.fromkeys(schemes, 0.0)
        deltas = {s: [] for s in schemes}
        runs = 0
        for name in ops:
            for seed in range(seeds):
                fn, arrays = CORRECT[name](n, np.random.default_rng(seed))
                failed = dict.fromkeys(schemes, False)
                for row in study(fn, arrays):
                    for s in schemes:
                        num, g, tol = row[s]
                        ratio = float((np.abs(num - g) / tol).max())
                        worst[s] = max(worst[s], ratio)
                        failed[s] |= ratio > 1
                        deltas[s].append(smallest_caught(num, g, tol).ravel())
                runs += 1
                for s in schemes:
                    alarms[s] += failed[s]
                if failed["before"] or failed["after"]:
                    print(f"  ({name}, n={n}, seed {seed}: false alarm {failed})", file=sys.stderr)
        d = {s: np.concatenate(deltas[s]) for s in schemes}
        d = {s: v[~np.isnan(v)] for s, v in d.items()}
        med = {s: f"{np.median(d[s]):.2g}" for s in schemes}
        caught = {s: f"{100 * np.mean(d[s] < 0.01):.2f}%" for s in schemes}
        print(
            f"| {n} | {runs} | {alarms['before']} / {alarms['scaled']} / {alarms['after']} | "
            f"{worst['before']:.2g} / {worst['after']:.2g} | {med['scaled']} / {med['after']} | "
            f"{caught['scaled']} / {caught['after']} | {time.perf_counter() - t0:.0f} |",
            flush=True,
        )


def zoo(sizes):
    print("| bug | n | caught | blamed (expected) | s | first failure |")
    print("|---|---|---|---|---|---|")
    for name, bug in PLANTED.items():
        for n in sizes:
            xs = [tg.tensor(a, requires_grad=True) for a in bug.inputs(n, np.random.default_rng(0))]
            t = time.perf_counter()
            report = tg.gradcheck(lambda *a, op=bug.op: op()(*a), xs, raise_exception=False)
            seconds = time.perf_counter() - t
            first = str(report.failures[0]).replace("|", "\\|") if report.failures else ""
            print(f"| {name} | {n} | {'yes' if not report.ok else 'NO'} | {report.blamed} "
                  f"({bug.blamed}) | {seconds:.2f} | {first} |", flush=True)  # fmt: skip


def timing(n, repeats, ops):
    print(f"gradcheck at {n} x {n}, median of {repeats} (s); 'bare': layouts=False, float64 only")
    print("| op | full | full, bare | vjp | vjp, bare |")
    print("|---|---|---|---|---|")
    for name in ops:
        fn, arrays = CORRECT[name](n, np.random.default_rng(0))
        xs = [tg.tensor(a, requires_grad=True) for a in arrays]
        cells = []
        for mode in ("full", "vjp"):
            for extra in ({}, {"layouts": False, "dtypes": ("float64",)}):
                times = []
                for _ in range(repeats):
                    t = time.perf_counter()
                    tg.gradcheck(fn, xs, mode=mode, **extra)
                    times.append(time.perf_counter() - t)
                cells.append(f"{statistics.median(times):.3f}")
        print(f"| {name} | {' | '.join(cells)} |", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["numerics", "zoo", "timing"])
    p.add_argument("--sizes", default=DEFAULT_SIZES)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--ops", help="correct ops of the zoo (default: all; timing: a few)")
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    ops = a.ops.split(",") if a.ops else list(CORRECT)
    if a.what == "timing" and not a.ops:
        ops = ["tanh", "relu", "bias_add", "softmax", "matmul", "linear", "mse_loss"]
    if a.what == "numerics":
        numerics([int(s) for s in a.sizes.split(",")], a.seeds, ops)
    elif a.what == "zoo":
        zoo([int(s) for s in (a.sizes if a.sizes != DEFAULT_SIZES else "6,100").split(",")])
    else:
        timing(a.size, a.repeats, ops)


if __name__ == "__main__":
    main()
