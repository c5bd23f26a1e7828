"""CUDA normalization kernels against the CPU backend: batch norm (training statistics,
running update in place, inference, gradients with batch and frozen statistics), group /
instance / layer norm forward and gradients, cross-channel normalization; odd sizes, float32
and float16, and a graph (conv -> batch norm -> relu -> fc -> loss) training on device cuda.

Skipped unless this build has a CUDA device (mnn.available_devices() lists cuda)."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn import ops

HAS_CUDA = any(d.type == "cuda" for d in mnn.available_devices())
pytestmark = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device in this build/machine")

DTYPES = ["float32", "float16"]
# Reductions sum in another order than the CPU (double combination there); float16 outputs
# are rounded once from float32 on both backends.
TOL = {"float32": (5e-5, 5e-5), "float16": (2e-3, 4e-3)}
SHAPES = [(3, 5, 7, 6), (4, 7), (2, 3, 11), (1, 2, 9, 13), (16, 3, 33, 17)]


def _cuda(a):
    return mnn.Tensor(np.ascontiguousarray(a), device="cuda")


def _host(t):
    return t.numpy() if isinstance(t, mnn.Tensor) else np.asarray(t)


def _close(got, ref, dtype="float32", what=""):
    atol, rtol = TOL[dtype]
    got, ref = _host(got).astype(np.float64), _host(ref).astype(np.float64)
    scale = max(1.0, float(np.max(np.abs(ref[np.isfinite(ref)]), initial=0.0)))
    np.testing.assert_allclose(got, ref, atol=atol * scale, rtol=rtol, equal_nan=True, err_msg=what)


def _inputs(shape, dtype, seed=0):
    r = np.random.default_rng(seed)
    x = (r.standard_normal(shape) * 1.7 + 0.6).astype(dtype)
    dy = r.standard_normal(shape).astype(dtype)
    gamma = (r.standard_normal(shape[1]) * 0.4 + 1).astype(np.float32)
    beta = (r.standard_normal(shape[1]) * 0.4).astype(np.float32)
    return x, dy, gamma, beta


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_training(shape, dtype):
    x, dy, gamma, beta = _inputs(shape, dtype, 1)
    c = shape[1]
    rm, rv = np.linspace(-1, 1, c).astype(np.float32), np.linspace(0.5, 2, c).astype(np.float32)
    rm_ref, rv_ref = rm.copy(), rv.copy()
    y_ref, s_ref = ops.batch_norm_forward(x, gamma, beta, rm_ref, rv_ref, momentum=0.3)
    trm, trv = _cuda(rm), _cuda(rv)
    y, s = ops.batch_norm_forward(_cuda(x), _cuda(gamma), _cuda(beta), trm, trv, momentum=0.3)
    assert isinstance(y, mnn.Tensor) and y.device.type == "cuda" and y.dtype == dtype
    _close(s.mean, s_ref.mean, what="mean")
    _close(s.variance, s_ref.variance, what="variance")
    _close(y, y_ref, dtype, "y")
    _close(trm, rm_ref, what="running_mean")
    _close(trv, rv_ref, what="running_var")
    dx_ref, dg_ref, db_ref = ops.batch_norm_backward(dy, x, gamma, s_ref)
    dx, dg, db = ops.batch_norm_backward(_cuda(dy), _cuda(x), _cuda(gamma), s)
    _close(dx, dx_ref, dtype, "dx")
    _close(dg, dg_ref, "float32" if dtype == "float32" else "float16", "dgamma")
    _close(db, db_ref, "float32" if dtype == "float32" else "float16", "dbeta")


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_inference(dtype):
    shape = (3, 5, 7, 6)
    x, dy, gamma, beta = _inputs(shape, dtype, 2)
    rm, rv = np.linspace(-1, 1, 5).astype(np.float32), np.linspace(0.5, 2, 5).astype(np.float32)
    y_ref, s_ref = ops.batch_norm_forward(x, gamma, beta, rm, rv, training=False)
    trm, trv = _cuda(rm), _cuda(rv)
    y, s = ops.batch_norm_forward(_cuda(x), _cuda(gamma), _cuda(beta), trm, trv, training=False)
    _close(y, y_ref, dtype, "y")
    np.testing.assert_array_equal(trm.numpy(), rm)  # untouched in inference
    ref = ops.batch_norm_backward(dy, x, gamma, s_ref)
    got = ops.batch_norm_backward(_cuda(dy), _cuda(x), _cuda(gamma), s)
    for g, r, what in zip(got, ref, ("dx", "dgamma", "dbeta")):
        _close(g, r, dtype, what)


GROUP_CASES = [((3, 6, 7, 5), 3), ((3, 5, 7, 6), 5), ((3, 5, 7, 6), 1), ((5, 6), 3), ((2, 4, 9), 2),
               ((4, 32, 19, 19), 8)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,groups", GROUP_CASES)
def test_group_norm(shape, groups, dtype):
    x, dy, gamma, beta = _inputs(shape, dtype, 3)
    y_ref, s_ref = ops.group_norm_forward(x, gamma, beta, groups)
    y, s = ops.group_norm_forward(_cuda(x), _cuda(gamma), _cuda(beta), groups)
    _close(s.mean, s_ref.mean, what="mean")
    _close(s.inv_std, s_ref.inv_std, what="inv_std")
    _close(y, y_ref, dtype, "y")
    ref = ops.group_norm_backward(dy, x, gamma, s_ref)
    got = ops.group_norm_backward(_cuda(dy), _cuda(x), _cuda(gamma), s)
    for g, r, what in zip(got, ref, ("dx", "dgamma", "dbeta")):
        _close(g, r, dtype, what)


@pytest.mark.parametrize("dtype", DTYPES)
def test_instance_and_layer_norm(dtype):
    x, dy, gamma, beta = _inputs((3, 5, 7, 6), dtype, 4)
    for fwd, bwd in ((ops.instance_norm_forward, ops.instance_norm_backward),
                     (ops.layer_norm_forward, ops.layer_norm_backward)):
        y_ref, s_ref = fwd(x, gamma, beta)
        y, s = fwd(_cuda(x), _cuda(gamma), _cuda(beta))
        _close(y, y_ref, dtype, fwd.__name__)
        for g, r in zip(bwd(_cuda(dy), _cuda(x), _cuda(gamma), s), bwd(dy, x, gamma, s_ref)):
            _close(g, r, dtype, bwd.__name__)


LRN_CASES = [((3, 5, 7, 6), 5, 1e-4, 0.75, 1.0), ((2, 7, 3, 4), 3, 0.5, 0.6, 2.0), ((2, 6, 5), 4, 1.0, 1.2, 0.5),
             ((3, 4), 1, 2.0, 0.75, 1.0), ((8, 16, 13, 11), 5, 0.3, 0.75, 1.0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,size,alpha,beta,delta", LRN_CASES)
def test_cross_channel_norm(shape, size, alpha, beta, delta, dtype):
    x, dy, _, _ = _inputs(shape, dtype, 5)
    kw = dict(size=size, alpha=alpha, beta=beta, delta=delta)
    _close(ops.cross_channel_norm_forward(_cuda(x), **kw), ops.cross_channel_norm_forward(x, **kw), dtype, "y")
    _close(ops.cross_channel_norm_backward(_cuda(dy), _cuda(x), **kw), ops.cross_channel_norm_backward(dy, x, **kw),
           dtype, "dx")


def test_nan_stays_in_its_channel():
    x, _, gamma, beta = _inputs((2, 3, 4, 5), "float32", 6)
    x[1, 1, 2, 3] = np.nan
    y, _ = ops.batch_norm_forward(_cuda(x), _cuda(gamma), _cuda(beta))
    y = y.numpy()
    assert np.isnan(y[:, 1]).all() and np.isfinite(y[:, [0, 2]]).all()


def test_batch_norm_graph_trains_on_cuda():
    opt = mnn.SGD(0.1, momentum=0.9)
    src = mnn.ImageNode()
    conv = mnn.ConvolutionNode(src, mnn.ConvolutionWeights(2, 6, 3, seed=1, optimizer=opt))
    bn = mnn.BatchNormalizationNode(conv.result, mnn.BatchNormalizationWeights(6, optimizer=opt, label="bn"))
    relu = mnn.NeuronReLUNode(bn.result)
    fc = mnn.FullyConnectedNode(relu.result, mnn.ConvolutionWeights(6, 4, (8, 8), seed=2, optimizer=opt))
    loss = mnn.SoftmaxCrossEntropyLossNode(fc.result)
    r = np.random.default_rng(0)
    x = (r.standard_normal((32, 2, 8, 8)) * 0.3 + 3).astype(np.float32)
    labels = r.integers(0, 4, 32)
    for i, k in enumerate(labels):
        h, w = divmod(int(k), 2)
        x[i, :, h * 4:h * 4 + 4, w * 4:w * 4 + 4] += 2.0
    train = mnn.Graph.training(loss, device="cuda")
    losses = [train.run(x, labels.astype(np.int32)).loss for _ in range(40)]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses
    mean, var = bn.running_statistics(train)
    mean = mean.numpy() if isinstance(mean, mnn.Tensor) else mean
    assert np.abs(mean).max() > 0.1
    # A device graph trains device copies (the data source's arrays stay as they were), so a
    # new inference graph reads the source's statistics; it must still run.
    infer = mnn.Graph(fc.result, device="cuda")
    assert np.isfinite(infer.run(x[:5]).result).all()
