"""Data-parallel training graphs: ``Graph.training(loss, distributed=True)``.

Every rank runs the same graph on its shard of the global batch. Between the gradient pass
and the optimizer update the gradients are averaged over the ranks, bucket by bucket: a
bucket's all-reduce starts right after the step that produces its last gradient (the
gradient pass runs in reverse layer order, so the last layers' buckets travel while the
first layers' gradients are still being computed); the update waits for every bucket.
When the graph first binds its parameters, rank 0's weights, optimizer state and step
counters are copied to every rank, and the ranks check that they built the same graph."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from .. import _core
from .buckets import plan_buckets, start_positions
from .mpi_engine import MpiGradientEngine, _Worker

# Multiplied by the rank and added to every dropout seed: each rank draws its own masks
# (rank 0 draws the single-process ones).
DROPOUT_SEED_STRIDE = 0x9E3779B97F4A7C15


@dataclass(frozen=True)
class Options:
    """How a distributed graph reduces its gradients.

    ``bucket_mb``: about this many megabytes (10**6 bytes) of gradients per all-reduce;
    ``first_bucket_mb``: the first bucket's size (the last layers' gradients), small so that
    communication starts while most of the gradient pass is still to run.
    ``deterministic``: every rank gathers all ranks' gradients and sums them in rank order, so
    the weights are bitwise identical on every rank and from run to run (the default
    all-reduce is identical on every rank in practice but its summation order is the
    library's). Either way the average differs from single-process training on the global
    batch only by rounding."""

    bucket_mb: float = 25.0
    deterministic: bool = False
    first_bucket_mb: float = 1.0

    def __post_init__(self):
        for name in ("bucket_mb", "first_bucket_mb"):
            b = getattr(self, name)
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not b > 0 or b != b or b == float("inf"):
                raise ValueError(f"[Graph] distributed: {name} must be a number > 0, got {b!r}")
        if not isinstance(self.deterministic, bool):
            raise TypeError(f"[Graph] distributed: deterministic must be a bool, got {self.deterministic!r}")

    @property
    def bucket_bytes(self) -> int:
        return max(1, int(self.bucket_mb * 1e6))

    @property
    def first_bucket_bytes(self) -> int:
        return max(1, int(min(self.first_bucket_mb, self.bucket_mb) * 1e6))


def options_from(value) -> Options | None:
    """``distributed=`` of Graph: False/None, True (defaults), an Options or a dict of its fields."""
    if value is None or value is False:
        return None
    if value is True:
        return Options()
    if isinstance(value, Options):
        return value
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"bucket_mb", "first_bucket_mb", "deterministic"})
        if unknown:
            raise ValueError(f"[Graph] distributed: unknown option(s) {unknown} "
                             "(bucket_mb, first_bucket_mb, deterministic)")
        return Options(**value)
    raise TypeError(f"[Graph] distributed must be a bool, a metalnn.distributed.Options or a dict, got {value!r}")


def _env_flag(name: str, default: bool) -> bool:
    v = os.environ.get(name, "").strip().lower()
    if not v:
        return default
    if v in ("1", "on", "true", "yes"):
        return True
    if v in ("0", "off", "false", "no"):
        return False
    raise ValueError(f"[distributed] {name} must be 0 or 1, got {os.environ[name]!r}")


def cuda_graphs_enabled() -> bool:
    """Distributed CUDA programs are captured once and replayed like single-GPU ones, the NCCL
    calls inside the graph (default); METALNN_DISTRIBUTED_CUDA_GRAPHS=0 keeps them eager, with
    a host wait per bucket round (a dead peer raises after METALNN_DISTRIBUTED_TIMEOUT)."""
    return _env_flag("METALNN_DISTRIBUTED_CUDA_GRAPHS", True)


def skip_allreduce() -> bool:
    """METALNN_DISTRIBUTED_SKIP_ALLREDUCE=1, for measurements only: the ranks train apart (no
    gradient all-reduce steps), which shows what two processes cost without communication."""
    return _env_flag("METALNN_DISTRIBUTED_SKIP_ALLREDUCE", False)


def _timeout() -> float:
    try:
        t = float(os.environ.get("METALNN_DISTRIBUTED_TIMEOUT", "300"))
    except ValueError:
        raise ValueError("[distributed] METALNN_DISTRIBUTED_TIMEOUT must be a number of seconds") from None
    if not t > 0:
        raise ValueError(f"[distributed] METALNN_DISTRIBUTED_TIMEOUT must be > 0, got {t}")
    return t


class DataParallel:
    """The distributed part of one training graph (``graph._distributed``)."""

    def __init__(self, graph, options: Options):
        from . import communicator, is_initialized

        if not is_initialized():
            raise RuntimeError("[Graph] distributed=True: call metalnn.distributed.init() first "
                               "(before creating graphs, so each rank picks its GPU)")
        if not graph.is_training:
            raise ValueError("[Graph] distributed=True needs a training graph (gradients to average)")
        if graph.device.type not in ("cpu", "cuda"):
            raise ValueError(f"[Graph] distributed=True runs on cpu (MPI) or cuda (NCCL) graphs, not "
                             f"{graph.device.type} yet")
        self.options = options
        self.comm = communicator()
        if graph.device.type == "cpu" and self.world_size > 1 and not self.comm.has_mpi:
            raise RuntimeError("[Graph] distributed cpu graphs reduce gradients through MPI: launch with "
                               "`mpirun -n N python ...`")
        self.timeout = _timeout()
        self._grad_comm = None     # made at the first bind: every rank makes it at the same point
        self._worker = None
        self._synced = False
        self._signatures: set = set()
        self.plans: dict = {}      # bucket plan of each compiled program (by step count), for tests

    @property
    def rank(self) -> int:
        return self.comm.rank

    @property
    def world_size(self) -> int:
        return self.comm.world_size

    @property
    def dropout_seed_offset(self) -> int:
        return (self.rank * DROPOUT_SEED_STRIDE) % (1 << 64)

    # -- compile: bucketed all-reduce steps ----------------------------------------------------
    def emit(self, c) -> None:
        """Inserts the bucket start steps after their producers and a finish step at the end
        (the update steps follow it). Nothing with one rank."""
        grads = []
        for _node, dw, db in c.updates:
            for s in (dw, db):
                if s is not None:
                    grads.append(s)
        if self.world_size == 1 or not grads or skip_allreduce():
            return
        produced = {}
        for i, st in enumerate(c.steps):
            for s in st.outputs:
                produced[s] = i
        missing = [s for s in grads if s not in produced]
        if missing:
            raise RuntimeError(f"[Graph] distributed: gradient slot(s) {missing} have no producing step")
        grads.sort(key=lambda s: produced[s])  # production order (stable)
        sizes = [c.slot_bytes[s] for s in grads]
        buckets = [[grads[i] for i in b] for b in plan_buckets(sizes, self.options.bucket_bytes,
                                                                      self.options.first_bucket_bytes)]
        positions = start_positions([[grads.index(s) for s in b] for b in buckets], [produced[s] for s in grads])
        elements = [sum(c.slot_bytes[s] // 4 for s in b) for b in buckets]
        comm = self._gradient_comm(c.graph)
        starts: list[tuple[str, tuple]]
        finish: tuple[str, tuple]
        if c.graph.device.type == "cpu":
            assert self._worker is not None
            engine = MpiGradientEngine(self._worker, elements, self.options.deterministic, self.timeout)
            starts = [("python", (engine.start_step(k), list(b))) for k, b in enumerate(buckets)]
            finish = ("python", (engine.finish_step(buckets), [s for b in buckets for s in b]))
        else:
            reducer = _core.distributed.nccl_reducer(comm, elements, self.options.deterministic,
                                                     cuda_graphs_enabled())
            starts = [("allreduce_start", (reducer, k, list(b))) for k, b in enumerate(buckets)]
            finish = ("allreduce_finish", (reducer,))
        from ..graph.compiler import StepSpec

        # Insert from the last position so earlier indices stay valid.
        for k in sorted(range(len(buckets)), key=lambda k: positions[k], reverse=True):
            method, args = starts[k]
            c.steps.insert(positions[k] + 1, StepSpec(f"allreduce.bucket{k}", method, args,
                                                      tuple(buckets[k]), tuple(buckets[k])))
        all_slots = tuple(s for b in buckets for s in b)
        c.steps.append(StepSpec("allreduce.finish", finish[0], finish[1], all_slots, all_slots))
        self.plans[len(c.steps)] = {"buckets": buckets, "bytes": [sum(c.slot_bytes[s] for s in b) for b in buckets],
                                    "after": [c.steps[positions[k]].label for k in range(len(buckets))]}
        self.last_plan = self.plans[len(c.steps)]

    def _gradient_comm(self, graph):
        if self._grad_comm is None:
            if graph.device.type == "cpu":
                self._grad_comm = self.comm.mpi_comm()
                self._worker = _Worker(self._grad_comm)
            else:
                self._grad_comm = self.comm.new_nccl_comm()
        return self._grad_comm

    # -- bind: same graph everywhere, rank 0's state everywhere ---------------------------------
    def bind(self, graph, feeds: dict) -> None:
        """After a compile: checks the ranks built the same graph for the same per-rank batch
        shapes, and (the first time) copies rank 0's parameters, optimizer state and counters."""
        if self.world_size == 1:
            return
        sig = self._signature(graph, feeds)
        if sig not in self._signatures:
            graph.synchronize()  # earlier batches' collectives finish before these
            theirs = self.comm.allgather_bytes(hashlib.blake2b(sig.encode(), digest_size=16).digest())
            bad = [r for r, h in enumerate(theirs) if h != theirs[0]]
            if bad:
                raise ValueError(f"[Graph] distributed: rank(s) {bad} built a different graph or fed other "
                                 f"per-rank batch shapes than rank 0 (this rank: {sig[:300]})")
            self._signatures.add(sig)
        if not self._synced:
            self._broadcast_state(graph)
            self._synced = True

    @staticmethod
    def _signature(graph, feeds: dict) -> str:
        parts = [f"{img.name}:{tuple(a.shape)}:{a.dtype}" for img, a in feeds.items()]
        parts += [f"{n.kind}:{n.label}" for n in graph.nodes]
        for w, b in graph._params.values():
            for p in (w, b):
                if p is not None:
                    parts.append(f"{p.name}:{tuple(np.shape(p.value))}")
        return "|".join(parts)

    def _parameters(self, graph) -> list:
        out = []
        for w, b in graph._params.values():
            out += [p for p in (w, b) if p is not None]
        for key in graph._state_params:
            out += [p for p in graph._state_params[key].values() if p is not None]
        return out

    def _broadcast_state(self, graph) -> None:
        params = self._parameters(graph)
        if graph.device.type == "cpu":
            mpi = self.comm._mpi_comm
            assert mpi is not None  # checked in __init__
            for p in params:
                mpi.Bcast(p.value, root=0)  # numpy views: the data sources' arrays themselves
        else:
            ctrl = self.comm._control_nccl()
            for p in params:
                ctrl.broadcast(p, 0)
        counters = [graph._dropout_counter] + [o._metalnn_step for o in graph._optimizers
                                               if getattr(o, "_metalnn_step", None) is not None]
        values = self.comm.broadcast_object([c.value for c in counters]) if self.comm.has_mpi else \
            [self.comm.broadcast_object(int(c.value)) for c in counters]
        for c, v in zip(counters, values):
            c.value = int(v)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None
