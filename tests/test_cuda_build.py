"""CPU-only compile check of the CUDA backend: every cpp/metalnn/backend/cuda/*.cu compiles
with nvcc for sm_90 (SASS) and compute_90 (PTX), and the host *.cpp compile against the
CUDA runtime headers. Skipped when nvcc is not on PATH."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CUDA_DIR = ROOT / "cpp" / "metalnn" / "backend" / "cuda"
NVCC = shutil.which("nvcc")

pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")


def _compile_all(sources, tmp_path):
    flags = ["-std=c++17", "-O1", f"-I{ROOT / 'cpp'}", "-DMETALNN_HAS_CUDA=1", "--expt-relaxed-constexpr",
             "-gencode", "arch=compute_90,code=sm_90", "-gencode", "arch=compute_90,code=compute_90"]
    # Compiled in parallel: each nvcc run takes a few seconds.
    procs = [(src, subprocess.Popen([NVCC, *flags, "-c", str(src), "-o", str(tmp_path / (src.name + ".o"))],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
             for src in sources]
    failures = []
    for src, p in procs:
        out, _ = p.communicate(timeout=300)
        if p.returncode != 0:
            failures.append(f"{src.name}:\n{out}")
    assert not failures, "\n".join(failures)


def test_cuda_kernels_compile(tmp_path):
    sources = sorted(CUDA_DIR.glob("*.cu"))
    assert sources, "no CUDA kernels found"
    _compile_all(sources, tmp_path)


def test_cuda_host_sources_compile(tmp_path):
    # nvcc compiles plain C++ host files too (-x cu is not needed: .cpp goes to the host compiler).
    sources = sorted(CUDA_DIR.glob("*.cpp"))
    assert sources, "no CUDA host sources found"
    _compile_all(sources, tmp_path)


@pytest.mark.skipif(shutil.which("cmake") is None or os.environ.get("METALNN_CUDA_CMAKE_CHECK") != "1",
                    reason="full CMake configure with METALNN_BUILD_CUDA=ON runs when METALNN_CUDA_CMAKE_CHECK=1")
def test_cmake_configures_with_cuda(tmp_path):
    r = subprocess.run(["cmake", "-S", str(ROOT), "-B", str(tmp_path / "b"), "-DMETALNN_BUILD_CUDA=ON"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
