#!/usr/bin/env bash
# Store figures: Google Benchmark micro-benchmarks (puts per fsync policy, hot and cold gets,
# recovery of 1M keys), then the 10M-key scale run (load, restart time, RssAnon bytes per key,
# compaction MB/s). Needs about 3 GB free under $KEG_BENCH_DIR (default /tmp).
#   tools/bench-store.sh [KEYS]     KEYS for the scale run, default 10000000
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-10000000}
base=${KEG_BENCH_DIR:-/tmp}
tools/install-deps.sh --test
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEG_WERROR=ON >/dev/null
cmake --build build/release --target keg_store_bench keg_store_scale

echo "== micro-benchmarks (data in $base)"
KEG_BENCH_DIR="$base" build/release/tools/keg_store_bench

dir="$base/keg_scale_$$"
rm -rf "$dir"
trap 'rm -rf "$dir"' EXIT
echo "== scale: $keys keys of 16-byte keys and 100-byte values"
build/release/tools/keg_store_scale load "$dir" "$keys" 100 2>&1 | grep -v '^\['
for run in 1 2 3; do
  build/release/tools/keg_store_scale recover "$dir" 2>&1 | grep -v '^\['
done
build/release/tools/keg_store_scale compact "$dir" 2>&1 | grep -v '^\['
