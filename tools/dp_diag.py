"""Issue #11 diagnosis, on a lent 2-GPU machine: where two GPUs leave one GPU on the global batch.

    python3 tools/dp_diag.py [--reps 3] [--variants eager,captured,...] [--json out.json]

Runs tests/distributed_worker.py's "trace" scenario (digit network, SGD momentum 0.9, weights
saved after every step) under torchrun for each variant, and one GPU on the global batch in this
process (CUDA graphs on and off). From the weights it rebuilds each step's averaged gradient
(SGD momentum: g_t = (mu * v_{t-1} - v_t) / lr, v_t = w_t - w_{t-1}) and prints, per run, the first
step whose weights leave the reference, which layers, and whether the wrong gradient looks like
the reference's gradient of the previous step (a stale read) or of this step.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import distributed_worker as worker  # noqa: E402

import metalnn as mnn  # noqa: E402

LR, MU = 0.05, 0.9
VARIANTS = {
    "eager": {},
    "captured": {"METALNN_DISTRIBUTED_CUDA_GRAPHS": "1"},
    "captured_simple": {"METALNN_DISTRIBUTED_CUDA_GRAPHS": "1", "NCCL_PROTO": "Simple"},
    "captured_1bucket": {"METALNN_DISTRIBUTED_CUDA_GRAPHS": "1", "DP_BUCKET_MB": "100"},
    "captured_gather": {"METALNN_DISTRIBUTED_CUDA_GRAPHS": "1", "METALNN_DISTRIBUTED_GRAPH_ALLREDUCE": "gather"},
    "captured_blocking": {"METALNN_DISTRIBUTED_CUDA_GRAPHS": "1", "CUDA_LAUNCH_BLOCKING": "1"},
    "eager_blocking": {"CUDA_LAUNCH_BLOCKING": "1"},
    "captured_noreg": {"METALNN_DISTRIBUTED_CUDA_GRAPHS": "1", "NCCL_GRAPH_REGISTER": "0"},
    "captured_nofind": {"METALNN_DISTRIBUTED_CUDA_GRAPHS": "1", "METALNN_CUDNN_FIND": "0"},
    "eager_nofind": {"METALNN_CUDNN_FIND": "0"},
}


def _numpy(v):
    return np.array(v.numpy() if isinstance(v, mnn.Tensor) else v)


def reference(graphs: str, device: str = "cuda") -> list[dict]:
    """Weights before and after every step, one GPU, global batch."""
    os.environ["METALNN_CUDA_GRAPHS"] = graphs
    os.environ.setdefault("METALNN_CUDNN_LOG", os.path.abspath("dp_diag_ref_cudnn.log"))
    try:
        g = mnn.Graph.training(worker.trace_net(mnn.SGD(LR, momentum=MU)), device=device)
        for node in g.nodes:  # bind the data sources: the initial weights
            if getattr(node, "data_source", None) is not None:
                g._parameters(node)
        out = [{k: _numpy(v) for k, v in g.parameters().items()}]
        for step in range(worker.TRACE_STEPS):
            g.run(*worker.data(2 * worker.PER_RANK, step))
            g.synchronize()
            out.append({k: _numpy(v) for k, v in g.parameters().items()})
        out[-1]["_mode"] = g._current.graph_mode if device == "cuda" else "cpu"
        return out
    finally:
        del os.environ["METALNN_CUDA_GRAPHS"]


def gradients(ws: list[dict]) -> list[dict]:
    """g_t for t = 1..T from weights w_0..w_T (index t-1)."""
    out, v_prev = [], None
    for t in range(1, len(ws)):
        g = {}
        v = {k: ws[t][k] - ws[t - 1][k] for k in ws[0] if not k.startswith("_")}
        for k in v:
            g[k] = ((MU * v_prev[k] if v_prev else 0.0) - v[k]) / LR
        out.append(g)
        v_prev = v
    return out


def off(a: np.ndarray, b: np.ndarray) -> bool:
    return not np.allclose(a, b, rtol=1e-3, atol=1e-5)


def analyse(ref: list[dict], ranks: list[list[dict]]) -> dict:
    w0 = ranks[0]
    equal = all(np.array_equal(w0[t][k], ranks[1][t][k]) for t in range(len(w0)) for k in w0[t])
    full = [ref[0]] + w0
    first = None
    for t in range(1, len(full)):
        bad = {k: float(np.max(np.abs(full[t][k] - ref[t][k]))) for k in ref[0] if off(full[t][k], ref[t][k])}
        if bad:
            first = (t, bad)
            break
    res = {"ranks_equal": equal, "first_bad_step": first[0] if first else None, "bad": first[1] if first else {}}
    if first:
        t = first[0]
        g_run, g_ref = gradients(full)[t - 1], gradients(ref)
        per = {}
        for k in first[1]:
            n = float(np.linalg.norm(g_ref[t - 1][k])) or 1.0
            per[k] = {"err_vs_this_step": float(np.linalg.norm(g_run[k] - g_ref[t - 1][k])) / n,
                      "err_vs_prev_step": (float(np.linalg.norm(g_run[k] - g_ref[t - 2][k])) / n) if t >= 2 else None,
                      "err_vs_zero": float(np.linalg.norm(g_run[k])) / n - 1.0,
                      "err_vs_double": float(np.linalg.norm(g_run[k] - 2 * g_ref[t - 1][k])) / n}
        res["gradient"] = per
    return res


def gradient_errors(ref: list[dict], run: list[dict]) -> dict:
    """Per layer, each step's averaged-gradient error relative to the reference's (norms)."""
    g_run, g_ref = gradients([ref[0]] + run), gradients(ref)
    return {k: [round(float(np.linalg.norm(a[k] - b[k])) / (float(np.linalg.norm(b[k])) or 1.0), 6)
                for a, b in zip(g_run, g_ref)] for k in ref[0] if not k.startswith("_")}


def cudnn_choices(out: str, rank: int) -> list[str]:
    path = os.path.join(out, f"cudnn.rank{rank}.log")
    return open(path).read().splitlines() if os.path.exists(path) else []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--variants", default="eager,captured,captured_1bucket,captured_gather,captured_simple,"
                                          "captured_blocking")
    ap.add_argument("--json", default="")
    ap.add_argument("--device", default="cuda", help="cpu: a local check of this script (mpirun)")
    ap.add_argument("--net", default="digit", choices=["digit", "smooth"],
                    help="smooth: tanh + average pooling (no decision a rounding difference flips)")
    ap.add_argument("--save-ref", default="", help="write the 1-GPU reference weights (npz)")
    ap.add_argument("--compare-ref", default="",
                    help="a --save-ref file from another run: print its gradients against this reference's")
    ap.add_argument("--budget", type=float, default=400.0, help="stop starting runs after this many seconds")
    args = ap.parse_args()
    t0 = time.time()
    os.environ["DP_NET"] = args.net  # the workers inherit it
    ref = reference("1", args.device)
    ref_eager = reference("0", args.device)
    report = {"ref_mode": ref[-1].pop("_mode"), "ref_eager_mode": ref_eager[-1].pop("_mode"),
              "ref_graph_vs_eager": analyse(ref, [ref_eager[1:], ref_eager[1:]]), "runs": []}
    print("1 GPU, graphs vs eager:", json.dumps(report["ref_graph_vs_eager"]), flush=True)
    if args.save_ref:
        np.savez(args.save_ref, **{f"s{t}/{k}": v for t, w in enumerate(ref) for k, v in w.items()})
    if args.compare_ref:
        with np.load(args.compare_ref) as z:
            other = [{k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(f"s{t}/")} for t in range(len(ref))]
        report["ref_vs_other_ref"] = gradient_errors(ref, other[1:])
        print("1 GPU vs the other reference, gradient errors:", json.dumps(report["ref_vs_other_ref"]), flush=True)
    if os.path.exists("dp_diag_ref_cudnn.log"):
        report["ref_cudnn"] = open("dp_diag_ref_cudnn.log").read().splitlines()
        print("1 GPU cuDNN choices:", report["ref_cudnn"], flush=True)
    launcher = ["mpirun", "--allow-run-as-root", "-n", "2", sys.executable]
    if shutil.which("torchrun") and args.device == "cuda":
        launcher = ["torchrun", "--standalone", "--nproc_per_node=2"]
    worker_py = os.path.join(HERE, "..", "tests", "distributed_worker.py")
    for rep in range(args.reps):
        for name in args.variants.split(","):
            if time.time() - t0 > args.budget:
                break
            out = tempfile.mkdtemp(prefix=f"dpdiag_{name}_")
            env = dict(VARIANTS[name], NCCL_NVLS_ENABLE="0")
            ts = time.time()
            try:
                worker.launch(launcher + [worker_py, "trace", out, "--device", args.device], out, 120, env,
                              drop=("CUDA_VISIBLE_DEVICES",))
            except (AssertionError, Exception) as e:  # noqa: B014
                print(f"{name} rep {rep}: launch failed: {str(e)[-800:]}", flush=True)
                report["runs"].append({"variant": name, "rep": rep, "error": str(e)[-2000:]})
                continue
            ranks, infos = [], []
            for r in (0, 1):
                arrays, info = worker.load(out, "trace", r)
                ranks.append([{k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(f"s{t}/")}
                              for t in range(1, worker.TRACE_STEPS + 1)])
                infos.append(info)
            res = analyse(ref, ranks)
            res["gradient_errors"] = gradient_errors(ref, ranks[0])
            res["cudnn"] = [cudnn_choices(out, 0), cudnn_choices(out, 1)]
            res.update(variant=name, rep=rep, graph=infos[0]["graph"], seconds=round(time.time() - ts, 1),
                       buckets=len(infos[0]["plan"]["buckets"]))
            report["runs"].append(res)
            print(json.dumps(res), flush=True)
    summary = {}
    for r in report["runs"]:
        s = summary.setdefault(r["variant"], {"runs": 0, "off": 0, "first_steps": []})
        s["runs"] += 1
        if r.get("first_bad_step"):
            s["off"] += 1
            s["first_steps"].append(r["first_bad_step"])
    report["summary"] = summary
    print("summary:", json.dumps(summary), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
