#!/usr/bin/env bash
# Issue 8.1/8.2 replayed with a real guest: root in the guest writes garbage
# to the agent's serial line; an exec client and a console client that never
# read. The supervisor must stay idle, exec must keep working, console.log
# must keep growing.
. "$(dirname "$0")/lib.sh"
G=rel10
on_exit "$UMLKIT" kill $G
if ! "$UMLKIT" run --detach --wait --name $G >"$WORK/run.out" 2>&1; then
  fail "guest starts: $(tail -3 "$WORK/run.out")"
  exit 0
fi
D=$UMLKIT_STATE_DIR/$G
jget() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v=(v or {}).get(k)
print(v if v is not None else 0)' "$D/state.json" "$1"; }
ticks() { awk '{ s=$0; sub(/.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
wait_for() { local t=$1; shift; for _ in $(seq 1 $((t * 10))); do "$@" && return 0; sleep 0.1; done; return 1; }
io_at_least() { [ "$(jget "io.$1")" -ge "$2" ]; }
log_at_least() { [ "$(stat -c %s "$D/console.log")" -ge "$1" ]; }
SUP=$(jget supervisor_pid)

# 1. garbage on the agent line: valid magic + unknown kind, oversize length, junk
"$UMLKIT" exec $G -- sh -c "printf '\245\310\0\0\0\0\0\0\0\0' > /dev/ttyS1; printf '\245\5\1\0\0\0\377\377\377\377' > /dev/ttyS1; printf 'junk' > /dev/ttyS1" \
  || fail "exec of the garbage writer"
check "agent-line garbage counted (io.agent_bad_frames)" wait_for 10 io_at_least agent_bad_frames 2
t0=$(ticks "$SUP"); sleep 2; t1=$(ticks "$SUP")
check "supervisor idle after garbage ($((t1 - t0)) ticks in 2 s)" test $((t1 - t0)) -lt 40
check "exec works after garbage" test "$(timeout 30 "$UMLKIT" exec $G -- echo alive)" = alive

# 2. an exec client that never reads a large output
mkfifo "$WORK/fifo"
exec 7<>"$WORK/fifo"  # held open, never read
"$UMLKIT" exec $G -- sh -c 'while :; do cat /bin/busybox; done' >"$WORK/fifo" 2>/dev/null &
STUCK=$!
on_exit kill_pid $STUCK
check "unread exec client is cut off" wait_for 60 io_at_least exec_clients_disconnected 1
check "other exec works beside the unread client" test "$(timeout 30 "$UMLKIT" exec $G -- echo beside)" = beside
exec 7<&-
kill_pid $STUCK

# 3. a console client that never reads
python3 -c 'import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); open(sys.argv[2],"w").close(); time.sleep(60)' "$D/console.sock" "$WORK/idle.connected" &
IDLE=$!
on_exit kill_pid $IDLE
# the client must be attached before the output starts
wait_for 10 test -e "$WORK/idle.connected"
before=$(stat -c %s "$D/console.log")
console_write() { timeout 30 "$UMLKIT" exec $G -- sh -c 'yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz | head -c 300000 > /dev/console' 2>"$WORK/cw.err"; local rc=$?; [ $rc -eq 0 ] || echo "# console write rc=$rc: $(head -c 300 "$WORK/cw.err")"; return $rc; }
check "console writes finish beside an idle console client" console_write
check "console.log keeps growing" wait_for 20 log_at_least $((before + 300000))
check "dropped console output counted (io.console_dropped_bytes)" wait_for 10 io_at_least console_dropped_bytes 1
check "exec works beside the idle console client" test "$(timeout 30 "$UMLKIT" exec $G -- echo still)" = still
kill_pid $IDLE
"$UMLKIT" halt $G >/dev/null 2>&1 || fail "halt"
