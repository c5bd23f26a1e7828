"""Graph nodes of the neuron family: each new neuron node (softsign, SiLU, Mish, SELU, power,
exponential, logarithm) runs in inference and hand-built gradient graphs and matches the
kernel ops, and inside a training graph (fused into the layer epilogue or not); PReLU's
slopes come from a data source and are trained by the graph's optimizer."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn.graph.data_source import ConvolutionWeights

from helpers import assert_close, randn, rng

# (node class, neuron type, coefficients): the a/b nodes are NeuronNodes, the c nodes are not.
NODES = [
    (mnn.NeuronSoftSignNode, "softsign", {}),
    (mnn.NeuronSiLUNode, "silu", {}),
    (mnn.NeuronMishNode, "mish", {}),
    (mnn.NeuronSELUNode, "selu", {"a": 1.1, "b": 0.9}),
    (mnn.NeuronPowerNode, "power", {"a": 0.5, "b": 0.25, "c": 3.0}),
    (mnn.NeuronExponentialNode, "exponential", {"a": 0.7, "b": -0.5, "c": 2.5}),
    (mnn.NeuronLogarithmNode, "logarithm", {"a": 1.0, "b": 8.0, "c": 10.0}),
]
IDS = [n[1] for n in NODES]


@pytest.mark.parametrize("cls,name,kw", NODES, ids=IDS)
def test_node_matches_kernel_op(cls, name, kw):
    assert cls in (getattr(mnn, cls.__name__), getattr(mnn.graph, cls.__name__))
    x = randn(rng(1), 3, 5, 7, 9)
    src = mnn.ImageNode("x")
    node = cls(src, **kw, label="act")
    y = mnn.Graph(node.result).run(x).result
    assert_close(y, mnn.ops.neuron_forward(x, name, **kw), atol=0, rtol=0, what=name)
    # default coefficients too
    y = mnn.Graph(cls(mnn.ImageNode("x")).result).run(np.abs(x) + 0.5).result
    assert_close(y, mnn.ops.neuron_forward(np.abs(x) + 0.5, name), atol=0, rtol=0, what=name + " default")


@pytest.mark.parametrize("cls,name,kw", NODES, ids=IDS)
def test_gradient_node_matches_kernel_op(cls, name, kw):
    r = rng(2)
    x, dy = randn(r, 2, 3, 5, 7), randn(r, 2, 3, 5, 7)
    src, dy_src = mnn.ImageNode("x"), mnn.ImageNode("dy")
    node = cls(src, **kw)
    g = node.gradient_filter(dy_src)
    dx = mnn.Graph(g.result).run({"x": x, "dy": dy}).result
    assert_close(dx, mnn.ops.neuron_backward(dy, x, name, **kw), atol=0, rtol=0, what=name)


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("cls,name,kw", NODES, ids=IDS)
def test_training_step_through_node_matches_ops(cls, name, kw, fuse):
    """fc -> neuron -> softmax cross-entropy, one SGD step, against the same step done with
    the kernel ops (the a/b neurons fuse into the layer's epilogue when fuse=True; the c
    neurons must keep their c)."""
    r = rng(3)
    x, labels = randn(r, 6, 11), r.integers(0, 5, 6).astype(np.int32)
    w0, b0 = randn(r, 5, 11, scale=0.3), randn(r, 5, scale=0.1)
    lr = 0.1
    ds = ConvolutionWeights.from_arrays(w0, b0, optimizer=mnn.SGD(learning_rate=lr), label="fc")
    src = mnn.ImageNode("x")
    fc = mnn.FullyConnectedNode(src, ds, label="fc")
    act = cls(fc.result, **kw, label="act")
    loss = mnn.SoftmaxCrossEntropyLossNode(act.result, reduction="mean")
    graph = mnn.Graph.training(loss, fuse=fuse)
    got = graph.run(x, labels=labels).loss

    z = mnn.ops.fully_connected_forward(x, w0, b0)
    y = mnn.ops.neuron_forward(z, name, **kw)
    want, state = mnn.ops.softmax_cross_entropy_forward(y, labels)
    dz = mnn.ops.neuron_backward(mnn.ops.softmax_cross_entropy_backward(state), z, name, **kw)
    dw, db = mnn.ops.fully_connected_backward_weight(dz, x), mnn.ops.fully_connected_backward_bias(dz)
    assert_close(got, want, atol=1e-6, rtol=1e-5, what=name)
    assert_close(ds.weight_array.reshape(w0.shape), w0 - lr * dw, atol=1e-6, rtol=1e-5, what=name + " weights")
    assert_close(ds.bias_array, b0 - lr * db, atol=1e-6, rtol=1e-5, what=name + " biases")


def test_c_neuron_nodes_validate_coefficients():
    src = mnn.ImageNode("x")
    with pytest.raises(ValueError, match=r"^\[NeuronLogarithmNode\] c"):
        mnn.NeuronLogarithmNode(src, c=1.0)
    with pytest.raises(ValueError, match=r"^\[NeuronExponentialNode\] c"):
        mnn.NeuronExponentialNode(src, c=-3.0)
    with pytest.raises(ValueError, match=r"^\[NeuronPowerNode\] c"):
        mnn.NeuronPowerNode(src, c=float("nan"))
    with pytest.raises(TypeError, match=r"^\[NeuronPowerNode\] source 0"):
        mnn.NeuronPowerNode(np.zeros(3))
    assert isinstance(mnn.NeuronMishNode(src), mnn.NeuronNode)


# ---------------------------------------------------------------- PReLU


def _prelu_net(slopes, fc_opt, prelu_opt, channels=4, seed=0):
    """conv(3 -> C, 3x3) -> PReLU -> fc -> softmax cross-entropy."""
    r = rng(seed)
    conv = ConvolutionWeights.from_arrays(randn(r, channels, 3, 3, 3, scale=0.3), np.zeros(channels, np.float32),
                                          optimizer=fc_opt, label="conv")
    prelu = mnn.PReLUSlopes(channels, slopes, optimizer=prelu_opt, label="prelu")
    fc = ConvolutionWeights.from_arrays(randn(r, 5, channels, 5, 5, scale=0.1), np.zeros(5, np.float32),
                                        optimizer=fc_opt, label="fc")
    src = mnn.ImageNode("x")
    c = mnn.ConvolutionNode(src, conv, padding="same", label="conv")
    p = mnn.NeuronPReLUNode(c.result, prelu, label="prelu")
    f = mnn.FullyConnectedNode(p.result, fc, label="fc")
    loss = mnn.SoftmaxCrossEntropyLossNode(f.result, reduction="sum", label="loss")
    return src, p, loss, (conv, prelu, fc)


def test_prelu_node_inference_matches_kernel_op():
    x = randn(rng(4), 2, 3, 5, 7)
    slopes = np.array([0.1, -0.3, 0.7], np.float32)
    src = mnn.ImageNode("x")
    node = mnn.NeuronPReLUNode(src, mnn.PReLUSlopes(3, slopes))
    y = mnn.Graph(node.result).run(x).result
    np.testing.assert_array_equal(y, mnn.ops.prelu_forward(x, slopes))
    # matrices (N, C) too
    m = randn(rng(5), 6, 3)
    y = mnn.Graph(mnn.NeuronPReLUNode(mnn.ImageNode("m"), mnn.PReLUSlopes(3, slopes)).result).run(m).result
    np.testing.assert_array_equal(y, mnn.ops.prelu_forward(m, slopes))


def test_prelu_slopes_are_trained_by_the_optimizer():
    lr = 0.05
    src, p, loss, (conv, prelu, fc) = _prelu_net(0.25, mnn.SGD(learning_rate=lr), mnn.SGD(learning_rate=lr))
    x, labels = randn(rng(6), 4, 3, 5, 5), np.array([0, 3, 1, 4], np.int32)
    w_conv, w_fc, s0 = conv.weights().copy(), fc.weights().copy(), prelu.slopes.copy()
    graph = mnn.Graph.training(loss)
    graph.run(x, labels=labels)

    # the same step with the kernel ops
    z = mnn.ops.conv2d_forward(x, w_conv, np.zeros(4, np.float32), padding=[1, 1, 1, 1])
    a = mnn.ops.prelu_forward(z, s0)
    logits = mnn.ops.fully_connected_forward(a, w_fc, np.zeros(5, np.float32))
    _, state = mnn.ops.softmax_cross_entropy_forward(logits, labels, reduction="sum")
    dlogits = mnn.ops.softmax_cross_entropy_backward(state)
    da = mnn.ops.fully_connected_backward_input(dlogits, w_fc, a.shape)
    ds = mnn.ops.prelu_backward_slopes(da, z)
    assert np.abs(ds).max() > 1e-3  # the step moves the slopes
    assert_close(prelu.slopes, s0 - lr * ds, atol=1e-6, rtol=1e-5, what="slopes")
    assert prelu.weight_array.shape == (4, 1, 1, 1)
    assert "prelu.weights" in graph.parameters()
    np.testing.assert_array_equal(graph.parameters()["prelu.weights"].reshape(-1), prelu.slopes)
    dz = mnn.ops.prelu_backward_input(da, z, s0)
    dw = mnn.ops.conv2d_backward_weight(dz, x, w_conv.shape, padding=[1, 1, 1, 1])
    assert_close(conv.weight_array, w_conv - lr * dw, atol=1e-6, rtol=1e-5, what="conv weights")


def test_prelu_training_lowers_the_loss_and_frozen_slopes_stay():
    x, labels = randn(rng(7), 8, 3, 5, 5), rng(8).integers(0, 5, 8).astype(np.int32)
    _, _, loss, (_, prelu, _) = _prelu_net(0.25, mnn.Adam(learning_rate=1e-2), mnn.Adam(learning_rate=1e-2))
    graph = mnn.Graph.training(loss)
    losses = [graph.run(x, labels=labels).loss for _ in range(15)]
    assert losses[-1] < 0.7 * losses[0], losses
    assert not np.allclose(prelu.slopes, 0.25)
    # without an optimizer the slopes are frozen; the other layers still train
    _, _, loss, (conv, frozen, _) = _prelu_net(0.25, mnn.SGD(learning_rate=0.05), None)
    w0 = conv.weights().copy()
    graph = mnn.Graph.training(loss)
    graph.run(x, labels=labels)
    np.testing.assert_array_equal(frozen.slopes, np.full(4, 0.25, np.float32))
    assert not np.array_equal(conv.weight_array, w0)


def test_prelu_node_errors():
    with pytest.raises(ValueError, match=r"^\[PReLUSlopes\] slopes"):
        mnn.PReLUSlopes(3, np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"^\[PReLUSlopes\] channels"):
        mnn.PReLUSlopes(0)
    with pytest.raises(TypeError, match=r"^\[PReLUSlopes\] slopes"):
        mnn.PReLUSlopes(3, "0.25")
    src = mnn.ImageNode("x")
    node = mnn.NeuronPReLUNode(src, mnn.PReLUSlopes(3))
    with pytest.raises(ValueError, match=r"\[Graph\].*3 slopes"):
        mnn.Graph(node.result).run(np.ones((2, 4, 5, 5), np.float32))
    # a data source that is not one slope per channel
    node = mnn.NeuronPReLUNode(mnn.ImageNode("x"), ConvolutionWeights(3, 3, 1))
    with pytest.raises(ValueError, match=r"\[Graph\].*one slope per channel"):
        mnn.Graph(node.result).run(np.ones((2, 3, 5, 5), np.float32))
