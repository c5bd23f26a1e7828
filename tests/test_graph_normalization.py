"""Normalization nodes in graphs: a conv -> batch norm -> relu -> fc -> loss network trains
(loss falls, gamma / beta move, running statistics move by momentum) and the inference graph
built from the same data source normalises with the running statistics (checked against
numpy); Graph.training derives the gradient nodes; the gradients a graph hands to a data
source's update() match the kernel-level ops; instance / group / layer / cross-channel nodes
train and infer as the ops do."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn import ops
from metalnn.graph.data_source_normalization import BatchNormalizationDataSource, NormalizationDataSource

from helpers import assert_close, rng


def _data(n=32, seed=0):
    """Images whose class is the quadrant holding a bright blob, plus an offset the batch
    norm must remove."""
    r = rng(seed)
    x = (r.standard_normal((n, 2, 8, 8)) * 0.3 + 3.0).astype(np.float32)
    labels = r.integers(0, 4, n)
    for i, k in enumerate(labels):
        h, w = divmod(int(k), 2)
        x[i, :, h * 4:h * 4 + 4, w * 4:w * 4 + 4] += 2.0
    return x, labels.astype(np.int32)


def _network(opt, momentum=0.1):
    src = mnn.ImageNode("images")
    conv = mnn.ConvolutionNode(src, mnn.ConvolutionWeights(2, 6, 3, seed=1, optimizer=opt, label="conv"))
    bn_ds = mnn.BatchNormalizationWeights(6, optimizer=opt, label="bn")
    bn = mnn.BatchNormalizationNode(conv.result, bn_ds, momentum=momentum)
    relu = mnn.NeuronReLUNode(bn.result)
    fc = mnn.FullyConnectedNode(relu.result, mnn.ConvolutionWeights(6, 4, (8, 8), seed=2, optimizer=opt,
                                                                    label="fc"))
    loss = mnn.SoftmaxCrossEntropyLossNode(fc.result)
    return src, conv, bn, bn_ds, relu, fc, loss


def test_training_graph_derives_batch_norm_gradient():
    *_, loss = _network(mnn.SGD(0.1))
    g = mnn.Graph.training(loss)
    kinds = [k for k, _, _ in g.structure()]
    assert "BatchNormalizationNodeGradient" in kinds
    assert kinds.index("BatchNormalizationNode") < kinds.index("BatchNormalizationNodeGradient")


def test_conv_batchnorm_relu_fc_trains_and_inference_uses_running_statistics():
    opt = mnn.SGD(0.1, momentum=0.9)
    src, conv, bn, bn_ds, relu, fc, loss = _network(opt, momentum=0.2)
    x, labels = _data()
    train = mnn.Graph.training(loss)
    gamma0, beta0 = bn_ds.gamma_array.copy(), bn_ds.beta_array.copy()
    losses = [train.run(x, labels).loss for _ in range(40)]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses
    # gamma / beta were trained in place; the running statistics moved off (0, 1).
    assert not np.allclose(bn_ds.gamma_array, gamma0) and not np.allclose(bn_ds.beta_array, beta0)
    assert np.abs(bn_ds.mean_array).max() > 0.1
    assert not np.allclose(bn_ds.variance_array, 1.0)

    # One more batch: the running statistics move by momentum toward this batch's statistics.
    rm0, rv0 = bn_ds.mean_array.copy(), bn_ds.variance_array.copy()
    w, b = conv.data_source.weight_array.copy(), conv.data_source.bias_array.copy()
    z = ops.conv2d_forward(x, w, b, padding=1)  # the conv's input to the batch norm
    train.run(x, labels)
    m = z.shape[0] * z.shape[2] * z.shape[3]
    mean, var = z.astype(np.float64).mean(axis=(0, 2, 3)), z.astype(np.float64).var(axis=(0, 2, 3))
    assert_close(bn_ds.mean_array, 0.8 * rm0 + 0.2 * mean, atol=1e-5, what="running mean")
    assert_close(bn_ds.variance_array, 0.8 * rv0 + 0.2 * var * m / (m - 1), rtol=1e-4, what="running variance")

    # Inference graph of the same nodes: running statistics, checked against numpy.
    infer = mnn.Graph(fc.result)
    assert not infer.is_training
    xt, _ = _data(9, seed=5)
    out = infer.run(xt).result
    cw = conv.data_source
    zt = ops.conv2d_forward(xt, cw.weight_array, cw.bias_array, padding=1).astype(np.float64)
    sh = (1, -1, 1, 1)
    yt = (bn_ds.gamma_array.reshape(sh) * (zt - bn_ds.mean_array.reshape(sh))
          / np.sqrt(bn_ds.variance_array.reshape(sh) + 1e-5) + bn_ds.beta_array.reshape(sh))
    logits = np.maximum(yt, 0).reshape(9, -1) @ fc.data_source.weight_array.reshape(4, -1).T.astype(np.float64)
    logits += fc.data_source.bias_array
    assert_close(out, logits, atol=1e-4, what="inference logits")
    # Inference leaves the statistics alone; the batch statistics would give other logits.
    rm1 = bn_ds.mean_array.copy()
    infer.run(xt)
    np.testing.assert_array_equal(bn_ds.mean_array, rm1)
    yb, _ = ops.batch_norm_forward(zt.astype(np.float32), bn_ds.gamma_array, bn_ds.beta_array)
    assert np.abs(np.maximum(yb, 0).reshape(9, -1) @ fc.data_source.weight_array.reshape(4, -1).T
                  + fc.data_source.bias_array - logits).max() > 1e-2


class RecordingBatchNorm(BatchNormalizationDataSource):
    """A user source (read-only arrays, so the graph copies them) with its own update()."""

    def __init__(self, channels, seed=0):
        r = rng(seed)
        self.g = (r.standard_normal(channels) * 0.2 + 1).astype(np.float32)
        self.b = (r.standard_normal(channels) * 0.2).astype(np.float32)
        self.g.flags.writeable = self.b.flags.writeable = False
        self.calls, self.grads = [], []

    def number_of_feature_channels(self):
        return len(self.g)

    def gamma(self):
        self.calls.append("gamma")
        return self.g

    def beta(self):
        return self.b

    def mean(self):
        self.calls.append("mean")
        return None

    def variance(self):
        return None

    def epsilon(self):
        return 1e-3

    def label(self):
        return "recording"

    def load(self):
        self.calls.append("load")
        return True

    def purge(self):
        self.calls.append("purge")

    def update(self, gradient_state, source_state):
        self.grads.append((gradient_state.weight_gradients.copy(), gradient_state.bias_gradients.copy()))
        source_state.weights -= 0.5 * gradient_state.weight_gradients
        source_state.biases -= 0.5 * gradient_state.bias_gradients


def _affine_chain(x, fwd, bwd, w, b, labels):
    """Kernel-level ops of node -> fc -> loss: returns (dgamma, dbeta, dx, loss)."""
    y, state = fwd(x)
    logits = ops.fully_connected_forward(y, w, b)
    loss, ls = ops.softmax_cross_entropy_forward(logits, labels)
    dlogits = ops.softmax_cross_entropy_backward(ls)
    dy = ops.fully_connected_backward_input(dlogits, w, y.shape)
    dx, dgamma, dbeta = bwd(dy, state)
    return dgamma, dbeta, dx, float(loss)


def test_batch_norm_gradients_reach_update_as_the_ops_compute_them():
    ds = RecordingBatchNorm(3)
    src = mnn.ImageNode()
    bn = mnn.BatchNormalizationNode(src, ds, momentum=0.5)
    fcw = mnn.ConvolutionWeights(3, 4, (5, 4), seed=3, label="fc")  # frozen: no optimizer
    fc = mnn.FullyConnectedNode(bn.result, fcw)
    loss = mnn.SoftmaxCrossEntropyLossNode(fc.result)
    g = mnn.Graph.training(loss)
    r = rng(6)
    x = (r.standard_normal((7, 3, 5, 4)) * 2 + 1).astype(np.float32)
    labels = r.integers(0, 4, 7).astype(np.int32)
    gamma0, beta0 = ds.g.copy(), ds.b.copy()
    h = g.run(x, labels)
    assert ds.calls[:2] == ["load", "gamma"] and ds.calls[-1] == "purge"
    dg, db, _, lv = _affine_chain(
        x, lambda v: ops.batch_norm_forward(v, gamma0, beta0, epsilon=1e-3),
        lambda dy, s: ops.batch_norm_backward(dy, x, gamma0, s), fcw.weight_array, fcw.bias_array, labels)
    assert h.loss == pytest.approx(lv, rel=1e-5)
    (got_g, got_b), = ds.grads
    assert_close(got_g, dg, atol=1e-6)
    assert_close(got_b, db, atol=1e-6)
    # The graph trained its copies (the source's arrays are its own) and the running mean
    # it holds moved from None (zeros) by momentum 0.5.
    np.testing.assert_array_equal(ds.g, gamma0)
    gamma_graph = g.parameters()["recording.gamma"]
    assert_close(gamma_graph, gamma0 - 0.5 * dg, atol=1e-6)
    mean, var = bn.running_statistics(g)
    assert_close(mean, 0.5 * x.astype(np.float64).mean(axis=(0, 2, 3)), atol=1e-5)


class Affine(NormalizationDataSource):
    def __init__(self, channels, seed, log):
        r = rng(seed)
        self.g = (r.standard_normal(channels) * 0.2 + 1).astype(np.float32)
        self.b = (r.standard_normal(channels) * 0.2).astype(np.float32)
        self.log = log

    def number_of_feature_channels(self):
        return len(self.g)

    def gamma(self):
        return self.g.copy()

    def beta(self):
        return self.b.copy()

    def label(self):
        return f"affine{id(self)}"

    def update(self, gradient_state, source_state):
        self.log.append((gradient_state.weight_gradients.copy(), gradient_state.bias_gradients.copy()))


@pytest.mark.parametrize("kind", ["instance", "group", "layer"])
def test_group_family_nodes_match_the_ops(kind):
    log = []
    ds = Affine(6, 7, log)
    src = mnn.ImageNode()
    node = {"instance": lambda: mnn.InstanceNormalizationNode(src, ds),
            "group": lambda: mnn.GroupNormalizationNode(src, ds, groups=3),
            "layer": lambda: mnn.LayerNormalizationNode(src, ds)}[kind]()
    fcw = mnn.ConvolutionWeights(6, 3, (3, 5), seed=4, label="fc")
    fc = mnn.FullyConnectedNode(node.result, fcw)
    loss = mnn.SoftmaxCrossEntropyLossNode(fc.result)
    train = mnn.Graph.training(loss)
    assert f"{node.kind}Gradient" in [k for k, _, _ in train.structure()]
    r = rng(8)
    x = (r.standard_normal((5, 6, 3, 5)) * 1.5 - 0.5).astype(np.float32)
    labels = r.integers(0, 3, 5).astype(np.int32)
    fwd = {"instance": lambda v: ops.instance_norm_forward(v, ds.g, ds.b),
           "group": lambda v: ops.group_norm_forward(v, ds.g, ds.b, 3),
           "layer": lambda v: ops.layer_norm_forward(v, ds.g, ds.b)}[kind]
    h = train.run(x, labels)  # (loads the frozen fc weights; update() only records)
    dg, db, _, lv = _affine_chain(x, fwd, lambda dy, s: ops.group_norm_backward(dy, x, ds.g, s),
                                  fcw.weight_array, fcw.bias_array, labels)
    assert h.loss == pytest.approx(lv, rel=1e-5)
    assert_close(log[0][0], dg, atol=1e-6)
    assert_close(log[0][1], db, atol=1e-6)
    # Inference graph: the node's forward as the op computes it.
    infer = mnn.Graph(node.result)
    assert_close(infer.run(x).result, fwd(x)[0], atol=1e-6)


def test_affine_nodes_train_with_an_optimizer():
    opt = mnn.Adam(0.02)
    src = mnn.ImageNode()
    conv = mnn.ConvolutionNode(src, mnn.ConvolutionWeights(2, 6, 3, seed=1, optimizer=opt))
    inorm = mnn.InstanceNormalizationNode(conv.result, mnn.NormalizationWeights(6, optimizer=opt, label="in"))
    gnorm = mnn.GroupNormalizationNode(inorm.result, mnn.NormalizationWeights(6, optimizer=opt, label="gn"), groups=2)
    lnorm = mnn.LayerNormalizationNode(gnorm.result, mnn.NormalizationWeights(6, optimizer=opt, label="ln"))
    lrn = mnn.CrossChannelNormalizationNode(lnorm.result, size=3, alpha=0.5)
    relu = mnn.NeuronReLUNode(lrn.result)
    fc = mnn.FullyConnectedNode(relu.result, mnn.ConvolutionWeights(6, 4, (8, 8), seed=2, optimizer=opt))
    loss = mnn.SoftmaxCrossEntropyLossNode(fc.result)
    train = mnn.Graph.training(loss)
    kinds = {k for k, _, _ in train.structure()}
    for k in ("InstanceNormalizationNode", "GroupNormalizationNode", "LayerNormalizationNode",
              "CrossChannelNormalizationNode"):
        assert k + "Gradient" in kinds
    x, labels = _data(24, seed=3)
    losses = [train.run(x, labels).loss for _ in range(30)]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), losses
    params = train.parameters()
    assert not np.allclose(params["ln.gamma"], 1.0) and not np.allclose(params["gn.beta"], 0.0)


def test_cross_channel_node_gradient_matches_ops():
    log = []
    src = mnn.ImageNode()

    class Conv(mnn.ConvolutionWeights):
        def update(self, gradient_state, source_state):
            log.append(gradient_state.weight_gradients.copy())

    cw = Conv(3, 5, 1, seed=9, label="c")
    conv = mnn.ConvolutionNode(src, cw)
    lrn = mnn.CrossChannelNormalizationNode(conv.result, size=3, alpha=0.7, beta=0.6, delta=1.5)
    fcw = mnn.ConvolutionWeights(5, 2, (4, 3), seed=10, label="fc")
    fc = mnn.FullyConnectedNode(lrn.result, fcw)
    loss = mnn.SoftmaxCrossEntropyLossNode(fc.result)
    train = mnn.Graph.training(loss)
    r = rng(11)
    x = r.standard_normal((4, 3, 4, 3)).astype(np.float32)
    labels = r.integers(0, 2, 4).astype(np.int32)
    train.run(x, labels)
    w, b = cw.weight_array, cw.bias_array
    z = ops.conv2d_forward(x, w, b)
    kw = dict(size=3, alpha=0.7, beta=0.6, delta=1.5)
    y = ops.cross_channel_norm_forward(z, **kw)
    _, ls = ops.softmax_cross_entropy_forward(ops.fully_connected_forward(y, fcw.weight_array, fcw.bias_array), labels)
    dy = ops.fully_connected_backward_input(ops.softmax_cross_entropy_backward(ls), fcw.weight_array, y.shape)
    dz = ops.cross_channel_norm_backward(dy, z, **kw)
    assert_close(log[0], ops.conv2d_backward_weight(dz, x, w.shape), atol=1e-6)
    assert_close(mnn.Graph(lrn.result).run(x).result, y, atol=1e-6)


def test_bad_nodes_and_sources():
    src = mnn.ImageNode()
    with pytest.raises(ValueError, match=r"\[BatchNormalizationNode\] momentum"):
        mnn.BatchNormalizationNode(src, mnn.BatchNormalizationWeights(3), momentum=2.0)
    with pytest.raises(ValueError, match=r"\[GroupNormalizationNode\] groups"):
        mnn.GroupNormalizationNode(src, mnn.NormalizationWeights(3), groups=0)
    with pytest.raises(ValueError, match=r"\[CrossChannelNormalizationNode\] size"):
        mnn.CrossChannelNormalizationNode(src, size=0)
    with pytest.raises(ValueError, match=r"\[BatchNormalizationWeights\] gamma"):
        mnn.BatchNormalizationWeights(3, gamma=np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"\[NormalizationWeights\] epsilon"):
        mnn.NormalizationWeights(3, epsilon=0.0)
    # Channel mismatch and non-dividing groups surface at compile time, naming the node.
    bn = mnn.BatchNormalizationNode(src, mnn.BatchNormalizationWeights(3), label="bn3")
    with pytest.raises(ValueError, match=r"\[Graph\] node 'bn3'.*channels"):
        mnn.Graph(bn.result).run(np.zeros((2, 4, 3, 3), np.float32))
    gn = mnn.GroupNormalizationNode(src, mnn.NormalizationWeights(4), groups=3, label="gn")
    with pytest.raises(ValueError, match=r"\[Graph\] node 'gn'.*groups"):
        mnn.Graph(gn.result).run(np.zeros((2, 4, 3, 3), np.float32))

    class Broken(mnn.NormalizationWeights):
        def gamma(self):
            return np.ones(5, np.float32)

    node = mnn.InstanceNormalizationNode(src, Broken(3, label="broken"), label="inorm")
    with pytest.raises(ValueError, match=r"\[Graph\] node 'inorm'.*gamma\(\) has shape"):
        mnn.Graph(node.result).run(np.zeros((2, 3, 3, 3), np.float32))
    with pytest.raises(TypeError, match="not a batch normalization data source"):
        mnn.Graph(mnn.BatchNormalizationNode(src, mnn.NormalizationWeights(3)).result).run(
            np.zeros((2, 3, 3, 3), np.float32))
