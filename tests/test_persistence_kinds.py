"""Graph.save / Graph.load / graph.load_state for every node kind: each case builds a small
network with explicit labels, trains it, saves it, and checks that

* Graph.load rebuilds the same structure, and the original and the rebuilt graph continue
  training bit-identically (losses, weights, optimizer state, running statistics, counters:
  both are saved again and the files' arrays compared);
* load_state into a freshly initialised graph of the same structure gives the same state;
* an inference graph over the trained nodes and its reloaded copy give identical outputs.

Plus files that must be rejected (corrupt, wrong structure or shapes, unknown kinds, missing
arrays) without writing anything into the graph."""

from __future__ import annotations

import json

import numpy as np
import pytest

import metalnn as mnn
from metalnn.graph.checkpoint import load_arrays, save_arrays
from metalnn.graph.data_source import ConvolutionWeights, GradientState
from metalnn.graph.data_source_neuron import PReLUSlopes
from metalnn.graph.data_source_normalization import BatchNormalizationWeights, NormalizationWeights
from metalnn.graph.nodes import FilterNode
from metalnn.ops.loss import LossDescriptor, YOLOLossDescriptor

R = np.random.default_rng


def _conv(src, cin, cout, k, seed, opt, label, **kw):
    ds = ConvolutionWeights(cin, cout, k, seed=seed, optimizer=opt, label=label, **kw)
    return mnn.ConvolutionNode(src, ds, "same", label=label)


def _fc(src, cin, cout, k, seed, opt, label="fc"):
    return mnn.FullyConnectedNode(src, ConvolutionWeights(cin, cout, k, seed=seed, optimizer=opt, label=label),
                                  label=label)


def _images(n=3, c=2, h=6, w=5, seed=0):
    return R(seed).standard_normal((n, c, h, w)).astype(np.float32)


def _classes(n=3, k=4):
    return (np.arange(n) % k).astype(np.int32)


# -- the cases: build(seed) -> (loss node, logits image, x, labels) ---------------------------


def case_neuron_abc(seed):
    opt = mnn.Adam(learning_rate=1e-2)
    src = mnn.ImageNode("x")
    c1 = _conv(src, 2, 3, 3, seed, opt, "c1")
    p = mnn.NeuronPowerNode(c1.result, 0.5, 1.0, 2.0, label="power")
    e = mnn.NeuronExponentialNode(p.result, -0.5, 0.25, 2.0, label="exp2")
    lg = mnn.NeuronLogarithmNode(e.result, 2.0, 0.5, 3.0, label="log3")
    f = _fc(lg.result, 3, 4, (6, 5), seed + 1, opt)
    return mnn.SoftmaxCrossEntropyLossNode(f.result, label="loss"), f.result, _images(), _classes()


def case_prelu(seed):
    opt = mnn.Adam(learning_rate=2e-2)
    src = mnn.ImageNode("x")
    c1 = _conv(src, 2, 3, 3, seed, opt, "c1")
    pr = mnn.NeuronPReLUNode(c1.result, PReLUSlopes(3, 0.1 + 0.1 * seed, optimizer=opt, label="slopes"),
                             label="prelu")
    d = mnn.DropoutNode(pr.result, 0.75, seed=7, label="drop")
    f = _fc(d.result, 3, 4, (6, 5), seed + 1, opt)
    return mnn.SoftmaxCrossEntropyLossNode(f.result, label_smoothing=0.1, label="loss"), f.result, _images(), \
        _classes()


def case_loss_node(seed):
    opt = mnn.SGD(learning_rate=0.05, momentum=0.9, nesterov=True)
    src = mnn.ImageNode("x")
    c1 = _conv(src, 2, 3, 3, seed, opt, "c1")
    f = _fc(c1.result, 3, 4, (6, 5), seed + 1, opt)
    loss = mnn.LossNode(f.result, LossDescriptor("huber", reduction="sum", delta=0.5, weight=0.7), label="huber")
    y = R(3).standard_normal((3, 4)).astype(np.float32)
    return loss, f.result, _images(), y


