"""CUDA backend benchmark: the digit network's training step (forward, gradients, Adam) and
inference on device="cuda", side by side with PyTorch on the same GPU in the same run.

    python benchmarks/bench_cuda.py [--steps 50] [--markdown results.md]

Rows: training at batch 64/256/1024 in float32 without tf32, float32 with tf32, and float16
storage; inference at batch 1/64/1024 (float32, no tf32). Each row times
  - metalnn, batches queued with encode_batch (double buffering, max_in_flight=2), the
    executor replaying each step as one CUDA graph (the default), including the copy of every
    batch from host numpy arrays;
  - metalnn with METALNN_CUDA_GRAPHS=0 (every kernel launched one by one);
  - PyTorch eager (static device inputs; cuDNN, no benchmark mode), and
  - PyTorch with the whole step captured by torch.cuda.graph and replayed.
Ratios are PyTorch time / metalnn time (above 1: metalnn faster). Element-wise kernel rows
(relu forward/backward, max-pool backward, gelu, softmax, dropout) come first.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

import metalnn as mnn


def _time(fn, sync, reps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t0) / reps


# -- element-wise kernels ---------------------------------------------------------------

def elementwise_rows(dtype: str, reps: int) -> list:
    """relu fwd/bwd, max-pool bwd, gelu, softmax and dropout on (256, 64, 32, 32): metalnn vs torch."""
    import torch

    x = np.random.default_rng(0).standard_normal((256, 64, 32, 32)).astype(dtype)
    xm = mnn.Tensor(x, device="cuda")
    xt = torch.from_numpy(x).cuda()
    last = {}

    # metalnn ops run on the backend stream; reading one element back waits for it.
    def sync_m():
        mnn.ops.neuron_forward(mnn.Tensor(np.zeros(1, dtype), device="cuda"), "relu").numpy()

    dym, dyt = mnn.Tensor(x, device="cuda"), xt.clone()
    pm, pt = mnn.ops.max_pool2d_forward(xm, 2), torch.nn.functional.max_pool2d(xt, 2, return_indices=True)
    pdym, pdyt = mnn.Tensor(np.asarray(pm[0]), device="cuda"), pt[0].clone()
    # Last entry: bytes moved in units of x.nbytes (reads + writes; metalnn's int32 argmax), for GB/s.
    cases = [
        ("relu fwd", lambda: last.__setitem__("y", mnn.ops.neuron_forward(xm, "relu")), lambda: torch.relu(xt)),
        ("relu bwd", lambda: last.__setitem__("y", mnn.ops.neuron_backward(dym, xm, "relu")),
         lambda: torch.ops.aten.threshold_backward(dyt, xt, 0), 3),
        ("max-pool 2x2 bwd", lambda: last.__setitem__("y", mnn.ops.max_pool2d_backward(pdym, pm[1])),
         lambda: torch.ops.aten.max_pool2d_with_indices_backward(pdyt, xt, [2, 2], [2, 2], [0, 0], [1, 1], False,
                                                                 pt[1]), 1.25 + 1.0 / x.itemsize),
        ("gelu fwd", lambda: last.__setitem__("y", mnn.ops.neuron_forward(xm, "gelu")),
         lambda: torch.nn.functional.gelu(xt)),
        ("softmax(C=64) fwd", lambda: last.__setitem__("y", mnn.ops.softmax_forward(xm)),
         lambda: torch.softmax(xt, dim=1)),
        ("dropout fwd", lambda: last.__setitem__("y", mnn.ops.dropout_forward(xm, 0.5, 1)[0]),
         lambda: torch.nn.functional.dropout(xt, 0.5)),
    ]
    rows = []
    for name, fm, ft, *traffic in cases:
        tm = _time(fm, sync_m, reps)
        tt = _time(ft, torch.cuda.synchronize, reps)
        moved = (traffic[0] if traffic else 2) * x.nbytes
        rows.append((f"{name} {dtype} {tuple(x.shape)}", tm * 1e3, tt * 1e3, tt / tm, moved / tm / 1e9))
    return rows


# -- the digit network -------------------------------------------------------------------

def metalnn_net(dtype: str, optimizer):
    """The seed's digit network (examples.digit_graph) with weights of `dtype`."""
    from metalnn import graph as g
    from metalnn.graph.data_source import ConvolutionWeights

    def weights(cin, cout, kernel, k, label):
        return ConvolutionWeights(cin, cout, kernel, optimizer=optimizer, seed=k, label=label, dtype=dtype)

    src = g.ImageNode("image")
    c1 = g.ConvolutionNode(src, weights(1, 32, 5, 1, "conv1"), padding="same")
    r1 = g.NeuronReLUNode(c1.result, label="relu1")
    p1 = g.PoolingMaxNode(r1.result, 2, 2, label="pool1")
    c2 = g.ConvolutionNode(p1.result, weights(32, 64, 5, 2, "conv2"), padding="same")
    r2 = g.NeuronReLUNode(c2.result, label="relu2")
    p2 = g.PoolingMaxNode(r2.result, 2, 2, label="pool2")
    f1 = g.FullyConnectedNode(p2.result, weights(64, 1024, (7, 7), 3, "fc1"))
    r3 = g.NeuronReLUNode(f1.result, label="relu3")
    d = g.DropoutNode(r3.result, 0.5, seed=7, label="dropout")
    f2 = g.FullyConnectedNode(d.result, weights(1024, 10, 1, 4, "fc2"))
    loss = g.SoftmaxCrossEntropyLossNode(f2.result, label="loss")
    return f2.result, loss


