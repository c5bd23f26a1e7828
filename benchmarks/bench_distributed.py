"""Data-parallel scaling: training images/s of the digit network and the InceptionV3-style
step on 1 process vs N processes (one GPU each, or CPU processes), batch per process fixed.

    python benchmarks/bench_distributed.py --device cuda --nproc 2 [--batch-size 1024] [--markdown out.md]
    python benchmarks/bench_distributed.py --device cpu --nproc 2 --batch-size 32 --steps 5
    python benchmarks/bench_distributed.py --device cuda --attribute --buckets 25:25 --steps digit=300,inception=30

The driver runs each network once as a plain single-process graph and once under a launcher
(torchrun for cuda when present, else mpirun) with ``distributed=True``, each rank feeding
``--batch-size`` images of every global batch. Scaling efficiency = (N-process images/s) /
(N x 1-process images/s). Timing: ``--warmup`` steps, a barrier, then ``--steps`` steps with
batches double-buffered from host arrays (the copy of every batch included), ending when the
last step has finished on every rank; ``--reps`` such windows, the best reported.

``--attribute`` adds the runs that split the N-process gap: the 1-process job with CUDA graphs
off (METALNN_CUDA_GRAPHS=0), the N-process job run eagerly (METALNN_DISTRIBUTED_CUDA_GRAPHS=0;
the default captures distributed programs as CUDA graphs), and the
N-process job with no all-reduce at all (METALNN_DISTRIBUTED_SKIP_ALLREDUCE=1: N processes on N
GPUs, communication cost removed).
``--buckets MB:FIRST_MB,...`` adds N-process runs with other bucket sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
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
        if args.bucket_mb:
            dist = mnn.distributed.Options(bucket_mb=args.bucket_mb,
                                           first_bucket_mb=args.first_bucket_mb or args.bucket_mb)
    loss, x, y = build(args.net, args.batch_size, seed=mnn.distributed.rank())
    graph = mnn.Graph.training(loss, device=args.device, distributed=dist)
    for _ in range(args.warmup):
        graph.encode_batch(x, labels=y)
    graph.synchronize()
    world = mnn.distributed.world_size()
    windows = []
    last = None
    for _ in range(args.reps):
        mnn.distributed.barrier()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            last = graph.encode_batch(x, labels=y)
        last.wait()
        graph.synchronize()
        mnn.distributed.barrier()
        seconds = time.perf_counter() - t0
        if world > 1:
            seconds = mnn.distributed.communicator().all_reduce_sum(np.array([seconds]))[0] / world
        windows.append(seconds)
    seconds = min(windows)
    ex = graph._current
    out = {"net": args.net, "device": args.device, "world_size": world, "batch_per_process": args.batch_size,
           "steps": args.steps, "seconds": seconds, "images_per_s": args.steps * args.batch_size * world / seconds,
           "ms_per_step": 1e3 * seconds / args.steps,
           "windows_ms_per_step": [round(1e3 * w / args.steps, 4) for w in windows], "loss": float(last.loss),
           "graph_mode": getattr(ex, "graph_mode", ""), "graph_launches": getattr(ex, "graph_launches", 0),
           "graph_captures": getattr(ex, "graph_captures", 0)}
    if args.distributed:
        plan = getattr(graph._distributed, "last_plan", None) if world > 1 else None
        out["buckets"] = len(plan["buckets"]) if plan else 0
        out["bucket_bytes"] = plan["bytes"] if plan else []
    return out


def _steps(args, net: str) -> int:
    """--steps N, or per network: digit=300,inception=30."""
    spec = str(args.steps)
    if "=" not in spec:
        return int(spec)
    table = dict(part.split("=") for part in spec.split(","))
    return int(table.get(net, table.get("default", 20)))


def _launch(args, nproc: int, net: str, result: str, extra: list[str]) -> list[str]:
    script = os.path.abspath(__file__)
    tail = [script, "--worker", "--net", net, "--device", args.device, "--batch-size", str(args.batch_size),
            "--steps", str(_steps(args, net)), "--warmup", str(args.warmup), "--reps", str(args.reps),
            "--result", result] + extra
    if nproc == 1:
        return [sys.executable] + tail
    tail.append("--distributed")
    if args.device == "cuda" and shutil.which("torchrun") and args.launcher != "mpirun":
        return ["torchrun", "--standalone", f"--nproc_per_node={nproc}"] + tail
    return ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-n", str(nproc),
            sys.executable] + tail


def variants(args) -> list[tuple[str, int, dict, list[str]]]:
    """(label, processes, extra environment, extra worker arguments); the first is the baseline."""
    n = args.nproc
    out = [("1 process", 1, {}, []), (f"{n} processes", n, {}, [])]
    if args.attribute:
        out += [("1 process, CUDA graphs off", 1, {"METALNN_CUDA_GRAPHS": "0"}, []),
                (f"{n} processes, eager", n, {"METALNN_DISTRIBUTED_CUDA_GRAPHS": "0"}, []),
                (f"{n} processes, no all-reduce", n, {"METALNN_DISTRIBUTED_SKIP_ALLREDUCE": "1"}, [])]
    for spec in filter(None, args.buckets.split(",")):
        mb, _, first = spec.partition(":")
        out.append((f"{n} processes, buckets {mb} MB (first {first or mb})", n, {},
                    ["--bucket-mb", mb, "--first-bucket-mb", first or mb]))
    return out


def _run(cmd: list[str], env: dict, timeout: float) -> tuple[int, str]:
    """Runs a launcher in its own process group: a hung job is killed whole (workers too)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return -9, out + f"\n(killed after {timeout} s)"


