#!/usr/bin/env bash
# Every table and figure of experiments/results/ on the synthetic benchmark (cpu preset), one command
# after the other. One queue, not two sharing the machine: on the 2-core CPU the native trade-off study's
# train and eval steps took 36.9 min of compute while another queue shared the machine and 13.0 min
# alone (the same 110 runs; headers of sweep_native_tradeoff_cpu.md at 59e29c2 and 5b9665e): TensorFlow's
# thread pools of two processes fight over two cores. Studies that share runs (the teachers, the main
# sweep's Students) train them once: finished runs are reused, so a stopped reproduction resumes.
#
#   bash tools/reproduce_cpu.sh            (or: make reproduce)
#
# Each command's wall time goes to experiments/results/run_times_cpu.md, with the commit, rewritten after
# every command (a stopped reproduction keeps the times of the commands that finished).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=experiments/results
LOG=$OUT/run_times_cpu.md
mkdir -p "$OUT"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
TIMES=$(mktemp -d)
trap 'rm -rf "$TIMES"' EXIT

timed() {  # timed COMMAND...: run, record "seconds<TAB>command", rewrite the log; stop on failure
  local start=$SECONDS out
  out="$TIMES/$(wc -l < "$TIMES/times.tsv").out"
  echo "[reproduce] $*" >&2
  "$@" > "$out" 2>&1 || {
    echo "[reproduce] FAILED: $* (last lines of its output below)" >&2
    tail -n 30 "$out" >&2
    write_log "FAILED: \`${*/#$PY/python}\` stopped on an error; the times below are of the commands that finished"
    return 1
  }
  printf '%s\t%s\n' "$((SECONDS - start))" "${*/#$PY/python}" >> "$TIMES/times.tsv"
  write_log "in progress: $(wc -l < "$TIMES/times.tsv") of $TOTAL commands finished"
}

write_log() {  # write_log STATUS: the times so far
  local total=$((SECONDS - BEGIN))
  {
    echo "# Run times of the cpu reproduction"
    echo
    echo "- Command: \`bash tools/reproduce_cpu.sh\`"
    echo "- Commit: \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`"
    echo "- Machine: $(nproc) CPUs; written $(date -u '+%Y-%m-%d %H:%M:%S') UTC"
    echo "- Wall time of the whole reproduction (one command after the other): $((total / 60)) min $((total % 60)) s"
    echo "- Status: $1"
    echo
    echo "| command | wall time |"
    echo "|---|---|"
    while IFS=$'\t' read -r s cmd; do
      echo "| \`$cmd\` | $((s / 60)) min $((s % 60)) s |"
    done < "$TIMES/times.tsv"
  } > "$LOG"
}

COMMANDS=(
  "-m ird_tf.experiments.sweep --config experiments/configs/sweep_cpu.yaml"
  "-m ird_tf.experiments.figure_attention --config experiments/configs/sweep_cpu.yaml --res 2.5"
  "-m ird_tf.experiments.figure_attention --config experiments/configs/sweep_cpu.yaml --res 1.25"
  "-m ird_tf.experiments.sweep --config experiments/configs/tuned_cpu.yaml"
  "-m ird_tf.experiments.sweep --config experiments/configs/ablation_maps_cpu.yaml --seeds 1"
  "-m ird_tf.experiments.sweep --config experiments/configs/ablation_norm_cpu.yaml --seeds 1"
  "-m ird_tf.experiments.plot_ablation $OUT/sweep_ablation_norm_cpu.csv"
  "-m ird_tf.experiments.label_free --config experiments/configs/label_free_cpu.yaml --seeds 1"
  "-m ird_tf.experiments.sweep --config experiments/configs/native_tradeoff_cpu.yaml"
  "-m ird_tf.experiments.sweep.tradeoff_plot $OUT/sweep_native_tradeoff_cpu.csv"
  "-m ird_tf.experiments.sweep --config experiments/configs/native_budget_cpu.yaml"
  "-m ird_tf.experiments.sweep --config experiments/configs/native_long_cpu.yaml"
)
TOTAL=${#COMMANDS[@]}
BEGIN=$SECONDS
: > "$TIMES/times.tsv"
for c in "${COMMANDS[@]}"; do
  # shellcheck disable=SC2086  # each entry is a command line: split it into words
  timed $PY $c
done
write_log "finished: all $TOTAL commands"
cat "$LOG"
