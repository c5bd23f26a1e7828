"""Fully connected: forward and gradients against numpy, finite differences (float64
reference and the kernel's own forward), 2-D and 4-D inputs and weights, float16 with
float and half accumulation, bad input and NaN propagation."""

import numpy as np
import pytest

import metalnn as mnn

from helpers import assert_close, finite_difference, raises_named, randn, rng

ops = mnn.ops


def fc_ref(x, w, bias=None):
    """y[n, o] = bias[o] + sum_f x[n, f] * w[o, f] with x, w flattened to (N, F), (O, F)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    w = np.asarray(w, np.float64).reshape(len(w), -1)
    y = np.zeros((x.shape[0], w.shape[0]))
    for o in range(w.shape[0]):
        y[:, o] = (x * w[o]).sum(axis=1)
    if bias is not None:
        y += np.asarray(bias, np.float64)
    return y


def fc_half_ref(x, w, bias=None):
    """acc = f16(acc + x[n, f] * w[o, f]) over f in order, then f16(acc + bias[o])."""
    x = np.asarray(x, np.float16).reshape(len(x), -1).astype(np.float32)
    w = np.asarray(w, np.float16).reshape(len(w), -1).astype(np.float32)
    acc = np.zeros((x.shape[0], w.shape[0]), np.float32)
    for f in range(x.shape[1]):
        acc = (acc + x[:, f:f + 1] * w[:, f]).astype(np.float16).astype(np.float32)
    if bias is not None:
        acc = (acc + np.asarray(bias, np.float16).astype(np.float32)).astype(np.float16)
    return acc.astype(np.float16)


def fc_backward_input_half_ref(dy, w):
    """dx[n, f]: acc = f16(acc + dy[n, o] * w[o, f]) over o in order."""
    dy = np.asarray(dy, np.float16).astype(np.float32)
    w = np.asarray(w, np.float16).reshape(len(w), -1).astype(np.float32)
    acc = np.zeros((dy.shape[0], w.shape[1]), np.float32)
    for o in range(w.shape[0]):
        acc = (acc + dy[:, o:o + 1] * w[o]).astype(np.float16).astype(np.float32)
    return acc.astype(np.float16)


# (x shape, weight shape)
SHAPES = [
    ((5, 13), (7, 13)),
    ((3, 5, 3, 2), (7, 5, 3, 2)),
    ((3, 5, 3, 2), (7, 30)),
    ((4, 30), (6, 5, 3, 2)),
    ((1, 9), (1, 9)),
]


def _make(xs, ws, dtype=np.float32, seed=0):
    r = rng(seed)
    x = randn(r, *xs, dtype=dtype)
    return x, randn(r, *ws, dtype=dtype, scale=0.5), randn(r, ws[0], dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("shapes", SHAPES)
def test_forward_matches_reference(shapes, with_bias, dtype):
    x, w, b = _make(*shapes, dtype)
    bias = b if with_bias else None
    x0, w0, b0 = x.copy(), w.copy(), b.copy()
    y = ops.fully_connected_forward(x, w, bias)
    ref = fc_ref(x, w, bias)
    assert y.dtype == dtype and y.shape == (x.shape[0], w.shape[0])
    tol = 1e-5 if dtype == np.float32 else 2e-3
    assert_close(y, ref, atol=tol * max(1, np.abs(ref).max()), rtol=tol)
    for a, a0 in ((x, x0), (w, w0), (b, b0)):
        np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shapes", SHAPES)
def test_backward_matches_reference(shapes, dtype):
    x, w, b = _make(*shapes, dtype, seed=1)
    dy = randn(rng(2), x.shape[0], w.shape[0], dtype=dtype)
    dx = ops.fully_connected_backward_input(dy, w, x.shape)
    dw = ops.fully_connected_backward_weight(dy, x, w.shape)
    dw2 = ops.fully_connected_backward_weight(dy, x)
    db = ops.fully_connected_backward_bias(dy)
    assert dx.shape == x.shape and dw.shape == w.shape and dw2.shape == (w.shape[0], w[0].size)
    assert dx.dtype == dw.dtype == db.dtype == dtype
    d64 = dy.astype(np.float64)
    x2, w2 = x.reshape(len(x), -1).astype(np.float64), w.reshape(len(w), -1).astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 2e-3
    refs = ((dx, (d64 @ w2).reshape(x.shape), "dx"), (dw, (d64.T @ x2).reshape(w.shape), "dw"),
            (dw2, d64.T @ x2, "dw default shape"), (db, d64.sum(0), "db"))
    for got, ref, name in refs:
        assert_close(got, ref, atol=tol * max(1, np.abs(ref).max()), rtol=tol, what=name)


@pytest.mark.parametrize("shapes", SHAPES[:4])
def test_gradients_match_finite_differences(shapes):
    x, w, b = _make(*shapes, seed=3)
    dy = randn(rng(4), x.shape[0], w.shape[0])
    dx = ops.fully_connected_backward_input(dy, w, x.shape)
    dw = ops.fully_connected_backward_weight(dy, x, w.shape)
    db = ops.fully_connected_backward_bias(dy)
    assert_close(dx, finite_difference(lambda v: fc_ref(v, w, b), x, dy), atol=1e-4, rtol=1e-4)
    assert_close(dw, finite_difference(lambda v: fc_ref(x, v, b), w, dy), atol=1e-4, rtol=1e-4)
    assert_close(db, finite_difference(lambda v: fc_ref(x, w, v), b, dy), atol=1e-4, rtol=1e-4)
    f32 = np.float32
    fwd = ops.fully_connected_forward
    tol = dict(atol=2e-3, rtol=2e-3)
    assert_close(dx, finite_difference(lambda v: fwd(v.astype(f32), w, b), x, dy, eps=1e-2), **tol)
    assert_close(dw, finite_difference(lambda v: fwd(x, v.astype(f32), b), w, dy, eps=1e-2), **tol)
    assert_close(db, finite_difference(lambda v: fwd(x, w, v.astype(f32)), b, dy, eps=1e-2), **tol)


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("shapes", SHAPES)
def test_half_accumulation_matches_float16_reference(shapes, with_bias):
    x, w, b = _make(*shapes, np.float16, seed=5)
    bias = b if with_bias else None
    y = ops.fully_connected_forward(x, w, bias, accumulation="half")
    np.testing.assert_array_equal(y, fc_half_ref(x, w, bias))
    dy = randn(rng(6), x.shape[0], w.shape[0], dtype=np.float16)
    dx = ops.fully_connected_backward_input(dy, w, x.shape, accumulation="half")
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx.reshape(len(x), -1), fc_backward_input_half_ref(dy, w))


def test_half_accumulation_differs_from_float_on_long_sums():
    r = rng(7)
    x = (r.random((4, 700)) + 0.5).astype(np.float16)
    w = (r.random((3, 700)) + 0.5).astype(np.float16)
    yh = ops.fully_connected_forward(x, w, accumulation="half")
    yf = ops.fully_connected_forward(x, w)
    ref = fc_ref(x, w)
    assert np.any(yh != yf)
    assert np.abs(yf.astype(np.float64) - ref).max() < np.abs(yh.astype(np.float64) - ref).max()


def test_large_product_split_over_threads():
    r = rng(8)
    x, w, b = randn(r, 17, 1000), randn(r, 300, 1000, scale=0.05), randn(r, 300)
    y = ops.fully_connected_forward(x, w, b)
    assert_close(y, x.astype(np.float64) @ w.T.astype(np.float64) + b, atol=1e-4)
    dy = randn(r, 17, 300)
    dx = ops.fully_connected_backward_input(dy, w, x.shape)
    assert_close(dx, dy.astype(np.float64) @ w, atol=1e-4)
    assert_close(ops.fully_connected_backward_weight(dy, x), dy.T.astype(np.float64) @ x, atol=1e-4)


def test_nan_propagates_to_dependent_outputs():
    x, w, b = _make((4, 6), (5, 6), seed=9)
    x[2, 3] = np.nan
    y = ops.fully_connected_forward(x, w, b)
    assert np.isnan(y[2]).all() and not np.isnan(np.delete(y, 2, axis=0)).any()
    dy = np.zeros((4, 5), np.float32)
    dy[1, 4] = np.nan
    dx = ops.fully_connected_backward_input(dy, w, x.shape)
    assert np.isnan(dx[1]).all() and not np.isnan(np.delete(dx, 1, axis=0)).any()
    dw = ops.fully_connected_backward_weight(dy, np.nan_to_num(x))
    assert np.isnan(dw[4]).all() and not np.isnan(dw[:4]).any()
    db = ops.fully_connected_backward_bias(dy)
    assert np.isnan(db[4]) and not np.isnan(db[:4]).any()


def test_tensor_in_tensor_out():
    x, w, b = _make((3, 4), (2, 4), seed=10)
    y = ops.fully_connected_forward(mnn.tensor(x), mnn.tensor(w), mnn.tensor(b))
    assert isinstance(y, mnn.Tensor)
    assert_close(y.numpy(), fc_ref(x, w, b), atol=1e-5)


def test_bad_input_raises_and_leaves_arrays_untouched():
    x = np.ones((3, 2, 2, 3), np.float32)
    w = np.ones((5, 12), np.float32)
    b = np.ones(5, np.float32)
    dy = np.ones((3, 5), np.float32)
    F, B = "fully_connected_forward", "fully_connected_backward_input"
    W = "fully_connected_backward_weight"
    f, bi, bw = getattr(ops, F), getattr(ops, B), getattr(ops, W)
    before = [a.copy() for a in (x, w, b, dy)]
    calls = [
        (ValueError, F, "x", lambda: f(x[0], w)),
        (ValueError, F, "x", lambda: f(np.ones(12, np.float32), w)),
        (ValueError, F, "weight", lambda: f(x, w[0])),
        (ValueError, F, "weight", lambda: f(x, np.ones((5, 11), np.float32))),
        # same F, other (C, H, W)
        (ValueError, F, "weight", lambda: f(x, np.ones((5, 2, 3, 2), np.float32))),
        (ValueError, F, "x", lambda: f(np.ones((0, 12), np.float32), w)),
        (ValueError, F, "bias", lambda: f(x, w, np.ones(4, np.float32))),
        (TypeError, F, "weight", lambda: f(x, w.astype(np.float16))),
        (TypeError, F, "bias", lambda: f(x, w, b.astype(np.float16))),
        (TypeError, F, "x", lambda: f(x.astype(np.float64), w)),
        (ValueError, F, "x", lambda: f(np.ones((3, 24), np.float32)[:, ::2], w)),
        (ValueError, F, "accumulation", lambda: f(x, w, accumulation="quarter")),
        (ValueError, F, "accumulation", lambda: f(x, w, accumulation="half")),
        (ValueError, B, "dy", lambda: bi(dy[:, :4], w, x.shape)),
        (ValueError, B, "dy", lambda: bi(dy[:2], w, x.shape)),
        (ValueError, B, "input_shape", lambda: bi(dy, w, (3, 11))),
        (TypeError, B, "weight", lambda: bi(dy, w.astype(np.float16), x.shape)),
        (ValueError, B, "accumulation", lambda: bi(dy, w, x.shape, accumulation="half")),
        (ValueError, W, "dy", lambda: bw(dy[:, :, None], x)),
        (ValueError, W, "dy", lambda: bw(dy[:2], x)),
        (ValueError, W, "weight_shape", lambda: bw(dy, x, (5, 13))),
        (ValueError, W, "weight_shape", lambda: bw(dy, x, (4, 12))),
        (TypeError, W, "x", lambda: bw(dy, x.astype(np.float16))),
        (ValueError, "fully_connected_backward_bias", "dy",
         lambda: ops.fully_connected_backward_bias(dy[0])),
    ]
    for exc, op, arg, call in calls:
        with raises_named(exc, op, arg):
            call()
    for a, a0 in zip((x, w, b, dy), before):
        np.testing.assert_array_equal(a, a0)
    assert ops.fully_connected_forward(x, w, b).shape == (3, 5)
