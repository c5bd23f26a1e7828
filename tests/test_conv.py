"""Convolution: forward and gradients against a numpy reference written from the
definition, finite differences (float64 reference and the kernel's own forward),
float16 with float and half accumulation, groups, stride, dilation, asymmetric
padding, bad input and NaN propagation."""

import numpy as np
import pytest
from conv_family import (
    check_bad_calls,
    check_nan_reaches_reference_outputs,
    check_pytorch_agrees,
    check_tensor_in_tensor_out,
)

import metalnn as mnn

from helpers import assert_close, finite_difference, randn, rng

ops = mnn.ops


def _geom(stride, padding, dilation):
    sh, sw = (stride, stride) if np.isscalar(stride) else stride
    dh, dw = (dilation, dilation) if np.isscalar(dilation) else dilation
    if np.isscalar(padding):
        pad = (padding,) * 4
    elif len(padding) == 2:
        pad = (padding[0], padding[0], padding[1], padding[1])
    else:
        pad = tuple(padding)
    return (sh, sw), pad, (dh, dw)


def _out_size(H, W, kH, kW, stride, padding, dilation):
    (sh, sw), (t, b, l, r), (dh, dw) = _geom(stride, padding, dilation)
    return (H + t + b - dh * (kH - 1) - 1) // sh + 1, (W + l + r - dw * (kW - 1) - 1) // sw + 1


def _windows(x, w_shape, stride, padding, dilation):
    """Yields (i, j, slices) where xp[:, :, slices] is the (kH, kW) window of output (i, j)."""
    N, C, H, W = x.shape
    _, _, kH, kW = w_shape
    (sh, sw), (t, b, l, r), (dh, dw) = _geom(stride, padding, dilation)
    Ho, Wo = _out_size(H, W, kH, kW, stride, padding, dilation)
    for i in range(Ho):
        for j in range(Wo):
            rows = slice(i * sh, i * sh + dh * (kH - 1) + 1, dh)
            cols = slice(j * sw, j * sw + dw * (kW - 1) + 1, dw)
            yield i, j, (rows, cols)


def _pad(x, padding):
    _, (t, b, l, r), _ = _geom(1, padding, 1)
    N, C, H, W = x.shape
    xp = np.zeros((N, C, H + t + b, W + l + r), dtype=np.float64)
    xp[:, :, t:t + H, l:l + W] = x
    return xp, (t, l)


