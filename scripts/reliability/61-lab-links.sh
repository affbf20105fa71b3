#!/usr/bin/env bash
# Issue 12 (links and captures declared in lab files): bad interface link
# settings refused before anything starts, naming the file, machine and key;
# a hostile domain name's capture stays in the state dir; a capture file
# that is a symlink is never written through; a capture that dies shows in
# `lab status` (exit 1) and `lab stop` still ends cleanly; bad `--name`.
. "$(dirname "$0")/lib.sh"
export UMLKIT_LAB_STATE="$WORK/labstate"
if ! command -v linux.uml >/dev/null && [ -z "${UMLKIT_KERNEL:-}" ]; then
  skip "lab links: no UML kernel"; exit 0
fi
L="$WORK/lab"; mkdir -p "$L"
on_exit "$UMLKIT" lab clean "$L"
toml() { # $1: link value of a's eth0, $2: domain name
  cat >"$L/lab.toml" <<EOT
[machines.a]
[[machines.a.interfaces]]
domain = "$2"
addresses = ["10.9.0.1/24"]
link = $1
[domains."$2"]
capture = true
EOT
}
for bad in '{ delay_ms = -1.0 }' '{ spec = "delay=20" }' '{ delay_ms = 5.0, spec = "delay=3ms" }' '{ spec = "kbps=3" }'; do
  toml "$bad" lan
  out=$("$UMLKIT" lab start "$L" 2>&1); rc=$?
  check "bad link $bad: refused (rc $rc)" [ "$rc" != 0 ]
  check "bad link $bad: error names lab.toml and a eth0" grep -q "lab.toml.*machine a eth0: link emulation" <<<"$out"
  check "bad link $bad: nothing started" bash -c '! ls "$1"/*/state.json >/dev/null 2>&1' _ "$UMLKIT_LAB_STATE"
done

# a domain named like a path: the capture file is STATE/capture/domain0.pcapng
toml '{ delay_ms = 1.0 }' '../../../x'
out=$("$UMLKIT" lab start "$L" 2>&1); rc=$?
check "hostile domain: lab starts (rc $rc)" [ "$rc" = 0 ]
cap=$(ls "$UMLKIT_LAB_STATE"/*/capture/domain0.pcapng 2>/dev/null)
check "hostile domain: capture under the state dir" [ -s "$cap" ]
check "hostile domain: nothing written outside" bash -c '! ls "$1"/../x.pcapng "$1"/../../x.pcapng "$1"/x.pcapng >/dev/null 2>&1' _ "$UMLKIT_LAB_STATE"
"$UMLKIT" lab exec -d "$L" a -- arping -c 1 -w 2 -I eth0 10.9.0.9 >/dev/null 2>&1

# the capture process dies: status says so (exit 1), stop still ends cleanly
cpid=$(python3 -c 'import json,sys,glob; print(json.load(open(glob.glob(sys.argv[1]+"/*/state.json")[0]))["captures"][0]["pid"])' "$UMLKIT_LAB_STATE")
kill -9 "$cpid"
for _ in $(seq 100); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
"$UMLKIT" lab status "$L" >"$WORK/st" 2>&1; rc=$?
check "dead capture: status exits 1 (got $rc)" [ "$rc" = 1 ]
check "dead capture: shown dead" grep -q 'capture .*dead' "$WORK/st"
"$UMLKIT" lab stop "$L" >/dev/null 2>&1; rc=$?
check "dead capture: lab stop succeeds (rc $rc)" [ "$rc" = 0 ]
check "dead capture: frames so far readable" bash -c 'tshark -r "$1" -Y arp 2>/dev/null | grep -q "Who has 10.9.0.9"' _ "$cap"

# the capture file replaced by a symlink: refused, target untouched
echo precious >"$WORK/target"
rm -f "$cap" && ln -s "$WORK/target" "$cap"
out=$("$UMLKIT" lab start "$L" 2>&1); rc=$?
check "symlinked capture file: start refused (rc $rc)" [ "$rc" != 0 ]
check "symlinked capture file: target untouched" grep -qx precious "$WORK/target"
check "symlinked capture file: error names it" grep -q "capture ../../../x did not start: .*domain0.pcapng" <<<"$out"
"$UMLKIT" lab clean "$L" >/dev/null 2>&1

# umlkit capture --name: bad values refused with a clear message
for n in x 1= =a 'z=a'; do
  out=$("$UMLKIT" capture "$WORK/none.mgmt" --name "$n" 2>&1); rc=$?
  check "capture --name '$n': refused (rc $rc)" [ "$rc" = 2 ]
done
