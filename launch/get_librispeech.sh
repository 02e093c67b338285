#!/usr/bin/env bash
# Downloads LibriSpeech from openslr.org, checks the MD5 sums, extracts it:
#   bash launch/get_librispeech.sh DIR [--subsets NAMES] [--mirror URL] [--md5sums FILE]
#       [--skip-disk-check]
# Each subset lands in DIR/LibriSpeech/NAME, moved there only once it is complete, beside
# LibriSpeech's SPEAKERS.TXT, CHAPTERS.TXT, ...; it then prints the `prepare` command.
# --subsets  comma-separated names; default all seven, the paper's recipe (Section 4.1.1:
#            training on LibriSpeech's training speakers, train-clean-100, train-clean-360
#            and train-other-500; the 146 unseen speakers of dev-clean, dev-other,
#            test-clean and test-other). About 61 GB to download, 61 GB extracted. A
#            smaller start (251 training speakers, 7.7 GB):
#            --subsets train-clean-100,dev-clean,dev-other,test-clean,test-other
# --mirror   base URL of the NAME.tar.gz files
#            (default https://www.openslr.org/resources/12)
# --md5sums  a file of "MD5  NAME.tar.gz" lines (openslr's md5sum.txt) to check against
#            instead of the official sums written in this script
# --skip-disk-check  download even if DIR's free space looks too small
# Downloads go to DIR/NAME.tar.gz.partial, with curl (or wget), and resume where they
# stopped, in this run or a later one. A finished subset is skipped on a rerun; a
# tarball is deleted once extracted. Before downloading, the free space of DIR is
# compared with the approximate sizes of the official tarballs: all of them, plus the
# largest once more (a tarball and its extracted files exist together for a while).
set -euo pipefail

base_url="https://www.openslr.org/resources/12"
all_subsets=(train-clean-100 train-clean-360 train-other-500 dev-clean dev-other
  test-clean test-other)
attempts=3  # downloads of one tarball in a row, while each makes progress

die() {  # one line on stderr, exit status 1
  echo "error: $*" >&2
  exit 1
}

usage_error() {  # a bad command line: one line on stderr, exit status 2
  echo "error: $* (see: bash $0 --help)" >&2
  exit 2
}

usage() {  # the comment block at the top of this script
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
}

official_md5() {  # official_md5 NAME: from openslr.org/resources/12/md5sum.txt
  case "$1" in
    dev-clean) echo 42e2234ba48799c1f50f24a7926300a1 ;;
    dev-other) echo c8d0bcc9cca99d4f8b62fcc847357931 ;;
    test-clean) echo 32fa31d27d2e1cad72775fee3f4849a9 ;;
    test-other) echo fb5a50374b501bb3bac4815ee91d3135 ;;
    train-clean-100) echo 2a93770f6d5c6c964bc36631d331a522 ;;
    train-clean-360) echo c0e676e450a7ff2f54aeade5171606fa ;;
    train-other-500) echo d1a0fd59409feb2c614ce4d30c387708 ;;
  esac
}

size_mb() {  # size_mb NAME: the official tarball's approximate size (and its extract's)
  case "$1" in
    dev-clean) echo 338 ;;
    dev-other) echo 315 ;;
    test-clean) echo 347 ;;
    test-other) echo 329 ;;
    train-clean-100) echo 6388 ;;
    train-clean-360) echo 23050 ;;
    train-other-500) echo 30594 ;;
  esac
}

flag_value() {  # "--flag=VALUE" or "--flag VALUE": sets value and shift_by
  case "$1" in
    --*=*) value="${1#*=}"; shift_by=1 ;;
    *) value="${2:-}"; shift_by=2 ;;
  esac
  case "$value" in ""|--*) usage_error "${1%%=*} needs a value" ;; esac
}

file_bytes() {  # file_bytes FILE: its size, 0 if it does not exist
  if [ -f "$1" ]; then wc -c < "$1" | tr -d ' '; else echo 0; fi
}

gb() {  # gb MB: as "12.3 GB"
  awk -v mb="$1" 'BEGIN { printf "%.1f GB", mb / 1000 }'
}

