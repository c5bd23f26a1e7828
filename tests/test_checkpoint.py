"""Checkpoints: round trip, atomic writes, and rejection of damaged or hostile files."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from metalnn.graph import checkpoint as ck
from metalnn.graph.checkpoint import load_arrays, parameter_key, save_arrays

from helpers import raises_named, rng


def sample_arrays() -> dict[str, np.ndarray]:
    r = rng(0)
    return {
        "conv1/weights": r.standard_normal((8, 3, 3, 3)).astype(np.float32),
        "conv1/biases": r.standard_normal(8).astype(np.float16),
        "fc/weights": r.standard_normal((10, 17)).astype(np.float16),
        "step": np.array(12345, dtype=np.int64),
        "labels": r.integers(-100, 100, size=(7,), dtype=np.int32),
        "bytes": r.integers(0, 255, size=(3, 5), dtype=np.uint8),
        "mask": r.random((4, 4)) > 0.5,
        "complex": (r.standard_normal(3) + 1j * r.standard_normal(3)).astype(np.complex64),
        "empty": np.zeros((0, 3), np.float32),
        "file": np.arange(3, dtype=np.float64),  # np.savez keyword names are fine too
    }


META = {
    "epoch": 3,
    "loss": 0.125,
    "name": "digits \u00e9\u4e2d",
    "lr": [0.1, 0.01],
    "nested": {"a": None},
}


def assert_same(loaded: dict, expected: dict) -> None:
    assert set(loaded) == set(expected)
    for k, a in expected.items():
        b = loaded[k]
        assert b.dtype == a.dtype, k
        assert b.shape == a.shape, k
        np.testing.assert_array_equal(b, a, err_msg=k)


def write_raw(path, members: dict, header: dict | None) -> None:
    """A zip of .npy members written by hand (for malformed files); header=None: no metadata."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, a in members.items():
            buf = io.BytesIO()
            if isinstance(a, bytes):
                buf.write(a)
            else:
                np.lib.format.write_array(buf, a, allow_pickle=a.dtype.hasobject)
            zf.writestr(name + ".npy", buf.getvalue())
        if header is not None:
            meta = np.frombuffer(json.dumps(header).encode(), np.uint8)
            buf = io.BytesIO()
            np.lib.format.write_array(buf, meta)
            zf.writestr(ck.METADATA_KEY + ".npy", buf.getvalue())


def good_header(arrays: dict, **override) -> dict:
    h = {"format": ck.FORMAT, "version": ck.VERSION, "sha256": ck._checksum(arrays), "user": {}}
    h.update(override)
    return h


# ---------------------------------------------------------------------------------------
# round trip


def test_round_trip(tmp_path):
    arrays = sample_arrays()
    path = tmp_path / "model.ckpt"
    save_arrays(path, arrays, META)
    loaded, meta = load_arrays(path)
    assert_same(loaded, arrays)
    assert meta == META
    for a in loaded.values():
        assert a.flags.writeable and a.flags.c_contiguous
    assert os.listdir(tmp_path) == ["model.ckpt"]


def test_round_trip_layouts_and_byte_order(tmp_path):
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    arrays = {
        "transposed": base.T,  # Fortran order
        "strided": base[:, ::2],  # neither order
        "big_endian": base.astype(">f4"),
        "scalar": np.array(2.5, np.float32),
        "numpy_scalar": np.int16(-7),
    }
    save_arrays(str(tmp_path / "x.npz"), arrays)
    arrays["numpy_scalar"] = np.array(-7, np.int16)  # comes back as a 0-d array
    loaded, meta = load_arrays(str(tmp_path / "x.npz"))
    assert_same(loaded, arrays)
    assert meta == {}


def test_file_is_a_plain_npz(tmp_path):
    arrays = sample_arrays()
    save_arrays(tmp_path / "a.npz", arrays, META)
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:
        assert set(z.files) == set(arrays) | {ck.METADATA_KEY}
        np.testing.assert_array_equal(z["conv1/weights"], arrays["conv1/weights"])
        header = json.loads(z[ck.METADATA_KEY].tobytes().decode("utf-8"))
    assert header["format"] == "metalnn-checkpoint" and header["version"] == 1
    assert header["user"] == META and len(header["sha256"]) == 64


