"""shape.metal and arithmetic.metal on the CPU emulator (tests/metal) against the CPU backend
(mnn.ops.*): upsampling (nearest, bilinear with and without aligned corners), pad (zero, edge,
reflect, channel padding) and its gradient, crop (the same window kernel), concatenation, the
tiled matrix transpose (threadgroup memory, any threadgroup height), and broadcasting arithmetic
forward and gradients (per-thread and threadgroup-reduction kernels); odd sizes, float32 and
float16, every dispatch repeated with threads reversed (race check)."""

from __future__ import annotations

import ctypes
import os
import sys

import numpy as np
import pytest

import metalnn as mnn

from helpers import DTYPES, assert_close, randn, rng

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "metal"))
from harness import SUFFIX, lib, run_both_schedules, skip_without_clang  # noqa: E402
from params_shape import ArithmeticParams, ShapeParams  # noqa: E402

skip_without_clang()

TG = 64
MODES = {"zero": 0, "edge": 1, "reflect": 2}


def shape_params(inp, out, scale=(1, 1), off=(0, 0, 0), mode=0):
    n, c, h, w = inp
    return ShapeParams(n, c, h, w, out[1], out[2], out[3], scale[0], scale[1], *off, mode, 0)


def run(kernel, dtype, inputs, out_shape, p, grid):
    out, = run_both_schedules(lib("shape"), f"{kernel}_{SUFFIX[dtype]}", [*inputs, ("out", 0), p],
                              [np.zeros(out_shape, dtype)], grid, TG)
    return out


