"""Data-parallel training on two GPUs (NCCL): two processes started by torchrun (the TCP
rendezvous, NCCL all-reduce, broadcast and all-gather) match one GPU on the global batch.
Skipped without two GPUs and a CUDA build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import metalnn as mnn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import distributed_worker as worker  # noqa: E402


def _gpus() -> int:
    if not any(d.type == "cuda" for d in mnn.available_devices()) or not shutil.which("nvidia-smi"):
        return 0
    r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return sum(1 for line in r.stdout.splitlines() if line.startswith("GPU "))


pytestmark = pytest.mark.skipif(_gpus() < 2 or not mnn._core.distributed.nccl_built,
                                reason="needs two GPUs and metalnn built with CUDA")


def _launch(scenarios: str, out) -> None:
    if shutil.which("torchrun"):
        cmd = ["torchrun", "--standalone", "--nproc_per_node=2"]
    else:
        cmd = ["mpirun", "--allow-run-as-root", "-n", "2", sys.executable]
    cmd += [os.path.join(HERE, "distributed_worker.py"), scenarios, str(out), "--device", "cuda"]
    # Never NVLink multicast on shared machines; each rank picks its own GPU.
    worker.launch(cmd, out, 300, {"NCCL_NVLS_ENABLE": "0"}, drop=("CUDA_VISIBLE_DEVICES",))


_load, _weights = worker.load, worker.weights


def _single_gpu(loss, steps, global_batch):
    g = mnn.Graph.training(loss, device="cuda")
    for step in range(steps):
        g.run(*worker.data(global_batch, step))
    g.synchronize()
    return {k: np.asarray(v.numpy() if isinstance(v, mnn.Tensor) else v) for k, v in g.parameters().items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("dp_cuda")
    _launch("smooth,smooth_det,smooth_eager,digit,digit_det,broadcast,dropout,mismatch,captured", out)
    return out


def _mode(info: dict) -> tuple[str, int]:
    return info["graph"]["mode"], info["graph"]["captures"]


def test_two_gpus_match_one_gpu_on_the_global_batch(runs):
    # tanh + average pooling: with ReLU and max pooling a value within rounding of a decision can
    # send two correct runs apart (docs/distributed.md, "How close to one GPU"; tools/dp_diag.py).
    ref = _single_gpu(worker.smooth(mnn.SGD(0.05, momentum=0.9)), worker.STEPS, 2 * worker.PER_RANK)
    for scenario, mode in (("smooth", ("replay", 1)), ("smooth_det", ("replay", 1)), ("smooth_eager", ("off", 0))):
        a0, info = _load(runs, scenario, 0)
        a1, _ = _load(runs, scenario, 1)
        w0, w1 = _weights(a0), _weights(a1)
        assert _mode(info) == mode, (scenario, info["graph"])
        assert set(w0) == set(ref)
        bad = {k: float(np.max(np.abs(w0[k] - ref[k]))) for k in ref
               if not np.allclose(w0[k], ref[k], rtol=1e-3, atol=1e-5)}
        assert not bad, f"{scenario}: weights off the 1-GPU run (max abs difference) {bad}"
        for k in ref:
            assert np.array_equal(w0[k], w1[k]), (scenario, k)  # the ranks end bitwise equal
        assert a0["global_losses"][0] == a1["global_losses"][0]


def test_digit_network_buckets_start_early_and_ranks_stay_equal(runs):
    for scenario in ("digit", "digit_det"):
        a0, info = _load(runs, scenario, 0)
        a1, _ = _load(runs, scenario, 1)
        w0, w1 = _weights(a0), _weights(a1)
        eager = os.environ.get("METALNN_DISTRIBUTED_CUDA_GRAPHS") == "0"
        assert _mode(info) == (("off", 0) if eager else ("replay", 1)), info["graph"]
        assert w0 and all(np.array_equal(w0[k], w1[k]) for k in w0), scenario
        assert len(info["plan"]["buckets"]) >= 2
        assert info["steps"].index("allreduce.bucket0") < info["steps"].index("allreduce.finish")
        assert a0["global_losses"][0] == a1["global_losses"][0]
        assert np.all(np.isfinite(a0["global_losses"]))
        assert info["checkpoint_seen"]


def test_rank0_weights_are_broadcast_over_nccl(runs):
    ref = _single_gpu(worker.smooth(mnn.SGD(0.05, momentum=0.9)), 2, 2 * worker.PER_RANK)  # rank 0's seed
    w0, w1 = _weights(_load(runs, "broadcast", 0)[0]), _weights(_load(runs, "broadcast", 1)[0])
    for k in ref:
        assert np.array_equal(w0[k], w1[k]), k
        np.testing.assert_allclose(w1[k], ref[k], rtol=1e-3, atol=1e-5, err_msg=k)


def test_dropout_ranks_stay_equal(runs):
    w0, w1 = _weights(_load(runs, "dropout", 0)[0]), _weights(_load(runs, "dropout", 1)[0])
    assert all(np.array_equal(w0[k], w1[k]) for k in w0)


def test_mismatched_ranks_raise_over_nccl(runs):
    for r in (0, 1):
        errors = _load(runs, "mismatch", r)[1]["errors"]
        assert "built a different graph" in errors.get("graph", ""), errors
        assert "per-rank batch shapes" in errors.get("batch", ""), errors


def test_distributed_step_captured_once_matches_eager(runs):
    n = worker.CAPTURED_STEPS
    for r in (0, 1):
        arrays, info = _load(runs, "captured", r)
        g, e = info["w"], info["eager"]
        assert g["mode"] == "replay" and g["captures"] == 1 and g["launches"] == n - 1, g
        assert g["stats"]["captures"] == 1 and g["stats"]["launches"] == n - 1 and g["stats"]["rerecords"] == 0, g
        # The fallback (METALNN_DISTRIBUTED_CUDA_GRAPHS=0) stays eager: no graph at all.
        assert e["mode"] == "off" and e["captures"] == 0 and e["stats"]["launches"] == 0, e
        assert "wait for the device" in e["reason"], e
        captured, eager = {k[2:]: v for k, v in arrays.items() if k.startswith("w/")}, \
            {k[6:]: v for k, v in arrays.items() if k.startswith("eager/")}
        assert set(captured) == set(eager) and captured
        for k in captured:  # same dropout masks; NCCL's average (eager) vs the gather's (captured)
            np.testing.assert_allclose(captured[k], eager[k], rtol=1e-5, atol=1e-6, err_msg=f"rank {r} {k}")
        np.testing.assert_allclose(arrays["w_losses"], arrays["eager_losses"], rtol=1e-5)
    w0 = _weights(_load(runs, "captured", 0)[0])
    w1 = _weights(_load(runs, "captured", 1)[0])
    assert all(np.array_equal(w0[k], w1[k]) for k in w0)  # replayed ranks stay bitwise equal
