#!/usr/bin/env bash
# Issue 11 (lab runner): lab.dep order as the host recorded it (the dependent
# machine's folder is made only after its dependency's `ready` marker),
# `lab crash` of one machine and of the whole lab, `lab restart` booting a
# new kernel, and error chains printed with each cause once.
. "$(dirname "$0")/lib.sh"
export UMLKIT_LAB_STATE="$WORK/labstate"

# --- an error chain names its cause once (no kernel needed)
touch "$WORK/afile"
out=$("$UMLKIT" switch -s "$WORK/afile/sw" 2>&1); rc=$?
n=$(grep -o 'Not a directory' <<<"$out" | wc -l)
check "error chain: switch dir under a file fails (rc $rc), cause once ($n): $out" [ "$rc" != 0 -a "$n" = 1 ]

if ! command -v linux.uml >/dev/null && [ -z "${UMLKIT_KERNEL:-}" ]; then
  skip "lab runner: no UML kernel"; exit 0
fi
L="$WORK/lab"; mkdir -p "$L"
printf 'a[0]=A\nb[0]=A\n' >"$L/lab.conf"
printf 'b: a\n' >"$L/lab.dep"
echo 'ip addr add 10.8.0.1/24 dev eth0' >"$L/a.startup"
echo 'ip addr add 10.8.0.2/24 dev eth0' >"$L/b.startup"
on_exit "$UMLKIT" lab clean "$L"

out=$("$UMLKIT" lab start "$L" 2>&1); rc=$?
check "lab.dep: start succeeds (rc $rc)" [ "$rc" = 0 ]
S=$(dirname "$(ls -d "$UMLKIT_LAB_STATE"/*/state.json)")
# nanoseconds since the epoch: a's ready marker written, b's folder born
ns() { date -d "$1" +%s%N; }
a_ready=$(ns "$(stat -c %y "$S/m/a/ready")")
b_born=$(ns "$(stat -c %w "$S/m/b")")
check "lab.dep: b launched after a was ready ($b_born >= $a_ready)" [ "$b_born" -ge "$a_ready" ]

pid_of() {
  python3 -c 'import json,sys; m=[m for m in json.load(open(sys.argv[1]))["machines"] if m["name"]==sys.argv[2]]; print(m[0]["pid"] if m else "")' "$S/state.json" "$1"
}
a1=$(pid_of a); b1=$(pid_of b)
"$UMLKIT" lab crash "$L" b >/dev/null 2>&1; rc=$?
check "crash b: exits 0 (rc $rc)" [ "$rc" = 0 ]
check "crash b: its kernel $b1 is gone" bash -c "! kill -0 $b1 2>/dev/null || grep -q '^State:.*Z' /proc/$b1/status"
check "crash b: a still answers" "$UMLKIT" lab exec -d "$L" a -- true
check "crash b: b is no longer in the state" [ -z "$(pid_of b)" ]

"$UMLKIT" lab restart "$L" a >/dev/null 2>&1; rc=$?
a2=$(pid_of a)
check "restart a: exits 0 (rc $rc), new kernel ($a1 -> $a2)" [ "$rc" = 0 -a -n "$a2" -a "$a2" != "$a1" ]
check "restart a: old kernel $a1 is gone" bash -c "! kill -0 $a1 2>/dev/null || grep -q '^State:.*Z' /proc/$a1/status"
check "restart a: a answers" "$UMLKIT" lab exec -d "$L" a -- true

"$UMLKIT" lab crash "$L" >/dev/null 2>&1; rc=$?
left=""
for _ in $(seq 50); do
  left=$(pgrep -f -- "$UMLKIT_LAB_STATE" | grep -vx "$$" | tr '\n' ' ')
  [ -z "$left" ] && break
  sleep 0.1
done
check "crash all: exits 0 (rc $rc), no process of the lab left: $left" [ "$rc" = 0 -a -z "$left" ]
