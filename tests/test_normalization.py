"""Normalization: batch (training statistics, running update, inference), group / instance /
layer and cross-channel (local response) normalization against float64 numpy references
written from the math; every gradient (input, gamma, beta) against finite differences of the
reference and of the kernel's own forward; float16; odd sizes; NaN; bad input."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn.ops import (
    batch_norm_backward,
    batch_norm_forward,
    cross_channel_norm_backward,
    cross_channel_norm_forward,
    group_norm_backward,
    group_norm_forward,
    instance_norm_backward,
    instance_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
)

from helpers import assert_close, finite_difference, raises_named, randn, rng

SHAPES = [(3, 5, 7, 6), (2, 3, 1, 1), (4, 7), (2, 3, 11), (1, 2, 9, 13)]
EPS = 1e-5


# ---------------------------------------------------------------- references (float64)

def _axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _bcast(v, x):
    return np.asarray(v, np.float64).reshape((1, -1) + (1,) * (x.ndim - 2))


def ref_batch_norm(x, gamma, beta, eps=EPS, mean=None, var=None):
    x = np.asarray(x, np.float64)
    if mean is None:
        mean = x.mean(axis=_axes(x))
        var = ((x - _bcast(mean, x)) ** 2).mean(axis=_axes(x))
    xhat = (x - _bcast(mean, x)) / np.sqrt(_bcast(var, x) + eps)
    return _bcast(gamma, x) * xhat + _bcast(beta, x), mean, var


def ref_group_norm(x, gamma, beta, groups, eps=EPS):
    x = np.asarray(x, np.float64)
    n, c = x.shape[:2]
    g = x.reshape(n, groups, -1)
    mean = g.mean(axis=2, keepdims=True)
    var = ((g - mean) ** 2).mean(axis=2, keepdims=True)
    xhat = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)
    return _bcast(gamma, x) * xhat + _bcast(beta, x), mean[..., 0], 1 / np.sqrt(var[..., 0] + eps)


def ref_lrn(x, size=5, alpha=1e-4, beta=0.75, delta=1.0):
    x = np.asarray(x, np.float64)
    c = x.shape[1]
    y = np.empty_like(x)
    for ch in range(c):
        lo, hi = max(0, ch - size // 2), min(c - 1, ch + (size - 1) // 2)
        q = delta + alpha / size * (x[:, lo:hi + 1] ** 2).sum(axis=1)
        y[:, ch] = x[:, ch] * q ** (-beta)
    return y


def _params(r, c):
    return randn(r, c, scale=0.5) + 1.0, randn(r, c, scale=0.5)


# ---------------------------------------------------------------- batch norm

@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_training_forward(shape):
    r = rng(1)
    x = randn(r, *shape, scale=2.0) + 0.5
    gamma, beta = _params(r, shape[1])
    y, state = batch_norm_forward(x, gamma, beta)
    y_ref, mean, var = ref_batch_norm(x, gamma, beta)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert_close(y, y_ref, atol=2e-5, what="y")
    assert_close(state.mean, mean, atol=1e-6, what="mean")
    assert_close(state.variance, var, rtol=1e-5, what="variance")
    assert_close(state.inv_std, 1 / np.sqrt(var + EPS), rtol=1e-5, what="inv_std")
    assert state.training and state.input_shape == shape and state.dtype == "float32"


def test_batch_norm_large_offset_is_stable():
    # A mean far from zero: a one-pass E[x^2] - E[x]^2 would lose the variance.
    r = rng(2)
    x = (randn(r, 8, 3, 16, 16) * 0.01 + 1000.0).astype(np.float32)
    gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
    y, state = batch_norm_forward(x, gamma, beta)
    y_ref, mean, var = ref_batch_norm(x, gamma, beta)
    assert_close(state.variance, var, rtol=1e-4, what="variance")
    assert_close(y, y_ref, atol=2e-3, what="y")


def test_batch_norm_running_update():
    r = rng(3)
    x = randn(r, 3, 5, 7, 6, scale=1.5) + 2.0
    gamma, beta = _params(r, 5)
    rm, rv = randn(r, 5), np.abs(randn(r, 5)) + 0.5
    rm0, rv0 = rm.copy(), rv.copy()
    _, mean, var = ref_batch_norm(x, gamma, beta)
    m = 3 * 7 * 6
    batch_norm_forward(x, gamma, beta, rm, rv, momentum=0.25)
    assert_close(rm, 0.75 * rm0 + 0.25 * mean, atol=1e-6, what="running_mean")
    assert_close(rv, 0.75 * rv0 + 0.25 * var * m / (m - 1), rtol=1e-5, what="running_var")
    # momentum 0 keeps them; 1 replaces them.
    keep_m, keep_v = rm.copy(), rv.copy()
    batch_norm_forward(x, gamma, beta, rm, rv, momentum=0.0)
    np.testing.assert_array_equal(rm, keep_m)
    np.testing.assert_array_equal(rv, keep_v)
    batch_norm_forward(x, gamma, beta, rm, rv, momentum=1.0)
    assert_close(rm, mean, atol=1e-6)
    assert_close(rv, var * m / (m - 1), rtol=1e-5)


@pytest.mark.parametrize("shape", [(3, 5, 7, 6), (4, 7)])
def test_batch_norm_inference(shape):
    r = rng(4)
    x = randn(r, *shape)
    gamma, beta = _params(r, shape[1])
    rm, rv = randn(r, shape[1]), np.abs(randn(r, shape[1])) + 0.3
    rm0, rv0 = rm.copy(), rv.copy()
    y, state = batch_norm_forward(x, gamma, beta, rm, rv, training=False)
    y_ref, _, _ = ref_batch_norm(x, gamma, beta, mean=rm, var=rv)
    assert_close(y, y_ref, atol=2e-5)
    np.testing.assert_array_equal(rm, rm0)  # inference never moves them
    np.testing.assert_array_equal(rv, rv0)
    assert not state.training
    np.testing.assert_array_equal(state.mean, rm)


def _bn_loss_fns(x, gamma, beta, training, rm=None, rv=None):
    """float64 reference of y as a function of x, gamma and beta."""
    def stats():
        return (None, None) if training else (rm, rv)
    return (lambda v: ref_batch_norm(v, gamma, beta, EPS, *stats())[0],
            lambda v: ref_batch_norm(x, v, beta, EPS, *stats())[0],
            lambda v: ref_batch_norm(x, gamma, v, EPS, *stats())[0])


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(3, 5, 7, 6), (4, 3), (2, 3, 5)])
def test_batch_norm_gradients_finite_differences(shape, training):
    r = rng(5)
    x = randn(r, *shape, scale=1.5)
    gamma, beta = _params(r, shape[1])
    rm, rv = randn(r, shape[1]), np.abs(randn(r, shape[1])) + 0.3
    dy = randn(r, *shape)
    if training:
        _, state = batch_norm_forward(x, gamma, beta)
    else:
        _, state = batch_norm_forward(x, gamma, beta, rm, rv, training=False)
    dx, dgamma, dbeta = batch_norm_backward(dy, x, gamma, state)
    assert dgamma.dtype == np.float32 and dgamma.shape == (shape[1],)
    fx, fg, fb = _bn_loss_fns(x, gamma, beta, training, rm, rv)
    assert_close(dx, finite_difference(fx, x, dy), atol=1e-4, rtol=1e-3, what="dx")
    assert_close(dgamma, finite_difference(fg, gamma, dy), atol=1e-4, rtol=1e-3, what="dgamma")
    assert_close(dbeta, finite_difference(fb, beta, dy), atol=1e-4, rtol=1e-3, what="dbeta")


def test_batch_norm_gradients_against_own_forward():
    # The kernel's own float32 forward differentiated numerically (a coarser step).
    r = rng(6)
    x = randn(r, 2, 3, 4, 3)
    gamma, beta = _params(r, 3)
    dy = randn(r, 2, 3, 4, 3)
    _, state = batch_norm_forward(x, gamma, beta)
    dx, dgamma, dbeta = batch_norm_backward(dy, x, gamma, state)

    def fwd(xx=x, g=gamma, b=beta):
        return batch_norm_forward(xx.astype(np.float32), g.astype(np.float32), b.astype(np.float32))[0]

    assert_close(dx, finite_difference(lambda v: fwd(xx=v), x, dy, eps=1e-2), atol=3e-3, rtol=3e-3)
    assert_close(dgamma, finite_difference(lambda v: fwd(g=v), gamma, dy, eps=1e-2), atol=3e-3, rtol=3e-3)
    assert_close(dbeta, finite_difference(lambda v: fwd(b=v), beta, dy, eps=1e-2), atol=3e-3, rtol=3e-3)


def test_batch_norm_float16():
    r = rng(7)
    x = randn(r, 3, 5, 7, 6, dtype=np.float16, scale=2.0)
    gamma, beta = _params(r, 5)
    dy = randn(r, 3, 5, 7, 6, dtype=np.float16)
    y16, s16 = batch_norm_forward(x, gamma, beta)
    y32, s32 = batch_norm_forward(x.astype(np.float32), gamma, beta)
    assert y16.dtype == np.float16
    assert_close(s16.mean, s32.mean, rtol=1e-6)
    assert_close(y16, y32, np.float16, what="y float16")
    dx16, dg16, db16 = batch_norm_backward(dy, x, gamma, s16)
    dx32, dg32, db32 = batch_norm_backward(dy.astype(np.float32), x.astype(np.float32), gamma, s32)
    assert dx16.dtype == np.float16 and dg16.dtype == np.float32
    assert_close(dx16, dx32, np.float16, what="dx float16")
    assert_close(dg16, dg32, rtol=1e-5, what="dgamma float16")
    assert_close(db16, db32, rtol=1e-5, what="dbeta float16")


def test_batch_norm_threads_and_big_input():
    r = rng(8)
    x = randn(r, 6, 16, 24, 24)
    gamma, beta = _params(r, 16)
    y, state = batch_norm_forward(x, gamma, beta)
    assert_close(y, ref_batch_norm(x, gamma, beta)[0], atol=3e-5)
    old = mnn.num_threads()
    try:
        mnn.set_num_threads(1)
        y1, _ = batch_norm_forward(x, gamma, beta)
    finally:
        mnn.set_num_threads(old)
    np.testing.assert_array_equal(y, y1)  # planes are combined in a fixed order


def test_batch_norm_nan_stays_in_its_channel():
    r = rng(9)
    x = randn(r, 2, 3, 4, 5)
    x[1, 1, 2, 3] = np.nan
    gamma, beta = _params(r, 3)
    y, _ = batch_norm_forward(x, gamma, beta)
    assert np.isnan(y[:, 1]).all()
    assert np.isfinite(y[:, [0, 2]]).all()
    dx, dg, db = batch_norm_backward(np.ones_like(x), x, gamma, batch_norm_forward(x, gamma, beta)[1])
    assert np.isnan(dg[1]) and np.isfinite(dg[[0, 2]]).all()


# ---------------------------------------------------------------- group / instance / layer

GROUP_CASES = [((3, 6, 7, 5), 3), ((3, 5, 7, 6), 5), ((3, 5, 7, 6), 1), ((2, 4, 9), 2), ((5, 6), 3),
               ((1, 8, 3, 3), 4)]


@pytest.mark.parametrize("shape,groups", GROUP_CASES)
def test_group_norm_forward(shape, groups):
    r = rng(10)
    x = randn(r, *shape, scale=2.0) - 0.7
    gamma, beta = _params(r, shape[1])
    y, state = group_norm_forward(x, gamma, beta, groups)
    y_ref, mean, inv_std = ref_group_norm(x, gamma, beta, groups)
    assert_close(y, y_ref, atol=2e-5)
    assert_close(state.mean, mean, atol=1e-6)
    assert_close(state.inv_std, inv_std, rtol=1e-5)
    assert state.groups == groups and state.mean.shape == (shape[0], groups)


@pytest.mark.parametrize("shape,groups", GROUP_CASES)
def test_group_norm_gradients(shape, groups):
    r = rng(11)
    x = randn(r, *shape, scale=1.5)
    gamma, beta = _params(r, shape[1])
    dy = randn(r, *shape)
    _, state = group_norm_forward(x, gamma, beta, groups)
    dx, dgamma, dbeta = group_norm_backward(dy, x, gamma, state)
    tol = dict(atol=1e-4, rtol=1e-3)
    assert_close(dx, finite_difference(lambda v: ref_group_norm(v, gamma, beta, groups)[0], x, dy), **tol, what="dx")
    assert_close(dgamma, finite_difference(lambda v: ref_group_norm(x, v, beta, groups)[0], gamma, dy), **tol,
                 what="dgamma")
    assert_close(dbeta, finite_difference(lambda v: ref_group_norm(x, gamma, v, groups)[0], beta, dy), **tol,
                 what="dbeta")


def test_group_norm_gradient_against_own_forward():
    r = rng(12)
    x = randn(r, 2, 4, 3, 3)
    gamma, beta = _params(r, 4)
    dy = randn(r, 2, 4, 3, 3)
    _, state = group_norm_forward(x, gamma, beta, 2)
    dx, dgamma, _ = group_norm_backward(dy, x, gamma, state)
    fx = finite_difference(lambda v: group_norm_forward(v.astype(np.float32), gamma, beta, 2)[0], x, dy, eps=1e-2)
    fg = finite_difference(lambda v: group_norm_forward(x, v.astype(np.float32), beta, 2)[0], gamma, dy, eps=1e-2)
    assert_close(dx, fx, atol=3e-3, rtol=3e-3)
    assert_close(dgamma, fg, atol=3e-3, rtol=3e-3)


@pytest.mark.parametrize("shape", [(3, 5, 7, 6), (2, 3, 4)])
def test_instance_and_layer_norm(shape):
    r = rng(13)
    x = randn(r, *shape, scale=1.3) + 0.4
    gamma, beta = _params(r, shape[1])
    dy = randn(r, *shape)
    for fwd, bwd, groups in ((instance_norm_forward, instance_norm_backward, shape[1]),
                             (layer_norm_forward, layer_norm_backward, 1)):
        y, state = fwd(x, gamma, beta)
        assert_close(y, ref_group_norm(x, gamma, beta, groups)[0], atol=2e-5, what=fwd.__name__)
        assert state.groups == groups
        dx, dgamma, dbeta = bwd(dy, x, gamma, state)
        ref = group_norm_backward(dy, x, gamma, group_norm_forward(x, gamma, beta, groups)[1])
        for got, want in zip((dx, dgamma, dbeta), ref):
            np.testing.assert_array_equal(got, want)
    # Layer norm statistics run over (C, H, W) of each sample.
    _, st = layer_norm_forward(x, gamma, beta)
    assert_close(st.mean[:, 0], np.asarray(x, np.float64).reshape(shape[0], -1).mean(axis=1), atol=1e-6)
    # And the layer norm gradient against finite differences of its own reference.
    dx, dgamma, _ = layer_norm_backward(dy, x, gamma, st)
    assert_close(dx, finite_difference(lambda v: ref_group_norm(v, gamma, beta, 1)[0], x, dy), atol=1e-4, rtol=1e-3)


def test_group_norm_float16():
    r = rng(14)
    x = randn(r, 3, 6, 7, 5, dtype=np.float16, scale=2.0)
    gamma, beta = _params(r, 6)
    dy = randn(r, 3, 6, 7, 5, dtype=np.float16)
    y16, s16 = group_norm_forward(x, gamma, beta, 3)
    y32, s32 = group_norm_forward(x.astype(np.float32), gamma, beta, 3)
    assert y16.dtype == np.float16
    assert_close(y16, y32, np.float16)
    g16 = group_norm_backward(dy, x, gamma, s16)
    g32 = group_norm_backward(dy.astype(np.float32), x.astype(np.float32), gamma, s32)
    assert g16[0].dtype == np.float16
    assert_close(g16[0], g32[0], np.float16, what="dx")
    assert_close(g16[1], g32[1], rtol=1e-5, what="dgamma")
    assert_close(g16[2], g32[2], rtol=1e-5, what="dbeta")


def test_group_norm_nan_stays_in_its_group():
    x = randn(rng(15), 2, 6, 3, 3)
    x[1, 4, 0, 0] = np.nan
    y, _ = group_norm_forward(x, np.ones(6, np.float32), np.zeros(6, np.float32), 3)
    assert np.isnan(y[1, 4:6]).all()
    assert np.isfinite(y[0]).all() and np.isfinite(y[1, :4]).all()


# ---------------------------------------------------------------- cross-channel

LRN_CASES = [((3, 5, 7, 6), 5, 1e-4, 0.75, 1.0), ((2, 7, 3, 4), 3, 0.5, 0.6, 2.0), ((2, 6, 5), 4, 1.0, 1.2, 0.5),
             ((3, 4), 1, 2.0, 0.75, 1.0), ((2, 3, 2, 2), 9, 0.8, 0.5, 1.5)]


@pytest.mark.parametrize("shape,size,alpha,beta,delta", LRN_CASES)
def test_cross_channel_norm(shape, size, alpha, beta, delta):
    r = rng(16)
    x = randn(r, *shape, scale=1.5)
    dy = randn(r, *shape)
    kw = dict(size=size, alpha=alpha, beta=beta, delta=delta)
    y = cross_channel_norm_forward(x, **kw)
    assert_close(y, ref_lrn(x, **kw), atol=1e-5, what="y")
    dx = cross_channel_norm_backward(dy, x, **kw)
    assert_close(dx, finite_difference(lambda v: ref_lrn(v, **kw), x, dy), atol=1e-4, rtol=1e-3, what="dx")


def test_cross_channel_norm_defaults_and_own_forward():
    r = rng(17)
    x = randn(r, 2, 6, 3, 3, scale=4.0)
    dy = randn(r, 2, 6, 3, 3)
    kw = dict(size=3, alpha=0.5, beta=0.75, delta=1.0)
    dx = cross_channel_norm_backward(dy, x, **kw)
    fd = finite_difference(lambda v: cross_channel_norm_forward(v.astype(np.float32), **kw), x, dy, eps=1e-2)
    assert_close(dx, fd, atol=3e-3, rtol=3e-3)
    # MPS defaults: size 5, alpha 1e-4, beta 0.75, delta 1.
    assert_close(cross_channel_norm_forward(x), ref_lrn(x), atol=1e-5)


def test_cross_channel_norm_float16_and_nan():
    r = rng(18)
    x = randn(r, 3, 5, 7, 6, dtype=np.float16, scale=2.0)
    dy = randn(r, 3, 5, 7, 6, dtype=np.float16)
    kw = dict(size=3, alpha=0.3)
    assert_close(cross_channel_norm_forward(x, **kw), cross_channel_norm_forward(x.astype(np.float32), **kw),
                 np.float16)
    assert_close(cross_channel_norm_backward(dy, x, **kw),
                 cross_channel_norm_backward(dy.astype(np.float32), x.astype(np.float32), **kw), np.float16)
    x32 = x.astype(np.float32)
    x32[0, 2, 1, 1] = np.nan
    y = cross_channel_norm_forward(x32, **kw)
    # The NaN reaches the channels whose window holds channel 2, at that position only.
    assert np.isnan(y[0, 1:4, 1, 1]).all() and np.isfinite(y[0, [0, 4], 1, 1]).all()
    assert np.isfinite(np.delete(y.reshape(3, 5, -1), 7, axis=2)).all()


# ---------------------------------------------------------------- bad input

def _bn_args(shape=(3, 5, 7, 6)):
    r = rng(19)
    x = randn(r, *shape)
    return x, np.ones(shape[1], np.float32), np.zeros(shape[1], np.float32)


def test_batch_norm_bad_input_leaves_running_stats_untouched():
    op = "batch_norm_forward"
    x, g, b = _bn_args()
    rm, rv = np.full(5, 0.5, np.float32), np.full(5, 2.0, np.float32)

    def check(exc, arg, **kw):
        args = dict(x=x, gamma=g, beta=b, running_mean=rm, running_var=rv)
        args.update(kw)
        with raises_named(exc, op, arg):
            batch_norm_forward(**args)
        assert (rm == 0.5).all() and (rv == 2.0).all()

    check(ValueError, "x", x=x[0, 0, 0])                            # rank 1
    check(ValueError, "x", x=x.reshape(3, 5, 7, 6, 1))             # rank 5
    check(ValueError, "x", x=np.zeros((0, 5, 7, 6), np.float32))   # empty
    check(TypeError, "x", x=x.astype(np.int32))
    check(TypeError, "x", x=x.astype(np.float64))
    check(ValueError, "x", x=np.asfortranarray(x))                 # not contiguous
    check(ValueError, "gamma", gamma=np.ones(4, np.float32))
    check(TypeError, "gamma", gamma=g.astype(np.float16))
    check(ValueError, "beta", beta=np.zeros((5, 1), np.float32))
    check(ValueError, "running_var", running_var=np.ones(6, np.float32))
    check(TypeError, "running_mean", running_mean=rm.astype(np.float16))
    check(ValueError, "epsilon", epsilon=0.0)
    check(ValueError, "epsilon", epsilon=float("nan"))
    check(ValueError, "momentum", momentum=1.5)
    check(ValueError, "momentum", momentum=-0.1)
    check(ValueError, "running_var", running_var=None)
    ro = rv.copy()
    ro.flags.writeable = False
    check(ValueError, "running_var", running_var=ro)
    check(ValueError, "x", x=x[:1, :, :1, :1].copy())              # one value per channel in training
    with raises_named(ValueError, op, "running_mean"):
        batch_norm_forward(x, g, b, training=False)


def test_batch_norm_backward_bad_input():
    op = "batch_norm_backward"
    x, g, b = _bn_args()
    _, state = batch_norm_forward(x, g, b)
    dy = np.ones_like(x)
    with raises_named(ValueError, op, "dy"):
        batch_norm_backward(dy[:, :, :3], x, g, state)
    with raises_named(TypeError, op, "dy"):
        batch_norm_backward(dy.astype(np.float16), x, g, state)
    with raises_named(ValueError, op, "x"):
        batch_norm_backward(dy[:2], x[:2], g, state)           # not the forward's input shape
    with raises_named(TypeError, op, "x"):
        batch_norm_backward(dy.astype(np.float16), x.astype(np.float16), g, state)
    with raises_named(ValueError, op, "gamma"):
        batch_norm_backward(dy, x, g[:3], state)
    with raises_named(TypeError, op, "state"):
        batch_norm_backward(dy, x, g, None)
    _, pool_state = mnn.ops.max_pool2d_forward(x, 2)
    with raises_named(TypeError, op, "state"):
        batch_norm_backward(dy, x, g, pool_state)
    _, gstate = group_norm_forward(x, g, b, 5)
    with raises_named(TypeError, op, "state"):
        batch_norm_backward(dy, x, g, gstate)


def test_group_norm_bad_input():
    x, g, b = _bn_args()
    for op, fn in (("group_norm_forward", lambda **k: group_norm_forward(groups=k.pop("groups", 5), **k)),
                   ("instance_norm_forward", instance_norm_forward), ("layer_norm_forward", layer_norm_forward)):
        with raises_named(ValueError, op, "x"):
            fn(x=x[0, 0, 0], gamma=g, beta=b)
        with raises_named(TypeError, op, "x"):
            fn(x=x.astype(np.int32), gamma=g, beta=b)
        with raises_named(ValueError, op, "gamma"):
            fn(x=x, gamma=g[:2], beta=b)
        with raises_named(ValueError, op, "epsilon"):
            fn(x=x, gamma=g, beta=b, epsilon=-1.0)
    op = "group_norm_forward"
    with raises_named(ValueError, op, "groups"):
        group_norm_forward(x, g, b, 2)                            # 2 does not divide 5
    with raises_named(ValueError, op, "groups"):
        group_norm_forward(x, g, b, 0)
    with raises_named(TypeError, op, "groups"):
        group_norm_forward(x, g, b, 2.5)
    _, state = group_norm_forward(x, g, b, 5)
    _, bstate = batch_norm_forward(x, g, b)
    with raises_named(TypeError, "group_norm_backward", "state"):
        group_norm_backward(np.ones_like(x), x, g, bstate)
    with raises_named(ValueError, "instance_norm_backward", "dy"):
        instance_norm_backward(np.ones((3, 5, 7, 5), np.float32), x, g, state)


def test_cross_channel_norm_bad_input():
    op = "cross_channel_norm_forward"
    x = randn(rng(20), 2, 3, 4, 4)
    with raises_named(ValueError, op, "size"):
        cross_channel_norm_forward(x, size=0)
    with raises_named(TypeError, op, "size"):
        cross_channel_norm_forward(x, size=2.0)
    with raises_named(ValueError, op, "alpha"):
        cross_channel_norm_forward(x, alpha=-1.0)
    with raises_named(ValueError, op, "delta"):
        cross_channel_norm_forward(x, delta=0.0)
    with raises_named(ValueError, op, "beta"):
        cross_channel_norm_forward(x, beta=float("inf"))
    with raises_named(ValueError, op, "x"):
        cross_channel_norm_forward(x[0, 0, 0])
    with raises_named(TypeError, op, "x"):
        cross_channel_norm_forward(x.astype(np.float64))
    op = "cross_channel_norm_backward"
    with raises_named(ValueError, op, "dy"):
        cross_channel_norm_backward(x[:1], x)
    with raises_named(TypeError, op, "dy"):
        cross_channel_norm_backward(x.astype(np.float16), x)


def test_tensor_inputs_give_tensors():
    x, g, b = _bn_args((2, 3, 4, 5))
    y, state = batch_norm_forward(mnn.Tensor(x), mnn.Tensor(g), mnn.Tensor(b))
    assert isinstance(y, mnn.Tensor)
    dx, dg, db = batch_norm_backward(mnn.Tensor(np.ones_like(x)), mnn.Tensor(x), mnn.Tensor(g), state)
    assert isinstance(dx, mnn.Tensor) and isinstance(dg, mnn.Tensor)
    assert_close(np.asarray(y), batch_norm_forward(x, g, b)[0])
