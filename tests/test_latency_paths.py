"""Batch-1 inference paths (benchmarks/bench_latency.py): the fully connected layer's
matrix-vector route for one row (backend/cpu/gemv.cpp) against a float64 reference and against
the same row inside a batch (the GEMM route); the digit network's batch-1 output through the
kernel API, the inference graph and layers.Sequential against a numpy reference of the network
and against the batched run; with one and two threads."""

import threading

import numpy as np
import pytest

from metalnn import ops
from metalnn.layers import Conv2d, Flatten, Linear, MaxPool2d, Sequential

from helpers import assert_close, rng


@pytest.mark.parametrize("O,F", [(1, 1), (3, 17), (37, 15), (1029, 3137), (10, 1024)])
def test_fully_connected_batch1_matches_reference_and_batched_row(O, F, threads):
    r = rng(31)
    x = r.standard_normal((5, F)).astype(np.float32)
    w = r.standard_normal((O, F)).astype(np.float32)
    b = r.standard_normal(O).astype(np.float32)
    want = x[2:3].astype(np.float64) @ w.T.astype(np.float64) + b
    got = ops.fully_connected_forward(np.ascontiguousarray(x[2:3]), w, b)
    scale = np.sqrt(F)  # float32 sums of F terms of unit size
    assert_close(got, want, atol=2e-6 * scale, rtol=1e-5, what="batch-1 vs float64")
    batched = ops.fully_connected_forward(x, w, b)
    assert_close(got, batched[2:3], atol=2e-6 * scale, rtol=1e-5, what="batch-1 vs batched row")


def test_fully_connected_batch1_fused_relu_and_nan():
    r = rng(32)
    x = r.standard_normal((1, 301)).astype(np.float32)
    w = r.standard_normal((67, 301)).astype(np.float32)
    b = r.standard_normal(67).astype(np.float32)
    want = np.maximum(x.astype(np.float64) @ w.T + b, 0)
    assert_close(ops.fully_connected_forward(x, w, b, neuron="relu"), want, atol=1e-4, rtol=1e-5)
    x[0, 7] = np.nan
    y = ops.fully_connected_forward(x, w, b)
    assert np.all(np.isnan(y))  # every output reads x[7]


def _digit_model() -> Sequential:
    return Sequential([
        Conv2d(1, 8, 5, activation="relu"), MaxPool2d(2),
        Conv2d(8, 12, 5, activation="relu"), MaxPool2d(2),
        Flatten(), Linear(588, 67, activation="relu"), Linear(67, 10),
    ], input_shape=(1, 28, 28), seed=3).build()


def _reference(p, x):
    """float64 numpy reference: conv 5x5 same + relu + max-pool 2, twice, then two dense layers."""
    def conv(a, w, b):
        n, c, h, wd = a.shape
        pad = np.pad(a, ((0, 0), (0, 0), (2, 2), (2, 2)))
        out = np.zeros((n, w.shape[0], h, wd))
        for i in range(5):
            for j in range(5):
                out += np.einsum("nchw,oc->nohw", pad[:, :, i:i + h, j:j + wd], w[:, :, i, j])
        return out + b[None, :, None, None]

    def pool(a):
        n, c, h, w = a.shape
        return a.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))

    a = pool(np.maximum(conv(x, p[0], p[1]), 0))
    a = pool(np.maximum(conv(a, p[2], p[3]), 0))
    a = np.maximum(a.reshape(len(x), -1) @ p[4].reshape(p[4].shape[0], -1).T + p[5], 0)
    return a @ p[6].reshape(p[6].shape[0], -1).T + p[7]


def test_digit_network_batch1_paths_agree(threads):
    model = _digit_model()
    x = rng(33).random((6, 1, 28, 28), dtype=np.float32)
    batched = model.predict(x)
    params = []
    for layer in model.layers:
        ds = getattr(layer, "data_source", None)
        if ds is not None:
            params += [ds.weights().astype(np.float64), ds.biases().astype(np.float64)]
    want = _reference(params, x.astype(np.float64))
    assert_close(batched, want, atol=1e-4, rtol=1e-4, what="batched vs float64")
    graph = model.graph
    for i in range(len(x)):
        one = np.ascontiguousarray(x[i:i + 1])
        for name, got in (("predict", model.predict(one)), ("graph.run", graph.run(one).result),
                          ("encode_batch", graph.encode_batch(one).wait().result)):
            assert_close(np.asarray(got), batched[i:i + 1], atol=1e-5, rtol=1e-5, what=f"{name} row {i}")


def test_encode_then_wait_runs_the_batch_on_the_waiting_thread():
    # A batch not yet started when its caller waits runs on the caller (no hand-off to the
    # executor's thread and back); before, the executor's thread ran every encoded batch.
    # Whether the caller gets there first is a race, hence "some of 100".
    from metalnn import _core

    ran_on = []
    prog = _core.graph.Program(2, 0)
    prog.add_neuron_forward("relu", 0, 1, "relu", None, None)
    prog.add_python("where", lambda arrays: ran_on.append(threading.get_ident()), [1])
    ex = _core.graph.Executor(prog, 2)
    x = rng(36).standard_normal((3, 5)).astype(np.float32)
    for _ in range(100):
        b = ex.encode([(0, x, "x")])
        assert b.wait_for(10.0)
        np.testing.assert_array_equal(b.slot(1), np.maximum(x, 0))
    assert len(ran_on) == 100
    assert ran_on.count(threading.get_ident()) >= 1


def test_waiting_out_of_order_keeps_batches_in_order(threads):
    # Waiting for a later batch first must not run it ahead of the ones queued before it.
    model = _digit_model()
    graph = model.graph
    xs = rng(35).random((12, 1, 1, 28, 28), dtype=np.float32)
    want = [graph.run(x).result.copy() for x in xs]
    order = []
    handles = [graph.encode_batch(x, on_complete=order.append) for x in xs]
    for i in (11, 5, 0, 7):
        handles[i].wait()
        assert handles[i].done() and all(h.done() for h in handles[:i])
    graph.synchronize()
    assert order == sorted(order) and len(order) == len(xs)
    for h, w in zip(handles, want):
        np.testing.assert_array_equal(h.result, w)
