#!/usr/bin/env bash
# What authentication and signatures cost a bid: runs `gavel-bench run` against a local
# 3-node cluster (deploy/local-cluster.sh, 127.0.0.1:7071-7073) for each variant, in
# turn, --repeat times, and prints each cell's bids/s and latency:
#   tokens   — every bid with a bearer token (this build);
#   signed   — every bid with a token and an ed25519 signature (--sign);
#   baseline — with --base-bin, a build from before accounts existed (no token at all).
# Usage: bench/auth_cost.sh [--bin B] [--base-bin B] [--clients "1 16"]
#                           [--duration-secs 10] [--auctions 100] [--repeat 2]
# --bin and --base-bin are servers (default target/release/gavel, built if missing); the
# load generator is GAVEL_BENCH_BIN (default target/release/gavel-bench, built if
# missing), the same for every variant.
# Bounded: variants × clients × repeat runs of --duration-secs each. Stops every node
# it starts by PID (local-cluster.sh stop), also on failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/release/gavel
bench_bin=${GAVEL_BENCH_BIN:-$root/target/release/gavel-bench}
base_bin=""
clients="1 16"
duration=10
auctions=100
repeat=2
while [ $# -gt 0 ]; do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    --base-bin) base_bin=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --duration-secs) duration=$2; shift 2 ;;
    --auctions) auctions=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || (cd "$root" && cargo build --release -p gavel)
[ -x "$bench_bin" ] || (cd "$root" && cargo build --release -p gavel-bench)
data=$(mktemp -d "${TMPDIR:-/tmp}/gavel-auth-cost.XXXXXX")
cluster_bin=""
stop() { [ -n "$cluster_bin" ] && GAVEL_BIN=$cluster_bin "$root/deploy/local-cluster.sh" stop "$data/cluster" >/dev/null 2>&1 || true; }
trap 'stop; rm -rf "$data"' EXIT
endpoints=127.0.0.1:7071,127.0.0.1:7072,127.0.0.1:7073
variants="tokens signed"
[ -n "$base_bin" ] && variants="baseline $variants"
echo "| run | variant | clients | bids/s | p50 ms | p99 ms | errors |"
echo "|---|---|---:|---:|---:|---:|---:|"
for r in $(seq 1 "$repeat"); do
  for v in $variants; do
    cluster_bin=$bin
    [ "$v" = baseline ] && cluster_bin=$base_bin
    rm -rf "$data/cluster"
    GAVEL_RATE_PER_ADDRESS=0 GAVEL_RATE_PER_ACCOUNT=0 GAVEL_BIN=$cluster_bin \
      "$root/deploy/local-cluster.sh" start "$data/cluster" >/dev/null
    extra=()
    if [ "$v" != baseline ]; then
      extra=(--token "$(cat "$data/cluster/node1/admin.token")")
      [ "$v" = signed ] && extra+=(--sign)
    fi
    for c in $clients; do
      "$bench_bin" run --system gavel --endpoints "$endpoints" --clients "$c" \
        --auctions "$auctions" --duration-secs "$duration" --strategy incremental \
        --json --out "$data/run.json" "${extra[@]}" >/dev/null
      python3 - "$data/run.json" "$r" "$v" "$c" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
lat = d.get("latency_ms") or d.get("latency") or {}
print(f"| {sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} | {d['bids_per_sec']:.0f} | {lat.get('p50', 0):.2f} | {lat.get('p99', 0):.2f} | {d['errors']} |")
PY
    done
    stop
    cluster_bin=""
  done
done