def driver(args) -> None:
    rows, failed = [], []
    base_env = dict(os.environ, NCCL_NVLS_ENABLE="0")  # never NVLink multicast on shared machines
    with tempfile.TemporaryDirectory() as tmp:
        for net in args.nets.split(","):
            base = None
            for k, (label, nproc, env, extra) in enumerate(variants(args)):
                result = os.path.join(tmp, f"{net}.{k}.json")
                cmd = _launch(args, nproc, net, result, extra)
                print("$", " ".join(f"{a}={b}" for a, b in env.items()), " ".join(cmd), flush=True)
                rc, out = _run(cmd, dict(base_env, **env), args.timeout)
                if rc != 0 or not os.path.exists(result):
                    print(out[-6000:], file=sys.stderr)
                    failed.append(f"{net}: {label} (rc {rc})")
                    continue  # one failing run does not lose the others
                with open(result) as f:
                    run = json.load(f)
                run["variant"] = label
                print(json.dumps(run), flush=True)
                if k == 0:
                    base = run
                eff = run["images_per_s"] / (run["world_size"] * base["images_per_s"]) if base else float("nan")
                rows.append((net, label, run, eff))
    lines = ["| network | run | batch / process | img/s | ms / step | scaling efficiency | graph mode | buckets |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for net, label, run, eff in rows:
        lines.append(f"| {net} | {label} | {run['batch_per_process']} | {run['images_per_s']:,.0f} "
                     f"| {run['ms_per_step']:.3f} | {eff * 100:.1f}% | {run['graph_mode']} "
                     f"| {run.get('buckets', '')} |")
    table = "\n".join(lines)
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([dict(run, efficiency=eff) for _, _, run, eff in rows], f, indent=1)
    if args.markdown:
        import metalnn as mnn

        with open(args.markdown, "w") as f:
            f.write(f"# Data-parallel scaling ({args.device}, {args.nproc} processes)\n\n{table}\n\n"
                    f"- command: `python benchmarks/bench_distributed.py {' '.join(sys.argv[1:])}`\n"
                    f"- steps {args.steps} after {args.warmup} warm-up, best of {args.reps} windows; "
                    f"python {platform.python_version()}, metalnn {mnn.__version__}\n"
                    "- efficiency = img/s / (processes x 1-process img/s)\n")
    if failed:
        raise SystemExit("failed: " + "; ".join(failed))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--nets", default=",".join(NETS))
    p.add_argument("--batch-size", type=int, default=1024, help="per process")
    p.add_argument("--steps", default="20", help="timed steps per window: N or digit=N,inception=M")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--reps", type=int, default=3, help="timed windows (the best is reported)")
    p.add_argument("--attribute", action="store_true", help="also graphs off / eager distributed / no all-reduce")
    p.add_argument("--buckets", default="", help="extra N-process runs: MB:FIRST_MB,...")
    p.add_argument("--json", default="", help="write every run's numbers here")
    p.add_argument("--launcher", choices=("auto", "mpirun"), default="auto")
    p.add_argument("--timeout", type=float, default=400)
    p.add_argument("--markdown", default="")
    # worker mode (started by the driver)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--net", default="digit", help=argparse.SUPPRESS)
    p.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", default="", help=argparse.SUPPRESS)
    p.add_argument("--bucket-mb", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--first-bucket-mb", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if not args.worker:
        return driver(args)
    if args.device == "cpu" and args.distributed:
        import metalnn as mnn

        mnn.set_num_threads(max(1, (os.cpu_count() or 2) // int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))))
    args.steps = _steps(args, args.net)
    out = worker(args)
    import metalnn as mnn

    if mnn.distributed.rank() == 0 and args.result:
        with open(args.result, "w") as f:
            json.dump(out, f)


if __name__ == "__main__":
    main()