def time_metalnn(batch: int, dtype: str, training: bool, steps: int, graphs: bool) -> float:
    """Seconds per batch, batches queued with encode_batch (at most 2 in flight)."""
    os.environ["METALNN_CUDA_GRAPHS"] = "1" if graphs else "0"  # read when the executor is made
    rng = np.random.default_rng(0)
    xs = [rng.random((batch, 1, 28, 28)).astype(dtype) for _ in range(2)]
    ys = [rng.integers(0, 10, batch).astype(np.int32) for _ in range(2)]
    logits, loss = metalnn_net(dtype, mnn.Adam(learning_rate=1e-3) if training else None)
    graph = mnn.graph.Graph.training(loss, device="cuda") if training else mnn.graph.Graph(logits, device="cuda")

    def run(n):
        handles = []
        for i in range(n):
            h = (graph.encode_batch(xs[i % 2], labels=ys[i % 2]) if training else graph.encode_batch(xs[i % 2]))
            handles.append(h)
            if len(handles) > 2:
                handles.pop(0).wait()
        for h in handles:
            h.wait()
        return handles[-1]

    run(5)  # compile, algorithm choice, first capture
    t0 = time.perf_counter()
    last = run(steps)
    out = float(np.asarray(last.loss)) if training else float(np.asarray(last.result).ravel()[0])
    dt = (time.perf_counter() - t0) / steps
    if not np.isfinite(out):
        print(f"  warning: metalnn {dtype} batch {batch} produced {out}", file=sys.stderr)
    return dt


def torch_model(dtype: str):
    import torch
    from torch import nn

    model = nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, 10),
    ).cuda()
    return model.to(torch.float16 if dtype == "float16" else torch.float32)


def time_torch(batch: int, dtype: str, training: bool, steps: int, graphed: bool) -> float:
    import torch
    from torch import nn

    tdt = torch.float16 if dtype == "float16" else torch.float32
    model = torch_model(dtype)
    rng = np.random.default_rng(0)
    tx = torch.from_numpy(rng.random((batch, 1, 28, 28)).astype(np.float32)).cuda().to(tdt)
    ty = torch.from_numpy(rng.integers(0, 10, batch)).cuda()
    loss_fn = nn.CrossEntropyLoss()
    if training:
        model.train()
        # eps 1e-4 keeps a pure-float16 Adam finite; it does not change the work done.
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4 if dtype == "float16" else 1e-8,
                               capturable=graphed)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(tx).float(), ty)
            loss.backward()
            opt.step()
    else:
        model.eval()

        def step():
            with torch.no_grad():
                return model(tx)

    if not graphed:
        return _time(step, torch.cuda.synchronize, steps)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    if training:
        opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(g):
        step()
    return _time(g.replay, torch.cuda.synchronize, steps)


