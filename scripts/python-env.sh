#!/usr/bin/env bash
# Makes the Python virtualenv of the integration-test peers (tests/peers/: a real
# SMTP server and a DKIM verifier) and of the Python client (clients/python, editable)
# at target/test-python, installing
# tests/peers/requirements.txt only when the venv is new or the requirements
# changed. Installs Debian's python3-venv first when `python3 -m venv` cannot work.
# Sourced: defines ensure_test_python, which exports TAYORI_TEST_PYTHON.
# Run: does the same and prints the interpreter's path on its last line.

_tayori_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

. "$_tayori_root/scripts/apt-install.sh"

_ensure_python3_venv() {
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 ||
    apt_install python3-venv "python3 cannot make a venv"
}

ensure_test_python() {
  local venv="$_tayori_root/target/test-python"
  local req="$_tayori_root/tests/peers/requirements.txt"
  local stamp="$venv/requirements.installed"
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
    export TAYORI_TEST_PYTHON="$venv/bin/python"
    return 0
  fi
  command -v python3 >/dev/null 2>&1 || {
    echo "python3 is required for the SMTP test peer: install it (Debian: apt-get install python3 python3-venv) and retry" >&2; return 1; }
  _ensure_python3_venv || return 1
  echo "setting up the test peers' Python venv in $venv..." >&2
  rm -f "$stamp"
  # A venv without pip (left by a failed `python3 -m venv`) is made again.
  if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 || { echo "python3 -m venv $venv failed" >&2; return 1; }
  fi
  # From the root: the requirements name the Python client as `-e clients/python`.
  (cd "$_tayori_root" && "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req") >&2 || {
    echo "pip install -r $req failed (is PyPI reachable?)" >&2; return 1; }
  cp "$req" "$stamp"
  export TAYORI_TEST_PYTHON="$venv/bin/python"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  ensure_test_python
  echo "$TAYORI_TEST_PYTHON"
fi
