#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the integration tests, which start
# their own redis-server on free ports (never the default one). Installs
# Debian's redis-server first when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/redis-env.sh
ensure_redis_server
. scripts/python-env.sh; ensure_test_python  # exports TAYORI_TEST_PYTHON (the SMTP/DKIM test peers)
cargo test --workspace --all-targets "$@"
