"""Graph API: derivation, gradients, data sources, execution, errors, memory plan."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn.graph.data_source import ConvolutionWeights

from graph_nets import RecordingSource, digit_network, hand_built_training_graph


def _batch(n=8, seed=0, size=28, channels=1):
    r = np.random.default_rng(seed)
    return r.random((n, channels, size, size), dtype=np.float32), r.integers(0, 10, n).astype(np.int32)


def _topology(graph):
    """Structure with labels replaced by positions, so two builds compare equal."""
    index = {}
    for _, label, _ in graph.structure():
        index[label + ".result"] = len(index)
    out = []
    for kind, _, sources in graph.structure():
        out.append((kind, tuple(index.get(s, s) for s in sources)))
    return out


def test_automatic_and_hand_built_training_graphs_are_equal():
    x, y = _batch(6)
    _, loss_a, _ = digit_network(mnn.Adam(learning_rate=1e-3), width=0.25)
    auto = mnn.Graph.training(loss_a)
    _, loss_b, nodes_b = digit_network(mnn.Adam(learning_rate=1e-3), width=0.25)
    hand = hand_built_training_graph(loss_b, nodes_b)
    assert _topology(auto) == _topology(hand)
    assert len(auto.nodes) == 21
    for _ in range(3):
        la, lb = auto.run(x, labels=y).loss, hand.run(x, labels=y).loss
        assert la == lb
    pa, pb = auto.parameters(), hand.parameters()
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k])


def _tiny_graph(log, neuron_in_descriptor=False):
    """conv(2->3, 3x3 same) -> tanh -> avg-pool 2 -> fc -> softmax CE, with recording sources."""
    src = mnn.ImageNode("x")
    conv_src = RecordingSource("conv", 2, 3, 3, log, seed=1, neuron="tanh" if neuron_in_descriptor else None)
    c = mnn.ConvolutionNode(src, conv_src, label="conv")
    t = c.result if neuron_in_descriptor else mnn.NeuronTanHNode(c.result, label="tanh").result
    p = mnn.PoolingAverageNode(t, 2, label="pool")
    fc_src = RecordingSource("fc", 3, 4, (3, 3), log, seed=2)
    f = mnn.FullyConnectedNode(p.result, fc_src, label="fc")
    loss = mnn.SoftmaxCrossEntropyLossNode(f.result, reduction="sum", label="loss")
    return src, loss, conv_src, fc_src


def _check_parameter_gradient(graph, x, y, p, g, indices, eps=1e-2):
    """Central differences of the graph's loss in parameter array ``p`` (perturbed in place)."""
    for idx in indices:
        orig = p[idx]
        p[idx] = orig + eps
        up = graph.run(x, labels=y).loss
        p[idx] = orig - eps
        down = graph.run(x, labels=y).loss
        p[idx] = orig
        num = (up - down) / (2 * eps)
        assert abs(num - g[idx]) <= 2e-3 + 2e-2 * abs(num), (idx, num, g[idx])


@pytest.mark.parametrize("neuron_in_descriptor", [False, True])
def test_whole_graph_gradients_match_finite_differences(neuron_in_descriptor):
    log = []
    _, loss, conv_src, fc_src = _tiny_graph(log, neuron_in_descriptor)
    graph = mnn.Graph.training(loss)
    r = np.random.default_rng(3)
    x = r.standard_normal((2, 2, 7, 7)).astype(np.float32)
    y = np.array([1, 3], np.int32)
    graph.run(x, labels=y)
    params = graph.parameters()
    grads = {"conv.weights": conv_src.gradients[-1][0], "conv.biases": conv_src.gradients[-1][1],
             "fc.weights": fc_src.gradients[-1][0], "fc.biases": fc_src.gradients[-1][1]}
    for name, g in grads.items():
        p = params[name]
        picks = r.choice(p.size, size=min(p.size, 12), replace=False)
        _check_parameter_gradient(graph, x, y, p, g, [np.unravel_index(i, p.shape) for i in picks])


def test_input_gradient_matches_finite_differences():
    log = []
    src, loss, *_ = _tiny_graph(log)
    graph = mnn.Graph.training(loss)
    exit_image = graph.results[0]
    grad_graph = mnn.Graph(exit_image, result_needed=True)
    r = np.random.default_rng(4)
    x = r.standard_normal((2, 2, 7, 7)).astype(np.float32)
    y = np.array([0, 2], np.int32)
    dx = grad_graph.run(x, labels=y).result
    assert dx.shape == x.shape
    fwd = mnn.Graph(loss.result, mode="inference")
    eps = 1e-2
    for i in r.choice(x.size, 10, replace=False):
        idx = np.unravel_index(i, x.shape)
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        num = (fwd.run(xp, labels=y).loss - fwd.run(xm, labels=y).loss) / (2 * eps)
        assert abs(num - dx[idx]) <= 2e-3 + 2e-2 * abs(num)


