#!/usr/bin/env bash
# Installs mirnet_jax on every worker of a TPU VM, then checks that JAX sees the TPU (each
# worker prints its process index, the slice's device count and the device kind).
#   bash launch/tpu_install.sh [--repo URL [--ref BRANCH]] [--python 3.11] [shared flags]
# Code: this working tree (committed or not; without .git, .venv, runs/) is copied to ~/DIR
# on every worker, or, with --repo, ~/DIR is a git clone of URL (pulled when it exists).
# Environment: ~/DIR/.venv, made by uv (installed with pip --user) with the given Python
# (the pinned packages need >= 3.11, Ubuntu 22.04 TPU images have 3.10: uv downloads one),
# then `pip install -c constraints.txt -e .[tpu,gcs,tfds]` (jax with the libtpu of its
# release, gs:// workdirs and shards, TFDS sources). Rerunning updates the code and the
# packages; an existing .venv is kept.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=tpu_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/tpu_common.sh"

repo=""
ref=""
python_version="3.11"
while [ $# -gt 0 ]; do
  shift_by=1
  case "$1" in
    --repo|--repo=*) flag_value "$@"; repo="$value" ;;
    --ref|--ref=*) flag_value "$@"; ref="$value" ;;
    --python|--python=*) flag_value "$@"; python_version="$value" ;;
    *) common_flag "$@" ;;
  esac
  shift "$shift_by"
done
[ -z "$ref" ] || [ -n "$repo" ] || die "--ref needs --repo"
flags_done

dir="$(quote "$remote_dir")"
if [ -z "$repo" ]; then
  archive="${TMPDIR:-/tmp}/mirnet_jax-$tpu_name.tar.gz"
  run tar -czf "$archive" --exclude=./.git --exclude=./.venv --exclude=./runs \
    --exclude=./.pytest_cache --exclude=./.hypothesis --exclude=./.ruff_cache --exclude=./build \
    --exclude=__pycache__ '--exclude=*.egg-info' -C "$repo_root" .
  run gcloud compute tpus tpu-vm scp "$archive" "$tpu_name:mirnet_jax_src.tar.gz" \
    "${where[@]}" --worker=all
  tpu_ssh all "set -eu; mkdir -p $dir; tar -xzf mirnet_jax_src.tar.gz -C $dir;
    rm mirnet_jax_src.tar.gz"
else
  clone=(git clone --quiet)
  if [ -n "$ref" ]; then clone+=(--branch "$ref"); fi
  tpu_ssh all "set -eu; if [ -d $dir/.git ]; then git -C $dir pull --quiet --ff-only;
    else $(quote_all "${clone[@]}" "$repo" "$remote_dir"); fi"
fi

# shellcheck disable=SC2016  # $HOME is the worker's, expanded there
uv='"$HOME/.local/bin/uv"'
tpu_ssh all "set -eu; cd $dir; [ -x $uv ] || python3 -m pip install --quiet --user uv;
    [ -x .venv/bin/python ] || $uv venv --quiet --python $(quote "$python_version") .venv;
    $uv pip install --quiet --python .venv/bin/python -c constraints.txt
    -e \".[tpu,gcs,tfds]\""
tpu_ssh all "cd $dir && .venv/bin/python -c \"import jax;
    print(jax.process_index(), jax.device_count(), jax.devices()[0].device_kind)\""
