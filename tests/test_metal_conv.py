"""conv.metal and linear.metal (tiled implicit-GEMM kernels) on the CPU emulator (tests/metal)
against the CPU backend (mnn.ops.conv2d_* / fully_connected_*): odd sizes that are not
multiples of the 32x32 tiles, groups 1 / 2 / depthwise, stride, dilation, asymmetric padding,
float32 and float16, half accumulation (bit-exact: same rounding order as the CPU), the fused
bias + neuron epilogue, and every dispatch repeated with threads reversed (race check)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import metalnn as mnn

from helpers import DTYPES, assert_close, randn, rng

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "metal"))
from harness import SUFFIX, lib, run_both_schedules, skip_without_clang  # noqa: E402
from params import NeuronParams  # noqa: E402
from params_conv import Conv2dParams, FullyConnectedParams  # noqa: E402

skip_without_clang()

NEURON_TYPES = ("none", "relu", "leaky_relu", "sigmoid", "hard_sigmoid", "tanh", "linear", "absolute", "softplus",
                "elu", "relun", "gelu")
TILE, TG = 32, (16, 16, 1)
ACCUMULATE = {"float": 0, "half": 1}


def run(library, kernel, buffers, outputs, grid, threadgroup=TG):
    """run_both_schedules with the tiled kernels' fixed threadgroup by default."""
    return run_both_schedules(library, kernel, buffers, outputs, grid, threadgroup)


