#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build, run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release
exec target/release/umlkit --help
