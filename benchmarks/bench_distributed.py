"""Data-parallel scaling: training images/s of the digit network and the InceptionV3-style
step on 1 process vs N processes (one GPU each, or CPU processes), batch per process fixed.

    python benchmarks/bench_distributed.py --device cuda --nproc 2 [--batch-size 1024] [--markdown out.md]
    python benchmarks/bench_distributed.py --device cpu --nproc 2 --batch-size 32 --steps 5

The driver runs each network once as a plain single-process graph and once under a launcher
(torchrun for cuda when present, else mpirun) with ``distributed=True``, each rank feeding
``--batch-size`` images of every global batch. Scaling efficiency = (N-process images/s) /
(N x 1-process images/s). Timing: ``--warmup`` steps, a barrier, then ``--steps`` steps with
batches double-buffered from host arrays (the copy of every batch included), ending when the
last step has finished on every rank.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

NETS = ("digit", "inception")


def build(net: str, batch: int, seed: int = 0):
    """(loss node, images, labels) for one process's batch."""
    import metalnn as mnn
    from metalnn.examples.digit_graph import digit_network
    from metalnn.examples.inception import inception_network

    rng = np.random.default_rng(seed)
    if net == "digit":
        d = digit_network(mnn.Adam(1e-3), keep_probability=0.5)
        x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
        y = rng.integers(0, 10, batch).astype(np.int32)
        return d.loss, x, y
    _, _, loss, _ = inception_network(6, 64, mnn.SGD(0.05, momentum=0.9), seed=seed)
    x = rng.standard_normal((batch, 3, 64, 64)).astype(np.float32)
    y = rng.integers(0, 6, batch).astype(np.int32)
    return loss, x, y


def worker(args) -> dict:
    """One process: times the training steps, returns images/s of the whole job."""
    import metalnn as mnn

    dist = args.distributed
    if dist:
        mnn.distributed.init()
    loss, x, y = build(args.net, args.batch_size, seed=mnn.distributed.rank())
    graph = mnn.Graph.training(loss, device=args.device, distributed=dist)
    for _ in range(args.warmup):
        graph.encode_batch(x, labels=y)
    graph.synchronize()
    mnn.distributed.barrier()
    t0 = time.perf_counter()
    last = None
    for _ in range(args.steps):
        last = graph.encode_batch(x, labels=y)
    last.wait()
    graph.synchronize()
    mnn.distributed.barrier()
    seconds = time.perf_counter() - t0
    world = mnn.distributed.world_size()
    seconds = mnn.distributed.communicator().all_reduce_sum(np.array([seconds]))[0] / world if dist else seconds
    out = {"net": args.net, "device": args.device, "world_size": world, "batch_per_process": args.batch_size,
           "steps": args.steps, "seconds": seconds, "images_per_s": args.steps * args.batch_size * world / seconds,
           "loss": float(last.loss)}
    if dist:
        plan = graph._distributed.last_plan if world > 1 else None
        out["buckets"] = len(plan["buckets"]) if plan else 0
    return out


def _launch(args, nproc: int, net: str, result: str) -> list[str]:
    script = os.path.abspath(__file__)
    tail = [script, "--worker", "--net", net, "--device", args.device, "--batch-size", str(args.batch_size),
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--result", result]
    if nproc == 1:
        return [sys.executable] + tail
    tail.append("--distributed")
    if args.device == "cuda" and shutil.which("torchrun") and args.launcher != "mpirun":
        return ["torchrun", "--standalone", f"--nproc_per_node={nproc}"] + tail
    return ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-n", str(nproc),
            sys.executable] + tail


def driver(args) -> None:
    rows = []
    env = dict(os.environ, NCCL_NVLS_ENABLE="0")  # never NVLink multicast on shared machines
    with tempfile.TemporaryDirectory() as tmp:
        for net in args.nets.split(","):
            runs = {}
            for nproc in (1, args.nproc):
                result = os.path.join(tmp, f"{net}.{nproc}.json")
                cmd = _launch(args, nproc, net, result)
                print("$", " ".join(cmd), flush=True)
                r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
                if r.returncode != 0 or not os.path.exists(result):
                    print(r.stdout[-4000:], r.stderr[-4000:], file=sys.stderr)
                    raise SystemExit(f"{net} with {nproc} process(es) failed ({r.returncode})")
                with open(result) as f:
                    runs[nproc] = json.load(f)
                print(json.dumps(runs[nproc]), flush=True)
            one, many = runs[1], runs[args.nproc]
            eff = many["images_per_s"] / (args.nproc * one["images_per_s"])
            rows.append((net, one, many, eff))
    lines = [f"| network | batch / process | 1 process img/s | {args.nproc} processes img/s | scaling efficiency |"
             f" buckets |", "| --- | --- | --- | --- | --- | --- |"]
    for net, one, many, eff in rows:
        lines.append(f"| {net} | {one['batch_per_process']} | {one['images_per_s']:.0f} | {many['images_per_s']:.0f} "
                     f"| {eff * 100:.1f}% | {many.get('buckets', '')} |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        import metalnn as mnn

        with open(args.markdown, "w") as f:
            f.write(f"# Data-parallel scaling ({args.device}, {args.nproc} processes)\n\n{table}\n\n"
                    f"- command: `python benchmarks/bench_distributed.py {' '.join(sys.argv[1:])}`\n"
                    f"- steps {args.steps} after {args.warmup} warm-up; python {platform.python_version()}, "
                    f"metalnn {mnn.__version__}\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--nets", default=",".join(NETS))
    p.add_argument("--batch-size", type=int, default=1024, help="per process")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--launcher", choices=("auto", "mpirun"), default="auto")
    p.add_argument("--timeout", type=float, default=400)
    p.add_argument("--markdown", default="")
    # worker mode (started by the driver)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--net", default="digit", help=argparse.SUPPRESS)
    p.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not args.worker:
        return driver(args)
    if args.device == "cpu" and args.distributed:
        import metalnn as mnn

        mnn.set_num_threads(max(1, (os.cpu_count() or 2) // int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))))
    out = worker(args)
    import metalnn as mnn

    if mnn.distributed.rank() == 0 and args.result:
        with open(args.result, "w") as f:
            json.dump(out, f)


if __name__ == "__main__":
    main()
