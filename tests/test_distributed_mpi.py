"""tinygan.distributed across processes: each test launches ``mpiexec -n 2 python <this file>
<scenario> <folder>``; the scenarios at the bottom run in the ranks (they check what they can
themselves and write what the test compares with a single-process run).

Skipped, with the reason, where mpi4py or mpiexec is missing (``pip install -e ".[distributed]"``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
MPIEXEC = shutil.which(
    "mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
)


def _missing() -> str | None:
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install -e '.[test,distributed]')"
    if MPIEXEC is None:
        return "no mpiexec on PATH (pip install mpich, or an MPI of the system)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def mpiexec(scenario: str, folder: Path, n: int = 2, timeout: float = 120, **env: str):
    """Run ``scenario`` on ``n`` ranks; the CompletedProcess (stdout and stderr merged)."""
    environment = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "TINYGAN_DIST_TIMEOUT": "60",
                   "PYTHONUNBUFFERED": "1", **env}  # fmt: skip
    for name in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"):
        environment.pop(name, None)  # (in case pytest itself runs under a launcher)
    return subprocess.run(
        [MPIEXEC, "-n", str(n), sys.executable, str(HERE), scenario, str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment,
        timeout=timeout, cwd=ROOT,
    )  # fmt: skip


def check(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-4000:]
    return result.stdout


# ---- the tests ---------------------------------------------------------------------------------


def test_collectives_sync_batchnorm_gradients_and_sampler(tmp_path):
    out = check(mpiexec("collectives", tmp_path))
    assert out.count("collectives ok") == 2, out


def paper_infogan(seed=0, dtype=np.float32):
    """The paper's InfoGAN; in float64 (parameters, buffers, latents) for the equivalence
    without float32 rounding, which a GAN amplifies from step to step."""
    from tinygan.models import InfoGAN
    from tinygan.models.infogan import Latent, LatentSpec

    if dtype == np.float32:
        return InfoGAN(seed=seed)

    class Latent64(Latent):
        def vector(self):
            return super().vector().astype(dtype)

    class Spec64(LatentSpec):
        def sample(self, n, rng):
            z = super().sample(n, rng)
            return Latent64(z.noise.astype(dtype), z.categories, z.continuous.astype(dtype), self)

    model = InfoGAN(Spec64(), seed=seed)
    for part in (model.G, model.D):
        for t in [*part.parameters(), *part.buffers()]:
            if t.data.dtype.kind == "f":
                t.data = t.data.astype(dtype)
    return model


EQUIV = dict(steps=10, batch_size=16, seed=0)
IMAGES = np.random.default_rng(0).random((64, 1, 28, 28), dtype=np.float32)


@pytest.fixture(scope="module")
def equivalence_run(tmp_path_factory):
    """One ``mpiexec -n 2`` run of the equivalence scenario (both tests below read it)."""
    folder = tmp_path_factory.mktemp("equivalence")
    check(mpiexec("equivalence", folder))
    return folder


def with_sgd(model, lr=1e-4):
    """The paper's InfoGAN with plain SGD in place of Adam (see the test below)."""
    from tinygan.optim import SGD

    model.opt_d = SGD(model.D.parameters(), lr=lr)
    model.opt_g = SGD(model.G.parameters(), lr=lr)
    return model


