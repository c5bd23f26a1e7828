"""Graph optimizer descriptors (SGD, Adam, RMSProp): step() against the written-out update
rules in float64 over several steps, state layout, validation, serialisation."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

import metalnn as mnn
from metalnn.graph.optimizers import SGD, Adam, Optimizer, RMSProp, optimizer_from_dict

from helpers import assert_close, raises_named, randn, rng

SHAPE = (5, 3, 7)  # odd sizes: no vector-width multiple


# ---------------------------------------------------------------------------------------
# float64 references written from the math


def preprocess(w, g, opt):
    g = opt.gradient_rescale * g
    if opt.gradient_clip is not None:
        g = np.clip(g, *opt.gradient_clip)
    if opt.weight_decay > 0 and opt.regularization != "none":
        g = g + opt.weight_decay * (w if opt.regularization == "l2" else np.sign(w))
    return g


def ref_step(opt, w, g, state, t):
    """One update in float64; returns new (w, state)."""
    g = preprocess(w, g, opt)
    lr = opt.learning_rate
    s = dict(state)
    if isinstance(opt, SGD):
        if opt.momentum == 0:
            return w - lr * g, s
        v = opt.momentum * s["momentum_buffer"] - lr * g
        s["momentum_buffer"] = v
        w = w + opt.momentum * v - lr * g if opt.nesterov else w + v
        return w, s
    if isinstance(opt, Adam):
        m = opt.beta1 * s["m"] + (1 - opt.beta1) * g
        v = opt.beta2 * s["v"] + (1 - opt.beta2) * g * g
        lr_t = lr * np.sqrt(1 - opt.beta2**t) / (1 - opt.beta1**t)
        s["m"], s["v"] = m, v
        v_hat = v
        if opt.amsgrad:
            s["v_max"] = np.maximum(s["v_max"], v)
            v_hat = s["v_max"]
        return w - lr_t * m / (np.sqrt(v_hat) + opt.epsilon), s
    ms = opt.decay * s["s"] + (1 - opt.decay) * g * g
    s["s"] = ms
    return w - lr * g / (np.sqrt(ms) + opt.epsilon), s


CASES = [
    pytest.param(lambda: SGD(learning_rate=0.1), id="sgd-plain"),
    pytest.param(lambda: SGD(learning_rate=0.05, momentum=0.9), id="sgd-momentum"),
    pytest.param(lambda: SGD(0.05, 0.8, nesterov=True, weight_decay=0.01), id="sgd-nesterov-l2"),
    pytest.param(
        lambda: SGD(0.05, 0.5, weight_decay=0.1, regularization="l1", gradient_clip=(-0.5, 0.7)),
        id="sgd-l1-clip",
    ),
    pytest.param(lambda: Adam(learning_rate=0.01), id="adam"),
    pytest.param(
        lambda: Adam(0.02, beta1=0.8, beta2=0.99, epsilon=1e-4, gradient_rescale=0.5),
        id="adam-rescale",
    ),
    pytest.param(
        lambda: Adam(0.01, amsgrad=True, weight_decay=0.05, gradient_clip=(-1.0, 1.0)),
        id="amsgrad-l2-clip",
    ),
    pytest.param(lambda: RMSProp(learning_rate=0.01), id="rmsprop"),
    pytest.param(
        lambda: RMSProp(
            0.01,
            decay=0.7,
            epsilon=1e-3,
            weight_decay=0.02,
            regularization="l1",
            gradient_rescale=2.0,
        ),
        id="rmsprop-l1-rescale",
    ),
]


@pytest.mark.parametrize("make", CASES)
def test_step_matches_update_rule_over_three_steps(make):
    opt = make()
    r = rng(1)
    w = randn(r, *SHAPE)
    state = opt.init_state(w)
    w64 = w.astype(np.float64)
    s64 = {k: v.astype(np.float64) for k, v in state.items()}
    for t in (1, 2, 3):
        g = randn(r, *SHAPE)
        if t == 3:  # learning_rate is settable between steps (schedules)
            opt.learning_rate = opt.learning_rate * 0.5
        opt.step(w, g, state, t)
        w64, s64 = ref_step(opt, w64, g.astype(np.float64), s64, t)
        assert_close(w, w64, rtol=1e-5, atol=1e-6, what=f"weights after step {t}")
        for k in opt.state_names():
            assert state[k].dtype == np.float32
            assert_close(state[k], s64[k], rtol=1e-5, atol=1e-6, what=f"{k} after step {t}")
    assert not np.allclose(w, randn(rng(1), *SHAPE))  # the weights really moved


@pytest.mark.parametrize("make", CASES)
def test_step_many_equals_step(make):
    opt = make()
    r = rng(2)
    shapes = [(4, 3), (9,), (2, 5, 3)]
    ws = [randn(r, *s) for s in shapes]
    ws_single = [w.copy() for w in ws]
    states = [opt.init_state(w) for w in ws]
    states_single = [opt.init_state(w) for w in ws]
    for t in (1, 2):
        gs = [randn(r, *s) for s in shapes]
        opt.step_many(ws, gs, states, t)
        for w, g, s in zip(ws_single, gs, states_single):
            opt.step(w, g, s, t)
    for a, b in zip(ws, ws_single):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("make", [lambda: SGD(0.1, 0.9), lambda: Adam(0.01), lambda: RMSProp(0.01)])
def test_float16_weights(make):
    opt = make()
    r = rng(3)
    w = randn(r, *SHAPE, dtype=np.float16)
    state = opt.init_state(w)
    w64 = w.astype(np.float64)
    s64 = {k: v.astype(np.float64) for k, v in state.items()}
    for t in (1, 2, 3):
        g = randn(r, *SHAPE, dtype=np.float16)
        opt.step(w, g, state, t)
        w64, s64 = ref_step(opt, w64, g.astype(np.float64), s64, t)
    assert w.dtype == np.float16
    assert_close(w, w64, dtype=np.float16, atol=3e-3)


def test_state_names_and_init_state():
    assert SGD().state_names() == ()
    assert SGD(momentum=0.9).state_names() == ("momentum_buffer",)
    assert Adam().state_names() == ("m", "v")
    assert Adam(amsgrad=True).state_names() == ("m", "v", "v_max")
    assert RMSProp().state_names() == ("s",)
    w = np.ones((3, 4), np.float16)
    st = Adam(amsgrad=True).init_state(w)
    assert set(st) == {"m", "v", "v_max"}
    for a in st.values():
        assert a.shape == (3, 4) and a.dtype == np.float32 and not a.any()
    assert SGD().init_state(w) == {}
    with raises_named(TypeError, "Adam", "weights"):
        Adam().init_state([1.0, 2.0])


def test_kinds_and_hyperparameters_match_kernel_signatures():
    for opt, kernel in (
        (SGD(momentum=0.5), mnn.ops.sgd_step),
        (Adam(), mnn.ops.adam_step),
        (RMSProp(), mnn.ops.rmsprop_step),
    ):
        assert kernel.__name__ == f"{opt.kind}_step"
        params = set(inspect.signature(kernel).parameters)
        hp = opt.hyperparameters()
        assert set(hp) <= params, set(hp) - params
        # Everything the kernel takes besides tensors and the step count is covered.
        tensors = {"weights", "gradients", "momentum_buffer", "m", "v", "v_max", "s", "step"}
        assert params - tensors == set(hp)
    assert SGD().kind == "sgd" and Adam().kind == "adam" and RMSProp().kind == "rmsprop"
    assert isinstance(SGD(), Optimizer)


def test_defaults():
    s = SGD()
    assert (s.learning_rate, s.momentum, s.nesterov) == (0.01, 0.0, False)
    a = Adam()
    assert (a.learning_rate, a.beta1, a.beta2, a.epsilon, a.amsgrad) == (
        1e-3,
        0.9,
        0.999,
        1e-8,
        False,
    )
    p = RMSProp()
    assert (p.learning_rate, p.decay, p.epsilon) == (1e-3, 0.9, 1e-8)
    for o in (s, a, p):
        assert (o.weight_decay, o.regularization, o.gradient_rescale, o.gradient_clip) == (
            0.0,
            "l2",
            1.0,
            None,
        )


def test_to_dict_round_trip():
    for opt in (
        SGD(0.1, 0.9, True, weight_decay=1e-4),
        Adam(amsgrad=True, gradient_clip=(-2, 3)),
        RMSProp(decay=0.5, regularization="l1", gradient_rescale=0.25),
    ):
        d = json.loads(json.dumps(opt.to_dict()))
        back = optimizer_from_dict(d)
        assert type(back) is type(opt) and back == opt
        assert back.hyperparameters() == opt.hyperparameters()
    with raises_named(ValueError, "Optimizer", "kind"):
        optimizer_from_dict({"kind": "adagrad"})
    with raises_named(TypeError, "SGD", "unexpected field"):
        optimizer_from_dict({"kind": "sgd", "betas": 1})
    with raises_named(ValueError, "Adam", "beta1"):
        optimizer_from_dict({"kind": "adam", "beta1": 2.0})


BAD_INIT = [
    (SGD, {"learning_rate": -0.1}, ValueError, "learning_rate"),
    (SGD, {"learning_rate": float("nan")}, ValueError, "learning_rate"),
    (SGD, {"learning_rate": float("inf")}, ValueError, "learning_rate"),
    (SGD, {"learning_rate": 1e39}, ValueError, "learning_rate"),
    (SGD, {"learning_rate": "0.1"}, TypeError, "learning_rate"),
    (SGD, {"learning_rate": True}, TypeError, "learning_rate"),
    (SGD, {"momentum": 1.0}, ValueError, "momentum"),
    (SGD, {"momentum": -0.1}, ValueError, "momentum"),
    (SGD, {"nesterov": 1}, TypeError, "nesterov"),
    (SGD, {"nesterov": True}, ValueError, "nesterov"),
    (Adam, {"beta1": 1.0}, ValueError, "beta1"),
    (Adam, {"beta2": -0.5}, ValueError, "beta2"),
    (Adam, {"epsilon": 0.0}, ValueError, "epsilon"),
    (Adam, {"epsilon": 1e-50}, ValueError, "epsilon"),  # 0 in float32
    (Adam, {"amsgrad": "yes"}, TypeError, "amsgrad"),
    (RMSProp, {"decay": 1.0}, ValueError, "decay"),
    (RMSProp, {"epsilon": -1e-8}, ValueError, "epsilon"),
    (RMSProp, {"learning_rate": None}, TypeError, "learning_rate"),
]
COMMON_BAD = [
    ({"weight_decay": -1.0}, ValueError, "weight_decay"),
    ({"regularization": "l3"}, ValueError, "regularization"),
    ({"regularization": 2}, TypeError, "regularization"),
    ({"gradient_rescale": float("nan")}, ValueError, "gradient_rescale"),
    ({"gradient_clip": (1.0, -1.0)}, ValueError, "gradient_clip"),
    ({"gradient_clip": (0.0, float("nan"))}, ValueError, "gradient_clip"),
    ({"gradient_clip": 3.0}, TypeError, "gradient_clip"),
    ({"gradient_clip": (1.0, 2.0, 3.0)}, TypeError, "gradient_clip"),
    ({"gradient_clip": ("a", 1.0)}, TypeError, "gradient_clip"),
]
for _cls in (SGD, Adam, RMSProp):
    BAD_INIT += [(_cls, kw, exc, arg) for kw, exc, arg in COMMON_BAD]


@pytest.mark.parametrize("cls,kw,exc,arg", BAD_INIT)
def test_bad_arguments(cls, kw, exc, arg):
    with raises_named(exc, cls.__name__, arg):
        cls(**kw)


def test_one_sided_clip_allowed():
    opt = SGD(1.0, gradient_clip=(-float("inf"), 0.5))
    w = np.zeros(4, np.float32)
    opt.step(w, np.array([-2, 0.2, 0.7, 3], np.float32), {}, 1)
    np.testing.assert_array_equal(w, np.array([2, -0.2, -0.5, -0.5], np.float32))


def test_learning_rate_setter_validates():
    opt = Adam(0.01)
    with raises_named(ValueError, "Adam", "learning_rate"):
        opt.learning_rate = -1
    assert opt.learning_rate == 0.01
    opt.learning_rate = 0.5
    assert opt.learning_rate == 0.5 and opt.hyperparameters()["learning_rate"] == 0.5
    with pytest.raises(AttributeError):
        opt.beta1 = 0.5  # only the learning rate may change after validation


@pytest.mark.parametrize(
    "make", [lambda: SGD(0.1, 0.9), lambda: Adam(amsgrad=True), lambda: RMSProp()]
)
def test_bad_step_input_leaves_weights_and_state_untouched(make):
    opt = make()
    name = type(opt).__name__
    r = rng(4)
    w = randn(r, 4, 5)
    g = randn(r, 4, 5)
    state = opt.init_state(w)
    for k in state:
        state[k] += 0.25
    w0, s0 = w.copy(), {k: v.copy() for k, v in state.items()}

    def untouched():
        np.testing.assert_array_equal(w, w0)
        for k in state:
            np.testing.assert_array_equal(state[k], s0[k])

    missing = opt.state_names()[-1]
    partial = {k: v for k, v in state.items() if k != missing}
    with raises_named(ValueError, name, missing):
        opt.step(w, g, partial, 1)
    untouched()
    with raises_named(ValueError, name, "step"):
        opt.step(w, g, state, 0)
    untouched()
    with raises_named(TypeError, name, "step"):
        opt.step(w, g, state, 1.5)
    untouched()
    with raises_named(TypeError, name, "state"):
        opt.step(w, g, [state[k] for k in state], 1)
    untouched()
    # Shape errors come from the kernel, before anything is written.
    with raises_named(ValueError, f"{opt.kind}_step", "gradients"):
        opt.step(w, randn(r, 5, 4), state, 1)
    untouched()
    with raises_named(ValueError, name, "states"):
        opt.step_many([w], [g], [state, state], 1)
    untouched()
    with raises_named(ValueError, name, "states[0]"):
        opt.step_many([w], [g], [partial], 1)
    untouched()


# ---------------------------------------------------------------------------------------
# regularization "none" and the per-data-source learning-rate scale in a graph


def test_regularization_none_is_no_term():
    r = rng(50)
    w = randn(r, *SHAPE)
    g = randn(r, *SHAPE)
    a, b, c = w.copy(), w.copy(), w.copy()
    SGD(0.1, weight_decay=0.5, regularization="none").step(a, g, {}, 1)
    SGD(0.1).step(b, g, {}, 1)
    SGD(0.1, weight_decay=0.5, regularization="l1").step(c, g, {}, 1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(c, w - 0.1 * (g + 0.5 * np.sign(w)), rtol=1e-6)
    assert optimizer_from_dict(SGD(regularization="none").to_dict()).regularization == "none"


def _two_layer_graph(opt, scales, seed=51):
    """conv 3x3 + relu -> fully connected -> softmax cross-entropy; scales per layer."""
    from metalnn.graph import (
        ConvolutionNode,
        FullyConnectedNode,
        Graph,
        ImageNode,
        NeuronReLUNode,
        SoftmaxCrossEntropyLossNode,
    )
    from metalnn.graph.data_source import ConvolutionWeights

    ds1 = ConvolutionWeights(3, 4, 3, optimizer=opt, seed=seed, label="c1")
    ds2 = ConvolutionWeights(4, 5, (6, 6), optimizer=opt, seed=seed + 1, label="fc")
    for ds, sc in zip((ds1, ds2), scales):
        if sc is not None:
            ds.learning_rate_scale = sc
    x = ImageNode("x")
    c1 = ConvolutionNode(x, ds1)
    fc = FullyConnectedNode(NeuronReLUNode(c1.result).result, ds2)
    loss = SoftmaxCrossEntropyLossNode(fc.result)
    return Graph.training(loss), (ds1, ds2)


def _batch(seed=52):
    r = rng(seed)
    return randn(r, 6, 3, 6, 6), r.integers(0, 5, size=6).astype(np.int32)


@pytest.mark.parametrize("make", [lambda: SGD(0.1, 0.9), lambda: Adam(0.01), lambda: RMSProp(0.01)])
def test_learning_rate_scale_scales_each_layers_first_step(make):
    x, labels = _batch()
    base, (b1, b2) = _two_layer_graph(make(), (None, None))
    scaled, (s1, s2) = _two_layer_graph(make(), (0.5, 2.0))
    w0 = [b1.weights().copy(), b1.biases().copy(), b2.weights().copy(), b2.biases().copy()]
    base.run(x, labels)
    scaled.run(x, labels)
    # Same weights and batch, so the same gradients: the first step is linear in the learning rate.
    for got, ref, start, k in zip((s1.weight_array, s1.bias_array, s2.weight_array, s2.bias_array),
                                  (b1.weight_array, b1.bias_array, b2.weight_array, b2.bias_array),
                                  w0, (0.5, 0.5, 2.0, 2.0)):
        assert np.abs(ref - start).max() > 1e-4
        np.testing.assert_allclose(got - start, k * (ref - start), rtol=1e-4, atol=1e-6)


def test_learning_rate_scale_zero_freezes_a_layer_and_changes_recompile():
    x, labels = _batch(53)
    graph, (d1, d2) = _two_layer_graph(Adam(0.01), (None, 0.0))
    w1, w2 = d1.weights().copy(), d2.weights().copy()
    for _ in range(3):
        graph.run(x, labels)
    np.testing.assert_array_equal(d2.weight_array, w2)  # frozen: gradients still flow to c1
    assert np.abs(d1.weight_array - w1).max() > 1e-4
    d2.learning_rate_scale = 1.0  # read when the graph compiles: a new value recompiles
    graph.run(x, labels)
    assert np.abs(d2.weight_array - w2).max() > 1e-4


@pytest.mark.parametrize("bad,exc", [(-1.0, ValueError), (float("nan"), ValueError), ("x", TypeError)])
def test_learning_rate_scale_bad_values(bad, exc):
    x, labels = _batch(54)
    graph, (d1, _) = _two_layer_graph(SGD(0.1), (bad, None))
    w = d1.weights().copy()
    with pytest.raises(exc, match=r"^\[Graph\] node 'c1': learning_rate_scale"):
        graph.run(x, labels)
    np.testing.assert_array_equal(d1.weights(), w)
