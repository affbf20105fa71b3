#!/usr/bin/env bash
# Guest numbers (not a test: nothing is asserted).
#  1. time from `umlkit run --detach` to the first successful `umlkit exec`
#     (median of N), beside the kernel-only boot of the same image to a
#     trivial init that powers off at once;
#  2. host memory of one idle guest at mem=64M: RSS and PSS summed over its
#     host processes, each address space once (UML's helpers share the
#     kernel's address space), checked by a second method: how much
#     Shmem + AnonPages fell and MemAvailable rose in /proc/meminfo when the
#     guest was halted (noisy on a shared machine).
# Usage: scripts/bench-guest.sh [N]   (UMLKIT=path/to/umlkit to choose the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10}
B=${UMLKIT:-target/debug/umlkit}
[ -x "$B" ] || cargo build -q -p umlkit
export UMLKIT_STATE_DIR
UMLKIT_STATE_DIR=$(mktemp -d /tmp/ubench.XXXXXX)
cleanup() {
  for d in "$UMLKIT_STATE_DIR"/*/; do
    [ -d "$d" ] && "$B" rm --force "$(basename "$d")" >/dev/null 2>&1 || true
  done
  rm -rf "$UMLKIT_STATE_DIR"
}
trap cleanup EXIT
IMG=$("$B" image default)
K=${UMLKIT_KERNEL:-$(command -v linux.uml || command -v linux)}
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)]}'; }
: > "$UMLKIT_STATE_DIR/full" ; : > "$UMLKIT_STATE_DIR/kern"
for i in $(seq "$N"); do
  t0=$(now)
  "$B" run --detach --name "b$i" --disk "$IMG" >/dev/null
  "$B" exec "b$i" -- true
  t1=$(now)
  echo "$t1 - $t0" | bc >> "$UMLKIT_STATE_DIR/full"
  "$B" kill "b$i" >/dev/null; "$B" rm "b$i"
  k="$UMLKIT_STATE_DIR/k$i"; mkdir -p "$k"
  t0=$(now)
  "$K" umid="k$i" uml_dir="$k/" mem=64M con=null con0=null ssl=null \
    ubd0="$k/c.cow,$IMG" root=/dev/ubda rw init=/sbin/poweroff -- -f </dev/null >/dev/null 2>&1
  t1=$(now)
  echo "$t1 - $t0" | bc >> "$UMLKIT_STATE_DIR/kern"
done
echo "run --detach -> first exec: median $(median < "$UMLKIT_STATE_DIR/full") s over $N"
echo "kernel only (boot to init, poweroff): median $(median < "$UMLKIT_STATE_DIR/kern") s over $N"
meminfo() { awk '/^(MemAvailable|Shmem|AnonPages):/ {v[$1]=$2} END {print v["Shmem:"] + v["AnonPages:"], v["MemAvailable:"]}' /proc/meminfo; }
"$B" run --detach --wait --name idle --mem 64M --disk "$IMG" >/dev/null
sleep 5
"$B" ps --json | python3 -c '
import json, sys
g = [x for x in json.load(sys.stdin) if x["name"] == "idle"][0]
print("idle guest at mem=64M: %d host processes, RSS %.1f MiB, PSS %.1f MiB (each address space once), "
      "physical-memory file in /dev/shm %.1f MiB allocated"
      % (len(g["processes"]), g["rss_kb"] / 1024, g["pss_kb"] / 1024, g["physmem_kb"] / 1024))'
read -r used1 avail1 < <(meminfo)
"$B" halt idle >/dev/null
read -r used0 avail0 < <(meminfo)
echo "second method: halting it freed $(( (used1 - used0) / 1024 )) MiB of Shmem+AnonPages; MemAvailable rose $(( (avail0 - avail1) / 1024 )) MiB"

