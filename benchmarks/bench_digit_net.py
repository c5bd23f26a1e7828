"""Digit network training step (forward, every gradient, Adam): metalnn vs PyTorch CPU.

    python benchmarks/bench_digit_net.py [--batch-size 64] [--steps 30] [--threads N]
                                         [--interleave ROUNDS] [--profile]

Every path (kernel API, graph.run, the graph pipelined through encode_batch, PyTorch) runs
in this process on the same random batch with the same number of threads, in ROUNDS rounds
of --steps steps per path in turn, so all see the same machine load (use several rounds on a
shared machine); prints ms/step and images/s (median over rounds, with the spread), the
pipelined / plain graph throughput and the ratios to PyTorch.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import metalnn as mnn
from metalnn.examples.digit_net import DigitNet


def metalnn_paths(x, y) -> dict:
    """Each metalnn path as a function running n training steps and returning when all are done."""
    from metalnn.examples.digit_graph import digit_network

    net = DigitNet(seed=0)
    graph = digit_network(mnn.Adam(learning_rate=1e-3)).training_graph()
    piped = digit_network(mnn.Adam(learning_rate=1e-3)).training_graph()

    def kernels(n):
        for _ in range(n):
            net.train_step(x, y)

    def plain(n):
        for _ in range(n):
            graph.run(x, labels=y)

    def pipelined(n):
        # Batches queued back to back (double buffering); they run on the executor's thread.
        for _ in range(n):
            piped.encode_batch(x, labels=y)
        piped.synchronize()

    return {"metalnn kernel API": kernels, "metalnn graph": plain, "metalnn graph, pipelined": pipelined}


def torch_step(x, y, threads):
    """A PyTorch training step of the same network, or None without PyTorch."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return None
    torch.set_num_threads(threads)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(tx), ty)
        loss.backward()
        opt.step()

    return step


def timed_rounds(paths: dict, steps: int, warmup: int, rounds: int) -> dict:
    """Seconds per step of each path in each round: every round runs `steps` steps of every
    path in turn, so all paths see the same machine load. Each path warms up its own way
    (the pipelined graph on its executor thread, whose scratch buffers are its own)."""
    for fn in paths.values():
        fn(warmup)
    times = {name: [] for name in paths}
    for _ in range(rounds):
        for name, fn in paths.items():
            t = time.perf_counter()
            fn(steps)
            times[name].append((time.perf_counter() - t) / steps)
    return {name: np.array(ts) for name, ts in times.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="threads for both libraries (default: all cores)")
    p.add_argument("--profile", action="store_true", help="also print the per-layer profile of the step")
    p.add_argument("--interleave", type=int, default=0, metavar="ROUNDS",
                   help="rounds of --steps steps per path, paths in turn (default 1)")
    args = p.parse_args(argv)
    threads = args.threads or os.cpu_count() or 1
    mnn.set_num_threads(threads)
    r = np.random.default_rng(0)
    x = r.random((args.batch_size, 1, 28, 28), dtype=np.float32)
    y = r.integers(0, 10, args.batch_size).astype(np.int32)

    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores; "
          f"threads {threads}; metalnn BLAS: {mnn.blas_info()}; load average {os.getloadavg()[0]:.2f}")
    rounds = max(1, args.interleave)
    print(f"digit network training step, batch {args.batch_size}: {rounds} round(s) of {args.steps} steps per "
          f"path, interleaved; ms/step is the median over rounds")
    paths = metalnn_paths(x, y)
    tstep = torch_step(x, y, threads)
    if tstep is not None:
        import torch

        def torch_steps(n):
            for _ in range(n):
                tstep()

        paths[f"PyTorch {torch.__version__}"] = torch_steps
    times = timed_rounds(paths, args.steps, args.warmup, rounds)
    b = args.batch_size
    for name, ts in times.items():
        spread = f"  (rounds: {b / ts.max():.0f}-{b / ts.min():.0f} images/s)" if rounds > 1 else ""
        print(f"  {name:<26}{np.median(ts) * 1e3:8.2f} ms/step  {b / np.median(ts):8.0f} images/s{spread}")
    plain, piped = times["metalnn graph"], times["metalnn graph, pipelined"]
    print(f"  pipelined / plain graph throughput: {np.median(plain) / np.median(piped):.2f}x"
          + (f" (per round {(plain / piped).min():.2f}-{(plain / piped).max():.2f}x)" if rounds > 1 else ""))
    if tstep is None:
        print("  PyTorch: not installed (pip install torch) -- no comparison")
    else:
        t_torch = np.median(times[f"PyTorch {torch.__version__}"])
        print(f"  ratio metalnn (graph, pipelined) / PyTorch: {t_torch / np.median(piped):.2f}x; "
              f"kernel API / PyTorch: {t_torch / np.median(times['metalnn kernel API']):.2f}x")
    if args.profile:
        import profile_digit_net

        print()
        profile_digit_net.main(["--batch-size", str(args.batch_size)])


if __name__ == "__main__":
    main()
