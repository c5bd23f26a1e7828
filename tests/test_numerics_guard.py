"""Graph check mode (issue 9, numerics guard): the first node producing NaN or Inf is named."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn.graph.data_source import ConvolutionWeights


def _net(fc_weights=None, optimizer=None):
    """conv 3x3 (2->4) -> relu -> fully connected (4*5*5 -> 3)."""
    src = mnn.ImageNode("image")
    conv_weights = ConvolutionWeights(2, 4, 3, seed=1, label="conv", optimizer=optimizer)
    conv = mnn.ConvolutionNode(src, conv_weights, padding="same")
    relu = mnn.NeuronReLUNode(conv.result, label="relu")
    fc_init = "glorot" if fc_weights is None else fc_weights
    fc = mnn.FullyConnectedNode(relu.result, ConvolutionWeights(4, 3, (5, 5), weights_init=fc_init, label="fc",
                                                          optimizer=optimizer))
    return fc.result


def _images(seed=0):
    return np.random.default_rng(seed).standard_normal((2, 2, 5, 5)).astype(np.float32)


def test_nan_input_names_the_first_node():
    graph = mnn.Graph(_net(), check_numerics=True)
    x = _images()
    x[1, 0, 2, 3] = np.nan
    with pytest.raises(RuntimeError, match=r"check_numerics: node 'conv' produced NaN"):
        graph.run(x).wait()


def test_inf_weight_names_the_node_that_produces_it_not_an_earlier_one():
    w = np.random.default_rng(2).standard_normal((3, 4, 5, 5)).astype(np.float32) * 0.1
    w[1, 2, 0, 0] = np.inf
    graph = mnn.Graph(_net(fc_weights=w), check_numerics=True)
    x = np.abs(_images()) + 1.0  # positive so the ReLU passes values into the Inf weight
    with pytest.raises(RuntimeError, match=r"node 'fc' produced [+-]?(Inf|NaN)"):
        graph.run(x).wait()


def test_off_by_default_and_the_graph_keeps_working_after_an_error(monkeypatch):
    monkeypatch.delenv("METALNN_CHECK_NUMERICS", raising=False)
    graph = mnn.Graph(_net())
    assert graph.check_numerics is False
    bad = _images()
    bad[0, 1, 1, 1] = np.inf
    out = graph.run(bad).wait().result          # no check: the non-finite values flow through
    assert not np.all(np.isfinite(out))
    graph.check_numerics = True                 # turned on for an already compiled program
    with pytest.raises(RuntimeError, match="check_numerics"):
        graph.run(bad).wait()
    good = graph.run(_images(3)).wait().result  # same graph, finite input: fine
    assert np.all(np.isfinite(good))
    graph.check_numerics = False
    assert not np.all(np.isfinite(graph.run(bad).wait().result))


def test_environment_variable_turns_it_on(monkeypatch):
    monkeypatch.setenv("METALNN_CHECK_NUMERICS", "1")
    graph = mnn.Graph(_net())
    assert graph.check_numerics
    x = _images()
    x[0, 0, 0, 0] = -np.inf
    with pytest.raises(RuntimeError, match="node 'conv'"):
        graph.run(x).wait()


def test_training_graph_stops_before_the_update():
    """In a training graph the failing batch never reaches the optimizer: weights stay as they were."""
    loss = mnn.SoftmaxCrossEntropyLossNode(_net(optimizer=mnn.SGD(learning_rate=0.1)), label="loss")
    graph = mnn.Graph.training(loss, check_numerics=True)
    labels = np.array([0, 2], dtype=np.int32)
    graph.run(_images(), labels).wait()          # finite: trains
    first = {k: v.copy() for k, v in graph.parameters().items()}
    graph.run(_images(), labels).wait()
    trained = {k: v.copy() for k, v in graph.parameters().items()}
    assert first and any(not np.array_equal(first[k], trained[k]) for k in first)
    x = _images()
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(RuntimeError, match="node 'conv' produced NaN"):
        graph.run(x, labels).wait()
    after = graph.parameters()
    assert all(np.array_equal(trained[k], after[k]) for k in trained)
