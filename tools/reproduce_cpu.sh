#!/usr/bin/env bash
# Every table and figure of experiments/results/ on the synthetic benchmark (cpu preset), in two queues
# that share the machine (a 2-core CPU: about one core each). Runs that two commands need (the teachers,
# the main sweep's students that the ablations, label-free and tuned studies compare with) are trained
# once: a run directory is locked by the process training it and the other one waits and reuses it.
# Finished runs are reused when this is started again, so a stopped reproduction resumes.
#
#   bash tools/reproduce_cpu.sh            (or: make reproduce)
#
# Each command's wall time goes to experiments/results/run_times_cpu.md, with the commit.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=experiments/results
LOG=$OUT/run_times_cpu.md
mkdir -p "$OUT"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
TIMES=$(mktemp -d)
trap 'rm -rf "$TIMES"' EXIT

timed() {  # timed QUEUE COMMAND...: run, record "queue<TAB>seconds<TAB>command", stop the queue on failure
  local queue=$1; shift
  local start=$SECONDS
  echo "[$queue] $*" >&2
  "$@" > "$TIMES/$queue.$start.out" 2>&1 || {
    echo "[$queue] FAILED: $* (last lines below; full output in $TIMES/$queue.$start.out)" >&2
    tail -n 30 "$TIMES/$queue.$start.out" >&2
    return 1
  }
  printf '%s\t%s\t%s\n' "$queue" "$((SECONDS - start))" "${*/#$PY/python}" >> "$TIMES/times.tsv"
}

# Queue A: the main sweep, its attention figures and the tuned study (which reuses the sweep's fixed-
# weight Students); queue B: the ablations, label-free and the native studies (which reuse the sweep's
# upsampled Students). Each queue takes about half of the whole when both share the machine.
queue_a() {
  timed A $PY -m ird_tf.experiments.sweep --config experiments/configs/sweep_cpu.yaml
  timed A $PY -m ird_tf.experiments.figure_attention --config experiments/configs/sweep_cpu.yaml --res 2.5
  timed A $PY -m ird_tf.experiments.figure_attention --config experiments/configs/sweep_cpu.yaml --res 1.25
  timed A $PY -m ird_tf.experiments.sweep --config experiments/configs/tuned_cpu.yaml
}

queue_b() {
  timed B $PY -m ird_tf.experiments.sweep --config experiments/configs/ablation_maps_cpu.yaml --seeds 1
  timed B $PY -m ird_tf.experiments.sweep --config experiments/configs/ablation_norm_cpu.yaml --seeds 1
  timed B $PY -m ird_tf.experiments.plot_ablation $OUT/sweep_ablation_norm_cpu.csv
  timed B $PY -m ird_tf.experiments.label_free --config experiments/configs/label_free_cpu.yaml --seeds 1
  timed B $PY -m ird_tf.experiments.sweep --config experiments/configs/native_tradeoff_cpu.yaml
  timed B $PY -m ird_tf.experiments.sweep.tradeoff_plot $OUT/sweep_native_tradeoff_cpu.csv
  timed B $PY -m ird_tf.experiments.sweep --config experiments/configs/native_budget_cpu.yaml
  timed B $PY -m ird_tf.experiments.sweep --config experiments/configs/native_long_cpu.yaml
}

start=$SECONDS
queue_a & a=$!
queue_b & b=$!
status=0
wait $a || status=1
wait $b || status=1
total=$((SECONDS - start))

{
  echo "# Run times of the cpu reproduction"
  echo
  echo "- Command: \`bash tools/reproduce_cpu.sh\`"
  echo "- Commit: \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`"
  echo "- Machine: $(nproc) CPUs; finished $(date -u '+%Y-%m-%d %H:%M:%S') UTC"
  echo "- Wall time of the whole reproduction (two queues at once): $((total / 60)) min $((total % 60)) s"
  [ $status -eq 0 ] || echo "- FAILED: a queue stopped on an error; the times below are of the commands that finished"
  echo
  echo "| queue | command | wall time |"
  echo "|---|---|---|"
  sort -s -k1,1 "$TIMES/times.tsv" | while IFS=$'\t' read -r q s cmd; do
    echo "| $q | \`$cmd\` | $((s / 60)) min $((s % 60)) s |"
  done
} > "$LOG"
cat "$LOG"
exit $status
