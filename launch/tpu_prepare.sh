#!/usr/bin/env bash
# Prepares LibriSpeech spectrogram shards and copies them to a Cloud Storage bucket.
#   bash launch/tpu_prepare.sh --out gs://BUCKET/librispeech_shards --source SOURCE
#       [--local-dir DIR] [--train-subsets GLOBS] [--test-subsets GLOBS] [--local]
#       [--skip-disk-check] [shared flags]
# --source         an extracted LibriSpeech directory on the machine that prepares
#                  (launch/get_librispeech.sh makes one), or tfds:librispeech/lazy_decode
#                  (TFDS downloads and builds it on first use). Required: neither fits every
#                  disk (see Disk below), so the choice is yours.
# --local-dir      where `python -m mirnet_jax.prepare` writes the shards before they are
#                  copied (default runs/librispeech/shards in the project directory)
# --train-subsets, --test-subsets   comma-separated globs, passed to prepare (defaults:
#                  train* for training, dev*,test* for unseen speakers; TFDS names its
#                  subsets train_clean100, ..., dev_clean, ...)
# --local          prepare on this machine instead of on worker 0 of the TPU VM
# --skip-disk-check  prepare even where the disk looks too small (the estimate below)
# prepare writes only to a local directory, so the shards are made there and then copied
# with `gcloud storage rsync`. On the TPU VM this runs in the background on worker 0
# (follow it with launch/tpu_logs.sh --job prepare); a rerun resumes, keeping finished
# shards.
# Disk, where it prepares: the shards take about 0.37 GB per hour of audio, about 360 GB
# for all of LibriSpeech (45 GB with --train-subsets train-clean-100); TFDS first
# downloads and builds all of LibriSpeech whichever subsets are chosen, about 180 GB more
# in $TFDS_DATA_DIR (default ~/tensorflow_datasets). A TPU VM's boot disk is 100 GB, so
# prepare all of it with --local on a machine with the disk; on worker 0, only a few
# subsets of an extracted LibriSpeech directory fit. Before it prepares, this estimate
# (for the LibriSpeech subsets the globs choose; of a directory, those it holds) is
# compared with the free space of the disk holding --local-dir, on worker 0 or here with
# --local, and TFDS's share with that of the disk holding $TFDS_DATA_DIR where that is
# another disk; what --local-dir and TFDS's librispeech folder already hold counts as done.
# Too little stops it, naming the size and the alternatives. The estimate knows only
# LibriSpeech's subsets: another corpus's are not counted.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=tpu_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/tpu_common.sh"

out=""
source=""
train_globs="train*"
test_globs="dev*,test*"
check_disk=1
local_dir=""
local_mode=0
subsets=()
while [ $# -gt 0 ]; do
  shift_by=1
  case "$1" in
    --out|--out=*) flag_value "$@"; out="$value" ;;
    --source|--source=*) flag_value "$@"; source="$value" ;;
    --local-dir|--local-dir=*) flag_value "$@"; local_dir="$value" ;;
    --train-subsets|--train-subsets=*)
      flag_value "$@"; train_globs="$value"; subsets+=(--train_subsets="$value") ;;
    --test-subsets|--test-subsets=*)
      flag_value "$@"; test_globs="$value"; subsets+=(--test_subsets="$value") ;;
    --local) local_mode=1 ;;
    --skip-disk-check) check_disk=0 ;;
    *) common_flag "$@" ;;
  esac
  shift "$shift_by"
done
require_gcs --out "$out"
out="${out%/}"
[ -n "$source" ] || die "--source is required: an extracted LibriSpeech directory where" \
  "it prepares (launch/get_librispeech.sh makes one) or tfds:librispeech/lazy_decode"
flags_done

