"""One rank of the data-parallel tests (tests/test_distributed.py, test_cuda_distributed.py):

    mpirun -n 2 python tests/distributed_worker.py SCENARIO OUTDIR [--device cpu|cuda]

Each rank writes OUTDIR/SCENARIO.rank<r>.npz (weights, losses) and .json (plan, errors).
The nets and data live here so the tests build the single-process references from them."""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import metalnn as mnn  # noqa: E402

from graph_nets import RecordingSource, digit_network  # noqa: E402

PER_RANK = 5        # odd on purpose
STEPS = 4
CAPTURED_STEPS = 6  # probe, capture, 4 replays
TRACE_STEPS = 6     # tools/dp_diag.py: weights after every step


def launch(cmd: list, out, timeout: float, env_extra: dict | None = None, drop: tuple = ()) -> None:
    """Runs `cmd` (mpirun / torchrun over this worker) and fails with every rank's error file
    when it does. The workers import the metalnn the caller imported (installed, or the source
    tree + a build dir); launcher variables of an enclosing job are dropped."""
    import subprocess

    env = dict(os.environ, **(env_extra or {}))
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(mnn.__file__))] + sys.path)
    for k in [k for k in env if k.startswith(("OMPI_COMM_WORLD", "PMIX_")) or k in ("RANK", "WORLD_SIZE") + drop]:
        del env[k]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    errors = "".join(open(os.path.join(out, f)).read() for f in sorted(os.listdir(out)) if f.startswith("error."))
    assert r.returncode == 0, f"{errors}\n{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def load(out, scenario: str, rank: int) -> tuple[dict, dict]:
    """What one rank wrote for a scenario: (arrays, info)."""
    with np.load(os.path.join(out, f"{scenario}.rank{rank}.npz")) as z:
        arrays = {k: z[k] for k in z.files}
    with open(os.path.join(out, f"{scenario}.rank{rank}.json")) as f:
        return arrays, json.load(f)


def weights(arrays: dict) -> dict:
    """The trained parameters among a rank's arrays (stored under "w/")."""
    return {k[2:]: v for k, v in arrays.items() if k.startswith("w/")}


def data(global_batch: int, step: int, channels: int = 1, size: int = 28, classes: int = 10):
    r = np.random.default_rng(1000 + step)
    x = r.standard_normal((global_batch, channels, size, size)).astype(np.float32)
    y = r.integers(0, classes, global_batch).astype(np.int32)
    return x, y


def digit(optimizer, keep=1.0):
    src, loss, nodes = digit_network(optimizer, keep_probability=keep, width=0.25)
    return loss


def smooth(optimizer, seed: int = 0):
    """The digit network's shape with tanh and average pooling: no ReLU or max-pool decision a
    rounding difference could flip, so two GPUs must stay within rounding of one GPU. `seed`
    shifts every layer's initialisation."""
    def w(i, o, k, layer):
        return mnn.ConvolutionWeights(i, o, k, seed=layer + 10 * seed, optimizer=optimizer,
                                      label=f"conv{layer}" if layer <= 2 else f"fc{layer - 2}")

    x = mnn.ImageNode()
    for i, o, layer in ((1, 6, 1), (6, 12, 2)):
        conv = mnn.ConvolutionNode(x, w(i, o, 5, layer))
        x = mnn.PoolingAverageNode(mnn.NeuronTanHNode(conv.result).result, 2, 2).result
    f1 = mnn.FullyConnectedNode(x, w(12, 32, (7, 7), 3))
    f2 = mnn.FullyConnectedNode(mnn.NeuronTanHNode(f1.result).result, w(32, 10, (1, 1), 4))
    return mnn.SoftmaxCrossEntropyLossNode(f2.result)


def trace_net(optimizer):
    """tools/dp_diag.py's network: DP_NET=digit (default) or smooth."""
    return smooth(optimizer) if os.environ.get("DP_NET") == "smooth" else digit(optimizer)


def bn_net(optimizer):
    src = mnn.ImageNode()
    conv = mnn.ConvolutionNode(src, mnn.ConvolutionWeights(1, 6, 3, seed=1, optimizer=optimizer, label="c"))
    bn = mnn.BatchNormalizationNode(conv.result, mnn.BatchNormalizationWeights(6, optimizer=optimizer, label="bn"))
    relu = mnn.NeuronReLUNode(bn.result)
    pool = mnn.PoolingMaxNode(relu.result, 4, 4)
    fc = mnn.FullyConnectedNode(pool.result, mnn.ConvolutionWeights(6, 10, (7, 7), seed=2, optimizer=optimizer,
                                                                    label="f"))
    return mnn.SoftmaxCrossEntropyLossNode(fc.result), bn


