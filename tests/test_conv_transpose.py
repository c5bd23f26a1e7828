"""Transposed convolution: forward and gradients against a numpy reference written from the
definition (each input pixel scatters its kernel-weighted copy into the output), finite
differences (float64 reference and the kernel's own forward), the adjoint identity with
conv2d, groups / depthwise / dilation / stride / asymmetric padding / output padding, float16,
the fused neuron, PyTorch where installed, bad input and NaN propagation."""

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


def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def _pads(padding):
    if np.isscalar(padding):
        return (padding,) * 4
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return tuple(padding)


def _canvas(x_shape, w_shape, stride, dilation, output_padding):
    """Height/width of the unpadded output: every scattered tap lands inside it."""
    (sh, sw), (dh, dw), (oph, opw) = _pair(stride), _pair(dilation), _pair(output_padding)
    H, W = x_shape[2:]
    kH, kW = w_shape[2:]
    return (H - 1) * sh + dh * (kH - 1) + 1 + oph, (W - 1) * sw + dw * (kW - 1) + 1 + opw


def _taps(x_shape, w_shape, stride, dilation):
    """(kh, kw, rows, cols): canvas positions of tap (kh, kw) for every input pixel."""
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    H, W = x_shape[2:]
    kH, kW = w_shape[2:]
    for kh in range(kH):
        for kw in range(kW):
            yield kh, kw, slice(kh * dh, kh * dh + (H - 1) * sh + 1, sh), slice(kw * dw, kw * dw + (W - 1) * sw + 1, sw)


def _layout(x, w, stride, padding, output_padding, dilation, groups):
    """(Cg, Og, (top, bottom, left, right), (Hc, Wc)): channels per group in and out, the
    padding and the unpadded output (canvas) size."""
    return x.shape[1] // groups, w.shape[1], _pads(padding), _canvas(x.shape, w.shape, stride, dilation, output_padding)


