#!/usr/bin/env bash
# Reliability replay: hostile inputs from a guest, an untrusted lab folder, a
# slow client, another local user and a faulty environment (full disks, killed
# processes, huge counts). Each scenario in scripts/reliability/NN-*.sh is a
# self-contained bash script that prints `ok NAME` / `not ok NAME: WHY` lines
# (through the helpers in lib.sh) and cleans up what it started.
# Usage: scripts/reliability.sh [PATTERN]   (PATTERN filters scenario names)
set -uo pipefail
cd "$(dirname "$0")/.."
export UMLKIT_REL_ROOT=$PWD
if [ -z "${UMLKIT:-}" ]; then
  cargo build -q -p umlkit || exit 1
  export UMLKIT=$PWD/target/debug/umlkit
fi
passed=0 failed=0 skipped=0
for s in scripts/reliability/[0-9]*.sh; do
  [ -e "$s" ] || continue
  case "$s" in *"${1:-}"*) ;; *) continue ;; esac
  echo "== $s"
  out=$(bash "$s" 2>&1)
  rc=$?
  printf '%s\n' "$out"
  p=$(grep -c '^ok ' <<<"$out")
  f=$(grep -c '^not ok ' <<<"$out")
  k=$(grep -c '^skip ' <<<"$out")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "not ok $s: exited $rc"
    f=1
  fi
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + k))
done
echo "reliability: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
