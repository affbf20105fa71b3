#!/usr/bin/env bash
# Run every test: formatting, lints, unit, integration (real sockets, the C
# tools as oracles) and end-to-end tests (the real UML kernel).
#
#   bash scripts/test.sh          everything (what CI runs)
#   bash scripts/test.sh --fast   the tier without kernels: fmt, clippy, unit
#                                 and property tests of every crate, and the
#                                 integration tests over real sockets and
#                                 files with the C tools (no guest boots; a
#                                 few minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0
case "${1:-}" in
  --fast) fast=1 ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--fast]" >&2; exit 2 ;;
esac
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
if [ $fast = 1 ]; then
  # unit, property and doc tests of every crate; the pure crates' own
  # integration tests; the CLI's tests that use no kernel
  cargo test --workspace --lib --bins --doc
  cargo test -p net-proto -p switch-core -p cow-format -p lab -p switchd --tests
  tests=()
  for t in cli_output cow_badinput cow_foreign_backing cow_journal cow_oracle cow_pack \
           switch_capture switch_hostile switch_link switch_mgmt switch_uml switch_vde; do
    tests+=(--test "$t")
  done
  cargo test -p umlkit "${tests[@]}"
  exit 0
fi
cargo build --workspace --all-targets
# man pages from the clap definitions (one per command), shipped from target/man
target/debug/umlkit man --dir target/man
# the exec agent copied into the default guest image must be static
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p umlkit-agent --target x86_64-unknown-linux-gnu
cargo test --workspace --no-fail-fast
# hostile inputs replayed end to end (guest, lab folder, other users, full disks)
bash scripts/reliability.sh
