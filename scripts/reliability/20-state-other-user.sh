#!/usr/bin/env bash
# Issue 8 items 3 and 8: another local user prepares our lab state root
# (plants a state.json naming our processes, or a symlink), and tries our
# guest's exec, console and mconsole sockets after we started it under
# `umask 000`. Nothing of ours may be killed, read or reached.
. "$(dirname "$0")/lib.sh"
if ! have_other_user; then
  skip "20 another user: needs root (useradd, runuser)"
  exit 0
fi
LAB=$WORK/lab
mkdir -p "$LAB"
printf 'a[0]=lan\n' >"$LAB/lab.conf"
LAB=$(cd "$LAB" && pwd -P)
ID=$(printf '%s' "$LAB" | sha1sum | cut -c1-8)

# a process of ours the planted state names
sleep 300 &
VICTIM=$!
on_exit kill_pid "$VICTIM"

# a world-writable sticky dir, as /tmp is
mkdir -m 1777 "$WORK/tmp"
SHARED=$WORK/tmp/umlkit-lab
as_other mkdir -p "$SHARED/$ID"
as_other sh -c "printf '{\"lab_dir\":\"$LAB\",\"switches\":[],\"machines\":[{\"name\":\"a\",\"pid\":$VICTIM,\"pgid\":$VICTIM,\"extra_pids\":[$VICTIM]}]}' >'$SHARED/$ID/state.json'"
for sub in stop crash clean; do
  out=$("$UMLKIT" lab "$sub" "$LAB" --state-root "$SHARED" 2>&1)
  rc=$?
  if [ "$rc" -ne 0 ] && grep -q "not to you" <<<"$out" && kill -0 "$VICTIM" 2>/dev/null; then
    ok "20 lab $sub refuses a state root another user made (victim alive)"
  else
    fail "20 lab $sub with a planted state root: rc=$rc alive=$(kill -0 $VICTIM 2>/dev/null && echo y || echo n): $out"
  fi
done

# a symlinked root pointing at a folder the attacker controls
as_other mkdir -p "$WORK/other-home/target/$ID"
ln -s "$WORK/other-home/target" "$WORK/link"
out=$("$UMLKIT" lab crash "$LAB" --state-root "$WORK/link" 2>&1)
if [ $? -ne 0 ] && grep -q "symbolic link" <<<"$out"; then
  ok "20 symlinked lab state root refused"
else
  fail "20 symlinked lab state root: $out"
fi

# the guest store root the same way
as_other mkdir -p "$WORK/tmp/ostate"
out=$(UMLKIT_STATE_DIR=$WORK/tmp/ostate "$UMLKIT" ps 2>&1)
if [ $? -ne 0 ] && grep -q "not to you" <<<"$out"; then ok "20 guest state root of another user refused"; else fail "20 guest state root: $out"; fi

# a guest started under umask 000, in a root others may enter
mkdir -m 0755 "$UMLKIT_STATE_DIR"
on_exit "$UMLKIT" kill r20
if ! out=$( (umask 000; exec "$UMLKIT" run --detach --wait --name r20) 2>&1); then
  fail "20 guest start: $out"
  exit 0
fi
G=$UMLKIT_STATE_DIR/r20
modes=$(stat -c '%n %a' "$G" "$G/u" "$G"/*.json "$G"/*.log "$G"/*.cow "$G"/*.sock "$G/u/r20/mconsole" | sed "s|$G|G|")
bad=$(awk '($1=="G"||$1=="G/u") && $2!="700" {print} $1!="G" && $1!="G/u" && $2 !~ /^[67]00$/ {print}' <<<"$modes")
if [ -z "$bad" ]; then ok "20 guest dirs 0700, files and sockets 0600 under umask 000"; else fail "20 modes: $bad"; fi
probe='use IO::Socket::UNIX; my $s = IO::Socket::UNIX->new(Peer => $ARGV[0], Type => ($ARGV[1] ? SOCK_DGRAM : SOCK_STREAM)); print $s ? "connected" : "$!";'
for s in exec.sock:0 console.sock:0 u/r20/mconsole:1; do
  r=$(as_other perl -e "$probe" "$G/${s%%:*}" "${s##*:}")
  if [ "$r" = "Permission denied" ]; then ok "20 other user cannot connect to ${s%%:*}"; else fail "20 other user and ${s%%:*}: $r"; fi
done
# even with the guest dir opened, the sockets themselves refuse
chmod 0755 "$G"
for s in exec.sock console.sock; do
  r=$(as_other perl -e "$probe" "$G/$s" 0)
  if [ "$r" = "Permission denied" ]; then ok "20 $s itself is 0600"; else fail "20 $s with an open dir: $r"; fi
done
chmod 0700 "$G"
check "20 owner still execs" test "$("$UMLKIT" exec r20 -- echo mine 2>&1)" = mine
"$UMLKIT" halt r20 >/dev/null 2>&1

# a lab started under umask 000: its state folder is private and another
# user reaches neither its switch nor its machines
LST=$WORK/labstate
on_exit "$UMLKIT" lab clean "$LAB" --state-root "$LST"
if out=$( (umask 000; exec "$UMLKIT" lab start "$LAB" --state-root "$LST") 2>&1); then
  SD=$LST/$ID
  m=$(stat -c '%a' "$LST" "$SD" "$SD/sw" "$SD/state.json" | tr '\n' ' ')
  if [ "$m" = "700 700 700 600 " ]; then ok "20 lab state root, folder, sw/ 0700 and state.json 0600 under umask 000"; else fail "20 lab modes: $m"; fi
  chmod 0755 "$LST" # even with the root opened up
  r=$(as_other perl -e "$probe" "$SD/sw/0/ctl" 0)
  if [ "$r" = "Permission denied" ]; then ok "20 other user cannot connect to the lab's switch"; else fail "20 other user and the lab switch: $r"; fi
  r=$(as_other perl -e "$probe" "$SD/g/a/exec.sock" 0)
  if [ "$r" = "Permission denied" ]; then ok "20 other user cannot connect to a lab machine's exec socket"; else fail "20 other user and a lab machine: $r"; fi
  "$UMLKIT" lab clean "$LAB" --state-root "$LST" >/dev/null 2>&1
else
  fail "20 lab start under umask 000: $out"
fi
