"""RNNNode in graphs: inference matches the kernel op, the gradient node matches rnn_backward,
a training graph (RNN -> fully connected -> softmax cross-entropy) takes the same SGD step as the
kernel ops, and an activity-style classifier trains."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn.graph.data_source import ConvolutionWeights
from metalnn.graph.nodes_rnn import RNNNode, RNNWeights
from metalnn.ops.rnn import rnn_backward, rnn_forward
from metalnn.rnn import GRUDescriptor, LSTMDescriptor, MGUDescriptor, RNNSingleGateDescriptor

from helpers import assert_close, raises_named, randn, rng

LAYERS = {
    "lstm": lambda: [LSTMDescriptor(5, 7, use_peephole=True), LSTMDescriptor(7, 6)],
    "gru": lambda: [GRUDescriptor(5, 7)],
    "mgu-bidirectional": lambda: [MGUDescriptor(5, 4), MGUDescriptor(8, 3)],
    "single_gate": lambda: [RNNSingleGateDescriptor(5, 6, activation="tanh")],
}


def _weights(name, **kw):
    return RNNWeights(LAYERS[name](), bidirectional=name.endswith("bidirectional"), seed=3, **kw)


@pytest.mark.parametrize("output", ["sequence", "final"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_node_matches_kernel_op(name, output):
    ds = _weights(name)
    x = randn(rng(1), 6, 4, 5)
    node = RNNNode(mnn.ImageNode("x"), ds, output=output)
    y = mnn.Graph(node.result).run(x).result
    layer = ds.layer
    ref, h_last, _, _ = rnn_forward(x, ds.matrices(), layer.layers, layer.bidirectional)
    if output == "final":
        D = layer.directions
        ref = np.concatenate(h_last[-D:], axis=1)
    assert y.shape == ref.shape
    assert_close(y, ref, atol=0, rtol=0)


@pytest.mark.parametrize("name", list(LAYERS))
def test_gradient_node_matches_kernel_op(name):
    r = rng(2)
    ds = _weights(name)
    layer = ds.layer
    x, dy = randn(r, 5, 3, 5), randn(r, 5, 3, layer.output_feature_channels)
    node = RNNNode(mnn.ImageNode("x"), ds)
    g = node.gradient_filter(mnn.ImageNode("dy"))
    dx = mnn.Graph(g.result).run({"x": x, "dy": dy}).result
    _, _, _, st = rnn_forward(x, ds.matrices(), layer.layers, layer.bidirectional, training=True)
    ref = rnn_backward(x, dy, ds.matrices(), layer.layers, layer.bidirectional, st)[0]
    assert_close(dx, ref, atol=0, rtol=0)


@pytest.mark.parametrize("name", list(LAYERS))
def test_training_step_matches_ops(name):
    """RNN (final states) -> fully connected -> softmax cross-entropy, one SGD step on both
    the RNN's flat weights and the dense layer, against the kernel ops."""
    r = rng(4)
    lr = 0.1
    ds = _weights(name, optimizer=mnn.SGD(learning_rate=lr))
    layer = ds.layer
    w0 = [m.copy() for m in ds.matrices()]
    O = layer.output_feature_channels
    fw, fb = randn(r, 3, O, scale=0.4), randn(r, 3, scale=0.1)
    fc_ds = ConvolutionWeights.from_arrays(fw, fb, optimizer=mnn.SGD(learning_rate=lr), label="fc")
    x, labels = randn(r, 7, 4, 5), r.integers(0, 3, 4).astype(np.int32)
    rnn = RNNNode(mnn.ImageNode("x"), ds, output="final")
    fc = mnn.FullyConnectedNode(rnn.result, fc_ds)
    loss = mnn.SoftmaxCrossEntropyLossNode(fc.result)
    got = mnn.Graph.training(loss).run(x, labels=labels).loss

    D = layer.directions
    _, h_last, _, st = rnn_forward(x, w0, layer.layers, layer.bidirectional, training=True)
    h = np.ascontiguousarray(np.concatenate(h_last[-D:], axis=1))
    logits = mnn.ops.fully_connected_forward(h, fw, fb)
    want, sl = mnn.ops.softmax_cross_entropy_forward(logits, labels)
    dl = mnn.ops.softmax_cross_entropy_backward(sl)
    dh = mnn.ops.fully_connected_backward_input(dl, fw, h.shape)
    H = layer.descriptors[-1].output_feature_channels
    dh_last = [None] * (len(layer.descriptors) * D)
    for d in range(D):
        dh_last[len(dh_last) - D + d] = np.ascontiguousarray(dh[:, d * H:(d + 1) * H])
    _, dw, _, _ = rnn_backward(x, None, w0, layer.layers, layer.bidirectional, st, dh_last)
    assert_close(got, want, atol=1e-6, rtol=1e-5)
    for m, a, g in zip(ds.matrices(), w0, dw):
        assert_close(m, a - lr * g, atol=1e-6, rtol=1e-5)
    assert_close(fc_ds.weight_array.reshape(fw.shape), fw - lr * mnn.ops.fully_connected_backward_weight(dl, h),
                 atol=1e-6, rtol=1e-5)


