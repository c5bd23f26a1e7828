"""Linux compile check of the Metal host code (cpp/metalnn/backend/metal).

Every host source is type-checked by clang (``-fblocks -fsyntax-only -Werror``) against
Apple's metal-cpp headers, which the registry sdist ``pymetal-cpp`` carries, plus the stub
Apple system headers in ``backend/metal/linux_stubs``. Skips (with the reason) only when
no clang >= 15 is installed or the sdist cannot be obtained. ``METALNN_METAL_CPP_DIR``
points at an unpacked metal-cpp instead of downloading.

The code that reaches the backend is checked the same way with ``-DMETALNN_HAS_METAL``:
every ``core/``, ``ops/`` and ``graph/`` source (tensor allocation, ``make_stream``, the
Metal branches of ``dispatch``) and the bindings that handle device memory (against
pybind11's and Python's headers).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "cpp"
METAL = CPP / "metalnn" / "backend" / "metal"
STUBS = METAL / "linux_stubs"
PYMETAL_CPP = "pymetal-cpp==0.1.5"


def _clang_version(exe: str) -> int:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    m = re.search(r"clang version (\d+)", out)
    return int(m.group(1)) if m else 0


def _find_clang() -> str | None:
    for name in ["clang++-19", "clang++-18", "clang++-17", "clang++-16", "clang++-15", "clang++"]:
        exe = shutil.which(name)
        if exe and _clang_version(exe) >= 15:
            return exe
    return None


def _download_metal_cpp(dest: Path) -> Path | None:
    """pip-downloads the pymetal-cpp sdist into dest and unpacks its metal-cpp folder."""
    # Without build isolation pip prepares the sdist's metadata in seconds; isolated it first
    # installs the build backend, so that is the fallback.
    for extra in (["--no-build-isolation"], []):
        cmd = [sys.executable, "-m", "pip", "download", PYMETAL_CPP, "--no-deps", "-d", str(dest), *extra]
        subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        sdists = sorted(dest.glob("pymetal_cpp-*.tar.gz"))
        if sdists:
            break
    else:
        return None
    with tarfile.open(sdists[0]) as tar:
        members = [m for m in tar.getmembers() if "/thirdparty/metal-cpp/" in m.name]
        tar.extractall(dest, members=members, filter="data")
    found = sorted(dest.glob("pymetal_cpp-*/thirdparty/metal-cpp"))
    return found[0] if found and (found[0] / "Metal" / "Metal.hpp").exists() else None


@pytest.fixture(scope="module")
def toolchain(tmp_path_factory) -> tuple[str, Path]:
    clang = _find_clang()
    if clang is None:
        pytest.skip("Metal compile check needs clang >= 15 (-fblocks); none found (apt-get install clang-16)")
    env_dir = os.environ.get("METALNN_METAL_CPP_DIR")
    if env_dir:
        metal_cpp = Path(env_dir)
        if not (metal_cpp / "Metal" / "Metal.hpp").exists():
            pytest.fail(f"METALNN_METAL_CPP_DIR={env_dir} holds no Metal/Metal.hpp")
    else:
        metal_cpp = _download_metal_cpp(tmp_path_factory.mktemp("pymetal_cpp"))
        if metal_cpp is None:
            pytest.skip(f"could not obtain metal-cpp headers: `pip download {PYMETAL_CPP} --no-deps` failed")
    return clang, metal_cpp


def _python_includes() -> list[str]:
    """pybind11's and Python's include folders, for the bindings (empty if pybind11 is missing)."""
    try:
        import pybind11
    except ImportError:
        return []
    return ["-isystem", pybind11.get_include(), "-isystem", sysconfig.get_paths()["include"]]


def compile_check(clang: str, metal_cpp: Path, source: Path, include_root: Path = CPP):
    """The same command as CMake's metal_compile_check target."""
    stubs = include_root / "metalnn" / "backend" / "metal" / "linux_stubs"
    cmd = [clang, "-std=c++17", "-fblocks", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
           "-Wno-unused-parameter", "-DMETALNN_HAS_METAL=1", f"-I{include_root}",
           "-isystem", str(stubs), "-isystem", str(metal_cpp)]
    if source.parent.name == "bindings":
        cmd += _python_includes()
    cmd.append(str(source))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


# Bindings that touch device memory (tensor creation, numpy views, graph slots) or name Metal.
BINDINGS_CHECKED = ["convert.cpp", "core.cpp", "graph.cpp"]


def _sources() -> list[Path]:
    # Every host source, plus everything compiled with METALNN_HAS_METAL in a Mac build that
    # reaches the backend: core/ (allocation, streams), ops/ (dispatch), graph/ (executor).
    sources = sorted(METAL.glob("*.cpp"))
    for folder in ["core", "ops", "graph"]:
        sources += sorted((CPP / "metalnn" / folder).glob("*.cpp"))
    for binding in sorted((CPP / "bindings").glob("*.cpp")):
        if binding.name in BINDINGS_CHECKED or "METALNN_HAS_METAL" in binding.read_text():
            sources.append(binding)
    return sources


def test_checked_sources_cover_the_metal_branches():
    """Every source outside backend/metal that mentions the Metal backend is compile-checked."""
    checked = set(_sources())
    for path in sorted(CPP.rglob("*.cpp")):
        if METAL in path.parents:
            continue
        text = path.read_text()
        if "METALNN_HAS_METAL" in text or "metal::" in text or "backend/metal/" in text:
            assert path in checked, f"{path.relative_to(ROOT)} has Metal code but is not compile-checked"


