"""Communicators: who the processes are and the collectives between them.

One interface (as ChainerMN's ``communicators``): ``rank``, ``size``, ``local_rank``, and in-place
collectives on arrays. Three implementations:

- ``SingleProcess``: the plain process, size 1; every collective returns its input. Used whenever
  no MPI launcher started this process, and mpi4py is then never imported.
- ``MPICommunicator``: MPI through mpi4py, for NumPy arrays (CPU processes on one or many
  machines). CuPy arrays go to its ``nccl`` communicator.
- ``NCCLCommunicator``: NCCL through ``cupy.cuda.nccl``, for CuPy arrays, one process per GPU;
  MPI carries its bootstrap (the unique id) and everything on the host.

A rank that dies or stops answering must not leave the others hanging: every MPI collective first
waits, polling with a deadline (``TINYGAN_DIST_TIMEOUT`` seconds, default 600), until all ranks
have reached it, then moves the data with MPI's blocking call; past the deadline the rank prints
which collective it was waiting in and aborts the whole job (``MPI_Abort``). An uncaught exception
on any rank does the same, and at exit every rank waits (with the same deadline) for the others to
finish before MPI shuts down. An expected error (``report_error``: a bad flag, missing data) is
printed once for the whole job when every rank meets it, and aborts the job, naming the rank,
when not.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import math
import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import backend

__all__ = [
    "Communicator",
    "MPICommunicator",
    "NCCLCommunicator",
    "SingleProcess",
    "init",
    "is_main",
    "launched_by_mpi",
    "rank",
    "report_error",
    "size",
    "world",
]

# Environment variables that MPI launchers set in every process they start, with the world size:
# MPICH's and Intel MPI's Hydra (and Slurm's pmi2), Open MPI, MVAPICH, PMIx (Open MPI 5, srun
# --mpi=pmix; no size there).
LAUNCHER_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_RANK")
# ... and with this process's rank
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")
DEFAULT_TIMEOUT_S = 600.0
# How long a rank with an expected error waits for the others to meet one too (ranks that read the
# same flags and data meet it within moments, seconds on a loaded machine) before it aborts the
# job on its own
FAIL_GRACE_S = 20.0
# Messages up to this size go as one non-blocking all-reduce polled to completion (done within
# microseconds once every rank is there); larger ones wait at a non-blocking barrier first and
# then move at the blocking call's full speed (MPICH progresses a non-blocking collective only
# while it is polled).
SMALL_MESSAGE_BYTES = 64 << 10
_SPIN_S = 2e-3  # poll without sleeping this long before backing off (ranks usually arrive close)
_MAX_SLEEP_S = 5e-4
# MPI_Abort makes the launcher kill every rank, its own stdio proxies included: a message still
# in the pipe to the proxy is lost (seen on a loaded machine: the job's output came back empty)
_ABORT_GRACE_S = 1.0


def launched_by_mpi() -> bool:
    """Whether an MPI launcher (``mpiexec``, ``srun --mpi=...``) started this process with more
    than one rank (read from the environment, without importing mpi4py)."""
    for name in LAUNCHER_VARIABLES:
        value = os.environ.get(name)
        if value is not None:
            return name == "PMIX_RANK" or value.strip() != "1"
    return False


class Communicator:
    """The collectives a data-parallel run needs; every rank must call them in the same order.

    Attributes
    ----------
    rank, size : int
        This process's index among ``size`` processes.
    local_rank, local_size : int
        The same among the processes on this machine (picks the GPU of a rank).
    seconds, calls : float, int
        Time spent in collectives (waiting for other ranks included) and their count; the
        benchmark reads them.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    def __init__(self) -> None:
        self.seconds, self.calls = 0.0, 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that prints progress and writes files."""
        return self.rank == 0

    def allreduce_(self, a: Any, what: str = "allreduce") -> Any:
        """Sum ``a`` (a contiguous NumPy or CuPy array) over all ranks, in place; return it."""
        raise NotImplementedError

    def bcast_(self, a: Any, root: int = 0, what: str = "broadcast") -> Any:
        """Overwrite ``a`` on every rank with rank ``root``'s values, in place; return it."""
        raise NotImplementedError

    def allgather(self, obj: Any, what: str = "allgather") -> list[Any]:
        """Every rank's ``obj`` (a small picklable value), in rank order."""
        raise NotImplementedError

    def synchronize(self, what: str = "collectives") -> None:
        """Wait for collectives that run asynchronously (NCCL's, on the GPU), with the deadline;
        on the CPU every collective has finished when it returns."""

    def barrier(self, what: str = "barrier") -> None:
        """Return once every rank has called it."""
        raise NotImplementedError

    def abort(self, message: str, code: int = 1) -> None:
        """Print ``message`` naming this rank and stop every rank of the job."""
        raise NotImplementedError

    def report_error(self, line: str, code: int) -> None:
        """This rank stops on an expected error: print ``line`` (``error: ...``) on stderr once
        for the whole job. In a world of one: print it."""
        print(line, file=sys.stderr, flush=True)

    def allreduce_values(self, values: Sequence[float], what: str = "allreduce") -> np.ndarray:
        """The sums over ranks of a few Python numbers, as a float64 array."""
        return self.allreduce_(np.array(values, np.float64), what)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class SingleProcess(Communicator):
    """The world of a process that no MPI launcher started: rank 0 of 1."""

    def allreduce_(self, a: Any, what: str = "allreduce") -> Any:
        return a

    def bcast_(self, a: Any, root: int = 0, what: str = "broadcast") -> Any:
        _check_root(root, 1)
        return a

    def allgather(self, obj: Any, what: str = "allgather") -> list[Any]:
        return [obj]

    def barrier(self, what: str = "barrier") -> None:
        return None

    def abort(self, message: str, code: int = 1) -> None:
        print(f"tinygan.distributed: {message}; stopping", file=sys.stderr, flush=True)
        os._exit(code)


