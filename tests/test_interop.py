"""Weights interop (issue 10): PyTorch state dicts both ways and safetensors files."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn.examples.digit_graph import digit_network
from metalnn.interop import load_safetensors, save_safetensors

TORCH_NAMES = {"conv1": "0", "conv2": "3", "fc1": "7", "fc2": "10"}  # nn.Sequential indices


def _torch_digit_net(torch, width=0.25):
    nn = torch.nn
    c1, c2, f1 = int(32 * width), int(64 * width), int(1024 * width)
    return nn.Sequential(nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(c2 * 49, f1), nn.ReLU(), nn.Dropout(0.5), nn.Linear(f1, 10))


def _data(n=16, seed=0):
    r = np.random.default_rng(seed)
    return r.standard_normal((n, 1, 28, 28)).astype(np.float32), r.integers(0, 10, n).astype(np.int32)


def _trained_metalnn(steps=3):
    net = digit_network(mnn.Adam(learning_rate=1e-3), width=0.25)
    graph = net.training_graph()
    x, y = _data()
    for _ in range(steps):
        graph.encode_batch(x, y)
    graph.synchronize()
    return net, graph


def test_metalnn_weights_give_pytorch_the_same_predictions():
    torch = pytest.importorskip("torch")
    net, graph = _trained_metalnn()
    model = _torch_digit_net(torch).eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in graph.state_dict(TORCH_NAMES).items()})
    x, _ = _data(8, seed=1)
    ours = net.inference_graph().run(x).wait().result.reshape(8, 10)
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    assert np.array_equal(ours.argmax(1), theirs.argmax(1))


def test_pytorch_weights_give_metalnn_the_same_predictions():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = _torch_digit_net(torch).eval()
    net = digit_network(None, width=0.25)
    graph = net.inference_graph()
    loaded = graph.load_state_dict(model.state_dict(), names=TORCH_NAMES)
    assert len(loaded) == 8
    x, _ = _data(8, seed=2)
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).numpy()
    ours = graph.run(x).wait().result.reshape(8, 10)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_load_checks_everything_before_writing():
    net, graph = _trained_metalnn(1)
    before = {k: v.copy() for k, v in graph.parameters().items()}
    state = graph.state_dict()
    bad = {k: v + 1 for k, v in state.items()}
    bad["fc2.weight"] = np.zeros((3, 3), np.float32)  # wrong shape, found after the good keys
    with pytest.raises(ValueError, match=r"\[load_state_dict\] fc2.weight: shape"):
        graph.load_state_dict(bad)
    with pytest.raises(ValueError, match="missing"):
        graph.load_state_dict({k: v for k, v in state.items() if k != "conv1.bias"})
    with pytest.raises(ValueError, match="unexpected"):
        graph.load_state_dict(state | {"extra.weight": np.zeros(2, np.float32)})
    with pytest.raises(TypeError, match="floating-point"):
        graph.load_state_dict(state | {"conv1.bias": state["conv1.bias"].astype(np.int32)})
    with pytest.raises(ValueError, match="names maps labels"):
        graph.state_dict({"nope": "x"})
    after = graph.parameters()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    # Not strict: a partial dict loads what it names.
    assert graph.load_state_dict({"conv1.bias": state["conv1.bias"] + 1}, strict=False) == ["conv1.bias"]
    np.testing.assert_array_equal(graph.parameters()["conv1.biases"], state["conv1.bias"] + 1)


def test_training_continues_from_loaded_weights():
    net, graph = _trained_metalnn(2)
    state = graph.state_dict()
    net2 = digit_network(mnn.Adam(learning_rate=1e-3), width=0.25, seed=5)
    g2 = net2.training_graph()
    x, y = _data()
    g2.encode_batch(x, y).wait()      # compile
    g2.load_state_dict(state)
    for k, v in g2.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    assert np.isfinite(g2.encode_batch(x, y).wait().loss)


# -- safetensors --------------------------------------------------------------------------
def _arrays():
    r = np.random.default_rng(0)
    return {"a.weight": r.standard_normal((3, 4, 5)).astype(np.float32), "a.bias": np.arange(3, dtype=np.float16),
            "steps": np.array([7], np.int64), "empty": np.zeros((0, 3), np.float32), "flag": np.array(True)}


def test_safetensors_round_trip(tmp_path):
    path = tmp_path / "w.safetensors"
    save_safetensors(path, _arrays(), {"epoch": "3"})
    got, meta = load_safetensors(path)
    assert meta == {"epoch": "3"} and set(got) == set(_arrays())
    for k, v in _arrays().items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        np.testing.assert_array_equal(got[k], v)


def test_safetensors_interoperates_with_the_reference_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    arrays = {k: v for k, v in _arrays().items() if k != "flag"}
    save_safetensors(ours, arrays)
    for k, v in st.load_file(str(ours)).items():
        np.testing.assert_array_equal(v, arrays[k])
    st.save_file(arrays, str(theirs), metadata={"by": "safetensors"})
    got, meta = load_safetensors(theirs)
    assert meta == {"by": "safetensors"}
    for k, v in arrays.items():
        np.testing.assert_array_equal(got[k], v)


def test_graph_weights_through_safetensors(tmp_path):
    net, graph = _trained_metalnn(1)
    save_safetensors(tmp_path / "m.safetensors", graph.state_dict())
    fresh = digit_network(None, width=0.25, seed=9).inference_graph()
    fresh.load_state_dict(load_safetensors(tmp_path / "m.safetensors")[0])
    x, _ = _data(4)
    np.testing.assert_array_equal(fresh.run(x).wait().result, net.inference_graph().run(x).wait().result)


@pytest.mark.parametrize("damage", ["truncate", "header_len", "offsets", "json", "overlap"])
def test_malformed_safetensors_are_rejected(tmp_path, damage):
    import json
    import struct
    path = tmp_path / "w.safetensors"
    save_safetensors(path, {"x": np.arange(6, dtype=np.float32), "y": np.arange(4, dtype=np.float32)})
    raw = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    if damage == "truncate":
        raw = raw[:-5]
    elif damage == "header_len":
        raw[:8] = struct.pack("<Q", len(raw) * 2)
    elif damage in ("offsets", "overlap"):
        header["x"]["data_offsets"] = [0, 400] if damage == "offsets" else header["x"]["data_offsets"]
        if damage == "overlap":
            header["y"]["data_offsets"] = [8, 24]
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        raw = bytearray(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    else:
        raw[8:8 + n] = b"{" * n
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"\[load_safetensors\]"):
        load_safetensors(path)
