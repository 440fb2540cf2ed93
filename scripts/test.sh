#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the integration tests, which start
# their own redis-server on free ports (never the default one). Installs
# Debian's redis-server first when it is missing, and Debian's chromium (the
# HTML campaign report is checked in a real headless browser, tests/report.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/redis-env.sh
ensure_redis_server
command -v chromium >/dev/null 2>&1 || apt_install chromium "chromium not found (tests/report.rs opens the HTML report in it)"
. scripts/python-env.sh; ensure_test_python  # exports TAYORI_TEST_PYTHON (the SMTP/DKIM test peers, the Python client)
. scripts/node-env.sh; ensure_node_client  # node, and clients/node built (tests/clients.rs)
# A hung test fails the run well inside CI's 90 minutes, and libtest's "has been
# running for over 60 seconds" lines name it. timeout signals the whole process
# group; the daemons the tests started die with them (testkit's die_with_parent).
timeout --kill-after=30s "${TAYORI_TEST_TIMEOUT:-50m}" cargo test --workspace --all-targets "$@"
