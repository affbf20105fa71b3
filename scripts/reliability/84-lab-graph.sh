#!/usr/bin/env bash
# Issue 14 (layout): `lab graph --svg` through Graphviz with hostile names
# (markup, quotes, entities, control characters in domain names; a machine
# name with markup is refused), without Graphviz (error naming the package,
# exit 1, no file), and a 50-machine lab laid out within bounds.
. "$(dirname "$0")/lib.sh"
command -v neato >/dev/null || { skip "graphviz (neato) is not installed"; exit 0; }
command -v python3 >/dev/null || { skip "python3 is not installed"; exit 0; }
L="$WORK/lab"; mkdir -p "$L"
cat >"$L/lab.toml" <<'TOML'
[machines.r1]
[[machines.r1.interfaces]]
domain = "<script>alert(1)</script>"
addresses = ["10.0.0.1/24"]
[[machines.r1.interfaces]]
domain = "a\"];x[label=\"&amp;&#0;\u001b"
[machines.pc]
[[machines.pc.interfaces]]
domain = "<script>alert(1)</script>"
TOML
"$UMLKIT" lab graph "$L" --svg "$WORK/g.svg" --dot "$WORK/g.dot" >"$WORK/o" 2>&1; rc=$?
check "hostile domain names: lab graph --svg succeeds (rc $rc)" [ $rc = 0 ]
check "the SVG is well-formed XML with no script element and the names as text" python3 - "$WORK/g.svg" <<'PY'
import sys, xml.etree.ElementTree as ET
t = ET.parse(sys.argv[1]); ns = "{http://www.w3.org/2000/svg}"
tags = {e.tag.replace(ns, "") for e in t.iter()}
assert tags <= {"svg", "g", "title", "text", "path", "polygon", "ellipse"}, tags
g = {e.get("id"): e for e in t.iter(ns + "g") if e.get("id")}
d = g["domain-%3Cscript%3Ealert%281%29%3C%2Fscript%3E"]
assert [x.text for x in d.iter(ns + "text")][0] == "<script>alert(1)</script>"
assert "link-r1-eth1" in g and "machine-pc" in g, sorted(g)
texts = [x.text for x in t.iter(ns + "text")]
assert any(s and s.startswith('a"];x[label="&amp;&#0;\\x1b') for s in texts), texts
PY
check "the DOT keeps the quotes escaped" grep -qF 'a\"];x[label=\"&amp;amp;&amp;#0;' "$WORK/g.dot"
printf '[machines."<b>x</b>"]\n[[machines."<b>x</b>".interfaces]]\ndomain = "A"\n' >"$L/lab.toml"
"$UMLKIT" lab graph "$L" --svg "$WORK/m.svg" >"$WORK/o2" 2>&1; rc=$?
check "a machine name with markup is refused by name (rc $rc)" bash -c "[ $rc != 0 ] && grep -q 'machine name' '$WORK/o2' && [ ! -e '$WORK/m.svg' ]"

# no Graphviz on PATH
mkdir -p "$WORK/empty"
printf 'pc1[0]=A\npc2[0]=A\n' >"$L/lab.conf"; rm -f "$L/lab.toml"
PATH="$WORK/empty" "$UMLKIT" lab graph "$L" --svg "$WORK/n.svg" >"$WORK/o3" 2>&1; rc=$?
check "without graphviz: exit 1 naming the package, no file (rc $rc)" bash -c "[ $rc = 1 ] && grep -q 'install the Debian package graphviz' '$WORK/o3' && [ ! -e '$WORK/n.svg' ]"

# 50 machines in a ring
: >"$L/lab.conf"
for i in $(seq 0 49); do echo "r$i[0]=ring$i" >>"$L/lab.conf"; echo "r$i[1]=ring$(( (i + 1) % 50 ))" >>"$L/lab.conf"; done
t0=$(date +%s%N)
"$UMLKIT" lab graph "$L" --svg "$WORK/r.svg" >"$WORK/o4" 2>&1; rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "50-machine ring laid out in ${ms} ms (rc $rc, bound 30 s)" bash -c "[ $rc = 0 ] && [ $ms -lt 30000 ] && grep -c 'class=\"edge link\"' '$WORK/r.svg' | grep -qx 100"