# ---------------------------------------------------------------- upsampling


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,scale", [((2, 3, 5, 7), (2, 3)), ((1, 2, 1, 3), (3, 1))])
def test_nearest(shape, scale, dtype):
    x = randn(rng(0), *shape, dtype=dtype)
    n, c, h, w = shape
    out = (n, c, h * scale[0], w * scale[1])
    p = shape_params(shape, out, scale)
    y = run("upsample_nearest_forward", dtype, [x], out, p, int(np.prod(out)))
    np.testing.assert_array_equal(y, mnn.ops.upsample_nearest_forward(x, scale))
    dy = randn(rng(1), *out, dtype=dtype)
    dx = run("upsample_nearest_backward", dtype, [dy], shape, p, x.size)
    assert_close(dx, mnn.ops.upsample_nearest_backward(dy, scale), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("align", [0, 1])
@pytest.mark.parametrize("shape,scale", [((2, 3, 5, 7), (2, 3)), ((1, 2, 1, 4), (3, 2)), ((1, 1, 6, 2), (1, 4))])
def test_bilinear(shape, scale, align, dtype):
    x = randn(rng(2), *shape, dtype=dtype)
    n, c, h, w = shape
    out = (n, c, h * scale[0], w * scale[1])
    p = shape_params(shape, out, scale, mode=align)
    y = run("upsample_bilinear_forward", dtype, [x], out, p, int(np.prod(out)))
    assert_close(y, mnn.ops.upsample_bilinear_forward(x, scale, bool(align)), dtype, what="bilinear forward")
    dy = randn(rng(3), *out, dtype=dtype)
    dx = run("upsample_bilinear_backward", dtype, [dy], shape, p, x.size)
    assert_close(dx, mnn.ops.upsample_bilinear_backward(dy, scale, bool(align)), dtype, what="bilinear backward")


# ---------------------------------------------------------------- pad / crop / concat


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("shape,pads,channels", [((2, 3, 5, 7), (1, 2, 3, 0), (0, 0)),
                                                 ((1, 4, 4, 3), (3, 3, 2, 2), (2, 1))])
def test_pad(shape, pads, channels, mode, dtype):
    if mode == "reflect" and (max(pads[:2]) >= shape[2] or max(pads[2:]) >= shape[3]):
        pads = tuple(min(v, 1) for v in pads)
    x = randn(rng(4), *shape, dtype=dtype)
    top, bottom, left, right = pads
    out = (shape[0], shape[1] + sum(channels), shape[2] + top + bottom, shape[3] + left + right)
    p = shape_params(shape, out, off=(channels[0], top, left), mode=MODES[mode])
    y = run("pad_forward", dtype, [x], out, p, int(np.prod(out)))
    np.testing.assert_array_equal(y, mnn.ops.pad_forward(x, pads, mode, channels))
    dy = randn(rng(5), *out, dtype=dtype)
    dx = run("pad_backward", dtype, [dy], shape, p, x.size)
    assert_close(dx, mnn.ops.pad_backward(dy, shape, pads, mode, channels), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_crop_window(dtype):
    x = randn(rng(6), 2, 5, 9, 7, dtype=dtype)
    off, size = (1, 2, 3), (3, 5, 4)
    out = (2, *size)
    # Crop: the window kernel with negative offsets; its gradient: positive offsets, zero mode.
    y = run("pad_forward", dtype, [x], out, shape_params(x.shape, out, off=tuple(-v for v in off)), 2 * 60)
    np.testing.assert_array_equal(y, mnn.ops.crop_forward(x, off, size))
    dx = run("pad_forward", dtype, [y], x.shape, shape_params(out, x.shape, off=off), x.size)
    np.testing.assert_array_equal(dx, mnn.ops.crop_backward(y, x.shape, off))


@pytest.mark.parametrize("dtype", DTYPES)
def test_concat(dtype):
    r = rng(7)
    xs = [randn(r, 3, c, 5, 7, dtype=dtype) for c in (2, 1, 4)]
    out = (3, 7, 5, 7)
    y = np.zeros(out, dtype)
    offset = 0
    for x in xs:
        # Each input writes only its channels: dispatch into the same output buffer.
        lib("shape").dispatch(f"concat_forward_{SUFFIX[dtype]}", [x, y, shape_params(x.shape, out, off=(offset, 0, 0))],
                              x.size, TG)
        offset += x.shape[1]
    np.testing.assert_array_equal(y, mnn.ops.concat_forward(xs))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ty", [8, 3])
@pytest.mark.parametrize("shape", [(7, 13), (1, 45), (45, 1), (33, 65), (64, 32)])
def test_transpose_matrix(shape, ty, dtype):
    rows, cols = shape
    x = randn(rng(12), rows, cols, dtype=dtype)
    p = shape_params((1, 1, rows, cols), (1, 1, cols, rows))
    # One (32, ty) threadgroup per 32 x 32 tile; the grid is given in threads.
    grid = (-(-cols // 32) * 32, -(-rows // 32) * ty)
    y, = run_both_schedules(lib("shape"), f"transpose_matrix_forward_{SUFFIX[dtype]}", [x, ("out", 0), p],
                            [np.zeros((cols, rows), dtype)], grid, (32, ty))
    np.testing.assert_array_equal(y.view(np.uint8), mnn.ops.transpose_matrix_forward(x).view(np.uint8))
    np.testing.assert_array_equal(y, x.T)


# ---------------------------------------------------------------- arithmetic

OPS = ["add", "subtract", "multiply", "divide"]


def pad4(s):
    return (1,) * (4 - len(s)) + tuple(s)


def strides4(s):
    dims, st, out = pad4(s), 1, [0] * 4
    for k in range(3, -1, -1):
        out[k] = 0 if dims[k] == 1 else st
        st *= dims[k]
    return out


def arith_params(op, a_shape, b_shape, operand=0):
    out = np.broadcast_shapes(a_shape, b_shape)
    g = a_shape if operand == 0 else b_shape
    count, g_count = int(np.prod(out)), int(np.prod(g))
    def int4(v):
        return (ctypes.c_int32 * 4)(*v)

    return ArithmeticParams(OPS.index(op), operand, int4(pad4(out)), int4(strides4(a_shape)), int4(strides4(b_shape)),
                            int4(strides4(g)), count, g_count, count // g_count, 0)


def _operands(op, a_shape, b_shape, dtype, seed):
    r = rng(seed)
    a, b = randn(r, *a_shape, dtype=dtype), randn(r, *b_shape, dtype=dtype)
    if op == "divide":
        b = (np.sign(b) * (np.abs(b) + 0.5)).astype(dtype)
    return a, b


ARITH_SHAPES = [((3, 5, 7, 9), (1, 5, 1, 1)), ((3, 1, 7, 9), (1, 5, 1, 1)), ((2, 3, 5, 7), (2, 3, 5, 7)),
                ((7, 13), (7, 1))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("a_shape,b_shape", ARITH_SHAPES)
def test_arithmetic(op, a_shape, b_shape, dtype):
    a, b = _operands(op, a_shape, b_shape, dtype, 8)
    k = lib("arithmetic")
    p = arith_params(op, a_shape, b_shape)
    out = np.broadcast_shapes(a_shape, b_shape)
    y, = run_both_schedules(k, f"arithmetic_forward_{SUFFIX[dtype]}", [a, b, ("out", 0), p],
                            [np.zeros(out, dtype)], int(np.prod(out)), TG)
    assert_close(y, mnn.ops.arithmetic_forward(op, a, b), dtype, what=f"{op} forward")
    dy = randn(rng(9), *out, dtype=dtype)
    for operand, shape in ((0, a_shape), (1, b_shape)):
        p = arith_params(op, a_shape, b_shape, operand)
        ref = mnn.ops.arithmetic_backward(op, operand, dy, a_shape, b_shape, a, b)
        tol = dict(atol=1e-4 * max(1.0, float(np.abs(ref).max()))) if dtype == np.float32 else {}
        g, = run_both_schedules(k, f"arithmetic_backward_{SUFFIX[dtype]}", [dy, a, b, ("out", 0), p],
                                [np.zeros(shape, dtype)], p.g_count, TG)
        assert_close(g, ref, dtype, what=f"{op} d{'ab'[operand]} (thread per element)", **tol)
        if p.reduce_count > 1:
            for tg in (32, 96):
                g, = run_both_schedules(k, f"arithmetic_backward_reduce_{SUFFIX[dtype]}", [dy, a, b, ("out", 0), p],
                                        [np.zeros(shape, dtype)], p.g_count * tg, tg)
                assert_close(g, ref, dtype, what=f"{op} d{'ab'[operand]} (threadgroup of {tg})", **tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_same_shape_kernel(dtype):
    a, b = randn(rng(10), 5, 37, dtype=dtype), randn(rng(11), 5, 37, dtype=dtype)
    y, = run_both_schedules(lib("arithmetic"), f"add_forward_{SUFFIX[dtype]}", [a, b, ("out", 0), np.uint32(a.size)],
                            [a], a.size, TG)
    assert_close(y, mnn.ops.add_forward(a, b), dtype)