class MPICommunicator(Communicator):
    """MPI through mpi4py (NumPy arrays); CuPy arrays go to NCCL (``self.nccl``).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        Default ``MPI.COMM_WORLD``.
    timeout : float, optional
        Seconds a rank waits for the others in one collective before it aborts the job
        (default ``TINYGAN_DIST_TIMEOUT`` or 600).
    guard : bool
        Abort the job on an uncaught exception, and wait for every rank at exit (what a
        training script wants; tests of the communicator itself may turn it off).
    """

    def __init__(self, comm: Any = None, *, timeout: float | None = None, guard: bool = True):
        super().__init__()
        self.timeout = _timeout(timeout)  # (a bad setting is refused before MPI starts)
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise RuntimeError(
                "this process was started by an MPI launcher, but mpi4py is not installed: "
                "pip install 'tinygan[distributed]' (mpi4py and MPICH), or run without mpiexec"
            ) from e
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        # the guard's barriers run on a communicator of their own, so that a barrier can never
        # be matched with a data collective of a rank that took another path (a rank leaving
        # early while the others all-reduce): they time out instead of exchanging garbage;
        # ``report_error`` has one too (a failing rank must not meet a rank waiting at exit)
        self.guard_comm = self.comm.Dup()
        self.fail_comm = self.comm.Dup()
        self._nccl: NCCLCommunicator | None = None
        self._finished = False
        if guard:
            self._previous_hook = sys.excepthook
            sys.excepthook = self._excepthook
            atexit.register(self._wait_for_all_at_exit)

    # ---- the guard ------------------------------------------------------------------------
    @staticmethod
    def _poll(request: Any, seconds: float) -> bool:
        """Poll ``request`` until it completes (True) or ``seconds`` have passed (False)."""
        if request.Test():
            return True
        start = time.monotonic()
        spin_until, deadline, delay = start + _SPIN_S, start + seconds, 2e-5
        while not request.Test():
            now = time.monotonic()
            if now < spin_until:
                continue
            if now > deadline:
                return False
            time.sleep(delay)
            delay = min(2 * delay, _MAX_SLEEP_S)
        return True

    def _wait(self, request: Any, what: str) -> None:
        """Poll ``request`` until it completes; abort the job past the deadline."""
        if not self._poll(request, self.timeout):
            self.abort(
                f"waited {self.timeout:.0f} s in {what} for the other ranks: one of them died, "
                "hangs, or left the run early (TINYGAN_DIST_TIMEOUT sets the limit)"
            )

    def _meet(self, what: str) -> None:
        """Return once every rank has reached this point (guarded non-blocking barrier)."""
        self._wait(self.guard_comm.Ibarrier(), what)

    def abort(self, message: str, code: int = 1) -> None:
        print(
            f"tinygan.distributed: rank {self.rank} of {self.size}: {message}; aborting all ranks",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):  # (a second Ctrl-C must not skip Abort)
            time.sleep(_ABORT_GRACE_S)  # let the launcher forward the message before the kill
        self.comm.Abort(code)

    def report_error(self, line: str, code: int) -> None:
        """Print ``line``, this rank's error, once for the job: if every rank fails within
        ``FAIL_GRACE_S`` (they read the same flags and data), rank 0 prints each distinct line
        (naming the ranks when they differ) and every rank returns; if not, this rank prints
        its line naming itself and aborts the job with ``code``."""
        if not self._poll(self.fail_comm.Ibarrier(), min(self.timeout, FAIL_GRACE_S)):
            print(f"{line} (rank {self.rank} of {self.size}; the other ranks did not fail: "
                  "aborting them)", file=sys.stderr, flush=True)  # fmt: skip
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(_ABORT_GRACE_S)  # (see abort)
            self.comm.Abort(code)
        lines = self.fail_comm.gather(line, root=0)  # every rank is here
        self._finished = True  # every rank is stopping: nothing to wait for at exit
        for text in dict.fromkeys(lines or ()):  # rank 0: each distinct line, in rank order
            ranks = [r for r, other in enumerate(lines) if other == text]
            many = "s" if len(ranks) > 1 else ""
            where = "" if len(ranks) == self.size else f" (rank{many} {', '.join(map(str, ranks))})"
            print(text + where, file=sys.stderr, flush=True)

    def _excepthook(self, etype: type, value: BaseException, tb: Any) -> None:
        self._previous_hook(etype, value, tb)
        self._finished = True
        what = "interrupted" if issubclass(etype, KeyboardInterrupt) else f"{etype.__name__}"
        self.abort(f"stopped ({what}: {value})" if str(value) else f"stopped ({what})")

    def _wait_for_all_at_exit(self) -> None:
        if self._finished:
            return
        self._finished = True
        try:
            self._meet("the end of the run (this rank finished; the others did not follow)")
        except Exception:  # MPI already finalized by the user: nothing to wait for
            traceback.print_exc()

    # ---- collectives ----------------------------------------------------------------------
    def allreduce_(self, a: Any, what: str = "allreduce") -> Any:
        if backend.is_cupy_array(a):
            return self.nccl.allreduce_(a, what)
        _check_contiguous(a, what)
        start = time.perf_counter()
        if a.nbytes <= SMALL_MESSAGE_BYTES:
            self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, a, self.MPI.SUM), what)
        else:
            self._meet(what)
            self.comm.Allreduce(self.MPI.IN_PLACE, a, self.MPI.SUM)
        self._count(start)
        return a

    def bcast_(self, a: Any, root: int = 0, what: str = "broadcast") -> Any:
        _check_root(root, self.size)
        if backend.is_cupy_array(a):
            return self.nccl.bcast_(a, root, what)
        _check_contiguous(a, what)
        start = time.perf_counter()
        self._meet(what)
        self.comm.Bcast(a, root)
        self._count(start)
        return a

    def allgather(self, obj: Any, what: str = "allgather") -> list[Any]:
        start = time.perf_counter()
        self._meet(what)
        out = self.comm.allgather(obj)
        self._count(start)
        return out

    def barrier(self, what: str = "barrier") -> None:
        start = time.perf_counter()
        self._meet(what)
        self._count(start)

    def _count(self, start: float) -> None:
        self.seconds += time.perf_counter() - start
        self.calls += 1

    def synchronize(self, what: str = "collectives") -> None:
        if self._nccl is not None:
            self._nccl.synchronize(what)

    @property
    def nccl(self) -> NCCLCommunicator:
        """The NCCL communicator for CuPy arrays, made on first use (collectively)."""
        if self._nccl is None:
            self._nccl = NCCLCommunicator(self)
        return self._nccl


