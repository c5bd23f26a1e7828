"""CUDA backend benchmark: element-wise kernels (neuron, dropout, softmax) and the digit
network training step (graph on device="cuda", Adam, fp32 without tf32) against PyTorch
CUDA eager on the same GPU in the same run.

    python benchmarks/bench_cuda.py [--reps 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import metalnn as mnn


def _time(fn, sync, reps: int) -> float:
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batches", type=int, nargs="*", default=[64, 1024])
    args = ap.parse_args()
    import torch

    print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    sync_t = torch.cuda.synchronize
    rows = []
    for dtype in ["float32", "float16"]:
        rows += elementwise_rows(dtype, args.reps, sync_t)
    print(f"{'case':48s} {'metalnn ms':>11s} {'torch ms':>9s} {'ratio':>6s} {'mnn GB/s':>9s}")
    for r in rows:
        print(f"{r[0]:48s} {r[1]:11.3f} {r[2]:9.3f} {r[3]:6.2f} {r[4]:9.0f}")
    for batch in args.batches:
        training_step(batch, args.steps)


def elementwise_rows(dtype: str, reps: int, sync_t) -> list:
    """relu, gelu, softmax and dropout on (256, 64, 32, 32): metalnn vs torch, one row each."""
    import torch

    x = np.random.default_rng(0).standard_normal((256, 64, 32, 32)).astype(dtype)
    xm = mnn.Tensor(x, device="cuda")
    xt = torch.from_numpy(x).cuda()
    last = {}

    # metalnn ops run on the backend stream; reading one element back waits for it.
    def sync_m():
        if "y" in last:
            mnn.ops.neuron_forward(mnn.Tensor(np.zeros(1, dtype), device="cuda"), "relu").numpy()

    cases = [
        ("relu fwd", lambda: last.__setitem__("y", mnn.ops.neuron_forward(xm, "relu")), lambda: torch.relu(xt)),
        ("gelu fwd", lambda: last.__setitem__("y", mnn.ops.neuron_forward(xm, "gelu")),
         lambda: torch.nn.functional.gelu(xt)),
        ("softmax(C=64) fwd", lambda: last.__setitem__("y", mnn.ops.softmax_forward(xm)),
         lambda: torch.softmax(xt, dim=1)),
        ("dropout fwd", lambda: last.__setitem__("y", mnn.ops.dropout_forward(xm, 0.5, 1)[0]),
         lambda: torch.nn.functional.dropout(xt, 0.5)),
    ]
    rows = []
    for name, fm, ft in cases:
        tm = _time(fm, sync_m, reps)
        tt = _time(ft, sync_t, reps)
        rows.append((f"{name} {dtype} {tuple(x.shape)}", tm * 1e3, tt * 1e3, tt / tm, 2 * x.nbytes / tm / 1e9))
    return rows


def training_step(batch: int, steps: int) -> None:
    """Digit network training step (forward, gradients, Adam), float32 without tf32: the
    metalnn graph on device="cuda" vs PyTorch CUDA eager, same sizes, same run."""
    import torch
    from torch import nn

    from metalnn.examples.digit_graph import digit_network

    rng = np.random.default_rng(0)
    x = rng.random((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    graph = digit_network(mnn.Adam(learning_rate=1e-3)).training_graph(device="cuda")
    for _ in range(3):
        graph.run(x, labels=y)
    t0 = time.perf_counter()
    for _ in range(steps):
        h = graph.run(x, labels=y)
    float(np.asarray(h.loss))
    t_m = (time.perf_counter() - t0) / steps

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    model = nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, 10),
    ).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    tx, ty = torch.from_numpy(x).cuda(), torch.from_numpy(y.astype(np.int64)).cuda()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(tx), ty)
        loss.backward()
        opt.step()

    t_t = _time(step, torch.cuda.synchronize, steps)
    print(f"digit training step fp32 batch {batch:5d}: metalnn {batch / t_m:10.0f} img/s ({t_m * 1e3:.3f} ms)  "
          f"torch eager {batch / t_t:10.0f} img/s ({t_t * 1e3:.3f} ms)  ratio {t_t / t_m:.2f}x")


if __name__ == "__main__":
    main()
