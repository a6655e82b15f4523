#!/usr/bin/env bash
# Long fuzzing runs (the test suite runs each target for 60 s only).
#   tools/fuzz.sh [seconds] [parser|commands]   default 3600 s, the request parser
#     parser    the RESP request parser (corpus kept in build/fuzz-corpus)
#     commands  random command sequences through the command layer and a real store
#               (corpus kept in build/fuzz-corpus-commands; seeds in tests/fuzz/corpus/commands)
#     commands-tsan  the same under ThreadSanitizer instead of ASan/UBSan (build/tsan-fuzz; the
#               store's, the blocking registry's and the replication threads against the
#               connections'), with tests/fuzz/tsan-fuzz.supp for libFuzzer's own counters
# Fails on any crash, hang, leak or sanitizer report; the input is saved as build/crash-* (or
# timeout-*). KEG_FUZZ_VERBOSE=1 build/sanitize/tests/keg_fuzz_commands <file> prints the commands
# of an input.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-3600}
target=${2:-parser}
tools/install-deps.sh --test
CC=clang-14 CXX=clang++-14 cmake -S . -B build/sanitize -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKEG_WERROR=ON -DKEG_SANITIZE=address,undefined -DKEG_FUZZ=ON -DKEG_BENCH=OFF >/dev/null
case "$target" in
  parser)
    cmake --build build/sanitize --target keg_fuzz_request_parser
    mkdir -p build/fuzz-corpus
    exec build/sanitize/tests/keg_fuzz_request_parser -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=build/ \
      -dict=tests/fuzz/resp.dict build/fuzz-corpus tests/fuzz/corpus/request_parser
    ;;
  commands)
    cmake --build build/sanitize --target keg_fuzz_commands
    mkdir -p build/fuzz-corpus-commands
    exec build/sanitize/tests/keg_fuzz_commands -max_total_time="$seconds" -timeout=60 \
      -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix=build/ \
      build/fuzz-corpus-commands tests/fuzz/corpus/commands
    ;;
  commands-tsan)
    CC=clang-14 CXX=clang++-14 cmake -S . -B build/tsan-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DKEG_WERROR=ON -DKEG_SANITIZE=thread -DKEG_FUZZ=ON -DKEG_BENCH=OFF >/dev/null
    cmake --build build/tsan-fuzz --target keg_fuzz_commands
    mkdir -p build/fuzz-corpus-commands
    TSAN_OPTIONS="suppressions=$PWD/tests/fuzz/tsan-fuzz.supp halt_on_error=1 ${TSAN_OPTIONS:-}" \
      exec build/tsan-fuzz/tests/keg_fuzz_commands -max_total_time="$seconds" -timeout=120 \
      -rss_limit_mb=8192 -print_final_stats=1 -artifact_prefix=build/tsan- \
      build/fuzz-corpus-commands tests/fuzz/corpus/commands
    ;;
  *)
    echo "usage: tools/fuzz.sh [seconds] [parser|commands|commands-tsan]" >&2
    exit 2
    ;;
esac
