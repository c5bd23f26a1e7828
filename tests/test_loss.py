"""Softmax cross-entropy: loss and gradient against a numpy reference written from the
math, finite differences, label smoothing, weights, reductions, index vs probability
labels, float16, large logits, NaN, bad input."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn.ops import softmax_cross_entropy_backward, softmax_cross_entropy_forward

from helpers import assert_close, finite_difference, raises_named, randn, rng

SHAPES = [(64, 10), (7, 3), (3, 5, 4, 6)]
REDUCTIONS = ["none", "sum", "mean"]


def one_hot(labels, c):
    """(N[, H, W]) indices -> (N, C[, H, W]) float32."""
    return np.ascontiguousarray(np.moveaxis(np.eye(c, dtype=np.float32)[labels], -1, 1))


def _targets(labels, c, smoothing):
    t = labels if labels.dtype.kind == "f" else one_hot(labels, c)
    return (1 - smoothing) * t.astype(np.float64) + smoothing / c


def _per_sample(w, ndim):
    return np.asarray(w, np.float64).reshape((-1,) + (1,) * (ndim - 2))


def ref_loss(logits, labels, weights=None, reduction="mean", smoothing=0.0):
    x = np.asarray(logits, np.float64)
    c = x.shape[1]
    m = x.max(axis=1, keepdims=True)
    logp = (x - m) - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    loss = -(_targets(labels, c, smoothing) * logp).sum(axis=1)
    if weights is not None:
        loss = loss * _per_sample(weights, x.ndim)
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / loss.size
    return loss


def ref_grad(logits, labels, weights=None, reduction="mean", smoothing=0.0, dloss=1.0):
    x = np.asarray(logits, np.float64)
    c = x.shape[1]
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    g = p - _targets(labels, c, smoothing)
    scale = np.expand_dims(np.asarray(dloss, np.float64), 1) if np.ndim(dloss) else dloss
    if reduction == "mean":
        scale = scale / (x.size // c)
    g = g * scale
    if weights is not None:
        g = g * _per_sample(weights, x.ndim + 1)
    return g


def _case(shape, seed):
    r = rng(seed)
    logits = randn(r, *shape, scale=2.0)
    labels = r.integers(0, shape[1], (shape[0],) + shape[2:]).astype(np.int64)
    weights = r.uniform(0.2, 2.0, shape[0]).astype(np.float32)
    return logits, labels, weights


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(shape, reduction, weighted, smoothing):
    logits, labels, w = _case(shape, seed=1)
    w = w if weighted else None
    loss, state = softmax_cross_entropy_forward(logits, labels, w, reduction, smoothing)
    ref = ref_loss(logits, labels, w, reduction, smoothing)
    assert loss.dtype == np.float32 and loss.shape == np.shape(ref)
    assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    assert isinstance(state, mnn.State) and state.source_op == "softmax_cross_entropy_forward"
    assert state.reduction == reduction and state.label_smoothing == pytest.approx(smoothing)
    # p - onehot with smoothing 0, unweighted, summed: the probabilities
    ref_p = ref_grad(logits, labels, None, "sum") + one_hot(labels, shape[1])
    assert state.probs.dtype == np.float32
    assert_close(state.probs, ref_p, atol=1e-6, rtol=1e-5, what="probs")
    dloss = randn(rng(2), *loss.shape) if reduction == "none" else 1.7
    g = softmax_cross_entropy_backward(state, dloss)
    assert g.dtype == np.float32 and g.shape == shape
    assert_close(g, ref_grad(logits, labels, w, reduction, smoothing, dloss), atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 2, 3)])
def test_gradient_matches_finite_differences(shape, reduction):
    logits, labels, w = _case(shape, seed=3)
    dloss = randn(rng(4), shape[0], *shape[2:]) if reduction == "none" else np.float32(0.7)
    soft = rng(5).uniform(0.0, 1.0, shape)
    soft = (soft / soft.sum(axis=1, keepdims=True)).astype(np.float32)  # targets sum to 1
    for lab in (labels, soft):
        _, state = softmax_cross_entropy_forward(logits, lab, w, reduction, 0.2)
        g = softmax_cross_entropy_backward(state, dloss)
        num = finite_difference(lambda v, t=lab: ref_loss(v, t, w, reduction, 0.2), logits,
                                dloss, eps=1e-4)
        assert_close(g, num, atol=1e-5, rtol=1e-4)

        def kernel(v, t=lab):
            return softmax_cross_entropy_forward(v.astype(np.float32), t, w, reduction, 0.2)[0]

        num32 = finite_difference(kernel, logits, dloss, eps=1e-2)
        assert_close(g, num32, atol=1e-3, rtol=2e-3, what="kernel forward")


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("shape", SHAPES)
def test_index_and_one_hot_labels_agree(shape, smoothing):
    logits, labels, w = _case(shape, seed=6)
    results = []
    for lab in (labels, labels.astype(np.int32), one_hot(labels, shape[1]),
                one_hot(labels, shape[1]).astype(np.float16)):
        loss, state = softmax_cross_entropy_forward(logits, lab, w, "none", smoothing)
        results.append((loss, softmax_cross_entropy_backward(state, 1.0)))
    for loss, g in results[1:]:
        assert_close(loss, results[0][0], atol=1e-6, rtol=1e-6)
        assert_close(g, results[0][1], atol=1e-7, rtol=1e-6)


def test_soft_labels_match_reference():
    logits, _, w = _case((6, 4, 3, 2), seed=7)
    soft = rng(8).uniform(0.0, 1.0, logits.shape).astype(np.float32)
    soft[0, 1] = 0.0  # zero targets count as 0 even where log p is very negative
    for reduction in REDUCTIONS:
        loss, state = softmax_cross_entropy_forward(logits, soft, w, reduction, 0.05)
        assert_close(loss, ref_loss(logits, soft, w, reduction, 0.05), atol=1e-5, rtol=1e-5)
        assert not state.index_labels


def test_smoothing_changes_the_loss():
    logits, labels, _ = _case((8, 5), seed=9)
    plain, _ = softmax_cross_entropy_forward(logits, labels)
    smooth, state = softmax_cross_entropy_forward(logits, labels, label_smoothing=1.0)
    assert abs(float(plain) - float(smooth)) > 1e-3
    # s = 1: the target is uniform and the gradient is p - 1/C
    g = softmax_cross_entropy_backward(state, 8.0)
    assert_close(g, state.probs - 0.2, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("shape", [(64, 10), (3, 5, 4, 6)])
def test_float16_logits(shape):
    logits, labels, w = _case(shape, seed=10)
    l16 = logits.astype(np.float16)
    loss16, st16 = softmax_cross_entropy_forward(l16, labels, w, "sum", 0.1)
    loss32, st32 = softmax_cross_entropy_forward(l16.astype(np.float32), labels, w, "sum", 0.1)
    assert loss16.dtype == np.float32
    assert_close(loss16, loss32, atol=1e-6, rtol=1e-6)  # same values, both computed in float32
    g16 = softmax_cross_entropy_backward(st16)
    assert g16.dtype == np.float16 and g16.shape == shape
    g32 = softmax_cross_entropy_backward(st32)
    assert_close(g16, g32.astype(np.float16), atol=1e-3, rtol=1e-3)
    dl = np.ones(loss16.shape, np.float16)
    _, st = softmax_cross_entropy_forward(l16, labels, w, "none")
    assert softmax_cross_entropy_backward(st, dl).dtype == np.float16


def test_large_logits_stay_finite():
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, 1e4], [5e4, 5e4, 5e4]], np.float32)
    labels = np.array([2, 2, 0])
    loss, state = softmax_cross_entropy_forward(logits, labels, reduction="none")
    np.testing.assert_allclose(loss, [2e4, 0.0, np.log(3)], rtol=1e-6)
    g = softmax_cross_entropy_backward(state)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g[0], [1, 0, -1], atol=1e-6)
    loss, _ = softmax_cross_entropy_forward(logits, labels, label_smoothing=0.1)
    assert np.isfinite(loss)


def test_nan_logits_poison_their_sample():
    logits, labels, _ = _case((4, 6), seed=11)
    logits[2, 3] = np.nan
    loss, state = softmax_cross_entropy_forward(logits, labels, reduction="none")
    np.testing.assert_array_equal(np.isnan(loss), [False, False, True, False])
    g = softmax_cross_entropy_backward(state)
    assert np.all(np.isnan(g[2])) and np.all(np.isfinite(g[[0, 1, 3]]))
    mean, _ = softmax_cross_entropy_forward(logits, labels)
    assert np.isnan(mean)


def test_state_keeps_copies():
    logits, labels, w = _case((5, 4), seed=12)
    _, state = softmax_cross_entropy_forward(logits, labels, w, "sum")
    before = softmax_cross_entropy_backward(state)
    labels[:] = 0
    w[:] = 0
    np.testing.assert_array_equal(softmax_cross_entropy_backward(state), before)
    assert state.labels.dtype == np.int32 and state.weights.dtype == np.float32


def test_large_batch_uses_threads_consistently():
    logits, labels, w = _case((8192, 10), seed=13)
    loss, state = softmax_cross_entropy_forward(logits, labels, w, "none")
    assert_close(loss, ref_loss(logits, labels, w, "none"), atol=1e-5, rtol=1e-5)
    logits, labels, w = _case((4, 7, 40, 40), seed=14)
    loss, state = softmax_cross_entropy_forward(logits, labels, w, "mean", 0.1)
    assert_close(loss, ref_loss(logits, labels, w, "mean", 0.1), atol=1e-6, rtol=1e-5)
    assert_close(softmax_cross_entropy_backward(state, 2.0),
                 ref_grad(logits, labels, w, "mean", 0.1, 2.0), atol=1e-8, rtol=1e-5)


def test_bad_input():
    logits, labels, w = _case((4, 3), seed=15)
    op = "softmax_cross_entropy_forward"
    for bad in (np.array([0, 1, 3, 0]), np.array([0, -1, 2, 0], np.int32)):
        with raises_named(ValueError, op, "labels"):
            softmax_cross_entropy_forward(logits, bad)
    with raises_named(ValueError, op, "labels"):
        softmax_cross_entropy_forward(logits, labels[:3])
    with raises_named(ValueError, op, "labels"):
        softmax_cross_entropy_forward(logits, labels.reshape(4, 1))
    with raises_named(ValueError, op, "labels"):
        softmax_cross_entropy_forward(logits, np.ones((4, 4), np.float32))
    with raises_named(TypeError, op, "labels"):
        softmax_cross_entropy_forward(logits, labels.astype(np.uint8))
    with raises_named(TypeError, op, "labels"):
        softmax_cross_entropy_forward(logits, labels.astype(np.float64))
    with raises_named(ValueError, op, "reduction"):
        softmax_cross_entropy_forward(logits, labels, reduction="average")
    for bad in (-0.1, 1.5, float("nan")):
        with raises_named(ValueError, op, "label_smoothing"):
            softmax_cross_entropy_forward(logits, labels, label_smoothing=bad)
    with raises_named(ValueError, op, "weights"):
        softmax_cross_entropy_forward(logits, labels, np.ones(3, np.float32))
    with raises_named(TypeError, op, "weights"):
        softmax_cross_entropy_forward(logits, labels, np.ones(4, np.float16))
    with raises_named(ValueError, op, "logits"):
        softmax_cross_entropy_forward(np.ones((4, 3, 2), np.float32), labels)
    with raises_named(TypeError, op, "logits"):
        softmax_cross_entropy_forward(logits.astype(np.int32), labels)
    with raises_named(ValueError, op, "logits"):
        softmax_cross_entropy_forward(np.ones((3, 4), np.float32).T, labels)
    with raises_named(ValueError, op, "labels"):  # (N, H, W) indices for (N, C, H, W) logits
        softmax_cross_entropy_forward(np.ones((2, 3, 4, 5), np.float32), np.zeros((2, 4, 4), int))

    op = "softmax_cross_entropy_backward"
    _, state = softmax_cross_entropy_forward(logits, labels, w, "mean")
    probs = state.probs.copy()
    _, pool_state = mnn.ops.max_pool2d_forward(np.ones((1, 1, 2, 2), np.float32), 2)
    for bad in (pool_state, None, 3):
        with raises_named(TypeError, op, "state"):
            softmax_cross_entropy_backward(bad)
    with raises_named(ValueError, op, "dloss"):
        softmax_cross_entropy_backward(state, np.ones(4, np.float32))  # "mean" takes a scalar
    with raises_named(TypeError, op, "dloss"):
        softmax_cross_entropy_backward(state, np.array(1, np.int32))
    _, state_none = softmax_cross_entropy_forward(logits, labels, reduction="none")
    with raises_named(ValueError, op, "dloss"):
        softmax_cross_entropy_backward(state_none, np.ones(5, np.float32))
    np.testing.assert_array_equal(state.probs, probs)  # failed calls changed nothing


def test_tensor_in_tensor_out():
    logits, labels, _ = _case((4, 3), seed=16)
    loss, state = softmax_cross_entropy_forward(mnn.Tensor(logits), mnn.Tensor(labels))
    assert isinstance(loss, mnn.Tensor) and loss.shape == ()
    assert float(loss.numpy()) == pytest.approx(ref_loss(logits, labels), rel=1e-5)
    g = softmax_cross_entropy_backward(state, mnn.Tensor(np.array(2.0, np.float32)))
    assert isinstance(g, mnn.Tensor) and g.shape == (4, 3)


# ============================================================================ generic loss (MPSCNNLoss)

from metalnn.ops import (  # noqa: E402
    LOSS_REDUCTIONS,
    LOSS_TYPES,
    LossDescriptor,
    YOLOLossDescriptor,
    loss_backward,
    loss_forward,
    yolo_loss_forward,
)

GROUPED = ("softmax_cross_entropy", "cosine_distance")
HUBER_DELTA, LOG_EPS = 0.7, 1e-3


def ref_terms(y, t, kind, smoothing=0.0, delta=HUBER_DELTA, eps=LOG_EPS):
    """(terms, gradient) in float64 from the math of each type: one term per element, or per
    position (axis 1 summed) for the softmax / cosine types; the gradient has y's shape."""
    y, t = np.asarray(y, np.float64), np.asarray(t, np.float64)
    c, d = y.shape[1], y - t
    if kind == "softmax_cross_entropy":
        t = t * (1 - smoothing) + smoothing / c
        m = y.max(axis=1, keepdims=True)
        lp = (y - m) - np.log(np.exp(y - m).sum(axis=1, keepdims=True))
        terms = -np.where(t != 0, t * lp, 0.0).sum(axis=1)
        return terms, np.exp(lp) * t.sum(axis=1, keepdims=True) - t
    if kind == "cosine_distance":
        return 1 - (y * t).sum(axis=1), -t
    if kind == "mean_absolute_error":
        return np.abs(d), np.sign(d)
    if kind == "mean_squared_error":
        return d * d, 2 * d
    if kind == "sigmoid_cross_entropy":
        t = t * (1 - smoothing) + 0.5 * smoothing
        return np.maximum(y, 0) - y * t + np.log1p(np.exp(-np.abs(y))), 1 / (1 + np.exp(-y)) - t
    if kind == "categorical_cross_entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(t != 0, -t * np.log(y), 0.0), np.where(t != 0, -t / y, 0.0)
    if kind == "hinge":
        s = 2 * t - 1
        m = 1 - s * y
        return np.maximum(m, 0), np.where(m > 0, -s, 0.0)
    if kind == "huber":
        a = np.abs(d)
        return np.where(a <= delta, 0.5 * d * d, delta * (a - 0.5 * delta)), np.clip(d, -delta, delta)
    if kind == "log":
        terms = -t * np.log(y + eps) - (1 - t) * np.log(1 - y + eps)
        return terms, -t / (y + eps) + (1 - t) / (1 - y + eps)
    if kind == "kullback_leibler_divergence":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(t != 0, t * (np.log(t) - y), 0.0), -t
    raise AssertionError(kind)


