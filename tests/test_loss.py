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
