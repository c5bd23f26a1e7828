"""Metal backend end to end on the fake Metal runtime: every op on mnn.Tensor(device="metal")
against the CPU backend (odd sizes, float32 and float16), the optimizers, and the digit
network's training graph.

Not collected by the plain suite (the file name does not start with test_):
tests/test_metal_fake_runtime.py builds metalnn._core with the Metal backend against the
fake runtime and runs this file with METALNN_BUILD_DIR pointing at that build. The same
cases hold on a Mac (`pytest tests/metal/fake_runtime/cases_metal_device.py`), where they
run on the real GPU.
"""

import ctypes
import os

import numpy as np
import pytest

import metalnn as mnn

HAS_METAL = any(d.type == "metal" for d in mnn.available_devices())
pytestmark = pytest.mark.skipif(not HAS_METAL, reason="no Metal device in this build (see test_metal_fake_runtime)")

NEURONS = mnn.ops.neuron.NEURON_TYPES
DTYPES = ["float32", "float16"]
TOL = {"float32": (1e-6, 2e-6), "float16": (1e-3, 2e-3)}
# GEMM-based ops sum in another order than the CPU's BLAS.
GEMM_TOL = {"float32": (2e-4, 2e-4), "float16": (2e-2, 1e-2)}


def _fake_runtime():
    """The fake runtime's library when this process runs on it (None on a Mac)."""
    try:
        return ctypes.CDLL("libfake_metal.so", mode=os.RTLD_NOLOAD)
    except OSError:
        return None


def _dispatches(kernel_prefix: str) -> int:
    """Dispatches of kernels whose name starts with kernel_prefix that the fake GPU ran (-1 on a Mac)."""
    lib = _fake_runtime()
    if lib is None:
        return -1
    lib.fakert_dispatch_summary.restype = ctypes.c_void_p
    p = lib.fakert_dispatch_summary()
    text = ctypes.string_at(p).decode()
    ctypes.CDLL(None).free(ctypes.c_void_p(p))
    return sum(int(n) for line in text.splitlines() for name, n in [line.split()] if name.startswith(kernel_prefix))


class ran:
    """Asserts the block dispatched at least one kernel named kernel_prefix* on the fake GPU,
    so a Metal branch silently falling back to the CPU cannot pass."""

    def __init__(self, kernel_prefix: str):
        self.prefix = kernel_prefix

    def __enter__(self):
        self.before = _dispatches(self.prefix)

    def __exit__(self, *exc):
        if exc[0] is None and self.before >= 0:
            assert _dispatches(self.prefix) > self.before, f"no {self.prefix}* kernel ran on the fake GPU"


def _data(shape, dtype, seed=0, scale=3.0):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * scale
    return x.astype(dtype)


def _mtl(a):
    return mnn.Tensor(a, device="metal")


def _close(got, ref, dtype):
    atol, rtol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(ref, np.float64), atol=atol, rtol=rtol,
                               equal_nan=True)


def _close_tol(got, ref, tol):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(ref, np.float64), atol=tol[0], rtol=tol[1],
                               equal_nan=True)


def test_tensor_round_trip():
    a = _data((3, 5, 7), "float32")
    t = _mtl(a)
    assert t.device.type == "metal" and t.shape == (3, 5, 7) and t.dtype == "float32"
    np.testing.assert_array_equal(t.numpy(), a)
    h = mnn.Tensor(a, dtype="float16", device="metal")
    np.testing.assert_array_equal(h.numpy(), a.astype(np.float16))
    a[:] = 0
    assert np.any(t.numpy() != 0)


def test_empty_tensor():
    y = mnn.ops.neuron_forward(_mtl(np.zeros((0, 3), np.float32)), "relu")
    assert y.shape == (0, 3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NEURONS)