def compare_runs(single, ranks, initial):
    """(largest element-wise difference relative to each tensor's largest value, its name;
    the difference of all weights and biases relative to their norm, and relative to how far
    training moved them)."""
    worst, worst_name, sums = 0.0, "", np.zeros(3)
    for name, a in single.state_dict().items():
        a, b = np.asarray(a), ranks[f"model/{name}"]
        if a.dtype.kind != "f":
            np.testing.assert_array_equal(a, b, err_msg=name)
        elif name[0] in "GD":
            rel = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))
            worst, worst_name = max((worst, worst_name), (rel, name))
            if name.endswith(("weight", "bias")):
                moved = a.astype(np.float64) - np.asarray(initial[name])
                sums += [np.sum((a - b) ** 2.0), np.sum(a**2.0), np.sum(moved**2)]
    return worst, worst_name, (sums[0] / sums[1]) ** 0.5, (sums[0] / sums[2]) ** 0.5


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_two_ranks_train_infogan_as_one_process_at_the_same_batch(equivalence_run, dtype):
    """The paper's InfoGAN networks and losses, 10 steps at batch 16: 2 ranks of 8 with
    SyncBatchNorm against one process of 16, each run on its own from the same seed.

    With plain SGD at a small rate: a GAN amplifies rounding from step to step, and under the
    paper's Adam so much that two single-process float32 runs that differ only in OpenBLAS's
    thread count end 10 steps O(1) apart (Adam's first step is lr * sign(g), which flips for
    gradients within rounding of 0). The paper's Adam is checked step by step in the next test.

    In float64 the two runs agree to rounding (measured: 3e-15 of a tensor's largest value
    at worst). In float32 they agree to about 1e-6 of the parameters' norm (measured 2e-8
    with SyncBatchNorm written as Tensor ops, 1.3e-6 with the fused one, whose float64 run
    agrees as closely): a few ulps of difference in one step's sums (other GEMV shapes, the
    batch split in two), amplified over the 10 steps, with a ReLU input near 0 taking the other
    branch now and then; element-wise figures are reported, not asserted."""
    from tinygan.serialization import load
    from tinygan.train import train

    single = with_sgd(paper_infogan(dtype=np.dtype(dtype)))
    history = train(single, IMAGES.astype(dtype), progress=False, **EQUIV)
    ranks = load(equivalence_run / f"sgd_{dtype}.npz")
    worst, worst_name, whole, of_update = compare_runs(
        single, ranks, paper_infogan(dtype=np.dtype(dtype)).state_dict()
    )
    print(f"\n{dtype}, after 10 steps, 2 ranks vs 1 process, all parameters: {whole:.1e} relative "
          f"to their norm, {of_update:.1e} relative to how far training moved them; largest "
          f"element-wise difference {worst:.1e} of a tensor's largest value ({worst_name})")  # fmt: skip
    values = np.array([[h[k] for k in HISTORY_KEYS] for h in history])
    if dtype == "float64":
        assert worst < 1e-10
        np.testing.assert_allclose(ranks["history"], values, rtol=1e-10, atol=1e-12)
    else:
        assert whole < 2e-5 and of_update < 0.1  # a gradient off by 2 moves ~100% of it
        np.testing.assert_allclose(ranks["history"], values, rtol=1e-4, atol=1e-5)
    assert ranks["same_on_both_ranks"]


def test_two_ranks_take_the_paper_infogans_adam_steps_as_one_process(equivalence_run):
    """The paper's InfoGAN with its Adam, 3 steps at batch 16, 2 ranks against one process,
    compared step by step from the same state: after each step the ranks are reset to the
    single-process run's state (parameters, buffers, Adam moments)."""
    result = dict(np.load(equivalence_run / "adam.npz"))
    print(f"\nAdam, 2 ranks vs 1 process, each of 3 steps from the same state: metrics within "
          f"{result['metrics'].max():.1e} (relative); gradients of D and of G within "
          f"{np.median(result['grad']):.1e} in norm (median over steps), "
          f"{result['grad'].max():.1e} at worst")  # fmt: skip
    # The losses: float32 rounding of sums over a batch split in two and GEMMs of other shapes.
    assert result["metrics"].max() < 1e-5
    # The gradients too, except that a ReLU/LeakyReLU input within rounding of 0 may take the
    # other branch, and G's step sees D after an Adam update that amplified rounding.
    assert np.median(result["grad"]) < 1e-4
    assert result["grad"].max() < 1e-2
    assert result["same"].all()


HISTORY_KEYS = ("d_loss", "g_loss", "info_cat", "info_cont", "d_real", "d_fake")
UNEVEN = dict(steps=2, seed=0)


