#!/usr/bin/env bash
# `make monitor`: `make demo` watched by a real Prometheus. Starts Debian's
# prometheus on 127.0.0.1:9090 (storage in runs/monitor/) with
# deploy/prometheus/prometheus-demo.yml and the alert rules of
# deploy/prometheus/rules/, prints how to point a Grafana at it, runs the
# demo (scripts/demo.sh: coordinator, two CPU agents, a 2-rank job), and
# stops Prometheus afterwards (on a terminal: once you press Enter, so that
# the finished run can still be browsed).
#
#   scripts/monitor.sh [BUILD_DIR] [SPEC]
#
# CLMAE_PROMETHEUS_LISTEN (default 127.0.0.1:9090) moves Prometheus.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
spec=${2:-$root/examples/demo-fashion-mnist.yaml}
listen=${CLMAE_PROMETHEUS_LISTEN:-127.0.0.1:9090}
url=http://$listen
monitor=$root/runs/monitor
config=$root/deploy/prometheus/prometheus-demo.yml

say() { printf '\n[monitor] %s\n' "$*"; }
# Whether a Prometheus answers at $url (python3: the demo needs it anyway).
ready() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "$url/-/ready" 2> /dev/null
}

if ! command -v prometheus > /dev/null; then
  echo "monitor: prometheus is not installed; run 'scripts/install-deps.sh --debian' (Debian package 'prometheus')" >&2
  exit 1
fi
if ready; then
  echo "monitor: something already answers on $listen; stop it or set CLMAE_PROMETHEUS_LISTEN" >&2
  exit 1
fi
promtool check config "$config" > /dev/null

mkdir -p "$monitor"
prometheus_pid=
cleanup() {
  local code=$?
  trap - EXIT INT TERM
  if [[ -n $prometheus_pid ]] && kill -0 "$prometheus_pid" 2> /dev/null; then
    say "stopping Prometheus (its data stays in $monitor/prometheus)"
    kill -TERM "$prometheus_pid" 2> /dev/null || true
    wait "$prometheus_pid" 2> /dev/null || true
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting Prometheus on $url (config: deploy/prometheus/prometheus-demo.yml, log: runs/monitor/prometheus.log)"
prometheus --config.file="$config" --storage.tsdb.path="$monitor/prometheus" \
  --storage.tsdb.retention.time=7d --web.listen-address="$listen" \
  > "$monitor/prometheus.log" 2>&1 &
prometheus_pid=$!
for _ in $(seq 100); do
  ready && break
  kill -0 "$prometheus_pid" 2> /dev/null || { cat "$monitor/prometheus.log" >&2; exit 1; }
  sleep 0.2
done

cat <<EOF

  Prometheus   $url   (targets: $url/targets, alerts: $url/alerts)
               scrapes the coordinator :9400, agents :9401 :9402, trainers :9410 :9420

  Grafana      data source: Prometheus at $url
               dashboard:   deploy/grafana/dashboards/clmae.json (pick the job at the top)
    provisioned (Grafana loads the data source and the dashboard itself):
      docker run --rm --network host \\
        -e CLMAE_PROMETHEUS_URL=$url -e CLMAE_SCRAPE_INTERVAL=2s \\
        -e CLMAE_GRAFANA_DASHBOARDS=/var/lib/grafana/dashboards/clmae \\
        -v $root/deploy/grafana/provisioning:/etc/grafana/provisioning:ro \\
        -v $root/deploy/grafana/dashboards:/var/lib/grafana/dashboards/clmae:ro \\
        grafana/grafana
      then open http://127.0.0.1:3000 (admin/admin), folder "clmae".
      A Grafana installed on this machine: the same environment variables, with
      GF_PATHS_PROVISIONING=$root/deploy/grafana/provisioning
      and CLMAE_GRAFANA_DASHBOARDS=$root/deploy/grafana/dashboards.
    by hand: add a Prometheus data source at $url, then Dashboards > Import
      deploy/grafana/dashboards/clmae.json and choose that data source.
EOF

say "running the demo (scripts/demo.sh)"
status=0
"$root/scripts/demo.sh" "$build" "$spec" || status=$?

if [[ -t 0 ]]; then
  say "the demo ended ($status); Prometheus stays up at $url until you press Enter"
  read -r _ || true
fi
exit "$status"
