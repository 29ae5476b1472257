"""tinygan.distributed in one process: launcher detection, the single-process world, the
all-reduce Function and SyncBatchNorm as ops (against the fused batch norm, gradcheck), the
conversion, the sharded sampler and generator, gradient buckets. Across processes:
test_distributed_mpi.py."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygan as tg
from tinygan import distributed as dist
from tinygan import nn
from tinygan.nn import functional as F
from tinygan.optim import SGD, Adam


def test_a_plain_process_is_rank_0_of_1_without_importing_mpi4py():
    code = (
        "import sys, tinygan.train, tinygan.distributed as d; w = d.init(); "
        "print(type(w).__name__, d.rank(), d.size(), d.is_main(), 'mpi4py' in sys.modules)"
    )
    env = {k: v for k, v in __import__("os").environ.items() if "PMI" not in k and "OMPI" not in k}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split()  # fmt: skip
    assert out == ["SingleProcess", "0", "1", "True", "False"]


@pytest.mark.parametrize(
    ("env", "launched"),
    [({}, False), ({"PMI_SIZE": "2"}, True), ({"PMI_SIZE": "1"}, False),
     ({"OMPI_COMM_WORLD_SIZE": "4"}, True), ({"PMIX_RANK": "0"}, True),
     ({"SLURM_NTASKS": "4"}, False)],
)  # fmt: skip
def test_launcher_detection(monkeypatch, env, launched):
    for name in (*dist.comm.LAUNCHER_VARIABLES, "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert dist.launched_by_mpi() is launched


def test_the_single_process_world_changes_nothing():
    comm = dist.SingleProcess()
    a = np.arange(3.0)
    assert comm.allreduce_(a) is a and comm.bcast_(a) is a and comm.allgather(7) == [7]
    with pytest.raises(ValueError, match="root must be a rank from 0 to 0; got 1"):
        comm.bcast_(a, root=1)
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    opt = SGD(model.parameters(), lr=0.1)
    assert dist.prepare(_Holder(model, opt), comm=comm) == []  # nothing converted or hooked
    assert type(model[1]) is nn.BatchNorm1d and opt.step_pre_hooks == []
    run = dist.DataParallel(_Holder(model, opt), 8, comm=comm)
    index, rng = np.arange(8), np.random.default_rng(0)
    assert run.shard(index, rng) == (index, rng)
    assert run.average({"a": 1.5}) == {"a": 1.5} and run.any(True) and not run.any(False)


class _Holder:
    parts = ("net", "opt")

    def __init__(self, net, opt):
        self.net, self.opt = net, opt


def test_timeout_must_be_positive(monkeypatch):
    for value in ("soon", "0", "-5", "nan", ""):
        monkeypatch.setenv("TINYGAN_DIST_TIMEOUT", value)
        with pytest.raises(ValueError, match=f"TINYGAN_DIST_TIMEOUT must be a positive number "
                                             f"of seconds; got '{value}'"):  # fmt: skip
            dist.comm._timeout(None)
    assert dist.comm._timeout(2.5) == 2.5
    monkeypatch.delenv("TINYGAN_DIST_TIMEOUT")
    assert dist.comm._timeout(None) == dist.comm.DEFAULT_TIMEOUT_S
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds; got 0"):
        dist.comm._timeout(0)


def test_an_error_is_printed_once_by_the_launchers_rank_0_when_no_world_was_made(
    monkeypatch, capsys
):
    monkeypatch.setattr(dist.comm, "_world", None)
    for name in (*dist.comm.LAUNCHER_VARIABLES, *dist.comm.RANK_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    printed = []
    for rank in ("0", "1"):
        monkeypatch.setenv("PMI_SIZE", "2")
        monkeypatch.setenv("PMI_RANK", rank)
        dist.report_error("error: bad", 2)
        printed.append(capsys.readouterr().err)
    assert printed == ["error: bad\n", ""]


# ---- the ops ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 3), (5, 4, 3), (4, 3, 5, 2)])
def test_sync_batch_norm_ops_equal_the_fused_batch_norm(shape):
    rng = np.random.default_rng(0)
    x = tg.tensor(rng.standard_normal(shape) * 3 + 1, requires_grad=True)
    w, b = (tg.tensor(rng.standard_normal(shape[1]), requires_grad=True) for _ in range(2))
    running = [np.zeros(shape[1]), np.ones(shape[1])]
    fused_running = [r.copy() for r in running]
    y = dist.sync_batch_norm(x, tg.tensor(running[0]), tg.tensor(running[1]), w, b, 0.1, 1e-5,
                             dist.SingleProcess())  # fmt: skip
    ref = F.batch_norm(x, *fused_running, w, b, True, 0.1, 1e-5)
    g = rng.standard_normal(shape)
    grads = []
    for out in (y, ref):
        x.grad = w.grad = b.grad = None
        out.backward(g)
        grads.append([t.grad for t in (x, w, b)])
    np.testing.assert_allclose(y.data, ref.data, rtol=1e-12, atol=1e-12)
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    for ours, theirs in zip(running, fused_running):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_sync_batch_norm_passes_gradcheck():
    rng = np.random.default_rng(1)
    x = tg.tensor(rng.standard_normal((3, 2, 2, 2)), requires_grad=True)
    w, b = (tg.tensor(rng.standard_normal(2), requires_grad=True) for _ in range(2))
    comm = dist.SingleProcess()
    assert tg.gradcheck(lambda x, w, b: dist.sync_batch_norm(x, None, None, w, b, 0.1, 1e-5, comm),
                        [x, w, b])  # fmt: skip


def test_sync_batch_norm_has_the_fused_batch_norms_second_derivatives():
    rng = np.random.default_rng(4)
    x = tg.tensor(rng.standard_normal((5, 3, 2, 2)), requires_grad=True)
    w, b = (tg.tensor(rng.standard_normal(3), requires_grad=True) for _ in range(2))
    v = tg.tensor(rng.standard_normal((5, 3, 2, 2)))
    comm, results = dist.SingleProcess(), []
    for bn in (lambda: dist.sync_batch_norm(x, None, None, w, b, 0.1, 1e-5, comm),
               lambda: F.batch_norm(x, None, None, w, b, True, 0.1, 1e-5)):  # fmt: skip
        y = bn()
        gx, gw = tg.grad((y * y * y).sum(), [x, w], create_graph=True)
        results.append((gx.data, *(h.data for h in tg.grad((gx * v).sum() + gw.sum(), [x, w]))))
    for ours, fused in zip(*results):
        np.testing.assert_allclose(ours, fused, rtol=1e-10, atol=1e-12)


def test_all_reduce_sum_is_the_identity_in_one_process():
    x = tg.tensor(np.arange(3.0), requires_grad=True)
    y = dist.all_reduce_sum(x, dist.SingleProcess())
    (y * y).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * np.arange(3.0))
    assert not np.shares_memory(y.data, x.data)


def test_sync_batch_norm_needs_two_values_per_channel():
    with pytest.raises(ValueError, match="more than one value per channel over all ranks; got 1"):
        dist.sync_batch_norm(tg.tensor(np.ones((1, 3))), None, None, None, None, 0.1, 1e-5,
                             dist.SingleProcess())  # fmt: skip


class _OnDevice(np.ndarray):
    """An array as a GPU holds it while NCCL all-reduces may still be writing it: reading it on
    the host (bool, int, float, item) waits for them, which wait for every rank, with no
    deadline (a dead partner hangs it); here such a read before ``synchronize`` fails."""

    comm: _Mirror | None = None

    def _read(self):
        if _OnDevice.comm is not None and _OnDevice.comm.pending:
            raise AssertionError("a device value read on the host before synchronize()")

    def __bool__(self):
        self._read()
        return super().__bool__()

    def __float__(self):
        self._read()
        return super().__float__()

    def __int__(self):
        self._read()
        return super().__int__()

    def item(self, *args):
        self._read()
        return super().item(*args)


class _Mirror(dist.Communicator):
    """A fake rank 0 of 2 whose partner holds the same rows and parameters. Its collectives on
    arrays run as NCCL's do: ``allreduce_`` returns before the data moved (``pending`` until
    ``synchronize``, which waits with the deadline), its result an ``_OnDevice`` array; those
    on host numbers (``allreduce_values``, ``allgather``: MPI, with the deadline) do not."""

    rank, size = 0, 2

    def __init__(self):
        super().__init__()
        self.pending = False
        _OnDevice.comm = self

    def allreduce_(self, a, what="allreduce"):
        a *= 2
        self.pending = True
        return a.view(_OnDevice)

    def allreduce_values(self, values, what="allreduce"):
        return np.array(values, np.float64) * 2

    def bcast_(self, a, root=0, what="broadcast"):
        return a

    def allgather(self, obj, what="allgather"):
        return [obj, obj]

    def synchronize(self, what="collectives"):
        self.pending = False


def test_sync_batchnorm_reads_no_device_value_before_the_collectives_are_waited_for():
    """Its checks and its momentum use host numbers only: the row count comes from a host
    all-reduce, and a cumulative momentum (``momentum=None``) reads the batch count only after
    waiting (with the deadline) for the all-reduces of the layers before it. (The row count
    came back in the sums' all-reduce, so ``m <= 1`` read a GPU value: a dead peer hung it.)"""
    comm = _Mirror()
    rng = np.random.default_rng(6)
    xs, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    results = []
    for make in (lambda **kw: dist.SyncBatchNorm(3, dtype=np.float64, comm=comm, **kw),
                 lambda **kw: nn.BatchNorm1d(3, dtype=np.float64, **kw)):  # fmt: skip
        model = nn.Sequential(make(), make(momentum=None))
        model[1].num_batches_tracked.data = model[1].num_batches_tracked.data.view(_OnDevice)
        x = tg.tensor(xs, requires_grad=True)
        y = model(x)
        y.backward(g)
        comm.synchronize()
        results.append((y.data, x.grad, model[1].running_mean.data))
    for ours, one_process in zip(*results):  # the partner's rows are this rank's
        np.testing.assert_allclose(ours, one_process, rtol=1e-12, atol=1e-12)


def test_sync_batchnorm_refuses_second_derivatives_across_uneven_shares():
    comm = _Mirror()
    x = tg.tensor(np.random.default_rng(7).standard_normal((3, 2)), requires_grad=True)
    bn = dist.SyncBatchNorm(2, dtype=np.float64, comm=comm)
    bn.share = 0.5  # an even share: supported
    tg.grad((bn(x) ** 3).sum(), [x], create_graph=True)
    bn.share = 2 / 3
    tg.grad((bn(x) ** 3).sum(), [x])  # first order: supported
    with pytest.raises(NotImplementedError, match=r"this rank's: 0.6667 of 2 ranks.*evenly"):
        tg.grad((bn(x) ** 3).sum(), [x], create_graph=True)


def test_prepare_sets_each_ranks_share_of_the_loss():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    holder = _Holder(model, SGD(model.parameters(), lr=0.1))
    (sync,) = dist.prepare(holder, comm=_Mirror(), share=0.75)
    assert sync.weight == 0.75 and holder.net[1].share == 0.75
    (sync,) = dist.prepare(holder, comm=_Mirror())  # idempotent; the default: an even share
    assert sync.weight == 0.5 and holder.net[1].share == 0.5
    for bad in (0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=f"share must be in \\(0, 1\\]; got {bad}"):
            dist.prepare(holder, comm=_Mirror(), share=bad)


def test_convert_sync_batchnorm_keeps_parameters_buffers_and_order():
    shared = nn.BatchNorm2d(4)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), shared, nn.ReLU(), nn.Sequential(shared),
                          nn.BatchNorm1d(5, affine=False, momentum=None))  # fmt: skip
    model.eval()
    params, keys = [id(p) for p in model.parameters()], list(model.state_dict())
    buffers = [id(b) for b in model.buffers()]
    assert dist.convert_sync_batchnorm(model) is model
    assert [type(m).__name__ for m in model] == [
        "Conv2d", "SyncBatchNorm", "ReLU", "Sequential", "SyncBatchNorm"]  # fmt: skip
    assert model[3][0] is model[1]  # shared stays shared
    assert [id(p) for p in model.parameters()] == params and list(model.state_dict()) == keys
    assert [id(b) for b in model.buffers()] == buffers
    assert not model[1].training and model[4].momentum is None and not model[4].affine
    bn = nn.BatchNorm1d(3)
    assert isinstance(dist.convert_sync_batchnorm(bn), dist.SyncBatchNorm)
    with pytest.raises(TypeError, match="expects a Module; got int"):
        dist.convert_sync_batchnorm(3)