def test_same_content_gives_identical_bytes(tmp_path):
    save_arrays(tmp_path / "a", sample_arrays(), META)
    save_arrays(tmp_path / "b", sample_arrays(), META)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_overwrite_replaces(tmp_path):
    path = tmp_path / "c.npz"
    save_arrays(path, {"w": np.zeros(3, np.float32)}, {"v": 1})
    save_arrays(path, {"w": np.ones(4, np.float32)}, {"v": 2})
    loaded, meta = load_arrays(path)
    np.testing.assert_array_equal(loaded["w"], np.ones(4, np.float32))
    assert meta == {"v": 2} and os.listdir(tmp_path) == ["c.npz"]


def test_parameter_key():
    assert parameter_key("conv1", "weights") == "conv1/weights"


# ---------------------------------------------------------------------------------------
# atomicity


def test_failed_replace_keeps_previous_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    old = {"w": np.arange(5, dtype=np.float32)}
    save_arrays(path, old, {"v": 1})

    def boom(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        save_arrays(path, {"w": np.zeros(9, np.float32)}, {"v": 2})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.npz"]
    loaded, meta = load_arrays(path)
    assert_same(loaded, old)
    assert meta == {"v": 1}


def test_failure_mid_write_keeps_previous_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    old = sample_arrays()
    save_arrays(path, old, META)
    real_write = np.lib.format.write_array
    calls = []

    def write_then_fail(fp, array, *a, **kw):
        calls.append(1)
        if len(calls) == 3:  # two members already written into the temp file
            raise RuntimeError("killed while writing")
        return real_write(fp, array, *a, **kw)

    monkeypatch.setattr(np.lib.format, "write_array", write_then_fail)
    with pytest.raises(RuntimeError, match="killed while writing"):
        save_arrays(path, {k: v + 1 for k, v in old.items() if v.dtype.kind == "f"}, {"new": True})
    monkeypatch.undo()
    assert len(calls) == 3
    assert os.listdir(tmp_path) == ["model.npz"]
    loaded, meta = load_arrays(path)
    assert_same(loaded, old)
    assert meta == META


def test_failure_without_previous_file_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda s, d: (_ for _ in ()).throw(OSError("no")))
    with pytest.raises(OSError):
        save_arrays(tmp_path / "new.npz", {"w": np.zeros(2, np.float32)})
    assert os.listdir(tmp_path) == []


