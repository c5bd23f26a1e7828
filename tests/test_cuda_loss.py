"""CUDA loss kernels (loss.cu) against the CPU backend: every MPSCNNLossType with every
reduction, weights, label smoothing, scalar and per-term gradients, float32 and float16
predictions, odd sizes; the YOLO loss; a LossNode / YOLOLossNode graph training on cuda.

Skipped unless this build has a CUDA device (mnn.available_devices() lists cuda)."""

import numpy as np
import pytest
from test_loss import ANCHORS, GROUPED, generic_case, yolo_case

import metalnn as mnn
from metalnn.graph import LossNode, YOLOLossNode
from metalnn.graph.data_source import ConvolutionWeights

HAS_CUDA = any(d.type == "cuda" for d in mnn.available_devices())
pytestmark = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device in this build/machine")

DTYPES = [np.float32, np.float16]
# Gradients in the predictions' dtype: float16 results may differ by one rounding.
TOL = {np.float32: (1e-6, 2e-5), np.float16: (1e-3, 2e-3)}
SHAPES = [(7, 37), (3, 9, 5, 3), (2, 3, 11), (1000, 10)]


def _cuda(a):
    return mnn.Tensor(np.asarray(a, order="C"), device="cuda")  # keeps 0-d arrays 0-d


def _host(t):
    return t.numpy() if isinstance(t, mnn.Tensor) else np.asarray(t)


def _close(got, ref, atol, rtol, what=""):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(ref, np.float64), atol=atol, rtol=rtol,
                               equal_nan=True, err_msg=what)


def _loss_shape(kind, shape):
    return (shape[0],) + tuple(shape[2:]) if kind in GROUPED else tuple(shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weights_kind", [None, "sample", "term"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", mnn.ops.LOSS_TYPES)
def test_loss_matches_cpu(kind, shape, weights_kind, dtype):
    y, t = generic_case(kind, shape, seed=70)
    y = y.astype(dtype)
    r = np.random.default_rng(71)
    lshape = _loss_shape(kind, shape)
    w = None
    if weights_kind == "sample":
        w = r.uniform(0.2, 2.0, shape[0]).astype(np.float32)
    elif weights_kind == "term":
        w = r.uniform(0.2, 2.0, lshape).astype(np.float32)
        w.reshape(-1)[::4] = 0.0
    ls = 0.1 if kind in ("softmax_cross_entropy", "sigmoid_cross_entropy") else 0.0
    kw = dict(loss_type=kind, weight=0.8, label_smoothing=ls, delta=0.6, epsilon=1e-3)
    atol, rtol = TOL[dtype]
    for reduction in mnn.ops.LOSS_REDUCTIONS:
        ref, st = mnn.ops.loss_forward(y, t, w, reduction=reduction, **kw)
        got, gst = mnn.ops.loss_forward(_cuda(y), _cuda(t), None if w is None else _cuda(w), reduction=reduction,
                                        **kw)
        assert isinstance(got, mnn.Tensor) and got.device.type == "cuda"
        _close(_host(got), ref, 1e-5, 2e-5, f"{kind} {reduction} loss")
        dloss = r.standard_normal(lshape).astype(np.float32) if reduction == "none" else np.float32(0.7)
        g = mnn.ops.loss_backward(gst, _cuda(dloss))
        assert g.dtype == np.dtype(dtype).name
        _close(_host(g), mnn.ops.loss_backward(st, dloss), atol, rtol, f"{kind} {reduction} gradient")
        if reduction == "none":  # float16 per-term dloss
            d16 = dloss.astype(np.float16)
            _close(_host(mnn.ops.loss_backward(gst, _cuda(d16))), mnn.ops.loss_backward(st, d16), atol, rtol)