def python_update_net(log):
    src = mnn.ImageNode()
    rec = RecordingSource("rec", 1, 4, 5, log, seed=3, apply_sgd=0.05)
    conv = mnn.ConvolutionNode(src, rec)
    relu = mnn.NeuronReLUNode(conv.result)
    fc = mnn.FullyConnectedNode(relu.result, mnn.ConvolutionWeights(4, 10, (28, 28), seed=4,
                                                                    optimizer=mnn.SGD(0.05), label="f"))
    return mnn.SoftmaxCrossEntropyLossNode(fc.result), rec


def _train(loss, device, options, steps=STEPS, per_rank=PER_RANK, record=None):
    dist = mnn.distributed
    graph = mnn.Graph.training(loss, device=device, distributed=options)
    losses, global_losses = [], []
    for step in range(steps):
        x, y = data(per_rank * dist.world_size(), step)
        h = graph.run(dist.shard(x), dist.shard(y))
        losses.append(h.loss)
        global_losses.append(dist.average(h.loss))
    graph.synchronize()
    weights = {k: np.array(v.numpy() if isinstance(v, mnn.Tensor) else v) for k, v in graph.parameters().items()}
    return graph, weights, losses, global_losses


def _graph_info(graph) -> dict:
    ex = graph._current
    return {"mode": ex.graph_mode, "captures": ex.graph_captures, "launches": ex.graph_launches,
            "reason": ex.graph_fallback_reason}


def _labels(graph) -> list[str]:
    compiled = list(graph._compiled.values())[-1][0]
    return [s.label for s in compiled.steps]


