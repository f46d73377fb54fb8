#!/usr/bin/env bash
# Gavel against etcd and Redis, one run, all on 127.0.0.1, data on local disk.
#
#   bench/compare.sh [--duration-secs N] [--clients "1 16 64"] [--auctions "1 1000"]
#                    [--systems "gavel etcd redis"] [--strategy mix] [--repeat N]
#                    [--route leader|spread] [--etcd-api grpc|gateway] [--out DIR]
#
# Starts a 3-node Gavel cluster (deploy/local-cluster.sh, fsync on), a 3-member etcd
# cluster (Debian's etcd-server; fsyncs its WAL) and one Redis (appendonly, appendfsync
# always), runs `gavel-bench run` for every cell of the matrix against each system in
# turn (so the three share the machine's noise), N times over (the report gives each
# cell's median), writes DIR/runs/*.json, and puts them side by side in DIR/results.md
# and DIR/results.json. Every process it starts it stops
# by PID, also on failure. Default DIR: ./bench-results/<time>.
# etcd is driven through its gRPC API, as its own clients drive it; `--etcd-api gateway`
# uses its JSON gateway instead (HTTP/1.1 + JSON, 3-4x slower: not how etcd is used).
# gRPC needs a gavel-bench built with `cargo build --release -p gavel-bench --features
# etcd-grpc` (protoc); that is what is built here if the binary is missing.
# GAVEL_BIN is the server (default target/release/gavel), GAVEL_BENCH_BIN the load
# generator (default target/release/gavel-bench); each is built if missing.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${GAVEL_BIN:-$root/target/release/gavel}
bench_bin=${GAVEL_BENCH_BIN:-$root/target/release/gavel-bench}
duration=20
clients="1 16 64"
auctions="1 1000"
systems="gavel etcd redis"
strategy=mix
repeat=1
route=leader
etcd_api=grpc
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --duration-secs) duration=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --auctions) auctions=$2; shift 2 ;;
    --systems) systems=$2; shift 2 ;;
    --strategy) strategy=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --route) route=$2; shift 2 ;;
    --etcd-api) etcd_api=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
out=${out:-$root/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out/runs"
data=$(mktemp -d "${TMPDIR:-/tmp}/gavel-compare.XXXXXX")
[ -x "$bin" ] || (cd "$root" && cargo build --release -p gavel)
if [ ! -x "$bench_bin" ]; then
  # etcd over gRPC needs the etcd-grpc feature; without etcd in the run, no protoc needed.
  features=()
  case " $systems " in *" etcd "*) [ "$etcd_api" = grpc ] && features=(--features etcd-grpc) ;; esac
  (cd "$root" && cargo build --release -p gavel-bench "${features[@]}")
fi

etcd_client="http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793"
gavel_client="127.0.0.1:7071,127.0.0.1:7072,127.0.0.1:7073"
redis_port=16379
pids=()

stop_all() {
  GAVEL_BIN=$bin "$root/deploy/local-cluster.sh" stop "$data/gavel" >/dev/null 2>&1 || true
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$data"
}
trap stop_all EXIT

wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 1 200); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "$what did not come up; logs in $data" >&2
  return 1
}

has() { case " $systems " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if has gavel; then
  # Every bench client connects from 127.0.0.1, and a lone client bids for its four
  # accounts as fast as it can: no rate limits for the run.
  GAVEL_RATE_PER_ADDRESS=0 GAVEL_RATE_PER_ACCOUNT=0 GAVEL_BIN=$bin "$root/deploy/local-cluster.sh" start "$data/gavel" >/dev/null
  # The first admin's token (node 1 bootstrapped the cluster): the bench makes its
  # seller and bidder accounts with it.
  GAVEL_TOKEN=$(cat "$data/gavel/node1/admin.token")
  export GAVEL_TOKEN
fi
if has etcd; then
  command -v etcd >/dev/null || { echo "etcd not found: apt-get install etcd-server" >&2; exit 2; }
  cluster=e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803
  for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$data/etcd$i" \
      --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
      --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token gavel-bench \
      --logger zap --log-level warn >"$data/etcd$i.log" 2>&1 &
    pids+=($!)
  done
  for i in 1 2 3; do wait_for "etcd member $i" curl -sf "http://127.0.0.1:2379$i/health"; done
fi
if has redis; then
  command -v redis-server >/dev/null || { echo "redis-server not found: apt-get install redis-server" >&2; exit 2; }
  mkdir -p "$data/redis"
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$data/redis" --appendonly yes \
    --appendfsync always --save "" --daemonize no >"$data/redis.log" 2>&1 &
  pids+=($!)
  wait_for redis redis-cli -p "$redis_port" ping
fi

{
  echo "# gavel-bench compare, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "duration ${duration}s per run, $repeat runs per cell, strategy $strategy, route $route"
  echo "clients: $clients; auctions: $auctions"
  echo "machine: $(nproc) cores, $(uname -r)"
  echo "gavel: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown), 3 nodes, fsync on"
  has etcd && echo "etcd: $(etcd --version | head -1), 3 members, driven through its $etcd_api API"
  has redis && echo "redis: $(redis-server --version | cut -d' ' -f3), appendfsync always"
} >"$out/environment.txt"

for r in $(seq 1 "$repeat"); do
  for a in $auctions; do
    for c in $clients; do
      for s in $systems; do
        case $s in
          gavel) endpoints=$gavel_client ;;
          etcd) endpoints=$etcd_client ;;
          redis) endpoints=127.0.0.1:$redis_port ;;
        esac
        echo "== run $r/$repeat, $s: $a auctions, $c clients, ${duration}s" >&2
        "$bench_bin" run --system "$s" --endpoints "$endpoints" --clients "$c" --auctions "$a" \
          --strategy "$strategy" --route "$route" --duration-secs "$duration" --progress-secs 0 \
          --seed "$r" --etcd-api "$etcd_api" --out "$out/runs/$s-a$a-c$c-r$r.json" >&2
      done
    done
  done
done

"$bench_bin" report "$out"/runs/*.json --markdown "$out/results.md" --json "$out/results.json"
cat "$out/environment.txt"
echo
cat "$out/results.md"
echo
echo "results in $out"
