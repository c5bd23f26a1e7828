"""Runs .metal kernels on the CPU: prepass -> clang++ (>= 15) -> shared library -> ctypes.

    lib = compile_metal("cpp/kernels/neuron.metal")
    lib.dispatch("neuron_forward_float32", [x, y, params, np.uint32(n)], grid=n, threadgroup=64)

Buffers are bound by index, as setBuffer/setBytes would: numpy arrays (copied into a staging
area with poisoned guard bytes on both sides, copied back afterwards; a kernel that wrote a
guard raises), or bytes / ctypes structures / numpy scalars for ``constant`` arguments (their
size must equal the kernel's struct). ``grid`` counts threads and is rounded up to whole
threadgroups, as the host code does. Errors found by the emulator raise EmulatorError.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from prepass import rewrite

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
KERNELS = ROOT / "cpp" / "kernels"
GUARD = 4096  # bytes of poison before and after each array buffer
POISON = bytes([0xC0, 0x7F])  # half NaN 0x7FC0; float NaN 0x7FC07FC0; int 0x7FC07FC0


class EmulatorError(RuntimeError):
    """A kernel broke a Metal rule the emulator checks (barriers, bounds, limits, sizes)."""


def find_clang() -> str | None:
    """The first clang++ with major version >= 15 (for _Float16 and ext_vector_type), or None."""
    names = [os.environ.get("MSLEMU_CXX", "")] + [f"clang++-{v}" for v in range(20, 14, -1)] + ["clang++"]
    for name in filter(None, names):
        exe = shutil.which(name)
        if not exe:
            continue
        out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"clang version (\d+)", out)
        if m and int(m.group(1)) >= 15:
            return exe
    return None


def _flags(sanitize: str) -> list[str]:
    flags = ["-std=c++17", "-O1", "-g0", "-fPIC", "-Wall", "-Wno-unused-function", "-Wno-unused-variable",
             "-ffp-contract=off", f"-I{HERE}", f"-I{HERE / 'include'}", f"-I{KERNELS}"]
    if sanitize:
        # The runtime as a shared library, so the .so loads into a plain Python; for address,
        # run Python with LD_PRELOAD=$(clang++ -print-file-name=libclang_rt.asan-x86_64.so).
        flags += [f"-fsanitize={sanitize}", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
                  "-shared-libsan"]
    return flags


def _dependencies_hash() -> str:
    h = hashlib.sha256()
    for p in sorted(list(HERE.glob("*.h")) + list(HERE.glob("*.py")) + list(KERNELS.glob("*.h"))):
        h.update(p.read_bytes())
    return h.hexdigest()


_cache: dict[tuple[str, str], Library] = {}


def compile_metal(path: str | os.PathLike, sanitize: str | None = None) -> Library:
    """Compiles a .metal file once (cached per process and on disk by content hash)."""
    sanitize = os.environ.get("MSLEMU_SANITIZE", "") if sanitize is None else sanitize
    path = str(Path(path).resolve())
    key = (path, sanitize)
    if key in _cache:
        return _cache[key]
    cxx = find_clang()
    if cxx is None:
        raise EmulatorError("no clang++ >= 15 found (set MSLEMU_CXX)")
    source, kernels = rewrite(Path(path).read_text(), path)
    flags = _flags(sanitize)
    if sanitize:
        rt_dir = subprocess.run([cxx, "-print-runtime-dir"], capture_output=True, text=True).stdout.strip()
        flags.append(f"-Wl,-rpath,{rt_dir}")
    digest = hashlib.sha256("\0".join([source, cxx, *flags, _dependencies_hash()]).encode()).hexdigest()[:20]
    folder = Path(tempfile.gettempdir()) / f"mslemu-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    lib_path = folder / f"{Path(path).stem}-{digest}.so"
    if not lib_path.exists():
        cpp = folder / f"{Path(path).stem}-{digest}.cpp"
        cpp.write_text(source)
        tmp = lib_path.with_suffix(f".{os.getpid()}.tmp")
        res = subprocess.run([cxx, *flags, "-shared", "-x", "c++", str(cpp), "-o", str(tmp)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise EmulatorError(f"compiling {path} failed:\n{res.stderr[-6000:]}")
        os.replace(tmp, lib_path)
    lib = Library(lib_path, [k.name for k in kernels])
    _cache[key] = lib
    return lib


def compile_strict(path: str | os.PathLike) -> None:
    """Compile check with device/constant/threadgroup as distinct address spaces (no run)."""
    cxx = find_clang()
    if cxx is None:
        raise EmulatorError("no clang++ >= 15 found (set MSLEMU_CXX)")
    source, _ = rewrite(Path(path).read_text(), str(path), strict=True)
    res = subprocess.run([cxx, *_flags(""), "-DMSLEMU_STRICT", "-fsyntax-only", "-x", "c++", "-"],
                         input=source, capture_output=True, text=True)
    if res.returncode != 0:
        raise EmulatorError(f"strict compile of {path} failed:\n{res.stderr[-6000:]}")


def _as_bytes(value) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, ctypes.Structure):
        return ctypes.string_at(ctypes.addressof(value), ctypes.sizeof(value))
    if isinstance(value, np.generic):
        return value.tobytes()
    raise TypeError(f"cannot bind {type(value).__name__} as a buffer")


def poisoned(shape, dtype) -> np.ndarray:
    """An output array filled with the poison pattern (NaN for floats), so unwritten elements show."""
    a = np.empty(shape, dtype)
    raw = a.reshape(-1).view(np.uint8)
    raw[:] = np.frombuffer(POISON * (raw.size // 2 + 1), np.uint8)[: raw.size]
    return a


class Library:
    def __init__(self, path: Path, kernels: list[str]):
        self._dll = ctypes.CDLL(str(path))
        self.kernels = kernels

    def dispatch(self, kernel: str, buffers, grid, threadgroup, threadgroup_memory=(), schedule: int = 0) -> None:
        """Runs ``kernel`` over ``grid`` threads (int or up to 3 dims) in threadgroups of ``threadgroup``.

        ``buffers``: list indexed like [[buffer(i)]] (None for unused) or a dict {index: value}.
        ``schedule``: 0 runs a threadgroup's threads in order between barriers, 1 in reverse; a
        kernel whose result depends on it has a race (a missing barrier).
        """
        if kernel not in self.kernels:
            raise EmulatorError(f"no kernel {kernel!r}; have {self.kernels}")
        items = dict(enumerate(buffers)) if not isinstance(buffers, dict) else dict(buffers)
        nbuf = max(items) + 1 if items else 0
        ptrs = (ctypes.c_void_p * max(nbuf, 1))()
        sizes = (ctypes.c_uint64 * max(nbuf, 1))()
        staged = []  # (user array, staging array)
        keep = []
        for i, v in items.items():
            if v is None:
                continue
            if isinstance(v, np.ndarray):
                if not v.flags.c_contiguous:
                    raise ValueError(f"buffer({i}) must be C-contiguous")
                n = v.nbytes
                # NaN payload per buffer index, so a kernel that copies one buffer's guard into another's shows.
                pattern = bytes([POISON[0] + 1 + i % 31, POISON[1]])
                fill = np.frombuffer(pattern * ((n + 2 * GUARD) // 2 + 1), np.uint8)[: n + 2 * GUARD]
                stage = fill.copy()
                stage[GUARD : GUARD + n] = v.reshape(-1).view(np.uint8)
                staged.append((i, v, stage, fill))
                ptrs[i] = stage.ctypes.data + GUARD
                sizes[i] = n
            else:
                raw = ctypes.create_string_buffer(_as_bytes(v))
                keep.append(raw)
                ptrs[i] = ctypes.addressof(raw)
                sizes[i] = ctypes.sizeof(raw) - 1  # create_string_buffer adds a NUL
        g = _dims(grid)
        t = _dims(threadgroup)
        ntg = [(g[k] + t[k] - 1) // t[k] for k in range(3)]
        dims = (ctypes.c_uint32 * 6)(*ntg, *t)
        tgl = (ctypes.c_uint32 * 8)(*list(threadgroup_memory), *[0] * (8 - len(threadgroup_memory)))
        err = ctypes.create_string_buffer(2048)
        fn = getattr(self._dll, f"mslemu_{kernel}")
        rc = fn(ptrs, sizes, ctypes.c_int(nbuf), dims, tgl, ctypes.c_int(schedule), err, ctypes.c_int(len(err)))
        if rc != 0:
            raise EmulatorError(f"{kernel}: {err.value.decode()}")
        for i, v, stage, fill in staged:
            n = v.nbytes
            for side, part, guard in (("before", stage[:GUARD], fill[:GUARD]),
                                      ("after", stage[GUARD + n :], fill[GUARD + n :])):
                if not np.array_equal(part, guard):
                    bad = np.nonzero(part != guard)[0]
                    off = (bad[-1] - GUARD) if side == "before" else (bad[0])
                    raise EmulatorError(f"{kernel}: buffer({i}) written out of range: byte {off} {side} the "
                                        f"{n}-byte buffer")
            if v.flags.writeable:
                v.reshape(-1).view(np.uint8)[:] = stage[GUARD : GUARD + n]


def _dims(v) -> list[int]:
    v = [int(v)] if np.isscalar(v) else [int(x) for x in v]
    if any(x <= 0 for x in v) or len(v) > 3:
        raise ValueError(f"bad dimensions {v}")
    return v + [1] * (3 - len(v))
