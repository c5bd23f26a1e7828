"""CUDA: the 16-byte (pack) paths of the element-wise kernels against the CPU backend.

Neuron forward/backward, the fused bias + neuron layer epilogue (float32 and float16
accumulators) and max-pool backward over disjoint windows take 16-byte packs (4 floats or
8 halves) when their pointers are aligned and the last n % pack items one by one; inputs
at an odd element offset (views from PyTorch through DLPack) take the scalar path. Sizes
here are chosen so that every path and every tail length runs.

Skipped unless this build has a CUDA device (mnn.available_devices() lists cuda)."""

import numpy as np
import pytest

import metalnn as mnn

HAS_CUDA = any(d.type == "cuda" for d in mnn.available_devices())
pytestmark = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device in this build/machine")

DTYPES = ["float32", "float16"]
TOL = {"float32": (1e-6, 2e-6), "float16": (1e-3, 2e-3)}
GEMM_TOL = {"float32": (2e-4, 2e-4), "float16": (2e-2, 1e-2)}
# 1..9 cover every tail length of both pack widths; 4103 and 8 * 1031 + 5 mix packs and tails.
SIZES = [1, 3, 4, 7, 8, 9, 4103, 8 * 1031 + 5]


def _data(shape, dtype, seed, scale=3.0):
    return (np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * scale).astype(dtype)


def _cuda(a):
    return mnn.Tensor(a, device="cuda")


def _close(got, ref, tol):
    atol, rtol = tol
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(ref, np.float64), atol=atol, rtol=rtol,
                               equal_nan=True)