dir=""
subsets_flag="$(IFS=,; echo "${all_subsets[*]}")"
mirror=""
md5_file=""
check_disk=1
while [ $# -gt 0 ]; do
  shift_by=1
  case "$1" in
    --subsets|--subsets=*) flag_value "$@"; subsets_flag="$value" ;;
    --mirror|--mirror=*) flag_value "$@"; mirror="$value" ;;
    --md5sums|--md5sums=*) flag_value "$@"; md5_file="$value" ;;
    --skip-disk-check) check_disk=0 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage_error "unknown flag '$1'" ;;
    *) [ -z "$dir" ] || usage_error "unexpected argument '$1'"; dir="$1" ;;
  esac
  shift "$shift_by"
done
[ -n "$dir" ] || usage_error "DIR is required"
if [ -n "$mirror" ]; then base_url="${mirror%/}"; fi
if [ -n "$md5_file" ] && [ ! -r "$md5_file" ]; then
  usage_error "--md5sums: cannot read '$md5_file'"
fi

subsets=()
IFS=, read -r -a names <<< "$subsets_flag"
for name in ${names[@]+"${names[@]}"}; do
  case " ${all_subsets[*]} " in
    *" $name "*) ;;
    *) usage_error "unknown subset '$name' in --subsets (LibriSpeech has:" \
         "$(IFS=,; echo "${all_subsets[*]}"))" ;;
  esac
  case " ${subsets[*]-} " in *" $name "*) ;; *) subsets+=("$name") ;; esac
done
[ "${#subsets[@]}" -gt 0 ] || usage_error "--subsets names no subset"

expected_md5() {  # expected_md5 NAME: from --md5sums, or the official sum
  local sum
  if [ -z "$md5_file" ]; then official_md5 "$1"; return; fi
  # md5sum.txt lines: "MD5  NAME.tar.gz" ("*NAME" in md5sum's binary mode).
  sum="$(awk -v f="$1.tar.gz" \
    '{ n = $2; sub(/^\*/, "", n) } n == f { print tolower($1); exit }' "$md5_file")"
  case "$sum" in
    "") die "$md5_file has no MD5 for $1.tar.gz" ;;
    *[!0-9a-f]*) die "$md5_file: '$sum' is not an MD5 sum (for $1.tar.gz)" ;;
  esac
  echo "$sum"
}

md5_of() {  # md5_of FILE
  if command -v md5sum >/dev/null; then
    md5sum "$1" | awk '{ print $1 }'
  else
    md5 -q "$1"
  fi
}

download() {  # download URL FILE: one try, continuing FILE if it exists
  if command -v curl >/dev/null; then
    local progress=(--silent --show-error)
    if [ -t 2 ]; then progress=(--progress-bar); fi
    curl --fail --location --continue-at - "${progress[@]}" --output "$2" "$1"
  else
    local progress=(--quiet)
    if [ -t 2 ]; then progress=(--progress=bar:force:noscroll); fi
    wget --continue "${progress[@]}" --output-document="$2" "$1"
  fi
}

fetch() {  # fetch NAME: DIR/NAME.tar.gz complete, resuming DIR/NAME.tar.gz.partial
  local url="$base_url/$1.tar.gz" archive="$dir/$1.tar.gz" before status try
  local partial="$archive.partial"
  if [ -f "$archive" ]; then return 0; fi
  if [ -f "$partial" ]; then
    echo "$1: resuming $url after $(file_bytes "$partial") bytes"
  else
    echo "$1: downloading $url"
  fi
  for ((try = 1; try <= attempts; try++)); do
    before="$(file_bytes "$partial")"
    status=0
    download "$url" "$partial" || status=$?
    if [ "$status" = 0 ]; then
      mv "$partial" "$archive"
      return 0
    fi
    if [ "$status" = 33 ]; then  # curl: the server cannot resume
      echo "$1: the server does not resume downloads; starting again" >&2
      rm -f "$partial"
    elif [ "$(file_bytes "$partial")" -le "$before" ]; then
      # No progress: perhaps nothing was left to fetch (a run stopped before the rename;
      # the server then refuses the range, curl exits 22).
      if [ "$(md5_of "$partial")" = "$(expected_md5 "$1")" ]; then
        mv "$partial" "$archive"
        return 0
      fi
      break
    fi
  done
  die "downloading $url failed (exit status $status); rerun to resume" \
    "($(file_bytes "$partial") bytes kept in $partial)"
}

