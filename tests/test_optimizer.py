"""Optimizer steps (SGD, Adam/AMSGrad, RMSProp): several steps against the update rules
written out in numpy (float64), every option, float16 weights, the multi-tensor forms,
bad input that must leave weights and state byte-identical, NaN propagation."""

import numpy as np
import pytest

import metalnn as mnn

from helpers import assert_close, raises_named, randn, rng

STEPS = 5


# ---------------------------------------------------------------- numpy references (float64)


def _prep(g, w, rescale=1.0, clip=None, weight_decay=0.0, regularization="l2"):
    """MPS order: rescale, clip, then regularization."""
    g = rescale * g
    if clip is not None:
        g = np.clip(g, clip[0], clip[1])
    if weight_decay and regularization != "none":
        g = g + weight_decay * (w if regularization == "l2" else np.sign(w))
    return g


def _ref_sgd(w, g, st, lr=0.01, momentum=0.0, nesterov=False, **pre):
    g = _prep(g, w, **pre)
    v = momentum * st["momentum_buffer"] - lr * g
    st["momentum_buffer"] = v
    return w + (momentum * v - lr * g if nesterov else v)


def _ref_adam(w, g, st, t, lr=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8, amsgrad=False, **pre):
    g = _prep(g, w, **pre)
    st["m"] = beta1 * st["m"] + (1 - beta1) * g
    st["v"] = beta2 * st["v"] + (1 - beta2) * g * g
    lr_t = lr * np.sqrt(1 - beta2**t) / (1 - beta1**t)
    v_hat = st["v"]
    if amsgrad:
        st["v_max"] = np.maximum(st["v_max"], st["v"])
        v_hat = st["v_max"]
    return w - lr_t * st["m"] / (np.sqrt(v_hat) + epsilon)


def _ref_rmsprop(w, g, st, lr=1e-3, decay=0.9, epsilon=1e-8, **pre):
    g = _prep(g, w, **pre)
    st["s"] = decay * st["s"] + (1 - decay) * g * g
    return w - lr * g / (np.sqrt(st["s"]) + epsilon)


PRE_KEYS = ("rescale", "clip", "weight_decay", "regularization")


def _api_kwargs(kw):
    """Reference keyword names -> API keyword names."""
    out = dict(kw)
    if "lr" in out:
        out["learning_rate"] = out.pop("lr")
    if "rescale" in out:
        out["gradient_rescale"] = out.pop("rescale")
    if "clip" in out:
        out["gradient_clip"] = out.pop("clip")
    return out


def _run(kind, kw, shape, dtype=np.float32, seed=0, grad_scales=None, state_names=None):
    """Runs STEPS steps of the kernel and the reference; compares weights and state after each."""
    r = rng(seed)
    w = randn(r, *shape, dtype=dtype)
    w_ref = w.astype(np.float64)
    names = state_names or {"sgd": ["momentum_buffer"], "adam": ["m", "v"], "rmsprop": ["s"]}[kind]
    if kind == "adam" and kw.get("amsgrad"):
        names = names + ["v_max"]
    state = {n: np.zeros(shape, np.float32) for n in names}
    state_ref = {n: np.zeros(shape, np.float64) for n in names}
    ids = {n: id(a) for n, a in state.items()}
    rtol = 1e-5 if dtype == np.float32 else 2e-3
    for t in range(1, STEPS + 1):
        scale = grad_scales[t - 1] if grad_scales else 1.0
        g = randn(r, *shape, dtype=dtype, scale=scale)
        gd = g.astype(np.float64)
        api = _api_kwargs(kw)
        if kind == "sgd":
            mnn.ops.sgd_step(w, g, state.get("momentum_buffer"), **api)
            w_ref = _ref_sgd(w_ref, gd, state_ref, **kw)
        elif kind == "adam":
            mnn.ops.adam_step(w, g, state["m"], state["v"], t, v_max=state.get("v_max"), **api)
            w_ref = _ref_adam(w_ref, gd, state_ref, t, **kw)
        else:
            mnn.ops.rmsprop_step(w, g, state["s"], **api)
            w_ref = _ref_rmsprop(w_ref, gd, state_ref, **kw)
        if dtype == np.float16:
            w_ref = w_ref.astype(np.float16).astype(np.float64)  # the kernel stores half weights
        assert w.dtype == dtype
        assert_close(w, w_ref, rtol=rtol, what=f"{kind} weights, step {t}")
        for n in names:
            assert id(state[n]) == ids[n] and state[n].dtype == np.float32
            assert_close(state[n], state_ref[n], rtol=rtol, what=f"{kind} {n}, step {t}")
    return w, state


