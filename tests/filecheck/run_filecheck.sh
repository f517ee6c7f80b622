#!/bin/sh
# Runs the FileCheck checks of one .check file against moejitc's output.
#
#   run_filecheck.sh MOEJITC FILECHECK FILE.check
#
# FILE.check names its runs on lines of the form
#
#   // RUN: <emit> <prefixes> <canonical spec text>
#   // RUN-FAIL: <emit> <prefixes> <canonical spec text>
#
# RUN: `moejitc --emit <emit> --spec <spec>` must succeed; its stdout is checked with
# `FileCheck --check-prefixes=<prefixes> FILE.check`.
# RUN-FAIL: moejitc must exit with status 1 (an error, not a crash or usage error); its
# stderr is checked instead.
set -u
if [ $# -ne 3 ]; then
  echo "usage: $0 MOEJITC FILECHECK FILE.check" >&2
  exit 2
fi
moejitc=$1
filecheck=$2
checkfile=$3

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moejit-filecheck.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT

runs=$(grep -E '^// RUN(-FAIL)?: ' "$checkfile")
if [ -z "$runs" ]; then
  echo "$checkfile: no // RUN: lines" >&2
  exit 2
fi

status=0
count=0
# The here-document keeps the loop in this shell, so `status` survives it.
while IFS= read -r line; do
  count=$((count + 1))
  case $line in
    "// RUN-FAIL: "*) expect_fail=1; rest=${line#"// RUN-FAIL: "} ;;
    *) expect_fail=0; rest=${line#"// RUN: "} ;;
  esac
  # emit, prefixes, then the spec text (canonical text is single-space separated).
  set -f
  # shellcheck disable=SC2086
  set -- $rest
  set +f
  emit=$1
  prefixes=$2
  shift 2
  spec=$*
  out="$tmp/run$count.out"
  err="$tmp/run$count.err"
  echo "RUN $count: moejitc --emit $emit --spec \"$spec\" | FileCheck --check-prefixes=$prefixes"
  "$moejitc" --emit "$emit" --spec "$spec" >"$out" 2>"$err"
  rc=$?
  if [ "$expect_fail" = 1 ]; then
    if [ "$rc" -ne 1 ]; then
      echo "FAIL: moejitc exited with $rc, expected 1 (a reported error)" >&2
      cat "$err" >&2
      status=1
      continue
    fi
    input=$err
  else
    if [ "$rc" -ne 0 ]; then
      echo "FAIL: moejitc exited with $rc" >&2
      cat "$err" >&2
      status=1
      continue
    fi
    input=$out
  fi
  if ! "$filecheck" --check-prefixes="$prefixes" --dump-input=fail --input-file="$input" "$checkfile"; then
    echo "FAIL: FileCheck --check-prefixes=$prefixes on run $count" >&2
    status=1
  fi
done <<RUNS
$runs
RUNS

[ "$status" -eq 0 ] && echo "all $count runs passed"
exit "$status"
