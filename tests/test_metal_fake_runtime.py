"""The Metal backend end to end on Linux, against the fake Metal runtime (tests/metal/fake_runtime).

metalnn._core is built with clang (-fblocks) and the Metal backend ON, the unmodified host
code (cpp/metalnn/backend/metal) linked against a fake Objective-C runtime and fake MTL
classes whose dispatches run the MSL emulator. Then, in subprocesses with METALNN_BUILD_DIR
pointing at that build:

* every op family's forward and gradients on device "metal" match the CPU backend, the
  optimizers too, and the digit network trains with the CPU graph's losses on a GPU that
  starts each command buffer late (tests/metal/fake_runtime/cases_metal_device.py, the same
  file a Mac runs on its GPU); command buffers and encoders are all released afterwards;
* the same with pipelines that allow only 320 threads per threadgroup, so the host must take
  threadgroup sizes from maxTotalThreadsPerThreadgroup;
* injected GPU faults raise from an op, a stream's event and a graph batch;
* fake_metal_misuse: the optimizers' arena path (unreachable from Python) matches the CPU,
  and deliberate host bugs are caught: wrong setBytes size, unbound or stale buffer binding,
  oversized threadgroup, encoder used after endEncoding, double commit, commit with an open
  encoder, use after release, a kernel writing past a buffer's end;
* every kernel an encoder in backend/metal names ran in those runs (new families need cases).

The build goes to build/fakert (METALNN_FAKERT_BUILD_DIR overrides) and is incremental.
Skips when no clang >= 15 is installed, and in .ci/run's sanitizer passes (MSLEMU_SANITIZE),
which repeat tests/test_metal_*.py: this file runs once, in the plain pass.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "tests" / "metal" / "fake_runtime"
CASES = RUNTIME / "cases_metal_device.py"
PYMETAL_CPP = "pymetal-cpp==0.1.5"


def _clang() -> str | None:
    for name in ["clang++-19", "clang++-18", "clang++-17", "clang++-16", "clang++-15", "clang++"]:
        exe = shutil.which(name)
        if not exe:
            continue
        out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"clang version (\d+)", out)
        if m and int(m.group(1)) >= 15:
            return exe
    return None


CLANG = _clang()
pytestmark = [
    pytest.mark.skipif(CLANG is None, reason="the fake Metal runtime needs clang >= 15 (-fblocks, _Float16); none "
                       "found (apt-get install clang-16)"),
    # .ci/run repeats tests/test_metal_*.py with sanitized emulator kernels; this end-to-end
    # build runs once, in the plain pass (its kernels are the ones test_metal_kernels sanitizes).
    pytest.mark.skipif(bool(os.environ.get("MSLEMU_SANITIZE")), reason="the fake-runtime tests run in the plain pass "
                       "only, not again under MSLEMU_SANITIZE"),
]


def _tools(folder: Path) -> tuple[str, dict]:
    """cmake (ninja when present) and pybind11's CMake folder; pip-installs what is missing
    into folder/tools (the test environment need not have them: pip builds metalnn isolated)."""
    tools = folder / "tools"
    paths = {"cmake": shutil.which("cmake"), "ninja": shutil.which("ninja")}
    try:
        import pybind11

        paths["pybind11"] = pybind11.get_cmake_dir()
    except ImportError:
        paths["pybind11"] = None
    missing = [name for name, found in paths.items() if found is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(tools), *missing], check=True,
                       capture_output=True, text=True, timeout=900)
        for name, found in [("cmake", tools / "cmake" / "data" / "bin" / "cmake"),
                            ("ninja", tools / "ninja" / "data" / "bin" / "ninja"),
                            ("pybind11", tools / "pybind11" / "share" / "cmake" / "pybind11")]:
            if paths[name] is None and found.exists():
                paths[name] = str(found)
    assert paths["cmake"] and paths["pybind11"], f"could not obtain cmake / pybind11: {paths}"
    return paths["cmake"], paths


def _metal_cpp(folder: Path) -> Path:
    """metal-cpp's headers: METALNN_METAL_CPP_DIR, or the registry sdist pymetal-cpp (never committed)."""
    if os.environ.get("METALNN_METAL_CPP_DIR"):
        return Path(os.environ["METALNN_METAL_CPP_DIR"])
    dest = folder / "pymetal-cpp"
    found = sorted(dest.glob("pymetal_cpp-*/thirdparty/metal-cpp"))
    if found:
        return found[0]
    # Without build isolation pip prepares the sdist's metadata in seconds; isolated is the fallback.
    for extra in (["--no-build-isolation"], []):
        subprocess.run([sys.executable, "-m", "pip", "download", PYMETAL_CPP, "--no-deps", "-d", str(dest), *extra],
                       capture_output=True, text=True, timeout=900)
        sdists = sorted(dest.glob("pymetal_cpp-*.tar.gz"))
        if sdists:
            break
    else:
        pytest.fail(f"could not download the metal-cpp headers (pip download {PYMETAL_CPP} --no-deps)")
    with tarfile.open(sdists[0]) as tar:
        members = [m for m in tar.getmembers() if "/thirdparty/metal-cpp/" in m.name]
        tar.extractall(dest, members=members, filter="data")
    return sorted(dest.glob("pymetal_cpp-*/thirdparty/metal-cpp"))[0]