SGD_CASES = [
    {"lr": 0.1},
    {"lr": 0.05, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.8, "nesterov": True},
    {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.1},
    {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.05, "regularization": "l1"},
    {
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "rescale": 0.5,
        "clip": (-0.3, 0.6),
        "weight_decay": 0.01,
    },
]


@pytest.mark.parametrize("shape", [(37,), (3, 5, 7)])
@pytest.mark.parametrize("kw", SGD_CASES, ids=lambda k: ",".join(k))
def test_sgd_matches_numpy(kw, shape):
    _run("sgd", kw, shape)


def test_sgd_without_momentum_buffer():
    # momentum == 0: the buffer is optional and w -= lr * g.
    _run("sgd", {"lr": 0.1, "weight_decay": 0.2}, (37,), state_names=[])


ADAM_CASES = [
    {},
    {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-6},
    {"lr": 0.01, "weight_decay": 0.1},
    {"lr": 0.01, "rescale": 2.0, "clip": (-1.0, 0.5)},
    {"lr": 0.01, "beta1": 0.0, "beta2": 0.0, "epsilon": 0.1},
    {"lr": 0.01, "amsgrad": True},
    {
        "lr": 0.01,
        "amsgrad": True,
        "weight_decay": 0.05,
        "regularization": "l1",
        "clip": (-2.0, 2.0),
    },
]


@pytest.mark.parametrize("shape", [(37,), (3, 5, 7)])
@pytest.mark.parametrize("kw", ADAM_CASES, ids=lambda k: ",".join(k) or "defaults")
def test_adam_matches_numpy(kw, shape):
    _run("adam", kw, shape)


def test_amsgrad_uses_v_max():
    # Large gradients, then small ones: v (beta2 = 0.5) decays below v_max; the rules differ.
    scales = [3.0, 3.0, 0.05, 0.05, 0.05]
    w_ams, st = _run("adam", {"lr": 0.01, "beta2": 0.5, "amsgrad": True}, (37,), grad_scales=scales)
    w_plain, _ = _run("adam", {"lr": 0.01, "beta2": 0.5}, (37,), grad_scales=scales)
    assert np.all(st["v_max"] >= st["v"]) and np.mean(st["v_max"] > 2 * st["v"]) > 0.5
    assert np.max(np.abs(w_ams - w_plain)) > 1e-3


RMSPROP_CASES = [
    {},
    {"lr": 0.01, "decay": 0.5, "epsilon": 1e-4},
    {"lr": 0.01, "weight_decay": 0.1, "rescale": 0.25, "clip": (-0.2, 0.1)},
]


@pytest.mark.parametrize("shape", [(37,), (3, 5, 7)])
@pytest.mark.parametrize("kw", RMSPROP_CASES, ids=lambda k: ",".join(k) or "defaults")
def test_rmsprop_matches_numpy(kw, shape):
    _run("rmsprop", kw, shape)


@pytest.mark.parametrize(
    "kind,kw",
    [
        ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
        ("adam", {"lr": 0.01, "amsgrad": True, "clip": (-1.0, 1.0)}),
        ("rmsprop", {"lr": 0.01, "rescale": 0.5}),
    ],
)
def test_float16_weights(kind, kw):
    _run(kind, kw, (3, 5, 7), dtype=np.float16)