class NCCLCommunicator(Communicator):
    """NCCL through ``cupy.cuda.nccl`` for CuPy arrays: one process per GPU.

    Each rank uses GPU ``local_rank`` (``pin_device``, done by ``init`` before any model moves to
    the GPU); rank 0 makes NCCL's unique id and MPI broadcasts it. Collectives are enqueued on
    CuPy's current stream and run asynchronously; ``synchronize`` waits for them with the MPI
    communicator's deadline (a dead peer makes NCCL wait forever, so the wait polls and, past
    the deadline, aborts NCCL and the job).
    """

    def __init__(self, mpi: MPICommunicator) -> None:
        super().__init__()
        nccl = nccl_module()
        self.cupy, self.nccl_module, self.mpi = backend.cupy(), nccl, mpi
        self.rank, self.size = mpi.rank, mpi.size
        self.local_rank, self.local_size = mpi.local_rank, mpi.local_size
        self.device = pin_device(mpi)
        uid = nccl.get_unique_id() if mpi.rank == 0 else None
        uid = mpi.comm.bcast(uid, root=0)
        self.comm = nccl.NcclCommunicator(mpi.size, uid, mpi.rank)
        self._dtypes = {
            np.dtype(np.float16): nccl.NCCL_FLOAT16,
            np.dtype(np.float32): nccl.NCCL_FLOAT32,
            np.dtype(np.float64): nccl.NCCL_FLOAT64,
            np.dtype(np.int32): nccl.NCCL_INT32,
            np.dtype(np.int64): nccl.NCCL_INT64,
        }

    def _dtype(self, a: Any, what: str) -> int:
        if a.dtype not in self._dtypes:
            raise TypeError(f"{what}: NCCL cannot reduce {a.dtype} arrays")
        if a.device.id != self.device:
            raise ValueError(
                f"{what}: the array is on GPU {a.device.id}, but rank {self.rank} is pinned to "
                f"GPU {self.device}: create tensors after tinygan.distributed.init()"
            )
        _check_contiguous(a, what)
        return self._dtypes[a.dtype]

    def allreduce_(self, a: Any, what: str = "allreduce") -> Any:
        dtype = self._dtype(a, what)
        stream = self.cupy.cuda.get_current_stream().ptr
        self.comm.allReduce(a.data.ptr, a.data.ptr, a.size, dtype, self.nccl_module.NCCL_SUM,
                            stream)  # fmt: skip
        self.calls += 1
        return a

    def bcast_(self, a: Any, root: int = 0, what: str = "broadcast") -> Any:
        _check_root(root, self.size)
        dtype = self._dtype(a, what)
        self.comm.bcast(a.data.ptr, a.size, dtype, root, self.cupy.cuda.get_current_stream().ptr)
        self.calls += 1
        return a

    def synchronize(self, what: str = "NCCL collectives") -> None:
        """Wait for the collectives enqueued so far, with the MPI communicator's deadline."""
        start = time.perf_counter()
        event = self.cupy.cuda.get_current_stream().record()
        deadline = time.monotonic() + self.mpi.timeout
        while not event.done:
            if time.monotonic() > deadline:
                self.comm.abort()
                self.mpi.abort(f"waited {self.mpi.timeout:.0f} s for {what} on the GPU")
            time.sleep(1e-4)
        self.seconds += time.perf_counter() - start

    def allgather(self, obj: Any, what: str = "allgather") -> list[Any]:
        return self.mpi.allgather(obj, what)

    def allreduce_values(self, values: Sequence[float], what: str = "allreduce") -> np.ndarray:
        return self.mpi.allreduce_values(values, what)  # host numbers: MPI, with the deadline

    def barrier(self, what: str = "barrier") -> None:
        self.mpi.barrier(what)

    def abort(self, message: str, code: int = 1) -> None:
        self.comm.abort()
        self.mpi.abort(message, code)


