#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz, each for a set time, on its seed
# corpus (tests/fuzz/corpus/<target>), the inputs of past findings
# (tests/fuzz/regressions/<target>) and what earlier runs found
# (runs/fuzz/<target>/corpus). Builds them first in build-fuzz/ with clang.
#
#   scripts/fuzz.sh [--seconds N] [--parallel N] [--regressions-only] [TARGET...]
#
# Targets: job_spec image idx safetensors checkpoint (default: all). A crash, a leak or
# a timeout stops that target; its input is written to runs/fuzz/<target>/
# and the script exits 1 after the others have run. --regressions-only runs
# each target once over tests/fuzz/corpus and tests/fuzz/regressions (what
# CI does). The last line of each target's summary gives its executions.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=60
parallel=1
regressions_only=0
targets=()
while (($#)); do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --parallel) parallel=$2; shift 2 ;;
    --regressions-only) regressions_only=1; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
((${#targets[@]})) || targets=(job_spec image idx safetensors checkpoint)

build=${FUZZ_BUILD_DIR:-build-fuzz}
# Leaks inside third-party libraries that clmae cannot fix, each explained there.
export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
if ! command -v clang++ > /dev/null; then
  echo "fuzz.sh: clang++ is missing; scripts/install-deps.sh installs it (Debian clang)" >&2
  exit 2
fi
if [[ ! -f $build/build.ninja ]]; then
  mkdir -p "$build"
  CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCLMAE_FUZZ=ON -DCLMAE_BUILD_TESTS=OFF \
    ${CMAKE_FLAGS:-} > "$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
fi
cmake --build "$build" -j "${JOBS:-2}" --target fuzzers

run_one() {
  local t=$1 out=runs/fuzz/$1 bin=$build/tests/fuzz/clmae-fuzz-${1//_/-}
  mkdir -p "$out/corpus"
  local common=(-timeout=10 -rss_limit_mb=4096 -artifact_prefix="$out/" -print_final_stats=1)
  if ((regressions_only)); then
    local inputs=(tests/fuzz/corpus/"$t"/*)
    [[ -d tests/fuzz/regressions/$t ]] && inputs+=(tests/fuzz/regressions/"$t"/*)
    "$bin" "${common[@]}" "${inputs[@]}" > "$out/run.log" 2>&1
  else
    local seeds=("tests/fuzz/corpus/$t")
    [[ -d tests/fuzz/regressions/$t ]] && seeds+=("tests/fuzz/regressions/$t")
    "$bin" "${common[@]}" -max_total_time="$seconds" "$out/corpus" "${seeds[@]}" \
      > "$out/run.log" 2>&1
  fi
}

status=0
stamp=$(mktemp "${TMPDIR:-/tmp}/clmae-fuzz-start.XXXXXX")
trap 'rm -f "$stamp"' EXIT
pids=()
names=()
for t in "${targets[@]}"; do
  [[ -x $build/tests/fuzz/clmae-fuzz-${t//_/-} ]] || { echo "fuzz.sh: unknown target $t" >&2; exit 2; }
  run_one "$t" & pids+=($!); names+=("$t")
  if ((${#pids[@]} >= parallel)); then
    wait "${pids[0]}" || { echo "FAILED: ${names[0]} (see runs/fuzz/${names[0]}/run.log)"; status=1; }
    pids=("${pids[@]:1}"); names=("${names[@]:1}")
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { echo "FAILED: ${names[$i]} (see runs/fuzz/${names[$i]}/run.log)"; status=1; }
done
for t in "${targets[@]}"; do
  runs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "runs/fuzz/$t/run.log" | grep -o '[0-9]*$' || true)
  found=$(find "runs/fuzz/$t" -maxdepth 1 -newer "$stamp" -regextype egrep \
    -regex '.*/(crash|leak|timeout|oom|slow-unit)-.*' | wc -l)
  printf '%-12s %12s executions, %s new finding(s) in runs/fuzz/%s/\n' "$t" "${runs:-?}" "$found" "$t"
done
exit $status
