"""CUDA: transposed convolution (composed from the conv kernels, bias + neuron through a
depthwise 1x1 convolution) and depthwise / grouped / dilated convolutions against the CPU
backend, odd sizes, float32 and float16, plus a transposed-convolution decoder graph step.

Skipped unless this build has a CUDA device (mnn.available_devices() lists cuda)."""

import numpy as np
import pytest

import metalnn as mnn

HAS_CUDA = any(d.type == "cuda" for d in mnn.available_devices())
pytestmark = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device in this build/machine")

DTYPES = ["float32", "float16"]
# cuBLAS and the CPU sum the products in different orders.
TOL = {"float32": (2e-4, 2e-4), "float16": (2e-2, 1e-2)}


def _data(shape, dtype, seed, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32).astype(dtype)


def _cuda(a):
    return mnn.Tensor(a, device="cuda")


def _close(got, ref, dtype):
    atol, rtol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(ref, np.float64), atol=atol, rtol=rtol,
                               equal_nan=True)


# (x shape, C_out, kernel, geometry)
TRANSPOSED = [
    ((3, 6, 5, 7), 5, (4, 4), dict(stride=2, padding=1)),
    ((2, 6, 4, 5), 9, (3, 2), dict(stride=(1, 2), padding=(0, 1, 1, 0), output_padding=(0, 1), dilation=(2, 1),
                                   groups=3)),
    ((2, 5, 3, 4), 5, (3, 3), dict(stride=(2, 3), padding=(1, 0, 0, 2), output_padding=(1, 2), groups=5)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("neuron", [None, "relu", "tanh"])
@pytest.mark.parametrize("case", range(len(TRANSPOSED)))
def test_conv_transpose2d_matches_cpu(case, neuron, dtype):
    shape, cout, k, geo = TRANSPOSED[case]
    g = geo.get("groups", 1)
    x = _data(shape, dtype, 1)
    w = _data((shape[1], cout // g, *k), dtype, 2, 0.3)
    b = _data((cout,), dtype, 3)
    y, z = mnn.ops.conv_transpose2d_forward(_cuda(x), _cuda(w), _cuda(b), neuron=neuron, return_preactivation=True,
                                            **geo)
    y_cpu, z_cpu = mnn.ops.conv_transpose2d_forward(x, w, b, neuron=neuron, return_preactivation=True, **geo)
    assert y.device.type == "cuda" and y.shape == y_cpu.shape
    _close(y.numpy(), y_cpu, dtype)
    _close(z.numpy(), z_cpu, dtype)
    plain = mnn.ops.conv_transpose2d_forward(_cuda(x), _cuda(w), **geo)
    _close(plain.numpy(), mnn.ops.conv_transpose2d_forward(x, w, **geo), dtype)
    dy = _data(y_cpu.shape, dtype, 4)
    _close(mnn.ops.conv_transpose2d_backward_input(_cuda(dy), _cuda(w), x.shape, **geo).numpy(),
           mnn.ops.conv_transpose2d_backward_input(dy, w, x.shape, **geo), dtype)
    _close(mnn.ops.conv_transpose2d_backward_weight(_cuda(dy), _cuda(x), w.shape, **geo).numpy(),
           mnn.ops.conv_transpose2d_backward_weight(dy, x, w.shape, **geo), dtype)
    _close(mnn.ops.conv_transpose2d_backward_bias(_cuda(dy)).numpy(), mnn.ops.conv_transpose2d_backward_bias(dy),
           dtype)


# Depthwise (with and without a channel multiplier), grouped and dilated convolutions.
CONVS = [
    ((2, 6, 11, 9), 6, (3, 3), dict(padding=1, groups=6)),
    ((2, 4, 10, 9), 8, (3, 3), dict(stride=(2, 1), padding=(2, 2, 3, 3), dilation=(2, 3), groups=4)),
    ((3, 6, 9, 13), 9, (3, 2), dict(stride=(1, 2), padding=(2, 0, 1, 1), dilation=(1, 2), groups=3)),
    ((1, 5, 13, 12), 7, (3, 3), dict(padding=3, dilation=3)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(CONVS)))
def test_depthwise_grouped_dilated_conv2d_matches_cpu(case, dtype):
    shape, cout, k, geo = CONVS[case]
    g = geo.get("groups", 1)
    x = _data(shape, dtype, 5)
    w = _data((cout, shape[1] // g, *k), dtype, 6, 0.3)
    b = _data((cout,), dtype, 7)
    y = mnn.ops.conv2d_forward(_cuda(x), _cuda(w), _cuda(b), neuron="relu", **geo)
    y_cpu = mnn.ops.conv2d_forward(x, w, b, neuron="relu", **geo)
    _close(y.numpy(), y_cpu, dtype)
    dy = _data(y_cpu.shape, dtype, 8)
    _close(mnn.ops.conv2d_backward_input(_cuda(dy), _cuda(w), x.shape, **geo).numpy(),
           mnn.ops.conv2d_backward_input(dy, w, x.shape, **geo), dtype)
    _close(mnn.ops.conv2d_backward_weight(_cuda(dy), _cuda(x), w.shape, **geo).numpy(),
           mnn.ops.conv2d_backward_weight(dy, x, w.shape, **geo), dtype)


def test_conv_transpose_decoder_graph_on_cuda():
    from metalnn.graph import (
        ConvolutionTransposeNode,
        ConvolutionTransposeWeights,
        Graph,
        ImageNode,
        SoftmaxCrossEntropyLossNode,
    )

    rng = np.random.default_rng(9)
    codes = rng.standard_normal((8, 6, 4, 4)).astype(np.float32)
    labels = rng.integers(0, 3, size=(8, 8, 8)).astype(np.int32)
    losses = {}
    for dev in ["cpu", "cuda"]:
        x = ImageNode("code")
        up = ConvolutionTransposeNode(x, ConvolutionTransposeWeights(6, 3, 4, stride=2, neuron="relu",
                                                                     optimizer=mnn.Adam(learning_rate=0.01), seed=1),
                                      padding=1)
        graph = Graph.training(SoftmaxCrossEntropyLossNode(up.result), device=dev)
        losses[dev] = [float(np.asarray(graph.run(codes, labels=labels).loss)) for _ in range(3)]
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-3)
    assert losses["cuda"][2] < losses["cuda"][0]