def nccl_module() -> Any:
    """CuPy's NCCL bindings, ``cupy.cuda.nccl``.

    Raises
    ------
    RuntimeError
        If CuPy cannot load the NCCL library (``nccl.available`` is False).
    """
    cupy = backend.cupy()
    nccl = getattr(cupy.cuda, "nccl", None) or importlib.import_module(f"{cupy.__name__}.cuda.nccl")
    if not nccl.available:
        raise RuntimeError(
            "NCCL is not available to CuPy (cupy.cuda.nccl.available is False): install the NCCL "
            "library for your CUDA version (the README's GPU section says which package)"
        )
    return nccl


def pin_device(comm: Communicator) -> int:
    """Make GPU ``local_rank`` CuPy's current device in this process (one process per GPU);
    return its index. Raises if the machine has fewer GPUs than ranks on it."""
    cupy = backend.cupy()
    count = cupy.cuda.runtime.getDeviceCount()
    if comm.local_size > count:
        raise RuntimeError(
            f"{comm.local_size} ranks on this machine but {count} GPU(s): start one rank per GPU"
        )
    cupy.cuda.Device(comm.local_rank).use()
    return comm.local_rank


def _timeout(timeout: float | None) -> float:
    """The collectives' deadline in seconds: ``timeout``, else ``TINYGAN_DIST_TIMEOUT``, else 600;
    a positive number (inf: no deadline)."""
    name, value = "timeout", timeout
    if timeout is None:
        name, value = "TINYGAN_DIST_TIMEOUT", os.environ.get("TINYGAN_DIST_TIMEOUT")
        if value is None:
            return DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not seconds > 0:
        raise ValueError(f"{name} must be a positive number of seconds; got {value!r}")
    return seconds