def test_large_tensor_parallel_and_thread_independent():
    # Larger than the parallel grain and odd-sized: split across threads, same bits as one thread.
    n = 3 * (1 << 14) + 5
    r = rng(9)
    w0, g = randn(r, n), randn(r, n)
    results = []
    try:
        for threads in (1, 3):
            mnn.set_num_threads(threads)
            w, m, v = w0.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32)
            mnn.ops.adam_step(w, g, m, v, 1, learning_rate=0.01)
            results.append(w)
    finally:
        mnn.set_num_threads(0)
    np.testing.assert_array_equal(results[0], results[1])
    st = {"m": np.zeros(n), "v": np.zeros(n)}
    assert_close(results[0], _ref_adam(w0.astype(np.float64), g.astype(np.float64), st, 1, lr=0.01))


def test_tensor_weights_updated_in_place():
    r = rng(10)
    w = randn(r, 37)
    g = randn(r, 37)
    t = mnn.tensor(w)
    buf = mnn.tensor(np.zeros(37, np.float32))
    assert mnn.ops.sgd_step(t, g, buf, learning_rate=0.1, momentum=0.5) is None
    np.testing.assert_allclose(t.numpy(), w - 0.1 * g, rtol=1e-6)
    np.testing.assert_allclose(buf.numpy(), -0.1 * g, rtol=1e-6)


# ---------------------------------------------------------------- multi-tensor forms

SHAPES = [(37,), (3, 5, 7), (1,), (4, 4), (0,), (2 * (1 << 14) + 3,)]


def _params(seed, dtypes=None):
    r = rng(seed)
    dtypes = dtypes or [np.float32, np.float16, np.float32, np.float32, np.float32, np.float16]
    ws = [randn(r, *s, dtype=d) for s, d in zip(SHAPES, dtypes)]
    gs = [randn(r, *s, dtype=d) for s, d in zip(SHAPES, dtypes)]
    return ws, gs


def _zeros_like(ws):
    return [np.zeros(w.shape, np.float32) for w in ws]


@pytest.mark.parametrize("kind", ["sgd", "adam", "rmsprop"])
def test_many_equals_single(kind):
    ws, gs = _params(11)
    ws1 = [w.copy() for w in ws]
    states = [_zeros_like(ws) for _ in range(3)]
    states1 = [_zeros_like(ws) for _ in range(3)]
    for t in range(1, 4):
        if kind == "sgd":
            kw = {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}
            mnn.ops.sgd_step_many(ws, gs, states[0], **kw)
            for i in range(len(ws)):
                mnn.ops.sgd_step(ws1[i], gs[i], states1[0][i], **kw)
        elif kind == "adam":
            kw = {"learning_rate": 0.01, "amsgrad": True, "gradient_clip": (-1.0, 1.0)}
            mnn.ops.adam_step_many(ws, gs, states[0], states[1], t, v_max=states[2], **kw)
            for i in range(len(ws)):
                mnn.ops.adam_step(
                    ws1[i], gs[i], states1[0][i], states1[1][i], t, v_max=states1[2][i], **kw
                )
        else:
            kw = {"learning_rate": 0.01, "gradient_rescale": 0.5}
            mnn.ops.rmsprop_step_many(ws, gs, states[0], **kw)
            for i in range(len(ws)):
                mnn.ops.rmsprop_step(ws1[i], gs[i], states1[0][i], **kw)
    for i in range(len(ws)):
        np.testing.assert_array_equal(ws[i], ws1[i])
        for k in range(3):
            np.testing.assert_array_equal(states[k][i], states1[k][i])
    assert not np.array_equal(ws[0], _params(11)[0][0])  # it did update


