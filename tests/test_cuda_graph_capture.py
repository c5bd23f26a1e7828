"""CUDA graphs captured once: the executor records the whole training step (forward,
gradients, Adam updates, dropout) on the second batch and replays it with one launch per
batch; results equal eager launches (METALNN_CUDA_GRAPHS=0).

Skipped unless this build has a CUDA device."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn import _core

HAS_CUDA = any(d.type == "cuda" for d in mnn.available_devices())
pytestmark = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device in this build/machine")

BATCH, STEPS = 12, 20


def _batches(steps=STEPS, n=BATCH, seed=50):
    rng = np.random.default_rng(seed)
    xs = [rng.random((n, 1, 28, 28)).astype(np.float32) for _ in range(steps)]
    ys = [rng.integers(0, 10, n).astype(np.int64) for _ in range(steps)]
    return xs, ys


def _net(learning_rate=1e-3):
    from metalnn.examples.digit_graph import digit_network

    return digit_network(mnn.Adam(learning_rate=learning_rate), width=0.25)


def _weights(graph):
    return {k: np.array(v.numpy() if hasattr(v, "numpy") else v) for k, v in graph.parameters().items()}


def _executor(graph):
    return graph._current


def _optimizer(graph):
    return next(n.data_source.optimizer for n in graph.nodes if getattr(n, "data_source", None) is not None)


def _out(ex, x):
    b = ex.encode([(0, x, "x")])
    b.wait()
    return np.array(b.slot(1))


def _train(monkeypatch, graphs, xs, ys, in_flight=2, hold_all=False, graph=None, between=None):
    """Losses of one batch each (read at the end when hold_all), trained weights, the graph."""
    monkeypatch.setenv("METALNN_CUDA_GRAPHS", "1" if graphs else "0")
    graph = graph or _net().training_graph(device="cuda", max_in_flight=in_flight)
    handles, losses = [], []
    for k, (x, y) in enumerate(zip(xs, ys)):
        if between:
            between(k, graph)
        handles.append(graph.encode_batch(x, labels=y))
        if not hold_all and len(handles) >= in_flight:
            losses.append(handles.pop(0).loss)
    losses += [h.loss for h in handles]
    graph.synchronize()
    return losses, _weights(graph), graph


def _close_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_training_step_captured_once_matches_eager(monkeypatch):
    xs, ys = _batches()
    before = _core.graph.cuda_graph_stats()
    graphed, w_graphed, g = _train(monkeypatch, True, xs, ys)
    after = _core.graph.cuda_graph_stats()
    ex = _executor(g)
    # Batch 0 probes eagerly, batch 1 is recorded, every later one is one replay.
    assert ex.graph_mode == "replay", ex.graph_fallback_reason
    assert ex.graph_captures == 1
    assert ex.graph_launches == STEPS - 1
    assert after["captures"] - before["captures"] == 1
    assert after["instantiations"] - before["instantiations"] == 1
    assert after["rerecords"] == before["rerecords"]
    eager, w_eager, ge = _train(monkeypatch, False, xs, ys)
    assert _executor(ge).graph_launches == 0
    # Same dropout masks and bias corrections: losses agree to rounding, not just roughly.
    np.testing.assert_allclose(graphed, eager, rtol=1e-5)
    assert len(set(graphed)) == len(graphed)
    _close_weights(w_graphed, w_eager)
    # The host counters (what Graph.save writes) advanced exactly as eagerly.
    opt = _optimizer(g)
    assert opt._metalnn_step.value == STEPS
    assert g._dropout_counter.value == STEPS


def test_results_survive_later_replays(monkeypatch):
    # Every handle is read only after all 20 batches ran (2 in flight): each holds its own loss.
    xs, ys = _batches(seed=51)
    held, _, g = _train(monkeypatch, True, xs, ys, hold_all=True)
    assert _executor(g).graph_captures == 1
    eager, _, _ = _train(monkeypatch, False, xs, ys)
    np.testing.assert_allclose(held, eager, rtol=1e-5)


def _dropout_executor(monkeypatch, graphs, seed=3):
    monkeypatch.setenv("METALNN_CUDA_GRAPHS", "1" if graphs else "0")
    counter = _core.graph.Counter(0)
    prog = _core.graph.Program(2, 1)
    prog.add_dropout_forward("drop", 0, 1, 0, 0.5, seed, counter)
    return _core.graph.Executor(prog, 2, "cuda"), counter


def test_dropout_masks_fresh_per_replay_and_equal_to_eager(monkeypatch):
    x = np.random.default_rng(52).standard_normal((37, 29)).astype(np.float32) + 3.0  # no zeros
    outs = {}
    for graphs in (True, False):
        ex, counter = _dropout_executor(monkeypatch, graphs)
        handles = [ex.encode([(0, x, "x")]) for _ in range(8)]  # read after all ran
        for h in handles:
            h.wait()
        outs[graphs] = [np.array(h.slot(1)) for h in handles]
        assert counter.value == 8
        assert ex.graph_launches == (7 if graphs else 0)
    masks = [o != 0 for o in outs[True]]
    assert all((m != masks[0]).any() for m in masks[1:])  # a new mask every batch
    for got, ref in zip(outs[True], outs[False]):
        np.testing.assert_array_equal(got, ref)
    # Independent of the implementation: the first mask is the CPU op's for the step's seed.
    key = _splitmix_key
    cpu, _ = mnn.ops.dropout_forward(x, 0.5, seed=key(3 ^ key(0)))
    np.testing.assert_array_equal(outs[True][0], cpu)


def _splitmix_key(z):
    m = (1 << 64) - 1
    z = (z + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def test_counter_set_on_host_reaches_the_device(monkeypatch):
    # A checkpoint restores counters on the host: replays continue from the new value.
    x = np.random.default_rng(53).standard_normal((9, 11)).astype(np.float32) + 3.0
    seqs = {}
    for graphs in (True, False):
        ex, counter = _dropout_executor(monkeypatch, graphs)
        out = []
        for k in range(6):
            if k == 4:
                ex.synchronize()
                counter.value = 1
            out.append(_out(ex, x))
        seqs[graphs] = out
        assert counter.value == 3
    for got, ref in zip(seqs[True], seqs[False]):
        np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(seqs[True][4], seqs[True][1])


def test_save_and_load_mid_run_resume_identically(monkeypatch, tmp_path):
    from metalnn.graph import Graph

    xs, ys = _batches(steps=12, seed=54)
    path = tmp_path / "mid.npz"
    _, _, g = _train(monkeypatch, True, xs[:6], ys[:6])
    g.save(path)
    rest, w_rest, _ = _train(monkeypatch, True, xs[6:], ys[6:], graph=g)
    assert _executor(g).graph_captures == 1
    loaded = Graph.load(path, device="cuda")
    resumed, w_resumed, g2 = _train(monkeypatch, True, xs[6:], ys[6:], graph=loaded)
    assert _executor(g2).graph_captures == 1
    np.testing.assert_allclose(resumed, rest, rtol=1e-5)
    _close_weights(w_resumed, w_rest)


def test_new_batch_shape_records_again(monkeypatch):
    xs, ys = _batches(steps=4, seed=55)
    xs2, ys2 = _batches(steps=4, n=7, seed=56)
    order = [(xs[0], ys[0]), (xs[1], ys[1]), (xs[2], ys[2]), (xs2[0], ys2[0]), (xs2[1], ys2[1]),
             (xs2[2], ys2[2]), (xs[3], ys[3]), (xs2[3], ys2[3])]
    got, _, g = _train(monkeypatch, True, *zip(*order))
    executors = [ex for _, ex, _ in g._compiled.values()]
    assert len(executors) == 2
    assert [ex.graph_captures for ex in executors] == [1, 1]
    assert sorted(ex.graph_launches for ex in executors) == [3, 3]
    ref, _, _ = _train(monkeypatch, False, *zip(*order))
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_learning_rate_change(monkeypatch):
    xs, ys = _batches(steps=10, seed=57)

    def change(k, graph):
        if k == 5:
            _optimizer(graph).learning_rate = 3e-3

    got, w_got, g = _train(monkeypatch, True, xs, ys, between=change)
    assert all(ex.graph_mode == "replay" for _, ex, _ in g._compiled.values())
    ref, w_ref, _ = _train(monkeypatch, False, xs, ys, between=change)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    _close_weights(w_got, w_ref)


def test_bad_labels_on_a_replayed_batch(monkeypatch):
    # The label check runs on the batch's host copy before its replay: nothing launches,
    # weights and counters stay, and the next batch replays the same graph.
    xs, ys = _batches(steps=6, seed=58)
    _, _, g = _train(monkeypatch, True, xs[:4], ys[:4])
    before = _weights(g)
    opt = _optimizer(g)
    bad = ys[4].copy()
    bad[5] = 10
    h = g.encode_batch(xs[4], labels=bad)
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 10\), got 10 at flat index 5"):
        h.wait()
    g.synchronize()
    after = _weights(g)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])
    assert opt._metalnn_step.value == 4
    assert np.isfinite(g.encode_batch(xs[5], labels=ys[5]).loss)
    ex = _executor(g)
    assert ex.graph_captures == 1 and ex.graph_launches == 4
    assert opt._metalnn_step.value == 5


def test_inference_graph_shares_the_training_weights(monkeypatch):
    monkeypatch.setenv("METALNN_CUDA_GRAPHS", "1")
    net = _net()
    train = net.training_graph(device="cuda")
    infer = net.inference_graph(device="cuda")
    xs, ys = _batches(steps=5, seed=59)
    first = np.array(infer.run(xs[0]).result)
    for x, y in zip(xs, ys):
        train.encode_batch(x, labels=y)
    train.synchronize()
    w_train, w_infer = _weights(train), _weights(infer)
    assert w_train.keys() == w_infer.keys()
    for k in w_train:
        np.testing.assert_array_equal(w_infer[k], w_train[k])
    assert not np.allclose(np.array(infer.run(xs[0]).result), first)  # it sees the trained weights
    # Matches a graph built from the trained weights on the CPU.
    cpu = np.array(_cpu_logits(net, w_train, xs[0]))
    np.testing.assert_allclose(np.array(infer.run(xs[0]).result), cpu, rtol=1e-3, atol=1e-4)


def _cpu_logits(net, weights, x):
    for node in net.nodes.values():
        ds = getattr(node, "data_source", None)
        if ds is None:
            continue
        for which, arr in (("weights", ds.weight_array), ("biases", ds.bias_array)):
            key = f"{ds.label()}.{which}"
            if arr is not None and key in weights:
                arr[...] = weights[key].reshape(arr.shape)
    return net.inference_graph(device="cpu").run(x).result
