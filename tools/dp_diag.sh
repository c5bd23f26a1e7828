#!/usr/bin/env bash
# On a lent 2-GPU machine, in one call (issue #11 diagnosis): pip install with CUDA, then
# tools/dp_diag.py (two GPUs vs one, step by step, under several variants). Logs under $OUT.
#   [BUDGET=540] [REPS=3] [VARIANTS=eager,captured,...] tools/dp_diag.sh
OUT_NAME=dp_diag_out BUDGET_DEFAULT=540 CAP_MARGIN=15
source "$(dirname "$0")/device_run.sh"
s "$(nvidia-smi -L | tr '\n' ' ')"
if ! METALNN_BUILD_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=32 "$PY" -m pip install --no-build-isolation --no-deps . \
     > "$OUT/pip.log" 2>&1; then
  tail -30 "$OUT/pip.log"; s "pip install failed"; exit 1
fi
s "pip install ok"; rm -f "$OUT/pip.log"
left=$(cap 600)
timeout "$left" "$PY" tools/dp_diag.py --reps "${REPS:-3}" --budget $(( left - 40 )) --json "$OUT/dp_diag.json" \
  ${VARIANTS:+--variants "$VARIANTS"} > "$OUT/dp_diag.log" 2>&1
s "dp_diag rc $?"
grep -E "^(1 GPU|summary)" "$OUT/dp_diag.log" | tee -a "$OUT/summary.txt"
tail -c 6000 "$OUT/dp_diag.log"
