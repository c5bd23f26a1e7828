"""Activity classifier training step (conv1d -> LSTM 200 -> dense, softmax cross-entropy, Adam):
metalnn vs PyTorch CPU, side by side in one process.

    python benchmarks/bench_activity.py [--batch 32] [--runs 60] [--threads N] [--clock wall|process]
                                        [--settle-ms 50] [--device cpu|cuda]

The network and shapes are those of python/metalnn/examples/activity.py: series of 6 channels x
100 samples, a 1 x 5 convolution with stride 5 to 20 steps of 32 features, an LSTM of 200 units
whose final state feeds a dense layer to 4 classes. metalnn runs it two ways, as the example
does: the kernel API (ActivityClassifier.train_step: RNNMatrixTrainingLayer) and the derived
training graph (``--graph`` in the example). Steps are interleaved round by round (``--block``
steps of each per round) so other load hits every path alike; on the cpu each block starts after
an untimed pause (``--settle-ms``), since the idle workers of the library that ran the block
before keep spinning for a while (PyTorch's OpenMP workers for several ms: without the pause the
first metalnn step after a PyTorch block took twice its time). Prints sequences/s (median step) and the
ratio metalnn / PyTorch (> 1: metalnn is faster) two ways: the ratio of the medians over the run,
and per round (the ratio of the two paths' median steps within one round, whose steps ran
seconds apart at most) the median, 25-75% range and share of rounds >= 1.5x, which a slow spell of
the shared host hits on both sides alike. ``--device cuda`` times the training graph on
the GPU against PyTorch on the same GPU (cuDNN's LSTM), both reading each batch from host arrays.
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np
from _interleave import add_timing_args, clock_of, threads_of, time_interleaved

import metalnn as mnn
from metalnn.examples.activity import ActivityClassifier, build_graphs


def torch_step_fn(net: ActivityClassifier, batch: int, threads: int, device: str = "cpu"):
    """The same network in PyTorch, starting from the metalnn network's weights."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    C, H = net.params["conv_w"].shape[0], net.lstm_weights[1].shape[1]

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(6, C, 5, stride=5)
            self.lstm = nn.LSTM(C, H)
            self.fc = nn.Linear(H, 4)

        def forward(self, x):  # x (B, 6, 100)
            z = self.conv(x).permute(2, 0, 1)  # (20, B, C)
            _, (h, _) = self.lstm(z)
            return self.fc(h[0])

    m = Model()
    with torch.no_grad():
        m.conv.weight.copy_(torch.from_numpy(net.params["conv_w"][:, :, 0, :]))
        m.conv.bias.copy_(torch.from_numpy(net.params["conv_b"]))
        m.fc.weight.copy_(torch.from_numpy(net.params["fc_w"]))
        m.fc.bias.copy_(torch.from_numpy(net.params["fc_b"]))
    m = m.to(device)
    opt = torch.optim.Adam(m.parameters(), lr=net.learning_rate)
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(m(torch.from_numpy(x).to(device)), torch.from_numpy(y.astype(np.int64)).to(device))
        loss.backward()
        opt.step()
        return loss.item()

    return step, f"PyTorch {torch.__version__}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    add_timing_args(ap, runs=60, warmup=5, block=5)
    ap.add_argument("--paths", default="kernel,graph,pytorch", help="paths to time (comma separated)")
    ap.add_argument("--profile", action="store_true", help="split the kernel-API step into its parts")
    ap.add_argument("--settle-ms", type=float, default=None,
                    help="pause before each block so the other library's idle workers stop spinning "
                         "(default 50 on cpu, 0 on cuda; 0: blocks back to back)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cuda: the training graph and PyTorch on the GPU (the kernel-API path is CPU only)")
    args = ap.parse_args(argv)
    if args.device == "cuda" and args.paths == "kernel,graph,pytorch":
        args.paths = "graph,pytorch"
    clock = clock_of(args)
    threads = threads_of(args)
    mnn.set_num_threads(threads)

    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((args.batch, 6, 100)).astype(np.float32) for _ in range(4)]
    ys = [rng.integers(0, 4, args.batch).astype(np.int32) for _ in range(4)]
    wanted = args.paths.split(",")
    paths = {}
    if "kernel" in wanted:
        net = ActivityClassifier()
        paths["kernel"] = lambda x, y: net.train_step(x, y)[0]
    if "graph" in wanted:
        gnet = ActivityClassifier()
        train_graph, _, _ = build_graphs(gnet, device=args.device)
        paths["graph"] = lambda x, y: train_graph.run(np.ascontiguousarray(x[:, :, None, :]), labels=y).loss
    name = None
    if "pytorch" in wanted:
        try:
            paths["pytorch"], name = torch_step_fn(ActivityClassifier(), args.batch, threads, args.device)
        except ImportError:
            pass

    if args.settle_ms is None:
        args.settle_ms = 50.0 if args.device == "cpu" else 0.0
    times = time_interleaved(paths, list(zip(xs, ys)), args)

    print(f"machine: {platform.machine()} {os.cpu_count()} cores; threads {threads}; metalnn BLAS: "
          f"{mnn.blas_info()}; load average {os.getloadavg()[0]:.2f}")
    if args.device == "cuda":
        import torch

        print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    print(f"activity classifier training step on {args.device}, batch {args.batch} "
          f"(6 x 100 -> conv k5 s5 -> LSTM 200 -> dense 4, Adam), {args.runs} steps per path "
          f"in interleaved blocks of {args.block} ({args.clock} clock, {args.settle_ms:g} ms pause before each block)")
    base = float(np.median(times["pytorch"])) if "pytorch" in times else None
    for k, ts in times.items():
        med = float(np.median(ts))
        label = name if k == "pytorch" else f"metalnn {k}"
        line = f"  {label:22s} {med * 1e3:8.3f} ms/step  {args.batch / med:9.0f} seq/s"
        if base and k != "pytorch":
            line += f"   speed ratio metalnn/PyTorch {base / med:5.2f}x"
        print(line, flush=True)
    if base:
        for k in times:
            if k != "pytorch":
                r = round_ratios(times["pytorch"], times[k], args.block)
                q1, q2, q3 = np.percentile(r, [25, 50, 75])
                print(f"  per round ({len(r)} rounds of {args.block}) metalnn {k}/PyTorch: median {q2:4.2f}x, "
                      f"25-75% {q1:4.2f}-{q3:4.2f}x, rounds >= 1.5x: {np.mean(r >= 1.5) * 100:3.0f}%", flush=True)
    if args.profile:
        profile(args, clock, xs, ys)