def test_many_bad_entry_leaves_everything_untouched():
    ws, gs = _params(12)
    m, v = _zeros_like(ws), _zeros_like(ws)
    for a in m + v:
        a[...] = 0.5
    before = [a.tobytes() for a in ws + m + v]
    bad_v = list(v)
    bad_v[3] = np.zeros((4, 5), np.float32)  # wrong shape, after valid entries 0..2
    with raises_named(ValueError, "adam_step_many", "v[3]"):
        mnn.ops.adam_step_many(ws, gs, m, bad_v, 1)
    bad_g = list(gs)
    bad_g[2] = gs[2].astype(np.float16)
    with raises_named(TypeError, "adam_step_many", "gradients[2]"):
        mnn.ops.adam_step_many(ws, bad_g, m, v, 1)
    with raises_named(ValueError, "adam_step_many", "gradients"):
        mnn.ops.adam_step_many(ws, gs[:-1], m, v, 1)
    with raises_named(ValueError, "adam_step_many", "v_max"):
        mnn.ops.adam_step_many(ws, gs, m, v, 1, amsgrad=True)
    with raises_named(ValueError, "sgd_step_many", "share memory"):
        mnn.ops.sgd_step_many([ws[0], ws[0]], [gs[0], gs[0]])
    with raises_named(TypeError, "rmsprop_step_many", "weights"):
        mnn.ops.rmsprop_step_many(ws[0], gs[0], m[0])
    assert [a.tobytes() for a in ws + m + v] == before


# ---------------------------------------------------------------- bad input


def _arrays(seed=13, shape=(3, 5)):
    r = rng(seed)
    return {
        "w": randn(r, *shape),
        "g": randn(r, *shape),
        "buf": randn(r, *shape),
        "m": randn(r, *shape),
        "v": np.abs(randn(r, *shape)),
        "v_max": np.abs(randn(r, *shape)) + 1,
        "s": np.abs(randn(r, *shape)),
    }


def _snapshot(a):
    return {k: x.tobytes() for k, x in a.items()}


def _sgd(a, **kw):
    args = {"weights": a["w"], "gradients": a["g"], "momentum_buffer": a["buf"], "momentum": 0.9}
    args.update(kw)
    mnn.ops.sgd_step(**args)


def _adam(a, **kw):
    args = {
        "weights": a["w"],
        "gradients": a["g"],
        "m": a["m"],
        "v": a["v"],
        "step": 1,
        "amsgrad": True,
        "v_max": a["v_max"],
    }
    args.update(kw)
    mnn.ops.adam_step(**args)


def _rmsprop(a, **kw):
    args = {"weights": a["w"], "gradients": a["g"], "s": a["s"]}
    args.update(kw)
    mnn.ops.rmsprop_step(**args)


def _readonly(x):
    x = x.copy()
    x.setflags(write=False)
    return x


