"""Digit network batch-1 inference latency: metalnn (kernel API, inference Graph, layers.Sequential)
vs PyTorch CPU (eval, no_grad) on the same weights.

    python benchmarks/bench_latency.py [--runs 300] [--threads N] [--clock wall|process] [--profile]

Every path runs one image (1, 1, 28, 28) at a time; the paths are interleaved round by round
(``--block`` calls of each per round) so load from other processes hits them alike. Prints the median
and 90th percentile per path and the ratio metalnn / PyTorch latency (< 1: metalnn is faster).
``--profile`` adds the time of each kernel-API layer.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from _interleave import add_timing_args, threads_of, time_interleaved

import metalnn as mnn
from metalnn import ops
from metalnn.layers import Conv2d, Flatten, Linear, MaxPool2d, Sequential


def build_sequential() -> Sequential:
    """The digit network for inference (dropout is the identity there, so it is left out)."""
    return Sequential([
        Conv2d(1, 32, 5, activation="relu"), MaxPool2d(2),
        Conv2d(32, 64, 5, activation="relu"), MaxPool2d(2),
        Flatten(), Linear(3136, 1024, activation="relu"), Linear(1024, 10),
    ], input_shape=(1, 28, 28), seed=0).build()


def parameters(model: Sequential) -> dict[str, np.ndarray]:
    """The Sequential's arrays under the kernel API's names (fc weights as (out, in))."""
    ds = [layer.data_source for layer in model.layers if getattr(layer, "data_source", None) is not None]
    names = ("conv1", "conv2", "fc1", "fc2")
    out = {}
    for name, d in zip(names, ds):
        w = d.weights()
        out[f"{name}_w"] = w.reshape(w.shape[0], -1) if name.startswith("fc") else w
        out[f"{name}_b"] = d.biases()
    return out


def _conv(name):
    return lambda p, h: ops.conv2d_forward(h, p[f"{name}_w"], p[f"{name}_b"], padding=2)


def _fc(name):
    return lambda p, h: ops.fully_connected_forward(h, p[f"{name}_w"], p[f"{name}_b"])


def _relu(p, h):
    return ops.neuron_forward(h, "relu")


def _pool(p, h):
    return ops.max_pool2d_forward(h, 2)[0]


# The kernel API path (DigitNet.forward without dropout), one kernel call per layer.
KERNEL_LAYERS = (("conv1", _conv("conv1")), ("relu1", _relu), ("pool1", _pool),
                 ("conv2", _conv("conv2")), ("relu2", _relu), ("pool2", _pool),
                 ("fc1", _fc("fc1")), ("relu3", _relu), ("fc2", _fc("fc2")))


def kernel_forward(p: dict, x: np.ndarray, times: dict | None = None) -> np.ndarray:
    """Runs KERNEL_LAYERS on x; ``times`` collects per-layer seconds."""
    h = x
    for name, layer in KERNEL_LAYERS:
        if times is None:
            h = layer(p, h)
            continue
        t = time.perf_counter()
        h = layer(p, h)
        times.setdefault(name, []).append(time.perf_counter() - t)
    return h


def torch_model(p: dict, threads: int):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    m = nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, 10),
    ).eval()
    with torch.no_grad():
        for mod, name in ((m[0], "conv1"), (m[3], "conv2"), (m[7], "fc1"), (m[10], "fc2")):
            mod.weight.copy_(torch.from_numpy(p[f"{name}_w"].reshape(mod.weight.shape)))
            mod.bias.copy_(torch.from_numpy(p[f"{name}_b"]))
    return m


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_timing_args(ap, runs=300, warmup=20, block=25)
    ap.add_argument("--profile", action="store_true", help="also print the kernel API's per-layer times")
    ap.add_argument("--paths", default="kernel,graph,graph_encode,sequential",
                    help="metalnn paths to time (comma separated)")
    args = ap.parse_args(argv)
    threads = threads_of(args)
    mnn.set_num_threads(threads)

    model = build_sequential()
    p = parameters(model)
    graph = model.graph
    rng = np.random.default_rng(0)
    images = [rng.random((1, 1, 28, 28), dtype=np.float32) for _ in range(16)]

    paths = {
        "kernel": lambda x: kernel_forward(p, x),
        "graph": lambda x: graph.run(x).result,
        "graph_encode": lambda x: graph.encode_batch(x).wait().result,
        "sequential": lambda x: model.predict(x),
    }
    paths = {k: v for k, v in paths.items() if k in args.paths.split(",")}
    try:
        import torch

        tm = torch_model(p, threads)

        def torch_run(x):
            with torch.no_grad():
                return tm(torch.from_numpy(x)).numpy()

        paths["pytorch"] = torch_run
        torch_name = f"PyTorch {torch.__version__}"
    except ImportError:
        torch_name = None

    # Same answers first: every path against PyTorch (or the kernel API) on one image.
    ref = paths.get("pytorch", paths["kernel"] if "kernel" in paths else None)
    want = np.asarray(ref(images[0]))
    batch = np.concatenate(images[:8])
    batched = np.asarray(kernel_forward(p, batch))
    for name, fn in paths.items():
        got = np.asarray(fn(images[0]))
        err = float(np.max(np.abs(got - want)))
        if err > 1e-3 * (1 + float(np.max(np.abs(want)))):
            raise SystemExit(f"{name}: batch-1 output differs from the reference by {err}")
    # Batch 1 and batch 8 take different kernels (gemv vs GEMM for the fully connected layers,
    # and the conv path and its blocking are chosen per shape), so rows agree to rounding only.
    diff = max(float(np.max(np.abs(np.asarray(kernel_forward(p, images[i])) - batched[i:i + 1]))) for i in range(8))
    scale = 1 + float(np.max(np.abs(batched)))
    if diff > 1e-4 * scale:
        raise SystemExit(f"kernel API: batch-1 rows differ from the batch-8 rows by {diff:.3g}")
    print(f"batch-1 vs batch-8 rows (kernel API): max |diff| {diff:.2g} (rounding of different kernels; "
          f"limit {1e-4 * scale:.2g})")

    times = time_interleaved(paths, [(x,) for x in images], args)

    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores; threads {threads}; "
          f"metalnn BLAS: {mnn.blas_info()}; load average {os.getloadavg()[0]:.2f}")
    print(f"digit network, batch 1, {args.runs} calls per path in interleaved blocks of {args.block} "
          f"({args.clock} clock); ms: median / p90")
    base = float(np.median(times["pytorch"])) if "pytorch" in times else None
    for name, ts in times.items():
        med, p90 = float(np.median(ts)), float(np.percentile(ts, 90))
        label = torch_name if name == "pytorch" else f"metalnn {name}"
        line = f"  {label:24s} {med * 1e3:7.3f} / {p90 * 1e3:7.3f}"
        if base and name != "pytorch":
            line += f"   latency ratio metalnn/PyTorch {med / base:5.2f}x"
        print(line, flush=True)
    if args.profile:
        per: dict[str, list[float]] = {}
        for r in range(args.runs):
            kernel_forward(p, images[r % len(images)], per)
        print("kernel API per layer (median ms): "
              + ", ".join(f"{k} {np.median(v) * 1e3:.3f}" for k, v in per.items()))


if __name__ == "__main__":
    main()
