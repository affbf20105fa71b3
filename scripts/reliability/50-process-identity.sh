#!/usr/bin/env bash
# Issue 8 items 6 and 10: a dead guest whose pid was reused by another
# process is dead (and `kill`/`rm` spare that process); `prune --uml-dir`
# removes only UML instance dirs; an idle guest's memory is counted once.
. "$(dirname "$0")/lib.sh"

# --- pid reuse: a state.json naming a live unrelated `sleep` with another start time
sleep 300 &
SLEEP=$!
on_exit kill_pid "$SLEEP"
G="$UMLKIT_STATE_DIR/ghost"
mkdir -p "$G"
start=$(awk '{sub(/.*\) /, ""); print $20}' "/proc/$SLEEP/stat")
cat >"$G/config.json" <<JSON
{"name":"ghost","mem_mb":64,"disks":[],"nets":[],"kernel":null,"hostfs":null,"console":"None","extra_args":[]}
JSON
python3 - "$G" "$SLEEP" "$start" <<'PY'
import json, sys
d, pid, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cfg = json.load(open(d + "/config.json"))
st = {"name": "ghost", "supervisor_pid": pid, "supervisor_start": start + 5,
      "pid": pid, "pid_start": start + 5, "pgid": pid, "started_unix_ms": 1,
      "ready_unix_ms": 2, "boots": 1, "ended_unix_ms": None, "ending": None,
      "kernel": "/usr/bin/linux.uml", "cmdline": [], "config": cfg, "error": None,
      "marker": "%d:%s" % (pid, d)}
json.dump(st, open(d + "/state.json", "w"))
PY
phase=$("$UMLKIT" ps --json 2>&1 | python3 -c 'import json,sys; print([g["phase"] for g in json.load(sys.stdin) if g["name"]=="ghost"][0])' 2>&1)
check "reused pid: ps shows the guest dead (got $phase)" [ "$phase" = dead ]
"$UMLKIT" kill ghost >/dev/null 2>&1
"$UMLKIT" rm ghost >/dev/null 2>&1
check "reused pid: kill and rm spare the unrelated process" kill -0 "$SLEEP"

# --- prune --uml-dir: only dirs holding nothing but UML's pid/mconsole, pid dead
D="$WORK/uml"
mkdir -p "$D/live" "$D/foreign" "$D/stale" "$WORK/outside"
echo "$SLEEP" >"$D/live/pid"
true & dead=$!; wait "$dead"
echo "$dead" >"$D/foreign/pid"; echo keep >"$D/foreign/notes.txt"
echo "$dead" >"$D/stale/pid"
echo "$dead" >"$WORK/outside/pid"; ln -s "$WORK/outside" "$D/link"
"$UMLKIT" prune --uml-dir "$D" >/dev/null 2>&1
check "prune: stale UML instance dir removed" [ ! -e "$D/stale" ]
check "prune: dir with a live pid kept" [ -e "$D/live/pid" ]
check "prune: dir with foreign files kept" [ -e "$D/foreign/notes.txt" ]
check "prune: symlinked dir not followed" [ -e "$WORK/outside/pid" ]

# --- memory of an idle guest: each address space once
if IMG=$("$UMLKIT" image default 2>/dev/null) && "$UMLKIT" run --detach --wait --name idle --mem 64M --disk "$IMG" >/dev/null 2>&1; then
  on_exit "$UMLKIT" kill idle
  pss=$("$UMLKIT" ps --json | python3 -c 'import json,sys; print([g["pss_kb"] for g in json.load(sys.stdin) if g["name"]=="idle"][0] // 1024)')
  # counted three times it was ~117 MiB; once it is ~30-45 MiB
  check "idle guest PSS counted once ($pss MiB < 80)" [ "$pss" -lt 80 ]
  "$UMLKIT" halt idle >/dev/null 2>&1
else
  skip "idle guest memory: no kernel or image here"
fi
