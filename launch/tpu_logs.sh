#!/usr/bin/env bash
# Follows a job's log on the TPU VM: whether the job is running, then `tail -F` of its log.
#   bash launch/tpu_logs.sh [--job train|prepare] [--worker 0|N|all] [--lines 100]
#       [--no-follow] [shared flags]
# --job        train (launch/tpu_train.sh, default) or prepare (launch/tpu_prepare.sh)
# --worker     which worker's log (default 0: process 0 logs the metrics); all: every
#              worker's, interleaved
# --no-follow  print the last --lines lines and return instead of following (Ctrl-C ends
#              following; the job goes on)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=tpu_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/tpu_common.sh"

job="train"
worker="0"
lines="100"
follow=1
while [ $# -gt 0 ]; do
  shift_by=1
  case "$1" in
    --job|--job=*) flag_value "$@"; job="$value" ;;
    --worker|--worker=*) flag_value "$@"; worker="$value" ;;
    --lines|--lines=*) flag_value "$@"; lines="$value" ;;
    --no-follow) follow=0 ;;
    *) common_flag "$@" ;;
  esac
  shift "$shift_by"
done
case "$job" in train|prepare) ;; *) die "--job is train or prepare, not '$job'" ;; esac
case "$worker" in all) ;; *[!0-9]*) die "--worker is a number or all, not '$worker'" ;; esac
case "$lines" in *[!0-9]*) die "--lines is a number, not '$lines'" ;; esac
flags_done

pid="logs/$job.pid"
tail_flags="-n $lines"
if [ "$follow" = 1 ]; then tail_flags+=" -F"; fi
tpu_ssh "$worker" "cd $(quote "$remote_dir") &&
    if [ -f $pid ] && kill -0 \"\$(cat $pid)\" 2>/dev/null;
    then echo \"\$(hostname): $job is running (pid \$(cat $pid))\";
    else echo \"\$(hostname): $job is not running\"; fi; tail $tail_flags logs/$job.log"