def test_data_source_calls_in_documented_order():
    log = []
    _, loss, *_ = _tiny_graph(log)
    graph = mnn.Graph.training(loss)
    x = np.random.default_rng(0).standard_normal((2, 2, 7, 7)).astype(np.float32)
    graph.run(x, labels=np.array([0, 1], np.int32))
    graph.run(x, labels=np.array([0, 1], np.int32))
    for name in ("conv", "fc"):
        calls = [c for n, c in log if n == name]
        assert calls == ["descriptor", "load", "weights", "biases", "purge", "update", "update"], (name, calls)
    # updates run after the gradient pass in reverse layer order
    updates = [n for n, c in log if c == "update"]
    assert updates == ["fc", "conv", "fc", "conv"]


def test_python_update_is_honoured_and_matches_builtin_sgd():
    x = np.random.default_rng(1).standard_normal((3, 2, 7, 7)).astype(np.float32)
    y = np.array([0, 1, 3], np.int32)
    log = []
    src = mnn.ImageNode("x")
    user = RecordingSource("conv", 2, 3, 3, log, seed=1, apply_sgd=0.1)
    c = mnn.ConvolutionNode(src, user)
    f = mnn.FullyConnectedNode(c.result, ConvolutionWeights(3, 4, (7, 7), seed=5))
    g_user = mnn.Graph.training(mnn.SoftmaxCrossEntropyLossNode(f.result))
    src2 = mnn.ImageNode("x")
    builtin = ConvolutionWeights.from_arrays(user.w.copy(), user.b.copy(), optimizer=mnn.SGD(learning_rate=0.1))
    c2 = mnn.ConvolutionNode(src2, builtin)
    f2 = mnn.FullyConnectedNode(c2.result, ConvolutionWeights(3, 4, (7, 7), seed=5))
    g_builtin = mnn.Graph.training(mnn.SoftmaxCrossEntropyLossNode(f2.result))
    for _ in range(3):
        la, lb = g_user.run(x, labels=y).loss, g_builtin.run(x, labels=y).loss
        assert la == pytest.approx(lb, rel=1e-6)
    w_user = g_user.parameters()["conv.weights"]
    np.testing.assert_allclose(w_user, builtin.weight_array, rtol=1e-6, atol=1e-7)
    assert not np.array_equal(w_user, user.w)  # trained: the graph's copy moved


def test_many_batches_in_flight_equal_one_at_a_time():
    batches = [_batch(8, seed=s) for s in range(6)]
    _, loss_a, _ = digit_network(mnn.Adam(learning_rate=1e-3), width=0.25)
    one = mnn.Graph.training(loss_a, max_in_flight=1)
    seq = [one.run(x, labels=y).loss for x, y in batches]
    _, loss_b, _ = digit_network(mnn.Adam(learning_rate=1e-3), width=0.25)
    many = mnn.Graph.training(loss_b, max_in_flight=3)
    done = []
    handles = [many.encode_batch(x, labels=y, on_complete=done.append) for x, y in batches]
    par = [h.wait().loss for h in handles]
    many.synchronize()
    assert par == seq
    assert sorted(done) == [h.index for h in handles]
    for k, v in one.parameters().items():
        np.testing.assert_array_equal(v, many.parameters()[k])


def test_error_in_a_batch_surfaces_on_its_handle_and_the_next_batch_runs():
    _, loss, _ = digit_network(mnn.Adam(learning_rate=1e-3), width=0.25)
    graph = mnn.Graph.training(loss)
    x, y = _batch(4)
    graph.run(x, labels=y)
    before = {k: v.copy() for k, v in graph.parameters().items()}
    bad = graph.encode_batch(x, labels=np.array([0, 1, 2, 11], np.int32))
    with pytest.raises(ValueError, match="labels"):
        bad.wait()
    assert "labels" in bad.error
    for k, v in graph.parameters().items():  # the failed batch changed nothing
        np.testing.assert_array_equal(v, before[k])
    ok = graph.run(x, labels=y)
    assert np.isfinite(ok.loss) and ok.error is None


def test_shape_error_at_build_names_the_node():
    src = mnn.ImageNode("x")
    c = mnn.ConvolutionNode(src, ConvolutionWeights(3, 4, 3), label="first_conv")
    g = mnn.Graph(c.result)
    with pytest.raises(ValueError, match="first_conv.*3 channels|first_conv.*channels"):
        g.run(np.zeros((1, 2, 5, 5), np.float32))
    f = mnn.FullyConnectedNode(c.result, ConvolutionWeights(4, 2, (3, 3)), label="head")
    g2 = mnn.Graph(f.result)
    with pytest.raises(ValueError, match="head.*features"):
        g2.run(np.zeros((1, 3, 5, 5), np.float32))


