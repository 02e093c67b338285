# shellcheck shell=bash
# Sourced by launch/demo.sh and launch/test.sh: installs what is missing, then activates
# the project's virtual environment. Usage: source launch/setup_env.sh [EXTRAS]
# EXTRAS: pip extras of the package, e.g. "tfds,test". PYTHON: the interpreter that makes
# .venv (default python3).
set -euo pipefail

_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_extras="${1:-}"

_as_root() {  # runs a command as root, or says how to and fails
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
  else echo "error: '$*' needs root; run it with sudo, then rerun this script" >&2; return 1
  fi
}

_apt_install() {  # installs Debian packages, or says how to install them without apt
  if ! command -v apt-get >/dev/null; then
    if [ "$(uname -s)" = Darwin ]; then
      echo "error: $* is missing: install it with Homebrew (brew install $*)," \
        "then rerun this script" >&2
    else
      echo "error: $* is missing and this machine has no apt-get: install it with your" \
        "package manager (e.g. dnf install $*), then rerun this script" >&2
    fi
    return 1
  fi
  _as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive _as_root apt-get install -y -qq "$@" >/dev/null
}

# The pinned jax, numpy, flax, grain, scikit-learn and matplotlib need Python >= 3.11
# (setup.cfg's python_requires); an existing .venv is checked too.
_python="${PYTHON:-python3}"
[ -x "$_repo/.venv/bin/python" ] && _python="$_repo/.venv/bin/python"
_version="$("$_python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' \
  2>/dev/null || echo none)"
_minor="${_version#3.}"
_minor="${_minor%%.*}"
if [ "${_version%%.*}" != 3 ] || [ "$_minor" -lt 11 ]; then
  _old=""
  [ "$_python" = "$_repo/.venv/bin/python" ] && _old="rm -rf $_repo/.venv, then "
  echo "error: mirnet_jax needs Python >= 3.11, and $_python is $_version. ${_old}On" \
    "Ubuntu 22.04: sudo add-apt-repository ppa:deadsnakes/ppa && sudo apt-get install" \
    "python3.11 python3.11-venv, then PYTHON=python3.11 bash $0; or with uv" \
    "(docs.astral.sh/uv): uv venv --seed --python 3.11 $_repo/.venv, then rerun" >&2
  exit 1
fi

command -v espeak-ng >/dev/null || { echo "installing espeak-ng"; _apt_install espeak-ng; }

if [ ! -x "$_repo/.venv/bin/python" ]; then
  if ! "$_python" -m venv "$_repo/.venv" 2>/dev/null; then
    rm -rf "$_repo/.venv"
    _apt_install "python3.$_minor-venv"
    "$_python" -m venv "$_repo/.venv"
  fi
fi

# Reinstall only when the package metadata or the pins change.
# cksum: POSIX, on macOS too (sha1sum is not).
_sum="$(cat "$_repo/setup.cfg" "$_repo/constraints.txt" | cksum | cut -d' ' -f1)"
_stamp="$_repo/.venv/.installed-$_sum-${_extras//,/_}"
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