def test_index_labels_on_cuda():
    y, _ = generic_case("softmax_cross_entropy", (6, 5, 3, 2), seed=72)
    idx = np.random.default_rng(73).integers(0, 5, (6, 3, 2))
    ref, st = mnn.ops.loss_forward(y, idx, loss_type="softmax_cross_entropy", reduction="sum")
    got, gst = mnn.ops.loss_forward(_cuda(y), _cuda(idx), loss_type="softmax_cross_entropy", reduction="sum")
    _close(_host(got), ref, 1e-5, 1e-5)
    _close(_host(mnn.ops.loss_backward(gst)), mnn.ops.loss_backward(st), 1e-6, 1e-5)


def test_nan_propagates_on_cuda():
    for kind in mnn.ops.LOSS_TYPES:
        y, t = generic_case(kind, (4, 5), seed=74)
        y[2, 3] = np.nan
        ref, st = mnn.ops.loss_forward(y, t, loss_type=kind, reduction="none")
        got, gst = mnn.ops.loss_forward(_cuda(y), _cuda(t), loss_type=kind, reduction="none")
        np.testing.assert_array_equal(np.isnan(_host(got)), np.isnan(ref))
        np.testing.assert_array_equal(np.isnan(_host(mnn.ops.loss_backward(gst))),
                                      np.isnan(mnn.ops.loss_backward(st)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rescore", [True, False])
def test_yolo_matches_cpu(rescore, dtype):
    pred, lab = yolo_case(75, n=3, h=7, w=5)
    pred = pred.astype(dtype)
    atol, rtol = TOL[dtype]
    for reduction in ("none", "sum", "mean"):
        d = mnn.ops.YOLOLossDescriptor(ANCHORS, 3, rescore=rescore, min_iou_for_object_presence=0.5,
                                       max_iou_for_object_absence=0.4, reduction=reduction)
        ref, st = mnn.ops.yolo_loss_forward(pred, lab, d)
        got, gst = mnn.ops.yolo_loss_forward(_cuda(pred), _cuda(lab), d)
        _close(_host(got), ref, 1e-4, 2e-5, f"yolo {reduction}")
        _close(_host(mnn.ops.loss_backward(gst, 0.5)), mnn.ops.loss_backward(st, 0.5), atol, rtol)


def _fc_loss(kind, device):
    src = mnn.ImageNode("x")
    ds = ConvolutionWeights(7, 5, 1, optimizer=mnn.SGD(learning_rate=0.05), seed=3, weights_init="glorot")
    loss = LossNode(mnn.FullyConnectedNode(src, ds).result, kind)
    return mnn.Graph.training(loss, device=device)


@pytest.mark.parametrize("kind", ["huber", "softmax_cross_entropy", "sigmoid_cross_entropy", "cosine_distance"])
def test_loss_node_graph_on_cuda_matches_cpu(kind):
    r = np.random.default_rng(76)
    x = r.standard_normal((33, 7)).astype(np.float32)
    y = r.uniform(0, 1, (33, 5)).astype(np.float32)
    cpu, gpu = _fc_loss(kind, "cpu"), _fc_loss(kind, "cuda")
    for _ in range(5):
        lc, lg = cpu.run(x, labels=y).loss, gpu.run(x, labels=y).loss
        assert lg == pytest.approx(lc, rel=1e-4, abs=1e-5)


def test_yolo_node_graph_on_cuda_matches_cpu():
    _, lab = yolo_case(77, n=2, h=4, w=4)
    x = np.random.default_rng(78).standard_normal((2, 6, 4, 4)).astype(np.float32)

    def graph(device):
        src = mnn.ImageNode("features")
        ds = ConvolutionWeights(6, len(ANCHORS) * 8, 3, optimizer=mnn.SGD(learning_rate=1e-3), seed=4,
                                weights_init="glorot")
        node = YOLOLossNode(mnn.ConvolutionNode(src, ds).result, anchor_boxes=ANCHORS, num_classes=3)
        return mnn.Graph.training(node, device=device)

    cpu, gpu = graph("cpu"), graph("cuda")
    for _ in range(3):
        assert gpu.run(x, labels=lab).loss == pytest.approx(cpu.run(x, labels=lab).loss, rel=1e-4)
