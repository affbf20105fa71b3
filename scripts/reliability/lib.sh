# Helpers for reliability scenarios. Source it: `. "$(dirname "$0")/lib.sh"`.
# Every scenario gets a private work dir ($WORK), removed at exit, and a
# cleanup list: `on_exit CMD...` runs CMD at exit even if the scenario fails.
set -uo pipefail
: "${UMLKIT:?run through scripts/reliability.sh or set UMLKIT}"
WORK=$(mktemp -d /tmp/umlkit-rel.XXXXXX)
chmod 0755 "$WORK"
_cleanups=()
on_exit() { _cleanups+=("$*"); }
_run_cleanups() {
  local i
  for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do eval "${_cleanups[$i]}" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap _run_cleanups EXIT

ok() { echo "ok $*"; }
fail() { echo "not ok $*"; }
skip() { echo "skip $*"; }
# check NAME CMD... : ok if CMD exits 0
check() { local n=$1; shift; if "$@"; then ok "$n"; else fail "$n"; fi; }

# A second, unprivileged local user for "another user" scenarios. Needs root
# (CI runs as root); prints nothing and returns 1 when it cannot be had.
OTHER_USER=umlkit-rel-other
have_other_user() {
  [ "$(id -u)" -eq 0 ] || return 1
  id "$OTHER_USER" >/dev/null 2>&1 || useradd -M -s /bin/sh "$OTHER_USER" >/dev/null 2>&1 || return 1
}
# as_other CMD... : run CMD as the other user (with a private HOME/XDG dir)
as_other() {
  local h="$WORK/other-home"
  mkdir -p "$h" && chown "$OTHER_USER" "$h" && chmod 0700 "$h"
  runuser -u "$OTHER_USER" -- env HOME="$h" XDG_RUNTIME_DIR= "$@"
}
# The running user's own state dirs, private to this scenario.
export UMLKIT_STATE_DIR="$WORK/state"
export XDG_RUNTIME_DIR="$WORK/xdg"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 0700 "$XDG_RUNTIME_DIR"
# Kill a pid we started (and only that pid), if still there.
kill_pid() { [ -n "${1:-}" ] && kill "$1" 2>/dev/null; true; }