def test_graph_classifier_trains():
    """A sequence classifier (GRU -> dense) learns which half of the sequence holds a pulse."""
    r = rng(5)
    T, B = 12, 32
    ds = RNNWeights(GRUDescriptor(2, 16), seed=1, optimizer=mnn.Adam(learning_rate=0.02))
    fc_ds = ConvolutionWeights(16, 2, optimizer=mnn.Adam(learning_rate=0.02), label="fc")
    loss = mnn.SoftmaxCrossEntropyLossNode(mnn.FullyConnectedNode(RNNNode(mnn.ImageNode("x"), ds, "final").result,
                                                                  fc_ds).result)
    graph = mnn.Graph.training(loss)
    losses = []
    for _ in range(60):
        labels = r.integers(0, 2, B).astype(np.int32)
        x = randn(r, T, B, 2, scale=0.1)
        t = np.where(labels == 0, r.integers(0, T // 2, B), r.integers(T // 2, T, B))
        x[t, np.arange(B), 0] += 2.0
        losses.append(graph.run(x, labels=labels).loss)
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5]), losses


def test_bad_inputs():
    ds = _weights("gru")
    with raises_named(ValueError, "Graph", "features"):
        mnn.Graph(RNNNode(mnn.ImageNode("x"), ds).result).run(randn(rng(0), 4, 2, 6))
    with raises_named(ValueError, "Graph", "(T, B, I)"):
        mnn.Graph(RNNNode(mnn.ImageNode("x"), ds).result).run(randn(rng(0), 4, 5))
    with raises_named(ValueError, "RNNNode", "output"):
        RNNNode(mnn.ImageNode("x"), ds, output="last")
    with raises_named(TypeError, "RNNNode", "weights"):
        RNNNode(mnn.ImageNode("x"), ConvolutionWeights(3, 4))
    with raises_named(ValueError, "rnn_layer", "weights"):
        RNNWeights(GRUDescriptor(5, 7), weights=[np.zeros((21, 5), np.float32)])


def test_conv_to_rnn_graph_matches_kernel_ops():
    """The activity classifier as a graph (ConvolutionNode -> RNNNode reading the (N, C, 1, L)
    image as a sequence -> FullyConnectedNode -> loss): inference equals the kernel-API model, and
    one SGD step moves every parameter by -lr * the kernel-API gradient."""
    from metalnn.examples.activity import ActivityClassifier, build_graphs

    r = rng(6)
    lr = 0.05
    net = ActivityClassifier(conv_channels=6, hidden=9, seed=2)
    x, labels = randn(r, 5, 6, 100), r.integers(0, 4, 5).astype(np.int32)
    train, infer, (conv_ds, rnn_ds, fc_ds) = build_graphs(net, lambda: mnn.SGD(learning_rate=lr))
    x4 = np.ascontiguousarray(x[:, :, None, :])
    assert_close(infer.run(x4).result, net.forward(x), atol=1e-6, rtol=1e-5)
    loss, _, grads = net.gradients(x, labels)
    before = [a.copy() for a in net.parameters()]
    got = train.run(x4, labels=labels).loss
    assert_close(got, loss, atol=1e-6, rtol=1e-5)
    after = [conv_ds.weight_array.reshape(before[0].shape), conv_ds.bias_array,
             fc_ds.weight_array.reshape(before[2].shape), fc_ds.bias_array] + rnn_ds.matrices()
    for k, (a, b, g) in enumerate(zip(after, before, grads)):
        assert_close(a, b - lr * g, atol=1e-6, rtol=1e-5, what=f"parameter {k}")


def test_image_source_layout_errors():
    ds = _weights("gru")
    node = RNNNode(mnn.ImageNode("x"), ds, source_layout="image")
    with raises_named(ValueError, "Graph", "image source"):
        mnn.Graph(node.result).run(randn(rng(0), 2, 5, 3, 4))
    with raises_named(ValueError, "RNNNode", "source_layout"):
        RNNNode(mnn.ImageNode("x"), ds, source_layout="nct")


def test_float16_weights_source():
    ds = RNNWeights(LSTMDescriptor(5, 4, use_float32_weights=False), seed=1)
    assert ds.weights().dtype == np.float16 and all(m.dtype == np.float16 for m in ds.matrices())
    x = randn(rng(7), 3, 2, 5)
    y = mnn.Graph(RNNNode(mnn.ImageNode("x"), ds).result).run(x).result
    ref = rnn_forward(x, ds.matrices(), ds.layer.layers)[0]
    assert_close(y, ref, atol=0, rtol=0)
    with raises_named(ValueError, "RNNWeights", "use_float32_weights"):
        RNNWeights([LSTMDescriptor(5, 4), LSTMDescriptor(4, 4, use_float32_weights=False)])
