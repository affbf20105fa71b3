#!/usr/bin/env bash
# Issue 9 (images): image names without a recipe. Hostile or broken mapping
# files (lab.toml [images], the user's images.toml) stop `lab info`/`lab
# start` with the file named and nothing started; unknown names and
# kathara/p4 get one note per name naming the stand-in image.
. "$(dirname "$0")/lib.sh"
export UMLKIT_LAB_STATE="$WORK/labstate"
export XDG_CONFIG_HOME="$WORK/config"
U="$XDG_CONFIG_HOME/umlkit/images.toml"
mkdir -p "$(dirname "$U")"
L="$WORK/lab"; mkdir -p "$L"
printf 's1[0]=A\ns1[image]="kathara/p4"\ns2[0]=A\ns2[image]="kathara/p4:latest"\nw[0]=A\nw[image]="lscr.io/linuxserver/wireshark"\nc[0]=A\nc[image]="kathara/pox"\n' >"$L/lab.conf"
on_exit "$UMLKIT" lab clean "$L"

out=$("$UMLKIT" lab info "$L" 2>&1); rc=$?
check "unmapped: lab info exits 0 (rc $rc)" [ "$rc" = 0 ]
check "kathara/p4: one note for both machines naming bmv2/p4c" \
  bash -c '[ "$(grep -c "note: image kathara/p4" <<<"$1")" = 1 ] && grep -q "image kathara/p4 (s1, s2): bmv2.*p4c.*; s1, s2 boot the Debian lab image kathara.*simple_switch/p4c commands in startup files will fail" <<<"$1"' _ "$out"
check "unknown non-Kathara name: busybox stand-in named, mapping explained" \
  bash -c 'grep -q "image lscr.io/linuxserver/wireshark (w): .*w boots the default busybox image instead.*\[images\] \"lscr.io/linuxserver/wireshark\"" <<<"$1"' _ "$out"
check "notes name the user's mapping file (not yet there)" \
  bash -c 'grep -q "map the name in lab.toml or in $2:" <<<"$1"' _ "$out" "$U"
check "kathara/pox: Debian lab image stand-in named" \
  bash -c 'grep -q "image kathara/pox (c): .*Debian lab image kathara" <<<"$1"' _ "$out"

# the user's file maps it: no note, lab info says via which file
printf '[images]\n"kathara/pox" = "kathara/sdn"\n' >"$U"
out=$("$UMLKIT" lab info "$L" 2>&1)
check "user map: machine shows the mapping and the file" \
  bash -c 'grep -q "^machine c .*for kathara/pox via \"kathara/pox\" = \"kathara/sdn\" ($2 \[images\])" <<<"$1" && ! grep -q "note: image kathara/pox" <<<"$1"' _ "$out" "$U"

# hostile user files: named in a clear error, exit != 0, nothing started
bad() { # NAME CONTENT WANT
  printf '%b' "$2" >"$U"
  local o rc
  o=$("$UMLKIT" lab start "$L" 2>&1); rc=$?
  check "$1: lab start fails naming the file (rc $rc)" bash -c '[ "$1" != 0 ] && grep -q "$2" <<<"$3" && grep -q "$4" <<<"$3"' _ "$rc" "$U" "$o" "$3"
  check "$1: nothing started" bash -c '! ls "$1"/*/state.json >/dev/null 2>&1' _ "$UMLKIT_LAB_STATE"
}
bad "user map to an unknown image" '[images]\n"kathara/pox" = "evil/../../etc"\n' 'umlkit has no image "evil/../../etc"'
bad "user map not TOML" '[images\n"x" = \n' 'images.toml'
bad "user map unknown table" '[imagez]\n"a" = "default"\n' 'unknown field'
rm -f "$U"; mkdir -p "$U"
o=$("$UMLKIT" lab info "$L" 2>&1); rc=$?
check "user map is a directory: error naming it (rc $rc)" bash -c '[ "$1" != 0 ] && grep -q "cannot read the image mapping file $2" <<<"$3"' _ "$rc" "$U" "$o"
rmdir "$U"

# lab.toml's own table: wins over the user's file; bad targets name lab.toml
T="$WORK/tlab"; mkdir -p "$T"
printf '[images]\n"kathara/pox" = "default"\n[machines.c]\nimage = "kathara/pox"\n' >"$T/lab.toml"
printf '[images]\n"kathara/pox" = "kathara/sdn"\n' >"$U"
out=$("$UMLKIT" lab info "$T" 2>&1)
check "lab.toml [images] wins over the user's file" \
  bash -c 'grep -q "^machine c .*image default for kathara/pox via \"kathara/pox\" = \"default\" (.*/tlab/lab.toml \[images\])" <<<"$1"' _ "$out"
printf '[images]\n"kathara/pox" = "kathara/p4"\n[machines.c]\nimage = "kathara/pox"\n' >"$T/lab.toml"
o=$("$UMLKIT" lab info "$T" 2>&1); rc=$?
check "lab.toml map to kathara/p4: error naming lab.toml (rc $rc)" \
  bash -c '[ "$1" != 0 ] && grep -q "tlab/lab.toml: \[images\] \"kathara/pox\" = \"kathara/p4\": umlkit has no image" <<<"$2"' _ "$rc" "$o"