def test_node_arguments_are_checked():
    with pytest.raises(TypeError, match="ConvolutionNode.*ImageNode"):
        mnn.ConvolutionNode(np.zeros(3), ConvolutionWeights(1, 1, 1))
    with pytest.raises(ValueError, match="PoolingMaxNode.*kernel_size"):
        mnn.PoolingMaxNode(mnn.ImageNode(), 0)
    with pytest.raises(ValueError, match="DropoutNode.*keep_probability"):
        mnn.DropoutNode(mnn.ImageNode(), 1.5)
    with pytest.raises(ValueError, match="padding"):
        mnn.ConvolutionNode(mnn.ImageNode(), ConvolutionWeights(1, 1, 1), padding="full")
    with pytest.raises(ValueError, match="labels are required"):
        _, loss, _ = digit_network(width=0.25)
        mnn.Graph.training(loss).encode_batch(np.zeros((1, 1, 28, 28), np.float32))


@pytest.mark.parametrize("padding,expected", [
    ("same", (0, 1, 1, 1)),          # kernel (2, 3): odd pixel at the bottom
    ("valid", (0, 0, 0, 0)),
    (1, (1, 1, 1, 1)),
    ((2, 0, 1, 3), (2, 0, 1, 3)),
    (mnn.Padding.custom(lambda hw, k, s, d: (k[0] - 1, 0, k[1] - 1, 0)), (1, 0, 2, 0)),  # causal
])
def test_padding_policies_resolve_and_match_the_kernel(padding, expected):
    r = np.random.default_rng(0)
    w = r.standard_normal((3, 2, 2, 3)).astype(np.float32)
    b = r.standard_normal(3).astype(np.float32)
    src = mnn.ImageNode("x")
    c = mnn.ConvolutionNode(src, ConvolutionWeights.from_arrays(w, b), padding=padding)
    x = r.standard_normal((2, 2, 6, 5)).astype(np.float32)
    out = mnn.Graph(c.result).run(x).result
    assert c.resolved_padding == expected
    ref = mnn.ops.conv2d_forward(x, w, b, padding=expected)
    np.testing.assert_array_equal(out, ref)


def test_pooling_same_padding_gives_ceil_output():
    src = mnn.ImageNode("x")
    p = mnn.PoolingMaxNode(src, 2, 2, padding="same")
    out = mnn.Graph(p.result).run(np.random.default_rng(0).random((1, 1, 7, 7), dtype=np.float32)).result
    assert out.shape == (1, 1, 4, 4)


def test_memory_plan_reuses_buffers():
    _, loss, _ = digit_network(mnn.Adam(), width=0.5)
    graph = mnn.Graph.training(loss)
    x, y = _batch(16)
    plan = graph.memory_plan(x, labels=y)
    assert 0 < plan["peak_bytes"] < plan["total_bytes"]
    graph.run(x, labels=y)
    assert graph.memory_plan()["peak_bytes"] == plan["peak_bytes"]


def test_inference_mode_turns_dropout_off():
    _, loss, n = digit_network(width=0.25, keep_probability=0.5)
    infer = mnn.Graph(n["f2"].result)
    assert infer.mode == "inference"
    x, _ = _batch(4)
    a, b = infer.run(x).result, infer.run(x).result
    np.testing.assert_array_equal(a, b)  # no random mask
    infer.mode = "training"
    c, d = infer.run(x).result, infer.run(x).result
    assert not np.array_equal(c, d)  # a fresh mask per batch


def test_exported_intermediate_images():
    src = mnn.ImageNode("x")
    c = mnn.ConvolutionNode(src, ConvolutionWeights(1, 2, 3, seed=3))
    r = mnn.NeuronReLUNode(c.result)
    c.result.export_from_graph = True
    x = np.random.default_rng(0).standard_normal((2, 1, 5, 5)).astype(np.float32)
    h = mnn.Graph(r.result).run(x)
    np.testing.assert_array_equal(h.result, np.maximum(h.output(c.result), 0))


def test_gradients_summed_where_an_image_feeds_two_consumers():
    # x -> conv -> (tanh, sigmoid) -> add -> fc -> loss: conv's gradient sums both branches.
    log = []
    src = mnn.ImageNode("x")
    cs = RecordingSource("conv", 1, 2, 3, log, seed=1)
    c = mnn.ConvolutionNode(src, cs)
    a = mnn.NeuronTanHNode(c.result)
    s = mnn.NeuronSigmoidNode(c.result)
    add = mnn.AdditionNode(a.result, s.result)
    fs = RecordingSource("fc", 2, 3, (5, 5), log, seed=2)
    f = mnn.FullyConnectedNode(add.result, fs)
    loss = mnn.SoftmaxCrossEntropyLossNode(f.result, reduction="sum")
    graph = mnn.Graph.training(loss)
    assert any(k == "AdditionNode" and "gradient_sum" in lbl for k, lbl, _ in graph.structure())
    x = np.random.default_rng(5).standard_normal((2, 1, 5, 5)).astype(np.float32)
    y = np.array([0, 2], np.int32)
    graph.run(x, labels=y)
    _check_parameter_gradient(graph, x, y, graph.parameters()["conv.weights"], cs.gradients[-1][0],
                              [(0, 0, 0, 0), (1, 0, 2, 1), (0, 0, 1, 2)])