def _term_weights(y_shape, kind, weights, weight):
    """The weight of every term (float64, the terms' shape)."""
    shape = (y_shape[0],) + tuple(y_shape[2:]) if kind in GROUPED else tuple(y_shape)
    w = np.full(shape, float(weight))
    if weights is not None:
        wts = np.asarray(weights, np.float64)
        w = w * (wts.reshape((-1,) + (1,) * (len(shape) - 1)) if wts.shape == (y_shape[0],) and
                 shape != (y_shape[0],) else wts)
    return w


def ref_generic_loss(y, t, kind, reduction, weights=None, weight=1.0, smoothing=0.0):
    terms, _ = ref_terms(y, t, kind, smoothing)
    w = _term_weights(np.shape(y), kind, weights, weight)
    wl = w * terms
    if reduction == "none":
        return wl
    if reduction == "sum":
        return wl.sum()
    if reduction == "mean":
        return wl.sum() / wl.size
    nz = np.count_nonzero(w)
    return wl.sum() / nz if nz else 0.0


def ref_generic_grad(y, t, kind, reduction, weights=None, weight=1.0, smoothing=0.0, dloss=1.0):
    terms, g = ref_terms(y, t, kind, smoothing)
    w = _term_weights(np.shape(y), kind, weights, weight)
    scale = {"none": 1.0, "sum": 1.0, "mean": 1.0 / w.size}.get(reduction)
    if scale is None:
        nz = np.count_nonzero(w)
        scale = 1.0 / nz if nz else 0.0
    per_term = w * scale * np.asarray(dloss, np.float64)
    return g * (np.expand_dims(per_term, 1) if kind in GROUPED else per_term)


