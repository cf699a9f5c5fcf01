#!/usr/bin/env bash
# Reproduces the `ironclad bench append` figures in BENCHMARKS.md: each
# configuration runs RUNS times (default 3) and the median run (by events/s)
# is printed as a Markdown table row. Usage: scripts/bench-append.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
cargo build --release -q -p ironclad-cli
bin=target/release/ironclad
scratch=$(mktemp -d "${TMPDIR:-/tmp}/ironclad-bench.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

row() {
  local name=$1; shift
  local results=()
  for _ in $(seq "$runs"); do
    results+=("$("$bin" --json bench append --dir "$scratch" "$@" 2>/dev/null)")
  done
  printf '%s\n' "${results[@]}" | python3 scripts/bench_row.py "$name" "$*"
}

echo "| configuration | flags | events/s, median (all runs) | p50 ms | p99 ms | max ms | peak RSS MiB | naive baseline |"
echo "|---|---|---|---|---|---|---|---|"
row "64 producers, 1 event/append, 1 in flight" --producers 64 --events 200000 --baseline
row "64 producers, 1 event/append, 16 in flight" --producers 64 --events 1000000 --pipeline 16 --baseline
row "64 producers, 10 events/append, 1 in flight" --producers 64 --events 1000000 --batch 10 --baseline
row "open loop, 50,000 events/s offered" --producers 64 --events 1000000 --rate 50000
row "memory: 16 in flight, 4M events" --producers 64 --events 4000000 --pipeline 16
row "durability os, 16 in flight" --producers 64 --events 1000000 --pipeline 16 --durability os
