"""DLPack exchange (issue 10): zero-copy in both directions with numpy, PyTorch and JAX."""

import gc

import numpy as np
import pytest

import metalnn as mnn

DTYPES = [np.float32, np.float16, np.int32, np.int64, np.uint8]


def _array(dtype, shape=(3, 5, 7), seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 10).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_to_metalnn_shares_memory(dtype):
    a = _array(dtype)
    t = mnn.from_dlpack(a)
    assert isinstance(t, mnn.Tensor) and t.shape == a.shape and t.dtype == np.dtype(dtype).name
    assert t.device == mnn.Device("cpu")
    a[1, 2, 3] = 42
    assert t.numpy()[1, 2, 3] == 42  # the same memory, not a copy


@pytest.mark.parametrize("dtype", DTYPES)
def test_metalnn_to_numpy_shares_memory_and_outlives_the_tensor(dtype):
    t = mnn.Tensor(_array(dtype))
    view = t.numpy()
    a = np.from_dlpack(t)
    assert a.dtype == dtype and a.shape == t.shape
    np.testing.assert_array_equal(a, view)
    view[0, 0, 0] = 7
    assert a[0, 0, 0] == 7
    expected = a.copy()
    del t, view
    gc.collect()
    np.testing.assert_array_equal(a, expected)  # the capsule kept the buffer alive


def test_kernels_run_on_imported_memory():
    x = _array(np.float32)
    y = mnn.ops.neuron_forward(mnn.from_dlpack(x), "relu")
    np.testing.assert_array_equal(np.from_dlpack(y), np.maximum(x, 0))


def test_device_tuple():
    assert mnn.Tensor(np.zeros(3, np.float32)).__dlpack_device__() == (1, 0)


def test_non_contiguous_is_refused():
    a = _array(np.float32)[:, ::2]
    with pytest.raises((ValueError, TypeError), match=r"\[from_dlpack\]|contiguous"):
        mnn.from_dlpack(a)


def test_unsupported_dtype_and_object():
    with pytest.raises(TypeError, match=r"\[from_dlpack\] unsupported dtype"):
        mnn.from_dlpack(np.zeros(3, np.float64))
    with pytest.raises(TypeError, match=r"\[from_dlpack\] expected an object with __dlpack__"):
        mnn.from_dlpack([1.0, 2.0])


def test_a_capsule_is_consumed_once():
    cap = mnn.Tensor(np.arange(4, dtype=np.float32)).__dlpack__()
    t = mnn.from_dlpack(cap)
    assert t.numpy().tolist() == [0, 1, 2, 3]
    with pytest.raises(TypeError, match="unconsumed"):
        mnn.from_dlpack(cap)


def test_copy_true_is_refused():
    with pytest.raises(ValueError, match=r"\[__dlpack__\] copy=True"):
        mnn.Tensor(np.zeros(2, np.float32)).__dlpack__(copy=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int64])
def test_torch_round_trip(dtype):
    torch = pytest.importorskip("torch")
    a = torch.from_numpy(_array(dtype))
    t = mnn.from_dlpack(a)
    a[0, 0, 0] = 3
    assert t.numpy()[0, 0, 0] == 3
    back = torch.from_dlpack(t)
    back[2, 4, 6] = 5
    assert a[2, 4, 6] == 5  # one memory through both hops
    assert back.dtype == a.dtype and tuple(back.shape) == tuple(a.shape)


def test_jax_round_trip():
    jnp = pytest.importorskip("jax.numpy")
    x = jnp.arange(12, dtype=jnp.float32).reshape(3, 4)
    t = mnn.from_dlpack(x)
    np.testing.assert_array_equal(t.numpy(), np.arange(12, dtype=np.float32).reshape(3, 4))
    import jax.dlpack
    np.testing.assert_array_equal(np.asarray(jax.dlpack.from_dlpack(t)), t.numpy())
