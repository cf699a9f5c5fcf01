#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 60), one after
# the other, and prints a Markdown table row per target: executions, time
# and findings, from libFuzzer's final stats. Usage: scripts/fuzz.sh [SECONDS [TARGET...]]
#
# Needs only the stable toolchain: cargo-fuzz (pinned, installed once into
# target/tools) builds with `--sanitizer none`, so no -Z flag reaches rustc;
# coverage instrumentation and debug assertions (overflow checks) stay on.
# The seed corpora in fuzz/corpus/<target> are read, never written: new
# inputs go to target/fuzz-corpus/<target> (ignored, kept between runs) and
# crashes to fuzz/artifacts/<target> (ignored), which also fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
version=0.13.1
tools=target/tools
fuzz="$tools/bin/cargo-fuzz"
if ! "$fuzz" --version 2>/dev/null | grep -q "$version"; then
  cargo install --locked --quiet cargo-fuzz --version "$version" --root "$tools"
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <("$fuzz" list --fuzz-dir fuzz)
fi
# 16 codegen units (cargo-fuzz's default is 1): the first build takes a
# fraction of the time, which is what a CI smoke pays; runs are somewhat
# slower per execution. FUZZ_CODEGEN_UNITS=1 for long runs.
build=(--fuzz-dir fuzz --sanitizer none --codegen-units "${FUZZ_CODEGEN_UNITS:-16}")
"$fuzz" build "${build[@]}"
# The binaries are run directly, so that nothing is rebuilt between targets.
host=$(rustc -vV | sed -n 's/^host: //p')
log=$(mktemp "${TMPDIR:-/tmp}/ironclad-fuzz.XXXXXX")
trap 'rm -f "$log"' EXIT
failed=0
echo "| target | executions | seconds | exec/s | corpus | findings |"
echo "|---|---|---|---|---|---|"
for t in "${targets[@]}"; do
  work="target/fuzz-corpus/$t"
  mkdir -p "$work" "fuzz/artifacts/$t"
  status=0
  "fuzz/target/$host/release/$t" "$work" "fuzz/corpus/$t" \
    -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=1024 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(find "$work" -type f | wc -l)
  findings=none
  if [ "$status" -ne 0 ]; then
    failed=1
    findings="exit $status: $(grep -a -m1 -o 'Test unit written to .*' "$log" || tail -1 "$log")"
    grep -a -m5 -B2 -A20 "panicked\|ERROR: libFuzzer" "$log" >&2 || tail -40 "$log" >&2
  fi
  echo "| $t | ${runs:-?} | $seconds | ${rate:-?} | $corpus | $findings |"
done
exit "$failed"
