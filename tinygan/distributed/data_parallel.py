"""Data parallelism: every rank holds the whole model and trains on its part of each batch.

- ``broadcast_module``: rank 0's parameters and buffers to every rank.
- ``GradientSync`` / ``synchronize(optimizer)``: before each ``step`` the gradients are averaged
  over the ranks (weighted by each rank's share of the batch), packed into few large messages;
  every optimizer of ``tinygan.optim`` runs its ``step_pre_hooks`` first.
- ``shard``: which rows of the (seed, step) batch a rank takes, and ``ShardedGenerator``: the
  step's random generator seen by one rank (draws for the whole batch, keeps its rows), so that
  N ranks at batch B/N together compute exactly what one process computes at batch B.
- ``prepare(model)``: all of that for a model of ``tinygan.models`` (its modules converted to
  ``SyncBatchNorm``); ``DataParallel``: what ``tinygan.train.train`` asks at each step.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from .. import backend
from ..function import mark_changed
from ..nn.module import Module
from ..optim import Optimizer
from .comm import Communicator, world
from .sync_batchnorm import SyncBatchNorm, convert_sync_batchnorm

__all__ = [
    "DEFAULT_BUCKET_BYTES",
    "DataParallel",
    "GradientSync",
    "ShardedGenerator",
    "broadcast_module",
    "broadcast_optimizer",
    "check_batch",
    "prepare",
    "shard",
    "synchronize",
]

# Few large messages: one network's gradients (26.6 MB, a 25.7 MB weight and 1 MB of others)
# all-reduced in messages of at most 16-64 MB took 56-68 ms, of 1-4 MB 66-82 ms (2 ranks, a
# busy machine, medians of 12; docs/scaling.md). With 32 MB, the weight goes alone, in place,
# and the rest in one message.
DEFAULT_BUCKET_BYTES = 32 << 20


# ---- parameters and gradients ------------------------------------------------------------------


def broadcast_module(module: Module, root: int = 0, comm: Communicator | None = None) -> Module:
    """Overwrite every parameter and buffer of ``module`` with rank ``root``'s values, in place.

    Checks first that every rank's module has the same names, shapes and dtypes (a clear error
    instead of a hang or garbage if they differ).
    """
    comm = world() if comm is None else comm
    tensors = list(module._state_tensors().items())
    layout = [(k, tuple(t.shape), str(t.dtype)) for k, t in tensors]
    _same_everywhere(comm, layout, "the modules' parameters and buffers")
    seen: set[int] = set()
    for name, t in tensors:
        if id(t) not in seen:  # a tensor shared under two names goes once
            seen.add(id(t))
            if not t.data.flags.c_contiguous:
                t.data = backend.get_array_module(t.data).ascontiguousarray(t.data)
            comm.bcast_(t.data, root, f"broadcast of {name}")
            mark_changed(t.data)
    return module


def broadcast_optimizer(
    optimizer: Optimizer, root: int = 0, comm: Communicator | None = None
) -> Optimizer:
    """Overwrite ``optimizer``'s per-parameter state (moments, buffers) on every rank with rank
    ``root``'s, in place; the ranks must hold state of the same layout (checked first)."""
    comm = world() if comm is None else comm
    layout = [
        sorted(
            (k, getattr(v, "shape", None), str(getattr(v, "dtype", type(v).__name__)))
            for k, v in state.items()
        )
        for state in optimizer.state
    ]
    _same_everywhere(comm, layout, f"the state of {type(optimizer).__name__}")
    for i, state in enumerate(optimizer.state):
        for key in sorted(state):
            value = state[key]
            if hasattr(value, "shape"):
                comm.bcast_(value, root, f"broadcast of optimizer state {i}.{key}")
            else:
                state[key] = comm.allgather(value, "optimizer state")[root]
    return optimizer


