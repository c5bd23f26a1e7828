"""pooling.metal's dilated max and L2-norm kernels on the CPU emulator (tests/metal) against
the CPU backend (mnn.ops.dilated_max_pool2d_* / l2_pool2d_*): odd sizes, asymmetric padding,
dilations, overlapping windows, ties and NaN, float32 and float16, each dispatch run with
threads in order and reversed. The plain max / average kernels are in test_metal_kernels.py."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import metalnn as mnn

from helpers import DTYPES, assert_close, randn, rng

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "metal"))
from harness import SUFFIX, lib, run_both_schedules, skip_without_clang  # noqa: E402
from params import Pool2dParams  # noqa: E402
from params_pooling import Pool2dDilatedParams  # noqa: E402

skip_without_clang()

# (input shape, kernel, stride, (top, bottom, left, right), dilation)
CASES = [((2, 3, 9, 11), (3, 3), (2, 2), (2, 1, 1, 2), (2, 2)),
         ((1, 5, 7, 8), (2, 3), (1, 2), (0, 0, 3, 1), (3, 2)),
         ((2, 2, 10, 13), (3, 2), (1, 3), (2, 0, 1, 1), (1, 1)),
         ((3, 1, 6, 5), (2, 2), (1, 1), (0, 0, 0, 0), (4, 3))]


def _params(shape, kernel, stride, pad, dilation):
    n, c, h, w = shape
    oh = (h + pad[0] + pad[1] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    ow = (w + pad[2] + pad[3] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    p = Pool2dDilatedParams(Pool2dParams(n, c, h, w, oh, ow, *kernel, *stride, *pad, 1), *dilation)
    return p, (n, c, oh, ow)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kernel,stride,pad,dilation", CASES)
def test_dilated_max_pool2d(shape, kernel, stride, pad, dilation, dtype):
    r = rng(30)
    x = randn(r, *shape, dtype=dtype)
    x[0, 0, 2, 1] = x[0, 0, 2, 3] = 5.0  # a tie: the first tap in window order wins
    x[-1, -1, 3, 3] = np.nan
    p, out = _params(shape, kernel, stride, pad, dilation)
    k = lib("pooling")
    y, arg = run_both_schedules(k, f"dilated_max_pool2d_forward_{SUFFIX[dtype]}", [x, ("out", 0), ("out", 1), p],
                                [np.zeros(out, dtype), np.zeros(out, np.int32)], int(np.prod(out)), 64)
    y_ref, state = mnn.ops.dilated_max_pool2d_forward(x, kernel, stride, pad, dilation)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, np.asarray(state.argmax))
    dy = randn(r, *out, dtype=dtype)
    dx, = run_both_schedules(k, f"dilated_max_pool2d_backward_{SUFFIX[dtype]}", [dy, arg, ("out", 0), p], [x],
                             x.size, 64)
    # Same outputs added in the same order as the CPU's argmax scatter: bit-exact.
    np.testing.assert_array_equal(dx, mnn.ops.max_pool2d_backward(dy, state))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kernel,stride,pad,dilation", CASES)
def test_l2_pool2d(shape, kernel, stride, pad, dilation, dtype):
    r = rng(31)
    x = randn(r, *shape, dtype=dtype)
    x[0, 0, :3, :3] = 0  # some all-zero windows: y = 0 and a zero gradient there
    p, out = _params(shape, kernel, stride, pad, dilation)
    k = lib("pooling")
    y, = run_both_schedules(k, f"l2_pool2d_forward_{SUFFIX[dtype]}", [x, ("out", 0), p], [np.zeros(out, dtype)],
                            int(np.prod(out)), 64)
    y_ref = mnn.ops.l2_pool2d_forward(x, kernel, stride, pad, dilation)
    assert_close(y, y_ref, dtype, what="l2 forward")
    dy = randn(r, *out, dtype=dtype)
    dx, = run_both_schedules(k, f"l2_pool2d_backward_{SUFFIX[dtype]}", [dy, x, y_ref, ("out", 0), p], [x], x.size,
                             64)
    dx_ref = mnn.ops.l2_pool2d_backward(dy, x, y_ref, kernel, stride, pad, dilation)
    assert np.isfinite(dx).all()
    assert_close(dx, dx_ref, dtype, what="l2 backward")


def test_l2_pool2d_nan():
    x = randn(rng(32), 1, 2, 6, 6)
    x[0, 1, 3, 3] = np.nan
    p, out = _params(x.shape, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1))
    y, = run_both_schedules(lib("pooling"), "l2_pool2d_forward_float32", [x, ("out", 0), p],
                            [np.zeros(out, np.float32)], int(np.prod(out)), 64)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(mnn.ops.l2_pool2d_forward(x, 2)))
    assert np.isnan(y).sum() == 1
