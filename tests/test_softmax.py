"""Softmax and log-softmax over axis 1: forward against numpy, gradients against finite
differences, float16, NaN / large inputs, the vectorised exp, bad input."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn.ops import (
    log_softmax_backward,
    log_softmax_forward,
    softmax_backward,
    softmax_forward,
)

from helpers import assert_close, finite_difference, raises_named, randn, rng

# (N, C) rows, tails of the 16-lane vectors (C = 37, 1000), C = 1, and images whose
# H*W spans several 256-position blocks with a ragged last one.
SHAPES = [(64, 10), (3, 37), (2, 1000), (5, 1), (3, 5, 11, 9), (2, 7, 30, 30), (2, 3, 1, 1)]


def ref_log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(axis=1, keepdims=True)
    return (x - m) - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def ref_softmax(x):
    return np.exp(ref_log_softmax(x))


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_numpy(shape):
    x = randn(rng(1), *shape, scale=3.0)
    y = softmax_forward(x)
    ly = log_softmax_forward(x)
    assert y.dtype == np.float32 and y.shape == shape and ly.dtype == np.float32
    assert_close(y, ref_softmax(x), atol=1e-7, rtol=2e-6)
    assert_close(ly, ref_log_softmax(x), atol=1e-5, rtol=2e-6)
    np.testing.assert_allclose(y.astype(np.float64).sum(axis=1), 1.0, rtol=1e-5)
    # log_softmax agrees with log(softmax) where softmax has not underflowed
    assert_close(ly, np.log(y.astype(np.float64)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 3, 4)])
def test_backward_matches_finite_differences(shape):
    x = randn(rng(2), *shape, scale=2.0)
    dy = randn(rng(3), *shape)
    y = softmax_forward(x)
    dx = softmax_backward(dy, y)
    assert dx.dtype == np.float32 and dx.shape == shape
    assert_close(dx, finite_difference(ref_softmax, x, dy, eps=1e-4), atol=1e-5, rtol=1e-4)
    num32 = finite_difference(lambda v: softmax_forward(v.astype(np.float32)), x, dy, eps=1e-2)
    assert_close(dx, num32, atol=2e-3, rtol=2e-3, what="kernel forward")
    ly = log_softmax_forward(x)
    ldx = log_softmax_backward(dy, ly)
    assert_close(ldx, finite_difference(ref_log_softmax, x, dy, eps=1e-4), atol=1e-5, rtol=1e-4)
    num32 = finite_difference(lambda v: log_softmax_forward(v.astype(np.float32)), x, dy, eps=1e-2)
    assert_close(ldx, num32, atol=2e-3, rtol=2e-3, what="kernel forward")


@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_formula(shape):
    x = randn(rng(4), *shape, scale=2.0)
    dy = randn(rng(5), *shape)
    y = softmax_forward(x).astype(np.float64)
    ref = y * (dy - (dy * y).sum(axis=1, keepdims=True))
    assert_close(softmax_backward(dy, y.astype(np.float32)), ref, atol=1e-6, rtol=1e-5)
    ly = log_softmax_forward(x).astype(np.float64)
    ref = dy - np.exp(ly) * dy.sum(axis=1, keepdims=True)
    assert_close(log_softmax_backward(dy, ly.astype(np.float32)), ref, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("shape", [(64, 10), (3, 5, 11, 9), (2, 3, 20, 20)])
def test_float16_matches_float32(shape):
    x = randn(rng(6), *shape, scale=3.0, dtype=np.float16)
    dy = randn(rng(7), *shape, dtype=np.float16)
    pairs = ((softmax_forward, softmax_backward), (log_softmax_forward, log_softmax_backward))
    for fwd, bwd in pairs:
        y16 = fwd(x)
        y32 = fwd(x.astype(np.float32))
        assert y16.dtype == np.float16
        assert_close(y16, y32.astype(np.float16), atol=1e-3, rtol=1e-3)
        dx16 = bwd(dy, y16)
        assert dx16.dtype == np.float16
        dx32 = bwd(dy.astype(np.float32), y16.astype(np.float32))
        assert_close(dx16, dx32.astype(np.float16), atol=1e-3, rtol=1e-3)


def test_exp_is_accurate_over_the_float_range():
    # log_softmax_backward with dy = (0, 1) and y = (v, 0) gives dx[0] = -exp(v).
    v = np.concatenate([np.linspace(-103, 88.7, 20001), [-87.3, -80.0, 0.0, 1e-8, 88.72]])
    v = v.astype(np.float32)
    y = np.stack([v, np.zeros_like(v)], axis=1)
    dy = np.stack([np.zeros_like(v), np.ones_like(v)], axis=1)
    e = -log_softmax_backward(dy, y)[:, 0].astype(np.float64)
    ref = np.exp(v.astype(np.float64))
    normal = ref > 1.2e-38
    np.testing.assert_allclose(e[normal], ref[normal], rtol=3e-7)
    assert np.all(np.abs(e[~normal] - ref[~normal]) < 2e-45)  # subnormal results: within a step
    special = np.array([[np.nan, 0], [np.inf, 0], [-np.inf, 0], [89.0, 0], [-200.0, 0]], np.float32)
    e = -log_softmax_backward(np.tile([0.0, 1.0], (5, 1)).astype(np.float32), special)[:, 0]
    assert np.isnan(e[0]) and e[1] == np.inf and e[2] == 0 and e[3] == np.inf and e[4] == 0


def test_large_inputs_stay_finite():
    x = np.array([[1e4, 0.0, -1e4], [3e4, 3e4, 3e4]], np.float32)
    y = softmax_forward(x)
    ly = log_softmax_forward(x)
    np.testing.assert_allclose(y, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    np.testing.assert_allclose(ly, [[0, -1e4, -2e4], [-np.log(3)] * 3], rtol=1e-6)
    x = np.full((2, 3, 4, 5), 1e4, np.float32)
    assert np.all(np.isfinite(log_softmax_forward(x)))


@pytest.mark.parametrize("shape", [(4, 20), (4, 5, 3, 7)])
def test_nan_and_inf_poison_only_their_position(shape):
    x = randn(rng(8), *shape)
    pos = np.zeros((shape[0], 1) + shape[2:], bool)  # positions hit, over the channel axis
    x[(1, 3) + (1, 2)[: len(shape) - 2]] = np.nan
    x[(2, 0) + (0, 6)[: len(shape) - 2]] = np.inf
    pos[(1, 0) + (1, 2)[: len(shape) - 2]] = True
    pos[(2, 0) + (0, 6)[: len(shape) - 2]] = True
    hit = np.broadcast_to(pos, shape)
    for fwd in (softmax_forward, log_softmax_forward):
        y = fwd(x)
        np.testing.assert_array_equal(np.isnan(y), hit)
        assert np.all(np.isfinite(y[~hit]))
    y = softmax_forward(np.where(hit, 0, x).astype(np.float32))
    dy = np.where(hit, np.nan, 1.0).astype(np.float32)
    for bwd in (softmax_backward, log_softmax_backward):
        np.testing.assert_array_equal(np.isnan(bwd(dy, y)), hit)


def test_large_batch_uses_threads_consistently():
    x = randn(rng(9), 4096, 10)
    assert_close(softmax_forward(x), ref_softmax(x), atol=1e-7, rtol=2e-6)
    x = randn(rng(10), 32, 21, 24, 24)
    assert_close(log_softmax_forward(x), ref_log_softmax(x), atol=1e-5, rtol=2e-6)


def test_bad_input():
    forwards = (("softmax_forward", softmax_forward), ("log_softmax_forward", log_softmax_forward))
    for op, fn in forwards:
        with raises_named(ValueError, op, "x"):
            fn(np.ones((2, 3, 4), np.float32))
        with raises_named(ValueError, op, "x"):
            fn(np.ones(5, np.float32))
        with raises_named(ValueError, op, "x"):
            fn(np.ones((0, 3), np.float32))
        with raises_named(TypeError, op, "x"):
            fn(np.ones((2, 3), np.int32))
        with raises_named(TypeError, op, "x"):
            fn(np.ones((2, 3), np.float64))
        with raises_named(ValueError, op, "x"):
            fn(np.ones((3, 4), np.float32).T)
    y = softmax_forward(np.ones((2, 3), np.float32))
    backwards = (("softmax_backward", softmax_backward),
                 ("log_softmax_backward", log_softmax_backward))
    for op, fn in backwards:
        with raises_named(ValueError, op, "dy"):
            fn(np.ones((2, 4), np.float32), y)
        with raises_named(TypeError, op, "dy"):
            fn(y.astype(np.float16), y)
        with raises_named(ValueError, op, "y"):
            fn(np.ones((2, 3, 1), np.float32), np.ones((2, 3, 1), np.float32))
        with raises_named(ValueError, op, "dy"):
            fn(np.ones((6, 2), np.float32)[::2], y)


def test_tensor_in_tensor_out():
    x = randn(rng(11), 3, 4, 2, 2)
    y = softmax_forward(mnn.Tensor(x))
    assert isinstance(y, mnn.Tensor) and y.shape == x.shape
    np.testing.assert_array_equal(y.numpy(), softmax_forward(x))
    dx = log_softmax_backward(mnn.Tensor(x), log_softmax_forward(x))
    assert isinstance(dx, mnn.Tensor)
