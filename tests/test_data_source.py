"""Data sources: ConvolutionDescriptor, the DataSource protocol, ConvolutionWeights and its
initializers, read_parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metalnn.graph.checkpoint import save_arrays
from metalnn.graph.data_source import (
    ConvolutionDescriptor,
    ConvolutionWeights,
    DataSource,
    GradientState,
    WeightsState,
    glorot_uniform,
    he_normal,
    initial_weights,
    read_parameters,
)
from metalnn.graph.optimizers import SGD, Adam

from helpers import raises_named, rng

# ---------------------------------------------------------------------------------------
# descriptor


def test_descriptor_fields():
    d = ConvolutionDescriptor(
        (3, 5), 12, 8, stride=2, dilation=(1, 2), groups=4, neuron="relu", neuron_a=0.1
    )
    assert d.kernel_size == (3, 5) and (d.kernel_h, d.kernel_w) == (3, 5)
    assert d.stride == (2, 2) and (d.stride_h, d.stride_w) == (2, 2)
    assert d.dilation == (1, 2) and (d.dilation_h, d.dilation_w) == (1, 2)
    assert (d.in_channels, d.out_channels, d.groups) == (12, 8, 4)
    assert (d.neuron, d.neuron_a, d.neuron_b) == ("relu", 0.1, None)
    assert d.weight_shape == (8, 3, 3, 5)
    assert d.fan_in == d.features == 3 * 3 * 5
    assert d.fan_out == 2 * 3 * 5
    with pytest.raises(AttributeError):
        d.in_channels = 3  # immutable


def test_fully_connected_descriptors():
    # The kernel covers a 28x28 single-channel input: weights (O, 1, 28, 28) == (O, 784).
    d = ConvolutionDescriptor((28, 28), 1, 10)
    assert d.weight_shape == (10, 1, 28, 28) and d.features == 784
    d2 = ConvolutionDescriptor(1, 784, 10)
    assert d2.weight_shape == (10, 784, 1, 1) and d2.features == 784


def test_descriptor_value_semantics():
    a = ConvolutionDescriptor(3, 4, 8, stride=(2, 2), neuron="tanh", neuron_a=1.0, neuron_b=2.0)
    b = ConvolutionDescriptor((3, 3), 4, 8, stride=2, neuron="tanh", neuron_a=1, neuron_b=2)
    assert a == b and hash(a) == hash(b)
    assert a != ConvolutionDescriptor(3, 4, 8)
    assert ConvolutionDescriptor.from_dict(a.to_dict()) == a
    assert "stride=(2, 2)" in repr(a)
    with raises_named(ValueError, "ConvolutionDescriptor", "unknown fields"):
        ConvolutionDescriptor.from_dict({**a.to_dict(), "padding": 1})
    with raises_named(ValueError, "ConvolutionDescriptor", "missing fields"):
        ConvolutionDescriptor.from_dict({"kernel_size": 3})


@pytest.mark.parametrize(
    "kw,exc,arg",
    [
        ({"kernel_size": 0}, ValueError, "kernel_size"),
        ({"kernel_size": (3,)}, ValueError, "kernel_size"),
        ({"kernel_size": (3, 0)}, ValueError, "kernel_size[1]"),
        ({"kernel_size": 2.5}, TypeError, "kernel_size"),
        ({"kernel_size": "3"}, TypeError, "kernel_size"),
        ({"kernel_size": True}, TypeError, "kernel_size"),
        ({"in_channels": 0}, ValueError, "in_channels"),
        ({"in_channels": -3}, ValueError, "in_channels"),
        ({"in_channels": 4.0}, TypeError, "in_channels"),
        ({"out_channels": 0}, ValueError, "out_channels"),
        ({"stride": 0}, ValueError, "stride"),
        ({"stride": (1, 2, 3)}, ValueError, "stride"),
        ({"dilation": (1, -1)}, ValueError, "dilation[1]"),
        ({"groups": 0}, ValueError, "groups"),
        ({"groups": 3}, ValueError, "groups"),  # 6 in, 4 out: 4 % 3 != 0
        ({"groups": 4}, ValueError, "in_channels"),  # 6 % 4 != 0
        ({"neuron": "swish"}, ValueError, "neuron"),
        ({"neuron": 3}, TypeError, "neuron"),
        ({"neuron_a": 0.1}, ValueError, "neuron_a"),  # without a neuron
        ({"neuron": "relu", "neuron_a": float("nan")}, ValueError, "neuron_a"),
        ({"neuron": "relu", "neuron_b": "x"}, TypeError, "neuron_b"),
    ],
)
def test_descriptor_validation(kw, exc, arg):
    args = {"kernel_size": 3, "in_channels": 6, "out_channels": 4, **kw}
    with raises_named(exc, "ConvolutionDescriptor", arg):
        ConvolutionDescriptor(**args)
    # ConvolutionWeights reports the same problem under its own name.
    with raises_named(exc, "ConvolutionWeights", arg):
        ConvolutionWeights(**args)


def test_numpy_ints_accepted():
    d = ConvolutionDescriptor(np.int64(3), np.int32(4), np.array(8), stride=np.array([1, 2]))
    assert d.kernel_size == (3, 3) and d.out_channels == 8 and d.stride == (1, 2)


# ---------------------------------------------------------------------------------------
# initializers


@pytest.mark.parametrize("groups", [1, 4])
def test_he_statistics(groups):
    src = ConvolutionWeights(64, 128, 3, groups=groups, weights_init="he", seed=7)
    w = src.weights().astype(np.float64)
    fan_in = 64 // groups * 9
    std = math.sqrt(2.0 / fan_in)
    assert w.shape == (128, 64 // groups, 3, 3)
    n = w.size
    # std of the sample std is about std / sqrt(2n): 3% is many sigmas even for n = 18432.
    assert abs(w.std() / std - 1) < 0.03, (w.std(), std)
    assert abs(w.mean()) < 5 * std / math.sqrt(n)
    # Normal, not uniform: some values beyond 2.5 std, and kurtosis near 3.
    assert np.mean(np.abs(w) > 2.5 * std) > 0.005
    assert abs(np.mean(w**4) / np.mean(w**2) ** 2 - 3) < 0.2


@pytest.mark.parametrize("groups", [1, 2])
def test_glorot_bounds_and_statistics(groups):
    src = ConvolutionWeights(32, 96, (3, 5), groups=groups, weights_init="glorot", seed=3)
    w = src.weights().astype(np.float64)
    fan_in = 32 // groups * 15
    fan_out = 96 // groups * 15
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    assert np.all(np.abs(w) <= limit)
    assert w.max() > 0.995 * limit and w.min() < -0.995 * limit  # fills the whole interval
    assert abs(w.var() / (limit**2 / 3) - 1) < 0.03  # uniform variance
    assert abs(w.mean()) < 5 * limit / math.sqrt(3 * w.size)


def test_fully_connected_fan_in():
    w = ConvolutionWeights(784, 200, seed=1).weights()  # kernel 1: the (O, F) case
    assert w.shape == (200, 784, 1, 1)
    assert abs(w.std() / math.sqrt(2 / 784) - 1) < 0.02


def test_zeros_and_bias_init():
    src = ConvolutionWeights(3, 5, 3, weights_init="zeros")
    assert not src.weights().any() and src.weights().dtype == np.float32
    b = src.biases()
    assert b.shape == (5,) and b.dtype == np.float32 and not b.any()
    assert ConvolutionWeights(3, 5, bias=False).biases() is None
    given = np.arange(5, dtype=np.float64)
    src = ConvolutionWeights(3, 5, bias=given, dtype="float16")
    assert src.biases().dtype == np.float16
    np.testing.assert_array_equal(src.biases(), given)


def test_determinism_by_seed():
    a = ConvolutionWeights(16, 32, 3, seed=11).weights()
    b = ConvolutionWeights(16, 32, 3, seed=11).weights()
    c = ConvolutionWeights(16, 32, 3, seed=12).weights()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Drawn in float64 and rounded once: float16 is float32's values rounded.
    h = ConvolutionWeights(16, 32, 3, seed=11, dtype="float16").weights()
    assert h.dtype == np.float16
    np.testing.assert_array_equal(
        h, initial_weights(ConvolutionDescriptor(3, 16, 32), "he", 11, np.float16)
    )
    np.testing.assert_allclose(h.astype(np.float32), a, rtol=1e-3, atol=1e-4)
    # The helpers match the documented formulas.
    d = ConvolutionDescriptor(3, 16, 32)
    np.testing.assert_array_equal(
        initial_weights(d, "glorot", 5),
        glorot_uniform(d.weight_shape, d.fan_in, d.fan_out, np.random.default_rng(5)).astype(
            np.float32
        ),
    )
    np.testing.assert_array_equal(
        initial_weights(d, "he", 5),
        he_normal(d.weight_shape, d.fan_in, np.random.default_rng(5)).astype(np.float32),
    )
    with raises_named(ValueError, "initial_weights", "init"):
        initial_weights(d, "orthogonal")


def test_load_is_idempotent_and_purge_keeps_arrays():
    src = ConvolutionWeights(4, 6, 3, seed=2)
    assert src.weight_array is None and src.bias_array is None
    assert src.load() is True
    w = src.weight_array
    w += 1.0  # training updates the arrays in place
    assert src.load() is True and src.weight_array is w
    src.purge()  # built-in: the arrays back the graph's parameters, nothing is dropped
    assert src.weight_array is w and src.weights() is w and src.bias_array is not None


# ---------------------------------------------------------------------------------------
# ConvolutionWeights arguments and from_arrays


@pytest.mark.parametrize(
    "kw,exc,arg",
    [
        ({"dtype": "float64"}, TypeError, "dtype"),
        ({"dtype": None}, TypeError, "dtype"),
        ({"weights_init": "kaiming"}, ValueError, "weights_init"),
        ({"weights_init": [[1.0]]}, TypeError, "weights_init"),
        ({"weights_init": np.zeros((4, 3, 3, 3), np.float32)}, ValueError, "weights_init"),
        ({"weights_init": np.zeros((4, 2, 3, 3), np.int32)}, TypeError, "weights_init"),
        ({"bias": np.zeros(3, np.float32)}, ValueError, "bias"),
        ({"bias": "yes"}, TypeError, "bias"),
        ({"bias": np.zeros(4, np.int64)}, TypeError, "bias"),
        ({"optimizer": "adam"}, TypeError, "optimizer"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 1.5}, TypeError, "seed"),
        ({"label": ""}, TypeError, "label"),
    ],
)
def test_convolution_weights_validation(kw, exc, arg):
    with raises_named(exc, "ConvolutionWeights", arg):
        ConvolutionWeights(2, 4, 3, **kw)


def test_explicit_weights_in_both_layouts():
    r = rng(0)
    w4 = r.standard_normal((4, 2, 3, 3)).astype(np.float32)
    a = ConvolutionWeights(2, 4, 3, weights_init=w4)
    b = ConvolutionWeights(2, 4, 3, weights_init=w4.reshape(4, 18))
    np.testing.assert_array_equal(a.weights(), w4)
    np.testing.assert_array_equal(b.weights(), w4)
    assert a.weights() is not w4  # copied: the caller's array is never trained in place


def test_from_arrays_infers_descriptor():
    r = rng(1)
    w = r.standard_normal((8, 2, 3, 5)).astype(np.float16)
    b = r.standard_normal(8).astype(np.float16)
    src = ConvolutionWeights.from_arrays(w, b, groups=2, stride=2, neuron="relu", label="c1")
    d = src.descriptor()
    assert (d.in_channels, d.out_channels, d.kernel_size, d.groups, d.stride) == (
        4,
        8,
        (3, 5),
        2,
        (2, 2),
    )
    assert src.dtype == np.float16 and src.label() == "c1" and d.neuron == "relu"
    np.testing.assert_array_equal(src.weights(), w)
    np.testing.assert_array_equal(src.biases(), b)
    w[...] = 0  # copies
    assert src.weights().any()

    fc = ConvolutionWeights.from_arrays(r.standard_normal((10, 784)))  # float64 -> float32
    assert fc.dtype == np.float32 and fc.descriptor() == ConvolutionDescriptor(1, 784, 10)
    assert fc.biases() is None
    img = ConvolutionWeights.from_arrays(
        np.ones((10, 784), np.float32), kernel_size=(7, 7), in_channels=16
    )
    assert img.descriptor().weight_shape == (10, 16, 7, 7)
    h = ConvolutionWeights.from_arrays(np.ones((3, 4), np.float32), dtype="float16")
    assert h.weights().dtype == np.float16


@pytest.mark.parametrize(
    "weights,biases,kw,exc,arg",
    [
        (np.ones((4, 2, 3, 3), np.float32), None, {"in_channels": 3}, ValueError, "in_channels"),
        (np.ones((4, 2, 3, 3), np.float32), None, {"kernel_size": 5}, ValueError, "kernel_size"),
        (np.ones((4, 2, 3, 3), np.float32), None, {"out_channels": 5}, ValueError, "out_channels"),
        (np.ones((4, 2, 3, 3), np.float32), None, {"groups": 3}, ValueError, "groups"),
        (np.ones((10, 784), np.float32), None, {"kernel_size": 5}, ValueError, "kH*kW"),
        (
            np.ones((10, 784), np.float32),
            None,
            {"kernel_size": 7, "in_channels": 15},
            ValueError,
            "in_channels",
        ),
        (np.ones((4, 2, 3), np.float32), None, {}, ValueError, "weights"),
        (np.ones((4, 2), np.int32), None, {}, TypeError, "weights"),
        (np.ones((4, 2), np.complex64), None, {}, TypeError, "weights"),
        ([[1.0, 2.0]], None, {}, TypeError, "weights"),
        (np.ones((4, 2), np.float32), np.ones(3, np.float32), {}, ValueError, "bias"),
        (np.ones((4, 2), np.float32), np.ones(4, np.int32), {}, TypeError, "biases"),
        (np.ones((4, 2), np.float32), None, {"dtype": "int8"}, TypeError, "dtype"),
        (np.ones((4, 2), np.float32), None, {"weights_init": "he"}, TypeError, "weights_init"),
    ],
)
def test_from_arrays_validation(weights, biases, kw, exc, arg):
    with raises_named(exc, "ConvolutionWeights", arg):
        ConvolutionWeights.from_arrays(weights, biases, **kw)


def test_save_and_from_file_round_trip(tmp_path):
    src = ConvolutionWeights(
        6,
        4,
        (3, 2),
        stride=2,
        dilation=(1, 2),
        groups=2,
        neuron="leaky_relu",
        neuron_a=0.2,
        dtype="float16",
        seed=9,
        label="block1.conv",
    )
    src.weights()[...] += 0.5
    src.save(tmp_path / "c.npz", {"epoch": 4})
    back = ConvolutionWeights.from_file(tmp_path / "c.npz", "block1.conv", optimizer=SGD(0.1))
    assert back.descriptor() == src.descriptor()
    assert back.label() == "block1.conv" and back.dtype == np.float16
    assert isinstance(back.optimizer, SGD)
    np.testing.assert_array_equal(back.weights(), src.weights())
    np.testing.assert_array_equal(back.biases(), src.biases())
    with raises_named(ValueError, "ConvolutionWeights", "'other'"):
        ConvolutionWeights.from_file(tmp_path / "c.npz", "other")
    with raises_named(ValueError, "ConvolutionWeights", "layers"):
        src.save(tmp_path / "d.npz", {"layers": 1})


def test_from_file_without_descriptor_metadata(tmp_path):
    w = np.ones((5, 12), np.float32)
    save_arrays(tmp_path / "g.npz", {"fc/weights": w, "fc/biases": np.zeros(5, np.float32)})
    src = ConvolutionWeights.from_file(tmp_path / "g.npz", "fc", kernel_size=(2, 2))
    assert src.descriptor() == ConvolutionDescriptor((2, 2), 3, 5)
    assert src.biases().shape == (5,)


# ---------------------------------------------------------------------------------------
# the protocol


class MySource(DataSource):
    """A user data source: loads lazily, drops its arrays on purge, records calls."""

    def __init__(self, weights, biases=None, ok=True, desc=None):
        self.calls: list[str] = []
        self._w, self._b, self._ok = weights, biases, ok
        self._desc = desc or ConvolutionDescriptor(3, 2, 4)
        self.arrays = None

    def descriptor(self):
        self.calls.append("descriptor")
        return self._desc

    def load(self):
        self.calls.append("load")
        self.arrays = (self._w, self._b)
        return self._ok

    def weights(self):
        self.calls.append("weights")
        return self.arrays[0]

    def biases(self):
        self.calls.append("biases")
        return self.arrays[1]

    def purge(self):
        self.calls.append("purge")
        self.arrays = None

    def label(self):
        return "mine"


def test_user_subclass_is_accepted_in_protocol_order():
    r = rng(2)
    w = r.standard_normal((4, 2, 3, 3)).astype(np.float32)
    b = r.standard_normal(4).astype(np.float32)
    src = MySource(w, b)
    p = read_parameters(src)
    assert src.calls == ["descriptor", "load", "weights", "biases", "purge"]
    assert src.arrays is None  # purged after the copy
    assert p.label == "mine" and p.descriptor == ConvolutionDescriptor(3, 2, 4)
    np.testing.assert_array_equal(p.weights, w)
    np.testing.assert_array_equal(p.biases, b)
    assert not np.shares_memory(p.weights, w)
    assert src.optimizer is None and not src.overrides_update()


def test_user_source_with_fc_layout_and_no_bias():
    w = np.arange(4 * 18, dtype=np.float16).reshape(4, 18)
    p = read_parameters(MySource(w))
    assert p.weights.shape == (4, 2, 3, 3) and p.weights.dtype == np.float16 and p.biases is None
    np.testing.assert_array_equal(p.weights.reshape(4, 18), w)


def test_incomplete_subclass_is_rejected():
    class NoPurge(DataSource):
        def descriptor(self):
            return ConvolutionDescriptor(1, 1, 1)

        def weights(self):
            return np.zeros((1, 1, 1, 1), np.float32)

        def biases(self):
            return None

        def load(self):
            return True

        def label(self):
            return "x"

    with pytest.raises(TypeError, match="abstract.*purge"):
        NoPurge()


def test_duck_typed_source():
    class Duck:
        def __init__(self):
            self.inner = MySource(np.ones((4, 2, 3, 3), np.float32))

        def __getattr__(self, name):
            return getattr(self.inner, name)

    assert read_parameters(Duck()).weights.shape == (4, 2, 3, 3)

    class NotASource:
        def weights(self):
            return None

    with raises_named(TypeError, "DataSource", "descriptor, biases, load, purge, label"):
        read_parameters(NotASource())


def test_builtin_source_binds_without_copy():
    src = ConvolutionWeights(2, 4, 3, optimizer=Adam())
    p = read_parameters(src, copy=False)
    assert p.weights is src.weight_array and p.biases is src.bias_array
    assert not src.overrides_update() and isinstance(src.optimizer, Adam)
    p2 = read_parameters(src)
    assert not np.shares_memory(p2.weights, src.weight_array)
    np.testing.assert_array_equal(p2.weights, src.weight_array)


W = np.ones((4, 2, 3, 3), np.float32)


@pytest.mark.parametrize(
    "src,exc,arg",
    [
        (MySource(W, ok=False), RuntimeError, "'mine': load() returned False"),
        (MySource(np.ones((4, 2, 3, 2), np.float32)), ValueError, "weights() has shape"),
        (MySource(np.ones((4, 17), np.float32)), ValueError, "weights() has shape"),
        (MySource(W.astype(np.float64)), TypeError, "weights() must be float32 or float16"),
        (MySource(W.tolist()), TypeError, "weights() must return a numpy array"),
        (MySource(W, np.ones(4, np.float16)), TypeError, "biases() dtype"),
        (MySource(W, np.ones(5, np.float32)), ValueError, "biases() has shape"),
        (MySource(W, desc=(3, 2, 4)), TypeError, "descriptor()"),
    ],
)
def test_read_parameters_rejects_bad_sources(src, exc, arg):
    with raises_named(exc, "DataSource", arg):
        read_parameters(src)


def test_custom_update_protocol():
    class Trained(MySource):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.opt = SGD(0.5)
            self.state = {}

        def update(self, gradient_state, source_state):
            self.opt.step(source_state.weights, gradient_state.weight_gradients, self.state, 1)
            return None

    src = Trained(W.copy())
    assert src.overrides_update()
    params = read_parameters(src)
    grads = GradientState(np.full_like(params.weights, 2.0), np.ones(4, np.float32))
    assert src.update(grads, WeightsState(params.weights, params.biases)) is None
    np.testing.assert_array_equal(params.weights, np.zeros_like(W))  # 1 - 0.5 * 2
    # The base class's update is a documented no-op.
    assert DataSource.update(src, grads, WeightsState(params.weights)) is None


def test_state_classes_validate():
    with raises_named(TypeError, "WeightsState", "weights"):
        WeightsState([1.0])
    with raises_named(TypeError, "WeightsState", "biases"):
        WeightsState(W, [1.0])
    with raises_named(TypeError, "GradientState", "weight_gradients"):
        GradientState(None)
    with raises_named(TypeError, "GradientState", "bias_gradients"):
        GradientState(W, 3)
    s = WeightsState(W, None)
    assert s.weights is W and s.biases is None
