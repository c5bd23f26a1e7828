"""Graph nodes for transposed convolution (ConvolutionTransposeNode with its data sources) and for
L2-norm / dilated max pooling (PoolingL2NormNode, DilatedPoolingMaxNode): inference matches the
kernel-level ops, Graph.training derives gradients that match the ops' gradients, an upsampling
decoder trains (its loss falls), and bad graphs raise clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import metalnn as mnn
from metalnn.graph import (
    ConvolutionNode,
    ConvolutionTransposeNode,
    ConvolutionTransposeWeights,
    DilatedPoolingMaxNode,
    FullyConnectedNode,
    Graph,
    ImageNode,
    NeuronReLUNode,
    PoolingL2NormNode,
    SoftmaxCrossEntropyLossNode,
)
from metalnn.graph.data_source import ConvolutionDescriptor, ConvolutionWeights, DataSource
from metalnn.graph.optimizers import SGD, Adam

from helpers import assert_close, randn, rng

ops = mnn.ops


class TransposedSource(DataSource):
    """A user data source with the transposed layout; update() records the gradients."""

    def __init__(self, in_channels, out_channels, kernel, stride=1, groups=1, dilation=1, neuron=None, seed=0):
        self.desc = ConvolutionDescriptor(kernel, in_channels, out_channels, stride=stride, dilation=dilation,
                                          groups=groups, neuron=neuron)
        r = rng(seed)
        kh, kw = self.desc.kernel_size
        self.w = randn(r, in_channels, out_channels // groups, kh, kw, scale=0.3)
        self.b = randn(r, out_channels, scale=0.1)
        self.gradients = []

    def descriptor(self):
        return self.desc

    def weights(self):
        return self.w

    def biases(self):
        return self.b

    def load(self):
        return True

    def purge(self):
        pass

    def label(self):
        return "deconv"

    def update(self, gradient_state, source_state):
        self.gradients.append((gradient_state.weight_gradients.copy(), gradient_state.bias_gradients.copy()))


GEOMETRIES = [
    # (C_in, C_out, kernel, stride, dilation, groups, padding, output_padding)
    (4, 6, 4, 2, 1, 1, 1, 0),
    (6, 4, 3, 2, 1, 2, (1, 0, 2, 1), 1),
    (3, 3, 3, 1, 2, 3, "valid", 0),
    (4, 5, (3, 2), (2, 3), 1, 1, "same", 0),
    (2, 4, 1, 3, 1, 2, "same", 0),  # kernel shorter than the stride: 'same' adds output padding
]


def _pads(p):
    if isinstance(p, int):
        return (p,) * 4
    return tuple(p) if len(p) == 4 else (p[0], p[0], p[1], p[1])


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_inference_matches_the_ops(geometry):
    cin, cout, k, s, d, g, padding, op = geometry
    ds = ConvolutionTransposeWeights(cin, cout, k, stride=s, dilation=d, groups=g, seed=3, bias=randn(rng(4), cout))
    x = ImageNode("x")
    node = ConvolutionTransposeNode(x, ds, padding=padding, output_padding=op)
    graph = Graph(node.result)
    xs = randn(rng(5), 2, cin, 5, 4)
    y = graph.run(xs).result
    assert ds.weight_array.shape == (cin, cout // g) + ((k, k) if isinstance(k, int) else k)
    if padding == "same":
        ss = (s, s) if isinstance(s, int) else s
        assert y.shape == (2, cout, 5 * ss[0], 4 * ss[1])
        pads, opad = node.resolved_padding, node.resolved_output_padding
    else:
        pads, opad = (0, 0, 0, 0) if padding == "valid" else _pads(padding), op
    ref = ops.conv_transpose2d_forward(xs, ds.weight_array, ds.bias_array, stride=s, padding=pads,
                                       output_padding=opad, dilation=d, groups=g)
    np.testing.assert_array_equal(y, ref)


def _loss_graph(source, padding=1, label_shape=None):
    x = ImageNode("x")
    node = ConvolutionTransposeNode(x, source, padding=padding)
    loss = SoftmaxCrossEntropyLossNode(node.result)
    return Graph.training(loss), node


@pytest.mark.parametrize("neuron", [None, "relu"])
def test_training_gradients_match_the_ops(neuron):
    src = TransposedSource(4, 5, 4, stride=2, groups=1, neuron=neuron, seed=6)
    graph, node = _loss_graph(src)
    r = rng(7)
    xs = randn(r, 3, 4, 3, 4)
    labels = r.integers(0, 5, size=(3, 6, 8)).astype(np.int32)
    handle = graph.run(xs, labels)
    (dw, db), = src.gradients
    kw = dict(stride=2, padding=1)
    y, z = ops.conv_transpose2d_forward(xs, src.w, src.b, neuron=neuron, return_preactivation=True, **kw) \
        if neuron else (ops.conv_transpose2d_forward(xs, src.w, src.b, **kw),) * 2
    loss, state = ops.softmax_cross_entropy_forward(y, labels)
    assert handle.loss == pytest.approx(float(loss), rel=1e-6)
    dz = ops.softmax_cross_entropy_backward(state)
    if neuron:
        dz = ops.neuron_backward(dz, z, neuron)
    assert_close(dw, ops.conv_transpose2d_backward_weight(dz, xs, src.w.shape, **kw), what="dw")
    assert_close(db, ops.conv_transpose2d_backward_bias(dz), what="db")


def test_input_gradient_flows_through_two_transposed_layers():
    # The second layer's input gradient is the first layer's output gradient: compare the first
    # layer's weight gradient with the ops chained by hand.
    a = TransposedSource(3, 4, 3, stride=2, seed=8)
    b = TransposedSource(4, 3, 2, stride=2, seed=9)
    b.label = lambda: "deconv2"
    x = ImageNode("x")
    n1 = ConvolutionTransposeNode(x, a, padding=1, output_padding=1)
    n2 = ConvolutionTransposeNode(n1.result, b, padding=0)
    graph = Graph.training(SoftmaxCrossEntropyLossNode(n2.result))
    r = rng(10)
    xs = randn(r, 2, 3, 3, 3)
    labels = r.integers(0, 3, size=(2, 12, 12)).astype(np.int32)
    graph.run(xs, labels)
    k1, k2 = dict(stride=2, padding=1, output_padding=1), dict(stride=2)
    h = ops.conv_transpose2d_forward(xs, a.w, a.b, **k1)
    y = ops.conv_transpose2d_forward(h, b.w, b.b, **k2)
    _, state = ops.softmax_cross_entropy_forward(y, labels)
    dy = ops.softmax_cross_entropy_backward(state)
    dh = ops.conv_transpose2d_backward_input(dy, b.w, h.shape, **k2)
    assert_close(b.gradients[0][0], ops.conv_transpose2d_backward_weight(dy, h, b.w.shape, **k2), what="dw2")
    assert_close(a.gradients[0][0], ops.conv_transpose2d_backward_weight(dh, xs, a.w.shape, **k1), what="dw1")
    assert_close(a.gradients[0][1], ops.conv_transpose2d_backward_bias(dh), what="db1")


def _decoder(opt):
    """code (N, 8, 4, 4) -> 2x up (relu) -> 2x up -> per-pixel logits over 4 classes at 16x16."""
    x = ImageNode("code")
    up1 = ConvolutionTransposeNode(x, ConvolutionTransposeWeights(8, 12, 4, stride=2, neuron="relu", optimizer=opt,
                                                                  seed=1, label="up1"), padding=1)
    up2 = ConvolutionTransposeNode(up1.result, ConvolutionTransposeWeights(12, 8, 4, stride=2, optimizer=opt, seed=2,
                                                                           label="up2"), padding="same")
    head = ConvolutionNode(NeuronReLUNode(up2.result).result,
                           ConvolutionWeights(8, 4, 1, optimizer=opt, seed=3, label="head"))
    return Graph.training(SoftmaxCrossEntropyLossNode(head.result))


def test_upsampling_decoder_trains():
    r = rng(11)
    codes = randn(r, 16, 8, 4, 4)
    # The target: each pixel's class is the strongest of the first four code channels at its
    # 4x4 block (an upsampled segmentation the decoder must learn to draw).
    labels = np.repeat(np.repeat(np.argmax(codes[:, :4], axis=1), 4, axis=1), 4, axis=2).astype(np.int32)
    graph = _decoder(Adam(0.01))
    losses = [graph.run(codes, labels).loss for _ in range(40)]
    assert losses[-1] < 0.6 * losses[0], losses[::8]
    assert all(np.isfinite(losses))


def test_pooling_nodes_inference_and_training():
    x = ImageNode("x")
    c1 = ConvolutionNode(x, ConvolutionWeights(3, 6, 3, neuron="relu", optimizer=SGD(0.05, 0.9), seed=4))
    l2 = PoolingL2NormNode(c1.result, kernel_size=2, stride=2)
    dmax = DilatedPoolingMaxNode(l2.result, kernel_size=2, stride=1, dilation=2, padding="same")
    fc = FullyConnectedNode(dmax.result, ConvolutionWeights(6, 3, (4, 4), optimizer=SGD(0.05, 0.9), seed=5))
    loss = SoftmaxCrossEntropyLossNode(fc.result)
    r = rng(12)
    xs = randn(r, 8, 3, 8, 8)
    labels = (np.arange(8) % 3).astype(np.int32)
    xs += labels[:, None, None, None] * 0.5  # a learnable signal
    # inference through both pooling nodes matches the ops
    infer = Graph(dmax.result)
    c = ops.conv2d_forward(xs, c1.data_source.weights(), c1.data_source.biases(), padding=1, neuron="relu")
    p = ops.l2_pool2d_forward(c, 2, 2)
    y = infer.run(xs).result
    assert dmax.resolved_padding == (1, 1, 1, 1)  # 'same' for a dilated 2x2 window
    ref, _ = ops.dilated_max_pool2d_forward(p, 2, 1, dmax.resolved_padding, 2)
    assert y.shape == (8, 6, 4, 4)
    assert_close(y, ref, what="pooling graph")
    train = Graph.training(loss)
    losses = [train.run(xs, labels).loss for _ in range(25)]
    assert losses[-1] < 0.7 * losses[0], losses[::5]


def test_bad_graphs_raise():
    x = ImageNode("x")
    node = ConvolutionTransposeNode(x, ConvolutionTransposeWeights(4, 6, 3, stride=2))
    with pytest.raises(ValueError, match=r"\[Graph\].*channels"):
        Graph(node.result).run(randn(rng(13), 1, 5, 3, 3))
    with pytest.raises(ValueError, match=r"output_padding"):
        Graph(ConvolutionTransposeNode(ImageNode("x"), ConvolutionTransposeWeights(4, 6, 3, stride=2),
                                       output_padding=2).result).run(randn(rng(13), 1, 4, 3, 3))
    with pytest.raises(ValueError, match=r"\[ConvolutionTransposeNode\] output_padding"):
        ConvolutionTransposeNode(ImageNode("x"), ConvolutionTransposeWeights(4, 6, 3), output_padding=-1)
    with pytest.raises(ValueError, match=r"\[ConvolutionTransposeNode\] padding"):
        ConvolutionTransposeNode(ImageNode("x"), ConvolutionTransposeWeights(4, 6, 3), padding="full")
    # a user source with the convolution's layout instead of the transposed one
    src = TransposedSource(4, 6, 3, groups=2)
    src.w = np.zeros((6, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"\[Graph\] node .*weights\(\) has shape \(6, 2, 3, 3\)"):
        Graph(ConvolutionTransposeNode(ImageNode("x"), src).result).run(randn(rng(14), 1, 4, 3, 3))
    src = TransposedSource(4, 6, 3)
    src.b = np.zeros(4, np.float32)  # bias of the input channels: wrong
    with pytest.raises(ValueError, match=r"biases\(\) has shape \(4,\), expected \(6,\)"):
        Graph(ConvolutionTransposeNode(ImageNode("x"), src).result).run(randn(rng(14), 1, 4, 3, 3))
    with pytest.raises(ValueError, match=r"\[ConvolutionTransposeWeights\] bias"):
        ConvolutionTransposeWeights(4, 6, 3, bias=np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"\[DilatedPoolingMaxNode\] dilation"):
        DilatedPoolingMaxNode(ImageNode("x"), dilation=0)