ANCHORS = [(1.0, 1.5), (2.0, 1.0)]


def case_yolo(seed):
    opt = mnn.RMSProp(learning_rate=1e-3)
    src = mnn.ImageNode("x")
    head = _conv(src, 2, len(ANCHORS) * 7, 3, seed, opt, "head", weights_init="glorot")
    d = YOLOLossDescriptor(ANCHORS, 2, wh_loss=LossDescriptor("huber", delta=0.3), scale_object=5.0,
                           rescore=False, reduction="mean")
    loss = mnn.YOLOLossNode(head.result, d, label="yolo")
    r = R(5)
    lab = np.zeros((3, len(ANCHORS), 7, 6, 5), np.float32)
    obj = r.uniform(0, 1, (3, len(ANCHORS), 6, 5)) < 0.3
    lab[:, :, 4] = obj
    lab[:, :, 0:2] = np.where(obj[:, :, None], r.uniform(0.1, 0.9, (3, len(ANCHORS), 2, 6, 5)), 0)
    lab[:, :, 2:4] = np.where(obj[:, :, None], r.uniform(0.5, 2.0, (3, len(ANCHORS), 2, 6, 5)), 0)
    lab[:, :, 5] = obj
    return loss, head.result, _images(), lab.reshape(3, -1, 6, 5)


def case_normalization(seed):
    opt = mnn.Adam(learning_rate=1e-2, amsgrad=True)
    src = mnn.ImageNode("x")
    c1 = _conv(src, 2, 4, 3, seed, opt, "c1")
    rs = R(seed + 10)
    bn = mnn.BatchNormalizationNode(c1.result, BatchNormalizationWeights(
        4, gamma=rs.uniform(0.5, 1.5, 4).astype(np.float32), mean=rs.standard_normal(4).astype(np.float32),
        epsilon=1e-3, optimizer=opt, label="bn"), momentum=0.3, label="bn")
    gn = mnn.GroupNormalizationNode(bn.result, NormalizationWeights(4, optimizer=opt, label="gn"), groups=2,
                                    label="gn")
    inn = mnn.InstanceNormalizationNode(gn.result, NormalizationWeights(4, epsilon=1e-4, label="in"), label="in")
    ln = mnn.LayerNormalizationNode(inn.result, NormalizationWeights(4, optimizer=opt, label="ln"), label="ln")
    cc = mnn.CrossChannelNormalizationNode(ln.result, size=3, alpha=0.5, beta=0.6, delta=1.5, label="lrn")
    f = _fc(cc.result, 4, 4, (6, 5), seed + 1, opt)
    return mnn.SoftmaxCrossEntropyLossNode(f.result, label="loss"), f.result, _images(), _classes()


def case_conv_transpose(seed):
    opt = mnn.Adam(learning_rate=1e-2)
    src = mnn.ImageNode("x")
    c1 = _conv(src, 2, 3, 3, seed, opt, "c1")
    t1 = mnn.ConvolutionTransposeNode(c1.result, mnn.ConvolutionTransposeWeights(
        3, 4, 3, stride=2, neuron="relu", seed=seed, optimizer=opt, label="up"), padding=1, output_padding=1,
        label="up")
    t2 = mnn.ConvolutionTransposeNode(t1.result, mnn.ConvolutionTransposeWeights(
        4, 2, (2, 3), groups=2, bias=False, seed=seed + 2, optimizer=opt, label="same"), padding="same",
        label="same")
    f = _fc(t2.result, 2, 4, (12, 10), seed + 1, opt)
    return mnn.SoftmaxCrossEntropyLossNode(f.result, label="loss"), f.result, _images(), _classes()


