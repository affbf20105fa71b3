# Issue 13.4: the NAT port of `umlkit switch --nat` (libslirp) fed garbage by
# a hostile client on the switch: random bytes, truncated and malformed
# ARP/IPv4/UDP/TCP/ICMP/DHCP frames, fragments, a DHCP flood from many MACs,
# host connections to a forward with no guest behind it. The switch and
# its NAT must stay up: afterwards the NAT still answers ARP for 10.0.2.2
# and the management console still answers. Nothing leaves this host.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
[ -x "$PY" ] || { skip "nat-hostile: needs /usr/bin/python3"; exit 0; }

cat >"$WORK/nat.py" <<'EOF'
import os, random, socket, struct, sys, time

ME = bytes.fromhex("020000000901")

def req(path):
    sa = struct.pack("<H108s", 1, path.encode())[:110]
    return struct.pack("<IIi", 0xfeedface, 3, 0) + sa + b"hostile".ljust(128, b"\0")

def vde(ctl, own):
    d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    d.bind(own)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(ctl)
    s.sendall(req(own))
    s.settimeout(10)
    r = s.recv(200)
    d.connect(r[2:].split(b"\0")[0].decode())
    d.settimeout(0.2)
    return s, d

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF

def ip(proto, payload, src="10.0.2.15", dst="10.0.2.2", ihl=5, tot=None, frag=0, opts=b""):
    h = struct.pack("!BBHHHBBH4s4s", (4 << 4) | ihl, 0, tot if tot is not None else 20 + len(opts) + len(payload),
                    random.randrange(65536), frag, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst)) + opts
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload

def eth(dst, payload, typ=0x0800, src=ME):
    return dst + src + struct.pack("!H", typ) + payload

def arp_req(src_mac=ME, spa="10.0.2.15", tpa="10.0.2.2"):
    return eth(b"\xff" * 6, struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac,
               socket.inet_aton(spa), b"\0" * 6, socket.inet_aton(tpa)), 0x0806, src_mac)

def arp_reply_from_gateway(d, deadline):
    while time.time() < deadline:
        try:
            f = d.recv(2048)
        except socket.timeout:
            d.send(arp_req())
            continue
        if len(f) >= 42 and f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02" and f[28:32] == socket.inet_aton("10.0.2.2"):
            return f[6:12]
    return None

def dhcp(mac, junk=b""):
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, random.randrange(1 << 32), 0, 0,
                        b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, mac.ljust(16, b"\0"), b"", b"")
    opts = b"\x63\x82\x53\x63" + b"\x35\x01\x01" + junk + b"\xff"
    udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp) + len(opts), 0) + bootp + opts
    return eth(b"\xff" * 6, ip(17, udp, src="0.0.0.0", dst="255.255.255.255"), src=mac)

ctl, tmp, fport = sys.argv[1], sys.argv[2], int(sys.argv[3])
s, d = vde(ctl, tmp + "/h")
gw = arp_reply_from_gateway(d, time.time() + 10)
if gw is None:
    print("no ARP reply before the garbage"); sys.exit(1)
random.seed(13)
sent = 0
def send(f):
    global sent
    try:
        d.send(f)
        sent += 1
    except (BlockingIOError, socket.timeout, ConnectionRefusedError):
        time.sleep(0.01)
