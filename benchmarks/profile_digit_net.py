"""Per-layer profile of the digit network's training step (kernel API, batch 64): each
layer's forward, input gradient, weight gradient and update, with achieved GFLOP/s next
to the sgemm ceiling measured in the same run.

GFLOP/s always counts the direct convolution's FLOPs (2 * N * O * C * H_out * W_out * k^2):
for the convolutions that run Winograd (column "path"; it does fewer multiplies) this is
an *effective* rate and may exceed the sgemm ceiling.

    python benchmarks/profile_digit_net.py [--batch-size 64] [--reps 20] [--cpu-time]
    (or python benchmarks/bench_digit_net.py --profile)
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import metalnn as mnn
from metalnn import ops
from metalnn.examples.digit_net import DigitNet

# time.perf_counter, or time.thread_time (--cpu-time: steadier on a shared machine, one thread only).
CLOCK = time.perf_counter


def median_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = CLOCK()
        fn()
        times.append(CLOCK() - t)
    return float(np.median(times)) * 1e3


def conv_path(fn) -> str:
    """'winograd' when the default (auto) result differs from the forced im2col one, else 'im2col'."""
    old = os.environ.get("METALNN_CONV_ALGO")
    try:
        os.environ["METALNN_CONV_ALGO"] = "im2col"
        ref = fn()
        os.environ["METALNN_CONV_ALGO"] = old if old is not None else "auto"
        return "im2col" if np.array_equal(fn(), ref) else "winograd"
    finally:
        if old is None:
            os.environ.pop("METALNN_CONV_ALGO", None)
        else:
            os.environ["METALNN_CONV_ALGO"] = old


def sgemm_ceiling(reps: int = 3, n: int = 2048) -> float:
    """GFLOP/s of a float32 n x n matrix product through metalnn's fully connected kernel
    (one BLAS call split over the pool): the practical ceiling for the layers."""
    r = np.random.default_rng(0)
    a = r.standard_normal((n, n), dtype=np.float32)
    b = r.standard_normal((n, n), dtype=np.float32)
    ms = median_ms(lambda: ops.fully_connected_forward(a, b), reps)
    return 2.0 * n**3 / (ms * 1e-3) / 1e9


def rows(batch: int, reps: int):
    """(layer, direction, ms, GFLOP) for every kernel of one training step."""
    net = DigitNet(seed=0)
    p = net.params
    r = np.random.default_rng(1)
    x = r.random((batch, 1, 28, 28), dtype=np.float32)
    y = r.integers(0, 10, batch).astype(np.int32)
    out = []

    def add(layer, direction, fn, gflop=0.0):
        path = conv_path(fn) if layer.startswith("conv") and gflop else ""
        out.append((layer, direction, median_ms(fn, reps), gflop, path))

    c1 = ops.conv2d_forward(x, p["conv1_w"], p["conv1_b"], padding=2)
    f_c1 = 2 * batch * 32 * 28 * 28 * 25 / 1e9
    add("conv1", "forward", lambda: ops.conv2d_forward(x, p["conv1_w"], p["conv1_b"], padding=2), f_c1)
    add("conv1", "weight grad", lambda: ops.conv2d_backward_weight(c1, x, p["conv1_w"].shape, padding=2), f_c1)
    add("conv1", "bias grad", lambda: ops.conv2d_backward_bias(c1))
    r1 = ops.neuron_forward(c1, "relu")
    add("relu1", "forward", lambda: ops.neuron_forward(c1, "relu"))
    add("relu1", "input grad", lambda: ops.neuron_backward(r1, c1, "relu"))
    p1, s1 = ops.max_pool2d_forward(r1, 2)
    add("pool1", "forward", lambda: ops.max_pool2d_forward(r1, 2))
    add("pool1", "input grad", lambda: ops.max_pool2d_backward(p1, s1))
    c2 = ops.conv2d_forward(p1, p["conv2_w"], p["conv2_b"], padding=2)
    f_c2 = 2 * batch * 64 * 14 * 14 * 32 * 25 / 1e9
    add("conv2", "forward", lambda: ops.conv2d_forward(p1, p["conv2_w"], p["conv2_b"], padding=2), f_c2)
    add("conv2", "input grad", lambda: ops.conv2d_backward_input(c2, p["conv2_w"], p1.shape, padding=2), f_c2)
    add("conv2", "weight grad", lambda: ops.conv2d_backward_weight(c2, p1, p["conv2_w"].shape, padding=2), f_c2)
    r2 = ops.neuron_forward(c2, "relu")
    p2, s2 = ops.max_pool2d_forward(r2, 2)
    add("pool2", "forward", lambda: ops.max_pool2d_forward(r2, 2))
    add("pool2", "input grad", lambda: ops.max_pool2d_backward(p2, s2))
    f1 = ops.fully_connected_forward(p2, p["fc1_w"], p["fc1_b"])
    f_f1 = 2 * batch * 3136 * 1024 / 1e9
    add("fc1", "forward", lambda: ops.fully_connected_forward(p2, p["fc1_w"], p["fc1_b"]), f_f1)
    add("fc1", "input grad", lambda: ops.fully_connected_backward_input(f1, p["fc1_w"], p2.shape), f_f1)
    add("fc1", "weight grad", lambda: ops.fully_connected_backward_weight(f1, p2), f_f1)
    r3 = ops.neuron_forward(f1, "relu")
    d, sd = ops.dropout_forward(r3, 0.5, seed=1)
    add("dropout", "forward", lambda: ops.dropout_forward(r3, 0.5, seed=1))
    add("dropout", "input grad", lambda: ops.dropout_backward(d, sd))
    logits = ops.fully_connected_forward(d, p["fc2_w"], p["fc2_b"])
    f_f2 = 2 * batch * 1024 * 10 / 1e9
    add("fc2", "forward", lambda: ops.fully_connected_forward(d, p["fc2_w"], p["fc2_b"]), f_f2)
    add("fc2", "input grad", lambda: ops.fully_connected_backward_input(logits, p["fc2_w"], d.shape), f_f2)
    add("fc2", "weight grad", lambda: ops.fully_connected_backward_weight(logits, d), f_f2)
    _, sl = ops.softmax_cross_entropy_forward(logits, y)
    add("loss", "forward", lambda: ops.softmax_cross_entropy_forward(logits, y))
    add("loss", "input grad", lambda: ops.softmax_cross_entropy_backward(sl))
    grads = {k: np.full_like(v, 1e-3) for k, v in p.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(w) for k, w in p.items()}
    names = list(p)
    add("all", "update (Adam)", lambda: ops.adam_step_many([p[k] for k in names], [grads[k] for k in names],
                                                           [m[k] for k in names], [v[k] for k in names], 1))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with the calling thread's CPU time (only meaningful with 1 thread)")
    args = ap.parse_args(argv)
    global CLOCK
    CLOCK = time.thread_time if args.cpu_time else time.perf_counter
    ceiling = sgemm_ceiling()
    print(f"threads {mnn.num_threads()}; BLAS {mnn.blas_info()}; sgemm ceiling {ceiling:.0f} GFLOP/s"
          f"{'; CPU time' if args.cpu_time else ''}")
    print("GFLOP/s counts direct-convolution FLOPs: effective rates for the Winograd path")
    print(f"{'layer':<8} {'direction':<14} {'ms':>8} {'GFLOP/s':>8} {'of ceiling':>10}  path")
    total = 0.0
    for layer, direction, ms, gflop, path in rows(args.batch_size, args.reps):
        total += ms
        rate = gflop / (ms * 1e-3) if gflop else 0.0
        share = f"{rate / ceiling * 100:9.0f}%" if gflop else ""
        print(f"{layer:<8} {direction:<14} {ms:8.3f} {rate if gflop else float('nan'):8.1f} {share:>10}  {path}")
    print(f"sum of kernels: {total:.2f} ms per step ({args.batch_size / (total * 1e-3):.0f} images/s)")


if __name__ == "__main__":
    main()
