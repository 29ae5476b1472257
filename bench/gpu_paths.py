"""Every device path on a real GPU against the CPU: forward values and input gradients in
float64 (and float32 where it matters), each path in its own try block, one line per path.

    python bench/gpu_paths.py [--json FILE]

For the device check (``bench/gpu_check.sh``); the same paths run in CI on the test-only CuPy
stand-in (tests/test_device_paths.py). Exits 1 if any path fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback

import numpy as np

import tinygan as tg
from tinygan import nn
from tinygan.nn import functional as F


def rel_diff(a, b) -> float:
    """max |a - b| relative to max(|a|, 1)."""
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1.0))


def run_both(fn, arrays, dtype=np.float64):
    """fn(*tensors) -> scalar Tensor on CPU and GPU; returns the largest relative differences
    (``rel_diff``) of the value and of the inputs' gradients."""
    out = {}
    for device in ("cpu", "cuda"):
        ts = [
            tg.Tensor(np.asarray(a, dtype=dtype if np.asarray(a).dtype.kind == "f" else None))
            .to(device)
            .requires_grad_(np.asarray(a).dtype.kind == "f")
            for a in arrays
        ]
        y = fn(*ts)
        y.backward()
        out[device] = (
            y.numpy(),
            [t.grad if t.grad is None else tg.Tensor(t.grad).to("cpu").numpy() for t in ts],
        )
    (ya, ga), (yb, gb) = out["cpu"], out["cuda"]
    dv = rel_diff(ya, yb)
    dg = max((rel_diff(a, b) for a, b in zip(ga, gb, strict=True) if a is not None), default=0.0)
    return dv, dg