@pytest.fixture(scope="module")
def build() -> Path:
    """metalnn._core with the Metal backend on the fake runtime (configured once, then incremental)."""
    folder = Path(os.environ.get("METALNN_FAKERT_BUILD_DIR", ROOT / "build" / "fakert"))
    folder.mkdir(parents=True, exist_ok=True)
    cmake, tools = _tools(folder)
    if not (folder / "CMakeCache.txt").exists():
        cmd = [cmake, "-S", str(ROOT), "-B", str(folder), "-DCMAKE_BUILD_TYPE=Release",
               f"-DCMAKE_CXX_COMPILER={CLANG}", "-DMETALNN_BUILD_PYTHON=ON", f"-DMETALNN_FAKE_METAL_RUNTIME={RUNTIME}",
               f"-DMETALNN_METAL_CPP_DIR={_metal_cpp(folder)}",
               # A test build: -O1 and no LTO keep it within CI's budget (the kernels run in the emulator).
               "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -DNDEBUG", "-DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF",
               f"-Dpybind11_DIR={tools['pybind11']}", f"-DPython_EXECUTABLE={sys.executable}"]
        if tools["ninja"]:
            cmd += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={tools['ninja']}"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, (
            f"configuring the fake-runtime build failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
    res = subprocess.run([cmake, "--build", str(folder), "-j", os.environ.get("JOBS", "2")], capture_output=True,
                         text=True)
    assert res.returncode == 0, (
        f"building against the fake Metal runtime failed:\n{res.stdout[-6000:]}{res.stderr[-3000:]}")
    assert list(folder.glob("_core*.so")), "no _core module was built"
    return folder


def _env(build: Path, **extra) -> dict:
    env = dict(os.environ)
    python_path = os.pathsep.join([str(ROOT / "python"), env.get("PYTHONPATH", "")])
    env.update(METALNN_BUILD_DIR=str(build), PYTHONPATH=python_path, FAKE_METAL_PYTHON=sys.executable,
               METALNN_DEVICE="cpu")
    env.update(extra)
    return env


# Runs shared by several tests (the coverage check reads their dispatch logs), once each.
_RUNS: dict[str, tuple[int, str, Path]] = {}


def _run(build: Path, name: str, cmd: list[str], **extra) -> tuple[int, str, Path]:
    if name not in _RUNS:
        log = build / f"dispatches-{name}.log"
        log.unlink(missing_ok=True)
        res = subprocess.run(cmd, cwd=ROOT, env=_env(build, FAKE_METAL_DISPATCH_LOG=str(log), **extra),
                             capture_output=True, text=True, timeout=900)
        _RUNS[name] = (res.returncode, res.stdout + res.stderr, log)
    return _RUNS[name]


def _cases(build: Path, name: str, select: str, **extra) -> None:
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", str(CASES), "-k", select]
    rc, out, _ = _run(build, name, cmd, **extra)
    assert rc == 0, f"{' '.join(cmd[3:])} failed (rc {rc}):\n{out[-8000:]}"
    summary = [line for line in out.splitlines() if " passed" in line]
    assert summary and "skipped" not in summary[-1], f"cases skipped or not run:\n{out[-3000:]}"


def test_ops_match_cpu_on_fake_metal(build):
    _cases(build, "ops", "not digit_graph and not metal_graph and not gpu_fault")


def test_digit_graph_trains_on_fake_metal(build):
    """The digit network and the other training graphs (batch norm, shape/arithmetic blocks,
    RNN) with a slow GPU (every command buffer starts 20 ms late), so host code reading results
    before their command buffer completes would see stale numbers."""
    _cases(build, "graph", "digit_graph or metal_graph", FAKE_METAL_GPU_DELAY_MS="20")


def test_optimizer_arenas(build):
    """The *_step_many path (weights, gradients and state packed in one block each), which
    Python cannot reach, against the CPU backend; 300 slots put the range table in host memory."""
    for scenario in ["optimizer_arenas", "optimizer_arenas_large_table"]:
        rc, out, _ = _run(build, scenario, [str(build / "fake_metal_misuse"), scenario])
        assert rc == 0 and "ok" in out, out[-3000:]


def test_threadgroup_sizes_come_from_the_pipeline(build):
    """Pipelines that allow 320 threads (not a power of two): 1-D and reduction kernels must
    size their threadgroups from maxTotalThreadsPerThreadgroup, not assume 1024 or 256."""
    _cases(build, "max320", "neuron_forward_backward and relu or softmax_forward_backward or cross_entropy or max_pool "
                  "or optimizers or fully_connected or conv2d or batch_norm_training or group_instance_layer_norm "
                  "or arithmetic_backward_kernels or rnn_mixed or rnn_inference", FAKE_METAL_MAX_THREADS="320")


