"""CUDA RNN layers (backend/cuda/rnn.cu) against the CPU backend: every cell forward and
gradient, bidirectional, stacked, variable lengths, initial/final state gradients, odd sizes,
float32 and float16, the graph node and the benchmark step.

Skipped unless this build has a CUDA device (mnn.available_devices() lists cuda)."""

import numpy as np
import pytest
from rnn_reference import CELLS, IDS, make_weights

import metalnn as mnn
from metalnn.ops.rnn import rnn_backward, rnn_forward

HAS_CUDA = any(d.type == "cuda" for d in mnn.available_devices())
pytestmark = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device in this build/machine")

# cuBLAS and the CPU BLAS sum in different orders; float16 results are rounded once from float32.
TOL = {"float32": (2e-5, 2e-5), "float16": (4e-3, 4e-3)}



def _cuda(a):
    return None if a is None else mnn.Tensor(a, device="cuda")


def _host(t):
    return None if t is None else t.numpy()


def _close(got, ref, dtype, what=""):
    atol, rtol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(ref, np.float64), atol=atol, rtol=rtol,
                               equal_nan=True, err_msg=what)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_matches_cpu(cell, bidirectional, dtype):
    c, act, peep, flip = cell
    D = 2 if bidirectional else 1
    r = np.random.default_rng(1)
    layers = [(c, 13, 9, act, peep, flip), (c, 9 * D, 7, act, peep, flip)]
    T, B = 6, 5
    w = [a.astype(dtype) for a in make_weights(layers, bidirectional, seed=2)]
    x = r.standard_normal((T, B, 13)).astype(dtype)
    h0 = [r.standard_normal((B, s[2])).astype(dtype) for s in layers for _ in range(D)]
    c0 = [r.standard_normal((B, s[2])).astype(dtype) if c == "lstm" else None for s in layers for _ in range(D)]
    lengths = np.array([6, 2, 0, 5, 3], np.int32)
    dy = r.standard_normal((T, B, 7 * D)).astype(dtype)
    dh = [r.standard_normal((B, s[2])).astype(dtype) for s in layers for _ in range(D)]

    y, hl, cl, st = rnn_forward(x, w, layers, bidirectional, h0, c0, lengths, training=True)
    dx, dw, dh0, dc0 = rnn_backward(x, dy, w, layers, bidirectional, st, dh)

    gy, ghl, gcl, gst = rnn_forward(_cuda(x), [_cuda(a) for a in w], layers, bidirectional, [_cuda(a) for a in h0],
                                    [_cuda(a) for a in c0], _cuda(lengths), training=True)
    gdx, gdw, gdh0, gdc0 = rnn_backward(_cuda(x), _cuda(dy), [_cuda(a) for a in w], layers, bidirectional, gst,
                                        [_cuda(a) for a in dh])
    assert gy.device.type == "cuda" and gy.dtype == dtype
    _close(_host(gy), y, dtype, "y")
    _close(_host(gdx), dx, dtype, "dx")
    for k in range(len(hl)):
        _close(_host(ghl[k]), hl[k], dtype, f"h_last[{k}]")
        _close(_host(gdh0[k]), dh0[k], dtype, f"dh0[{k}]")
        if c == "lstm":
            _close(_host(gcl[k]), cl[k], dtype, f"c_last[{k}]")
            _close(_host(gdc0[k]), dc0[k], dtype, f"dc0[{k}]")
    for k, (a, b) in enumerate(zip(gdw, dw)):
        assert a.dtype == dtype
        _close(_host(a), b, dtype, f"dweights[{k}]")


def test_long_sequence_and_no_output_gradient():
    r = np.random.default_rng(3)
    layers = [("lstm", 32, 200, "tanh", False, False)]
    w = make_weights(layers, False, seed=4, scale=0.1)
    x = r.standard_normal((20, 32, 32)).astype(np.float32)
    dh = [r.standard_normal((32, 200)).astype(np.float32)]
    _, _, _, st = rnn_forward(x, w, layers, training=True)
    dx, dw, _, _ = rnn_backward(x, None, w, layers, False, st, dh)
    _, _, _, gst = rnn_forward(_cuda(x), [_cuda(a) for a in w], layers, training=True)
    gdx, gdw, _, _ = rnn_backward(_cuda(x), None, [_cuda(a) for a in w], layers, False, gst, [_cuda(dh[0])])
    _close(_host(gdx), dx, "float32", "dx")
    for a, b in zip(gdw, dw):
        _close(_host(a), b, "float32", "dw")


def test_graph_node_on_cuda():
    from metalnn.graph.nodes_rnn import RNNNode, RNNWeights
    from metalnn.rnn import GRUDescriptor

    x = np.random.default_rng(5).standard_normal((7, 4, 5)).astype(np.float32)
    ds = RNNWeights(GRUDescriptor(5, 6), seed=1)
    cpu = mnn.Graph(RNNNode(mnn.ImageNode("x"), ds, output="final").result, device="cpu").run(x).result
    gpu = mnn.Graph(RNNNode(mnn.ImageNode("x"), ds, output="final").result, device="cuda").run(x).result
    _close(np.asarray(gpu.numpy() if hasattr(gpu, "numpy") else gpu), cpu, "float32", "graph")


def test_benchmark_runs_on_cuda(capsys):
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "bench_rnn.py")
    spec = importlib.util.spec_from_file_location("bench_rnn", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--device", "cuda", "--iters", "3", "--warmup", "1"])
    assert "lstm" in capsys.readouterr().out
