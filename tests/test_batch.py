"""ImageBatch and StateBatch for code that drives kernels itself."""

import numpy as np
import pytest

import metalnn as mnn


def test_image_batch_from_list_and_array():
    r = np.random.default_rng(0)
    images = [r.random((3, 5, 7), dtype=np.float32) for _ in range(4)]
    b = mnn.ImageBatch(images)
    assert len(b) == 4 and b.shape == (4, 3, 5, 7)
    np.testing.assert_array_equal(b[2], images[2])
    a = np.stack(images)
    b2 = mnn.ImageBatch(a)
    assert np.shares_memory(b2.array, a)
    assert isinstance(b2[1:3], mnn.ImageBatch) and len(b2[1:3]) == 2


def test_kernels_and_graphs_take_image_batches():
    r = np.random.default_rng(1)
    x = r.standard_normal((3, 2, 6, 6)).astype(np.float16)
    w = r.standard_normal((4, 2, 3, 3)).astype(np.float16)
    y = mnn.ops.conv2d_forward(mnn.ImageBatch(x), w, padding=1)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, mnn.ops.conv2d_forward(x, w, padding=1))
    src = mnn.ImageNode()
    node = mnn.NeuronReLUNode(src)
    x32 = x.astype(np.float32)
    out = mnn.Graph(node.result).run(mnn.ImageBatch(list(x32))).result
    np.testing.assert_array_equal(out, np.maximum(x32, 0))


def test_image_batch_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[ImageBatch\].*image 1"):
        mnn.ImageBatch([np.zeros((1, 2, 2), np.float32), np.zeros((1, 3, 2), np.float32)])
    with pytest.raises(ValueError, match=r"\[ImageBatch\]"):
        mnn.ImageBatch(np.zeros((2, 2), np.float32))
    with pytest.raises(TypeError, match=r"\[ImageBatch\].*float32"):
        mnn.ImageBatch(np.zeros((1, 1, 2, 2), np.int32))
    with pytest.raises(ValueError, match="at least one"):
        mnn.ImageBatch([])


def test_state_batch_drives_gradients_image_by_image():
    r = np.random.default_rng(2)
    x = r.standard_normal((3, 2, 4, 4)).astype(np.float32)
    outs, states = zip(*(mnn.ops.max_pool2d_forward(x[i : i + 1], 2) for i in range(3)))
    batch = mnn.StateBatch(states)
    assert len(batch) == 3 and batch.source_op == "max_pool2d_forward"
    dy = np.ones((1, 2, 2, 2), np.float32)
    per_image = np.concatenate([mnn.ops.max_pool2d_backward(dy, s) for s in batch])
    _, whole = mnn.ops.max_pool2d_forward(x, 2)
    np.testing.assert_array_equal(per_image, mnn.ops.max_pool2d_backward(np.ones((3, 2, 2, 2), np.float32), whole))


def test_state_batch_rejects_mixed_or_foreign_entries():
    _, s1 = mnn.ops.max_pool2d_forward(np.zeros((1, 1, 2, 2), np.float32), 2)
    _, s2 = mnn.ops.dropout_forward(np.zeros((1, 1, 2, 2), np.float32), 0.5, seed=1)
    with pytest.raises(ValueError, match="different ops"):
        mnn.StateBatch([s1, s2])
    with pytest.raises(TypeError, match="entry 1"):
        mnn.StateBatch([s1, "state"])
