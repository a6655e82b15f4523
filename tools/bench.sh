#!/usr/bin/env bash
# The side-by-side benchmark: installs what is missing, builds keg-server (Release) and runs
# tools/bench/side_by_side.py, which writes docs/benchmarks.md and docs/benchmarks.png.
#   tools/bench.sh [--rounds N] [--quick] [--only TEXT]   (--only pubsub: the pub/sub part;
#   --only collections: the hash and set workloads; --only lists: the list workloads;
#   --only collection-memory: the hash and set memory and restart targets, about 2 GB of RAM;
#   --only zsets: the sorted set workloads; --only zset-list-memory: 1,000,000 members in one
#   sorted set and 1,000,000 elements in one list, memory and restart; --only wake: the time
#   from a push to the reply of the client blocked on it, p50 / p99; --only replicas: SET and GET
#   on a primary with two replicas attached, every node durable under everysec; --only fullsync
#   [--keys N]: a full sync of N keys (10,000,000) to a new replica, and the primary's p99 meanwhile)
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh --bench
cmake -S . -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEG_TESTS=OFF -DKEG_BENCH=OFF >/dev/null
cmake --build build/bench --target keg-server keg_pubsub_bench
exec /usr/bin/python3 tools/bench/side_by_side.py "$@"