def convt_ref(x, w, bias=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """z[n, g*Og + o, i*sh - top + kh*dh, j*sw - left + kw*dw] += w[c, o, kh, kw] * x[n, c, i, j]."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    Cg, Og, (t, b, l, r), (Hc, Wc) = _layout(x, w, stride, padding, output_padding, dilation, groups)
    z = np.zeros((x.shape[0], Og * groups, Hc, Wc))
    for kh, kw, rows, cols in _taps(x.shape, w.shape, stride, dilation):
        for g in range(groups):
            z[:, g * Og:(g + 1) * Og, rows, cols] += np.einsum(
                "nchw,co->nohw", x[:, g * Cg:(g + 1) * Cg], w[g * Cg:(g + 1) * Cg, :, kh, kw])
    Ho, Wo = Hc - t - b, Wc - l - r
    z = z[:, :, t:t + Ho, l:l + Wo]
    if bias is not None:
        z = z + np.asarray(bias, np.float64)[None, :, None, None]
    return z


def convt_grads_ref(dy, x, w, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """(dx, dw, db) of L = sum(y * dy): each input pixel reads back the taps it wrote."""
    x, w, dy = (np.asarray(a, np.float64) for a in (x, w, dy))
    Cg, Og, (t, b, l, r), (Hc, Wc) = _layout(x, w, stride, padding, output_padding, dilation, groups)
    full = np.zeros((x.shape[0], Og * groups, Hc, Wc))
    full[:, :, t:t + dy.shape[2], l:l + dy.shape[3]] = dy
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for kh, kw, rows, cols in _taps(x.shape, w.shape, stride, dilation):
        for g in range(groups):
            tap = full[:, g * Og:(g + 1) * Og, rows, cols]  # (N, Og, H, W)
            dx[:, g * Cg:(g + 1) * Cg] += np.einsum("nohw,co->nchw", tap, w[g * Cg:(g + 1) * Cg, :, kh, kw])
            dw[g * Cg:(g + 1) * Cg, :, kh, kw] += np.einsum("nchw,nohw->co", x[:, g * Cg:(g + 1) * Cg], tap)
    return dx, dw, dy.sum(axis=(0, 2, 3))


# (N, C_in, H, W, C_out, kH, kW, stride, padding, output_padding, dilation, groups)
CASES = [
    (2, 3, 5, 4, 5, 3, 3, 1, 0, 0, 1, 1),
    (2, 4, 5, 6, 6, 3, 2, (2, 3), (1, 0), (1, 2), (1, 2), 2),
    (3, 5, 4, 5, 7, 4, 4, 2, 1, 1, 1, 1),  # the 2x upsampling layer of a decoder
    (2, 6, 3, 5, 6, 3, 3, 2, (1, 2, 0, 1), (1, 0), 1, 6),  # depthwise, asymmetric padding
    (1, 6, 4, 3, 9, 2, 3, (1, 2), 0, (0, 1), 2, 3),  # dilated, grouped
    (2, 4, 3, 3, 2, 1, 1, 3, 0, 2, 1, 2),  # pointwise with gaps: stride 3
]


def _make(case, dtype=np.float32, seed=0):
    N, C, H, W, O, kH, kW, stride, padding, output_padding, dilation, groups = case
    r = rng(seed)
    x = randn(r, N, C, H, W, dtype=dtype)
    w = randn(r, C, O // groups, kH, kW, dtype=dtype, scale=0.5)
    b = randn(r, O, dtype=dtype)
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups)
    return x, w, b, kw


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("case", CASES)
def test_forward_matches_reference(case, with_bias, dtype):
    x, w, b, kw = _make(case, dtype)
    bias = b if with_bias else None
    x0, w0, b0 = x.copy(), w.copy(), b.copy()
    y = ops.conv_transpose2d_forward(x, w, bias, **kw)
    ref = convt_ref(x, w, bias, **kw)
    assert y.dtype == dtype and y.shape == ref.shape
    # float16: the products are rounded before the bias is added (two roundings).
    assert_close(y, ref, dtype, rtol=None if dtype == np.float32 else 4e-3, what="forward")
    for a, a0 in ((x, x0), (w, w0), (b, b0)):
        np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("case", CASES)
def test_backward_matches_reference(case, dtype):
    x, w, b, kw = _make(case, dtype, seed=1)
    y = ops.conv_transpose2d_forward(x, w, b, **kw)
    dy = randn(rng(2), *y.shape, dtype=dtype)
    rdx, rdw, rdb = convt_grads_ref(dy, x, w, **kw)
    assert_close(ops.conv_transpose2d_backward_input(dy, w, x.shape, **kw), rdx, dtype, what="dx")
    assert_close(ops.conv_transpose2d_backward_weight(dy, x, w.shape, **kw), rdw, dtype, what="dw")
    assert_close(ops.conv_transpose2d_backward_bias(dy), rdb, dtype, what="db")


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[4]])
def test_gradients_match_finite_differences(case):
    x, w, b, kw = _make(case, seed=3)
    x, w = x[:1], w
    y = ops.conv_transpose2d_forward(x, w, b, **kw)
    dy = randn(rng(4), *y.shape)
    # float64 reference
    fdx = finite_difference(lambda v: convt_ref(v, w, b, **kw), x, dy)
    fdw = finite_difference(lambda v: convt_ref(x, v, b, **kw), w, dy)
    fdb = finite_difference(lambda v: convt_ref(x, w, v, **kw), b, dy)
    assert_close(ops.conv_transpose2d_backward_input(dy, w, x.shape, **kw), fdx, atol=1e-5, rtol=1e-5)
    assert_close(ops.conv_transpose2d_backward_weight(dy, x, w.shape, **kw), fdw, atol=1e-4, rtol=1e-5)
    assert_close(ops.conv_transpose2d_backward_bias(dy), fdb, atol=1e-4, rtol=1e-5)
    # the kernel's own forward (float32), a coarser step
    own = finite_difference(lambda v: ops.conv_transpose2d_forward(v.astype(np.float32), w, b, **kw), x, dy,
                            eps=1e-2)
    assert_close(ops.conv_transpose2d_backward_input(dy, w, x.shape, **kw), own, atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("case", CASES)
def test_adjoint_of_conv2d(case):
    # <conv_transpose(x), u> == <x, conv2d(u)> with the same weights: the definition.
    x, w, _, kw = _make(case, seed=5)
    y = ops.conv_transpose2d_forward(x, w, **kw)
    u = randn(rng(6), *y.shape)
    conv_kw = {k: v for k, v in kw.items() if k != "output_padding"}
    cu = ops.conv2d_forward(u, w, **conv_kw)
    assert cu.shape == x.shape
    lhs, rhs = float(np.sum(y.astype(np.float64) * u)), float(np.sum(x.astype(np.float64) * cu))
    assert abs(lhs - rhs) <= 1e-4 * max(1.0, abs(lhs))
    # and the forward is conv2d's input gradient
    np.testing.assert_allclose(y, ops.conv2d_backward_input(x, w, y.shape, **conv_kw), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("neuron,a,b", [("relu", None, None), ("tanh", 1.5, 0.5), ("leaky_relu", 0.2, None)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_fused_neuron_and_preactivation(neuron, a, b, dtype):
    x, w, bias, kw = _make(CASES[2], dtype, seed=7)
    y, z = ops.conv_transpose2d_forward(x, w, bias, neuron=neuron, neuron_a=a, neuron_b=b,
                                        return_preactivation=True, **kw)
    plain = ops.conv_transpose2d_forward(x, w, bias, **kw)
    np.testing.assert_array_equal(z, plain)
    # float16: y = f(z) from the unrounded z, so it may differ from f(half(z)) by one rounding
    assert_close(y, ops.neuron_forward(z, neuron, a, b), dtype, what="y = f(z)")
    y_only = ops.conv_transpose2d_forward(x, w, bias, neuron=neuron, neuron_a=a, neuron_b=b, **kw)
    np.testing.assert_array_equal(y_only, y)
    assert not np.array_equal(y, z)
    # without a bias the pre-activation is the products themselves
    y2, z2 = ops.conv_transpose2d_forward(x, w, neuron=neuron, neuron_a=a, neuron_b=b, return_preactivation=True,
                                          **kw)
    np.testing.assert_array_equal(z2, ops.conv_transpose2d_forward(x, w, **kw))
    assert_close(y2, ops.neuron_forward(z2, neuron, a, b), dtype, what="y = f(z) without bias")


def test_float16_close_to_float32_and_half_accumulation():
    x, w, b, kw = _make(CASES[2], np.float32, seed=8)
    y32 = ops.conv_transpose2d_forward(x, w, b, **kw)
    h = [a.astype(np.float16) for a in (x, w, b)]
    y16 = ops.conv_transpose2d_forward(*h, **kw)
    yh = ops.conv_transpose2d_forward(*h, accumulation="half", **kw)
    assert y16.dtype == yh.dtype == np.float16
    assert_close(y16, y32, np.float16, rtol=1e-2)
    assert_close(yh, y32, np.float16, rtol=2e-2)
    dy = randn(rng(9), *y32.shape)
    dx16 = ops.conv_transpose2d_backward_input(dy.astype(np.float16), h[1], x.shape, accumulation="half", **kw)
    assert_close(dx16, ops.conv_transpose2d_backward_input(dy, w, x.shape, **kw), np.float16, rtol=2e-2)


def test_pytorch_agrees_if_installed():
    case = (3, 6, 7, 6, 8, 3, 3, 2, 1, 1, 2, 2)  # stride, padding, output_padding, dilation, groups 2, 1, 1, 2, 2
    x, w, b, kw = _make(case, seed=10)
    check_pytorch_agrees("conv_transpose2d", x, w, b, kw, dy_seed=11)


def test_nan_propagates_to_dependent_outputs():
    x, w, b, kw = _make(CASES[0], seed=12)
    x[1, 2, 3, 1] = np.nan
    y = check_nan_reaches_reference_outputs("conv_transpose2d", convt_ref, x, w, b, kw)
    dy = np.zeros_like(y)
    dy[0, 3, 2, 1] = np.inf
    dx = ops.conv_transpose2d_backward_input(dy, w, x.shape, **kw)
    assert np.isinf(dx[0]).any() and np.isfinite(dx[1]).all()


def test_tensor_in_tensor_out():
    x, w, b, kw = _make(CASES[1], seed=13)
    check_tensor_in_tensor_out("conv_transpose2d", convt_ref, x, w, b, kw)


def _bad_calls():
    x = np.ones((2, 4, 5, 5), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)  # C_in 4, C_out 6 with groups=2
    b = np.ones(6, np.float32)
    dy = np.ones((2, 6, 11, 11), np.float32)  # stride 2
    f, bi, bw = ops.conv_transpose2d_forward, ops.conv_transpose2d_backward_input, ops.conv_transpose2d_backward_weight
    F, B, W = "conv_transpose2d_forward", "conv_transpose2d_backward_input", "conv_transpose2d_backward_weight"
    g = dict(groups=2, stride=2)
    return (x, w, b, dy), [
        (ValueError, F, "x", lambda: f(x[0], w, **g)),
        (ValueError, F, "weight", lambda: f(x, w[0], **g)),
        (ValueError, F, "channels", lambda: f(np.ones((2, 3, 5, 5), np.float32), w, **g)),
        (ValueError, F, "groups", lambda: f(x, w, groups=3)),
        (ValueError, F, "groups", lambda: f(x, w, groups=0)),
        (ValueError, F, "stride", lambda: f(x, w, stride=0, groups=2)),
        (ValueError, F, "output_padding", lambda: f(x, w, output_padding=2, **g)),
        (ValueError, F, "output_padding", lambda: f(x, w, output_padding=-1, **g)),
        (ValueError, F, "output_padding", lambda: f(x, w, output_padding=(0, 0, 0), **g)),
        (ValueError, F, "output_padding", lambda: f(x, w, output_padding=1, groups=2)),  # stride 1
        (ValueError, F, "padding", lambda: f(x, w, padding=-1, **g)),
        (ValueError, F, "dilation", lambda: f(x, w, dilation=0, **g)),
        (ValueError, F, "output size", lambda: f(np.ones((2, 4, 1, 1), np.float32), w, padding=2, groups=2)),
        (ValueError, F, "x", lambda: f(np.ones((2, 4, 0, 5), np.float32), w, **g)),
        (TypeError, F, "weight", lambda: f(x, w.astype(np.float16), **g)),
        (TypeError, F, "bias", lambda: f(x, w, b.astype(np.float16), **g)),
        (TypeError, F, "x", lambda: f(x.astype(np.float64), w, **g)),
        (TypeError, F, "x", lambda: f(x.astype(np.int32), w.astype(np.int32), **g)),
        (ValueError, F, "x", lambda: f(np.ones((2, 4, 5, 10), np.float32)[..., ::2], w, **g)),
        (ValueError, F, "accumulation", lambda: f(x, w, accumulation="double", **g)),
        (ValueError, F, "accumulation", lambda: f(x, w, accumulation="half", **g)),
        (ValueError, F, "bias", lambda: f(x, w, np.ones(4, np.float32), **g)),
        (ValueError, F, "neuron", lambda: f(x, w, neuron="swishy", **g)),
        (ValueError, B, "dy", lambda: bi(dy[:, :, :3], w, x.shape, **g)),
        (ValueError, B, "input_shape", lambda: bi(dy, w, (2, 4, 5), **g)),
        (ValueError, B, "input_shape", lambda: bi(dy, w, (2, 5, 5, 5), **g)),
        (TypeError, B, "weight", lambda: bi(dy, w.astype(np.float16), x.shape, **g)),
        (ValueError, W, "dy", lambda: bw(dy, x, w.shape, groups=2)),
        (ValueError, W, "weight_shape", lambda: bw(dy, x, (4, 3, 3), **g)),
        (ValueError, W, "x", lambda: bw(dy, x, (5, 3, 3, 3), **g)),
        (TypeError, W, "x", lambda: bw(dy, x.astype(np.float16), w.shape, **g)),
        (ValueError, "conv_transpose2d_backward_bias", "dy", lambda: ops.conv_transpose2d_backward_bias(dy[0])),
    ]


def test_bad_input_raises_and_leaves_arrays_untouched():
    arrays, calls = _bad_calls()
    check_bad_calls(arrays, calls)
    x, w, b, dy = arrays
    assert ops.conv_transpose2d_forward(x, w, b, groups=2, stride=2).shape == dy.shape
