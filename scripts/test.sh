#!/usr/bin/env bash
# Run every test: formatting, lints, unit, integration (real sockets, the C
# tools as oracles) and end-to-end tests (the real UML kernel).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
# man pages from the clap definitions (one per command), shipped from target/man
target/debug/umlkit man --dir target/man
# the exec agent copied into the default guest image must be static
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p umlkit-agent --target x86_64-unknown-linux-gnu
cargo test --workspace --no-fail-fast
# hostile inputs replayed end to end (guest, lab folder, other users, full disks)
bash scripts/reliability.sh
