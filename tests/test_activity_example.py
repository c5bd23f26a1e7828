"""The activity classifier (conv -> LSTM -> dense) must train: a fixed batch, the .ts parser, and a
short run on BasicMotions whose test accuracy must rise."""

import importlib.util

import numpy as np
import pytest

from metalnn.datasets.basic_motions import parse_ts
from metalnn.examples import activity as example

needs_aeon = pytest.mark.skipif(importlib.util.find_spec("aeon") is None,
                                reason="BasicMotions ships in aeon: pip install --no-deps aeon==1.6.0")


def test_loss_decreases_on_a_fixed_batch():
    r = np.random.default_rng(0)
    x = r.standard_normal((8, 6, 100)).astype(np.float32)
    y = np.arange(8) % 4
    net = example.ActivityClassifier(hidden=24, conv_channels=8, seed=1, learning_rate=1e-2)
    losses = [net.train_step(x, y)[0] for _ in range(25)]
    assert losses[-1] < 0.3 * losses[0], losses
    assert np.all(net.predict(x) == y)


def test_parse_ts():
    text = """# comment
@problemName Toy
@univariate false
@dimensions 2
@equalLength true
@seriesLength 3
@classLabel true a b
@data
1,2,3:4,5,6:b
0.5,?,1:1,1,1:a
"""
    x, y, classes = parse_ts(text)
    assert classes == ["a", "b"] and y.tolist() == [1, 0] and x.shape == (2, 2, 3) and x.dtype == np.float32
    assert x[0, 1, 2] == 6 and np.isnan(x[1, 0, 1])
    with pytest.raises(ValueError, match="channels"):
        parse_ts(text.replace("1,2,3:4,5,6:b", "1,2,3:b"))
    with pytest.raises(ValueError, match="label"):
        parse_ts(text.replace(":b\n", ":c\n"))


@needs_aeon
def test_short_run_learns_activities(capsys, tmp_path):
    from metalnn.datasets.basic_motions import load_basic_motions

    x_train, y_train, x_test, y_test, classes = load_basic_motions()
    assert x_train.shape == (40, 6, 100) and x_test.shape == (40, 6, 100) and len(classes) == 4
    acc = example.main(["--epochs", "12", "--hidden", "64", "--quiet", "--plot", str(tmp_path / "curves.png")])
    # Chance is 25%; a dozen epochs of a smaller LSTM already separate most activities.
    assert acc >= 0.7, acc
    assert "test accuracy" in capsys.readouterr().out
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "curves.png").stat().st_size > 0


@needs_aeon
def test_short_graph_run_learns_activities(capsys):
    acc = example.main(["--epochs", "12", "--hidden", "64", "--quiet", "--plot", "", "--graph"])
    assert acc >= 0.7, acc
    assert "test accuracy" in capsys.readouterr().out
