"""loss.metal, optimizer.metal and arithmetic.metal on the CPU emulator (tests/metal) against the
CPU backend (mnn.ops.*): odd sizes that are not multiples of the threadgroup, float32 and
float16, every option, NaN propagation."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import metalnn as mnn

from helpers import DTYPES, assert_close, randn, rng

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "metal"))
from emulator import compile_strict  # noqa: E402
from harness import KERNELS, SUFFIX, lib, run_both_schedules, skip_without_clang  # noqa: E402
from params_training import (  # noqa: E402
    REDUCTIONS,
    SoftmaxCrossEntropyParams,
    adam_params,
    rmsprop_params,
    sgd_params,
)

skip_without_clang()

F32 = 1e-5  # float32 results (probabilities, loss, optimizer state) whatever the logits' dtype


@pytest.mark.parametrize("name", ["loss", "optimizer", "arithmetic"])
def test_strict_address_spaces(name):
    compile_strict(KERNELS / f"{name}.metal")


# ---------------------------------------------------------------- softmax cross-entropy

# (logits shape, threadgroup): c not a multiple of the threadgroup, several simd-groups, s > 1.
LOSS_SHAPES = [((7, 37), 32), ((3, 9, 5, 3), 48), ((2, 150), 96)]


def _labels(r, shape, index: bool):
    n, c = shape[0], shape[1]
    if index:
        return r.integers(0, c, size=(n,) + tuple(shape[2:])).astype(np.int32)
    lab = r.random(shape).astype(np.float32)
    lab[lab < 0.3] = 0.0  # zero targets: 0 * log p must count as 0
    lab /= lab.sum(axis=1, keepdims=True)
    return lab.astype(np.float32)


def _sce_params(shape, index, weights, reduction, ls, scale=1.0, per_position=False):
    n, c, s = shape[0], shape[1], int(np.prod(shape[2:]))
    return SoftmaxCrossEntropyParams(n, c, s, int(index), int(weights is not None), REDUCTIONS.index(reduction), ls,
                                     scale, int(per_position))


def _sce_forward(logits, labels, weights, p, tg):
    """Emulator forward: (probs, per-position loss) for logits of any rank."""
    n, s = p.n, p.s
    wbuf = weights if weights is not None else np.zeros(1, np.float32)  # bound, never read
    probs, loss = run_both_schedules(
        lib("loss"), f"softmax_cross_entropy_forward_{SUFFIX[logits.dtype.type]}",
        [logits, labels, wbuf, ("out", 0), ("out", 1), p],
        [np.zeros(logits.shape, np.float32), np.zeros(n * s, np.float32)], n * s * tg, tg)
    return probs, loss


def _sce_forward_simd(logits, labels, weights, p, tg):
    """Emulator forward, one simd-group per position (tg need not be a multiple of 32)."""
    positions, nsg = p.n * p.s, -(-tg // 32)
    wbuf = weights if weights is not None else np.zeros(1, np.float32)
    return run_both_schedules(
        lib("loss"), f"softmax_cross_entropy_forward_simd_{SUFFIX[logits.dtype.type]}",
        [logits, labels, wbuf, ("out", 0), ("out", 1), p],
        [np.zeros(logits.shape, np.float32), np.zeros(positions, np.float32)], -(-positions // nsg) * tg, tg)


def _sce_reduce(loss, p, tg):
    out, = run_both_schedules(lib("loss"), "softmax_cross_entropy_reduce", [loss, ("out", 0), p],
                              [np.zeros(1, np.float32)], tg, tg)
    return out[0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ls", [0.0, 0.15])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("index", [True, False])
@pytest.mark.parametrize("shape,tg", LOSS_SHAPES)
def test_softmax_cross_entropy(shape, tg, index, weighted, ls, dtype):
    r = rng(11)
    logits = randn(r, *shape, dtype=dtype, scale=3.0)
    logits.reshape(-1)[3] = 30.0  # a large logit: the max must be subtracted
    labels = _labels(r, shape, index)
    weights = (r.random(shape[0]) + 0.5).astype(np.float32) if weighted else None
    loss_shape = (shape[0],) + tuple(shape[2:])
    k = lib("loss")
    probs = loss = None
    for reduction in REDUCTIONS:
        ref, state = mnn.ops.softmax_cross_entropy_forward(logits, labels, weights, reduction, ls)
        p = _sce_params(shape, index, weights, reduction, ls)
        if probs is None:  # the forward kernel does not depend on the reduction
            probs, loss = _sce_forward(logits, labels, weights, p, tg)
            assert_close(probs, state.probs, np.float32, rtol=F32, what="probabilities")
            # 80 threads: three simd-groups (positions) per threadgroup, the last of 16 lanes.
            probs_simd, loss_simd = _sce_forward_simd(logits, labels, weights, p, 80)
            assert_close(probs_simd, state.probs, np.float32, rtol=F32, what="probabilities (simd)")
            assert_close(loss_simd, loss, np.float32, rtol=F32, what="loss (simd)")
        if reduction == "none":
            assert_close(loss.reshape(loss_shape), ref, np.float32, rtol=F32, what="loss per position")
        else:
            assert_close(_sce_reduce(loss, p, 64), ref, np.float32, rtol=F32, what=f"loss {reduction}")
        # Backward from the CPU's probabilities, scalar dloss (and per position for "none").
        positions = int(np.prod(loss_shape))
        dloss_cases = [np.float32(0.7)]
        if reduction == "none":
            dloss_cases.append(randn(r, *loss_shape))
        for dloss in dloss_cases:
            per_position = np.ndim(dloss) > 0
            scale = 1.0 if per_position else float(dloss) / (positions if reduction == "mean" else 1)
            pb = _sce_params(shape, index, weights, reduction, ls, scale, per_position)
            dl = dloss.reshape(-1) if per_position else np.zeros(1, np.float32)
            wbuf = weights if weights is not None else np.zeros(1, np.float32)
            g, = run_both_schedules(k, f"softmax_cross_entropy_backward_{SUFFIX[dtype]}",
                                    [np.asarray(state.probs), labels, wbuf, dl, ("out", 0), pb], [logits],
                                    logits.size, 64)
            g_ref = mnn.ops.softmax_cross_entropy_backward(state, dloss)
            assert_close(g, g_ref, dtype, what=f"dlogits {reduction} per_position={per_position}")


def test_softmax_cross_entropy_nan_and_large_reduction():
    r = rng(12)
    shape = (700, 3, 3, 1)  # 2100 positions folded by one threadgroup of 100 threads (4 simd-groups, last partial)
    logits = randn(r, *shape, scale=2.0)
    labels = _labels(r, shape, True)
    p = _sce_params(shape, True, None, "mean", 0.1)
    probs, loss = _sce_forward(logits, labels, None, p, 32)
    for reduction in ("sum", "mean"):
        ref, _ = mnn.ops.softmax_cross_entropy_forward(logits, labels, None, reduction, 0.1)
        pr = _sce_params(shape, True, None, reduction, 0.1)
        assert_close(_sce_reduce(loss, pr, 100), ref, rtol=F32, what=f"{reduction} of 2100")
    # One NaN logit: its position's probabilities and loss are NaN, the others finite; sums are NaN.
    logits[5, 1, 2, 0] = np.nan
    ref, state = mnn.ops.softmax_cross_entropy_forward(logits, labels, None, "none", 0.1)
    for probs, loss in (_sce_forward(logits, labels, None, p, 32), _sce_forward_simd(logits, labels, None, p, 256)):
        assert np.isnan(probs[5, :, 2, 0]).all() and np.isnan(loss[5 * 3 + 2])
        assert np.isfinite(np.delete(loss, 5 * 3 + 2)).all()
        assert_close(probs, state.probs, rtol=F32)
        assert_close(loss.reshape(ref.shape), ref, rtol=F32)
    assert np.isnan(_sce_reduce(loss, p, 64))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_zero_target_at_minus_inf(dtype):
    """A -inf logit where the target is 0: probability 0, and 0 * log(0) counts as 0 (finite loss)."""
    r = rng(13)
    shape = (5, 11)
    logits = randn(r, *shape, dtype=dtype)
    labels = _labels(r, shape, False)
    labels[2] = 0.0
    labels[2, 4] = 1.0
    logits[2, 6] = -np.inf
    p = _sce_params(shape, False, None, "none", 0.0)
    ref, state = mnn.ops.softmax_cross_entropy_forward(logits, labels, None, "none", 0.0)
    for probs, loss in (_sce_forward(logits, labels, None, p, 32), _sce_forward_simd(logits, labels, None, p, 64)):
        assert probs[2, 6] == 0.0 and np.isfinite(loss).all()
        assert_close(probs, state.probs, rtol=F32)
        assert_close(loss, ref, rtol=F32)


# ---------------------------------------------------------------- optimizers

SIZE, TG, STEPS = 203, 64, 3
COMMON = [dict(), dict(weight_decay=0.01), dict(weight_decay=0.05, regularization="l1"),
          dict(gradient_rescale=0.5, gradient_clip=(-0.3, 0.4)), dict(weight_decay=0.2, regularization="none")]


def _problem(r, dtype, nstate):
    w = randn(r, SIZE, dtype=dtype)
    w[0] = 0.0  # sign(0) = 0 for L1
    state = [np.abs(randn(r, SIZE)) * 0.1 for _ in range(nstate)]
    grads = [randn(r, SIZE, dtype=dtype) for _ in range(STEPS)]
    grads[1][7] = np.nan  # NaN propagates into the weight and the state
    return w, state, grads


def _compare(w, w_ref, state, state_ref, dtype, what):
    assert_close(w, w_ref, dtype, what=f"{what}: weights")
    for k, (a, b) in enumerate(zip(state, state_ref)):
        assert_close(a, b, np.float32, rtol=2e-5, what=f"{what}: state {k}")
    assert np.isnan(w[7]) and np.isfinite(np.delete(w.astype(np.float32), 7)).all()


def _dispatch_step(kernel, w, g, state, params):
    bufs = [w, g] + state + [params, np.uint32(SIZE)]
    lib("optimizer").dispatch(kernel, bufs, SIZE, TG)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("common", range(len(COMMON)))
@pytest.mark.parametrize("mode", ["plain", "momentum", "nesterov", "nesterov_no_buffer"])
def test_sgd(mode, common, dtype):
    r = rng(20 + common)
    opts = dict(momentum=0.0 if mode in ("plain", "nesterov_no_buffer") else 0.9, nesterov="nesterov" in mode,
                learning_rate=0.05, **COMMON[common])
    has_buffer = mode in ("momentum", "nesterov")
    w, state, grads = _problem(r, dtype, 1)
    w_ref, v_ref = w.copy(), state[0].copy()
    for step in range(STEPS):
        mnn.ops.sgd_step(w_ref, grads[step], v_ref if has_buffer else None, **opts)
        # Without a momentum buffer the kernel must not touch the (still bound) buffer 2.
        _dispatch_step(f"sgd_step_{SUFFIX[dtype]}", w, grads[step], state, sgd_params(has_buffer, **opts))
    _compare(w, w_ref, state, [v_ref], dtype, f"sgd {mode}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("common", range(len(COMMON)))
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam(amsgrad, common, dtype):
    r = rng(30 + common)
    opts = dict(learning_rate=0.01, beta1=0.8, beta2=0.99, epsilon=1e-6, amsgrad=amsgrad, **COMMON[common])
    w, state, grads = _problem(r, dtype, 3)
    state[2] = state[1] * 1.5  # v_max above v in places
    w_ref, ref = w.copy(), [s.copy() for s in state]
    for step in range(1, STEPS + 1):
        mnn.ops.adam_step(w_ref, grads[step - 1], ref[0], ref[1], step, v_max=ref[2] if amsgrad else None, **opts)
        _dispatch_step(f"adam_step_{SUFFIX[dtype]}", w, grads[step - 1], state, adam_params(step, **opts))
    _compare(w, w_ref, state, ref, dtype, f"adam amsgrad={amsgrad}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("common", range(len(COMMON)))
def test_rmsprop(common, dtype):
    r = rng(40 + common)
    opts = dict(learning_rate=0.01, decay=0.8, epsilon=1e-6, **COMMON[common])
    w, state, grads = _problem(r, dtype, 1)
    w_ref, ref = w.copy(), [state[0].copy()]
    for step in range(STEPS):
        mnn.ops.rmsprop_step(w_ref, grads[step], ref[0], **opts)
        _dispatch_step(f"rmsprop_step_{SUFFIX[dtype]}", w, grads[step], state, rmsprop_params(**opts))
    _compare(w, w_ref, state, ref, dtype, "rmsprop")


# Multi-tensor: three tensors packed into one buffer each for weights, gradients and state, at
# different offsets in each; the 150-element tensor is split into two ranges.
MANY_SIZES = (37, 150, 5)


def _pack(arrays, gap, dtype):
    offsets, total = [], 0
    for a in arrays:
        total += gap
        offsets.append(total)
        total += a.size
    buf = np.full(total + gap, 99.0, dtype)  # gaps hold a sentinel that must stay untouched
    for o, a in zip(offsets, arrays):
        buf[o : o + a.size] = a.reshape(-1)
    return buf, offsets


def _ranges(w_off, g_off, s_off):
    rows = []
    for t, size in enumerate(MANY_SIZES):
        parts = [(0, 100), (100, size - 100)] if size > 100 else [(0, size)]
        rows += [(w_off[t] + a, g_off[t] + a, s_off[t] + a, n) for a, n in parts]
    return np.array(rows, np.uint32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", ["sgd", "adam", "rmsprop"])
def test_step_many(opt, dtype):
    r = rng(50)
    nstate = {"sgd": 1, "adam": 3, "rmsprop": 1}[opt]
    ws = [randn(r, n, dtype=dtype) for n in MANY_SIZES]
    gs = [[randn(r, n, dtype=dtype) for n in MANY_SIZES] for _ in range(2)]
    ss = [[np.abs(randn(r, n)) * 0.1 for n in MANY_SIZES] for _ in range(nstate)]
    gs[0][1][120] = np.nan  # in the second range of the split tensor
    w, w_off = _pack(ws, 3, dtype)
    state = [_pack(s, 1, np.float32)[0] for s in ss]
    s_off = _pack(ss[0], 1, np.float32)[1]
    ref_w, ref_s = [a.copy() for a in ws], [[a.copy() for a in s] for s in ss]
    common = dict(weight_decay=0.01, gradient_clip=(-1.0, 1.0))
    for step in range(1, 3):
        g, g_off = _pack(gs[step - 1], 5, dtype)
        ranges = _ranges(w_off, g_off, s_off)
        if opt == "sgd":
            opts = dict(learning_rate=0.05, momentum=0.9, nesterov=True, **common)
            mnn.ops.sgd_step_many(ref_w, gs[step - 1], ref_s[0], **opts)
            params = sgd_params(True, **opts)
        elif opt == "adam":
            opts = dict(learning_rate=0.01, amsgrad=True, **common)
            mnn.ops.adam_step_many(ref_w, gs[step - 1], ref_s[0], ref_s[1], step, v_max=ref_s[2], **opts)
            params = adam_params(step, **opts)
        else:
            opts = dict(learning_rate=0.01, decay=0.7, **common)
            mnn.ops.rmsprop_step_many(ref_w, gs[step - 1], ref_s[0], **opts)
            params = rmsprop_params(**opts)
        # 48 threads per threadgroup: ranges of 100, 50, 37 and 5 elements.
        lib("optimizer").dispatch(f"{opt}_step_many_{SUFFIX[dtype]}",
                                  [w, g] + state + [params, ranges, np.uint32(len(ranges))], len(ranges) * 48, 48)
    for t, o in enumerate(w_off):
        assert_close(w[o : o + MANY_SIZES[t]], ref_w[t], dtype, what=f"{opt} many: weights {t}")
        for k in range(nstate):
            so = s_off[t]
            assert_close(state[k][so : so + MANY_SIZES[t]], ref_s[k][t], np.float32, rtol=2e-5,
                         what=f"{opt} many: state {k} of tensor {t}")
    assert np.isnan(w[w_off[1] + 120])
    mask = np.ones(w.size, bool)
    for t, o in enumerate(w_off):
        mask[o : o + MANY_SIZES[t]] = False
    assert (w[mask] == 99.0).all(), "weights outside the ranges changed"


# ---------------------------------------------------------------- add


@pytest.mark.parametrize("dtype", DTYPES)
def test_add(dtype):
    r = rng(60)
    a, b = randn(r, 5, 67, dtype=dtype), randn(r, 5, 67, dtype=dtype)  # 335 elements
    a[0, 0], b[0, 1], a[1, 2], b[1, 2] = np.nan, np.inf, np.inf, -np.inf
    y, = run_both_schedules(lib("arithmetic"), f"add_forward_{SUFFIX[dtype]}", [a, b, ("out", 0), np.uint32(a.size)],
                            [a], a.size, 64)
    # The CPU backend's add: float32 sum, rounded once to the storage dtype.
    with np.errstate(invalid="ignore"):  # inf + -inf
        ref = (a.astype(np.float32) + b.astype(np.float32)).astype(dtype)
    np.testing.assert_array_equal(y, ref)  # exact, NaN where the reference has NaN


@pytest.mark.parametrize("dtype", DTYPES)
def test_learning_rate_scales_run_as_scaled_params(dtype):
    # The host runs each group of equal learning_rate_scales with learning_rate * scale (and
    # Adam's lr_t from it): the kernels given those params match the CPU's *_many with scales.
    r = rng(60)
    scales = [1.0, 0.25, 0.0]
    opts = dict(learning_rate=0.02, beta1=0.8, beta2=0.99, epsilon=1e-6, weight_decay=0.05, regularization="l1")
    ws = [randn(r, SIZE, dtype=dtype) for _ in scales]
    ms = [np.abs(randn(r, SIZE)) * 0.1 for _ in scales]
    vs = [np.abs(randn(r, SIZE)) * 0.1 for _ in scales]
    w_ref, m_ref, v_ref = [w.copy() for w in ws], [m.copy() for m in ms], [v.copy() for v in vs]
    for step in range(1, STEPS + 1):
        gs = [randn(r, SIZE, dtype=dtype) for _ in scales]
        mnn.ops.adam_step_many(w_ref, gs, m_ref, v_ref, step, learning_rate_scales=scales, **opts)
        for i, sc in enumerate(scales):
            p = adam_params(step, **{**opts, "learning_rate": opts["learning_rate"] * sc})
            _dispatch_step(f"adam_step_{SUFFIX[dtype]}", ws[i], gs[i], [ms[i], vs[i], vs[i].copy()], p)
    for i in range(len(scales)):
        assert_close(ws[i], w_ref[i], dtype, what=f"weights[{i}]")
        assert_close(ms[i], m_ref[i], np.float32, rtol=2e-5, what=f"m[{i}]")
        assert_close(vs[i], v_ref[i], np.float32, rtol=2e-5, what=f"v[{i}]")