def case_pooling(seed):
    opt = mnn.SGD(learning_rate=0.05, momentum=0.5)
    src = mnn.ImageNode("x")
    c1 = _conv(src, 2, 3, 3, seed, opt, "c1")
    c1.data_source.learning_rate_scale = 0.5  # a per-layer factor
    l2 = mnn.PoolingL2NormNode(c1.result, 2, 1, "same", dilation=2, label="l2")
    dm = mnn.DilatedPoolingMaxNode(l2.result, (2, 2), (1, 2), "valid", dilation=(2, 1), label="dmax")
    av = mnn.PoolingAverageNode(dm.result, 2, 1, "same", count_include_pad=False, label="avg")
    f = _fc(av.result, 3, 4, (4, 2), seed + 1, opt)
    return mnn.SoftmaxCrossEntropyLossNode(f.result, label="loss"), f.result, _images(), _classes()


def case_shape_arithmetic(seed):
    opt = mnn.Adam(learning_rate=1e-2)
    src = mnn.ImageNode("x")
    c1 = _conv(src, 2, 3, 3, seed, opt, "c1")
    c2 = _conv(src, 2, 3, 1, seed + 5, opt, "c2")
    near = mnn.UpsamplingNearestNode(c1.result, (1, 2), label="near")
    bil = mnn.UpsamplingBilinearNode(c2.result, (1, 2), label="bil", align_corners=True)
    cat = mnn.ConcatenationNode([near.result, bil.result], label="cat")
    sig = mnn.NeuronSigmoidNode(bil.result, label="sig")
    pos = mnn.NeuronExponentialNode(near.result, 0.2, label="pos")
    sub = mnn.SubtractionNode(near.result, bil.result, label="sub")
    mul = mnn.MultiplicationNode(sub.result, sig.result, label="mul")
    div = mnn.DivisionNode(mul.result, pos.result, label="div")
    cat2 = mnn.ConcatenationNode([cat.result, div.result], label="cat2")  # (N, 9, 6, 10)
    pad = mnn.PadNode(cat2.result, (1, 0, 2, 1), mode="reflect", channels=(1, 0), label="pad")  # (N, 10, 7, 13)
    crop = mnn.CropNode(pad.result, (1, 2, 1), (8, 4, 10), label="crop")
    m = mnn.ImageToMatrixNode(crop.result, label="to_matrix")
    img = mnn.MatrixToImageNode(m.result, (8, 10, 4), label="to_image")
    rs = mnn.ReshapeNode(img.result, (16, -1, 5), label="reshape")
    fl = mnn.FlattenNode(rs.result, label="flat")
    f = _fc(fl.result, 320, 4, 1, seed + 1, opt)
    return mnn.SoftmaxCrossEntropyLossNode(f.result, label="loss"), f.result, _images(), _classes()


def case_rnn(seed):
    from metalnn.graph.nodes_rnn import RNNNode, RNNWeights
    from metalnn.rnn import GRUDescriptor, LSTMDescriptor

    opt = mnn.Adam(learning_rate=1e-2)
    src = mnn.ImageNode("seq")
    w = RNNWeights([LSTMDescriptor(3, 4, use_peephole=True, forget_gate_bias=1.0), LSTMDescriptor(8, 3)],
                   bidirectional=True, seed=seed, optimizer=opt, label="lstm")
    r1 = RNNNode(src, w, label="lstm")
    r2 = RNNNode(r1.result, RNNWeights(GRUDescriptor(6, 5, flip_output_gates=True), seed=seed + 1, optimizer=opt,
                                       label="gru"), output="final", label="gru")
    f = _fc(r2.result, 5, 4, 1, seed + 1, opt)
    x = R(4).standard_normal((5, 3, 3)).astype(np.float32)
    return mnn.SoftmaxCrossEntropyLossNode(f.result, label="loss"), f.result, x, _classes()


