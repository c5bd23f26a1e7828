"""Small networks shared by the graph tests."""

from __future__ import annotations

import numpy as np

import metalnn as mnn
from metalnn.examples.digit_graph import DigitNetwork
from metalnn.examples.digit_graph import digit_network as _digit_network
from metalnn.graph.data_source import DataSource


def digit_network(optimizer=None, keep_probability=0.5, seed=0, width=1.0, dropout_seed=7):
    """The example's digit network: returns (source, loss, nodes)."""
    net = _digit_network(optimizer, seed=seed, keep_probability=keep_probability, width=width,
                         dropout_seed=dropout_seed)
    return net.source, net.loss, net.nodes


def hand_built_training_graph(loss, n, **kw):
    """The seed's makeTrainingGraph for nodes `n` built by digit_network."""
    return DigitNetwork(None, n["f2"].result, loss, n).hand_built_training_graph(**kw)


class RecordingSource(DataSource):
    """A user data source: logs every call and records the gradients update() gets."""

    def __init__(self, name, in_channels, out_channels, kernel_size, log, seed=0, apply_sgd=None, neuron=None):
        self._name, self.log = name, log
        self.desc = mnn.ConvolutionDescriptor(kernel_size, in_channels, out_channels, neuron=neuron)
        r = np.random.default_rng(seed)
        fan_in = in_channels * self.desc.kernel_h * self.desc.kernel_w
        self.w = (r.standard_normal(self.desc.weight_shape) / np.sqrt(fan_in)).astype(np.float32)
        self.b = (r.standard_normal(out_channels) * 0.1).astype(np.float32)
        self.apply_sgd = apply_sgd
        self.gradients = []

    def descriptor(self):
        self.log.append((self._name, "descriptor"))
        return self.desc

    def weights(self):
        self.log.append((self._name, "weights"))
        return self.w

    def biases(self):
        self.log.append((self._name, "biases"))
        return self.b

    def load(self):
        self.log.append((self._name, "load"))
        return True

    def purge(self):
        self.log.append((self._name, "purge"))

    def label(self):
        return self._name

    def update(self, gradient_state, source_state):
        self.log.append((self._name, "update"))
        self.gradients.append((gradient_state.weight_gradients.copy(), gradient_state.bias_gradients.copy()))
        if self.apply_sgd:
            source_state.weights -= self.apply_sgd * gradient_state.weight_gradients
            source_state.biases -= self.apply_sgd * gradient_state.bias_gradients
        return None