def _check_root(root: int, size: int) -> None:
    if not (isinstance(root, int) and 0 <= root < size):
        raise ValueError(f"root must be a rank from 0 to {size - 1}; got {root!r}")


def _check_contiguous(a: Any, what: str) -> None:
    if not (hasattr(a, "flags") and a.flags.c_contiguous):
        got = type(a).__name__ if not hasattr(a, "flags") else "a non-contiguous array"
        raise ValueError(f"{what}: expected a C-contiguous NumPy or CuPy array; got {got}")


# ---- the process's world ----------------------------------------------------------------------

_world: Communicator | None = None


def init(*, quiet: bool = False, timeout: float | None = None) -> Communicator:
    """This process's communicator, made on the first call (later calls return the same one).

    Without an MPI launcher (no ``PMI_SIZE``, ``OMPI_COMM_WORLD_SIZE``, ... in the environment,
    or a world of 1) it is ``SingleProcess`` and mpi4py is not imported. Under ``mpiexec -n N``
    it is an ``MPICommunicator``; where CuPy sees GPUs, each rank is pinned to GPU
    ``local_rank`` (one process per GPU).

    Parameters
    ----------
    quiet : bool
        On ranks other than 0, send standard output to ``os.devnull`` (errors still reach
        stderr), so that a script's messages appear once; ``TINYGAN_ALL_RANKS_PRINT=1`` keeps
        every rank's output.
    timeout : float, optional
        Seconds a collective waits for the other ranks before aborting the job (default
        ``TINYGAN_DIST_TIMEOUT`` or 600).
    """
    global _world
    if _world is None:
        if launched_by_mpi():
            _world = MPICommunicator(timeout=timeout)
            if backend.cuda_available():  # (more ranks than GPUs: CPU ranks, nothing pinned)
                with contextlib.suppress(RuntimeError):
                    pin_device(_world)
        else:
            _world = SingleProcess()
    if quiet and _world.rank != 0 and os.environ.get("TINYGAN_ALL_RANKS_PRINT", "") in ("", "0"):
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
    return _world


def report_error(line: str, code: int) -> None:
    """Print ``line`` (``error: ...``), this process's expected error, once for the whole job
    (``Communicator.report_error``). Where the world could not be made (a bad
    ``TINYGAN_DIST_TIMEOUT``, which every rank reads alike), the launcher's rank 0 prints it."""
    if _world is not None:
        _world.report_error(line, code)
    elif not launched_by_mpi() or _launcher_rank() in (None, 0):
        print(line, file=sys.stderr, flush=True)


def _launcher_rank() -> int | None:
    """This process's rank as the MPI launcher's environment says (None if it does not)."""
    for name in RANK_VARIABLES:
        with contextlib.suppress(KeyError, ValueError):
            return int(os.environ[name])
    return None


def world() -> Communicator:
    """The communicator of all processes (``init()``'s)."""
    return _world if _world is not None else init()


def rank() -> int:
    """This process's rank (0 in a plain process)."""
    return world().rank


def size() -> int:
    """The number of processes (1 in a plain process)."""
    return world().size


def is_main() -> bool:
    """Whether this is rank 0, the process that prints and writes files."""
    return world().rank == 0