def case_rnn_image_source(seed):
    """A 1-D convolution's (N, C, 1, L) output read as a sequence (source_layout="image"), float16 LSTM weights."""
    from metalnn.graph.nodes_rnn import RNNNode, RNNWeights
    from metalnn.rnn import LSTMDescriptor

    opt = mnn.SGD(learning_rate=0.05)
    src = mnn.ImageNode("series")
    c1 = mnn.ConvolutionNode(src, ConvolutionWeights(2, 3, (1, 3), stride=(1, 2), seed=seed, optimizer=opt,
                                                     label="c1"), "valid", label="c1")
    r = RNNNode(c1.result, RNNWeights(LSTMDescriptor(3, 4, use_float32_weights=False), seed=seed, optimizer=opt,
                                      label="lstm"), output="final", label="lstm", source_layout="image")
    f = _fc(r.result, 4, 4, 1, seed + 1, opt)
    x = R(6).standard_normal((3, 2, 1, 9)).astype(np.float32)
    return mnn.SoftmaxCrossEntropyLossNode(f.result, label="loss"), f.result, x, _classes()


CASES = {name[5:]: fn for name, fn in list(globals().items()) if name.startswith("case_")}


# -- helpers -------------------------------------------------------------------------------


def _same_files(a, b):
    arrays_a, meta_a = load_arrays(a)
    arrays_b, meta_b = load_arrays(b)
    assert sorted(arrays_a) == sorted(arrays_b)
    for k in arrays_a:
        assert arrays_a[k].dtype == arrays_b[k].dtype, k
        np.testing.assert_array_equal(arrays_a[k], arrays_b[k], err_msg=k)
    assert meta_a == meta_b


_NOT_OPTIONS = ("id", "sources", "result", "data_source", "labels", "weights", "forward")


def _options(node) -> dict:
    """A node's public options (and its data source's descriptor) for comparison."""
    out = {k: repr(v) if isinstance(v, mnn.Padding) else v for k, v in vars(node).items()
           if not k.startswith("_") and k not in _NOT_OPTIONS}
    if callable(getattr(node, "descriptor", None)):
        out["descriptor()"] = node.descriptor()
    ds = getattr(node, "data_source", None)
    if ds is not None:
        out["source"] = (type(ds).__name__, getattr(ds, "optimizer", None), getattr(ds, "learning_rate_scale", 1.0))
        if hasattr(ds, "layer"):
            out["layer"] = (ds.layer.descriptors, ds.layer.bidirectional)
    return out


def _losses_equal(a, b):
    assert np.array_equal(np.asarray(a.loss), np.asarray(b.loss))


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_training_round_trip(name, tmp_path):
    loss, logits, x, y = CASES[name](0)
    graph = mnn.Graph.training(loss)
    first = graph.run(x, labels=y).loss
    graph.run(x, labels=y)
    graph.save(tmp_path / "a.mnn")

    restored = mnn.Graph.load(tmp_path / "a.mnn")
    assert restored.structure() == graph.structure()
    assert restored.mode == "training"
    for _ in range(2):  # both continue identically (weights, optimizer state, counters)
        _losses_equal(restored.run(x, labels=y), graph.run(x, labels=y))
    for mine, theirs in zip(graph.nodes, restored.nodes):
        assert _options(theirs) == _options(mine), mine.label
    graph.save(tmp_path / "b.mnn")
    restored.save(tmp_path / "c.mnn")
    _same_files(tmp_path / "b.mnn", tmp_path / "c.mnn")

    # load_state into a freshly initialised copy: the same state, the same next step
    loss2, *_ = CASES[name](3)
    other = mnn.Graph.training(loss2)
    assert not np.array_equal(np.asarray(other.run(x, labels=y).loss), np.asarray(first))
    other.load_state(tmp_path / "b.mnn")
    _losses_equal(other.run(x, labels=y), graph.run(x, labels=y))
    graph.save(tmp_path / "d.mnn")
    other.save(tmp_path / "e.mnn")
    _same_files(tmp_path / "d.mnn", tmp_path / "e.mnn")

    # an inference graph over the trained nodes and its reloaded copy
    inference = mnn.Graph(logits)
    out = inference.run(x).result
    inference.save(tmp_path / "i.mnn")
    again = mnn.Graph.load(tmp_path / "i.mnn")
    assert again.mode == "inference" and again.structure() == inference.structure()
    np.testing.assert_array_equal(again.run(x).result, out)


