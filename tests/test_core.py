"""Core: tensors, devices, streams and events, the caching allocator, BLAS loading."""

import threading

import numpy as np
import pytest

import metalnn as mnn


def test_tensor_round_trip_and_copy_semantics():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = mnn.tensor(a)
    assert t.shape == (3, 4) and t.dtype == "float32" and t.device == mnn.Device("cpu")
    a[0, 0] = 99  # the tensor owns a copy
    assert t.numpy()[0, 0] == 0
    np.testing.assert_array_equal(np.asarray(t)[1], [4, 5, 6, 7])


def test_tensor_dtype_conversion():
    t = mnn.tensor([[1.5, 2.25]], dtype="float16")
    assert t.dtype == "float16"
    np.testing.assert_array_equal(t.numpy(), np.array([[1.5, 2.25]], np.float16))
    with pytest.raises(ValueError, match=r"^\[tensor\] dtype"):
        mnn.tensor([1.0], dtype="bfloat13")


def test_numpy_results_are_zero_copy_views_of_device_memory():
    y = mnn.ops.neuron_forward(np.ones((4, 5), np.float32), "linear", a=2.0)
    assert y.flags["C_CONTIGUOUS"] and y.flags["WRITEABLE"]
    np.testing.assert_array_equal(y, 2.0)


def test_devices():
    assert mnn.Device("cpu").type == "cpu"
    assert mnn.default_device() in mnn.available_devices()
    with pytest.raises(ValueError, match="unknown device"):
        mnn.Device("tpu")
    if all(d.type != "cuda" for d in mnn.available_devices()):
        with pytest.raises(ValueError, match="not available"):
            mnn.Device("cuda")


def test_default_device_from_environment(monkeypatch):
    import subprocess
    import sys

    code = "import metalnn as m; print(m.default_device())"
    import os

    env = dict(os.environ, METALNN_DEVICE="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "cpu"
    env["METALNN_DEVICE"] = "quantum"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "METALNN_DEVICE" in bad.stderr


def test_stream_runs_lists_in_order_asynchronously():
    s = mnn.Stream()
    gate = threading.Event()
    log = []
    done = []
    e1 = s.submit([lambda: gate.wait(5), lambda: log.append(1)], on_complete=lambda: done.append(1))
    e2 = s.submit([lambda: log.append(2)], on_complete=lambda: done.append(2))
    assert not e1.done() and log == []  # submit returned before the work ran
    gate.set()
    e2.wait()
    assert e1.done() and log == [1, 2] and done == [1, 2]


def test_stream_error_surfaces_on_its_event_and_stream_keeps_working():
    s = mnn.Stream()
    ran = []

    def boom():
        raise KeyError("bad batch")

    e1 = s.submit([boom, lambda: ran.append("skipped")])
    e2 = s.submit([lambda: ran.append("next")])
    with pytest.raises(RuntimeError, match=r"^\[stream\].*bad batch"):
        e1.wait()
    e2.wait()
    s.synchronize()
    assert ran == ["next"]


def test_caching_allocator_reuses_blocks():
    x = np.ones((64, 32, 28, 28), np.float32)
    mnn.ops.neuron_forward(x, "relu")  # warm the cache with this size
    before = mnn.allocator_stats()
    for _ in range(5):
        y = mnn.ops.neuron_forward(x, "relu")
        del y
    after = mnn.allocator_stats()
    assert after["allocations"] - before["allocations"] == 5
    assert after["cache_hits"] - before["cache_hits"] == 5
    mnn.empty_cache()
    assert mnn.allocator_stats()["bytes_cached"] == 0


def test_threads_setting():
    n = mnn.num_threads()
    try:
        mnn.set_num_threads(1)
        assert mnn.num_threads() == 1
        with pytest.raises(ValueError, match=r"^\[set_num_threads\]"):
            mnn.set_num_threads(-2)
    finally:
        mnn.set_num_threads(0)
    assert mnn.num_threads() == n


def test_blas_is_loaded_on_linux():
    import sys

    if sys.platform.startswith("linux"):
        pytest.importorskip("scipy_openblas32", reason="installed without dependencies (--no-deps)")
        assert mnn.blas_info().startswith("openblas"), mnn.blas_info()