def _same_everywhere(comm: Communicator, value: Any, what: str) -> None:
    everyone = comm.allgather(value, f"the check of {what}")
    for r, other in enumerate(everyone):
        if other != everyone[0]:
            first = next(
                (f"{a} on rank 0, {b} on rank {r}" for a, b in zip(everyone[0], other) if a != b),
                f"{len(everyone[0])} entries on rank 0, {len(other)} on rank {r}",
            )
            raise RuntimeError(f"the ranks disagree on {what}: {first}")


class GradientSync:
    """An optimizer pre-step hook: the weighted average over ranks of the parameters' gradients.

    ``grad <- sum over ranks of weight_r * grad_r`` (``weight`` defaults to 1/size: the plain
    average; ``DataParallel`` sets each rank's share of the batch). Gradients are scaled in
    place, then summed: one ``bucket_bytes`` buffer per dtype and device packs the small
    gradients, in order, into as few messages as fit; a gradient at least half a bucket large
    goes as its own message(s), in place, without a copy. A first tiny message checks that
    every rank has a gradient for the same parameters (and is where a dead rank is noticed
    before the large transfers).

    Parameters
    ----------
    comm : Communicator, optional
    bucket_bytes : int
        Largest message (the packing buffer grows to the largest group of small gradients).
    """

    def __init__(
        self, comm: Communicator | None = None, bucket_bytes: int = DEFAULT_BUCKET_BYTES
    ) -> None:
        if not (isinstance(bucket_bytes, int) and bucket_bytes >= 1024):
            raise ValueError(f"bucket_bytes must be an int >= 1024; got {bucket_bytes!r}")
        self.comm = world() if comm is None else comm
        self.bucket_bytes = bucket_bytes
        self.weight = 1.0 / self.comm.size
        self._buffers: dict[tuple[str, Any], Any] = {}

    def __call__(self, optimizer: Optimizer) -> None:
        comm = self.comm
        if comm.size == 1:
            return
        params = optimizer.params
        have = np.array([p.grad is not None for p in params], np.float64)
        counts = comm.allreduce_(have.copy(), "the gradient check before an optimizer step")
        odd = [i for i, c in enumerate(counts) if c not in (0, comm.size)]
        if odd:
            raise RuntimeError(
                f"parameters {odd} of {type(optimizer).__name__} have a gradient on only some "
                f"ranks ({[int(counts[i]) for i in odd]} of {comm.size}): every rank must "
                "compute the gradients of the same parameters"
            )
        for p in params:
            if p.grad is not None and not p.grad.flags.c_contiguous:
                p.grad = backend.get_array_module(p.grad).ascontiguousarray(p.grad)
        for group in self._buckets([p.grad for p in params if p.grad is not None]):
            self._reduce(group)
        comm.synchronize("the gradient all-reduce")  # (NCCL's run on the GPU's stream)

    def _buckets(self, grads: list[Any]) -> Iterator[list[Any]]:
        """Groups of gradients sent together: one large gradient alone, or small ones of one
        dtype and device (in order, skipping the large ones) that fit in a bucket."""
        group: list[Any] = []
        used = 0
        for g in grads:
            if g.nbytes * 2 >= self.bucket_bytes:
                yield [g]
                continue
            if group and (used + g.nbytes > self.bucket_bytes or _kind(g) != _kind(group[0])):
                yield group
                group, used = [], 0
            group.append(g)
            used += g.nbytes
        if group:
            yield group

    def _reduce(self, group: list[Any]) -> None:
        comm, w = self.comm, self.weight
        if len(group) == 1 and group[0].nbytes * 2 >= self.bucket_bytes:
            flat = group[0].reshape(-1)
            step = max(1, self.bucket_bytes // flat.itemsize)
            flat *= flat.dtype.type(w)
            for i in range(0, flat.size, step):
                comm.allreduce_(flat[i : i + step], "the gradient all-reduce")
            return
        offsets = np.cumsum([0] + [g.size for g in group])
        buf = self._buffer(group[0], int(offsets[-1]))
        for g, a, b in zip(group, offsets[:-1], offsets[1:]):
            buf[a:b] = g.reshape(-1)
        part = buf[: offsets[-1]]
        part *= part.dtype.type(w)
        comm.allreduce_(part, "the gradient all-reduce")
        for g, a, b in zip(group, offsets[:-1], offsets[1:]):
            g.reshape(-1)[...] = part[a:b]

    def _buffer(self, like: Any, size: int) -> Any:
        """The packing buffer for ``like``'s dtype and device, at least ``size`` elements (it
        grows to the largest group seen, at most a bucket)."""
        key = _kind(like)
        if key not in self._buffers or self._buffers[key].size < size:
            self._buffers[key] = backend.get_array_module(like).empty(size, like.dtype)
        return self._buffers[key]


def _kind(a: Any) -> tuple[str, Any]:
    return backend.device_of(a), a.dtype


def synchronize(
    optimizer: Optimizer, comm: Communicator | None = None, bucket_bytes: int = DEFAULT_BUCKET_BYTES
) -> GradientSync:
    """Make ``optimizer.step()`` average the gradients over the ranks first (ChainerMN's
    ``create_multi_node_optimizer``); idempotent. Returns the hook (its ``weight`` is each
    rank's share of the batch, 1/size by default)."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"synchronize expects a tinygan.optim optimizer; got {optimizer!r}")
    for hook in optimizer.step_pre_hooks:
        if isinstance(hook, GradientSync):
            return hook
    hook = GradientSync(comm, bucket_bytes)
    optimizer.step_pre_hooks.append(hook)
    return hook


# ---- batches and random draws ------------------------------------------------------------------


def shard(batch: int, rank: int, size: int, chunks: int = 1) -> np.ndarray:
    """The positions in a batch of ``batch`` rows that rank ``rank`` of ``size`` takes.

    The batch is cut into ``chunks`` equal chunks (a GAN with ``n_critic`` steps takes one chunk
    per critic step) and each chunk into ``size`` contiguous parts, the first ``rem`` of them
    one row longer; rank r takes part r of every chunk. Over all ranks the parts cover the
    batch exactly once.
    """
    if not (isinstance(chunks, int) and chunks >= 1 and batch % chunks == 0):
        raise ValueError(f"a batch of {batch} does not split into {chunks} equal chunks")
    m = batch // chunks
    if m < size:
        what, need = f"a batch of {batch}", "one row"
        if chunks > 1:
            what, need = f"{what} in {chunks} chunks of {m}", "one row of every chunk"
        raise ValueError(
            f"{what} cannot be shared by {size} ranks: each needs at least {need}; use a batch "
            f"of at least {size * chunks} or fewer ranks"
        )
    base, rem = divmod(m, size)
    start = rank * base + min(rank, rem)
    part = np.arange(start, start + base + (rank < rem))
    return np.concatenate([k * m + part for k in range(chunks)])


# every numpy.random.Generator method that takes a ``size``, and where it sits among the arguments
_SIZE_ARGUMENT = {
    "random": 0, "standard_normal": 0, "standard_exponential": 0, "standard_cauchy": 0,
    "choice": 1, "exponential": 1, "poisson": 1, "standard_gamma": 1, "chisquare": 1,
    "dirichlet": 1, "geometric": 1, "logseries": 1, "pareto": 1, "power": 1, "rayleigh": 1,
    "standard_t": 1, "weibull": 1, "zipf": 1,
    "uniform": 2, "normal": 2, "integers": 2, "binomial": 2, "gamma": 2, "beta": 2,
    "lognormal": 2, "laplace": 2, "logistic": 2, "f": 2, "gumbel": 2, "multinomial": 2,
    "negative_binomial": 2, "noncentral_chisquare": 2, "vonmises": 2, "wald": 2,
    "multivariate_normal": 2, "multivariate_hypergeometric": 2,
    "hypergeometric": 3, "noncentral_f": 3, "triangular": 3,
}  # fmt: skip
# ... and of those that fill an ``out`` array, where it sits
_OUT_ARGUMENT = {"random": 2, "standard_normal": 2, "standard_exponential": 3, "standard_gamma": 3}


class ShardedGenerator:
    """A ``numpy.random.Generator`` as one rank sees it in a data-parallel step.

    A draw whose leading dimension is this rank's number of rows (of the batch, or of one of
    its chunks) is made for the whole batch (chunk), and this rank's rows are returned; every
    other draw is made as asked. The underlying generator therefore advances exactly as in one
    process at the full batch, and the ranks' rows together are that process's draw. (A draw
    that is not per example but happens to have the rank's row count as its leading dimension
    would be cut too: the rule is about the shape. A per-example draw must say so by its
    ``size``: one shaped by its parameters' arrays, or a ``permutation``/``shuffle`` of the
    rank's rows, is made as asked, and cannot be one process's.)

    Parameters
    ----------
    rng : numpy.random.Generator
    rows : dict
        Local leading size -> (global leading size, this rank's positions in it).
    """

    def __init__(self, rng: np.random.Generator, rows: Mapping[int, tuple[int, np.ndarray]]):
        self._rng, self._rows = rng, dict(rows)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._rng, name)
        if name not in _SIZE_ARGUMENT:
            return method
        where = _SIZE_ARGUMENT[name]

        def draw(*args: Any, **kwargs: Any) -> Any:
            at = _OUT_ARGUMENT.get(name)
            if at is not None and len(args) > at:  # ``out`` given by position
                kwargs["out"], args = args[at], args[:at]
            positional = len(args) > where
            size = args[where] if positional else kwargs.get("size")
            out = kwargs.get("out")
            if size is None and out is not None:  # (an ``out`` array gives the shape)
                size = out.shape
            shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size or ())
            if out is not None and tuple(out.shape) != shape:  # as numpy, not a broadcast
                raise ValueError(f"{name}: size {shape} does not match out.shape {out.shape}")
            if not shape or shape[0] not in self._rows:
                return method(*args, **kwargs)
            total, positions = self._rows[shape[0]]
            whole = (total, *shape[1:])
            if positional:
                args = (*args[:where], whole, *args[where + 1 :])
            else:
                kwargs["size"] = whole
            kwargs.pop("out", None)
            rows = method(*args, **kwargs)[positions]
            if out is None:
                return rows
            out[...] = rows
            return out

        return draw

    def __repr__(self) -> str:
        return f"ShardedGenerator({self._rng!r}, rows={sorted(self._rows)})"


# ---- a model ----------------------------------------------------------------------------------


def _parts(model: Any) -> list[tuple[str, Any]]:
    names = getattr(model, "parts", None) or list(vars(model))
    return [(name, getattr(model, name)) for name in names]


def prepare(
    model: Any,
    *,
    sync_batchnorm: bool = True,
    comm: Communicator | None = None,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    share: float | None = None,
) -> list[GradientSync]:
    """Make ``model`` (a ``tinygan.models`` model, or any object whose attributes hold its
    modules and optimizers) data-parallel, in place: batch norm layers become ``SyncBatchNorm``
    (if ``sync_batchnorm``), rank 0's parameters and buffers are broadcast, and every optimizer
    averages the gradients before it steps. Idempotent; nothing happens in a world of one.

    Parameters
    ----------
    share : float, optional
        This rank's weight in the total loss, its share of the batch when each rank's loss is
        a mean over its rows: the gradients' weight in the average (``GradientSync.weight``)
        and in ``SyncBatchNorm``'s backward (``SyncBatchNorm.share``). Default 1 / size.

    Returns
    -------
    list of GradientSync, one per optimizer (empty in a world of one)
    """
    comm = world() if comm is None else comm
    if comm.size == 1:
        return []
    share = 1.0 / comm.size if share is None else float(share)
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1]; got {share!r}")
    parts = _parts(model)
    for name, part in parts:
        if isinstance(part, Module):
            if sync_batchnorm:
                new = convert_sync_batchnorm(part, comm)
                if new is not part:
                    setattr(model, name, new)
                    part = new
            for layer in part.modules():
                if isinstance(layer, SyncBatchNorm):
                    layer.share = share
            broadcast_module(part, 0, comm)
    syncs = [synchronize(p, comm, bucket_bytes) for _, p in parts if isinstance(p, Optimizer)]
    for sync in syncs:
        sync.weight = share
    return syncs


def _chunks(model: Any) -> int:
    """How many chunks a model takes its batch in (``GAN(n_critic=5)``: 5)."""
    return int(getattr(model, "n_critic", 1))


def check_batch(model: Any, batch_size: int, comm: Communicator | None = None) -> None:
    """``ValueError`` (``shard``'s) unless every rank gets at least one row of each of the
    chunks ``DataParallel`` cuts a batch of ``batch_size`` rows of ``model`` into."""
    comm = world() if comm is None else comm
    shard(batch_size, comm.rank, comm.size, _chunks(model))


class DataParallel:
    """What ``tinygan.train.train`` needs at each step of a data-parallel run (a world of one:
    nothing changes).

    Parameters
    ----------
    model : Trainable
        Prepared by ``prepare`` (SyncBatchNorm, broadcast, averaged gradients). A model with
        an ``n_critic`` attribute (``tinygan.models.GAN``) takes its batch in that many chunks,
        and each chunk is shared out.
    batch_size : int
        The global batch.
    start : int
        The step the run starts (or resumes) at: all ranks must agree.
    comm : Communicator, optional
    settings : mapping, optional
        What else every rank must agree on (``train``'s: the seed, the data's fingerprint, the
        number of steps...), besides the model's optimizers' hyperparameters: ranks that differ
        would each shard another batch, or step otherwise, silently.
    """

    def __init__(
        self,
        model: Any,
        batch_size: int,
        start: int = 0,
        comm: Communicator | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.comm = comm = world() if comm is None else comm
        self.is_main = comm.is_main
        if comm.size == 1:
            return
        starts = comm.allgather(int(start), "the check of the starting step")
        if len(set(starts)) > 1:
            raise RuntimeError(
                f"the ranks start at different steps {starts}: each must read the same "
                "checkpoint (a multi-machine run needs it on a shared filesystem)"
            )
        agreed = {"batch_size": batch_size, **(settings or {})}
        for name, part in _parts(model):  # (the optimizers' learning rates...)
            if isinstance(part, Optimizer):
                agreed.update((f"{name}.{k}", getattr(part, k)) for k in part.hparams)
        _same_everywhere(comm, sorted(agreed.items()), "the run's settings (every rank must run "
                         "the same command on the same data)")  # fmt: skip
        chunks = _chunks(model)
        self.positions = shard(batch_size, comm.rank, comm.size, chunks)
        local, chunk = len(self.positions), batch_size // chunks
        rows = {local: (batch_size, self.positions)}
        if chunks > 1:
            rows[local // chunks] = (chunk, self.positions[: local // chunks])
        self.rows, self.share = rows, local / batch_size
        prepare(model, comm=comm, share=self.share)

    def shard(self, index: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
        """This rank's rows of the batch ``index`` and its view of the step's generator."""
        if self.comm.size == 1:
            return index, rng
        return index[self.positions], ShardedGenerator(rng, self.rows)

    def average(self, metrics: dict[str, float]) -> dict[str, float]:
        """The step's metrics over the whole batch: each rank's weighted by its share (every
        metric of the models is a batch mean)."""
        if self.comm.size == 1:
            return metrics
        keys = sorted(metrics)  # every rank runs the same train_step: the same keys
        values = self.comm.allreduce_values(
            [self.share * metrics[k] for k in keys], "the all-reduce of the step's metrics"
        )
        averaged = dict(zip(keys, values.tolist()))
        return {k: averaged[k] for k in metrics}

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (a Ctrl-C seen by one rank stops all)."""
        if self.comm.size == 1:
            return bool(flag)
        return bool(
            self.comm.allreduce_values([float(bool(flag))], "the all-reduce of the Ctrl-C flag")[0]
            > 0
        )
