"""The generic loss and YOLO loss kernels of loss.metal on the CPU emulator (tests/metal)
against the CPU backend (mnn.ops.loss_forward / yolo_loss_forward / loss_backward): every
loss type, odd sizes that are not multiples of the threadgroup, float32 and float16 predictions,
weights, label smoothing, per-term and scalar gradients, NaN propagation."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from test_loss import ANCHORS, GROUPED, generic_case, yolo_case

import metalnn as mnn

from helpers import DTYPES, assert_close, randn, rng

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "metal"))
from harness import SUFFIX, lib, run_both_schedules, skip_without_clang  # noqa: E402
from params_loss import loss_params, yolo_params  # noqa: E402

skip_without_clang()

F32 = 2e-5  # float32 results whatever the predictions' dtype
SHAPES = [((7, 37), 32), ((3, 9, 5, 3), 48), ((2, 3, 11), 80)]


def _loss_shape(kind, shape):
    return (shape[0],) + tuple(shape[2:]) if kind in GROUPED else tuple(shape)


def _forward(kind, x, lab, weights, p, tg):
    """Emulator forward: (per-term loss, gradient)."""
    terms = p.count
    wbuf = weights.reshape(-1) if weights is not None else np.zeros(1, np.float32)  # bound, never read
    if kind in GROUPED:
        nsg = -(-tg // 32)
        grid = -(-terms // nsg) * tg
        name = f"loss_forward_grouped_{SUFFIX[x.dtype.type]}"
    else:
        grid, name = terms, f"loss_forward_{SUFFIX[x.dtype.type]}"
    loss, grad = run_both_schedules(lib("loss"), name, [x, lab, wbuf, ("out", 0), ("out", 1), p],
                                    [np.zeros(terms, np.float32), np.zeros(x.shape, np.float32)], grid, tg)
    return loss, grad


def _reduce(loss, p, tg):
    out, = run_both_schedules(lib("loss"), "loss_reduce", [loss, ("out", 0), p], [np.zeros(1, np.float32)], tg, tg)
    return out[0]


def _backward(grad, dloss, p, dtype, tg):
    dbuf = np.asarray(dloss, np.float32).reshape(-1) if p.dloss_per_term else np.zeros(1, np.float32)
    out, = run_both_schedules(lib("loss"), f"loss_backward_{SUFFIX[dtype]}", [grad, dbuf, ("out", 0), p],
                              [np.zeros(grad.shape, dtype)], grad.size, tg)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weights_kind", [None, "sample", "term"])
@pytest.mark.parametrize("shape,tg", SHAPES)
@pytest.mark.parametrize("kind", mnn.ops.LOSS_TYPES)
def test_loss_kernels_match_cpu(kind, shape, tg, weights_kind, dtype):
    y, t = generic_case(kind, shape, seed=50)
    y = y.astype(dtype)
    r = rng(51)
    lshape = _loss_shape(kind, shape)
    weights = None
    if weights_kind == "sample":
        weights = r.uniform(0.2, 2.0, shape[0]).astype(np.float32)
    elif weights_kind == "term":
        weights = r.uniform(0.2, 2.0, lshape).astype(np.float32)
        weights.reshape(-1)[::4] = 0.0
    ls = 0.15 if kind in ("softmax_cross_entropy", "sigmoid_cross_entropy") else 0.0
    kw = dict(weight=0.8, label_smoothing=ls, delta=0.6, epsilon=1e-3)
    p = loss_params(shape, kind, weights_kind, 0.8, ls, 0.6, 1e-3)
    loss, grad = _forward(kind, y, t, weights, p, tg)
    ref_none, st = mnn.ops.loss_forward(y, t, weights, loss_type=kind, reduction="none", **kw)
    assert_close(loss.reshape(lshape), ref_none, rtol=F32, what="loss per term")
    assert_close(grad, st.gradient, rtol=F32, what="gradient")
    for reduction in ("sum", "mean", "sum_by_non_zero_weights"):
        ref, st_r = mnn.ops.loss_forward(y, t, weights, loss_type=kind, reduction=reduction, **kw)
        p.scale = 1.0 / st_r.divisor if st_r.divisor else 0.0
        assert_close(_reduce(loss, p, 64), ref, rtol=F32, what=f"loss {reduction}")
        # Scalar dloss folded into the scale (as the host does), then per-term dloss for "none".
        p.scale, p.dloss_per_term = (0.7 / st_r.divisor if st_r.divisor else 0.0), 0
        g = _backward(grad, None, p, dtype, 64)
        assert_close(g, mnn.ops.loss_backward(st_r, 0.7), dtype, rtol=F32 if dtype == np.float32 else 1e-3,
                     what=f"gradient {reduction}")
    dloss = randn(r, *lshape)
    p.scale, p.dloss_per_term = 1.0, 1
    g = _backward(grad, dloss, p, dtype, 64)
    assert_close(g, mnn.ops.loss_backward(st, dloss), dtype, rtol=F32 if dtype == np.float32 else 1e-3,
                 what="gradient per term")


@pytest.mark.parametrize("kind", mnn.ops.LOSS_TYPES)
def test_loss_kernels_propagate_nan(kind):
    shape = (4, 5)
    y, t = generic_case(kind, shape, seed=52)
    y[2, 3] = np.nan
    p = loss_params(shape, kind)
    loss, grad = _forward(kind, y, t, None, p, 32)
    ref, st = mnn.ops.loss_forward(y, t, loss_type=kind, reduction="none")
    np.testing.assert_array_equal(np.isnan(loss.reshape(ref.shape)), np.isnan(ref))
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(st.gradient))
    assert np.isnan(grad[2, 3])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("classes_loss", ["softmax_cross_entropy", "sigmoid_cross_entropy"])
@pytest.mark.parametrize("rescore", [True, False])
def test_yolo_kernel_matches_cpu(rescore, classes_loss, dtype):
    pred, lab = yolo_case(53, n=2, h=5, w=3)
    pred = pred.astype(dtype)
    d = mnn.ops.YOLOLossDescriptor(ANCHORS, 3, classes_loss=classes_loss, rescore=rescore,
                                   min_iou_for_object_presence=0.5, max_iou_for_object_absence=0.4,
                                   reduction="none")
    ref, st = mnn.ops.yolo_loss_forward(pred, lab, d)
    p = yolo_params(2, 15, ANCHORS, 3, classes_loss=classes_loss, rescore=rescore, min_iou=0.5, max_iou=0.4)
    count = 2 * len(ANCHORS) * 15
    loss, grad = run_both_schedules(lib("loss"), f"yolo_loss_forward_{SUFFIX[dtype]}",
                                    [pred, lab, ("out", 0), ("out", 1), p],
                                    [np.zeros(pred.shape, np.float32), np.zeros(pred.shape, np.float32)], count, 32)
    assert_close(loss, ref, rtol=F32, what="yolo loss")
    assert_close(grad, st.gradient, rtol=F32, what="yolo gradient")
