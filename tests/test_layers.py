"""The layer API builds the node API's graph; fit / evaluate / predict."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn.examples.digit_graph import digit_network
from metalnn.layers import (
    AvgPool2d,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Softmax,
    Tanh,
)

WIDTH = 0.25  # channels 8, 16, 256: the digit network's shape, narrow enough to run fast
C1, C2, F1 = 8, 16, 256


def _digit_layers(**kw):
    return Sequential([
        Conv2d(1, C1, 5), ReLU(), MaxPool2d(2),
        Conv2d(C1, C2, 5), ReLU(), MaxPool2d(2),
        Flatten(), Linear(7 * 7 * C2, F1), ReLU(), Dropout(0.5, seed=7, name="dropout"),
        Linear(F1, 10),
    ], input_shape=(1, 28, 28), **kw)


def _signature(node):
    """What makes a node compute what it does (no ids)."""
    sig = [node.kind, node.label]
    if hasattr(node, "data_source"):
        d = node.data_source.descriptor()
        sig += [d, node.padding.kind, node.padding.values, node.accumulation]
    for attr in ("kernel", "stride", "keep_probability", "seed", "neuron_type", "a", "b", "log"):
        if hasattr(node, attr):
            sig.append((attr, getattr(node, attr)))
    return sig


def _topology(graph):
    index = {}
    for node in graph.nodes:
        index[node.result] = len(index)
    return [(_signature(n), tuple(index.get(s, s.name) for s in n.sources)) for n in graph.nodes]


def _batches(steps, n=8, seed=0):
    r = np.random.default_rng(seed)
    return [(r.random((n, 1, 28, 28), dtype=np.float32), r.integers(0, 10, n).astype(np.int32)) for _ in range(steps)]


def test_same_graph_as_the_hand_built_digit_network():
    net = digit_network(mnn.Adam(1e-3), width=WIDTH)
    model = _digit_layers().compile(mnn.Adam(1e-3), "softmax_cross_entropy")
    assert _topology(model.graph) == _topology(net.inference_graph())
    assert _topology(model.training_graph) == _topology(net.training_graph())
    assert len(model.training_graph.nodes) == 21
    # Same initial weights: trainable layer k draws from seed + k, as digit_network does.
    for a, b in zip([n for n in model.nodes if hasattr(n, "data_source")],
                    [n for n in net.inference_graph().nodes if hasattr(n, "data_source")]):
        np.testing.assert_array_equal(a.data_source.weights(), b.data_source.weights())


def test_identical_losses_for_a_few_steps():
    net = digit_network(mnn.Adam(1e-3), width=WIDTH)
    hand = net.training_graph(device="cpu")
    model = _digit_layers(device="cpu").compile(mnn.Adam(1e-3), "sparse_categorical_crossentropy")
    for x, y in _batches(3):
        assert model.training_graph.run(x, labels=y).loss == hand.run(x, labels=y).loss
    # fit with one batch per epoch, no shuffling, runs the same steps as the graph API.
    (x, y), = _batches(1, seed=5)
    expected = hand.run(x, labels=y).loss
    history = model.fit(x, y, epochs=1, batch_size=8, shuffle=False, progress=False)
    assert history["loss"] == [pytest.approx(expected, rel=1e-6)]
    np.testing.assert_array_equal(model.predict(x[:3]), net.inference_graph(device="cpu").run(x[:3]).result)


def _quadrants(n, seed):
    """Class = the brightest quadrant of a noisy 8x8 image: learnable in a few epochs."""
    r = np.random.default_rng(seed)
    y = r.integers(0, 4, n)
    x = r.random((n, 1, 8, 8), dtype=np.float32) * 0.5
    for i, c in enumerate(y):
        x[i, 0, (c // 2) * 4:(c // 2) * 4 + 4, (c % 2) * 4:(c % 2) * 4 + 4] += 1.0
    return x, y.astype(np.int64)


def test_fit_evaluate_predict(capsys):
    x, y = _quadrants(256, 0)
    xv, yv = _quadrants(64, 1)
    model = Sequential([Conv2d(None, 4, 3, activation="relu"), AvgPool2d(2), Flatten(), Dense(16, "tanh"),
                        Dense(4), Softmax()], seed=3)
    model.compile(mnn.Adam(3e-3), "cross_entropy")
    before = model.evaluate(xv, yv)
    history = model.fit(x, y, epochs=4, batch_size=32, validation_data=(xv, yv), progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/4" in err and "epoch 4/4" in err  # the tqdm bars
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 4 for v in history.values())
    assert history["loss"][-1] < history["loss"][0]
    after = model.evaluate(xv, yv)
    assert after["loss"] < before["loss"] and after["accuracy"] >= 0.9
    assert after == pytest.approx({"loss": history["val_loss"][-1], "accuracy": history["val_accuracy"][-1]})
    probs = model.predict(xv, batch_size=10)  # the last layer is the softmax: rows sum to 1
    assert probs.shape == (64, 4)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert np.mean(probs.argmax(1) == yv) == pytest.approx(after["accuracy"])
    # The loss reads the logits (the softmax's input), not the probabilities.
    assert model.training_graph.loss_nodes[0].sources[0] is model.logits
    assert model.logits is not model.output


def test_string_optimizers_and_layer_names():
    model = Sequential([Linear(None, 3, name="hidden"), Tanh(), Linear(3, 2)], input_shape=(5,))
    model.compile("sgd")
    assert [n.label for n in model.nodes] == ["hidden", "tanh1", "fc1"]
    assert model.nodes[0].data_source.optimizer is model.optimizer
    assert isinstance(model.optimizer, mnn.SGD)
    assert model.predict(np.ones((4, 5), np.float32)).shape == (4, 2)
    assert "Sequential" in repr(model) and "Linear('hidden')" in repr(model)


def test_errors():
    with pytest.raises(ValueError, match=r"\[Conv2d\] activation: unknown neuron type 'relux'"):
        Conv2d(1, 2, 3, activation="relux")
    with pytest.raises(ValueError, match=r"\[Sequential\] loss: unknown name 'mse2'"):
        Sequential([Linear(2, 2)]).compile("adam", "mse2")
    with pytest.raises(ValueError, match=r"\[Sequential\] optimizer: unknown name"):
        Sequential([Linear(2, 2)]).compile("adagrad")
    with pytest.raises(ValueError, match=r"\[Conv2d\] expects images .* after Flatten"):
        Sequential([Flatten(), Conv2d(1, 2, 3)], input_shape=(1, 4, 4)).build()
    with pytest.raises(ValueError, match=r"\[Linear\] in_features=5 but the input \(1, 2, 2\) has 4"):
        Sequential([Linear(5, 2)], input_shape=(1, 2, 2)).build()
    with pytest.raises(ValueError, match=r"\[Conv2d\] layer 'conv1' .*channels"):
        Sequential([Conv2d(3, 2, 3)], input_shape=(1, 4, 4)).build()
    with pytest.raises(ValueError, match=r"call compile"):
        Sequential([Linear(2, 2)]).fit(np.zeros((2, 2), np.float32), np.zeros(2, np.int32), progress=False)
    with pytest.raises(ValueError, match=r"\[Sequential\] samples have shape"):
        Sequential([Linear(2, 2)], input_shape=(2,)).predict(np.zeros((1, 3), np.float32))
    with pytest.raises(TypeError, match=r"\[Sequential\] expected a Layer"):
        Sequential([mnn.NeuronReLUNode])
    with pytest.raises(ValueError, match=r"\[Dropout\] p must be in"):
        Dropout(1.0)