def test_save_and_load_round_trip(tmp_path):
    x, y = _batch(8, seed=2)
    _, loss, _ = digit_network(mnn.Adam(learning_rate=1e-3), width=0.25)
    graph = mnn.Graph.training(loss)
    for _ in range(2):
        graph.run(x, labels=y)
    path = tmp_path / "digits.mnn"
    graph.save(path)
    # continuing the original and the reloaded graph gives the same numbers
    restored = mnn.Graph.load(path)
    assert _topology(restored) == _topology(graph)
    assert restored.run(x, labels=y).loss == graph.run(x, labels=y).loss
    for k, v in graph.parameters().items():
        np.testing.assert_array_equal(v, restored.parameters()[k])
    # load_state into a fresh graph of the same structure
    _, loss2, _ = digit_network(mnn.Adam(learning_rate=1e-3), width=0.25, seed=9)
    other = mnn.Graph.training(loss2)
    other.load_state(path)
    other.run(x, labels=y)
    restored2 = mnn.Graph.load(path)
    restored2.run(x, labels=y)
    for k, v in restored2.parameters().items():
        np.testing.assert_array_equal(v, other.parameters()[k])


def test_load_rejects_a_different_graph_and_leaves_weights(tmp_path):
    _, loss, _ = digit_network(mnn.Adam(), width=0.25)
    graph = mnn.Graph.training(loss)
    x, y = _batch(4)
    graph.run(x, labels=y)
    path = tmp_path / "a.mnn"
    graph.save(path)
    log = []
    _, small, *_ = _tiny_graph(log)
    tiny = mnn.Graph.training(small)
    tiny.run(np.zeros((1, 2, 7, 7), np.float32), labels=np.array([1], np.int32))
    before = {k: v.copy() for k, v in tiny.parameters().items()}
    with pytest.raises(ValueError, match="different graph"):
        tiny.load_state(path)
    for k, v in tiny.parameters().items():
        np.testing.assert_array_equal(v, before[k])
    (tmp_path / "bad.mnn").write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="checkpoint"):
        mnn.Graph.load(tmp_path / "bad.mnn")


@pytest.mark.parametrize("neuron_in_descriptor", [False, True])
def test_fused_and_unfused_graphs_agree(neuron_in_descriptor):
    x, y = _batch(6, seed=4)
    graphs = []
    for fuse in (True, False):
        if neuron_in_descriptor:
            log = []
            _, loss, conv_src, fc_src = _tiny_graph(log, neuron_in_descriptor=True)
            conv_src.apply_sgd = fc_src.apply_sgd = 0.05
            g = mnn.Graph.training(loss, fuse=fuse)
            xx = np.random.default_rng(1).standard_normal((2, 2, 7, 7)).astype(np.float32)
            yy = np.array([1, 3], np.int32)
        else:
            _, loss, _ = digit_network(mnn.Adam(learning_rate=1e-3), width=0.25)
            g = mnn.Graph.training(loss, fuse=fuse)
            xx, yy = x, y
        losses = [g.run(xx, labels=yy).loss for _ in range(3)]
        graphs.append((g, losses, xx))
    (fused, lf, _), (plain, lp, _) = graphs
    np.testing.assert_allclose(lf, lp, rtol=1e-5)
    for k, v in fused.parameters().items():
        np.testing.assert_allclose(v, plain.parameters()[k], rtol=1e-4, atol=1e-6)
    steps_fused = [s.method for s in list(fused._compiled.values())[0][0].steps]
    steps_plain = [s.method for s in list(plain._compiled.values())[0][0].steps]
    assert steps_fused.count("neuron_forward") < steps_plain.count("neuron_forward")


def test_fused_inference_keeps_no_pre_activation():
    _, _, n = digit_network(width=0.25)
    g = mnn.Graph(n["f2"].result)
    x, _ = _batch(2)
    out = g.run(x).result
    compiled = list(g._compiled.values())[0][0]
    assert [s.method for s in compiled.steps].count("neuron_forward") == 0
    plain = mnn.Graph(n["f2"].result, fuse=False).run(x).result
    np.testing.assert_allclose(out, plain, rtol=1e-5, atol=1e-6)