def round_ratios(base: list[float], other: list[float], block: int) -> np.ndarray:
    """Per round of ``block`` steps of each path: median base step / median other step."""
    n = min(len(base), len(other)) // block
    return np.array([np.median(base[i * block:(i + 1) * block]) / np.median(other[i * block:(i + 1) * block])
                     for i in range(n)])


def profile(args, clock, xs, ys) -> None:
    """Times the kernel-API step's parts: conv + LSTM forward, the whole gradient, Adam."""
    from metalnn import ops

    net = ActivityClassifier()
    parts: dict[str, list[float]] = {"forward": [], "gradients (incl. forward)": [], "adam": []}
    for r in range(args.runs):
        x, y = xs[r % 4], ys[r % 4]
        t = clock()
        net.forward(x, [])
        parts["forward"].append(clock() - t)
        t = clock()
        _, _, grads = net.gradients(x, y)
        parts["gradients (incl. forward)"].append(clock() - t)
        t = clock()
        net.step_count += 1
        ops.adam_step_many(net.parameters(), grads, net.m, net.v, net.step_count, net.learning_rate)
        parts["adam"].append(clock() - t)
    print("kernel API parts (median ms): " + ", ".join(f"{k} {np.median(v) * 1e3:.3f}" for k, v in parts.items()))


if __name__ == "__main__":
    main()
