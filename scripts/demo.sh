#!/usr/bin/env bash
# The demo: a private redis-server, a few personalized jobs across all four
# channels (including a fallback, a duplicate, and a job with a missing
# variable that `tayori enqueue` refuses), the daemon draining them, then the
# results events and the outbox files. Needs only the Rust toolchain (and
# installs redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/redis-env.sh
ensure_redis_server

port=${DEMO_REDIS_PORT:-6399}
export TAYORI_REDIS_URL="redis://127.0.0.1:$port"
# Any free port for /metrics etc., so a busy 8080 cannot break the demo.
export TAYORI_HTTP_LISTEN=${TAYORI_HTTP_LISTEN:-127.0.0.1:0}
rm -rf .demo outbox
start_redis "$port" "$PWD/.demo"
trap 'stop_redis $port' EXIT

cargo build --release --quiet
bin=target/release/tayori
cfg=config/dev.toml

echo "== check-config"; $bin -c $cfg check-config
echo; echo "== enqueue config/demo-jobs.jsonl (one line is deliberately a duplicate id, one lacks a variable)"
$bin -c $cfg enqueue config/demo-jobs.jsonl || true
echo; echo "== run the daemon until the queues are empty"
TAYORI_LOG=${TAYORI_LOG:-warn} $bin -c $cfg run --drain
echo; echo "== results stream (what the CRM reads)"
$bin -c $cfg events
echo; echo "== dead letters"; $bin -c $cfg dead list
echo; echo "== stats"; $bin -c $cfg stats
echo; echo "== outbox (what would have been sent)"; find outbox -type f | sort
echo; echo "== the personalized email for spring26-C1001, as sent (the first lines)"; sed -n '1,12p' outbox/email/spring26-C1001.eml
echo; echo "== the same email as a reader sees it (tayori render)"
grep -m1 '"spring26-C1001"' config/demo-jobs.jsonl | $bin -c $cfg render - | sed -n '1,/^--- text\/html/p'
echo; echo "== the direct-mail print batch and its manifest"
for f in outbox/dm/ready/*.csv; do cat "$f"; cat "${f%.csv}.manifest.json"; echo; done
