#!/usr/bin/env bash
# Runs the benchmarks (release build): `scripts/bench.sh` runs all of them,
# `scripts/bench.sh email_smtp` one. Installs what they need first: Debian's
# redis-server, and postfix for its smtp-sink (the email benchmark's SMTP peer;
# the postfix service itself is not needed and may stay stopped).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/redis-env.sh
ensure_redis_server
if ! command -v smtp-sink >/dev/null 2>&1 && [ ! -x /usr/sbin/smtp-sink ]; then
  apt_install postfix "smtp-sink not found (it comes with postfix)"
fi
export PATH="$PATH:/usr/sbin"
if [ "$#" -eq 0 ]; then set -- pipeline line_push email_smtp sms_twilio; fi
for b in "$@"; do
  echo "== $b"
  cargo bench --bench "$b"
done
