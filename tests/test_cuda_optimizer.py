"""CUDA: optimizer regularization types (none / L1 / L2) and per-tensor learning-rate scales
against the CPU backend, float32 and float16 weights.

Skipped unless this build has a CUDA device (mnn.available_devices() lists cuda)."""

import numpy as np
import pytest

import metalnn as mnn

HAS_CUDA = any(d.type == "cuda" for d in mnn.available_devices())
pytestmark = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device in this build/machine")

SHAPES = [(7, 13), (1001,), (3, 5, 5, 3)]


def _run(dev, dtype, name, scales, regularization, seed=5):
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    ws[0].flat[:5] = 0  # sign(0) = 0 for L1
    conv = (lambda a: a.copy()) if dev == "cpu" else (lambda a: mnn.Tensor(a, device="cuda"))
    w = [conv(a) for a in ws]
    nstate = {"sgd": 1, "adam": 2, "rmsprop": 1}[name]
    st = [[conv(np.zeros(s, np.float32)) for s in SHAPES] for _ in range(nstate)]
    common = dict(weight_decay=0.05, regularization=regularization, learning_rate_scales=scales)
    for t in range(1, 4):
        g = [conv(rng.standard_normal(s).astype(dtype)) for s in SHAPES]
        if name == "sgd":
            mnn.ops.sgd_step_many(w, g, st[0], learning_rate=0.1, momentum=0.9, **common)
        elif name == "adam":
            mnn.ops.adam_step_many(w, g, st[0], st[1], t, learning_rate=0.01, **common)
        else:
            mnn.ops.rmsprop_step_many(w, g, st[0], learning_rate=0.01, **common)
    return [np.asarray(a.numpy() if hasattr(a, "numpy") else a) for a in w + [s for lst in st for s in lst]]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("regularization", ["l2", "l1", "none"])
@pytest.mark.parametrize("scales", [None, [1.0, 0.25, 0.0]])
@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_regularization_and_scales_match_cpu(name, scales, regularization, dtype):
    got, ref = _run("cuda", dtype, name, scales, regularization), _run("cpu", dtype, name, scales, regularization)
    for a, b in zip(got, ref):
        tol = (1e-6, 1e-5) if a.dtype == np.float32 else (1e-3, 2e-3)
        np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), atol=tol[0], rtol=tol[1])
    if scales is not None:  # scale 0: the third tensor keeps its weights
        start = _run("cpu", dtype, name, [0.0, 0.0, 0.0], regularization)
        np.testing.assert_array_equal(got[2], start[2])
