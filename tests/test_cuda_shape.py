"""CUDA backend of the shape and arithmetic families against the CPU backend: upsampling,
concatenation, reshape, pad, crop, image <-> matrix, the tiled matrix transpose and broadcasting
arithmetic, forward and gradients, odd sizes, float32 and float16; a graph with the new nodes on
device="cuda".

Skipped unless this build has a CUDA device (mnn.available_devices() lists cuda)."""

import numpy as np
import pytest

import metalnn as mnn

HAS_CUDA = any(d.type == "cuda" for d in mnn.available_devices())
pytestmark = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device in this build/machine")

DTYPES = ["float32", "float16"]
TOL = {"float32": (1e-5, 1e-5), "float16": (2e-3, 2e-3)}


def _data(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32).astype(dtype)


def _cuda(a):
    return mnn.Tensor(a, device="cuda")


def _close(got, ref, dtype, scale=1.0):
    assert isinstance(got, mnn.Tensor) and got.device.type == "cuda"
    atol, rtol = TOL[dtype]
    got = np.asarray(got.numpy()).astype(np.float64)
    ref = np.asarray(ref).astype(np.float64)
    np.testing.assert_allclose(got, ref, atol=atol * scale, rtol=rtol, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [(2, 3), (1, 1), (3, 2)])
