"""The docs' Python runs as written: every python block of docs/swift.md, in order."""

import os
import re

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blocks(text, language):
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.M | re.S)


def test_swift_page_pairs_each_snippet_with_python():
    text = open(os.path.join(ROOT, "docs", "swift.md")).read()
    pairs = re.findall(r'<div class="sbs" markdown>\n(.*?)</div>', text, re.S)
    assert len(pairs) >= 6
    for pair in pairs:
        assert len(_blocks(pair, "swift")) == 1 and len(_blocks(pair, "python")) == 1, pair[:200]
    for topic in ("MPSCNNConvolutionDataSource", "gradientFilter", "encodeBatch", "MPSNNOptimizerAdam",
                  "MPSNNGraph"):
        assert topic in text


def test_swift_page_python_runs(capsys):
    text = open(os.path.join(ROOT, "docs", "swift.md")).read()
    rng = np.random.default_rng(0)

    def next_training_batch():
        return rng.random((4, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 4).astype(np.int32)

    scope = {"next_training_batch": next_training_batch, "__name__": "docs_swift"}
    for block in _blocks(text, "python"):
        exec(compile(block, "docs/swift.md", "exec"), scope)
    assert len(scope["losses"]) == 3 and all(np.isfinite(scope["losses"]))
    assert scope["probs"].shape == (4, 10)
    assert scope["custom"].load() and scope["custom"].weights().shape == (32, 1, 5, 5)
    assert [n.kind for n in scope["derived"].nodes] == [n.kind for n in scope["training"].nodes]
    assert "parameters: 3,274,634" in capsys.readouterr().out  # model.summary() of the layer version