BAD = [
    # (runner, op, exception, argument named in the message, keyword overrides (callable of arrays))
    (
        _sgd,
        "sgd_step",
        ValueError,
        "gradients",
        lambda a: {"gradients": np.ones((3, 6), np.float32)},
    ),
    (
        _sgd,
        "sgd_step",
        ValueError,
        "momentum_buffer",
        lambda a: {"momentum_buffer": np.ones((15,), np.float32)},
    ),
    (_sgd, "sgd_step", ValueError, "momentum_buffer", lambda a: {"momentum_buffer": None}),
    (
        _sgd,
        "sgd_step",
        TypeError,
        "momentum_buffer",
        lambda a: {"momentum_buffer": a["buf"].astype(np.float16)},
    ),
    (_sgd, "sgd_step", TypeError, "gradients", lambda a: {"gradients": a["g"].astype(np.float16)}),
    (_sgd, "sgd_step", TypeError, "weights", lambda a: {"weights": a["w"].astype(np.float64)}),
    (_sgd, "sgd_step", TypeError, "weights", lambda a: {"weights": a["w"].astype(np.int32)}),
    (_sgd, "sgd_step", TypeError, "weights", lambda a: {"weights": a["w"].tolist()}),
    (_sgd, "sgd_step", ValueError, "weights", lambda a: {"weights": _readonly(a["w"])}),
    (
        _sgd,
        "sgd_step",
        ValueError,
        "momentum_buffer",
        lambda a: {"momentum_buffer": _readonly(a["buf"])},
    ),
    (
        _sgd,
        "sgd_step",
        ValueError,
        "weights",
        lambda a: {"weights": np.ones((3, 10), np.float32)[:, ::2]},
    ),
    (
        _sgd,
        "sgd_step",
        ValueError,
        "gradients",
        lambda a: {"gradients": np.ones((3, 10), np.float32)[:, ::2]},
    ),
    (_sgd, "sgd_step", ValueError, "learning_rate", lambda a: {"learning_rate": -0.1}),
    (_sgd, "sgd_step", ValueError, "learning_rate", lambda a: {"learning_rate": float("nan")}),
    (_sgd, "sgd_step", ValueError, "learning_rate", lambda a: {"learning_rate": 1e300}),
    (_sgd, "sgd_step", ValueError, "momentum", lambda a: {"momentum": 1.0}),
    (_sgd, "sgd_step", ValueError, "momentum", lambda a: {"momentum": -0.5}),
    (_sgd, "sgd_step", ValueError, "weight_decay", lambda a: {"weight_decay": -1.0}),
    (
        _sgd,
        "sgd_step",
        ValueError,
        "gradient_rescale",
        lambda a: {"gradient_rescale": float("inf")},
    ),
    (_sgd, "sgd_step", ValueError, "gradient_clip", lambda a: {"gradient_clip": (1.0, -1.0)}),
    (_sgd, "sgd_step", ValueError, "gradient_clip", lambda a: {"gradient_clip": (1.0, 2.0, 3.0)}),
    (
        _sgd,
        "sgd_step",
        ValueError,
        "gradient_clip",
        lambda a: {"gradient_clip": (float("nan"), 1.0)},
    ),
    (_sgd, "sgd_step", ValueError, "regularization", lambda a: {"regularization": "l3"}),
    (_sgd, "sgd_step", ValueError, "share memory", lambda a: {"momentum_buffer": a["w"]}),
    (_sgd, "sgd_step", ValueError, "share memory", lambda a: {"gradients": a["buf"]}),
    (_adam, "adam_step", ValueError, "beta1", lambda a: {"beta1": 1.0}),
    (_adam, "adam_step", ValueError, "beta2", lambda a: {"beta2": 1.5}),
    (_adam, "adam_step", ValueError, "epsilon", lambda a: {"epsilon": 0.0}),
    (_adam, "adam_step", ValueError, "epsilon", lambda a: {"epsilon": 1e-60}),
    (_adam, "adam_step", ValueError, "step", lambda a: {"step": 0}),
    (_adam, "adam_step", ValueError, "step", lambda a: {"step": -3}),
    (_adam, "adam_step", ValueError, "v_max", lambda a: {"v_max": None}),
    (_adam, "adam_step", ValueError, "v_max", lambda a: {"v_max": np.ones((5, 3), np.float32)}),
    (_adam, "adam_step", ValueError, "m", lambda a: {"m": np.ones((3, 5, 1), np.float32)}),
    (_adam, "adam_step", TypeError, "v", lambda a: {"v": a["v"].astype(np.float16)}),
    (_adam, "adam_step", ValueError, "v", lambda a: {"v": _readonly(a["v"])}),
    (_adam, "adam_step", TypeError, "m", lambda a: {"m": None}),
    (_adam, "adam_step", ValueError, "share memory", lambda a: {"v": a["m"]}),
    (
        _adam,
        "adam_step",
        ValueError,
        "share memory",
        lambda a: {"v_max": a["v"].reshape(-1)[:15].reshape(3, 5)},
    ),
    (_adam, "adam_step", ValueError, "learning_rate", lambda a: {"learning_rate": -1e-3}),
    (_rmsprop, "rmsprop_step", ValueError, "decay", lambda a: {"decay": 1.0}),
    (_rmsprop, "rmsprop_step", ValueError, "epsilon", lambda a: {"epsilon": -1e-8}),
    (_rmsprop, "rmsprop_step", ValueError, "s", lambda a: {"s": np.ones((15,), np.float32)}),
    (
        _rmsprop,
        "rmsprop_step",
        ValueError,
        "gradients",
        lambda a: {"gradients": np.ones((5, 3), np.float32)},
    ),
    (
        _rmsprop,
        "rmsprop_step",
        ValueError,
        "gradient_clip",
        lambda a: {"gradient_clip": (0.5, 0.25)},
    ),
]


