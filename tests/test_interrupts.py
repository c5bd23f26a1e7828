"""Async batches, Ctrl-C, threads and the GIL (issue 9, item 5)."""

import os
import signal
import threading
import time

import numpy as np
import pytest

import metalnn as mnn

from graph_nets import digit_network


def _training_graph(seed=0):
    """A narrow digit network without dropout: training is deterministic."""
    _, loss, _ = digit_network(mnn.SGD(learning_rate=0.05, momentum=0.9), keep_probability=1.0, seed=seed,
                               width=0.25)
    return mnn.Graph.training(loss)


def _batch():
    r = np.random.default_rng(3)
    return r.standard_normal((8, 1, 28, 28)).astype(np.float32), r.integers(0, 10, 8).astype(np.int32)


def _trained(k):
    graph = _training_graph()
    x, y = _batch()
    for _ in range(k):
        graph.encode_batch(x, y)
    graph.synchronize()
    return graph.parameters()


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
def test_ctrl_c_during_training_leaves_the_graph_usable_and_weights_whole():
    graph = _training_graph()
    x, y = _batch()
    graph.encode_batch(x, y).wait()  # compiled and warm
    # A process started in the background (CI) inherits SIGINT ignored: install Python's handler.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.4, lambda: os.kill(os.getpid(), signal.SIGINT))
    started = 0
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in range(100_000):
                graph.encode_batch(x, y).wait()
                started += 1
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    graph.synchronize()
    got = graph.parameters()
    # The interrupted batch either never started or ran to its end: weights equal those of
    # k or k+1 whole training steps, never a mix.
    done = 1 + started
    refs = [_trained(done), _trained(done + 1)]
    assert any(all(np.array_equal(got[k], ref[k]) for k in ref) for ref in refs), "weights are half-updated"
    # And the graph keeps training.
    loss = graph.encode_batch(x, y).wait().loss
    assert np.isfinite(loss)


def test_encoding_from_several_threads():
    """Encoding one graph from several Python threads works: each batch gets its own result."""
    _, loss, nodes = digit_network(None, keep_probability=1.0, width=0.25)
    graph = mnn.Graph(nodes["f2"].result)
    r = np.random.default_rng(0)
    inputs = [r.standard_normal((4, 1, 28, 28)).astype(np.float32) for _ in range(12)]
    expected = [graph.run(x).wait().result.copy() for x in inputs]
    results, errors = {}, []

    def worker(ids):
        try:
            for i in ids:
                results[i] = graph.encode_batch(inputs[i]).wait().result.copy()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(range(t, 12, 4),)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for i in range(12):
        np.testing.assert_array_equal(results[i], expected[i])


def test_gil_is_released_during_a_long_kernel():
    r = np.random.default_rng(1)
    x = r.standard_normal((64, 32, 56, 56)).astype(np.float32)
    w = r.standard_normal((64, 32, 3, 3)).astype(np.float32)
    finished = threading.Event()

    def run():
        mnn.ops.conv2d_forward(x, w, padding=1)
        finished.set()

    t = threading.Thread(target=run)
    start = time.perf_counter()
    t.start()
    ticks = 0
    while not finished.is_set():  # Python keeps running while the kernel runs
        ticks += 1
    t.join()
    elapsed = time.perf_counter() - start
    assert elapsed > 0.02, "kernel too short to tell"
    assert ticks > 1000, f"the main thread ran only {ticks} iterations in {elapsed:.2f} s"
