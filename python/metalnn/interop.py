"""Moving weights in and out: PyTorch-style state dicts and safetensors files.

A graph's trainable layers are named by their labels; a state dict names each parameter
``<prefix>.weight`` / ``<prefix>.bias`` (PyTorch's convention), where ``prefix`` is the
layer's label or what ``names`` maps it to -- e.g. ``names={"conv1": "features.0"}`` to
match an ``nn.Sequential``. Convolution weights are (O, C/groups, kH, kW) in both
libraries; a fully connected layer's (O, C, kH, kW) weights appear as PyTorch's (O, F),
F = C*kH*kW in NCHW flattening order (what ``torch.flatten`` gives), and either shape loads.

safetensors files are read and written here from the format's specification (an 8-byte
little-endian header length, a JSON header, raw little-endian bytes): no pickle, no code
runs on load, and every offset is checked before any data is read.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["state_dict", "load_state_dict", "save_safetensors", "load_safetensors"]

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I32": np.int32, "I64": np.int64,
              "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_ST_NAMES = {np.dtype(v).str: k for k, v in _ST_DTYPES.items()}
_MAX_HEADER = 100 << 20


# -- state dicts ---------------------------------------------------------------------------
def _entries(graph, names: Mapping[str, str] | None):
    """(state-dict key, graph Parameter, node) for every weight and bias of the graph."""
    names = dict(names or {})
    out = []
    for node in graph.nodes:
        if getattr(node, "data_source", None) is None:
            continue
        params = graph._parameters(node)
        prefix = names.get(node.label, node.label)
        for suffix, p in zip(("weight", "bias"), params[:2]):
            if p is not None:
                out.append((f"{prefix}.{suffix}", p, node))
    unknown = set(names) - {n.label for n in graph.nodes}
    if unknown:
        raise ValueError(f"[state_dict] names maps labels that are not in the graph: {sorted(unknown)}")
    return out


def _host(value) -> np.ndarray:
    return value if isinstance(value, np.ndarray) else np.asarray(value.numpy())


def state_dict(graph, names: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """Copies of the graph's weights and biases, keyed ``<prefix>.weight`` / ``.bias``.

    Fully connected weights come out as (O, F), the shape ``torch.nn.Linear`` holds."""
    from .graph.nodes import FullyConnectedNode

    graph.synchronize()
    out = {}
    for key, p, node in _entries(graph, names):
        a = np.array(_host(p.value), copy=True)
        if isinstance(node, FullyConnectedNode) and key.endswith(".weight"):
            a = a.reshape(a.shape[0], -1)
        out[key] = a
    return out


def _to_numpy(value) -> np.ndarray:
    """numpy view/copy of an array-like; torch tensors may be on a GPU or require grad."""
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def _as_numpy(value, key: str) -> np.ndarray:
    a = _to_numpy(value)
    if a.dtype.kind != "f":
        raise TypeError(f"[load_state_dict] {key}: expected floating-point values, got dtype {a.dtype}")
    return a


def load_state_dict(graph, state: Mapping[str, Any], names: Mapping[str, str] | None = None,
                    strict: bool = True) -> list[str]:
    """Copies ``state`` (numpy arrays, torch tensors, anything array-like) into the graph's
    weights and biases. Every key and shape is checked before anything is written; with
    ``strict`` a missing or unexpected key is an error. Returns the keys it loaded.
    Optimizer state (momentum, Adam moments) is kept as it is."""
    if not isinstance(state, Mapping):
        raise TypeError(f"[load_state_dict] state must be a mapping of names to arrays, got {type(state).__name__}")
    entries = _entries(graph, names)
    expected = {k for k, _, _ in entries}
    if strict:
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(f"[load_state_dict] keys do not match the graph: missing {missing}, "
                             f"unexpected {unexpected}")
    writes = []
    for key, p, _ in entries:
        if key not in state:
            continue
        src = _as_numpy(state[key], key)
        shape = tuple(p.value.shape)
        if src.shape != shape:
            if src.size != int(np.prod(shape)) or not src.shape or src.shape[0] != shape[0]:
                raise ValueError(f"[load_state_dict] {key}: shape {src.shape} does not fit the graph's {shape}")
            src = src.reshape(shape)
        writes.append((p, src))
    graph.synchronize()
    for p, src in writes:
        if isinstance(p.value, np.ndarray):
            np.copyto(p.value, src, casting="unsafe")  # the graph trains this array in place
        else:
            from . import _core

            p.bind(_core.Tensor(src.astype(p.value.dtype), device=str(p.value.device)))
    return [k for k, _, _ in entries if k in state]


# -- safetensors ------------------------------------------------------------------------------
def save_safetensors(path, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> None:
    """Writes ``tensors`` (name -> array) to a safetensors file, atomically (temp file + rename)."""
    arrays = {}
    for name, value in tensors.items():
        a = _to_numpy(value)
        a = a if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(a.shape)  # keeps 0-d shapes
        if a.dtype.newbyteorder("<").str not in _ST_NAMES and a.dtype.str not in _ST_NAMES:
            raise TypeError(f"[save_safetensors] {name}: dtype {a.dtype} has no safetensors name")
        arrays[str(name)] = a.astype(a.dtype.newbyteorder("<"), copy=False)
    header: dict[str, Any] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("[save_safetensors] metadata must map str to str")
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name in sorted(arrays):
        a = arrays[name]
        header[name] = {"dtype": _ST_NAMES[a.dtype.str], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for name in sorted(arrays):
                f.write(arrays[name].tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_safetensors(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Reads a safetensors file: (name -> numpy array, metadata). Malformed files raise
    ValueError("[load_safetensors] ...") before any array is built."""
    def bad(msg):
        return ValueError(f"[load_safetensors] {os.fspath(path)}: {msg}")

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise bad("file too short")
        (n,) = struct.unpack("<Q", raw)
        if n > min(_MAX_HEADER, size - 8):
            raise bad(f"header length {n} does not fit the file ({size} bytes)")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise bad(f"header is not JSON: {e}") from None
        if not isinstance(header, dict):
            raise bad("header is not a JSON object")
        metadata = header.pop("__metadata__", {}) or {}
        data_size = size - 8 - n
        spans, specs = [], {}
        for name, spec in header.items():
            try:
                dtype = np.dtype(_ST_DTYPES[spec["dtype"]]).newbyteorder("<")
                shape = tuple(int(v) for v in spec["shape"])
                begin, end = (int(v) for v in spec["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise bad(f"entry {name!r} is malformed: {spec!r}") from None
            if any(v < 0 for v in shape) or not 0 <= begin <= end <= data_size:
                raise bad(f"entry {name!r} has offsets {begin}..{end} outside the data ({data_size} bytes)")
            if end - begin != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
                raise bad(f"entry {name!r}: {end - begin} bytes do not hold shape {shape} of {spec['dtype']}")
            spans.append((begin, end, name))
            specs[name] = (dtype, shape, begin, end)
        spans.sort()
        for (_, e0, a), (b1, _, b) in zip(spans, spans[1:]):
            if b1 < e0:
                raise bad(f"entries {a!r} and {b!r} overlap")
        data = f.read(data_size)
    arrays = {name: np.frombuffer(data, dtype, count=int(np.prod(shape, dtype=np.int64)), offset=begin)
              .reshape(shape).copy() for name, (dtype, shape, begin, end) in specs.items()}
    return arrays, {str(k): str(v) for k, v in metadata.items()}
