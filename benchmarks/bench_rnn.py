"""RNN training step (forward over the sequence + backpropagation through time): metalnn vs PyTorch.

    python benchmarks/bench_rnn.py [--device cpu|cuda] [--batch 32] [--steps 20] [--input 32] [--hidden 200]
                                   [--iters 30] [--threads N] [--cells lstm,gru]

Both libraries run in this process on the same data with the same number of threads (CPU) or on
the same GPU; one step is forward (keeping what the gradient needs) plus the gradients of the
inputs and of every weight, for dL/dy given. The default is the activity classifier's LSTM
(batch 32, 20 steps, 32 input features, 200 units). Prints ms per step and metalnn / PyTorch
speed ratios (> 1: metalnn is faster).

Note: PyTorch's GRU applies the reset gate after the recurrent product (r * (U_n h + b)),
metalnn's GRU (as MPS and the original GRU) before it (U_n (r * h)); the work is the same size.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import metalnn as mnn
from metalnn.ops.rnn import rnn_backward, rnn_forward
from metalnn.rnn import RNN_GATES

CLOCK = time.perf_counter


def median_time(step, iters: int, warmup: int, sync=None) -> float:
    for _ in range(warmup):
        step()
    if sync:
        sync()
    times = []
    for _ in range(iters):
        t = CLOCK()
        step()
        if sync:
            sync()
        times.append(CLOCK() - t)
    return float(np.median(times))


def bench_metalnn(cell, x, dy, args) -> float:
    G = RNN_GATES[cell]
    layers = [(cell, args.input if k == 0 else args.hidden, args.hidden, "tanh", False, False)
              for k in range(args.layers)]
    r = np.random.default_rng(1)
    w = []
    for spec in layers:
        H, inp = spec[2], spec[1]
        w += [(r.standard_normal(s) * 0.1).astype(np.float32) for s in ((G * H, inp), (G * H, H), (G * H,))]
    sync = None
    if args.device != "cpu":
        x, dy = mnn.tensor(x, device=args.device), mnn.tensor(dy, device=args.device)
        w = [mnn.tensor(a, device=args.device) for a in w]
        sync = _mnn_sync(args.device)

    def step():
        _, _, _, st = rnn_forward(x, w, layers, training=True)
        rnn_backward(x, dy, w, layers, False, st)

    return median_time(step, args.iters, args.warmup, sync)


def _mnn_sync(device: str):
    # metalnn ops run on the backend stream; reading one element back waits for it.
    probe = mnn.Tensor(np.zeros(1, np.float32), device=device)

    def sync():
        mnn.ops.neuron_forward(probe, "relu").numpy()
    return sync


def bench_torch(cell, x, dy, args) -> tuple[float | None, str]:
    try:
        import torch
    except ImportError:
        return None, "PyTorch not installed"
    if cell not in ("lstm", "gru"):
        return None, f"no PyTorch {cell}"
    dev = torch.device(args.device)
    mod = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(args.input, args.hidden, num_layers=args.layers).to(dev)
    tx = torch.from_numpy(x).to(dev).requires_grad_(True)
    tdy = torch.from_numpy(dy).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None

    def step():
        mod.zero_grad(set_to_none=True)
        tx.grad = None
        y, _ = mod(tx)
        y.backward(tdy)

    return median_time(step, args.iters, args.warmup, sync), f"PyTorch {torch.__version__}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (PyTorch uses cuDNN there)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=20, help="sequence length T")
    p.add_argument("--input", type=int, default=32)
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for both (default: all cores)")
    p.add_argument("--cells", default="lstm,gru")
    p.add_argument("--clock", choices=("wall", "process"), default="wall",
                   help="wall time, or this process's CPU time (steadier on a shared machine; use with --threads 1)")
    args = p.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "process" else time.perf_counter
    threads = args.threads or os.cpu_count() or 1
    mnn.set_num_threads(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    print(f"machine: {platform.machine()}  {os.cpu_count()} cores; threads {threads}; device {args.device}; "
          f"metalnn BLAS: {mnn.blas_info()}")
    print(f"RNN training step (forward + all gradients), batch {args.batch}, T {args.steps}, input {args.input}, "
          f"hidden {args.hidden}, layers {args.layers}, median of {args.iters} ({args.clock} clock)")
    r = np.random.default_rng(0)
    x = r.standard_normal((args.steps, args.batch, args.input)).astype(np.float32)
    dy = r.standard_normal((args.steps, args.batch, args.hidden)).astype(np.float32)
    for cell in args.cells.split(","):
        t_m = bench_metalnn(cell, x, dy, args)
        t_t, name = bench_torch(cell, x, dy, args)
        line = f"  {cell:5s} metalnn {t_m * 1e3:8.3f} ms/step"
        if t_t is not None:
            line += f"   {name} {t_t * 1e3:8.3f} ms/step   ratio metalnn/PyTorch speed {t_t / t_m:5.2f}x"
        else:
            line += f"   ({name})"
        print(line, flush=True)


if __name__ == "__main__":
    main()