@pytest.mark.parametrize("ranks, batch", [(2, 3), (3, 7)])
def test_ranks_with_uneven_parts_of_the_batch_train_as_one_process(tmp_path, ranks, batch):
    """Parts that differ by a row (2 ranks at batch 3: 2 + 1 rows; 3 ranks at batch 7: 3 + 2 +
    2), the paper's InfoGAN with its batch norm layers, float64, 2 SGD steps: the parameters,
    buffers and both steps' metrics are one process's at the same batch, to rounding.

    Measured: the weights and biases differ by 3.5e-13 of their norm at batch 3 (1e-14 at
    batch 7); element-wise by 7e-11 of a tensor's largest value at worst (a batch-norm bias
    that started at 0 and moved 1e-3 carries 6e-14 of rounding: the statistics of 3 rows
    amplify it); both hold with OpenBLAS's Haswell and SkylakeX kernels. Before the fix, SyncBatchNorm's backward summed the ranks' gradient sums
    with equal weights while each rank's loss is a mean over its own rows (the gradient
    average weights it by its share): the parameters differed by 2.6% (batch 3) and 0.25%
    (batch 7) of their norm, and g_loss at step 1 by 0.03 (D's first step was already off)."""
    from tinygan.serialization import load
    from tinygan.train import train

    check(mpiexec("uneven", tmp_path, n=ranks, UNEVEN_BATCH=str(batch)))
    single = with_sgd(paper_infogan(dtype=np.float64), lr=1e-2)
    history = train(single, IMAGES.astype(np.float64), batch_size=batch, progress=False, **UNEVEN)
    result = load(tmp_path / "uneven.npz")
    initial = paper_infogan(dtype=np.float64).state_dict()
    worst, worst_name, whole, _ = compare_runs(single, result, initial)
    assert whole < 1e-12 and worst < 1e-9, (whole, worst, worst_name)
    values = np.array([[h[k] for k in HISTORY_KEYS] for h in history])
    np.testing.assert_allclose(result["history"], values, rtol=0, atol=1e-12)


def test_resume_on_another_number_of_ranks(tmp_path):
    """Steps 1-4 on 2 ranks, 5-6 in one process (from rank 0's checkpoint), 7-8 on 2 ranks
    again: the same run as 6 steps in one process (SGD: see the equivalence test)."""
    from tinygan.serialization import load
    from tinygan.train import train

    check(mpiexec("resume_part", tmp_path))  # 2 ranks: steps 1-4, checkpoint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]  # written once, no temps
    resumed = small_infogan(seed=5)  # other weights: all must come from the checkpoint
    history = train(resumed, SMALL_DATA, checkpoint=tmp_path / "ckpt.npz", resume=True,
                    progress=False, **SMALL)  # fmt: skip
    whole = small_infogan()
    reference = train(whole, SMALL_DATA, progress=False, **SMALL)
    assert [h["step"] for h in history] == [h["step"] for h in reference]
    for h, r in zip(history, reference):
        assert all(abs(h[k] - r[k]) < 1e-5 for k in HISTORY_KEYS), (h, r)
    assert update_difference(resumed, whole, small_infogan()) < 1e-4
    check(mpiexec("resume_rest", tmp_path))  # and back to 2 ranks, from 1 process's checkpoint
    assert int(load(tmp_path / "ckpt.npz")["train/step"]) == SMALL["steps"] + 2


@pytest.mark.parametrize("case", ["seed", "data", "opt_d.lr"])
def test_ranks_that_disagree_on_the_seed_data_or_learning_rate_are_refused(tmp_path, case):
    """(Each rank trained on its part of its own batches, or took its own steps, silently.)"""
    result = mpiexec("disagree", tmp_path, CASE=case)
    assert result.returncode != 0
    assert "the ranks disagree on the run's settings (every rank must run the same command on " \
           f"the same data): ('{case}" in result.stdout, result.stdout  # fmt: skip
    if case == "seed":
        assert "('seed', 3) on rank 0, ('seed', 4) on rank 1" in result.stdout


def update_difference(a, b, initial) -> float:
    """||a - b|| / ||b - initial|| over the networks' weights and biases: how far two trained
    models differ, relative to how far training moved them."""
    sums = np.zeros(2)
    start = initial.state_dict()
    for name, x in b.state_dict().items():
        if name[0] in "GD" and name.endswith(("weight", "bias")):
            x, y = np.asarray(x, np.float64), np.asarray(a.state_dict()[name], np.float64)
            sums += [np.sum((x - y) ** 2), np.sum((x - np.asarray(start[name])) ** 2)]
    return float((sums[0] / sums[1]) ** 0.5)


def test_a_killed_rank_stops_the_others(tmp_path):
    start = time.monotonic()
    result = mpiexec("killed", tmp_path, timeout=60, TINYGAN_DIST_TIMEOUT="5")
    assert result.returncode != 0
    assert "BAD TERMINATION" in result.stdout or "aborting all ranks" in result.stdout, (
        result.stdout
    )
    assert time.monotonic() - start < 45


