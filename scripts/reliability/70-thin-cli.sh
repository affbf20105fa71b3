#!/usr/bin/env bash
# Issue 11 (thin CLI): the pieces moved into the libraries keep the drop-in
# tools' hostile-input behaviour: uml_mconsole without arguments / with a
# missing socket / a non-existent `log -f` file, uml_switch refusing -tap and
# bad arguments, `umlkit switch` limits, console/logs of unknown guests, and
# `lab test` on a folder with nothing to test.
. "$(dirname "$0")/lib.sh"
export UMLKIT_STATE_DIR="$WORK/state" UMLKIT_LAB_STATE="$WORK/labstate"
ln -s "$UMLKIT" "$WORK/uml_mconsole"
ln -s "$UMLKIT" "$WORK/uml_switch"

"$WORK/uml_mconsole" >"$WORK/o" 2>"$WORK/e"; rc=$?
check "uml_mconsole without arguments: usage, status 1 (rc $rc)" \
  bash -c "[ $rc = 1 ] && grep -qx 'Usage : uml_mconsole socket-name \[command\]' '$WORK/e'"
HOME="$WORK" "$WORK/uml_mconsole" "$WORK/nosock" version >"$WORK/o" 2>"$WORK/e"; rc=$?
check "uml_mconsole on a missing socket: warnings, status 1 (rc $rc)" \
  bash -c "[ $rc = 1 ] && grep -q \"Warning: couldn't stat file: $WORK/nosock - No such file or directory\" '$WORK/e' && grep -qx \"Sending command to '' : Invalid argument\" '$WORK/e'"
printf 'log -f %s\nquit\n' "$WORK/no-such-file" | HOME="$WORK" "$WORK/uml_mconsole" "$WORK/nosock" >"$WORK/o" 2>"$WORK/e"; rc=$?
check "uml_mconsole log -f of a missing file: the file named (rc $rc)" \
  bash -c "grep -q \"Couldn't open '$WORK/no-such-file' : No such file or directory\" '$WORK/e'"

"$WORK/uml_switch" -tap tap0 >"$WORK/o" 2>"$WORK/e"; rc=$?
check "uml_switch -tap: refused with a reason, status 1 (rc $rc)" \
  bash -c "[ $rc = 1 ] && grep -q '^uml_switch: -tap is not supported' '$WORK/e'"
"$WORK/uml_switch" -hub -bogus >"$WORK/o" 2>"$WORK/e"; rc=$?
check "uml_switch bad argument: hub notice then usage, status 1 (rc $rc)" \
  bash -c "[ $rc = 1 ] && grep -qx 'uml_switch will be a hub instead of a switch' '$WORK/o' && grep -q '^Usage : uml_switch' '$WORK/e'"
"$UMLKIT" switch -s "$WORK/sw" -n 0 >"$WORK/o" 2>"$WORK/e"; rc=$?
check "umlkit switch -n 0: refused (rc $rc)" \
  bash -c "[ $rc != 0 ] && grep -q 'the number of ports must be at least 1' '$WORK/e' && [ ! -e '$WORK/sw' ]"
"$UMLKIT" switch -s "$WORK/sw" -g no-such-group-umlkit >"$WORK/o" 2>"$WORK/e"; rc=$?
check "umlkit switch -g unknown: refused (rc $rc)" \
  bash -c "[ $rc != 0 ] && grep -q \"No such group 'no-such-group-umlkit'\" '$WORK/e'"

"$UMLKIT" console nosuch </dev/null >"$WORK/o" 2>"$WORK/e"; rc=$?
check "console of an unknown guest: named, status != 0 (rc $rc)" \
  bash -c "[ $rc != 0 ] && grep -q \"no guest named 'nosuch'\" '$WORK/e'"
"$UMLKIT" logs -f nosuch >"$WORK/o" 2>"$WORK/e"; rc=$?
check "logs -f of an unknown guest: named, status != 0 (rc $rc)" \
  bash -c "[ $rc != 0 ] && grep -q \"no guest named 'nosuch'\" '$WORK/e'"

L="$WORK/lab"; mkdir -p "$L"; echo 'a[0]=A' >"$L/lab.conf"
"$UMLKIT" lab test "$L" >"$WORK/o" 2>"$WORK/e"; rc=$?
check "lab test with nothing to test: the folder named, status != 0 (rc $rc)" \
  bash -c "[ $rc != 0 ] && grep -q 'no lab.test.toml and no _test/ folder: nothing to test' '$WORK/e'"
