"""RNN graph nodes with image sources (source_layout='image') on CUDA: the activity classifier's
training graph (ConvolutionNode -> RNNNode reading the (N, C, 1, L) image as an (L, N, C)
sequence -> FullyConnectedNode -> softmax cross-entropy, python/metalnn/examples/activity.py
``build_graphs``) takes the same steps on cuda as on the cpu: losses, trained weights and the
inference graph's logits, with CUDA graph capture on and off. The image <-> sequence layout
change is the matrix transpose (tests/test_shape.py, tests/test_cuda_shape.py).

Skipped unless this build has a CUDA device."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn.examples.activity import ActivityClassifier, build_graphs

HAS_CUDA = any(d.type == "cuda" for d in mnn.available_devices())
pytestmark = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device in this build/machine")

STEPS = 5


def _batches(n=5, steps=STEPS, seed=30):
    """(n, 6, 1, 100) series (conv kernel = stride = 5: 20 LSTM steps) and labels of 4 classes."""
    r = np.random.default_rng(seed)
    xs = [r.standard_normal((n, 6, 1, 100)).astype(np.float32) for _ in range(steps)]
    ys = [r.integers(0, 4, n).astype(np.int32) for _ in range(steps)]
    return xs, ys


def _numpy(v):
    return np.array(v.numpy() if hasattr(v, "numpy") else v, dtype=np.float64)


def _train(device, xs, ys, optimizer=None, conv_channels=7, hidden=13):
    """Losses per step, trained weights by name, inference logits on the first batch, the executor."""
    net = ActivityClassifier(conv_channels=conv_channels, hidden=hidden, seed=4, learning_rate=1e-2)
    train, infer, _ = build_graphs(net, optimizer, device=device)
    losses = [float(np.asarray(train.run(x, labels=y).loss)) for x, y in zip(xs, ys)]
    train.synchronize()
    weights = {k: _numpy(v) for k, v in train.parameters().items()}
    logits = _numpy(infer.run(xs[0]).result)
    return losses, weights, logits, train._current


def _close_weights(got, ref, rtol, atol):
    # conv and dense weights and biases, the LSTM's flat weights
    assert got.keys() == ref.keys() and len(ref) == 5, sorted(ref)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=rtol, atol=atol * max(1.0, float(np.abs(ref[k]).max())),
                                   err_msg=k)


@pytest.mark.parametrize("capture", ["0", "1"])
def test_activity_graph_sgd_steps_match_cpu(monkeypatch, capture):
    """SGD: each step is linear in the gradients, so the trained weights follow the cpu's within
    float32 rounding of the reductions."""
    monkeypatch.setenv("METALNN_CUDA_GRAPHS", capture)
    xs, ys = _batches()
    loss_cpu, w_cpu, logits_cpu, _ = _train("cpu", xs, ys, lambda: mnn.SGD(learning_rate=0.05))
    loss_gpu, w_gpu, logits_gpu, ex = _train("cuda", xs, ys, lambda: mnn.SGD(learning_rate=0.05))
    np.testing.assert_allclose(loss_gpu, loss_cpu, rtol=1e-4, atol=1e-5)
    assert loss_cpu[0] != loss_cpu[-1]  # the weights did move
    _close_weights(w_gpu, w_cpu, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logits_gpu, logits_cpu, rtol=1e-4, atol=1e-4)
    if capture == "1":
        # Steps 3.. replay the recorded step: the transposes ran on the captured stream.
        assert ex.graph_captures >= 1 and ex.graph_launches >= STEPS - 2, (ex.graph_captures, ex.graph_launches)


def test_activity_graph_adam_steps_match_cpu(monkeypatch):
    """The graph as bench_activity.py --device cuda builds it (Adam). Adam's first steps move each
    weight by about +-lr whatever its gradient's size, so a gradient within rounding of 0 may
    step the other way on the other device: allow that for a handful of weights, no more."""
    monkeypatch.setenv("METALNN_CUDA_GRAPHS", "1")
    xs, ys = _batches(n=8, seed=31)
    loss_cpu, w_cpu, logits_cpu, _ = _train("cpu", xs, ys, conv_channels=32, hidden=40)
    loss_gpu, w_gpu, logits_gpu, _ = _train("cuda", xs, ys, conv_channels=32, hidden=40)
    np.testing.assert_allclose(loss_gpu, loss_cpu, rtol=1e-3, atol=1e-4)
    assert w_gpu.keys() == w_cpu.keys()
    total = sum(v.size for v in w_cpu.values())
    off = sum(int(np.sum(np.abs(w_gpu[k] - w_cpu[k]) > 1e-4 * max(1.0, float(np.abs(w_cpu[k]).max()))))
              for k in w_cpu)
    assert off <= max(3, total // 2000), f"{off} of {total} weights differ by more than 1e-4"
    np.testing.assert_allclose(logits_gpu, logits_cpu, rtol=1e-3, atol=1e-3)


def test_image_source_gradient_on_cuda_matches_cpu():
    """The gradient with respect to the image source (sequence_to_image of the RNN's dx), read
    from a training graph's result: (N, C, 1, L) on cuda equals the cpu's."""
    from metalnn.graph.data_source import ConvolutionWeights
    from metalnn.graph.nodes_rnn import RNNNode, RNNWeights
    from metalnn.rnn import LSTMDescriptor

    def build(device):
        rnn = RNNNode(mnn.ImageNode("x"), RNNWeights(LSTMDescriptor(9, 11), seed=5, label="lstm"), output="final",
                      source_layout="image")
        fc = mnn.FullyConnectedNode(rnn.result, ConvolutionWeights(11, 3, 1, seed=6, label="fc"))
        train = mnn.Graph.training(mnn.SoftmaxCrossEntropyLossNode(fc.result), device=device)
        return mnn.Graph(train.results[0], result_needed=True, device=device)

    r = np.random.default_rng(32)
    x = r.standard_normal((6, 9, 1, 37)).astype(np.float32)  # N*C = 54, L = 37: partial tiles
    y = r.integers(0, 3, 6).astype(np.int32)
    dx_cpu = np.asarray(build("cpu").run(x, labels=y).result)
    dx_gpu = _numpy(build("cuda").run(x, labels=y).result)
    assert dx_cpu.shape == x.shape and np.abs(dx_cpu).max() > 0
    np.testing.assert_allclose(dx_gpu, dx_cpu, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(dx_cpu).max())))
