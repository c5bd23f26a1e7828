"""Checkpoints: atomic, non-executable save/load of named arrays plus JSON metadata.

MPS leaves persistence to the app (``MPSCNNConvolutionDataSource`` just hands weights over;
``NSSecureCoding`` archives the kernels). metalnn stores a checkpoint as a ``.npz`` archive --
the layout ``np.savez`` writes (an uncompressed zip of ``<name>.npy`` members), readable
with ``np.load(path, allow_pickle=False)`` -- holding

* every array under its name (bool, integer, float or complex dtypes only: nothing that
  needs pickle), and
* ``__metadata__``: a uint8 array of UTF-8 JSON::

      {"format": "metalnn-checkpoint", "version": 1, "sha256": <hex>, "user": <metadata>}

  where ``sha256`` hashes, for every array in sorted name order, a length-prefixed JSON
  header ``[name, dtype.str, shape]`` followed by the length-prefixed C-order bytes.

Writing is atomic: the archive goes to a temporary file in the destination folder, is
flushed and fsync'ed, then ``os.replace``'d over the destination, and the folder is fsync'ed;
a failure at any point removes the temporary file and leaves a previous checkpoint intact.

Loading never executes code: members are parsed with numpy's ``.npy`` header reader (a
literal parser) and read as raw bytes; object dtypes are refused before any data is read,
and pickle is never used. A truncated or corrupt file, a wrong format or version, missing
metadata or a checksum mismatch raise ``ValueError("[checkpoint] ...")``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import secrets
import struct
import zipfile
from collections.abc import Mapping
from typing import Any, BinaryIO, Union

import numpy as np

__all__ = ["FORMAT", "VERSION", "METADATA_KEY", "save_arrays", "load_arrays", "parameter_key"]

FORMAT = "metalnn-checkpoint"
VERSION = 1
METADATA_KEY = "__metadata__"

PathLike = Union[str, "os.PathLike[str]"]

# Only plain numeric/bool data: these never need pickle to save or load.
_ALLOWED_KINDS = "biufc"
_ZIP_MAGIC = b"PK\x03\x04"
# Fixed member timestamps make identical checkpoints byte-identical.
_DATE_TIME = (1980, 1, 1, 0, 0, 0)


def parameter_key(label: str, name: str) -> str:
    """Array name of one layer's parameter or optimizer state in a checkpoint:
    ``parameter_key("conv1", "weights") == "conv1/weights"`` (also "biases", "m", "v", ...)."""
    return f"{label}/{name}"


def _c_order(a: np.ndarray) -> np.ndarray:
    # np.ascontiguousarray turns 0-d arrays into 1-d ones; keep the shape.
    return a if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(a.shape)


def _checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over names, dtypes, shapes and bytes of every array, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = _c_order(arrays[name])
        header = json.dumps([name, a.dtype.str, list(a.shape)], separators=(",", ":")).encode(
            "utf-8"
        )
        h.update(struct.pack("<Q", len(header)))
        h.update(header)
        h.update(struct.pack("<Q", a.nbytes))
        h.update(a.reshape(-1).view(np.uint8).data)  # the bytes, as a memoryview
    return h.hexdigest()


def _check_dtype(dtype: np.dtype) -> bool:
    return dtype.kind in _ALLOWED_KINDS and dtype.fields is None and dtype.subdtype is None


def _validate_arrays(arrays: Any) -> dict[str, np.ndarray]:
    if not isinstance(arrays, Mapping):
        raise TypeError(
            "[checkpoint] arrays must be a dict of name -> numpy array, "
            f"got {type(arrays).__name__}"
        )
    out: dict[str, np.ndarray] = {}
    for name, a in arrays.items():
        if not isinstance(name, str):
            raise TypeError(f"[checkpoint] arrays: every name must be a str, got {name!r}")
        if not name or "\x00" in name or name.startswith("/"):
            raise ValueError(
                f"[checkpoint] arrays: invalid name {name!r} (empty, NUL or leading '/')"
            )
        if name == METADATA_KEY:
            raise ValueError(
                f"[checkpoint] arrays: the name {METADATA_KEY!r} is reserved for the metadata"
            )
        if isinstance(a, np.generic):  # numpy scalars save as 0-d arrays
            a = np.asarray(a)
        if not isinstance(a, np.ndarray):
            raise TypeError(
                f"[checkpoint] arrays[{name!r}] must be a numpy array, got {type(a).__name__}"
            )
        if not _check_dtype(a.dtype):
            raise TypeError(
                f"[checkpoint] arrays[{name!r}] has dtype {a.dtype}; only bool, integer, float and "
                "complex arrays can be saved (objects would need pickle)"
            )
        out[name] = a
    return out


def _write_npz(f: BinaryIO, arrays: Mapping[str, np.ndarray], metadata: np.ndarray) -> None:
    """The np.savez layout, written member by member with pickling disabled."""
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, a in [*arrays.items(), (METADATA_KEY, metadata)]:
            info = zipfile.ZipInfo(name + ".npy", date_time=_DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED
            with zf.open(info, mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, _c_order(a), allow_pickle=False)


def _fsync_folder(folder: str) -> None:
    # Makes the rename durable; folders cannot be opened this way on Windows.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_arrays(
    path: PathLike, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any] | None = None
) -> None:
    """Atomically write ``arrays`` (name -> numpy array) and JSON ``metadata`` to ``path``.

    ``metadata`` must be JSON-serialisable (tuples come back as lists). The file is written to
    a temporary sibling, fsync'ed, renamed over ``path`` with ``os.replace`` and the folder is
    fsync'ed, so a reader sees either the old or the new checkpoint, never a mix; if anything
    fails, the temporary file is removed and the exception propagates.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"[checkpoint] path must be a str or os.PathLike, got {type(path).__name__}"
        )
    path = os.fspath(path)
    checked = _validate_arrays(arrays)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"[checkpoint] metadata must be a dict, got {type(metadata).__name__}")
    header = {
        "format": FORMAT,
        "version": VERSION,
        "sha256": _checksum(checked),
        "user": dict(metadata),
    }
    try:
        text = json.dumps(header, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"[checkpoint] metadata is not JSON-serialisable: {e}") from None
    meta = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"[checkpoint] folder {folder!r} does not exist")
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 honours the umask, so the checkpoint gets ordinary permissions.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, checked, meta)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