def test_file_and_folder_are_fsynced(tmp_path, monkeypatch):
    real = os.fsync
    synced = []

    def spy(fd):
        synced.append(
            os.path.realpath(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else fd
        )
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    save_arrays(tmp_path / "m.npz", {"w": np.zeros(2, np.float32)})
    assert len(synced) >= 2
    if os.path.exists("/proc/self/fd"):
        assert any(p.endswith(".tmp") for p in synced)  # the data, before the rename
        assert str(os.path.realpath(tmp_path)) in synced  # the folder, after it


# ---------------------------------------------------------------------------------------
# damaged and hostile files: each a clear ValueError


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "good.npz"
    arrays = {
        "w": rng(5).standard_normal((6, 5)).astype(np.float32),
        "n": np.arange(4, dtype=np.int16),
    }
    save_arrays(path, arrays, {"epoch": 1})
    return path, arrays


@pytest.mark.parametrize("keep", [0, 3, 10, 100, -200, -22, -1])
def test_truncated_file(saved, tmp_path, keep):
    path, _ = saved
    data = path.read_bytes()
    bad = tmp_path / "cut.npz"
    bad.write_bytes(data[:keep] if keep >= 0 else data[: len(data) + keep])
    with pytest.raises(ValueError, match=r"^\[checkpoint\] .*(truncated|not a metalnn checkpoint)"):
        load_arrays(bad)


def test_flipped_byte_in_array_data(saved, tmp_path):
    path, arrays = saved
    data = bytearray(path.read_bytes())
    at = data.find(arrays["w"].tobytes())
    assert at > 0
    data[at + 37] ^= 0x01
    bad = tmp_path / "flip.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"^\[checkpoint\] .*corrupt"):
        load_arrays(bad)


def test_every_flipped_byte_is_rejected_or_harmless(saved, tmp_path):
    """Flipping any single byte either raises ValueError or changes nothing that is loaded
    (e.g. a zip timestamp)."""
    path, arrays = saved
    data = path.read_bytes()
    bad = tmp_path / "flip.npz"
    for i in range(len(data)):
        b = bytearray(data)
        b[i] ^= 0xFF
        bad.write_bytes(bytes(b))
        try:
            loaded, meta = load_arrays(bad)
        except ValueError as e:
            assert str(e).startswith("[checkpoint]"), (i, e)
            continue
        assert_same(loaded, arrays)
        assert meta == {"epoch": 1}


def test_checksum_mismatch(tmp_path):
    arrays = {"w": np.ones(3, np.float32)}
    write_raw(tmp_path / "c.npz", arrays, good_header({"w": np.zeros(3, np.float32)}))
    with pytest.raises(ValueError, match=r"^\[checkpoint\] .*checksum mismatch"):
        load_arrays(tmp_path / "c.npz")
    # Renaming an array also breaks the checksum (names are hashed).
    write_raw(tmp_path / "d.npz", {"v": arrays["w"]}, good_header(arrays))
    with pytest.raises(ValueError, match=r"checksum mismatch"):
        load_arrays(tmp_path / "d.npz")


@pytest.mark.parametrize("version", [2, 0, "1", None, 1.0])
def test_wrong_version(tmp_path, version):
    arrays = {"w": np.ones(3, np.float32)}
    write_raw(tmp_path / "v.npz", arrays, good_header(arrays, version=version))
    with pytest.raises(ValueError, match=r"^\[checkpoint\] .*version"):
        load_arrays(tmp_path / "v.npz")


def test_wrong_format(tmp_path):
    arrays = {"w": np.ones(3, np.float32)}
    write_raw(tmp_path / "f.npz", arrays, good_header(arrays, format="other-format"))
    with pytest.raises(ValueError, match=r"^\[checkpoint\] .*format"):
        load_arrays(tmp_path / "f.npz")


def test_missing_metadata(tmp_path):
    np.savez(tmp_path / "plain.npz", w=np.ones(3, np.float32))  # a plain npz, no metadata
    with pytest.raises(ValueError, match=r"^\[checkpoint\] .*missing __metadata__"):
        load_arrays(tmp_path / "plain.npz")
    arrays = {"w": np.ones(3, np.float32)}
    for field in ("user", "sha256"):
        h = good_header(arrays)
        del h[field]
        write_raw(tmp_path / f"no_{field}.npz", arrays, h)
        with pytest.raises(ValueError, match=rf"^\[checkpoint\] .*'{field}'"):
            load_arrays(tmp_path / f"no_{field}.npz")


def test_metadata_not_json(tmp_path):
    with zipfile.ZipFile(tmp_path / "j.npz", "w") as zf:
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.frombuffer(b"{not json", np.uint8))
        zf.writestr("__metadata__.npy", buf.getvalue())
    with pytest.raises(ValueError, match=r"^\[checkpoint\] .*JSON"):
        load_arrays(tmp_path / "j.npz")


def test_not_a_zip(tmp_path):
    np.save(tmp_path / "arr.npy", np.ones(3))
    (tmp_path / "text.npz").write_text("hello")
    for name in ("arr.npy", "text.npz"):
        with pytest.raises(ValueError, match=r"^\[checkpoint\] .*not a metalnn checkpoint"):
            load_arrays(tmp_path / name)


def test_unexpected_member(tmp_path):
    arrays = {"w": np.ones(3, np.float32)}
    write_raw(tmp_path / "m.npz", arrays, good_header(arrays))
    with zipfile.ZipFile(tmp_path / "m.npz", "a") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(ValueError, match=r"^\[checkpoint\] .*unexpected member 'readme.txt'"):
        load_arrays(tmp_path / "m.npz")


