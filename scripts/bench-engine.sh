#!/usr/bin/env bash
# Engine benchmark: clmae-bench-engine and the same step in PyTorch eager
# (bench/pytorch_baseline.py), same preset, batch, steps and threads, in one
# run; prints both and the clmae/PyTorch throughput ratio per mode.
#
#   scripts/bench-engine.sh [BUILD_DIR] [extra flags for both, e.g. --batch 64]
#
# Environment: PRESET (tiny), BATCH (64), STEPS (20), THREADS (2), DEVICE (cpu),
# PYTHON (the project venv's python, else python3).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
shift || true
bench="$build/bench/clmae-bench-engine"
[[ -x $bench ]] || { echo "bench-engine: $bench not built (make build)" >&2; exit 2; }
py=${PYTHON:-}
[[ -n $py ]] || { [[ -x $root/.venv/bin/python ]] && py=$root/.venv/bin/python || py=python3; }
args=(--preset "${PRESET:-tiny}" --batch "${BATCH:-64}" --steps "${STEPS:-20}"
      --threads "${THREADS:-2}" --device "${DEVICE:-cpu}" "$@")

out_c=$(mktemp); out_p=$(mktemp)
trap 'rm -f "$out_c" "$out_p"' EXIT
echo "== clmae (C++/LibTorch)"
"$bench" "${args[@]}" | tee "$out_c"
echo "== PyTorch eager baseline"
"$py" "$root/bench/pytorch_baseline.py" "${args[@]}" | tee "$out_p"
echo "== ratio (clmae images/s / PyTorch images/s)"
"$py" - "$out_c" "$out_p" <<'PY'
import json, sys
def load(path):
    return {r["mode"]: r for r in (json.loads(l) for l in open(path) if l.startswith("{"))}
c, p = load(sys.argv[1]), load(sys.argv[2])
for mode in ("clmae", "plain_mae"):
    if mode in c and mode in p:
        a, b = c[mode]["images_per_second"], p[mode]["images_per_second"]
        print(f"{mode:9s} clmae {a:8.1f} img/s  pytorch {b:8.1f} img/s  ratio {a / b:.2f}x  "
              f"peak memory clmae {c[mode]['peak_bytes'] / 2**20:.0f} MiB, pytorch {p[mode]['peak_bytes'] / 2**20:.0f} MiB")
PY