def test_neuron_forward_backward(name, dtype):
    x = _data((3, 5, 7, 3), dtype, seed=1)
    dy = _data(x.shape, dtype, seed=2, scale=1.0)
    x.flat[7] = np.nan
    with ran("neuron_forward"):
        y = mnn.ops.neuron_forward(_mtl(x), name)
    assert y.device.type == "metal"
    _close(y.numpy(), mnn.ops.neuron_forward(x, name), dtype)
    with ran("neuron_backward"):
        dx = mnn.ops.neuron_backward(_mtl(dy), _mtl(x), name)
    _close(dx.numpy(), mnn.ops.neuron_backward(dy, x, name), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_prelu(dtype):
    x = _data((3, 5, 7, 3), dtype, seed=40)
    slopes = _data((5,), dtype, seed=41, scale=0.5)
    dy = _data(x.shape, dtype, seed=42, scale=1.0)
    with ran("prelu_forward"):
        y = mnn.ops.prelu_forward(_mtl(x), _mtl(slopes))
    _close(y.numpy(), mnn.ops.prelu_forward(x, slopes), dtype)
    _close(mnn.ops.prelu_backward_input(_mtl(dy), _mtl(x), _mtl(slopes)).numpy(),
           mnn.ops.prelu_backward_input(dy, x, slopes), dtype)
    with ran("prelu_backward_slopes"):
        ds = mnn.ops.prelu_backward_slopes(_mtl(dy), _mtl(x))
    _close_tol(ds.numpy(), mnn.ops.prelu_backward_slopes(dy, x), GEMM_TOL[dtype])


def test_neuron_custom_coefficients():
    x = _data((1001,), "float32", seed=3)
    for name, kw in [("leaky_relu", {"a": 0.3}), ("tanh", {"a": 1.7, "b": 0.6}), ("relun", {"a": 0.1, "b": 1.5})]:
        _close(mnn.ops.neuron_forward(_mtl(x), name, **kw).numpy(), mnn.ops.neuron_forward(x, name, **kw), "float32")


@pytest.mark.parametrize("dtype", DTYPES)
def test_add(dtype):
    a, b = _data((5, 7, 3), dtype, seed=30), _data((5, 7, 3), dtype, seed=31)
    with ran("add_forward"):
        y = mnn.ops.add_forward(_mtl(a), _mtl(b))
    _close(y.numpy(), mnn.ops.add_forward(a, b), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keep", [0.3, 1.0])
def test_dropout_matches_cpu_mask(dtype, keep):
    x = _data((3, 7, 9, 5), dtype, seed=5) + np.asarray(10, dtype)
    with ran("dropout_forward"):
        y, st = mnn.ops.dropout_forward(_mtl(x), keep, 1234)
    y_cpu, st_cpu = mnn.ops.dropout_forward(x, keep, 1234)
    np.testing.assert_array_equal(y.numpy() != 0, st_cpu.mask.astype(bool))
    _close(y.numpy(), y_cpu, dtype)
    dy = _data(x.shape, dtype, seed=6)
    _close(mnn.ops.dropout_backward(_mtl(dy), st).numpy(), mnn.ops.dropout_backward(dy, st_cpu), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 13), (3, 5, 9, 7), (2, 1001), (1, 1)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_forward_backward(dtype, shape, log):
    fwd = mnn.ops.log_softmax_forward if log else mnn.ops.softmax_forward
    bwd = mnn.ops.log_softmax_backward if log else mnn.ops.softmax_backward
    x = _data(shape, dtype, seed=7)
    with ran("softmax"):
        y = fwd(_mtl(x))
    y_cpu = fwd(x)
    _close(y.numpy(), y_cpu, dtype)
    dy = _data(shape, dtype, seed=8, scale=1.0)
    _close(bwd(_mtl(dy), _mtl(y_cpu)).numpy(), bwd(dy, y_cpu), dtype)


def test_stream_runs_ops_in_order():
    x = _data((17, 19), "float32", seed=9)
    t = _mtl(x)
    out = {}
    stream = mnn.Stream("metal")
    ev = stream.submit([lambda: out.setdefault("y", mnn.ops.neuron_forward(t, "sigmoid")),
                        lambda: out.setdefault("z", mnn.ops.neuron_forward(out["y"], "tanh"))])
    ev.wait()
    assert ev.done()
    _close(out["z"].numpy(), mnn.ops.neuron_forward(mnn.ops.neuron_forward(x, "sigmoid"), "tanh"), "float32")
    stream.synchronize()


POOLS = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=(3, 2), stride=(1, 2))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", POOLS)
def test_max_pool_matches_cpu(dtype, cfg):
    x = _data((2, 3, 11, 9), dtype, seed=10)
    x.flat[17] = np.nan
    with ran("max_pool2d_forward"):
        y, st = mnn.ops.max_pool2d_forward(_mtl(x), **cfg)
    y_cpu, st_cpu = mnn.ops.max_pool2d_forward(x, **cfg)
    _close(y.numpy(), y_cpu, dtype)
    dy = _data(y_cpu.shape, dtype, seed=11, scale=1.0)
    _close(mnn.ops.max_pool2d_backward(_mtl(dy), st).numpy(), mnn.ops.max_pool2d_backward(dy, st_cpu), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", POOLS)
@pytest.mark.parametrize("cip", [True, False])
def test_avg_pool_matches_cpu(dtype, cfg, cip):
    x = _data((2, 3, 11, 9), dtype, seed=12)
    tol = GEMM_TOL[dtype] if dtype == "float16" else (1e-5, 1e-5)
    with ran("avg_pool2d_forward"):
        y = mnn.ops.avg_pool2d_forward(_mtl(x), count_include_pad=cip, **cfg)
    _close_tol(y.numpy(), mnn.ops.avg_pool2d_forward(x, count_include_pad=cip, **cfg), tol)
    dy = _data(y.shape, dtype, seed=13, scale=1.0)
    got = mnn.ops.avg_pool2d_backward(_mtl(dy), x.shape, count_include_pad=cip, **cfg).numpy()
    _close_tol(got, mnn.ops.avg_pool2d_backward(dy, x.shape, count_include_pad=cip, **cfg), tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", [dict(kernel_size=2, dilation=2), dict(kernel_size=3, stride=2, padding=1, dilation=2)])
def test_dilated_max_and_l2_pool_match_cpu(dtype, cfg):
    x = _data((2, 3, 11, 9), dtype, seed=43)
    with ran("dilated_max_pool2d_forward"):
        y, st = mnn.ops.dilated_max_pool2d_forward(_mtl(x), **cfg)
    y_cpu, st_cpu = mnn.ops.dilated_max_pool2d_forward(x, **cfg)
    _close(y.numpy(), y_cpu, dtype)
    dy = _data(y_cpu.shape, dtype, seed=44, scale=1.0)
    _close(mnn.ops.max_pool2d_backward(_mtl(dy), st).numpy(), mnn.ops.max_pool2d_backward(dy, st_cpu), dtype)
    tol = GEMM_TOL[dtype] if dtype == "float16" else (1e-5, 1e-5)
    with ran("l2_pool2d_forward"):
        y2 = mnn.ops.l2_pool2d_forward(_mtl(x), **cfg)
    y2_cpu = mnn.ops.l2_pool2d_forward(x, **cfg)
    _close_tol(y2.numpy(), y2_cpu, tol)
    dy2 = _data(y2_cpu.shape, dtype, seed=45, scale=1.0)
    with ran("l2_pool2d_backward"):
        dx = mnn.ops.l2_pool2d_backward(_mtl(dy2), _mtl(x), _mtl(y2_cpu), **cfg)
    _close_tol(dx.numpy(), mnn.ops.l2_pool2d_backward(dy2, x, y2_cpu, **cfg), tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("kind", ["index", "prob_image", "weighted_smooth", "many_classes"])
def test_softmax_cross_entropy_matches_cpu(dtype, reduction, kind):
    rng = np.random.default_rng(14)
    # More than 64 classes: one threadgroup per position instead of one simd-group.
    shape = {"prob_image": (3, 7, 5, 3), "many_classes": (5, 70)}.get(kind, (13, 11))
    logits = _data(shape, dtype, seed=15)
    if kind == "prob_image":
        p = rng.random(shape).astype(np.float32)
        labels = p / p.sum(axis=1, keepdims=True)
    else:
        labels = rng.integers(0, shape[1], size=(shape[0],)).astype(np.int64)
    args, kw = (), dict(reduction=reduction)
    if kind == "weighted_smooth":
        kw["label_smoothing"] = 0.1
        args = (rng.random(shape[0]).astype(np.float32),)
    with ran("softmax_cross_entropy_forward"):
        loss, st = mnn.ops.softmax_cross_entropy_forward(_mtl(logits), _mtl(labels), *map(_mtl, args), **kw)
    loss_cpu, st_cpu = mnn.ops.softmax_cross_entropy_forward(logits, labels, *args, **kw)
    assert loss.device.type == "metal"
    _close_tol(loss.numpy(), loss_cpu, (1e-5, 1e-5))
    if reduction == "none":
        dloss = _data(np.shape(loss_cpu), "float32", seed=16, scale=1.0)
        got = mnn.ops.softmax_cross_entropy_backward(st, _mtl(dloss))
        ref = mnn.ops.softmax_cross_entropy_backward(st_cpu, dloss)
    else:
        dloss = np.asarray(0.75, np.float32)
        got = mnn.ops.softmax_cross_entropy_backward(st, _mtl(dloss))
        ref = mnn.ops.softmax_cross_entropy_backward(st_cpu, dloss)
    _close_tol(got.numpy(), ref, (1e-6, 1e-5) if dtype == "float32" else (1e-3, 2e-3))


def _loss_case(kind, shape, rng):
    """Predictions and labels in each loss type's domain."""
    y = rng.standard_normal(shape) * 1.5
    t = rng.standard_normal(shape)
    if kind in ("softmax_cross_entropy", "kullback_leibler_divergence", "cosine_distance"):
        t = rng.uniform(0.0, 1.0, shape)
        t /= t.sum(axis=1, keepdims=True)
        if kind == "kullback_leibler_divergence":
            y = np.log(rng.uniform(0.05, 1.0, shape))
    elif kind == "sigmoid_cross_entropy":
        t = rng.uniform(0.0, 1.0, shape)
    elif kind in ("categorical_cross_entropy", "log"):
        y, t = rng.uniform(0.05, 0.95, shape), rng.uniform(0.0, 1.0, shape)
    elif kind == "hinge":
        t = (rng.uniform(0.0, 1.0, shape) > 0.5).astype(np.float64)
    return y.astype(np.float32), t.astype(np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", mnn.ops.loss.LOSS_TYPES)
def test_generic_losses_match_cpu(dtype, kind):
    rng = np.random.default_rng(46)
    shape = (3, 5, 4, 3)
    y, t = _loss_case(kind, shape, rng)
    y = y.astype(dtype)
    weights = rng.uniform(0.2, 2.0, shape[0]).astype(np.float32)
    weights[1] = 0.0
    kw = dict(loss_type=kind, weight=0.7, label_smoothing=0.1 if kind.startswith(("softmax", "sigmoid")) else 0.0)
    tol = (2e-5, 2e-5) if dtype == "float32" else (2e-3, 2e-3)
    for reduction in mnn.ops.loss.LOSS_REDUCTIONS:
        with ran("loss_forward") if reduction == "none" else ran("loss_"):
            loss, st = mnn.ops.loss_forward(_mtl(y), _mtl(t), _mtl(weights), reduction=reduction, **kw)
        loss_cpu, st_cpu = mnn.ops.loss_forward(y, t, weights, reduction=reduction, **kw)
        _close_tol(loss.numpy(), loss_cpu, tol)
        dloss = (_data(np.shape(loss_cpu), "float32", seed=47, scale=1.0) if reduction == "none"
                 else np.asarray(1.3, np.float32))
        with ran("loss_backward"):
            g = mnn.ops.loss_backward(st, _mtl(dloss))
        _close_tol(g.numpy(), mnn.ops.loss_backward(st_cpu, dloss), tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_yolo_loss_matches_cpu(dtype):
    rng = np.random.default_rng(48)
    anchors, classes, n, h, w = [(1.0, 1.5), (2.0, 1.0)], 3, 2, 5, 4
    per = 5 + classes
    pred = (rng.standard_normal((n, len(anchors) * per, h, w)) * 0.8).astype(np.float32)
    lab = np.zeros((n, len(anchors), per, h, w), np.float32)
    obj = rng.uniform(0, 1, (n, len(anchors), h, w)) < 0.3
    lab[:, :, 4] = obj
    lab[:, :, 0:2] = np.where(obj[:, :, None], rng.uniform(0.1, 0.9, (n, len(anchors), 2, h, w)), 0)
    lab[:, :, 2:4] = np.where(obj[:, :, None], rng.uniform(0.4, 2.5, (n, len(anchors), 2, h, w)), 0)
    cls = rng.integers(0, classes, (n, len(anchors), h, w))
    lab[:, :, 5:] = np.where(obj[:, :, None], np.moveaxis(np.eye(classes)[cls], -1, 2), 0)
    lab = lab.reshape(pred.shape)
    pred = pred.astype(dtype)
    tol = (1e-4, 1e-5) if dtype == "float32" else (2e-3, 2e-3)
    for reduction in ["none", "mean"]:
        d = mnn.ops.YOLOLossDescriptor(anchors, classes, rescore=True, reduction=reduction)
        with ran("yolo"):
            loss, st = mnn.ops.yolo_loss_forward(_mtl(pred), _mtl(lab), d)
        loss_cpu, st_cpu = mnn.ops.yolo_loss_forward(pred, lab, d)
        _close_tol(loss.numpy(), loss_cpu, tol)
        dloss = 0.6 if reduction == "mean" else _data(pred.shape, "float32", seed=49, scale=1.0)
        _close_tol(mnn.ops.loss_backward(st, _mtl(np.asarray(dloss, np.float32))).numpy(),
                   mnn.ops.loss_backward(st_cpu, dloss), tol)


OPT_SHAPES = [(7, 13), (1001,), (3, 5, 5, 3)]


def _opt_case(dtype, name, many):
    rng = np.random.default_rng(17)
    ws = [(rng.standard_normal(s)).astype(dtype) for s in OPT_SHAPES]
    gs = [(rng.standard_normal(s)).astype(dtype) for s in OPT_SHAPES]
    nstate = {"sgd": 1, "adam": 3, "rmsprop": 1}[name]
    sts = [[(rng.random(s) * 0.1).astype(np.float32) for s in OPT_SHAPES] for _ in range(nstate)]
    out = {}
    for dev in ["cpu", "metal"]:
        conv = (lambda a: a.copy()) if dev == "cpu" else _mtl
        w = [conv(a) for a in ws]
        g = [conv(a) for a in gs]
        st = [[conv(a) for a in lst] for lst in sts]
        fn = getattr(mnn.ops, f"{name}_step_many" if many else f"{name}_step")
        for i in range(len(w) if not many else 1):
            sel = (lambda lst: lst) if many else (lambda lst, i=i: lst[i])
            if name == "sgd":
                fn(sel(w), sel(g), sel(st[0]), learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
            elif name == "adam":
                fn(sel(w), sel(g), sel(st[0]), sel(st[1]), 3, learning_rate=0.01, amsgrad=True, v_max=sel(st[2]))
            else:
                fn(sel(w), sel(g), sel(st[0]), learning_rate=0.01, gradient_clip=(-0.5, 0.5))
        out[dev] = [np.asarray(t.numpy() if hasattr(t, "numpy") else t) for t in w + [s for lst in st for s in lst]]
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
@pytest.mark.parametrize("many", [False, True])
def test_optimizers_match_cpu(dtype, name, many):
    with ran(f"{name}_step"):
        out = _opt_case(dtype, name, many)
    for got, ref in zip(out["metal"], out["cpu"]):
        _close_tol(got, ref, (1e-6, 1e-5) if got.dtype == np.float32 else (1e-3, 2e-3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("neuron", [None, "relu"])
def test_fully_connected_matches_cpu(dtype, neuron):
    x = _data((7, 3, 5, 3), dtype, seed=18, scale=1.0)
    w = _data((13, 45), dtype, seed=19, scale=0.3)
    b = _data((13,), dtype, seed=20)
    with ran("fully_connected_forward"):
        y, z = mnn.ops.fully_connected_forward(_mtl(x), _mtl(w), _mtl(b), neuron=neuron, return_preactivation=True)
    y_cpu, z_cpu = mnn.ops.fully_connected_forward(x, w, b, neuron=neuron, return_preactivation=True)
    _close_tol(y.numpy(), y_cpu, GEMM_TOL[dtype])
    _close_tol(z.numpy(), z_cpu, GEMM_TOL[dtype])
    dy = _data((7, 13), dtype, seed=21, scale=1.0)
    _close_tol(mnn.ops.fully_connected_backward_input(_mtl(dy), _mtl(w), x.shape).numpy(),
               mnn.ops.fully_connected_backward_input(dy, w, x.shape), GEMM_TOL[dtype])
    _close_tol(mnn.ops.fully_connected_backward_weight(_mtl(dy), _mtl(x), w.shape).numpy(),
               mnn.ops.fully_connected_backward_weight(dy, x, w.shape), GEMM_TOL[dtype])
    with ran("fully_connected_backward_bias"):
        db = mnn.ops.fully_connected_backward_bias(_mtl(dy))
    _close_tol(db.numpy(), mnn.ops.fully_connected_backward_bias(dy), GEMM_TOL[dtype])


CONVS = [dict(), dict(stride=2, padding=1), dict(padding=(2, 1), dilation=(2, 1)), dict(groups=3, padding=1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", CONVS)
def test_conv2d_matches_cpu(dtype, cfg):
    x = _data((2, 6, 9, 7), dtype, seed=22, scale=1.0)
    w = _data((9, 6 // cfg.get("groups", 1), 3, 3), dtype, seed=23, scale=0.3)
    b = _data((9,), dtype, seed=24)
    with ran("conv2d_forward"):
        y = mnn.ops.conv2d_forward(_mtl(x), _mtl(w), _mtl(b), neuron="relu", **cfg)
    y_cpu = mnn.ops.conv2d_forward(x, w, b, neuron="relu", **cfg)
    _close_tol(y.numpy(), y_cpu, GEMM_TOL[dtype])
    dy = _data(y_cpu.shape, dtype, seed=25, scale=1.0)
    _close_tol(mnn.ops.conv2d_backward_input(_mtl(dy), _mtl(w), x.shape, **cfg).numpy(),
               mnn.ops.conv2d_backward_input(dy, w, x.shape, **cfg), GEMM_TOL[dtype])
    _close_tol(mnn.ops.conv2d_backward_weight(_mtl(dy), _mtl(x), w.shape, **cfg).numpy(),
               mnn.ops.conv2d_backward_weight(dy, x, w.shape, **cfg), GEMM_TOL[dtype])
    _close_tol(mnn.ops.conv2d_backward_bias(_mtl(dy)).numpy(), mnn.ops.conv2d_backward_bias(dy), GEMM_TOL[dtype])


TRANSPOSED = [dict(), dict(stride=2, padding=1, output_padding=1), dict(groups=3, padding=1, dilation=2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", TRANSPOSED)
def test_conv_transpose2d_matches_cpu(dtype, cfg):
    x = _data((2, 6, 5, 4), dtype, seed=50, scale=1.0)
    w = _data((6, 9 // cfg.get("groups", 1), 3, 3), dtype, seed=51, scale=0.3)
    b = _data((9,), dtype, seed=52)
    with ran("conv2d_backward_input"):  # the transposed forward is conv2d's input gradient
        y = mnn.ops.conv_transpose2d_forward(_mtl(x), _mtl(w), _mtl(b), **cfg)
    y_cpu = mnn.ops.conv_transpose2d_forward(x, w, b, **cfg)
    _close_tol(y.numpy(), y_cpu, GEMM_TOL[dtype])
    dy = _data(y_cpu.shape, dtype, seed=53, scale=1.0)
    _close_tol(mnn.ops.conv_transpose2d_backward_input(_mtl(dy), _mtl(w), x.shape, **cfg).numpy(),
               mnn.ops.conv_transpose2d_backward_input(dy, w, x.shape, **cfg), GEMM_TOL[dtype])
    _close_tol(mnn.ops.conv_transpose2d_backward_weight(_mtl(dy), _mtl(x), w.shape, **cfg).numpy(),
               mnn.ops.conv_transpose2d_backward_weight(dy, x, w.shape, **cfg), GEMM_TOL[dtype])
    _close_tol(mnn.ops.conv_transpose2d_backward_bias(_mtl(dy)).numpy(), mnn.ops.conv_transpose2d_backward_bias(dy),
               GEMM_TOL[dtype])


# ---- normalization (backend/metal/normalization.cpp)

# Reductions sum in another order than the CPU (which combines in double); tolerances scale
# with the largest reference value. float16 images: outputs rounded once on both sides.
NORM_TOL = {"float32": (5e-5, 5e-5), "float16": (2e-3, 4e-3)}


def _host(t):
    return t.numpy() if isinstance(t, mnn.Tensor) else np.asarray(t)


def _close_scaled(got, ref, dtype, what=""):
    atol, rtol = NORM_TOL[dtype]
    got, ref = _host(got).astype(np.float64), _host(ref).astype(np.float64)
    scale = max(1.0, float(np.max(np.abs(ref[np.isfinite(ref)]), initial=0.0)))
    np.testing.assert_allclose(got, ref, atol=atol * scale, rtol=rtol, equal_nan=True, err_msg=what)


def _on_metal(t, dtype=None):
    assert isinstance(t, mnn.Tensor) and t.device.type == "metal", f"not a metal tensor: {type(t)}"
    if dtype is not None:
        assert t.dtype == dtype
    return t


def _norm_inputs(shape, dtype, seed):
    r = np.random.default_rng(seed)
    x = (r.standard_normal(shape) * 1.7 + 0.6).astype(dtype)
    dy = r.standard_normal(shape).astype(dtype)
    gamma = (r.standard_normal(shape[1]) * 0.4 + 1).astype(np.float32)
    beta = (r.standard_normal(shape[1]) * 0.4).astype(np.float32)
    return x, dy, gamma, beta


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 5, 7, 6), (5, 7), (2, 3, 11), (2, 3, 37, 29)])
def test_batch_norm_training_matches_cpu(dtype, shape):
    """Batch statistics, the running update in place, y and (dx, dgamma, dbeta); the last
    shape has more positions per channel than one threadgroup holds."""
    x, dy, gamma, beta = _norm_inputs(shape, dtype, 60)
    c = shape[1]
    rm, rv = np.linspace(-1, 1, c).astype(np.float32), np.linspace(0.5, 2, c).astype(np.float32)
    rm_ref, rv_ref = rm.copy(), rv.copy()
    y_ref, s_ref = mnn.ops.batch_norm_forward(x, gamma, beta, rm_ref, rv_ref, momentum=0.3, epsilon=1e-3)
    trm, trv = _mtl(rm), _mtl(rv)
    with ran("batch_norm_statistics_" + dtype), ran("batch_norm_update_running"), ran("batch_norm_forward_" + dtype):
        y, s = mnn.ops.batch_norm_forward(_mtl(x), _mtl(gamma), _mtl(beta), trm, trv, momentum=0.3, epsilon=1e-3)
    _on_metal(y, dtype)
    _close_scaled(s.mean, s_ref.mean, "float32", "mean")
    _close_scaled(s.variance, s_ref.variance, "float32", "variance")
    _close_scaled(y, y_ref, dtype, "y")
    _close_scaled(trm, rm_ref, "float32", "running_mean")
    _close_scaled(trv, rv_ref, "float32", "running_var")
    dx_ref, dg_ref, db_ref = mnn.ops.batch_norm_backward(dy, x, gamma, s_ref)
    with ran("batch_norm_backward_params_" + dtype), ran("batch_norm_backward_" + dtype):
        dx, dg, db = mnn.ops.batch_norm_backward(_mtl(dy), _mtl(x), _mtl(gamma), s)
    _close_scaled(_on_metal(dx, dtype), dx_ref, dtype, "dx")
    _close_scaled(_on_metal(dg), dg_ref, dtype, "dgamma")
    _close_scaled(_on_metal(db), db_ref, dtype, "dbeta")


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_inference_matches_cpu(dtype):
    """Running statistics (untouched), and the frozen-statistics gradient."""
    x, dy, gamma, beta = _norm_inputs((3, 5, 7, 6), dtype, 61)
    rm, rv = np.linspace(-1, 1, 5).astype(np.float32), np.linspace(0.5, 2, 5).astype(np.float32)
    y_ref, s_ref = mnn.ops.batch_norm_forward(x, gamma, beta, rm, rv, training=False)
    trm, trv = _mtl(rm), _mtl(rv)
    with ran("batch_norm_forward_" + dtype):
        y, s = mnn.ops.batch_norm_forward(_mtl(x), _mtl(gamma), _mtl(beta), trm, trv, training=False)
    _close_scaled(_on_metal(y, dtype), y_ref, dtype, "y")
    np.testing.assert_array_equal(trm.numpy(), rm)
    np.testing.assert_array_equal(trv.numpy(), rv)
    got = mnn.ops.batch_norm_backward(_mtl(dy), _mtl(x), _mtl(gamma), s)
    for g, r, what in zip(got, mnn.ops.batch_norm_backward(dy, x, gamma, s_ref), ("dx", "dgamma", "dbeta")):
        _close_scaled(_on_metal(g), r, dtype, what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["group", "instance", "layer"])
@pytest.mark.parametrize("shape", [(3, 6, 7, 5), (5, 6), (2, 6, 9), (2, 6, 31, 23)])
def test_group_instance_layer_norm_match_cpu(dtype, kind, shape):
    x, dy, gamma, beta = _norm_inputs(shape, dtype, 62)
    fwd = {"group": lambda *a: mnn.ops.group_norm_forward(*a, groups=3, epsilon=1e-4),
           "instance": mnn.ops.instance_norm_forward, "layer": mnn.ops.layer_norm_forward}[kind]
    bwd = getattr(mnn.ops, f"{kind}_norm_backward")
    y_ref, s_ref = fwd(x, gamma, beta)
    with ran("group_norm_forward_" + dtype):
        y, s = fwd(_mtl(x), _mtl(gamma), _mtl(beta))
    _close_scaled(_on_metal(y, dtype), y_ref, dtype, "y")
    _close_scaled(s.mean, s_ref.mean, "float32", "mean")
    _close_scaled(s.inv_std, s_ref.inv_std, "float32" if dtype == "float32" else dtype, "inv_std")
    with ran("group_norm_backward_" + dtype), ran("group_norm_backward_params_" + dtype):
        got = bwd(_mtl(dy), _mtl(x), _mtl(gamma), s)
    for g, r, what in zip(got, bwd(dy, x, gamma, s_ref), ("dx", "dgamma", "dbeta")):
        _close_scaled(_on_metal(g), r, dtype, what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,size,alpha,beta,delta", [((3, 5, 7, 6), 5, 1e-4, 0.75, 1.0),
                                                         ((2, 7, 3, 4), 3, 0.5, 0.6, 2.0),
                                                         ((2, 6, 5), 4, 1.0, 1.2, 0.5), ((3, 4), 1, 2.0, 0.75, 1.0)])
def test_cross_channel_norm_matches_cpu(dtype, shape, size, alpha, beta, delta):
    x, dy, _, _ = _norm_inputs(shape, dtype, 63)
    kw = dict(size=size, alpha=alpha, beta=beta, delta=delta)
    with ran("cross_channel_norm_forward_" + dtype):
        y = mnn.ops.cross_channel_norm_forward(_mtl(x), **kw)
    _close_scaled(_on_metal(y, dtype), mnn.ops.cross_channel_norm_forward(x, **kw), dtype, "y")
    with ran("cross_channel_norm_backward_" + dtype):
        dx = mnn.ops.cross_channel_norm_backward(_mtl(dy), _mtl(x), **kw)
    _close_scaled(_on_metal(dx, dtype), mnn.ops.cross_channel_norm_backward(dy, x, **kw), dtype, "dx")


@pytest.mark.parametrize("dtype", DTYPES)
def test_norm_nan_stays_in_its_statistic(dtype):
    """A NaN poisons its own channel (batch norm) or sample (layer norm) only, as on the CPU."""
    x, _, gamma, beta = _norm_inputs((2, 3, 4, 5), dtype, 65)
    x[1, 1, 2, 3] = np.nan
    y, _ = mnn.ops.batch_norm_forward(_mtl(x), _mtl(gamma), _mtl(beta))
    y = y.numpy()
    assert np.isnan(y[:, 1]).all() and np.isfinite(y[:, [0, 2]]).all()
    _close_scaled(y, mnn.ops.batch_norm_forward(x, gamma, beta)[0], dtype)
    y, _ = mnn.ops.layer_norm_forward(_mtl(x), _mtl(gamma), _mtl(beta))
    y = y.numpy()
    assert np.isnan(y[1]).all() and np.isfinite(y[0]).all()

def test_batch_norm_metal_graph_trains_like_cpu():
    """conv -> batch norm -> ReLU -> FC -> loss with SGD on device "metal": the losses and the
    running statistics follow the CPU graph's step for step."""
    r = np.random.default_rng(64)
    x = (r.standard_normal((9, 2, 6, 5)) * 0.5 + 2).astype(np.float32)
    labels = r.integers(0, 4, 9).astype(np.int32)
    out = {}
    for dev in ["cpu", "metal"]:
        opt = mnn.SGD(0.1, momentum=0.9)
        conv = mnn.ConvolutionNode(mnn.ImageNode(), mnn.ConvolutionWeights(2, 3, 3, seed=1, optimizer=opt))
        bn = mnn.BatchNormalizationNode(conv.result, mnn.BatchNormalizationWeights(3, optimizer=opt, label="bn"),
                                        momentum=0.5)
        fc = mnn.FullyConnectedNode(mnn.NeuronReLUNode(bn.result).result,
                                    mnn.ConvolutionWeights(3, 4, (6, 5), seed=2, optimizer=opt))
        train = mnn.Graph.training(mnn.SoftmaxCrossEntropyLossNode(fc.result), device=dev)
        with ran("batch_norm_backward") if dev == "metal" else _nothing():
            losses = [float(np.asarray(train.run(x, labels).loss)) for _ in range(4)]
        mean, var = bn.running_statistics(train)
        out[dev] = (losses, _host(mean), _host(var))
    np.testing.assert_allclose(out["metal"][0], out["cpu"][0], rtol=1e-4)
    assert out["metal"][0][-1] < out["metal"][0][0]
    np.testing.assert_allclose(out["metal"][1], out["cpu"][1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["metal"][2], out["cpu"][2], rtol=1e-4, atol=1e-5)
    if _fake_runtime() is not None:
        for stem in ["batch_norm_statistics", "batch_norm_update_running", "batch_norm_forward",
                     "batch_norm_backward_params"]:
            assert _dispatches(stem) > 0, f"the training graph never dispatched {stem}*"


# ---- arithmetic (backend/metal/arithmetic.cpp)

ARITH_OPS = ["add", "subtract", "multiply", "divide"]
# (a, b) of equal rank: same shapes, per-channel b (its gradient sums >= 64 terms: one
# threadgroup per element), a few terms per gradient element, both operands broadcast, a
# broadcast a, a row vector.
ARITH_SHAPES = [((3, 5, 7, 9), (3, 5, 7, 9)), ((3, 5, 7, 9), (1, 5, 1, 1)), ((3, 5, 7, 9), (3, 1, 7, 9)),
                ((3, 1, 7, 1), (1, 5, 1, 9)), ((1, 5, 1, 9), (3, 5, 7, 9)), ((33, 7), (1, 7))]


def _arith_operands(op, a_shape, b_shape, dtype):
    a, b = _data(a_shape, dtype, seed=70, scale=1.0), _data(b_shape, dtype, seed=71, scale=1.0)
    if op == "divide":  # keep b away from 0
        b = (np.sign(b.astype(np.float32)) * (np.abs(b.astype(np.float32)) + 0.5)).astype(dtype)
    return a, b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("a_shape,b_shape", ARITH_SHAPES)
@pytest.mark.parametrize("op", ARITH_OPS)
def test_arithmetic_matches_cpu(op, a_shape, b_shape, dtype):
    a, b = _arith_operands(op, a_shape, b_shape, dtype)
    kernel = "add_forward" if op == "add" and a_shape == b_shape else "arithmetic_forward"
    with ran(f"{kernel}_{dtype}"):
        y = getattr(mnn.ops, f"{op}_forward")(_mtl(a), _mtl(b))
    y_cpu = getattr(mnn.ops, f"{op}_forward")(a, b)
    _close_scaled(_on_metal(y, dtype), y_cpu, dtype, "y")
    _close_scaled(mnn.ops.arithmetic_forward(op, _mtl(a), _mtl(b)), y_cpu, dtype, "arithmetic_forward")
    dy = _data(np.shape(y_cpu), dtype, seed=72, scale=1.0)
    if op in ("add", "subtract"):
        got = getattr(mnn.ops, f"{op}_backward")(_mtl(dy), a_shape, b_shape)
        ref = getattr(mnn.ops, f"{op}_backward")(dy, a_shape, b_shape)
    else:
        got = getattr(mnn.ops, f"{op}_backward")(_mtl(dy), _mtl(a), _mtl(b))
        ref = getattr(mnn.ops, f"{op}_backward")(dy, a, b)
    for operand, (g, r) in enumerate(zip(got, ref)):
        # Long reductions sum in another order than the CPU: atol grows with the term count.
        terms = int(np.prod(np.shape(y_cpu))) // int(np.prod(a_shape if operand == 0 else b_shape))
        g = _on_metal(g, dtype)
        assert g.shape == (a_shape if operand == 0 else b_shape)
        _close_tol(g.numpy(), r, [t * max(1.0, np.sqrt(terms)) * max(1.0, float(np.abs(r).max()))
                                  for t in NORM_TOL[dtype]])
        one = mnn.ops.arithmetic_backward(op, operand, _mtl(dy), a_shape, b_shape, _mtl(a), _mtl(b))
        np.testing.assert_array_equal(_on_metal(one).numpy(), g.numpy())


def test_arithmetic_backward_kernels_ran():
    """Both gradient schedules, both dtypes (a thread per gradient element below 64 terms, a
    threadgroup each from 64 on)."""
    for dtype in DTYPES:
        dy = _data((3, 5, 7, 9), dtype, seed=73)
        a, b = _data((3, 5, 7, 9), dtype, seed=74), _data((1, 5, 1, 1), dtype, seed=75)
        with ran(f"arithmetic_backward_reduce_{dtype}"):
            g = mnn.ops.arithmetic_backward("multiply", 1, _mtl(dy), a.shape, b.shape, _mtl(a), _mtl(b))
        ref = mnn.ops.arithmetic_backward("multiply", 1, dy, a.shape, b.shape, a, b)
        _close_tol(g.numpy(), ref, [t * 15 * max(1.0, float(np.abs(ref).max())) for t in NORM_TOL[dtype]])
        b2 = _data((3, 5, 7, 1), dtype, seed=76)
        with ran(f"arithmetic_backward_{dtype}"):
            g = mnn.ops.arithmetic_backward("multiply", 1, _mtl(dy), a.shape, b2.shape, _mtl(a), _mtl(b2))
        ref = mnn.ops.arithmetic_backward("multiply", 1, dy, a.shape, b2.shape, a, b2)
        _close_tol(g.numpy(), ref, [t * 3 * max(1.0, float(np.abs(ref).max())) for t in NORM_TOL[dtype]])


def test_arithmetic_nan_and_division_by_zero():
    a = _data((3, 5, 4), "float32", seed=77)
    b = _data((1, 5, 1), "float32", seed=78)
    a.flat[3] = np.nan
    b.flat[2] = 0.0
    for op in ARITH_OPS:
        with np.errstate(all="ignore"):
            _close(mnn.ops.arithmetic_forward(op, _mtl(a), _mtl(b)).numpy(), mnn.ops.arithmetic_forward(op, a, b),
                   "float32")


# ---- shape (backend/metal/shape.cpp)

SHAPE_TOL = {"float32": (1e-5, 1e-5), "float16": (2e-3, 2e-3)}


def _close_shape(got, ref, dtype, scale=1.0):
    atol, rtol = SHAPE_TOL[dtype]
    _close_tol(_on_metal(got, dtype).numpy(), ref, (atol * scale, rtol))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [(2, 3), (1, 1), 3])
def test_upsample_nearest_matches_cpu(dtype, scale):
    x = _data((3, 5, 7, 9), dtype, seed=80)
    with ran("upsample_nearest_forward_" + dtype):
        y = mnn.ops.upsample_nearest_forward(_mtl(x), scale)
    _close_shape(y, mnn.ops.upsample_nearest_forward(x, scale), dtype)
    dy = _data(y.shape, dtype, seed=81, scale=1.0)
    with ran("upsample_nearest_backward_" + dtype):
        dx = mnn.ops.upsample_nearest_backward(_mtl(dy), scale)
    _close_shape(dx, mnn.ops.upsample_nearest_backward(dy, scale), dtype, scale=4.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("shape,scale", [((3, 5, 7, 9), (2, 3)), ((2, 3, 1, 5), (3, 2)), ((1, 2, 6, 1), (2, 5))])
def test_upsample_bilinear_matches_cpu(dtype, align, shape, scale):
    x = _data(shape, dtype, seed=82)
    with ran("upsample_bilinear_forward_" + dtype):
        y = mnn.ops.upsample_bilinear_forward(_mtl(x), scale, align)
    _close_shape(y, mnn.ops.upsample_bilinear_forward(x, scale, align), dtype, scale=3.0)
    dy = _data(y.shape, dtype, seed=83, scale=1.0)
    with ran("upsample_bilinear_backward_" + dtype):
        dx = mnn.ops.upsample_bilinear_backward(_mtl(dy), scale, align)
    _close_shape(dx, mnn.ops.upsample_bilinear_backward(dy, scale, align), dtype, scale=4.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_concat_matches_cpu(dtype):
    xs = [_data((3, c, 5, 7), dtype, seed=84 + c) for c in (2, 1, 5)]
    with ran("concat_forward_" + dtype):
        y = mnn.ops.concat_forward([_mtl(x) for x in xs])
    _close_shape(y, mnn.ops.concat_forward(xs), dtype)
    dy = _data(y.shape, dtype, seed=88, scale=1.0)
    with ran("pad_forward_" + dtype):  # the slices are windows of dy
        parts = mnn.ops.concat_backward(_mtl(dy), [2, 1, 5])
    for p, r in zip(parts, mnn.ops.concat_backward(dy, [2, 1, 5])):
        _close_shape(p, r, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["zero", "edge", "reflect"])
@pytest.mark.parametrize("pads,channels", [((1, 2, 3, 0), (0, 0)), ((2, 2, 1, 1), (1, 2)), (1, (0, 1))])
def test_pad_matches_cpu(dtype, mode, pads, channels):
    x = _data((2, 4, 5, 7), dtype, seed=89)
    with ran("pad_forward_" + dtype):
        y = mnn.ops.pad_forward(_mtl(x), pads, mode, channels)
    _close_shape(y, mnn.ops.pad_forward(x, pads, mode, channels), dtype)
    dy = _data(y.shape, dtype, seed=90, scale=1.0)
    with ran(("pad_forward_" if mode == "zero" else "pad_backward_") + dtype):  # zero: a crop of dy
        dx = mnn.ops.pad_backward(_mtl(dy), x.shape, pads, mode, channels)
    _close_shape(dx, mnn.ops.pad_backward(dy, x.shape, pads, mode, channels), dtype, scale=4.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_crop_reshape_and_converters_match_cpu(dtype):
    x = _data((3, 5, 9, 7), dtype, seed=91)
    with ran("pad_forward_" + dtype):
        y = mnn.ops.crop_forward(_mtl(x), (1, 2, 3), (3, 5, 4))
    _close_shape(y, mnn.ops.crop_forward(x, (1, 2, 3), (3, 5, 4)), dtype)
    dy = _data(y.shape, dtype, seed=92)
    with ran("pad_forward_" + dtype):
        dx = mnn.ops.crop_backward(_mtl(dy), x.shape, (1, 2, 3))
    _close_shape(dx, mnn.ops.crop_backward(dy, x.shape, (1, 2, 3)), dtype)
    m = mnn.ops.image_to_matrix(_mtl(x))
    assert m.shape == (3, 5 * 9 * 7)
    _close_shape(m, mnn.ops.image_to_matrix(x), dtype)
    _close_shape(mnn.ops.matrix_to_image(m, (5, 9, 7)), x, dtype)
    r = mnn.ops.reshape_forward(_mtl(x), (3, -1, 7))
    _close_shape(r, mnn.ops.reshape_forward(x, (3, -1, 7)), dtype)
    _close_shape(mnn.ops.reshape_backward(r, x.shape), x, dtype)
    # A reshaped metal tensor feeds a kernel: the view's storage is the input's.
    z = mnn.ops.neuron_forward(mnn.ops.matrix_to_image(m, (5, 9, 7)), "relu")
    _close(z.numpy(), np.maximum(x, 0), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 13), (1, 40), (33, 65)])
def test_transpose_matrix_matches_cpu(dtype, shape):
    x = _data(shape, dtype, seed=93)
    with ran("transpose_matrix_forward_" + dtype):
        y = mnn.ops.transpose_matrix_forward(_mtl(x))
    np.testing.assert_array_equal(_on_metal(y, dtype).numpy(), x.T)
    with ran("transpose_matrix_forward_" + dtype):  # the gradient is the same kernel
        dx = mnn.ops.transpose_matrix_backward(y)
    np.testing.assert_array_equal(_on_metal(dx, dtype).numpy(), x)


# ---- rnn (backend/metal/rnn.cpp)

RNN_CELLS = [("single_gate", "tanh", False, False), ("single_gate", "relu", False, False),
             ("single_gate", "sigmoid", False, False), ("lstm", "tanh", False, False), ("lstm", "tanh", True, False),
             ("gru", "tanh", False, False), ("gru", "tanh", False, True), ("mgu", "tanh", False, False),
             ("mgu", "tanh", False, True)]
RNN_TOL = {"float32": (2e-5, 2e-5), "float16": (4e-3, 4e-3)}


def _rnn_weights(layers, bidirectional, seed):
    """The flat weight list (per layer, then direction: W, U, bias[, peephole])."""
    r = np.random.default_rng(seed)
    out = []
    for cell, i, h, _, peep, _ in layers:
        g = mnn.ops.rnn.RNN_GATES[cell]
        for _ in range(2 if bidirectional else 1):
            out += [r.standard_normal((g * h, i)) * 0.4, r.standard_normal((g * h, h)) * 0.4,
                    r.standard_normal(g * h) * 0.2]
            if peep:
                out.append(r.standard_normal((3, h)) * 0.3)
    return [w.astype(np.float32) for w in out]


def _opt_mtl(a):
    return None if a is None else _mtl(a)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", RNN_CELLS, ids=[f"{c[0]}-{c[1]}{'-peep' if c[2] else ''}{'-flip' if c[3] else ''}"
                                                 for c in RNN_CELLS])
def test_rnn_matches_cpu(cell, bidirectional, dtype):
    """Two stacked layers (odd sizes), initial states, variable lengths (one sequence empty),
    output and final-state gradients: y, final states, dx, every weight gradient, dh0 / dc0."""
    c, act, peep, flip = cell
    D = 2 if bidirectional else 1
    r = np.random.default_rng(93)
    layers = [(c, 5, 7, act, peep, flip), (c, 7 * D, 3, act, peep, flip)]
    T, B = 4, 3
    w = [a.astype(dtype) for a in _rnn_weights(layers, bidirectional, 94)]
    x = r.standard_normal((T, B, 5)).astype(dtype)
    h0 = [r.standard_normal((B, s[2])).astype(dtype) for s in layers for _ in range(D)]
    c0 = [r.standard_normal((B, s[2])).astype(dtype) if c == "lstm" else None for s in layers for _ in range(D)]
    lengths = np.array([4, 0, 3], np.int32)
    dy = r.standard_normal((T, B, 3 * D)).astype(dtype)
    dh = [r.standard_normal((B, s[2])).astype(dtype) for s in layers for _ in range(D)]
    dc = [r.standard_normal((B, s[2])).astype(dtype) if c == "lstm" else None for s in layers for _ in range(D)]

    y, hl, cl, st = mnn.ops.rnn_forward(x, w, layers, bidirectional, h0, c0, lengths, training=True)
    dx, dw, dh0, dc0 = mnn.ops.rnn_backward(x, dy, w, layers, bidirectional, st, dh, dc)
    step = {"single_gate": "rnn_single", "lstm": "rnn_lstm", "gru": "rnn_gated", "mgu": "rnn_gated"}[c]
    mw = [_mtl(a) for a in w]
    with ran(step + "_forward"), ran("rnn_gemm"):
        gy, ghl, gcl, gst = mnn.ops.rnn_forward(_mtl(x), mw, layers, bidirectional, [_mtl(a) for a in h0],
                                                [_opt_mtl(a) for a in c0], _mtl(lengths), training=True)
    with ran(step + "_backward"), ran("rnn_column_sums"):
        gdx, gdw, gdh0, gdc0 = mnn.ops.rnn_backward(_mtl(x), _mtl(dy), mw, layers, bidirectional, gst,
                                                    [_mtl(a) for a in dh], [_opt_mtl(a) for a in dc])
    tol = RNN_TOL[dtype]
    _close_tol(_on_metal(gy, dtype).numpy(), y, tol)
    _close_tol(_on_metal(gdx, dtype).numpy(), dx, tol)
    for k in range(len(hl)):
        _close_tol(_on_metal(ghl[k], dtype).numpy(), hl[k], tol)
        _close_tol(_on_metal(gdh0[k], dtype).numpy(), dh0[k], tol)
        if c == "lstm":
            _close_tol(_on_metal(gcl[k], dtype).numpy(), cl[k], tol)
            _close_tol(_on_metal(gdc0[k], dtype).numpy(), dc0[k], tol)
        else:
            assert gcl[k] is None and gdc0[k] is None
    assert len(gdw) == len(dw)
    for k, (a, b) in enumerate(zip(gdw, dw)):
        np.testing.assert_allclose(_on_metal(a, dtype).numpy().astype(np.float64), np.asarray(b, np.float64),
                                   atol=tol[0] * max(1.0, float(np.abs(b).max())), rtol=tol[1],
                                   err_msg=f"dweights[{k}]")


def test_rnn_mixed_dtypes_no_states_no_output_gradient():
    """float16 data with float32 weights (the casts one way only), zero initial states and no
    dy (only final-state gradients), peephole LSTM, one layer."""
    layers = [("lstm", 6, 5, "tanh", True, False)]
    r = np.random.default_rng(95)
    w = _rnn_weights(layers, False, 96)
    x = r.standard_normal((5, 2, 6)).astype(np.float16)
    dh = [r.standard_normal((2, 5)).astype(np.float16)]
    y, hl, cl, st = mnn.ops.rnn_forward(x, w, layers, training=True)
    ref = mnn.ops.rnn_backward(x, None, w, layers, False, st, dh)
    with ran("rnn_cast_widen_float16"), ran("rnn_cast_narrow_float16"), ran("rnn_zero"), \
            ran("rnn_peephole_backward"):
        gy, ghl, gcl, gst = mnn.ops.rnn_forward(_mtl(x), [_mtl(a) for a in w], layers, training=True)
        got = mnn.ops.rnn_backward(_mtl(x), None, [_mtl(a) for a in w], layers, False, gst, [_mtl(dh[0])])
    tol = RNN_TOL["float16"]
    _close_tol(gy.numpy(), y, tol)
    _close_tol(ghl[0].numpy(), hl[0], tol)
    _close_tol(gcl[0].numpy(), cl[0], tol)
    _close_tol(got[0].numpy(), ref[0], tol)
    for a, b in zip(got[1], ref[1]):
        assert a.dtype == "float32"
        _close_tol(a.numpy(), b, tol)
    _close_tol(got[2][0].numpy(), ref[2][0], tol)
    _close_tol(got[3][0].numpy(), ref[3][0], tol)


def test_rnn_inference_matches_cpu():
    """training=False (no state), float32, bidirectional GRU."""
    layers = [("gru", 4, 6, "tanh", False, False)]
    w = _rnn_weights(layers, True, 97)
    x = np.random.default_rng(98).standard_normal((3, 2, 4)).astype(np.float32)
    y, hl, _, st = mnn.ops.rnn_forward(x, w, layers, True)
    with ran("rnn_gated_forward2"):
        gy, ghl, _, gst = mnn.ops.rnn_forward(_mtl(x), [_mtl(a) for a in w], layers, True)
    assert st is None and gst is None
    _close_tol(gy.numpy(), y, RNN_TOL["float32"])
    for a, b in zip(ghl, hl):
        _close_tol(a.numpy(), b, RNN_TOL["float32"])


def test_shape_arithmetic_metal_graph_like_cpu():
    """Gating, residual addition, upsampling, concatenation, reflect padding, crop and the
    image->matrix converter in one training graph on device "metal": the input gradient and
    the losses of a few SGD steps equal the CPU graph's."""
    from metalnn.graph.data_source import ConvolutionWeights

    def build(device):
        opt = mnn.SGD(0.05)
        x = mnn.ImageNode("x")
        h = mnn.ConvolutionNode(x, ConvolutionWeights(2, 4, 3, neuron="tanh", seed=1, label="c1", optimizer=opt))
        g = mnn.ConvolutionNode(h.result, ConvolutionWeights(4, 1, 3, neuron="sigmoid", seed=2, label="g",
                                                             optimizer=opt))
        gated = mnn.AdditionNode(mnn.MultiplicationNode(h.result, g.result).result, h.result)
        scaled = mnn.SubtractionNode(gated.result, mnn.DivisionNode(h.result, g.result).result)
        up = mnn.UpsamplingBilinearNode(scaled.result, 2)
        cat = mnn.ConcatenationNode([up.result, mnn.UpsamplingNearestNode(h.result, 2).result])
        pad = mnn.PadNode(cat.result, 1, mode="reflect")
        crop = mnn.CropNode(pad.result, (0, 1, 1), (8, 10, 10))
        fc = mnn.FullyConnectedNode(mnn.ImageToMatrixNode(crop.result).result,
                                    ConvolutionWeights(8 * 10 * 10, 3, 1, seed=3, label="fc", optimizer=opt))
        loss = mnn.SoftmaxCrossEntropyLossNode(fc.result)
        train = mnn.Graph.training(loss, device=device)
        return mnn.Graph(train.results[0], result_needed=True, device=device)

    r = np.random.default_rng(99)
    x = r.standard_normal((3, 2, 5, 5)).astype(np.float32)
    y = r.integers(0, 3, 3).astype(np.int32)
    out = {}
    for dev in ["cpu", "metal"]:
        graph = build(dev)
        with ran("upsample_bilinear_backward") if dev == "metal" else _nothing():
            runs = [graph.run(x, labels=y) for _ in range(3)]
        out[dev] = ([float(np.asarray(h.loss)) for h in runs], _host(runs[0].result))
    np.testing.assert_allclose(out["metal"][0], out["cpu"][0], rtol=1e-4)
    ref = out["cpu"][1]
    np.testing.assert_allclose(out["metal"][1], ref, atol=1e-5 * max(1.0, float(np.abs(ref).max())), rtol=1e-4)
    if _fake_runtime() is not None:
        for stem in ["arithmetic_forward", "arithmetic_backward", "upsample_nearest_backward", "concat_forward",
                     "pad_forward", "pad_backward", "upsample_bilinear_forward"]:
            assert _dispatches(stem) > 0, f"the graph never dispatched {stem}*"


def test_rnn_metal_graph_trains_like_cpu():
    """LSTM (peephole) -> GRU stack, final states -> FC -> loss with Adam on device "metal":
    the losses follow the CPU graph's step for step."""
    from metalnn.graph.data_source import ConvolutionWeights
    from metalnn.graph.nodes_rnn import RNNNode, RNNWeights
    from metalnn.rnn import GRUDescriptor, LSTMDescriptor

    r = np.random.default_rng(100)
    x = r.standard_normal((5, 4, 3)).astype(np.float32)
    labels = r.integers(0, 2, 4).astype(np.int32)
    losses = {}
    for dev in ["cpu", "metal"]:
        ds = RNNWeights([LSTMDescriptor(3, 5, use_peephole=True), GRUDescriptor(5, 6)], seed=1,
                        optimizer=mnn.Adam(learning_rate=0.02))
        fc = ConvolutionWeights(6, 2, seed=2, optimizer=mnn.Adam(learning_rate=0.02), label="fc")
        loss = mnn.SoftmaxCrossEntropyLossNode(
            mnn.FullyConnectedNode(RNNNode(mnn.ImageNode("x"), ds, "final").result, fc).result)
        graph = mnn.Graph.training(loss, device=dev)
        with ran("rnn_lstm_backward") if dev == "metal" else _nothing():
            losses[dev] = [float(np.asarray(graph.run(x, labels=labels).loss)) for _ in range(3)]
    np.testing.assert_allclose(losses["metal"], losses["cpu"], rtol=1e-4)
    assert losses["metal"][2] < losses["metal"][0]


def test_activity_image_source_metal_graph_like_cpu():
    """The activity classifier's graph (conv -> LSTM reading the (N, C, 1, L) image as a sequence
    -> dense -> loss, SGD) on device "metal": the image <-> sequence transposes run on the GPU and
    the losses and trained weights follow the CPU graph's."""
    from metalnn.examples.activity import ActivityClassifier, build_graphs

    r = np.random.default_rng(101)
    xs = [r.standard_normal((3, 6, 1, 40)).astype(np.float32) for _ in range(3)]
    ys = [r.integers(0, 4, 3).astype(np.int32) for _ in range(3)]
    losses, weights = {}, {}
    for dev in ["cpu", "metal"]:
        net = ActivityClassifier(conv_channels=5, hidden=7, seed=3)
        train, _, _ = build_graphs(net, lambda: mnn.SGD(learning_rate=0.05), device=dev)
        with ran("transpose_matrix_forward") if dev == "metal" else _nothing():
            losses[dev] = [float(np.asarray(train.run(x, labels=y).loss)) for x, y in zip(xs, ys)]
        train.synchronize()
        weights[dev] = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v, np.float64)
                        for k, v in train.parameters().items()}
    np.testing.assert_allclose(losses["metal"], losses["cpu"], rtol=1e-4)
    assert weights["metal"].keys() == weights["cpu"].keys()
    for k, ref in weights["cpu"].items():
        np.testing.assert_allclose(weights["metal"][k], ref, rtol=1e-4, atol=1e-5, err_msg=k)


def test_digit_graph_training_on_metal():
    """The digit network's training graph (conv, ReLU, pooling, FC, dropout, loss, Adam) on
    device "metal" follows the CPU graph's losses step for step."""
    from metalnn.examples.digit_graph import digit_network

    rng = np.random.default_rng(26)
    x = rng.random((8, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 8).astype(np.int32)
    losses = {}
    for dev in ["cpu", "metal"]:
        graph = digit_network(mnn.Adam(learning_rate=1e-3), width=0.125).training_graph(device=dev)
        with ran("conv2d_forward") if dev == "metal" else _nothing():
            losses[dev] = [float(np.asarray(graph.run(x, labels=y).loss)) for _ in range(3)]
    np.testing.assert_allclose(losses["metal"], losses["cpu"], rtol=1e-3)
    assert losses["metal"][2] < losses["metal"][0]
    if _fake_runtime() is not None:
        for stem in ["conv2d_backward_weight", "max_pool2d_backward", "fully_connected_backward_input",
                     "softmax_cross_entropy_backward", "dropout_forward", "adam_step"]:
            assert _dispatches(stem) > 0, f"the training graph never dispatched {stem}*"


FAULTS = os.environ.get("FAKE_METAL_FAIL_KERNEL", "")


@pytest.mark.skipif("neuron_forward_float32:2" not in FAULTS,
                    reason="needs FAKE_METAL_FAIL_KERNEL=neuron_forward_float32:2 (fake runtime fault injection)")
def test_gpu_fault_surfaces_as_exception():
    """A command buffer that fails on the GPU raises, naming the op, outside and inside a stream;
    the next command buffer runs normally."""
    x = _mtl(np.arange(-18, 19, dtype=np.float32))
    with pytest.raises(RuntimeError, match=r"\[neuron_forward\].*injected fault"):
        mnn.ops.neuron_forward(x, "relu")
    stream = mnn.Stream("metal")
    ev = stream.submit([lambda: mnn.ops.neuron_forward(x, "relu")])
    with pytest.raises(RuntimeError, match="injected fault"):
        ev.wait()
    stream.synchronize()
    np.testing.assert_array_equal(mnn.ops.neuron_forward(x, "relu").numpy(), np.maximum(np.arange(-18, 19), 0))


@pytest.mark.skipif("conv2d_forward_float32:1" not in FAULTS,
                    reason="needs FAKE_METAL_FAIL_KERNEL=conv2d_forward_float32:1 (fake runtime fault injection)")
def test_gpu_fault_in_a_graph_batch():
    """The failed batch's handle raises; the graph trains on with the next batch."""
    from metalnn.examples.digit_graph import digit_network

    rng = np.random.default_rng(27)
    x = rng.random((4, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 4).astype(np.int32)
    graph = digit_network(mnn.Adam(learning_rate=1e-3), width=0.125).training_graph(device="metal")
    with pytest.raises(RuntimeError, match="injected fault"):
        graph.run(x, labels=y)
    loss = float(np.asarray(graph.run(x, labels=y).loss))
    assert np.isfinite(loss)


def test_no_leaks_after_the_run():
    """Runs last: every command buffer and encoder the ops made has been released, and nothing
    was autoreleased outside a pool (on a Mac that leaks until the thread exits)."""
    lib = _fake_runtime()
    if lib is None:
        pytest.skip("leak counters exist only in the fake runtime")
    import time

    mnn.ops.neuron_forward(_mtl(np.ones(5, np.float32)), "relu").numpy()
    live = {}
    for _ in range(100):  # the GPU thread drops its reference just after the completion handlers
        live = {c: lib.fakert_live_objects(c.encode()) for c in
                ["FakeMTLCommandBuffer", "FakeMTLComputeCommandEncoder", "FakeMTLBlitCommandEncoder", "NSError"]}
        if not any(live.values()):
            break
        time.sleep(0.01)
    assert not any(live.values()), f"objects still alive after the work completed: {live}"
    assert lib.fakert_autoreleased_without_pool() == 0


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
