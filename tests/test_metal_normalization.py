"""normalization.metal on the CPU emulator (tests/metal) against the CPU backend
(mnn.ops.*_norm_*): batch norm statistics / forward / running update / gradients (batch and
frozen statistics), group norm (instance and layer as groups = C and 1) forward and
gradients, cross-channel normalization forward and gradient; odd sizes, float32 and float16,
threadgroups that do not divide the work, every dispatch repeated with threads reversed."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import metalnn as mnn

from helpers import DTYPES, assert_close, randn, rng

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "metal"))
from harness import SUFFIX, lib, run_both_schedules, skip_without_clang  # noqa: E402
from params_normalization import BATCH_STATISTICS, norm_params  # noqa: E402

skip_without_clang()

SHAPES = [((3, 5, 7, 6), 64), ((4, 7), 32), ((2, 3, 11), 96), ((1, 2, 9, 13), 64)]
F32 = np.float32


def _tol(dtype):
    # Reductions sum in another order than the CPU (float vs double combination).
    return dict(rtol=2e-5, atol=5e-5) if dtype == np.float32 else {}


def _inputs(shape, dtype, seed):
    r = rng(seed)
    x = (randn(r, *shape, scale=1.7) + 0.6).astype(dtype)
    dy = randn(r, *shape, dtype=dtype)
    gamma = randn(r, shape[1], scale=0.4) + 1.0
    beta = randn(r, shape[1], scale=0.4)
    return x, dy, gamma, beta


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,tg", SHAPES)
def test_batch_norm(shape, tg, dtype):
    x, dy, gamma, beta = _inputs(shape, dtype, 1)
    c = shape[1]
    k = lib("normalization")
    sfx = SUFFIX[dtype]
    p = norm_params(shape, flags=BATCH_STATISTICS, momentum=0.3)
    mean, var = run_both_schedules(k, f"batch_norm_statistics_{sfx}", [x, ("out", 0), ("out", 1), p],
                                   [np.zeros(c, F32), np.zeros(c, F32)], c * tg, tg)
    y_ref, state = mnn.ops.batch_norm_forward(x, gamma, beta)
    assert_close(mean, state.mean, rtol=1e-5, atol=1e-6, what="mean")
    assert_close(var, state.variance, rtol=1e-5, what="variance")
    y, = run_both_schedules(k, f"batch_norm_forward_{sfx}", [x, gamma, beta, state.mean, state.variance, ("out", 0), p],
                            [x], x.size, 64)
    assert_close(y, y_ref, dtype, **_tol(dtype), what="y")

    dgamma, dbeta = run_both_schedules(k, f"batch_norm_backward_params_{sfx}",
                                       [dy, x, state.mean, state.variance, ("out", 0), ("out", 1), p],
                                       [np.zeros(c, F32), np.zeros(c, F32)], c * tg, tg)
    dx_ref, dg_ref, db_ref = mnn.ops.batch_norm_backward(dy, x, gamma, state)
    assert_close(dgamma, dg_ref, rtol=1e-4, atol=1e-4, what="dgamma")
    assert_close(dbeta, db_ref, rtol=1e-4, atol=1e-4, what="dbeta")
    dx, = run_both_schedules(k, f"batch_norm_backward_{sfx}",
                             [dy, x, gamma, state.mean, state.variance, dg_ref, db_ref, ("out", 0), p], [x], x.size, 64)
    assert_close(dx, dx_ref, dtype, **_tol(dtype), what="dx")

    # Running statistics, updated in place.
    rm, rv = randn(rng(2), c), np.abs(randn(rng(3), c)) + 0.5
    rm_ref, rv_ref = rm.copy(), rv.copy()
    mnn.ops.batch_norm_forward(x, gamma, beta, rm_ref, rv_ref, momentum=0.3)
    k.dispatch("batch_norm_update_running_float32", [rm, rv, state.mean, state.variance, p], c, 32)
    assert_close(rm, rm_ref, rtol=1e-6, what="running_mean")
    assert_close(rv, rv_ref, rtol=1e-6, what="running_var")


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_frozen_statistics(dtype):
    shape = (3, 5, 7, 6)
    x, dy, gamma, beta = _inputs(shape, dtype, 4)
    rm, rv = randn(rng(5), 5), np.abs(randn(rng(6), 5)) + 0.3
    y_ref, state = mnn.ops.batch_norm_forward(x, gamma, beta, rm, rv, training=False)
    p = norm_params(shape)  # flags 0: running statistics
    k, sfx = lib("normalization"), SUFFIX[dtype]
    y, = run_both_schedules(k, f"batch_norm_forward_{sfx}", [x, gamma, beta, rm, rv, ("out", 0), p], [x], x.size, 64)
    assert_close(y, y_ref, dtype, **_tol(dtype))
    dx_ref, dg_ref, db_ref = mnn.ops.batch_norm_backward(dy, x, gamma, state)
    dgamma, dbeta = run_both_schedules(k, f"batch_norm_backward_params_{sfx}",
                                       [dy, x, rm, rv, ("out", 0), ("out", 1), p],
                                       [np.zeros(5, F32), np.zeros(5, F32)], 5 * 64, 64)
    assert_close(dgamma, dg_ref, rtol=1e-4, atol=1e-4)
    assert_close(dbeta, db_ref, rtol=1e-4, atol=1e-4)
    dx, = run_both_schedules(k, f"batch_norm_backward_{sfx}", [dy, x, gamma, rm, rv, dg_ref, db_ref, ("out", 0), p],
                             [x], x.size, 64)
    assert_close(dx, dx_ref, dtype, **_tol(dtype))


GROUP_CASES = [((3, 6, 7, 5), 3, 64), ((3, 5, 7, 6), 5, 32), ((3, 5, 7, 6), 1, 96), ((5, 6), 3, 32),
               ((2, 4, 9), 2, 64)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,groups,tg", GROUP_CASES)
def test_group_norm(shape, groups, tg, dtype):
    x, dy, gamma, beta = _inputs(shape, dtype, 7)
    n, c = shape[:2]
    k, sfx = lib("normalization"), SUFFIX[dtype]
    p = norm_params(shape, groups=groups)
    y_ref, state = mnn.ops.group_norm_forward(x, gamma, beta, groups)
    y, mean, inv_std = run_both_schedules(
        k, f"group_norm_forward_{sfx}", [x, gamma, beta, ("out", 0), ("out", 1), ("out", 2), p],
        [x, np.zeros((n, groups), F32), np.zeros((n, groups), F32)], n * groups * tg, tg)
    assert_close(mean, state.mean, rtol=1e-5, atol=1e-6, what="mean")
    assert_close(inv_std, state.inv_std, rtol=1e-5, what="inv_std")
    assert_close(y, y_ref, dtype, **_tol(dtype), what="y")
    dx_ref, dg_ref, db_ref = mnn.ops.group_norm_backward(dy, x, gamma, state)
    dx, = run_both_schedules(k, f"group_norm_backward_{sfx}", [dy, x, gamma, state.mean, state.inv_std, ("out", 0), p],
                             [x], n * groups * tg, tg)
    assert_close(dx, dx_ref, dtype, **_tol(dtype), what="dx")
    dgamma, dbeta = run_both_schedules(k, f"group_norm_backward_params_{sfx}",
                                       [dy, x, state.mean, state.inv_std, ("out", 0), ("out", 1), p],
                                       [np.zeros(c, F32), np.zeros(c, F32)], c * tg, tg)
    assert_close(dgamma, dg_ref, rtol=1e-4, atol=1e-4, what="dgamma")
    assert_close(dbeta, db_ref, rtol=1e-4, atol=1e-4, what="dbeta")


LRN_CASES = [((3, 5, 7, 6), 5, 1e-4, 0.75, 1.0), ((2, 7, 3, 4), 3, 0.5, 0.6, 2.0), ((2, 6, 5), 4, 1.0, 1.2, 0.5),
             ((3, 4), 1, 2.0, 0.75, 1.0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,size,alpha,beta,delta", LRN_CASES)
def test_cross_channel_norm(shape, size, alpha, beta, delta, dtype):
    x, dy, _, _ = _inputs(shape, dtype, 8)
    k, sfx = lib("normalization"), SUFFIX[dtype]
    kw = dict(size=size, alpha=alpha, beta=beta, delta=delta)
    p = norm_params(shape, **kw)
    y, = run_both_schedules(k, f"cross_channel_norm_forward_{sfx}", [x, ("out", 0), p], [x], x.size, 64)
    assert_close(y, mnn.ops.cross_channel_norm_forward(x, **kw), dtype, **_tol(dtype), what="y")
    dx, = run_both_schedules(k, f"cross_channel_norm_backward_{sfx}", [dy, x, ("out", 0), p], [x], x.size, 64)
    assert_close(dx, mnn.ops.cross_channel_norm_backward(dy, x, **kw), dtype, **_tol(dtype), what="dx")


def test_batch_norm_nan_channel():
    x, _, gamma, beta = _inputs((2, 3, 4, 5), np.float32, 9)
    x[1, 1, 2, 3] = np.nan
    p = norm_params(x.shape, flags=BATCH_STATISTICS)
    k = lib("normalization")
    mean, var = np.zeros(3, F32), np.zeros(3, F32)
    k.dispatch("batch_norm_statistics_float32", [x, mean, var, p], 3 * 32, 32)
    assert np.isnan(mean[1]) and np.isfinite(mean[[0, 2]]).all()
    y = np.zeros_like(x)
    k.dispatch("batch_norm_forward_float32", [x, gamma, beta, mean, var, y, p], x.size, 64)
    assert np.isnan(y[:, 1]).all() and np.isfinite(y[:, [0, 2]]).all()