def test_host_sources_exist():
    names = {p.name for p in METAL.glob("*.cpp")}
    for required in ["device.cpp", "library.cpp", "pipelines.cpp", "buffers.cpp", "stream.cpp"]:
        assert required in names, f"missing Metal host source {required}"
    for header in ["objc/runtime.h", "objc/message.h", "CoreFoundation/CoreFoundation.h",
                   "IOSurface/IOSurfaceRef.h", "TargetConditionals.h", "mach/mach.h"]:
        assert (STUBS / header).exists(), f"missing Linux stub {header}"


@pytest.mark.parametrize("source", _sources(), ids=lambda p: str(p.relative_to(CPP)))
def test_host_source_compiles(toolchain, source: Path):
    clang, metal_cpp = toolchain
    if source.parent.name == "bindings" and not _python_includes():
        pytest.skip("compiling the bindings needs pybind11's headers (pip install pybind11)")
    result = compile_check(clang, metal_cpp, source)
    assert result.returncode == 0, f"{source.relative_to(ROOT)} does not compile:\n{result.stderr[-4000:]}"


def test_misspelled_metal_call_fails(toolchain, tmp_path: Path):
    """A wrong metal-cpp call in a copy of the sources must fail the check (it can fail)."""
    clang, metal_cpp = toolchain
    copy = tmp_path / "cpp"
    shutil.copytree(CPP / "metalnn", copy / "metalnn")
    shutil.copytree(CPP / "kernels", copy / "kernels")
    kernel = copy / "metalnn" / "backend" / "metal" / "kernel.cpp"
    text = kernel.read_text()
    assert "setComputePipelineState(" in text
    kernel.write_text(text.replace("setComputePipelineState(", "setComputePipelineStates(", 1))
    result = compile_check(clang, metal_cpp, kernel, include_root=copy)
    assert result.returncode != 0
    assert "setComputePipelineStates" in result.stderr

    # A wrong argument type (a Tensor where metal-cpp wants an MTL::Buffer*) fails too.
    text = text.replace("encoder_->setBuffer(b.buffer, b.offset, index);",
                        "encoder_->setBuffer(t, b.offset, index);", 1)
    kernel.write_text(text)
    result = compile_check(clang, metal_cpp, kernel, include_root=copy)
    assert result.returncode != 0
    assert "setBuffer" in result.stderr


def test_broken_metal_branch_in_an_op_fails(toolchain, tmp_path: Path):
    """A Metal branch of dispatch() calling an encoder wrongly fails the check (it is compiled)."""
    clang, metal_cpp = toolchain
    copy = tmp_path / "cpp"
    shutil.copytree(CPP / "metalnn", copy / "metalnn")
    shutil.copytree(CPP / "kernels", copy / "kernels")
    op = copy / "metalnn" / "ops" / "neuron.cpp"
    text = op.read_text()
    call = "metal::neuron_forward(x, y, desc.params())"
    assert call in text
    op.write_text(text.replace(call, "metal::neuron_forward(x, desc.params())", 1))
    result = compile_check(clang, metal_cpp, op, include_root=copy)
    assert result.returncode != 0
    assert "neuron_forward" in result.stderr


def test_stubs_are_not_on_the_apple_build_path():
    """The stubs only serve the Linux check: the macOS build must never see them."""
    cmake = (ROOT / "CMakeLists.txt").read_text()
    section = cmake[cmake.index("if(METALNN_BUILD_METAL)"):cmake.index("if(METALNN_METAL_COMPILE_CHECK")]
    assert "linux_stubs" not in section
    assert "URL_HASH SHA256=" in section


def test_encoders_name_existing_kernels():
    """Every kernel stem an encoder dispatches exists in cpp/kernels/*.metal in both dtypes."""
    msl = "\n".join(p.read_text() for p in (CPP / "kernels").glob("*.metal"))
    stems, plain = set(), set()
    for source in METAL.glob("*.cpp"):
        text = source.read_text()
        stems |= set(re.findall(r'kernel_name\("(\w+)"', text))
        # Kernels without a dtype suffix (e.g. the float32-only loss reduction) are named whole.
        plain |= set(re.findall(r'KernelCall\s+\w+\(\s*\w+\s*,\s*"(\w+)"\s*\)', text))
    assert stems, "no encoder dispatches a kernel"
    # The families with encoders written after the first four must be among them.
    for family in ["conv2d_forward", "conv2d_backward_bias", "fully_connected_forward",
                   "fully_connected_backward_bias", "softmax_cross_entropy_forward",
                   "softmax_cross_entropy_forward_simd", "softmax_cross_entropy_backward", "sgd_step",
                   "sgd_step_many", "adam_step", "adam_step_many", "rmsprop_step", "rmsprop_step_many",
                   "add_forward"]:
        assert family in stems, f"no encoder dispatches {family}"
    assert "softmax_cross_entropy_reduce" in plain
    for stem in sorted(stems):
        for dtype in ("float32", "float16"):
            assert re.search(rf"kernel\s+void\s+{stem}_{dtype}\s*\(", msl), f"no MSL kernel {stem}_{dtype}"
    for name in sorted(plain):
        assert re.search(rf"kernel\s+void\s+{name}\s*\(", msl), f"no MSL kernel {name}"
