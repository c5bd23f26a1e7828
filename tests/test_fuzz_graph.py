"""Property-based tests of the graph builder (issue 9): random chains of convolution,
neuron, pooling, dropout and fully connected nodes with random geometry and padding
policies. A graph that builds runs and matches the same ops called one by one; a graph
whose shapes do not work raises ValueError naming the node, never crashes."""

from __future__ import annotations

import numpy as np
from fuzz_support import CASES, FUZZ, valid
from hypothesis import given
from hypothesis import strategies as st

import metalnn as mnn
from metalnn.graph.data_source import ConvolutionWeights

LAYER = st.one_of(
    st.tuples(st.just("conv"), st.integers(1, 4), st.integers(1, 3), st.integers(1, 2), st.integers(1, 2),
              st.sampled_from(["same", "valid", 0, 1, 2]), st.integers(1, 2)),
    st.tuples(st.just("neuron"), st.sampled_from(["relu", "sigmoid", "tanh", "absolute"])),
    st.tuples(st.just("max"), st.integers(1, 3), st.integers(1, 3), st.sampled_from(["valid", "same"])),
    st.tuples(st.just("avg"), st.integers(1, 3), st.integers(1, 3), st.sampled_from(["valid", "same"])),
    st.tuples(st.just("dropout"), st.floats(0.1, 1.0)),
)


def _build(layers, channels, seed):
    """Nodes for `layers` and, alongside, a function applying the same ops one by one."""
    src = mnn.ImageNode("x")
    image, c, plan = src, channels, []
    for i, spec in enumerate(layers):
        kind = spec[0]
        if kind == "conv":
            _, k, stride, dil, groups, padding, mult = spec
            groups = groups if c % groups == 0 else 1
            ds = ConvolutionWeights(c, groups * mult, k, stride=stride, dilation=dil, groups=groups,
                                    seed=seed + i, label=f"conv{i}")
            node = mnn.ConvolutionNode(image, ds, padding=padding, label=f"conv{i}")
            c = groups * mult
        elif kind == "neuron":
            node = {"relu": mnn.NeuronReLUNode, "sigmoid": mnn.NeuronSigmoidNode, "tanh": mnn.NeuronTanHNode,
                    "absolute": mnn.NeuronAbsoluteNode}[spec[1]](image, label=f"neuron{i}")
        elif kind in ("max", "avg"):
            cls = mnn.PoolingMaxNode if kind == "max" else mnn.PoolingAverageNode
            node = cls(image, spec[1], spec[2], padding=spec[3], label=f"{kind}{i}")
        else:
            node = mnn.DropoutNode(image, spec[1], label=f"dropout{i}")  # identity in inference
        plan.append((spec, node))
        image = node.result
    return src, image, plan


def _by_ops(x, plan):
    for spec, node in plan:
        kind = spec[0]
        if kind == "conv":
            d, ds = node.descriptor(), node.data_source
            x = mnn.ops.conv2d_forward(x, ds.weight_array, ds.bias_array, (d.stride_h, d.stride_w),
                                       list(node.resolved_padding), (d.dilation_h, d.dilation_w), d.groups)
        elif kind == "neuron":
            x = mnn.ops.neuron_forward(x, node.neuron_type)
        elif kind == "max":
            x = mnn.ops.max_pool2d_forward(x, node.kernel, node.stride, list(node.resolved_padding))[0]
        elif kind == "avg":
            x = mnn.ops.avg_pool2d_forward(x, node.kernel, node.stride, list(node.resolved_padding),
                                           node.count_include_pad)
    return x


@FUZZ
@given(st.lists(LAYER, min_size=1, max_size=5), st.integers(1, 4), st.integers(1, 3), st.integers(1, 12),
       st.integers(1, 12), st.integers(0, 2**16))
def test_random_chains(layers, channels, n, h, w, seed):
    src, out, plan = _build(layers, channels, seed)
    graph = mnn.Graph(out)
    x = np.random.default_rng(seed).standard_normal((n, channels, h, w)).astype(np.float32)
    try:
        got = graph.run(x).wait().result
    except ValueError as e:
        # Only shape problems are allowed to fail, and the message names a node of this graph.
        CASES[("graph", "invalid")] += 1
        msg = str(e)
        assert msg.startswith("[Graph] node '"), msg
        assert any(f"'{node.label}'" in msg for _, node in plan), msg
        return
    valid("graph")
    ref = _by_ops(x, plan)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * max(1.0, float(np.max(np.abs(ref), initial=0))))


@FUZZ
@given(st.lists(LAYER, min_size=1, max_size=4), st.integers(2, 4), st.integers(0, 2**16))
def test_random_chains_train_one_step(layers, channels, seed):
    """The derived training graph of a random chain + fully connected + loss runs one step,
    gives a finite loss and moves the weights (or fails at build with a named node)."""
    src, out, plan = _build(layers, channels, seed)
    sgd = mnn.SGD(learning_rate=0.05)
    for _, node in plan:
        if isinstance(node, mnn.ConvolutionNode):
            node.data_source.optimizer = sgd
    x = np.random.default_rng(seed).standard_normal((3, channels, 9, 9)).astype(np.float32)
    try:
        shape = mnn.Graph(out).run(x).wait().result.shape
    except ValueError:
        CASES[("graph training", "invalid")] += 1
        return
    fc = mnn.FullyConnectedNode(out, ConvolutionWeights(shape[1], 3, (shape[2], shape[3]), optimizer=sgd,
                                                        seed=seed, label="fc"))
    loss = mnn.SoftmaxCrossEntropyLossNode(fc.result, label="loss")
    graph = mnn.Graph.training(loss)
    labels = np.array([0, 1, 2], np.int32)
    before = {k: v.copy() for k, v in graph.run(x, labels).wait() and graph.parameters().items()}
    handle = graph.run(x, labels).wait()
    assert np.isfinite(handle.loss)
    after = graph.parameters()
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    valid("graph training")
