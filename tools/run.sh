#!/usr/bin/env bash
# Installs what is missing, builds keg (Release) and starts keg-server with conf/keg.conf and its
# data in ./data. Extra arguments are passed to keg-server ("--port 7000").
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh
cmake -S . -B build/run -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEG_TESTS=OFF -DKEG_BENCH=OFF
cmake --build build/run -j "$(nproc)"

if [[ ! -x build/run/keg-server ]]; then
  echo "run.sh: keg-server does not exist yet. This checkout has the RESP protocol layer" \
       "(src/resp) and its tests; the server comes with the server issue (see README, Status)." >&2
  exit 1
fi
mkdir -p data
exec build/run/keg-server conf/keg.conf --dir ./data "$@"
