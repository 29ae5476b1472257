"""Non-parametric density estimation: histogram, Parzen windows and k-NN in 2-D and on MNIST.

    python examples/density_mnist.py --split test --data-dir ../shared/data --out runs/density

2-D: a ring of 8 Gaussians (2,000 training points, 1,000 held out, drawn from --seed). Each
estimator's bins / bandwidth / k is the one with the best held-out mean log-likelihood, and
density_2d.png shows its log-density with the training points on top, beside the true density.
"mass" is the density summed over the figure's cells (about its integral over the box): 1 for
a proper density. k-NN's is not one: its integral diverges (in the far tails, and near every
sample for k = 1), which is also why it can out-score the true density on held-out points.

MNIST: images flattened to 784-d in [0, 1], the training images as kernel centres. The Gaussian
and hypercube windows are scored on the validation images over one log grid of widths
(bandwidth_mnist.png), and the chosen width on the test images (mean +- standard error); k-NN
log-densities of the test images for a few k. All numbers go to metrics.json.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from pathlib import Path

import numpy as np

from tinygan import cli, evaluation, runner, viz
from tinygan.density import (
    Histogram,
    gaussian_kde_log_density,
    hypercube_kde_log_density,
    knn_log_density,
    select_bandwidth,
)
from tinygan.metrics import mean_sem, parzen_log_likelihood

BOX = ((-3.0, 3.0), (-3.0, 3.0))  # the 2-D figure's window, also the histogram's range
RING_SD = 0.2
K_GRID = 2 ** np.arange(9)  # k-NN's k in 2-D: 1 to 256


def ring(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points from 8 equally weighted Gaussians (sd 0.2) on the circle of radius 2."""
    return ring_centres()[rng.integers(0, 8, n)] + RING_SD * rng.standard_normal((n, 2))


def ring_centres() -> np.ndarray:
    angles = 2 * np.pi * np.arange(8) / 8
    return 2 * np.stack([np.cos(angles), np.sin(angles)], 1)


def summarise(ll: np.ndarray) -> dict[str, float]:
    """Mean log-likelihood, its standard error, and the fraction of points with finite density."""
    return {**mean_sem(ll), "finite_fraction": float(np.isfinite(ll).mean())}


def histogram_log_density(x: np.ndarray, samples: np.ndarray, bins: int) -> np.ndarray:
    """A ``bins`` x ``bins`` histogram of ``samples`` over ``BOX``, as a log_density_fn."""
    return Histogram(bins, range=BOX).fit(samples).log_density(x)


def part_2d(args: argparse.Namespace, out: Path) -> dict:
    """Fit each estimator to a ring of Gaussians, choose its setting on held-out points, plot."""
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    train, held = ring(args.points, rng), ring(args.held_out, rng)
    estimators = {  # name: (log_density_fn(x, samples, value), parameter name, grid)
        "histogram": (histogram_log_density, "bins", np.arange(2, 41)),
        "Gaussian KDE": (gaussian_kde_log_density, "sigma", np.geomspace(0.01, 1, 21)),
        "hypercube KDE": (hypercube_kde_log_density, "h", np.geomspace(0.02, 2, 21)),
        "k-NN": (knn_log_density, "k", K_GRID),
    }
    centres = [np.linspace(lo, hi, 2 * args.grid + 1)[1::2] for lo, hi in BOX]  # of the cells
    grid = np.stack(np.meshgrid(*centres), -1).reshape(-1, 2)  # row-major, y varying slowest
    cell = math.prod((hi - lo) / args.grid for lo, hi in BOX)

    def mass(log_density: np.ndarray) -> float:  # midpoint sum of the density over the box
        return float(np.exp(log_density).sum() * cell)

    # The true density is a Gaussian KDE whose samples are the 8 centres.
    true = functools.partial(gaussian_kde_log_density, samples=ring_centres(), sigma=RING_SD)
    on_grid = true(grid)
    results = {"true density": {"held_out": float(true(held).mean()), "mass_in_box": mass(on_grid)}}
    panels = {f"true density\nheld-out {results['true density']['held_out']:.3f}": on_grid}
    for name, (fn, param, values) in estimators.items():
        best, scores = select_bandwidth(fn, train, held, values)
        on_grid = fn(grid, train, best)
        r = results[name] = {
            param: best,
            "held_out": float(scores.max()),
            "mass_in_box": mass(on_grid),
            "grid": dict(zip(values.tolist(), scores.tolist(), strict=True)),
        }
        value = f"{best:.3g}" if isinstance(best, float) else best
        panels[f"{name}: {param} = {value}\nheld-out {r['held_out']:.3f}, "
               f"mass {r['mass_in_box']:.2f}"] = on_grid  # fmt: skip
    if runner.is_main():
        viz.density_panels(
            out / "density_2d.png",
            {k: v.reshape(args.grid, args.grid) for k, v in panels.items()},
            (*BOX[0], *BOX[1]),
            points=train,
            vmax=float(panels[next(iter(panels))].max()) + 1,
            title=f"ring of 8 Gaussians, {args.points} training points (dots). held-out: "
            f"mean log-likelihood of {args.held_out} other points (nats); mass: density summed "
            "over cells",
        )
    results["seconds"] = time.perf_counter() - start
    return results


def check_sizes(args: argparse.Namespace, splits: evaluation.Splits) -> None:
    """The flags that count MNIST images must fit the splits (``cli.UsageError`` if not)."""
    n, n_val = len(splits.train[0]), len(splits.validation[0])
    if args.samples > n:
        raise cli.UsageError(f"--samples {args.samples}: there are {n} training images")
    centres = args.samples or n
    if max(args.knn) > centres:
        raise cli.UsageError(f"--knn {max(args.knn)}: k-NN has {centres} kernel centres")
    if args.hypercube_queries > n_val:
        raise cli.UsageError(
            f"--hypercube-queries {args.hypercube_queries}: there are {n_val} validation images"
        )


def part_mnist(args: argparse.Namespace, splits: evaluation.Splits, out: Path) -> dict:
    """Gaussian and hypercube windows and k-NN on flattened MNIST images."""
    train, val, test = (
        s[0].reshape(len(s[0]), -1).astype(np.float64)
        for s in (splits.train, splits.validation, splits.test)
    )
    if args.samples:
        train = train[: args.samples]
    widths = np.geomspace(0.05, 2, args.widths)
    print(f"MNIST: {len(train)} kernel centres, {len(val)} validation, {len(test)} test images")
    seconds = {}

    start = time.perf_counter()
    gauss = parzen_log_likelihood(train, val, test, sigmas=widths)  # sigma, test mean and sem
    seconds["gaussian_kde"] = time.perf_counter() - start

    # The hypercube window is costly in 784-d (one pass per pixel), so fewer validation images
    # score it. Record which fraction of them has a non-empty window at each width.
    start = time.perf_counter()
    finite = {}

    def hypercube(x: np.ndarray, samples: np.ndarray, h: float) -> np.ndarray:
        ll = hypercube_kde_log_density(x, samples, h)
        finite[h] = float(np.isfinite(ll).mean())
        return ll

    h, scores = select_bandwidth(hypercube, train, val[: args.hypercube_queries], widths)
    ll = hypercube_kde_log_density(test, train, h)
    narrower = widths[widths < h].max().item() if (widths < h).any() else None
    cube = {
        "h": h,
        "validation_images": min(args.hypercube_queries, len(val)),
        "validation": dict(zip(widths.tolist(), scores.tolist(), strict=True)),
        "validation_finite_fraction": finite,
        "test": summarise(ll),
        # log p = log(count / n) - D log h = -D log h: every window holds every training image
        "window_holds_every_sample": bool(np.allclose(ll, -train.shape[1] * math.log(h))),
        "narrower_h": narrower,  # the next grid width down, scored on the test images too
    }
    if narrower is not None:
        cube["test_at_narrower_h"] = summarise(hypercube_kde_log_density(test, train, narrower))
    seconds["hypercube_kde"] = time.perf_counter() - start

    start = time.perf_counter()
    knn = {k: summarise(knn_log_density(test, train, k)) for k in args.knn}
    seconds["knn"] = time.perf_counter() - start

    n_cube = cube["validation_images"]
    if runner.is_main():
        viz.curve_panels(
            out / "bandwidth_mnist.png",
            {
                "mean log-likelihood (nats per image)": {
                    "Gaussian KDE (width = sigma)": (widths, list(gauss["validation"].values())),
                    f"hypercube KDE (width = side h; {n_cube} images)": (widths, scores),
                },
                "fraction of images with density > 0": {
                    "Gaussian KDE (always > 0)": (widths, np.ones(len(widths))),
                    f"hypercube KDE ({n_cube} images)": (
                        widths,
                        [finite[w] for w in widths.tolist()],
                    ),
                },
            },
            xlabel="window width",
            title=f"MNIST validation images under windows on {len(train)} training images "
            "(-inf where any image has density 0: not drawn)",
            logx=True,
        )
    return {
        "splits": splits.description,
        "kernel_centres": len(train),
        "widths": widths.tolist(),
        "gaussian_kde": gauss,
        "hypercube_kde": cube,
        "knn": knn,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    cli.add_data_flags(parser)
    add = parser.add_argument
    add("--seed", type=cli.integer(0), default=0, help="seed of the 2-D data")
    add("--points", type=cli.integer(int(K_GRID[-1])), default=2000,
        help=f"2-D training points (at least {K_GRID[-1]}, k-NN's largest k)")  # fmt: skip
    add("--held-out", type=cli.integer(1), default=1000, help="2-D held-out points")
    add("--grid", type=cli.integer(1), default=200,
        help="2-D figure resolution (cells per axis)")  # fmt: skip
    add("--samples", type=cli.integer(0), default=0,
        help="MNIST kernel centres (default 0: every one)")  # fmt: skip
    add("--widths", type=cli.integer(2), default=17,
        help="MNIST widths, log-spaced from 0.05 to 2")  # fmt: skip
    add("--hypercube-queries", type=cli.integer(1), default=100,
        help="validation images scoring h")  # fmt: skip
    add("--knn", type=cli.integer(1), nargs="+", default=[1, 5, 25, 100],
        help="k for MNIST k-NN")  # fmt: skip
    cli.add_out_flags(parser, "runs/density", resume=False)
    args = cli.parse(parser, argv)

    runner.tune_allocator()
    splits = evaluation.load_splits(args.dataset, args.split, args.data_dir)
    check_sizes(args, splits)
    with runner.make_out(args) as out:
        start = time.perf_counter()
        metrics = {"two_d": part_2d(args, out), "mnist": part_mnist(args, splits, out)}
        metrics.update(seconds=time.perf_counter() - start, flags=vars(args))
        runner.write_json(out / "metrics.json", metrics)
        for name, r in metrics["two_d"].items():
            if name != "seconds":
                print(f"2-D {name}: held-out {r['held_out']:.3f} nats, mass {r['mass_in_box']:.2f}")
        g, c = metrics["mnist"]["gaussian_kde"], metrics["mnist"]["hypercube_kde"]
        print(
            f"MNIST test: Gaussian KDE (sigma {g['sigma']:.3f}) {g['mean']:.1f} +- "
            f"{g['sem']:.1f} nats; hypercube (h {c['h']:.3f}) {c['test']['mean']:.1f} nats, "
            f"finite for {c['test']['finite_fraction']:.0%}; {metrics['seconds']:.0f} s"
        )
        print("wrote", out / "density_2d.png", out / "bandwidth_mnist.png", out / "metrics.json")
        return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
