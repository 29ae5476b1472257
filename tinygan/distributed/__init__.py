"""Data-parallel training over MPI (processes, machines) and NCCL (GPUs).

Launch any training script with an MPI launcher and each process becomes one rank:

    mpiexec -n 2 python examples/infogan_mnist.py --split test --data-dir ../shared/data

``tinygan.train.train`` then gives each rank its part of every (seed, step) batch, converts the
model's batch norm layers to ``SyncBatchNorm``, broadcasts rank 0's weights and averages the
gradients before every optimizer step, so that N ranks at a global batch B compute what one
process computes at batch B (to float rounding). Only rank 0 shows progress and writes files.
Without a launcher nothing changes and mpi4py is never imported.

The pieces, for other loops: ``init``/``world``/``rank``/``size``/``is_main``/``report_error``
(an expected error printed once for the job); communicators
(``SingleProcess``, ``MPICommunicator``, ``NCCLCommunicator``); ``all_reduce_sum`` (a
differentiable all-reduce), ``SyncBatchNorm`` (its op: ``SyncBatchNormFunction``),
``convert_sync_batchnorm``;
``broadcast_module``, ``broadcast_optimizer``, ``synchronize(optimizer)`` (``GradientSync``),
``prepare(model)``;
``shard``, ``check_batch`` and ``ShardedGenerator`` (the sharded batch sampler);
``DataParallel`` (the loop's per-step calls). See docs/scaling.md for multi-machine runs and
what it costs.
"""

from .comm import (
    Communicator,
    MPICommunicator,
    NCCLCommunicator,
    SingleProcess,
    init,
    is_main,
    launched_by_mpi,
    rank,
    report_error,
    size,
    world,
)
from .data_parallel import (
    DEFAULT_BUCKET_BYTES,
    DataParallel,
    GradientSync,
    ShardedGenerator,
    broadcast_module,
    broadcast_optimizer,
    check_batch,
    prepare,
    shard,
    synchronize,
)
from .sync_batchnorm import (
    AllReduceSum,
    SyncBatchNorm,
    SyncBatchNormFunction,
    all_reduce_sum,
    convert_sync_batchnorm,
    sync_batch_norm,
)

__all__ = [
    "DEFAULT_BUCKET_BYTES", "AllReduceSum", "Communicator", "DataParallel", "GradientSync",
    "MPICommunicator", "NCCLCommunicator", "ShardedGenerator", "SingleProcess", "SyncBatchNorm",
    "SyncBatchNormFunction", "all_reduce_sum", "broadcast_module", "broadcast_optimizer",
    "check_batch", "convert_sync_batchnorm", "init", "is_main", "launched_by_mpi", "prepare",
    "rank", "report_error", "shard", "size", "sync_batch_norm", "synchronize", "world",
]  # fmt: skip