def test_an_exception_on_one_rank_aborts_all_with_its_message(tmp_path):
    result = mpiexec("raises", tmp_path, timeout=60, TINYGAN_DIST_TIMEOUT="30")
    assert result.returncode != 0
    assert "rank 1 of 2: stopped (RuntimeError: rank 1 fails at step 3)" in result.stdout, (
        result.stdout
    )


def test_a_rank_that_leaves_early_makes_the_others_time_out_with_a_message(tmp_path):
    start = time.monotonic()
    result = mpiexec("leaves", tmp_path, timeout=60, TINYGAN_DIST_TIMEOUT="3")
    assert result.returncode != 0
    assert "for the other ranks: one of them died, hangs, or left the run early" in result.stdout
    assert time.monotonic() - start < 40


def test_example_under_mpiexec_writes_once_and_resumes_on_one_rank(tmp_path, mnist_dir):
    out = tmp_path / "run"
    flags = ["--split", "test", "--data-dir", mnist_dir, "--out", str(out), "--batch-size", "8",
             "--eval-samples", "200", "--classifier-steps", "5", "--classifier",
             str(tmp_path / "judge.npz")]  # fmt: skip
    result = check(mpiexec("example", tmp_path, EXAMPLE_ARGS=" ".join([*flags, "--steps", "4"])))
    assert result.count("Parzen log-likelihood") == 1, result  # rank 0's stdout only
    assert result.count("4/4") >= 1 and "rank 1" not in result
    files = sorted(p.name for p in out.iterdir())
    assert {"checkpoint.npz", "metrics.json", "history.json", "samples.png"} <= set(files)
    assert not [f for f in files if f.startswith(".")], files  # no temporary file left behind
    subprocess.run([sys.executable, str(ROOT / "examples" / "fgan_mnist.py"), *flags, "--steps",
                    "6", "--resume", "--no-progress"], check=True, cwd=ROOT,
                   env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, capture_output=True)  # fmt: skip
    import json

    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5, 6]
    # --overwrite under mpiexec: rank 0 alone removes the old run (both ranks did, and one failed)
    check(mpiexec("example", tmp_path, EXAMPLE_ARGS=" ".join([*flags, "--steps", "2",
                                                              "--overwrite"])))  # fmt: skip
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == [1, 2]


def example(folder: Path, *flags: str, n: int = 2, **env: str):
    """``infogan_mnist.py`` on ``n`` ranks (the scoring classifier in ``folder``, never used)."""
    args = ["--split", "test", "--out", str(folder / "run"), "--steps", "2", "--classifier",
            str(folder / "judge.npz"), *flags]  # fmt: skip
    return mpiexec("infogan_example", folder, n=n, EXAMPLE_ARGS=" ".join(args), **env)


def test_a_batch_the_ranks_cannot_share_is_one_usage_error_line(tmp_path, mnist_dir):
    """(Each rank printed a traceback of 53 lines, interleaved, and the job exited with 1.)"""
    result = example(tmp_path, "--data-dir", mnist_dir, "--batch-size", "1")
    assert result.returncode == 2, result.stdout
    assert result.stdout == (
        "error: --batch-size: a batch of 1 cannot be shared by 2 ranks: each needs at least one "
        "row; use a batch of at least 2 or fewer ranks\n"
    )
    assert not (tmp_path / "run").exists()  # refused before the folder was made


@pytest.mark.parametrize("value", ["garbage", "nan"])
def test_a_bad_timeout_setting_is_one_usage_error_line(tmp_path, value):
    """(Every rank printed a traceback at import, and the job exited with 1.)"""
    result = example(tmp_path, TINYGAN_DIST_TIMEOUT=value)
    assert result.returncode == 2, result.stdout
    assert result.stdout == (
        f"error: TINYGAN_DIST_TIMEOUT must be a positive number of seconds; got '{value}'\n"
    )


def test_errors_that_differ_between_ranks_are_each_printed_once_naming_the_ranks(tmp_path):
    result = mpiexec("errors", tmp_path, n=3, CASE="differ")
    assert result.returncode == 1, result.stdout
    assert sorted(result.stdout.splitlines()) == [
        "error: no GPU on rank 0 (rank 0)", "error: no GPU on rank 1 or 2 (ranks 1, 2)"]  # fmt: skip