def test_header_claiming_huge_shape_is_rejected_before_allocating(tmp_path):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (10**13,)}
    )
    buf.write(b"\0" * 16)
    write_raw(tmp_path / "huge.npz", {"w": buf.getvalue()}, good_header({}))
    with pytest.raises(ValueError, match=r"^\[checkpoint\] .*'w'.*bytes"):
        load_arrays(tmp_path / "huge.npz")


def test_foreign_fortran_order_member_loads(tmp_path):
    a = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    write_raw(tmp_path / "f.npz", {"a": a}, good_header({"a": a}))
    loaded, _ = load_arrays(tmp_path / "f.npz")
    np.testing.assert_array_equal(loaded["a"], a)


class Evil:
    """Unpickling this would create a folder: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_object_array_is_rejected_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = np.empty(2, dtype=object)
    evil[0] = Evil(str(marker))
    evil[1] = 1
    # Even with a valid-looking header and a matching member list.
    write_raw(
        tmp_path / "evil.npz",
        {"w": np.ones(2, np.float32), "evil": evil},
        good_header({"w": np.ones(2, np.float32)}),
    )
    with pytest.raises(ValueError, match=r"^\[checkpoint\] .*'evil'.*pickle"):
        load_arrays(tmp_path / "evil.npz")
    assert not marker.exists()

    # A raw pickle renamed to .npz, and a pickled .npy, are not checkpoints at all.
    (tmp_path / "raw.npz").write_bytes(pickle.dumps({"w": Evil(str(marker))}))
    np.save(tmp_path / "obj.npy", evil, allow_pickle=True)
    for name in ("raw.npz", "obj.npy"):
        with pytest.raises(ValueError, match=r"^\[checkpoint\] .*not a metalnn checkpoint"):
            load_arrays(tmp_path / name)
    assert not marker.exists()


def test_pickled_metadata_member_is_rejected(tmp_path):
    marker = tmp_path / "pwned"
    evil = np.empty(1, dtype=object)
    evil[0] = Evil(str(marker))
    write_raw(tmp_path / "m.npz", {"__metadata__": evil}, None)
    with pytest.raises(ValueError, match=r"^\[checkpoint\] .*pickle"):
        load_arrays(tmp_path / "m.npz")
    assert not marker.exists()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^\[checkpoint\]"):
        load_arrays(tmp_path / "nope.npz")


# ---------------------------------------------------------------------------------------
# bad arguments to save: nothing is written


@pytest.mark.parametrize(
    "arrays,metadata,exc,arg",
    [
        ({"o": np.array([{"a": 1}], dtype=object)}, None, TypeError, "arrays['o']"),
        ({"s": np.zeros(2, dtype=[("x", "<f4")])}, None, TypeError, "arrays['s']"),
        ({"u": np.array(["text"])}, None, TypeError, "arrays['u']"),
        ({"l": [1.0, 2.0]}, None, TypeError, "arrays['l']"),
        ({3: np.zeros(2)}, None, TypeError, "name"),
        ({"": np.zeros(2)}, None, ValueError, "name"),
        ({"__metadata__": np.zeros(2)}, None, ValueError, "__metadata__"),
        ([("w", np.zeros(2))], None, TypeError, "arrays"),
        ({"w": np.zeros(2)}, {"s": {1, 2}}, TypeError, "metadata"),
        ({"w": np.zeros(2)}, [1, 2], TypeError, "metadata"),
    ],
)
def test_bad_save_arguments(tmp_path, arrays, metadata, exc, arg):
    with raises_named(exc, "checkpoint", arg):
        save_arrays(tmp_path / "x.npz", arrays, metadata)
    assert os.listdir(tmp_path) == []


def test_bad_paths(tmp_path):
    with raises_named(TypeError, "checkpoint", "path"):
        save_arrays(3, {"w": np.zeros(2)})
    with raises_named(TypeError, "checkpoint", "path"):
        load_arrays(None)
    with pytest.raises(FileNotFoundError, match=r"^\[checkpoint\] folder"):
        save_arrays(tmp_path / "missing" / "x.npz", {"w": np.zeros(2)})
