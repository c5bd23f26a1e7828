"""CUDA backend, neuron family: every neuron type (defaults and custom a, b, c, NaN/Inf and
domain edges), the new types in the fused layer epilogue, and PReLU (forward, input and
slope gradients) on device "cuda" against the CPU backend, odd sizes, float32 and float16.

Skipped unless this build has a CUDA device (mnn.available_devices() lists cuda)."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn.graph.data_source import ConvolutionWeights

HAS_CUDA = any(d.type == "cuda" for d in mnn.available_devices())
pytestmark = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device in this build/machine")

TYPES = mnn.ops.NEURON_TYPES
NEW = ("softsign", "power", "exponential", "logarithm", "silu", "mish", "selu")
DTYPES = ["float32", "float16"]
CUSTOM = {"leaky_relu": (0.3, 0.0, 0.0), "tanh": (1.7, 0.6, 0.0), "softplus": (0.5, 2.0, 0.0),
          "power": (0.5, 1.0, 1.5), "exponential": (0.7, -0.5, 2.5), "logarithm": (1.5, 3.0, 10.0),
          "selu": (1.2, 0.9, 0.0)}
# CUDA's expf/logf/powf/tanhf/erff are within a few ulp of glibc's, not bit-equal; float16
# outputs are rounded once from float32 on both sides, which a few ulp can flip.
TOL = {"float32": 1e-5, "float16": 2e-3}


def _data(shape, dtype, seed=0, scale=3.0):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * scale
    return x.astype(dtype)


def _cuda(a):
    return mnn.Tensor(a, device="cuda")


def _close(got, ref, dtype, scale=1.0):
    tol = TOL[dtype] * scale
    got = np.asarray(got).astype(np.float64)
    ref = np.asarray(ref).astype(np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, atol=tol, rtol=tol, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,custom", [(t, False) for t in TYPES] + [(t, True) for t in CUSTOM])
def test_neuron_forward_backward(name, custom, dtype):
    x = _data((5, 3, 13, 11), dtype, seed=1)  # 2145 elements: not a multiple of the block
    a, b, c = CUSTOM[name] if custom else (None, None, None)
    edge = -b / a if custom and name in ("logarithm", "power") else 0.5  # exactly representable
    if custom and name in ("logarithm", "power"):
        # random values keep clear of the edge: there a*x + b cancels, and FMA contraction (or
        # not) changes the rounding of what is left; the exact edge is set below
        z = a * x.astype(np.float64) + b
        x = np.where(np.abs(z) < 0.05, x + np.float32(0.1 / a), x).astype(dtype)
    x.reshape(-1)[:8] = [0.0, np.nan, 25.0, -25.0, np.inf, -np.inf, edge, edge - 1.0]
    dy = _data(x.shape, dtype, seed=2, scale=1.0)
    y = mnn.ops.neuron_forward(_cuda(x), name, a, b, c)
    assert y.device.type == "cuda" and y.dtype == dtype and y.shape == x.shape
    _close(y.numpy(), mnn.ops.neuron_forward(x, name, a, b, c), dtype)
    dx = mnn.ops.neuron_backward(_cuda(dy), _cuda(x), name, a, b, c)
    _close(dx.numpy(), mnn.ops.neuron_backward(dy, x, name, a, b, c), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NEW)
def test_new_types_in_fused_layer_epilogue(name, dtype):
    r = np.random.default_rng(3)
    x = r.standard_normal((7, 13)).astype(dtype)
    w = (r.standard_normal((9, 13)) * 0.3).astype(dtype)
    bias = (r.standard_normal(9) + (10.0 if name == "logarithm" else 0.0)).astype(dtype)
    y = mnn.ops.fully_connected_forward(_cuda(x), _cuda(w), _cuda(bias), neuron=name)
    ref = mnn.ops.fully_connected_forward(x, w, bias, neuron=name)
    _close(y.numpy(), ref, dtype, scale=10.0)  # the GEMMs (cuBLAS vs CPU) sum in different orders


PRELU_SHAPES = [(3, 5, 7, 9), (13, 7), (2, 37, 3), (1, 3, 1, 1), (4, 3, 40, 40)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", PRELU_SHAPES)
def test_prelu(shape, dtype):
    x = _data(shape, dtype, seed=4, scale=2.0)
    x.reshape(-1)[:2] = [0.0, -1.0]
    s = _data((shape[1],), dtype, seed=5, scale=0.5)
    dy = _data(shape, dtype, seed=6, scale=1.0)
    y = mnn.ops.prelu_forward(_cuda(x), _cuda(s))
    assert y.device.type == "cuda" and y.shape == x.shape
    _close(y.numpy(), mnn.ops.prelu_forward(x, s), dtype)
    dx = mnn.ops.prelu_backward_input(_cuda(dy), _cuda(x), _cuda(s))
    _close(dx.numpy(), mnn.ops.prelu_backward_input(dy, x, s), dtype)
    ds = mnn.ops.prelu_backward_slopes(_cuda(dy), _cuda(x))
    assert ds.shape == (shape[1],) and ds.dtype == dtype
    per_channel = x.size // shape[1]
    # a block reduction vs the CPU's float64 row sums: float32 rounding grows with the count
    _close(ds.numpy(), mnn.ops.prelu_backward_slopes(dy, x), dtype, scale=max(1.0, per_channel ** 0.5))


def test_prelu_nan_and_empty():
    x = np.array([[np.nan, 1.0, -1.0], [np.inf, -np.inf, 2.0]], np.float32)
    s = np.array([0.5, 0.25, 2.0], np.float32)
    dy = np.ones_like(x)
    _close(mnn.ops.prelu_forward(_cuda(x), _cuda(s)).numpy(), mnn.ops.prelu_forward(x, s), "float32")
    _close(mnn.ops.prelu_backward_input(_cuda(dy), _cuda(x), _cuda(s)).numpy(),
           mnn.ops.prelu_backward_input(dy, x, s), "float32")
    ds = mnn.ops.prelu_backward_slopes(_cuda(dy), _cuda(x)).numpy()
    assert np.isnan(ds[0]) and ds[1] == -np.inf and ds[2] == -1.0
    e = np.zeros((0, 3, 2), np.float32)
    assert mnn.ops.prelu_forward(_cuda(e), _cuda(s)).shape == (0, 3, 2)
    np.testing.assert_array_equal(mnn.ops.prelu_backward_slopes(_cuda(e), _cuda(e)).numpy(), np.zeros(3))


def test_prelu_device_mismatch_raises():
    x, s = _data((2, 3, 4), "float32"), np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"^\[prelu_forward\].*slopes"):
        mnn.ops.prelu_forward(_cuda(x), mnn.Tensor(s))


def test_prelu_graph_trains_on_cuda():
    """The PReLU node's slopes train on device cuda as on the CPU."""
    r = np.random.default_rng(7)
    x, labels = r.standard_normal((6, 4)).astype(np.float32), np.array([0, 1, 2, 0, 1, 2], np.int32)
    results = {}
    for device in ("cpu", "cuda"):
        slopes = mnn.PReLUSlopes(4, 0.25, optimizer=mnn.SGD(learning_rate=0.1), label="prelu")
        fc = ConvolutionWeights.from_arrays(
            (np.arange(12, dtype=np.float32).reshape(3, 4) - 6) / 10, np.zeros(3, np.float32),
            optimizer=mnn.SGD(learning_rate=0.1), label="fc")
        src = mnn.ImageNode("x")
        p = mnn.NeuronPReLUNode(src, slopes, label="prelu")
        f = mnn.FullyConnectedNode(p.result, fc, label="fc")
        loss = mnn.SoftmaxCrossEntropyLossNode(f.result, reduction="mean")
        graph = mnn.Graph.training(loss, device=device)
        for _ in range(3):
            graph.run(x, labels=labels)
        graph.synchronize()
        results[device] = np.asarray(graph.parameters()["prelu.weights"]).reshape(-1)
    assert not np.allclose(results["cpu"], 0.25)
    np.testing.assert_allclose(results["cuda"], results["cpu"], atol=1e-5, rtol=1e-5)
