"""graph.summary(), graph.to_dot() / render(), and training-curve plots."""

import re
import shutil

import numpy as np
import pytest

import metalnn as mnn
from metalnn.examples.digit_graph import digit_network
from metalnn.graph import inspect


def _net():
    return digit_network(mnn.Adam(1e-3), width=0.25)  # channels 8, 16, 256


def test_summary_of_the_inference_graph():
    net = _net()
    graph = net.inference_graph(device="cpu")
    text = graph.summary(input_shape=(4, 1, 28, 28))
    lines = text.splitlines()
    rows = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in
            {"conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc1", "relu3", "dropout", "fc2"}}
    assert len(rows) == 10
    assert "ConvolutionNode" in rows["conv1"] and "(4, 8, 28, 28)" in rows["conv1"]
    assert "(4, 16, 7, 7)" in rows["pool2"] and "(4, 10)" in rows["fc2"]
    # Parameters: conv1 8*1*5*5 + 8, fc1 256*16*7*7 + 256.
    assert re.search(r"\b208\b", rows["conv1"]) and "200,960" in rows["fc1"]
    total = 208 + (16 * 8 * 25 + 16) + 200960 + (10 * 256 + 10)
    assert f"parameters: {total:,}" in text
    # The ReLUs after the layers run in the layers' epilogues (fused): no memory of their own.
    assert "(fused)" in rows["relu1"] and "KiB" in rows["conv1"]
    plan = graph.memory_plan()
    assert f"peak {inspect.format_bytes(plan['peak_bytes'])}" in text
    rows_, plan_ = inspect.summary_rows(graph, (4, 1, 28, 28))
    assert sum(r["parameters"] for r in rows_) == total
    assert max(r["memory"] or 0 for r in rows_) == plan_["peak_bytes"]
    assert rows_[0]["memory"] == plan_["steps"][0][2]


def test_summary_of_a_training_graph_and_without_shapes():
    net = _net()
    train = net.training_graph(device="cpu")
    assert "?" in train.summary() and "parameters:" in train.summary()  # nothing ran yet: shapes unknown
    text = train.summary(input_shape=(2, 1, 28, 28))
    assert "ConvolutionNodeGradient" in text and "SoftmaxCrossEntropyLossNode" in text
    assert "mode training" in text and "planned memory" in text
    # After a batch the summary uses its shapes.
    r = np.random.default_rng(0)
    train.run(r.random((3, 1, 28, 28), dtype=np.float32), labels=r.integers(0, 10, 3).astype(np.int32))
    assert "(3, 8, 28, 28)" in train.summary()


def test_dot_description():
    net = _net()
    graph = net.inference_graph(device="cpu")
    dot = graph.to_dot(input_shape=(1, 1, 28, 28))
    assert dot.startswith('digraph "metalnn" {') and dot.rstrip().endswith("}")
    boxes = re.findall(r"^\s*n\d+ \[shape=box", dot, re.M)
    assert len(boxes) == len(graph.nodes) == 10
    edges = re.findall(r"^\s*(\w+) -> (\w+)", dot, re.M)
    assert len(edges) == 10 + 1  # a chain from the source, plus the result
    assert "(1, 16, 7, 7)" in dot and '"conv1\\nConvolutionNode' in dot
    train = net.training_graph(device="cpu").to_dot()
    assert train.count("style=dashed") == 10  # each gradient node reads its forward node's state
    assert "#fde2e4" in train


def test_render_with_and_without_graphviz(tmp_path, monkeypatch):
    graph = _net().inference_graph(device="cpu")
    assert graph.render(tmp_path / "g.dot") == str(tmp_path / "g.dot")
    assert (tmp_path / "g.dot").read_text().startswith("digraph")
    if shutil.which("dot"):
        out = graph.render(tmp_path / "g.png", input_shape=(1, 1, 28, 28))
        assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        svg = graph.render(tmp_path / "g.svg")
        assert "<svg" in open(svg).read()
    monkeypatch.setattr(inspect.shutil, "which", lambda name: None)
    with pytest.warns(RuntimeWarning, match="Graphviz 'dot' is not installed"):
        assert graph.render(tmp_path / "h.png") is None
    assert (tmp_path / "h.png.dot").exists() and not (tmp_path / "h.png").exists()


def test_plot_history(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    history = {"loss": [1.0, 0.6, 0.4], "accuracy": [0.5, 0.7, 0.8], "val_loss": [1.1, 0.7, 0.5],
               "val_accuracy": [0.4, 0.6, 0.75]}
    fig = inspect.plot_history(history, tmp_path / "curves.png", title="digits")
    assert len(fig.axes) == 2
    assert [line.get_label() for line in fig.axes[0].lines] == ["loss", "val_loss"]
    np.testing.assert_array_equal(fig.axes[1].lines[1].get_ydata(), history["val_accuracy"])
    assert open(tmp_path / "curves.png", "rb").read(4) == b"\x89PNG"
    with pytest.raises(ValueError, match=r"\[plot_history\] history is empty"):
        inspect.plot_history({})