def run(scenario: str, out: str, device: str) -> None:
    dist = mnn.distributed
    r = dist.rank()
    arrays, info = {}, {"rank": r, "world_size": dist.world_size()}

    def keep(prefix, weights):
        for k, v in weights.items():
            arrays[f"{prefix}/{k}"] = v

    if scenario in ("digit", "digit_det", "smooth", "smooth_det", "smooth_eager"):
        det = scenario.endswith("_det")
        opts = mnn.distributed.Options(bucket_mb=0.02, deterministic=det)
        net = (smooth if scenario.startswith("smooth") else digit)(mnn.SGD(0.05, momentum=0.9))
        eager = scenario.endswith("_eager")  # CUDA: kept eager instead of captured
        if eager:
            os.environ["METALNN_DISTRIBUTED_CUDA_GRAPHS"] = "0"
        try:
            graph, w, losses, glosses = _train(net, device, opts)
        finally:
            if eager:
                del os.environ["METALNN_DISTRIBUTED_CUDA_GRAPHS"]
        keep("w", w)
        arrays["losses"], arrays["global_losses"] = np.array(losses), np.array(glosses)
        info["plan"] = graph._distributed.last_plan
        info["steps"] = _labels(graph)
        info["graph"] = _graph_info(graph)
        path = os.path.join(out, f"{scenario}.ckpt.npz")
        graph.save(path)
        info["checkpoint_seen"] = os.path.exists(path)  # rank 0 wrote it before save() returned
    elif scenario == "trace":  # tools/dp_diag.py (issue #11): the weights after every step
        os.environ["METALNN_CUDNN_LOG"] = os.path.join(out, f"cudnn.rank{r}.log")  # the algorithms chosen
        opts = mnn.distributed.Options(bucket_mb=float(os.environ.get("DP_BUCKET_MB", "0.02")),
                                       deterministic=os.environ.get("DP_DETERMINISTIC") == "1")
        graph = mnn.Graph.training(trace_net(mnn.SGD(0.05, momentum=0.9)), device=device, distributed=opts)
        for step in range(TRACE_STEPS):
            x, y = data(PER_RANK * dist.world_size(), step)
            arrays[f"loss{step}"] = np.array(graph.run(dist.shard(x), dist.shard(y)).loss)
            graph.synchronize()
            keep(f"s{step + 1}", {k: np.array(v.numpy() if isinstance(v, mnn.Tensor) else v)
                                  for k, v in graph.parameters().items()})
        info["graph"] = _graph_info(graph)
        info["plan"] = graph._distributed.last_plan
    elif scenario == "broadcast":  # rank 1 starts from other weights: rank 0's are copied at bind
        loss = smooth(mnn.SGD(0.05, momentum=0.9), seed=0 if r == 0 else 5)
        graph, w, losses, _ = _train(loss, device, True, steps=2)
        keep("w", w)
    elif scenario == "resume":  # both ranks load what rank 0 saved in "digit" and train on
        graph = mnn.Graph.load(os.path.join(out, "digit.ckpt.npz"), device=device, distributed=True)
        x, y = data(PER_RANK * dist.world_size(), 99)
        graph.run(dist.shard(x), dist.shard(y))
        graph.synchronize()
        keep("w", {k: np.array(v.numpy() if isinstance(v, mnn.Tensor) else v)
                   for k, v in graph.parameters().items()})
    elif scenario == "captured":  # CUDA: the distributed step captured once (default) vs kept eager
        # SGD, not Adam: Adam's update hardly changes when every gradient is scaled by 2 (a sum
        # instead of an average), SGD's does. One process: both use the same cuDNN algorithms.
        opts = mnn.distributed.Options(bucket_mb=0.02)
        for prefix, eager in (("w", "0"), ("eager", "1")):
            os.environ["METALNN_DISTRIBUTED_CUDA_GRAPHS"] = "0" if eager == "1" else "1"
            before = mnn._core.graph.cuda_graph_stats()
            try:
                net = digit(mnn.SGD(0.05, momentum=0.9), keep=0.5)
                graph, w, losses, _ = _train(net, device, opts, steps=CAPTURED_STEPS)
            finally:
                del os.environ["METALNN_DISTRIBUTED_CUDA_GRAPHS"]
            after = mnn._core.graph.cuda_graph_stats()
            keep(prefix, w)
            arrays[f"{prefix}_losses"] = np.array(losses)
            info[prefix] = dict(_graph_info(graph), stats={k: after[k] - before[k] for k in after})
    elif scenario == "dropout":
        graph, w, losses, _ = _train(digit(mnn.Adam(1e-3), keep=0.5), device, True, steps=3)
        keep("w", w)
        arrays["losses"] = np.array(losses)
    elif scenario == "bn":
        loss, bn = bn_net(mnn.SGD(0.1))
        graph, w, losses, _ = _train(loss, device, True, steps=3, per_rank=4)
        keep("w", w)
        mean, _ = bn.running_statistics(graph)
        arrays["running_mean"] = np.array(mean.numpy() if isinstance(mean, mnn.Tensor) else mean)
    elif scenario == "python_update":
        log = []
        loss, rec = python_update_net(log)
        graph, w, losses, _ = _train(loss, device, {"bucket_mb": 0.001}, steps=2)
        keep("w", w)
        arrays["grad0"] = rec.gradients[0][0]
        arrays["bias_grad0"] = rec.gradients[0][1]
    elif scenario == "mismatch":
        errors = {}
        try:  # rank 1 builds a wider network
            src, loss, _ = digit_network(mnn.SGD(0.1), keep_probability=1.0, width=0.25 if r == 0 else 0.5)
            g = mnn.Graph.training(loss, device=device, distributed=True)
            x, y = data(2 * PER_RANK, 0)
            g.run(dist.shard(x), dist.shard(y))
        except ValueError as e:
            errors["graph"] = str(e)
        try:  # same graph, rank 1 feeds one more image
            g = mnn.Graph.training(digit(mnn.SGD(0.1)), device=device, distributed=True)
            x, y = data(2 * PER_RANK + 2, 0)
            n = PER_RANK + (r == 1)
            g.run(x[r * PER_RANK:r * PER_RANK + n], y[r * PER_RANK:r * PER_RANK + n])
        except ValueError as e:
            errors["batch"] = str(e)
        try:
            dist.shard(np.zeros((2 * PER_RANK + 1, 3)))
        except ValueError as e:
            errors["shard"] = str(e)
        info["errors"] = errors
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    np.savez(os.path.join(out, f"{scenario}.rank{r}.npz"), **arrays)
    with open(os.path.join(out, f"{scenario}.rank{r}.json"), "w") as f:
        json.dump(info, f)


def main() -> None:
    import faulthandler
    import traceback

    p = argparse.ArgumentParser()
    p.add_argument("scenarios")
    p.add_argument("out")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    faulthandler.dump_traceback_later(200, exit=True)  # a hung rank shows where it hangs
    try:
        mnn.distributed.init()
        if args.device == "cpu":
            mnn.set_num_threads(1)  # two ranks share the test machine's cores
        for scenario in args.scenarios.split(","):
            run(scenario, args.out, args.device)
        mnn.distributed.finalize()
    except BaseException:
        rank = os.environ.get("RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
        with open(os.path.join(args.out, f"error.rank{rank}.txt"), "w") as f:
            f.write(traceback.format_exc())
        raise


if __name__ == "__main__":
    main()
