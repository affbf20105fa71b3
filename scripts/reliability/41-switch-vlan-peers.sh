# Issue 11 (switch part): a tagged runt frame from a trunk is dropped and
# counted, never forwarded still tagged to an access port; a bad control
# request, a closed port and a stalled peer are logged naming the client
# (pid and uid from SO_PEERCRED).
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
[ -x "$PY" ] || { skip "switch-vlan-peers: needs /usr/bin/python3"; exit 0; }

cat >"$WORK/cli.py" <<'PYEOF'
import os, socket, struct, sys, time

def req(path, port=0):
    sa = struct.pack("<H108s", 1, path.encode())[:110]
    return struct.pack("<IIi", 0xfeedface, 3, port << 8) + sa + b"rel".ljust(128, b"\0")

def vde(ctl, own, port):
    d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    d.bind(own)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(ctl)
    s.sendall(req(own, port))
    s.settimeout(10)
    r = s.recv(200)
    d.connect(r[2:].split(b"\0")[0].decode())
    d.settimeout(10)
    return s, d

def mgmt(path, line):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(10)
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

BC, M3 = b"\xff" * 6, b"\x02\0\0\0\0\x03"
def tagged(vlan, payload):
    return BC + M3 + b"\x81\x00" + struct.pack(">H", vlan) + b"\x88\xb5" + payload

cmd, ctl, m, tmp = sys.argv[1:5]
if cmd == "runt":
    trunk, access = vde(ctl, tmp + "/t", 3), vde(ctl, tmp + "/a", 2)
    for c in ["vlan/create 10", "port/setvlan 2 10", "vlan/addport 10 3"]:
        assert "1000 Success" in mgmt(m, c), c
    full = tagged(10, b"")
    trunk[1].send(full[:16])
    trunk[1].send(full[:17])
    trunk[1].send(tagged(10, b"good"))
    got = access[1].recv(2048)  # the good frame comes last: a runt would come first
    stats = mgmt(m, "port/stats 3")
    print("first frame at the access port: %s" % got.hex())
    print("ok" if got == BC + M3 + b"\x88\xb5good" and " in_drops=2" in stats else "bad: " + stats)
elif cmd == "stall":
    # a port that never reads, flooded: the switch logs it, names us, and
    # keeps forwarding to others
    a, b, c = vde(ctl, tmp + "/sa", 11), vde(ctl, tmp + "/sb", 12), vde(ctl, tmp + "/sc", 13)
    b[1].send(b"\xff" * 6 + b"\x02\0\0\0\0\x0c" + b"\x88\xb5hi")  # learn b
    a[1].recv(2048); c[1].recv(2048)
    big = b"\x02\0\0\0\0\x0c" + b"\x02\0\0\0\0\x0b" + b"\x88\xb5" + b"\0" * 1400
    log = sys.argv[5]
    t0 = time.time()
    while time.time() - t0 < 20:
        for _ in range(200):
            a[1].send(big)
        if "socket full" in open(log).read():
            break
    a[1].send(b"\xff" * 6 + b"\x02\0\0\0\0\x0b" + b"\x88\xb5alive")
    while True:
        f = c[1].recv(2048)
        if f.endswith(b"alive"):
            break
    print("ok")
    # the console names the stalled client while it lasts
    want = "(client pid %d uid %d): socket full" % (os.getpid(), os.getuid())
    for _ in range(100):
        if want in mgmt(m, "port/stats 12"):
            print("named")
            break
        time.sleep(0.1)
PYEOF
cli() { timeout 60 "$PY" "$WORK/cli.py" "$@"; }

sd="$WORK/sw"; m="$WORK/mgmt"; log="$WORK/switch.log"
"$UMLKIT" switch -s "$sd" -M "$m" 2>"$log" &
SW_PID=$!; on_exit kill_pid "$SW_PID"
for i in $(seq 100); do [ -S "$m" ] && [ -S "$sd/ctl" ] && break; sleep 0.1; done

out=$(cli runt "$sd/ctl" "$m" "$WORK")
echo "$out" | sed 's/^/  /'
check "tagged-runt-dropped-and-counted" test "$(echo "$out" | tail -1)" = ok

# a garbage control request: refused, the log names our client process
pyout=$("$PY" -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1]); s.sendall(b"\x55" * 256); s.settimeout(10)
print(os.getpid(), os.getuid()); s.recv(10)
' "$sd/ctl")
set -- $pyout
check "refused-request-names-client" grep -q "control request refused: .*(client pid $1 uid $2)" "$log"

out=$(cli stall "$sd/ctl" "$m" "$WORK" "$log")
check "stalled-peer-keeps-switch-forwarding" test "$(echo "$out" | head -1)" = ok
check "stalled-peer-named-in-port-stats" test "$(echo "$out" | tail -1)" = named
check "stalled-peer-named-in-log" grep -Eq "endpoint [0-9]+ \(client pid [0-9]+ uid [0-9]+\): socket full" "$log"
check "closed-port-named-in-log" grep -Eq "port 1[123]: endpoint [0-9]+ closed \(client pid [0-9]+ uid [0-9]+\)" "$log"
grep -E "client pid" "$log" | head -4 | sed 's/^/  log: /'
