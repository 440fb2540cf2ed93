# Sourced by the scripts: makes sure redis-server exists (installing Debian's
# package when we can), and starts a private one on a given port.
. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"

ensure_redis_server() {
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server "redis-server not found"
}

# start_redis PORT DIR: a private redis-server with its data in DIR; stops with stop_redis.
start_redis() {
  local port=$1 dir=$2
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
  for _ in $(seq 50); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "redis-server did not start on port $port (see $dir/redis.log)" >&2; return 1
}

stop_redis() {
  local port=$1
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
}
