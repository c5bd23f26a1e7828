"""Packaging: one version, license, changelog, cibuildwheel settings and an sdist that builds clean."""

import ast
import os
import re
import subprocess
import sys
import tarfile

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml needs tomllib (3.11+) or tomli")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _source_version():
    """``__version__`` as written in python/metalnn/__init__.py (read without importing)."""
    tree = ast.parse(open(os.path.join(ROOT, "python", "metalnn", "__init__.py")).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return node.value.value
    raise AssertionError("python/metalnn/__init__.py has no __version__")


def test_version_is_single_sourced():
    import metalnn

    version = _source_version()
    assert metalnn.__version__ == version
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+)?(\.dev\d+)?", version)
    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    provider = _pyproject()["tool"]["scikit-build"]["metadata"]["version"]
    assert provider["provider"] == "scikit_build_core.metadata.regex"
    assert provider["input"] == "python/metalnn/__init__.py"


def test_license_and_changelog():
    text = open(os.path.join(ROOT, "LICENSE")).read()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
    assert _pyproject()["project"]["license"] == {"text": "MIT"}
    changelog = open(os.path.join(ROOT, "CHANGELOG.md")).read()
    assert "## [Unreleased]" in changelog
    assert f"## [{_source_version()}]" in changelog  # every released version has its section


def test_cibuildwheel_configuration():
    cfg = _pyproject()["tool"]["cibuildwheel"]
    builds = cfg["build"].split()
    assert "cp311-*" in builds and "cp39-*" in builds
    assert "musllinux" in cfg["skip"]
    assert set(cfg["linux"]["archs"]) >= {"x86_64", "aarch64"}
    assert "arm64" in cfg["macos"]["archs"]
    assert cfg["macos"]["environment"]["MACOSX_DEPLOYMENT_TARGET"]
    for path in re.findall(r"\{project\}/(\S+)", cfg["test-command"]):
        assert os.path.exists(os.path.join(ROOT, path)), f"cibuildwheel test-command names a missing file {path}"
    extras = _pyproject()["project"]["optional-dependencies"]
    assert {"onnx", "onnxruntime"} <= {re.split(r"[<>=\[]", r)[0] for r in extras["test"]}
    assert {"mkdocs", "mkdocstrings", "mypy"} <= {re.split(r"[<>=\[]", r)[0] for r in extras["docs"]}


@pytest.mark.parametrize("platform,expected", [
    ("linux", {"cp39-manylinux_x86_64", "cp313-manylinux_x86_64", "cp311-manylinux_aarch64"}),
    ("macos", {"cp39-macosx_arm64", "cp313-macosx_arm64", "cp311-macosx_x86_64"}),
])
def test_cibuildwheel_reads_the_configuration(platform, expected):
    """cibuildwheel itself parses the settings (no build: ``--print-build-identifiers``)."""
    pytest.importorskip("cibuildwheel", reason="cibuildwheel is not installed (pip install 'metalnn[test]')")
    proc = subprocess.run([sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform", platform],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ids = set(proc.stdout.split())
    assert expected <= ids
    assert not any("musllinux" in i or "i686" in i or i.startswith("pp") for i in ids), ids


# What an sdist must never carry: build output, compiled objects, fetched third-party code.
_FORBIDDEN_DIRS = {"build", "dist", "_deps", "third_party", "thirdparty", "external", "metal-cpp", "node_modules",
                   ".git", "__pycache__", ".pytest_cache", ".hypothesis", "site", ".mypy_cache"}
_FORBIDDEN_SUFFIXES = (".so", ".o", ".a", ".dylib", ".pyc", ".whl", ".metallib", ".npz", ".onnx")
_REQUIRED = ["pyproject.toml", "CMakeLists.txt", "LICENSE", "CHANGELOG.md", "README.md",
             "python/metalnn/__init__.py", "python/metalnn/py.typed", "python/metalnn/layers.py",
             "python/metalnn/onnx_export.py", "python/metalnn/graph/graph.py", "python/metalnn/graph/inspect.py",
             "cpp/bindings/module.cpp", "cpp/metalnn/core/tensor.h", "cpp/kernels/neuron_params.h"]


def test_sdist_builds_with_the_sources_and_nothing_else(tmp_path):
    pytest.importorskip("build", reason="the 'build' package is not installed (pip install 'metalnn[test]')")
    pytest.importorskip("scikit_build_core", reason="scikit-build-core is not installed (pip install 'metalnn[test]')")
    # --no-isolation: no download of the build requirements; -x: pybind11 is needed for wheels only.
    proc = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-x", "--outdir",
                           str(tmp_path), ROOT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    version = _source_version()
    archive = tmp_path / f"metalnn-{version}.tar.gz"
    assert archive.exists(), os.listdir(tmp_path)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        prefix = f"metalnn-{version}/"
        assert all(n == prefix.rstrip("/") or n.startswith(prefix) for n in names)
        files = {n[len(prefix):] for n in names if n.startswith(prefix)}
        pkg_info = tar.extractfile(prefix + "PKG-INFO").read().decode()
    for path in _REQUIRED:
        assert path in files, f"sdist lacks {path}"
    for path in files:
        parts = path.split("/")
        assert not _FORBIDDEN_DIRS & set(parts[:-1]), f"sdist holds a build or third-party folder: {path}"
        assert not path.endswith(_FORBIDDEN_SUFFIXES), f"sdist holds a built or data file: {path}"
        assert not re.search(r"(^|/)(Metal|Foundation|QuartzCore)/\1?\w*\.hpp$", path), f"metal-cpp header: {path}"
    assert not any(p.endswith(("Metal.hpp", "Foundation.hpp")) for p in files)
    assert f"\nVersion: {version}\n" in pkg_info
    assert re.search(r"^License: MIT$", pkg_info, re.M) or "License-Expression: MIT" in pkg_info
