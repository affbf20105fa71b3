#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build, then run the
# demo network lab (examples/labs/demo: two hosts and a router over two
# collision domains, static routes): start it, show its status, run its
# checks (`lab test`), stop it and clean every file it made.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release
# the exec agent copied into the default guest image must be static
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p umlkit-agent --target x86_64-unknown-linux-gnu
UMLKIT=target/release/umlkit
LAB=examples/labs/demo

cleanup() { "$UMLKIT" lab clean "$LAB" >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "== umlkit lab info $LAB"
"$UMLKIT" lab info "$LAB"
echo
echo "== umlkit lab start $LAB"
"$UMLKIT" lab start "$LAB"
echo
echo "== umlkit lab status $LAB"
"$UMLKIT" lab status "$LAB"
echo
echo "== umlkit lab exec -d $LAB pc1 -- traceroute -n 10.0.2.1"
"$UMLKIT" lab exec -d "$LAB" pc1 -- traceroute -n -w 2 -q 1 10.0.2.1
echo
echo "== umlkit lab test $LAB"
"$UMLKIT" lab test "$LAB"
echo
echo "== umlkit lab graph $LAB --svg /tmp/umlkit-demo.svg"
"$UMLKIT" lab graph "$LAB" --svg /tmp/umlkit-demo.svg && echo "wrote /tmp/umlkit-demo.svg"
echo
echo "== umlkit lab stop $LAB"
"$UMLKIT" lab stop "$LAB"
echo "== umlkit lab clean $LAB"
"$UMLKIT" lab clean "$LAB"
trap - EXIT
echo "demo done: lab started, tested, stopped and cleaned"