@pytest.mark.parametrize(
    "runner,op,exc,arg,override", BAD, ids=[f"{b[1]}-{b[3]}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_input_leaves_weights_and_state_untouched(runner, op, exc, arg, override):
    a = _arrays()
    before = _snapshot(a)
    with raises_named(exc, op, arg):
        runner(a, **override(a))
    assert _snapshot(a) == before
    runner(a)  # the same arrays still work
    assert _snapshot(a)["w"] != before["w"]


def test_v_max_ignored_without_amsgrad():
    a = _arrays()
    before = a["v_max"].tobytes()
    mnn.ops.adam_step(a["w"], a["g"], a["m"], a["v"], 1, v_max=a["v_max"])
    assert a["v_max"].tobytes() == before


@pytest.mark.parametrize("runner", [_sgd, _adam, _rmsprop])
@pytest.mark.parametrize("clip", [None, (-0.5, 0.5)])
def test_nan_gradient_propagates(runner, clip):
    a = _arrays()
    a["g"][1, 2] = np.nan
    a["g"][0, 0] = np.inf
    runner(a, gradient_clip=clip)
    assert np.isnan(a["w"][1, 2])
    finite = np.ones(a["w"].shape, bool)
    finite[1, 2] = finite[0, 0] = False
    assert np.all(np.isfinite(a["w"][finite]))
    if clip is not None:
        assert np.isfinite(a["w"][0, 0])  # +inf clipped to 0.5


# ---------------------------------------------------------------- regularization types and per-tensor scales


@pytest.mark.parametrize("regularization", ["l2", "l1", "none"])
@pytest.mark.parametrize("kind,kw", [
    ("sgd", {"lr": 0.1, "momentum": 0.7}),
    ("adam", {"lr": 0.05, "amsgrad": True}),
    ("rmsprop", {"lr": 0.02, "decay": 0.8}),
])
def test_regularization_types_match_numpy(kind, kw, regularization):
    # MPSNNRegularizationType none / L1 / L2, applied to the gradient before the update rule.
    w, _ = _run(kind, {**kw, "weight_decay": 0.3, "regularization": regularization}, (7, 9), seed=40)
    w_plain, _ = _run(kind, kw, (7, 9), seed=40)
    if regularization == "none":
        np.testing.assert_array_equal(w, w_plain)
    else:
        assert not np.allclose(w, w_plain, atol=1e-4)  # the term changed the trajectory


def test_l1_and_l2_terms_differ_as_their_gradients():
    # One plain SGD step: w - lr * (g + scale * w) versus w - lr * (g + scale * sign(w)), sign(0) = 0.
    w = np.array([-2.0, -0.5, 0.0, 0.25, 3.0], np.float32)
    g = np.zeros_like(w)
    for reg, term in (("l2", w), ("l1", np.sign(w)), ("none", 0 * w)):
        wk = w.copy()
        mnn.ops.sgd_step(wk, g, learning_rate=0.5, weight_decay=0.2, regularization=reg)
        np.testing.assert_allclose(wk, w - 0.5 * 0.2 * term, rtol=1e-6)


def _run_many_scaled(kind, scales, kw, seed=41):
    """Three *_many steps with learning_rate_scales against the numpy rule with lr * scale."""
    r = rng(seed)
    shapes = [(4, 3), (5,), (2, 3, 3)]
    ws = [randn(r, *s) for s in shapes]
    refs = [w.astype(np.float64) for w in ws]
    names = {"sgd": ["momentum_buffer"], "adam": ["m", "v"], "rmsprop": ["s"]}[kind]
    st = [{n: np.zeros(s, np.float32) for n in names} for s in shapes]
    st_ref = [{n: np.zeros(s) for n in names} for s in shapes]
    api = _api_kwargs(kw)
    for t in range(1, 4):
        gs = [randn(r, *s) for s in shapes]
        if kind == "sgd":
            mnn.ops.sgd_step_many(ws, gs, [x["momentum_buffer"] for x in st], learning_rate_scales=scales, **api)
        elif kind == "adam":
            mnn.ops.adam_step_many(ws, gs, [x["m"] for x in st], [x["v"] for x in st], t,
                                   learning_rate_scales=scales, **api)
        else:
            mnn.ops.rmsprop_step_many(ws, gs, [x["s"] for x in st], learning_rate_scales=scales, **api)
        for i, sc in enumerate(scales):
            k = {**kw, "lr": kw["lr"] * sc}
            g64 = gs[i].astype(np.float64)
            if kind == "sgd":
                refs[i] = _ref_sgd(refs[i], g64, st_ref[i], **k)
            elif kind == "adam":
                refs[i] = _ref_adam(refs[i], g64, st_ref[i], t, **k)
            else:
                refs[i] = _ref_rmsprop(refs[i], g64, st_ref[i], **k)
    for i in range(len(shapes)):
        assert_close(ws[i], refs[i], what=f"{kind} weights[{i}] with scale {scales[i]}")
        for n in names:
            assert_close(st[i][n], st_ref[i][n], what=f"{kind} {n}[{i}]")
    return ws


@pytest.mark.parametrize("kind,kw", [
    ("sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    ("adam", {"lr": 0.05, "weight_decay": 0.02, "regularization": "l1"}),
    ("rmsprop", {"lr": 0.02, "clip": (-1.0, 1.0)}),
])
def test_learning_rate_scales_match_numpy(kind, kw):
    ws = _run_many_scaled(kind, [1.0, 0.25, 0.0], kw)
    r = rng(41)
    start = [randn(r, *s) for s in [(4, 3), (5,), (2, 3, 3)]]
    np.testing.assert_array_equal(ws[2], start[2])  # scale 0: the tensor stays (its state moves)
    # all-equal scales are the same as a scaled learning rate
    same = _run_many_scaled(kind, [0.5, 0.5, 0.5], kw, seed=42)
    half = _run_many_scaled(kind, [1.0, 1.0, 1.0], {**kw, "lr": kw["lr"] * 0.5}, seed=42)
    for a, b in zip(same, half):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_learning_rate_scales_bad_input_leaves_everything_untouched():
    ws, gs = _params(43)
    bufs = _zeros_like(ws)
    before = [a.tobytes() for a in ws + bufs]
    n = len(ws)
    for exc, scales in ((ValueError, [1.0] * (n - 1)), (ValueError, [1.0] * (n - 1) + [-0.5]),
                        (ValueError, [1.0] * (n - 1) + [float("nan")]), (ValueError, [float("inf")] * n),
                        (TypeError, "fast"), (TypeError, [1.0] * (n - 1) + ["x"]), (TypeError, 3.0)):
        with raises_named(exc, "sgd_step_many", "learning_rate_scales"):
            mnn.ops.sgd_step_many(ws, gs, bufs, learning_rate=0.1, momentum=0.9, learning_rate_scales=scales)
    assert [a.tobytes() for a in ws + bufs] == before
