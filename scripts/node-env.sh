#!/usr/bin/env bash
# Makes the Node client (clients/node) ready for tests/clients.rs: installs Debian's
# nodejs and npm first when node or npm is missing, runs `npm ci` only when
# package-lock.json changed since the last install (or node_modules is missing),
# and builds (tsc into clients/node/dist) only when a source is newer than the build.
# Sourced: defines ensure_node_client. Run: does the same.

_tayori_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

. "$_tayori_root/scripts/apt-install.sh"

ensure_node_client() {
  local dir="$_tayori_root/clients/node"
  local stamp="$dir/node_modules/.tayori-lockfile"
  command -v node >/dev/null 2>&1 ||
    apt_install nodejs "node is required for the Node client's tests (tests/clients.rs)" || return 1
  command -v npm >/dev/null 2>&1 ||
    apt_install npm "npm is required to install the Node client's dependencies" || return 1
  if [ ! -f "$stamp" ] || ! cmp -s "$dir/package-lock.json" "$stamp"; then
    echo "installing the Node client's dependencies (npm ci in $dir)..." >&2
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2 || {
      echo "npm ci in $dir failed (is the npm registry reachable?)" >&2; return 1; }
    cp "$dir/package-lock.json" "$stamp"
  fi
  if [ ! -f "$dir/dist/index.js" ] ||
     [ -n "$(find "$dir/src" "$dir/tsconfig.json" "$dir/package-lock.json" -newer "$dir/dist/index.js" -print -quit)" ]; then
    (cd "$dir" && npm run --silent build) >&2 || { echo "the Node client's build (npm run build in $dir) failed" >&2; return 1; }
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  ensure_node_client
fi
