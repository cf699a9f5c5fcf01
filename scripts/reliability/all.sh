#!/usr/bin/env bash
# Runs the quick version of every reliability script (a few minutes each on
# a 2-core machine) against the release binary; exits non-zero if any fails.
# Usage: scripts/reliability/all.sh   (the fault cases need root)
set -uo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p ironclad-cli || exit 1
export IRONCLAD_SKIP_BUILD=1
failed=()
for script in auth_matrix bad_inputs crash_loop delivery_chaos faults; do
  echo "== scripts/reliability/$script.py"
  python3 "scripts/reliability/$script.py" || failed+=("$script")
done
if ((${#failed[@]})); then echo "FAILED: ${failed[*]}"; exit 1; fi
echo "all passed"
