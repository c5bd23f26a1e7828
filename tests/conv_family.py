"""Checks shared by tests/test_conv.py and tests/test_conv_transpose.py. A family is named by
its prefix, "conv2d" or "conv_transpose2d": the ops ``<prefix>_forward`` / ``_backward_input``
/ ``_backward_weight`` / ``_backward_bias``, and PyTorch's functional op of the same name."""

import numpy as np
import pytest

import metalnn as mnn

from helpers import assert_close, raises_named, randn, rng


def kernels(prefix):
    """(forward, backward_input, backward_weight, backward_bias) of the family."""
    return tuple(getattr(mnn.ops, f"{prefix}_{part}")
                 for part in ("forward", "backward_input", "backward_weight", "backward_bias"))


def check_pytorch_agrees(prefix, x, w, b, kw, dy_seed):
    """Forward and the three gradients against PyTorch autograd (skips without torch); the
    geometry keywords ``kw`` are spelt as PyTorch spells them."""
    torch = pytest.importorskip("torch")
    forward, backward_input, backward_weight, backward_bias = kernels(prefix)
    y = forward(x, w, b, **kw)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = getattr(torch.nn.functional, prefix)(xt, wt, bt, **kw)
    dy = randn(rng(dy_seed), *y.shape)
    yt.backward(torch.tensor(dy))
    assert_close(y, yt.detach().numpy(), atol=1e-4)
    assert_close(backward_input(dy, w, x.shape, **kw), xt.grad.numpy(), atol=1e-4)
    assert_close(backward_weight(dy, x, w.shape, **kw), wt.grad.numpy(), atol=1e-4)
    assert_close(backward_bias(dy), bt.grad.numpy(), atol=1e-4)


def check_nan_reaches_reference_outputs(prefix, ref, x, w, b, kw):
    """The forward's NaNs (from NaNs in ``x``) are exactly those of the reference, which has
    some but not only NaNs; returns the forward's output."""
    y = kernels(prefix)[0](x, w, b, **kw)
    expected = ref(x, w, b, **kw)
    assert np.isnan(expected).any() and not np.isnan(expected).all()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    return y


def check_tensor_in_tensor_out(prefix, ref, x, w, b, kw):
    """Tensors in give a Tensor out, with the reference's values."""
    y = kernels(prefix)[0](mnn.tensor(x), mnn.tensor(w), mnn.tensor(b), **kw)
    assert isinstance(y, mnn.Tensor)
    assert_close(y.numpy(), ref(x, w, b, **kw), atol=1e-5)


def check_bad_calls(arrays, calls):
    """Each (exception, op, argument, call) raises that exception naming op and argument, and
    none of them writes to ``arrays``."""
    before = [a.copy() for a in arrays]
    for exc, op, arg, call in calls:
        with raises_named(exc, op, arg):
            call()
    for a, a0 in zip(arrays, before):
        np.testing.assert_array_equal(a, a0)
