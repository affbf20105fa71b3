# Issue 13.3 (VXLAN, interop) and 13's numbers: hostile datagrams on the
# VXLAN port (empty, short, no I flag, other VNIs, vxvde's header-only
# goodbye, oversized, a burst of garbage) leave the switch forwarding; a bad
# reply= setting is refused at start; `umlkit bench net` with a missing
# tool names it and leaves no work folder. The VXLAN part runs in a network
# namespace made here (a veth pair inside it with a test address, nothing
# else).
. "$(dirname "$0")/lib.sh"

# a bad reply= is refused before any socket is made
out=$("$UMLKIT" switch -s "$WORK/bad" --vxlan vni=1,group=239.1.1.1,reply=sometimes 2>&1)
rc=$?
if [ "$rc" -ne 0 ] && grep -q "reply: 'sometimes' is not 'port' or 'source'" <<<"$out" && [ ! -e "$WORK/bad" ]; then
  ok "vxlan reply=sometimes refused"
else
  fail "vxlan reply=sometimes refused: rc=$rc $out"
fi

# bench net: a missing tcpblast is named; no work folder is left behind
before=$(ls -d /tmp/umlkit-netbench-* 2>/dev/null | wc -l)
out=$("$UMLKIT" bench net --tcpblast "$WORK/nope.c" --no-vxlan 2>&1)
rc=$?
after=$(ls -d /tmp/umlkit-netbench-* 2>/dev/null | wc -l)
if [ "$rc" -ne 0 ] && grep -q "tcpblast.c not found at $WORK/nope.c" <<<"$out" && [ "$before" = "$after" ]; then
  ok "bench net names a missing tcpblast"
else
  fail "bench net names a missing tcpblast: rc=$rc $out"
fi

# bench net: zero counts are refused up front (ping -c 0 never ends)
for a in "--pings 0" "--runs 0" "--mb 0"; do
  out=$("$UMLKIT" bench net $a --no-vxlan 2>&1)
  rc=$?
  if [ "$rc" -ne 0 ] && grep -qe "${a% 0} must be at least 1" <<<"$out"; then
    ok "bench net $a refused"
  else
    fail "bench net $a refused: rc=$rc $out"
  fi
done

PY=/usr/bin/python3
if [ "$(id -u)" -ne 0 ] || [ ! -x "$PY" ]; then
  skip "vxlan hostile datagrams: needs root (ip netns) and python3"
  exit 0
fi
NS=umlkit-rel92-$$
ip netns add "$NS" || { fail "ip netns add"; exit 0; }
on_exit ip netns del "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add r0 type veth peer name r1
ip -n "$NS" addr add 10.250.92.1/24 dev r0
ip -n "$NS" link set r0 up
ip -n "$NS" link set r1 up

ip netns exec "$NS" "$UMLKIT" switch -s "$WORK/sw" \
  --vxlan vni=92,remote=10.250.92.2,port=4792 >"$WORK/sw.log" 2>&1 &
SW=$!
on_exit kill_pid "$SW"
for _ in $(seq 100); do [ -S "$WORK/sw/ctl" ] && break; sleep 0.05; done

cat >"$WORK/hostile.py" <<'EOF2'
import os, random, socket, struct, sys, time
ctl, tmp = sys.argv[1], sys.argv[2]

def req(path):
    sa = struct.pack("<H108s", 1, path.encode())[:110]
    return struct.pack("<IIi", 0xfeedface, 3, 0) + sa + b"rel".ljust(128, b"\0")

d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
d.bind(tmp + "/c")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(ctl); s.settimeout(10)
s.sendall(req(tmp + "/c"))
d.connect(s.recv(200)[2:].split(b"\0")[0].decode())
d.settimeout(5)

u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
to = ("10.250.92.1", 4792)
hdr = lambda vni, flags=0x08: bytes([flags, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0"
frame = lambda payload: b"\xff" * 6 + b"\x02\0\0\0\x92\x01" + b"\x88\xb5" + payload.ljust(46, b"\0")
bad = [b"", b"\x08", b"\x08\0\0\0\0\0\x5c", hdr(92), hdr(92) + b"\xff" * 13,
       hdr(92, 0) + frame(b"no I flag"), hdr(93) + frame(b"other vni"),
       hdr(92) + os.urandom(60000)]
for b in bad:
    u.sendto(b, to)
for _ in range(20000):
    n = random.randrange(0, 1500)
    u.sendto(os.urandom(n), to)
# a good frame still arrives (garbage with our VNI may arrive too: skip it)
u.sendto(hdr(92) + frame(b"still forwarding"), to)
deadline = time.time() + 10
while time.time() < deadline:
    try:
        f = d.recv(65536)
    except socket.timeout:
        break
    if b"still forwarding" in f:
        print("forwarded")
        sys.exit(0)
    if b"no I flag" in f or b"other vni" in f:
        print("leaked", f[14:30]); sys.exit(1)
print("lost"); sys.exit(1)
EOF2
out=$(ip netns exec "$NS" "$PY" "$WORK/hostile.py" "$WORK/sw/ctl" "$WORK" 2>&1)
if [ "$out" = "forwarded" ] && kill -0 "$SW" 2>/dev/null; then
  ok "vxlan port survives hostile datagrams and still forwards"
else
  fail "vxlan port survives hostile datagrams: $out $(tail -3 "$WORK/sw.log")"
fi
