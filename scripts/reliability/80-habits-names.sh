#!/usr/bin/env bash
# Issue 11 (users' habits): Netkit/Kathará names through install-links
# (never replacing a file that is not ours), refused flags named with exit 2
# before anything starts, collision domain names that try to leave the state
# folder, non-UTF-8 arguments, vstart machines really wired through their
# domain, and exit codes: umlkit's own failure (125) apart from the command's.
. "$(dirname "$0")/lib.sh"
export UMLKIT_LAB_STATE="$WORK/labstate"
B="$WORK/bin"; mkdir -p "$B"

# install-links: a foreign file and a foreign symlink stay
printf '#!/bin/sh\necho real netkit\n' >"$B/lstart"; chmod +x "$B/lstart"
ln -s /bin/true "$B/vhalt"
"$UMLKIT" install-links "$B" >"$WORK/il.out" 2>&1; rc=$?
check "install-links: exit 1 when a name is taken (rc $rc)" [ $rc = 1 ]
check "install-links: the foreign lstart file is untouched" grep -q "real netkit" "$B/lstart"
check "install-links: the foreign vhalt link is untouched" [ "$(readlink "$B/vhalt")" = /bin/true ]
check "install-links: the message names the file" grep -q "lstart exists and is not a link" "$WORK/il.out"
"$UMLKIT" install-links --force "$B" >/dev/null 2>&1
check "install-links --force: still never replaces a file" grep -q "real netkit" "$B/lstart"
check "install-links --force: replaces the foreign symlink" [ "$(readlink -f "$B/vhalt")" = "$(readlink -f "$UMLKIT")" ]
rm -f "$B/lstart"; "$UMLKIT" install-links "$B" >/dev/null 2>&1
check "install-links: all 17 names link to umlkit" bash -c 'n=0; for f in "$1"/*; do [ "$(readlink -f "$f")" = "$(readlink -f "$2")" ] && n=$((n+1)); done; [ $n = 17 ]' _ "$B" "$UMLKIT"
echo x >"$WORK/afile"
"$UMLKIT" install-links "$WORK/afile" >"$WORK/il2" 2>&1; rc=$?
check "install-links into a file: error naming it (rc $rc)" bash -c "[ $rc = 1 ] && grep -q afile '$WORK/il2'"

# refused flags: exit 2, named, nothing started or written
L="$WORK/lab"; mkdir -p "$L"
printf 'pc1[0]=A\n' >"$L/lab.conf"
printf 'ip addr add 10.8.0.1/24 dev eth0\nip link set eth0 up\n' >"$L/pc1.startup"
(cd "$L" && "$B/lstart" -o mem=4096 >"$WORK/r1" 2>&1); rc=$?
check "lstart -o: refused by name, exit 2 (rc $rc)" bash -c "[ $rc = 2 ] && grep -q 'lstart: -o is not supported' '$WORK/r1'"
(cd "$L" && "$B/kathara" lstart --privileged >"$WORK/r2" 2>&1); rc=$?
check "kathara lstart --privileged: refused, exit 2" bash -c "[ $rc = 2 ] && grep -q -- '--privileged' '$WORK/r2'"
check "nothing started by refused command lines" [ ! -e "$UMLKIT_LAB_STATE" ]
"$B/lstart" -d "$(printf 'x\xff')" >"$WORK/r3" 2>&1; rc=$?
check "non-UTF-8 argument: exit 2, no panic (rc $rc)" bash -c "[ $rc = 2 ] && ! grep -qi panic '$WORK/r3'"
for d in ../../escape .hidden 'a/b' "$(printf 'a\nb')" ''; do
  "$B/vstart" vm --eth0="$d" >"$WORK/r4" 2>&1; rc=$?
  check "vstart --eth0='$(printf %q "$d")': refused (rc $rc)" bash -c "[ $rc = 2 ] && grep -q 'collision domain' '$WORK/r4'"
done
check "no domain dir created outside the state root" bash -c "[ ! -e '$UMLKIT_STATE_DIR/escape' ] && [ ! -e '$WORK/escape' ] && [ ! -e '$UMLKIT_STATE_DIR/.domains' ]"
"$B/kathara" wipe >"$WORK/r5" 2>&1; rc=$?
check "kathara wipe: refused, nothing removed (rc $rc)" [ $rc = 2 ]

# umlkit's own failure is 125, apart from the command's status
"$UMLKIT" exec nosuch -- true >/dev/null 2>&1; rc=$?
check "exec on no guest: 125 (rc $rc)" [ $rc = 125 ]
"$B/kathara" exec -d "$L" pc1 -- true >/dev/null 2>&1; rc=$?
check "kathara exec on a lab not running: 125 (rc $rc)" [ $rc = 125 ]

# real machines: a lab through the names, and two vstart machines on one domain
on_exit "cd '$L' && '$B/lclean'"
(cd "$L" && "$B/lstart" -f >"$WORK/ls.out" 2>&1); rc=$?
check "lstart from the lab folder (rc $rc)" [ $rc = 0 ]
out=$(cd "$L" && "$B/kathara" exec pc1 'ip -4 -o addr show dev eth0; exit 7' 2>&1); rc=$?
check "kathara exec: the command's status (7) and output" bash -c "[ $rc = 7 ] && grep -q 10.8.0.1/24 <<<\"\$1\"" _ "$out"
(cd "$L" && "$B/lclean" >/dev/null 2>&1)
check "lclean: lab state removed" bash -c "[ -z \"\$(ls -A '$UMLKIT_LAB_STATE' 2>/dev/null)\" ]"

on_exit "'$B/vcrash' v1 v2; kill_pid \$(cat '$UMLKIT_STATE_DIR/.domains/D.pid' 2>/dev/null)"
"$B/vstart" v1 --eth0=D --append=umlkit.ip.eth0=10.5.0.1/24 >"$WORK/v1" 2>&1; r1=$?
"$B/vstart" v2 --eth0=D --append=umlkit.ip.eth0=10.5.0.2/24 --con0=xterm >"$WORK/v2" 2>&1; r2=$?
check "vstart v1 and v2 on domain D (rc $r1 $r2)" bash -c "[ $r1 = 0 ] && [ $r2 = 0 ]"
check "vstart: the ignored --con0 is said once" bash -c "[ \$(grep -c 'note: vstart: ignoring --con0' '$WORK/v2') = 1 ]"
check "one switch for domain D" bash -c "[ \$(pgrep -fc -- '[-]s $UMLKIT_STATE_DIR/.domains/D ') = 1 ]"
"$UMLKIT" exec v1 -- ping -c 1 -W 5 10.5.0.2 >/dev/null 2>&1; rc=$?
check "v1 reaches v2 through domain D (rc $rc)" [ $rc = 0 ]
check "vlist shows both" bash -c '"$1" | grep -q "^v1 " && "$1" | grep -q "^v2 "' _ "$B/vlist"
"$B/vhalt" -r v1 v2 >/dev/null 2>&1; rc=$?
check "vhalt -r v1 v2 (rc $rc)" bash -c "[ $rc = 0 ] && ! '$B/vlist' | grep -q '^v[12] '"
