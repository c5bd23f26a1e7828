"""Device copies of data-source arrays are shared by the graphs that bind them (a training
graph and its inference graph see one set of weights on cuda/metal). The cache logic runs on
any build; the cuda test in test_cuda_graph_capture.py checks the trained weights."""

import gc

import numpy as np

from metalnn.graph import graph as graph_module


def test_one_copy_per_array_memory():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = graph_module._device_copy(a, "cpu")
    assert graph_module._device_copy(a, "cpu") is t
    assert graph_module._device_copy(a.reshape(3, 4), "cpu") is t  # a view of the same bytes and shape
    assert graph_module._device_copy(a.reshape(4, 3), "cpu") is not t  # another shape binds another tensor
    b = a.copy()
    assert graph_module._device_copy(b, "cpu") is not t  # a copy of the values is not shared
    np.testing.assert_array_equal(np.asarray(t.numpy() if hasattr(t, "numpy") else t), a)


def test_entry_dropped_with_its_array():
    a = np.ones(7, np.float32)
    graph_module._device_copy(a, "cpu")
    key = ("cpu", a.__array_interface__["data"][0], a.shape, a.dtype.str)
    assert key in graph_module._DEVICE_COPIES
    del a
    gc.collect()
    assert key not in graph_module._DEVICE_COPIES
