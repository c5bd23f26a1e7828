"""Every .metal kernel on the CPU emulator (tests/metal) against the CPU backend (mnn.ops.*),
on odd sizes that are not multiples of the threadgroup, float32 and float16; and broken
kernels (tests/metal/broken.metal) that the emulator must catch."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import metalnn as mnn

from helpers import DTYPES, assert_close, randn, rng

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "metal"))
from emulator import EmulatorError, compile_metal, compile_strict, poisoned  # noqa: E402
from harness import KERNELS, SUFFIX, lib, run_both_schedules, skip_without_clang  # noqa: E402
from params import DropoutParams, NeuronParams, Pool2dParams, SoftmaxParams  # noqa: E402

skip_without_clang()



# ---------------------------------------------------------------- neuron

NEURON_TYPES = ("none", "relu", "leaky_relu", "sigmoid", "hard_sigmoid", "tanh", "linear", "absolute", "softplus",
                "elu", "relun", "gelu")
COEFFS = {"relu": (0.0, 0.0), "leaky_relu": (0.3, 0.0), "hard_sigmoid": (0.4, 0.3), "tanh": (1.7, 0.6),
          "linear": (-2.5, 0.75), "softplus": (0.5, 2.0), "elu": (0.8, 0.0), "relun": (0.1, 1.5)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NEURON_TYPES)
def test_neuron(name, dtype):
    r = rng(1)
    x = randn(r, 3, 7, 11, dtype=dtype, scale=3.0)  # 231 elements: not a multiple of 64
    x.reshape(-1)[:4] = [0.0, np.nan, 25.0, -25.0]
    dy = randn(r, *x.shape, dtype=dtype)
    a, b = COEFFS.get(name, (1.0, 1.0))
    p = NeuronParams(NEURON_TYPES.index(name), a, b, 0.0)
    n = np.uint32(x.size)
    k = lib("neuron")
    y, = run_both_schedules(k, f"neuron_forward_{SUFFIX[dtype]}", [x, ("out", 0), p, n], [x], x.size, 64)
    dx, = run_both_schedules(k, f"neuron_backward_{SUFFIX[dtype]}", [dy, x, ("out", 0), p, n], [x], x.size, 64)
    assert_close(y, mnn.ops.neuron_forward(x, name, a, b), dtype, what=f"{name} forward")
    assert_close(dx, mnn.ops.neuron_backward(dy, x, name, a, b), dtype, what=f"{name} backward")


# ---------------------------------------------------------------- dropout


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keep", [0.3, 1.0])
def test_dropout(dtype, keep):
    r = rng(2)
    x = randn(r, 5, 3, 13, dtype=dtype)  # 195 elements
    x.reshape(-1)[0] = np.inf
    dy = randn(r, *x.shape, dtype=dtype)
    seed = 1234567
    p = DropoutParams(seed, min(int(np.ceil(np.float64(keep) * 2**24)), 2**24), keep, np.float32(1 / keep), 0)
    n = np.uint32(x.size)
    k = lib("dropout")
    y, mask = run_both_schedules(k, f"dropout_forward_{SUFFIX[dtype]}", [x, ("out", 0), ("out", 1), p, n],
                                 [x, np.zeros(x.shape, np.uint8)], x.size, 64)
    dx, = run_both_schedules(k, f"dropout_backward_{SUFFIX[dtype]}", [dy, mask, ("out", 0), p, n], [x], x.size, 64)
    y_ref, state = mnn.ops.dropout_forward(x, keep, seed)
    np.testing.assert_array_equal(mask, np.asarray(state.mask).reshape(x.shape))
    if keep < 1:
        assert 0 < mask.sum() < mask.size
    assert_close(y, y_ref, dtype, what="dropout forward")
    assert_close(dx, mnn.ops.dropout_backward(dy, state), dtype, what="dropout backward")


# ---------------------------------------------------------------- softmax

SOFTMAX_SHAPES = [((7, 37), 32), ((5, 100), 64), ((3, 9, 5, 3), 48), ((2, 1500), 256)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape,tg", SOFTMAX_SHAPES)
def test_softmax(shape, tg, log, dtype):
    r = rng(3)
    x = randn(r, *shape, dtype=dtype, scale=3.0)
    x.reshape(-1)[5] = 40.0  # a large logit: the max must be subtracted
    dy = randn(r, *shape, dtype=dtype)
    n, c, s = shape[0], shape[1], int(np.prod(shape[2:]))
    p = SoftmaxParams(n, c, s, int(log))
    k = lib("softmax")
    y, = run_both_schedules(k, f"softmax_forward_{SUFFIX[dtype]}", [x, ("out", 0), p], [x], n * s * tg, tg)
    fwd = mnn.ops.log_softmax_forward if log else mnn.ops.softmax_forward
    bwd = mnn.ops.log_softmax_backward if log else mnn.ops.softmax_backward
    y_ref = fwd(x)
    assert_close(y, y_ref, dtype, what="softmax forward")
    dx, = run_both_schedules(k, f"softmax_backward_{SUFFIX[dtype]}", [dy, y_ref, ("out", 0), p], [x], n * s * tg, tg)
    assert_close(dx, bwd(dy, y_ref), dtype, what="softmax backward")


def test_softmax_nan_row():
    x = randn(rng(4), 3, 40)
    x[1, 7] = np.nan
    y = poisoned(x.shape, np.float32)
    lib("softmax").dispatch("softmax_forward_float32", [x, y, SoftmaxParams(3, 40, 1, 0)], 3 * 64, 64)
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()
    assert_close(y, mnn.ops.softmax_forward(x))


# ---------------------------------------------------------------- pooling

# (input shape, kernel, stride, (top, bottom, left, right))
POOL_CASES = [((2, 3, 9, 11), (3, 3), (2, 2), (1, 1, 1, 1)), ((1, 5, 7, 7), (2, 2), (2, 2), (0, 0, 0, 0)),
              ((2, 2, 10, 13), (3, 2), (1, 3), (2, 0, 1, 1))]


def _pool_params(shape, kernel, stride, pad, include_pad=1):
    n, c, h, w = shape
    oh = (h + pad[0] + pad[1] - kernel[0]) // stride[0] + 1
    ow = (w + pad[2] + pad[3] - kernel[1]) // stride[1] + 1
    return Pool2dParams(n, c, h, w, oh, ow, *kernel, *stride, *pad, include_pad), (n, c, oh, ow)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kernel,stride,pad", POOL_CASES)
def test_max_pool2d(shape, kernel, stride, pad, dtype):
    r = rng(5)
    x = randn(r, *shape, dtype=dtype)
    x[0, 0, 1, 1] = x[0, 0, 1, 2] = 5.0  # a tie: the row-major first wins
    x[-1, -1, 3, 3] = np.nan
    p, out = _pool_params(shape, kernel, stride, pad)
    k = lib("pooling")
    y, arg = run_both_schedules(k, f"max_pool2d_forward_{SUFFIX[dtype]}", [x, ("out", 0), ("out", 1), p],
                                [np.zeros(out, dtype), np.zeros(out, np.int32)], int(np.prod(out)), 64)
    y_ref, state = mnn.ops.max_pool2d_forward(x, kernel, stride, pad)
    assert_close(y, y_ref, dtype, what="max pool forward")
    np.testing.assert_array_equal(arg, np.asarray(state.argmax).reshape(out))
    dy = randn(r, *out, dtype=dtype)
    dx, = run_both_schedules(k, f"max_pool2d_backward_{SUFFIX[dtype]}", [dy, arg, ("out", 0), p], [x], x.size, 64)
    assert_close(dx, mnn.ops.max_pool2d_backward(dy, state), dtype, what="max pool backward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("include_pad", [True, False])
@pytest.mark.parametrize("shape,kernel,stride,pad", POOL_CASES)
def test_avg_pool2d(shape, kernel, stride, pad, include_pad, dtype):
    r = rng(6)
    x = randn(r, *shape, dtype=dtype)
    p, out = _pool_params(shape, kernel, stride, pad, int(include_pad))
    k = lib("pooling")
    y, = run_both_schedules(k, f"avg_pool2d_forward_{SUFFIX[dtype]}", [x, ("out", 0), p], [np.zeros(out, dtype)],
                            int(np.prod(out)), 64)
    assert_close(y, mnn.ops.avg_pool2d_forward(x, kernel, stride, pad, include_pad), dtype, what="avg forward")
    dy = randn(r, *out, dtype=dtype)
    dx, = run_both_schedules(k, f"avg_pool2d_backward_{SUFFIX[dtype]}", [dy, ("out", 0), p], [x], x.size, 64)
    assert_close(dx, mnn.ops.avg_pool2d_backward(dy, shape, kernel, stride, pad, include_pad), dtype,
                 what="avg backward")


def test_every_metal_file_is_tested():
    """Each .metal file's kernels are dispatched by some tests/test_metal_*.py file."""
    tests = " ".join(p.read_text() for p in Path(__file__).resolve().parent.glob("test_metal_*.py"))
    for metal in KERNELS.glob("*.metal"):
        for kernel in re.findall(r"kernel\s+void\s+(\w+?)_(?:float32|float16)\b", metal.read_text()):
            assert kernel in tests, f"{metal.name}: kernel {kernel} is not run by any Metal test"


