#!/usr/bin/env bash
# Issue 8 item 7, issue 10 (startup): an untrusted lab folder against the
# real binary and real guests. The folder tries to escape hostfs, to pass
# host kernel arguments, to make `lab test --write-signatures` write through
# a symlink, to leave a background job holding the boot open, to flood the
# host with output, and to break a boot step.
. "$(dirname "$0")/lib.sh"
ST="$WORK/labstate"
lab() { "$UMLKIT" lab "$1" --state-root "$ST" "${@:2}"; }

# --- one lab: hostfs escape, background jobs, big output, signature link
L="$WORK/lab"
mkdir -p "$L/_test/signatures"
echo 'pc1[0]=A' > "$L/lab.conf"
cat > "$L/pc1.startup" <<'EOF'
mkdir -p /mnt/a /mnt/b
mount -t hostfs none /mnt/a -o ../../../../../../..
mount -t hostfs none /mnt/b -o /
echo pwned > /hostlab/from_guest
sleep 600 &
nc -l -p 5000 &
head -c 33554432 /dev/zero | tr '\0' y
echo done
EOF
echo 'echo sig' > "$L/_test/pc1.test"
echo "host secret" > "$WORK/secret"
ln -s "$WORK/secret" "$L/_test/signatures/pc1.user"
on_exit lab clean "$L"

t0=$(date +%s)
if [ -x /usr/bin/time ]; then
  /usr/bin/time -o "$WORK/rss" -f %M "$UMLKIT" lab start --state-root "$ST" "$L" >"$WORK/start.out" 2>&1
else
  lab start "$L" >"$WORK/start.out" 2>&1
fi
rc=$? t1=$(date +%s)
check "lab start returns with background jobs in startup ($((t1 - t0)) s)" [ "$rc" -eq 0 -a $((t1 - t0)) -lt 60 ]
[ "$rc" -eq 0 ] || sed 's/^/#   /' "$WORK/start.out" | tail -n 15
if [ -s "$WORK/rss" ]; then
  rss=$(tail -n 1 "$WORK/rss")
  check "lab start peak RSS bounded with 32 MiB of startup output (${rss} KiB)" [ "$rss" -lt 65536 ]
else
  skip "lab start RSS (no /usr/bin/time)"
fi
check "startup errors shown by lab start" grep -q "startup errors" "$WORK/start.out"
mounts=$(lab exec -d "$L" pc1 -- cat /proc/mounts 2>&1)
check "startup cannot mount hostfs (no hostfs mount)" bash -c '! grep -q hostfs <<<"$1"' _ "$mounts"
check "lab folder is a read-only ext4 disk in the guest" grep -q "/hostlab ext4 ro" <<<"$mounts"
check "guest did not write into the lab folder" [ ! -e "$L/from_guest" ]
lab exec -d "$L" pc1 -- "cat /mnt/a$WORK/secret /mnt/b$WORK/secret" >"$WORK/leak" 2>&1
check "guest cannot read a host file through hostfs" bash -c '! grep -q "host secret" "$1"' _ "$WORK/leak"
lab test "$L" --write-signatures >"$WORK/sig.out" 2>&1
check "write-signatures refuses a symlinked signature" grep -q "symlink" "$WORK/sig.out"
check "the symlink target is untouched" [ "$(cat "$WORK/secret")" = "host secret" ]
check "lab logs shows the full startup log" bash -c '[ "$("$1" lab logs --state-root "$2" -d "$3" pc1 | wc -c)" -gt 33554432 ]' _ "$UMLKIT" "$ST" "$L"
lab clean "$L" >/dev/null 2>&1

# --- kernel arguments opening host resources
A="$WORK/lab-append"
mkdir -p "$A"
printf 'pc1[0]=A\npc1[append]="hostfs=/"\n' > "$A/lab.conf"
lab start "$A" >"$WORK/append.out" 2>&1
rc=$?
grep -q 'lab.conf:2.*hostfs=/' "$WORK/append.out"; named=$?
check "pc1[append]=hostfs=/ refused (lab.conf:2)" [ "$rc" -ne 0 -a "$named" -eq 0 ]
on_exit lab clean "$A"

# --- symlink chain out of the folder
C="$WORK/lab-chain"
mkdir -p "$C/pc1"
echo 'pc1[0]=A' > "$C/lab.conf"
ln -s /etc "$C/hop"
ln -s ../hop "$C/pc1/x"
lab info "$C" >"$WORK/chain.out" 2>&1
rc=$?
grep -q "outside the lab folder" "$WORK/chain.out"; named=$?
check "symlink chain pc1/x -> ../hop -> /etc refused" [ "$rc" -ne 0 -a "$named" -eq 0 ]

# --- a failing boot step: never reported ready
F="$WORK/lab-fail"
mkdir -p "$F/pc1/proc"
echo 'pc1[0]=A' > "$F/lab.conf"
echo x > "$F/pc1/proc/cannot-create"
on_exit lab clean "$F"
lab start "$F" >"$WORK/fail.out" 2>&1
rc=$?
grep -q "boot step failed" "$WORK/fail.out"; named=$?
check "machine with a failed boot step: lab start fails" [ "$rc" -ne 0 -a "$named" -eq 0 ]
check "lab status says failed, not running" bash -c '"$1" lab status --state-root "$2" "$3" | grep -q "^pc1 *failed"' _ "$UMLKIT" "$ST" "$F"