def generic_case(kind, shape, seed):
    """Predictions and labels in each type's domain (away from kinks for finite differences)."""
    r = rng(seed)
    y = r.standard_normal(shape) * 1.5
    t = r.standard_normal(shape)
    if kind in ("softmax_cross_entropy", "kullback_leibler_divergence", "cosine_distance"):
        t = r.uniform(0.0, 1.0, shape)
        t[t < 0.2] = 0.0  # zero targets count as 0
        t /= np.maximum(t.sum(axis=1, keepdims=True), 1e-3)
        if kind == "kullback_leibler_divergence":
            y = np.log(r.uniform(0.05, 1.0, shape))
    elif kind == "sigmoid_cross_entropy":
        t = r.uniform(0.0, 1.0, shape)
    elif kind in ("categorical_cross_entropy", "log"):
        y = r.uniform(0.05, 0.95, shape)
        t = r.uniform(0.0, 1.0, shape)
        if kind == "categorical_cross_entropy":
            t[t < 0.25] = 0.0
    elif kind == "hinge":
        t = (r.uniform(0.0, 1.0, shape) > 0.5).astype(np.float64)
        y = np.where(r.uniform(0, 1, shape) > 0.5, 1, -1) * r.uniform(0.1, 2.5, shape)
        y[np.abs(1 - (2 * t - 1) * y) < 0.05] += 0.2  # away from the kink at margin 1
    elif kind == "mean_absolute_error":
        y[np.abs(y - t) < 0.05] += 0.2
    return y.astype(np.float32), t.astype(np.float32)