def _unaligned(torch, a):
    """A metalnn CUDA tensor holding `a` one element past a 16-byte boundary (a PyTorch view)."""
    buf = torch.from_numpy(np.concatenate([np.zeros(1, a.dtype), a.ravel()])).cuda()
    t = mnn.from_dlpack(buf[1:].reshape(a.shape))
    assert t.shape == a.shape
    return t, buf  # keep buf alive with the view


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", ["relu", "gelu", "sigmoid"])
def test_neuron_packs_and_tails(name, n, dtype):
    x = _data((n,), dtype, seed=n)
    dy = _data((n,), dtype, seed=n + 1, scale=1.0)
    x[n // 2] = np.nan  # NaN passes through both paths
    tol = (0, 0) if name == "relu" else TOL[dtype]
    _close(mnn.ops.neuron_forward(_cuda(x), name).numpy(), mnn.ops.neuron_forward(x, name), tol)
    _close(mnn.ops.neuron_backward(_cuda(dy), _cuda(x), name).numpy(), mnn.ops.neuron_backward(dy, x, name), tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [9, 4103])
def test_neuron_unaligned_inputs(torch, n, dtype):
    x = _data((n,), dtype, seed=3)
    dy = _data((n,), dtype, seed=4, scale=1.0)
    xu, keep_x = _unaligned(torch, x)
    dyu, keep_dy = _unaligned(torch, dy)
    _close(mnn.ops.neuron_forward(xu, "gelu").numpy(), mnn.ops.neuron_forward(x, "gelu"), TOL[dtype])
    # One input aligned, the other not: the whole launch takes the scalar path.
    _close(mnn.ops.neuron_backward(dyu, _cuda(x), "gelu").numpy(), mnn.ops.neuron_backward(dy, x, "gelu"), TOL[dtype])
    _close(mnn.ops.neuron_backward(_cuda(dy), xu, "relu").numpy(), mnn.ops.neuron_backward(dy, x, "relu"), (0, 0))
    del keep_x, keep_dy


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("acc", ["float", "half"])
@pytest.mark.parametrize("shape", [(1, 3), (5, 7), (9, 13), (33, 129)])
def test_fully_connected_epilogue_packs(shape, acc, dtype):
    # P = 1: every pack of outputs crosses channels (and rows when O is not a multiple of the pack).
    if acc == "half" and dtype == "float32":
        pytest.skip("half accumulation is a float16 option")
    n, o = shape
    x = _data((n, 11), dtype, seed=5, scale=1.0)
    w = _data((o, 11), dtype, seed=6, scale=0.3)
    b = _data((o,), dtype, seed=7)
    y, z = mnn.ops.fully_connected_forward(_cuda(x), _cuda(w), _cuda(b), neuron="relu", accumulation=acc,
                                           return_preactivation=True)
    # The CPU reference sums in float32; half sums land within 2% of the largest value.
    y_cpu, z_cpu = mnn.ops.fully_connected_forward(x, w, b, neuron="relu", return_preactivation=True)
    tol = GEMM_TOL[dtype] if acc == "float" else (2e-2 * float(np.abs(np.asarray(z_cpu, np.float64)).max()), 0)
    _close(z.numpy(), z_cpu, tol)
    _close(y.numpy(), y_cpu, tol)
    # y is exactly relu(z) on the device: the epilogue rounds once, from the same value.
    np.testing.assert_array_equal(y.numpy(), np.maximum(z.numpy(), 0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", [(5, 3), (8, 8), (7, 12)])
@pytest.mark.parametrize("neuron", [None, "relu", "tanh"])
def test_conv_epilogue_packs(neuron, hw, dtype):
    # P = 15 (channels change inside a pack), 64 (packs tile each channel), 84; float16 goes
    # through cuDNN's float16 output read directly by the epilogue.
    h, w_ = hw
    x = _data((3, 4, h + 2, w_ + 2), dtype, seed=8, scale=1.0)
    w = _data((5, 4, 3, 3), dtype, seed=9, scale=0.3)
    b = _data((5,), dtype, seed=10)
    y, z = mnn.ops.conv2d_forward(_cuda(x), _cuda(w), _cuda(b), neuron=neuron, return_preactivation=True)
    y_cpu, z_cpu = mnn.ops.conv2d_forward(x, w, b, neuron=neuron, return_preactivation=True)
    assert y.shape == (3, 5, h, w_)
    _close(z.numpy(), z_cpu, GEMM_TOL[dtype])
    _close(y.numpy(), y_cpu, GEMM_TOL[dtype])
    # No bias and no neuron: cuDNN writes the result itself (no epilogue).
    plain = mnn.ops.conv2d_forward(_cuda(x), _cuda(w), None)
    _close(plain.numpy(), mnn.ops.conv2d_forward(x, w, None), GEMM_TOL[dtype])


DISJOINT = [dict(kernel_size=2), dict(kernel_size=2, stride=3), dict(kernel_size=(2, 3), stride=(3, 3), padding=1),
            dict(kernel_size=3, stride=(3, 4), padding=(1, 0, 2, 1)), dict(kernel_size=1, stride=2),
            dict(kernel_size=(3, 2)), dict(kernel_size=3), dict(kernel_size=2, padding=(1, 0, 0, 0))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", DISJOINT)
@pytest.mark.parametrize("shape", [(2, 3, 13, 11), (1, 1, 4, 4), (4, 8, 28, 28), (3, 2, 12, 12)])
def test_max_pool_backward_disjoint_windows(shape, cfg, dtype):
    # Windows that tile the input exactly (2x2 on 28x28, 3x2 and 3x3 on 12x12) take the
    # one-thread-per-window kernel (2-wide ones with paired stores); the others the per-input
    # gather, where inputs outside every window (gaps, trailing rows) get 0. Ties and NaN
    # follow the argmax.
    x = _data(shape, dtype, seed=11)
    x.flat[5] = np.nan
    x.flat[-3:] = 1.0
    y, st = mnn.ops.max_pool2d_forward(_cuda(x), **cfg)
    y_cpu, st_cpu = mnn.ops.max_pool2d_forward(x, **cfg)
    np.testing.assert_array_equal(y.numpy(), y_cpu)
    dy = _data(y_cpu.shape, dtype, seed=12, scale=1.0)
    dx = mnn.ops.max_pool2d_backward(_cuda(dy), st).numpy()
    ref = mnn.ops.max_pool2d_backward(dy, st_cpu)
    np.testing.assert_array_equal(dx, ref)  # one winner per input: a copy, exact


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", [dict(kernel_size=2, stride=(1, 2)),
                                 dict(kernel_size=(3, 2), stride=(2, 2), padding=(1, 1, 0, 0))])
def test_max_pool_paired_forward_overlapping_rows(cfg, dtype):
    # 2-wide windows at even columns read each window row as one pair, also when rows overlap
    # or are padded; NaN and ties (equal values in a window) pick the CPU's winner.
    x = _data((2, 3, 9, 12), dtype, seed=15)
    x.flat[7] = np.nan
    x[1, 1, 4, 4:8] = 2.0
    y, st = mnn.ops.max_pool2d_forward(_cuda(x), **cfg)
    y_cpu, st_cpu = mnn.ops.max_pool2d_forward(x, **cfg)
    np.testing.assert_array_equal(y.numpy(), y_cpu)
    dy = _data(y_cpu.shape, dtype, seed=16, scale=1.0)
    _close(mnn.ops.max_pool2d_backward(_cuda(dy), st).numpy(), mnn.ops.max_pool2d_backward(dy, st_cpu), TOL[dtype])


def test_max_pool_backward_unaligned_gradient(torch):
    x = _data((2, 3, 9, 7), "float32", seed=13)
    y, st = mnn.ops.max_pool2d_forward(_cuda(x), kernel_size=2)
    _, st_cpu = mnn.ops.max_pool2d_forward(x, kernel_size=2)
    dy = _data(tuple(y.shape), "float32", seed=14)
    dyu, keep = _unaligned(torch, dy)
    dx = mnn.ops.max_pool2d_backward(dyu, st)
    np.testing.assert_array_equal(dx.numpy(), mnn.ops.max_pool2d_backward(dy, st_cpu))
    del keep
