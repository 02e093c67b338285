#!/usr/bin/env bash
# The main job on the embedded demo corpus, from a fresh machine:
#   bash launch/demo.sh [--root DIR]
# Stages (each skipped when its output is already complete):
#   1. DIR/corpus   the espeak-ng demo corpus in LibriSpeech layout
#   2. DIR/shards   precomputed spectrogram shards + manifest
#   3. DIR/workdir  training of configs/demo.py (resumes from its last checkpoint)
#   4. DIR/workdir/eval  the paper's verification protocol: EER table and plots
#   5. DIR/{speaker,vf_mirnet,vf_enrolled,upit}  the enrolled baseline's speaker model
#      (configs/speaker.py:demo) and the three separators of the paper's Table 2
#      (configs/separation.py:<system>,demo)
#   6. DIR/eval     separation of unseen speakers: SDRi / SI-SDRi / PESQi table
set -euo pipefail
root="runs/demo"
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="${2:?--root needs a directory}"; shift 2 ;;
    --root=*) root="${1#--root=}"; shift ;;
    -h|--help) sed -n "2,12p" "$0"; exit 0 ;;
    *) echo "error: unknown argument '$1' (usage: bash launch/demo.sh [--root DIR])" >&2; exit 2 ;;
  esac
done
case "$root" in /*) ;; *) root="$PWD/$root" ;; esac
# [separation]: mir_eval and pesq for the separation table of stage 6.
# shellcheck source-path=SCRIPTDIR source=setup_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh" "separation"
mkdir -p "$root/workdir"

if [ -f "$root/corpus/SPEAKERS.TXT" ]; then
  echo "[1/6] demo corpus: complete, skipped ($root/corpus)"
else
  echo "[1/6] demo corpus -> $root/corpus"
  python -m mirnet_jax.demo_corpus --out="$root/corpus"
fi

if [ -f "$root/shards/manifest.json" ]; then
  echo "[2/6] shards: complete, skipped ($root/shards)"
  python -c "import sys, json; from mirnet_jax import prepare; \
print(prepare.summary(json.load(open(sys.argv[1]))))" "$root/shards/manifest.json"
else
  echo "[2/6] spectrogram shards -> $root/shards"
  python -m mirnet_jax.prepare --source="$root/corpus" --out="$root/shards"
fi

echo "[3/6] training configs/demo.py -> $root/workdir"
python -m mirnet_jax.main --config=configs/demo.py --workdir="$root/workdir" \
  --config.data.shards="$root/shards"
# The validation curve of a workdir: curve WORKDIR METRIC LABEL
curve() {
  python - "$1" "$2" "$3" <<'PY'
import sys
from mirnet_jax import metric_writers
workdir, metric, label = sys.argv[1:]
val = [(r["step"], r[metric]) for r in metric_writers.read_rows(workdir) if metric in r]
fmt = (lambda a: f"{100 * a:.1f}%") if metric.endswith("accuracy") else (lambda a: f"{a:.2f}")
print(f"{label} by step (demo corpus): " + ", ".join(f"{s}: {fmt(a)}" for s, a in val))
PY
}
curve "$root/workdir" val/accuracy "validation PIT accuracy"

results="$root/workdir/eval/results.json"
if [ -f "$results" ] && [ "$results" -nt "$root/workdir/checkpoints" ]; then
  echo "[4/6] evaluation: complete, skipped ($results)"
  python -m mirnet_jax.evaluate --workdir="$root/workdir" --report_only
else
  echo "[4/6] evaluation -> $root/workdir/eval"
  python -m mirnet_jax.evaluate --workdir="$root/workdir"
fi

# The speaker model first: the enrolled baseline is conditioned on it, as vf_mirnet is on
# the MIRNet of stage 3.
for system in speaker vf_mirnet vf_enrolled upit; do
  case "$system" in
    speaker) config="configs/speaker.py:demo" ;;
    *) config="configs/separation.py:$system,demo" ;;
  esac
  echo "[5/6] training $config -> $root/$system"
  condition=()
  case "$system" in
    vf_mirnet) condition=(--config.condition.workdir="$root/workdir") ;;
    vf_enrolled) condition=(--config.condition.workdir="$root/speaker") ;;
  esac
  python -m mirnet_jax.main --config="$config" --workdir="$root/$system" \
    --config.data.shards="$root/shards" "${condition[@]}"
  case "$system" in
    speaker) curve "$root/$system" val/accuracy "$system: validation accuracy" ;;
    *) curve "$root/$system" val/snri "$system: validation SNRi (dB)" ;;
  esac
done

separation="$root/eval/separation.json"
current=yes  # results newer than every separator's checkpoints
for system in vf_mirnet vf_enrolled upit; do
  [ -f "$separation" ] && [ "$separation" -nt "$root/$system/checkpoints" ] || current=no
done
if [ "$current" = yes ]; then
  echo "[6/6] separation evaluation: complete, skipped ($separation)"
  python -m mirnet_jax.evaluate_separation --workdir="$root" --report_only
else
  echo "[6/6] separation evaluation -> $root/eval"
  python -m mirnet_jax.evaluate_separation --workdir="$root"
fi