def digit_rows(steps: int, train_batches, infer_batches, modes) -> list:
    import torch

    rows = []
    cases = [("train", b, m) for m in modes for b in train_batches] + [("infer", b, "fp32") for b in infer_batches]
    for kind, batch, mode in cases:
        dtype = "float16" if mode == "fp16" else "float32"
        tf32 = mode == "tf32"
        os.environ["METALNN_ALLOW_TF32"] = "1" if tf32 else "0"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        training = kind == "train"
        n = max(10, steps if batch >= 256 else steps * 4)
        t_g = time_metalnn(batch, dtype, training, n, graphs=True)
        t_e = time_metalnn(batch, dtype, training, n, graphs=False)
        t_te = time_torch(batch, dtype, training, n, graphed=False)
        t_tg = time_torch(batch, dtype, training, n, graphed=True)
        rows.append((kind, mode, batch, t_g, t_e, t_te, t_tg))

        print(f"  {kind} {mode} batch {batch}: metalnn {batch / t_g:,.0f} img/s (eager executor {batch / t_e:,.0f}), "
              f"torch eager {batch / t_te:,.0f}, torch graphed {batch / t_tg:,.0f}", flush=True)
    os.environ["METALNN_ALLOW_TF32"] = "0"
    os.environ["METALNN_CUDA_GRAPHS"] = "1"
    return rows


def profile_step(batch: int, steps: int = 10) -> None:
    """GPU time per kernel of metalnn's fp32 training step (torch.profiler sees every kernel
    of the process through CUPTI)."""
    from torch.profiler import ProfilerActivity, profile

    os.environ["METALNN_ALLOW_TF32"] = "0"
    rng = np.random.default_rng(0)
    x = rng.random((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    _, loss = metalnn_net("float32", mnn.Adam(learning_rate=1e-3))
    graph = mnn.graph.Graph.training(loss, device="cuda")
    for _ in range(3):
        graph.run(x, labels=y)
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        hs = [graph.encode_batch(x, labels=y) for _ in range(steps)]
        for h in hs:
            h.wait()
    print(f"-- profile: metalnn fp32 training step, batch {batch}, {steps} steps")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=60))


def format_digit_rows(rows) -> str:
    head = (f"| {'step':5s} | {'mode':4s} | {'batch':>5s} | {'metalnn img/s':>13s} | {'mnn no-graph':>12s} | "
            f"{'torch eager':>11s} | {'torch graphed':>13s} | {'vs eager':>8s} | {'vs graphed':>10s} |")
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for kind, mode, batch, t_g, t_e, t_te, t_tg in rows:
        lines.append(f"| {kind:5s} | {mode:4s} | {batch:5d} | {batch / t_g:13,.0f} | {batch / t_e:12,.0f} | "
                     f"{batch / t_te:11,.0f} | {batch / t_tg:13,.0f} | {t_te / t_g:7.2f}x | {t_tg / t_g:9.2f}x |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=50, help="repetitions of each element-wise kernel")
    ap.add_argument("--steps", type=int, default=50, help="timed batches per row (x4 below batch 256)")
    ap.add_argument("--train-batches", type=int, nargs="*", default=[64, 256, 1024])
    ap.add_argument("--infer-batches", type=int, nargs="*", default=[1, 64, 1024])
    ap.add_argument("--modes", nargs="*", default=["fp32", "tf32", "fp16"])
    ap.add_argument("--no-elementwise", action="store_true")
    ap.add_argument("--markdown", default="", help="also write the tables to this file")
    ap.add_argument("--profile", type=int, nargs="*", default=[],
                    help="batch sizes whose fp32 training step is profiled (top kernels by GPU time)")
    args = ap.parse_args()
    import torch

    header = (f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__} (CUDA {torch.version.cuda}, "
              f"cuDNN {torch.backends.cudnn.version()}); numpy {np.__version__}; Python {platform.python_version()}\n"
              f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(header, flush=True)
    out = [header, ""]
    if not args.no_elementwise:
        rows = []
        for dtype in ["float32", "float16"]:
            rows += elementwise_rows(dtype, args.reps)
        lines = [f"{'case':48s} {'metalnn ms':>11s} {'torch ms':>9s} {'ratio':>6s} {'mnn GB/s':>9s}"]
        lines += [f"{r[0]:48s} {r[1]:11.3f} {r[2]:9.3f} {r[3]:6.2f} {r[4]:9.0f}" for r in rows]
        print("\n".join(lines), flush=True)
        out += ["```", *lines, "```", ""]
    for batch in args.profile:
        profile_step(batch)
    table = format_digit_rows(digit_rows(args.steps, args.train_batches, args.infer_batches, args.modes))
    print(table, flush=True)
    out.append(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
