"""CPU convolution paths side by side: im2col vs Winograd per layer shape and direction.

    python benchmarks/bench_conv_algo.py [--threads 1] [--reps 3]

For each shape (N, C, H=W, O, k, padding) times forward, input gradient and weight
gradient with METALNN_CONV_ALGO=im2col and =winograd (best of --reps, the calling
thread's CPU time with one thread, wall time otherwise) and prints which path the
default (auto) picks: W when its result equals the forced Winograd one, i otherwise.
These measurements are what the selection model in conv_winograd.cpp was fitted to.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import metalnn as mnn

ops = mnn.ops

SHAPES = [  # N, C, H, O, k, padding
    (64, 32, 14, 64, 5, 2), (64, 1, 28, 32, 5, 2), (32, 24, 32, 24, 3, 1), (32, 16, 16, 24, 3, 1),
    (32, 48, 8, 64, 3, 1), (32, 64, 8, 64, 3, 1), (16, 64, 28, 64, 3, 1), (16, 128, 14, 128, 3, 1),
    (16, 8, 32, 8, 3, 1), (16, 16, 16, 16, 5, 2), (64, 3, 32, 32, 3, 1), (32, 16, 8, 16, 3, 1),
    (8, 256, 7, 256, 3, 1), (64, 32, 7, 32, 5, 2),
]


def best_ms(fn, reps: int, clock) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best * 1e3


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    mnn.set_num_threads(args.threads)
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    old = os.environ.get("METALNN_CONV_ALGO")
    r = np.random.default_rng(0)
    print(f"threads {args.threads}; ms ({'thread CPU time' if args.threads == 1 else 'wall'}), best of {args.reps}")
    print("N C H O k | forward im2col winograd | input grad | weight grad | auto: fwd dx dw")
    try:
        for n, c, h, o, k, pad in SHAPES:
            x = r.standard_normal((n, c, h, h), dtype=np.float32)
            w = r.standard_normal((o, c, k, k), dtype=np.float32)
            dy = r.standard_normal((n, o, h, h), dtype=np.float32)
            fns = {"f": lambda x=x, w=w, pad=pad: ops.conv2d_forward(x, w, padding=pad),
                   "i": lambda x=x, w=w, dy=dy, pad=pad: ops.conv2d_backward_input(dy, w, x.shape, padding=pad),
                   "w": lambda x=x, w=w, dy=dy, pad=pad: ops.conv2d_backward_weight(dy, x, w.shape, padding=pad)}
            res = {}
            for algo in ("im2col", "winograd", "auto"):
                os.environ["METALNN_CONV_ALGO"] = algo
                res[algo] = {d: (best_ms(f, args.reps, clock), f()) for d, f in fns.items()}
            cells, picks = [], ""
            for d in "fiw":
                ti, tw = res["im2col"][d][0], res["winograd"][d][0]
                cells.append(f"{ti:6.2f} {tw:6.2f} ({ti / tw:.2f}x)")
                same = np.array_equal(res["auto"][d][1], res["winograd"][d][1])
                picks += "W" if same and not np.array_equal(res["im2col"][d][1], res["winograd"][d][1]) else "i"
            print(f"{n} {c} {h} {o} {k} | " + " | ".join(cells) + f" | {picks}", flush=True)
    finally:
        if old is None:
            os.environ.pop("METALNN_CONV_ALGO", None)
        else:
            os.environ["METALNN_CONV_ALGO"] = old


if __name__ == "__main__":
    main()
