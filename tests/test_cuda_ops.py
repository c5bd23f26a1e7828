"""CUDA backend: every CUDA op against the CPU backend on odd sizes, float32 and float16.

Skipped unless this build has a CUDA device (mnn.available_devices() lists cuda)."""

import numpy as np
import pytest

import metalnn as mnn

HAS_CUDA = any(d.type == "cuda" for d in mnn.available_devices())
pytestmark = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device in this build/machine")

NEURONS = ["none", "relu", "leaky_relu", "sigmoid", "hard_sigmoid", "tanh", "linear", "absolute", "softplus",
           "elu", "relun", "gelu"]
DTYPES = ["float32", "float16"]
# float16 outputs are rounded once from float32 on both backends; transcendental functions
# may differ by a few float32 ulps, which can flip one float16 rounding.
TOL = {"float32": (1e-6, 2e-6), "float16": (1e-3, 2e-3)}


def _data(shape, dtype, seed=0, scale=3.0):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * scale
    return x.astype(dtype)


def _cuda(a):
    return mnn.Tensor(a, device="cuda")


def _close(got, ref, dtype):
    atol, rtol = TOL[dtype]
    got = np.asarray(got).astype(np.float64)
    ref = np.asarray(ref).astype(np.float64)
    np.testing.assert_allclose(got, ref, atol=atol, rtol=rtol, equal_nan=True)


def test_tensor_round_trip():
    a = _data((3, 5, 7), "float32")
    t = _cuda(a)
    assert t.device.type == "cuda" and t.shape == (3, 5, 7) and t.dtype == "float32"
    np.testing.assert_array_equal(t.numpy(), a)
    np.testing.assert_array_equal(np.asarray(t), a)
    h = mnn.Tensor(a, dtype="float16", device="cuda")
    np.testing.assert_array_equal(h.numpy(), a.astype(np.float16))
    # The device copy is independent of the source array.
    a[:] = 0
    assert np.any(t.numpy() != 0)


def test_empty_tensor():
    t = _cuda(np.zeros((0, 3), np.float32))
    assert t.numpy().shape == (0, 3)
    y = mnn.ops.neuron_forward(t, "relu")
    assert y.shape == (0, 3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NEURONS)
def test_neuron_forward_backward(name, dtype):
    x = _data((5, 3, 13, 11), dtype, seed=1)
    dy = _data(x.shape, dtype, seed=2, scale=1.0)
    x.flat[7] = np.nan  # NaN propagates on both backends
    y = mnn.ops.neuron_forward(_cuda(x), name)
    assert isinstance(y, mnn.Tensor) and y.device.type == "cuda"
    _close(y.numpy(), mnn.ops.neuron_forward(x, name), dtype)
    dx = mnn.ops.neuron_backward(_cuda(dy), _cuda(x), name)
    assert dx.device.type == "cuda"
    _close(dx.numpy(), mnn.ops.neuron_backward(dy, x, name), dtype)


def test_neuron_custom_coefficients():
    x = _data((1001,), "float32", seed=3)
    for name, kw in [("leaky_relu", {"a": 0.3}), ("tanh", {"a": 1.7, "b": 0.6}), ("relun", {"a": 0.1, "b": 1.5}),
                     ("softplus", {"a": 0.5, "b": 2.0})]:
        _close(mnn.ops.neuron_forward(_cuda(x), name, **kw).numpy(), mnn.ops.neuron_forward(x, name, **kw),
               "float32")


def test_neuron_large_grid_stride():
    # More elements than one grid of 65535 x 256 threads covers: the grid-stride loop must run.
    n = 65535 * 256 + 12345
    x = _data((n,), "float32", seed=4)
    y = mnn.ops.neuron_forward(_cuda(x), "relu").numpy()
    np.testing.assert_array_equal(y, np.maximum(x, 0))


def test_neuron_mixed_devices_raise():
    x = _data((4, 5), "float32")
    with pytest.raises(ValueError, match=r"\[neuron_backward\]"):
        mnn.ops.neuron_backward(x, _cuda(x), "relu")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keep", [0.3, 0.77, 1.0])
def test_dropout_matches_cpu_mask(dtype, keep):
    x = _data((3, 7, 9, 5), dtype, seed=5) + np.asarray(10, dtype)  # nonzero, so y reveals the mask
    y_gpu, st_gpu = mnn.ops.dropout_forward(_cuda(x), keep, 1234)
    y_cpu, st_cpu = mnn.ops.dropout_forward(x, keep, 1234)
    assert y_gpu.device.type == "cuda"
    np.testing.assert_array_equal(y_gpu.numpy() != 0, st_cpu.mask.astype(bool))
    _close(y_gpu.numpy(), y_cpu, dtype)
    dy = _data(x.shape, dtype, seed=6)
    _close(mnn.ops.dropout_backward(_cuda(dy), st_gpu).numpy(), mnn.ops.dropout_backward(dy, st_cpu), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 13), (3, 5, 9, 7), (2, 1001), (1, 1)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_forward_backward(dtype, shape, log):
    fwd = mnn.ops.log_softmax_forward if log else mnn.ops.softmax_forward
    bwd = mnn.ops.log_softmax_backward if log else mnn.ops.softmax_backward
    x = _data(shape, dtype, seed=7)
    y = fwd(_cuda(x))
    assert y.device.type == "cuda"
    y_cpu = fwd(x)
    _close(y.numpy(), y_cpu, dtype)
    dy = _data(shape, dtype, seed=8, scale=1.0)
    _close(bwd(_cuda(dy), _cuda(y_cpu)).numpy(), bwd(dy, y_cpu), dtype)


def test_softmax_nan_propagates():
    x = _data((4, 6), "float32")
    x[1, 2] = np.nan
    y = mnn.ops.softmax_forward(_cuda(x)).numpy()
    assert np.all(np.isnan(y[1])) and np.all(np.isfinite(np.delete(y, 1, axis=0)))


def test_stream_runs_ops_in_order():
    x = _data((17, 19), "float32", seed=9)
    t = _cuda(x)
    out = {}
    stream = mnn.Stream("cuda")
    assert stream.device.type == "cuda"
    ev = stream.submit([lambda: out.setdefault("y", mnn.ops.neuron_forward(t, "sigmoid")),
                        lambda: out.setdefault("z", mnn.ops.neuron_forward(out["y"], "tanh"))])
    ev.wait()
    assert ev.done()
    ref = mnn.ops.neuron_forward(mnn.ops.neuron_forward(x, "sigmoid"), "tanh")
    _close(out["z"].numpy(), ref, "float32")
    stream.synchronize()
