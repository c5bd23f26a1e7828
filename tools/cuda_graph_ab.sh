#!/usr/bin/env bash
# A/B on the lent GPU: this tree against a baseline that differs only in the files under
# .cg_base/ (the executor before capture-once; .cg_base/NEW_FILES lists files the baseline
# lacks), both built here; the CUDA tests and racecheck on this tree; bench_cuda.py training and
# inference rows for baseline and new, interleaved twice, in one run. Output under $OUT.
OUT_NAME=cuda_graph_out BUDGET_DEFAULT=340 CAP_MARGIN=20
source "$(dirname "$0")/device_run.sh"
build() {
  cmake -S . -B build/g -G Ninja -DCMAKE_BUILD_TYPE=Release -DMETALNN_BUILD_PYTHON=ON -DMETALNN_BUILD_CUDA=ON \
    -Dpybind11_DIR="$("$PY" -c 'import pybind11;print(pybind11.get_cmake_dir())')" > /tmp/build_$1.log 2>&1 &&
    cmake --build build/g -j16 >> /tmp/build_$1.log 2>&1 || { grep -E "error" /tmp/build_$1.log | head; s "build $1 failed"; exit 1; }
}
s "$(nvidia-smi -L | head -1)"
rm -rf /tmp/base && mkdir -p /tmp/base && tar --exclude=./build --exclude=./.cg_base -cf - . | tar -xf - -C /tmp/base
cp -r .cg_base/cpp .cg_base/python /tmp/base/ && (cd /tmp/base && xargs rm -f < "$OLDPWD/.cg_base/NEW_FILES")
build new && (cd /tmp/base && build base) && s "builds ok ($(( $(date +%s) - t0 )) s)"
export METALNN_BUILD_DIR=build/g PYTHONPATH=python
timeout $(cap 100) "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda_*.py > "$OUT/test_cuda.log" 2>&1
s "cuda tests (new): $(tail -1 "$OUT/test_cuda.log")"; grep -E "^(FAILED|ERROR)" "$OUT/test_cuda.log" | head
for r in 1 2; do
  for v in base new; do
    d=.; [[ $v == base ]] && d=/tmp/base
    (cd $d && timeout $(cap 45) "$PY" benchmarks/bench_cuda.py --no-elementwise ${BENCH_ARGS:---steps 30} \
       --markdown "$OUT/bench_${v}_$r.md" > /tmp/bench_${v}_$r.log 2>&1)
    rc=$?; s "bench $v run $r rc $rc"; (( rc )) && tail -8 /tmp/bench_${v}_$r.log | tee -a "$OUT/summary.txt"; grep -E "^\| (train|infer)" "$OUT/bench_${v}_$r.md" | sed "s/^/$v$r /"
  done
done
timeout $(cap 120) compute-sanitizer --tool racecheck --error-exitcode 9 "$PY" tools/sanitize_step.py --width 0.25 --steps 4 > "$OUT/racecheck.log" 2>&1
s "racecheck rc $? ($(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/racecheck.log" | tail -1)) $(grep losses "$OUT/racecheck.log")"
s "total $(( $(date +%s) - t0 )) s"