def test_an_error_on_one_rank_only_is_printed_naming_it_and_stops_the_job(tmp_path):
    # the deadline is far beyond FAIL_GRACE_S: "waited" (the deadline's message) must not appear
    result = mpiexec("errors", tmp_path, CASE="one", TINYGAN_DIST_TIMEOUT="300", timeout=120)
    assert result.returncode == 1, result.stdout
    line = "error: the disk is full (rank 1 of 2; the other ranks did not fail: aborting them)"
    assert result.stdout.count(line) == 1 and "waited" not in result.stdout, result.stdout


@pytest.mark.gpu
def test_two_gpus_sync_batchnorm_gradients_and_training(tmp_path):
    from tinygan import backend

    if backend.cupy().cuda.runtime.getDeviceCount() < 2:  # (the stand-in has one)
        pytest.skip("needs 2 GPUs (NCCL takes one rank per GPU)")
    out = check(mpiexec("gpus", tmp_path))
    assert out.count("gpus ok") == 2, out


# ---- shared by the tests and the ranks -----------------------------------------------------------

SMALL = dict(steps=6, batch_size=12, seed=3)
SMALL_DATA = np.random.default_rng(1).standard_normal((60, 2)).astype(np.float32)


def small_infogan(seed=0, device="cpu"):
    """A small MLP InfoGAN on 2-D data, with SGD (as ``with_sgd``)."""
    from tinygan.models import InfoGAN, LatentSpec, MLPDiscriminator, MLPGenerator
    from tinygan.optim import SGD

    spec = LatentSpec(categorical=(3,), continuous=1, noise=2)
    rng = np.random.default_rng(seed)
    model = InfoGAN(spec, generator=MLPGenerator(spec.dim, 2, hidden=16, rng=rng),
                    discriminator=MLPDiscriminator(2, spec.q_dim, hidden=16, rng=rng), seed=seed,
                    device=device)  # fmt: skip
    model.opt_d, model.opt_g = SGD(model.D.parameters(), 1e-3), SGD(model.G.parameters(), 1e-3)
    return model


# ---- the scenarios, run in each rank ------------------------------------------------------------