def test_loaded_graph_saved_before_running_keeps_optimizer_state(tmp_path):
    loss, _, x, y = case_prelu(0)
    graph = mnn.Graph.training(loss)
    for _ in range(3):
        graph.run(x, labels=y)
    graph.save(tmp_path / "a.mnn")
    mnn.Graph.load(tmp_path / "a.mnn").save(tmp_path / "b.mnn")  # never compiled
    _same_files(tmp_path / "a.mnn", tmp_path / "b.mnn")


def test_batch_norm_running_statistics_saved_and_restored(tmp_path):
    loss, logits, x, y = case_normalization(0)
    graph = mnn.Graph.training(loss)
    bn = next(node for node in graph.nodes if node.label == "bn")
    start = [a.copy() for a in bn.running_statistics(graph)]
    graph.run(x, labels=y)
    mean, var = bn.running_statistics(graph)
    assert not np.array_equal(mean, start[0]) and not np.array_equal(var, start[1])
    graph.save(tmp_path / "a.mnn")
    arrays, _ = load_arrays(tmp_path / "a.mnn")
    np.testing.assert_array_equal(arrays["bn/mean"], mean)
    np.testing.assert_array_equal(arrays["bn/variance"], var)
    restored = mnn.Graph.load(tmp_path / "a.mnn")
    rbn = next(node for node in restored.nodes if node.label == "bn")
    for got, want in zip(rbn.running_statistics(restored), (mean, var)):
        np.testing.assert_array_equal(got, want)
    assert rbn.momentum == 0.3 and rbn.data_source.epsilon() == 1e-3
    # load_state writes them too (and the inference graph normalises with them)
    loss2, logits2, *_ = case_normalization(4)
    fresh = mnn.Graph(logits2)
    mnn.Graph(logits).save(tmp_path / "i.mnn")
    fresh.load_state(tmp_path / "i.mnn")
    fbn = next(node for node in fresh.nodes if node.label == "bn")
    for got, want in zip(fbn.running_statistics(fresh), (mean, var)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(fresh.run(x).result, mnn.Graph(logits).run(x).result)


def test_options_survive(tmp_path):
    """Every constructor option comes back (spot checks beyond the bit-identical runs)."""
    loss, *_ = case_yolo(0)
    graph = mnn.Graph.training(loss)
    graph.save(tmp_path / "y.mnn")
    yolo = next(node for node in mnn.Graph.load(tmp_path / "y.mnn").nodes if node.label == "yolo")
    assert yolo.descriptor == loss.descriptor
    loss, *_ = case_rnn(0)
    mnn.Graph.training(loss).save(tmp_path / "r.mnn")
    nodes = {node.label: node for node in mnn.Graph.load(tmp_path / "r.mnn").nodes}
    orig = {node.label: node for node in mnn.Graph.training(loss).nodes}
    assert nodes["lstm"].layer.descriptors == orig["lstm"].layer.descriptors
    assert nodes["lstm"].layer.bidirectional and nodes["gru"].output == "final"
    assert nodes["lstm"].data_source.optimizer is nodes["gru"].data_source.optimizer  # one shared optimizer
    # two optimizer objects with equal settings stay two (each has its own step counter)
    opts = [mnn.Adam(learning_rate=1e-2), mnn.Adam(learning_rate=1e-2)]
    src = mnn.ImageNode("x")
    c1 = _conv(src, 2, 3, 3, 0, opts[0], "c1")
    f = _fc(c1.result, 3, 4, (6, 5), 1, opts[1])
    mnn.Graph.training(mnn.SoftmaxCrossEntropyLossNode(f.result, label="loss")).save(tmp_path / "o.mnn")
    nodes = {node.label: node for node in mnn.Graph.load(tmp_path / "o.mnn").nodes}
    assert nodes["c1"].data_source.optimizer is not nodes["fc"].data_source.optimizer
    loss, *_ = case_conv_transpose(0)
    mnn.Graph.training(loss).save(tmp_path / "t.mnn")
    nodes = {node.label: node for node in mnn.Graph.load(tmp_path / "t.mnn").nodes}
    assert nodes["up"].output_padding == (1, 1) and nodes["same"].padding.kind == "same"
    assert nodes["up"].descriptor() == orig_descriptor(loss, "up")


def orig_descriptor(loss, label):
    return next(node for node in mnn.Graph.training(loss).nodes if node.label == label).descriptor()


class PythonSGD(ConvolutionWeights):
    """A data source that trains itself with update() (plain SGD in numpy)."""

    def update(self, gradient_state: GradientState, source_state):
        source_state.weights -= 0.1 * gradient_state.weight_gradients
        if source_state.biases is not None:
            source_state.biases -= 0.1 * gradient_state.bias_gradients
        return source_state


def _python_update_net(seed):
    src = mnn.ImageNode("x")
    c1 = mnn.ConvolutionNode(src, PythonSGD(2, 3, 3, seed=seed, label="c1"), label="c1")
    f = _fc(c1.result, 3, 4, (6, 5), seed + 1, mnn.Adam(learning_rate=1e-2))
    return mnn.SoftmaxCrossEntropyLossNode(f.result, label="loss"), f.result


def test_data_source_with_update(tmp_path):
    x, y = _images(), _classes()
    loss, logits = _python_update_net(0)
    graph = mnn.Graph.training(loss)
    for _ in range(2):
        graph.run(x, labels=y)
    graph.save(tmp_path / "a.mnn")
    loss2, _ = _python_update_net(5)
    other = mnn.Graph.training(loss2)
    other.load_state(tmp_path / "a.mnn")
    for _ in range(2):
        _losses_equal(other.run(x, labels=y), graph.run(x, labels=y))
    graph.save(tmp_path / "b.mnn")
    other.save(tmp_path / "c.mnn")
    _same_files(tmp_path / "b.mnn", tmp_path / "c.mnn")
    # Graph.load cannot rebuild Python code: the layer comes back frozen, with its weights.
    restored = mnn.Graph.load(tmp_path / "b.mnn")
    inference = mnn.Graph(logits)
    inference.save(tmp_path / "i.mnn")
    np.testing.assert_array_equal(mnn.Graph.load(tmp_path / "i.mnn").run(x).result, inference.run(x).result)
    restored.run(x, labels=y)
    np.testing.assert_array_equal(restored.parameters()["c1.weights"], load_arrays(tmp_path / "b.mnn")[0]["c1/weights"])


# -- rejected files ------------------------------------------------------------------------


def _trained(name, tmp_path):
    loss, logits, x, y = CASES[name](0)
    graph = mnn.Graph.training(loss)
    graph.run(x, labels=y)
    graph.save(tmp_path / "ok.mnn")
    return graph, x, y


def _snapshot(graph):
    out = {k: v.copy() for k, v in graph.parameters().items()}
    for (label, which), state in graph._state_params.items():
        for name, p in state.items():
            out[f"{label}/{which}.{name}"] = np.array(p.value)
    for node in graph.nodes:
        if getattr(node, "_batch", False):  # batch norm
            out[f"{node.label}/running"] = np.concatenate(node.running_statistics(graph))
    return out


def _unchanged(graph, before):
    after = _snapshot(graph)
    assert sorted(after) == sorted(before)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)