def test_upsample_nearest(scale, dtype):
    x = _data((3, 5, 7, 9), dtype)
    y = mnn.ops.upsample_nearest_forward(_cuda(x), scale)
    _close(y, mnn.ops.upsample_nearest_forward(x, scale), dtype)
    dy = _data(y.shape, dtype, 1)
    _close(mnn.ops.upsample_nearest_backward(_cuda(dy), scale), mnn.ops.upsample_nearest_backward(dy, scale), dtype,
           scale=4.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("shape,scale", [((3, 5, 7, 9), (2, 3)), ((2, 3, 1, 5), (3, 2)), ((1, 2, 6, 1), (2, 5))])
def test_upsample_bilinear(shape, scale, align, dtype):
    x = _data(shape, dtype, 2)
    y = mnn.ops.upsample_bilinear_forward(_cuda(x), scale, align)
    _close(y, mnn.ops.upsample_bilinear_forward(x, scale, align), dtype)
    dy = _data(y.shape, dtype, 3)
    _close(mnn.ops.upsample_bilinear_backward(_cuda(dy), scale, align),
           mnn.ops.upsample_bilinear_backward(dy, scale, align), dtype, scale=4.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_concat_and_slices(dtype):
    xs = [_data((3, c, 5, 7), dtype, c) for c in (2, 1, 5)]
    y = mnn.ops.concat_forward([_cuda(x) for x in xs])
    _close(y, np.concatenate(xs, axis=1), dtype)
    parts = mnn.ops.concat_backward(y, [2, 1, 5])
    for p, x in zip(parts, xs):
        _close(p, x, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["zero", "edge", "reflect"])
@pytest.mark.parametrize("pads,channels", [((1, 2, 3, 0), (0, 0)), ((2, 2, 1, 1), (1, 2))])
def test_pad(pads, channels, mode, dtype):
    x = _data((2, 4, 5, 7), dtype, 4)
    y = mnn.ops.pad_forward(_cuda(x), pads, mode, channels)
    _close(y, mnn.ops.pad_forward(x, pads, mode, channels), dtype)
    dy = _data(y.shape, dtype, 5)
    _close(mnn.ops.pad_backward(_cuda(dy), x.shape, pads, mode, channels),
           mnn.ops.pad_backward(dy, x.shape, pads, mode, channels), dtype, scale=4.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_crop_reshape_converters(dtype):
    x = _data((3, 5, 9, 7), dtype, 6)
    y = mnn.ops.crop_forward(_cuda(x), (1, 2, 3), (3, 5, 4))
    _close(y, x[:, 1:4, 2:7, 3:7], dtype)
    _close(mnn.ops.crop_backward(y, x.shape, (1, 2, 3)), mnn.ops.crop_backward(x[:, 1:4, 2:7, 3:7].copy(), x.shape,
                                                                               (1, 2, 3)), dtype)
    m = mnn.ops.image_to_matrix(_cuda(x))
    assert m.shape == (3, 5 * 9 * 7)
    _close(m, x.reshape(3, -1), dtype)
    _close(mnn.ops.matrix_to_image(m, (5, 9, 7)), x, dtype)
    _close(mnn.ops.reshape_forward(_cuda(x), (3, -1, 7)), x.reshape(3, -1, 7), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 13), (1, 45), (45, 1), (1, 1), (32, 32), (33, 65), (2049, 1031)])
def test_transpose_matrix(shape, dtype):
    x = _data(shape, dtype, 10)
    y = mnn.ops.transpose_matrix_forward(_cuda(x))
    assert isinstance(y, mnn.Tensor) and y.device.type == "cuda" and y.shape == shape[::-1]
    # A copy through 32 x 32 shared-memory tiles: bit-exact, partial tiles included.
    np.testing.assert_array_equal(np.asarray(y.numpy()).view(np.uint8), np.ascontiguousarray(x.T).view(np.uint8))
    dx = mnn.ops.transpose_matrix_backward(y)
    np.testing.assert_array_equal(np.asarray(dx.numpy()).view(np.uint8), x.view(np.uint8))


def test_transpose_matrix_float16_bits_and_bad_input():
    x = np.arange(5 * 70, dtype=np.float16).reshape(5, 70)
    bits = x.view(np.uint16)
    bits[2, 3], bits[4, 69] = 0x7E01, 0xFC00  # a NaN payload, -inf
    y = mnn.ops.transpose_matrix_forward(_cuda(x))
    np.testing.assert_array_equal(np.asarray(y.numpy()).view(np.uint16), bits.T)
    assert mnn.ops.transpose_matrix_forward(_cuda(np.zeros((0, 3), np.float32))).shape == (3, 0)
    with pytest.raises(ValueError, match=r"^\[transpose_matrix_forward\].*x"):
        mnn.ops.transpose_matrix_forward(_cuda(np.zeros((2, 3, 4), np.float32)))
    with pytest.raises(ValueError, match=r"^\[transpose_matrix_backward\].*dy"):
        mnn.ops.transpose_matrix_backward(_cuda(np.zeros(5, np.float32)))


OPS = ["add", "subtract", "multiply", "divide"]
SHAPES = [((3, 5, 7, 9), (3, 5, 7, 9)), ((3, 5, 7, 9), (1, 5, 1, 1)), ((3, 5, 7, 9), (3, 1, 7, 9)),
          ((3, 5, 7, 9), (1, 5, 7, 9)), ((3, 1, 7, 1), (1, 5, 1, 9)), ((33, 7), (1, 7)),
          ((64, 40, 3, 3), (1, 40, 1, 1))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("a_shape,b_shape", SHAPES)
@pytest.mark.parametrize("op", OPS)
def test_arithmetic(op, a_shape, b_shape, dtype):
    a, b = _data(a_shape, dtype, 7), _data(b_shape, dtype, 8)
    if op == "divide":
        b = (np.sign(b.astype(np.float32)) * (np.abs(b.astype(np.float32)) + 0.5)).astype(dtype)
    y = mnn.ops.arithmetic_forward(op, _cuda(a), _cuda(b))
    _close(y, mnn.ops.arithmetic_forward(op, a, b), dtype)
    dy = _data(y.shape, dtype, 9)
    for operand in (0, 1):
        got = mnn.ops.arithmetic_backward(op, operand, _cuda(dy), a_shape, b_shape, _cuda(a), _cuda(b))
        ref = mnn.ops.arithmetic_backward(op, operand, dy, a_shape, b_shape, a, b)
        # Long reductions sum in another order than the CPU: scale atol with the term count.
        terms = int(np.prod(y.shape)) // int(np.prod(a_shape if operand == 0 else b_shape))
        _close(got, ref, dtype, scale=max(1.0, np.sqrt(terms)) * max(1.0, float(np.abs(ref).max())))


def test_graph_blocks_on_cuda_match_cpu():
    from metalnn.graph.data_source import ConvolutionWeights

    def build(device):
        x = mnn.ImageNode("x")
        h = mnn.ConvolutionNode(x, ConvolutionWeights(2, 4, 3, neuron="tanh", seed=1, label="c1"))
        g = mnn.ConvolutionNode(h.result, ConvolutionWeights(4, 1, 3, neuron="sigmoid", seed=2, label="g"))
        gated = mnn.AdditionNode(mnn.MultiplicationNode(h.result, g.result).result, h.result)
        up = mnn.UpsamplingBilinearNode(gated.result, 2)
        cat = mnn.ConcatenationNode([up.result, mnn.UpsamplingNearestNode(h.result, 2).result])
        pad = mnn.PadNode(cat.result, 1, mode="reflect")
        crop = mnn.CropNode(pad.result, (0, 1, 1), (8, 16, 16))
        fc = mnn.FullyConnectedNode(mnn.ImageToMatrixNode(crop.result).result,
                                    ConvolutionWeights(8 * 16 * 16, 3, 1, seed=3, label="fc"))
        loss = mnn.SoftmaxCrossEntropyLossNode(fc.result)
        train = mnn.Graph.training(loss, device=device)
        return mnn.Graph(train.results[0], result_needed=True, device=device), loss

    r = np.random.default_rng(10)
    x = r.standard_normal((3, 2, 8, 8)).astype(np.float32)
    y = r.integers(0, 3, 3).astype(np.int32)
    g_cpu, _ = build("cpu")
    g_gpu, _ = build("cuda")
    dx_cpu = g_cpu.run(x, labels=y).result
    dx_gpu = np.asarray(g_gpu.run(x, labels=y).result)
    np.testing.assert_allclose(dx_gpu, dx_cpu, atol=1e-5 * max(1.0, float(np.abs(dx_cpu).max())), rtol=1e-4)
