# Sourced by the one-call GPU-machine scripts (cuda_graph_ab.sh, cuda_graph_check.sh,
# dp_diag.sh) after they set OUT_NAME, BUDGET_DEFAULT and CAP_MARGIN: goes to the repo
# root, makes $OUT, and defines s (log a line to $OUT/summary.txt, with the seconds so far) and
# cap N (seconds for the next stage: at most N, never past $BUDGET overall minus the margin).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-$PWD/${OUT_NAME:-device_out}}"; mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0  # never NVLink multicast on shared machines
t0=$(date +%s)
s() { echo "== [$(( $(date +%s) - t0 )) s] $*" | tee -a "$OUT/summary.txt"; }
cap() {
  local l=$(( ${BUDGET:-${BUDGET_DEFAULT:-340}} - ($(date +%s) - t0) - ${CAP_MARGIN:-20} ))
  (( l < $1 )) && echo $(( l > 5 ? l : 5 )) || echo "$1"
}