def test_sync_batchnorm_in_one_process_is_batchnorm():
    rng = np.random.default_rng(2)
    a, b = nn.BatchNorm2d(3), dist.SyncBatchNorm(3)
    x = tg.tensor(rng.standard_normal((4, 3, 2, 2)).astype(np.float32))
    np.testing.assert_array_equal(a(x).data, b(x).data)
    np.testing.assert_array_equal(a.running_var.data, b.running_var.data)
    with pytest.raises(ValueError, match="expected 2D or 3D or 4D input"):
        b(tg.tensor(np.ones(3, np.float32)))


# ---- sampler, generator, buckets ----------------------------------------------------------------


@given(st.integers(1, 40), st.integers(1, 6), st.integers(1, 3))
def test_shards_cover_the_batch_once(per_chunk, size, chunks):
    batch = per_chunk * chunks
    if per_chunk < size:
        with pytest.raises(ValueError, match="cannot be shared by"):
            dist.shard(batch, 0, size, chunks)
        return
    parts = [dist.shard(batch, r, size, chunks) for r in range(size)]
    assert sorted(np.concatenate(parts)) == list(range(batch))
    assert max(map(len, parts)) - min(map(len, parts)) <= chunks
    for p in parts:  # each chunk's rows are contiguous and come in chunk order
        assert len(p) % chunks == 0
        for k, piece in enumerate(np.split(p, chunks)):
            assert np.all(np.diff(piece) == 1) and np.all(piece // per_chunk == k)


def test_sharded_generators_together_draw_what_one_generator_draws():
    whole = np.random.default_rng(3)
    expected = (whole.uniform(-1, 1, (10, 2)), whole.integers(0, 5, 10), whole.random(7),
                whole.standard_normal(size=(10,)))  # fmt: skip
    got = []
    for rank in range(3):
        pos = dist.shard(10, rank, 3)
        g = dist.ShardedGenerator(np.random.default_rng(3), {len(pos): (10, pos)})
        got.append((pos, g.uniform(-1, 1, (len(pos), 2)), g.integers(0, 5, len(pos)),
                    g.random(7), g.standard_normal(size=(len(pos),))))  # fmt: skip
    for k in (0, 1, 3):
        joined = np.empty_like(expected[k])
        for pos, *draws in got:
            joined[pos] = draws[k]
        np.testing.assert_array_equal(joined, expected[k])
    for _, *draws in got:
        np.testing.assert_array_equal(draws[2], expected[2])  # not per example: whole


def test_every_generator_method_with_a_size_is_sharded():
    """(Methods missing from the table, e.g. ``dirichlet`` or ``multinomial``, were drawn as
    asked: each rank's rows came from the start of the batch's draws.)"""
    import inspect
    import re

    found, outs = {}, {}
    for name, method in inspect.getmembers(np.random.Generator):
        head = (method.__doc__ or "").strip().split(")")[0]  # "name(a, b=1, size=None, ..."
        args = [a.split("=")[0].strip() for a in head.partition("(")[2].split(",")]
        if not name.startswith("_") and re.match(rf"{name}\(", head.strip()) and "size" in args:
            found[name] = args.index("size")
            if "out" in args:
                outs[name] = args.index("out")
    assert found == dist.data_parallel._SIZE_ARGUMENT
    assert outs == dist.data_parallel._OUT_ARGUMENT
    whole = np.random.default_rng(8)
    expected = (whole.dirichlet([1.0, 2.0], 9), whole.multinomial(5, [0.5, 0.5], size=9),
                whole.multivariate_normal([0.0, 1.0], np.eye(2), 9), whole.weibull(2.0, (9, 2)),
                whole.random((9, 2)), whole.standard_normal((9,), np.float32))  # fmt: skip
    for rank in range(2):
        pos = dist.shard(9, rank, 2)
        g = dist.ShardedGenerator(np.random.default_rng(8), {len(pos): (9, pos)})
        n = len(pos)
        buffers = np.empty((n, 2)), np.empty(n, np.float32)
        got = (g.dirichlet([1.0, 2.0], n), g.multinomial(5, [0.5, 0.5], size=n),
               g.multivariate_normal([0.0, 1.0], np.eye(2), n), g.weibull(2.0, (n, 2)),
               g.random(out=buffers[0]), g.standard_normal(None, np.float32, buffers[1]))  # fmt: skip
        assert got[4] is buffers[0] and got[5] is buffers[1]
        for ours, one_process in zip(got, expected):
            np.testing.assert_array_equal(ours, one_process[pos])
        with pytest.raises(ValueError, match=r"size \(\d, 1\) does not match out.shape"):
            g.random((n, 1), out=np.zeros((n, 5)))  # broadcast into the columns before


class _TwoRanks(dist.Communicator):
    """A fake rank 0 of 2 whose partner holds ``other * grad``: records the messages."""

    rank, size = 0, 2

    def __init__(self, other: float):
        super().__init__()
        self.other, self.messages = other, []

    def allreduce_(self, a, what="allreduce"):
        self.messages.append((a.nbytes, what))
        if "check" in what:  # the count of ranks with a gradient
            a *= 2
        else:  # the partner's contribution: its weight 1 - 0.25, times `other` times the grad
            a += a / 0.25 * 0.75 * self.other
        return a


def test_gradient_sync_packs_small_gradients_and_sends_large_ones_alone():
    comm = _TwoRanks(other=3.0)
    small = [nn.Parameter(np.ones(n, np.float32)) for n in (100, 200, 300)]
    large = nn.Parameter(np.ones(5000, np.float32))  # 20 KB: more than half of a 16 KB bucket
    params = [*small[:2], large, small[2]]
    opt = SGD(params, lr=1.0)
    sync = dist.synchronize(opt, comm, bucket_bytes=16 << 10)
    assert dist.synchronize(opt, comm) is sync
    sync.weight = 0.25
    for p in params:
        p.grad = np.full(p.shape, 2.0, np.float32)
    opt.step()
    for p in params:  # 0.25 * 2 + 0.75 * 3 * 2
        np.testing.assert_allclose(p.data, 1 - 5.0)
    sizes = [n for n, what in comm.messages if "check" not in what]
    assert sizes == [16384, 3616, 2400]  # 5000 floats in 16 KB parts; 100+200+300 in one
    with pytest.raises(TypeError, match=r"expects a tinygan\.optim optimizer"):
        dist.synchronize("adam")
    with pytest.raises(ValueError, match="bucket_bytes must be an int >= 1024"):
        dist.GradientSync(comm, bucket_bytes=10)


def test_every_optimizer_runs_its_pre_step_hooks_first():
    seen = []
    for cls in (SGD, Adam, tg.optim.RMSprop):
        p = nn.Parameter(np.ones(2, np.float32))
        opt = cls([p], lr=0.1)
        opt.step_pre_hooks.append(lambda o: seen.append((type(o).__name__, o.params[0].grad[0])))
        p.grad = np.ones(2, np.float32)
        opt.step()
    assert seen == [("SGD", 1.0), ("Adam", 1.0), ("RMSprop", 1.0)]


# ---- the GPU (skipped without CuPy and a CUDA device) ----------------------------------------------


@pytest.mark.gpu
def test_sync_batch_norm_ops_on_the_gpu_equal_the_cpu():
    rng = np.random.default_rng(5)
    xs, g = rng.standard_normal((6, 4, 3, 3), dtype=np.float32), rng.standard_normal((6, 4, 3, 3))
    results = []
    for device in ("cpu", "cuda"):
        x = tg.tensor(xs, requires_grad=True).to(device).detach().requires_grad_()
        w = tg.tensor(np.linspace(0.5, 2, 4, dtype=np.float32)).to(device).requires_grad_()
        running = tg.tensor(np.zeros(4, np.float32)).to(device)
        y = dist.sync_batch_norm(x, running, None, w, None, 0.1, 1e-5, dist.SingleProcess())
        y.backward(tg.tensor(g.astype(np.float32)).to(device))
        results.append(
            [tg.backend.to_device(a, "cpu") for a in (y.data, x.grad, w.grad, running.data)]
        )
    for cpu, gpu in zip(*results):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_nccl_in_a_world_of_one():
    pytest.importorskip(
        "mpi4py", reason="mpi4py is not installed (pip install -e '.[distributed]')"
    )
    cupy = tg.backend.cupy()
    comm = dist.MPICommunicator(guard=False)  # MPI's singleton world: rank 0 of 1
    a = cupy.arange(6, dtype=cupy.float32)
    assert comm.allreduce_(a) is a and comm.bcast_(a) is a
    comm.synchronize()
    np.testing.assert_array_equal(cupy.asnumpy(a), np.arange(6))
    assert comm.nccl.device == 0 and comm.nccl.calls == 2
    with pytest.raises(TypeError, match="NCCL cannot reduce bool arrays"):
        comm.allreduce_(cupy.zeros(3, bool))
