"""Graph loss nodes (LossNode for every MPSCNNLossType, YOLOLossNode): Graph.training derives
the gradient nodes, each loss trains a small network (the loss falls), the graph's loss and
first update match the kernel-level ops (loss_forward / loss_backward), labels and weights
are fed through encode_batch, bad nodes raise."""

import numpy as np
import pytest
from test_loss import ANCHORS, yolo_case

import metalnn as mnn
from metalnn.graph import LossNode, YOLOLossNode
from metalnn.graph.data_source import ConvolutionWeights
from metalnn.ops import LossDescriptor, YOLOLossDescriptor, loss_backward, loss_forward, yolo_loss_forward

from helpers import assert_close, rng

N, F, C = 48, 7, 5


def _data(kind, seed=0):
    """Inputs, labels and the neuron between the layer and the loss for each type's domain."""
    r = rng(seed)
    x = r.standard_normal((N, F)).astype(np.float32)
    w_true = r.standard_normal((F, C)) * 0.8
    z = x @ w_true
    cls = z.argmax(axis=1)
    one_hot = np.eye(C, dtype=np.float32)[cls]
    head = None
    if kind in ("mean_absolute_error", "mean_squared_error", "huber"):
        y = z.astype(np.float32)
    elif kind == "softmax_cross_entropy":
        y = cls.astype(np.int32)
    elif kind in ("sigmoid_cross_entropy", "hinge"):
        y = (z > 0).astype(np.float32)
    elif kind == "categorical_cross_entropy":
        y, head = one_hot, "softmax"
    elif kind == "log":
        y, head = (z > 0).astype(np.float32), "sigmoid"
    elif kind == "kullback_leibler_divergence":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        y, head = (e / e.sum(axis=1, keepdims=True)).astype(np.float32), "log_softmax"
    elif kind == "cosine_distance":
        y = (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)
    else:
        raise AssertionError(kind)
    return x, y, head


def _network(kind, descriptor, optimizer, weights_init="glorot"):
    _, _, head = _data(kind)
    src = mnn.ImageNode("x")
    ds = ConvolutionWeights(F, C, 1, optimizer=optimizer, seed=3, weights_init=weights_init, label="fc")
    fc = mnn.FullyConnectedNode(src, ds)
    out = fc.result
    if head == "softmax":
        out = mnn.SoftmaxNode([out]).result
    elif head == "log_softmax":
        out = mnn.LogSoftmaxNode([out]).result
    elif head == "sigmoid":
        out = mnn.NeuronSigmoidNode(out).result
    return LossNode(out, descriptor), ds


@pytest.mark.parametrize("kind", mnn.ops.LOSS_TYPES)
def test_each_loss_type_trains(kind):
    x, y, _ = _data(kind)
    reduction = "sum" if kind == "cosine_distance" else "mean"
    loss, _ = _network(kind, LossDescriptor(kind, reduction, delta=0.5), mnn.Adam(learning_rate=0.03))
    graph = mnn.Graph.training(loss)
    assert graph.mode == "training" and graph.loss_nodes == [loss]
    assert "LossNodeGradient" not in [k for k, _, _ in graph.structure()]
    losses = [graph.run(x, labels=y).loss for _ in range(40)]
    assert all(np.isfinite(losses)), losses
    assert losses[-1] < losses[0] - 0.1 * abs(losses[0]) - 1e-3, (kind, losses[0], losses[-1])


@pytest.mark.parametrize("kind,weighted", [("huber", True), ("softmax_cross_entropy", True),
                                           ("sigmoid_cross_entropy", False), ("cosine_distance", True)])
def test_graph_matches_kernel_ops(kind, weighted):
    x, y, _ = _data(kind, seed=1)
    w0 = rng(2).standard_normal((C, F)).astype(np.float32) * 0.3
    lr = 0.1
    d = LossDescriptor(kind, "sum_by_non_zero_weights" if weighted else "mean", weight=0.9,
                       label_smoothing=0.1 if "cross_entropy" in kind else 0.0, delta=0.5)
    loss, ds = _network(kind, d, mnn.SGD(learning_rate=lr), weights_init=w0)
    graph = mnn.Graph.training(loss)
    weights = None
    if weighted:
        weights = rng(3).uniform(0.0, 2.0, N).astype(np.float32)
        weights[::5] = 0.0
    h = graph.run(x, labels=y, weights=weights)
    pred = x @ w0.T  # zero biases
    ref, st = loss_forward(pred, y, weights, loss_type=kind, reduction=d.reduction, weight=d.weight,
                           label_smoothing=d.label_smoothing, delta=d.delta)
    assert h.loss == pytest.approx(float(ref), rel=1e-5)
    # One SGD step: w1 = w0 - lr * dpred^T x.
    dpred = loss_backward(st).astype(np.float64)
    w1 = ds.weight_array.reshape(C, F)
    assert_close(w1, w0 - lr * (dpred.T @ x), atol=1e-5, rtol=1e-5)


