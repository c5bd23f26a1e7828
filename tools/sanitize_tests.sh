#!/usr/bin/env bash
# Builds the C++ core and bindings with AddressSanitizer + UndefinedBehaviorSanitizer and
# runs the kernel, graph and fuzz tests against it (CI runs this after the main suite).
#   tools/sanitize_tests.sh [build-dir] [pytest args...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$(realpath -m "${1:-$root/build/sanitize}")"  # absolute: the tests run from tests/
shift || true
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS=-O1 -DMETALNN_BUILD_PYTHON=ON \
  -DMETALNN_SANITIZE=address,undefined \
  -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
cmake --build "$build" -j "${JOBS:-2}"
# Python is not instrumented: the runtimes are preloaded. Leaks are Python's business here
# (interned objects live to exit); the soak test covers growth.
asan="$(${CXX:-g++} -print-file-name=libasan.so)"
ubsan="$(${CXX:-g++} -print-file-name=libubsan.so)"
tests=(test_core.py test_conv.py test_linear.py test_pooling.py test_neuron.py test_softmax.py test_loss.py
       test_dropout.py test_optimizer.py test_graph.py test_graph_optimizers.py test_fused.py test_batch.py
       test_numerics_guard.py test_fuzz_ops.py test_fuzz_graph.py)
cd "$root/tests"
LD_PRELOAD="$asan:$ubsan" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 METALNN_FUZZ_EXAMPLES="${METALNN_FUZZ_EXAMPLES:-20}" \
  METALNN_BUILD_DIR="$build" PYTHONPATH="$root/python" python -m pytest -q -p no:cacheprovider "${tests[@]}" "$@"
