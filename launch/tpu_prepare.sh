#!/usr/bin/env bash
# Prepares LibriSpeech spectrogram shards and copies them to a Cloud Storage bucket.
#   bash launch/tpu_prepare.sh --out gs://BUCKET/librispeech_shards [--source SOURCE]
#       [--local-dir DIR] [--train-subsets GLOBS] [--test-subsets GLOBS] [--local] [shared flags]
# --source         tfds:librispeech (default: TFDS downloads and builds it on first use) or
#                  an extracted LibriSpeech directory on the machine that prepares
# --local-dir      where `python -m mirnet_jax.prepare` writes the shards before they are
#                  copied (default runs/librispeech/shards in the project directory)
# --train-subsets, --test-subsets   comma-separated globs, passed to prepare (its defaults:
#                  train* for training, dev*,test* for unseen speakers)
# --local          prepare on this machine instead of on worker 0 of the TPU VM
# prepare writes only to a local directory, so the shards are made there and then copied
# with `gcloud storage rsync`. On the TPU VM this runs in the background on worker 0 (follow
# it with launch/tpu_logs.sh --job prepare); a rerun resumes, keeping finished shards.
# Disk, where it prepares: the shards take about 0.37 GB per hour of audio, about 360 GB for
# all of LibriSpeech (45 GB with --train-subsets train-clean-100); TFDS first downloads and
# builds all of LibriSpeech whichever subsets are chosen, about 180 GB more in
# $TFDS_DATA_DIR (default ~/tensorflow_datasets). A TPU VM's boot disk is 100 GB, so prepare
# all of it with --local on a machine with the disk; on worker 0, only a few subsets of an
# extracted LibriSpeech directory fit.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=tpu_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/tpu_common.sh"

out=""
source="tfds:librispeech"
local_dir=""
local_mode=0
subsets=()
while [ $# -gt 0 ]; do
  shift_by=1
  case "$1" in
    --out|--out=*) flag_value "$@"; out="$value" ;;
    --source|--source=*) flag_value "$@"; source="$value" ;;
    --local-dir|--local-dir=*) flag_value "$@"; local_dir="$value" ;;
    --train-subsets|--train-subsets=*) flag_value "$@"; subsets+=(--train_subsets="$value") ;;
    --test-subsets|--test-subsets=*) flag_value "$@"; subsets+=(--test_subsets="$value") ;;
    --local) local_mode=1 ;;
    *) common_flag "$@" ;;
  esac
  shift "$shift_by"
done
require_gcs --out "$out"
out="${out%/}"
flags_done

if [ "$local_mode" = 1 ]; then
  python="python3"
  if [ -x "$repo_root/.venv/bin/python" ]; then python="$repo_root/.venv/bin/python"; fi
  local_dir="${local_dir:-$repo_root/runs/librispeech/shards}"
  run "$python" -m mirnet_jax.prepare --source="$source" --out="$local_dir" \
    ${subsets[@]+"${subsets[@]}"}
  run gcloud storage rsync --recursive "$local_dir" "$out"
  exit 0
fi

local_dir="${local_dir:-runs/librispeech/shards}"
job="set -e; $(quote_all .venv/bin/python -m mirnet_jax.prepare --source="$source" \
  --out="$local_dir" ${subsets[@]+"${subsets[@]}"}); $(quote_all gcloud storage rsync \
  --recursive "$local_dir" "$out"); $(quote_all echo shards copied to "$out")"
tpu_ssh 0 "$(background prepare "bash -c $(quote "$job")")"