class _Corrupt(Exception):
    """Internal: a problem found while parsing, turned into ValueError by load_arrays."""


def _read_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, file_size: int
) -> np.ndarray:
    """Parse one .npy member without pickle: header (literal parser), then raw bytes."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _Corrupt(f"array {name!r} uses an unsupported zip compression ({info.compress_type})")
    if info.compress_type == zipfile.ZIP_STORED and (
        info.compress_size != info.file_size or info.header_offset + info.compress_size > file_size
    ):
        raise _Corrupt(f"array {name!r} extends past the end of the file (truncated)")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise _Corrupt(f"array {name!r} has an unsupported .npy version {version}")
        if dtype.hasobject:
            raise _Corrupt(
                f"array {name!r} holds Python objects (pickled data); checkpoints never unpickle"
            )
        if not _check_dtype(dtype):
            raise _Corrupt(f"array {name!r} has unsupported dtype {dtype}")
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        header_len = f.tell()
        # Checked before allocating, so a corrupt shape cannot request huge memory.
        if header_len + nbytes != info.file_size:
            raise _Corrupt(
                f"array {name!r}: header says {shape} {dtype} ({nbytes} bytes) "
                "but the member holds "
                f"{info.file_size - header_len} bytes"
            )
        buf = bytearray(nbytes)
        # zipfile's reader is a BufferedIOBase (typeshed says IO[bytes], which has no readinto).
        assert isinstance(f, io.BufferedIOBase)
        got = f.readinto(buf) if nbytes else 0
        if got != nbytes or f.read(1):  # the extra read also makes zipfile check the CRC
            raise _Corrupt(f"array {name!r} is truncated")
    a = np.frombuffer(buf, dtype=dtype, count=count)
    if fortran:
        return np.ascontiguousarray(a.reshape(shape[::-1]).T)
    return a.reshape(shape)


def load_arrays(path: PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_arrays`: returns ``(arrays, metadata)``.

    Verifies the format name, the version, and the sha256 of every array; raises
    ``ValueError("[checkpoint] ...")`` naming the problem for a file that is not a checkpoint,
    is truncated or corrupt, has another version, lacks metadata, or holds pickled objects.
    Missing files raise FileNotFoundError. Returned arrays are writable copies (no file stays open).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"[checkpoint] path must be a str or os.PathLike, got {type(path).__name__}"
        )
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"[checkpoint] no such file: {path!r}")
    with open(path, "rb") as fh:
        file_size = os.fstat(fh.fileno()).st_size
        if fh.read(4) != _ZIP_MAGIC:
            raise ValueError(
                f"[checkpoint] {path!r} is not a metalnn checkpoint (not an .npz/zip archive)"
            )
        fh.seek(0)
        try:
            return _parse(fh, file_size)
        except _Corrupt as e:
            raise ValueError(f"[checkpoint] {path!r}: {e}") from None
        except Exception as e:  # zipfile/struct/zlib/EOF errors from damaged bytes
            raise ValueError(
                f"[checkpoint] {path!r} is corrupt or truncated ({type(e).__name__}: {e})"
            ) from None


def _parse(fh: BinaryIO, file_size: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with zipfile.ZipFile(fh, mode="r") as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise _Corrupt("duplicate member names")
        bad = [n for n in names if not n.endswith(".npy")]
        if bad:
            raise _Corrupt(f"unexpected member {bad[0]!r} (not an .npy array)")
        by_name = {n[: -len(".npy")]: i for n, i in zip(names, infos)}
        if METADATA_KEY not in by_name:
            raise _Corrupt(
                f"missing {METADATA_KEY} (not a metalnn checkpoint, or written by plain np.savez)"
            )

        # Metadata first: a wrong version must be reported as such, not as a checksum error.
        meta_arr = _read_member(zf, by_name.pop(METADATA_KEY), METADATA_KEY, file_size)
        if meta_arr.dtype != np.uint8 or meta_arr.ndim != 1:
            raise _Corrupt(
                f"{METADATA_KEY} must be a 1-D uint8 array, got {meta_arr.dtype} {meta_arr.shape}"
            )
        try:
            header = json.loads(meta_arr.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _Corrupt(f"{METADATA_KEY} is not valid UTF-8 JSON ({e})") from None
        if not isinstance(header, dict):
            raise _Corrupt(f"{METADATA_KEY} must be a JSON object")
        if header.get("format") != FORMAT:
            raise _Corrupt(f"format is {header.get('format')!r}, expected {FORMAT!r}")
        version = header.get("version")
        if type(version) is not int:
            raise _Corrupt(f"metadata field 'version' is missing or not an int ({version!r})")
        if version != VERSION:
            raise _Corrupt(
                f"unsupported checkpoint version {version} (this metalnn reads version {VERSION})"
            )
        for field, kind in (("sha256", str), ("user", dict)):
            if not isinstance(header.get(field), kind):
                raise _Corrupt(f"metadata field {field!r} is missing or not a {kind.__name__}")

        arrays = {name: _read_member(zf, info, name, file_size) for name, info in by_name.items()}
    if _checksum(arrays) != header["sha256"]:
        raise _Corrupt(
            "checksum mismatch: the arrays do not match the sha256 in the metadata (corrupt file)"
        )
    return arrays, header["user"]
