# shellcheck shell=bash
# Sourced by launch/tpu_*.sh: the flags they share, --dry-run, and quoting.
#
# Shared flags (the environment variable, when set, replaces the default):
#   --name NAME        TPU VM (and queued resource) name; $MIRNET_TPU_NAME, default mirnet-tpu
#   --zone ZONE        $MIRNET_TPU_ZONE, default us-central2-b (where v4 slices are)
#   --project PROJECT  $MIRNET_TPU_PROJECT, default: gcloud's configured project
#   --dir DIR          the project's directory on the workers, relative to the home
#                      directory; $MIRNET_TPU_DIR, default mirnet_jax
#   --dry-run          print the commands, one per line and shell-quoted, instead of running them
#   -h, --help
# The variables set here are read by the scripts that source this file.
# shellcheck disable=SC2034
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tpu_name="${MIRNET_TPU_NAME:-mirnet-tpu}"
tpu_zone="${MIRNET_TPU_ZONE:-us-central2-b}"
tpu_project="${MIRNET_TPU_PROJECT:-}"
remote_dir="${MIRNET_TPU_DIR:-mirnet_jax}"
dry_run=0

die() {  # one line on stderr, exit status 2
  echo "error: $* (see: bash $0 --help)" >&2
  exit 2
}

usage() {  # the comment block at the top of the running script, then the shared flags
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
  echo
  awk 'NR == 1 { next } /^# Shared flags/, /^#   -h/ { sub(/^# ?/, ""); print }' \
    "${BASH_SOURCE[0]}"
}

quote() {  # one word, single-quoted only when the shell would otherwise change it
  case "$1" in
    --*=*)  # --flag='value', easier to read than '--flag=value'
      case "${1%%=*}" in
        *[!_[:alnum:]-]*) ;;
        *) printf '%s=' "${1%%=*}"; quote "${1#*=}"; return ;;
      esac ;;
  esac
  case "$1" in
    "") printf "''" ;;
    *[!-[:alnum:]_./:=@%+,]*) printf "'%s'" "${1//\'/\'\\\'\'}" ;;
    *) printf '%s' "$1" ;;
  esac
}

quote_all() {  # the words as one shell line
  local line="" word
  for word in "$@"; do line+="${line:+ }$(quote "$word")"; done
  printf '%s' "$line"
}

run() {  # --dry-run: prints the command; otherwise echoes it to stderr and runs it
  if [ "$dry_run" = 1 ]; then
    quote_all "$@"; echo
  else
    echo "+ $(quote_all "$@")" >&2
    "$@"
  fi
}

flag_value() {  # "--flag=VALUE" or "--flag VALUE": sets value and shift_by
  case "$1" in
    --*=*) value="${1#*=}"; shift_by=1 ;;
    *) value="${2:-}"; shift_by=2 ;;
  esac
  case "$value" in ""|--*) die "${1%%=*} needs a value" ;; esac
}

common_flag() {  # one of the shared flags, or an error; sets shift_by
  case "$1" in
    --name|--name=*) flag_value "$@"; tpu_name="$value" ;;
    --zone|--zone=*) flag_value "$@"; tpu_zone="$value" ;;
    --project|--project=*) flag_value "$@"; tpu_project="$value" ;;
    --dir|--dir=*) flag_value "$@"; remote_dir="$value" ;;
    --dry-run) dry_run=1; shift_by=1 ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown flag '$1'" ;;
    *) die "unexpected argument '$1'" ;;
  esac
}

flags_done() {  # after parsing: the --zone/--project words of every gcloud command
  where=(--zone="$tpu_zone")
  if [ -n "$tpu_project" ]; then where+=(--project="$tpu_project"); fi
  if [ "$dry_run" = 0 ] && ! command -v gcloud >/dev/null; then
    echo "error: gcloud is not on PATH: install the Google Cloud CLI and run" \
      "'gcloud auth login', or use --dry-run to see the commands" >&2
    exit 1
  fi
}

require() {  # require FLAG VALUE
  [ -n "$2" ] || die "$1 is required"
}

require_gcs() {  # require_gcs FLAG VALUE: a gs:// URL
  require "$1" "$2"
  case "$2" in gs://?*) ;; *) die "$1 must be a gs:// URL, not '$2'" ;; esac
}

tpu_ssh() {  # tpu_ssh WORKER COMMAND: runs the shell line COMMAND on worker(s) WORKER; a
  # newline in COMMAND and the indentation after it become one space
  local line="$2"
  while [[ "$line" == *$'\n '* ]]; do line="${line//$'\n '/$'\n'}"; done
  run gcloud compute tpus tpu-vm ssh "$tpu_name" "${where[@]}" --worker="$1" \
    --command="${line//$'\n'/ }"
}

background() {  # background JOB LINE: a shell line for the workers that starts LINE (quoted)
  # in ~/DIR with nohup, appending to logs/JOB.log, unless JOB is already running there
  local pid="logs/$1.pid"
  printf '%s' "set -eu; cd $(quote "$remote_dir"); mkdir -p logs; " \
    "if [ -f $pid ] && kill -0 \"\$(cat $pid)\" 2>/dev/null; then " \
    "echo \"error: $1 is already running on \$(hostname) (pid \$(cat $pid))\" >&2; exit 1; fi; " \
    "setsid nohup $2 >> logs/$1.log 2>&1 < /dev/null & echo \$! > $pid; " \
    "echo \"\$(hostname): $1 started (pid \$!), log: ~/$remote_dir/logs/$1.log\""
}
