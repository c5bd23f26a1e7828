"""The job's communicator: MPI through mpi4py (CPU graphs; the control channel under mpirun)
and NCCL through metalnn's CUDA backend (CUDA graphs). Gradient traffic of each training
graph gets communicators of its own, so collectives issued from the executor's thread never
interleave with control calls (barrier, average) from the main thread."""

from __future__ import annotations

import glob
import os
import sys

import numpy as np

from .. import _core
from ._launch import Launch, rendezvous_port
from .rendezvous import exchange


def find_nccl_library() -> str:
    """libnccl.so.2 from the nvidia-nccl wheel (nvidia/nccl/lib or nvidia/cu*/lib on sys.path);
    METALNN_NCCL_LIBRARY overrides; "" when none is found (the loader's path is tried then)."""
    env = os.environ.get("METALNN_NCCL_LIBRARY")
    if env:
        return env
    for p in sys.path:
        for f in sorted(glob.glob(os.path.join(p or ".", "nvidia", "*", "lib", "libnccl.so*"))):
            return f
    return ""


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise RuntimeError("[distributed] the MPI engine needs mpi4py (pip install mpi4py) and an MPI "
                           "library such as Open MPI (apt-get install openmpi-bin libopenmpi-dev)") from None
    return MPI


class Communicator:
    """Rank, world size and collectives of this process's job (see :func:`metalnn.distributed.init`)."""

    def __init__(self, launch: Launch, backend: str, timeout: float):
        self.launch, self.backend, self.timeout = launch, backend, float(timeout)
        self._mpi_comm = None
        self._nccl_comm = None
        if backend == "mpi" or launch.kind == "mpi":
            MPI = _mpi()
            self._mpi_comm = MPI.COMM_WORLD.Dup()
            if (self._mpi_comm.Get_size(), self._mpi_comm.Get_rank()) != (launch.world_size, launch.rank):
                raise RuntimeError(f"[distributed] MPI says rank {self._mpi_comm.Get_rank()} of "
                                   f"{self._mpi_comm.Get_size()}, the environment rank {launch.rank} of "
                                   f"{launch.world_size}")
        if backend == "nccl":
            self._nccl_comm = self.new_nccl_comm()

    # -- identity --------------------------------------------------------------------------
    @property
    def rank(self) -> int:
        return self.launch.rank

    @property
    def world_size(self) -> int:
        return self.launch.world_size

    @property
    def local_rank(self) -> int:
        return self.launch.local_rank

    @property
    def has_mpi(self) -> bool:
        return self._mpi_comm is not None

    # -- engines ---------------------------------------------------------------------------
    def mpi_comm(self):
        """A new MPI communicator over the job (collective: every rank calls it in the same order)."""
        if self._mpi_comm is None:
            raise RuntimeError("[distributed] cpu graphs reduce gradients through MPI: launch with "
                               "`mpirun -n N python ...` (torchrun-style launches reach CUDA graphs only)")
        return self._mpi_comm.Dup()

    def new_nccl_comm(self):
        """A new NCCL communicator over the job (collective). Rank 0's unique id reaches the others
        through MPI under mpirun, else through the TCP rendezvous on MASTER_ADDR."""
        d = _core.distributed
        if not d.nccl_built:
            raise RuntimeError("[distributed] NCCL needs metalnn built with the CUDA backend (METALNN_BUILD_CUDA=ON)")
        if not d.nccl_load(find_nccl_library()):
            raise RuntimeError(f"[distributed] cannot load NCCL ({d.nccl_info()}); install nvidia-nccl-cu13 "
                               "or set METALNN_NCCL_LIBRARY to libnccl.so.2")
        uid = d.nccl_unique_id() if self.rank == 0 else None
        if self.world_size > 1:
            if self._mpi_comm is not None:
                uid = self._mpi_comm.bcast(uid, root=0)
            elif self._nccl_comm is not None:  # the TCP rendezvous runs once: later ids travel over NCCL
                uid = self._nccl_comm.allgather(uid if uid is not None else bytes(128))[0]
            else:
                uid = exchange(uid, self.rank, self.world_size, self.launch.master_addr,
                               rendezvous_port(self.launch), self.timeout)
        return d.NcclComm(uid, self.world_size, self.rank, self.timeout)

    # -- control collectives (main thread) -------------------------------------------------
    def _control_nccl(self):
        if self._nccl_comm is None:
            self._nccl_comm = self.new_nccl_comm()
        return self._nccl_comm

    def barrier(self) -> None:
        if self.world_size == 1:
            return
        if self._mpi_comm is not None:
            self._mpi_comm.Barrier()
        else:
            self._control_nccl().allreduce_sum(np.zeros(1))

    def all_reduce_sum(self, values: np.ndarray) -> np.ndarray:
        """Sum of a float64 array over the ranks (a new array)."""
        a = np.array(values, dtype=np.float64, copy=True, order="C")
        if self.world_size == 1:
            return a
        if self._mpi_comm is not None:
            MPI = _mpi()
            self._mpi_comm.Allreduce(MPI.IN_PLACE, a, op=MPI.SUM)
        else:
            flat = a.reshape(-1)
            self._control_nccl().allreduce_sum(flat)
        return a

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's ``data`` in rank order (all ranks pass the same length)."""
        if self.world_size == 1:
            return [bytes(data)]
        if self._mpi_comm is not None:
            return list(self._mpi_comm.allgather(bytes(data)))
        return list(self._control_nccl().allgather(bytes(data)))

    def broadcast_object(self, obj, root: int = 0):
        """A small picklable object from ``root`` (MPI), or an int (NCCL: through a float64)."""
        if self.world_size == 1:
            return obj
        if self._mpi_comm is not None:
            return self._mpi_comm.bcast(obj, root=root)
        v = np.array([float(obj) if self.rank == root else 0.0])
        return type(obj)(self.all_reduce_sum(v)[0])

    def close(self) -> None:
        if self._nccl_comm is not None:
            self._nccl_comm = None  # destroyed with its last reference
        if self._mpi_comm is not None:
            try:
                self._mpi_comm.Free()
            except Exception:  # MPI already finalized at interpreter exit
                pass
            self._mpi_comm = None
