# Issue 8 items 9, 11 (switch parts) and 10 (a killed switch is detectable):
# switch dirs and COW backing files of another user, a client naming a socket
# it cannot reach, a huge port count, 1100 idle control connections, a full
# MAC table printed, a SIGKILLed switch.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
[ -x "$PY" ] || { skip "switch-hostile: needs /usr/bin/python3"; exit 0; }

# --- a small VDE / console client (stdlib only) --------------------------
cat >"$WORK/cli.py" <<'EOF'
import os, socket, struct, sys, time

def req(path, port=0):
    sa = struct.pack("<H108s", 1, path.encode())[:110]
    return struct.pack("<IIi", 0xfeedface, 3, port) + sa + b"rel".ljust(128, b"\0")

def vde(ctl, own):
    d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    d.bind(own)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(ctl)
    s.sendall(req(own))
    s.settimeout(10)
    r = s.recv(200)
    if len(r) != 110:
        return None
    d.connect(r[2:].split(b"\0")[0].decode())
    d.settimeout(5)
    return s, d

def frame(dst, src, payload=b"x" * 46):
    return dst + src + b"\x88\xb5" + payload

def mgmt(path, line):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(20)
    buf = b""
    def until_prompt():
        nonlocal buf
        while not buf.endswith(b"\nvde$ "):
            c = s.recv(65536)
            if not c:
                break
            buf += c
        out, buf = buf, b""
        return out.decode(errors="replace")
    until_prompt()
    s.sendall(line.encode() + b"\n")
    return until_prompt()

cmd = sys.argv[1]
if cmd == "mgmt":
    sys.stdout.write(mgmt(sys.argv[2], " ".join(sys.argv[3:])))
elif cmd == "idle":
    # N idle control connections, then two real clients pass a frame
    ctl, n, tmp = sys.argv[2], int(sys.argv[3]), sys.argv[4]
    idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(n)]
    for s in idle:
        s.connect(ctl)
    t0 = time.time()
    a, b = vde(ctl, tmp + "/a"), vde(ctl, tmp + "/b")
    if not a or not b:
        print("refused"); sys.exit(1)
    a[1].send(frame(b"\x02\0\0\0\0\x02", b"\x02\0\0\0\0\x01"))
    got = b[1].recv(2048)
    print("passed %d bytes after %.2f s" % (len(got), time.time() - t0))
elif cmd == "flood":
    # N frames with distinct source addresses; with a console socket, stay
    # connected (the port keeps its addresses) and print `hash/print`
    ctl, n, tmp = sys.argv[2], int(sys.argv[3]), sys.argv[4]
    s, d = vde(ctl, tmp + "/f")
    for i in range(n):
        d.send(frame(b"\xff" * 6, b"\x02\0" + struct.pack(">I", i)))
    if len(sys.argv) > 5:
        for _ in range(100):
            if ("in_pkts=%d " % n) in mgmt(sys.argv[5], "port/stats"):
                break
            time.sleep(0.1)
        sys.stdout.write(mgmt(sys.argv[5], "hash/print"))
elif cmd == "name":
    # request a port naming ANOTHER socket path; print the reply size
    ctl, path = sys.argv[2], sys.argv[3]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(ctl)
    s.sendall(req(path))
    s.settimeout(10)
    print("reply", len(s.recv(200)))
    time.sleep(float(sys.argv[4]) if len(sys.argv) > 4 else 0)
elif cmd == "listen":
    # bind a datagram socket and report whether a frame arrives in time
    d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    d.bind(sys.argv[2]); os.chmod(sys.argv[2], 0o666)
    open(sys.argv[2] + ".ready", "w").close()
    d.settimeout(float(sys.argv[3]))
    try:
        print("got", len(d.recv(2048)))
    except socket.timeout:
        print("nothing")
EOF
cli() { "$PY" "$WORK/cli.py" "$@"; }

# wait_for PATH: until it exists (bounded, 10 s)
wait_for() { local i; for i in $(seq 100); do [ -e "$1" ] && return 0; sleep 0.1; done; return 1; }
# start_switch NAME ARGS...: a switch in the background; sets SW_PID
start_switch() {
  local name=$1; shift
  "$@" >"$WORK/$name.log" 2>&1 &
  SW_PID=$!
  on_exit kill_pid "$SW_PID"
}

# --- item 9: switch dir owned by someone else or a symlink ---------------
if have_other_user; then
  d="$WORK/foreign"
  mkdir "$d" && chown "$OTHER_USER" "$d" && chmod 0777 "$d"
  out=$(timeout 10 "$UMLKIT" switch -s "$d" 2>&1); rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "belongs to $OTHER_USER" <<<"$out" \
     && [ "$(stat -c %a "$d")" = 777 ] && [ ! -e "$d/ctl" ]; then
    ok "switch-dir-foreign-refused"
  else fail "switch-dir-foreign-refused: rc=$rc $out"; fi

  t="$WORK/target"; mkdir "$t" && chmod 0700 "$t"
  as_other ln -s "$t" "$WORK/other-link" 2>/dev/null || { ln -s "$t" "$WORK/other-link"; chown -h "$OTHER_USER" "$WORK/other-link"; }
  out=$(timeout 10 "$UMLKIT" switch -s "$WORK/other-link" 2>&1); rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "symbolic link" <<<"$out" \
     && [ "$(stat -c %a "$t")" = 700 ] && [ ! -e "$t/ctl" ]; then
    ok "switch-dir-symlink-refused"
  else fail "switch-dir-symlink-refused: rc=$rc $out"; fi

  # item 9: moo -d into another user's backing file
  b="$WORK/other.img"; c="$WORK/other.cow"
  head -c 1048576 /dev/urandom >"$b" && chown "$OTHER_USER" "$b"
  "$UMLKIT" mkcow "$c" "$b" >/dev/null 2>&1
  sum=$(sha256sum <"$b")
  out=$("$UMLKIT" moo -d "$c" 2>&1); rc=$?
  if [ $rc -ne 0 ] && grep -q "belongs to uid" <<<"$out" && [ "$(sha256sum <"$b")" = "$sum" ]; then
    ok "moo-d-foreign-backing-refused"
  else fail "moo-d-foreign-backing-refused: rc=$rc $out"; fi
  check "moo-d-foreign-backing-with-b" "$UMLKIT" moo -b "$b" -d "$c"
