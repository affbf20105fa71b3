#!/usr/bin/env bash
# Run every test: formatting, lints, unit, integration (real sockets, the C
# tools as oracles) and end-to-end tests (the real UML kernel).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast
