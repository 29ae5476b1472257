"""examples/density_mnist.py end to end, at tiny sizes: files, chosen settings, finite numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tinygan.density import gaussian_kde_log_density
from tinygan.evaluation import load_splits


def test_example_script_end_to_end(tmp_path, mnist_dir, example):
    density_mnist = example("density_mnist")
    out = tmp_path / "run"
    argv = ["--split", "test", "--data-dir", mnist_dir, "--out", str(out), "--points", "300",
            "--held-out", "200", "--grid", "30", "--samples", "300", "--widths", "5",
            "--hypercube-queries", "10", "--knn", "1", "3"]  # fmt: skip
    assert density_mnist.main(argv) == 0
    for name in ["density_2d.png", "bandwidth_mnist.png"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    m = json.loads((out / "metrics.json").read_text())

    two_d = m["two_d"]
    # the true density (a mixture well inside the box) integrates to 1 on the figure's grid
    assert two_d["true density"]["mass_in_box"] == pytest.approx(1, abs=1e-3)
    for name, param in [("histogram", "bins"), ("Gaussian KDE", "sigma"),
                        ("hypercube KDE", "h"), ("k-NN", "k")]:  # fmt: skip
        r = two_d[name]
        scores = {float(k): v for k, v in r["grid"].items()}
        assert math.isfinite(r["held_out"]) and r["held_out"] == max(scores.values()), name
        assert scores[float(r[param])] == r["held_out"], name  # the setting that scored best
    for name in ["histogram", "Gaussian KDE", "hypercube KDE"]:  # proper densities
        assert two_d[name]["mass_in_box"] == pytest.approx(1, abs=0.05), name

    mn = m["mnist"]
    widths = np.geomspace(0.05, 2, 5)
    assert mn["kernel_centres"] == 300 and mn["widths"] == pytest.approx(widths)
    g = mn["gaussian_kde"]
    assert g["sigma"] in mn["widths"] and math.isfinite(g["mean"]) and g["sem"] > 0
    splits = load_splits("mnist", "test", mnist_dir)
    train, test = (s[0].reshape(len(s[0]), -1) for s in (splits.train, splits.test))
    ll = gaussian_kde_log_density(test, train[:300], g["sigma"])
    assert g["mean"] == pytest.approx(ll.mean(), rel=1e-9)  # the test images, the first 300 centres

    c = mn["hypercube_kde"]
    fractions = [c["validation_finite_fraction"][str(w)] for w in mn["widths"]]
    assert fractions == sorted(fractions) and fractions[-1] == 1  # windows nest; h = 2 holds all
    # only h = 2 (pixels in [0, 1]) leaves no window empty: then p = 2^-784 for every image
    assert c["h"] == 2.0 and c["window_holds_every_sample"]
    assert (
        c["test"]["mean"] == pytest.approx(-784 * math.log(2)) and c["test"]["finite_fraction"] == 1
    )
    assert c["narrower_h"] == pytest.approx(widths[-2])
    assert 0 <= c["test_at_narrower_h"]["finite_fraction"] < 1

    knn = mn["knn"]
    assert all(math.isfinite(knn[k]["mean"]) and knn[k]["sem"] > 0 for k in ("1", "3"))
    assert knn["1"]["mean"] > knn["3"]["mean"]  # in 784-d, -392 log r_k^2 dominates log k
    assert all(math.isfinite(v) and v > 0 for v in mn["seconds"].values())
