"""The seed's digit network as a graph (the Swift sample's node-for-node port).

    conv 5x5 1->32 same, ReLU, max-pool 2x2, conv 5x5 32->64 same, ReLU, max-pool 2x2,
    fully connected 3136->1024, ReLU, dropout 0.5, fully connected 1024->10,
    softmax cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import graph as g
from ..graph.data_source import ConvolutionWeights


@dataclass
class DigitNetwork:
    source: g.ImageNode
    logits: g.ImageNode
    loss: g.SoftmaxCrossEntropyLossNode
    nodes: dict

    def inference_graph(self, **kw) -> g.Graph:
        return g.Graph(self.logits, **kw)

    def training_graph(self, **kw) -> g.Graph:
        """Derived automatically from the loss; the same graph as :meth:`hand_built_training_graph`."""
        return g.Graph.training(self.loss, **kw)

    def hand_built_training_graph(self, **kw) -> g.Graph:
        """The seed's makeTrainingGraph: gradient_filter from the loss back to the first layer."""
        n = self.nodes
        f2g = n["f2"].gradient_filter(self.loss.result)
        dg = n["d"].gradient_filter(f2g.result)
        r3g = n["r3"].gradient_filter(dg.result)
        f1g = n["f1"].gradient_filter(r3g.result)
        p2g = n["p2"].gradient_filter(f1g.result)
        r2g = n["r2"].gradient_filter(p2g.result)
        c2g = n["c2"].gradient_filter(r2g.result)
        p1g = n["p1"].gradient_filter(c2g.result)
        r1g = n["r1"].gradient_filter(p1g.result)
        c1g = n["c1"].gradient_filter(r1g.result)
        return g.Graph(c1g.result, result_needed=False, **kw)


def digit_network(optimizer=None, *, seed: int = 0, keep_probability: float = 0.5, width: float = 1.0,
                  dropout_seed: int = 7) -> DigitNetwork:
    """Builds the network's nodes; every layer trains with ``optimizer`` (None: frozen).
    ``width`` scales the channel counts (tests use narrow copies)."""
    c1n, c2n, f1n = (max(1, int(v * width)) for v in (32, 64, 1024))

    def weights(cin, cout, kernel, k, label):
        return ConvolutionWeights(cin, cout, kernel, optimizer=optimizer, seed=seed + k, label=label)

    src = g.ImageNode("image")
    c1 = g.ConvolutionNode(src, weights(1, c1n, 5, 1, "conv1"), padding="same")
    r1 = g.NeuronReLUNode(c1.result, label="relu1")
    p1 = g.PoolingMaxNode(r1.result, 2, 2, label="pool1")
    c2 = g.ConvolutionNode(p1.result, weights(c1n, c2n, 5, 2, "conv2"), padding="same")
    r2 = g.NeuronReLUNode(c2.result, label="relu2")
    p2 = g.PoolingMaxNode(r2.result, 2, 2, label="pool2")
    f1 = g.FullyConnectedNode(p2.result, weights(c2n, f1n, (7, 7), 3, "fc1"))
    r3 = g.NeuronReLUNode(f1.result, label="relu3")
    d = g.DropoutNode(r3.result, keep_probability, seed=dropout_seed, label="dropout")
    f2 = g.FullyConnectedNode(d.result, weights(f1n, 10, 1, 4, "fc2"))
    loss = g.SoftmaxCrossEntropyLossNode(f2.result, label="loss")
    nodes = dict(c1=c1, r1=r1, p1=p1, c2=c2, r2=r2, p2=p2, f1=f1, r3=r3, d=d, f2=f2)
    return DigitNetwork(src, f2.result, loss, nodes)
