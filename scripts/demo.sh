#!/usr/bin/env bash
# `make demo`: the service end to end on this machine. Starts a coordinator
# (SQLite store and data under runs/demo/), two CPU agents with one slot
# each, submits examples/demo-fashion-mnist.yaml (the tiny CL-MAE on
# Fashion-MNIST as a 2-rank job), watches it to the end, prints the k-NN
# accuracy of the result beside its baselines (the untrained encoder, raw
# pixels), lists the checkpoints the coordinator kept,
# downloads the final weights, and shuts everything down.
#
#   scripts/demo.sh [BUILD_DIR] [SPEC]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
spec=${2:-$root/examples/demo-fashion-mnist.yaml}
demo=$root/runs/demo
bin_coordinator=$build/services/clmae-coordinator
bin_worker=$build/worker/agent/clmae-worker
bin_ctl=$build/services/clmaectl/clmaectl
for b in "$bin_coordinator" "$bin_worker" "$bin_ctl" "$build/worker/train/clmae-train"; do
  [[ -x $b ]] || { echo "demo: $b is missing; run 'make build' first" >&2; exit 1; }
done

say() { printf '\n[demo] %s\n' "$*"; }
rm -rf "$demo"
mkdir -p "$demo"
cd "$root"

# Fresh tokens for this run: one for clients (clmaectl), one for agents.
token() { head -c 18 /dev/urandom | base64 | tr '+/' '-_'; }
export CLMAE_CLIENT_TOKEN=$(token) CLMAE_WORKER_TOKEN=$(token)

pids=()
cleanup() {
  local code=$?
  trap - EXIT INT TERM
  if ((${#pids[@]})); then
    say "stopping the agents and the coordinator"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  echo "[demo] logs: $demo/*.log"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting clmae-coordinator (store: $demo/coordinator)"
"$bin_coordinator" --listen 127.0.0.1:0 --data_dir "$demo/coordinator" --port_file "$demo/port" \
  --metrics_listen 127.0.0.1:9400 \
  --heartbeat_interval 2s --lease 10s --hang_timeout 5m > "$demo/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s $demo/port ]] && break; sleep 0.1; done
[[ -s $demo/port ]] || { echo "demo: the coordinator did not start:" >&2; cat "$demo/coordinator.log" >&2; exit 1; }
address=127.0.0.1:$(cat "$demo/port")
echo "coordinator at $address"

# Metrics (deploy/prometheus/prometheus-demo.yml scrapes these): agent-a on
# 9401 and its trainer on 9410, agent-b on 9402 and its trainer on 9420.
declare -A agent_port=([a]=9401 [b]=9402) trainer_port=([a]=9410 [b]=9420)
for a in a b; do
  say "starting agent-$a (1 CPU slot)"
  CLMAE_TOKEN=$CLMAE_WORKER_TOKEN "$bin_worker" --coordinator "$address" --worker_id "agent-$a" \
    --advertise_address 127.0.0.1 --gpus none --cpu_slots 1 --work_dir "$demo/agent-$a" \
    --metrics_port "${agent_port[$a]}" --trainer_metrics_port_base "${trainer_port[$a]}" \
    --trainer "$build/worker/train/clmae-train" \
    > "$demo/agent-$a.log" 2>&1 &
  pids+=($!)
done

export CLMAE_ADDRESS=$address CLMAE_TOKEN=$CLMAE_CLIENT_TOKEN
for _ in $(seq 50); do
  [[ $("$bin_ctl" workers -o json 2>/dev/null | grep -c '"id"') -ge 2 ]] && break
  sleep 0.2
done
"$bin_ctl" workers

say "submitting $(basename "$spec")"
job=$("$bin_ctl" submit -f "$spec" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "job $job"

say "watching job $job (Ctrl-C stops the demo)"
status=0
"$bin_ctl" watch "$job" || status=$?

say "result"
"$bin_ctl" get "$job" -o json > "$demo/job.json"
python3 - "$demo/job.json" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))
metrics = job.get("result", {}).get("metrics", {})
print(f"job {job['id']}: {job['state'].removeprefix('JOB_STATE_')} after {job.get('attempt', 1)} attempt(s)")
def pct(name):
    return f"{100 * metrics[name]:.1f}%" if name in metrics else "-"
if "knn_top1" in metrics:
    # The trained encoder beside what it must beat, on the same split.
    print("k-NN top-1 on Fashion-MNIST (class token / patch-token mean):")
    print(f"  trained encoder      {pct('knn_top1'):>6} / {pct('knn_top1_patch_mean')}")
    print(f"  untrained encoder    {pct('random_init_knn_top1'):>6} / {pct('random_init_knn_top1_patch_mean')}")
    print(f"  raw pixels           {pct('raw_pixels_knn_top1'):>6}")
    if "probe_top1" in metrics:
        print(f"  linear probe (trained, class token) {pct('probe_top1')}")
print("outputs (rank 0's agent):", job.get("result", {}).get("output_dir", "?"))
PY

say "checkpoints kept by the coordinator (runs/demo/coordinator/checkpoints)"
"$bin_ctl" checkpoints "$job" || true
"$bin_ctl" download "$job" --latest --kind weights -o "$demo/weights.safetensors" || true
exit "$status"
