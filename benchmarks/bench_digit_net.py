"""Digit network training step (forward, every gradient, Adam): metalnn vs PyTorch CPU.

    python benchmarks/bench_digit_net.py [--batch-size 64] [--steps 30] [--threads N]
                                         [--interleave ROUNDS] [--profile]

Both run in this process on the same random batches, each with the same number of
threads; prints images/s for both and the ratio metalnn / PyTorch. With --interleave,
the metalnn graph (pipelined) and PyTorch alternate in ROUNDS rounds of --steps steps
each, so both see the same machine load (use it on a shared machine); the ratio is
of the medians over rounds, with the spread printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import metalnn as mnn
from metalnn.examples.digit_net import DigitNet


def time_steps(step, steps: int, warmup: int) -> float:
    """Median seconds per step over `steps` timed steps after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def bench_metalnn(x, y, steps, warmup) -> float:
    net = DigitNet(seed=0)
    return time_steps(lambda: net.train_step(x, y), steps, warmup)


def bench_graph(x, y, steps, warmup) -> float:
    from metalnn.examples.digit_graph import digit_network

    graph = digit_network(mnn.Adam(learning_rate=1e-3)).training_graph()
    return time_steps(lambda: graph.run(x, labels=y), steps, warmup)


def bench_graph_pipelined(x, y, steps, warmup) -> float:
    """Seconds per batch with batches queued back to back (double buffering)."""
    from metalnn.examples.digit_graph import digit_network

    graph = digit_network(mnn.Adam(learning_rate=1e-3)).training_graph()
    for _ in range(warmup):
        graph.run(x, labels=y)
    t = time.perf_counter()
    for _ in range(steps):
        graph.encode_batch(x, labels=y)
    graph.synchronize()
    return (time.perf_counter() - t) / steps


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


def bench_torch(x, y, steps, warmup, threads) -> float | None:
    step = torch_step(x, y, threads)
    return None if step is None else time_steps(step, steps, warmup)


def interleaved(x, y, steps, warmup, rounds, threads) -> None:
    """metalnn graph (pipelined) and PyTorch alternating, `steps` steps each per round."""
    from metalnn.examples.digit_graph import digit_network

    graph = digit_network(mnn.Adam(learning_rate=1e-3)).training_graph()
    tstep = torch_step(x, y, threads)
    if tstep is None:
        print("  PyTorch: not installed (pip install torch) -- no comparison")
        return

    def mnn_batch():
        for _ in range(steps):
            graph.encode_batch(x, labels=y)
        graph.synchronize()

    def torch_batch():
        for _ in range(steps):
            tstep()

    for _ in range(warmup):
        graph.run(x, labels=y)
        tstep()
    t_m, t_t = [], []
    for _ in range(rounds):
        for fn, out in ((mnn_batch, t_m), (torch_batch, t_t)):
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) / steps)
    import torch

    b = x.shape[0]
    for name, ts in (("metalnn graph, pipelined", t_m), (f"PyTorch {torch.__version__}", t_t)):
        ts = np.array(ts)
        print(f"  {name:<26}{np.median(ts) * 1e3:8.2f} ms/step  {b / np.median(ts):8.0f} images/s"
              f"  (rounds: {b / ts.max():.0f}-{b / ts.min():.0f})")
    r = np.array(t_t) / np.array(t_m)
    print(f"  ratio metalnn / PyTorch: {np.median(np.array(t_t)) / np.median(np.array(t_m)):.2f}x "
          f"(per round {r.min():.2f}-{r.max():.2f}x)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="threads for both libraries (default: all cores)")
    p.add_argument("--profile", action="store_true", help="also print the per-layer profile of the step")
    p.add_argument("--interleave", type=int, default=0, metavar="ROUNDS",
                   help="alternate metalnn graph and PyTorch in ROUNDS rounds of --steps steps")
    args = p.parse_args(argv)
    threads = args.threads or os.cpu_count() or 1
    mnn.set_num_threads(threads)
    r = np.random.default_rng(0)
    x = r.random((args.batch_size, 1, 28, 28), dtype=np.float32)
    y = r.integers(0, 10, args.batch_size).astype(np.int32)

    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores; "
          f"threads {threads}; metalnn BLAS: {mnn.blas_info()}")
    if args.interleave:
        print(f"digit network training step, batch {args.batch_size}, {args.interleave} interleaved rounds "
              f"of {args.steps} steps")
        interleaved(x, y, args.steps, args.warmup, args.interleave, threads)
        return
    print(f"digit network training step, batch {args.batch_size}, median of {args.steps} steps")
    def row(name, t):
        print(f"  {name:<26}{t * 1e3:8.2f} ms/step  {args.batch_size / t:8.0f} images/s")

    t_kernels = bench_metalnn(x, y, args.steps, args.warmup)
    row("metalnn kernel API", t_kernels)
    t_graph = bench_graph(x, y, args.steps, args.warmup)
    row("metalnn graph", t_graph)
    t_mnn = bench_graph_pipelined(x, y, args.steps, args.warmup)
    row("metalnn graph, pipelined", t_mnn)
    ips_mnn = args.batch_size / t_mnn
    t_torch = bench_torch(x, y, args.steps, args.warmup, threads)
    if t_torch is None:
        print("  PyTorch: not installed (pip install torch) -- no comparison")
        return
    import torch

    ips_torch = args.batch_size / t_torch
    row(f"PyTorch {torch.__version__}", t_torch)
    print(f"  ratio metalnn (graph, pipelined) / PyTorch: {ips_mnn / ips_torch:.2f}x; "
          f"kernel API / PyTorch: {t_torch / t_kernels:.2f}x")
    if args.profile:
        import profile_digit_net

        print()
        profile_digit_net.main(["--batch-size", str(args.batch_size)])


if __name__ == "__main__":
    main()
