# Issue 12 (link emulation and capture wired into the switch): hostile
# settings on every front end (flags, rc file, console, CLI), a console line
# far past the limit, a capture file path that is a symlink, a capture client
# that stalls while the switch forwards, a capture client that vanishes.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
[ -x "$PY" ] || { skip "switch-links: needs /usr/bin/python3"; exit 0; }

cat >"$WORK/cli.py" <<'EOF2'
import socket, struct, sys, time

def req(path, port=0):
    sa = struct.pack("<H108s", 1, path.encode())[:110]
    return struct.pack("<IIi", 0xfeedface, 3, port) + sa + b"rel".ljust(128, b"\0")

def vde(ctl, own, port):
    d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    d.bind(own)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(ctl)
    s.sendall(req(own, port))
    s.settimeout(10)
    r = s.recv(200)
    d.connect(r[2:].split(b"\0")[0].decode())
    d.settimeout(5)
    return s, d

def until_prompt(s):
    buf = b""
    while not buf.endswith(b"\nvde$ "):
        c = s.recv(65536)
        if not c:
            break
        buf += c
    return buf.decode(errors="replace")

cmd = sys.argv[1]
if cmd == "stall":
    # a capture client that never reads while 20000 frames of 1200 bytes
    # cross the switch; every one must arrive
    mg, ctl, tmp = sys.argv[2], sys.argv[3], sys.argv[4]
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(mg); c.settimeout(10)
    until_prompt(c)
    c.sendall(b"capture/start\n")
    if "1000 Success" not in until_prompt(c):
        print("capture refused"); sys.exit(1)
    a = vde(ctl, tmp + "/a", 0); b = vde(ctl, tmp + "/b", 0)
    bm = b"\x02\0\0\0\0\x02"; am = b"\x02\0\0\0\0\x01"
    b[1].send(b"\xff" * 6 + bm + b"\x88\xb5" + b"learn".ljust(46, b"\0"))
    a[1].recv(2048)
    got = 0
    for _ in range(200):
        for _ in range(100):
            a[1].send(bm + am + b"\x88\xb5" + b"z" * 1200)
        for _ in range(100):
            b[1].recv(2048); got += 1
    print("forwarded", got)
    # the stalled client leaves without reading: the switch goes on
    c.close()
elif cmd == "longline":
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[2]); s.settimeout(10)
    until_prompt(s)
    s.sendall(b"link/set 1 " + b"delay=1ms," * 2000 + b"\n")
    time.sleep(0)  # replies are read below
    out = ""
    s.settimeout(3)
    try:
        while True:
            c = s.recv(65536)
            if not c:
                break
            out += c.decode(errors="replace")
    except socket.timeout:
        pass
    print(out.count("1022 Invalid argument"), "refusals")
EOF2

SW="$WORK/sw"; MG="$WORK/mgmt"
"$UMLKIT" switch -s "$SW" -M "$MG" -f /dev/null >"$WORK/sw.log" 2>&1 &
SWPID=$!
on_exit kill_pid "$SWPID"
for _ in $(seq 100); do [ -S "$MG" ] && break; sleep 0.05; done

# bad settings on each front end: refused with the key named, nothing changes
out=$("$UMLKIT" switch -s "$WORK/sw2" --link 1:delay=20 2>&1); rc=$?
check "switch --link without a unit is a usage error naming the key" \
  test "$rc" = 2 -a -n "$(echo "$out" | grep -F 'delay')"
printf 'vlan/create 3\nlink/set 1 loss=200%%\n' >"$WORK/bad.rc"
out=$("$UMLKIT" switch -s "$WORK/sw3" -f "$WORK/bad.rc" 2>&1); rc=$?
check "rc file: bad line refused with file and line, exit 1" \
  sh -c "[ $rc = 1 ] && echo \"\$1\" | grep -q 'bad.rc, line 2'" _ "$out"
check "rc file: the refused switch left no socket behind" test ! -e "$WORK/sw3/ctl"
out=$("$UMLKIT" switch -s "$WORK/sw4" -f "$WORK/missing.rc" 2>&1); rc=$?
check "rc file missing: error names it" \
  sh -c "[ $rc = 1 ] && echo \"\$1\" | grep -q 'missing.rc'" _ "$out"
out=$("$UMLKIT" link set "$MG" 1 --loss 101% 2>&1); rc=$?
check "link set --loss 101% refused" test "$rc" != 0
out=$("$UMLKIT" link set "$MG" 1 --rate 10kbps 2>&1); rc=$?
check "link set --rate 10kbps refused with a hint" \
  sh -c "[ $rc != 0 ] && echo \"\$1\" | grep -qi 'kbps'" _ "$out"
out=$("$UMLKIT" link set "$MG" 4294967295 delay=1ms 2>&1); rc=$?
check "link set on a port outside the switch refused" test "$rc" != 0
out=$($PY "$WORK/cli.py" longline "$MG")
check "a console line of 20 KB is refused, the switch answers on" \
  sh -c "echo \"\$1\" | grep -q '[1-9][0-9]* refusals'" _ "$out"
out=$("$UMLKIT" link show "$MG" 2>&1)
check "nothing was set by the refused commands" test -z "$out"

# capture: a symlink at the output path is refused, its target untouched
echo keep >"$WORK/victim"; ln -s "$WORK/victim" "$WORK/cap.pcapng"
"$UMLKIT" capture "$MG" -c 1 -w "$WORK/cap.pcapng" >/dev/null 2>&1; rc=$?
check "capture -w through a symlink refused" test "$rc" != 0 -a "$(cat "$WORK/victim")" = keep

# a stalled capture client does not stop forwarding
out=$(timeout 60 $PY "$WORK/cli.py" stall "$MG" "$SW/ctl" "$WORK")
check "stalled capture client: all 20000 frames forwarded" \
  sh -c "echo \"\$1\" | grep -q 'forwarded 20000'" _ "$out"
check "switch alive after the stalled client left" kill -0 "$SWPID"
[ -n "${DEBUG:-}" ] && cat "$WORK/sw.log"
out=$("$UMLKIT" link show "$MG" 1 2>&1); rc=$?
check "console still answers (link/show on a port without settings: error)" test "$rc" != 0
