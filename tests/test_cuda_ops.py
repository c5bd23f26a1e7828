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


# ---- pooling, loss, optimizers, fully connected, conv (cuda2) ----
# GEMM-based ops sum in a different order than the CPU BLAS: looser float32 tolerance.
GEMM_TOL = {"float32": (2e-4, 2e-4), "float16": (2e-2, 1e-2)}


def _close_tol(got, ref, tol):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(ref, np.float64), atol=tol[0], rtol=tol[1],
                               equal_nan=True)


POOLS = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=(3, 2), stride=(1, 2)),
         dict(kernel_size=3, stride=1, padding=(1, 0, 2, 1))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", POOLS)
def test_max_pool_matches_cpu(dtype, cfg):
    x = _data((3, 5, 13, 11), dtype, seed=10)
    x.flat[17] = np.nan
    y, st = mnn.ops.max_pool2d_forward(_cuda(x), **cfg)
    y_cpu, st_cpu = mnn.ops.max_pool2d_forward(x, **cfg)
    assert y.device.type == "cuda"
    _close(y.numpy(), y_cpu, dtype)
    dy = _data(y_cpu.shape, dtype, seed=11, scale=1.0)
    _close(mnn.ops.max_pool2d_backward(_cuda(dy), st).numpy(), mnn.ops.max_pool2d_backward(dy, st_cpu), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", POOLS)
@pytest.mark.parametrize("cip", [True, False])
def test_avg_pool_matches_cpu(dtype, cfg, cip):
    x = _data((2, 3, 13, 11), dtype, seed=12)
    y = mnn.ops.avg_pool2d_forward(_cuda(x), count_include_pad=cip, **cfg)
    y_cpu = mnn.ops.avg_pool2d_forward(x, count_include_pad=cip, **cfg)
    _close_tol(y.numpy(), y_cpu, GEMM_TOL[dtype] if dtype == "float16" else (1e-5, 1e-5))
    dy = _data(y_cpu.shape, dtype, seed=13, scale=1.0)
    got = mnn.ops.avg_pool2d_backward(_cuda(dy), x.shape, count_include_pad=cip, **cfg).numpy()
    _close_tol(got, mnn.ops.avg_pool2d_backward(dy, x.shape, count_include_pad=cip, **cfg),
               GEMM_TOL[dtype] if dtype == "float16" else (1e-5, 1e-5))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("kind", ["index", "prob_image", "weighted_smooth"])
def test_softmax_cross_entropy_matches_cpu(dtype, reduction, kind):
    rng = np.random.default_rng(14)
    shape = (3, 7, 5, 3) if kind == "prob_image" else (13, 11)
    logits = _data(shape, dtype, seed=15)
    kw = {}
    if kind == "prob_image":
        p = rng.random(shape).astype(np.float32)
        labels = p / p.sum(axis=1, keepdims=True)
    else:
        labels = rng.integers(0, shape[1], size=(shape[0],)).astype(np.int64)
    if kind == "weighted_smooth":
        kw = dict(label_smoothing=0.1)
        weights = rng.random(shape[0]).astype(np.float32)
        loss, st = mnn.ops.softmax_cross_entropy_forward(_cuda(logits), _cuda(labels), _cuda(weights),
                                                         reduction=reduction, **kw)
        loss_cpu, st_cpu = mnn.ops.softmax_cross_entropy_forward(logits, labels, weights, reduction=reduction, **kw)
    else:
        loss, st = mnn.ops.softmax_cross_entropy_forward(_cuda(logits), _cuda(labels), reduction=reduction)
        loss_cpu, st_cpu = mnn.ops.softmax_cross_entropy_forward(logits, labels, reduction=reduction)
    assert loss.device.type == "cuda"
    _close_tol(loss.numpy(), loss_cpu, (1e-5, 1e-5))
    if reduction == "none":
        dloss = _data(np.shape(loss_cpu), "float32", seed=16, scale=1.0)
        got, ref = mnn.ops.softmax_cross_entropy_backward(st, _cuda(dloss)), mnn.ops.softmax_cross_entropy_backward(
            st_cpu, dloss)
    else:
        dloss = np.asarray(0.75, np.float32)
        got = mnn.ops.softmax_cross_entropy_backward(st, _cuda(dloss))
        ref = mnn.ops.softmax_cross_entropy_backward(st_cpu, dloss)
    _close_tol(got.numpy(), ref, (1e-6, 1e-5) if dtype == "float32" else (1e-3, 2e-3))


def test_softmax_cross_entropy_bad_label_raises():
    logits = _data((4, 5), "float32")
    with pytest.raises(ValueError, match=r"\[softmax_cross_entropy_forward\].*labels"):
        mnn.ops.softmax_cross_entropy_forward(_cuda(logits), _cuda(np.array([0, 1, 5, 2], np.int32)))


OPT_SHAPES = [(7, 13), (1001,), (3, 5, 5, 3)]


def _opt_case(dtype, name, many, **kw):
    rng = np.random.default_rng(17)
    ws = [(rng.standard_normal(s)).astype(dtype) for s in OPT_SHAPES]
    gs = [(rng.standard_normal(s)).astype(dtype) for s in OPT_SHAPES]
    nstate = {"sgd": 1, "adam": 3, "rmsprop": 1}[name]
    sts = [[(rng.random(s) * 0.1).astype(np.float32) for s in OPT_SHAPES] for _ in range(nstate)]
    out = {}
    for dev in ["cpu", "cuda"]:
        conv = (lambda a: a.copy()) if dev == "cpu" else _cuda
        w = [conv(a) for a in ws]
        g = [conv(a) for a in gs]
        st = [[conv(a) for a in lst] for lst in sts]
        fn = getattr(mnn.ops, f"{name}_step_many" if many else f"{name}_step")
        for i in range(len(w) if not many else 1):
            sel = (lambda lst: lst) if many else (lambda lst, i=i: lst[i])
            if name == "sgd":
                fn(sel(w), sel(g), sel(st[0]), learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=0.01, **kw)
            elif name == "adam":
                fn(sel(w), sel(g), sel(st[0]), sel(st[1]), 3, learning_rate=0.01, amsgrad=True, v_max=sel(st[2]), **kw)
            else:
                fn(sel(w), sel(g), sel(st[0]), learning_rate=0.01, gradient_clip=(-0.5, 0.5), **kw)
        out[dev] = [np.asarray(t.numpy() if hasattr(t, "numpy") else t) for t in w + [s for lst in st for s in lst]]
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
@pytest.mark.parametrize("many", [False, True])
def test_optimizers_match_cpu(dtype, name, many):
    out = _opt_case(dtype, name, many)
    for got, ref in zip(out["cuda"], out["cpu"]):
        _close_tol(got, ref, (1e-6, 1e-5) if got.dtype == np.float32 else (1e-3, 2e-3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("neuron", [None, "relu", "gelu"])
def test_fully_connected_matches_cpu(dtype, neuron):
    x = _data((7, 3, 5, 3), dtype, seed=18, scale=1.0)
    w = _data((13, 45), dtype, seed=19, scale=0.3)
    b = _data((13,), dtype, seed=20)
    y, z = mnn.ops.fully_connected_forward(_cuda(x), _cuda(w), _cuda(b), neuron=neuron, return_preactivation=True)
    y_cpu, z_cpu = mnn.ops.fully_connected_forward(x, w, b, neuron=neuron, return_preactivation=True)
    _close_tol(y.numpy(), y_cpu, GEMM_TOL[dtype])
    _close_tol(z.numpy(), z_cpu, GEMM_TOL[dtype])
    dy = _data((7, 13), dtype, seed=21, scale=1.0)
    _close_tol(mnn.ops.fully_connected_backward_input(_cuda(dy), _cuda(w), x.shape).numpy(),
               mnn.ops.fully_connected_backward_input(dy, w, x.shape), GEMM_TOL[dtype])
    _close_tol(mnn.ops.fully_connected_backward_weight(_cuda(dy), _cuda(x), w.shape).numpy(),
               mnn.ops.fully_connected_backward_weight(dy, x, w.shape), GEMM_TOL[dtype])
    _close_tol(mnn.ops.fully_connected_backward_bias(_cuda(dy)).numpy(), mnn.ops.fully_connected_backward_bias(dy),
               GEMM_TOL[dtype])


CONVS = [dict(), dict(stride=2, padding=1), dict(padding=(2, 1), dilation=(2, 1)), dict(groups=3, padding=1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", CONVS)
def test_conv2d_matches_cpu(dtype, cfg):
    x = _data((3, 6, 11, 9), dtype, seed=22, scale=1.0)
    w = _data((9, 6 // cfg.get("groups", 1), 3, 3), dtype, seed=23, scale=0.3)
    b = _data((9,), dtype, seed=24)
    y = mnn.ops.conv2d_forward(_cuda(x), _cuda(w), _cuda(b), neuron="relu", **cfg)
    y_cpu = mnn.ops.conv2d_forward(x, w, b, neuron="relu", **cfg)
    assert y.device.type == "cuda"
    _close_tol(y.numpy(), y_cpu, GEMM_TOL[dtype])
    dy = _data(y_cpu.shape, dtype, seed=25, scale=1.0)
    _close_tol(mnn.ops.conv2d_backward_input(_cuda(dy), _cuda(w), x.shape, **cfg).numpy(),
               mnn.ops.conv2d_backward_input(dy, w, x.shape, **cfg), GEMM_TOL[dtype])
    _close_tol(mnn.ops.conv2d_backward_weight(_cuda(dy), _cuda(x), w.shape, **cfg).numpy(),
               mnn.ops.conv2d_backward_weight(dy, x, w.shape, **cfg), GEMM_TOL[dtype])
    _close_tol(mnn.ops.conv2d_backward_bias(_cuda(dy)).numpy(), mnn.ops.conv2d_backward_bias(dy), GEMM_TOL[dtype])


def test_digit_graph_training_step_on_cuda():
    from metalnn.examples.digit_graph import digit_network

    rng = np.random.default_rng(26)
    x = rng.random((16, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 16).astype(np.int32)
    losses = {}
    for dev in ["cpu", "cuda"]:
        graph = digit_network(mnn.Adam(learning_rate=1e-3), width=0.25).training_graph(device=dev)
        losses[dev] = [float(np.asarray(graph.run(x, labels=y).loss)) for _ in range(3)]
    # Same weights, dropout masks and Adam updates: the losses follow the same path.
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-3)
    assert losses["cuda"][2] < losses["cuda"][0]


def test_bias_gradient_large_shapes():
    dtype = "float32"
    # Many rows, several column blocks and chunks of the batch in the reduction passes.
    for shape in [(300, 130, 5, 10), (1029, 37, 1, 1), (2, 3, 1, 1)]:
        dy = _data(shape, dtype, seed=36, scale=1.0)
        got = mnn.ops.conv2d_backward_bias(_cuda(dy)).numpy()
        _close_tol(got, dy.astype(np.float64).sum(axis=(0, 2, 3)), (2e-3, 1e-5))
    dy = _data((513, 1030), dtype, seed=37, scale=1.0)
    _close_tol(mnn.ops.fully_connected_backward_bias(_cuda(dy)).numpy(), dy.astype(np.float64).sum(axis=0),
               (2e-3, 1e-5))


@pytest.mark.parametrize("layer", ["conv", "fc"])
def test_half_accumulation_close_to_cpu(layer):
    # float16 sums (cuDNN / cuBLAS compute type half) land near the CPU's half accumulation.
    x = _data((4, 8, 9, 7), "float16", seed=30, scale=0.5)
    if layer == "conv":
        w = _data((5, 8, 3, 3), "float16", seed=31, scale=0.2)
        run = lambda xx, ww, acc: mnn.ops.conv2d_forward(xx, ww, None, padding=1, accumulation=acc)  # noqa: E731
    else:
        x = x.reshape(4, -1)
        w = _data((6, x.shape[1]), "float16", seed=31, scale=0.1)
        run = lambda xx, ww, acc: mnn.ops.fully_connected_forward(xx, ww, None, accumulation=acc)  # noqa: E731
    got = np.asarray(run(_cuda(x), _cuda(w), "half").numpy(), np.float64)
    ref = np.asarray(run(x, w, "float"), np.float64)
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= 2e-2 * scale


def test_tf32_opt_in(monkeypatch):
    x = _data((8, 16, 12, 12), "float32", seed=32, scale=1.0)
    w = _data((24, 16, 3, 3), "float32", seed=33, scale=0.3)
    ref = mnn.ops.conv2d_forward(x, w, None, padding=1)
    for flag, tol in (("0", 1e-5), ("1", 3e-3)):
        monkeypatch.setenv("METALNN_ALLOW_TF32", flag)
        got = mnn.ops.conv2d_forward(_cuda(x), _cuda(w), None, padding=1).numpy()
        rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        assert rel < tol, (flag, rel)
        xf, wf = np.ascontiguousarray(x.reshape(8, -1)[:, :200]), _data((30, 200), "float32", seed=34)
        got = mnn.ops.fully_connected_forward(_cuda(xf), _cuda(wf), None).numpy()
        ref_f = mnn.ops.fully_connected_forward(xf, wf, None)
        assert np.linalg.norm(got - ref_f) / np.linalg.norm(ref_f) < tol


def _digit_losses(monkeypatch, graphs, steps=5, in_flight=2):
    from metalnn.examples.digit_graph import digit_network

    monkeypatch.setenv("METALNN_CUDA_GRAPHS", "1" if graphs else "0")
    rng = np.random.default_rng(35)
    xs = [rng.random((12, 1, 28, 28)).astype(np.float32) for _ in range(steps)]
    ys = [rng.integers(0, 10, 12).astype(np.int32) for _ in range(steps)]
    graph = digit_network(mnn.Adam(learning_rate=1e-3), width=0.25).training_graph(device="cuda")
    handles, losses = [], []
    for x, y in zip(xs, ys):
        handles.append(graph.encode_batch(x, labels=y))
        if len(handles) >= in_flight:
            losses.append(float(np.asarray(handles.pop(0).wait().loss)))
    losses += [float(np.asarray(h.wait().loss)) for h in handles]
    weights = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in graph.parameters().items()}
    return losses, weights


def test_cuda_graph_replay_matches_eager(monkeypatch):
    # The executor records and replays later batches as CUDA graphs; results (losses with fresh
    # dropout masks and Adam's bias correction each step, trained weights) match eager launches.
    eager, w_eager = _digit_losses(monkeypatch, graphs=False)
    graphed, w_graphed = _digit_losses(monkeypatch, graphs=True)
    np.testing.assert_allclose(graphed, eager, rtol=1e-4)
    for k in w_eager:
        np.testing.assert_allclose(w_graphed[k], w_eager[k], rtol=1e-3, atol=1e-5)
    assert len(set(graphed)) == len(graphed)  # every batch computed, none replayed stale


def test_training_graph_is_captured(monkeypatch, capfd):
    monkeypatch.setenv("METALNN_CUDA_GRAPH_LOG", "1")
    losses, _ = _digit_losses(monkeypatch, graphs=True, steps=3)
    assert "CUDA graphs off" not in capfd.readouterr().err


def test_cuda_graph_falls_back_for_host_steps(monkeypatch, capfd):
    # A Python step reads a slot on the host, which no capture can record: the batch (and the
    # executor's later ones) run eagerly with the same results.
    from metalnn import _core

    monkeypatch.setenv("METALNN_CUDA_GRAPH_LOG", "1")
    seen = []
    prog = _core.graph.Program(2, 0)
    prog.add_neuron_forward("relu", 0, 1, "relu", None, None)
    prog.add_python("look", lambda arrays: seen.append(np.array(arrays[0])), [1])
    ex = _core.graph.Executor(prog, 2, "cuda")
    for k in range(3):
        x = _data((5, 7), "float32", seed=40 + k)
        b = ex.encode([(0, x, "x")])
        b.wait()
        assert b.error() is None
        np.testing.assert_array_equal(seen[-1], np.maximum(x, 0))
        np.testing.assert_array_equal(b.slot(1), np.maximum(x, 0))
    assert len(seen) == 3
    assert "CUDA graphs off" in capfd.readouterr().err
