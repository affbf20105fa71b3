#!/usr/bin/env bash
# Issue 8 item 5 and issue 10: full disks. A guest whose state dir fills up
# fails `run --wait` at once naming the file (it used to wait 120 s); a full
# image cache names the file it could not write; a full lab state dir still
# lets `lab stop` and `lab clean` stop everything.
. "$(dirname "$0")/lib.sh"
if [ "$(id -u)" -ne 0 ]; then
  skip "21 full disks: needs root (mount -t tmpfs)"
  exit 0
fi
mnt() { mkdir -p "$2" && mount -t tmpfs -o "size=$1,mode=0700" tmpfs "$2" && on_exit umount -l "$2"; }
fill() { dd if=/dev/zero of="$1/filler" bs=64k >/dev/null 2>&1; true; }

IMG=$("$UMLKIT" image default) || { fail "21 default image"; exit 0; }
for size in 4k 16k; do
  M=$WORK/g$size
  mnt "$size" "$M" || { fail "21 mount"; continue; }
  t0=$(date +%s)
  out=$(UMLKIT_STATE_DIR=$M/s "$UMLKIT" run --detach --wait --name f21 --disk "$IMG:cow=$WORK/cow$size" 2>&1)
  rc=$? took=$(($(date +%s) - t0))
  left=$(pgrep -f "umid=f21 .*uml_dir=$M" | wc -l)
  pkill_list=$(pgrep -f "uml_dir=$M")
  for p in $pkill_list; do kill -9 "$p" 2>/dev/null; done
  if [ "$rc" -ne 0 ] && grep -q "$M/s/f21/state.json" <<<"$out" && grep -q "No space left" <<<"$out" && [ "$took" -lt 30 ] && [ "$left" -eq 0 ]; then
    ok "21 guest state dir full ($size): run --wait fails in ${took}s naming state.json, guest stopped"
  else
    fail "21 guest state dir full ($size): rc=$rc took=${took}s left=$left: $out"
  fi
  st=$(UMLKIT_STATE_DIR=$M/s "$UMLKIT" ps 2>&1)
  if grep -q booting <<<"$st"; then fail "21 ps still says booting ($size): $st"; else ok "21 ps does not lie ($size)"; fi
done

C=$WORK/cache
mnt 2m "$C"
out=$(UMLKIT_CACHE_DIR=$C/images "$UMLKIT" image default 2>&1)
if [ $? -ne 0 ] && grep -q "$C/images/" <<<"$out" && grep -q "No space left" <<<"$out" && [ -z "$(ls -A "$C/images")" ]; then
  ok "21 full image cache names the file, leaves nothing"
else
  fail "21 full image cache: $out; left: $(ls -A "$C/images" 2>&1)"
fi

L=$WORK/labfs
mnt 96m "$L"
LAB=$WORK/lab
mkdir -p "$LAB"
printf 'a[0]=lan\nb[0]=lan\n' >"$LAB/lab.conf"
on_exit "$UMLKIT" lab clean "$LAB" --state-root "$L/st"
lab() { "$UMLKIT" lab "$1" "$LAB" --state-root "$L/st" 2>&1; }
running() { pgrep -f "$L/st" | wc -l; }
if ! out=$(lab start); then fail "21 lab start: $out"; exit 0; fi
fill "$L"
out=$(lab stop)
if [ "$(running)" -eq 0 ]; then ok "21 lab stop on a full state dir stops everything"; else fail "21 lab stop on a full disk left $(running): $out"; fi
rm -f "$L/filler"
if ! out=$(lab start); then fail "21 lab restart: $out"; exit 0; fi
fill "$L"
out=$(lab clean)
rc=$?
if [ "$rc" -eq 0 ] && [ "$(running)" -eq 0 ] && [ -z "$(ls -A "$L/st" 2>/dev/null)" ]; then
  ok "21 lab clean on a full state dir stops and removes everything"
else
  fail "21 lab clean on a full disk: rc=$rc left=$(running): $out"
fi

# a lab started on a nearly full state dir fails at once, naming a file, and
# leaves nothing running (it used to wait for the boot timeout)
for size in 16k 32k; do
  S=$WORK/labsmall$size
  mnt "$size" "$S"
  on_exit "$UMLKIT" lab clean "$LAB" --state-root "$S/st"
  t0=$(date +%s)
  out=$("$UMLKIT" lab start "$LAB" --state-root "$S/st" 2>&1)
  rc=$? took=$(($(date +%s) - t0))
  "$UMLKIT" lab clean "$LAB" --state-root "$S/st" >/dev/null 2>&1
  left=$(pgrep -f "$S/st" | wc -l)
  if [ "$rc" -ne 0 ] && [ "$took" -lt 30 ] && grep -q "$S/st/" <<<"$out" && [ "$left" -eq 0 ]; then
    ok "21 lab start on a full state dir ($size) fails in ${took}s naming the file; clean leaves nothing"
  else
    fail "21 lab start on a full state dir ($size): rc=$rc took=${took}s left=$left: $out"
  fi
done