def conv_ref(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """y[n, o, i, j] = bias[o] + sum_{c, kh, kw} w[o, c, kh, kw]
                                   * xpad[n, g*Cg + c, i*sh + kh*dh, j*sw + kw*dw]."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    N, C, H, W = x.shape
    O, Cg, kH, kW = w.shape
    Og = O // groups
    (sh, sw), _, (dh, dw) = _geom(stride, padding, dilation)
    xp, _ = _pad(x, padding)
    Ho, Wo = _out_size(H, W, kH, kW, stride, padding, dilation)
    y = np.zeros((N, O, Ho, Wo))
    for kh in range(kH):
        for kw in range(kW):
            # tap[n, c, i, j] = xpad[n, c, i*sh + kh*dh, j*sw + kw*dw]
            rows = slice(kh * dh, kh * dh + sh * (Ho - 1) + 1, sh)
            cols = slice(kw * dw, kw * dw + sw * (Wo - 1) + 1, sw)
            tap = xp[:, :, rows, cols]
            for g in range(groups):
                y[:, g * Og:(g + 1) * Og] += np.einsum(
                    "nchw,oc->nohw", tap[:, g * Cg:(g + 1) * Cg], w[g * Og:(g + 1) * Og, :, kh, kw])
    if bias is not None:
        y += np.asarray(bias, np.float64)[None, :, None, None]
    return y


def conv_grads_ref(dy, x, w, stride=1, padding=0, dilation=1, groups=1):
    """(dx, dw, db) of L = sum(y * dy), scattering each window's contribution back."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    dy = np.asarray(dy, np.float64)
    N, C, H, W = x.shape
    O, Cg, kH, kW = w.shape
    Og = O // groups
    xp, (t, l) = _pad(x, padding)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for i, j, (si, sj) in _windows(x, w.shape, stride, padding, dilation):
        for o in range(O):
            g = o // Og
            d = dy[:, o, i, j]
            dxp[:, g * Cg:(g + 1) * Cg, si, sj] += d[:, None, None, None] * w[o]
            dw[o] += np.einsum("n,nckl->ckl", d, xp[:, g * Cg:(g + 1) * Cg, si, sj])
    return dxp[:, :, t:t + H, l:l + W], dw, dy.sum(axis=(0, 2, 3))


def conv_half_ref(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Half accumulation: acc = f16(acc + x*w) in the order (c, kh, kw), padding taps skipped,
    then f16(acc + bias); products and sums in float32 as the kernel does."""
    x = np.asarray(x, np.float16)
    w = np.asarray(w, np.float16)
    N, C, H, W = x.shape
    O, Cg, kH, kW = w.shape
    Og = O // groups
    (sh, sw), (t, b, l, r), (dh, dw) = _geom(stride, padding, dilation)
    Ho, Wo = _out_size(H, W, kH, kW, stride, padding, dilation)
    xp = np.zeros((N, C, H + t + b, W + l + r), np.float32)
    xp[:, :, t:t + H, l:l + W] = x.astype(np.float32)
    inside = np.zeros((H + t + b, W + l + r), bool)
    inside[t:t + H, l:l + W] = True
    chan = (np.arange(O) // Og) * Cg  # first input channel of each output channel's group
    acc = np.zeros((N, O, Ho, Wo), np.float32)
    for c in range(Cg):
        for kh in range(kH):
            for kw in range(kW):
                rows = np.arange(Ho) * sh + kh * dh
                cols = np.arange(Wo) * sw + kw * dw
                tap = xp[:, chan + c][:, :, rows][:, :, :, cols]  # (N, O, Ho, Wo)
                mask = inside[rows][:, cols]
                prod = tap * w[:, c, kh, kw].astype(np.float32)[None, :, None, None]
                acc = np.where(mask, (acc + prod).astype(np.float16).astype(np.float32), acc)
    if bias is not None:
        b32 = np.asarray(bias, np.float16).astype(np.float32)[None, :, None, None]
        acc = (acc + b32).astype(np.float16)
    return acc.astype(np.float16)


def conv_backward_input_half_ref(dy, w, input_shape, stride=1, padding=0, dilation=1, groups=1):
    """Half accumulation of dx: acc = f16(acc + dy*w) in the order (o in group, kh, kw)."""
    dy = np.asarray(dy, np.float16).astype(np.float32)
    w = np.asarray(w, np.float16).astype(np.float32)
    N, C, H, W = input_shape
    O, Cg, kH, kW = w.shape
    Og = O // groups
    (sh, sw), (t, b, l, r), (dh, dw) = _geom(stride, padding, dilation)
    Ho, Wo = dy.shape[2:]
    g = np.arange(C) // Cg
    acc = np.zeros((N, C, H, W), np.float32)
    for ol in range(Og):
        o = g * Og + ol  # output channel per input channel
        for kh in range(kH):
            ti = np.arange(H) + t - kh * dh
            ok_i = (ti >= 0) & (ti % sh == 0) & (ti // sh < Ho)
            ii = np.where(ok_i, ti // sh, 0)
            for kw in range(kW):
                tj = np.arange(W) + l - kw * dw
                ok_j = (tj >= 0) & (tj % sw == 0) & (tj // sw < Wo)
                jj = np.where(ok_j, tj // sw, 0)
                tap = dy[:, o][:, :, ii][:, :, :, jj]  # (N, C, H, W)
                wv = w[o, np.arange(C) % Cg, kh, kw][None, :, None, None]
                mask = ok_i[:, None] & ok_j[None, :]
                acc = np.where(mask, (acc + tap * wv).astype(np.float16).astype(np.float32), acc)
    return acc.astype(np.float16)


# (N, C, H, W, O, kH, kW, stride, padding, dilation, groups)
CASES = [
    (3, 5, 11, 9, 7, 3, 2, 1, 0, 1, 1),
    (3, 5, 11, 9, 7, 3, 2, 1, (1, 1), 1, 1),
    (2, 5, 11, 9, 7, 3, 3, 2, (1, 2), 1, 1),
    (2, 3, 10, 9, 5, 3, 3, (2, 1), 1, 2, 1),
    (2, 4, 8, 7, 6, 4, 4, 1, (1, 2, 2, 1), 1, 1),  # 'same' with an even kernel
    (2, 4, 9, 8, 6, 3, 2, 1, (0, 3, 2, 0), (1, 2), 2),
    (3, 6, 7, 9, 6, 3, 3, 1, 1, 1, 6),  # depthwise
    (2, 4, 10, 9, 8, 3, 3, (2, 1), (2, 2, 3, 3), (2, 3), 4),  # depthwise x2 multiplier, dilated
    (2, 6, 7, 5, 12, 2, 3, 2, (2, 0, 1, 1), 1, 3),
    (3, 6, 5, 7, 4, 1, 1, 1, 0, 1, 2),  # pointwise: no im2col
    (2, 5, 6, 7, 3, 1, 1, 2, 1, 1, 1),
]

# Wider channels: large enough that the kernels take their other strategies (stride-1
# backward_input as a flipped-kernel forward, transposed products).
WIDE_CASES = [
    (2, 32, 9, 10, 32, 3, 2, 1, (2, 0, 1, 2), (2, 3), 2),
    (2, 32, 9, 10, 24, 3, 3, 1, (1, 2, 2, 1), 2, 2),
    (3, 40, 8, 9, 40, 3, 3, 1, (0, 2, 2, 1), 1, 1),
    (2, 64, 7, 7, 64, 3, 3, 1, 1, 1, 2),
]


def _make(case, dtype=np.float32, seed=0):
    N, C, H, W, O, kH, kW, stride, padding, dilation, groups = case
    r = rng(seed)
    x = randn(r, N, C, H, W, dtype=dtype)
    w = randn(r, O, C // groups, kH, kW, dtype=dtype, scale=0.5)
    b = randn(r, O, dtype=dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return x, w, b, kw


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("case", CASES + WIDE_CASES)
def test_forward_matches_reference(case, with_bias, dtype):
    x, w, b, kw = _make(case, dtype)
    bias = b if with_bias else None
    x0, w0, b0 = x.copy(), w.copy(), b.copy()
    y = ops.conv2d_forward(x, w, bias, **kw)
    ref = conv_ref(x, w, bias, **kw)
    assert y.dtype == dtype and y.shape == ref.shape
    if dtype == np.float32:
        assert_close(y, ref, atol=1e-5 * max(1, np.abs(ref).max()), rtol=1e-5)
    else:  # float32 sums rounded once to half
        assert_close(y, ref, atol=2e-3 * max(1, np.abs(ref).max()), rtol=1e-3)
    for a, a0 in ((x, x0), (w, w0), (b, b0)):
        np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("case", CASES + WIDE_CASES)
def test_backward_matches_reference(case, dtype):
    x, w, b, kw = _make(case, dtype, seed=1)
    y = ops.conv2d_forward(x, w, b, **kw)
    dy = randn(rng(2), *y.shape, dtype=dtype)
    dx = ops.conv2d_backward_input(dy, w, x.shape, **kw)
    dw = ops.conv2d_backward_weight(dy, x, w.shape, **kw)
    db = ops.conv2d_backward_bias(dy)
    assert dx.dtype == dw.dtype == db.dtype == dtype
    rdx, rdw, rdb = conv_grads_ref(dy, x, w, **kw)
    tol = 1e-5 if dtype == np.float32 else 2e-3
    for got, ref, name in ((dx, rdx, "dx"), (dw, rdw, "dw"), (db, rdb, "db")):
        assert_close(got, ref, atol=tol * max(1, np.abs(ref).max()), rtol=tol, what=name)


@pytest.mark.parametrize("case", [CASES[2], CASES[4], CASES[5], CASES[7], CASES[9]])
def test_gradients_match_finite_differences(case):
    x, w, b, kw = _make(case, seed=3)
    x, w = x[:2, :, :6, :6].copy(), w  # small enough for element-wise differences
    y = conv_ref(x, w, b, **kw)
    dy = randn(rng(4), *y.shape)
    dx = ops.conv2d_backward_input(dy, w, x.shape, **kw)
    dw = ops.conv2d_backward_weight(dy, x, w.shape, **kw)
    db = ops.conv2d_backward_bias(dy)
    # float64 reference forward
    tol = dict(atol=1e-4, rtol=1e-4)
    assert_close(dx, finite_difference(lambda v: conv_ref(v, w, b, **kw), x, dy), **tol)
    assert_close(dw, finite_difference(lambda v: conv_ref(x, v, b, **kw), w, dy), **tol)
    assert_close(db, finite_difference(lambda v: conv_ref(x, w, v, **kw), b, dy), **tol)
    # the kernel's own forward, in float32
    def fwd(xv, wv, bv):
        f32 = np.float32
        return ops.conv2d_forward(xv.astype(f32), wv.astype(f32), bv.astype(f32), **kw)

    num = finite_difference(lambda v: fwd(v, w, b), x, dy, eps=1e-2)
    assert_close(dx, num, atol=2e-3, rtol=2e-3, what="dx (kernel forward)")
    num = finite_difference(lambda v: fwd(x, v, b), w, dy, eps=1e-2)
    assert_close(dw, num, atol=2e-3, rtol=2e-3, what="dw (kernel forward)")
    num = finite_difference(lambda v: fwd(x, w, v), b, dy, eps=1e-2)
    assert_close(db, num, atol=2e-3, rtol=2e-3, what="db (kernel forward)")


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[3], CASES[5], CASES[6], CASES[7]])
def test_half_accumulation_matches_float16_reference(case, with_bias):
    x, w, b, kw = _make(case, np.float16, seed=5)
    bias = b if with_bias else None
    y = ops.conv2d_forward(x, w, bias, accumulation="half", **kw)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, conv_half_ref(x, w, bias, **kw))
    dy = randn(rng(6), *y.shape, dtype=np.float16)
    dx = ops.conv2d_backward_input(dy, w, x.shape, accumulation="half", **kw)
    np.testing.assert_array_equal(dx, conv_backward_input_half_ref(dy, w, x.shape, **kw))


def test_half_accumulation_differs_from_float_on_long_sums():
    r = rng(7)
    x = (r.random((2, 64, 6, 6)) + 0.5).astype(np.float16)
    w = (r.random((3, 64, 3, 3)) + 0.5).astype(np.float16)
    yh = ops.conv2d_forward(x, w, padding=1, accumulation="half")
    yf = ops.conv2d_forward(x, w, padding=1)
    ref = conv_ref(x, w, padding=1)
    assert np.any(yh != yf)
    # rounding every step of ~600 positive terms loses a few ulps, not more
    assert_close(yh, ref, atol=0, rtol=2e-2)
    assert np.abs(yf.astype(np.float64) - ref).max() < np.abs(yh.astype(np.float64) - ref).max()


@pytest.mark.parametrize("n", [1, 9])
def test_mnist_like_shapes_and_threads(n):
    """Batches split over threads (single images: split inside the GEMM) match the reference."""
    r = rng(8)
    x = randn(r, n, 8, 14, 14)
    w = randn(r, 64, 8, 5, 5, scale=0.2)
    b = randn(r, 64)
    # These shapes run Winograd by default (error ~5e-6 of the largest |value|, see
    # test_conv_winograd.py); im2col meets 1e-6.
    def close(got, ref):
        assert_close(got, ref, atol=2e-5 * max(1.0, np.abs(ref).max()), rtol=1e-5)
    y = ops.conv2d_forward(x, w, b, padding=2)
    close(y, conv_ref(x, w, b, padding=2))
    dy = randn(r, *y.shape)
    rdx, rdw, rdb = conv_grads_ref(dy, x, w, padding=2)
    close(ops.conv2d_backward_input(dy, w, x.shape, padding=2), rdx)
    close(ops.conv2d_backward_weight(dy, x, w.shape, padding=2), rdw)
    assert_close(ops.conv2d_backward_bias(dy), rdb, atol=1e-4, rtol=1e-5)


def test_pytorch_agrees_if_installed():
    x, w, b, kw = _make((4, 6, 13, 12, 8, 3, 3, 2, 1, 2, 2), seed=9)  # stride, padding, dilation, groups 2, 1, 2, 2
    check_pytorch_agrees("conv2d", x, w, b, kw, dy_seed=10)


def test_nan_propagates_to_dependent_outputs():
    x, w, b, kw = _make(CASES[2], seed=11)
    x[1, 2, 5, 4] = np.nan
    y = check_nan_reaches_reference_outputs("conv2d", conv_ref, x, w, b, kw)
    dy = np.zeros_like(y)
    dy[0, 3, 2, 1] = np.nan
    dx = ops.conv2d_backward_input(dy, w, x.shape, **kw)
    rdx, _, _ = conv_grads_ref(dy, np.nan_to_num(x), w, **kw)
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(rdx))
    assert np.isnan(dx[0]).any() and not np.isnan(dx[1]).any()
    assert np.isnan(ops.conv2d_backward_bias(dy)[3])
    dw = ops.conv2d_backward_weight(np.ones_like(y), x, w.shape, **kw)
    assert np.isnan(dw).any()


def test_tensor_in_tensor_out():
    x, w, b, kw = _make(CASES[1], seed=12)
    check_tensor_in_tensor_out("conv2d", conv_ref, x, w, b, kw)


def _bad_calls():
    x = np.ones((2, 4, 6, 6), np.float32)
    w = np.ones((6, 2, 3, 3), np.float32)
    b = np.ones(6, np.float32)
    dy = np.ones((2, 6, 4, 4), np.float32)
    f, bi, bw = ops.conv2d_forward, ops.conv2d_backward_input, ops.conv2d_backward_weight
    F, B, W = "conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight"
    g2 = dict(groups=2)
    return (x, w, b, dy), [
        (ValueError, F, "x", lambda: f(x[0], w, **g2)),
        (ValueError, F, "weight", lambda: f(x, w[0], **g2)),
        (ValueError, F, "x", lambda: f(x, w)),  # C=4 != groups*weight.shape[1]=2
        (ValueError, F, "groups", lambda: f(x, np.ones((5, 1, 3, 3), np.float32), groups=4)),
        (ValueError, F, "groups", lambda: f(x, w, groups=0)),
        (ValueError, F, "stride", lambda: f(x, w, stride=0, **g2)),
        (ValueError, F, "stride", lambda: f(x, w, stride=(1, -1), **g2)),
        (ValueError, F, "stride", lambda: f(x, w, stride=(1, 1, 1), **g2)),
        (ValueError, F, "dilation", lambda: f(x, w, dilation=0, **g2)),
        (ValueError, F, "padding", lambda: f(x, w, padding=-1, **g2)),
        (ValueError, F, "padding", lambda: f(x, w, padding=(1, 1, 1), **g2)),
        (ValueError, F, "padding", lambda: f(x, w, padding=(0, 0, -1, 0), **g2)),
        (ValueError, F, "output size", lambda: f(x, w, dilation=3, **g2)),
        (ValueError, F, "x", lambda: f(np.ones((2, 4, 0, 6), np.float32), w, **g2)),
        (TypeError, F, "weight", lambda: f(x, w.astype(np.float16), **g2)),
        (TypeError, F, "bias", lambda: f(x, w, b.astype(np.float16), **g2)),
        (TypeError, F, "x", lambda: f(x.astype(np.float64), w, **g2)),
        (TypeError, F, "x", lambda: f(x.astype(np.int32), w.astype(np.int32), **g2)),
        (ValueError, F, "x", lambda: f(np.ones((2, 4, 6, 12), np.float32)[..., ::2], w, **g2)),
        (ValueError, F, "weight", lambda: f(x, np.ones((6, 2, 3, 6), np.float32)[..., ::2], **g2)),
        (ValueError, F, "accumulation", lambda: f(x, w, accumulation="double", **g2)),
        (ValueError, F, "accumulation", lambda: f(x, w, accumulation="half", **g2)),
        (ValueError, F, "bias", lambda: f(x, w, np.ones(5, np.float32), **g2)),
        (ValueError, F, "bias", lambda: f(x, w, np.ones((6, 1), np.float32), **g2)),
        (ValueError, B, "dy", lambda: bi(dy[:, :, :3], w, x.shape, **g2)),
        (ValueError, B, "input_shape", lambda: bi(dy, w, (2, 4, 6), **g2)),
        (ValueError, B, "input_shape", lambda: bi(dy, w, (2, 5, 6, 6), **g2)),
        (TypeError, B, "weight", lambda: bi(dy, w.astype(np.float16), x.shape, **g2)),
        (ValueError, B, "accumulation", lambda: bi(dy, w, x.shape, accumulation="half", **g2)),
        (ValueError, W, "dy", lambda: bw(dy, x, w.shape, stride=2, **g2)),
        (ValueError, W, "weight_shape", lambda: bw(dy, x, (6, 2, 3), **g2)),
        (ValueError, W, "x", lambda: bw(dy, x, (6, 3, 3, 3), **g2)),
        (TypeError, W, "x", lambda: bw(dy, x.astype(np.float16), w.shape, **g2)),
        (ValueError, "conv2d_backward_bias", "dy", lambda: ops.conv2d_backward_bias(dy[0])),
    ]


def test_bad_input_raises_and_leaves_arrays_untouched():
    arrays, calls = _bad_calls()
    check_bad_calls(arrays, calls)
    # the same arrays are valid with the right options
    x, w, b, dy = arrays
    assert ops.conv2d_forward(x, w, b, groups=2).shape == dy.shape