verify() {  # verify NAME: DIR/NAME.tar.gz has its MD5 sum, or is deleted
  local archive="$dir/$1.tar.gz" expected actual
  expected="$(expected_md5 "$1")"
  actual="$(md5_of "$archive")"
  if [ "$actual" != "$expected" ]; then
    rm -f "$archive"
    die "$archive: MD5 $actual, expected $expected; the file was deleted, rerun to" \
      "download it again"
  fi
}

extract() {  # extract NAME: DIR/NAME.tar.gz to DIR/LibriSpeech/NAME, renamed when done
  local archive="$dir/$1.tar.gz" file
  # Outside DIR/LibriSpeech, so that a half-extracted subset is never read as one.
  tmp="$dir/.extract-$1"
  rm -rf "$tmp"
  mkdir "$tmp"
  echo "$1: extracting $archive"
  tar -xzf "$archive" -C "$tmp" || die "extracting $archive into $tmp failed"
  [ -d "$tmp/LibriSpeech/$1" ] || die "$archive holds no LibriSpeech/$1 folder"
  mkdir -p "$lib"
  # SPEAKERS.TXT, CHAPTERS.TXT, ...: every tarball has the same corpus-wide files.
  for file in "$tmp/LibriSpeech"/*; do
    if [ -f "$file" ]; then mv -f "$file" "$lib/"; fi
  done
  mv "$tmp/LibriSpeech/$1" "$lib/$1"
  rm -rf "$tmp" "$archive"
  tmp=""
  echo "$1: complete ($lib/$1)"
}

check_space() {  # check_space NAME...: DIR has room for them, by the approximate sizes
  local name mb need_mb=0 largest_mb=0 free_mb
  for name in "$@"; do
    mb="$(size_mb "$name")"
    # What is already downloaded needs no more room.
    need_mb=$((need_mb + mb - ($(file_bytes "$dir/$name.tar.gz.partial") \
      + $(file_bytes "$dir/$name.tar.gz")) / 1000000))
    if [ "$mb" -gt "$largest_mb" ]; then largest_mb="$mb"; fi
  done
  need_mb=$((need_mb + largest_mb))
  free_mb="$(df -Pk "$dir" | awk 'NR == 2 { printf "%d", $4 * 1.024 / 1000 }')"
  if [ "$free_mb" -lt "$need_mb" ]; then
    die "$dir has $(gb "$free_mb") free; $* need about $(gb "$need_mb") (approximate" \
      "sizes): free some space, choose fewer --subsets, or pass --skip-disk-check"
  fi
}

print_next() {  # the prepare command for every complete subset in DIR/LibriSpeech
  local name train="" test=""
  for name in "${all_subsets[@]}"; do
    if [ ! -d "$lib/$name" ]; then continue; fi
    case "$name" in
      train-*) train+="${train:+,}$name" ;;
      *) test+="${test:+,}$name" ;;
    esac
  done
  if [ -z "$test" ]; then
    echo "next: prepare takes its unseen speakers from a dev-* or test-* subset;" \
      "download one too, e.g. bash launch/get_librispeech.sh $(printf %q "$dir")" \
      "--subsets dev-clean"
    return
  fi
  echo "next, prepare the shards:"
  echo "  python -m mirnet_jax.prepare --source=$(printf %q "$lib")" \
    "--out=$(printf %q "$dir/shards") --train_subsets=$train --test_subsets=$test"
}

tmp=""
trap 'if [ -n "$tmp" ]; then rm -rf "$tmp"; fi' EXIT
mkdir -p "$dir" || die "cannot create $dir"
dir="$(cd "$dir" && pwd -P)"
lib="$dir/LibriSpeech"

pending=()
for name in "${subsets[@]}"; do
  if [ -d "$lib/$name" ]; then
    echo "$name: complete, skipped ($lib/$name)"
  else
    expected_md5 "$name" > /dev/null  # a missing sum fails before any download
    pending+=("$name")
  fi
done
if [ "${#pending[@]}" -gt 0 ]; then
  command -v curl >/dev/null || command -v wget >/dev/null \
    || die "neither curl nor wget is installed: install one (e.g. apt-get install curl)"
  command -v md5sum >/dev/null || command -v md5 >/dev/null \
    || die "neither md5sum nor md5 is installed: install coreutils"
  if [ "$check_disk" = 1 ]; then check_space "${pending[@]}"; fi
fi
for name in ${pending[@]+"${pending[@]}"}; do
  fetch "$name"
  verify "$name"
  extract "$name"
done
print_next