def test_reduction_none_loss_per_term():
    x, y, _ = _data("mean_squared_error", seed=4)
    loss, _ = _network("mean_squared_error", LossDescriptor("mean_squared_error", "none"), mnn.SGD(0.001))
    graph = mnn.Graph.training(loss)
    out = graph.run(x, labels=y).loss
    assert isinstance(out, np.ndarray) and out.shape == (N, C)


def test_loss_node_by_name_and_options():
    src = mnn.ImageNode("x")
    node = LossNode(src, "huber", delta=0.3, reduction="sum")
    assert node.descriptor == LossDescriptor("huber", "sum", delta=0.3) and node.loss_type == "huber"
    with pytest.raises(TypeError, match=r"^\[LossNode\].*gradient"):
        node.gradient_filter(src)
    with pytest.raises(ValueError, match=r"^\[LossNode\].*loss_type"):
        LossNode(src, "l2")
    with pytest.raises(ValueError, match=r"^\[LossNode\].*reduction"):
        LossNode(src, "huber", reduction="average")
    with pytest.raises(TypeError, match=r"^\[LossNode\].*descriptor"):
        LossNode(src, 3)
    with pytest.raises(TypeError, match=r"^\[LossNode\]"):
        LossNode(src, LossDescriptor("huber"), delta=2.0)
    # Options the kernel checks surface when the graph compiles.
    loss, _ = _network("huber", LossDescriptor("huber", delta=-1.0), mnn.SGD(0.01))
    x, y, _ = _data("huber")
    with pytest.raises(ValueError, match="delta"):
        mnn.Graph.training(loss).run(x, labels=y)


def test_labels_are_required():
    loss, _ = _network("huber", LossDescriptor("huber"), mnn.SGD(0.01))
    x, _, _ = _data("huber")
    with pytest.raises(ValueError, match="labels are required"):
        mnn.Graph.training(loss).run(x)


# ------------------------------------------------------------------------------ YOLO

def _yolo_network(optimizer, descriptor, in_channels=6, weights_init="glorot"):
    src = mnn.ImageNode("features")
    ds = ConvolutionWeights(in_channels, len(ANCHORS) * 8, 3, optimizer=optimizer, seed=4, label="head",
                            weights_init=weights_init)
    head = mnn.ConvolutionNode(src, ds, padding="same")
    return YOLOLossNode(head.result, descriptor), ds


def test_yolo_node_trains():
    _, lab = yolo_case(60, n=4, h=5, w=5, classes=3, objects=0.25)
    x = rng(61).standard_normal((4, 6, 5, 5)).astype(np.float32)
    d = YOLOLossDescriptor(ANCHORS, 3, scale_object=5.0, scale_no_object=1.0, reduction="mean")
    loss, _ = _yolo_network(mnn.Adam(learning_rate=0.02), d)
    graph = mnn.Graph.training(loss)
    losses = [graph.run(x, labels=lab).loss for _ in range(40)]
    assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0], (losses[0], losses[-1])


def test_yolo_node_matches_kernel_ops():
    _, lab = yolo_case(62, n=2, h=4, w=3, classes=3)
    x = rng(63).standard_normal((2, 6, 4, 3)).astype(np.float32)
    d = YOLOLossDescriptor(ANCHORS, 3, rescore=False)
    w0 = (rng(64).standard_normal((len(ANCHORS) * 8, 6, 3, 3)) * 0.2).astype(np.float32)
    loss, _ = _yolo_network(mnn.SGD(learning_rate=0.01), d, weights_init=w0)
    got = mnn.Graph.training(loss).run(x, labels=lab).loss  # the loss is taken before the update
    pred = mnn.ops.conv2d_forward(x, w0, np.zeros(w0.shape[0], np.float32), padding=1)
    ref, _ = yolo_loss_forward(pred, lab, d)
    assert got == pytest.approx(float(ref), rel=1e-4)


def test_yolo_node_checks_channels():
    src = mnn.ImageNode("features")
    node = YOLOLossNode(src, anchor_boxes=ANCHORS, num_classes=2)  # needs 3 * 7 = 21 channels
    with pytest.raises(ValueError, match="channels"):
        mnn.Graph(node.result).run(np.zeros((1, 24, 2, 2), np.float32), labels=np.zeros((1, 24, 2, 2), np.float32))
    with pytest.raises(TypeError, match=r"^\[YOLOLossNode\]"):
        YOLOLossNode(src, YOLOLossDescriptor(ANCHORS, 2), num_classes=3)
    with pytest.raises(ValueError, match=r"^\[YOLOLossNode\].*reduction"):
        YOLOLossNode(src, YOLOLossDescriptor(ANCHORS, 2, reduction="sum_by_non_zero_weights"))
