"""Soak test: many training steps of the digit network graph; memory must not grow.

    python benchmarks/soak.py [--steps 10000] [--batch-size 16] [--width 1.0] [--warmup 500]

Trains the graph (Adam, dropout on) on random batches, double-buffered, and samples the
process's resident memory (RSS) and the CPU allocator's statistics after the warm-up and
at the end. Exits 1 when RSS grew by 5% or more after warm-up, or when the allocator's
bytes in use drifted. tests/test_soak.py runs a short variant.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import metalnn as mnn
from metalnn.examples.digit_graph import digit_network


def rss_bytes() -> int:
    """Resident set size now (Linux /proc; ru_maxrss, a peak, elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def soak(steps: int, batch_size: int, width: float = 1.0, warmup: int = 500, progress: bool = True) -> dict:
    """Runs the soak; returns the measurements (RSS and allocator stats at warm-up and end)."""
    net = digit_network(mnn.Adam(learning_rate=1e-3), width=width)
    graph = net.training_graph()
    r = np.random.default_rng(0)
    batches = [(r.standard_normal((batch_size, 1, 28, 28)).astype(np.float32),
                r.integers(0, 10, batch_size).astype(np.int32)) for _ in range(4)]
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=steps, desc="soak", unit="step")
        except ImportError:
            pass
    pending, at_warmup, losses = [], None, []
    t0 = time.perf_counter()
    for i in range(steps):
        x, y = batches[i % len(batches)]
        pending.append(graph.encode_batch(x, y))
        if len(pending) > 2:
            losses.append(float(pending.pop(0).wait().loss))
        if i + 1 == warmup:
            graph.synchronize()
            at_warmup = (rss_bytes(), dict(mnn.allocator_stats()))
        if bar is not None:
            bar.update(1)
    for h in pending:
        losses.append(float(h.wait().loss))
    graph.synchronize()
    if bar is not None:
        bar.close()
    end = (rss_bytes(), dict(mnn.allocator_stats()))
    if at_warmup is None:
        raise ValueError(f"--warmup ({warmup}) must be below --steps ({steps})")
    return {"steps": steps, "batch_size": batch_size, "seconds": time.perf_counter() - t0,
            "rss_warmup": at_warmup[0], "rss_end": end[0],
            "rss_growth": (end[0] - at_warmup[0]) / at_warmup[0],
            "alloc_warmup": at_warmup[1], "alloc_end": end[1],
            "loss_first": float(np.mean(losses[:50])), "loss_last": float(np.mean(losses[-50:])),
            "all_finite": bool(np.all(np.isfinite(losses)))}


def verdict(m: dict) -> list[str]:
    """What is wrong with a soak's measurements (empty when it passed)."""
    problems = []
    if m["rss_growth"] >= 0.05:
        problems.append(f"RSS grew {100 * m['rss_growth']:.1f}% after warm-up")
    a, b = m["alloc_warmup"], m["alloc_end"]
    if b["bytes_in_use"] != a["bytes_in_use"]:
        problems.append(f"allocator bytes in use drifted: {a['bytes_in_use']} -> {b['bytes_in_use']}")
    if b["bytes_cached"] + b["bytes_in_use"] > 1.05 * (a["bytes_cached"] + a["bytes_in_use"]):
        problems.append("allocator cache grew after warm-up")
    if not m["all_finite"]:
        problems.append("a loss was not finite")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--width", type=float, default=1.0, help="channel-count scale of the network")
    p.add_argument("--warmup", type=int, default=500)
    a = p.parse_args(argv)
    m = soak(a.steps, a.batch_size, a.width, a.warmup)
    mib = 1 << 20
    print(f"{m['steps']} steps at batch {m['batch_size']} in {m['seconds']:.0f} s; "
          f"RSS {m['rss_warmup'] / mib:.1f} MiB after warm-up -> {m['rss_end'] / mib:.1f} MiB "
          f"({100 * m['rss_growth']:+.2f}%); allocator in use {m['alloc_warmup']['bytes_in_use']} -> "
          f"{m['alloc_end']['bytes_in_use']} B, cached {m['alloc_warmup']['bytes_cached']} -> "
          f"{m['alloc_end']['bytes_cached']} B; loss {m['loss_first']:.3f} -> {m['loss_last']:.3f}")
    problems = verdict(m)
    for line in problems:
        print("FAIL:", line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
