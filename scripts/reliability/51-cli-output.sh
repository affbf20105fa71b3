#!/usr/bin/env bash
# Issue 8 item 11 (CLI/lab): a closed stdout ends commands quietly (no
# panic, no backtrace); terminal escapes in names are shown escaped; a domain
# name cannot inject DOT; out-of-range numbers in lab.toml are refused with
# the file and line.
. "$(dirname "$0")/lib.sh"
export UMLKIT_LAB_STATE="$WORK/labstate"

# A lab big enough that `lab info` overflows a pipe buffer: EPIPE for sure.
BIG="$WORK/big"; mkdir -p "$BIG"
for i in $(seq 0 2999); do echo "m$i[0]=A"; done >"$BIG/lab.conf"
"$UMLKIT" lab info "$BIG" 2>"$WORK/e1" | head -1 >/dev/null
check "lab info | head -1: no panic" bash -c "! grep -qiE 'panic|backtrace' '$WORK/e1'"
"$UMLKIT" lab info "$BIG" 2>"$WORK/e2" | head -0
rc=${PIPESTATUS[0]}
check "lab info | head -0: quiet exit (rc $rc in 0/141)" bash -c "[ $rc = 141 ] || [ $rc = 0 ]"
check "lab info | head -0: nothing on stderr" [ ! -s "$WORK/e2" ]
"$UMLKIT" ps 2>"$WORK/e3" | head -0
rc=${PIPESTATUS[0]}
check "ps | head -0: quiet exit (rc $rc in 0/141), no backtrace" bash -c "{ [ $rc = 141 ] || [ $rc = 0 ]; } && ! grep -qiE 'panic|backtrace' '$WORK/e3'"

# Names with terminal escapes.
E="$WORK/esc"; mkdir -p "$E"
printf 'LAB_DESCRIPTION="x\033]0;owned\007\033[31mred"\npc1[0]=A\033[2J\n' >"$E/lab.conf"
"$UMLKIT" lab info "$E" >"$WORK/info" 2>&1
check "lab info: no raw ESC/BEL printed" bash -c "! grep -q \$'\\033\\|\\007' '$WORK/info'"
check "lab info: escape shown as \\x1b" grep -qF 'A\x1b[2J' "$WORK/info"

# DOT injection through a domain name.
T="$WORK/dot"; mkdir -p "$T"
cat >"$T/lab.toml" <<'TOML'
[[machines.pc1.interfaces]]
domain = 'A"]; evil [shape=star]; "m:pc1" -- "evil2'
TOML
"$UMLKIT" lab graph "$T" >"$WORK/g.dot" 2>&1
if command -v dot >/dev/null; then
  nodes=$(dot -Tplain "$WORK/g.dot" 2>/dev/null | grep -c '^node ')
  # pc1, the domain and pc1's eth0 label (a node of its own since the Graphviz layout)
  check "lab graph: DOT parses with the injected name as one node ($nodes nodes)" [ "$nodes" = 3 ]
  check "lab graph: no node named evil" bash -c "! dot -Tplain '$WORK/g.dot' | grep -q '^node evil'"
else
  check "lab graph: quote escaped" grep -qF 'd:A\"]; evil' "$WORK/g.dot"
fi

# lab.toml limits.
L="$WORK/lim"; mkdir -p "$L"
printf '[machines.pc1]\n\n[[machines.pc1.interfaces]]\ndomain = "A"\nindex = 4000000000\n' >"$L/lab.toml"
out=$("$UMLKIT" lab info "$L" 2>&1); rc=$?
check "lab.toml index 4000000000 refused with file and line" bash -c "[ $rc = 1 ] && grep -q 'lab.toml.*line 5' <<<\"\$1\"" _ "$out"
printf '[machines.pc1]\nmem = 4294967295\n' >"$L/lab.toml"
out=$("$UMLKIT" lab info "$L" 2>&1); rc=$?
check "lab.toml mem of 4 PiB refused with file and line" bash -c "[ $rc = 1 ] && grep -q 'lab.toml.*line 2' <<<\"\$1\"" _ "$out"
