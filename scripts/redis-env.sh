# Sourced by the scripts: makes sure redis-server exists (installing Debian's
# package when we can), and starts a private one on a given port.
ensure_redis_server() {
  if command -v redis-server >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "redis-server not found: installing Debian's redis-server package..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) || {
      echo "could not install redis-server; install it (apt-get install redis-server) and retry" >&2; return 1; }
  elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "redis-server not found: installing it with sudo apt-get..." >&2
    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) || {
      echo "could not install redis-server; install it (sudo apt-get install redis-server) and retry" >&2; return 1; }
  else
    echo "redis-server is required: install it (Debian: apt-get install redis-server) and retry" >&2; return 1
  fi
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
