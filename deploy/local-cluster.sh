#!/usr/bin/env bash
# Start or stop a 3-node Gavel cluster on 127.0.0.1, each node with its own data dir.
#
#   deploy/local-cluster.sh start [DIR]   # default DIR: ./gavel-local
#   deploy/local-cluster.sh status [DIR]
#   deploy/local-cluster.sh stop [DIR]
#
# Node i listens on 127.0.0.1:707i (HTTP API + node RPC) and 127.0.0.1:717i (UDP).
# Node 1 bootstraps; nodes 2 and 3 join it. PIDs go to DIR/nodeN.pid, logs to
# DIR/nodeN.log. A restart (start again after stop) resumes from the data dirs.
# GAVEL_BIN overrides the binary (default: target/release/gavel, built if missing).
set -euo pipefail

cmd=${1:-}
dir=${2:-./gavel-local}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${GAVEL_BIN:-$root/target/release/gavel}
secret=${GAVEL_CLUSTER_SECRET:-local-cluster-secret-change-me}

wait_ready() {
  local port=$1
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$port/ready" >/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "node on port $port did not become ready; see $dir/node$((port - 7070)).log" >&2
  return 1
}

start() {
  [ -x "$bin" ] || (cd "$root" && cargo build --release -p gavel)
  mkdir -p "$dir"
  for i in 1 2 3; do
    if [ -f "$dir/node$i.pid" ] && kill -0 "$(cat "$dir/node$i.pid")" 2>/dev/null; then
      echo "node $i already running (pid $(cat "$dir/node$i.pid"))"
      continue
    fi
    local join=()
    [ "$i" -gt 1 ] && join=(--join 127.0.0.1:7071)
    GAVEL_CLUSTER_SECRET=$secret "$bin" serve --id "$i" --data-dir "$dir/node$i" \
      --listen "127.0.0.1:707$i" --udp "127.0.0.1:717$i" "${join[@]}" \
      >>"$dir/node$i.log" 2>&1 &
    echo $! >"$dir/node$i.pid"
    echo "node $i started (pid $!, http://127.0.0.1:707$i)"
  done
  # After a restart no node is ready until a majority is back, so wait only now.
  for i in 1 2 3; do wait_ready "707$i"; done
  curl -s http://127.0.0.1:7071/v1/cluster; echo
}

stop() {
  for i in 1 2 3; do
    local pidfile="$dir/node$i.pid"
    [ -f "$pidfile" ] || continue
    local pid; pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then echo "node $i (pid $pid) ignored SIGTERM; killing"; kill -KILL "$pid"; fi
      echo "node $i stopped"
    fi
    rm -f "$pidfile"
  done
}

status() {
  for i in 1 2 3; do
    printf 'node %s: ' "$i"
    curl -s "http://127.0.0.1:707$i/v1/cluster" || printf 'not answering'
    echo
  done
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status [DIR]" >&2; exit 2 ;;
esac
