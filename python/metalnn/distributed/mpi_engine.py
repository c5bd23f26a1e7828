"""Gradient all-reduce of CPU graphs through MPI. A bucket's start step (a Python step on
the executor's thread) packs its gradients into one buffer and hands it to a communication
thread, which all-reduces it while the C++ gradient kernels go on (they do not hold the GIL);
the finish step waits for every bucket and writes the averages back in place."""

from __future__ import annotations

import queue
import threading

import numpy as np


class _Worker:
    """One thread per gradient communicator: buckets are reduced in the order they start,
    which is the same on every rank (MPI collectives must be issued in one order)."""

    def __init__(self, comm):
        self.comm = comm
        self.jobs: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="metalnn-allreduce", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            fn, done, errors = job
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - handed to the finish step
                errors.append(e)
            done.set()

    def submit(self, fn) -> tuple[threading.Event, list]:
        done = threading.Event()
        errors: list[BaseException] = []
        self.jobs.put((fn, done, errors))
        return done, errors

    def close(self) -> None:
        self.jobs.put(None)


class MpiGradientEngine:
    """Buckets of one compiled program (batches of one program run one after another)."""

    def __init__(self, worker: _Worker, bucket_elements: list[int], deterministic: bool, timeout: float):
        self.worker, self.deterministic, self.timeout = worker, deterministic, timeout
        self.world = worker.comm.Get_size()
        self.buffers = [np.empty(n, np.float32) for n in bucket_elements]
        # Deterministic mode: every rank's copy of each bucket.
        self.gathered = [np.empty((self.world if deterministic else 0, n), np.float32) for n in bucket_elements]
        self.pending: list = [None] * len(bucket_elements)

    def _reduce(self, b: int) -> None:
        from mpi4py import MPI

        buf = self.buffers[b]
        if self.deterministic:
            # Every rank sums the same rows in rank order: identical bits everywhere, every run.
            rows = self.gathered[b]
            self.worker.comm.Allgather(buf, rows)
            np.copyto(buf, rows[0])
            for r in range(1, self.world):
                buf += rows[r]
        else:
            self.worker.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        buf *= np.float32(1.0 / self.world)

    def start_step(self, b: int):
        def start(grads: list) -> None:
            buf, off = self.buffers[b], 0
            for g in grads:
                n = g.size
                buf[off : off + n] = g.reshape(-1)
                off += n
            if off != buf.size:
                raise RuntimeError(f"[allreduce] bucket {b} holds {off} floats, planned {buf.size}")
            self.pending[b] = self.worker.submit(lambda: self._reduce(b))
        return start

    def finish_step(self, buckets: list[list[int]]):
        def finish(grads: list) -> None:
            k = 0
            for b, members in enumerate(buckets):
                pending, self.pending[b] = self.pending[b], None
                if pending is None:
                    raise RuntimeError(f"[allreduce] bucket {b} was never started (graph compiled out of order)")
                done, errors = pending
                if not done.wait(self.timeout):
                    raise RuntimeError(f"[allreduce] no answer from the other ranks after {self.timeout:.0f} s "
                                       "(METALNN_DISTRIBUTED_TIMEOUT)")
                if errors:
                    raise RuntimeError(f"[allreduce] MPI failed: {errors[0]}")
                buf, off = self.buffers[b], 0
                for _ in members:
                    g = grads[k]
                    k += 1
                    g.reshape(-1)[...] = buf[off : off + g.size]
                    off += g.size
        return finish
