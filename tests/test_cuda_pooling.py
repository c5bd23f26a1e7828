"""CUDA: L2-norm and dilated max pooling against the CPU backend (forward and gradient, odd
sizes, asymmetric padding, dilation, float32 and float16).

Skipped unless this build has a CUDA device (mnn.available_devices() lists cuda)."""

import numpy as np
import pytest

import metalnn as mnn

HAS_CUDA = any(d.type == "cuda" for d in mnn.available_devices())
pytestmark = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device in this build/machine")

DTYPES = ["float32", "float16"]
TOL = {"float32": (1e-6, 2e-6), "float16": (1e-3, 2e-3)}
CASES = [
    dict(kernel_size=3, stride=2, padding=(2, 1, 1, 2), dilation=2),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(0, 0, 3, 1), dilation=(3, 2)),
    dict(kernel_size=(3, 2), stride=(1, 3), padding=(2, 0, 1, 1), dilation=1),
]


def _data(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32).astype(dtype)


def _cuda(a):
    return mnn.Tensor(a, device="cuda")


def _close(got, ref, dtype):
    atol, rtol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(ref, np.float64), atol=atol, rtol=rtol,
                               equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", CASES)
def test_dilated_max_pool_matches_cpu(cfg, dtype):
    x = _data((3, 5, 13, 11), dtype, 1)
    x.flat[17] = np.nan
    y, st = mnn.ops.dilated_max_pool2d_forward(_cuda(x), **cfg)
    y_cpu, st_cpu = mnn.ops.dilated_max_pool2d_forward(x, **cfg)
    assert y.device.type == "cuda"
    np.testing.assert_array_equal(y.numpy(), y_cpu)  # a selection: exact
    dy = _data(y_cpu.shape, dtype, 2)
    _close(mnn.ops.max_pool2d_backward(_cuda(dy), st).numpy(), mnn.ops.max_pool2d_backward(dy, st_cpu), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", CASES)
def test_l2_pool_matches_cpu(cfg, dtype):
    x = _data((3, 5, 13, 11), dtype, 3)
    x[0, 0, :4, :4] = 0  # all-zero windows: y = 0, gradient 0
    y = mnn.ops.l2_pool2d_forward(_cuda(x), **cfg)
    y_cpu = mnn.ops.l2_pool2d_forward(x, **cfg)
    _close(y.numpy(), y_cpu, dtype)
    dy = _data(y_cpu.shape, dtype, 4)
    dx = mnn.ops.l2_pool2d_backward(_cuda(dy), _cuda(x), _cuda(y_cpu), **cfg).numpy()
    assert np.isfinite(dx).all()
    _close(dx, mnn.ops.l2_pool2d_backward(dy, x, y_cpu, **cfg), dtype)
