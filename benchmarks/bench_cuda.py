"""CUDA backend micro-benchmark: the kernels that exist so far (neuron, dropout, softmax)
against PyTorch CUDA on the same GPU, same sizes and dtypes. The digit-network training
step comparison lands once fully connected / conv / loss / optimizers run on CUDA.

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
    args = ap.parse_args()
    import torch

    print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    sync_t = torch.cuda.synchronize
    # metalnn ops run on the backend stream; reading one element back waits for it.
    rows = []
    for dtype in ["float32", "float16"]:
        tdt = getattr(torch, dtype)
        x = np.random.default_rng(0).standard_normal((256, 64, 32, 32)).astype(dtype)
        xm = mnn.Tensor(x, device="cuda")
        xt = torch.from_numpy(x).cuda()
        last = {}

        def sync_m():
            if "y" in last:
                mnn.ops.neuron_forward(mnn.Tensor(np.zeros(1, dtype), device="cuda"), "relu").numpy()

        cases = [
            ("relu fwd", lambda: last.__setitem__("y", mnn.ops.neuron_forward(xm, "relu")),
             lambda: torch.relu(xt)),
            ("gelu fwd", lambda: last.__setitem__("y", mnn.ops.neuron_forward(xm, "gelu")),
             lambda: torch.nn.functional.gelu(xt)),
            ("softmax(C=64) fwd", lambda: last.__setitem__("y", mnn.ops.softmax_forward(xm)),
             lambda: torch.softmax(xt, dim=1)),
            ("dropout fwd", lambda: last.__setitem__("y", mnn.ops.dropout_forward(xm, 0.5, 1)[0]),
             lambda: torch.nn.functional.dropout(xt, 0.5)),
        ]
        for name, fm, ft in cases:
            tm = _time(fm, sync_m, args.reps)
            tt = _time(ft, sync_t, args.reps)
            gbs = 2 * x.nbytes / tm / 1e9
            rows.append((f"{name} {dtype} {tuple(x.shape)}", tm * 1e3, tt * 1e3, tt / tm, gbs))
    print(f"{'case':48s} {'metalnn ms':>11s} {'torch ms':>9s} {'ratio':>6s} {'mnn GB/s':>9s}")
    for r in rows:
        print(f"{r[0]:48s} {r[1]:11.3f} {r[2]:9.3f} {r[3]:6.2f} {r[4]:9.0f}")


if __name__ == "__main__":
    main()
