"""Graph nodes of the shape and arithmetic families: inference graphs match the kernel-level
ops; Graph.training derives the gradients of residual / gating (add, multiply with channel
and spatial broadcasting), concatenation, upsampling, pad / crop and converter blocks, which
match finite differences of the whole graph's loss and train (the loss falls)."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn.graph.data_source import ConvolutionWeights

from helpers import assert_close, raises_named


def _conv(cin, cout, k=3, seed=0, opt=None, neuron=None, label=None):
    return ConvolutionWeights(cin, cout, k, neuron=neuron, optimizer=opt, seed=seed, label=label,
                              bias=np.linspace(-0.1, 0.1, cout).astype(np.float32))


def _data(n=4, c=2, h=8, w=8, seed=0, classes=3):
    r = np.random.default_rng(seed)
    return r.standard_normal((n, c, h, w)).astype(np.float32), r.integers(0, classes, n).astype(np.int32)


def residual_gating_net(opt=None, classes=3):
    """x -> conv(tanh) h; spatial gate g = sigmoid(conv(h)) of shape (N, 1, H, W); channel
    gate s = sigmoid(avgpool(h)) of shape (N, C, 1, 1); y = h * g * s + h - h / (2 + g*g)."""
    x = mnn.ImageNode("x")
    h = mnn.ConvolutionNode(x, _conv(2, 4, 3, 1, opt, "tanh", "c1"))
    g = mnn.ConvolutionNode(h.result, _conv(4, 1, 3, 2, opt, "sigmoid", "gate"))
    s = mnn.NeuronSigmoidNode(mnn.PoolingAverageNode(h.result, kernel_size=8).result)
    hg = mnn.MultiplicationNode(h.result, g.result)          # (N,4,H,W) * (N,1,H,W)
    hgs = mnn.MultiplicationNode(s.result, hg.result)        # broadcast primary: (N,4,1,1) * (N,4,H,W)
    res = mnn.AdditionNode(hgs.result, h.result)             # residual
    g2 = mnn.MultiplicationNode(g.result, g.result)
    den = mnn.AdditionNode(g2.result, g.result)              # same-shape add
    q = mnn.DivisionNode(h.result, mnn.NeuronLinearNode(den.result, a=1.0, b=2.0).result)
    out = mnn.SubtractionNode(res.result, q.result)
    fc = mnn.FullyConnectedNode(out.result, ConvolutionWeights(4, classes, 8, optimizer=opt, seed=3, label="fc"))
    return x, mnn.SoftmaxCrossEntropyLossNode(fc.result)


def concat_upsampling_net(opt=None, classes=3):
    """x -> conv; a 2x2 average pool upsampled back (nearest and bilinear) and concatenated
    with the skip and a reflect-padded conv branch; crop; flatten -> FC."""
    x = mnn.ImageNode("x")
    h = mnn.ConvolutionNode(x, _conv(2, 3, 3, 1, opt, "tanh", "c1"))
    p = mnn.PoolingAverageNode(h.result, kernel_size=2)
    up_n = mnn.UpsamplingNearestNode(p.result, 2)
    up_b = mnn.UpsamplingBilinearNode(p.result, (2, 2), align_corners=True)
    padded = mnn.PadNode(h.result, 1, mode="reflect")
    branch = mnn.ConvolutionNode(padded.result, _conv(3, 2, 3, 4, opt, "tanh", "branch"), padding="valid")
    cat = mnn.ConcatenationNode([up_n.result, h.result, branch.result, up_b.result])   # 3+3+2+3 channels
    c2 = mnn.ConvolutionNode(cat.result, _conv(11, 4, 3, 5, opt, "tanh", "c2"))
    edge = mnn.PadNode(c2.result, (0, 1, 2, 0), mode="edge", channels=(1, 0))
    crop = mnn.CropNode(edge.result, (1, 1, 1), (4, 6, 7))
    m = mnn.ImageToMatrixNode(crop.result)
    back = mnn.MatrixToImageNode(m.result, (4, 6, 7))
    flat = mnn.FlattenNode(back.result)
    fc = mnn.FullyConnectedNode(flat.result, ConvolutionWeights(4 * 6 * 7, classes, 1, optimizer=opt, seed=6,
                                                                label="fc"))
    return x, mnn.SoftmaxCrossEntropyLossNode(fc.result)


NETS = {"residual_gating": residual_gating_net, "concat_upsampling": concat_upsampling_net}


@pytest.mark.parametrize("name", list(NETS))
def test_input_gradient_matches_finite_differences(name):
    """The training graph's exit (d loss / d x through every shape / arithmetic gradient node)
    against central differences of the inference graph's loss."""
    _, loss = NETS[name]()
    graph = mnn.Graph.training(loss)
    kinds = {k for k, _, _ in graph.structure()}
    assert any(k.endswith("Gradient") for k in kinds)
    grad_graph = mnn.Graph(graph.results[0], result_needed=True)
    x, y = _data(seed=1)
    dx = grad_graph.run(x, labels=y).result
    assert dx.shape == x.shape and np.abs(dx).max() > 0
    fwd = mnn.Graph(loss.result, mode="inference")
    r = np.random.default_rng(2)
    eps = 1e-2
    for i in r.choice(x.size, 12, replace=False):
        idx = np.unravel_index(i, x.shape)
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        num = (fwd.run(xp, labels=y).loss - fwd.run(xm, labels=y).loss) / (2 * eps)
        assert abs(num - dx[idx]) <= 2e-3 + 3e-2 * abs(num), (name, idx, num, dx[idx])


