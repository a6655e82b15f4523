#!/usr/bin/env bash
# Installs what is missing, builds keg-server (Release) and starts it with conf/keg.conf, data in
# ./data. Extra arguments are passed on as directives: tools/run.sh --port 7000
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
cmake -S . -B build/run -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEG_TESTS=OFF -DKEG_BENCH=OFF >/dev/null
cmake --build build/run --target keg-server
exec build/run/src/server/keg-server conf/keg.conf --dir ./data "$@"
