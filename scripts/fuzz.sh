#!/usr/bin/env bash
# Runs the libFuzzer harnesses of tests/fuzz/ (built by `make fuzz` with clang, ASan + UBSan).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     each target SECONDS (default 30), all by default
#   FUZZ_JOBS=2 scripts/fuzz.sh 1800 relay    two processes on one target (by-hand long runs)
#
# Each target first replays its committed seed corpus (tests/fuzz/corpus/TARGET: known
# attacks such as issue 11's request live there), then fuzzes for SECONDS, with what it finds
# kept in build-fuzz/corpus/TARGET (so a later run goes on from there; never committed by
# itself). A crash fails the run and prints how to replay it; its input is kept in
# build-fuzz/crashes/. Copy an input worth keeping into tests/fuzz/corpus/TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."

all=(http_head chunked relay agent_stream agent_http jupyter layer_frames dnsmsg checkpoint)

# Each target's longest input: long enough to reach the limits of what it drives.
max_len() {
  case $1 in
    http_head) echo 20000 ;;             # a head over HTTP_MAX_HEAD (16 KiB): 431
    chunked) echo 40000 ;;               # trailers over HTTP_MAX_TRAILERS (16 KiB), in pieces
    relay | agent_http) echo 100000 ;;   # past a 16 KiB head + 64 KiB buffer (PROXY_IN_MAX, CONN_IN_MAX)
    agent_stream) echo 100000 ;;         # past the 16 KiB head and read_all's 64 KiB
    dnsmsg) echo 65535 ;;               # a TCP answer, which the forwarder reads whole (UDP: 4096)
    *) echo 16384 ;;
  esac
}

seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
jobs=${FUZZ_JOBS:-1}

make -s -j"$(nproc)" fuzz
mkdir -p build-fuzz/crashes
failed=()
for t in "${targets[@]}"; do
  bin=build-fuzz/fuzz_$t
  seeds=tests/fuzz/corpus/$t
  work=build-fuzz/corpus/$t
  log=build-fuzz/fuzz_$t.log
  [ -x "$bin" ] || { echo "fuzz: no target '$t' (have: ${all[*]})" >&2; exit 2; }
  mkdir -p "$work"
  opts=(-max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 -artifact_prefix="build-fuzz/crashes/$t-" -print_final_stats=1)
  [ ! -f "tests/fuzz/$t.dict" ] || opts+=(-dict="tests/fuzz/$t.dict")
  if ! "$bin" "${opts[@]}" -runs=0 "$seeds" >"$log.seeds" 2>&1; then
    echo "fuzz $t: a committed seed fails (a regression); see $log.seeds" >&2
    tail -n 30 "$log.seeds" >&2
    failed+=("$t")
    continue
  fi
  if [ "$jobs" -gt 1 ]; then
    opts+=(-jobs="$jobs" -workers="$jobs")
  fi
  if "$bin" "${opts[@]}" -max_total_time="$seconds" "$work" "$seeds" >"$log" 2>&1; then
    execs=$(cat "$log" build-fuzz/fuzz-*.log 2>/dev/null | grep -o 'stat::number_of_executed_units: [0-9]*' | awk '{s += $2} END {print s + 0}' || true)
    echo "fuzz $t: ${seconds}s, $execs inputs, nothing found (corpus $(ls "$work" | wc -l) + $(ls "$seeds" | wc -l) seeds)"
  else
    echo "fuzz $t: FOUND A CRASH; replay with: $bin $(ls -t build-fuzz/crashes/"$t"-* 2>/dev/null | head -1)" >&2
    grep -E 'ERROR|SUMMARY|Assertion|runtime error' "$log" | head -n 10 >&2
    failed+=("$t")
  fi
  rm -f build-fuzz/fuzz-*.log # the -jobs workers' logs, counted above
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