@pytest.mark.parametrize("name", list(NETS))
def test_block_trains(name):
    _, loss = NETS[name](mnn.SGD(learning_rate=0.2))
    graph = mnn.Graph.training(loss)
    x, y = _data(n=6, seed=3)
    losses = [graph.run(x, labels=y).loss for _ in range(25)]
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.7 * losses[0], losses


def test_inference_matches_kernel_ops():
    """A graph of shape / arithmetic nodes only, fed two sources, against mnn.ops calls."""
    a, b = mnn.ImageNode("a"), mnn.ImageNode("scale")
    up = mnn.UpsamplingBilinearNode(a, (2, 3))
    pad = mnn.PadNode(up.result, (1, 0, 2, 1), mode="zero", channels=(0, 1))
    crop = mnn.CropNode(pad.result, (0, 1, 1), (4, 10, 12))
    div = mnn.DivisionNode(crop.result, b)                 # per-channel (1, C, 1, 1) secondary
    near = mnn.UpsamplingNearestNode(a, (2, 3))
    cat = mnn.ConcatenationNode([near.result, div.result])
    sub = mnn.SubtractionNode(cat.result, mnn.ReshapeNode(cat.result, (7, 10, 12)).result)
    m = mnn.ImageToMatrixNode(mnn.AdditionNode(cat.result, sub.result).result)
    graph = mnn.Graph(m.result)
    r = np.random.default_rng(4)
    xa = r.standard_normal((2, 3, 5, 4)).astype(np.float32)
    xs = (r.random((1, 4, 1, 1)) + 0.5).astype(np.float32)
    got = graph.run({"a": xa, "scale": xs}).result
    o = mnn.ops
    t = o.crop_forward(o.pad_forward(o.upsample_bilinear_forward(xa, (2, 3)), (1, 0, 2, 1), "zero", (0, 1)),
                       (0, 1, 1), (4, 10, 12))
    c = o.concat_forward([o.upsample_nearest_forward(xa, (2, 3)), o.divide_forward(t, xs)])
    ref = o.image_to_matrix(o.add_forward(c, o.subtract_forward(c, c)))
    assert got.shape == (2, 7 * 10 * 12)
    assert_close(got, ref)


def test_gradient_filters_one_per_source():
    srcs = [mnn.ImageNode(f"s{i}") for i in range(3)]
    cat = mnn.ConcatenationNode(srcs)
    gs = cat.gradient_filters(mnn.ImageNode("dy"))
    assert [g.input_index for g in gs] == [0, 1, 2]
    mul = mnn.MultiplicationNode(srcs[0], srcs[1])
    assert [g.kind for g in mul.gradient_filters(mnn.ImageNode("dy"))] == ["MultiplicationNodeGradient"] * 2
    assert mnn.UpsamplingNearestNode(srcs[0]).gradient_filter(mnn.ImageNode("dy")).input_index == 0


def test_matrix_side_is_two_dimensional():
    """ImageToMatrixNode's result is a 2-D (rows, columns) node; MatrixToImageNode inverts it."""
    x = mnn.ImageNode("x")
    m = mnn.ImageToMatrixNode(x)
    img = mnn.MatrixToImageNode(m.result, (3, 4, 5))
    graph = mnn.Graph([m.result, img.result])
    xv = np.arange(2 * 60, dtype=np.float32).reshape(2, 3, 4, 5)
    mat, back = graph.run(xv).results
    assert mat.shape == (2, 60)
    np.testing.assert_array_equal(mat, xv.reshape(2, 60))
    np.testing.assert_array_equal(back, xv)


def test_bad_node_arguments():
    x = mnn.ImageNode("x")
    with raises_named(ValueError, "UpsamplingNearestNode", "scale_factor"):
        mnn.UpsamplingNearestNode(x, 0)
    with raises_named(ValueError, "PadNode", "mode"):
        mnn.PadNode(x, 1, mode="wrap")
    with raises_named(ValueError, "CropNode", "size"):
        mnn.CropNode(x, (0, 0, 0), (1, 0, 1))
    with raises_named(ValueError, "ReshapeNode", "shape"):
        mnn.ReshapeNode(x, (-1, -1))
    with raises_named(ValueError, "ConcatenationNode", "source"):
        mnn.ConcatenationNode([])
    with raises_named(ValueError, "MatrixToImageNode", "image_shape"):
        mnn.MatrixToImageNode(x, (3, 4))
    # Shape errors surface at compile time, naming the node.
    bad = mnn.Graph(mnn.MultiplicationNode(x, mnn.ImageNode("y")).result)
    with pytest.raises(ValueError, match=r"MultiplicationNode.*broadcast"):
        bad.run({"x": np.zeros((2, 3, 4, 4), np.float32), "y": np.zeros((2, 2, 4, 4), np.float32)})
    crop = mnn.Graph(mnn.CropNode(x, (0, 2, 0), (1, 3, 1)).result)
    with pytest.raises(ValueError, match=r"CropNode.*outside"):
        crop.run(np.zeros((1, 2, 4, 4), np.float32))
    refl = mnn.Graph(mnn.PadNode(x, 4, mode="reflect").result)
    with pytest.raises(ValueError, match=r"PadNode.*reflect"):
        refl.run(np.zeros((1, 2, 4, 4), np.float32))