else
  skip "switch-dir-foreign-refused: no other user"
  skip "switch-dir-symlink-refused: no other user"
  skip "moo-d-foreign-backing-refused: no other user"
fi

# --- item 9: root switch -m 0666, a client naming root's private socket --
if have_other_user; then
  sd="$WORK/sw666"
  start_switch sw666 "$UMLKIT" switch -s "$sd" -m 0666 -M "$WORK/m666"
  wait_for "$sd/ctl" && wait_for "$WORK/m666"
  priv="$WORK/private"; mkdir "$priv" && chmod 0700 "$priv"
  cli listen "$priv/victim.sock" 3 >"$WORK/victim.out" &
  vpid=$!; on_exit kill_pid "$vpid"
  wait_for "$priv/victim.sock.ready"
  got=$(as_other "$PY" "$WORK/cli.py" name "$sd/ctl" "$priv/victim.sock" 2>&1)
  # a real client floods a broadcast: the victim must not see it
  mkdir -p "$WORK/c666" && cli flood "$sd/ctl" 3 "$WORK/c666" >/dev/null 2>&1
  wait "$vpid"
  if [ "$got" = "reply 0" ] && [ "$(cat "$WORK/victim.out")" = nothing ] \
     && cli mgmt "$WORK/m666" port/stats | grep -q "refused_sockets=1"; then
    ok "switch-0666-unreachable-socket-refused"
  else fail "switch-0666-unreachable-socket-refused: $got / $(cat "$WORK/victim.out")"; fi
  kill_pid "$SW_PID"
else
  skip "switch-0666-unreachable-socket-refused: no other user"
fi

# --- item 11: huge port count, idle connections, full MAC table ----------
sd="$WORK/sw"; m="$WORK/mgmt"
start_switch sw prlimit --nofile=1024: "$UMLKIT" switch -s "$sd" -M "$m"
wait_for "$sd/ctl" && wait_for "$m"
out=$(cli mgmt "$m" port/setnumports 100000000)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$SW_PID/status" 2>/dev/null || echo 0)
# prlimit execs the switch: $SW_PID is the switch itself
if grep -q "1022 Invalid argument" <<<"$out" && grep -q "more than the limit" <<<"$out" \
   && [ "${rss:-0}" -lt 65536 ] && kill -0 "$SW_PID"; then
  ok "setnumports-100000000-refused (rss ${rss} KiB)"
else fail "setnumports-100000000-refused: rss=$rss $out"; fi
out=$("$UMLKIT" switch -s "$WORK/nx" -n 100000000 2>&1); rc=$?
if [ $rc -ne 0 ] && grep -q "at most 65536 ports" <<<"$out"; then ok "switch-n-100000000-refused"
else fail "switch-n-100000000-refused: $out"; fi

mkdir -p "$WORK/c" && chmod 0700 "$WORK/c"
out=$(prlimit --nofile=4096: "$PY" "$WORK/cli.py" idle "$sd/ctl" 1100 "$WORK/c" 2>&1)
if grep -q "^passed" <<<"$out"; then ok "1100-idle-control-connections ($out)"
else fail "1100-idle-control-connections: $out"; fi

mkdir -p "$WORK/h"
n=$(cli flood "$sd/ctl" 66000 "$WORK/h" "$m" | tee "$WORK/hash.txt" | grep -c '^Hash: ')
if [ "$n" = 65536 ] && tail -c 20 "$WORK/hash.txt" | grep -q "1000 Success"; then
  ok "hash-print-full-table-complete ($(wc -c <"$WORK/hash.txt") bytes)"
else fail "hash-print-full-table-complete: $n lines"; fi

# --- item 10: a SIGKILLed switch leaves a detectable stale socket --------
kill -KILL "$SW_PID"; wait "$SW_PID" 2>/dev/null
if [ -S "$sd/ctl" ] && ! "$PY" -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])" "$sd/ctl" 2>/dev/null; then
  ok "killed-switch-stale-socket-detectable"
else fail "killed-switch-stale-socket-detectable"; fi
start_switch sw2 "$UMLKIT" switch -s "$sd" -M "$m"
for i in $(seq 100); do cli mgmt "$m" port/showinfo >/dev/null 2>&1 && break; sleep 0.1; done
check "killed-switch-restarts-on-same-dir" bash -c "'$PY' '$WORK/cli.py' mgmt '$m' port/showinfo | grep -q Numports=32"
kill_pid "$SW_PID"
