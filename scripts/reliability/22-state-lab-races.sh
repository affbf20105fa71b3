#!/usr/bin/env bash
# Issue 8 item 4 and issue 10: two lab commands on one lab at once lose
# none of each other's records; `lab clean` works from the saved state when
# lab.conf no longer parses while the lab runs; a relative UMLKIT_LAB_STATE
# leaks no kernel on `lab clean`.
. "$(dirname "$0")/lib.sh"
LAB=$WORK/lab
ST=$WORK/st
mkdir -p "$LAB"
printf 'a[0]=lan\nb[0]=lan\n' >"$LAB/lab.conf"
printf 'ip addr add 10.22.0.1/24 dev eth0\n' >"$LAB/a.startup"
printf 'ip addr add 10.22.0.2/24 dev eth0\n' >"$LAB/b.startup"
on_exit "$UMLKIT" lab clean "$LAB" --state-root "$ST"
lab() { "$UMLKIT" lab "$1" --state-root "$ST" "${@:2}" 2>&1; }
running() { pgrep -f "$ST" | wc -l; }

# two starts of one lab at once, one machine each
lab start "$LAB" a >"$WORK/a.out" &
pa=$!
lab start "$LAB" b >"$WORK/b.out" &
pb=$!
wait "$pa"; ra=$?
wait "$pb"; rb=$?
if [ "$ra" -eq 0 ] && [ "$rb" -eq 0 ]; then ok "22 two concurrent lab starts succeed"; else fail "22 concurrent starts: $ra $rb: $(cat "$WORK/a.out" "$WORK/b.out")"; fi
st=$(lab status "$LAB" --json)
n=$(python3 -c 'import json,sys; print(sum(m["state"] == "running" for m in json.load(sys.stdin)["machines"]))' <<<"$st")
if [ "$n" -eq 2 ]; then ok "22 the state records both machines"; else fail "22 state after concurrent starts: $st"; fi
sw=$(pgrep -f "switch -s $ST/[0-9a-f]*/sw/0 " | wc -l)
if [ "$sw" -eq 1 ]; then ok "22 one switch for the shared domain"; else fail "22 $sw switches for one domain"; fi
if lab exec -d "$LAB" a -- ping -c 1 -W 3 10.22.0.2 >/dev/null; then ok "22 the machines of both starts talk"; else fail "22 a cannot ping b"; fi

# lab.conf breaks while the lab runs: clean still works, from the saved plan
printf 'a[0]=lan\na[0]=other\n' >"$LAB/lab.conf"
out=$(lab clean "$LAB")
rc=$?
if [ "$rc" -eq 0 ] && [ "$(running)" -eq 0 ] && [ -z "$(ls -A "$ST" 2>/dev/null)" ]; then
  ok "22 lab clean with a broken lab.conf stops and removes everything"
else
  fail "22 lab clean with a broken lab.conf: rc=$rc left=$(running): $out"
fi
printf 'a[0]=lan\nb[0]=lan\n' >"$LAB/lab.conf"

# a relative state root: fixed once, so clean finds every process
out=$(cd "$WORK" && UMLKIT_LAB_STATE=rel "$UMLKIT" lab start lab a 2>&1) || fail "22 relative start: $out"
on_exit "$UMLKIT" lab clean "$LAB" --state-root "$WORK/rel"
if [ "$(pgrep -f "$WORK/rel" | wc -l)" -gt 0 ]; then
  out=$(cd "$WORK" && UMLKIT_LAB_STATE=rel "$UMLKIT" lab clean lab 2>&1)
  left=$(pgrep -f "$WORK/rel" | wc -l)
  if [ "$left" -eq 0 ]; then ok "22 relative UMLKIT_LAB_STATE: clean leaves nothing"; else fail "22 relative state root: $left left: $out"; fi
else
  fail "22 relative state root: nothing runs under $WORK/rel"
fi
