# shellcheck shell=bash
# Sourced by launch/demo.sh and launch/test.sh: installs what is missing, then activates
# the project's virtual environment. Usage: source launch/setup_env.sh [EXTRAS]
# EXTRAS: pip extras of the package, e.g. "tfds,test".
set -euo pipefail

_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_extras="${1:-}"

_as_root() {  # runs a command as root, or says how to and fails
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
  else echo "error: '$*' needs root; run it with sudo, then rerun this script" >&2; return 1
  fi
}

_apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "error: please install $* with your package manager, then rerun this script" >&2
    return 1
  fi
  _as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive _as_root apt-get install -y -qq "$@" >/dev/null
}

command -v espeak-ng >/dev/null || { echo "installing espeak-ng"; _apt_install espeak-ng; }

if ! python3 -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null; then
  echo "error: mirnet_jax needs Python >= 3.10 as python3" >&2; exit 1
fi
if [ ! -x "$_repo/.venv/bin/python" ]; then
  if ! python3 -m venv "$_repo/.venv" 2>/dev/null; then
    rm -rf "$_repo/.venv"
    _apt_install python3-venv
    python3 -m venv "$_repo/.venv"
  fi
fi

# Reinstall only when the package metadata or the pins change.
_stamp="$_repo/.venv/.installed-$(cat "$_repo/setup.cfg" "$_repo/constraints.txt" | sha1sum | cut -c1-12)-${_extras//,/_}"
if [ ! -f "$_stamp" ]; then
  echo "installing mirnet_jax${_extras:+[$_extras]} into .venv"
  "$_repo/.venv/bin/pip" install -q --disable-pip-version-check --upgrade pip
  "$_repo/.venv/bin/pip" install -q --disable-pip-version-check -c "$_repo/constraints.txt" \
    -e "$_repo${_extras:+[$_extras]}"
  touch "$_stamp"
fi
# shellcheck disable=SC1091
source "$_repo/.venv/bin/activate"
cd "$_repo"