def tiled_grid(rows: int, cols: int, depth: int = 1):
    return (-(-cols // TILE) * 16, -(-rows // TILE) * 16, depth)


# ---------------------------------------------------------------- convolution

# (N, C, H, W, O, groups, (kH, kW), stride, dilation, (top, bottom, left, right))
CONV_CASES = {
    "g1": (3, 5, 11, 9, 7, 1, (3, 2), (2, 2), (2, 2), (1, 2, 0, 1)),
    "g2": (2, 6, 11, 9, 10, 2, (3, 2), (2, 1), (1, 2), (2, 0, 1, 1)),
    "depthwise": (2, 5, 9, 7, 5, 5, (3, 3), (1, 2), (1, 1), (1, 1, 2, 0)),
    # depthwise with a channel multiplier of 2, dilated
    "depthwise_x2_dilated": (2, 4, 10, 9, 8, 4, (3, 3), (2, 1), (2, 3), (2, 2, 3, 3)),
    # K = 8*3*3 = 72 (several K tiles, a tail); 37 output channels: two row tiles
    "deep": (1, 8, 7, 6, 37, 1, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    "pointwise": (2, 3, 5, 7, 4, 1, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),
}


class Conv:
    def __init__(self, case, dtype, seed=0, accumulation="float", has_bias=True):
        n, c, h, w, o, g, k, s, d, pad = case
        self.n, self.c, self.h, self.w, self.o, self.g, self.k = n, c, h, w, o, g, k
        self.ho = (h + pad[0] + pad[1] - d[0] * (k[0] - 1) - 1) // s[0] + 1
        self.wo = (w + pad[2] + pad[3] - d[1] * (k[1] - 1) - 1) // s[1] + 1
        r = rng(seed)
        self.dtype = dtype
        self.x = randn(r, n, c, h, w, dtype=dtype)
        self.wt = randn(r, o, c // g, *k, dtype=dtype, scale=0.5)
        self.bias = randn(r, o, dtype=dtype) if has_bias else None
        self.dy = randn(r, n, o, self.ho, self.wo, dtype=dtype)
        self.accumulation = accumulation
        self.p = Conv2dParams(n, c, h, w, o, self.ho, self.wo, *k, *s, *d, *pad, g, ACCUMULATE[accumulation],
                              int(has_bias))
        self.geometry = {"stride": s, "padding": pad, "dilation": d, "groups": g}

    @property
    def y_shape(self):
        return (self.n, self.o, self.ho, self.wo)

    def forward(self, neuron="none", a=0.0, b=0.0, store_pre=True):
        y0 = np.zeros(self.y_shape, self.dtype)
        bias = self.bias if self.bias is not None else self.wt  # any buffer: not read without has_bias
        outs = run(lib("conv"), f"conv2d_forward_{SUFFIX[self.dtype]}",
                   [self.x, self.wt, bias, ("out", 0), ("out", 1) if store_pre else y0, self.p,
                    NeuronParams(NEURON_TYPES.index(neuron), a, b, 0.0), np.uint32(store_pre)],
                   [y0, y0] if store_pre else [y0],
                   tiled_grid(self.o // self.g, self.n * self.ho * self.wo, self.g))
        return outs

    def forward_ref(self, neuron=None, a=None, b=None):
        return mnn.ops.conv2d_forward(self.x, self.wt, self.bias, accumulation=self.accumulation, neuron=neuron,
                                      neuron_a=a, neuron_b=b, return_preactivation=neuron is not None,
                                      **self.geometry)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("has_bias", [True, False])
@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv2d(case, has_bias, dtype):
    cv = Conv(CONV_CASES[case], dtype, seed=1, has_bias=has_bias)
    sfx, k = SUFFIX[dtype], lib("conv")
    y, pre = cv.forward()
    assert_close(y, cv.forward_ref(), dtype, what="conv forward")
    np.testing.assert_array_equal(pre, y)  # neuron none: z == y
    dx, = run(k, f"conv2d_backward_input_{sfx}", [cv.dy, cv.wt, ("out", 0), cv.p], [cv.x],
              tiled_grid(cv.c // cv.g, cv.n * cv.h * cv.w, cv.g))
    assert_close(dx, mnn.ops.conv2d_backward_input(cv.dy, cv.wt, cv.x.shape, **cv.geometry), dtype,
                 what="conv backward_input")
    kk = cv.c // cv.g * cv.k[0] * cv.k[1]
    dw, = run(k, f"conv2d_backward_weight_{sfx}", [cv.dy, cv.x, ("out", 0), cv.p], [cv.wt],
              tiled_grid(cv.o // cv.g, kk, cv.g))
    assert_close(dw, mnn.ops.conv2d_backward_weight(cv.dy, cv.x, cv.wt.shape, **cv.geometry), dtype,
                 what="conv backward_weight")
    db, = run(k, f"conv2d_backward_bias_{sfx}", [cv.dy, ("out", 0), cv.p], [np.zeros(cv.o, dtype)], cv.o * 64, 64)
    assert_close(db, mnn.ops.conv2d_backward_bias(cv.dy), dtype, what="conv backward_bias")


@pytest.mark.parametrize("has_bias", [True, False])
@pytest.mark.parametrize("case", ["g1", "g2", "deep"])
def test_conv2d_half_accumulation(case, has_bias):
    # Same multiply-add order and rounding as the CPU loops: bit-exact.
    cv = Conv(CONV_CASES[case], np.float16, seed=2, accumulation="half", has_bias=has_bias)
    cv.x *= np.float16(4)  # large partial sums: half rounding differs visibly from float sums
    y, pre = cv.forward()
    ref = cv.forward_ref()
    np.testing.assert_array_equal(y, ref)
    cv_float = Conv(CONV_CASES[case], np.float16, seed=2, has_bias=has_bias)
    cv_float.x = cv.x
    if case == "deep":
        assert not np.array_equal(ref, cv_float.forward_ref()), "half and float accumulation agree: test is weak"
    dx, = run(lib("conv"), "conv2d_backward_input_float16", [cv.dy, cv.wt, ("out", 0), cv.p], [cv.x],
              tiled_grid(cv.c // cv.g, cv.n * cv.h * cv.w, cv.g))
    np.testing.assert_array_equal(
        dx, mnn.ops.conv2d_backward_input(cv.dy, cv.wt, cv.x.shape, accumulation="half", **cv.geometry))


CONV_NEURONS = [("relu", 0.0, 0.0), ("leaky_relu", 0.3, 0.0), ("tanh", 1.7, 0.6), ("gelu", 0.0, 0.0),
                ("relun", 0.1, 1.5), ("softplus", 0.5, 2.0)]


@pytest.mark.parametrize("accumulation,dtype", [("float", np.float32), ("float", np.float16), ("half", np.float16)])
@pytest.mark.parametrize("neuron,a,b", CONV_NEURONS)
def test_conv2d_fused_neuron(neuron, a, b, accumulation, dtype):
    cv = Conv(CONV_CASES["g2"], dtype, seed=3, accumulation=accumulation)
    y, pre = cv.forward(neuron, a, b)
    y_ref, z_ref = cv.forward_ref(neuron, a, b)
    assert_close(pre, z_ref, dtype, what="conv pre-activation")
    assert_close(y, y_ref, dtype, what=f"conv fused {neuron}")
    assert not np.array_equal(y, pre)
    y_only, = cv.forward(neuron, a, b, store_pre=False)
    np.testing.assert_array_equal(y_only, y)


# ---------------------------------------------------------------- fully connected

FC_CASES = {"2d": ((3, 37), (7, 37)), "4d": ((3, 5, 3, 3), (7, 5, 3, 3)), "wide": ((2, 70), (41, 70)),
            "tall": ((35, 20), (9, 20))}


class Fc:
    def __init__(self, case, dtype, seed=0, accumulation="float", has_bias=True):
        xs, ws = FC_CASES[case]
        r = rng(seed)
        self.dtype, self.accumulation = dtype, accumulation
        self.x = randn(r, *xs, dtype=dtype)
        self.wt = randn(r, *ws, dtype=dtype, scale=0.5)
        self.bias = randn(r, ws[0], dtype=dtype) if has_bias else None
        self.n, self.f, self.o = xs[0], int(np.prod(xs[1:])), ws[0]
        self.dy = randn(r, self.n, self.o, dtype=dtype)
        self.p = FullyConnectedParams(self.n, self.f, self.o, ACCUMULATE[accumulation], int(has_bias))

    def forward(self, neuron="none", a=0.0, b=0.0, store_pre=True):
        y0 = np.zeros((self.n, self.o), self.dtype)
        bias = self.bias if self.bias is not None else self.wt
        return run(lib("linear"), f"fully_connected_forward_{SUFFIX[self.dtype]}",
                   [self.x, self.wt, bias, ("out", 0), ("out", 1) if store_pre else y0, self.p,
                    NeuronParams(NEURON_TYPES.index(neuron), a, b, 0.0), np.uint32(store_pre)],
                   [y0, y0] if store_pre else [y0], tiled_grid(self.n, self.o))

    def forward_ref(self, neuron=None, a=None, b=None):
        return mnn.ops.fully_connected_forward(self.x, self.wt, self.bias, accumulation=self.accumulation,
                                               neuron=neuron, neuron_a=a, neuron_b=b,
                                               return_preactivation=neuron is not None)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("has_bias", [True, False])
@pytest.mark.parametrize("case", sorted(FC_CASES))
def test_fully_connected(case, has_bias, dtype):
    fc = Fc(case, dtype, seed=4, has_bias=has_bias)
    sfx, k = SUFFIX[dtype], lib("linear")
    y, pre = fc.forward()
    assert_close(y, fc.forward_ref(), dtype, what="fc forward")
    np.testing.assert_array_equal(pre, y)
    dx, = run(k, f"fully_connected_backward_input_{sfx}", [fc.dy, fc.wt, ("out", 0), fc.p], [fc.x],
              tiled_grid(fc.n, fc.f))
    assert_close(dx, mnn.ops.fully_connected_backward_input(fc.dy, fc.wt, fc.x.shape), dtype, what="fc dx")
    dw, = run(k, f"fully_connected_backward_weight_{sfx}", [fc.dy, fc.x, ("out", 0), fc.p], [fc.wt],
              tiled_grid(fc.o, fc.f))
    assert_close(dw, mnn.ops.fully_connected_backward_weight(fc.dy, fc.x, fc.wt.shape), dtype, what="fc dw")
    db, = run(k, f"fully_connected_backward_bias_{sfx}", [fc.dy, ("out", 0), fc.p], [np.zeros(fc.o, dtype)],
              fc.o, 32)
    assert_close(db, mnn.ops.fully_connected_backward_bias(fc.dy), dtype, what="fc db")


@pytest.mark.parametrize("has_bias", [True, False])
@pytest.mark.parametrize("case", sorted(FC_CASES))
def test_fully_connected_half_accumulation(case, has_bias):
    fc = Fc(case, np.float16, seed=5, accumulation="half", has_bias=has_bias)
    fc.x *= np.float16(4)
    y, _ = fc.forward()
    np.testing.assert_array_equal(y, fc.forward_ref())
    dx, = run(lib("linear"), "fully_connected_backward_input_float16", [fc.dy, fc.wt, ("out", 0), fc.p], [fc.x],
              tiled_grid(fc.n, fc.f))
    np.testing.assert_array_equal(dx, mnn.ops.fully_connected_backward_input(fc.dy, fc.wt, fc.x.shape,
                                                                              accumulation="half"))


@pytest.mark.parametrize("accumulation,dtype", [("float", np.float32), ("float", np.float16), ("half", np.float16)])
@pytest.mark.parametrize("neuron,a,b", CONV_NEURONS[:4])
def test_fully_connected_fused_neuron(neuron, a, b, accumulation, dtype):
    fc = Fc("4d", dtype, seed=6, accumulation=accumulation)
    y, pre = fc.forward(neuron, a, b)
    y_ref, z_ref = fc.forward_ref(neuron, a, b)
    assert_close(pre, z_ref, dtype, what="fc pre-activation")
    assert_close(y, y_ref, dtype, what=f"fc fused {neuron}")
    assert not np.array_equal(y, pre)


def test_nan_propagates():
    cv = Conv(CONV_CASES["g1"], np.float32, seed=7)
    cv.x[1, 2, 5, 4] = np.nan  # row 5 is read (odd rows only: stride 2, top pad 1)
    y, _ = cv.forward()
    ref = cv.forward_ref()
    assert np.isnan(y).any()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))


# ---------------------------------------------------------------- transposed convolution (composed)

# ops/conv_transpose.cpp runs the transposed convolution on Metal with the conv kernels above:
# forward = conv2d_backward_input with x as dy, input gradient = conv2d_forward, weight gradient
# = conv2d_backward_weight with the roles swapped, bias + neuron = a depthwise 1x1 conv2d_forward
# with unit weights. Each composed dispatch here must match mnn.ops.conv_transpose2d_* on the CPU.
# (N, C_in, H, W, C_out, groups, (kH, kW), stride, dilation, (top, bottom, left, right), output_padding)
CONVT_CASES = {
    "up2": (2, 6, 4, 5, 5, 1, (4, 4), (2, 2), (1, 1), (1, 1, 1, 1), (0, 0)),
    "grouped_dilated": (1, 6, 5, 3, 9, 3, (3, 2), (1, 2), (2, 1), (0, 1, 1, 0), (0, 1)),
    "depthwise": (2, 5, 3, 4, 5, 5, (3, 3), (2, 3), (1, 1), (1, 0, 0, 2), (1, 2)),
}


def _convt(case, dtype, seed):
    n, c, h, w, o, g, k, s, d, pad, op = case
    ho = (h - 1) * s[0] - pad[0] - pad[1] + d[0] * (k[0] - 1) + op[0] + 1
    wo = (w - 1) * s[1] - pad[2] - pad[3] + d[1] * (k[1] - 1) + op[1] + 1
    r = rng(seed)
    x = randn(r, n, c, h, w, dtype=dtype)
    wt = randn(r, c, o // g, *k, dtype=dtype, scale=0.5)
    bias = randn(r, o, dtype=dtype)
    dy = randn(r, n, o, ho, wo, dtype=dtype)
    # The adjoint convolution: input (n, o, ho, wo) -> output (n, c, h, w), weights (c, o/g, kH, kW).
    p = Conv2dParams(n, o, ho, wo, c, h, w, *k, *s, *d, *pad, g, 0, 0)
    geometry = {"stride": s, "padding": pad, "dilation": d, "groups": g, "output_padding": op}
    return x, wt, bias, dy, p, geometry


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(CONVT_CASES))
def test_conv_transpose2d_composed(case, dtype):
    n, c, h, w, o, g = CONVT_CASES[case][:6]
    x, wt, bias, dy, p, geo = _convt(CONVT_CASES[case], dtype, seed=8)
    sfx, k = SUFFIX[dtype], lib("conv")
    y, = run(k, f"conv2d_backward_input_{sfx}", [x, wt, ("out", 0), p], [dy],
             tiled_grid(o // g, n * dy.shape[2] * dy.shape[3], g))
    assert_close(y, mnn.ops.conv_transpose2d_forward(x, wt, **geo), dtype, what="conv_transpose forward")
    neuron0 = NeuronParams(0, 0.0, 0.0, 0.0)
    dx, pre = run(k, f"conv2d_forward_{sfx}", [dy, wt, wt, ("out", 0), ("out", 1), p, neuron0, np.uint32(0)],
                  [x, x], tiled_grid(c // g, n * h * w, g))
    assert_close(dx, mnn.ops.conv_transpose2d_backward_input(dy, wt, x.shape, **geo), dtype,
                 what="conv_transpose backward_input")
    dw, = run(k, f"conv2d_backward_weight_{sfx}", [x, dy, ("out", 0), p], [wt],
              tiled_grid(c // g, o // g * wt.shape[2] * wt.shape[3], g))
    assert_close(dw, mnn.ops.conv_transpose2d_backward_weight(dy, x, wt.shape, **geo), dtype,
                 what="conv_transpose backward_weight")


@pytest.mark.parametrize("neuron,a,b", [("relu", 0.0, 0.0), ("tanh", 1.7, 0.6)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_transpose2d_bias_neuron_epilogue(neuron, a, b, dtype):
    # The Metal path's epilogue: a depthwise 1x1 convolution with unit weights, the bias and the
    # neuron fused, over the products.
    case = CONVT_CASES["up2"]
    n, c, h, w, o = case[:5]
    x, wt, bias, dy, _, geo = _convt(case, dtype, seed=9)
    z = mnn.ops.conv_transpose2d_forward(x, wt, **geo)
    ho, wo = z.shape[2:]
    p1 = Conv2dParams(n, o, ho, wo, o, ho, wo, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, o, 0, 1)
    ones = np.ones((o, 1, 1, 1), dtype)
    y, pre = run(lib("conv"), f"conv2d_forward_{SUFFIX[dtype]}",
                 [z, ones, bias, ("out", 0), ("out", 1), p1, NeuronParams(NEURON_TYPES.index(neuron), a, b, 0.0),
                  np.uint32(1)], [z, z], tiled_grid(1, n * ho * wo, o))
    y_ref, z_ref = mnn.ops.conv_transpose2d_forward(x, wt, bias, neuron=neuron, neuron_a=a, neuron_b=b,
                                                    return_preactivation=True, **geo)
    assert_close(pre, z_ref, dtype, what="pre-activation")
    assert_close(y, y_ref, dtype, what=f"fused {neuron}")
