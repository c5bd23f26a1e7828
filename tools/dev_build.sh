#!/usr/bin/env bash
# Builds metalnn._core into a build folder for development without reinstalling:
#   tools/dev_build.sh [build-dir]   then   METALNN_BUILD_DIR=<build-dir> PYTHONPATH=python pytest
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build/dev}"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMETALNN_BUILD_PYTHON=ON \
  -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
cmake --build "$build" -j "${JOBS:-2}"
echo "built: $(ls "$build"/_core*.so)"
