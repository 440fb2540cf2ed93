#!/usr/bin/env bash
# Runs the benchmarks (release build): `scripts/bench.sh` runs all of them,
# `scripts/bench.sh email_smtp` one. Installs what they need first: Debian's
# redis-server, and postfix for its smtp-sink (the email benchmark's SMTP peer;
# the postfix service itself is not needed and may stay stopped).
# `scripts/bench.sh bullmq` compares with BullMQ on the same redis-server: it needs
# node and npm (installed from Debian when missing) and the npm registry, so it is
# not in the default list.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/redis-env.sh
ensure_redis_server
if ! command -v smtp-sink >/dev/null 2>&1 && [ ! -x /usr/sbin/smtp-sink ]; then
  apt_install postfix "smtp-sink not found (it comes with postfix)"
fi
export PATH="$PATH:/usr/sbin"
for b in "$@"; do
  if [ "$b" = bullmq ]; then
    command -v node >/dev/null 2>&1 || apt_install nodejs "node runs the BullMQ producer and worker"
    command -v npm >/dev/null 2>&1 || apt_install npm "npm installs BullMQ"
  fi
done
if [ "$#" -eq 0 ]; then set -- pipeline line_push email_smtp sms_twilio; fi
for b in "$@"; do
  echo "== $b"
  cargo bench --bench "$b"
done