def paths():
    r = np.random.default_rng(0)
    x = r.normal(size=(6, 5))
    img = r.normal(size=(4, 3, 9, 9))
    yield "max(dim)", lambda: run_both(lambda a: (tg.max(a, 1).values ** 2).sum(), [x])
    yield (
        "max(dim, keepdim)",
        lambda: run_both(lambda a: (a.max(0, keepdim=True).values * 3).sum(), [x]),
    )
    yield "amax", lambda: run_both(lambda a: a.amax(1).sum(), [x])
    yield (
        "getitem int index (scatter)",
        lambda: run_both(lambda a: (a[np.array([0, 2, 2, 5])] ** 2).sum(), [x]),
    )
    yield (
        "cross_entropy",
        lambda: run_both(
            lambda a: F.cross_entropy(a, tg.Tensor(np.array([0, 1, 4, 2, 3, 0])).to(a.device)), [x]
        ),
    )
    yield (
        "dropout",
        lambda: run_both(
            lambda a: (F.dropout(a, 0.3, rng=np.random.default_rng(1)) ** 2).sum(), [x]
        ),
    )
    yield (
        "gaussian_nll",
        lambda: run_both(lambda a, m: F.gaussian_nll(a, m, a * 0.1), [x, r.normal(size=x.shape)]),
    )
    yield (
        "softplus/softmax/logsumexp",
        lambda: run_both(
            lambda a: (
                tg.softplus(a).sum() + (tg.softmax(a, 1) ** 2).sum() + tg.logsumexp(a, 1).sum()
            ),
            [x],
        ),
    )
    yield (
        "bce_with_logits / mse",
        lambda: run_both(
            lambda a, t: F.binary_cross_entropy_with_logits(a, t) + F.mse_loss(a, t * 0.5),
            [x, (x > 0).astype(float)],
        ),
    )

    def bn(mode, momentum):
        def f(a):
            layer = nn.BatchNorm2d(3, momentum=momentum).to(a.device)
            for _ in range(2):
                layer(a)
            if mode == "eval":
                layer.eval()
            return (layer(a) ** 2).sum()

        return lambda: run_both(f, [img], np.float32)

    yield "batch_norm train", bn("train", 0.1)
    yield "batch_norm eval", bn("eval", 0.1)
    yield "batch_norm momentum=None", bn("eval", None)
    yield (
        "conv2d",
        lambda: run_both(
            lambda a, w, b: (F.conv2d(a, w, b, stride=2, padding=1) ** 2).sum(),
            [img, r.normal(size=(5, 3, 3, 3)), r.normal(size=5)],
        ),
    )
    yield (
        "conv_transpose2d",
        lambda: run_both(
            lambda a, w, b: (
                F.conv_transpose2d(a, w, b, stride=2, padding=1, output_padding=1) ** 2
            ).sum(),
            [img, r.normal(size=(3, 4, 4, 4)), r.normal(size=4)],
        ),
    )
    yield (
        "channel_sum large batch",
        lambda: run_both(
            lambda a: (
                F.conv2d(a, tg.Tensor(np.ones((8, 3, 1, 1))).to(a.device), None) * 1.0
            ).sum(),
            [r.normal(size=(64, 3, 16, 16))],
        ),
    )
    yield (
        "linear+leaky_relu",
        lambda: run_both(
            lambda a, w, b: F.leaky_relu(F.linear(a, w, b), 0.1).sum(),
            [x, r.normal(size=(7, 5)), r.normal(size=7)],
        ),
    )
    yield (
        "huge launch (65535x256+)",
        lambda: run_both(
            lambda a: F.leaky_relu(a, 0.1).sum(), [r.normal(size=65535 * 256 + 17)], np.float32
        ),
    )
    yield (
        "im2col huge grid",
        lambda: run_both(
            lambda a: F.conv2d(a, tg.Tensor(np.ones((2, 1, 3, 3), np.float32)).to(a.device)).sum(),
            [r.normal(size=(2000, 1, 100, 100))],
            np.float32,
        ),
    )

    for name in ("SGD", "Adam", "RMSprop"):

        def opt(name=name):
            res = {}
            for device in ("cpu", "cuda"):
                lin = nn.Linear(5, 3, rng=np.random.default_rng(0)).to(device)
                o = getattr(tg.optim, name)(lin.parameters(), lr=0.01)
                for _ in range(3):
                    o.zero_grad()
                    (lin(tg.Tensor(x.astype(np.float32)).to(device)) ** 2).sum().backward()
                    o.step()
                res[device] = lin.weight.numpy()
            return rel_diff(res["cpu"], res["cuda"]), 0.0

        yield f"optim.{name}", opt

    def models():
        from tinygan.models import InfoGAN
        from tinygan.models.classifier import Classifier, mnist_cnn
        from tinygan.train import train

        data = np.random.default_rng(0).random((64, 1, 28, 28), dtype=np.float32)
        labels = np.arange(64) % 10
        hist = {}
        for device in ("cpu", "cuda"):
            m = InfoGAN(seed=0, device=device)
            h = train(m, data, steps=3, batch_size=16, seed=0, progress=False)
            c = Classifier(mnist_cnn(np.random.default_rng(0)), device=device)
            hc = train(c, (data, labels), steps=3, batch_size=16, seed=0, progress=False)
            hist[device] = [h[-1]["g_loss"], h[-1]["d_loss"], hc[-1]["loss"]]
        return rel_diff(np.array(hist["cpu"]), np.array(hist["cuda"])), 0.0

    yield "InfoGAN+Classifier train() 3 steps", models


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None)
    args = p.parse_args()
    results, failed = [], 0
    for name, check in paths():
        t0 = time.perf_counter()
        try:
            dv, dg = check()
            status = "ok" if max(dv, dg) < 1e-4 else "MISMATCH"
            detail = f"relative diff: value {dv:.1e}, grads {dg:.1e}"
        except Exception as e:  # one line each; the traceback's last frames for the log
            status, detail = "ERROR", f"{type(e).__name__}: {e}"
            traceback.print_exc(limit=-4)
        failed += status != "ok"
        dt = time.perf_counter() - t0
        print(f"{status:8s} {name:38s} {detail} ({dt:.1f} s)", flush=True)
        results.append(dict(path=name, status=status, detail=detail, seconds=dt))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
