#!/usr/bin/env bash
# Issue 8 item 10 (labs): `lab start` SIGKILLed before the boot steps ran is
# not "up" on a rerun; a SIGKILLed lab switch shows dead in `lab status`
# (exit 1) and a rerun names the machines that lost their link.
. "$(dirname "$0")/lib.sh"
export UMLKIT_LAB_STATE="$WORK/labstate"
if ! command -v linux.uml >/dev/null && [ -z "${UMLKIT_KERNEL:-}" ]; then
  skip "lab status: no UML kernel"; exit 0
fi
L="$WORK/lab"; mkdir -p "$L"
printf 'a[0]=A\nb[0]=A\n' >"$L/lab.conf"
echo 'ip addr add 10.7.0.1/24 dev eth0' >"$L/a.startup"
# b's boot steps wait for /hostlab/go
printf 'ip addr add 10.7.0.2/24 dev eth0\ni=0; while [ ! -f /hostlab/go ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done\ntouch /tmp/steps-done\n' >"$L/b.startup"
on_exit "$UMLKIT" lab clean "$L"

"$UMLKIT" lab start "$L" >/dev/null 2>&1 &
START=$!
on_exit kill_pid "$START"
for _ in $(seq 300); do
  "$UMLKIT" lab exec -d "$L" b -- true >/dev/null 2>&1 && break
  sleep 0.2
done
kill -9 "$START"; wait "$START" 2>/dev/null
"$UMLKIT" lab status "$L" >"$WORK/st1" 2>&1; rc=$?
check "killed start: status exits 1 (got $rc)" [ "$rc" = 1 ]
check "killed start: b shown interrupted" grep -q '^b .*interrupted' "$WORK/st1"
touch "$L/go"
out=$("$UMLKIT" lab start "$L" 2>&1); rc=$?
check "killed start: rerun succeeds (rc $rc)" [ "$rc" = 0 ]
check "killed start: rerun restarts b instead of 'already running'" bash -c "grep -q 'b: the start' <<<\"\$1\" && ! grep -q 'b already running' <<<\"\$1\"" _ "$out"
check "killed start: b's boot steps ran" "$UMLKIT" lab exec -d "$L" b -- test -f /tmp/steps-done

sw=$(python3 -c 'import json,sys,glob; print(json.load(open(glob.glob(sys.argv[1]+"/*/state.json")[0]))["switches"][0]["pid"])' "$UMLKIT_LAB_STATE")
kill -9 "$sw"
for _ in $(seq 100); do kill -0 "$sw" 2>/dev/null || break; sleep 0.1; done
"$UMLKIT" lab status "$L" >"$WORK/st2" 2>&1; rc=$?
check "killed switch: status exits 1 (got $rc)" [ "$rc" = 1 ]
check "killed switch: domain shown dead" grep -q '^domain A .* dead' "$WORK/st2"
check "killed switch: lost link shown" grep -q 'LINK LOST' "$WORK/st2"
out=$("$UMLKIT" lab start "$L" 2>&1); rc=$?
check "killed switch: rerun is not 'up' (rc $rc) and names the fix" bash -c "[ $rc != 0 ] && grep -q 'lab restart' <<<\"\$1\" && ! grep -q ' up in ' <<<\"\$1\"" _ "$out"
"$UMLKIT" lab restart "$L" >/dev/null 2>&1
"$UMLKIT" lab status "$L" >/dev/null 2>&1; rc=$?
check "after lab restart: status exits 0 (got $rc)" [ "$rc" = 0 ]
check "after lab restart: a reaches b" bash -c '"$0" lab exec -d "$1" a -- ping -c 1 -W 3 10.7.0.2 >/dev/null' "$UMLKIT" "$L"