@pytest.mark.parametrize("name", sorted(p.stem for p in KERNELS.glob("*.metal")))
def test_strict_address_spaces(name):
    compile_strict(KERNELS / f"{name}.metal")


def test_strict_mode_rejects_mixed_address_spaces():
    with pytest.raises(EmulatorError, match="device float"):
        compile_strict(Path(__file__).resolve().parent / "metal" / "broken.metal")

# ---------------------------------------------------------------- broken kernels the emulator must catch

BROKEN = Path(__file__).resolve().parent / "metal" / "broken.metal"


def _broken(kernel, n=200, tg=64, schedule=0):
    x = np.arange(1, n + 1, dtype=np.float32)
    y = poisoned((max(n, (n + tg - 1) // tg),), np.float32)
    compile_metal(BROKEN).dispatch(kernel, [x, y, np.uint32(n)], n, tg, schedule=schedule)
    return x, y


def test_broken_control_sum_is_right():
    x, y = _broken("sum_ok", n=200, tg=64)
    np.testing.assert_array_equal(y[:4], [x[i * 64 : i * 64 + 64].sum() for i in range(4)])


@pytest.mark.parametrize("kernel", ["sum_missing_barrier", "tree_missing_barrier"])
def test_missing_barrier_is_caught(kernel):
    x, y = _broken(kernel, n=256, tg=64)
    expected = x.reshape(4, 64).sum(1)
    # Threads in order: thread 0 reads the poison of slots not yet written, or the sums differ.
    assert not np.array_equal(y[:4], expected)
    with pytest.raises(AssertionError):
        run_both_schedules(compile_metal(BROKEN), kernel, [x, ("out", 0), np.uint32(256)],
                           [np.zeros(256, np.float32)], 256, 64)


@pytest.mark.parametrize("kernel", ["copy_out_of_range", "copy_negative_index"])
def test_out_of_range_write_is_caught(kernel):
    with pytest.raises(EmulatorError, match=r"buffer\(1\) written out of range"):
        _broken(kernel, n=100, tg=64)


@pytest.mark.parametrize("kernel,message", [
    ("barrier_in_branch", "not reached by all threads"),
    ("barrier_after_return", "not reached by all threads"),
    ("barriers_differ", "different barriers"),
    ("too_much_threadgroup_memory", "threadgroup memory exceeds 32768"),
    ("simd_in_branch", "deadlock"),
])
def test_rule_breaks_are_reported(kernel, message):
    with pytest.raises(EmulatorError, match=message):
        _broken(kernel, n=100, tg=64)


def test_unwritten_threadgroup_memory_reads_poison():
    _, y = _broken("read_unwritten", n=100, tg=64)
    assert np.isnan(y[0]) and np.isnan(y[64]) and np.isfinite(y[1:64]).all()


def test_dispatch_limits_and_sizes():
    x = np.ones(8, np.float32)
    lib_ = compile_metal(BROKEN)
    with pytest.raises(EmulatorError, match="outside"):
        lib_.dispatch("sum_ok", [x, poisoned(8, np.float32), np.uint32(8)], 2048, 1025)
    with pytest.raises(EmulatorError, match="constant argument has 4"):
        lib_.dispatch("sum_ok", [x, poisoned(8, np.float32), np.uint64(8)], 8, 8)
    with pytest.raises(EmulatorError, match="not bound"):
        lib_.dispatch("sum_ok", [x, poisoned(8, np.float32)], 8, 8)