def _forward(kind, y, t, weights=None, reduction="mean", weight=1.0, smoothing=0.0, **kw):
    return loss_forward(y, t, weights, loss_type=kind, reduction=reduction, weight=weight,
                        label_smoothing=smoothing, delta=HUBER_DELTA, epsilon=LOG_EPS, **kw)


def _loss_shape(kind, shape):
    return (shape[0],) + tuple(shape[2:]) if kind in GROUPED else tuple(shape)


@pytest.mark.parametrize("weights_kind", [None, "sample", "term"])
@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 5, 3)])
@pytest.mark.parametrize("kind", LOSS_TYPES)
def test_generic_loss_matches_reference(kind, shape, weights_kind):
    y, t = generic_case(kind, shape, seed=21)
    r = rng(22)
    lshape = _loss_shape(kind, shape)
    weights = None
    if weights_kind == "sample":
        weights = r.uniform(0.2, 2.0, shape[0]).astype(np.float32)
        weights[1] = 0.0
    elif weights_kind == "term":
        weights = r.uniform(0.2, 2.0, lshape).astype(np.float32)
        weights.reshape(-1)[::3] = 0.0
    smoothing = 0.1 if kind in ("softmax_cross_entropy", "sigmoid_cross_entropy") else 0.0
    for reduction in LOSS_REDUCTIONS:
        loss, state = _forward(kind, y, t, weights, reduction, 0.7, smoothing)
        ref = ref_generic_loss(y, t, kind, reduction, weights, 0.7, smoothing)
        assert loss.dtype == np.float32 and loss.shape == np.shape(ref), (loss.shape, np.shape(ref))
        assert_close(loss, ref, atol=1e-5, rtol=2e-5, what=f"{kind} {reduction} loss")
        assert isinstance(state, mnn.State) and state.source_op == "loss_forward"
        assert state.loss_type == kind and state.reduction == reduction and state.loss_shape == lshape
        dloss = randn(r, *lshape) if reduction == "none" else 1.3
        g = loss_backward(state, dloss)
        assert g.dtype == np.float32 and g.shape == shape
        ref_g = ref_generic_grad(y, t, kind, reduction, weights, 0.7, smoothing, dloss)
        assert_close(g, ref_g, atol=1e-6, rtol=2e-5, what=f"{kind} {reduction} gradient")
        if reduction == "none":  # a scalar dloss scales every term
            assert_close(loss_backward(state, 2.0), ref_generic_grad(y, t, kind, "none", weights, 0.7, smoothing,
                                                                     2.0), atol=1e-6, rtol=2e-5)