# The disk check, a shell line run where it prepares (bash -c LINE disk-check OUT SOURCE
# TFDS_MB NAME:MB...): the MB each chosen subset's shards need (counted only if SOURCE is
# empty or has a NAME folder) less what OUT already holds, against the free space of the
# disk holding OUT; TFDS_MB for TFDS's own copy, less what its librispeech folder already
# holds, on the disk holding $TFDS_DATA_DIR: added to the shards' when that is OUT's disk,
# checked on its own when not. One line, ';'-separated: tpu_ssh turns newlines into
# spaces.
# shellcheck disable=SC2016  # expanded where it runs
disk_check='set -eu; out=$1; src=$2; tfds=$3; shift 3; need=0; what="";
  gb() { awk -v mb="$1" '"'"'BEGIN { printf "%.1f GB", mb / 1000 }'"'"'; };
  disk() { at="$1"; while [ ! -d "$at" ]; do at="$(dirname "$at")"; done;
    at="$(cd "$at" && pwd)";
    df -Pk "$at" | awk -v at="$at" '"'"'NR == 2 { printf "%d %s %s", $4 * 1.024 / 1000, $6, at }'"'"'; };
  refuse() { echo "error: $1 about $(gb "$2") more in $3; $(hostname) has"
      "$(gb "$4") free there: prepare with --local on a machine with the disk, choose"
      "fewer subsets (--train-subsets, --test-subsets), or download a few with"
      "launch/get_librispeech.sh and pass that directory as --source"
      "(--skip-disk-check if the estimate is wrong)" >&2; exit 1; };
  for subset in "$@"; do
    name="${subset%:*}";
    if [ -z "$src" ] || [ -d "$src/$name" ]; then
      need=$((need + ${subset#*:})); what="$what${what:+,}$name";
    fi;
  done;
  if [ -d "$out" ]; then need=$((need - $(du -sk "$out" | cut -f1) / 1000)); fi;
  read -r free mount at <<< "$(disk "$out")";
  shards="the shards of ${what:-no subset} (0.37 GB per hour of audio)";
  if [ "$tfds" -gt 0 ]; then
    tfds_dir="${TFDS_DATA_DIR:-$HOME/tensorflow_datasets}";
    if [ -d "$tfds_dir/librispeech" ]; then
      tfds=$((tfds - $(du -sk "$tfds_dir/librispeech" | cut -f1) / 1000));
    fi;
    if [ "$tfds" -lt 0 ]; then tfds=0; fi;
    read -r tfds_free tfds_mount tfds_at <<< "$(disk "$tfds_dir")";
    build="TFDS'"'"'s build of all of LibriSpeech";
    if [ "$tfds_mount" = "$mount" ]; then
      need=$((need + tfds));
      if [ "$tfds" -gt 0 ]; then shards="$shards and $build ($(gb "$tfds"))"; fi;
    elif [ "$tfds_free" -lt "$tfds" ]; then
      refuse "$build needs" "$tfds" "$tfds_at" "$tfds_free";
    fi;
  fi;
  if [ "$free" -lt "$need" ]; then refuse "$shards need" "$need" "$at" "$free"; fi'
disk_check="${disk_check//$'\n'/ }"

# Hours of audio of each LibriSpeech subset, in tenths, with its TFDS split name.
hours=(train-clean-100:train_clean100:1006 train-clean-360:train_clean360:3636
  train-other-500:train_other500:4967 dev-clean:dev_clean:54 dev-other:dev_other:53
  test-clean:test_clean:54 test-other:test_other:51)

disk_check_args() {  # disk_check_args OUT: sets check_args, the words after bash -c LINE
  local row name split tenths glob tfds_mb=0 chosen=() globs
  case "$source" in tfds:*) tfds_mb=180000 ;; esac
  IFS=, read -r -a globs <<< "$train_globs,$test_globs"
  for row in "${hours[@]}"; do
    IFS=: read -r name split tenths <<< "$row"
    if [ "$tfds_mb" -gt 0 ]; then name="$split"; fi
    for glob in "${globs[@]}"; do
      # shellcheck disable=SC2254  # the glob is meant to match
      case "$name" in $glob) chosen+=("$name:$((tenths * 37))"); break ;; esac
    done
  done
  local src="$source"
  if [ "$tfds_mb" -gt 0 ]; then src=""; fi
  check_args=("$1" "$src" "$tfds_mb" ${chosen[@]+"${chosen[@]}"})
}

if [ "$local_mode" = 1 ]; then
  python="python3"
  if [ -x "$repo_root/.venv/bin/python" ]; then python="$repo_root/.venv/bin/python"; fi
  local_dir="${local_dir:-$repo_root/runs/librispeech/shards}"
  if [ "$check_disk" = 1 ]; then
    disk_check_args "$local_dir"
    if [ "$dry_run" = 1 ]; then run bash -c "$disk_check" disk-check "${check_args[@]}"
    else bash -c "$disk_check" disk-check "${check_args[@]}"; fi
  fi
  run "$python" -m mirnet_jax.prepare --source="$source" --out="$local_dir" \
    ${subsets[@]+"${subsets[@]}"}
  run gcloud storage rsync --recursive "$local_dir" "$out"
  exit 0
fi

local_dir="${local_dir:-runs/librispeech/shards}"
job="set -e; $(quote_all .venv/bin/python -m mirnet_jax.prepare --source="$source" \
  --out="$local_dir" ${subsets[@]+"${subsets[@]}"}); $(quote_all gcloud storage rsync \
  --recursive "$local_dir" "$out"); $(quote_all echo shards copied to "$out")"
check=""
if [ "$check_disk" = 1 ]; then
  disk_check_args "$local_dir"
  # In a subshell: the line background makes starts from the home directory too.
  check="($(quote_all cd "$remote_dir") && $(quote_all bash -c "$disk_check" disk-check \
    "${check_args[@]}")) || exit 1; "
fi
tpu_ssh 0 "$check$(background prepare "bash -c $(quote "$job")")"