def scenario_collectives(folder: Path) -> None:
    import tinygan as tg
    from tinygan import distributed as dist
    from tinygan import nn
    from tinygan.nn import functional as F
    from tinygan.optim import SGD

    comm = dist.init()
    r, n = comm.rank, comm.size
    assert (n, dist.size(), dist.rank(), dist.is_main()) == (2, 2, r, r == 0)
    # all-reduce small and large (the two paths), in place; broadcast; allgather
    for size in (5, 300_000):
        a = np.full(size, r + 1.0, np.float32)
        assert comm.allreduce_(a) is a and np.all(a == 3.0)
    b = np.arange(10.0) * (r + 1)
    comm.bcast_(b, root=1)
    np.testing.assert_array_equal(b, np.arange(10.0) * 2)
    assert comm.allgather(("x", r)) == [("x", 0), ("x", 1)]
    # the differentiable all-reduce: forward sums, backward sums the gradients
    x = tg.tensor(np.full(3, float(r + 1)), requires_grad=True)
    y = dist.all_reduce_sum(x)
    np.testing.assert_array_equal(y.data, [3.0, 3.0, 3.0])
    (y * (r + 1.0)).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0, 3.0])
    # SyncBatchNorm on this rank's rows equals batch norm on the whole batch, for 2-4 dims,
    # uneven parts, forward, input and weight gradients, running statistics
    rng = np.random.default_rng(0)
    for shape, rows in (((7, 5), [3, 4]), ((6, 4, 3), [2, 4]), ((5, 3, 4, 2), [3, 2])):
        xs = rng.standard_normal(shape) * 3 + 2
        gs = rng.standard_normal(shape)
        w, bias = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
        mine = slice(sum(rows[:r]), sum(rows[: r + 1]))
        bn = dist.SyncBatchNorm(shape[1], momentum=0.3, dtype=np.float64)
        bn.weight.data[...], bn.bias.data[...] = w, bias
        xt = tg.tensor(xs[mine], requires_grad=True)
        y = bn(xt)
        y.backward(gs[mine])
        full = tg.tensor(xs, requires_grad=True)
        wt, bt = tg.tensor(w, requires_grad=True), tg.tensor(bias, requires_grad=True)
        rm, rv = np.zeros(shape[1]), np.ones(shape[1])
        ref = F.batch_norm(full, rm, rv, wt, bt, True, 0.3, 1e-5)
        ref.backward(gs)
        np.testing.assert_allclose(y.data, ref.data[mine], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(xt.grad, full.grad[mine], rtol=1e-9, atol=1e-12)
        gw = comm.allreduce_(bn.weight.grad.copy())
        np.testing.assert_allclose(gw, wt.grad, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(bn.running_mean.data, rm, rtol=1e-12)
        np.testing.assert_allclose(bn.running_var.data, rv, rtol=1e-12)
    # second derivatives through the all-reduces: a Hessian-vector product of the total loss
    xs, v = rng.standard_normal((7, 3)), rng.standard_normal((7, 3))
    mine = slice(3 * r, 3 + 4 * r)
    hvp = []
    for x, layer in ((tg.tensor(xs[mine], requires_grad=True), dist.SyncBatchNorm(3, dtype=np.float64)),
                  (tg.tensor(xs, requires_grad=True), nn.BatchNorm1d(3, dtype=np.float64))):  # fmt: skip
        (gx,) = tg.grad((layer(x) ** 3).sum(), [x], create_graph=True)
        part = v[mine] if len(x) < 7 else v
        hvp.append(tg.grad((gx * tg.tensor(part)).sum(), [x])[0].data)
    np.testing.assert_allclose(hvp[0], hvp[1][mine], rtol=1e-9, atol=1e-12)
    # in eval mode it communicates nothing (ranks may evaluate different things)
    calls = comm.calls
    bn.eval()
    bn(tg.tensor(rng.standard_normal((r + 2, 3, 4, 2))))
    assert comm.calls == calls
    # the gradient hook: weighted sum over ranks, small grads packed, large ones alone
    layer = nn.Linear(300, 400 + 0)  # weight 480 KB: its own messages with 64 KB buckets
    opt = SGD(layer.parameters(), lr=1.0)
    sync = dist.synchronize(opt, bucket_bytes=64 << 10)
    assert dist.synchronize(opt) is sync and len(opt.step_pre_hooks) == 1
    sync.weight = [0.25, 0.75][r]
    before = [p.data.copy() for p in layer.parameters()]
    for p in layer.parameters():
        p.grad = np.full(p.shape, float(r + 1), np.float32)
    opt.step()
    for p, old in zip(layer.parameters(), before):
        np.testing.assert_allclose(old - p.data, 0.25 * 1 + 0.75 * 2, rtol=1e-6)
    # a parameter with a gradient on one rank only is an error on every rank
    layer.weight.grad, layer.bias.grad = np.zeros((400, 300), np.float32), None
    if r == 1:
        layer.bias.grad = np.zeros(400, np.float32)
    try:
        opt.step()
    except RuntimeError as e:
        assert "gradient on only some ranks" in str(e), e
    else:
        raise AssertionError("a gradient on one rank only was accepted")
    # the sampler: the ranks' rows and draws make up the single-process batch and draws
    index = np.arange(100, 112)
    for chunks in (1, 3):
        run = dist.DataParallel(_Chunked(chunks), 12, comm=comm)
        idx, g = run.shard(index, np.random.default_rng(7))
        draws = (g.uniform(-1, 1, (len(idx), 2)), g.integers(0, 10, len(idx) // chunks),
                 g.standard_normal(size=(len(idx), 3)), g.random(4))  # fmt: skip
        everyone = comm.allgather((idx, draws))
        full = np.random.default_rng(7)
        whole = (full.uniform(-1, 1, (12, 2)), full.integers(0, 10, 12 // chunks),
                 full.standard_normal(size=(12, 3)), full.random(4))  # fmt: skip
        joined = np.concatenate([e[0] for e in everyone])
        assert sorted(joined) == list(index), joined
        for k in (0, 2):  # per-example draws: each rank's rows of the whole draw
            by_pos = {int(i): row for e in everyone for i, row in zip(e[0], e[1][k])}
            np.testing.assert_array_equal(np.array([by_pos[i] for i in index]), whole[k])
        np.testing.assert_array_equal(draws[3], whole[3])  # not per example: the same draw
    print(f"rank {r}: collectives ok", flush=True)


class _Chunked:
    def __init__(self, chunks):
        self.n_critic = chunks


def scenario_equivalence(folder: Path) -> None:
    import hashlib

    from tinygan import distributed as dist
    from tinygan.serialization import save
    from tinygan.train import batch_indices, step_rng, train

    comm = dist.init()

    def identical_on_all_ranks(model) -> bool:
        state = b"".join(np.asarray(v).tobytes() for v in model.state_dict().values())
        return len(set(comm.allgather(hashlib.sha256(state).hexdigest()))) == 1

    # SGD, the runs on their own
    for dtype in ("float64", "float32"):
        model = with_sgd(paper_infogan(dtype=np.dtype(dtype)))
        history = train(model, IMAGES.astype(dtype), progress=False, **EQUIV)
        same = identical_on_all_ranks(model)
        if comm.is_main:
            state = {f"model/{k}": v for k, v in model.state_dict().items()}
            state["history"] = np.array([[h[k] for k in HISTORY_KEYS] for h in history])
            save({**state, "same_on_both_ranks": np.array(same)}, folder / f"sgd_{dtype}.npz")

    # Adam, step by step: rank 0 also runs one process at the whole batch (ref)
    model = paper_infogan()
    dist.prepare(model)  # (train does it too: idempotent) so that the recorders come after
    ref = paper_infogan() if comm.is_main else None
    grads: dict[tuple[str, bool], list] = {}

    def recorder(key):  # runs after the averaging hook: the gradients the optimizer uses
        return lambda opt: grads.__setitem__(key, [p.grad.copy() for p in opt.params])

    for name, m in (("dp", model), ("ref", ref)):
        if m is not None:
            m.opt_d.step_pre_hooks.append(recorder((name, True)))
            m.opt_g.step_pre_hooks.append(recorder((name, False)))
    rows: list[dict] = []

    def on_step(step, metrics):
        same = identical_on_all_ranks(model)
        if comm.is_main:
            index = batch_indices(len(IMAGES), EQUIV["batch_size"], EQUIV["seed"], step - 1)
            expected = ref.train_step(IMAGES[index], step_rng(EQUIV["seed"], step - 1))
            grad = 0.0
            for is_d in (True, False):
                a, b = (np.concatenate([g.ravel() for g in grads[k, is_d]]) for k in ("dp", "ref"))
                grad = max(grad, float(np.linalg.norm(a - b) / np.linalg.norm(b)))
            metric = max(abs(metrics[k] - expected[k]) / max(abs(expected[k]), 1.0)
                         for k in expected)  # fmt: skip
            rows.append({"grad": grad, "metrics": metric, "same": same})
            model.load_state_dict(ref.state_dict())  # the next step starts where one process is
        for part in (model.G, model.D):
            dist.broadcast_module(part, 0, comm)
        for opt in (model.opt_g, model.opt_d):
            dist.broadcast_optimizer(opt, 0, comm)

    train(model, IMAGES, progress=False, on_step=on_step, **{**EQUIV, "steps": 3})
    if comm.is_main:
        np.savez(folder / "adam.npz", **{k: np.array([r[k] for r in rows])
                                         for k in ("grad", "metrics", "same")})  # fmt: skip


def scenario_uneven(folder: Path) -> None:
    import hashlib

    from tinygan import distributed as dist
    from tinygan.serialization import save
    from tinygan.train import train

    model = with_sgd(paper_infogan(dtype=np.float64), lr=1e-2)
    history = train(model, IMAGES.astype(np.float64), batch_size=int(os.environ["UNEVEN_BATCH"]),
                    progress=False, **UNEVEN)  # fmt: skip
    state = b"".join(np.asarray(v).tobytes() for v in model.state_dict().values())
    digest = hashlib.sha256(state).hexdigest()
    assert len(set(dist.world().allgather(digest))) == 1  # every rank holds the same model
    if dist.is_main():
        state = {f"model/{k}": v for k, v in model.state_dict().items()}
        state["history"] = np.array([[h[k] for k in HISTORY_KEYS] for h in history])
        save(state, folder / "uneven.npz")


def scenario_resume_part(folder: Path) -> None:
    from tinygan.train import train

    train(small_infogan(), SMALL_DATA, checkpoint=folder / "ckpt.npz", progress=False,
          **{**SMALL, "steps": 4})  # fmt: skip


def scenario_resume_rest(folder: Path) -> None:
    from tinygan.train import train

    history = train(small_infogan(seed=9), SMALL_DATA, checkpoint=folder / "ckpt.npz",
                    resume=True, progress=False, **{**SMALL, "steps": SMALL["steps"] + 2})  # fmt: skip
    assert [h["step"] for h in history] == list(range(1, SMALL["steps"] + 3))


def scenario_disagree(folder: Path) -> None:
    from tinygan import distributed as dist
    from tinygan.train import train

    r, case = dist.init().rank, os.environ["CASE"]
    data = SMALL_DATA + (r if case == "data" else 0)
    model = small_infogan()
    model.opt_d.lr *= 1 + r * (case == "opt_d.lr")
    train(model, data, progress=False,
          **{**SMALL, "seed": SMALL["seed"] + (r if case == "seed" else 0)})  # fmt: skip


def _train_until_step_3(action) -> None:
    from tinygan import distributed as dist
    from tinygan.train import train

    rank = dist.init().rank

    def on_step(step, metrics):
        if rank == 1 and step == 3:
            action()

    train(small_infogan(), SMALL_DATA, progress=False, on_step=on_step,
          **{**SMALL, "steps": 10_000})  # fmt: skip


def scenario_killed(folder: Path) -> None:
    import signal

    _train_until_step_3(lambda: os.kill(os.getpid(), signal.SIGKILL))


def scenario_raises(folder: Path) -> None:
    def fail():
        raise RuntimeError("rank 1 fails at step 3")

    _train_until_step_3(fail)


def scenario_leaves(folder: Path) -> None:
    _train_until_step_3(lambda: sys.exit(0))  # a clean exit, in the middle of the run


def scenario_gpus(folder: Path) -> None:
    import hashlib

    import cupy

    import tinygan as tg
    from tinygan import distributed as dist
    from tinygan import nn
    from tinygan.optim import SGD
    from tinygan.train import train

    comm = dist.init()
    r = comm.rank
    assert cupy.cuda.Device().id == r  # pinned: one GPU per rank
    rng = np.random.default_rng(0)
    xs, gs = rng.standard_normal((10, 3, 4, 4)), rng.standard_normal((10, 3, 4, 4))
    mine = slice(4 * r, 4 + 6 * r)  # 4 rows and 6 rows
    bn = dist.SyncBatchNorm(3, dtype=np.float64).to("cuda")
    x = tg.tensor(xs[mine]).to("cuda").requires_grad_()
    y = bn(x)
    y.backward(tg.tensor(gs[mine]).to("cuda"))
    full = tg.tensor(xs, requires_grad=True)
    ref = nn.BatchNorm2d(3, dtype=np.float64)(full)
    ref.backward(gs)
    np.testing.assert_allclose(cupy.asnumpy(y.data), ref.data[mine], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cupy.asnumpy(x.grad), full.grad[mine], rtol=1e-9, atol=1e-12)
    p = nn.Parameter(cupy.zeros(5, cupy.float32))
    p.grad = cupy.full(5, r + 1.0, cupy.float32)
    opt = SGD([p], lr=1.0)
    dist.synchronize(opt).weight = 0.5
    opt.step()
    np.testing.assert_allclose(cupy.asnumpy(p.data), -1.5)
    model = small_infogan(device="cuda")
    train(model, SMALL_DATA, progress=False, **{**SMALL, "steps": 3})
    state = b"".join(tg.backend.to_device(v, "cpu").tobytes() for v in model.state_dict().values()
                     if hasattr(v, "shape"))  # fmt: skip
    assert len(set(comm.allgather(hashlib.sha256(state).hexdigest()))) == 1
    print(f"rank {r}: gpus ok", flush=True)


def scenario_example(folder: Path) -> None:
    from tinygan import cli

    sys.path.insert(0, str(ROOT / "examples"))
    import fgan_mnist

    sys.exit(cli.run(fgan_mnist.main, os.environ["EXAMPLE_ARGS"].split()))


def scenario_infogan_example(folder: Path) -> None:
    from tinygan import cli

    sys.path.insert(0, str(ROOT / "examples"))
    import infogan_mnist

    sys.exit(cli.run(infogan_mnist.main, os.environ["EXAMPLE_ARGS"].split()))


def scenario_errors(folder: Path) -> None:
    from tinygan import cli
    from tinygan import distributed as dist

    def main(argv):
        r = dist.rank()
        if os.environ["CASE"] == "differ":
            raise cli.CommandError("no GPU on rank 0" if r == 0 else "no GPU on rank 1 or 2")
        if r == 1:
            raise cli.CommandError("the disk is full")
        dist.world().barrier("a collective that rank 1 never reaches")
        return 0

    sys.exit(cli.run(main, []))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    globals()[f"scenario_{sys.argv[1]}"](Path(sys.argv[2]))
