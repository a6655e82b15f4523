#!/usr/bin/env bash
# Micro-benchmark of src/resp on one core: parsing pipelined GET / SET / inline PING and encoding
# replies. Builds Release first. Extra arguments go to Google Benchmark (--benchmark_filter=Parse).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh --test
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEG_WERROR=ON >/dev/null
cmake --build build/release --target keg_resp_bench
# Pinned to one CPU so the figure is "one core"; 5 repetitions, medians reported.
exec taskset -c 0 build/release/tools/keg_resp_bench --benchmark_repetitions=5 \
  --benchmark_report_aggregates_only=true --benchmark_min_time=0.5 "$@"
