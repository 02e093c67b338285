#!/usr/bin/env bash
# Creates a Cloud TPU VM for mirnet_jax, directly or as a queued resource.
#   bash launch/tpu_create.sh [--accelerator-type v4-8] [--runtime-version VERSION]
#       [--spot | --preemptible] [--queued [--no-wait]] [shared flags]
# --accelerator-type   slice type, e.g. v4-8, v4-32, v5litepod-8, v5p-8, v6e-8 (default v4-8)
# --runtime-version    TPU software version; default from the type: tpu-ubuntu2204-base
#                      (v4 and older), v2-alpha-tpuv5-lite (v5e), v2-alpha-tpuv5 (v5p),
#                      v2-alpha-tpuv6e (v6e)
# --spot               a Spot TPU: much cheaper, preempted whenever capacity is needed
# --preemptible        a preemptible TPU (at most 24 h; not with --queued)
# --queued             request it as a queued resource (NAME names the queued resource and
#                      its TPU VM) and wait until it is ACTIVE; --no-wait returns at once
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=tpu_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/tpu_common.sh"

accelerator="v4-8"
runtime=""
provisioning=""
queued=0
wait=1
while [ $# -gt 0 ]; do
  shift_by=1
  case "$1" in
    --accelerator-type|--accelerator-type=*) flag_value "$@"; accelerator="$value" ;;
    --runtime-version|--runtime-version=*) flag_value "$@"; runtime="$value" ;;
    --spot|--preemptible)
      if [ -n "$provisioning" ] && [ "$provisioning" != "$1" ]; then
        die "--spot and --preemptible exclude each other"
      fi
      provisioning="$1" ;;
    --queued) queued=1 ;;
    --no-wait) wait=0 ;;
    *) common_flag "$@" ;;
  esac
  shift "$shift_by"
done
if [ -z "$runtime" ]; then
  case "$accelerator" in
    v5litepod-*|v5e-*) runtime="v2-alpha-tpuv5-lite" ;;
    v5p-*) runtime="v2-alpha-tpuv5" ;;
    v6e-*) runtime="v2-alpha-tpuv6e" ;;
    *) runtime="tpu-ubuntu2204-base" ;;
  esac
fi
if [ "$queued" = 1 ] && [ "$provisioning" = "--preemptible" ]; then
  die "queued resources take --spot, not --preemptible"
fi
flags_done

if [ "$queued" = 0 ]; then
  run gcloud compute tpus tpu-vm create "$tpu_name" "${where[@]}" \
    --accelerator-type="$accelerator" --version="$runtime" ${provisioning:+"$provisioning"}
  exit 0
fi

run gcloud compute tpus queued-resources create "$tpu_name" "${where[@]}" \
  --node-id="$tpu_name" --accelerator-type="$accelerator" --runtime-version="$runtime" \
  ${provisioning:+"$provisioning"}
describe=(gcloud compute tpus queued-resources describe "$tpu_name" "${where[@]}")
state_command=("${describe[@]}" --format="value(state.state)")
if [ "$dry_run" = 1 ] || [ "$wait" = 0 ]; then
  run "${state_command[@]}"
  exit 0
fi
state=""
while :; do
  new_state="$("${state_command[@]}")"
  [ "$new_state" = "$state" ] || echo "queued resource $tpu_name: $new_state" >&2
  state="$new_state"
  case "$state" in
    ACTIVE) break ;;
    FAILED|SUSPENDING|SUSPENDED)
      echo "error: queued resource $tpu_name is $state; see:" \
        "$(quote_all "${describe[@]}")" >&2
      exit 1 ;;
  esac
  sleep 30
done