def _rewrite(src, dst, edit_meta=None, edit_arrays=None):
    arrays, meta = load_arrays(src)
    if edit_meta:
        edit_meta(meta)
    if edit_arrays:
        edit_arrays(arrays)
    save_arrays(dst, arrays, meta)


def test_corrupt_file_rejected(tmp_path):
    graph, x, y = _trained("normalization", tmp_path)
    before = _snapshot(graph)
    data = bytearray((tmp_path / "ok.mnn").read_bytes())
    data[len(data) // 2] ^= 0x40
    (tmp_path / "bad.mnn").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checkpoint"):
        graph.load_state(tmp_path / "bad.mnn")
    with pytest.raises(ValueError, match="checkpoint"):
        mnn.Graph.load(tmp_path / "bad.mnn")
    _unchanged(graph, before)


def test_different_options_rejected_before_writing(tmp_path):
    """Same kinds and labels but another option: a different graph."""
    graph, x, y = _trained("pooling", tmp_path)
    src = mnn.ImageNode("x")
    opt = mnn.SGD(learning_rate=0.05, momentum=0.5)
    c1 = _conv(src, 2, 3, 3, 9, opt, "c1")
    l2 = mnn.PoolingL2NormNode(c1.result, 2, 1, "same", dilation=1, label="l2")  # dilation differs
    dm = mnn.DilatedPoolingMaxNode(l2.result, (2, 2), (1, 2), "valid", dilation=(2, 1), label="dmax")
    av = mnn.PoolingAverageNode(dm.result, 2, 1, "same", count_include_pad=False, label="avg")
    f = _fc(av.result, 3, 4, (4, 2), 10, opt)
    other = mnn.Graph.training(mnn.SoftmaxCrossEntropyLossNode(f.result, label="loss"))
    other.run(x, labels=y)
    before = _snapshot(other)
    with pytest.raises(ValueError, match=r"node 'l2' differs.*dilation"):
        other.load_state(tmp_path / "ok.mnn")
    _unchanged(other, before)


def test_wrong_shapes_rejected_before_writing(tmp_path):
    """The first layers match; a later parameter has another shape: nothing is written."""
    graph, x, y = _trained("normalization", tmp_path)

    def widen(arrays):
        arrays["fc/weights"] = np.zeros((5,) + arrays["fc/weights"].shape[1:], np.float32)

    _rewrite(tmp_path / "ok.mnn", tmp_path / "wide.mnn", edit_arrays=widen)
    loss2, *_ = case_normalization(2)
    other = mnn.Graph.training(loss2)
    other.run(x, labels=y)
    before = _snapshot(other)
    with pytest.raises(ValueError, match=r"fc/weights has shape"):
        other.load_state(tmp_path / "wide.mnn")
    _unchanged(other, before)


@pytest.mark.parametrize("key", ["bn/variance", "bn/weights.m", "slopes"])
def test_missing_array_rejected(tmp_path, key):
    name = "prelu" if key == "slopes" else "normalization"
    graph, x, y = _trained(name, tmp_path)
    key = "prelu/weights" if key == "slopes" else key
    _rewrite(tmp_path / "ok.mnn", tmp_path / "m.mnn", edit_arrays=lambda a: a.pop(key))
    before = _snapshot(graph)
    with pytest.raises(ValueError, match="missing array"):
        graph.load_state(tmp_path / "m.mnn")
    _unchanged(graph, before)
    if not key.endswith(".m"):
        with pytest.raises(ValueError, match="missing array"):
            mnn.Graph.load(tmp_path / "m.mnn")


def test_unknown_kind_and_malformed_description_rejected(tmp_path):
    graph, x, y = _trained("shape_arithmetic", tmp_path)

    def rename(meta):
        meta["nodes"][3]["kind"] = "TeleportNode"

    _rewrite(tmp_path / "ok.mnn", tmp_path / "u.mnn", edit_meta=rename)
    with pytest.raises(ValueError, match="unknown node kind 'TeleportNode'"):
        mnn.Graph.load(tmp_path / "u.mnn")
    before = _snapshot(graph)
    with pytest.raises(ValueError, match="different graph"):
        graph.load_state(tmp_path / "u.mnn")
    _unchanged(graph, before)

    def drop_option(meta):
        for c in meta["nodes"]:
            if c["kind"] == "PadNode":
                del c["mode"]

    _rewrite(tmp_path / "ok.mnn", tmp_path / "d.mnn", edit_meta=drop_option)
    with pytest.raises(ValueError, match="'pad' .*malformed"):
        mnn.Graph.load(tmp_path / "d.mnn")
    with pytest.raises(ValueError, match="node 'pad' differs.*mode"):
        graph.load_state(tmp_path / "d.mnn")

    _rewrite(tmp_path / "ok.mnn", tmp_path / "n.mnn", edit_meta=lambda m: m.update(nodes={"a": 1}))
    with pytest.raises(ValueError, match="malformed node list"):
        mnn.Graph.load(tmp_path / "n.mnn")
    _rewrite(tmp_path / "ok.mnn", tmp_path / "v.mnn", edit_meta=lambda m: m.update(version=99))
    with pytest.raises(ValueError, match="version"):
        graph.load_state(tmp_path / "v.mnn")
    _unchanged(graph, before)


def test_unknown_node_class_cannot_be_saved(tmp_path):
    class Twice(FilterNode):
        def emit_forward(self, c):  # pragma: no cover - never compiled here
            raise NotImplementedError

    node = Twice([mnn.ImageNode("x")], label="twice")
    graph = mnn.Graph(node.result)
    with pytest.raises(ValueError, match=r"cannot describe node 'twice' \(Twice\)"):
        graph.save(tmp_path / "t.mnn")
    assert not (tmp_path / "t.mnn").exists()


def test_file_metadata_is_plain_json(tmp_path):
    graph, *_ = _trained("yolo", tmp_path)
    _, meta = load_arrays(tmp_path / "ok.mnn")
    json.dumps(meta, allow_nan=False)  # no numpy scalars or tuples sneak in
    kinds = {c["kind"] for c in meta["nodes"]}
    assert {"YOLOLossNode", "ConvolutionNode", "GradientNode"} <= kinds


def test_unnamed_inputs_and_renamed_results(tmp_path):
    """Automatic input names differ between builds (load_state still matches the wiring); a
    renamed result image keeps its consumers connected after Graph.load."""
    def net(seed):
        opt = mnn.Adam(learning_rate=1e-2)
        src = mnn.ImageNode()
        c1 = _conv(src, 2, 3, 3, seed, opt, "c1")
        c1.result.name = "features"
        f = _fc(c1.result, 3, 4, (6, 5), seed + 1, opt)
        return mnn.SoftmaxCrossEntropyLossNode(f.result, label="loss")

    x, y = _images(), _classes()
    graph = mnn.Graph.training(net(0))
    graph.run(x, labels=y)
    graph.save(tmp_path / "a.mnn")
    restored = mnn.Graph.load(tmp_path / "a.mnn")
    assert restored.structure() == graph.structure() and len(restored.sources) == 1
    other = mnn.Graph.training(net(3))
    other.load_state(tmp_path / "a.mnn")
    for g in (restored, other):
        _losses_equal(g.run(x, labels=y), graph.run(x, labels=y))
        graph.load_state(tmp_path / "a.mnn")


def test_every_node_kind_is_registered():
    """A node kind added to metalnn.graph without a persistence entry fails here, not in a user's save()."""
    import importlib
    import pkgutil

    import metalnn.graph as package
    from metalnn.graph import persistence

    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("nodes"):
            importlib.import_module(f"metalnn.graph.{info.name}")

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    public = {c.__name__ for c in subclasses(FilterNode)
              if c.__module__.startswith("metalnn.graph") and not c.__name__.startswith("_")}
    assert public - set(persistence._registry()) == {"NeuronNode"}  # the abstract neuron base
