#!/usr/bin/env bash
# Long fuzzing run of the request parser (the test suite runs it for 60 s only).
#   tools/fuzz.sh [seconds]      default 3600; corpus kept in build/fuzz-corpus
# Fails on any crash, hang, leak or sanitizer report; the input is saved as build/crash-*.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-3600}
tools/install-deps.sh --test
CC=clang-14 CXX=clang++-14 cmake -S . -B build/sanitize -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKEG_WERROR=ON -DKEG_SANITIZE=address,undefined -DKEG_FUZZ=ON -DKEG_BENCH=OFF >/dev/null
cmake --build build/sanitize --target keg_fuzz_request_parser
mkdir -p build/fuzz-corpus
exec build/sanitize/tests/keg_fuzz_request_parser -max_total_time="$seconds" -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=build/ \
  -dict=tests/fuzz/resp.dict build/fuzz-corpus tests/fuzz/corpus/request_parser
