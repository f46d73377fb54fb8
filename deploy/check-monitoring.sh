#!/usr/bin/env bash
# Checks the monitoring files with Prometheus' promtool (Debian: apt-get install prometheus):
#   - deploy/prometheus-rules.yml parses, and its unit tests (prometheus-rules.test.yml) pass;
#   - every query of deploy/grafana-dashboard.json is valid PromQL (checked as recording
#     rules, with the dashboard's variables filled in);
#   - with a URL, a live node's /metrics passes `promtool check metrics` (format and lint:
#     HELP and TYPE for every metric, counters ending in _total, base units in names).
#
# Usage: deploy/check-monitoring.sh [http://127.0.0.1:7071/metrics]
set -euo pipefail
cd "$(dirname "$0")"
command -v promtool >/dev/null || { echo "promtool not found (Debian: apt-get install prometheus)" >&2; exit 1; }

promtool check rules prometheus-rules.yml
promtool test rules prometheus-rules.test.yml

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - grafana-dashboard.json >"$work/dashboard-rules.yml" <<'EOF'
import json, sys
dash = json.load(open(sys.argv[1]))
names = {v["name"] for v in dash["templating"]["list"]}
assert {"datasource", "instance"} <= names, "the dashboard needs its datasource and instance variables"
print("groups:\n  - name: dashboard\n    rules:")
n = 0
for panel in dash["panels"]:
    if panel["type"] == "row":
        continue
    assert panel["datasource"]["uid"] == "${datasource}", f"{panel['title']}: datasource must be the variable"
    for t in panel["targets"]:
        expr = t["expr"].replace("$__rate_interval", "1m").replace("$instance", ".*")
        n += 1
        print(f"      - record: dashboard:query_{n}\n        expr: {json.dumps(expr)}")
assert n > 0
EOF
echo "dashboard queries:"
promtool check rules "$work/dashboard-rules.yml"

if [ $# -gt 0 ]; then
  curl -sf "$1" >"$work/metrics.txt"
  echo "metrics from $1: $(grep -c '^# TYPE' "$work/metrics.txt") families"
  promtool check metrics <"$work/metrics.txt"
fi
echo "monitoring files OK"
