#!/usr/bin/env bash
# On a lent 2-GPU machine, in one call (issue #11): pip install with CUDA, the two-GPU tests
# and the capture-once tests, then bench_distributed.py with the attribution runs (1 GPU with
# graphs off, 2 GPUs eager / captured / without all-reduce, other bucket sizes), then the
# two-GPU tests again with NCCL's all-reduce inside the graphs (diagnosis). Logs under $OUT.
#   [BUDGET=450] tools/dp_capture_check.sh
OUT_NAME=dp_capture_out BUDGET_DEFAULT=450 CAP_MARGIN=10
source "$(dirname "$0")/device_run.sh"
s "$(nvidia-smi -L | tr '\n' ' ')"
nvidia-smi topo -m 2>&1 | head -4 >> "$OUT/summary.txt"
if ! METALNN_BUILD_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=32 "$PY" -m pip install --no-build-isolation --no-deps . \
     > "$OUT/pip.log" 2>&1; then
  tail -30 "$OUT/pip.log"; s "pip install failed"; exit 1
fi
s "pip install ok"; rm -f "$OUT/pip.log"  # at most 8 files come back
(cd /tmp && "$PY" -c "import metalnn as m, metalnn._core as c; print(m.__file__, c.distributed.nccl_built)") \
  2>&1 | tee -a "$OUT/summary.txt"
timeout $(cap 120) "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda_distributed.py > "$OUT/test_dist.log" 2>&1
s "test_cuda_distributed: $(tail -1 "$OUT/test_dist.log")"
grep -E "^(FAILED|ERROR)|Error|assert" "$OUT/test_dist.log" | head -30
B="benchmarks/bench_distributed.py --device cuda --nproc 2 --batch-size 1024 --warmup 5 --reps 3"
timeout $(cap 160) "$PY" $B --nets digit --steps 300 --attribute --buckets 25:25,4:1 --timeout 60 \
  --json "$OUT/digit.json" > "$OUT/bench_digit.log" 2>&1
s "bench digit rc $?"; grep -E "^\|" "$OUT/bench_digit.log"
timeout $(cap 80) "$PY" $B --nets inception --steps 30 --timeout 60 \
  --json "$OUT/inception.json" > "$OUT/bench_inception.log" 2>&1
s "bench inception rc $?"; grep -E "^\|" "$OUT/bench_inception.log"
timeout $(cap 90) "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda_graph_capture.py > "$OUT/test_capture.log" 2>&1
s "test_cuda_graph_capture: $(tail -1 "$OUT/test_capture.log")"
grep -E "^(FAILED|ERROR)" "$OUT/test_capture.log" | head -10
# Diagnosis (issue #11's open mismatch): the two-GPU tests with distributed programs captured
# (opt-in) under each averaging: ncclSum + scale (default), ncclAvg, and the all-gather.
for a in sum avg gather; do
  METALNN_DISTRIBUTED_CUDA_GRAPHS=1 METALNN_DISTRIBUTED_GRAPH_ALLREDUCE=$a timeout $(cap 60) "$PY" -m pytest -q \
    -p no:cacheprovider tests/test_cuda_distributed.py > "$OUT/diag.log" 2>&1
  s "test_cuda_distributed, captured, averaging $a: $(tail -1 "$OUT/diag.log")"
  cat "$OUT/diag.log" >> "$OUT/test_dist_graph_allreduce.log"
done
rm -f "$OUT/diag.log"
s "done"
