#!/usr/bin/env bash
# On the lent GPU, in one call: build (cmake + ninja into build/g), the capture-once tests,
# the other CUDA tests, compute-sanitizer memcheck on digit-net steps that replay a captured
# graph, and a short bench_cuda.py. Logs under $OUT; a summary at the end of the output.
#   [BENCH_ARGS="..."] tools/cuda_graph_check.sh
OUT_NAME=cuda_graph_out BUDGET_DEFAULT=340 CAP_MARGIN=45
source "$(dirname "$0")/device_run.sh"
s "$(nvidia-smi -L | head -1)"
if ! { cmake -S . -B build/g -G Ninja -DCMAKE_BUILD_TYPE=Release -DMETALNN_BUILD_PYTHON=ON -DMETALNN_BUILD_CUDA=ON \
       -Dpybind11_DIR="$("$PY" -c 'import pybind11;print(pybind11.get_cmake_dir())')" && cmake --build build/g -j16; } \
       > "$OUT/build.log" 2>&1; then
  grep -E "error|Error" "$OUT/build.log" | head -30; s "build failed"; exit 1
fi
s "build ok ($(( $(date +%s) - t0 )) s)"
export METALNN_BUILD_DIR=build/g PYTHONPATH=python
timeout $(cap 110) "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda_graph_capture.py > "$OUT/test_capture.log" 2>&1
s "capture tests: $(tail -1 "$OUT/test_capture.log")"
grep -E "^(FAILED|ERROR)|Error|assert" "$OUT/test_capture.log" | head -30
timeout $(cap 90) "$PY" -m pytest -q -p no:cacheprovider -x $(ls tests/test_cuda_*.py | grep -v graph_capture) \
  > "$OUT/test_cuda.log" 2>&1
s "other cuda tests: $(tail -1 "$OUT/test_cuda.log")"
grep -E "^(FAILED|ERROR)" "$OUT/test_cuda.log" | head -10
timeout $(cap 60) compute-sanitizer --tool memcheck --error-exitcode 9 "$PY" tools/sanitize_step.py --width 0.5 --steps 5 > "$OUT/memcheck.log" 2>&1
s "memcheck rc $? ($(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1)) $(grep losses "$OUT/memcheck.log")"
left=$(( ${BUDGET:-340} - ($(date +%s) - t0) ))
if (( left > 40 )); then
  timeout $left "$PY" benchmarks/bench_cuda.py --markdown "$OUT/bench.md" ${BENCH_ARGS:---steps 30 --reps 10} \
    > "$OUT/bench.log" 2>&1
  s "bench rc $? ($left s allowed)"; cat "$OUT/bench.log" | tail -40
fi
s "total $(( $(date +%s) - t0 )) s"
