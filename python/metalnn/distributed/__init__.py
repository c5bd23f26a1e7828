"""Data-parallel training across processes: one process per GPU (NCCL) or per CPU/Metal
machine (MPI through mpi4py), launched by ``mpirun -n N`` or a torchrun-style environment.

    import metalnn as mnn
    mnn.distributed.init()                      # before creating graphs
    graph = mnn.Graph.training(loss, distributed=True)
    x, y = mnn.distributed.shard(global_images), mnn.distributed.shard(global_labels)
    graph.encode_batch(x, labels=y)             # gradients averaged over the ranks
    mean_loss = mnn.distributed.average(handle.loss)

With one process (no launcher) everything works and nothing is communicated.
"""

from __future__ import annotations

import numpy as np

from . import _launch
from .buckets import plan_buckets
from .communicator import Communicator
from .data_parallel import DataParallel, Options
from .rendezvous import exchange

__all__ = ["Communicator", "DataParallel", "Options", "average", "barrier", "communicator", "exchange", "finalize",
           "init", "is_initialized", "local_rank", "plan_buckets", "rank", "shard", "world_size"]

_comm: Communicator | None = None


def init(backend: str | None = None, *, timeout: float = 60.0) -> Communicator:
    """Joins the job this process was launched into and returns its communicator.

    ``backend``: "mpi" (CPU graphs; Metal later), "nccl" (CUDA graphs) or None: "mpi" under
    ``mpirun`` (CUDA graphs then still reduce through NCCL, whose id travels over MPI) and
    "nccl" under a torchrun-style launch (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
    MASTER_PORT). Each rank is given the GPU of its local rank through CUDA_VISIBLE_DEVICES,
    so call this before anything uses CUDA. ``timeout``: seconds the ranks may take to meet
    (the rendezvous, NCCL's set-up); a missing rank raises RuntimeError instead of hanging.
    Calling it again returns the same communicator."""
    global _comm
    if backend not in (None, "mpi", "nccl"):
        raise ValueError(f"[distributed] backend must be 'mpi', 'nccl' or None, got {backend!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"[distributed] timeout must be a number of seconds > 0, got {timeout!r}")
    if _comm is not None:
        if backend is not None and backend != _comm.backend:
            raise ValueError(f"[distributed] already initialized with backend {_comm.backend!r}")
        return _comm
    launch = _launch.detect()
    if backend is None:
        backend = "nccl" if launch.kind == "env" else "mpi"
    if backend == "mpi" and launch.kind == "env":
        raise RuntimeError("[distributed] backend 'mpi' needs an MPI launch (mpirun); this process was "
                           "started with torchrun-style variables")
    _launch.select_gpu(launch)
    if backend == "mpi" and launch.kind == "single":
        backend = "single"  # one process: nothing to communicate, no MPI needed
    _comm = Communicator(launch, backend, timeout)
    return _comm


def is_initialized() -> bool:
    return _comm is not None


def communicator() -> Communicator:
    if _comm is None:
        raise RuntimeError("[distributed] call metalnn.distributed.init() first")
    return _comm


def rank() -> int:
    """This process's rank (0 when not initialized)."""
    return _comm.rank if _comm is not None else 0


def world_size() -> int:
    """The number of processes (1 when not initialized)."""
    return _comm.world_size if _comm is not None else 1


def local_rank() -> int:
    """The rank among this machine's processes (its GPU index)."""
    return _comm.local_rank if _comm is not None else 0


def barrier() -> None:
    """Returns once every rank has called it."""
    if _comm is not None:
        _comm.barrier()


def average(value):
    """The mean of ``value`` (a number or an array) over the ranks, for losses and metrics:
    ``average(handle.loss)``. Returns a float for a scalar, else a float64 array."""
    a = np.asarray(value, dtype=np.float64)
    if _comm is None or _comm.world_size == 1:
        return float(a) if a.ndim == 0 else a.copy()
    out = _comm.all_reduce_sum(a) / _comm.world_size
    return float(out) if out.ndim == 0 else out


def shard(array, *, rank: int | None = None, world_size: int | None = None):
    """This rank's rows of a global batch: rows ``[r * n, (r + 1) * n)`` with
    ``n = len(array) // world_size`` (global batch = per-rank batch x world size).
    Raises ValueError when the world size does not divide the batch."""
    r = globals()["rank"]() if rank is None else rank
    w = globals()["world_size"]() if world_size is None else world_size
    a = np.asarray(array)
    if a.ndim == 0:
        raise ValueError("[distributed] shard: expected a batch (N, ...), got a scalar")
    if w < 1 or not 0 <= r < w:
        raise ValueError(f"[distributed] shard: rank {r} is not in [0, {w})")
    if len(a) % w:
        raise ValueError(f"[distributed] shard: world size {w} does not divide the global batch of {len(a)}")
    n = len(a) // w
    return np.ascontiguousarray(a[r * n : (r + 1) * n])


def finalize() -> None:
    """Releases the communicators (optional: they are released at exit)."""
    global _comm
    if _comm is not None:
        _comm.close()
        _comm = None