def _misuse(build: Path, scenario: str) -> subprocess.CompletedProcess:
    exe = build / "fake_metal_misuse"
    assert exe.exists(), "fake_metal_misuse was not built"
    return subprocess.run([str(exe), scenario], env=_env(build), capture_output=True, text=True, timeout=300)


def test_correct_host_call_passes(build):
    res = _misuse(build, "ok")
    assert res.returncode == 0 and "ok" in res.stdout, res.stdout + res.stderr


@pytest.mark.parametrize("scenario, message", [
    ("wrong_bytes_size", r"setBytes length 12 at index 2, but the kernel's argument at buffer\(2\) has sizeof 16"),
    ("unbound_buffer", r"kernel neuron_forward_float32 reads buffer\(1\), which is not bound"),
    ("stale_binding", r"reads buffer\(3\), bound before setComputePipelineState: a stale binding"),
    ("threadgroup_too_large", r"threadgroup 2048x1x1 has a dimension outside|exceeds the pipeline's "
                              r"maxTotalThreadsPerThreadgroup"),
    ("encoder_after_end", r"setBuffer:offset:atIndex:\]: encoder 0x[0-9a-f]+ used after endEncoding"),
    ("commit_twice", r"committed twice"),
    ("commit_without_end_encoding", r"has not called endEncoding"),
    ("use_after_release", r"message sent to deallocated instance"),
])
def test_fake_runtime_catches_host_bugs(build, scenario, message):
    """What Metal's API validation rejects aborts the process with the reason."""
    res = _misuse(build, scenario)
    assert res.returncode != 0, f"{scenario} was not caught:\n{res.stdout}{res.stderr}"
    assert "fake Metal runtime: validation error" in res.stderr, res.stderr[-3000:]
    assert re.search(message, res.stderr), res.stderr[-3000:]


def test_kernel_fault_fails_the_command_buffer(build):
    """A kernel writing past its buffer's end (a count larger than the buffer) fails the command
    buffer with an NSError, as a GPU page fault would, and metal::run throws it naming the op."""
    res = _misuse(build, "kernel_fault")
    assert res.returncode == 3, res.stdout + res.stderr
    message = r"exception: \[misuse\].*neuron_forward_float32.*wrote outside buffer\(1\), which holds \d+ bytes"
    assert re.search(message, res.stdout), res.stdout


def test_gpu_faults_surface_as_python_exceptions(build):
    """Injected faults: an op outside a stream, a stream's event and a graph batch raise, and the
    next command buffers run normally."""
    _cases(build, "faults", "gpu_fault", FAKE_METAL_FAIL_KERNEL="neuron_forward_float32:2,conv2d_forward_float32:1")


def _stem_arguments(text: str) -> list[str]:
    """The first argument of every kernel_name(...) call (up to its comma at depth 0)."""
    out = []
    for m in re.finditer(r"\bkernel_name\(", text):
        depth, i = 0, m.end()
        while i < len(text) and not (depth == 0 and text[i] in ",)"):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        out.append(text[m.end():i])
    return out


def _encoded_kernels() -> set[str]:
    """Every kernel the host encoders name, in both dtypes: test_metal_host's reading plus the
    names it misses -- stems chosen by a ternary inside kernel_name (arithmetic's reduce,
    loss's grouped), stems passed through a helper (shape.cpp's encode(op, stem, ...)) and
    whole names chosen by a ternary (rnn's casts)."""
    stems, plain = set(), set()
    for source in (ROOT / "cpp" / "metalnn" / "backend" / "metal").glob("*.cpp"):
        text = source.read_text()
        stems |= set(re.findall(r'kernel_name\("(\w+)"', text))
        for argument in _stem_arguments(text):
            stems |= set(re.findall(r'"(\w+)"', argument))
        stems |= set(re.findall(r'\bencode\(\s*"\w+"\s*,\s*"(\w+)"', text))
        plain |= set(re.findall(r'KernelCall\s+\w+\(\s*\w+\s*,\s*"(\w+)"\s*\)', text))
        plain |= set(re.findall(r'"(\w+_float(?:32|16))"', text))
    return {f"{stem}_{dtype}" for stem in stems for dtype in ("float32", "float16")} | plain


def test_every_encoded_kernel_ran(build):
    """Each kernel an encoder in backend/metal can dispatch ran on the fake GPU during the runs
    above: a new op family's host code needs its cases in cases_metal_device.py."""
    test_ops_match_cpu_on_fake_metal(build)
    test_digit_graph_trains_on_fake_metal(build)
    test_optimizer_arenas(build)
    ran = set()
    for name in ["ops", "graph", "optimizer_arenas", "optimizer_arenas_large_table"]:
        log = _RUNS[name][2]
        assert log.exists(), f"the {name} run left no dispatch log"
        ran |= {line.split()[0] for line in log.read_text().splitlines() if line.strip()}
    missing = sorted(_encoded_kernels() - ran)
    assert not missing, (f"kernels the Metal host code can dispatch that no fake-runtime case ran: {missing}; add "
                         f"cases for them to {CASES.relative_to(ROOT)}")
