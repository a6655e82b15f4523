#!/usr/bin/env bash
# Data larger than memory (issue 14's figures): keg-server in a memory cgroup with a data set 4x its
# limit, against fio on the same disk in the same run. Installs what is missing, builds keg-server
# (Release) and runs tools/bench/disk.py, which writes its section of docs/benchmarks.md and
# docs/benchmarks-disk.png. Needs root (a memory cgroup, drop_caches) and ~4 GB of free disk.
#   tools/bench-disk.sh [--keys N] [--value-size B] [--limit-mb M] [--server PATH] [--no-write]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh --bench
cmake -S . -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEG_TESTS=OFF -DKEG_BENCH=OFF >/dev/null
cmake --build build/bench --target keg-server
exec /usr/bin/python3 tools/bench/disk.py "$@"
