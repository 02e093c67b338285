#!/usr/bin/env bash
# Deletes the TPU VM, or with --queued the queued resource and its TPU VM. The bucket
# (shards, checkpoints, metrics) is kept.
#   bash launch/tpu_delete.sh [--queued] [--yes] [shared flags]
# --queued   the TPU was made with launch/tpu_create.sh --queued
# --yes      do not ask for confirmation
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=tpu_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/tpu_common.sh"

queued=0
quiet=()
while [ $# -gt 0 ]; do
  shift_by=1
  case "$1" in
    --queued) queued=1 ;;
    --yes) quiet=(--quiet) ;;
    *) common_flag "$@" ;;
  esac
  shift "$shift_by"
done
flags_done

if [ "$queued" = 1 ]; then
  # --force deletes the queued resource's TPU VM first.
  run gcloud compute tpus queued-resources delete "$tpu_name" "${where[@]}" --force \
    ${quiet[@]+"${quiet[@]}"}
else
  run gcloud compute tpus tpu-vm delete "$tpu_name" "${where[@]}" ${quiet[@]+"${quiet[@]}"}
fi
