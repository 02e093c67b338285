#!/usr/bin/env bash
# Starts training on every worker of the TPU VM, in the background: each worker runs
#   python -m mirnet_jax.main --config=CONFIG --workdir=WORKDIR --config.data.shards=SHARDS
# under nohup in ~/DIR, appending to ~/DIR/logs/train.log (follow it with launch/tpu_logs.sh).
#   bash launch/tpu_train.sh --workdir gs://BUCKET/runs/mirnet
#       --shards gs://BUCKET/librispeech_shards [--config configs/tpu.py]
#       [--config.FIELD=VALUE ...] [--stop] [shared flags]
# --config CONFIG        configs/NAME.py[:ARG] names the packaged mirnet_jax/configs/NAME.py
#                        unless the workers have a file at that path (default configs/tpu.py)
# --config.FIELD=VALUE   any config override, passed on (e.g. --config.num_train_steps=40000)
# --stop                 send SIGTERM instead: training saves a checkpoint and exits
# Rerunning the same command resumes from the last checkpoint in --workdir, also on a new
# TPU VM after a preemption (create, install, then rerun this).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=tpu_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/tpu_common.sh"

workdir=""
shards=""
config="configs/tpu.py"
overrides=()
stop=0
while [ $# -gt 0 ]; do
  shift_by=1
  case "$1" in
    --workdir|--workdir=*) flag_value "$@"; workdir="$value" ;;
    --shards|--shards=*) flag_value "$@"; shards="$value" ;;
    --config|--config=*) flag_value "$@"; config="$value" ;;
    --config.*=*) overrides+=("$1") ;;
    --stop) stop=1 ;;
    *) common_flag "$@" ;;
  esac
  shift "$shift_by"
done
if [ "$stop" = 0 ]; then
  require_gcs --workdir "$workdir"
  require_gcs --shards "$shards"
fi
flags_done

if [ "$stop" = 1 ]; then
  tpu_ssh all "cd $(quote "$remote_dir") &&
    if [ -f logs/train.pid ] && kill -TERM \"\$(cat logs/train.pid)\" 2>/dev/null;
    then echo \"\$(hostname): SIGTERM sent; training saves a checkpoint and exits\";
    else echo \"\$(hostname): training is not running\"; fi"
  exit 0
fi
train=(.venv/bin/python -m mirnet_jax.main --config="$config" --workdir="${workdir%/}"
       --config.data.shards="${shards%/}" ${overrides[@]+"${overrides[@]}"})
tpu_ssh all "$(background train "$(quote_all "${train[@]}")")"
