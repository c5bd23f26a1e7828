#!/usr/bin/env bash
# One lent-GPU call for the CUDA speed work: cmake build (16 jobs) of a source tree, the GPU
# tests (tests/test_cuda_*.py except the CPU-only compile check, pytest-xdist), then
# benchmarks/bench_cuda.py with the fp32 batch-1024 profile. Logs and bench.md go to $OUT.
#   tools/cuda_speed_run.sh [source-tree]   (default: this checkout)
# Locally, `tools/cuda_speed_run.sh --snapshot DIR` writes HEAD plus the given files' working
# copies into DIR (e.g. an ignored folder carried with the call), so others' unfinished edits
# stay out of the build:  tools/cuda_speed_run.sh --snapshot .cs_snap file...
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [[ "${1:-}" == "--snapshot" ]]; then
  dir="$2"; shift 2
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$root" && git archive HEAD | tar -x -C "$dir" && for f in "$@"; do mkdir -p "$dir/$(dirname "$f")"; cp "$f" "$dir/$f"; done)
  echo "snapshot of $(git -C "$root" rev-parse --short HEAD) + $# files in $dir"
  exit 0
fi
src="${1:-$root}"
cd "$src" || exit 1
OUT="${OUT:-$root/cuda_speed_out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi -L | head -1
t0=$(date +%s)
if ! { cmake -S . -B build/g -G Ninja -DCMAKE_BUILD_TYPE=Release -DMETALNN_BUILD_PYTHON=ON -DMETALNN_BUILD_CUDA=ON \
         -Dpybind11_DIR="$(python3 -c 'import pybind11;print(pybind11.get_cmake_dir())')" &&
       cmake --build build/g -j16; } > "$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"; echo "build failed"; exit 1
fi
echo "build: $(( $(date +%s) - t0 )) s"
export METALNN_BUILD_DIR=build/g PYTHONPATH=python
t0=$(date +%s)
timeout "${TEST_TIMEOUT:-150}" python3 -m pytest -q -n 8 -p no:cacheprovider $(ls tests/test_cuda_*.py | grep -v test_cuda_build) \
  > "$OUT/tests.log" 2>&1
echo "tests ($(( $(date +%s) - t0 )) s): $(tail -1 "$OUT/tests.log")"
grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -20
timeout "${BENCH_TIMEOUT:-240}" python3 benchmarks/bench_cuda.py --steps 50 --reps 30 --profile 1024 \
  --markdown "$OUT/bench.md" ${BENCH_ARGS:-} > "$OUT/bench.log" 2>&1
echo "bench rc $?"
cat "$OUT/bench.log"
# COMPARE=1: the training rows again with one choice switched back each (same machine, same call):
# any cuDNN algorithm (not only deterministic ones), and cuBLAS's batched call for single GEMMs.
if [[ "${COMPARE:-0}" == 1 ]]; then
  for v in METALNN_CUDNN_DETERMINISTIC=0 METALNN_CUBLAS_STRIDED=1 none=0; do
    echo "-- compare: $v"
    env "$v" timeout 120 python3 benchmarks/bench_cuda.py --steps 50 --no-elementwise --train-batches 256 1024 \
      --infer-batches --markdown "$OUT/compare_${v%%=*}.md" 2>&1 | grep -E "^\| train"
  done
fi
# SANITIZE=1: compute-sanitizer memcheck over the packed kernels' tests (no cuDNN/cuBLAS there).
if [[ "${SANITIZE:-0}" == 1 ]]; then
  timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 python3 -m pytest -q -p no:cacheprovider \
    tests/test_cuda_vectorized.py -k "neuron or max_pool" > "$OUT/memcheck.log" 2>&1
  echo "memcheck rc $?: $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1) $(tail -1 "$OUT/memcheck.log")"
fi
