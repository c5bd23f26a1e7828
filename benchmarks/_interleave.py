"""Side-by-side timing shared by the CPU benchmarks (bench_latency.py, bench_activity.py): the
common options and the interleaved loop that times every path on the same inputs."""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable


def add_timing_args(ap: argparse.ArgumentParser, runs: int, warmup: int, block: int) -> None:
    """--runs, --warmup, --block, --threads and --clock with these defaults."""
    ap.add_argument("--runs", type=int, default=runs, help="timed calls per path")
    ap.add_argument("--warmup", type=int, default=warmup)
    ap.add_argument("--block", type=int, default=block,
                    help="calls per path in a row within a round (1: strict alternation)")
    ap.add_argument("--threads", type=int, default=0, help="threads for both libraries (default: all cores)")
    ap.add_argument("--clock", choices=("wall", "process"), default="wall",
                    help="wall time, or this process's CPU time (steadier when shared; use with --threads 1)")


def clock_of(args) -> Callable[[], float]:
    return time.process_time if args.clock == "process" else time.perf_counter


def threads_of(args) -> int:
    return args.threads or os.cpu_count() or 1


def time_interleaved(paths: dict, inputs: list, args) -> dict[str, list[float]]:
    """Seconds per call of each path (called as fn(*inputs[i % len(inputs)])) after --warmup calls.
    Rounds of --block calls per path: with more than one thread, each library's idle workers spin
    for a while after its calls and would take the cores from the other at every switch. An
    ``args.settle_ms`` > 0 pauses that long (untimed) before each block, so a block starts from
    idle workers instead of the other library's spinning ones."""
    clock = clock_of(args)
    settle = float(getattr(args, "settle_ms", 0) or 0) / 1e3
    times: dict[str, list[float]] = {k: [] for k in paths}
    for i in range(args.warmup):
        for fn in paths.values():
            fn(*inputs[i % len(inputs)])
    for r0 in range(0, args.runs, args.block):
        for name, fn in paths.items():
            if settle > 0:
                time.sleep(settle)
            for r in range(r0, min(args.runs, r0 + args.block)):
                x = inputs[r % len(inputs)]
                t = clock()
                fn(*x)
                times[name].append(clock() - t)
    return times
