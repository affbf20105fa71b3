#!/usr/bin/env bash
# Install what umlkit needs on a Debian machine: the UML kernel, the C tools
# used as compatibility oracles, busybox and the host programs for the default
# image, e2fsprogs.
set -euo pipefail
PKGS=(user-mode-linux uml-utilities vde2 busybox-static e2fsprogs libvdeplug-dev gcc
  # host programs the default image carries (crates/image/src/hosttools.rs)
  bash-static iproute2 arping util-linux procps net-tools
  # Debian lab images (umlkit image build: crates/image/src/debian.rs)
  mmdebstrap uidmap
  # test-only readers and helpers: tshark reads our pcapng back, dot parses
  # lab graph's DOT, python3 plays hostile switch clients
  tshark graphviz python3
  # groff renders the generated man pages in tests/generated_docs.rs
  groff-base
  # headless browser for the web view's end-to-end tests (testkit::browser)
  chromium)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup)" >&2; exit 1; }