@pytest.mark.parametrize("kind", LOSS_TYPES)
def test_generic_gradient_matches_finite_differences(kind):
    shape = (3, 4, 5)  # rank 3: (N, C, L)
    y, t = generic_case(kind, shape, seed=23)
    w = rng(24).uniform(0.5, 1.5, shape[0]).astype(np.float32)
    smoothing = 0.2 if kind in ("softmax_cross_entropy", "sigmoid_cross_entropy") else 0.0
    for reduction in ("mean", "none"):
        lshape = _loss_shape(kind, shape)
        dloss = randn(rng(25), *lshape) if reduction == "none" else np.float32(0.8)
        _, state = _forward(kind, y, t, w, reduction, 1.0, smoothing)
        g = loss_backward(state, dloss)
        num = finite_difference(lambda v, r=reduction: ref_generic_loss(v, t, kind, r, w, 1.0, smoothing), y,
                                dloss, eps=1e-5)
        assert_close(g, num, atol=1e-4, rtol=1e-3, what=f"{kind} {reduction} vs float64")

        def kernel(v, r=reduction):
            return _forward(kind, v.astype(np.float32), t, w, r, 1.0, smoothing)[0]

        num32 = finite_difference(kernel, y, dloss, eps=2e-3)
        assert_close(g, num32, atol=2e-2, rtol=2e-2, what=f"{kind} {reduction} vs kernel forward")


@pytest.mark.parametrize("kind", LOSS_TYPES)
def test_generic_float16(kind):
    shape = (5, 7, 3, 3)
    y, t = generic_case(kind, shape, seed=26)
    y16 = y.astype(np.float16)
    loss16, st16 = _forward(kind, y16, t.astype(np.float16), reduction="sum")
    loss32, st32 = _forward(kind, y16.astype(np.float32), t.astype(np.float16).astype(np.float32), reduction="sum")
    assert loss16.dtype == np.float32
    assert_close(loss16, loss32, atol=1e-5, rtol=1e-6)  # same values, both computed in float32
    g16, g32 = loss_backward(st16), loss_backward(st32)
    assert g16.dtype == np.float16 and g16.shape == shape
    assert_close(g16, g32.astype(np.float16), atol=1e-3, rtol=1e-3)
    _, st = _forward(kind, y16, t, reduction="none")
    dl = np.ones(_loss_shape(kind, shape), np.float16)
    assert_close(loss_backward(st, dl), loss_backward(st, 1.0), atol=0, rtol=0)


@pytest.mark.parametrize("kind", ["softmax_cross_entropy", "categorical_cross_entropy"])
def test_generic_index_labels_are_one_hot(kind):
    shape = (4, 6, 3, 2)
    r = rng(27)
    y = r.uniform(0.05, 1.0, shape).astype(np.float32)
    idx = r.integers(0, 6, (4, 3, 2))
    for labels in (idx, idx.astype(np.int32)):
        loss, st = _forward(kind, y, labels, reduction="none")
        ref, ref_st = _forward(kind, y, one_hot(idx, 6), reduction="none")
        assert_close(loss, ref, atol=0, rtol=0)
        assert_close(loss_backward(st), loss_backward(ref_st), atol=0, rtol=0)


def test_generic_softmax_matches_softmax_cross_entropy_api():
    logits, labels, w = _case((9, 7, 2, 3), seed=28)
    for reduction in REDUCTIONS:
        old, old_st = softmax_cross_entropy_forward(logits, labels, w, reduction, 0.15)
        new, new_st = loss_forward(logits, labels, w, loss_type="softmax_cross_entropy", reduction=reduction,
                                   label_smoothing=0.15)
        assert_close(new, old, atol=1e-6, rtol=1e-5)
        assert_close(loss_backward(new_st, 0.9), softmax_cross_entropy_backward(old_st, 0.9), atol=1e-7, rtol=1e-5)


def test_generic_sum_by_non_zero_weights():
    y, t = generic_case("mean_squared_error", (4, 3), seed=29)
    w = np.array([1.0, 0.0, 2.0, 0.0], np.float32)
    loss, st = _forward("mean_squared_error", y, t, w, "sum_by_non_zero_weights")
    terms = ((y.astype(np.float64) - t) ** 2 * w[:, None]).sum()
    assert float(loss) == pytest.approx(terms / 6, rel=1e-5)  # 2 samples x 3 terms are weighted
    assert st.divisor == 6
    loss, st = _forward("mean_squared_error", y, t, np.zeros(4, np.float32), "sum_by_non_zero_weights")
    assert float(loss) == 0.0 and np.all(loss_backward(st) == 0.0)
    loss, st = _forward("mean_squared_error", y, t, None, "sum_by_non_zero_weights", weight=0.0)
    assert float(loss) == 0.0
    loss, _ = _forward("mean_squared_error", y, t, None, "sum_by_non_zero_weights")
    assert float(loss) == pytest.approx(((y.astype(np.float64) - t) ** 2).mean(), rel=1e-5)


def test_generic_label_smoothing_changes_targets():
    y, t = generic_case("sigmoid_cross_entropy", (5, 4), seed=30)
    _, st = _forward("sigmoid_cross_entropy", y, t, smoothing=1.0, reduction="sum")
    # s = 1: every target is 1/2
    assert_close(loss_backward(st), 1 / (1 + np.exp(-y.astype(np.float64))) - 0.5, atol=1e-6, rtol=1e-5)
    plain, _ = _forward("softmax_cross_entropy", y, t)
    smooth, _ = _forward("softmax_cross_entropy", y, t, smoothing=0.3)
    assert abs(float(plain) - float(smooth)) > 1e-3