for i in range(3000):
    r = random.randrange(14)
    dst = random.choice([gw, b"\xff" * 6])
    n = random.randrange(0, 1600)
    junk = os.urandom(n)
    if r == 0:
        send(eth(dst, junk, random.randrange(65536)))
    elif r == 1:
        send(eth(dst, junk[:random.randrange(0, 40)], 0x0800))          # short IPv4
    elif r == 2:
        send(eth(dst, ip(random.randrange(256), junk, ihl=random.randrange(16), tot=random.randrange(65536))))
    elif r == 3:
        send(eth(dst, ip(17, struct.pack("!HHHH", random.randrange(65536), 53, random.randrange(65536), 0) + junk, dst="10.0.2.3")))
    elif r == 4:
        send(eth(dst, ip(6, junk[:random.randrange(0, 60)])))            # truncated TCP
    elif r == 5:
        tcp = struct.pack("!HHIIBBHHH", random.randrange(1, 65536), random.randrange(1, 65536), random.randrange(1 << 32),
                          random.randrange(1 << 32), random.randrange(256), random.randrange(256), 65535, 0, 0)
        send(eth(dst, ip(6, tcp + junk[:100], dst=random.choice(["10.0.2.2", "10.0.2.3", "127.0.0.1", "10.0.2.255"]))))
    elif r == 6:
        send(eth(dst, ip(1, bytes([random.randrange(256), 0]) + junk[:200])))  # ICMP of any type
    elif r == 7:
        send(eth(dst, ip(17, junk[:300], frag=random.randrange(65536))))      # fragments, offsets
    elif r == 8:
        send(dhcp(bytes([2, 0]) + os.urandom(4)))                                # DHCP from many MACs
    elif r == 9:
        send(dhcp(ME, bytes([random.randrange(256), random.randrange(256)]) + junk[:random.randrange(300)]))
    elif r == 10:
        send(eth(dst, junk[:random.randrange(60)], 0x0806))                   # short ARP
    elif r == 11:
        send(eth(dst, ip(17, junk[:600], opts=os.urandom(random.choice([4, 8, 40])), ihl=15)))
    elif r == 12:
        send(eth(dst, junk, 0x86dd))                                          # IPv6 garbage
    else:
        send(junk[:random.randrange(0, 14)])                                  # runts
    if i % 500 == 0:
        # a host client on the forward, no guest behind it
        try:
            c = socket.create_connection(("127.0.0.1", fport), timeout=2)
            c.sendall(b"GET / HTTP/1.0\r\n\r\n")
            c.settimeout(1)
            try:
                c.recv(100)
            except OSError:
                pass
            c.close()
        except OSError:
            pass
while True:  # drain what the NAT answered
    try:
        d.recv(4096)
    except (socket.timeout, BlockingIOError):
        break
gw2 = arp_reply_from_gateway(d, time.time() + 10)
print("sent %d hostile frames; ARP for 10.0.2.2 %s" % (sent, "answered" if gw2 == gw else "NOT answered"))
sys.exit(0 if gw2 == gw else 1)
EOF

FPORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SW="$WORK/sw"
"$UMLKIT" switch -s "$SW" -M "$WORK/mgmt" --nat --forward "tcp:$FPORT:10.0.2.15:80" >"$WORK/sw.log" 2>&1 &
SWPID=$!
on_exit kill_pid "$SWPID"
for _ in $(seq 100); do [ -S "$WORK/mgmt" ] && grep -q "nat: port up" "$WORK/sw.log" && break; sleep 0.1; done
check "nat-hostile: switch with --nat starts" grep -q "nat: port up" "$WORK/sw.log"
out=$(timeout 120 "$PY" "$WORK/nat.py" "$SW/ctl" "$WORK" "$FPORT" 2>&1)
rc=$?
echo "# $out" | tail -3
check "nat-hostile: the NAT still answers ARP after 3000 garbage frames" test "$rc" -eq 0
check "nat-hostile: the switch process is alive" kill -0 "$SWPID"
echo quit | timeout 5 "$PY" -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(sys.argv[1]); s.settimeout(5)
b = b""
while not b.endswith(b"vde$ "): b += s.recv(4096)
s.sendall(b"port/print\n"); b = b""
while not b.endswith(b"vde$ "): b += s.recv(4096)
sys.exit(0 if b"umlkit nat 10.0.2.0/24" in b else 1)' "$WORK/mgmt"
check "nat-hostile: the console answers and lists the NAT port" test $? -eq 0
# bad forwards at start: exit 1, nothing left
timeout 10 "$UMLKIT" switch -s "$WORK/sw2" --nat --forward "tcp:$FPORT:10.0.2.15:80" >"$WORK/busy.log" 2>&1
rc=$?
check "nat-hostile: a forward on a busy port fails (exit 1), naming it" \
  sh -c "[ $rc -eq 1 ] && grep -q '127.0.0.1:$FPORT' '$WORK/busy.log' && [ ! -e '$WORK/sw2' ]"
timeout 10 "$UMLKIT" switch -s "$WORK/sw3" --nat --forward "tcp:80:10.0.2.15" >"$WORK/bad.log" 2>&1
rc=$?
check "nat-hostile: a malformed forward fails (exit 1), naming it" \
  sh -c "[ $rc -eq 1 ] && grep -q \"'tcp:80:10.0.2.15'\" '$WORK/bad.log' && [ ! -e '$WORK/sw3' ]"
