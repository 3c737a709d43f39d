#!/usr/bin/env bash
# The main job: build snap, back up a directory into the default local
# repository (~/.local/share/snap/repo, created on first run), restore the
# snapshot into a scratch directory and compare it with the source.
#
#   scripts/run.sh [PATH]        (default PATH: /usr/share/doc)
#
# The password comes from SNAP_PASSWORD; if unset, a demo password is used
# and said so (use a real one for real data).
set -euo pipefail
cd "$(dirname "$0")/.."
src="${1:-/usr/share/doc}"
cargo build --release --quiet
snap=target/release/snap
if [ -z "${SNAP_PASSWORD:-}" ] && [ -z "${SNAP_PASSWORD_FILE:-}" ]; then
  echo "SNAP_PASSWORD is not set: using the demo password 'demo' for this run" >&2
  export SNAP_PASSWORD=demo
fi
repo="${SNAP_REPO:-${XDG_DATA_HOME:-$HOME/.local/share}/snap/repo}"
export SNAP_REPO="$repo"
if [ ! -e "$repo/config" ]; then
  "$snap" init
fi
"$snap" backup "$src"
"$snap" snapshots
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$snap" restore latest --target "$out"
diff -r --no-dereference "$src" "$out/${src#/}" && echo "restore check: $src and the restored copy are identical"