def test_generic_nan_propagates_to_its_term():
    for kind in LOSS_TYPES:
        y, t = generic_case(kind, (4, 5), seed=31)
        y[2, 3] = np.nan
        loss, st = _forward(kind, y, t, reduction="none")
        g = loss_backward(st)
        if kind in GROUPED:
            assert np.isnan(loss[2]) and np.all(np.isfinite(loss[[0, 1, 3]])), kind
        else:
            assert np.isnan(loss[2, 3]) and np.isfinite(np.delete(loss.reshape(-1), 13)).all(), kind
        assert np.isnan(g[2, 3]) and np.all(np.isfinite(g[[0, 1, 3]])), kind
        assert np.isnan(_forward(kind, y, t)[0]), kind


def test_generic_large_inputs_use_threads_consistently():
    for kind, shape in (("softmax_cross_entropy", (4099, 37)), ("huber", (3, 5, 61, 67)),
                        ("cosine_distance", (2, 9, 70, 33))):
        y, t = generic_case(kind, shape, seed=32)
        w = rng(33).uniform(0.5, 1.5, shape[0]).astype(np.float32)
        loss, st = _forward(kind, y, t, w, "none")
        assert_close(loss, ref_generic_loss(y, t, kind, "none", w), atol=1e-5, rtol=1e-5)
        assert_close(loss_backward(st, 0.5), ref_generic_grad(y, t, kind, "none", w, dloss=0.5), atol=1e-6,
                     rtol=1e-5)
        loss, _ = _forward(kind, y, t, w, "mean")
        assert_close(loss, ref_generic_loss(y, t, kind, "mean", w), atol=1e-6, rtol=1e-5)


def test_generic_bad_input():
    y, t = generic_case("mean_squared_error", (4, 3), seed=34)
    op = "loss_forward"
    with raises_named(ValueError, op, "loss_type"):
        loss_forward(y, t, loss_type="l2")
    with raises_named(ValueError, op, "reduction"):
        loss_forward(y, t, loss_type="huber", reduction="average")
    with raises_named(ValueError, op, "label_smoothing"):
        loss_forward(y, t, loss_type="huber", label_smoothing=0.1)
    for bad in (-0.1, 1.5, float("nan")):
        with raises_named(ValueError, op, "label_smoothing"):
            loss_forward(y, t, loss_type="softmax_cross_entropy", label_smoothing=bad)
    for bad in (0.0, -1.0, float("inf")):
        with raises_named(ValueError, op, "delta"):
            loss_forward(y, t, loss_type="huber", delta=bad)
    with raises_named(ValueError, op, "epsilon"):
        loss_forward(y, t, loss_type="log", epsilon=-1e-3)
    with raises_named(ValueError, op, "weight"):
        loss_forward(y, t, loss_type="huber", weight=float("nan"))
    with raises_named(ValueError, op, "labels"):
        loss_forward(y, t[:3], loss_type="huber")
    with raises_named(TypeError, op, "labels"):
        loss_forward(y, np.zeros(4, np.int64), loss_type="huber")  # indices only for the cross-entropies
    with raises_named(TypeError, op, "labels"):
        loss_forward(y, t.astype(np.float64), loss_type="huber")
    with raises_named(ValueError, op, "labels"):
        loss_forward(y, np.array([0, 1, 3, 0]), loss_type="softmax_cross_entropy")
    with raises_named(ValueError, op, "labels"):
        loss_forward(y, np.array([0, 1, 2]), loss_type="categorical_cross_entropy")
    with raises_named(ValueError, op, "weights"):
        loss_forward(y, t, np.ones(3, np.float32), loss_type="huber")
    with raises_named(ValueError, op, "weights"):
        loss_forward(y, t, np.ones((4, 3), np.float32), loss_type="cosine_distance")  # one per position
    with raises_named(TypeError, op, "weights"):
        loss_forward(y, t, np.ones(4, np.float16), loss_type="huber")
    with raises_named(ValueError, op, "predictions"):
        loss_forward(y[0], t[0], loss_type="huber")
    with raises_named(ValueError, op, "predictions"):
        loss_forward(np.ones((0, 3), np.float32), np.ones((0, 3), np.float32), loss_type="huber")
    with raises_named(TypeError, op, "predictions"):
        loss_forward(y.astype(np.int32), t, loss_type="huber")
    with raises_named(ValueError, op, "predictions"):
        loss_forward(np.ones((3, 4), np.float32).T, t, loss_type="huber")
    with pytest.raises(TypeError):
        loss_forward(y, t)  # loss_type is required

    op = "loss_backward"
    _, st = loss_forward(y, t, loss_type="huber")
    before = loss_backward(st)
    grad = st.gradient.copy()
    _, pool_state = mnn.ops.max_pool2d_forward(np.ones((1, 1, 2, 2), np.float32), 2)
    for bad in (pool_state, None, 3):
        with raises_named(TypeError, op, "state"):
            loss_backward(bad)
    with raises_named(ValueError, op, "dloss"):
        loss_backward(st, np.ones((4, 3), np.float32))  # "mean" takes a scalar
    with raises_named(TypeError, op, "dloss"):
        loss_backward(st, np.array(1, np.int32))
    _, st_none = loss_forward(y, t, loss_type="cosine_distance", reduction="none")
    with raises_named(ValueError, op, "dloss"):
        loss_backward(st_none, np.ones((4, 3), np.float32))  # one per position: (4,)
    np.testing.assert_array_equal(st.gradient, grad)  # failed calls changed nothing
    np.testing.assert_array_equal(loss_backward(st), before)


def test_generic_tensor_in_tensor_out():
    y, t = generic_case("huber", (4, 3), seed=35)
    loss, st = loss_forward(mnn.Tensor(y), mnn.Tensor(t), loss_type="huber", delta=HUBER_DELTA)
    assert isinstance(loss, mnn.Tensor) and loss.shape == ()
    assert float(loss.numpy()) == pytest.approx(ref_generic_loss(y, t, "huber", "mean"), rel=1e-5)
    g = loss_backward(st, mnn.Tensor(np.array(2.0, np.float32)))
    assert isinstance(g, mnn.Tensor) and g.shape == (4, 3)


# ============================================================================ YOLO loss (MPSCNNYOLOLoss)

ANCHORS = [(1.0, 1.5), (2.0, 1.0), (0.7, 0.7)]


def _sig(v):
    return 1 / (1 + np.exp(-v))


def _iou(a, b):
    ix = min(a[0] + a[2] / 2, b[0] + b[2] / 2) - max(a[0] - a[2] / 2, b[0] - b[2] / 2)
    iy = min(a[1] + a[3] / 2, b[1] + b[3] / 2) - max(a[1] - a[3] / 2, b[1] - b[3] / 2)
    inter = max(ix, 0) * max(iy, 0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def ref_yolo(pred, lab, d: YOLOLossDescriptor):
    """Per-element loss and gradient (float64) from the math in yolo_loss_forward's docstring."""
    A, K = len(d.anchor_boxes), d.num_classes
    per = 5 + K
    N, _, H, W = pred.shape
    P = np.asarray(pred, np.float64).reshape(N, A, per, H, W)
    L = np.asarray(lab, np.float64).reshape(N, A, per, H, W)
    loss, grad = np.zeros_like(P), np.zeros_like(P)

    def term(spec, y, t):
        spec = LossDescriptor(spec) if isinstance(spec, str) else spec
        v, g = ref_terms(np.array([[y]]), np.array([[t]]), spec.loss_type, spec.label_smoothing, spec.delta,
                         spec.epsilon)
        return float(np.ravel(v)[0]), float(np.ravel(g)[0])

    for n in range(N):
        for h in range(H):
            for w in range(W):
                for a, (aw, ah) in enumerate(d.anchor_boxes):
                    p, t = P[n, a, :, h, w], L[n, a, :, h, w]
                    px, py = _sig(p[0]), _sig(p[1])
                    box = (px, py, aw * np.exp(p[2]), ah * np.exp(p[3]))
                    lo, go = loss[n, a, :, h, w], grad[n, a, :, h, w]
                    if t[4] > 0:
                        for i, (pv, tv, dv) in enumerate(((px, t[0], px), (py, t[1], py))):
                            v, g = term(d.xy_loss, pv, tv)
                            lo[i], go[i] = d.scale_xy * v, d.scale_xy * g * dv * (1 - dv)
                        for i, anchor in ((2, aw), (3, ah)):
                            v, g = term(d.wh_loss, p[i], np.log(t[i] / anchor))
                            lo[i], go[i] = d.scale_wh * v, d.scale_wh * g
                        target = t[4]
                        if d.rescore:
                            iou = _iou(box, t[:4])
                            target = t[4] if iou >= d.min_iou_for_object_presence else t[4] * iou
                        v, g = term(d.confidence_loss, p[4], target)
                        lo[4], go[4] = d.scale_object * v, d.scale_object * g
                        v, g = ref_terms(p[None, 5:], t[None, 5:], d.classes_loss)
                        cls = d.classes_loss
                        if cls == "softmax_cross_entropy":
                            lo[5:] = -d.scale_class * np.where(t[5:] != 0, t[5:] * (
                                p[5:] - p[5:].max() - np.log(np.exp(p[5:] - p[5:].max()).sum())), 0.0)
                        else:
                            lo[5:] = d.scale_class * v[0]
                        go[5:] = d.scale_class * g[0]
                    else:
                        best = max([_iou(box, L[n, b, :4, h, w]) for b in range(A) if L[n, b, 4, h, w] > 0],
                                   default=0.0)
                        if best < d.max_iou_for_object_absence:
                            v, g = term(d.confidence_loss, p[4], 0.0)
                            lo[4], go[4] = d.scale_no_object * v, d.scale_no_object * g
    return loss.reshape(pred.shape), grad.reshape(pred.shape)


def yolo_case(seed, n=2, h=5, w=4, classes=3, objects=0.3):
    r = rng(seed)
    A, per = len(ANCHORS), 5 + classes
    pred = (r.standard_normal((n, A, per, h, w)) * 0.8).astype(np.float32)
    lab = np.zeros((n, A, per, h, w), np.float32)
    obj = r.uniform(0, 1, (n, A, h, w)) < objects
    lab[:, :, 4] = obj
    lab[:, :, 0:2] = np.where(obj[:, :, None], r.uniform(0.1, 0.9, (n, A, 2, h, w)), 0)
    lab[:, :, 2:4] = np.where(obj[:, :, None], r.uniform(0.4, 2.5, (n, A, 2, h, w)), 0)
    cls = r.integers(0, classes, (n, A, h, w))
    lab[:, :, 5:] = np.where(obj[:, :, None], np.moveaxis(np.eye(classes)[cls], -1, 2), 0)
    return pred.reshape(n, A * per, h, w), lab.reshape(n, A * per, h, w)


@pytest.mark.parametrize("classes_loss", ["softmax_cross_entropy", "sigmoid_cross_entropy", "mean_squared_error"])
@pytest.mark.parametrize("rescore", [True, False])
def test_yolo_matches_reference(rescore, classes_loss):
    pred, lab = yolo_case(40)
    d = YOLOLossDescriptor(ANCHORS, 3, classes_loss=classes_loss, rescore=rescore, max_iou_for_object_absence=0.4,
                           min_iou_for_object_presence=0.5)
    ref_l, ref_g = ref_yolo(pred, lab, d)
    for reduction, ref in (("none", ref_l), ("sum", ref_l.sum()), ("mean", ref_l.mean())):
        loss, st = yolo_loss_forward(pred, lab, YOLOLossDescriptor(**{**d.__dict__, "reduction": reduction}))
        assert loss.dtype == np.float32 and loss.shape == np.shape(ref)
        assert_close(loss, ref, atol=1e-4, rtol=1e-5, what=f"loss {reduction}")
        assert st.source_op == "yolo_loss_forward" and st.loss_type == "yolo"
        dloss = randn(rng(41), *pred.shape) if reduction == "none" else 0.6
        scale = 1 / pred.size if reduction == "mean" else 1.0
        assert_close(loss_backward(st, dloss), ref_g * scale * np.asarray(dloss, np.float64), atol=1e-5,
                     rtol=1e-5, what=f"gradient {reduction}")
    conf = ref_l.reshape(2, 3, 8, 5, 4)[:, :, 4]
    objects = lab.reshape(2, 3, 8, 5, 4)[:, :, 4] > 0
    assert np.any((conf == 0) & ~objects) and np.any((conf != 0) & ~objects)  # ignored and penalised misses


def test_yolo_gradient_matches_finite_differences():
    pred, lab = yolo_case(42, n=1, h=3, w=3, classes=2, objects=0.4)
    # Smooth everywhere: no rescore, every miss penalised (max IoU for absence 1.0).
    d = YOLOLossDescriptor([(1.0, 1.5), (2.0, 1.0), (0.7, 0.7)], 2, rescore=False, max_iou_for_object_absence=1.0,
                           reduction="sum")
    _, st = yolo_loss_forward(pred, lab, d)
    g = loss_backward(st, 0.5)
    num = finite_difference(lambda v: ref_yolo(v, lab, d)[0].sum(), pred, 0.5, eps=1e-5)
    assert_close(g, num, atol=1e-3, rtol=1e-4, what="vs float64")
    num32 = finite_difference(lambda v: yolo_loss_forward(v.astype(np.float32), lab, d)[0], pred, 0.5, eps=1e-2)
    assert_close(g, num32, atol=2e-2, rtol=1e-2, what="vs kernel forward")


def test_yolo_float16():
    pred, lab = yolo_case(43)
    d = YOLOLossDescriptor(ANCHORS, 3)
    p16 = pred.astype(np.float16)
    l16, s16 = yolo_loss_forward(p16, lab.astype(np.float16), d)
    l32, s32 = yolo_loss_forward(p16.astype(np.float32), lab.astype(np.float16).astype(np.float32), d)
    assert_close(l16, l32, atol=1e-5, rtol=1e-6)
    g16 = loss_backward(s16)
    assert g16.dtype == np.float16
    assert_close(g16, loss_backward(s32).astype(np.float16), atol=1e-3, rtol=1e-3)


def test_yolo_bad_input():
    pred, lab = yolo_case(44)
    op = "yolo_loss_forward"
    with raises_named(ValueError, op, "channels"):
        yolo_loss_forward(pred, lab, YOLOLossDescriptor(ANCHORS, 4))
    with raises_named(ValueError, op, "predictions"):
        yolo_loss_forward(pred[0], lab[0], YOLOLossDescriptor(ANCHORS, 3))
    with raises_named(ValueError, op, "labels"):
        yolo_loss_forward(pred, lab[:1], YOLOLossDescriptor(ANCHORS, 3))
    with raises_named(TypeError, op, "labels"):
        yolo_loss_forward(pred, lab.astype(np.int32), YOLOLossDescriptor(ANCHORS, 3))
    with raises_named(ValueError, op, "anchor_boxes"):
        yolo_loss_forward(pred, lab, YOLOLossDescriptor([(1.0, 0.0)] * 3, 3))
    with raises_named(ValueError, op, "anchor_boxes"):
        yolo_loss_forward(pred, lab, YOLOLossDescriptor([(1.0, 1.0)] * 17, 3))
    with raises_named(ValueError, op, "num_classes"):
        yolo_loss_forward(pred, lab, YOLOLossDescriptor(ANCHORS, 0))
    with raises_named(ValueError, op, "xy_loss"):
        yolo_loss_forward(pred, lab, YOLOLossDescriptor(ANCHORS, 3, xy_loss="softmax_cross_entropy"))
    with raises_named(ValueError, op, "classes_loss"):
        yolo_loss_forward(pred, lab, YOLOLossDescriptor(ANCHORS, 3, classes_loss="cosine_distance"))
    with raises_named(ValueError, op, "wh_loss"):
        yolo_loss_forward(pred, lab, YOLOLossDescriptor(ANCHORS, 3, wh_loss="l1"))
    with raises_named(ValueError, op, "scale_object"):
        yolo_loss_forward(pred, lab, YOLOLossDescriptor(ANCHORS, 3, scale_object=-1.0))
    with raises_named(ValueError, op, "max_iou_for_object_absence"):
        yolo_loss_forward(pred, lab, YOLOLossDescriptor(ANCHORS, 3, max_iou_for_object_absence=1.5))
    with raises_named(ValueError, op, "reduction"):
        yolo_loss_forward(pred, lab, YOLOLossDescriptor(ANCHORS, 3, reduction="sum_by_non_zero_weights"))
    with raises_named(TypeError, op, "xy_loss"):
        yolo_loss_forward(pred, lab, YOLOLossDescriptor(ANCHORS, 3, xy_loss=3))
